"""A polite, bounded, same-site crawler.

Breadth-first from the start URLs, each canonical URL fetched once, within the start
URLs' sites only. Politeness: robots.txt and its Crawl-delay are honoured, concurrency is
bounded, and bodies are streamed and cut off at ``max_bytes``. Safety: only http(s), and
unless ``allow_private`` is set every host (also after each redirect, which is followed by
hand for that reason) must resolve to public addresses, so a link cannot turn the crawler
against an intranet or a cloud metadata endpoint.

A bad page never stops the crawl: it becomes a ``"failed"`` or ``"skipped"``
:class:`CrawlResult` whose ``reason`` says why.
"""

from __future__ import annotations

import asyncio
import codecs
import contextlib
import logging
import re
from collections import deque
from collections.abc import AsyncGenerator, Sequence
from dataclasses import dataclass
from typing import Literal

import httpx

from sitechat.errors import FetchError, InvalidInputError, UnsafeURLError
from sitechat.ingest.extract import extract_html, extract_markdown, extract_text
from sitechat.ingest.robots import RobotsCache
from sitechat.ingest.urls import (
    canonicalize_url,
    check_public_host,
    host_of,
    require_http_url,
    same_site,
)
from sitechat.models import Page, content_hash

__all__ = ["DEFAULT_USER_AGENT", "CrawlOptions", "CrawlResult", "CrawlStatus", "crawl"]

logger = logging.getLogger(__name__)

DEFAULT_USER_AGENT = "sitechat/0.1 (+https://github.com/sitechat/sitechat)"
MAX_REDIRECTS = 5
_ROBOTS_MAX_BYTES = 512_000
_ACCEPT = "text/html,application/xhtml+xml,text/markdown;q=0.9,text/plain;q=0.8,*/*;q=0.1"
_HTML_TYPES = frozenset({"text/html", "application/xhtml+xml"})
_MARKDOWN_TYPES = frozenset({"text/markdown", "text/x-markdown"})
_MARKDOWN_SUFFIXES = (".md", ".markdown")
# Links to these are not pages; they are reported as skipped without being fetched.
_BINARY_SUFFIX = re.compile(
    r"\.(?:pdf|zip|gz|tgz|tar|bz2|xz|7z|rar|png|jpe?g|gif|webp|svg|ico|bmp|tiff?|mp3|mp4|m4a"
    r"|webm|avi|mov|wav|ogg|flac|woff2?|ttf|otf|eot|exe|dmg|msi|deb|rpm|apk|iso|whl|jar"
    r"|css|js|mjs|wasm|docx?|xlsx?|pptx?|odt|epub)$",
    re.IGNORECASE,
)

CrawlStatus = Literal["ok", "skipped", "failed"]


@dataclass(frozen=True, slots=True)
class CrawlOptions:
    """How far, how fast and where to crawl.

    ``max_pages`` bounds the pages returned as ``"ok"``; ``include``/``exclude`` are
    regular expressions searched in each discovered link's canonical URL (a link must
    match one ``include`` pattern when any are given, and no ``exclude`` pattern).
    ``timeout`` is the limit in seconds for one request, body included.
    """

    max_pages: int = 500
    max_depth: int = 10
    max_bytes: int = 5_000_000
    concurrency: int = 4
    timeout: float = 20.0
    user_agent: str = DEFAULT_USER_AGENT
    allow_private: bool = False
    include: tuple[str, ...] = ()
    exclude: tuple[str, ...] = ()
    respect_robots: bool = True

    def __post_init__(self) -> None:
        for name in ("max_pages", "max_bytes", "concurrency"):
            if getattr(self, name) < 1:
                raise InvalidInputError(f"CrawlOptions.{name} must be at least 1.")
        if self.max_depth < 0:
            raise InvalidInputError("CrawlOptions.max_depth must be 0 or more.")
        if self.timeout <= 0:
            raise InvalidInputError("CrawlOptions.timeout must be a positive number of seconds.")
        for pattern in (*self.include, *self.exclude):
            try:
                re.compile(pattern)
            except re.error as exc:
                raise InvalidInputError(
                    f"Invalid include/exclude pattern {pattern!r}: {exc}. "
                    "Patterns are Python regular expressions searched in the URL."
                ) from exc


