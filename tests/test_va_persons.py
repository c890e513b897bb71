"""Faces to annotated persons (data_prep/datasets/va/persons.py) on synthetic detections with known identities.

Every detection carries the identity of the face it stands for ("L", "R", "P" for the one person,
"X" for a distractor or false detection). Each frame's detections are shuffled, so that their list
order gives nothing away. A track is right when every face it took has that person's identity.
"""
import math

import numpy as np
import pytest

from data_prep.datasets.va.persons import (DEFAULT_AMBIGUITY_MARGIN, DEFAULT_MAX_JUMP, DEFAULT_MAX_LOST, Track,
                                           TrackCounts, assign)

SIDE = 80.0


def box(cx, cy, side=SIDE, conf=0.99):
    """(x, y, w, h, confidence) of a square face centred at (cx, cy), as MTCNN's boxes are given."""
    return (cx - side / 2, cy - side / 2, side, side, conf)


class Scene:
    """Frames of (identity, detection) pairs, shuffled per frame by a seeded generator."""

    def __init__(self, seed=0):
        self.rng = np.random.default_rng(seed)
        self.ids: list[list[str]] = []
        self.frames: list[list[tuple]] = []

    def add(self, *faces):
        order = self.rng.permutation(len(faces))
        self.ids.append([faces[k][0] for k in order])
        self.frames.append([faces[k][1] for k in order])

    def run(self, persons, **options):
        """(tracks, identity each person's track took per frame, None where it took none)."""
        tracks = assign(self.frames, persons, **options)
        taken = {p: [None if k < 0 else self.ids[i][k] for i, k in enumerate(t.index)] for p, t in tracks.items()}
        for p, t in tracks.items():  # boxes and index agree
            assert t.boxes == [None if k < 0 else self.frames[i][k] for i, k in enumerate(t.index)]
        return tracks, taken


def jitter(rng, scale=2.0):
    return rng.normal(0.0, scale)


def test_two_people_moving():
    scene = Scene(1)
    for i in range(200):
        scene.add(("L", box(200 + 60 * math.sin(i / 15) + jitter(scene.rng), 300 + jitter(scene.rng))),
                  ("R", box(560 + 40 * math.cos(i / 10) + jitter(scene.rng), 280 + jitter(scene.rng), 70)))
    tracks, taken = scene.run(["left", "right"])
    assert list(tracks) == ["left", "right"]
    assert taken == {"left": ["L"] * 200, "right": ["R"] * 200}
    assert tracks["left"].counts == TrackCounts(frames=200, assigned=200, dropped_ambiguous=0, no_face=0,
                                                extra_faces=0)


@pytest.mark.parametrize("offset", [0.5, 1.0, 2.0])
def test_crossing_paths_do_not_swap(offset):
    """Their x centres swap over 50 frames. The right person is farther from the camera (smaller,
    `offset` sides higher), so the faces pass each other without either hiding the other."""
    scene = Scene(2)
    for i in range(100):
        t = min(max(i - 25, 0), 50) / 50
        scene.add(("L", box(150 + 400 * t + jitter(scene.rng), 300 + jitter(scene.rng))),
                  ("R", box(550 - 400 * t + jitter(scene.rng), 300 - offset * SIDE + jitter(scene.rng), 64)))
    tracks, taken = scene.run(["left", "right"])
    assert taken == {"left": ["L"] * 100, "right": ["R"] * 100}
    left_x, right_x = tracks["left"].boxes[-1][0], tracks["right"].boxes[-1][0]
    assert left_x > right_x  # the face that came from the left is now on the right, and still 'left'


def test_a_more_confident_distractor_does_not_take_over_the_one_person():
    scene = Scene(3)
    for i in range(120):
        person = ("P", box(300 + 30 * math.sin(i / 20) + jitter(scene.rng), 250, conf=0.93))
        if 40 <= i < 90:  # someone walks in, detected more confidently
            scene.add(person, ("X", box(650 - 2 * (i - 40), 260, 90, conf=0.999)))
        else:
            scene.add(person)
    tracks, taken = scene.run([""])
    assert taken == {"": ["P"] * 120}
    assert tracks[""].counts == TrackCounts(120, 120, 0, 0, 50)


