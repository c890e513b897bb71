"""Training engine: an experiment YAML in, a run directory (``fer_keras.rundir``) out.

Every file of the run directory is checked before it is used (``rundir``'s checks). On resume, a
damaged BackupAndRestore folder is removed with a warning and its stage restarts from the
previous stage's weights (or from scratch), its epochs dropped from history.csv and redone; a
damaged best.keras is removed and rebuilt from the epochs still to come (``best_since``); a
damaged last.keras of a finished run is rebuilt from the last stage's weights.

Stages (thesis 000's "Train epochs = 10, 20": the RNN/FC part first, then all layers) are
separate ``fit`` calls on one epoch axis. Each rebuilds the model with its ``trainable``
option and takes the weights of the previous stage, so which layers train is decided by the
builder alone; the learning-rate schedule continues over the optimiser's global step.
"""
from __future__ import annotations

import csv
import dataclasses
import json
import logging
import math
import os
import shutil
import sys
import zlib
from contextlib import contextmanager
from pathlib import Path

import keras
import numpy as np
import tensorflow as tf

from fer_keras import config as cfg
from fer_keras import distributed
from fer_keras import losses as fer_losses
from fer_keras.data import loader, pixel_stats
from fer_keras.data.pipeline import Augment
from fer_keras.durable import killpoint, save_atomic
from fer_keras.metrics import CCCMetric, MaskedBinaryAccuracy
from fer_keras.models import entry
from fer_keras.models.layers import Standardize
from fer_keras.rundir import (BEST_LOST, DamagedFile, RunDir, check_model_file,
                              check_weights_file, h5_problem, load_checkpoint, one_line, read_state,
                              weights_record, write_state)

logger = logging.getLogger(__name__)

DEFAULT_LOSSES = {"category": "cce", "va": "ccc", "au": "au_bce"}
INIT_REPORT = "init.json"  # in a run directory: the layers config.Experiment.init set, and from where


def model_options(exp: cfg.Experiment, trainable=None) -> dict:
    """The builder options of the experiment's model: its YAML options, the class count of the
    data, and ``trainable`` when a stage sets it."""
    options = dict(exp.model.options)
    if "classes" in entry(exp.model.name).options():
        classes = len(loader.classes(exp.data))
        if options.setdefault("classes", classes) != classes:
            raise ValueError(f"model.options.classes is {options['classes']} but the data under "
                             f"{exp.data.root} has {classes} classes")
    if trainable is not None:
        options["trainable"] = trainable
    return options


def _checkpoint_of(source: Path) -> Path:
    """A run directory's best checkpoint, or ``source`` itself (a file)."""
    return RunDir(source).best if source.is_dir() else source


def initial_weights(exp: cfg.Experiment) -> Path | None:
    """The file ``exp.weights_from`` names: a run directory's best checkpoint, a search
    directory's best trial checkpoint (KerasTuner's trial_<id>/checkpoint.weights.h5), or a file."""
    if exp.weights_from is None:
        return None
    source = Path(exp.weights_from)
    if exp.weights_map is not None:  # a TF1 checkpoint: its prefix (a directory's latest, or as named)
        from fer_keras.models import tf1_checkpoint

        return Path(tf1_checkpoint.resolve(source))
    if (source / cfg.BEST_HYPERPARAMETERS).is_file():
        import yaml

        trial = (yaml.safe_load((source / cfg.BEST_HYPERPARAMETERS).read_text()) or {}).get("trial_id")
        path = source / f"trial_{trial}" / "checkpoint.weights.h5"
    else:
        path = _checkpoint_of(source)
    if not path.is_file():
        raise FileNotFoundError(f"{exp.name}: weights_from: {path} does not exist; train (or search) "
                                f"{exp.weights_from} first")
    return path


def tf1_weights_map(exp: cfg.Experiment):
    """``exp.weights_map``; without one, when ``weights_from`` is a TF1 checkpoint (TF-Slim's
    ``vgg_16.ckpt``, a ``model.ckpt-N`` prefix), its backbone's map (``tf1_checkpoint.default_map``);
    a TF1 checkpoint for a backbone without one is an error asking for ``weights_map``."""
    if exp.weights_map is not None or exp.weights_from is None:
        return exp.weights_map
    from fer_keras.models import tf1_checkpoint

    if not tf1_checkpoint.is_checkpoint(exp.weights_from):
        return None
    backbone = entry(exp.model.name).options(**exp.model.options).get("backbone")
    found = tf1_checkpoint.default_map(exp.weights_from, backbone)
    if found is None:
        raise ValueError(f"{exp.name}: weights_from {exp.weights_from} is a TF1 checkpoint; name how its variables "
                         f"map onto model {exp.model.name!r} with weights_map (one of "
                         f"{', '.join(sorted(tf1_checkpoint.NAME_MAPS))}, or a list of rules): its backbone "
                         f"{backbone!r} has no default (only {', '.join(tf1_checkpoint.BACKBONE_MAPS)} do)")
    return found


