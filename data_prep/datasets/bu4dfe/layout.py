"""BU-4DFE (thesis 002) layout: discovery and preparation of the 2D texture videos.

Two layouts are found, mixed or alone: `<subject>_<emotion>_tex.avi` videos (the thesis's names,
e.g. `M042_happy_tex.avi`, anywhere under SRC) and per-subject, per-expression folders of frame
images (`F001/Angry/000.jpg ...`). Subject and emotion come from the names; the class order is
thesis 002's [angry, disgust, fear, happy, sad, surprise] (fer_keras.classes.BU4DFE).

Per video, as thesis 002 did it (§3.2.1): neutral onset/offset frames are cut with Algorithm 1
on the OpenFace 2.x CSV of the video (trimming.py; a video without a CSV is kept whole and
flagged); the face is found by an OpenCV Haar cascade on the first frames of the kept range, its
box extended by 10 px vertically and followed by MedianFlow (data_prep.tracking; re-detected when
the tracker loses it); crops are resized to 160x160 and stored as PNG. `face_detector="mtcnn"`
uses the AFEW path instead (MTCNN on every frame + 5-point alignment). A subject lacking an
emotion is excluded whole (the thesis dropped F016), unless `keep_incomplete_subjects`.

The thesis's split (test F001-F010 and M001-M010, folds of Fig. 3.6) decides each video's shard
split ("train" or "test") and is written as `splits.json`. Offline augmentation (thesis 002
§2.5(b)) adds one copy of each training video per method, in split "train_aug".
"""
from __future__ import annotations

import os
import re
import zlib
from dataclasses import dataclass

import cv2
import numpy as np

from data_prep.augment import augment_video
from data_prep.datasets.bu4dfe import openface, trimming
from data_prep.datasets.bu4dfe.options import Bu4dfeOptions
from data_prep.errors import BadInput
from data_prep.face import LANDMARK_WEIGHTS, FaceDetector, align
from data_prep.prepare import guarded, run_preparation
from data_prep.store import PreparedStore, encode_image
from data_prep.tracking import FaceTracker, crop
from data_prep.video import VideoStream
from fer_keras.classes import BU4DFE
from fer_keras.data import splits as fold_files
from fer_keras.data.schema import VideoRecord, serialize

VIDEO_EXTENSIONS = (".avi", ".mp4", ".mkv", ".mov", ".wmv")
IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp")
VIDEO_NAME = re.compile(r"^(?P<subject>[FM]\d{3})_(?P<emotion>[A-Za-z]+)_tex$", re.IGNORECASE)
SUBJECT = re.compile(r"^[FM]\d{3}$", re.IGNORECASE)
# Names the emotions go by in file and folder names (the release, the thesis, common spellings).
EMOTION_NAMES = {"angry": "angry", "anger": "angry", "disgust": "disgust", "disgusted": "disgust",
                 "fear": "fear", "fearful": "fear", "happy": "happy", "happiness": "happy", "sad": "sad",
                 "sadness": "sad", "surprise": "surprise", "surprised": "surprise"}
AUGMENTED = fold_files.AUGMENTED_SPLIT


class LayoutError(ValueError):
    """SRC is not a BU-4DFE layout."""


@dataclass
class Bu4dfeVideo:
    """One BU-4DFE sequence: a video file, or a folder of frame images (`frames`)."""

    path: str
    subject: str
    emotion: str
    split: str
    source: str
    frames: list | None = None  # image paths, in frame order, for the frame-folder layout
    csv: str | None = None  # the OpenFace CSV found for it
    augmentations: tuple = ()  # offline methods to add copies with (training videos only)

    @property
    def video_id(self) -> str:
        return f"{self.subject}_{self.emotion}_tex"

    @property
    def label(self) -> int:
        return BU4DFE.index(self.emotion)

    @property
    def key(self) -> str:
        return f"{self.split}/{self.video_id}"

    @property
    def keys(self) -> list[str]:
        return [self.key] + [f"{AUGMENTED}/{self.video_id}~{m}" for m in self.augmentations]


def _emotion(name: str) -> str | None:
    return EMOTION_NAMES.get(name.lower())


