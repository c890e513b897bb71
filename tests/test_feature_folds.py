"""Cross-validation on a feature folder (thesis 002 cascades): which rows each split reads, and the
runner over fold files, checked against sets and means computed here from the files."""
import csv
import json

import h5py
import numpy as np
import pytest

from fer_keras import config, cv
from fer_keras.data import loader
from fer_keras.data.features import write_features

CLASSES = ["Angry", "Disgust", "Fear", "Happy", "Sad", "Surprise"]
T, F = 6, 16
FOLDS = [["F001", "M001"], ["F002", "M002"], ["F003", "M003"]]
TEST = ["F009", "M009"]


def _videos(subjects, methods=()):
    names = []
    for s in subjects:
        for c in CLASSES[:3]:
            names.append(f"{s}_{c.lower()}_tex")
            names += [f"{s}_{c.lower()}_tex~{m}" for m in methods]
    return names


def _write(path, names, rng):
    labels = np.eye(len(CLASSES), dtype=np.float32)[[CLASSES.index(n.split("_")[1].split("~")[0].title())
                                                      for n in names]]
    features = rng.normal(size=(len(names), T, F)).astype(np.float32) + labels[:, None, :3].repeat(6, -1)[..., :F]
    masks = np.ones((len(names), T), np.float32)
    masks[::3, T - 2:] = 0  # some videos shorter than T
    write_features(path, features * masks[..., None], masks, labels, names, CLASSES)


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    root = tmp_path_factory.mktemp("features")
    rng = np.random.default_rng(0)
    for k, subjects in enumerate(FOLDS):
        _write(root / f"fold-{k}-features-{F}.h5", _videos(subjects, ("flip", "rotate")), rng)
    _write(root / f"test-features-{F}.h5", _videos(TEST), rng)
    return root


def _data(root, **kw):
    return config.from_dict({"data": {"root": str(root), "format": "hdf5", "features": F, "test_split": "test",
                                      "pipeline": {"seq_len": T, "batch_size": 4}, **kw}}).data


def _names(sources):
    out = []
    for path, rows in sources:
        with h5py.File(path, "r") as f:
            out += list(f["names"].asstr()[()][rows])
    return out


def _read_ids(data, split):
    ds = loader.split(data, split, with_meta=True)
    return [v.decode() for _, _, meta in ds.as_numpy_iterator() for v in meta["video_id"]]


