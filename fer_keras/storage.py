"""Paths on the local disk or on a file system TensorFlow reaches (``gs://``, ``s3://`` with
tensorflow-io, ``hdfs://``, ``ram://``): prepared datasets (shards, manifest, failures) are read
and written through here, so a dataset prepared to a bucket trains from it with tf.data.

A local path goes through the OS (no TensorFlow import, no behaviour change); a remote one through
``tf.io.gfile``. Stages that hand a path to a program or a library that opens it itself (ffmpeg,
openSMILE, h5py, OpenCV) call ``local_only`` so a remote path gets a clear error, not a missing file.
Appending is a rewrite on a remote path: object stores (GCS, S3) cannot append.
"""
from __future__ import annotations

import glob as local_glob
import os
import re

_REMOTE = re.compile(r"^[a-zA-Z][a-zA-Z0-9+.-]*://")


def is_remote(path) -> bool:
    """A URL-like path (``scheme://...``) other than ``file://``."""
    text = str(path)
    return bool(_REMOTE.match(text)) and not text.startswith("file://")


def _gfile():
    import tensorflow as tf

    return tf.io.gfile


def join(root, *parts) -> str:
    """``root/part/...``; a remote root keeps its ``scheme://`` (pathlib would fold it to ``scheme:/``)."""
    if is_remote(root):
        return "/".join([str(root).rstrip("/"), *(str(p).strip("/") for p in parts)])
    return os.path.join(str(root), *map(str, parts))


def split(path) -> tuple[str, str]:
    """(folder, name) of ``path``, local or remote."""
    if is_remote(path):
        head, _, name = str(path).rpartition("/")
        return head, name
    return os.path.split(str(path))


def local_only(path, what: str) -> None:
    """Refuse a remote ``path`` for a stage that needs a file on the local disk."""
    if is_remote(path):
        raise ValueError(f"{path}: {what} needs a local path, not one on a remote file system; copy it "
                         "to a local disk first (gcloud storage cp, aws s3 cp, hdfs dfs -get)")


def exists(path) -> bool:
    return _gfile().exists(str(path)) if is_remote(path) else os.path.exists(path)


def isfile(path) -> bool:
    if is_remote(path):
        return _gfile().exists(str(path)) and not _gfile().isdir(str(path))
    return os.path.isfile(path)


def size(path) -> int:
    return _gfile().stat(str(path)).length if is_remote(path) else os.path.getsize(path)


def makedirs(path) -> None:
    if is_remote(path):
        _gfile().makedirs(str(path))
    else:
        os.makedirs(path, exist_ok=True)


def remove(path) -> None:
    if is_remote(path):
        _gfile().remove(str(path))
    else:
        os.remove(path)


def replace(source, target) -> None:
    """Rename ``source`` onto ``target`` (atomic on a local disk; a copy and a delete on an object store)."""
    if is_remote(target):
        _gfile().rename(str(source), str(target), overwrite=True)
    else:
        os.replace(source, target)


def glob(pattern) -> list[str]:
    """The paths matching ``pattern`` (``*`` within a name), sorted."""
    if is_remote(pattern):
        return sorted(_gfile().glob(str(pattern)))
    return sorted(local_glob.glob(str(pattern)))


def escape(path) -> str:
    """``path`` with glob's special characters taken literally."""
    return local_glob.escape(str(path))


def copy(source, target) -> None:
    """``target`` becomes a copy of ``source`` (either may be remote; an existing remote target is
    removed first: ``ram://`` would add to its end)."""
    if is_remote(target) and exists(target):
        remove(target)
    _gfile().copy(str(source), str(target), overwrite=True)


def open_file(path, mode: str = "r"):
    """A file object for ``path`` (text modes read and write UTF-8)."""
    if is_remote(path):
        return _gfile().GFile(str(path), mode)
    return open(path, mode, **({} if "b" in mode else {"encoding": "utf-8"}))


def read_text(path) -> str:
    with open_file(path) as f:
        return f.read()


def write_text(path, text: str) -> None:
    """``path`` holds ``text`` (replaced, not added to: TensorFlow's ``ram://`` opens an existing
    file for writing at its end, so a remote file is removed first)."""
    if is_remote(path) and exists(path):
        remove(path)
    with open_file(path, "w") as f:
        f.write(text)


def append_text(path, text: str) -> None:
    """Add ``text`` at the end of ``path`` (created if missing)."""
    if not is_remote(path):
        with open(path, "a", encoding="utf-8") as f:
            f.write(text)
        return
    before = read_text(path) if exists(path) else ""
    write_text(path, before + text)
