"""Haar cascade + OpenCV tracking (thesis 002) on the astronaut face at BU-4DFE's 640x480."""
import cv2
import numpy as np
import pytest

from data_prep.synthetic_render import render_frames
from data_prep.tracking import (TRACKER_FACTORIES, FaceTracker, TrackOptions, bundled_cascades, cascade_path, crop,
                                iou, tracker_factory)

N, GAP = 40, range(15, 25)  # the face is absent from frames 15-24


@pytest.fixture(scope="module")
def clip():
    return list(render_frames(np.random.default_rng(3), 640, 480, 2, N, set(range(N)) - set(GAP), 0.45))


@pytest.fixture(scope="module")
def mtcnn_boxes(clip):
    """MTCNN's (x, y, w, h) box per frame (None where it finds no face): the project's own detector."""
    from data_prep.face import FaceDetector

    faces = FaceDetector().detect(clip)
    return [None if f is None else (f.box[0], f.box[1], f.box[2] - f.box[0], f.box[3] - f.box[1]) for f in faces]


@pytest.fixture(scope="module")
def tracked(clip):
    tracker = FaceTracker()
    return list(tracker.track(clip)), tracker


def test_tracks_the_face_mtcnn_finds_on_every_frame(clip, tracked, mtcnn_boxes):
    faces, tracker = tracked
    assert faces[0] is not None and faces[0].source == "detected"
    for i, (face, ref) in enumerate(zip(faces, mtcnn_boxes)):
        assert (ref is None) == (i in GAP), f"frame {i}: MTCNN disagrees with the renderer"
        if ref is None:
            assert face is None, f"frame {i}: no face on screen, tracker says {face}"
        else:
            assert face is not None and iou(face.box, ref) > 0.5, f"frame {i}: {face} vs MTCNN {ref}"
            x, y, w, h = face.box
            assert x >= 0 and y >= 0 and x + w <= 640 and y + h <= 480
    # the cascade ran on the first frame, through the gap and on the frame the face came back (no
    # run of tracked frames reaches verify_every=25, and the face never jumps)
    assert tracker.cascade_runs == 1 + len(GAP) + 1


def test_events_tell_where_the_face_was_lost_and_found_again(tracked):
    faces, tracker = tracked
    kinds = [(e.frame, e.kind) for e in tracker.events]
    assert kinds == [(0, "detected"), (15, "lost"), (19, "not_found"), (25, "redetected")]
    assert tracker.events[1].detail == "tracker reported failure"
    assert faces[25].source == "redetected" and faces[25].box == tracker.events[-1].box
    assert {f.source for f in faces[1:15] + faces[26:]} == {"tracked"}


def test_without_redetect_the_face_stays_lost(clip):
    tracker = FaceTracker(TrackOptions(redetect=False))
    faces = list(tracker.track(clip))
    assert all(f is not None for f in faces[:15]) and all(f is None for f in faces[15:])
    assert [e.kind for e in tracker.events] == ["detected", "lost"]
    assert tracker.cascade_runs == 1


def test_face_leaving_the_frame_is_lost_and_never_boxed_outside():
    first = next(render_frames(np.random.default_rng(3), 640, 480, 2, 1, {0}, 0.45))
    shift = [np.float32([[1, 0, 30 * k], [0, 1, 0]]) for k in range(20)]
    frames = [cv2.warpAffine(first, m, (640, 480), borderMode=cv2.BORDER_REPLICATE) for m in shift]
    tracker = FaceTracker()
    faces = list(tracker.track(frames))
    lost = [e for e in tracker.events if e.kind == "lost"]
    assert lost and lost[0].detail == "box more than half outside the frame"
    assert all(f is None for f in faces[lost[0].frame:])
    assert all(f.box[0] + f.box[2] <= 640 for f in faces if f is not None)


@pytest.mark.parametrize("split, shift", [("down", 0), ("up", 10), ("both", 5)])
def test_box_extended_by_10_px_where_extend_split_says(clip, split, shift):
    plain = FaceTracker(TrackOptions(extend=0)).detect(clip[0])
    tracker = FaceTracker(TrackOptions(extend_split=split))
    box = tracker.detect(clip[0])
    assert box == (plain[0], plain[1] - shift, plain[2], plain[3] + 10)
    assert next(tracker.track(clip[:1])).box == box


def test_largest_of_several_faces(clip):
    frame = clip[0].copy()
    x, y, w, h = FaceTracker(TrackOptions(extend=0)).detect(frame)
    small = cv2.resize(frame[y - 30:y + h + 30, x - 30:x + w + 30], None, fx=0.6, fy=0.6, interpolation=cv2.INTER_AREA)
    frame[:small.shape[0], 640 - small.shape[1]:] = small
    cascade = cv2.CascadeClassifier(cascade_path(TrackOptions().cascade))
    gray = cv2.cvtColor(frame, cv2.COLOR_RGB2GRAY)
    assert len(cascade.detectMultiScale(gray, 1.1, 5, minSize=(60, 60))) == 2  # both faces are seen
    assert iou(FaceTracker(TrackOptions(extend=0, min_face=60)).detect(frame), (x, y, w, h)) > 0.8


@pytest.mark.parametrize("name", list(TRACKER_FACTORIES))
def test_each_tracker_follows_the_face(clip, mtcnn_boxes, name):
    if tracker_factory(name) is None:
        pytest.skip(f"OpenCV {cv2.__version__} has no {TRACKER_FACTORIES[name]} in cv2 or cv2.legacy")
    faces = list(FaceTracker(TrackOptions(tracker=name)).track(clip[:10]))
    assert [f.source for f in faces] == ["detected"] + ["tracked"] * 9
    assert all(iou(f.box, ref) > 0.5 for f, ref in zip(faces, mtcnn_boxes))


