"""Frame-aligned audio: one 40 ms clip per kept frame, LLD dimension of the chosen feature set."""
import os
import wave

import numpy as np
import opensmile
import pytest

from data_prep.audio import AudioFeatures, clip_bounds_ms, load_wav, make_smile
from data_prep.synthetic_render import class_pitch, render_audio


@pytest.fixture(scope="module")
def wav(tmp_path_factory):
    path = str(tmp_path_factory.mktemp("audio") / "voice.wav")
    mono = render_audio(np.random.default_rng(0), 2, 2.0, 16000)[:, 0]
    with wave.open(path, "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(16000)
        w.writeframes(mono.tobytes())
    return path


def _cfr(index, fps=25.0):
    return clip_bounds_ms(np.asarray(index) / fps, np.full(len(index), 1 / fps))


def test_clip_bounds_are_the_frames_display_time_on_the_audio_timeline():
    np.testing.assert_allclose(_cfr([0, 1, 7]), [[0, 40], [40, 80], [280, 320]])
    # a variable frame rate: each clip lasts as long as its frame is shown; audio starting 2 s late
    bounds = clip_bounds_ms(np.array([0.0, 1 / 30, 0.1, 2.5]), np.array([1 / 30, 1 / 15, 0.04, 0.04]), 2.0)
    np.testing.assert_allclose(bounds, [[-2000, -1966.667], [-1966.667, -1900], [-1900, -1860], [500, 540]],
                               atol=1e-3)


@pytest.mark.parametrize("mode", ["context", "clip"])
@pytest.mark.parametrize("feature_set,dim", [("eGeMAPSv02", 25), ("ComParE_2016", 65)])
def test_one_lld_row_per_kept_frame(wav, mode, feature_set, dim):
    audio = AudioFeatures(lld_set=feature_set, functionals_set="none", lld_mode=mode)
    kept = np.array([0, 1, 2, 5, 6, 20, 40, 49])  # 2 s at 25 fps: frames 0..49, some dropped
    lld, mask, nan_filled = audio.lld(wav, _cfr(kept))
    smile = opensmile.Smile(opensmile.FeatureSet[feature_set], opensmile.FeatureLevel.LowLevelDescriptors)
    assert lld.shape == (len(kept), len(smile.feature_names)) == (len(kept), dim)
    assert np.isfinite(lld).all() and mask.tolist() == [1] * len(kept)
    assert len(audio.clips(load_wav(wav)[0], _cfr(kept))) == len(kept)
    if mode == "context":
        assert nan_filled == 0  # every descriptor is defined when analysed in context


def test_context_llds_follow_the_voice(wav):
    audio = AudioFeatures(functionals_set="none")
    lld, _, _ = audio.lld(wav, _cfr(np.arange(50)))
    f0 = lld[:, audio.lld_names.index("F0semitoneFrom27.5Hz_sma3nz")]
    voiced = f0[f0 > 0]
    # semitones above 27.5 Hz of the class-2 pitch, within a semitone
    expected = 12 * np.log2(class_pitch(2) / 27.5)
    assert len(voiced) > 10 and abs(np.median(voiced) - expected) < 1.0


def test_functionals_and_custom_conf(wav):
    audio = AudioFeatures(functionals_set="IS10_paraling")
    assert audio.functionals(wav).shape == (1582,) == (audio.functionals_dim,)
    conf = os.path.join(os.path.dirname(opensmile.__file__), "core", "config", "egemaps", "v02", "eGeMAPSv02.conf")
    custom = AudioFeatures(lld_set=conf, lld_level="lld", functionals_set="none")
    assert custom.lld_dim == 25
    assert custom.lld(wav, _cfr(np.arange(5)))[0].shape == (5, 25)


@pytest.mark.parametrize("mode", ["context", "clip"])
def test_frames_outside_the_audio_get_zeros_and_mask_0(wav, mode):
    audio = AudioFeatures(functionals_set="none", lld_mode=mode)
    # the 2 s wav starts at 1.0 s of the video: frames at 0.0-0.96 s and from 3.0 s have no audio
    times = np.arange(0, 3.2, 0.04)
    lld, mask, _ = audio.lld(wav, clip_bounds_ms(times, np.full(len(times), 0.04), audio_start=1.0))
    centre = times + 0.02
    np.testing.assert_array_equal(mask, ((centre >= 1.0) & (centre < 3.0)).astype(int))
    assert not lld[mask == 0].any()
    if mode == "context":  # (lone 40 ms clips leave most eGeMAPS descriptors NaN, set to 0)
        assert np.abs(lld[mask == 1]).sum(1).min() > 0


def test_bad_feature_sets_get_clear_errors(tmp_path):
    with pytest.raises(ValueError, match="unknown openSMILE feature set 'emo_large'"):
        make_smile("emo_large", None, opensmile.FeatureLevel.Functionals)
    with pytest.raises(FileNotFoundError, match="missing.conf"):
        make_smile(str(tmp_path / "missing.conf"), None, opensmile.FeatureLevel.Functionals)
    with pytest.raises(ValueError, match="lld_mode"):
        AudioFeatures(lld_mode="frames")
