"""`prepare va` on the small synthetic sets of every layout, checked against synthetic_truth.json:
each kept frame carries exactly its annotation (a joystick log's nearest line), unannotated frames
are dropped and counted, two people's tracks never swap, no video or person is in two splits
(thesis 001's leaky --sequence-split aside), every broken file gives one failures.jsonl line
naming it and its line, long tracks are cut into ordered segment records, --fps resamples to a
constant rate with each frame's own source line, and a killed preparation resumes to the same
shards. The source sets and their preparations are written once per module."""
import json
import math
import os
import re
import signal

import numpy as np
import pytest
from conftest import read_failures
from killsweep import KILLPOINT, start
from test_kill_sweep import compare_prepared

from data_prep.datasets.va import layout as va_layout
from data_prep.datasets.va import synthetic as va_synthetic
from data_prep.registry import dataset
from data_prep.synthetic_render import TRUTH_FILE, segment_times
from fer_keras.classes import AFFWILD_CATEGORIES
from fer_keras.data import integrity
from fer_keras.data.schema import read_shards, shard_paths

VA = dataset("va")
SEGMENT = VA.small["segment_frames"]
# Per layout: the synthetic spec beyond the small one. Timed writes categories (one file is then
# removed, so that track's frames carry -1); AffectNet gets an image without VA (every 7th).
SETS = {"affwild2": {}, "affwild": {}, "timed": {"categories": True}, "frames": {}, "affectnet": {"images": 8}}
SHARD_SIZE = 4  # a run setting: several shards per split, so a kill lands between them


def options(layout, **more):
    return VA.make_options({**VA.small, "layout": layout, "shard_size": SHARD_SIZE, **more})


def synth(root, layout, **more):
    spec = VA.synthetic.make_spec({**VA.synthetic.small, "layout": layout, **SETS.get(layout, {}), **more})
    VA.synthetic.synth(str(root), spec)
    with open(os.path.join(root, TRUTH_FILE)) as f:
        return json.load(f)


@pytest.fixture(scope="module")
def work(tmp_path_factory):
    return tmp_path_factory.mktemp("va")


@pytest.fixture(scope="module")
def sets(work):
    """{layout: (src, truth, out, manifest)}: each layout's small set prepared with the small options."""
    out = {}
    for layout in SETS:
        src = work / f"{layout}_src"
        truth = synth(src, layout)
        if layout == "timed":  # a track without categories beside ones with them: -1 on its frames
            os.remove(src / "categories" / f"{uncategorised(truth)}.txt")
        manifest = VA.prepare(str(src), str(work / layout), options(layout), progress=False)
        out[layout] = src, truth, work / layout, manifest
    return out


def uncategorised(truth) -> str:
    return next(p["track"] for v in truth["videos"] if v["kind"] == "normal" for p in v["persons"])


def records(out, manifest) -> dict:
    """{split/track id: [parsed records in shard order]}, frames left encoded."""
    found = {}
    for split in manifest["splits"]:
        for r in read_shards(shard_paths(manifest, str(out), split), manifest, decode=False).as_numpy_iterator():
            found.setdefault(f"{split}/{r['video_id'].decode()}", []).append(r)
    return found


def joined(recs, name) -> np.ndarray:
    return np.concatenate([r[name] for r in recs])


def entries_of(manifest, track) -> dict:
    return {k: v for k, v in manifest["videos"].items() if v["id"] == track}


def only_entry(manifest, track) -> tuple[str, dict]:
    (found,) = entries_of(manifest, track).items()
    return found


def iou(a, b) -> float:
    if a is None or b is None:
        return 0.0
    (ax, ay, aw, ah), (bx, by, bw, bh) = a, b
    w = max(0.0, min(ax + aw, bx + bw) - max(ax, bx))
    h = max(0.0, min(ay + ah, by + bh) - max(ay, by))
    return w * h / (aw * ah + bw * bh - w * h)


def read_log(path) -> tuple[np.ndarray, np.ndarray]:
    """A joystick log's times and values, parsed here without the library's reader."""
    rows = [line.replace(",", " ").split() for line in open(path).read().splitlines() if line.strip()]
    return np.array([float(r[0]) for r in rows]), np.array([float(r[1]) for r in rows])


def nearest_lines(log_times, t, tolerance=1e-6) -> np.ndarray:
    """Brute force: every line whose time is nearest `t` (a tie within `tolerance` gives several)."""
    d = np.abs(log_times - t)
    return np.flatnonzero(d <= d.min() + tolerance)


