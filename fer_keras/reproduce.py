"""A whole thesis in one command: its experiment files run in the thesis's order, then its table.

``fer-keras reproduce 002`` (``make reproduce THESIS=002``) reads ``experiments/thesis002/reproduce.yaml``:
an ordered list of ``steps``, each either experiment files to run (by name) or a feature extraction::

    steps:
      - run: [vggface_fer2013_phase1]          # each file's protocol says how: tune, train, cv, cv_folds;
      - run: [vggface_fer2013_phase2]          # a late-fusion file is fused
      - features: {source: runs/vggface_fer2013_phase2, data: data/bu4dfe_prepared,
                   out: data/bu4dfe_features, tap: features, augmentations: all}

and ends with the results table of every run (``fer-keras results``) in ``RUNS/results-<NNN>.md``.

Every experiment writes to ``RUNS/<name>`` (a run, search or CV directory, or a fusion), so late
fusion finds its members and ``hyperparameters_from`` / ``weights_from`` paths under ``runs/``
point into RUNS. A step whose result is already there is skipped (and the engines resume a killed
run), so a rerun continues where a kill left it. ``--smoke`` runs the same steps on synthetic
stand-ins of the datasets at tiny sizes, with the file's ``smoke`` section: ``datasets`` to write
and prepare (per registered dataset: ``out`` and the option names and values of its ``synth``
spec and ``prepare`` options, checked when the plan is read), ``folds`` (a k-fold split file
written for those that record subjects), ``set``, overrides merged into the experiments whose names match a glob, and
``epochs``, the epochs of every stage (of every run without stages). One bad
step is logged in ``RUNS/failures.jsonl`` and the others still run; the command then exits 1.
Each step runs in a fresh process, so memory does not grow over a thesis's dozens of steps.

The theses started their CNNs from pretrained weights, which are never downloaded: a step whose
model has a backbone and ``weights: null`` (a "pretrained step"; a ``weights_from`` step inherits
an earlier run's instead) takes the file given once for its backbone (``--weights NAME=FILE``).
Without one the command refuses before any step runs, unless ``--random-init`` says that random
starting weights are meant (``--smoke`` runs pass it); the log records which it was.
"""
from __future__ import annotations

import argparse
import fnmatch
import json
import logging
import multiprocessing
import time
import traceback
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import yaml

from fer_keras.data.manifest import FAILURES
from fer_keras.durable import write_atomic
from fer_keras.plan import PLAN, read_plan, smoke_options

logger = logging.getLogger(__name__)


def experiments_dir(thesis) -> Path:
    return Path("experiments") / f"thesis{str(thesis).zfill(3)}"


def _is_fusion(raw: dict) -> bool:
    return "method" in raw and "runs" in raw


def _moved(value, mapping: dict):
    """A path with its first matching prefix of ``mapping`` (e.g. runs/ -> runs/smoke/) replaced."""
    if not isinstance(value, str):
        return value
    for old, new in mapping.items():
        if value == old.rstrip("/") or value.startswith(old.rstrip("/") + "/"):
            return new.rstrip("/") + value[len(old.rstrip("/")):]
    return value


# The usual local file of each pretrained backbone, for the example in the refusal (nothing is downloaded).
WEIGHT_FILES = {"vggface_vgg16": "rcmalli_vggface_tf_notop_vgg16.h5",
                "vgg16": "vgg16_weights_tf_dim_ordering_tf_kernels_notop.h5",
                "resnet50": "resnet50_weights_tf_dim_ordering_tf_kernels_notop.h5",
                "densenet121": "densenet121_weights_tf_dim_ordering_tf_kernels_notop.h5",
                "nasnet_mobile": "NASNet-mobile-no-top.h5"}


