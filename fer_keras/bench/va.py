"""`make bench-va`: thesis 003's VGG19+LSTM trained on cached frozen-CNN features against the same
model recomputing its frozen CNN on every frame in every epoch, in one run.

Thesis 003 freezes its ImageNet CNNs (VGG16, VGG19, Xception) and trains only an LSTM(128) and its
per-frame heads, so every epoch on frames recomputes the same CNN outputs. ``fer-keras features``
writes them once; ``sequence_model(..., cached=True)`` is the same model without its CNN (input
``features``, every later layer under the same name, so weights move between the forms by name).
This benchmark measures that choice on one synthetic valence/arousal set with per-frame categories
and one registry model (``vgg19_lstm_combined`` by default: per-frame category + valence/arousal
heads, 72 px faces, sequences of 60, the CNN frozen):

1. **cached**: epochs of the cached form (``cached: true``; input ``features``, 2x2x512 = 2,048 per
   frame at 72 px) fed by the real loader (``fer_keras.data.loader.split`` on the ``format: hdf5``
   feature folder), compiled and fed by the training engine (``training.build_model``,
   ``training.compile_model``, ``training.training_data``, per-frame category targets); one untimed
   warm-up epoch (tracing), then ``--cached-epochs`` timed ones (median).
2. **frames**: the same registry entry with ``cached: false`` (input ``frames``): the frozen VGG19
   inside ``MaskedTimeDistributed`` on every real frame, fed the face crops of the prepared
   TFRecord shards by the same engine. Its CNN loads the file of weights the features were written
   with, so both forms compute the same thing (checked on one batch: the cached model's trained
   layers copied into the frames model by name, ``models.cached.copy_by_name``, give the same
   predictions). Two warm-up steps trace the step (a full batch and a batch of one video, one real
   frame each, so the CNN runs on a few frames), then ``--epochs`` whole epochs are timed (median).

Also reported: the one-off cost of writing the features (``fer-keras features CONFIG.yaml --data
PREPARED --out DIR --seq-len T``: its own two calls, ``load_extractor`` and ``extract``, in this
process), and the break-even: caching pays off once the epochs exceed writing / (frames epoch -
cached epoch). Target: the cached epoch at least 10x faster; measured, never asserted (exit code 0
either way). The epochs are training epochs only: with a validation pass the frames form would also
recompute the validation frames every epoch.

Data: ``fer-keras synth va --layout timed --categories`` (``--videos`` videos of ``--frames``
frames at 320x180) and ``fer-keras prepare va --layout timed --crop box --face-size 72
--require-category`` with a validation and a test fraction (both run as the command line in a
subprocess, so this process never imports ``data_prep``). The data, the CNN weights (random,
seeded), the experiment YAML of the features and the feature folder are kept under --out and reused
by a rerun (the writing time is then the one recorded when the files were written).
"""
from __future__ import annotations

import argparse
import json
import math
import os
import resource
import shutil
import statistics
import time

import numpy as np

TARGET_RATIO = 10.0    # cached epoch at least this many times faster than the frames epoch
MODEL = "vgg19_lstm_combined"
MODELS = ("vgg19_lstm_combined", "vgg19_lstm_va", "vgg19_lstm_category")
NORMALIZE = "symmetric"
INIT = "he_normal"           # the random CNN's initialiser (no pretrained weights are read)
SEED = 0
FRAME_SIZE = (320, 180)      # synthetic source frames (width, height): cheap face detection
VAL_FRACTION = TEST_FRACTION = 0.125
DATA_RECORD = "bench_data.json"
WRITING_RECORD = "bench_writing.json"


# --- data -------------------------------------------------------------------------------------

