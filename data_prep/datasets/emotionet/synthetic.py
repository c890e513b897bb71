"""A synthetic EmotioNet: the label sheet (.xlsx and .csv) and the web it points at.

EmotioNet ships no images, only URLs, so its synthetic set is a small web: `server/` holds the
images and `server/routes.json` says how each URL answers, served by server.py's LocalServer on
127.0.0.1. The URLs name the hosts ``emotionet.test`` and ``img2.emotionet.test`` (RFC 6761's
reserved .test names, which never resolve): a run maps them to the local server by `resolve`, as
curl's --resolve does, so the set works on any port and nothing leaves the machine.

Each image is the astronaut's head from scikit-image over a textured background, at a web size
(640x480 to 1280x720, portrait too), with one drawn mark per active AU of the 11 thesis 004 keeps
(brows raised or lowered, eyes widened, cheeks, nose lines, lip corners, chin, a stretched, parted
or dropped mouth), so a CNN can learn the labels from the pixels. They come as RGB and grey JPEG,
PNG with an alpha channel and GIF. Around them, the failures the thesis met and the ones a
downloader must survive: 404, 403, 410, 500, 503, redirects (followed, and a loop), a stalled and a
slow response, a truncated body, HTML served as image/jpeg, a huge body, a reset connection, an
unresolvable host, a refused port, TLS to a plain-HTTP server, non-HTTP schemes and hostile names
(percent-encoded separators, NUL, Unicode look-alikes, queries, a very long URL, commas). The sheet
also holds malformed rows and a duplicate. `synthetic_truth.json` lists every URL's expected
outcome and every sheet row's problem; `va.csv` annotates some images with valence and arousal.
"""
from __future__ import annotations

import csv
import json
import os
from dataclasses import dataclass

import cv2
import numpy as np

from data_prep.options import check, option
from data_prep.synthetic_render import background, face_sprite
from fer_keras.classes import EMOTIONET_11_AUS, EMOTIONET_AUS

HOSTS = ("emotionet.test", "img2.emotionet.test")
SERVER = "SERVER"  # stands for the local server's host:port in TRUTH["resolve"]
RESOLVE = {f"{HOSTS[0]}:80": SERVER, f"{HOSTS[1]}:80": SERVER, f"{HOSTS[0]}:443": SERVER,
           "refused.test:80": "127.0.0.1:1"}
TRUTH_FILE = "synthetic_truth.json"
SIZES = ((640, 480), (1280, 720), (480, 640), (800, 600), (500, 500), (1024, 768))
FORMATS = ("jpeg", "jpeg", "png_alpha", "jpeg", "gif", "grey_jpeg")
AU_P = 0.3  # share of active annotated AUs
UNKNOWN_P = 0.033  # share of 999 per annotated AU: about 69% of images keep all 11, as 14,706 of 21,400 did


def draw_aus(head: np.ndarray, aus: dict[int, int]) -> np.ndarray:
    """The 170x200 head sprite with one mark per active AU, placed where that AU acts (sprite pixels:
    brows y ~70, eyes y ~88, nose ~100, mouth ~126, chin ~150)."""
    img = head.copy()
    dark, line = (40, 25, 20), cv2.LINE_AA
    on = {au for au, v in aus.items() if v == 1}
    if 1 in on:  # inner brows raised
        for x in (74, 96):
            cv2.line(img, (x - 6, 62), (x + 6, 60), dark, 3, line)
    if 2 in on:  # outer brows raised
        for x0, x1 in ((52, 64), (106, 118)):
            cv2.line(img, (x0, 60), (x1, 58), dark, 3, line)
    if 4 in on:  # brows lowered and drawn together
        cv2.line(img, (66, 74), (80, 80), dark, 4, line)
        cv2.line(img, (90, 80), (104, 74), dark, 4, line)
    if 5 in on:  # upper lids raised: the whites show
        for x in (66, 104):
            cv2.ellipse(img, (x, 88), (9, 6), 0, 0, 360, (245, 245, 245), -1, line)
            cv2.circle(img, (x, 88), 3, dark, -1, line)
    if 6 in on:  # cheeks raised
        for x in (58, 112):
            cv2.circle(img, (x, 108), 9, (215, 90, 90), -1, line)
    if 9 in on:  # nose wrinkled
        for y in (94, 99, 104):
            cv2.line(img, (79, y), (91, y), dark, 2, line)
    if 12 in on:  # lip corners pulled up
        cv2.ellipse(img, (83, 116), (25, 12), 0, 20, 160, dark, 3, line)
    if 17 in on:  # chin raised
        cv2.ellipse(img, (84, 150), (12, 7), 0, 0, 360, (235, 200, 170), -1, line)
    if 20 in on:  # lips stretched
        cv2.line(img, (56, 127), (110, 127), dark, 3, line)
    if 25 in on:  # lips parted
        cv2.ellipse(img, (83, 128), (15, 3), 0, 0, 360, (70, 20, 25), -1, line)
    if 26 in on:  # jaw dropped
        cv2.ellipse(img, (83, 134), (10, 11), 0, 0, 360, (50, 10, 15), -1, line)
    return img


