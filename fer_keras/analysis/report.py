"""``fer-keras analyse RUN_DIR``: thesis 003's analyses (§5.4-5.6) of a trained run, in one
folder with an index.html.

The run is loaded as evaluation loads it (its config.yaml, its ``evaluation.checkpoint``, the
split's data with the run's preprocessing), and one pass over the split gives, per real frame,
the labels (category, valence and arousal, where the data has them: for prepared shards they are
read whatever the run was trained on), the run's predictions, and three of its layers' outputs:

- ``cnn``: the per-frame CNN features (the model's ``features`` input for a run trained on
  cached features, else the output of its ``frame_cnn`` layer);
- ``rnn``: the outputs of its last recurrent layer (``rnn1`` in thesis 003);
- ``head``: the last hidden head activations, the input of the output Dense layer ``category``
  (or ``va``; ``<task>_frame_logits`` for pooled outputs).

A layer whose output is not per frame (e.g. ``temporal: last``) is not embedded. At most
``max_points`` frames, a seeded uniform draw over the split, are kept for the t-SNE maps.
Activation maximisation and saliency need a model with a ``frames`` input: a run trained on
cached features gets one from ``fer_keras.models.cached.frames_model`` (built from its best
checkpoint); when none can be made, or the data hold no face images (saliency), index.html says why.

Folder (``RUN_DIR/analysis`` unless ``--out``)::

    labels/        va_plane.analyse of the split's labels: va_scatter.png, va_hist2d.png,
                   quadrants.csv, entropies.json
    predictions/   the same of the run's predictions (argmax category, predicted VA)
    tsne/          embedding.embed of each layer: <layer>_category.png, _valence.png,
                   _arousal.png, _faces.png, _tsne.csv
    maximisation_static.png, maximisation_clip.png   activation maximisation of the category units
    saliency.png   saliency of the split's first clips for their predicted class
    analysis.json  what was written (with one sentence each), what was not and why, entropies,
                   activation before/after
    index.html     every image and table with its sentence
"""
from __future__ import annotations

import csv
import html
import json
import logging
import os
import re
from pathlib import Path

import numpy as np

logger = logging.getLogger(__name__)

FOLDER, INDEX, SUMMARY = "analysis", "index.html", "analysis.json"
CNN_LAYER, RNN_LAYER = "frame_cnn", re.compile(r"^rnn(\d+)(_bi)?$")
HEAD_OUTPUTS = ("category", "va")
LAYERS = {"cnn": "the per-frame CNN features", "rnn": "the outputs of the last recurrent layer",
          "head": "the last hidden head activations"}
SALIENCY_CLIPS = 4


def add_parser(subparsers):
    """The ``analyse`` subcommand's parser (the caller sets ``func``)."""
    p = subparsers.add_parser(
        "analyse", help="thesis 003 analyses of a trained run: VA plane, t-SNE, activation maximisation",
        description="Predict a split with RUN_DIR's checkpoint and write into RUN_DIR/analysis (or --out): the "
                    "categories on the valence/arousal plane of the split's labels and of the run's predictions "
                    "(scatter, 2-D histograms, quadrant tables, conditional entropies), t-SNE maps of the CNN "
                    "features, LSTM outputs and last hidden head layer, activation maximisation of the category "
                    "units and saliency maps, and index.html showing them all.")
    p.add_argument("run_dir", metavar="RUN_DIR", help="run directory written by training")
    p.add_argument("--split", help="split to analyse (default: the run's evaluation.split)")
    p.add_argument("--max-points", type=int, default=2000, metavar="N",
                   help="frames in each t-SNE map, a seeded draw (default 2000)")
    p.add_argument("--steps", type=int, default=100, metavar="N",
                   help="gradient ascent steps of activation maximisation (default 100; 0: none)")
    p.add_argument("--out", metavar="DIR", help="output folder (default RUN_DIR/analysis)")
    return p


def run(args) -> int:
    if not os.path.isdir(args.run_dir):  # before any heavy import
        raise FileNotFoundError(f"{args.run_dir}: no such run directory")
    result = analyse(args.run_dir, split=args.split, max_points=args.max_points, steps=args.steps, out=args.out)
    print(f"split {result['split']}: {result['frames']} frames ({result['labelled']} with a category); "
          f"{len(result['items'])} files")
    for note in result["notes"]:
        print(f"not done: {note}")
    print(f"index: {Path(result['out']) / INDEX}")
    return 0


