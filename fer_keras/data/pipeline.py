"""tf.data input pipelines from prepared shards: parse, chunk into sequences, pad + mask,
shuffle by sequence (a seeded draw per epoch), sequence-consistent augmentation, batch, prefetch.

Videos are split into non-overlapping sequences of length L; the last one is padded by
repeating its last frame (thesis 000) or with zeros (thesis 002), and a 0/1 ``mask`` marks
the real steps. Chunking happens on the encoded JPEG bytes, so padding costs no decoding.
With ``cache`` the decoded (and resized) real frames of every sequence are kept in memory after
the first epoch, so later epochs skip reading and JPEG decoding, the bulk of the pipeline's work;
random augmentation still happens after the cache, per epoch.
``slim_preprocessing`` (thesis 004) puts TF-Slim's vgg / inception preprocessing geometry in
place of the plain resize: its random crop, flip (and Inception's colour distortion) when
training, one draw per sequence, and its central crop otherwise (``PipelineConfig._check_slim``).
Per-frame targets (valence/arousal, action units) are chunked with the same indices as the
frames, so every label stays on its frame.
"""
import math
import os
from dataclasses import dataclass, field, replace

import tensorflow as tf

from fer_keras.data import preprocessing
from fer_keras.data.augment import Affine, augment_sequence, check_slim, resolve, slim_sequence
from fer_keras.data.schema import frame_labels, read_shards, record_fields, shard_paths
from fer_keras.losses import AU_UNKNOWN

# "image": the one frame of a single-frame sequence (seq_len 1) as (B, H, W, 3), for image models
# (thesis 002's FER2013 fine-tuning, thesis 004); "frames" is (B, L, H, W, 3).
INPUTS = ("frames", "image", "lld", "functionals")
TARGETS = ("category", "va", "au")  # one-hot per video; (L, 2) and (L, n_aus) per frame
PER_FRAME = ("va", "au")
TRUNCATE = (None, "end", "start")


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
    targets: tuple = ("category",)
    image_size: int | None = None     # resize faces; None keeps the prepared size
    normalize: str | None = None      # a fer_keras.data.preprocessing mode; None: the backbone's
                                      # when the model loads weights, else "unit" (config resolves it)
    pixel_stats: dict | None = None   # the training split's pixel statistics, for the normalize modes
                                      # computed from them (mean_subtraction, whitening): filled from
                                      # the prepared data when a run starts (data.pixel_stats.attach),
                                      # so config.yaml keeps the very numbers the run used
    batch_size: int = 4
    shuffle_buffer: int = 512
    augment: Augment = field(default_factory=Augment)
    affine: Affine | None = None      # ImageDataGenerator-style draw per sequence: fields or a preset name
    slim_preprocessing: str | None = None  # TF-Slim's geometry (thesis 004): "vgg" or "inception" (below)
    cache: bool = False               # keep decoded frames in memory after the first epoch
    truncate: str | None = None       # None: a long video gives several sequences; "end" / "start":
                                      # one sequence per video, losing that end (thesis 002: T = 100)
    chain: bool = False               # training windows cut from the split's frames in one list, across
                                      # videos, the rest dropped: thesis 001's reader (see _chained)
    seed: int = 0

    def __post_init__(self):
        if self.padding not in ("repeat", "zeros"):
            raise ValueError(f"padding must be 'repeat' or 'zeros', got {self.padding!r}")
        unknown = sorted(set(self.inputs) - set(INPUTS))
        if unknown:
            raise ValueError(f"unknown input(s) {unknown}; known: {', '.join(INPUTS)}")
        if "image" in self.inputs and self.seq_len != 1:
            raise ValueError(f"input 'image' is one frame: it needs seq_len 1, got {self.seq_len}")
        unknown = sorted(set(self.targets) - set(TARGETS))
        if unknown or not self.targets:
            raise ValueError(f"targets must name some of {', '.join(TARGETS)}, got {tuple(self.targets)}")
        if self.chain and self.truncate:
            raise ValueError(f"chain cuts windows across videos; truncate ({self.truncate!r}) keeps one per video")
        if self.truncate not in TRUNCATE:
            raise ValueError(f"truncate must be one of {', '.join(map(str, TRUNCATE))}, got {self.truncate!r}")
        if self.normalize is not None:
            preprocessing.check(self.normalize)
            if self.pixel_stats is not None and preprocessing.needs_statistics(self.normalize):
                preprocessing.constants(self.normalize, self.pixel_stats)
        if isinstance(self.augment, dict):
            self.augment = Augment(**self.augment)
        self.affine = resolve(self.affine)
        self._check_slim()

    def _check_slim(self):
        """``slim_preprocessing`` is TF-Slim's ``vgg_preprocessing`` / ``inception_preprocessing``
        geometry (augment.slim_apply, slim_eval): training draws slim's random crop (VGG: shorter
        side resized to [256/224, 512/224] x the output side, then a random crop; Inception: a
        sampled distorted box, resized) and flip (Inception: and its colour distortion), one draw
        per sequence; evaluation takes slim's central crop. It replaces the plain resize to
        ``image_size`` (None: the prepared size). Its own crop, flip and colour draws exclude
        those of ``augment`` and ``affine``, refused together rather than stacked."""
        check_slim(self.slim_preprocessing)
        if self.slim_preprocessing is None:
            return
        clashes = [name for name, on in (
            ("augment.crop", self.augment.crop), ("augment.flip", self.augment.flip),
            ("augment.brightness", self.slim_preprocessing == "inception" and self.augment.brightness),
            ("augment.contrast", self.slim_preprocessing == "inception" and self.augment.contrast),
            ("affine", self.affine is not None)) if on]
        if clashes:
            raise ValueError(f"slim_preprocessing {self.slim_preprocessing!r} draws its own crop and flip"
                             f"{' and colour distortion' if self.slim_preprocessing == 'inception' else ''}"
                             f" when training: unset {', '.join(clashes)} (one or the other)")


