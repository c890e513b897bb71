"""A crash-point sweep, as storage engines test crash consistency: run a command to completion
once, then run it again from scratch K times, each killed with SIGKILL (its whole process group)
at a moment drawn over the uninterrupted run's time, resumed to completion, and compared with the
uninterrupted run by the caller.
"""
from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path


def start(argv, cwd) -> subprocess.Popen:
    """``python -c`` or ``python -m`` argv, in its own process group (workers die with it)."""
    return subprocess.Popen([sys.executable, *argv], cwd=cwd, stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, start_new_session=True)


def finish(proc: subprocess.Popen, what: str) -> None:
    _, err = proc.communicate()
    if proc.returncode != 0:
        raise AssertionError(f"{what} exited {proc.returncode}: {err.decode(errors='replace')[-2000:]}")


def sweep(argv_for, work: Path, kills: int, compare, seed: int = 0, span=(0.1, 0.97)) -> dict:
    """``argv_for(out)`` is the command writing into ``out``; ``compare(whole, resumed)`` asserts
    that a resumed output equals the uninterrupted one. Returns the sweep's figures: kill points
    tried, runs that were still running when killed, resumed and identical."""
    whole = work / "whole"
    began = time.perf_counter()
    finish(start(argv_for(whole), work), "the uninterrupted run")
    took = time.perf_counter() - began
    rng = random.Random(seed)
    moments = sorted(rng.uniform(*span) * took for _ in range(kills))
    figures = {"kill_points": kills, "killed_running": 0, "resumed": 0, "identical": 0, "seconds": round(took, 1),
               "moments": [round(m, 1) for m in moments]}
    for i, moment in enumerate(moments):
        out = work / f"killed-{i}"
        proc = start(argv_for(out), work)
        try:
            proc.wait(timeout=moment)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
            figures["killed_running"] += 1
        finish(start(argv_for(out), work), f"the run resumed after a kill at {moment:.1f} s")
        figures["resumed"] += 1
        compare(whole, out)
        figures["identical"] += 1
    return figures
