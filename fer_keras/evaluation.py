"""Evaluation engine: a trained run directory in; per-video predictions, metrics, confusion
matrices and a thesis-style report out.

``evaluate(run_dir)`` loads ``checkpoints/best.keras`` (or ``last.keras``; a damaged one is a
ValueError naming it and what to do, see ``rundir.check_model_file``), runs the split's
pipeline, predicts every sequence and aggregates the sequences of each video:

- ``mean``: the mean of the sequence softmax outputs, each weighted by its number of valid
  frames (the mask sum), so a short padded tail sequence counts for what it holds;
- ``vote``: the majority of the sequence argmaxes; a tie goes to the tied class with the higher
  (frame-weighted) mean probability.

A model whose output is per frame (B, L, C) is first averaged over the valid frames of each
sequence. The ``p_<Class>`` columns of ``predictions.csv`` are always the frame-weighted mean
probabilities (the distribution that ``fusion`` fuses); ``prediction`` is the aggregate's class.

Files written, into the run directory when evaluating its configured split and checkpoint
(``evaluation`` section of ``config.yaml``), otherwise into ``<run_dir>/eval-<split>/`` (another
split, configured checkpoint) or ``<run_dir>/eval-<split>-<checkpoint>/`` (another checkpoint),
so that an extra evaluation never overwrites the run's own::

    predictions.csv           (models with a ``category`` output) one row per video:
                              video_id,label,prediction,p_<Class>...  (label: class name, empty
                              for an unlabelled video); the format fusion.load_run reads
    metrics.json              metrics.classification on the labelled videos (accuracy null when
                              none is labelled), sequence_accuracy, n_videos, n_labelled,
                              n_sequences, split, checkpoint, aggregate, classes, experiment,
                              model, run_dir, reference (``exp.reproduces`` with ours and the
                              difference; null when the YAML names no thesis row); "va" (metrics.regression
                              per frame or sequence, and per video) and "au"
                              (metrics.action_units over known frame labels, at
                              evaluation.au_threshold; with ``val``, at 0.5 plus "tuned": at the
                              per-AU thresholds that maximise each AU's F1 on the validation
                              split) for those outputs, with "n_evaluated" (the sequences they
                              were scored over) and "emulated_batches" (null, or what
                              evaluation.emulate_batches made of the split: batch_size, batches,
                              n_items, repeats)
    confusion_counts.png      confusion matrix (rows: true class, columns: predicted), when some
                              video is labelled
    confusion_normalised.png  the same, each row divided by its count
    report.md                 the result as a thesis-style table row, the thesis reference,
                              per-class precision / recall / F1 and the confusion matrix
    va_predictions.csv        (models with a ``va`` output) per-video mean valence / arousal,
                              true and predicted
    va_per_video.csv          (``va`` output, labelled) per video: frames, and per dimension the
                              CCC, Pearson r and MSE within the video (metrics.per_video)
    va_frames/<track id>.txt  (``va`` output, prepared shards) Aff-Wild2's own prediction format,
                              one file per track: header ``valence,arousal``, one line per source
                              frame of the video (write_affwild2)

``metrics.json``'s ``frame`` (a per-frame category output on per-frame labels, thesis 003) holds
metrics.classification over the labelled frames, ``baselines`` (metrics.baselines) and ``video``
(per-video frame accuracy and macro F1, averaged over videos).

``metrics.json``'s ``va`` holds ``frame`` (all frames pooled, the Aff-Wild script's and thesis
001's numbers; ``sequence`` for a per-sequence output), ``video`` (the per-video means compared),
``per_video`` (within each video, averaged over videos), ``abaw`` (P = the mean of the pooled
valence and arousal CCC) and ``affwild2`` (what va_frames/ holds). With ``evaluation.repeat_frames``
a single-frame record is predicted as thesis 001 §6.7.1 did (``config.EvaluationConfig``).

TensorFlow, Keras and scikit-learn are imported on first use, so ``plot_confusion`` (used by
``experiments/notebooks/confusion_matrices.ipynb``) loads only NumPy and matplotlib.
"""
from __future__ import annotations

import csv
import json
import logging
import os
from pathlib import Path

import numpy as np

from fer_keras.durable import write_result
from fer_keras.reference import compare
from fer_keras.rundir import RunDir, checkpoint_todo, load_checkpoint

logger = logging.getLogger(__name__)

AGGREGATES = ("mean", "vote")
CONFUSION_COUNTS = "confusion_counts.png"
CONFUSION_NORMALISED = "confusion_normalised.png"
REPORT = "report.md"
VA_PREDICTIONS = "va_predictions.csv"
VA_PER_VIDEO = "va_per_video.csv"
VA_FRAMES = "va_frames"  # Aff-Wild2 prediction files, one <track id>.txt per track
# Reference metrics that are fractions in metrics.json; a thesis value above 1 is read as percent.


def _metrics():
    """fer_keras.metrics, imported on first use (it loads Keras and TensorFlow)."""
    from fer_keras import metrics
    return metrics


# --- aggregation (pure NumPy) -----------------------------------------------------------------