def pretrained_backbone(raw: dict) -> str | None:
    """The registry backbone that experiment mapping ``raw`` starts from a weights file it leaves
    to the command (``model.options.weights: null``); None for a fusion, a model without a
    backbone, a file that names its weights, a step that inherits an earlier run's
    (``weights_from``) and a model trained from scratch on purpose (``model.options.init``, an
    initializer: thesis 001's "trained from scratch" rows)."""
    from fer_keras.config import ModelConfig
    from fer_keras.models import entry

    if _is_fusion(raw) or raw.get("weights_from"):
        return None
    model = raw.get("model") or {}
    options = entry(model.get("name", ModelConfig.name)).options(**(model.get("options") or {}))
    return options.get("backbone") if options.get("weights") is None and options.get("init") is None else None


def experiment_raw(folder, name, smoke=None, paths=None, weights=None) -> dict:
    """Experiment file ``name`` as a mapping: the smoke overrides whose globs match it merged in
    (in the order written) and the smoke epochs, the ``weights`` file ({backbone: path}) of its
    backbone if it is a pretrained step, then its paths (data root, hyperparameters_from,
    weights_from, init sources) moved by ``paths``."""
    from fer_keras.config import merge

    raw = yaml.safe_load((Path(folder) / f"{name}.yaml").read_text()) or {}
    if _is_fusion(raw):
        return raw
    for patterns, overrides in ((smoke or {}).get("set") or {}).items():
        if any(fnmatch.fnmatchcase(name, p) for p in str(patterns).split()):
            raw = merge(raw, overrides)
    if (smoke or {}).get("epochs"):  # every stage (or the whole run) this many epochs
        n = int(smoke["epochs"])
        training = dict(raw.get("training") or {})
        stages = [{**stage, "epochs": n} for stage in training.get("stages") or []]
        training.update({"epochs": n * max(len(stages), 1), **({"stages": stages} if stages else {})})
        raw["training"] = training
    backbone = pretrained_backbone(raw) if weights else None
    if backbone in (weights or {}):
        model = raw.get("model") or {}
        raw["model"] = {**model, "options": {**(model.get("options") or {}), "weights": weights[backbone]}}
    paths = paths or {}
    for key in ("hyperparameters_from", "weights_from"):
        if key in raw:
            raw[key] = _moved(raw[key], paths)
    if isinstance(raw.get("init"), list):
        raw["init"] = [{**item, "source": _moved(item.get("source"), paths)} if isinstance(item, dict) else item
                       for item in raw["init"]]
    if isinstance(raw.get("data"), dict) and "root" in raw["data"]:
        raw["data"] = {**raw["data"], "root": _moved(raw["data"]["root"], paths)}
    return raw


def _done(kind, out: Path) -> bool:
    """Whether a step's result is there: the file each engine writes last, whole (fer_keras.durable),
    so a kill before it leaves the step to resume (the engines continue it; this skips the reload)."""
    marker = {"tune": "search.json", "cv_folds": "folds.json"}.get(kind, "metrics.json")
    return (out / marker).is_file()


def finished(folder, name, runs: Path, smoke=None, paths=None) -> bool:
    """Whether experiment ``name`` has its result in ``runs/<name>`` (read from its file alone,
    without the engines: a rerun skips done steps in no time)."""
    raw = experiment_raw(folder, name, smoke, paths)
    out = Path(runs) / name
    return (out / "metrics.json").is_file() if _is_fusion(raw) else _done(raw.get("protocol", "train"), out)


