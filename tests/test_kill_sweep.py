"""Kill anywhere, resume to the same result: crash-point sweeps (tests/killsweep.py) over commands
researchers run for hours. Each uninterrupted run is compared with runs killed by SIGKILL at drawn
moments and resumed: the same files, the same values (training to float tolerance, since
TensorFlow on CPU is not bit-stable across processes), no duplicated history rows."""
import csv
import json

import h5py
import numpy as np
import pytest
import tensorflow as tf
import yaml
from conftest import write_feature_folds
from killsweep import at_points, chain, finish, in_turn, start, sweep, whole
from test_cv import experiment, write_cv_dataset

from fer_keras import cv
from fer_keras.data.manifest import FAILURES

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
    argv = lambda out: ["-m", "fer_keras.cli", "cv", str(config), "--out", str(out)]  # noqa: E731
    figures = sweep(argv, tmp_path, 6, compare_cv)
    print("cv sweep:", figures)
    assert figures["identical"] == 6 and figures["killed_running"] >= 5
    points = at_points(argv, tmp_path, ["folds_trained@1", "folds_trained@2", "result"], compare_cv)
    print("cv named points:", points)
    assert points["identical"] == 3


def compare_train(whole, resumed):
    same_table(whole / "history.csv", resumed / "history.csv")
    state = [json.loads((d / "state.json").read_text()) for d in (whole, resumed)]
    for key in ("stages_done", "epochs_done", "steps_done", "stages"):
        assert state[0][key] == state[1][key], key
    same_table(whole / "predictions.csv", resumed / "predictions.csv")
    metrics = [json.loads((d / "metrics.json").read_text()) for d in (whole, resumed)]
    assert metrics[0]["accuracy"] == metrics[1]["accuracy"]


def staged_training(tmp_path):
    """`fer-keras train` argv of two stages, early stopping ending a stage, a decaying schedule and
    the evaluation after it, on tiny feature folds."""
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
    return lambda out: ["-m", "fer_keras.cli", "train", str(config), "--run-dir", str(out)]


def test_staged_training_killed_at_named_points_resumes_to_the_same_result(tmp_path):
    """The fast form: one staged training killed between an epoch's history row and best.keras
    (its second epoch), then, resumed, between best.keras and the backup (the resume's fourth
    epoch), then before metrics.json: the last resume ends as the uninterrupted run, with no
    duplicated row."""
    figures = in_turn(staged_training(tmp_path), tmp_path, ["epoch_logged@2", "epoch_checkpointed@4", "result"],
                      compare_train)
    assert figures["identical"] == 3


@pytest.mark.slow
def test_staged_training_killed_anywhere_resumes_to_the_same_result(tmp_path):
    """Staged training (as above) killed at 6 drawn moments: each resumed run ends as the
    uninterrupted one."""
    figures = sweep(staged_training(tmp_path), tmp_path, 6, compare_train, seed=1)
    print("train sweep:", figures)
    assert figures["identical"] == 6 and figures["killed_running"] >= 5


PREPARE = ("import sys; from data_prep.registry import dataset; d = dataset(sys.argv[1]); "
           "d.prepare(sys.argv[2], sys.argv[3], d.make_options(d.small), progress=False)")


def compare_prepared(whole, resumed, files=("manifest.json", FAILURES)):
    """The same video statuses, failures.jsonl lines (paths under each run's folder compared as
    one) and shards: the same names holding the same parsed records in the same order. ``files``:
    the manifest and failure log compared (a share's: data_prep.store.part_files)."""
    manifest, failures_file = files
    infos = [json.loads((d / manifest).read_text()) for d in (whole, resumed)]
    status = [{k: (v["status"], v.get("reason"), v.get("label")) for k, v in i["videos"].items()} for i in infos]
    assert status[0] == status[1]
    failures = [sorted((d / failures_file).read_text().replace(str(d.parent), "<work>").splitlines())
                if (d / failures_file).exists() else [] for d in (whole, resumed)]
    assert failures[0] == failures[1], f"{resumed / failures_file}: not the uninterrupted run's lines"
    assert infos[0]["splits"] == infos[1]["splits"]
    for rel in (s for info in infos[0]["splits"].values() for s in info["shards"]):
        records = [[tf.train.SequenceExample.FromString(raw.numpy()) for raw in tf.data.TFRecordDataset(str(d / rel))]
                   for d in (whole, resumed)]
        assert records[0] == records[1], f"{resumed / rel}: not the uninterrupted run's records in its order"


