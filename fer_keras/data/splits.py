"""Subject-independent splits as a file: written once beside the prepared data, read by training.

A split file (`splits.json`) names the test subjects and the training folds by subject. Every
experiment names a fold of a file, never re-draws one, so all models of a thesis are compared on
the same folds. Two ways to make one:

- `thesis002()`: the fixed protocol of thesis 002 (§3.2.2, Fig. 3.6): test F001-F010 and
  M001-M010, five folds of 16 training subjects exactly as the figure lists them.
- `kfold()`: a generic subject-independent k-fold for any prepared dataset that records subjects:
  grouped by subject (a subject is in exactly one fold), stratified by class where the classes
  allow it (scikit-learn's StratifiedGroupKFold), seeded.

`fold_keys()` turns (manifest, split file, fold) into the records of the training and the
validation part; augmented copies (split `train_aug`) follow their source video's subject, so
they never reach a validation fold.
"""
from __future__ import annotations

import json
import os

from fer_keras import storage

SPLITS_FILE = "splits.json"
AUGMENTED_SPLIT = "train_aug"


def subject_range(prefix: str, first: int, last: int, skip=()) -> list[str]:
    """["F011", ..., "F027"] without the numbers in `skip`."""
    return [f"{prefix}{i:03d}" for i in range(first, last + 1) if i not in skip]


# Thesis 002, Fig. 3.6 (F016 dropped: it has no happiness video).
THESIS002_TEST = subject_range("F", 1, 10) + subject_range("M", 1, 10)
THESIS002_FOLDS = (
    subject_range("F", 11, 27, skip=(16,)),
    subject_range("F", 28, 43),
    subject_range("F", 44, 58) + ["M011"],
    subject_range("M", 12, 27),
    subject_range("M", 28, 43),
)


def thesis002(subjects=()) -> dict:
    """The thesis 002 protocol; `subjects` (those prepared) outside it are listed as unassigned:
    they train in every fold and are never validated on."""
    listed = set(THESIS002_TEST).union(*THESIS002_FOLDS)
    return {"protocol": "thesis002", "source": "thesis 002 §3.2.2, Fig. 3.6",
            "test": list(THESIS002_TEST), "folds": [list(f) for f in THESIS002_FOLDS],
            "unassigned": sorted(set(subjects) - listed)}


def kfold(videos: list[tuple[str, int]], k: int = 5, seed: int = 0, test=()) -> dict:
    """Subject-independent, class-stratified k folds over `videos` = [(subject, label), ...].

    Subjects in `test` are left out of the folds (they stay the test set)."""
    import numpy as np
    from sklearn.model_selection import StratifiedGroupKFold

    test = set(test)
    pool = [(s, y) for s, y in videos if s not in test]
    subjects = sorted({s for s, _ in pool})
    if k < 2 or len(subjects) < k:
        raise ValueError(f"k-fold needs 2 <= k <= the number of training subjects ({len(subjects)}), got k={k}")
    groups = np.array([s for s, _ in pool])
    labels = np.array([y for _, y in pool])
    splitter = StratifiedGroupKFold(n_splits=k, shuffle=True, random_state=seed)
    folds = [sorted({str(s) for s in groups[val]}) for _, val in splitter.split(np.zeros(len(pool)), labels, groups)]
    return {"protocol": "kfold", "source": f"StratifiedGroupKFold(n_splits={k}, shuffle=True, random_state={seed})",
            "k": k, "seed": seed, "test": sorted(test), "folds": folds, "unassigned": []}


def kfold_file(data, k: int = 5, seed: int = 0, split: str = "train", out=None) -> tuple[str, dict]:
    """Write the k-fold split file of the prepared dataset ``data`` (default
    ``data/splits-k<K>-seed<SEED>.json``) over the subjects of ``split``; the manifest's test
    subjects stay the test set. Returns (path, split file)."""
    from fer_keras.data import manifest

    info = manifest.read(data)
    videos = [(v["subject"], v["label"]) for v in info["videos"].values()
              if v.get("status") == "ok" and v.get("subject") and v["split"] == split]
    if not videos:
        raise ValueError(f"{data}: no prepared video of split {split!r} records a subject; k-fold needs a "
                         "dataset whose manifest records subjects")
    test = sorted({v["subject"] for v in info["videos"].values() if v.get("subject") and v["split"] == "test"})
    folds = kfold(videos, k, seed, test=test)
    out = str(out or os.path.join(data, f"splits-k{k}-seed{seed}.json"))
    write(out, folds)
    return out, folds


def check(splits: dict, path="splits") -> dict:
    """Refuse a split file where a subject sits in two folds, or in a fold and the test set."""
    seen = {s: "test" for s in splits.get("test", [])}
    for i, fold in enumerate(splits.get("folds", [])):
        for s in fold:
            if s in seen:
                raise ValueError(f"{path}: subject {s} is in fold {i} and in {seen[s]}")
            seen[s] = f"fold {i}"
    return splits


def write(path, splits: dict) -> None:
    check(splits, path)
    tmp = f"{path}.tmp"
    with open(tmp, "w") as f:
        json.dump(splits, f, indent=1)
    os.replace(tmp, path)


def read(path) -> dict:
    if not storage.isfile(path):
        raise FileNotFoundError(f"{path}: no split file (fer-keras prepare bu4dfe writes one; "
                                "fer-keras folds makes a k-fold one)")
    try:
        splits = json.loads(storage.read_text(path))
    except json.JSONDecodeError as err:
        raise ValueError(f"{path}: not valid JSON ({err})") from None
    def subjects(value):
        return isinstance(value, list) and all(isinstance(s, str) for s in value)

    if not (isinstance(splits, dict) and isinstance(splits.get("folds"), list)
            and all(subjects(f) for f in splits["folds"]) and subjects(splits.get("test", []))):
        raise ValueError(f"{path}: a split file is a mapping with 'folds', a list of subject-id lists "
                         "(and 'test', a list of subject ids)")
    return check(splits, path)


def fold_keys(manifest: dict, splits: dict, fold: int, part: str, split: str = "train",
              augmentations=()) -> list[str]:
    """Keys of the usable records of `part` ("train" or "val") of `fold`.

    Training: the videos of `split` whose subject is not in the fold, plus their augmented copies
    made by one of `augmentations` ("all" for every method). Validation: the fold's own videos of
    `split`, never augmented.
    """
    folds = splits["folds"]
    if not 0 <= fold < len(folds):
        raise ValueError(f"fold {fold} does not exist: the split file has folds 0-{len(folds) - 1}")
    if part not in ("train", "val"):
        raise ValueError(f"part must be 'train' or 'val', got {part!r}")
    held_out = set(folds[fold])
    keys = []
    for key, v in manifest["videos"].items():
        if v.get("status") != "ok" or v.get("subject") is None:
            continue
        in_fold = v["subject"] in held_out
        if part == "val":
            if v["split"] == split and in_fold:
                keys.append(key)
        elif not in_fold and (v["split"] == split or (
                v["split"] == AUGMENTED_SPLIT and (augmentations == "all" or v.get("augmentation") in augmentations))):
            keys.append(key)
    return keys
