"""Issue 15 items 4, 9, 10: AU accuracy over known labels while training, F1 averages over all
classes, AU example counts without padded frames; each against NumPy / scikit-learn."""
import csv
import json
import os

import keras
import numpy as np
import pytest
from sklearn import metrics as skm

from fer_keras import evaluation, metrics
from fer_keras.fusion import fuse_to_dir
from fer_keras.losses import AU_UNKNOWN, MaskedSigmoidCrossEntropy
from fer_keras.metrics import MaskedBinaryAccuracy


def au_frames(seed, batch=4, steps=5, aus=3):
    """(labels (B, T, A), probs, frame mask (B, T)): some 999 entries, padded frames all 999."""
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, 2, (batch, steps, aus)).astype("float32")
    labels[rng.uniform(size=labels.shape) < 0.3] = AU_UNKNOWN
    probs = rng.uniform(size=labels.shape).astype("float32")
    probs[0, 0, 0] = 0.5  # exactly at the threshold: positive, as action_units has it
    lengths = rng.integers(1, steps + 1, batch)
    mask = (np.arange(steps)[None] < lengths[:, None]).astype("float32")
    labels[mask == 0] = AU_UNKNOWN
    return labels, probs, mask


def known_accuracy(labels, probs, weight):
    """Weighted share of known entries predicted right, written out in NumPy."""
    w = (labels != AU_UNKNOWN) * weight
    hit = (labels == 1) == (probs >= 0.5)
    return float((w * hit).sum() / w.sum())


# ---------------------------------------------------------------- item 4: AU accuracy in training

def test_masked_binary_accuracy_streams_the_known_entry_accuracy():
    labels, probs, mask = au_frames(0)
    labels[0, 0, 0] = 1
    # padded frames hold known-looking labels here: only the frame mask can drop them
    garbage = labels.copy()
    garbage[mask == 0] = 0
    rng = np.random.default_rng(1)
    images = rng.integers(0, 2, (6, 3)).astype("float32")  # a per-image batch, weights (B,)
    images[0] = AU_UNKNOWN
    image_probs = rng.uniform(size=images.shape).astype("float32")
    image_weight = np.array([1, 1, 0, 1, 1, 1], "float32")

    metric = MaskedBinaryAccuracy()
    metric.update_state(garbage, probs, sample_weight=mask)
    metric.update_state(images, image_probs, sample_weight=image_weight)

    rows = np.concatenate([labels.reshape(-1, 3), images[image_weight > 0]])
    row_probs = np.concatenate([probs.reshape(-1, 3), image_probs[image_weight > 0]])
    expected = known_accuracy(rows, row_probs, 1.0)
    assert float(metric.result()) == pytest.approx(expected, abs=1e-6)
    assert float(metric.result()) == pytest.approx(
        metrics.action_units(rows, row_probs)["accuracy"], abs=1e-6)
    # the data tell the two apart: Keras' BinaryAccuracy counts the 999 entries as wrong
    assert expected != pytest.approx(float(((rows == 1) == (row_probs >= 0.5)).mean()), abs=1e-3)


def test_masked_binary_accuracy_all_unknown_is_zero_and_neutral():
    unknown = np.full((2, 4, 3), AU_UNKNOWN, "float32")
    probs = np.full(unknown.shape, 0.9, "float32")
    metric = MaskedBinaryAccuracy()
    metric.update_state(unknown, probs)
    assert float(metric.result()) == 0.0  # no known entry: 0, not NaN

    labels, probs2, mask = au_frames(2)
    metric.update_state(labels, probs2, sample_weight=mask)
    metric.update_state(unknown, probs)
    assert float(metric.result()) == pytest.approx(known_accuracy(labels, probs2, mask[..., None]),
                                                   abs=1e-6)
    metric.reset_state()
    assert float(metric.result()) == 0.0


def test_masked_binary_accuracy_serialises():
    metric = MaskedBinaryAccuracy(threshold=0.3, ignore=-1, name="au_acc")
    again = keras.metrics.deserialize(keras.metrics.serialize(metric))
    assert type(again) is MaskedBinaryAccuracy
    assert (again.threshold, again.ignore, again.name) == (0.3, -1, "au_acc")


