"""tf.data input pipelines from prepared shards: parse, chunk into sequences, pad + mask,
shuffle by sequence, sequence-consistent augmentation, batch, prefetch.

Videos are split into non-overlapping sequences of length L; the last one is padded by
repeating its last frame (thesis 000) or with zeros (thesis 002), and a 0/1 ``mask`` marks
the real steps. Chunking happens on the encoded JPEG bytes, so padding costs no decoding.
"""
from dataclasses import dataclass, field

import tensorflow as tf

from fer_keras.data.schema import dataset_from_manifest

INPUTS = ("frames", "lld", "functionals")
NORMALIZE = {"unit": (1 / 255.0, 0.0), "symmetric": (2 / 255.0, -1.0), "none": (1.0, 0.0)}


@dataclass
class Augment:
    """Random transforms drawn once per sequence and applied to all of its frames."""
    flip: bool = False
    brightness: float = 0.0   # max absolute delta, in [0, 1] units
    contrast: float = 0.0     # max relative change
    crop: float = 0.0         # max fraction of the side cropped before resizing back


@dataclass
class PipelineConfig:
    seq_len: int = 40
    padding: str = "repeat"           # "repeat" (thesis 000) or "zeros" (thesis 002)
    inputs: tuple = ("frames",)
    image_size: int | None = None     # resize faces; None keeps the prepared size
    normalize: str = "unit"
    batch_size: int = 4
    shuffle_buffer: int = 512
    augment: Augment = field(default_factory=Augment)
    cache: bool = False
    seed: int = 0

    def __post_init__(self):
        if self.padding not in ("repeat", "zeros"):
            raise ValueError(f"padding must be 'repeat' or 'zeros', got {self.padding!r}")
        unknown = sorted(set(self.inputs) - set(INPUTS))
        if unknown:
            raise ValueError(f"unknown input(s) {unknown}; known: {', '.join(INPUTS)}")
        if self.normalize not in NORMALIZE:
            raise ValueError(f"normalize must be one of {', '.join(NORMALIZE)}, got {self.normalize!r}")
        if isinstance(self.augment, dict):
            self.augment = Augment(**self.augment)


def _chunks(record, seq_len):
    """One video -> a dataset of its sequences (encoded frames, indices clipped for padding)."""
    n = tf.shape(record["frames"])[0]
    count = tf.maximum((n + seq_len - 1) // seq_len, 1)
    steps = tf.range(count * seq_len)
    index = tf.reshape(tf.minimum(steps, n - 1), (count, seq_len))
    mask = tf.reshape(tf.cast(steps < n, tf.float32), (count, seq_len))
    per_chunk = {
        "frames": tf.gather(record["frames"], index),
        "lld": tf.gather(record["audio_lld"], index),
        "mask": mask,
        "sequence": tf.range(count),
    }
    shared = {"video_id": record["video_id"], "label": record["label"],
              "functionals": record["audio_functionals"]}
    repeated = {k: tf.repeat(v[None], count, axis=0) for k, v in shared.items()}
    return tf.data.Dataset.from_tensor_slices({**per_chunk, **repeated})


def _augment(frames, aug: Augment, seed):
    """Apply one random draw of ``aug`` to all frames (T, H, W, 3) float in [0, 255]."""
    if aug.flip:
        flip = tf.random.stateless_uniform([], seed) < 0.5
        frames = tf.cond(flip, lambda: tf.reverse(frames, axis=[2]), lambda: frames)
    if aug.crop:
        side = tf.shape(frames)[1]
        keep = 1.0 - tf.random.stateless_uniform([], seed + 1, 0.0, aug.crop)
        size = tf.cast(tf.cast(side, tf.float32) * keep, tf.int32)
        offset = tf.random.stateless_uniform([2], seed + 2, 0, tf.cast(side - size + 1, tf.float32))
        offset = tf.cast(offset, tf.int32)
        frames = frames[:, offset[0]:offset[0] + size, offset[1]:offset[1] + size]
        frames = tf.image.resize(frames, (side, side))
    if aug.brightness:
        frames = frames + 255.0 * tf.random.stateless_uniform([], seed + 3, -aug.brightness, aug.brightness)
    if aug.contrast:
        factor = tf.random.stateless_uniform([], seed + 4, 1 - aug.contrast, 1 + aug.contrast)
        mean = tf.reduce_mean(frames, axis=[1, 2, 3], keepdims=True)
        frames = (frames - mean) * factor + mean
    return tf.clip_by_value(frames, 0.0, 255.0)


def sequences(manifest, root, split, cfg: PipelineConfig, *, training=False, with_meta=False):
    """Batched ``(inputs, targets)`` (or ``(inputs, targets, meta)``) for one split.

    ``inputs`` holds the configured inputs plus ``mask``; ``targets`` holds a one-hot
    ``category`` (all zeros for unlabelled videos); ``meta`` holds ``video_id``, ``label`` and
    ``sequence`` so predictions can be aggregated per video. Deterministic for a given seed.
    """
    classes = len(manifest["classes"])
    scale, shift = NORMALIZE[cfg.normalize]
    ds = dataset_from_manifest(manifest, root, split, decode=False)
    ds = ds.filter(lambda r: r["num_frames"] > 0)
    ds = ds.flat_map(lambda r: _chunks(r, cfg.seq_len))
    if cfg.cache:
        ds = ds.cache()
    if training:
        ds = ds.shuffle(cfg.shuffle_buffer, seed=cfg.seed, reshuffle_each_iteration=True)
    ds = ds.enumerate()

    def to_example(position, item):
        x = {"mask": item["mask"]}
        if "frames" in cfg.inputs:
            frames = tf.map_fn(lambda b: tf.io.decode_jpeg(b, channels=3), item["frames"],
                               fn_output_signature=tf.TensorSpec([None, None, 3], tf.uint8))
            frames = tf.cast(frames, tf.float32)
            if cfg.image_size:
                frames = tf.image.resize(frames, (cfg.image_size, cfg.image_size))
            if training:
                frames = _augment(frames, cfg.augment, tf.stack([tf.cast(cfg.seed, tf.int64), position]))
            if cfg.padding == "zeros":
                frames = frames * item["mask"][:, None, None, None]
            x["frames"] = frames * scale + shift
        if "lld" in cfg.inputs:
            x["lld"] = item["lld"] * (item["mask"][:, None] if cfg.padding == "zeros" else 1.0)
        if "functionals" in cfg.inputs:
            x["functionals"] = item["functionals"]
        label = tf.cast(item["label"], tf.int32)
        y = {"category": tf.one_hot(label, classes)}  # UNLABELLED (-1) gives all zeros
        meta = {"video_id": item["video_id"], "label": label, "sequence": item["sequence"]}
        return (x, y, meta) if with_meta else (x, y)

    ds = ds.map(to_example, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
    return ds.batch(cfg.batch_size).prefetch(tf.data.AUTOTUNE)
