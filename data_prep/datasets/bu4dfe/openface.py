"""The per-video CSV that OpenFace 2.x ``FeatureExtraction`` writes: read it, and write it for tests.

Thesis 002 trims neutral frames with OpenFace's AU intensities (see `data_prep.datasets.bu4dfe.trimming`), so the
toolkit reads the tool's own output rather than a format of its own. The layout follows OpenFace
2.2.0's RecorderCSV: 714 columns, names and values separated by ", " (some forks write "," only;
both are read). `write_csv` writes that exact layout with plausible geometry, so tests and
synthetic datasets exercise the same reader real files go through.
"""
from __future__ import annotations

import csv
import math
import os
import re
from dataclasses import dataclass

import numpy as np

from fer_keras.classes import OPENFACE_AU_INTENSITY, OPENFACE_AU_PRESENCE

from data_prep.errors import BadInput

REASON = "bad_openface_csv"
_AU_R = re.compile(r"^AU(\d+)_r$")
_NEEDED = ("frame", "timestamp", "confidence", "success")


def _names(prefix: str, count: int) -> list[str]:
    return [f"{prefix}{i}" for i in range(count)]


# (column names, printf format) in file order; the formats are RecorderCSV's fixed precisions.
_GROUPS = (
    (["frame", "face_id"], "%d"),
    (["timestamp"], "%.3f"),
    (["confidence"], "%.2f"),
    (["success"], "%d"),
    ([f"gaze_{e}_{a}" for e in (0, 1) for a in "xyz"], "%.6f"),
    (["gaze_angle_x", "gaze_angle_y"], "%.3f"),
    ([n for a in "xyXYZ" for n in _names(f"eye_lmk_{a}_", 56)], "%.1f"),
    (["pose_Tx", "pose_Ty", "pose_Tz"], "%.1f"),
    (["pose_Rx", "pose_Ry", "pose_Rz"], "%.3f"),
    ([n for a in "xyXYZ" for n in _names(f"{a}_", 68)], "%.1f"),
    (["p_scale", "p_rx", "p_ry", "p_rz", "p_tx", "p_ty"] + _names("p_", 34), "%.3f"),
    ([f"AU{au:02d}_r" for au in OPENFACE_AU_INTENSITY], "%.2f"),
    ([f"AU{au:02d}_c" for au in OPENFACE_AU_PRESENCE], "%.1f"),
)
COLUMNS = tuple(name for names, _ in _GROUPS for name in names)
_FORMATS = [fmt for names, fmt in _GROUPS for _ in names]
_INDEX = {name: i for i, name in enumerate(COLUMNS)}

# Synthetic camera: 640x480 image, focal length 500 px, face 150 mm wide about 500 mm away.
_IMAGE_CENTRE = (320.0, 240.0)
_FOCAL = 500.0
_FACE_MM = 150.0
_DISTANCE_MM = 500.0


@dataclass
class OpenFaceTrack:
    """What the toolkit needs from one OpenFace CSV: per-frame timing, tracking success and AU intensities."""

    frame: np.ndarray  # int64, 1-based as OpenFace numbers frames
    timestamp: np.ndarray  # float64 seconds
    confidence: np.ndarray  # float64, 0..1
    success: np.ndarray  # bool: OpenFace found and tracked the face
    intensities: np.ndarray  # float64 (frames, len(au)), AUxx_r values as written (float32 would move
    # scores that sit exactly at the trimming threshold to one side of it)
    au: tuple[int, ...]  # AU numbers of the intensity columns, in file order


def _ellipse(cx, cy, a, b, angles):
    return np.stack([cx + a * np.cos(angles), cy - b * np.sin(angles)], axis=1)


def _mean_face() -> tuple[np.ndarray, np.ndarray]:
    """A rough 68-point (iBUG order) face and 56-point eye layout in mm, so synthetic landmarks look like a face."""
    arc = np.linspace(0.0, np.pi, 17)
    jaw = np.stack([-0.5 * np.cos(arc), 0.05 + 0.45 * np.sin(arc)], axis=1)
    brow_x = np.linspace(-0.4, -0.1, 5)
    brow_r = np.stack([brow_x, -0.25 - 0.05 * np.sin(np.linspace(0.0, np.pi, 5))], axis=1)
    brow_l = brow_r[::-1] * [-1.0, 1.0]
    bridge = np.stack([np.zeros(4), np.linspace(-0.15, 0.1, 4)], axis=1)
    nostrils = np.stack([np.linspace(-0.1, 0.1, 5), [0.15, 0.16, 0.17, 0.16, 0.15]], axis=1)
    lid = np.pi - np.arange(6) * np.pi / 3
    eyes = [_ellipse(cx, -0.1, 0.1, 0.04, lid) for cx in (-0.22, 0.22)]
    outer = _ellipse(0.0, 0.3, 0.2, 0.08, np.pi - np.arange(12) * np.pi / 6)
    inner = _ellipse(0.0, 0.3, 0.12, 0.03, np.pi - np.arange(8) * np.pi / 4)
    face = np.concatenate([jaw, brow_r, brow_l, bridge, nostrils, *eyes, outer, inner])
    # Eye model: per eye 20 eyelid points and 8 iris points (positions only need to be plausible).
    eye = [np.concatenate([_ellipse(cx, -0.1, 0.1, 0.045, np.linspace(0, 2 * np.pi, 20, endpoint=False)),
                           _ellipse(cx, -0.1, 0.035, 0.035, np.linspace(0, 2 * np.pi, 8, endpoint=False))])
           for cx in (-0.22, 0.22)]
    eye = np.concatenate(eye)

    def lift(points, nose_forward):
        depth = 0.3 * points[:, 0] ** 2 - nose_forward
        return np.concatenate([points, depth[:, None]], axis=1) * _FACE_MM

    nose = np.zeros(68)
    nose[27:36] = [0.02, 0.05, 0.08, 0.12, 0.06, 0.07, 0.08, 0.07, 0.06]
    return lift(face, nose), lift(eye, np.full(56, 0.02))


