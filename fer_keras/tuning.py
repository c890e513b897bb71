"""Hyperparameter search: an experiment YAML in, the best experiment YAML out.

KerasTuner (``tuning.algorithm``: Bayesian, random or grid) over the registry search space of ``model.name``
(:mod:`fer_keras.models.search_spaces`), each trial built by
:class:`~fer_keras.models.hypermodels.RegistryHyperModel` and compiled by the training engine
(its losses, metrics, optimiser, schedule and XLA setting). Search directory::

    experiment.yaml            the experiment searched (a resumed search must match it)
    oracle.json, tuner0.json   KerasTuner state; trial_<id>/ per trial
    best_hyperparameters.yaml  the best trial: its drawn values, builder options and score
    best_experiment.yaml       the experiment with the best values, for ``fer-keras train``
    trials.csv                 one row per trial: id, values, score, status
    search.json                the best score and the thesis row the search reproduces

Rerunning on the same directory resumes: finished trials are kept, an interrupted one is
retried, and only the trials missing to ``max_trials`` run. KerasTuner's chief/worker mode
(``KERASTUNER_TUNER_ID``, ``KERASTUNER_ORACLE_IP``, ``KERASTUNER_ORACLE_PORT``) works as is;
only the chief writes the result files.
"""
from __future__ import annotations

import contextlib
import csv
import dataclasses
import inspect
import json
import logging
import os
import shutil
import sys
import threading
import time
from contextlib import contextmanager
from pathlib import Path

import grpc
import keras
import keras_tuner as kt
import yaml

from fer_keras import config as cfg
from fer_keras import distributed, storage, training
from fer_keras.data.pipeline import INPUTS
from fer_keras.durable import write_atomic, write_result
from fer_keras.models import entry
from fer_keras.models.hypermodels import RegistryHyperModel
from fer_keras.models.search_spaces import split
from fer_keras.reference import compare

logger = logging.getLogger(__name__)

STATE_FILES = ("oracle.json", "experiment.yaml")
SEARCH = "search.json"  # the best score beside the thesis row, for fer-keras results
# Sections whose change makes an existing search directory a different search.
SEARCH_SECTIONS = ("data", "model", "training", "tuning")


class _HyperModel(RegistryHyperModel):
    """A registry HyperModel compiled by the training engine, whose ``fit`` feeds each model only
    the inputs it takes (the loader always yields ``mask`` and may yield more, and a search space
    can change them), on the data of the trial's batch size and sequence length, and sets its
    feature standardisation from the training split (computed once per search)."""

    def __init__(self, name, *, experiment, epochs, data, **kwargs):
        super().__init__(name, compile_fn=self._compile, **kwargs)
        self.experiment = experiment
        self.epochs = epochs
        self.statistics = None
        self._data = {(): data}  # (train, val, steps) per pipeline draw; () = the experiment's own

    def data(self, pipeline: dict):
        """(train, val, steps per epoch) with ``pipeline``'s values in ``data.pipeline``."""
        key = tuple(sorted(pipeline.items()))
        if key not in self._data:
            self._data[key] = training.datasets(with_pipeline(self.experiment, pipeline), epochs=self.epochs)
        return self._data[key]

    def _compile(self, model, learning_rate=None, optimizer=None, lr_decay=None, **pipeline):
        train_cfg = with_compile_args(self.experiment.training, learning_rate=learning_rate,
                                      optimizer=optimizer, lr_decay=lr_decay)
        opt = training.optimizer(train_cfg, self.data(pipeline)[2])
        return training.compile_model(model, train_cfg, opt, jit_compile=train_cfg.xla)

    def fit(self, hp, model, x, *args, validation_data=None, steps_per_epoch=None, **kwargs):
        x, validation_data, steps_per_epoch = self.data(self.split(hp)[2])
        self.statistics = training.standardize(model, self.experiment, self.statistics)
        names = list(model.input.keys()) if isinstance(model.input, dict) else None
        return model.fit(training._inputs_only(x, names), *args, steps_per_epoch=steps_per_epoch,
                         validation_data=training._inputs_only(validation_data, names), **kwargs)


