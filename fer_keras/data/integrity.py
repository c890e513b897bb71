"""Integrity of prepared datasets and feature folders: what `fer-keras verify` checks.

Every shard a preparation renames into place is recorded in the manifest's ``files`` (size,
record count, SHA-256), and every feature file in its folder's ``features.json``. Datasets live
on shared storage for months, so before hours of training depend on one:

- ``quick`` checks are cheap (each listed file exists with its recorded size) and run before every
  train, tune and evaluate (``require``);
- a full check (``check``) also streams every file through SHA-256 (at disk speed, in parallel
  over files) and compares its record count with the manifest's videos; ``records`` (and any
  shard without a recorded checksum) also streams every record through TFRecord's own CRCs and
  the schema parser and compares the video ids with the manifest.

A problem is one line: the file, what is wrong, and what to do.
"""
from __future__ import annotations

import hashlib
import json
import os
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from fer_keras import storage
from fer_keras.data.manifest import read as _manifest
FEATURE_INDEX = "features.json"
CHUNK = 1 << 20
REPREPARE = "rerun the same `fer-keras prepare` command on this OUT: it prepares the videos of that shard again"
REWRITE_FEATURES = "write the feature file again (fer-keras features)"


@dataclass
class Problem:
    path: str
    what: str
    fix: str

    def line(self) -> str:
        return f"{self.path}: {self.what}; {self.fix}"


def sha256(path) -> str:
    digest = hashlib.sha256()
    with storage.open_file(path, "rb") as f:
        for block in iter(lambda: f.read(CHUNK), b""):
            digest.update(block)
    return digest.hexdigest()


def describe(path, records: int) -> dict:
    """What the manifest records of a finished file."""
    return {"size": storage.size(path), "records": records, "sha256": sha256(path)}


def shards(manifest: dict, splits=None) -> list[str]:
    """The shard files (relative paths) of `splits` (default: all)."""
    names = manifest["splits"] if splits is None else splits
    return [s for name in names for s in manifest["splits"].get(name, {}).get("shards", [])]


def quick_problem(root, rel: str, recorded: dict | None, fix: str = REPREPARE) -> Problem | None:
    """A listed file that is gone or whose size is not the recorded one."""
    path = storage.join(root, rel)
    if not storage.isfile(path):
        return Problem(path, "missing (listed in the manifest)", fix)
    if recorded and storage.size(path) != recorded["size"]:
        return Problem(path, f"{storage.size(path)} bytes, the manifest recorded {recorded['size']} "
                             "(truncated or replaced)", fix)
    return None


def require(root, manifest: dict, splits) -> None:
    """Refuse, with one line naming the file, a dataset whose shards of `splits` are missing or
    have another size than recorded (before a run depends on them)."""
    recorded = manifest.get("files", {})
    for rel in shards(manifest, splits):
        problem = quick_problem(root, rel, recorded.get(rel))
        if problem:
            raise ValueError(problem.line() + " (`fer-keras verify` checks the whole dataset)")


def records_by_shard(manifest: dict) -> dict:
    """{shard: {video id: its records}}: a video is one record, a long track one per segment."""
    out: dict = {}
    for entry in manifest["videos"].values():
        if entry.get("status") == "ok" and entry.get("shard"):
            out.setdefault(entry["shard"], {})[entry["id"]] = entry.get("segments", 1)
    return out


def _check_records(path, manifest: dict, expected: dict) -> str | None:
    """Stream one shard through TFRecord's CRCs and the schema parser; what is wrong, or None."""
    import tensorflow as tf

    from fer_keras.data.schema import parse, record_fields

    fields = record_fields(manifest)
    audio, face = manifest["audio"], manifest["options"].get("face_size", 0)
    ids, count = set(), 0
    ds = tf.data.TFRecordDataset(path).map(
        lambda x: parse(x, audio["lld_dim"], audio["functionals_dim"], face, False, **fields)["video_id"])
    try:
        for video_id in ds.as_numpy_iterator():
            ids.add(video_id.decode())
            count += 1
    except tf.errors.DataLossError as err:
        return f"corrupt record after {count} good ones ({err.message.splitlines()[0]})"
    except tf.errors.InvalidArgumentError as err:
        return f"record {count + 1} does not parse as a {manifest.get('dataset', '')} record ({err.message.splitlines()[0]})"
    if ids != set(expected) or count != sum(expected.values()):
        stray = sorted(ids - set(expected))
        return (f"holds {count} records but not the videos the manifest lists for it"
                + (f" (e.g. {stray[0]}: a shard of another split or dataset?)" if stray else ""))
    return None


