"""`make bench-cascade`: thesis 002's cascade trained on cached VGGFace features against the same
cascade recomputing the VGGFace features of every frame in every epoch, in one run.

Thesis 002 (§2.6, §3.3, §4.3) trains its cascades (VGGFace features -> LSTM) on per-frame features
cached once in HDF5, because recomputing them each epoch was estimated at an hour per epoch. This
benchmark measures that choice on the same synthetic BU-4DFE videos and the same cascade:

1. **cached**: an epoch of ``cascade_lstm`` (LSTM(128) on T x F features + mask, softmax 6) fed
   by the real loader (``fer_keras.data.loader.split`` with a ``format: hdf5`` data section, i.e.
   ``fer_keras.data.features.feature_sequences``) from the file ``fer_keras.feature_extraction.extract``
   wrote; measured in full, ``--repeats`` times after a warm-up epoch (tracing).
2. **recompute**: the same registry entry with ``backbone: vggface_vgg16, trainable: 0`` instead of
   ``input_dim``: the same LSTM head on the frozen VGGFace conv base cut at the same tap (the
   Flatten ``features``: 7x7x512 = 25,088 at 224 px) and input size, inside ``MaskedTimeDistributed``,
   fed the face frames of the prepared TFRecord shards by the real pipeline (``loader.split``,
   ``format: tfrecord``). Both frozen parts load one weights file (random He-normal weights, kept
   under --out), so the two epochs compute the same thing; the run checks it on a few frames.
   At 224 px a step costs about a CNN pass over every frame of its videos, so after a warm-up step
   (tracing, on one frame) ``--recompute-steps`` steps are timed and the epoch is extrapolated by videos (0: the whole
   epoch is timed). The batch is ``--batch`` when it fits in memory, else the largest that does
   (``--recompute-batch``): the CNN sees all real frames of a batch in one call.
3. **reader vs step**: videos/s of reading the whole feature file through the loader's dataset
   (no training) against the cascade's training steps on one batch of cached features held in
   memory (videos/s): the reader must never be the bottleneck.

Also reported: the one-off cost of writing the features (``extract``), and the break-even: caching
pays off once the epochs exceed writing / (recompute epoch - cached epoch). Targets: cached >= 20x
faster per epoch, reader faster than the step. The exit code is 0 either way.

Synthetic videos (``fer-keras synth bu4dfe``, subjects of thesis fold 0, one video per subject
and emotion, ``--frames`` frames each, at least 40), their preparation (``fer-keras prepare bu4dfe
--no-trim``; both run as the command line in a subprocess, so this process never imports
``data_prep``), the weights, the extractor YAML and the feature file are kept under --out and
reused by a rerun (the writing time is then the one recorded when the file was written).
Everything is read from the page cache, so the figures are CPU costs; no weights are downloaded.
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

TARGET_RATIO = 20.0    # cached epoch at least this many times faster than recomputing
BACKBONE = "vggface_vgg16"
TAP = "features"       # the Flatten after the last pooling (thesis 002's 25,088 tap at 224 px)
NORMALIZE = "unit"
SEED = 0
CHECK_FRAMES = 4       # frames of the first video on which the run checks both frozen parts agree
MEMORY_SHARE = 0.5     # of the available memory, for the recompute batch's CNN activations
DATA_RECORD = "bench_data.json"
WRITING_RECORD = "bench_writing.json"


# --- data -------------------------------------------------------------------------------------

def fold0_subjects(count):
    """The first ``count`` subjects of thesis 002's fold 0 (16 of them: F011-F015, F017-F027)."""
    from fer_keras.data.splits import THESIS002_FOLDS

    subjects = THESIS002_FOLDS[0]
    if count > len(subjects):
        raise ValueError(f"at most {6 * len(subjects)} videos (the {len(subjects)} subjects of fold 0, "
                         f"6 emotions each), asked for {6 * count}")
    return list(subjects[:count])


