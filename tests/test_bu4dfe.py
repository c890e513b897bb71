"""BU-4DFE preparation (thesis 002) on the synthetic set, checked against the generator's truth.

The trimmed ranges are compared with an independent computation of Algorithm 1 on the AU curves
the generator wrote; faces with the frames where the face is visible; the broken-on-purpose
videos with failures.jsonl.
"""
import json

import cv2
import numpy as np
import pytest
import tensorflow as tf

from data_prep.datasets.bu4dfe import layout as bu4dfe
from data_prep.datasets.bu4dfe.synthetic import Bu4dfeSpec, write_bu4dfe
from fer_keras.classes import BU4DFE, OPENFACE_AU_INTENSITY
from fer_keras.data import splits
from fer_keras.data.schema import dataset_from_manifest


def algorithm1(scores, end_frames=10, threshold=0.5, max_cut=0.5):
    """Thesis 002 Algorithm 1 written out again (sticky sides, never more than half cut)."""
    n = len(scores)
    limit, cap = threshold * max(scores), int(max_cut * n)
    cut_begin = cut_end = 0
    begin, end, i = True, True, 0
    while (begin or end) and cut_begin + cut_end < cap:
        if begin:
            begin = scores[i] < limit
            cut_begin += begin
        if end and cut_begin + cut_end < cap:
            end = scores[n - 1 - i] < limit or i < end_frames
            cut_end += end
        i += 1
    return cut_begin, n - cut_end


def au_score(rows):
    rows = np.asarray(rows)
    keep = [i for i, au in enumerate(OPENFACE_AU_INTENSITY) if au != 45]
    return rows[:, keep].mean(axis=1)


@pytest.fixture(scope="module")
def prepared(tmp_path_factory):
    root = tmp_path_factory.mktemp("bu4dfe")
    src, out = root / "src", root / "out"
    truth = write_bu4dfe(src, Bu4dfeSpec(subjects=("F001", "F016", "M012"), min_frames=40, max_frames=44,
                                         long_video=0))
    manifest = bu4dfe.prepare(src, out, progress=False)
    failures = [json.loads(line) for line in (out / "failures.jsonl").read_text().splitlines()]
    return truth, manifest, failures, out


def _reasons(failures, video_id):
    return {(f["reason"], f["action"]) for f in failures if f["id"] == video_id}


def test_manifest_matches_the_generators_truth(prepared):
    check_manifest(*prepared[:3])


def test_faces_where_there_are_faces(prepared):
    check_faces(*prepared)


@pytest.mark.slow
def test_make_prepare_bu4dfe_without_src(tmp_path):
    """The acceptance run: `fer-keras prepare bu4dfe OUT` (make prepare-bu4dfe) writes the default
    synthetic set (9 subjects, a 240-frame video) and prepares it with 2 workers."""
    from fer_keras.cli import main

    out = tmp_path / "out"
    assert main(["prepare", "bu4dfe", str(out), "-q", "-j", "2"]) == 0
    truth = json.loads((out / "synthetic_source" / "synthetic_truth.json").read_text())
    manifest = json.loads((out / "manifest.json").read_text())
    failures = [json.loads(line) for line in (out / "failures.jsonl").read_text().splitlines()]
    check_manifest(truth, manifest, failures)
    check_faces(truth, manifest, failures, out)
    assert max(v["frames_kept"] for v in manifest["videos"].values()) > 100  # T = 100 truncates one


def check_manifest(truth, manifest, failures):
    test_subjects = set(splits.THESIS002_TEST)
    videos = manifest["videos"]
    assert manifest["classes"] == list(BU4DFE)
    for video in truth["videos"]:
        entry = next(v for v in videos.values() if v["id"] == video["id"])
        assert entry["subject"] == video["subject"] and entry["label"] == video["label"]
        assert entry["split"] == ("test" if video["subject"] in test_subjects else "train")
        if video["subject"] == "F016":
            assert entry["status"] == "failed" and _reasons(failures, video["id"]) == {("incomplete_subject", "skipped")}
            continue
        if video["kind"] == "corrupt":
            assert entry["status"] == "failed" and _reasons(failures, video["id"]) == {("corrupt", "skipped")}
            continue
        assert entry["status"] == "ok" and entry["frames_total"] == video["frames"]
        trim = entry["trim"]
        if video["kind"] == "no_csv":
            assert trim["reason"] == "no_openface_csv" and entry["frames_in_range"] == video["frames"]
            assert ("no_openface_csv", "kept") in _reasons(failures, video["id"])
            continue
        scores = au_score(video["au"])
        anomaly = int(np.argmax(scores)) >= len(scores) - 20
        assert anomaly == (video["kind"] == "anomaly"), video["id"]
        if anomaly:  # kept untrimmed for review, and logged
            assert (trim["start"], trim["stop"], trim["reason"]) == (0, video["frames"], "anomaly_untrimmed")
            assert ("anomaly", "kept") in _reasons(failures, video["id"])
        else:
            assert (trim["start"], trim["stop"]) == algorithm1(scores), video["id"]
            assert trim["reason"] == "algorithm1" and trim["cut_end"] >= 10
    assert "F016_happy_tex" not in {v["id"] for v in videos.values()}