def check_shard(root, rel: str, manifest: dict, quick: bool = False, expected: dict | None = None,
                records: bool = False) -> Problem | None:
    """What is wrong with one listed shard, or None.

    A SHA-256 equal to the one recorded at writing proves the bytes are those written (whose
    records were serialised by the schema), so its records are parsed only with ``records``; a
    shard without a recorded checksum (older manifests) is always streamed through TFRecord's
    CRCs and the parser. ``expected`` ({video id: records}) defaults to the manifest's."""
    recorded = manifest.get("files", {}).get(rel)
    problem = quick_problem(root, rel, recorded)
    if problem or quick:
        return problem
    path = storage.join(root, rel)
    expected = expected if expected is not None else records_by_shard(manifest).get(rel, {})
    if recorded:
        if sha256(path) != recorded["sha256"]:
            return Problem(path, "checksum differs from the one recorded when it was written (corrupted)", REPREPARE)
        if recorded["records"] != sum(expected.values()):
            return Problem(path, f"holds {recorded['records']} records, the manifest lists "
                           f"{sum(expected.values())} in it",
                           REPREPARE)
        if not records:
            return None
    what = _check_records(path, manifest, expected)
    return Problem(path, what, REPREPARE) if what else None


def feature_index(folder) -> dict:
    path = Path(folder) / FEATURE_INDEX
    return json.loads(path.read_text()) if path.is_file() else {}


def record_feature_file(path, videos: int) -> None:
    """Add a finished feature file to its folder's features.json (atomically)."""
    folder = os.path.dirname(os.path.abspath(path))
    index_path = os.path.join(folder, FEATURE_INDEX)
    index = feature_index(folder)
    index[os.path.basename(path)] = describe(path, videos)
    tmp = index_path + ".tmp"
    with open(tmp, "w") as f:
        json.dump(index, f, indent=1)
    os.replace(tmp, index_path)


def check(root, quick: bool = False, jobs: int = 4, records: bool = False) -> tuple[list[Problem], dict]:
    """Every problem of a prepared dataset (manifest.json), and what was read (feature folders:
    fer_keras.data.features.check_folder)."""
    root = str(root)
    manifest = _manifest(root)
    listed = shards(manifest)
    by_shard = records_by_shard(manifest)
    problems = []
    for rel in sorted(by_shard):
        if rel not in listed:
            problems.append(Problem(storage.join(root, rel), "holds videos of the manifest but is not listed "
                                    "in any split", REPREPARE))
    with ThreadPoolExecutor(max(1, jobs)) as pool:  # hashing and TF reading release the GIL
        found = pool.map(lambda rel: check_shard(root, rel, manifest, quick, by_shard.get(rel, {}), records), listed)
        problems += [p for p in found if p is not None]
    sizes = [storage.size(storage.join(root, r)) for r in listed if storage.isfile(storage.join(root, r))]
    return problems, {"files": len(listed), "bytes": sum(sizes)}


def locate(root, error) -> str:
    """One line for a read error met during training or evaluation: the damaged file, found by a
    full check of the dataset, or the error itself when the check finds nothing."""
    first = str(getattr(error, "message", error)).splitlines()[0]
    try:
        problems, _ = check(root)
    except (FileNotFoundError, ValueError) as err:
        return f"{err} (while reading: {first})"
    if problems:
        more = f" (and {len(problems) - 1} more: fer-keras verify {root})" if len(problems) > 1 else ""
        return problems[0].line() + more
    return f"{root}: reading the dataset failed ({first}); `fer-keras verify {root}` finds every listed file intact"


@contextmanager
def named_data_errors(root):
    """Turn TensorFlow's bare read errors (a corrupt record, a vanished shard) into one line naming
    the file; the original error stays chained for `-v`. KerasTuner reports a trial's read error as
    a RuntimeError after failed trials: that too is named when the dataset has a damaged file."""
    import tensorflow as tf

    try:
        yield
    except (tf.errors.DataLossError, tf.errors.NotFoundError) as err:
        raise ValueError(locate(root, err)) from err
    except RuntimeError as err:
        problems, _ = check(root)
        if problems:
            raise ValueError(problems[0].line()) from err
        raise
