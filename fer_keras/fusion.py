"""Late (decision-level) fusion of saved runs: thesis 000 §3.6 methods 1-5 and thesis 002 §3.6.

Inputs are run directories written by the evaluation engine: ``predictions.csv``
(``video_id,label,prediction,p_<class>...``, per-video softmax averaged over the video's
sequences) and ``metrics.json`` (``accuracy``, ``classes``). Runs are aligned on video id.

Thesis 000 fused "logits"; a run keeps only probabilities, so logits are recovered as
log-probabilities. A model's log-softmax differs from its logits by a per-video constant, so a
weighted sum over models of log-probabilities differs from the same sum of logits by a
constant over classes and has the same argmax (methods 2 and 3). Methods 4 and 5 multiply
each class by its own weight, which does not commute with that constant: raw logits carry an
arbitrary per-video offset, so the toolkit fixes one, anchoring every model's logits at 0 for
its least likely class (``log p - min log p``). The scores are then non-negative, so a larger
class weight raises a class, as intended, and ``rescale`` only has to divide by the maximum.
With several sequences per video the engine averaged softmax outputs, so these are the logits
of the averaged distribution, not the mean of the sequence logits.
"""
from __future__ import annotations

import csv
import inspect
import json
import logging
import math
import os
import re
import textwrap
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
from sklearn.linear_model import LinearRegression
from sklearn.metrics import f1_score
from sklearn.model_selection import StratifiedKFold

from fer_keras.durable import write_result
from fer_keras.reference import compare

logger = logging.getLogger(__name__)

PREDICTIONS = "predictions.csv"
METRICS = "metrics.json"
# Probabilities are clipped here before the log: a CSV can round a tiny softmax output to 0.
EPS = 1e-12


@dataclass(frozen=True)
class RunPredictions:
    """One run's per-video outputs. ``labels`` holds class indices, -1 for an unlabelled video,
    and is None when no video is labelled; ``accuracy`` is None when metrics.json has null."""
    name: str
    classes: tuple[str, ...]
    video_ids: tuple[str, ...]
    labels: np.ndarray | None
    probs: np.ndarray
    accuracy: float | None
    run_dir: str


def load_run(run_dir) -> RunPredictions:
    """Read a run directory, with errors that name the file at fault."""
    run_dir = os.fspath(run_dir)
    metrics_path = os.path.join(run_dir, METRICS)
    preds_path = os.path.join(run_dir, PREDICTIONS)
    for path in (metrics_path, preds_path):
        if not os.path.isfile(path):
            raise FileNotFoundError(f"{path}: missing; a run directory needs {PREDICTIONS} and {METRICS}")
    with open(metrics_path) as f:
        try:
            metrics = json.load(f)
        except json.JSONDecodeError as e:
            raise ValueError(f"{metrics_path}: not valid JSON ({e})") from None
    if not isinstance(metrics, dict) or "accuracy" not in metrics or "classes" not in metrics:
        raise ValueError(f"{metrics_path}: needs 'accuracy' and 'classes'")
    classes = metrics["classes"]
    if (not isinstance(classes, list) or not classes or len(set(classes)) != len(classes)
            or not all(isinstance(c, str) and c for c in classes)):
        raise ValueError(f"{metrics_path}: 'classes' must be a non-empty list of distinct names")
    accuracy = metrics["accuracy"]
    if accuracy is not None and (isinstance(accuracy, bool) or not isinstance(accuracy, (int, float))):
        raise ValueError(f"{metrics_path}: 'accuracy' must be a number or null, got {accuracy!r}")

    index = {c: k for k, c in enumerate(classes)}
    with open(preds_path, newline="") as f:
        rows = list(csv.reader(f))
    if not rows:
        raise ValueError(f"{preds_path}: empty, expected a header")
    header = rows[0]
    prob_cols = [f"p_{c}" for c in classes]
    missing = [c for c in ["video_id", "label", *prob_cols] if c not in header]
    if missing:
        raise ValueError(f"{preds_path}: missing columns {missing}")
    extra = [c for c in header if c.startswith("p_") and c not in prob_cols]
    if extra:
        raise ValueError(f"{preds_path}: columns {extra} are not classes of {metrics_path} {classes}")
    id_col, label_col = header.index("video_id"), header.index("label")
    cols = [header.index(c) for c in prob_cols]

    video_ids, labels, probs = [], [], []
    for line, row in enumerate(rows[1:], start=2):
        if len(row) != len(header):
            raise ValueError(f"{preds_path}:{line}: {len(row)} fields, header has {len(header)}")
        label = row[label_col]
        if label and label not in index:
            raise ValueError(f"{preds_path}:{line}: label {label!r} is not one of {classes}")
        try:
            p = [float(row[c]) for c in cols]
        except ValueError:
            raise ValueError(f"{preds_path}:{line}: probabilities must be numbers") from None
        if not all(math.isfinite(v) and v >= 0 for v in p) or sum(p) <= 0:
            raise ValueError(f"{preds_path}:{line}: probabilities must be finite, non-negative, not all 0")
        video_ids.append(row[id_col])
        labels.append(index[label] if label else -1)
        probs.append(p)
    if len(set(video_ids)) != len(video_ids):
        raise ValueError(f"{preds_path}: duplicate video ids")
    labels = np.array(labels, dtype=int)
    return RunPredictions(
        name=os.path.basename(os.path.normpath(run_dir)), classes=tuple(classes),
        video_ids=tuple(video_ids), labels=labels if (labels >= 0).any() else None,
        probs=np.array(probs, dtype=float).reshape(len(video_ids), len(classes)),
        accuracy=None if accuracy is None else float(accuracy), run_dir=run_dir)


