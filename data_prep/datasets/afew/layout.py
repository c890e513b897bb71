"""AFEW 7.0 (EmotiW audio-video sub-challenge) layout: discovery and preparation.

Train_AFEW/<Emotion>/<id>.avi and Val_AFEW/<Emotion>/<id>.avi are labelled by their folder;
Test_AFEW/<id>.avi is flat and unlabelled. Other folders of the release (e.g. the LBP-TOP
features) hold no videos and are ignored; a video in an unknown emotion folder is logged as a
skip, never guessed.
"""
from __future__ import annotations

import os

from fer_keras.classes import AFEW
from fer_keras.data.schema import UNLABELLED

from data_prep.prepare import SourceVideo, prepare_videos
from data_prep.video_options import PrepareOptions

SPLIT_DIRS = {"train": "Train_AFEW", "val": "Val_AFEW", "test": "Test_AFEW"}
VIDEO_EXTENSIONS = (".avi", ".mp4", ".mkv", ".mov")


class LayoutError(ValueError):
    """SRC is not a dataset in the expected layout."""


def _videos(folder: str) -> list[str]:
    return sorted(f for f in os.listdir(folder) if f.lower().endswith(VIDEO_EXTENSIONS))


def discover(src) -> tuple[list[SourceVideo], list[dict]]:
    """List the videos of an AFEW layout; returns (videos, skipped entries for failures.jsonl)."""
    src = os.path.abspath(src)
    if not os.path.isdir(src):
        raise LayoutError(f"{src}: no such directory")
    found = {split: os.path.join(src, d) for split, d in SPLIT_DIRS.items() if os.path.isdir(os.path.join(src, d))}
    if not found:
        raise LayoutError(
            f"{src} is not an AFEW layout: expected Train_AFEW/<Emotion>/*.avi, Val_AFEW/<Emotion>/*.avi "
            f"and/or Test_AFEW/*.avi; it contains {sorted(os.listdir(src))[:10]}"
        )
    by_name = {c.lower(): k for k, c in enumerate(AFEW)}
    items, skipped = [], []
    for split, folder in found.items():
        if split == "test":
            items += [_item(src, folder, f, split, UNLABELLED) for f in _videos(folder)]
            continue
        for sub in sorted(os.listdir(folder)):
            path = os.path.join(folder, sub)
            if not os.path.isdir(path) or not _videos(path):
                continue
            label = by_name.get(sub.lower())
            for f in _videos(path):
                item = _item(src, path, f, split, UNLABELLED if label is None else label)
                if label is None:
                    skipped.append({"key": item.key, "id": item.video_id, "split": split, "source": item.source, "path": item.path,
                                    "label": UNLABELLED, "status": "failed", "reason": "unknown_class",
                                    "message": f"folder {sub!r} is not an AFEW class {list(AFEW)}",
                                    "frames_total": 0, "frames_kept": 0})
                else:
                    items.append(item)
    if not items:
        raise LayoutError(f"{src}: AFEW split folders {sorted(found.values())} contain no videos")
    return items, skipped


def _item(src, folder, name, split, label) -> SourceVideo:
    path = os.path.join(folder, name)
    return SourceVideo(path=path, split=split, video_id=os.path.splitext(name)[0], label=label,
                       source=os.path.relpath(path, src))


def prepare(src, out, opts: PrepareOptions | None = None, progress: bool = True) -> dict:
    """Prepare an AFEW layout at `src` into shards under `out`; returns the manifest."""
    items, skipped = discover(src)
    return prepare_videos(items, out, "afew", AFEW, opts or PrepareOptions(), source=str(src),
                          skipped=skipped, progress=progress)
