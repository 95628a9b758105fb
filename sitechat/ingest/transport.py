"""An httpx transport that connects only to the public address it checked.

Checking a host name before a request and then letting httpx resolve it again leaves a
gap: a DNS server that answers "public" to the check and "127.0.0.1" to the connection
(DNS rebinding) turns the crawler against the machine it runs on. This transport closes
the gap by resolving the name itself at connect time, refusing the connection unless
every address is public (or the host is explicitly trusted), and connecting to the very
address it checked. The URL, and so the ``Host`` header and the TLS server name (SNI and
certificate check), keep the original name, because httpcore takes those from the
request, not from the socket.

Refusals raise :class:`~sitechat.errors.UnsafeURLError` out of the request.
"""

from __future__ import annotations

import asyncio
import socket
import ssl
from collections.abc import AsyncIterator, Iterable, Iterator
from contextlib import contextmanager
from typing import Any

import httpcore
import httpx

from sitechat.errors import FetchError, UnsafeURLError
from sitechat.ingest.options import CrawlOptions, normalize_trusted_host
from sitechat.ingest.urls import is_private_address, refusal

__all__ = ["PublicOnlyTransport", "crawler_client", "host_is_trusted"]

# httpcore's exceptions, mapped to httpx's (the same names), most specific first.
_EXCEPTIONS: tuple[tuple[type[Exception], type[httpx.TransportError]], ...] = (
    (httpcore.ConnectTimeout, httpx.ConnectTimeout),
    (httpcore.ReadTimeout, httpx.ReadTimeout),
    (httpcore.WriteTimeout, httpx.WriteTimeout),
    (httpcore.PoolTimeout, httpx.PoolTimeout),
    (httpcore.TimeoutException, httpx.TimeoutException),
    (httpcore.ConnectError, httpx.ConnectError),
    (httpcore.ReadError, httpx.ReadError),
    (httpcore.WriteError, httpx.WriteError),
    (httpcore.NetworkError, httpx.NetworkError),
    (httpcore.RemoteProtocolError, httpx.RemoteProtocolError),
    (httpcore.LocalProtocolError, httpx.LocalProtocolError),
    (httpcore.UnsupportedProtocol, httpx.UnsupportedProtocol),
    (httpcore.ProtocolError, httpx.ProtocolError),
)


@contextmanager
def _mapped(request: httpx.Request) -> Iterator[None]:
    try:
        yield
    except httpcore.ProxyError as exc:  # pragma: no cover - no proxy is configured here
        raise httpx.ProxyError(str(exc), request=request) from exc
    except Exception as exc:
        for source, target in _EXCEPTIONS:
            if isinstance(exc, source):
                raise target(str(exc), request=request) from exc
        raise


def host_is_trusted(host: str, port: int | None, trusted: Iterable[str]) -> bool:
    """True when ``host`` (or ``host:port``) is in the explicit allowlist ``trusted``.

    The entries are in :func:`~sitechat.ingest.options.normalize_trusted_host` form, as
    :class:`CrawlOptions` keeps them.
    """
    name = host.strip("[]").lower().rstrip(".")
    with_port = f"[{name}]:{port}" if ":" in name else f"{name}:{port}"
    return any(entry == name or (port is not None and entry == with_port) for entry in trusted)