def with_pipeline(exp: cfg.Experiment, pipeline: dict) -> cfg.Experiment:
    """``exp`` with a trial's ``data.pipeline`` values (batch size, sequence length)."""
    if not pipeline:
        return exp
    try:
        new = dataclasses.replace(exp.data.pipeline, **pipeline)
    except (TypeError, ValueError) as err:
        raise ValueError(f"search draw {pipeline}: not a valid data.pipeline ({err})") from None
    return dataclasses.replace(exp, data=dataclasses.replace(exp.data, pipeline=new))


class _Recorder:
    """Passes calls through to a ``HyperParameters`` and records the names a space declares."""

    def __init__(self, hp):
        self._hp = hp
        self.names = []

    def __getattr__(self, attr):
        method = getattr(self._hp, attr)
        if attr not in ("Choice", "Int", "Float", "Boolean", "Fixed"):
            return method

        def declare(name, *args, **kwargs):
            self.names.append(name)
            return method(name, *args, **kwargs)
        return declare


CHIEF_WAIT = "FER_KERAS_CHIEF_WAIT"  # seconds a worker's call to the chief's oracle may wait
DEFAULT_CHIEF_WAIT = 600


class ChiefGone(ConnectionError):
    """A search worker whose chief's oracle did not answer in time."""


@contextmanager
def chief_deadline():
    """A worker's calls to the chief's oracle end after ``FER_KERAS_CHIEF_WAIT`` seconds (600 unless
    set) instead of KerasTuner's hour each (its client waits for a server that may never come back),
    and a call that ends so raises :class:`ChiefGone` naming the address."""
    from keras_tuner.src.distribute import oracle_client

    wait = float(os.environ.get(CHIEF_WAIT, DEFAULT_CHIEF_WAIT))
    previous, oracle_client.TIMEOUT = oracle_client.TIMEOUT, wait
    try:
        yield
    except grpc.RpcError as err:
        address = f"{os.environ.get('KERASTUNER_ORACLE_IP')}:{os.environ.get('KERASTUNER_ORACLE_PORT')}"
        raise ChiefGone(f"worker {os.environ.get('KERASTUNER_TUNER_ID')}: the chief's oracle at {address} did not "
                        f"answer ({err.code().name}, waited up to {wait:g} s, {CHIEF_WAIT}); it is gone or was "
                        "never started: start the chief (a restarted chief resumes the search and hands the "
                        "trials left running out again), then this worker with the same KERASTUNER_TUNER_ID") from None
    finally:
        oracle_client.TIMEOUT = previous


TRIAL_TIMEOUT = "FER_KERAS_TRIAL_TIMEOUT"  # seconds without word from a worker before its trial is requeued
DEFAULT_TRIAL_TIMEOUT = 3600


@contextmanager
def requeue_lost_trials(oracle, timeout: float | None = None):
    """On the chief of a distributed search: a trial whose worker has sent nothing (its trial's
    start or an epoch's metrics) for ``FER_KERAS_TRIAL_TIMEOUT`` seconds (3600 unless set, 0: never;
    set it above the longest epoch) is taken from that worker and queued for the next worker that
    asks, as KerasTuner does with every running trial when its chief restarts. KerasTuner alone
    holds a dead worker's trial for its tuner id, and the search never ends while it is held."""
    timeout = float(os.environ.get(TRIAL_TIMEOUT, DEFAULT_TRIAL_TIMEOUT)) if timeout is None else timeout
    if timeout <= 0:
        yield
        return
    heard = {tuner_id: time.monotonic() for tuner_id in oracle.ongoing_trials}
    create, update = oracle.create_trial, oracle.update_trial

    def create_trial(tuner_id):
        heard[tuner_id] = time.monotonic()
        return create(tuner_id)

    def update_trial(trial_id, metrics, step=0):
        heard.update({tuner_id: time.monotonic() for tuner_id, trial in list(oracle.ongoing_trials.items())
                      if trial.trial_id == trial_id})
        return update(trial_id, metrics, step)

    oracle.create_trial, oracle.update_trial = create_trial, update_trial  # what the chief's server calls
    stop = threading.Event()

    def watch():
        while not stop.wait(min(timeout / 4, 30.0)):
            _requeue(oracle, heard, timeout)

    watcher = threading.Thread(target=watch, name="requeue-lost-trials", daemon=True)
    watcher.start()
    try:
        yield
    finally:
        stop.set()
        watcher.join()
        del oracle.create_trial, oracle.update_trial