def check_faces(truth, manifest, failures, out):
    """Kept frames show the face; a face that leaves the frame is lost, logged and re-detected."""
    for video in truth["videos"]:
        entry = next(v for v in manifest["videos"].values() if v["id"] == video["id"])
        if entry["status"] != "ok":
            continue
        visible = np.asarray(video["face_visible"])
        record_frames = _record(out, manifest, video["id"])["frame_index"]
        assert all(visible[i] > 0 for i in record_frames), video["id"]  # never a crop of the background
        assert sum(visible[i] < 0.5 for i in record_frames) <= 2, video["id"]  # half-out: the tracker's last frames
        in_range = np.arange(entry["trim"].get("start", 0), entry["trim"].get("stop", video["frames"]))
        if video["kind"] == "tracker_loss":
            gone = [i for i in in_range if visible[i] == 0]
            assert gone and not set(gone) & set(record_frames)
            assert ("tracker_lost", "kept") in _reasons(failures, video["id"])
            back = [i for i in in_range if visible[i] == 1 and i > max(gone)]
            assert len(set(back) & set(record_frames)) >= len(back) - 2  # re-detected within 2 frames
        else:
            assert list(record_frames) == list(in_range)


def _record(out, manifest, video_id):
    entry = next(v for v in manifest["videos"].values() if v["id"] == video_id)
    for rec in dataset_from_manifest(manifest, str(out), entry["split"]):
        if rec["video_id"].numpy().decode() == video_id:
            return {k: v.numpy() for k, v in rec.items()}
    raise AssertionError(f"{video_id} not in the shards")


def test_records_hold_160px_png_crops_of_the_kept_frames(prepared):
    truth, manifest, _, out = prepared
    rec = _record(out, manifest, "M012_angry_tex")
    assert rec["frames"].shape[1:] == (160, 160, 3) and rec["label"] == BU4DFE.index("angry")
    assert np.allclose(rec["frame_time"], rec["frame_index"] / 25.0, atol=1e-3)
    assert rec["audio_lld"].shape == (len(rec["frame_index"]), 0) and rec["has_audio"] == 0
    assert manifest["options"]["image_format"] == "png" and manifest["audio"]["lld_dim"] == 0


def test_split_file_is_thesis_protocol(prepared):
    _, _, _, out = prepared
    written = splits.read(out / "splits.json")
    assert written["test"] == splits.THESIS002_TEST and written["folds"] == [list(f) for f in splits.THESIS002_FOLDS]
    assert written["unassigned"] == []


def test_tracker_detects_on_few_frames(prepared):
    """The cascade runs where the tracker starts or lost the face, not on every frame."""
    _, manifest, _, _ = prepared
    entry = manifest["videos"]["train/M012_angry_tex"]
    assert [e["event"] for e in entry["tracking"]] == ["detected"]


