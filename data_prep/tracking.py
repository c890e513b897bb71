"""Face detection on a few frames with an OpenCV Haar cascade, then OpenCV tracking (thesis 002, §3.2.1).

Thesis 002 found the face with a Haar cascade "in the first frames", extended the box by 10 px in
height so that a wide-open mouth (surprise) is not cut off, tracked it with MedianFlow (CSRT and
KCF were compared) and resized the crops to 160x160. The cascade is the slow step, so it runs only
until a face is found and again when the tracker loses it; every other frame costs one tracker
update. What happened on which frame (detections, losses, re-detections) is kept in `events`.
"""
from __future__ import annotations

import glob
import logging
import os
from dataclasses import dataclass
from typing import Iterable, Iterator

import cv2
import numpy as np

from data_prep.options import check, option

log = logging.getLogger(__name__)

# Where cascades are looked up by file name: the folder of opencv-python 4.x wheels (the 5.0 wheels
# ship it empty), then the folders of Debian's and other distributions' opencv-data package.
CASCADE_DIRS = (cv2.data.haarcascades, "/usr/share/opencv4/haarcascades", "/usr/share/opencv/haarcascades")

# OpenCV factory of each tracker; looked up in cv2 first, then in cv2.legacy (MedianFlow lives only
# there in OpenCV 4.5+ and 5.0).
TRACKER_FACTORIES = {"medianflow": "TrackerMedianFlow_create", "csrt": "TrackerCSRT_create", "kcf": "TrackerKCF_create"}
EXTEND_SPLITS = ("down", "up", "both")
CHECK_FACE_PX = 48  # side the tracked face is scaled to for the drift check (the cascade window is 24)


def bundled_cascades() -> list[str]:
    """File names of the cascades found in CASCADE_DIRS (what a bare `cascade` name may be)."""
    return sorted({os.path.basename(p) for d in CASCADE_DIRS for p in glob.glob(os.path.join(d, "*.xml"))})


def _cascade_error(name: str, why: str) -> ValueError:
    bundled = ", ".join(bundled_cascades()) or (
        "none: the OpenCV 5.0 wheels ship no cascade files; install OpenCV 4.x wheels or Debian's opencv-data")
    folders = ", ".join(CASCADE_DIRS)
    return ValueError(f"track option cascade: {why}: {name!r} (bundled cascades in {folders}: {bundled})")


def cascade_path(name: str) -> str:
    """The cascade file `name` stands for: an existing path, or a file name inside CASCADE_DIRS."""
    if os.path.isfile(name):
        return name
    for folder in CASCADE_DIRS:
        path = os.path.join(folder, name)
        if os.path.isfile(path):
            return path
    raise _cascade_error(name, "no such cascade file")


def tracker_factory(name: str):
    """OpenCV's constructor of tracker `name`, or None when this OpenCV build lacks it."""
    attr = TRACKER_FACTORIES[name]
    return getattr(cv2, attr, None) or getattr(getattr(cv2, "legacy", None), attr, None)


@dataclass
class TrackOptions:
    """How faces are found and followed; the defaults are thesis 002's choices where it states them."""

    cascade: str = option("haarcascade_frontalface_default.xml",
                          "Haar cascade: a file name bundled with OpenCV or a path (the thesis does not say which)")
    scale_factor: float = option(1.1, "cascade pyramid step, > 1")
    min_neighbors: int = option(5, "overlapping hits a cascade box needs", low=0)
    min_face: float = option(0.2, "smallest face for the cascade: fraction of the shorter side (< 1) or pixels",
                             flag="--haar-min-face")
    # Whole-frame histogram equalisation, the usual OpenCV recipe, is off: on the synthetic
    # 640x480 clips (6 seeds, 180 frames with a face) it cut the cascade's hits from 180 to 150,
    # because the textured background takes over the histogram.
    equalize: bool = option(False, "equalise each frame's histogram before the cascade")
    extend: int = option(10, "pixels added to the box height (thesis: 10)", low=0)
    # Where the extension goes ("down", "up", "both": half each); the thesis does not say. "down":
    # the extension is there so that a mouth opened wide (surprise) is not cut off, and the jaw drops
    # downwards.
    extend_split: str = option("down", "where the extension goes (the thesis does not say; down: the jaw drops)",
                               choices=EXTEND_SPLITS)
    tracker: str = option("medianflow", "OpenCV tracker (the thesis's choice: medianflow, the fastest)",
                          choices=tuple(TRACKER_FACTORIES))
    # A search for the face (at the start, or after a loss) that finds nothing in this many frames is
    # logged as a "not_found" event; the cascade still runs on each later frame until a face appears,
    # and each frame without a box is reported as no face.
    detect_frames: int = option(5, "first frames the cascade tries before it tries every later frame", low=1)
    # When the tracker reports failure or its box is more than half outside the frame, run the cascade
    # on that frame and restart the tracker; False follows the face from the first detection only.
    redetect: bool = option(True, "follow the face from the first detection only, never re-detect after a loss",
                            flag="--no-redetect")
    # MedianFlow can report success while its box has slid onto the background (a face leaving the
    # frame fast, measured on the synthetic set). So the cascade checks the region under the box at
    # once when the box jumps by more than half its width in one frame, and every `verify_every`
    # tracked frames (25: once a second at BU-4DFE's 25 fps, about 3 ms each); no face there is a
    # loss ("drift"). 0 never checks periodically (the thesis's pipeline had no check).
    verify_every: int = option(25, "tracked frames between cascade checks of the box (0: only on jumps)", low=0)

    def __post_init__(self):
        check(self, "track option")
        if not self.cascade:
            raise ValueError(f"track option cascade must be a cascade file name or path, got {self.cascade!r}")
        cascade_path(self.cascade)
        if not self.scale_factor > 1:
            raise ValueError(f"track option scale_factor must be > 1 (the pyramid step), got {self.scale_factor}")
        if not self.min_face > 0:
            raise ValueError(f"track option min_face must be a fraction of the frame's shorter side (0 < v < 1) "
                             f"or pixels (v >= 1), got {self.min_face}")
        if tracker_factory(self.tracker) is None:
            raise ValueError(f"track option tracker: OpenCV {cv2.__version__} has no {TRACKER_FACTORIES[self.tracker]} "
                             f"(in cv2 or cv2.legacy)")


