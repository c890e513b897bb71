"""The prepared-dataset directory: shards, manifest.json and failures.jsonl (DESIGN.md contracts).

A shard is written to a temporary name and renamed only when complete, its size, record count
and SHA-256 go into the manifest's ``files``, and the manifest (the record of what is done) is
rewritten atomically after every shard and every failure. A rerun therefore skips finished
videos, deletes leftovers of a killed run, never sees half a shard, and first checks the shards
it keeps (sizes; checksums and records with ``verify``): the videos of a missing or damaged shard
are forgotten, so they are prepared again, and the repair is logged in failures.jsonl.

A store made with ``shard="I/N"`` holds one worker's share (data_prep/share.py): it keeps
``manifest-I-of-N.json`` and ``failures-I-of-N.jsonl`` and names its shards ``<split>-I-of-N-<k>``,
so N workers may write one OUT at once, each resuming and cleaning up only its own files. A store
without a share adopts the partial manifests it finds in its OUT (``_adopt_parts``): the final run
of a shared OUT, and ``fer-keras merge`` of separate ones, join the shares into one dataset.
"""
from __future__ import annotations

import json
import logging
import os
import posixpath

import cv2
import numpy as np
import tensorflow as tf

from data_prep import share
from fer_keras import storage
from fer_keras.data import integrity
from fer_keras.data.manifest import FAILURES, MANIFEST
from fer_keras.durable import killpoint, write_atomic
from fer_keras.data.schema import SCHEMA_VERSION

log = logging.getLogger(__name__)


def encode_image(image: np.ndarray, image_format: str, jpeg_quality: int = 95) -> bytes:
    """A frame as record bytes: RGB (H, W, 3) or grey (H, W) as PNG (lossless) or JPEG; every
    reader decodes it to RGB."""
    pixels = cv2.cvtColor(image, cv2.COLOR_RGB2BGR) if image.ndim == 3 else image
    if image_format == "png":
        ok, buf = cv2.imencode(".png", pixels)
    else:
        ok, buf = cv2.imencode(".jpg", pixels, [cv2.IMWRITE_JPEG_QUALITY, jpeg_quality])
    if not ok:
        raise RuntimeError(f"OpenCV could not encode a {image.shape} image as {image_format}")
    return buf.tobytes()


def part_files(shard: str | None) -> tuple[str, str]:
    """(manifest, failures) file names of a share, or of a whole preparation without one."""
    if shard is None:
        return MANIFEST, FAILURES
    i, n = share.parse(shard)
    return f"manifest-{i}-of-{n}.json", f"failures-{i}-of-{n}.jsonl"


def part_manifests(out) -> list[str]:
    """The partial manifests (of ``--shard`` runs) in ``out``, by share."""
    found = storage.glob(storage.join(storage.escape(out), "manifest-*-of-*.json"))
    return sorted(found, key=lambda p: share.parse(_part_name(p).replace("-of-", "/"))[::-1])


def _part_name(path) -> str:
    return storage.split(path)[1][len("manifest-"):-len(".json")]


def complete_share(out, shard: str) -> dict:
    """Mark a share's partial manifest complete (its run went through every item it owns): a merge
    takes complete shares only, so a killed worker is never mistaken for a finished one."""
    path = storage.join(out, part_files(shard)[0])
    manifest = {**read_json(path), "complete": True}
    write_atomic(path, json.dumps(manifest, indent=1))
    return manifest


def differences(header: dict, other: dict) -> list[str]:
    """What makes two preparations incompatible: another dataset, or options that differ (named)."""
    if header.get("dataset") != other.get("dataset"):
        return ["dataset"]
    mine, theirs = header.get("options", {}), other.get("options", {})
    return sorted(k for k in set(mine) | set(theirs) if mine.get(k) != theirs.get(k))


def read_json(path) -> dict:
    try:
        return json.loads(storage.read_text(path))
    except json.JSONDecodeError as err:
        raise ValueError(f"{path}: not valid JSON ({err}); move it away to start over") from None


def _key_of(line: str):
    try:
        return json.loads(line).get("key")
    except (json.JSONDecodeError, AttributeError):
        return None


