"""Plumbing shared by the local wire servers: scripts, recordings and a threaded HTTP server.

A server answers each request from a per-endpoint queue of scripted items (a
:class:`Reply` or an :class:`HTTPFault`) and falls back to a default reply when the queue
is empty. Streams are written with HTTP/1.1 chunked encoding and ``TCP_NODELAY`` so every
token reaches the client as its own packet, the way real providers stream.
"""

from __future__ import annotations

import hashlib
import json
import math
import random
import socket
import struct
import sys
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import Any, ClassVar

from typing_extensions import Self

__all__ = [
    "HTTPFault",
    "RecordedRequest",
    "Reply",
    "ScriptItem",
    "WireServer",
    "deterministic_vector",
    "echo",
    "estimate_tokens",
    "serve_until_interrupted",
]


@dataclass(frozen=True, slots=True)
class Reply:
    """A scripted answer, with optional faults injected into its stream.

    ``text=None`` means the server's default (echo-like) reply. The text is streamed in
    pieces of ``token_size`` characters, ``token_delay`` seconds apart.
    ``first_byte_delay`` holds back the response headers; ``drop_after`` closes the
    connection after that many tokens; ``malformed_after`` sends one unreadable SSE line
    or event frame after that many tokens; ``error_after`` sends the provider's in-stream
    error (``error_type``, ``error_message``) after that many tokens; ``cut_after`` ends
    the stream cleanly after that many tokens but without its end-of-answer marker (no
    ``finish_reason`` or ``[DONE]``; no ``messageStop``), as a proxy that gives up on a
    crashed upstream does. ``finish_reason`` is how the answer ended, in OpenAI's words
    (``"content_filter"``, ``"length"``; the Bedrock server sends ``guardrail_intervened``
    and ``max_tokens`` for them, any other value as is); an empty ``text`` is an answer
    with no words at all.
    """

    text: str | None = None
    token_size: int = 4
    token_delay: float = 0.0
    first_byte_delay: float = 0.0
    drop_after: int | None = None
    malformed_after: int | None = None
    error_after: int | None = None
    cut_after: int | None = None
    error_type: str = ""
    error_message: str = "The model stream failed."
    input_tokens: int | None = None
    output_tokens: int | None = None
    finish_reason: str = "stop"

    def tokens(self, text: str) -> list[str]:
        """``text`` cut into the pieces this reply streams."""
        size = max(1, self.token_size)
        return [text[i : i + size] for i in range(0, len(text), size)]


@dataclass(frozen=True, slots=True)
class HTTPFault:
    """A whole-request failure: this status, body and headers, after ``first_byte_delay``."""

    status: int
    body: bytes = b""
    headers: tuple[tuple[str, str], ...] = ()
    first_byte_delay: float = 0.0


ScriptItem = Reply | HTTPFault


@dataclass(frozen=True, slots=True)
class RecordedRequest:
    """A request the server received; header names are lower-cased."""

    method: str
    path: str
    headers: Mapping[str, str]
    body: bytes = b""

    @property
    def json(self) -> Any:
        """The body parsed as JSON (``None`` when empty)."""
        return json.loads(self.body) if self.body else None


def echo(last_user_text: str) -> str:
    """The default answer: deterministic and visibly tied to the question."""
    return f"You said: {last_user_text}" if last_user_text else "Hello from the local test server."


def serve_until_interrupted(server: WireServer, banner: str) -> None:
    """Run ``server`` in the foreground until Ctrl+C (the servers' ``python -m`` mode)."""
    with server:
        print(banner.format(url=server.url), flush=True)
        try:
            while True:
                time.sleep(3600)
        except KeyboardInterrupt:
            pass


def estimate_tokens(text: str) -> int:
    """A deterministic stand-in for a tokenizer: about four characters a token."""
    return max(1, math.ceil(len(text) / 4)) if text else 0