def test_bad_cascade_names_it_and_lists_the_bundled_ones(tmp_path):
    assert "haarcascade_frontalface_default.xml" in bundled_cascades()
    listed = r"no such cascade file: 'haarcascade_nose\.xml'.*haarcascade_frontalface_alt2\.xml"
    with pytest.raises(ValueError, match=listed):
        TrackOptions(cascade="haarcascade_nose.xml")
    for text in ("<opencv_storage><cascade>not a cascade", '<?xml version="1.0"?><opencv_storage></opencv_storage>'):
        broken = tmp_path / "broken.xml"  # malformed XML, then well-formed XML without a cascade
        broken.write_text(text)
        with pytest.raises(ValueError, match=r"cannot load.*broken\.xml.*haarcascade_frontalface_default\.xml"):
            FaceTracker(TrackOptions(cascade=str(broken)))


def test_cascade_by_path(clip):
    path = cascade_path("haarcascade_frontalface_alt2.xml")
    assert path.endswith("/haarcascade_frontalface_alt2.xml")
    assert FaceTracker(TrackOptions(cascade=path)).detect(clip[0]) is not None


@pytest.mark.parametrize("field, value", [
    ("cascade", ""), ("scale_factor", 1.0), ("min_neighbors", -1), ("min_neighbors", 2.5), ("min_face", 0),
    ("extend", -1), ("extend", True), ("extend_split", "left"), ("tracker", "mosse"), ("detect_frames", 0),
    ("redetect", "yes"), ("equalize", 1),
])
def test_option_validation(field, value):
    with pytest.raises(ValueError, match=f"track option {field}"):
        TrackOptions(**{field: value})


def test_frames_must_be_rgb_uint8(clip):
    with pytest.raises(ValueError, match="frame 1: expected an RGB uint8"):
        list(FaceTracker().track([clip[0], cv2.cvtColor(clip[1], cv2.COLOR_RGB2GRAY)]))


def test_crop_clips_and_resizes():
    frame = np.random.default_rng(0).integers(0, 256, (480, 640, 3), np.uint8)
    assert crop(frame, (100, 50, 200, 210)).shape == (160, 160, 3)
    assert crop(frame, (10, 10, 40, 40), size=112).shape == (112, 112, 3)
    np.testing.assert_array_equal(crop(frame, (-20, -30, 100, 110)), crop(frame, (0, 0, 80, 80)))
    np.testing.assert_array_equal(crop(frame, (600, 400, 100, 100), size=40), crop(frame, (600, 400, 40, 80), size=40))
    with pytest.raises(ValueError, match="outside"):
        crop(frame, (700, 10, 50, 50))


def test_iou():
    assert iou((0, 0, 10, 10), (0, 0, 10, 10)) == 1.0
    assert iou((0, 0, 10, 10), (5, 0, 10, 10)) == pytest.approx(50 / 150)
    assert iou((0, 0, 10, 10), (20, 20, 5, 5)) == 0.0
    assert iou((0, 0, 0, 0), (0, 0, 0, 0)) == 0.0


class _StuckTracker:
    """Stands in for MedianFlow sliding onto the background: success, and the box it was given
    (moved by `jump` px after `after` updates)."""

    def __init__(self, jump=0, after=0):
        self.jump, self.after, self.updates = jump, after, 0

    def init(self, frame, box):
        self.box = box

    def update(self, frame):
        self.updates += 1
        x, y, w, h = self.box
        return True, (x + (self.jump if self.updates > self.after else 0), y, w, h)


@pytest.mark.parametrize("jump", [0, 200])
def test_drift_onto_the_background_is_caught(jump):
    """A tracker that reports success on a box without a face is caught by the cascade check under
    the box: every verify_every tracked frames, or at once when the box jumps by half its width."""
    rng = np.random.default_rng(3)
    frames = list(render_frames(rng, 640, 480, 0, 16, set(range(6)), 0.45))  # the face leaves at frame 6
    tracker = FaceTracker(TrackOptions(verify_every=4))
    tracker._new_tracker = lambda: _StuckTracker(jump=jump, after=6)
    faces = list(tracker.track(frames))
    assert all(f is not None for f in faces[:6])
    lost = [e for e in tracker.events if e.kind == "lost"]
    assert lost and "drift" in lost[0].detail
    if jump:  # caught on the jump itself: the 7th update, frame 7
        assert lost[0].frame == 7 and all(f is None for f in faces[7:])
    else:  # checks at frames 4 (face there) and 8 (none): frames 6 and 7 pass unnoticed, no later one
        assert lost[0].frame == 8 and all(f is None for f in faces[8:])


def test_benchmark_measures_both_methods_on_the_same_frames(tmp_path):
    """`make bench-prepare-bu4dfe` in small: one 24-frame 640x480 video, one round."""
    from data_prep.bench.tracking import measure
    from data_prep.synthetic_render import write_video

    rng = np.random.default_rng(5)
    path = str(tmp_path / "F001_happy_tex.avi")
    write_video(path, render_frames(rng, 640, 480, 3, 24, set(range(24)), 0.45), 640, 480, ((24, 25.0),))
    report = measure([path], rounds=1)
    methods = {m["method"]: m for m in report["methods"]}
    assert set(methods) == {"mtcnn", "haar+medianflow"} and report["frames"] == 24
    assert methods["haar+medianflow"]["same_face"] == 1.0 and methods["haar+medianflow"]["speedup"] > 0
    assert 0 < methods["haar+medianflow"]["cascade_share"] < 0.5  # the cascade ran on a few frames only
