"""`fer-keras results`: thesis tables with our numbers beside the thesis's, from hand-made result
files (metrics.json / folds.json with evaluation.reference's shape) and experiment YAMLs."""
import csv
import json
import logging
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from fer_keras import results
from fer_keras.cli import main

REPO = Path(__file__).resolve().parents[1]
BEST = "Table 3.6 (Best models)"
FUSION = "Table 3.7 (Late fusion)"
CV = "Table 3.4 (5-fold CV)"
PER_CLASS_THESIS = {"angry": {"precision": 0.63, "recall": 0.61, "f1": 0.62, "support": 491},
                    "happy": {"precision": 0.8, "recall": 0.85, "f1": 0.8242, "support": 500}}
PER_CLASS_OURS = {"angry": {"precision": 0.6, "recall": 0.55, "f1": 0.5739, "support": 490},
                  "happy": {"precision": 0.81, "recall": 0.9, "f1": 0.8526, "support": 500}}


def _ref(row, value, ours, table=BEST, thesis="002", metric="accuracy", percent=True, **extra):
    return {"thesis": thesis, "table": table, "row": row, "metric": metric, "value": value, "ours": ours,
            "percent": percent, "difference": None if ours is None else ours - value, **extra}


def _result(path, reference, name="metrics.json", **metrics):
    path.mkdir(parents=True, exist_ok=True)
    data = {"accuracy": None, "split": "test", "n_videos": 10, "experiment": path.name, **metrics,
            "reference": reference}
    (path / name).write_text(json.dumps(data))


def _yaml(path, data):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(data, sort_keys=False))


def _training(name, table, row, value, thesis="002"):
    return {"name": name, "description": "a training run",
            "reproduces": {"thesis": thesis, "table": table, "row": row, "metric": "accuracy", "value": value},
            "data": {"root": "data/x"}, "model": {"name": "vggface_lstm"}, "training": {"epochs": 1}}


@pytest.fixture
def tree(tmp_path, monkeypatch):
    """runs/ with training, CV, fusion, null-reference and other-thesis results; experiments/thesis002."""
    monkeypatch.chdir(tmp_path)
    runs = Path("runs")
    _result(runs / "vggface_lstm", _ref("VGGFace + LSTM", 62.5, 63.33, per_class=PER_CLASS_THESIS),
            accuracy=0.6333, per_class=PER_CLASS_OURS)
    _result(runs / "vggface_lstm" / "eval-val", _ref("VGGFace + LSTM", 62.5, 70.0))
    _result(runs / "cv" / "lstm", _ref("VGGFace + LSTM (fold mean)", 60.0, 58.3, table=CV), name="folds.json")
    _result(runs / "cv" / "lstm", _ref("VGGFace + LSTM", 62.5, 61.0), accuracy=0.61)
    _result(runs / "late_fusion_lstm_c3d", _ref("LSTM + C3D", 66.0, None, table=FUSION))
    _result(runs / "va_ccc", _ref("VGGFace + GRU (VA)", 0.45, 0.4321, table="Table 4.2 (VA)",
                                  metric="va.video.ccc", percent=False))
    _result(runs / "demo", None)
    _result(runs / "afew_gru", _ref("Run Three (Seq 40)", 44.4, 45.2, table="§6.3 Table 1", thesis="0"))
    experiments = Path("experiments") / "thesis002"
    _yaml(experiments / "a_vggface_lstm.yaml", _training("vggface_lstm", BEST, "VGGFace + LSTM", 62.5))
    _yaml(experiments / "b_c3d.yaml", _training("c3d", BEST, "C3D", 55.0))
    _yaml(experiments / "c_late_fusion.yaml", {
        "name": "late_fusion_lstm_c3d", "description": "late fusion",
        "reproduces": {"thesis": "002", "table": FUSION, "row": "LSTM + C3D", "metric": "accuracy", "value": 66.0},
        "method": "t002", "runs": ["vggface_lstm", "c3d"], "options": {}})
    _yaml(experiments / "d_no_reference.yaml", {"name": "plain", "data": {"root": "data/x"}})
    _yaml(experiments / "e_no_value.yaml", _training("tcn", BEST, "TCN", None))
    return tmp_path


def _section(text, heading):
    """The table lines (without header) of the section ``heading``."""
    lines = text.splitlines()
    start = lines.index(heading) + 4
    end = next((i for i in range(start, len(lines)) if not lines[i].startswith("|")), len(lines))
    return lines[start:end]


