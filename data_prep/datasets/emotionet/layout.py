"""EmotioNet: a download folder (`fer-keras download emotionet`) -> single-frame records with
per-frame AU labels (or valence/arousal) in the shared schema.

The download folder holds `labels.csv` (the sheet as read: URL, AUs 1 to 60) and `index.jsonl`
(URL -> file, status); every image downloaded is one record, its AU row turned into the label
mode's targets:
- ``60``: every AU, 999 -> 0 (thesis 004 §4.1.2; it calls this the wrong thing to do, and Table 3
  shows why: 49 AUs are always 0);
- ``11``: AUs 1, 2, 4, 5, 6, 9, 12, 17, 20, 25, 26, images with a 999 among them dropped (§4.3);
- ``masked``: every AU, 999 kept: the masked loss (fer_keras.losses) ignores it.
With ``va_csv`` the records are the valence/arousal subset instead (§5): the images the CSV names,
valence and arousal divided by ``va_scale``.
The split is a seeded random draw in the thesis's proportions (15,000/6,400, 10,282/4,424, 800/200),
the same for every rerun; the images are stored as their central square (or MTCNN's face) at
``image_size`` px, for slim's crops to work within. A synthetic source (`fer-keras synth emotionet`)
is first downloaded from its own local server (nothing leaves the machine).
"""
from __future__ import annotations

import csv
import hashlib
import json
import os
from concurrent.futures import ThreadPoolExecutor

import cv2
import numpy as np
from tqdm import tqdm

from data_prep.datasets.emotionet.fetch import LABELS
from data_prep.datasets.emotionet.options import EmotionetOptions
from data_prep.datasets.emotionet.sheet import VALUES
from data_prep.download import INDEX, read_index
from data_prep.errors import BadInput
from data_prep.store import PreparedStore, encode_image, safe_join
from fer_keras.classes import EMOTIONET_11_AUS, EMOTIONET_AUS
from fer_keras.data.schema import UNLABELLED, VideoRecord, serialize
from fer_keras.durable import write_atomic
from fer_keras.losses import AU_UNKNOWN


def read_labels(folder) -> dict[str, np.ndarray]:
    """{URL: (60,) int16} of a download folder's labels.csv, with a clear error for another layout."""
    path = os.path.join(folder, LABELS)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"{path}: no such file; {folder} is not an EmotioNet download folder "
                                f"(run `fer-keras download emotionet SHEET {folder}` first)")
    out = {}
    with open(path, newline="", encoding="utf-8") as f:
        reader = csv.reader(f)
        head = next(reader, [])
        if head[:1] != ["url"] or len(head) != 1 + len(EMOTIONET_AUS):
            raise ValueError(f"{path}: not a labels.csv written by the download (header {head[:3]}...)")
        for line, row in enumerate(reader, start=2):
            values = np.array(row[1:], np.int16) if len(row) == len(head) else None
            if values is None or not np.isin(values, VALUES).all():
                raise ValueError(f"{path}: line {line} is damaged; download again to rewrite it")
            out[row[0]] = values
    return out


def targets(aus: np.ndarray, mode: str) -> tuple[np.ndarray | None, str | None]:
    """(float32 targets, None), or (None, why the image is dropped) in the label mode."""
    if mode == "60":
        return np.where(aus == AU_UNKNOWN, 0, aus).astype(np.float32), None
    if mode == "masked":
        return aus.astype(np.float32), None
    picked = aus[[au - 1 for au in EMOTIONET_11_AUS]]
    unknown = [au for au, v in zip(EMOTIONET_11_AUS, picked) if v == AU_UNKNOWN]
    if unknown:
        return None, f"AU {', '.join(map(str, unknown))} is 999 (occluded or not annotated)"
    return picked.astype(np.float32), None


