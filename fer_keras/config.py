"""Experiment YAML: data + model + training + tuning + evaluation sections (DESIGN.md).

Each section is a dataclass, so the fields below are the documentation of every key. Loading
rejects unknown keys and bad values with the file and the key path in the message, because a
typo in a YAML (``learnig_rate``) would otherwise silently fall back to a default and spoil a
run that takes hours. ``resolve`` fills every default so a run directory keeps the complete
settings it ran with.
"""
from __future__ import annotations

import dataclasses
import inspect
from dataclasses import dataclass, field
from pathlib import Path

import keras
import yaml

from fer_keras.data.pipeline import Augment, PipelineConfig
from fer_keras.models import entry
from fer_keras.models.backbones import BACKBONES

OPTIMIZERS = {"adam": keras.optimizers.Adam, "rmsprop": keras.optimizers.RMSprop,
              "sgd": keras.optimizers.SGD}
SCHEDULES = ("constant", "exponential", "inverse_time")
STRATEGIES = ("default", "mirrored", "one_device", "multi_worker")  # multi_worker: fer_keras.distributed


class ConfigError(ValueError):
    """A bad experiment file; the message names the file and the key."""


@dataclass
class DataConfig:
    """Where the prepared dataset lives and how the loader reads it (PipelineConfig fields).

    ``format: tfrecord`` reads ``root/manifest.json`` and its shards; ``format: hdf5`` reads
    cached CNN features (thesis 002 cascades): each split names a file under ``root``, or, with
    ``features: n``, ``root`` is a folder ``fer-keras features`` wrote (``fold-<k>-features-<n>.h5``
    per fold, ``test-features-<n>.h5``) and ``fold`` and ``augmentations`` select its rows as below
    (loader.feature_sources).

    ``fold: k`` trains on ``train_split`` without the subjects of fold k of the split file
    ``folds`` (relative to ``root``) and validates on them (``val_split`` is then not read), so
    every experiment names a fold and none re-draws one. ``augmentations`` adds the offline
    augmented copies (split ``train_aug``) of the training videos: a list of method names or
    ``all``; copies of validation-fold videos are never used.
    """
    root: str = "data/afew_prepared"
    format: str = "tfrecord"
    train_split: str = "train"
    val_split: str | None = "val"  # null: no validation (thesis 004 chose on training loss; monitor a training metric)
    test_split: str | None = None
    folds: str = "splits.json"
    fold: int | None = None
    augmentations: list | str = field(default_factory=list)
    features: int | None = None
    pipeline: PipelineConfig = field(default_factory=PipelineConfig)

    def __post_init__(self):
        _choice("format", self.format, ("tfrecord", "hdf5"))
        if self.fold is not None and (not isinstance(self.fold, int) or isinstance(self.fold, bool) or self.fold < 0):
            raise ValueError(f"fold must be a fold number >= 0 or null, got {self.fold!r}")
        if not (self.augmentations == "all" or isinstance(self.augmentations, (list, tuple))):
            raise ValueError(f"augmentations must be a list of method names or 'all', got {self.augmentations!r}")
        if self.features is not None:
            if self.format != "hdf5":
                raise ValueError("features names the files of a feature folder: it needs format hdf5")
            if not isinstance(self.features, int) or isinstance(self.features, bool) or self.features < 1:
                raise ValueError(f"features must be the number of features per frame of the files, got {self.features!r}")
        elif (self.fold is not None or self.augmentations) and self.format != "tfrecord":
            raise ValueError("fold and augmentations select records of a prepared (tfrecord) dataset, "
                             "or of a feature folder (format hdf5 with features: n)")


@dataclass
class ModelConfig:
    """A registry name and the builder options that differ from its defaults."""
    name: str = "vggface_bgru"
    options: dict = field(default_factory=dict)

    def __post_init__(self):
        entry(self.name).options(**self.options)  # unknown names and options fail here


