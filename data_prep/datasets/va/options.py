"""The options of `fer-keras prepare va` (theses 001 and 003): layout, faces, people, frames, splits."""
from __future__ import annotations

import json
from dataclasses import asdict, dataclass

from data_prep.datasets.va.persons import DEFAULT_AMBIGUITY_MARGIN, DEFAULT_MAX_JUMP, DEFAULT_MAX_LOST
from data_prep.face import DEFAULT_MIN_FACE, LANDMARK_WEIGHTS, check_min_face_size
from data_prep.options import RUN_SETTINGS, check, option

LAYOUTS = ("affwild2", "affwild", "timed", "frames", "affectnet")
CROPS = ("roll", "box", "align")
# Layouts whose source names no test set: it is drawn by video.
DRAWN_SPLITS = ("timed", "frames")


@dataclass
class VaOptions:
    """Everything that changes the prepared data (recorded in the manifest) plus run settings."""

    layout: str = option("affwild2", "the source layout (see the dataset README): affwild2 (ABAW folders, "
                                     "_left/_right persons), affwild (valence/ and arousal/ files), timed "
                                     "(joystick `time value` logs), frames (thesis 001's frame folders + "
                                     "labels.csv), affectnet (still images + AffectNet's CSVs)", choices=LAYOUTS)
    crop: str = option("roll", "roll: the detector's box turned so the eyes are level, cut at --crop-size then "
                               "resized (thesis 001); box: the plain detector box (thesis 003); align: the "
                               "5-point template of the AFEW path", choices=CROPS)
    crop_size: int = option(112, "--crop roll: side of the cut before resizing (thesis 001: 112)",
                            low=16, high=1024, unit="px")
    face_size: int = option(96, "side of the stored face crops (thesis 001: 96; thesis 003: 72)",
                            low=16, high=1024, unit="px")
    margin: float = option(0.0, "--crop align: extra context around the template, a fraction of its side",
                           low=0, high=1)
    min_confidence: float = option(0.9, "MTCNN confidence to keep a face, in (0, 1)")
    min_face_size: float = option(DEFAULT_MIN_FACE, "smallest face to find: a fraction of the frame's shorter "
                                                    "side (0 < SIZE < 1) or pixels (>= 20)", metavar="SIZE")
    fps: float | None = option(None, "resample every video to this constant rate (theses 001/003 converted to "
                                     "25 or 30): each frame is the source frame nearest its time and keeps that "
                                     "frame's index and annotation line. Default: every source frame once, at "
                                     "its own time", low=1, high=240)
    frames_fps: float = option(25.0, "--layout frames: the rate the frame folders were extracted at (thesis 001: "
                                     "25)", low=1, high=240)
    mismatch: str = option("error", "a per-frame annotation file whose length is not the video's frame count: "
                                    "error (skip the video, logged) or fit (cut / mark the rest unannotated, "
                                    "counted)", choices=("error", "fit"))
    max_gap: float = option(0.1, "--layout timed: a frame farther than this from every annotation time is "
                                 "unannotated (s)", low=0, high=10, unit="s")
    categories: bool = option(True, "leave out per-frame categories (Aff-Wild2 expression files, SRC/categories/) "
                                    "even where present", flag="--no-categories")
    persons_max_jump: float = option(DEFAULT_MAX_JUMP, "two-person videos: a track's face moves at most this many "
                                                       "box sides per frame", low=0.01, high=10)
    persons_ambiguity: float = option(DEFAULT_AMBIGUITY_MARGIN, "two-person videos: faces that could be either "
                                                                "person within this margin (box sides) are "
                                                                "dropped, never guessed", low=0, high=10)
    persons_max_lost: int = option(DEFAULT_MAX_LOST, "frames without a face before a track restarts by position",
                                   low=0)
    segment_frames: int = option(1200, "kept frames per record of a long track (a multiple of the sequence "
                                       "lengths 60/80/100, so training windows never straddle two)", low=1)
    require_category: bool = option(False, "keep only the frames that have a per-frame category (thesis 003 "
                                           "kept 107,640 of its 265,663 faces, for all three model types)")
    draw_splits: bool = option(False, "draw the splits by video with --test-fraction/--val-fraction in any "
                                      "layout, not the ones it names (thesis 003 split its Aff-Wild videos into "
                                      "train, validation and test)")
    test_fraction: float = option(1 / 3, "--layout timed/frames or --draw-splits: share of videos drawn into the "
                                         "test split (thesis 001's 2:1)", low=0, high=0.9)
    val_fraction: float = option(0.0, "--layout timed/frames or --draw-splits: share of videos drawn into a "
                                      "validation split (thesis 001 had none)", low=0, high=0.9)
    sequence_split: bool = option(False, "thesis 001's split, for fidelity only: every track's frames cut into "
                                         "80-frame sequences drawn 2:1 into train and test, so one video is in "
                                         "both (it leaks)")
    landmark_weights: tuple = option(LANDMARK_WEIGHTS, "weights of the 5 landmarks in --crop align", cli=False)
    image_format: str = option("jpeg", "encoding of face crops", choices=("jpeg", "png"))
    jpeg_quality: int = option(95, "JPEG quality of face crops", low=1, high=100)
    detect_batch: int = option(32, "frames per MTCNN call", low=1)
    seed: int = 0
    jobs: int = 1
    shard_size: int = 32
    verify: bool = False
    shard: str | None = None

    def __post_init__(self):
        check(self, "va option")
        if not 0 < self.min_confidence < 1:
            raise ValueError(f"va option min_confidence must be in (0, 1), got {self.min_confidence}")
        check_min_face_size(self.min_face_size)
        if self.test_fraction + self.val_fraction >= 1:
            raise ValueError(f"va options test_fraction ({self.test_fraction}) and val_fraction "
                             f"({self.val_fraction}) leave no training videos")
        if self.sequence_split and self.layout not in DRAWN_SPLITS:
            raise ValueError(f"va option sequence_split draws thesis 001's split; --layout {self.layout} has "
                             f"its own splits ({', '.join(DRAWN_SPLITS)} have none)")
        if self.require_category and not self.categories:
            raise ValueError("va option require_category keeps the frames with a category: it needs categories "
                             "(leave out --no-categories)")
        self.landmark_weights = tuple(self.landmark_weights)

    def content(self) -> dict:
        """The options that define the prepared data (a rerun must match them)."""
        d = {k: v for k, v in asdict(self).items() if k not in RUN_SETTINGS + ("detect_batch",)}
        return json.loads(json.dumps(d))  # as the manifest stores it (tuples become lists)