def _chained(records, seq_len, per_frame=()):
    """Thesis 001's reader (Aff-Wild's ``make_rnn_input_per_seq_length_size``): every frame of the
    records in one list, in order, cut into windows of ``seq_len`` that run on from one video (or
    person) into the next, the remainder dropped. A window takes its first frame's video id. For
    fidelity only: a window across two videos trains a GRU on a cut the data never has."""
    def frames_of(r):
        n = tf.shape(r["frames"])[0]
        return tf.data.Dataset.from_tensor_slices({
            "frames": r["frames"], "lld": r["audio_lld"], "frame_index": r["frame_index"],
            **{name: r[name] for name in per_frame}, "video_id": tf.fill([n], r["video_id"]),
            "label": tf.fill([n], r["label"]), "functionals": tf.repeat(r["audio_functionals"][None], n, axis=0)})

    def window(i, w):
        first = {k: w[k][0] for k in ("video_id", "label", "functionals")}
        return {**w, **first, "mask": tf.ones([seq_len], tf.float32), "sequence": i}

    return records.flat_map(frames_of).batch(seq_len, drop_remainder=True).enumerate().map(window)


def sequences_per_video(frames: int, cfg: PipelineConfig) -> int:
    """How many sequences a video of ``frames`` kept frames gives (steps per epoch need it)."""
    if frames <= 0:
        return 0
    return 1 if cfg.truncate else math.ceil(frames / cfg.seq_len)