def _start_weights(model, exp: cfg.Experiment, path: Path, run_root: Path) -> None:
    """Load ``weights_from``: a Keras checkpoint, or a TF1 checkpoint by ``weights_map`` with its
    report (loaded, missing, unused variables) in the run's weights_report.json."""
    if exp.weights_map is None:
        model.load_weights(path)
    else:
        from fer_keras.models import tf1_checkpoint

        report = tf1_checkpoint.load_checkpoint(model, path, exp.weights_map)
        tf1_checkpoint.write_report(report, Path(run_root) / "weights_report.json")
        logger.info("%d weights from TF1 checkpoint %s (%d of the model's not in its name map)",
                    len(report["loaded"]), report["checkpoint"], len(report["unmapped"]))
    logger.info("weights from %s", path)


def initialise_layers(model, init: list) -> list[dict]:
    """Set the layers ``init`` names (config.Experiment.init) from other runs' checkpoints; returns
    what loaded: per layer its source file and layer and its weight shapes. A prefix that names no
    layer, a source layer that is missing or has other shapes, is an error naming it."""
    report = []
    for item in init:
        path = _checkpoint_of(Path(item["source"]))
        if not path.is_file():
            raise FileNotFoundError(f"init: {path} does not exist; train {item['source']} first")
        donor = load_checkpoint(path, f"train {item['source']} again")
        for prefix, donor_prefix in item["layers"].items():
            targets = [layer for layer in model.layers if layer.name.startswith(prefix) and layer.weights]
            if not targets:
                raise ValueError(f"init: no layer with weights of this model starts with {prefix!r}")
            for layer in targets:
                name = donor_prefix + layer.name[len(prefix):]
                try:
                    found = donor.get_layer(name)
                except ValueError:
                    raise ValueError(f"init: {path} has no layer {name!r} (for this model's {layer.name!r})") from None
                ours, theirs = [tuple(w.shape) for w in layer.weights], [tuple(w.shape) for w in found.weights]
                if ours != theirs:
                    raise ValueError(f"init: {path} layer {name!r} has weights {theirs}, this model's "
                                     f"{layer.name!r} {ours}")
                layer.set_weights(found.get_weights())
                report.append({"layer": layer.name, "source": str(path), "source_layer": name, "shapes": ours})
    return report


def build_model(exp: cfg.Experiment, trainable=None):
    """The experiment's registry model; ``trainable`` overrides the model's option."""
    spec = entry(exp.model.name)
    return spec.builder(**spec.options(**model_options(exp, trainable)))


def framewise_category(exp: cfg.Experiment) -> bool:
    """Whether the model's category output is per frame (thesis 003's heads, (B, L, C)): its
    target then repeats the video label on every frame, masked like the other per-frame ones."""
    shape = entry(exp.model.name).output_shapes(**model_options(exp)).get("category")
    return shape is not None and len(shape) == 3


def training_data(exp: cfg.Experiment, epoch, epochs, steps, share=None):
    """``epochs`` training epochs from ``epoch`` on, ``steps`` batches each: the known length gives
    the progress bars a total (a wrong count fails loudly). ``share`` ``(i, n)``: worker i's files
    (fer_keras.distributed.training_input), ``steps`` batches an epoch on every worker."""
    data = exp.data
    ds = loader.split(data, data.train_split, training=True, epoch=epoch, epochs=epochs,
                      per_frame_category=framewise_category(exp), share=share, steps=steps if share else None)
    return ds.apply(tf.data.experimental.assert_cardinality(steps * epochs))


def validation_data(exp: cfg.Experiment):
    data = exp.data
    ds = loader.split(data, data.val_split, per_frame_category=framewise_category(exp))
    return ds.apply(tf.data.experimental.assert_cardinality(loader.steps(data, data.val_split)))


def datasets(exp: cfg.Experiment, epochs=1):
    """``(train, val, steps per epoch)``: ``epochs`` training epochs (pass ``steps_per_epoch`` to
    ``fit``) and the validation split."""
    exp = dataclasses.replace(exp, data=pixel_stats.attach(exp.data))
    steps = loader.steps(exp.data, exp.data.train_split)
    return training_data(exp, 0, epochs, steps), validation_data(exp), steps


