"""A real local HTTP server for crawler tests, serving ``sites/crawl`` plus special routes."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from functools import partial
from http.server import BaseHTTPRequestHandler, SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

CRAWL_SITE = Path(__file__).parent / "sites" / "crawl"
HUGE_BYTES = 300_000


@dataclass
class SiteServer:
    """What the test server saw, and knobs a test may turn before crawling."""

    base: str = ""
    requests: list[str] = field(default_factory=list)
    times: list[tuple[str, float]] = field(default_factory=list)
    delay: float = 0.0
    robots: str | None = None
    active: int = 0
    max_active: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock)

    def url(self, path: str) -> str:
        return self.base + path


def _redirect(handler: SimpleHTTPRequestHandler, status: int, location: str) -> None:
    handler.send_response(status)
    handler.send_header("Location", location)
    handler.send_header("Content-Length", "0")
    handler.end_headers()


def _send(
    handler: SimpleHTTPRequestHandler, body: bytes, content_type: str, *, length: bool = True
) -> None:
    handler.send_response(200)
    handler.send_header("Content-Type", content_type)
    if length:
        handler.send_header("Content-Length", str(len(body)))
    handler.end_headers()
    handler.wfile.write(body)


class _Handler(SimpleHTTPRequestHandler):
    state: SiteServer
    extensions_map = {
        **SimpleHTTPRequestHandler.extensions_map,
        ".md": "text/markdown; charset=utf-8",
        ".html": "text/html; charset=utf-8",
    }

    def log_message(self, format: str, *args: Any) -> None:
        """Keep test output quiet."""

    def do_GET(self) -> None:
        state = self.state
        with state.lock:
            state.requests.append(self.path)
            state.times.append((self.path, time.monotonic()))
            state.active += 1
            state.max_active = max(state.max_active, state.active)
        try:
            if state.delay and self.path.endswith(".html"):
                time.sleep(state.delay)
        finally:
            # counted as in flight only until the response starts: once the client has it,
            # it may free its slot before this thread gets to run again
            with state.lock:
                state.active -= 1
        self._route()

    def _route(self) -> None:
        path = self.path
        if path == "/robots.txt" and self.state.robots is not None:
            _send(self, self.state.robots.encode(), "text/plain")
        elif path == "/old-guide":
            _redirect(self, 301, "/guide.html")
        elif path == "/away":
            _redirect(self, 302, "http://example.org/landing")
        elif path.startswith("/loop/"):
            _redirect(self, 302, f"/loop/{int(path.rsplit('/', 1)[1]) + 1}")
        elif path == "/report":
            _send(self, b"%PDF-1.4\n%\xe2\xe3\xcf\xd3\n" + bytes(range(256)) * 8, "application/pdf")
        elif path == "/huge.html":
            # No Content-Length: the crawler must stop reading by itself.
            body = b"<html><body><main>" + b"<p>word word word</p>" * (HUGE_BYTES // 21)
            _send(self, body, "text/html", length=False)
        elif path == "/huge-declared.html":
            _send(self, b"<p>x</p>" * (HUGE_BYTES // 8), "text/html")
        else:
            super().do_GET()


@pytest.fixture
def site_server() -> Iterator[SiteServer]:
    """Serve the crawl fixture site on 127.0.0.1 at a free port, in a thread."""
    state = SiteServer()
    handler = type("Handler", (_Handler,), {"state": state, "protocol_version": "HTTP/1.0"})
    server = ThreadingHTTPServer(("127.0.0.1", 0), partial(handler, directory=str(CRAWL_SITE)))
    server.daemon_threads = True
    state.base = f"http://127.0.0.1:{server.server_address[1]}"
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05})
    thread.start()
    try:
        yield state
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


# -- a programmable server for the hard cases --------------------------------------------


@dataclass
class Reply:
    """One canned answer: status, body, headers."""

    status: int = 200
    body: bytes = b""
    headers: dict[str, str] = field(default_factory=dict)


def html_reply(body: str, **headers: str) -> Reply:
    """A 200 text/html answer."""
    return Reply(200, body.encode(), {"Content-Type": "text/html; charset=utf-8", **headers})


@dataclass
class ProgrammableServer:
    """Answers each path from ``routes`` (exact path with query, else path alone); counts hits.

    A route may be a :class:`Reply` or a callable taking (path, request headers). A 200
    reply that carries an ``ETag`` is answered with 304 when the request's
    ``If-None-Match`` matches, and those 304s are counted in ``not_modified``.
    """

    base: str = ""
    routes: dict[str, Any] = field(default_factory=dict)
    hits: list[str] = field(default_factory=list)
    not_modified: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock)

    def url(self, path: str) -> str:
        return self.base + path

    def answer(self, path: str, headers: Any) -> Reply:
        route = self.routes.get(path, self.routes.get(path.split("?", 1)[0]))
        if route is None:
            return Reply(404, b"not found", {"Content-Type": "text/plain"})
        reply = route(path, headers) if callable(route) else route
        etag = reply.headers.get("ETag")
        if reply.status == 200 and etag and headers.get("If-None-Match") == etag:
            with self.lock:
                self.not_modified += 1
            return Reply(304, b"", {"ETag": etag})
        return reply


class _ProgrammableHandler(BaseHTTPRequestHandler):
    server_state: ProgrammableServer
    protocol_version = "HTTP/1.0"

    def log_message(self, format: str, *args: Any) -> None:
        """Keep test output quiet."""

    def do_GET(self) -> None:
        state = self.server_state
        with state.lock:
            state.hits.append(self.path)
        reply = state.answer(self.path, self.headers)
        self.send_response(reply.status)
        for key, value in reply.headers.items():
            self.send_header(key, value)
        if "Content-Length" not in reply.headers:
            self.send_header("Content-Length", str(len(reply.body)))
        self.end_headers()
        self.wfile.write(reply.body)


def serve(state: ProgrammableServer) -> Iterator[ProgrammableServer]:
    """Run ``state``'s routes on 127.0.0.1 at a free port until the generator is closed."""
    bound = type("Bound", (_ProgrammableHandler,), {"server_state": state})
    server = ThreadingHTTPServer(("127.0.0.1", 0), bound)
    server.daemon_threads = True
    state.base = f"http://127.0.0.1:{server.server_address[1]}"
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05})
    thread.start()
    try:
        yield state
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


@pytest.fixture
def web() -> Iterator[ProgrammableServer]:
    """A programmable server on 127.0.0.1 (routes set by each test)."""
    yield from serve(ProgrammableServer())


@pytest.fixture
def bystander() -> Iterator[ProgrammableServer]:
    """A second local server that no crawl should ever reach (it counts any hit)."""
    state = ProgrammableServer(routes={"/": html_reply("<p>internal admin</p>")})
    yield from serve(state)