def prepare_data(out, videos, frames, *, jobs=2) -> dict:
    """Write ``videos`` synthetic BU-4DFE videos of ``frames`` frames and prepare them (no trimming)
    into ``out/prepared`` with ``fer-keras synth bu4dfe`` and ``fer-keras prepare bu4dfe`` run in a
    subprocess; reused when already prepared with these settings. Returns what was done (the
    synthesis and preparation times include the subprocesses' start-up)."""
    from fer_keras.bench.pipeline import run_cli
    from fer_keras.classes import BU4DFE

    wanted = {"videos": videos, "frames": frames, "seed": SEED}
    src, prepared = os.path.join(out, "source"), os.path.join(out, "prepared")
    record = os.path.join(out, DATA_RECORD)
    if os.path.isfile(os.path.join(prepared, "manifest.json")) and os.path.isfile(record):
        with open(record) as f:
            if json.load(f).get("settings") == wanted:
                print(f"reusing {prepared} (delete {out} to prepare again)", flush=True)
                return {"root": prepared, "reused": True, "synth_s": None, "prepare_s": None}
    for path in (src, prepared, os.path.join(out, "features")):  # the features belong to the old videos
        shutil.rmtree(path, ignore_errors=True)
    if os.path.exists(record):
        os.remove(record)
    subjects = fold0_subjects(math.ceil(videos / len(BU4DFE)))
    surplus = [(s, e) for s in subjects for e in BU4DFE][videos:]

    print(f"writing {videos} synthetic BU-4DFE videos of {frames} frames ({', '.join(subjects)}) to {src}",
          flush=True)
    start = time.perf_counter()
    run_cli("synth", "bu4dfe", src, "--subjects", ",".join(subjects), "--min-frames", frames,
            "--max-frames", frames, "--long-video", 0, "--seed", SEED, "--no-broken")
    drop_videos(src, surplus)  # the last subject keeps only its first emotions: exactly `videos` videos
    synth_s = time.perf_counter() - start
    print(f"preparing {src} -> {prepared} (no trimming, -j {jobs})", flush=True)
    start = time.perf_counter()
    run_cli("prepare", "bu4dfe", src, prepared, "-q", "--no-trim", "--keep-incomplete-subjects", "-j", jobs)
    prepare_s = time.perf_counter() - start
    with open(os.path.join(prepared, "manifest.json")) as f:
        manifest = json.load(f)
    ok = [v for v in manifest["videos"].values() if v["status"] == "ok" and v.get("frames_kept", 0) > 0]
    if len(ok) != videos:
        raise RuntimeError(f"{prepared}: {len(ok)} of {videos} synthetic videos prepared (see failures.jsonl)")
    with open(record, "w") as f:
        json.dump({"settings": wanted, "synth_s": synth_s, "prepare_s": prepare_s}, f, indent=1)
    return {"root": prepared, "reused": False, "synth_s": synth_s, "prepare_s": prepare_s}


def drop_videos(src, pairs) -> None:
    """Remove the (subject, emotion) videos ``pairs`` from a synthetic BU-4DFE set in the video
    layout (``<subject>_<emotion>_tex.avi`` and its OpenFace CSV), and from its ground truth."""
    if not pairs:
        return
    names = {f"{subject}_{emotion}_tex" for subject, emotion in pairs}
    for name in sorted(names):
        video = os.path.join(src, name + ".avi")
        if not os.path.isfile(video):
            raise RuntimeError(f"{src}: fer-keras synth bu4dfe wrote no {name}.avi to leave out")
        os.remove(video)
        if os.path.isfile(os.path.join(src, name + ".csv")):
            os.remove(os.path.join(src, name + ".csv"))
    truth_file = os.path.join(src, "synthetic_truth.json")
    if os.path.isfile(truth_file):
        with open(truth_file) as f:
            truth = json.load(f)
        truth["videos"] = [v for v in truth.get("videos", []) if v.get("id") not in names]
        truth["missing"] = sorted(set(truth.get("missing", [])) | {n.removesuffix("_tex") for n in names})
        with open(truth_file, "w") as f:
            json.dump(truth, f, indent=1)


