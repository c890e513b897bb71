"""The synthetic valence/arousal sources (data_prep/datasets/va/synthetic.py): every layout's files
read back with the strict readers and agree with the decoded videos and the ground truth, the one
broken file is reported with its line, two people never swap sides, and MTCNN finds the faces."""
import hashlib
import json
import os

import cv2
import numpy as np
import pytest

from data_prep.datasets.va import annotations as va
from data_prep.datasets.va.synthetic import LAYOUTS, LONG_SIZE, SyntheticSpec, category_of, synth, write_va
from data_prep.errors import BadInput
from data_prep.synthetic_render import TRUTH_FILE
from data_prep.video import VideoStream
from fer_keras.classes import AFFWILD_CATEGORIES

TINY = dict(videos=2, two_person=1, min_frames=8, max_frames=12, width=256, height=144, images=8, categories=True,
            long_frames=0)


@pytest.fixture(scope="module")
def sources(tmp_path_factory):
    """{layout: (root, truth)} of tiny sources; affwild2's has the long 1280x720 video too."""
    out = {}
    for layout in LAYOUTS:
        root = str(tmp_path_factory.mktemp(layout))
        extra = dict(long_frames=8) if layout == "affwild2" else {}
        out[layout] = root, write_va(root, SyntheticSpec(layout=layout, **{**TINY, **extra}))
    return out


@pytest.fixture(scope="module")
def decoded(sources):
    """{(layout, video name): (frames, times)} of every written video, decoded as preparation does."""
    out = {}
    for layout in ("affwild2", "affwild", "timed"):
        root, truth = sources[layout]
        for video in truth["videos"]:
            stream = VideoStream(os.path.join(root, video["path"]))
            out[layout, video["name"]] = [f for f, _ in stream.frames()], np.array(stream.times)
    return out


def nan_list(values, dtype=np.float32) -> np.ndarray:
    return np.array([np.nan if v is None else v for v in values], dtype)


def annotated(truth) -> list:
    return [(video, person) for video in truth["videos"] for person in video["persons"]
            if video["kind"] not in ("bad_annotation", "no_annotation")]


def assert_broken(call, broken: dict, root: str):
    with pytest.raises(BadInput) as err:
        call()
    assert err.value.path == os.path.join(root, broken["file"])
    assert f"line {broken['line']}:" in err.value.message


def test_videos_decode_to_the_truths_frames_and_times(sources, decoded):
    for layout in ("affwild2", "affwild", "timed"):
        root, truth = sources[layout]
        kinds = {v["kind"] for v in truth["videos"]}
        assert {"vfr", "normal", "bad_annotation", "no_annotation"} <= kinds
        exts = {os.path.splitext(v["path"])[1] for v in truth["videos"]}
        assert exts == {".mp4", ".avi"}
        for video in truth["videos"]:
            frames, times = decoded[layout, video["name"]]
            assert len(frames) == video["frames"], video["name"]
            assert frames[0].shape == (video["height"], video["width"], 3)
            assert np.allclose(times, video["frame_times"], atol=1e-3), video["name"]
            if video["kind"] == "vfr":
                assert len({round(d, 4) for d in np.diff(times)}) == 3  # three frame rates
    long = [v for v in sources["affwild2"][1]["videos"] if v["kind"] == "long"]
    assert [(v["width"], v["height"], v["frames"]) for v in long] == [(*LONG_SIZE, 8)]


def test_affwild2_files_read_back_as_the_truth(sources):
    root, truth = sources["affwild2"]
    sets = os.path.join(root, "Annotations", "VA_Estimation_Challenge")
    for video, person in annotated(truth):
        n = video["frames"]
        got = va.read_affwild2_va(os.path.join(root, person["files"][0]), frames=n)
        assert np.array_equal(got.valence, nan_list(person["valence"]), equal_nan=True)
        assert np.array_equal(got.arousal, nan_list(person["arousal"]), equal_nan=True)
        expr = va.read_affwild2_expressions(os.path.join(root, person["files"][1]), AFFWILD_CATEGORIES, frames=n)
        categories = va.read_categories(os.path.join(root, person["files"][2]), AFFWILD_CATEGORIES, frames=n)
        assert expr.category.tolist() == categories.category.tolist() == person["category"]
    gaps = [p for _, p in annotated(truth) if None in p["valence"]]
    assert gaps and all((v is None) == (b is None) for p in gaps for v, b in zip(p["valence"], p["box"]))
    for video in truth["videos"]:  # each video's files in one split only, found by the contract's naming
        found = {s: va.find_annotation_files(os.path.join(sets, s), video["name"]) for s in os.listdir(sets)}
        found = {s: [person for person, _ in f] for s, f in found.items() if f}
        if video["kind"] == "no_annotation":
            assert found == {}
        else:
            expected = ["left", "right"] if video["kind"] == "two_person" else [""]
            assert found == {{"train": "Train_Set", "val": "Validation_Set"}[video["split"]]: expected}
    assert {v["split"] for v in truth["videos"]} == {"train", "val", None}
    bad, missing = truth["broken"]
    assert_broken(lambda: va.read_affwild2_va(os.path.join(root, bad["file"])), bad, root)
    assert missing["line"] is None and os.path.isfile(os.path.join(root, missing["file"]))


