"""One valence/arousal video -> one track per annotated person -> segment records (issue 27 §2).

Every face of every frame is found and cut once, while the video streams (only the encoded crops
and boxes are kept, so a long 1280x720 video needs little memory); `persons.assign` then says which
face is which person, and each person's annotated frames with a face become that track's records,
`segment_frames` at a time, so training windows never load a whole Aff-Wild2 video. Frames
without a label are dropped and counted, never labelled.
"""
from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass, field

import cv2
import numpy as np

from data_prep.datasets.va import persons as person_tracks
from data_prep.datasets.va.options import VaOptions
from data_prep.errors import BadInput
from data_prep.face import FaceDetector, align, box_crop, roll_crop
from data_prep.prepare import guarded
from data_prep.store import encode_image
from data_prep.video import VideoStream, resample
from fer_keras.data.schema import UNLABELLED, VideoRecord, serialize

SEQUENCE = 80  # thesis 001's sequence length, the unit of its leaky split


@dataclass
class Labels:
    """One person's per-frame labels over the decoded frames: NaN / -1 where not annotated."""

    va: np.ndarray  # float32 (frames, 2)
    category: np.ndarray | None = None  # int64 (frames,)
    counts: dict = field(default_factory=dict)  # what the reading reported (truncated, padded, unmapped)


@dataclass
class VaItem:
    """One source video (or frame folder, or still image) and the people annotated in it."""

    video: str  # the video's name (stem); a track's id is `video` or `video_<person>`
    split: str
    path: str  # the video file, the frame folder, or the image
    source: str  # `path` relative to the dataset root
    persons: tuple = ("",)
    frames: list | None = None  # --layout frames: the frame images, in order
    box: tuple | None = None  # --layout affectnet: the face box the CSV gives (x, y, w, h)
    read: dict = field(default_factory=dict)  # what layout.read_labels needs (paths, preread values)
    splits: tuple = ()  # --sequence-split: the splits its tracks' sequences are drawn into

    def track_id(self, person: str) -> str:
        return f"{self.video}_{person}" if person else self.video

    @property
    def keys(self) -> tuple:
        return tuple(f"{split}/{self.track_id(p)}" for p in self.persons for split in (self.splits or (self.split,)))

    @property
    def key(self) -> str:
        return self.keys[0]


