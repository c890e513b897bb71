"""Valence/arousal evaluation for thesis 001 and ABAW, against independent NumPy computations:
CCC, Pearson r and MSE pooled over all frames and within each video (a track of two segment
records, padded steps masked, constant and empty videos), ABAW's P, the Aff-Wild2 prediction
files (one line per source frame, gaps given the nearest prediction), still images repeated over
the sequence (thesis 001 §6.7.1), and the thesis table with each thesis number beside ours."""
import csv
import json

import keras
import numpy as np
import pytest
import yaml
from test_pixel_stats import write_va_dataset

from fer_keras import config as cfg
from fer_keras import evaluation, metrics, results, training
from fer_keras.data.pipeline import sequences

NAMES = ("valence", "arousal")
W = np.array([[0.004, -0.003], [-0.002, 0.005], [0.001, -0.004]], np.float32)  # mean RGB -> (valence, arousal)
B = np.array([-0.1, 0.05], np.float32)
SEQ_LEN = 4


def ccc(t, p):
    cov = np.mean((t - t.mean()) * (p - p.mean()))
    return 2 * cov / (t.var() + p.var() + (t.mean() - p.mean()) ** 2)


def numpy_measures(t, p):
    """{dimension: (ccc, pearson, mse)} of (n, 2) arrays (Pearson NaN for a constant side)."""
    with np.errstate(invalid="ignore", divide="ignore"):
        return {name: (ccc(t[:, d], p[:, d]), np.corrcoef(t[:, d], p[:, d])[0, 1],
                       np.mean((t[:, d] - p[:, d]) ** 2)) for d, name in enumerate(NAMES)}


# --- the measures on arrays ----------------------------------------------------------------------

def test_pooled_and_per_video_measures_equal_numpy():
    rng = np.random.default_rng(1)
    true = rng.uniform(-1, 1, (5, 6, 2))
    pred = true + rng.normal(0, 0.3, true.shape)
    mask = np.array([[1] * 6, [1, 1, 1, 1, 0, 0], [1] * 6, [1, 1, 0, 0, 0, 0], [0] * 6], float)
    pred[mask == 0] = 99.0  # padding holds anything
    true[2, :, 0] = 0.25      # video c: constant valence
    ids = ["a", "b", "c", "a", "e"]  # a: two segment records; e: no real frame
    real = mask > 0
    pooled = metrics.regression(true, pred, mask=mask)
    for name, (c, r, mse) in numpy_measures(true[real], pred[real]).items():
        assert pooled[name]["ccc"] == pytest.approx(c) and pooled[name]["pearson"] == pytest.approx(r)
        assert pooled[name]["mse"] == pytest.approx(mse)
    assert metrics.abaw_score(pooled) == pytest.approx((pooled["valence"]["ccc"] + pooled["arousal"]["ccc"]) / 2)

    summary, rows = metrics.per_video(true, pred, ids, mask=mask)
    assert [(r["video_id"], r["n"]) for r in rows] == [("a", 8), ("b", 4), ("c", 6), ("e", 0)]
    by_video = {}
    for video, seqs in (("a", [0, 3]), ("b", [1]), ("c", [2])):
        t = np.concatenate([true[s][real[s]] for s in seqs])
        p = np.concatenate([pred[s][real[s]] for s in seqs])
        by_video[video] = numpy_measures(t, p)
    row = {r["video_id"]: r for r in rows}
    for video, measures in by_video.items():
        for name, (c, r, mse) in measures.items():
            assert row[video][name]["ccc"] == pytest.approx(c)
            assert row[video][name]["mse"] == pytest.approx(mse)
            if not (video == "c" and name == "valence"):
                assert row[video][name]["pearson"] == pytest.approx(r)
    assert row["c"]["valence"]["pearson"] is None and row["c"]["valence"]["ccc"] == pytest.approx(0.0)
    assert all(row["e"][n][m] is None for n in NAMES for m in ("ccc", "pearson", "mse"))
    # means over the videos where a measure is defined; the others counted
    for name in NAMES:
        for k, measure in enumerate(("ccc", "pearson", "mse")):
            values = [by_video[v][name][k] for v in by_video if not (v == "c" and name == "valence" and k == 1)]
            assert summary[name][measure] == pytest.approx(np.mean(values))
    assert summary["n_videos"] == 4
    assert summary["undefined"] == {"valence": {"ccc": 1, "pearson": 2, "mse": 1},
                                    "arousal": {"ccc": 1, "pearson": 1, "mse": 1}}
    assert metrics.abaw_score({"valence": {"ccc": None}, "arousal": {"ccc": 0.5}}) is None


