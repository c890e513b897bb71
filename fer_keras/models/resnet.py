"""The ResNet-50 family of thesis 000: ResNet-50, SE-ResNet-50 and SE-ResNeXt-50 (32x4d).

One trunk with options, named like keras-vggface's RESNET50/SENET50 (``conv2_1_1x1_reduce``,
``conv2_1_1x1_reduce/bn``, SE ``conv2_1_1x1_down``/``_up``) so the VGGFace ResNet50 and SENet50
files load by name; SE-ResNet-50 is the same network as VGGFace SENet50, so one layout serves
both the face and the ImageNet variants.
"""
from keras import layers

from fer_keras.models.keras2_h5 import to_keras_name

STAGES = ((2, 3, 64, 256), (3, 4, 128, 512), (4, 6, 256, 1024), (5, 3, 512, 2048))
"""(stage, blocks, bottleneck width, output channels) of ResNet-50."""

BLOCKS = ("conv1", "conv2_", "conv3_", "conv4_", "conv5_")
"""Layer-name prefixes of the stem and the four stages, for unfreezing the last k."""


def _conv_bn(x, filters, kernel, name, *, strides=1, groups=1, eps=1e-3, relu=True):
    x = layers.Conv2D(filters, kernel, strides=strides, padding="same", use_bias=False,
                      groups=groups, name=to_keras_name(name))(x)
    x = layers.BatchNormalization(epsilon=eps, name=to_keras_name(name + "/bn"))(x)
    return layers.Activation("relu")(x) if relu else x


def _squeeze_excite(x, name, ratio=16):
    """Hu et al.: global average pool -> 1x1 down -> ReLU -> 1x1 up -> sigmoid gate."""
    channels = x.shape[-1]
    s = layers.GlobalAveragePooling2D(keepdims=True)(x)
    s = layers.Conv2D(channels // ratio, 1, activation="relu", name=to_keras_name(name + "_1x1_down"))(s)
    s = layers.Conv2D(channels, 1, activation="sigmoid", name=to_keras_name(name + "_1x1_up"))(s)
    return layers.Multiply()([x, s])


def _bottleneck(x, stage, block, width, out, *, strides, se, groups, stride_in_3x3, eps):
    name = f"conv{stage}_{block}"
    s1, s3 = (1, strides) if stride_in_3x3 else (strides, 1)
    y = _conv_bn(x, width, 1, name + "_1x1_reduce", strides=s1, eps=eps)
    y = _conv_bn(y, width, 3, name + "_3x3", strides=s3, groups=groups, eps=eps)
    y = _conv_bn(y, out, 1, name + "_1x1_increase", eps=eps, relu=False)
    if se:
        y = _squeeze_excite(y, name)
    shortcut = x
    if block == 1:
        shortcut = _conv_bn(x, out, 1, name + "_1x1_proj", strides=strides, eps=eps, relu=False)
    return layers.Activation("relu")(layers.Add()([y, shortcut]))


def resnet50(x, *, se=False, cardinality=1, group_width=None, stride_in_3x3=False, bn_epsilon=1e-3):
    """Build the ResNet-50 trunk on ``x`` and return the stage-5 map (7x7x2048 at 224).

    ``se`` adds squeeze-and-excitation; ``cardinality`` > 1 with ``group_width`` gives ResNeXt
    (32 groups of width 4 double each stage's bottleneck: 128 at stage 2). keras-vggface uses
    epsilon 1e-3 for ResNet50 and 1e-4 for SENet50, and strides in the 1x1 reduce (Caffe style);
    ResNeXt strides in the 3x3.
    """
    x = _conv_bn(x, 64, 7, "conv1/7x7_s2", strides=2, eps=bn_epsilon)
    x = layers.MaxPooling2D(3, strides=2)(x)
    for stage, blocks, width, out in STAGES:
        if cardinality > 1:
            width = cardinality * group_width * 2 ** (stage - 2)
        for block in range(1, blocks + 1):
            strides = 2 if block == 1 and stage > 2 else 1
            x = _bottleneck(x, stage, block, width, out, strides=strides, se=se,
                            groups=cardinality, stride_in_3x3=stride_in_3x3, eps=bn_epsilon)
    return x
