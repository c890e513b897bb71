"""One entry point from an experiment's ``data`` section to the tf.data pipeline of a split.

Prepared shards (``format: tfrecord``) go through :mod:`fer_keras.data.pipeline`; cached CNN
features (``format: hdf5``, thesis 002) through :mod:`fer_keras.data.features`. Both yield the
same ``(inputs, targets[, meta])`` structure, so training and evaluation never branch on it.
"""
import json
import math
from pathlib import Path


def manifest(root):
    path = Path(root) / "manifest.json"
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no manifest.json; is {root} a prepared dataset "
                                "(fer-keras prepare ...)?")
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError as err:
        raise ValueError(f"{path}: not valid JSON ({err})") from None


def _hdf5_path(data, split):
    path = Path(data.root) / split
    return path if path.suffix == ".h5" else path.with_name(path.name + ".h5")


def classes(data):
    """The class names, in label order."""
    if data.format == "hdf5":
        from fer_keras.data.features import read_info
        return list(read_info(_hdf5_path(data, data.train_split)).classes)
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
        folds = splits.read(Path(data.root) / data.folds) if data.fold is not None else {"folds": [[]]}
        part = "train" if name == data.train_split else "val"
        keys = splits.fold_keys(info, folds, data.fold or 0, part, data.train_split, data.augmentations)
        if not keys:
            raise ValueError(f"{data.root}: fold {data.fold} leaves no {part} videos in split {data.train_split!r}")
        return [info["videos"][k] for k in keys]
    if name not in info["splits"]:
        raise ValueError(f"{Path(data.root) / 'manifest.json'}: no split {name!r}; "
                         f"it has {', '.join(info['splits'])}")
    return [v for v in info["videos"].values()
            if v["split"] == name and v.get("status") == "ok" and v.get("frames_kept", 0) > 0]


def split(data, name, *, training=False, with_meta=False, epoch=0, epochs=1, per_frame_category=False):
    """The batched dataset of split ``name`` (a split of the manifest, a fold part, or an HDF5 file).

    ``training`` gives ``epochs`` shuffled epochs from ``epoch`` on (pipeline.sequences);
    ``per_frame_category`` repeats the category target on every frame, for per-frame heads."""
    if data.format == "hdf5":
        from fer_keras.data.features import feature_sequences
        if per_frame_category:
            raise ValueError(f"{_hdf5_path(data, name)}: cached feature files hold one category per "
                             "video; a model with per-frame category heads needs prepared shards")
        return feature_sequences(_hdf5_path(data, name), data.pipeline, training=training,
                                 with_meta=with_meta, epoch=epoch, epochs=epochs)
    from fer_keras.data.pipeline import sequences
    info = manifest(data.root)
    videos = selection(data, name, info)
    shard_splits = sorted({v["split"] for v in videos}) or [name]
    from fer_keras.data.integrity import require
    require(data.root, info, shard_splits)  # a missing or truncated shard: one line, before any work
    ids = [v["id"] for v in videos] if _by_fold(data, name) else None
    return sequences(info, data.root, shard_splits, data.pipeline, training=training, with_meta=with_meta,
                     ids=ids, epoch=epoch, epochs=epochs, per_frame_category=per_frame_category)


def steps(data, name):
    """Batches in one pass over split ``name`` (schedules in epochs need it up front)."""
    seq_len, batch = data.pipeline.seq_len, data.pipeline.batch_size
    if data.format == "hdf5":
        from fer_keras.data.features import count_sequences
        count = count_sequences(_hdf5_path(data, name), seq_len)
    else:
        from fer_keras.data.pipeline import sequences_per_video
        count = sum(sequences_per_video(v["frames_kept"], data.pipeline) for v in selection(data, name))
    return max(1, math.ceil(count / batch))
