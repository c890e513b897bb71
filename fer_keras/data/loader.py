"""One entry point from an experiment's ``data`` section to the tf.data pipeline of a split.

Prepared shards (``format: tfrecord``) go through :mod:`fer_keras.data.pipeline`; cached CNN
features (``format: hdf5``, thesis 002) through :mod:`fer_keras.data.features`. Both yield the
same ``(inputs, targets[, meta])`` structure, so training and evaluation never branch on it.
"""
import math
from pathlib import Path

from fer_keras import storage
from fer_keras.data.manifest import MANIFEST, read as manifest


def _hdf5_path(data, split):
    path = Path(data.root) / split
    return path if path.suffix == ".h5" else path.with_name(path.name + ".h5")


COPY = "~"  # an offline augmented copy's video id is <video id>~<method> (data_prep.datasets.bu4dfe)


def feature_folds(data) -> list[Path]:
    """The ``fold-<k>-features-<n>.h5`` files of a feature folder, in fold order (k = 0, 1, ...)."""
    root, n = Path(data.root), data.features
    paths, k = [], 0
    while (root / f"fold-{k}-features-{n}.h5").is_file():
        paths.append(root / f"fold-{k}-features-{n}.h5")
        k += 1
    if not paths:
        raise FileNotFoundError(f"{root}: no fold-0-features-{n}.h5; write the feature files with "
                                f"fer-keras features (its --tap gives {n} features per frame?)")
    stray = sorted(str(p.name) for p in root.glob(f"fold-*-features-{n}.h5") if p not in paths)
    if stray:
        raise ValueError(f"{root}: {', '.join(stray)} after a missing fold file (folds must be 0-{k - 1}, "
                         "without a gap)")
    return paths


def _per_split(data) -> bool:
    """Whether a feature folder holds one file per split (a dataset without a split file: thesis
    003's tracks) rather than one per fold."""
    root, n = Path(data.root), data.features
    return (data.fold is None and not (root / f"fold-0-features-{n}.h5").is_file()
            and (root / f"{data.train_split}-features-{n}.h5").is_file())


def _copy_kept(name: str, augmentations) -> bool:
    """Whether video ``name`` of a feature file is read: an original always, a copy by its method."""
    if COPY not in name:
        return True
    return augmentations == "all" or name.rsplit(COPY, 1)[1] in augmentations


def feature_sources(data, name) -> list:
    """What split ``name`` reads of a feature file folder: ``[(path, rows)]``.

    Without ``data.features`` a split is the file ``root/<name>.h5``. With it, the folder is one
    written by ``fer-keras features``: ``<split>-features-<n>.h5`` per split when it has no fold files
(a dataset without a split file); else the training split is every fold file but ``data.fold``'s
    (every one for the final model), plus ``unassigned-features-<n>.h5`` when present, with the
    offline copies ``data.augmentations`` names; the validation split is fold ``data.fold``'s
    file without copies; the test split is ``test-features-<n>.h5``."""
    if data.features is None:
        return [_hdf5_path(data, name)]
    import h5py

    storage.local_only(data.root, "reading cached CNN features (HDF5 through h5py)")
    if _per_split(data):
        path = Path(data.root) / f"{name}-features-{data.features}.h5"
        if not path.is_file():
            raise FileNotFoundError(f"{path}: missing; fer-keras features writes one file per split of a "
                                    "dataset without a split file (is the split name right?)")
        return [path]
    folds = feature_folds(data)
    if data.fold is not None and data.fold >= len(folds):
        raise ValueError(f"{data.root}: fold {data.fold} does not exist: it has fold files 0-{len(folds) - 1}")
    root, n = Path(data.root), data.features
    if name == data.train_split:
        paths = [p for k, p in enumerate(folds) if k != data.fold]
        extra = root / f"unassigned-features-{n}.h5"
        paths += [extra] if extra.is_file() else []
        augmentations = data.augmentations
    elif name == data.val_split:
        if data.fold is None:
            raise ValueError(f"{root}: the validation split of a feature folder is a fold's file; set data.fold")
        paths, augmentations = [folds[data.fold]], ()
    elif name == data.test_split:
        return [root / f"test-features-{n}.h5"]
    else:
        return [_hdf5_path(data, name)]
    from fer_keras.data.features import read_info

    sources = []
    for path in paths:
        read_info(path)  # an unfinished or damaged file: one line naming it
        with h5py.File(path, "r") as f:
            names = f["names"].asstr()[()]
        sources.append((path, [i for i, v in enumerate(names) if _copy_kept(v, augmentations)]))
    if not any(rows for _, rows in sources):
        raise ValueError(f"{root}: split {name!r} of fold {data.fold} holds no video")
    return sources


