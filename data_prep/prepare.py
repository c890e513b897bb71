"""Dataset-independent video preparation: frames -> aligned faces, audio -> LLDs, -> shards.

A dataset package (e.g. data_prep/datasets/afew/) turns its layout into a list of SourceVideo items and
calls `prepare_videos`; everything else (parallel workers, progress, resume, failures) is here.
"""
from __future__ import annotations

import collections
import hashlib
import itertools
import logging
import os
import tempfile
import traceback
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from multiprocessing import get_context

import numpy as np
from tqdm import tqdm

from fer_keras.data.schema import UNLABELLED, VideoRecord, serialize

from .audio import clip_bounds_ms
from .errors import BadInput
from .face import FaceDetector, align
from .store import PreparedStore, encode_image
from .video_options import PrepareOptions
from .video import VideoStream, extract_audio

log = logging.getLogger(__name__)


@dataclass
class FrameLabels:
    """A video's per-frame annotations as samples: times (s, on the video's timeline) and values.

    They are placed on the kept frames by presentation time, never by index / nominal fps: each
    frame takes the sample nearest to its time, and a frame more than half an annotation period
    from every sample (outside the annotated span) is dropped, never given another moment's label.
    """

    times: np.ndarray  # (samples,) increasing
    va: np.ndarray | None = None  # (samples, 2) valence, arousal
    au: np.ndarray | None = None  # (samples, n_aus); losses.AU_UNKNOWN where not annotated

    def nearest(self, frame_times: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(index of the nearest sample, whether it is within half a period) for each frame time."""
        times = np.asarray(self.times, np.float64)
        right = np.minimum(np.searchsorted(times, frame_times), len(times) - 1)
        left = np.maximum(right - 1, 0)
        idx = np.where(np.abs(times[left] - frame_times) <= np.abs(times[right] - frame_times), left, right)
        half = np.median(np.diff(times)) / 2 if len(times) > 1 else np.inf
        return idx, np.abs(times[idx] - frame_times) <= half + 1e-6


@dataclass
class SourceVideo:
    """One video of a dataset layout; `source` is its path relative to the dataset root."""

    path: str
    split: str
    video_id: str
    label: int = UNLABELLED
    source: str = ""
    labels: FrameLabels | None = None  # per-frame annotations, where the dataset has them

    @property
    def key(self) -> str:
        return f"{self.split}/{self.video_id}"


def guarded(step, item, entry: dict):
    """``step(item, entry)``, or (``entry`` marked failed with the reason, None) when the item is
    bad input or meets a bug: one bad video is logged, it never stops a dataset."""
    try:
        return step(item, entry)
    except BadInput as err:
        entry.update(status="failed", reason=err.reason, message=err.message)
    except Exception as err:  # a bug or an unforeseen file: log it, never stop the dataset
        detail = traceback.format_exception_only(type(err), err)[-1].strip()
        entry.update(status="failed", reason="error", message=f"unexpected error: {detail}")
    return entry, None


class VideoPreparer:
    """Holds the detector and the openSMILE extractors; turns one SourceVideo into a record."""

    def __init__(self, opts: PrepareOptions, dataset: str, classes):
        self.opts, self.dataset, self.classes = opts, dataset, list(classes)
        self.detector = FaceDetector(opts.min_confidence, opts.min_face_size)
        self.audio = opts.audio_features()

    def __call__(self, item: SourceVideo) -> tuple[dict, bytes | None]:
        """Return (manifest entry, serialised record); the record is None when the video failed."""
        entry = {"key": item.key, "id": item.video_id, "split": item.split, "label": item.label,
                 "label_name": self.classes[item.label] if item.label >= 0 else None,
                 "source": item.source or item.path, "path": item.path, "frames_total": 0, "frames_kept": 0, "flags": []}
        return guarded(self._prepare, item, entry)

    def _prepare(self, item: SourceVideo, entry: dict) -> tuple[dict, bytes | None]:
        o = self.opts
        stream = VideoStream(item.path, o.fps)
        faces, kept, dropped = [], [], []
        for start, batch in stream.batches(o.detect_batch):
            for i, (frame, face) in enumerate(zip(batch, self.detector.detect(batch))):
                if face is None:
                    dropped.append(start + i)
                    continue
                faces.append(encode_image(align(frame, face.landmarks, o.face_size, o.margin, o.landmark_weights),
                                          o.image_format, o.jpeg_quality))
                kept.append(start + i)
        total = len(kept) + len(dropped)
        info, all_times, all_durations = stream.info, np.asarray(stream.times), np.asarray(stream.durations)
        entry.update(frames_total=total, frames_kept=len(kept), frames_dropped=len(dropped), dropped_index=dropped,
                     fps=stream.fps, nominal_fps=info.nominal_fps, variable_frame_rate=_variable(stream.durations),
                     duration=round(float(sum(stream.durations)), 6), size=[stream.width, stream.height],
                     source_size=[info.width, info.height], rotation=info.rotation, has_audio=info.has_audio)
        if total == 0:
            raise BadInput(item.path, "corrupt", "the video has no decodable frames")
        if not kept:
            raise BadInput(item.path, "no_face", f"no face found in any of its {total} frames "
                           f"({stream.width}x{stream.height}, min_face_size {o.min_face_size})")
        va = au = None
        if item.labels is not None:
            nearest, labelled = item.labels.nearest(all_times[kept])
            kept, faces = [k for k, ok in zip(kept, labelled) if ok], [f for f, ok in zip(faces, labelled) if ok]
            entry.update(frames_unlabelled=int((~labelled).sum()), frames_kept=len(kept))
            if not kept:
                raise BadInput(item.path, "no_labels", "no kept frame lies inside the annotated time span")
            va, au = (None if v is None else np.asarray(v, np.float32)[nearest[labelled]]
                      for v in (item.labels.va, item.labels.au))
        kept_index = np.asarray(kept, np.int64)
        times = all_times[kept_index]
        lld = np.zeros((len(kept), self.audio.lld_dim), np.float32)
        audio_mask = np.zeros(len(kept), np.int64)
        functionals = np.zeros(self.audio.functionals_dim, np.float32)
        if info.has_audio:
            with tempfile.TemporaryDirectory() as tmp:
                wav = os.path.join(tmp, "audio.wav")
                track = extract_audio(item.path, wav, o.sample_rate, info.audio)
                bounds = clip_bounds_ms(times, all_durations[kept_index], track.start)
                lld, audio_mask, nan_filled = self.audio.lld(wav, bounds)
                functionals = self.audio.functionals(wav)
            uncovered = int(len(kept) - audio_mask.sum())
            entry.update(lld_nan_filled=nan_filled, audio={"source": track.source, "start": track.start,
                                                           "end": track.end, "frames_without_audio": uncovered})
            if uncovered:
                entry["flags"].append({"reason": "partial_audio", "message": (
                    f"{uncovered} of {len(kept)} kept frames have no audio under them (audio {track.start:.2f}-"
                    f"{track.end:.2f} s, frames {times[0]:.2f}-{times[-1]:.2f} s); their LLDs are zeros, audio_mask 0")})
        else:
            entry["flags"].append({"reason": "no_audio",
                                   "message": "no audio track; frames kept, LLDs are zeros"})
        record = VideoRecord(
            video_id=item.video_id, label=item.label, fps=stream.fps, face_size=o.face_size, frames=faces,
            frame_index=kept_index, frame_time=times, audio_lld=lld, audio_mask=audio_mask,
            audio_functionals=functionals, has_audio=info.has_audio, source_frames=total, dataset=self.dataset,
            valence_arousal=va, action_units=au,
        )
        entry["status"] = "ok"
        return entry, serialize(record)


def _variable(durations) -> bool:
    """A variable frame rate: display durations (the last one aside) differ by more than 1%."""
    d = np.asarray(durations[:-1])
    return bool(len(d) > 1 and (d.max() - d.min()) > 0.01 * np.median(d))


_worker = None


def _init_worker(factory, threads: int) -> None:
    import tensorflow as tf

    tf.config.threading.set_intra_op_parallelism_threads(threads)
    tf.config.threading.set_inter_op_parallelism_threads(threads)
    global _worker
    _worker = factory[0](*factory[1])


def _run_worker(item):
    return _worker(item)


def prepare_videos(items: list[SourceVideo], out, dataset: str, classes, opts: PrepareOptions,
                   source: str = "", skipped: list[dict] | None = None, progress: bool = True,
                   frame_labels: dict | None = None) -> dict:
    """Prepare every item into `out`; finished items of an earlier run are skipped. Returns the manifest.

    `frame_labels` ({"va": bool, "au_dim": int}) declares the per-frame labels the items carry.
    """
    factory = (VideoPreparer, (opts, dataset, classes))
    preparer = factory[0](*factory[1]) if opts.jobs <= 1 else None
    audio = preparer.audio if preparer else opts.audio_features()
    header = {"dataset": dataset, "classes": list(classes), "source": os.path.abspath(source) if source else "",
              "options": opts.content(), "audio": {**audio.info(), "sample_rate": opts.sample_rate,
                                                   "lld_mode": opts.lld_mode}}
    if frame_labels:
        header["labels"] = dict(frame_labels)
    store = PreparedStore(out, header, opts.shard_size, verify=opts.verify, shard=opts.shard)
    return run_preparation(items, store, factory, opts.jobs, skipped, progress, preparer)


def run_preparation(items, store: PreparedStore, factory, jobs: int = 1, skipped: list[dict] | None = None,
                    progress: bool = True, preparer=None) -> dict:
    """Prepare `items` into `store` with `factory` = (class, args) building a preparer per process.

    A preparer turns an item into (manifest entry, record or None), or a list of them (a video
    and its augmented copies). An item counts as done when it failed or every key in its `keys`
    (default: its `key`) is in the manifest, so a run killed between a video and its copies
    redoes the video, and the store ignores entries it already has. Ctrl-C or a crash still
    writes every finished video as complete shards. Items are prepared in a seeded random order
    (``_write_order``), not the class order of the layout; a store of one share (``--shard``) takes
    the items it owns.
    """
    items = [it for it in items if store.owns(it.key)]
    for entry in skipped or []:
        if store.owns(entry["key"]) and not store.is_done(entry["key"]):
            store.fail(entry)
    todo = sorted((it for it in items if not _done(store, it)), key=_write_order)
    if len(todo) < len(items):
        log.info("resuming: %d of %d videos already prepared", len(items) - len(todo), len(items))
    bar_v = tqdm(total=len(items), initial=len(items) - len(todo), desc="videos", unit="video", disable=not progress)
    bar_f = tqdm(desc="frames", unit="frame", disable=not progress)
    try:
        for result in _results(todo, jobs, factory, preparer):
            pairs = result if isinstance(result, list) else [result]
            for entry, record in pairs:
                if record is None:
                    store.fail(entry)
                else:
                    store.add(entry, record)
            bar_v.update()
            bar_f.update(pairs[0][0]["frames_total"])
    finally:  # on Ctrl-C too: whatever was finished is written as complete shards
        bar_v.close()
        bar_f.close()
        manifest = store.close()
    return manifest


def _write_order(item) -> bytes:
    """A seeded pseudo-random rank of an item, the same in every run: videos are written in this
    order, so no shard holds one class (layouts list videos by class) and a resumed or parallel
    run writes in the same order."""
    return hashlib.blake2b(f"write-order/{item.key}".encode(), digest_size=8).digest()


def _done(store: PreparedStore, item) -> bool:
    keys = getattr(item, "keys", (item.key,))
    if keys[0] not in store.manifest["videos"]:
        return store.is_done(keys[0])  # in the merged manifest of a shared OUT, or not yet prepared
    return store.manifest["videos"][keys[0]].get("status") != "ok" or all(store.is_done(k) for k in keys[1:])


def _results(todo, jobs, factory, preparer):
    """Each item's result in the order of `todo`, so shards hold the same videos whatever the
    number of workers and however long each video takes."""
    if jobs <= 1:
        preparer = preparer or factory[0](*factory[1])
        for item in todo:
            yield preparer(item)
        return
    threads = max(1, (os.cpu_count() or 1) // jobs)
    with ProcessPoolExecutor(jobs, mp_context=get_context("spawn"), initializer=_init_worker,
                             initargs=(factory, threads)) as pool:
        items, window = iter(todo), collections.deque()
        try:
            while True:  # a few items ahead per worker, results in write order (not completion order)
                window.extend(pool.submit(_run_worker, item) for item in itertools.islice(items, 4 * jobs - len(window)))
                if not window:
                    return
                yield window.popleft().result()
        finally:
            for fut in window:
                fut.cancel()
