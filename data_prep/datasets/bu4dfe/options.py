"""BU-4DFE's preparation options (thesis 002 §3.2.1): face finding, trimming, offline augmentation."""
from __future__ import annotations

import json
from dataclasses import asdict, dataclass

from data_prep.augment import METHODS as AUGMENT_METHODS, MODES as AUGMENT_MODES, check as check_augment
from data_prep.datasets.bu4dfe.trimming import TrimOptions
from data_prep.face import DEFAULT_MIN_FACE, check_min_face_size
from data_prep.options import RUN_SETTINGS, check, option
from data_prep.tracking import TrackOptions


def method_names(text: str) -> tuple:
    """``--augment-methods flip,rotate_left`` (or ``all``) as method names."""
    return AUGMENT_METHODS if text == "all" else tuple(n.strip() for n in text.split(",") if n.strip())


@dataclass
class Bu4dfeOptions:
    """Everything that changes the prepared data (recorded in the manifest) plus run settings."""

    face_detector: str = option("haar", "'haar': cascade on the first frames + tracker (thesis 002); 'mtcnn': "
                                        "MTCNN on every frame + 5-point alignment", flag="--detector",
                                choices=("haar", "mtcnn"))
    track: TrackOptions = option(help="the Haar cascade and tracker", factory=TrackOptions)
    face_size: int = option(160, "side of the face crops in px", low=16, high=1024, unit="px")
    image_format: str = option("png", "crop encoding (png: lossless, as the thesis stored its crops)",
                               choices=("png", "jpeg"))
    mtcnn_min_confidence: float = option(0.9, "--detector mtcnn: confidence to keep a face, in (0, 1)",
                                         flag="--min-confidence")
    mtcnn_min_face_size: float = option(DEFAULT_MIN_FACE, "--detector mtcnn: smallest face, a fraction of the "
                                                          "shorter side (< 1) or pixels (>= 20)",
                                        flag="--min-face-size", metavar="SIZE")
    trim: TrimOptions = option(help="thesis 002's Algorithm 1", factory=TrimOptions)
    trimming: bool = option(True, "keep every frame (no Algorithm 1, no OpenFace needed)", flag="--no-trim")
    keep_incomplete_subjects: bool = option(False, "keep the other videos of a subject that lacks an emotion "
                                                   "(default: exclude it, as F016)")
    frames_fps: float = option(25.0, "frame rate of frame-image folders, for frame times (BU-4DFE's)",
                               low=1, high=240)
    augment: str | None = option(None, "add one offline augmented copy of each training video per method (split "
                                       "train_aug): 'faithful' as the thesis code does it, 'corrected' as the "
                                       "method names say", choices=AUGMENT_MODES)
    augment_methods: tuple = option(AUGMENT_METHODS, "comma-separated methods, or all (data_prep/augment.py)",
                                    parse=method_names, metavar="M,M,...")
    openface: str | None = option(None, "folder of OpenFace CSVs (<video stem>.csv); default: beside each video",
                                  metavar="DIR")
    seed: int = 0
    jobs: int = 1
    shard_size: int = 32
    verify: bool = False
    shard: str | None = None

    def __post_init__(self):
        if isinstance(self.track, dict):
            self.track = TrackOptions(**self.track)
        if isinstance(self.trim, dict):
            self.trim = TrimOptions(**self.trim)
        check(self, "bu4dfe option")
        if not 0 < self.mtcnn_min_confidence < 1:
            raise ValueError(f"bu4dfe option mtcnn_min_confidence must be in (0, 1), got {self.mtcnn_min_confidence}")
        check_min_face_size(self.mtcnn_min_face_size)
        self.augment_methods = tuple(self.augment_methods)
        for method in self.augment_methods:
            check_augment(method, self.augment or AUGMENT_MODES[0])

    def content(self) -> dict:
        """The options that define the prepared data (a rerun must match them)."""
        d = asdict(self)
        for name in RUN_SETTINGS + ("openface",):
            d.pop(name)
        d["augment_methods"] = list(d["augment_methods"]) if self.augment else []
        return json.loads(json.dumps(d))  # as the manifest stores it (tuples become lists)
