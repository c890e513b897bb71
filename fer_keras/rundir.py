"""The run directory: its paths, state.json, and the checks that find a damaged file in it.

The lowest layer under training (which writes run directories) and evaluation (which reads
them), so neither imports the other. Keras and h5py load on first use.

Run directory::

    config.yaml            every setting the run used (defaults included)
    checkpoints/best.keras best epoch by ``training.monitor``; last.keras at the end;
                           stage-<i>.weights.h5 when stage i is complete (the model's weights,
                           not its optimiser's)
    backup/stage-<i>/      BackupAndRestore state of the stage in progress (removed when done)
    logs/                  TensorBoard
    history.csv            one row per epoch, appended across stages and restarts
    state.json             stages done (so a killed run continues where it stopped), the size and
                           SHA-256 of each stage-<i>.weights.h5, and ``best_since`` when best.keras
                           had to be rebuilt

Damaged files (a kill while writing, a full disk, bit rot on shared storage) are found before
they are used. A ``.keras`` file is checked member by member against its zip CRC-32s and a stage
weights file against the size and SHA-256 recorded in state.json (HDF5 has no checksums of its
own), and a bad one is a ``DamagedFile`` (a ValueError) naming it and what to do. Files are
written to a temporary name and renamed (``save_atomic``), so a kill never leaves them half-written.
"""
from __future__ import annotations

import json
import os
import zipfile
import zlib
from pathlib import Path

from fer_keras import storage
from fer_keras.data.integrity import sha256
from fer_keras.durable import save_atomic


class RunDir:
    """Paths of a run directory."""

    def __init__(self, root):
        storage.local_only(root, "this command's run directory (fer-keras train and evaluate take a remote one "
                                 "and work in a local copy: fer_keras/staging.py)")
        self.root = Path(root)
        self.config = self.root / "config.yaml"
        self.checkpoints = self.root / "checkpoints"
        self.best = self.checkpoints / "best.keras"
        self.last = self.checkpoints / "last.keras"
        self.logs = self.root / "logs"
        self.history = self.root / "history.csv"
        self.state = self.root / "state.json"

    def stage_weights(self, i):
        return self.checkpoints / f"stage-{i}.weights.h5"

    def backup(self, i):
        return self.root / "backup" / f"stage-{i}"


# --- damaged files ------------------------------------------------------------------------------

REBUILD = "rerun training in this run directory to rebuild it"
KERAS_MEMBERS = ("config.json", "metadata.json", "model.weights.h5")  # what Model.save writes


class DamagedFile(ValueError):
    """A run-directory file that is there but cannot be what was written: truncated, changed, or
    not the kind of file its name says. ``str()`` is one line: the file, the problem, what to do."""

    def __init__(self, path, problem, todo=REBUILD):
        self.path, self.problem, self.todo = Path(path), problem, todo
        super().__init__(f"{path}: damaged: {problem}; {todo}")


def one_line(err, limit=160):
    """An exception as a few words for a one-line message."""
    text = " ".join(str(err).split()) or type(err).__name__
    return text if len(text) <= limit else text[:limit - 3] + "..."


def check_model_file(path, todo=REBUILD):
    """Raise ``DamagedFile`` unless ``path`` is a complete ``.keras`` archive: a zip whose every
    member matches its CRC-32 and that holds what ``Model.save`` writes. Reads the whole file.

    Measured with Keras 3.15: ``load_model`` on a truncated, empty or random file raises a
    ValueError "File not found: ... Please ensure the file is an accessible `.keras` zip file"
    (it is not a zip), and on a flipped byte ``zipfile.BadZipFile`` "Bad CRC-32 for file
    'model.weights.h5'". A missing file is left to the caller (FileNotFoundError)."""
    path = Path(path)
    try:
        with zipfile.ZipFile(path) as archive:
            bad = archive.testzip()
            names = set(archive.namelist())
    except (zipfile.BadZipFile, zlib.error, EOFError) as err:
        raise DamagedFile(path, f"truncated or not a Keras file ({one_line(err)})", todo) from err
    if bad is not None:
        raise DamagedFile(path, f"truncated or changed after it was written ({bad} inside it fails "
                                f"its CRC-32 check)", todo)
    missing = [m for m in KERAS_MEMBERS if m not in names]
    if missing:
        raise DamagedFile(path, f"not a Keras file (no {', '.join(missing)} inside)", todo)


