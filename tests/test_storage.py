"""Prepared datasets on a file system TensorFlow reaches (fer_keras/storage.py), tested on its
in-memory ``ram://`` (what ``gs://`` / ``s3://`` / ``hdfs://`` get through the same calls): prepared,
resumed, sharded, merged, verified and batched there as on a local disk; the stages that need a
local file refuse a remote path with a clear error."""
from __future__ import annotations

import argparse
import json
import os
import shutil
import uuid

import numpy as np
import pytest
import tensorflow as tf

from data_prep.registry import dataset
from fer_keras import storage
from fer_keras.config import DataConfig, PipelineConfig
from fer_keras.data import integrity, loader, pixel_stats
from fer_keras.data.manifest import FAILURES, MANIFEST
from fer_keras.rundir import RunDir


def _read(root, name):
    with tf.io.gfile.GFile(storage.join(root, name)) as f:
        return f.read()


def _contents(root) -> dict:
    """The records of every split (parsed, order-free), video entries, counts and failures of a
    prepared dataset, read through tf.io.gfile (local or remote alike)."""
    manifest = json.loads(_read(root, MANIFEST))
    records = {split: sorted(tf.train.SequenceExample.FromString(r.numpy()).SerializeToString(deterministic=True)
                             for rel in info["shards"] for r in tf.data.TFRecordDataset(storage.join(root, rel)))
               for split, info in manifest["splits"].items()}
    return {"records": records, "failures": sorted(_read(root, FAILURES).splitlines()),
            "videos": {k: {f: v for f, v in e.items() if f != "shard"} for k, e in manifest["videos"].items()},
            "counts": {s: {k: v for k, v in i.items() if k != "shards"} for s, i in manifest["splits"].items()}}