def expected_va(layout, src, video, person, max_gap) -> tuple[np.ndarray, list]:
    """(valence/arousal per frame, NaN where not annotated; per frame the (valence, arousal) pairs
    a record may hold: one, or for a log the lines tied nearest) from the truth and, for timed,
    the logs."""
    n = video["frames"]
    if layout != "timed":
        va = np.array([[np.nan if v is None else v, np.nan if a is None else a]
                       for v, a in zip(person["valence"], person["arousal"])], np.float64)
        return va, [[tuple(row)] for row in va.astype(np.float32)]
    logs = {name: read_log(os.path.join(src, f)) for f in person["files"]
            for name in ("valence", "arousal") if f"/{name}/" in f"/{f}"}
    va, candidates = np.full((n, 2), np.nan), []
    for i, t in enumerate(video["frame_times"]):
        choices = []
        for d, name in enumerate(("valence", "arousal")):
            times, values = logs[name]
            lines = nearest_lines(times, t, 1e-4)  # decoded times differ from the truth's by up to 1e-5 s
            gap = abs(times[lines[0]] - t)
            assert abs(gap - max_gap) > 2e-3, f"frame {i} of {video['name']} sits on max_gap: the check would be luck"
            if gap <= max_gap:
                va[i, d] = values[lines[0]]
            choices.append([np.float32(values[k]) for k in lines])
        candidates.append([(v, a) for v in choices[0] for a in choices[1]])
    return va, candidates


def annotated_persons(truth):
    return [(v, p) for v in truth["videos"] for p in v["persons"]
            if v["kind"] not in ("bad_annotation", "no_annotation")]


@pytest.mark.parametrize("layout", ["affwild2", "affwild", "timed", "frames"])
def test_every_kept_frame_carries_its_annotation_and_unannotated_frames_are_counted(sets, layout):
    """Per kept frame exactly the truth's valence/arousal at its frame index (timed: the nearest
    line of each log, by brute force); never a frame the truth leaves unannotated (Aff-Wild2's -5,
    a log farther than max_gap); their number is the manifest's frames_unannotated; categories as
    written, -1 on a track without a category file."""
    src, truth, out, manifest = sets[layout]
    recs = records(out, manifest)
    categorised = bool(manifest["labels"].get("categories"))
    assert categorised == (layout in ("affwild2", "timed"))  # Aff-Wild2's EXPR files; timed's categories/
    max_gap = manifest["options"]["max_gap"]
    for video, person in annotated_persons(truth):
        key, entry = only_entry(manifest, person["track"])
        assert entry["status"] == "ok", entry
        want, candidates = expected_va(layout, src, video, person, max_gap)
        unannotated = np.isnan(want).any(axis=1)
        assert entry["frames_total"] == video["frames"]
        assert entry["frames_unannotated"] == int(unannotated.sum()), key
        if layout == "affwild2":
            assert entry["frames_unannotated"] == sum(v is None for v in person["valence"])
        index, va = joined(recs[key], "frame_index"), joined(recs[key], "va")
        assert np.all(np.diff(index) > 0) and not unannotated[index].any(), f"{key}: an unannotated frame kept"
        assert entry["frames_kept"] == len(index) == int((~unannotated).sum()) - entry["frames_no_face"]
        for i, row in zip(index, va):
            assert tuple(np.float32(row)) in candidates[i], f"{key} frame {i}: {row}, expected {candidates[i]}"
        # a frame folder's frames sit at --frames-fps (25), whatever rate the truth drew them at
        times = np.arange(video["frames"]) / 25 if layout == "frames" else np.array(video["frame_times"])
        assert np.allclose(joined(recs[key], "frame_time"), times[index], atol=2e-3)
        if categorised:
            category = joined(recs[key], "category")
            if layout == "timed" and person["track"] == uncategorised(truth):
                assert (category == -1).all()
            else:
                assert category.tolist() == [person["category"][i] for i in index] and (category >= 0).all()
        else:
            assert all("category" not in r for r in recs[key])


def test_affectnet_images_carry_their_csv_row(sets):
    """Each AffectNet image: its row's valence/arousal, its expression in thesis 003's order (none
    for Contempt and the codes past 7) and the CSV's face box; an image without VA (-2) is
    unannotated and counted."""
    _, truth, out, manifest = sets["affectnet"]
    recs = records(out, manifest)
    to_class = {code: AFFWILD_CATEGORIES.index(name) for code, name in va_layout.AFFECTNET_TO_CATEGORY.items()}
    without_va = 0
    for image in truth["images"]:
        if image["kind"] != "normal":
            continue
        key, entry = only_entry(manifest, os.path.splitext(os.path.basename(image["path"]))[0])
        if image["valence"] is None:
            without_va += 1
            assert entry["status"] == "failed" and entry["frames_unannotated"] == 1 and key not in recs
            continue
        (rec,) = recs[key]
        assert rec["va"].tolist() == [[np.float32(image["valence"]), np.float32(image["arousal"])]]
        assert rec["category"].tolist() == [to_class.get(image["expression"], -1)]
        assert rec["box"].tolist() == [image["box"]] and rec["frame_index"].tolist() == [0]
    assert without_va == 1