def sequence_scores(output, mask):
    """(N, C) per-sequence scores: a per-frame output (N, L, C) is averaged over the valid frames
    of its sequence (all frames when a sequence has none); an (N, C) output is returned as is."""
    output = np.asarray(output, np.float64)
    if output.ndim == 2:
        return output
    if output.ndim != 3:
        raise ValueError(f"expected a (N, C) or per-frame (N, L, C) output, got shape {output.shape}")
    mask = np.asarray(mask, np.float64).reshape(output.shape[:2])
    valid = mask.sum(axis=1, keepdims=True)
    mask = np.where(valid > 0, mask, 1.0)
    return (output * mask[..., None]).sum(axis=1) / mask.sum(axis=1, keepdims=True)


def aggregate(video_ids, probs, frames, method="mean"):
    """Per-video ``(ids, mean probabilities (V, C), predicted class (V,))`` from sequences.

    ``video_ids`` (N,) names the video of each sequence (videos keep their first-seen order),
    ``probs`` (N, C) are the sequence softmax outputs and ``frames`` (N,) their valid frames.
    The mean probabilities are weighted by ``frames`` (uniform for a video whose sequences all
    have 0). ``mean`` predicts their argmax; ``vote`` the most frequent sequence argmax, a tie
    broken by the higher mean probability (then by class order).
    """
    if method not in AGGREGATES:
        raise ValueError(f"aggregate must be one of {', '.join(AGGREGATES)}, got {method!r}")
    probs = np.asarray(probs, np.float64)
    frames = np.asarray(frames, np.float64).reshape(-1)
    ids = list(dict.fromkeys(video_ids))
    index = {v: i for i, v in enumerate(ids)}
    owner = np.array([index[v] for v in video_ids], dtype=int)
    n_videos, n_classes = len(ids), probs.shape[-1]
    total = np.bincount(owner, weights=frames, minlength=n_videos)
    weights = np.where(total[owner] > 0, frames, 1.0)
    mean = np.zeros((n_videos, n_classes))
    np.add.at(mean, owner, probs * weights[:, None])
    mean /= np.bincount(owner, weights=weights, minlength=n_videos)[:, None]
    if method == "mean":
        return ids, mean, mean.argmax(axis=-1)
    votes = np.zeros((n_videos, n_classes))
    np.add.at(votes, (owner, probs.argmax(axis=-1)), 1)
    tied = votes == votes.max(axis=-1, keepdims=True)
    return ids, mean, np.where(tied, mean, -np.inf).argmax(axis=-1)


# --- confusion matrices -------------------------------------------------------------------------

def confusion_from_predictions(path, classes):
    """Confusion matrix (rows: true, columns: predicted) of the labelled rows of a predictions.csv
    (e.g. a fused run's, whose metrics.json keeps none)."""
    index = {c: k for k, c in enumerate(classes)}
    matrix = np.zeros((len(classes), len(classes)), dtype=int)
    with open(path, newline="") as f:
        for row in csv.DictReader(f):
            if row["label"]:
                matrix[index[row["label"]], index[row["prediction"]]] += 1
    return matrix.tolist()


def summary_from_confusion(matrix, classes):
    """Accuracy, macro F1, per-class precision / recall / F1 / support from a confusion matrix,
    as ``metrics.classification`` computes them (an undefined precision or recall counts as 0)."""
    m = np.asarray(matrix, np.float64)
    tp, predicted, support = np.diag(m), m.sum(axis=0), m.sum(axis=1)
    precision = np.divide(tp, predicted, out=np.zeros_like(tp), where=predicted > 0)
    recall = np.divide(tp, support, out=np.zeros_like(tp), where=support > 0)
    total = precision + recall
    f1 = np.divide(2 * precision * recall, total, out=np.zeros_like(tp), where=total > 0)
    return {
        "accuracy": float(tp.sum() / m.sum()) if m.sum() else None,
        "macro_f1": float(f1.mean()),
        "per_class": {c: {"precision": float(precision[i]), "recall": float(recall[i]),
                          "f1": float(f1[i]), "support": int(support[i])} for i, c in enumerate(classes)},
        "confusion_matrix": np.asarray(matrix).astype(int).tolist(),
        "classes": list(classes),
    }


def row_normalise(matrix):
    """Each row divided by its sum; a row without samples stays 0."""
    m = np.asarray(matrix, np.float64)
    rows = m.sum(axis=1, keepdims=True)
    return np.divide(m, rows, out=np.zeros_like(m), where=rows > 0)


def plot_confusion(matrix, classes, path=None, normalise: bool = False, title=None):
    """Draw a confusion matrix (rows: true class, columns: predicted) with the class names on the
    axes and the number in each cell; ``normalise`` divides each row by its count. Saves a PNG at
    ``path`` when given and returns the matplotlib Figure (built without pyplot, so no global
    backend is touched: it renders with Agg into the file, and notebooks can display it)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    counts = np.asarray(matrix, np.float64)
    k = len(classes)
    if counts.shape != (k, k):
        raise ValueError(f"confusion matrix of shape {counts.shape} for {k} classes")
    values = row_normalise(counts) if normalise else counts
    side = max(4.0, 0.75 * k + 2.0)
    fig = Figure(figsize=(side + 1.0, side))
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    image = ax.imshow(values, cmap="Blues", vmin=0, vmax=1 if normalise else max(values.max(), 1))
    fig.colorbar(image, ax=ax, fraction=0.046, pad=0.04)
    ax.set_xticks(range(k), labels=list(classes), rotation=45, ha="right")
    ax.set_yticks(range(k), labels=list(classes))
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    ax.set_title(title or ("confusion matrix, row-normalised" if normalise else "confusion matrix, counts"))
    threshold = (1 if normalise else max(values.max(), 1)) / 2
    for i in range(k):
        for j in range(k):
            text = f"{values[i, j]:.2f}" if normalise else f"{int(round(values[i, j]))}"
            ax.text(j, i, text, ha="center", va="center", fontsize=9,
                    color="white" if values[i, j] > threshold else "black")
    fig.tight_layout()
    if path is not None:
        fig.savefig(os.fspath(path), dpi=100)
    return fig


# --- report -------------------------------------------------------------------------------------

def _pct(value):
    return "-" if value is None else f"{100 * value:.1f}"


def reference(exp, metrics):
    """``reference.compare`` of the experiment's ``reproduces`` row and ``metrics``."""
    import dataclasses

    return compare(dataclasses.asdict(exp.reproduces), metrics)