# --- the frozen VGGFace part, shared by the extractor and the recompute model -----------------

def weights_file(out, size) -> str:
    """Random (He-normal, seeded) VGGFace conv-base weights at ``size`` px, written once under
    ``out``: the extractor and the recompute model both load this file. A new file makes the
    feature files of that size stale, so they are removed."""
    import keras

    from fer_keras.models.backbones import build_backbone

    path = os.path.abspath(os.path.join(out, f"{BACKBONE}-{size}px.weights.h5"))
    if not os.path.isfile(path):
        shutil.rmtree(features_dir(out, size, None), ignore_errors=True)
        keras.utils.set_random_seed(SEED)
        cnn = build_backbone(BACKBONE, input_size=size, init="he_normal")
        tmp = path.removesuffix(".weights.h5") + ".tmp.weights.h5"
        cnn.save_weights(tmp)
        os.replace(tmp, path)
        del cnn
        keras.backend.clear_session()
    return path


def extractor_config(out, size, weights, prepared) -> str:
    """An experiment YAML naming ``vggface_finetune`` at ``size`` px with the shared weights: what
    ``fer-keras features CONFIG`` and ``load_extractor`` read."""
    import yaml

    path = os.path.abspath(os.path.join(out, f"extractor-{size}px.yaml"))
    config = {"name": f"bench_cascade_extractor_{size}px",
              "description": "bench_cascade: random VGGFace weights shared with the recompute model",
              "data": {"root": os.path.abspath(prepared), "format": "tfrecord", "pipeline": {"normalize": NORMALIZE}},
              "model": {"name": "vggface_finetune", "options": {"input_size": size, "weights": weights}}}
    text = yaml.safe_dump(config, sort_keys=False)
    if not os.path.isfile(path) or open(path).read() != text:
        with open(path, "w") as f:
            f.write(text)
    return path


def features_dir(out, size, frames) -> str:
    """The feature folder of one input size (``frames`` None: all folders of that size)."""
    base = os.path.join(out, "features", f"{size}px")
    return base if frames is None else os.path.join(base, f"T{frames}")


def write_features(extractor, prepared, folder, frames, *, rewrite=False, progress=True) -> dict:
    """``extract`` into ``folder`` (timed), or reuse the file a previous run wrote and its time."""
    from fer_keras.feature_extraction import extract

    record = os.path.join(folder, WRITING_RECORD)
    if rewrite or not os.path.isfile(record):
        shutil.rmtree(folder, ignore_errors=True)
    os.makedirs(folder, exist_ok=True)
    start = time.perf_counter()
    done = extract(extractor, prepared, folder, seq_len=frames, progress=progress)
    seconds = time.perf_counter() - start
    files = [d for d in done if os.path.basename(d["path"]).startswith("fold-0-")]
    if len(done) != 1 or not files:
        raise RuntimeError(f"{folder}: expected one fold-0 feature file, extract wrote {[d['path'] for d in done]}")
    path = files[0]["path"]
    if files[0]["written"]:
        with open(record, "w") as f:
            json.dump({"seconds": seconds, "videos": files[0]["videos"]}, f, indent=1)
        return {"path": path, "seconds": seconds, "measured_in_this_run": True}
    with open(record) as f:
        earlier = json.load(f)
    print(f"reusing {path}, written in {earlier['seconds']:.1f} s by an earlier run (--rewrite-features "
          "to time it again)", flush=True)
    return {"path": path, "seconds": earlier["seconds"], "measured_in_this_run": False}


# --- experiments (the training engine's own pieces) -------------------------------------------

def _training_section():
    return {"optimizer": {"name": "adam", "learning_rate": 1e-4}, "epochs": 1}  # thesis 002 §4.3: Adam 1e-4


