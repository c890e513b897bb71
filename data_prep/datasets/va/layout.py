"""The valence/arousal layouts users hold (issue 27 §1): discovery, labels and preparation.

- affwild2: `videos/**/<video>.mp4|avi`, `Annotations/VA_Estimation_Challenge/{Train,Validation}_Set/
  <video>[_left|_right].txt` (ABAW's folders; `VA_Set` is also read) -> splits train / val, with
  `EXPR_Classification_Challenge` (or `EXPR_Set`) files of the same names as per-frame categories.
- affwild: `videos/<split>/<video>.*`, `annotations/<split>/{valence,arousal}/<video>.txt`.
- timed: `videos/<video>.*`, `annotations/{valence,arousal}/<video>.txt` of `time value` lines.
- frames: `<video>/<frame images>` + `labels.csv` (`path,valence,arousal`, thesis 001).
- affectnet: `Manually_Annotated_Images/...` + `training.csv` (train) / `validation.csv` (val).
- any layout: `categories/<track>.txt` per-frame categories in thesis 003's order.
Layouts without a test set (timed, frames) draw one by video, so no video is in two splits
unless thesis 001's leaky `sequence_split` is asked for. A video without annotations, or with a
bad annotation file, is logged in failures.jsonl with the file and line; the rest prepares.
"""
from __future__ import annotations

import hashlib
import os

import numpy as np

from data_prep.datasets.va import annotations as ann
from data_prep.datasets.va.options import DRAWN_SPLITS, VaOptions
from data_prep.datasets.va.tracks import Labels, TrackPreparer, VaItem
from data_prep.errors import BadInput
from data_prep.prepare import run_preparation
from data_prep.store import PreparedStore
from fer_keras.classes import AFFWILD_CATEGORIES

VIDEO_EXTENSIONS = (".mp4", ".avi", ".mkv", ".mov", ".webm")
IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp")
AFFWILD2_SETS = {"Train_Set": "train", "Validation_Set": "val"}
AFFWILD2_VA = ("VA_Estimation_Challenge", "VA_Set")
AFFWILD2_EXPR = ("EXPR_Classification_Challenge", "EXPR_Set")
AFFECTNET_CSVS = {"training.csv": "train", "validation.csv": "val"}
# AffectNet's expression codes in thesis 003's order: Contempt (7), None, Uncertain, No-Face -> none.
AFFECTNET_TO_CATEGORY = {0: "Neutral", 1: "Happy", 2: "Sad", 3: "Surprise", 4: "Fear", 5: "Disgust", 6: "Angry"}


class LayoutError(ValueError):
    """SRC is not a dataset in the expected layout."""


def _files(folder, extensions, recursive=False) -> list[str]:
    if not os.path.isdir(folder):
        return []
    if not recursive:
        return sorted(os.path.join(folder, f) for f in os.listdir(folder) if f.lower().endswith(extensions))
    return sorted(os.path.join(root, f) for root, _, names in os.walk(folder) for f in names
                  if f.lower().endswith(extensions))


def _stem(path) -> str:
    return os.path.splitext(os.path.basename(path))[0]


def _child(folder, names) -> str | None:
    """The first of `names` under `folder`, matched without case (releases differ in capitals)."""
    if not os.path.isdir(folder):
        return None
    present = {n.lower(): n for n in os.listdir(folder)}
    return next((os.path.join(folder, present[n.lower()]) for n in names if n.lower() in present), None)


def _skip(src, item: VaItem, err: BadInput) -> dict:
    """The failure entry of an item skipped at discovery; `path` is the file at fault (the CSV whose
    line names a missing image, the video without annotations)."""
    return {"key": item.key, "id": item.track_id(item.persons[0]), "video": item.video, "split": item.split,
            "source": os.path.relpath(item.path, src), "path": str(err.path or item.path), "label": -1,
            "status": "failed", "reason": err.reason, "message": err.message, "frames_total": 0, "frames_kept": 0}


