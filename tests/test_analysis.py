"""Thesis 003's analyses (issue 28 part 4): the VA-plane numbers against a hand computation,
t-SNE maps of a tiny set, activation maximisation that raises its unit's logit without changing
a weight, saliency, and `fer-keras analyse` plus its notebook on a run trained on a tiny
prepared set with per-frame categories and valence/arousal."""
import csv
import html
import json
import os
import re

import keras
import numpy as np
import pytest
import tensorflow as tf
from keras import layers

from fer_keras import config as cfg
from fer_keras import training
from fer_keras.analysis import embedding, maximisation, va_plane
from fer_keras.classes import AFFWILD_CATEGORIES
from fer_keras.cli import main
from fer_keras.data.integrity import describe
from fer_keras.data.preprocessing import preprocess
from fer_keras.data.schema import VideoRecord, serialize
from fer_keras.models import backbones, sequence

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
NOTEBOOK = os.path.join(REPO, "experiments", "notebooks", "va_analysis.ipynb")
FACE, STEPS = 32, 3
TINY = "analysis_tiny"


# --- the VA plane against a hand computation ----------------------------------------------------

def test_quadrants_count_zero_as_non_negative():
    va = [[0.5, 0.5], [-0.5, 0.5], [-0.5, -0.5], [0.5, -0.5], [0.0, 0.0], [-0.1, 0.0], [0.0, -0.1]]
    assert va_plane.quadrant(va).tolist() == [0, 1, 2, 3, 0, 1, 3]


def test_cells_split_each_axis_into_equal_bins():
    va = [[-1.0, -1.0], [-0.51, 0.0], [0.0, 0.49], [1.0, 1.0], [2.0, -3.0]]
    # bins of 0.5 from -1: [-1,-.5) 0, [-.5,0) 1, [0,.5) 2, [.5,1] 3; outside: the edge cells
    assert va_plane.cells(va, bins=4).tolist() == [0 * 4 + 0, 0 * 4 + 2, 2 * 4 + 2, 3 * 4 + 3, 3 * 4 + 0]


# Three classes on a 2x2 grid (cells: valence bin, arousal bin; 0 goes to the upper bin):
#   class 0: (.5, .5) twice          -> cell (1,1), (1,1)
#   class 1: (-.5, .5), (.5, .5)     -> cells (0,1), (1,1)
#   class 2: (-.5, -.5) twice        -> cell (0,0), (0,0)
#   one unlabelled frame (-1), and class 1's (0, -0.2) only in the quadrant table's second set
HAND_VA = [[.5, .5], [.5, .5], [-.5, .5], [.5, .5], [-.5, -.5], [-.5, -.5], [.9, -.9]]
HAND_CATEGORY = [0, 0, 1, 1, 2, 2, -1]
# By hand, with N = 6 labelled frames:
#   H(category) = log2 3                                         = 1.5849625
#   cells (1,1): 3, (0,1): 1, (0,0): 2 -> H(cell) = 1/2*1 + 1/6*log2 6 + 1/3*log2 3 = 1.4591479
#   joint counts 2, 1, 1, 2          -> H(joint) = 2/3*log2 3 + 1/3*log2 6   = 1.9182958
#   H(category | cell) = H(joint) - H(cell): only cell (1,1) is mixed (2:1), so 1/2 * H(2/3, 1/3)
#                                                                 = 0.4591479
#   H(cell | category) = H(joint) - H(category): only class 1 is split (1:1), so 1/3 * 1 = 0.3333333
#   I = H(category) - H(category | cell)                          = 1.1258146
HAND = {"h_category": 1.5849625, "h_cell": 1.4591479, "h_category_given_cell": 0.4591479,
        "h_cell_given_category": 0.3333333, "mutual_information": 1.1258146}


