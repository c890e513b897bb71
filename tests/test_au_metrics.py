"""Thesis 004's AU evaluation against scikit-learn and hand computations: micro and per-AU
measures with 999 (unknown) entries masked, Eq. 18's partial accuracy, the mean per-AU F1, the
per-AU threshold search on a validation split, TF-Slim's wrap-around evaluation, the evaluation
options (refused with clear messages) and `evaluate()` honouring them on a tiny prepared set."""
import json

import cv2
import keras
import numpy as np
import pytest
from sklearn import metrics as skm

from data_prep.store import PreparedStore
from fer_keras import config, evaluation, training
from fer_keras.data import loader
from fer_keras.data.schema import VideoRecord, serialize
from fer_keras.losses import AU_UNKNOWN
from fer_keras.metrics import action_units, best_f1_thresholds, regression, wraparound_indices

NAMES = ["AU1", "AU2", "AU4", "AU6", "AU9"]


@pytest.fixture(scope="module")
def masked():
    """(labels with 999, probabilities): AU9 has known labels but no positive, row 0 no known AU."""
    rng = np.random.default_rng(4)
    labels = rng.integers(0, 2, (60, 5)).astype(np.float64)
    labels[rng.random(labels.shape) < 0.3] = AU_UNKNOWN
    labels[:, 4] = np.where(labels[:, 4] == AU_UNKNOWN, AU_UNKNOWN, 0)
    labels[0] = AU_UNKNOWN
    probs = np.clip(0.35 * (labels == 1) + rng.uniform(0, 0.7, labels.shape), 0, 1)
    return labels, probs


def test_every_au_measure_equals_scikit_learn_with_unknown_entries_masked(masked):
    labels, probs = masked
    got = action_units(labels, probs, au_names=NAMES)
    known = labels != AU_UNKNOWN
    truth, pred = labels == 1, probs >= 0.5
    # micro: the known (image, AU) entries pooled
    p, r, f, _ = skm.precision_recall_fscore_support(truth[known], pred[known], average="binary")
    assert (got["precision"], got["recall"], got["f1"]) == pytest.approx((p, r, f))
    assert got["accuracy"] == pytest.approx(skm.accuracy_score(truth[known], pred[known]))
    assert got["binarised_auc"] == pytest.approx(skm.balanced_accuracy_score(truth[known], pred[known]))
    assert got["roc_auc_micro"] == pytest.approx(skm.roc_auc_score(truth[known], probs[known]))
    tn, fp, fn, tp = skm.confusion_matrix(truth[known], pred[known]).ravel()
    assert (got["tp"], got["fp"], got["tn"], got["fn"]) == (tp, fp, tn, fn)
    # per AU, and the mean F1 over the AUs with a positive label (AU9 has none)
    f1s, aucs = [], []
    for k, name in enumerate(NAMES):
        t, s = truth[known[:, k], k], probs[known[:, k], k]
        au = got["per_au"][name]
        assert au["f1"] == pytest.approx(skm.f1_score(t, s >= 0.5, zero_division=0))
        assert au["precision"] == pytest.approx(skm.precision_score(t, s >= 0.5, zero_division=0))
        assert au["recall"] == pytest.approx(skm.recall_score(t, s >= 0.5, zero_division=0))
        assert au["accuracy"] == pytest.approx(skm.accuracy_score(t, s >= 0.5))
        assert (au["support"], au["known"], au["base_rate"]) == (t.sum(), t.size, pytest.approx(t.mean()))
        if t.any():
            f1s.append(au["f1"])
            aucs.append(skm.roc_auc_score(t, s))
            assert au["roc_auc"] == pytest.approx(aucs[-1])
        else:
            assert au["roc_auc"] is None and au["base_rate"] == 0
    assert got["mean_f1"] == pytest.approx(np.mean(f1s)) and len(f1s) == 4
    assert got["mean_f1_excluded"] == ["AU9"]
    assert got["roc_auc_macro"] == pytest.approx(np.mean(aucs))
    # exact match: every known AU of a row right, over the rows with a known AU
    rows = [(truth[i][known[i]] == pred[i][known[i]]).all() for i in range(len(labels)) if known[i].any()]
    assert got["exact_match_accuracy"] == pytest.approx(np.mean(rows))
    assert got["n_examples"] == len(rows) == len(labels) - 1


