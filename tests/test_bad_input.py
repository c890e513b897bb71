"""Bad input: a clear error naming the file and the problem, or a logged skip; never a stopped run."""
import os
import shutil

import pytest

from conftest import read_failures
from data_prep.datasets.afew.layout import LayoutError, discover, prepare
from data_prep.prepare import PrepareOptions
from data_prep.store import safe_join
from data_prep.datasets.afew.synthetic import SyntheticSpec, write_afew
from fer_keras.cli import main


@pytest.fixture
def small_src(tmp_path):
    src = str(tmp_path / "src")
    write_afew(src, SyntheticSpec(train_per_class=1, val_per_class=0, test_clips=0, max_frames=22, broken=False))
    return src


def test_missing_source_directory(tmp_path):
    with pytest.raises(LayoutError, match="no such directory"):
        discover(tmp_path / "nowhere")


def test_wrong_layout_names_what_was_expected(tmp_path):
    (tmp_path / "videos").mkdir()
    with pytest.raises(LayoutError, match="not an AFEW layout: expected Train_AFEW"):
        discover(tmp_path)


def test_split_folders_without_videos(tmp_path):
    (tmp_path / "Train_AFEW" / "Angry").mkdir(parents=True)
    with pytest.raises(LayoutError, match="contain no videos"):
        discover(tmp_path)


def test_cli_reports_a_bad_layout(tmp_path, capsys):
    assert main(["prepare", "afew", str(tmp_path), str(tmp_path / "out"), "-q"]) == 2
    assert "not an AFEW layout" in capsys.readouterr().err


def test_unknown_class_folder_is_a_logged_skip(tmp_path, small_src):
    angry = os.path.join(small_src, "Train_AFEW", "Angry")
    stray = os.path.join(small_src, "Train_AFEW", "Bored")
    os.makedirs(stray)
    shutil.copy(os.path.join(angry, os.listdir(angry)[0]), os.path.join(stray, "000000001.avi"))
    out = str(tmp_path / "out")
    manifest = prepare(small_src, out, PrepareOptions(functionals_set="none"), progress=False)
    (line,) = read_failures(out)
    assert line["reason"] == "unknown_class" and "Bored" in line["message"] and line["action"] == "skipped"
    assert manifest["splits"]["train"]["videos"] == 7


def test_truncated_and_empty_videos_do_not_stop_the_run(tmp_path, small_src):
    angry = os.path.join(small_src, "Train_AFEW", "Angry")
    good = os.path.join(angry, os.listdir(angry)[0])
    data = open(good, "rb").read()
    open(os.path.join(angry, "000000002.avi"), "wb").write(data[: len(data) // 2])  # cut mid-stream
    open(os.path.join(angry, "000000003.avi"), "wb").write(b"")  # empty file
    out = str(tmp_path / "out")
    manifest = prepare(small_src, out, PrepareOptions(functionals_set="none"), progress=False)
    videos = manifest["videos"]
    assert videos["train/000000003"]["status"] == "failed" and videos["train/000000003"]["reason"] == "corrupt"
    truncated = videos["train/000000002"]
    # ffmpeg decodes what is there: either some frames survive or it is logged as corrupt
    assert truncated["status"] == "ok" and 0 < truncated["frames_total"] < videos[f"train/{os.path.basename(good)[:-4]}"]["frames_total"] \
        or truncated["reason"] == "corrupt"
    assert manifest["splits"]["train"]["videos"] >= 7
    for line in read_failures(out):
        assert line["path"].endswith(".avi") and line["message"]


def test_corrupt_manifest_gets_a_clear_error(tmp_path, small_src):
    out = tmp_path / "out"
    out.mkdir()
    (out / "manifest.json").write_text("{not json")
    with pytest.raises(ValueError, match="manifest.json: not valid JSON"):
        prepare(small_src, str(out), progress=False)


def test_output_paths_cannot_escape_the_output_directory(tmp_path):
    assert safe_join(tmp_path, "train", "train-00000.tfrecord").startswith(str(tmp_path))
    for bad in ("../evil.tfrecord", "/etc/passwd", "train/../../evil"):
        with pytest.raises(ValueError, match="outside the output directory"):
            safe_join(tmp_path, bad)


def test_unknown_feature_set_is_refused_before_any_work(tmp_path, small_src):
    with pytest.raises(ValueError, match="unknown openSMILE feature set"):
        prepare(small_src, str(tmp_path / "out"), PrepareOptions(lld_set="eGeMAPSv99"), progress=False)
    assert not os.path.exists(tmp_path / "out" / "manifest.json")


def test_a_file_with_audio_but_no_video_names_the_problem(tmp_path):
    import wave

    import numpy as np

    from data_prep.errors import BadInput
    from data_prep.video import VideoStream

    path = tmp_path / "voice_only.mp4.wav"
    with wave.open(str(path), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(16000)
        w.writeframes(np.zeros(1600, np.int16).tobytes())
    with pytest.raises(BadInput, match="no video stream") as err:
        VideoStream(path)
    assert err.value.reason == "corrupt" and str(path) in str(err.value)
