"""Thesis 002's neutral-frame trimming (Algorithm 1, §3.2.1): cut low-AU onset and offset frames.

BU-4DFE clips start and end neutral, and those frames "could mess up the training". The thesis
scores each frame by its mean OpenFace AU intensity (AU45, blink, left out) and cuts frames from
both ends while they score below half the video's maximum, always cutting the last 10 frames and
never more than half the video. A video whose maximum lies in its last 20 frames is an
"anomaly" that the thesis reworked by hand; `TrimOptions.anomaly` says what to do with it here.

Example (11 frames, threshold 0.5 * 1.0): the beginning side cuts 0.1 and 0.2 and stops at 0.6;
the end side cuts the last `end_frames` = 2 frames (0.6 too, by that rule), then 0.3 (below the
threshold), and that makes floor(0.5 * 11) = 5 cut frames, the cap.

>>> t = trim([0.1, 0.2, 0.6, 1.0, 0.9, 0.8, 0.7, 0.6, 0.3, 0.6, 0.0],
...          TrimOptions(end_frames=2, anomaly_frames=3))
>>> t.start, t.stop, t.reason
(2, 8, 'algorithm1')
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from data_prep.options import check, option
from fer_keras.classes import OPENFACE_AU_INTENSITY

ANOMALY_CHOICES = ("keep", "exclude", "trim")


@dataclass
class TrimOptions:
    """Algorithm 1's constants (the thesis's values are the defaults) and the anomaly policy.

    anomaly: "keep" keeps an anomalous video untrimmed (and flags it; the thesis reworked those by
    hand), "exclude" tells the caller to drop it, "trim" runs Algorithm 1 on it anyway.
    """

    threshold: float = option(0.5, "neutral below this fraction of the video's maximum AU score, in (0, 1]",
                              flag="--trim-threshold", high=1)
    max_cut: float = option(0.5, "cut at most this fraction of the frames", flag="--trim-max-cut", low=0, high=1)
    end_frames: int = option(10, "always cut this many frames from the end (within max_cut)",
                             flag="--trim-end-frames", low=0)
    anomaly_frames: int = option(20, "an AU peak in the last N frames makes an anomaly", low=0)
    exclude_au: tuple[int, ...] = option((45,), "AUs left out of the score (AU45 blinks add noise)", cli=False)
    anomaly: str = option("keep", "an anomaly is kept untrimmed and flagged, excluded, or trimmed anyway",
                          choices=ANOMALY_CHOICES)

    def __post_init__(self):
        check(self, "trim option")
        if not self.threshold > 0:
            raise ValueError(f"trim option threshold must be in (0, 1], got {self.threshold!r}")
        try:
            self.exclude_au = tuple(int(au) for au in self.exclude_au)
        except (TypeError, ValueError):
            raise ValueError(f"trim option exclude_au must be a list of AU numbers, got {self.exclude_au!r}") from None
        unknown = sorted(set(self.exclude_au) - set(OPENFACE_AU_INTENSITY))
        if unknown:
            raise ValueError(f"trim option exclude_au has AUs without OpenFace intensity: {unknown}; "
                             f"known: {list(OPENFACE_AU_INTENSITY)}")


@dataclass
class Trim:
    """The outcome for one video: keep score rows [start, stop)."""

    start: int
    stop: int
    cut_begin: int
    cut_end: int
    peak: int  # index of the first maximum
    max_score: float
    anomaly: bool  # the maximum lies in the last anomaly_frames frames
    reason: str  # "algorithm1", "anomaly_untrimmed" (keep / exclude) or "anomaly_trimmed"


def au_score(intensities, au, exclude=(45,)) -> np.ndarray:
    """Per-frame mean of the intensity columns whose AU is not in `exclude` (the thesis's AU score)."""
    values = np.asarray(intensities, dtype=np.float64)
    au = tuple(int(a) for a in au)
    if values.ndim != 2 or values.shape[1] != len(au):
        raise ValueError(f"intensities must be (frames, {len(au)}) for AUs {au}, got {values.shape}")
    keep = [i for i, a in enumerate(au) if a not in set(exclude)]
    if not keep:
        raise ValueError(f"no AU left for the score: all of {au} are excluded")
    return values[:, keep].mean(axis=1)


def trim(scores, opts: TrimOptions | None = None) -> Trim:
    """Algorithm 1 on one video's per-frame AU scores.

    With n frames, thr = threshold * max(scores) and cap = floor(max_cut * n), step i = 0, 1, ...
    first lets the beginning side cut frame i if it is still cutting, score < thr and fewer than
    cap frames are cut; otherwise that side stops for good (a later dip below thr is not cut; the
    pseudo-code leaves this stickiness implicit). Then the end side does the same for frame n-1-i,
    where "i < end_frames" also allows the cut. The loop ends when both sides stopped or cap
    frames are cut. Deviation from the pseudo-code: it checks the cap only after both sides cut,
    so it can cut one frame past half; here never more than cap frames are cut, the thesis's
    stated rule. All-zero scores give thr = 0: only the end_frames rule cuts.

    An anomaly (first maximum at index >= n - anomaly_frames) is returned untrimmed unless
    opts.anomaly is "trim"; with "exclude" the caller drops it (anomaly=True says so).
    """
    opts = TrimOptions() if opts is None else opts
    s = np.asarray(scores, dtype=np.float64)
    if s.ndim != 1 or len(s) == 0:
        raise ValueError(f"trim needs a non-empty 1-D array of per-frame scores, got shape {s.shape}")
    if not np.all(np.isfinite(s)) or np.any(s < 0):
        raise ValueError("AU scores must be finite and >= 0")
    n = len(s)
    peak = int(np.argmax(s))
    max_score = float(s[peak])
    anomaly = peak >= n - opts.anomaly_frames
    if anomaly and opts.anomaly != "trim":
        return Trim(0, n, 0, 0, peak, max_score, True, "anomaly_untrimmed")

    thr = opts.threshold * max_score
    cap = math.floor(opts.max_cut * n + 1e-9)  # tolerate float error, e.g. 0.29 * 100
    begin = end = 0
    cutting_begin = cutting_end = True
    i = 0
    while (cutting_begin or cutting_end) and begin + end < cap:
        if cutting_begin:
            if begin + end < cap and s[i] < thr:
                begin += 1
            else:
                cutting_begin = False
        if cutting_end:
            if begin + end < cap and (s[n - 1 - i] < thr or i < opts.end_frames):
                end += 1
            else:
                cutting_end = False
        i += 1
    return Trim(begin, n - end, begin, end, peak, max_score, anomaly,
                "anomaly_trimmed" if anomaly else "algorithm1")
