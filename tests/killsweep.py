"""Crash-point sweeps, as storage engines test crash consistency: run a command to completion
once (``whole``), then again from scratch, killed with SIGKILL (its whole process group) and
resumed to completion, and compared with the uninterrupted run by the caller. Three ways to
choose the kills:

- ``sweep``: K fresh runs, each killed once at a moment drawn over the uninterrupted run's time;
- ``at_points``: one fresh run per named kill point (fer_keras.durable.killpoint), which must be
  reached (a run that ends without reaching it fails the sweep); ``in_turn``: one run killed at
  each named point in turn (the fast suite's form);
- ``chain``: one run killed K times in a row, each resume killed again after a drawn share of the
  run's time, so K kill points cover a long command (thesis 002's smoke run) for about the price
  of two runs.
"""
from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

KILLPOINT = "FER_KERAS_KILLPOINT"


def start(argv, cwd, killpoint=None, log=None) -> subprocess.Popen:
    """``python -c`` or ``python -m`` argv, in its own process group (workers die with it)."""
    env = {k: v for k, v in os.environ.items() if k != KILLPOINT}
    if killpoint:
        env[KILLPOINT] = killpoint
    return subprocess.Popen([sys.executable, *argv], cwd=cwd, env=env, stdout=log or subprocess.DEVNULL,
                            stderr=subprocess.PIPE, start_new_session=True)


def finish(proc: subprocess.Popen, what: str) -> None:
    _, err = proc.communicate()
    if proc.returncode != 0:
        raise AssertionError(f"{what} exited {proc.returncode}: {err.decode(errors='replace')[-2000:]}")


def whole(argv_for, work: Path) -> float:
    """The uninterrupted run into ``work/whole``; returns its seconds."""
    began = time.perf_counter()
    finish(start(argv_for(work / "whole"), work), "the uninterrupted run")
    return time.perf_counter() - began


def _kill_at(proc: subprocess.Popen, moment: float) -> bool:
    """SIGKILL the run's process group ``moment`` seconds in; False when it had ended by then."""
    try:
        proc.wait(timeout=moment)
        return False
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
        return True


def sweep(argv_for, work: Path, kills: int, compare, seed: int = 0, span=(0.1, 0.97)) -> dict:
    """``argv_for(out)`` is the command writing into ``out``; ``compare(whole, resumed)`` asserts
    that a resumed output equals the uninterrupted one. Returns the sweep's figures: kill points
    tried, runs that were still running when killed, resumed and identical."""
    took = whole(argv_for, work)
    rng = random.Random(seed)
    moments = sorted(rng.uniform(*span) * took for _ in range(kills))
    figures = {"kill_points": kills, "killed_running": 0, "resumed": 0, "identical": 0, "seconds": round(took, 1),
               "moments": [round(m, 1) for m in moments]}
    for i, moment in enumerate(moments):
        out = work / f"killed-{i}"
        figures["killed_running"] += _kill_at(start(argv_for(out), work), moment)
        finish(start(argv_for(out), work), f"the run resumed after a kill at {moment:.1f} s")
        figures["resumed"] += 1
        compare(work / "whole", out)
        figures["identical"] += 1
    return figures


def at_points(argv_for, work: Path, points, compare, fresh=None) -> dict:
    """Kill a fresh run at each named point (``name`` or ``name@n``, see fer_keras.durable), resume
    it and compare; the uninterrupted run is ``work/whole`` if there, else run first. ``fresh(out)``
    sets up what a fresh run starts from (e.g. data already prepared)."""
    if not (work / "whole").exists():
        whole(argv_for, work)
    figures = {"kill_points": len(points), "resumed": 0, "identical": 0}
    for i, point in enumerate(points):
        out = work / f"point-{i}"
        if fresh:
            fresh(out)
        proc = start(argv_for(out), work, killpoint=point)
        _, err = proc.communicate()
        assert proc.returncode == -signal.SIGKILL, (
            f"kill point {point} was never reached (exit {proc.returncode}): {err.decode(errors='replace')[-1500:]}")
        finish(start(argv_for(out), work), f"the run resumed after a kill at {point}")
        figures["resumed"] += 1
        compare(work / "whole", out)
        figures["identical"] += 1
    return figures


def in_turn(argv_for, work: Path, points, compare) -> dict:
    """One fresh run killed at each named point in turn (each resume asked for the next point,
    counted from its own start), then resumed to the end and compared once: ``len(points)`` kill
    points for ``len(points) + 2`` starts instead of ``at_points``' ``2 * len(points) + 1``."""
    if not (work / "whole").exists():
        whole(argv_for, work)
    out = work / "in-turn"
    for point in points:
        proc = start(argv_for(out), work, killpoint=point)
        _, err = proc.communicate()
        assert proc.returncode == -signal.SIGKILL, (
            f"kill point {point} was never reached (exit {proc.returncode}): {err.decode(errors='replace')[-1500:]}")
    finish(start(argv_for(out), work), f"the run resumed after kills at {', '.join(points)}")
    compare(work / "whole", out)
    return {"kill_points": len(points), "resumed": len(points), "identical": len(points)}


def chain(argv_for, work: Path, kills: int, compare, took: float, restart: float = 0.0, seed: int = 0) -> dict:
    """One run into ``work/chained`` killed again and again until a start finishes on its own (at
    most ``4 * kills`` kills, then resumed to the end) and compared with ``work/whole``. Each start
    runs ``restart`` seconds (what a resume takes to get back to work) plus a drawn 0.4-1.2 share of
    ``took / (2 * kills + 1)`` (``took``: the uninterrupted run's seconds) before its kill: about
    ``2.5 * kills`` kills land over the run, and at least ``kills`` even when ``took`` was measured
    on a machine twice as busy. Each start's stdout goes to ``chained-<i>.log``, so a test can tell
    what a kill cut (e.g. which step of a plan)."""
    out, rng = work / "chained", random.Random(seed)
    figures = {"kill_points": 0, "killed_running": 0, "resumed": 0, "identical": 0, "moments": []}
    for i in range(4 * kills):
        moment = restart + rng.uniform(0.4, 1.2) * took / (2 * kills + 1)
        with open(work / f"chained-{i}.log", "wb") as log:
            killed = _kill_at(start(argv_for(out), work, log=log), moment)
        if not killed:  # it finished before this kill
            break
        figures["kill_points"] += 1
        figures["killed_running"] += 1
        figures["resumed"] += 1
        figures["moments"].append(round(moment, 1))
    with open(work / f"chained-{figures['kill_points']}.log", "wb") as log:
        finish(start(argv_for(out), work, log=log), "the run resumed after the last kill")
    compare(work / "whole", out)
    figures["identical"] = figures["resumed"]
    return figures
