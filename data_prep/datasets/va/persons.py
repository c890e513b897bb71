"""Which detected face is which annotated person, frame by frame (issue 27 §2).

Aff-Wild2 labels each person of a video separately: `<video>.txt` for a video with one annotated
person, `<video>_left.txt` and `<video>_right.txt` for one with two (`find_annotation_files`).
Thesis 003 (extract-003 §2.1 step 4) sorted faces "based on the coordinates of the faces in the
frame" and then corrected them by hand. Nobody reviews these crops, and a face given to the wrong
person trains on that other person's valence and arousal without any error. So the rules here are
conservative. A track follows the face nearest to its last box. A face that could belong to
either track, or to no track, is dropped and counted; it is never guessed:

- One person (''): the track starts at the most confident face. After that it follows the face
  nearest to its last box, so a bystander who is detected more confidently does not take over.
- Two persons ('left', 'right'): when both tracks are lost, including at the start, the two most
  confident faces are named by position: the leftmost centre is 'left'. A face alone, or two
  faces whose centres are at most `ambiguity_margin` sides apart in x, cannot be named that way
  and is dropped as ambiguous. After that the faces and
  the tracks are matched one-to-one at the least total cost. If another matching costs at most
  `ambiguity_margin` more, every track on which the two matchings differ gets no face in that
  frame. This is how the tracks are kept from swapping. When one track is lost while the other
  still follows its person, the lost one restarts at the most confident face on its own side of
  the other track that the other track could not have reached.
- A face more than `max_jump` box sides per frame away from a track's last box (so `max_jump * k`
  sides k frames after the track's last face) is out of that track's reach. A track with no face
  for more than `max_lost` frames in a row is lost, and it restarts as described above.

The cost of a face for a track is the distance between their centres, in sides (sqrt(w * h)) of
the track's last box, plus |log| of the ratio of their sides. So a face twice the size costs as
much as a move of 0.69 sides, and a large false box centred on a face is not taken as that face.
Two faces that cross are kept apart when one is farther from the camera, because it is smaller
and higher in the frame. In the tests, half a side of vertical offset is enough. Faces that pass
through the same spot cannot be told apart by position. The frames in which they overlap are
dropped as ambiguous. After that, the tracks' last boxes are the ones from before the crossing,
so the faces can come out swapped. Telling them apart would need a motion or appearance model,
and there is none here.

Per frame, only each track's three nearest faces within reach are matched. That is enough to
find both the best matching and the closest other one, so the cost is linear in the number of
detections, with small constants. Matchings of equal cost are always ambiguous (the margin
comparison is inclusive). Equal confidences go to the earlier detection. So the result is
deterministic. Pure Python: no TensorFlow and no decoding.
"""
from __future__ import annotations

import dataclasses
import heapq
import itertools
import math
import numbers
from dataclasses import dataclass
from typing import Iterable, Sequence

import numpy as np

SINGLE = ("",)
PAIR = ("left", "right")

# Defaults, in box sides and in frames. They assume that a face box moves less than half its
# side per frame at Aff-Wild2's 25-30 fps, even in a quick head turn. A cut to another shot moves
# it more, and then the track is lost.
DEFAULT_MAX_JUMP = 0.5  # sides per frame since the track's last face
DEFAULT_AMBIGUITY_MARGIN = 0.5  # sides: matchings (or start positions) at most this far apart are not guessed
DEFAULT_MAX_LOST = 30  # frames without a face before a track restarts (about a second)

_NEAREST = 3  # candidates kept per track and frame; with two tracks three decide any alternative

Detection = tuple[float, float, float, float, float]  # x, y, w, h in source pixels, confidence


@dataclass(frozen=True)
class TrackCounts:
    """The counts for one person. A manifest records them, so that lost frames are visible."""

    frames: int  # frames of the video
    assigned: int  # frames given a face
    dropped_ambiguous: int  # of the no_face frames: those where a face was withheld as ambiguous
    no_face: int  # frames without a face (frames - assigned)
    extra_faces: int  # detections of the video that no tracked person took and that were not ambiguous
    # (bystanders, false detections, faces out of reach); the same value on every track of a video


