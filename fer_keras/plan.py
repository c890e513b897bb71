"""A thesis folder's plan file (``reproduce.yaml``): its ordered steps, checked.

Its own module because two layers read it: ``reproduce`` runs the steps, and ``results`` lists a
thesis's rows in the plan's order (the thesis's order) rather than by file name.
"""
from __future__ import annotations

from pathlib import Path

import yaml

PLAN = "reproduce.yaml"
PLAN_KEYS = {"steps", "smoke"}
SMOKE_KEYS = {"datasets", "folds", "set", "runs", "paths", "epochs"}
SMOKE_DATASET_KEYS = {"out", "synth", "prepare", "dataset"}
STEP_KINDS = ("run", "features")
FEATURE_KEYS = {"source", "data", "out", "tap", "dtype", "augmentations", "folds", "seq_len", "batch"}


def read_plan(folder, datasets=None) -> dict:
    """The plan file of a thesis folder, checked: known keys, known step kinds, files that exist;
    with ``datasets`` (the dataset registry, data_prep.registry.DATASETS), also every smoke
    dataset's name and the options its ``synth`` and ``prepare`` mappings set, so a plan naming an
    unknown or bad option fails here, not when its step runs."""
    path = Path(folder) / PLAN
    if not path.is_file():
        raise FileNotFoundError(f"{path}: missing; a thesis folder lists its steps in {PLAN}")
    plan = yaml.safe_load(path.read_text()) or {}
    if not isinstance(plan, dict) or set(plan) - PLAN_KEYS or not isinstance(plan.get("steps"), list):
        raise ValueError(f"{path}: expected a mapping with 'steps' (a list) and optionally 'smoke'")
    if set(plan.get("smoke") or {}) - SMOKE_KEYS:
        raise ValueError(f"{path}: smoke: unknown key(s) {sorted(set(plan['smoke']) - SMOKE_KEYS)}; "
                         f"known: {', '.join(sorted(SMOKE_KEYS))}")
    if datasets is not None:
        smoke_options(plan.get("smoke") or {}, datasets, path)
    for i, step in enumerate(plan["steps"]):
        if not isinstance(step, dict) or len(step) != 1 or next(iter(step)) not in STEP_KINDS:
            raise ValueError(f"{path}: steps[{i}]: one of {', '.join(STEP_KINDS)} expected, got {step!r}")
        kind, value = next(iter(step.items()))
        if kind == "run":
            names = value if isinstance(value, list) else [value]
            missing = [n for n in names if not (Path(folder) / f"{n}.yaml").is_file()]
            if missing:
                raise ValueError(f"{path}: steps[{i}]: no experiment file {', '.join(missing)} in {folder}")
            step["run"] = names
        elif kind == "features" and (not isinstance(value, dict) or set(value) - FEATURE_KEYS
                                     or not {"source", "data", "out"} <= set(value)):
            raise ValueError(f"{path}: steps[{i}]: features needs source, data, out (and may set "
                             f"{', '.join(sorted(FEATURE_KEYS - {'source', 'data', 'out'}))})")
    return plan


def smoke_options(smoke: dict, datasets, path=PLAN) -> dict:
    """{key: (entry, synthetic spec, prepare options, out)} of a smoke section, every value
    checked by the dataset's own option classes. A key is a registered dataset's name, or any
    name with ``dataset: NAME`` (thesis 001 prepares three valence/arousal sets, all ``va``)."""
    found = {}
    for key, spec in (smoke.get("datasets") or {}).items():
        if not isinstance(spec, dict) or set(spec) - SMOKE_DATASET_KEYS or "out" not in spec:
            raise ValueError(f"{path}: smoke: datasets: {key}: expected a mapping with out (and optionally "
                             f"dataset, synth and prepare: option name -> value), got {spec!r}")
        name = spec.get("dataset", key)
        if name not in datasets:
            raise ValueError(f"{path}: smoke: unknown dataset {name!r}; known: {', '.join(datasets)}")
        entry = datasets[name]
        try:
            found[key] = (entry, entry.synthetic.make_spec(spec.get("synth") or {}),
                          entry.make_options(spec.get("prepare") or {}), spec["out"])
        except (TypeError, ValueError) as err:
            raise ValueError(f"{path}: smoke: datasets: {key}: {err}") from None
    return found


def run_order(folder) -> list[str]:
    """The experiment names of the plan's ``run`` steps in order ([] when the folder has no plan)."""
    if not (Path(folder) / PLAN).is_file():
        return []
    return [name for step in read_plan(folder)["steps"] for name in step.get("run", [])]