def render_image(rng, aus: dict[int, int], size: tuple[int, int]) -> tuple[np.ndarray, np.ndarray]:
    """(RGB uint8 image of `size` (w, h), alpha of the head) with the marked head somewhere in it."""
    w, h = size
    head, mask = face_sprite()
    head = draw_aus(head.astype(np.float32), aus)
    scale = rng.uniform(0.45, 0.8) * h / head.shape[0]
    head = cv2.resize(head, None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA)
    mask = cv2.resize(mask, (head.shape[1], head.shape[0]))[..., None]
    side = min(w, h)  # inside the central square, as a photo's subject mostly is
    x0 = int((w - side) / 2 + rng.uniform(0, max(side - head.shape[1], 1)))
    y0 = int((h - side) / 2 + rng.uniform(0, max(side - head.shape[0], 1)))
    image, alpha = background(rng, h, w), np.zeros((h, w), np.float32)
    region = (slice(y0, y0 + head.shape[0]), slice(x0, x0 + head.shape[1]))
    image[region] = mask * head + (1 - mask) * image[region]
    alpha[region] = mask[..., 0]
    return np.clip(image, 0, 255).astype(np.uint8), alpha


def _encode(image: np.ndarray, alpha: np.ndarray, kind: str) -> tuple[bytes, str]:
    """(bytes, extension) of the image in `kind`'s format, as web images come."""
    bgr = cv2.cvtColor(image, cv2.COLOR_RGB2BGR)
    if kind == "png_alpha":  # background transparent: the downloader flattens it on white
        bgra = np.dstack([bgr, np.clip(alpha * 255 + 40, 0, 255).astype(np.uint8)])
        return cv2.imencode(".png", bgra)[1].tobytes(), "png"
    if kind == "grey_jpeg":
        return cv2.imencode(".jpg", cv2.cvtColor(bgr, cv2.COLOR_BGR2GRAY), [cv2.IMWRITE_JPEG_QUALITY, 90])[1].tobytes(), "jpg"
    if kind == "gif":
        import io

        from PIL import Image

        buf = io.BytesIO()
        Image.fromarray(image).convert("P", palette=Image.Palette.ADAPTIVE).save(buf, "GIF")
        return buf.getvalue(), "gif"
    return cv2.imencode(".jpg", bgr, [cv2.IMWRITE_JPEG_QUALITY, 90])[1].tobytes(), "jpg"


def _labels(rng) -> np.ndarray:
    """60 AU labels as the manual sheet has them: the 11 annotated ones 0/1 (a few 999), the rest 999."""
    row = np.full(len(EMOTIONET_AUS), 999, np.int16)
    for au in EMOTIONET_11_AUS:
        row[au - 1] = 999 if rng.random() < UNKNOWN_P else int(rng.random() < AU_P)
    return row


def _va(rng, row: np.ndarray) -> tuple[int, int]:
    """Integer valence, arousal in [-10, 10] that follow the AUs (smiles pleasant, open mouths aroused)."""
    au = {a: int(row[a - 1] == 1) for a in EMOTIONET_11_AUS}
    valence = 7 * au[12] + 2 * au[6] - 5 * au[4] - 2 * au[20] - 2 * au[9] + rng.normal(0, 1)
    arousal = 6 * au[26] + 4 * au[5] + 3 * au[25] + 2 * au[1] - 4 + rng.normal(0, 1)
    return int(np.clip(round(valence), -10, 10)), int(np.clip(round(arousal), -10, 10))


