"""Damaged run directories: a truncated or changed checkpoint is one clear error naming the file
(through evaluate and `fer-keras evaluate`); a damaged BackupAndRestore state or best.keras on
resume is warned about and rebuilt, and the run still ends complete; a damaged last.keras of a
finished run is rebuilt from the last stage's weights. Tiny HDF5-feature runs (seconds each)."""
import csv
import json
import logging
import os
import shutil

import h5py
import keras
import numpy as np
import pytest

from conftest import write_feature_folds
from fer_keras import config, evaluation, rundir, training
from fer_keras.cli import main

EPOCHS = [0, 1, 2, 3]  # two stages of two epochs


def _exp(root):
    return config.from_dict({
        "name": "integrity",
        "data": {"root": str(root), "format": "hdf5", "train_split": "fold-1-features-6",
                 "val_split": "fold-2-features-6", "pipeline": {"seq_len": 10, "batch_size": 4}},
        "model": {"name": "cascade_lstm", "options": {"input_dim": 6, "seq_len": 10, "units": 4}},
        "training": {"stages": [{"epochs": 2}, {"epochs": 2}], "optimizer": {"learning_rate": 1e-2},
                     "verbose": 0},
        "evaluation": {"split": "fold-2-features-6"}})


class _Interrupt(keras.callbacks.Callback):
    """Ctrl-C at the end of an epoch, after every other callback (backup, CSV row) ran."""

    def __init__(self, at_epoch):
        super().__init__()
        self.at_epoch = at_epoch

    def on_epoch_end(self, epoch, logs=None):
        if epoch == self.at_epoch:
            raise KeyboardInterrupt


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """(experiment, a finished run, a run killed after the first epoch of stage 2)."""
    root = tmp_path_factory.mktemp("features")
    write_feature_folds(root, 8)
    exp = _exp(root)
    killed = root / "killed"
    mp = pytest.MonkeyPatch()
    real = training._callbacks
    mp.setattr(training, "_callbacks", lambda *a, **k: [*real(*a, **k), _Interrupt(2)])
    with pytest.raises(KeyboardInterrupt):
        training.train(exp, killed, evaluate=False)
    mp.undo()
    assert _epochs(killed) == [0, 1, 2] and _state(killed)["stages_done"] == 1
    assert json.loads((killed / "backup/stage-1/training_metadata.json").read_text())["epoch"] == 3

    finished = shutil.copytree(killed, root / "finished")  # an intact backup resumes at epoch 3
    state = training.train(exp, finished, evaluate=False)
    assert _epochs(finished) == EPOCHS and state["epochs_done"] == 4 and "best_since" not in state
    assert sorted(state["weights"]) == ["stage-0.weights.h5", "stage-1.weights.h5"]
    with h5py.File(finished / "checkpoints/stage-1.weights.h5") as f:  # the model's, not Adam's
        assert "optimizer" not in f and "layers" in f
    return exp, finished, killed


def _copy(src, tmp_path):
    return shutil.copytree(src, tmp_path / "run")


def _epochs(run):
    with open(run / "history.csv") as f:
        return [int(r["epoch"]) for r in csv.DictReader(f)]


def _state(run):
    return json.loads((run / "state.json").read_text())