@pytest.mark.slow
@pytest.mark.parametrize("name", ["afew", "bu4dfe", "emotionet", "fer2013", "va"])
def test_prepare_killed_anywhere_resumes_to_the_same_dataset(tmp_path, name):
    """`prepare` of each registered dataset's small synthetic set, killed at 3 drawn moments:
    each resumed preparation holds the same records (parsed) and the same video statuses (va:
    Aff-Wild2's layout, a two-person video's tracks and long tracks' segment records)."""
    from data_prep.registry import dataset

    entry = dataset(name)
    src = tmp_path / entry.synthetic_source
    entry.synthetic.synth(str(src), entry.synthetic.make_spec(entry.synthetic.small))
    argv = lambda out: ["-c", PREPARE, name, str(src), str(out)]  # noqa: E731
    figures = sweep(argv, tmp_path, 3, compare_prepared)
    print(f"prepare {name} sweep:", figures)
    assert figures["identical"] == 3
    points = at_points(argv, tmp_path, ["shard_renamed@1", "shard_renamed@2"], compare_prepared)
    assert points["identical"] == 2


def compare_features(whole, resumed):
    from test_feature_extraction import assert_same_file

    names = sorted(p.name for p in whole.iterdir())
    assert sorted(p.name for p in resumed.iterdir()) == names, f"{resumed}: other files than {names}"
    for name in names:
        if name.endswith(".h5"):
            assert_same_file(whole / name, resumed / name)
    infos = [json.loads((d / "features.json").read_text()) for d in (whole, resumed)]
    assert infos[0].keys() == infos[1].keys()


@pytest.mark.slow
def test_features_killed_anywhere_resume_to_the_same_files(tmp_path):
    """`fer-keras features` (one file per fold and the test set, batch by batch) killed at 3 drawn
    moments and between a file's rename and its features.json record: the same files, bit for bit."""
    import keras
    from test_feature_extraction import FOLD_OF, TEST, T, tiny_classifier, write_dataset, write_run_dir

    data = tmp_path / "bu4dfe_prepared"
    write_dataset(str(data), list(TEST) + list(FOLD_OF), lambda k: 3 + (5 * k) % 10)
    keras.utils.set_random_seed(0)
    run = write_run_dir(tmp_path / "fer2013_run", tiny_classifier())
    argv = lambda out: ["-m", "fer_keras.cli", "features", run, "--data", str(data), "--out", str(out),  # noqa: E731
                        "--seq-len", str(T), "--batch", "1", "-q"]
    figures = sweep(argv, tmp_path, 3, compare_features)
    print("features sweep:", figures)
    assert figures["identical"] == 3
    points = at_points(argv, tmp_path, ["features_renamed@1", "features_renamed@4"], compare_features)
    assert points["identical"] == 2


@pytest.mark.slow
def test_track_features_killed_anywhere_resume_to_the_same_files(prepared_va_categories, tmp_path):
    """Thesis 003's `fer-keras features` (a random, seeded CNN over every frame of valence/arousal
    tracks, rows of 4 frames with their labels, one file per split, a video at a time) killed at 3
    drawn moments and between a file's rename and its record: the same files, bit for bit."""
    import yaml
    from test_cached_features import experiment

    source = tmp_path / "source.yaml"
    source.write_text(yaml.safe_dump(experiment(prepared_va_categories[0], model_cached=False)))
    argv = lambda out: ["-m", "fer_keras.cli", "features", str(source), "--data", prepared_va_categories[0],  # noqa: E731
                        "--out", str(out), "--seq-len", "4", "--batch", "1", "-q"]
    figures = sweep(argv, tmp_path, 3, compare_features)
    print("track features sweep:", figures)
    assert figures["identical"] == 3
    assert at_points(argv, tmp_path, ["features_renamed@1"], compare_features)["identical"] == 1