@dataclass
class TrackedFace:
    """The face on one frame: box (x, y, w, h) in pixels inside the frame, and where it came from."""

    box: tuple[int, int, int, int]
    source: str  # "detected" (first cascade hit), "tracked", or "redetected" (cascade hit after a loss)


@dataclass
class TrackEvent:
    """Something that changed on frame `frame`: "detected", "lost", "redetected" or "not_found"."""

    frame: int
    kind: str
    box: tuple[int, int, int, int] | None = None
    detail: str = ""


def iou(a, b) -> float:
    """Intersection over union of two (x, y, w, h) boxes."""
    ix = max(0.0, min(a[0] + a[2], b[0] + b[2]) - max(a[0], b[0]))
    iy = max(0.0, min(a[1] + a[3], b[1] + b[3]) - max(a[1], b[1]))
    inter = ix * iy
    union = a[2] * a[3] + b[2] * b[3] - inter
    return inter / union if union > 0 else 0.0


def clip_box(box, width: int, height: int) -> tuple[int, int, int, int]:
    """`box` (x, y, w, h), rounded to pixels, cut to the part inside a width x height frame (w or h 0 if none)."""
    x0, y0 = max(0, int(round(box[0]))), max(0, int(round(box[1])))
    x1, y1 = min(width, int(round(box[0] + box[2]))), min(height, int(round(box[1] + box[3])))
    return x0, y0, max(0, x1 - x0), max(0, y1 - y0)


def crop(frame: np.ndarray, box, size: int = 160) -> np.ndarray:
    """The (size, size) face crop of `box`, clipped to the frame first; area averaging when shrinking
    (no aliasing), bilinear when growing. The box is not squared: thesis 002 resized its extended
    159x169 boxes straight to 160x160."""
    x, y, w, h = clip_box(box, frame.shape[1], frame.shape[0])
    if w == 0 or h == 0:
        raise ValueError(f"crop box {tuple(box)} lies outside the {frame.shape[1]}x{frame.shape[0]} frame")
    interpolation = cv2.INTER_AREA if w * h > size * size else cv2.INTER_LINEAR
    return cv2.resize(frame[y:y + h, x:x + w], (size, size), interpolation=interpolation)