def cached_experiment(feature_file, frames, dim, batch):
    """The cascade on the cached features: ``cascade_lstm`` (input_dim F) on a ``format: hdf5`` split."""
    from fer_keras import config as cfg

    folder, stem = os.path.split(os.path.abspath(feature_file))
    return cfg.from_dict({
        "name": "bench_cascade_cached",
        "data": {"root": folder, "format": "hdf5", "train_split": stem.removesuffix(".h5"),
                 "val_split": stem.removesuffix(".h5"),
                 # shuffle_buffer counts sequences of T x F x 4 bytes (10 MB at the thesis's width)
                 "pipeline": {"seq_len": frames, "padding": "zeros", "batch_size": batch, "shuffle_buffer": 32}},
        "model": {"name": "cascade_lstm", "options": {"input_dim": dim, "seq_len": frames}},
        "training": _training_section()}, "bench_cascade (cached)")


def recompute_experiment(prepared, frames, size, weights, batch):
    """The same cascade recomputing the features: ``cascade_lstm`` with the frozen VGGFace conv base
    (same weights, tap and input size as the extractor) on the prepared shards' frames."""
    from fer_keras import config as cfg

    return cfg.from_dict({
        "name": "bench_cascade_recompute",
        "data": {"root": os.path.abspath(prepared), "format": "tfrecord", "train_split": "train", "val_split": "train",
                 "pipeline": {"seq_len": frames, "padding": "zeros", "truncate": "end", "image_size": size,
                              "normalize": NORMALIZE, "batch_size": batch, "inputs": ["frames"],
                              "targets": ["category"]}},
        "model": {"name": "cascade_lstm", "options": {"input_dim": None, "backbone": BACKBONE, "input_size": size,
                                                      "weights": weights, "trainable": 0, "seq_len": frames}},
        "training": _training_section()}, "bench_cascade (recompute)")


def build(exp, steps):
    """The experiment's registry model, compiled by the training engine (Adam 1e-4, CCE, no XLA)."""
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


def frozen_part(model):
    """The image model inside the recompute model's ``MaskedTimeDistributed`` (layer ``frame_cnn``)."""
    return model.get_layer("frame_cnn").layer


