"""Every experiment YAML under experiments/ loads, names the thesis row it reproduces and builds
its model at the registry's small test size; late-fusion files name a fusion method and
experiments that exist.

Late-fusion files (``late_fusion*.yaml``) are not training runs and have their own small schema:
name, description, reproduces, method (a key of ``fer_keras.fusion.METHODS``), runs (experiment
names, i.e. file stems, whose run directories are fused) and options (keywords of the method).
"""
import inspect
import json
from pathlib import Path

import pytest
import yaml

from fer_keras import config
from fer_keras.data.augment import PRESETS
from fer_keras.data.augment import PRESETS
from fer_keras.fusion import METHODS
from fer_keras.models import entry
from fer_keras.models.backbones import BACKBONES

EXPERIMENTS = Path(__file__).resolve().parents[1] / "experiments"
ALL = sorted(p for p in EXPERIMENTS.rglob("*.yaml") if p.name != "reproduce.yaml")  # plans: test_reproduce
LATE = [p for p in ALL if p.name.startswith("late_fusion")]
TRAINING = [p for p in ALL if p not in LATE]
THESIS000 = EXPERIMENTS / "thesis000"
THESIS001 = EXPERIMENTS / "thesis001"
THESIS002 = EXPERIMENTS / "thesis002"
LATE_KEYS = {"name", "description", "reproduces", "method", "runs", "options"}


def _id(path):
    return str(path.relative_to(EXPERIMENTS))


def _raw(path):
    raw = yaml.safe_load(path.read_text())
    assert isinstance(raw, dict), f"{path}: expected a mapping at the top level"
    return raw


def test_there_are_experiments():
    assert TRAINING and LATE, f"no experiment YAMLs under {EXPERIMENTS}"
    assert len({p.stem for p in ALL}) == len(ALL), "two experiment files share a name"


@pytest.mark.parametrize("path", TRAINING, ids=_id)
def test_experiment_loads_and_names_its_thesis_row(path):
    exp = config.load(path)
    ref = exp.reproduces
    assert str(ref.thesis).strip() and ref.table.strip() and ref.row.strip(), \
        f"{path}: reproduces needs thesis, table and row"
    assert ref.value is None or isinstance(ref.value, (int, float))


_built = {}  # (model name, options) -> input names; a configuration is built once per worker
_backbones = {}


@pytest.fixture(scope="module", autouse=True)
def _shared_backbones():
    """Build each small backbone once and share it between the models of the YAMLs that use it:
    the many heads (GRU, BGRU, attention, fusion options) are what differ between experiments."""
    from fer_keras.models import sequence

    real = sequence.build_backbone

    def cached(name, **kwargs):
        key = (name, json.dumps(kwargs, sort_keys=True, default=str))
        if key not in _backbones:
            _backbones[key] = real(name, **kwargs)
        return _backbones[key]

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(sequence, "build_backbone", cached)
        yield


def _c3d_side(options):
    """The smallest clip side a C3D's 'valid' convolutions, each pooled by 2, fit (22 for three 3x3x3)."""
    side = 1
    for _ in options["filters"]:
        side = 2 * side + options["kernel"] - 1
    return side


def _small_build(exp):
    spec = entry(exp.model.name)
    options = {**exp.model.options, **spec.small}
    if exp.model.name == "c3d":  # a bigger kernel (thesis 002 §5.2: k = 5, 7, 9) needs a bigger clip
        side = max(spec.small["input_size"], _c3d_side(spec.options(**options)))
        options.update(seq_len=side, input_size=side)
    if "weights" in spec.options():
        options["weights"] = None  # tests never read weight files
    key = (exp.model.name, json.dumps(options, sort_keys=True, default=str))
    if key not in _built:
        model = spec.builder(**spec.options(**options))
        _built[key] = sorted(model.input.keys()) if isinstance(model.input, dict) else None
    return _built[key]