@kt.synchronized
def _requeue(oracle, heard: dict, timeout: float) -> None:
    """Under the oracle's lock: queue again the trials of the workers not heard from in ``timeout``."""
    now = time.monotonic()
    for tuner_id, trial in list(oracle.ongoing_trials.items()):
        if now - heard.setdefault(tuner_id, now) > timeout:
            del oracle.ongoing_trials[tuner_id]
            oracle._retry_queue.append(trial.trial_id)
            oracle.save()
            logger.warning("trial %s: no word from worker %s for %.0f s (%s); it goes to the next worker that asks",
                           trial.trial_id, tuner_id, now - heard[tuner_id], TRIAL_TIMEOUT)


def is_worker() -> bool:
    """True in a distributed search on a tuner that is not the chief (KerasTuner's env vars)."""
    from keras_tuner.src.distribute import utils as dist_utils
    return dist_utils.has_chief_oracle() and not dist_utils.is_chief_oracle()


def is_chief() -> bool:
    """True on the chief of a distributed search (it serves the oracle; the workers train)."""
    from keras_tuner.src.distribute import utils as dist_utils
    return dist_utils.has_chief_oracle() and dist_utils.is_chief_oracle()


def fixed_hyperparameters(name, fixed: dict) -> kt.HyperParameters:
    """``tuning.fixed`` as ``hp.Fixed`` entries, checked against the space of model ``name``."""
    hp = kt.HyperParameters()
    for key, value in fixed.items():
        try:
            hp.Fixed(key, value)
        except (ValueError, TypeError) as err:
            raise ValueError(f"tuning.fixed.{key}: {err}") from None
    recorder = _Recorder(hp.copy())
    try:
        entry(name).space(recorder)
    except (KeyError, ValueError, TypeError) as err:
        raise ValueError(f"tuning.fixed: the search space of {name!r} rejects {fixed}: {err!r}") from None
    unknown = sorted(set(fixed) - set(recorder.names))
    if unknown:
        raise ValueError(f"tuning.fixed: {', '.join(unknown)} not in the search space of {name!r}; "
                         f"it has {', '.join(dict.fromkeys(recorder.names))}")
    return hp


def direction(tuning: cfg.TuningConfig) -> str:
    return training.monitor_mode(tuning.objective, tuning.direction)


def default_experiment(model_name, data_root, overrides: dict | None = None) -> cfg.Experiment:
    """An experiment for registry model ``model_name`` on the prepared dataset ``data_root``:
    the model's defaults, pipeline inputs, targets, sequence length and image size taken from
    the model (after ``overrides`` of its options, so ``model.options.input_size=32`` also sets the
    pipeline's image size), everything else at the config defaults, then ``overrides`` merged in."""
    overrides = overrides or {}
    spec = entry(model_name)
    options = spec.options(**((overrides.get("model") or {}).get("options") or {}))
    model = spec.builder(**spec.options(**spec.small))  # small: only the input names matter
    names = [k for k in (model.input if isinstance(model.input, dict) else {}) if k != "mask"]
    keras.backend.clear_session()
    if not names or set(names) - set(INPUTS):
        raise ValueError(f"model {model_name!r} takes inputs {names or 'without names'}, which a "
                         f"prepared dataset does not give ({', '.join(INPUTS)}); write an experiment YAML")
    pipeline = dict(inputs=names, targets=list(options.get("tasks", ("category",))))
    if options.get("seq_len"):
        pipeline["seq_len"] = options["seq_len"]
    if "image" in names:
        pipeline["seq_len"] = 1
    if {"frames", "image"} & set(names) and options.get("input_size"):
        pipeline["image_size"] = options["input_size"]
    base = {"name": model_name, "model": {"name": model_name}, "data": {"root": str(data_root), "pipeline": pipeline}}
    return cfg.from_dict(cfg.merge(base, overrides), f"default experiment for {model_name}")


def _search_settings(exp: cfg.Experiment) -> dict:
    resolved = cfg.to_dict(exp)
    out = {k: resolved[k] for k in SEARCH_SECTIONS}
    out["tuning"] = {k: v for k, v in out["tuning"].items() if k != "max_trials"}
    return out


