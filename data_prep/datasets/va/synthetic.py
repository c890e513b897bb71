"""Synthetic valence/arousal sources in the five layouts `prepare va` reads (issue 27 §3).

Each annotated person's valence and arousal is an offset plus three slow sines of time, so labels
are smooth, differ per person and are known exactly. The astronaut face shows them: valence tints
it warm or cool and curves the mouth up or down, arousal opens the mouth; both stay visible in a
32-96 px face crop after JPEG, so a small model can learn them. Files follow the real formats and
their quirks (Aff-Wild2's header and -5 gaps, joystick logs at an uneven rate, AffectNet's CSV),
the videos use real codecs and one has a variable frame rate. With `broken`, one annotation file is
malformed and one video has no annotation. The ground truth (per video, person and frame: values,
face boxes, frame times; what is broken and why) goes to `synthetic_truth.json` beside the layout.
"""
from __future__ import annotations

import functools
import json
import os
from dataclasses import asdict, dataclass

import cv2
import numpy as np

from data_prep.datasets.va.annotations import (AFFECTNET_HEADER, AFFWILD2_ALIASES, AFFWILD2_EXPRESSIONS,
                                               AFFWILD2_VA_HEADER, map_classes)
from data_prep.options import check, option
from data_prep.synthetic_render import TRUTH_FILE, background, face_sprite, segment_times, write_video
from fer_keras.classes import AFFWILD_CATEGORIES

LAYOUTS = ("affwild2", "affwild", "timed", "frames", "affectnet")
AFFWILD2_SETS = {"train": "Train_Set", "val": "Validation_Set"}
AFFECTNET_CSV = {"train": "training.csv", "test": "validation.csv"}
# AffectNet's expression codes 0-10 by name (8-10: None, Uncertain, No-Face).
AFFECTNET_CODES = ("Neutral", "Happy", "Sad", "Surprise", "Fear", "Disgust", "Anger", "Contempt", "None",
                   "Uncertain", "No-Face")
LONG_SIZE = (1280, 720)

# In the 170x200 head sprite: MTCNN's face box (x, y, w, h) and the mouth's centre x, y and half width.
SPRITE_FACE_BOX = (34.0, 40.0, 91.0, 115.0)
MOUTH = (83.0, 126.0, 22.0)
TINT = np.array([40.0, 8.0, -40.0])  # added per unit of valence: warm when pleasant, cool when not


@dataclass
class SyntheticSpec:
    """What to write; the defaults take seconds (set long_frames, videos and sizes for training)."""

    layout: str = option("affwild2", "source layout to write", choices=LAYOUTS)
    videos: int = option(3, "ordinary videos with one annotated person", low=1)
    two_person: int = option(1, "videos with two annotated people side by side (layout affwild2 only)", low=0)
    min_frames: int = option(24, "shortest video in frames", low=8)
    max_frames: int = option(40, "longest video in frames", low=8)
    width: int = option(640, "frame width in px (Aff-Wild: 640); even", low=96, high=4096)
    height: int = option(360, "frame height in px (Aff-Wild: 360); even", low=96, high=4096)
    long_frames: int = option(250, "frames of one long 1280x720 video (0: none; 15000: 10 minutes at 25 fps)", low=0)
    images: int = option(16, "AffectNet images, training and validation together (layout affectnet)", low=2)
    fps: float = option(25.0, "frame rate (the variable-rate video mixes it with half and 0.8 of it)", low=5, high=120)
    face_height: float = option(0.35, "face box height / frame height", low=0.1, high=0.5, cli=False)
    seed: int = option(0, "random seed")
    broken: bool = option(True, "leave out the malformed annotation file and the video without annotations",
                          flag="--no-broken")
    categories: bool = option(False, "also write per-frame categories (thesis 003's order, from the VA quadrant) "
                                     "in SRC/categories/")

    def __post_init__(self):
        check(self, "synthetic va option")
        if self.min_frames > self.max_frames:
            raise ValueError(f"synthetic va option min_frames ({self.min_frames}) is above max_frames "
                             f"({self.max_frames})")
        if 0 < self.long_frames < 8:  # room for its faceless stretch
            raise ValueError(f"synthetic va option long_frames must be 0 (no long video) or at least 8, "
                             f"got {self.long_frames}")
        if self.width % 2 or self.height % 2:  # H.264 in 4:2:0 needs even sides
            raise ValueError(f"synthetic va options width and height must be even, got {self.width}x{self.height}")


