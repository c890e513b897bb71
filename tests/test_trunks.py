"""BN-Inception and AlexNet trunks: output shapes, parameter counts derived from their published
layouts (not from the code under test), block prefixes, LRN arithmetic, .keras round trip."""
import keras
import numpy as np
import pytest

from fer_keras.models import alexnet, inception

# TF-Slim inception_v2_base, every slim.conv2d as (input channels, kernel, filters), per block.
# Input channels follow from the concatenations: 192 -> 3b 256 -> 3c 320 -> 4a 576 (160+96+320)
# -> 4b..4e 576 -> 5a 1024 (192+256+576) -> 5b, 5c 1024.
SLIM_CONVS = {
    "stem": [(64, 1, 64), (64, 3, 192)],
    "Mixed_3b": [(192, 1, 64), (192, 1, 64), (64, 3, 64), (192, 1, 64), (64, 3, 96), (96, 3, 96),
                 (192, 1, 32)],
    "Mixed_3c": [(256, 1, 64), (256, 1, 64), (64, 3, 96), (256, 1, 64), (64, 3, 96), (96, 3, 96),
                 (256, 1, 64)],
    "Mixed_4a": [(320, 1, 128), (128, 3, 160), (320, 1, 64), (64, 3, 96), (96, 3, 96)],
    "Mixed_4b": [(576, 1, 224), (576, 1, 64), (64, 3, 96), (576, 1, 96), (96, 3, 128), (128, 3, 128),
                 (576, 1, 128)],
    "Mixed_4c": [(576, 1, 192), (576, 1, 96), (96, 3, 128), (576, 1, 96), (96, 3, 128), (128, 3, 128),
                 (576, 1, 128)],
    "Mixed_4d": [(576, 1, 160), (576, 1, 128), (128, 3, 160), (576, 1, 128), (128, 3, 160),
                 (160, 3, 160), (576, 1, 96)],
    "Mixed_4e": [(576, 1, 96), (576, 1, 128), (128, 3, 192), (576, 1, 160), (160, 3, 192),
                 (192, 3, 192), (576, 1, 96)],
    "Mixed_5a": [(576, 1, 128), (128, 3, 192), (576, 1, 192), (192, 3, 256), (256, 3, 256)],
    "Mixed_5b": [(1024, 1, 352), (1024, 1, 192), (192, 3, 320), (1024, 1, 160), (160, 3, 224),
                 (224, 3, 224), (1024, 1, 128)],
    "Mixed_5c": [(1024, 1, 352), (1024, 1, 192), (192, 3, 320), (1024, 1, 192), (192, 3, 224),
                 (224, 3, 224), (1024, 1, 128)],
}
# Separable 7x7/2 stem: depthwise 7x7x3x8, pointwise 24->64, bias 64 (slim's separable_conv2d
# is outside the inception arg scope, so no batch norm). The plain stem: 7x7x3x64 + batch norm.
SEPARABLE_STEM = 7 * 7 * 3 * 8 + 3 * 8 * 64 + 64
PLAIN_STEM = 7 * 7 * 3 * 64 + 3 * 64
# slim inception_v2_test.testModelHasExpectedNumberOfParameters: inception_v2_base's model
# variables (weights, biases, batch-norm beta, moving mean and variance) total 10,173,112.
SLIM_PUBLISHED = 10_173_112

ALEXNET_CONVS = [(3, 11, 96), (96, 5, 256), (256, 3, 384), (384, 3, 384), (384, 3, 256)]


def conv_bn(cin, kernel, filters):
    """slim.conv2d under the inception arg scope: kernel, no bias; batch norm beta, mean, variance."""
    return kernel * kernel * cin * filters + 3 * filters


def slim_block_params(block):
    stem = SEPARABLE_STEM if block == "stem" else 0
    return stem + sum(conv_bn(*conv) for conv in SLIM_CONVS[block])


def trunk_model(trunk, size, **options):
    image = keras.Input((size, size, 3))
    return keras.Model(image, trunk(image, **options))


@pytest.fixture(scope="module")
def inception_224():
    keras.backend.clear_session()
    return trunk_model(inception.bn_inception, 224)


def prefixes(block):
    return (block,) if isinstance(block, str) else tuple(block)


def block_of(name, blocks):
    return [i for i, block in enumerate(blocks) if name.startswith(prefixes(block))]


