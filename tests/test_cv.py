"""The cross-validation runner (fer_keras/cv.py, thesis 002 §3.2.2-§3.2.4): fold averaging, the
fold table and the final model's epochs, the final model's data, the error table of Fig. 3.29,
and a killed runner rerun against an uninterrupted one.

Datasets are written by hand (test_splits.write_dataset: 8x8 PNG frames); the real runs train a
C3D of a few hundred weights, so what costs time is TensorFlow tracing each run.
"""
import csv
import json
import os
from pathlib import Path

import numpy as np
import pytest
from test_splits import write_dataset

from fer_keras import cv, evaluation, training
from fer_keras.classes import BU4DFE
from fer_keras.cli import main
from fer_keras.data import loader, splits

TEST = ["T01", "T02"]


def write_cv_dataset(root, folds, test=TEST, test_in_train=()):
    """Three videos per subject (test subjects in split "test", unless in ``test_in_train``)
    and a split file with ``folds`` and ``test``."""
    entries = []
    for i, subject in enumerate([*test, *(s for f in folds for s in f)]):
        split = "test" if subject in test and subject not in test_in_train else "train"
        for j in range(3):
            label = (i + 2 * j) % 6
            vid = f"{subject}_{BU4DFE[label]}"
            entries.append({"key": f"{split}/{vid}", "id": vid, "subject": subject, "split": split,
                            "label": label, "status": "ok", "frames_kept": 4 + (i + j) % 3})
    os.makedirs(root, exist_ok=True)
    write_dataset(root, entries)
    splits.write(os.path.join(root, splits.SPLITS_FILE), {"test": list(test), "folds": folds, "unassigned": []})
    return root


def experiment(root, **training_opts):
    return {"name": "tiny_cv",
            "data": {"root": str(root), "test_split": "test",
                     "pipeline": {"seq_len": 4, "batch_size": 4, "padding": "zeros", "truncate": "end"}},
            "model": {"name": "c3d", "options": {"seq_len": 4, "input_size": 8, "filters": [2], "kernel": 1,
                                                  "dense": [4]}},
            "training": {"epochs": 1, "optimizer": {"learning_rate": 0.01}, "verbose": 0, **training_opts}}


def write_csv(path, header, rows):
    with open(path, "w", newline="") as f:
        csv.writer(f).writerows([header, *rows])


def read_csv(path):
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


# --- tables from run files --------------------------------------------------------------------

def test_fold_histories_are_averaged_epoch_by_epoch(tmp_path):
    header = ["epoch", "accuracy", "loss", "val_accuracy", "val_loss"]
    folds = [[[0, 0.2, 1.5, 0.1, 1.8], [1, 0.4, 1.1, 0.3, 1.6]],
             [[0, 0.4, 1.3, 0.3, 1.7], [1, 0.6, 0.9, 0.2, 1.2]],
             [[0, 0.3, 1.1, 0.2, 1.6], [1, 0.8, 0.7, 0.4, 1.4]]]
    paths = []
    for k, rows in enumerate(folds):
        paths.append(tmp_path / f"h{k}.csv")
        write_csv(paths[-1], header, rows)
    got_header, got = cv.average_histories(paths)
    assert got_header == ["epoch", "accuracy_mean", "accuracy_std", "loss_mean", "loss_std",
                          "val_accuracy_mean", "val_accuracy_std", "val_loss_mean", "val_loss_std"]
    # by hand: epoch 0 accuracy (0.2, 0.4, 0.3): mean 0.3, std sqrt((0.01 + 0.01 + 0) / 3)
    sd = lambda *v: np.sqrt(np.mean((np.array(v) - np.mean(v)) ** 2))  # noqa: E731
    want = [[0, 0.3, sd(.2, .4, .3), 1.3, sd(1.5, 1.3, 1.1), 0.2, sd(.1, .3, .2), 1.7, sd(1.8, 1.7, 1.6)],
            [1, 0.6, sd(.4, .6, .8), 0.9, sd(1.1, .9, .7), 0.3, sd(.3, .2, .4), 1.4, sd(1.6, 1.2, 1.4)]]
    np.testing.assert_allclose(got, want, atol=1e-12)
    assert np.isclose(want[0][2], np.sqrt(0.02 / 3))
    cv.plot_history(got_header, got, tmp_path / "cv.png")
    assert (tmp_path / "cv.png").stat().st_size > 1000

    write_csv(tmp_path / "short.csv", header, folds[0][:1])
    with pytest.raises(ValueError, match="short.csv: logged other epochs"):
        cv.average_histories([paths[0], tmp_path / "short.csv"])


