"""`make bench-prepare-va`: `prepare va` against `prepare afew` on the same frames, and the peak
memory of `prepare va` on one long video, in one run (issue 27 §5).

1. Speed. Two-person 1280x720 H.264 clips (synthetic faces, about 180 px, always in view) are
   written once in Aff-Wild2's layout (`<video>_left.txt` / `_right.txt` annotations) and linked
   into an AFEW layout, so both commands read the same files: the same pixels through the same
   codec. `prepare afew` keeps the best face per frame, aligns it and handles the (absent) audio;
   `prepare va` keeps every face, cuts one crop per face, assigns faces to the two people and
   writes two tracks of segment records per clip. Both run with their default options in this
   process, after a warm-up on a short clip, in interleaved rounds (the order alternating), so a
   change in machine load hits both. frames/s is source frames over the wall time of the whole
   `prepare` call (detector start-up included). Target: va >= 0.8x afew (per-person tracking costs
   little beside detection).
2. Memory. One two-person 1280x720 video of `--minutes` minutes at 25 fps, prepared by `prepare va`
   in a child process: the peak RSS of that process (its VmHWM), the largest peak of its ffmpeg
   subprocesses and the peak of its process tree's RSS sum, sampled every 0.2 s (psutil). Target:
   a 10-minute video (15,000 frames) under 2 GB.
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import time

import numpy as np

from data_prep.bench import cpu_name

SIZE = (1280, 720)
FPS = 25.0
FACE_HEIGHT = 0.3  # of the frame height, before the two-person scale (0.85): faces about 180 px high
AFEW_CLASS = "Happy"


def write_two_person(root: str, name: str, frames: int, seed: int, size=SIZE, fps: float = FPS) -> str:
    """One two-person H.264 video under `root` in Aff-Wild2's layout (videos/<name>.mp4 and
    Annotations/VA_Estimation_Challenge/Train_Set/<name>_left.txt, _right.txt, every frame
    annotated), rendered by the synthetic VA writer; returns the video's path."""
    from data_prep.datasets.va import synthetic
    from data_prep.synthetic_render import segment_times, write_video

    width, height = size
    rng = np.random.default_rng(seed)
    times = segment_times(((frames, fps),))
    people = synthetic._people(rng, ("left", "right"), times, width, height, FACE_HEIGHT, None)
    path = os.path.join(root, "videos", name + ".mp4")
    os.makedirs(os.path.dirname(path), exist_ok=True)
    write_video(path, synthetic._render(rng, width, height, people, times), width, height, ((frames, fps),),
                "libx264")
    folder = os.path.join(root, "Annotations", "VA_Estimation_Challenge", "Train_Set")
    os.makedirs(folder, exist_ok=True)
    for person in people:
        lines = [f"{v:.4f},{a:.4f}" for v, a in zip(person.valence(times), person.arousal(times))]
        with open(os.path.join(folder, f"{name}_{person.person}.txt"), "w") as f:
            f.write("valence,arousal\n" + "\n".join(lines) + "\n")
    return path


def afew_layout(root: str, videos: list[str]) -> None:
    """The same video files as an AFEW layout (Train_AFEW/<class>/<name>.mp4, symbolic links)."""
    folder = os.path.join(root, "Train_AFEW", AFEW_CLASS)
    os.makedirs(folder, exist_ok=True)
    for path in videos:
        os.symlink(os.path.abspath(path), os.path.join(folder, os.path.basename(path)))


def _prepare(method: str, src: str, out: str, jobs: int) -> tuple[float, dict]:
    """(seconds, manifest) of one whole `prepare` call with the command's default options."""
    shutil.rmtree(out, ignore_errors=True)
    start = time.perf_counter()
    if method == "va":
        from data_prep.datasets.va.layout import prepare
        from data_prep.datasets.va.options import VaOptions

        manifest = prepare(src, out, VaOptions(layout="affwild2", jobs=jobs), progress=False)
    else:
        from data_prep.datasets.afew.layout import prepare
        from data_prep.video_options import PrepareOptions

        manifest = prepare(src, out, PrepareOptions(jobs=jobs), progress=False)
    return time.perf_counter() - start, manifest


