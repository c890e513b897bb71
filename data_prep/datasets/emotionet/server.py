"""A local HTTP server that misbehaves as image hosts do, for the downloader's tests and benchmark
(nothing of the toolkit is tested against the internet; DESIGN.md).

It listens on 127.0.0.1 on a free port and is driven by ``routes``: the raw request target as
received (path and query string) -> a behaviour, with files read from ``root``. Both may be replaced
while it runs, since a sheet's URLs need the port first. Unknown targets get 404 (a target differing
only in the case of its percent-escapes is the same). Behaviours:

- ``{"kind": "file", "path": rel, "content_type": optional (it may lie)}``
- ``{"kind": "status", "code": N}``
- ``{"kind": "redirect", "location": target or absolute URL or None, "code": 301|302|307}``
- ``{"kind": "slow", "path": rel, "delay": seconds before each chunk, "chunk": bytes (1024)}``
- ``{"kind": "stall", "path": rel}``: headers and half the body, then nothing until shutdown (or
  until the client gives up)
- ``{"kind": "truncated", "path": rel}``: the full Content-Length, half the body, then a close
- ``{"kind": "html"}``: 200 with an HTML page labelled image/jpeg
- ``{"kind": "huge", "bytes": N, "length": True}``: N bytes (without Content-Length when length is False)
- ``{"kind": "reset"}``: the connection closed with SO_LINGER 0, which sends a TCP reset

It counts, under a lock: ``requests`` and body bytes ``sent`` per target; ``max_open``, the most
client connections open at once (counted from accept to close, not per request: keep-alive
connections stay open between requests); ``max_active``, the most requests waiting out their
``latency`` at once. ``latency`` seconds are added before each response. A request counts as active
only during that wait: its client surely still waits for it then (nothing is written yet), so
``max_active`` never counts a request whose last byte the client already has, nor a stalled
response of an earlier run.
"""
from __future__ import annotations

import mimetypes
import os
import re
import select
import socket
import socketserver
import struct
import sys
import threading
import time
from collections import Counter
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

HTML = b"<!doctype html><html><head><title>Not here</title></head><body>This image was removed.</body></html>"