def test_rows_grouped_per_table_with_values_and_differences(tree):
    text = results.table(results.collect(["runs"]), [])
    assert _section(text, f"## Thesis 002: {BEST}") == [
        "| VGGFace + LSTM | accuracy | 61.00 | 62.50 | -1.50 | runs/cv/lstm |",
        "| VGGFace + LSTM | accuracy | 63.33 | 62.50 | +0.83 | runs/vggface_lstm |"]
    assert _section(text, f"## Thesis 002: {CV}") == [
        "| VGGFace + LSTM (fold mean) | accuracy | 58.30 | 60.00 | -1.70 | runs/cv/lstm/folds.json |"]
    assert _section(text, f"## Thesis 002: {FUSION}") == [
        "| LSTM + C3D | accuracy | n/a | 66.00 |  | runs/late_fusion_lstm_c3d |"]
    assert _section(text, "## Thesis 002: Table 4.2 (VA)") == [
        "| VGGFace + GRU (VA) | va.video.ccc | 0.4321 | 0.45 | -0.0179 | runs/va_ccc |"]
    assert _section(text, "## Thesis 000: §6.3 Table 1") == [
        "| Run Three (Seq 40) | accuracy | 45.20 | 44.40 | +0.80 | runs/afew_gru |"]
    assert text.rstrip().endswith("6 rows: 6 with a result, 0 not run; 1 result files without a thesis reference")


def test_null_reference_is_counted_not_a_row(tree):
    counts = results.write(["runs/demo"])
    assert counts == {"rows": 0, "filled": 0, "missing": 0, "unreferenced": 1}


@pytest.mark.parametrize("thesis", ["002", "2"])
def test_thesis_filter(tree, thesis):
    text = results.table(results.collect(["runs"]), [], thesis=thesis)
    assert "## Thesis 002: " in text and "Thesis 000" not in text and "Run Three" not in text


def test_not_run_rows_from_the_experiments(tree, capsys):
    counts = results.write(["runs"], thesis="002")  # default experiments/thesis002 (cwd)
    text = capsys.readouterr().out
    assert _section(text, f"## Thesis 002: {BEST}") == [
        "| VGGFace + LSTM | accuracy | 61.00 | 62.50 | -1.50 | runs/cv/lstm |",
        "| VGGFace + LSTM | accuracy | 63.33 | 62.50 | +0.83 | runs/vggface_lstm |",
        "| C3D | accuracy |  | 55.00 |  | not run (experiments/thesis002/b_c3d.yaml) |",
        "| TCN | accuracy |  |  |  | not run (experiments/thesis002/e_no_value.yaml) |"]
    headings = [line for line in text.splitlines() if line.startswith("## ")]
    assert headings == [f"## Thesis 002: {BEST}", f"## Thesis 002: {FUSION}", f"## Thesis 002: {CV}",
                        "## Thesis 002: Table 4.2 (VA)"]  # expected files' order, then results'
    assert counts == {"rows": 7, "filled": 5, "missing": 2, "unreferenced": 1}


def test_expected_rows_read_training_and_fusion_yamls(tree):
    rows = results.expected_rows("experiments/thesis002")
    assert [(r["table"], r["row"], r["value"], r["percent"]) for r in rows] == [
        (BEST, "VGGFace + LSTM", 62.5, True), (BEST, "C3D", 55.0, True), (FUSION, "LSTM + C3D", 66.0, True),
        (BEST, "TCN", None, True)]
    assert results.expected_rows("experiments/thesis002", thesis="000") == []


def test_eval_subdirectories_skipped_unless_named(tree):
    assert not any("eval-" in r["path"] for r in results.collect(["runs"]))
    (only,) = results.collect(["runs/vggface_lstm/eval-val"])
    assert only["reference"]["ours"] == 70.0


def test_malformed_json_is_skipped_with_a_warning(tree, caplog):
    Path("runs/broken").mkdir()
    Path("runs/broken/metrics.json").write_text('{"reference": {"thesis": ')
    Path("runs/no_row").mkdir()
    Path("runs/no_row/metrics.json").write_text(json.dumps({"reference": {"thesis": "002", "value": 1}}))
    with caplog.at_level(logging.WARNING, logger="fer_keras.results"):
        found = results.collect(["runs"])
    assert len(found) == 7  # the two bad files left out
    warned = " ".join(r.getMessage() for r in caplog.records)
    assert str(Path("runs/broken/metrics.json")) in warned and "runs/no_row/metrics.json" in warned
    assert "lacks table, row, metric" in warned


def test_missing_path_is_refused(tree, capsys):
    with pytest.raises(FileNotFoundError, match="nowhere"):
        results.collect(["runs", "nowhere"])
    assert main(["results", "nowhere"]) == 2
    assert "error: nowhere: no such result directory" in capsys.readouterr().err


def test_per_class_section_shows_both_numbers(tree):
    text = results.table(results.collect(["runs/vggface_lstm"]), [])
    assert _section(text, "### Per class: VGGFace + LSTM (runs/vggface_lstm)") == [
        "| angry | 0.6 / 0.63 | 0.55 / 0.61 | 0.5739 / 0.62 | 490 / 491 |",
        "| happy | 0.81 / 0.8 | 0.9 / 0.85 | 0.8526 / 0.8242 | 500 / 500 |"]
    assert "| class | precision (ours / thesis) | recall (ours / thesis) | f1 (ours / thesis) | " \
           "support (ours / thesis) |" in text