def test_one_person_starts_at_the_most_confident_face_and_restarts_after_max_lost():
    scene = Scene(4)
    scene.add(("X", box(100, 100, conf=0.9)), ("P", box(400, 300, conf=0.98)))
    for _ in range(5):
        scene.add(("P", box(400, 300, conf=0.98)), ("X", box(100, 100, conf=0.999)))
    for _ in range(4):  # nobody: the track is lost after max_lost=3 frames without a face
        scene.add()
    scene.add(("Y", box(700, 400, conf=0.95)), ("P", box(400, 300, conf=0.9)))  # restarts at the most confident
    tracks, taken = scene.run([""], max_lost=3)
    assert taken[""] == ["P"] * 6 + [None] * 4 + ["Y"]
    assert tracks[""].counts == TrackCounts(11, 7, 0, 4, 7)


def test_missing_detections_keep_the_track():
    scene = Scene(5)
    for i in range(120):
        faces = [("R", box(600 + jitter(scene.rng), 300))]
        if not 40 <= i < 52:  # left undetected for 12 frames while moving 60 px
            faces.append(("L", box(200 + 5 * max(0, min(i, 52) - 40) + jitter(scene.rng), 300)))
        scene.add(*faces)
    tracks, taken = scene.run(["left", "right"])
    assert taken["left"] == ["L"] * 40 + [None] * 12 + ["L"] * 68
    assert taken["right"] == ["R"] * 120
    assert tracks["left"].counts == TrackCounts(120, 108, 0, 12, 0)


def test_both_lost_restart_by_position():
    """Nobody for longer than max_lost: the next pair is named by position again."""
    scene = Scene(6)
    for _ in range(10):
        scene.add(("L", box(200, 300)), ("R", box(600, 300)))
    for _ in range(DEFAULT_MAX_LOST + 1):
        scene.add()
    for _ in range(10):  # they come back elsewhere; the left one is still 'left'
        scene.add(("L", box(900, 500)), ("R", box(1300, 200)))
    _, taken = scene.run(["left", "right"])
    gap = [None] * (DEFAULT_MAX_LOST + 1)
    assert taken == {"left": ["L"] * 10 + gap + ["L"] * 10, "right": ["R"] * 10 + gap + ["R"] * 10}


def test_a_false_detection_far_away_is_not_taken():
    scene = Scene(7)
    for i in range(60):
        faces = [("L", box(200 + jitter(scene.rng), 300)), ("R", box(600 + jitter(scene.rng), 300))]
        if i % 10 == 5:
            faces.append(("X", box(1200, 60, 40, conf=0.9999)))
        if i in (25, 26):  # right undetected while the false face is there: still not taken
            faces = [f for f in faces if f[0] != "R"]
        scene.add(*faces)
    tracks, taken = scene.run(["left", "right"])
    assert taken["left"] == ["L"] * 60
    assert taken["right"] == ["R"] * 25 + [None] * 2 + ["R"] * 33
    assert tracks["right"].counts == TrackCounts(60, 58, 0, 2, 6)
    assert tracks["left"].counts.extra_faces == 6  # a video's count, on every track


@pytest.mark.parametrize("margin", [0.0, DEFAULT_AMBIGUITY_MARGIN])
def test_a_face_exactly_between_the_tracks_is_dropped_and_counted(margin):
    scene = Scene(8)
    for i in range(30):
        if i == 15:
            scene.add()  # one empty frame: both tracks now reach 1 side, the midpoint is 0.75 away
        elif i == 16:
            scene.add(("?", box(260, 300)))
        else:
            scene.add(("L", box(200, 300)), ("R", box(320, 300)))
    tracks, taken = scene.run(["left", "right"], ambiguity_margin=margin)
    assert taken["left"] == ["L"] * 15 + [None] * 2 + ["L"] * 13
    assert taken["right"] == ["R"] * 15 + [None] * 2 + ["R"] * 13
    for person in ("left", "right"):
        assert tracks[person].counts == TrackCounts(30, 28, 1, 2, 0)