def test_affwild2_files_have_a_line_per_source_frame_and_fill_gaps_with_the_nearest(tmp_path):
    # track x: two segment records (frames 2, 3, 4 then 8, 9) with padding; y: one frame, a sequence output
    index = np.array([[2, 3, 4, -1], [8, 9, -1, -1], [5, -1, -1, -1]])
    mask = (index >= 0).astype(float)
    pred = np.arange(24, dtype=float).reshape(3, 4, 2) / 10
    pred[mask == 0] = 99.0
    summary = evaluation.write_affwild2(tmp_path / "out", ["x", "x", "y"], index, pred, mask, {"x": 12, "y": 7})
    assert summary == {"folder": "out", "tracks": 2, "frames": 19, "predicted": 6, "filled": 13}
    lines = (tmp_path / "out" / "x.txt").read_text().splitlines()
    assert lines[0] == "valence,arousal" and len(lines) == 1 + 12
    got = np.array([[float(v) for v in line.split(",")] for line in lines[1:]])
    known = {2: pred[0, 0], 3: pred[0, 1], 4: pred[0, 2], 8: pred[1, 0], 9: pred[1, 1]}
    frames = np.array(sorted(known))
    for f in range(12):  # the nearest predicted frame, the earlier on a tie (6: 4 and 8 are 2 away)
        nearest = frames[np.argmin(np.abs(frames - f))]
        np.testing.assert_allclose(got[f], known[nearest], atol=1e-6)
    y = (tmp_path / "out" / "y.txt").read_text().splitlines()
    assert len(y) == 8 and all(line == "1.600000,1.700000" for line in y[1:])
    # a sequence-level output (N, 2) is each of its frames' prediction; a frame predicted twice: the mean
    evaluation.write_affwild2(tmp_path / "seq", ["z", "z"], np.array([[0, 1], [1, -1]]),
                              np.array([[0.2, 0.4], [0.4, 0.0]]), np.array([[1, 1], [1, 0]]), {})
    assert (tmp_path / "seq" / "z.txt").read_text().splitlines()[1:] == ["0.200000,0.400000", "0.300000,0.200000"]


# --- a prepared set, a model, the evaluation -----------------------------------------------------

@pytest.fixture(scope="module")
def va_data(tmp_path_factory):
    root = tmp_path_factory.mktemp("va_eval")
    return str(root), *write_va_dataset(str(root), seed=3)


def test_the_pipeline_gives_each_steps_source_frame(va_data):
    root, manifest, truth = va_data
    cfg_ = cfg.PipelineConfig(seq_len=SEQ_LEN, inputs=("frames",), targets=("va",), batch_size=3)
    seen = {}
    for x, y, meta in sequences(manifest, root, "val", cfg_, with_meta=True).as_numpy_iterator():
        assert ((meta["frame_index"] >= 0) == (x["mask"] > 0)).all()  # padded steps: -1
        for vid, index, mask in zip(meta["video_id"], meta["frame_index"], x["mask"]):
            seen.setdefault(vid.decode(), []).extend(index[mask > 0])
    assert {k: sorted(v) for k, v in seen.items()} == {k: list(t[1]) for k, t in truth["val"].items()}


def frame_model(cumulative=False):
    """Frames (L, 8, 8, 3) in [0, 255] and mask -> per-frame va = mean RGB @ W + B on real steps;
    ``cumulative``: the running sum of mean RGB @ W over the real steps (a recurrent state, so the
    last of repeated steps differs from the first)."""
    layers = keras.layers
    frames = keras.Input((SEQ_LEN, 8, 8, 3), name="frames")
    mask = keras.Input((SEQ_LEN,), name="mask")
    rgb = layers.TimeDistributed(layers.GlobalAveragePooling2D())(frames)
    step = layers.Dense(2, use_bias=False, kernel_initializer="ones")(layers.Reshape((SEQ_LEN, 1))(mask))
    dense = layers.Dense(2, use_bias=not cumulative)
    if cumulative:
        rnn = layers.SimpleRNN(2, activation="linear", return_sequences=True, name="va")
        out = rnn(layers.Multiply()([dense(rgb), step]))
        rnn.set_weights([np.eye(2, dtype=np.float32), np.eye(2, dtype=np.float32), np.zeros(2, np.float32)])
        dense.set_weights([W])
    else:
        out = layers.Multiply(name="va")([dense(rgb), step])
        dense.set_weights([W, B])
    return keras.Model({"frames": frames, "mask": mask}, {"va": out})


COLUMNS = [{"metric": "va.frame.valence.ccc", "value": 0.53}, {"metric": "va.frame.arousal.ccc", "value": 0.62},
           {"table": "Table 2", "metric": "va.frame.valence.mse", "value": 0.04},
           {"table": "Table 2", "metric": "va.frame.arousal.mse", "value": 0.02}]


