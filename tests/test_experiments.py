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
from fer_keras.fusion import METHODS
from fer_keras.models import entry

EXPERIMENTS = Path(__file__).resolve().parents[1] / "experiments"
ALL = sorted(p for p in EXPERIMENTS.rglob("*.yaml") if p.name != "reproduce.yaml")  # plans: test_reproduce
LATE = [p for p in ALL if p.name.startswith("late_fusion")]
TRAINING = [p for p in ALL if p not in LATE]
THESIS000 = EXPERIMENTS / "thesis000"
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


def _small_build(exp):
    spec = entry(exp.model.name)
    options = {**exp.model.options, **spec.small}
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


@pytest.mark.parametrize("folder", [THESIS000, THESIS002], ids=lambda p: p.name)
def test_thesis_readme_lists_every_file(folder):
    readme = (folder / "README.md").read_text()
    missing = [p.name for p in sorted(folder.glob("*.yaml")) if p.name not in readme]
    assert not missing, f"{folder}/README.md does not list {missing}"


@pytest.mark.parametrize("path", [p for p in TRAINING if p.parent == THESIS002], ids=_id)
def test_thesis002_experiment_is_consistent(path):
    exp = config.load(path)
    assert exp.name == path.stem and exp.reproduces.thesis == "002"
    options = entry(exp.model.name).options(**exp.model.options)
    if exp.data.format == "hdf5":  # a cascade: the feature files' width is the model's input
        assert exp.data.features == options["input_dim"], f"{path}: data.features != model input_dim"
        assert exp.data.pipeline.seq_len == options["seq_len"] == 100 and exp.data.pipeline.batch_size == 32
    elif "fer2013" in exp.name:
        assert exp.data.pipeline.image_size == options["input_size"] == 224 and options["weights"] is None
    else:  # C3D / ConvLSTM on the prepared frames
        assert exp.data.pipeline.seq_len == options["seq_len"] and exp.data.pipeline.image_size == options["input_size"]
    if exp.protocol in ("cv", "cv_folds"):
        assert exp.training.optimizer.learning_rate == 1e-4 and not exp.training.early_stopping.enabled
    for key in ("hyperparameters_from", "weights_from"):  # a search or run this thesis's plan writes
        value = getattr(exp, key)
        assert value is None or (value.startswith("runs/") and (THESIS002 / f"{Path(value).name}.yaml").is_file())