def run_experiment(folder, name, runs: Path, smoke=None, paths=None, weights=None) -> str:
    """Run one experiment file into ``runs/<name>`` by its protocol; returns what was done."""
    from fer_keras import config, cv, evaluation, fusion, training, tuning

    if finished(folder, name, runs, smoke, paths):
        return "done already"
    raw = experiment_raw(folder, name, smoke, paths, weights)
    out = runs / name
    if _is_fusion(raw):
        metrics = fusion.fuse_spec(fusion.check_spec(raw, Path(folder) / f"{name}.yaml"), runs)
        return f"fused: accuracy {metrics['accuracy']}"
    exp = config.from_dict(raw, str(Path(folder) / f"{name}.yaml"))
    if exp.protocol == "tune":
        result = tuning.tune(exp, out)
        return f"searched: best {exp.tuning.objective} {result['best_score']:.4g}"
    if exp.protocol == "evaluate":
        metrics = evaluation.evaluate(exp.weights_from, out_dir=out, on=exp)
        return f"evaluated {exp.weights_from} on {exp.data.root}: {_headline(metrics)}"
    if exp.protocol in ("cv", "cv_folds"):
        result = cv.cross_validate(raw, out, phase="all" if exp.protocol == "cv" else "folds")
        if exp.protocol == "cv":
            return f"cross-validated: test accuracy {result['final']['accuracy']}"
        return f"cross-validated: fold mean {result['folds']['mean']:.4g}"
    result = training.train(exp, out, evaluate=evaluation.evaluate)
    return f"trained: {_headline(result.get('evaluation', {}))}"


def _headline(metrics: dict) -> str:
    """A step's figure for the log: accuracy (per frame for per-frame categories), and the frame
    CCCs of a valence/arousal run."""
    parts = []
    if (metrics.get("frame") or {}).get("accuracy") is not None:
        parts.append(f"frame accuracy {metrics['frame']['accuracy']:.3f}")
    elif metrics.get("accuracy") is not None or not metrics.get("va"):
        parts.append(f"accuracy {metrics.get('accuracy')}")
    frame = (metrics.get("va") or {}).get("frame") or {}
    parts += [f"{name} CCC {frame[name]['ccc']}" for name in ("valence", "arousal") if name in frame]
    return ", ".join(parts)


def run_features(spec: dict, paths=None, folder=None, smoke=None, weights=None) -> str:
    """A feature extraction step (fer-keras features), skipped when its files are complete. Its
    ``source`` is a run directory, or the name of an experiment of the thesis folder (thesis 003:
    the frozen CNN of a file, with the smoke settings and ``--weights`` a run of it gets)."""
    from fer_keras import config, feature_extraction

    source = spec["source"]
    if folder is not None and _experiment_source(folder, source):
        source = config.from_dict(experiment_raw(folder, source, smoke, paths, weights), f"{folder}/{source}.yaml")
    spec = {k: _moved(v, paths or {}) for k, v in spec.items() if k != "source"}
    augmentations = spec.get("augmentations", ())
    if isinstance(augmentations, str) and augmentations != "all":
        augmentations = tuple(m.strip() for m in augmentations.split(",") if m.strip())
    extractor = feature_extraction.load_extractor(_moved(source, paths or {}) if isinstance(source, str) else source,
                                                  spec.get("tap", feature_extraction.DEFAULT_TAP))
    done = feature_extraction.extract(extractor, spec["data"], spec["out"], dtype=spec.get("dtype", "float32"),
                                      augmentations=augmentations, batch=int(spec.get("batch", 4)),
                                      seq_len=int(spec.get("seq_len", 100)),
                                      folds=spec.get("folds", "splits.json"), progress=False)
    return f"{sum(d['written'] for d in done)} of {len(done)} feature files written ({extractor.dim} features)"


def _feeds(folder, spec, only, smoke, paths) -> bool:
    """Whether a features step writes the data of one of the ``only`` experiments (so ``--only``
    still computes, or finds complete, the features its experiments read)."""
    roots = set()
    for name in only:
        try:
            roots.add((experiment_raw(folder, name, smoke, paths).get("data") or {}).get("root"))
        except (ValueError, OSError, yaml.YAMLError):
            continue
    return _moved(spec["out"], paths) in roots


def _experiment_source(folder, source) -> bool:
    """Whether a features step's ``source`` names an experiment file of the thesis folder."""
    return isinstance(source, str) and "/" not in source and (Path(folder) / f"{source}.yaml").is_file()


