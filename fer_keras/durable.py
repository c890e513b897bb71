"""Files that survive a kill, and the named points where the crash-point sweep kills.

Every result file that marks work as done (metrics.json, folds.json, search.json, state.json,
manifest.json) is written to a temporary name and renamed (``save_atomic``), and written last:
a rerun that finds it skips the work, so it must never exist before, or be half of, what it
stands for.

``killpoint(name)`` stops the whole process group with SIGKILL when the environment variable
``FER_KERAS_KILLPOINT`` names it (``name`` or ``name@n``: the n-th time this process reaches it).
The points sit where a kill is most likely to leave two files out of step (tests/killsweep.py
kills there, then checks that a rerun ends as the uninterrupted run did); unset, it does nothing.
"""
from __future__ import annotations

import os
import signal
from pathlib import Path

from fer_keras import storage

KILLPOINT = "FER_KERAS_KILLPOINT"
_reached: dict[str, int] = {}


def save_atomic(save, path) -> None:
    """``save(tmp)`` then rename onto ``path``: a kill leaves the old file or the new, never half
    of one (the temporary name keeps the suffix Keras requires). On a remote file system
    (fer_keras.storage) ``tmp`` is a string and the rename is the file system's."""
    if storage.is_remote(path):
        head, name = storage.split(path)
        tmp = storage.join(head, f".partial-{name}")
    else:
        path = Path(path)
        tmp = path.with_name(f".partial-{path.name}")
    save(tmp)
    storage.replace(tmp, path)


def write_atomic(path, text: str) -> None:
    """``path`` holds ``text`` whole, or what it held before (see ``save_atomic``)."""
    save_atomic(lambda tmp: storage.write_text(tmp, text), path)


def write_result(path, text: str) -> None:
    """The file that marks work done, written whole once all the rest is (a kill point before it)."""
    killpoint("result")
    write_atomic(path, text)


def killpoint(name: str) -> None:
    """SIGKILL this process group here when FER_KERAS_KILLPOINT asks for it (module docstring)."""
    wanted = os.environ.get(KILLPOINT)
    if not wanted:
        return
    point, _, nth = wanted.partition("@")
    if point != name:
        return
    _reached[name] = _reached.get(name, 0) + 1
    if _reached[name] >= int(nth or 1):
        os.killpg(os.getpgrp(), signal.SIGKILL)
