"""`make bench-prepare`: frames/s of AFEW preparation against a naive baseline in the same run.

Baseline (what a first script does): OpenCV reads each video frame by frame and one
`MTCNN().detect_faces` call is made per frame, in one process. Measured here on one synthetic
dataset, in this order: baseline detection, our detection alone (streamed ffmpeg decode +
batched MTCNN, one process), our whole preparation (`-j JOBS`: detection, alignment, encoding,
audio LLDs and functionals, shards). Also checks that the same faces are found.
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import time

import data_prep  # noqa: F401  (loads openSMILE before TensorFlow)
import cv2


def _iou(a, b) -> float:
    x1, y1 = max(a[0], b[0]), max(a[1], b[1])
    x2, y2 = min(a[2], b[2]), min(a[3], b[3])
    inter = max(0.0, x2 - x1) * max(0.0, y2 - y1)
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union if union > 0 else 0.0


def naive_detection(paths, min_confidence=0.9):
    """Per video: list of best box (x1, y1, x2, y2) or None per frame."""
    from mtcnn import MTCNN

    detector = MTCNN()
    out = {}
    for path in paths:
        cap, boxes = cv2.VideoCapture(path), []
        while True:
            ok, bgr = cap.read()
            if not ok:
                break
            faces = [f for f in detector.detect_faces(cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)) if f["confidence"] >= min_confidence]
            if faces:
                x, y, w, h = max(faces, key=lambda f: f["confidence"])["box"]
                boxes.append((x, y, x + w, y + h))
            else:
                boxes.append(None)
        cap.release()
        out[path] = boxes
    return out


def batched_detection(paths, batch=32):
    from .face import FaceDetector
    from .video import VideoStream

    detector, out = FaceDetector(), {}
    for path in paths:
        boxes = []
        for _, frames in VideoStream(path).batches(batch):
            boxes += [None if f is None else tuple(f.box) for f in detector.detect(frames)]
        out[path] = boxes
    return out


def _timed(fn, *args, **kw):
    start = time.perf_counter()
    result = fn(*args, **kw)
    return result, time.perf_counter() - start


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", default="data/bench_prepare", help="work directory (recreated)")
    parser.add_argument("--jobs", type=int, default=2, help="worker processes of the whole preparation")
    parser.add_argument("--train-per-class", type=int, default=2)
    parser.add_argument("--min-frames", type=int, default=30)
    parser.add_argument("--max-frames", type=int, default=50)
    args = parser.parse_args(argv)

    from .afew import discover, prepare
    from .prepare import PrepareOptions
    from .synthetic import SyntheticSpec, write_afew

    shutil.rmtree(args.out, ignore_errors=True)
    src, prepared = os.path.join(args.out, "src"), os.path.join(args.out, "prepared")
    write_afew(src, SyntheticSpec(train_per_class=args.train_per_class, val_per_class=1, test_clips=0,
                                  min_frames=args.min_frames, max_frames=args.max_frames, seed=1, broken=False))
    items, _ = discover(src)
    paths = [it.path for it in items]

    baseline, t_base = _timed(naive_detection, paths)
    ours, t_det = _timed(batched_detection, paths)
    manifest, t_prep = _timed(prepare, src, prepared, PrepareOptions(jobs=args.jobs), progress=False)

    frames = sum(len(b) for b in baseline.values())
    assert frames == sum(len(b) for b in ours.values()), "decoders disagree on the frame count"
    same_det = sum((a is None) == (b is None) and (a is None or _iou(a, b) > 0.5)
                   for p in paths for a, b in zip(baseline[p], ours[p]))
    key_of = {it.path: it.key for it in items}
    same_prep = 0
    for p in paths:
        dropped = set(manifest["videos"][key_of[p]]["dropped_index"])
        same_prep += sum((box is None) == (i in dropped) for i, box in enumerate(baseline[p]))
    report = {
        "videos": len(paths), "frames": frames, "cpu_count": os.cpu_count(), "jobs": args.jobs,
        "baseline_detection_fps": frames / t_base,
        "detection_fps": frames / t_det, "detection_speedup": t_base / t_det,
        "preparation_fps": frames / t_prep, "preparation_speedup": t_base / t_prep,
        "same_faces_detection": same_det / frames, "same_faces_preparation": same_prep / frames,
    }
    print(f"{len(paths)} videos, {frames} frames, {os.cpu_count()} CPU cores")
    print(f"{'naive baseline (OpenCV + 1 MTCNN call/frame)':48s} {report['baseline_detection_fps']:7.1f} frames/s")
    print(f"{'face detection alone (ffmpeg stream + batched)':48s} {report['detection_fps']:7.1f} frames/s"
          f"  x{report['detection_speedup']:.2f}  same faces {100 * report['same_faces_detection']:.1f}%")
    print(f"{f'whole preparation (-j {args.jobs}, faces+audio+shards)':48s} {report['preparation_fps']:7.1f} frames/s"
          f"  x{report['preparation_speedup']:.2f}  same faces {100 * report['same_faces_preparation']:.1f}%")
    with open(os.path.join(args.out, "bench_prepare.json"), "w") as f:
        json.dump(report, f, indent=1)
    print(f"written {os.path.join(args.out, 'bench_prepare.json')}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