def test_folds_summary_compares_the_best_or_the_plateau_as_the_file_says(tmp_path):
    """folds.json holds each fold's best and the plateau of the averaged curve (its last 5
    epochs), and compares the one ``reproduces.fold_value`` names with the thesis value."""
    from fer_keras import config as cfg

    rng = np.random.default_rng(1)
    curves = rng.uniform(0.2, 0.6, (3, 8))  # 3 folds x 8 epochs of val_accuracy
    paths = []
    for k, curve in enumerate(curves):
        paths.append(tmp_path / f"fold{k}.csv")
        write_csv(paths[-1], ["epoch", "accuracy", "val_accuracy"], [[e, 0.5, v] for e, v in enumerate(curve)])
    best, plateau = curves.max(axis=1).mean(), curves.mean(axis=0)[-5:].mean()
    for fold_value, ours in (("best", best), ("plateau", plateau)):
        exp = cfg.from_dict({"protocol": "cv_folds", "reproduces": {
            "thesis": "002", "table": "§5.2", "row": "C3D, online augmentation", "value": 40, "fold_value": fold_value}})
        summary = cv.folds_summary(exp, paths)
        assert summary["mean"] == pytest.approx(best) and summary["plateau"] == pytest.approx(plateau)
        assert summary["compared"] == fold_value and summary["reference"]["ours"] == pytest.approx(100 * ours)
    with pytest.raises(ValueError, match="fold_value must be one of best, plateau"):
        cfg.from_dict({"reproduces": {"fold_value": "last"}})


THESIS_FOLDS = [(0.75, 9), (0.77, 22), (0.77, 4), (0.6354, 4), (0.6667, 16)]  # §4.6 fold table


def thesis_history(path, best, epoch):
    """A history.csv whose val_accuracy peaks at ``best`` in 1-based ``epoch``, reached again
    later (a tie: the first epoch counts), over ``epoch`` + 10 epochs as early stopping ran them."""
    rows = []
    for e in range(epoch + 10):
        val = best if e + 1 == epoch or e == epoch + 5 else best - 0.1 - 0.001 * abs(e + 1 - epoch)
        rows.append([e, 0.5 + 0.01 * e, 1.0, val, 1.5])
    write_csv(path, ["epoch", "accuracy", "loss", "val_accuracy", "val_loss"], rows)


def test_fold_table_and_final_epochs_are_the_thesis_numbers(tmp_path):
    for k, (best, epoch) in enumerate(THESIS_FOLDS):
        thesis_history(tmp_path / f"{k}.csv", best, epoch)
    bests = [cv.best_epoch(tmp_path / f"{k}.csv", "val_accuracy", "max") for k in range(5)]
    assert bests == [pytest.approx(b) for b in THESIS_FOLDS]
    assert [e for _, e in bests] == [9, 22, 4, 4, 16]
    assert cv.final_epochs([9, 22, 4, 4, 16]) == 11  # (9 + 22 + 4 + 4 + 16) / 5
    assert cv.final_epochs([10, 11]) == 11 and cv.final_epochs([1, 2, 2]) == 2 and cv.final_epochs([1]) == 1
    assert cv.best_epoch(tmp_path / "0.csv", "val_loss", "min") == (1.5, 1)  # all equal: the first

    csv_path, md_path = cv.write_fold_table(tmp_path, "val_accuracy", "max", bests)
    rows = read_csv(csv_path)
    assert [(r["fold"], r["epoch"]) for r in rows] == [("0", "9"), ("1", "22"), ("2", "4"), ("3", "4"),
                                                       ("4", "16"), ("mean", "11")]
    assert float(rows[-1]["max_val_accuracy"]) == pytest.approx(0.71842)  # the extraction's 71.84%
    md = md_path.read_text()
    assert "| 3 | 63.54% | 4 |" in md and "| mean | 71.84% | 11 |" in md and "Final model: 11 epochs" in md