def speed(work: str, clips: int, frames: int, rounds: int, jobs: int = 1) -> dict:
    """Part 1 (module docstring): frames/s of both commands on the same two-person clips."""
    va_src, afew_src = os.path.join(work, "va_src"), os.path.join(work, "afew_src")
    videos = [write_two_person(va_src, f"clip{k}", frames, seed=k) for k in range(clips)]
    afew_layout(afew_src, videos)
    warm = os.path.join(work, "warmup")
    write_two_person(os.path.join(warm, "va_src"), "warmup", 16, seed=99)
    afew_layout(os.path.join(warm, "afew_src"), [os.path.join(warm, "va_src", "videos", "warmup.mp4")])
    for method in ("afew", "va"):  # trace MTCNN's networks at this frame size, load what each loads once
        _prepare(method, os.path.join(warm, f"{method}_src"), os.path.join(warm, f"{method}_out"), jobs)
    total = clips * frames
    seconds = {"afew": [], "va": []}
    last = {}
    for r in range(rounds):
        for method in (("afew", "va") if r % 2 == 0 else ("va", "afew")):
            took, last[method] = _prepare(method, os.path.join(work, f"{method}_src"),
                                          os.path.join(work, f"{method}_out"), jobs)
            seconds[method].append(took)
    tracks = [v for v in last["va"]["videos"].values()]
    fps = {m: [total / s for s in seconds[m]] for m in seconds}
    ratios = [v / a for v, a in zip(fps["va"], fps["afew"])]
    return {"clips": clips, "frames_per_clip": frames, "frames": total, "size": f"{SIZE[0]}x{SIZE[1]}",
            "rounds": rounds, "jobs": jobs,
            "afew_fps": statistics.median(fps["afew"]), "va_fps": statistics.median(fps["va"]),
            "ratio": statistics.median(ratios), "ratios": ratios, "afew_fps_rounds": fps["afew"],
            "va_fps_rounds": fps["va"],
            "afew_frames_kept": sum(v["frames_kept"] for v in last["afew"]["videos"].values()),
            "va_tracks_ok": sum(v["status"] == "ok" for v in tracks),
            "va_frames_kept": sum(v["frames_kept"] for v in tracks),
            "va_frames_ambiguous": sum(v.get("frames_ambiguous", 0) for v in tracks)}


# The child reports its own peak as VmHWM (the high-water mark of its address space, which starts
# anew at exec), not getrusage's ru_maxrss, which Linux carries over from the process it was forked
# from (this one, with TensorFlow loaded).
CHILD = ("import json, sys, time; from data_prep.datasets.va.layout import prepare; "
         "from data_prep.datasets.va.options import VaOptions; start = time.perf_counter(); "
         "m = prepare(sys.argv[1], sys.argv[2], VaOptions(layout='affwild2'), progress=False); "
         "took = time.perf_counter() - start; "
         "hwm = next(int(l.split()[1]) for l in open('/proc/self/status') if l.startswith('VmHWM:')); "
         "print(json.dumps({'seconds': took, 'hwm_kb': hwm, "
         "'tracks': {k: [v['status'], v['frames_total'], v['frames_kept'], v.get('segments', 0)] "
         "for k, v in m['videos'].items()}}))")


def _high_water_kb(pid: int) -> int:
    """VmHWM of a live process in kB (0 when it is gone)."""
    try:
        with open(f"/proc/{pid}/status") as f:
            return next((int(line.split()[1]) for line in f if line.startswith("VmHWM:")), 0)
    except OSError:
        return 0


def _sample(proc, decoders: dict) -> int:
    """Bytes of resident memory of `proc` and its descendants now (0 once it is gone); records
    each descendant's high-water mark in `decoders` (pid -> kB)."""
    import psutil

    try:
        members = [proc] + proc.children(recursive=True)
    except psutil.NoSuchProcess:
        return 0
    total = 0
    for p in members:
        try:
            total += p.memory_info().rss
        except psutil.NoSuchProcess:
            continue
        if p.pid != proc.pid:
            decoders[p.pid] = max(decoders.get(p.pid, 0), _high_water_kb(p.pid))
    return total


def memory(work: str, minutes: float, interval: float = 0.2) -> dict:
    """Part 2 (module docstring): peak memory of `prepare va` on one long two-person video."""
    frames = max(8, round(minutes * 60 * FPS))
    src, out = os.path.join(work, "long_src"), os.path.join(work, "long_out")
    start = time.perf_counter()
    write_two_person(src, "long", frames, seed=1000)
    written = time.perf_counter() - start
    shutil.rmtree(out, ignore_errors=True)
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": os.environ.get("TF_CPP_MIN_LOG_LEVEL", "2")}
    child = subprocess.Popen([sys.executable, "-c", CHILD, src, out], stdout=subprocess.PIPE, env=env)
    peak_tree, decoders = 0, {}
    try:
        import psutil

        handle = psutil.Process(child.pid)
        while child.poll() is None:
            peak_tree = max(peak_tree, _sample(handle, decoders))
            time.sleep(interval)
    except ImportError:  # psutil is optional: the child's own figure remains
        peak_tree = None
    stdout, _ = child.communicate()
    if child.returncode != 0:
        raise RuntimeError(f"prepare va on the long video exited {child.returncode}")
    result = json.loads(stdout.decode().strip().splitlines()[-1])
    return {"minutes": minutes, "frames": frames, "size": f"{SIZE[0]}x{SIZE[1]}", "write_seconds": written,
            "prepare_seconds": result["seconds"], "prepare_fps": frames / result["seconds"],
            "peak_rss_mb": result["hwm_kb"] / 1024,
            "peak_subprocess_rss_mb": max(decoders.values(), default=0) / 1024 if peak_tree is not None else None,
            "peak_tree_rss_mb": None if peak_tree is None else peak_tree / 2 ** 20, "tracks": result["tracks"]}