def test_bn_inception_shapes(inception_224):
    assert tuple(inception_224.output.shape[1:]) == (7, 7, 1024)
    assert tuple(trunk_model(inception.bn_inception, 64).output.shape[1:]) == (2, 2, 1024)


def test_bn_inception_parameters_match_slim(inception_224):
    expected = sum(slim_block_params(block) for block in SLIM_CONVS)
    assert expected == SLIM_PUBLISHED
    assert inception_224.count_params() == expected
    plain = trunk_model(inception.bn_inception, 64, separable_stem=False)
    assert plain.count_params() == expected - SEPARABLE_STEM + PLAIN_STEM


def test_bn_inception_blocks(inception_224):
    blocks = inception.BLOCKS
    assert len(blocks) == len(SLIM_CONVS)
    layers = [layer for layer in inception_224.layers if not isinstance(layer, keras.layers.InputLayer)]
    for block in blocks:
        for prefix in prefixes(block):
            assert any(layer.name.startswith(prefix) for layer in layers), prefix
    for layer in layers:   # every layer, weighted or not, is in exactly one block
        assert len(block_of(layer.name, blocks)) == 1, layer.name
    for block, slim_block in zip(blocks, SLIM_CONVS):
        got = sum(layer.count_params() for layer in layers if layer.name.startswith(prefixes(block)))
        assert got == slim_block_params(slim_block), block


def test_bn_inception_slim_names(inception_224):
    names = {layer.name for layer in inception_224.layers}
    assert {"Conv2d_1a_7x7", "Mixed_3b__Branch_1__Conv2d_0b_3x3",
            "Mixed_3b__Branch_1__Conv2d_0b_3x3__BatchNorm", "Mixed_5b__Branch_3__AvgPool_0a_3x3",
            "Mixed_5c__Branch_3__MaxPool_0a_3x3", "Mixed_4a__Branch_2__MaxPool_1a_3x3",
            "Mixed_5c"} <= names
    bn = inception_224.get_layer("Mixed_3b__Branch_1__Conv2d_0b_3x3__BatchNorm")
    assert not bn.scale and bn.epsilon == pytest.approx(1e-3)
    assert not inception_224.get_layer("Mixed_3b__Branch_1__Conv2d_0b_3x3").use_bias


@pytest.mark.parametrize("lrn", [True, False])
def test_alexnet_shape_and_parameters(lrn):
    model = trunk_model(alexnet.alexnet, 96, lrn=lrn)
    assert tuple(model.output.shape[1:]) == (4, 4, 256)
    assert model.count_params() == sum(k * k * cin * f + f for cin, k, f in ALEXNET_CONVS) == 3_747_200
    weighted = [layer for layer in model.layers if layer.weights]
    assert [layer.name for layer in weighted] == list(alexnet.BLOCKS)
    for layer in weighted:
        assert len(block_of(layer.name, alexnet.BLOCKS)) == 1
    assert ({"norm1", "norm2"} <= {layer.name for layer in model.layers}) == lrn


def test_lrn_is_krizhevsky():
    """b_i = a_i / (2 + 1e-4 * sum of a_j**2 over channels i-2..i+2) ** 0.75."""
    a = np.random.default_rng(0).normal(scale=30, size=(1, 2, 2, 7)).astype("float32")
    padded = np.pad(a ** 2, [(0, 0)] * 3 + [(2, 2)])
    window = sum(padded[..., j:j + 7] for j in range(5))
    expected = a / (2 + 1e-4 * window) ** 0.75
    np.testing.assert_allclose(np.asarray(alexnet.LocalResponseNorm()(a)), expected, rtol=1e-5)


def test_alexnet_keras_round_trip(tmp_path):
    image = keras.Input((96, 96, 3))
    out = keras.layers.GlobalAveragePooling2D()(alexnet.alexnet(image, lrn=True))
    model = keras.Model(image, keras.layers.Dense(2)(out))
    path = tmp_path / "alexnet.keras"
    model.save(path)
    loaded = keras.saving.load_model(path)
    x = np.random.default_rng(0).uniform(size=(2, 96, 96, 3)).astype("float32")
    np.testing.assert_array_equal(np.asarray(model(x)), np.asarray(loaded(x)))
    assert isinstance(loaded.get_layer("norm1"), alexnet.LocalResponseNorm)
    assert loaded.get_layer("norm2").get_config()["bias"] == 2.0
