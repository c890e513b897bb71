"""Cached CNN features in HDF5 for the cascades of thesis 002 (DESIGN.md, "Cached CNN features").

One file per fold, ``fold-<i>-features-<n>.h5``, holds ``features`` (N, T, F) float32 or float16,
``masks`` (N, T) 0/1, ``labels`` (N, C) one-hot, ``names`` (N) video ids and a ``classes``
attribute. At the thesis's size (VGGFace's Flatten tap, 25,088 features per frame, about 10 MB
per 100-frame video in float32, 48 GB for 4,800 videos) neither the writer nor the reader may
hold a file in memory:

- :class:`FeatureWriter` appends batch by batch to resizable datasets chunked one video
  (1, T, F) per chunk, into ``<name>.partial``; after each batch it flushes and records the
  count of complete videos in an attribute, so a killed run continues after the last complete
  video. Only a complete file is renamed to its name and recorded in features.json, and a file
  with that attribute is refused by every reader, so it is never mistaken for a complete one.
- :func:`feature_sequences` keeps the small datasets in memory and reads one video's row per
  call from tf.data's parallel threads (h5py releases the GIL while it reads) straight into
  64-byte aligned memory, which TensorFlow takes without a copy; casting float16 to float32,
  padding and splitting run inside the tf.data graph.
"""
import glob
import logging
import os
from typing import NamedTuple

import h5py
import numpy as np
import tensorflow as tf

from fer_keras.data import integrity
from fer_keras.data.pipeline import PipelineConfig, epoch_shuffle
from fer_keras.durable import killpoint

DATASETS = ("features", "masks", "labels", "names")
# per-frame labels of a file of valence/arousal tracks (thesis 003), one row per window of T frames:
# name -> (shape per row after T or None for one value per row, dtype)
FRAME_DATASETS = {"va": ((2,), np.float32), "categories": ((), np.int16), "frame_index": ((), np.int64),
                  "sequence": (None, np.int32)}
DTYPES = ("float32", "float16")
PARTIAL = ".partial"      # suffix of a file being written
WRITTEN = "videos_written"  # attribute of a .partial file: its complete videos
ROWS_PER_CHUNK = 256      # chunk rows of the small datasets (masks, labels, names)
ALIGN = 64                # bytes; TensorFlow takes NumPy buffers aligned so without a copy

logger = logging.getLogger(__name__)


class FeatureInfo(NamedTuple):
    classes: tuple  # class names, in the order of the one-hot columns
    videos: int     # N
    steps: int      # T, frames per stored video (100 in thesis 002)
    dim: int        # F, features per frame (1,024 or 25,088 in thesis 002)
    frame_labels: bool = False  # rows are windows of a track with per-frame labels (FRAME_DATASETS)


