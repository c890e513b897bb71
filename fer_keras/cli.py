"""The `fer-keras` command: one subcommand per step of the flow in DESIGN.md."""
from __future__ import annotations

import argparse
import glob
import inspect
import json
import logging
import math
import os
import re
import sys
import textwrap
import traceback


def _synth(args) -> int:
    from data_prep.synthetic import SyntheticSpec, write_afew

    spec = SyntheticSpec(train_per_class=args.train_per_class, val_per_class=args.val_per_class,
                         test_clips=args.test_clips, min_frames=args.min_frames, max_frames=args.max_frames,
                         width=args.width, height=args.height, seed=args.seed, broken=not args.no_broken)
    truth = write_afew(args.out, spec)
    print(f"wrote {len(truth['videos'])} synthetic AFEW videos ({args.width}x{args.height}) under {args.out}")
    return 0


def _synth_clips(args) -> int:
    from data_prep.synthetic import TRUTH_FILE, write_real_world_clips

    truth = write_real_world_clips(args.out, seed=args.seed)
    for clip in truth["clips"]:
        print(f"  {clip['path']:<22} {clip['width']}x{clip['height']}, {len(clip['frame_times'])} frames, "
              f"{len(clip['segments'])} rate segment(s), audio start {clip['audio_start']:+.1f} s, "
              f"rotation {clip['rotation']}")
    print(f"wrote {len(truth['clips'])} real-world-like clips under {args.out} (ground truth: {TRUTH_FILE})")
    return 0


def _synth_bu4dfe(args) -> int:
    from data_prep.synthetic_bu4dfe import Bu4dfeSpec, write_bu4dfe

    spec = Bu4dfeSpec(subjects=tuple(args.subjects.split(",")), min_frames=args.min_frames,
                      max_frames=args.max_frames, long_video=args.long_video, layout=args.layout,
                      seed=args.seed, broken=not args.no_broken)
    truth = write_bu4dfe(args.out, spec)
    kinds = sorted({v["kind"] for v in truth["videos"]} - {"normal"})
    print(f"wrote {len(truth['videos'])} synthetic BU-4DFE sequences ({args.layout} layout, 640x480, 25 fps) "
          f"of {len(spec.subjects)} subjects under {args.out}; on purpose: {', '.join(kinds) or 'nothing'}"
          f"{', missing ' + ', '.join(truth['missing']) if truth['missing'] else ''}")
    return 0


def _synth_fer2013(args) -> int:
    from data_prep.synthetic_fer2013 import write_fer2013

    truth = write_fer2013(args.out, per_class=tuple(args.per_class), seed=args.seed, malformed=not args.no_malformed)
    rows = truth["rows"] if isinstance(truth, dict) and "rows" in truth else []
    bad = sum(1 for r in rows if r.get("malformed"))
    print(f"wrote {args.out}: {len(rows)} rows ({bad} malformed on purpose)")
    return 0


def _src_out(args, dataset):
    if len(args.paths) > 2:
        raise SystemExit(f"usage: fer-keras prepare {dataset} [SRC] OUT")
    return (None, args.paths[0]) if len(args.paths) == 1 else args.paths