def test_frame_folder_layout_resume_and_augmentation(tmp_path, monkeypatch):
    """F001/Angry/000.jpg folders; a run killed after 4 videos resumes to every video and every
    augmented copy exactly once; the copies equal the flip (test subjects get none: see
    test_discovery_names_and_aliases)."""
    src, out = tmp_path / "src", tmp_path / "out"
    write_bu4dfe(src, Bu4dfeSpec(subjects=("M012",), min_frames=40, max_frames=40, layout="frames",
                                 broken=False))
    assert (src / "M012" / "Angry" / "000.jpg").is_file() and (src / "M012" / "Angry.csv").is_file()
    opts = bu4dfe.Bu4dfeOptions(augment="corrected", augment_methods=("flip",))
    real_call, calls = bu4dfe.Bu4dfePreparer.__call__, []

    def killed_after_four(self, video):
        if len(calls) == 4:
            raise KeyboardInterrupt
        calls.append(video.key)
        return real_call(self, video)

    monkeypatch.setattr(bu4dfe.Bu4dfePreparer, "__call__", killed_after_four)
    with pytest.raises(KeyboardInterrupt):
        bu4dfe.prepare(src, out, opts, progress=False)
    monkeypatch.setattr(bu4dfe.Bu4dfePreparer, "__call__", real_call)
    manifest = bu4dfe.prepare(src, out, opts, progress=False)
    ids = [r["video_id"].numpy().decode() for split in manifest["splits"]
           for r in dataset_from_manifest(manifest, str(out), split, decode=False)]
    expected = [f"M012_{e}_tex" for e in BU4DFE] + [f"M012_{e}_tex~flip" for e in BU4DFE]
    assert sorted(ids) == sorted(expected)
    assert all(manifest["videos"][f"train_aug/M012_{e}_tex~flip"]["of"] == f"train/M012_{e}_tex" for e in BU4DFE)
    source, copy = _record(out, manifest, "M012_sad_tex"), _record(out, manifest, "M012_sad_tex~flip")
    assert np.array_equal(copy["frames"], source["frames"][:, :, ::-1])


def test_discovery_names_and_aliases(tmp_path):
    for name in ("F003_Happiness_tex.avi", "M007_sad_tex.MP4", "M012_anger_tex.avi", "notes_tex.avi",
                 "F004_bored_tex.avi"):
        (tmp_path / name).write_bytes(b"")
    (tmp_path / "F005" / "Surprise").mkdir(parents=True)
    cv2.imwrite(str(tmp_path / "F005" / "Surprise" / "000.jpg"), np.zeros((8, 8, 3), np.uint8))
    videos, skipped = bu4dfe.discover(tmp_path, opts=bu4dfe.Bu4dfeOptions(keep_incomplete_subjects=True))
    assert sorted((v.subject, v.emotion) for v in videos) == [("F003", "happy"), ("F005", "surprise"), ("M007", "sad"),
                                                              ("M012", "angry")]
    assert {s["reason"] for s in skipped} == {"bad_name", "unknown_class"}
    augmented, _ = bu4dfe.discover(tmp_path, opts=bu4dfe.Bu4dfeOptions(keep_incomplete_subjects=True,
                                                                       augment="faithful"))
    assert {v.subject: bool(v.augmentations) for v in augmented} == {  # copies for training subjects only
        "F003": False, "F005": False, "M007": False, "M012": True}
    _, skipped = bu4dfe.discover(tmp_path)  # every subject lacks emotions: all excluded, with the reason
    assert {s["reason"] for s in skipped if s["subject"] in ("F003", "F005", "M007", "M012")} == {"incomplete_subject"}
    (tmp_path / "empty").mkdir()
    with pytest.raises(bu4dfe.LayoutError, match="not a BU-4DFE layout"):
        bu4dfe.discover(tmp_path / "empty")


def test_options_are_refused_up_front():
    with pytest.raises(ValueError, match="face_detector"):
        bu4dfe.Bu4dfeOptions(face_detector="dlib")
    with pytest.raises(ValueError, match="augment"):
        bu4dfe.Bu4dfeOptions(augment="strong")
    with pytest.raises(ValueError, match="trim option threshold"):
        bu4dfe.Bu4dfeOptions(trim={"threshold": 0})
    with pytest.raises(ValueError, match="track option"):
        bu4dfe.Bu4dfeOptions(track={"tracker": "boosting"})


def test_mtcnn_detector_aligns_every_frame(prepared, tmp_path):
    """--detector mtcnn: MTCNN on every kept frame and the 5-point alignment, at face_size."""
    videos, _ = bu4dfe.discover(prepared[3].parent / "src")
    video = next(v for v in videos if v.video_id == "M012_happy_tex")
    entry, record = bu4dfe.Bu4dfePreparer(bu4dfe.Bu4dfeOptions(face_detector="mtcnn", face_size=112))(video)[0]
    assert entry["status"] == "ok" and entry["frames_kept"] == entry["frames_in_range"] > 0
    parsed = tf.io.parse_single_sequence_example(
        record, sequence_features={"frames": tf.io.FixedLenSequenceFeature([], tf.string)})[1]
    assert tf.io.decode_png(parsed["frames"][0]).shape == (112, 112, 3)
