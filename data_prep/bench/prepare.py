"""`make bench-prepare`: frames/s of AFEW preparation against baselines measured in the same run.

1. Synthetic AFEW (160x128). Baseline (what a first script does): OpenCV reads each video frame by
   frame and one `MTCNN().detect_faces` call is made per frame, in one process. Then our detection
   alone (streamed ffmpeg decode + batched MTCNN, one process) and our whole preparation (`-j JOBS`:
   detection, alignment, encoding, audio LLDs and functionals, shards), with the same faces checked.
2. Real resolutions (720x576 and 1280x720 clips written and decoded with ffmpeg, faces of realistic
   sizes). Baseline: MTCNN on the full frame in batches of 32 with its 20 px smallest face (the
   detector before the detection copy), against our detector at its default (detection copy, O-Net
   landmarks at full resolution) and at full resolution; the share of frames where both find the same
   face (IoU > 0.5, or both none) and the landmark distance in full-resolution pixels.
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import time

import cv2
import numpy as np


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
    from data_prep.face import FaceDetector
    from data_prep.video import VideoStream

    detector, out = FaceDetector(), {}
    for path in paths:
        boxes = []
        for _, frames in VideoStream(path).batches(batch):
            boxes += [None if f is None else tuple(f.box) for f in detector.detect(frames)]
        out[path] = boxes
    return out


class FullResolutionBaseline:
    """The detector before the detection copy: mtcnn as shipped, on full frames, 20 px smallest face."""

    def __init__(self, min_confidence=0.9):
        from mtcnn import MTCNN

        self.mtcnn, self.min_confidence = MTCNN(), min_confidence

    def detect(self, frames):
        from data_prep.face import best_faces

        rows = self.mtcnn.detect_faces(list(frames), box_format="xyxy", output_type="numpy", min_face_size=20)
        return [None if f is None else (f.box, f.landmarks) for f in best_faces(rows, len(frames), self.min_confidence)]


class _Ours:
    def __init__(self, **options):
        from data_prep.face import FaceDetector

        self.detector = FaceDetector(**options)

    def detect(self, frames):
        return [None if f is None else (f.box, f.landmarks) for f in self.detector.detect(frames)]


def agreement(reference, faces) -> tuple[float, float]:
    """(share of frames with the same face or none in both, mean landmark distance in px)."""
    same, dist = 0, []
    for a, b in zip(reference, faces):
        if a is None or b is None:
            same += a is None and b is None
            continue
        same += _iou(a[0], b[0]) > 0.5
        dist.append(float(np.linalg.norm(a[1] - b[1], axis=1).mean()))
    return same / len(reference), float(np.mean(dist)) if dist else float("nan")


REAL_SIZES = ((720, 576, 0.25), (1280, 720, 0.22))  # (width, height, face box / frame height)


def real_resolution_rows(work, frames_per_clip=64, sizes=REAL_SIZES, batch=32):
    """Detection at real resolutions: the baseline, ours at full resolution and ours by default,
    timed in interleaved rounds (one batch each in turn), so a change in machine load hits all three."""
    from data_prep.synthetic_render import render_frames, write_video
    from data_prep.video import VideoStream

    rng, rows = np.random.default_rng(7), []
    methods = {"baseline": FullResolutionBaseline(), "full": _Ours(min_face_size=20), "ours": _Ours()}
    for width, height, face_height in sizes:
        path = os.path.join(work, f"real_{width}x{height}.mp4")
        faces = set(range(frames_per_clip)) - set(range(frames_per_clip // 2, frames_per_clip // 2 + 6))
        write_video(path, render_frames(rng, width, height, 1, frames_per_clip, faces, face_height), width, height,
                    ((frames_per_clip, 25.0),), "libx264")
        frames = [f for f, _ in VideoStream(path).frames()]
        for method in methods.values():  # trace the networks and warm up TensorFlow at this size
            method.detect(frames[:batch])
        found = {name: [] for name in methods}
        seconds = dict.fromkeys(methods, 0.0)
        for i in range(0, len(frames), batch):
            for name, method in methods.items():
                start = time.perf_counter()
                found[name] += method.detect(frames[i:i + batch])
                seconds[name] += time.perf_counter() - start
        same, landmark_px = agreement(found["baseline"], found["ours"])
        face_px = float(np.median([b[0][3] - b[0][1] for b in found["baseline"] if b is not None]))
        n = len(frames)
        rows.append({"size": f"{width}x{height}", "frames": n, "face_px": face_px,
                     "baseline_fps": n / seconds["baseline"], "full_resolution_fps": n / seconds["full"],
                     "fps": n / seconds["ours"], "speedup": seconds["baseline"] / seconds["ours"],
                     "full_resolution_speedup": seconds["baseline"] / seconds["full"],
                     "same_face": same, "landmark_px": landmark_px})
    return rows


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
    parser.add_argument("--real-frames", type=int, default=64, help="frames per real-resolution clip (0: skip)")
    args = parser.parse_args(argv)

    from data_prep.datasets.afew.layout import discover, prepare
    from data_prep.prepare import PrepareOptions
    from data_prep.datasets.afew.synthetic import SyntheticSpec, write_afew

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
    if args.real_frames:
        report["real_resolution"] = real_resolution_rows(args.out, args.real_frames)
        print(f"\n{'detection at real resolution':34s} {'frames/s':>9s} {'vs baseline':>12s} {'same face':>10s} "
              f"{'landmarks':>10s}")
        for row in report["real_resolution"]:
            label = f"{row['size']} ({row['frames']} frames, faces ~{row['face_px']:.0f} px)"
            print(label)
            print(f"  {'baseline: full frame, 20 px':32s} {row['baseline_fps']:9.1f} {'1.00x':>12s}")
            print(f"  {'ours, full resolution (20 px)':32s} {row['full_resolution_fps']:9.1f} "
                  f"{row['full_resolution_speedup']:11.2f}x")
            print(f"  {'ours, default (detection copy)':32s} {row['fps']:9.1f} {row['speedup']:11.2f}x "
                  f"{100 * row['same_face']:9.1f}% {row['landmark_px']:7.2f} px")
    with open(os.path.join(args.out, "bench_prepare.json"), "w") as f:
        json.dump(report, f, indent=1)
    print(f"written {os.path.join(args.out, 'bench_prepare.json')}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