def feature_statistics(exp: cfg.Experiment, names) -> dict:
    """Per-feature ``(mean, std)`` of inputs ``names`` over the training split: the real steps of
    per-frame inputs (LLDs; padding excluded) and one row per video of per-video inputs
    (functionals). A constant feature gets std 1."""
    data = exp.data
    pipeline = dataclasses.replace(data.pipeline, inputs=tuple(names), augment=Augment(), cache=False)
    ds = loader.split(dataclasses.replace(data, pipeline=pipeline), data.train_split, with_meta=True)
    rows = {n: [] for n in names}
    for x, _, meta in ds.as_numpy_iterator():
        for n in names:
            rows[n].append(x[n][x["mask"] > 0] if x[n].ndim == 3 else x[n][meta["sequence"] == 0])
    stats = {}
    for n, parts in rows.items():
        values = np.concatenate(parts).astype(np.float64) if parts else np.empty((0,))
        if not len(values):
            raise ValueError(f"{data.root}: the {data.train_split} split has no {n} to standardise")
        std = values.std(0)
        stats[n] = (values.mean(0), np.where(std > 1e-8, std, 1.0))
    return stats


def standardize(model, exp: cfg.Experiment, stats=None) -> dict:
    """Set the statistics of the model's ``Standardize`` layers (``standardize_<input>``) from the
    training split, or from ``stats`` already computed; returns the statistics used."""
    found = {layer.name.removeprefix("standardize_"): layer for layer in model.layers
             if isinstance(layer, Standardize)}
    missing = sorted(set(found) - set(stats or {}))
    if missing:
        stats = {**(stats or {}), **feature_statistics(exp, missing)}
    for name, layer in found.items():
        mean, std = stats[name]
        layer.mean.assign(mean.astype("float32"))
        layer.std.assign(std.astype("float32"))
        logger.info("standardised %s with the %s split's statistics", name, exp.data.train_split)
    return stats or {}


def schedule(training: cfg.TrainingConfig, learning_rate, steps_per_epoch):
    """A constant, or the configured decay over the global step."""
    s = training.schedule
    if s.name == "constant":
        return learning_rate
    steps = s.decay_steps or max(1, round(s.decay_epochs * steps_per_epoch))
    kind = {"exponential": keras.optimizers.schedules.ExponentialDecay,
            "inverse_time": keras.optimizers.schedules.InverseTimeDecay}[s.name]
    return kind(learning_rate, steps, s.decay_rate, staircase=s.staircase)


def optimizer(training: cfg.TrainingConfig, steps_per_epoch, learning_rate=None):
    """The configured optimiser with its schedule (thesis 004: RMSprop rho 0.9, momentum 0.9,
    epsilon 1.0, x0.94 every 2 epochs; thesis 000: Adam, x0.95 every 5000 steps)."""
    o = training.optimizer
    lr = schedule(training, learning_rate or o.learning_rate, steps_per_epoch)
    return cfg.OPTIMIZERS[o.name](learning_rate=lr, **o.options)


def compile_model(model, training: cfg.TrainingConfig, opt, *, jit_compile=False):
    """Losses per output (CCE, CCC, masked AU sigmoid CE unless configured) and the metrics
    the theses monitor: accuracy, per-dimension CCC, AU binary accuracy."""
    for setting, names in (("loss", training.loss), ("loss_weights", training.loss_weights)):
        unknown = sorted(set(names) - set(model.output_names))
        if unknown:
            raise ValueError(f"training.{setting}: no model output named {', '.join(unknown)}; "
                             f"outputs: {', '.join(model.output_names)}")
    loss = {name: fer_losses.get(training.loss.get(name, DEFAULT_LOSSES[name]))
            for name in model.output_names}
    # weighted: they get the frame mask (per-frame outputs) or 1 per video
    weighted = {"category": ["accuracy"], "va": [CCCMetric(0), CCCMetric(1)],
                "au": [MaskedBinaryAccuracy(name="accuracy")]}
    model.compile(optimizer=opt, loss=loss, loss_weights=loss_weights(training, model.output_names),
                  weighted_metrics={k: v for k, v in weighted.items() if k in model.output_names},
                  jit_compile=jit_compile)
    return model


def loss_weights(training: cfg.TrainingConfig, outputs):
    """``training.loss_weights`` (an output it leaves out weighs 1), or thesis 003's 0.33 CCE +
    1.0 CCC for a combined category + valence/arousal model that sets none."""
    if training.loss_weights:
        return {name: float(training.loss_weights.get(name, 1.0)) for name in outputs}
    if set(fer_losses.COMBINED_LOSS_WEIGHTS) <= set(outputs):
        return {name: fer_losses.COMBINED_LOSS_WEIGHTS.get(name, 1.0) for name in outputs}
    return None


def strategy_from(exp: cfg.Experiment):
    """``default``, ``mirrored`` (all local GPUs), ``one_device[:/gpu:0]``, or ``multi_worker``
    (``fer_keras.distributed``: from TF_CONFIG, the first TensorFlow work of its process)."""
    kind, _, device = exp.training.strategy.partition(":")
    if kind == distributed.MULTI_WORKER:
        return distributed.strategy(exp.training, exp.data.pipeline.batch_size)
    if kind == "mirrored":
        return tf.distribute.MirroredStrategy()
    if kind == "one_device":
        return tf.distribute.OneDeviceStrategy(device or "/cpu:0")
    return tf.distribute.get_strategy()


