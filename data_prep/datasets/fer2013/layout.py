"""FER2013 (Kaggle fer2013.csv): 48x48 grayscale faces in one CSV -> single-frame prepared shards.

The CSV (`emotion,pixels,Usage`; 35,887 rows, 290 MB) is streamed row by row, never loaded. Each
image becomes a one-frame record of the common schema, resized with OpenCV to the side the model
needs, so every model and pipeline reads FER2013 like any video dataset. For thesis 002 that is 224
px, replicated from grey to RGB when read: both inferred, not stated (its 7x7x512 VGG feature map
implies 224; extract-002 §1.4, §9.1). Usage picks the split: private test is the test split
(Tables 3.4/3.5), public test the validation split. A malformed row is logged in failures.jsonl
with its line number and skipped.
"""
from __future__ import annotations

import csv
import itertools
import os
import re
from concurrent.futures import ProcessPoolExecutor
from multiprocessing import get_context

import cv2
import numpy as np
from tqdm import tqdm

from fer_keras.classes import FER2013
from fer_keras.data.schema import UNLABELLED, VideoRecord, serialize

from data_prep.errors import BadInput
from data_prep.datasets.fer2013.options import INTERPOLATIONS, UNKNOWN_SPLIT, Fer2013Options
from data_prep.store import PreparedStore, encode_image

HEADER = "emotion,pixels,Usage"
SOURCE_SIDE = 48
# A still image has no frame rate; 1 fps puts its one frame at 0 s like any first frame.
FPS = 1.0


def _open(path):
    """The CSV positioned after its header; a clear error for a missing file or another layout."""
    if not os.path.isfile(path):
        raise FileNotFoundError(f"{path}: no such file (expected FER2013's fer2013.csv)")
    # utf-8-sig drops the BOM of a re-saved file; replaced bytes make their row malformed, not the run
    f = open(path, newline="", encoding="utf-8-sig", errors="replace")
    first = f.readline(200).rstrip("\r\n")
    if first != HEADER:
        f.close()
        raise ValueError(f"{path}: not a FER2013 CSV: its first line is {first[:80]!r}, expected {HEADER!r}")
    return f


def _count_rows(path) -> int:
    """Rows after the header, from a fast binary pass (the progress bar's total)."""
    with open(path, "rb") as f:
        return max(sum(chunk.count(b"\n") for chunk in iter(lambda: f.read(1 << 22), b"")) - 1, 0)


def _rows(f):
    """(file line number, fields) of every row; fields is the csv.Error of a row csv cannot read."""
    reader = csv.reader(f)
    while True:
        line = reader.line_num + 2  # the header is line 1 and was read before
        try:
            fields = next(reader)
        except StopIteration:
            return
        except csv.Error as err:
            fields = err
        yield line, fields


def _parse_row(fields, line: int, path, splits: dict) -> tuple[int, np.ndarray]:
    """(label, 48x48 uint8 image) of one row; BadInput names the line and the problem."""
    def bad(problem):
        return BadInput(path, "malformed_row", f"line {line}: {problem}")

    if isinstance(fields, csv.Error):
        raise bad(f"unreadable CSV row ({fields})")
    if len(fields) != 3:
        raise bad(f"{len(fields)} fields, expected 3 ({HEADER})")
    label_text, pixels, usage = fields
    if usage not in splits:
        raise bad(f"unknown Usage {usage[:40]!r}, expected one of {', '.join(splits)}")
    if not re.fullmatch(r"[0-9]+", label_text.strip()) or int(label_text) >= len(FER2013):
        raise bad(f"label {label_text[:40]!r} is not a FER2013 class 0..{len(FER2013) - 1}")
    tokens = pixels.split()
    if len(tokens) != SOURCE_SIDE ** 2:
        raise bad(f"{len(tokens)} pixels, expected {SOURCE_SIDE ** 2} ({SOURCE_SIDE}x{SOURCE_SIDE})")
    try:
        values = np.array(tokens, np.int64)
    except ValueError:  # report the first token that is not a plain decimal integer
        index, token = next((i, t) for i, t in enumerate(tokens) if not (t.isascii() and t.isdigit()))
        raise bad(f"pixel {index} is {token[:20]!r}, not an integer 0..255") from None
    if values.min() < 0 or values.max() > 255:
        index = int(np.argmax((values < 0) | (values > 255)))
        raise bad(f"pixel {index} is {values[index]}, outside 0..255")
    return int(label_text), values.astype(np.uint8).reshape(SOURCE_SIDE, SOURCE_SIDE)