def _isolated(fn, *args):
    """``fn(*args)`` in a fresh process: Keras and TensorFlow keep graphs and models of a process
    alive past ``clear_session`` (thesis 000's smoke run grew by about 0.6 GB a step, to 13 GB after
    21 of its 86 steps, on one process), and a step killed for memory must not end the run. The
    step's exception comes back as itself; a dead process as ``BrokenProcessPool``."""
    with ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("spawn"),
                             initializer=_log_at, initargs=(logging.getLogger().getEffectiveLevel(),)) as pool:
        return pool.submit(fn, *args).result()


def _log_at(level):
    logging.basicConfig(level=level)


class Failures:
    """RUNS/failures.jsonl: the steps whose latest attempt failed. A step run again loses its
    earlier line (whether it now fails or succeeds), so a rerun after a kill or a fix never keeps
    a failure that no longer holds, nor logs one twice; the file is rewritten whole each time."""

    def __init__(self, runs: Path):
        self.path = runs / FAILURES
        self.lines = []
        if self.path.is_file():
            for line in self.path.read_text(encoding="utf-8").splitlines():
                try:
                    self.lines.append(json.loads(line))
                except json.JSONDecodeError:  # a line torn by a kill before the file was atomic
                    continue

    def attempted(self, step: str, err: BaseException | None = None) -> None:
        lines = [line for line in self.lines if line.get("step") != step]
        if err is not None:
            lines.append({"step": step, "error": f"{type(err).__name__}: {err}",
                          "traceback": traceback.format_exc(limit=3)})
        if lines != self.lines:
            self.lines = lines
            write_atomic(self.path, "".join(json.dumps(line) + "\n" for line in lines))


def prepare_smoke(smoke: dict, paths: dict, datasets, roots=None) -> None:
    """Write and prepare the synthetic datasets of the smoke section through the dataset registry
    (a synthetic source under each OUT, as ``fer-keras prepare NAME OUT`` writes one), and the
    k-fold split file of those that record subjects; with ``roots``, only the datasets at those
    paths (what the steps of ``--only`` read). Preparation always runs: it skips what is
    done, and finishes a dataset that a kill left half prepared (a manifest is no sign of done)."""
    from fer_keras.data import splits

    for name, (entry, spec, opts, out) in smoke_options(smoke, datasets).items():
        out = _moved(out, paths)
        if roots is not None and out not in roots:
            continue
        source = Path(out) / entry.synthetic_source
        if not source.exists():  # written whole or not at all
            print(entry.synthetic.synth(str(source), spec), flush=True)
        entry.prepare(str(source), out, opts, progress=False)
        if smoke.get("folds") and entry.subjects:
            splits.kfold_file(out, int(smoke["folds"]), out=Path(out) / splits.SPLITS_FILE)


def pretrained_steps(folder, plan: dict, smoke=None, paths=None, only=None) -> dict:
    """{experiment name: backbone} of the plan's pretrained steps (``pretrained_backbone``) among
    those that run. A bad file is left out: it fails as its own step, logged."""
    found = {}
    for step in plan["steps"]:
        sources = [step["features"]["source"]] if "features" in step else []
        for name in list(step.get("run", ())) + [s for s in sources if _experiment_source(folder, s)]:
            if only and name not in only:
                continue
            try:
                backbone = pretrained_backbone(experiment_raw(folder, name, smoke, paths))
            except (ValueError, yaml.YAMLError):
                continue
            if backbone:
                found[name] = backbone
    return found


