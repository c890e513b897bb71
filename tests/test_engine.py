"""The engine's sense of time across stages: an early stop ends its stage, the next one starts at
the epoch, optimiser step and learning rate where it stopped, and a run killed anywhere and
resumed ends exactly as the uninterrupted run (weights, history, state)."""
import csv
import json

import keras
import numpy as np
import pytest

from fer_keras import config, training

# Stages of 4 and 3 epochs, the learning rate halved every epoch, and an early stop that is a
# function of the epoch count alone: min_delta 100 means no epoch after a stage's first improves,
# so with patience 1 each stage stops after its second epoch.
STAGED = {"stages": [{"epochs": 4}, {"epochs": 3}],
          "optimizer": {"name": "sgd", "learning_rate": 0.01},
          "schedule": {"name": "exponential", "decay_epochs": 1, "decay_rate": 0.5},
          "early_stopping": {"patience": 1, "min_delta": 100.0}}


def experiment(root, **training_opts):
    return config.from_dict({
        "name": "engine", "data": {"root": root, "pipeline": {"inputs": ["lld"], "seq_len": 8, "batch_size": 8}},
        "model": {"name": "audio_gru", "options": {"seq_len": 8, "units": 4, "rnn_layers": 1}},
        "training": {**STAGED, **training_opts}})


class Interrupt(Exception):
    pass


def watch(monkeypatch, starts, stop_after=None):
    """Record (optimiser step, learning rate) at the start of every ``fit``; raise ``Interrupt``
    at the end of epoch ``stop_after``, after every callback of the engine ran (a kill there)."""
    engine_callbacks = training._callbacks

    class Watch(keras.callbacks.Callback):
        def on_train_begin(self, logs=None):
            opt = self.model.optimizer
            starts.append((int(opt.iterations), float(opt.learning_rate)))

        def on_epoch_end(self, epoch, logs=None):
            if epoch == stop_after:
                raise Interrupt(epoch)

    monkeypatch.setattr(training, "_callbacks", lambda *a, **k: [*engine_callbacks(*a, **k), Watch()])


def rows(run):
    with open(run / "history.csv") as f:
        return list(csv.DictReader(f))


def weights(run):
    model = keras.models.load_model(run / "checkpoints" / "last.keras", compile=False)
    return model.get_weights()


@pytest.fixture(scope="module")
def uninterrupted(prepared_afew, tmp_path_factory):
    root, _ = prepared_afew
    run = tmp_path_factory.mktemp("engine") / "run"
    starts = []
    with pytest.MonkeyPatch.context() as mp:
        watch(mp, starts)
        state = training.train(experiment(root), run, evaluate=False)
    return run, state, starts


def test_an_early_stop_ends_the_stage_and_the_next_starts_where_it_stopped(uninterrupted):
    run, state, starts = uninterrupted
    steps = state["steps_per_epoch"]
    assert [int(r["epoch"]) for r in rows(run)] == [0, 1, 2, 3]  # no skipped epochs
    assert state["epochs_done"] == 4 and state["steps_done"] == 4 * steps and state["stages_done"] == 2
    assert [(s["first_epoch"], s["epochs"], s["steps"], s["early_stopped"]) for s in state["stages"]] == [
        (0, 2, 2 * steps, True), (2, 2, 2 * steps, True)]
    # stage 2 starts at step 2 * steps with the learning rate of epoch 2: 0.01 * 0.5 ** 2
    assert starts[0][0] == 0 and np.isclose(starts[0][1], 0.01)
    assert starts[1][0] == 2 * steps and np.isclose(starts[1][1], 0.01 * 0.5 ** 2)
    assert json.loads((run / "state.json").read_text()) == state