def compare_search(whole, resumed):
    import yaml

    same_table(whole / "trials.csv", resumed / "trials.csv")
    best = [yaml.safe_load((d / "best_hyperparameters.yaml").read_text()) for d in (whole, resumed)]
    assert best[0]["trial_id"] == best[1]["trial_id"] and best[0]["hyperparameters"] == best[1]["hyperparameters"]
    search = [json.loads((d / "search.json").read_text()) for d in (whole, resumed)]
    assert {k: v for k, v in search[0].items() if k != "score"} == {k: v for k, v in search[1].items() if k != "score"}
    assert search[0]["score"] == pytest.approx(search[1]["score"], rel=1e-4)


@pytest.mark.slow
def test_tune_killed_anywhere_resumes_to_the_same_search(prepared_afew, tmp_path):
    """`fer-keras tune` (two KerasTuner trials of the tiny audio GRU) killed at 4 drawn moments and
    before search.json, the file that marks a search done: the same trials, scores and best."""
    from test_tuning import _experiment

    from fer_keras import config as cfg

    config = tmp_path / "search.yaml"
    cfg.save(_experiment(prepared_afew[0]), config)
    argv = lambda out: ["-m", "fer_keras.cli", "tune", str(config), "--out", str(out)]  # noqa: E731
    figures = sweep(argv, tmp_path, 4, compare_search)
    print("tune sweep:", figures)
    assert figures["identical"] == 4
    points = at_points(argv, tmp_path, ["result"], compare_search)
    assert points["identical"] == 1


REPRODUCE = ("import os, sys; from pathlib import Path; from fer_keras.cli import main; out = Path(sys.argv[1]); "
             "out.mkdir(parents=True, exist_ok=True); os.chdir(out); "
             "Path('experiments').exists() or Path('experiments').symlink_to(sys.argv[2]); "
             "sys.exit(main(['reproduce', '002', '--smoke', '--random-init', *sys.argv[3:]]))")


def compare_reproduced(whole, resumed):
    """The same results table, every run's history, prepared data and feature files, and no step
    logged as failed."""
    runs = "runs/smoke"
    logs = [json.loads((d / runs / "reproduce-002.json").read_text()) for d in (whole, resumed)]
    assert logs[0]["failed"] == logs[1]["failed"] == [] and [s["step"] for s in logs[0]["steps"]] == [s["step"] for s in logs[1]["steps"]]
    assert not (resumed / runs / "failures.jsonl").exists() or not (resumed / runs / "failures.jsonl").read_text()
    same_table(whole / runs / "results-002.csv", resumed / runs / "results-002.csv")
    for best in sorted(p.relative_to(whole) for p in (whole / runs).rglob("best_hyperparameters.yaml")):
        trials = [yaml.safe_load((d / best).read_text())["trial_id"] for d in (whole, resumed)]
        assert trials[0] == trials[1], f"{resumed / best}: trial {trials[1]}, not {trials[0]}"
    for table in ("history.csv", "predictions.csv"):
        files = sorted(p.relative_to(whole) for p in (whole / runs).rglob(table))
        assert files == sorted(p.relative_to(resumed) for p in (resumed / runs).rglob(table))
        for rel in files:
            same_table(whole / rel, resumed / rel)
    for name in ("fer2013_prepared", "bu4dfe_prepared"):
        compare_prepared(whole / "data/smoke" / name, resumed / "data/smoke" / name)
    features = [sorted(p.name for p in (d / "data/smoke/bu4dfe_features").glob("*.h5")) for d in (whole, resumed)]
    assert features[0] == features[1]
    for name in features[0]:
        with h5py.File(whole / "data/smoke/bu4dfe_features" / name) as a, \
                h5py.File(resumed / "data/smoke/bu4dfe_features" / name) as b:
            for key in a:
                x, y = a[key][()], b[key][()]
                same = np.allclose(x, y, rtol=1e-4, atol=1e-6) if x.dtype.kind == "f" else np.array_equal(x, y)
                assert same, f"{resumed}/data/smoke/bu4dfe_features/{name}: {key} differs"


