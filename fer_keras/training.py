"""Training engine: an experiment YAML in, a run directory out.

Run directory::

    config.yaml            every setting the run used (defaults included)
    checkpoints/best.keras best epoch by ``training.monitor``; last.keras at the end;
                           stage-<i>.weights.h5 when stage i is complete
    backup/stage-<i>/      BackupAndRestore state of the stage in progress (removed when done)
    logs/                  TensorBoard
    history.csv            one row per epoch, appended across stages and restarts
    state.json             stages done, so a killed run continues where it stopped

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
import sys
from contextlib import contextmanager
from pathlib import Path

import keras
import numpy as np
import tensorflow as tf

from fer_keras import config as cfg
from fer_keras import losses as fer_losses
from fer_keras.data import loader
from fer_keras.data.pipeline import Augment
from fer_keras.metrics import CCCMetric
from fer_keras.models import entry
from fer_keras.models.layers import Standardize

logger = logging.getLogger(__name__)

DEFAULT_LOSSES = {"category": "cce", "va": "ccc", "au": "au_bce"}


class RunDir:
    """Paths of a run directory."""

    def __init__(self, root):
        self.root = Path(root)
        self.config = self.root / "config.yaml"
        self.checkpoints = self.root / "checkpoints"
        self.best = self.checkpoints / "best.keras"
        self.last = self.checkpoints / "last.keras"
        self.logs = self.root / "logs"
        self.history = self.root / "history.csv"
        self.state = self.root / "state.json"

    def stage_weights(self, i):
        return self.checkpoints / f"stage-{i}.weights.h5"

    def backup(self, i):
        return self.root / "backup" / f"stage-{i}"


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


def build_model(exp: cfg.Experiment, trainable=None):
    """The experiment's registry model; ``trainable`` overrides the model's option."""
    spec = entry(exp.model.name)
    return spec.builder(**spec.options(**model_options(exp, trainable)))


def datasets(exp: cfg.Experiment):
    """``(train, val, steps per epoch)``; known lengths give the progress bars a total (a wrong
    count fails loudly) and keep Keras' per-output losses right."""
    data = exp.data
    steps = loader.steps(data, data.train_split)
    train = loader.split(data, data.train_split, training=True).apply(
        tf.data.experimental.assert_cardinality(steps))
    val = loader.split(data, data.val_split).apply(
        tf.data.experimental.assert_cardinality(loader.steps(data, data.val_split)))
    return train, val, steps


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
    unknown = sorted(set(training.loss) | set(training.loss_weights) - set(model.output_names))
    if unknown:
        raise ValueError(f"training.loss: no model output named {', '.join(unknown)}; "
                         f"outputs: {', '.join(model.output_names)}")
    loss = {name: fer_losses.get(training.loss.get(name, DEFAULT_LOSSES[name]))
            for name in model.output_names}
    metrics = {"category": ["accuracy"], "au": [keras.metrics.BinaryAccuracy(name="accuracy")]}
    weighted = {"va": [CCCMetric(0), CCCMetric(1)]}
    model.compile(optimizer=opt, loss=loss, loss_weights=training.loss_weights or None,
                  metrics={k: v for k, v in metrics.items() if k in model.output_names},
                  weighted_metrics={k: v for k, v in weighted.items() if k in model.output_names},
                  jit_compile=jit_compile)
    return model


def strategy_from(name):
    """``default``, ``mirrored`` (all local GPUs) or ``one_device[:/gpu:0]``."""
    kind, _, device = name.partition(":")
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


def _best_so_far(history: Path, monitor, mode):
    """The best monitored value of earlier epochs, so a resumed run keeps the best checkpoint."""
    if not history.is_file():
        return None
    with history.open() as f:
        values = [float(row[monitor]) for row in csv.DictReader(f) if row.get(monitor)]
    values = [v for v in values if math.isfinite(v)]
    if not values:
        return None
    return max(values) if mode == "max" else min(values)


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


def _callbacks(run: RunDir, training: cfg.TrainingConfig, stage: int):
    mode = _mode(training)
    callbacks = [
        CheckMonitor(training.monitor),
        keras.callbacks.BackupAndRestore(str(run.backup(stage))),
        keras.callbacks.ModelCheckpoint(str(run.best), monitor=training.monitor, mode=mode,
                                        save_best_only=True,
                                        initial_value_threshold=_best_so_far(run.history, training.monitor, mode)),
        keras.callbacks.CSVLogger(str(run.history), append=True),
        keras.callbacks.TensorBoard(str(run.logs)),
    ]
    es, plateau = training.early_stopping, training.reduce_lr_on_plateau
    if es.enabled:
        callbacks.append(keras.callbacks.EarlyStopping(training.monitor, min_delta=es.min_delta,
                                                       patience=es.patience, mode=mode))
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


def _state(run: RunDir):
    return json.loads(run.state.read_text()) if run.state.is_file() else {"stages_done": 0}


def train(exp: cfg.Experiment, run_dir, *, evaluate=True):
    """Train ``exp`` into ``run_dir`` (continuing a killed run there), then evaluate it.

    Returns the summary written to ``state.json``.
    """
    training = exp.training
    run = prepare_run_dir(exp, run_dir)
    keras.utils.set_random_seed(training.seed)
    train_ds, val_ds, steps_per_epoch = datasets(exp)
    state = _state(run)
    strategy = strategy_from(training.strategy)
    epoch = sum(s.epochs for s in training.plan()[:state["stages_done"]])
    model = None
    with precision(training.mixed_precision), strategy.scope():
        for i, stage in enumerate(training.plan()):
            if i < state["stages_done"]:
                continue
            previous, model = model, build_model(exp, stage.trainable)
            if previous is not None:
                _transfer(previous, model)
            elif i > 0:
                model.load_weights(run.stage_weights(i - 1))
            else:  # a fresh run (a resumed stage 0 gets them back from its backup)
                standardize(model, exp)
            opt = optimizer(training, steps_per_epoch, stage.learning_rate)
            compile_model(model, training, opt, jit_compile=training.xla)
            model.optimizer.build(model.trainable_variables)
            model.optimizer.iterations.assign(epoch * steps_per_epoch)
            names = list(model.input.keys()) if isinstance(model.input, dict) else None
            logger.info("stage %d/%d: %d epochs, trainable=%s", i + 1, len(training.plan()),
                        stage.epochs, stage.trainable)
            model.fit(_inputs_only(train_ds, names), validation_data=_inputs_only(val_ds, names),
                      initial_epoch=epoch, epochs=epoch + stage.epochs,
                      callbacks=_callbacks(run, training, i), verbose=verbosity(training), shuffle=False)
            epoch += stage.epochs
            model.save_weights(run.stage_weights(i))
            state = {"stages_done": i + 1, "epochs_done": epoch,
                     "steps_per_epoch": steps_per_epoch}
            run.state.write_text(json.dumps(state, indent=2))
        backups = run.root / "backup"  # BackupAndRestore removes each stage's folder when it ends
        if backups.is_dir() and not any(backups.iterdir()):
            backups.rmdir()
        if model is not None or not run.last.is_file():
            if model is None:
                model = build_model(exp)
                model.load_weights(run.stage_weights(len(training.plan()) - 1))
            model.save(run.last)
    if not run.best.is_file():  # the monitor never improved on a resumed threshold
        model.save(run.best)
    if evaluate:
        from fer_keras.evaluation import evaluate as run_evaluation
        state["evaluation"] = run_evaluation(run.root)
    return state
