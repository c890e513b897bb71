"""The prepared-dataset contract's file names and its one reader (DESIGN.md, Contracts).

``<out>/manifest.json`` records what a preparation finished (splits, shards with their sizes and
checksums, one entry per source video) and ``<out>/failures.jsonl`` what it skipped and why.
Preparation writes them (data_prep/store.py); every reader in the library reads them through here.
"""
from __future__ import annotations

import json
from pathlib import Path

MANIFEST = "manifest.json"
FAILURES = "failures.jsonl"


def path(root) -> Path:
    return Path(root) / MANIFEST


def read(root) -> dict:
    """The manifest of the prepared dataset at ``root``, with a clear error when there is none."""
    file = path(root)
    try:
        return json.loads(file.read_text())
    except (FileNotFoundError, NotADirectoryError):
        shares = sorted(p.name for p in Path(root).glob("manifest-*-of-*.json"))
        if shares:
            raise FileNotFoundError(f"{file}: no {MANIFEST}, only the shares {', '.join(shares)} of a `--shard` "
                                    f"preparation; join them first: fer-keras merge {root} {root}") from None
        raise FileNotFoundError(f"{file}: no {MANIFEST}; is {root} a prepared dataset (fer-keras prepare ...)?") from None
    except json.JSONDecodeError as err:
        raise ValueError(f"{file}: not valid JSON ({err}); prepare the dataset again into a new OUT") from None