# --- one pass over the split --------------------------------------------------------------------

class _Draw:
    """A seeded uniform draw of at most ``size`` rows from a stream of batches, with each row's
    position in the stream: every row gets a random key and the smallest keys stay."""

    def __init__(self, size, seed):
        self.size, self.rng = size, np.random.default_rng(seed)
        self.keys, self.rows, self.items = np.empty(0), np.empty(0, np.int64), {}

    def add(self, start, items):
        n = len(next(iter(items.values())))
        keys = self.rng.random(n)
        new = keys < self.keys.max() if len(self.keys) >= self.size else np.ones(n, bool)
        if not new.any():
            return
        keys = np.concatenate([self.keys, keys[new]])
        rows = np.concatenate([self.rows, start + np.flatnonzero(new)])
        items = {k: np.concatenate([self.items[k], v[new]]) if k in self.items else v[new] for k, v in items.items()}
        keep = np.argpartition(keys, self.size - 1)[:self.size] if len(keys) > self.size else slice(None)
        self.keys, self.rows, self.items = keys[keep], rows[keep], {k: v[keep] for k, v in items.items()}

    def result(self):
        """(rows, {name: values}) in stream order."""
        order = np.argsort(self.rows)
        return self.rows[order], {k: v[order] for k, v in self.items.items()}


def _layers(model):
    """{name: (what it is, KerasTensor or None for the ``features`` input)} of the LAYERS found."""
    import keras

    names = {layer.name for layer in model.layers}
    found = {}
    if isinstance(model.input, dict) and "features" in model.input:
        found["cnn"] = ("the model's cached CNN features input", None)
    elif CNN_LAYER in names:
        found["cnn"] = (f"the output of layer {CNN_LAYER}", model.get_layer(CNN_LAYER).output)
    recurrent = sorted((int(m.group(1)), n) for n in names if (m := RNN_LAYER.match(n)))
    if recurrent:
        name = recurrent[-1][1]
        found["rnn"] = (f"the output of layer {name}", model.get_layer(name).output)
    for task in HEAD_OUTPUTS:
        for name in (task, f"{task}_frame_logits"):
            if name in names and isinstance(model.get_layer(name), keras.layers.Dense):
                found["head"] = (f"the input of output layer {name}", model.get_layer(name).input)
                break
        if "head" in found:
            break
    return found


def _label_data(data):
    """The data config with every label target prepared shards hold (categories, per-frame VA),
    so the labels are read whatever the run was trained on. Feature files keep the run's targets."""
    import dataclasses

    from fer_keras.data import loader, schema

    if data.format != "tfrecord":
        return data
    info = loader.manifest(data.root)
    wanted = (("category",) if info.get("classes") else ()) + (("va",) if schema.frame_labels(info)[0] else ())
    targets = tuple(dict.fromkeys((*data.pipeline.targets, *wanted)))
    return dataclasses.replace(data, pipeline=dataclasses.replace(data.pipeline, targets=targets))


