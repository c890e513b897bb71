"""FER2013 preparation: the synthetic CSV round-trips through shards, bad rows are logged, runs resume."""
import glob
import json
import os

import cv2
import numpy as np
import pytest
import tensorflow as tf

from conftest import read_failures
from data_prep.datasets.fer2013 import layout as fer2013
from data_prep.datasets.fer2013.layout import Fer2013Options, prepare
from data_prep.store import PreparedStore
from data_prep.datasets.fer2013.synthetic import write_fer2013
from fer_keras.classes import FER2013
from fer_keras.data.pipeline import PipelineConfig, sequences
from fer_keras.data.schema import dataset_from_manifest

SPLIT_OF = {"Training": "train", "PublicTest": "val", "PrivateTest": "test"}


@pytest.fixture(scope="module")
def csv_file(tmp_path_factory):
    """(path, ground truth, {line: 48x48 image of every good row}) of the default synthetic CSV."""
    path = str(tmp_path_factory.mktemp("fer2013_src") / "fer2013.csv")
    truth = write_fer2013(path)
    with open(path, newline="") as f:
        lines = f.read().split("\n")
    good = {r["line"] for r in truth["rows"] if not r["malformed"]}
    images = {n: np.array(lines[n - 1].split(",")[1].split(), np.uint8).reshape(48, 48) for n in good}
    return path, truth, images


@pytest.fixture(scope="module")
def prepared(csv_file, tmp_path_factory):
    out = str(tmp_path_factory.mktemp("fer2013_out"))
    return out, prepare(csv_file[0], out, progress=False)


def _good(truth):
    return [r for r in truth["rows"] if not r["malformed"]]


def _expected(image, size, interpolation=cv2.INTER_CUBIC):
    """The thesis's input computed from the CSV's pixels: cv2's resize of the grey image, replicated
    to RGB. (Resizing the 3-channel image instead differs by 1 grey level at ~0.002% of the pixels:
    cv2's 1- and 3-channel bicubic kernels round differently.)"""
    return np.repeat(cv2.resize(image, (size, size), interpolation=interpolation)[:, :, None], 3, axis=2)


def test_synthetic_csv_has_the_kaggle_layout(csv_file):
    path, truth, _ = csv_file
    raw = open(path, "rb").read()
    assert raw.startswith(b"emotion,pixels,Usage\n") and b"\r" not in raw and raw.endswith(b"\n")
    rows = raw.decode().splitlines()[1:]
    assert len(rows) == len(truth["rows"]) == 7 * (12 + 3 + 3) + 6
    for row, info in zip(rows, truth["rows"]):
        if not info["malformed"]:
            label, pixels, usage = row.split(",")
            assert (int(label), usage) == (info["label"], info["usage"]) and len(pixels.split()) == 2304
    assert json.load(open(path.replace(".csv", "_truth.json"))) == truth


def test_round_trip_through_the_schema(csv_file, prepared):
    _, truth, images = csv_file
    out, manifest = prepared
    assert manifest["dataset"] == "fer2013" and manifest["classes"] == list(FER2013)
    assert manifest["audio"] == {"lld_dim": 0, "functionals_dim": 0}
    assert manifest["options"]["face_size"] == 224 and manifest["options"]["image_format"] == "png"
    for usage, split in SPLIT_OF.items():
        rows = [r for r in _good(truth) if r["usage"] == usage]
        assert manifest["splits"][split]["videos"] == len(rows)
        got = {}
        for rec in dataset_from_manifest(manifest, out, split):
            got[rec["video_id"].numpy().decode()] = int(rec["label"])
            line = int(rec["video_id"].numpy().decode().split("-")[1])
            assert rec["frames"].shape == (1, 224, 224, 3) and rec["audio_lld"].shape == (1, 0)
            assert float(rec["fps"]) == 1.0 and float(rec["frame_time"][0]) == 0.0 and int(rec["has_audio"]) == 0
            np.testing.assert_array_equal(rec["frames"][0].numpy(), _expected(images[line], 224))
        assert got == {f"fer2013-{r['line']}": r["label"] for r in rows}
    entry = manifest["videos"][f"train/fer2013-{_good(truth)[0]['line']}"]
    assert entry["status"] == "ok" and entry["label_name"] == FER2013[entry["label"]]
    assert entry["source"] == f"fer2013.csv:{_good(truth)[0]['line']}"


