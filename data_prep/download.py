"""Downloading a list of image URLs into OUT (EmotioNet's sheet; issue 29 §2), safely and resumably.

The one step of the toolkit that uses the network. What img2dataset's users report, and what this
module does instead:

- runs that hang near the end: each request has a timeout (connect and every read) and each file a
  deadline (redirects and slow bodies included), enforced by a watchdog that shuts its socket down;
- truncated files after a kill: an image is written to a temporary name and renamed into place only
  once complete and decoded; the next run deletes the leftovers;
- no way to retry only the failures: ``OUT/index.jsonl`` records every URL's outcome and failure
  class; a rerun skips what is done and retries only the classes ``retry_failed`` names;
- redirects not followed: followed here (http/https targets only, relative ones resolved);
- success rates that collapse on DNS trouble: transient failures are retried in the same run with
  exponential backoff, and connections are kept alive, so a name is looked up per connection, not
  per image.

Connections: each of the ``connections`` worker threads owns a urllib3 PoolManager that holds one
connection at most (one pool of size 1, blocking), so never more than ``connections`` sockets are
open; a semaphore per host caps the requests one host serves at once at ``per_host``.

The image type comes from the bytes (Pillow), never from the URL or the Content-Type. One wait is
not ours to bound: a name lookup (getaddrinfo) takes as long as the system resolver's own timeouts.
Kept free of TensorFlow: the command line imports it.
"""
from __future__ import annotations

import contextlib
import errno
import glob
import hashlib
import http.client
import io
import json
import logging
import os
import re
import socket
import ssl
import threading
import time
import urllib.parse
from collections import Counter
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import dataclass

import urllib3
from PIL import Image, UnidentifiedImageError
from tqdm import tqdm
from urllib3.exceptions import HTTPError, LocationParseError, NameResolutionError, NewConnectionError

from data_prep import share
from data_prep.options import check, option
from fer_keras.durable import save_atomic, write_atomic

log = logging.getLogger(__name__)

IMAGES = "images"
INDEX = "index.jsonl"
SUMMARY = "summary.json"
PARTIAL = ".partial-"  # fer_keras.durable.save_atomic's temporary prefix: what a kill may leave; the next run removes it
CHUNK = 64 * 1024
REDIRECTS = (301, 302, 303, 307, 308)
HEADERS = {"User-Agent": "fer-keras-download/1 (research image downloader)", "Accept": "image/*"}

DESCRIPTION = ("Read the label sheet (.xlsx or .csv), write labels.csv and sheet_report.json in OUT, and download "
               "every URL into OUT/images: concurrent with bounded connections and a per-host cap, a timeout per "
               "request and a deadline per file, only http(s), redirects followed within a limit, the type read "
               "from the bytes, GIF/PNG/grey made RGB JPEG, each file renamed into place only when complete. "
               "OUT/index.jsonl is the truth: a rerun skips complete files; --retry-failed retries what failed "
               "(by class). Failures by class: OUT/summary.json.")
CONNECT_TO = ("as curl's: connect to ADDRESS:PORT for HOST:PORT (a mirror, or the local server of a synthetic "
              "sheet), the URL's host kept in the Host header and for TLS; repeatable")


def parse_connect_to(text: str) -> tuple[str, str]:
    """curl's --connect-to HOST:PORT:ADDRESS:PORT as ("HOST:PORT", "ADDRESS:PORT")."""
    parts = text.rsplit(":", 3)
    if len(parts) != 4 or not all(parts) or not parts[1].isdigit() or not parts[3].isdigit():
        raise ValueError(f"--connect-to {text!r}: expected HOST:PORT:ADDRESS:PORT, e.g. "
                         f"images.example.org:80:127.0.0.1:8000")
    return f"{parts[0]}:{parts[1]}", f"{parts[2]}:{parts[3]}"