def recompute_batch(batch, frames, size, requested=0) -> tuple[int, str]:
    """``(batch, why)``: ``requested``, else ``batch`` if its CNN activations fit in MEMORY_SHARE of
    the available memory, else the largest batch that does (at least 1)."""
    if requested:
        return requested, "--recompute-batch"
    per_frame = 3 * size * size * 64 * 4  # the widest VGG layers (64 maps at full size), in and out
    try:
        with open("/proc/meminfo") as f:
            available = next(int(line.split()[1]) * 1024 for line in f if line.startswith("MemAvailable:"))
    except (OSError, StopIteration):
        available = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    fits = max(1, int(MEMORY_SHARE * available // (frames * per_frame)))
    if fits >= batch:
        return batch, "the same batch as cached: it fits in memory"
    return fits, (f"batch {batch} does not fit: {batch} x {frames} frames x ~{per_frame / 1e6:.0f} MB of CNN "
                  f"activations > {MEMORY_SHARE:.0%} of {available / 1e9:.1f} GB available")


# --- measurement ------------------------------------------------------------------------------

def _clock():
    import keras

    class Clock(keras.callbacks.Callback):
        """Wall time of every training step and epoch."""

        def __init__(self):
            super().__init__()
            self.steps, self.epochs = [], []

        def on_epoch_begin(self, epoch, logs=None):
            self._epoch = time.perf_counter()

        def on_epoch_end(self, epoch, logs=None):
            self.epochs.append(time.perf_counter() - self._epoch)

        def on_train_batch_begin(self, batch, logs=None):
            self._step = time.perf_counter()

        def on_train_batch_end(self, batch, logs=None):
            self.steps.append(time.perf_counter() - self._step)

    return Clock()


def time_cached(exp, videos, repeats) -> tuple[dict, object]:
    """Full cached epochs: one warm-up epoch (tracing), then ``repeats`` timed ones."""
    from fer_keras import training
    from fer_keras.data import loader

    steps = loader.steps(exp.data, exp.data.train_split)
    model = build(exp, steps)
    clock = _clock()
    model.fit(training.training_data(exp, 0, 1 + repeats, steps), epochs=1 + repeats, steps_per_epoch=steps,
              verbose=0, callbacks=[clock], shuffle=False)
    timed = clock.epochs[1:]
    return {"seconds": statistics.median(timed), "rounds": timed, "first_epoch_s": clock.epochs[0],
            "steps_per_epoch": steps, "videos": videos, "videos_per_s": videos / statistics.median(timed)}, model


def time_steps(model, exp, steps) -> dict:
    """Training steps of ``model`` on one batch of cached features held in memory (no reading)."""
    import tensorflow as tf

    from fer_keras.data import loader

    batch = next(iter(loader.split(exp.data, exp.data.train_split, training=True)))
    size = int(batch[0]["mask"].shape[0])
    clock = _clock()
    model.fit(tf.data.Dataset.from_tensors(batch).repeat(), epochs=1, steps_per_epoch=1 + steps, verbose=0,
              callbacks=[clock], shuffle=False)
    timed = clock.steps[1:]  # the first one may trace again for the new dataset
    return {"batch_videos": size, "step_seconds": timed, "videos_per_s": size / statistics.median(timed)}


def time_reader(exp, videos, passes) -> dict:
    """The whole feature file read ``passes`` times through the loader's training dataset (shuffled
    order, batches of ``--batch``), without training: one untimed pass, then the timed ones, start-up
    of the dataset included."""
    from fer_keras.data import loader

    def read(epoch, epochs):
        seen = 0
        for x, _ in loader.split(exp.data, exp.data.train_split, training=True, epoch=epoch, epochs=epochs):
            seen += int(x["features"].shape[0])
        return seen

    read(0, 1)
    wall, cpu = time.perf_counter(), time.process_time()
    seen = read(1, passes)
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    if seen != videos * passes:
        raise RuntimeError(f"{exp.data.root}: read {seen} videos in {passes} passes of {videos}")
    return {"passes": passes, "videos_read": seen, "seconds": wall, "videos_per_s": seen / wall,
            "cpu_ms_per_video": 1000 * cpu / seen}


def time_recompute(exp, videos, steps) -> tuple[dict, object]:
    """Recompute-epoch steps: one warm-up step (tracing; one video with one real frame, so the CNN
    runs once), then ``steps`` timed steps and the epoch extrapolated by videos, or (``steps`` 0 or
    at least the epoch's) one whole timed epoch."""
    import tensorflow as tf

    from fer_keras import training
    from fer_keras.data import loader

    batch = exp.data.pipeline.batch_size
    per_epoch = loader.steps(exp.data, exp.data.train_split)
    whole = steps <= 0 or steps >= per_epoch
    timed_steps = per_epoch if whole else steps
    model = build(exp, per_epoch)

    def one_frame(x, y):  # the warm-up only traces the step: one video with one real frame
        mask = x["mask"][:1] * tf.one_hot(0, tf.shape(x["mask"])[1], dtype=x["mask"].dtype)
        return {**{k: v[:1] for k, v in x.items()}, "mask": mask}, {k: v[:1] for k, v in y.items()}

    clock = _clock()
    model.fit(training.training_data(exp, 0, 1, per_epoch).take(1).map(one_frame), epochs=1, steps_per_epoch=1,
              verbose=0, callbacks=[clock], shuffle=False)
    warmup = clock.steps[0]
    clock = _clock()
    model.fit(training.training_data(exp, 1, 1, per_epoch).take(timed_steps), epochs=1,
              steps_per_epoch=timed_steps, verbose=0, callbacks=[clock], shuffle=False)
    timed_videos = videos if whole else min(videos, timed_steps * batch)
    seconds = sum(clock.steps)
    epoch = seconds if whole else seconds / timed_videos * videos
    how = "measured (whole epoch)" if whole else f"extrapolated from {timed_steps} steps ({timed_videos} videos)"
    return {"seconds": epoch, "how": how, "extrapolated": not whole, "batch": batch, "steps_per_epoch": per_epoch,
            "timed_steps": timed_steps, "timed_videos": timed_videos, "step_seconds": clock.steps,
            "warmup_step_s": warmup, "videos_per_s": videos / epoch,
            "peak_rss_gb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1e6}, model


def check_frozen_parts(extractor, recompute_model, recompute_exp, feature_file, frames=CHECK_FRAMES) -> dict:
    """Both frozen parts on the first real frames of one video from the recompute feed, against that
    video's row of the cached file (and the two weight sets against each other)."""
    import h5py

    from fer_keras.data import loader

    x, _, meta = next(iter(loader.split(recompute_exp.data, recompute_exp.data.train_split, with_meta=True)))
    name = meta["video_id"][0].numpy().decode()
    real = np.flatnonzero(x["mask"][0].numpy() > 0)[:frames]
    images = x["frames"][0].numpy()[real]
    with h5py.File(feature_file, "r") as f:
        row = int(np.flatnonzero(f["names"].asstr()[()] == name)[0])
        cached = f["features"][row][real].astype(np.float32)
    ours = {"extractor": extractor.model(images, training=False).numpy(),
            "recompute": frozen_part(recompute_model)(images, training=False).numpy()}
    scale = float(np.abs(cached).max()) or 1.0
    diffs = {k: float(np.abs(v - cached).max()) for k, v in ours.items()}
    same_weights = all(np.array_equal(a, b) for a, b in zip(extractor.model.get_weights(),
                                                             frozen_part(recompute_model).get_weights()))
    return {"video": name, "frames": len(real), "max_abs_diff": diffs, "max_abs_feature": scale,
            "same_weights": bool(same_weights),
            "same": bool(same_weights and max(diffs.values()) <= 1e-4 * scale)}


def cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            return next(line.split(":", 1)[1].strip() for line in f if line.startswith("model name"))
    except (OSError, StopIteration):
        import platform
        return platform.processor() or "unknown"


# --- run --------------------------------------------------------------------------------------

def run(args) -> dict:
    import keras

    from fer_keras.feature_extraction import load_extractor

    start = time.perf_counter()
    os.makedirs(args.out, exist_ok=True)
    synth_frames = max(args.frames, 40)  # the synthetic generator's shortest video
    data = prepare_data(args.out, args.videos, synth_frames, jobs=args.jobs)
    prepared = data["root"]
    with open(os.path.join(prepared, "manifest.json")) as f:
        manifest = json.load(f)
    kept = [v["frames_kept"] for v in manifest["videos"].values() if v["status"] == "ok"]
    real_frames = sum(min(n, args.frames) for n in kept)

    weights = weights_file(args.out, args.input_size)
    extractor = load_extractor(extractor_config(args.out, args.input_size, weights, prepared), TAP)
    dim = extractor.dim
    print(f"extractor: vggface_finetune cut at {TAP!r}, {args.input_size} px -> {dim} features per frame; "
          f"writing the features of {args.videos} videos x {args.frames} frames ({real_frames} real frames)",
          flush=True)
    folder = features_dir(args.out, args.input_size, args.frames)
    writing = write_features(extractor, prepared, folder, args.frames, rewrite=args.rewrite_features,
                             progress=not args.quiet)
    writing.update(frames=real_frames, frames_per_s=real_frames / writing["seconds"],
                   file_bytes=os.path.getsize(writing["path"]))
    print(f"feature writing: {writing['seconds']:.1f} s ({writing['frames_per_s']:.1f} frames/s)", flush=True)

    cached_exp = cached_experiment(writing["path"], args.frames, dim, args.batch)
    print(f"cached: {1 + args.repeats} epochs of cascade_lstm at batch {args.batch} (the first untimed)", flush=True)
    cached, cached_model = time_cached(cached_exp, args.videos, args.repeats)
    print(f"  epoch {cached['seconds']:.2f} s (rounds {', '.join(f'{s:.2f}' for s in cached['rounds'])}; "
          f"first {cached['first_epoch_s']:.2f} s)", flush=True)
    step = time_steps(cached_model, cached_exp, args.repeats)
    cached_params = parameter_counts(cached_model)
    del cached_model
    keras.backend.clear_session()
    passes = min(10, max(args.repeats, math.ceil(4 * args.batch / args.videos)))  # at least 4 batches' worth
    reader = time_reader(cached_exp, args.videos, passes)
    print(f"  step {step['videos_per_s']:.1f} videos/s (batch of {step['batch_videos']}); reader "
          f"{reader['videos_per_s']:.1f} videos/s", flush=True)

    batch, why = recompute_batch(args.batch, args.frames, args.input_size, args.recompute_batch)
    recompute_exp = recompute_experiment(prepared, args.frames, args.input_size, weights, batch)
    print(f"recompute: cascade_lstm on the frozen {BACKBONE} at batch {batch} ({why})", flush=True)
    recompute, recompute_model = time_recompute(recompute_exp, args.videos, args.recompute_steps)
    print(f"  epoch {recompute['seconds']:.1f} s, {recompute['how']}", flush=True)
    recompute_params = parameter_counts(recompute_model)
    check = check_frozen_parts(extractor, recompute_model, recompute_exp, writing["path"])
    recompute.update(batch_reason=why)

    ratio = recompute["seconds"] / cached["seconds"]
    gain = recompute["seconds"] - cached["seconds"]
    break_even = writing["seconds"] / gain if gain > 0 else None
    return {
        "cpu": cpu_model(), "cpu_count": os.cpu_count(),
        "settings": {"videos": args.videos, "frames": args.frames, "synthetic_frames": synth_frames,
                     "input_size": args.input_size, "tap": TAP, "feature_dim": dim, "batch": args.batch,
                     "recompute_batch": batch, "repeats": args.repeats, "recompute_steps": args.recompute_steps,
                     "normalize": NORMALIZE, "weights": weights},
        "data": {**data, "real_frames": real_frames, "feature_file": writing["path"],
                 "extractor_config": extractor.settings["source"]},
        "feature_writing": writing, "cached_epoch": cached, "recompute_epoch": recompute,
        "ratio": ratio, "target_ratio": TARGET_RATIO, "ratio_target_met": bool(ratio >= TARGET_RATIO),
        "reader": reader, "step": step, "reader_vs_step": reader["videos_per_s"] / step["videos_per_s"],
        "reader_target_met": bool(reader["videos_per_s"] > step["videos_per_s"]),
        "break_even_epochs": break_even,
        "parameters": {"cached": cached_params, "recompute": recompute_params},
        "same_trainable_parameters": cached_params["trainable"] == recompute_params["trainable"],
        "frozen_parts_agree": check,
        "seconds": time.perf_counter() - start,
    }


def print_report(r: dict) -> None:
    s, c, rc, w = r["settings"], r["cached_epoch"], r["recompute_epoch"], r["feature_writing"]
    met = lambda ok: "target met" if ok else "target missed"  # noqa: E731
    print(f"\n{r['cpu']}, {r['cpu_count']} cores; {s['videos']} videos x {s['frames']} frames "
          f"({r['data']['real_frames']} real), {s['input_size']} px, tap {s['tap']!r} = {s['feature_dim']} features")
    print(f"{'cascade_lstm, one epoch':48s} {'seconds':>9s} {'videos/s':>9s} {'batch':>6s}")
    print(f"{'cached features (HDF5, fer_keras loader)':48s} {c['seconds']:9.2f} {c['videos_per_s']:9.2f} "
          f"{s['batch']:6d}")
    print(f"{'recomputing VGGFace features (TFRecord frames)':48s} {rc['seconds']:9.2f} {rc['videos_per_s']:9.2f} "
          f"{rc['batch']:6d}   {rc['how']}")
    print(f"ratio: cached {r['ratio']:.1f}x faster (target >= {r['target_ratio']:.0f}x: {met(r['ratio_target_met'])})")
    print(f"recompute batch {rc['batch']}: {rc['batch_reason']}")
    print(f"reader {r['reader']['videos_per_s']:.1f} videos/s ({r['reader']['cpu_ms_per_video']:.1f} ms CPU per video) "
          f"vs training step {r['step']['videos_per_s']:.2f} videos/s: {r['reader_vs_step']:.1f}x "
          f"(target: reader faster: {met(r['reader_target_met'])})")
    when = "" if w["measured_in_this_run"] else " (measured when the file was written, by an earlier run)"
    print(f"feature writing (extract, once): {w['seconds']:.1f} s, {w['frames_per_s']:.1f} frames/s, "
          f"{w['file_bytes'] / 1e6:.0f} MB{when}")
    if r["break_even_epochs"] is not None:
        print(f"break-even: writing + E cached epochs < E recompute epochs for E > {r['break_even_epochs']:.2f}, "
              f"so caching pays off from epoch {math.floor(r['break_even_epochs']) + 1} on (thesis 002: 40 epochs)")
    agree = r["frozen_parts_agree"]
    print(f"frozen parts: same weights {agree['same_weights']}, max |diff| to the cached features on "
          f"{agree['frames']} frames of {agree['video']}: " + ", ".join(f"{k} {v:.2e}" for k, v in
                                                                          agree["max_abs_diff"].items())
          + f" (features up to {agree['max_abs_feature']:.2e}); trainable parameters "
          f"{r['parameters']['cached']['trainable']:,} cached, {r['parameters']['recompute']['trainable']:,} recompute")


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", default="data/bench_cascade",
                   help="work directory: synthetic and prepared data, weights, feature file, bench_cascade.json")
    p.add_argument("--videos", type=int, default=12, help="training videos per epoch (default 12; at most 96)")
    p.add_argument("--input-size", type=int, default=224,
                   help="VGGFace input size (default 224, the thesis's: the tap is 7x7x512 = 25,088 features)")
    p.add_argument("--frames", type=int, default=100,
                   help="frames per video, T (default 100 like the thesis; synthetic videos have at least 40)")
    p.add_argument("--batch", type=int, default=32, help="videos per batch of the cached epoch (thesis 002: 32)")
    p.add_argument("--recompute-batch", type=int, default=0,
                   help="videos per batch of the recompute epoch (default 0: --batch if it fits in memory)")
    p.add_argument("--recompute-steps", type=int, default=2,
                   help="timed recompute steps, extrapolated to the epoch (default 2; 0: time the whole epoch)")
    p.add_argument("--repeats", type=int, default=3, help="timed cached epochs, in-memory steps, reader passes")
    p.add_argument("--rewrite-features", action="store_true", help="write (and time) the feature file again")
    p.add_argument("--jobs", type=int, default=2, help="worker processes of the synthetic preparation")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress bars")
    return p


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    for name in ("videos", "frames", "batch", "repeats", "jobs"):
        if getattr(args, name) < 1:
            raise SystemExit(f"--{name} must be at least 1")
    if args.input_size < 32:
        raise SystemExit("--input-size must be at least 32 (VGGFace's five poolings)")
    from fer_keras.bench.pipeline import save_report  # TensorFlow only once a run starts

    report = run(args)
    print_report(report)
    save_report(report, os.path.join(args.out, "bench_cascade.json"))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