@dataclass
class Optimizer:
    """``name`` plus any keyword of the Keras optimizer, e.g. thesis 004's RMSprop
    ``rho: 0.9, momentum: 0.9, epsilon: 1.0``."""
    name: str = "adam"
    learning_rate: float = 1e-4
    options: dict = field(default_factory=dict)

    def __post_init__(self):
        _choice("name", self.name, tuple(OPTIMIZERS))
        _positive("learning_rate", self.learning_rate)
        params = inspect.signature(OPTIMIZERS[self.name]).parameters
        unknown = sorted(set(self.options) - set(params) | ({"learning_rate"} & set(self.options)))
        if unknown:
            raise ValueError(f"options: unknown {self.name} keyword(s) {', '.join(unknown)}")


@dataclass
class Schedule:
    """Learning-rate decay. ``exponential`` with ``staircase`` is TF1's ``exponential_decay``
    (thesis 000: x0.95 every 5000 steps; thesis 004: x0.94 every 2 epochs). The period is
    ``decay_steps`` or ``decay_epochs`` (converted with the steps of an epoch)."""
    name: str = "constant"
    decay_rate: float = 0.95
    decay_steps: int | None = None
    decay_epochs: float | None = None
    staircase: bool = True

    def __post_init__(self):
        _choice("name", self.name, SCHEDULES)
        if self.name != "constant" and (self.decay_steps is None) == (self.decay_epochs is None):
            raise ValueError(f"schedule {self.name!r} needs exactly one of decay_steps, decay_epochs")


@dataclass
class Stage:
    """One training stage: ``trainable`` backbone blocks (0 = head only, "fc" = the backbone's fully
    connected layers and the head, "all"; None keeps the model option) for ``epochs``; thesis 000
    trains the RNN/FC part, then the whole network."""
    epochs: int = 1
    trainable: int | str | None = None
    learning_rate: float | None = None

    def __post_init__(self):
        _positive("epochs", self.epochs)
        if self.trainable not in (None, "all", "fc") and not (isinstance(self.trainable, int) and self.trainable >= 0):
            raise ValueError(f"trainable must be 'all', 'fc' or a number of blocks >= 0, got {self.trainable!r}")


@dataclass
class Callback:
    """Optional callback settings; ``enabled: false`` (or null in YAML) turns one off."""
    enabled: bool = True
    patience: int = 10
    factor: float = 0.5
    min_delta: float = 0.0
    min_lr: float = 0.0


@dataclass
class EarlyStopping(Callback):
    """Early stopping on ``training.monitor``. A stop ends its stage: the next stage starts at the
    epoch, optimiser step and learning rate where the stop left off (``ends: stage``), or no
    further stage runs (``ends: run``)."""
    ends: str = "stage"

    def __post_init__(self):
        _choice("ends", self.ends, ("stage", "run"))


@dataclass
class TrainingConfig:
    """Optimiser, schedule, stages, losses and callbacks. Without ``stages`` the whole model
    trains for ``epochs``. ``monitor`` picks the best checkpoint (and early stopping)."""
    epochs: int = 30
    stages: list[Stage] = field(default_factory=list)
    optimizer: Optimizer = field(default_factory=Optimizer)
    schedule: Schedule = field(default_factory=Schedule)
    loss: dict = field(default_factory=dict)          # output -> loss name (fer_keras.losses)
    loss_weights: dict = field(default_factory=dict)  # output -> weight
    monitor: str = "val_loss"
    monitor_mode: str = "auto"
    early_stopping: EarlyStopping = field(default_factory=lambda: EarlyStopping(enabled=False))
    reduce_lr_on_plateau: Callback = field(default_factory=lambda: Callback(enabled=False, patience=3))
    xla: bool = False
    mixed_precision: bool = False
    strategy: str = "default"
    seed: int = 0
    verbose: int | str = "auto"

    def __post_init__(self):
        _positive("epochs", self.epochs)
        _choice("strategy", self.strategy.split(":")[0], STRATEGIES)
        if self.strategy.startswith("multi_worker:"):
            raise ValueError("strategy multi_worker takes its workers from TF_CONFIG, not from a ':' suffix")
        _choice("monitor_mode", self.monitor_mode, ("auto", "min", "max"))
        if self.reduce_lr_on_plateau.enabled and self.schedule.name != "constant":
            raise ValueError("reduce_lr_on_plateau needs schedule 'constant' (both would set the LR)")

    def plan(self) -> list[Stage]:
        return self.stages or [Stage(epochs=self.epochs)]


