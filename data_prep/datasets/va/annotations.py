"""Valence/arousal and expression annotation files -> per-frame label arrays, read strictly.

Theses 001 and 003 train on in-the-wild videos whose labels come in "several formats" (extract-003
§2.1 step 6): Aff-Wild2's VA and expression files, Aff-Wild's per-dimension files, the joystick
tool's `time value` logs (extract-001 §1.1), thesis 001's `path,valence,arousal` frame list,
AffectNet's CSV and thesis 003's own per-frame category file. Each reader returns arrays with one
entry per video frame: float32 valence/arousal with NaN where a frame is not annotated, int64
categories with -1 there. A label shifted by one frame trains silently on the wrong faces, so
every file is checked in full and anything off (a wrong header, a malformed line, a value outside
[-1, 1], a length that disagrees with the video) raises `BadInput` naming the file and the 1-based
line. Decoding tolerates what real files carry: a UTF-8 or UTF-16 BOM and CRLF or CR line ends.
"""
from __future__ import annotations

import codecs
import csv
import io
import math
import os
import re
from dataclasses import dataclass, field

import numpy as np

from data_prep.errors import BadInput

MISSING = "missing_annotation"
BAD = "bad_annotation"
LENGTH = "annotation_length"  # value lines and video frames disagree
UNSAFE_PATH = "unsafe_annotation_path"

AFFWILD2_VA_HEADER = ("valence", "arousal")
AFFWILD2_VA_UNANNOTATED = -5.0
AFFWILD2_EXPRESSIONS = ("Neutral", "Anger", "Disgust", "Fear", "Happiness", "Sadness", "Surprise", "Other")
# Aff-Wild2 names whose class other orders (theses 003's, classes.py's) spell differently.
AFFWILD2_ALIASES = {"Anger": "Angry", "Happiness": "Happy", "Sadness": "Sad"}
AFFECTNET_HEADER = ("subDirectory_filePath", "face_x", "face_y", "face_width", "face_height",
                    "facial_landmarks", "expression", "valence", "arousal")
AFFECTNET_VA_UNANNOTATED = -2.0
# AffectNet's expression codes: 0-7 the eight expressions, 8 None, 9 Uncertain, 10 No-Face.
AFFECTNET_EXPRESSION_CODES = 11
MISMATCH = ("error", "fit")

# ASCII decimals only: float() also takes "nan", "inf", "1_0" and non-ASCII digits, none of which a tool writes.
_FLOAT = re.compile(r"\s*[+-]?(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?\s*", re.ASCII)
_INT = re.compile(r"\s*[+-]?\d+\s*", re.ASCII)
_TIMED_SEPARATOR = re.compile(r"\s*,\s*|\s+")
_PERSONS = ("", "left", "right")


@dataclass(frozen=True)
class Counts:
    """What a manifest records about one reading; `truncated`/`padded` sum over the files read."""

    frames: int  # entries of the returned arrays (the video's frames when the caller gave them)
    unannotated: int  # frames without a label (sentinel, past max_gap, class the target order lacks, padding)
    truncated: int = 0  # value lines past the video's last frame, dropped (mismatch="fit")
    padded: int = 0  # frames after a file's last line, marked not annotated (mismatch="fit")
    unmapped: dict[str, int] = field(default_factory=dict)  # source class the target order lacks -> frames


@dataclass(frozen=True)
class VA:
    """Per-frame valence and arousal of one video (one person), NaN where not annotated."""

    valence: np.ndarray  # float32 (frames,)
    arousal: np.ndarray  # float32 (frames,)
    counts: Counts


@dataclass(frozen=True)
class Categories:
    """Per-frame class indices into the caller's class order, -1 where not annotated."""

    category: np.ndarray  # int64 (frames,)
    counts: Counts


@dataclass(frozen=True)
class FrameList:
    """Thesis 001's label file: one frame image per line with its valence and arousal."""

    paths: list[str]  # absolute, normalised, inside the dataset root
    valence: np.ndarray  # float32 (frames,)
    arousal: np.ndarray  # float32 (frames,)
    counts: Counts


@dataclass(frozen=True)
class AffectNetRow:
    """One AffectNet image: valence/arousal NaN where AffectNet writes -2 (VA does not apply)."""

    path: str  # subDirectory_filePath as written (relative, checked not to leave the image folder)
    box: tuple[int, int, int, int]  # face_x, face_y, face_width, face_height in pixels
    expression: int  # AffectNet's code, 0..10
    valence: float
    arousal: float
    line: int  # 1-based line in the CSV, for reports


