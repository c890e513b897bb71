"""The options of the shared video preparation (data_prep/prepare.py): faces, frames, audio, shards.

Every video dataset prepared by ``prepare_videos`` (AFEW today; the valence/arousal video sets
next) takes these; each is declared once here (data_prep/options.py), and `content()` is what a
prepared dataset records, so a rerun with other values is refused rather than mixed.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass

from data_prep.face import DEFAULT_MIN_FACE, LANDMARK_WEIGHTS, check_min_face_size
from data_prep.options import RUN_SETTINGS, check, option

BUNDLED_OR_CONF = "any set openSMILE bundles, or a .conf path"


@dataclass
class PrepareOptions:
    """Everything that changes the prepared data (recorded in the manifest) plus run settings."""

    face_size: int = option(112, "side of the aligned face crop in px", low=16, high=1024, unit="px")
    margin: float = option(0.0, "extra context around the template crop, as a fraction of its side on each edge",
                           low=0, high=1)
    min_confidence: float = option(0.9, "MTCNN confidence to keep a face, in (0, 1)")
    # fraction of the shorter side (< 1) or pixels (>= 20)
    min_face_size: float = option(
        DEFAULT_MIN_FACE, "smallest face to find: a fraction of the frame's shorter side (0 < SIZE < 1) or pixels "
        "(>= 20); detection runs on a copy scaled so it becomes 20 px (0.125: 72 px at 720x576, 90 px at 1280x720)",
        metavar="SIZE")
    fps: float | None = option(None, "resample every video to this constant frame rate (theses 001/003: 25 or 30); "
                                     "default: keep each source frame once, at its own presentation time",
                               low=1, high=240)
    landmark_weights: tuple = option(LANDMARK_WEIGHTS, "weights of the 5 landmarks in the alignment fit", cli=False)
    image_format: str = option("jpeg", "encoding of face crops", choices=("jpeg", "png"))
    jpeg_quality: int = option(95, "JPEG quality of face crops", low=1, high=100)
    sample_rate: int = option(16000, "audio sample rate in Hz", low=8000, high=48000, unit="Hz")
    lld_set: str = option("eGeMAPSv02", f"openSMILE LLD set: eGeMAPSv02, ComParE_2016, {BUNDLED_OR_CONF}")
    lld_level: str | None = option(None, "output level name inside a custom .conf (default 'lld')")
    lld_mode: str = option("context", "'context': LLDs over the whole track averaged per 40 ms clip; "
                                      "'clip': openSMILE on each clip alone, as thesis 000", choices=("context", "clip"))
    functionals_set: str | None = option("IS10_paraling", f"whole-clip functionals: IS10_paraling, {BUNDLED_OR_CONF} "
                                                          "(e.g. emo_large), or 'none'")
    functionals_level: str | None = option(None, "output level name inside a custom .conf (default 'func')")
    jobs: int = 1
    detect_batch: int = option(32, "frames per MTCNN call", low=1)
    shard_size: int = 32
    verify: bool = False
    shard: str | None = None

    def __post_init__(self):
        """Refuse, before any video is touched, every value that could not work."""
        check(self, "prepare option")
        if not 0 < self.min_confidence < 1:
            raise ValueError(f"prepare option min_confidence must be in (0, 1), got {self.min_confidence}")
        check_min_face_size(self.min_face_size)
        if not (len(self.landmark_weights) == 5 and all(int(w) == w and w >= 0 for w in self.landmark_weights)
                and sum(self.landmark_weights) > 0):
            raise ValueError(f"prepare option landmark_weights must be 5 integers >= 0, got {self.landmark_weights}")

    def content(self) -> dict:
        """The options that define the prepared data (a rerun must match them)."""
        d = {k: v for k, v in asdict(self).items() if k not in RUN_SETTINGS + ("detect_batch",)}
        d["landmark_weights"] = list(d["landmark_weights"])
        return d

    def audio_features(self):
        from data_prep.audio import AudioFeatures

        return AudioFeatures(self.lld_set, self.lld_level, self.functionals_set, self.functionals_level,
                             self.lld_mode)