def test_masked_binary_accuracy_in_compile_and_evaluate():
    rng = np.random.default_rng(3)
    x = rng.normal(size=(16, 4)).astype("float32")
    y = rng.integers(0, 2, (16, 3)).astype("float32")
    y[rng.uniform(size=y.shape) < 0.4] = AU_UNKNOWN
    inputs = keras.Input((4,))
    outputs = {"au": keras.layers.Dense(3, activation="sigmoid", name="au")(inputs),
               "va": keras.layers.Dense(2, name="va")(inputs)}  # two outputs: logs say "au_..."
    model = keras.Model(inputs, outputs)
    model.compile(loss={"au": MaskedSigmoidCrossEntropy(), "va": "mse"},
                  metrics={"au": [MaskedBinaryAccuracy()]})
    logs = model.evaluate(x, {"au": y, "va": np.zeros((16, 2), "float32")}, batch_size=5,
                          verbose=0, return_dict=True)
    probs = model.predict(x, verbose=0)["au"]
    expected = metrics.action_units(y, probs)["accuracy"]
    assert logs["au_accuracy"] == pytest.approx(known_accuracy(y, probs, 1.0), abs=1e-6)
    assert logs["au_accuracy"] == pytest.approx(expected, abs=1e-6)


# ---------------------------------------------------------------- item 9: F1 over all classes

def test_classification_macro_f1_averages_an_absent_class():
    y, p, classes = [0, 1, 1, 0], [0, 1, 0, 0], ("x", "y", "z")  # "z": no true, no predicted
    out = metrics.classification(y, p, classes)
    per_class = [out["per_class"][c]["f1"] for c in classes]
    assert out["macro_f1"] == pytest.approx(np.mean(per_class))
    reference = skm.f1_score(y, p, labels=[0, 1, 2], average=None, zero_division=0).mean()
    assert out["macro_f1"] == pytest.approx(reference)
    support = [out["per_class"][c]["support"] for c in classes]
    assert out["weighted_f1"] == pytest.approx(np.average(per_class, weights=support))


def write_run(run_dir, labels, probs, classes):
    os.makedirs(run_dir)
    with open(os.path.join(run_dir, "predictions.csv"), "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["video_id", "label", "prediction", *(f"p_{c}" for c in classes)])
        for i, (label, p) in enumerate(zip(labels, probs)):
            writer.writerow([f"v{i}", label, classes[int(np.argmax(p))], *p])
    with open(os.path.join(run_dir, "metrics.json"), "w") as f:
        json.dump({"accuracy": 0.5, "classes": list(classes)}, f)
    return run_dir


def test_fusion_macro_f1_averages_an_absent_class(tmp_path):
    classes = ("A", "B", "C")  # "C" is neither a label nor a prediction
    labels = ["A", "B", "B", "A"]
    probs = [(0.7, 0.2, 0.1), (0.2, 0.7, 0.1), (0.6, 0.3, 0.1), (0.8, 0.1, 0.1)]
    run = write_run(str(tmp_path / "m0"), labels, probs, classes)
    out = fuse_to_dir([run], "average", tmp_path / "fused")
    t, p = [classes.index(c) for c in labels], np.argmax(probs, axis=1)
    per_class = metrics.classification(t, p, classes)["per_class"]
    assert out["macro_f1"] == pytest.approx(np.mean([per_class[c]["f1"] for c in classes]))
    reference = skm.f1_score(t, p, labels=[0, 1, 2], average=None, zero_division=0).mean()
    assert out["macro_f1"] == pytest.approx(reference)


# ---------------------------------------------------------------- item 10: AU example count

def test_action_units_examples_exclude_padded_frames():
    labels, probs, mask = au_frames(4)
    labels[mask > 0] = np.where(labels[mask > 0] == AU_UNKNOWN, 0, labels[mask > 0])  # all known
    out = metrics.action_units(labels, probs)
    assert out["n_examples"] == int(mask.sum()) < mask.size
    kept = metrics.action_units(labels[mask > 0], probs[mask > 0])
    assert out == kept  # nothing else depends on the padded rows

    via_evaluation = evaluation._au(probs, labels, mask, {})
    assert via_evaluation["n_examples"] == int(mask.sum())
