"""EmotioNet's preparation options: which labels (thesis 004's 60- and 11-AU modes or a masked one),
how the downloaded images are stored, how they are split, and the valence/arousal subset."""
from __future__ import annotations

import os
from dataclasses import dataclass

from data_prep.options import check, option

# Thesis 004's train/test sizes per label mode (§4.2: 15,000 / 6,400; §4.3: 10,282 / 4,424; §5: 800 / 200),
# scaled to what was downloaded through their training share.
THESIS_SPLITS = {"60": (15000, 6400), "masked": (15000, 6400), "11": (10282, 4424), "va": (800, 200)}


@dataclass
class EmotionetOptions:
    """How a download folder becomes single-frame records; everything but the run settings is in the manifest."""

    labels: str = option("11", "label mode: 60 (every AU, 999 -> 0, §4.2), 11 (AUs 1 2 4 5 6 9 12 17 20 25 26, "
                               "images with a 999 among them dropped, §4.3) or masked (60 AUs, 999 kept for the "
                               "masked loss to ignore)", choices=("60", "11", "masked"))
    image_size: int = option(256, "side of the stored square: the image's central square resized (256: slim's "
                                  "evaluation resize before its 224 crop)", low=16, high=1024, unit="px")
    faces: bool = option(False, "crop the most confident MTCNN face instead of the whole image (the thesis used "
                                "whole images); an image without a face is logged and skipped")
    train_fraction: float | None = option(None, "share of the images in the training split (default: the "
                                                "thesis's for the mode: 15,000/21,400, 10,282/14,706, 800/1,000)",
                                          low=0.01, high=0.99)
    val_fraction: float = option(0.0, "share of the training split held out as a val split (the thesis had "
                                      "none: it chose on training loss)", low=0.0, high=0.5)
    va_csv: str | None = option(None, "CSV of (image, valence, arousal) rows, image = URL or downloaded file "
                                      "name: prepare the valence/arousal subset (§5) instead of the AUs (a "
                                      "relative path not found here is looked for in the source folder)")
    va_scale: float = option(10.0, "bound S of the annotation scale: values in [-S, S] are stored divided by S "
                                   "(the thesis never states its scale; RMSE 3.71 implies a wide one)",
                             low=1e-6, high=1e6)
    jpeg_quality: int = option(95, "JPEG quality of the stored images", low=1, high=100)
    seed: int = 0
    jobs: int = 1
    shard_size: int = 1024
    verify: bool = False
    shard: str | None = None

    def __post_init__(self):
        """Refuse, before anything is read, every value that could not work."""
        check(self, "emotionet option")

    def va_path(self, src) -> str:
        """The valence/arousal CSV: as given, else in the source folder; refused naming both."""
        for path in (self.va_csv, os.path.join(src, self.va_csv)):
            if os.path.isfile(path):
                return os.path.abspath(path)
        raise FileNotFoundError(f"emotionet option va_csv: {self.va_csv}: no such file (nor in {src})")

    @property
    def mode(self) -> str:
        return "va" if self.va_csv else self.labels

    def content(self) -> dict:
        """The options that define the prepared data; the side is `face_size`, as every reader takes it."""
        return {"face_size": self.image_size, "labels": self.mode, "faces": self.faces,
                "train_fraction": self.train_fraction, "val_fraction": self.val_fraction, "seed": self.seed,
                "va_csv": self.va_csv,
                "va_scale": self.va_scale if self.va_csv else None, "jpeg_quality": self.jpeg_quality}

    def training_share(self) -> float:
        if self.train_fraction is not None:
            return self.train_fraction
        train, test = THESIS_SPLITS[self.mode]
        return train / (train + test)
