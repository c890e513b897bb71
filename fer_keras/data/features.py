"""Cached CNN features in HDF5 for the cascades of thesis 002 (DESIGN.md, "Cached CNN features").

One file per fold, ``fold-<i>-features-<n>.h5``, holds ``features`` (N, T, F) float32, ``masks``
(N, T) 0/1, ``labels`` (N, C) one-hot, ``names`` (N) video ids and a ``classes`` attribute.
Rows are read one video at a time by a generator over h5py rather than loaded whole: the
thesis's VGGFace Flatten tap has 25,088 features per frame, about 10 MB per 100-frame video,
so a fold with its offline augmentations does not fit in memory, while one row at a time plus
a shuffle buffer of sequences does.
"""
import glob
import os
import tempfile
from typing import NamedTuple

import h5py
import numpy as np
import tensorflow as tf

from fer_keras.data import integrity
from fer_keras.data.pipeline import PipelineConfig, epoch_shuffle

DATASETS = ("features", "masks", "labels", "names")


class FeatureInfo(NamedTuple):
    classes: tuple  # class names, in the order of the one-hot columns
    videos: int     # N
    steps: int      # T, frames per stored video (100 in thesis 002)
    dim: int        # F, features per frame (1,024 or 25,088 in thesis 002)


def write_features(path, features, masks, labels, names, classes) -> None:
    """Write one feature file; it appears under ``path`` only once complete (temp file + rename)."""
    features = np.asarray(features, np.float32)
    masks = np.asarray(masks, np.float32)
    labels = np.asarray(labels, np.float32)
    names = [str(n) for n in names]
    problem = _shape_problem(features.shape, masks.shape, labels.shape, len(names), len(classes))
    if problem is None and not np.isin(masks, (0.0, 1.0)).all():
        problem = "masks hold values other than 0 and 1"
    if problem:
        raise ValueError(f"{path}: {problem}")
    folder = os.path.dirname(os.path.abspath(path))
    os.makedirs(folder, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=folder, prefix=os.path.basename(path) + ".", suffix=".tmp")
    os.close(fd)
    try:
        with h5py.File(tmp, "w") as f:
            f.create_dataset("features", data=features)
            f.create_dataset("masks", data=masks)
            f.create_dataset("labels", data=labels)
            f.create_dataset("names", data=names, dtype=h5py.string_dtype("utf-8"))
            f.attrs["classes"] = np.array(list(classes), dtype=h5py.string_dtype("utf-8"))
        os.replace(tmp, path)
        integrity.record_feature_file(path, len(names))
    except BaseException:
        os.remove(tmp)
        raise


def check_folder(folder, quick: bool = False) -> tuple[list, dict]:
    """`fer-keras verify` of a feature folder: each file against features.json (size, SHA-256,
    videos) and its HDF5 layout; returns (problems, what was read)."""
    index = integrity.feature_index(folder)
    names = sorted(set(index) | {os.path.basename(p) for p in glob.glob(os.path.join(folder, "*.h5"))})
    problems = []
    for name in names:
        path = os.path.join(folder, name)
        problem = integrity.quick_problem(folder, name, index.get(name), integrity.REWRITE_FEATURES)
        if problem is None and not quick:
            if name in index and integrity.sha256(path) != index[name]["sha256"]:
                problem = integrity.Problem(path, "checksum differs from the one recorded when it was written",
                                            integrity.REWRITE_FEATURES)
            else:
                try:
                    videos = read_info(path).videos
                except (ValueError, OSError) as err:
                    problem = integrity.Problem(path, str(err).removeprefix(f"{path}: "), integrity.REWRITE_FEATURES)
                else:
                    if name in index and videos != index[name]["records"]:
                        problem = integrity.Problem(path, f"{videos} videos, recorded {index[name]['records']}",
                                                    integrity.REWRITE_FEATURES)
        if problem:
            problems.append(problem)
    sizes = [os.path.getsize(os.path.join(folder, n)) for n in names if os.path.isfile(os.path.join(folder, n))]
    return problems, {"files": len(names), "bytes": sum(sizes)}


def _shape_problem(features, masks, labels, names, classes):
    """What is inconsistent between the dataset shapes of a feature file, or None."""
    if len(features) != 3 or features[1] < 1:
        return f"features must be (videos, frames >= 1, dims), got shape {features}"
    counts = {"features": features[0], "masks": masks[0] if masks else None,
              "labels": labels[0] if labels else None, "names": names}
    if len(set(counts.values())) > 1:
        sizes = ", ".join(f"{k} {v}" for k, v in counts.items())
        return f"datasets disagree on the number of videos: {sizes}"
    if tuple(masks) != tuple(features[:2]):
        return f"masks have shape {masks}, expected {features[:2]} (one 0/1 per frame)"
    if len(labels) != 2 or labels[1] != classes:
        return (f"labels have shape {labels}, expected ({features[0]}, {classes}) "
                f"one-hot rows for {classes} classes")
    return None