def test_round_trip_through_the_pipeline(csv_file, prepared):
    _, truth, images = csv_file
    out, manifest = prepared
    cfg = PipelineConfig(seq_len=1, batch_size=8, normalize="none")
    seen = {}
    for x, y, meta in sequences(manifest, out, "test", cfg, with_meta=True):
        for frames, category, vid in zip(x["frames"].numpy(), y["category"].numpy(), meta["video_id"].numpy()):
            line = int(vid.decode().split("-")[1])
            seen[line] = int(np.argmax(category))
            np.testing.assert_array_equal(frames[0], _expected(images[line], 224))
    assert seen == {r["line"]: r["label"] for r in _good(truth) if r["usage"] == "PrivateTest"}


@pytest.mark.parametrize("fmt,size,interpolation", [("png", 48, "area"), ("jpeg", 224, "bilinear")])
def test_other_sizes_and_formats(csv_file, tmp_path, fmt, size, interpolation):
    path, truth, images = csv_file
    opts = Fer2013Options(image_size=size, image_format=fmt, interpolation=interpolation, jpeg_quality=95)
    manifest = prepare(path, str(tmp_path), opts, progress=False)
    flag = {"area": cv2.INTER_AREA, "bilinear": cv2.INTER_LINEAR}[interpolation]
    for rec in dataset_from_manifest(manifest, str(tmp_path), "val"):
        got = rec["frames"][0].numpy().astype(int)
        want = _expected(images[int(rec["video_id"].numpy().decode().split("-")[1])], size, flag).astype(int)
        if fmt == "png":  # 48 px keeps the source pixels
            np.testing.assert_array_equal(got, want)
        else:
            assert np.abs(got - want).mean() < 1.5 and np.abs(got - want).max() <= 16


def test_malformed_rows_are_logged_and_skipped(csv_file, prepared):
    _, truth, _ = csv_file
    out, manifest = prepared
    bad = {r["line"]: r["problem"] for r in truth["rows"] if r["malformed"]}
    failures = read_failures(out)
    assert sorted(int(f["source"].split(":")[1]) for f in failures) == sorted(bad)
    for f in failures:
        line = int(f["source"].split(":")[1])
        assert f["reason"] == "malformed_row" and f["message"].startswith(f"line {line}: ")
        assert manifest["videos"][f["key"]]["status"] == "failed"
    messages = {int(f["source"].split(":")[1]): f["message"] for f in failures}
    words = {"2303 pixels": "2303 pixels", "label 9": "label '9'", "non-numeric pixel": "'x'",
             "pixel value 256": "256", "unknown usage": "Usage 'Validation'", "2 fields": "2 fields"}
    assert all(words[problem] in messages[line] for line, problem in bad.items())
    assert sum(v["videos"] for v in manifest["splits"].values()) == len(_good(truth))


def test_bad_file_is_refused_with_its_name(tmp_path):
    wrong = tmp_path / "icml_face_data.csv"
    wrong.write_text("emotion, Usage, pixels\n0,Training,1 2 3\n")
    out = str(tmp_path / "out")
    with pytest.raises(ValueError, match=r"icml_face_data\.csv: not a FER2013 CSV: its first line is "
                                         r"'emotion, Usage, pixels'"):
        prepare(str(wrong), out, progress=False)
    with pytest.raises(FileNotFoundError, match="missing.csv: no such file"):
        prepare(str(tmp_path / "missing.csv"), out, progress=False)
    assert not os.path.exists(out)


