"""Synthetic BU-4DFE in the layouts researchers hold: the thesis 002 test and demo data.

`<subject>_<emotion>_tex.avi` texture videos (640x480, 25 fps, MPEG-4 Part 2 in AVI) named as
thesis 002 names them, or per-subject, per-expression folders of frame images
(`F001/Angry/000.jpg`). Each video shows the real face of scikit-image's astronaut photo, moving
little (a lab recording), whose expression rises from neutral to an apex and falls back
(onset-apex-offset): a class-dependent deformation of brows, eyes and mouth plus a faint class
tint, both scaled by the expression curve. Beside each video, the CSV that OpenFace 2.x
`FeatureExtraction` writes, with the class's FACS action units following the same curve (and
random blinks on AU45, which trimming must ignore).

On purpose (`broken=True`): a subject lacking one emotion (F016 lacks happiness, as in the real
release), a video whose AU peak lies in its last 20 frames (the anomaly rule), a corrupt file, a
video whose face leaves the frame for some frames (tracker loss) and a video without a CSV.
Everything needed to check a preparation is in `synthetic_truth.json`.
"""
from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass

import cv2
import numpy as np

from fer_keras.classes import BU4DFE, OPENFACE_AU_INTENSITY

from data_prep.datasets.bu4dfe import openface
from data_prep.options import check, option
from data_prep.synthetic_render import SPRITE_FACE_PX, TRUTH_FILE, background, class_colour, face_sprite, write_video

FPS = 25.0
# The expression's action units at its apex (FACS / EMFACS prototypes), intensity 0-5.
EXPRESSION_AUS = {
    "angry": {4: 3.5, 5: 2.0, 7: 3.0, 23: 2.5},
    "disgust": {9: 3.5, 10: 3.0, 15: 1.5, 17: 2.0},
    "fear": {1: 3.0, 2: 2.0, 4: 2.0, 5: 3.0, 20: 3.0, 26: 2.0},
    "happy": {6: 3.0, 12: 4.0, 25: 2.0},
    "sad": {1: 3.0, 4: 2.5, 15: 3.0, 17: 2.0},
    "surprise": {1: 3.5, 2: 3.5, 5: 2.5, 25: 3.0, 26: 4.0},
}
# Where each expression moves the face (head-sprite pixels): bumps (x, y, radius, dx, dy) at the apex.
EXPRESSION_BUMPS = {
    "angry": [(65, 75, 12, 3, 4), (105, 75, 12, -3, 4), (85, 137, 10, 0, -2)],
    "disgust": [(85, 122, 12, 0, -4), (85, 140, 10, 0, -2), (72, 95, 10, 0, 2), (98, 95, 10, 0, 2)],
    "fear": [(65, 75, 12, 0, -4), (105, 75, 12, 0, -4), (70, 137, 9, -3, 1), (100, 137, 9, 3, 1)],
    "happy": [(70, 137, 9, -3, -3), (100, 137, 9, 3, -3), (68, 115, 12, 0, -2), (102, 115, 12, 0, -2)],
    "sad": [(78, 73, 10, 0, -3), (92, 73, 10, 0, -3), (70, 137, 9, 0, 3), (100, 137, 9, 0, 3)],
    "surprise": [(65, 75, 14, 0, -5), (105, 75, 14, 0, -5), (85, 147, 16, 0, 6)],
}
FOLDER_NAMES = {e: e.capitalize() for e in BU4DFE}  # frame-image layout: F001/Angry/000.jpg
# The kinds of video in the truth: "normal", "anomaly", "tracker_loss", "no_csv", "corrupt".