def test_error_table_lists_exactly_the_misclassified_videos(tmp_path):
    classes = list(BU4DFE)
    rng = np.random.default_rng(3)
    rows, wrong = [], set()
    for i in range(30):
        p = rng.dirichlet(np.ones(6))
        label = "" if i % 10 == 9 else classes[i % 6]  # some unlabelled: never an error
        prediction = classes[int(p.argmax())]
        if label and label != prediction:
            wrong.add(f"{i}.M{i:03d}")
        rows.append([f"{i}.M{i:03d}", label, prediction, *(f"{v:.8g}" for v in p)])
    write_csv(tmp_path / "predictions.csv", ["video_id", "label", "prediction", *(f"p_{c}" for c in classes)], rows)
    errors = cv.error_table(tmp_path / "predictions.csv", tmp_path / "errors.csv")
    written = read_csv(tmp_path / "errors.csv")
    assert 0 < len(wrong) < 27 and {r["video_id"] for r in written} == wrong and len(written) == len(wrong)
    assert written == [{k: v for k, v in e.items()} for e in errors]
    source = {r[0]: r for r in rows}
    for r in written:
        assert r["true"] == source[r["video_id"]][1] != r["predicted"] == source[r["video_id"]][2]
        assert [r[f"p_{c}"] for c in classes] == source[r["video_id"]][3:]  # as written
    order = [(classes.index(r["true"]), r["video_id"]) for r in written]
    assert order == sorted(order)  # by true class, as Fig. 3.29


# --- the final phase, with the engine replaced by files -----------------------------------------

def test_final_phase_trains_the_mean_best_epoch_on_training_subjects_only(tmp_path, monkeypatch):
    folds = [["A"], ["B"], ["C"], ["D"], ["E"]]
    root = write_cv_dataset(tmp_path / "data", folds)
    calls = []

    def fake_train(exp, run_dir, *, evaluate=None, validation=True):
        calls.append((exp, run_dir, validation))
        if validation:  # an early-stopped fold: the thesis's fold table as its history
            os.makedirs(run_dir, exist_ok=True)
            thesis_history(os.path.join(run_dir, "history.csv"), *THESIS_FOLDS[exp.data.fold])

    def fake_evaluate(run_dir, *, out_dir=None, extra=None):
        path = os.path.join(out_dir, "predictions.csv")
        write_csv(path, ["video_id", "label", "prediction", *(f"p_{c}" for c in BU4DFE)],
                  [["T01_angry", "angry", "sad", 0.4, 0, 0, 0, 0.6, 0], ["T02_sad", "sad", "sad", 0, 0, 0, 0, 1, 0]])
        paths = {"predictions": path}
        paths.update(extra(paths))  # the CV's errors.csv, before metrics.json
        return {"accuracy": 0.5, "paths": {**paths, "metrics": os.path.join(out_dir, "metrics.json")}}

    monkeypatch.setattr(training, "train", fake_train)
    monkeypatch.setattr(evaluation, "evaluate", fake_evaluate)
    # what the fold runs use (null callbacks, as the Table 3.6 files set them) never reaches the
    # finalisation; its own section changes what it sets and keeps the thesis's values otherwise
    raw = experiment(root, epochs=40, early_stopping=None, reduce_lr_on_plateau=None)
    raw["finalisation"] = {"early_stopping": {"min_delta": 0.001}, "reproduces": {
        "thesis": "002", "table": "§3.2.4 fold table", "row": "VGGFace + LSTM", "value": 71.84,
        "per_fold": [[75, 9], [77, 22], [77, 4], [63.54, 4], [66.67, 16]]}}
    result = cv.cross_validate(raw, tmp_path / "cv", "final")["final"]
    table = json.loads((tmp_path / "cv" / "fold_table.json").read_text())
    assert [(f["value"], f["epoch"]) for f in table["folds"]] == [pytest.approx(b) for b in THESIS_FOLDS]
    assert table["epochs"] == 11 and table["reference"]["ours"] == pytest.approx(71.842)
    assert "| 3 | 63.54% | 4 | 63.54 | 4 |" in (tmp_path / "cv" / "fold_table.md").read_text()

    assert result["epochs"] == 11 and [e for _, e in result["best"]] == [9, 22, 4, 4, 16]
    assert result["errors"] == 1 and [r["video_id"] for r in read_csv(tmp_path / "cv" / "errors.csv")] == ["T01_angry"]
    *fold_runs, (final, final_dir, validation) = calls
    for k, (exp, run_dir, fold_validation) in enumerate(fold_runs):
        t = exp.training
        assert exp.data.fold == k and fold_validation and run_dir == tmp_path / "cv" / "early_stopping" / f"fold-{k}"
        assert (t.monitor, t.epochs, t.early_stopping.enabled, t.early_stopping.patience) == ("val_accuracy", 40, True, 10)
        assert t.early_stopping.min_delta == 0.001
        assert (t.reduce_lr_on_plateau.enabled, t.reduce_lr_on_plateau.patience,
                t.reduce_lr_on_plateau.factor) == (True, 5, 0.5)
    # the final model: every training subject, no fold held out, no validation, 11 epochs
    t = final.training
    assert final_dir == tmp_path / "cv" / "final" and validation is False and final.data.fold is None
    assert (t.epochs, t.monitor, t.early_stopping.enabled, t.reduce_lr_on_plateau.enabled) == (11, "accuracy", False, False)
    assert (final.evaluation.split, final.evaluation.checkpoint) == ("test", "last")
    seen = {v["subject"] for v in loader.selection(final.data, final.data.train_split)}
    assert seen == {"A", "B", "C", "D", "E"} and not seen & set(TEST)