def _prepare_bu4dfe(args) -> int:
    from data_prep import bu4dfe
    from data_prep.tracking import TrackOptions
    from data_prep.trimming import TrimOptions

    src, out = _src_out(args, "bu4dfe")
    try:  # every option is checked before anything is read or written
        opts = bu4dfe.Bu4dfeOptions(
            face_detector=args.detector, face_size=args.face_size, image_format=args.image_format,
            track=TrackOptions(cascade=args.cascade, tracker=args.tracker, extend=args.extend,
                               extend_split=args.extend_split, detect_frames=args.detect_frames,
                               min_face=args.haar_min_face),
            trim=TrimOptions(threshold=args.trim_threshold, max_cut=args.trim_max_cut,
                             end_frames=args.trim_end_frames, anomaly_frames=args.anomaly_frames,
                             anomaly=args.anomaly),
            trimming=not args.no_trim, keep_incomplete_subjects=args.keep_incomplete_subjects,
            frames_fps=args.frames_fps, **({"mtcnn_min_face_size": args.min_face_size} if args.min_face_size else {}),
            augment=args.augment, augment_methods=_names(args.augment_methods),
            seed=args.seed, jobs=args.jobs, shard_size=args.shard_size, verify=args.verify)
        if src is None:
            from data_prep.synthetic_bu4dfe import write_bu4dfe

            src = os.path.join(out, "synthetic_source")
            if not os.path.isdir(src):
                print(f"no SRC given: writing the synthetic BU-4DFE dataset to {src}")
                write_bu4dfe(src)
        manifest = bu4dfe.prepare(src, out, opts, openface_dir=args.openface, progress=not args.quiet)
    except (bu4dfe.LayoutError, ValueError, FileNotFoundError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    _summary(manifest, out)
    print(f"split file: {os.path.join(out, 'splits.json')}")
    return 0


def _names(text):
    from data_prep.augment import METHODS

    return METHODS if text in (None, "all") else tuple(n.strip() for n in text.split(",") if n.strip())


def _prepare_fer2013(args) -> int:
    from data_prep import fer2013

    src, out = _src_out(args, "fer2013")
    try:
        opts = fer2013.Fer2013Options(image_size=args.image_size, interpolation=args.interpolation,
                                      image_format=args.image_format, shard_size=args.shard_size,
                                      verify=args.verify)
        if src is None:
            from data_prep.synthetic_fer2013 import write_fer2013

            src = os.path.join(out, "synthetic_fer2013.csv")
            if not os.path.isfile(src):
                os.makedirs(out, exist_ok=True)
                print(f"no CSV given: writing a synthetic FER2013 CSV to {src}")
                write_fer2013(src)
        manifest = fer2013.prepare(src, out, opts, progress=not args.quiet)
    except (ValueError, FileNotFoundError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    _summary(manifest, out)
    return 0


def _summary(manifest, out):
    print(json.dumps({k: {kk: vv for kk, vv in v.items() if kk != "shards"} for k, v in manifest["splits"].items()}))
    print(f"manifest: {os.path.join(out, 'manifest.json')}; failures: {os.path.join(out, 'failures.jsonl')}")


def _folds(args) -> int:
    from fer_keras.data import loader, splits

    info = loader.manifest(args.data)
    videos = [(v["subject"], v["label"]) for v in info["videos"].values()
              if v.get("status") == "ok" and v.get("subject") and v["split"] == args.split]
    if not videos:
        raise ValueError(f"{args.data}: no prepared video of split {args.split!r} records a subject; "
                         "k-fold needs a dataset whose manifest has subjects (e.g. bu4dfe)")
    test = sorted({v["subject"] for v in info["videos"].values() if v.get("subject") and v["split"] == "test"})
    folds = splits.kfold(videos, args.k, args.seed, test=test)
    out = args.out or os.path.join(args.data, f"splits-k{args.k}-seed{args.seed}.json")
    splits.write(out, folds)
    for i, fold in enumerate(folds["folds"]):
        print(f"fold {i}: {len(fold)} subjects ({', '.join(fold[:6])}{' ...' if len(fold) > 6 else ''})")
    print(f"split file: {out} (use it with data.folds={os.path.relpath(out, args.data)} data.fold=K)")
    return 0


def _verify(args) -> int:
    import time

    from fer_keras.data import integrity

    start = time.perf_counter()
    if os.path.isfile(os.path.join(args.root, integrity.MANIFEST)) or not glob.glob(os.path.join(args.root, "*.h5*")):
        problems, read = integrity.check(args.root, quick=args.quick, jobs=args.jobs, records=args.records)
    else:  # a folder of cached feature files
        from fer_keras.data.features import check_folder
        problems, read = check_folder(args.root, quick=args.quick)
    took = time.perf_counter() - start
    for problem in problems:
        print(problem.line())
    what = "sizes" if args.quick else "sizes, checksums and counts" + (", every record" if args.records else "")
    print(f"{args.root}: {len(problems)} problem(s) in {read['files']} files ({read['bytes'] / 1e6:.1f} MB, "
          f"{what} checked in {took:.1f} s, {read['bytes'] / 1e6 / max(took, 1e-9):.0f} MB/s)")
    return 1 if problems else 0


def _prepare(args) -> int:
    from data_prep import afew
    from data_prep.prepare import PrepareOptions

    if len(args.paths) > 2:
        raise SystemExit("usage: fer-keras prepare afew [SRC] OUT")
    src, out = (None, args.paths[0]) if len(args.paths) == 1 else args.paths
    chosen = {"min_face_size": args.min_face_size} if args.min_face_size is not None else {}
    try:  # every option is checked before anything is read or written
        opts = PrepareOptions(
            face_size=args.face_size, margin=args.margin, min_confidence=args.min_confidence,
            fps=args.fps, image_format=args.image_format, **chosen,
            jpeg_quality=args.jpeg_quality, sample_rate=args.sample_rate, lld_set=args.lld_set,
            lld_level=args.lld_level, lld_mode=args.lld_mode, functionals_set=args.functionals_set,
            functionals_level=args.functionals_level, jobs=args.jobs, detect_batch=args.detect_batch,
            shard_size=args.shard_size, verify=args.verify,
        )
        if src is None:
            from data_prep.synthetic import SyntheticSpec, write_afew

            src = os.path.join(out, "synthetic_source")
            if not os.path.isdir(src):
                print(f"no SRC given: writing the synthetic AFEW dataset to {src}")
                write_afew(src, SyntheticSpec(seed=args.seed))
        manifest = afew.prepare(src, out, opts, progress=not args.quiet)
    except (afew.LayoutError, ValueError, FileNotFoundError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    _summary(manifest, out)
    return 0


def _models(args) -> int:
    import keras

    from fer_keras import models

    wanted = args.names or models.names()
    unknown = [n for n in wanted if n not in models.names()]
    if unknown:
        print(f"error: unknown model(s) {', '.join(unknown)}; see `fer-keras models`", file=sys.stderr)
        return 2
    rows = []
    print(f"{'name':<24} {'params':>12} {'trainable':>12}  {'outputs':<28} thesis")
    for name in wanted:
        spec = models.entry(name)
        opts = spec.small if args.small else {}
        model = models.build(name, **opts)
        total = model.count_params()
        train = sum(math.prod(w.shape) for w in model.trainable_weights)
        outputs = ", ".join(f"{k} {tuple(v.shape[1:])}" for k, v in zip(model.output_names, model.outputs))
        rows.append(dict(name=name, params=total, trainable=train, outputs=outputs, thesis=spec.thesis,
                         summary=spec.summary))
        print(f"{name:<24} {total:>12,} {train:>12,}  {outputs:<28} {spec.thesis}", flush=True)
        keras.backend.clear_session()
    if args.json:
        with open(args.json, "w") as f:
            json.dump(rows, f, indent=1)
    return 0


def _user_errors(func):
    """Run a subcommand; an expected error (missing file, bad input or config) becomes one line
    on stderr and exit code 2, without a traceback. Wrap train/tune the same way."""
    def run(args) -> int:
        try:
            return func(args)
        except (FileNotFoundError, NotADirectoryError, ValueError) as err:
            if getattr(args, "verbose", False):
                traceback.print_exception(err)
            print(f"error: {err}", file=sys.stderr)
            return 2
    run.__name__, run.__doc__ = func.__name__, func.__doc__
    return run


def _run_dirs(paths):
    """Check that every RUN_DIR exists, before any heavy import."""
    for path in paths:
        if not os.path.isdir(path):
            raise FileNotFoundError(f"{path}: no such run directory")


def _evaluate(args) -> int:
    _run_dirs([args.run_dir])
    import data_prep  # noqa: F401  openSMILE before TensorFlow (see data_prep/__init__.py)
    from fer_keras import config as cfg
    from fer_keras.data.integrity import named_data_errors
    from fer_keras.evaluation import evaluate

    root = cfg.load(os.path.join(args.run_dir, "config.yaml")).data.root
    with named_data_errors(root):
        result = evaluate(args.run_dir, split=args.split, checkpoint=args.checkpoint,
                          aggregate_method=args.aggregate)
    for name, path in result["paths"].items():
        print(f"{name + ':':<22} {path}")
    accuracy = result.get("accuracy")
    print(f"split {result['split']}, checkpoint {result['checkpoint']}, {result['n_videos']} videos "
          f"({result['n_labelled']} labelled), {result['n_sequences']} sequences")
    print("accuracy: " + ("n/a (no labelled video)" if accuracy is None else f"{accuracy:.4f}"))
    return 0


def _numbers(text, kind, option):
    try:
        return [kind(v) for v in text.split(",")]
    except ValueError:
        raise ValueError(f"{option}: expected comma-separated numbers, got {text!r}") from None


def _fuse(args) -> int:
    from fer_keras import fusion

    if len(args.run_dirs) == 1 and args.run_dirs[0].endswith((".yaml", ".yml")):  # a late-fusion file
        spec = fusion.read_file(args.run_dirs[0])
        metrics = fusion.fuse_spec(spec, args.runs)
        print(f"fused {', '.join(spec['runs'])} with {spec['method']} into {os.path.join(args.runs, spec['name'])}: "
              f"accuracy {metrics['accuracy']}")
        return 0
    if args.out is None or args.method is None:
        raise ValueError("--method and --out are needed when fusing run directories")
    _run_dirs(args.run_dirs)

    if args.method not in fusion.METHODS:
        raise ValueError(f"unknown fusion method {args.method!r}; known: {', '.join(fusion.METHODS)}")
    params = set(list(inspect.signature(fusion.METHODS[args.method]).parameters)[2:])
    options = {}
    if args.rescale:
        options["rescale"] = True
    if args.folds is not None:
        options["n_splits"] = args.folds
    if args.seed is not None:
        options["seed"] = args.seed
    if args.accuracies:
        options["accuracies"] = _numbers(args.accuracies, float, "--accuracies")
    if args.class_counts:
        options["class_counts"] = _numbers(args.class_counts, float, "--class-counts")
    elif "class_counts" in params:
        options["class_counts"] = fusion.training_class_counts(args.run_dirs[0])
    metrics = fusion.fuse_to_dir(args.run_dirs, args.method, args.out, **options)
    accuracy = metrics["accuracy"]
    print(f"fused {len(args.run_dirs)} runs with {args.method}: {metrics['n_videos']} videos "
          f"({metrics['n_labelled']} labelled)")
    print(f"predictions.csv: {os.path.join(args.out, fusion.PREDICTIONS)}")
    print(f"metrics.json:    {os.path.join(args.out, fusion.METRICS)}")
    print("accuracy: " + ("n/a (no labelled video)" if accuracy is None else f"{accuracy:.4f}"))
    return 0


def _fusion_methods_help():
    from fer_keras import fusion

    lines = []
    for name, func in fusion.METHODS.items():
        doc = " ".join((func.__doc__ or "").split())
        first = re.split(r"(?<=\.)\s+(?=[A-Z])", doc)[0]  # the first sentence
        lines += textwrap.wrap(first, 100, initial_indent=f"  {name:<18}", subsequent_indent=" " * 20)
    return "methods:\n" + "\n".join(lines)


def _overrides(pairs):
    """``--set training.epochs=3 data.root=DIR`` -> a nested mapping (values read as YAML)."""
    import yaml

    out = {}
    for pair in pairs or ():
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise ValueError(f"--set {pair!r}: expected SECTION.KEY=VALUE")
        *parents, leaf = key.split(".")
        node = out
        for part in parents:
            node = node.setdefault(part, {})
        node[leaf] = yaml.safe_load(value)
    return out


def _train(args) -> int:
    overrides = _overrides(args.set)
    flags = {"xla": args.xla or None, "mixed_precision": args.mixed_precision or None,
             "strategy": args.strategy}
    flags = {k: v for k, v in flags.items() if v is not None}
    if flags:
        overrides.setdefault("training", {}).update(flags)
    import data_prep  # noqa: F401  openSMILE before TensorFlow (see data_prep/__init__.py)
    from fer_keras import config as cfg
    from fer_keras import training
    from fer_keras.data.integrity import named_data_errors
    from fer_keras.evaluation import evaluate

    exp = cfg.load(args.config, overrides)
    run_dir = args.run_dir or os.path.join("runs", exp.name)
    print(f"run directory: {run_dir}")
    with named_data_errors(exp.data.root):
        state = training.train(exp, run_dir, evaluate=None if args.no_evaluate else evaluate)
    result = state.get("evaluation")
    if result:
        paths = result.get("paths", {})
        print(f"{result['split']} accuracy per video: {result['accuracy']}")
        for name in ("report", "confusion_counts", "confusion_normalised", "predictions", "metrics"):
            if name in paths:
                print(f"  {name}: {paths[name]}")
    return 0


def _tune(args) -> int:
    if (args.config is None) == (args.model is None):
        raise ValueError("give either an experiment CONFIG.yaml or --model NAME --data DIR")
    if args.model is not None and args.data is None:
        raise ValueError("--model needs --data DIR (a prepared dataset)")
    if args.config is not None and not os.path.isfile(args.config):
        raise FileNotFoundError(f"{args.config}: experiment file does not exist")
    import data_prep  # noqa: F401  openSMILE before TensorFlow (see data_prep/__init__.py)
    from fer_keras import config as cfg
    from fer_keras import tuning

    overrides = _overrides(args.set)
    if args.data:
        overrides = cfg.merge(overrides, {"data": {"root": args.data}})
    if args.model is not None:
        exp = tuning.default_experiment(args.model, args.data, overrides)
    else:
        exp = cfg.load(args.config, overrides)
    from fer_keras.data.integrity import named_data_errors

    out = args.out or os.path.join("runs", "tune", exp.name)
    with named_data_errors(exp.data.root):
        result = tuning.tune(exp, out, max_trials=args.trials, objective=args.objective, overwrite=args.overwrite)
    if result.get("role") == "worker":
        print(f"worker {result['tuner_id']}: no trials left; the chief writes the results to {result['out_dir']}")
    return 0


class _Parser(argparse.ArgumentParser):
    """An ArgumentParser whose epilog may be a callable, called only when help is shown, so that
    listing what a heavy module offers does not slow down every start."""

    def format_help(self):
        if callable(self.epilog):
            self.epilog = self.epilog()
        return super().format_help()


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="fer-keras", description=__doc__)
    parser.add_argument("-v", "--verbose", action="store_true", help="log at INFO level")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    synth = sub.add_parser("synth", help="write a synthetic dataset in a real dataset layout")
    synth_sub = synth.add_subparsers(dest="dataset", required=True)
    s = synth_sub.add_parser("afew", help="synthetic AFEW 7.0 layout (Train_AFEW, Val_AFEW, Test_AFEW)")
    s.add_argument("out", help="directory to write")
    s.add_argument("--train-per-class", type=int, default=2, help="training clips per class (default 2)")
    s.add_argument("--val-per-class", type=int, default=1, help="validation clips per class (default 1)")
    s.add_argument("--test-clips", type=int, default=3, help="unlabelled test clips (default 3)")
    s.add_argument("--min-frames", type=int, default=20, help="shortest clip in frames (default 20)")
    s.add_argument("--max-frames", type=int, default=36, help="longest clip in frames (default 36)")
    s.add_argument("--width", type=int, default=160, help="frame width in px (default 160; AFEW is 720)")
    s.add_argument("--height", type=int, default=128, help="frame height in px (default 128; AFEW is 576)")
    s.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    s.add_argument("--no-broken", action="store_true",
                   help="leave out the faceless clip, the clip without audio and the corrupt file")
    s.set_defaults(func=_synth)
    c = synth_sub.add_parser(
        "clips", help="real-world-like clips: variable frame rate, late/early audio, rotation, 720x576, 1280x720",
        description="Write the clips the real-world preparation tests use (H.264/AAC MP4s and an Xvid AVI; a "
                    "variable-frame-rate phone clip, audio 2 s late and 1 s early, a rotated phone clip, an "
                    "anamorphic 720x576 clip, 1280x720 with 5.1 audio) and their ground truth.")
    c.add_argument("out", help="directory to write")
    c.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    c.set_defaults(func=_synth_clips)
    b = synth_sub.add_parser(
        "bu4dfe", help="synthetic BU-4DFE: <subject>_<emotion>_tex.avi (or frame folders) + OpenFace CSVs",
        description="Write a synthetic BU-4DFE set: 640x480 25 fps videos of a real face whose expression rises "
                    "from neutral to an apex and back, each with the CSV OpenFace 2.x FeatureExtraction writes; "
                    "on purpose F016 lacks happiness, and there is an AU-peak anomaly, a tracker loss, a video "
                    "without CSV and a corrupt file. Ground truth: synthetic_truth.json.")
    b.add_argument("out", help="directory to write")
    b.add_argument("--subjects", default="F001,F002,M001,F011,F016,F028,F044,M012,M028",
                   help="comma-separated subject ids (default: test subjects and one per thesis fold, and F016)")
    b.add_argument("--layout", choices=("video", "frames"), default="video",
                   help="'video': <subject>_<emotion>_tex.avi (default); 'frames': <subject>/<Emotion>/000.jpg")
    b.add_argument("--min-frames", type=int, default=48, help="shortest video in frames (default 48)")
    b.add_argument("--max-frames", type=int, default=64, help="longest video in frames (default 64)")
    b.add_argument("--long-video", type=int, default=240,
                   help="frames of the first subject's happy video, over T=100 after trimming (default 240; 0: none)")
    b.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    b.add_argument("--no-broken", action="store_true", help="leave out the videos broken on purpose")
    b.set_defaults(func=_user_errors(_synth_bu4dfe))
    r = synth_sub.add_parser("fer2013", help="synthetic fer2013.csv (emotion,pixels,Usage; 48x48 grey)")
    r.add_argument("out", metavar="OUT.csv", help="CSV file to write")
    r.add_argument("--per-class", type=int, nargs=3, default=(12, 3, 3), metavar=("TRAIN", "PUBLIC", "PRIVATE"),
                   help="images per class for Training, PublicTest, PrivateTest (default 12 3 3)")
    r.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    r.add_argument("--no-malformed", action="store_true", help="leave out the malformed rows")
    r.set_defaults(func=_user_errors(_synth_fer2013))

    prep = sub.add_parser("prepare", help="detect, align and shard a dataset")
    prep_sub = prep.add_subparsers(dest="dataset", required=True)
    p = prep_sub.add_parser(
        "afew", help="prepare an AFEW 7.0 layout", usage="fer-keras prepare afew [options] [SRC] OUT",
        description="Prepare AFEW: MTCNN faces aligned to a 5-point template, 40 ms audio clips with "
                    "openSMILE LLDs, whole-clip functionals, TFRecord shards, manifest.json, failures.jsonl. "
                    "With only OUT, a synthetic AFEW dataset is written to OUT/synthetic_source and prepared.")
    p.add_argument("paths", nargs="+", metavar="[SRC] OUT", help="AFEW root (holding Train_AFEW, ...) and output dir")
    p.add_argument("-j", "--jobs", type=int, default=1, help="videos prepared in parallel processes (default 1)")
    p.add_argument("--face-size", type=int, default=112, help="side of the aligned face crop in px (default 112)")
    p.add_argument("--margin", type=float, default=0.0,
                   help="extra context around the template crop, as a fraction of its side on each edge (default 0)")
    p.add_argument("--min-confidence", type=float, default=0.9, help="MTCNN confidence to keep a face (default 0.9)")
    p.add_argument("--min-face-size", type=float, metavar="SIZE",
                   help="smallest face to find: a fraction of the frame's shorter side (0 < SIZE < 1) or pixels "
                        "(>= 20); detection runs on a copy scaled so it becomes 20 px (default 0.125: "
                        "72 px at 720x576, 90 px at 1280x720)")
    p.add_argument("--fps", type=float, default=None,
                   help="resample every video to this constant frame rate (theses 001/003: 25 or 30); "
                        "default: keep each source frame once, at its own presentation time")
    p.add_argument("--image-format", choices=("jpeg", "png"), default="jpeg", help="encoding of face crops")
    p.add_argument("--jpeg-quality", type=int, default=95, help="JPEG quality of face crops (default 95)")
    p.add_argument("--sample-rate", type=int, default=16000, help="audio sample rate in Hz (default 16000)")
    p.add_argument("--lld-set", default="eGeMAPSv02",
                   help="openSMILE LLD set: eGeMAPSv02 (default), ComParE_2016, any bundled set, or a .conf path")
    p.add_argument("--lld-level", default=None, help="output level name inside a custom .conf (default 'lld')")
    p.add_argument("--lld-mode", choices=("context", "clip"), default="context",
                   help="'context': LLDs over the whole track averaged per 40 ms clip (default); "
                        "'clip': openSMILE on each clip alone, as thesis 000")
    p.add_argument("--functionals-set", default="IS10_paraling",
                   help="whole-clip functionals: IS10_paraling (default), any bundled set, a .conf "
                        "(e.g. emo_large), or 'none'")
    p.add_argument("--functionals-level", default=None, help="output level name inside a custom .conf (default 'func')")
    p.add_argument("--detect-batch", type=int, default=32, help="frames per MTCNN call (default 32)")
    p.add_argument("--shard-size", type=int, default=32, help="videos per TFRecord shard (default 32)")
    p.add_argument("--seed", type=int, default=0, help="seed of the synthetic dataset when SRC is omitted")
    p.add_argument("--verify", action="store_true",
                   help="on a rerun, check the kept shards' checksums and records too (sizes are always checked); "
                        "the videos of a missing or damaged shard are prepared again")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress bars")
    p.set_defaults(func=_prepare)

    q = prep_sub.add_parser(
        "bu4dfe", help="prepare BU-4DFE as thesis 002: Haar + MedianFlow faces, OpenFace AU trimming, folds",
        usage="fer-keras prepare bu4dfe [options] [SRC] OUT",
        description="Prepare BU-4DFE (<subject>_<emotion>_tex.avi videos or <subject>/<Emotion>/ frame folders): "
                    "neutral onset/offset frames cut by thesis 002's Algorithm 1 on OpenFace 2.x CSVs, the face "
                    "found by a Haar cascade on the first frames and tracked (MedianFlow), 160x160 PNG crops, "
                    "shards (train / test by the thesis's subjects; train_aug with --augment), manifest.json, "
                    "failures.jsonl and splits.json (Fig. 3.6). With only OUT, a synthetic set is written to "
                    "OUT/synthetic_source and prepared.")
    q.add_argument("paths", nargs="+", metavar="[SRC] OUT", help="BU-4DFE root and output dir")
    q.add_argument("--openface", metavar="DIR", help="folder of OpenFace CSVs (<video stem>.csv); default: beside each video")
    q.add_argument("-j", "--jobs", type=int, default=1, help="videos prepared in parallel processes (default 1)")
    q.add_argument("--detector", choices=("haar", "mtcnn"), default="haar",
                   help="'haar': cascade on the first frames + tracker (thesis 002, default); "
                        "'mtcnn': MTCNN on every frame + 5-point alignment")
    q.add_argument("--cascade", default="haarcascade_frontalface_default.xml",
                   help="Haar cascade: a file name bundled with OpenCV or a path (the thesis does not say which)")
    q.add_argument("--haar-min-face", type=float, default=0.2,
                   help="smallest face for the cascade: fraction of the shorter side (< 1) or pixels (default 0.2)")
    q.add_argument("--tracker", choices=("medianflow", "csrt", "kcf"), default="medianflow", help="OpenCV tracker")
    q.add_argument("--extend", type=int, default=10, help="pixels added to the box height (default 10, thesis)")
    q.add_argument("--extend-split", choices=("down", "up", "both"), default="down",
                   help="where the extension goes (the thesis does not say; default down: the jaw drops)")
    q.add_argument("--detect-frames", type=int, default=5,
                   help="first frames the cascade tries before it tries every later frame (default 5)")
    q.add_argument("--min-face-size", type=float, metavar="SIZE",
                   help="--detector mtcnn: smallest face, a fraction of the shorter side (< 1) or pixels (>= 20) "
                        "(default 0.125)")
    q.add_argument("--face-size", type=int, default=160, help="side of the face crops (default 160)")
    q.add_argument("--frames-fps", type=float, default=25.0,
                   help="frame rate of frame-image folders, for frame times (default 25, BU-4DFE's)")
    q.add_argument("--image-format", choices=("png", "jpeg"), default="png", help="crop encoding (default png, lossless)")
    q.add_argument("--no-trim", action="store_true", help="keep every frame (no Algorithm 1, no OpenFace needed)")
    q.add_argument("--trim-threshold", type=float, default=0.5, help="neutral below this fraction of the max AU score (0.5)")
    q.add_argument("--trim-max-cut", type=float, default=0.5, help="cut at most this fraction of the frames (0.5)")
    q.add_argument("--trim-end-frames", type=int, default=10, help="always cut this many frames from the end (10)")
    q.add_argument("--anomaly-frames", type=int, default=20, help="AU peak in the last N frames = anomaly (20)")
    q.add_argument("--anomaly", choices=("keep", "exclude", "trim"), default="keep",
                   help="an anomaly is kept untrimmed and flagged (default), excluded, or trimmed anyway")
    q.add_argument("--keep-incomplete-subjects", action="store_true",
                   help="keep the other videos of a subject that lacks an emotion (default: exclude it, as F016)")
    q.add_argument("--augment", choices=("faithful", "corrected"),
                   help="add one offline augmented copy of each training video per method (split train_aug): "
                        "'faithful' as the thesis code does it, 'corrected' as the method names say")
    q.add_argument("--augment-methods", metavar="M,M,...", default="all",
                   help="comma-separated methods (default all nine; see data_prep/augment.py)")
    q.add_argument("--shard-size", type=int, default=32, help="videos per TFRecord shard (default 32)")
    q.add_argument("--seed", type=int, default=0, help="seed of the random augmentations")
    q.add_argument("--verify", action="store_true",
                   help="on a rerun, check the kept shards' checksums and records too (sizes are always checked); "
                        "the videos of a missing or damaged shard are prepared again")
    q.add_argument("-q", "--quiet", action="store_true", help="no progress bars")
    q.set_defaults(func=_prepare_bu4dfe)

    g = prep_sub.add_parser(
        "fer2013", help="prepare fer2013.csv as single-frame records (thesis 002 fine-tuning)",
        usage="fer-keras prepare fer2013 [options] [CSV] OUT",
        description="Turn fer2013.csv (emotion,pixels,Usage) into single-frame records: Training -> train, "
                    "PublicTest -> val, PrivateTest -> test; 48x48 grey becomes RGB at --image-size. Malformed "
                    "rows are logged with their line number in failures.jsonl. With only OUT, a synthetic CSV "
                    "is written and prepared.")
    g.add_argument("paths", nargs="+", metavar="[CSV] OUT", help="fer2013.csv and output dir")
    g.add_argument("--image-size", type=int, default=224, help="side of the RGB images (default 224 for VGGFace; 48 keeps it)")
    g.add_argument("--interpolation", choices=("bicubic", "bilinear", "nearest", "area"), default="bicubic",
                   help="resize interpolation (default bicubic)")
    g.add_argument("--image-format", choices=("png", "jpeg"), default="png", help="image encoding (default png)")
    g.add_argument("--shard-size", type=int, default=1024, help="images per TFRecord shard (default 1024)")
    g.add_argument("--verify", action="store_true",
                   help="on a rerun, check the kept shards' checksums and records too (sizes are always checked); "
                        "the videos of a missing or damaged shard are prepared again")
    g.add_argument("-q", "--quiet", action="store_true", help="no progress bars")
    g.set_defaults(func=_prepare_fer2013)

    k = sub.add_parser(
        "folds", help="write a subject-independent k-fold split file for a prepared dataset",
        description="Group the training videos of a prepared dataset by subject and split the subjects into K "
                    "folds, stratified by class where possible (scikit-learn StratifiedGroupKFold, seeded). "
                    "Experiments name the file (data.folds) and a fold (data.fold).")
    k.add_argument("data", metavar="DATA", help="prepared dataset (its manifest records subjects)")
    k.add_argument("--k", type=int, default=5, help="number of folds (default 5)")
    k.add_argument("--seed", type=int, default=0, help="seed of the subject shuffle (default 0)")
    k.add_argument("--split", default="train", help="split whose subjects are folded (default train)")
    k.add_argument("--out", metavar="FILE", help="split file (default DATA/splits-k<K>-seed<SEED>.json)")
    k.set_defaults(func=_user_errors(_folds))

    v = sub.add_parser(
        "verify", help="check a prepared dataset (or a folder of feature files) before runs depend on it",
        description="Check every file the manifest lists: present, of the recorded size and SHA-256, with as many "
                    "records as the manifest has videos in it; with --records (and always for shards written before "
                    "checksums) every record through TFRecord's CRCs and the schema parser, video ids as listed. "
                    "Feature folders: features.json sizes and checksums, HDF5 layout. One line per problem (file, "
                    "what is wrong, what to do), then a summary; exit 1 when anything is wrong.")
    v.add_argument("root", metavar="ROOT", help="prepared dataset (manifest.json) or folder of *.h5 feature files")
    v.add_argument("--quick", action="store_true", help="check presence and sizes only")
    v.add_argument("--records", action="store_true",
                   help="also parse every record (TFRecord CRCs, schema, video ids); without it only shards "
                        "lacking a recorded checksum are parsed")
    v.add_argument("-j", "--jobs", type=int, default=4, help="files checked in parallel (default 4)")
    v.set_defaults(func=_user_errors(_verify))

    from fer_keras import feature_extraction  # the parser only: TensorFlow loads when the command runs
    feature_extraction.add_parser(sub).set_defaults(func=_user_errors(feature_extraction.run))

    m = sub.add_parser("models", help="list the model registry with parameter counts",
                       description="Build each registry model (thesis input sizes unless --small) and print "
                                   "its parameter counts, outputs and the thesis it reproduces.")
    m.add_argument("names", nargs="*", help="registry names (default: all)")
    m.add_argument("--small", action="store_true", help="build at the small test sizes (fast)")
    m.add_argument("--json", metavar="FILE", help="also write the table as JSON")
    m.set_defaults(func=_models)

    e = sub.add_parser(
        "evaluate", help="evaluate a trained run directory: per-video predictions, metrics, report",
        description="Load RUN_DIR/checkpoints/<best|last>.keras, predict every sequence of a split, "
                    "aggregate per video and write predictions.csv, metrics.json, confusion_counts.png, "
                    "confusion_normalised.png and report.md. The configured split and checkpoint write "
                    "into RUN_DIR; others into RUN_DIR/eval-<split>[-<checkpoint>].")
    e.add_argument("run_dir", metavar="RUN_DIR", help="run directory written by training")
    e.add_argument("--split", help="split to evaluate (default: the run's evaluation.split)")
    e.add_argument("--checkpoint", choices=("best", "last"),
                   help="checkpoint to load (default: the run's evaluation.checkpoint)")
    e.add_argument("--aggregate", choices=("mean", "vote"),
                   help="sequences -> video: frame-weighted mean of probabilities or majority vote "
                        "(default: the run's evaluation.aggregate)")
    e.set_defaults(func=_user_errors(_evaluate))

    f = sub.add_parser(
        "fuse", help="late fusion of evaluated run directories (thesis 000 methods 1-5, thesis 002)",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        description="Fuse the per-video predictions of evaluated runs (predictions.csv + metrics.json) "
                    "into OUT, written as a run of its own.",
        epilog=_fusion_methods_help)  # a callable: fusion (scikit-learn) loads only for --help
    f.add_argument("run_dirs", nargs="+", metavar="RUN_DIR",
                   help="evaluated run directories, or one late-fusion experiment file (late_fusion_*.yaml)")
    f.add_argument("--method", metavar="M", help="fusion method (listed below); a file names its own")
    f.add_argument("--out", metavar="DIR", help="output directory (not one of the runs)")
    f.add_argument("--runs", default="runs", metavar="DIR",
                   help="with a late-fusion file: where its member runs are and its fusion goes (default runs)")
    f.add_argument("--rescale", action="store_true",
                   help="t000_2/3/4: rescale each model's logits to [0, 1] per video")
    f.add_argument("--folds", type=int, help="t000_5: folds of the out-of-fold regression (default 5)")
    f.add_argument("--seed", type=int, help="t000_5: seed of the fold split (default 0)")
    f.add_argument("--accuracies", metavar="A,A,...",
                   help="weighted methods: one weight per run (default: each run's metrics.json accuracy)")
    f.add_argument("--class-counts", metavar="N,N,...",
                   help="t000_4: training label counts in class order (default: counted from the first "
                        "run's prepared dataset)")
    f.set_defaults(func=_user_errors(_fuse))

    tr = sub.add_parser(
        "train", help="train an experiment YAML into a run directory, then evaluate it",
        description="Train CONFIG.yaml into RUN_DIR (config copy, checkpoints, TensorBoard logs, "
                    "history.csv), then evaluate it. Rerunning on the same RUN_DIR continues a killed run.")
    tr.add_argument("config", metavar="CONFIG.yaml", help="experiment YAML (e.g. experiments/thesis000/...)")
    tr.add_argument("--run-dir", metavar="DIR", help="run directory (default runs/<experiment name>)")
    tr.add_argument("--set", nargs="+", metavar="SECTION.KEY=VALUE",
                    help="override settings, e.g. training.epochs=3 data.root=data/x")
    tr.add_argument("--xla", action="store_true", help="compile train steps with XLA (jit_compile)")
    tr.add_argument("--mixed-precision", action="store_true",
                    help="mixed float16 on GPU (bfloat16 on CPU)")
    tr.add_argument("--strategy", help="tf.distribute strategy: default, mirrored, one_device[:DEVICE]")
    tr.add_argument("--no-evaluate", action="store_true", help="skip the evaluation after training")
    tr.set_defaults(func=_user_errors(_train))

    from fer_keras import cv  # the parser only: TensorFlow loads when the command runs
    cv.add_parser(sub).set_defaults(func=_user_errors(cv.run))
    from fer_keras import results  # pure Python: no TensorFlow
    results.add_parser(sub).set_defaults(func=_user_errors(results.run))
    from fer_keras import reproduce  # the parser only: TensorFlow loads when the command runs
    reproduce.add_parser(sub).set_defaults(func=_user_errors(reproduce.run))

    t = sub.add_parser(
        "tune", help="KerasTuner search (Bayesian, random or grid) over a model's registry search space",
        usage="fer-keras tune (CONFIG.yaml | --model NAME --data DIR) [options]",
        description="Search the hyperparameters of the experiment's model (its registry search space; "
                    "tuning.fixed holds some at a value) with the training engine's losses and optimiser. "
                    "OUT gets best_hyperparameters.yaml, best_experiment.yaml (for fer-keras train) and "
                    "trials.csv; rerunning on the same OUT resumes the search.")
    t.add_argument("config", nargs="?", metavar="CONFIG.yaml", help="experiment YAML")
    t.add_argument("--model", metavar="NAME", help="registry model instead of a YAML (default experiment)")
    t.add_argument("--data", metavar="DIR", help="prepared dataset (needed with --model; overrides data.root)")
    t.add_argument("--set", nargs="+", metavar="SECTION.KEY=VALUE",
                   help="override settings as train does, e.g. model.options.input_size=32 tuning.epochs=1")
    t.add_argument("--out", metavar="DIR", help="search directory (default runs/tune/<experiment name>)")
    t.add_argument("--trials", type=int, metavar="N", help="total trials (default tuning.max_trials)")
    t.add_argument("--objective", metavar="NAME", help="metric to optimise (default tuning.objective)")
    t.add_argument("--overwrite", action="store_true", help="start the search in OUT afresh")
    t.set_defaults(func=_user_errors(_tune))
    return parser


def main(argv=None) -> int:
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # before TensorFlow loads, here or in workers
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING,
                        format="%(levelname)s %(name)s: %(message)s")
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
