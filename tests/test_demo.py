"""`make demo` end to end: synthetic AFEW -> prepare -> train vggface_bgru -> evaluate.

The full demo is slow (minutes); CI runs the same experiment file for a few epochs on the
session's prepared dataset, through the same command line.
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


def test_demo_experiment_trains_and_evaluates(prepared_afew, tmp_path, capsys):
    root, _ = prepared_afew
    run = tmp_path / "run"
    code = cli.main(["train", str(DEMO), "--run-dir", str(run), "--set", f"data.root={root}",
                     "training.stages=[{epochs: 1, trainable: 0}, {epochs: 2, trainable: all}]"])
    assert code == 0
    out = capsys.readouterr().out
    assert "val accuracy per video" in out and "report.md" in out
    for name in ("predictions.csv", "metrics.json", "report.md", "confusion_counts.png",
                 "confusion_normalised.png", "checkpoints/best.keras"):
        assert (run / name).is_file(), name
    with open(run / "history.csv") as f:
        losses = [float(r["loss"]) for r in csv.DictReader(f)]
    assert len(losses) == 3 and losses[-1] < losses[0]  # it learns
    metrics = json.loads((run / "metrics.json").read_text())
    assert metrics["n_videos"] == 8 and 0.0 <= metrics["accuracy"] <= 1.0


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