def _bad(path, line: int, problem: str, reason: str = BAD) -> BadInput:
    return BadInput(path, reason, f"line {line}: {problem}")


def _lines(path) -> list[str]:
    """The file's lines without line ends and trailing blank lines; line i+1 of the file is item i."""
    if not os.path.isfile(path):
        raise BadInput(path, MISSING, "annotation file not found")
    with open(path, "rb") as f:
        raw = f.read()
    if raw.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
        text = raw.decode("utf-16", errors="replace")
    else:  # undecodable bytes become U+FFFD, so their line is reported as malformed
        text = raw.decode("utf-8-sig", errors="replace")
    lines = text.replace("\r\n", "\n").replace("\r", "\n").split("\n")
    while lines and not lines[-1].strip():
        lines.pop()
    return lines


def _check_blank(path, lines: list[str], first: int) -> None:
    """A blank line inside the values would shift every later frame by one."""
    for i, line in enumerate(lines):
        if not line.strip():
            raise _bad(path, first + i, "empty line; every frame needs its own line")


def _first_mismatch(tokens: list[str], pattern: re.Pattern) -> int | None:
    """Index of the first token that is not a number of `pattern`'s kind, or None."""
    if all(map(pattern.fullmatch, tokens)):
        return None
    return next(i for i, token in enumerate(tokens) if not pattern.fullmatch(token))