def align(runs: Sequence[RunPredictions]) -> tuple[tuple[str, ...], np.ndarray | None, np.ndarray]:
    """(video ids, labels, probs (M, N, K)) on the videos every run has, in the first run's order.

    Runs are fused video by video, so a video missing from any run cannot be fused and is dropped
    (and logged). A label is taken from whichever run has it; runs that disagree are an error.
    """
    if not runs:
        raise ValueError("fusion needs at least one run")
    first = runs[0]
    for run in runs[1:]:
        if run.classes != first.classes:
            raise ValueError(
                f"class orders disagree: {os.path.join(first.run_dir, METRICS)} has {list(first.classes)}, "
                f"{os.path.join(run.run_dir, METRICS)} has {list(run.classes)}")
    common = set(first.video_ids).intersection(*(r.video_ids for r in runs[1:]))
    ids = tuple(v for v in first.video_ids if v in common)
    if not ids:
        raise ValueError(f"the runs {[r.name for r in runs]} share no video id")
    for run in runs:
        dropped = len(run.video_ids) - len(ids)
        if dropped:
            logger.warning("fusion: dropped %d of %d videos of run %s (not in every run)",
                        dropped, len(run.video_ids), run.name)

    probs, labels = [], np.full(len(ids), -1)
    for run in runs:
        pos = {v: i for i, v in enumerate(run.video_ids)}
        rows = [pos[v] for v in ids]
        probs.append(run.probs[rows])
        if run.labels is None:
            continue
        theirs = run.labels[rows]
        clash = (labels >= 0) & (theirs >= 0) & (labels != theirs)
        if clash.any():
            raise ValueError(f"run {run.name} labels video {ids[int(np.argmax(clash))]!r} "
                             f"differently from an earlier run")
        labels = np.where(labels >= 0, labels, theirs)
    return ids, (labels if (labels >= 0).any() else None), np.stack(probs)


def _weights(accuracies, n_models) -> np.ndarray:
    """Model accuracies as fusion weights; a run without one (null) needs ``accuracies=``."""
    if any(a is None for a in accuracies):
        raise ValueError("a run has no accuracy (null in metrics.json, e.g. an unlabelled test run); "
                         "pass accuracies=[...] (thesis 000 weights by validation accuracy)")
    w = np.asarray(accuracies, dtype=float)
    if w.shape != (n_models,) or not np.isfinite(w).all() or (w < 0).any() or w.sum() <= 0:
        raise ValueError(f"accuracies must be {n_models} non-negative numbers, not all 0; got {list(accuracies)}")
    return w


