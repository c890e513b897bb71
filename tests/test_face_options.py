"""Detector options over their whole range at several frame sizes, and the values refused up front."""
import numpy as np
import pytest

from data_prep.face import MTCNN_MIN_FACE, FaceDetector, detection_size, smallest_face
from data_prep.prepare import PrepareOptions
from data_prep.synthetic_render import render_frames
from fer_keras.cli import main

# (width, height): tiny, the synthetic default, web 360p, portrait phone, AFEW, 720p
SIZES = [(64, 48), (160, 128), (640, 360), (360, 640), (720, 576), (1280, 720)]
MIN_FACES = [20, 40, 80, 200, 0.05, 0.125, 0.3, 0.9]  # px and fractions of the shorter side
FACE_HEIGHT = 0.4  # the synthetic face box is 0.4 of the frame height (+-13%)


@pytest.fixture(scope="module")
def detectors():
    return {m: FaceDetector(min_face_size=m) for m in MIN_FACES}


@pytest.fixture(scope="module")
def frames():
    rng = np.random.default_rng(3)
    return {size: list(render_frames(rng, *size, 2, 2, {0, 1}, FACE_HEIGHT)) for size in SIZES}


@pytest.mark.parametrize("size", SIZES, ids=lambda s: f"{s[0]}x{s[1]}")
def test_every_min_face_size_runs_at_every_frame_size(detectors, frames, size):
    """mtcnn 1.0 itself fails ("empty output") for min_face_size 40 at 640x360; here every value runs,
    and a face clearly above the smallest size searched is found, with landmarks inside its box."""
    width, height = size
    face_px = FACE_HEIGHT * height * 0.87  # the smallest the breathing face gets
    for min_face, detector in detectors.items():
        faces = detector.detect(frames[size])
        assert len(faces) == 2
        if face_px >= 1.5 * smallest_face(min_face, width, height) and min(width, height) >= 100:
            assert all(f is not None for f in faces), (size, min_face)
        for face in filter(None, faces):
            x1, y1, x2, y2 = face.box
            assert x1 - 2 <= face.landmarks[:, 0].min() and face.landmarks[:, 0].max() <= x2 + 2
            assert 0 <= x1 < x2 <= width + 1 and 0 <= y1 < y2 <= height + 1


def test_detection_copy_puts_the_smallest_face_at_mtcnns_20_px():
    assert detection_size(0.125, 720, 576) == (200, 160)  # smallest face 72 px -> 20 px
    assert detection_size(0.125, 1280, 720) == (284, 160)
    assert detection_size(20, 640, 360) == (640, 360)  # 20 px: full resolution, as mtcnn alone
    assert detection_size(0.05, 160, 128) == (160, 128)  # never upscaled: 6.4 px -> MTCNN's 20
    assert smallest_face(0.9, 1280, 720) == 648 and smallest_face(0.01, 100, 100) == MTCNN_MIN_FACE


def test_full_resolution_landmarks_match_full_resolution_detection(detectors):
    """The landmarks that drive alignment come from O-Net at full resolution: on average within
    2 px of detecting on the full frame (20 px smallest face), for 1280x720 faces of about 180 px."""
    clip = list(render_frames(np.random.default_rng(5), 1280, 720, 4, 4, {0, 1, 2, 3}, 0.25))
    fast, full = detectors[0.125].detect(clip), detectors[20].detect(clip)
    distance = [np.linalg.norm(a.landmarks - b.landmarks, axis=1).mean() for a, b in zip(fast, full)]
    assert np.mean(distance) < 2.0, distance


def test_detect_batch_does_not_change_what_is_found(detectors):
    rng = np.random.default_rng(4)
    clip = list(render_frames(rng, 640, 360, 1, 9, {0, 1, 2, 5, 6, 7, 8}, 0.3))
    detector = detectors[0.125]
    whole = detector.detect(clip)
    for batch in (1, 4):
        parts = [f for i in range(0, len(clip), batch) for f in detector.detect(clip[i:i + batch])]
        assert [f is None for f in parts] == [f is None for f in whole]
        for a, b in zip(parts, whole):
            if a is not None:
                np.testing.assert_allclose(a.landmarks, b.landmarks, atol=0.5)


@pytest.mark.parametrize("option,value,message", [
    ("min_face_size", 0, "min_face_size must be"), ("min_face_size", 1.0, "at least 20 px"),
    ("min_face_size", 12, "MTCNN finds no smaller face"), ("min_confidence", 1.0, "min_confidence"),
    ("min_confidence", 0, "min_confidence"), ("face_size", 8, "face_size"), ("margin", -0.1, "margin"),
    ("fps", 0, "fps must be"), ("jpeg_quality", 101, "jpeg_quality"), ("sample_rate", 4000, "sample_rate"),
    ("detect_batch", 0, "detect_batch"), ("shard_size", 0, "shard_size"), ("jobs", 0, "jobs"),
    ("landmark_weights", (1, 1), "landmark_weights"), ("lld_mode", "frames", "lld_mode"),
])
def test_out_of_range_options_are_refused_before_any_video(option, value, message):
    with pytest.raises(ValueError, match=message):
        PrepareOptions(**{option: value})


def test_cli_refuses_a_bad_option_with_one_line(tmp_path, capsys):
    out = tmp_path / "out"
    assert main(["prepare", "afew", str(tmp_path), str(out), "--min-face-size", "10", "-q"]) == 2
    assert "min_face_size must be" in capsys.readouterr().err and not out.exists()