def test_killed_and_resumed_staged_run_ends_as_the_uninterrupted_one(uninterrupted, prepared_afew,
                                                                      tmp_path, monkeypatch):
    run, state, starts = uninterrupted
    root, _ = prepared_afew
    exp, resumed = experiment(root), tmp_path / "run"
    # killed after epoch 0 (early stopping has seen one epoch of stage 1), then after epoch 2
    # (the first epoch of stage 2), then run to the end
    kills = []
    for stop_after in (0, 2, None):
        watch(monkeypatch, [], stop_after)
        try:
            final = training.train(exp, resumed, evaluate=False)
        except Interrupt as kill:
            kills.append(kill.args[0])
            assert (resumed / "backup" / f"stage-{int(kill.args[0] >= 2)}").is_dir()
    assert kills == [0, 2]
    assert [r["epoch"] for r in rows(resumed)] == [r["epoch"] for r in rows(run)]
    for a, b in zip(rows(resumed), rows(run)):
        assert a.keys() == b.keys()
        np.testing.assert_allclose([float(a[k]) for k in a], [float(b[k]) for k in b], rtol=1e-5)
    drop = lambda s: {k: v for k, v in s.items() if k != "weights"}  # noqa: E731  (HDF5 bytes hold times)
    assert drop(final) == drop(state)
    for a, b in zip(weights(resumed), weights(run)):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-7)


def test_a_run_initialised_from_another_resumes_as_the_uninterrupted_one(uninterrupted, prepared_afew,
                                                                          tmp_path, monkeypatch):
    """``init`` (thesis 000's early fusion restoring its audio run) sets the named layers once, at
    the start: a run killed after its first epoch and resumed ends as the uninterrupted one (the
    backup wins over a second initialisation), and both differ from the run without init."""
    source, _, _ = uninterrupted
    root, _ = prepared_afew
    exp = config.from_dict({**config.to_dict(experiment(root)),
                            "init": [{"source": str(source), "layers": {"rnn": "rnn"}}]})
    whole, resumed = tmp_path / "whole", tmp_path / "resumed"
    watch(monkeypatch, [])
    training.train(exp, whole, evaluate=False)
    assert {r["layer"] for r in json.loads((whole / training.INIT_REPORT).read_text())} == {"rnn1", "rnn_attention"}
    for stop_after in (0, None):
        watch(monkeypatch, [], stop_after)
        try:
            training.train(exp, resumed, evaluate=False)
        except Interrupt:
            pass
    for a, b in zip(weights(resumed), weights(whole)):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-7)
    assert any(not np.allclose(a, b) for a, b in zip(weights(whole), weights(source)))


def test_an_early_stop_can_end_the_run(prepared_afew, tmp_path):
    root, _ = prepared_afew
    exp = experiment(root, early_stopping={**STAGED["early_stopping"], "ends": "run"})
    state = training.train(exp, tmp_path / "run", evaluate=False)
    assert state["stages_done"] == 2 and len(state["stages"]) == 1 and state["epochs_done"] == 2
    assert not (tmp_path / "run" / "checkpoints" / "stage-1.weights.h5").exists()
    final = keras.models.load_model(tmp_path / "run" / "checkpoints" / "last.keras", compile=False)
    stage0 = training.build_model(exp)
    stage0.load_weights(tmp_path / "run" / "checkpoints" / "stage-0.weights.h5")
    for a, b in zip(final.get_weights(), stage0.get_weights()):
        np.testing.assert_array_equal(a, b)
    with pytest.raises(config.ConfigError, match="ends must be one of stage, run"):
        experiment(root, early_stopping={"ends": "epoch"})


def audio_model(root, tasks, **training_opts):
    """The LLD GRU with per-frame heads for ``tasks``, on the synthetic AFEW's audio."""
    return config.from_dict({
        "data": {"root": root, "pipeline": {"inputs": ["lld"], "seq_len": 8, "batch_size": 8,
                                            "padding": "zeros"}},
        "model": {"name": "audio_gru", "options": {"seq_len": 8, "units": 4, "rnn_layers": 1,
                                                   "tasks": list(tasks), "temporal": "frame"}},
        "training": {"epochs": 1, **training_opts}})