@contextmanager
def precision(mixed):
    """Mixed precision for the run only: float16 on a GPU, bfloat16 on CPU (float16 is
    emulated and slow there); the global policy is restored afterwards."""
    previous = keras.mixed_precision.global_policy().name
    if mixed:
        gpu = bool(tf.config.list_physical_devices("GPU"))
        keras.mixed_precision.set_global_policy("mixed_float16" if gpu else "mixed_bfloat16")
    try:
        yield
    finally:
        keras.mixed_precision.set_global_policy(previous)


class CheckMonitor(keras.callbacks.Callback):
    """Fail after the first epoch if the monitored metric does not exist; Keras would only
    warn, and the run would end without a best checkpoint (a search, with failed trials)."""

    def __init__(self, monitor, setting="training.monitor", error=ValueError):
        super().__init__()
        self.monitor, self.setting, self.error = monitor, setting, error

    def on_epoch_end(self, epoch, logs=None):
        if logs is not None and self.monitor not in logs:
            raise self.error(f"{self.setting} {self.monitor!r} is not logged; "
                             f"choose one of {', '.join(sorted(logs))}")


def _best_of(values, mode):
    values = [v for v in values if math.isfinite(v)]
    if not values:
        return None
    return max(values) if mode == "max" else min(values)


def _best_so_far(history: Path, monitor, mode, since=0):
    """The best monitored value of earlier epochs (from epoch ``since`` on: best.keras was rebuilt
    from there), so a resumed run keeps the best checkpoint."""
    if not history.is_file():
        return None
    with history.open() as f:
        return _best_of([float(row[monitor]) for row in csv.DictReader(f)
                         if row.get(monitor) and int(float(row["epoch"])) >= since], mode)


def monitor_mode(name, mode="auto"):
    """``mode``, or for "auto" max for accuracy/CCC/AUC/F1 names and min otherwise."""
    if mode != "auto":
        return mode
    return "max" if any(k in name for k in ("acc", "ccc", "auc", "f1")) else "min"


def verbosity(training: cfg.TrainingConfig) -> int:
    """Keras ``verbose``: "auto" is a progress bar on a terminal and one line per epoch
    otherwise, so a run logged to a file (CI, ``nohup``) stays readable."""
    if training.verbose != "auto":
        return training.verbose
    return 1 if sys.stdout.isatty() else 2


def _mode(training):
    return monitor_mode(training.monitor, training.monitor_mode)


class EpochSeeds(keras.callbacks.Callback):
    """Sets every random-draw state of the model (its dropout layers' SeedGenerators) from
    (seed, epoch) when an epoch begins, so an epoch's dropout masks never depend on the process's
    history. Keras keeps those states outside ``model.weights``: a stage's new build, a resumed
    stage and a run restarted after a kill would otherwise each draw other masks (found by the
    crash-point sweep: a kill at a stage boundary changed every later epoch)."""

    def __init__(self, seed: int):
        super().__init__()
        self.seed = seed

    def on_epoch_begin(self, epoch, logs=None):
        states = [v for v in self.model.variables if v.path.endswith("seed_generator_state")]
        for i, state in enumerate(states):
            draw = zlib.crc32(f"{self.seed}/{epoch}/{i}".encode())
            state.assign(np.array([draw, 0], dtype=state.dtype))


class ResumableEarlyStopping(keras.callbacks.EarlyStopping):
    """Early stopping that continues a stage a kill interrupted: the monitored values of the
    stage's epochs already run (``earlier``, from history.csv) are replayed when training begins,
    so its patience count and best value are those of the uninterrupted run."""

    def __init__(self, *args, earlier=(), **kwargs):
        super().__init__(*args, **kwargs)
        self.earlier = list(earlier)

    def on_train_begin(self, logs=None):
        super().on_train_begin(logs)
        if self.monitor_op is None:
            self._set_monitor_op()
        for value in self.earlier:  # what on_epoch_end did with each of them
            self.wait += 1
            if self._is_improvement(value, self.best):
                self.best, self.wait = value, 0


def _monitored(history: Path, monitor, first, end):
    """The monitored values of epochs ``first`` to ``end - 1`` in history.csv, in epoch order."""
    if not history.is_file():
        return []
    with history.open() as f:
        rows = {int(float(r["epoch"])): float(r[monitor]) for r in csv.DictReader(f) if r.get(monitor)}
    return [rows[e] for e in range(first, end) if e in rows]


class _KillPoint(keras.callbacks.Callback):
    """durable.killpoint at each epoch's end, between the callbacks around it."""

    def __init__(self, name):
        super().__init__()
        self.name = name

    def on_epoch_end(self, epoch, logs=None):
        killpoint(self.name)