@pytest.mark.parametrize("path", TRAINING, ids=_id)
def test_experiment_model_builds_at_small_size(path):
    exp = config.load(path)
    inputs = _small_build(exp)
    if path.parent == THESIS000:  # the pipeline yields what the model takes
        assert inputs is not None
        missing = set(inputs) - {"mask"} - set(exp.data.pipeline.inputs)
        assert not missing, f"{path}: model inputs {sorted(missing)} are not in data.pipeline.inputs"


@pytest.mark.parametrize("path", [p for p in TRAINING if p.parent == THESIS000], ids=_id)
def test_thesis000_experiment_is_consistent(path):
    exp = config.load(path)
    assert exp.name == path.stem, f"{path}: name should be the file name, the run directory late fusion reads"
    assert exp.reproduces.thesis == "000"
    assert exp.data.root == "data/afew_prepared"
    options = entry(exp.model.name).options(**exp.model.options)
    if "seq_len" in options:
        assert options["seq_len"] == exp.data.pipeline.seq_len, \
            f"{path}: model seq_len {options['seq_len']} != data.pipeline.seq_len {exp.data.pipeline.seq_len}"
    if "frames" in exp.data.pipeline.inputs:
        assert options["input_size"] == exp.data.pipeline.image_size == 112
    if "weights" in options and "frames" in exp.data.pipeline.inputs:
        assert "weights" in exp.model.options and exp.model.options["weights"] is None, \
            f"{path}: set model.options.weights: null (the user names a local file)"
    for stage in exp.training.plan():
        assert stage.trainable is None or "trainable" in options, f"{path}: model has no trainable option"


def _experiment_names():
    return {p.stem: p for p in TRAINING}


@pytest.mark.parametrize("path", LATE, ids=_id)
def test_late_fusion_file(path):
    raw = _raw(path)
    assert set(raw) <= LATE_KEYS and {"name", "reproduces", "method", "runs"} <= set(raw), \
        f"{path}: late-fusion keys are {sorted(LATE_KEYS)}, got {sorted(raw)}"
    assert raw["name"] == path.stem
    ref = config.Reference(**raw["reproduces"])
    assert str(ref.thesis).strip() and ref.table.strip() and ref.row.strip()
    assert ref.value is None or isinstance(ref.value, (int, float))
    assert raw["method"] in METHODS, f"{path}: unknown fusion method {raw['method']!r}"
    params = list(inspect.signature(METHODS[raw["method"]]).parameters)[2:]  # after probs, labels
    options = raw.get("options") or {}
    assert isinstance(options, dict) and set(options) <= set(params), \
        f"{path}: method {raw['method']} takes options {params}, got {sorted(options)}"
    runs = raw["runs"]
    assert isinstance(runs, list) and len(runs) >= 2 and len(set(runs)) == len(runs)
    known = _experiment_names()
    missing = [r for r in runs if r not in known]
    assert not missing, f"{path}: runs {missing} name no experiment file"
    members = [config.load(known[r]) for r in runs]
    assert all(m.name == r for m, r in zip(members, runs))
    assert all(m.reproduces.thesis == ref.thesis for m in members)
    if path.parent == THESIS002:  # the CV directories: each final model on the test subjects
        assert all(m.protocol == "cv" for m in members), f"{path}: members must be final (protocol cv) models"
    else:  # fused video by video: every member must predict the same split of the same dataset
        assert len({(m.data.root, m.evaluation.split) for m in members}) == 1, \
            f"{path}: members evaluate different datasets or splits"


@pytest.mark.parametrize("folder", [THESIS000, THESIS001, THESIS002, EXPERIMENTS / "thesis004"], ids=lambda p: p.name)
def test_thesis_readme_lists_every_file(folder):
    readme = (folder / "README.md").read_text()
    missing = [p.name for p in sorted(folder.glob("*.yaml")) if p.name not in readme]
    assert not missing, f"{folder}/README.md does not list {missing}"


