"""Frame-aligned audio features: 16 kHz mono wav, one clip per kept frame (pydub), openSMILE LLDs.

Two ways to get one LLD vector per clip (`lld_mode`):
- "context" (default): run openSMILE once over the whole track and average the LLD frames whose
  centre falls inside each clip. The standard sets analyse 20-60 ms windows, longer than or equal
  to a 40 ms clip, so this keeps every descriptor defined and costs one call per video.
- "clip": run openSMILE on each pydub clip on its own, as thesis 000 did with its custom
  LLD-only config. With the bundled sets openSMILE then reports "segment too short" and returns
  NaN for descriptors whose window exceeds the clip; those are set to 0 and counted.
"""
from __future__ import annotations

import os
import warnings

import numpy as np
import opensmile

from . import OPENSMILE_AFTER_TENSORFLOW
from .video import audio_segment_class

AudioSegment = audio_segment_class()

LLD_MODES = ("context", "clip")
_ALIASES = {"IS10_paraling": "IS10", "IS09_emotion": "IS09", "IS13_ComParE": "IS13"}


def make_smile(feature_set: str, level: str | None, default_level: opensmile.FeatureLevel) -> opensmile.Smile:
    """An openSMILE extractor for a bundled set name (eGeMAPSv02, ComParE_2016, IS10_paraling, ...)
    or a user .conf file (then `level` names the config's output level, e.g. 'lld' or 'func')."""
    if feature_set.endswith(".conf"):
        if not os.path.isfile(feature_set):
            raise FileNotFoundError(f"openSMILE config {feature_set} does not exist")
        return opensmile.Smile(feature_set=os.path.abspath(feature_set), feature_level=level or default_level.value)
    name = _ALIASES.get(feature_set, feature_set)
    if name not in opensmile.FeatureSet.__members__:
        known = sorted(opensmile.FeatureSet.__members__) + sorted(_ALIASES)
        raise ValueError(f"unknown openSMILE feature set {feature_set!r}; use one of {known} or a .conf path")
    feature_level = opensmile.FeatureLevel(level) if level else default_level
    return opensmile.Smile(feature_set=opensmile.FeatureSet[name], feature_level=feature_level)


def samples(seg: AudioSegment) -> np.ndarray:
    """A pydub segment's samples as float32 in [-1, 1]."""
    return np.asarray(seg.get_array_of_samples(), np.float32) / float(1 << (8 * seg.sample_width - 1))


def load_wav(path) -> tuple[AudioSegment, np.ndarray]:
    """Read a mono 16-bit wav with pydub; also return its samples as float32 in [-1, 1]."""
    seg = AudioSegment.from_wav(str(path))
    return seg, samples(seg)


def clip_bounds_ms(times: np.ndarray, durations: np.ndarray, audio_start: float = 0.0) -> np.ndarray:
    """(n, 2) start/end in ms, from the start of the wav, of the clip under each frame: the time the
    frame is shown (40 ms at 25 fps), placed by its presentation time, never by index / nominal fps."""
    start = (np.asarray(times, np.float64) - audio_start) * 1000.0
    return np.stack([start, start + np.asarray(durations, np.float64) * 1000.0], 1)


def covered(bounds_ms: np.ndarray, audio_ms: float) -> np.ndarray:
    """Which clips have audio under them: their centre lies inside [0, audio_ms) of the wav."""
    centre = bounds_ms.mean(1)
    return (centre >= 0) & (centre < audio_ms)