def _draw_splits(items: list[VaItem], opts: VaOptions) -> None:
    """Test and validation videos for a layout that names none: the videos ranked by a seeded hash
    of their names, the first round(n * test_fraction) to test, the next to val. The same in every
    run and order, with the asked shares even for a handful of videos."""
    def rank(item):
        return hashlib.blake2b(f"{opts.seed}/split/{item.video}".encode(), digest_size=8).digest()

    ranked = sorted(items, key=rank)
    tests = round(len(ranked) * opts.test_fraction)
    vals = round(len(ranked) * opts.val_fraction)
    for k, item in enumerate(ranked):
        item.split = "test" if k < tests else "val" if k < tests + vals else "train"


# -- discovery ---------------------------------------------------------------------------------
def _affwild2(src, opts) -> tuple[list[VaItem], list[BadInput | tuple]]:
    annotations = _child(src, ("Annotations", "annotations"))
    va_root = _child(annotations, AFFWILD2_VA) if annotations else None
    if va_root is None:
        raise LayoutError(f"{src} is not an Aff-Wild2 layout: expected Annotations/VA_Estimation_Challenge/"
                          f"{{Train_Set,Validation_Set}}/<video>.txt (or VA_Set) beside videos/")
    expr_root = _child(annotations, AFFWILD2_EXPR)
    videos = {}
    for path in _files(_child(src, ("videos", "Videos")) or src, VIDEO_EXTENSIONS, recursive=True):
        videos.setdefault(_stem(path), path)
    items, skipped, claimed = [], [], set()
    for set_name, split in AFFWILD2_SETS.items():
        folder = _child(va_root, (set_name,))
        if folder is None:
            continue
        stems = sorted({_stem(f).rsplit("_", 1)[0] if _stem(f).endswith(("_left", "_right")) else _stem(f)
                        for f in _files(folder, (".txt",))})
        for video in stems:
            found = ann.find_annotation_files(folder, video)
            item = VaItem(video, split, videos.get(video, os.path.join(folder, video)), "",
                          persons=tuple(p for p, _ in found), read={"va": dict(found)})
            expr = _child(expr_root, (set_name,)) if expr_root else None
            if expr and opts.categories:
                item.read["expr"] = dict(ann.find_annotation_files(expr, video))
            if video not in videos:
                names = ", ".join(os.path.basename(p) for _, p in found)
                skipped.append((item, BadInput(item.path, "missing_video", f"annotation files {names} in {folder} "
                                                                           "name a video that is not under videos/")))
                continue
            claimed.add(video)
            items.append(item)
    for video, path in sorted(videos.items()):
        if video not in claimed:
            skipped.append((VaItem(video, "test", path, ""), BadInput(path, ann.MISSING, "no VA annotation file "
                            "names this video in any set (a test video, or annotations missing)")))
    return items, skipped


def _affwild(src, opts) -> tuple[list[VaItem], list]:
    video_root, ann_root = _child(src, ("videos",)), _child(src, ("annotations",))
    if video_root is None or ann_root is None:
        raise LayoutError(f"{src} is not an Aff-Wild layout: expected videos/<split>/<video>.mp4 and "
                          f"annotations/<split>/{{valence,arousal}}/<video>.txt")
    items, skipped = [], []
    for split_dir in sorted(os.listdir(video_root)):
        split = {"training": "train", "validation": "val"}.get(split_dir.lower(), split_dir.lower())
        folder = os.path.join(ann_root, split_dir)
        for path in _files(os.path.join(video_root, split_dir), VIDEO_EXTENSIONS):
            item = VaItem(_stem(path), split, path, "", read={"affwild": folder})
            valence = os.path.join(folder, "valence", item.video + ".txt")
            if not os.path.isfile(valence):
                skipped.append((item, BadInput(path, ann.MISSING, f"no {valence}")))
            else:
                items.append(item)
    return items, skipped