class FeatureWriter:
    """A feature file written batch by batch into ``path + '.partial'``, resumable.

    Opening a ``.partial`` file left by a killed run continues it after its last complete video:
    rows past the recorded count (a kill inside a batch) are cut, so nothing is duplicated;
    ``names()`` tells the caller which videos are done. ``attrs`` (e.g. the extraction settings)
    are stored in the file, and a ``.partial`` file written with other attrs, classes or layout
    is refused rather than mixed into. A ``.partial`` file that no longer opens (a kill in the
    middle of an HDF5 write) is started again. With ``resume=False`` any old one is replaced.
    ``finish`` renames the file to ``path`` and records it in features.json.
    """

    def __init__(self, path, steps, dim, classes, dtype="float32", attrs=None, resume=True, frame_labels=False):
        if dtype not in DTYPES:
            raise ValueError(f"{path}: dtype must be one of {', '.join(DTYPES)}, got {dtype!r}")
        self.path, self.partial = str(path), str(path) + PARTIAL
        self.steps, self.dim, self.dtype = int(steps), int(dim), np.dtype(dtype)
        self.classes = tuple(str(c) for c in classes)
        self.attrs = dict(attrs or {})
        self.frame_labels = bool(frame_labels)
        os.makedirs(os.path.dirname(os.path.abspath(self.path)), exist_ok=True)
        self.file = self._reopen() if resume and os.path.exists(self.partial) else None
        if self.file is None:
            self.file = self._create()
        self.count = int(self.file.attrs[WRITTEN])

    def _create(self):
        f = h5py.File(self.partial, "w")
        t, d = self.steps, self.dim
        f.create_dataset("features", (0, t, d), self.dtype, maxshape=(None, t, d), chunks=(1, t, d))
        f.create_dataset("masks", (0, t), np.float32, maxshape=(None, t), chunks=(ROWS_PER_CHUNK, t))
        f.create_dataset("labels", (0, len(self.classes)), np.float32, maxshape=(None, len(self.classes)),
                         chunks=(ROWS_PER_CHUNK, len(self.classes)))
        f.create_dataset("names", (0,), h5py.string_dtype("utf-8"), maxshape=(None,), chunks=(ROWS_PER_CHUNK,))
        if self.frame_labels:
            for name, (shape, dtype) in FRAME_DATASETS.items():
                row = () if shape is None else (t, *shape)
                f.create_dataset(name, (0, *row), dtype, maxshape=(None, *row), chunks=(ROWS_PER_CHUNK, *row))
        f.attrs["classes"] = np.array(self.classes, dtype=h5py.string_dtype("utf-8"))
        for key, value in self.attrs.items():
            f.attrs[key] = value
        f.attrs[WRITTEN] = 0
        f.flush()
        return f

    def _reopen(self):
        try:
            f = h5py.File(self.partial, "r+")
        except OSError as err:
            logger.warning("%s: unreadable (%s), left by a run killed while writing; starting it again",
                           self.partial, err)
            return None
        try:
            count = int(f.attrs[WRITTEN])
            found = {"features": (f["features"].shape[1:], f["features"].dtype), "frame_labels": "va" in f,
                     "classes": tuple(str(c) for c in f.attrs["classes"]),
                     **{k: f.attrs.get(k) for k in self.attrs}}
        except (KeyError, ValueError) as err:
            f.close()
            logger.warning("%s: not a file this writer wrote (%s); starting it again", self.partial, err)
            return None
        wanted = {"features": ((self.steps, self.dim), self.dtype), "frame_labels": self.frame_labels,
                  "classes": self.classes, **self.attrs}
        differ = sorted(k for k in wanted if found[k] != wanted[k])
        if differ:
            f.close()
            raise ValueError(f"{self.partial}: an unfinished file written with other {', '.join(differ)}; "
                             "delete it, or write to another folder")
        for name in DATASETS + (tuple(FRAME_DATASETS) if self.frame_labels else ()):
            f[name].resize(count, axis=0)  # rows past the count: a batch the kill interrupted
        logger.info("%s: continuing after its %d complete videos", self.partial, count)
        return f

    def names(self) -> list:
        """Ids of the complete videos, in file order."""
        return list(self.file["names"].asstr()[:self.count])

    def append(self, features, masks, labels, names, frames=None) -> None:
        """Write one batch of videos and record it as complete (flushed before the count moves).

        ``frames`` holds the per-frame labels of a file written with ``frame_labels``
        (FRAME_DATASETS: va, categories, frame_index per step, sequence per row)."""
        features = np.asarray(features)
        masks = np.asarray(masks, np.float32)
        labels = np.asarray(labels, np.float32)
        names = [str(n) for n in names]
        problem = _shape_problem(features.shape, masks.shape, labels.shape, len(names), len(self.classes))
        if problem is None and features.shape[1:] != (self.steps, self.dim):
            problem = f"features have shape {features.shape}, the file holds (videos, {self.steps}, {self.dim})"
        if problem is None and self.frame_labels != (frames is not None):
            problem = ("per-frame labels given to a file without them" if frames is not None
                       else f"per-frame labels ({', '.join(FRAME_DATASETS)}) missing")
        if problem is None and frames is not None:
            for name, (shape, _) in FRAME_DATASETS.items():
                want = (len(names),) + (() if shape is None else (self.steps, *shape))
                if np.shape(frames.get(name)) != want:
                    problem = f"per-frame {name} has shape {np.shape(frames.get(name))}, expected {want}"
                    break
        if problem is None and not np.isin(masks, (0.0, 1.0)).all():
            problem = "masks hold values other than 0 and 1"
        with np.errstate(over="ignore"):  # NumPy casts ~25x faster than HDF5 does on write
            stored = features.astype(self.dtype, copy=False)
        if problem is None and np.isinf(stored).any() and not np.isinf(features).any():
            problem = f"features exceed {self.dtype}'s range; write float32"
        if problem:
            raise ValueError(f"{self.path}: {problem}")
        start, stop = self.count, self.count + len(names)
        columns = [("features", stored), ("masks", masks), ("labels", labels), ("names", names)]
        columns += [(name, np.asarray(frames[name], dtype)) for name, (_, dtype) in FRAME_DATASETS.items()] if frames else []
        for name, rows in columns:
            self.file[name].resize(stop, axis=0)
            self.file[name][start:stop] = rows
        self.file.flush()  # the rows are on disk before the count says they are complete
        self.file.attrs[WRITTEN] = stop
        self.file.flush()
        self.count = stop

    def finish(self) -> str:
        """Rename the complete file to its name and record it in features.json; returns the path."""
        del self.file.attrs[WRITTEN]
        self.file.close()
        os.replace(self.partial, self.path)
        killpoint("features_renamed")
        integrity.record_feature_file(self.path, self.count)
        return self.path

    def discard(self) -> None:
        """Close and delete the unfinished file."""
        self.close()
        os.remove(self.partial)

    def close(self) -> None:
        """Close the unfinished file; it stays, for a later run to continue."""
        if self.file.id.valid:
            self.file.close()


