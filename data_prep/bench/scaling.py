"""`make scaling-report`: what each stage costs per item on this machine, how that cost grows with
input size, and the wall time it projects for the full AFEW, BU-4DFE, Aff-Wild and EmotioNet at 1,
8 and 64 workers. A researcher sizing a cluster job needs these figures; they are measured here and
never typed in (the README's scaling guide pastes this script's output).

Measured (one warm-up excluded, median of --repeats):
- detect: streamed ffmpeg decode + FaceDetector (MTCNN, default options, batches of 32), as
  `prepare` runs them, on synthetic H.264 clips with a moving face (data_prep.synthetic_render) at
  320x240, 720x576 and 1280x720; cost per frame against frame pixels.
- audio: openSMILE LLDs per 40 ms clip (eGeMAPSv02) and IS10 functionals (data_prep.audio, the
  preparation's defaults) on speech-like 16 kHz wavs of 4, 16 and 64 s; cost per clip against its
  seconds.
- features: thesis 002's feature tap (fer_keras.feature_extraction.tap_model on vggface_finetune,
  layer 'features') in calls of 8 images at 56, 112 and 224 px; cost per image against input pixels.
- train step: train_on_batch of a registry model (default alexnet_gru_va, thesis 001's AlexNet-GRU
  at 96 px, batch 4) at sequence lengths 16, 32 and 64; cost per step against sequence length.
- start-up: a fresh Python process importing data_prep and TensorFlow, plus each stage's own load
  (detector + first batch, openSMILE, CNN build + first call, model build + compile + first step).
A tuning trial is not timed: it is derived as build + epochs x steps of the measured training step.
Growth is the slope of a least-squares line through (log size, log cost): cost ~ size ** exponent.

Worker model of the projections:
- detect, audio, features: the dataset's videos (or images) are shared out; wall = one worker's
  start-up + total work / min(workers, items).
- training: synchronous data parallelism with the measured per-replica batch; an epoch takes
  ceil(sequences / (workers x batch)) steps, each the measured step plus a ring all-reduce of the
  float32 gradients, 2 (W-1)/W x 4 x params bytes over --bandwidth-gbit, not overlapped with
  compute. That overhead is an ASSUMPTION (nothing here measures a network), as is a step's cost
  staying the same with more replicas.
- tuning: trials run in parallel, one per worker; wall = ceil(trials / min(workers, trials)) x trial.
The training row uses the measured model as a stand-in for each thesis's model, at the dataset's
sequence length (a still image is a sequence of 1); a size outside the measured range is an
extrapolation and is marked so.
"""
from __future__ import annotations

import argparse
import csv
import datetime
import json
import math
import os
import platform
import statistics
import subprocess
import sys
import time
import wave
from dataclasses import asdict, dataclass

import numpy as np
from tqdm import tqdm

from data_prep.bench import cpu_name

WORKERS = (1, 8, 64)
BANDWIDTH_GBIT = 10.0  # assumed link between data-parallel workers (10 Gbit/s Ethernet)
DETECT_BATCH = 32      # the preparation's batch (data_prep.prepare)
FEATURE_BATCH = 8
SAMPLE_RATE = 16000    # the preparation's wav rate (data_prep.video.extract_audio)
CLIP_S = 0.04          # one audio clip per 25 fps frame


@dataclass(frozen=True)
class Figure:
    """One dataset size and where it comes from."""
    value: float
    source: str


@dataclass(frozen=True)
class DatasetSize:
    """What a full dataset asks of each stage; every figure carries its source."""
    name: str
    unit: str              # what a worker takes at a time: "video" or "image"
    items: Figure
    frames: Figure         # video frames, or images for a still-image set
    width: Figure
    height: Figure
    audio_seconds: Figure  # 0: no audio track
    input_size: Figure     # the thesis model's face / image input, px
    seq_len: Figure
    epochs: Figure
    trials: Figure


