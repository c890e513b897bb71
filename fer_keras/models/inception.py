"""BN-Inception (Inception V2, Ioffe & Szegedy 2015), the ImageNet backbone of thesis 004.

The thesis names the network but not an implementation; the layout here is TF-Slim's
``inception_v2_base`` (depth multiplier 1) up to ``Mixed_5c``, the form whose ImageNet
checkpoints are published, so layer names are slim's scopes with ``/`` spelled ``__``
(``Mixed_3b/Branch_1/Conv2d_0b_3x3`` -> ``Mixed_3b__Branch_1__Conv2d_0b_3x3``). Every
``slim.conv2d`` is slim's: no bias, then batch norm without gamma (epsilon 1e-3), then ReLU.
Slim's inception arg scope does not reach its separable stem, which keeps a bias and no batch
norm; that is what slim's own parameter count (10,173,112) pins. Batch-norm momentum and
initialisers are Keras defaults (slim's matter only when training ImageNet from scratch).
Each ``Mixed_*`` concatenation is named after its slim end point, so any module output can be
tapped by name.
"""
from keras import layers

BLOCKS = (("Conv2d_", "MaxPool_"), "Mixed_3b", "Mixed_3c", "Mixed_4a", "Mixed_4b", "Mixed_4c",
          "Mixed_4d", "Mixed_4e", "Mixed_5a", "Mixed_5b", "Mixed_5c")
"""Layer-name prefixes, first to last: the stem (its convolutions and poolings as one block),
then each Inception module."""


def bn_inception(x, *, separable_stem=True):
    """Slim ``inception_v2_base`` on ``x`` (B, H, W, 3); returns Mixed_5c (7x7x1024 at 224).

    ``separable_stem``: slim's default 7x7/2 depthwise (multiplier 8) + pointwise stem, biased,
    without batch norm; False gives the paper's plain 7x7/2 convolution with batch norm
    (slim's ``use_separable_conv=False``).
    """
    if separable_stem:
        x = layers.SeparableConv2D(64, 7, strides=2, padding="same", depth_multiplier=8,
                                   name="Conv2d_1a_7x7")(x)
        x = layers.ReLU(name="Conv2d_1a_7x7__Relu")(x)
    else:
        x = _conv(x, 64, 7, "Conv2d_1a_7x7", strides=2)
    x = layers.MaxPooling2D(3, strides=2, padding="same", name="MaxPool_2a_3x3")(x)
    x = _conv(x, 64, 1, "Conv2d_2b_1x1")
    x = _conv(x, 192, 3, "Conv2d_2c_3x3")
    x = layers.MaxPooling2D(3, strides=2, padding="same", name="MaxPool_3a_3x3")(x)
    x = _mixed(x, "Mixed_3b", 64, (64, 64), (64, 96), "avg", 32)
    x = _mixed(x, "Mixed_3c", 64, (64, 96), (64, 96), "avg", 64)
    x = _reduction(x, "Mixed_4a", (128, 160), (64, 96))
    x = _mixed(x, "Mixed_4b", 224, (64, 96), (96, 128), "avg", 128)
    x = _mixed(x, "Mixed_4c", 192, (96, 128), (96, 128), "avg", 128)
    x = _mixed(x, "Mixed_4d", 160, (128, 160), (128, 160), "avg", 96)
    x = _mixed(x, "Mixed_4e", 96, (128, 192), (160, 192), "avg", 96)
    x = _reduction(x, "Mixed_5a", (128, 192), (192, 256))
    x = _mixed(x, "Mixed_5b", 352, (192, 320), (160, 224), "avg", 128)
    return _mixed(x, "Mixed_5c", 352, (192, 320), (192, 224), "max", 128)


def _conv(x, filters, kernel, name, *, strides=1):
    x = layers.Conv2D(filters, kernel, strides=strides, padding="same", use_bias=False, name=name)(x)
    x = layers.BatchNormalization(epsilon=1e-3, scale=False, name=f"{name}__BatchNorm")(x)
    return layers.ReLU(name=f"{name}__Relu")(x)


def _mixed(x, name, b0, b1, b2, pool, b3):
    """Stride-1 module: 1x1 | 1x1 -> 3x3 | 1x1 -> 3x3 -> 3x3 | 3x3 ``pool`` -> 1x1."""
    scope = f"{name}__Branch_"
    branch_0 = _conv(x, b0, 1, f"{scope}0__Conv2d_0a_1x1")
    branch_1 = _conv(x, b1[0], 1, f"{scope}1__Conv2d_0a_1x1")
    branch_1 = _conv(branch_1, b1[1], 3, f"{scope}1__Conv2d_0b_3x3")
    branch_2 = _conv(x, b2[0], 1, f"{scope}2__Conv2d_0a_1x1")
    branch_2 = _conv(branch_2, b2[1], 3, f"{scope}2__Conv2d_0b_3x3")
    branch_2 = _conv(branch_2, b2[1], 3, f"{scope}2__Conv2d_0c_3x3")
    if pool == "avg":
        branch_3 = layers.AveragePooling2D(3, strides=1, padding="same", name=f"{scope}3__AvgPool_0a_3x3")(x)
    else:
        branch_3 = layers.MaxPooling2D(3, strides=1, padding="same", name=f"{scope}3__MaxPool_0a_3x3")(x)
    branch_3 = _conv(branch_3, b3, 1, f"{scope}3__Conv2d_0b_1x1")
    return layers.Concatenate(name=name)([branch_0, branch_1, branch_2, branch_3])


def _reduction(x, name, b0, b1):
    """Grid reduction: 1x1 -> 3x3/2 | 1x1 -> 3x3 -> 3x3/2 | 3x3/2 max pool (passes channels on)."""
    scope = f"{name}__Branch_"
    branch_0 = _conv(x, b0[0], 1, f"{scope}0__Conv2d_0a_1x1")
    branch_0 = _conv(branch_0, b0[1], 3, f"{scope}0__Conv2d_1a_3x3", strides=2)
    branch_1 = _conv(x, b1[0], 1, f"{scope}1__Conv2d_0a_1x1")
    branch_1 = _conv(branch_1, b1[1], 3, f"{scope}1__Conv2d_0b_3x3")
    branch_1 = _conv(branch_1, b1[1], 3, f"{scope}1__Conv2d_1a_3x3", strides=2)
    branch_2 = layers.MaxPooling2D(3, strides=2, padding="same", name=f"{scope}2__MaxPool_1a_3x3")(x)
    return layers.Concatenate(name=name)([branch_0, branch_1, branch_2])
