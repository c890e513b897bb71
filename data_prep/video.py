"""Streaming video decode and audio extraction through the ffmpeg binary that imageio-ffmpeg ships.

Frames are read from an ffmpeg pipe one at a time, so memory does not grow with video length.
"""
from __future__ import annotations

import warnings
from typing import Iterator

import ffmpeg
import imageio_ffmpeg
import numpy as np

from .errors import BadInput

FFMPEG = imageio_ffmpeg.get_ffmpeg_exe()


def audio_segment_class():
    """pydub's AudioSegment, pointed at the bundled binary (pydub looks on PATH and warns at import)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        from pydub import AudioSegment
    AudioSegment.converter = FFMPEG
    AudioSegment.ffmpeg = FFMPEG
    return AudioSegment


class VideoStream:
    """Open a video and stream its RGB frames at the source frame rate.

    `meta` (fps, size, audio_codec, duration) is available right after construction; a file that
    ffmpeg cannot open raises BadInput("corrupt").
    """

    def __init__(self, path):
        self.path = str(path)
        self._gen = imageio_ffmpeg.read_frames(self.path)
        try:
            self.meta = next(self._gen)
        except Exception as err:  # imageio-ffmpeg raises plain IOError/RuntimeError
            self._gen.close()
            raise BadInput(path, "corrupt", f"ffmpeg cannot decode this file ({_last_line(err)})")
        if not self.meta.get("fps") or not self.meta.get("size"):
            self._gen.close()
            raise BadInput(path, "corrupt", "no video stream")
        self.fps = float(self.meta["fps"])
        self.width, self.height = self.meta["size"]
        self.has_audio = bool(self.meta.get("audio_codec"))

    def frames(self) -> Iterator[np.ndarray]:
        """Yield (H, W, 3) uint8 frames; a stream that breaks mid-way raises BadInput("corrupt")."""
        shape = (self.height, self.width, 3)
        try:
            for buf in self._gen:
                yield np.frombuffer(buf, np.uint8).reshape(shape)
        except BadInput:
            raise
        except Exception as err:
            raise BadInput(self.path, "corrupt", f"decoding failed mid-stream ({_last_line(err)})")
        finally:
            self._gen.close()

    def batches(self, size: int) -> Iterator[tuple[int, list[np.ndarray]]]:
        """Yield (index of first frame, list of up to `size` frames)."""
        batch, start = [], 0
        for i, frame in enumerate(self.frames()):
            if not batch:
                start = i
            batch.append(frame)
            if len(batch) == size:
                yield start, batch
                batch = []
        if batch:
            yield start, batch


def extract_wav(path, wav_path, sample_rate: int = 16000) -> None:
    """Write the first audio track of `path` as mono 16-bit PCM at `sample_rate`."""
    stream = ffmpeg.input(str(path)).output(str(wav_path), vn=None, ac=1, ar=sample_rate, acodec="pcm_s16le")
    try:
        stream.overwrite_output().run(cmd=FFMPEG, capture_stdout=True, capture_stderr=True)
    except ffmpeg.Error as err:
        detail = err.stderr.decode(errors="replace").strip()[-200:]
        raise BadInput(path, "corrupt_audio", f"ffmpeg could not extract audio ({detail})")


def _last_line(err: Exception) -> str:
    text = str(err).strip().splitlines()
    return text[-1][:200] if text else type(err).__name__
