"""A run directory on remote storage (``gs://``, ``s3://``, ``hdfs://``, ``ram://``): trained and
evaluated in a local copy that is synchronised with it.

Keras writes checkpoints, CSV and TensorBoard logs through the OS and renames files into place,
which object stores cannot do atomically, so a run works in a local folder (under
``FER_KERAS_STAGING``, default ``~/.cache/fer_keras/staging``, one per remote path) and ``staged``
copies back what the run changed when it ends, also on an error or Ctrl-C:

- on entry the local copy is refreshed from the remote folder, unless it holds the remote's latest
  upload already (then it is kept: after a kill it has the newer work, which the rerun continues
  on this machine; on another machine the rerun continues from the last upload);
- on exit only what changed since the copy was taken is uploaded and what the run deleted is
  deleted, then a new generation mark is written, last: a process that changed nothing (a
  multi-worker run's other workers, which train in a private copy) uploads nothing, and an upload
  cut short leaves the old mark, so the next entry takes the remote as it is.
"""
from __future__ import annotations

import hashlib
import json
import os
import shutil
import uuid
from contextlib import contextmanager
from pathlib import Path

from fer_keras import storage

STAGING = "FER_KERAS_STAGING"
MARK = ".fer_keras-generation"  # in the remote folder: the id of its latest complete upload


def _root() -> Path:
    return Path(os.environ.get(STAGING) or Path.home() / ".cache" / "fer_keras" / "staging")


def _files(folder: Path) -> dict:
    """{relative path: [size, mtime_ns]} of every file under ``folder``."""
    found = {}
    for path in folder.rglob("*"):
        if path.is_file():
            stat = path.stat()
            found[path.relative_to(folder).as_posix()] = [stat.st_size, stat.st_mtime_ns]
    return found


def _remote_files(remote: str) -> list[str]:
    import tensorflow as tf

    if not tf.io.gfile.isdir(remote):
        return []
    return sorted(storage.join(top, name)[len(remote.rstrip("/")) + 1:]
                  for top, _, names in tf.io.gfile.walk(remote) for name in names)


def _generation(remote: str) -> str | None:
    mark = storage.join(remote, MARK)
    return storage.read_text(mark).strip() if storage.exists(mark) else None


@contextmanager
def staged(path):
    """``path`` itself when it is local; for a remote folder, its local copy (module docstring)."""
    if not storage.is_remote(path):
        yield Path(path)
        return
    remote = str(path).rstrip("/")
    worker = os.environ.get("TF_CONFIG", "")  # each worker of a multi-worker run on one host: its own copy
    home = _root() / hashlib.sha256(f"{remote}\n{worker}".encode()).hexdigest()[:16]
    local, record = home / "run", home / "staged.json"
    taken = json.loads(record.read_text()) if record.is_file() else None
    if taken is None or taken.get("remote") != remote or taken.get("generation") != _generation(remote):
        shutil.rmtree(home, ignore_errors=True)
        local.mkdir(parents=True)
        for rel in _remote_files(remote):
            if rel != MARK:
                (local / rel).parent.mkdir(parents=True, exist_ok=True)
                storage.copy(storage.join(remote, rel), local / rel)
        taken = {"remote": remote, "generation": _generation(remote), "files": _files(local)}
        record.write_text(json.dumps(taken))
    try:
        yield local
    finally:
        _upload(local, remote, taken, record)


def _upload(local: Path, remote: str, taken: dict, record: Path) -> None:
    """Copy to ``remote`` what changed in ``local`` since ``taken``, delete what was deleted, then
    write a new generation mark (module docstring)."""
    now = _files(local)
    changed = sorted(rel for rel, stat in now.items() if taken["files"].get(rel) != stat)
    gone = sorted(set(taken["files"]) - set(now))
    if not changed and not gone:
        return
    for rel in changed:
        target = storage.join(remote, rel)
        storage.makedirs(storage.split(target)[0])
        storage.copy(local / rel, target)
    for rel in gone:
        if storage.exists(storage.join(remote, rel)):
            storage.remove(storage.join(remote, rel))
    generation = uuid.uuid4().hex
    storage.write_text(storage.join(remote, MARK), generation)
    record.write_text(json.dumps({"remote": remote, "generation": generation, "files": now}))