@dataclass
class Bu4dfeSpec:
    """Size and content of a synthetic BU-4DFE set; the defaults write in about a minute.

    The default subjects cover the thesis's test set (F001, F002, M001) and each of its five
    training folds (Fig. 3.6), plus F016, which lacks happiness; `long_video` makes one video
    longer than the thesis's T = 100 after trimming.
    """

    subjects: tuple = option(("F001", "F002", "M001", "F011", "F016", "F028", "F044", "M012", "M028"),
                             "comma-separated subject ids (default: test subjects, one per thesis fold, and F016)",
                             parse=lambda text: tuple(s.strip() for s in text.split(",") if s.strip()))
    min_frames: int = option(48, "shortest video in frames (at least 40)")
    max_frames: int = option(64, "longest video in frames")
    long_video: int = option(240, "frames of the first subject's happy video, over T=100 after trimming (0: none)",
                             low=0)
    width: int = option(640, "frame width in px (BU-4DFE's)", cli=False)
    height: int = option(480, "frame height in px (BU-4DFE's)", cli=False)
    face_height: float = option(0.45, "face box height / frame height", cli=False)
    layout: str = option("video", "'video': <subject>_<emotion>_tex.avi; 'frames': <subject>/<Emotion>/000.jpg",
                         choices=("video", "frames"))
    seed: int = option(0, "random seed")
    broken: bool = option(True, "leave out the videos broken on purpose", flag="--no-broken")

    def __post_init__(self):
        check(self, "synthetic bu4dfe option")
        self.subjects = tuple(self.subjects)
        if not 40 <= self.min_frames <= self.max_frames:  # shorter, the apex would fall in the last 20 frames
            raise ValueError(f"frames must satisfy 40 <= min_frames <= max_frames, got {self.min_frames}, {self.max_frames}")
        if self.broken and len(self.subjects) < 2:
            raise ValueError("broken=True needs at least two subjects (the special videos are spread over them)")

    def special(self) -> dict:
        """(subject, emotion) -> kind for the videos broken on purpose."""
        if not self.broken:
            return {}
        first, last = self.subjects[0], self.subjects[-1]
        return {(first, "surprise"): "anomaly", (first, "fear"): "tracker_loss",
                (last, "disgust"): "no_csv", (last, "sad"): "corrupt"}

    def missing(self) -> set:
        """(subject, emotion) pairs left out: F016 has no happiness video, as in BU-4DFE."""
        return {("F016", "happy")} if self.broken and "F016" in self.subjects else set()


def expression_curve(n: int, rng, anomaly: bool = False) -> np.ndarray:
    """Expression intensity per frame in [0, 1]: neutral, onset, apex, offset, neutral.

    An anomaly (as the thesis saw: many subjects end with a smile) adds a stronger peak in the
    last frames, so the video's maximum falls in its last 20 frames.
    """
    t = np.arange(n) / n
    lead, rise, hold, fall = rng.uniform(0.12, 0.22), rng.uniform(0.12, 0.18), rng.uniform(0.18, 0.28), 0.15
    up = np.clip((t - lead) / rise, 0, 1)
    down = np.clip((t - lead - rise - hold) / fall, 0, 1)
    fading = 1 - 0.15 * np.clip((t - lead - rise) / hold, 0, 1)  # the apex is its first frames, not a tie
    curve = up * up * (3 - 2 * up) * fading * (1 - down * down * (3 - 2 * down))
    if anomaly:
        tail = np.clip((np.arange(n) - (n - 12)) / 6, 0, 1)
        curve = np.maximum(curve, 1.3 * tail * tail * (3 - 2 * tail))
    return curve