def classes(data):
    """The class names, in label order (of a feature folder: its first fold file's; the files
    read together must agree, which the reader checks)."""
    if data.format == "hdf5":
        from fer_keras.data.features import read_info
        if data.features is None:
            first = _hdf5_path(data, data.train_split)
        elif _per_split(data):
            first = Path(data.root) / f"{data.train_split}-features-{data.features}.h5"
        else:
            first = feature_folds(data)[0]
        return list(read_info(first).classes)
    return list(manifest(data.root)["classes"])


def _by_fold(data, name) -> bool:
    """Whether split ``name`` is a part of a fold (or the training split plus augmented copies)."""
    return bool(data.fold is not None or data.augmentations) and name in (data.train_split, data.val_split)


def selection(data, name, info=None) -> list[dict]:
    """The manifest entries of the usable videos that split ``name`` reads.

    A manifest split, or, with ``data.fold`` / ``data.augmentations``, the training or validation
    part of a fold of the split file (fer_keras.data.splits)."""
    info = info or manifest(data.root)
    if _by_fold(data, name):
        from fer_keras.data import splits
        if name == data.val_split and name != data.train_split and data.fold is None:
            raise ValueError(f"{data.root}: augmentations without a fold leave no validation part; "
                             f"val_split {name!r} is not the training split")
        folds = splits.read(storage.join(data.root, data.folds)) if data.fold is not None else {"folds": [[]]}
        part = "train" if name == data.train_split else "val"
        keys = splits.fold_keys(info, folds, data.fold or 0, part, data.train_split, data.augmentations)
        if not keys:
            raise ValueError(f"{data.root}: fold {data.fold} leaves no {part} videos in split {data.train_split!r}")
        return [info["videos"][k] for k in keys]
    if name not in info["splits"]:
        raise ValueError(f"{storage.join(data.root, MANIFEST)}: no split {name!r}; "
                         f"it has {', '.join(info['splits'])}")
    return [v for v in info["videos"].values()
            if v["split"] == name and v.get("status") == "ok" and v.get("frames_kept", 0) > 0]


def split(data, name, *, training=False, with_meta=False, epoch=0, epochs=1, per_frame_category=False,
          share=None, steps=None):
    """The batched dataset of split ``name`` (a split of the manifest, a fold part, or an HDF5 file).

    ``training`` gives ``epochs`` shuffled epochs from ``epoch`` on (pipeline.sequences);
    ``per_frame_category`` repeats the category target on every frame, for per-frame heads;
    ``share`` and ``steps``: one worker's files of a multi-worker run (prepared shards only)."""
    if data.format == "hdf5":
        if share is not None:
            raise ValueError(f"{data.root}: cached feature files are shared across workers by data, not by file")
        from fer_keras.data.features import feature_sequences
        if data.pipeline.chain:
            raise ValueError(f"{data.root}: pipeline.chain cuts prepared shards' frames; cached feature "
                             "files keep one sequence per video")
        return feature_sequences(feature_sources(data, name), data.pipeline, training=training,
                                 with_meta=with_meta, epoch=epoch, epochs=epochs,
                                 per_frame_category=per_frame_category)
    from fer_keras.data.pipeline import sequences
    info = manifest(data.root)
    videos = selection(data, name, info)
    shard_splits = _shard_splits(videos, name)
    from fer_keras.data.integrity import require
    require(data.root, info, shard_splits)  # a missing or truncated shard: one line, before any work
    ids = [v["id"] for v in videos] if _by_fold(data, name) else None
    return sequences(info, data.root, shard_splits, data.pipeline, training=training, with_meta=with_meta,
                     ids=ids, epoch=epoch, epochs=epochs, per_frame_category=per_frame_category, share=share,
                     steps=steps)


def shard_files(data, name) -> int:
    """How many files split ``name`` reads: prepared shards (0 for cached feature files, which
    are not shared by file)."""
    if data.format == "hdf5":
        return 0
    from fer_keras.data.integrity import shards
    info = manifest(data.root)
    return len(shards(info, _shard_splits(selection(data, name, info), name)))


def _shard_splits(videos, name) -> list:
    """The manifest splits whose shards hold ``videos`` (a fold part's: its split's), else ``name``."""
    return sorted({v["split"] for v in videos}) or [name]


def steps(data, name):
    """Batches in one pass over split ``name`` (schedules in epochs need it up front)."""
    seq_len, batch = data.pipeline.seq_len, data.pipeline.batch_size
    if data.format == "hdf5":
        from fer_keras.data.features import count_sequences
        count = count_sequences(feature_sources(data, name), seq_len)
    elif data.pipeline.chain and name == data.train_split:  # windows across videos (pipeline._chained)
        count = sum(v["frames_kept"] for v in selection(data, name)) // seq_len
    else:
        from fer_keras.data.pipeline import sequences_per_video
        count = sum(sequences_per_video(v["frames_kept"], data.pipeline) for v in selection(data, name))
    return max(1, math.ceil(count / batch))
