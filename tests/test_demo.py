"""`make demo` end to end: synthetic AFEW -> prepare -> train vggface_bgru -> evaluate.

The full demo is slow (minutes); CI runs the same experiment file through the same command line
on the session's prepared dataset, for two epochs of its second stage (the whole network) on one
sequence per video. The demo's two stages on every sequence, and the acceptance run, are
`make test-slow` (test_training covers the stages: frozen backbone, then all of it).
"""
import csv
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from fer_keras import cli

ROOT = Path(__file__).resolve().parents[1]
DEMO = ROOT / "experiments" / "demo" / "vggface_bgru_synthetic.yaml"


def train_demo(root, run, *overrides):
    """`fer-keras train` on the demo experiment with the session's dataset; the history's losses."""
    code = cli.main(["train", str(DEMO), "--run-dir", str(run), "--set", f"data.root={root}", *overrides])
    assert code == 0
    with open(run / "history.csv") as f:
        return [float(r["loss"]) for r in csv.DictReader(f)]


def check_outputs(run, out):
    assert "val accuracy per video" in out and "report.md" in out
    for name in ("predictions.csv", "metrics.json", "report.md", "confusion_counts.png",
                 "confusion_normalised.png", "checkpoints/best.keras"):
        assert (run / name).is_file(), name
    metrics = json.loads((run / "metrics.json").read_text())
    assert metrics["n_videos"] == 8 and 0.0 <= metrics["accuracy"] <= 1.0


def test_demo_experiment_trains_and_evaluates(prepared_afew, tmp_path, capsys):
    """The demo's model, data and schedule; the first 8 frames of each video (truncate: one
    sequence, 4 steps an epoch) and one stage: two epochs of the whole network."""
    root, _ = prepared_afew
    run = tmp_path / "run"
    losses = train_demo(root, run, "data.pipeline.truncate=end", "training.stages=[{epochs: 2, trainable: all}]")
    check_outputs(run, capsys.readouterr().out)
    assert len(losses) == 2 and losses[1] < losses[0]  # it learns


@pytest.mark.slow
def test_demo_experiment_trains_and_evaluates_full_sequences(prepared_afew, tmp_path, capsys):
    """The demo's two stages, one and two epochs, on every frame of every video (several
    sequences per video)."""
    root, _ = prepared_afew
    run = tmp_path / "run"
    losses = train_demo(root, run, "training.stages=[{epochs: 1, trainable: 0}, {epochs: 2, trainable: all}]")
    check_outputs(run, capsys.readouterr().out)
    assert len(losses) == 3 and losses[-1] < losses[0]  # it learns


@pytest.mark.slow
def test_make_demo_reaches_090(tmp_path):
    """The acceptance run: `make demo` from scratch, >= 0.9 validation accuracy per video."""
    run = tmp_path / "run"
    start = time.time()
    subprocess.run(["make", "demo", f"DATA={tmp_path / 'data'}", f"DEMO_RUN={run}",
                    f"BIN={Path(sys.executable).parent}"], cwd=ROOT, check=True,
                   env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"})
    metrics = json.loads((run / "metrics.json").read_text())
    print(f"make demo: {time.time() - start:.0f} s, val accuracy per video {metrics['accuracy']:.3f}")
    assert metrics["accuracy"] >= 0.9