@pytest.mark.parametrize("path", [p for p in TRAINING if p.parent == THESIS001], ids=_id)
def test_thesis001_experiment_is_consistent(path):
    """§6.3's settings on every trained file (96 px faces, sequences of 80 in fours, 1 - CCC, Adam
    1e-5, 50 epochs, ResNet 60, (x - 128) / 128 but the ImageNet weights' own); an evaluate file
    tests the run of the file it is named after; every Table 1-5 row carries the thesis's numbers."""
    exp = config.load(path)
    assert exp.name == path.stem and exp.reproduces.thesis == "001"
    columns = {c["metric"]: c["value"] for c in exp.reproduces.columns or []}
    if exp.protocol == "evaluate":
        base = Path(exp.weights_from).name
        assert exp.weights_from == f"runs/{base}" and exp.name.startswith(f"{base}_on_")
        assert (THESIS001 / f"{base}.yaml").is_file() and exp.evaluation.checkpoint == "last"
        assert all(isinstance(columns[f"va.frame.{d}.ccc"], float) for d in ("valence", "arousal"))
        return
    pipeline, training = exp.data.pipeline, exp.training
    assert tuple(pipeline.targets) == ("va",) and pipeline.image_size == 96 and pipeline.batch_size == 4
    assert training.optimizer.name == "adam" and training.optimizer.learning_rate == 1e-5
    assert training.epochs == (60 if exp.name.startswith("resnet") else 50) and not training.early_stopping.enabled
    assert pipeline.normalize == ("caffe" if exp.name.endswith("imagenet") else "affwild")
    options = entry(exp.model.name).options(**exp.model.options)
    if exp.protocol == "tune":
        assert exp.tuning.algorithm == "grid" and exp.tuning.max_trials is None
        return
    assert pipeline.seq_len == options["seq_len"] == 80 and options["input_size"] == 96
    assert (options["weights"] is None) and (options["init"] is not None) == (exp.weights_from is None
                                                                              and not exp.name.endswith("imagenet"))
    if exp.name.endswith("affwild"):  # AffWildNet's own network: SAME pooling, TF1's GRU
        assert exp.weights_map == "affwildnet_vggface_gru" and options["reset_after"] is False
        assert options["backbone_options"] == {"pool_padding": "same"}
    if exp.name != "vgg16_gru_2fc":
        assert all(isinstance(columns[f"va.frame.{d}.ccc"], float) for d in ("valence", "arousal"))


@pytest.mark.parametrize("path", [p for p in TRAINING if p.parent == THESIS002], ids=_id)
def test_thesis002_experiment_is_consistent(path):
    exp = config.load(path)
    assert exp.name == path.stem and exp.reproduces.thesis == "002"
    options = entry(exp.model.name).options(**exp.model.options)
    if exp.data.format == "hdf5":  # a cascade: the feature files' width is the model's input
        assert exp.data.features == options["input_dim"], f"{path}: data.features != model input_dim"
        assert exp.data.pipeline.seq_len == options["seq_len"] == 100 and exp.data.pipeline.batch_size == 32
    elif "fer2013" in exp.name:  # §3.2.4's ImageDataGenerator; its unnamed func_preprocessing: the weights'
        assert exp.data.pipeline.image_size == options["input_size"] == 224 and options["weights"] is None
        assert exp.data.pipeline.affine == PRESETS["thesis002"]
        assert exp.data.pipeline.normalize == BACKBONES[options["backbone"]].preprocessing
    else:  # C3D / ConvLSTM on the prepared frames
        assert exp.data.pipeline.seq_len == options["seq_len"] and exp.data.pipeline.image_size == options["input_size"]
    if exp.protocol in ("cv", "cv_folds"):
        assert exp.training.optimizer.learning_rate == 1e-4 and not exp.training.early_stopping.enabled
    for key in ("hyperparameters_from", "weights_from"):  # a search or run this thesis's plan writes
        value = getattr(exp, key)
        assert value is None or (value.startswith("runs/") and (THESIS002 / f"{Path(value).name}.yaml").is_file())


# Thesis 002's finalisation, written out in each protocol-cv file (§3.2.3-§3.2.5 "for finalizing model")
T002_FINALISATION = {"monitor": "val_accuracy", "monitor_mode": "max", "early_stopping": {"patience": 10},
                     "reduce_lr_on_plateau": {"patience": 5, "factor": 0.5}}
