"""Cross-validation runner (thesis 002 §3.2.2-§3.2.4): every fold of an experiment's split file
as a run directory of the training engine, the fold curves averaged, then the final model.

Phases (``fer-keras cv CONFIG --out DIR --phase folds|final|all``):

- ``folds``: one run per fold k (the experiment with ``data.fold: k``) for its fixed epochs,
  early stopping off: the thesis tuned on fold means, and a fixed epoch count makes them simple.
  Every history.csv column is averaged over the folds epoch by epoch (mean and population std)
  into ``cv_history.csv``, and the mean curves are drawn with +-std bands in ``cv_history.png``.
- ``final``: every fold again with the experiment's ``finalisation`` section (the thesis:
  patience 10 on validation accuracy, learning rate x0.5 after 5 epochs without improvement;
  ``config.Finalisation``) in place of the training section's monitor and callbacks, each
  fold's best epoch (``fold_table.csv`` / ``.md``), then the final model on all training videos
  without a validation set for the mean best epoch, evaluated once on the test split
  (``data.test_split``, default ``test``) with its last checkpoint.

CV directory::

    folds/fold-<k>/            run directories of phase folds
    cv_history.csv             epoch, then <column>_mean, <column>_std for every history column
    cv_history.png             the mean curves with +-std bands
    folds.json                 per fold run the best validation value of ``reproduces.metric`` and
                               its epoch, their mean and std, and (protocol ``cv_folds``, the
                               thesis's development rows) the thesis reference beside the mean
    early_stopping/fold-<k>/   run directories of phase final's fold runs
    fold_table.csv, .md, .json per fold the best monitored value and its epoch (1-based), and the mean
                               (.json: beside the thesis's fold table, ``finalisation.reproduces``)
    final/                     run directory of the final model
    metrics.json, predictions.csv, confusion_counts.png, confusion_normalised.png, report.md
                               evaluation.evaluate of final/ on the test split (so fusion reads DIR)
    errors.csv                 the misclassified test videos with their probabilities (Fig. 3.29)

Each run resumes where a kill left it and a finished one is not trained again (the engine), and
every table is recomputed from the runs' files: a killed runner rerun ends as an uninterrupted
one. TensorFlow loads only when a phase runs, so ``fer-keras --help`` stays fast.
"""
from __future__ import annotations

import csv
import dataclasses
import json
import logging
import math
import re
from pathlib import Path

import numpy as np

from fer_keras import storage
from fer_keras.durable import killpoint, write_atomic, write_result

logger = logging.getLogger(__name__)

PHASES = ("folds", "final", "all")
HISTORY, HISTORY_PLOT = "cv_history.csv", "cv_history.png"
FOLD_TABLE, ERRORS, FOLDS_SUMMARY = "fold_table", "errors.csv", "folds.json"


# --- tables from run files (pure) ---------------------------------------------------------------

def read_history(path) -> tuple[list[str], np.ndarray]:
    """``(columns, values (epochs, columns))`` of a history.csv; ``epoch`` is the first column."""
    with open(path, newline="") as f:
        reader = csv.DictReader(f)
        rows = list(reader)
        columns = list(reader.fieldnames or [])
    if "epoch" not in columns or not rows:
        raise ValueError(f"{path}: no epochs logged (a history.csv with an 'epoch' column)")
    columns = ["epoch"] + [c for c in columns if c != "epoch"]
    return columns, np.array([[float(r[c]) if r[c] else math.nan for c in columns] for r in rows])


def average_histories(paths) -> tuple[list[str], np.ndarray]:
    """``(header, rows)``: per epoch, the mean and population std over the folds of every
    history.csv column. The folds must have logged the same epochs and columns."""
    tables = [read_history(p) for p in paths]
    columns, first = tables[0]
    for path, (cols, values) in zip(paths, tables):
        if cols != columns or not np.array_equal(values[:, 0], first[:, 0]):
            raise ValueError(f"{path}: logged other epochs or columns than {paths[0]}; the folds of "
                             "phase folds run the same fixed epochs")
    stacked = np.stack([values[:, 1:] for _, values in tables])  # (folds, epochs, columns)
    header = ["epoch"] + [f"{c}_{s}" for c in columns[1:] for s in ("mean", "std")]
    stats = np.stack([stacked.mean(axis=0), stacked.std(axis=0)], axis=-1).reshape(len(first), -1)
    return header, np.column_stack([first[:, 0], stats])


