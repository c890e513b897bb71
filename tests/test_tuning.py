"""Hyperparameter search: KerasTuner over a registry search space, resumable, with a best
experiment YAML that the training engine reads back."""
import csv
import dataclasses
import json

import keras
import pytest

import yaml

from fer_keras import config as cfg
from fer_keras import training as _training
from fer_keras import tuning
from fer_keras.cli import main

FIXED = {"units": 8, "rnn_layers": 2}   # the tiny audio GRU; learning_rate and attention are searched


def _experiment(root, verbose=0, **tuning_section):
    return cfg.from_dict({
        "name": "tiny_audio",
        "data": {"root": root, "pipeline": {"inputs": ["lld"], "seq_len": 8, "batch_size": 8,
                                            "truncate": "end"}},  # one sequence per video
        "model": {"name": "audio_gru", "options": {"seq_len": 8}},
        "training": {"verbose": verbose},
        "tuning": {"max_trials": 2, "epochs": 1, "fixed": FIXED, "objective": "val_accuracy",
                   **tuning_section},
    })


def _rows(path):
    with open(path) as f:
        return list(csv.DictReader(f))


@pytest.fixture
def count_fits(monkeypatch):
    """Count the trials that train (each fits its model once)."""
    calls = []
    real = tuning._HyperModel.fit

    def fit(self, hp, model, *args, **kwargs):
        calls.append(dict(hp.values))
        return real(self, hp, model, *args, **kwargs)

    monkeypatch.setattr(tuning._HyperModel, "fit", fit)
    return calls


def test_search_writes_best_experiment_and_resumes(prepared_afew, tmp_path, count_fits):
    root, _ = prepared_afew
    exp, out = _experiment(root), tmp_path / "search"
    first = tuning.tune(exp, out, max_trials=1)
    assert len(count_fits) == 1
    rows_first = _rows(first["trials"])
    assert [r["trial_id"] for r in rows_first] == ["0"]

    # rerun to the experiment's two trials: the finished trial is kept, one new trial runs
    result = tuning.tune(exp, out)
    assert len(count_fits) == 2
    rows = _rows(result["trials"])
    assert [r["trial_id"] for r in rows] == ["0", "1"]
    assert rows[:1] == rows_first  # the first trial is not rerun
    assert result["completed"] == 2
    assert all(r["status"] == "COMPLETED" for r in rows)
    # fixed hyperparameters stay fixed in every trial (also in what the models were built with)
    assert all(int(r["units"]) == 8 and int(r["rnn_layers"]) == 2 for r in rows)
    assert all(v["units"] == 8 and v["rnn_layers"] == 2 for v in count_fits)

    # the best trial is the one with the highest val_accuracy (objective direction auto -> max)
    best = max(rows, key=lambda r: float(r["score"]))
    assert result["best_score"] == pytest.approx(float(best["score"]))
    record = yaml.safe_load(open(result["best_hyperparameters"]))
    assert record["trial_id"] == best["trial_id"] and record["direction"] == "max"
    assert record["hyperparameters"]["attention"] == (best["attention"] == "True")
    assert record["hyperparameters"]["learning_rate"] == pytest.approx(float(best["learning_rate"]))

    # best_experiment.yaml is a complete experiment the training engine reads, with the best values
    tuned = cfg.load(result["best_experiment"])
    assert tuned.model.name == "audio_gru"
    assert tuned.model.options == {"seq_len": 8, "units": 8, "rnn_layers": 2,
                                   "attention": best["attention"] == "True"}
    assert tuned.training.optimizer.learning_rate == pytest.approx(float(best["learning_rate"]))
    for section in ("data", "tuning", "evaluation"):
        assert cfg.to_dict(tuned)[section] == cfg.to_dict(exp)[section]

    # a finished search does nothing more when run again
    count_fits.clear()
    tuning.tune(exp, out)
    assert count_fits == []


def test_fixed_hyperparameters_build_the_model(prepared_afew):
    hp = tuning.fixed_hyperparameters("audio_gru", {"units": 8, "attention": False})
    assert hp.values == {"units": 8, "attention": False}
    exp = _experiment(prepared_afew[0])
    model = tuning._HyperModel("audio_gru", experiment=exp, epochs=1, data=(None, None, 3), seq_len=8).build(hp)
    grus = [layer for layer in model._flatten_layers() if layer.__class__.__name__ == "GRU"]
    assert grus and all(layer.units == 8 for layer in grus)
    assert model.compiled and isinstance(model.optimizer, keras.optimizers.Adam)  # training's, the space's LR
    assert float(model.optimizer.learning_rate) == pytest.approx(1e-3)