def deterministic_vector(text: str, dimension: int) -> list[float]:
    """A unit vector that depends only on ``text``: equal texts embed equally."""
    seed = int.from_bytes(hashlib.blake2b(text.encode("utf-8"), digest_size=8).digest(), "big")
    rng = random.Random(seed)  # noqa: S311 - test data, not cryptography
    values = [rng.gauss(0.0, 1.0) for _ in range(dimension)]
    norm = math.sqrt(sum(v * v for v in values)) or 1.0
    return [v / norm for v in values]


class _Handler(BaseHTTPRequestHandler):
    """Reads one request and hands it to the owning :class:`WireServer`."""

    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True
    server: _Server

    def _serve(self) -> None:
        length = int(self.headers.get("content-length") or 0)
        body = self.rfile.read(length) if length else b""
        request = RecordedRequest(
            method=self.command,
            path=self.path,
            headers={k.lower(): v for k, v in self.headers.items()},
            body=body,
        )
        self.server.owner._record(request)
        try:
            self.server.owner._dispatch(request, _Response(self))
        except (BrokenPipeError, ConnectionResetError):
            self.close_connection = True

    do_GET = do_POST = _serve

    def log_message(self, format: str, *args: Any) -> None:
        """Stay quiet: test output should show the tests, not an access log."""


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    block_on_close = False
    request_queue_size = 256
    owner: WireServer

    def handle_error(self, request: Any, client_address: Any) -> None:
        # a client that hangs up (after a timeout, a dropped stream) is normal here
        if not isinstance(sys.exc_info()[1], ConnectionError):
            super().handle_error(request, client_address)


class _Response:
    """Writes one response: whole, or streamed in HTTP/1.1 chunks."""

    def __init__(self, handler: _Handler) -> None:
        self._handler = handler
        self._write = handler.wfile.write

    def wait(self, seconds: float) -> None:
        """Sleep, but wake at once when the server stops."""
        if seconds > 0:
            self._handler.server.owner._stopping.wait(seconds)

    def send(self, status: int, body: bytes, headers: Iterable[tuple[str, str]] = ()) -> None:
        head = [f"HTTP/1.1 {status} {_reason(status)}"]
        head += [f"{name}: {value}" for name, value in headers]
        head.append(f"Content-Length: {len(body)}")
        self._write(("\r\n".join(head) + "\r\n\r\n").encode("latin-1") + body)

    def send_json(self, status: int, payload: Any, headers: Iterable[tuple[str, str]] = ()) -> None:
        body = json.dumps(payload, separators=(",", ":")).encode("utf-8")
        self.send(status, body, [("Content-Type", "application/json"), *headers])

    def send_fault(self, fault: HTTPFault) -> None:
        self.wait(fault.first_byte_delay)
        self.send(fault.status, fault.body, fault.headers)

    def start_stream(self, content_type: str, headers: Iterable[tuple[str, str]] = ()) -> None:
        head = ["HTTP/1.1 200 OK", f"Content-Type: {content_type}", "Transfer-Encoding: chunked"]
        head += [f"{name}: {value}" for name, value in headers]
        self._write(("\r\n".join(head) + "\r\n\r\n").encode("latin-1"))

    def chunk(self, data: bytes) -> None:
        self._write(b"%x\r\n%s\r\n" % (len(data), data))

    def end_stream(self) -> None:
        self._write(b"0\r\n\r\n")

    def drop(self) -> None:
        """Cut the connection mid-response, as a crashed proxy or a network fault would."""
        self._handler.close_connection = True
        conn = self._handler.connection
        # a zero linger turns close() into a reset, so the client sees the break at once
        conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        conn.shutdown(socket.SHUT_RDWR)


def _reason(status: int) -> str:
    return BaseHTTPRequestHandler.responses.get(status, ("Error",))[0]


