"""Thesis 002's C3D baseline (§3.2.5, Fig. 3.22) on raw 100x160x160 clips.

Its printed summary fixes the layers: 3x3x3 'valid' convolutions with 16, 16, 32 filters, each
followed by 2x2x2 max pooling, then Dense 512 -> 512 -> softmax 6 (53,372,502 parameters).
The activation is not stated: ReLU, with LeakyReLU, batch norm, average pooling, and dropout
on the dense and the convolution layers as the options the thesis tried against overfitting.
"""
import keras
from keras import layers


def c3d(*, seq_len=100, input_size=160, filters=(16, 16, 32), kernel=3, dense=(512, 512),
        activation="relu", batchnorm=False, dropout=0.0, conv_dropout=0.0, pooling="max",
        initializer="glorot_uniform", classes=6, name="c3d"):
    """Conv3D/pooling stack -> Flatten -> dense layers -> softmax ``classes`` (``category``).

    ``pooling`` "max" (the baseline) or "average"; ``conv_dropout`` after each pooling,
    ``dropout`` after each dense layer (§3.2.5 tried both at various rates)."""
    if pooling not in ("max", "average"):
        raise ValueError(f"pooling must be 'max' or 'average', got {pooling!r}")
    pool = layers.MaxPooling3D if pooling == "max" else layers.AveragePooling3D
    inputs = keras.Input((seq_len, input_size, input_size, 3), name="frames")
    x = inputs
    for i, width in enumerate(filters):
        suffix = f"_{i}" if i else ""
        x = layers.Conv3D(width, kernel, kernel_initializer=initializer, name=f"conv3d{suffix}")(x)
        if batchnorm:
            x = layers.BatchNormalization(name=f"conv3d_bn{suffix}")(x)
        x = _activation(activation, f"conv3d_act{suffix}")(x)
        x = pool(2, name=f"{pooling}_pooling3d{suffix}")(x)
        if conv_dropout:
            x = layers.Dropout(conv_dropout, name=f"conv3d_dropout{suffix}")(x)
    x = layers.Flatten(name="flatten")(x)
    for i, width in enumerate(dense):
        suffix = f"_{i}" if i else ""
        x = layers.Dense(width, kernel_initializer=initializer, name=f"dense{suffix}")(x)
        x = _activation(activation, f"dense_act{suffix}")(x)
        if dropout:
            x = layers.Dropout(dropout, name=f"dense_dropout{suffix}")(x)
    outputs = layers.Dense(classes, activation="softmax", name="category")(x)
    return keras.Model({"frames": inputs}, {"category": outputs}, name=name)


def _activation(kind, name):
    if kind == "leaky_relu":
        return layers.LeakyReLU(name=name)
    return layers.Activation(kind, name=name)
