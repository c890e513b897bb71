"""The URL downloader (data_prep/download.py) against the local server (issue 29 §2): every failure
class, redirects, conversions, the deadline, the name mapping, resuming, the connection bound, the
options; and (slow) a download killed with SIGKILL at random moments, then resumed."""
import argparse
import errno
import hashlib
import io
import json
import os
import random
import signal
import socket
import subprocess
import sys
import time

import numpy as np
import pytest
import urllib3
from PIL import Image

from data_prep import download as dl
from data_prep.datasets.emotionet.server import LocalServer
from data_prep.download import DownloadOptions, download, file_name, file_path, read_index, relative_path
from data_prep.options import add_arguments, from_args

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
FAST = dict(retries=0, timeout=5.0, deadline=1.0, max_bytes=256 * 1024, connections=4)


def _image(mode, size=(48, 32), color=(200, 40, 40)):
    pixels = np.zeros((size[1], size[0], 3), np.uint8)
    pixels[:] = color
    pixels[:, : size[0] // 2] = (30, 160, 60)  # two flat halves: lossy codecs keep their middles exact enough
    return Image.fromarray(pixels).convert(mode)


def _save(root, name, img, **kw) -> bytes:
    buf = io.BytesIO()
    img.save(buf, **kw)
    with open(os.path.join(root, name), "wb") as f:
        f.write(buf.getvalue())
    return buf.getvalue()


def _write_web(root) -> dict:
    """The images the server serves; returns the RGB JPEG's bytes and the routes."""
    rgb = _save(root, "rgb.jpg", _image("RGB"), format="JPEG", quality=90)
    _save(root, "cut.jpg", _image("RGB", (256, 256)), format="JPEG", quality=95)
    with open(os.path.join(root, "cut.jpg"), "r+b") as f:  # a whole response holding half a JPEG
        f.truncate(os.path.getsize(os.path.join(root, "cut.jpg")) // 2)
    alpha = np.zeros((32, 48, 4), np.uint8)
    alpha[:, 24:] = (255, 0, 0, 255)  # left half fully transparent (black), right half opaque red
    _save(root, "alpha.png", Image.fromarray(alpha), format="PNG")
    frames = [Image.new("RGB", (48, 32), c).convert("P") for c in ((0, 0, 255), (0, 255, 0))]
    _save(root, "anim.gif", frames[0], format="GIF", save_all=True, append_images=frames[1:])
    _save(root, "grey.png", Image.new("L", (48, 32), 77), format="PNG")
    _save(root, "grey.jpg", Image.new("L", (48, 32), 77), format="JPEG")
    _save(root, "palette.png", _image("RGB").convert("P"), format="PNG")
    _save(root, "cmyk.jpg", _image("RGB").convert("CMYK"), format="JPEG", quality=95)
    _save(root, "photo.webp", _image("RGB"), format="WEBP", lossless=True)
    _save(root, "photo.bmp", _image("RGB"), format="BMP")
    with open(os.path.join(root, "notes.txt"), "w") as f:
        f.write("not an image at all")
    routes = {f"/{name}": {"kind": "file", "path": name, "content_type": "image/jpeg"}  # servers mislabel
              for name in os.listdir(root)}
    routes.update({f"/status/{code}": {"kind": "status", "code": code} for code in (400, 401, 403, 404, 410, 429,
                                                                                   500, 502, 503, 504)})
    routes.update({
        "/loop": {"kind": "redirect", "location": "/loop", "code": 302},
        "/noloc": {"kind": "redirect", "location": None, "code": 301},
        "/to-ftp": {"kind": "redirect", "location": "ftp://127.0.0.1/rgb.jpg", "code": 302},
        "/stall": {"kind": "stall", "path": "rgb.jpg"},
        "/slow": {"kind": "slow", "path": "cut.jpg", "delay": 0.2, "chunk": 64},
        "/truncated": {"kind": "truncated", "path": "rgb.jpg"},
        "/html": {"kind": "html"},
        "/huge": {"kind": "huge", "bytes": 256 << 20, "length": False},
        "/huge-cl": {"kind": "huge", "bytes": 256 << 20},
        "/reset": {"kind": "reset"},
    })
    return {"rgb": rgb, "routes": routes}


@pytest.fixture(scope="module")
def web(tmp_path_factory):
    root = tmp_path_factory.mktemp("web")
    made = _write_web(str(root))
    with LocalServer(str(root), made["routes"]) as server:
        server.rgb = made["rgb"]
        yield server


@pytest.fixture(autouse=True)
def offline(monkeypatch):
    """No real resolver: IP literals resolve, every name fails as DNS does (no-route.test: the host
    is unreachable)."""
    real_getaddrinfo, real_connect = socket.getaddrinfo, urllib3.util.connection.create_connection

    def getaddrinfo(host, *args, **kw):
        try:
            socket.inet_pton(socket.AF_INET6 if ":" in str(host) else socket.AF_INET, host)
        except (OSError, TypeError):
            raise socket.gaierror(socket.EAI_NONAME, "Name or service not known") from None
        return real_getaddrinfo(host, *args, **kw)

    def create_connection(address, *args, **kw):
        if address[0] == "no-route.test":
            raise OSError(errno.EHOSTUNREACH, "No route to host")
        return real_connect(address, *args, **kw)

    monkeypatch.setattr(socket, "getaddrinfo", getaddrinfo)
    monkeypatch.setattr(urllib3.util.connection, "create_connection", create_connection)


def _closed_port() -> int:
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def _files(out) -> list:
    """Every file under OUT/images (temporary ones included)."""
    return [os.path.join(d, f) for d, _, names in os.walk(os.path.join(out, "images")) for f in names]


# -- every failure class ------------------------------------------------------------------------
CASES = [  # (URL: a target on the server, or a template), expected class, options beyond FAST
    ("/status/404", "http_404", {}),
    ("/status/400", "http_4xx", {}), ("/status/401", "http_4xx", {}), ("/status/403", "http_4xx", {}),
    ("/status/410", "http_4xx", {}), ("/status/429", "http_429", {}),
    ("/status/500", "http_5xx", {}), ("/status/502", "http_5xx", {}), ("/status/503", "http_5xx", {}),
    ("/status/504", "http_5xx", {}),
    ("/loop", "redirect", {}), ("/noloc", "redirect", {}), ("/to-ftp", "redirect", {}),
    ("http://unresolvable.invalid/face.jpg", "dns", {}),
    ("/stall", "timeout", {}),  # the deadline (1 s) ends it: each read alone waits up to 5 s
    ("/slow", "timeout", {}),  # a drip, each chunk well within the read timeout
    ("/stall", "timeout", dict(timeout=0.3, deadline=30.0)),  # the read timeout ends it
    ("/reset", "reset", {}),
    ("http://127.0.0.1:{closed}/face.jpg", "refused", {}),
    ("http://no-route.test/face.jpg", "no_route", {}),
    ("https://127.0.0.1:{port}/rgb.jpg", "tls", {}),  # a TLS handshake with a plain HTTP server
    ("/huge", "too_large", {}), ("/huge-cl", "too_large", {}),
    ("/html", "not_image", {}), ("/notes.txt", "not_image", {}),
    ("/truncated", "truncated", {}), ("/cut.jpg", "truncated", {}),
    ("ftp://127.0.0.1/rgb.jpg", "bad_url", {}), ("", "bad_url", {}), ("http://a\x00b/c.jpg", "bad_url", {}),
    ("javascript:alert(1)", "bad_url", {}), ("http:///nohost.jpg", "bad_url", {}),
]


@pytest.mark.parametrize("url,kind,extra", CASES, ids=[f"{k}:{u[:30]}" for u, k, _ in CASES])
def test_failure_class(web, tmp_path, url, kind, extra):
    url = web.url(url) if url.startswith("/") else url.format(closed=_closed_port(), port=web.server_address[1])
    began = time.monotonic()
    summary = download([url], str(tmp_path), DownloadOptions(**{**FAST, **extra}), progress=False)
    entry = read_index(str(tmp_path))[url]
    assert (entry["status"], entry["class"]) == ("failed", kind), entry
    assert summary["failed"][kind] == 1 and summary["ok"] == 0
    assert entry["file"] is None and _files(str(tmp_path)) == []  # nothing kept, no temporary file
    assert time.monotonic() - began < 5


def test_transient_failures_retried_with_backoff_in_the_same_run(web, tmp_path):
    web.reset_counts()
    urls = [web.url("/status/503"), web.url("/status/429"), web.url("/status/404"), web.url("/status/403")]
    download(urls, str(tmp_path), DownloadOptions(retries=2, backoff=0.01), progress=False)
    index = read_index(str(tmp_path))
    assert [web.requests[u[len(web.base_url):]] for u in urls] == [3, 3, 1, 1]
    assert [index[u]["attempts"] for u in urls] == [3, 3, 1, 1]
    assert set(dl.TRANSIENT) == {"http_429", "http_5xx", "dns", "timeout", "reset", "refused", "no_route"}


def test_huge_body_stopped_at_max_bytes(web, tmp_path):
    web.reset_counts()
    download([web.url("/huge"), web.url("/huge-cl")], str(tmp_path), DownloadOptions(**FAST), progress=False)
    assert web.sent["/huge"] < 32 << 20  # of 256 MB: read up to 256 KB, the rest stayed in socket buffers
    assert web.sent["/huge-cl"] < 32 << 20  # refused by its Content-Length, before reading


# -- redirects -----------------------------------------------------------------------------------
def test_redirect_chain_followed_and_too_many_refused(web, tmp_path):
    web.routes.update({"/chain/1": {"kind": "redirect", "location": "2", "code": 301},  # relative
                       "/chain/2": {"kind": "redirect", "location": web.url("/rgb.jpg?via=chain"), "code": 307},
                       "/rgb.jpg?via=chain": {"kind": "file", "path": "rgb.jpg"}})
    web.reset_counts()
    url = web.url("/chain/1")
    download([url], str(tmp_path / "a"), DownloadOptions(**FAST), progress=False)
    entry = read_index(str(tmp_path / "a"))[url]
    assert entry["status"] == "ok" and entry["http"] == 200
    with open(tmp_path / "a" / entry["file"], "rb") as f:
        assert f.read() == web.rgb
    assert [web.requests[t] for t in ("/chain/1", "/chain/2", "/rgb.jpg?via=chain")] == [1, 1, 1]
    download([url], str(tmp_path / "b"), DownloadOptions(**FAST, max_redirects=1), progress=False)
    entry = read_index(str(tmp_path / "b"))[url]
    assert entry["class"] == "redirect" and "more than 1 redirects" in entry["message"]
    web.reset_counts()
    download([web.url("/loop")], str(tmp_path / "c"), DownloadOptions(**FAST, max_redirects=3), progress=False)
    assert web.requests["/loop"] == 4


# -- images --------------------------------------------------------------------------------------
GREEN, RED = (30, 160, 60), (200, 40, 40)
CONVERSIONS = [  # target, source type, (left half, right half) expected
    ("/alpha.png", "png", ((255, 255, 255), (255, 0, 0))),  # transparency flattened on white
    ("/anim.gif", "gif", ((0, 0, 255), (0, 0, 255))),  # the first frame
    ("/grey.png", "png", ((77, 77, 77), (77, 77, 77))),
    ("/grey.jpg", "jpeg", ((77, 77, 77), (77, 77, 77))),
    ("/palette.png", "png", (GREEN, RED)),
    ("/cmyk.jpg", "jpeg", (GREEN, RED)),
    ("/photo.webp", "webp", (GREEN, RED)),
    ("/photo.bmp", "bmp", (GREEN, RED)),
]


def test_images_converted_to_rgb_jpeg_and_rgb_jpeg_kept(web, tmp_path):
    urls = [web.url(t) for t, _, _ in CONVERSIONS] + [web.url("/rgb.jpg")]
    summary = download(urls, str(tmp_path), DownloadOptions(**FAST), progress=False)
    assert summary["ok"] == len(urls)
    index = read_index(str(tmp_path))
    for (target, source, (left, right)), url in zip(CONVERSIONS, urls):
        entry = index[url]
        with open(tmp_path / entry["file"], "rb") as f:
            data = f.read()
        img = Image.open(io.BytesIO(data))
        assert (img.format, img.mode, img.size, entry["source"]) == ("JPEG", "RGB", (48, 32), source), target
        pixels = np.asarray(img).astype(int)
        assert np.abs(pixels[16, 8] - left).max() <= 12 and np.abs(pixels[16, 40] - right).max() <= 12, target
        assert entry["sha256"] == hashlib.sha256(data).hexdigest() and entry["bytes"] == len(data)
    kept = index[urls[-1]]
    with open(tmp_path / kept["file"], "rb") as f:
        assert f.read() == web.rgb  # byte for byte
    assert kept["sha256"] == hashlib.sha256(web.rgb).hexdigest() and kept["source"] == "jpeg"


# -- names ---------------------------------------------------------------------------------------
def _adversarial_urls(n: int = 6000) -> list:
    rng = random.Random(29)
    heads = ["http://h/", "https://h/", "HTTP://H/", "http://h:80/", "http://h./", "", "/", "../", "file:///",
             "C:\\", "\\\\server\\share\\", "http://[::1]/", "http://h\u2215x/"]
    pieces = ["..", ".", "../", "..\\", "/", "\\", "%2F", "%2f", "%2e%2e", "%2E%2E%2F", "\u2215", "\uff0f", "\u2024",
              "\x00", "\n", "\t", " ", "?", "#", "?a=1", "?a=2", "#frag", "&", "=", ";", ":", "~", "%00", "%",
              "é", "😀", "\ud800", "CON", "nul", "face.jpg", "face.JPG", "a.b.", "...", ".jpg", "-", "_", "x" * 255]
    urls = {head + "".join(rng.choice(pieces) for _ in range(rng.randint(0, 8)))
            for head in heads for _ in range(n // len(heads))}
    urls |= {"http://h/" + "a" * 10_000, "http://h/" + "a" * 9_999 + "b", "http://h/" + "%2e%2e/" * 1500}
    urls |= {f"http://h/face.jpg?size={i}" for i in range(50)} | {f"http://h/face.jpg#{i}" for i in range(50)}
    urls |= {"http://h/face.jpg", "http://h/face.jpg.", "http://h/face.jpg..", "http://h/Face.jpg"}
    return sorted(urls)


def test_names_injective_single_components_inside_out(tmp_path):
    urls = _adversarial_urls()
    assert len(urls) >= 5000
    names = [file_name(u) for u in urls]
    assert len(set(names)) == len(urls)  # injective: two URLs never share a file
    root = os.path.realpath(tmp_path)
    for url, name in zip(urls, names):
        assert name.isascii() and len(name.encode()) <= 200 and name not in (".", "..")
        assert os.path.basename(name) == name and not set(name) & set("/\\\x00:") and name.endswith(".jpg")
        rel = relative_path(url).split("/")
        assert rel == ["images", rel[1], name] and len(rel[1]) == 2
        path = file_path(str(tmp_path), url)
        assert os.path.commonpath([root, path]) == root and os.path.dirname(os.path.dirname(path)) == \
            os.path.join(root, "images")


def test_hostile_names_download_inside_out(web, tmp_path):
    targets = ["/img/..%2F..%2Fescape.jpg", "/img/%2e%2e%2f%2e%2e%2fescape.jpg", "/img/face.jpg?size=1",
               "/img/face.jpg?size=2", "/img/%E2%88%95etc%E2%88%95passwd.jpg", "/img/back%5Cslash.jpg",
               "/img/" + "long" * 600 + ".jpg"]
    web.routes.update({t: {"kind": "file", "path": "rgb.jpg"} for t in targets})
    urls = [web.url(t) for t in targets]
    assert download(urls, str(tmp_path), DownloadOptions(**FAST), progress=False)["ok"] == len(urls)
    files = _files(str(tmp_path))
    assert sorted(files) == sorted(file_path(str(tmp_path), u) for u in urls)


# -- resuming ------------------------------------------------------------------------------------
def test_rerun_skips_done_retries_only_selected_classes_recovers_files(web, tmp_path):
    out = str(tmp_path)
    web.routes.update({f"/keep/{i}.jpg": {"kind": "file", "path": "rgb.jpg"} for i in range(3)})
    web.routes["/flaky"] = {"kind": "stall", "path": "rgb.jpg"}
    targets = [f"/keep/{i}.jpg" for i in range(3)] + ["/flaky", "/status/404"]
    urls = [web.url(t) for t in targets]
    web.reset_counts()
    first = download(urls, out, DownloadOptions(**FAST), progress=False)
    assert (first["ok"], first["failed"]["timeout"], first["failed"]["http_404"]) == (3, 1, 1)
    with open(os.path.join(out, "summary.json")) as f:
        assert json.load(f)["failed"]["timeout"] == 1
    assert "HTTP 404 (Not Found)" in dl.summary_table(first)

    second = download(urls, out, DownloadOptions(**FAST), progress=False)  # nothing to do
    assert (second["skipped"], second["ok"]) == (5, 3) and all(web.requests[t] == 1 for t in targets)

    web.routes["/flaky"] = {"kind": "file", "path": "rgb.jpg"}  # the host is back
    third = download(urls, out, DownloadOptions(**FAST, retry_failed="timeout"), progress=False)
    assert third["ok"] == 4 and third["downloaded"] == 1 and third["failed"]["http_404"] == 1
    assert [web.requests[t] for t in targets] == [1, 1, 1, 2, 1]

    os.remove(file_path(out, urls[0]))  # a file gone: fetched again
    os.makedirs(os.path.join(out, "images", "ab"), exist_ok=True)
    open(os.path.join(out, "images", "ab", ".partial-x.jpg"), "wb").close()  # a killed run's temporary file
    with open(os.path.join(out, "index.jsonl")) as f:
        lines = f.readlines()
    with open(os.path.join(out, "index.jsonl"), "w") as f:  # as if killed between the rename and the index line
        f.writelines(line for line in lines if json.loads(line)["url"] != urls[1])
        f.write('{"url": "torn')  # and mid-line
    fourth = download(urls, out, DownloadOptions(**FAST), progress=False)
    assert (fourth["downloaded"], fourth["recovered"], fourth["ok"]) == (1, 1, 4)
    assert [web.requests[t] for t in targets] == [2, 1, 1, 2, 1]
    index = read_index(out)
    assert "found complete on disk" in index[urls[1]]["message"]
    assert index[urls[1]]["sha256"] == hashlib.sha256(web.rgb).hexdigest()
    assert not [p for p in _files(out) if os.path.basename(p).startswith(".partial-")]
    with open(os.path.join(out, "index.jsonl")) as f:
        assert all(json.loads(line) for line in f)  # the torn line is gone, not glued to the next


def test_index_torn_last_line_ignored_other_bad_lines_refused(tmp_path):
    good = json.dumps({"url": "http://h/a.jpg", "status": "ok"})
    (tmp_path / "index.jsonl").write_text(good + "\n" + '{"url": "http://h/b')
    assert list(read_index(str(tmp_path))) == ["http://h/a.jpg"]
    (tmp_path / "index.jsonl").write_text("garbage\n" + good + "\n")
    with pytest.raises(ValueError, match="index.jsonl line 1: not an index entry"):
        read_index(str(tmp_path))


# -- connections ---------------------------------------------------------------------------------
def test_connection_bound_and_per_host_cap_hold(web, tmp_path):
    web.routes.update({f"/many/{i}.jpg": {"kind": "file", "path": "rgb.jpg"} for i in range(40)})
    urls = [web.url(f"/many/{i}.jpg") for i in range(40)]
    web.latency = 0.03
    try:
        for n, (connections, per_host) in enumerate(((3, 8), (8, 2))):
            web.reset_counts()
            summary = download(urls, str(tmp_path / str(n)), DownloadOptions(connections=connections,
                                                                              per_host=per_host), progress=False)
            assert summary["ok"] == 40
            assert 2 <= web.max_open <= connections  # sockets: one per worker at most
            assert 2 <= web.max_active <= min(connections, per_host)  # requests one host answers at once
            for _ in range(250):  # no connection left open after the run (an earlier stall may take a while)
                if web.open_now == 0:
                    break
                time.sleep(0.02)
            assert web.open_now == 0
    finally:
        web.latency = 0.0


# -- options -------------------------------------------------------------------------------------
@pytest.mark.parametrize("values,message", [
    (dict(connections=0), "download option connections must be 1..256, got 0"),
    (dict(per_host=1.5), "download option per_host must be an integer"),
    (dict(timeout=0), "download option timeout must be 0.1..600 s, got 0"),
    (dict(deadline="60"), "download option deadline must be a number"),
    (dict(retries=-1), "download option retries must be 0..10, got -1"),
    (dict(max_redirects=99), "download option max_redirects must be 0..30, got 99"),
    (dict(max_bytes=10), "download option max_bytes must be >= 1024, got 10"),
    (dict(jpeg_quality=101), "download option jpeg_quality must be 1..100, got 101"),
    (dict(retry_failed="timout,dns"), "unknown failure class 'timout'; known: all, http_404"),
    (dict(retry_failed=""), "unknown failure class ''"),
])
def test_bad_options_refused_up_front(values, message):
    with pytest.raises(ValueError, match=message):
        DownloadOptions(**values)


def test_options_as_flags_and_bad_urls_refused(tmp_path):
    parser = argparse.ArgumentParser()
    add_arguments(parser, DownloadOptions)
    opts = from_args(DownloadOptions, parser.parse_args(["--connections", "8", "--retry-failed", "timeout, dns"]))
    assert (opts.connections, opts.per_host, opts.retry_classes) == (8, 4, {"timeout", "dns"})
    assert DownloadOptions(retry_failed="all").retry_classes == set(dl.FAILURES)
    with pytest.raises(ValueError, match="unknown failure class 'nope'"):
        from_args(DownloadOptions, parser.parse_args(["--retry-failed", "nope"]))
    with pytest.raises(ValueError, match="URL 1 is None, not a string"):
        download(["http://h/a.jpg", None], str(tmp_path), progress=False)
    with pytest.raises(ValueError, match="connect_to 'h:80': 'nowhere' is not host:port"):
        download(["http://h/a.jpg"], str(tmp_path), progress=False, connect_to={"h:80": "nowhere"})


def test_connect_to_reaches_a_named_host_on_the_local_server(web, tmp_path):
    web.reset_counts()
    url = "http://images.example.test/rgb.jpg"
    address = web.base_url.split("//", 1)[1]
    download([url], str(tmp_path), DownloadOptions(**FAST), progress=False,
             connect_to={"images.example.test:80": address})
    assert read_index(str(tmp_path))[url]["status"] == "ok" and web.requests["/rgb.jpg"] == 1


# -- a kill at any moment (slow) -----------------------------------------------------------------
CHILD = """
import json, sys
from data_prep.download import DownloadOptions, download
urls = json.load(open(sys.argv[1]))
download(urls, sys.argv[2], DownloadOptions(connections=4, per_host=4, retries=0, timeout=5, deadline=5),
         progress=False)
"""


def _run(urls_file, out, kill_after=None) -> bool:
    """The download in a child process, SIGKILLed ``kill_after`` seconds in; True when it was killed."""
    proc = subprocess.Popen([sys.executable, "-c", CHILD, urls_file, out], cwd=REPO, start_new_session=True,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        proc.wait(timeout=kill_after)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
        return True
    assert proc.returncode == 0, proc.stderr.read().decode()[-2000:]
    return False


def _settled(out, urls) -> set:
    """The URLs a resumed run must not request again: their image under its final name (complete, since
    it is renamed there only then) or their failure in the index."""
    if not os.path.exists(out):
        return set()
    failed = {u for u, e in read_index(out).items() if e["status"] == "failed"}
    return failed | {u for u in urls if os.path.exists(file_path(out, u))}


@pytest.mark.slow
def test_sigkill_at_random_moments_then_resume(web, tmp_path):
    web.routes.update({f"/kill/{i}.jpg": {"kind": "file", "path": "rgb.jpg" if i % 3 else "alpha.png"}
                       for i in range(90)})
    web.routes.update({f"/kill/gone/{i}.jpg": {"kind": "status", "code": 404} for i in range(10)})
    urls = [web.url(f"/kill/{i}.jpg") for i in range(90)] + [web.url(f"/kill/gone/{i}.jpg") for i in range(10)]
    urls_file = str(tmp_path / "urls.json")
    with open(urls_file, "w") as f:
        json.dump(urls, f)
    web.latency = 0.08
    try:
        began = time.monotonic()
        _run(urls_file, str(tmp_path / "whole"))
        whole = time.monotonic() - began
        out = str(tmp_path / "killed")
        web.reset_counts()
        rng = random.Random(29)
        snapshots, kills = [], 0  # (URLs settled after a kill, the server's request counts then)
        for _ in range(3):  # each resumed run has less left to do: killed early enough to be killed
            kills += _run(urls_file, out, kill_after=rng.uniform(0.35, 0.6) * whole)
            snapshots.append((_settled(out, urls), dict(web.requests)))
        assert kills >= 2 and 0 < len(snapshots[0][0]) < len(urls)
        _run(urls_file, out)
    finally:
        web.latency = 0.0
    for settled, counts in snapshots:  # nothing settled before a start was requested again
        assert {u: web.requests[u[len(web.base_url):]] for u in settled} == \
            {u: counts[u[len(web.base_url):]] for u in settled}
    assert {web.requests[u[len(web.base_url):]] for u in snapshots[0][0]} == {1}
    assert not [p for p in _files(out) if os.path.basename(p).startswith(".partial-")]
    index = read_index(out)
    for url in urls:
        entry = index[url]
        if entry["status"] == "ok":
            with open(os.path.join(out, entry["file"]), "rb") as f:
                data = f.read()
            assert hashlib.sha256(data).hexdigest() == entry["sha256"]
            Image.open(io.BytesIO(data)).load()
    ok = {u for u, e in index.items() if e["status"] == "ok"}
    assert ok == {u for u, e in read_index(str(tmp_path / "whole")).items() if e["status"] == "ok"}
    assert sorted(_files(out)) == sorted(file_path(out, u) for u in ok)


# -- shares of one download (--shard I/N) ----------------------------------------------------------
def test_shares_partition_any_order_and_bad_ones_are_refused():
    from data_prep import share

    urls = [f"http://h.example/{i}.jpg" for i in range(3000)]
    parts = [share.mine(urls, (i, 3)) for i in range(3)]
    assert sorted(u for p in parts for u in p) == sorted(urls) and all(800 < len(p) < 1200 for p in parts)
    assert share.mine(list(reversed(urls)), (1, 3)) == list(reversed(parts[1]))  # the order does not matter
    for bad in ("3/3", "a/b", "0/0", "-1/2", "1"):
        with pytest.raises(ValueError, match="download option shard must be I/N with 0 <= I < N"):
            DownloadOptions(shard=bad)


def test_workers_sharing_out_download_each_url_once(web, tmp_path):
    """3 workers (--shard 0/3 .. 2/3) into one OUT, one after another as slow machines would: each
    keeps its own index and summary, the union is an unsharded run's, and an unsharded rerun (or a
    reader such as prepare) sees every file and fetches nothing."""
    web.routes.update({f"/share/{i}.jpg": {"kind": "file", "path": "rgb.jpg"} for i in range(12)})
    web.routes["/share/gone.jpg"] = {"kind": "status", "code": 404}
    urls = [web.url(f"/share/{i}.jpg") for i in range(12)] + [web.url("/share/gone.jpg")]
    web.reset_counts()
    out = str(tmp_path / "shared")
    summaries = [download(urls, out, DownloadOptions(**FAST, shard=f"{i}/3"), progress=False) for i in range(3)]
    assert sum(s["total"] for s in summaries) == 13 and sum(s["ok"] for s in summaries) == 12
    assert sorted(os.listdir(out)) == ["images", *(f"index-{i}-of-3.jsonl" for i in range(3)),
                                       *(f"summary-{i}-of-3.json" for i in range(3))]
    assert all(n == 1 for n in web.requests.values()) and sum(web.requests.values()) == 13
    index = dl.read_index(out)
    whole = download(urls, str(tmp_path / "whole"), DownloadOptions(**FAST), progress=False)
    assert {u for u, e in index.items() if e["status"] == "ok"} == \
        {u for u, e in dl.read_index(str(tmp_path / "whole")).items() if e["status"] == "ok"} and whole["ok"] == 12
    web.reset_counts()
    again = download(urls, out, DownloadOptions(**FAST), progress=False)
    assert again["skipped"] == 13 and again["ok"] == 12 and sum(web.requests.values()) == 0