def va_experiment(root, **extra):
    raw = {"name": "vgg16_affwild_va", "description": "thesis 001 row at test size",
           "reproduces": {"thesis": "001", "table": "Table 1", "row": "VGG16 Affwild pretrained", "columns": COLUMNS},
           "data": {"root": root, "pipeline": {"seq_len": SEQ_LEN, "inputs": ["frames"], "targets": ["va"],
                                              "normalize": "none", "batch_size": 2}},
           "model": {"name": "alexnet_gru_va"}, "evaluation": {"split": "val"}}
    return cfg.from_dict(cfg.merge(raw, extra))


def make_run(exp, run_dir, model):
    run = training.prepare_run_dir(exp, run_dir)
    for path in (run.best, run.last):
        model.save(path)
    return run


def predicted(frames, cumulative_steps=0):
    """The frame model's output on uint8 frames (n, 8, 8, 3), by NumPy."""
    rgb = frames.reshape(len(frames), -1, 3).astype(np.float64).mean(axis=1)
    return rgb @ W * cumulative_steps if cumulative_steps else rgb @ W + B


@pytest.fixture(scope="module")
def evaluated(va_data, tmp_path_factory):
    root, _, _ = va_data
    exp = va_experiment(root)
    run = make_run(exp, tmp_path_factory.mktemp("va_run") / "run", frame_model())
    return exp, run.root, evaluation.evaluate(run.root)


def test_metrics_json_has_pooled_per_video_and_abaw_numbers(va_data, evaluated):
    _, _, truth = va_data
    _, run_dir, result = evaluated
    val = truth["val"]
    t = np.concatenate([v[2] for v in val.values()]).astype(np.float64)
    p = np.concatenate([predicted(v[0]) for v in val.values()])
    va = json.loads((run_dir / "metrics.json").read_text())["va"]
    for name, (c, r, mse) in numpy_measures(t, p).items():
        assert va["frame"][name]["ccc"] == pytest.approx(c, rel=1e-5)
        assert va["frame"][name]["pearson"] == pytest.approx(r, rel=1e-5)
        assert va["frame"][name]["mse"] == pytest.approx(mse, rel=1e-5)
    assert va["frame"]["n"] == len(t) == 11
    assert va["abaw"] == {"p": pytest.approx((va["frame"]["valence"]["ccc"] + va["frame"]["arousal"]["ccc"]) / 2),
                          "n": 11}
    per_video = {track: numpy_measures(v[2].astype(np.float64), predicted(v[0])) for track, v in val.items()}
    with open(run_dir / evaluation.VA_PER_VIDEO, newline="") as f:
        rows = {r["video_id"]: r for r in csv.DictReader(f)}
    assert set(rows) == set(val) and rows["v1_left"]["frames"] == "5"  # two segments, padding masked
    for name in NAMES:
        for k, measure in enumerate(("ccc", "pearson", "mse")):
            mean = np.mean([m[name][k] for m in per_video.values()])
            assert va["per_video"][name][measure] == pytest.approx(mean, rel=1e-5)
            for track, m in per_video.items():
                assert float(rows[track][f"{name}_{measure}"]) == pytest.approx(m[name][k], rel=1e-4)
    assert result["paths"]["va_per_video"].endswith(evaluation.VA_PER_VIDEO)


def test_affwild2_files_hold_every_source_frame(va_data, evaluated):
    _, manifest, truth = va_data
    _, run_dir, result = evaluated
    folder = run_dir / evaluation.VA_FRAMES
    assert sorted(p.name for p in folder.iterdir()) == ["v1_left.txt", "v1_right.txt"]
    filled = 0
    for track, (frames, index, _) in truth["val"].items():
        lines = (folder / f"{track}.txt").read_text().splitlines()
        total = manifest["videos"][f"val/{track}"]["frames_total"]
        assert lines[0] == "valence,arousal" and len(lines) == 1 + total
        got = np.array([[float(v) for v in line.split(",")] for line in lines[1:]])
        values = predicted(frames)
        for f in range(total):  # the nearest predicted frame (argmin: the earlier on a tie)
            np.testing.assert_allclose(got[f], values[np.argmin(np.abs(index - f))], atol=2e-6)
        filled += total - len(index)
    assert result["va"]["affwild2"] == {"folder": evaluation.VA_FRAMES, "tracks": 2, "frames": 20, "predicted": 11,
                                        "filled": filled}