@dataclass(frozen=True)
class Track:
    """One annotated person's face in every frame: the chosen detection, or None."""

    person: str  # '', 'left' or 'right', as in the annotation file names
    boxes: list[Detection | None]  # one entry per frame, (x, y, w, h, confidence) as floats
    index: np.ndarray  # int64 (frames,): the chosen detection's position in its frame's list, -1 if none
    counts: TrackCounts

    def record(self) -> dict:
        """What the manifest keeps: the person and its counts, without the per-frame boxes."""
        return {"person": self.person, **dataclasses.asdict(self.counts)}


class _Face:
    __slots__ = ("det", "cx", "cy", "side", "log_side")

    def __init__(self, det: Detection):
        x, y, w, h, _ = det
        self.det = det
        self.cx, self.cy = x + w / 2, y + h / 2
        self.side = math.sqrt(w * h)
        self.log_side = math.log(self.side)


class _State:
    """A track while the frames are walked: its last face and the frame it was seen in."""

    __slots__ = ("last", "seen", "boxes", "index", "ambiguous")

    def __init__(self):
        self.last: _Face | None = None
        self.seen = -1
        self.boxes: list[Detection | None] = []
        self.index: list[int] = []
        self.ambiguous = 0

    def cost(self, face: _Face) -> float:
        last = self.last
        return math.hypot(face.cx - last.cx, face.cy - last.cy) / last.side + abs(face.log_side - last.log_side)


def _check_options(persons, max_jump, ambiguity_margin, max_lost) -> tuple[str, ...]:
    if isinstance(persons, str):
        raise ValueError(f"persons must be a list of persons, such as [''] or ['left', 'right'], got {persons!r}")
    persons = tuple(persons)
    if not (persons == SINGLE or (persons and len(set(persons)) == len(persons) and set(persons) <= set(PAIR))):
        raise ValueError(f"persons must be [''] (one annotated person) or 'left' and/or 'right' (Aff-Wild2's "
                         f"<video>_left/_right files), each once, got {list(persons)!r}")
    for name, value, low in (("max_jump", max_jump, "> 0"), ("ambiguity_margin", ambiguity_margin, ">= 0")):
        if (isinstance(value, bool) or not isinstance(value, numbers.Real) or not math.isfinite(value)
                or (value <= 0 if low == "> 0" else value < 0)):
            raise ValueError(f"{name} must be a finite number of box sides {low}, got {value!r}")
    if isinstance(max_lost, bool) or not isinstance(max_lost, numbers.Integral) or max_lost < 0:
        raise ValueError(f"max_lost must be a whole number of frames >= 0, got {max_lost!r}")
    return persons


def _faces(frame: int, detections) -> list[_Face]:
    faces = []
    for k, det in enumerate(detections):
        try:
            det = tuple(map(float, det))
        except (TypeError, ValueError):
            raise ValueError(f"frame {frame}, detection {k}: expected (x, y, w, h, confidence) numbers, "
                             f"got {det!r}") from None
        if len(det) != 5 or not all(map(math.isfinite, det)) or det[2] <= 0 or det[3] <= 0:
            raise ValueError(f"frame {frame}, detection {k}: expected finite (x, y, w, h, confidence) with "
                             f"w, h > 0, got {det!r}")
        faces.append(_Face(det))
    return faces


def _follow(live: list[_State], faces: list[_Face], frame: int, max_jump: float, margin: float):
    """Match the live tracks to faces one-to-one. Returns (face per track or None, the tracks
    whose match was ambiguous, the faces involved in an ambiguity, the faces within each track's
    reach)."""
    nearest, reached = [], []
    for track in live:
        reach = max_jump * (frame - track.seen)
        within = [(c, k) for k, face in enumerate(faces) if (c := track.cost(face)) <= reach]
        reached.append({k for _, k in within})
        nearest.append(heapq.nsmallest(_NEAREST, within))
    matchings = []  # (matched tracks, total cost, face per track); equal costs end up ambiguous below
    for combo in itertools.product(*([None, *n] for n in nearest)):
        ks = tuple(None if c is None else c[1] for c in combo)
        taken = [k for k in ks if k is not None]
        if len(set(taken)) == len(taken):
            matchings.append((len(taken), sum(c[0] for c in combo if c is not None), ks))
    most = max(m[0] for m in matchings)
    best = min((m for m in matchings if m[0] == most), key=lambda m: m[1])
    ambiguous, involved = set(), set()
    for count, cost, ks in matchings:
        if count == most and ks != best[2] and cost - best[1] <= margin:
            for t, (a, b) in enumerate(zip(best[2], ks)):
                if a != b:
                    ambiguous.add(t)
                    involved.update(k for k in (a, b) if k is not None)
    chosen = [None if t in ambiguous else k for t, k in enumerate(best[2])]
    return chosen, ambiguous, involved, reached