class TrackPreparer:
    """Holds the detector; turns one VaItem into (manifest entry, segment records) per track."""

    def __init__(self, opts: VaOptions, read_labels, categories: tuple | None):
        self.opts, self.read_labels, self.categories = opts, read_labels, categories
        self.detector = None if opts.layout == "affectnet" else FaceDetector(opts.min_confidence, opts.min_face_size)

    def __call__(self, item: VaItem) -> list[tuple[dict, list[bytes] | None]]:
        base = {"video": item.video, "source": item.source, "path": item.path, "label": UNLABELLED,
                "label_name": None, "frames_total": 0, "frames_kept": 0, "flags": []}
        entries = {key: {**base, "key": key, "split": key.split("/", 1)[0], "id": key.split("/", 1)[1],
                         "person": person} for person in item.persons
                   for key in (f"{s}/{item.track_id(person)}" for s in (item.splits or (item.split,)))}
        first = next(iter(entries.values()))

        def step(it, entry):
            try:
                return entry, self._prepare(it, entries)
            except BadInput as err:  # a bad annotation file: the failure names it, not the video
                if err.path and os.path.abspath(err.path) != os.path.abspath(it.path):
                    entry["path"] = str(err.path)
                raise

        _, result = guarded(step, item, first)
        if result is None:  # the whole video failed: every track says why
            return [({**entry, **{k: first[k] for k in ("status", "reason", "message", "path")}}, None)
                    for entry in entries.values()]
        return result

    # -- frames and faces ------------------------------------------------------------------------
    def _crop(self, frame, face) -> bytes:
        o = self.opts
        if face.landmarks is None:  # a given box (AffectNet): nothing to align by
            image = box_crop(frame, face.box, o.face_size)
        elif o.crop == "roll":
            image = roll_crop(frame, face.landmarks, face.box, o.crop_size, o.face_size)
        elif o.crop == "box":
            image = box_crop(frame, face.box, o.face_size)
        else:
            image = align(frame, face.landmarks, o.face_size, o.margin, o.landmark_weights)
        return encode_image(image, o.image_format, o.jpeg_quality)

    def _frames(self, item: VaItem):
        """Yield the item's RGB frames; `self._timing` then holds (times, fps, nominal fps, size,
        source frame of each frame or None when they are the source's own, source frame count)."""
        o = self.opts
        if item.frames is None and item.box is None:
            stream = VideoStream(item.path)
            if o.fps is None:
                for frame, _ in stream.frames():
                    yield frame
                self._timing = (np.asarray(stream.times), stream.fps, stream.info.nominal_fps,
                                [stream.width, stream.height], None, len(stream.times))
                return
            source, times = [], []
            for i, t, frame in resample(stream, o.fps):
                source.append(i)
                times.append(t)
                yield frame
            self._timing = (np.asarray(times, np.float64), float(o.fps), stream.info.nominal_fps,
                            [stream.width, stream.height], np.asarray(source, np.int64), len(stream.times))
            return
        paths = item.frames if item.frames is not None else [item.path]
        size = None
        for path in paths:
            image = cv2.imread(path, cv2.IMREAD_COLOR)
            if image is None:
                raise BadInput(path, "corrupt", "not a readable image")
            size = size or [image.shape[1], image.shape[0]]
            yield cv2.cvtColor(image, cv2.COLOR_BGR2RGB)
        rate = o.frames_fps
        self._timing = (np.arange(len(paths)) / rate, rate, rate, size, None, len(paths))

    def _batches(self, item: VaItem):
        """Lists of up to `detect_batch` frames of one size (one batched MTCNN call takes one size)."""
        batch = []
        for frame in self._frames(item):
            if batch and (len(batch) == self.opts.detect_batch or frame.shape != batch[0].shape):
                yield batch
                batch = []
            batch.append(frame)
        if batch:
            yield batch

    def _faces(self, item: VaItem):
        """(detections, crops) per frame: every face's (x, y, w, h, confidence) and encoded crop."""
        detections, crops = [], []
        for batch in self._batches(item):
            if item.box is not None:  # AffectNet gives the face
                x, y, w, h = item.box
                found = [[_Given(np.array([x, y, x + w, y + h], np.float64))] for _ in batch]
            else:
                found = self.detector.detect_all(batch)
            for frame, faces in zip(batch, found):
                detections.append([(*_xywh(f.box), f.confidence) for f in faces])
                crops.append([self._crop(frame, f) for f in faces])
        return detections, crops

    # -- tracks ------------------------------------------------------------------------------------
    def _prepare(self, item: VaItem, entries: dict) -> list[tuple[dict, list[bytes] | None]]:
        o = self.opts
        detections, crops = self._faces(item)
        times, fps, nominal_fps, size, source, source_frames = self._timing
        n = len(detections)
        if n == 0:
            raise BadInput(item.path, "corrupt", "no decodable frames")
        labels = self.read_labels(item, o, source_frames, times, source)
        resampled = {} if source is None else {"frames_resampled": n}  # --fps: frames_total counts the source's
        source = np.arange(n, dtype=np.int64) if source is None else source
        tracks = person_tracks.assign(detections, item.persons, o.persons_max_jump, o.persons_ambiguity,
                                      o.persons_max_lost)
        out = []
        for person in item.persons:
            track, label = tracks[person], labels[person]
            annotated = ~np.isnan(label.va).any(axis=1)
            if label.category is not None and self.categories is None:
                label.category = None
            if o.require_category:  # thesis 003 kept only its faces with a category, for every model
                annotated &= label.category >= 0 if label.category is not None else False
            with_face = track.index >= 0
            kept = np.flatnonzero(annotated & with_face)
            counts = {"frames_total": source_frames, **resampled, "frames_kept": int(kept.size),
                      "frames_unannotated": int(np.count_nonzero(~annotated)),
                      "frames_no_face": int(np.count_nonzero(annotated & ~with_face)),
                      "frames_ambiguous": track.counts.dropped_ambiguous, "extra_faces": track.counts.extra_faces,
                      "fps": fps, "nominal_fps": nominal_fps, "source_size": size, **label.counts}
            for split, frames in self._split(item, person, kept):
                entry = entries[f"{split}/{item.track_id(person)}"]
                entry.update(counts, frames_kept=int(frames.size))
                if not frames.size:
                    why = ("no frame with both a label and this person's face" if kept.size else
                           "no annotated frame has this person's face" if annotated.any() else
                           "no frame is annotated")
                    entry.update(status="failed", reason="no_labelled_face", message=f"{why} ({n} frames)")
                    out.append((entry, None))
                    continue
                records = [serialize(self._record(item.track_id(person), part, k, track, label, crops, times, fps,
                                                  source, source_frames))
                           for k, part in enumerate(_segments(frames, o.segment_frames))]
                entry.update(status="ok", segments=len(records))
                out.append((entry, records))
        return out

    def _split(self, item: VaItem, person: str, kept: np.ndarray):
        """[(split, kept frames)]: the item's split, or thesis 001's 2:1 draw of 80-frame sequences."""
        if not item.splits:
            return [(item.split, kept)]
        runs = [kept[i:i + SEQUENCE] for i in range(0, kept.size - kept.size % SEQUENCE, SEQUENCE)]
        drawn = {split: [] for split in item.splits}
        for k, run in enumerate(runs):
            rank = int.from_bytes(hashlib.blake2b(f"{self.opts.seed}/{item.track_id(person)}/{k}".encode(),
                                                  digest_size=8).digest(), "big") / 2 ** 64
            drawn["test" if rank < self.opts.test_fraction else "train"].append(run)
        return [(split, np.concatenate(runs) if runs else np.zeros(0, np.int64)) for split, runs in drawn.items()]

    def _record(self, track_id, frames, segment, track, label, crops, times, fps, source, source_frames) -> VideoRecord:
        chosen = track.index[frames]
        boxes = np.array([track.boxes[i][:4] for i in frames], np.float32)
        category = None
        if self.categories is not None:
            category = (label.category[frames] if label.category is not None
                        else np.full(frames.size, UNLABELLED, np.int64))
        return VideoRecord(
            video_id=track_id, label=UNLABELLED, fps=fps, face_size=self.opts.face_size,
            frames=[crops[i][k] for i, k in zip(frames, chosen)], frame_index=source[frames],
            frame_time=times[frames], audio_lld=np.zeros((frames.size, 0), np.float32), has_audio=False,
            source_frames=source_frames, dataset="va", valence_arousal=label.va[frames], box=boxes,
            category=category, segment=segment)


@dataclass
class _Given:
    """A face box a dataset gives (AffectNet): used as is, no landmarks, no confidence to weigh."""

    box: np.ndarray
    confidence: float = 1.0
    landmarks: np.ndarray | None = None


def _xywh(box) -> tuple[float, float, float, float]:
    x1, y1, x2, y2 = (float(v) for v in box)
    return x1, y1, x2 - x1, y2 - y1


def _segments(frames: np.ndarray, size: int) -> list[np.ndarray]:
    return [frames[i:i + size] for i in range(0, frames.size, size)]

