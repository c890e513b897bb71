"""`prepare afew` on the synthetic layout: counts match the generator's ground truth exactly."""
import json
import os

import numpy as np

from conftest import read_failures, written_in_order
from data_prep.datasets.afew.layout import prepare
from data_prep.prepare import PrepareOptions
from data_prep.datasets.afew.synthetic import SyntheticSpec, write_afew
from fer_keras.data.schema import dataset_from_manifest


def _records(out, manifest):
    rows = {}
    for split in manifest["splits"]:
        for row in dataset_from_manifest(manifest, out, split, decode=False).as_numpy_iterator():
            rows[f"{split}/{row['video_id'].decode()}"] = row
    return rows


def test_faces_found_exactly_where_the_generator_put_them(synthetic_afew, prepared_afew):
    _, truth = synthetic_afew
    out, manifest = prepared_afew
    rows = _records(out, manifest)
    for video in truth["videos"]:
        key = f"{video['split']}/{video['id']}"
        entry = manifest["videos"][key]
        if video["kind"] in ("no_face", "corrupt"):
            assert entry["status"] == "failed" and entry["reason"] == video["kind"], entry
            assert key not in rows
            continue
        assert entry["status"] == "ok"
        assert entry["frames_total"] == video["frames"]
        assert entry["dropped_index"] == sorted(set(range(video["frames"])) - set(video["face_frames"]))
        row = rows[key]
        assert row["frame_index"].tolist() == video["face_frames"]
        assert row["label"] == (video["label"] if video["split"] != "test" else -1)
        assert row["has_audio"] == int(video["has_audio"])
        lld = row["audio_lld"]
        assert lld.shape == (len(video["face_frames"]), manifest["audio"]["lld_dim"])
        assert (np.abs(lld).sum() > 0) == video["has_audio"]


def test_manifest_counts_and_failures(synthetic_afew, prepared_afew):
    _, truth = synthetic_afew
    out, manifest = prepared_afew
    ok = [v for v in truth["videos"] if v["kind"] in ("normal", "no_audio")]
    for split in ("train", "val", "test"):
        want = [v for v in ok if v["split"] == split]
        info = manifest["splits"][split]
        assert info["videos"] == len(want)
        assert info["frames"] == sum(len(v["face_frames"]) for v in want)
    assert manifest["classes"] == truth["classes"]
    with open(os.path.join(out, "manifest.json")) as f:
        assert json.load(f) == manifest
    failures = {(f["reason"], f["action"]): f for f in read_failures(out)}
    assert set(failures) == {("no_face", "skipped"), ("corrupt", "skipped"), ("no_audio", "kept")}
    by_kind = {v["kind"]: v for v in truth["videos"]}
    assert failures[("no_face", "skipped")]["source"] == by_kind["no_face"]["path"]
    assert failures[("corrupt", "skipped")]["source"] == by_kind["corrupt"]["path"]
    assert failures[("no_audio", "kept")]["source"] == by_kind["no_audio"]["path"]


def test_parallel_jobs_give_the_same_dataset(tmp_path, afew_subset):
    """Two worker processes on ten of the videos (the broken ones among them) write the entries the
    serial preparation of the whole source wrote for them, in the serial write order whichever
    worker finishes first (training reads shards in that order)."""
    src, serial = afew_subset
    out = str(tmp_path / "j2")
    manifest = prepare(src, out, PrepareOptions(jobs=2, shard_size=2), progress=False)
    assert written_in_order(out, manifest, 2)
    strip = ("shard",)
    assert {k: {kk: vv for kk, vv in v.items() if kk not in strip} for k, v in manifest["videos"].items()} == \
        {k: {kk: vv for kk, vv in v.items() if kk not in strip} for k, v in serial.items()}
    assert len(read_failures(out)) == 3  # no_face, corrupt and no_audio, once each


def test_face_size_and_png_option(tmp_path):
    src = str(tmp_path / "src")
    write_afew(src, SyntheticSpec(train_per_class=1, val_per_class=0, test_clips=0, max_frames=22, broken=False))
    out = str(tmp_path / "out")
    manifest = prepare(src, out, PrepareOptions(face_size=72, margin=0.2, image_format="png",
                                                functionals_set="none", lld_set="ComParE_2016"), progress=False)
    row = next(dataset_from_manifest(manifest, out, "train").as_numpy_iterator())
    assert row["frames"].shape[1:] == (72, 72, 3)
    assert row["audio_lld"].shape[1] == 65 and row["audio_functionals"].shape == (0,)
    assert manifest["options"]["face_size"] == 72 and manifest["options"]["image_format"] == "png"
