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


def test_every_prepare_option_is_documented():
    afew = _subparsers(_subparsers(build_parser())["prepare"])["afew"]
    for action in afew._actions:
        assert action.help, f"option {action.option_strings or action.dest} has no help text"


def test_synth_then_prepare(tmp_path, capsys):
    src, out = str(tmp_path / "src"), str(tmp_path / "out")
    assert main(["synth", "afew", src, "--train-per-class", "1", "--val-per-class", "0", "--test-clips", "1",
                 "--max-frames", "21", "--no-broken"]) == 0
    assert main(["prepare", "afew", src, out, "-q", "--functionals-set", "none"]) == 0
    manifest = json.load(open(os.path.join(out, "manifest.json")))
    assert manifest["splits"]["train"]["videos"] == 7 and manifest["splits"]["test"]["videos"] == 1
    assert "manifest:" in capsys.readouterr().out


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
