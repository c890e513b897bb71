"""VGGFace weights in keras-vggface's Keras 2 layout load by name into our native builders.

The layer names in ``data/vggface_layer_names.json`` were recorded from keras-vggface's own
model definitions; the files written here use them, nested groups and all, as Keras 2 did.
"""
import json
import logging
from pathlib import Path

import h5py
import keras
import numpy as np
import pytest

from fer_keras.models.backbones import build_backbone
from fer_keras.models.keras2_h5 import load_by_name, to_keras_name

SIZE = 32
NAMES = json.loads((Path(__file__).parent / "data" / "vggface_layer_names.json").read_text())
TOPS = {"vgg16": "fc8", "resnet50": "classifier", "senet50": "classifier"}
FORMS = {"vgg16": ("vggface_vgg16", {"feature": "fc7"}),
         "resnet50": ("vggface_resnet50", {"global_pool": True}),
         "senet50": ("vggface_senet50", {"global_pool": True})}
WEIGHTLESS = ["input_1", "pool1", "flatten", "fc6/relu", "fc8/softmax", "activation_1", "avg_pool"]


def build(form, seed, **kwargs):
    keras.utils.set_random_seed(seed)
    name, options = FORMS[form]
    return build_backbone(name, input_size=SIZE, **options, **kwargs)


def weighted(model):
    return {layer.name: layer for layer in model.layers if layer.weights}


def predict(model, x):
    return keras.ops.convert_to_numpy(model(x, training=False))


def randomize(model, seed):
    """Non-default values for every weight, so biases and BN statistics are checked too."""
    rng = np.random.default_rng(seed)
    for layer in weighted(model).values():
        for w in layer.weights:
            shape = tuple(w.shape)
            if w.name in ("gamma", "moving_variance"):
                w.assign(rng.uniform(0.5, 1.5, shape).astype("float32"))
            elif w.name in ("bias", "beta", "moving_mean"):
                w.assign(rng.normal(0, 0.1, shape).astype("float32"))


def keras2_entries(form, model):
    """(original name, [(weight name, array)]) per file layer, fc8/classifier included."""
    ours = weighted(model)
    entries = []
    for original in NAMES[form]:
        layer = ours.get(to_keras_name(original))
        if layer is None:  # the classifier top, which our builders do not have
            rng = np.random.default_rng(0)
            entries.append((original, [("kernel", rng.normal(size=(8, 5))), ("bias", np.zeros(5))]))
        else:
            entries.append((original, [(w.name, keras.ops.convert_to_numpy(w)) for w in layer.weights]))
    return entries


def write_keras2_h5(path, entries, *, under=None):
    """A weights file laid out as Keras 2 wrote it (``model.save_weights``/``model.save``)."""
    with h5py.File(path, "w") as f:
        root = f.create_group(under) if under else f
        root.attrs["backend"] = b"tensorflow"
        root.attrs["keras_version"] = b"2.2.4"
        names = [name for name, _ in entries]
        names[1:1] = WEIGHTLESS
        root.attrs["layer_names"] = np.array([n.encode() for n in names])
        for name in WEIGHTLESS:
            root.require_group(name).attrs["weight_names"] = np.array([], dtype="S1")
        for name, weights in entries:
            group = root.require_group(name)
            group.attrs["weight_names"] = np.array([f"{name}/{w}:0".encode() for w, _ in weights])
            for w, value in weights:
                group.create_dataset(f"{name}/{w}:0", data=np.asarray(value, dtype="float32"))
    return path


@pytest.fixture(scope="module", params=sorted(FORMS))
def saved(request, tmp_path_factory):
    """(form, model A, its Keras 2 file, a batch, A's output on it)."""
    form = request.param
    model = build(form, seed=1)
    randomize(model, seed=1)
    path = write_keras2_h5(tmp_path_factory.mktemp(form) / f"rcmalli_vggface_tf_{form}.h5",
                           keras2_entries(form, model))
    x = np.random.default_rng(2).uniform(0, 255, (2, SIZE, SIZE, 3)).astype("float32")
    return form, model, path, x, predict(model, x)


def test_names_match_keras_vggface(saved):
    form, model, *_ = saved
    original = {n for n in NAMES[form] if n != TOPS[form]}
    assert {to_keras_name(n) for n in original} == set(weighted(model))


