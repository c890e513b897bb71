"""Data integrity: shard checksums in the manifest, `fer-keras verify`, one clear line for a damaged
or missing file through verify, train and evaluate, and prepare repairing what it finds broken."""
import hashlib
import json
import os
import shutil

import numpy as np
import pytest
import tensorflow as tf

from fer_keras import config
from fer_keras.cli import main
from test_evaluation import make_run, tiny_experiment


@pytest.fixture
def dataset(prepared_afew, tmp_path):
    """A private copy of the prepared synthetic AFEW set (the session's stays intact)."""
    root = tmp_path / "data"
    shutil.copytree(prepared_afew[0], root)
    return root, json.loads((root / "manifest.json").read_text())


def _shard(manifest, split):
    return manifest["splits"][split]["shards"][0]


def _damage(root, rel, how, manifest):
    path = root / rel
    data = path.read_bytes()
    if how == "flip":
        path.write_bytes(data[:len(data) // 2] + bytes([data[len(data) // 2] ^ 0x01]) + data[len(data) // 2 + 1:])
    elif how == "truncate":
        path.write_bytes(data[: len(data) - 100])
    elif how == "delete":
        path.unlink()
    elif how == "swap":  # another split's shard in its place
        shutil.copy(root / _shard(manifest, "val"), path)


def test_manifest_records_size_records_and_sha256_of_each_shard(dataset):
    root, manifest = dataset
    for split, info in manifest["splits"].items():
        for rel in info["shards"]:
            data = (root / rel).read_bytes()
            records = sum(1 for _ in tf.data.TFRecordDataset(str(root / rel)))
            assert manifest["files"][rel] == {"size": len(data), "records": records,
                                              "sha256": hashlib.sha256(data).hexdigest()}
            assert records == sum(v.get("shard") == rel for v in manifest["videos"].values())


def test_verify_passes_an_intact_dataset(dataset, capsys):
    root, _ = dataset
    assert main(["verify", str(root)]) == 0
    assert main(["verify", str(root), "--records"]) == 0
    assert "0 problem(s)" in capsys.readouterr().out


@pytest.mark.parametrize("how, says", [("flip", "checksum differs"), ("truncate", "truncated or replaced"),
                                       ("delete", "missing"), ("swap", "truncated or replaced")])
def test_verify_names_the_damaged_shard_in_one_line(dataset, capsys, how, says):
    root, manifest = dataset
    rel = _shard(manifest, "train")
    _damage(root, rel, how, manifest)
    assert main(["verify", str(root)]) == 1
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 2 and lines[0].startswith(str(root / rel)) and says in lines[0]
    assert "fer-keras prepare" in lines[0] and "1 problem(s)" in lines[1]


def test_quick_checks_sizes_and_records_parses_every_record(dataset, capsys):
    root, manifest = dataset
    rel = _shard(manifest, "train")
    _damage(root, rel, "flip", manifest)
    assert main(["verify", str(root), "--quick"]) == 0  # a flipped byte keeps the size
    del manifest["files"][rel]  # a shard written before checksums: its records are parsed
    (root / "manifest.json").write_text(json.dumps(manifest))
    capsys.readouterr()
    assert main(["verify", str(root)]) == 1
    line = capsys.readouterr().out.splitlines()[0]
    assert line.startswith(str(root / rel)) and "corrupt record" in line


def test_a_swapped_shard_of_the_same_size_is_caught_by_its_ids(dataset, capsys):
    root, manifest = dataset
    train, val = _shard(manifest, "train"), _shard(manifest, "val")
    shutil.copy(root / val, root / train)
    manifest["files"].pop(train)  # no checksum to compare: the video ids must tell
    (root / "manifest.json").write_text(json.dumps(manifest))
    assert main(["verify", str(root)]) == 1
    assert "not the videos the manifest lists" in capsys.readouterr().out


def _experiment_file(root, tmp_path):
    path = tmp_path / "tiny.yaml"
    config.save(tiny_experiment(str(root)), path)
    return path


@pytest.mark.parametrize("how", ["flip", "delete"])
def test_train_ends_with_one_line_naming_the_shard(dataset, tmp_path, capsys, how):
    root, manifest = dataset
    rel = _shard(manifest, "train")
    _damage(root, rel, how, manifest)
    assert main(["train", str(_experiment_file(root, tmp_path)), "--run-dir", str(tmp_path / "run")]) == 2
    err = [line for line in capsys.readouterr().err.splitlines() if line.startswith("error:")]
    assert len(err) == 1 and str(root / rel) in err[0] and "Traceback" not in err[0]


@pytest.mark.parametrize("how", ["flip", "truncate"])
def test_evaluate_ends_with_one_line_naming_the_shard(dataset, tmp_path, capsys, how):
    root, manifest = dataset
    run = make_run(tiny_experiment(str(root)), tmp_path / "run")
    rel = _shard(manifest, "val")
    _damage(root, rel, how, manifest)
    assert main(["evaluate", str(run.root)]) == 2
    captured = capsys.readouterr().err
    err = [line for line in captured.splitlines() if line.startswith("error:")]
    assert len(err) == 1 and str(root / rel) in err[0] and "Traceback" not in captured


def test_truncated_feature_file_is_one_line(tmp_path, capsys):
    from fer_keras.data.features import write_features

    path = tmp_path / "fold-0-features-6.h5"
    rng = np.random.default_rng(0)
    write_features(path, rng.normal(size=(3, 5, 6)), np.ones((3, 5)), np.eye(2)[[0, 1, 0]], ["a", "b", "c"],
                   ["x", "y"])
    assert json.loads((tmp_path / "features.json").read_text())[path.name]["records"] == 3
    assert main(["verify", str(tmp_path)]) == 0
    path.write_bytes(path.read_bytes()[:-200])
    assert main(["verify", str(tmp_path)]) == 1
    lines = capsys.readouterr().out.splitlines()
    assert lines[-2].startswith(str(path)) and "truncated" in lines[-2]


def _records(root, manifest):
    """Every record of a prepared dataset by video id (raw bytes)."""
    out = {}
    for info in manifest["splits"].values():
        for rel in info["shards"]:
            for raw in tf.data.TFRecordDataset(str(root / rel)).as_numpy_iterator():
                example = tf.train.SequenceExample.FromString(raw)
                out[example.context.feature["video_id"].bytes_list.value[0].decode()] = raw
    return out


def test_prepare_repairs_a_corrupted_and_a_missing_shard(dataset, synthetic_afew):
    """A rerun with verify re-prepares the videos of a flipped and of a deleted shard, touching
    nothing else; the dataset then equals the intact preparation record for record."""
    from data_prep.datasets.afew.layout import prepare
    from data_prep.prepare import PrepareOptions

    root, manifest = dataset
    before = _records(root, manifest)
    kept = _shard(manifest, "train")
    kept_time = os.path.getmtime(root / kept)
    flipped, deleted = _shard(manifest, "val"), _shard(manifest, "test")
    _damage(root, flipped, "flip", manifest)
    _damage(root, deleted, "delete", manifest)
    repaired = prepare(synthetic_afew[0], str(root), PrepareOptions(verify=True), progress=False)
    assert _records(root, repaired) == before
    assert os.path.getmtime(root / kept) == kept_time  # untouched
    lines = [json.loads(line) for line in (root / "failures.jsonl").read_text().splitlines()]
    fixed = {line["key"]: line for line in lines if line["action"] == "repaired"}
    assert set(fixed) == {flipped, deleted} and "checksum" in fixed[flipped]["message"]
    assert main(["verify", str(root)]) == 0