_TRIALS = Figure(20, "thesis 002 §3.2.4: 20 KerasTuner trials (Bayesian optimisation); the other theses state none")
DATASETS = (
    DatasetSize(
        "AFEW", "video",
        items=Figure(1809, "thesis 000 §2.2.2: 773 train + 383 val + 653 test clips"),
        frames=Figure(1809 * 144, "UPPER BOUND: every clip at 144 frames, the longest detected sequence "
                                  "(thesis 000 'Seq Length = 144 takes the whole sequence'); mean not stated"),
        width=Figure(720, "not in the theses: AFEW's PAL 720x576 (the project's AFEW reader and bench use it)"),
        height=Figure(576, "as width"),
        audio_seconds=Figure(1809 * 144 / 25, "frames / 25 fps (thesis 000 §2.2.2: 25 FPS), same upper bound"),
        input_size=Figure(112, "thesis 000 §5.1.1: every image resized to 112x112"),
        seq_len=Figure(40, "thesis 000 §6.3: sequence length 40 for the larger models"),
        epochs=Figure(30, "thesis 000 §6.3: train epochs 5 + 25"),
        trials=_TRIALS),
    DatasetSize(
        "BU-4DFE", "video",
        items=Figure(600, "thesis 002 §3.2.2: 600 videos, 100 subjects"),
        frames=Figure(600 * 100, "thesis 002 §3.2.3: 587/600 videos <= 100 frames after trimming, T = 100; "
                                 "raw length not stated"),
        width=Figure(640, "thesis 002 Table 3.1: 480 x 640"),
        height=Figure(480, "thesis 002 Table 3.1: 480 x 640"),
        audio_seconds=Figure(0, "texture videos have no audio track"),
        input_size=Figure(224, "thesis 002 §3.2.4: VGGFace's 7x7x512 map before Flatten implies 224 px (inferred)"),
        seq_len=Figure(100, "thesis 002 §3.2.3: fixed length T = 100"),
        epochs=Figure(40, "thesis 002 §3.2.4: cascade temporal models, 40 epochs"),
        trials=_TRIALS),
    DatasetSize(
        "Aff-Wild", "video",
        items=Figure(298, "thesis 001 §2.4: 298 videos, 200 subjects"),
        frames=Figure(1_250_000, "thesis 001 §2.4 table: 1,250,000 (its §6.7/§7.1 also say 800,000-996,000)"),
        width=Figure(640, "thesis 001 §2.4 table: 640x360 (abstract: mean 607x359)"),
        height=Figure(360, "thesis 001 §2.4 table"),
        audio_seconds=Figure(1_250_000 / 30, "frames / 30 fps: ASSUMED rate (not in the theses; thesis 003 "
                                             "converted its Aff-Wild-style videos to 30 fps)"),
        input_size=Figure(96, "thesis 001 (extract-001 §4.4): 96x96, as the original VGGFace-GRU"),
        seq_len=Figure(80, "thesis 001 §6.3: sequence length 80, as the Aff-Wild models"),
        epochs=Figure(50, "thesis 001 (extract-001 §4.5): 50 epochs, on its own 4K set (Aff-Wild was its test set)"),
        trials=_TRIALS),
    DatasetSize(
        "EmotioNet", "image",
        items=Figure(1_000_000, "thesis 004 §2.3 (and thesis 002 Table 2.2): 1,000,000 images"),
        frames=Figure(1_000_000, "one frame per image"),
        width=Figure(640, "not in the theses: ASSUMED 640x480 (web photos of varying size)"),
        height=Figure(480, "as width"),
        audio_seconds=Figure(0, "still images"),
        input_size=Figure(224, "thesis 004 §3: TF-Slim's default 224 px for vgg_16 and inception_v2 (inferred)"),
        seq_len=Figure(1, "a still image"),
        epochs=Figure(1, "ASSUMED one pass (thesis 004 ran 20,000 steps of 32 on its 10,282-image subset)"),
        trials=_TRIALS),
)


# --- growth ------------------------------------------------------------------------------------

def fit_growth(sizes, seconds) -> dict:
    """cost = coefficient * size ** exponent, fitted by least squares in log-log space, so one
    exponent says how a stage's cost grows with its input (1: linear, 2: quadratic, ~0: flat)."""
    sizes, seconds = np.asarray(sizes, np.float64), np.asarray(seconds, np.float64)
    if sizes.shape != seconds.shape or len(np.unique(sizes)) < 2:
        raise ValueError(f"a growth fit needs costs at two or more different sizes, got sizes {sizes.tolist()} "
                         f"and costs {seconds.tolist()}")
    if (sizes <= 0).any() or (seconds <= 0).any():
        raise ValueError(f"sizes and costs must be positive, got sizes {sizes.tolist()}, costs {seconds.tolist()}")
    exponent, intercept = np.polyfit(np.log(sizes), np.log(seconds), 1)
    return {"coefficient": float(np.exp(intercept)), "exponent": float(exponent)}