def test_fixed_names_outside_the_space_are_rejected():
    with pytest.raises(ValueError, match="unitz not in the search space of 'audio_gru'"):
        tuning.fixed_hyperparameters("audio_gru", {"unitz": 8})
    # a conditional hyperparameter exists once its condition is fixed
    hp = tuning.fixed_hyperparameters("vgg16_finetune", {"dense_layers": 2, "units_1": 256})
    assert hp.values["units_1"] == 256
    with pytest.raises(ValueError, match="units_1"):
        tuning.fixed_hyperparameters("vgg16_finetune", {"dense_layers": 1, "units_1": 256})


def test_compile_keys_go_to_the_optimizer():
    training = cfg.from_dict({"training": {"optimizer": {"name": "rmsprop", "options": {"rho": 0.9, "momentum": 0.9}}}}).training
    sgd = tuning.with_compile_args(training, optimizer="sgd", learning_rate=0.01).optimizer
    assert (sgd.name, sgd.learning_rate, sgd.options) == ("sgd", 0.01, {"momentum": 0.9})
    assert tuning.with_compile_args(training) is training
    # Keras 2's optimiser decay (thesis 003's "learning rate decay"): lr / (1 + decay * step)
    decayed = tuning.with_compile_args(training, lr_decay=1e-4)
    lr = decayed.optimizer.learning_rate
    schedule = _training.schedule(decayed, lr, steps_per_epoch=7)
    assert float(schedule(1000)) == pytest.approx(lr / (1 + 1e-4 * 1000))
    assert tuning.with_compile_args(training, lr_decay=0.0).schedule.name == "constant"


def test_grid_search_over_batch_size_and_sequence_length(prepared_afew, tmp_path, monkeypatch):
    """A space drawing data.pipeline values: each trial trains on batches and sequences of its draw
    (its model built for that length), the grid runs every combination once, and the best
    experiment carries the best draw into data.pipeline and model.options."""
    from fer_keras.models.registry import REGISTRY

    def space(hp):
        return dict(batch_size=hp.Choice("batch_size", [2, 5]), seq_len=hp.Choice("seq_len", [4, 6]),
                    lr_decay=hp.Choice("lr_decay", [1e-3]))
    monkeypatch.setitem(REGISTRY, "audio_gru", dataclasses.replace(REGISTRY["audio_gru"], space=space))
    seen = []
    real = keras.Model.fit

    def fit(model, x, *args, steps_per_epoch=None, **kwargs):
        inputs, _ = next(iter(x))
        seen.append((inputs["lld"].shape[0], inputs["lld"].shape[1], model.input["lld"].shape[1], steps_per_epoch,
                     type(model.optimizer._learning_rate).__name__))
        return real(model, x, *args, steps_per_epoch=steps_per_epoch, **kwargs)
    monkeypatch.setattr(keras.Model, "fit", fit)
    exp = _experiment(prepared_afew[0], algorithm="grid", max_trials=None, fixed={})
    exp = dataclasses.replace(exp, model=dataclasses.replace(exp.model, options={"units": 4, "rnn_layers": 1}))
    result = tuning.tune(exp, tmp_path / "grid")
    rows = _rows(result["trials"])
    assert sorted((int(r["batch_size"]), int(r["seq_len"])) for r in rows) == [(2, 4), (2, 6), (5, 4), (5, 6)]
    assert sorted(s[:3] for s in seen) == [(2, 4, 4), (2, 6, 6), (5, 4, 4), (5, 6, 6)]
    steps = {b: s for b, _, _, s, _ in seen}
    assert steps[2] > steps[5] >= 1  # the steps of an epoch follow the batch size
    assert {s[4] for s in seen} == {"InverseTimeDecay"}
    best = max(rows, key=lambda r: float(r["score"]))
    tuned = cfg.load(result["best_experiment"])
    assert tuned.data.pipeline.batch_size == int(best["batch_size"])
    assert tuned.data.pipeline.seq_len == tuned.model.options["seq_len"] == int(best["seq_len"])
    assert (tuned.training.schedule.name, tuned.training.schedule.decay_rate) == ("inverse_time", 1e-3)


