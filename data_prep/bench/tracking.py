"""`make bench-prepare-bu4dfe`: thesis 002's face step against MTCNN on every frame, in one run.

Thesis 002 found the face with a Haar cascade on the first frames and followed it with MedianFlow
(CSRT and KCF compared). This measures frames/s of that step (`data_prep.tracking.FaceTracker`)
against the project's MTCNN detector (`data_prep.face.FaceDetector`, default options, batches of
32) run on every frame, on the same decoded frames of BU-4DFE-sized texture videos (640x480), and
the share of frames where both find the same face (IoU > 0.5, or no face in both). The methods are
timed in interleaved rounds (per video each method in turn, the order alternating), so a change in
machine load hits all of them. Decoding, common to all, is timed apart and left out of the figures.
"""
from __future__ import annotations

import argparse
import csv
import glob
import json
import os
import shutil
import time

from data_prep.bench import cpu_name
from data_prep.tracking import FaceTracker, TrackOptions, iou


def synthetic_videos(work: str, count: int) -> list[str]:
    """Write a synthetic BU-4DFE set (no broken videos) under `work` and return `count` of its videos."""
    from data_prep.datasets.bu4dfe.synthetic import Bu4dfeSpec, write_bu4dfe

    subjects = Bu4dfeSpec().subjects[:max(1, -(-count // 6))]  # six emotions per subject
    shutil.rmtree(work, ignore_errors=True)
    truth = write_bu4dfe(work, Bu4dfeSpec(subjects=subjects, long_video=0, broken=False))
    return [os.path.join(work, v["path"]) for v in truth["videos"] if v["kind"] == "normal"][:count]


class _Mtcnn:
    """MTCNN on every frame, in batches: (x, y, w, h) per frame or None."""

    def __init__(self, batch: int):
        from data_prep.face import FaceDetector

        self.detector, self.batch = FaceDetector(), batch

    def boxes(self, frames):
        out = []
        for i in range(0, len(frames), self.batch):
            out += [None if f is None else (f.box[0], f.box[1], f.box[2] - f.box[0], f.box[3] - f.box[1])
                    for f in self.detector.detect(frames[i:i + self.batch])]
        return out


class _Tracking:
    """Haar cascade on a few frames + one tracker; keeps the cascade runs and losses of the last video."""

    def __init__(self, tracker: str):
        self.tracker = FaceTracker(TrackOptions(tracker=tracker))

    def boxes(self, frames):
        return [None if f is None else f.box for f in self.tracker.track(frames)]


def same_face(reference, boxes) -> int:
    """Frames where both found the same face (IoU > 0.5) or neither found one."""
    return sum((a is None and b is None) or (a is not None and b is not None and iou(a, b) > 0.5)
               for a, b in zip(reference, boxes))


def measure(paths, trackers=("medianflow",), rounds: int = 2, batch: int = 32) -> dict:
    """Decode `paths` once, then time MTCNN and Haar + each tracker on the same frames (see module doc)."""
    from data_prep.video import VideoStream

    start, clips = time.perf_counter(), {}
    for path in paths:
        clips[path] = [frame for frame, _ in VideoStream(path).frames()]
    decode_s = time.perf_counter() - start
    methods = {"mtcnn": _Mtcnn(batch)} | {f"haar+{t}": _Tracking(t) for t in trackers}
    first = clips[paths[0]]
    for method in methods.values():  # trace MTCNN's networks and warm up both at this frame size
        method.boxes(first[:batch])
    seconds = {name: dict.fromkeys(paths, 0.0) for name in methods}
    found, extra = {name: {} for name in methods}, {name: {} for name in methods if name != "mtcnn"}
    for r in range(rounds):
        for k, path in enumerate(paths):
            order = list(methods) if (r + k) % 2 == 0 else list(reversed(methods))
            for name in order:
                tick = time.perf_counter()
                found[name][path] = methods[name].boxes(clips[path])
                seconds[name][path] += time.perf_counter() - tick
                if name in extra:
                    tracker = methods[name].tracker
                    extra[name][path] = (tracker.cascade_runs, sum(e.kind == "lost" for e in tracker.events))
    per_video, summary = [], []
    total = sum(len(f) for f in clips.values())
    base = sum(seconds["mtcnn"].values())
    for name in methods:
        for path in paths:
            n, s = len(clips[path]), seconds[name][path]
            row = {"video": os.path.basename(path), "method": name, "frames": n, "seconds": s / rounds,
                   "fps": n * rounds / s, "speedup": seconds["mtcnn"][path] / s,
                   "same_face": same_face(found["mtcnn"][path], found[name][path]) / n}
            if name in extra:
                row["cascade_frames"], row["losses"] = extra[name][path]
            per_video.append(row)
        rows = [r for r in per_video if r["method"] == name]
        took = sum(seconds[name].values())
        entry = {"method": name, "fps": total * rounds / took, "speedup": base / took,
                 "same_face": sum(r["same_face"] * r["frames"] for r in rows) / total}
        if name in extra:
            entry["cascade_share"] = sum(r["cascade_frames"] for r in rows) / total
            entry["losses"] = sum(r["losses"] for r in rows)
        summary.append(entry)
    height, width = first[0].shape[:2]
    return {"videos": len(paths), "frames": total, "size": f"{width}x{height}", "rounds": rounds, "batch": batch,
            "decode_fps": total / decode_s, "cpu": cpu_name(), "cpu_count": os.cpu_count(),
            "methods": summary, "per_video": per_video}


CSV_FIELDS = ["video", "method", "frames", "seconds", "fps", "speedup", "same_face", "cascade_frames", "losses"]



def print_report(report: dict, min_speedup: float = 5.0, min_same: float = 0.95) -> None:
    print(f"{report['videos']} videos, {report['frames']} frames at {report['size']}, {report['rounds']} interleaved "
          f"rounds; {report['cpu']}, {report['cpu_count']} cores")
    print(f"decoding (common to all, not in the figures): {report['decode_fps']:.1f} frames/s\n")
    print(f"{'method':34s} {'frames/s':>9s} {'vs MTCNN':>9s} {'same face':>10s} {'cascade on':>11s} {'losses':>7s}")
    for m in report["methods"]:
        label = (f"MTCNN every frame (batches of {report['batch']})" if m["method"] == "mtcnn"
                 else f"Haar first frames + {m['method'].split('+')[1]}")
        tail = f" {100 * m['cascade_share']:9.1f}% {m['losses']:7d}" if "cascade_share" in m else ""
        print(f"{label:34s} {m['fps']:9.1f} {m['speedup']:8.2f}x {100 * m['same_face']:9.1f}%{tail}")
    for m in report["methods"][1:]:
        met = m["speedup"] >= min_speedup and m["same_face"] >= min_same
        print(f"target for {m['method']} (>= {min_speedup:g}x faster, >= {100 * min_same:g}% same face): "
              f"{'met' if met else 'NOT met'}")


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", default="data/bench_tracking", help="where the results (and the synthetic videos) go")
    parser.add_argument("--src", help="a folder of *_tex.avi videos to use instead of a synthetic BU-4DFE set")
    parser.add_argument("--videos", type=int, default=6, help="how many videos")
    parser.add_argument("--trackers", default="medianflow", help="comma-separated: medianflow, csrt, kcf")
    parser.add_argument("--rounds", type=int, default=2, help="timed rounds over all videos")
    args = parser.parse_args(argv)

    trackers = [t.strip() for t in args.trackers.split(",") if t.strip()]
    for tracker in trackers:  # a bad name fails here, before any video is written
        try:
            TrackOptions(tracker=tracker)
        except ValueError as e:
            parser.error(str(e))
    os.makedirs(args.out, exist_ok=True)
    if args.src:
        paths = sorted(glob.glob(os.path.join(args.src, "*_tex.avi")))[:args.videos]
        if not paths:
            parser.error(f"--src {args.src}: no *_tex.avi videos there")
    else:
        paths = synthetic_videos(os.path.join(args.out, "src"), args.videos)
    report = measure(paths, trackers, args.rounds)
    print_report(report)
    with open(os.path.join(args.out, "bench_tracking.json"), "w") as f:
        json.dump(report, f, indent=1)
    with open(os.path.join(args.out, "bench_tracking.csv"), "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=CSV_FIELDS, restval="")
        writer.writeheader()
        writer.writerows(report["per_video"])
    print(f"written {os.path.join(args.out, 'bench_tracking.json')} and bench_tracking.csv")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