def test_per_frame_category_heads_train_on_the_video_label_of_real_frames(prepared_afew, tmp_path):
    """Thesis 003's per-frame category heads: the target repeats the video label per frame and
    the loss is the mean cross-entropy over real frames (NumPy below)."""
    root, _ = prepared_afew
    exp = audio_model(root, ["category"])
    assert training.framewise_category(exp)
    steps = training.loader.steps(exp.data, "train")
    # a batch with padded frames, which the loss must leave out
    x, y, weight = next(b for b in training.training_data(exp, 0, 1, steps) if b[0]["mask"].numpy().min() == 0)
    mask = x["mask"].numpy()
    assert y["category"].shape[1:] == (8, 7) and np.array_equal(weight["category"], mask)
    assert (y["category"].numpy().argmax(-1) == y["category"].numpy()[:, :1].argmax(-1)).all()
    model = training.compile_model(training.build_model(exp), exp.training, "adam")
    probs = model.predict_on_batch({"lld": x["lld"], "mask": x["mask"]})["category"]
    frame_ce = -np.log(np.sum(probs * y["category"].numpy(), -1))
    expected = (frame_ce * mask).sum() / mask.sum()
    logged = model.test_on_batch({"lld": x["lld"], "mask": x["mask"]}, y, weight, return_dict=True)
    np.testing.assert_allclose(logged["loss"], expected, rtol=1e-5)
    accuracy = ((probs.argmax(-1) == y["category"].numpy().argmax(-1)) * mask).sum() / mask.sum()
    np.testing.assert_allclose(logged["accuracy"], accuracy, rtol=1e-5)
    training.train(exp, tmp_path / "run", evaluate=False)  # from shards
    assert np.isfinite(float(rows(tmp_path / "run")[0]["loss"]))


def test_loss_settings_and_the_combined_models_thesis_weights(prepared_afew):
    root, _ = prepared_afew
    va = audio_model(root, ["va"], loss={"va": "mse"})
    model = training.compile_model(training.build_model(va), va.training, "adam")
    assert isinstance(model.loss["va"], keras.losses.MeanSquaredError)
    with pytest.raises(ValueError, match="training.loss: no model output named category; outputs: va"):
        bad = audio_model(root, ["va"], loss={"category": "cce"})
        training.compile_model(training.build_model(bad), bad.training, "adam")
    with pytest.raises(ValueError, match="training.loss_weights: no model output named au"):
        bad = audio_model(root, ["va"], loss_weights={"au": 1.0})
        training.compile_model(training.build_model(bad), bad.training, "adam")
    # category + valence/arousal: thesis 003's 0.33 CCE + 1.0 CCC unless the YAML says otherwise
    both = audio_model(root, ["category", "va"])
    assert training.loss_weights(both.training, ["category", "va"]) == {"category": 0.33, "va": 1.0}
    x = {"lld": np.random.default_rng(0).normal(size=(4, 8, 25)).astype("float32"), "mask": np.ones((4, 8), "float32")}
    y = {"category": np.eye(7, dtype="float32")[[0, 1, 2, 3]][:, None].repeat(8, 1),
         "va": np.random.default_rng(1).uniform(-1, 1, (4, 8, 2)).astype("float32")}
    weight = {"category": x["mask"], "va": x["mask"]}
    model = training.compile_model(training.build_model(both), both.training, "adam")
    logged = model.test_on_batch({"lld": x["lld"], "mask": x["mask"]}, y, weight, return_dict=True)
    np.testing.assert_allclose(logged["loss"], 0.33 * logged["category_loss"] + logged["va_loss"], rtol=1e-5)
    mine = audio_model(root, ["category", "va"], loss_weights={"category": 2.0})
    assert training.loss_weights(mine.training, ["category", "va"]) == {"category": 2.0, "va": 1.0}


def test_au_accuracy_counts_known_labels_only():
    """The logged AU accuracy is over entries whose label is known, as the final AU metrics."""
    from fer_keras.losses import AU_UNKNOWN
    from fer_keras.metrics import action_units

    inputs = keras.Input((3,), name="features")
    model = keras.Model(inputs, {"au": keras.layers.Dense(4, activation="sigmoid", name="au")(inputs)})
    rng = np.random.default_rng(0)
    x = rng.normal(size=(16, 3)).astype("float32")
    au = rng.integers(0, 2, (16, 4)).astype("float32")
    au[rng.random((16, 4)) < 0.4] = AU_UNKNOWN
    training.compile_model(model, config.TrainingConfig(), "adam")
    logged = model.evaluate(x, {"au": au}, verbose=0, return_dict=True)
    expected = action_units(au, model.predict(x, verbose=0)["au"])["accuracy"]
    np.testing.assert_allclose(logged["accuracy"], expected, rtol=1e-6)