def _damage(path, how):
    data = path.read_bytes()
    path.write_bytes({"truncated": data[:len(data) // 2], "empty": b"",
                      "random": np.random.default_rng(1).bytes(len(data)),
                      "flipped": data[:len(data) // 2] + bytes([data[len(data) // 2] ^ 0x5A])
                      + data[len(data) // 2 + 1:]}[how])


def _predict(path):
    model = keras.models.load_model(path, compile=False)
    x = np.random.default_rng(2).normal(size=(2, 10, 6)).astype(np.float32)
    return model.predict_on_batch({"features": x, "mask": np.ones((2, 10), np.float32)})["category"]


@pytest.mark.parametrize("how", ["truncated", "empty", "random", "flipped"])
@pytest.mark.parametrize("name", ["best", "last"])
def test_damaged_checkpoint_is_one_clear_error(runs, tmp_path, capsys, name, how):
    run = _copy(runs[1], tmp_path)
    path = run / "checkpoints" / f"{name}.keras"
    _damage(path, how)
    with pytest.raises(ValueError, match=rf"{name}\.keras: damaged: (truncated|not a Keras)") as err:
        evaluation.evaluate(run, checkpoint=name)
    assert str(path) in str(err.value)
    # a finished run: last.keras can be rebuilt by training again, best.keras cannot
    assert ("rebuild it from the last stage" if name == "last" else "--checkpoint last") in str(err.value)
    assert not (run / "metrics.json").exists() and not list(run.glob("eval-*"))

    capsys.readouterr()
    assert main(["evaluate", str(run), "--checkpoint", name]) == 2
    out = capsys.readouterr()
    lines = out.err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and str(path) in lines[0], out.err
    assert "Traceback" not in out.err + out.out


def test_truncated_last_of_a_finished_run_is_rebuilt_from_the_last_stage(runs, tmp_path, caplog):
    exp, finished, _ = runs
    run = _copy(finished, tmp_path)
    last = run / "checkpoints" / "last.keras"
    _damage(last, "truncated")
    with caplog.at_level(logging.WARNING, logger="fer_keras.training"):
        state = training.train(exp, run, evaluate=False)
    assert "last.keras: damaged" in caplog.text and "rebuilt it from stage-1.weights.h5" in caplog.text
    assert state["epochs_done"] == 4 and _epochs(run) == EPOCHS  # nothing was trained again
    np.testing.assert_allclose(_predict(last), _predict(finished / "checkpoints" / "last.keras"), rtol=1e-6)


def test_damaged_best_of_a_finished_run_is_refused(runs, tmp_path):
    exp, finished, _ = runs
    run = _copy(finished, tmp_path)
    _damage(run / "checkpoints" / "best.keras", "flipped")
    with pytest.raises(ValueError, match=r"best\.keras: damaged: .*CRC-32.*--checkpoint last"):
        training.train(exp, run, evaluate=False)


@pytest.mark.parametrize("how", ["truncated", "flipped"])
def test_damaged_stage_weights_are_one_clear_error(runs, tmp_path, how):
    """Stage 2 continues from stage-0.weights.h5; the last.keras of a finished run is rebuilt from
    stage-1's. A flipped byte inside HDF5 weights reads without error: state.json's SHA-256 finds it."""
    exp, finished, killed = runs
    run = _copy(killed, tmp_path)
    path = run / "checkpoints" / "stage-0.weights.h5"
    _damage(path, how)
    problem = "truncated or overwritten" if how == "truncated" else "changed after it was written"
    with pytest.raises(ValueError, match=rf"stage-0\.weights\.h5: damaged: {problem}.*new run directory"):
        training.train(exp, run, evaluate=False)

    done = tmp_path / "done"
    shutil.copytree(finished, done)
    (done / "checkpoints" / "last.keras").unlink()
    _damage(done / "checkpoints" / "stage-1.weights.h5", how)
    with pytest.raises(ValueError, match=rf"stage-1\.weights\.h5: damaged: {problem}"):
        training.train(exp, done, evaluate=False)


def test_without_a_record_a_truncated_weights_file_is_named_with_h5py_error(tmp_path):
    """A state.json written before records existed: the HDF5 file itself is read through."""
    model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(2)])
    run = rundir.RunDir(tmp_path)
    run.checkpoints.mkdir()
    path = run.stage_weights(0)
    model.save_weights(path)
    training._load_stage_weights(model, run, 0, {"stages_done": 1}, "todo")
    _damage(path, "truncated")
    with pytest.raises(ValueError, match=r"stage-0\.weights\.h5: damaged: truncated or not an HDF5 weights "
                                         r"file \(Unable to synchronously open file \(truncated file.*; todo$"):
        training._load_stage_weights(model, run, 0, {"stages_done": 1}, "todo")
    path.unlink()
    with pytest.raises(FileNotFoundError, match="stage-0.weights.h5: missing"):
        training._load_stage_weights(model, run, 0, {"stages_done": 1}, "todo")


@pytest.mark.parametrize("damage", ["weights", "metadata"])
def test_damaged_backup_restarts_the_stage_from_the_previous_stage(runs, tmp_path, caplog, damage):
    exp, _, killed = runs
    run = _copy(killed, tmp_path)
    backup = run / "backup" / "stage-1"
    if damage == "weights":
        _damage(backup / "latest.weights.h5", "truncated")
    else:
        (backup / "training_metadata.json").write_text('{"epo')
    with open(run / "history.csv") as f:
        losses = [float(r["val_loss"]) for r in csv.DictReader(f)]
    with caplog.at_level(logging.WARNING, logger="fer_keras.training"):
        state = training.train(exp, run, evaluate=False)
    warning = caplog.text
    assert f"{backup}: damaged BackupAndRestore state" in warning
    assert ("latest.weights.h5: Unable to synchronously open file" if damage == "weights"
            else "training_metadata.json: ") in warning
    assert "stage 2/2 restarts at its first epoch (epoch 2 in history.csv) from stage-0.weights.h5" in warning
    assert "the 1 epoch(s) it had done are redone" in warning
    assert _epochs(run) == EPOCHS and state["stages_done"] == 2 and state["epochs_done"] == 4
    assert _state(run) == state and not (run / "backup").exists()
    # best.keras was last written in the dropped epoch 2 iff its val_loss beat epochs 0-1
    assert state.get("best_since", 0) == (2 if losses[2] < min(losses[:2]) else 0)
    best, last = (_predict(run / "checkpoints" / f"{name}.keras") for name in ("best", "last"))
    with open(run / "history.csv") as f:
        redone = [float(r["val_loss"]) for r in csv.DictReader(f)]
    if state.get("best_since") == 2:  # best.keras is the better of the redone epochs 2 and 3
        assert np.allclose(best, last, rtol=1e-6) == (redone[3] < redone[2])


def test_dropping_epochs_tells_whether_best_keras_came_from_them(tmp_path):
    run = rundir.RunDir(tmp_path)
    run.history.write_text("epoch,val_loss\n0,0.9\n1,0.5\n2,0.7\n3,0.6\n")
    assert training._drop_epochs(run, 2, "val_loss", "min", 0) == (2, False)  # best was epoch 1, kept
    assert run.history.read_text().splitlines() == ["epoch,val_loss", "0,0.9", "1,0.5"]
    assert training._drop_epochs(run, 1, "val_loss", "min", 0) == (1, True)
    assert training._drop_epochs(run, 0, "val_loss", "min", 0) == (1, True) and not run.history.exists()
    run.history.write_text("epoch,val_accuracy\n0,0.4\n1,0.3\n2,0.35\n")
    assert training._drop_epochs(run, 2, "val_accuracy", "max", 1) == (1, True)  # counted from epoch 1


def test_damaged_best_on_resume_is_rebuilt(runs, tmp_path, caplog):
    exp, _, killed = runs
    run = _copy(killed, tmp_path)
    best = run / "checkpoints" / "best.keras"
    _damage(best, "empty")
    with caplog.at_level(logging.WARNING, logger="fer_keras.training"):
        state = training.train(exp, run, evaluate=False)
    assert f"{best}: damaged (truncated or not a Keras file" in caplog.text
    assert "rebuilt from the best of the epochs still to train (epoch 3 in history.csv on)" in caplog.text
    assert state["best_since"] == 3 and _epochs(run) == EPOCHS  # the intact backup resumed at epoch 3
    assert _predict(best).shape == (2, 3)
    # epoch 3 is the only epoch best.keras counts from: it is that epoch's model, the final one
    np.testing.assert_allclose(_predict(best), _predict(run / "checkpoints" / "last.keras"), rtol=1e-6)
    result = evaluation.evaluate(run)
    assert result["checkpoint"] == "best" and result["n_videos"] == 8


def test_best_since_sets_the_checkpoint_threshold(tmp_path):
    history = tmp_path / "history.csv"
    history.write_text("epoch,val_loss\n0,0.5\n1,0.9\n2,0.8\n")
    assert training._best_so_far(history, "val_loss", "min") == 0.5
    assert training._best_so_far(history, "val_loss", "min", since=1) == 0.8
    assert training._best_so_far(history, "val_loss", "min", since=3) is None
    assert training._epochs_logged(history) == 3


def test_damaged_state_json_is_named(runs, tmp_path):
    exp, _, killed = runs
    run = _copy(killed, tmp_path)
    (run / "state.json").write_text('{"stages_do')
    with pytest.raises(ValueError, match=r"state\.json: damaged: not the state training writes"):
        training.train(exp, run, evaluate=False)
    assert os.path.isfile(run / "state.json")