def predict(stage: dict, size: float) -> float:
    """A stage's cost per item at `size`, from its fitted growth."""
    return stage["fit"]["coefficient"] * size ** stage["fit"]["exponent"]


def _outside(stage: dict, size: float) -> bool:
    return not min(stage["sizes"]) <= size <= max(stage["sizes"])


# --- measurement -------------------------------------------------------------------------------

def _median_seconds(fn, repeats: int) -> float:
    """Median wall time of `fn()` over `repeats` calls after one untimed warm-up call."""
    fn()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def _timed(fn):
    start = time.perf_counter()
    result = fn()
    return result, time.perf_counter() - start


def _stage(unit, size_name, labels, sizes, seconds, load_s, **extra) -> dict:
    return {"unit": unit, "size_name": size_name, "labels": labels, "sizes": sizes,
            "seconds_per_unit": seconds, "fit": fit_growth(sizes, seconds), "load_s": load_s, **extra}


def import_seconds() -> float:
    """A worker's start-up before any stage: a fresh Python importing data_prep and TensorFlow."""
    code = ("import time; t = time.perf_counter(); import data_prep.face, tensorflow; "
            "print(time.perf_counter() - t)")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    return float(done.stdout.strip().splitlines()[-1])


def measure_detection(work, resolutions, frames, repeats, bar) -> dict:
    from data_prep.face import FaceDetector
    from data_prep.synthetic_render import render_frames, write_video
    from data_prep.video import VideoStream

    rng, clips = np.random.default_rng(3), []
    for width, height in resolutions:
        path = os.path.join(work, f"clip_{width}x{height}.mp4")
        write_video(path, render_frames(rng, width, height, 1, frames, set(range(frames)), 0.25), width, height,
                    ((frames, 25.0),), "libx264")
        clips.append(path)

    def run(detector, path):
        return lambda: [detector.detect(batch) for _, batch in VideoStream(path).batches(DETECT_BATCH)]

    detector, load_s = _timed(FaceDetector)
    load_s += _timed(run(detector, clips[0]))[1]  # the networks' first trace
    seconds = []
    for path in clips:
        seconds.append(_median_seconds(run(detector, path), repeats) / frames)
        bar.update()
    return _stage("frame", "frame pixels", [f"{w}x{h}" for w, h in resolutions],
                  [w * h for w, h in resolutions], seconds, load_s)


def _write_wav(path, seconds, rng) -> None:
    from data_prep.synthetic_render import render_audio

    with wave.open(path, "wb") as f:
        f.setnchannels(1)
        f.setsampwidth(2)
        f.setframerate(SAMPLE_RATE)
        f.writeframes(render_audio(rng, 3, seconds, SAMPLE_RATE)[:, 0].tobytes())


def measure_audio(work, durations, repeats, bar) -> dict:
    from data_prep.audio import AudioFeatures, clip_bounds_ms

    rng = np.random.default_rng(5)
    features, load_s = _timed(AudioFeatures)
    seconds = []
    for duration in durations:
        path = os.path.join(work, f"speech_{duration:g}s.wav")
        _write_wav(path, duration, rng)
        times = np.arange(int(duration / CLIP_S)) * CLIP_S
        bounds = clip_bounds_ms(times, np.full(len(times), CLIP_S))
        seconds.append(_median_seconds(lambda: (features.lld(path, bounds), features.functionals(path)), repeats))
        bar.update()
    return _stage("clip", "clip seconds", [f"{d:g} s" for d in durations], list(durations), seconds, load_s,
                  lld_dim=features.lld_dim, functionals_dim=features.functionals_dim)