def write_table(path, header, rows):
    with open(path, "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(header)
        writer.writerows([[v if isinstance(v, str) else f"{v:.8g}" for v in row] for row in rows])


def plot_history(header, rows, path):
    """One panel per metric (loss, accuracy, ...): the training and validation mean curves over
    1-based epochs with +-std bands. Agg canvas, no pyplot (as evaluation.plot_confusion)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    values = dict(zip(header, np.asarray(rows, np.float64).T))
    names = [h.removesuffix("_mean") for h in header if h.endswith("_mean")]
    metrics = list(dict.fromkeys(n.removeprefix("val_") for n in names if n != "learning_rate"))
    fig = Figure(figsize=(5 * len(metrics), 4))
    FigureCanvasAgg(fig)
    epochs = values["epoch"] + 1
    for i, metric in enumerate(metrics, start=1):
        ax = fig.add_subplot(1, len(metrics), i)
        for name, label in ((metric, "train"), (f"val_{metric}", "validation")):
            if f"{name}_mean" in values:
                mean, std = values[f"{name}_mean"], values[f"{name}_std"]
                ax.plot(epochs, mean, label=label)
                ax.fill_between(epochs, mean - std, mean + std, alpha=0.25)
        ax.set_xlabel("epoch")
        ax.set_title(f"{metric}, mean +- std over folds")
        ax.legend()
    fig.tight_layout()
    fig.savefig(str(path), dpi=100)


def best_epoch(path, monitor, mode) -> tuple[float, int]:
    """``(best value, its epoch, 1-based as the thesis counts)`` of ``monitor`` in a history.csv;
    the first epoch that reaches it, as ModelCheckpoint keeps it."""
    columns, values = read_history(path)
    if monitor not in columns:
        raise ValueError(f"{path}: no column {monitor!r}; it has {', '.join(columns)}")
    column = values[:, columns.index(monitor)]
    column = np.where(np.isfinite(column), column, -np.inf if mode == "max" else np.inf)
    row = int(column.argmax() if mode == "max" else column.argmin())
    return float(column[row]), int(values[row, 0]) + 1


def final_epochs(best_epochs) -> int:
    """The final model's epochs: the mean of the folds' best epochs, rounded half up (the thesis
    states no rounding; its 9, 22, 4, 4, 16 give exactly 11)."""
    return max(1, math.floor(sum(best_epochs) / len(best_epochs) + 0.5))


def write_fold_table(out, monitor, mode, bests, thesis=None) -> tuple[Path, Path]:
    """fold_table.csv and .md: per fold the best ``monitor`` value and its epoch, then their means
    and the final model's epoch count, as the thesis prints its fold table (§3.2.4); ``thesis``
    (``[[value, epoch], ...]`` per fold) adds its columns to the .md."""
    name = f"{mode}_{monitor}"
    values, epochs = [v for v, _ in bests], [e for _, e in bests]
    csv_path, md_path = Path(out) / f"{FOLD_TABLE}.csv", Path(out) / f"{FOLD_TABLE}.md"
    write_table(csv_path, ["fold", name, "epoch"],
                [[str(k), v, str(e)] for k, (v, e) in enumerate(bests)]
                + [["mean", float(np.mean(values)), float(np.mean(epochs))]])
    percent = "acc" in monitor
    show = (lambda v: f"{100 * v:.2f}%") if percent else (lambda v: f"{v:.4f}")  # noqa: E731
    cols = ["fold", f"{mode} {monitor}", "epoch"] + (["thesis", "thesis epoch"] if thesis else [])
    rows = [[k, show(v), e] for k, (v, e) in enumerate(bests)] + [["mean", show(float(np.mean(values))),
                                                                    f"{np.mean(epochs):g}"]]
    if thesis:
        for row, (t, te) in zip(rows, [*thesis, (np.mean([t for t, _ in thesis]), np.mean([e for _, e in thesis]))]):
            row += [f"{t:.2f}" if row[0] == "mean" else f"{t:g}", f"{te:g}"]
    lines = ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    lines += ["| " + " | ".join(map(str, row)) + " |" for row in rows]
    lines += ["", f"Final model: {final_epochs(epochs)} epochs (the mean best epoch, rounded half up).", ""]
    md_path.write_text("\n".join(lines))
    return csv_path, md_path


def fold_table_summary(exp, monitor, bests) -> dict:
    """fold_table.json: the early-stopped folds' best values and epochs, their means, the final
    model's epochs, and the thesis's fold table (``finalisation.reproduces``) beside the mean."""
    from fer_keras.reference import compare

    mean = float(np.mean([v for v, _ in bests]))
    ref = dataclasses.asdict(exp.finalisation.reproduces)
    return {"experiment": exp.name, "monitor": monitor,
            "folds": [{"fold": k, "value": v, "epoch": e} for k, (v, e) in enumerate(bests)],
            "mean": mean, "epochs": final_epochs([e for _, e in bests]),
            "reference": compare(ref, {ref["metric"].removeprefix("val_"): mean})}


def error_table(predictions, path) -> list[dict]:
    """errors.csv: the labelled videos of a predictions.csv whose prediction is wrong, with every
    class probability as written (thesis 002 Fig. 3.29), by true class then video id."""
    with open(predictions, newline="") as f:
        reader = csv.DictReader(f)
        probs = [c for c in reader.fieldnames if c.startswith("p_")]
        rows = [r for r in reader if r["label"] and r["label"] != r["prediction"]]
    classes = [c.removeprefix("p_") for c in probs]
    rows.sort(key=lambda r: (classes.index(r["label"]), r["video_id"]))
    errors = [{"video_id": r["video_id"], "true": r["label"], "predicted": r["prediction"],
               **{c: r[c] for c in probs}} for r in rows]
    write_table(path, ["video_id", "true", "predicted", *probs], [list(e.values()) for e in errors])
    return errors


# --- the runner ---------------------------------------------------------------------------------

def _raw(config) -> tuple[dict, str]:
    """The experiment mapping as written, which each phase merges its changes over, and its
    source name."""
    import yaml

    from fer_keras import config as cfg

    if isinstance(config, dict):
        return config, "<dict>"
    cfg.load(config)  # a missing file, bad YAML or a bad key: the error train gives
    return yaml.safe_load(Path(config).read_text()) or {}, str(config)


BU4DFE_SUBJECT = re.compile(r"^([FM]\d{3})_")


def _feature_subjects(sources) -> set:
    """The videos of feature-file rows as subjects (BU-4DFE ids start with one) or else ids."""
    import h5py

    found = set()
    for path, rows in sources:
        with h5py.File(path, "r") as f:
            names = f["names"].asstr()[()]
        for name in (names if rows is None else names[rows]):
            name = name.split("~")[0]
            match = BU4DFE_SUBJECT.match(name)
            found.add(match.group(1) if match else name)
    return found


def check_training_subjects(data):
    """Refuse a dataset whose training videos include a test subject of the split file. The set
    checked is the final model's training data (every training video, all folds together), the
    superset of every fold's training part, so no run of the CV ever sees a test subject. For a
    feature folder the training files' subjects (video ids) are checked against the test file's."""
    from fer_keras.data import loader, splits

    if data.format == "hdf5":
        whole = dataclasses.replace(data, fold=None)
        test = Path(data.root) / f"test-features-{data.features}.h5"
        if test.is_file():
            seen = sorted(_feature_subjects(loader.feature_sources(whole, whole.train_split))
                          & _feature_subjects([(test, None)]))
            if seen:
                raise ValueError(f"{test}: test subject(s) {', '.join(seen[:5])} also in the fold files of "
                                 f"{data.root}; write the features again from a split file whose folds "
                                 "leave out the test subjects")
        return
    test = set(splits.read(storage.join(data.root, data.folds)).get("test", []))
    whole = dataclasses.replace(data, fold=None)
    seen = sorted({v.get("subject") for v in loader.selection(whole, whole.train_split)} & test)
    if seen:
        raise ValueError(f"{storage.join(data.root, data.folds)}: test subject(s) {', '.join(seen)} have videos in the "
                         f"training split {data.train_split!r} of {data.root}; the test subjects need a split "
                         "of their own")


def _experiment(raw, source, *layers):
    """The experiment of ``raw`` with ``layers`` merged over it in turn."""
    from fer_keras import config as cfg

    for layer in layers:
        raw = cfg.merge(raw, layer)
    return cfg.from_dict(raw, source)


def _folds_phase(raw, source, out, n_folds) -> dict:
    from fer_keras import training

    histories = []
    for k in range(n_folds):
        exp = fold_experiment(raw, source, k)
        run = out / "folds" / f"fold-{k}"
        logger.info("phase folds: fold %d/%d in %s", k + 1, n_folds, run)
        training.train(exp, run)
        histories.append(run / "history.csv")
    killpoint("folds_trained")
    header, rows = average_histories(histories)
    write_table(out / HISTORY, header, rows)
    plot_history(header, rows, out / HISTORY_PLOT)
    summary = folds_summary(_experiment(raw, source), histories)
    write_result(out / FOLDS_SUMMARY, json.dumps(summary, indent=2))
    return {"runs": [str(h.parent) for h in histories], "history": str(out / HISTORY),
            "plot": str(out / HISTORY_PLOT), "summary": str(out / FOLDS_SUMMARY), "mean": summary["mean"]}


PLATEAU_EPOCHS = 5


def folds_summary(exp, histories) -> dict:
    """folds.json: each fold's best ``val_<reproduces.metric>`` (the thesis's per-fold validation
    figures, e.g. §5.1's [59%, 61%, 63%, 53%, 51%]) and its epoch, their mean and std, the
    plateau of the fold-averaged curve (the mean of its last 5 epochs), and for a ``cv_folds``
    experiment its thesis reference beside the figure ``reproduces.fold_value`` names."""
    from fer_keras import evaluation
    from fer_keras.training import monitor_mode

    metric = exp.reproduces.metric
    monitor = metric if metric.startswith("val_") else f"val_{metric}"
    mode = monitor_mode(monitor, "auto")
    bests = [best_epoch(h, monitor, mode) for h in histories]
    values = [v for v, _ in bests]
    mean = float(np.mean(values))
    header, rows = average_histories(histories)
    plateau = float(np.mean(rows[-PLATEAU_EPOCHS:, header.index(f"{monitor}_mean")]))
    ours = {"best": mean, "plateau": plateau}[exp.reproduces.fold_value]
    reference = evaluation.reference(exp, {metric.removeprefix("val_"): ours}) if exp.protocol == "cv_folds" else None
    return {"experiment": exp.name, "monitor": monitor, "mode": mode,
            "folds": [{"fold": k, "value": v, "epoch": e, "run": str(h.parent)}
                      for k, ((v, e), h) in enumerate(zip(bests, histories))],
            "mean": mean, "std": float(np.std(values)), "plateau": plateau,
            "plateau_epochs": min(PLATEAU_EPOCHS, len(rows)), "compared": exp.reproduces.fold_value,
            "reference": reference}


def fold_experiment(raw, source, k):
    """Fold ``k``'s run of phase folds: the experiment on that fold for its fixed epochs."""
    return _experiment(raw, source, {"name": f"{raw.get('name', 'experiment')}_fold{k}", "data": {"fold": k},
                                     "training": {"early_stopping": {"enabled": False}}})


def finalisation_experiment(raw, source, k):
    """Fold ``k``'s early-stopped run of phase final: the experiment on that fold with its
    ``finalisation`` section's monitor and callbacks as the training's."""
    exp = _experiment(raw, source)
    f = exp.finalisation
    plateau = f.reduce_lr_on_plateau if exp.training.schedule.name == "constant" else None
    return _experiment(raw, source, {
        "name": f"{exp.name}_es_fold{k}", "data": {"fold": k},
        "training": {"monitor": f.monitor, "monitor_mode": f.monitor_mode,
                     "early_stopping": dataclasses.asdict(f.early_stopping),
                     "reduce_lr_on_plateau": dataclasses.asdict(plateau) if plateau else {"enabled": False}}})


def _final_phase(raw, source, out, n_folds) -> dict:
    from fer_keras import evaluation, training

    name = raw.get("name", "experiment")
    bests = []
    for k in range(n_folds):
        exp = finalisation_experiment(raw, source, k)
        run = out / "early_stopping" / f"fold-{k}"
        logger.info("phase final: early-stopped fold %d/%d in %s", k + 1, n_folds, run)
        training.train(exp, run)
        monitor = exp.training.monitor
        mode = training.monitor_mode(monitor, exp.training.monitor_mode)
        bests.append(best_epoch(run / "history.csv", monitor, mode))
    killpoint("folds_trained")
    table = write_fold_table(out, monitor, mode, bests, exp.finalisation.reproduces.per_fold)
    summary = fold_table_summary(_experiment(raw, source), monitor, bests)
    write_atomic(out / f"{FOLD_TABLE}.json", json.dumps(summary, indent=2))
    epochs = final_epochs([e for _, e in bests])
    final = _experiment(raw, source, {
        "name": f"{name}_final", "data": {"fold": None},
        "training": {"epochs": epochs, "monitor": monitor.removeprefix("val_"),
                     "early_stopping": {"enabled": False}, "reduce_lr_on_plateau": {"enabled": False}},
        "evaluation": {"split": exp.data.test_split or "test", "checkpoint": "last"}})
    check_training_subjects(final.data)  # checked before the folds too; this is the data it trains on
    logger.info("phase final: the final model, %d epochs on every training video", epochs)
    training.train(final, out / "final", validation=False)
    errors = []

    def write_errors(paths):  # before metrics.json, the file that marks the CV done
        if "predictions" not in paths:
            return {}
        errors.append(error_table(paths["predictions"], out / ERRORS))
        return {"errors": out / ERRORS}

    metrics = evaluation.evaluate(out / "final", out_dir=out, extra=write_errors)
    errors = errors[0] if errors else None
    return {"best": bests, "epochs": epochs, "table": [str(p) for p in table],
            "accuracy": metrics.get("accuracy"), "metrics": metrics["paths"]["metrics"],
            "errors": None if errors is None else len(errors)}


def cross_validate(config, out, phase="all") -> dict:
    """Run ``phase`` (folds, final or all) of the cross-validation of ``config`` (an experiment
    YAML or its mapping) into the CV directory ``out``; returns what each phase wrote."""
    from fer_keras.data import splits
    from fer_keras.data.integrity import named_data_errors

    if phase not in PHASES:
        raise ValueError(f"phase must be one of {', '.join(PHASES)}, got {phase!r}")
    storage.local_only(out, "a cross-validation folder (the folds' run directories)")
    raw, source = _raw(config)
    exp = _experiment(raw, source)
    data = exp.data
    if phase != "folds" and len(exp.training.plan()) > 1:
        raise ValueError(f"{source}: the final model trains for the mean best epoch of the folds, which "
                         "needs a single-stage experiment (no training.stages)")
    if data.format != "tfrecord" and data.features is None:
        raise ValueError(f"{source}: cross-validation selects the folds of a prepared (tfrecord) dataset or of a "
                         "feature folder (data.format hdf5 with data.features: n)")
    if data.format == "hdf5":
        from fer_keras.data import loader
        n_folds, where = len(loader.feature_folds(data)), f"{data.root} (fold-<k>-features-{data.features}.h5)"
    else:
        where = storage.join(data.root, data.folds)
        n_folds = len(splits.read(where)["folds"])
    if n_folds < 2:
        raise ValueError(f"{where}: cross-validation needs at least 2 folds, it has {n_folds}")
    check_training_subjects(data)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    result = {}
    with named_data_errors(data.root):
        if phase in ("folds", "all"):
            result["folds"] = _folds_phase(raw, source, out, n_folds)
        if phase in ("final", "all"):
            result["final"] = _final_phase(raw, source, out, n_folds)
    return result


# --- command line -------------------------------------------------------------------------------

def add_parser(subparsers):
    """The ``cv`` subcommand's parser (the caller sets ``func``)."""
    p = subparsers.add_parser(
        "cv", help="cross-validate an experiment over the folds of its split file, then the final model",
        description="Phase folds: one run per fold of data.folds for the fixed epochs, histories averaged "
                    "into OUT/cv_history.csv and .png. Phase final: every fold again with early stopping, "
                    "the fold table of best epochs, the final model on all training videos for their mean, "
                    "evaluated on the test split (metrics.json, predictions.csv, confusion matrices, "
                    "errors.csv in OUT). Rerunning on the same OUT continues a killed run.")
    p.add_argument("config", metavar="CONFIG.yaml", help="experiment YAML with a data.folds split file")
    p.add_argument("--out", required=True, metavar="DIR", help="CV directory")
    p.add_argument("--phase", choices=PHASES, default="all", help="what to run (default all)")
    return p


def run(args) -> int:
    from fer_keras.staging import staged

    with staged(args.out) as out:  # a remote --out: worked in a local copy, copied back at the end
        result = cross_validate(args.config, out, args.phase)
    if "folds" in result:
        print(f"fold histories averaged: {result['folds']['history']} ({result['folds']['plot']})")
    if "final" in result:
        final = result["final"]
        print(f"best epochs {', '.join(str(e) for _, e in final['best'])} -> final model "
              f"{final['epochs']} epochs; fold table: {final['table'][1]}")
        print(f"test accuracy: {final['accuracy']}; metrics: {final['metrics']}"
              + ("" if final["errors"] is None else f"; {final['errors']} misclassified in "
                                                    f"{storage.join(args.out, ERRORS)}"))
    return 0