def read_va(path, urls_by_file: dict[str, str], scale: float) -> tuple[dict[str, np.ndarray], list[dict]]:
    """({URL: (valence, arousal) / scale}, problems) of the user's CSV (image, valence, arousal);
    `image` is a URL or a downloaded file's name. Malformed rows are reported with their line."""
    out, problems = {}, []
    with open(path, newline="", encoding="utf-8-sig") as f:
        reader = csv.reader(f)
        for line, row in enumerate(reader, start=1):
            if line == 1 and row and row[0].strip().lower() in ("image", "url", "file"):
                continue
            if not row or not any(cell.strip() for cell in row):
                continue
            try:
                image, valence, arousal = (cell.strip() for cell in row)
                va = np.array([float(valence), float(arousal)], np.float32)
            except ValueError:
                problems.append({"line": line, "problem": f"expected image,valence,arousal, got {row[:4]}"})
                continue
            if not np.isfinite(va).all() or np.abs(va).max() > scale:
                problems.append({"line": line, "problem": f"valence/arousal {va.tolist()} outside [-{scale:g}, "
                                                          f"{scale:g}] (set --va-scale)"})
                continue
            out[urls_by_file.get(image, image)] = va / scale
    return out, problems


def split_of(url: str, opts: EmotionetOptions, order: dict[str, float]) -> str:
    """train / val / test of an image: its seeded rank among all candidates against the shares."""
    rank = order[url]
    train = opts.training_share()
    if rank >= train:
        return "test"
    return "val" if rank < train * opts.val_fraction else "train"


def _ranks(urls: list[str], seed: int) -> dict[str, float]:
    """Each URL's place in a seeded shuffle, as a fraction in [0, 1): the split of an image depends on
    the seed and the candidates only, so a rerun (or a resumed run) splits the same way."""
    keyed = sorted(urls, key=lambda u: hashlib.blake2b(f"{seed}/{u}".encode(), digest_size=8).digest())
    return {u: i / len(keyed) for i, u in enumerate(keyed)}


def _square(image: np.ndarray, size: int) -> np.ndarray:
    h, w = image.shape[:2]
    side = min(h, w)
    y0, x0 = (h - side) // 2, (w - side) // 2
    crop = image[y0:y0 + side, x0:x0 + side]
    return cv2.resize(crop, (size, size), interpolation=cv2.INTER_AREA if side > size else cv2.INTER_LINEAR)


class ImagePreparer:
    """One downloaded image -> (entry, record) or (entry, None) with the reason."""

    def __init__(self, opts: EmotionetOptions, folder: str):
        self.opts, self.folder = opts, folder
        self.detector = None
        if opts.faces:
            from data_prep.face import FaceDetector

            self.detector = FaceDetector()

    def pixels(self, path: str) -> np.ndarray:
        image = cv2.imread(path, cv2.IMREAD_COLOR)
        if image is None:
            raise BadInput(path, "unreadable_image", "OpenCV cannot decode it")
        image = cv2.cvtColor(image, cv2.COLOR_BGR2RGB)
        if self.detector is None:
            return _square(image, self.opts.image_size)
        from data_prep.face import box_crop

        face = self.detector.detect([image])[0]
        if face is None:
            raise BadInput(path, "no_face", "MTCNN found no face")
        return box_crop(image, face.box, self.opts.image_size)

    def __call__(self, item) -> tuple[dict, bytes | None]:
        entry, file, labels = item
        try:
            frame = encode_image(self.pixels(safe_join(self.folder, file)), "jpeg", self.opts.jpeg_quality)
        except BadInput as err:
            return {**entry, "status": "failed", "frames_kept": 0, "path": err.path, "reason": err.reason,
                    "message": err.message}, None
        va = labels if self.opts.mode == "va" else None
        record = serialize(VideoRecord(
            video_id=entry["id"], label=UNLABELLED, fps=1.0, face_size=self.opts.image_size, frames=[frame],
            frame_index=np.zeros(1, np.int64), frame_time=np.zeros(1), audio_lld=np.zeros((1, 0), np.float32),
            has_audio=False, source_frames=1, dataset="emotionet",
            action_units=None if va is not None else labels[None], valence_arousal=None if va is None else va[None]))
        return {**entry, "status": "ok", "frames_kept": 1}, record


