"""make reproduce: the thesis plans (every file once, each after what it reads), the smoke overrides,
and a small plan run end to end (a CV of cached features, a late fusion, the results table); the whole
thesis 002 smoke run is the slow test."""
import csv
import json
from pathlib import Path

import numpy as np
import pytest
import yaml

from data_prep.registry import DATASETS
from fer_keras import reproduce
from fer_keras.data.features import write_features

EXPERIMENTS = Path(__file__).resolve().parents[1] / "experiments"


def _order(plan):
    return [n for step in plan["steps"] if "run" in step for n in step["run"]]


@pytest.mark.parametrize("thesis", ["000", "002", "004"])
def test_plan_runs_every_file_once_after_what_it_reads(thesis):
    folder = EXPERIMENTS / f"thesis{thesis}"
    plan = reproduce.read_plan(folder)
    order = _order(plan)
    files = sorted(p.stem for p in folder.glob("*.yaml") if p.name != reproduce.PLAN)
    assert sorted(order) == files and len(order) == len(set(order))
    position = {n: i for i, n in enumerate(order)}
    steps = [next(iter(s)) for s in plan["steps"]]
    features_at = [i for i, k in enumerate(steps) if k == "features"]
    step_of = {n: i for i, s in enumerate(plan["steps"]) if "run" in s for n in s["run"]}
    for name in order:
        raw = yaml.safe_load((folder / f"{name}.yaml").read_text())
        for member in raw.get("runs", []) if "method" in raw else []:  # late fusion after its members
            assert position[member] < position[name], f"{name} fuses {member} before it runs"
        # an earlier run's (runs/NAME), not a file the user holds (thesis 004's slim checkpoints)
        sources = [raw[k] for k in ("hyperparameters_from", "weights_from") if str(raw.get(k)).startswith("runs/")]
        for source in sources + [item["source"] for item in raw.get("init") or []]:
            assert step_of[Path(source).name] < step_of[name], f"{name}: {source} runs later"
        if (raw.get("data") or {}).get("format") == "hdf5":  # the features are written first
            assert features_at and max(features_at) < step_of[name]
    for i in features_at:  # and their source model trained before them
        source = Path(plan["steps"][i]["features"]["source"]).name
        assert step_of[source] < i


def test_smoke_overrides_and_moved_paths():
    folder = EXPERIMENTS / "thesis002"
    plan = reproduce.read_plan(folder)
    smoke = plan["smoke"]
    paths = {"runs/": "runs/smoke/", **smoke["paths"]}
    raw = reproduce.experiment_raw(folder, "vggface_fer2013_phase2", smoke, paths)
    assert raw["hyperparameters_from"] == raw["weights_from"] == "runs/smoke/vggface_fer2013_phase1"
    assert raw["data"]["root"] == "data/smoke/fer2013_prepared"
    assert raw["model"]["options"]["input_size"] == raw["data"]["pipeline"]["image_size"] == 32
    lstm = reproduce.experiment_raw(folder, "vggface_lstm", smoke, paths)
    assert lstm["data"]["features"] == lstm["model"]["options"]["input_dim"] == 512
    assert reproduce.experiment_raw(folder, "lstm_baseline_1024", smoke, paths)["data"]["features"] == 1024
    assert lstm["training"]["epochs"] == smoke["epochs"] == 2
    t000 = reproduce.read_plan(EXPERIMENTS / "thesis000")["smoke"]
    staged = reproduce.experiment_raw(EXPERIMENTS / "thesis000", "vggface_frames_seq80", t000, {"runs/": "runs/smoke000/"})
    assert [s["epochs"] for s in staged["training"]["stages"]] == [1, 1] and staged["training"]["epochs"] == 2
    assert staged["training"]["stages"][0]["trainable"] == "fc"
    fused = reproduce.experiment_raw(EXPERIMENTS / "thesis000", "early_fusion_option2_audio5", t000, {"runs/": "runs/smoke000/"})
    assert [i["source"] for i in fused["init"]] == ["runs/smoke000/audio_gru_64x2_att", "runs/smoke000/vggface_gru_seq40"]
    fusion = reproduce.experiment_raw(folder, "late_fusion_all_average", smoke, paths)
    assert set(fusion) <= {"name", "description", "reproduces", "method", "runs", "options"}