@dataclass
class TuningConfig:
    """KerasTuner search over the model's registry search space: ``algorithm`` bayesian
    (BayesianOptimization), random or grid (every combination of its choices; ``max_trials: null``
    runs the whole grid)."""
    algorithm: str = "bayesian"
    objective: str = "val_loss"
    direction: str = "auto"
    max_trials: int | None = 10
    epochs: int = 5
    executions_per_trial: int = 1
    num_initial_points: int | None = None
    fixed: dict = field(default_factory=dict)   # hyperparameters held at a value
    seed: int = 0

    def __post_init__(self):
        _choice("direction", self.direction, ("auto", "min", "max"))
        _choice("algorithm", self.algorithm, ("bayesian", "random", "grid"))
        if self.max_trials is None and self.algorithm != "grid":
            raise ValueError("tuning.max_trials: null (every trial) needs algorithm 'grid'")
        if self.max_trials is not None:
            _positive("max_trials", self.max_trials)
        _positive("epochs", self.epochs)


@dataclass
class Reference:
    """The thesis table row an experiment reproduces, shown beside this toolkit's result.

    A row of several numbers (thesis 001's valence and arousal CCC of Table 1 and their MSE in
    Table 2, both from one evaluation) lists them in ``columns`` instead of ``metric``/``value``:
    ``[{metric: va.frame.valence.ccc, value: 0.22}, {table: Table 2, metric: va.frame.valence.mse,
    value: 0.05}, ...]``; a column's ``table`` and ``row`` default to this one's (a comparison table such as
    thesis 003's Table 5.4 names its rows "Best category-only"...), its ``label`` to the last two
    parts of its metric ("valence CCC")."""
    thesis: str = ""
    table: str = ""
    row: str = ""
    metric: str = "accuracy"
    value: float | None = None
    columns: list | None = None
    per_class: dict | None = None  # class -> {precision, recall, f1, support}, e.g. thesis 002 Table 3.5
    per_fold: list | None = None   # [[value, epoch], ...] per fold, e.g. thesis 002 §3.2.4's fold table
    # protocol cv_folds: the figure the value is compared with: "best", the mean over folds of each
    # fold's best validation value, or "plateau", the mean of the last 5 epochs of the fold-averaged
    # curve (a value the thesis reads off its averaged curve, such as §5.2's "around 40%")
    fold_value: str = "best"

    def __post_init__(self):
        _choice("fold_value", self.fold_value, ("best", "plateau"))
        if self.columns is not None:
            if self.value is not None:
                raise ValueError("columns: the thesis numbers of a row with columns are given in its columns, "
                                 f"not in value ({self.value!r})")
            if not isinstance(self.columns, list) or not self.columns:
                raise ValueError(f"columns must be a list of {{metric, value[, table, label]}}, "
                                 f"got {self.columns!r}")
            for i, column in enumerate(self.columns):
                if (not isinstance(column, dict) or set(column) - {"metric", "value", "table", "row", "label"}
                        or not isinstance(column.get("metric"), str) or not column["metric"]
                        or not (column.get("value") is None or _is_number(column["value"]))):
                    raise ValueError(f"columns[{i}]: expected {{metric: a metrics.json path, value: the thesis "
                                     f"number or null[, table, row, label]}}, got {column!r}")