def category_of(valence, arousal) -> np.ndarray:
    """Index into AFFWILD_CATEGORIES by VA quadrant: Neutral within 0.2 of the origin and when pleasant
    and calm, Happy when pleasant and aroused, Angry when unpleasant and aroused, Sad when unpleasant and calm."""
    v, a = np.asarray(valence, np.float64), np.asarray(arousal, np.float64)
    neutral, happy, sad, angry = (AFFWILD_CATEGORIES.index(name) for name in ("Neutral", "Happy", "Sad", "Angry"))
    quadrant = np.where(v >= 0, np.where(a >= 0, happy, neutral), np.where(a >= 0, angry, sad))
    return np.where(np.hypot(v, a) < 0.2, neutral, quadrant).astype(np.int64)


# Index of each AFFWILD_CATEGORIES class in Aff-Wild2's EXPR order and among AffectNet's codes.
_TO_AFFWILD2 = map_classes(AFFWILD_CATEGORIES, AFFWILD2_EXPRESSIONS, {v: k for k, v in AFFWILD2_ALIASES.items()})
_TO_AFFECTNET = map_classes(AFFWILD_CATEGORIES, AFFECTNET_CODES, {"Angry": "Anger"})


@dataclass(frozen=True)
class Curve:
    """offset + sum of amplitude * sin(2 pi frequency t + phase): smooth, inside [-0.95, 0.95]."""

    offset: float
    amplitude: tuple
    frequency: tuple  # Hz
    phase: tuple

    @classmethod
    def draw(cls, rng) -> Curve:
        offset = float(rng.uniform(-0.45, 0.45))
        amplitude = rng.dirichlet([1.0, 1.0, 1.0]) * (0.95 - abs(offset)) * rng.uniform(0.6, 1.0)
        return cls(offset, tuple(amplitude.tolist()), tuple(rng.uniform(0.05, 0.3, 3).tolist()),
                   tuple(rng.uniform(0, 2 * np.pi, 3).tolist()))

    def __call__(self, t) -> np.ndarray:
        t = np.asarray(t, np.float64)[..., None]
        return self.offset + (np.array(self.amplitude) * np.sin(2 * np.pi * np.array(self.frequency) * t
                                                               + np.array(self.phase))).sum(-1)


@functools.lru_cache(maxsize=1)
def _mouthless_head() -> np.ndarray:
    """The sprite with its own (smiling) mouth painted out, so the drawn mouth alone shows the expression."""
    head, _ = face_sprite()
    hole = np.zeros(head.shape[:2], np.uint8)
    cv2.ellipse(hole, (83, 125), (27, 13), 0, 0, 360, 255, -1)
    return cv2.inpaint(head, hole, 6, cv2.INPAINT_TELEA)


def expressive_head(valence: float, arousal: float, size: tuple[int, int]) -> np.ndarray:
    """The head sprite at `size` (w, h), float32 RGB, showing `valence` (tint, mouth curve) and `arousal`
    (mouth opening); the mouth is drawn at that size, so it stays sharp on large faces."""
    w, h = size
    head = cv2.resize(_mouthless_head(), (w, h), interpolation=cv2.INTER_AREA if h < 200 else cv2.INTER_LINEAR)
    sx, sy = w / 170.0, h / 200.0
    mx, my, half_width = MOUTH
    t = np.linspace(-1, 1, 25)
    centre = my - 7 * valence * (t ** 2 - 0.4)  # corners up when pleasant
    half = (1.5 + 2.75 * (arousal + 1)) * (1 - t ** 2) + 0.8
    x = mx + half_width * t
    outline = np.concatenate([np.stack([x, centre - half], 1), np.stack([x, centre + half], 1)[::-1]]) * [sx, sy]
    cv2.fillPoly(head, [np.round(outline * 16).astype(np.int32)], (90, 30, 35), cv2.LINE_AA, 4)
    return head.astype(np.float32) + valence * TINT