def discover(src, opts: Bu4dfeOptions | None = None) -> tuple[list[Bu4dfeVideo], list[dict]]:
    """List the sequences under `src`; returns (usable videos, skipped entries for failures.jsonl)."""
    opts = opts or Bu4dfeOptions()
    src = os.path.abspath(src)
    if not os.path.isdir(src):
        raise LayoutError(f"{src}: no such directory")
    found, skipped = {}, []

    def add(video: Bu4dfeVideo):
        pair = (video.subject, video.emotion)
        if pair in found:
            skipped.append(_skip(video, "duplicate", f"{video.subject} {video.emotion} is also {found[pair].source}"))
        else:
            found[pair] = video

    for folder, dirs, files in os.walk(src):
        dirs.sort()
        for name in sorted(files):
            stem, ext = os.path.splitext(name)
            if ext.lower() not in VIDEO_EXTENSIONS:
                continue
            path = os.path.join(folder, name)
            match = VIDEO_NAME.match(stem)
            if match is None:
                skipped.append(_skip(Bu4dfeVideo(path, "?", "?", "train", os.path.relpath(path, src)), "bad_name",
                                     "not named <subject>_<emotion>_tex (e.g. M042_happy_tex.avi)"))
                continue
            subject, emotion = match["subject"].upper(), _emotion(match["emotion"])
            video = Bu4dfeVideo(path, subject, emotion or match["emotion"], "train", os.path.relpath(path, src))
            if emotion is None:
                skipped.append(_skip(video, "unknown_class", f"{match['emotion']!r} is not one of {list(BU4DFE)}"))
            else:
                add(video)
        subject = os.path.basename(os.path.dirname(folder))
        emotion = _emotion(os.path.basename(folder))
        images = sorted((n for n in files if os.path.splitext(n)[1].lower() in IMAGE_EXTENSIONS), key=_frame_order)
        if images and SUBJECT.match(subject) and emotion:
            add(Bu4dfeVideo(folder, subject.upper(), emotion, "train", os.path.relpath(folder, src),
                            frames=[os.path.join(folder, n) for n in images]))
    if not found:
        raise LayoutError(f"{src} is not a BU-4DFE layout: expected <subject>_<emotion>_tex.avi videos "
                          f"(e.g. M042_happy_tex.avi) or <subject>/<Emotion>/000.jpg frame folders; "
                          f"it contains {sorted(os.listdir(src))[:10]}")
    test = set(fold_files.THESIS002_TEST)
    videos = []
    for video in sorted(found.values(), key=lambda v: (v.subject, v.label)):
        video.split = "test" if video.subject in test else "train"
        video.csv = _find_csv(video, opts.openface)
        if opts.augment and video.split == "train":
            video.augmentations = opts.augment_methods
        videos.append(video)
    by_subject = {}
    for video in videos:
        by_subject.setdefault(video.subject, set()).add(video.emotion)
    incomplete = {s: sorted(set(BU4DFE) - e) for s, e in by_subject.items() if set(e) != set(BU4DFE)}
    if incomplete and not opts.keep_incomplete_subjects:
        kept = []
        for video in videos:
            if video.subject in incomplete:
                skipped.append(_skip(video, "incomplete_subject", (
                    f"subject {video.subject} has no {', '.join(incomplete[video.subject])} video; all its videos "
                    "are excluded as thesis 002 excluded F016 (--keep-incomplete-subjects keeps them)")))
            else:
                kept.append(video)
        videos = kept
    return videos, skipped


def _frame_order(name: str):
    """Frame images in numeric order (9.jpg before 10.jpg), whatever their zero padding."""
    stem = os.path.splitext(name)[0]
    digits = re.findall(r"\d+", stem)
    return (int(digits[-1]) if digits else -1, stem)


def _find_csv(video: Bu4dfeVideo, openface_dir) -> str | None:
    """OpenFace names its CSV after its input: the video's stem, or the frame folder's name."""
    if video.frames is None:
        folder = openface_dir or os.path.dirname(video.path)
        return openface.find_csv(folder, os.path.splitext(os.path.basename(video.path))[0])
    folder_name = os.path.basename(video.path)
    places = [(openface_dir, video.video_id), (openface_dir, f"{video.subject}_{folder_name}"),
              (os.path.join(openface_dir, video.subject) if openface_dir else None, folder_name),
              (None if openface_dir else os.path.dirname(video.path), folder_name)]
    for folder, stem in places:
        if folder:
            path = openface.find_csv(folder, stem)
            if path:
                return path
    return None


def _skip(video: Bu4dfeVideo, reason: str, message: str) -> dict:
    return {"key": video.key, "id": video.video_id, "split": video.split, "subject": video.subject,
            "source": video.source, "path": video.path, "label": BU4DFE.index(video.emotion) if video.emotion in BU4DFE else -1,
            "status": "failed", "reason": reason, "message": message, "frames_total": 0, "frames_kept": 0}