def measure_features(input_sizes, repeats, bar) -> dict:
    import keras

    from fer_keras import models
    from fer_keras.feature_extraction import tap_model

    seconds, widths, loads = [], [], []
    for size in input_sizes:
        keras.utils.set_random_seed(0)
        images = np.random.default_rng(0).uniform(0, 1, (FEATURE_BATCH, size, size, 3)).astype(np.float32)
        cnn, load_s = _timed(lambda: tap_model(models.build("vggface_finetune", input_size=size), "features"))
        loads.append(load_s + _timed(lambda: cnn(images))[1])
        seconds.append(_median_seconds(lambda: cnn(images).numpy(), repeats) / FEATURE_BATCH)
        widths.append(int(cnn.output.shape[-1]))
        del cnn
        keras.backend.clear_session()
        bar.update()
    return _stage("image", "input pixels", [f"{s} px" for s in input_sizes], [s * s for s in input_sizes],
                  seconds, statistics.median(loads), model="vggface_finetune", tap="features",
                  feature_width=widths, batch=FEATURE_BATCH)


_LOSSES = {"category": "categorical_crossentropy", "va": "mse", "au": "binary_crossentropy"}


def _batch(net, batch, rng):
    """A random batch for `net`: frames and features uniform in [0, 1), masks all ones, one-hot or
    uniform targets."""
    x = {i.name: np.ones((batch, *i.shape[1:]), np.float32) if i.name == "mask"
         else rng.uniform(size=(batch, *i.shape[1:])).astype(np.float32) for i in net.inputs}
    y = {}
    for name, out in zip(net.output_names, net.outputs):
        shape = (batch, *out.shape[1:])
        y[name] = (np.eye(shape[-1], dtype=np.float32)[rng.integers(0, shape[-1], shape[:-1])]
                   if name == "category" else rng.uniform(size=shape).astype(np.float32))
    return x, y


def measure_training(model, seq_lens, batch, repeats, bar, options=None) -> dict:
    import keras

    from fer_keras import models

    rng, seconds, loads, params = np.random.default_rng(0), [], [], 0
    for seq_len in seq_lens:
        keras.utils.set_random_seed(0)

        def build():
            net = models.build(model, seq_len=seq_len, **(options or {}))
            net.compile(optimizer=keras.optimizers.Adam(1e-4), loss={n: _LOSSES[n] for n in net.output_names})
            return net

        net, load_s = _timed(build)
        x, y = _batch(net, batch, rng)
        loads.append(load_s + _timed(lambda: net.train_on_batch(x, y))[1])  # tracing and compiling
        seconds.append(_median_seconds(lambda: net.train_on_batch(x, y), repeats))
        params = int(net.count_params())
        del net
        keras.backend.clear_session()
        bar.update()
    return _stage("step", "sequence length", [f"T={t}" for t in seq_lens], list(seq_lens), seconds,
                  statistics.median(loads), model=model, options=options or {}, batch=batch, params=params)


SIZES = {  # detection resolutions, audio seconds, feature input px, training sequence lengths, clip frames
    "full": dict(resolutions=((320, 240), (720, 576), (1280, 720)), durations=(4, 16, 64),
                 input_sizes=(56, 112, 224), seq_lens=(16, 32, 64), frames=64),
    "quick": dict(resolutions=((160, 120), (320, 240)), durations=(1, 4), input_sizes=(32, 64),
                  seq_lens=(2, 4), frames=16),
}


def measure(work, *, quick=False, repeats=3, model="alexnet_gru_va", batch=4, progress=True) -> dict:
    """Every stage's per-item cost at each size and its fitted growth, with the machine's record."""
    import keras
    import tensorflow as tf

    from fer_keras import models

    sizes = SIZES["quick" if quick else "full"]
    options = {k: v for k, v in models.entry(model).small.items() if k != "seq_len"} if quick else None
    os.makedirs(work, exist_ok=True)
    total = sum(len(sizes[k]) for k in ("resolutions", "durations", "input_sizes", "seq_lens")) + 1
    with tqdm(total=total, desc="scaling", unit="size", disable=not progress) as bar:
        stages = {"detect": measure_detection(work, sizes["resolutions"], sizes["frames"], repeats, bar),
                  "audio": measure_audio(work, sizes["durations"], repeats, bar),
                  "features": measure_features(sizes["input_sizes"], repeats, bar),
                  "train_step": measure_training(model, sizes["seq_lens"], batch, repeats, bar, options)}
        start_s = import_seconds()
        bar.update()
    return {"machine": {"cpu": cpu_name(), "cores": os.cpu_count(), "python": platform.python_version(),
                        "tensorflow": tf.__version__, "keras": keras.__version__,
                        "date": datetime.date.today().isoformat()},
            "quick": quick, "repeats": repeats, "import_s": start_s, "stages": stages}


