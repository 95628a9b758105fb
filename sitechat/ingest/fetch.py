"""One polite, bounded, checked HTTP GET: the crawler's only way onto the network.

Every hop of a redirect chain is checked (scheme, private address, robots.txt, the
caller's scope), so a redirect cannot lead the crawler somewhere a link could not.
Requests to one host are spaced and bounded (politeness); 429/503 answers are retried as
``Retry-After`` asks, within limits; bodies are read raw and inflated here with a hard
cap, so neither a large page nor a compression bomb can fill memory; and a re-crawl
sends the validators of the previous fetch, so an unchanged page costs a 304 and no
extraction.
"""

from __future__ import annotations

import asyncio
import email.utils
import random
import time
import zlib
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import Literal

import httpx

from sitechat._redact import safe_url
from sitechat.errors import FetchError, UnsafeURLError
from sitechat.ingest.options import CrawlOptions, CrawlStats
from sitechat.ingest.robots import RobotsCache
from sitechat.ingest.transport import host_is_trusted
from sitechat.ingest.urls import canonicalize_url, check_public_host, host_of

__all__ = ["BUDGET_SPENT", "MAX_REDIRECTS", "Fetcher", "Response", "Stop", "Validators"]

MAX_REDIRECTS = 5
_ROBOTS_MAX_BYTES = 512_000
_SITEMAP_MAX_BYTES = 50 * 1024 * 1024
_RETRY_STATUSES = frozenset({429, 502, 503, 504})
_REDIRECT_STATUSES = frozenset({301, 302, 303, 307, 308})
_ACCEPT = "text/html,application/xhtml+xml,text/markdown;q=0.9,text/plain;q=0.8,*/*;q=0.1"
_SITEMAP_ACCEPT = "application/xml,text/xml;q=0.9,application/gzip;q=0.8,*/*;q=0.1"

_NON_HTTP_LOCATION = "redirects to a non-http URL (a Location such as mailto: or javascript:)"

#: The reason given for URLs left unfetched because ``max_seconds`` ran out.
BUDGET_SPENT = "not fetched: the crawl's time budget ran out"

Purpose = Literal["page", "robots", "sitemap"]
#: ``(etag, last_modified)`` from the previous fetch of a URL.
Validators = tuple[str | None, str | None]
#: Vets one redirect hop ``(from_url, to_url)``; raises :class:`Stop` to refuse it.
RedirectCheck = Callable[[str, str], None]


class Stop(Exception):
    """Ends the fetch of one URL with a skipped or failed result and a reason."""

    def __init__(self, status: Literal["skipped", "failed"], reason: str) -> None:
        super().__init__(reason)
        self.status: Literal["skipped", "failed"] = status
        self.reason = reason


@dataclass(frozen=True, slots=True)
class Response:
    """A final (non-redirect) answer: 200 with its body, or 304 without one."""

    url: str
    status: int
    content_type: str
    charset: str | None
    headers: httpx.Headers
    body: bytes


def media_type(header: str) -> tuple[str, str | None]:
    """``("text/html", "utf-8")`` from a Content-Type header value."""
    media, _, params = header.partition(";")
    charset = None
    for param in params.split(";"):
        key, _, value = param.partition("=")
        if key.strip().lower() == "charset" and value.strip():
            charset = value.strip().strip("\"'")
    return media.strip().lower(), charset


def retry_after_seconds(value: str | None, now: float | None = None) -> float | None:
    """Seconds a ``Retry-After`` header asks for (delta-seconds or an HTTP date).

    None, so that the usual backoff applies, when it says nothing usable: a malformed
    value, or a date already past (a server whose clock is behind would otherwise be
    retried at once, again and again, just as it is overloaded).
    """
    if not value:
        return None
    value = value.strip()
    if value.isascii() and value.isdigit():
        return float(value)
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError, OverflowError):
        return None
    try:
        wait = when.timestamp() - (time.time() if now is None else now)
    except (OverflowError, OSError, ValueError):
        return None
    return wait if wait > 0 else None


