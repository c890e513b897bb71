"""Thesis 002's ConvLSTM (§3.2.5): two ConvLSTM2D layers of 8 filters -> Flatten -> softmax 6.

Kernel size, pooling and dropout are not stated; 3x3 kernels, no pooling and no dropout are
the defaults, each an option.
"""
import keras
from keras import layers


def convlstm(*, seq_len=100, input_size=160, filters=(8, 8), kernel=3, dropout=0.0,
             recurrent_dropout=0.0, classes=6, name="convlstm"):
    """Stacked ConvLSTM2D (all but the last return sequences) -> Flatten -> ``category``."""
    inputs = keras.Input((seq_len, input_size, input_size, 3), name="frames")
    x = inputs
    for i, width in enumerate(filters, start=1):
        x = layers.ConvLSTM2D(width, kernel, padding="same", return_sequences=i < len(filters),
                              dropout=dropout, recurrent_dropout=recurrent_dropout,
                              name=f"conv_lstm2d_{i}")(x)
    x = layers.Flatten(name="flatten")(x)
    outputs = layers.Dense(classes, activation="softmax", name="category")(x)
    return keras.Model({"frames": inputs}, {"category": outputs}, name=name)