# --- projection --------------------------------------------------------------------------------

def _check_workers(workers) -> int:
    if isinstance(workers, bool) or not isinstance(workers, int) or workers < 1:
        raise ValueError(f"workers must be a whole number >= 1, got {workers!r}")
    return workers


def per_item_wall(work_s: float, startup_s: float, workers: int, items: int) -> float:
    """Items shared out over workers that each pay their start-up once; no more workers than items."""
    return startup_s + work_s / min(_check_workers(workers), items)


def allreduce_s(params: int, workers: int, bandwidth_gbit: float) -> float:
    """ASSUMED cost of one ring all-reduce of float32 gradients: 2 (W-1)/W x 4 x params bytes."""
    if not bandwidth_gbit > 0:
        raise ValueError(f"bandwidth must be positive, got {bandwidth_gbit} Gbit/s")
    return 2 * (workers - 1) / workers * 4 * params / (bandwidth_gbit * 1e9 / 8)


def training_wall(sequences: int, batch: int, step_s: float, epochs: float, workers: int, params: int,
                  bandwidth_gbit: float, startup_s: float) -> float:
    """Synchronous data parallelism: per-replica `batch`, each step plus its all-reduce."""
    steps = math.ceil(sequences / (_check_workers(workers) * batch))
    return startup_s + epochs * steps * (step_s + allreduce_s(params, workers, bandwidth_gbit))


def tuning_wall(trial_s: float, trials: int, workers: int, startup_s: float = 0.0) -> float:
    """Whole trials in parallel, one per worker, in rounds; more workers than trials stay idle."""
    return startup_s + math.ceil(trials / min(_check_workers(workers), trials)) * trial_s


def project(measured: dict, datasets=DATASETS, workers=WORKERS, bandwidth_gbit=BANDWIDTH_GBIT) -> list[dict]:
    """One row per dataset and stage: the work, the cost per unit and the wall time per worker count."""
    for w in workers:
        _check_workers(w)
    st, start = measured["stages"], measured["import_s"]
    rows = []

    def row(d, stage, work, unit_s, unit, walls, extrapolated=False):
        rows.append({"dataset": d.name, "stage": stage, "work": work, "per_unit_s": unit_s, "unit": unit,
                     "wall_s": walls, "extrapolated": extrapolated})

    for d in datasets:
        items, frames = int(d.items.value), int(d.frames.value)
        pixels, unit = d.width.value * d.height.value, d.unit
        det = st["detect"]
        per = predict(det, pixels)
        row(d, "decode + detect", f"{frames:,} frames", per, "frame",
            {w: per_item_wall(frames * per, start + det["load_s"], w, items) for w in workers},
            _outside(det, pixels))
        if d.audio_seconds.value:
            clip = d.audio_seconds.value / items
            per = predict(st["audio"], clip)
            row(d, "audio LLDs + functionals", f"{d.audio_seconds.value / 3600:,.1f} h", per / clip,
                "s of audio", {w: per_item_wall(items * per, start + st["audio"]["load_s"], w, items)
                               for w in workers}, _outside(st["audio"], clip))
        feat, px = st["features"], d.input_size.value ** 2
        per = predict(feat, px)
        row(d, f"CNN features ({int(d.input_size.value)} px)", f"{frames:,} {'images' if unit == 'image' else 'faces'}",
            per, "image", {w: per_item_wall(frames * per, start + feat["load_s"], w, items) for w in workers},
            _outside(feat, px))
        tr, seq_len = st["train_step"], int(d.seq_len.value)
        step_s, sequences, epochs = predict(tr, seq_len), math.ceil(frames / seq_len), d.epochs.value
        build_s, n_epochs = start + tr["load_s"], f"{epochs:g} epoch{'s' * (epochs != 1)}"
        row(d, f"training, {n_epochs} (T={seq_len})", f"{math.ceil(sequences / tr['batch']):,} steps/epoch",
            step_s, "step", {w: training_wall(sequences, tr["batch"], step_s, epochs, w, tr["params"],
                                              bandwidth_gbit, build_s) for w in workers},
            _outside(tr, seq_len))
        trial_s = training_wall(sequences, tr["batch"], step_s, epochs, 1, tr["params"], bandwidth_gbit, tr["load_s"])
        trials = int(d.trials.value)
        row(d, f"tuning, {trials} trials", f"{trials} x {n_epochs}", trial_s, "trial",
            {w: tuning_wall(trial_s, trials, w, start) for w in workers}, _outside(tr, seq_len))
    return rows