def test_a_test_subject_in_the_training_split_is_refused_before_any_training(tmp_path, monkeypatch):
    root = write_cv_dataset(tmp_path / "data", [["A"], ["B"]], test_in_train=["T02"])
    monkeypatch.setattr(training, "train", lambda *a, **k: pytest.fail("trained"))
    for phase in ("folds", "final"):
        with pytest.raises(ValueError, match="test subject.*T02.*training split 'train'"):
            cv.cross_validate(experiment(root), tmp_path / "cv", phase)
    with pytest.raises(ValueError, match="phase must be one of folds, final, all"):
        cv.cross_validate(experiment(root), tmp_path / "cv", "test")
    staged = experiment(root, stages=[{"epochs": 1, "trainable": 0}, {"epochs": 1}])
    with pytest.raises(ValueError, match="single-stage experiment"):
        cv.cross_validate(staged, tmp_path / "cv", "all")


def test_training_without_validation_needs_a_training_monitor(tmp_path):
    from fer_keras import config as cfg

    root = write_cv_dataset(tmp_path / "data", [["A"], ["B"]])
    exp = cfg.from_dict(experiment(root, monitor="val_accuracy"))
    with pytest.raises(ValueError, match="'val_accuracy' needs a validation split.*'accuracy'"):
        training.train(exp, tmp_path / "run", validation=False)
    assert not (tmp_path / "run").exists()  # refused before anything is written


# --- real runs ----------------------------------------------------------------------------------

class Kill(Exception):
    pass


def kill_after(monkeypatch, run):
    """Raise ``Kill`` when the engine has finished the run directory ``run`` of the CV directory
    (e.g. folds/fold-0), as a kill between two runs."""
    real = training.train

    def train(exp, run_dir, **kw):
        state = real(exp, run_dir, **kw)
        if Path(run_dir).parts[-2:] == tuple(run.split("/")):
            raise Kill(run_dir)
        return state

    monkeypatch.setattr(training, "train", train)


def same_files(a, b, names):
    for name in names:
        assert (a / name).read_bytes() == (b / name).read_bytes(), name


@pytest.mark.slow
def test_folds_phase_killed_and_rerun_ends_as_an_uninterrupted_one(tmp_path, monkeypatch, capsys):
    root = write_cv_dataset(tmp_path / "data", [["A", "B"], ["C", "D"]])
    config = tmp_path / "tiny_cv.yaml"
    config.write_text(json.dumps(experiment(root)))  # JSON is YAML
    whole = tmp_path / "whole"
    assert main(["cv", str(config), "--out", str(whole), "--phase", "folds"]) == 0
    assert "fold histories averaged" in capsys.readouterr().out
    header, rows = cv.average_histories([whole / "folds" / f"fold-{k}" / "history.csv" for k in (0, 1)])
    written = read_csv(whole / cv.HISTORY)
    np.testing.assert_allclose([[float(r[h]) for h in header] for r in written], rows, rtol=1e-6)
    assert (whole / cv.HISTORY_PLOT).is_file() and not (whole / "final").exists()

    killed = tmp_path / "killed"
    with monkeypatch.context() as mp:
        kill_after(mp, "folds/fold-0")
        with pytest.raises(Kill):
            cv.cross_validate(str(config), killed, "folds")
    assert not (killed / cv.HISTORY).exists() and not (killed / "folds" / "fold-1").exists()
    fold0 = (killed / "folds" / "fold-0" / "history.csv").read_bytes()
    cv.cross_validate(str(config), killed, "folds")
    assert (killed / "folds" / "fold-0" / "history.csv").read_bytes() == fold0  # not trained again
    same_files(whole, killed, [cv.HISTORY, "folds/fold-0/history.csv", "folds/fold-1/history.csv"])