def test_entropies_and_quadrant_table_are_the_hand_computed_ones(tmp_path):
    classes = ("a", "b", "c")
    va = HAND_VA + [[0.0, -0.2]]
    category = HAND_CATEGORY + [1]
    paths = va_plane.analyse(HAND_VA, HAND_CATEGORY, classes, tmp_path / "hand", bins=2)
    assert set(paths) == {"scatter", "histograms", "quadrants", "entropies"}
    assert all(p.is_file() for p in paths.values())
    got = json.loads(paths["entropies"].read_text())
    for key, value in HAND.items():
        assert got[key] == pytest.approx(value, abs=1e-6), key
    assert (got["frames"], got["unlabelled"], got["bins"], got["classes"]) == (6, 1, 2, ["a", "b", "c"])

    # quadrants, with (0, -0.2) of class 1 in Q4: a: Q1 2; b: Q1 1, Q2 1, Q4 1; c: Q3 2
    va_plane.write_quadrants(va_plane.quadrant_counts(va, category, 3), classes, tmp_path / "q.csv")
    with open(tmp_path / "q.csv", newline="") as f:
        rows = list(csv.reader(f))
    assert rows[0] == ["category", "Q1", "Q2", "Q3", "Q4", "total", "Q1_fraction", "Q2_fraction", "Q3_fraction",
                       "Q4_fraction"]
    assert rows[1] == ["a", "2", "0", "0", "0", "2", "1.000000", "0.000000", "0.000000", "0.000000"]
    assert rows[2] == ["b", "1", "1", "0", "1", "3", "0.333333", "0.333333", "0.000000", "0.333333"]
    assert rows[3] == ["c", "0", "0", "2", "0", "2", "0.000000", "0.000000", "1.000000", "0.000000"]


def test_a_category_confined_to_one_cell_has_no_cell_entropy():
    got = va_plane.entropies([[0.1, 0.1], [0.2, 0.3], [-0.9, -0.9]], [1, 1, 0], 2, bins=4)
    assert got["h_cell_given_category"] == 0.0 and got["h_category_given_cell"] == 0.0
    assert got["mutual_information"] == pytest.approx(got["h_category"])


@pytest.mark.parametrize("va, category, message", [
    ([[0, 0], [0, 0]], [0, 3], "category values must be 0..2 or -1"),
    ([[0, 0], [0, 0]], [0], "category must be (N,) with N = 2"),
    ([[0, 0, 0]], [0], "va must be (N, 2)"),
    ([[0, np.nan]], [0], "non-finite"),
    ([[0, 0]], [-1], "none of the 1 frames has a category"),
])
def test_bad_arrays_are_refused_with_the_reason(va, category, message):
    with pytest.raises(ValueError, match=re.escape(message)):
        va_plane.entropies(va, category, 3)


# --- t-SNE --------------------------------------------------------------------------------------

def test_tsne_maps_a_tiny_set(tmp_path):
    rng = np.random.default_rng(0)
    category = np.repeat([0, 1, 2, -1], 8)
    vectors = rng.normal(size=(32, 6)) + 5 * np.eye(6)[np.maximum(category, 0)]
    va = rng.uniform(-1, 1, (32, 2))
    faces = rng.integers(0, 256, (32, 12, 12, 3), dtype=np.uint8)
    paths = embedding.embed(vectors, tmp_path, "cnn", category=category, classes=("x", "y", "z"), va=va,
                            faces=faces, max_points=20, max_faces=9)
    assert set(paths) == {"coordinates", "category", "valence", "arousal", "faces"}
    assert all(p.is_file() and p.stat().st_size > 0 for p in paths.values())
    with open(paths["coordinates"], newline="") as f:
        rows = list(csv.DictReader(f))
    chosen = [int(r["row"]) for r in rows]
    assert len(rows) == 20 and chosen == sorted(set(chosen)) and chosen == embedding.subsample(32, 20).tolist()
    assert [int(r["category"]) for r in rows] == category[chosen].tolist()
    assert [float(r["valence"]) for r in rows] == pytest.approx(va[chosen, 0], abs=1e-5)
    from PIL import Image
    assert Image.open(paths["faces"]).size == (3 * 32, 3 * 32)  # 9 faces: a 3x3 grid of 32 px cells
    # a perplexity above the number of points is clipped
    assert embedding.tsne(vectors[:4], perplexity=30).shape == (4, 2)


def test_the_image_grid_gives_each_point_the_nearest_free_cell():
    corners = np.array([[0, 0], [1, 1], [0, 1], [1, 0]], float)  # 2x2 grid, row 0 at the top
    assert embedding.grid_cells(corners, 2).tolist() == [2, 1, 0, 3]
    # two points at the same place: the second takes the nearest cell still free
    assert embedding.grid_cells(np.array([[0, 0], [0, 0], [1, 1]], float), 2).tolist() == [2, 0, 1]


