"""The dataset registry's contract, run over every registered dataset: its small synthetic set ->
prepare -> verify -> every record parsed -> loader batches -> a rerun skips everything -> a flipped
byte is repaired. A new dataset passes this with one folder, one registry line and its classes entry.
"""
import argparse
import json
import os
from pathlib import Path

import pytest
import tensorflow as tf

from data_prep import options
from data_prep.registry import DATASETS, SYNTHETIC, dataset
from fer_keras.classes import CLASS_ORDERS
from fer_keras.data import integrity, loader, manifest as manifest_file
from fer_keras.data.pipeline import PipelineConfig
from fer_keras.data.schema import dataset_from_manifest, frame_labels


def _records(root, info, split):
    """{video id: parsed record} of a split, read by our own decoding of its shards."""
    out = {}
    for rel in info["splits"][split]["shards"]:
        for raw in tf.data.TFRecordDataset(os.path.join(root, rel)):
            example = tf.train.SequenceExample.FromString(raw.numpy())
            out[example.context.feature["video_id"].bytes_list.value[0].decode()] = example
    return out


@pytest.fixture(scope="module", params=sorted(DATASETS))
def prepared(request, tmp_path_factory):
    entry = DATASETS[request.param]
    work = tmp_path_factory.mktemp(entry.name)
    src = str(work / entry.synthetic_source)
    entry.synthetic.synth(src, entry.synthetic.make_spec(entry.synthetic.small))
    out = str(work / "prepared")
    info = entry.prepare(src, out, entry.make_options(entry.small), progress=False)
    return entry, src, out, info


def test_entry_names_its_classes_labels_and_source(prepared):
    entry, _, _, info = prepared
    assert entry.classes == CLASS_ORDERS[entry.name] and tuple(info["classes"]) == entry.classes
    assert info["dataset"] == entry.name and set(entry.labels) <= {"category", "va", "au"}
    assert entry.source in ("folder", "file") and os.path.isfile(os.path.join(
        os.path.dirname(__file__), "..", "data_prep", "datasets", entry.name, "README.md"))
    ok = [v for v in info["videos"].values() if v["status"] == "ok"]
    assert ok and all(bool(v.get("subject")) == entry.subjects for v in ok)


def test_prepared_set_verifies_parses_and_batches(prepared):
    entry, _, out, info = prepared
    problems, read = integrity.check(out, records=True)
    assert problems == [] and read["files"] == len(integrity.shards(info))
    for split, counts in info["splits"].items():
        records = _records(out, info, split)
        listed = {v["id"] for v in info["videos"].values() if v["split"] == split and v["status"] == "ok"}
        assert set(records) == listed and len(records) == counts["videos"]
        parsed = list(dataset_from_manifest(info, out, split))  # the library's one parser agrees
        ids = [r["video_id"].numpy().decode() for r in parsed]  # a long track is several segment records
        assert set(ids) == listed and len(ids) == sum(v.get("segments", 1) for v in info["videos"].values()
                                                      if v["split"] == split and v["status"] == "ok")
    split = next(name for name, counts in info["splits"].items() if counts["videos"])
    _, au_dim = frame_labels(info)  # a dataset without categories (EmotioNet) batches its AUs
    target, width = ("category", len(entry.classes)) if entry.classes else ("au", au_dim) if au_dim else ("va", 2)
    data = argparse.Namespace(format="tfrecord", root=out, folds=None, fold=None, augmentations=(),
                              pipeline=PipelineConfig(seq_len=4, batch_size=2, shuffle_buffer=8, targets=(target,)))
    inputs, targets, *_ = next(iter(loader.split(data, split)))  # per-frame targets come with their weights
    assert inputs["frames"].shape[:2] == (min(2, info["splits"][split]["videos"]), 4)
    assert width and targets[target].shape[-1] == width


def test_rerun_skips_everything_and_a_flipped_byte_is_repaired(prepared):
    entry, src, out, info = prepared
    shards = integrity.shards(info)
    stamps = {rel: os.stat(os.path.join(out, rel)).st_mtime_ns for rel in shards}
    again = entry.prepare(src, out, entry.make_options(entry.small), progress=False)
    assert again["videos"] == info["videos"] and again["files"] == info["files"]
    assert {rel: os.stat(os.path.join(out, rel)).st_mtime_ns for rel in shards} == stamps  # nothing rewritten
    victim = shards[0]
    path = os.path.join(out, victim)
    before = {split: _records(out, info, split) for split in info["splits"]}
    with open(path, "r+b") as f:
        f.seek(os.path.getsize(path) // 2)
        byte = f.read(1)
        f.seek(-1, os.SEEK_CUR)
        f.write(bytes([byte[0] ^ 0xFF]))
    assert integrity.check(out)[0]  # the damage is seen
    repaired = entry.prepare(src, out, entry.make_options({**entry.small, "verify": True}), progress=False)
    assert integrity.check(out, records=True)[0] == []
    assert {split: _records(out, repaired, split) for split in repaired["splits"]} == before
    with open(os.path.join(out, manifest_file.FAILURES)) as f:
        assert any(victim in line for line in f)  # the repair is logged


def test_every_option_is_documented_and_refused_by_name():
    """Every flag of every prepare/synth command has help; a bad value is refused naming the option."""
    for cls in [d.options for d in DATASETS.values()] + [g.spec for g in SYNTHETIC.values()]:
        for name, _, declared in options.declared(cls):
            assert declared is not None and declared.help, f"{cls.__name__}.{name} declares no help"
    with pytest.raises(ValueError, match="unknown option 'face_sise'"):
        dataset("afew").make_options({"face_sise": 32})
    with pytest.raises(ValueError, match="unknown dataset 'nope'; known: afew, bu4dfe, emotionet, fer2013"):
        dataset("nope")
    with pytest.raises(ValueError, match="bu4dfe option face_size must be 16..1024 px, got 8"):
        dataset("bu4dfe").make_options({"face_size": 8})
    with pytest.raises(ValueError, match="track option extend must be an integer >= 0"):
        dataset("bu4dfe").make_options({"extend": 2.5})
    assert dataset("bu4dfe").make_options({"trim.threshold": 0.25}).trim.threshold == 0.25


def test_manifest_contract_is_read_in_one_place(tmp_path):
    with pytest.raises(FileNotFoundError, match="no manifest.json"):
        manifest_file.read(tmp_path)
    Path(manifest_file.path(tmp_path)).write_text("{")
    with pytest.raises(ValueError, match="not valid JSON"):
        loader.classes(argparse.Namespace(format="tfrecord", root=str(tmp_path)))
    Path(manifest_file.path(tmp_path)).write_text(json.dumps({"classes": ["a"]}))
    assert manifest_file.read(tmp_path) == {"classes": ["a"]}
