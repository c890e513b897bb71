"""Evaluation measures of the theses, computed once on a whole split with NumPy/scikit-learn.

Each function returns a JSON-ready dict (Python numbers, lists, and None where a measure is
undefined, e.g. a correlation of a constant). Two streaming Keras metrics monitor training:
``CCCMetric``, the epoch-level CCC (an average of batch CCCs is not a CCC), and
``MaskedBinaryAccuracy``, the AU accuracy over known labels (``action_units``' ``accuracy``).
"""
import math
import warnings

import keras
import numpy as np
from keras import ops
from sklearn import metrics as skm

from fer_keras.losses import AU_UNKNOWN, broadcast_weight, validity_weight

VA_NAMES = ("valence", "arousal")
_SUMS = ("n", "x", "y", "xx", "yy", "xy")


def _number(x):
    """A Python float, or None where the value is not finite."""
    x = float(x)
    return x if math.isfinite(x) else None


def _labels(y):
    """Class indices from (N,) indices, or from one-hot/probability rows (..., C)."""
    y = np.asarray(y)
    return (y.argmax(-1) if y.ndim > 1 else y).astype(int).ravel()


def classification(y_true, y_pred, classes):
    """Accuracy, balanced accuracy, macro/weighted F1, per-class P/R/F1/support, confusion matrix.

    Thesis 003's per-class "accuracy" is the per-class recall here; macro F1 and balanced
    accuracy are the imbalance-robust measures the extractions ask to add. Undefined precision
    (a class never predicted) counts as 0, as scikit-learn's ``zero_division=0``. The F1
    averages run over all ``classes``, as the per-class table does: without ``labels=``
    scikit-learn would skip a class absent from both sides and inflate macro F1.
    """
    t, p = _labels(y_true), _labels(y_pred)
    labels = np.arange(len(classes))
    with warnings.catch_warnings():  # a class predicted but absent from y_true: its recall is 0, as said
        warnings.filterwarnings("ignore", "y_pred contains classes not in y_true")
        warnings.filterwarnings("ignore", "A single label was found")
        balanced = float(skm.balanced_accuracy_score(t, p))
    precision, recall, f1, support = skm.precision_recall_fscore_support(
        t, p, labels=labels, zero_division=0)
    return {
        "accuracy": float(skm.accuracy_score(t, p)),
        "balanced_accuracy": balanced,
        "macro_f1": float(skm.f1_score(t, p, labels=labels, average="macro", zero_division=0)),
        "weighted_f1": float(skm.f1_score(t, p, labels=labels, average="weighted",
                                          zero_division=0)),
        **{f"{average}_{name}": float(np.average(values, weights=None if average == "macro" else support))
           if support.sum() else 0.0
           for average in ("macro", "weighted") for name, values in (("precision", precision), ("recall", recall))},
        "per_class": {name: {"precision": float(precision[i]), "recall": float(recall[i]),
                             "f1": float(f1[i]), "support": int(support[i])}
                      for i, name in enumerate(classes)},
        "confusion_matrix": skm.confusion_matrix(t, p, labels=labels).tolist(),
        "classes": list(classes),
    }


def baselines(y_true, classes):
    """What predictors that never look at a face score on labels ``y_true`` (class indices):
    ``majority`` always predicts the most frequent class of these labels (thesis 003's best
    category model scores what always predicting "Sad" scores on its validation set);
    ``uniform`` guesses each class with probability 1/C, ``prior`` with the label frequencies
    (expected values: accuracy 1/C and sum p^2; per class recall 1/C or p_c, precision p_c)."""
    t = _labels(y_true)
    if t.size == 0:
        return None
    k = len(classes)
    p = np.bincount(t, minlength=k) / t.size
    top = int(p.argmax())
    majority = classification(t, np.full_like(t, top), classes)

    def chance(recall):
        f1 = np.where(p + recall > 0, 2 * p * recall / np.maximum(p + recall, 1e-12), 0.0)
        return {"accuracy": float(np.sum(p * recall)), "macro_f1": float(f1.mean())}

    return {"majority": {"class": classes[top], "accuracy": majority["accuracy"], "macro_f1": majority["macro_f1"]},
            "uniform": chance(np.full(k, 1 / k)), "prior": chance(p)}