# --- report ------------------------------------------------------------------------------------

def duration(seconds: float) -> str:
    """A wall time a planner reads at a glance: ms, s, min, h or days."""
    for limit, scale, name, fmt in ((1, 1e-3, "ms", ".1f"), (90, 1, "s", ".1f"), (5400, 60, "min", ".0f"),
                                    (172800, 3600, "h", ".1f")):
        if seconds < limit:
            return f"{seconds / scale:{fmt}} {name}"
    return f"{seconds / 86400:,.1f} days"


_STAGE_NAMES = {"detect": "decode + detect (MTCNN)", "audio": "audio LLDs + functionals (openSMILE)",
                "features": "CNN features (vggface_finetune tap)", "train_step": "training step"}


def measured_table(measured: dict) -> str:
    st = measured["stages"]
    tr, feat = st["train_step"], st["features"]
    lines = ["| stage | per | sizes | cost per unit | growth: cost ~ size^k | start-up (load) |",
             "|---|---|---|---|---|---|"]
    for key, stage in st.items():
        costs = " / ".join(duration(s) for s in stage["seconds_per_unit"])
        lines.append(f"| {_STAGE_NAMES[key]} | {stage['unit']} | {' / '.join(stage['labels'])} | {costs} | "
                     f"k = {stage['fit']['exponent']:.2f} in {stage['size_name']} | {duration(stage['load_s'])} |")
    lines.append("| tuning trial | trial | derived, not timed | build + epochs x steps x step | - | - |")
    m = measured["machine"]
    notes = [f"Measured on {m['cpu']} ({m['cores']} cores), TensorFlow {m['tensorflow']}, Keras {m['keras']}, "
             f"{m['date']}; median of {measured['repeats']} after a warm-up; worker process start-up "
             f"(import data_prep + TensorFlow) {duration(measured['import_s'])}.",
             f"Training step: `{tr['model']}`, batch {tr['batch']}, {tr['params']:,} parameters. "
             f"Feature widths: {' / '.join(f'{w:,}' for w in feat['feature_width'])}."]
    return "\n".join(lines) + "\n\n" + "\n".join(notes)


def _cell(figure: Figure, text: str) -> str:
    """A size with a word on where it comes from when that is not a thesis."""
    source = figure.source.upper()
    note = (" (upper bound)" if "UPPER BOUND" in source else
            " (assumed)" if "ASSUMED" in source else " (published, not in the theses)" if "NOT IN THE THESES" in source
            else "")
    return text + note


def sizes_table(datasets=DATASETS) -> str:
    lines = ["| dataset | videos / images | frames | resolution | audio | model input | T | epochs | trials |",
             "|---|---|---|---|---|---|---|---|---|"]
    for d in datasets:
        audio = _cell(d.audio_seconds, f"{d.audio_seconds.value / 3600:,.1f} h") if d.audio_seconds.value else "none"
        lines.append(f"| {d.name} | {d.items.value:,.0f} {d.unit}s | {_cell(d.frames, f'{d.frames.value:,.0f}')} | "
                     f"{_cell(d.width, f'{d.width.value:g}x{d.height.value:g}')} | {audio} | "
                     f"{d.input_size.value:g} px | {d.seq_len.value:g} | {_cell(d.epochs, f'{d.epochs.value:g}')} | "
                     f"{d.trials.value:g} |")
    return "\n".join(lines)


