"""Evaluation engine: per-video aggregation, the run files it writes (read back by fusion), the
report, the `evaluate` and `fuse` commands and the confusion-matrix notebook."""
import csv
import json
import os
import shutil
from pathlib import Path

import numpy as np
import pytest

from fer_keras import config, evaluation, training
from fer_keras.cli import main
from fer_keras.fusion import load_run

REPO = Path(__file__).resolve().parents[1]
NOTEBOOK = REPO / "experiments" / "notebooks" / "confusion_matrices.ipynb"


# --- aggregation against a hand computation ------------------------------------------------------

def test_mean_is_weighted_by_valid_frames_and_vote_breaks_ties_by_mean():
    ids = ["a", "b", "b", "b", "b", "a", "c"]
    probs = np.array([
        [0.6, 0.3, 0.1],   # a, 8 frames          argmax A
        [0.2, 0.7, 0.1],   # b, 8                 B
        [0.1, 0.2, 0.7],   # b, 8                 C
        [0.5, 0.1, 0.4],   # b, 8                 A
        [0.6, 0.3, 0.1],   # b, 4 (padded tail)   A
        [0.1, 0.8, 0.1],   # a, 2 (padded tail)   B
        [0.3, 0.3, 0.4],   # c, no valid frame    C
    ])
    frames = [8, 8, 8, 8, 4, 2, 0]
    vids, mean, pred = evaluation.aggregate(ids, probs, frames, "mean")
    assert vids == ["a", "b", "c"]
    # a: (8 (.6 .3 .1) + 2 (.1 .8 .1)) / 10; b: (8 (.8 1.0 1.2) + 4 (.6 .3 .1)) / 28; c: uniform weights
    np.testing.assert_allclose(mean, [[0.5, 0.4, 0.1], [8.8 / 28, 9.2 / 28, 10.0 / 28], [0.3, 0.3, 0.4]])
    assert pred.tolist() == [0, 2, 2]

    # vote: a A:B 1:1, a tie the mean breaks for A (.5 > .4); b A twice; c C
    _, mean_v, vote = evaluation.aggregate(ids, probs, frames, "vote")
    np.testing.assert_allclose(mean_v, mean)
    assert vote.tolist() == [0, 0, 2]


def test_vote_tie_goes_to_the_higher_mean_probability():
    probs = np.array([[0.55, 0.45], [0.1, 0.9]])   # one vote each; mean (.325, .675) -> class 1
    assert evaluation.aggregate(["v", "v"], probs, [5, 5], "vote")[2].tolist() == [1]
    # with the first sequence weighing 9 frames the mean favours class 0 (.505 vs .495)
    assert evaluation.aggregate(["v", "v"], probs, [9, 1], "vote")[2].tolist() == [0]
    with pytest.raises(ValueError, match="aggregate must be one of mean, vote"):
        evaluation.aggregate(["v"], probs[:1], [1], "median")


def test_per_frame_outputs_are_averaged_over_valid_frames():
    out = np.array([[[1.0, 0.0], [0.0, 1.0], [9.0, 9.0]],      # last frame is padding
                    [[0.2, 0.8], [0.4, 0.6], [0.6, 0.4]]])
    mask = np.array([[1, 1, 0], [1, 1, 1]])
    np.testing.assert_allclose(evaluation.sequence_scores(out, mask), [[0.5, 0.5], [0.4, 0.6]])
    flat = np.array([[0.3, 0.7]])
    np.testing.assert_allclose(evaluation.sequence_scores(flat, np.ones((1, 3))), flat)


def test_summary_from_confusion_matches_metrics_classification():
    from fer_keras.metrics import classification

    y = [0, 0, 1, 2, 2, 2, 1, 0]
    p = [0, 1, 1, 2, 0, 2, 1, 1]
    full = classification(y, p, ["A", "B", "C"])
    summary = evaluation.summary_from_confusion(full["confusion_matrix"], ["A", "B", "C"])
    assert summary["accuracy"] == pytest.approx(full["accuracy"])
    assert summary["macro_f1"] == pytest.approx(full["macro_f1"])
    assert (summary["confusion_matrix"], summary["classes"]) == (full["confusion_matrix"], full["classes"])
    for name in ("A", "B", "C"):
        assert summary["per_class"][name] == pytest.approx(full["per_class"][name])
    np.testing.assert_allclose(evaluation.row_normalise([[1, 3], [0, 0]]), [[0.25, 0.75], [0, 0]])