def concordance(y_true, y_pred):
    """CCC of two 1-D arrays with population moments; None when both are the same constant."""
    y_true, y_pred = np.asarray(y_true, np.float64), np.asarray(y_pred, np.float64)
    if y_true.size == 0 or (np.ptp(y_true) == np.ptp(y_pred) == 0 and y_true[0] == y_pred[0]):
        return None
    mean_t, mean_p = y_true.mean(), y_pred.mean()
    cov = np.mean((y_true - mean_t) * (y_pred - mean_p))
    denominator = y_true.var() + y_pred.var() + (mean_t - mean_p) ** 2
    return _number(2 * cov / denominator)


def _pearson(y_true, y_pred):
    """Pearson r; None when either side is constant (or empty)."""
    if y_true.size == 0 or np.ptp(y_true) == 0 or np.ptp(y_pred) == 0:
        return None
    dt, dp = y_true - y_true.mean(), y_pred - y_pred.mean()
    return _number(np.sum(dt * dp) / math.sqrt(np.sum(dt * dt) * np.sum(dp * dp)))


def regression(y_true, y_pred, names=VA_NAMES, mask=None):
    """Per-dimension CCC, Pearson r, MSE and RMSE over all valid entries (batch x time flattened).

    ``y`` is (N, D) or (N, T, D); ``mask`` (N,) or (N, T) of 0/1 drops entries (padding may hold
    anything). ``pooled`` is the MSE/RMSE over all dimensions together, the only error thesis
    004 reports.
    """
    t, p, valid = _flat(y_true, y_pred, names, mask)
    t, p = t[valid], p[valid]
    out = {}
    for d, name in enumerate(names):
        mse = float(np.mean((p[:, d] - t[:, d]) ** 2))
        out[name] = {"ccc": concordance(t[:, d], p[:, d]), "pearson": _pearson(t[:, d], p[:, d]),
                     "mse": mse, "rmse": math.sqrt(mse)}
    pooled = float(np.mean((p - t) ** 2))
    out["pooled"] = {"mse": pooled, "rmse": math.sqrt(pooled)}
    out["n"] = int(len(t))
    return out


def _flat(y_true, y_pred, names, mask):
    """``(true, pred, valid)``: (M, D) entries of (N, D) or (N, T, D) arrays and the valid ones."""
    y_true, y_pred = np.asarray(y_true, np.float64), np.asarray(y_pred, np.float64)
    if y_true.shape[-1] != len(names):
        raise ValueError(f"{y_true.shape[-1]} dimensions on the last axis, names {tuple(names)}")
    t, p = y_true.reshape(-1, len(names)), y_pred.reshape(-1, len(names))
    valid = np.ones(len(t), bool) if mask is None else np.asarray(mask).reshape(-1) > 0
    return t, p, valid