def _table(header, rows):
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)


def _settings(exp):
    """Key settings of a run, as the thesis tables describe a row."""
    t, p = exp.training, exp.data.pipeline
    seq_len = exp.model.options.get("seq_len", p.seq_len)
    lr = f"{t.optimizer.learning_rate:g}" + ("" if t.schedule.name == "constant" else f" {t.schedule.name}")
    epochs = ", ".join(str(s.epochs) for s in t.plan())
    return {"Seq Length": seq_len, "Batch": p.batch_size, "LR": lr, "Epochs": epochs,
            "Aggregate": exp.evaluation.aggregate}


def write_report(path, exp, metrics):
    """report.md: the thesis-style row, the thesis reference, per-class table, confusion matrix."""
    settings = _settings(exp)
    settings["Aggregate"] = metrics.get("aggregate", settings["Aggregate"])
    header = ["Experiment", "Model", *settings, "Accuracy", "Macro F1"]
    rows = [[exp.name, exp.model.name, *settings.values(), _pct(metrics.get("accuracy")),
             _pct(metrics.get("macro_f1"))]]
    ref = metrics.get("reference")
    blanks = [""] * (len(settings) + 1)
    if ref and not ref.get("columns"):
        where = " ".join(x for x in (f"Thesis {ref['thesis']}" if ref["thesis"] else "Thesis",
                                     ref["table"], ref["row"]) if x)
        value = "-" if ref["value"] is None else f"{ref['value']:g}"
        diff = "-" if ref["difference"] is None else f"{ref['difference']:+.1f}"
        metric_col = {"accuracy": -2, "macro_f1": -1}.get(ref["metric"])
        if metric_col is None:  # another metric: name it in the model column
            rows.append([where, ref["metric"], *blanks[1:], value, ""])
            rows.append(["Difference", ref["metric"], *blanks[1:], diff, ""])
        else:
            ref_row, diff_row = [where, *blanks, "", ""], ["Difference (ours - thesis)", *blanks, "", ""]
            ref_row[metric_col], diff_row[metric_col] = value, diff
            rows += [ref_row, diff_row]
    n = (f"{metrics['n_videos']} videos ({metrics['n_labelled']} labelled), "
         f"{metrics['n_sequences']} sequences")
    parts = [f"# Evaluation: {exp.name}", ""]
    if exp.description:
        parts += [exp.description, ""]
    parts += [f"Split `{metrics['split']}`, checkpoint `{metrics['checkpoint']}`, "
              f"aggregation `{metrics['aggregate']}`; {n}. Accuracy and F1 in percent, per video.", ""]
    from fer_keras import config as cfg

    note = cfg.preprocessing_note(exp)
    if note:
        parts += [f"Note: {note}.", ""]
    parts += ["## Result", "", _table(header, rows), ""]
    if ref and ref.get("columns"):
        where = " ".join(x for x in (f"Thesis {ref['thesis']}" if ref["thesis"] else "Thesis", ref["row"]) if x)
        parts += [f"## {where}", "", _table(["Table", "Metric", "Ours", "Thesis", "Difference (ours - thesis)"], [
            [c["table"], c["label"], _num(c["ours"]), "-" if c["value"] is None else f"{c['value']:g}",
             "-" if c["difference"] is None else f"{c['difference']:+.3f}"] for c in ref["columns"]]), ""]
    if metrics.get("per_class"):
        parts += ["## Per class", "", _table(
            ["Class", "Precision", "Recall", "F1", "Support"],
            [[c, _pct(v["precision"]), _pct(v["recall"]), _pct(v["f1"]), v["support"]]
             for c, v in metrics["per_class"].items()]), ""]
        classes = metrics["classes"]
        parts += ["## Confusion matrix", "", "Rows: true class; columns: predicted class.", "", _table(
            ["true \\ predicted", *classes],
            [[c, *row] for c, row in zip(classes, metrics["confusion_matrix"])]), ""]
        parts += [f"![counts]({CONFUSION_COUNTS}) ![row-normalised]({CONFUSION_NORMALISED})", ""]
    if metrics.get("va"):
        va, rows = metrics["va"], []
        for level, m in va.items():
            if isinstance(m, dict) and "pooled" in m:
                rows += [[level, d, _num(m[d]["ccc"]), _num(m[d]["pearson"]), _num(m[d]["mse"]), _num(m[d]["rmse"])]
                         for d in _metrics().VA_NAMES]
        if va.get("per_video"):
            m = va["per_video"]
            rows += [[f"per video (mean of {m['n_videos']})", d, _num(m[d]["ccc"]), _num(m[d]["pearson"]),
                      _num(m[d]["mse"]), "-"] for d in _metrics().VA_NAMES]
        parts += ["## Valence / arousal", "",
                  _table(["Level", "Dimension", "CCC", "Pearson", "MSE", "RMSE"], rows), ""]
        if va.get("abaw"):
            parts += [f"ABAW P (mean of the valence and arousal CCC over all {va['abaw']['n']} frames): "
                      f"{_num(va['abaw']['p'])}.", ""]
        if va.get("affwild2"):
            a = va["affwild2"]
            parts += [f"Per-frame predictions in Aff-Wild2's format: `{a['folder']}/` ({a['tracks']} tracks, "
                      f"{a['frames']} source frames, {a['filled']} of them without a prediction of their own, "
                      "given the nearest predicted frame's).", ""]
    if metrics.get("au"):
        au = metrics["au"]
        keys = ("accuracy", "partial_accuracy", "precision", "recall", "f1", "binarised_auc",
                "exact_match_accuracy", "mean_f1")
        rows = [["0.5" if au.get("tuned") else str(au.get("threshold", 0.5)), *(_num(au.get(k)) for k in keys)]]
        if au.get("tuned"):
            rows.append([f"per AU, on {au['tuned']['split']}", *(_num(au["tuned"].get(k)) for k in keys)])
        parts += ["## Action units", "", _table(
            ["Threshold", "Accuracy", "Partial accuracy", "Precision", "Recall", "F1 (micro)", "Binarised AUC",
             "Exact match", "Mean F1 (per AU)"], rows), ""]
    if metrics.get("emulated_batches"):
        e = metrics["emulated_batches"]
        parts += [f"AU and pooled valence/arousal numbers scored as TF-Slim's cycling evaluation: "
                  f"{e['batches']} batches of {e['batch_size']}, {metrics['n_evaluated']} sequences for the "
                  f"split's {e['n_items']}.", ""]
    Path(path).write_text("\n".join(parts))