def _collect(model, ds, normalize, pixel_stats, max_points, seed):
    """One pass: per real frame the labels and predictions (arrays over all frames), the number of
    frames, the drawn frames' layer outputs and faces, the first clips for saliency, what each
    layer found is, and the layers not embedded (with why)."""
    import keras

    from fer_keras.analysis.maximisation import to_pixels

    layers = _layers(model)
    skipped = {k: f"{LAYERS[k]} ({what}) are {len(t.shape) - 1}-D per sequence, not per frame"
               for k, (what, t) in layers.items() if t is not None and len(t.shape) != 3}
    taps = {k: t for k, (_, t) in layers.items() if t is not None and k not in skipped}
    from_input = "cnn" in layers and layers["cnn"][1] is None  # a run on cached features
    outputs = dict(zip(model.output_names, model.outputs))
    probe = keras.Model(model.input, {**{f"out_{k}": v for k, v in outputs.items()},
                                      **{f"tap_{k}": v for k, v in taps.items()}})
    names = list(model.input) if isinstance(model.input, dict) else [t.name for t in model.inputs]
    frames = {"true_category": [], "true_va": [], "category": [], "va": []}
    draw, clips, total = _Draw(max_points, seed), [], 0
    for x, y, _ in ds:
        missing = [k for k in names if k not in x]
        if missing:
            raise ValueError(f"the model takes input(s) {', '.join(missing)} that the pipeline does not give "
                             f"(it gives {', '.join(x)})")
        mask = x["mask"].numpy() > 0
        steps = mask.shape[1]
        pred = probe.predict_on_batch({k: x[k] for k in names})

        def per_frame(values):
            values = np.asarray(values)
            return (np.repeat(values[:, None], steps, axis=1) if values.ndim == 2 else values)[mask]

        if "category" in y:
            onehot = per_frame(y["category"].numpy())
            frames["true_category"].append(np.where(onehot.sum(-1) > 0, onehot.argmax(-1), -1))
        if "va" in y:
            frames["true_va"].append(per_frame(y["va"].numpy()))
        if "out_category" in pred:
            frames["category"].append(per_frame(pred["out_category"]).argmax(-1))
        if "out_va" in pred:
            frames["va"].append(per_frame(pred["out_va"]))
        items = {k: np.asarray(pred[f"tap_{k}"])[mask] for k in taps}
        if from_input:
            items["cnn"] = x["features"].numpy()[mask]
        if "frames" in x:
            items["faces"] = to_pixels(x["frames"].numpy()[mask], normalize, pixel_stats)
            if len(clips) < SALIENCY_CLIPS:
                clips += [(f, m) for f, m in zip(x["frames"].numpy(), x["mask"].numpy()) if m.sum() > 0]
        if items:
            draw.add(total, items)
        total += int(mask.sum())
    if not total:
        raise ValueError("the split has no frame to analyse")
    arrays = {k: np.concatenate(v) if v else None for k, v in frames.items()}
    return arrays, total, draw.result(), clips[:SALIENCY_CLIPS], {k: what for k, (what, _) in layers.items()}, skipped


# --- the analyses -------------------------------------------------------------------------------

def _image_model(model, run_dir, notes):
    """A frames-input model equal to ``model``, or None with the reason added to ``notes``."""
    if isinstance(model.input, dict) and "frames" in model.input:
        return model
    try:
        from fer_keras.models.cached import frames_model
    except ImportError as err:
        notes.append(f"activation maximisation and saliency: the run takes cached features and this version "
                     f"cannot rebuild its frames model ({err})")
        return None
    try:
        return frames_model(run_dir)
    except ValueError as err:
        notes.append(f"activation maximisation and saliency: no frames-input model for this run ({err})")
        return None


