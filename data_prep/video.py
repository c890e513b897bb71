"""Video decoding with true frame timing, and audio extraction, through imageio-ffmpeg's ffmpeg binary.

Real-world clips (phones, web video) have variable frame rates, rotation metadata, non-square
pixels and audio that starts before or after the picture. So frames are decoded with ffmpeg's
``-fps_mode passthrough`` (each coded frame exactly once, never duplicated to a nominal rate) and
each frame's presentation time is read from ffmpeg's ``showinfo`` filter; the audio's start time
comes from ``ashowinfo`` in the same timeline (ffmpeg shifts every stream by the file's start), so
audio and labels can be placed on frames by time. Frames are streamed from a pipe, so memory does
not grow with video length.
"""
from __future__ import annotations

import math
import queue
import re
import subprocess
import threading
import warnings
import wave
from dataclasses import dataclass
from typing import Iterator

import imageio_ffmpeg
import numpy as np

from .errors import BadInput

FFMPEG = imageio_ffmpeg.get_ffmpeg_exe()

_STREAM = re.compile(r"^\s*Stream #\d+:\d+.*?: (Video|Audio): (.*)$")
_SIZE = re.compile(r"\b(\d{2,5})x(\d{2,5})\b")
_RATE = re.compile(r"([\d.]+)(k?) (fps|tbr)\b")
_ROTATION = re.compile(r"rotation of (-?[\d.]+) degrees", re.IGNORECASE)
_SHOWINFO = re.compile(r"\bn:\s*(\d+)\s+pts:\s*(\S+)\s+pts_time:(\S+)\s+duration:\s*(\S+)\s+duration_time:(\S+)"
                       r".*?\bs:(\d+)x(\d+)")
_LOG_PREFIX = re.compile(r"^\s*\[[^\]]* @ 0x[0-9a-f]+\]\s*")  # "[in#0 @ 0x55...] ": differs every run
_FAILURE = ("Invalid data found", "moov atom not found", "could not find codec parameters",
            "Error opening input", "No such file")


def audio_segment_class():
    """pydub's AudioSegment, pointed at the bundled binary (pydub looks on PATH and warns at import)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        from pydub import AudioSegment
    AudioSegment.converter = FFMPEG
    AudioSegment.ffmpeg = FFMPEG
    return AudioSegment


@dataclass
class SourceInfo:
    """What ffmpeg's header says about a file (before decoding a frame)."""

    width: int  # coded size of the first video stream
    height: int
    nominal_fps: float  # the container's rate (tbr), which a VFR clip does not keep
    rotation: float  # display rotation in degrees (phones), applied when decoding
    audio: str | None  # description of the first audio stream ("aac ..., 48000 Hz, 5.1, ..."), None if none

    @property
    def has_audio(self) -> bool:
        return self.audio is not None


def probe(path) -> SourceInfo:
    """Read the header of `path`; a file ffmpeg cannot open, or one without video, is BadInput("corrupt")."""
    proc = subprocess.run([FFMPEG, "-hide_banner", "-nostdin", "-i", str(path)], capture_output=True)
    lines = proc.stderr.decode(errors="replace").splitlines()
    video = audio = None
    rotation = 0.0
    for line in lines:
        m = _STREAM.match(line)
        if m and m.group(1) == "Video" and video is None and "attached pic" not in line:
            video = m.group(2)
        elif m and m.group(1) == "Audio" and audio is None:
            audio = m.group(2)
        elif video is not None and audio is None and (r := _ROTATION.search(line)):
            rotation = float(r.group(1))
    if video is None:
        failure = next((_clean(ln) for ln in lines if any(f in ln for f in _FAILURE)), None)
        detail = f"ffmpeg cannot decode this file ({failure})" if failure else "no video stream"
        raise BadInput(path, "corrupt", detail)
    size = _SIZE.search(video)
    rates = {unit: float(v) * (1000 if k else 1) for v, k, unit in _RATE.findall(video)}
    if size is None or not (rates.get("tbr") or rates.get("fps")):
        raise BadInput(path, "corrupt", f"ffmpeg reports no frame size or rate for its video stream ({video[:120]})")
    return SourceInfo(width=int(size.group(1)), height=int(size.group(2)),
                      nominal_fps=rates.get("tbr") or rates["fps"], rotation=rotation, audio=audio)