def test_grid_search_refuses_a_continuous_range(prepared_afew, tmp_path):
    exp = _experiment(prepared_afew[0], algorithm="grid")  # audio_gru's learning rate is a choice: fine
    tuning._tuner(exp.tuning, tuning._HyperModel("audio_gru", experiment=exp, epochs=1, data=(None, None, 1)),
                  tuning.fixed_hyperparameters("audio_gru", {}), objective="val_loss", directory=str(tmp_path),
                  project_name="ok")
    exp = cfg.from_dict({"model": {"name": "vgg16_lstm_va"}, "tuning": {"algorithm": "grid"}})
    with pytest.raises(ValueError, match="continuous range.*learning_rate"):
        tuning._tuner(exp.tuning, tuning._HyperModel("vgg16_lstm_va", experiment=exp, epochs=1, data=(None, None, 1)),
                      tuning.fixed_hyperparameters("vgg16_lstm_va", {}), objective="val_loss",
                      directory=str(tmp_path), project_name="refused")
    with pytest.raises(ValueError, match="max_trials: null"):
        cfg.from_dict({"tuning": {"max_trials": None}})


def test_cli_tune(prepared_afew, tmp_path, capsys, monkeypatch):
    root, _ = prepared_afew
    path = tmp_path / "exp.yaml"
    cfg.save(_experiment(root, verbose="auto"), path)  # KerasTuner's display and progress bars
    out = tmp_path / "cli_search"
    assert main(["tune", str(path), "--out", str(out), "--trials", "1", "--objective", "val_loss"]) == 0
    assert "best trial 0 val_loss=" in capsys.readouterr().out
    assert cfg.load(out / "best_experiment.yaml").tuning.objective == "val_loss"
    assert len(_rows(out / "trials.csv")) == 1

    # another objective on the same directory is another search: refused, or started afresh
    assert main(["tune", str(path), "--out", str(out), "--trials", "1"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and "different search" in err and "\n" not in err
    assert main(["tune", str(path), "--out", str(out), "--trials", "1", "--overwrite"]) == 0
    best = yaml.safe_load(open(out / "best_hyperparameters.yaml"))
    assert best["objective"] == "val_accuracy"
    search = json.loads((out / tuning.SEARCH).read_text())  # what fer-keras results reads
    assert search["score"] == best["score"] and search["objective"] == "val_accuracy"

    # bad input: one line and exit code 2, no search directory left behind
    for argv, message in [
        (["--model", "no_such_model", "--data", root], "unknown model 'no_such_model'"),
        (["--model", "audio_gru"], "--model needs --data"),
        ([str(tmp_path / "missing.yaml")], "does not exist"),
        ([str(path), "--trials", "0"], "max_trials must be a positive number"),
        ([str(path), "--data", str(tmp_path / "nowhere")], "no manifest.json"),
    ]:
        assert main(["tune", *argv, "--out", str(tmp_path / "bad")]) == 2, argv
        assert message in capsys.readouterr().err
    assert not (tmp_path / "bad").exists()


def test_cli_tune_model_builds_a_default_experiment(prepared_afew, tmp_path, monkeypatch):
    root, _ = prepared_afew
    seen = {}
    monkeypatch.setattr(tuning, "tune", lambda exp, out, **kw: seen.update(exp=exp, out=out, **kw) or {})
    monkeypatch.chdir(tmp_path)
    assert main(["tune", "--model", "audio_gru", "--data", root, "--trials", "4"]) == 0
    exp = seen["exp"]
    assert (exp.model.name, exp.data.root, seen["out"], seen["max_trials"]) == \
        ("audio_gru", root, "runs/tune/audio_gru", 4)
    assert list(exp.data.pipeline.inputs) == ["lld"] and exp.data.pipeline.seq_len == 80


def test_cli_tune_takes_set_as_train_does(prepared_afew, tmp_path, monkeypatch):
    """`--set model.options.input_size=32` also sizes the pipeline's frames, so vggface_bgru can be
    tried at a small size on the demo data."""
    root, _ = prepared_afew
    seen = {}
    monkeypatch.setattr(tuning, "tune", lambda exp, out, **kw: seen.update(exp=exp) or {})
    monkeypatch.chdir(tmp_path)
    assert main(["tune", "--model", "vggface_bgru", "--data", root, "--set", "model.options.input_size=32",
                 "data.pipeline.seq_len=8", "tuning.epochs=1"]) == 0
    exp = seen["exp"]
    assert exp.model.options["input_size"] == 32 and exp.data.pipeline.image_size == 32
    assert exp.data.pipeline.seq_len == 8 and exp.tuning.epochs == 1 and exp.data.root == root
    assert main(["tune", "--model", "vggface_bgru", "--data", root, "--set", "tuning.epoch=1"]) == 2


CLI = "import data_prep, sys; from fer_keras.cli import main; sys.exit(main(sys.argv[1:]))"


@pytest.mark.slow
def test_distributed_search_chief_and_worker(prepared_afew, tmp_path, monkeypatch, capsys):
    """KerasTuner's chief/worker mode on this machine's loopback: a worker process runs the trials
    the chief's oracle hands out, and the chief (the same command, in this process) writes the
    result files when they are done."""
    import os
    import socket
    import subprocess
    import sys
    import threading

    root, _ = prepared_afew
    path, out = tmp_path / "exp.yaml", tmp_path / "shared_search"
    cfg.save(_experiment(root), path)
    with socket.socket() as s:  # a free port on the loopback
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = {"KERASTUNER_ORACLE_IP": "127.0.0.1", "KERASTUNER_ORACLE_PORT": str(port)}
    argv = ["tune", str(path), "--out", str(out), "--trials", "1"]  # one trial shows the hand-out
    worker = subprocess.Popen([sys.executable, "-c", CLI, *argv], text=True,
                              env={**os.environ, **env, "KERASTUNER_TUNER_ID": "tuner0"},
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    for name, value in {**env, "KERASTUNER_TUNER_ID": "chief"}.items():
        monkeypatch.setenv(name, value)
    chief = {}
    thread = threading.Thread(target=lambda: chief.update(code=main(argv)), daemon=True)
    thread.start()
    try:
        log = worker.communicate(timeout=300)[0]
        thread.join(timeout=60)  # the chief's server stops once the worker has asked for more
    finally:
        worker.kill()
    assert worker.returncode == 0, log[-3000:]
    assert not thread.is_alive(), "the chief did not finish"
    assert chief.get("code") == 0, capsys.readouterr().err[-3000:]
    assert "worker tuner0: no trials left" in log
    assert "best experiment:" in capsys.readouterr().out
    rows = _rows(out / "trials.csv")
    assert [r["status"] for r in rows] == ["COMPLETED"]
    assert cfg.load(out / "best_experiment.yaml").name == "tiny_audio_tuned"


def test_the_best_of_equal_scores_is_the_first_trial_whatever_the_table_order():
    """A resumed search reloads its trial table in another order; ties still go to the first trial."""
    from types import SimpleNamespace as NS

    trial = lambda i, score, status="COMPLETED": NS(trial_id=i, score=score, status=status)  # noqa: E731
    trials = {t.trial_id: t for t in (trial("2", 0.5), trial("1", 0.5), trial("3", 0.9, "RUNNING"),
                                      trial("0", 0.25), trial("4", None))}
    assert tuning.best_trial(NS(trials=trials, objective=NS(direction="max"))).trial_id == "1"
    assert tuning.best_trial(NS(trials=trials, objective=NS(direction="min"))).trial_id == "0"
    assert tuning.best_trial(NS(trials={}, objective=NS(direction="max"))) is None


def test_each_trial_draws_its_weights_from_its_own_seed():
    """A trial resumed in a new process (KerasTuner reruns a killed one) starts from the weights it
    had in the uninterrupted search: they come from (seed, trial id), not from what the trials
    before it drew (the tune kill sweep, slow, checks whole searches)."""
    from types import SimpleNamespace as NS

    import numpy as np

    class Tuner:
        def on_trial_begin(self, trial):
            pass

    seeded = type("Seeded", (tuning._TrialSeeded, Tuner), {"weights_seed": 3})()

    def first_kernel(trial_id, earlier_builds):
        keras.utils.set_random_seed(0)
        for _ in range(earlier_builds):  # the trials this process ran before
            keras.layers.Dense(4).build((None, 3))
        seeded.on_trial_begin(NS(trial_id=trial_id))
        layer = keras.layers.Dense(4)
        layer.build((None, 3))
        return layer.kernel.numpy()

    assert np.array_equal(first_kernel("1", 0), first_kernel("1", 3))
    assert not np.array_equal(first_kernel("1", 0), first_kernel("2", 0))