class Bu4dfePreparer:
    """Turns one Bu4dfeVideo into its manifest entry and record, plus its augmented copies."""

    def __init__(self, opts: Bu4dfeOptions):
        self.opts = opts
        self.tracker = FaceTracker(opts.track) if opts.face_detector == "haar" else None
        self.mtcnn = FaceDetector(opts.mtcnn_min_confidence, opts.mtcnn_min_face_size) if self.tracker is None else None

    def __call__(self, video: Bu4dfeVideo) -> list[tuple[dict, bytes | None]]:
        entry = {"key": video.key, "id": video.video_id, "split": video.split, "subject": video.subject,
                 "emotion": video.emotion, "label": video.label, "label_name": video.emotion, "source": video.source,
                 "path": video.path, "frames_total": 0, "frames_kept": 0, "flags": []}
        result = guarded(self._prepare, video, entry)  # the video and its copies, or the failed entry
        return result if isinstance(result, list) else [result]

    # -- steps ---------------------------------------------------------------------------------
    def _kept_range(self, video: Bu4dfeVideo, entry: dict):
        """Algorithm 1 on the video's OpenFace CSV: (first, stop) in 0-based frame indices or None."""
        if not self.opts.trimming:
            entry["trim"] = {"reason": "disabled"}
            return None
        if video.csv is None:
            entry["trim"] = {"reason": "no_openface_csv"}
            entry["flags"].append({"reason": "no_openface_csv", "message": (
                f"no OpenFace CSV ({video.video_id}.csv) found; the video is kept untrimmed")})
            return None
        track = openface.read_csv(video.csv)
        scores = trimming.au_score(track.intensities, track.au, self.opts.trim.exclude_au)
        result = trimming.trim(scores, self.opts.trim)
        first = int(track.frame[0]) - 1
        entry["trim"] = {"csv": video.csv, "csv_frames": len(scores), "start": first + result.start,
                         "stop": first + result.stop, "cut_begin": result.cut_begin, "cut_end": result.cut_end,
                         "peak": first + result.peak, "max_score": round(float(result.max_score), 4),
                         "reason": result.reason}
        if result.anomaly:
            message = (f"AU score peak at frame {first + result.peak} lies in the last {self.opts.trim.anomaly_frames} "
                       f"of {len(scores)} frames (thesis 002 reworked such videos by hand)")
            if self.opts.trim.anomaly == "exclude":
                raise BadInput(video.path, "anomaly", message + "; excluded (trim anomaly=exclude)")
            entry["flags"].append({"reason": "anomaly", "message": message + (
                "; kept untrimmed for review" if self.opts.trim.anomaly == "keep" else "; trimmed anyway")})
        return first + result.start, first + result.stop, len(scores)

    def _frames(self, video: Bu4dfeVideo):
        """Yield (index, RGB frame, time in s); `self.times` ends up with every frame's time."""
        if video.frames is None:
            stream = VideoStream(video.path)
            for index, (frame, pts) in enumerate(stream.frames()):
                yield index, frame, pts
            return
        unreadable = 0
        for index, path in enumerate(video.frames):
            image = cv2.imread(path, cv2.IMREAD_COLOR)
            if image is None:
                unreadable += 1
                continue
            yield index, cv2.cvtColor(image, cv2.COLOR_BGR2RGB), index / self.opts.frames_fps
        if unreadable == len(video.frames):
            raise BadInput(video.path, "corrupt", f"none of its {unreadable} frame images can be read")

    def _faces(self, frames):
        """(index, time, face crop) of every frame in which a face is found; and tracking events."""
        o = self.opts
        if self.tracker is not None:  # streamed: one frame in memory, whatever the video's size
            current, faces, count = [], [], [0]

            def feed():
                for item in frames:
                    current[:] = item
                    count[0] += 1
                    yield item[1]

            for box in self.tracker.track(feed()):
                i, f, t = current
                if box is not None:
                    faces.append((i, t, crop(f, box.box, o.face_size)))
            return faces, count[0], list(self.tracker.events)
        faces, total = [], 0
        batch = []

        def flush():
            for (i, f, t), face in zip(batch, self.mtcnn.detect([f for _, f, _ in batch])):
                if face is not None:
                    faces.append((i, t, align(f, face.landmarks, o.face_size, 0.0, LANDMARK_WEIGHTS)))
            batch.clear()

        for item in frames:
            batch.append(item)
            total += 1
            if len(batch) == 32:
                flush()
        flush()
        return faces, total, []

    def _prepare(self, video: Bu4dfeVideo, entry: dict):
        kept = self._kept_range(video, entry)
        first, stop = (kept[0], kept[1]) if kept else (0, None)
        total = [0]

        def in_range():
            for index, frame, t in self._frames(video):
                total[0] = index + 1
                if index >= first and (stop is None or index < stop):
                    yield index, frame, t

        faces, considered, events = self._faces(in_range())
        if total[0] == 0:
            raise BadInput(video.path, "corrupt", "the video has no decodable frames")
        if kept and kept[2] != total[0]:
            entry["flags"].append({"reason": "openface_mismatch", "message": (
                f"the OpenFace CSV has {kept[2]} frames, the video {total[0]}; trimmed by the CSV's frame numbers")})
        entry.update(frames_total=total[0], frames_in_range=considered, frames_kept=len(faces),
                     frames_dropped=considered - len(faces), fps=self.opts.frames_fps if video.frames else None)
        if events:  # frames of the video, not of the kept range
            entry["tracking"] = [{"frame": first + e.frame, "event": e.kind, **({"box": list(e.box)} if e.box else {}),
                                  **({"detail": e.detail} if e.detail else {})} for e in events]
            lost = [e for e in entry["tracking"] if e["event"] == "lost"]
            if lost:
                back = [e["frame"] for e in entry["tracking"] if e["event"] == "redetected"]
                entry["flags"].append({"reason": "tracker_lost", "message": (
                    f"the tracker lost the face {len(lost)} time(s), first at frame {lost[0]['frame']} "
                    f"({lost[0].get('detail', '')}); " + (f"re-detected at frame {back[0]}; " if back else "never re-detected; ")
                    + f"{considered - len(faces)} frames without a face were dropped")})
        if not faces:
            raise BadInput(video.path, "no_face", f"no face found in any of its {considered} frames in range")
        index = np.array([i for i, _, _ in faces], np.int64)
        times = np.array([t for _, t, _ in faces], np.float64)
        if entry["fps"] is None:  # a video's average rate over its kept frames
            span = times[-1] - times[0]
            entry["fps"] = round(float((index[-1] - index[0]) / span), 6) if span > 0 else self.opts.frames_fps
        entry["status"] = "ok"
        crops = [c for _, _, c in faces]
        results = [(entry, self._record(video.video_id, video.label, entry, crops, index, times, total[0]))]
        for method in video.augmentations:
            seed = zlib.crc32(f"{self.opts.seed}/{video.video_id}/{method}".encode())
            copy = augment_video(crops, method, self.opts.augment, seed=seed)
            vid = f"{video.video_id}~{method}"
            aug_entry = {**{k: v for k, v in entry.items() if k not in ("flags", "tracking", "trim")},
                         "key": f"{AUGMENTED}/{vid}", "id": vid, "split": AUGMENTED, "augmentation": method,
                         "augment_mode": self.opts.augment, "of": video.key, "flags": []}
            results.append((aug_entry, self._record(vid, video.label, aug_entry, copy, index, times, total[0])))
        return results

    def _record(self, video_id, label, entry, crops, index, times, total) -> bytes:
        n = len(crops)
        return serialize(VideoRecord(
            video_id=video_id, label=label, fps=float(entry["fps"]), face_size=self.opts.face_size,
            frames=[encode_image(c, self.opts.image_format) for c in crops], frame_index=index, frame_time=times,
            audio_lld=np.zeros((n, 0), np.float32), audio_mask=np.zeros(n, np.int64), has_audio=False,
            source_frames=total, dataset="bu4dfe"))


