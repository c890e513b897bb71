"""Training losses of the theses, as serialisable Keras 3 losses, and a registry by short name.

Thesis 003 trains valence/arousal with 1 - CCC and its combined model with
0.33 * CCE + 1.00 * (1 - CCC); thesis 004 trains action units with per-AU sigmoid cross-entropy.
CCE and MSE are Keras' own. CCC is a statistic of the whole batch, not a mean of per-sample
terms, so the custom losses take ``sample_weight`` as a validity mask (padded frames, unknown
labels) instead of letting Keras weight and average per-sample values.
"""
import keras
from keras import ops

AU_UNKNOWN = 999  # EmotioNet's label for "not annotated"


def broadcast_weight(weight, x):
    """Broadcast a (B,) or (B, T) weight to the shape of ``x`` (B, ..., D) by adding axes."""
    weight = ops.cast(weight, x.dtype)
    while len(weight.shape) < len(x.shape):
        weight = ops.expand_dims(weight, -1)
    return ops.broadcast_to(weight, ops.shape(x))


def validity_weight(y_pred, sample_weight):
    """Fold a Keras mask carried by ``y_pred`` (outputs of masked RNNs) into the weight.

    Keras has no public getter; on TensorFlow it keeps the mask in ``_keras_mask``.
    """
    keras_mask = getattr(y_pred, "_keras_mask", None)
    if keras_mask is None:
        return sample_weight
    keras_mask = ops.cast(keras_mask, "float32")
    if sample_weight is None:
        return keras_mask
    sample_weight = ops.cast(sample_weight, "float32")
    while len(sample_weight.shape) < len(keras_mask.shape):
        sample_weight = ops.expand_dims(sample_weight, -1)
    return sample_weight * keras_mask


def ccc(y_true, y_pred, mask=None, epsilon=1e-7):
    """Concordance correlation coefficient per last-axis dimension, shape (D,).

    Batch and time are flattened and population moments are taken over every valid entry, as
    in Aff-Wild practice (thesis 003 leaves the reduction open). ``mask`` (B,) or (B, T) of 0/1
    drops entries; masked values never reach the sums, so padding may hold anything (even NaN).
    """
    y_true = ops.convert_to_tensor(y_true)
    y_pred = ops.convert_to_tensor(y_pred, dtype=y_true.dtype)
    dims = y_true.shape[-1]
    x = ops.reshape(y_pred, (-1, dims))
    y = ops.reshape(y_true, (-1, dims))
    if mask is None:
        w = ops.ones_like(x)
    else:
        w = ops.reshape(broadcast_weight(mask, y_true), (-1, dims))
        x = ops.where(w > 0, x, 0.0)
        y = ops.where(w > 0, y, 0.0)
    n = ops.maximum(ops.sum(w, axis=0), epsilon)
    mean_x = ops.sum(w * x, axis=0) / n
    mean_y = ops.sum(w * y, axis=0) / n
    dx, dy = x - mean_x, y - mean_y
    var_x = ops.sum(w * dx * dx, axis=0) / n
    var_y = ops.sum(w * dy * dy, axis=0) / n
    cov = ops.sum(w * dx * dy, axis=0) / n
    return 2.0 * cov / (var_x + var_y + ops.square(mean_x - mean_y) + epsilon)


@keras.saving.register_keras_serializable(package="fer_keras")
class CCCLoss(keras.losses.Loss):
    """1 - mean over dimensions of the batch CCC (valence and arousal averaged, thesis 003).

    ``sample_weight`` (B,) or (B, T), as given to ``fit``/``train_on_batch``, is the validity
    mask of the moments; ``__call__`` is overridden because Keras' weighted mean of per-sample
    losses has no meaning for a batch statistic. ``reduction`` is therefore not used.
    """

    def __init__(self, epsilon=1e-7, name="ccc_loss", dtype=None):
        super().__init__(name=name, dtype=dtype)
        self.epsilon = epsilon

    def __call__(self, y_true, y_pred, sample_weight=None):
        mask = validity_weight(y_pred, sample_weight)
        y_true = ops.convert_to_tensor(y_true, dtype=self.dtype)
        y_pred = ops.convert_to_tensor(y_pred, dtype=self.dtype)
        return 1.0 - ops.mean(ccc(y_true, y_pred, mask, self.epsilon))

    def get_config(self):
        return {"name": self.name, "epsilon": self.epsilon}