# How the web answers besides the good images: (name, behaviour, expected outcome). Outcomes name
# what went wrong in words the downloader's failure classes are checked against in the tests.
FAILURES = (
    ("gone/404.jpg", {"kind": "status", "code": 404}, "http_404"),
    ("gone/403.jpg", {"kind": "status", "code": 403}, "http_4xx"),
    ("gone/410.jpg", {"kind": "status", "code": 410}, "http_4xx"),
    ("error/500.jpg", {"kind": "status", "code": 500}, "http_5xx"),
    ("error/503.jpg", {"kind": "status", "code": 503}, "http_5xx"),
    ("loop/a.jpg", {"kind": "redirect", "location": "/loop/b.jpg", "code": 302}, "redirect"),
    ("loop/b.jpg", {"kind": "redirect", "location": "/loop/a.jpg", "code": 301}, None),  # reached only through loop/a
    ("page/photo.jpg", {"kind": "html"}, "not_image"),
    ("cut/photo.jpg", {"kind": "truncated", "path": "IMAGE"}, "truncated"),
    ("stall/photo.jpg", {"kind": "stall", "path": "IMAGE"}, "timeout"),
    ("big/photo.jpg", {"kind": "huge", "bytes": 64 << 20}, "too_large"),
    ("reset/photo.jpg", {"kind": "reset"}, "reset"),
)
# Hosts and schemes that fail before any server answers: (URL, expected outcome).
UNREACHABLE = (
    ("http://unresolvable.invalid/face.jpg", "dns"),
    ("http://refused.test/face.jpg", "refused"),
    (f"https://{HOSTS[0]}/tls/face.jpg", "tls"),
    (f"ftp://{HOSTS[0]}/face.jpg", "bad_url"),
    ("file:///etc/passwd", "bad_url"),
)
# Path-and-query of good images whose names are hostile to a naive URL -> file name mapping.
HOSTILE = ("img/..%2F..%2F..%2Fescape.jpg", "img/%2e%2e%2f%2e%2e%2fescape.jpg", "img/face.jpg?size=200x200",
           "img/face.jpg?size=100x100", "img/%E2%88%95etc%E2%88%95passwd.jpg", "img/%EF%BC%8Fslash.jpg",
           "img/nul%00byte.jpg", "img/back%5Cslash.jpg", "img/" + "long" * 300 + ".jpg", "img/face,smile.jpg",
           "img/trailing.jpg.", "img/UPPER.JPG")


@dataclass
class EmotionetSpec:
    """Size and content of a synthetic EmotioNet."""

    images: int = option(60, "good images (besides the hostile-named ones)", low=1)
    seed: int = option(0, "random seed")
    header: bool = option(False, "write a header row (URL, AU1 ... AU60) in the sheets")
    failures: bool = option(True, "leave out the failing URLs and the malformed sheet rows", flag="--no-failures")
    va_images: int = option(40, "images annotated with valence/arousal in va.csv (at most --images)", low=0)
    min_side: int = option(480, "smallest image side (web sizes 640x480 .. 1280x720 keep their aspect)",
                           low=32, high=720, unit="px")

    def __post_init__(self):
        check(self, "synthetic emotionet option")
        self.va_images = min(self.va_images, self.images)