class _Inflater:
    """Decodes a Content-Encoding incrementally, refusing output past ``limit`` bytes."""

    def __init__(self, encoding: str, limit: int) -> None:
        self.limit = limit
        self.out = bytearray()
        self.raw = encoding in ("", "identity")
        self.deflate = encoding == "deflate"
        self.inflater = None if self.raw else zlib.decompressobj(self._wbits(encoding))

    @staticmethod
    def _wbits(encoding: str) -> int:
        if encoding in ("gzip", "x-gzip"):
            return 16 + zlib.MAX_WBITS
        if encoding == "deflate":
            return zlib.MAX_WBITS
        raise Stop("skipped", f"unsupported content encoding {encoding!r}")

    def feed(self, data: bytes) -> bool:
        """Add raw bytes; False once the output would pass the limit."""
        if self.inflater is None:
            self.out += data
            return len(self.out) <= self.limit
        try:
            while data:
                self.out += self.inflater.decompress(data, self.limit + 1 - len(self.out))
                if len(self.out) > self.limit:
                    return False
                data = self.inflater.unconsumed_tail
                if self.inflater.eof:
                    break
        except zlib.error:
            if self.deflate and not self.out:  # some servers send raw deflate
                self.inflater = zlib.decompressobj(-zlib.MAX_WBITS)
                self.deflate = False
                return self.feed(data)
            raise Stop("failed", "the compressed body is corrupt") from None
        return True


async def _raw_pieces(response: httpx.Response) -> AsyncIterator[bytes]:
    """The body as sent; a response built in memory (a mock transport) has it already."""
    try:
        async for piece in response.aiter_raw():
            yield piece
    except httpx.StreamConsumed:
        yield response.content


class _HostGate:
    """Per-host politeness: a bounded number of requests at once, spaced by a delay."""

    def __init__(self, concurrency: int) -> None:
        self.slots = asyncio.Semaphore(concurrency)
        self.lock = asyncio.Lock()
        self.next_at = 0.0
        self.blocked_until = 0.0

    async def wait_turn(self, delay: float, deadline: float | None) -> None:
        loop = asyncio.get_running_loop()
        async with self.lock:
            start = max(self.next_at, self.blocked_until)
            if deadline is not None and start > deadline:
                raise Stop("skipped", BUDGET_SPENT)
            wait = start - loop.time()
            if wait > 0:
                await asyncio.sleep(wait)
            self.next_at = loop.time() + delay


