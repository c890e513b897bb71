"""A synthetic FER2013 CSV in the Kaggle file's exact layout: the test data of layout.py.

`emotion,pixels,Usage` header, "\\n" line ends, one row per 48x48 grayscale image: the integer
label (classes.FER2013 order), 2304 space-separated 0-255 values, and Training / PublicTest /
PrivateTest, the usages in that order as in the real file. Every image is the real face of
scikit-image's astronaut photo, jittered in position, scale and brightness, with a faint grating
whose orientation depends on the class, so a small CNN can learn the labels from the pixels.
With `malformed`, a few broken rows (one per problem preparation must survive) are mixed in;
`<stem>_truth.json` beside the CSV lists every row's line number, label, usage and problem.
"""
from __future__ import annotations

import json
import os
from dataclasses import dataclass

import cv2
import numpy as np

from data_prep.options import check, option
from fer_keras.classes import FER2013

SIDE = 48
USAGES = ("Training", "PublicTest", "PrivateTest")
FACE_BOX = (182, 64, 265, 171)  # x0, y0, x1, y1 of the face in skimage.data.astronaut()
GRATING_CYCLES = 6.0  # periods across the image
GRATING_CONTRAST = 18.0  # amplitude in grey levels: visible to a CNN, the face stays the face


def _photo() -> np.ndarray:
    import skimage.data

    return cv2.cvtColor(skimage.data.astronaut(), cv2.COLOR_RGB2GRAY).astype(np.float32)


def render_face(photo: np.ndarray, rng, label: int) -> np.ndarray:
    """One 48x48 uint8 image: the jittered face crop plus class `label`'s grating at a random phase.

    The crop is a square a little larger than the face box, as FER2013's registered faces are.
    """
    x0, y0, x1, y1 = FACE_BOX
    side = 1.15 * max(x1 - x0, y1 - y0) * rng.uniform(0.9, 1.1)
    cx, cy = (x0 + x1) / 2 + rng.uniform(-0.05, 0.05) * side, (y0 + y1) / 2 + rng.uniform(-0.05, 0.05) * side
    scale = SIDE / side
    warp = np.float32([[scale, 0, SIDE / 2 - scale * cx], [0, scale, SIDE / 2 - scale * cy]])
    face = cv2.warpAffine(photo, warp, (SIDE, SIDE), flags=cv2.INTER_AREA, borderMode=cv2.BORDER_REFLECT)
    angle = np.pi * label / len(FER2013)
    y, x = np.mgrid[0:SIDE, 0:SIDE] / SIDE
    wave = np.sin(2 * np.pi * GRATING_CYCLES * (x * np.cos(angle) + y * np.sin(angle)) + rng.uniform(0, 2 * np.pi))
    image = face * rng.uniform(0.85, 1.15) + rng.uniform(-20, 20) + GRATING_CONTRAST * wave
    return np.clip(image + rng.normal(0, 2, image.shape), 0, 255).round().astype(np.uint8)


def _pixels(image: np.ndarray) -> str:
    return " ".join(map(str, image.ravel()))


def _malformed(image: np.ndarray) -> list[tuple[str, str, str]]:
    """(row text, usage written, problem) of each broken row, built from a real image's pixels."""
    values = image.ravel().tolist()
    good = _pixels(image)
    non_numeric = " ".join(["12", "x", "7"] + list(map(str, values[3:])))
    out_of_range = " ".join(["256"] + list(map(str, values[1:])))
    return [
        (f"3,{' '.join(map(str, values[:-1]))},Training", "Training", "2303 pixels"),
        (f"9,{good},Training", "Training", "label 9"),
        (f"4,{non_numeric},PublicTest", "PublicTest", "non-numeric pixel"),
        (f"2,{out_of_range},PrivateTest", "PrivateTest", "pixel value 256"),
        (f"5,{good},Validation", "Validation", "unknown usage"),
        (f"6,{good}", None, "2 fields"),
    ]


def write_fer2013(path, per_class=(12, 3, 3), seed: int = 0, malformed: bool = True) -> dict:
    """Write the CSV at `path`: `per_class` images per class for Training, PublicTest, PrivateTest.

    Rows of a usage are shuffled among classes like the real file's. The malformed rows are spread
    over the file (not all at its end) so preparation meets them between good rows. Returns the
    ground truth, also saved as `<stem>_truth.json` beside the CSV.
    """
    if len(per_class) != len(USAGES) or min(per_class) < 1:
        raise ValueError(f"per_class must give 3 counts >= 1 (Training, PublicTest, PrivateTest), got {per_class}")
    rng = np.random.default_rng(seed)
    photo = _photo()
    rows = []  # (text, truth) in file order
    for usage, count in zip(USAGES, per_class):
        labels = rng.permutation(np.repeat(np.arange(len(FER2013)), count))
        for label in labels:
            text = f"{label},{_pixels(render_face(photo, rng, int(label)))},{usage}"
            rows.append((text, {"label": int(label), "usage": usage, "malformed": False, "problem": None}))
    if malformed:
        broken = _malformed(render_face(photo, rng, 0))
        positions = np.linspace(1, len(rows), len(broken)).astype(int)
        for pos, (text, usage, problem) in sorted(zip(positions, broken), key=lambda p: -p[0]):
            label = int(text.split(",", 1)[0])
            rows.insert(pos, (text, {"label": label, "usage": usage, "malformed": True, "problem": problem}))
    truth_rows = [{"line": line, **info} for line, (_, info) in enumerate(rows, start=2)]
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    with open(path, "w", newline="") as f:
        f.write("emotion,pixels,Usage\n")
        f.writelines(text + "\n" for text, _ in rows)
    truth = {"dataset": "fer2013", "classes": list(FER2013), "per_class": list(per_class), "seed": seed,
             "rows": truth_rows}
    stem = os.path.splitext(os.path.abspath(path))[0]
    with open(f"{stem}_truth.json", "w") as f:
        json.dump(truth, f, indent=1)
    return truth


@dataclass
class Fer2013Spec:
    """Size and content of a synthetic fer2013.csv."""

    per_class: tuple = option((12, 3, 3), "images per class for Training, PublicTest, PrivateTest", nargs=3,
                              parse=int, metavar=("TRAIN", "PUBLIC", "PRIVATE"))
    seed: int = option(0, "random seed")
    malformed: bool = option(True, "leave out the malformed rows", flag="--no-malformed")

    def __post_init__(self):
        check(self, "synthetic fer2013 option")
        self.per_class = tuple(self.per_class)


def synth(path, spec: Fer2013Spec) -> str:
    """Write the CSV; one line saying what was written."""
    rows = write_fer2013(path, spec.per_class, spec.seed, spec.malformed)["rows"]
    return f"wrote {path}: {len(rows)} rows ({sum(r['malformed'] for r in rows)} malformed on purpose)"

