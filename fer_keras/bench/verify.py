"""`make bench-verify`: `fer-keras verify` on a prepared dataset beside a plain read of its files.

The baseline is `cat FILES > /dev/null`, the least any check must do; the full check (sizes,
SHA-256, counts, in parallel over files) and the `--records` check (every record through
TFRecord's CRCs and the schema parser) are timed in the same run, in interleaved rounds, each
the median of its rounds. All read from the page cache after the first round, so the figures are
CPU costs: on a cold disk every method waits on the same reads.
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import time

from fer_keras.data import integrity, manifest as manifest_file


def measure(root, rounds: int = 5, jobs: int = 4) -> dict:
    manifest = manifest_file.read(root)
    files = [os.path.join(root, rel) for rel in integrity.shards(manifest)]
    size = sum(os.path.getsize(f) for f in files)
    methods = {
        "cat > /dev/null": lambda: subprocess.run(["cat", *files], stdout=subprocess.DEVNULL, check=True),
        "verify": lambda: integrity.check(root, jobs=jobs),
        "verify --records": lambda: integrity.check(root, jobs=jobs, records=True),
    }
    for run in methods.values():  # warm the page cache and TensorFlow's import
        run()
    seconds = {name: [] for name in methods}
    for r in range(rounds):
        for name in (list(methods) if r % 2 == 0 else list(reversed(methods))):
            tick = time.perf_counter()
            methods[name]()
            seconds[name].append(time.perf_counter() - tick)
    base = statistics.median(seconds["cat > /dev/null"])
    rows = [{"method": name, "seconds": statistics.median(s), "mb_per_s": size / 1e6 / statistics.median(s),
             "vs_cat": statistics.median(s) / base} for name, s in seconds.items()]
    return {"root": str(root), "files": len(files), "mb": size / 1e6, "rounds": rounds, "rows": rows}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("root", help="a prepared dataset (e.g. data/demo_prepared after make demo)")
    parser.add_argument("--rounds", type=int, default=5, help="timed rounds (default 5)")
    parser.add_argument("--out", help="also write the figures as JSON here")
    args = parser.parse_args(argv)
    report = measure(args.root, args.rounds)
    print(f"{report['root']}: {report['files']} shards, {report['mb']:.1f} MB, median of {report['rounds']} rounds")
    print(f"{'method':20s} {'seconds':>8s} {'MB/s':>8s} {'time vs cat':>12s}")
    for row in report["rows"]:
        print(f"{row['method']:20s} {row['seconds']:8.3f} {row['mb_per_s']:8.0f} {row['vs_cat']:11.2f}x")
    if args.out:
        with open(args.out, "w") as f:
            json.dump(report, f, indent=1)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
