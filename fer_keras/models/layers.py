"""The project's own Keras layers: masks as an explicit input, a per-frame CNN that never sees
padded frames, and masked pooling over time.

Sequences are padded to a fixed length L (thesis 000 repeats the last frame, thesis 002 pads
zeros), so every temporal model takes a 0/1 ``mask`` input and these layers make sure padded
steps never reach a prediction.
"""
import keras
from keras import ops


@keras.saving.register_keras_serializable(package="fer_keras")
class AsMask(keras.layers.Layer):
    """0/1 (or bool) mask input of shape (batch, T) -> boolean mask for RNN layers."""

    def call(self, mask):
        return ops.greater(ops.cast(mask, "float32"), 0.5)

    def compute_output_spec(self, mask):
        return keras.KerasTensor(mask.shape, dtype="bool")


@keras.saving.register_keras_serializable(package="fer_keras")
class ZeroMasked(keras.layers.Layer):
    """Zero the time steps where the mask is False: ``layer([values, mask])``."""

    def call(self, inputs):
        values, mask = inputs
        return values * ops.cast(mask, values.dtype)[..., None]


@keras.saving.register_keras_serializable(package="fer_keras")
class MaskedTemporalPool(keras.layers.Layer):
    """Reduce (batch, T, C) over the valid time steps: thesis 000's "Reduce Mean" / "Reduce Median"
    (§5.8 "classify the exact sequence").

    Called as ``layer([values, mask])``; the median of an even count is the mean of the two
    middle values (NumPy's convention). A sequence with no valid step gives zeros. ``padded``
    reduces over all T steps instead, each padded step repeating the last valid one, as the
    thesis's padding repeats the last frame (§5.8 "classify the model output": its mean and
    median "not reduced").
    """

    def __init__(self, mode="mean", padded=False, **kwargs):
        super().__init__(**kwargs)
        self.supports_masking = True  # the mask is an explicit input; Keras' implicit one ends here
        if mode not in ("mean", "median"):
            raise ValueError(f"MaskedTemporalPool mode must be 'mean' or 'median', got {mode!r}")
        self.mode = mode
        self.padded = bool(padded)

    def call(self, inputs):
        values, mask = inputs
        if self.padded:  # step t holds step min(t, n - 1): the last real frame repeated
            n = ops.sum(ops.cast(mask, "int32"), axis=1, keepdims=True)
            steps = ops.arange(ops.shape(values)[1], dtype="int32")[None, :]
            index = ops.minimum(steps, ops.maximum(n - 1, 0))
            values = ops.take_along_axis(values, index[:, :, None], axis=1)
            mask = ops.where(n > 0, ops.ones_like(mask, dtype="bool"), ops.cast(mask, "bool"))
        mask = ops.cast(mask, values.dtype)[..., None]
        count = ops.sum(mask, axis=1)
        if self.mode == "mean":
            return ops.sum(values * mask, axis=1) / ops.maximum(count, 1.0)
        big = ops.cast(ops.max(ops.abs(values)) * 2 + 1, values.dtype)
        ordered = ops.sort(ops.where(mask > 0, values, big), axis=1)
        n = ops.cast(count, "int32")
        lo = ops.maximum((n - 1) // 2, 0)
        hi = ops.maximum(n // 2, 0)
        low = ops.take_along_axis(ordered, lo[:, None, :], axis=1)[:, 0]
        high = ops.take_along_axis(ordered, hi[:, None, :], axis=1)[:, 0]
        return ops.where(count > 0, (low + high) / 2, ops.zeros_like(low))

    def compute_mask(self, inputs, mask=None):
        return None

    def compute_output_shape(self, input_shape):
        shape = input_shape[0]
        return (shape[0], shape[2])

    def get_config(self):
        return {**super().get_config(), "mode": self.mode, "padded": self.padded}


@keras.saving.register_keras_serializable(package="fer_keras")
class MaskedTimeDistributed(keras.layers.Wrapper):
    """Apply ``layer`` (a per-frame CNN) to the real frames only: ``layer([frames, mask])``,
    (B, T, ...) and a 0/1 (B, T) mask -> (B, T, F) with zeros at the padded steps.

    ``TimeDistributed`` runs the CNN on padded frames too, so in training its BatchNorm batch
    statistics and moving statistics depend on what the padding holds (a repeated frame or
    zeros), and padding changes predictions. Here the B*T frames are gathered where
    mask > 0.5, the CNN sees only those, in one call (BN statistics over all real frames of the
    batch, not per time step), and the features are scattered back. Outside XLA padded frames
    cost nothing.

    The gather has a data-dependent size. TF's XLA compiles it (``tf.where`` gives a dynamic
    dimension bounded by B*T) with the results of graph mode, so ``jit_compile=True`` training
    works; XLA computes over the bound, so it is as fast as ``TimeDistributed``, no faster.
    BatchNorm of no frame gives NaN moving statistics (graph mode even crashes), but skipping
    the CNN with ``ops.cond`` makes every XLA step about 5x slower; so a batch of padding only
    runs the CNN on its first frame, drops its features and puts the BN moving statistics back.
    """

    def build(self, input_shape):
        super().build((None, *input_shape[0][2:]))

    def call(self, inputs, training=None):
        frames, mask = inputs
        batch, steps = ops.shape(frames)[0], ops.shape(frames)[1]
        real = ops.reshape(ops.cast(mask, "float32") > 0.5, (-1,))
        some = ops.any(real)
        first = ops.logical_and(ops.logical_not(some), ops.arange(batch * steps) == 0)
        index = ops.where(ops.logical_or(real, first))[0]
        moving = [w for bn in self.layer._flatten_layers()   # what a padding-only batch would move
                  if isinstance(bn, keras.layers.BatchNormalization) and bn.trainable
                  for w in (bn.moving_mean, bn.moving_variance)] if training else []
        before = [ops.copy(w) for w in moving]
        flat = ops.reshape(frames, (-1, *frames.shape[2:]))
        features = self.layer(ops.take(flat, index, axis=0), training=training)
        for w, value in zip(moving, before):
            w.assign(ops.where(some, w, value))
        features = features * ops.cast(some, features.dtype)
        flat = ops.scatter(index[:, None], features, (batch * steps, *features.shape[1:]))
        return ops.reshape(flat, (batch, steps, *features.shape[1:]))

    def compute_output_spec(self, inputs):
        frames = inputs[0]
        one = self.layer.compute_output_spec(keras.KerasTensor((None, *frames.shape[2:]), frames.dtype))
        return keras.KerasTensor(frames.shape[:2] + one.shape[1:], one.dtype)


@keras.saving.register_keras_serializable(package="fer_keras")
class Standardize(keras.layers.Layer):
    """``(x - mean) / std`` per feature (last axis), for openSMILE LLDs and functionals.

    Thesis 000 does not say how it scaled its audio features, and raw openSMILE values span
    several orders of magnitude. The statistics are non-trainable weights that the training
    engine sets from the training split (``fer_keras.training.standardize``) before the first
    epoch, so they are saved and restored with the model; until then the layer is the identity.
    """

    def build(self, input_shape):
        dim = (input_shape[-1],)
        self.mean = self.add_weight(shape=dim, initializer="zeros", trainable=False, name="mean")
        self.std = self.add_weight(shape=dim, initializer="ones", trainable=False, name="std")

    def call(self, x):
        return (x - ops.cast(self.mean, x.dtype)) / ops.cast(self.std, x.dtype)


def standardized(x, enabled: bool, input_name: str):
    """``x`` through a ``standardize_<input name>`` layer when ``enabled``; in float32 also under
    mixed precision, as raw openSMILE values lose their digits in float16."""
    return Standardize(name=f"standardize_{input_name}", dtype="float32")(x) if enabled else x