@pytest.mark.parametrize("augmentations", [[], ["flip"], "all"])
def test_fold_parts_read_the_right_rows(folder, augmentations):
    data = _data(folder, fold=1, augmentations=augmentations)
    methods = {"flip", "rotate"} if augmentations == "all" else set(augmentations)
    others = FOLDS[0] + FOLDS[2]
    expected_train = {n for n in _videos(others, ("flip", "rotate")) if "~" not in n or n.split("~")[1] in methods}
    assert set(_names(loader.feature_sources(data, "train"))) == expected_train
    assert sorted(_read_ids(data, "train")) == sorted(expected_train)  # through the tf.data reader
    assert sorted(_read_ids(data, "val")) == sorted(_videos(FOLDS[1]))  # its own videos, never copies
    assert sorted(_read_ids(data, "test")) == sorted(_videos(TEST))
    expected_steps = -(-len(expected_train) // 4)
    assert loader.steps(data, "train") == expected_steps


def test_final_model_reads_every_fold_and_no_validation(folder):
    data = _data(folder, augmentations="all")
    assert set(_names(loader.feature_sources(data, "train"))) == set(
        _videos(sum(FOLDS, []), ("flip", "rotate")))
    with pytest.raises(ValueError, match="set data.fold"):
        loader.feature_sources(data, "val")


def test_feature_rows_equal_the_file(folder):
    """The values come through unchanged: the batch of the validation split against h5py."""
    data = _data(folder, fold=2)
    x, _, meta = next(iter(loader.split(data, "val", with_meta=True)))
    with h5py.File(folder / f"fold-2-features-{F}.h5", "r") as f:
        names = list(f["names"].asstr()[()])
        for i, v in enumerate(meta["video_id"].numpy()):
            np.testing.assert_array_equal(x["features"][i].numpy(), f["features"][names.index(v.decode())])


def test_bad_feature_folders_are_refused(folder, tmp_path):
    with pytest.raises(ValueError, match="fold 5 does not exist"):
        loader.feature_sources(_data(folder, fold=5), "train")
    with pytest.raises(FileNotFoundError, match="no fold-0-features-16.h5"):
        loader.feature_sources(_data(tmp_path, fold=0), "train")
    with pytest.raises(config.ConfigError, match="features"):
        config.from_dict({"data": {"format": "tfrecord", "features": 16}})
    gap = tmp_path / "gap"
    gap.mkdir()
    for k in (0, 2):
        (gap / f"fold-{k}-features-{F}.h5").write_bytes((folder / f"fold-{k}-features-{F}.h5").read_bytes())
    with pytest.raises(ValueError, match="without a gap"):
        loader.feature_folds(_data(gap))


def test_test_subject_in_a_fold_file_is_refused(folder, tmp_path):
    for path in folder.glob("*.h5"):
        (tmp_path / path.name).write_bytes(path.read_bytes())
    _write(tmp_path / f"test-features-{F}.h5", _videos(["F002"]), np.random.default_rng(1))
    with pytest.raises(ValueError, match="F002"):
        cv.check_training_subjects(_data(tmp_path))


def _experiment(folder, protocol):
    return {"name": "cascade", "protocol": protocol,
            "reproduces": {"thesis": "002", "table": "t", "row": "r", "metric": "accuracy", "value": 57.4},
            "data": {"root": str(folder), "format": "hdf5", "features": F, "augmentations": ["flip"],
                     "test_split": "test",
                     "pipeline": {"seq_len": T, "batch_size": 8, "shuffle_buffer": 16}},
            "model": {"name": "cascade_lstm", "options": {"input_dim": F, "seq_len": T, "units": 8}},
            "training": {"epochs": 1, "monitor": "val_accuracy", "verbose": 0,
                         "optimizer": {"name": "adam", "learning_rate": 0.01}},
            "evaluation": {"split": "val", "checkpoint": "last"}}


def test_cv_folds_protocol_on_a_feature_folder(folder, tmp_path):
    """Phase folds over three fold files: folds.json's per-fold best validation accuracy and mean
    against the fold runs' history.csv, and the reference beside the thesis value."""
    out = tmp_path / "cv"
    cv.cross_validate(_experiment(folder, "cv_folds"), out, phase="folds")
    summary = json.loads((out / cv.FOLDS_SUMMARY).read_text())
    bests = []
    for k in range(3):
        with open(out / "folds" / f"fold-{k}" / "history.csv", newline="") as f:
            bests.append(max(float(r["val_accuracy"]) for r in csv.DictReader(f)))
    assert [f["value"] for f in summary["folds"]] == pytest.approx(bests)
    assert summary["mean"] == pytest.approx(np.mean(bests))
    ref = summary["reference"]
    assert ref["ours"] == pytest.approx(100 * np.mean(bests)) and ref["value"] == 57.4
    assert ref["difference"] == pytest.approx(100 * np.mean(bests) - 57.4)
    with open(out / "folds" / "fold-0" / "config.yaml") as f:
        assert "fold: 0" in f.read()


@pytest.mark.slow
def test_cv_all_phases_on_a_feature_folder(folder, tmp_path):
    """The final model trains on every fold file (copies by the YAML's methods) and is evaluated
    on the test file; protocol cv leaves folds.json without a reference (the row is the test)."""
    out = tmp_path / "cv"
    result = cv.cross_validate(_experiment(folder, "cv"), out, phase="all")
    assert json.loads((out / cv.FOLDS_SUMMARY).read_text())["reference"] is None
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["split"] == "test" and metrics["n_videos"] == len(_videos(TEST))
    assert metrics["reference"]["value"] == 57.4
    assert result["final"]["epochs"] == cv.final_epochs([e for _, e in result["final"]["best"]])
