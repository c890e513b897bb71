"""`make bench-download`: the concurrent downloader against a one-at-a-time loop, in one run (issue 29 §2).

A few hundred small real JPEGs (scikit-image's astronaut, cropped and resized, a few KB each) are
served by the local test server with an injected latency per response (100 ms by default, about a
distant image host's), then downloaded twice by the same engine (data_prep/download.py), each into
a fresh folder: once one at a time (``connections=1, per_host=1``: the baseline, a plain loop with
the same checks and writes) and once concurrently (``--connections``, default 16). The server is a
single host, so ``per_host`` is set to ``connections`` for the concurrent run. Reported: images/s of
both, the ratio, and the most connections the server saw open at once. Targets: ratio >= 8x, and
never more connections open than configured. The exit status is 1 when a target is missed.
"""
from __future__ import annotations

import argparse
import io
import json
import os
import sys
import tempfile

from data_prep.bench import cpu_name


def write_images(root: str, n: int) -> dict:
    """``n`` JPEGs of 64 to 127 px cut from the astronaut photo; returns the server's routes."""
    import numpy as np
    from PIL import Image
    from skimage import data

    photo = Image.fromarray(data.astronaut())
    rng = np.random.default_rng(0)
    routes = {}
    for i in range(n):
        x, y, side = int(rng.integers(0, 256)), int(rng.integers(0, 256)), int(rng.integers(128, 256))
        crop = photo.crop((x, y, x + side, y + side)).resize((64 + i % 64,) * 2)
        buf = io.BytesIO()
        crop.save(buf, "JPEG", quality=90)
        with open(os.path.join(root, f"{i:04d}.jpg"), "wb") as f:
            f.write(buf.getvalue())
        routes[f"/img/{i:04d}.jpg"] = {"kind": "file", "path": f"{i:04d}.jpg"}
    return routes


def run(server, urls: list, out: str, connections: int, per_host: int) -> dict:
    from data_prep.download import DownloadOptions, download

    server.reset_counts()
    summary = download(urls, out, DownloadOptions(connections=connections, per_host=per_host, retries=0),
                       progress=False)
    if summary["ok"] != len(urls):
        raise RuntimeError(f"{len(urls) - summary['ok']} of {len(urls)} images failed: {summary['failed']}")
    return {"connections": connections, "per_host": per_host, "seconds": summary["seconds"],
            "images_per_s": summary["images_per_s"], "max_open": server.max_open}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--images", type=int, default=240, help="images served (default 240)")
    parser.add_argument("--connections", type=int, default=16, help="connections of the concurrent run (default 16)")
    parser.add_argument("--latency", type=float, default=0.1, help="seconds added to each response (default 0.1)")
    parser.add_argument("--json", help="also write the figures to this file")
    args = parser.parse_args(argv)
    from data_prep.datasets.emotionet.server import LocalServer

    with tempfile.TemporaryDirectory(prefix="bench_download_") as tmp:
        root = os.path.join(tmp, "web")
        os.makedirs(root)
        routes = write_images(root, args.images)
        size = sum(os.path.getsize(os.path.join(root, f)) for f in os.listdir(root)) / args.images
        with LocalServer(root, routes, latency=args.latency) as server:
            urls = [server.url(target) for target in routes]
            baseline = run(server, urls, os.path.join(tmp, "one"), 1, 1)
            ours = run(server, urls, os.path.join(tmp, "many"), args.connections, args.connections)
    ratio = ours["images_per_s"] / baseline["images_per_s"]
    print(f"bench-download: {args.images} JPEGs of {size / 1024:.1f} KB on average, {args.latency * 1000:.0f} ms "
          f"latency per response, one local server (127.0.0.1); {cpu_name()}, {os.cpu_count()} cores")
    print(f"{'method':<58} {'images/s':>9} {'seconds':>8} {'max open':>9}")
    for label, row in (("one at a time (same engine, connections=1, per_host=1)", baseline),
                       (f"concurrent (connections={args.connections}, per_host={args.connections})", ours)):
        print(f"{label:<58} {row['images_per_s']:>9.1f} {row['seconds']:>8.2f} {row['max_open']:>9}")
    ratio_ok, bound_ok = ratio >= 8, ours["max_open"] <= args.connections
    print(f"speed-up: {ratio:.1f}x (target >= 8x: {'met' if ratio_ok else 'MISSED'}); most connections open at "
          f"once: {ours['max_open']} (bound {args.connections}: {'held' if bound_ok else 'BROKEN'})")
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"images": args.images, "latency": args.latency, "mean_bytes": round(size),
                       "baseline": baseline, "concurrent": ours, "ratio": round(ratio, 2), "cpu": cpu_name(),
                       "cores": os.cpu_count()}, f, indent=1)
    return 0 if ratio_ok and bound_ok else 1


if __name__ == "__main__":
    sys.exit(main())
