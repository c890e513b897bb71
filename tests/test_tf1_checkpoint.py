"""TF1 / TF-Slim checkpoints into Keras models (fer_keras.models.tf1_checkpoint).

Checkpoints are written by TF's own v1 ``Saver`` from a v1 graph, so variable names are TF1's;
each load is checked against an independent computation with the checkpoint's weights (plain
``tf.nn`` ops, or TF1's ``GRUCell`` run by ``dynamic_rnn``).
"""
import json
import re

import keras
import numpy as np
import pytest
import tensorflow as tf
from keras import layers

from fer_keras import models
from fer_keras.models import inception
from fer_keras.models.tf1_checkpoint import (AFFWILDNET_VGGFACE_GRU, _named_weights, _rules, load_checkpoint,
                                             write_report)

v1 = tf.compat.v1
RNG = np.random.default_rng(0)


def _random(shape):
    return RNG.normal(0, 0.5, shape).astype("float32")


def save_tf1(directory, arrays, *, adam=False):
    """Save {TF1 name: array} with the v1 ``Saver`` as ``directory/model.ckpt-7``; ``adam`` adds
    the slots and step counter a TF1 Adam training run saves beside the weights."""
    with tf.Graph().as_default():
        variables = [v1.get_variable(name, initializer=value) for name, value in arrays.items()]
        if adam:
            v1.train.get_or_create_global_step()
            v1.train.AdamOptimizer().minimize(tf.add_n([tf.reduce_sum(v) for v in variables]))
        with v1.Session() as session:
            session.run(v1.global_variables_initializer())
            return v1.train.Saver().save(session, str(directory / "model.ckpt"), global_step=7)


# --- TF-Slim vgg_16: convolutions by name, fc6/fc7 as convolutions into Dense ---------------------

def slim_vgg_like():
    """Two of vgg_16's convolutions and its fc6/fc7, shrunk (fc6 a 2x2 VALID convolution)."""
    return {"vgg_16/conv1/conv1_1/weights": _random((3, 3, 3, 4)), "vgg_16/conv1/conv1_1/biases": _random(4),
            "vgg_16/conv1/conv1_2/weights": _random((3, 3, 4, 4)), "vgg_16/conv1/conv1_2/biases": _random(4),
            "vgg_16/fc6/weights": _random((2, 2, 4, 6)), "vgg_16/fc6/biases": _random(6),
            "vgg_16/fc7/weights": _random((1, 1, 6, 5)), "vgg_16/fc7/biases": _random(5)}


def keras_vgg_like():
    x = inputs = keras.Input((4, 4, 3))
    x = layers.Conv2D(4, 3, padding="same", activation="relu", name="block1_conv1")(x)
    x = layers.Conv2D(4, 3, padding="same", activation="relu", name="block1_conv2")(x)
    x = layers.MaxPooling2D(2, name="block1_pool")(x)
    x = layers.Flatten(name="flatten")(x)
    x = layers.Dense(6, activation="relu", name="fc6")(x)
    x = layers.Dropout(0.5, name="fc6_dropout")(x)
    return keras.Model(inputs, layers.Dense(5, name="fc7")(x))


def test_slim_vgg16_convolutions_and_fc_as_conv(tmp_path):
    w = slim_vgg_like()
    save_tf1(tmp_path, w)
    model = keras_vgg_like()
    report = load_checkpoint(model, tmp_path, "vgg_16")

    assert report["loaded"]["block1_conv2/kernel"] == "vgg_16/conv1/conv1_2/weights"
    assert report["loaded"]["fc6/kernel"] == "vgg_16/fc6/weights"
    assert len(report["loaded"]) == 8 and not report["unmapped"] and not report["unused_in_checkpoint"]
    x = _random((2, 4, 4, 3))

    def conv(h, scope, padding="SAME"):
        return tf.nn.bias_add(tf.nn.conv2d(h, w[f"{scope}/weights"], 1, padding), w[f"{scope}/biases"])

    h = tf.nn.relu(conv(x, "vgg_16/conv1/conv1_1"))
    h = tf.nn.relu(conv(h, "vgg_16/conv1/conv1_2"))
    h = tf.nn.max_pool2d(h, 2, 2, "VALID")
    h = tf.nn.relu(conv(h, "vgg_16/fc6", "VALID"))        # slim: fc6 is a VALID conv on the whole map
    expected = tf.squeeze(conv(h, "vgg_16/fc7"), [1, 2])
    np.testing.assert_allclose(model(x, training=False), expected, rtol=1e-5, atol=1e-5)