# failure class -> (its row in the summary, transient: retried with backoff in the same run).
# Transient are the failures a later try may not meet: the network or an overloaded server.
FAILURES = {
    "http_404": ("HTTP 404 (Not Found)", False),
    "http_4xx": ("HTTP 400/401/403/410 and other 4xx", False),
    "http_429": ("HTTP 429 (Too Many Requests)", True),
    "http_5xx": ("HTTP 500/502/503/504 and other 5xx", True),
    "redirect": ("HTTP 301/302: too many, no Location, not http(s)", False),
    "dns": ("Name or service not known (DNS)", True),
    "timeout": ("Connection timed out (timeout or deadline)", True),
    "reset": ("Connection reset by peer (or closed)", True),
    "refused": ("Connection refused", True),
    "no_route": ("No route to host", True),
    "tls": ("Certificate verify failed (TLS)", False),
    "too_large": ("Larger than max_bytes", False),
    "not_image": ("Not an image (HTML, unreadable)", False),
    "truncated": ("Truncated body or image", False),
    "bad_url": ("Bad URL (empty, not http(s), control chars)", False),
    "other": ("Other error", False),
}
TRANSIENT = tuple(k for k, (_, transient) in FAILURES.items() if transient)


@dataclass
class DownloadOptions:
    """How `fer-keras download` fetches: its politeness, its patience and what it accepts."""

    connections: int = option(16, "worker threads, and the most sockets open at once", low=1, high=256)
    per_host: int = option(4, "most requests one host serves at once (politeness)", low=1, high=64)
    timeout: float = option(10.0, "seconds to connect, and for each read", low=0.1, high=600, unit="s")
    deadline: float = option(60.0, "seconds per file on the network, redirects and slow bodies included",
                             low=0.1, high=3600, unit="s")
    retries: int = option(2, f"retries of a transient failure ({', '.join(TRANSIENT)}) in the same run",
                          low=0, high=10)
    backoff: float = option(1.0, "seconds before the first retry, doubled for each next one", low=0, high=300,
                            unit="s")
    max_redirects: int = option(5, "redirects followed per URL", low=0, high=30)
    max_bytes: int = option(20_000_000, "largest body accepted, in bytes", low=1024)
    retry_failed: str | None = option(None, "retry the URLs earlier runs failed: 'all' or failure classes "
                                      "(timeout,dns); unset: leave them", metavar="CLASSES")
    jpeg_quality: int = option(95, "JPEG quality of converted images (RGB JPEGs are kept as they came)",
                               low=1, high=100)
    shard: str | None = option(None, "I/N: only this worker's share of the URLs (a stable hash of each URL, "
                                     "0 <= I < N); N workers may share OUT: each keeps index-I-of-N.jsonl "
                                     "and summary-I-of-N.json, and every reader sees them all", metavar="I/N",
                              validate=share.parse)

    def __post_init__(self):
        check(self, "download option")
        self.retry_classes  # noqa: B018  refuses unknown class names up front

    def files(self) -> tuple[str, str]:
        """(index, summary) file names of this run: its share's own, so workers never write one file."""
        if self.shard is None:
            return INDEX, SUMMARY
        i, n = share.parse(self.shard)
        return f"index-{i}-of-{n}.jsonl", f"summary-{i}-of-{n}.json"

    @property
    def retry_classes(self) -> frozenset:
        """The failure classes ``retry_failed`` selects."""
        if self.retry_failed is None:
            return frozenset()
        if self.retry_failed.strip() == "all":
            return frozenset(FAILURES)
        names = {name.strip() for name in self.retry_failed.split(",")}
        unknown = sorted(names - set(FAILURES))
        if unknown:
            raise ValueError(f"download option retry_failed: unknown failure class {', '.join(map(repr, unknown))};"
                             f" known: all, {', '.join(FAILURES)}")
        return frozenset(names)


class Failure(Exception):
    """Why a URL gave no image: its class (a FAILURES key), a message, and the HTTP status if any."""

    def __init__(self, kind: str, message: str, status: int | None = None):
        super().__init__(message)
        self.kind, self.status = kind, status