def test_va_and_au_outputs_get_metrics_without_crashing(tmp_path):
    rng = np.random.default_rng(0)
    mask = np.array([[1, 1, 1, 0], [1, 1, 0, 0], [1, 1, 1, 1]], float)
    true = rng.normal(size=(3, 4, 2))
    pred = true + 0.1 * rng.normal(size=(3, 4, 2))
    result, path = evaluation._va(pred, true, mask, ["x", "x", "y"], tmp_path)
    assert result["frame"]["n"] == 9 and result["video"]["n"] == 2
    assert result["frame"]["valence"]["ccc"] > 0.9
    with open(path) as f:
        rows = list(csv.DictReader(f))
    assert [r["video_id"] for r in rows] == ["x", "y"] and rows[0]["frames"] == "5"
    # a per-sequence output against per-frame labels; no labels at all
    seq_result, _ = evaluation._va(pred.mean(axis=1), true, mask, ["x", "x", "y"], tmp_path)
    assert seq_result["sequence"]["n"] == 3
    assert evaluation._va(pred, None, mask, ["x", "x", "y"], tmp_path)[0] == {}

    au_true = np.where(mask[..., None] > 0, rng.integers(0, 2, size=(3, 4, 5)), 999)
    au = evaluation._au(rng.uniform(size=(3, 5)), au_true, mask, {})
    assert au["tp"] + au["fp"] + au["tn"] + au["fn"] == 9 * 5
    assert evaluation._au(rng.uniform(size=(3, 4, 5)), None, mask, {}) is None


# --- a real run directory ------------------------------------------------------------------------

def tiny_experiment(root, **extra):
    """The LLD GRU of thesis 000 at test size: builds and predicts in seconds."""
    raw = {
        "name": "tiny_audio_gru",
        "description": "Audio GRU at test size on the synthetic AFEW set.",
        "reproduces": {"thesis": "000", "table": "§6.4 Table 1", "row": "Run Six",
                       "metric": "accuracy", "value": 41.2},
        "data": {"root": root, "pipeline": {"inputs": ["lld"], "seq_len": 8, "batch_size": 4}},
        "model": {"name": "audio_gru", "options": {"seq_len": 8, "units": 8, "rnn_layers": 1}},
        "training": {"epochs": 1},
    }
    return config.from_dict(config.merge(raw, extra))


def make_run(exp, run_dir):
    """A run directory as training leaves it (config.yaml, best and last checkpoints), with
    untrained weights: evaluation only needs the files, and two seeds make best != last."""
    import keras

    run = training.prepare_run_dir(exp, run_dir)
    for seed, path in ((1, run.best), (2, run.last)):
        keras.utils.set_random_seed(seed)
        training.build_model(exp).save(path)
    return run


@pytest.fixture(scope="module")
def evaluated(prepared_afew, tmp_path_factory):
    """(experiment, run dir, evaluate()'s result) of the tiny run on its configured split."""
    exp = tiny_experiment(prepared_afew[0])
    run = make_run(exp, tmp_path_factory.mktemp("eval") / "run")
    return exp, run.root, evaluation.evaluate(run.root)