def starting_weights(weights: dict, random_init: bool, steps: dict, plan_path) -> dict:
    """The ``--weights`` files ({backbone: path}) checked against the pretrained ``steps``: every
    name a registry backbone, every file there, and every pretrained step's backbone given a file
    unless ``random_init``; an unused file is a warning. Returns the log's record of them:
    {backbone: {path (absolute), sha256}}."""
    from fer_keras.models.backbones import BACKBONES

    for name, path in weights.items():
        if name not in BACKBONES:
            raise ValueError(f"--weights {name}={path}: unknown backbone {name!r}; known: {', '.join(BACKBONES)}")
        if not Path(path).is_file():
            raise FileNotFoundError(f"--weights {name}={path}: no such weights file")
    missing = {}
    for step, backbone in steps.items():
        if backbone not in weights:
            missing.setdefault(backbone, []).append(step)
    if missing and not random_init:
        needed = "; ".join(f"{b} ({', '.join(names)})" for b, names in missing.items())
        option = " ".join(f"{b}=/path/to/{WEIGHT_FILES.get(b, b + '.weights.h5')}" for b in missing)
        raise ValueError(f"{plan_path}: {sum(map(len, missing.values()))} step(s) start a pretrained backbone "
                         f"without its weights file: {needed}; pass --weights {option} (nothing is "
                         f"downloaded), or --random-init to train them from random weights")
    for name in sorted(set(weights) - set(steps.values())):
        logger.warning("--weights %s: no step of %s starts a %s backbone; the file is unused", name, plan_path, name)
    from fer_keras.data.integrity import sha256

    return {name: {"path": str(Path(path).resolve()), "sha256": sha256(path)} for name, path in weights.items()}


def _roots(folder, plan: dict, smoke: dict, paths: dict, only):
    """The data paths the steps of ``only`` read (their files' data roots and every features step's
    data), or None without ``only``: the smoke datasets worth preparing."""
    if not only:
        return None
    roots = {_moved(step["features"].get("data"), paths) for step in plan["steps"] if "features" in step}
    for name in (n for step in plan["steps"] for n in step.get("run", ()) if n in only):
        data = experiment_raw(folder, name, smoke, paths).get("data")
        if isinstance(data, dict) and data.get("root"):
            roots.add(data["root"])
    return roots


def reproduce(thesis, *, folder=None, runs="runs", smoke=False, only=None, datasets=None, weights=None,
              random_init=False) -> dict:
    """Run every step of the thesis's plan (``only``: just the experiments so named, and the
    features steps that write their data; other steps that feed them are still the user's to have
    run), then write its results table.

    ``datasets`` is the dataset registry (data_prep.registry.DATASETS), which ``--smoke`` needs to
    write and prepare its synthetic data: the command line hands it in, since the library never
    imports preparation. ``weights`` ({backbone: file}) start the pretrained steps; without a file
    for each of their backbones the plan is refused before anything runs, unless ``random_init``."""
    from fer_keras import results

    folder = Path(folder) if folder else experiments_dir(thesis)
    if smoke and datasets is None:
        raise ValueError("--smoke needs the dataset registry to prepare its synthetic data (datasets=...)")
    plan = read_plan(folder, datasets)
    if smoke and not plan.get("smoke"):
        raise ValueError(f"{folder / PLAN}: has no smoke section; run it on the real datasets without --smoke")
    settings = plan.get("smoke") if smoke else {}
    runs = Path(settings.get("runs", runs) if smoke else runs)
    paths = {"runs/": f"{runs}/", **(settings.get("paths") or {})}
    used = starting_weights(weights or {}, random_init, pretrained_steps(folder, plan, settings, paths, only),
                            folder / PLAN)
    weights = {name: record["path"] for name, record in used.items()}
    runs.mkdir(parents=True, exist_ok=True)
    if smoke:
        prepare_smoke(settings, paths, datasets, _roots(folder, plan, settings, paths, only))
    failed, log, failures = [], [], Failures(runs)
    for step in plan["steps"]:
        kind, value = next(iter(step.items()))
        items = value if kind == "run" else [value]
        for item in items:
            label = item if kind == "run" else f"{kind} {json.dumps(item, sort_keys=True)}"
            if only and kind == "run" and item not in only:
                continue
            if only and kind == "features" and not _feeds(folder, item, only, settings, paths):
                continue
            start = time.perf_counter()
            try:
                if kind == "run" and finished(folder, item, runs, settings, paths):
                    what = "done already"
                elif kind == "run":
                    what = _isolated(run_experiment, folder, item, runs, settings, paths, weights)
                else:
                    what = _isolated(run_features, item, paths, folder, settings, weights)
                failures.attempted(label)
            except Exception as err:  # one bad step never stops the others
                logger.error("%s: %s", label, err)
                failures.attempted(label, err)
                failed.append(label)
                what = f"FAILED: {type(err).__name__}: {err}"
            took = time.perf_counter() - start
            log.append({"step": label, "result": what, "seconds": round(took, 1)})
            print(f"[{len(log)}] {label}: {what} ({took:.0f} s)", flush=True)
    table = runs / f"results-{str(thesis).zfill(3)}.md"
    counts = results.write([str(runs)], out=str(table), thesis=str(thesis), experiments=str(folder),
                           csv_path=str(table.with_suffix(".csv")))
    write_atomic(runs / f"reproduce-{str(thesis).zfill(3)}.json", json.dumps(
        {"thesis": str(thesis).zfill(3), "smoke": smoke, "weights": used, "random_init": random_init, "steps": log,
         "failed": failed, "results": counts}, indent=2))
    return {"steps": log, "failed": failed, "results": counts, "table": str(table)}