def test_two_people_never_swap(sets):
    """Every kept frame of <video>_left holds the left person's face (IoU > 0.5 with the truth's
    box) and never the right one's, and vice versa; both tracks keep most of their frames."""
    _, truth, out, manifest = sets["affwild2"]
    recs = records(out, manifest)
    (video,) = [v for v in truth["videos"] if v["kind"] == "two_person"]
    people = {p["person"]: p for p in video["persons"]}
    assert set(people) == {"left", "right"}
    for side, other in (("left", "right"), ("right", "left")):
        key, entry = only_entry(manifest, f"{video['name']}_{side}")
        assert entry["person"] == side and entry["video"] == video["name"]
        index, boxes = joined(recs[key], "frame_index"), joined(recs[key], "box")
        assert len(index) >= 0.7 * video["frames"] - entry["frames_unannotated"]
        for i, box in zip(index, boxes.tolist()):
            assert iou(box, people[side]["box"][i]) > 0.5, f"{key} frame {i}: {box} is not the {side} face"
            assert iou(box, people[other]["box"][i]) < 0.1, f"{key} frame {i}: {box} is the {other} face"
        assert np.allclose(joined(recs[key], "va"), np.array([people[side]["valence"], people[side]["arousal"]],
                                                              np.float32).T[index])


@pytest.mark.parametrize("layout", list(SETS))
def test_no_video_or_person_in_two_splits(sets, layout):
    """Every video (every person of it) in one split: the layout's own (Aff-Wild2's sets, Aff-Wild's
    folders, AffectNet's CSVs), or for timed and frames a split drawn by video, test among them."""
    _, truth, out, manifest = sets[layout]
    split_of = {}
    for entry in manifest["videos"].values():
        split_of.setdefault(entry["video"], set()).add(entry["split"])
    assert all(len(s) == 1 for s in split_of.values()), split_of
    for key, recs in records(out, manifest).items():
        assert manifest["videos"][key]["status"] == "ok"
        assert {r["video_id"].decode() for r in recs} == {key.split("/")[1]}
    if layout == "affectnet":
        expected = {os.path.splitext(os.path.basename(i["path"]))[0]:
                    va_layout.AFFECTNET_CSVS[va_synthetic.AFFECTNET_CSV[i["split"]]]
                    for i in truth["images"] if i["kind"] != "no_row"}
    elif layout in ("affwild2", "affwild"):
        expected = {v["name"]: v["split"] or "test" for v in truth["videos"]}
    else:
        expected = None
        assert {s for (s,) in split_of.values()} == {"train", "test"}
        assert set(split_of) == {v["name"] for v in truth["videos"]}
    if expected is not None:
        assert {video: s for video, (s,) in split_of.items()} == expected


def test_sequence_split_puts_a_track_in_both_splits_with_disjoint_runs(work):
    """--sequence-split (thesis 001, for fidelity): one long video's track in train and in test,
    each split holding whole 80-frame runs of its kept frames, none in both."""
    src = work / "sequence_src"
    truth = synth(src, "timed", videos=1, min_frames=260, max_frames=260, width=256, height=144, broken=False,
                  categories=False)
    out = work / "sequence"
    # seed 2 draws this track's first run into test and its second into train (seed 0 draws both into train)
    manifest = VA.prepare(str(src), str(out), options("timed", sequence_split=True, seed=2), progress=False)
    (video,) = truth["videos"]
    recs = records(out, manifest)
    assert set(entries_of(manifest, video["name"])) == {f"train/{video['name']}", f"test/{video['name']}"}
    index = {split: joined(recs[f"{split}/{video['name']}"], "frame_index") for split in ("train", "test")}
    assert len(index["train"]) and len(index["test"]) and not set(index["train"]) & set(index["test"])
    kept = np.sort(np.concatenate(list(index.values())))
    assert len(kept) % 80 == 0 and len(kept) >= 160
    for run in kept.reshape(-1, 80):
        assert sum(set(run.tolist()) <= set(index[s].tolist()) for s in index) == 1, "an 80-frame run split"


def broken_files(truth):
    return [b for b in truth["broken"] if b["line"] is not None]