def test_conv_output_equals_tf_nn_conv2d(tmp_path):
    w = slim_vgg_like()
    save_tf1(tmp_path, w)
    model = keras_vgg_like()
    load_checkpoint(model, tmp_path / "model.ckpt-7.index", "vgg_16")   # a file of the checkpoint names it too
    x = _random((1, 4, 4, 3))
    conv1 = keras.Model(model.input, model.get_layer("block1_conv1").output)
    expected = tf.nn.relu(tf.nn.conv2d(x, w["vgg_16/conv1/conv1_1/weights"], 1, "SAME")
                          + w["vgg_16/conv1/conv1_1/biases"])
    np.testing.assert_allclose(conv1(x), expected, rtol=1e-5, atol=1e-5)


# --- TF1 GRUCell -> Keras GRU(reset_after=False): the gate order ----------------------------------

def save_affwildnet_rnn(directory, x, units=8):
    """AffWildNet's recurrent part as its code builds it (a 2-layer ``MultiRNNCell`` of TF1
    ``GRUCell`` under ``rnn_1``, then ``weights_rnn``/``biases_rnn``), every variable random and an
    Adam optimizer's slots saved beside them; returns its output on ``x`` (B, T, F)."""
    # Keras 3 hides tf.compat.v1.nn.rnn_cell; TF still ships TF1's implementation
    from tensorflow.python.keras.layers.legacy_rnn.rnn_cell_impl import GRUCell, MultiRNNCell
    from tensorflow.python.ops.rnn import dynamic_rnn

    with tf.Graph().as_default():
        inputs = v1.placeholder(tf.float32, x.shape)
        with v1.variable_scope("rnn_1"):
            cell = MultiRNNCell([GRUCell(units) for _ in range(2)])
            outputs, _ = dynamic_rnn(cell, inputs, dtype=tf.float32)
            weights = v1.get_variable("weights_rnn", (units, 2))
            biases = v1.get_variable("biases_rnn", (2,))
            prediction = tf.tensordot(outputs, weights, 1) + biases
        v1.train.get_or_create_global_step()
        v1.train.AdamOptimizer().minimize(tf.reduce_sum(prediction))
        weights = v1.trainable_variables()
        with v1.Session() as session:
            session.run(v1.global_variables_initializer())
            for variable in weights:
                variable.load(_random(variable.shape), session)
            v1.train.Saver().save(session, str(directory / "model.ckpt"), global_step=7)
            return session.run(prediction, {inputs: x})


def keras_rnn(inputs=5, units=8, reset_after=False):
    x = frames = keras.Input((3, inputs))
    x = layers.GRU(units, return_sequences=True, reset_after=reset_after, name="rnn1")(x)
    x = layers.GRU(units, return_sequences=True, reset_after=reset_after, name="rnn2")(x)
    return keras.Model(frames, layers.Dense(2, name="va")(x))


def test_tf1_gru_cell_equals_keras_gru(tmp_path):
    x = _random((2, 3, 5))
    expected = save_affwildnet_rnn(tmp_path, x)
    model = keras_rnn()
    report = load_checkpoint(model, tmp_path, AFFWILDNET_VGGFACE_GRU)

    cell = "rnn_1/rnn/multi_rnn_cell/cell_1/gru_cell"
    assert report["loaded"]["rnn2/recurrent_kernel"] == [f"{cell}/gates/kernel", f"{cell}/candidate/kernel"]
    assert report["loaded"]["va/kernel"] == "rnn_1/weights_rnn"
    assert len(report["loaded"]) == 8 and not report["unused_in_checkpoint"]
    np.testing.assert_allclose(model(x), expected, rtol=1e-5, atol=1e-5)