def _prepare_dir(exp: cfg.Experiment, out: Path, overwrite: bool):
    saved = out / "experiment.yaml"
    if overwrite and out.exists() and not is_worker():  # workers share the chief's directory
        if any(out.iterdir()) and not any((out / f).exists() for f in STATE_FILES):
            raise ValueError(f"{out}: not a search directory; refusing to delete it for --overwrite")
        shutil.rmtree(out)
    if saved.is_file():
        before, now = _search_settings(cfg.load(saved)), _search_settings(exp)
        if before != now:
            changed = sorted(k for k in now if now[k] != before[k])
            raise ValueError(f"{saved}: this directory holds a different search (sections "
                             f"{', '.join(changed)} differ; only tuning.max_trials may change); "
                             "use another --out or --overwrite")
    elif (out / "oracle.json").exists():
        raise ValueError(f"{out}: holds a KerasTuner search without experiment.yaml; "
                         "use another --out or --overwrite")
    out.mkdir(parents=True, exist_ok=True)
    if not is_worker():
        cfg.save(exp, saved)


def with_compile_args(train_cfg: cfg.TrainingConfig, *, learning_rate=None, optimizer=None, lr_decay=None):
    """``train_cfg`` with the optimiser name, learning rate and decay a trial drew. Keywords the
    new optimiser does not take (RMSprop's ``rho`` for SGD) are dropped. ``lr_decay`` is Keras 2's
    optimiser ``decay`` (thesis 003): lr / (1 + decay * step), an inverse-time schedule of one step."""
    opt = train_cfg.optimizer
    changes = {}
    if lr_decay is not None:
        schedule = (cfg.Schedule(name="inverse_time", decay_rate=float(lr_decay), decay_steps=1) if lr_decay
                    else cfg.Schedule())
        train_cfg = dataclasses.replace(train_cfg, schedule=schedule)
    if learning_rate is not None:
        changes["learning_rate"] = float(learning_rate)
    if optimizer is not None and optimizer != opt.name:
        changes["name"] = optimizer
        params = inspect.signature(cfg.OPTIMIZERS[optimizer]).parameters
        kept = {k: v for k, v in opt.options.items() if k in params}
        if kept != opt.options:
            logger.info("optimizer %s: dropping %s options %s", optimizer, opt.name,
                        sorted(set(opt.options) - set(kept)))
        changes["options"] = kept
    if not changes:
        return train_cfg
    return dataclasses.replace(train_cfg, optimizer=dataclasses.replace(opt, **changes))


def best_experiment(exp: cfg.Experiment, hp: kt.HyperParameters, out_name=None) -> cfg.Experiment:
    """``exp`` with trial ``hp``: builder options into ``model.options`` (the experiment's own
    options win, as they did in the search) and the compile keys into ``training.optimizer``."""
    options, compile_args, pipeline = split(entry(exp.model.name).space(hp.copy()), exp.model.options)
    model = dataclasses.replace(exp.model, options=options)
    return dataclasses.replace(with_pipeline(exp, pipeline), name=out_name or f"{exp.name}_tuned", model=model,
                               training=with_compile_args(exp.training, **compile_args))


def _plain(value):
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if hasattr(value, "item"):  # numpy scalars
        return value.item()
    return value


