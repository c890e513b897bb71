"""FER2013's preparation options: how its 48x48 images are resized, encoded and split."""
from __future__ import annotations

import re
from dataclasses import dataclass

import cv2

from data_prep.options import check, option

DEFAULT_SPLITS = {"Training": "train", "PublicTest": "val", "PrivateTest": "test"}
UNKNOWN_SPLIT = "unknown"  # where rows whose Usage is missing or unknown are recorded as failures
INTERPOLATIONS = {"nearest": cv2.INTER_NEAREST, "bilinear": cv2.INTER_LINEAR,
                  "bicubic": cv2.INTER_CUBIC, "area": cv2.INTER_AREA}


@dataclass
class Fer2013Options:
    """How FER2013's images are written; everything but `shard_size` is recorded in the manifest.

    `image_format` defaults to PNG: lossless, so a stored image is exactly the resize of the CSV's
    pixels, at 2.3x the bytes of JPEG q95 (shards of the synthetic set at 224 px: 27.3 KB against
    11.6 KB a record, so about 1.0 GB against 0.42 GB for all of FER2013). Images are encoded with
    one grey channel: every reader decodes with channels=3, which replicates it to RGB, so the RGB
    face costs half the PNG bytes of a 3-channel encoding. The 224 default and the grey-to-RGB
    replication are inferred for thesis 002, which states neither (extract-002 §1.4, §9.1).
    """

    image_size: int = option(224, "side of the RGB images (224: the VGGFace input thesis 002's 7x7x512 feature "
                                  "map implies, inferred, not stated; 48 keeps the source)",
                             low=16, high=1024, unit="px")
    interpolation: str = option("bicubic", "resize interpolation", choices=tuple(INTERPOLATIONS))
    image_format: str = option("png", "image encoding", choices=("png", "jpeg"))
    jpeg_quality: int = option(95, "JPEG quality", low=1, high=100)
    jobs: int = 1
    shard_size: int = 1024
    verify: bool = False
    shard: str | None = None
    splits: dict = option(help="Usage -> split name", factory=lambda: dict(DEFAULT_SPLITS), cli=False)

    def __post_init__(self):
        """Refuse, before the CSV is opened, every value that could not work."""
        check(self, "fer2013 option")
        if not isinstance(self.splits, dict) or set(self.splits) != set(DEFAULT_SPLITS):
            raise ValueError(f"fer2013 option splits must map each Usage {', '.join(DEFAULT_SPLITS)} to a split "
                             f"name, got {self.splits!r}")
        bad = [s for s in self.splits.values()
               if not isinstance(s, str) or not re.fullmatch(r"[A-Za-z0-9_-]+", s) or s == UNKNOWN_SPLIT]
        if bad:
            raise ValueError(f"fer2013 option splits names must be letters, digits, '_' or '-' (and not "
                             f"{UNKNOWN_SPLIT!r}), got {bad}")

    def content(self) -> dict:
        """The options that define the prepared data; the side is `face_size`, as every reader takes it."""
        return {"face_size": self.image_size, "interpolation": self.interpolation,
                "image_format": self.image_format, "jpeg_quality": self.jpeg_quality, "splits": dict(self.splits)}