def _callbacks(run: RunDir, training: cfg.TrainingConfig, stage: int, best_since=0, earlier=()):
    """The callbacks of one stage's ``fit``. An epoch's history row and best.keras are written
    before BackupAndRestore's backup: a kill between them leaves a row and a best model the
    backup does not cover, which the resume drops (rows) or overwrites (best.keras, its threshold
    read from the rows kept) when it redoes the epoch; the other order would resume after an
    epoch with no row, or with a better epoch than best.keras holds."""
    mode = _mode(training)
    threshold = _best_so_far(run.history, training.monitor, mode, best_since)
    callbacks = [
        CheckMonitor(training.monitor),
        EpochSeeds(training.seed),
        keras.callbacks.CSVLogger(str(run.history), append=True),
        _KillPoint("epoch_logged"),
        keras.callbacks.ModelCheckpoint(str(run.best), monitor=training.monitor, mode=mode,
                                        save_best_only=True, initial_value_threshold=threshold),
        _KillPoint("epoch_checkpointed"),
        keras.callbacks.BackupAndRestore(str(run.backup(stage))),
        keras.callbacks.TensorBoard(str(run.logs)),
    ]
    es, plateau = training.early_stopping, training.reduce_lr_on_plateau
    if es.enabled:
        callbacks.append(ResumableEarlyStopping(training.monitor, min_delta=es.min_delta,
                                                patience=es.patience, mode=mode, earlier=earlier))
    if plateau.enabled:
        callbacks.append(keras.callbacks.ReduceLROnPlateau(training.monitor, factor=plateau.factor,
                                                           patience=plateau.patience, mode=mode,
                                                           min_delta=plateau.min_delta,
                                                           min_lr=plateau.min_lr))
    return callbacks


def _inputs_only(ds, names):
    """Keep the inputs the model takes (the loader always yields ``mask`` and may yield more)."""
    def keep(x, *rest):
        return ({k: x[k] for k in names}, *rest)
    return ds.map(keep, num_parallel_calls=tf.data.AUTOTUNE)


def _transfer(source, target):
    """Copy weights between two builds of one architecture, matched by variable path."""
    by_path = {v.path: v for v in source.weights}
    missing = [v.path for v in target.weights if v.path not in by_path]
    if missing:
        raise ValueError(f"cannot carry weights to the next stage; no source for {missing[:3]}")
    for v in target.weights:
        v.assign(by_path[v.path])


def prepare_run_dir(exp: cfg.Experiment, run_dir) -> RunDir:
    """Create the run directory, or check that an existing one ran this same experiment."""
    run = RunDir(run_dir)
    resolved = cfg.to_dict(exp)
    if run.config.is_file():
        saved = cfg.to_dict(cfg.load(run.config))
        if saved != resolved:
            changed = sorted(k for k in resolved if resolved[k] != saved.get(k))
            raise ValueError(f"{run.config}: this run directory holds a different experiment "
                             f"(sections {', '.join(changed)} differ); use a new run directory")
    run.checkpoints.mkdir(parents=True, exist_ok=True)
    cfg.save(exp, run.config)
    return run


def _history_rows(history: Path):
    """(header, rows) of history.csv, or (None, []) when there is none."""
    if not history.is_file():
        return None, []
    with history.open(newline="") as f:
        rows = list(csv.reader(f))
    return (rows[0], rows[1:]) if rows else (None, [])


def _epochs_logged(history: Path) -> int:
    """One past the last epoch in history.csv (0 without one)."""
    header, rows = _history_rows(history)
    if not header or "epoch" not in header:
        return 0
    k = header.index("epoch")
    return max((int(float(r[k])) + 1 for r in rows if len(r) > k and r[k]), default=0)


def _drop_epochs(run: RunDir, start: int, monitor, mode, best_since) -> tuple[int, bool]:
    """Remove the rows of epochs >= ``start`` from history.csv (they are about to be redone).

    Returns how many epochs were dropped and whether best.keras was last written in one of them
    (a monitored value better than every kept one since ``best_since``)."""
    header, rows = _history_rows(run.history)
    if not header or "epoch" not in header:
        return 0, False
    k = header.index("epoch")
    epoch_of = lambda r: int(float(r[k])) if len(r) > k and r[k] else -1  # noqa: E731
    kept = [r for r in rows if epoch_of(r) < start]
    dropped = [r for r in rows if epoch_of(r) >= start]
    if not dropped:
        return 0, False
    m = header.index(monitor) if monitor in header else None
    values = lambda part: [float(r[m]) for r in part if m is not None and len(r) > m and r[m]]  # noqa: E731
    best_kept = _best_of(values([r for r in kept if epoch_of(r) >= best_since]), mode)
    best_dropped = _best_of(values(dropped), mode)
    from_dropped = best_dropped is not None and (
        best_kept is None or (best_dropped > best_kept if mode == "max" else best_dropped < best_kept))
    if kept:
        tmp = run.history.with_name(f".partial-{run.history.name}")
        with tmp.open("w", newline="") as f:
            csv.writer(f).writerows([header, *kept])
        os.replace(tmp, run.history)
    else:
        run.history.unlink()
    return len({epoch_of(r) for r in dropped}), from_dropped


