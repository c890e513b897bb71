"""The model zoo: every registry name builds, thesis parameter counts hold exactly, masks make
padding irrelevant, .keras round trips, XLA training steps, HyperModels."""
import keras
import keras_tuner as kt
import numpy as np
import pytest

from fer_keras import models
from fer_keras.models.backbones import set_trainable_blocks
from fer_keras.models.hypermodels import default_compile


@pytest.fixture(autouse=True)
def _fresh_session():
    keras.backend.clear_session()
    keras.utils.set_random_seed(0)
    yield
    keras.backend.clear_session()


def small(name, **extra):
    spec = models.entry(name)
    return models.build(name, **{**spec.small, **extra}), {**spec.small, **extra}


def random_inputs(model, valid=None, garbage=True, seed=0):
    """Random inputs for ``model``; with a ``mask`` input, steps >= ``valid`` are padding filled
    with garbage (or zeros) and masked out."""
    rng = np.random.default_rng(seed)
    out = {}
    for tensor in model.inputs:
        shape = (2,) + tuple(tensor.shape[1:])
        out[tensor.name] = rng.normal(size=shape).astype("float32")
    if "mask" in out:
        steps = out["mask"].shape[1]
        valid = steps - 2 if valid is None else valid
        out["mask"] = np.zeros(out["mask"].shape, "float32")
        out["mask"][:, :valid] = 1
        for key, value in out.items():
            if key != "mask":
                value[:, valid:] = rng.normal(size=value[:, valid:].shape) * 100 if garbage else 0
    return out


def predict(model, inputs):
    out = model(inputs, training=False)
    return {k: np.asarray(v) for k, v in out.items()}


@pytest.mark.parametrize("name", models.names())
def test_every_name_builds_with_documented_outputs(name):
    model, opts = small(name)
    expected = models.entry(name).output_shapes(**opts)
    got = {k: tuple(v.shape) for k, v in zip(model.output_names, model.outputs)}
    assert got == expected


def layer_params(model):
    return {layer.name: layer.count_params() for layer in model.layers}


@pytest.mark.parametrize("input_dim, lstm, total", [(1024, 590_336, 591_110), (25088, 12_911_104, 12_911_878)])
def test_thesis002_lstm_summaries(input_dim, lstm, total):
    model = models.build("cascade_lstm", input_dim=input_dim)
    params = layer_params(model)
    assert params["rnn1"] == lstm and params["category"] == 774
    assert model.count_params() == total
    assert tuple(model.get_layer("features").output.shape) == (None, 100, input_dim)


def test_thesis002_c3d_summary():
    model = models.build("c3d")
    printed = {"conv3d": 1312, "conv3d_1": 6928, "conv3d_2": 13856, "dense": 53_084_672,
               "dense_1": 262_656, "category": 3078}
    params = layer_params(model)
    assert {k: params[k] for k in printed} == printed
    assert model.count_params() == 53_372_502
    assert tuple(model.get_layer("flatten").output.shape) == (None, 103_680)


def trainable(model):
    return sum(int(np.prod(w.shape)) for w in model.trainable_weights)


@pytest.mark.parametrize("name, count", [("vgg16_finetune", 38_677_511), ("resnet50_finetune", 24_189_959),
                                         ("vggface_finetune", 39_727_111)])
def test_thesis002_table_3_4_trainable_counts(name, count):
    model = models.build(name)
    assert trainable(model) == count


def test_thesis002_vggface_total_and_bilstm():
    assert models.build("vggface_finetune").count_params() == 41_462_599  # derived in extract §3.2
    assert layer_params(models.build("cascade_bilstm"))["rnn1_bi"] == 25_822_208


# One model per builder family, plus the custom layers (median pooling, grouped conv + SE, LRN).
FAMILIES = ["vggface_bgru_att", "alexnet_gru_va", "cascade_lstm", "cascade_bilstm", "cascade_cnn1d",
            "audio_gru", "audio_ffn", "early_fusion_2", "early_fusion_4", "vgg16_lstm_combined",
            "bn_inception_au", "vggface_finetune", "c3d", "convlstm", "se_resnext50_frames"]
MASKED = [n for n in FAMILIES if n not in ("audio_ffn", "bn_inception_au", "vggface_finetune", "c3d", "convlstm")]


@pytest.mark.parametrize("name", MASKED)
@pytest.mark.parametrize("temporal", [None, "median"])
def test_padding_does_not_change_predictions(name, temporal):
    extra = {}
    if temporal and "temporal" in models.entry(name).options() and models.entry(name).options()["temporal"] == "mean":
        extra["temporal"] = temporal
    elif temporal:
        pytest.skip("model does not pool over time")
    model, opts = small(name, **extra)
    steps = model.get_layer("mask").output.shape[1]
    valid = steps - 2 if steps > 3 else steps - 1
    clean = predict(model, random_inputs(model, valid, garbage=False))
    noisy = predict(model, random_inputs(model, valid, garbage=True))
    framewise = models.entry(name).options(**opts).get("temporal") == "frame"
    for key in clean:
        a, b = (clean[key][:, :valid], noisy[key][:, :valid]) if framewise else (clean[key], noisy[key])
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-5, err_msg=key)