T002_FOLD_TABLE = [[75, 9], [77, 22], [77, 4], [63.54, 4], [66.67, 16]]  # §3.2.4, the final LSTM: [%, epoch]
# Fig. 3.21's networks and §5.2's attempts against overfitting: the options each file changes
T002_C3D = {"c3d_arch_1x16": {"filters": [16]}, "c3d_arch_1x32": {"filters": [32]},
            "c3d_arch_2x16": {"filters": [16, 16]}, "c3d_arch_3layers": {"filters": [16, 16, 32]},
            "c3d_kernel5": {"kernel": 5}, "c3d_kernel7": {"kernel": 7}, "c3d_kernel9": {"kernel": 9},
            "c3d_batchnorm": {"batchnorm": True}, "c3d_leaky_relu": {"activation": "leaky_relu"},
            "c3d_he_normal": {"initializer": "he_normal"}, "c3d_average_pooling": {"pooling": "average"},
            "c3d_dropout": {"conv_dropout": 0.5, "dropout": 0.5}}


def test_thesis002_finalisation_and_fold_values():
    """The five Table 3.6 files write the thesis's finalisation out; only vggface_lstm names a fold table
    (the thesis's only one), and only c3d_online_aug's value is read off the fold-averaged curve."""
    exps = {p.stem: config.load(p) for p in TRAINING if p.parent == THESIS002}
    final = sorted(n for n, e in exps.items() if e.protocol == "cv")
    assert final == ["c3d", "convlstm", "vggface_bilstm", "vggface_cnn1d", "vggface_lstm"]
    for name, exp in exps.items():
        raw = _raw(THESIS002 / f"{name}.yaml")
        if exp.protocol != "cv":
            assert "finalisation" not in raw, f"{name}: a finalisation section on fold runs only"
            continue
        written = {k: v for k, v in raw["finalisation"].items() if k != "reproduces"}
        assert written == T002_FINALISATION, name
        f = exp.finalisation
        assert f.early_stopping.enabled and f.reduce_lr_on_plateau.enabled and exp.training.schedule.name == "constant"
        assert not exp.training.reduce_lr_on_plateau.enabled  # the fold runs: fixed LR, fixed epochs
        assert ("reproduces" in raw["finalisation"]) == (name == "vggface_lstm")
    table = exps["vggface_lstm"].finalisation.reproduces
    assert table.per_fold == T002_FOLD_TABLE and table.thesis == "002" and table.metric == "accuracy"
    assert table.value == round(sum(v for v, _ in T002_FOLD_TABLE) / 5, 2) == 71.84
    assert sum(e for _, e in T002_FOLD_TABLE) / 5 == 11  # the final model's epochs (§3.2.4)
    assert sorted(n for n, e in exps.items() if e.reproduces.fold_value == "plateau") == ["c3d_online_aug"]


def test_thesis002_c3d_development_files_change_one_thing():
    """Each §5.2 C3D file is the baseline's data and optimiser with the options the thesis varied, and
    the Fig. 3.21 networks share one head so that only their convolutions differ."""
    baseline = config.load(THESIS002 / "c3d_baseline.yaml")
    spec = entry("c3d")
    assert spec.options(**baseline.model.options)["filters"] == (16, 16, 32)  # Fig. 3.22
    for name, changed in T002_C3D.items():
        exp = config.load(THESIS002 / f"{name}.yaml")
        assert exp.data == baseline.data and exp.training.optimizer == baseline.training.optimizer
        options = exp.model.options
        assert {k: options[k] for k in changed} == changed, name
        if name.startswith("c3d_arch_"):
            assert set(options) == {"filters", "dense"} and options["dense"] == [] and exp.training.epochs == 20
        else:
            assert set(options) == set(changed) and exp.training.epochs == baseline.training.epochs
    online, simple = (config.load(THESIS002 / f"{n}.yaml") for n in ("c3d_online_aug", "c3d_online_aug_simple"))
    assert online.data.pipeline.affine == PRESETS["thesis002"]
    assert simple.data.pipeline.affine == PRESETS["thesis002_simple"]
    assert simple.training.epochs == online.training.epochs == 70