def test_the_draw_is_uniform_seeded_and_in_stream_order():
    from fer_keras.analysis.report import _Draw

    def drawn(seed, size, batches=((0, 7), (7, 20), (20, 23), (23, 60))):
        draw = _Draw(size, seed)
        for start, end in batches:
            draw.add(start, {"value": np.arange(start, end) * 10})
        return draw.result()

    rows, items = drawn(0, 12)
    assert len(rows) == 12 and rows.tolist() == sorted(set(rows.tolist())) and (items["value"] == rows * 10).all()
    assert drawn(0, 12)[0].tolist() == rows.tolist() and drawn(1, 12)[0].tolist() != rows.tolist()
    assert drawn(0, 100)[0].tolist() == list(range(60))  # fewer rows than the draw: all of them
    # every row is as likely: over many seeds each is drawn about 12 / 60 of the time
    counts = np.bincount(np.concatenate([drawn(s, 12)[0] for s in range(300)]), minlength=60)
    assert counts.min() > 0.5 * 60 and counts.max() < 1.5 * 60


# --- activation maximisation and saliency -------------------------------------------------------

def tiny_trunk(x):
    x = layers.Conv2D(8, 3, strides=2, activation="relu", name="conv1")(x)
    return layers.Conv2D(8, 3, strides=2, activation="relu", name="conv2")(x)


