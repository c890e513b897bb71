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


def split(data, name, *, training=False, with_meta=False):
    """The batched dataset of split ``name`` (a split of the manifest, or an HDF5 file)."""
    if data.format == "hdf5":
        from fer_keras.data.features import feature_sequences
        return feature_sequences(_hdf5_path(data, name), data.pipeline, training=training,
                                 with_meta=with_meta)
    from fer_keras.data.pipeline import sequences
    info = manifest(data.root)
    if name not in info["splits"]:
        raise ValueError(f"{Path(data.root) / 'manifest.json'}: no split {name!r}; "
                         f"it has {', '.join(info['splits'])}")
    return sequences(info, data.root, name, data.pipeline, training=training, with_meta=with_meta)


def steps(data, name):
    """Batches in one pass over split ``name`` (schedules in epochs need it up front)."""
    seq_len, batch = data.pipeline.seq_len, data.pipeline.batch_size
    if data.format == "hdf5":
        from fer_keras.data.features import count_sequences
        count = count_sequences(_hdf5_path(data, name), seq_len)
    else:
        videos = manifest(data.root)["videos"].values()
        count = sum(math.ceil(v["frames_kept"] / seq_len) for v in videos
                    if v["split"] == name and v.get("status") == "ok" and v.get("frames_kept", 0) > 0)
    return max(1, math.ceil(count / batch))