def _num(value):
    return "-" if value is None else f"{value:.3f}"


# --- the engine ---------------------------------------------------------------------------------

def output_dir(run_dir, exp, split, checkpoint):
    """Where an evaluation writes: the run directory itself for the configured split and
    checkpoint, else ``eval-<split>`` (plus ``-<checkpoint>`` when that differs)."""
    run_dir = Path(run_dir)
    if split == exp.evaluation.split and checkpoint == exp.evaluation.checkpoint:
        return run_dir
    name = f"eval-{split}" + ("" if checkpoint == exp.evaluation.checkpoint else f"-{checkpoint}")
    return run_dir / name


def _load(run_dir):
    from fer_keras import config as cfg

    run = RunDir(run_dir)
    if not run.root.is_dir():
        raise FileNotFoundError(f"{run.root}: no such run directory")
    if not run.config.is_file():
        raise FileNotFoundError(f"{run.config}: missing; {run.root} is not a run directory written by training")
    exp = cfg.load(run.config)
    return run, exp


def _single_frames(sequence, mask):
    """Which sequences hold one frame of a single-frame record: a record's first sequence with one
    real step (its first sequence holds min(frames, L) real steps)."""
    mask = np.asarray(mask)
    return (np.asarray(sequence) == 0) & (mask.sum(axis=1) == 1) & (mask.shape[1] > 1)


def evaluation_data(exp):
    """The experiment's ``data`` as evaluation reads it: with the training split's pixel statistics
    when its preprocessing needs them (config.yaml has them from training), and with ``repeat``
    padding under ``evaluation.repeat_frames`` (the image on every step, not zeros)."""
    import dataclasses

    from fer_keras.data import pixel_stats

    data = pixel_stats.attach(exp.data)
    if exp.evaluation.repeat_frames:
        if data.format != "tfrecord":
            raise ValueError(f"evaluation.repeat_frames repeats a record's frame: it needs prepared shards, "
                             f"not the {data.format} features of {data.root}")
        data = dataclasses.replace(data, pipeline=dataclasses.replace(data.pipeline, padding="repeat"))
    return data