def write_features(path, features, masks, labels, names, classes, dtype="float32") -> None:
    """Write one whole feature file; it appears under ``path`` only once complete."""
    features = np.asarray(features)
    masks, labels = np.asarray(masks), np.asarray(labels)
    problem = _shape_problem(features.shape, masks.shape, labels.shape, len(names), len(classes))
    if problem:
        raise ValueError(f"{path}: {problem}")
    writer = FeatureWriter(path, features.shape[1], features.shape[2], classes, dtype, resume=False)
    try:
        writer.append(features, masks, labels, names)
        writer.finish()
    except BaseException:
        writer.discard()
        raise


def check_folder(folder, quick: bool = False) -> tuple[list, dict]:
    """`fer-keras verify` of a feature folder: each file against features.json (size, SHA-256,
    videos) and its HDF5 layout, and any unfinished ``.partial`` file; returns (problems, what
    was read)."""
    index = integrity.feature_index(folder)
    names = sorted(set(index) | {os.path.basename(p) for p in glob.glob(os.path.join(folder, "*.h5"))})
    problems = [integrity.Problem(p, "unfinished: being written, or left by a killed run",
                                  "rerun the same fer-keras features command to finish it")
                for p in sorted(glob.glob(os.path.join(folder, "*.h5" + PARTIAL)))]
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
        if WRITTEN in f.attrs:
            raise ValueError(f"{path}: unfinished ({f.attrs[WRITTEN]} videos written so far); "
                             "rerun the fer-keras features command that writes it to finish it")
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
        return FeatureInfo(classes, *f["features"].shape, frame_labels=all(n in f for n in FRAME_DATASETS))