def read_info(path) -> FeatureInfo:
    """Check a feature file's layout and return its classes and sizes (N, T, F)."""
    if not os.path.isfile(path):
        raise FileNotFoundError(f"{path}: no such feature file")
    try:
        f = h5py.File(path, "r")
    except OSError as err:
        raise ValueError(f"{path}: not a readable HDF5 file ({err})") from None
    with f:
        missing = [d for d in DATASETS if d not in f]
        if missing:
            raise ValueError(f"{path}: missing dataset(s) {', '.join(missing)}; a feature file "
                             f"holds {', '.join(DATASETS)}")
        if "classes" not in f.attrs:
            raise ValueError(f"{path}: missing the 'classes' attribute (class names of the label columns)")
        classes = tuple(str(c) for c in f.attrs["classes"])
        problem = _shape_problem(f["features"].shape, f["masks"].shape, f["labels"].shape,
                                 len(f["names"]), len(classes))
        if problem:
            raise ValueError(f"{path}: {problem}")
        return FeatureInfo(classes, *f["features"].shape)


def _split(features, masks, seq_len):
    """``(index, features, mask)`` of the non-overlapping, zero-padded sequences of one video.

    Sequences with no real frame are dropped (a short video stored padded to T), except the
    first, so every video still gets a prediction.
    """
    count = max(-(-len(masks) // seq_len), 1)
    pad = count * seq_len - len(masks)
    features = np.pad(features, ((0, pad), (0, 0))).reshape(count, seq_len, -1)
    masks = np.pad(masks, (0, pad)).reshape(count, seq_len)
    return [(k, features[k], masks[k]) for k in range(count) if k == 0 or masks[k].any()]


def count_sequences(path, seq_len) -> int:
    """How many sequences :func:`feature_sequences` yields for one pass over ``path``."""
    read_info(path)
    with h5py.File(path, "r") as f:
        masks = f["masks"][()]
    return sum(len(_split(np.zeros((len(m), 0)), m, seq_len)) for m in masks)


def feature_sequences(path, cfg: PipelineConfig, *, training=False, with_meta=False, epoch=0, epochs=1):
    """Batched ``(inputs, targets)`` (or ``(inputs, targets, meta)``) from one feature file.

    The same structure as ``pipeline.sequences``: inputs ``features`` (B, L, F) and ``mask``
    (B, L), targets ``category`` one-hot, meta ``video_id``, ``label`` (-1 for an all-zero row)
    and ``sequence``. Of ``cfg`` only ``seq_len``, ``targets``, ``batch_size``,
    ``shuffle_buffer`` and ``seed`` apply: videos longer than ``seq_len`` are split like the
    shard pipeline, shorter ones zero-padded (thesis 002 pads with zeros whatever
    ``cfg.padding`` says). ``training`` gives ``epochs`` epochs (None: without end) from
    ``epoch`` on, as ``pipeline.sequences`` does: each reads the videos in a permutation drawn
    from (seed, epoch), then shuffles sequences in a buffer.
    """
    info = read_info(path)
    if set(cfg.targets) != {"category"}:
        raise ValueError(f"{path}: cached feature files hold only 'category' labels, "
                         f"not targets {tuple(cfg.targets)}")

    def rows(e):
        order = np.random.default_rng([cfg.seed, int(e)]).permutation(info.videos) if training \
            else np.arange(info.videos)
        with h5py.File(path, "r") as f:
            for i in order:
                label = f["labels"][i].astype(np.float32)
                index = int(np.argmax(label)) if label.any() else -1
                for sequence, features, mask in _split(f["features"][i].astype(np.float32),
                                                       f["masks"][i].astype(np.float32), cfg.seq_len):
                    yield {"features": features, "mask": mask, "category": label,
                           "video_id": f["names"][i], "label": index, "sequence": sequence}

    spec = {
        "features": tf.TensorSpec((cfg.seq_len, info.dim), tf.float32),
        "mask": tf.TensorSpec((cfg.seq_len,), tf.float32),
        "category": tf.TensorSpec((len(info.classes),), tf.float32),
        "video_id": tf.TensorSpec((), tf.string),
        "label": tf.TensorSpec((), tf.int32),
        "sequence": tf.TensorSpec((), tf.int32),
    }

    def to_example(item):
        x = {"features": item["features"], "mask": item["mask"]}
        y = {"category": item["category"]}
        meta = {"video_id": item["video_id"], "label": item["label"], "sequence": item["sequence"]}
        return (x, y, meta) if with_meta else (x, y)

    def one_epoch(e):
        ds = tf.data.Dataset.from_generator(rows, args=(e,), output_signature=spec)
        if training:
            ds = epoch_shuffle(ds, cfg, e)
        return ds.map(to_example).batch(cfg.batch_size)

    if not training:
        return one_epoch(tf.constant(0, tf.int64)).prefetch(tf.data.AUTOTUNE)
    numbers = tf.data.Dataset.counter(epoch) if epochs is None else tf.data.Dataset.range(epoch, epoch + epochs)
    return numbers.flat_map(one_epoch).prefetch(tf.data.AUTOTUNE)