def _rotations(rx, ry, rz) -> np.ndarray:
    """(frames, 3, 3) rotation matrices R = Rx Ry Rz, the XYZ Euler order OpenFace's pose angles use."""
    cx, sx, cy, sy, cz, sz = np.cos(rx), np.sin(rx), np.cos(ry), np.sin(ry), np.cos(rz), np.sin(rz)
    one, zero = np.ones_like(rx), np.zeros_like(rx)
    mx = np.stack([one, zero, zero, zero, cx, -sx, zero, sx, cx], -1).reshape(-1, 3, 3)
    my = np.stack([cy, zero, sy, zero, one, zero, -sy, zero, cy], -1).reshape(-1, 3, 3)
    mz = np.stack([cz, -sz, zero, sz, cz, zero, zero, zero, one], -1).reshape(-1, 3, 3)
    return mx @ my @ mz


def _project(points: np.ndarray) -> np.ndarray:
    """Pinhole projection of (frames, k, 3) camera-space mm to (frames, k, 2) pixels."""
    return points[..., :2] * (_FOCAL / points[..., 2:3]) + _IMAGE_CENTRE


def write_csv(path, intensities, success=None, presence=None, fps: float = 25.0, confidence=None, rng=None):
    """Write `intensities` (frames, 17; OPENFACE_AU_INTENSITY order) as FeatureExtraction would.

    Presence defaults to intensity >= 1 (AU28, which has no intensity, to 0). Gaze, pose, landmarks
    and model parameters are a face near the image centre with small noise from `rng`; every
    column after `success` is 0 on frames whose `success` is False (real files have AU values 0 there).
    """
    if not fps > 0:
        raise ValueError(f"fps must be > 0, got {fps!r}")
    values = np.clip(np.asarray(intensities, dtype=np.float64), 0.0, 5.0)
    if values.ndim != 2 or values.shape[1] != len(OPENFACE_AU_INTENSITY):
        raise ValueError(f"intensities must be (frames, {len(OPENFACE_AU_INTENSITY)}), got {values.shape}")
    n = len(values)
    ok = np.ones(n, bool) if success is None else np.asarray(success, bool)
    if presence is None:
        presence = np.zeros((n, len(OPENFACE_AU_PRESENCE)))
        presence[:, [OPENFACE_AU_PRESENCE.index(au) for au in OPENFACE_AU_INTENSITY]] = values >= 1.0
    presence = np.asarray(presence, dtype=np.float64)
    if ok.shape != (n,) or presence.shape != (n, len(OPENFACE_AU_PRESENCE)):
        raise ValueError(f"success must be ({n},) and presence ({n}, {len(OPENFACE_AU_PRESENCE)}); "
                         f"got {ok.shape} and {presence.shape}")
    conf = np.where(ok, 0.98, 0.02) if confidence is None else np.asarray(confidence, dtype=np.float64)
    rng = np.random.default_rng(0) if rng is None else rng

    table = np.zeros((n, len(COLUMNS)))
    table[:, _INDEX["frame"]] = np.arange(1, n + 1)
    table[:, _INDEX["timestamp"]] = np.arange(n) / fps
    table[:, _INDEX["confidence"]] = conf
    table[:, _INDEX["success"]] = ok

    gaze = rng.normal(0.0, 0.05, (n, 2, 3)) + [0.0, 0.0, -1.0]
    gaze /= np.linalg.norm(gaze, axis=2, keepdims=True)
    _fill(table, "gaze_0_x", gaze.reshape(n, 6))
    mean = gaze.mean(axis=1)
    _fill(table, "gaze_angle_x", np.stack([np.arctan2(mean[:, 0], -mean[:, 2]),
                                           np.arctan2(mean[:, 1], -mean[:, 2])], axis=1))

    shift = rng.normal(0.0, [5.0, 5.0, 10.0], (n, 3)) + [0.0, 0.0, _DISTANCE_MM]
    angles = rng.normal(0.0, 0.05, (n, 3))
    _fill(table, "pose_Tx", np.concatenate([shift, angles], axis=1))
    rot = _rotations(*angles.T)
    face, eye = _mean_face()
    face3d = np.einsum("fij,kj->fki", rot, face) + shift[:, None, :]
    eye3d = np.einsum("fij,kj->fki", rot, eye) + shift[:, None, :]
    for points, first in ((eye3d, "eye_lmk_x_0"), (face3d, "x_0")):
        flat = np.concatenate([_project(points), points], axis=2)  # x, y, X, Y, Z per point
        _fill(table, first, flat.transpose(0, 2, 1).reshape(n, -1))

    centre = _project(shift[:, None, :])[:, 0]
    scale = _FOCAL / shift[:, 2:3]
    shape = rng.normal(0.0, 1.0, (n, 34)) * np.linspace(2.0, 0.1, 34)
    _fill(table, "p_scale", np.concatenate([scale, angles, centre, shape], axis=1))
    _fill(table, "AU01_r", values)
    _fill(table, "AU01_c", presence)
    table[~ok, _INDEX["success"] + 1:] = 0.0

    with open(path, "w", newline="\n") as f:
        np.savetxt(f, table, fmt=_FORMATS, delimiter=", ", header=", ".join(COLUMNS), comments="")