def test_a_face_clearly_nearer_one_track_goes_to_it():
    """Both tracks reach the face (two empty frames: 1.5 sides), but it is 0.25 sides from one and
    1.25 from the other, more than the margin apart: the nearer track takes it."""
    scene = Scene(9)
    for i in range(20):
        if i in (10, 11):
            scene.add()
        elif i == 12:
            scene.add(("L", box(220, 300)))
        else:
            scene.add(("L", box(200, 300)), ("R", box(320, 300)))
    tracks, taken = scene.run(["left", "right"])
    assert taken["left"] == ["L"] * 10 + [None] * 2 + ["L"] * 8
    assert taken["right"] == ["R"] * 10 + [None] * 3 + ["R"] * 7
    assert tracks["right"].counts.dropped_ambiguous == 0


def test_start_by_position():
    """The leftmost centre is 'left', whatever the detections' order or confidence; one face alone,
    or two faces one above the other, cannot be named and is dropped as ambiguous."""
    scene = Scene(10)
    scene.add(("?", box(300, 300)))
    scene.add(("?", box(300, 100)), ("?", box(310, 300)))
    for _ in range(5):
        scene.add(("L", box(300, 300, conf=0.91)), ("R", box(150 + 500, 320, conf=0.999)),
                  ("X", box(900, 600, conf=0.9)))
    tracks, taken = scene.run(["left", "right"])
    assert taken == {"left": [None, None] + ["L"] * 5, "right": [None, None] + ["R"] * 5}
    assert tracks["left"].counts == TrackCounts(7, 5, 2, 2, 5)


def test_a_lost_side_restarts_on_its_own_side():
    """Right leaves for longer than max_lost while left stays. A face to the left of 'left' is not
    'right'; the face that comes in on the right is."""
    scene = Scene(11)
    for i in range(60):
        faces = [("L", box(400 + jitter(scene.rng), 300))]
        if i < 10 or i >= 50:
            faces.append(("R", box(800 + jitter(scene.rng), 300)))
        if 30 <= i < 40:
            faces.append(("X", box(100, 300, conf=0.999)))
        if i == 20:  # a second box on the left face, on its right: neither left's nor right's
            faces.append(("D", box(faces[0][1][0] + SIDE / 2 + 15, 300, conf=0.999)))
        scene.add(*faces)
    tracks, taken = scene.run(["left", "right"], max_lost=5)
    assert taken["left"] == ["L"] * 20 + [None] + ["L"] * 39
    assert taken["right"] == ["R"] * 10 + [None] * 40 + ["R"] * 10
    assert tracks["left"].counts == TrackCounts(60, 59, 1, 1, 10)
    assert tracks["right"].counts == TrackCounts(60, 20, 0, 40, 10)


def test_one_person_with_two_faces_at_its_place_is_not_guessed():
    """Two boxes about equally near the track (a duplicate detection, or someone leaning in): dropped."""
    scene = Scene(16)
    for i in range(10):
        scene.add(("P", box(300, 300)), *([("D", box(310, 305, conf=0.999))] if i == 5 else []))
    tracks, taken = scene.run([""])
    assert taken[""] == ["P"] * 5 + [None] + ["P"] * 4
    assert tracks[""].counts == TrackCounts(10, 9, 1, 1, 0)


def test_one_side_file_still_tracks_both():
    """Only `<video>_left.txt` exists: the right person's faces are not 'left' and not extra."""
    scene = Scene(12)
    for i in range(40):
        scene.add(("L", box(200 + 3 * i, 300, conf=0.9)), ("R", box(600 - 3 * i, 250, 60, conf=0.999)))
    tracks, taken = scene.run(["left"])
    assert list(tracks) == ["left"]
    assert taken["left"] == ["L"] * 40
    assert tracks["left"].counts == TrackCounts(40, 40, 0, 0, 0)


def test_track_record_and_types():
    scene = Scene(13)
    scene.add(("P", box(100, 100)))
    scene.add()
    track = scene.run([""])[0][""]
    assert isinstance(track, Track) and track.index.dtype == np.int64 and track.index.tolist() == [0, -1]
    assert track.record() == {"person": "", "frames": 2, "assigned": 1, "dropped_ambiguous": 0, "no_face": 1,
                              "extra_faces": 0}
    assert all(isinstance(v, float) for v in track.boxes[0])


def test_empty_video_and_array_frames():
    assert assign([], ["left", "right"])["right"].counts == TrackCounts(0, 0, 0, 0, 0)
    frames = [np.array([box(100, 100), box(400, 100)]), np.zeros((0, 5))]
    tracks = assign(frames, ["left", "right"])
    assert tracks["left"].index.tolist() == [0, -1] and tracks["right"].index.tolist() == [1, -1]