@dataclass(frozen=True, slots=True)
class CrawlResult:
    """What became of one URL: a page (``"ok"``), or the reason it has none."""

    url: str
    status: CrawlStatus
    reason: str | None = None
    page: Page | None = None
    content_type: str | None = None


class _Stop(Exception):
    """Ends the visit of one URL with a skipped or failed result."""

    def __init__(self, status: CrawlStatus, reason: str) -> None:
        super().__init__(reason)
        self.status: CrawlStatus = status
        self.reason = reason


@dataclass(frozen=True, slots=True)
class _Response:
    url: str
    status: int
    content_type: str
    charset: str | None
    headers: httpx.Headers
    body: bytes


def _media_type(header: str) -> tuple[str, str | None]:
    media, _, params = header.partition(";")
    charset = None
    for param in params.split(";"):
        key, _, value = param.partition("=")
        if key.strip().lower() == "charset" and value.strip():
            charset = value.strip().strip("\"'")
    return media.strip().lower(), charset


def _kind_of(url: str, media: str) -> Literal["html", "markdown", "text"] | None:
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


class _Crawler:
    def __init__(
        self, client: httpx.AsyncClient, options: CrawlOptions, roots: Sequence[str]
    ) -> None:
        self.client = client
        self.options = options
        self.roots = list(roots)
        self.include = [re.compile(p) for p in options.include]
        self.exclude = [re.compile(p) for p in options.exclude]
        self.robots = RobotsCache(self._fetch_robots, options.user_agent)
        self.host_checks: dict[str, str | None] = {}
        self.next_request_at: dict[str, float] = {}
        self.host_locks: dict[str, asyncio.Lock] = {}
        self.seen: set[str] = set(roots)
        self.emitted: dict[str, str] = {}  # page URL -> content hash
        self.by_hash: dict[str, str] = {}  # content hash -> page URL
        self.ok_pages = 0

    # -- scope -------------------------------------------------------------------------

    def in_scope(self, url: str) -> bool:
        return any(same_site(url, root) for root in self.roots)

    def wanted(self, url: str) -> bool:
        if not url.startswith(("http://", "https://")) or not self.in_scope(url):
            return False
        if self.include and not any(p.search(url) for p in self.include):
            return False
        return not any(p.search(url) for p in self.exclude)

    # -- network -----------------------------------------------------------------------

    async def _check_host(self, url: str) -> None:
        if self.options.allow_private:
            return
        host = host_of(url)
        if host not in self.host_checks:
            try:
                await check_public_host(host)
                self.host_checks[host] = None
            except UnsafeURLError as exc:
                self.host_checks[host] = str(exc)
        refusal = self.host_checks[host]
        if refusal is not None:
            raise _Stop("skipped", refusal)

    async def _wait_turn(self, url: str, delay: float) -> None:
        """Space requests to one host by the Crawl-delay its robots.txt asks for."""
        if delay <= 0:
            return
        host = host_of(url)
        lock = self.host_locks.setdefault(host, asyncio.Lock())
        async with lock:
            loop = asyncio.get_running_loop()
            wait = self.next_request_at.get(host, 0.0) - loop.time()
            if wait > 0:
                await asyncio.sleep(wait)
            self.next_request_at[host] = loop.time() + delay

    async def _get(self, url: str, *, for_robots: bool = False) -> _Response:
        """GET ``url``, following redirects by hand so each hop is checked."""
        current = url
        for _ in range(MAX_REDIRECTS + 1):
            await self._check_host(current)
            if not for_robots and self.options.respect_robots:
                rules = await self.robots.rules_for(current)
                if not rules.can_fetch(current):
                    raise _Stop("skipped", rules.note or "disallowed by robots.txt")
                await self._wait_turn(current, rules.crawl_delay)
            try:
                response = await asyncio.wait_for(
                    self._request(current, for_robots=for_robots), self.options.timeout
                )
            except asyncio.TimeoutError:
                raise _Stop("failed", f"timed out after {self.options.timeout:g} s") from None
            if isinstance(response, str):  # a redirect target
                target = canonicalize_url(response, current)
                if not target.startswith(("http://", "https://")):
                    raise _Stop("skipped", f"redirects to a non-http URL {target!r}")
                if not for_robots and not self.in_scope(target):
                    raise _Stop("skipped", f"redirects off-site to {target}")
                if not for_robots and target in self.seen:
                    raise _Stop("skipped", f"redirects to {target}, crawled on its own")
                if not for_robots:
                    self.seen.add(target)
                current = target
                continue
            return response
        raise _Stop("failed", f"more than {MAX_REDIRECTS} redirects")

    async def _request(self, url: str, *, for_robots: bool) -> _Response | str:
        headers = {"User-Agent": self.options.user_agent, "Accept": _ACCEPT}
        limit = _ROBOTS_MAX_BYTES if for_robots else self.options.max_bytes
        async with self.client.stream(
            "GET", url, headers=headers, follow_redirects=False, timeout=self.options.timeout
        ) as response:
            if response.is_redirect:
                return str(response.headers.get("location", ""))
            media, charset = _media_type(response.headers.get("content-type", ""))
            status = response.status_code
            if not for_robots:
                if status >= 400:
                    raise _Stop("failed", f"HTTP {status}")
                if status != 200:
                    raise _Stop("skipped", f"unexpected HTTP status {status}")
                if _kind_of(url, media) is None:
                    raise _Stop("skipped", f"unsupported content type {media}")
                declared = response.headers.get("content-length", "")
                if declared.isdigit() and int(declared) > limit:
                    raise _Stop("skipped", f"too large ({declared} bytes > {limit})")
            elif status != 200:
                return _Response(url, status, media, charset, response.headers, b"")
            body = bytearray()
            async for piece in response.aiter_bytes():
                body += piece
                if len(body) > limit:
                    if for_robots:
                        break
                    raise _Stop("skipped", f"too large (more than {limit} bytes)")
            return _Response(url, status, media, charset, response.headers, bytes(body))

    async def _fetch_robots(self, robots_url: str) -> tuple[int, str]:
        try:
            response = await self._get(robots_url, for_robots=True)
        except _Stop as stop:
            raise FetchError(stop.reason) from None
        return response.status, response.body.decode("utf-8", errors="replace")

    # -- one URL -----------------------------------------------------------------------

    async def visit(self, url: str) -> tuple[CrawlResult, tuple[str, ...]]:
        """Fetch and extract one URL; never raises (every failure becomes a result)."""
        try:
            return self._process(await self._get(url))
        except _Stop as stop:
            return CrawlResult(url, stop.status, stop.reason), ()
        except FetchError as exc:
            return CrawlResult(url, "failed", str(exc)), ()
        except httpx.HTTPError as exc:
            return CrawlResult(url, "failed", f"{type(exc).__name__}: {exc}".rstrip(": ")), ()
        except Exception as exc:  # a bad page must never stop the crawl
            logger.exception("unexpected error crawling %s", url)
            return CrawlResult(url, "failed", f"unexpected error: {type(exc).__name__}: {exc}"), ()

    def _process(self, response: _Response) -> tuple[CrawlResult, tuple[str, ...]]:
        final = response.url
        self.seen.add(final)
        kind = _kind_of(final, response.content_type)
        fields = {
            "content_type": response.content_type or "text/html",
            "etag": response.headers.get("etag"),
            "last_modified": response.headers.get("last-modified"),
        }
        links: tuple[str, ...] = ()
        noindex = False
        if kind == "html":
            extracted = extract_html(
                response.body,
                final,
                encoding=response.charset,
                content_type=fields["content_type"] or "text/html",
                etag=fields["etag"],
                last_modified=fields["last_modified"],
            )
            page, noindex = extracted.page, extracted.noindex
            if not extracted.nofollow:
                links = extracted.links
            canonical = extracted.canonical
            if canonical and canonical != final and self.in_scope(canonical):
                page = _with_url(page, canonical)
        else:
            text = _decode_text(response.body, response.charset)
            extract = extract_markdown if kind == "markdown" else extract_text
            page = extract(
                text,
                final,
                content_type=fields["content_type"] or "text/plain",
                etag=fields["etag"],
                last_modified=fields["last_modified"],
            )
        media = response.content_type or None
        if noindex:
            return CrawlResult(final, "skipped", "noindex", content_type=media), links
        if not page.sections:
            return CrawlResult(final, "skipped", "no text content", content_type=media), links
        return self._dedupe(page, final, media), links

    def _dedupe(self, page: Page, final: str, media: str | None) -> CrawlResult:
        digest = content_hash(page.text)  # titles often differ between copies
        if page.url in self.emitted and self.emitted[page.url] != digest and page.url != final:
            page = _with_url(page, final)  # a canonical link that lies: keep the real URL
        if page.url in self.emitted or digest in self.by_hash:
            first = self.by_hash.get(digest) or page.url
            return CrawlResult(final, "skipped", f"duplicate of {first}", content_type=media)
        self.emitted[page.url] = digest
        self.by_hash[digest] = page.url
        self.seen.add(page.url)
        return CrawlResult(page.url, "ok", page=page, content_type=media)

    # -- the crawl ---------------------------------------------------------------------

    async def run(self) -> AsyncGenerator[CrawlResult, None]:
        frontier: deque[tuple[str, int]] = deque((url, 0) for url in dict.fromkeys(self.roots))
        running: dict[asyncio.Future[tuple[CrawlResult, tuple[str, ...]]], int] = {}
        limit = self.options.max_pages
        try:
            while frontier or running:
                while (
                    frontier
                    and len(running) < self.options.concurrency
                    and self.ok_pages + len(running) < limit
                ):
                    url, depth = frontier.popleft()
                    if _BINARY_SUFFIX.search(url.split("?", 1)[0]):
                        yield CrawlResult(url, "skipped", "not a page (file type)")
                        continue
                    running[asyncio.ensure_future(self.visit(url))] = depth
                if not running:
                    break
                done, _ = await asyncio.wait(running, return_when=asyncio.FIRST_COMPLETED)
                for task in done:
                    depth = running.pop(task)
                    result, links = task.result()
                    if result.status == "ok":
                        self.ok_pages += 1
                    yield result
                    if depth >= self.options.max_depth:
                        continue
                    for link in links:
                        if link not in self.seen and self.wanted(link):
                            self.seen.add(link)
                            frontier.append((link, depth + 1))
        finally:
            for task in running:
                task.cancel()
            await asyncio.gather(*running, return_exceptions=True)