def test_load_by_name_round_trip(saved):
    form, _, path, x, expected = saved
    model = build(form, seed=2)
    assert not np.array_equal(predict(model, x), expected)
    report = load_by_name(model, path)
    np.testing.assert_array_equal(predict(model, x), expected)
    assert report["missing_in_file"] == [] and report["skipped_mismatch"] == []
    assert report["unused_in_file"] == [TOPS[form]]
    assert sorted(report["loaded"]) == sorted(weighted(model))


def test_build_backbone_loads_the_file(saved):
    form, _, path, x, expected = saved
    model = build(form, seed=3, weights=path)
    np.testing.assert_array_equal(predict(model, x), expected)


@pytest.fixture(scope="module")
def vgg():
    model = build("vgg16", seed=4)
    randomize(model, seed=4)
    return model


def test_mismatched_fc6(vgg, tmp_path, caplog):
    entries = [(name, [(w, np.ones((2048, 4096)) if name == "fc6" and w == "kernel" else v)
                       for w, v in weights])
               for name, weights in keras2_entries("vgg16", vgg)]
    path = write_keras2_h5(tmp_path / "fc6_at_64px.h5", entries)
    model = build("vgg16", seed=5)
    before = [keras.ops.convert_to_numpy(w) for w in model.weights]
    with pytest.raises(ValueError, match=r"fc6_at_64px\.h5.*'fc6'.*\(2048, 4096\).*\(512, 4096\)"):
        load_by_name(model, path)
    for w, value in zip(model.weights, before):  # nothing was set before the error
        np.testing.assert_array_equal(keras.ops.convert_to_numpy(w), value)
    fc6 = model.get_layer("fc6").get_weights()
    with caplog.at_level(logging.WARNING, logger="fer_keras.models.keras2_h5"):
        report = load_by_name(model, path, skip_mismatch=True)
    assert report["skipped_mismatch"] == ["fc6"] and "fc6" in caplog.text
    assert "fc7" in report["loaded"] and len(report["loaded"]) == 14
    np.testing.assert_array_equal(model.get_layer("fc6").get_weights()[0], fc6[0])
    for name in ("conv1_1", "conv5_3", "fc7"):
        for got, want in zip(model.get_layer(name).get_weights(), vgg.get_layer(name).get_weights()):
            np.testing.assert_array_equal(got, want)


def tiny(seed):
    """A nested sub-model with a ``/`` name inside a Wrapper (TimeDistributed here; the sequence
    heads use MaskedTimeDistributed, also a Wrapper)."""
    keras.utils.set_random_seed(seed)
    inp = keras.Input((4,))
    inner = keras.Model(inp, keras.layers.Dense(3, name=to_keras_name("fc6/x"))(inp), name="inner")
    seq = keras.Input((2, 4))
    out = keras.layers.Dense(1, name="head")(keras.layers.TimeDistributed(inner)(seq))
    return keras.Model(seq, out)


def test_full_model_file_nested_models_and_keras3_names(tmp_path):
    rng = np.random.default_rng(6)
    fc6 = [("kernel", rng.normal(size=(4, 3))), ("bias", rng.normal(size=3))]
    head = [("kernel", rng.normal(size=(3, 1))), ("bias", rng.normal(size=1))]
    path = write_keras2_h5(tmp_path / "full.h5", [("fc6/x", fc6), ("head", head)], under="model_weights")
    model = tiny(6)
    report = load_by_name(model, path)
    assert sorted(report["loaded"]) == ["fc6__x", "head"]
    np.testing.assert_array_equal(model.get_layer("head").get_weights()[1], np.float32(head[1][1]))
    inner = model.layers[1].layer
    np.testing.assert_array_equal(inner.get_layer("fc6__x").get_weights()[0], np.float32(fc6[0][1]))
    # A file already written with Keras 3 spellings matches as well.
    path = write_keras2_h5(tmp_path / "k3.h5", [("fc6__x", fc6)])
    assert load_by_name(tiny(7), path)["missing_in_file"] == ["head"]


def test_not_hdf5(tmp_path):
    path = tmp_path / "weights.h5"
    path.write_text("not a weights file")
    with pytest.raises(ValueError, match=r"weights\.h5: cannot read as an HDF5"):
        load_by_name(tiny(0), path)


def test_hdf5_without_layer_names(tmp_path):
    path = tmp_path / "other.h5"
    with h5py.File(path, "w") as f:
        f.create_dataset("x", data=np.zeros(3))
    with pytest.raises(ValueError, match=r"other\.h5: HDF5 file without a 'layer_names'"):
        load_by_name(tiny(0), path)