@keras.saving.register_keras_serializable(package="fer_keras")
class MaskedSigmoidCrossEntropy(keras.losses.Loss):
    """Per-AU binary cross-entropy averaged over the entries whose label is known.

    Entries labelled ``ignore`` (EmotioNet's 999) contribute nothing, so images with partly
    unknown AUs can be kept instead of dropped (thesis 004 dropped or zeroed them).
    ``sample_weight`` (B,) or (B, T) further weights entries; the mean divides by the summed
    weight of valid entries, hence the overridden ``__call__``. The models output sigmoid
    probabilities; ``from_logits=True`` takes logits (thesis 004's
    ``sigmoid_cross_entropy_with_logits``).
    """

    def __init__(self, from_logits=False, ignore=AU_UNKNOWN, epsilon=1e-7,
                 name="masked_sigmoid_cross_entropy", dtype=None):
        super().__init__(name=name, dtype=dtype)
        self.from_logits = from_logits
        self.ignore = ignore
        self.epsilon = epsilon

    def __call__(self, y_true, y_pred, sample_weight=None):
        weight = validity_weight(y_pred, sample_weight)
        y_true = ops.convert_to_tensor(y_true, dtype=self.dtype)
        y_pred = ops.convert_to_tensor(y_pred, dtype=self.dtype)
        valid = ops.cast(ops.not_equal(y_true, self.ignore), self.dtype)
        if weight is not None:
            valid = valid * broadcast_weight(weight, y_true)
        labels = ops.where(valid > 0, y_true, 0.0)
        per_entry = self._entry_losses(labels, ops.where(valid > 0, y_pred, 0.0))
        return ops.divide_no_nan(ops.sum(valid * per_entry), ops.sum(valid))

    def _entry_losses(self, labels, y_pred):
        if self.from_logits:
            # max(z, 0) - z * y + log(1 + exp(-|z|)): stable for large |z|
            return ops.relu(y_pred) - y_pred * labels + ops.log1p(ops.exp(-ops.abs(y_pred)))
        p = ops.clip(y_pred, self.epsilon, 1.0 - self.epsilon)
        return -(labels * ops.log(p) + (1.0 - labels) * ops.log(1.0 - p))

    def get_config(self):
        return {"name": self.name, "from_logits": self.from_logits, "ignore": self.ignore,
                "epsilon": self.epsilon}


LOSSES = {
    "cce": keras.losses.CategoricalCrossentropy,
    "ccc": CCCLoss,
    "mse": keras.losses.MeanSquaredError,
    "au_bce": MaskedSigmoidCrossEntropy,
}

# Thesis 003 §4.5: "0.33 for categorical cross-entropy and 1.00 for CCC".
COMBINED_LOSS_WEIGHTS = {"category": 0.33, "va": 1.0}


def get(name, **kwargs):
    """A new instance of the loss registered as ``name``, built with ``kwargs``.

    Keras' own losses (CCE, MSE) default to the mean over the weighted entries
    (``mean_with_sample_weight``): on a per-frame output the frame mask is the weight, so the loss
    is the mean over real frames, not diluted by a batch's padding; with a weight of 1 per video
    it is the plain mean."""
    try:
        cls = LOSSES[name]
    except KeyError:
        raise ValueError(f"unknown loss {name!r}; known: {', '.join(sorted(LOSSES))}") from None
    if cls.__module__.startswith("keras."):
        kwargs.setdefault("reduction", "mean_with_sample_weight")
    return cls(**kwargs)


def combined(cce_weight=COMBINED_LOSS_WEIGHTS["category"], ccc_weight=COMBINED_LOSS_WEIGHTS["va"]):
    """``(loss, loss_weights)`` for ``model.compile`` of a model with outputs "category" and "va".

    Thesis 003's combined objective is a weighted sum of two per-output losses, which is what
    Keras' ``loss_weights`` computes, so no combined loss class is needed.
    """
    return ({"category": get("cce"), "va": get("ccc")},
            {"category": cce_weight, "va": ccc_weight})