@pytest.mark.slow
def test_all_phases_end_to_end_killed_in_the_final_phase_and_rerun(tmp_path, monkeypatch):
    root = write_cv_dataset(tmp_path / "data", [["A", "B"], ["C", "D"]])
    raw = experiment(root, epochs=3)
    whole = tmp_path / "whole"
    result = cv.cross_validate(raw, whole)
    final = result["final"]
    assert final["epochs"] == cv.final_epochs([e for _, e in final["best"]])
    assert json.loads((whole / "final" / "state.json").read_text())["epochs_done"] == final["epochs"]
    metrics = json.loads((whole / "metrics.json").read_text())
    assert metrics["split"] == "test" and metrics["checkpoint"] == "last" and metrics["n_videos"] == 6
    for name in ("confusion_counts.png", "confusion_normalised.png", "report.md", cv.HISTORY_PLOT,
                 "fold_table.md"):
        assert (whole / name).is_file(), name
    # the final model's training data: every fold subject, no test subject
    from fer_keras import config as cfg
    final_exp = cfg.load(whole / "final" / "config.yaml")
    seen = {v["subject"] for v in loader.selection(final_exp.data, final_exp.data.train_split)}
    assert seen == {"A", "B", "C", "D"}
    # errors.csv: exactly the labelled test videos whose top probability is not their label
    predictions = read_csv(whole / "predictions.csv")
    wrong = {r["video_id"] for r in predictions
             if BU4DFE[int(np.argmax([float(r[f"p_{c}"]) for c in BU4DFE]))] != r["label"]}
    assert {r["video_id"] for r in read_csv(whole / cv.ERRORS)} == wrong and final["errors"] == len(wrong)

    killed = tmp_path / "killed"
    with monkeypatch.context() as mp:
        kill_after(mp, "folds/fold-1")  # after the folds phase
        with pytest.raises(Kill):
            cv.cross_validate(raw, killed)
    with monkeypatch.context() as mp:
        kill_after(mp, "early_stopping/fold-0")  # in the final phase, between two early-stopped folds
        with pytest.raises(Kill):
            cv.cross_validate(raw, killed)
    assert not (killed / "final").exists()
    cv.cross_validate(raw, killed)
    same_files(whole, killed, [cv.HISTORY, "fold_table.csv", "fold_table.md", "predictions.csv", cv.ERRORS,
                               "early_stopping/fold-0/history.csv", "early_stopping/fold-1/history.csv",
                               "final/history.csv"])
    drop = lambda m: {k: v for k, v in m.items() if k != "run_dir"}  # noqa: E731
    assert drop(json.loads((killed / "metrics.json").read_text())) == drop(metrics)


@pytest.mark.slow
def test_the_folds_phase_into_a_remote_folder_writes_what_a_local_one_holds(tmp_path, monkeypatch):
    """`fer-keras cv --out ram://...` works in a local copy (fer_keras/staging.py) and the remote
    folder ends with the local run's files, byte for byte."""
    import tensorflow as tf

    from fer_keras import staging, storage

    monkeypatch.setenv(staging.STAGING, str(tmp_path / "staging"))
    root = write_cv_dataset(tmp_path / "data", [["A", "B"], ["C", "D"]])
    config = tmp_path / "tiny_cv.yaml"
    config.write_text(json.dumps(experiment(root)))
    remote = "ram://cv-test/out"
    for out in (str(tmp_path / "local"), remote):
        assert main(["cv", str(config), "--out", out, "--phase", "folds"]) == 0
    for name in (cv.HISTORY, "folds/fold-0/history.csv", "folds/fold-1/state.json"):
        with tf.io.gfile.GFile(storage.join(remote, name), "rb") as f:
            assert f.read() == (tmp_path / "local" / name).read_bytes(), name