def per_video(y_true, y_pred, video_ids, names=VA_NAMES, mask=None):
    """CCC, Pearson r and MSE per dimension within each video over its valid entries, and their
    means over the videos: ``(summary, rows)``.

    The other common protocol beside ``regression``'s pooled numbers (thesis 001 and the Aff-Wild
    script pool all frames). ``y`` is (N, D) or (N, T, D) with ``video_ids`` (N,) naming the video
    of each row (a video may span rows, e.g. its sequences or its segment records) and ``mask``
    as in ``regression``. A measure a video leaves undefined (no valid entry; a constant side for
    Pearson; both sides the same constant for CCC) is None in its row, left out of the mean and
    counted in ``undefined``. ``rows``: per video (first-seen order) ``video_id``, ``n`` and per
    dimension its ``ccc``, ``pearson`` and ``mse``.
    """
    t, p, valid = _flat(y_true, y_pred, names, mask)
    ids = list(dict.fromkeys(video_ids))
    index = {v: i for i, v in enumerate(ids)}
    owner = np.repeat([index[v] for v in video_ids], len(t) // max(len(video_ids), 1))[valid]
    order = np.argsort(owner, kind="stable")  # each video's entries together, in their order
    t, p = t[valid][order], p[valid][order]
    counts = np.bincount(owner, minlength=len(ids))
    ends = np.cumsum(counts)
    rows = []
    for video, start, end in zip(ids, ends - counts, ends):
        row = {"video_id": video, "n": int(end - start)}
        for d, name in enumerate(names):
            vt, vp = t[start:end, d], p[start:end, d]
            row[name] = {"ccc": concordance(vt, vp), "pearson": _pearson(vt, vp),
                         "mse": float(np.mean((vp - vt) ** 2)) if vt.size else None}
        rows.append(row)
    summary = {"n_videos": len(rows), "undefined": {}}
    for name in names:
        summary[name] = {}
        summary["undefined"][name] = {}
        for measure in ("ccc", "pearson", "mse"):
            values = [r[name][measure] for r in rows if r[name][measure] is not None]
            summary[name][measure] = float(np.mean(values)) if values else None
            summary["undefined"][name][measure] = len(rows) - len(values)
    return summary, rows


def abaw_score(result, names=VA_NAMES):
    """ABAW's valence-arousal score P = (CCC_valence + CCC_arousal) / 2 of a ``regression``
    result (over all frames of the set); None when either CCC is."""
    cccs = [result[name]["ccc"] for name in names]
    return None if any(c is None for c in cccs) else float(np.mean(cccs))


def _rates(tp, fp, tn, fn):
    """Accuracy, precision, recall, F1 and binarised AUC from confusion counts.

    Undefined precision is 0, as thesis 004 printed it. The binarised AUC is the ROC area of
    thresholded 0/1 predictions, (1 + TPR - FPR) / 2: what thesis 004's "AUC" actually is.
    """
    tp, fp, tn, fn = int(tp), int(fp), int(tn), int(fn)
    precision = tp / (tp + fp) if tp + fp else 0.0
    recall = tp / (tp + fn) if tp + fn else 0.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    total = tp + fp + tn + fn
    return {"tp": tp, "fp": fp, "tn": tn, "fn": fn,
            "accuracy": (tp + tn) / total if total else None,
            "precision": precision, "recall": recall, "f1": f1,
            "binarised_auc": (1 + recall - fp / (fp + tn)) / 2 if tp + fn and fp + tn else None}


def _roc_auc(truth, scores):
    """ROC AUC of probabilities; None when only one class is present."""
    return float(skm.roc_auc_score(truth, scores)) if 0 < truth.sum() < truth.size else None


def _au_arrays(y_true, probs, au_names, ignore):
    """``(labels (M, A), probs (M, A), names)`` of AU labels and probabilities of any leading shape."""
    y_true = np.asarray(y_true)
    num_aus = y_true.shape[-1]
    y_true = y_true.reshape(-1, num_aus)
    probs = np.asarray(probs, np.float64).reshape(y_true.shape)
    names = list(au_names) if au_names is not None else [str(k) for k in range(num_aus)]
    if len(names) != num_aus:
        raise ValueError(f"{len(names)} AU names for {num_aus} AUs")
    return y_true, probs, names


def _thresholds(threshold, num_aus):
    """(A,) per-AU thresholds from one number or one per AU."""
    t = np.asarray(threshold, np.float64)
    if t.ndim == 0:
        return np.full(num_aus, float(t))
    if t.shape != (num_aus,):
        raise ValueError(f"{t.size} thresholds for {num_aus} AUs")
    return t


def action_units(y_true, probs, threshold=0.5, au_names=None, ignore=AU_UNKNOWN):
    """Multi-label AU measures over the entries whose label is not ``ignore`` (999).

    Top level (micro, pooled over all image x AU entries) reproduces thesis 004's Tables 3 and 5:
    ``accuracy`` is its "Total Accuracy" (element-wise), ``precision``/``recall``/``f1`` are
    micro, ``binarised_auc`` is its "AUC", and tp/fp/tn/fn are Tables 4 and 6.
    ``partial_accuracy`` is its Eq. 18: per example the share of its known AUs predicted right,
    averaged over the examples with at least one known AU. With every AU known it equals
    ``accuracy`` (the thesis's two columns agree to float32 noise); with 999 entries an example
    with few known AUs weighs as much as one with many, so the two differ.
    Added: ``exact_match_accuracy`` (all known AUs of an image right, which the thesis defines
    but never reported), ROC AUC from probabilities (micro, macro over AUs with both classes,
    per AU), ``mean_f1`` (the mean of the per-AU F1 over the AUs with at least one positive
    label, the BP4D/DISFA convention; ``mean_f1_excluded`` names the AUs left out) and per AU
    the same counts and rates, ``roc_auc``, ``support`` (its positive labels), ``known`` (its
    known labels) and ``base_rate`` (support / known; None without a known label).
    A prediction is positive when ``probs >= threshold`` (the thesis does not state its
    threshold; 0.5 is logit >= 0); ``threshold`` is one number or one per AU (a list in the
    result then). ``n_examples`` counts the rows (images or frames) with at least one known AU,
    so padded frames, which the pipeline labels all ``ignore``, are not examples.
    """
    y_true, probs, names = _au_arrays(y_true, probs, au_names, ignore)
    num_aus = y_true.shape[-1]
    cut = _thresholds(threshold, num_aus)
    valid = y_true != ignore
    truth, pred = (y_true == 1) & valid, (probs >= cut) & valid
    counts = {"tp": truth & pred, "fp": ~truth & pred, "tn": ~truth & ~pred & valid,
              "fn": truth & ~pred}
    per_au = {k: v.sum(axis=0) for k, v in counts.items()}
    rows = valid.any(axis=1)
    exact = ((truth == pred) | ~valid).all(axis=1)
    right = ((truth == pred) & valid).sum(axis=1)
    partial = right[rows] / valid.sum(axis=1)[rows]
    per_au_auc = [_roc_auc(truth[valid[:, k], k], probs[valid[:, k], k]) for k in range(num_aus)]
    defined = [a for a in per_au_auc if a is not None]
    support, known = truth.sum(axis=0), valid.sum(axis=0)
    table = {}
    for k, name in enumerate(names):
        table[name] = {**_rates(*(per_au[c][k] for c in ("tp", "fp", "tn", "fn"))),
                       "roc_auc": per_au_auc[k], "support": int(support[k]), "known": int(known[k]),
                       "base_rate": float(support[k] / known[k]) if known[k] else None}
    scored = [name for k, name in enumerate(names) if support[k] > 0]
    return {
        **_rates(*(per_au[k].sum() for k in ("tp", "fp", "tn", "fn"))),
        "partial_accuracy": float(partial.mean()) if rows.any() else None,
        "exact_match_accuracy": float(exact[rows].mean()) if rows.any() else None,
        "mean_f1": float(np.mean([table[n]["f1"] for n in scored])) if scored else None,
        "mean_f1_excluded": [name for name in names if name not in scored],
        "roc_auc_micro": _roc_auc(truth[valid], probs[valid]),
        "roc_auc_macro": float(np.mean(defined)) if defined else None,
        "threshold": float(cut[0]) if np.ndim(threshold) == 0 else [float(t) for t in cut],
        "n_examples": int(rows.sum()),
        "per_au": table,
    }


def best_f1_thresholds(y_true, probs, au_names=None, ignore=AU_UNKNOWN, default=0.5):
    """Per AU the threshold that maximises its F1 on these labels (a validation split's).

    The candidates are the distinct predicted probabilities of the AU's known entries (positive
    when ``probs >= t``), which covers every distinct decision the AU can make, so the search is
    exact, not a grid. A tie goes to the higher threshold (fewer positives). An AU without a
    positive known label (its F1 is 0 at every threshold) keeps ``default``. Returns
    ``(thresholds (A,), per AU {"threshold", "f1", "searched"})``, ``f1`` the F1 reached on
    these labels and ``searched`` False where ``default`` was kept.
    """
    y_true, probs, names = _au_arrays(y_true, probs, au_names, ignore)
    out, info = np.full(len(names), float(default)), {}
    for k, name in enumerate(names):
        known = y_true[:, k] != ignore
        truth, scores = y_true[known, k] == 1, probs[known, k]
        positives = int(truth.sum())
        if not positives:
            info[name] = {"threshold": float(default), "f1": None, "searched": False}
            continue
        order = np.argsort(-scores, kind="stable")
        scores, truth = scores[order], truth[order]
        # the last entry of each run of equal scores: predicting down to it is threshold scores[i]
        last = np.flatnonzero(np.r_[scores[1:] != scores[:-1], True])
        tp = np.cumsum(truth)[last]
        f1 = 2 * tp / (last + 1 + positives)
        best = int(np.argmax(f1))  # the first maximum: the highest threshold
        out[k] = float(scores[last[best]])
        info[name] = {"threshold": float(out[k]), "f1": float(f1[best]), "searched": True}
    return out, info


def wraparound_indices(n, batch):
    """Indices of the items a reader that cycles yields in ``ceil(n / batch)`` batches of
    ``batch``: ``0 .. n-1``, then from 0 again until the last batch is full.

    TF-Slim's ``eval_image_classifier.py`` evaluated thesis 004 that way (batch 100): its 4,424
    test images were scored as 4,500, the first 76 twice; 6,400 images as 6,400.
    """
    if not isinstance(n, (int, np.integer)) or n < 0:
        raise ValueError(f"n must be a count of items >= 0, got {n!r}")
    if not isinstance(batch, (int, np.integer)) or isinstance(batch, bool) or batch < 1:
        raise ValueError(f"batch must be a batch size >= 1, got {batch!r}")
    if n == 0:
        return np.zeros(0, dtype=int)
    return np.arange(-(-n // batch) * batch) % n


@keras.saving.register_keras_serializable(package="fer_keras")
class CCCMetric(keras.metrics.Metric):
    """Running CCC of output dimension ``dim`` (0 valence, 1 arousal) over an epoch.

    Accumulates float64 sums of the valid entries, so the result equals ``concordance`` on all
    of them. Put it in ``weighted_metrics``: only those receive ``sample_weight``, the frame
    mask (a Keras mask on ``y_pred`` is honoured too).
    """

    def __init__(self, dim=0, name=None, dtype=None):
        super().__init__(name=name or f"ccc_{VA_NAMES[dim] if dim < len(VA_NAMES) else dim}",
                         dtype=dtype)
        self.dim = dim
        self.sums = [self.add_variable(shape=(), initializer="zeros", dtype="float64", name=s)
                     for s in _SUMS]

    def update_state(self, y_true, y_pred, sample_weight=None):
        weight = validity_weight(y_pred, sample_weight)
        x = ops.cast(ops.convert_to_tensor(y_pred)[..., self.dim], "float64")
        y = ops.cast(ops.convert_to_tensor(y_true)[..., self.dim], "float64")
        w = ops.ones_like(x) if weight is None else broadcast_weight(weight, x)
        x, y = ops.where(w > 0, x, 0.0), ops.where(w > 0, y, 0.0)
        for total, value in zip(self.sums, (w, w * x, w * y, w * x * x, w * y * y, w * x * y)):
            total.assign_add(ops.sum(value))

    def result(self):
        n, sx, sy, sxx, syy, sxy = self.sums
        mean_x, mean_y = ops.divide_no_nan(sx, n), ops.divide_no_nan(sy, n)
        var_x = ops.divide_no_nan(sxx, n) - mean_x * mean_x
        var_y = ops.divide_no_nan(syy, n) - mean_y * mean_y
        cov = ops.divide_no_nan(sxy, n) - mean_x * mean_y
        value = ops.divide_no_nan(2 * cov, var_x + var_y + ops.square(mean_x - mean_y))
        return ops.cast(value, self.dtype)

    def get_config(self):
        return {**super().get_config(), "dim": self.dim}


@keras.saving.register_keras_serializable(package="fer_keras")
class MaskedBinaryAccuracy(keras.metrics.Metric):
    """Running AU accuracy over the entries whose label is not ``ignore`` (EmotioNet's 999).

    Keras' ``BinaryAccuracy`` counts unknown entries as errors; this metric skips them, so its
    result equals ``action_units(...)["accuracy"]`` on the same data (positive when
    ``y_pred >= threshold``, a label is positive when it is 1). ``sample_weight`` (B,) or (B, T),
    the frame mask, weights the entries (only ``weighted_metrics`` receive it; a Keras mask on
    ``y_pred`` is honoured too). With no known entry yet the result is 0, not NaN.
    """

    def __init__(self, threshold=0.5, ignore=AU_UNKNOWN, name="accuracy", dtype=None):
        super().__init__(name=name, dtype=dtype)
        self.threshold = threshold
        self.ignore = ignore
        self.correct = self.add_variable(shape=(), initializer="zeros", dtype="float64",
                                         name="correct")
        self.total = self.add_variable(shape=(), initializer="zeros", dtype="float64",
                                       name="total")

    def update_state(self, y_true, y_pred, sample_weight=None):
        weight = validity_weight(y_pred, sample_weight)
        y_true = ops.cast(ops.convert_to_tensor(y_true), "float64")
        y_pred = ops.cast(ops.convert_to_tensor(y_pred), "float64")
        w = ops.cast(ops.not_equal(y_true, self.ignore), "float64")
        if weight is not None:
            w = w * broadcast_weight(weight, y_true)
        positive = ops.greater_equal(y_pred, self.threshold)
        hit = ops.cast(ops.equal(ops.equal(y_true, 1.0), positive), "float64")
        self.correct.assign_add(ops.sum(w * hit))
        self.total.assign_add(ops.sum(w))

    def result(self):
        return ops.cast(ops.divide_no_nan(self.correct, self.total), self.dtype)

    def get_config(self):
        return {**super().get_config(), "threshold": self.threshold, "ignore": self.ignore}