def add_parser(subparsers):
    p = subparsers.add_parser(
        "reproduce", help="run every experiment of a thesis in order, then its results table",
        description="Run the steps of experiments/thesis<NNN>/reproduce.yaml (searches, trainings, feature "
                    "extraction, cross-validations, late fusions) into RUNS/<experiment name>, skipping what is "
                    "done, then write RUNS/results-<NNN>.md and .csv beside the thesis's numbers. --smoke: the same "
                    "on synthetic datasets at tiny sizes (the plan's smoke section). A step that starts a pretrained "
                    "backbone (weights: null, no weights_from) needs its file from --weights, or --random-init.")
    p.add_argument("thesis", help="thesis number, e.g. 002")
    p.add_argument("--experiments", metavar="DIR", help="thesis folder (default experiments/thesis<NNN>)")
    p.add_argument("--runs", default="runs", metavar="DIR", help="where the runs go (default runs; smoke: the plan's)")
    p.add_argument("--smoke", action="store_true", help="synthetic data at tiny sizes, end to end")
    p.add_argument("--only", nargs="+", metavar="NAME", help="only these experiment files (and the features steps that write their data)")
    p.add_argument("--weights", nargs="+", type=_weights_item, default=[], metavar="NAME=FILE",
                   help="the local weights file of registry backbone NAME (e.g. vggface_vgg16, vgg16, resnet50), "
                        "set into model.options.weights of every step that starts that backbone with weights: null")
    p.add_argument("--random-init", action="store_true",
                   help="let the pretrained steps without a --weights file start from random weights (--smoke: needed)")
    return p


def _weights_item(text) -> tuple[str, str]:
    name, sep, path = text.partition("=")
    if not (sep and name and path):
        raise argparse.ArgumentTypeError(f"expected NAME=FILE (a backbone name and its weights file), got {text!r}")
    return name, path


def run(args, datasets=None) -> int:
    """`fer-keras reproduce`; ``datasets``: the dataset registry, for --smoke (see ``reproduce``)."""
    result = reproduce(args.thesis, folder=args.experiments, runs=args.runs, smoke=args.smoke, only=args.only,
                       datasets=datasets, weights=dict(args.weights), random_init=args.random_init)
    counts = result["results"]
    print(f"results: {result['table']} ({counts['filled']} of {counts['rows']} rows filled)")
    if result["failed"]:
        print(f"{len(result['failed'])} step(s) failed: {', '.join(result['failed'])} (failures.jsonl)")
        return 1
    return 0