def test_affwild_files_read_back_as_the_truth(sources):
    root, truth = sources["affwild"]
    for video, person in annotated(truth):
        folder = os.path.join(root, "annotations", video["split"])
        got = va.read_affwild_va(folder, video["name"], frames=video["frames"])
        assert np.array_equal(got.valence, nan_list(person["valence"]))
        assert np.array_equal(got.arousal, nan_list(person["arousal"]))
        assert got.counts.unannotated == 0  # Aff-Wild labels every frame, with or without a face
        assert video["path"].startswith(os.path.join("videos", video["split"], ""))
    assert {v["split"] for v in truth["videos"]} == {"train", "test"}
    bad = truth["broken"][0]
    folder = os.path.dirname(os.path.dirname(os.path.join(root, bad["file"])))
    stem = os.path.splitext(os.path.basename(bad["file"]))[0]
    assert_broken(lambda: va.read_affwild_va(folder, stem), bad, root)


def test_timed_logs_are_uneven_and_map_to_the_frames(sources, decoded):
    root, truth = sources["timed"]
    for video, person in annotated(truth):
        _, times = decoded["timed", video["name"]]
        valence_path, arousal_path = (os.path.join(root, f) for f in person["files"][:2])
        stamps = [np.loadtxt(valence_path)[:, 0], np.loadtxt(arousal_path, delimiter=",")[:, 0]]
        assert not np.array_equal(stamps[0], stamps[1])
        for t in stamps:
            steps = np.diff(t)
            assert 0 < t[0] and t[-1] < video["frame_times"][-1] + 1 / video["fps"]
            assert steps.min() > 0.005 and steps.max() < 0.095 and steps.std() > 0.01
        got = va.read_timed_va(valence_path, arousal_path, times, max_gap=0.1)
        inside = (times >= max(s[0] for s in stamps)) & (times <= min(s[-1] for s in stamps))
        assert inside.sum() >= len(times) // 2
        assert np.abs(got.valence[inside] - nan_list(person["valence"])[inside]).max() < 0.1
        assert np.abs(got.arousal[inside] - nan_list(person["arousal"])[inside]).max() < 0.1
    bad = truth["broken"][0]
    assert_broken(lambda: va.read_timed(os.path.join(root, bad["file"]), [0.0], 0.1), bad, root)


def test_frames_layout_lists_every_annotated_frame(sources):
    root, truth = sources["frames"]
    listed = va.read_frame_list(os.path.join(root, "labels.csv"))
    expected_paths, valence = [], []
    for video, person in annotated(truth):
        names = sorted(os.listdir(os.path.join(root, video["path"])))
        assert len(names) == video["frames"] and names[0] == "00000.jpg"
        expected_paths += [os.path.join(root, video["path"], name) for name in names]
        valence += person["valence"]
    assert listed.paths == expected_paths
    assert np.array_equal(listed.valence, nan_list(valence))
    image = cv2.imread(listed.paths[0])
    assert image.shape == (TINY["height"], TINY["width"], 3)
    unlisted = [v for v in truth["videos"] if v["kind"] == "no_annotation"]
    assert len(unlisted) == 1 and truth["broken"][0]["file"] == unlisted[0]["path"]
    assert not any(p.startswith(os.path.join(root, unlisted[0]["path"], "")) for p in listed.paths)


def test_affectnet_csvs_match_the_images(sources):
    root, truth = sources["affectnet"]
    rows = {split: va.read_affectnet(os.path.join(root, name))
            for split, name in (("train", "training.csv"), ("test", "validation.csv"))}
    images = {image["path"]: image for image in truth["images"]}
    for split, split_rows in rows.items():
        assert split_rows
        for row in split_rows:
            image = images[row.path]
            assert image["split"] == split and row.box == tuple(image["box"]) and row.expression == image["expression"]
            expected = nan_list([image["valence"], image["arousal"]], np.float64)
            assert np.array_equal([row.valence, row.arousal], expected, equal_nan=True)
            if image["kind"] == "missing_image":
                continue
            height, width = cv2.imread(os.path.join(root, "Manually_Annotated_Images", row.path)).shape[:2]
            x, y, w, h = row.box
            assert [width, height] == image["size"] and x + w <= width and y + h <= height
    with open(os.path.join(root, "training.csv")) as f:
        landmarks = next(line for i, line in enumerate(f) if i == 1).split(",")[5].split(";")
    assert len(landmarks) == 136
    assert any(image["valence"] is None for image in truth["images"])  # AffectNet's -2
    kinds = {b["reason"] for b in truth["broken"]}
    assert kinds == {"row whose image file is missing", "image without a row in any CSV"}
    assert sum(len(r) for r in rows.values()) == len(truth["images"]) - 1


