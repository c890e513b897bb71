"""Frame-aligned audio: one 40 ms clip per kept frame, LLD dimension of the chosen feature set."""
import os
import wave

import numpy as np
import opensmile
import pytest

from data_prep.audio import AudioFeatures, clip_bounds_ms, load_wav, make_smile
from data_prep.synthetic import class_pitch, render_audio


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


def test_clip_bounds_are_one_frame_period():
    bounds = clip_bounds_ms(np.array([0, 1, 7]), 25.0)
    np.testing.assert_allclose(bounds, [[0, 40], [40, 80], [280, 320]])


@pytest.mark.parametrize("mode", ["context", "clip"])
@pytest.mark.parametrize("feature_set,dim", [("eGeMAPSv02", 25), ("ComParE_2016", 65)])
def test_one_lld_row_per_kept_frame(wav, mode, feature_set, dim):
    audio = AudioFeatures(lld_set=feature_set, functionals_set="none", lld_mode=mode)
    kept = np.array([0, 1, 2, 5, 6, 20, 40, 49])  # 2 s at 25 fps: frames 0..49, some dropped
    lld, nan_filled = audio.lld(wav, kept, 25.0)
    smile = opensmile.Smile(opensmile.FeatureSet[feature_set], opensmile.FeatureLevel.LowLevelDescriptors)
    assert lld.shape == (len(kept), len(smile.feature_names)) == (len(kept), dim)
    assert np.isfinite(lld).all()
    assert len(audio.clips(load_wav(wav)[0], kept, 25.0)) == len(kept)
    if mode == "context":
        assert nan_filled == 0  # every descriptor is defined when analysed in context


def test_context_llds_follow_the_voice(wav):
    audio = AudioFeatures(functionals_set="none")
    lld, _ = audio.lld(wav, np.arange(50), 25.0)
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
    assert custom.lld(wav, np.arange(5), 25.0)[0].shape == (5, 25)


def test_bad_feature_sets_get_clear_errors(tmp_path):
    with pytest.raises(ValueError, match="unknown openSMILE feature set 'emo_large'"):
        make_smile("emo_large", None, opensmile.FeatureLevel.Functionals)
    with pytest.raises(FileNotFoundError, match="missing.conf"):
        make_smile(str(tmp_path / "missing.conf"), None, opensmile.FeatureLevel.Functionals)
    with pytest.raises(ValueError, match="lld_mode"):
        AudioFeatures(lld_mode="frames")