def test_cli_writes_markdown_and_csv(tree, capsys):
    assert main(["results", "runs", "--thesis", "002", "--experiments", "experiments/thesis002",
                 "--out", "results.md", "--csv", "results.csv"]) == 0
    assert "results.md: 7 rows: 5 with a result, 2 not run" in capsys.readouterr().out
    assert "| LSTM + C3D | accuracy | n/a | 66.00 |" in Path("results.md").read_text()
    with open("results.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert list(rows[0]) == list(results.CSV_HEADER)
    assert rows[1] == {"thesis": "002", "table": BEST, "row": "VGGFace + LSTM", "metric": "accuracy",
                       "ours": "63.33", "thesis_value": "62.50", "difference": "+0.83",
                       "run": "runs/vggface_lstm", "status": "ok"}
    assert [r["status"] for r in rows].count("not run") == 2


def test_real_thesis000_experiments_are_all_not_run(tmp_path, capsys):
    expected = set()
    for path in (REPO / "experiments" / "thesis000").glob("*.yaml"):
        ref = yaml.safe_load(path.read_text()).get("reproduces") or {}
        if ref.get("table") and ref.get("row"):
            expected.add((ref["table"], ref["row"]))
    counts = results.write([str(tmp_path)], thesis="0", experiments=str(REPO / "experiments" / "thesis000"))
    lines = [line for line in capsys.readouterr().out.splitlines() if "| not run (" in line]
    assert counts == {"rows": len(expected), "filled": 0, "missing": len(expected), "unreferenced": 0}
    assert len(lines) == len(expected) and any("late_fusion_final.yaml" in line for line in lines)


def test_import_stays_light():
    code = ("import sys, fer_keras.results; "
            "assert not {'tensorflow', 'keras', 'numpy'} & set(sys.modules), sorted(sys.modules)")
    subprocess.run([sys.executable, "-c", code], check=True, cwd=REPO)


def test_expected_rows_follow_the_plan_order(tmp_path, caplog):
    """A thesis folder's rows come in its plan's order (the thesis's), the files it does not run
    after them by name; a broken plan falls back to file name order with a warning."""
    for name, row in (("a", "Run Two"), ("b", "Run One"), ("c", "Run Three")):
        (tmp_path / f"{name}.yaml").write_text(yaml.safe_dump(
            {"reproduces": {"thesis": "000", "table": "T", "row": row, "value": 1.0}}))
    (tmp_path / "reproduce.yaml").write_text(yaml.safe_dump({"steps": [{"run": ["b", "a"]}]}))
    assert [r["row"] for r in results.expected_rows(tmp_path)] == ["Run One", "Run Two", "Run Three"]
    (tmp_path / "reproduce.yaml").write_text(yaml.safe_dump({"steps": [{"run": ["b", "gone"]}]}))
    assert [r["row"] for r in results.expected_rows(tmp_path)] == ["Run Two", "Run One", "Run Three"]
    assert "no experiment file gone" in caplog.text


def test_a_cross_validations_fold_table_is_a_row_of_its_own(tmp_path):
    """``finalisation.reproduces`` (the thesis's fold table) is a row after the file's own, and
    the CV directory's fold_table.json fills it."""
    (tmp_path / "exp").mkdir()
    (tmp_path / "exp" / "lstm.yaml").write_text(yaml.safe_dump({
        "reproduces": {"thesis": "002", "table": "T3.6", "row": "LSTM", "value": 62.5},
        "finalisation": {"reproduces": {"thesis": "002", "table": "Fold table", "row": "LSTM folds", "value": 71.84}}}))
    assert [(r["table"], r["row"]) for r in results.expected_rows(tmp_path / "exp")] == [
        ("T3.6", "LSTM"), ("Fold table", "LSTM folds")]
    _result(tmp_path / "runs" / "lstm", _ref("LSTM folds", 71.84, 70.0, table="Fold table"), name="fold_table.json")
    found = results.collect([tmp_path / "runs"])
    assert [(r["source"], r["reference"]["row"]) for r in found] == [("fold_table.json", "LSTM folds")]


def test_thesis004_tables_have_a_row_per_measure_as_the_thesis_prints_them(tmp_path, capsys):
    """Thesis 004's Tables 3-6 run measures down and networks across; counts are printed in full."""
    from fer_keras.reference import compare

    for name, row, ours in (("vgg", "VGG 16", {"accuracy": 0.86, "tp": 2300}),
                            ("inc", "Inception V2", {"accuracy": 0.9, "tp": 2981})):
        reproduces = {"thesis": "004", "table": "Table 5 (11 AUs)", "row": row, "columns": [
            {"metric": "au.accuracy", "value": 0.863939, "label": "Total Accuracy"},
            {"table": "Table 6 (11 AUs)", "metric": "au.tp", "value": 2315, "label": "True Positives"}]}
        _result(tmp_path / "runs" / name, compare(reproduces, {"au": ours}))
    results.write([str(tmp_path / "runs")], thesis="004")
    text = capsys.readouterr().out
    assert "| measure | VGG 16 (ours / thesis, difference) | Inception V2 (ours / thesis, difference) |" in text
    assert "| Total Accuracy | 0.86 / 0.8639 (-0.003939) | 0.9 / 0.8639 (+0.03606) |" in text
    assert "| True Positives | 2300 / 2315 (-15) | 2981 / 2315 (+666) |" in text