def _table(path, rows: list[list[str]], first: int, names: tuple[str, ...], pattern=_FLOAT) -> np.ndarray:
    """(lines, len(names)) float64 of split value lines; wrong field counts and non-numbers raise."""
    width = len(names)
    widths = np.fromiter(map(len, rows), np.int64, len(rows))
    wrong = np.flatnonzero(widths != width)
    if wrong.size:
        i = int(wrong[0])
        raise _bad(path, first + i, f"{widths[i]} fields, expected {width} ({','.join(names)})")
    tokens = [token for row in rows for token in row]
    bad = _first_mismatch(tokens, pattern)
    if bad is not None:
        kind = "an integer" if pattern is _INT else "a number"
        raise _bad(path, first + bad // width, f"{names[bad % width]} {tokens[bad].strip()[:40]!r} is not {kind}")
    table = np.array(tokens, dtype=np.float64).reshape(len(rows), width)
    huge = np.flatnonzero(~np.isfinite(table).all(axis=1))  # "1e999" reads as inf
    if huge.size:
        i = int(huge[0])
        raise _bad(path, first + i, f"{','.join(row.strip() for row in rows[i])[:80]!r} is not finite")
    return table


def _split(lines: list[str], separator: str = ",") -> list[list[str]]:
    return [line.split(separator) for line in lines]


def _check_range(path, table: np.ndarray, first: int, names: tuple[str, ...], sentinel: float | None = None):
    """Every value in [-1, 1] or exactly the format's not-annotated sentinel."""
    wrong = (table < -1.0) | (table > 1.0)
    if sentinel is not None:
        wrong &= table != sentinel
    if wrong.any():
        row, col = np.unravel_index(int(np.argmax(wrong)), wrong.shape)
        allowed = "[-1, 1]" + (f" or {sentinel:g} (not annotated)" if sentinel is not None else "")
        raise _bad(path, first + int(row), f"{names[col]} {table[row, col]:g} is outside {allowed}")


def _fit(path, values: np.ndarray, first: int, frames: int | None, mismatch: str, fill) -> tuple[np.ndarray, int, int]:
    """(values with one entry per video frame, lines dropped, frames padded).

    Strict by default: a file longer or shorter than the video means the annotation belongs to
    another cut or frame rate. mismatch="fit" drops lines past the last frame and marks frames
    after the file's end not annotated, and the counts record both, for sources known to differ by
    a few frames at the end (decoders disagree on a video's last frames).
    """
    if mismatch not in MISMATCH:
        raise ValueError(f"mismatch must be one of {MISMATCH}, got {mismatch!r}")
    n = len(values)
    if frames is None or n == frames:
        return values, 0, 0
    if frames < 0:
        raise ValueError(f"frames must be >= 0, got {frames}")
    if mismatch == "error":
        if n > frames:
            raise _bad(path, first + frames, f"value line past the video's last frame: the file has {n} "
                                             f"value lines, the video {frames} frames", LENGTH)
        raise _bad(path, first + n, f"the file ends before this line with {n} value lines, the video has "
                                    f"{frames} frames", LENGTH)
    if n > frames:
        return values[:frames], n - frames, 0
    pad = np.full((frames - n,) + values.shape[1:], fill, values.dtype)
    return np.concatenate([values, pad]), 0, frames - n


def _header(path, line: str, expected: tuple[str, ...]) -> None:
    names = tuple(name.strip().lower() for name in line.split(","))
    if names != expected:
        raise _bad(path, 1, f"header {line.strip()[:80]!r}, expected {','.join(expected)!r}")


def _need_values(path, lines: list[str], first: int) -> None:
    if not lines:
        raise _bad(path, 1, "empty file")
    if len(lines) < first:
        raise _bad(path, first, "no value lines after the header")


def _va(valence: np.ndarray, arousal: np.ndarray, truncated: int = 0, padded: int = 0) -> VA:
    valence, arousal = valence.astype(np.float32), arousal.astype(np.float32)
    missing = int(np.count_nonzero(np.isnan(valence) | np.isnan(arousal)))
    return VA(valence, arousal, Counts(len(valence), missing, truncated, padded))


def find_annotation_files(folder, video: str, extension: str = ".txt") -> list[tuple[str, str]]:
    """[(person, path)] of a video's Aff-Wild2 annotation files: person '' for `<video>.txt`, and
    'left'/'right' for `<video>_left.txt`/`<video>_right.txt`, the files of a video with two
    annotated people. Empty when there are none; both kinds at once is ambiguous and raises."""
    if not os.path.isdir(folder):
        return []
    stems = {f"{video}_{person}" if person else video: person for person in _PERSONS}
    found = sorted((stems[stem], os.path.join(folder, name)) for name in os.listdir(folder)
                   for stem, ext in [os.path.splitext(name)] if stem in stems and ext.lower() == extension.lower())
    persons = [person for person, _ in found]
    if len(set(persons)) != len(persons):
        raise BadInput(folder, BAD, f"several files for one person of video {video!r}: "
                                    f"{', '.join(os.path.basename(p) for _, p in found)}")
    if "" in persons and len(persons) > 1:
        raise BadInput(folder, BAD, f"video {video!r} has both a single-person file and left/right files: "
                                    f"{', '.join(os.path.basename(p) for _, p in found)}")
    return found


def read_affwild2_va(path, frames: int | None = None, mismatch: str = "error") -> VA:
    """An Aff-Wild2 VA file: header `valence,arousal`, one `v,a` line per frame, -5 where not annotated."""
    lines = _lines(path)
    if lines:
        _header(path, lines[0], AFFWILD2_VA_HEADER)
    _need_values(path, lines, 2)
    _check_blank(path, lines[1:], 2)
    table = _table(path, _split(lines[1:]), 2, AFFWILD2_VA_HEADER)
    _check_range(path, table, 2, AFFWILD2_VA_HEADER, AFFWILD2_VA_UNANNOTATED)
    table = np.where(table == AFFWILD2_VA_UNANNOTATED, np.nan, table)
    table, truncated, padded = _fit(path, table, 2, frames, mismatch, np.nan)
    return _va(table[:, 0], table[:, 1], truncated, padded)


def map_classes(source: tuple[str, ...] | list[str], target: tuple[str, ...],
                aliases: dict[str, str] | None = None) -> np.ndarray:
    """int64 index into `target` of each `source` class name, -1 where the target order lacks it.

    Names match case-insensitively, first as they are, then through `aliases` (source name ->
    target name; Aff-Wild2's by default), so 'Happiness' finds 'Happy' but an order that itself
    says 'Happiness' keeps its own spelling.
    """
    aliases = AFFWILD2_ALIASES if aliases is None else aliases
    index = {name.casefold(): i for i, name in enumerate(target)}
    folded_aliases = {name.casefold(): alias.casefold() for name, alias in aliases.items()}
    out = []
    for name in source:
        key = name.casefold()
        out.append(index.get(key, index.get(folded_aliases.get(key, ""), -1)))
    return np.array(out, dtype=np.int64)


def read_affwild2_expressions(path, target: tuple[str, ...], aliases: dict[str, str] | None = None,
                              frames: int | None = None, mismatch: str = "error") -> Categories:
    """An Aff-Wild2 expression file mapped into `target` (e.g. thesis 003's order) by class name.

    The header names the classes the file's integers index (ABAW's 7 or 8, Other included); -1
    is not annotated. A class `target` lacks (Other) becomes not annotated and is counted per name
    in `counts.unmapped`.
    """
    lines = _lines(path)
    if not lines:
        raise _bad(path, 1, "empty file")
    names = [name.strip() for name in lines[0].split(",")]
    if any(not name or _FLOAT.fullmatch(name) for name in names):
        raise _bad(path, 1, f"header {lines[0].strip()[:80]!r} is not a list of class names such as "
                            f"{','.join(AFFWILD2_EXPRESSIONS)!r}")
    folded = [name.casefold() for name in names]
    if len(set(folded)) != len(folded):
        raise _bad(path, 1, f"header {lines[0].strip()[:80]!r} names a class twice")
    lookup = map_classes(names, target, aliases)
    mapped = lookup[lookup >= 0]
    if not mapped.size:
        raise _bad(path, 1, f"no class of the header {lines[0].strip()[:80]!r} is in the target order "
                            f"{', '.join(target)}")
    if len(set(mapped.tolist())) != mapped.size:
        raise _bad(path, 1, f"header {lines[0].strip()[:80]!r} names two classes that are one class of "
                            f"{', '.join(target)}")
    _need_values(path, lines, 2)
    _check_blank(path, lines[1:], 2)
    values = _table(path, _split(lines[1:]), 2, ("expression",), _INT)[:, 0].astype(np.int64)
    wrong = np.flatnonzero((values < -1) | (values >= len(names)))
    if wrong.size:
        i = int(wrong[0])
        raise _bad(path, 2 + i, f"expression {values[i]} is not -1 (not annotated) or a class 0..{len(names) - 1}")
    values, truncated, padded = _fit(path, values, 2, frames, mismatch, -1)
    counted = np.bincount(values + 1, minlength=len(names) + 1)[1:]  # frames per header class
    unmapped = {name: int(counted[i]) for i, name in enumerate(names) if lookup[i] < 0}
    category = np.append(lookup, -1)[values]  # -1 indexes the appended "not annotated"
    return Categories(category, Counts(len(category), int(np.count_nonzero(category < 0)), truncated, padded,
                                       unmapped))


def _single_values(path, name: str, frames: int | None, mismatch: str) -> tuple[np.ndarray, int, int]:
    """One value in [-1, 1] per line, no header (Aff-Wild's per-dimension files)."""
    lines = _lines(path)
    _need_values(path, lines, 1)
    _check_blank(path, lines, 1)
    table = _table(path, [[line] for line in lines], 1, (name,))
    _check_range(path, table, 1, (name,))
    return _fit(path, table[:, 0], 1, frames, mismatch, np.nan)


def read_affwild_va(folder, video: str, frames: int | None = None, mismatch: str = "error") -> VA:
    """Aff-Wild (first version): `valence/<video>.txt` and `arousal/<video>.txt` under `folder`.

    Without `frames` the valence file's length is the video's, so an arousal file of another
    length is reported (or fitted) against it.
    """
    valence_path = os.path.join(folder, "valence", f"{video}.txt")
    valence, v_dropped, v_padded = _single_values(valence_path, "valence", frames, mismatch)
    frames = len(valence) if frames is None else frames
    arousal, a_dropped, a_padded = _single_values(os.path.join(folder, "arousal", f"{video}.txt"), "arousal",
                                                  frames, mismatch)
    return _va(valence, arousal, v_dropped + a_dropped, v_padded + a_padded)


def nearest(times: np.ndarray, frame_times: np.ndarray, max_gap: float) -> np.ndarray:
    """int64 index of the annotation nearest each frame time, -1 where it is more than `max_gap` s away.

    Thesis 003's "binary search based nearest neighbour": `times` sorted ascending; a frame halfway
    between two annotations, or at a time several annotations share, takes the earlier line.
    """
    times = np.asarray(times, dtype=np.float64)
    frame_times = np.asarray(frame_times, dtype=np.float64)
    if not times.size:
        return np.full(frame_times.shape, -1, np.int64)
    after = np.searchsorted(times, frame_times, side="left")  # first annotation at or after the frame
    before = np.clip(after - 1, 0, times.size - 1)
    after = np.clip(after, 0, times.size - 1)
    earlier = np.abs(frame_times - times[before]) <= np.abs(times[after] - frame_times)
    index = np.searchsorted(times, times[np.where(earlier, before, after)], side="left")  # first of equal times
    index[np.abs(times[index] - frame_times) > max_gap] = -1
    return index.astype(np.int64)


def read_timed(path, frame_times, max_gap: float, name: str = "value") -> tuple[np.ndarray, Counts]:
    """(float32 per frame, counts) of a joystick log: `time value` lines (seconds; whitespace or comma
    between), uneven in time, mapped to the frames' presentation times by nearest timestamp.

    Thesis 001's tool writes "the time frame and the value" per dimension; the frames come from the
    decoded video, so a variable frame rate maps correctly. Times must not decrease.
    """
    if not max_gap >= 0:
        raise ValueError(f"max_gap must be >= 0 seconds, got {max_gap!r}")
    frame_times = np.asarray(frame_times, dtype=np.float64)
    if frame_times.ndim != 1 or not np.isfinite(frame_times).all():
        raise ValueError("frame_times must be a 1-D array of finite seconds")
    lines = _lines(path)
    _need_values(path, lines, 1)
    _check_blank(path, lines, 1)
    names = ("time", name)
    table = _table(path, [_TIMED_SEPARATOR.split(line.strip()) for line in lines], 1, names)
    _check_range(path, table[:, 1:], 1, names[1:])
    back = np.flatnonzero(np.diff(table[:, 0]) < 0)
    if back.size:
        i = int(back[0]) + 1
        raise _bad(path, 1 + i, f"time {table[i, 0]:g} s comes before the previous line's {table[i - 1, 0]:g} s; "
                                "annotation times must not decrease")
    index = nearest(table[:, 0], frame_times, max_gap)
    values = np.where(index >= 0, table[index, 1], np.nan).astype(np.float32)
    return values, Counts(len(values), int(np.count_nonzero(index < 0)))


def read_timed_va(valence_path, arousal_path, frame_times, max_gap: float) -> VA:
    """Valence and arousal from one joystick log each (the tool annotates them separately)."""
    valence, _ = read_timed(valence_path, frame_times, max_gap, "valence")
    arousal, _ = read_timed(arousal_path, frame_times, max_gap, "arousal")
    return _va(valence, arousal)


def _within(root: str, target: str) -> bool:
    """Whether the normalised absolute `target` lies under `root`. Lexical: the paths come from the
    file, while symbolic links inside the root are the user's own and trusted."""
    return target.startswith(os.path.join(root, ""))


def read_frame_list(path, root=None, frames: int | None = None) -> FrameList:
    """Thesis 001's label file: `path,valence,arousal` per frame image, paths relative to the file's
    folder or absolute, all inside `root` (default: the file's folder).

    Paths come from a file, so one that leaves the dataset root is refused; a path may contain
    commas (the last two fields are the values). Every frame is annotated: the mean of four
    annotators. `frames`, when given, must equal the number of lines.
    """
    base = os.path.dirname(os.path.abspath(path))
    root = base if root is None else os.path.abspath(root)
    lines = _lines(path)
    _need_values(path, lines, 1)
    _check_blank(path, lines, 1)
    names = ("valence", "arousal")
    rows = [line.rsplit(",", 2) for line in lines]
    short = next((i for i, row in enumerate(rows) if len(row) != 3), None)
    if short is not None:
        raise _bad(path, 1 + short, f"{len(rows[short])} fields, expected 3 (path,valence,arousal)")
    table = _table(path, [row[1:] for row in rows], 1, names)
    _check_range(path, table, 1, names)
    paths, seen = [], {}
    for i, (entry, _, _) in enumerate(rows):
        entry = entry.strip()
        if not entry:
            raise _bad(path, 1 + i, "empty frame path")
        target = os.path.normpath(os.path.join(base, entry))
        if not _within(root, target):
            raise _bad(path, 1 + i, f"frame path {entry[:80]!r} leaves the dataset root {root}", UNSAFE_PATH)
        if target in seen:
            raise _bad(path, 1 + i, f"frame {entry[:80]!r} is listed twice (first on line {seen[target]})")
        seen[target] = 1 + i
        paths.append(target)
    _fit(path, table, 1, frames, "error", np.nan)
    valence, arousal = table[:, 0].astype(np.float32), table[:, 1].astype(np.float32)
    return FrameList(paths, valence, arousal, Counts(len(paths), 0))


def read_affectnet(path) -> list[AffectNetRow]:
    """AffectNet's training/validation CSV: one row per image with its face box, expression code and
    valence/arousal (-2 where VA does not apply, read as NaN). Image paths must stay relative and
    inside the image folder (they come from a file)."""
    lines = _lines(path)
    if not lines:
        raise _bad(path, 1, "empty file")
    _header(path, lines[0], tuple(name.lower() for name in AFFECTNET_HEADER))
    _need_values(path, lines, 2)
    rows = []
    names = AFFECTNET_HEADER
    reader = csv.reader(io.StringIO("\n".join(lines[1:])))
    for fields in reader:
        line = reader.line_num + 1  # the header is line 1; line_num counts a quoted newline too
        if len(fields) != len(names):
            raise _bad(path, line, f"{len(fields)} fields, expected {len(names)} ({','.join(names)})")
        ints = fields[1:5] + [fields[6]]
        bad = _first_mismatch(ints, _INT)
        if bad is not None:
            column = names[1:5][bad] if bad < 4 else "expression"
            raise _bad(path, line, f"{column} {ints[bad].strip()[:40]!r} is not an integer")
        x, y, width, height, expression = (int(value) for value in ints)
        if x < 0 or y < 0 or width <= 0 or height <= 0:
            raise _bad(path, line, f"face box {x},{y},{width},{height} is not a box inside the image")
        if not 0 <= expression < AFFECTNET_EXPRESSION_CODES:
            raise _bad(path, line, f"expression {expression} is not an AffectNet code "
                                   f"0..{AFFECTNET_EXPRESSION_CODES - 1}")
        va = []
        for column, text in zip(names[7:], fields[7:]):
            value = float(text) if _FLOAT.fullmatch(text) else math.nan
            if value != AFFECTNET_VA_UNANNOTATED and not -1.0 <= value <= 1.0:  # NaN fails both
                raise _bad(path, line, f"{column} {text.strip()[:40]!r} is not a number in [-1, 1] or "
                                       f"{AFFECTNET_VA_UNANNOTATED:g} (VA does not apply)")
            va.append(math.nan if value == AFFECTNET_VA_UNANNOTATED else value)
        entry = fields[0].strip()
        parts = os.path.normpath(entry).split(os.sep)
        if not entry or os.path.isabs(entry) or parts[0] in (os.curdir, os.pardir):
            raise _bad(path, line, f"image path {entry[:80]!r} is not a path inside the image folder", UNSAFE_PATH)
        rows.append(AffectNetRow(entry, (x, y, width, height), expression, va[0], va[1], line))
    return rows


def read_categories(path, classes: tuple[str, ...], frames: int | None = None, mismatch: str = "error") -> Categories:
    """Thesis 003's per-frame category file: one integer per line indexing `classes` (its order:
    Neutral, Happy, Sad, Angry, Fear, Surprise, Disgust), -1 where the frame has no category."""
    lines = _lines(path)
    _need_values(path, lines, 1)
    _check_blank(path, lines, 1)
    values = _table(path, [[line] for line in lines], 1, ("category",), _INT)[:, 0].astype(np.int64)
    wrong = np.flatnonzero((values < -1) | (values >= len(classes)))
    if wrong.size:
        i = int(wrong[0])
        raise _bad(path, 1 + i, f"category {values[i]} is not -1 (not annotated) or a class 0..{len(classes) - 1} "
                                f"({', '.join(classes)})")
    values, truncated, padded = _fit(path, values, 1, frames, mismatch, -1)
    return Categories(values, Counts(len(values), int(np.count_nonzero(values < 0)), truncated, padded))


def merge(valence, arousal, category=None) -> tuple[np.ndarray, dict[str, int]]:
    """(mask, counts): the frames a model can train on, with valence and arousal both present and,
    when `category` is given, a category too (thesis 003 keeps only frames with all three, §1.4)."""
    valence, arousal = np.asarray(valence), np.asarray(arousal)
    if valence.shape != arousal.shape or (category is not None and np.shape(category) != valence.shape):
        raise ValueError(f"per-frame arrays differ in shape: valence {valence.shape}, arousal {arousal.shape}"
                         + ("" if category is None else f", category {np.shape(category)}"))
    mask = ~np.isnan(valence) & ~np.isnan(arousal)
    if category is not None:
        mask &= np.asarray(category) >= 0
    annotated = int(np.count_nonzero(mask))
    return mask, {"frames": int(mask.size), "annotated": annotated, "unannotated": int(mask.size) - annotated}