def prepare(src, out, opts: Bu4dfeOptions | None = None, progress: bool = True) -> dict:
    """Prepare a BU-4DFE layout at `src` into shards under `out` (+ splits.json unless it is one
    share); returns the manifest."""
    opts = opts or Bu4dfeOptions()
    if opts.openface is not None and not os.path.isdir(opts.openface):
        raise FileNotFoundError(f"{opts.openface}: no such OpenFace output directory")
    videos, skipped = discover(src, opts)
    header = {"dataset": "bu4dfe", "classes": list(BU4DFE), "source": os.path.abspath(src),
              "openface": os.path.abspath(opts.openface) if opts.openface else "beside each video",
              "options": opts.content(), "audio": {"lld_dim": 0, "functionals_dim": 0}, "subjects": True}
    store = PreparedStore(out, header, opts.shard_size, verify=opts.verify, shard=opts.shard)
    manifest = run_preparation(videos, store, (Bu4dfePreparer, (opts,)), opts.jobs, skipped, progress)
    if not opts.shard:
        finish(out, manifest)
    return manifest


def finish(out, manifest: dict) -> None:
    """What a whole preparation (or a merge of its shares) writes beside the manifest: splits.json,
    thesis 002's test subjects and folds over every subject prepared (a share sees only some)."""
    subjects = sorted({v["subject"] for v in manifest["videos"].values() if v.get("subject") and v["status"] == "ok"})
    fold_files.write(os.path.join(out, fold_files.SPLITS_FILE), fold_files.thesis002(subjects))