def test_deterministic_on_a_long_video():
    """10,000 frames (about 6 minutes at 30 fps) with a bystander and gaps: same result twice, all right."""
    scene = Scene(14)
    for i in range(10_000):
        faces = []
        if i % 97:
            faces.append(("L", box(300 + 80 * math.sin(i / 200) + jitter(scene.rng), 400 + jitter(scene.rng))))
        if i % 89:
            faces.append(("R", box(900 + 60 * math.cos(i / 150) + jitter(scene.rng), 380 + jitter(scene.rng), 72)))
        if i % 13 == 0:
            faces.append(("X", box(1500 + jitter(scene.rng, 50), 100, 40, conf=0.95)))
        scene.add(*faces)
    first, taken = scene.run(["left", "right"])
    again = assign(scene.frames, ["left", "right"])
    for person, ident in (("left", "L"), ("right", "R")):
        assert np.array_equal(first[person].index, again[person].index)
        assert set(taken[person]) == {ident, None}
        assert first[person].counts.no_face == sum(i % (97 if ident == "L" else 89) == 0 for i in range(10_000))
    # Frame 0 shows only the bystander: a lone face at the start cannot be named, so it is ambiguous, not extra.
    assert first["left"].counts.dropped_ambiguous == first["right"].counts.dropped_ambiguous == 1
    assert first["left"].counts.extra_faces == len(range(13, 10_000, 13))


def test_many_detections_per_frame():
    """Forty false detections per frame, less confident than the faces (the start names the two most
    confident), do not confuse the tracks: only each track's nearest are matched."""
    scene = Scene(15)
    rng = np.random.default_rng(0)
    for _ in range(200):
        noise = [("X", box(x, y, 30, conf=0.95)) for x, y in rng.uniform([1000, 600], [1900, 1000], (40, 2))]
        scene.add(("L", box(200, 300)), ("R", box(600, 300)), *noise)
    tracks, taken = scene.run(["left", "right"])
    assert taken == {"left": ["L"] * 200, "right": ["R"] * 200}
    assert tracks["left"].counts.extra_faces == 200 * 40


@pytest.mark.parametrize("options, message", [
    (dict(max_jump=0), "max_jump"), (dict(max_jump=-1.0), "max_jump"), (dict(max_jump=math.nan), "max_jump"),
    (dict(max_jump=math.inf), "max_jump"), (dict(max_jump=True), "max_jump"), (dict(max_jump="1"), "max_jump"),
    (dict(ambiguity_margin=-0.1), "ambiguity_margin"), (dict(ambiguity_margin=math.nan), "ambiguity_margin"),
    (dict(max_lost=-1), "max_lost"), (dict(max_lost=1.5), "max_lost"), (dict(max_lost=True), "max_lost"),
    (dict(persons=[]), "persons"), (dict(persons=["left", "left"]), "persons"),
    (dict(persons=["", "left"]), "persons"), (dict(persons=["center"]), "persons"), (dict(persons="left"), "persons"),
])
def test_bad_options_are_refused_up_front(options, message):
    def frames():
        raise AssertionError("frames read before the options were checked")
        yield

    options = {"persons": ["left", "right"], **options}
    with pytest.raises(ValueError, match=message):
        assign(frames(), **options)


def test_option_bounds_that_are_allowed():
    frames = [[box(100, 100)], [], [box(100, 100)]]
    tracks = assign(frames, [""], max_jump=1e-9, ambiguity_margin=0, max_lost=0)
    assert tracks[""].index.tolist() == [0, -1, 0]  # lost after one empty frame, restarted
    assert (DEFAULT_MAX_JUMP, DEFAULT_AMBIGUITY_MARGIN, DEFAULT_MAX_LOST) == (0.5, 0.5, 30)


@pytest.mark.parametrize("detection", [(1, 2, 3, 4), (1, 2, 0, 4, 0.9), (1, 2, 3, -4, 0.9), (1, math.nan, 3, 4, 0.9),
                                       ("a", 2, 3, 4, 0.9), None])
def test_malformed_detections_name_the_frame(detection):
    with pytest.raises(ValueError, match="frame 1, detection 0"):
        assign([[box(100, 100)], [detection]], [""])