@dataclass
class Person:
    """One face of a video: where it is drawn and what it shows, per frame."""

    person: str  # '' (the only annotated person), 'left' or 'right'
    valence: Curve
    arousal: Curve
    visible: np.ndarray  # bool per frame
    x0: np.ndarray  # sprite's top-left corner and size per frame, in frame px
    y0: np.ndarray
    size: np.ndarray  # (frames, 2): width, height

    def boxes(self) -> list:
        """Face box (x, y, w, h) per frame, None where the face is absent."""
        sx, sy = self.size[:, 0] / 170.0, self.size[:, 1] / 200.0
        bx, by, bw, bh = SPRITE_FACE_BOX
        box = np.stack([self.x0 + bx * sx, self.y0 + by * sy, bw * sx, bh * sy], 1).round(1)
        return [b.tolist() if shown else None for b, shown in zip(box, self.visible)]


def _move(rng, times, band: tuple, height: int, face_height: float) -> tuple:
    """Sprite placement per frame: breathing scale and slow drift, always inside the `band` of x."""
    lo, hi = band
    scale = face_height * height / SPRITE_FACE_BOX[3]
    scale = min(scale, 0.95 * (hi - lo) / 170.0 / 1.06, 0.95 * height / 200.0 / 1.06)
    f, phase = rng.uniform(0.1, 0.35, 3), rng.uniform(0, 2 * np.pi, 3)
    s = scale * (1 + 0.05 * np.sin(2 * np.pi * f[0] * times + phase[0]))
    size = np.stack([np.round(170 * s), np.round(200 * s)], 1).astype(np.int64)
    room_x, room_y = (hi - lo) - size[:, 0], height - size[:, 1]
    x0 = lo + room_x * (0.5 + 0.4 * np.sin(2 * np.pi * f[1] * times + phase[1]))
    y0 = room_y * (0.5 + 0.3 * np.sin(2 * np.pi * f[2] * times + phase[2]))
    return np.round(x0).astype(np.int64), np.round(y0).astype(np.int64), size