def analyse(run_dir, *, split=None, max_points=2000, steps=100, out=None, seed=0) -> dict:
    """Write the analyses of run ``run_dir`` on ``split`` (default its ``evaluation.split``) into
    ``out`` (default RUN_DIR/analysis), as the module docstring lists; returns analysis.json's
    content plus ``out``."""
    import fer_keras.models  # noqa: F401  registers the custom layers before loading
    from fer_keras.analysis import embedding, maximisation, va_plane
    from fer_keras.data import loader
    from fer_keras.data.integrity import named_data_errors
    from fer_keras.durable import write_atomic
    from fer_keras.evaluation import _load, evaluation_data
    from fer_keras.rundir import checkpoint_todo, load_checkpoint

    if max_points < 3:
        raise ValueError(f"--max-points must be at least 3 (a t-SNE map), got {max_points}")
    if steps < 0:
        raise ValueError(f"--steps must be 0 or more, got {steps}")
    run, exp = _load(run_dir)
    split = split or exp.evaluation.split
    checkpoint = exp.evaluation.checkpoint
    path = run.best if checkpoint == "best" else run.last
    if not path.is_file():
        raise FileNotFoundError(f"{path}: missing; training must run first (analysis reads checkpoints/{path.name})")
    model = load_checkpoint(path, checkpoint_todo(run, checkpoint, len(exp.training.plan())))
    out = Path(out) if out is not None else run.root / FOLDER
    out.mkdir(parents=True, exist_ok=True)

    data = _label_data(evaluation_data(exp))
    classes = list(loader.classes(data))
    normalize, stats = data.pipeline.normalize or "unit", data.pipeline.pixel_stats
    # prepared shards give a category per frame whatever the model; feature files only for per-frame heads
    outputs = dict(zip(model.output_names, model.outputs))
    per_frame = data.format == "tfrecord" or ("category" in outputs and len(outputs["category"].shape) == 3)
    with named_data_errors(data.root):
        ds = loader.split(data, split, training=False, with_meta=True, per_frame_category=per_frame)
        frames, total, (rows, drawn), clips, layers, skipped = _collect(model, ds, normalize, stats, max_points, seed)
    items, notes, summary = [], [f"t-SNE of {LAYERS[k]}: {why}" for k, why in skipped.items()], {}

    def item(section, title, text, file):
        items.append({"section": section, "title": title, "text": text, "path": Path(file).relative_to(out).as_posix()})

    true_cat, true_va = frames["true_category"], frames["true_va"]
    labelled = 0 if true_cat is None else int((true_cat >= 0).sum())
    planes = {"labels": (true_va, true_cat, f"the {split} split's labels"),
              "predictions": (frames["va"], frames["category"],
                              "the run's predictions (argmax category, predicted VA)")}
    for name, (va, cat, whose) in planes.items():
        if va is None or cat is None:
            lacking = " and ".join(w for w, v in (("per-frame valence/arousal", va), ("categories", cat)) if v is None)
            notes.append(f"VA plane of {whose}: there are no {lacking}")
            continue
        try:
            paths = va_plane.analyse(va, cat, classes, out / name, title=f"{split}: {whose}")
        except ValueError as err:
            notes.append(f"VA plane of {whose}: {err}")
            continue
        summary[name] = json.loads(paths["entropies"].read_text())
        section = f"Categories on the VA plane: {whose}"
        item(section, "scatter", f"Each category's frames of {whose} on the valence (x) / arousal (y) plane, one "
             "panel per category and all of them overlaid (thesis 003 Figs 5.3-5.10).", paths["scatter"])
        item(section, "2-D histograms", "Frames per bin of a 20x20 grid over [-1, 1]^2 for each category, which "
             "shows how dense a region is where the scatter points overlap.", paths["histograms"])
        item(section, "quadrant table", "Frames of each category per quadrant (Q1 V>=0, A>=0; Q2 V<0, A>=0; Q3 "
             "V<0, A<0; Q4 V>=0, A<0) with row fractions: the thesis's one-to-one and one-to-two region "
             "mappings (§5.4) as numbers.", paths["quadrants"])
        item(section, "entropies", f"Entropies in bits over a {summary[name]['bins']}x{summary[name]['bins']} grid "
             "of VA cells: a small H(category | cell) means a VA region names its category, a small H(cell | "
             "category) that a category keeps to one region (the §5.5 argument).", paths["entropies"])

    colour_cat = true_cat if labelled else frames["category"]
    colour_va = true_va if true_va is not None else frames["va"]
    coloured = "labels" if labelled else "predictions"
    faces = drawn.pop("faces", None)
    for name, vectors in drawn.items():
        paths = embedding.embed(vectors, out / "tsne", name,
                                category=None if colour_cat is None else colour_cat[rows], classes=classes,
                                va=None if colour_va is None else colour_va[rows], faces=faces,
                                max_points=max_points, seed=seed, title=f"t-SNE of {name} ({split})")
        section = f"t-SNE of {LAYERS[name]} ({layers[name]})"
        texts = {"category": f"{len(rows)} frames of the split placed by t-SNE, coloured by category ({coloured}).",
                 "valence": f"The same map coloured by valence ({'labels' if true_va is not None else 'predictions'}).",
                 "arousal": f"The same map coloured by arousal ({'labels' if true_va is not None else 'predictions'}).",
                 "faces": "The faces placed on a grid by their t-SNE position, each in the nearest free cell "
                          "(thesis 003 Fig 5.11).",
                 "coordinates": "Every point's t-SNE coordinates with its row, category, valence and arousal."}
        for key, file in paths.items():
            item(section, key, texts[key], file)
    if not drawn:
        notes.append("t-SNE: the model has none of the layers frame_cnn, rnn1.., or a Dense category/va output")

    image_model = _image_model(model, run.root, notes)
    if image_model is not None and "category" not in image_model.output_names:
        notes.append("activation maximisation and saliency: the model has no category output")
        image_model = None
    if image_model is not None and steps == 0:
        notes.append("activation maximisation: --steps 0")
    elif image_model is not None:
        section = "Activation maximisation of the category units (thesis 003 §5.6, Fig 5.15)"
        summary["maximisation"] = {}
        for mode, text in (("static", "one image shown on every step of the sequence"),
                           ("clip", "a whole clip, one image per step (the thesis does not say which it did)")):
            result = maximisation.maximise(image_model, mode=mode, steps=steps, seed=seed, normalize=normalize,
                                           pixel_stats=stats, seq_len=data.pipeline.seq_len)
            file = out / f"maximisation_{mode}.png"
            maximisation.plot_maximised(result, classes, file)
            summary["maximisation"][mode] = {"before": result.before.tolist(), "after": result.after.tolist()}
            item(section, mode, f"The input that maximises each category's logit (the softmax taken off) after "
                 f"{steps} gradient ascent steps, {text}; each titled with its logit before -> after.", file)
    if image_model is not None and not clips:
        notes.append("saliency: the run's data hold no face images (cached features)")
    elif image_model is not None:
        clip_frames, clip_mask = (np.stack(v) for v in zip(*clips))
        maps, predicted = maximisation.saliency(image_model, clip_frames, clip_mask)
        file = out / "saliency.png"
        maximisation.plot_saliency(maximisation.to_pixels(clip_frames, normalize, stats), maps, clip_mask, file,
                                   titles=[f"predicted {classes[k]}" for k in predicted])
        item("Saliency (Simonyan et al.; named in thesis 003 §2.4, not applied there)", "saliency",
             f"The split's first {len(clips)} clips with |d logit / d pixel| of each clip's predicted class "
             "over its faces (red: the pixels that move the logit most).", file)

    result = {"run_dir": str(run.root), "split": split, "checkpoint": checkpoint, "model": exp.model.name,
              "classes": classes, "frames": total,
              "labelled": labelled, "items": items, "notes": notes, **summary}
    for note in notes:
        logger.warning("%s: %s", run.root, note)
    write_atomic(out / SUMMARY, json.dumps(result, indent=2))
    write_atomic(out / INDEX, _html(result, out))
    return {**result, "out": str(out)}


