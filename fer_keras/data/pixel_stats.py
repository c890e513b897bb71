"""The training split's pixel statistics, computed once and kept beside the prepared data.

Thesis 001 §6.1's mean subtraction "subtracts the mean of all the pixel values from every pixel
in the training set" and its whitening also "divides every pixel value by the standard deviation
of all the pixel values in the training set": one mean and one standard deviation over every
pixel and channel of every training frame (``mean``, ``std``; ``channel_mean`` and
``channel_std`` per RGB channel come from the same pass). Validation and test frames never count.

The training split is what an experiment trains on: ``data.train_split`` of the manifest, or the
training part of ``data.fold`` of its split file with the ``data.augmentations`` copies
(``loader.selection``). Its statistics are written once to ``<root>/pixel_stats/<key>.json``,
the key a hash of the records read and of their shards' recorded checksums, so another fold or
a dataset prepared again gets its own file and every run on the same training split reuses the
first one's numbers. The frames are the decoded faces at the prepared size (before any
``image_size`` resize or augmentation), one frame at a time through tf.data (memory bounded by a
batch of frames), summed as integers: the statistics are exact, whatever the order of reading.
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import os
import uuid

from fer_keras import storage

logger = logging.getLogger(__name__)

STATS_DIR = "pixel_stats"
FRAMES_PER_STEP = 64  # decoded frames summed per tf.data step (about 20 MB as int64 at 112 px)
PARALLEL_STEPS = 4   # steps decoded at once: memory stays a few of them, whatever the split


def training_records(data) -> tuple[list[str], list[str]]:
    """``(shard splits, video ids)`` of the records ``data``'s training split reads."""
    from fer_keras.data import loader

    videos = loader.selection(data, data.train_split)
    if not videos:
        raise ValueError(f"{data.root}: the training split {data.train_split!r} holds no usable video")
    return sorted({v["split"] for v in videos}), sorted({v["id"] for v in videos})


def stats_path(data, manifest: dict, splits, ids) -> str:
    """The file of these training records' statistics: ``<root>/pixel_stats/<key>.json``."""
    from fer_keras.data.integrity import shards

    files = manifest.get("files", {})
    recorded = {rel: (files.get(rel) or {}).get("sha256") or (files.get(rel) or {}).get("size")
                for rel in shards(manifest, splits)}
    text = json.dumps({"splits": list(splits), "ids": list(ids), "shards": recorded}, sort_keys=True)
    return storage.join(data.root, STATS_DIR, f"{hashlib.sha256(text.encode()).hexdigest()[:16]}.json")


def compute(manifest: dict, root, splits, ids) -> dict:
    """Pixel statistics of every frame of the records ``ids`` in the shards of ``splits``."""
    import tensorflow as tf

    from fer_keras.data.schema import read_shards, shard_paths

    decoder = tf.io.decode_png if manifest.get("options", {}).get("image_format") == "png" else tf.io.decode_jpeg
    records = read_shards(shard_paths(manifest, root, splits), manifest, decode=False, ids=ids)

    def sums(encoded):
        frames = tf.cast(tf.map_fn(lambda b: decoder(b, channels=3), encoded,
                                   fn_output_signature=tf.TensorSpec([None, None, 3], tf.uint8)), tf.int64)
        return (tf.cast(tf.reduce_prod(tf.shape(frames)[:3]), tf.int64), tf.reduce_sum(frames, axis=[0, 1, 2]),
                tf.reduce_sum(frames * frames, axis=[0, 1, 2]), tf.shape(frames, out_type=tf.int64)[0])

    steps = (records.flat_map(lambda r: tf.data.Dataset.from_tensor_slices(r["frames"]))
             .batch(FRAMES_PER_STEP).map(sums, num_parallel_calls=PARALLEL_STEPS).prefetch(2))
    n, total, squares, frames = 0, [0, 0, 0], [0, 0, 0], 0
    for count, s, q, f in steps.as_numpy_iterator():  # Python integers: no overflow, no rounding
        n, frames = n + int(count), frames + int(f)
        total = [a + int(b) for a, b in zip(total, s)]
        squares = [a + int(b) for a, b in zip(squares, q)]
    if not n:
        raise ValueError(f"{root}: the training records hold no frame to compute pixel statistics from")

    def moments(count, s, q):  # exact integer arithmetic until the final division
        return s / count, ((q * count - s * s) / (count * count)) ** 0.5

    mean, std = moments(3 * n, sum(total), sum(squares))
    channels = [moments(n, s, q) for s, q in zip(total, squares)]
    return {"mean": mean, "std": std, "channel_mean": [m for m, _ in channels],
            "channel_std": [s for _, s in channels], "pixels": n, "frames": frames, "records": len(ids),
            "splits": list(splits), "face_size": manifest.get("options", {}).get("face_size")}


def _write_whole(path: str, text: str) -> None:
    """``path`` holds ``text`` whole or does not exist: a temporary file of this process, renamed
    (several workers of a search may compute the same file at once)."""
    folder, name = storage.split(path)
    storage.makedirs(folder)
    tmp = storage.join(folder, f".partial-{name}.{os.getpid()}-{uuid.uuid4().hex[:8]}")
    try:
        storage.write_text(tmp, text)
        storage.replace(tmp, path)
    except BaseException:
        if storage.exists(tmp):
            storage.remove(tmp)
        raise


def _read(path: str) -> dict | None:
    """A statistics file's content, or None (with a warning) when it cannot be used."""
    try:
        stats = json.loads(storage.read_text(path))
        if all(isinstance(stats.get(k), (int, float)) for k in ("mean", "std")):
            return stats
        logger.warning("%s: no numeric mean and std; computing them again", path)
    except (OSError, UnicodeDecodeError, ValueError, AttributeError) as err:
        logger.warning("%s: unreadable (%s); computing it again", path, err)
    return None


def ensure(data) -> tuple[dict, str]:
    """``(statistics, file)`` of ``data``'s training split: read from its file, else computed and
    written there first."""
    from fer_keras.data import manifest as manifest_file

    info = manifest_file.read(data.root)
    splits, ids = training_records(data)
    path = stats_path(data, info, splits, ids)
    stats = _read(path) if storage.isfile(path) else None
    if stats is None:
        logger.info("pixel statistics of %d training videos of %s (once, into %s)", len(ids), data.root, path)
        stats = compute(info, data.root, splits, ids)
        _write_whole(path, json.dumps(stats, indent=1))
    return stats, path


def attach(data):
    """``data`` with ``pipeline.pixel_stats`` filled when its ``normalize`` mode needs them and
    none are set (a copy; otherwise ``data`` itself): ``mean``, ``std``, ``channel_mean``,
    ``channel_std`` and ``file`` (relative to ``data.root``)."""
    from fer_keras.data import preprocessing

    pipeline = data.pipeline
    if pipeline.pixel_stats is not None or not preprocessing.needs_statistics(pipeline.normalize):
        return data
    if data.format != "tfrecord":
        raise ValueError(f"normalize {pipeline.normalize!r} computes its constants from the training frames "
                         f"of a prepared dataset; {data.root} holds {data.format} features")
    stats, path = ensure(data)
    kept = {k: stats[k] for k in ("mean", "std", "channel_mean", "channel_std")}
    kept["file"] = os.path.join(STATS_DIR, storage.split(path)[1])
    return dataclasses.replace(data, pipeline=dataclasses.replace(pipeline, pixel_stats=kept))
