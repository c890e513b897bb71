"""The `fer-keras` command: one subcommand per step of the flow in DESIGN.md."""
from __future__ import annotations

import argparse
import contextlib
import functools
import glob
import json
import logging
import math
import os
import sys
import traceback


def _folds(args) -> int:
    from fer_keras.data import splits

    out, folds = splits.kfold_file(args.data, args.k, args.seed, args.split, args.out)
    for i, fold in enumerate(folds["folds"]):
        print(f"fold {i}: {len(fold)} subjects ({', '.join(fold[:6])}{' ...' if len(fold) > 6 else ''})")
    print(f"split file: {out} (use it with data.folds={os.path.relpath(out, args.data)} data.fold=K)")
    return 0


def _verify(args) -> int:
    import time

    from fer_keras.data import integrity, manifest

    start = time.perf_counter()
    if os.path.isfile(manifest.path(args.root)) or not glob.glob(os.path.join(args.root, "*.h5*")):
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
    functools.update_wrapper(run, func)
    return run


def _evaluate(args) -> int:
    from fer_keras import storage

    if not storage.is_remote(args.run_dir) and not os.path.isdir(args.run_dir):  # before any heavy import
        raise FileNotFoundError(f"{args.run_dir}: no such run directory")
    from fer_keras import config as cfg
    from fer_keras.data.integrity import named_data_errors
    from fer_keras.evaluation import evaluate
    from fer_keras.staging import staged

    on = cfg.load(args.on) if args.on else None
    if on is not None and on.protocol != "evaluate":
        raise ValueError(f"{args.on}: --on takes an experiment file with protocol: evaluate, not {on.protocol}")
    out_dir = args.out or (os.path.join("runs", on.name) if on else None)
    with contextlib.ExitStack() as stack:
        run_dir = stack.enter_context(staged(args.run_dir))
        out = stack.enter_context(staged(out_dir)) if out_dir else None
        if not (run_dir / "config.yaml").is_file():
            raise FileNotFoundError(f"{args.run_dir}: no config.yaml; is it a run directory (fer-keras train)?")
        root = on.data.root if on else cfg.load(run_dir / "config.yaml").data.root
        with named_data_errors(root):
            result = evaluate(run_dir, split=args.split, checkpoint=args.checkpoint,
                              aggregate_method=args.aggregate, out_dir=out, on=on)
    for name, path in result["paths"].items():
        print(f"{name + ':':<22} {path}")
    accuracy = result.get("accuracy")
    print(f"split {result['split']}, checkpoint {result['checkpoint']}, {result['n_videos']} videos "
          f"({result['n_labelled']} labelled), {result['n_sequences']} sequences")
    print("accuracy: " + ("n/a (no labelled video)" if accuracy is None else f"{accuracy:.4f}"))
    return 0


def _train(args) -> int:
    from fer_keras import config as cfg

    overrides = cfg.overrides(args.set)
    flags = {"xla": args.xla or None, "mixed_precision": args.mixed_precision or None,
             "strategy": args.strategy}
    flags = {k: v for k, v in flags.items() if v is not None}
    if flags:
        overrides.setdefault("training", {}).update(flags)
    from fer_keras import training
    from fer_keras.data.integrity import named_data_errors
    from fer_keras.evaluation import evaluate
    from fer_keras.staging import staged

    exp = cfg.load(args.config, overrides)
    if exp.protocol == "evaluate":
        raise ValueError(f"{args.config}: protocol evaluate trains nothing; run "
                         f"fer-keras evaluate {exp.weights_from} --on {args.config}")
    run_dir = args.run_dir or os.path.join("runs", exp.name)
    with staged(run_dir) as local, named_data_errors(exp.data.root):
        print(f"run directory: {run_dir}" + (f" (worked in {local}, copied back when it ends)"
                                             if str(local) != run_dir else ""))
        state = training.train(exp, local, evaluate=None if args.no_evaluate else evaluate)
    result = state.get("evaluation")
    if result:
        paths = result.get("paths", {})
        print(f"{result['split']} accuracy per video: {result['accuracy']}")
        for name in ("report", "confusion_counts", "confusion_normalised", "predictions", "metrics"):
            if name in paths:
                print(f"  {name}: {paths[name]}")
    return 0


def _fuse(args) -> int:
    from fer_keras import fusion

    return fusion.run(args)


def _fusion_methods() -> str:
    """The methods list of `fer-keras fuse --help` (fusion and scikit-learn load only for --help)."""
    from fer_keras import fusion

    return fusion.methods_help()


def _tune(args) -> int:
    from fer_keras import tuning

    return tuning.run(args)


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

    from data_prep.commands import add_parsers  # synth, prepare, merge, download: from the dataset registry

    add_parsers(sub, _user_errors)

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
    e.add_argument("--on", metavar="CONFIG", help="an experiment file with protocol: evaluate: evaluate the run "
                                                  "on its data (another dataset; the run's preprocessing)")
    e.add_argument("--out", metavar="DIR", help="output directory (default with --on: runs/<its name>)")
    e.set_defaults(func=_user_errors(_evaluate))

    f = sub.add_parser(
        "fuse", help="late fusion of evaluated run directories (thesis 000 methods 1-5, thesis 002)",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        description="Fuse the per-video predictions of evaluated runs (predictions.csv + metrics.json) "
                    "into OUT, written as a run of its own.",
        epilog=_fusion_methods)  # a callable: fusion (scikit-learn) loads only for --help
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
    tr.add_argument("--strategy", help="tf.distribute strategy: default, mirrored, one_device[:DEVICE], "
                    "multi_worker (from TF_CONFIG; README: training across workers)")
    tr.add_argument("--no-evaluate", action="store_true", help="skip the evaluation after training")
    tr.set_defaults(func=_user_errors(_train))

    from fer_keras import cv  # the parser only: TensorFlow loads when the command runs
    cv.add_parser(sub).set_defaults(func=_user_errors(cv.run))
    from fer_keras import results  # pure Python: no TensorFlow
    results.add_parser(sub).set_defaults(func=_user_errors(results.run))
    from fer_keras import reproduce  # the parser only: TensorFlow loads when the command runs
    from data_prep.registry import DATASETS  # reproduce --smoke prepares its data through the registry
    reproduce.add_parser(sub).set_defaults(func=_user_errors(functools.partial(reproduce.run, datasets=DATASETS)))

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
    from fer_keras import analysis  # the parser only: TensorFlow loads when the command runs
    analysis.report.add_parser(sub).set_defaults(func=_user_errors(analysis.report.run))
    return parser


def main(argv=None) -> int:
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # before TensorFlow loads, here or in workers
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING,
                        format="%(levelname)s %(name)s: %(message)s")
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
