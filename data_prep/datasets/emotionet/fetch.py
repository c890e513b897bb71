"""`fer-keras download emotionet SHEET OUT`: EmotioNet's sheet read, then its images downloaded.

The sheet as read (row problems reported, duplicates kept once) becomes `OUT/labels.csv` (URL, AUs 1
to 60) and `OUT/sheet_report.json`, so preparation needs only OUT; the images come through the one
download engine (data_prep/download.py). A folder holds the download of one sheet: a rerun with a
sheet whose labels differ is refused rather than mixed in.

`python -m data_prep.datasets.emotionet.fetch SYNTHETIC OUT` downloads a synthetic set (`fer-keras
synth emotionet`) from its own server on 127.0.0.1, which is what `make download-emotionet` does
without SHEET.
"""
from __future__ import annotations

import argparse
import csv
import io
import json
import os
import sys

from data_prep import share
from data_prep.datasets.emotionet.sheet import read_sheet
from fer_keras.classes import EMOTIONET_AUS
from fer_keras.durable import write_atomic

LABELS = "labels.csv"
REPORT = "sheet_report.json"


def _labels_text(sheet) -> str:
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(["url", *(f"AU{au}" for au in EMOTIONET_AUS)])
    writer.writerows([row.url, *row.aus.tolist()] for row in sheet.rows)
    return buf.getvalue()


def _publish(path, text: str, shard: str | None) -> None:
    """``path`` holds ``text`` whole. Workers of one download (--shard) all write the same text: each
    through a temporary file of its own, so none renames another's half-written one."""
    if shard is None:
        write_atomic(path, text)
        return
    tmp = "{}.{}-of-{}.tmp".format(path, *share.parse(shard))
    with open(tmp, "w", encoding="utf-8") as f:
        f.write(text)
    os.replace(tmp, path)


def fetch(sheet_path, out, opts, progress: bool = True, connect_to=None) -> dict:
    """Read the sheet into OUT's labels.csv and download its URLs; returns the download's summary."""
    from data_prep.download import download

    sheet = read_sheet(sheet_path)
    os.makedirs(out, exist_ok=True)
    labels_path, text = os.path.join(out, LABELS), _labels_text(sheet)
    if os.path.exists(labels_path):
        with open(labels_path, encoding="utf-8") as f:
            if f.read() != text:
                raise ValueError(f"{out} holds the download of another sheet (its {LABELS} differs from "
                                 f"{sheet_path}'s rows); use a new folder")
    else:
        _publish(labels_path, text, opts.shard)
    _publish(os.path.join(out, REPORT), json.dumps(sheet.report(), indent=1), opts.shard)
    print(f"{sheet_path}: {len(sheet.rows)} images, {len(sheet.problems)} rows skipped, "
          f"{len(sheet.duplicates)} duplicate URLs kept once ({os.path.join(out, REPORT)})")
    for problem in sheet.problems[:10]:
        print(f"  row {problem['row']}: {problem['problem']}")
    return download([row.url for row in sheet.rows], out, opts, progress=progress, connect_to=connect_to)


def download_synthetic(src, out=None, opts=None, progress: bool = True) -> str:
    """Download the synthetic set at `src` from its local server into `out` (default SRC/download)."""
    from data_prep.datasets.emotionet.server import LocalServer
    from data_prep.datasets.emotionet.synthetic import SERVER, TRUTH_FILE
    from data_prep.download import DownloadOptions

    out = out or os.path.join(src, "download")
    with open(os.path.join(src, TRUTH_FILE)) as f:
        truth = json.load(f)
    with open(os.path.join(src, "server", "routes.json")) as f:
        routes = json.load(f)
    # short limits: the synthetic web's stalled and huge responses end in seconds
    opts = opts or DownloadOptions(timeout=2.0, deadline=10.0, max_bytes=8 << 20, retries=1, backoff=0.1)
    with LocalServer(os.path.join(src, "server"), routes) as server:
        address = server.base_url.split("//", 1)[1]
        connect_to = {host: address if target == SERVER else target for host, target in truth["resolve"].items()}
        fetch(os.path.join(src, "emotionet.xlsx"), out, opts, progress=progress, connect_to=connect_to)
    return out


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description="Download a synthetic EmotioNet from its local server.")
    parser.add_argument("src", help="folder written by `fer-keras synth emotionet`")
    parser.add_argument("out", help="download folder")
    args = parser.parse_args(argv)
    if not os.path.isdir(os.path.join(args.src, "server")):
        parser.error(f"{args.src}: not a synthetic EmotioNet (no server/ folder); run make synth-emotionet first")
    print(download_synthetic(args.src, args.out))
    return 0


if __name__ == "__main__":
    sys.exit(main())