# --- index.html ---------------------------------------------------------------------------------

def _table(rows) -> str:
    head, *body = rows
    cells = lambda tag, row: "".join(f"<{tag}>{html.escape(str(v))}</{tag}>" for v in row)  # noqa: E731
    return ("<table><tr>" + cells("th", head) + "</tr>"
            + "".join("<tr>" + cells("td", r) + "</tr>" for r in body) + "</table>")


def _shown(item, out) -> str:
    """An item's image, or its table inline (quadrant CSV, entropies JSON), or a link."""
    path, link = item["path"], f'<a href="{html.escape(item["path"])}">{html.escape(item["path"])}</a>'
    if path.endswith(".png"):
        return f'<a href="{html.escape(path)}"><img src="{html.escape(path)}" alt="{html.escape(item["title"])}"></a>'
    if path.endswith("quadrants.csv"):
        with open(out / path, newline="") as f:
            return _table(list(csv.reader(f))) + link
    if path.endswith(".json"):
        values = json.loads((out / path).read_text())
        keys = ("h_category", "h_cell", "h_category_given_cell", "h_cell_given_category", "mutual_information")
        return _table([["measure", "bits"]] + [[k, f"{values[k]:.4f}"] for k in keys]
                      + [["frames (unlabelled left out)", f"{values['frames']} ({values['unlabelled']})"]]) + link
    return link


def _html(result, out) -> str:
    parts = ["<!doctype html><html><head><meta charset='utf-8'>",
             f"<title>Analysis of {html.escape(result['run_dir'])}</title>",
             "<style>body{font-family:sans-serif;max-width:1100px;margin:auto}img{max-width:100%}"
             "table{border-collapse:collapse;margin:4px 0}td,th{border:1px solid #ccc;padding:2px 6px}</style>",
             "</head><body>",
             f"<h1>Analysis of {html.escape(result['run_dir'])}</h1>",
             f"<p>Model {html.escape(result['model'])}, checkpoint {result['checkpoint']}, split "
             f"{html.escape(result['split'])}: {result['frames']} frames, {result['labelled']} with a category. "
             "Thesis 003 §5.4-5.6; <code>fer-keras analyse</code> wrote every file here.</p>"]
    section = None
    for item in result["items"]:
        if item["section"] != section:
            section = item["section"]
            parts.append(f"<h2>{html.escape(section)}</h2>")
        parts.append(f"<h3>{html.escape(item['title'])}</h3><p>{html.escape(item['text'])}</p>{_shown(item, out)}")
    if result["notes"]:
        parts.append("<h2>Not done</h2><ul>" + "".join(f"<li>{html.escape(n)}</li>" for n in result["notes"]) + "</ul>")
    parts.append("</body></html>")
    return "\n".join(parts) + "\n"