# -- names and paths ---------------------------------------------------------------------------
def file_name(url: str) -> str:
    """``<slug>-<SHA-256 of the exact URL>.jpg``. The hash makes the mapping injective (two URLs never
    share a file); the slug (ASCII letters, digits, _ and -, from the last path segment, 40 at most)
    only helps a reader. One path component of 109 bytes at most, whatever the URL holds."""
    digest = hashlib.sha256(url.encode("utf-8", "surrogatepass")).hexdigest()
    segment = re.split(r"[?#]", url, maxsplit=1)[0].rsplit("/", 1)[-1].rsplit(".", 1)[0]
    slug = re.sub(r"[^A-Za-z0-9_-]+", "_", segment).strip("_-")[:40] or "image"
    return f"{slug}-{digest}.jpg"


def relative_path(url: str) -> str:
    """``images/<first two hex digits of the hash>/<file_name>``: 256 folders keep each one small."""
    name = file_name(url)
    return f"{IMAGES}/{name[-68:-66]}/{name}"


def file_path(out, url: str) -> str:
    """The absolute path of a URL's image, refused if it would lie outside OUT."""
    root = os.path.realpath(out)
    path = os.path.realpath(os.path.join(root, relative_path(url)))
    if os.path.commonpath([root, path]) != root:
        raise ValueError(f"refusing a path outside {out} for {url!r}")
    return path


def url_problem(url: str) -> str | None:
    """Why ``url`` may not be fetched, or None: only http(s) with a host and no control characters."""
    if not url:
        return "empty URL"
    if any(ord(c) < 32 or ord(c) == 127 for c in url):
        return "control character in the URL"
    try:
        parts = urllib3.util.parse_url(url)
    except LocationParseError as err:
        return f"unparsable URL ({err})"
    if (parts.scheme or "").lower() not in ("http", "https"):
        return f"scheme {parts.scheme!r} is not http or https"
    return None if parts.host else "no host in the URL"


# -- the index -----------------------------------------------------------------------------------
def read_index(out) -> dict:
    """{url: its latest entry} of OUT/index.jsonl and the shards' index-I-of-N.jsonl (later lines
    win; across files an ok entry wins). A line counts once its newline is written: a torn last
    line (a kill mid-write) is ignored; any other bad line is refused."""
    entries = {}
    for path in sorted(glob.glob(os.path.join(out, "index-*-of-*.jsonl"))) + [os.path.join(out, INDEX)]:
        if not os.path.exists(path):
            continue
        with open(path, encoding="utf-8") as f:
            lines = f.read().split("\n")[:-1]  # the text after the last newline is torn or empty
        found = {}
        for number, line in enumerate(lines, 1):
            try:
                entry = json.loads(line)
                found[entry["url"]] = entry
            except (json.JSONDecodeError, KeyError, TypeError):
                raise ValueError(f"{path} line {number}: not an index entry ({line[:80]!r}); "
                                 "move the file away to download everything again") from None
        for url, entry in found.items():
            if entry["status"] == "ok" or entries.get(url, {}).get("status") != "ok":
                entries[url] = entry
    return entries


def _cut_torn_line(path) -> None:
    """Drop the torn last line a kill left, so the next line appended starts on a line of its own."""
    if not os.path.exists(path):
        return
    with open(path, "rb+") as f:
        data = f.read()
        if data and not data.endswith(b"\n"):
            log.warning("%s: dropping a torn last line (an interrupted run's)", path)
            f.truncate(data.rfind(b"\n") + 1)


def _entry(url, status, kind=None, message="", data=None, attempts=0, source=None, http_status=None) -> dict:
    return {"url": url, "file": relative_path(url) if data is not None else None, "status": status, "class": kind,
            "message": message, "bytes": None if data is None else len(data),
            "sha256": None if data is None else hashlib.sha256(data).hexdigest(), "attempts": attempts,
            "source": source, "http": http_status}