@pytest.mark.parametrize("layout", list(SETS))
def test_each_broken_file_is_one_failure_naming_it_and_the_rest_prepares(sets, layout):
    """A malformed annotation file: one failures.jsonl line whose path is that file and whose
    message names the line; the video without annotations: one missing_annotation line; an
    AffectNet row whose image is missing: one line naming the CSV and its line; nothing else."""
    src, truth, out, manifest = sets[layout]
    failures = read_failures(out)
    seen = []
    for broken in truth["broken"]:
        path = os.path.join(src, broken["file"])
        if broken["line"] is not None:
            found = [f for f in failures if f["path"] == path]
            assert len(found) == 1, (broken, failures)
            assert found[0]["reason"] == "bad_annotation" and f"line {broken['line']}:" in found[0]["message"]
        elif "without any annotation" in broken["reason"]:
            found = [f for f in failures if f["path"] == path]
            assert len(found) == 1 and found[0]["reason"] == "missing_annotation", (broken, failures)
        elif "image file is missing" in broken["reason"]:
            found = [f for f in failures if f["source"] == broken["file"]]
            assert len(found) == 1 and found[0]["reason"] == "missing_image", (broken, failures)
            assert os.path.basename(found[0]["path"]) in ("training.csv", "validation.csv")
            assert re_line(found[0]["message"]) >= 2
        else:  # an AffectNet image no CSV row names is simply not in the dataset
            assert broken["reason"] == "image without a row in any CSV"
            continue
        seen += found
    no_va = [f for f in failures if f["reason"] == "no_labelled_face"]  # AffectNet's -2 images
    assert len(failures) == len(seen) + len(no_va) and len(no_va) == (layout == "affectnet")
    broken_videos = {os.path.splitext(os.path.basename(b["file"]))[0].rsplit("_", 1)[0] for b in truth["broken"]}
    for entry in manifest["videos"].values():
        if entry["status"] != "ok":
            assert entry["video"] in broken_videos or entry["reason"] == "no_labelled_face", entry
    if layout != "affectnet":
        assert sum(v["status"] == "ok" for v in manifest["videos"].values()) == len(annotated_persons(truth))


def re_line(message) -> int:
    return int(re.match(r"line (\d+):", message).group(1))


@pytest.mark.parametrize("layout", ["affwild2", "timed", "frames"])
def test_tracks_are_ordered_segment_records_and_verify(sets, layout):
    """segment_frames 8: a track of n kept frames is ceil(n / 8) records numbered 0.. in shard
    order, 8 frames each but the last, frame_index increasing across them; the manifest's segments
    agrees, and a full check (every record parsed) finds nothing wrong."""
    _, _, out, manifest = sets[layout]
    recs = records(out, manifest)
    ok = {k: v for k, v in manifest["videos"].items() if v["status"] == "ok"}
    assert set(recs) == set(ok)
    assert any(v["segments"] > 1 for v in ok.values())
    for key, entry in ok.items():
        n = entry["frames_kept"]
        segments = math.ceil(n / SEGMENT)
        assert [r["segment"] for r in recs[key]] == list(range(segments)) and entry["segments"] == segments
        assert [len(r["frame_index"]) for r in recs[key]] == [min(SEGMENT, n - SEGMENT * k) for k in range(segments)]
        assert np.all(np.diff(joined(recs[key], "frame_index")) > 0)
    problems, read = integrity.check(str(out), records=True)
    assert problems == [] and read["files"] == sum(len(i["shards"]) for i in manifest["splits"].values())


def test_fps_resamples_to_a_constant_rate_with_each_frames_own_line(sets, work):
    """--fps 10 on 25 fps sources (and the variable-rate video): frames 0.1 s apart; each one is the
    source frame nearest its time (the earlier on a tie), and carries that source frame's line and
    index, so Aff-Wild2 prediction files land on the right lines."""
    src, truth, _, _ = sets["affwild2"]
    out = work / "affwild2_fps10"
    manifest = VA.prepare(str(src), str(out), options("affwild2", fps=10), progress=False)
    recs = records(out, manifest)
    for video, person in annotated_persons(truth):
        key, entry = only_entry(manifest, person["track"])
        assert entry["status"] == "ok" and entry["frames_total"] == video["frames"], entry
        source_times = np.array(video["frame_times"])
        end = source_times[-1] + 1 / video["segments"][-1][1]
        assert entry["frames_resampled"] == math.ceil(end * 10 - 1e-9)
        index, times, va = (joined(recs[key], n) for n in ("frame_index", "frame_time", "va"))
        ticks = np.round(times * 10)
        assert np.allclose(times, ticks / 10, atol=1e-4) and np.all(np.diff(ticks) >= 1)
        assert entry["frames_kept"] == len(index) >= 0.5 * entry["frames_resampled"], entry
        want = np.array([person["valence"], person["arousal"]], np.float64).T
        for i, t, row in zip(index, times, va):
            # the variable-rate MP4 stores times in 1/90000 s (0.119989 for 0.12): a tie there is no tie
            nearest = nearest_lines(source_times, t, 1e-4)
            assert i in (nearest if video["kind"] == "vfr" else nearest[:1]), f"{key} at {t:.2f} s: source frame {i}"
            assert row.tolist() == want[i].astype(np.float32).tolist(), f"{key} frame {i}"