def _backup_problem(folder: Path, first: int, last: int):
    """None when the BackupAndRestore state in ``folder`` (the stage running epochs ``first`` to
    ``last``) is absent or intact; otherwise what is wrong with it. Keras writes
    ``latest.weights.h5`` and then ``training_metadata.json`` ({"epoch": epochs done, "batch"})
    at each epoch end."""
    weights, meta = folder / "latest.weights.h5", folder / "training_metadata.json"
    if not weights.is_file() and not meta.is_file():
        return None  # nothing backed up yet: the stage starts from its beginning anyway
    if not meta.is_file():
        return f"{weights.name} without training_metadata.json"
    if not weights.is_file():
        return f"{meta.name} without latest.weights.h5"
    try:
        epoch = json.loads(meta.read_text())["epoch"]
    except (ValueError, KeyError, TypeError) as err:
        return f"{meta.name}: {one_line(err)}"
    if not isinstance(epoch, int) or not first < epoch <= last:
        return f"{meta.name} says epoch {epoch!r}, outside this stage's epochs {first + 1}-{last}"
    problem = h5_problem(weights)
    return f"{weights.name}: {problem}" if problem else None


def _backup_epoch(folder: Path):
    """The epoch an intact BackupAndRestore state in ``folder`` resumes at, or None."""
    meta = folder / "training_metadata.json"
    return json.loads(meta.read_text())["epoch"] if meta.is_file() else None


def _stage_start(run: RunDir, i: int, n_stages: int, first: int, last: int, monitor, mode,
                 best_since: int) -> tuple[int, int]:
    """Where stage ``i`` (epochs ``first`` to ``last``) continues: ``(epoch, best_since)``.

    The epoch its intact BackupAndRestore state reached, else ``first``; a damaged state is
    removed first. history.csv rows from that epoch on belong to epochs about to be redone
    (a kill after their row, before their backup; or a stage whose backup is gone) and are
    dropped; best.keras is removed when it came from one of them."""
    folder = run.backup(i)
    problem = _backup_problem(folder, first, last) if folder.is_dir() else None
    if problem is not None:
        shutil.rmtree(folder)
    start = (_backup_epoch(folder) if folder.is_dir() else None) or first
    redone, best_lost = _drop_epochs(run, start, monitor, mode, best_since)
    if problem is not None:
        source = run.stage_weights(i - 1).name if i > 0 else "fresh weights (a new run)"
        logger.warning("%s: damaged BackupAndRestore state (%s); removed it: stage %d/%d restarts at its "
                       "first epoch (epoch %d in history.csv) from %s, and the %d epoch(s) it had done "
                       "are redone", folder, problem, i + 1, n_stages, first, source, redone)
    elif redone:
        logger.warning("%s: %d epoch(s) from epoch %d on have no resume state; they are redone",
                       run.history, redone, start)
    if not best_lost:
        return start, best_since
    if run.best.is_file():  # it holds a dropped epoch; the earlier best epoch's weights are gone
        run.best.unlink()
        logger.warning("%s was last written in one of those epochs (the weights of the best epoch "
                       "before them are gone): removed it; it is rebuilt from the best epoch from "
                       "epoch %d on", run.best, start)
    return start, start


def _save_model_weights(model, path):
    """The model's weights without its optimizer's: the next stage, a resume and a rebuilt
    last.keras load them into a fresh model with a new optimizer, and Adam's two moments would
    triple the file (a stage in progress keeps its optimizer in BackupAndRestore's backup)."""
    from keras.src.saving import saving_lib  # Model.save_weights has no option to leave it out
    saving_lib.save_weights_only(model, str(path), objects_to_skip=[model.optimizer])


def _load_stage_weights(model, run: RunDir, i: int, state: dict, todo):
    """Stage ``i``'s weights into ``model``, checked against state.json's record first."""
    path = run.stage_weights(i)
    check_weights_file(path, state.get("weights", {}).get(path.name), todo)
    try:
        model.load_weights(path)
    except OSError as err:  # h5py's error for a file damaged in a way the check did not read
        if isinstance(err, (FileNotFoundError, PermissionError)):
            raise
        raise DamagedFile(path, f"truncated or not an HDF5 weights file ({one_line(err)})", todo) from err


STAGE_LOST = ("it holds the weights of a finished stage that this run continues from; restore it "
              "from a copy, or train again in a new run directory")