def print_report(report: dict, min_ratio: float = 0.8, max_mb: float = 2048) -> None:
    print(f"{report['cpu']}, {report['cpu_count']} cores")
    s = report.get("speed")
    if s:
        print(f"\n1. {s['clips']} two-person clips of {s['frames_per_clip']} frames at {s['size']} ({s['frames']} "
              f"frames), {s['rounds']} interleaved rounds, -j {s['jobs']}; median of the rounds")
        print(f"{'command':44s} {'frames/s':>9s} {'kept':>7s}")
        print(f"{'prepare afew (best face, aligned, audio)':44s} {s['afew_fps']:9.1f} {s['afew_frames_kept']:7d}")
        print(f"{'prepare va (every face, 2 tracks per clip)':44s} {s['va_fps']:9.1f} {s['va_frames_kept']:7d}"
              f"  ({s['va_tracks_ok']} tracks, {s['va_frames_ambiguous']} ambiguous frames)")
        print(f"ratio va / afew: {s['ratio']:.2f}x (rounds: {', '.join(f'{r:.2f}' for r in s['ratios'])}); "
              f"target >= {min_ratio:g}x: {'met' if s['ratio'] >= min_ratio else 'NOT met'}")
    m = report.get("memory")
    if m:
        sampled = m["peak_tree_rss_mb"] is not None
        tree = (f"largest ffmpeg subprocess {m['peak_subprocess_rss_mb']:.0f} MB, process tree (sampled every 0.2 s) "
                f"{m['peak_tree_rss_mb']:.0f} MB" if sampled else "subprocesses not measured (no psutil)")
        print(f"\n2. prepare va on one {m['size']} two-person video of {m['minutes']:g} min ({m['frames']} frames): "
              f"{m['prepare_seconds']:.1f} s, {m['prepare_fps']:.1f} frames/s")
        print(f"peak RSS: prepare process {m['peak_rss_mb']:.0f} MB, {tree}")
        worst = max(m["peak_rss_mb"] + (m["peak_subprocess_rss_mb"] or 0), m["peak_tree_rss_mb"] or 0)
        print(f"target < {max_mb:g} MB (for 15000 frames): {'met' if worst < max_mb else 'NOT met'} at "
              f"{m['frames']} frames")


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", default="data/bench_prepare_va", help="work directory (recreated)")
    parser.add_argument("--clips", type=int, default=4, help="two-person clips of part 1 (0: skip part 1)")
    parser.add_argument("--frames", type=int, default=100, help="frames per clip of part 1")
    parser.add_argument("--rounds", type=int, default=2, help="timed rounds of part 1 (each command once per round)")
    parser.add_argument("--jobs", type=int, default=1, help="worker processes of both commands in part 1")
    parser.add_argument("--minutes", type=float, default=1.0,
                        help="length of part 2's video at 25 fps (10: the 15,000-frame target; 0: skip part 2)")
    args = parser.parse_args(argv)
    if args.clips < 0 or args.frames < 8 or args.rounds < 1 or args.minutes < 0:
        parser.error("--clips >= 0, --frames >= 8, --rounds >= 1 and --minutes >= 0")

    shutil.rmtree(args.out, ignore_errors=True)
    os.makedirs(args.out)
    report = {"cpu": cpu_name(), "cpu_count": os.cpu_count()}
    if args.clips:
        report["speed"] = speed(args.out, args.clips, args.frames, args.rounds, args.jobs)
    if args.minutes:
        report["memory"] = memory(args.out, args.minutes)
    print_report(report)
    with open(os.path.join(args.out, "bench_prepare_va.json"), "w") as f:
        json.dump(report, f, indent=1)
    print(f"written {os.path.join(args.out, 'bench_prepare_va.json')}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