def _predict(model, ds, repeat_frames=False):
    """Per-sequence arrays: outputs by name, targets by name, mask, video ids, labels, and the
    source frame index of each step (None when the data has none).

    With ``repeat_frames`` a single-frame record's sequence (its frame repeated on every step by
    ``repeat`` padding) is fed with every step marked real, and its returned mask marks the last
    step only, which carries the frame's index: so the last step's output is its prediction
    (thesis 001 §6.7.1)."""
    by_name = isinstance(model.input, dict)
    names = list(model.input) if by_name else [t.name for t in model.inputs]
    out_names = list(model.output_names)
    outputs, targets = {k: [] for k in out_names}, {}
    masks, ids, labels, frame_index = [], [], [], []
    for x, y, meta in ds:
        missing = [k for k in names if k not in x]
        if missing:
            raise ValueError(f"the model takes input(s) {', '.join(missing)} that the pipeline does not "
                             f"give (it gives {', '.join(x)}); see data.pipeline.inputs")
        mask = x["mask"].numpy()
        index = meta["frame_index"].numpy() if "frame_index" in meta else None
        single = _single_frames(meta["sequence"].numpy(), mask) if repeat_frames else np.zeros(len(mask), bool)
        if single.any():
            x = {**x, "mask": np.where(single[:, None], np.float32(1), mask)}
            last = np.eye(mask.shape[1], dtype=mask.dtype)[-1]
            mask = np.where(single[:, None], last, mask)
            if index is not None:
                index = np.where(single[:, None], np.where(last > 0, index[:, :1], -1), index)
        # the loader yields more than the model takes (always the mask, maybe other inputs)
        inputs = {k: x[k] for k in names} if by_name else [x[k] for k in names]
        pred = model.predict_on_batch(inputs)
        if not isinstance(pred, dict):
            pred = dict(zip(out_names, pred if isinstance(pred, (list, tuple)) else [pred]))
        for k in out_names:
            outputs[k].append(np.asarray(pred[k]))
        for k, v in y.items():
            targets.setdefault(k, []).append(v.numpy())
        masks.append(mask)
        ids += [v.decode("utf-8") if isinstance(v, bytes) else str(v) for v in meta["video_id"].numpy()]
        labels.append(meta["label"].numpy())
        if index is not None:
            frame_index.append(index)
    if not ids:
        raise ValueError("the split has no sequence to evaluate")
    cat = lambda parts: np.concatenate(parts) if parts else None  # noqa: E731
    return ({k: cat(v) for k, v in outputs.items()}, {k: cat(v) for k, v in targets.items()},
            np.concatenate(masks).astype(np.float64), ids, np.concatenate(labels).astype(int), cat(frame_index))