@dataclass
class EvaluationConfig:
    """Which checkpoint and split to evaluate, and how sequences become one video prediction
    (``mean`` of the sequence probabilities, weighted by their valid frames, or ``vote``).

    ``repeat_frames`` predicts a single-frame record (a still image) as thesis 001 §6.7.1 did
    with its CNN-GRU: the image repeated over the whole sequence, every step marked real, and the
    last step's output taken as the prediction (the first steps lack a hidden state).

    ``au_threshold`` makes an AU output's probabilities positive at ``p >= threshold``: a number
    in (0, 1) (0.5, logit >= 0, the thesis's presumed one) or ``val``: each AU's threshold is
    the one that maximises its F1 on the validation split (``data.val_split``, else ``val``),
    and metrics.json's ``au`` keeps the numbers at 0.5 beside ``au.tuned`` (metrics.best_f1_thresholds).

    ``emulate_batches: N`` scores AU and valence/arousal outputs as TF-Slim's
    ``eval_image_classifier.py`` did thesis 004's: ``ceil(n / N)`` batches of N from a reader
    that cycles, so the first items of the split count twice (4,424 test images scored as 4,500
    with N = 100); null (the default) scores one exact pass (metrics.wraparound_indices)."""
    split: str = "val"
    checkpoint: str = "best"
    aggregate: str = "mean"
    repeat_frames: bool = False
    au_threshold: float | str = 0.5
    emulate_batches: int | None = None

    def __post_init__(self):
        _choice("checkpoint", self.checkpoint, ("best", "last"))
        _choice("aggregate", self.aggregate, ("mean", "vote"))
        t = self.au_threshold
        if t != "val" and (not _is_number(t) or not 0 < t < 1):
            raise ValueError(f"au_threshold must be a number in (0, 1) or 'val' (per-AU thresholds chosen "
                             f"on the validation split), got {t!r}")
        n = self.emulate_batches
        if n is not None and (not isinstance(n, int) or isinstance(n, bool) or n < 1):
            raise ValueError(f"emulate_batches must be a batch size >= 1 (TF-Slim's evaluation used 100) "
                             f"or null for one exact pass, got {n!r}")


PROTOCOLS = ("train", "cv", "cv_folds", "tune", "evaluate")


@dataclass
class FinalisationPlateau(Callback):
    """Learning rate x0.5 after 5 epochs without improvement (thesis 002 §3.2.4)."""
    patience: int = 5


@dataclass
class Finalisation:
    """What ``fer-keras cv``'s final phase trains every fold with again to find its best epoch,
    before the final model trains on all training videos for their mean (thesis 002 §3.2.4
    "Final model": patience 10 on validation accuracy, learning rate x0.5 after 5 epochs without
    improvement). A section of its own: ``training`` is what the fold runs use (fixed epochs,
    no early stopping), and nothing set there reaches these. ``reduce_lr_on_plateau`` applies
    under a constant ``training.schedule`` only (a schedule already sets the learning rate).
    ``reproduces`` names the thesis's fold table, compared with the mean of the folds' best
    values in ``fold_table.json``."""
    monitor: str = "val_accuracy"
    monitor_mode: str = "auto"
    early_stopping: EarlyStopping = field(default_factory=EarlyStopping)
    reduce_lr_on_plateau: FinalisationPlateau = field(default_factory=FinalisationPlateau)
    reproduces: Reference = field(default_factory=Reference)

    def __post_init__(self):
        _choice("monitor_mode", self.monitor_mode, ("auto", "min", "max"))
        if not self.monitor.startswith("val_"):
            raise ValueError(f"monitor must be a validation metric (val_...): the early-stopped fold runs "
                             f"validate on their fold, got {self.monitor!r}")


