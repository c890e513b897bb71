"""Kill anywhere, resume to the same result: crash-point sweeps (tests/killsweep.py) over commands
researchers run for hours. Each uninterrupted run is compared with runs killed by SIGKILL at drawn
moments and resumed: the same files, the same values (training to float tolerance, since
TensorFlow on CPU is not bit-stable across processes), no duplicated history rows."""
import csv
import json

import pytest
from conftest import write_feature_folds
from killsweep import sweep
from test_cv import experiment, write_cv_dataset

from fer_keras import cv

CV_RUNS = ["folds/fold-0", "folds/fold-1", "early_stopping/fold-0", "early_stopping/fold-1", "final"]


def _table(path):
    with open(path, newline="") as f:
        rows = list(csv.reader(f))
    return rows[0], rows[1:]


def same_table(a, b, rtol=1e-4):
    """The same header once, the same rows (numbers to ``rtol``)."""
    (ha, ra), (hb, rb) = _table(a), _table(b)
    assert ha == hb and len(ra) == len(rb), f"{b}: {len(rb)} rows under {hb}, expected {len(ra)} under {ha}"
    assert all(row != ha for row in rb), f"{b}: a second header"
    for x, y in zip(ra, rb):
        for u, v in zip(x, y):
            try:
                assert float(u) == pytest.approx(float(v), rel=rtol, abs=1e-6), f"{b}: {x} != {y}"
            except ValueError:
                assert u == v, f"{b}: {x} != {y}"


def compare_cv(whole, resumed):
    for run in CV_RUNS:
        same_table(whole / run / "history.csv", resumed / run / "history.csv")
        state = [json.loads((d / run / "state.json").read_text()) for d in (whole, resumed)]
        assert state[0]["epochs_done"] == state[1]["epochs_done"] and state[0]["stages"] == state[1]["stages"]
    for name in (cv.HISTORY, "fold_table.csv", "predictions.csv"):
        same_table(whole / name, resumed / name)
    metrics = [json.loads((d / "metrics.json").read_text()) for d in (whole, resumed)]
    assert metrics[0]["accuracy"] == metrics[1]["accuracy"] and metrics[0]["n_videos"] == metrics[1]["n_videos"]
    summary = [json.loads((d / cv.FOLDS_SUMMARY).read_text()) for d in (whole, resumed)]
    assert [f["epoch"] for f in summary[0]["folds"]] == [f["epoch"] for f in summary[1]["folds"]]


@pytest.mark.slow
def test_cv_all_phases_killed_anywhere_resumes_to_the_same_result(tmp_path):
    """`fer-keras cv` (folds, early-stopped folds, fold table, final model, evaluation) killed at
    6 drawn moments: each resumed run ends as the uninterrupted one (thesis 002's convlstm case:
    a kill between the fold runs and the fold table)."""
    root = write_cv_dataset(tmp_path / "data", [["A", "B"], ["C", "D"]])
    config = tmp_path / "tiny_cv.yaml"
    config.write_text(json.dumps(experiment(root, epochs=3)))
    figures = sweep(lambda out: ["-m", "fer_keras.cli", "cv", str(config), "--out", str(out)], tmp_path, 6,
                    compare_cv)
    print("cv sweep:", figures)
    assert figures["identical"] == 6 and figures["killed_running"] >= 5


def compare_train(whole, resumed):
    same_table(whole / "history.csv", resumed / "history.csv")
    state = [json.loads((d / "state.json").read_text()) for d in (whole, resumed)]
    for key in ("stages_done", "epochs_done", "steps_done", "stages"):
        assert state[0][key] == state[1][key], key
    same_table(whole / "predictions.csv", resumed / "predictions.csv")
    metrics = [json.loads((d / "metrics.json").read_text()) for d in (whole, resumed)]
    assert metrics[0]["accuracy"] == metrics[1]["accuracy"]


@pytest.mark.slow
def test_staged_training_killed_anywhere_resumes_to_the_same_result(tmp_path):
    """`fer-keras train` with two stages, early stopping ending a stage, a decaying schedule and
    the evaluation after it, killed at 6 drawn moments: each resumed run ends as the uninterrupted one."""
    write_feature_folds(tmp_path, 16)
    config = tmp_path / "staged.yaml"
    config.write_text(json.dumps({
        "name": "staged",
        "data": {"root": str(tmp_path), "format": "hdf5", "train_split": "fold-1-features-6",
                 "val_split": "fold-2-features-6", "pipeline": {"seq_len": 10, "batch_size": 4}},
        "model": {"name": "cascade_lstm", "options": {"input_dim": 6, "seq_len": 10, "units": 4}},
        "training": {"stages": [{"epochs": 4}, {"epochs": 4}], "optimizer": {"learning_rate": 3e-2},
                     "schedule": {"name": "exponential", "decay_rate": 0.7, "decay_epochs": 1},
                     "early_stopping": {"enabled": True, "patience": 1, "ends": "stage"}, "verbose": 0},
        "evaluation": {"split": "fold-2-features-6"}}))
    figures = sweep(lambda out: ["-m", "fer_keras.cli", "train", str(config), "--run-dir", str(out)], tmp_path, 6,
                    compare_train, seed=1)
    print("train sweep:", figures)
    assert figures["identical"] == 6 and figures["killed_running"] >= 5


PREPARE = ("import sys; from data_prep.registry import dataset; d = dataset(sys.argv[1]); "
           "d.prepare(sys.argv[2], sys.argv[3], d.make_options(d.small), progress=False)")


def compare_prepared(whole, resumed):
    from test_datasets import _records

    infos = [json.loads((d / "manifest.json").read_text()) for d in (whole, resumed)]
    status = [{k: (v["status"], v.get("reason"), v.get("label")) for k, v in i["videos"].items()} for i in infos]
    assert status[0] == status[1]
    for split in infos[0]["splits"]:
        assert _records(whole, infos[0], split) == _records(resumed, infos[1], split), split


@pytest.mark.slow
@pytest.mark.parametrize("name", ["afew", "bu4dfe", "fer2013"])
def test_prepare_killed_anywhere_resumes_to_the_same_dataset(tmp_path, name):
    """`prepare` of each registered dataset's small synthetic set, killed at 3 drawn moments:
    each resumed preparation holds the same records (parsed) and the same video statuses."""
    from data_prep.registry import dataset

    entry = dataset(name)
    src = tmp_path / entry.synthetic_source
    entry.synthetic.synth(str(src), entry.synthetic.make_spec(entry.synthetic.small))
    figures = sweep(lambda out: ["-c", PREPARE, name, str(src), str(out)], tmp_path, 3, compare_prepared)
    print(f"prepare {name} sweep:", figures)
    assert figures["identical"] == 3