class _Stream:
    """What resample reads of a VideoStream: frames() with times, then times and durations."""

    def __init__(self, times, last_duration):
        self._times, self._last = list(times), last_duration
        self.times, self.durations = [], []

    def frames(self):
        for i, t in enumerate(self._times):
            self.times.append(t)
            yield i, t
        self.durations = list(np.diff(self._times)) + [self._last]


@pytest.mark.parametrize("source, fps", [((25.0,), 30), ((25.0,), 10), ((25.0, 12.5, 20.0), 25)])
def test_resample_takes_the_nearest_source_frame_at_every_tick(source, fps):
    """Up (25 -> 30: frames repeated), down (25 -> 10) and from a variable rate: output frame k at
    k / fps is the source frame nearest it (the earlier on a tie), until the last frame's display ends."""
    from data_prep.video import resample

    times = segment_times([(10, rate) for rate in source])
    out = list(resample(_Stream(times, 1 / source[-1]), fps))
    end = times[-1] + 1 / source[-1]
    assert len(out) == math.ceil(end * fps - 1e-9)
    for k, (i, t, frame) in enumerate(out):
        assert t == pytest.approx(k / fps) and frame == i
        d = np.abs(times - t)
        assert i == np.flatnonzero(d <= d.min() + 1e-9)[0], (k, t, i)
    index = [i for i, _, _ in out]
    assert index == sorted(index) and (len(set(index)) < len(index)) == (fps > min(source))


def test_killed_preparation_resumes_to_the_same_dataset(sets, work):
    """prepare va killed (SIGKILL) right after its first shard is renamed into place, then rerun:
    the same shards, records, statuses and failures.jsonl lines as the uninterrupted run."""
    src, _, whole, _ = sets["affwild2"]
    killed = work / "affwild2_killed"
    code = ("import json, sys; from data_prep.registry import dataset; d = dataset('va'); "
            "d.prepare(sys.argv[1], sys.argv[2], d.make_options(json.loads(sys.argv[3])), progress=False)")
    values = json.dumps({**VA.small, "layout": "affwild2", "shard_size": SHARD_SIZE})
    proc = start(["-c", code, str(src), str(killed), values], work, killpoint="shard_renamed@1")
    _, err = proc.communicate()
    assert proc.returncode == -signal.SIGKILL, err.decode(errors="replace")[-1500:]
    manifest = json.loads((killed / "manifest.json").read_text())
    assert not any(v["status"] == "ok" for v in manifest["videos"].values())  # killed before the manifest named it
    assert KILLPOINT not in os.environ
    VA.prepare(str(src), str(killed), options("affwild2"), progress=False)  # the rerun, in this process
    compare_prepared(whole, killed)


def test_bench_prepare_va_runs_and_prints_its_figures(work, capsys):
    """`make bench-prepare-va` at a tiny size: both commands on one two-person 1280x720 clip and a
    9-frame long video; the figures are printed and saved (no timing is asserted)."""
    from data_prep.bench import prepare_va

    out = work / "bench"
    assert prepare_va.main(["--out", str(out), "--clips", "1", "--frames", "8", "--rounds", "1",
                            "--minutes", "0.006"]) == 0
    printed = capsys.readouterr().out
    for field in ("prepare afew", "prepare va", "ratio va / afew", "peak RSS: prepare process", "(9 frames)"):
        assert field in printed, printed
    report = json.loads((out / "bench_prepare_va.json").read_text())
    assert report["speed"]["frames"] == 8 and report["speed"]["va_tracks_ok"] == 2
    assert report["speed"]["afew_fps"] > 0 and report["speed"]["ratio"] > 0
    assert report["memory"]["frames"] == 9 and report["memory"]["peak_rss_mb"] > 0
    assert sorted(report["memory"]["tracks"]) == ["train/long_left", "train/long_right"]