@dataclass
class Experiment:
    """One experiment. ``protocol`` says how the thesis ran it, so ``make reproduce`` and
    ``fer-keras results`` know which command gives its number: ``train`` (one run, evaluated),
    ``cv`` (cross-validation, then the final model on the test split: ``fer-keras cv``),
    ``cv_folds`` (the fold runs only; the number is the mean over folds of the best validation
    value), ``tune`` (a KerasTuner search: ``fer-keras tune``) or ``evaluate`` (no training: the
    run ``weights_from`` names, evaluated on this file's data with the run's own preprocessing:
    thesis 001 tests its 4K models on Aff-Wild and AffectNet; ``fer-keras evaluate RUN --on FILE``).
    ``hyperparameters_from`` names
    a search directory whose best trial's model options and optimiser this experiment starts
    from (what the YAML sets wins), so a tuned stage feeds the next without copying values.
    ``weights_from`` starts training from the weights of a run directory (its best checkpoint),
    a search directory (its best trial's checkpoint) or a weights file (thesis 002: phase 2
    unfreezes blocks of the model phase 1 trained). ``init`` initialises named layers from other
    runs, after ``weights_from``: a list of ``{source: RUN_DIR or .keras file, layers: {prefix:
    source prefix}}``, each layer of this model whose name starts with ``prefix`` taking the
    weights of the source's layer named with ``source prefix`` instead (thesis 000: early fusion
    starts its audio GRU from an audio run, ``{audio_gru: rnn}``, and its CNN from a visual run,
    ``{frame_cnn: frame_cnn}``). ``weights_map`` makes ``weights_from`` a TF1 / TF-Slim checkpoint
    (thesis 001's AffWildNet), read by variable name through that name map: a name of
    ``fer_keras.models.tf1_checkpoint.NAME_MAPS`` or a list of rules; the run writes
    ``weights_report.json`` (what loaded, what did not)."""
    name: str = "experiment"
    description: str = ""
    protocol: str = "train"
    hyperparameters_from: str | None = None
    weights_from: str | None = None
    weights_map: str | list | None = None
    init: list = field(default_factory=list)
    reproduces: Reference = field(default_factory=Reference)
    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    training: TrainingConfig = field(default_factory=TrainingConfig)
    tuning: TuningConfig = field(default_factory=TuningConfig)
    evaluation: EvaluationConfig = field(default_factory=EvaluationConfig)
    finalisation: Finalisation = field(default_factory=Finalisation)

    def __post_init__(self):
        _choice("protocol", self.protocol, PROTOCOLS)
        if self.weights_map is not None and (not self.weights_from or not isinstance(self.weights_map, (str, list))):
            raise ValueError(f"weights_map (a TF1 checkpoint's name map: a name or a list of rules) needs "
                             f"weights_from naming the checkpoint, got weights_from {self.weights_from!r}, "
                             f"weights_map {self.weights_map!r}")
        if self.model.options.get("cached"):
            self._check_cached()
        if self.protocol == "evaluate" and not self.weights_from:
            raise ValueError("protocol evaluate evaluates a trained run: weights_from must name its directory")
        if self.data.pipeline.normalize is None:  # unset: what the weights expect, else [0, 1]
            self.data.pipeline.normalize = weights_preprocessing(self.model, self) or "unit"
        for i, item in enumerate(self.init):
            if (not isinstance(item, dict) or set(item) != {"source", "layers"} or not isinstance(item["source"], str)
                    or not isinstance(item["layers"], dict) or not item["layers"]
                    or not all(isinstance(k, str) and isinstance(v, str) and k and v for k, v in item["layers"].items())):
                raise ValueError(f"init[{i}]: expected {{source: RUN_DIR or .keras file, layers: {{prefix: source "
                                 f"prefix, ...}}}}, got {item!r}")

    def _check_cached(self):
        """A model on cached CNN features (model.options.cached) reads features computed once from
        unaltered frames: refuse what would have changed the CNN's input or weights."""
        pipeline = self.data.pipeline
        changes = [name for name, on in (
            ("data.pipeline.augment", pipeline.augment != Augment()),
            ("data.pipeline.affine", pipeline.affine is not None),
            ("data.pipeline.slim_preprocessing", pipeline.slim_preprocessing is not None),
            ("model.options.trainable", self.model.options.get("trainable", 0) != 0),
            ("model.options.backbone_dropout", self.model.options.get("backbone_dropout", 0) not in (0, None)
             and self.model.options.get("feature") is not None)) if on]
        if self.data.format != "hdf5":
            raise ValueError("model.options.cached reads the CNN's cached features: data.format must be hdf5 "
                             "(fer-keras features writes them; set cached: false to train on frames)")
        if changes:
            raise ValueError(f"model.options.cached: {', '.join(changes)} would change what the frozen CNN "
                             "sees or computes, but its features were computed once from the unaltered frames; "
                             "set cached: false to train end to end with them")