def test_optimizer_state_counted_apart(tmp_path):
    save_affwildnet_rnn(tmp_path, _random((1, 3, 5)))
    report = load_checkpoint(keras_rnn(), tmp_path, "affwildnet_vggface_gru")
    # 10 weights x Adam's 2 slots, beta1_power, beta2_power, global_step
    assert report["optimizer_state"] == 23 and report["unused_in_checkpoint"] == []

    save_tf1(tmp_path, {"vgg_16/conv1/conv1_1/weights": _random((3, 3, 3, 4)), "vgg_16/fc8/weights": _random(3)},
             adam=True)
    model = keras.Sequential([keras.Input((4, 4, 3)), layers.Conv2D(4, 3, use_bias=False, name="block1_conv1")])
    report = load_checkpoint(model, tmp_path, "vgg_16")   # the directory's latest checkpoint
    assert report["unused_in_checkpoint"] == ["vgg_16/fc8/weights"] and report["optimizer_state"] == 7


def test_keras_default_gru_is_refused_with_both_shapes(tmp_path):
    save_affwildnet_rnn(tmp_path, _random((1, 3, 5)))
    with pytest.raises(ValueError, match=r"gates/bias \(16,\).*after gru_bias.*'rnn1/bias' is \(2, 24\)"):
        load_checkpoint(keras_rnn(reset_after=True), tmp_path, "affwildnet_vggface_gru")


# --- TF-Slim inception_v2: batch norm without gamma -----------------------------------------------

def _batchnorm(n):
    """Slim batch-norm variables without gamma (``scale=False``)."""
    return {"beta": _random(n), "moving_mean": _random(n), "moving_variance": RNG.uniform(0.5, 2, n).astype("float32")}


def test_slim_batchnorm_without_gamma(tmp_path):
    stem, b0 = "InceptionV2/Conv2d_1a_7x7", "InceptionV2/Mixed_3b/Branch_0/Conv2d_0a_1x1"
    bn1, bn2 = _batchnorm(5), _batchnorm(6)
    w = {f"{stem}/depthwise_weights": _random((3, 3, 3, 2)), f"{stem}/pointwise_weights": _random((1, 1, 6, 4)),
         f"{stem}/biases": _random(4), "InceptionV2/Conv2d_2b_1x1/weights": _random((1, 1, 4, 5)),
         **{f"InceptionV2/Conv2d_2b_1x1/BatchNorm/{k}": v for k, v in bn1.items()},
         f"{b0}/weights": _random((1, 1, 5, 6)), **{f"{b0}/BatchNorm/{k}": v for k, v in bn2.items()},
         "InceptionV2/Logits/Conv2d_1c_1x1/weights": _random((1, 1, 6, 3))}
    save_tf1(tmp_path, w)
    x = inputs = keras.Input((6, 6, 3))
    x = layers.SeparableConv2D(4, 3, padding="same", depth_multiplier=2, activation="relu", name="Conv2d_1a_7x7")(x)
    x = inception._conv(x, 5, 1, "Conv2d_2b_1x1")              # the project's: slim's scale=False
    x = layers.Conv2D(6, 1, use_bias=False, name="Mixed_3b__Branch_0__Conv2d_0a_1x1")(x)
    x = layers.BatchNormalization(epsilon=1e-3, name="Mixed_3b__Branch_0__Conv2d_0a_1x1__BatchNorm")(x)
    model = keras.Model(inputs, x)
    gamma = model.get_layer("Mixed_3b__Branch_0__Conv2d_0a_1x1__BatchNorm").gamma
    gamma.assign(np.full(6, 3.0))                                   # a trained gamma is reset to slim's 1
    report = load_checkpoint(model, tmp_path, "inception_v2")

    assert report["gamma_ones"] == ["Mixed_3b/Branch_0/Conv2d_0a_1x1/BatchNorm/gamma"]
    assert report["loaded"]["Conv2d_2b_1x1/BatchNorm/moving_variance"] == \
        "InceptionV2/Conv2d_2b_1x1/BatchNorm/moving_variance"
    assert report["unused_in_checkpoint"] == ["InceptionV2/Logits/Conv2d_1c_1x1/weights"]
    assert not report["missing_in_checkpoint"] and not report["unmapped"]
    data = _random((2, 6, 6, 3))
    h = tf.nn.separable_conv2d(data, w[f"{stem}/depthwise_weights"], w[f"{stem}/pointwise_weights"], [1] * 4, "SAME")
    h = tf.nn.relu(h + w[f"{stem}/biases"])
    h = tf.nn.conv2d(h, w["InceptionV2/Conv2d_2b_1x1/weights"], 1, "SAME")
    h = tf.nn.relu(tf.nn.batch_normalization(h, bn1["moving_mean"], bn1["moving_variance"], bn1["beta"], None, 1e-3))
    h = tf.nn.conv2d(h, w[f"{b0}/weights"], 1, "SAME")
    expected = tf.nn.batch_normalization(h, bn2["moving_mean"], bn2["moving_variance"], bn2["beta"], None, 1e-3)
    np.testing.assert_allclose(model(data, training=False), expected, rtol=1e-4, atol=1e-4)