@pytest.mark.parametrize("kwargs,match", [
    ({"image_size": 8}, "image_size"), ({"image_size": 224.0}, "image_size"),
    ({"interpolation": "lanczos"}, "interpolation"), ({"image_format": "webp"}, "image_format"),
    ({"jpeg_quality": 0}, "jpeg_quality"), ({"shard_size": 0}, "shard_size"),
    ({"splits": {"Training": "train"}}, "splits must map"),
    ({"splits": {"Training": "train", "PublicTest": "../val", "PrivateTest": "test"}}, "splits names"),
])
def test_options_are_validated(kwargs, match):
    with pytest.raises(ValueError, match=f"fer2013 option {match}"):
        Fer2013Options(**kwargs)


def _shard_ids(out):
    ids = []
    for path in glob.glob(os.path.join(out, "*", "*.tfrecord")):
        for raw in tf.data.TFRecordDataset(path):
            ids.append(tf.train.SequenceExample.FromString(raw.numpy()).context.feature["video_id"]
                       .bytes_list.value[0].decode())
    return ids


def test_killed_run_resumes_without_loss_or_duplicates(csv_file, tmp_path, monkeypatch):
    path, truth, _ = csv_file
    out, opts = str(tmp_path / "out"), Fer2013Options(image_size=48, shard_size=8)
    real_encode, encoded = fer2013._encode, []

    def killed_after_20(image, o):
        if len(encoded) == 20:
            raise KeyboardInterrupt
        encoded.append(1)
        return real_encode(image, o)

    with monkeypatch.context() as m:  # a killed process runs no cleanup: the buffered rows are lost
        m.setattr(fer2013, "_encode", killed_after_20)
        m.setattr(PreparedStore, "close", lambda self: self.manifest)
        with pytest.raises(KeyboardInterrupt):
            prepare(path, out, opts, progress=False)
    first = _shard_ids(out)
    assert len(first) == 16  # two full training shards; the third was still in memory

    encoded.clear()
    monkeypatch.setattr(fer2013, "_encode", lambda image, o: encoded.append(1) or real_encode(image, o))
    manifest = prepare(path, out, opts, progress=False)
    ids = _shard_ids(out)
    assert sorted(ids) == sorted(f"fer2013-{r['line']}" for r in _good(truth))
    assert len(encoded) == len(_good(truth)) - len(first)  # finished rows are not redone
    lines = [f["source"] for f in read_failures(out)]
    assert len(lines) == len(set(lines)) == 6

    monkeypatch.setattr(fer2013, "_encode", lambda image, o: pytest.fail("a finished row was redone"))
    assert prepare(path, out, opts, progress=False)["videos"] == manifest["videos"]
    with pytest.raises(ValueError, match="face_size"):
        prepare(path, out, Fer2013Options(image_size=96, shard_size=8), progress=False)


def test_parallel_encoding_writes_the_same_shards(csv_file, prepared, tmp_path):
    """-j 2 resizes and encodes in two processes: the same records, in the same shards, in row order
    (compared parsed: a protobuf map's serialised order follows each process's string hashing)."""
    out, manifest = prepared
    parallel = str(tmp_path / "j2")
    again = prepare(csv_file[0], parallel, Fer2013Options(jobs=2, shard_size=1024), progress=False)
    assert again["options"] == manifest["options"] and again["splits"].keys() == manifest["splits"].keys()
    for split, info in manifest["splits"].items():
        for a, b in zip(info["shards"], again["splits"][split]["shards"], strict=True):
            assert [tf.train.SequenceExample.FromString(r.numpy()) for r in tf.data.TFRecordDataset(os.path.join(out, a))] \
                == [tf.train.SequenceExample.FromString(r.numpy()) for r in tf.data.TFRecordDataset(os.path.join(parallel, b))]
    assert read_failures(parallel) == read_failures(out)
