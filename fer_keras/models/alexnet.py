"""AlexNet at 96x96, the per-frame CNN of thesis 001's AlexNet-GRU (valence/arousal).

The thesis gives the five convolutions (96, 256, 384, 384, 256 filters; 11x11, 5x5, 3x3, 3x3,
3x3 kernels) and their 4x4x256 output at 96x96, but no strides or padding. TF-Slim's
``alexnet_v2`` geometry reproduces that output (11x11/4 'valid' -> 22, 3x3/2 pool -> 10, 5x5
'same', 3x3/2 pool -> 4, three 3x3 'same'), so it is used. ``groups=2`` is the original's
two-GPU split that the thesis states (§5.1: conv2 5x5x48, conv4 and conv5 3x3x192; 2,334,080
convolution parameters, 1,413,120 fewer than full depth). Local response normalisation after the
first two ReLUs, before pooling, follows Krizhevsky et al. 2012 and is an option.
"""
import keras
import tensorflow as tf
from keras import layers

BLOCKS = ("conv1", "conv2", "conv3", "conv4", "conv5")
"""Layer-name prefixes of the five convolutions, first to last (LRN and pooling hold no weights)."""


@keras.saving.register_keras_serializable(package="fer_keras")
class LocalResponseNorm(layers.Layer):
    """Cross-channel LRN: ``x / (bias + alpha * sum of x**2 over 2*depth_radius+1 channels)**beta``.

    Defaults are Krizhevsky et al.'s k=2, n=5, alpha=1e-4, beta=0.75. Their alpha multiplies the
    plain sum of squares, as ``tf.nn.local_response_normalization`` does, so it passes through
    unchanged (Caffe's ``alpha`` is divided by n instead). n=5 is ``depth_radius`` 2.
    """

    def __init__(self, depth_radius=2, bias=2.0, alpha=1e-4, beta=0.75, **kwargs):
        super().__init__(**kwargs)
        self.depth_radius = depth_radius
        self.bias = bias
        self.alpha = alpha
        self.beta = beta

    def call(self, x):
        return tf.nn.local_response_normalization(x, depth_radius=self.depth_radius, bias=self.bias,
                                                  alpha=self.alpha, beta=self.beta)

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        return {**super().get_config(), "depth_radius": self.depth_radius, "bias": self.bias,
                "alpha": self.alpha, "beta": self.beta}


def alexnet(x, *, lrn=True, groups=1):
    """conv1 [-> norm1] -> pool1 -> conv2 [-> norm2] -> pool2 -> conv3..conv5 (ReLU each); conv2,
    conv4 and conv5 split into ``groups`` filter groups (2: the original's, as thesis 001 states).

    Returns conv5: 4x4x256 at 96x96 (no pool5; the thesis feeds this map to its FC layers).
    """
    if groups not in (1, 2):
        raise ValueError(f"AlexNet groups must be 1 (full depth) or 2 (the original's split), got {groups!r}")
    x = layers.Conv2D(96, 11, strides=4, padding="valid", activation="relu", name="conv1")(x)
    if lrn:
        x = LocalResponseNorm(name="norm1")(x)
    x = layers.MaxPooling2D(3, strides=2, padding="valid", name="pool1")(x)
    x = layers.Conv2D(256, 5, padding="same", groups=groups, activation="relu", name="conv2")(x)
    if lrn:
        x = LocalResponseNorm(name="norm2")(x)
    x = layers.MaxPooling2D(3, strides=2, padding="valid", name="pool2")(x)
    x = layers.Conv2D(384, 3, padding="same", activation="relu", name="conv3")(x)
    x = layers.Conv2D(384, 3, padding="same", groups=groups, activation="relu", name="conv4")(x)
    return layers.Conv2D(256, 3, padding="same", groups=groups, activation="relu", name="conv5")(x)