def test_partial_accuracy_is_eq_18_and_equals_accuracy_only_when_every_au_is_known():
    u = AU_UNKNOWN
    labels = np.array([[1, 0, 1], [1, u, 0], [u, u, 1], [u, u, u]], float)
    probs = np.array([[0.9, 0.2, 0.3],    # 1 0 0: 2 of 3 right
                      [0.7, 0.1, 0.8],    # 1 _ 1: 1 of 2
                      [0.1, 0.5, 0.6],    # _ _ 1: 1 of 1
                      [0.9, 0.9, 0.9]])   # nothing known: not an example
    got = action_units(labels, probs)
    assert got["partial_accuracy"] == pytest.approx((2 / 3 + 1 / 2 + 1) / 3)
    assert got["accuracy"] == pytest.approx(4 / 6)
    assert got["exact_match_accuracy"] == pytest.approx(1 / 3) and got["n_examples"] == 3
    # every AU known (thesis 004's 11-AU set): Eq. 18's mean equals the element-wise accuracy
    full = action_units(labels[:2].clip(0, 1), probs[:2])
    assert full["partial_accuracy"] == pytest.approx(full["accuracy"])
    # nothing known at all
    assert action_units(np.full((2, 3), u), probs[:2])["partial_accuracy"] is None


def test_per_au_thresholds_maximise_each_aus_f1():
    u = AU_UNKNOWN
    labels = np.array([[1, 1, 0, 1], [1, 0, 0, 0], [0, 1, 0, 0], [1, 0, 0, 1], [0, u, 0, u]], float)
    probs = np.array([[0.9, 0.6, 0.3, 0.8],
                      [0.8, 0.6, 0.2, 0.6],
                      [0.7, 0.4, 0.1, 0.4],
                      [0.3, 0.2, 0.9, 0.2],
                      [0.2, 0.9, 0.5, 0.9]])
    thresholds, search = best_f1_thresholds(labels, probs, au_names=["a", "b", "c", "d"])
    # a: F1 at .9 .8 .7 .3 .2 = 2/4, 4/5, 4/6, 6/7, 6/8 -> .3
    # b: the unknown .9 is no candidate; ties at .6 (one positive, one negative): .6 2/4, .4 4/5, .2 4/6 -> .4
    # c: no positive label: 0.5 kept
    # d: .8 and .2 both reach 2/3 (.6 2/4, .4 2/5): the tie goes to the higher threshold
    np.testing.assert_allclose(thresholds, [0.3, 0.4, 0.5, 0.8])
    assert search["a"] == {"threshold": 0.3, "f1": pytest.approx(6 / 7), "searched": True}
    assert search["b"]["f1"] == pytest.approx(4 / 5) and search["d"]["f1"] == pytest.approx(2 / 3)
    assert search["c"] == {"threshold": 0.5, "f1": None, "searched": False}
    tuned = action_units(labels, probs, threshold=thresholds)
    assert tuned["threshold"] == [0.3, 0.4, 0.5, 0.8]
    assert tuned["per_au"]["0"]["f1"] == pytest.approx(6 / 7)

    # on random data no threshold of a fine grid beats the search, and its F1 is scikit-learn's
    rng = np.random.default_rng(1)
    y = rng.integers(0, 2, (200, 3)).astype(float)
    y[rng.random(y.shape) < 0.2] = u
    s = np.round(np.clip(0.3 * (y == 1) + rng.uniform(0, 0.7, y.shape), 0, 1), 2)  # rounded: many ties
    thresholds, search = best_f1_thresholds(y, s)
    for k in range(3):
        known = y[:, k] != u
        t, p = y[known, k] == 1, s[known, k]
        grid = p[None] >= np.linspace(0, 1, 1001)[:, None]  # (1001, n) decisions
        best = np.max(2 * (grid & t).sum(1) / (grid.sum(1) + t.sum()))
        assert search[str(k)]["f1"] == pytest.approx(skm.f1_score(t, p >= thresholds[k]))
        assert search[str(k)]["f1"] >= best - 1e-12


def test_wraparound_indices_are_tf_slims_cycling_batches():
    idx = wraparound_indices(4424, 100)
    assert len(idx) == 4500
    np.testing.assert_array_equal(idx[:4424], np.arange(4424))
    np.testing.assert_array_equal(idx[4424:], np.arange(76))  # the first 76 counted twice
    np.testing.assert_array_equal(wraparound_indices(6400, 100), np.arange(6400))
    np.testing.assert_array_equal(wraparound_indices(3, 4), [0, 1, 2, 0])
    np.testing.assert_array_equal(wraparound_indices(2, 5), [0, 1, 0, 1, 0])  # cycles more than once
    assert wraparound_indices(0, 100).size == 0
    for n, batch in ((5, 0), (5, True), (-1, 10), (5, 2.5)):
        with pytest.raises(ValueError, match="must be"):
            wraparound_indices(n, batch)