def _encode(image: np.ndarray, opts: Fer2013Options) -> bytes:
    """The 48x48 grey image resized to `image_size` and encoded with one channel (decoded as RGB)."""
    size = opts.image_size
    resized = cv2.resize(image, (size, size), interpolation=INTERPOLATIONS[opts.interpolation])
    return encode_image(resized, opts.image_format, opts.jpeg_quality)


def _record(video_id: str, label: int, frame: bytes, face_size: int) -> bytes:
    """One image as a single-frame record of the common schema (no audio)."""
    return serialize(VideoRecord(
        video_id=video_id, label=label, fps=FPS, face_size=face_size, frames=[frame],
        frame_index=np.zeros(1, np.int64), frame_time=np.zeros(1), audio_lld=np.zeros((1, 0), np.float32),
        has_audio=False, source_frames=1, dataset="fer2013"))


def _todo(rows, store: PreparedStore, opts: Fer2013Options, path: str, bar):
    """(entry, label, image) of every row not yet prepared; a malformed row is logged as failed."""
    name = os.path.basename(path)
    for line, fields in rows:
        bar.update()
        usage = fields[2] if isinstance(fields, list) and len(fields) == 3 else None
        split = opts.splits.get(usage, UNKNOWN_SPLIT)
        video_id = f"fer2013-{line}"
        entry = {"key": f"{split}/{video_id}", "id": video_id, "split": split, "source": f"{name}:{line}",
                 "frames_total": 1}
        if not store.owns(entry["key"]) or store.is_done(entry["key"]):
            continue
        try:
            label, image = _parse_row(fields, line, path, opts.splits)
        except BadInput as err:
            store.fail({**entry, "label": UNLABELLED, "label_name": None, "status": "failed", "frames_kept": 0,
                        "path": path, "reason": err.reason, "message": err.message}, save=False)
            continue
        entry.update(label=label, label_name=FER2013[label], status="ok", frames_kept=1)
        yield entry, label, image


def _row_record(item, opts: Fer2013Options) -> bytes:
    entry, label, image = item
    return _record(entry["id"], label, _encode(image, opts), opts.image_size)


def _records(todo, opts: Fer2013Options):
    """(entry, record) in row order; with ``jobs`` > 1 the images are resized and encoded in that
    many processes, a block of rows at a time (the CSV is never held whole)."""
    if opts.jobs <= 1:
        yield from ((item[0], _row_record(item, opts)) for item in todo)
        return
    with ProcessPoolExecutor(opts.jobs, mp_context=get_context("spawn")) as pool:
        while block := list(itertools.islice(todo, 64 * opts.jobs)):
            records = pool.map(_row_record, block, itertools.repeat(opts), chunksize=16)
            yield from zip((entry for entry, _, _ in block), records)


def prepare(csv_path, out, opts: Fer2013Options | None = None, progress: bool = True) -> dict:
    """Prepare fer2013.csv into shards under `out`; a rerun skips rows already done. Returns the manifest."""
    opts = opts or Fer2013Options()
    path = os.path.abspath(csv_path)
    with _open(path) as f:
        header = {"dataset": "fer2013", "classes": list(FER2013), "source": path, "options": opts.content(),
                  "audio": {"lld_dim": 0, "functionals_dim": 0}}
        store = PreparedStore(out, header, opts.shard_size, verify=opts.verify, shard=opts.shard)
        bar = tqdm(total=_count_rows(path), desc="fer2013", unit="row", disable=not progress)
        try:
            for entry, record in _records(_todo(_rows(f), store, opts, path, bar), opts):
                store.add(entry, record)
        finally:  # on Ctrl-C or an error too: finished rows are written as complete shards
            bar.close()
            manifest = store.close()
    return manifest
