"""Training engine: schedules, stages, callbacks, run directory, resume after a kill."""
import csv
import json
import os
import signal
import subprocess
import sys
import time

import keras
import numpy as np
import pytest

from fer_keras import config, training


def audio_exp(root, **training_opts):
    """A seconds-per-epoch experiment: the LLD GRU of thesis 000 on the synthetic dataset."""
    return config.from_dict({
        "name": "audio", "data": {"root": root, "pipeline": {"inputs": ["lld"], "seq_len": 8, "batch_size": 4}},
        "model": {"name": "audio_gru", "options": {"seq_len": 8, "units": 8, "rnn_layers": 1}},
        "training": {"epochs": 1, "optimizer": {"learning_rate": 1e-3}, **training_opts},
    })


def history(run):
    with open(os.path.join(run, "history.csv")) as f:
        return list(csv.DictReader(f))


def test_schedules_follow_the_theses():
    t = config.from_dict({"training": {
        "optimizer": {"name": "rmsprop", "learning_rate": 0.01, "options": {"rho": 0.9, "momentum": 0.9, "epsilon": 1.0}},
        "schedule": {"name": "exponential", "decay_epochs": 2, "decay_rate": 0.94}}}).training
    opt = training.optimizer(t, steps_per_epoch=10)
    assert (opt.rho, opt.momentum, opt.epsilon) == (0.9, 0.9, 1.0)
    lr = training.schedule(t, 0.01, steps_per_epoch=10)
    assert np.isclose(float(lr(19)), 0.01) and np.isclose(float(lr(20)), 0.01 * 0.94)
    assert np.isclose(float(lr(45)), 0.01 * 0.94 ** 2)
    t000 = config.from_dict({"training": {"schedule": {"name": "exponential", "decay_steps": 5000,
                                                       "decay_rate": 0.95}}}).training
    lr = training.schedule(t000, 1e-4, steps_per_epoch=3)
    assert np.isclose(float(lr(4999)), 1e-4) and np.isclose(float(lr(5000)), 0.95e-4)
    inv = config.from_dict({"training": {"schedule": {"name": "inverse_time", "decay_steps": 10, "decay_rate": 0.5,
                                                      "staircase": False}}}).training
    lr = training.schedule(inv, 1e-4, steps_per_epoch=3)
    assert np.isclose(float(lr(20)), 1e-4 / (1 + 0.5 * 2))
    assert np.isclose(float(training.optimizer(inv, 3, learning_rate=1e-5).learning_rate), 1e-5)


def test_run_directory_and_monitor(prepared_afew, tmp_path):
    root, _ = prepared_afew
    run = tmp_path / "run"
    exp = audio_exp(root, epochs=2, monitor="val_accuracy",
                    reduce_lr_on_plateau={"patience": 1}, early_stopping={"patience": 5})
    state = training.train(exp, run, evaluate=False)
    assert state["stages_done"] == 1 and state["epochs_done"] == 2
    for name in ("config.yaml", "history.csv", "state.json", "checkpoints/best.keras", "checkpoints/last.keras"):
        assert (run / name).is_file(), name
    assert os.listdir(run / "logs")
    assert [r["epoch"] for r in history(run)] == ["0", "1"]
    assert config.to_dict(config.load(run / "config.yaml")) == config.to_dict(exp)
    # The same run directory refuses a different experiment.
    with pytest.raises(ValueError, match="different experiment"):
        training.train(audio_exp(root, epochs=3), run, evaluate=False)
    # A metric that is never logged stops the run after one epoch, naming what exists.
    with pytest.raises(ValueError, match="val_nope.*val_loss"):
        training.train(audio_exp(root, monitor="val_nope"), tmp_path / "bad", evaluate=False)


@pytest.mark.parametrize("opts", [{"xla": True}, {"mixed_precision": True}, {"strategy": "one_device:/cpu:0"}])
def test_xla_mixed_precision_and_strategy_train(prepared_afew, tmp_path, opts):
    root, _ = prepared_afew
    training.train(audio_exp(root, **opts), tmp_path / "run", evaluate=False)
    assert np.isfinite(float(history(tmp_path / "run")[0]["loss"]))
    assert keras.mixed_precision.global_policy().name == "float32"


def test_staged_fine_tuning_freezes_then_unfreezes(prepared_afew, tmp_path):
    root, _ = prepared_afew
    # The smallest VGGFace (32 px) on 4 frames per video ("truncate": one sequence each), with one
    # RNN layer: two steps an epoch, so the time goes to building and tracing the two stages.
    exp = config.from_dict({
        "data": {"root": root, "pipeline": {"seq_len": 4, "image_size": 32, "batch_size": 8, "truncate": "end"}},
        "model": {"name": "vggface_bgru", "options": {"input_size": 32, "seq_len": 4, "units": 8,
                                                      "rnn_layers": 1, "backbone_dropout": 0.0}},
        "training": {"stages": [{"epochs": 1, "trainable": 0}, {"epochs": 1, "trainable": "all"}],
                     "optimizer": {"learning_rate": 1e-3}}})
    frozen = training.build_model(exp, 0)
    names = {v.path for v in frozen.trainable_weights}
    assert not any("conv1_1" in n for n in names) and any("rnn1" in n for n in names)
    assert any("conv1_1" in v.path for v in training.build_model(exp, "all").trainable_weights)

    keras.utils.set_random_seed(exp.training.seed)
    initial = training.build_model(exp, 0)
    run = tmp_path / "run"
    training.train(exp, run, evaluate=False)
    after = [training.build_model(exp, "all") for _ in range(2)]
    for i, model in enumerate(after):
        model.load_weights(run / "checkpoints" / f"stage-{i}.weights.h5")

    def kernel(model, name):
        return next(v for v in model.weights if name in v.path and "kernel" in v.path).numpy()

    np.testing.assert_array_equal(kernel(initial, "conv1_1"), kernel(after[0], "conv1_1"))
    assert not np.allclose(kernel(initial, "rnn1"), kernel(after[0], "rnn1"))
    assert not np.allclose(kernel(after[0], "conv1_1"), kernel(after[1], "conv1_1"))
    assert [r["epoch"] for r in history(run)] == ["0", "1"]