def read_rows(path):
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def test_evaluate_writes_the_run_files(evaluated, prepared_afew):
    exp, run, result = evaluated
    out = Path(result["out_dir"])
    assert out == run
    for name in ("predictions.csv", "metrics.json", "confusion_counts.png", "confusion_normalised.png",
                 "report.md"):
        assert (run / name).is_file(), name
        assert result["paths"][Path(name).stem] == str(run / name)

    manifest = prepared_afew[1]
    val = {v["id"]: v["label_name"] for v in manifest["videos"].values()
           if v["split"] == "val" and v["status"] == "ok" and v["frames_kept"] > 0}
    rows = read_rows(run / "predictions.csv")
    classes = manifest["classes"]
    assert list(rows[0]) == ["video_id", "label", "prediction", *(f"p_{c}" for c in classes)]
    assert {r["video_id"]: r["label"] for r in rows} == val

    metrics = json.loads((run / "metrics.json").read_text())
    correct = [r["label"] == r["prediction"] for r in rows]
    assert metrics["accuracy"] == pytest.approx(sum(correct) / len(rows))
    assert metrics["n_videos"] == metrics["n_labelled"] == len(val)
    assert metrics["n_sequences"] == sum(-(-v["frames_kept"] // 8) for v in manifest["videos"].values()
                                         if v["split"] == "val" and v["status"] == "ok" and v["frames_kept"] > 0)
    assert (metrics["split"], metrics["checkpoint"], metrics["aggregate"]) == ("val", "best", "mean")
    assert metrics["classes"] == classes and sum(map(sum, metrics["confusion_matrix"])) == len(val)
    assert {k: v for k, v in result.items() if k not in ("out_dir", "paths")} == metrics

    # fusion reads it as a run
    fused_view = load_run(run)
    assert fused_view.classes == tuple(classes) and fused_view.accuracy == metrics["accuracy"]
    np.testing.assert_allclose(fused_view.probs.sum(axis=1), 1, atol=1e-6)
    assert (fused_view.probs.argmax(axis=1) == [classes.index(r["prediction"]) for r in rows]).all()


def test_pngs_are_images(evaluated):
    from PIL import Image

    _, run, _ = evaluated
    for name in ("confusion_counts.png", "confusion_normalised.png"):
        with Image.open(run / name) as image:
            assert image.format == "PNG" and min(image.size) > 100
            image.verify()


def test_predictions_are_frame_weighted_means_of_sequence_outputs(evaluated):
    """Recompute the per-video mean by hand from the model's sequence outputs."""
    import keras

    from fer_keras.data import loader

    exp, run, _ = evaluated
    model = keras.models.load_model(run / "checkpoints" / "best.keras", compile=False)
    sums, weights = {}, {}
    for x, _, meta in loader.split(exp.data, "val", with_meta=True):
        out = model.predict_on_batch({"lld": x["lld"], "mask": x["mask"]})["category"]
        for vid, p, m in zip(meta["video_id"].numpy(), out, x["mask"].numpy()):
            vid = vid.decode()
            sums[vid] = sums.get(vid, 0) + m.sum() * np.asarray(p, np.float64)
            weights[vid] = weights.get(vid, 0) + m.sum()
    rows = read_rows(run / "predictions.csv")
    classes = loader.classes(exp.data)
    for row in rows:
        expected = sums[row["video_id"]] / weights[row["video_id"]]
        np.testing.assert_allclose([float(row[f"p_{c}"]) for c in classes], expected, rtol=1e-5, atol=1e-6)
        assert row["prediction"] == classes[int(np.argmax(expected))]


def test_report_has_the_thesis_row_and_the_tables(evaluated):
    _, run, result = evaluated
    report = (run / "report.md").read_text()
    acc = 100 * result["accuracy"]
    assert "| Experiment | Model | Seq Length | Batch | LR | Epochs | Aggregate | Accuracy | Macro F1 |" in report
    assert f"| tiny_audio_gru | audio_gru | 8 | 4 | 0.0001 | 1 | mean | {acc:.1f} |" in report
    assert "| Thesis 000 §6.4 Table 1 Run Six |" in report and "| 41.2 |" in report
    assert "| Difference (ours - thesis) |" in report and f"{acc - 41.2:+.1f}" in report
    assert result["reference"]["difference"] == pytest.approx(acc - 41.2)
    assert "| Class | Precision | Recall | F1 | Support |" in report
    assert "| true \\ predicted | Angry | Disgust |" in report


def test_other_split_and_checkpoint_write_beside_the_run(evaluated):
    exp, run, result = evaluated
    test = evaluation.evaluate(run, split="test", aggregate_method="vote")
    out = run / "eval-test"
    assert test["out_dir"] == str(out) and test["accuracy"] is None and test["aggregate"] == "vote"
    assert sorted(os.listdir(out)) == ["metrics.json", "predictions.csv", "report.md"]  # no PNG without labels
    rows = read_rows(out / "predictions.csv")
    assert len(rows) == test["n_videos"] == 3 and all(r["label"] == "" for r in rows)
    unlabelled = load_run(out)
    assert unlabelled.labels is None and unlabelled.accuracy is None
    assert json.loads((run / "metrics.json").read_text())["split"] == "val"  # the run's own is untouched

    last = evaluation.evaluate(run, checkpoint="last")
    assert last["out_dir"] == str(run / "eval-val-last") and last["checkpoint"] == "last"
    assert read_rows(run / "eval-val-last" / "predictions.csv") != read_rows(run / "predictions.csv")


def test_missing_files_say_what_to_do(tmp_path, evaluated):
    exp, run, _ = evaluated
    with pytest.raises(FileNotFoundError, match="no such run directory"):
        evaluation.evaluate(tmp_path / "nope")
    (tmp_path / "empty").mkdir()
    with pytest.raises(FileNotFoundError, match="config.yaml: missing"):
        evaluation.evaluate(tmp_path / "empty")
    training.prepare_run_dir(exp, tmp_path / "untrained")
    with pytest.raises(FileNotFoundError, match=r"checkpoints/best.keras: missing; training must run first"):
        evaluation.evaluate(tmp_path / "untrained")


# --- command line --------------------------------------------------------------------------------

def test_cli_evaluate(evaluated, capsys):
    _, run, _ = evaluated
    assert main(["evaluate", str(run), "--split", "test"]) == 0
    out = capsys.readouterr().out
    assert f"{run / 'eval-test' / 'predictions.csv'}" in out and "report.md" in out
    assert "accuracy: n/a (no labelled video)" in out

    assert main(["evaluate", str(run / "missing")]) == 2
    err = capsys.readouterr().err
    assert err.strip() == f"error: {run / 'missing'}: no such run directory"
    assert main(["evaluate", str(run), "--split", "nosuch"]) == 2
    err = capsys.readouterr().err
    assert "no split 'nosuch'" in err and "Traceback" not in err and len(err.strip().splitlines()) == 1


def test_cli_fuse_two_copies(evaluated, prepared_afew, tmp_path, capsys):
    _, run, result = evaluated
    copies = []
    for name in ("a", "b"):
        copies.append(tmp_path / name)
        copies[-1].mkdir()
        for f in ("predictions.csv", "metrics.json", "config.yaml"):
            shutil.copy(run / f, copies[-1] / f)
    out = tmp_path / "fused"
    # untrained weights may score 0, which weighted methods refuse as weights: give them
    assert main(["fuse", *map(str, copies), "--method", "t000_2", "--accuracies", "0.5,0.3", "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert f"accuracy: {result['accuracy']:.4f}" in printed and str(out / "predictions.csv") in printed
    fused = read_rows(out / "predictions.csv")
    assert [r["prediction"] for r in fused] == [r["prediction"] for r in read_rows(run / "predictions.csv")]

    # t000_4 counts the training labels from the run's dataset; --rescale reaches the method
    assert main(["fuse", *map(str, copies), "--method", "t000_4", "--rescale", "--accuracies", "1,1",
                 "--out", str(tmp_path / "f4")]) == 0
    options = json.loads((tmp_path / "f4" / "metrics.json").read_text())["options"]
    assert options["rescale"] is True and options["accuracies"] == [1, 1]
    manifest = prepared_afew[1]
    train = [v["label"] for v in manifest["videos"].values() if v["split"] == "train" and v["status"] == "ok"]
    assert options["class_counts"] == [train.count(k) for k in range(7)]
    capsys.readouterr()

    assert main(["fuse", str(copies[0]), str(tmp_path / "nope"), "--method", "average", "--out", str(out)]) == 2
    assert "nope: no such run directory" in capsys.readouterr().err
    os.remove(copies[1] / "predictions.csv")
    assert main(["fuse", *map(str, copies), "--method", "average", "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert "b/predictions.csv: missing" in err and len(err.strip().splitlines()) == 1
    assert main(["fuse", str(copies[0]), "--method", "nope", "--out", str(out)]) == 2
    assert "unknown fusion method 'nope'" in capsys.readouterr().err


def test_cli_help_lists_evaluate_fuse_and_the_methods(capsys):
    with pytest.raises(SystemExit):
        main(["--help"])
    text = capsys.readouterr().out
    assert "evaluate" in text and "fuse" in text
    with pytest.raises(SystemExit):
        main(["fuse", "--help"])
    text = capsys.readouterr().out
    from fer_keras.fusion import METHODS
    for name in METHODS:
        assert f"  {name} " in text


# --- notebook ------------------------------------------------------------------------------------

@pytest.fixture
def kernel_name(tmp_path, monkeypatch):
    """A 'python3' kernel spec for this interpreter, found first whatever else is installed."""
    from ipykernel.kernelspec import write_kernel_spec

    write_kernel_spec(str(tmp_path / "jupyter" / "kernels" / "python3"))
    monkeypatch.setenv("JUPYTER_PATH", str(tmp_path / "jupyter"))
    return "python3"


def run_notebook(run_dir, kernel_name):
    import nbformat
    from nbclient import NotebookClient

    nb = nbformat.read(NOTEBOOK, as_version=4)
    (cell,) = [c for c in nb.cells if "parameters" in c.metadata.get("tags", [])]
    cell.source = f"run_dir = {str(run_dir)!r}"
    NotebookClient(nb, kernel_name=kernel_name, timeout=120,
                   resources={"metadata": {"path": str(REPO)}}).execute()
    return nb


def test_notebook_is_committed_without_outputs():
    import nbformat

    nb = nbformat.read(NOTEBOOK, as_version=4)
    nbformat.validate(nb)
    assert all(not c.get("outputs") and c.get("execution_count") is None for c in nb.cells if c.cell_type == "code")
    assert any("parameters" in c.metadata.get("tags", []) for c in nb.cells)


def test_notebook_draws_the_confusion_matrices(evaluated, kernel_name):
    _, run, result = evaluated
    nb = run_notebook(run, kernel_name)
    outputs = [o for c in nb.cells if c.cell_type == "code" for o in c.outputs]
    assert not [o for o in outputs if o.output_type == "error"]
    assert sum("image/png" in o.get("data", {}) for o in outputs) == 2
    text = "".join(o.get("text", "") for o in outputs if o.output_type == "stream")
    assert f"accuracy {result['accuracy']:.3f}" in text and "precision" in text and "Angry" in text


def test_notebook_on_a_fused_run(evaluated, tmp_path, kernel_name):
    """A fused run has no confusion matrix in metrics.json: the notebook counts predictions.csv."""
    from fer_keras.fusion import fuse_to_dir

    _, run, _ = evaluated
    fuse_to_dir([run], "average", tmp_path / "fused")
    nb = run_notebook(tmp_path / "fused", kernel_name)
    outputs = [o for c in nb.cells if c.cell_type == "code" for o in c.outputs]
    assert not [o for o in outputs if o.output_type == "error"]
    assert sum("image/png" in o.get("data", {}) for o in outputs) == 2


def test_training_then_evaluation_end_to_end(prepared_afew, tmp_path):
    """training.train(evaluate=evaluation.evaluate) hands the run to this engine."""
    exp = tiny_experiment(prepared_afew[0], training={"epochs": 1, "optimizer": {"learning_rate": 1e-3}})
    state = training.train(exp, tmp_path / "run", evaluate=evaluation.evaluate)
    assert state["evaluation"]["n_videos"] > 0 and 0 <= state["evaluation"]["accuracy"] <= 1
    assert load_run(tmp_path / "run").accuracy == state["evaluation"]["accuracy"]
