"""Dataset-independent video preparation: frames -> aligned faces, audio -> LLDs, -> shards.

A dataset module (e.g. data_prep/afew.py) turns its layout into a list of SourceVideo items and
calls `prepare_videos`; everything else (parallel workers, progress, resume, failures) is here.
"""
from __future__ import annotations

import logging
import os
import tempfile
import traceback
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import asdict, dataclass
from multiprocessing import get_context

import cv2
import numpy as np
from tqdm import tqdm

from fer_keras.data.schema import UNLABELLED, VideoRecord, serialize

from .audio import AudioFeatures
from .errors import BadInput
from .face import LANDMARK_WEIGHTS, FaceDetector, align
from .store import PreparedStore
from .video import VideoStream, extract_wav

log = logging.getLogger(__name__)


@dataclass
class SourceVideo:
    """One video of a dataset layout; `source` is its path relative to the dataset root."""

    path: str
    split: str
    video_id: str
    label: int = UNLABELLED
    source: str = ""

    @property
    def key(self) -> str:
        return f"{self.split}/{self.video_id}"


# Options that change how fast a preparation runs, not what it writes.
RUN_SETTINGS = ("jobs", "detect_batch", "shard_size")


@dataclass
class PrepareOptions:
    """Everything that changes the prepared data (recorded in the manifest) plus run settings."""

    face_size: int = 112
    margin: float = 0.0
    min_confidence: float = 0.9
    min_face_size: int = 20
    landmark_weights: tuple = LANDMARK_WEIGHTS
    image_format: str = "jpeg"
    jpeg_quality: int = 95
    sample_rate: int = 16000
    lld_set: str = "eGeMAPSv02"
    lld_level: str | None = None
    lld_mode: str = "context"
    functionals_set: str | None = "IS10_paraling"
    functionals_level: str | None = None
    jobs: int = 1
    detect_batch: int = 32
    shard_size: int = 32

    def content(self) -> dict:
        """The options that define the prepared data (a rerun must match them)."""
        d = {k: v for k, v in asdict(self).items() if k not in RUN_SETTINGS}
        d["landmark_weights"] = list(d["landmark_weights"])
        return d

    def audio_features(self) -> AudioFeatures:
        return AudioFeatures(self.lld_set, self.lld_level, self.functionals_set, self.functionals_level,
                             self.lld_mode)


class VideoPreparer:
    """Holds the detector and the openSMILE extractors; turns one SourceVideo into a record."""

    def __init__(self, opts: PrepareOptions, dataset: str, classes):
        if opts.image_format not in ("jpeg", "png"):
            raise ValueError(f"image_format must be 'jpeg' or 'png', got {opts.image_format!r}")
        self.opts, self.dataset, self.classes = opts, dataset, list(classes)
        self.detector = FaceDetector(opts.min_confidence, opts.min_face_size)
        self.audio = opts.audio_features()

    def _encode(self, face: np.ndarray) -> bytes:
        bgr = cv2.cvtColor(face, cv2.COLOR_RGB2BGR)
        if self.opts.image_format == "png":
            ok, buf = cv2.imencode(".png", bgr)
        else:
            ok, buf = cv2.imencode(".jpg", bgr, [cv2.IMWRITE_JPEG_QUALITY, self.opts.jpeg_quality])
        return buf.tobytes()

    def __call__(self, item: SourceVideo) -> tuple[dict, bytes | None]:
        """Return (manifest entry, serialised record); the record is None when the video failed."""
        entry = {"key": item.key, "id": item.video_id, "split": item.split, "label": item.label,
                 "label_name": self.classes[item.label] if item.label >= 0 else None,
                 "source": item.source or item.path, "path": item.path, "frames_total": 0, "frames_kept": 0, "flags": []}
        try:
            return self._prepare(item, entry)
        except BadInput as err:
            entry.update(status="failed", reason=err.reason, message=err.message)
        except Exception as err:  # a bug or an unforeseen file: log it, never stop the dataset
            detail = traceback.format_exception_only(type(err), err)[-1].strip()
            entry.update(status="failed", reason="error", message=f"unexpected error: {detail}")
        return entry, None

    def _prepare(self, item: SourceVideo, entry: dict) -> tuple[dict, bytes | None]:
        o = self.opts
        stream = VideoStream(item.path)
        faces, kept, dropped = [], [], []
        for start, batch in stream.batches(o.detect_batch):
            for i, (frame, face) in enumerate(zip(batch, self.detector.detect(batch))):
                if face is None:
                    dropped.append(start + i)
                    continue
                faces.append(self._encode(align(frame, face.landmarks, o.face_size, o.margin, o.landmark_weights)))
                kept.append(start + i)
        total = len(kept) + len(dropped)
        entry.update(frames_total=total, frames_kept=len(kept), frames_dropped=len(dropped),
                     dropped_index=dropped, fps=stream.fps, has_audio=stream.has_audio)
        if total == 0:
            raise BadInput(item.path, "corrupt", "the video has no decodable frames")
        if not kept:
            raise BadInput(item.path, "no_face", f"no face found in any of its {total} frames")
        kept_index = np.asarray(kept, np.int64)
        lld = np.zeros((len(kept), self.audio.lld_dim), np.float32)
        functionals = np.zeros(self.audio.functionals_dim, np.float32)
        if stream.has_audio:
            with tempfile.TemporaryDirectory() as tmp:
                wav = os.path.join(tmp, "audio.wav")
                extract_wav(item.path, wav, o.sample_rate)
                lld, nan_filled = self.audio.lld(wav, kept_index, stream.fps)
                functionals = self.audio.functionals(wav)
            entry["lld_nan_filled"] = nan_filled
        else:
            entry["flags"].append({"reason": "no_audio",
                                   "message": "no audio track; frames kept, LLDs are zeros"})
        record = VideoRecord(
            video_id=item.video_id, label=item.label, fps=stream.fps, face_size=o.face_size, frames=faces,
            frame_index=kept_index, audio_lld=lld, audio_functionals=functionals,
            has_audio=stream.has_audio, source_frames=total, dataset=self.dataset,
        )
        entry["status"] = "ok"
        return entry, serialize(record)