def _people(rng, persons: tuple, times, width: int, height: int, face_height: float, gap: tuple | None) -> list:
    """The video's faces; the last person is absent during `gap` (frames [a, b))."""
    n = len(times)
    bands = {"": (0, width), "left": (0, width // 2), "right": (width // 2, width)}
    out = []
    for k, person in enumerate(persons):
        visible = np.ones(n, bool)
        if gap and k == len(persons) - 1:
            visible[gap[0]:gap[1]] = False
        fh = face_height * (0.85 if person else 1.0)
        out.append(Person(person, Curve.draw(rng), Curve.draw(rng), visible,
                          *_move(rng, times, bands[person], height, fh)))
    return out


def _render(rng, width: int, height: int, people: list, times):
    """Yield the RGB frames: a textured background and each visible face with its expression."""
    _, mask = face_sprite()
    bg = background(rng, height, width).astype(np.float32)
    values = [(p.valence(times), p.arousal(times)) for p in people]
    for i in range(len(times)):
        frame = bg.copy()
        for p, (v, a) in zip(people, values):
            if not p.visible[i]:
                continue
            w, h = (int(s) for s in p.size[i])
            sprite = expressive_head(v[i], a[i], (w, h))
            alpha = cv2.resize(mask, (w, h))[..., None]
            x0, y0 = int(p.x0[i]), int(p.y0[i])
            region = frame[y0:y0 + h, x0:x0 + w]
            frame[y0:y0 + h, x0:x0 + w] = alpha * sprite + (1 - alpha) * region
        yield np.clip(frame, 0, 255).astype(np.uint8)


@dataclass
class _Plan:
    """One video to write."""

    name: str
    kind: str  # normal, vfr, two_person, long, bad_annotation, no_annotation
    split: str | None
    frames: int
    width: int
    height: int
    ext: str
    segments: tuple
    persons: tuple = ("",)
    gap: tuple | None = None
    folder: str = ""  # affwild2's batch subfolder


def _plan(spec: SyntheticSpec, rng) -> list[_Plan]:
    """The videos of a video layout: ordinary (the first at a variable rate, then Xvid AVI and H.264
    MP4 in turn), two-person, the long one, and the broken ones; splits where the layout has them."""
    fps = spec.fps
    split_names = {"affwild2": ("train", "val"), "affwild": ("train", "test")}.get(spec.layout)
    kinds = (["vfr"] + ["normal"] * (spec.videos - 1)
             + (["two_person"] * spec.two_person if spec.layout == "affwild2" else [])
             + (["long"] if spec.long_frames else []))
    if spec.broken:  # layout frames has one label file for all videos: a malformed line there would break them all
        kinds += ["no_annotation"] if spec.layout == "frames" else ["bad_annotation", "no_annotation"]
    plans = []
    for k, kind in enumerate(kinds):
        n = spec.long_frames if kind == "long" else int(rng.integers(spec.min_frames, spec.max_frames + 1))
        width, height = LONG_SIZE if kind == "long" else (spec.width, spec.height)
        segments = ((n // 3, fps), (n // 3, fps / 2), (n - 2 * (n // 3), fps * 0.8)) if kind == "vfr" else ((n, fps),)
        ext = ".avi" if kind in ("normal", "bad_annotation") and k % 2 else ".mp4"
        split = None
        if split_names:  # every third ordinary video, from the second on, in the second split
            split = split_names[k % 3 == 1 and kind in ("vfr", "normal", "two_person")]
            if kind == "no_annotation" and spec.layout == "affwild2":  # its folder says no split
                split = None
        gap = None
        if k % 2 == 0 or kind == "two_person":  # face absent for a while (in affwild2: not annotated there)
            length = int(rng.integers(3, max(4, n // 5)))
            start = int(rng.integers(2, n - length - 1))
            gap = (start, start + length)
        plans.append(_Plan(f"{k + 1}-{fps:g}-{width}x{height}", kind, split, n, width, height, ext, segments,
                           ("left", "right") if kind == "two_person" else ("",), gap, f"batch{k % 2 + 1}"))
    return plans


def _num(x: float, decimals: int = 4) -> str:
    """`x` with at most `decimals` decimals, as the tools write it ("0.1235", "-0.5", "1.0"; never "-0.0")."""
    text = f"{round(float(x), decimals) + 0.0:.{decimals}f}".rstrip("0")
    return text + "0" if text.endswith(".") else text


def _write_lines(path: str, lines: list[str]) -> None:
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w", newline="\n") as f:
        f.write("\n".join(lines) + "\n")


def _timed_log(rng, curve: Curve, end: float, separator: str) -> tuple[list[str], list[float]]:
    """A joystick log: `time value` from slightly after 0 to somewhat before `end`, ~20 Hz, +-8-40 ms jitter."""
    t, stop, times = min(rng.uniform(0.02, 0.12), 0.1 * end), end - min(rng.uniform(0.05, 0.2), 0.1 * end), []
    while t < stop:
        times.append(round(t, 3))
        t += 0.05 + float(rng.choice([-1, 1]) * rng.uniform(0.008, 0.040))
    return [f"{time:.3f}{separator}{_num(v)}" for time, v in zip(times, curve(times))], times


def _break_line(lines: list[str], line: int, text: str) -> list[str]:
    """`lines` with 1-based `line` replaced."""
    return lines[:line - 1] + [text] + lines[line:]


class _Writer:
    """Writes one layout's files under `out`; `broken` lists those broken on purpose, and why."""

    def __init__(self, out: str, spec: SyntheticSpec):
        self.out, self.spec = out, spec
        self.broken: list[dict] = []

    def rel(self, path: str) -> str:
        return os.path.relpath(path, self.out)

    def video(self, plan: _Plan, rng, people: list, times) -> str:
        """The video file (or the frame folder of layout frames); its path under out."""
        frames = _render(rng, plan.width, plan.height, people, times)
        if self.spec.layout == "frames":
            folder = os.path.join(self.out, plan.name)
            os.makedirs(folder, exist_ok=True)
            for i, frame in enumerate(frames):
                cv2.imwrite(os.path.join(folder, f"{i:05d}.jpg"), frame[..., ::-1])
            return self.rel(folder)
        sub = {"affwild2": plan.folder, "affwild": plan.split or ""}.get(self.spec.layout, "")
        path = os.path.join(self.out, "videos", sub, plan.name + plan.ext)
        os.makedirs(os.path.dirname(path), exist_ok=True)
        codec = "libxvid" if plan.ext == ".avi" else "libx264"
        write_video(path, frames, plan.width, plan.height, plan.segments, codec)
        return self.rel(path)

    def annotations(self, plan: _Plan, track: str, valence, arousal, annotated, times, rng,
                    person: Person) -> list[str]:
        """Write one person's annotation files in the layout's format; their paths under out."""
        layout, bad = self.spec.layout, plan.kind == "bad_annotation"
        line = 2 + plan.frames // 2  # the broken line, 1-based; past any header
        if layout == "affwild2":
            folder = AFFWILD2_SETS[plan.split]
            va = os.path.join(self.out, "Annotations", "VA_Estimation_Challenge", folder, track + ".txt")
            lines = [",".join(AFFWILD2_VA_HEADER)] + [f"{_num(v)},{_num(a)}" if ok else "-5,-5"
                                                      for v, a, ok in zip(valence, arousal, annotated)]
            if bad:
                lines = _break_line(lines, line, f"1.7,{_num(arousal[line - 2])}")
                self.broken.append({"file": self.rel(va), "line": line, "reason": "valence 1.7 is outside [-1, 1]"})
            _write_lines(va, lines)
            expr = os.path.join(self.out, "Annotations", "EXPR_Classification_Challenge", folder, track + ".txt")
            codes = np.where(annotated, _TO_AFFWILD2[category_of(valence, arousal)], -1)
            _write_lines(expr, [",".join(AFFWILD2_EXPRESSIONS)] + [str(c) for c in codes])
            return [self.rel(va), self.rel(expr)]
        if layout == "affwild":
            folder = os.path.join(self.out, "annotations", plan.split)
            paths = [os.path.join(folder, name, track + ".txt") for name in ("valence", "arousal")]
            for path, values in zip(paths, (valence, arousal)):
                _write_lines(path, [_num(v) for v in values])
            if bad:
                _write_lines(paths[1], _break_line([_num(a) for a in arousal], line, "NaN"))
                self.broken.append({"file": self.rel(paths[1]), "line": line,
                                    "reason": "arousal 'NaN' is not a number"})
            return [self.rel(p) for p in paths]
        # timed: one log per dimension, each with its own timestamps
        end = times[-1] + (times[-1] - times[-2])
        paths = []
        for name, separator in (("valence", " "), ("arousal", ",")):
            path = os.path.join(self.out, "annotations", name, track + ".txt")
            lines, stamps = _timed_log(rng, getattr(person, name), end, separator)
            if bad and name == "valence":
                line = len(lines) // 2
                earlier = f"{stamps[line - 2] - 0.01:.3f} {_num(person.valence(stamps[line - 1]))}"
                lines = _break_line(lines, line, earlier)
                self.broken.append({"file": self.rel(path), "line": line,
                                    "reason": "time goes back before the previous line's"})
            _write_lines(path, lines)
            paths.append(self.rel(path))
        return paths


def _write_videos(out: str, spec: SyntheticSpec, writer: _Writer) -> list[dict]:
    rng = np.random.default_rng(spec.seed)
    videos, labels = [], []
    for k, plan in enumerate(_plan(spec, rng)):
        vrng = np.random.default_rng([spec.seed, k])
        times = segment_times(plan.segments)
        people = _people(vrng, plan.persons, times, plan.width, plan.height, spec.face_height, plan.gap)
        path = writer.video(plan, vrng, people, times)
        persons = []
        for p in people:
            track = f"{plan.name}_{p.person}" if p.person else plan.name
            valence = np.array([float(_num(v)) for v in p.valence(times)])  # exactly the values written
            arousal = np.array([float(_num(a)) for a in p.arousal(times)])
            # Aff-Wild2 leaves frames without the face unannotated (-5); the other formats label every frame.
            annotated = p.visible if spec.layout == "affwild2" else np.ones(plan.frames, bool)
            files = []
            if plan.kind != "no_annotation":
                if spec.layout == "frames":
                    labels += [f"{plan.name}/{i:05d}.jpg,{_num(v)},{_num(a)}"
                               for i, (v, a) in enumerate(zip(valence, arousal))]
                    files = ["labels.csv"]
                else:
                    files = writer.annotations(plan, track, valence, arousal, annotated, times, vrng, p)
                category = np.where(annotated, category_of(valence, arousal), -1)
                if spec.categories:
                    path_c = os.path.join(out, "categories", track + ".txt")
                    _write_lines(path_c, [str(c) for c in category])
                    files.append(writer.rel(path_c))
            else:
                category = np.full(plan.frames, -1)
            persons.append({"person": p.person, "track": track, "files": files,
                            "valence": [float(v) if ok else None for v, ok in zip(valence, annotated)],
                            "arousal": [float(a) if ok else None for a, ok in zip(arousal, annotated)],
                            "category": category.tolist(), "box": p.boxes(),
                            "curves": {"valence": asdict(p.valence), "arousal": asdict(p.arousal)}})
        if plan.kind == "no_annotation":
            writer.broken.append({"file": path, "line": None, "reason": "video without any annotation file"})
        videos.append({"name": plan.name, "kind": plan.kind, "split": plan.split, "path": path,
                       "width": plan.width, "height": plan.height, "fps": spec.fps,
                       "segments": [list(s) for s in plan.segments], "frames": plan.frames,
                       "frame_times": times.tolist(), "persons": persons})
    if spec.layout == "frames":
        _write_lines(os.path.join(out, "labels.csv"), labels)
    return videos


def _landmarks(rng, box) -> np.ndarray:
    """68 points (x, y) of a generic face shape in `box`, in the iBUG order AffectNet lists them."""
    def ellipse(cx, cy, rx, ry, angles):
        return np.stack([cx + rx * np.cos(angles), cy - ry * np.sin(angles)], 1)

    brow = np.stack([np.linspace(0.12, 0.42, 5), 0.28 - 0.05 * np.sin(np.linspace(0, np.pi, 5))], 1)
    unit = np.concatenate([
        ellipse(0.5, 0.35, 0.48, -0.62, np.linspace(np.pi, 0, 17)),  # jaw, ear to ear under the chin
        brow, (brow * [-1, 1] + [1, 0])[::-1],
        np.stack([np.full(4, 0.5), np.linspace(0.38, 0.6, 4)], 1),  # nose bridge
        np.stack([np.linspace(0.4, 0.6, 5), 0.66 + 0.02 * np.sin(np.linspace(0, np.pi, 5))], 1),
        ellipse(0.3, 0.4, 0.08, 0.035, np.pi - np.linspace(0, 2 * np.pi, 6, endpoint=False)),
        ellipse(0.7, 0.4, 0.08, 0.035, np.pi - np.linspace(0, 2 * np.pi, 6, endpoint=False)),
        ellipse(0.5, 0.8, 0.18, 0.06, np.pi - np.linspace(0, 2 * np.pi, 12, endpoint=False)),
        ellipse(0.5, 0.8, 0.12, 0.03, np.pi - np.linspace(0, 2 * np.pi, 8, endpoint=False)),
    ])
    x, y, w, h = box
    return unit * [w, h] + [x, y] + rng.normal(0, 0.01, unit.shape) * [w, h]


def _write_affectnet(out: str, spec: SyntheticSpec, writer: _Writer) -> list[dict]:
    """Still images with AffectNet's CSVs: every 4th image in validation, every 7th without VA (-2)."""
    rng = np.random.default_rng(spec.seed)
    _, mask = face_sprite()
    rows = {split: [] for split in AFFECTNET_CSV}
    images = []
    extra = ["missing_image", "no_row"] if spec.broken else []
    for k, kind in enumerate(["normal"] * spec.images + extra):
        split = "test" if k % 4 == 3 else "train"
        path = f"{rng.integers(1, 1000)}/{rng.bytes(28).hex()}.jpg"
        ih = int(rng.integers(spec.height // 2, spec.height + 1))
        iw = int(ih * rng.uniform(0.8, 1.25))
        v, a = rng.uniform(-0.95, 0.95, 2).round(6)
        scale = min(rng.uniform(0.4, 0.55) * ih / SPRITE_FACE_BOX[3], 0.95 * ih / 200, 0.95 * iw / 170)
        w, h = round(170 * scale), round(200 * scale)
        x0, y0 = int(rng.integers(0, iw - w + 1)), int(rng.integers(0, ih - h + 1))
        image = background(rng, ih, iw).astype(np.float32)
        sprite = expressive_head(v, a, (w, h))
        alpha = cv2.resize(mask, (w, h))[..., None]
        image[y0:y0 + h, x0:x0 + w] = alpha * sprite + (1 - alpha) * image[y0:y0 + h, x0:x0 + w]
        bx, by, bw, bh = SPRITE_FACE_BOX
        box = [round(x0 + bx * w / 170), round(y0 + by * h / 200), round(bw * w / 170), round(bh * h / 200)]
        if k % 7 == 6:  # AffectNet's Uncertain and No-Face images have no valence/arousal
            expression, v, a = int(rng.choice([9, 10])), None, None
        else:
            expression = int(_TO_AFFECTNET[category_of(v, a)])
        if kind != "missing_image":
            file = os.path.join(out, "Manually_Annotated_Images", path)
            os.makedirs(os.path.dirname(file), exist_ok=True)
            cv2.imwrite(file, np.clip(image, 0, 255).astype(np.uint8)[..., ::-1])
        if kind != "no_row":
            landmarks = ";".join(f"{c:.2f}" for c in _landmarks(rng, box).ravel())
            rows[split].append(",".join([path, *map(str, box), landmarks, str(expression),
                                         "-2" if v is None else _num(v, 6), "-2" if a is None else _num(a, 6)]))
        if kind != "normal":
            reason = "row whose image file is missing" if kind == "missing_image" else "image without a row in any CSV"
            writer.broken.append({"file": os.path.join("Manually_Annotated_Images", path), "line": None,
                                  "reason": reason})
        images.append({"path": path, "kind": kind, "split": None if kind == "no_row" else split,
                       "size": [iw, ih], "box": box, "expression": expression,
                       "valence": None if v is None else float(v), "arousal": None if a is None else float(a)})
    for split, name in AFFECTNET_CSV.items():
        _write_lines(os.path.join(out, name), [",".join(AFFECTNET_HEADER)] + rows[split])
    return images


def write_va(out, spec: SyntheticSpec | None = None) -> dict:
    """Write a synthetic VA source in `spec.layout` under `out`; return (and save) its ground truth."""
    spec = spec or SyntheticSpec()
    out = str(out)
    os.makedirs(out, exist_ok=True)
    writer = _Writer(out, spec)
    truth = {"dataset": "va", "layout": spec.layout, "spec": asdict(spec), "categories": list(AFFWILD_CATEGORIES)}
    if spec.layout == "affectnet":
        truth["images"] = _write_affectnet(out, spec, writer)
    else:
        truth["videos"] = _write_videos(out, spec, writer)
    truth["broken"] = writer.broken
    with open(os.path.join(out, TRUTH_FILE), "w") as f:
        json.dump(truth, f)
    return truth


def synth(out, spec: SyntheticSpec) -> str:
    """Write the source; one line saying what was written."""
    truth = write_va(out, spec)
    items = truth.get("videos") or truth["images"]
    noun = ("image" if spec.layout == "affectnet" else "video") + ("" if len(items) == 1 else "s")
    return (f"wrote a synthetic {spec.layout} VA source: {len(items)} {noun}, {len(truth['broken'])} broken on "
            f"purpose, under {out} (ground truth: {TRUTH_FILE})")