def prepare_data(out, videos, frames, face_size, *, jobs=2) -> dict:
    """Write ``videos`` synthetic timed valence/arousal videos of ``frames`` frames with per-frame
    categories and prepare them into ``out/prepared`` (thesis 003's crop: the plain detector box,
    ``face_size`` px; only frames with a category kept; train, validation and test drawn by video)
    with ``fer-keras synth va`` and ``fer-keras prepare va`` in a subprocess; reused when already
    prepared with these settings. Returns what was done (the times include the subprocesses'
    start-up)."""
    from fer_keras.bench.pipeline import run_cli

    wanted = {"videos": videos, "frames": frames, "face_size": face_size, "frame_size": list(FRAME_SIZE),
              "val_fraction": VAL_FRACTION, "test_fraction": TEST_FRACTION, "seed": SEED}
    src, prepared = os.path.join(out, "source"), os.path.join(out, "prepared")
    record = os.path.join(out, DATA_RECORD)
    if os.path.isfile(os.path.join(prepared, "manifest.json")) and os.path.isfile(record):
        with open(record) as f:
            if json.load(f).get("settings") == wanted:
                print(f"reusing {prepared} (delete {out} to prepare again)", flush=True)
                return {"root": prepared, "reused": True, "synth_s": None, "prepare_s": None}
    shutil.rmtree(src, ignore_errors=True)
    shutil.rmtree(prepared, ignore_errors=True)
    shutil.rmtree(os.path.join(out, "features"), ignore_errors=True)  # written from the old data
    start = time.perf_counter()
    run_cli("synth", "va", src, "--layout", "timed", "--categories", "--videos", videos, "--min-frames", frames,
            "--max-frames", frames, "--long-frames", 0, "--width", FRAME_SIZE[0], "--height", FRAME_SIZE[1],
            "--seed", SEED, "--no-broken")
    synth_s = time.perf_counter() - start
    print(f"preparing {src} -> {prepared} (-j {jobs})", flush=True)
    start = time.perf_counter()
    run_cli("prepare", "va", src, prepared, "-q", "--layout", "timed", "--crop", "box", "--face-size", face_size,
            "--min-face-size", 0.2, "--require-category", "--val-fraction", VAL_FRACTION,
            "--test-fraction", TEST_FRACTION, "--seed", SEED, "-j", jobs)
    prepare_s = time.perf_counter() - start
    with open(os.path.join(prepared, "manifest.json")) as f:
        manifest = json.load(f)
    train = [v for v in manifest["videos"].values()
             if v["split"] == "train" and v["status"] == "ok" and v.get("frames_kept", 0) > 0]
    if not train:
        raise RuntimeError(f"{prepared}: no training video prepared (see failures.jsonl)")
    with open(record, "w") as f:
        json.dump({"settings": wanted, "synth_s": synth_s, "prepare_s": prepare_s}, f, indent=1)
    return {"root": prepared, "reused": False, "synth_s": synth_s, "prepare_s": prepare_s}


def split_frames(prepared) -> dict:
    """Kept frames and videos per split, from the manifest."""
    with open(os.path.join(prepared, "manifest.json")) as f:
        manifest = json.load(f)
    out = {}
    for v in manifest["videos"].values():
        if v["status"] == "ok" and v.get("frames_kept", 0) > 0:
            s = out.setdefault(v["split"], {"videos": 0, "frames": 0})
            s["videos"] += 1
            s["frames"] += v["frames_kept"]
    return out


# --- experiments (the training engine's own pieces) -------------------------------------------

def _training_section():
    """experiments/thesis003's: Adam 1e-5 with Keras 2's decay 1e-5 (inverse time per step)."""
    return {"optimizer": {"name": "adam", "learning_rate": 1e-5},
            "schedule": {"name": "inverse_time", "decay_rate": 1e-5, "decay_steps": 1}, "epochs": 1}


def _pipeline(seq_len, size, batch):
    return {"seq_len": seq_len, "padding": "zeros", "image_size": size, "normalize": NORMALIZE,
            "targets": ["category", "va"], "batch_size": batch}


def frames_spec(model, prepared, seq_len, size, batch, weights=None, init=None) -> dict:
    """The frames form: the registry model with its frozen CNN inside, on the prepared shards."""
    options = {"input_size": size, "seq_len": seq_len, "cached": False, "trainable": 0}
    if weights:
        options["weights"] = os.path.abspath(weights)
    if init:
        options["init"] = init
    return {"name": "bench_va_frames",
            "description": "bench_va: the frozen CNN recomputed on every frame (random weights, shared with "
                           "the features)",
            "data": {"root": os.path.abspath(prepared), "format": "tfrecord", "train_split": "train",
                     "val_split": "train", "pipeline": _pipeline(seq_len, size, batch)},
            "model": {"name": model, "options": options},
            "training": _training_section()}


def cached_spec(model, folder, dim, seq_len, size, batch) -> dict:
    """The cached form: the same registry model with ``cached: true`` on the feature folder."""
    return {"name": "bench_va_cached",
            "data": {"root": os.path.abspath(folder), "format": "hdf5", "features": dim, "train_split": "train",
                     "val_split": "train", "pipeline": _pipeline(seq_len, size, batch)},
            "model": {"name": model, "options": {"input_size": size, "seq_len": seq_len, "cached": True,
                                                 "trainable": 0}},
            "training": _training_section()}