class _PublicOnlyBackend(httpcore.AsyncNetworkBackend):
    def __init__(self, trusted: tuple[str, ...]) -> None:
        self._inner = httpcore.AnyIOBackend()
        self._trusted = trusted

    async def _addresses(self, host: str, port: int) -> list[str]:
        if host_is_trusted(host, port, self._trusted):
            return [host]
        if is_private_address(host):
            raise refusal(host, "it is a private or reserved address")
        loop = asyncio.get_running_loop()
        try:
            infos = await loop.getaddrinfo(host, port, type=socket.SOCK_STREAM)
        except (OSError, UnicodeError) as exc:
            raise FetchError(f"Could not resolve host {host!r}: {exc}. Check the URL.") from exc
        addresses: list[str] = []
        for info in infos:
            address = str(info[4][0])
            if is_private_address(address):
                raise refusal(host, f"it resolves to the private or reserved address {address}")
            if address not in addresses:
                addresses.append(address)
        return addresses

    async def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,
        local_address: str | None = None,
        socket_options: Iterable[Any] | None = None,
    ) -> httpcore.AsyncNetworkStream:
        last: Exception | None = None
        for address in await self._addresses(host, port):
            try:
                return await self._inner.connect_tcp(
                    address, port, timeout, local_address, socket_options
                )
            except httpcore.ConnectError as exc:  # try the name's next address
                last = exc
        raise last or httpcore.ConnectError(f"no address for {host}")

    async def connect_unix_socket(
        self, path: str, timeout: float | None = None, socket_options: Iterable[Any] | None = None
    ) -> httpcore.AsyncNetworkStream:
        raise UnsafeURLError("Unix sockets are never used by the crawler.")

    async def sleep(self, seconds: float) -> None:
        await self._inner.sleep(seconds)


class _Body(httpx.AsyncByteStream):
    def __init__(self, stream: Any, request: httpx.Request) -> None:
        self._stream = stream
        self._request = request

    async def __aiter__(self) -> AsyncIterator[bytes]:
        with _mapped(self._request):
            async for part in self._stream:
                yield part

    async def aclose(self) -> None:
        if hasattr(self._stream, "aclose"):
            with _mapped(self._request):
                await self._stream.aclose()


class PublicOnlyTransport(httpx.AsyncBaseTransport):
    """HTTP/1.1 transport refusing private addresses at connect time (see module doc).

    ``trusted_hosts`` lists ``host`` or ``host:port`` entries exempt from the check, for
    an intranet site or a test server; everything else private stays refused. A malformed
    entry raises ``ValueError``.
    """

    def __init__(
        self,
        *,
        trusted_hosts: Iterable[str] = (),
        verify: ssl.SSLContext | bool = True,
        max_connections: int = 32,
    ) -> None:
        context = verify if isinstance(verify, ssl.SSLContext) else httpx.create_ssl_context(verify)
        self._pool = httpcore.AsyncConnectionPool(
            ssl_context=context,
            max_connections=max_connections,
            max_keepalive_connections=max_connections,
            keepalive_expiry=5.0,
            network_backend=_PublicOnlyBackend(tuple(map(normalize_trusted_host, trusted_hosts))),
        )

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        if not isinstance(request.stream, httpx.AsyncByteStream):  # pragma: no cover
            raise TypeError("PublicOnlyTransport needs an async request body")
        core_request = httpcore.Request(
            method=request.method,
            url=httpcore.URL(
                scheme=request.url.raw_scheme,
                host=request.url.raw_host,
                port=request.url.port,
                target=request.url.raw_path,
            ),
            headers=request.headers.raw,
            content=request.stream,
            extensions=request.extensions,
        )
        with _mapped(request):
            response = await self._pool.handle_async_request(core_request)
        return httpx.Response(
            status_code=response.status,
            headers=response.headers,
            stream=_Body(response.stream, request),
            extensions=response.extensions,
        )

    async def aclose(self) -> None:
        await self._pool.aclose()


def crawler_client(options: CrawlOptions) -> httpx.AsyncClient:
    """The client a crawl makes for itself: its user agent and timeout, no automatic
    redirects (each hop is checked), and connections checked against private addresses
    unless ``options.allow_private``."""
    limits = httpx.Limits(max_connections=max(options.concurrency * 2, 8))
    transport: httpx.AsyncBaseTransport | None = None
    if not options.allow_private:
        transport = PublicOnlyTransport(
            trusted_hosts=options.trusted_hosts, max_connections=limits.max_connections or 8
        )
    return httpx.AsyncClient(
        headers={"User-Agent": options.user_agent},
        timeout=options.timeout,
        follow_redirects=False,
        transport=transport,
        limits=limits,
    )