def _kept(masks, seq_len):
    """(N, K) booleans: which of each video's K = ceil(T / seq_len) sequences are read.

    A sequence with no real frame is dropped (a short video stored padded to T), except the
    first, so every video still gets a prediction."""
    count = max(-(-masks.shape[1] // seq_len), 1)
    padded = np.pad(masks, ((0, 0), (0, count * seq_len - masks.shape[1])))
    kept = padded.reshape(len(masks), count, seq_len).any(axis=2)
    kept[:, 0] = True
    return kept


def _sources(sources) -> list[tuple[str, np.ndarray | None]]:
    """``sources`` as ``[(path, rows or None for all)]``: one path, or a list of paths and pairs."""
    if isinstance(sources, (str, os.PathLike)):
        sources = [sources]
    out = []
    for item in sources:
        path, rows = (item, None) if isinstance(item, (str, os.PathLike)) else item
        out.append((os.fspath(path), None if rows is None else np.asarray(rows, np.int64)))
    if not out:
        raise ValueError("no feature file to read")
    return out


def _gather(sources):
    """The layout and the small datasets of the selected rows of every source, concatenated.

    Files of one read must agree on classes, frames per video and features per frame."""
    first = None
    masks, labels, names, file_of, row_of, dtypes = [], [], [], [], [], set()
    frames = {name: [] for name in FRAME_DATASETS}
    for index, (path, rows) in enumerate(sources):
        info = read_info(path)
        if first is None:
            first = (path, info)
        elif (info.classes, info.steps, info.dim, info.frame_labels) != (
                first[1].classes, first[1].steps, first[1].dim, first[1].frame_labels):
            raise ValueError(f"{path}: classes {info.classes}, {info.steps} x {info.dim} features per video, "
                             f"per-frame labels {info.frame_labels}; {first[0]} (read with it) has "
                             f"{first[1].classes}, {first[1].steps} x {first[1].dim}, {first[1].frame_labels}")
        rows = np.arange(info.videos) if rows is None else rows
        if rows.size and (rows.min() < 0 or rows.max() >= info.videos):
            raise ValueError(f"{path}: row {int(rows.max())} selected, the file has {info.videos} videos")
        with h5py.File(path, "r") as f:
            masks.append(f["masks"][()][rows].astype(np.float32))
            labels.append(f["labels"][()][rows].astype(np.float32))
            names.append(f["names"][()][rows])
            dtypes.add(f["features"].dtype)
            for name in FRAME_DATASETS if info.frame_labels else ():
                frames[name].append(f[name][()][rows])
        file_of.append(np.full(len(rows), index, np.int64))
        row_of.append(rows)
    if len(dtypes) > 1:
        raise ValueError(f"{', '.join(p for p, _ in sources)}: mixed stored precisions {sorted(map(str, dtypes))}")
    info = first[1]._replace(videos=sum(len(r) for r in row_of))
    frames = {k: np.concatenate(v) for k, v in frames.items()} if info.frame_labels else None
    return (info, dtypes.pop(), np.concatenate(masks), np.concatenate(labels), np.concatenate(names),
            np.concatenate(file_of), np.concatenate(row_of), frames)


def count_sequences(sources, seq_len) -> int:
    """How many sequences :func:`feature_sequences` yields for one pass over ``sources``."""
    masks = _gather(_sources(sources))[2]
    return int(_kept(masks, seq_len).sum())


class _Rows:
    """Reads video i's ``features`` row (T, F) in its stored dtype into fresh 64-byte aligned
    memory (TensorFlow wraps such a buffer without copying it). Called from tf.data's threads;
    video i is row ``row_of[i]`` of file ``file_of[i]``."""

    def __init__(self, paths, file_of, row_of):
        self.files = [h5py.File(p, "r") for p in paths]
        self.features = [f["features"] for f in self.files]
        self.file_of, self.row_of = file_of, row_of

    def __call__(self, i):
        features = self.features[self.file_of[i]]
        shape, dtype = features.shape[1:], features.dtype
        size = int(np.prod(shape)) * dtype.itemsize
        raw = np.empty(size + ALIGN, np.uint8)
        start = -raw.ctypes.data % ALIGN
        out = raw[start:start + size].view(dtype).reshape(shape)
        features.read_direct(out, np.s_[int(self.row_of[i])])
        return out


def feature_sequences(sources, cfg: PipelineConfig, *, training=False, with_meta=False, epoch=0, epochs=1,
                      per_frame_category=False):
    """Batched ``(inputs, targets)`` (or ``(inputs, targets, meta)``) from feature files.

    ``sources`` is one path, or a list of paths and ``(path, rows)`` pairs (the rows of that file
    to read): a cross-validation fold trains on several fold files at once.

    The same structure as ``pipeline.sequences``: inputs ``features`` (B, L, F) float32 (also
    from a float16 file) and ``mask`` (B, L), targets ``category`` one-hot, meta ``video_id``,
    ``label`` (-1 for an all-zero row) and ``sequence``. Of ``cfg`` only ``seq_len``,
    ``targets``, ``batch_size``, ``shuffle_buffer`` and ``seed`` apply: videos longer than
    ``seq_len`` are split like the shard pipeline, shorter ones zero-padded (thesis 002 pads with
    zeros whatever ``cfg.padding`` says). ``training`` gives ``epochs`` epochs (None: without
    end) from ``epoch`` on, as ``pipeline.sequences`` does: each reads the videos in a
    permutation drawn from (seed, epoch), then shuffles sequences in a buffer (of
    ``shuffle_buffer`` sequences, each L x F x 4 bytes: 10 MB at 100 x 25,088).

    Files of tracks with per-frame labels (FRAME_DATASETS) also give ``va`` (B, L, 2) and, with
    ``per_frame_category``, ``category`` per frame (B, L, C) from the frame's own class (zeros and
    no weight where unlabelled), meta ``frame_index``, and sample weights as the shard pipeline
    gives them, so training on them is training on the shards with the CNN taken out.
    """
    sources = _sources(sources)
    info, stored, masks, labels, names, file_of, row_of, frames = _gather(sources)
    held = {"category", "va"} if info.frame_labels else {"category"}
    if not set(cfg.targets) <= held:
        raise ValueError(f"{sources[0][0]}: its cached features hold {' and '.join(sorted(held))} labels, "
                         f"not targets {tuple(cfg.targets)}")
    if per_frame_category and not info.frame_labels:
        raise ValueError(f"{sources[0][0]}: its cached features hold one category per video; a model with "
                         "per-frame category heads needs a file of tracks with per-frame labels")
    seq_len, dim = cfg.seq_len, info.dim
    kept = _kept(masks, seq_len)
    count = kept.shape[1]
    pad = count * seq_len - info.steps

    def windows(values, fill=0):
        values = np.pad(values, [(0, 0), (0, pad)] + [(0, 0)] * (values.ndim - 2), constant_values=fill)
        return tf.constant(values.reshape(len(values), count, seq_len, *values.shape[2:]))

    per_video = {  # small: in memory, gathered by video index
        "mask": windows(masks),
        "category": tf.constant(labels),
        "video_id": tf.constant(names, tf.string),
        "label": tf.constant(np.where(labels.any(axis=1), labels.argmax(axis=1), -1).astype(np.int32)),
        "kept": tf.constant(kept),
    }
    if frames is not None:
        per_video.update(va=windows(frames["va"]), categories=windows(frames["categories"].astype(np.int32), -1),
                         frame_index=windows(frames["frame_index"], -1), first=tf.constant(frames["sequence"] * count))
    rows = _Rows([p for p, _ in sources], file_of, row_of)
    framewise = ({"va"} | ({"category"} if per_frame_category else set())) & set(cfg.targets)

    def video(i):
        """Video i's sequences, stacked (K, ...), and which of them are kept."""
        x = tf.numpy_function(rows, [i], tf.as_dtype(stored), stateful=False)
        x = tf.pad(tf.cast(tf.ensure_shape(x, (info.steps, dim)), tf.float32), [[0, pad], [0, 0]])
        out = {k: tf.gather(v, i) for k, v in per_video.items()}
        for k in ("category", "video_id", "label"):  # one per video: repeated on its sequences
            out[k] = tf.repeat(out[k][None], count, axis=0)
        first = out.pop("first", 0)  # a row's windows continue its track's numbering
        return {**out, "features": tf.reshape(x, (count, seq_len, dim)), "sequence": first + tf.range(count)}

    def to_example(item):
        x = {"features": item["features"], "mask": item["mask"]}
        y, weights = {}, {t: item["mask"] for t in framewise}
        if "category" in cfg.targets:
            y["category"] = item["category"]
            if per_frame_category:
                y["category"] = tf.one_hot(item["categories"], len(info.classes))
                weights["category"] = item["mask"] * tf.cast(item["categories"] >= 0, tf.float32)
        if "va" in cfg.targets:
            y["va"] = item["va"]
        if with_meta:
            meta = {"video_id": item["video_id"], "label": item["label"], "sequence": item["sequence"]}
            if frames is not None:
                meta["frame_index"] = item["frame_index"]
            return x, y, meta
        if framewise:
            return x, y, {t: weights.get(t, tf.ones(())) for t in cfg.targets}
        return x, y

    def one_epoch(e):
        if training:
            order = tf.numpy_function(lambda e: np.random.default_rng([cfg.seed, int(e)]).permutation(info.videos),
                                      [e], tf.int64, stateful=False)
            order = tf.ensure_shape(order, (info.videos,))
        else:
            order = tf.range(info.videos, dtype=tf.int64)
        ds = tf.data.Dataset.from_tensor_slices(order)
        ds = ds.map(video, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
        if count == 1:  # the common case (T <= seq_len): a view of the one sequence, cheaper than unbatch
            ds = ds.map(lambda item: {k: v[0] for k, v in item.items()})
        else:
            ds = ds.unbatch().filter(lambda item: item["kept"])
        if training:
            ds = epoch_shuffle(ds, cfg, e)
        return ds.map(to_example).batch(cfg.batch_size)

    if not training:
        return one_epoch(tf.constant(0, tf.int64)).prefetch(tf.data.AUTOTUNE)
    numbers = tf.data.Dataset.counter(epoch) if epochs is None else tf.data.Dataset.range(epoch, epoch + epochs)
    return numbers.flat_map(one_epoch).prefetch(tf.data.AUTOTUNE)