def au_intensities(emotion: str, curve: np.ndarray, rng, anomaly: bool = False) -> np.ndarray:
    """OpenFace-style AU intensities (frames, 17) following `curve`; AU45 carries random blinks."""
    n = len(curve)
    out = np.abs(rng.normal(0, 0.06, (n, len(OPENFACE_AU_INTENSITY))))
    col = {au: i for i, au in enumerate(OPENFACE_AU_INTENSITY)}
    for au, apex in EXPRESSION_AUS[emotion].items():
        out[:, col[au]] += apex * curve
    if anomaly:  # the final smile
        tail = np.clip((np.arange(n) - (n - 12)) / 6, 0, 1)
        out[:, col[6]] += 3.5 * tail
        out[:, col[12]] += 4.5 * tail
    for start in rng.choice(n - 3, size=max(1, n // 30), replace=False):  # blinks: 3 frames of AU45
        out[start:start + 3, col[45]] += rng.uniform(2.5, 4.5)
    return np.round(np.clip(out, 0, 5), 2)


def _warp(head, mask, emotion: str, amount: float):
    """The head sprite with `emotion`'s deformation at `amount` (0 neutral .. 1 apex)."""
    if amount <= 0:
        return head, mask
    h, w = head.shape[:2]
    ys, xs = np.mgrid[0:h, 0:w].astype(np.float32)
    map_x, map_y = xs.copy(), ys.copy()
    for x, y, r, dx, dy in EXPRESSION_BUMPS[emotion]:
        weight = np.exp(-((xs - x) ** 2 + (ys - y) ** 2) / (2.0 * r * r)) * amount
        map_x -= weight * dx
        map_y -= weight * dy
    return (cv2.remap(head, map_x, map_y, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE),
            cv2.remap(mask, map_x, map_y, cv2.INTER_LINEAR)[..., None])


def render_video(rng, spec: Bu4dfeSpec, emotion: str, curve: np.ndarray, leave=None):
    """Yield (RGB frame, face box (x, y, w, h) in the frame, visible fraction of that box).

    `leave` = (first, last) frames during which the head slides out of the frame to the right
    and back, fully outside in the middle of that span (tracker loss).
    """
    head, mask = face_sprite()
    label = BU4DFE.index(emotion)
    tint = class_colour(label, len(BU4DFE))
    bg = background(rng, spec.height, spec.width)
    base = spec.face_height * spec.height / SPRITE_FACE_PX
    phase = rng.uniform(0, 2 * np.pi, 3)
    for i, amount in enumerate(curve):
        scale = base * (1 + 0.02 * np.sin(0.07 * i + phase[0]))  # a lab recording: the head moves little
        sprite, alpha = _warp(head, mask, emotion, float(amount))
        sprite = cv2.resize(sprite, None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA).astype(np.float32)
        alpha = cv2.resize(alpha, (sprite.shape[1], sprite.shape[0]))[..., None]
        sprite = sprite * (1 - 0.25 * amount) + 0.25 * amount * tint
        sh, sw = sprite.shape[:2]
        x0 = (spec.width - sw) / 2 + 4 * np.sin(0.11 * i + phase[1])
        y0 = (spec.height - sh) / 2 + 3 * np.sin(0.09 * i + phase[2])
        if leave is not None and leave[0] <= i <= leave[1]:
            x0 += (spec.width / 2 + sw) * np.sin(np.pi * (i - leave[0]) / (leave[1] - leave[0]))
        x0, y0 = int(round(x0)), int(round(y0))
        frame = bg.copy()
        fx0, fy0, fx1, fy1 = max(x0, 0), max(y0, 0), min(x0 + sw, spec.width), min(y0 + sh, spec.height)
        if fx1 > fx0 and fy1 > fy0:
            s = (slice(fy0 - y0, fy1 - y0), slice(fx0 - x0, fx1 - x0))
            region = frame[fy0:fy1, fx0:fx1]
            frame[fy0:fy1, fx0:fx1] = alpha[s] * sprite[s] + (1 - alpha[s]) * region
        # the face box inside the sprite: x 42-125, y 44-151 of the 170x200 head
        box = (x0 + 42 * scale, y0 + 44 * scale, 83 * scale, 107 * scale)
        seen = max(0.0, min(box[0] + box[2], spec.width) - max(box[0], 0)) / box[2]
        yield np.clip(frame, 0, 255).astype(np.uint8), [round(float(v), 1) for v in box], round(seen, 3)


def video_name(subject: str, emotion: str) -> str:
    return f"{subject}_{emotion}_tex"


def write_bu4dfe(out, spec: Bu4dfeSpec | None = None) -> dict:
    """Write a synthetic BU-4DFE layout under `out`; return (and save) its ground truth."""
    spec = spec or Bu4dfeSpec()
    rng = np.random.default_rng(spec.seed)
    os.makedirs(out, exist_ok=True)
    special, missing = spec.special(), spec.missing()
    videos = []
    for subject in spec.subjects:
        for emotion in BU4DFE:
            if (subject, emotion) in missing:
                continue
            kind = special.get((subject, emotion), "normal")
            long = spec.long_video and subject == spec.subjects[0] and emotion == "happy"
            n = spec.long_video if long else int(rng.integers(spec.min_frames, spec.max_frames + 1))
            videos.append(_write_one(out, spec, rng, subject, emotion, kind, n))
    truth = {"dataset": "bu4dfe", "classes": list(BU4DFE), "spec": asdict(spec),
             "missing": sorted(f"{s}_{e}" for s, e in missing), "videos": videos}
    with open(os.path.join(out, TRUTH_FILE), "w") as f:
        json.dump(truth, f, indent=1)
    return truth


def synth(out, spec: Bu4dfeSpec) -> str:
    """Write the set; one line saying what was written (and what is broken on purpose)."""
    truth = write_bu4dfe(out, spec)
    kinds = sorted({v["kind"] for v in truth["videos"]} - {"normal"})
    missing = f", missing {', '.join(truth['missing'])}" if truth["missing"] else ""
    return (f"wrote {len(truth['videos'])} synthetic BU-4DFE sequences ({spec.layout} layout, {spec.width}x"
            f"{spec.height}, 25 fps) of {len(spec.subjects)} subjects under {out}; on purpose: "
            f"{', '.join(kinds) or 'nothing'}{missing}")


def _write_one(out, spec, rng, subject, emotion, kind, n) -> dict:
    name = video_name(subject, emotion)
    if spec.layout == "video":
        path, csv_path = os.path.join(out, name + ".avi"), os.path.join(out, name + ".csv")
    else:
        path = os.path.join(out, subject, FOLDER_NAMES[emotion])
        csv_path = os.path.join(out, subject, FOLDER_NAMES[emotion] + ".csv")
    entry = {"id": name, "subject": subject, "emotion": emotion, "label": BU4DFE.index(emotion), "kind": kind,
             "path": os.path.relpath(path, out), "frames": 0, "csv": None}
    if kind == "corrupt":
        garbage = b"RIFF" + rng.bytes(4096)
        if spec.layout == "video":
            with open(path, "wb") as f:
                f.write(garbage)
        else:
            os.makedirs(path, exist_ok=True)
            for i in range(3):
                with open(os.path.join(path, f"{i:03d}.jpg"), "wb") as f:
                    f.write(garbage)
        return entry
    curve = expression_curve(n, rng, anomaly=kind == "anomaly")
    leave = (int(n * 0.35), int(n * 0.35) + 16) if kind == "tracker_loss" else None
    rendered = list(render_video(rng, spec, emotion, curve, leave))
    frames = [f for f, _, _ in rendered]
    seen = np.array([s for _, _, s in rendered])
    if spec.layout == "video":
        write_video(path, frames, spec.width, spec.height, ((n, FPS),), "libxvid")
    else:
        os.makedirs(path, exist_ok=True)
        for i, frame in enumerate(frames):
            cv2.imwrite(os.path.join(path, f"{i:03d}.jpg"), cv2.cvtColor(frame, cv2.COLOR_RGB2BGR),
                        [cv2.IMWRITE_JPEG_QUALITY, 95])
    intensities = au_intensities(emotion, curve, rng, anomaly=kind == "anomaly")
    success = seen >= 0.6  # OpenFace loses a face that is mostly outside the frame
    intensities[~success] = 0.0
    if kind != "no_csv":
        openface.write_csv(csv_path, intensities, success=success, fps=FPS, rng=rng)
        entry["csv"] = os.path.relpath(csv_path, out)
    entry.update(frames=n, curve=np.round(curve, 4).tolist(), au=intensities.tolist(),
                 face_boxes=[b for _, b, _ in rendered], face_visible=seen.tolist())
    return entry