def _write_predictions(path, ids, labels, pred, probs, classes):
    with open(path, "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["video_id", "label", "prediction", *(f"p_{c}" for c in classes)])
        for vid, label, k, p in zip(ids, labels, pred, probs):
            writer.writerow([vid, classes[label] if label >= 0 else "", classes[k], *(f"{v:.8g}" for v in p)])


def _video_labels(ids, seq_ids, seq_labels):
    first = {}
    for v, label in zip(seq_ids, seq_labels):
        first.setdefault(v, int(label))
    return np.array([first[v] for v in ids], dtype=int)


def _classification(outputs, mask, seq_ids, seq_labels, classes, aggregate_method):
    """metrics.json's classification part and the per-video rows of predictions.csv."""
    frames = mask.sum(axis=1)
    probs = sequence_scores(outputs["category"], mask)
    ids, mean, pred = aggregate(seq_ids, probs, frames, aggregate_method)
    labels = _video_labels(ids, seq_ids, seq_labels)
    known = labels >= 0
    if known.any():
        result = _metrics().classification(labels[known], pred[known], classes)
        seq_known = seq_labels >= 0
        result["sequence_accuracy"] = float(np.mean(probs[seq_known].argmax(-1) == seq_labels[seq_known]))
    else:
        result = {"accuracy": None, "balanced_accuracy": None, "macro_f1": None, "weighted_f1": None,
                  "per_class": {}, "confusion_matrix": None, "classes": list(classes),
                  "sequence_accuracy": None}
    return result, (ids, labels, pred, mean)


def _frame_classification(probs, onehot, mask, seq_ids, classes):
    """Per-frame category metrics over the labelled real frames (thesis 003: per-class recall, its
    "Total" accuracy, precision / recall / F1 with macro and weighted averages), the baselines
    of predictors that ignore the faces, and per video (``video``: the mean over videos of each
    video's frame accuracy and macro F1)."""
    labelled = (mask > 0) & (onehot.sum(-1) > 0)
    if not labelled.any():
        return None
    m = _metrics()
    truth, pred = onehot.argmax(-1), probs.argmax(-1)
    result = {**m.classification(truth[labelled], pred[labelled], classes), "n": int(labelled.sum()),
              "baselines": m.baselines(truth[labelled], classes)}
    owner = np.array(seq_ids)[:, None].repeat(mask.shape[1], axis=1)[labelled]
    per_video = [m.classification(truth[labelled][owner == v], pred[labelled][owner == v], classes)
                 for v in dict.fromkeys(owner)]
    result["video"] = {"videos": len(per_video),
                       "accuracy": float(np.mean([r["accuracy"] for r in per_video])),
                       "macro_f1": float(np.mean([r["macro_f1"] for r in per_video]))}
    return result


def _video_means(seq_ids, values, weights):
    """Frame-weighted per-video means of per-sequence values (N, D)."""
    ids = list(dict.fromkeys(seq_ids))
    index = {v: i for i, v in enumerate(ids)}
    owner = np.array([index[v] for v in seq_ids])
    weights = np.asarray(weights, np.float64)
    total = np.bincount(owner, weights=weights, minlength=len(ids))
    weights = np.where(total[owner] > 0, weights, 1.0)
    out = np.zeros((len(ids), values.shape[-1]))
    np.add.at(out, owner, values * weights[:, None])
    return ids, out / np.bincount(owner, weights=weights, minlength=len(ids))[:, None]


def _va(pred, true, mask, seq_ids, out_dir, indices=None):
    """Valence/arousal metrics per frame (or per sequence), per video and ABAW's P;
    va_predictions.csv, and with labels va_per_video.csv (the module docstring says which is which).
    A track of several segment records is one video: its sequences share its id. ``indices``
    (metrics.wraparound_indices) scores the pooled frame / sequence level and ABAW's P over those
    sequences, as TF-Slim's cycling evaluation did; the per-video numbers stay one exact pass."""
    frames = mask.sum(axis=1)
    seq_pred = sequence_scores(pred, mask)
    ids, video_pred = _video_means(seq_ids, seq_pred, frames)
    result, video_true = {}, None
    if true is not None:
        true = np.asarray(true, np.float64)
        seq_true = sequence_scores(true, mask)
        if np.asarray(pred).ndim == 3 and true.ndim == 3:
            level, units = "frame", (true, pred, mask)
        else:
            level, units = "sequence", (seq_true, seq_pred, None)
        scored = units if indices is None else tuple(None if u is None else np.asarray(u)[indices] for u in units)
        result[level] = _metrics().regression(*scored[:2], mask=scored[2])
        if level == "frame":
            result["abaw"] = {"p": _metrics().abaw_score(result["frame"]), "n": result["frame"]["n"]}
        result["per_video"], rows = _metrics().per_video(*units[:2], seq_ids, mask=units[2])
        _write_per_video(Path(out_dir) / VA_PER_VIDEO, rows)
        _, video_true = _video_means(seq_ids, seq_true, frames)
        result["video"] = _metrics().regression(video_true, video_pred)
    counts = dict.fromkeys(ids, 0.0)
    for v, n in zip(seq_ids, frames):
        counts[v] += n
    path = Path(out_dir) / VA_PREDICTIONS
    names = _metrics().VA_NAMES
    with open(path, "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["video_id", "frames", *names, *(f"{n}_pred" for n in names)])
        for i, v in enumerate(ids):
            truth = [f"{x:.6g}" for x in video_true[i]] if video_true is not None else [""] * len(names)
            writer.writerow([v, int(counts[v]), *truth, *(f"{x:.6g}" for x in video_pred[i])])
    return result, path


def _write_per_video(path, rows):
    """va_per_video.csv: per video its frames and, per dimension, CCC, Pearson r and MSE (empty
    where undefined)."""
    names = _metrics().VA_NAMES
    measures = ("ccc", "pearson", "mse")
    with open(path, "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["video_id", "frames", *(f"{n}_{m}" for n in names for m in measures)])
        for row in rows:
            writer.writerow([row["video_id"], row["n"], *("" if row[n][m] is None else f"{row[n][m]:.6g}"
                                                          for n in names for m in measures)])


def write_affwild2(folder, seq_ids, frame_index, pred, mask, frames_total=None) -> dict:
    """Per-frame valence/arousal in Aff-Wild2's own format, which any ABAW evaluation script reads:
    one ``<track id>.txt`` per track in ``folder``, header ``valence,arousal``, then one line per
    source frame of the video (``frames_total[track]``, the manifest's frames_total; without it,
    up to the last predicted frame).

    ``seq_ids`` (N,) names each sequence's track, ``frame_index`` (N, L) each step's source frame
    (-1 on padding), ``pred`` (N, L, 2) or (N, 2) (a sequence's prediction on each of its frames)
    and ``mask`` (N, L) the real steps. A track's segment records merge by frame index (a frame
    predicted twice gets the mean). A source frame with no prediction (no face found, an ambiguous
    face, an unannotated frame, all dropped at preparation) gets the prediction of the nearest
    predicted frame (the earlier on a tie): ``filled`` counts them. Returns ``folder`` (its name),
    ``tracks``, ``frames`` (lines written), ``predicted`` and ``filled``."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    pred = np.asarray(pred, np.float64)
    index = np.asarray(frame_index)
    if pred.ndim == 2:
        pred = np.broadcast_to(pred[:, None, :], (*index.shape, pred.shape[-1]))
    valid = (np.asarray(mask) > 0) & (index >= 0)
    rows = {}
    for i, track in enumerate(seq_ids):
        rows.setdefault(track, []).append(i)
    summary = {"folder": folder.name, "tracks": 0, "frames": 0, "predicted": 0, "filled": 0}
    for track, mine in rows.items():
        keep = valid[mine]
        if not keep.any():
            continue
        frames, inverse = np.unique(index[mine][keep], return_inverse=True)
        values = np.zeros((len(frames), pred.shape[-1]))
        np.add.at(values, inverse, pred[mine][keep])
        values /= np.bincount(inverse, minlength=len(frames))[:, None]
        total = int((frames_total or {}).get(track) or 0)
        if frames[-1] >= total:
            if total:
                logger.warning("%s: predicted frame %d is beyond the %d frames the manifest records for it",
                               track, frames[-1], total)
            total = int(frames[-1]) + 1
        every = np.arange(total)
        right = np.minimum(np.searchsorted(frames, every), len(frames) - 1)
        left = np.maximum(right - 1, 0)
        nearest = np.where(np.abs(every - frames[left]) <= np.abs(frames[right] - every), left, right)
        lines = "".join(f"{v:.6f},{a:.6f}\n" for v, a in values[nearest])
        (folder / f"{track}.txt").write_text("valence,arousal\n" + lines)
        summary["tracks"] += 1
        summary["frames"] += total
        summary["predicted"] += len(frames)
        summary["filled"] += total - len(frames)
    return summary


def _au_entries(probs, true, manifest_labels):
    """``(labels (M, A), probs (M, A), names)``: every (frame, AU) entry of a split; an (N, A)
    output is compared with each frame's labels of its sequence. ``names``: the manifest's
    ``au_names`` (None when it has none, or not one per AU)."""
    true = np.asarray(true)
    probs = np.asarray(probs, np.float64)
    if probs.ndim == 2 and true.ndim == 3:
        probs = np.broadcast_to(probs[:, None, :], true.shape)
    names = manifest_labels.get("au_names") if isinstance(manifest_labels, dict) else None
    if names is not None and len(names) != true.shape[-1]:
        names = None
    return true.reshape(-1, true.shape[-1]), probs.reshape(-1, true.shape[-1]), names


def _au(probs, true, mask, manifest_labels, threshold=0.5, indices=None, tuned=None):
    """AU metrics over every known (frame, AU) entry at ``threshold`` (metrics.action_units).

    ``indices`` (the sequences in the order scored, metrics.wraparound_indices) emulates
    TF-Slim's cycling evaluation; ``tuned`` (``(thresholds (A,), search, split)`` from
    :func:`val_thresholds`) adds ``tuned``: the same measures at those per-AU thresholds, with
    ``thresholds`` per AU, ``search`` (each AU's F1 on ``split``) and ``split``."""
    if true is None:
        return None
    if indices is not None:
        probs, true = np.asarray(probs)[indices], np.asarray(true)[indices]
    labels, scores, names = _au_entries(probs, true, manifest_labels)
    m = _metrics()
    result = m.action_units(labels, scores, threshold=threshold, au_names=names)
    if tuned is not None:
        thresholds, search, split = tuned
        names = list(result["per_au"])
        result["tuned"] = {**m.action_units(labels, scores, threshold=thresholds, au_names=names),
                           "thresholds": dict(zip(names, map(float, thresholds))),
                           "search": dict(zip(names, search.values())), "split": split}
    return result


def val_thresholds(model, exp, data, manifest_labels, per_frame=False):
    """``(thresholds (A,), search, split)``: per AU the threshold maximising its F1 on the
    validation split (``data.val_split``, else ``val``), predicted in one exact pass
    (metrics.best_f1_thresholds: over the distinct predicted probabilities). A dataset without
    that split, or without AU labels in it, is a ValueError naming the split and the fix."""
    from fer_keras.data import loader

    name = exp.data.val_split or "val"
    fix = ("prepare the dataset with --val-fraction (a share of the training split held out as 'val'), "
           "or set evaluation.au_threshold to a number")
    try:
        videos = loader.selection(data, name) if data.format == "tfrecord" else None
        ds = loader.split(data, name, training=False, with_meta=True, per_frame_category=per_frame)
    except (ValueError, FileNotFoundError) as err:
        raise ValueError(f"evaluation.au_threshold 'val' picks each AU's threshold on the validation split "
                         f"{name!r}, which {data.root} does not give ({err}); {fix}") from None
    if videos is not None and not videos:
        raise ValueError(f"evaluation.au_threshold 'val': split {name!r} of {data.root} holds no usable record; {fix}")
    outputs, targets, *_ = _predict(model, ds, exp.evaluation.repeat_frames)
    if "au" not in outputs or targets.get("au") is None:
        raise ValueError(f"evaluation.au_threshold 'val': split {name!r} of {data.root} gives no AU labels "
                         f"for the model's au output to be tuned on; {fix}")
    labels, scores, names = _au_entries(outputs["au"], targets["au"], manifest_labels)
    thresholds, search = _metrics().best_f1_thresholds(labels, scores, au_names=names)
    return thresholds, search, name


def on_data(exp, on):
    """The run's experiment ``exp`` evaluated as experiment ``on`` says (``protocol: evaluate``):
    ``on``'s name, reference, evaluation and data source (root, format, splits), with the run's
    model, training and pipeline, so the other dataset's faces get the preprocessing (mode,
    training-split pixel statistics, size, sequence length) the weights were trained with."""
    import dataclasses

    data = dataclasses.replace(on.data, pipeline=exp.data.pipeline)
    return dataclasses.replace(on, data=data, model=exp.model, training=exp.training)


def evaluate(run_dir, *, split=None, checkpoint=None, aggregate_method=None, out_dir=None, extra=None,
             on=None) -> dict:
    """Evaluate a trained run directory (see the module docstring for what is written where).

    ``split``, ``checkpoint`` (best | last) and ``aggregate_method`` (mean | vote) default to the
    run's ``evaluation`` section; ``out_dir`` overrides the output directory. ``extra(paths)``
    writes the caller's own files from those written (e.g. the CV's errors.csv from predictions)
    and returns theirs, before metrics.json, which is written last: a rerun that finds it skips
    the evaluation. ``on`` (an experiment) evaluates the run on its data instead (:func:`on_data`),
    into ``out_dir`` (required). Returns the metrics written to metrics.json plus ``out_dir`` and
    ``paths`` (name -> file written).
    """
    import fer_keras.models  # noqa: F401  registers the custom layers before loading
    from fer_keras.data import loader, manifest
    from fer_keras.fusion import METRICS, PREDICTIONS

    run, exp = _load(run_dir)
    if on is not None:
        if out_dir is None:
            raise ValueError(f"evaluating {run_dir} on {on.name}'s data needs an output directory")
        exp = on_data(exp, on)
    split = split or exp.evaluation.split
    checkpoint = checkpoint or exp.evaluation.checkpoint
    aggregate_method = aggregate_method or exp.evaluation.aggregate
    if checkpoint not in ("best", "last"):
        raise ValueError(f"checkpoint must be 'best' or 'last', got {checkpoint!r}")
    if aggregate_method not in AGGREGATES:
        raise ValueError(f"aggregate must be one of {', '.join(AGGREGATES)}, got {aggregate_method!r}")
    path = run.best if checkpoint == "best" else run.last
    if not path.is_file():
        raise FileNotFoundError(f"{path}: missing; training must run first "
                                f"(evaluation reads checkpoints/{path.name})")
    # a damaged checkpoint is one line naming it (DamagedFile, a ValueError), before anything is written
    model = load_checkpoint(path, checkpoint_todo(run, checkpoint, len(exp.training.plan())))
    out = Path(out_dir) if out_dir is not None else output_dir(run.root, exp, split, checkpoint)
    out.mkdir(parents=True, exist_ok=True)

    data = evaluation_data(exp)
    classes = loader.classes(data)
    per_frame = dict(zip(model.output_names, model.outputs)).get("category")
    per_frame = per_frame is not None and len(per_frame.shape) == 3
    au_labels = ({} if "au" not in model.output_names or exp.data.format != "tfrecord"
                 else manifest.read(exp.data.root).get("labels", {}))
    tuned = None
    if exp.evaluation.au_threshold == "val" and "au" in model.output_names:  # first: a missing split fails fast
        tuned = val_thresholds(model, exp, data, au_labels, per_frame)
        if tuned[2] == split:
            logger.warning("the AU thresholds are tuned on split %s, the split evaluated: au.tuned is optimistic",
                           split)
    ds = loader.split(data, split, training=False, with_meta=True, per_frame_category=per_frame)
    outputs, targets, mask, seq_ids, seq_labels, frame_index = _predict(model, ds, exp.evaluation.repeat_frames)
    logger.info("evaluated %d sequences of split %s with %s", len(seq_ids), split, path)

    paths = {}
    metrics = {"accuracy": None, "classes": list(classes)}
    rows = None
    if "category" in outputs:
        result, rows = _classification(outputs, mask, seq_ids, seq_labels, classes, aggregate_method)
        metrics.update(result)
    if "category" in outputs and outputs["category"].ndim == 3 and targets.get("category", np.zeros(0)).ndim == 3:
        metrics["frame"] = _frame_classification(outputs["category"], targets["category"], mask, seq_ids, classes)
    batch = exp.evaluation.emulate_batches
    indices = None if batch is None else _metrics().wraparound_indices(len(seq_ids), batch)
    if indices is not None and "au" not in outputs and "va" not in outputs:
        logger.warning("evaluation.emulate_batches applies to au and va outputs only; %s has neither",
                       exp.model.name)
    if "va" in outputs:
        metrics["va"], paths["va_predictions"] = _va(outputs["va"], targets.get("va"), mask, seq_ids, out, indices)
        if metrics["va"].get("per_video"):
            paths["va_per_video"] = out / VA_PER_VIDEO
        if frame_index is not None:
            frames_total = ({v["id"]: v.get("frames_total") for v in loader.selection(data, split)}
                            if data.format == "tfrecord" else None)  # feature files keep no source lengths
            paths["va_frames"] = out / VA_FRAMES
            metrics["va"]["affwild2"] = write_affwild2(paths["va_frames"], seq_ids, frame_index, outputs["va"],
                                                       mask, frames_total)
    if "au" in outputs:
        threshold = 0.5 if tuned is not None else exp.evaluation.au_threshold
        metrics["au"] = _au(outputs["au"], targets.get("au"), mask, au_labels, threshold, indices, tuned)
    if "au" in outputs or "va" in outputs:
        metrics["n_evaluated"] = len(seq_ids) if indices is None else len(indices)
        metrics["emulated_batches"] = None if indices is None else {
            "batch_size": batch, "batches": len(indices) // batch, "n_items": len(seq_ids),
            "repeats": len(indices) - len(seq_ids)}
    videos = list(dict.fromkeys(seq_ids))
    metrics.update({
        "n_videos": len(videos),
        "n_labelled": int((_video_labels(videos, seq_ids, seq_labels) >= 0).sum()),
        "n_sequences": len(seq_ids),
        "split": split, "checkpoint": checkpoint, "aggregate": aggregate_method,
        "experiment": exp.name, "model": exp.model.name, "run_dir": str(run.root),
    })
    metrics["reference"] = reference(exp, metrics)

    if rows is not None:
        paths["predictions"] = out / PREDICTIONS
        _write_predictions(paths["predictions"], *rows, classes)
        if metrics["confusion_matrix"] is not None:
            paths["confusion_counts"] = out / CONFUSION_COUNTS
            paths["confusion_normalised"] = out / CONFUSION_NORMALISED
            plot_confusion(metrics["confusion_matrix"], classes, paths["confusion_counts"], normalise=False,
                           title=f"{exp.name} ({split}), counts")
            plot_confusion(metrics["confusion_matrix"], classes, paths["confusion_normalised"], normalise=True,
                           title=f"{exp.name} ({split}), row-normalised")
    paths["report"] = out / REPORT
    write_report(paths["report"], exp, metrics)
    if extra:
        paths.update(extra(paths))
    paths["metrics"] = out / METRICS
    write_result(paths["metrics"], json.dumps(metrics, indent=2))
    return {**metrics, "out_dir": str(out), "paths": {k: str(v) for k, v in paths.items()}}
