"""Cached CNN features in HDF5 (thesis 002): the file layout, its checks and its tf.data pipeline."""
import os

import h5py
import numpy as np
import pytest

from fer_keras.data.features import feature_sequences, read_info, write_features
from fer_keras.data.pipeline import PipelineConfig

CLASSES = ("Angry", "Happy", "Sad")


def _arrays(rng, n=5, steps=6, dim=4, real=None):
    features = rng.normal(size=(n, steps, dim)).astype(np.float32)
    real = real or [steps - i % 3 for i in range(n)]
    masks = np.array([[1.0] * r + [0.0] * (steps - r) for r in real], np.float32)
    features *= masks[..., None]   # thesis 002 stores padded frames as zeros
    labels = np.eye(len(CLASSES), dtype=np.float32)[np.arange(n) % len(CLASSES)]
    labels[-1] = 0   # an unlabelled video
    names = [f"M0{i:02d}_vid_é.avi" for i in range(n)]
    return features, masks, labels, names


def _collect(ds):
    """Per video id: its sequences sorted by index, as (sequence, features, mask, category, label)."""
    out = {}
    for x, y, meta in ds.as_numpy_iterator():
        for i, vid in enumerate(meta["video_id"]):
            out.setdefault(vid.decode(), []).append(
                (meta["sequence"][i], x["features"][i], x["mask"][i], y["category"][i], meta["label"][i]))
    return {k: sorted(v, key=lambda s: s[0]) for k, v in out.items()}


def test_round_trip_equals_the_arrays(tmp_path):
    path = str(tmp_path / "fold-0-features-4.h5")
    features, masks, labels, names = _arrays(np.random.default_rng(0))
    write_features(path, features, masks, labels, names, CLASSES)
    assert read_info(path) == (CLASSES, 5, 6, 4, False)  # one row per video, no per-frame labels
    assert sorted(os.listdir(tmp_path)) == ["features.json", "fold-0-features-4.h5"]  # + its checksum index
    got = _collect(feature_sequences(path, PipelineConfig(seq_len=6, batch_size=2), with_meta=True))
    assert list(got) == names   # file order when not training
    for i, name in enumerate(names):
        ((sequence, f, m, category, label),) = got[name]
        assert sequence == 0
        np.testing.assert_array_equal(f, features[i])
        np.testing.assert_array_equal(m, masks[i])
        np.testing.assert_array_equal(category, labels[i])
        assert label == (i % 3 if i < 4 else -1)
    x, y = next(iter(feature_sequences(path, PipelineConfig(seq_len=6, batch_size=2))))
    assert set(x) == {"features", "mask"} and set(y) == {"category"}
    assert x["features"].shape == (2, 6, 4) and y["category"].shape == (2, 3)


def test_long_videos_are_split_and_short_ones_padded(tmp_path):
    path = str(tmp_path / "fold-1-features-4.h5")
    rng = np.random.default_rng(1)
    features, masks, labels, names = _arrays(rng, n=3, steps=10, real=[10, 7, 3])
    write_features(path, features, masks, labels, names, CLASSES)
    got = _collect(feature_sequences(path, PipelineConfig(seq_len=4, batch_size=4), with_meta=True))
    # 10 real frames -> 3 sequences, the last padded; 7 -> 2 (the third would be all padding);
    # 3 -> 1
    assert [[s[0] for s in got[n]] for n in names] == [[0, 1, 2], [0, 1], [0]]
    for i, name in enumerate(names):
        joined = np.concatenate([s[1] for s in got[name]])
        mask = np.concatenate([s[2] for s in got[name]])
        kept = min(len(joined), 10)
        np.testing.assert_array_equal(joined[:kept], features[i][:kept])
        assert not joined[kept:].any()
        assert mask.sum() == masks[i].sum() and mask[:int(masks[i].sum())].all()
    last = got[names[0]][-1]
    np.testing.assert_array_equal(last[2], [1, 1, 0, 0])
    assert not last[1][2:].any()
    # shorter than seq_len: zero padded and masked out
    ((_, f, m, _, _),) = _collect(feature_sequences(path, PipelineConfig(seq_len=12, batch_size=4),
                                                    with_meta=True))[names[2]]
    assert f.shape == (12, 4) and m.sum() == 3 and not f[10:].any()


