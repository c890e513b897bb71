"""The `fer-keras` command: one subcommand per step of the flow in DESIGN.md."""
from __future__ import annotations

import argparse
import json
import logging
import math
import os
import sys


def _synth(args) -> int:
    from data_prep.synthetic import SyntheticSpec, write_afew

    spec = SyntheticSpec(train_per_class=args.train_per_class, val_per_class=args.val_per_class,
                         test_clips=args.test_clips, min_frames=args.min_frames, max_frames=args.max_frames,
                         seed=args.seed, broken=not args.no_broken)
    truth = write_afew(args.out, spec)
    print(f"wrote {len(truth['videos'])} synthetic AFEW videos under {args.out}")
    return 0


def _prepare(args) -> int:
    from data_prep import afew
    from data_prep.prepare import PrepareOptions

    if len(args.paths) > 2:
        raise SystemExit("usage: fer-keras prepare afew [SRC] OUT")
    src, out = (None, args.paths[0]) if len(args.paths) == 1 else args.paths
    if src is None:
        from data_prep.synthetic import SyntheticSpec, write_afew

        src = os.path.join(out, "synthetic_source")
        if not os.path.isdir(src):
            print(f"no SRC given: writing the synthetic AFEW dataset to {src}")
            write_afew(src, SyntheticSpec(seed=args.seed))
    opts = PrepareOptions(
        face_size=args.face_size, margin=args.margin, min_confidence=args.min_confidence,
        min_face_size=args.min_face_size, image_format=args.image_format, jpeg_quality=args.jpeg_quality,
        sample_rate=args.sample_rate, lld_set=args.lld_set, lld_level=args.lld_level, lld_mode=args.lld_mode,
        functionals_set=args.functionals_set, functionals_level=args.functionals_level,
        jobs=args.jobs, detect_batch=args.detect_batch, shard_size=args.shard_size,
    )
    try:
        manifest = afew.prepare(src, out, opts, progress=not args.quiet)
    except (afew.LayoutError, ValueError, FileNotFoundError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    print(json.dumps({k: {kk: vv for kk, vv in v.items() if kk != "shards"} for k, v in manifest["splits"].items()}))
    print(f"manifest: {os.path.join(out, 'manifest.json')}; failures: {os.path.join(out, 'failures.jsonl')}")
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


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="fer-keras", description=__doc__)
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
    s.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    s.add_argument("--no-broken", action="store_true",
                   help="leave out the faceless clip, the clip without audio and the corrupt file")
    s.set_defaults(func=_synth)

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
    p.add_argument("--min-face-size", type=int, default=20, help="smallest face MTCNN looks for, px (default 20)")
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
    p.add_argument("-q", "--quiet", action="store_true", help="no progress bars")
    p.set_defaults(func=_prepare)

    m = sub.add_parser("models", help="list the model registry with parameter counts",
                       description="Build each registry model (thesis input sizes unless --small) and print "
                                   "its parameter counts, outputs and the thesis it reproduces.")
    m.add_argument("names", nargs="*", help="registry names (default: all)")
    m.add_argument("--small", action="store_true", help="build at the small test sizes (fast)")
    m.add_argument("--json", metavar="FILE", help="also write the table as JSON")
    m.set_defaults(func=_models)
    return parser


def main(argv=None) -> int:
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # before TensorFlow loads, here or in workers
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING,
                        format="%(levelname)s %(name)s: %(message)s")
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