def _timed(src, opts) -> tuple[list[VaItem], list]:
    ann_root = _child(src, ("annotations",))
    if ann_root is None:
        raise LayoutError(f"{src} is not a timed layout: expected videos/<video>.* and "
                          f"annotations/{{valence,arousal}}/<video>.txt of `time value` lines")
    items, skipped = [], []
    for path in _files(_child(src, ("videos",)) or src, VIDEO_EXTENSIONS):
        video = _stem(path)
        files = {d: os.path.join(ann_root, d, video + ".txt") for d in ("valence", "arousal")}
        item = VaItem(video, "train", path, "", read={"timed": files})
        missing = [f for f in files.values() if not os.path.isfile(f)]
        if missing:
            skipped.append((item, BadInput(path, ann.MISSING, f"no {missing[0]}")))
        else:
            items.append(item)
    return items, skipped


def _frames(src, opts) -> tuple[list[VaItem], list]:
    labels = os.path.join(src, "labels.csv")
    if not os.path.isfile(labels):
        raise LayoutError(f"{src} is not a frame-folder layout: expected <video>/<frames> and labels.csv "
                          f"(path,valence,arousal)")
    listed = ann.read_frame_list(labels, root=src)  # a bad line stops here: every frame's label comes from it
    by_path = {p: i for i, p in enumerate(listed.paths)}
    items, skipped = [], []
    for name in sorted(os.listdir(src)):
        folder = os.path.join(src, name)
        frames = _files(folder, IMAGE_EXTENSIONS)
        if not os.path.isdir(folder) or not frames:
            continue
        rows = np.array([by_path.get(os.path.normpath(f), -1) for f in frames])
        va = np.full((len(frames), 2), np.nan, np.float32)
        va[rows >= 0] = np.stack([listed.valence, listed.arousal], 1)[rows[rows >= 0]]
        item = VaItem(name, "train", folder, "", frames=frames, read={"va_values": va})
        if (rows < 0).all():  # a folder labels.csv never names: not worth a face search
            skipped.append((item, BadInput(folder, ann.MISSING, f"no line of {labels} names a frame of this folder")))
        else:
            items.append(item)
    if not items and not skipped:
        raise LayoutError(f"{src}: no folder of frame images beside labels.csv")
    return items, skipped


def _affectnet(src, opts) -> tuple[list[VaItem], list]:
    images = _child(src, ("Manually_Annotated_Images",))
    csvs = {split: os.path.join(src, name) for name, split in AFFECTNET_CSVS.items()
            if os.path.isfile(os.path.join(src, name))}
    if images is None or not csvs:
        raise LayoutError(f"{src} is not an AffectNet layout: expected Manually_Annotated_Images/ and "
                          f"training.csv / validation.csv")
    items, skipped = [], []
    to_class = {code: AFFWILD_CATEGORIES.index(name) for code, name in AFFECTNET_TO_CATEGORY.items()}
    for split, csv_path in csvs.items():
        for row in ann.read_affectnet(csv_path):
            path = os.path.join(images, row.path)
            item = VaItem(_stem(row.path), split, path, "", box=row.box,
                          read={"va_values": np.array([[row.valence, row.arousal]], np.float32),
                                "category_values": np.array([to_class.get(row.expression, -1)], np.int64)})
            if not os.path.isfile(path):
                skipped.append((item, BadInput(csv_path, "missing_image", f"line {row.line}: image {row.path} is not "
                                                                      f"under {images}")))
            else:
                items.append(item)
    return items, skipped


DISCOVER = {"affwild2": _affwild2, "affwild": _affwild, "timed": _timed, "frames": _frames, "affectnet": _affectnet}


def discover(src, opts: VaOptions) -> tuple[list[VaItem], list[dict]]:
    """The items of `src` in `opts.layout`, and skip entries for failures.jsonl."""
    src = os.path.abspath(src)
    if not os.path.isdir(src):
        raise LayoutError(f"{src}: no such directory")
    items, skipped = DISCOVER[opts.layout](src, opts)
    if opts.layout in DRAWN_SPLITS or opts.draw_splits:
        _draw_splits(items + [item for item, _ in skipped], opts)
    categories = os.path.join(src, "categories")
    for item in items + [i for i, _ in skipped]:
        item.source = os.path.relpath(item.path, src)
        if opts.categories and os.path.isdir(categories):
            item.read["categories"] = {p: os.path.join(categories, item.track_id(p) + ".txt") for p in item.persons}
        if opts.sequence_split:
            item.splits = ("train", "test")
    if not items and not skipped:
        raise LayoutError(f"{src}: the {opts.layout} layout holds no videos")
    return items, [_skip(src, item, err) for item, err in skipped]