def test_training_order_is_shuffled_deterministically(tmp_path):
    path = str(tmp_path / "fold-2-features-4.h5")
    write_features(path, *_arrays(np.random.default_rng(2), n=12), CLASSES)
    cfg = PipelineConfig(seq_len=6, batch_size=5, seed=4, shuffle_buffer=4)

    def ids(ds):
        return [v.decode() for _, _, meta in ds.as_numpy_iterator() for v in meta["video_id"]]

    first = ids(feature_sequences(path, cfg, training=True, with_meta=True))
    assert first == ids(feature_sequences(path, cfg, training=True, with_meta=True))
    in_order = ids(feature_sequences(path, cfg, with_meta=True))
    assert sorted(first) == sorted(in_order) and first != in_order


def test_bad_files_are_named(tmp_path):
    missing = str(tmp_path / "fold-9-features-4.h5")
    with pytest.raises(FileNotFoundError, match="fold-9-features-4.h5"):
        feature_sequences(missing, PipelineConfig())

    no_names = str(tmp_path / "no-names.h5")
    with h5py.File(no_names, "w") as f:
        f["features"], f["masks"], f["labels"] = np.zeros((2, 3, 4)), np.ones((2, 3)), np.eye(3)[:2]
        f.attrs["classes"] = list(CLASSES)
    with pytest.raises(ValueError, match=r"no-names\.h5: missing dataset\(s\) names"):
        read_info(no_names)

    uneven = str(tmp_path / "uneven.h5")
    with h5py.File(uneven, "w") as f:
        f["features"], f["masks"], f["labels"] = np.zeros((2, 3, 4)), np.ones((2, 3)), np.eye(3)[:1]
        f["names"] = ["a", "b"]
        f.attrs["classes"] = list(CLASSES)
    with pytest.raises(ValueError, match=r"uneven\.h5: datasets disagree on the number of videos.*labels 1"):
        feature_sequences(uneven, PipelineConfig())

    not_hdf5 = tmp_path / "fold-0-features-1024.h5"
    not_hdf5.write_text("not hdf5")
    with pytest.raises(ValueError, match="fold-0-features-1024.h5: not a readable HDF5 file"):
        read_info(str(not_hdf5))

    good = str(tmp_path / "good.h5")
    write_features(good, *_arrays(np.random.default_rng(3)), CLASSES)
    with pytest.raises(ValueError, match=r"good\.h5: its cached features hold category labels, not targets"):
        feature_sequences(good, PipelineConfig(targets=("category", "va")))


def test_writing_checks_shapes_and_never_leaves_half_a_file(tmp_path):
    path = str(tmp_path / "fold-0-features-4.h5")
    features, masks, labels, names = _arrays(np.random.default_rng(4))
    with pytest.raises(ValueError, match="fold-0-features-4.h5: masks have shape"):
        write_features(path, features, masks[:, :3], labels, names, CLASSES)
    with pytest.raises(ValueError, match="expected .* one-hot rows for 2 classes"):
        write_features(path, features, masks, labels, names, CLASSES[:2])
    assert os.listdir(tmp_path) == []
    write_features(path, features, masks, labels, names, CLASSES)
    # a rewrite that fails half-way (a name HDF5 cannot encode) keeps the complete old file
    with pytest.raises(UnicodeEncodeError):
        write_features(path, features * 2, masks, labels, names[:-1] + ["\ud800"], CLASSES)
    assert sorted(os.listdir(tmp_path)) == ["features.json", "fold-0-features-4.h5"]  # + its checksum index
    with h5py.File(path) as f:
        np.testing.assert_array_equal(f["features"][()], features)
