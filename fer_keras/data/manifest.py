"""The prepared-dataset contract's file names and its one reader (DESIGN.md, Contracts).

``<out>/manifest.json`` records what a preparation finished (splits, shards with their sizes and
checksums, one entry per source video) and ``<out>/failures.jsonl`` what it skipped and why.
Preparation writes them (data_prep/store.py); every reader in the library reads them through here.
"""
from __future__ import annotations

import json
import posixpath

from fer_keras import storage

MANIFEST = "manifest.json"
FAILURES = "failures.jsonl"


def path(root) -> str:
    """Where the manifest of ``root`` is (a local path or one on a file system TensorFlow reaches)."""
    return storage.join(root, MANIFEST)


def read(root) -> dict:
    """The manifest of the prepared dataset at ``root``, with a clear error when there is none."""
    file = path(root)
    if not storage.isfile(file):
        shares = sorted(posixpath.basename(p) for p in storage.glob(storage.join(storage.escape(root),
                                                                                  "manifest-*-of-*.json")))
        if shares:
            raise FileNotFoundError(f"{file}: no {MANIFEST}, only the shares {', '.join(shares)} of a `--shard` "
                                    f"preparation; join them first: fer-keras merge {root} {root}")
        raise FileNotFoundError(f"{file}: no {MANIFEST}; is {root} a prepared dataset (fer-keras prepare ...)?")
    try:
        return json.loads(storage.read_text(file))
    except json.JSONDecodeError as err:
        raise ValueError(f"{file}: not valid JSON ({err}); prepare the dataset again into a new OUT") from None