@pytest.fixture(scope="module")
def reproduced_002(tmp_path_factory):
    """(work folder, argv, seconds) of an uninterrupted `fer-keras reproduce 002 --smoke` in work/whole."""
    from test_reproduce import EXPERIMENTS

    work = tmp_path_factory.mktemp("reproduce002")
    argv = lambda out, *more: ["-c", REPRODUCE, str(out), str(EXPERIMENTS), *more]  # noqa: E731
    return work, argv, whole(argv, work)


@pytest.mark.slow
def test_thesis002_smoke_killed_20_times_resumes_to_the_same_tables(reproduced_002):
    """`fer-keras reproduce 002 --smoke` (data preparation, searches, trainings, feature extraction,
    cross-validations, fusions, results table) killed at least 20 times in a row at drawn moments
    spread over its run time, each kill followed by a resume: the last resume ends as the
    uninterrupted run (the same tables, histories, predictions and prepared shards), with no step
    logged as failed. About four uninterrupted runs of time."""
    import re
    import time

    tmp_path, argv, took = reproduced_002
    began = time.perf_counter()
    finish(start(argv(tmp_path / "whole"), tmp_path), "a rerun with every step done")
    restart = time.perf_counter() - began  # a resume's start: TensorFlow, the plan, the done steps
    figures = chain(argv, tmp_path, 20, compare_reproduced, took, restart=restart, seed=2)
    cut = [len(re.findall(rb"^\[\d+\] ", (tmp_path / f"chained-{i}.log").read_bytes(), re.M))
           for i in range(figures["kill_points"])]
    figures.update(seconds=round(took, 1), restart=round(restart, 1), steps_done_at_each_kill=cut)
    print("reproduce 002 --smoke chain:", figures)
    (tmp_path.parent / "reproduce-002-chain.json").write_text(json.dumps(figures))
    assert figures["kill_points"] >= 20 and figures["identical"] == figures["kill_points"]


@pytest.mark.slow
def test_thesis002_convlstm_killed_between_its_folds_and_its_fold_table(reproduced_002):
    """The reported case: `reproduce 002 --smoke` killed while the convlstm cross-validation was
    between its fold runs and its averaged history, and between its early-stopped fold runs and
    its fold table (its prepared data already there): the rerun finishes convlstm as the
    uninterrupted run did, one header per history.csv and no step logged as failed."""
    import shutil

    work, argv, _ = reproduced_002
    runs = "runs/smoke"

    def with_data(out):
        shutil.copytree(work / "whole" / "data", out / "data")

    def compare(whole_dir, resumed):
        log = json.loads((resumed / runs / "reproduce-002.json").read_text())
        assert log["failed"] == [] and [s["step"] for s in log["steps"]] == ["convlstm"]
        folds = sorted(p.relative_to(whole_dir) for p in (whole_dir / runs / "convlstm").rglob("history.csv"))
        assert len(folds) >= 5, folds  # two fold runs, two early-stopped, the final model
        for rel in folds:
            same_table(whole_dir / rel, resumed / rel)
        for name in (cv.HISTORY, "fold_table.csv", "predictions.csv"):
            same_table(whole_dir / runs / "convlstm" / name, resumed / runs / "convlstm" / name)

    points = at_points(lambda out: argv(out, "--only", "convlstm"), work, ["folds_trained@1", "folds_trained@2"],
                       compare, fresh=with_data)
    print("convlstm named points:", points)
    assert points["identical"] == 2