def _logits(probs: np.ndarray, rescale: bool = False) -> np.ndarray:
    """Logits recovered from probabilities, anchored at 0 for each model's least likely class
    (see the module docstring); ``rescale`` maps them to [0, 1] per model and video, a flat
    output becoming all 0."""
    z = np.log(np.clip(probs, EPS, None))
    z = z - z.min(axis=-1, keepdims=True)
    if rescale:
        top = z.max(axis=-1, keepdims=True)
        z = np.divide(z, top, out=np.zeros_like(z), where=top > 0)
    return z


def class_weights(class_counts) -> np.ndarray:
    """Inverse-frequency class weights n / (K * n_k), normalised so a balanced set weighs every class 1
    (scikit-learn's "balanced"); thesis 000 method 4 multiplies by their square root."""
    counts = np.asarray(class_counts, dtype=float)
    if counts.ndim != 1 or not np.isfinite(counts).all() or (counts <= 0).any():
        raise ValueError(f"class_counts must be positive counts, one per class; got {list(class_counts)}")
    return counts.sum() / (len(counts) * counts)


def _t000_1(probs, labels, *, accuracies):
    """Method 1: each model votes for its argmax class with its accuracy as weight; ties go to the
    class listed first."""
    votes = np.eye(probs.shape[-1])[probs.argmax(axis=-1)]
    return np.einsum("m,mnk->nk", _weights(accuracies, len(probs)), votes)


def _t000_2(probs, labels, *, accuracies, rescale=False):
    """Method 2: logits weighted by model accuracy, summed (thesis 000's best ensemble, 53.0% val)."""
    return np.einsum("m,mnk->nk", _weights(accuracies, len(probs)), _logits(probs, rescale))


def _t000_3(probs, labels, *, rescale=False):
    """Method 3, "majority voting for logits (i.e. equal model weighting)": the thesis's own gloss
    makes it method 2 with every model weighted 1, i.e. the plain sum of logits, not a count of
    argmax votes."""
    return _logits(probs, rescale).sum(axis=0)


def _t000_4(probs, labels, *, accuracies, class_counts, rescale=False):
    """Method 4: method 2 with each class multiplied by sqrt(class weight), class weights from the
    training label counts (``class_weights``), to lift rare classes."""
    return np.sqrt(class_weights(class_counts)) * _t000_2(probs, labels, accuracies=accuracies, rescale=rescale)


def _t000_5(probs, labels, *, n_splits=5, seed=0):
    """Method 5: linear regression learning model and class weights, scored out of fold.

    One least-squares regression per class k maps the M models' class-k logits to the 0/1
    indicator of label k; its coefficients are per-model weights specific to class k (a model
    weight times a class weight, unconstrained) and its intercept a class bias. Labelled videos
    are scored by the fit on the other folds of a stratified, shuffled ``n_splits``-fold split;
    unlabelled ones by a fit on all labelled videos. The thesis found this the worst method.
    """
    if labels is None or (labels >= 0).sum() < n_splits:
        raise ValueError(f"method t000_5 needs at least n_splits={n_splits} labelled videos")
    z = _logits(probs)
    scores = np.zeros(z.shape[1:])
    labelled, unlabelled = np.flatnonzero(labels >= 0), np.flatnonzero(labels < 0)

    def fit_predict(train, test):
        for k in range(z.shape[-1]):
            reg = LinearRegression().fit(z[:, train, k].T, (labels[train] == k).astype(float))
            scores[test, k] = reg.predict(z[:, test, k].T)

    folds = StratifiedKFold(n_splits=n_splits, shuffle=True, random_state=seed)
    for train, test in folds.split(labelled, labels[labelled]):
        fit_predict(labelled[train], labelled[test])
    if unlabelled.size:
        fit_predict(labelled, unlabelled)
    return scores


def _average(probs, labels):
    """Thesis 002 (3.1): mean of the models' softmax scores."""
    return probs.mean(axis=0)