def test_bad_plans_are_refused(tmp_path):
    (tmp_path / "a.yaml").write_text("name: a\n")
    for text, match in [("steps: [{train: [a]}]", "one of run, features"), ("steps: [{run: [b]}]", "no experiment file b"),
                        ("steps: [{features: {source: x}}]", "features needs source, data, out"),
                        ("steps: []\nsmoke: {sets: {}}", "unknown key")]:
        (tmp_path / reproduce.PLAN).write_text(text)
        with pytest.raises(ValueError, match=match):
            reproduce.read_plan(tmp_path)
    with pytest.raises(FileNotFoundError, match="reproduce.yaml"):
        reproduce.read_plan(tmp_path / "none")


CLASSES = ["angry", "disgust", "fear", "happy", "sad", "surprise"]


def _features(root, rng):
    """Two fold files and a test file of 6-frame, 8-feature videos, the class in the features."""
    def write(path, subjects):
        names = [f"{s}_{c}_tex" for s in subjects for c in CLASSES]
        labels = np.eye(6, dtype=np.float32)[[CLASSES.index(n.split("_")[1]) for n in names]]
        features = rng.normal(size=(len(names), 6, 8)).astype(np.float32) + 3 * np.pad(labels, ((0, 0), (0, 2)))[:, None]
        write_features(path, features, np.ones((len(names), 6), np.float32), labels, names, CLASSES)
    root.mkdir()
    write(root / "fold-0-features-8.h5", ["F011", "M012"])
    write(root / "fold-1-features-8.h5", ["F028", "M028"])
    write(root / "test-features-8.h5", ["F001", "M001"])