# --- the registry's AffWildNet model, the report, the errors --------------------------------------

def test_affwildnet_map_covers_vgg16_gru_va():
    """Every weight of vgg16_gru_va gets one of the names affwildnet/vggface_gru.py gives its
    variables (conv_1..conv_13, linear_1, the GRU cells' and the output's)."""
    model = models.build("vgg16_gru_va", input_size=32, seq_len=3, reset_after=False)
    names = set()
    for name, _ in _named_weights(model):
        rule, match = next((r, m) for r in _rules("affwildnet_vggface_gru") if (m := re.fullmatch(r[0], name)))
        names.update(match.expand(t) for t in ((rule[1],) if isinstance(rule[1], str) else rule[1]))
    cells = {f"rnn_1/rnn/multi_rnn_cell/cell_{k}/gru_cell/{part}/{v}"
             for k in (0, 1) for part in ("gates", "candidate") for v in ("kernel", "bias")}
    expected = {f"{scope}/{v}" for scope in [f"conv_{n}" for n in range(1, 14)] + ["linear_1"]
                for v in ("weights", "biases")} | cells | {"rnn_1/weights_rnn", "rnn_1/biases_rnn"}
    assert names == expected


def test_mismatch_names_both_and_skip_reports(tmp_path):
    w = slim_vgg_like()
    w["vgg_16/fc7/weights"] = _random((1, 1, 6, 9))
    save_tf1(tmp_path, w)
    model = keras_vgg_like()
    before = model.get_layer("block1_conv1").kernel.numpy()
    with pytest.raises(ValueError, match=r"vgg_16/fc7/weights \(1, 1, 6, 9\) gives shape \(6, 9\) after "
                                         r"dense_from_conv, Keras weight 'fc7/kernel' is \(6, 5\)"):
        load_checkpoint(model, tmp_path, "vgg_16")
    np.testing.assert_array_equal(model.get_layer("block1_conv1").kernel.numpy(), before)   # nothing set

    report = load_checkpoint(model, tmp_path, "vgg_16", skip_mismatch=True)
    assert list(report["skipped_mismatch"]) == ["fc7/kernel"] and "fc7/bias" in report["loaded"]
    assert report["unused_in_checkpoint"] == []                  # asked for, named under skipped_mismatch
    saved = write_report(report, tmp_path / "run" / "checkpoint_report.json")
    assert json.loads(saved.read_text()) == report


def test_missing_in_checkpoint_and_unmapped(tmp_path):
    w = slim_vgg_like()
    del w["vgg_16/fc7/biases"]
    save_tf1(tmp_path, w)
    x = inputs = keras.Input((4, 4, 3))
    x = keras_vgg_like()(x)
    model = keras.Model(inputs, layers.Dense(2, name="head")(x))
    report = load_checkpoint(model, tmp_path, "vgg_16")
    assert report["missing_in_checkpoint"] == {"fc7/bias": "vgg_16/fc7/biases"}
    assert report["unmapped"] == ["head/kernel", "head/bias"]


