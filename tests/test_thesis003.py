"""Thesis 003: its experiment files against the thesis's settings and tables, the per-frame category
metrics against scikit-learn and a hand computation, and the fast part of its smoke reproduction."""
import csv
import json
from pathlib import Path

import numpy as np
import pytest
import yaml
from sklearn import metrics as skm

from data_prep.registry import DATASETS
from fer_keras import config, metrics, reproduce, results
from fer_keras.classes import AFFWILD_CATEGORIES

EXPERIMENTS = Path(__file__).resolve().parent.parent / "experiments"
FOLDER = EXPERIMENTS / "thesis003"
TABLES = [f"Table 5.{k}" for k in range(1, 8)] + [f"Table C.{k}" for k in range(1, 9)]


def _files():
    return {p.stem: config.load(p) for p in sorted(FOLDER.glob("*.yaml")) if p.name != reproduce.PLAN}


def test_every_table_of_chapter_5_and_appendix_c_has_its_rows():
    expected = results.expected_rows(FOLDER)
    tables = {}
    for row in expected:
        tables.setdefault(row["table"].split(" (")[0], set()).add(row["row"])
    assert set(tables) == set(TABLES)
    for table in ("Table 5.1", "Table 5.2", "Table 5.3", "Table 5.6", "Table C.1", "Table C.8"):
        assert len(tables[table]) == 6, (table, tables[table])
    assert tables["Table 5.4"] == {"Best category-only (VGG16+LSTM+2FC)", "Best combined (VGG19+LSTM+1FC)"}
    assert tables["Table 5.7"] == {"Best in Dimensional-only (VGG19+LSTM+2FC)", "Best in Combined (VGG19+LSTM+2FC)"}


def test_files_carry_the_thesis_settings():
    """§4.5: LR 1e-5 (category-only, combined) / 1e-4 (VA-only), Keras 2 decay 1e-4 / 1e-5
    (combined), sequences of 60 in batches of 2, dropout 0.5, the heads of Tables 4.1-4.3, the best
    validation loss checkpoint, on cached features of the CNN the row names."""
    files = _files()
    trained = {n: e for n, e in files.items() if e.protocol == "train"}
    assert len(trained) == 18 and len(files) == 54
    heads = {"1fc": [], "2fc": None, "3fc": [128, 128]}
    for name, exp in trained.items():
        backbone, _, task, head = name.split("_")
        t = exp.training
        assert t.optimizer.learning_rate == (1e-4 if task == "va" else 1e-5), name
        assert (t.schedule.name, t.schedule.decay_steps) == ("inverse_time", 1), name
        assert t.schedule.decay_rate == (1e-5 if task == "combined" else 1e-4), name
        assert (exp.data.pipeline.seq_len, exp.data.pipeline.batch_size) == (60, 2), name
        assert exp.data.pipeline.normalize == "symmetric" and exp.evaluation.checkpoint == "best"
        assert exp.model.name == f"{backbone}_lstm_{task}" and exp.model.options["cached"] is True
        assert exp.data.root == f"data/va003_features/{backbone}"
        assert exp.data.features == (18432 if backbone == "xception" else 2048)
        want = heads[head] if heads[head] is not None else [64 if backbone == "vgg16" else 128]
        assert exp.model.options["head_units"] == want, name
        evaluated = {files[f"{name}_on_{s}"].evaluation.split for s in ("train", "test")}
        assert evaluated == {"train", "test"}
    searched = {n for n in trained if "tuning" in yaml.safe_load((FOLDER / f"{n}.yaml").read_text())}
    assert searched == {
        "vgg16_lstm_category_2fc", "vgg19_lstm_va_2fc", "vgg19_lstm_combined_1fc"}


def test_the_plan_runs_every_file_after_the_features_it_reads():
    plan = reproduce.read_plan(FOLDER, DATASETS)
    order = [n for step in plan["steps"] for n in step.get("run", ())]
    assert sorted(order) == sorted(_files())
    features = [step["features"]["out"] for step in plan["steps"] if "features" in step]
    assert sorted(features) == [f"data/va003_features/{b}" for b in ("vgg16", "vgg19", "xception")]


def test_macro_and_weighted_averages_equal_scikit_learn():
    rng = np.random.default_rng(0)
    t, p = rng.integers(0, 6, 500), rng.integers(0, 7, 500)  # class 6 never true, but predicted
    ours = metrics.classification(t, p, AFFWILD_CATEGORIES)
    for average in ("macro", "weighted"):
        want = skm.precision_recall_fscore_support(t, p, labels=range(7), average=average, zero_division=0)
        assert ours[f"{average}_precision"] == pytest.approx(want[0])
        assert ours[f"{average}_recall"] == pytest.approx(want[1])
        assert ours[f"{average}_f1"] == pytest.approx(want[2])
    assert ours["weighted_recall"] == pytest.approx(ours["accuracy"])


def test_face_blind_baselines_against_a_hand_computation():
    """6 Sad, 3 Neutral, 1 Fear: always "Sad" scores 0.6 and a macro F1 of (2*0.6/1.6)/7; uniform
    chance 1/7 in accuracy; guessing by the label frequencies 0.36 + 0.09 + 0.01 = 0.46."""
    labels = np.array([2] * 6 + [0] * 3 + [4])
    base = metrics.baselines(labels, AFFWILD_CATEGORIES)
    assert base["majority"]["class"] == "Sad"
    assert base["majority"]["accuracy"] == pytest.approx(0.6)
    assert base["majority"]["macro_f1"] == pytest.approx(0.75 / 7)
    assert base["uniform"]["accuracy"] == pytest.approx(1 / 7)
    assert base["prior"]["accuracy"] == pytest.approx(0.46)
    assert base["prior"]["macro_f1"] == pytest.approx(1 / 7)  # F1 = p_c per class, summing to 1


def test_thesis003_smoke_best_combined_rows(tmp_path, monkeypatch):
    """The fast part of thesis 003's smoke run: the synthetic set with categories prepared, VGG19's
    features cached, the best combined model trained on them and tested: its rows of Tables 5.3-5.6
    and C.7-C.8 get numbers, the baselines and macro F1 beside them."""
    monkeypatch.chdir(tmp_path)
    (tmp_path / "experiments").symlink_to(EXPERIMENTS)
    result = reproduce.reproduce("003", smoke=True, datasets=DATASETS, random_init=True,
                                 only=["vgg19_lstm_combined_1fc", "vgg19_lstm_combined_1fc_on_test"])
    assert not result["failed"], result["failed"]
    assert sum(s["step"].startswith("features") for s in result["steps"]) == 1  # only VGG19's, which it reads
    with open(result["table"].replace(".md", ".csv"), newline="") as f:
        rows = [r for r in csv.DictReader(f) if "VGG19+LSTM+1FC" in r["row"]]
    tables = {r["table"].split(" (")[0] for r in rows if r["ours"]}
    assert tables == {"Table 5.3", "Table 5.4", "Table 5.5", "Table 5.6", "Table C.7", "Table C.8"}, tables
    run = json.loads((tmp_path / "runs/smoke/vgg19_lstm_combined_1fc/metrics.json").read_text())
    frame = run["frame"]
    assert frame["n"] == sum(v["frames_kept"] for v in json.loads(
        (tmp_path / "data/smoke/va003_prepared/manifest.json").read_text())["videos"].values()
        if v["split"] == "val" and v["status"] == "ok")
    assert set(frame["baselines"]) == {"majority", "uniform", "prior"} and run["va"]["frame"]["n"] == frame["n"]