# -- images --------------------------------------------------------------------------------------
def to_jpeg(body: bytes, quality: int = 95) -> tuple[bytes, str]:
    """(JPEG bytes, source type) of a body: an RGB JPEG as it came, anything else Pillow reads as RGB
    (first frame, transparency flattened on white). Raises Failure: not_image, truncated, too_large."""
    try:
        with Image.open(io.BytesIO(body)) as img:
            source = (img.format or "unknown").lower()
            img.load()
            if source in ("jpeg", "mpo") and img.mode == "RGB":
                return body, source
            buf = io.BytesIO()
            _rgb(img).save(buf, "JPEG", quality=quality)
            return buf.getvalue(), source
    except Image.DecompressionBombError as err:
        raise Failure("too_large", str(err)) from None
    except UnidentifiedImageError:
        raise Failure("not_image", f"not an image Pillow reads (begins {body[:24]!r})") from None
    except Exception as err:  # Pillow's decoders raise OSError, SyntaxError, ValueError, EOFError ...
        raise Failure("truncated", f"the image does not decode: {err}") from None


def _rgb(img: Image.Image) -> Image.Image:
    if img.mode in ("RGBA", "LA", "PA") or img.has_transparency_data:
        rgba = img.convert("RGBA")
        return Image.alpha_composite(Image.new("RGBA", rgba.size, (255, 255, 255, 255)), rgba).convert("RGB")
    return img.convert("RGB")


# -- network errors ------------------------------------------------------------------------------
def _causes(err: BaseException) -> list:
    """The error and everything it wraps (causes, contexts, urllib3's reasons and arguments)."""
    seen, todo = [], [err]
    while todo:
        e = todo.pop(0)
        if isinstance(e, BaseException) and not any(e is s for s in seen):
            seen.append(e)
            todo += [e.__cause__, e.__context__, getattr(e, "reason", None), *e.args]
    return seen


def _network_class(causes: list) -> str:
    """The failure class of a network error: the most specific cause decides (urllib3's
    NewConnectionError is a ConnectTimeoutError, so refusals are looked for before timeouts)."""
    def has(*types):
        return any(isinstance(c, types) for c in causes)

    if has(NameResolutionError, socket.gaierror):
        return "dns"
    if has(ssl.SSLError, urllib3.exceptions.SSLError):
        return "tls"
    if has(ConnectionRefusedError):
        return "refused"
    if any(isinstance(c, OSError) and c.errno in (errno.EHOSTUNREACH, errno.ENETUNREACH) for c in causes):
        return "no_route"
    if has(ConnectionResetError, ConnectionAbortedError, BrokenPipeError, http.client.RemoteDisconnected):
        return "reset"
    if has(http.client.IncompleteRead):
        return "truncated"
    if has(TimeoutError, urllib3.exceptions.TimeoutError) and not has(NewConnectionError):
        return "timeout"
    if has(urllib3.exceptions.ProtocolError):
        return "reset"
    return "other"


def _http_class(status: int) -> str:
    return {404: "http_404", 429: "http_429"}.get(status) or ("http_5xx" if status >= 500 else "http_4xx")


# -- HTTP ----------------------------------------------------------------------------------------
def _cut(resp, fired: threading.Event) -> None:
    """The watchdog's action at a file's deadline: unblock the read that waits on its socket."""
    fired.set()
    with contextlib.suppress(Exception):
        resp.shutdown()


def _address(key: str, via: str) -> tuple[str, int]:
    host, _, port = str(via).rpartition(":")
    if not host or not port.isdigit():
        raise ValueError(f"connect_to {key!r}: {via!r} is not host:port")
    return host, int(port)


