"""Preparation on real-world-like clips written with ffmpeg (data_prep/synthetic_render.py REAL_WORLD_CLIPS):
a variable frame rate, audio that starts 2 s late or 1 s early, a rotated phone clip, an anamorphic
720x576 AFEW-style AVI and a 1280x720 clip with 5.1 audio. Frames, times and audio are checked
against the generator's ground truth."""
import math
import os

import numpy as np
import pytest

from conftest import read_failures
from data_prep.prepare import FrameLabels, PrepareOptions, SourceVideo, prepare_videos
from data_prep.synthetic_render import write_real_world_clips
from data_prep.video import VideoStream
from fer_keras.data.schema import dataset_from_manifest

FPS = 25.0


def _prepare(src, out, truth, **options):
    items = [SourceVideo(path=os.path.join(src, c["path"]), split="train", video_id=os.path.splitext(c["path"])[0],
                         label=0, source=c["path"]) for c in truth["clips"]]
    manifest = prepare_videos(items, out, "clips", ["only"], PrepareOptions(functionals_set="none", **options),
                              progress=False)
    rows = {r["video_id"].decode(): r for r in dataset_from_manifest(manifest, out, "train", decode=False)
            .as_numpy_iterator()}
    return manifest, rows


@pytest.fixture(scope="module")
def clips(tmp_path_factory):
    src = str(tmp_path_factory.mktemp("clips"))
    truth = write_real_world_clips(src)
    out = str(tmp_path_factory.mktemp("clips_prepared"))
    manifest, rows = _prepare(src, out, truth)
    return src, truth, out, manifest, rows


def _by_name(truth):
    return {os.path.splitext(c["path"])[0]: c for c in truth["clips"]}


def test_kept_frames_are_the_decoded_source_frames_one_to_one(clips):
    _, truth, _, manifest, rows = clips
    for vid, clip in _by_name(truth).items():
        entry, row = manifest["videos"][f"train/{vid}"], rows[vid]
        times = np.asarray(clip["frame_times"])
        assert entry["status"] == "ok", entry
        assert entry["frames_total"] == len(times), vid  # no duplicated or lost frame
        assert row["frame_index"].tolist() == clip["face_frames"], vid
        np.testing.assert_allclose(row["frame_time"], times[clip["face_frames"]], atol=1e-3, err_msg=vid)
        assert entry["size"] == [clip["width"], clip["height"]], vid  # upright, square pixels
        assert entry["variable_frame_rate"] == (len(clip["segments"]) > 1), vid


def test_variable_frame_rate_is_recorded_with_its_real_average(clips):
    _, truth, _, manifest, rows = clips
    clip = _by_name(truth)["phone_vfr"]
    entry = manifest["videos"]["train/phone_vfr"]
    real = len(clip["frame_times"]) / (clip["end"] - clip["frame_times"][0])
    assert entry["fps"] == pytest.approx(real, rel=1e-3) and rows["phone_vfr"]["fps"] == pytest.approx(real, rel=1e-3)
    assert entry["nominal_fps"] != pytest.approx(real, rel=0.05)  # the container's rate is not the real one


def _loudness(manifest, row):
    return row["audio_lld"][:, manifest["audio"]["lld_names"].index("Loudness_sma3")]


def test_a_tone_lands_in_the_llds_of_the_frames_shown_at_that_time(clips):
    _, truth, _, manifest, rows = clips
    for vid, clip in _by_name(truth).items():
        row = rows[vid]
        t0, t1 = clip["audio"]["tone"]
        start = row["frame_time"]
        centre = start + 0.5 / row["fps"]
        loud = _loudness(manifest, row)
        inside = (centre > t0 + 0.08) & (centre < t1 - 0.08) & (row["audio_mask"] == 1)
        outside = ((centre < t0 - 0.12) | (centre > t1 + 0.12)) & (row["audio_mask"] == 1)
        assert inside.sum() >= 3 and outside.sum() >= 5, vid
        # the tone (in the centre channel only for 5.1) is 40 dB above the noise floor
        assert loud[inside].min() > 5 * loud[outside].max(), (vid, loud[inside].min(), loud[outside].max())