def test_masked_pool_matches_numpy():
    from fer_keras.models.layers import MaskedTemporalPool
    rng = np.random.default_rng(1)
    values = rng.normal(size=(4, 7, 3)).astype("float32")
    mask = np.zeros((4, 7), "float32")
    for i, n in enumerate([1, 2, 5, 7]):
        mask[i, :n] = 1
    for mode, ref in (("mean", np.mean), ("median", np.median)):
        got = np.asarray(MaskedTemporalPool(mode)([values, mask]))
        want = np.stack([ref(values[i, : int(mask[i].sum())], axis=0) for i in range(4)])
        np.testing.assert_allclose(got, want, rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("name", FAMILIES)
def test_keras_round_trip(name, tmp_path):
    model, _ = small(name)
    inputs = random_inputs(model)
    before = predict(model, inputs)
    path = tmp_path / f"{name}.keras"
    model.save(path)
    loaded = keras.models.load_model(path)
    after = predict(loaded, inputs)
    for key in before:
        np.testing.assert_array_equal(before[key], after[key])


def targets(model):
    out = {}
    for name, tensor in zip(model.output_names, model.outputs):
        shape = (2,) + tuple(tensor.shape[1:])
        if name == "category":
            out[name] = keras.utils.to_categorical(np.arange(np.prod(shape[:-1])) % shape[-1], shape[-1]).reshape(shape)
        elif name == "au":
            out[name] = (np.arange(np.prod(shape)).reshape(shape) % 2).astype("float32")
        else:
            out[name] = np.zeros(shape, "float32")
    return out


@pytest.mark.parametrize("name", ["vggface_bgru", "cascade_cnn1d", "audio_ffn", "vgg16_lstm_combined", "c3d",
                                  "convlstm",  # the VGGFace of early fusion and the BN-Inception: slow
                                  pytest.param("early_fusion_2", marks=pytest.mark.slow),
                                  pytest.param("bn_inception_au", marks=pytest.mark.slow)])
def test_xla_training_step(name):
    model, _ = small(name)
    default_compile(model)
    model.compile(optimizer=model.optimizer, loss=model.loss, jit_compile=True)
    assert model.jit_compile
    loss = model.train_on_batch(random_inputs(model), targets(model))
    assert np.all(np.isfinite(loss))


def test_frozen_and_unfrozen_blocks():
    model = models.build("vgg16_lstm_va", input_size=32, seq_len=2)
    cnn = model.get_layer("frame_cnn").layer
    assert not any(layer.trainable for layer in cnn.layers if layer.weights)
    set_trainable_blocks(cnn, "vgg16", 1)
    assert {layer.name for layer in cnn.layers if layer.trainable and layer.weights} == {
        "block5_conv1", "block5_conv2", "block5_conv3"}
    with pytest.raises(ValueError, match="has 5 blocks"):
        set_trainable_blocks(cnn, "vgg16", 6)


def test_unknown_names_and_options_are_clear_errors():
    with pytest.raises(ValueError, match="unknown model 'nope'"):
        models.build("nope")
    with pytest.raises(ValueError, match="unknown option.*bogus"):
        models.build("c3d", bogus=1)
    with pytest.raises(ValueError, match="unknown backbone"):
        models.build("vggface_bgru", backbone="vgg99")
    with pytest.raises(ValueError, match="at least 71px"):
        models.build("xception_lstm_va", input_size=32)
    with pytest.raises(FileNotFoundError, match="missing.h5"):
        models.build("vggface_bgru", input_size=32, seq_len=2, weights="missing.h5")


SPACE_EXAMPLES = ["vggface_bgru", "audio_ffn", "audio_gru", "early_fusion_1", "vgg16_gru_va",
                  "vgg16_finetune", "cascade_lstm", "cascade_cnn1d", "c3d", "convlstm",
                  "vgg19_lstm_combined", "bn_inception_va"]


@pytest.mark.parametrize("name", SPACE_EXAMPLES)
def test_hypermodel_builds_default_and_random_draws(name):
    spec = models.entry(name)
    fixed = dict(seq_len=66, input_size=66) if name == "c3d" else spec.small  # room for 9x9x9 kernels
    hypermodel = models.hypermodel(name, **fixed)
    hp = kt.HyperParameters()
    model = hypermodel.build(hp)
    assert model.optimizer is not None and hp.values
    for seed in range(2):   # random points of the space build too
        drawn = kt.HyperParameters()
        for p in hp.space:
            drawn.values[p.name] = p.random_sample(seed)
        keras.backend.clear_session()
        hypermodel.build(drawn)


@pytest.mark.parametrize("backbone, published", [
    ("vggface_resnet50", 25_557_032),   # torchvision resnet50
    ("se_resnet50", 28_088_024),        # Hu et al. / pretrainedmodels se_resnet50
    ("se_resnext50", 27_559_896),       # pretrainedmodels se_resnext50_32x4d
])
def test_resnet_family_matches_published_counts(backbone, published):
    """Trainable weights (BN moving statistics excluded) equal the published counts less the
    1000-way ImageNet classifier (2048 * 1000 + 1000)."""
    from fer_keras.models.backbones import build_backbone
    model = build_backbone(backbone, input_size=224, global_pool=True)
    assert trainable(model) == published - 2_049_000


def test_backbone_pool_switch_and_feature_taps():
    from fer_keras.models.backbones import build_backbone
    assert build_backbone("resnet50", input_size=112, global_pool=True).output.shape == (None, 2048)
    assert build_backbone("resnet50", input_size=112, global_pool=False).output.shape == (None, 4 * 4 * 2048)
    assert build_backbone("vggface_vgg16", input_size=32, feature="fc6").output.shape == (None, 4096)
    assert build_backbone("vggface_vgg16", input_size=64, feature="conv5_3").output.shape == (None, 4, 4, 512)
    assert build_backbone("bn_inception", input_size=64, feature="Mixed_4e").output.shape[-1] == 576
    with pytest.raises(ValueError, match="no layer or tap named 'fc9'"):
        build_backbone("vggface_vgg16", input_size=32, feature="fc9")