def experiment(spec, label):
    from fer_keras import config as cfg

    return cfg.from_dict(spec, label)


def weights_file(out, model, size, seq_len, prepared) -> str:
    """Random (seeded, He-normal, so that the features do not fade through 16 convolutions) weights
    of the frames model's frozen CNN (its ``frame_cnn``), written once under ``out``: the features
    are written with them and the frames form loads them. A new file
    makes the feature files of that model and size stale, so they are removed."""
    import keras

    from fer_keras.models import cached

    path = os.path.abspath(os.path.join(out, f"{model}-{size}px-cnn-{INIT}.weights.h5"))
    if not os.path.isfile(path):
        shutil.rmtree(features_dir(out, model, size, None), ignore_errors=True)
        keras.utils.set_random_seed(SEED)
        exp = experiment(frames_spec(model, prepared, seq_len, size, 1, init=INIT), "bench_va (weights)")
        frames_model = cached.build(exp, cached=False)
        tmp = path.removesuffix(".weights.h5") + ".tmp.weights.h5"
        cached.frame_cnn(frames_model).save_weights(tmp)
        os.replace(tmp, path)
        del frames_model
        keras.backend.clear_session()
    return path


def features_config(out, spec) -> str:
    """The frames experiment as a YAML file: what ``fer-keras features CONFIG`` reads."""
    import yaml

    path = os.path.abspath(os.path.join(out, f"features-{spec['model']['name']}-"
                                             f"{spec['model']['options']['input_size']}px.yaml"))
    text = yaml.safe_dump(spec, sort_keys=False)
    if not os.path.isfile(path) or open(path).read() != text:
        with open(path, "w") as f:
            f.write(text)
    return path


def features_dir(out, model, size, seq_len) -> str:
    """The feature folder of one model and input size (``seq_len`` None: all its folders)."""
    base = os.path.join(out, "features", f"{model}-{size}px")
    return base if seq_len is None else os.path.join(base, f"T{seq_len}")


def write_features(config, prepared, folder, seq_len, *, rewrite=False, progress=True) -> dict:
    """What ``fer-keras features CONFIG --data PREPARED --out FOLDER --seq-len T`` runs (timed: the
    extractor's loading and every split's file), or the files a previous run wrote and its time."""
    from fer_keras.feature_extraction import extract, load_extractor

    record = os.path.join(folder, WRITING_RECORD)
    if rewrite or not os.path.isfile(record):
        shutil.rmtree(folder, ignore_errors=True)
    os.makedirs(folder, exist_ok=True)
    start = time.perf_counter()
    extractor = load_extractor(config)
    loaded = time.perf_counter() - start
    done = extract(extractor, prepared, folder, seq_len=seq_len, progress=progress)
    seconds = time.perf_counter() - start
    files = {os.path.basename(d["path"]).split("-features-")[0]: d for d in done}
    if "train" not in files:
        raise RuntimeError(f"{folder}: extract wrote no train-features file ({[d['path'] for d in done]})")
    info = {"dim": extractor.dim, "files": {k: {"path": d["path"], "videos": d["videos"],
                                               "bytes": os.path.getsize(d["path"])} for k, d in files.items()},
            "command": f"fer-keras features {config} --data {prepared} --out {folder} --seq-len {seq_len}"}
    if any(d["written"] for d in done):
        with open(record, "w") as f:
            json.dump({"seconds": seconds, "model_load_s": loaded}, f, indent=1)
        return {**info, "seconds": seconds, "model_load_s": loaded, "measured_in_this_run": True}
    with open(record) as f:
        earlier = json.load(f)
    print(f"reusing {folder}, written in {earlier['seconds']:.1f} s by an earlier run (--rewrite-features "
          "to time it again)", flush=True)
    return {**info, "seconds": earlier["seconds"], "model_load_s": earlier.get("model_load_s"),
            "measured_in_this_run": False}


def build(exp, steps):
    """The experiment's registry model, compiled by the training engine (Adam, thesis 003's combined
    loss weights, no XLA)."""
    import keras

    from fer_keras import training

    keras.utils.set_random_seed(SEED)
    model = training.build_model(exp)
    training.compile_model(model, exp.training, training.optimizer(exp.training, steps),
                           jit_compile=exp.training.xla)
    return model


def parameter_counts(model) -> dict:
    count = lambda ws: int(sum(np.prod(w.shape) for w in ws))  # noqa: E731
    return {"trainable": count(model.trainable_weights), "frozen": count(model.non_trainable_weights)}