def weights_preprocessing(model: ModelConfig, exp: Experiment | None = None) -> str | None:
    """The pixel preprocessing the model's pretrained weights were trained on: its backbone's
    (``fer_keras.data.preprocessing``) when its options load a weights file; that of the TF1
    checkpoint's name map when ``exp.weights_from`` is one (slim's vgg_16: ``slim_vgg``, not the
    Keras VGG16's ``caffe``); else None."""
    from fer_keras.models import tf1_checkpoint

    options = entry(model.name).options(**model.options)
    if exp is not None and exp.weights_from:
        name = exp.weights_map or tf1_checkpoint.default_map(exp.weights_from, options.get("backbone"))
        if isinstance(name, str):
            return tf1_checkpoint.MAP_PREPROCESSING.get(name)
    if not options.get("backbone") or not options.get("weights"):
        return None
    return BACKBONES[options["backbone"]].preprocessing


def preprocessing_note(exp: Experiment) -> str | None:
    """One line when the experiment feeds its pretrained weights other pixels than theirs (a
    thesis's own choice, such as thesis 000's [-1, 1]); None when they match or none are loaded."""
    expected, chosen = weights_preprocessing(exp.model, exp), exp.data.pipeline.normalize
    if expected is None or chosen == expected:
        return None
    if expected != weights_preprocessing(exp.model):  # the TF1 checkpoint's, not the backbone's weights file's
        source = f"TF1 checkpoint {exp.weights_from} was"
    else:
        source = f"{entry(exp.model.name).options(**exp.model.options)['backbone']} weights were"
    return f"pixel preprocessing {chosen!r} (data.pipeline.normalize), not {expected!r} that the {source} trained on"


def _choice(key, value, allowed):
    if value not in allowed:
        raise ValueError(f"{key} must be one of {', '.join(map(str, allowed))}, got {value!r}")


def _is_number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _positive(key, value):
    if not isinstance(value, (int, float)) or isinstance(value, bool) or value <= 0:
        raise ValueError(f"{key} must be a positive number, got {value!r}")


def _build(cls, raw, where):
    """Instantiate dataclass ``cls`` from a mapping, recursing into nested sections."""
    if raw is None and issubclass(cls, Callback):
        return cls(enabled=False)
    if not isinstance(raw, dict):
        raise ConfigError(f"{where or 'top level'}: expected a mapping, got {raw!r}")
    fields = {f.name: f for f in dataclasses.fields(cls)}
    unknown = sorted(set(raw) - set(fields))
    if unknown:
        raise ConfigError(f"{where or 'top level'}: unknown key(s) {', '.join(unknown)}; "
                          f"known: {', '.join(fields)}")
    hints = {name: _nested(cls, name) for name in fields}
    values = {}
    for key, value in raw.items():
        path = f"{where}.{key}" if where else key
        nested = hints[key]
        if nested is Stage:
            if not isinstance(value, list):
                raise ConfigError(f"{path}: expected a list of stages, got {value!r}")
            values[key] = [_build(Stage, v, f"{path}[{i}]") for i, v in enumerate(value)]
        elif nested is not None:
            values[key] = _build(nested, value, path)
        else:
            values[key] = value
    try:
        return cls(**values)
    except (ValueError, TypeError) as err:
        raise ConfigError(f"{where or 'top level'}: {err}") from None