def _resume_checks(run: RunDir, training: cfg.TrainingConfig, state: dict) -> tuple[int, int]:
    """Before a (resumed) run continues: find where the stage in progress continues (removing a
    damaged backup and the history rows to redo) and remove a damaged best.keras (refused in a
    finished run, where it cannot be rebuilt). Returns ``(epoch the stage continues at,
    best_since)``, the epoch from which best.keras counts, recorded in state.json when it moves."""
    plan, done, mode = training.plan(), state["stages_done"], _mode(training)
    best_since = int(state.get("best_since", 0))
    start = first = int(state.get("epochs_done", 0))
    if done < len(plan):
        start, best_since = _stage_start(run, done, len(plan), first, first + plan[done].epochs,
                                         training.monitor, mode, best_since)
    if run.best.is_file():
        try:
            check_model_file(run.best)
        except DamagedFile as err:
            if done >= len(plan):
                raise DamagedFile(run.best, err.problem, BEST_LOST) from err
            run.best.unlink()
            best_since = _epochs_logged(run.history)
            logger.warning("%s: damaged (%s); removed it: it is rebuilt from the best of the epochs "
                           "still to train (epoch %d in history.csv on)", run.best, err.problem, best_since)
    if best_since != state.get("best_since", 0):
        state["best_since"] = best_since
        write_state(run, state)
    return start, best_since


def _final_stage(state: dict, plan) -> int:
    """The last stage that trained (an early stop with ``ends: run`` skips the rest)."""
    return len(state.get("stages", plan[:state["stages_done"]])) - 1


def train(exp: cfg.Experiment, run_dir, *, evaluate=None, validation=True):
    """Train ``exp`` into ``run_dir`` (continuing a killed run there), then ``evaluate(run_dir)``
    when given (``evaluation.evaluate``; this layer does not import it).

    Stages run on one epoch axis and one optimiser step count: each starts at the epoch and
    step where the previous one ended, early stopped or not, so the schedule never skips.
    ``validation=False`` (or ``data.val_split: null``) trains without a validation split (a final
    model on all training data, thesis 002 §3.2.4; thesis 004, which chose on training loss):
    ``training.monitor`` must then be a training metric. Returns the summary
    written to ``state.json`` (plus ``evaluation``, what ``evaluate`` returned).

    With ``strategy: multi_worker`` every worker of TF_CONFIG calls this with the same
    arguments; only the chief writes ``run_dir`` and evaluates (``fer_keras.distributed``).
    """
    training = exp.training
    strategy = strategy_from(exp)  # first: multi_worker must come before any other TensorFlow work
    problem = cfg.search_problem(exp)
    if problem:
        raise FileNotFoundError(f"{exp.name}: {problem}")
    if tf1_weights_map(exp) != exp.weights_map:  # a TF1 checkpoint's default map, recorded in config.yaml
        exp = dataclasses.replace(exp, weights_map=tf1_weights_map(exp))
    start_from = initial_weights(exp)
    validation = validation and (exp.data.val_split is not None or exp.data.fold is not None)
    if not validation and training.monitor.startswith("val_"):
        raise ValueError(f"training.monitor {training.monitor!r} needs a validation split; without one "
                         f"monitor a training metric (e.g. {training.monitor.removeprefix('val_')!r})")
    exp = dataclasses.replace(exp, data=pixel_stats.attach(exp.data))  # recorded in config.yaml
    with distributed.workspace(strategy, run_dir) as (root, private):
        state = _train(exp, strategy, run_dir, root, private, validation, start_from)
    if evaluate and not private:
        state["evaluation"] = evaluate(Path(run_dir))
    return state


def _resume(exp: cfg.Experiment, root) -> tuple[RunDir, dict, int, int]:
    """``(run, state, epoch the stage in progress continues at, best_since)`` of the run directory
    at ``root``, prepared and checked (``_resume_checks``)."""
    run = prepare_run_dir(exp, root)
    state = read_state(run)
    return (run, state, *_resume_checks(run, exp.training, state))