class FaceTracker:
    """Haar cascade until a face is found, then one OpenCV tracker update per frame (see module doc)."""

    def __init__(self, opts: TrackOptions | None = None):
        self.opts = opts or TrackOptions()
        path = cascade_path(self.opts.cascade)
        self._cascade = cv2.CascadeClassifier()
        try:
            loaded = self._cascade.load(path)
        except cv2.error as e:  # malformed XML raises; XML without a cascade answers False
            raise _cascade_error(path, f"OpenCV cannot load this cascade file ({e.err})") from None
        if not loaded:
            raise _cascade_error(path, "OpenCV cannot load this cascade file")
        self._new_tracker = tracker_factory(self.opts.tracker)
        self.events: list[TrackEvent] = []
        self.cascade_runs = 0  # frames the cascade ran on in the last track(): where the time goes

    def detect(self, frame: np.ndarray) -> tuple[int, int, int, int] | None:
        """The largest cascade face of an RGB frame, extended by `extend` px in height, or None."""
        self.cascade_runs += 1
        height, width = frame.shape[:2]
        gray = cv2.cvtColor(frame, cv2.COLOR_RGB2GRAY)
        if self.opts.equalize:
            gray = cv2.equalizeHist(gray)
        side = round(self.opts.min_face * min(width, height) if self.opts.min_face < 1 else self.opts.min_face)
        found = self._cascade.detectMultiScale(gray, scaleFactor=self.opts.scale_factor,
                                               minNeighbors=self.opts.min_neighbors, minSize=(side, side))
        if len(found) == 0:
            return None
        x, y, w, h = (int(v) for v in max(found, key=lambda b: int(b[2]) * int(b[3])))
        up = {"down": 0, "up": self.opts.extend, "both": self.opts.extend // 2}[self.opts.extend_split]
        box = clip_box((x, y - up, w, h + self.opts.extend), width, height)
        return box if box[2] and box[3] else None

    def face_under(self, frame: np.ndarray, box) -> bool:
        """Whether the cascade finds a face of about the box's size in the region around `box`."""
        height, width = frame.shape[:2]
        x, y, w, h = box
        x0, y0 = max(0, int(x - w / 4)), max(0, int(y - h / 4))
        x1, y1 = min(width, int(x + w * 1.25)), min(height, int(y + h * 1.25))
        self.cascade_runs += 1
        gray = cv2.cvtColor(np.ascontiguousarray(frame[y0:y1, x0:x1]), cv2.COLOR_RGB2GRAY)
        scale = min(1.0, CHECK_FACE_PX / min(w, h))  # a face of 48 px: the check costs about 1 ms
        if scale < 1:
            gray = cv2.resize(gray, None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA)
        if self.opts.equalize:
            gray = cv2.equalizeHist(gray)
        side = max(24, int(0.6 * min(w, h) * scale))
        found = self._cascade.detectMultiScale(gray, scaleFactor=self.opts.scale_factor,
                                               minNeighbors=self.opts.min_neighbors, minSize=(side, side))
        return len(found) > 0

    def track(self, frames: Iterable[np.ndarray]) -> Iterator[TrackedFace | None]:
        """Yield the face (or None) of each RGB uint8 (H, W, 3) frame; `events` fills as frames pass."""
        self.events, self.cascade_runs = [], 0
        tracker, found_before, searching_since, lost_for_good = None, False, 0, False
        last, since_check = None, 0  # the previous tracked box, tracked frames since the last check
        for i, frame in enumerate(frames):
            if frame.ndim != 3 or frame.shape[2] != 3 or frame.dtype != np.uint8:
                raise ValueError(f"frame {i}: expected an RGB uint8 (H, W, 3) array, got {frame.dtype} {frame.shape}")
            height, width = frame.shape[:2]
            bgr = cv2.cvtColor(frame, cv2.COLOR_RGB2BGR)  # KCF's and CSRT's colour features read BGR
            if tracker is not None:
                ok, raw = tracker.update(bgr)
                box = clip_box(raw, width, height)
                inside = box[2] * box[3] / max(raw[2] * raw[3], 1e-9) if ok else 0.0
                if ok and inside >= 0.5:
                    since_check += 1
                    jump = abs(box[0] + box[2] / 2 - last[0] - last[2] / 2) > last[2] / 2
                    check = jump or (self.opts.verify_every and since_check >= self.opts.verify_every)
                    last = box
                    if not check or self.face_under(frame, box):
                        since_check = 0 if check else since_check
                        yield TrackedFace(box, "tracked")
                        continue
                    reason = "no face under the tracked box (drift" + (" after a jump)" if jump else ")")
                else:
                    reason = "tracker reported failure" if not ok else "box more than half outside the frame"
                self._event(TrackEvent(i, "lost", None, reason))
                tracker, searching_since, lost_for_good = None, i, not self.opts.redetect
            if lost_for_good:
                yield None
                continue
            box = self.detect(frame)
            if box is None:
                if i - searching_since + 1 == self.opts.detect_frames:
                    self._event(TrackEvent(i, "not_found", None, f"no face in frames {searching_since}-{i}; "
                                                                  "the cascade keeps looking on every frame"))
                yield None
                continue
            source = "redetected" if found_before else "detected"
            found_before = True
            self._event(TrackEvent(i, source, box))
            tracker, last, since_check = self._new_tracker(), box, 0
            if tracker.init(bgr, box) is False:  # legacy trackers answer a bool; search again next frame
                tracker, searching_since = None, i + 1
            yield TrackedFace(box, source)

    def _event(self, event: TrackEvent) -> None:
        self.events.append(event)
        log.info("frame %d: face %s%s%s", event.frame, event.kind, f" at {event.box}" if event.box else "",
                 f" ({event.detail})" if event.detail else "")