@pytest.fixture(scope="module")
def tiny_backbone():
    """A two-convolution backbone registered for this module's models (a second or two per build)."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setitem(backbones.BACKBONES, TINY,
                      backbones.Backbone(tiny_trunk, ("conv1", "conv2"), FACE, 8, "test only", "symmetric"))
        yield TINY


@pytest.fixture(scope="module")
def tiny_model(tiny_backbone):
    keras.utils.set_random_seed(0)
    return sequence.sequence_model(backbone=tiny_backbone, input_size=FACE, seq_len=STEPS, tasks=("category", "va"),
                                   temporal="frame", rnn="lstm", rnn_layers=1, units=8, head_units=(8,))


def clips(n=2):
    frames = np.random.default_rng(1).uniform(-1, 1, (n, STEPS, FACE, FACE, 3)).astype(np.float32)
    mask = np.ones((n, STEPS), np.float32)
    mask[1, 2:] = 0
    return frames, mask


def test_logits_are_the_category_output_before_its_softmax(tiny_model):
    frames, mask = clips()
    inputs = {"frames": frames, "mask": mask}
    logits = maximisation.logits_function(tiny_model)(inputs)
    np.testing.assert_allclose(tf.nn.softmax(logits), tiny_model(inputs)["category"], atol=1e-6)


@pytest.mark.parametrize("mode", maximisation.MODES)
def test_maximisation_raises_each_logit_and_changes_no_weight(tiny_model, mode, tmp_path):
    weights = [w.copy() for w in tiny_model.get_weights()]
    result = maximisation.maximise(tiny_model, mode=mode, steps=15, normalize="symmetric")
    assert result.units == list(range(7)) and (result.after > result.before).all()
    shape = (7, FACE, FACE, 3) if mode == "static" else (7, STEPS, FACE, FACE, 3)
    assert result.images.shape == shape and result.images.dtype == np.uint8
    after = tiny_model.get_weights()
    assert len(after) == len(weights) and all(np.array_equal(a, b) for a, b in zip(after, weights))
    # the images are the final inputs: the model gives them the logits reported
    pixels = preprocess(result.images.astype(np.float32), "symmetric").numpy()
    frames = np.repeat(pixels[:, None], STEPS, axis=1) if mode == "static" else pixels
    logits = maximisation.logits_function(tiny_model)({"frames": frames, "mask": np.ones((7, STEPS), np.float32)})
    np.testing.assert_allclose(np.diagonal(np.mean(logits, axis=1)), result.after, atol=0.05)
    maximisation.plot_maximised(result, AFFWILD_CATEGORIES, tmp_path / "am.png")
    assert (tmp_path / "am.png").stat().st_size > 0


def test_saliency_of_the_predicted_class(tiny_model, tmp_path):
    frames, mask = clips()
    maps, predicted = maximisation.saliency(tiny_model, frames, mask)
    probs = tiny_model({"frames": frames, "mask": mask})["category"].numpy()
    mean = (probs * mask[..., None]).sum(1) / mask.sum(1)[:, None]
    assert predicted.tolist() == mean.argmax(-1).tolist()
    assert maps.shape == (2, STEPS, FACE, FACE) and (maps >= 0).all()
    assert (maps[1, 2] == 0).all() and (maps[0] > 0).any()
    faces = maximisation.to_pixels(frames, "symmetric")
    maximisation.plot_saliency(faces, maps, mask, tmp_path / "saliency.png", titles=["a", "b"])
    assert (tmp_path / "saliency.png").stat().st_size > 0


@pytest.mark.parametrize("mode", ["symmetric", "unit", "caffe", "affwild"])
def test_to_pixels_undoes_the_preprocessing(mode):
    pixels = np.random.default_rng(2).integers(0, 256, (4, 5, 3)).astype(np.uint8)
    back = maximisation.to_pixels(preprocess(pixels, mode).numpy(), mode)
    np.testing.assert_array_equal(back, pixels)
    low, high = maximisation.pixel_range(mode)
    assert (low < high).all()


# --- fer-keras analyse on a trained run, and the notebook -----------------------------------------

CATEGORY_OF_QUADRANT = {0: 1, 1: 3, 2: 2, 3: 0}  # Q1 Happy, Q2 Angry, Q3 Sad, Q4 Neutral


def write_prepared(root, seed=0):
    """A prepared va set (32 px PNG faces whose red and green show valence and arousal) with a
    category per frame (the first of each track unlabelled); returns {split: (va, category)}."""
    rng = np.random.default_rng(seed)
    classes = list(AFFWILD_CATEGORIES)
    manifest = {"schema_version": 3, "dataset": "va", "classes": classes,
                "options": {"face_size": FACE, "image_format": "png"}, "audio": {"lld_dim": 0, "functionals_dim": 0},
                "labels": {"va": True, "categories": classes}, "splits": {}, "videos": {}, "files": {}}
    truth = {}
    for split, lengths in {"train": [7, 5, 6, 4], "val": [5, 4, 3]}.items():
        rel = f"{split}/{split}-00000.tfrecord"
        os.makedirs(os.path.join(root, split), exist_ok=True)
        parts = []
        with tf.io.TFRecordWriter(os.path.join(root, rel)) as writer:
            for i, n in enumerate(lengths):
                track = f"{split}{i}"
                va = rng.uniform(-1, 1, (n, 2)).astype(np.float32)
                category = np.array([CATEGORY_OF_QUADRANT[q] for q in va_plane.quadrant(va)])
                category[0] = -1
                frames = np.zeros((n, FACE, FACE, 3), np.uint8)
                frames[..., :2] = np.round(127.5 * (va + 1))[:, None, None, :]
                frames[..., 2] = rng.integers(0, 256, (n, FACE, FACE))
                writer.write(serialize(VideoRecord(
                    video_id=track, label=-1, fps=25.0, face_size=FACE,
                    frames=[tf.io.encode_png(f).numpy() for f in frames], frame_index=np.arange(n),
                    audio_lld=np.zeros((n, 0), np.float32), has_audio=False, source_frames=n, dataset="va",
                    valence_arousal=va, category=category)))
                manifest["videos"][f"{split}/{track}"] = {"id": track, "video": track, "split": split, "label": -1,
                                                          "status": "ok", "frames_total": n, "frames_kept": n,
                                                          "segments": 1, "shard": rel}
                parts.append((va, category))
        manifest["splits"][split] = {"shards": [rel], "videos": len(lengths)}
        manifest["files"][rel] = describe(os.path.join(root, rel), len(lengths))
        truth[split] = tuple(np.concatenate(p) for p in zip(*parts))
    with open(os.path.join(root, "manifest.json"), "w") as f:
        json.dump(manifest, f, indent=1)
    return truth


@pytest.fixture(scope="module")
def trained_run(tiny_backbone, tmp_path_factory):
    """(run dir, truth): thesis 003's combined model (tiny backbone, LSTM 8, per-frame heads)
    trained one epoch by the training engine on the tiny prepared set."""
    root = tmp_path_factory.mktemp("analysis_run")
    truth = write_prepared(str(root / "data"))
    exp = cfg.from_dict({
        "name": "tiny_combined",
        "data": {"root": str(root / "data"), "pipeline": {"seq_len": STEPS, "inputs": ["frames"],
                                                          "targets": ["category", "va"], "normalize": "symmetric",
                                                          "image_size": FACE, "batch_size": 2}},
        "model": {"name": "vgg19_lstm_combined", "options": {"backbone": tiny_backbone, "input_size": FACE,
                                                             "seq_len": STEPS, "units": 8, "head_units": [8]}},
        "training": {"epochs": 1, "verbose": 0}, "evaluation": {"split": "val"}})
    training.train(exp, root / "run")
    return root / "run", truth


@pytest.fixture(scope="module")
def analysed(trained_run):
    run, truth = trained_run
    assert main(["analyse", str(run), "--max-points", "8", "--steps", "5"]) == 0
    return run, truth, json.loads((run / "analysis" / "analysis.json").read_text())


def test_analyse_writes_an_index_of_existing_files(analysed, capsys):
    run, truth, summary = analysed
    folder = run / "analysis"
    text = (folder / "index.html").read_text()
    referenced = set(re.findall(r'(?:src|href)="([^"]+)"', text))
    assert referenced and all((folder / ref).is_file() for ref in referenced)
    written = {item["path"] for item in summary["items"]}
    assert written <= referenced and all(html.escape(item["text"]) in text for item in summary["items"])
    expected = {"labels/va_scatter.png", "labels/va_hist2d.png", "labels/quadrants.csv", "labels/entropies.json",
                "predictions/va_scatter.png", "predictions/entropies.json", "maximisation_static.png",
                "maximisation_clip.png", "saliency.png"}
    expected |= {f"tsne/{layer}_{kind}" for layer in ("cnn", "rnn", "head")
                 for kind in ("category.png", "valence.png", "arousal.png", "faces.png", "tsne.csv")}
    assert expected <= written and summary["notes"] == []

    # the labels read are the split's: every frame, its category (or none) and VA
    va, category = truth["val"]
    assert (summary["frames"], summary["labelled"]) == (len(va), int((category >= 0).sum()))
    for key, value in va_plane.entropies(va, category, 7).items():
        assert summary["labels"][key] == (pytest.approx(value) if isinstance(value, float) else value), key
    for mode in maximisation.MODES:
        found = summary["maximisation"][mode]
        assert all(a > b for a, b in zip(found["after"], found["before"]))
    with open(folder / "tsne" / "cnn_tsne.csv", newline="") as f:
        assert len(list(csv.DictReader(f))) == 8


def test_analyse_names_a_missing_run(tmp_path, capsys):
    assert main(["analyse", str(tmp_path / "nope")]) == 2
    assert "nope: no such run directory" in capsys.readouterr().err


@pytest.fixture
def kernel_name(tmp_path, monkeypatch):
    """A 'python3' kernel spec for this interpreter, found first whatever else is installed."""
    from ipykernel.kernelspec import write_kernel_spec

    write_kernel_spec(str(tmp_path / "jupyter" / "kernels" / "python3"))
    monkeypatch.setenv("JUPYTER_PATH", str(tmp_path / "jupyter"))
    return "python3"


def test_notebook_is_committed_without_outputs():
    import nbformat

    nb = nbformat.read(NOTEBOOK, as_version=4)
    nbformat.validate(nb)
    assert all(not c.get("outputs") and c.get("execution_count") is None for c in nb.cells if c.cell_type == "code")
    (cell,) = [c for c in nb.cells if "parameters" in c.metadata.get("tags", [])]
    assert "FER_KERAS_RUN" in cell.source


def test_notebook_shows_every_image_of_the_analysis(analysed, kernel_name):
    import nbformat
    from nbclient import NotebookClient

    run, _, summary = analysed
    nb = nbformat.read(NOTEBOOK, as_version=4)
    (cell,) = [c for c in nb.cells if "parameters" in c.metadata.get("tags", [])]
    cell.source = f"run_dir = {str(run)!r}"
    NotebookClient(nb, kernel_name=kernel_name, timeout=120, resources={"metadata": {"path": REPO}}).execute()
    outputs = [o for c in nb.cells if c.cell_type == "code" for o in c.outputs]
    assert not [o for o in outputs if o.output_type == "error"]
    images = [i for i in summary["items"] if i["path"].endswith(".png")]
    assert sum("image/png" in o.get("data", {}) for o in outputs) == len(images)
    printed = "".join(o.get("text", "") for o in outputs if o.output_type == "stream")
    assert f"H(category | cell) {summary['labels']['h_category_given_cell']:.3f}" in printed
    assert "category,Q1,Q2,Q3,Q4,total" in printed
