"""The `fer-keras` command line: subcommands listed, every option documented, synth + prepare run."""
import argparse
import json
import os

import pytest

from fer_keras.cli import build_parser, main


def _subparsers(parser):
    (action,) = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    return action.choices


def test_help_lists_the_subcommands(capsys):
    with pytest.raises(SystemExit):
        main(["--help"])
    text = capsys.readouterr().out
    assert "synth" in text and "prepare" in text


@pytest.mark.parametrize("command", ["prepare", "synth"])
def test_every_prepare_and_synth_option_is_documented(command):
    for name, sub in _subparsers(_subparsers(build_parser())[command]).items():
        for action in sub._actions:
            assert action.help, f"{command} {name}: option {action.option_strings or action.dest} has no help text"


def test_synth_then_prepare(tmp_path, capsys):
    src, out = str(tmp_path / "src"), str(tmp_path / "out")
    assert main(["synth", "afew", src, "--train-per-class", "1", "--val-per-class", "0", "--test-clips", "1",
                 "--max-frames", "21", "--no-broken", "--width", "720", "--height", "576"]) == 0
    assert main(["prepare", "afew", src, out, "-q", "--functionals-set", "none", "--fps", "20",
                 "--min-face-size", "0.2"]) == 0
    manifest = json.load(open(os.path.join(out, "manifest.json")))
    assert manifest["splits"]["train"]["videos"] == 7 and manifest["splits"]["test"]["videos"] == 1
    assert manifest["options"]["fps"] == 20 and manifest["options"]["min_face_size"] == 0.2
    video = next(iter(manifest["videos"].values()))
    assert video["size"] == [720, 576] and video["fps"] == 20
    assert "manifest:" in capsys.readouterr().out


def test_synth_clips_writes_the_real_world_clips(tmp_path, capsys):
    assert main(["synth", "clips", str(tmp_path)]) == 0
    truth = json.load(open(tmp_path / "synthetic_truth.json"))
    assert sorted(os.listdir(tmp_path)) == sorted([c["path"] for c in truth["clips"]] + ["synthetic_truth.json"])
    assert "phone_vfr.mp4" in capsys.readouterr().out


def test_models_command_lists_registry_with_counts(tmp_path, capsys):
    import json

    from fer_keras.cli import main

    out = tmp_path / "models.json"
    assert main(["models", "--small", "c3d", "cascade_lstm", "--json", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "cascade_lstm" in printed and "002 §3.3" in printed
    rows = {row["name"]: row for row in json.loads(out.read_text())}
    assert rows["cascade_lstm"]["params"] == 4 * (128 * (16 + 128) + 128) + 129 * 6
    assert main(["models", "nope"]) == 2


def test_synth_and_prepare_bu4dfe_with_augmentation(tmp_path, capsys):
    src, out = str(tmp_path / "src"), str(tmp_path / "out")
    assert main(["synth", "bu4dfe", src, "--subjects", "M012", "--min-frames", "40", "--max-frames", "40",
                 "--long-video", "0", "--no-broken"]) == 0
    assert main(["prepare", "bu4dfe", src, out, "-q", "--augment", "faithful",
                 "--augment-methods", "flip,rotate_left"]) == 0
    manifest = json.load(open(os.path.join(out, "manifest.json")))
    assert manifest["splits"]["train"]["videos"] == 6 and manifest["splits"]["train_aug"]["videos"] == 12
    assert manifest["options"]["augment"] == "faithful" and manifest["options"]["augment_methods"] == ["flip", "rotate_left"]
    assert os.path.isfile(os.path.join(out, "splits.json")) and "split file:" in capsys.readouterr().out


@pytest.mark.parametrize("bad", [["--trim-threshold", "0"], ["--cascade", "no_such_cascade.xml"],
                                 ["--augment-methods", "sepia"], ["--extend", "-1"]])
def test_prepare_bu4dfe_refuses_bad_options_before_writing(tmp_path, capsys, bad):
    out = tmp_path / "out"
    assert main(["prepare", "bu4dfe", str(out), "-q", *bad]) == 2  # no SRC: nothing synthesised either
    assert not out.exists() and "error:" in capsys.readouterr().err


def test_synth_and_prepare_fer2013(tmp_path, capsys):
    csv, out = str(tmp_path / "fer2013.csv"), str(tmp_path / "out")
    assert main(["synth", "fer2013", csv, "--per-class", "2", "1", "1"]) == 0
    assert main(["prepare", "fer2013", csv, out, "-q", "--image-size", "48"]) == 0
    manifest = json.load(open(os.path.join(out, "manifest.json")))
    assert manifest["splits"]["train"]["videos"] == 14 and manifest["splits"]["test"]["videos"] == 7
    assert manifest["classes"][6] == "Neutral" and manifest["options"]["face_size"] == 48
    assert main(["synth", "bu4dfe", str(tmp_path / "x"), "--min-frames", "10"]) == 2  # one line, no traceback
    assert "min_frames" in capsys.readouterr().err