def test_errors_are_one_clear_line(tmp_path):
    save_tf1(tmp_path, slim_vgg_like())
    text = tmp_path / "notes.txt"
    text.write_text("not a checkpoint")
    for path, message in [(text, "not a TF1 checkpoint"), (tmp_path / "absent.ckpt", "not a TF1 checkpoint"),
                          (tmp_path / "run", "directory without a 'checkpoint' file")]:
        (tmp_path / "run").mkdir(exist_ok=True)
        with pytest.raises(ValueError, match=message) as error:
            load_checkpoint(keras_vgg_like(), path, "vgg_16")
        assert "\n" not in str(error.value)
    with pytest.raises(ValueError, match=r"^name map matches no weight of model .*'block1_conv1/kernel'"):
        load_checkpoint(keras_vgg_like(), tmp_path, [(r"conv9/kernel", "x/weights")])
    with pytest.raises(ValueError, match=r"^name map matches no weight .*'block1_conv1/kernel'"):
        load_checkpoint(keras_vgg_like(), tmp_path, "inception_v2")     # its rules name slim's scopes only
    with pytest.raises(ValueError, match=r"holds none of the variables .*'InceptionV2/block1_conv1/weights'"):
        load_checkpoint(keras_vgg_like(), tmp_path, [(r"(block1_conv1)/kernel", r"InceptionV2/\1/weights")])
    with pytest.raises(ValueError, match="unknown name map 'vgg_19'"):
        load_checkpoint(keras_vgg_like(), tmp_path, "vgg_19")
    with pytest.raises(ValueError, match="conversion among"):
        load_checkpoint(keras_vgg_like(), tmp_path, [(r".*", "x", "transpose")])


def test_checkpoint_file_naming_another_machine(tmp_path):
    """A ``checkpoint`` file copied from the training machine names its absolute path there."""
    save_tf1(tmp_path, slim_vgg_like())
    (tmp_path / "checkpoint").write_text('model_checkpoint_path: "/home/trainer/run/model.ckpt-7"\n')
    report = load_checkpoint(keras_vgg_like(), tmp_path, "vgg_16")
    assert report["checkpoint"] == str(tmp_path / "model.ckpt-7") and len(report["loaded"]) == 8


def test_training_starts_from_a_tf1_checkpoint_by_its_name_map(tmp_path):
    """An experiment's ``weights_from`` + ``weights_map`` (thesis 001's AffWildNet rows) loads a TF1
    checkpoint into the registry model and leaves weights_report.json in the run directory."""
    from fer_keras import config, training

    exp = config.from_dict({
        "name": "affwild_start", "weights_from": str(tmp_path / "affwildnet"), "weights_map": "affwildnet_vggface_gru",
        "model": {"name": "vgg16_gru_va", "options": {"input_size": 32, "seq_len": 3, "reset_after": False,
                                                      "init": "he_normal"}}}, "affwild_start.yaml")
    spec = models.entry(exp.model.name)
    model = spec.builder(**spec.options(**exp.model.options))
    rules = _rules("affwildnet_vggface_gru")
    plain = {}  # keras weight -> checkpoint name, for the rules without a conversion (convolutions, fc6, va)
    for name, variable in _named_weights(model):
        rule, match = next((r, m) for r in rules if (m := re.fullmatch(r[0], name)))
        if len(rule) == 2:
            plain[name] = match.expand(rule[1])
    arrays = {source: _random(tuple(dict(_named_weights(model))[name].shape)) for name, source in plain.items()}
    (tmp_path / "affwildnet").mkdir()
    save_tf1(tmp_path / "affwildnet", arrays)
    training._start_weights(model, exp, training.initial_weights(exp), tmp_path / "run")
    for name, variable in _named_weights(model):
        if name in plain:
            np.testing.assert_array_equal(variable.numpy(), arrays[plain[name]])
    report = json.loads((tmp_path / "run" / "weights_report.json").read_text())
    assert set(report["loaded"]) == set(plain) and report["missing_in_checkpoint"]  # its GRU cells were not saved
    with pytest.raises(ValueError, match="weights_from"):
        config.from_dict({"name": "x", "weights_map": "affwildnet_vggface_gru"}, "x.yaml")


# --- thesis 004: TF-Slim's ImageNet checkpoints into the registry models, every variable by name ----

