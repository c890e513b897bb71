"""The one SequenceExample schema of prepared video datasets (DESIGN.md, "Sequence records").

Writing happens in plain Python (protobufs, no TF ops) so preparation workers stay light;
parsing is a TF function so every tf.data pipeline uses the same parser.
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field

import numpy as np
import tensorflow as tf

SCHEMA_VERSION = 1
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
    audio_lld: np.ndarray  # (kept frames, lld_dim) float32; zeros when the video has no audio
    audio_functionals: np.ndarray = field(default_factory=lambda: np.zeros(0, np.float32))
    has_audio: bool = True
    source_frames: int = 0
    dataset: str = ""


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
        }
    )
    lists = {
        "frames": tf.train.FeatureList(feature=[_bytes([f]) for f in rec.frames]),
        "frame_index": tf.train.FeatureList(feature=[_ints([i]) for i in rec.frame_index]),
        "audio_lld": tf.train.FeatureList(feature=[_floats(row) for row in rec.audio_lld]),
    }
    example = tf.train.SequenceExample(
        context=context, feature_lists=tf.train.FeatureLists(feature_list=lists)
    )
    return example.SerializeToString()


def parse(serialized, lld_dim: int, functionals_dim: int, face_size: int, decode: bool = True):
    """Parse one serialised record into a dict of tensors (a tf.data map function).

    `lld_dim`, `functionals_dim` and `face_size` come from the dataset's manifest.json.
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
        "audio_functionals": tf.io.FixedLenFeature([functionals_dim], tf.float32),
    }
    sequence_spec = {
        "frames": tf.io.FixedLenSequenceFeature([], tf.string),
        "frame_index": tf.io.FixedLenSequenceFeature([], tf.int64),
        "audio_lld": tf.io.FixedLenSequenceFeature([lld_dim], tf.float32),
    }
    context, sequence = tf.io.parse_single_sequence_example(
        serialized, context_features=context_spec, sequence_features=sequence_spec
    )
    out = {**context, **sequence}
    if decode:
        frames = tf.map_fn(
            lambda b: tf.io.decode_image(b, channels=3, expand_animations=False),
            sequence["frames"],
            fn_output_signature=tf.TensorSpec([None, None, 3], tf.uint8),
        )
        out["frames"] = tf.ensure_shape(frames, [None, face_size, face_size, 3])
    return out


def dataset_from_manifest(manifest: dict, root, split: str, decode: bool = True) -> tf.data.Dataset:
    """Records of one split of a prepared dataset, parsed, in shard order."""
    shards = [os.path.join(root, s) for s in manifest["splits"][split]["shards"]]
    ds = tf.data.TFRecordDataset(shards)
    return ds.map(
        lambda x: parse(
            x, manifest["audio"]["lld_dim"], manifest["audio"]["functionals_dim"],
            manifest["options"]["face_size"], decode,
        ),
        num_parallel_calls=tf.data.AUTOTUNE,
    )