def _most_confident(faces: list[_Face], ks: Iterable[int]) -> int | None:
    return max(ks, key=lambda k: faces[k].det[4], default=None)  # max keeps the first of equal ones


def assign(frames: Iterable[Sequence], persons: Sequence[str], max_jump: float = DEFAULT_MAX_JUMP,
           ambiguity_margin: float = DEFAULT_AMBIGUITY_MARGIN, max_lost: int = DEFAULT_MAX_LOST) -> dict[str, Track]:
    """One Track per annotated person from the detections of each frame.

    `frames` yields one sequence of (x, y, w, h, confidence) detections per frame, in source pixels.
    Every detection of the frame belongs there, not only the most confident one. data_prep.face
    gives boxes as (x1, y1, x2, y2), so the caller converts them. A frame may have no detections. `persons` is [''] for
    a video with one annotated person, or 'left' and/or 'right' for one with two. Both sides are
    always tracked, so that one of them cannot take the other's face even when only one side's
    file exists. The result maps each given person to its Track, in the order given. Bad options
    and malformed detections raise ValueError before or at the frame concerned.
    """
    persons = _check_options(persons, max_jump, ambiguity_margin, max_lost)
    tracks = [_State()] if persons == SINGLE else [_State(), _State()]  # left, right
    extra = n = 0
    for frame, detections in enumerate(frames):
        faces = _faces(frame, detections)
        live = [t for t in tracks if t.last is not None and frame - t.seen - 1 <= max_lost]
        chosen: dict[int, _State] = {}  # face -> track
        blocked: set[int] = set()  # faces withheld as ambiguous
        if live:
            picks, ambiguous, blocked, reached = _follow(live, faces, frame, max_jump, ambiguity_margin)
            chosen = {k: t for t, k in zip(live, picks) if k is not None}
            for t in ambiguous:
                live[t].ambiguous += 1
            if len(tracks) == 2 and len(live) == 1:  # the lost side restarts beside the followed one
                other, lost = live[0], next(t for t in tracks if t is not live[0])
                ref = faces[picks[0]] if picks[0] is not None else other.last
                side = 1 if lost is tracks[1] else -1
                k = _most_confident(faces, (k for k in range(len(faces)) if k not in chosen and k not in blocked
                                            and k not in reached[0] and side * (faces[k].cx - ref.cx) > 0))
                if k is not None:
                    chosen[k] = lost
        elif len(tracks) == 1:
            k = _most_confident(faces, range(len(faces)))
            if k is not None:
                chosen[k] = tracks[0]
        elif faces:  # both sides lost: name the two most confident faces by position
            pair = sorted(sorted(range(len(faces)), key=lambda k: -faces[k].det[4])[:2], key=lambda k: faces[k].cx)
            a, b = pair[0], pair[-1]
            if faces[b].cx - faces[a].cx > ambiguity_margin * (faces[a].side + faces[b].side) / 2:
                chosen = {a: tracks[0], b: tracks[1]}
            else:  # one face, or two one above the other: either could be either person
                blocked = set(pair)
                for t in tracks:
                    t.ambiguous += 1
        given = {id(t): k for k, t in chosen.items()}
        for t in tracks:
            k = given.get(id(t))
            t.index.append(-1 if k is None else k)
            t.boxes.append(None if k is None else faces[k].det)
            if k is not None:
                t.last, t.seen = faces[k], frame
        extra += sum(k not in chosen and k not in blocked for k in range(len(faces)))
        n = frame + 1
    sides = dict(zip(SINGLE if len(tracks) == 1 else PAIR, tracks))
    result = {}
    for person in persons:
        t = sides[person]
        index = np.array(t.index, np.int64)
        assigned = int(np.count_nonzero(index >= 0))
        result[person] = Track(person, t.boxes, index, TrackCounts(n, assigned, t.ambiguous, n - assigned, extra))
    return result