def _weighted_average(probs, labels, *, accuracies):
    """Thesis 002 (3.2): sum of W_i f(x_i) divided by n, as written (not by the sum of W_i: the
    argmax is the same), W_i the model's accuracy."""
    return np.einsum("m,mnk->nk", _weights(accuracies, len(probs)), probs) / len(probs)


def _max(probs, labels):
    """Thesis 002 (3.3): element-wise max over models of the softmax scores."""
    return probs.max(axis=0)


METHODS = {
    "t000_1": _t000_1, "t000_2": _t000_2, "t000_3": _t000_3, "t000_4": _t000_4, "t000_5": _t000_5,
    "average": _average, "weighted_average": _weighted_average, "max": _max,
}
# Scores of these methods live on a logit scale; the others are (weighted) probabilities or votes.
LOGIT_SCALE = {"t000_2", "t000_3", "t000_4", "t000_5"}


def _method(method):
    if method not in METHODS:
        raise ValueError(f"unknown fusion method {method!r}; known: {sorted(METHODS)}")
    return METHODS[method]


def _resolve(method, runs, options) -> dict:
    """Check the options against the method's parameters and fill in the defaults that come from
    the runs: model accuracies from metrics.json, class counts put in class order."""
    params = list(inspect.signature(_method(method)).parameters.values())[2:]
    allowed = {p.name for p in params}
    unknown = sorted(set(options) - allowed)
    if unknown:
        raise ValueError(f"fusion method {method!r} takes options {sorted(allowed)}; got unknown {unknown}")
    missing = [p.name for p in params if p.default is inspect.Parameter.empty
               and p.name not in options and p.name != "accuracies"]
    if missing:
        raise ValueError(f"fusion method {method!r} needs {missing}")
    options = dict(options)
    if "accuracies" in allowed:
        options["accuracies"] = [None if a is None else float(a)
                                 for a in options.get("accuracies", [r.accuracy for r in runs])]
    if "class_counts" in options:
        counts, classes = options["class_counts"], runs[0].classes
        if isinstance(counts, Mapping):
            if set(counts) != set(classes):
                raise ValueError(f"class_counts names {sorted(counts)} do not match the classes {list(classes)}")
            counts = [counts[c] for c in classes]
        if len(counts) != len(classes):
            raise ValueError(f"class_counts has {len(counts)} entries for {len(classes)} classes {list(classes)}")
        options["class_counts"] = [float(c) for c in counts]
    return options


def _fuse(runs, method, options):
    """(video ids, labels, scores, resolved options) of one fusion."""
    ids, labels, probs = align(runs)
    options = _resolve(method, runs, options)
    return ids, labels, METHODS[method](probs, labels, **options), options


def fuse(runs: Sequence[RunPredictions], method: str, **options) -> tuple[np.ndarray, np.ndarray]:
    """(predicted class index (N,), fused scores (N, K)) on the videos every run has (see ``align``).

    Options: ``accuracies`` (weighted methods; default each run's metrics.json accuracy),
    ``rescale`` (t000_2/3/4), ``class_counts`` (t000_4: training label counts, a sequence in class
    order or a mapping by class name), ``n_splits`` and ``seed`` (t000_5).
    """
    _, _, scores, _ = _fuse(runs, method, options)
    return scores.argmax(axis=-1), scores


def _as_distribution(method, scores):
    """Scores as per-video distributions with the same argmax, so the output keeps the meaning of
    p_ columns: softmax of logit-scale scores, division by the row sum for the others."""
    if method in LOGIT_SCALE:
        e = np.exp(scores - scores.max(axis=-1, keepdims=True))
        return e / e.sum(axis=-1, keepdims=True)
    return scores / scores.sum(axis=-1, keepdims=True)


