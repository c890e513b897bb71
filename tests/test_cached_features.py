"""Thesis 003's cached frozen-CNN features: `fer-keras features` on valence/arousal tracks with
per-frame categories, the model's cached form, and the two forms giving the same predictions."""
import h5py
import numpy as np
import pytest
import yaml

from fer_keras import config
from fer_keras.cli import main
from fer_keras.data import loader
from fer_keras.models import cached

SEQ = 4


def experiment(root, *, model_cached, weights=None, **data):
    """A tiny thesis 003 combined model (VGG16 at 32 px, LSTM, per-frame category and VA heads)."""
    options = {"input_size": 32, "seq_len": SEQ, "cached": model_cached}
    if weights:
        options["weights"] = str(weights)
    return {"name": "tiny003", "data": {"root": str(root), "train_split": "train", "val_split": "val",
                                        "test_split": "test", **data,
                                        "pipeline": {"seq_len": SEQ, "padding": "zeros", "image_size": 32,
                                                     "normalize": "symmetric", "targets": ["category", "va"],
                                                     "batch_size": 2}},
            "model": {"name": "vgg16_lstm_combined", "options": options}}


@pytest.fixture(scope="module")
def extracted(prepared_va_categories, tmp_path_factory):
    """(frames model, its experiment, the feature folder, the prepared data): the frames model's
    own CNN weights written to a file that the features' experiment names."""
    import keras

    keras.utils.set_random_seed(3)
    root, _ = prepared_va_categories
    tmp = tmp_path_factory.mktemp("cached")
    spec = experiment(root, model_cached=False)
    model = cached.build(config.from_dict(spec), cached=False)
    weights = tmp / "cnn.weights.h5"
    cached.frame_cnn(model).save_weights(weights)
    source = tmp / "features.yaml"
    source.write_text(yaml.safe_dump(experiment(root, model_cached=False, weights=weights)))
    assert main(["features", str(source), "--data", root, "--out", str(tmp / "features"), "--seq-len", str(SEQ),
                 "-q"]) == 0
    return model, spec, tmp / "features", root


def _by_key(model, ds):
    out = {}
    for x, _, meta in ds:
        pred = model.predict_on_batch({k: x[k] for k in model.input})
        for i, (v, s) in enumerate(zip(meta["video_id"].numpy(), meta["sequence"].numpy())):
            m = x["mask"].numpy()[i] > 0
            out[(v.decode(), int(s))] = {k: np.asarray(p)[i][m] for k, p in pred.items()}
    return out


def test_cached_form_predicts_what_the_end_to_end_model_predicts(extracted):
    model, spec, features, root = extracted
    exp = config.from_dict(experiment(features, model_cached=True, format="hdf5", features=512))
    small = cached.build(exp, cached=True)
    copied = cached.copy_by_name(model, small)
    assert {"rnn1", "category", "va"} <= set(copied)
    assert "frames" not in small.input and small.input["features"].shape[-1] == 512
    for split in ("train", "val", "test"):
        ends = _by_key(model, loader.split(config.from_dict(spec).data, split, with_meta=True, per_frame_category=True))
        cache = _by_key(small, loader.split(exp.data, split, with_meta=True, per_frame_category=True))
        assert ends.keys() == cache.keys() and ends
        for key in ends:
            for out in ("category", "va"):
                np.testing.assert_allclose(cache[key][out], ends[key][out], rtol=1e-4, atol=1e-5)


def test_feature_files_hold_every_frame_with_its_labels(extracted, prepared_va_categories):
    """Every kept frame of every track is one step of a row, with its own valence/arousal and
    category, checked against our own reading of the shards."""
    _, _, features, root = extracted
    manifest = prepared_va_categories[1]
    spec = experiment(root, model_cached=False)
    truth = {}
    for x, y, meta in loader.split(config.from_dict(spec).data, "train", with_meta=True, per_frame_category=True):
        for i, v in enumerate(meta["video_id"].numpy()):
            for step in np.flatnonzero(x["mask"].numpy()[i]):
                truth[(v.decode(), int(meta["frame_index"].numpy()[i, step]))] = (
                    y["va"].numpy()[i, step], int(y["category"].numpy()[i, step].argmax()))
    with h5py.File(features / "train-features-512.h5", "r") as f:
        names, masks = f["names"].asstr()[()], f["masks"][()]
        va, cats, index = f["va"][()], f["categories"][()], f["frame_index"][()]
    stored = {(n, int(index[r, t])): (va[r, t], int(cats[r, t]))
              for r, n in enumerate(names) for t in np.flatnonzero(masks[r])}
    assert stored.keys() == truth.keys()
    assert len(stored) == manifest["splits"]["train"]["frames"]
    for key, (v, c) in truth.items():
        np.testing.assert_allclose(stored[key][0], v)
        assert stored[key][1] == c
    assert (cats[masks == 0] == -1).all()


def test_a_rerun_keeps_the_files(extracted, tmp_path):
    model, _, features, root = extracted
    before = {p.name: p.stat().st_mtime_ns for p in features.glob("*.h5")}
    source = next(features.parent.glob("features.yaml"))
    assert main(["features", str(source), "--data", root, "--out", str(features), "--seq-len", str(SEQ), "-q"]) == 0
    assert {p.name: p.stat().st_mtime_ns for p in features.glob("*.h5")} == before


@pytest.mark.parametrize("change, named", [
    ({"data": {"pipeline": {"augment": {"flip": True}}}}, "data.pipeline.augment"),
    ({"data": {"pipeline": {"affine": "thesis002"}}}, "data.pipeline.affine"),
    ({"data": {"format": "tfrecord", "features": None}}, "data.format must be hdf5"),
])
def test_what_would_change_the_cnns_input_is_refused_on_the_cached_path(tmp_path, change, named):
    spec = config.merge(experiment(tmp_path, model_cached=True, format="hdf5", features=512), change)
    with pytest.raises(ValueError, match=named.replace(".", r"\.")):
        config.from_dict(spec)


def test_a_trainable_cnn_is_refused_on_the_cached_path(tmp_path):
    spec = experiment(tmp_path, model_cached=True, format="hdf5", features=512)
    spec["model"]["options"]["trainable"] = 2
    with pytest.raises(ValueError, match="trainable"):
        config.from_dict(spec)