def _write_trials(oracle, path: Path):
    trials = sorted(oracle.trials.values(), key=lambda t: (len(t.trial_id), t.trial_id))
    names = list(dict.fromkeys(k for t in trials for k in t.hyperparameters.values))
    with path.open("w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["trial_id", *names, "score", "best_step", "status"])
        for t in trials:
            values = t.hyperparameters.values
            writer.writerow([t.trial_id, *(values.get(n, "") for n in names),
                             "" if t.score is None else t.score,
                             "" if t.best_step is None else t.best_step, t.status])
    return trials


def tune(exp: cfg.Experiment, out_dir, *, max_trials=None, objective=None, overwrite=False) -> dict:
    """Search ``exp.model``'s hyperparameters into ``out_dir`` (resuming a search there).

    ``max_trials`` and ``objective`` override the ``tuning`` section. Returns the paths of the
    result files, the best trial and its score (a distributed worker returns its role only).
    """
    if exp.training.strategy == distributed.MULTI_WORKER:
        raise ValueError("tuning with training.strategy multi_worker: KerasTuner's tuner processes are not one "
                         "MultiWorkerMirroredStrategy cluster; spread the trials over hosts with KerasTuner's "
                         "chief and workers instead, each worker with strategy mirrored (its own GPUs)")
    tuning = dataclasses.replace(exp.tuning, **{k: v for k, v in (("max_trials", max_trials),
                                                                  ("objective", objective)) if v is not None})
    exp = dataclasses.replace(exp, tuning=tuning)
    storage.local_only(out_dir, "a search folder (KerasTuner's project, the trials' run directories)")
    out = Path(out_dir).resolve()
    hp = fixed_hyperparameters(exp.model.name, tuning.fixed)
    searched = sorted(set(entry(exp.model.name).space(hp.copy())) & set(exp.model.options))
    if searched:
        logger.warning("model.options %s override what the search draws for them; fix a "
                       "hyperparameter with tuning.fixed instead", ", ".join(searched))
    fixed_options = training.model_options(exp)
    train_cfg = exp.training
    keras.utils.set_random_seed(train_cfg.seed)
    train_ds, val_ds, steps_per_epoch = training.datasets(exp, epochs=tuning.epochs)  # every trial: epochs 0..
    _prepare_dir(exp, out, overwrite)  # after the data checks: a typo leaves no directory behind
    goal = kt.Objective(tuning.objective, direction(tuning))
    callbacks = [training.CheckMonitor(tuning.objective, "tuning.objective", kt.errors.FatalValueError)]
    es = train_cfg.early_stopping
    if es.enabled:
        callbacks.append(keras.callbacks.EarlyStopping(tuning.objective, min_delta=es.min_delta,
                                                       patience=es.patience, mode=goal.direction))
    strategy = None if train_cfg.strategy == "default" else training.strategy_from(exp)

    with training.precision(train_cfg.mixed_precision), chief_deadline():
        hypermodel = _HyperModel(exp.model.name, experiment=exp, epochs=tuning.epochs,
                                 data=(train_ds, val_ds, steps_per_epoch), **fixed_options)
        tuner = _tuner(tuning, hypermodel, hp, weights_seed=train_cfg.seed, objective=goal,
                       executions_per_trial=tuning.executions_per_trial, distribution_strategy=strategy,
                       directory=str(out.parent), project_name=out.name, overwrite=False)
        with requeue_lost_trials(tuner.oracle) if is_chief() else contextlib.nullcontext():
            tuner.search(train_ds, validation_data=val_ds, epochs=tuning.epochs, steps_per_epoch=steps_per_epoch,
                         callbacks=callbacks,
                         verbose=training.verbosity(train_cfg))  # KerasTuner's display needs a number

    if is_worker():
        return {"role": "worker", "tuner_id": os.environ.get("KERASTUNER_TUNER_ID"), "out_dir": str(out)}
    return write_results(exp, tuner.oracle, out)


class _TrialSeeded:
    """Mixed into a KerasTuner tuner: trial k draws its weights and dropout masks from
    ``weights_seed + k``, not from what the trials before it drew in this process, so a search
    killed in trial k retrains it as the uninterrupted search did (KerasTuner reruns it)."""
    weights_seed = 0

    def on_trial_begin(self, trial):
        keras.utils.set_random_seed(self.weights_seed + int(trial.trial_id))
        super().on_trial_begin(trial)


def _tuner(tuning: cfg.TuningConfig, hypermodel, hp, weights_seed: int = 0, **kwargs):
    """KerasTuner's tuner for ``tuning.algorithm``: Bayesian optimisation, random draws, or the
    whole grid of the space's choices (thesis 001's n x l grid), which needs no continuous range."""
    seed = tuning.seed + 1 if tuning.seed >= 0 else tuning.seed  # KerasTuner draws a random seed for 0
    common = dict(max_trials=tuning.max_trials, seed=seed, hyperparameters=hp, tune_new_entries=True, **kwargs)
    if tuning.algorithm == "bayesian":
        algorithm, common["num_initial_points"] = kt.BayesianOptimization, tuning.num_initial_points
    elif tuning.algorithm == "random":
        algorithm = kt.RandomSearch
    else:
        space = hp.copy()
        hypermodel.entry.space(space)
        continuous = [h.name for h in space.space if isinstance(h, kt.engine.hyperparameters.Float) and not h.step]
        if continuous:
            raise ValueError(f"tuning.algorithm grid: the search space of {hypermodel.entry.name!r} has continuous "
                             f"range(s) {', '.join(continuous)}; fix them with tuning.fixed or use bayesian/random")
        algorithm = kt.GridSearch
    seeded = type(algorithm.__name__, (_TrialSeeded, algorithm), {"weights_seed": weights_seed})
    return seeded(hypermodel, **common)


def best_trial(oracle):
    """The completed trial with the best score, the first drawn among equal scores (None when none
    completed). KerasTuner breaks ties by the order of its trial table, which a resumed search
    reloads in another order: a killed search would hand the next phase another trial."""
    scored = [t for t in oracle.trials.values() if t.status == "COMPLETED" and t.score is not None]
    sign = -1 if oracle.objective.direction == "max" else 1
    return min(scored, key=lambda t: (sign * t.score, int(t.trial_id)), default=None)


def write_results(exp: cfg.Experiment, oracle, out: Path) -> dict:
    """The result files of a finished search, and its summary printed."""
    out = Path(out)
    trials = _write_trials(oracle, out / "trials.csv")
    best = best_trial(oracle)
    if best is None:
        raise RuntimeError(f"{out}: no trial completed; see the trial_*/trial.json messages")
    tuned = best_experiment(exp, best.hyperparameters)
    best_exp_path = out / "best_experiment.yaml"
    cfg.save(tuned, best_exp_path)
    reloaded = cfg.load(best_exp_path)  # what `fer-keras train` will read
    if cfg.to_dict(reloaded) != cfg.to_dict(tuned):
        raise RuntimeError(f"{best_exp_path}: does not read back as written")
    best_hp_path = out / "best_hyperparameters.yaml"
    record = {
        "trial_id": best.trial_id,
        "objective": exp.tuning.objective,
        "direction": oracle.objective.direction,
        "score": float(best.score),
        "best_step": best.best_step,
        "hyperparameters": _plain(dict(best.hyperparameters.values)),
        "model_options": _plain({k: v for k, v in tuned.model.options.items()
                                 if k not in exp.model.options}),
        "optimizer": {"name": tuned.training.optimizer.name,
                      "learning_rate": tuned.training.optimizer.learning_rate},
    }
    write_atomic(best_hp_path, yaml.safe_dump(record, sort_keys=False))
    search = {"objective": exp.tuning.objective, "score": float(best.score), "trial_id": best.trial_id,
              "completed": sum(t.status == "COMPLETED" for t in trials), "trials": len(trials),
              "reference": compare(dataclasses.asdict(exp.reproduces), {exp.tuning.objective: float(best.score)})}
    write_result(out / SEARCH, json.dumps(search, indent=2))  # last: it marks the search done
    done = sum(t.status == "COMPLETED" for t in trials)
    print(f"tuned {exp.model.name}: {done}/{len(trials)} trials completed; best trial {best.trial_id} "
          f"{exp.tuning.objective}={best.score:.4g} with {record['hyperparameters']}")
    print(f"best experiment: {best_exp_path}\ntrials: {out / 'trials.csv'}")
    return {"out_dir": str(out), "best_trial": best.trial_id, "best_score": float(best.score),
            "best_hyperparameters": str(best_hp_path), "best_experiment": str(best_exp_path),
            "trials": str(out / "trials.csv"), "completed": done, "total": len(trials)}


def run(args) -> int:
    """`fer-keras tune`: an experiment file or --model NAME --data DIR, searched into --out."""
    if (args.config is None) == (args.model is None):
        raise ValueError("give either an experiment CONFIG.yaml or --model NAME --data DIR")
    if args.model is not None and args.data is None:
        raise ValueError("--model needs --data DIR (a prepared dataset)")
    if args.config is not None and not os.path.isfile(args.config):
        raise FileNotFoundError(f"{args.config}: experiment file does not exist")
    overrides = cfg.overrides(args.set)
    if args.data:
        overrides = cfg.merge(overrides, {"data": {"root": args.data}})
    if args.model is not None:
        exp = default_experiment(args.model, args.data, overrides)
    else:
        exp = cfg.load(args.config, overrides)
    from fer_keras.data.integrity import named_data_errors

    out = args.out or os.path.join("runs", "tune", exp.name)
    try:
        with named_data_errors(exp.data.root):
            result = tune(exp, out, max_trials=args.trials, objective=args.objective, overwrite=args.overwrite)
    except ChiefGone as err:
        print(f"error: {err}", file=sys.stderr)
        return 3
    if result.get("role") == "worker":
        print(f"worker {result['tuner_id']}: no trials left; the chief writes the results to {result['out_dir']}")
    return 0