class _Session:
    """The HTTP side of one download() call: one single-connection PoolManager per worker thread
    (so at most ``connections`` sockets), a semaphore per host (``per_host``)."""

    def __init__(self, opts: DownloadOptions, connect_to: dict | None = None):
        self.opts = opts
        self.connect_to = {key: _address(key, via) for key, via in (connect_to or {}).items()}
        self._local = threading.local()
        self._lock = threading.Lock()
        self._managers: list = []
        self._hosts: dict = {}

    def close(self) -> None:
        for manager in self._managers:
            manager.clear()

    def _manager(self) -> urllib3.PoolManager:
        manager = getattr(self._local, "manager", None)
        if manager is None:
            manager = urllib3.PoolManager(num_pools=1, maxsize=1, block=True)
            with self._lock:
                self._managers.append(manager)
            self._local.manager = manager
        return manager

    def _slot(self, url: str) -> threading.BoundedSemaphore:
        host = (urllib3.util.parse_url(url).host or "").lower()
        with self._lock:
            return self._hosts.setdefault(host, threading.BoundedSemaphore(self.opts.per_host))

    def get(self, url: str, out) -> dict:
        """The index entry of one URL: fetched (transient failures retried with backoff), checked, written."""
        for attempt in range(1, self.opts.retries + 2):
            try:
                data, source, status = self._attempt(url)
            except Failure as failure:
                if failure.kind in TRANSIENT and attempt <= self.opts.retries:
                    time.sleep(self.opts.backoff * 2 ** (attempt - 1))
                    continue
                log.warning("%s: %s: %s", failure.kind, url, failure)
                return _entry(url, "failed", failure.kind, str(failure), attempts=attempt, http_status=failure.status)
            path = file_path(out, url)
            os.makedirs(os.path.dirname(path), exist_ok=True)
            save_atomic(lambda tmp: tmp.write_bytes(data), path)  # a kill leaves .partial-<name>, removed next run
            return _entry(url, "ok", data=data, attempts=attempt, source=source, http_status=status)

    def _attempt(self, url: str) -> tuple[bytes, str, int]:
        try:
            body, status = self._fetch(url)
        except (HTTPError, OSError) as err:
            raise Failure(_network_class(_causes(err)), f"{type(err).__name__}: {err}"[:500]) from None
        try:
            return (*to_jpeg(body, self.opts.jpeg_quality), status)
        except Failure as failure:
            failure.status = status
            raise

    def _fetch(self, url: str) -> tuple[bytes, int]:
        """(body, HTTP status) at the end of ``url``'s redirects. The deadline counts time on the
        network only, not the wait for a host's slot (our own politeness)."""
        left, target = self.opts.deadline, url
        for _ in range(self.opts.max_redirects + 1):
            with self._slot(target):
                began = time.monotonic()
                status, payload = self._request(target, left)
                left -= time.monotonic() - began
            if status not in REDIRECTS:
                return payload, status
            target = self._follow(target, payload, status)
            if left <= 0:
                raise Failure("timeout", f"deadline of {self.opts.deadline:g} s passed in redirects", status)
        raise Failure("redirect", f"more than {self.opts.max_redirects} redirects (last to {target})", status)

    @staticmethod
    def _follow(current: str, location: str | None, status: int) -> str:
        if not location:
            raise Failure("redirect", f"HTTP {status} without a Location", status)
        target = urllib.parse.urljoin(current, location)
        problem = url_problem(target)
        if problem:
            raise Failure("redirect", f"HTTP {status} to {target[:200]!r}: {problem}", status)
        return target

    def _request(self, url: str, left: float) -> tuple[int, object]:
        """One request within ``left`` seconds: (status, Location) of a redirect, (status, body) of a
        2xx; raises Failure for any other status and at the deadline."""
        began = time.monotonic()
        timeout = urllib3.Timeout(total=left, connect=self.opts.timeout, read=self.opts.timeout)
        resp = self._open(url, timeout)
        fired = threading.Event()
        watchdog = threading.Timer(max(0.0, left - (time.monotonic() - began)), _cut, (resp, fired))
        watchdog.daemon = True
        watchdog.start()
        try:
            result = self._read(resp)
        except (Failure, HTTPError, OSError):
            if not fired.is_set():
                raise
        finally:
            watchdog.cancel()
            if not resp.isclosed():  # a body left unread: the connection cannot be reused
                resp.close()
            resp.release_conn()
        if fired.is_set():
            raise Failure("timeout", f"deadline of {self.opts.deadline:g} s passed", resp.status)
        return result

    def _open(self, url: str, timeout: urllib3.Timeout):
        """The response to GET ``url``, its headers read; sent to the ``connect_to`` address of its
        host and port when there is one, the URL's host kept in the Host header and for TLS."""
        parts = urllib3.util.parse_url(url)
        port = parts.port or (443 if parts.scheme == "https" else 80)
        host, port = self.connect_to.get(f"{parts.host}:{port}", (parts.host, port))
        if host.lower().rstrip(".").rsplit(".", 1)[-1] == "invalid":  # RFC 6761: never resolves, so never asked
            raise Failure("dns", f"{host}: the .invalid domain never resolves (RFC 6761)")
        tls = {"server_hostname": parts.host, "assert_hostname": parts.host} if parts.scheme == "https" else None
        pool = self._manager().connection_from_host(host, port, parts.scheme, pool_kwargs=tls)
        return pool.urlopen("GET", parts.request_uri, headers={**HEADERS, "Host": parts.netloc}, redirect=False,
                            retries=False, preload_content=False, timeout=timeout, assert_same_host=False)

    def _read(self, resp) -> tuple[int, object]:
        status = resp.status
        if status in REDIRECTS:
            return status, resp.headers.get("Location")
        if not 200 <= status < 300:
            raise Failure(_http_class(status), f"HTTP {status} {resp.reason or ''}".strip(), status)
        limit = self.opts.max_bytes
        length = resp.headers.get("Content-Length", "")
        if length.isdigit() and int(length) > limit:
            raise Failure("too_large", f"Content-Length {int(length):,} > max_bytes {limit:,}", status)
        body = bytearray()
        for chunk in resp.stream(CHUNK):
            body += chunk
            if len(body) > limit:
                raise Failure("too_large", f"more than max_bytes ({limit:,}) sent; stopped reading", status)
        return status, bytes(body)