def _patches(x, k, stride, pad):
    """(B, H', W', k, k, C) patches of ``x`` (B, H, W, C) zero-padded by ``pad`` ((top, bottom), (left, right))."""
    x = np.pad(x, ((0, 0), *pad, (0, 0)))
    h, w = (x.shape[1] - k) // stride + 1, (x.shape[2] - k) // stride + 1
    return np.stack([np.stack([x[:, i:i + stride * h:stride, j:j + stride * w:stride] for j in range(k)], 3)
                     for i in range(k)], 3)


def _same(size, k, stride):
    """TF's SAME padding (before, after) of one axis."""
    out = -(-size // stride)
    total = max((out - 1) * stride + k - size, 0)
    return total // 2, total - total // 2


def _np_conv(x, kernel, stride=1):
    k = kernel.shape[0]
    pad = (_same(x.shape[1], k, stride), _same(x.shape[2], k, stride))
    return np.einsum("bhwijc,ijco->bhwo", _patches(x, k, stride, pad), kernel)


def slim_checkpoint_of(model, name_map, extra=None):
    """{slim name: random array} for every weight of ``model`` a rule of ``name_map`` matches, each
    in slim's form (fc6/fc7 as convolutions over the map they read), plus ``extra``; and
    {keras weight: slim name}."""
    arrays, names = dict(extra or {}), {}
    for name, variable in _named_weights(model):
        rule = next(((r, m) for r in _rules(name_map) if (m := re.fullmatch(r[0], name))), None)
        if rule is None:
            continue
        (_, template, *convert), match = rule
        shape = tuple(variable.shape)
        if convert == ["dense_from_conv"] and len(shape) == 2:     # slim's fc6 / fc7: k x k x cin x cout
            cin = 512 if name.startswith("fc6") else shape[0]
            k = int(round((shape[0] / cin) ** 0.5))
            shape = (k, k, cin, shape[1])
        names[name] = match.expand(template)
        arrays[names[name]] = (RNG.uniform(0.5, 2, shape) if name.endswith("moving_variance")
                               else RNG.normal(0, 0.1, shape)).astype("float32")
    return arrays, names


def save_slim(path, arrays, *, slots=(), v1_format=False):
    """``arrays`` saved by TF's v1 ``Saver`` at ``path`` as slim's train_image_classifier leaves
    them: ``global_step`` and RMSProp's two slots for the variables ``slots`` names; ``v1_format``
    writes one ``.ckpt`` file, the format of slim's published ImageNet checkpoints."""
    from tensorflow.core.protobuf import saver_pb2

    with tf.Graph().as_default():
        variables = {name: v1.get_variable(name, initializer=value) for name, value in arrays.items()}
        v1.train.get_or_create_global_step()
        if slots:
            v1.train.RMSPropOptimizer(0.01, momentum=0.9, epsilon=1.0).minimize(
                tf.add_n([tf.reduce_sum(variables[n]) for n in slots]), var_list=[variables[n] for n in slots])
        version = saver_pb2.SaverDef.V1 if v1_format else saver_pb2.SaverDef.V2
        with v1.Session() as session:
            session.run(v1.global_variables_initializer())
            return v1.train.Saver(write_version=version).save(session, str(path), write_meta_graph=False)


@pytest.mark.parametrize("name", ["bn_inception_au", "bn_inception_va"])
def test_slim_inception_v2_checkpoint_loads_the_whole_registry_backbone(tmp_path, name):
    model = models.build(name, input_size=64)
    assert not [n for n, _ in _named_weights(model) if n.endswith("/gamma")]   # slim's scale=False: no gamma
    stem = "InceptionV2/Conv2d_1a_7x7"
    logits = {"InceptionV2/Logits/Conv2d_1c_1x1/weights": _random((1, 1, 1024, 1001)),
              "InceptionV2/Logits/Conv2d_1c_1x1/biases": _random(1001)}
    w, names = slim_checkpoint_of(model, "inception_v2", logits)
    assert {f"{stem}/depthwise_weights", f"{stem}/pointwise_weights", f"{stem}/biases",
            "InceptionV2/Mixed_5c/Branch_3/Conv2d_0b_1x1/BatchNorm/moving_variance"} <= set(w)
    assert not [n for n in w if n.endswith("/gamma")]
    save_slim(tmp_path / "model.ckpt-1000", w, slots=[f"{stem}/depthwise_weights", "InceptionV2/Conv2d_2b_1x1/weights"])
    report = load_checkpoint(model, tmp_path, "inception_v2")

    head = ["au/kernel", "au/bias"] if name.endswith("_au") else ["va/kernel", "va/bias"]
    assert report["loaded"] == names and len(names) == 275          # every backbone weight
    assert report["unmapped"] == head and not report["missing_in_checkpoint"] and not report["skipped_mismatch"]
    assert report["gamma_ones"] == []
    assert report["unused_in_checkpoint"] == sorted(logits)
    assert report["optimizer_state"] == 2 * 2 + 1                    # RMSProp's 2 slots x 2 variables, global_step
    for keras_name, variable in _named_weights(model):
        if keras_name in names:
            np.testing.assert_array_equal(variable.numpy(), w[names[keras_name]])

    # the stem (separable 7x7/2 + bias + ReLU), MaxPool_2a_3x3 and Conv2d_2b_1x1 (+ BN without gamma, ReLU)
    x = RNG.uniform(-1, 1, (2, 64, 64, 3)).astype("float32")
    depthwise = np.einsum("bhwijc,ijcm->bhwcm", _patches(x, 7, 2, (_same(64, 7, 2),) * 2),
                          w[f"{stem}/depthwise_weights"]).reshape(2, 32, 32, 24)
    stem_out = np.maximum(np.einsum("bhwc,co->bhwo", depthwise, w[f"{stem}/pointwise_weights"][0, 0])
                          + w[f"{stem}/biases"], 0)
    pooled = _patches(stem_out, 3, 2, (_same(32, 3, 2),) * 2)        # zero padding is safe after the ReLU
    pooled = pooled.max(axis=(3, 4))
    bn = {k: w[f"InceptionV2/Conv2d_2b_1x1/BatchNorm/{k}"] for k in ("beta", "moving_mean", "moving_variance")}
    conv = _np_conv(pooled, w["InceptionV2/Conv2d_2b_1x1/weights"])
    expected = np.maximum((conv - bn["moving_mean"]) / np.sqrt(bn["moving_variance"] + 1e-3) + bn["beta"], 0)
    taps = keras.Model(model.input, [model.get_layer("Conv2d_1a_7x7__Relu").output,
                                     model.get_layer("Conv2d_2b_1x1__Relu").output])
    got_stem, got_conv = taps({"image": x}, training=False)
    np.testing.assert_allclose(got_stem, stem_out, rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(got_conv, expected, rtol=1e-4, atol=1e-4)


def test_slim_vgg_16_checkpoint_loads_the_whole_registry_vgg16_au(tmp_path):
    """vgg16_au at 64 px (pool5 2x2x512: slim's fc6 is then a 2x2x512 convolution; 7x7x512x4096
    at 224), its fc6/fc7 narrowed to 64 units to stay fast; slim's fc8 (1000 classes) unused."""
    model = models.build("vgg16_au", input_size=64, hidden=(64, 64))
    fc8 = {"vgg_16/fc8/weights": _random((1, 1, 64, 1000)), "vgg_16/fc8/biases": _random(1000)}
    w, names = slim_checkpoint_of(model, "vgg_16", fc8)
    assert w["vgg_16/fc6/weights"].shape == (2, 2, 512, 64) and w["vgg_16/fc7/weights"].shape == (1, 1, 64, 64)
    convs = [f"vgg_16/conv{b}/conv{b}_{i}/weights" for b, n in enumerate((2, 2, 3, 3, 3), 1) for i in range(1, n + 1)]
    assert set(convs) <= set(w)
    save_slim(tmp_path / "vgg_16.ckpt", w, v1_format=True)          # slim's published single-file form
    (tmp_path / "checkpoint").unlink()                                # its tarball holds only vgg_16.ckpt
    report = load_checkpoint(model, tmp_path / "vgg_16.ckpt", "vgg_16")

    assert report["loaded"] == names and len(names) == 2 * 13 + 4
    assert report["unmapped"] == ["au/kernel", "au/bias"] and report["unused_in_checkpoint"] == sorted(fc8)
    assert not report["missing_in_checkpoint"] and not report["skipped_mismatch"] and report["optimizer_state"] == 1
    np.testing.assert_array_equal(model.get_layer("fc6").kernel.numpy(), w["vgg_16/fc6/weights"].reshape(2048, 64))

    x = RNG.uniform(-100, 100, (2, 64, 64, 3)).astype("float32")
    h = np.maximum(_np_conv(x, w["vgg_16/conv1/conv1_1/weights"]) + w["vgg_16/conv1/conv1_1/biases"], 0)
    h = np.maximum(_np_conv(h, w["vgg_16/conv1/conv1_2/weights"]) + w["vgg_16/conv1/conv1_2/biases"], 0)
    tap = keras.Model(model.input, model.get_layer("block1_conv2").output)
    np.testing.assert_allclose(tap({"image": x}, training=False), h, rtol=1e-4, atol=1e-3)


def test_experiment_names_a_slim_checkpoint_without_a_map(tmp_path):
    """weights_from naming a TF1 checkpoint without weights_map takes the backbone's slim map
    (bn_inception -> inception_v2, vgg16 -> vgg_16); the run writes weights_report.json."""
    from fer_keras import config, training

    model = models.build("bn_inception_au", input_size=64)
    w, names = slim_checkpoint_of(model, "inception_v2")
    ckpt = save_slim(tmp_path / "inception_v2.ckpt", w, v1_format=True)
    exp = config.from_dict({"name": "au", "weights_from": ckpt,
                            "model": {"name": "bn_inception_au", "options": {"input_size": 64}}}, "au.yaml")
    assert exp.weights_map is None and training.tf1_weights_map(exp) == "inception_v2"
    exp = config.from_dict({**config.to_dict(exp), "weights_map": training.tf1_weights_map(exp)}, "au.yaml")
    training._start_weights(model, exp, training.initial_weights(exp), tmp_path / "run")
    report = json.loads((tmp_path / "run" / "weights_report.json").read_text())
    assert report["loaded"] == names and report["unmapped"] == ["au/kernel", "au/bias"]

    vgg = config.from_dict({"name": "v", "weights_from": ckpt, "model": {"name": "vgg16_va"}}, "v.yaml")
    assert training.tf1_weights_map(vgg) == "vgg_16"
    keras_file = config.from_dict({"name": "k", "weights_from": str(tmp_path / "run"), "model": {"name": "vgg16_va"}})
    assert training.tf1_weights_map(keras_file) is None             # not a TF1 checkpoint: a Keras run
    other = config.from_dict({"name": "r", "weights_from": ckpt, "model": {"name": "resnet50_finetune"}})
    with pytest.raises(ValueError, match=r"r: weights_from .* is a TF1 checkpoint; .*with weights_map .*backbone "
                                         r"'resnet50' has no default"):
        training.tf1_weights_map(other)


def test_a_slim_checkpoint_brings_its_preprocessing(tmp_path):
    """normalize left unset takes the checkpoint's pixels (slim vgg_16: RGB minus slim's means, not
    the Keras VGG16's caffe BGR; inception_v2: [-1, 1]); a different choice is kept and noted."""
    from fer_keras import config

    model = models.build("bn_inception_au", input_size=64)
    ckpt = save_slim(tmp_path / "inception_v2.ckpt", slim_checkpoint_of(model, "inception_v2")[0], v1_format=True)
    made = {name: config.from_dict({"name": "x", "weights_from": ckpt, "model": {"name": name}}, "x.yaml")
            for name in ("vgg16_au", "bn_inception_va")}
    assert {n: e.data.pipeline.normalize for n, e in made.items()} == {"vgg16_au": "slim_vgg", "bn_inception_va": "tf"}
    assert config.preprocessing_note(made["vgg16_au"]) is None
    chosen = config.from_dict({"name": "x", "weights_from": ckpt, "model": {"name": "vgg16_au"},
                               "data": {"pipeline": {"normalize": "caffe"}}}, "x.yaml")
    assert config.preprocessing_note(chosen) == (f"pixel preprocessing 'caffe' (data.pipeline.normalize), not "
                                                 f"'slim_vgg' that the TF1 checkpoint {ckpt} was trained on")
    assert config.from_dict({"name": "x", "model": {"name": "vgg16_au"}}, "x.yaml").data.pipeline.normalize == "unit"