def test_two_people_stay_on_their_side(sources):
    root, truth = sources["affwild2"]
    video = next(v for v in truth["videos"] if v["kind"] == "two_person")
    left, right = video["persons"]
    assert (left["person"], right["person"]) == ("left", "right") and left["valence"] != right["valence"]
    both = 0
    for a, b in zip(left["box"], right["box"]):
        if a is not None and b is not None:
            both += 1
            assert a[0] + a[2] / 2 < video["width"] / 2 < b[0] + b[2] / 2
    assert 0 < both < video["frames"]  # the right person leaves for a while


def test_categories_follow_the_va_quadrant(sources):
    names = [AFFWILD_CATEGORIES[c] for c in category_of([0.5, -0.5, -0.5, 0.5, 0.1], [0.5, 0.5, -0.5, -0.5, 0.1])]
    assert names == ["Happy", "Angry", "Sad", "Neutral", "Neutral"]
    for layout in ("affwild2", "timed"):
        for _, person in annotated(sources[layout][1]):
            frames = [(v, a, c) for v, a, c in zip(person["valence"], person["arousal"], person["category"])]
            assert all(c == (-1 if v is None else category_of(v, a)) for v, a, c in frames)


def test_same_seed_writes_the_same_files(sources, tmp_path):
    def digests(root):
        return {os.path.relpath(os.path.join(d, name), root):
                hashlib.sha256(open(os.path.join(d, name), "rb").read()).hexdigest()
                for d, _, names in os.walk(root) for name in names}

    first = digests(sources["affwild2"][0])
    write_va(tmp_path / "again", SyntheticSpec(layout="affwild2", **{**TINY, "long_frames": 8}))
    assert digests(tmp_path / "again") == first
    write_va(tmp_path / "other", SyntheticSpec(layout="affwild2", **{**TINY, "long_frames": 8}, seed=1))
    other = digests(tmp_path / "other")
    assert other.keys() != first.keys() or all(other[k] != first[k] for k in first if k.endswith(".mp4"))


def test_default_spec_says_what_it_wrote(tmp_path):
    line = synth(str(tmp_path), SyntheticSpec())
    with open(tmp_path / TRUTH_FILE) as f:
        truth = json.load(f)
    assert "\n" not in line and f"{len(truth['videos'])} videos" in line
    sizes = sorted((v["width"], v["height"]) for v in truth["videos"])
    assert sizes == [(640, 360)] * (len(sizes) - 1) + [(1280, 720)]  # one long 1280x720 video


@pytest.mark.parametrize("values, problem", [
    (dict(min_frames=30, max_frames=20), "min_frames"), (dict(layout="affwild3"), "layout"),
    (dict(width=641), "even"), (dict(long_frames=5), "long_frames"), (dict(broken=1), "broken"),
    (dict(videos=0), "videos"),
])
def test_spec_refuses_bad_values(values, problem):
    with pytest.raises(ValueError, match=problem):
        SyntheticSpec(**values)


def test_mtcnn_finds_the_drawn_faces(sources, decoded):
    from data_prep.face import FaceDetector

    def iou(found, box):
        x1, y1, x2, y2 = found.box
        bx, by, bw, bh = box
        inter = max(0, min(x2, bx + bw) - max(x1, bx)) * max(0, min(y2, by + bh) - max(y1, by))
        return inter / ((x2 - x1) * (y2 - y1) + bw * bh - inter)

    detector = FaceDetector()
    videos = {v["kind"]: v for v in sources["affwild2"][1]["videos"]}
    for kind in ("vfr", "long"):
        video = videos[kind]
        frames, _ = decoded["affwild2", video["name"]]
        shown = [i for i, box in enumerate(video["persons"][0]["box"]) if box is not None][:2]
        for i, face in zip(shown, detector.detect([frames[i] for i in shown])):
            assert face is not None and iou(face, video["persons"][0]["box"][i]) > 0.6, (kind, i)
    video = videos["two_person"]
    frames, _ = decoded["affwild2", video["name"]]
    i = next(i for i, b in enumerate(video["persons"][1]["box"]) if b is not None)
    half = video["width"] // 2
    left, right = detector.detect([frames[i][:, :half], frames[i][:, half:]])
    right.box = right.box + [half, 0, half, 0]
    assert iou(left, video["persons"][0]["box"][i]) > 0.6 and iou(right, video["persons"][1]["box"][i]) > 0.6