_worker: VideoPreparer | None = None


def _init_worker(opts: PrepareOptions, dataset: str, classes, threads: int) -> None:
    import tensorflow as tf

    tf.config.threading.set_intra_op_parallelism_threads(threads)
    tf.config.threading.set_inter_op_parallelism_threads(threads)
    global _worker
    _worker = VideoPreparer(opts, dataset, classes)


def _run_worker(item: SourceVideo):
    return _worker(item)


def prepare_videos(items: list[SourceVideo], out, dataset: str, classes, opts: PrepareOptions,
                   source: str = "", skipped: list[dict] | None = None, progress: bool = True) -> dict:
    """Prepare every item into `out`; finished items of an earlier run are skipped. Returns the manifest."""
    preparer = VideoPreparer(opts, dataset, classes) if opts.jobs <= 1 else None
    audio = preparer.audio if preparer else opts.audio_features()
    header = {"dataset": dataset, "classes": list(classes), "source": os.path.abspath(source) if source else "",
              "options": opts.content(), "audio": {**audio.info(), "sample_rate": opts.sample_rate,
                                                   "lld_mode": opts.lld_mode}}
    store = PreparedStore(out, header, opts.shard_size)
    for entry in skipped or []:
        if not store.is_done(entry["key"]):
            store.fail(entry)
    todo = [it for it in items if not store.is_done(it.key)]
    if len(todo) < len(items):
        log.info("resuming: %d of %d videos already prepared", len(items) - len(todo), len(items))
    bar_v = tqdm(total=len(items), initial=len(items) - len(todo), desc="videos", unit="video", disable=not progress)
    bar_f = tqdm(desc="frames", unit="frame", disable=not progress)
    try:
        for entry, record in _results(todo, opts, preparer, dataset, classes):
            if record is None:
                store.fail(entry)
            else:
                store.add(entry, record)
            bar_v.update()
            bar_f.update(entry["frames_total"])
    finally:  # on Ctrl-C too: whatever was finished is written as complete shards
        bar_v.close()
        bar_f.close()
        manifest = store.close()
    return manifest


def _results(todo, opts, preparer, dataset, classes):
    if preparer is not None:
        for item in todo:
            yield preparer(item)
        return
    threads = max(1, (os.cpu_count() or 1) // opts.jobs)
    with ProcessPoolExecutor(opts.jobs, mp_context=get_context("spawn"), initializer=_init_worker,
                             initargs=(opts, dataset, classes, threads)) as pool:
        futures = [pool.submit(_run_worker, item) for item in todo]
        try:
            for fut in as_completed(futures):
                yield fut.result()
        finally:
            for fut in futures:
                fut.cancel()

