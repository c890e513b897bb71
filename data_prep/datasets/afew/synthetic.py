"""Synthetic AFEW 7.0: the built-in demo and test data of `data_prep.datasets.afew`.

Train_AFEW/<Emotion>/<9-digit id>.avi, Val_AFEW/<Emotion>/..., and a flat, unlabelled Test_AFEW/,
Xvid AVIs with speech-like audio drawn by `data_prep.synthetic_render`. With `broken`, a faceless
clip, a clip without audio and a corrupt file test the skips. Ground truth (which frames show a
face, which clips are broken on purpose) goes to `synthetic_truth.json` beside the splits.
"""
from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass

import numpy as np

from data_prep.options import check, option
from data_prep.synthetic_render import TRUTH_FILE, render_audio, render_frames, write_video
from fer_keras.classes import AFEW

AFEW_SPLITS = {"train": "Train_AFEW", "val": "Val_AFEW", "test": "Test_AFEW"}


@dataclass
class SyntheticSpec:
    """Size and content of a synthetic AFEW dataset; the defaults take seconds to write and prepare."""

    train_per_class: int = option(2, "training clips per class", low=0)
    val_per_class: int = option(1, "validation clips per class", low=0)
    test_clips: int = option(3, "unlabelled test clips", low=0)
    min_frames: int = option(20, "shortest clip in frames", low=4)
    max_frames: int = option(36, "longest clip in frames", low=4)
    width: int = option(160, "frame width in px (AFEW is 720)", low=32, high=4096)
    height: int = option(128, "frame height in px (AFEW is 576)", low=32, high=4096)
    fps: float = option(25.0, "frame rate", low=1, high=120)
    sample_rate: int = option(22050, "audio sample rate in Hz", low=8000, high=48000, cli=False)
    face_height: float = option(0.4, "face box height / frame height", low=0.05, high=0.9, cli=False)
    seed: int = option(0, "random seed")
    broken: bool = option(True, "leave out the faceless clip, the clip without audio and the corrupt file",
                          flag="--no-broken")

    def __post_init__(self):
        check(self, "synthetic afew option")
        if self.min_frames > self.max_frames:
            raise ValueError(f"synthetic afew option min_frames ({self.min_frames}) is above max_frames "
                             f"({self.max_frames})")


def synth(out, spec: SyntheticSpec) -> str:
    """Write the set; one line saying what was written."""
    truth = write_afew(out, spec)
    return f"wrote {len(truth['videos'])} synthetic AFEW videos ({spec.width}x{spec.height}) under {out}"


def write_afew(out, spec: SyntheticSpec | None = None) -> dict:
    """Write a synthetic AFEW 7.0 layout under `out`; return (and save) its ground truth."""
    spec = spec or SyntheticSpec()
    rng = np.random.default_rng(spec.seed)
    ids = iter(rng.choice(10**9, size=10**4, replace=False))
    plan = []  # (split, label, kind)
    for split, per_class in (("train", spec.train_per_class), ("val", spec.val_per_class)):
        plan += [(split, k, "normal") for k in range(len(AFEW)) for _ in range(per_class)]
    plan += [("test", int(k), "normal") for k in rng.integers(0, len(AFEW), spec.test_clips)]
    if spec.broken:
        plan += [("train", AFEW.index("Happy"), "no_face"), ("val", AFEW.index("Sad"), "no_audio"),
                 ("train", AFEW.index("Neutral"), "corrupt")]
    videos = []
    for split, label, kind in plan:
        vid = f"{next(ids):09d}"
        folder = os.path.join(out, AFEW_SPLITS[split], "" if split == "test" else AFEW[label])
        os.makedirs(folder, exist_ok=True)
        path = os.path.join(folder, vid + ".avi")
        n = int(rng.integers(spec.min_frames, spec.max_frames + 1))
        faces: list[int] = []
        if kind == "corrupt":
            with open(path, "wb") as f:
                f.write(b"RIFF" + rng.bytes(4096))
        else:
            if kind != "no_face":
                gap_len = int(rng.integers(2, max(3, n // 5)))
                gap = int(rng.integers(1, n - gap_len))
                faces = [i for i in range(n) if not gap <= i < gap + gap_len]
            audio = None if kind == "no_audio" else render_audio(rng, label, n / spec.fps, spec.sample_rate)
            frames = render_frames(rng, spec.width, spec.height, label, n, set(faces), spec.face_height)
            write_video(path, frames, spec.width, spec.height, ((n, spec.fps),), "libxvid", audio, spec.sample_rate)
        videos.append({"id": vid, "split": split, "label": label, "label_name": AFEW[label], "kind": kind,
                       "path": os.path.relpath(path, out), "frames": n if kind != "corrupt" else 0,
                       "face_frames": faces, "has_audio": kind not in ("no_audio", "corrupt")})
    truth = {"dataset": "afew", "classes": list(AFEW), "spec": asdict(spec), "videos": videos}
    with open(os.path.join(out, TRUTH_FILE), "w") as f:
        json.dump(truth, f, indent=1)
    return truth
