"""The shared synthetic-data writer: a real face on video, speech-like audio, any codec and timing.

Every dataset's synthetic generator (data_prep/datasets/<name>/synthetic.py) draws with these
pieces: the public-domain astronaut photo that scikit-image ships (a real face, so the real
detectors run) moving and scaling over a textured background, a class colour tint, and a voiced,
syllable-modulated tone whose pitch depends on the class; `write_video` encodes them with the
bundled ffmpeg in the codec, container and frame timing asked for.

Real-world-like clips (`write_real_world_clips`, `fer-keras synth clips`): the same face at
720x576 and 1280x720, a variable frame rate, audio that starts late or early, display rotation,
anamorphic pixels and 5.1 audio, in the codecs and containers such clips come in, with every
frame's presentation time in their ground truth.
"""
from __future__ import annotations

import colorsys
import functools
import json
import os
import subprocess
import tempfile
import wave
from dataclasses import asdict, dataclass

import cv2
import numpy as np

from data_prep.options import option
from data_prep.video import FFMPEG
from fer_keras.classes import AFEW

TRUTH_FILE = "synthetic_truth.json"


@functools.lru_cache(maxsize=1)
def face_sprite() -> tuple[np.ndarray, np.ndarray]:
    """The astronaut's head and a soft elliptical alpha mask around it (read once per process)."""
    import skimage.data

    head = skimage.data.astronaut()[20:220, 140:310]  # face box is about x 182-265, y 64-171 of the photo
    h, w = head.shape[:2]
    mask = np.zeros((h, w), np.float32)
    cv2.ellipse(mask, (w // 2, h // 2 + 8), (int(w * 0.42), int(h * 0.47)), 0, 0, 360, 1.0, -1)
    return head, cv2.GaussianBlur(mask, (0, 0), 6)[..., None]


SPRITE_FACE_PX = 107  # height of the face box inside the 200 px head sprite


def class_colour(k: int, n: int = len(AFEW)) -> np.ndarray:
    return np.array(colorsys.hsv_to_rgb(k / n, 0.6, 1.0)) * 255.0


def class_pitch(k: int) -> float:
    """Fundamental frequency (Hz) of class k's voice: 110 Hz upwards in steps of a major third."""
    return 110.0 * 2 ** (k / 3.0)


def background(rng, h, w) -> np.ndarray:
    base = rng.uniform(40, 200, 3)
    ramp = np.linspace(-30, 30, w)[None, :, None] * rng.uniform(-1, 1, 3)
    noise = cv2.GaussianBlur(rng.normal(0, 12, (h, w, 3)).astype(np.float32), (0, 0), 3)
    return np.clip(base + ramp + noise, 0, 255)


def render_frames(rng, width: int, height: int, label: int, n: int, face_frames: set[int],
                  face_height: float = 0.4):
    """Yield n RGB frames; the face (tinted with the class colour) appears in `face_frames` only.

    `face_height` is the face box's height as a fraction of the frame height (it breathes by
    +-13% and drifts sideways), so faces keep realistic sizes at any resolution.
    """
    head, mask = face_sprite()
    tint = class_colour(label)
    bg = background(rng, height, width)
    phase, speed = rng.uniform(0, 2 * np.pi, 2), rng.uniform(0.08, 0.16)
    base = face_height * height / (SPRITE_FACE_PX * 0.74)
    for i in range(n):
        frame = bg.copy()
        if i in face_frames:
            scale = base * (0.74 + 0.1 * np.sin(speed * i + phase[0]))
            sprite = cv2.resize(head, None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA).astype(np.float32)
            alpha = cv2.resize(mask, (sprite.shape[1], sprite.shape[0]))[..., None]
            sprite = (0.75 * sprite + 0.25 * tint)[:height, :width]
            alpha = alpha[:height, :width]
            sh, sw = sprite.shape[:2]
            cx = (width - sw) / 2 + (width - sw) / 2 * 0.8 * np.sin(speed * i * 1.3 + phase[1])
            x0, y0 = int(np.clip(cx, 0, width - sw)), int((height - sh) / 2)
            region = frame[y0:y0 + sh, x0:x0 + sw]
            frame[y0:y0 + sh, x0:x0 + sw] = alpha * sprite + (1 - alpha) * region
        yield np.clip(frame, 0, 255).astype(np.uint8)


def render_audio(rng, label: int, seconds: float, sample_rate: int) -> np.ndarray:
    """Speech-like stereo int16 audio: harmonic voice at the class pitch, 4 Hz syllables, noise."""
    t = np.arange(int(round(seconds * sample_rate))) / sample_rate
    f0 = class_pitch(label) * (1 + 0.03 * np.sin(2 * np.pi * 0.7 * t))
    voice = sum(np.sin(2 * np.pi * h * np.cumsum(f0) / sample_rate) / h for h in range(1, 6))
    syllables = 0.5 - 0.5 * np.cos(2 * np.pi * 4.0 * t + rng.uniform(0, 2 * np.pi))
    mono = 0.25 * voice * syllables + rng.normal(0, 0.01, t.size)
    return (np.clip(np.stack([mono, mono], 1), -1, 1) * 32767).astype(np.int16)


def segment_times(segments) -> np.ndarray:
    """Presentation times of consecutive segments of (frames, fps): a variable-frame-rate timeline."""
    times, t = [], 0.0
    for n, fps in segments:
        times += [t + i / fps for i in range(n)]
        t += n / fps
    return np.asarray(times)


def _setpts(segments, start: float = 0.0) -> str:
    """An ffmpeg setpts expression that puts frame N at `start` + its time in `segments` (nested ifs)."""
    pieces, first = [], 0
    for n, fps in segments:
        pieces.append((first + n, f"{start!r}+(N-{first})/{fps!r}"))
        start += n / fps
        first += n
    expr = pieces[-1][1]
    for limit, piece in reversed(pieces[:-1]):
        expr = f"if(lt(N,{limit}),{piece},{expr})"
    return f"setpts='({expr})/TB'"


def write_video(path, frames, width: int, height: int, segments=((0, 25.0),), codec: str = "libxvid",
                audio: np.ndarray | None = None, sample_rate: int = 22050, audio_start: float = 0.0,
                rotation: int = 0, sar: tuple = (1, 1)) -> None:
    """Encode frames with the bundled ffmpeg, as real cameras and releases write them.

    `segments` ((frames, fps), ...) sets each frame's presentation time: one segment is a constant
    rate, several make a variable-frame-rate clip (as phones record). `audio` (samples, channels)
    int16 starts `audio_start` seconds after the first frame (AAC in MP4/MOV/MKV, PCM in AVI);
    `rotation` (90, 180, 270) stores the frames turned and adds display-rotation metadata, so a
    player shows them upright, like a phone held upright. `sar` is the stored pixel aspect ratio.
    """
    path = str(path)
    cfr = len(segments) == 1
    k = (rotation // 90) % 4
    coded_w, coded_h = (height, width) if k % 2 else (width, height)
    with tempfile.TemporaryDirectory() as tmp:
        target = os.path.join(tmp, "coded" + os.path.splitext(path)[1]) if k else path
        # audio before the video is written as video that starts late (ffmpeg drops negative times)
        video_start = -audio_start if audio is not None and audio_start < 0 else 0.0
        cmd = [FFMPEG, "-hide_banner", "-nostdin", "-loglevel", "error", "-y",
               "-f", "rawvideo", "-pix_fmt", "rgb24", "-s", f"{coded_w}x{coded_h}",
               "-r", repr(float(segments[0][1])), "-i", "pipe:0"]
        if audio is not None:
            wav = os.path.join(tmp, "audio.wav")
            with wave.open(wav, "wb") as w:
                w.setnchannels(audio.shape[1])
                w.setsampwidth(2)
                w.setframerate(sample_rate)
                w.writeframes(np.ascontiguousarray(audio, np.int16).tobytes())
            cmd += ["-itsoffset", repr(max(0.0, audio_start)), "-i", wav, "-map", "0:v", "-map", "1:a"]
            if audio.shape[1] == 6:
                cmd += ["-channel_layout", "5.1"]
            cmd += ["-c:a", "pcm_s16le" if path.lower().endswith(".avi") else "aac"]
        timed = not cfr or video_start > 0  # frame times set one by one, in a timebase every rate fits
        filters = ["settb=1/90000", _setpts(segments, video_start)] if timed else []
        if tuple(sar) != (1, 1):
            filters.append(f"setsar={sar[0]}/{sar[1]}")
        if filters:
            cmd += ["-vf", ",".join(filters)]
        if timed:
            cmd += ["-fps_mode", "passthrough", "-enc_time_base:v", "1/90000", "-video_track_timescale", "90000"]
        cmd += ["-c:v", codec, "-pix_fmt", "yuv420p"]
        cmd += ["-q:v", "3"] if codec in ("libxvid", "mpeg4") else ["-crf", "20", "-preset", "veryfast"]
        cmd.append(target)
        proc = subprocess.Popen(cmd, stdin=subprocess.PIPE, stderr=subprocess.PIPE)
        try:
            for frame in frames:
                proc.stdin.write(np.ascontiguousarray(np.rot90(frame, -k) if k else frame).tobytes())
        finally:
            proc.stdin.close()
            err = proc.stderr.read().decode(errors="replace")
        if proc.wait() != 0:
            raise RuntimeError(f"ffmpeg could not write {path}: {err.strip()[-300:]}")
        if k:  # the display matrix is set when remuxing (ffmpeg's -display_rotation input option)
            subprocess.run([FFMPEG, "-hide_banner", "-nostdin", "-loglevel", "error", "-y",
                            "-display_rotation", str(90 * k), "-i", target, "-c", "copy", path], check=True)


@dataclass
class ClipSpec:
    """One real-world-like clip: resolution, frame timing, codec, audio placement, orientation."""

    name: str
    width: int  # as displayed (after rotation and pixel aspect)
    height: int
    segments: tuple = ((75, 25.0),)  # (frames, fps) runs: several make a variable frame rate
    codec: str = "libx264"
    face_height: float = 0.3
    gap: tuple = (20, 26)  # frames [a, b) without a face
    audio_channels: int = 2  # 0: no audio track; 6: 5.1 with the tone in the centre channel only
    audio_start: float = 0.0  # seconds after the first frame (negative: before it)
    audio_seconds: float | None = None  # None: as long as the video
    tone: tuple = (1.0, 1.4)  # a loud 1 kHz tone over these seconds of the video timeline
    rotation: int = 0  # display rotation: the clip is stored turned, like a phone held upright
    sar: tuple = (1, 1)  # pixel aspect ratio of the stored frames (PAL 4:3 DVD: 16:15)


# The clips that real-world preparation is tested on (tests/test_real_world_video.py) and that
# `fer-keras synth clips` writes: resolutions of AFEW and web video, phone timing and orientation.
REAL_WORLD_CLIPS = (
    ClipSpec("phone_vfr.mp4", 640, 360, segments=((40, 30.0), (20, 15.0), (30, 24.0)), tone=(1.6, 2.0)),
    ClipSpec("late_audio.mp4", 640, 360, segments=((100, 25.0),), audio_start=2.0, tone=(2.6, 3.0)),
    ClipSpec("early_audio.mp4", 640, 360, segments=((60, 25.0),), audio_start=-1.0, audio_seconds=2.0,
             tone=(0.4, 0.8)),
    ClipSpec("phone_rotated.mp4", 360, 640, segments=((60, 30.0),), rotation=90, tone=(0.8, 1.2)),
    ClipSpec("afew_720x576.avi", 768, 576, codec="libxvid", sar=(16, 15), face_height=0.25, tone=(1.2, 1.6)),
    ClipSpec("web_1280x720.mp4", 1280, 720, segments=((75, 30.0),), audio_channels=6, face_height=0.22),
)


def tone_audio(rng, seconds: float, sample_rate: int, tone: tuple, offset: float, channels: int) -> np.ndarray:
    """Quiet noise with a loud 1 kHz tone at video time `tone`; the audio's 0 is video time `offset`."""
    t = np.arange(int(round(seconds * sample_rate))) / sample_rate + offset
    mono = rng.normal(0, 0.003, t.size) + 0.5 * np.sin(2 * np.pi * 1000 * t) * ((t >= tone[0]) & (t < tone[1]))
    pcm = (np.clip(mono, -1, 1) * 32767).astype(np.int16)
    if channels == 6:  # FL FR FC LFE BL BR: speech sits in the centre channel
        quiet = (rng.normal(0, 0.003, (t.size, 6)) * 32767).astype(np.int16)
        quiet[:, 2] = pcm
        return quiet
    return np.repeat(pcm[:, None], channels, 1)


def write_real_world_clips(out, clips=REAL_WORLD_CLIPS, seed: int = 0) -> dict:
    """Write `clips` under `out` with ffmpeg; return (and save) their ground truth."""
    os.makedirs(out, exist_ok=True)
    rng = np.random.default_rng(seed)
    truth = []
    for clip in clips:
        times = segment_times(clip.segments)
        n = len(times)
        faces = [i for i in range(n) if not clip.gap[0] <= i < clip.gap[1]]
        frames = render_frames(rng, clip.width, clip.height, 3, n, set(faces), clip.face_height)
        coded_w = round(clip.width * clip.sar[1] / clip.sar[0])
        if coded_w != clip.width:  # store anamorphic: squeezed, with the aspect in the stream
            frames = (cv2.resize(f, (coded_w, clip.height), interpolation=cv2.INTER_AREA) for f in frames)
        end = times[-1] + 1.0 / clip.segments[-1][1]
        audio = None
        if clip.audio_channels:
            seconds = clip.audio_seconds if clip.audio_seconds is not None else end - max(0.0, clip.audio_start)
            audio = tone_audio(rng, seconds, 48000, clip.tone, clip.audio_start, clip.audio_channels)
        path = os.path.join(out, clip.name)
        write_video(path, frames, coded_w, clip.height, clip.segments, clip.codec, audio, 48000,
                    clip.audio_start, clip.rotation, clip.sar)
        shift = max(0.0, -clip.audio_start) if audio is not None else 0.0  # ffmpeg's timeline starts at 0
        truth.append({**asdict(clip), "path": clip.name, "frame_times": (times + shift).tolist(),
                      "face_frames": faces, "end": end + shift,
                      "audio": None if audio is None else {
                          "start": clip.audio_start + shift, "seconds": len(audio) / 48000,
                          "tone": [clip.tone[0] + shift, clip.tone[1] + shift]}})
    with open(os.path.join(out, TRUTH_FILE), "w") as f:
        json.dump({"clips": truth}, f, indent=1)
    return {"clips": truth}


@dataclass
class ClipsSpec:
    """`fer-keras synth clips`: the real-world-like clips, drawn with this seed."""

    seed: int = option(0, "random seed")


def synth(out, spec: ClipsSpec) -> str:
    """Write the real-world-like clips; one line per clip and a summary."""
    truth = write_real_world_clips(out, seed=spec.seed)
    lines = [f"  {c['path']:<22} {c['width']}x{c['height']}, {len(c['frame_times'])} frames, "
             f"{len(c['segments'])} rate segment(s), audio start {c['audio_start']:+.1f} s, rotation {c['rotation']}"
             for c in truth["clips"]]
    return "\n".join(lines + [f"wrote {len(truth['clips'])} real-world-like clips under {out} "
                              f"(ground truth: {TRUTH_FILE})"])
