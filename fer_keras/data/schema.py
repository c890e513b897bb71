"""The one SequenceExample schema of prepared video datasets (DESIGN.md, "Sequence records").

Writing happens in plain Python (protobufs, no TF ops) so preparation workers stay light;
parsing is a TF function so every tf.data pipeline uses the same parser.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import tensorflow as tf

from fer_keras import storage

# 2: per-frame presentation time (`frame_time`, s) and `audio_mask`; version 1 records still parse.
# 3: a track's `segment` number (context) and per-frame face `box` and `category` (valence/arousal
#    video datasets); version 2 records parse with segment 0 and without them.
SCHEMA_VERSION = 3
UNLABELLED = -1


@dataclass
class VideoRecord:
    """Everything one prepared video contributes to a shard."""

    video_id: str
    label: int
    fps: float
    face_size: int
    frames: list[bytes]  # encoded face crops (JPEG or PNG), one per kept frame
    frame_index: np.ndarray  # source frame index (0-based) of each kept frame
    audio_lld: np.ndarray  # (kept frames, lld_dim) float32; zeros where no audio is under a frame
    frame_time: np.ndarray | None = None  # presentation time (s) of each kept frame; None: index / fps
    audio_mask: np.ndarray | None = None  # 1 where audio lies under the frame; None: has_audio
    audio_functionals: np.ndarray = field(default_factory=lambda: np.zeros(0, np.float32))
    has_audio: bool = True
    source_frames: int = 0
    dataset: str = ""
    valence_arousal: np.ndarray | None = None  # (kept frames, 2) float32, where annotated
    action_units: np.ndarray | None = None  # (kept frames, n_aus) float32; losses.AU_UNKNOWN = unknown
    box: np.ndarray | None = None  # (kept frames, 4) face box x, y, w, h in source pixels
    category: np.ndarray | None = None  # (kept frames,) int class index, UNLABELLED where not annotated
    segment: int = 0  # the record's place in its track: a long track is written as consecutive segments


def _bytes(values):
    return tf.train.Feature(bytes_list=tf.train.BytesList(value=values))


def _ints(values):
    return tf.train.Feature(int64_list=tf.train.Int64List(value=[int(v) for v in values]))


def _floats(values):
    return tf.train.Feature(float_list=tf.train.FloatList(value=np.asarray(values, np.float32).ravel()))


def serialize(rec: VideoRecord) -> bytes:
    """Serialise a VideoRecord to SequenceExample bytes."""
    n = len(rec.frames)
    if len(rec.frame_index) != n or len(rec.audio_lld) != n:
        raise ValueError(
            f"video {rec.video_id}: {n} frames but {len(rec.frame_index)} indices "
            f"and {len(rec.audio_lld)} LLD rows"
        )
    frame_time = rec.frame_time if rec.frame_time is not None else np.asarray(rec.frame_index) / rec.fps
    audio_mask = rec.audio_mask if rec.audio_mask is not None else np.full(n, int(rec.has_audio))
    if len(frame_time) != n or len(audio_mask) != n:
        raise ValueError(f"video {rec.video_id}: {n} frames but {len(frame_time)} times "
                         f"and {len(audio_mask)} audio mask entries")
    per_frame = {"va": rec.valence_arousal, "au": rec.action_units, "box": rec.box}
    per_frame = {k: np.asarray(v, np.float32) for k, v in per_frame.items() if v is not None}
    widths = {"va": 2, "box": 4}
    for name, rows in per_frame.items():
        if rows.ndim != 2 or len(rows) != n or rows.shape[1] != widths.get(name, rows.shape[1]):
            expected = f"(frames, {widths[name]})" if name in widths else "(frames, n_aus)"
            raise ValueError(
                f"video {rec.video_id}: per-frame {name} labels have shape {rows.shape}, "
                f"expected {expected} with {n} frames"
            )
    category = None if rec.category is None else np.asarray(rec.category, np.int64).reshape(-1)
    if category is not None and len(category) != n:
        raise ValueError(f"video {rec.video_id}: {len(category)} per-frame categories for {n} frames")
    context = tf.train.Features(
        feature={
            "video_id": _bytes([rec.video_id.encode()]),
            "dataset": _bytes([rec.dataset.encode()]),
            "label": _ints([rec.label]),
            "fps": _floats([rec.fps]),
            "face_size": _ints([rec.face_size]),
            "num_frames": _ints([n]),
            "source_frames": _ints([rec.source_frames]),
            "has_audio": _ints([int(rec.has_audio)]),
            "audio_functionals": _floats(rec.audio_functionals),
            "segment": _ints([rec.segment]),
        }
    )
    lists = {
        "frames": tf.train.FeatureList(feature=[_bytes([f]) for f in rec.frames]),
        "frame_index": tf.train.FeatureList(feature=[_ints([i]) for i in rec.frame_index]),
        "frame_time": tf.train.FeatureList(feature=[_floats([t]) for t in frame_time]),
        "audio_mask": tf.train.FeatureList(feature=[_ints([m]) for m in audio_mask]),
        "audio_lld": tf.train.FeatureList(feature=[_floats(row) for row in rec.audio_lld]),
        **{k: tf.train.FeatureList(feature=[_floats(row) for row in v]) for k, v in per_frame.items()},
    }
    if category is not None:
        lists["category"] = tf.train.FeatureList(feature=[_ints([c]) for c in category])
    example = tf.train.SequenceExample(
        context=context, feature_lists=tf.train.FeatureLists(feature_list=lists)
    )
    return example.SerializeToString()


def parse(serialized, lld_dim: int, functionals_dim: int, face_size: int, decode: bool = True,
          *, va: bool = False, au_dim: int = 0, box: bool = False, category: bool = False):
    """Parse one serialised record into a dict of tensors (a tf.data map function).

    `lld_dim`, `functionals_dim` and `face_size` come from the dataset's manifest.json, and so
    do `va`, `au_dim`, `box` and `category` (its "labels"), which add the per-frame ``va``
    (frames, 2), ``au`` (frames, au_dim) and ``box`` (frames, 4) floats and ``category`` (frames,)
    ints. A record whose label rows do not match its frames (or that lacks
    them) fails at iteration with its video id, instead of misaligning labels and frames.
    Version 1 records (before presentation times) get ``frame_time = frame_index / fps`` and an
    ``audio_mask`` equal to ``has_audio``, which is what they assumed.
    """
    context_spec = {
        "video_id": tf.io.FixedLenFeature([], tf.string),
        "dataset": tf.io.FixedLenFeature([], tf.string),
        "label": tf.io.FixedLenFeature([], tf.int64),
        "fps": tf.io.FixedLenFeature([], tf.float32),
        "face_size": tf.io.FixedLenFeature([], tf.int64),
        "num_frames": tf.io.FixedLenFeature([], tf.int64),
        "source_frames": tf.io.FixedLenFeature([], tf.int64),
        "has_audio": tf.io.FixedLenFeature([], tf.int64),
        "segment": tf.io.FixedLenFeature([], tf.int64, default_value=0),
    }
    if functionals_dim:
        context_spec["audio_functionals"] = tf.io.FixedLenFeature([functionals_dim], tf.float32)
    sequence_spec = {
        "frames": tf.io.FixedLenSequenceFeature([], tf.string),
        "frame_index": tf.io.FixedLenSequenceFeature([], tf.int64),
        "frame_time": tf.io.FixedLenSequenceFeature([], tf.float32, allow_missing=True),
        "audio_mask": tf.io.FixedLenSequenceFeature([], tf.int64, allow_missing=True),
    }
    if lld_dim:  # a dataset without audio (BU-4DFE, FER2013) has none; TF cannot parse width 0
        sequence_spec["audio_lld"] = tf.io.FixedLenSequenceFeature([lld_dim], tf.float32)
    per_frame = {"va": 2} if va else {}
    if au_dim:
        per_frame["au"] = au_dim
    if box:
        per_frame["box"] = 4
    for name, dim in per_frame.items():
        sequence_spec[name] = tf.io.FixedLenSequenceFeature([dim], tf.float32, allow_missing=True)
    if category:
        sequence_spec["category"] = tf.io.FixedLenSequenceFeature([], tf.int64, allow_missing=True)
        per_frame["category"] = 1
    context, sequence = tf.io.parse_single_sequence_example(
        serialized, context_features=context_spec, sequence_features=sequence_spec
    )
    kept = tf.shape(sequence["frames"])[0]
    if not lld_dim:
        sequence["audio_lld"] = tf.zeros([kept, 0], tf.float32)
    v1 = tf.equal(tf.shape(sequence["frame_time"])[0], 0)  # a schema-1 record: derive both
    sequence["frame_time"] = tf.cond(
        v1, lambda: tf.cast(sequence["frame_index"], tf.float32) / context["fps"], lambda: sequence["frame_time"])
    sequence["audio_mask"] = tf.cond(
        v1, lambda: tf.fill([kept], context["has_audio"]), lambda: sequence["audio_mask"])
    for name in per_frame:
        rows = tf.shape(sequence[name])[0]
        check = tf.debugging.Assert(tf.equal(rows, kept), [
            "video", context["video_id"], "has", rows, f"per-frame {name} rows for", kept, "frames"])
        with tf.control_dependencies([check]):
            sequence[name] = tf.identity(sequence[name])
    if not functionals_dim:
        context["audio_functionals"] = tf.zeros([0], tf.float32)
    out = {**context, **sequence}
    if decode:
        frames = tf.map_fn(
            lambda b: tf.io.decode_image(b, channels=3, expand_animations=False),
            sequence["frames"],
            fn_output_signature=tf.TensorSpec([None, None, 3], tf.uint8),
        )
        out["frames"] = tf.ensure_shape(frames, [None, face_size, face_size, 3])
    return out


def frame_labels(manifest: dict) -> tuple[bool, int]:
    """``(va, au_dim)`` of a manifest's per-frame labels; manifests older than them have none."""
    labels = manifest.get("labels", {})
    return bool(labels.get("va", False)), int(labels.get("au_dim", 0))