def _sheet_rows(urls: list[tuple[str, np.ndarray]], spec: EmotionetSpec) -> tuple[list[list], list[dict]]:
    """(rows, problems): the sheet's rows in order, malformed ones spread among them, and each one's
    row number (the header, when written, is row 1) and problem."""
    rows = [([url, *map(int, labels)], None) for url, labels in urls]
    if spec.failures:
        good = rows[0][0]
        bad = [([good[0] + "?short", *good[1:-1]], "60 columns"),
               ([good[0] + "?two", *good[1:5], 2, *good[6:]], "AU 5 is '2'"),
               (["", *good[1:]], "empty URL"),
               ([good[0] + "?text", "yes", *good[2:]], "AU 1 is 'yes'"),
               (list(rows[1][0]), "duplicate")]
        for i, item in enumerate(bad):
            rows.insert(min(2 + i * max(len(rows) // len(bad), 1), len(rows)), item)
    offset = 2 if spec.header else 1
    problems = [{"row": i + offset, "url": row[0], "problem": problem}
                for i, (row, problem) in enumerate(rows) if problem]
    return [row for row, _ in rows], problems


def _write_sheets(out: str, rows: list[list], header: bool) -> None:
    """emotionet.xlsx (openpyxl) and emotionet.csv: plain comma-separated, URLs unquoted even when they
    hold commas, as the thesis's conversion wrote them (the reader must read them back whole)."""
    import openpyxl

    head = ["URL", *(f"AU{au}" for au in EMOTIONET_AUS)]
    book = openpyxl.Workbook()
    sheet = book.active
    for row in ([head] if header else []) + rows:
        sheet.append(row)
    book.save(os.path.join(out, "emotionet.xlsx"))
    with open(os.path.join(out, "emotionet.csv"), "w", newline="") as f:
        for row in ([head] if header else []) + rows:
            f.write(",".join(map(str, row)) + "\r\n")


def write_emotionet(out, spec: EmotionetSpec | None = None) -> dict:
    """Write the synthetic set under `out`; returns the ground truth (also in synthetic_truth.json)."""
    spec = spec or EmotionetSpec()
    rng = np.random.default_rng(spec.seed)
    root = os.path.join(out, "server")
    os.makedirs(os.path.join(root, "images"), exist_ok=True)
    routes, truth_urls, sheet_urls = {}, [], []
    targets = [f"img/face-{i:05d}" for i in range(spec.images)] + (list(HOSTILE) if spec.failures else [])
    first_image = None
    for i, target in enumerate(targets):
        labels = _labels(rng)
        size = SIZES[i % len(SIZES)]
        size = tuple(int(round(s * spec.min_side / 480)) for s in size)
        kind = FORMATS[i % len(FORMATS)]
        data, ext = _encode(*render_image(rng, {au: int(labels[au - 1]) for au in EMOTIONET_11_AUS}, size), kind)
        rel = f"images/{i:05d}.{ext}"
        with open(os.path.join(root, rel), "wb") as f:
            f.write(data)
        if not target.startswith("img/face-"):
            path = target
        else:
            path = f"{target}.{ext}"
        behaviour = {"kind": "file", "path": rel, "content_type": "image/jpeg"}  # servers often mislabel
        if spec.failures and i == 3:  # one good image reached through two redirects
            routes[f"/moved/{i}.jpg"] = {"kind": "redirect", "location": f"/moved2/{i}.jpg", "code": 301}
            routes[f"/moved2/{i}.jpg"] = {"kind": "redirect", "location": f"http://{HOSTS[1]}/{path}", "code": 302}
            url_path = f"moved/{i}.jpg"
        elif spec.failures and i == 4:  # and one slow but within any deadline
            url_path = f"slow/{i}.{ext}"
            routes[f"/{url_path}"] = {"kind": "slow", "path": rel, "delay": 0.01}
        else:
            url_path = path
        routes[f"/{path}"] = behaviour
        url = f"http://{HOSTS[i % 2]}/{url_path}"
        first_image = first_image or rel
        sheet_urls.append((url, labels))
        truth_urls.append({"url": url, "expect": "ok", "format": kind, "size": list(size),
                           "aus": labels.tolist()})
    if spec.failures:
        for name, behaviour, expect in FAILURES:
            routes[f"/{name}"] = {k: (first_image if v == "IMAGE" else v) for k, v in behaviour.items()}
            if expect is not None:
                url = f"http://{HOSTS[0]}/{name}"
                sheet_urls.append((url, _labels(rng)))
                truth_urls.append({"url": url, "expect": expect, "aus": sheet_urls[-1][1].tolist()})
        for url, expect in UNREACHABLE:
            sheet_urls.append((url, _labels(rng)))
            truth_urls.append({"url": url, "expect": expect, "aus": sheet_urls[-1][1].tolist()})
    routes[f"/tls/face.jpg"] = {"kind": "file", "path": first_image}
    with open(os.path.join(root, "routes.json"), "w") as f:
        json.dump(routes, f, indent=1)
    rows, problems = _sheet_rows(sheet_urls, spec)
    _write_sheets(out, rows, spec.header)
    va = []
    for entry in truth_urls[:spec.va_images]:
        valence, arousal = _va(rng, np.array(entry["aus"]))
        va.append({"image": entry["url"], "valence": valence, "arousal": arousal})
    with open(os.path.join(out, "va.csv"), "w", newline="") as f:
        writer = csv.DictWriter(f, ("image", "valence", "arousal"))
        writer.writeheader()
        writer.writerows(va)
    truth = {"dataset": "emotionet", "seed": spec.seed, "hosts": list(HOSTS), "resolve": RESOLVE,
             "urls": truth_urls, "sheet_problems": problems, "header": spec.header, "va": va}
    with open(os.path.join(out, TRUTH_FILE), "w") as f:
        json.dump(truth, f, indent=1)
    return truth


def synth(out, spec: EmotionetSpec) -> str:
    """Write the set; one line saying what was written."""
    truth = write_emotionet(out, spec)
    good = sum(u["expect"] == "ok" for u in truth["urls"])
    return (f"wrote {out}: emotionet.xlsx and emotionet.csv ({len(truth['urls'])} URLs, {good} good images, "
            f"{len(truth['sheet_problems'])} malformed rows), va.csv ({len(truth['va'])} images) and server/ "
            f"(serve it with data_prep.datasets.emotionet.server)")