def _nested(cls, name):
    """The dataclass a field holds (or a list of), else None."""
    kinds = {(DataConfig, "pipeline"): PipelineConfig, (TrainingConfig, "stages"): Stage}
    if (cls, name) in kinds:
        return kinds[(cls, name)]
    default = next(f for f in dataclasses.fields(cls) if f.name == name).default_factory
    if default is dataclasses.MISSING:
        return None
    sample = default()
    return type(sample) if dataclasses.is_dataclass(sample) else None


BEST_HYPERPARAMETERS = "best_hyperparameters.yaml"  # written by fer_keras.tuning into a search directory


def search_problem(exp: Experiment) -> str | None:
    """Why ``exp.hyperparameters_from`` cannot be used yet (its search has not finished), or None."""
    if exp.hyperparameters_from is None:
        return None
    path = Path(exp.hyperparameters_from) / BEST_HYPERPARAMETERS
    if not path.is_file():
        return (f"hyperparameters_from: {path} does not exist; run the search first "
                f"(fer-keras tune ... --out {exp.hyperparameters_from})")
    return None


def _with_search(raw: dict) -> dict:
    """``raw`` over the best trial of its ``hyperparameters_from`` search: the trial's model
    options and optimiser, under whatever ``raw`` sets itself. A search that has not finished
    yet leaves ``raw`` as it is (``search_problem`` says so when a run would need it)."""
    source = raw.get("hyperparameters_from")
    if not source:
        return raw
    path = Path(source) / BEST_HYPERPARAMETERS
    if not path.is_file():
        return raw
    try:
        best = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as err:
        raise ConfigError(f"{path}: not valid YAML: {err}") from None
    if not isinstance(best.get("model_options", {}), dict) or not isinstance(best.get("optimizer", {}), dict):
        raise ConfigError(f"{path}: expected model_options and optimizer mappings (fer_keras.tuning writes them)")
    base = {"model": {"options": best.get("model_options") or {}},
            "training": {"optimizer": best.get("optimizer") or {}}}
    return merge(base, raw)


def from_dict(raw: dict, source="<dict>") -> Experiment:
    try:
        return _build(Experiment, _with_search(raw or {}), "")
    except ConfigError as err:
        raise ConfigError(f"{source}: {err}") from None


def load(path, overrides: dict | None = None) -> Experiment:
    """Read and validate an experiment YAML; ``overrides`` are merged in section by section."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: experiment file does not exist")
    try:
        raw = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as err:
        raise ConfigError(f"{path}: not valid YAML: {err}") from None
    if not isinstance(raw, dict):
        raise ConfigError(f"{path}: expected a mapping of sections at the top level")
    return from_dict(merge(raw, overrides or {}), str(path))


def merge(base: dict, extra: dict) -> dict:
    """Deep merge of nested mappings; ``extra`` wins."""
    out = dict(base)
    for key, value in extra.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = merge(out[key], value)
        else:
            out[key] = value
    return out


def to_dict(exp: Experiment) -> dict:
    """Plain YAML-ready mapping of every setting, defaults included."""
    def plain(value):
        if isinstance(value, (list, tuple)):
            return [plain(v) for v in value]
        if isinstance(value, dict):
            return {k: plain(v) for k, v in value.items()}
        return value
    return plain(dataclasses.asdict(exp))


def save(exp: Experiment, path) -> None:
    Path(path).write_text(yaml.safe_dump(to_dict(exp), sort_keys=False))


def overrides(pairs) -> dict:
    """``--set training.epochs=3 data.root=DIR`` -> a nested mapping (values read as YAML)."""
    out = {}
    for pair in pairs or ():
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise ValueError(f"--set {pair!r}: expected SECTION.KEY=VALUE")
        *parents, leaf = key.split(".")
        node = out
        for part in parents:
            node = node.setdefault(part, {})
        node[leaf] = yaml.safe_load(value)
    return out