def _train(exp: cfg.Experiment, strategy, run_dir, root: Path, private: bool, validation: bool,
           start_from: Path | None) -> dict:
    """``train`` in ``root``: the run directory, or a worker's private copy of the chief's (taken
    once the chief has prepared it)."""
    training, plan = exp.training, exp.training.plan()
    if not private:
        run, state, start, best_since = _resume(exp, root)
    distributed.barrier(strategy)
    if private:
        run, state, start, best_since = _resume(exp, distributed.snapshot(run_dir, root))
    distributed.agree(strategy, (state["stages_done"], state.get("epochs_done", 0), start),
                      "where the run continues (stages done, epochs done, epoch)")
    note = cfg.preprocessing_note(exp)
    if note and not private:
        logger.warning("%s: %s", exp.name, note)
    keras.utils.set_random_seed(training.seed)
    steps_per_epoch = loader.steps(exp.data, exp.data.train_split)
    multi = distributed.is_multi_worker(strategy)
    shard = distributed.shard_by_data if multi else (lambda ds: ds)
    files = loader.shard_files(exp.data, exp.data.train_split) if multi else 0
    val_ds = validation_data(exp) if validation else None
    epoch = int(state.get("epochs_done", 0))
    step = int(state.get("steps_done", epoch * steps_per_epoch))
    model = None
    with precision(training.mixed_precision), strategy.scope():
        for i, stage in enumerate(plan):
            if i < state["stages_done"]:
                continue
            previous, model = model, build_model(exp, stage.trainable)
            if previous is not None:
                _transfer(previous, model)
            elif i > 0:
                _load_stage_weights(model, run, i - 1, state, STAGE_LOST)
            else:  # a fresh run (a resumed stage 0 gets them back from its backup)
                standardize(model, exp)
                if start_from is not None:
                    _start_weights(model, exp, start_from, run.root)
                if exp.init:
                    loaded = initialise_layers(model, exp.init)
                    (run.root / INIT_REPORT).write_text(json.dumps(loaded, indent=1))
                    logger.info("init: %d layers from %s (%s)", len(loaded),
                                ", ".join(sorted({r["source"] for r in loaded})), run.root / INIT_REPORT)
            opt = optimizer(training, steps_per_epoch, stage.learning_rate)
            compile_model(model, training, opt, jit_compile=training.xla)
            model.optimizer.build(model.trainable_variables)
            model.optimizer.iterations.assign(step)  # a backup, if any, restores its own count
            names = list(model.input.keys()) if isinstance(model.input, dict) else None
            end = epoch + stage.epochs
            start = max(start, epoch)
            logger.info("stage %d/%d: epochs %d-%d, trainable=%s%s", i + 1, len(plan), epoch + 1, end,
                        stage.trainable, f" (continuing at epoch {start + 1})" if start > epoch else "")
            def build(e, share=None, replicas=1):  # noqa: B023  (used at once, in this stage)
                return _inputs_only(training_data(e, start, end - start, steps_per_epoch * replicas, share), names)

            result = model.fit(
                distributed.training_input(strategy, exp, build, files),
                steps_per_epoch=steps_per_epoch,
                validation_data=None if val_ds is None else shard(_inputs_only(val_ds, names)),
                initial_epoch=epoch, epochs=end, verbose=verbosity(training), shuffle=False,
                callbacks=_callbacks(run, training, i, best_since,
                                     _monitored(run.history, training.monitor, epoch, start)))
            ran = result.epoch[-1] + 1 if result.epoch else start
            stopped = ran < end
            done = int(model.optimizer.iterations.numpy())
            path = run.stage_weights(i)
            save_atomic(lambda tmp: _save_model_weights(model, tmp), path)
            stages = [*state.get("stages", []), {"first_epoch": epoch, "epochs": ran - epoch,
                                                  "steps": done - step, "early_stopped": stopped}]
            epoch, step = ran, done
            last = stopped and training.early_stopping.ends == "run"
            state = {"stages_done": len(plan) if last else i + 1, "epochs_done": epoch, "steps_done": step,
                     "steps_per_epoch": steps_per_epoch, "stages": stages,
                     "weights": {**state.get("weights", {}), path.name: weights_record(path)},
                     **({"best_since": best_since} if best_since else {})}
            write_state(run, state)
            if stopped:
                logger.info("stage %d/%d stopped early after %d of %d epochs%s", i + 1, len(plan),
                            ran - stages[-1]["first_epoch"], stage.epochs,
                            "; the run ends here (early_stopping.ends: run)" if last and i + 1 < len(plan) else "")
            if last:
                break
        backups = run.root / "backup"  # BackupAndRestore removes each stage's folder when it ends
        if backups.is_dir() and not any(backups.iterdir()):
            backups.rmdir()
        final = _final_stage(state, plan)

        def final_model():  # the model as the last stage left it
            if model is not None:
                return model
            rebuilt = build_model(exp, plan[final].trainable)
            _load_stage_weights(rebuilt, run, final, state, STAGE_LOST)
            return rebuilt

        damaged_last = None
        if model is None and run.last.is_file():  # a finished run, trained again
            try:
                check_model_file(run.last)
            except DamagedFile as err:
                damaged_last = err
        if model is not None or not run.last.is_file() or damaged_last:
            model = final_model()
            save_atomic(model.save, run.last)
            if damaged_last:
                logger.warning("%s: damaged (%s); rebuilt it from %s", run.last, damaged_last.problem,
                               run.stage_weights(final).name)
        if not run.best.is_file():  # the monitor never improved on a resumed threshold
            model = final_model()
            save_atomic(model.save, run.best)
    return state