class WireServer:
    """Base of the local wire servers: lifecycle, scripting and recording.

    Use it as a context manager, or call :meth:`start` and :meth:`stop`. It listens on
    127.0.0.1 on a free port and serves each connection in its own thread.
    """

    endpoints: ClassVar[tuple[str, ...]] = ()

    def __init__(self, *, host: str = "127.0.0.1", port: int = 0) -> None:
        self._address = (host, port)
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None
        self._stopping = threading.Event()
        # handler threads pop scripts and append recordings concurrently
        self._lock = threading.Lock()
        self._queues: dict[str, deque[ScriptItem]] = {}
        self._requests: list[RecordedRequest] = []

    # lifecycle -------------------------------------------------------------------------
    def start(self) -> Self:
        """Bind and serve in a background thread; returns the server for chaining."""
        if self._server is not None:
            return self
        self._stopping.clear()
        server = _Server(self._address, _Handler)
        server.owner = self
        self._server = server
        self._thread = threading.Thread(
            target=server.serve_forever,
            kwargs={"poll_interval": 0.05},
            name=f"{type(self).__name__}-{server.server_address[1]}",
            daemon=True,
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop serving and wake any handler that is sleeping in a delay."""
        server, self._server = self._server, None
        if server is None:
            return
        self._stopping.set()
        server.shutdown()
        server.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    @property
    def port(self) -> int:
        """The port the server listens on (chosen by the OS unless given)."""
        if self._server is None:
            raise RuntimeError("The server is not running: call start() or use 'with'.")
        return int(self._server.server_address[1])

    @property
    def url(self) -> str:
        """``http://127.0.0.1:PORT``, the root of the server."""
        return f"http://127.0.0.1:{self.port}"

    # scripting -------------------------------------------------------------------------
    def script(self, *items: ScriptItem, endpoint: str | None = None) -> Self:
        """Queue replies or faults; each request to ``endpoint`` takes the next one."""
        name = endpoint or self.endpoints[0]
        if name not in self.endpoints:
            raise ValueError(f"Unknown endpoint {name!r}; choose one of {self.endpoints}.")
        with self._lock:
            self._queues.setdefault(name, deque()).extend(items)
        return self

    def pending(self, endpoint: str | None = None) -> int:
        """How many scripted items are still waiting for a request."""
        with self._lock:
            return len(self._queues.get(endpoint or self.endpoints[0], ()))

    def _next(self, endpoint: str) -> ScriptItem | None:
        with self._lock:
            queue = self._queues.get(endpoint)
            return queue.popleft() if queue else None

    # recording -------------------------------------------------------------------------
    @property
    def requests(self) -> list[RecordedRequest]:
        """Every request received so far, oldest first."""
        with self._lock:
            return list(self._requests)

    def clear(self) -> None:
        """Forget recorded requests and scripted items."""
        with self._lock:
            self._requests.clear()
            self._queues.clear()

    def _record(self, request: RecordedRequest) -> None:
        with self._lock:
            self._requests.append(request)

    def _dispatch(self, request: RecordedRequest, response: _Response) -> None:
        raise NotImplementedError


def stream_tokens(
    response: _Response,
    reply: Reply,
    tokens: list[str],
    encode: Callable[[str], bytes],
    *,
    malformed: bytes,
    error: Callable[[], bytes],
) -> bool:
    """Write ``tokens`` as stream chunks, injecting the reply's faults.

    Returns False when the stream was cut short (dropped or failed) and must not be
    finished normally.
    """
    for index, token in enumerate(tokens):
        if _fault_at(response, reply, index, malformed, error):
            return False
        if reply.token_delay and index:
            response.wait(reply.token_delay)
        response.chunk(encode(token))
    return not _fault_at(response, reply, len(tokens), malformed, error)


def _fault_at(
    response: _Response, reply: Reply, index: int, malformed: bytes, error: Callable[[], bytes]
) -> bool:
    if reply.malformed_after == index:
        response.chunk(malformed)
        response.end_stream()
        return True
    if reply.error_after == index:
        response.chunk(error())
        response.end_stream()
        return True
    if reply.drop_after == index:
        response.drop()
        return True
    if reply.cut_after == index:
        response.end_stream()
        return True
    return False