TRAIN = ("import data_prep, sys; from fer_keras import config, training; "
         "training.train(config.load(sys.argv[1]), sys.argv[2], evaluate=False)")


def test_killed_run_continues_from_last_epoch(prepared_afew, tmp_path, monkeypatch):
    """SIGKILL a training process mid-stage, then train the run directory again (in this process:
    the resume reads only what the killed one left on disk)."""
    root, _ = prepared_afew
    exp = audio_exp(root, epochs=6, schedule={"name": "exponential", "decay_steps": 3, "decay_rate": 0.5})
    cfg, run = tmp_path / "exp.yaml", tmp_path / "run"
    config.save(exp, cfg)
    proc = subprocess.Popen([sys.executable, "-c", TRAIN, str(cfg), str(run)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    meta = run / "backup" / "stage-0" / "training_metadata.json"

    def backed_up():  # Keras writes it after the epoch's weights: they are complete once it says so
        try:
            return json.loads(meta.read_text())["epoch"]
        except (OSError, ValueError):
            return 0

    # killed early in an epoch, after two were backed up (a kill while the backup's weights are
    # written damages them, and the stage then restarts from its first epoch)
    deadline = time.time() + 300
    while time.time() < deadline and proc.poll() is None and backed_up() < 2:
        time.sleep(0.05)
    assert proc.poll() is None, "the run ended before it could be killed"
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    before, epoch = history(run), backed_up()
    assert 2 <= epoch < 6 and not (run / "state.json").exists()
    # an epoch's history row is written before its backup: a kill between them leaves one row more
    assert epoch <= len(before) <= epoch + 1

    run_now = []  # the epochs the resumed run trains (history.csv's logger sees each begin)
    begin = keras.callbacks.CSVLogger.on_epoch_begin

    def on_epoch_begin(self, e, logs=None):
        run_now.append(e)
        return begin(self, e, logs)

    monkeypatch.setattr(keras.callbacks.CSVLogger, "on_epoch_begin", on_epoch_begin)
    state = training.train(config.load(cfg), run, evaluate=False)
    assert run_now == list(range(epoch, 6))  # continues after the last backed-up epoch, not at 0
    after = history(run)
    assert [int(r["epoch"]) for r in after] == list(range(6))  # a row without its backup is redone
    assert after[:epoch] == before[:epoch]  # the epochs done before the kill are kept
    assert state["epochs_done"] == 6
    assert json.loads((run / "state.json").read_text())["epochs_done"] == 6
    assert not (run / "backup").exists()  # the finished run leaves no resume state behind
    model = keras.models.load_model(run / "checkpoints" / "last.keras", compile=False)
    assert model.name


def test_cached_hdf5_features_train_a_cascade(tmp_path):
    """Thesis 002's cascades read cached CNN features from HDF5 through the same engine."""
    from fer_keras.data.features import write_features

    rng = np.random.default_rng(0)
    classes = ["a", "b", "c"]
    for fold in (1, 2):
        labels = np.eye(3, dtype=np.float32)[rng.integers(0, 3, 12)]
        masks = (np.arange(10)[None] < rng.integers(3, 11, (12, 1))).astype(np.float32)
        features = rng.normal(size=(12, 10, 6)).astype(np.float32) + labels.argmax(1)[:, None, None]
        write_features(tmp_path / f"fold-{fold}-features-6.h5", features, masks, labels,
                       [f"v{fold}-{i}" for i in range(12)], classes)
    exp = config.from_dict({
        "data": {"root": str(tmp_path), "format": "hdf5", "train_split": "fold-1-features-6",
                 "val_split": "fold-2-features-6", "pipeline": {"seq_len": 10, "batch_size": 4}},
        "model": {"name": "cascade_lstm", "options": {"input_dim": 6, "seq_len": 10, "units": 8}},
        "training": {"epochs": 2, "optimizer": {"learning_rate": 1e-2}}})
    training.train(exp, tmp_path / "run", evaluate=False)
    assert training.build_model(exp).outputs[0].shape[-1] == 3  # classes from the file
    assert len(history(tmp_path / "run")) == 2


def test_auto_verbosity_is_one_line_per_epoch_off_a_terminal(monkeypatch):
    auto, quiet = config.TrainingConfig(), config.TrainingConfig(verbose=0)
    monkeypatch.setattr(sys.stdout, "isatty", lambda: False)
    assert training.verbosity(auto) == 2 and training.verbosity(quiet) == 0
    monkeypatch.setattr(sys.stdout, "isatty", lambda: True)
    assert training.verbosity(auto) == 1