def projection_table(rows: list[dict], workers=WORKERS) -> str:
    lines = ["| dataset | stage | work | cost per unit | " + " | ".join(f"{w} worker{'s' * (w > 1)}" for w in workers)
             + " |", "|---|---|---|---|" + "---|" * len(workers)]
    for r in rows:
        mark = " *" if r["extrapolated"] else ""
        lines.append(f"| {r['dataset']} | {r['stage']} | {r['work']} | {duration(r['per_unit_s'])} per "
                     f"{r['unit']}{mark} | " + " | ".join(duration(r["wall_s"][w]) for w in workers) + " |")
    return "\n".join(lines) + "\n\nCosts marked * are extrapolated: the dataset's size lies outside the measured sizes."


def write_report(measured: dict, rows: list[dict], out: str, workers=WORKERS, bandwidth_gbit=BANDWIDTH_GBIT) -> str:
    """scaling.json (measured figures, assumptions, sources, projections), projections.csv and
    scaling.md; returns the Markdown."""
    os.makedirs(out, exist_ok=True)
    assumptions = {"bandwidth_gbit": bandwidth_gbit, "allreduce": "ring, float32 gradients, not overlapped",
                   "per_item": "startup + work / min(workers, items)",
                   "tuning": "ceil(trials / min(workers, trials)) x trial"}
    with open(os.path.join(out, "scaling.json"), "w") as f:
        json.dump({**measured, "assumptions": assumptions, "datasets": [asdict(d) for d in DATASETS],
                   "projections": rows}, f, indent=1)
    with open(os.path.join(out, "projections.csv"), "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["dataset", "stage", "work", "unit", "per_unit_s", *(f"wall_s_{w}" for w in workers),
                         "extrapolated"])
        for r in rows:
            writer.writerow([r["dataset"], r["stage"], r["work"], r["unit"], f"{r['per_unit_s']:.6g}",
                             *(f"{r['wall_s'][w]:.6g}" for w in workers), r["extrapolated"]])
    params = measured["stages"]["train_step"]["params"]
    per_step = ", ".join(f"{duration(allreduce_s(params, w, bandwidth_gbit))} at {w}" for w in workers if w > 1)
    text = (measured_table(measured) + "\n\n" + sizes_table() + "\n\n" + projection_table(rows, workers)
            + f"\n\nTraining across workers adds an ASSUMED ring all-reduce of the gradients over {bandwidth_gbit:g} "
              f"Gbit/s to every step ({per_step} workers), not a measurement. Dataset sizes and their sources: "
              "`DATASETS` in data_prep/bench/scaling.py, also in scaling.json.\n")
    with open(os.path.join(out, "scaling.md"), "w") as f:
        f.write(text)
    return text


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", default="data/scaling", help="where scaling.json, projections.csv, scaling.md go")
    p.add_argument("--quick", action="store_true", help="two small sizes per stage, one repeat (a smoke run)")
    p.add_argument("--repeats", type=int, default=3, help="timed repeats per size (the median is kept)")
    p.add_argument("--model", default="alexnet_gru_va", help="registry model of the training step")
    p.add_argument("--batch", type=int, default=4, help="per-replica batch of the training step")
    p.add_argument("--workers", default=",".join(map(str, WORKERS)), help="worker counts to project, comma-separated")
    p.add_argument("--bandwidth-gbit", type=float, default=BANDWIDTH_GBIT,
                   help="ASSUMED link between data-parallel workers (Gbit/s)")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress bar")
    args = p.parse_args(argv)
    try:
        workers = tuple(_check_workers(int(w)) for w in args.workers.split(","))
    except ValueError as e:
        p.error(f"--workers {args.workers!r}: {e}")
    if args.repeats < 1 or args.batch < 1:
        p.error("--repeats and --batch must be >= 1")
    from fer_keras import models

    try:
        models.entry(args.model)  # before minutes of measuring, not after
    except ValueError as e:
        p.error(f"--model: {e}")
    start = time.perf_counter()
    measured = measure(os.path.join(args.out, "work"), quick=args.quick, repeats=1 if args.quick else args.repeats,
                       model=args.model, batch=args.batch, progress=not args.quiet)
    rows = project(measured, workers=workers, bandwidth_gbit=args.bandwidth_gbit)
    print(write_report(measured, rows, args.out, workers, args.bandwidth_gbit))
    print(f"written {args.out}/scaling.json, projections.csv, scaling.md ({time.perf_counter() - start:.0f} s)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