def _fill(table: np.ndarray, first: str, block: np.ndarray) -> None:
    start = _INDEX[first]
    table[:, start:start + block.shape[1]] = block


def read_csv(path) -> OpenFaceTrack:
    """Read timing, success and the AUxx_r columns of a FeatureExtraction CSV, checking every row.

    Rows must have as many values as the header has names; the columns read must hold finite
    numbers; frames must increase (a file with repeated frames is multi-face or concatenated output).
    """
    if not os.path.isfile(path):
        raise BadInput(path, "missing_openface_csv", "OpenFace CSV not found")
    try:
        with open(path, newline="", encoding="utf-8-sig") as f:
            rows = list(csv.reader(f, skipinitialspace=True))
    except UnicodeDecodeError:
        raise BadInput(path, REASON, "not a text file; expected an OpenFace FeatureExtraction CSV") from None
    if not rows or not any(rows[0]):
        raise BadInput(path, REASON, "empty file (no header line); OpenFace writes a header first")
    header = [name.strip() for name in rows[0]]
    au_cols = [(i, int(m.group(1))) for i, name in enumerate(header) if (m := _AU_R.match(name))]
    if not au_cols:
        shown = ", ".join(header[:6]) + (", ..." if len(header) > 6 else "")
        raise BadInput(path, REASON, f"no AUxx_r intensity columns in the header ({len(header)} columns: "
                                     f"{shown}); is this OpenFace FeatureExtraction output (with -aus)?")
    missing = [name for name in _NEEDED if name not in header]
    if missing:
        raise BadInput(path, REASON, f"header lacks {', '.join(missing)}; is this OpenFace FeatureExtraction output?")
    wanted = [header.index(name) for name in _NEEDED] + [i for i, _ in au_cols]

    data = []
    for line, row in enumerate(rows[1:], start=2):
        if not row:
            continue
        if len(row) != len(header):
            raise BadInput(path, REASON, f"line {line} has {len(row)} values, the header has {len(header)} names")
        values = [_number(row[i]) for i in wanted]
        if None in values:
            bad = wanted[values.index(None)]
            raise BadInput(path, REASON, f"line {line}, column {header[bad]}: {row[bad].strip()!r} is not a number")
        if data and values[0] <= data[-1][0]:
            raise BadInput(path, REASON, f"line {line}: frame {values[0]:g} does not follow frame {data[-1][0]:g}; "
                                         "frames must increase (multi-face or concatenated output?)")
        data.append(values)
    if not data:
        raise BadInput(path, REASON, "header only, no frames")

    table = np.asarray(data)
    return OpenFaceTrack(frame=table[:, 0].astype(np.int64), timestamp=table[:, 1], confidence=table[:, 2],
                         success=table[:, 3] != 0, intensities=table[:, 4:].astype(np.float64),
                         au=tuple(au for _, au in au_cols))


def _number(text: str) -> float | None:
    """The finite float in `text`, or None (NaN and inf count as bad: OpenFace never writes them)."""
    try:
        value = float(text)
    except ValueError:
        return None
    return value if math.isfinite(value) else None


def find_csv(folder, video_stem: str) -> str | None:
    """The CSV OpenFace wrote for a video into its -out_dir: `<video stem>.csv` (any case of .csv)."""
    if not os.path.isdir(folder):
        return None
    names = sorted(name for name in os.listdir(folder)
                   if os.path.splitext(name)[0] == video_stem and os.path.splitext(name)[1].lower() == ".csv")
    if not names:
        return None
    exact = f"{video_stem}.csv"
    return os.path.join(folder, exact if exact in names else names[0])