@pytest.fixture(scope="module")
def fer2013(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("storage")
    entry = dataset("fer2013")
    src = str(tmp / "fer2013.csv")
    entry.synthetic.synth(src, entry.synthetic.make_spec(entry.synthetic.small))
    options = lambda **v: entry.make_options({**entry.small, "shard_size": 2, **v})  # noqa: E731
    entry.prepare(src, tmp / "local", options(), progress=False)
    return entry, src, tmp, options


def test_utilities_keep_a_remote_paths_scheme():
    assert storage.is_remote("gs://b/x") and storage.is_remote("ram://x") and not storage.is_remote("/data/x")
    assert not storage.is_remote("file:///data/x") and not storage.is_remote("data/gs:/x")
    assert storage.join("gs://bucket/", "train", "a.tfrecord") == "gs://bucket/train/a.tfrecord"
    assert storage.split("s3://b/p/manifest.json") == ("s3://b/p", "manifest.json")
    assert storage.join("/data", "train") == os.path.join("/data", "train")


def test_a_dataset_prepared_on_ram_is_the_local_one_and_trains_from_there(fer2013):
    entry, src, tmp, options = fer2013
    remote = f"ram://{uuid.uuid4().hex}/fer2013"
    entry.prepare(src, remote, options(), progress=False)
    assert _contents(remote) == _contents(tmp / "local")
    assert integrity.check(remote, quick=False, records=True)[0] == []
    manifest = json.loads(_read(remote, MANIFEST))
    again = entry.prepare(src, remote, options(), progress=False)  # a rerun skips every row
    assert again["files"] == manifest["files"]
    data = lambda root: DataConfig(root=str(root), pipeline=PipelineConfig(  # noqa: E731
        seq_len=1, batch_size=4, normalize="whitening", targets=("category",)))
    stats, path = pixel_stats.ensure(data(remote))  # written beside the remote shards
    assert path.startswith(remote + "/pixel_stats/") and json.loads(_read(*storage.split(path))) == stats
    assert stats == pixel_stats.ensure(data(tmp / "local"))[0]
    batches = [loader.split(pixel_stats.attach(data(root)), "val") for root in (remote, tmp / "local")]
    for there, here in zip(*batches, strict=True):
        np.testing.assert_array_equal(there[0]["frames"].numpy(), here[0]["frames"].numpy())
        np.testing.assert_array_equal(there[1]["category"].numpy(), here[1]["category"].numpy())


def test_training_from_ram_ends_with_the_weights_of_training_from_the_local_copy(fer2013, tmp_path):
    import keras

    from fer_keras import config, training

    entry, src, tmp, options = fer2013
    remote = f"ram://{uuid.uuid4().hex}/fer2013"
    entry.prepare(src, remote, options(), progress=False)
    weights = []
    for root in (remote, tmp / "local"):
        exp = config.from_dict({
            "name": "ram", "data": {"root": str(root), "pipeline": {"seq_len": 2, "batch_size": 4, "padding": "zeros"}},
            "model": {"name": "c3d", "options": {"seq_len": 2, "input_size": 32, "filters": [2], "kernel": 1,
                                                  "dense": [4]}},
            "training": {"epochs": 2, "optimizer": {"learning_rate": 0.01}, "verbose": 0}})
        run = tmp_path / f"run-{len(weights)}"
        training.train(exp, run)
        weights.append(keras.models.load_model(run / "checkpoints" / "last.keras", compile=False).get_weights())
    for there, here in zip(*weights, strict=True):
        np.testing.assert_array_equal(there, here)


def test_shares_prepared_and_merged_on_ram_are_the_local_preparation(fer2013):
    """Three shares into one remote OUT, merged there; three local shares merged into a remote OUT."""
    entry, src, tmp, options = fer2013
    shared, merged = (f"ram://{uuid.uuid4().hex}/{name}" for name in ("shared", "merged"))
    for i in range(3):
        entry.prepare(src, shared, options(shard=f"{i}/3"), progress=False)
        entry.prepare(src, tmp / f"part-{i}", options(shard=f"{i}/3"), progress=False)
    entry.merge([shared], shared)
    entry.merge([tmp / f"part-{i}" for i in range(3)], merged)
    for root in (shared, merged):
        assert _contents(root) == _contents(tmp / "local")
        assert not tf.io.gfile.glob(storage.join(root, "manifest-*")), f"{root}: shares left after the merge"


def test_stages_that_need_a_local_file_refuse_a_remote_path(fer2013, tmp_path):
    entry, src, tmp, options = fer2013
    with pytest.raises(ValueError, match="ram://src/fer2013.csv: reading fer2013's source .* needs a local path"):
        entry.prepare("ram://src/fer2013.csv", tmp_path / "out", options(), progress=False)
    with pytest.raises(ValueError, match="ram://runs/x: this command's run directory .* needs a local path"):
        RunDir("ram://runs/x")
    with pytest.raises(ValueError, match="ram://dl: a download folder .* needs a local path"):
        dataset("emotionet").fetch(tmp_path / "sheet.csv", "ram://dl")
    features = argparse.Namespace(format="hdf5", root="gs://bucket/features", features=512, fold=None,
                                  train_split="train")
    with pytest.raises(ValueError, match="gs://bucket/features: reading cached CNN features .* needs a local path"):
        loader.feature_sources(features, "train")
    from fer_keras import cv, tuning
    with pytest.raises(ValueError, match="ram://cv: a cross-validation folder .* needs a local path"):
        cv.cross_validate({}, "ram://cv")
    with pytest.raises(ValueError, match="ram://search: a search folder .* needs a local path"):
        tuning.tune(tuning.default_experiment("audio_gru", str(tmp / "local")), "ram://search")
    from fer_keras.feature_extraction import extract
    with pytest.raises(ValueError, match="ram://features: a feature folder .* needs a local path"):
        extract(None, str(tmp / "local"), "ram://features")


def test_a_run_directory_on_ram_is_trained_in_a_local_copy_and_synchronised(fer2013, tmp_path, monkeypatch):
    """`fer-keras train --run-dir ram://...`: the remote folder ends with the files of a local run
    (the same weights). A run killed (nothing copied back) continues from its local copy on the
    same machine; a run stopped by an error copies back what it finished, and a rerun elsewhere
    (no local copy) continues from that; a process that changed nothing uploads nothing;
    `evaluate` of the remote run writes its results back."""
    import keras

    from fer_keras import config, staging
    from fer_keras.cli import main

    entry, src, tmp, options = fer2013
    monkeypatch.setenv(staging.STAGING, str(tmp_path / "staging"))
    exp = {"name": "staged", "data": {"root": str(tmp / "local"), "pipeline": {"seq_len": 2, "batch_size": 4,
                                                                                  "padding": "zeros"}},
           "model": {"name": "c3d", "options": {"seq_len": 2, "input_size": 32, "filters": [2], "kernel": 1,
                                                 "dense": [4]}},
           "training": {"epochs": 3, "optimizer": {"learning_rate": 0.01}, "verbose": 0}}
    path = tmp_path / "exp.yaml"
    config.save(config.from_dict(exp), path)
    assert main(["train", str(path), "--run-dir", str(tmp_path / "local-run"), "--no-evaluate"]) == 0
    remote = f"ram://{uuid.uuid4().hex}/runs/staged"

    class Stop(Exception):
        pass

    real, ran = keras.callbacks.CSVLogger.on_epoch_end, []

    def stop_at(last):
        def on_epoch_end(self, epoch, logs=None):
            ran.append(epoch)
            real(self, epoch, logs)
            if epoch == last:
                raise Stop  # after that epoch's history row, before its backup: a crash mid-run
        monkeypatch.setattr(keras.callbacks.CSVLogger, "on_epoch_end", on_epoch_end)

    stop_at(1)
    upload = staging._upload
    monkeypatch.setattr(staging, "_upload", lambda *args: None)  # a SIGKILL: nothing is copied back
    with pytest.raises(Stop):
        main(["train", str(path), "--run-dir", remote, "--no-evaluate"])
    assert not tf.io.gfile.exists(remote)
    monkeypatch.setattr(staging, "_upload", upload)
    ran.clear()
    with pytest.raises(Stop):  # the same machine: it continues from its local copy, then stops again
        main(["train", str(path), "--run-dir", remote, "--no-evaluate"])
    assert ran == [1], "the rerun did not continue from the local copy"
    assert [row.split(",")[0] for row in _read(remote, "history.csv").split()[1:]] == ["0", "1"]
    assert tf.io.gfile.glob(storage.join(remote, "backup", "stage-0", "*")), "no BackupAndRestore state uploaded"
    stop_at(None)
    ran.clear()
    mark = _read(remote, staging.MARK)
    shutil.rmtree(tmp_path / "staging")  # another machine: it continues from the remote folder alone
    assert main(["train", str(path), "--run-dir", remote, "--no-evaluate"]) == 0
    # epoch 1's backup was uploaded (epoch 2's row came before its backup): the rerun redoes 2, then 3
    assert ran == [1, 2], "the rerun did not continue from the uploaded backup"
    assert _read(remote, staging.MARK) != mark
    assert json.loads(_read(remote, "state.json"))["epochs_done"] == 3
    with tf.io.gfile.GFile(storage.join(remote, "checkpoints", "last.keras"), "rb") as f:
        (tmp_path / "remote-last.keras").write_bytes(f.read())
    there = keras.models.load_model(tmp_path / "remote-last.keras", compile=False).get_weights()
    here = keras.models.load_model(tmp_path / "local-run" / "checkpoints" / "last.keras", compile=False).get_weights()
    for a, b in zip(there, here, strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-7)
    mark = _read(remote, staging.MARK)
    with staging.staged(remote):  # changes nothing: uploads nothing, the mark stays
        pass
    assert _read(remote, staging.MARK) == mark
    assert main(["evaluate", remote]) == 0
    assert tf.io.gfile.exists(storage.join(remote, "metrics.json"))
