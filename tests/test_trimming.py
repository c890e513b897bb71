"""Thesis 002 Algorithm 1 on hand-made AU score curves, against hand-computed cuts."""
import doctest

import numpy as np
import pytest

from data_prep.datasets.bu4dfe import trimming
from data_prep.datasets.bu4dfe.trimming import TrimOptions, au_score, trim

AUS = (1, 2, 4, 5, 6, 7, 9, 10, 12, 14, 15, 17, 20, 23, 25, 26, 45)


def kept(result):
    return result.start, result.stop


def test_onset_apex_offset_cuts_both_ends():
    # max 2.0, threshold 1.0: 6 onset frames below it (index 6 equals it and stays), 14 offset frames.
    onset = [0.0, 0.2, 0.4, 0.6, 0.8, 0.9]
    apex = [1.0, 1.4, 1.8, 2.0, 1.9] + [1.5] * 20 + [1.2, 1.0]
    offset = [0.9, 0.7, 0.5, 0.4, 0.3, 0.2, 0.2, 0.1, 0.1, 0.1, 0.0, 0.0, 0.0, 0.0]
    result = trim(onset + apex + offset)
    assert kept(result) == (6, 33)
    assert (result.cut_begin, result.cut_end, result.peak, result.max_score) == (6, 14, 9, 2.0)
    assert (result.anomaly, result.reason) == (False, "algorithm1")


@pytest.mark.parametrize("n, expected", [
    (40, (10, 30)),  # both sides reach 10 at step 9: 20 = half, stop
    (41, (10, 31)),  # cap floor(20.5) = 20
    (38, (10, 29)),  # cap 19: the beginning cuts the 19th frame at step 9, so the end stops at 9
])
def test_cap_stops_cutting_at_half(n, expected):
    scores = np.full(n, 0.1)
    scores[15] = 1.0  # without the cap the beginning would cut 15 frames
    result = trim(scores)
    assert kept(result) == expected
    assert result.cut_begin + result.cut_end == n // 2


def test_last_frames_are_always_cut_even_when_high():
    scores = np.r_[np.zeros(5), np.full(45, 0.8)]
    scores[20] = 1.0
    assert kept(trim(scores)) == (5, 40)
    assert kept(trim(scores, TrimOptions(end_frames=0))) == (5, 50)
    assert kept(trim(scores, TrimOptions(end_frames=3))) == (5, 47)


def test_a_side_that_stopped_does_not_resume():
    # Dips below the threshold (indices 6-8 and 46-48) after each side stopped are kept.
    scores = np.r_[np.zeros(5), 0.8, [0.1] * 3, np.full(37, 0.8), [0.0] * 3, 0.7, np.zeros(10)]
    scores[20] = 1.0
    assert len(scores) == 60
    result = trim(scores)
    assert kept(result) == (5, 50)
    assert (result.cut_begin, result.cut_end) == (5, 10)


def anomalous():
    scores = np.r_[np.full(10, 0.1), np.full(25, 0.8), np.full(5, 0.1)]
    scores[30] = 1.0  # maximum within the last 20 of 40 frames
    return scores


@pytest.mark.parametrize("policy", ["keep", "exclude"])
def test_anomaly_kept_untrimmed_or_flagged_for_exclusion(policy):
    result = trim(anomalous(), TrimOptions(anomaly=policy))
    assert kept(result) == (0, 40)
    assert (result.cut_begin, result.cut_end, result.peak) == (0, 0, 30)
    assert (result.anomaly, result.reason) == (True, "anomaly_untrimmed")


def test_anomaly_trimmed_when_asked():
    # 10 low frames from the beginning; from the end 5 low ones plus 5 by the last-10 rule (the peak
    # among them), which makes 20 = half.
    result = trim(anomalous(), TrimOptions(anomaly="trim"))
    assert kept(result) == (10, 30)
    assert (result.anomaly, result.reason) == (True, "anomaly_trimmed")


def test_anomaly_boundary():
    scores = np.full(40, 0.1)
    scores[19] = 1.0
    assert not trim(scores).anomaly
    scores[20] = 2.0
    assert trim(scores).anomaly
    assert not trim(scores, TrimOptions(anomaly_frames=0)).anomaly


def test_all_zero_scores_only_cut_the_end_frames():
    result = trim(np.zeros(30))
    assert kept(result) == (0, 20)
    assert (result.peak, result.max_score, result.anomaly) == (0, 0.0, False)
    assert kept(trim(np.zeros(12), TrimOptions(anomaly_frames=0))) == (0, 6)  # capped at half


def test_max_cut_zero_cuts_nothing():
    assert kept(trim(np.r_[np.zeros(30), 1.0, np.zeros(30)], TrimOptions(max_cut=0.0))) == (0, 61)


@pytest.mark.parametrize("scores", [[], [[0.1, 0.2]], [0.1, np.nan, 0.3], [0.1, -0.2, 0.3]])
def test_bad_scores(scores):
    with pytest.raises(ValueError):
        trim(scores)


def test_au_score_leaves_out_blinks():
    values = np.zeros((3, 17))
    values[:, :16] = np.arange(16) / 4.0
    values[1, 0] = 4.0
    blink = values.copy()
    blink[:, 16] = 5.0
    expected = [np.arange(16).mean() / 4.0, (np.arange(16).sum() / 4.0 + 4.0) / 16, np.arange(16).mean() / 4.0]
    np.testing.assert_allclose(au_score(values, AUS), expected)
    np.testing.assert_allclose(au_score(blink, AUS), expected)
    np.testing.assert_allclose(au_score(blink, AUS, exclude=()), (np.asarray(expected) * 16 + 5.0) / 17)
    np.testing.assert_allclose(au_score([[2.0, 5.0], [1.0, 0.0]], (12, 45)), [2.0, 1.0])
    with pytest.raises(ValueError, match="excluded"):
        au_score([[1.0]], (45,))
    with pytest.raises(ValueError):
        au_score(values[:, :5], AUS)


@pytest.mark.parametrize("options", [
    {"threshold": 0.0}, {"threshold": 1.5}, {"threshold": "0.5"}, {"max_cut": -0.1}, {"max_cut": 1.1},
    {"end_frames": -1}, {"end_frames": 2.5}, {"anomaly_frames": -1}, {"anomaly": "drop"},
    {"exclude_au": (28,)}, {"exclude_au": (99,)}, {"exclude_au": "blink"},
])
def test_options_refuse_out_of_range_values(options):
    with pytest.raises(ValueError, match="trim option"):
        TrimOptions(**options)


def test_options_accept_their_limits():
    TrimOptions(threshold=1.0, max_cut=0.0, end_frames=0, anomaly_frames=0, exclude_au=[45, 12], anomaly="trim")
    TrimOptions(max_cut=1.0, exclude_au=())


def test_module_example():
    assert doctest.testmod(trimming).failed == 0
