"""Thesis 002's ConvLSTM (§3.2.5): two ConvLSTM2D layers of 8 filters -> Flatten -> softmax 6.

Kernel size, padding, pooling and dropout are not stated; 3x3 'same' kernels, no pooling and
no dropout are the defaults, each an option.
"""
import keras
from keras import layers


def convlstm(*, seq_len=100, input_size=160, filters=(8, 8), kernel=3, padding="same", pool=None,
             dropout=0.0, recurrent_dropout=0.0, classes=6, name="convlstm"):
    """Stacked ConvLSTM2D (all but the last return sequences) -> Flatten -> ``category``.

    ``padding`` "same" or "valid"; ``pool`` (None, "max" or "average") adds a 2x2 spatial
    pooling after each ConvLSTM layer (per frame for those that return sequences)."""
    if padding not in ("same", "valid"):
        raise ValueError(f"padding must be 'same' or 'valid', got {padding!r}")
    if pool not in (None, "max", "average"):
        raise ValueError(f"pool must be null, 'max' or 'average', got {pool!r}")
    inputs = keras.Input((seq_len, input_size, input_size, 3), name="frames")
    x = inputs
    for i, width in enumerate(filters, start=1):
        sequences = i < len(filters)
        x = layers.ConvLSTM2D(width, kernel, padding=padding, return_sequences=sequences,
                              dropout=dropout, recurrent_dropout=recurrent_dropout,
                              name=f"conv_lstm2d_{i}")(x)
        if pool:
            name = f"{pool}_pooling_{i}"
            if sequences:  # per frame: no pooling over time
                layer = (layers.MaxPooling3D if pool == "max" else layers.AveragePooling3D)((1, 2, 2), name=name)
            else:
                layer = (layers.MaxPooling2D if pool == "max" else layers.AveragePooling2D)(2, name=name)
            x = layer(x)
    x = layers.Flatten(name="flatten")(x)
    outputs = layers.Dense(classes, activation="softmax", name="category")(x)
    return keras.Model({"frames": inputs}, {"category": outputs}, name=name)