def test_thesis002_smoke_sizes_fit_every_c3d():
    """make reproduce THESIS=002 SMOKE=1 shrinks every C3D clip: each file's kernel still fits."""
    from fer_keras import reproduce

    smoke = reproduce.read_plan(THESIS002)["smoke"]
    for path in sorted(THESIS002.glob("c3d*.yaml")):
        raw = reproduce.experiment_raw(THESIS002, path.stem, smoke)
        options = entry("c3d").options(**raw["model"]["options"])
        assert options["seq_len"] == raw["data"]["pipeline"]["seq_len"] >= _c3d_side(options), path.stem
        assert options["input_size"] == raw["data"]["pipeline"]["image_size"] >= _c3d_side(options), path.stem


T002_SETTINGS = ("file", "protocol", "epochs", "batch", "optimiser", "early stopping", "input", "augmentation",
                 "finalisation")


def _settings(path) -> list[str]:
    """A row of thesis 002's README settings table, from the experiments the file resolves to:
    the fold runs' (``fer-keras cv`` phase folds) or the run's training, and for protocol cv the
    early-stopped fold runs' of phase final."""
    from fer_keras import cv

    raw, exp = _raw(path), config.load(path)
    p, t = exp.data.pipeline, exp.training
    if exp.protocol in ("cv", "cv_folds"):
        t = cv.fold_experiment(raw, str(path), 0).training
    if exp.data.format == "hdf5":
        data = f"{exp.data.features} features x {p.seq_len}"
    else:
        data = f"{'image' if 'image' in p.inputs else f'{p.seq_len} frames'} {p.image_size} px, {p.normalize}"
    augment = ["offline " + ("all 9" if exp.data.augmentations == "all" else ", ".join(exp.data.augmentations))
               ] if exp.data.augmentations else []
    if p.affine is not None:
        augment.append("online " + next((n for n, a in PRESETS.items() if a == p.affine), "custom"))
    final = "-"
    if exp.protocol == "cv":
        f = cv.finalisation_experiment(raw, str(path), 0).training
        final = (f"{f.monitor} ({f.monitor_mode}), patience {f.early_stopping.patience}, "
                 f"LR x{f.reduce_lr_on_plateau.factor:g} after {f.reduce_lr_on_plateau.patience}")
    epochs = f"{exp.tuning.epochs} a trial" if exp.protocol == "tune" else ", ".join(str(s.epochs) for s in t.plan())
    return [f"`{path.name}`", exp.protocol, epochs, str(p.batch_size),
            f"{t.optimizer.name} {t.optimizer.learning_rate:g}",
            f"patience {t.early_stopping.patience}" if t.early_stopping.enabled else "no",
            data, "; ".join(augment) or "-", final]


def _readme_settings(folder) -> dict:
    """{file cell: row} of the README's settings table."""
    lines = (folder / "README.md").read_text().split("## Settings as they resolve", 1)[1].splitlines()
    rows = [[c.strip() for c in line.strip().strip("|").split("|")] for line in lines if line.startswith("| `")]
    return {row[0]: row for row in rows}


def test_thesis002_files_resolve_to_the_settings_of_the_readme():
    """Every training file of thesis 002 resolves, in its fold runs and its finalisation, to the
    settings row of the README; every protocol-cv finalisation is the thesis's (§3.2.4: patience 10
    on validation accuracy, LR x0.5 after 5 epochs without improvement), and no fold run stops early."""
    table = _readme_settings(THESIS002)
    files = [p for p in TRAINING if p.parent == THESIS002]
    assert sorted(table) == sorted(f"`{p.name}`" for p in files)
    for path in files:
        row = _settings(path)
        assert table[row[0]] == row, f"{path.name}: resolves to {row}, the README says {table[row[0]]}"
        if row[1] == "cv":
            assert row[-1] == "val_accuracy (max), patience 10, LR x0.5 after 5", path.name
        if row[1] in ("cv", "cv_folds"):
            assert row[5] == "no" and row[4] == "adam 0.0001", path.name