def record_fields(manifest: dict) -> dict:
    """The per-frame keyword arguments of :func:`parse` that a manifest's records carry."""
    va, au_dim = frame_labels(manifest)
    labels = manifest.get("labels", {})
    return {"va": va, "au_dim": au_dim, "box": bool(labels.get("box", False)),
            "category": bool(labels.get("categories"))}


INTERLEAVE = 64  # shards read at once, one record from each in turn (round robin)


def shard_paths(manifest: dict, root, split) -> list[str]:
    """The shard files of one split (or a list of splits), in manifest order."""
    names = [split] if isinstance(split, str) else list(split)
    return [storage.join(root, s) for name in names for s in manifest["splits"].get(name, {}).get("shards", [])]


def read_shards(files, manifest: dict, decode: bool = True, ids=None, interleave: bool = False) -> tf.data.Dataset:
    """Parsed records of ``files`` (a list or a 1-D string tensor of shard paths).

    In file order, or with ``interleave`` one record from each of up to ``INTERLEAVE`` shards in
    turn: shards written in class order then still give a stream whose every stretch holds
    every class. ``ids`` keeps only the records of those video ids (a fold of a split file)."""
    paths = tf.data.Dataset.from_tensor_slices(tf.constant(files, tf.string) if isinstance(files, list) else files)
    if interleave:
        ds = paths.interleave(tf.data.TFRecordDataset, cycle_length=INTERLEAVE, block_length=1,
                              num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
    else:
        ds = tf.data.TFRecordDataset(paths)
    fields = record_fields(manifest)
    ds = ds.map(
        lambda x: parse(
            x, manifest["audio"]["lld_dim"], manifest["audio"]["functionals_dim"],
            manifest["options"]["face_size"], decode, **fields,
        ),
        num_parallel_calls=tf.data.AUTOTUNE,
    )
    if ids is not None:
        ids = sorted(set(ids))
        if not ids:
            return ds.take(0)
        keep = tf.lookup.StaticHashTable(tf.lookup.KeyValueTensorInitializer(
            tf.constant(ids, tf.string), tf.ones([len(ids)], tf.int32)), default_value=0)
        ds = ds.filter(lambda r: keep.lookup(r["video_id"]) > 0)
    return ds


def dataset_from_manifest(manifest: dict, root, split, decode: bool = True, ids=None) -> tf.data.Dataset:
    """Records of one split (or a list of splits) of a prepared dataset, parsed, in shard order.

    ``ids`` keeps only the records of those video ids (a fold of a split file)."""
    return read_shards(shard_paths(manifest, root, split), manifest, decode, ids)