# -- the run -------------------------------------------------------------------------------------
def _unique(urls) -> list[str]:
    urls = list(dict.fromkeys(urls))
    for i, url in enumerate(urls):
        if not isinstance(url, str):
            raise ValueError(f"URL {i} is {url!r}, not a string")
    return urls


def _remove_partials(out, urls=None) -> None:
    """Delete the temporary files a killed run left: all of them, or with ``urls`` (a share's) only
    theirs, since the other workers sharing OUT may be writing theirs now."""
    names = None if urls is None else {PARTIAL + file_name(u) for u in urls}
    for path in glob.glob(os.path.join(out, IMAGES, "*", PARTIAL + "*")):
        if names is None or os.path.basename(path) in names:
            log.warning("removing %s left by an interrupted run", path)
            os.remove(path)


def _done(url: str, entry: dict | None, out, retry: frozenset) -> bool:
    """Whether a rerun leaves ``url`` alone: ok with its file in place, or a failure not retried."""
    if entry is None:
        return False
    if entry["status"] == "ok":
        path = file_path(out, url)
        return os.path.isfile(path) and os.path.getsize(path) == entry["bytes"]
    return entry["class"] not in retry


def _without_fetch(url: str, entry: dict | None, out) -> dict | None:
    """The entry of a URL settled without the network: a bad URL, or a complete file that a run killed
    between its rename and its index line left under its final name (renamed only when complete)."""
    problem = url_problem(url)
    if problem:
        return _entry(url, "failed", "bad_url", problem)
    path = file_path(out, url)
    if entry is None and os.path.isfile(path):
        with open(path, "rb") as f:
            return _entry(url, "ok", message="found complete on disk (an interrupted run's)", data=f.read())
    return None


