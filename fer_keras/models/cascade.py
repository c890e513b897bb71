"""Thesis 002's 1D-CNN cascade on cached per-frame CNN features (§3.3.2, Fig. 3.27).

The thesis gives only "4 Conv1D, 2 MaxPooling1D, 1 fully connected layer" then softmax 6;
filters, kernels and widths are options with Bai et al.-style defaults. Padded steps are
zeroed by the mask before the first convolution, so padding values cannot leak into the
prediction. (The LSTM and BiLSTM cascades are :func:`fer_keras.models.sequence.sequence_model`
with ``temporal="last"``.)
"""
import keras
from keras import layers

from fer_keras.models.layers import AsMask, ZeroMasked


def cnn1d(*, seq_len=100, input_dim=25088, filters=(64, 64, 128, 128), kernel=3, padding="same",
          pool_after=(2, 4), pool_size=2, pool_strides=None, dense=128, activation="relu", dropout=0.5,
          classes=6, name="cascade_cnn1d"):
    """Conv1D x4 (``padding`` "same" or "valid") with MaxPooling1D (``pool_size``, ``pool_strides``:
    None is the pool size) after the convolutions numbered in ``pool_after`` -> Flatten ->
    Dense(``dense``) -> dropout -> softmax ``classes``."""
    if padding not in ("same", "valid", "causal"):
        raise ValueError(f"padding must be 'same', 'valid' or 'causal', got {padding!r}")
    features = keras.Input((seq_len, input_dim), name="features")
    mask_in = keras.Input((seq_len,), name="mask")
    x = ZeroMasked(name="zero_padding")([features, AsMask(name="as_mask")(mask_in)])
    for i, width in enumerate(filters, start=1):
        x = layers.Conv1D(width, kernel, padding=padding, activation=activation, name=f"conv1d_{i}")(x)
        if i in pool_after:
            x = layers.MaxPooling1D(pool_size, strides=pool_strides, name=f"max_pooling1d_{i}")(x)
    x = layers.Flatten(name="flatten")(x)
    x = layers.Dense(dense, activation=activation, name="dense")(x)
    if dropout:
        x = layers.Dropout(dropout, name="dropout")(x)
    outputs = layers.Dense(classes, activation="softmax", name="category")(x)
    return keras.Model({"features": features, "mask": mask_in}, {"category": outputs}, name=name)
