"""Padded frames never reach the per-frame CNN (issue 15 item 3): in training too, BatchNorm
statistics and weights do not depend on what the padding holds (a repeated frame, zeros, noise).

A tiny Conv+BN backbone registered for the test keeps each build and step to a second or two.
"""
import keras
import numpy as np
import pytest
from keras import layers

from fer_keras.models import backbones, fusion, sequence
from fer_keras.models.layers import MaskedTimeDistributed

SIZE, STEPS, VALID = 8, 4, (2, 3)   # per-sample real frames; the rest of the 4 steps is padding


def tiny_bn_trunk(x):
    x = layers.Conv2D(4, 3, name="conv")(x)
    x = layers.BatchNormalization(name="bn")(x)
    return layers.Activation("relu", name="relu")(x)


@pytest.fixture(autouse=True)
def tiny_bn(monkeypatch):
    monkeypatch.setitem(backbones.BACKBONES, "tiny_bn",
                        backbones.Backbone(tiny_bn_trunk, ("conv", "bn"), SIZE, SIZE, "test only", "unit"))
    keras.backend.clear_session()
    keras.utils.set_random_seed(0)
    yield
    keras.backend.clear_session()


BUILDERS = {
    "sequence": lambda: sequence.sequence_model(backbone="tiny_bn", global_pool=True, seq_len=STEPS,
                                                units=4, rnn_layers=1),
    "fusion": lambda: fusion.early_fusion(option=2, backbone="tiny_bn", feature=None, global_pool=True,
                                          seq_len=STEPS, lld_dim=3, audio_units=4, audio_layers=1,
                                          units=4, rnn_layers=1),
}


def build(name, jit_compile=False):
    model = BUILDERS[name]()
    model.compile(keras.optimizers.SGD(0.1), "categorical_crossentropy", jit_compile=jit_compile)
    return model


def batch(model, padding, valid=VALID):
    """Inputs whose padded steps hold ``padding``: "repeat" (the last real frame), "zeros" or "noise"."""
    rng = np.random.default_rng(0)
    frames = rng.normal(size=(len(valid), STEPS, SIZE, SIZE, 3)).astype("float32")
    mask = np.zeros((len(valid), STEPS), "float32")
    noise = rng.normal(size=frames.shape).astype("float32") * 100
    for i, n in enumerate(valid):
        mask[i, :n] = 1
        fill = {"repeat": frames[i, n - 1] if n else 0, "zeros": 0, "noise": noise[i, n:]}[padding]
        frames[i, n:] = fill
    inputs = {"frames": frames, "mask": mask}
    if "lld" in model.input:
        inputs["lld"] = rng.normal(size=(len(valid), STEPS, 3)).astype("float32")
    return inputs


def train_step(model, inputs, start):
    """One SGD step from the weights ``start``; the weights after it."""
    for v, w in zip(model.weights, start):
        v.assign(w)
    model.train_on_batch(inputs, {"category": np.eye(7, dtype="float32")[: len(inputs["mask"])]})
    return [v.numpy() for v in model.weights]


def moving_stats(model):
    bn = model.get_layer("frame_cnn").layer.get_layer("bn")
    return bn.moving_mean.numpy(), bn.moving_variance.numpy()


def direct_stats(model, inputs, start):
    """The BN moving statistics of the CNN applied in training mode to the real frames only."""
    for v, w in zip(model.weights, start):
        v.assign(w)
    model.get_layer("frame_cnn").layer(inputs["frames"][inputs["mask"] > 0], training=True)
    return moving_stats(model)


@pytest.mark.parametrize("name", BUILDERS)
def test_padding_content_does_not_change_a_training_step(name):
    model = build(name)
    start = [v.numpy() for v in model.weights]
    repeat = train_step(model, batch(model, "repeat"), start)
    for padding in ("zeros", "noise"):
        other = train_step(model, batch(model, padding), start)
        for v, a, b in zip(model.weights, repeat, other):
            np.testing.assert_allclose(a, b, rtol=0, atol=1e-6, err_msg=f"{padding}: {v.path}")


@pytest.mark.parametrize("name", BUILDERS)
def test_moving_statistics_are_those_of_the_real_frames(name):
    model = build(name)
    start = [v.numpy() for v in model.weights]
    inputs = batch(model, "noise")
    train_step(model, inputs, start)
    got = moving_stats(model)
    want = direct_stats(model, inputs, start)
    assert not np.allclose(want[0], 0)   # the step did move them
    for a, b in zip(got, want):
        np.testing.assert_allclose(a, b, rtol=0, atol=1e-6)


def test_keras_round_trip(tmp_path):
    model = build("sequence")
    inputs = batch(model, "noise")
    train_step(model, inputs, [v.numpy() for v in model.weights])
    model.save(tmp_path / "model.keras")
    loaded = keras.models.load_model(tmp_path / "model.keras")
    assert isinstance(loaded.get_layer("frame_cnn"), MaskedTimeDistributed)
    assert loaded.get_layer("frame_cnn").layer.get_layer("bn").moving_mean.path == "bn/moving_mean"
    np.testing.assert_array_equal(model.predict(inputs, verbose=0)["category"],
                                  loaded.predict(inputs, verbose=0)["category"])


def test_xla_training_step_matches_graph_mode():
    """The gather of real frames has a data-dependent size; XLA compiles it, with the same step."""
    graph, xla = build("sequence"), build("sequence", jit_compile=True)
    start = [v.numpy() for v in graph.weights]
    inputs = batch(graph, "noise")
    want = train_step(graph, inputs, start)
    got = train_step(xla, inputs, start)
    assert xla.jit_compile
    for v, a, b in zip(graph.weights, got, want):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6, err_msg=v.path)
    for a, b in zip(moving_stats(xla), direct_stats(graph, inputs, start)):
        np.testing.assert_allclose(a, b, rtol=0, atol=1e-6)


@pytest.mark.parametrize("jit_compile", [False, pytest.param(True, marks=pytest.mark.slow)])
def test_a_batch_of_padding_only_leaves_batchnorm_alone(jit_compile):
    model = build("sequence", jit_compile)
    start = [v.numpy() for v in model.weights]
    before = moving_stats(model)
    train_step(model, batch(model, "noise", valid=(0, 0)), start)
    for a, b in zip(moving_stats(model), before):
        np.testing.assert_array_equal(a, b)
    assert all(np.isfinite(w).all() for w in model.get_weights())