def safe_join(root, *parts) -> str:
    """Join parts under root and refuse any result outside it (parts come from source file names)."""
    if storage.is_remote(root):  # no links on an object store: the joined names alone decide
        rel = posixpath.normpath("/".join(map(str, parts)))
        if rel.startswith(("..", "/")):
            raise ValueError(f"refusing path outside the output directory: {rel!r}")
        return storage.join(root, rel)
    root = os.path.realpath(root)
    path = os.path.realpath(os.path.join(root, *parts))
    if os.path.commonpath([root, path]) != root:
        raise ValueError(f"refusing path outside the output directory: {os.path.join(*parts)!r}")
    return path


class PreparedStore:
    """Accumulates finished videos per split into shards of about `shard_size` records."""

    def __init__(self, out, header: dict, shard_size: int = 32, verify: bool = False, shard: str | None = None):
        self.out = str(out) if storage.is_remote(out) else os.path.abspath(out)
        self.shard_size = shard_size
        self.share = share.parse(shard) if shard else None
        self.manifest_file, self.failures_file = part_files(shard)
        storage.makedirs(self.out)
        self.manifest = self._load_or_start(header)
        self._merged = self._merged_keys(header) if shard else set()
        self._buffers: dict[str, list[tuple[dict, list[bytes]]]] = {}
        if not shard:
            self._adopt_parts()
        self._repair(verify)
        self._remove_leftovers()
        self._reconcile_failures()

    # -- state ---------------------------------------------------------------------------------
    def _load_or_start(self, header: dict) -> dict:
        path = storage.join(self.out, self.manifest_file)
        share_of = {"share": list(self.share), "complete": False} if self.share else {}
        if not storage.exists(path):
            return {"schema_version": SCHEMA_VERSION, **header, **share_of, "splits": {}, "videos": {}}
        manifest = read_json(path)
        self._refuse_other(manifest, path, header)
        return {**manifest, **share_of}  # a resumed share is complete again only when its run ends

    def _refuse_other(self, manifest: dict, path, header: dict) -> None:
        changed = differences(header, manifest)
        if changed:
            raise ValueError(
                f"{path}: a {manifest.get('dataset')} preparation made with other options "
                f"({', '.join(changed)}); use a new output directory"
            )

    def _merged_keys(self, header: dict) -> set:
        """The items a merged manifest.json in the shared OUT already holds: a share rerun after
        the merge (a requeued array task) finds its items done. The other shares there must have
        been made with the same options (refused now, not at the merge)."""
        for path in part_manifests(self.out):
            self._refuse_other(read_json(path), path, header)
        path = storage.join(self.out, MANIFEST)
        if not storage.exists(path):
            return set()
        merged = read_json(path)
        self._refuse_other(merged, path, header)
        return set(merged["videos"])

    def owns(self, key: str) -> bool:
        """Whether the item ``key`` is this store's to prepare (every item without a share)."""
        return self.share is None or share.owner(key, self.share[1]) == self.share[0]

    def _adopt_parts(self) -> None:
        """Join the shares' partial manifests in OUT into this one: every share's finished videos
        with their shards and failure lines, then the partial files are removed. The manifest
        is saved before any partial file goes, and a share's video already here is left, so a
        kill at any point is redone by the rerun; a share whose shard is missing or damaged
        leaves those videos to be prepared again."""
        parts = part_manifests(self.out)
        counts = {}
        for path in parts:
            part = read_json(path)
            self._refuse_other(part, path, self.manifest)
            counts.setdefault(part["share"][1], []).append(storage.split(path)[1])
            if len(counts) > 1:
                raise ValueError(f"{self.out}: partial manifests of different share counts "
                                 f"({'; '.join(', '.join(v) for v in counts.values())}); merge one count at a time")
            adopted = self._adopt(part)
            self.manifest["merged_shares"] = sorted({*self.manifest.get("merged_shares", []), part["share"][0]})
            failures = storage.join(self.out, part_files(_part_name(path).replace("-of-", "/"))[1])
            if storage.exists(failures):
                lines = [line for line in storage.read_text(failures).splitlines() if _key_of(line) in adopted]
                storage.append_text(storage.join(self.out, FAILURES), "".join(f"{line}\n" for line in lines))
            self._save()
            killpoint("part_adopted")
            for done in (path, failures):
                if storage.exists(done):
                    storage.remove(done)
            log.info("adopted %s: %d videos", storage.split(path)[1], len(adopted))

    def _adopt(self, part: dict) -> set:
        """Take the videos of ``part`` this manifest lacks (an intact shard's as a whole); their keys."""
        videos, files = self.manifest["videos"], self.manifest.setdefault("files", {})
        adopted = set()
        by_shard = {}
        for key, entry in part["videos"].items():
            if key in videos:
                continue
            if entry.get("status") == "ok":
                by_shard.setdefault(entry.get("shard"), []).append(key)
            else:
                videos[key] = entry
                adopted.add(key)
        for split, info in part["splits"].items():
            for rel in info["shards"]:
                keys = by_shard.get(rel)
                if not keys or rel in files:
                    continue
                problem = integrity.check_shard(self.out, rel, part, quick=True)
                if problem is not None:
                    log.warning("%s; its %d videos are prepared again", problem.line().split(";")[0], len(keys))
                    continue
                self.manifest["splits"].setdefault(split, {"shards": []})["shards"].append(rel)
                files[rel] = part["files"][rel]
                for key in keys:
                    videos[key] = part["videos"][key]
                adopted.update(keys)
        return adopted

    def _repair(self, verify: bool) -> None:
        """Forget the shards that are missing or damaged, and their videos, so they are redone."""
        files = self.manifest.setdefault("files", {})
        by_shard = {}
        for key, entry in self.manifest["videos"].items():
            if entry.get("status") == "ok" and entry.get("shard"):
                by_shard.setdefault(entry["shard"], []).append(key)
        repaired = False
        for split, info in self.manifest["splits"].items():
            for rel in list(info["shards"]):
                problem = integrity.check_shard(self.out, rel, self.manifest, quick=not verify)
                if problem is None:
                    continue
                keys = by_shard.get(rel, [])
                log.warning("%s; preparing its %d videos again", problem.line().split(";")[0], len(keys))
                storage.append_text(storage.join(self.out, self.failures_file), json.dumps(
                    {"key": rel, "split": split, "path": problem.path, "reason": "damaged_shard",
                     "message": f"{problem.what}; its {len(keys)} videos are prepared again",
                     "action": "repaired"}) + "\n")
                info["shards"].remove(rel)
                files.pop(rel, None)
                for key in keys:
                    del self.manifest["videos"][key]
                if storage.exists(problem.path):
                    storage.remove(problem.path)
                repaired = True
        if repaired:
            self._save()

    def _remove_leftovers(self) -> None:
        """Delete temporary files and shards that the manifest does not know (a killed run's)."""
        known = {s for split in self.manifest["splits"].values() for s in split["shards"]}
        pattern = f"*-{self.share[0]}-of-{self.share[1]}-*.tfrecord*" if self.share else "*.tfrecord*"
        for path in storage.glob(storage.join(storage.escape(self.out), "*", pattern)):
            rel = "/".join(str(path).replace(os.sep, "/").rsplit("/", 2)[-2:])
            if rel not in known:
                log.warning("removing %s left by an interrupted run", path)
                storage.remove(path)

    def _reconcile_failures(self) -> None:
        """Keep the failures.jsonl lines the manifest covers: a line is written before the
        manifest that records its video, so a kill between the two leaves one the rerun writes
        again (a skipped or kept line of a video the manifest lacks is dropped, a line logged
        twice, such as a repair redone, is kept once, and a torn last line is dropped)."""
        path = storage.join(self.out, self.failures_file)
        if not storage.exists(path):
            return
        lines = storage.read_text(path).splitlines()
        videos, kept, seen = self.manifest["videos"], [], set()
        for line in lines:
            try:
                item = json.loads(line)
            except json.JSONDecodeError:
                continue
            entry = videos.get(item.get("key"), {})
            covered = {"skipped": entry.get("status", "ok") != "ok",
                       "kept": entry.get("status") == "ok" and item.get("reason") in
                       {flag["reason"] for flag in entry.get("flags", [])}}.get(item.get("action"), True)
            if covered and line not in seen:
                kept.append(line)
                seen.add(line)
        if kept != lines:
            write_atomic(path, "".join(f"{line}\n" for line in kept))

    def is_done(self, key: str) -> bool:
        return key in self.manifest["videos"] or key in self._merged

    # -- writing -------------------------------------------------------------------------------
    def add(self, entry: dict, record: bytes | list[bytes]) -> None:
        """Queue a prepared video (one record, or a long track's segment records, which share
        its shard); a shard is written once `shard_size` records of a split wait.

        A video the manifest already has is ignored (a resumed item redoing what was written)."""
        if self.is_done(entry["key"]):
            return
        records = [record] if isinstance(record, bytes) else list(record)
        if len(records) > 1:
            entry["segments"] = len(records)
        buf = self._buffers.setdefault(entry["split"], [])
        buf.append((entry, records))
        tail = self._short_tail(entry["split"])
        if sum(len(r) for _, r in buf) >= self.shard_size - (tail[1] if tail else 0):
            self.flush(entry["split"])

    def fail(self, entry: dict, save: bool = True) -> None:
        """Record a video that could not be used; it is skipped (not retried) on a rerun.

        `save=False` leaves the manifest to the next shard or close(): a source with many bad rows
        would otherwise rewrite the whole manifest once per row. A kill before then redoes (and
        logs again) only those failures.
        """
        self._log_failure(entry, "skipped")
        self.manifest["videos"][entry["key"]] = entry
        if save:
            self._save()

    def _short_tail(self, split: str) -> tuple[str, int] | None:
        """(shard, videos) of the split's last shard when it holds fewer than `shard_size`: the
        shard an interrupted run wrote from what it had finished (or a finished run's last)."""
        shards = self.manifest["splits"].get(split, {}).get("shards", [])
        recorded = self.manifest.get("files", {}).get(shards[-1], {}) if shards else {}
        return (shards[-1], recorded["records"]) if recorded.get("records", self.shard_size) < self.shard_size else None

    def flush(self, split: str) -> None:
        """Write the split's queued videos as its next shard. A short last shard is continued: the
        new shard holds its videos, then the queued ones, and replaces it, so a run stopped by
        Ctrl-C and resumed has the shards (contents and order) of an uninterrupted run. The new
        shard is renamed into place before the manifest names it and the replaced one is deleted
        after, so a kill at any point leaves one of the two whole and listed."""
        buf = self._buffers.pop(split, [])
        if not buf:
            return
        info = self.manifest["splits"].setdefault(split, {"shards": []})
        tail = self._short_tail(split)
        before = [raw.numpy() for raw in tf.data.TFRecordDataset(safe_join(self.out, tail[0]))] if tail else []
        taken = [int(s.rsplit("-", 1)[1].split(".")[0]) for s in info["shards"]]
        part = f"-{self.share[0]}-of-{self.share[1]}" if self.share else ""
        rel = f"{split}/{split}{part}-{max(taken, default=-1) + 1:05d}.tfrecord"  # after a repair: never a kept name
        path = safe_join(self.out, rel)
        storage.makedirs(storage.split(path)[0])
        queued = [record for _, records in buf for record in records]
        with tf.io.TFRecordWriter(path + ".tmp") as writer:
            for record in before + queued:
                writer.write(record)
        storage.replace(path + ".tmp", path)
        killpoint("shard_renamed")
        files = self.manifest.setdefault("files", {})
        files[rel] = integrity.describe(path, len(before) + len(queued))
        if tail:
            info["shards"].remove(tail[0])
            files.pop(tail[0])
            for entry in self.manifest["videos"].values():
                if entry.get("shard") == tail[0]:
                    entry["shard"] = rel
        info["shards"].append(rel)
        for entry, _ in buf:
            entry["shard"] = rel
            self.manifest["videos"][entry["key"]] = entry
            for flag in entry.get("flags", []):
                self._log_failure({**entry, "reason": flag["reason"], "message": flag["message"]}, "kept")
        self._save()
        if tail:
            storage.remove(safe_join(self.out, tail[0]))

    def close(self) -> dict:
        """Write every queued video and the final manifest; return the manifest."""
        for split in list(self._buffers):
            self.flush(split)
        self._save()
        return self.manifest

    def _log_failure(self, entry: dict, action: str) -> None:
        line = {k: entry.get(k) for k in ("key", "id", "split", "source", "path", "reason", "message")}
        storage.append_text(storage.join(self.out, self.failures_file), json.dumps({**line, "action": action}) + "\n")

    def _save(self) -> None:
        """Refresh the per-split counts and write the manifest atomically."""
        splits = self.manifest["splits"]
        for entry in self.manifest["videos"].values():
            splits.setdefault(entry["split"], {"shards": []})
        for split, info in splits.items():
            entries = [v for v in self.manifest["videos"].values() if v["split"] == split]
            ok = [v for v in entries if v["status"] == "ok"]
            info.update(videos=len(ok), failed=len(entries) - len(ok),
                        frames=sum(v["frames_kept"] for v in ok))
        write_atomic(storage.join(self.out, self.manifest_file), json.dumps(self.manifest, indent=1))