# --- measurement ------------------------------------------------------------------------------

def _sequences(exp) -> int:
    """Sequences (rows of T frames) in one training epoch."""
    from fer_keras.data import loader

    return sum(int(batch[0]["mask"].shape[0]) for batch in loader.split(exp.data, exp.data.train_split))


def time_cached(exp, epochs) -> tuple[dict, object]:
    """Whole cached epochs: one warm-up epoch (tracing), then ``epochs`` timed ones."""
    from fer_keras import training
    from fer_keras.bench.cascade import _clock
    from fer_keras.data import loader

    steps = loader.steps(exp.data, exp.data.train_split)
    model = build(exp, steps)
    clock = _clock()
    model.fit(training.training_data(exp, 0, 1 + epochs, steps), epochs=1 + epochs, steps_per_epoch=steps,
              verbose=0, callbacks=[clock], shuffle=False)
    timed = clock.epochs[1:]
    return {"seconds": statistics.median(timed), "rounds": timed, "first_epoch_s": clock.epochs[0],
            "steps_per_epoch": steps, "batch": exp.data.pipeline.batch_size}, model


def time_frames(exp, epochs) -> tuple[dict, object]:
    """Whole frames epochs after two warm-up steps that trace the training step (a full batch and a
    batch of one video, each video with one real frame, so the CNN runs on a few frames only)."""
    import tensorflow as tf

    from fer_keras import training
    from fer_keras.bench.cascade import _clock
    from fer_keras.data import loader

    steps = loader.steps(exp.data, exp.data.train_split)
    model = build(exp, steps)

    def one_frame(videos):
        def cut(x, y, weights):  # weights: each per-frame target's mask, (B, T)
            head = tf.one_hot(0, tf.shape(x["mask"])[1], dtype=x["mask"].dtype)
            first = lambda d: {k: v[:videos] for k, v in d.items()}  # noqa: E731
            return ({**first(x), "mask": x["mask"][:videos] * head}, first(y),
                    {k: v * head for k, v in first(weights).items()})
        return cut

    first = training.training_data(exp, 0, 1, steps).take(1)
    warm = first.map(one_frame(exp.data.pipeline.batch_size)).concatenate(first.map(one_frame(1)))
    clock = _clock()
    model.fit(warm, epochs=1, steps_per_epoch=2, verbose=0, callbacks=[clock], shuffle=False)
    warmup = clock.epochs[0]
    clock = _clock()
    model.fit(training.training_data(exp, 1, epochs, steps), epochs=epochs, steps_per_epoch=steps,
              verbose=0, callbacks=[clock], shuffle=False)
    return {"seconds": statistics.median(clock.epochs), "rounds": clock.epochs, "warmup_steps_s": warmup,
            "steps_per_epoch": steps, "batch": exp.data.pipeline.batch_size,
            "peak_rss_gb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1e6}, model


def check_same(cached_model, frames_model, cached_exp, frames_exp) -> dict:
    """The cached model's trained layers copied into the frames model by name: both on the first
    batch of the frames feed (the same sequences found in the feature files), prediction by
    prediction at the real frames."""
    from fer_keras.data import loader
    from fer_keras.models import cached

    copied = cached.copy_by_name(cached_model, frames_model)
    x, _, meta = next(iter(loader.split(frames_exp.data, frames_exp.data.train_split, with_meta=True,
                                        per_frame_category=True)))
    keys = [(v.decode(), int(s)) for v, s in zip(meta["video_id"].numpy(), meta["sequence"].numpy())]
    ours = frames_model.predict_on_batch({k: x[k] for k in frames_model.input})
    theirs = {}
    for cx, _, cmeta in loader.split(cached_exp.data, cached_exp.data.train_split, with_meta=True,
                                     per_frame_category=True):
        pred = cached_model.predict_on_batch({k: cx[k] for k in cached_model.input})
        for i, key in enumerate(zip(cmeta["video_id"].numpy(), cmeta["sequence"].numpy())):
            key = (key[0].decode(), int(key[1]))
            if key in keys:
                theirs[key] = {k: np.asarray(p)[i] for k, p in pred.items()}
    missing = [k for k in keys if k not in theirs]
    diff, scale = 0.0, 0.0
    for i, key in enumerate(keys):
        if key in theirs:
            real = x["mask"].numpy()[i] > 0
            for out, p in ours.items():
                a, b = np.asarray(p)[i][real], theirs[key][out][real]
                diff, scale = max(diff, float(np.abs(a - b).max())), max(scale, float(np.abs(b).max()))
    return {"sequences": len(keys), "missing_in_features": [f"{v}#{s}" for v, s in missing],
            "copied_layers": copied, "max_abs_diff": diff, "max_abs_output": scale,
            "same": bool(not missing and keys and diff <= 1e-4 * max(scale, 1.0))}


# --- run --------------------------------------------------------------------------------------

def run(args) -> dict:
    import keras

    from fer_keras.bench.cascade import cpu_model

    start = time.perf_counter()
    os.makedirs(args.out, exist_ok=True)
    data = prepare_data(args.out, args.videos, args.frames, args.input_size, jobs=args.jobs)
    prepared = data["root"]
    splits = split_frames(prepared)

    weights = weights_file(args.out, args.model, args.input_size, args.seq_len, prepared)
    frames_source = frames_spec(args.model, prepared, args.seq_len, args.input_size, args.batch, weights)
    config = features_config(args.out, frames_source)
    folder = features_dir(args.out, args.model, args.input_size, args.seq_len)
    total = sum(s["frames"] for s in splits.values())
    per_split = ", ".join(f"{k} {v['frames']}" for k, v in sorted(splits.items()))
    print(f"writing the features of {total} frames ({per_split}) "
          f"with the frozen CNN of {args.model} at {args.input_size} px", flush=True)
    writing = write_features(config, prepared, folder, args.seq_len, rewrite=args.rewrite_features,
                             progress=not args.quiet)
    writing.update(frames=total, frames_per_s=total / writing["seconds"],
                   file_bytes=sum(f["bytes"] for f in writing["files"].values()))
    print(f"feature writing: {writing['seconds']:.1f} s ({writing['frames_per_s']:.1f} frames/s), "
          f"{writing['dim']} features per frame", flush=True)

    cached_exp = experiment(cached_spec(args.model, folder, writing["dim"], args.seq_len, args.input_size,
                                        args.batch), "bench_va (cached)")
    frames_exp = experiment(frames_source, "bench_va (frames)")
    sequences = _sequences(cached_exp)
    train_frames = splits["train"]["frames"]
    print(f"cached: {1 + args.cached_epochs} epochs of {args.model} (cached: true) at batch {args.batch} "
          f"(the first untimed), {sequences} sequences of {args.seq_len}", flush=True)
    cached, cached_model = time_cached(cached_exp, args.cached_epochs)
    print(f"  epoch {cached['seconds']:.2f} s (rounds {', '.join(f'{s:.2f}' for s in cached['rounds'])}; "
          f"first {cached['first_epoch_s']:.2f} s)", flush=True)
    print(f"frames: {args.epochs} epoch(s) of {args.model} (cached: false) at batch {args.batch}, "
          f"its frozen CNN on {train_frames} frames per epoch", flush=True)
    frames, frames_model = time_frames(frames_exp, args.epochs)
    print(f"  epoch {frames['seconds']:.2f} s (rounds {', '.join(f'{s:.2f}' for s in frames['rounds'])}; "
          f"warm-up steps {frames['warmup_steps_s']:.2f} s)", flush=True)
    params = {"cached": parameter_counts(cached_model), "frames": parameter_counts(frames_model)}
    check = check_same(cached_model, frames_model, cached_exp, frames_exp)
    del cached_model, frames_model
    keras.backend.clear_session()

    for r in (cached, frames):
        r.update(sequences=sequences, frames=train_frames, sequences_per_s=sequences / r["seconds"],
                 frames_per_s=train_frames / r["seconds"])
    ratio = frames["seconds"] / cached["seconds"]
    gain = frames["seconds"] - cached["seconds"]
    break_even = writing["seconds"] / gain if gain > 0 else None
    return {
        "cpu": cpu_model(), "cpu_count": os.cpu_count(),
        "settings": {"model": args.model, "videos": args.videos, "frames": args.frames,
                     "input_size": args.input_size, "seq_len": args.seq_len, "batch": args.batch,
                     "epochs": args.epochs, "cached_epochs": args.cached_epochs, "feature_dim": writing["dim"],
                     "normalize": NORMALIZE,
                     "frame_size": list(FRAME_SIZE), "val_fraction": VAL_FRACTION, "test_fraction": TEST_FRACTION,
                     "weights": weights},
        "data": {**data, "splits": splits, "feature_folder": folder, "features_config": config},
        "feature_writing": writing, "cached_epoch": cached, "frames_epoch": frames,
        "ratio": ratio, "target_ratio": TARGET_RATIO, "ratio_target_met": bool(ratio >= TARGET_RATIO),
        "break_even_epochs": break_even,
        "parameters": params,
        "same_trainable_parameters": params["cached"]["trainable"] == params["frames"]["trainable"],
        "forms_agree": check,
        "seconds": time.perf_counter() - start,
    }


def print_report(r: dict) -> None:
    s, c, f, w = r["settings"], r["cached_epoch"], r["frames_epoch"], r["feature_writing"]
    met = "target met" if r["ratio_target_met"] else "target missed"
    print(f"\n{r['cpu']}, {r['cpu_count']} cores; {s['model']}, {s['input_size']} px, sequences of {s['seq_len']}, "
          f"batch {s['batch']}; train split {c['frames']} frames = {c['sequences']} sequences; "
          f"{s['feature_dim']} features per frame")
    print(f"{'one training epoch':44s} {'seconds':>9s} {'frames/s':>10s} {'first / warm-up s':>18s}")
    print(f"{'cached features (cached: true, HDF5)':44s} {c['seconds']:9.2f} {c['frames_per_s']:10.1f} "
          f"{c['first_epoch_s']:18.2f}")
    print(f"{'frames, frozen CNN recomputed (cached: false)':44s} {f['seconds']:9.2f} {f['frames_per_s']:10.1f} "
          f"{f['warmup_steps_s']:18.2f}")
    print(f"ratio: cached {r['ratio']:.1f}x faster (target >= {r['target_ratio']:.0f}x: {met})")
    when = "" if w["measured_in_this_run"] else " (measured when the files were written, by an earlier run)"
    print(f"feature writing (fer-keras features, once, every split): {w['seconds']:.1f} s for {w['frames']} frames, "
          f"{w['frames_per_s']:.1f} frames/s, {w['file_bytes'] / 1e6:.1f} MB{when}")
    if r["break_even_epochs"] is not None:
        print(f"break-even: writing + E cached epochs < E frames epochs for E > {r['break_even_epochs']:.2f}, "
              f"so caching pays off from epoch {math.floor(r['break_even_epochs']) + 1} on")
    a = r["forms_agree"]
    print(f"the two forms: trainable parameters {r['parameters']['cached']['trainable']:,} cached, "
          f"{r['parameters']['frames']['trainable']:,} frames; predictions on {a['sequences']} sequences "
          f"max |diff| {a['max_abs_diff']:.2e} (outputs up to {a['max_abs_output']:.2e}): "
          f"{'same' if a['same'] else 'DIFFERENT'}")


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", default="data/bench_va",
                   help="work directory: synthetic and prepared data, CNN weights, feature folder, bench_va.json")
    p.add_argument("--model", default=MODEL, choices=MODELS, help=f"thesis 003 registry model (default {MODEL})")
    p.add_argument("--videos", type=int, default=8,
                   help="synthetic videos (default 8: 6 train, 1 validation, 1 test)")
    p.add_argument("--frames", type=int, default=120, help="frames per synthetic video (default 120)")
    p.add_argument("--epochs", type=int, default=1,
                   help="timed epochs of the frames form, after its warm-up steps (default 1; the median is reported)")
    p.add_argument("--cached-epochs", type=int, default=3,
                   help="timed epochs of the cached form, after its warm-up epoch (default 3: they are short; "
                        "the median is reported)")
    p.add_argument("--batch", type=int, default=2, help="sequences per batch of both forms (thesis 003's best: 2)")
    p.add_argument("--input-size", type=int, default=72, help="face and CNN input size (default 72, thesis 003's)")
    p.add_argument("--seq-len", type=int, default=60, help="frames per sequence, T (default 60, thesis 003's best)")
    p.add_argument("--rewrite-features", action="store_true", help="write (and time) the feature files again")
    p.add_argument("--jobs", type=int, default=2, help="worker processes of the synthetic preparation")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress bars")
    return p


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    for name in ("videos", "frames", "epochs", "cached_epochs", "batch", "seq_len", "jobs"):
        if getattr(args, name) < 1:
            raise SystemExit(f"--{name.replace('_', '-')} must be at least 1")
    if args.input_size < 32:
        raise SystemExit("--input-size must be at least 32 (VGG19's five poolings)")
    from fer_keras.bench.pipeline import save_report  # TensorFlow only once a run starts

    report = run(args)
    print_report(report)
    save_report(report, os.path.join(args.out, "bench_va.json"))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