def test_frames_with_no_audio_under_them_get_zeros_and_a_flag(clips):
    _, truth, out, manifest, rows = clips
    clips_by_name = _by_name(truth)
    for vid in ("late_audio", "early_audio"):
        clip, row, entry = clips_by_name[vid], rows[vid], manifest["videos"][f"train/{vid}"]
        a0 = clip["audio"]["start"]
        a1 = a0 + clip["audio"]["seconds"]
        centre = row["frame_time"] + 0.5 / row["fps"]
        expected = (centre >= a0) & (centre < a1)
        unsure = (np.abs(centre - a0) <= 0.03) | (np.abs(centre - a1) <= 0.03)  # AAC priming: a few ms
        np.testing.assert_array_equal(row["audio_mask"][~unsure], expected[~unsure].astype(int), err_msg=vid)
        assert not row["audio_lld"][row["audio_mask"] == 0].any()
        assert entry["audio"]["start"] == pytest.approx(a0, abs=0.03)
        assert entry["audio"]["frames_without_audio"] == int((row["audio_mask"] == 0).sum()) > 0
    flagged = {f["id"] for f in read_failures(out) if f["reason"] == "partial_audio" and f["action"] == "kept"}
    assert flagged == {"late_audio", "early_audio"}
    assert manifest["videos"]["train/web_1280x720"]["audio"]["frames_without_audio"] == 0


def test_rotation_and_pixel_aspect_give_upright_square_pixel_frames(clips):
    src, truth, _, manifest, _ = clips
    rotated = manifest["videos"]["train/phone_rotated"]
    assert rotated["rotation"] == 90 and rotated["source_size"] == [640, 360] and rotated["size"] == [360, 640]
    afew = manifest["videos"]["train/afew_720x576"]
    assert afew["source_size"] == [720, 576] and afew["size"] == [768, 576]
    # upright: MTCNN (which misses faces turned sideways) finds the face on every face frame
    for vid in ("phone_rotated", "afew_720x576"):
        assert manifest["videos"][f"train/{vid}"]["frames_kept"] == len(_by_name(truth)[vid]["face_frames"])
    frame, _ = next(VideoStream(os.path.join(src, "phone_rotated.mp4")).frames())
    assert frame.shape == (640, 360, 3)


def test_fps_option_resamples_to_a_constant_rate(clips, tmp_path):
    src, truth, _, _, _ = clips
    clip = _by_name(truth)["phone_vfr"]
    one = {"clips": [clip]}
    manifest, rows = _prepare(src, str(tmp_path / "fps25"), one, fps=FPS)
    entry, row = manifest["videos"]["train/phone_vfr"], rows["phone_vfr"]
    duration = clip["end"] - clip["frame_times"][0]
    # ffmpeg's fps filter emits one frame per 1/25 s tick from the first frame to the last one's end
    assert entry["frames_total"] == math.ceil(duration * FPS - 1e-6) == 98
    assert manifest["options"]["fps"] == FPS and entry["fps"] == FPS and not entry["variable_frame_rate"]
    np.testing.assert_allclose(row["frame_time"], row["frame_index"] / FPS, atol=1e-4)


def test_per_frame_labels_are_placed_by_presentation_time(clips, tmp_path):
    """Annotations sampled every 10 ms from 0.5 to 3.0 s land on the VFR frames shown at those
    times; frames outside the annotated span are dropped, never labelled from another moment."""
    src, truth, _, _, _ = clips
    clip = _by_name(truth)["phone_vfr"]
    times = np.arange(0.5, 3.0 + 1e-9, 0.01)
    labels = FrameLabels(times=times, va=np.stack([np.sin(times), np.cos(times)], 1))
    item = SourceVideo(path=os.path.join(src, clip["path"]), split="train", video_id="phone_vfr", label=0,
                       labels=labels)
    out = str(tmp_path / "labelled")
    manifest = prepare_videos([item], out, "clips", ["only"], PrepareOptions(functionals_set="none"),
                              progress=False, frame_labels={"va": True, "au_dim": 0})
    row = next(dataset_from_manifest(manifest, out, "train", decode=False).as_numpy_iterator())
    frame_times = np.asarray(clip["frame_times"])
    faces = frame_times[clip["face_frames"]]
    inside = faces[(faces > 0.495) & (faces < 3.005)]
    np.testing.assert_allclose(row["frame_time"], inside, atol=1e-3)
    np.testing.assert_allclose(row["va"], np.stack([np.sin(inside), np.cos(inside)], 1), atol=0.006)
    entry = manifest["videos"]["train/phone_vfr"]
    assert entry["frames_unlabelled"] == len(faces) - len(inside) > 0 and entry["frames_kept"] == len(inside)


def test_nearest_annotation_sample_at_the_span_edges():
    labels = FrameLabels(times=np.array([1.0, 1.1, 1.2]))
    idx, ok = labels.nearest(np.array([0.0, 0.96, 1.04, 1.16, 1.24, 1.3]))
    assert idx.tolist() == [0, 0, 0, 2, 2, 2] and ok.tolist() == [False, True, True, True, True, False]
    idx, ok = FrameLabels(times=np.array([2.0])).nearest(np.array([0.0, 2.0]))  # one sample: no period
    assert idx.tolist() == [0, 0] and ok.tolist() == [True, True]
