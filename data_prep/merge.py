"""``fer-keras merge PART... OUT``: the shares of a preparation made with ``--shard I/N`` (in one
shared OUT or in one OUT each) joined into one prepared dataset.

Each share's shards, partial manifest and failure log are linked (or copied, across file systems)
into OUT, each through a temporary name, and the store of OUT adopts them (data_prep/store.py,
``_adopt_parts``), so a killed merge is finished by running it again. Before anything is written,
the parts must make one whole: one share count, every share present and finished, the same
dataset and options.
"""
from __future__ import annotations

import logging
import os
import shutil

from data_prep.store import PreparedStore, differences, part_files, part_manifests, read_json, safe_join
from fer_keras import storage
from fer_keras.data.integrity import check_shard
from fer_keras.data.manifest import MANIFEST

log = logging.getLogger(__name__)

# What a partial manifest holds beyond the header the merged manifest starts from.
_STATE = ("schema_version", "splits", "videos", "files", "share", "complete", "merged_shares")


def merge(parts, out) -> dict:
    """Join the shares found in the ``parts`` folders into ``out``; returns the merged manifest."""
    found = _shares(parts)
    merged = _already_merged(out)
    _check(found, merged)
    for folder, path, manifest in found.values():
        damaged = [p for p in (check_shard(folder, rel, manifest, quick=True)
                               for info in manifest["splits"].values() for rel in info["shards"]) if p]
        if damaged:
            raise ValueError(f"{damaged[0].path}: {damaged[0].what}; rerun the share's `fer-keras prepare ... "
                             f"--shard {'{}/{}'.format(*manifest['share'])}` (it prepares that shard's videos "
                             "again), then merge")
    first = found[min(found)]
    for folder, path, manifest in found.values():
        if not _same(folder, out):
            _bring(folder, path, manifest, out)
    header = {k: v for k, v in first[2].items() if k not in _STATE}
    return PreparedStore(out, header).close()


def dataset_of(parts) -> str:
    """The dataset the shares in ``parts`` hold (that of the lowest share; ``merge`` checks the rest)."""
    found = _shares(parts)
    return found[min(found)][2]["dataset"]


def _shares(parts) -> dict:
    """{share index: (folder, partial manifest path, manifest)} of every part folder."""
    found = {}
    for folder in parts:
        paths = part_manifests(folder)
        if not paths:
            whole = storage.exists(storage.join(folder, MANIFEST))
            raise FileNotFoundError(
                f"{folder}: no partial manifest (manifest-I-of-N.json)" + (
                    f"; it holds a whole preparation ({MANIFEST}), not a share" if whole else
                    "; is it the OUT of a `fer-keras prepare NAME --shard I/N` run?"))
        for path in paths:
            manifest = read_json(path)
            index = manifest["share"][0]
            if index in found and not _same(found[index][1], path):
                raise ValueError(f"share {index} twice: {found[index][1]} and {path}; give each share once")
            found[index] = (folder, path, manifest)
    return found


def _already_merged(out) -> dict | None:
    path = storage.join(out, MANIFEST)
    return read_json(path) if storage.exists(path) else None


def _check(found: dict, merged: dict | None) -> None:
    """Refuse parts that do not make one whole, naming the files and what differs."""
    counts = {manifest["share"][1] for _, _, manifest in found.values()}
    if len(counts) > 1:
        raise ValueError("the parts were prepared with different share counts (" + ", ".join(
            storage.split(p)[1] for _, p, _ in found.values()) + "); give the shares of one --shard I/N run")
    count = counts.pop()
    first_path, first = found[min(found)][1:]
    for _, path, manifest in found.values():
        changed = differences(first, manifest)
        if changed:
            raise ValueError(f"{path} and {first_path} were prepared with different {', '.join(changed)}; "
                             "only shares of one preparation merge")
    if merged is not None:
        changed = differences(first, merged)
        if changed:
            raise ValueError(f"the OUT's {MANIFEST} was prepared with different {', '.join(changed)}; "
                             "merge into a new OUT")
    done = set(merged.get("merged_shares", [])) if merged else set()
    missing = sorted(set(range(count)) - set(found) - done)
    if missing:
        raise ValueError(
            f"shares {', '.join(f'{i}/{count}' for i in missing)} are missing (not run, or killed before "
            f"their first shard); prepare them (--shard I/{count}), "
            "or run `fer-keras prepare` without --shard into the shared OUT, which prepares what no share did")
    unfinished = [path for _, path, manifest in found.values() if not manifest.get("complete")]
    if unfinished:
        raise ValueError(f"{', '.join(unfinished)}: the share did not finish (killed or still running); "
                         "rerun its `fer-keras prepare ... --shard I/N` (it resumes), then merge")


def _bring(folder, path, manifest: dict, out) -> None:
    """Link or copy a share's files into ``out``: its shards, its failure log, its manifest last."""
    shard = "{}/{}".format(*manifest["share"])
    names = [rel for info in manifest["splits"].values() for rel in info["shards"]]
    failures = part_files(shard)[1]
    if storage.exists(storage.join(folder, failures)):
        names.append(failures)
    for rel in names:
        _place(storage.join(folder, rel), safe_join(out, rel), keep_same_size=rel != failures)
    _place(path, storage.join(out, storage.split(path)[1]), keep_same_size=False)
    log.info("brought share %s from %s", shard, folder)


def _place(source: str, target: str, keep_same_size: bool) -> None:
    """``source`` at ``target``, whole or not at all: a hard link where the file system allows, else
    a copy (``tf.io.gfile`` between remote file systems), made under a temporary name and renamed.
    A shard already there at its size is kept (a rerun of a killed merge; its store checks every
    adopted shard's size against the manifest)."""
    if not storage.exists(source):
        raise FileNotFoundError(f"{source}: listed by its share's manifest but missing")
    if keep_same_size and storage.exists(target) and storage.size(target) == storage.size(source):
        return
    storage.makedirs(storage.split(target)[0])
    tmp = target + ".merge-tmp"
    if storage.exists(tmp):
        storage.remove(tmp)
    if storage.is_remote(source) or storage.is_remote(target):
        storage.copy(source, tmp)
    else:
        try:
            os.link(source, tmp)
        except OSError:
            shutil.copyfile(source, tmp)
    storage.replace(tmp, target)


def _same(a, b) -> bool:
    """Whether two paths name one file or folder (remote ones by their text)."""
    if storage.is_remote(a) or storage.is_remote(b):
        return str(a).rstrip("/") == str(b).rstrip("/")
    return os.path.realpath(a) == os.path.realpath(b)


