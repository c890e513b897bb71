"""`make bench-pipeline`: sequences/s of the shard pipeline against one-JPEG-file-per-frame storage,
and training steps/s of vggface_bgru with and without XLA, all in the same run.

Baseline (the storage of theses 000 and 001): every face crop is its own JPEG file,
``<dir>/<video_id>/<frame:05d>.jpg``, and a sequence is a list of file paths (padded by repeating
the last path) read through tf.data the straightforward way: a parallel map that reads
(``tf.io.read_file``) and decodes (``tf.io.decode_jpeg``) every step, flips with ``tf.reverse``,
clips and normalises, with the same shuffle, augmentation draws and batching as
``fer_keras.data.pipeline.sequences``. The files are exported from the same shards with the
shards' encoded bytes, so all rows give identical batches (checked here). The second row runs that
same per-frame map on the shards: it separates the gain of the storage from the gain of the
pipeline's decoding (real frames only, padding gathered afterwards; flip on uint8 frames). The
last row is the pipeline with ``cache: true`` after its first epoch: decoded frames stay in
memory, so each later epoch only shuffles, augments, pads and normalises. The baseline re-reads
and re-decodes every file each epoch, as the theses' loaders did; the first (filling) epoch of
the cached pipeline is reported beside it.

Measured in interleaved rounds (warm-up and the batches buffered between rounds excluded): the
pipelines over several epochs of the train split, then a vggface_bgru training step at a small
input size fed from the shard pipeline and from one in-memory batch, without and with XLA.
Both storages are read from the page cache (files just written), so the gain measured here is
CPU time; a cold disk or a network file system adds a seek or a request per file to the baseline.

Without ``--prepared``, the synthetic AFEW set is written and prepared by the command line
(``fer-keras synth afew`` then ``fer-keras prepare afew``) in a subprocess: the library does not
import ``data_prep``, and this process never loads openSMILE.
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import time
from dataclasses import replace

import numpy as np
import tensorflow as tf
from tqdm import tqdm

from fer_keras.data.pipeline import (Augment, PipelineConfig, _augment, _chunks, epoch_shuffle,
                                     epoch_seed, record_stream, sequences)
from fer_keras.data.preprocessing import preprocess
from fer_keras.data.schema import dataset_from_manifest

TARGET_SPEEDUP = 5.0
PIPELINES = {  # name -> row label
    "files": "one JPEG file per frame (theses 000/001)",
    "shards_naive": "shards, the same per-frame map",
    "shards": "shards, fer_keras.data.pipeline",
    "shards_cached": "shards, pipeline, cache: true (epochs >= 2)",
}


# --- data -------------------------------------------------------------------------------------

def run_cli(*args) -> None:
    """``python -m fer_keras.cli ARGS`` in a subprocess (its output lines pass through); a failure
    raises RuntimeError with the command and the tail of its stderr."""
    cmd = [sys.executable, "-m", "fer_keras.cli", *map(str, args)]
    print("$ fer-keras " + " ".join(cmd[3:]), flush=True)
    done = subprocess.run(cmd, stdin=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    if done.returncode != 0:
        tail = "\n".join(done.stderr.strip().splitlines()[-20:]) or "(nothing on stderr)"
        raise RuntimeError(f"fer-keras {' '.join(cmd[3:])} failed with exit code {done.returncode}:\n{tail}")


def prepare_synthetic(out, *, train_per_class=8, min_frames=30, max_frames=90, jobs=2, seed=1) -> str:
    """Write and prepare a synthetic AFEW set under ``out`` (reused when already prepared), with
    ``fer-keras synth afew`` and ``fer-keras prepare afew`` run in a subprocess."""
    prepared = os.path.join(out, "prepared")
    if os.path.exists(os.path.join(prepared, "manifest.json")):
        print(f"reusing {prepared} (delete it to prepare again)")
        return prepared
    src = os.path.join(out, "src")
    shutil.rmtree(src, ignore_errors=True)
    shutil.rmtree(prepared, ignore_errors=True)
    run_cli("synth", "afew", src, "--train-per-class", train_per_class, "--val-per-class", 1,
            "--test-clips", 0, "--min-frames", min_frames, "--max-frames", max_frames, "--seed", seed,
            "--no-broken")
    run_cli("prepare", "afew", src, prepared, "-q", "-j", jobs)
    return prepared


def export_frames(manifest, root, split, out, progress=False) -> list[dict]:
    """Write every kept frame of ``split`` as ``out/<video_id>/<frame:05d>.jpg`` with the shard's
    encoded bytes (no re-encoding); returns ``{video_id, label, paths, frame_index}`` per video in
    shard order (``frame_index``: each frame's source frame index, as the record holds it)."""
    ext = ".png" if manifest["options"].get("image_format") == "png" else ".jpg"
    shutil.rmtree(out, ignore_errors=True)
    videos = []
    records = dataset_from_manifest(manifest, root, split, decode=False)
    for rec in tqdm(records.as_numpy_iterator(), desc=f"export {split} frames", unit="video",
                    total=manifest["splits"][split]["videos"], disable=not progress):
        if rec["num_frames"] == 0:
            continue
        video_id = rec["video_id"].decode()
        folder = os.path.join(out, video_id)
        os.makedirs(folder, exist_ok=True)
        paths = []
        for i, data in enumerate(rec["frames"]):
            paths.append(os.path.join(folder, f"{i:05d}{ext}"))
            with open(paths[-1], "wb") as f:
                f.write(data)
        videos.append({"video_id": video_id, "label": int(rec["label"]), "paths": paths,
                       "frame_index": [int(i) for i in rec["frame_index"]]})
    return videos


def file_chunks(videos, seq_len) -> tf.data.Dataset:
    """Sequences of ``seq_len`` file paths per video, the last one padded by repeating its last
    path, with the same ``mask``, ``frame_index`` (-1 on padding), ``label``, ``video_id`` and
    ``sequence`` as the shard chunks."""
    paths, masks, index, labels, ids, seqs = [], [], [], [], [], []
    for video in videos:
        n = len(video["paths"])
        for c in range(max(-(-n // seq_len), 1)):
            steps = range(c * seq_len, (c + 1) * seq_len)
            paths.append([video["paths"][min(s, n - 1)] for s in steps])
            masks.append([float(s < n) for s in steps])
            index.append([video["frame_index"][s] if s < n else -1 for s in steps])
            labels.append(video["label"])
            ids.append(video["video_id"])
            seqs.append(c)
    return tf.data.Dataset.from_tensor_slices({
        "frames": tf.constant(paths, tf.string), "mask": tf.constant(masks, tf.float32),
        "frame_index": tf.constant(index, tf.int64),
        "label": tf.constant(labels, tf.int64), "video_id": tf.constant(ids, tf.string),
        "sequence": tf.constant(seqs, tf.int32)})


def shard_chunks(manifest, root, split, cfg: PipelineConfig, training=False) -> tf.data.Dataset:
    """The shard pipeline's sequences of encoded frames of its first epoch, before decoding."""
    records = record_stream(manifest, root, split, cfg, training=training, epoch=0)
    return records.flat_map(lambda record: _chunks(record, cfg.seq_len))


def in_reading_order(videos, manifest, root, split, cfg: PipelineConfig, training=False):
    """``videos`` (from ``export_frames``) in the order the pipeline's first epoch reads them."""
    records = record_stream(manifest, root, split, cfg, training=training, epoch=0)
    order = [r["video_id"].decode() for r in records.map(lambda r: {"video_id": r["video_id"]}).as_numpy_iterator()]
    by_id = {v["video_id"]: v for v in videos}
    return [by_id[i] for i in order]


def straightforward_sequences(chunks, manifest, cfg: PipelineConfig, *, files, training=False,
                              with_meta=False):
    """``sequences()``'s batches (inputs ``frames`` + ``mask``, target ``category``) computed the
    straightforward way: every step of a sequence, padding included, read (``files``: the chunks
    hold paths, ``tf.io.read_file``) and decoded one by one; flip with ``tf.reverse`` on the float
    frames; other augmentations as ``sequences()``; clip; normalise."""
    classes = len(manifest["classes"])
    face_size = manifest["options"]["face_size"]
    if training:  # the first epoch's draws, as sequences() makes them
        chunks = tf.data.Dataset.range(1).flat_map(lambda e: epoch_shuffle(chunks, cfg, e))

    def load(position, item):
        read = (lambda s: tf.io.read_file(s)) if files else (lambda s: s)
        frames = tf.map_fn(lambda s: tf.io.decode_jpeg(read(s), channels=3), item["frames"],
                           fn_output_signature=tf.TensorSpec([None, None, 3], tf.uint8))
        frames = tf.cast(frames, tf.float32)
        if cfg.image_size and cfg.image_size != face_size:
            frames = tf.image.resize(frames, (cfg.image_size, cfg.image_size))
        elif cfg.image_size:
            frames = tf.ensure_shape(frames, [None, cfg.image_size, cfg.image_size, 3])
        if training:
            seed = tf.random.experimental.stateless_fold_in(epoch_seed(cfg, 0), position)
            if cfg.augment.flip:
                flip = tf.random.stateless_uniform([], seed) < 0.5
                frames = tf.cond(flip, lambda: tf.reverse(frames, axis=[2]), lambda: frames)
            frames = _augment(frames, replace(cfg.augment, flip=False), seed)
        frames = preprocess(frames, cfg.normalize or "unit")
        if cfg.padding == "zeros":
            frames = frames * item["mask"][:, None, None, None]
        label = tf.cast(item["label"], tf.int32)
        x = {"mask": item["mask"], "frames": frames}
        y = {"category": tf.one_hot(label, classes)}
        if with_meta:
            return x, y, {"video_id": item["video_id"], "label": label, "sequence": item["sequence"],
                          "frame_index": item["frame_index"]}
        return x, y

    ds = chunks.enumerate().map(load, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
    return ds.batch(cfg.batch_size).prefetch(tf.data.AUTOTUNE)


def same_batches(a, b) -> bool:
    """Whether two finite datasets of nested dicts give exactly the same batches."""
    a, b = list(a.as_numpy_iterator()), list(b.as_numpy_iterator())
    flat = tf.nest.flatten
    return len(a) == len(b) and all(
        len(flat(x)) == len(flat(y)) and all(np.array_equal(u, v) for u, v in zip(flat(x), flat(y)))
        for x, y in zip(a, b))


# --- measurement ------------------------------------------------------------------------------

@tf.function
def _pull(iterator, batches):
    """Take ``batches`` batches inside one graph call: sequences and real frames seen.

    Consuming in the graph keeps Python's per-batch overhead (which competes with the
    pipeline's threads for the same cores) out of the measurement, as in ``model.fit``.
    """
    seqs, real = tf.constant(0), tf.constant(0.0)
    for _ in tf.range(batches):
        mask = next(iterator)[0]["mask"]
        seqs += tf.shape(mask)[0]
        real += tf.reduce_sum(mask)
    return seqs, real


def _drain(it, seconds, chunk=8):
    end = time.perf_counter() + seconds
    while time.perf_counter() < end:
        _pull(it, chunk)


def _window(it, seconds, chunk=8) -> dict:
    """Consume ``it`` for ``seconds`` in calls of ``chunk`` batches: batches, sequences, real
    frames, wall and process CPU time."""
    batches = seqs = real = 0
    wall, cpu = time.perf_counter(), time.process_time()
    while time.perf_counter() - wall < seconds:
        s, r = _pull(it, chunk)
        batches += chunk
        seqs += int(s)
        real += float(r)
    return dict(batches=batches, sequences=seqs, real_frames=real,
                wall=time.perf_counter() - wall, cpu=time.process_time() - cpu)


def throughput(datasets: dict, *, seconds=3.0, rounds=3, drain=0.5, warmup_batches=2, progress=True):
    """Interleaved rounds over infinite batched datasets; per name: medians of the rounds.

    Each window runs alone on a fresh iterator (no other pipeline's threads or buffers alive):
    ``warmup_batches`` (a number, or one per name, for the first round; 2 after it) are taken
    untimed, the first round's warm-up wall time is reported as ``warmup_s``, and the iterator
    is drained for ``drain`` seconds before the timed window, so start-up does not count.
    """
    windows = {name: [] for name in datasets}
    warmup_s = {}
    bar = tqdm(total=rounds * len(datasets), desc="pipelines", unit="window", disable=not progress)
    for round_ in range(rounds):
        for name, ds in datasets.items():
            first = warmup_batches[name] if isinstance(warmup_batches, dict) else warmup_batches
            start = time.perf_counter()
            it = iter(ds)
            for _ in range(first if round_ == 0 else 2):
                next(it)
            warmup_s.setdefault(name, time.perf_counter() - start)
            _drain(it, drain)
            windows[name].append(_window(it, seconds))
            del it
            bar.set_postfix_str(f"{name} {windows[name][-1]['sequences'] / windows[name][-1]['wall']:.1f} seq/s")
            bar.update()
    bar.close()
    out = {}
    for name, ws in windows.items():
        med = lambda key: statistics.median(w[key] / w["wall"] for w in ws)  # noqa: E731
        out[name] = {
            "sequences_per_s": med("sequences"), "batches_per_s": med("batches"),
            "real_frames_per_s": med("real_frames"),
            "cpu_ms_per_sequence": statistics.median(1000 * w["cpu"] / max(w["sequences"], 1) for w in ws),
            "rounds_sequences_per_s": [w["sequences"] / w["wall"] for w in ws],
            "warmup_s": warmup_s[name],
        }
    return out


def _full_batches(ds, batch_size):
    return ds.filter(lambda x, *rest: tf.shape(x["mask"])[0] == batch_size)


def training_speed(manifest, root, *, model="vggface_bgru", model_options=None, image_size=32, seq_len=8,
                   batch_size=4, steps=4, warmup_steps=2, rounds=3, xla=(False, True),
                   pipeline_seconds=2.0, progress=True) -> dict:
    """Training steps/s of ``model`` fed from the shard pipeline and from one in-memory batch.

    Each XLA setting builds and compiles the model once (compile and ``warmup_steps`` untimed);
    then ``rounds`` x (pipeline, constant batch) fits of ``steps`` + 1 steps each, timed from the
    end of the first step. Partial batches are dropped so XLA compiles one shape.
    """
    import keras

    from fer_keras import models

    cfg = PipelineConfig(seq_len=seq_len, batch_size=batch_size, image_size=image_size,
                         augment=Augment(flip=True))
    pipe = _full_batches(sequences(manifest, root, "train", cfg, training=True).repeat(), batch_size)
    constant = pipe.take(1).cache().repeat()  # one batch, kept in memory after the first pass
    alone = throughput({"pipeline": pipe}, seconds=pipeline_seconds, rounds=1, progress=False)["pipeline"]

    class StepTimes(keras.callbacks.Callback):
        def on_train_batch_end(self, batch, logs=None):
            times.append(time.perf_counter())

    report = {"model": model, "input_size": image_size, "seq_len": seq_len, "batch_size": batch_size,
              "timed_steps": steps * rounds, "pipeline_batches_per_s": alone["batches_per_s"]}
    bar = tqdm(total=len(xla) * (warmup_steps + 2 * rounds * (steps + 1)), desc="training",
               unit="step", disable=not progress)
    for jit in xla:
        keras.utils.set_random_seed(0)
        net = models.build(model, input_size=image_size, seq_len=seq_len, **(model_options or {}))
        names = list(net.input) if isinstance(net.input, dict) else None
        pick = (lambda x, y: ({k: x[k] for k in names}, y)) if names else (lambda x, y: (x["frames"], y))
        feeds = {"pipeline": pipe.map(pick), "constant": constant.map(pick)}
        net.compile(optimizer=keras.optimizers.Adam(1e-4), loss={"category": "categorical_crossentropy"},
                    jit_compile=jit)
        times = []
        start = time.perf_counter()
        net.fit(feeds["pipeline"], steps_per_epoch=warmup_steps, epochs=1, verbose=0)
        compile_s = time.perf_counter() - start
        bar.update(warmup_steps)
        rates = {name: [] for name in feeds}
        for _ in range(rounds):
            for name, feed in feeds.items():
                times = []
                net.fit(feed, steps_per_epoch=steps + 1, epochs=1, verbose=0, callbacks=[StepTimes()])
                rates[name].append(steps / (times[-1] - times[0]))
                bar.update(steps + 1)
        report["xla" if jit else "no_xla"] = {
            "pipeline_steps_per_s": statistics.median(rates["pipeline"]),
            "constant_steps_per_s": statistics.median(rates["constant"]),
            "warmup_s": compile_s, "rounds": rates,
        }
        del net
        keras.backend.clear_session()
    bar.close()
    fastest = max(report[k]["constant_steps_per_s"] for k in ("no_xla", "xla") if k in report)
    report["pipeline_is_bottleneck"] = bool(report["pipeline_batches_per_s"] <= fastest)
    return report


# --- report -----------------------------------------------------------------------------------

def print_report(r: dict) -> None:
    d, c = r["dataset"], r["pipeline_config"]
    print(f"{d['videos']} videos, {d['frames']} frames -> {d['sequences_per_epoch']} sequences of "
          f"{c['seq_len']} per epoch ({100 * d['padding_fraction']:.0f}% padded steps), "
          f"{r['cpu_count']} CPU cores")
    head = f"train split, seq {c['seq_len']}, batch {c['batch_size']}, {c['image_size']} px, flip"
    print(f"{head:46s} {'seq/s':>8s} {'frames/s':>9s} {'CPU ms/seq':>11s} {'vs baseline':>12s}")
    base = r["pipeline"]["files"]["sequences_per_s"]
    for name, label in PIPELINES.items():
        p = r["pipeline"][name]
        print(f"{label:46s} {p['sequences_per_s']:8.1f} {p['sequences_per_s'] * c['seq_len']:9.0f} "
              f"{p['cpu_ms_per_sequence']:11.1f} {'x%.2f' % (p['sequences_per_s'] / base):>12s}")
    first = r["cached_first_epoch_sequences_per_s"]
    print(f"cached first epoch (decoding, filling the cache): {first:.1f} seq/s, x{first / base:.2f}")
    print(f"pipeline (cache: true) / one file per frame: x{r['speedup']:.2f} sequences/s (target "
          f"x{TARGET_SPEEDUP:.0f}: {'met' if r['speedup'] >= TARGET_SPEEDUP else 'not met'}), without cache "
          f"x{r['speedup_uncached']:.2f}; x{r['cpu_speedup']:.2f} CPU time; "
          f"same batches as the baseline: {'yes' if r['same_output'] else 'NO'}")
    t = r.get("training")
    if not t:
        return
    head = f"training {t['model']}, {t['input_size']} px, seq {t['seq_len']}, batch {t['batch_size']}"
    print(f"{head:46s} {'fed by pipeline':>16s} {'constant batch':>15s} {'warm-up s':>10s}")
    for key, label in (("no_xla", "  steps/s, jit_compile=False"), ("xla", "  steps/s, jit_compile=True (XLA)")):
        if key in t:
            s = t[key]
            print(f"{label:46s} {s['pipeline_steps_per_s']:16.2f} {s['constant_steps_per_s']:15.2f} {s['warmup_s']:10.1f}")
    fastest = max(t[k]["constant_steps_per_s"] for k in ("no_xla", "xla") if k in t)
    verdict = "pipeline IS the bottleneck" if t["pipeline_is_bottleneck"] else "pipeline is not the bottleneck"
    print(f"pipeline alone at this setting: {t['pipeline_batches_per_s']:.1f} batches/s "
          f"{'<=' if t['pipeline_is_bottleneck'] else '>'} {fastest:.2f} steps/s of the fastest step: {verdict}")


def run(args) -> dict:
    start = time.perf_counter()
    os.makedirs(args.out, exist_ok=True)
    root = args.prepared or prepare_synthetic(args.out, train_per_class=args.train_per_class,
                                              min_frames=args.min_frames, max_frames=args.max_frames,
                                              jobs=args.jobs)
    with open(os.path.join(root, "manifest.json")) as f:
        manifest = json.load(f)
    videos = export_frames(manifest, root, "train", os.path.join(args.out, "frames", "train"),
                           progress=not args.quiet)
    cfg = PipelineConfig(seq_len=args.seq_len, batch_size=args.batch_size, image_size=args.image_size,
                         padding="repeat", augment=Augment(flip=True), seed=args.seed)
    frames = sum(len(v["paths"]) for v in videos)
    chunks = sum(max(-(-len(v["paths"]) // cfg.seq_len), 1) for v in videos)

    pipelines = {
        "files": lambda training=False, **kw: straightforward_sequences(
            file_chunks(in_reading_order(videos, manifest, root, "train", cfg, training), cfg.seq_len),
            manifest, cfg, files=True, training=training, **kw),
        "shards_naive": lambda training=False, **kw: straightforward_sequences(
            shard_chunks(manifest, root, "train", cfg, training), manifest, cfg, files=False,
            training=training, **kw),
        "shards": lambda **kw: sequences(manifest, root, "train", cfg, **kw),
        "shards_cached": lambda **kw: sequences(manifest, root, "train", replace(cfg, cache=True), **kw),
    }
    same = all(same_batches(pipelines["shards"](**kw), make(**kw))
               for kw in ({"training": True}, {"with_meta": True})
               for name, make in pipelines.items() if name != "shards")
    epoch_batches = -(-chunks // cfg.batch_size)
    warmup = {name: epoch_batches if name == "shards_cached" else 2 for name in pipelines}  # fill the cache
    pipes = throughput({name: make(training=True).repeat() for name, make in pipelines.items()},
                       seconds=args.seconds, rounds=args.rounds, warmup_batches=warmup,
                       progress=not args.quiet)
    for p in pipes.values():
        p["frames_per_s"] = p["sequences_per_s"] * cfg.seq_len
    first_epoch = chunks / pipes["shards_cached"]["warmup_s"]  # filling the cache, start-up included
    report = {
        "cpu_count": os.cpu_count(), "prepared": root,
        "dataset": {"videos": len(videos), "frames": frames, "sequences_per_epoch": chunks,
                    "padding_fraction": 1 - frames / (chunks * cfg.seq_len)},
        "pipeline_config": {"seq_len": cfg.seq_len, "batch_size": cfg.batch_size, "image_size": cfg.image_size,
                            "padding": cfg.padding, "flip": True, "seconds": args.seconds, "rounds": args.rounds},
        "pipeline": pipes,
        "speedup": pipes["shards_cached"]["sequences_per_s"] / pipes["files"]["sequences_per_s"],
        "speedup_uncached": pipes["shards"]["sequences_per_s"] / pipes["files"]["sequences_per_s"],
        "speedup_storage_only": pipes["shards_naive"]["sequences_per_s"] / pipes["files"]["sequences_per_s"],
        "cpu_speedup": pipes["files"]["cpu_ms_per_sequence"] / pipes["shards_cached"]["cpu_ms_per_sequence"],
        "cached_first_epoch_sequences_per_s": first_epoch,
        "target_speedup": TARGET_SPEEDUP, "same_output": bool(same),
    }
    if args.xla != "skip":
        report["training"] = training_speed(
            manifest, root, model=args.model, image_size=args.train_size, seq_len=args.train_seq_len,
            batch_size=args.batch_size, steps=args.steps, warmup_steps=args.warmup_steps, rounds=args.rounds,
            xla={"both": (False, True), "on": (True,), "off": (False,)}[args.xla], progress=not args.quiet)
    report["seconds"] = time.perf_counter() - start
    return report


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", default="data/bench_pipeline", help="work directory (results.json, exported frames)")
    p.add_argument("--prepared", help="an existing prepared dataset (default: a synthetic AFEW set under --out)")
    p.add_argument("--seq-len", type=int, default=40, help="sequence length (thesis 000: 40)")
    p.add_argument("--batch-size", type=int, default=4, help="batch size (thesis 000: 4)")
    p.add_argument("--image-size", type=int, default=112, help="face size fed to the model (thesis 000: 112)")
    p.add_argument("--seconds", type=float, default=3.0, help="timed seconds per pipeline and round")
    p.add_argument("--rounds", type=int, default=3, help="interleaved rounds (medians are reported)")
    p.add_argument("--steps", type=int, default=4, help="timed training steps per round, feed and XLA setting")
    p.add_argument("--warmup-steps", type=int, default=2, help="untimed training steps after compiling")
    p.add_argument("--model", default="vggface_bgru", help="registry model of the training measurement")
    p.add_argument("--train-size", type=int, default=32, help="input size of the training measurement")
    p.add_argument("--train-seq-len", type=int, default=8, help="sequence length of the training measurement")
    p.add_argument("--xla", choices=("both", "on", "off", "skip"), default="both",
                   help="training with and/or without XLA, or no training measurement")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--jobs", type=int, default=2, help="worker processes of the synthetic preparation")
    p.add_argument("--train-per-class", type=int, default=8, help="synthetic training clips per class")
    p.add_argument("--min-frames", type=int, default=30, help="shortest synthetic clip")
    p.add_argument("--max-frames", type=int, default=90, help="longest synthetic clip")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress bars")
    return p


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    report = run(args)
    print_report(report)
    save_report(report, os.path.join(args.out, "results.json"))
    return 0


def save_report(report: dict, path) -> None:
    """A benchmark's figures as JSON at ``path``, and where they went (``make bench-pipeline`` and
    ``make bench-cascade`` both end so)."""
    with open(path, "w") as f:
        json.dump(report, f, indent=1)
    print(f"written {path} ({report['seconds']:.0f} s)")
    sys.stdout.flush()


if __name__ == "__main__":
    raise SystemExit(main())