def load_checkpoint(path, todo=REBUILD, compile=False):
    """``keras.models.load_model`` of a checked ``.keras`` file; a damaged one is a ``DamagedFile``
    naming it (custom layers must be registered: import fer_keras.models first)."""
    import keras

    check_model_file(path, todo)
    try:
        return keras.models.load_model(path, compile=compile)
    except zipfile.BadZipFile as err:  # changed between the check and the load
        raise DamagedFile(path, f"truncated or not a Keras file ({one_line(err)})", todo) from err


def weights_record(path) -> dict:
    """What state.json keeps of a weights file it relies on."""
    return {"bytes": os.path.getsize(path), "sha256": sha256(path)}


def h5_problem(path):
    """None, or what h5py raises opening ``path`` and reading every dataset in it: OSError
    ("Unable to synchronously open file (truncated file: eof = ...)", "(file signature not
    found)") for a truncated, empty or random file, RuntimeError or KeyError for a damaged
    object header (measured with h5py 3.14). A flipped byte inside the weights themselves reads
    without error; only a recorded checksum finds it."""
    import h5py

    def read(name, obj):
        if isinstance(obj, h5py.Dataset):
            obj[()]
        return None  # anything else stops visititems

    if not Path(path).is_file():
        raise FileNotFoundError(f"{path}: missing")
    try:
        with h5py.File(path, "r") as f:
            f.visititems(read)
    except (OSError, RuntimeError, KeyError) as err:
        return one_line(err)
    return None


def check_weights_file(path, record=None, todo=REBUILD):
    """Raise ``DamagedFile`` unless ``path`` is an intact ``.weights.h5``: its size and SHA-256
    as ``record`` (from state.json) says, or, without a record, an HDF5 file that reads."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: missing; {todo}")
    if record:
        size = path.stat().st_size
        if size != record["bytes"]:
            raise DamagedFile(path, f"truncated or overwritten ({size} bytes; {record['bytes']} when "
                                    f"written, as state.json records)", todo)
        if sha256(path) != record["sha256"]:
            raise DamagedFile(path, "changed after it was written (its SHA-256 is not the one "
                                    "state.json records)", todo)
        return
    problem = h5_problem(path)
    if problem:
        raise DamagedFile(path, f"truncated or not an HDF5 weights file ({problem})", todo)


def read_state(run: RunDir):
    """state.json (``stages_done: 0`` before the first stage ends); a damaged one is a DamagedFile."""
    if not run.state.is_file():
        return {"stages_done": 0}
    try:
        state = json.loads(run.state.read_text())
        int(state["stages_done"])
    except (ValueError, KeyError, TypeError) as err:  # JSONDecodeError, UnicodeDecodeError are ValueErrors
        raise DamagedFile(run.state, f"not the state training writes ({one_line(err)})",
                          "it records which stages are done, so this run cannot continue; train "
                          "again in a new run directory") from err
    return state


def write_state(run: RunDir, state):
    """state.json, written atomically."""
    save_atomic(lambda tmp: tmp.write_text(json.dumps(state, indent=2)), run.state)


BEST_LOST = ("the best epoch's weights cannot be rebuilt in a finished run: evaluate the last "
             "checkpoint (fer-keras evaluate RUN_DIR --checkpoint last), or delete the file and rerun "
             "training in this run directory to replace it with the final model")


def checkpoint_todo(run: RunDir, name: str, n_stages: int) -> str:
    """What to do about a damaged ``best`` or ``last`` checkpoint of ``run``."""
    try:
        finished = read_state(run)["stages_done"] >= n_stages
    except DamagedFile:
        finished = False
    if name == "best" and finished:
        return BEST_LOST
    if name == "last" and finished:
        return REBUILD + " from the last stage's weights"
    return REBUILD
