"""Late fusion: every method against a hand computation, alignment on video id, errors, fuse_to_dir."""
import csv
import json
import logging
import math
import os

import numpy as np
import pytest

from fer_keras.fusion import METHODS, class_weights, fuse, fuse_to_dir, load_run

CLASSES = ("A", "B", "C")
IDS = ("v0", "v1", "v2", "v3")
LABELS = ("A", "C", "A", "B")
ACC = (0.5, 0.3, 0.4)
COUNTS = (8, 8, 2)   # class weights 18/(3*8) = 0.75, 0.75 and 18/(3*2) = 3
# PROBS[model][video]: a tiny example on which the methods disagree.
PROBS = (
    ((0.5, 0.2, 0.3), (0.3, 0.1, 0.6), (0.1, 0.6, 0.3), (0.1, 0.7, 0.2)),
    ((0.1, 0.7, 0.2), (0.2, 0.7, 0.1), (0.7, 0.2, 0.1), (0.1, 0.7, 0.2)),
    ((0.1, 0.3, 0.6), (0.5, 0.1, 0.4), (0.5, 0.2, 0.3), (0.5, 0.2, 0.3)),
)


def write_run(run_dir, probs, *, ids=IDS, labels=LABELS, classes=CLASSES, accuracy=0.5, header=None):
    os.makedirs(run_dir, exist_ok=True)
    with open(os.path.join(run_dir, "predictions.csv"), "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(header or ["video_id", "label", "prediction", *(f"p_{c}" for c in classes)])
        for vid, label, p in zip(ids, labels, probs):
            w.writerow([vid, label, classes[int(np.argmax(p))], *(repr(float(x)) for x in p)])
    with open(os.path.join(run_dir, "metrics.json"), "w") as f:
        json.dump({"accuracy": accuracy, "classes": list(classes)}, f)
    return str(run_dir)


def read(run_dir, name):
    with open(os.path.join(run_dir, name)) as f:
        return f.read()


@pytest.fixture
def run_dirs(tmp_path):
    return [write_run(tmp_path / f"m{i}", PROBS[i], accuracy=ACC[i]) for i in range(3)]


@pytest.fixture
def runs(run_dirs):
    return [load_run(d) for d in run_dirs]


def anchored_logit(m, v, k):
    """log p - min log p of one model, video and class, written out for the hand computation."""
    p = PROBS[m][v]
    return math.log(p[k]) - math.log(min(p))


def test_load_run_reads_the_contract(runs):
    run = runs[0]
    assert run.name == "m0" and run.classes == CLASSES and run.video_ids == IDS and run.accuracy == 0.5
    assert run.labels.tolist() == [0, 2, 0, 1]
    np.testing.assert_allclose(run.probs, PROBS[0])


def test_t000_1_votes_weighted_by_accuracy(runs):
    # argmax per model: v0 A,B,C; v1 C,B,A; v2 B,A,A; v3 B,B,A
    pred, scores = fuse(runs, "t000_1")
    np.testing.assert_allclose(scores, [[0.5, 0.3, 0.4], [0.4, 0.3, 0.5], [0.7, 0.5, 0], [0.4, 0.8, 0]])
    assert pred.tolist() == [0, 2, 0, 1]


def test_thesis_002_methods(runs):
    pred, scores = fuse(runs, "average")
    np.testing.assert_allclose(scores[0], [0.7 / 3, 1.2 / 3, 1.1 / 3])
    assert pred.tolist() == [1, 2, 0, 1]
    pred, scores = fuse(runs, "weighted_average")
    # v0: A .5*.5+.3*.1+.4*.1 = .32, B .5*.2+.3*.7+.4*.3 = .43, C .5*.3+.3*.2+.4*.6 = .45, then / 3
    np.testing.assert_allclose(scores[0], [0.32 / 3, 0.43 / 3, 0.45 / 3])
    assert pred.tolist() == [2, 2, 0, 1]
    pred, scores = fuse(runs, "max")
    np.testing.assert_allclose(scores, [[0.5, 0.7, 0.6], [0.5, 0.7, 0.6], [0.7, 0.6, 0.3], [0.5, 0.7, 0.3]])
    assert pred.tolist() == [1, 1, 0, 1]


def hand_logit_sum(weights, class_factor=(1, 1, 1), rescale=False):
    out = np.zeros((4, 3))
    for v in range(4):
        for k in range(3):
            for m in range(3):
                z = anchored_logit(m, v, k)
                if rescale:
                    z /= max(anchored_logit(m, v, j) for j in range(3))
                out[v, k] += weights[m] * class_factor[k] * z
    return out


@pytest.mark.parametrize("method, options, weights, factor, expected", [
    ("t000_2", {}, ACC, (1, 1, 1), [2, 2, 1, 1]),
    ("t000_2", {"rescale": True}, ACC, (1, 1, 1), [2, 2, 0, 1]),
    ("t000_3", {}, (1, 1, 1), (1, 1, 1), [1, 0, 0, 1]),
    ("t000_3", {"rescale": True}, (1, 1, 1), (1, 1, 1), [2, 0, 0, 1]),
    ("t000_4", {"class_counts": COUNTS}, ACC, (0.75 ** 0.5, 0.75 ** 0.5, 3 ** 0.5), [2, 2, 2, 1]),
    ("t000_4", {"class_counts": COUNTS, "rescale": True}, ACC, (0.75 ** 0.5, 0.75 ** 0.5, 3 ** 0.5), [2, 2, 2, 2]),
])
def test_t000_logit_methods(runs, method, options, weights, factor, expected):
    pred, scores = fuse(runs, method, **options)
    np.testing.assert_allclose(scores, hand_logit_sum(weights, factor, options.get("rescale", False)))
    assert pred.tolist() == expected


def test_the_tiny_example_separates_the_methods(runs):
    options = {"t000_4": {"class_counts": COUNTS}}
    preds = {m: tuple(fuse(runs, m, **options.get(m, {}))[0]) for m in METHODS if m != "t000_5"}
    assert len(set(preds.values())) == len(preds)


def test_log_probabilities_keep_the_argmax_of_true_logits():
    """Weighted sums of log-softmax and of logits differ by a per-video constant; rescaling is exact."""
    rng = np.random.default_rng(0)
    z = rng.normal(size=(3, 50, 7)) * 3
    p = np.exp(z) / np.exp(z).sum(-1, keepdims=True)
    from fer_keras.fusion import _logits, _t000_2
    w = [0.5, 0.3, 0.4]
    assert (_t000_2(p, None, accuracies=w).argmax(-1) == np.einsum("m,mnk->nk", w, z).argmax(-1)).all()
    minmax = (z - z.min(-1, keepdims=True)) / np.ptp(z, axis=-1, keepdims=True)
    np.testing.assert_allclose(_logits(p, rescale=True), minmax, atol=1e-9)


def test_class_weights_are_balanced_inverse_frequency():
    np.testing.assert_allclose(class_weights([8, 8, 2]), [0.75, 0.75, 3])
    np.testing.assert_allclose(class_weights([5, 5, 5]), [1, 1, 1])
    with pytest.raises(ValueError, match="positive"):
        class_weights([3, 0, 1])


def test_t000_4_class_counts_by_name_and_length_check(runs):
    by_name = fuse(runs, "t000_4", class_counts={"C": 2, "A": 8, "B": 8})[1]
    np.testing.assert_allclose(by_name, fuse(runs, "t000_4", class_counts=COUNTS)[1])
    with pytest.raises(ValueError, match="2 entries for 3 classes"):
        fuse(runs, "t000_4", class_counts=[1, 2])
    with pytest.raises(ValueError, match="needs \\['class_counts'\\]"):
        fuse(runs, "t000_4")


def learnable_runs(tmp_path, n=40, unlabelled=0):
    """Model 0 knows the label, model 1 is noise: a regression should lean on model 0."""
    rng = np.random.default_rng(1)
    labels = np.arange(n) % 3
    good = rng.dirichlet([1, 1, 1], size=n) * 0.3
    good[np.arange(n), labels] += 0.7
    noise = rng.dirichlet([1, 1, 1], size=n)
    ids = [f"v{i}" for i in range(n + unlabelled)]
    names = [CLASSES[k] for k in labels] + [""] * unlabelled
    extra_good, extra_noise = rng.dirichlet([1, 1, 1], size=(2, unlabelled))
    return [load_run(write_run(tmp_path / name, np.concatenate([p, e]), ids=ids, labels=names, accuracy=0.5))
            for name, p, e in (("good", good, extra_good), ("noise", noise, extra_noise))]


def test_t000_5_linear_regression_out_of_fold(tmp_path):
    from sklearn.linear_model import LinearRegression
    from sklearn.model_selection import StratifiedKFold

    from fer_keras.fusion import _logits

    runs = learnable_runs(tmp_path, unlabelled=3)
    pred, scores = fuse(runs, "t000_5", seed=3)
    labels = runs[0].labels
    known = labels >= 0
    assert (pred[known] == labels[known]).mean() >= 0.9

    # Each labelled video is scored by a fit that never saw it; unlabelled ones by a fit on all labelled.
    z = _logits(np.stack([r.probs for r in runs]))
    lab = np.flatnonzero(known)
    train, test = next(StratifiedKFold(5, shuffle=True, random_state=3).split(lab, labels[lab]))
    for fit_on, scored in ((lab[train], lab[test]), (lab, np.flatnonzero(~known))):
        for k in range(3):
            reg = LinearRegression().fit(z[:, fit_on, k].T, labels[fit_on] == k)
            np.testing.assert_allclose(scores[scored, k], reg.predict(z[:, scored, k].T))


def test_t000_5_needs_labels(tmp_path):
    runs = [load_run(write_run(tmp_path / f"m{i}", PROBS[i], labels=[""] * 4)) for i in range(3)]
    with pytest.raises(ValueError, match="labelled videos"):
        fuse(runs, "t000_5")


def test_runs_align_on_video_id(tmp_path, caplog):
    a = write_run(tmp_path / "a", PROBS[0], labels=["", "", "", ""], accuracy=0.5)
    # b lists v3, v1, v0 (and v9) in another order, and carries the labels a lacks
    b = write_run(tmp_path / "b", [PROBS[1][3], PROBS[1][1], PROBS[1][0], (0.2, 0.3, 0.5)],
                  ids=["v3", "v1", "v0", "v9"], labels=["B", "C", "A", "C"], accuracy=0.3)
    with caplog.at_level(logging.WARNING, logger="fer_keras.fusion"):
        pred, scores = fuse([load_run(a), load_run(b)], "average")
    expected = [np.add(PROBS[0][v], PROBS[1][v]) / 2 for v in (0, 1, 3)]
    np.testing.assert_allclose(scores, expected)
    assert "dropped 1 of 4 videos of run a" in caplog.text and "dropped 1 of 4 videos of run b" in caplog.text

    metrics = fuse_to_dir([a, b], "average", tmp_path / "out")
    with open(tmp_path / "out" / "predictions.csv") as f:
        rows = list(csv.DictReader(f))
    assert [r["video_id"] for r in rows] == ["v0", "v1", "v3"]
    assert [r["label"] for r in rows] == ["A", "C", "B"]
    assert metrics["n_videos"] == 3 and metrics["n_labelled"] == 3


def test_missing_files_and_columns_name_the_file(tmp_path):
    run = write_run(tmp_path / "r", PROBS[0])
    os.remove(os.path.join(run, "predictions.csv"))
    with pytest.raises(FileNotFoundError, match="r/predictions.csv"):
        load_run(run)
    bad = write_run(tmp_path / "cols", PROBS[0], header=["video_id", "label", "prediction", "p_A", "p_B", "p_X"])
    with pytest.raises(ValueError, match=r"cols/predictions.csv: missing columns \['p_C'\]"):
        load_run(bad)
    os.remove(os.path.join(bad, "metrics.json"))
    with pytest.raises(FileNotFoundError, match="cols/metrics.json"):
        load_run(bad)


def test_bad_rows_name_file_and_line(tmp_path):
    run = write_run(tmp_path / "r", PROBS[0], labels=["A", "Z", "A", "B"])
    with pytest.raises(ValueError, match=r"r/predictions.csv:3: label 'Z'"):
        load_run(run)
    run = write_run(tmp_path / "d", PROBS[0], ids=["v0", "v1", "v1", "v3"])
    with pytest.raises(ValueError, match="duplicate video ids"):
        load_run(run)


def test_class_orders_must_agree(tmp_path):
    a = write_run(tmp_path / "a", PROBS[0])
    b = write_run(tmp_path / "b", [p[::-1] for p in PROBS[1]], classes=CLASSES[::-1])
    with pytest.raises(ValueError, match="class orders disagree: .*a/metrics.json.*b/metrics.json"):
        fuse([load_run(a), load_run(b)], "average")


def test_conflicting_labels_are_an_error(tmp_path):
    a = write_run(tmp_path / "a", PROBS[0])
    b = write_run(tmp_path / "b", PROBS[1], labels=["A", "C", "A", "C"])
    with pytest.raises(ValueError, match="labels video 'v3' differently"):
        fuse([load_run(a), load_run(b)], "average")


def test_unknown_method_and_options(runs):
    with pytest.raises(ValueError, match="unknown fusion method 'vote'.*average"):
        fuse(runs, "vote")
    with pytest.raises(ValueError, match="unknown \\['rescale'\\]"):
        fuse(runs, "t000_1", rescale=True)


def test_unlabelled_runs_need_accuracies_for_weighted_methods(tmp_path):
    dirs = [write_run(tmp_path / f"m{i}", PROBS[i], labels=[""] * 4, accuracy=None) for i in range(3)]
    runs = [load_run(d) for d in dirs]
    with pytest.raises(ValueError, match="pass accuracies"):
        fuse(runs, "t000_2")
    assert fuse(runs, "t000_2", accuracies=ACC)[0].tolist() == [2, 2, 1, 1]
    metrics = fuse_to_dir(dirs, "average", tmp_path / "out")
    assert metrics["accuracy"] is None and metrics["macro_f1"] is None


def test_fuse_to_dir_writes_a_run(run_dirs, tmp_path):
    out = tmp_path / "fused" / "t000_1"
    before = {d: read(d, "predictions.csv") for d in run_dirs}
    metrics = fuse_to_dir(run_dirs, "t000_1", out)
    assert sorted(os.listdir(out)) == ["metrics.json", "predictions.csv"]
    assert before == {d: read(d, "predictions.csv") for d in run_dirs}

    with open(out / "predictions.csv") as f:
        rows = list(csv.DictReader(f))
    assert list(rows[0]) == ["video_id", "label", "prediction", "p_A", "p_B", "p_C"]
    assert [r["prediction"] for r in rows] == ["A", "C", "A", "B"]
    # votes divided by their sum: v0 (.5, .3, .4) / 1.2
    np.testing.assert_allclose([float(rows[0][f"p_{c}"]) for c in CLASSES], np.array([0.5, 0.3, 0.4]) / 1.2)
    # the written run reads back like any other
    assert load_run(out).labels.tolist() == [0, 2, 0, 1]

    assert json.loads(read(out, "metrics.json")) == metrics
    assert metrics["accuracy"] == 1.0 and metrics["macro_f1"] == 1.0
    assert metrics["method"] == "t000_1" and metrics["options"] == {"accuracies": list(ACC)}
    assert [i["name"] for i in metrics["inputs"]] == ["m0", "m1", "m2"]


def test_fuse_to_dir_logit_scores_become_a_distribution(run_dirs, tmp_path):
    metrics = fuse_to_dir(run_dirs, "t000_3", tmp_path / "out")
    run = load_run(tmp_path / "out")
    np.testing.assert_allclose(run.probs.sum(-1), 1, atol=1e-6)
    assert run.probs.argmax(-1).tolist() == [1, 0, 0, 1]
    # labels A, C, A, B vs predictions B, A, A, B: accuracy 2/4, F1 A 0.5, B 2/3, C 0
    assert metrics["accuracy"] == 0.5
    assert metrics["macro_f1"] == pytest.approx((0.5 + 2 / 3 + 0) / 3)


def test_fuse_to_dir_refuses_an_input_as_output(run_dirs):
    with pytest.raises(ValueError, match="is one of the input runs"):
        fuse_to_dir(run_dirs, "average", run_dirs[1])