def has_categories(items: list[VaItem], opts: VaOptions) -> bool:
    """Whether any item has per-frame categories (then every record carries them, -1 where none)."""
    return opts.categories and any(k in item.read for item in items for k in ("expr", "categories", "category_values"))


# -- labels ------------------------------------------------------------------------------------
def _per_line(values: np.ndarray, source: np.ndarray | None):
    """Per-line annotations (line i = source frame i) on the decoded frames: as they are, or with
    --fps each resampled frame's own source line (`source`: its source frame index)."""
    return values if source is None else values[source]


def _va(item: VaItem, person: str, opts: VaOptions, count, times) -> tuple[np.ndarray, dict, bool]:
    """(values (frames or lines, 2), counts, whether they are per source line)."""
    if "va_values" in item.read:
        return item.read["va_values"], {}, False
    if "timed" in item.read:
        va = ann.read_timed_va(item.read["timed"]["valence"], item.read["timed"]["arousal"], times, opts.max_gap)
        return np.stack([va.valence, va.arousal], 1), {}, False
    if "va" in item.read:
        va = ann.read_affwild2_va(item.read["va"][person], count, opts.mismatch)
    else:
        va = ann.read_affwild_va(item.read["affwild"], item.video, count, opts.mismatch)
    return np.stack([va.valence, va.arousal], 1), {"truncated": va.counts.truncated, "padded": va.counts.padded}, True


def _category(item: VaItem, person: str, opts: VaOptions, count, counts: dict) -> tuple[np.ndarray | None, bool]:
    """(per-frame categories or None, whether they are per source line)."""
    path = item.read.get("categories", {}).get(person)
    if path and os.path.isfile(path):
        return ann.read_categories(path, AFFWILD_CATEGORIES, count, opts.mismatch).category, True
    if person in item.read.get("expr", {}):
        read = ann.read_affwild2_expressions(item.read["expr"][person], AFFWILD_CATEGORIES, ann.AFFWILD2_ALIASES,
                                             count, opts.mismatch)
        if read.counts.unmapped:
            counts["categories_unmapped"] = read.counts.unmapped
        return read.category, True
    return item.read.get("category_values"), False


def read_labels(item: VaItem, opts: VaOptions, source_frames: int, times, source=None) -> dict[str, Labels]:
    """Each person's labels on the decoded frames (presentation times `times`, s): a per-line file
    checked against the source's `source_frames` (opts.mismatch), then taken at each frame's
    source frame (`source`, with --fps; else the frames are the source's own), a joystick log by
    the nearest time."""
    out = {}
    for person in item.persons:
        va, counts, per_line = _va(item, person, opts, source_frames, times)
        if per_line:
            va = _per_line(va, source)
        category, per_line = _category(item, person, opts, source_frames, counts)
        if category is not None and per_line:
            category = _per_line(category, source)
        out[person] = Labels(np.asarray(va, np.float32), category, counts)
    return out


def prepare(src, out, opts: VaOptions | None = None, progress: bool = True) -> dict:
    """Prepare a valence/arousal layout at `src` into shards under `out`; returns the manifest."""
    opts = opts or VaOptions()
    items, skipped = discover(src, opts)
    categories = AFFWILD_CATEGORIES if has_categories(items, opts) else None
    labels = {"va": True, "box": True, **({"categories": list(categories)} if categories else {})}
    header = {"dataset": "va", "classes": list(AFFWILD_CATEGORIES), "source": os.path.abspath(src),
              "layout": opts.layout, "options": opts.content(), "audio": {"lld_dim": 0, "functionals_dim": 0},
              "labels": labels}
    store = PreparedStore(out, header, opts.shard_size, verify=opts.verify, shard=opts.shard)
    factory = (TrackPreparer, (opts, read_labels, categories))
    return run_preparation(items, store, factory, opts.jobs, skipped, progress)