def download(urls, out, opts: DownloadOptions | None = None, progress: bool = True,
             connect_to: dict | None = None) -> dict:
    """Download ``urls`` into ``out/images`` as RGB JPEGs, resuming from ``out/index.jsonl``; returns
    the summary (also written to ``out/summary.json``, and printed when ``progress``).

    ``connect_to`` ({"host:port": "address:port"}, as curl's --connect-to) sends a host's requests
    to another address, the URL's host kept in the Host header and for TLS: how the synthetic set
    reaches its .test hosts on the local server."""
    opts = opts or DownloadOptions()
    urls = share.mine(_unique(urls), share.parse(opts.shard) if opts.shard else None)
    index_name, summary_name = opts.files()
    session = _Session(opts, connect_to)
    os.makedirs(os.path.join(out, IMAGES), exist_ok=True)
    _remove_partials(out, urls if opts.shard else None)
    _cut_torn_line(os.path.join(out, index_name))
    index = read_index(out)
    began = time.monotonic()
    retry = opts.retry_classes
    todo = [u for u in urls if not _done(u, index.get(u), out, retry)]
    counts = Counter(skipped=len(urls) - len(todo))
    with open(os.path.join(out, index_name), "a", encoding="utf-8") as f, \
            tqdm(total=len(todo), disable=not progress, unit="url", desc="download") as bar:
        def record(entry: dict) -> None:
            f.write(json.dumps(entry) + "\n")
            f.flush()
            index[entry["url"]] = entry
            counts[entry["status"]] += 1
            bar.update()

        fetch = []
        for url in todo:
            settled = _without_fetch(url, index.get(url), out)
            if settled is None:
                fetch.append(url)
            else:
                record(settled)
                counts["recovered"] += settled["status"] == "ok"
        pool = ThreadPoolExecutor(opts.connections, thread_name_prefix="download")
        try:
            for future in as_completed([pool.submit(session.get, url, out) for url in fetch]):
                record(future.result())
        finally:
            pool.shutdown(cancel_futures=True)
            session.close()
    summary = _summary(urls, index, counts, time.monotonic() - began)
    write_atomic(os.path.join(out, summary_name), json.dumps(summary, indent=1))
    if progress:
        print(summary_table(summary))
    else:
        log.info("%s", summary_table(summary))
    return summary


def _summary(urls: list, index: dict, counts: Counter, seconds: float) -> dict:
    failed = Counter(index[u]["class"] for u in urls if index[u]["status"] == "failed")
    downloaded = counts["ok"] - counts["recovered"]
    return {"total": len(urls), "ok": sum(index[u]["status"] == "ok" for u in urls),
            "failed": {kind: failed[kind] for kind in FAILURES},
            "skipped": counts["skipped"], "downloaded": downloaded, "recovered": counts["recovered"],
            "failed_now": counts["failed"], "seconds": round(seconds, 3),
            "images_per_s": round(downloaded / seconds, 2) if seconds > 0 else 0.0,
            "transient": list(TRANSIENT)}


def summary_table(summary: dict) -> str:
    """The summary as the thesis's table: one row per failure class met, then ok and the totals."""
    rows = [(f"{FAILURES[k][0]} [{k}]", n) for k, n in summary["failed"].items() if n]
    rows += [("ok", summary["ok"]), ("total", summary["total"])]
    width = max(len(label) for label, _ in rows)
    lines = [f"{'outcome':<{width}}  {'URLs':>9}"] + [f"{label:<{width}}  {n:>9,}" for label, n in rows]
    lines.append(f"this run: {summary['downloaded']:,} downloaded, {summary['failed_now']:,} failed, "
                 f"{summary['recovered']:,} found on disk, {summary['skipped']:,} skipped (done earlier), "
                 f"{summary['seconds']:.1f} s, {summary['images_per_s']:.1f} images/s")
    return "\n".join(lines)