def _upper_escapes(target: str) -> str:
    return re.sub(r"%[0-9a-fA-F]{2}", lambda m: m.group().upper(), target)


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, as real image hosts
    disable_nagle_algorithm = True  # headers and body go in two writes: no 40 ms wait for a delayed ACK

    def do_GET(self):
        server = self.server
        server.count(server.requests, self.path)
        if server.latency:
            server.active(+1)
            try:
                time.sleep(server.latency)
            finally:
                server.active(-1)
        try:
            route = server.route(self.path)
            getattr(self, "_" + route["kind"])(route)
        except (BrokenPipeError, ConnectionResetError):  # the client stopped reading (max_bytes, deadline)
            self.close_connection = True

    def log_message(self, format, *args):  # noqa: A002  (quiet: failures here are the point)
        pass

    def _head(self, code: int, length: int | None, content_type: str = "image/jpeg") -> None:
        self.send_response(code)
        self.send_header("Content-Type", content_type)
        if length is None:
            self.send_header("Connection", "close")
            self.close_connection = True
        else:
            self.send_header("Content-Length", str(length))
        self.end_headers()

    def _send(self, data: bytes) -> None:
        self.wfile.write(data)
        self.server.count(self.server.sent, self.path, len(data))

    def _data(self, route) -> bytes:
        with open(os.path.join(self.server.root, route["path"]), "rb") as f:
            return f.read()

    def _file(self, route):
        data = self._data(route)
        kind = route.get("content_type") or mimetypes.guess_type(route["path"])[0] or "application/octet-stream"
        self._head(200, len(data), kind)
        self._send(data)

    def _status(self, route):
        body = f"HTTP {route['code']}".encode()
        self._head(route["code"], len(body), "text/plain")
        self._send(body)

    def _redirect(self, route):
        self.send_response(route.get("code", 302))
        if route.get("location") is not None:
            self.send_header("Location", route["location"])
        self.send_header("Content-Length", "0")
        self.end_headers()

    def _slow(self, route):
        data, size = self._data(route), route.get("chunk", 1024)
        self._head(200, len(data))
        for start in range(0, len(data), size):
            if self.server.stopping.wait(route["delay"]):
                self.close_connection = True
                return
            self._send(data[start:start + size])

    def _stall(self, route):
        data = self._data(route)
        self._head(200, len(data))
        self._send(data[: len(data) // 2])
        while not self.server.stopping.wait(0.05) and not self._client_gone():
            pass
        self.close_connection = True

    def _client_gone(self) -> bool:
        """Whether the client closed its end (so a stalled connection is not counted open forever)."""
        readable, _, _ = select.select([self.connection], [], [], 0)
        try:
            return bool(readable) and self.connection.recv(1, socket.MSG_PEEK) == b""
        except OSError:
            return True

    def _truncated(self, route):
        data = self._data(route)
        self._head(200, len(data))
        self._send(data[: len(data) // 2])
        self.close_connection = True

    def _html(self, route):
        self._head(200, len(HTML))
        self._send(HTML)

    def _huge(self, route):
        total = route["bytes"]
        self._head(200, total if route.get("length", True) else None, "application/octet-stream")
        block = bytes(64 * 1024)
        for start in range(0, total, len(block)):
            self._send(block[: min(len(block), total - start)])

    def _reset(self, route):
        self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        self.connection.close()  # the descriptor closes (with a reset) once the handler's files do
        self.close_connection = True


class LocalServer(ThreadingHTTPServer):
    """The server, started and stopped as a context manager (``with LocalServer(root, routes) as s``)."""

    daemon_threads = True

    def __init__(self, root=None, routes: dict | None = None, latency: float = 0.0):
        super().__init__(("127.0.0.1", 0), Handler)
        self.root, self.routes, self.latency = root, dict(routes or {}), latency
        self.stopping = threading.Event()
        self.requests: Counter = Counter()
        self.sent: Counter = Counter()
        self.max_open = self.max_active = self._active = 0
        self._open: set = set()
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None

    def server_bind(self):
        """Bind without HTTPServer's reverse lookup of the address (no resolver is needed here)."""
        socketserver.TCPServer.server_bind(self)
        self.server_name, self.server_port = self.server_address[:2]

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"

    def url(self, target: str) -> str:
        return self.base_url + target

    @property
    def open_now(self) -> int:
        with self._lock:
            return len(self._open)

    def route(self, target: str) -> dict:
        """The behaviour for a request target: the route of that exact target, else of one that differs
        only in the case of its percent-escapes (urllib3 sends %2E for a URL's %2e), else a 404."""
        if target in self.routes:
            return self.routes[target]
        wanted = _upper_escapes(target)
        found = [b for key, b in self.routes.items() if _upper_escapes(key) == wanted]
        return found[0] if found else {"kind": "status", "code": 404}

    def count(self, counter: Counter, target: str, n: int = 1) -> None:
        with self._lock:
            counter[target] += n

    def active(self, change: int) -> None:
        with self._lock:
            self._active += change
            self.max_active = max(self.max_active, self._active)

    def reset_counts(self) -> None:
        with self._lock:
            self.requests.clear()
            self.sent.clear()
            self.max_open, self.max_active = len(self._open), self._active

    def process_request(self, request, client_address):
        with self._lock:
            self._open.add(request)
            self.max_open = max(self.max_open, len(self._open))
        super().process_request(request, client_address)

    def shutdown_request(self, request):
        super().shutdown_request(request)
        with self._lock:
            self._open.discard(request)

    def handle_error(self, request, client_address):
        """Quiet about clients that vanish (killed, or giving up at their deadline): tests provoke it."""
        if not isinstance(sys.exc_info()[1], ConnectionError):
            super().handle_error(request, client_address)

    def __enter__(self):
        self._thread = threading.Thread(target=self.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self.stop()

    def stop(self) -> None:
        """Stop serving and end every handler: stalled ones wake, idle keep-alive ones see their socket shut."""
        self.stopping.set()
        self.shutdown()
        with self._lock:
            still_open = list(self._open)
        for sock in still_open:
            try:
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
        self.server_close()
        self._thread.join()