def _decode_text(body: bytes, charset: str | None) -> str:
    if body.startswith(codecs.BOM_UTF8):
        return body[3:].decode("utf-8", errors="replace")
    try:
        return body.decode(charset or "utf-8", errors="replace")
    except LookupError:  # a charset name Python does not know
        return body.decode("utf-8", errors="replace")


def _with_url(page: Page, url: str) -> Page:
    return Page(
        url=url,
        title=page.title,
        sections=page.sections,
        content_type=page.content_type,
        etag=page.etag,
        last_modified=page.last_modified,
    )


async def crawl(
    start_urls: Sequence[str],
    *,
    options: CrawlOptions | None = None,
    client: httpx.AsyncClient | None = None,
) -> AsyncGenerator[CrawlResult, None]:
    """Crawl the sites of ``start_urls`` and yield one :class:`CrawlResult` per URL tried.

    Raises :class:`~sitechat.errors.UnsafeURLError` before fetching anything when a start
    URL is not http(s), or (unless ``options.allow_private``) resolves to a private
    address. ``client`` is used as given (pass one to add proxies, auth or a mock
    transport); without one, a client is made with the options' user agent and timeout
    and closed at the end.
    """
    options = options or CrawlOptions()
    roots = [require_http_url(url) for url in start_urls]
    if not options.allow_private:
        for root in roots:
            # An unresolvable host is reported as a failed result by the fetch itself.
            with contextlib.suppress(FetchError):
                await check_public_host(host_of(root))
    owned = client is None
    http = client or httpx.AsyncClient(
        headers={"User-Agent": options.user_agent},
        timeout=options.timeout,
        follow_redirects=False,
    )
    try:
        # Closed explicitly so that stopping early cancels the fetches at once.
        async with contextlib.aclosing(_Crawler(http, options, roots).run()) as results:
            async for result in results:
                yield result
    finally:
        if owned:
            await http.aclose()