class VideoStream:
    """Stream the RGB frames of a video with their presentation times (seconds).

    Rotation metadata is applied (upright frames) and non-square pixels are resampled to square
    ones, so faces keep their shape. With `fps` the video is resampled to that constant rate
    (ffmpeg's fps filter, which drops or repeats frames on purpose); without it every decoded frame
    comes out exactly once at its own time. After iterating, `times` and `durations` hold every
    frame's presentation time and display duration.
    """

    def __init__(self, path, fps: float | None = None):
        if fps is not None and not fps > 0:
            raise ValueError(f"fps must be positive, got {fps}")
        self.path = str(path)
        self.info = probe(path)
        self.resample_fps = fps
        self.times: list[float] = []
        self.durations: list[float] = []
        self.width = self.height = 0

    @property
    def fps(self) -> float:
        """The real average rate of the decoded frames (the resampling rate with `fps`)."""
        if self.resample_fps:
            return float(self.resample_fps)
        span = sum(self.durations)
        return round(len(self.times) / span, 6) if span > 0 else self.info.nominal_fps

    def _command(self) -> list[str]:
        chain = [f"fps={self.resample_fps}"] if self.resample_fps else []
        chain += ["scale=iw*sar:ih", "setsar=1", "showinfo=checksum=0"]
        return [FFMPEG, "-hide_banner", "-nostdin", "-nostats", "-i", self.path, "-map", "0:v:0",
                "-an", "-sn", "-dn", "-vf", ",".join(chain), "-fps_mode", "passthrough",
                "-f", "rawvideo", "-pix_fmt", "rgb24", "pipe:1"]

    def frames(self) -> Iterator[tuple[np.ndarray, float]]:
        """Yield ((H, W, 3) uint8 frame, presentation time); a stream that breaks raises BadInput("corrupt")."""
        proc = subprocess.Popen(self._command(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, bufsize=0)
        infos: queue.Queue = queue.Queue()
        log: list[str] = []
        reader = threading.Thread(target=_read_showinfo, args=(proc.stderr, infos, log), daemon=True)
        reader.start()
        self.times, self.durations = [], []
        pending_duration = None
        try:
            while True:
                info = infos.get()
                if info is None:
                    break
                pts, duration, width, height = info
                if not self.width:  # later frames come scaled to the first one's size
                    self.width, self.height = width, height
                data = _read_exactly(proc.stdout, self.width * self.height * 3)
                if data is None:
                    break
                t = pts if pts is not None else len(self.times) / self.info.nominal_fps
                if self.times:
                    self.durations.append(max(0.0, t - self.times[-1]))
                self.times.append(t)
                pending_duration = duration
                yield np.frombuffer(data, np.uint8).reshape(self.height, self.width, 3), t
            if self.times:  # the last frame is shown for its own duration, or the typical period
                if not pending_duration or pending_duration <= 0:
                    pending_duration = (float(np.median(self.durations)) if self.durations
                                        else 1.0 / (self.resample_fps or self.info.nominal_fps))
                self.durations.append(pending_duration)
        finally:
            proc.stdout.close()
            rc = proc.wait()
            reader.join()
        if rc != 0:
            detail = next((_clean(ln) for ln in reversed(log) if ln.strip()), f"exit code {rc}")
            raise BadInput(self.path, "corrupt", f"ffmpeg failed decoding frame {len(self.times)} ({detail[-200:]})")

    def batches(self, size: int) -> Iterator[tuple[int, list[np.ndarray]]]:
        """Yield (index of the first frame, up to `size` frames); their times are in `times`."""
        batch, start = [], 0
        for i, (frame, _) in enumerate(self.frames()):
            if not batch:
                start = i
            batch.append(frame)
            if len(batch) == size:
                yield start, batch
                batch = []
        if batch:
            yield start, batch


def _read_exactly(pipe, n: int) -> bytes | None:
    chunks, got = [], 0
    while got < n:
        chunk = pipe.read(n - got)
        if not chunk:
            return None
        chunks.append(chunk)
        got += len(chunk)
    return b"".join(chunks)


def _read_showinfo(stderr, out: queue.Queue, log: list[str]) -> None:
    """Parse ffmpeg's stderr: one (pts_time, duration_time, width, height) per showinfo line."""
    try:
        for raw in stderr:
            line = raw.decode(errors="replace")
            m = _SHOWINFO.search(line)
            if m is None:
                log.append(line.rstrip())
                continue
            pts = None if m.group(2).upper() == "NOPTS" else _float(m.group(3))
            out.put((pts, _float(m.group(5)), int(m.group(6)), int(m.group(7))))
    finally:
        out.put(None)


def _clean(line: str) -> str:
    return _LOG_PREFIX.sub("", line).strip()


def _float(text: str) -> float | None:
    try:
        return float(text)
    except ValueError:
        return None


@dataclass
class AudioTrack:
    """The extracted mono wav of a video's first audio stream, placed on the video's timeline."""

    start: float  # presentation time (s) of the first sample, in the timeline of the video's frames
    duration: float  # seconds of audio written
    sample_rate: int
    source: str  # the stream as ffmpeg describes it (codec, rate, channel layout)

    @property
    def end(self) -> float:
        return self.start + self.duration


def extract_audio(path, wav_path, sample_rate: int = 16000, source: str = "") -> AudioTrack:
    """Write the first audio track of `path` as mono 16-bit PCM at `sample_rate`; return where it sits.

    Stereo and 5.1 are downmixed by ffmpeg's standard matrix; gaps inside the stream are filled with
    silence (aresample async), so sample k always plays at `start + k / sample_rate`.
    """
    cmd = [FFMPEG, "-hide_banner", "-nostdin", "-nostats", "-y", "-i", str(path), "-map", "0:a:0", "-vn",
           "-af", "ashowinfo,aresample=async=1", "-ac", "1", "-ar", str(sample_rate), "-acodec", "pcm_s16le",
           "-f", "wav", str(wav_path)]
    proc = subprocess.run(cmd, capture_output=True)
    lines = proc.stderr.decode(errors="replace").splitlines()
    first = next((m for m in map(_ASHOWINFO.search, lines) if m), None)
    if proc.returncode != 0 or first is None:
        detail = next((_clean(ln) for ln in reversed(lines) if ln.strip()), f"exit code {proc.returncode}")
        raise BadInput(path, "corrupt_audio", f"ffmpeg could not extract audio ({detail[-200:]})")
    start = 0.0 if first.group(1).upper() == "NOPTS" else float(first.group(1))
    with wave.open(str(wav_path)) as w:
        frames = w.getnframes()
    return AudioTrack(start=start, duration=frames / sample_rate, sample_rate=sample_rate, source=source)


_ASHOWINFO = re.compile(r"ashowinfo.*?\bpts_time:(\S+)")


def resample(stream: VideoStream, fps: float):
    """Yield (source frame index, time, frame) of `stream` at the constant rate `fps`, as theses 001
    and 003 converted their videos: frame k, at t0 + k / fps (t0: the first frame's time), is the
    source frame nearest that time (the earlier on a tie), for every such time before the last
    frame's display ends; source frames are dropped or repeated. Each output frame keeps its
    source frame's index, so a per-frame annotation line (and an Aff-Wild2 prediction line) stays
    on the picture it belongs to, whatever the source's rate, variable ones included. Every source
    frame is decoded (ffmpeg's fps filter would hide which one each output shows); one is held."""
    t0 = held = None
    k = 0
    for i, (frame, t) in enumerate(stream.frames()):
        if held is None:
            t0 = t
        else:  # the held frame is the nearest for every tick up to the midpoint of the two
            middle = (held[1] + t) / 2
            while t0 + k / fps <= middle + 1e-9:
                yield held[0], t0 + k / fps, held[2]
                k += 1
        held = (i, t, frame)
    if held is None:
        return
    end = stream.times[-1] + stream.durations[-1]
    for k in range(k, max(math.ceil((end - t0) * fps - 1e-9), 1)):  # the last frame until its display ends
        yield held[0], t0 + k / fps, held[2]