def _items(folder: str, opts: EmotionetOptions, store: PreparedStore, va_csv: str | None) -> tuple[list, dict]:
    """(work items, selection counts): every downloaded image with its targets and split."""
    labels = read_labels(folder)
    done = {url: e for url, e in read_index(folder).items() if e.get("status") == "ok" and url in labels}
    counts = {"downloaded": len(done), "dropped_999": 0}
    if opts.mode == "va":
        by_file = {os.path.basename(e["file"]): url for url, e in done.items()}
        va, problems = read_va(va_csv, by_file, opts.va_scale)
        counts.update(va_rows=len(va) + len(problems), va_malformed=problems,
                      va_not_downloaded=sorted(set(va) - set(done))[:50])
        candidates = {url: va[url] for url in done if url in va}
    else:
        candidates = {}
        for url in done:
            target, _ = targets(labels[url], opts.mode)
            if target is None:
                counts["dropped_999"] += 1
            else:
                candidates[url] = target
    order = _ranks(sorted(candidates), opts.seed)
    items = []
    for url, target in candidates.items():
        split = split_of(url, opts, order)
        name = os.path.splitext(os.path.basename(done[url]["file"]))[0]
        entry = {"key": f"{split}/{name}", "id": name, "split": split, "source": url, "label": UNLABELLED,
                 "label_name": None, "frames_total": 1}
        if store.owns(entry["key"]) and not store.is_done(entry["key"]):
            items.append((entry, done[url]["file"], target))
    return sorted(items, key=lambda it: it[0]["key"]), counts


def prepare(src, out, opts: EmotionetOptions | None = None, progress: bool = True) -> dict:
    """Prepare the download folder `src` (or a synthetic source, downloaded first) into `out`."""
    opts = opts or EmotionetOptions()
    folder = os.path.abspath(src)
    va_csv = opts.va_path(folder) if opts.va_csv else None  # refused before anything is written
    if not os.path.exists(os.path.join(folder, INDEX)) and os.path.exists(os.path.join(folder, "server")):
        from data_prep.datasets.emotionet.fetch import download_synthetic

        folder = download_synthetic(folder, progress=progress)
    mode = opts.mode
    labels = {"va": True} if mode == "va" else {
        "au_dim": len(EMOTIONET_11_AUS) if mode == "11" else len(EMOTIONET_AUS),
        "au_names": [f"AU{au}" for au in (EMOTIONET_11_AUS if mode == "11" else EMOTIONET_AUS)],
        "unknown": AU_UNKNOWN if mode == "masked" else None}
    header = {"dataset": "emotionet", "classes": [], "source": folder, "options": opts.content(),
              "audio": {"lld_dim": 0, "functionals_dim": 0}, "labels": labels}
    store = PreparedStore(out, header, opts.shard_size, verify=opts.verify, shard=opts.shard)
    items, counts = _items(folder, opts, store, va_csv)
    preparer = ImagePreparer(opts, folder)
    bar = tqdm(total=len(items), desc="emotionet", unit="image", disable=not progress)
    jobs = 1 if opts.faces else opts.jobs  # MTCNN is one TensorFlow graph: one thread uses both cores
    try:
        with ThreadPoolExecutor(jobs) as pool:  # OpenCV's decode and resize release the GIL
            for start in range(0, len(items), 64 * jobs):  # a block at a time: results never pile up
                for entry, record in pool.map(preparer, items[start:start + 64 * jobs]):
                    if record is None:
                        store.fail(entry, save=False)
                    else:
                        store.add(entry, record)
                    bar.update()
    finally:  # on Ctrl-C too: whatever was finished is written as complete shards
        bar.close()
        store.manifest["selection"] = counts
        manifest = store.close()
    if not opts.shard:
        finish(out, manifest)
    return manifest


def finish(out, manifest: dict) -> None:
    """What a whole preparation (or a merge of its shares) writes beside the manifest: selection.json,
    how many downloaded images each rule kept or dropped."""
    write_atomic(os.path.join(out, "selection.json"), json.dumps(manifest["selection"], indent=1))