def _chunks(record, seq_len, per_frame=(), truncate=None):
    """One video -> a dataset of its sequences (encoded frames, indices clipped for padding).

    ``per_frame`` names the frame labels to chunk alongside; padded AU steps get AU_UNKNOWN so
    the masked AU loss skips them even without a sample weight. With ``truncate`` a video gives
    one sequence: its first ``seq_len`` frames ("end": the end is lost) or its last ("start").
    ``frame_index`` is each step's source frame index, -1 on padded steps, so evaluation can put
    a prediction back on its frame of the video.
    """
    n = tf.shape(record["frames"])[0]
    if truncate:
        first = tf.maximum(n - seq_len, 0) if truncate == "start" else 0
        n = tf.minimum(n, seq_len)
        count = 1
    else:
        first, count = 0, tf.maximum((n + seq_len - 1) // seq_len, 1)
    steps = tf.range(count * seq_len)
    index = tf.reshape(first + tf.minimum(steps, n - 1), (count, seq_len))
    mask = tf.reshape(tf.cast(steps < n, tf.float32), (count, seq_len))
    per_chunk = {
        "frames": tf.gather(record["frames"], index),
        "lld": tf.gather(record["audio_lld"], index),
        "mask": mask,
        "frame_index": tf.where(mask > 0, tf.gather(record["frame_index"], index), tf.constant(-1, tf.int64)),
        "sequence": tf.range(count),
    }
    for name in per_frame:
        per_chunk[name] = tf.gather(record[name], index)
    if "au" in per_frame:
        per_chunk["au"] = tf.where(mask[..., None] > 0, per_chunk["au"], float(AU_UNKNOWN))
    shared = {"video_id": record["video_id"], "label": record["label"],
              "functionals": record["audio_functionals"]}
    repeated = {k: tf.repeat(v[None], count, axis=0) for k, v in shared.items()}
    return tf.data.Dataset.from_tensor_slices({**per_chunk, **repeated})


def _flip(frames, seed):
    """Mirror all frames (T, H, W, C) left-right, or none, as the draw of ``seed`` says."""
    shape = tf.shape(frames)

    def mirror():  # reversing axis 1 of a (T*H, W, C) view is ~3x faster than axis 2 of 4-D
        out = tf.reshape(tf.reverse(tf.reshape(frames, [-1, shape[2], shape[3]]), axis=[1]), shape)
        return tf.ensure_shape(out, frames.shape)

    return tf.cond(tf.random.stateless_uniform([], seed) < 0.5, mirror, lambda: frames)


def _augment(frames, aug: Augment, seed):
    """Apply one random draw of ``aug`` to all frames (T, H, W, 3) float in [0, 255]."""
    if aug.flip:
        frames = _flip(frames, seed)
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


def epoch_seed(cfg: PipelineConfig, epoch):
    """The ``[seed, epoch]`` pair every random draw of a training epoch derives from, so epoch k
    reads, shuffles and augments the same way whether a run starts there (a resume) or not."""
    return tf.stack([tf.cast(cfg.seed, tf.int64), tf.cast(epoch, tf.int64)])


def epoch_shuffle(ds, cfg: PipelineConfig, epoch):
    """``ds`` shuffled in ``cfg.shuffle_buffer`` by a draw of (seed, epoch) alone; call it in the
    function tf.data traces per epoch. That function graph's own seed is dropped first: a
    shuffle combines its seed with the global one, and under ``tf.random.set_seed(0)`` TF's
    ``get_seed`` fails on a tensor seed (it tests the pair against (0, 0) in Python)."""
    tf.compat.v1.get_default_graph().seed = None
    seed = tf.cast(cfg.seed, tf.int64) * 1_000_003 + tf.cast(epoch, tf.int64)
    return ds.shuffle(cfg.shuffle_buffer, seed=seed)


def record_stream(manifest, root, split, cfg: PipelineConfig, *, training=False, epoch=None, ids=None, share=None):
    """The records with kept frames that one epoch reads: in shard order, or when ``training``
    one from each shard in turn, the shards in a new order per ``epoch`` (None: manifest order).
    ``share`` ``(i, n)``: worker i of n reads every n-th file of that order (training across workers)."""
    files = shard_paths(manifest, root, split)
    if training and epoch is not None:
        files = tf.random.experimental.stateless_shuffle(tf.constant(files, tf.string), epoch_seed(cfg, epoch))
    if share is not None:
        files = files[share[0]::share[1]]
    ds = read_shards(files, manifest, decode=False, ids=ids, interleave=training)
    return ds.filter(lambda r: r["num_frames"] > 0)


def sequences(manifest, root, split, cfg: PipelineConfig, *, training=False, with_meta=False, ids=None,
              epoch=0, epochs=1, per_frame_category=False, share=None, steps=None):
    """Batched ``(inputs, targets)`` (or ``(inputs, targets, meta)``) for one split.

    ``split`` is a manifest split or a list of them; ``ids`` keeps only those videos (a fold).

    ``inputs`` holds the configured inputs plus ``mask``; ``targets`` holds one entry per
    ``cfg.targets``: a one-hot ``category`` (all zeros for unlabelled videos; repeated on every
    frame (B, L, C) with ``per_frame_category``, for models with per-frame category heads),
    per-frame ``va`` (B, L, 2) padded like the frames, per-frame ``au`` (B, L, n_aus) padded
    with AU_UNKNOWN. ``meta`` holds ``video_id``, ``label`` and ``sequence`` so predictions can
    be aggregated per video, and ``frame_index`` (B, L), each step's source frame index (-1 on
    padded steps), so per-frame predictions go back on their frames.

    ``training`` gives ``epochs`` epochs (None: without end) from epoch ``epoch`` on, one after
    the other (pass ``steps_per_epoch`` to ``fit``). Each is its own draw from ``epoch_seed``:
    the shard files in a new order, read one record from each in turn, then sequences shuffled
    in a ``shuffle_buffer``, so shards written in class order still give well-mixed batches, and
    a run resumed at epoch k sees what the uninterrupted run saw. With ``cache`` the decoded
    stream is kept in the fixed interleaved order and each epoch shuffles it in the buffer.
    ``share`` ``(i, n)`` (training only) reads worker i's files of each epoch (``record_stream``)
    as exactly ``steps`` full batches, its sequences repeated as needed: every worker of a
    multi-worker run takes the same number of steps, whatever its files hold.

    With a per-frame target, elements are ``(inputs, targets, sample_weight)`` so that
    ``model.fit`` hands the frame mask to the losses: Keras 3 picks the dict entry of each output
    by name, ``mask`` (B, L) for per-frame outputs and 1 (B,) for a per-video ``category``.
    ``with_meta`` always gives ``(inputs, targets, meta)`` (a 4-tuple is not something ``fit``
    accepts); the frame mask is then ``inputs["mask"]``.
    """
    per_frame = tuple(t for t in cfg.targets if t in PER_FRAME)
    va, au_dim = frame_labels(manifest)
    missing = [t for t, present in (("va", va), ("au", au_dim > 0)) if t in per_frame and not present]
    if missing:
        raise ValueError(
            f"{os.path.join(root, 'manifest.json')}: targets {', '.join(missing)} need per-frame "
            f"labels that this {manifest.get('dataset', '')} manifest does not have "
            f"(its 'labels' are {manifest.get('labels', 'absent')})"
        )
    framewise = set(per_frame) | ({"category"} & set(cfg.targets) if per_frame_category else set())
    # records that carry a category per frame (thesis 003's annotated frames) give it per frame
    frame_categories = "category" in framewise and record_fields(manifest)["category"]
    chunked_labels = per_frame + (("category",) if frame_categories else ())
    classes = len(manifest["classes"])
    mode = cfg.normalize or "unit"
    face_size = manifest.get("options", {}).get("face_size")
    slim = cfg.slim_preprocessing  # its crops resize to image_size themselves
    resize = not slim and bool(cfg.image_size) and cfg.image_size != face_size
    frames_in = "frames" in cfg.inputs or "image" in cfg.inputs
    if frames_in:
        preprocessing.constants(mode, cfg.pixel_stats)  # a statistics mode without them: refused here
    png = manifest.get("options", {}).get("image_format") == "png"

    def decode(item):
        """The real frames (a prefix of the chunk) decoded and resized: uint8, or float32 when
        resized. Padded steps are gathered later from the last real frame."""
        real = tf.maximum(tf.cast(tf.reduce_sum(item["mask"]), tf.int32), 1)
        decoder = tf.io.decode_png if png else tf.io.decode_jpeg
        frames = tf.map_fn(lambda b: decoder(b, channels=3), item["frames"][:real],
                           fn_output_signature=tf.TensorSpec([None, None, 3], tf.uint8))
        if resize:
            frames = tf.image.resize(tf.cast(frames, tf.float32), (cfg.image_size, cfg.image_size))
        elif cfg.image_size and not slim:  # resizing to the prepared size is the identity
            frames = tf.ensure_shape(frames, [None, cfg.image_size, cfg.image_size, 3])
        return frames

    def chunked(e=None):
        if cfg.chain and training:  # the list in its file order; the windows are shuffled after
            return _chained(record_stream(manifest, root, split, cfg, ids=ids, share=share), cfg.seq_len,
                            chunked_labels)
        ds = record_stream(manifest, root, split, cfg, training=training, epoch=e, ids=ids, share=share)
        return ds.flat_map(lambda r: _chunks(r, cfg.seq_len, chunked_labels, cfg.truncate))

    if share is not None and not (training and steps):
        raise ValueError("a worker's share of the files is read in training, for a given number of steps")
    if cfg.cache:  # decode before the cache; without it after the shuffle, whose buffer stays small
        cached = chunked()
        if frames_in:
            cached = cached.map(lambda item: {**item, "frames": decode(item)},
                                num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
        cached = cached.cache()

    def to_example(e, position, item):
        x = {"mask": item["mask"]}
        if frames_in:
            frames = item["frames"] if cfg.cache else decode(item)
            aug = cfg.augment
            seed = tf.random.experimental.stateless_fold_in(epoch_seed(cfg, e), position)
            if slim:  # training: one draw from its own stream; evaluation: slim's central crop
                frames = slim_sequence(frames, slim, cfg.image_size,
                                       seed=tf.random.experimental.stateless_fold_in(seed, 2), training=training)
            if training and cfg.affine is not None:  # its own stream, independent of _augment's draws
                frames = augment_sequence(frames, cfg.affine,
                                          tf.random.experimental.stateless_fold_in(seed, 1))
            if training and aug.flip and not resize:  # the same flip, on 4x fewer bytes
                frames, aug = _flip(frames, seed), replace(aug, flip=False)
            if training and (resize or aug != Augment()):  # else in [0, 255]: nothing to clip
                frames = _augment(tf.cast(frames, tf.float32), aug, seed)
            # padded steps repeat the last real frame; uint8 unless augmented or resized
            x["frames"] = tf.gather(frames, tf.minimum(tf.range(cfg.seq_len), tf.shape(frames)[0] - 1))
        if "lld" in cfg.inputs:
            x["lld"] = item["lld"] * (item["mask"][:, None] if cfg.padding == "zeros" else 1.0)
        if "functionals" in cfg.inputs:
            x["functionals"] = item["functionals"]
        label = tf.cast(item["label"], tf.int32)
        y = {}
        weights = {t: item["mask"] for t in framewise}
        if frame_categories:  # UNLABELLED (-1) gives all zeros, and no weight
            y["category"] = tf.one_hot(tf.cast(item["category"], tf.int32), classes)
            weights["category"] = item["mask"] * tf.cast(item["category"] >= 0, tf.float32)
        elif "category" in cfg.targets:
            y["category"] = tf.one_hot(label, classes)  # UNLABELLED (-1) gives all zeros
            if "category" in framewise:
                y["category"] = tf.repeat(y["category"][None], cfg.seq_len, axis=0)
        if "va" in cfg.targets:
            y["va"] = item["va"] * (item["mask"][:, None] if cfg.padding == "zeros" else 1.0)
        if "au" in cfg.targets:
            y["au"] = item["au"]
        if with_meta:
            return x, y, {"video_id": item["video_id"], "label": label, "sequence": item["sequence"],
                          "frame_index": item["frame_index"]}
        if framewise:
            w = {t: weights.get(t, tf.ones(())) for t in cfg.targets}
            if "image" in cfg.inputs:  # an image model's (B, A) outputs are its one frame's: that frame's labels
                y, w = ({t: v[0] if t in framewise else v for t, v in d.items()} for d in (y, w))
            return x, y, w
        return x, y

    def one_epoch(e):
        ds = cached if cfg.cache else chunked(e)
        if training:
            ds = epoch_shuffle(ds, cfg, e)
        ds = ds.enumerate().map(lambda position, item: to_example(e, position, item),
                                num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
        if share is not None:
            return ds.repeat().batch(cfg.batch_size, drop_remainder=True).take(steps)
        return ds.batch(cfg.batch_size)

    @tf.function(jit_compile=True)
    def normalise(frames, mask):
        """Preprocess and zero the padded steps of a whole batch in one fused pass (XLA): the
        float32 copies, not the decoding, bound the pipeline once decoded frames are cached.
        Zeros come last, so padded frames are 0 whatever the preprocessing's mean."""
        frames = preprocessing.preprocess(frames, mode, cfg.pixel_stats)
        return frames * mask[:, :, None, None, None] if cfg.padding == "zeros" else frames

    def normalise_batch(x, *rest):
        x = {**x, "frames": normalise(x["frames"], x["mask"])}
        if "image" in cfg.inputs:
            x["image"] = x["frames"][:, 0]
            if "frames" not in cfg.inputs:
                del x["frames"]
        return (x, *rest)

    if training:
        numbers = tf.data.Dataset.counter(epoch) if epochs is None else tf.data.Dataset.range(epoch, epoch + epochs)
        ds = numbers.flat_map(one_epoch)
    else:
        ds = one_epoch(tf.constant(0, tf.int64))
    if frames_in:
        ds = ds.map(normalise_batch, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
    return ds.prefetch(tf.data.AUTOTUNE)