class Fetcher:
    """GETs with every check and limit of a crawl; see the module docstring."""

    def __init__(
        self,
        client: httpx.AsyncClient,
        options: CrawlOptions,
        stats: CrawlStats,
        *,
        validators: Callable[[str], Validators | None] | None = None,
        deadline: float | None = None,
    ) -> None:
        self.client = client
        self.options = options
        self.stats = stats
        self.validators = validators
        self.deadline = deadline
        self.robots = RobotsCache(self._fetch_robots, options.user_agent)
        self._host_checks: dict[str, str | None] = {}
        self._gates: dict[str, _HostGate] = {}
        self._per_host = options.per_host_concurrency or options.concurrency
        self._slots = asyncio.Semaphore(options.concurrency)  # sitemaps and pages together

    # -- checks ------------------------------------------------------------------------

    async def check_host(self, url: str) -> None:
        """Refuse (as skipped) a URL whose host is private, unless allowed or trusted."""
        if self.options.allow_private:
            return
        host = host_of(url)
        try:
            port = httpx.URL(url).port
        except httpx.InvalidURL:
            port = None
        if host_is_trusted(host, port, self.options.trusted_hosts):
            return
        if host not in self._host_checks:
            try:
                await check_public_host(host)
                self._host_checks[host] = None
            except UnsafeURLError as exc:
                self._host_checks[host] = str(exc)
        refusal = self._host_checks[host]
        if refusal is not None:
            raise Stop("skipped", refusal)

    def _gate(self, url: str) -> _HostGate:
        host = host_of(url)
        gate = self._gates.get(host)
        if gate is None:
            gate = self._gates[host] = _HostGate(self._per_host)
        return gate

    # -- the GET -----------------------------------------------------------------------

    async def get(
        self,
        url: str,
        *,
        purpose: Purpose = "page",
        redirect_check: RedirectCheck | None = None,
        written: str | None = None,
    ) -> Response:
        """GET ``url``, following up to five redirects by hand so each hop is checked.

        ``written`` is ``url`` as the site wrote it, when its query was in another order:
        robots.txt rules must allow that form (RFC 9309 matches the URL as written) as well
        as the canonical one sent. Redirect targets are checked the same way.
        """
        current = url
        chain = [url]
        for _ in range(MAX_REDIRECTS + 1):
            if not current.startswith(("http://", "https://")):
                raise Stop("skipped", f"redirects to a non-http URL {current!r}")
            await self.check_host(current)
            delay = self.options.delay
            if purpose == "page" and self.options.respect_robots:
                rules = await self.robots.rules_for(current)
                if not (rules.can_fetch(current) and (written is None or rules.can_fetch(written))):
                    raise Stop("skipped", rules.note or "disallowed by robots.txt")
                delay = max(delay, rules.crawl_delay)
            response = await self._with_retries(current, purpose, delay)
            if isinstance(response, Response):
                return response
            target = canonicalize_url(response, current)
            form = canonicalize_url(response, current, sort_query=False)
            written = form if form != target else None
            if not target.startswith(("http://", "https://")):
                raise Stop("skipped", f"redirects to a non-http URL {target!r}")
            if target in chain:
                loop = " → ".join(safe_url(hop) for hop in [*chain[chain.index(target) :], target])
                raise Stop("failed", f"redirect loop: {loop}")
            await self.check_host(target)  # safety first, so the reason says so
            if redirect_check is not None:
                redirect_check(current, target)
            chain.append(target)
            current = target
        raise Stop("failed", f"more than {MAX_REDIRECTS} redirects")

    async def _with_retries(self, url: str, purpose: Purpose, delay: float) -> Response | str:
        gate = self._gate(url)
        attempt = 0
        while True:
            async with gate.slots, self._slots:
                await gate.wait_turn(delay, self.deadline)
                try:
                    outcome = await asyncio.wait_for(
                        self._request(url, purpose), self.options.timeout
                    )
                except asyncio.TimeoutError:
                    raise Stop("failed", f"timed out after {self.options.timeout:g} s") from None
            if not isinstance(outcome, tuple):
                return outcome
            status, retry_after = outcome
            wait = self._retry_wait(status, retry_after, attempt)
            loop = asyncio.get_running_loop()
            gate.blocked_until = max(gate.blocked_until, loop.time() + wait)
            attempt += 1
            self.stats.retries += 1

    def _retry_wait(self, status: int, retry_after: float | None, attempt: int) -> float:
        """Seconds to wait before retrying, or :class:`Stop` when no retry is due."""
        options = self.options
        if attempt >= options.max_retries:
            tries = f" after {attempt + 1} tries" if attempt else ""
            raise Stop("failed", f"HTTP {status}{tries}")
        if retry_after is not None and retry_after > options.max_retry_wait:
            raise Stop(
                "failed",
                f"HTTP {status}: Retry-After asks for {retry_after:g} s, more than the "
                f"{options.max_retry_wait:g} s max_retry_wait",
            )
        if retry_after is not None:
            wait = retry_after
        else:
            wait = options.retry_backoff * (2**attempt) * (0.75 + random.random() / 2)  # noqa: S311
        wait = min(wait, options.max_retry_wait)
        if self.deadline is not None:
            loop = asyncio.get_running_loop()
            if loop.time() + wait > self.deadline:
                raise Stop("failed", f"HTTP {status}; no time left in the budget to retry")
        return wait

    def _headers(self, url: str, purpose: Purpose) -> dict[str, str]:
        headers = {
            "User-Agent": self.options.user_agent,
            "Accept": _SITEMAP_ACCEPT if purpose == "sitemap" else _ACCEPT,
            "Accept-Encoding": "gzip, deflate",
        }
        if purpose == "page" and self.validators is not None:
            known = self.validators(url)
            if known is not None:
                etag, last_modified = known
                if etag:
                    headers["If-None-Match"] = etag
                if last_modified:
                    headers["If-Modified-Since"] = last_modified
        return headers

    async def _request(
        self, url: str, purpose: Purpose
    ) -> Response | str | tuple[int, float | None]:
        """One request: a Response, a redirect target, or ``(status, retry_after)`` to retry."""
        self.stats.requests += 1
        request = self.client.build_request(
            "GET", url, headers=self._headers(url, purpose), timeout=self.options.timeout
        )
        try:
            response = await self.client.send(request, stream=True, follow_redirects=False)
        except httpx.InvalidURL:
            # httpx prepares the next request of every redirect, and cannot for a Location
            # with a scheme but no host (mailto:, javascript:, tel:), so it never returns it.
            raise Stop("skipped", _NON_HTTP_LOCATION) from None
        try:
            return await self._answer(url, purpose, response)
        finally:
            await response.aclose()

    async def _answer(
        self, url: str, purpose: Purpose, response: httpx.Response
    ) -> Response | str | tuple[int, float | None]:
        """What :meth:`_request` returns for ``response``, its body read within the limit."""
        limit = {
            "page": self.options.max_bytes,
            "robots": _ROBOTS_MAX_BYTES,
            "sitemap": _SITEMAP_MAX_BYTES,
        }[purpose]
        status = response.status_code
        headers = response.headers
        if status in _REDIRECT_STATUSES:
            location = str(headers.get("location", ""))
            if not location:
                raise Stop("failed", f"HTTP {status} redirect without a Location")
            return location
        if status in _RETRY_STATUSES and purpose != "robots":
            return status, retry_after_seconds(headers.get("retry-after"))
        media, charset = media_type(headers.get("content-type", ""))
        if status == 304 and purpose == "page":
            return Response(url, 304, media, charset, headers, b"")
        if purpose == "page":
            if status >= 400:
                raise Stop("failed", f"HTTP {status}")
            if status != 200:
                raise Stop("skipped", f"unexpected HTTP status {status}")
            if page_kind(url, media) is None:
                raise Stop("skipped", f"unsupported content type {media}")
        elif status != 200:
            return Response(url, status, media, charset, headers, b"")
        declared = headers.get("content-length", "")
        encoding = headers.get("content-encoding", "").strip().lower()
        if purpose == "page" and declared.isdigit() and not encoding and int(declared) > limit:
            raise Stop("skipped", f"too large ({declared} bytes > {limit})")
        inflater = _Inflater(encoding, limit)
        async for piece in _raw_pieces(response):
            self.stats.bytes_received += len(piece)
            if not inflater.feed(piece):
                if purpose == "robots":  # RFC 9309: read at least 500 KiB, ignore the rest
                    break
                raise Stop("skipped", f"too large (more than {limit} bytes)")
        body = bytes(inflater.out[:limit])
        return Response(url, status, media, charset, headers, body)

    async def _fetch_robots(self, robots_url: str) -> tuple[int, str]:
        try:
            response = await self.get(robots_url, purpose="robots")
        except Stop as stop:
            raise FetchError(stop.reason) from None
        return response.status, response.body.decode("utf-8", errors="replace")


_HTML_TYPES = frozenset({"text/html", "application/xhtml+xml"})
_MARKDOWN_TYPES = frozenset({"text/markdown", "text/x-markdown"})
_MARKDOWN_SUFFIXES = (".md", ".markdown")

PageKind = Literal["html", "markdown", "text"]


def page_kind(url: str, media: str) -> PageKind | None:
    """How to read a page of this media type (None: not a page sitechat reads)."""
    path = url.split("?", 1)[0].lower()
    if media in _HTML_TYPES:
        return "html"
    if media in _MARKDOWN_TYPES or path.endswith(_MARKDOWN_SUFFIXES):
        return "markdown"
    if media == "text/plain":
        return "text"
    if not media:
        return "text" if path.endswith(".txt") else "html"
    return None