def test_valence_arousal_has_pooled_and_per_dimension_errors(tmp_path):
    """Thesis 004 reports only the pooled MSE and RMSE (MSE = RMSE^2, both outputs together)."""
    rng = np.random.default_rng(2)
    true, pred = rng.normal(size=(9, 2)), rng.normal(size=(9, 2))
    got = regression(true, pred)
    per_dim = ((pred - true) ** 2).mean(axis=0)
    assert got["pooled"]["mse"] == pytest.approx(per_dim.mean())
    assert got["pooled"]["rmse"] == pytest.approx(np.sqrt(per_dim.mean()))
    for d, name in enumerate(("valence", "arousal")):
        assert got[name]["mse"] == pytest.approx(per_dim[d]) and got[name]["rmse"] == pytest.approx(np.sqrt(per_dim[d]))
        assert got[name]["ccc"] is not None
    # evaluation's va section, one exact pass and emulated (the per-video numbers stay exact)
    ids, mask = [f"v{i}" for i in range(9)], np.ones((9, 1))
    exact, _ = evaluation._va(pred[:, None], true[:, None], mask, ids, tmp_path)
    assert exact["frame"]["pooled"] == got["pooled"] and exact["frame"]["n"] == 9
    wrapped, _ = evaluation._va(pred[:, None], true[:, None], mask, ids, tmp_path, wraparound_indices(9, 4))
    again = regression(np.r_[true, true[:3]], np.r_[pred, pred[:3]])
    assert wrapped["frame"]["n"] == 12 and wrapped["frame"]["pooled"] == pytest.approx(again["pooled"])
    assert wrapped["per_video"] == exact["per_video"]


# --- the options --------------------------------------------------------------------------------

@pytest.mark.parametrize("value", [0, 1, 1.5, -0.1, True, "0.5", "test", None, float("nan")])
def test_a_bad_au_threshold_is_refused(value):
    with pytest.raises(config.ConfigError, match=r"evaluation: au_threshold must be a number in \(0, 1\) or 'val'"):
        config.from_dict({"evaluation": {"au_threshold": value}})


@pytest.mark.parametrize("value", [0, -100, 2.5, True, "100"])
def test_a_bad_emulate_batches_is_refused(value):
    with pytest.raises(config.ConfigError, match="evaluation: emulate_batches must be a batch size >= 1"):
        config.from_dict({"evaluation": {"emulate_batches": value}})


def test_good_options_load_and_default_to_one_exact_pass_at_half():
    default = config.from_dict({}).evaluation
    assert (default.au_threshold, default.emulate_batches) == (0.5, None)
    ev = config.from_dict({"evaluation": {"au_threshold": "val", "emulate_batches": 100}}).evaluation
    assert (ev.au_threshold, ev.emulate_batches) == ("val", 100)
    assert config.from_dict({"evaluation": {"au_threshold": 0.3}}).evaluation.au_threshold == 0.3


# --- evaluate() on a tiny prepared set ----------------------------------------------------------

AUS = 3


def _image(video_id, probs, labels):
    """A single-image record whose LLD row holds the probabilities the model will output."""
    jpeg = cv2.imencode(".jpg", np.zeros((8, 8, 3), np.uint8))[1].tobytes()
    return VideoRecord(video_id=video_id, label=0, fps=25.0, face_size=8, frames=[jpeg],
                       frame_index=np.zeros(1, np.int64), audio_lld=np.asarray([probs], np.float32),
                       audio_functionals=np.zeros(2, np.float32), source_frames=1, dataset="synthetic",
                       action_units=np.asarray([labels], np.float32))


def _write_set(out, splits):
    """A prepared set of single images; ``splits``: {split: number of images}. Returns the
    {video id: (probs, labels)} truth."""
    rng = np.random.default_rng(len(splits))
    header = {"dataset": "synthetic", "classes": ["a", "b"], "options": {"face_size": 8},
              "audio": {"lld_dim": AUS, "functionals_dim": 2},
              "labels": {"au_dim": AUS, "au_names": ["AU1", "AU2", "AU12"]}}
    store, truth = PreparedStore(out, header, shard_size=4), {}
    for split, n in splits.items():
        for i in range(n):
            labels = rng.integers(0, 2, AUS).astype(np.float32)
            labels[rng.random(AUS) < 0.25] = AU_UNKNOWN
            probs = np.round(np.clip(0.3 * (labels == 1) + rng.uniform(0, 0.7, AUS), 0, 1), 2).astype(np.float32)
            vid = f"{split}-{i:02d}"
            truth[vid] = (probs, labels)
            store.add({"key": f"{split}/{vid}", "id": vid, "split": split, "status": "ok", "frames_kept": 1},
                      serialize(_image(vid, probs, labels)))
    store.close()
    return truth


