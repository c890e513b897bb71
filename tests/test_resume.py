"""An interrupted preparation resumes: finished videos are skipped, no shard is ever half-written."""
import glob
import json
import os

import pytest
import tensorflow as tf

from conftest import read_failures, written_in_order
from data_prep import prepare as prepare_mod
from data_prep.datasets.afew.layout import prepare
from data_prep.prepare import PrepareOptions


def _shard_ids(out):
    ids = []
    for path in sorted(glob.glob(os.path.join(out, "*", "*.tfrecord"))):
        for raw in tf.data.TFRecordDataset(path):
            ids.append(tf.train.SequenceExample.FromString(raw.numpy()).context.feature["video_id"].bytes_list.value[0])
    return ids


def test_interrupted_run_resumes_without_loss_or_duplicates(tmp_path, monkeypatch, afew_subset):
    src, clean = afew_subset  # ten videos, the three broken ones among them
    out = str(tmp_path / "out")
    opts = PrepareOptions(shard_size=4)
    real_call = prepare_mod.VideoPreparer.__call__
    calls = []

    def interrupt_after_four(self, item):
        if len(calls) == 4:
            raise KeyboardInterrupt  # Ctrl-C in the middle of the dataset
        calls.append(item.key)
        return real_call(self, item)

    monkeypatch.setattr(prepare_mod.VideoPreparer, "__call__", interrupt_after_four)
    with pytest.raises(KeyboardInterrupt):
        prepare(src, out, opts, progress=False)
    first = _shard_ids(out)
    assert 0 < len(first) <= 4 and not glob.glob(os.path.join(out, "*", "*.tmp"))
    with open(os.path.join(out, "manifest.json")) as f:
        done_first = set(json.load(f)["videos"])

    # what a killed process would leave: a half-written shard and a shard the manifest never recorded
    open(os.path.join(out, "train", "train-00099.tfrecord.tmp"), "wb").write(b"half")
    orphan = os.path.join(out, "val", "val-00042.tfrecord")
    os.makedirs(os.path.dirname(orphan), exist_ok=True)
    open(orphan, "wb").write(b"")

    calls.clear()
    monkeypatch.setattr(prepare_mod.VideoPreparer, "__call__", lambda self, item: calls.append(item.key) or real_call(self, item))
    manifest = prepare(src, out, opts, progress=False)
    assert not os.path.exists(orphan) and not glob.glob(os.path.join(out, "*", "*.tmp"))
    ids = _shard_ids(out)
    assert len(ids) == len(set(ids))  # nothing written twice
    n_ok = sum(v["status"] == "ok" for v in clean.values())
    assert len(ids) == n_ok
    assert written_in_order(out, manifest, 4)  # the short shards of the Ctrl-C were continued
    assert set(calls) == set(manifest["videos"]) - done_first  # done videos are not redone
    assert {k: v["frames_kept"] for k, v in manifest["videos"].items()} == \
        {k: v["frames_kept"] for k, v in clean.items()}
    lines = [(f["key"], f["reason"]) for f in read_failures(out)]
    assert len(lines) == len(set(lines)) == 3


def test_rerun_with_other_options_is_refused(tmp_path, synthetic_afew, prepared_afew):
    out, _ = prepared_afew
    with pytest.raises(ValueError, match="face_size"):
        prepare(synthetic_afew[0], out, PrepareOptions(face_size=96), progress=False)


def test_rerun_of_a_finished_preparation_does_nothing(monkeypatch, synthetic_afew, prepared_afew):
    out, before = prepared_afew
    monkeypatch.setattr(prepare_mod.VideoPreparer, "__call__", lambda self, item: pytest.fail(f"redid {item.key}"))
    assert prepare(synthetic_afew[0], out, progress=False)["videos"] == before["videos"]


def test_killed_process_resumes(tmp_path, afew_subset):
    """SIGKILL the real command mid-run (no cleanup runs), then rerun it to completion (in this
    process: the rerun reads only what the killed one left on disk)."""
    import signal
    import subprocess
    import sys
    import time

    from fer_keras import cli

    src, clean = afew_subset  # ten videos: the kill comes after four, the rerun does the rest
    out = str(tmp_path / "out")
    args = ["prepare", "afew", src, out, "-q", "--shard-size", "2"]
    proc = subprocess.Popen([sys.executable, "-m", "fer_keras.cli", *args],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    manifest_path = os.path.join(out, "manifest.json")
    deadline = time.time() + 120
    while time.time() < deadline and proc.poll() is None:
        if os.path.exists(manifest_path) and len(json.load(open(manifest_path))["videos"]) >= 4:
            break
        time.sleep(0.1)
    assert proc.poll() is None, "the run finished before it could be killed"
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    killed = json.load(open(manifest_path))
    assert 4 <= len(killed["videos"]) < len(clean)

    assert cli.main(args) == 0
    final = json.load(open(manifest_path))
    for key, entry in killed["videos"].items():  # what was recorded before the kill is kept as it was
        assert final["videos"][key] == entry
    assert {k: v["frames_kept"] for k, v in final["videos"].items()} == \
        {k: v["frames_kept"] for k, v in clean.items()}
    ids = _shard_ids(out)
    assert len(ids) == len(set(ids)) == sum(v["status"] == "ok" for v in final["videos"].values())


class _Item:
    """A source with extra records (a video and its augmented copies), as bu4dfe's."""

    def __init__(self, name, fails=False):
        self.key, self.fails = f"train/{name}", fails
        self.keys = [self.key, f"train_aug/{name}~flip"]


class _Preparer:
    calls: list = []

    def __call__(self, item):
        _Preparer.calls.append(item.key)
        entry = {"key": item.key, "id": item.key, "split": "train", "frames_total": 1, "frames_kept": 1, "flags": []}
        if item.fails:
            return [({**entry, "status": "failed", "reason": "no_face", "message": "none"}, None)]
        copy = {**entry, "key": item.keys[1], "id": item.keys[1], "split": "train_aug"}
        return [({**entry, "status": "ok"}, b"x"), ({**copy, "status": "ok"}, b"y")]


def test_items_with_copies_resume_once_and_failed_ones_are_not_retried(tmp_path):
    from data_prep.prepare import run_preparation
    from data_prep.store import PreparedStore

    header = {"dataset": "toy", "classes": ["a"], "options": {}}
    items = [_Item("ok1"), _Item("bad", fails=True), _Item("ok2")]
    run_preparation(items, PreparedStore(tmp_path, header, shard_size=8), (_Preparer, ()), progress=False)
    assert sorted(_Preparer.calls) == ["train/bad", "train/ok1", "train/ok2"]  # each once, in a seeded order
    _Preparer.calls.clear()
    manifest = run_preparation(items, PreparedStore(tmp_path, header, shard_size=8), (_Preparer, ()), progress=False)
    assert _Preparer.calls == []  # done, failed included: nothing is redone
    assert manifest["splits"]["train_aug"]["videos"] == 2 and manifest["videos"]["train/bad"]["status"] == "failed"