class AudioFeatures:
    """Per-frame LLDs and whole-clip functionals of one extracted wav."""

    def __init__(self, lld_set: str = "eGeMAPSv02", lld_level: str | None = None,
                 functionals_set: str | None = "IS10_paraling", functionals_level: str | None = None,
                 lld_mode: str = "context"):
        if OPENSMILE_AFTER_TENSORFLOW:
            raise RuntimeError("tensorflow was imported before data_prep: import data_prep (or opensmile) "
                               "first, or openSMILE's native library crashes the process")
        if lld_mode not in LLD_MODES:
            raise ValueError(f"lld_mode must be one of {LLD_MODES}, got {lld_mode!r}")
        self.lld_mode = lld_mode
        self._lld = make_smile(lld_set, lld_level, opensmile.FeatureLevel.LowLevelDescriptors)
        self._func = (make_smile(functionals_set, functionals_level, opensmile.FeatureLevel.Functionals)
                      if functionals_set and functionals_set != "none" else None)
        self.lld_names = list(self._lld.feature_names)
        self.functionals_names = list(self._func.feature_names) if self._func else []

    @property
    def lld_dim(self) -> int:
        return len(self.lld_names)

    @property
    def functionals_dim(self) -> int:
        return len(self.functionals_names)

    def info(self) -> dict:
        """Feature dimensions and names, as recorded in a manifest."""
        return {"lld_dim": self.lld_dim, "lld_names": self.lld_names,
                "functionals_dim": self.functionals_dim, "functionals_names": self.functionals_names}

    def clips(self, seg: AudioSegment, bounds_ms: np.ndarray) -> list[AudioSegment]:
        """The pydub clip under each frame (empty where there is no audio under it)."""
        return [seg[max(0, int(round(start))):max(0, int(round(end)))] for start, end in bounds_ms]

    def lld(self, wav_path, bounds_ms: np.ndarray) -> tuple[np.ndarray, np.ndarray, int]:
        """LLDs of the clips `bounds_ms` (see clip_bounds_ms): (frames, lld_dim) float32, the 0/1
        mask of clips with audio under them (the others are zeros), and the NaN entries set to 0."""
        seg, signal = load_wav(wav_path)
        sr = seg.frame_rate
        mask = covered(bounds_ms, 1000.0 * len(signal) / sr)
        out = np.zeros((len(bounds_ms), self.lld_dim), np.float32)
        if mask.any():
            if self.lld_mode == "clip":
                rows = np.stack([self._clip_lld(clip, sr) for clip in self.clips(seg, bounds_ms[mask])])
            else:
                rows = self._context_lld(signal, sr, bounds_ms[mask])
            out[mask] = rows
        nan = np.isnan(out)
        out[nan] = 0.0
        return out, mask.astype(np.int64), int(nan.sum())

    def _clip_lld(self, clip: AudioSegment, sr: int) -> np.ndarray:
        signal = samples(clip)
        if signal.size == 0:
            return np.zeros(self.lld_dim)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)  # "segment too short": counted as NaN instead
            frames = self._lld.process_signal(signal, sr).to_numpy(np.float64)
        return np.nanmean(frames, 0) if np.isfinite(frames).any() else np.full(self.lld_dim, np.nan)

    def _context_lld(self, signal: np.ndarray, sr: int, bounds_ms: np.ndarray) -> np.ndarray:
        if signal.size == 0:
            return np.zeros((len(bounds_ms), self.lld_dim))
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)
            df = self._lld.process_signal(signal, sr)
        values = df.to_numpy(np.float64)
        starts = df.index.get_level_values("start").total_seconds().to_numpy()
        ends = df.index.get_level_values("end").total_seconds().to_numpy()
        centres = (starts + ends) * 500.0  # ms
        lo = np.searchsorted(centres, bounds_ms[:, 0], "left")
        hi = np.searchsorted(centres, bounds_ms[:, 1], "left")
        out = np.zeros((len(bounds_ms), self.lld_dim))
        for i, (a, b) in enumerate(zip(lo, hi)):
            if b > a:
                out[i] = values[a:b].mean(0)
            elif len(values):  # no LLD frame centred in this clip: take the nearest one
                out[i] = values[min(a, len(values) - 1)]
        return out

    def functionals(self, wav_path) -> np.ndarray:
        """Whole-clip functionals (e.g. IS10_paraling, 1582-d); empty when disabled."""
        if self._func is None:
            return np.zeros(0, np.float32)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)
            row = self._func.process_file(str(wav_path)).to_numpy(np.float32).reshape(-1)
        return np.nan_to_num(row)