def _passthrough():
    """au = the LLD row (on real steps): the model outputs the probabilities the record holds."""
    lld, mask = keras.Input((1, AUS), name="lld"), keras.Input((1,), name="mask")
    au = keras.layers.Multiply(name="au")([lld, keras.layers.Reshape((1, 1))(mask)])
    return keras.Model({"lld": lld, "mask": mask}, {"au": au})


def _run(root, run_dir, **evaluation_opts):
    exp = config.from_dict({
        "name": "tiny_au", "data": {"root": root, "pipeline": {"inputs": ["lld"], "targets": ["au"],
                                                               "seq_len": 1, "batch_size": 4}},
        "model": {"name": "audio_gru", "options": {"seq_len": 1, "units": 2, "rnn_layers": 1, "tasks": ["au"]}},
        "evaluation": {"split": "test", **evaluation_opts}})
    run = training.prepare_run_dir(exp, run_dir)
    model = _passthrough()
    for path in (run.best, run.last):
        model.save(path)
    return exp, run


def _read_order(exp, split, truth):
    ids = [v.decode() for _, _, meta in loader.split(exp.data, split, with_meta=True)
           for v in meta["video_id"].numpy()]
    return ids, np.stack([truth[v][1] for v in ids]), np.stack([truth[v][0] for v in ids])


def test_evaluate_tunes_thresholds_on_val_and_emulates_the_wraparound(tmp_path):
    root = str(tmp_path / "data")
    truth = _write_set(root, {"val": 12, "test": 7})
    exp, run = _run(root, tmp_path / "run", au_threshold="val", emulate_batches=4)
    result = evaluation.evaluate(run.root)
    written = json.loads((run.root / "metrics.json").read_text())
    assert written["au"] == result["au"]

    ids, labels, probs = _read_order(exp, "test", truth)
    assert len(ids) == 7
    idx = wraparound_indices(7, 4)  # 2 batches of 4: the first image read counted twice
    assert written["n_evaluated"] == 8
    assert written["emulated_batches"] == {"batch_size": 4, "batches": 2, "n_items": 7, "repeats": 1}
    names = ["AU1", "AU2", "AU12"]
    at_half = action_units(labels[idx], probs[idx], au_names=names)
    au = written["au"]
    for key in ("tp", "fp", "tn", "fn", "accuracy", "partial_accuracy", "f1", "mean_f1", "exact_match_accuracy"):
        assert au[key] == pytest.approx(at_half[key]), key
    assert au["threshold"] == 0.5 and au["n_examples"] == at_half["n_examples"]

    _, val_labels, val_probs = _read_order(exp, "val", truth)
    thresholds, search = best_f1_thresholds(val_labels, val_probs, au_names=names)
    tuned = au["tuned"]
    assert tuned["split"] == "val" and list(tuned["thresholds"]) == names
    np.testing.assert_allclose(list(tuned["thresholds"].values()), thresholds)
    assert tuned["search"] == search
    expected = action_units(labels[idx], probs[idx], threshold=thresholds, au_names=names)
    for key in ("tp", "fp", "tn", "fn", "f1", "mean_f1", "partial_accuracy"):
        assert tuned[key] == pytest.approx(expected[key]), key
    assert "Partial accuracy" in (run.root / "report.md").read_text()


def test_evaluate_at_a_fixed_threshold_and_refuses_val_without_a_val_split(tmp_path):
    root = str(tmp_path / "data")
    truth = _write_set(root, {"train": 2, "test": 5})
    exp, run = _run(root, tmp_path / "fixed", au_threshold=0.3)
    au = evaluation.evaluate(run.root)["au"]
    _, labels, probs = _read_order(exp, "test", truth)
    assert "tuned" not in au and au["threshold"] == 0.3
    assert au["tp"] == action_units(labels, probs, threshold=0.3)["tp"]
    metrics = json.loads((run.root / "metrics.json").read_text())
    assert (metrics["n_evaluated"], metrics["emulated_batches"]) == (5, None)

    _, run = _run(root, tmp_path / "val", au_threshold="val")
    with pytest.raises(ValueError, match=r"au_threshold 'val' picks each AU's threshold on the validation "
                                         r"split 'val'.*prepare the dataset with --val-fraction"):
        evaluation.evaluate(run.root)
    assert not (run.root / "metrics.json").exists()