def test_the_thesis_columns_sit_beside_ours(evaluated, tmp_path):
    exp, run_dir, result = evaluated
    columns = result["reference"]["columns"]
    assert [(c["table"], c["label"], c["value"]) for c in columns] == [
        ("Table 1", "valence CCC", 0.53), ("Table 1", "arousal CCC", 0.62),
        ("Table 2", "valence MSE", 0.04), ("Table 2", "arousal MSE", 0.02)]
    va = result["va"]["frame"]
    ours = [va["valence"]["ccc"], va["arousal"]["ccc"], va["valence"]["mse"], va["arousal"]["mse"]]
    assert [c["ours"] for c in columns] == pytest.approx(ours)
    assert [c["difference"] for c in columns] == pytest.approx([o - c["value"] for o, c in zip(ours, columns)])
    report = (run_dir / evaluation.REPORT).read_text()
    assert "## Thesis 001 VGG16 Affwild pretrained" in report and "| Table 2 | arousal MSE |" in report
    assert "ABAW P" in report and "per video (mean of 2)" in report

    # fer-keras results: a row per model, each table's valence and arousal columns, as Markdown, JSON and CSV
    experiments = tmp_path / "experiments"
    experiments.mkdir()
    (experiments / "a.yaml").write_text(yaml.safe_dump(cfg.to_dict(exp)))
    other = cfg.to_dict(exp)
    other["reproduces"] = {**other["reproduces"], "row": "AlexNet GRU",
                           "columns": [{**c, "value": 0.4} for c in COLUMNS]}
    (experiments / "b.yaml").write_text(yaml.safe_dump(other))
    out, out_json, out_csv = tmp_path / "t.md", tmp_path / "t.json", tmp_path / "t.csv"
    counts = results.write([str(run_dir)], out=str(out), experiments=str(experiments), json_path=str(out_json),
                           csv_path=str(out_csv))
    assert counts == {"rows": 4, "filled": 2, "missing": 2, "unreferenced": 0}
    text = out.read_text()
    assert "## Thesis 001: Table 1" in text and "## Thesis 001: Table 2" in text
    assert "| row | valence CCC (ours / thesis) | valence CCC difference | arousal CCC (ours / thesis) |" in text
    assert f"| VGG16 Affwild pretrained | {ours[0]:.4g} / 0.53 | {ours[0] - 0.53:+.4g} |" in text
    assert "| AlexNet GRU |  / 0.4 |  |" in text and "not run (" in text
    tables = json.loads(out_json.read_text())["tables"]
    assert [(t["table"], [r["row"] for r in t["rows"]]) for t in tables] == [
        ("Table 1", ["VGG16 Affwild pretrained", "AlexNet GRU"]),
        ("Table 2", ["VGG16 Affwild pretrained", "AlexNet GRU"])]
    mse = tables[1]["rows"][0]["columns"]
    assert [(c["label"], c["value"]) for c in mse] == [("valence MSE", 0.04), ("arousal MSE", 0.02)]
    assert [c["ours"] for c in mse] == pytest.approx(ours[2:])
    with open(out_csv, newline="") as f:
        assert len(list(csv.DictReader(f))) == 8  # a CSV row per number


def test_a_row_of_columns_takes_no_single_value():
    with pytest.raises(cfg.ConfigError, match="given in its columns"):
        cfg.from_dict({"reproduces": {"table": "T", "row": "r", "value": 0.5, "columns": COLUMNS}})
    with pytest.raises(cfg.ConfigError, match=r"columns\[0\]"):
        cfg.from_dict({"reproduces": {"table": "T", "row": "r", "columns": [{"value": 0.5}]}})


def test_still_images_are_repeated_over_the_sequence_and_the_last_step_taken(va_data, tmp_path):
    root, _, truth = va_data
    stills = truth["stills"]
    t = np.concatenate([v[2] for v in stills.values()]).astype(np.float64)
    for repeat, steps in ((True, SEQ_LEN), (False, 1)):
        exp = va_experiment(root, evaluation={"split": "stills", "repeat_frames": repeat},
                            data={"pipeline": {"padding": "zeros"}})
        run = make_run(exp, tmp_path / f"run-{repeat}", frame_model(cumulative=True))
        va = evaluation.evaluate(run.root)["va"]
        p = np.concatenate([predicted(v[0], steps) for v in stills.values()])
        assert va["frame"]["n"] == 3
        for name, (c, _, mse) in numpy_measures(t, p).items():
            assert va["frame"][name]["ccc"] == pytest.approx(c, rel=1e-5)
            assert va["frame"][name]["mse"] == pytest.approx(mse, rel=1e-5)
        for track, (frames, _, _) in stills.items():
            line = (run.root / evaluation.VA_FRAMES / f"{track}.txt").read_text().splitlines()[1]
            np.testing.assert_allclose([float(v) for v in line.split(",")], predicted(frames, steps)[0], atol=2e-6)