def fuse_to_dir(run_dirs, method: str, out_dir, *, reproduces=None, **options) -> dict:
    """Fuse run directories into ``out_dir`` (created) as a run of its own: ``predictions.csv`` in
    the same format and ``metrics.json`` (with ``reference``, the thesis row ``reproduces`` beside
    our accuracy, as evaluation writes it). Returns the metrics. Nothing is written elsewhere, and an
    input run directory is refused as ``out_dir`` so its files cannot be overwritten. Macro F1
    averages over all classes (F1 0 for one absent from labels and predictions), as
    ``metrics.classification`` does, so the two stay comparable."""
    _method(method)
    out_dir = os.fspath(out_dir)
    run_dirs = [os.fspath(d) for d in run_dirs]
    if any(os.path.realpath(out_dir) == os.path.realpath(d) for d in run_dirs):
        raise ValueError(f"{out_dir} is one of the input runs; choose another output directory")
    runs = [load_run(d) for d in run_dirs]
    ids, labels, scores, resolved = _fuse(runs, method, options)
    pred = scores.argmax(axis=-1)
    dist = _as_distribution(method, scores)
    classes = runs[0].classes

    os.makedirs(out_dir, exist_ok=True)
    with open(os.path.join(out_dir, PREDICTIONS), "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["video_id", "label", "prediction", *(f"p_{c}" for c in classes)])
        for i, vid in enumerate(ids):
            label = classes[labels[i]] if labels is not None and labels[i] >= 0 else ""
            writer.writerow([vid, label, classes[pred[i]], *(f"{p:.8g}" for p in dist[i])])

    known = np.flatnonzero(labels >= 0) if labels is not None else np.array([], dtype=int)
    metrics = {
        "accuracy": float(np.mean(pred[known] == labels[known])) if known.size else None,
        "macro_f1": float(f1_score(labels[known], pred[known], labels=np.arange(len(classes)),
                                   average="macro", zero_division=0)) if known.size else None,
        "classes": list(classes),
        "n_videos": len(ids),
        "n_labelled": int(known.size),
        "method": method,
        "options": resolved,
        "p_columns": "softmax of the fused scores" if method in LOGIT_SCALE
        else "fused scores divided by their per-video sum",
        "inputs": [{"run_dir": r.run_dir, "name": r.name, "accuracy": r.accuracy,
                    "n_videos": len(r.video_ids)} for r in runs],
    }
    metrics["reference"] = compare(reproduces, metrics)
    write_result(os.path.join(out_dir, METRICS), json.dumps(metrics, indent=2))
    return metrics


FILE_KEYS = {"name", "description", "reproduces", "method", "runs", "options"}


def training_class_counts(run_dir) -> list[int]:
    """Training label counts in class order, from the manifest of a run's config.yaml (t000_4)."""
    import yaml

    from fer_keras.data import manifest

    path = os.path.join(run_dir, "config.yaml")
    if not os.path.isfile(path):
        raise FileNotFoundError(f"{path}: missing; pass --class-counts for t000_4")
    with open(path) as f:
        data = (yaml.safe_load(f) or {}).get("data") or {}
    if data.get("format", "tfrecord") != "tfrecord":
        raise ValueError(f"{run_dir}: cannot count training labels of an {data['format']} dataset; "
                         "pass --class-counts")
    info = manifest.read(data.get("root", "data/afew_prepared"))
    train = data.get("train_split", "train")
    counts = [0] * len(info["classes"])
    for video in info["videos"].values():
        if video.get("split") == train and video.get("status") == "ok" and video.get("label", -1) >= 0:
            counts[video["label"]] += 1
    return counts


def check_spec(raw, source) -> dict:
    """A late-fusion experiment (name, description, reproduces, method, runs, options) read from
    ``source``, checked: unknown keys, an unknown method or option, fewer than two runs are refused."""
    if not isinstance(raw, dict) or not {"name", "method", "runs"} <= set(raw):
        raise ValueError(f"{source}: a late-fusion file needs name, method and runs")
    unknown = sorted(set(raw) - FILE_KEYS)
    if unknown:
        raise ValueError(f"{source}: unknown key(s) {', '.join(unknown)}; known: {', '.join(sorted(FILE_KEYS))}")
    _method(raw["method"])
    params = list(inspect.signature(METHODS[raw["method"]]).parameters)[2:]
    options = raw.get("options") or {}
    if not isinstance(options, dict) or set(options) - set(params):
        raise ValueError(f"{source}: method {raw['method']} takes options {params}, got {options!r}")
    if not isinstance(raw["runs"], list) or len(set(raw["runs"])) < 2:
        raise ValueError(f"{source}: runs must name at least two experiments")
    return {**raw, "options": options}


def read_file(path) -> dict:
    """A late-fusion experiment file, checked (``check_spec``)."""
    import yaml

    try:
        with open(path) as f:
            raw = yaml.safe_load(f)
    except (OSError, yaml.YAMLError) as err:
        raise ValueError(f"{path}: cannot read it as YAML ({err})") from None
    return check_spec(raw, path)


def fuse_spec(spec: dict, runs_root="runs") -> dict:
    """Run a checked late-fusion experiment: the run directories ``runs_root/<member>`` fused into
    ``runs_root/<name>``, with its thesis row in metrics.json; returns the metrics."""
    run_dirs = [os.path.join(runs_root, r) for r in spec["runs"]]
    options = dict(spec["options"])
    if "class_counts" in inspect.signature(METHODS[spec["method"]]).parameters and "class_counts" not in options:
        options["class_counts"] = training_class_counts(run_dirs[0])
    return fuse_to_dir(run_dirs, spec["method"], os.path.join(runs_root, spec["name"]),
                       reproduces=spec.get("reproduces"), **options)


def _numbers(text, kind, option):
    try:
        return [kind(v) for v in text.split(",")]
    except ValueError:
        raise ValueError(f"{option}: expected comma-separated numbers, got {text!r}") from None


def run(args) -> int:
    """`fer-keras fuse`: a late-fusion file, or run directories fused with --method into --out."""
    if len(args.run_dirs) == 1 and args.run_dirs[0].endswith((".yaml", ".yml")):  # a late-fusion file
        spec = read_file(args.run_dirs[0])
        metrics = fuse_spec(spec, args.runs)
        print(f"fused {', '.join(spec['runs'])} with {spec['method']} into {os.path.join(args.runs, spec['name'])}: "
              f"accuracy {metrics['accuracy']}")
        return 0
    if args.out is None or args.method is None:
        raise ValueError("--method and --out are needed when fusing run directories")
    for path in args.run_dirs:
        if not os.path.isdir(path):
            raise FileNotFoundError(f"{path}: no such run directory")

    if args.method not in METHODS:
        raise ValueError(f"unknown fusion method {args.method!r}; known: {', '.join(METHODS)}")
    params = set(list(inspect.signature(METHODS[args.method]).parameters)[2:])
    options = {}
    if args.rescale:
        options["rescale"] = True
    if args.folds is not None:
        options["n_splits"] = args.folds
    if args.seed is not None:
        options["seed"] = args.seed
    if args.accuracies:
        options["accuracies"] = _numbers(args.accuracies, float, "--accuracies")
    if args.class_counts:
        options["class_counts"] = _numbers(args.class_counts, float, "--class-counts")
    elif "class_counts" in params:
        options["class_counts"] = training_class_counts(args.run_dirs[0])
    metrics = fuse_to_dir(args.run_dirs, args.method, args.out, **options)
    accuracy = metrics["accuracy"]
    print(f"fused {len(args.run_dirs)} runs with {args.method}: {metrics['n_videos']} videos "
          f"({metrics['n_labelled']} labelled)")
    print(f"predictions.csv: {os.path.join(args.out, PREDICTIONS)}")
    print(f"metrics.json:    {os.path.join(args.out, METRICS)}")
    print("accuracy: " + ("n/a (no labelled video)" if accuracy is None else f"{accuracy:.4f}"))
    return 0


def methods_help() -> str:
    """One line per method, from the first sentence of its docstring."""
    lines = []
    for name, func in METHODS.items():
        doc = " ".join((func.__doc__ or "").split())
        first = re.split(r"(?<=\.)\s+(?=[A-Z])", doc)[0]  # the first sentence
        lines += textwrap.wrap(first, 100, initial_indent=f"  {name:<18}", subsequent_indent=" " * 20)
    return "methods:\n" + "\n".join(lines)