def _member(run, accuracy, rng):
    """A finished CV directory as late fusion reads it: predictions.csv and metrics.json."""
    run.mkdir(parents=True)
    with open(run / "predictions.csv", "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["video_id", "label", "prediction", *(f"p_{c}" for c in CLASSES)])
        for s in ("F001", "M001"):
            for c in CLASSES:
                p = rng.dirichlet(np.ones(6))
                writer.writerow([f"{s}_{c}_tex", c, CLASSES[int(p.argmax())], *p])
    (run / "metrics.json").write_text(json.dumps({"accuracy": accuracy, "classes": CLASSES, "reference": None}))


def test_small_plan_end_to_end_and_rerun_skips(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    rng = np.random.default_rng(0)
    _features(tmp_path / "features", rng)
    folder = tmp_path / "thesis009"
    folder.mkdir()
    (folder / "cascade.yaml").write_text(yaml.safe_dump({
        "name": "cascade", "protocol": "cv_folds",
        "reproduces": {"thesis": "009", "table": "Table 1", "row": "LSTM folds", "value": 50.0},
        "data": {"root": "features", "format": "hdf5", "features": 8, "test_split": "test",
                 "pipeline": {"seq_len": 6, "batch_size": 6, "shuffle_buffer": 8}},
        "model": {"name": "cascade_lstm", "options": {"input_dim": 8, "seq_len": 6, "units": 4}},
        "training": {"epochs": 1, "monitor": "val_accuracy", "verbose": 0}}))
    (folder / "late_fusion_ab.yaml").write_text(yaml.safe_dump({
        "name": "late_fusion_ab", "reproduces": {"thesis": "009", "table": "Table 2", "row": "A + B", "value": 40.0},
        "method": "weighted_average", "runs": ["a", "b"], "options": {}}))
    for name in ("a", "b"):
        (folder / f"{name}.yaml").write_text(yaml.safe_dump({"name": name, "reproduces": {"thesis": "009"}}))
    (folder / reproduce.PLAN).write_text(yaml.safe_dump({"steps": [{"run": ["cascade"]}, {"run": ["late_fusion_ab"]}]}))
    _member(tmp_path / "runs" / "a", 0.5, rng)
    _member(tmp_path / "runs" / "b", 0.25, rng)

    result = reproduce.reproduce("009", folder=folder, runs="runs")
    assert not result["failed"], result
    folds = json.loads((tmp_path / "runs" / "cascade" / "folds.json").read_text())
    fused = json.loads((tmp_path / "runs" / "late_fusion_ab" / "metrics.json").read_text())
    assert fused["reference"]["ours"] == pytest.approx(100 * fused["accuracy"])
    table = (tmp_path / "runs" / "results-009.md").read_text()
    assert f"{100 * folds['mean']:.2f}" in table and f"{100 * fused['accuracy']:.2f}" in table
    assert result["results"]["filled"] == result["results"]["rows"] == 2

    again = reproduce.reproduce("009", folder=folder, runs="runs")
    assert [s["result"] for s in again["steps"]] == ["done already", "done already"]


def test_a_failing_step_is_logged_and_the_others_run(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    folder = tmp_path / "thesis009"
    folder.mkdir()
    (folder / "late_fusion_x.yaml").write_text(yaml.safe_dump({
        "name": "late_fusion_x", "reproduces": {"thesis": "009", "table": "T", "row": "x", "value": 1.0},
        "method": "average", "runs": ["missing_a", "missing_b"]}))
    (folder / "late_fusion_y.yaml").write_text(yaml.safe_dump({
        "name": "late_fusion_y", "reproduces": {"thesis": "009", "table": "T", "row": "y", "value": 1.0},
        "method": "average", "runs": ["a", "b"]}))
    (folder / reproduce.PLAN).write_text(yaml.safe_dump({"steps": [{"run": ["late_fusion_x", "late_fusion_y"]}]}))
    rng = np.random.default_rng(1)
    _member(tmp_path / "runs" / "a", 0.5, rng)
    _member(tmp_path / "runs" / "b", 0.5, rng)
    result = reproduce.reproduce("009", folder=folder, runs="runs")
    assert result["failed"] == ["late_fusion_x"]
    assert (tmp_path / "runs" / "late_fusion_y" / "metrics.json").is_file()
    (line,) = (tmp_path / "runs" / "failures.jsonl").read_text().splitlines()
    assert "missing_a" in json.loads(line)["error"]


def test_smoke_datasets_are_checked_when_the_plan_is_read(tmp_path):
    """A plan's smoke data goes through the dataset registry: the thesis plans' option names and
    values are valid, and an unknown dataset, option name or value fails when the plan is read."""
    for thesis in ("000", "001", "002"):
        found = reproduce.smoke_options(reproduce.read_plan(EXPERIMENTS / f"thesis{thesis}", DATASETS)["smoke"], DATASETS)
        assert found and all(out.startswith("data/") for *_, out in found.values())
    assert found["bu4dfe"][2].augment_methods == ("flip", "rotate_left", "rotate_right")
    for smoke, match in [({"nope": {"out": "x"}}, "unknown dataset 'nope'"),
                         ({"afew": {"out": "x", "prepare": {"face_sise": 32}}}, "unknown option 'face_sise'"),
                         ({"afew": {"out": "x", "prepare": ["-j", 2]}}, "afew"),
                         ({"bu4dfe": {"out": "x", "synth": {"min_frames": 10}}}, "min_frames"),
                         ({"bu4dfe": {"out": "x", "prepare": {"trim_threshold": 0.5}}}, "unknown option"),
                         ({"bu4dfe": {"out": "x", "prepare": {"threshold": 0}}}, "trim option threshold"),
                         ({"fer2013": {"out": "x", "prepare": {"image_size": 8}}}, "fer2013 option image_size")]:
        (tmp_path / reproduce.PLAN).write_text(yaml.safe_dump({"steps": [], "smoke": {"datasets": smoke}}))
        with pytest.raises(ValueError, match=match):
            reproduce.read_plan(tmp_path, DATASETS)
        reproduce.read_plan(tmp_path)  # without the registry only the plan's own keys are checked


def _smoke_rows(thesis, tmp_path, monkeypatch) -> list[dict]:
    """The results rows of a from-scratch smoke reproduction of ``thesis`` run in ``tmp_path``."""
    monkeypatch.chdir(tmp_path)
    (tmp_path / "experiments").symlink_to(EXPERIMENTS)
    result = reproduce.reproduce(thesis, smoke=True, datasets=DATASETS, random_init=True)
    assert not result["failed"], result["failed"]
    with open(result["table"].replace(".md", ".csv"), newline="") as f:
        return list(csv.DictReader(f))


@pytest.mark.slow
def test_thesis002_smoke_fills_every_row(tmp_path, monkeypatch):
    """make reproduce THESIS=002 SMOKE=1 from scratch: every row its files name gets a number, the
    development rows without a thesis value and the final LSTM's fold table included."""
    from fer_keras import results

    rows = _smoke_rows("002", tmp_path, monkeypatch)
    expected = results.expected_rows(EXPERIMENTS / "thesis002")
    assert sorted((r["table"], r["row"]) for r in rows) == sorted((e["table"], e["row"]) for e in expected)
    assert sum(r["table"].startswith(("Table 3.6", "Table 3.7")) for r in rows) == 5 + 15
    assert all(r["status"] == "ok" and r["ours"] for r in rows), [r["row"] for r in rows if not r["ours"]]


@pytest.mark.slow
def test_thesis001_smoke_fills_every_row(tmp_path, monkeypatch):
    """make reproduce THESIS=001 SMOKE=1 from scratch: the three synthetic valence/arousal sets
    (joystick logs, Aff-Wild folders, AffectNet CSVs) prepared, the grid, every Table 1 model
    trained (the AffWildNet row from a random start), each tested on Aff-Wild and the CNN on
    AffectNet: every column of Tables 1-5 gets our number."""
    from fer_keras import config

    rows = _smoke_rows("001", tmp_path, monkeypatch)
    numbers = []  # (table, row, metric) of every thesis number the files name: one CSV row each
    for path in sorted((EXPERIMENTS / "thesis001").glob("*.yaml")):
        if path.name != reproduce.PLAN:
            ref = config.load(path).reproduces
            numbers += [(c.get("table", ref.table), ref.row, c["metric"]) for c in ref.columns or
                        [{"metric": ref.metric}]]
    assert sorted((r["table"], r["row"], r["metric"]) for r in rows) == sorted(numbers)
    assert all(r["status"] == "ok" and r["ours"] for r in rows), [r["row"] for r in rows if not r["ours"]]
    assert {r["table"].split(" (")[0] for r in rows} >= {f"§6.7 Table {k}" for k in range(1, 6)}


@pytest.mark.slow
def test_thesis003_smoke_fills_every_row(tmp_path, monkeypatch):
    """make reproduce THESIS=003 SMOKE=1 from scratch: the synthetic set with categories prepared,
    each frozen CNN's features cached, the 18 models trained on them and each evaluated on the
    training and test splits: every column of Tables 5.1-5.7 and C.1-C.8 gets our number, the
    baselines and macro F1 beside the category rows included."""
    from fer_keras import config

    rows = _smoke_rows("003", tmp_path, monkeypatch)
    numbers = []  # (table, row, metric) of every number the files name: one CSV row each
    for path in sorted((EXPERIMENTS / "thesis003").glob("*.yaml")):
        if path.name != reproduce.PLAN:
            ref = config.load(path).reproduces
            numbers += [(c.get("table") or ref.table, c.get("row") or ref.row, c["metric"]) for c in ref.columns]
    assert sorted((r["table"], r["row"], r["metric"]) for r in rows) == sorted(numbers)
    assert all(r["status"] == "ok" and r["ours"] for r in rows), [(r["table"], r["row"]) for r in rows if not r["ours"]]
    tables = {r["table"].split(" (")[0] for r in rows}
    assert tables == {f"Table 5.{k}" for k in range(1, 8)} | {f"Table C.{k}" for k in range(1, 9)}


@pytest.mark.slow
def test_thesis004_smoke_fills_every_row(tmp_path, monkeypatch):
    """make reproduce THESIS=004 SMOKE=1 from scratch: the synthetic EmotioNet served from
    127.0.0.1, downloaded and prepared three ways (60 AUs, 11 AUs, valence/arousal), every file
    trained and evaluated: every thesis number of Tables 3-6 and §5.1.2 gets ours beside it, and
    every figure row its test metrics."""
    from fer_keras import config

    rows = _smoke_rows("004", tmp_path, monkeypatch)
    numbers = []  # (table, row, metric, thesis value) of every column the files name: one CSV row each
    for path in sorted((EXPERIMENTS / "thesis004").glob("*.yaml")):
        if path.name != reproduce.PLAN:
            ref = config.load(path).reproduces
            numbers += [(c.get("table") or ref.table, ref.row, c["metric"], c.get("value")) for c in ref.columns]
    assert sorted((r["table"], r["row"], r["metric"]) for r in rows) == sorted(n[:3] for n in numbers)
    given = {n[:3] for n in numbers if n[3] is not None or n[2] in ("au.mean_f1", "va.sequence.pooled.mse")}
    assert all(r["status"] == "ok" for r in rows)
    assert all(r["ours"] for r in rows if (r["table"], r["row"], r["metric"]) in given), \
        [(r["table"], r["row"], r["metric"]) for r in rows if not r["ours"]]
    tables = {r["table"].split(" (")[0] for r in rows}
    assert tables == {"Table 3", "Table 4", "Table 5", "Table 6", "§5.1.2"} | {f"Figure {k}" for k in (13, 14, 15, 16)}


def test_thesis001_smoke_cnn_rows(tmp_path, monkeypatch):
    """The fast part of thesis 001's smoke run: the synthetic sets prepared, the VGG16 CNN trained
    on the 4K stand-in and tested there and on AffectNet's still images (protocol evaluate,
    repeat_frames): Table 5's two rows get numbers."""
    monkeypatch.chdir(tmp_path)
    (tmp_path / "experiments").symlink_to(EXPERIMENTS)
    result = reproduce.reproduce("001", smoke=True, datasets=DATASETS, random_init=True,
                                 only=["vgg16_cnn", "vgg16_cnn_on_affectnet"])
    assert not result["failed"], result["failed"]
    with open(result["table"].replace(".md", ".csv"), newline="") as f:
        rows = [r for r in csv.DictReader(f) if r["table"].startswith("§6.7 Table 5")]
    assert len(rows) == 4 and all(r["status"] == "ok" and r["ours"] for r in rows), rows
    on = json.loads((tmp_path / "runs/smoke/vgg16_cnn_on_affectnet/metrics.json").read_text())
    assert on["split"] == "val" and on["va"]["frame"]["n"] == on["n_videos"]  # one frame per image


def test_fuse_command_runs_a_late_fusion_file(tmp_path, capsys):
    from fer_keras.cli import main

    rng = np.random.default_rng(2)
    _member(tmp_path / "runs" / "a", 0.5, rng)
    _member(tmp_path / "runs" / "b", 0.25, rng)
    spec = {"name": "late_fusion_ab", "reproduces": {"thesis": "009", "table": "T", "row": "a+b", "value": 30.0},
            "method": "max", "runs": ["a", "b"], "options": {}}
    path = tmp_path / "late_fusion_ab.yaml"
    path.write_text(yaml.safe_dump(spec))
    assert main(["fuse", str(path), "--runs", str(tmp_path / "runs")]) == 0
    metrics = json.loads((tmp_path / "runs" / "late_fusion_ab" / "metrics.json").read_text())
    assert metrics["method"] == "max" and metrics["reference"]["value"] == 30.0
    assert "late_fusion_ab" in capsys.readouterr().out
    path.write_text(yaml.safe_dump({**spec, "optoins": {}}))
    assert main(["fuse", str(path), "--runs", str(tmp_path / "runs")]) == 2
    assert "unknown key(s) optoins" in capsys.readouterr().err


@pytest.mark.slow
def test_thesis000_smoke_fills_every_row(tmp_path, monkeypatch):
    """make reproduce THESIS=000 SMOKE=1 from scratch: every training and late-fusion file of thesis 000
    runs (early fusion restoring its audio and temporal runs) and its row gets our number."""
    rows = _smoke_rows("000", tmp_path, monkeypatch)
    files = [p for p in (EXPERIMENTS / "thesis000").glob("*.yaml") if p.name != reproduce.PLAN]
    assert len(rows) == len(files)
    assert all(r["status"] == "ok" and r["ours"] for r in rows), [r["row"] for r in rows if not r["ours"]]
    for run in tmp_path.glob("runs/smoke000/early_fusion_option[234]*"):
        assert json.loads((run / "init.json").read_text()), run  # the audio GRU and the CNN were restored


def test_each_step_runs_in_its_own_process_and_a_dead_one_is_an_error():
    """Steps run isolated (no memory carried from step to step); a process killed mid-step (as the
    kernel's OOM killer would) comes back as an exception, logged like any failed step."""
    import os
    from concurrent.futures.process import BrokenProcessPool

    assert reproduce._isolated(os.getpid) != os.getpid()
    with pytest.raises(ValueError, match="invalid literal"):
        reproduce._isolated(int, "seven")
    with pytest.raises(BrokenProcessPool):
        reproduce._isolated(os._exit, 9)


THESIS002_PRETRAINED = {"vggface_fer2013_phase1": "vggface_vgg16", "vgg16_fer2013_phase1": "vgg16",
                        "resnet50_fer2013_phase1": "resnet50"}


def _recorded_steps(monkeypatch) -> list:
    """Each step's arguments, recorded instead of run (no training)."""
    calls = []
    monkeypatch.setattr(reproduce, "_isolated", lambda fn, *args: calls.append(args) or "recorded")
    return calls


def test_pretrained_steps_without_weights_are_refused_before_any_step(tmp_path, monkeypatch):
    """Thesis 002's phase-1 files start their backbones from weights: null; phases 2 and 3 inherit
    (weights_from). Without a file per backbone nothing runs and the error says what to pass."""
    calls = _recorded_steps(monkeypatch)
    folder = EXPERIMENTS / "thesis002"
    assert reproduce.pretrained_steps(folder, reproduce.read_plan(folder)) == THESIS002_PRETRAINED
    with pytest.raises(ValueError, match="3 step") as err:
        reproduce.reproduce("002", folder=folder, runs=tmp_path / "runs")
    message = str(err.value)
    assert all(f"{backbone} ({step})" in message for step, backbone in THESIS002_PRETRAINED.items())
    assert "phase2" not in message and "phase3" not in message and "--random-init" in message
    assert "--weights vggface_vgg16=/path/to/rcmalli_vggface_tf_notop_vgg16.h5 vgg16=" in message
    weights = tmp_path / "vggface.h5"
    weights.write_bytes(b"vggface")
    with pytest.raises(ValueError, match=r"2 step.*: vgg16 \(vgg16_fer2013_phase1\); resnet50"):
        reproduce.reproduce("002", folder=folder, runs=tmp_path / "runs", weights={"vggface_vgg16": weights})
    monkeypatch.chdir(tmp_path)
    with pytest.raises(ValueError, match="--random-init"):  # smoke runs too, before their data is written
        reproduce.reproduce("002", folder=folder, smoke=True, datasets=DATASETS)
    assert not calls and not (tmp_path / "runs").exists() and not (tmp_path / "data").exists()


def test_weights_go_to_the_pretrained_steps_and_the_log(tmp_path, monkeypatch, caplog):
    """A --weights file is set into the steps that start its backbone (not the weights_from ones),
    a file no step uses is a warning, --random-init lets the rest start at random, and the log
    records both."""
    import hashlib

    calls = _recorded_steps(monkeypatch)
    folder = EXPERIMENTS / "thesis002"
    vggface, vgg19 = tmp_path / "vggface.h5", tmp_path / "vgg19.h5"
    vggface.write_bytes(b"vggface")
    vgg19.write_bytes(b"vgg19")
    weights = {"vggface_vgg16": str(vggface), "vgg19": str(vgg19)}
    for name in ("vggface_fer2013_phase1", "vgg16_fer2013_phase1", "vggface_fer2013_phase2", "vggface_lstm"):
        raw = reproduce.experiment_raw(folder, name, weights=weights)
        assert raw["model"].get("options", {}).get("weights") == (str(vggface) if name == "vggface_fer2013_phase1" else None)
    only = [*THESIS002_PRETRAINED, "vggface_fer2013_phase2"]
    with caplog.at_level("WARNING"):
        result = reproduce.reproduce("002", folder=folder, runs=tmp_path / "runs", only=only, weights=weights,
                                     random_init=True)
    assert not result["failed"] and "--weights vgg19: no step" in caplog.text
    resolved = {k: str(Path(v).resolve()) for k, v in weights.items()}
    assert [(args[1], args[5]) for args in calls] == [(name, resolved) for name in only]  # run_experiment's
    log = json.loads((tmp_path / "runs" / "reproduce-002.json").read_text())
    assert log["random_init"] is True
    assert log["weights"]["vggface_vgg16"] == {"path": str(vggface.resolve()),
                                               "sha256": hashlib.sha256(b"vggface").hexdigest()}


def test_bad_weights_options_are_refused(tmp_path, capsys):
    from fer_keras.cli import main

    folder = EXPERIMENTS / "thesis002"
    weights = tmp_path / "w.h5"
    weights.write_bytes(b"w")
    with pytest.raises(ValueError, match="unknown backbone 'vggfce'; known: .*vggface_vgg16"):
        reproduce.reproduce("002", folder=folder, runs=tmp_path / "runs", weights={"vggfce": weights}, random_init=True)
    with pytest.raises(FileNotFoundError, match="--weights vgg16=.*none.h5: no such weights file"):
        reproduce.reproduce("002", folder=folder, runs=tmp_path / "runs", weights={"vgg16": tmp_path / "none.h5"},
                            random_init=True)
    assert main(["reproduce", "002", "--experiments", str(folder), "--runs", str(tmp_path / "runs"),
                 "--weights", f"vgg16={weights}"]) == 2
    assert "error: " in (err := capsys.readouterr().err) and "vggface_vgg16 (vggface_fer2013_phase1)" in err
    with pytest.raises(SystemExit):
        main(["reproduce", "002", "--weights", str(weights)])
    assert "expected NAME=FILE" in capsys.readouterr().err
    assert not (tmp_path / "runs").exists()


def test_thesis000_rows_come_in_the_thesis_order():
    """results-000.md lists §6.2 Table 1 as the thesis prints it: Runs One* to Sixteen."""
    from fer_keras import results

    rows = [r["row"] for r in results.expected_rows(EXPERIMENTS / "thesis000")
            if r["table"].startswith("§6.2 Table 1 ")]
    assert [r.split()[1].rstrip("*") for r in rows] == [
        "One", "Two", "Three", "Four", "Five", "Six", "Seven", "Eight", "Nine", "Ten", "Eleven", "Twelve",
        "Thirteen", "Fourteen", "Fifteen", "Sixteen"]


SMOKE_DATA = ("import json, sys; from data_prep.registry import DATASETS; from fer_keras import reproduce; "
              "reproduce.prepare_smoke(json.loads(sys.argv[1]), {}, DATASETS)")


def _smoke_data(root):
    """{video key: (status, label, parsed record or None)} of a prepared dataset, and its split file."""
    import tensorflow as tf

    info = json.loads((root / "manifest.json").read_text())
    records = {}
    for rel in info["files"]:
        for raw in tf.data.TFRecordDataset(str(root / rel)):
            example = tf.train.SequenceExample.FromString(raw.numpy())
            records[example.context.feature["video_id"].bytes_list.value[0].decode()] = example
    videos = {key: (v["status"], v.get("label"), records.get(v["id"])) for key, v in info["videos"].items()}
    return videos, json.loads((root / "splits.json").read_text())


@pytest.mark.slow
def test_smoke_data_killed_anywhere_is_finished_by_a_rerun(tmp_path):
    """The thesis 002 smoke run killed while its BU-4DFE set was written or prepared (SIGKILL at
    moments drawn over the uninterrupted run's time): the rerun ends with the same dataset, original
    training videos and augmented copies alike, and the same k-fold file."""
    import os
    import random
    import signal
    import subprocess
    import sys
    import time

    def smoke(out):
        return {"folds": 2, "datasets": {"bu4dfe": {
            "out": str(out), "prepare": {"face_size": 32, "augment": "faithful", "augment_methods": ["flip"],
                                         "shard_size": 4},
            "synth": {"subjects": ["F001", "F011", "F028"], "min_frames": 40, "max_frames": 40,
                      "long_video": 0, "broken": False}}}}

    def command(out):
        return subprocess.Popen([sys.executable, "-c", SMOKE_DATA, json.dumps(smoke(out))], cwd=tmp_path,
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)

    start = time.perf_counter()
    assert command(tmp_path / "whole").wait() == 0
    took = time.perf_counter() - start
    expected = _smoke_data(tmp_path / "whole")
    killed = tmp_path / "killed"
    for moment in sorted(random.Random(0).uniform(0.3, 0.95) * took for _ in range(3)):
        proc = command(killed)
        time.sleep(moment)
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
    assert command(killed).wait() == 0
    assert _smoke_data(killed) == expected
    assert sum(status == "ok" for key, (status, *_) in expected[0].items() if key.startswith("train/")) == 12


def test_thesis004_smoke_au_rows(tmp_path, monkeypatch):
    """The fast part of thesis 004's smoke run: the synthetic EmotioNet served from 127.0.0.1,
    downloaded and prepared with the 11 AUs only (what the one file reads), VGG 16 trained from
    random weights and evaluated: Table 5's and Table 6's VGG 16 columns get numbers."""
    monkeypatch.chdir(tmp_path)
    (tmp_path / "experiments").symlink_to(EXPERIMENTS)
    result = reproduce.reproduce("004", smoke=True, datasets=DATASETS, random_init=True, only=["vgg16_au_11"])
    assert not result["failed"], result["failed"]
    assert sorted(p.name for p in (tmp_path / "data/smoke").iterdir()) == ["emotionet_11"]  # only what it reads
    with open(result["table"].replace(".md", ".csv"), newline="") as f:
        rows = [r for r in csv.DictReader(f) if r["row"] == "VGG 16" and r["table"].startswith(("Table 5", "Table 6"))]
    thesis = [r for r in rows if r["thesis_value"]]
    assert len(thesis) == 10 and all(r["status"] == "ok" and r["ours"] for r in thesis), rows
    metrics = json.loads((tmp_path / "runs/smoke/vgg16_au_11/metrics.json").read_text())
    au = metrics["au"]
    assert au["tp"] + au["fp"] + au["tn"] + au["fn"] == 11 * au["n_examples"]  # one exact pass, 11 AUs each
