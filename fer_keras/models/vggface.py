"""VGGFace (Parkhi et al. 2015) in its VGG16 form, named as keras-vggface named it.

keras-vggface no longer imports on current Keras, but researchers still hold its weight
files; matching its layer names (``conv1_1`` ... ``fc6``, ``fc6/relu``) lets them load by name.
The ResNet50 and SENet50 forms live in :mod:`fer_keras.models.resnet`.
"""
from keras import layers

from fer_keras.models.keras2_h5 import to_keras_name

CONV_BLOCKS = (64, 64), (128, 128), (256, 256, 256), (512, 512, 512), (512, 512, 512)
BLOCKS = ("conv1_", "conv2_", "conv3_", "conv4_", "conv5_")
"""Layer-name prefixes, first to last; thesis 002 unfreezes conv4_ and conv5_."""
TOP = ("fc6", "fc7")


def vgg16(x):
    """The 13 convolutions and 5 poolings; returns pool5 (7x7x512 at 224)."""
    for block, widths in enumerate(CONV_BLOCKS, start=1):
        for i, width in enumerate(widths, start=1):
            x = layers.Conv2D(width, 3, padding="same", activation="relu", name=f"conv{block}_{i}")(x)
        x = layers.MaxPooling2D(2, strides=2, name=f"pool{block}")(x)
    return x


def vgg16_top(x, upto="fc6", dropout=0.5):
    """Flatten then fc6 (4096) [then fc7 (4096)], each followed by ``fcN/relu`` and dropout.

    fc6 is the per-frame feature thesis 000 feeds to its GRU (following Kollias et al.); the
    thesis keeps VGG-Face's dropout on its first two FC layers (keras-vggface dropped it).
    """
    x = layers.Flatten(name="flatten")(x)
    for name in TOP[: TOP.index(upto) + 1]:
        x = layers.Dense(4096, name=name)(x)
        x = layers.Activation("relu", name=to_keras_name(f"{name}/relu"))(x)
        if dropout:
            x = layers.Dropout(dropout, name=f"{name}_dropout")(x)
    return x
