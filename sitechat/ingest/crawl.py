"""A polite, bounded, same-site crawler.

Breadth-first from the start URLs and the site's sitemaps, each canonical URL fetched
once, within the start URLs' sites only. The network rules (robots.txt, politeness,
retries, size caps, private-address checks on every redirect hop, conditional GET) live
in :mod:`sitechat.ingest.fetch`; scope and the guards against link traps and query-string
copies in :mod:`sitechat.ingest.scope`. Extraction runs in a small thread pool, so a big
page never stalls the fetches in flight.

A bad page never stops the crawl: it becomes a ``"failed"`` or ``"skipped"``
:class:`CrawlResult` whose ``reason`` says why. A page the server says is unchanged
since the last crawl (HTTP 304) comes back ``"unchanged"``, with the links remembered
from that crawl so the pages behind it are still visited.

Duplicates: two pages are copies when their title, headings and text are all equal
(:func:`page_fingerprint`); the later one is skipped as a duplicate of the first. A page
fetched at ``F`` that names another URL ``X`` as its ``<link rel=canonical>`` never takes
``X``'s place on its word alone: when ``X`` is (or will be) fetched, the claim waits for
it, and the page is a duplicate of ``X`` if their headings and text match, else it keeps
its own URL ``F``. Only a query-string variant naming its own path with fewer parameters
(``/item?id=7&view=a`` → ``/item?id=7``) is stored under the canonical URL without
fetching it, when nothing else on the site led to that URL.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import deque
from collections.abc import AsyncGenerator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace
from typing import Any, Literal

import httpx

from sitechat.errors import FetchError, UnsafeURLError
from sitechat.ingest._crawl_pages import (
    PageKeys,
    extract_response,
    is_file_link,
    is_sitemap_url,
    page_fingerprint,
    page_keys,
)
from sitechat.ingest.extract import is_link_list, looks_binary
from sitechat.ingest.fetch import BUDGET_SPENT, Fetcher, Response, Stop, page_kind
from sitechat.ingest.options import DEFAULT_USER_AGENT, CrawlOptions, CrawlStats
from sitechat.ingest.robots import origin_of
from sitechat.ingest.scope import LinkTrapGuard, QueryLearner, Scope, bare_url
from sitechat.ingest.sitemap_reader import read_sitemaps
from sitechat.ingest.transport import crawler_client, host_is_trusted
from sitechat.ingest.urls import canonicalize_url, check_public_host, host_of, require_http_url
from sitechat.models import Page

__all__ = [
    "DEFAULT_USER_AGENT",
    "CrawlOptions",
    "CrawlResult",
    "CrawlStats",
    "CrawlStatus",
    "KnownPage",
    "crawl",
    "is_sitemap_url",
    "page_fingerprint",
]

logger = logging.getLogger(__name__)


CrawlStatus = Literal["ok", "unchanged", "skipped", "failed"]


@dataclass(frozen=True, slots=True)
class CrawlResult:
    """What became of one URL: a page (``"ok"``), ``"unchanged"`` (304), or a reason.

    ``links`` are the in-scope links the page holds (for ``"unchanged"``: as remembered);
    ``written`` pairs those of them whose query the page wrote in another order with that
    form (robots.txt is matched against it); ``etag``/``last_modified`` are the validators
    to send on the next crawl.
    """

    url: str
    status: CrawlStatus
    reason: str | None = None
    page: Page | None = None
    content_type: str | None = None
    links: tuple[str, ...] = ()
    etag: str | None = None
    last_modified: str | None = None
    fetched_url: str | None = None
    written: tuple[tuple[str, str], ...] = ()


@dataclass(frozen=True, slots=True)
class KnownPage:
    """What an earlier crawl learned about the URL it fetched, for a conditional re-crawl.

    ``blocks`` (the page's paragraph hashes, see :func:`~.extract.page_blocks`) and
    ``title`` are the page as extracted, before site chrome was stripped; None when not
    known (a state from an older version).
    """

    page_url: str
    etag: str | None = None
    last_modified: str | None = None
    links: tuple[str, ...] = ()
    content_hash: str = ""
    written: tuple[tuple[str, str], ...] = ()
    blocks: frozenset[str] | None = None
    title: str | None = None


@dataclass(frozen=True, slots=True)
class _Claim:
    """A page whose canonical URL names another page, held until that page is known."""

    result: CrawlResult
    canonical: str


class _Crawler:
    def __init__(
        self,
        client: httpx.AsyncClient,
        options: CrawlOptions,
        roots: Sequence[str],
        sitemaps: Sequence[str],
        stats: CrawlStats,
        known: Mapping[str, KnownPage],
    ) -> None:
        self.options = options
        self.roots = list(roots)
        self.sitemaps = list(sitemaps)
        self.stats = stats
        self.known = known
        self.scope = Scope([*roots, *sitemaps], options.include, options.exclude)
        self.traps = LinkTrapGuard(options.max_pattern_pages)
        self.written: dict[str, str] = {}  # canonical URL -> as the site wrote it
        self.trapped: set[str] = set()  # URLs the trap guard refused (a cut, unless re-listed)
        self.queries = QueryLearner()
        loop = asyncio.get_running_loop()
        self.deadline = loop.time() + options.max_seconds if options.max_seconds else None
        self.fetcher = Fetcher(
            client, options, stats, validators=self._validators, deadline=self.deadline
        )
        self.executor = (
            ThreadPoolExecutor(options.extract_threads, thread_name_prefix="sitechat-extract")
            if options.extract_threads
            else None
        )
        self.seen: set[str] = set(roots)
        self.start_hops = {url: url for url in roots}  # redirect hop -> the start URL it is from
        # Origins whose sitemaps are (being) read, and start-redirect targets on new ones.
        self.sitemap_origins = {origin_of(url) for url in roots}
        self.moved_sites: list[str] = []
        self.emitted: dict[str, PageKeys] = {}  # page URL -> its content keys
        self.by_hash: dict[str, tuple[str, str]] = {}  # fingerprint -> (page URL, fetched URL)
        self.finished: set[str] = set()  # URLs whose fetch (or refusal) is over
        self.claims: dict[str, list[tuple[_Claim, int]]] = {}  # awaited URL -> claims
        self.pages_done = 0
        self.in_flight: dict[str, int] = {}  # bare URL -> fetches running
        self.probed: set[str] = set()  # bare URLs with at least one finished fetch
        self.waiting: dict[str, list[tuple[str, int]]] = {}

    def _validators(self, url: str) -> tuple[str | None, str | None] | None:
        known = self.known.get(url)
        return (known.etag, known.last_modified) if known is not None else None

    def _check_redirect(self, source: str, target: str) -> None:
        start = self.start_hops.get(source)
        if start is not None:
            # A start URL's redirect names the site the user meant (``example.com/docs`` to
            # ``docs.example.com``): its host joins the scope. Links never widen it.
            self.start_hops[target] = start
            self.stats.start_redirects[start] = target
            if not self.scope.in_scope(target):
                logger.info("start URL %s redirects to %s: crawling that site too", start, target)
                self.scope.roots.append(target)
            if origin_of(target) not in self.sitemap_origins:
                self.sitemap_origins.add(origin_of(target))
                self.moved_sites.append(target)  # its sitemaps are read as a start site's
        if not self.scope.in_scope(target):
            raise Stop("skipped", f"redirects off-site to {target}")
        if not self.scope.wanted(target):
            raise Stop("skipped", f"redirects to {target}, excluded by include/exclude")
        if target in self.seen:
            raise Stop("skipped", f"redirects to {target}, crawled on its own")
        self.seen.add(target)

    # -- one URL -----------------------------------------------------------------------

    async def visit(self, url: str) -> CrawlResult | _Claim:
        """Fetch and extract one URL; never raises (every failure becomes a result)."""
        try:
            response = await self.fetcher.get(
                url, redirect_check=self._check_redirect, written=self.written.get(url)
            )
            if response.status == 304:
                return self._unchanged(url, response)
            return await self._process(response)
        except Stop as stop:
            return CrawlResult(url, stop.status, stop.reason)
        except UnsafeURLError as exc:  # refused when connecting (DNS rebinding)
            return CrawlResult(url, "skipped", str(exc))
        except FetchError as exc:
            return CrawlResult(url, "failed", str(exc))
        except httpx.HTTPError as exc:
            return CrawlResult(url, "failed", f"{type(exc).__name__}: {exc}".rstrip(": "))
        except Exception as exc:  # a bad page must never stop the crawl
            logger.exception("unexpected error crawling %s", url)
            return CrawlResult(url, "failed", f"unexpected error: {type(exc).__name__}: {exc}")

    def _unchanged(self, url: str, response: Response) -> CrawlResult:
        known = self.known.get(response.url) or KnownPage(response.url)
        self.stats.not_modified += 1
        self.seen.add(known.page_url)
        if known.content_hash:
            self.emitted[known.page_url] = PageKeys(known.content_hash)
            self.by_hash.setdefault(known.content_hash, (known.page_url, response.url))
        return CrawlResult(
            known.page_url,
            "unchanged",
            links=known.links,
            etag=response.headers.get("etag") or known.etag,
            last_modified=response.headers.get("last-modified") or known.last_modified,
            fetched_url=response.url,
            written=known.written,
        )

    async def _process(self, response: Response) -> CrawlResult | _Claim:
        final = response.url
        self.seen.add(final)
        media = response.content_type or None
        kind = page_kind(final, response.content_type)
        if kind is None:  # pragma: no cover - the fetcher refuses these first
            return CrawlResult(final, "skipped", f"unsupported content type {media}")
        if looks_binary(response.body):
            return CrawlResult(
                final, "skipped", f"binary content served as {media or 'text'}", content_type=media
            )
        loop = asyncio.get_running_loop()
        found = await loop.run_in_executor(self.executor, extract_response, kind, response)
        self.stats.extract_seconds += found.seconds
        links = tuple(link for link in found.links if self.scope.wanted(link))
        wanted = set(links)
        written = tuple((url, form) for url, form in found.written if url in wanted)
        page = found.page
        canonical = found.canonical
        etag, modified = page.etag, page.last_modified
        if found.noindex:
            return CrawlResult(
                final, "skipped", "noindex", content_type=media, links=links, written=written
            )
        if is_link_list(found.link_share, found.link_count, self.options.max_link_share):
            why = f"link list ({found.link_share:.0%} of its text is links; followed, not indexed)"
            return CrawlResult(
                final, "skipped", why, content_type=media, links=links, written=written
            )
        if not page.sections:
            return CrawlResult(
                final,
                "skipped",
                "no text content",
                content_type=media,
                links=links,
                written=written,
            )
        result = CrawlResult(
            final,
            "ok",
            page=page,
            content_type=media,
            links=links,
            etag=etag,
            last_modified=modified,
            fetched_url=final,
            written=written,
        )
        if canonical and canonical != final and self.scope.in_scope(canonical):
            return self._claim(result, canonical)
        return self._dedupe(result)

    def _claim(self, result: CrawlResult, canonical: str) -> CrawlResult | _Claim:
        """A page at ``result.url`` names ``canonical``: a duplicate of it, itself, or
        (when ``canonical`` is still to be fetched) a :class:`_Claim` to settle later."""
        final = result.url
        if canonical in self.emitted or canonical in self.finished:
            return self._settle(result, canonical)
        if canonical not in self.seen and "?" in final and bare_url(final) == bare_url(canonical):
            # A query variant naming its own path with fewer parameters, which nothing else
            # led to: trusted without fetching it, and the dropped parameters are learned.
            assert result.page is not None
            self.queries.learn_canonical(final, canonical)
            self.seen.add(canonical)
            return self._dedupe(replace(result, page=replace(result.page, url=canonical)))
        return _Claim(result, canonical)

    def _settle(self, result: CrawlResult, canonical: str) -> CrawlResult:
        """The claimant ``result`` once ``canonical`` is known: its duplicate, or itself."""
        assert result.page is not None
        theirs = self.emitted.get(canonical)
        if theirs is not None and theirs.same(page_keys(result.page)):
            self.queries.learn_canonical(result.url, canonical)
            return CrawlResult(
                result.url, "skipped", f"duplicate of {canonical}", content_type=result.content_type
            )
        return self._dedupe(result)  # a canonical link to other content: keep the own URL

    def _dedupe(self, result: CrawlResult) -> CrawlResult:
        page, final, media = result.page, result.url, result.content_type
        assert page is not None
        keys = page_keys(page)
        digest = keys.full
        taken = self.emitted.get(page.url)
        if taken is not None and taken.full != digest and page.url != final:
            page = replace(page, url=final)  # a canonical link that lies: keep the real URL
            taken = self.emitted.get(final)
        if digest in self.by_hash or (taken is not None and page.url != final):
            first, first_fetched = self.by_hash.get(digest) or (page.url, page.url)
            self.queries.learn_same_content(first_fetched, final)
            return CrawlResult(final, "skipped", f"duplicate of {first}", content_type=media)
        # A page fetched at its own URL always wins that URL.
        self.emitted[page.url] = keys
        self.by_hash[digest] = (page.url, final)
        self.seen.add(page.url)
        return replace(result, url=page.url, page=page)

    def _park(
        self, claim: _Claim, depth: int, frontier: deque[tuple[str, int]]
    ) -> list[CrawlResult]:
        """Hold ``claim`` until its canonical URL is fetched (queued now if it is new)."""
        self.pages_done += 1  # it will be a page or a duplicate; keep its place
        target = claim.canonical
        out: list[CrawlResult] = []
        if target not in self.seen:
            queued = len(frontier)
            refused = self._admit(target, depth, frontier)
            if refused is not None:
                out.append(refused)
            if len(frontier) == queued:  # not to be fetched: settle it now
                self.finished.add(target)
            else:
                target = frontier[-1][0]
        if target in self.finished or claim.canonical in self.finished:
            self.pages_done -= 1
            out.append(self._settle_counted(claim))
        else:
            self.claims.setdefault(target, []).append((claim, depth))
        return out

    def _settle_counted(self, claim: _Claim) -> CrawlResult:
        result = self._settle(claim.result, claim.canonical)
        if result.status == "ok":
            self.pages_done += 1
        return result

    def _release(self, urls: set[str]) -> list[CrawlResult]:
        """Settle the claims waiting for ``urls``, which are now fetched (or refused)."""
        self.finished.update(urls)
        out = []
        for url in urls:
            for claim, _ in self.claims.pop(url, []):
                self.pages_done -= 1
                out.append(self._settle_counted(claim))
        return out

    # -- the frontier ------------------------------------------------------------------

    def _admit(
        self, link: str, depth: int, frontier: deque[tuple[str, int]], *, listed: bool = False
    ) -> CrawlResult | None:
        """Queue ``link`` if it is new, wanted and not a trap; a result when it is refused.

        A ``listed`` link (a sitemap entry) passes the trap guard's pattern count, even when
        links of its pattern were refused before the sitemap was read.
        """
        link = self.queries.normalise(link)
        if listed and link in self.trapped:
            self.trapped.discard(link)
            self.stats.trap_urls_dropped -= 1
            frontier.append((link, depth))
            return None
        if link in self.seen or not self.scope.wanted(link):
            return None
        self.seen.add(link)
        if is_file_link(link):
            return CrawlResult(link, "skipped", "not a page (file type)")
        odd = self.traps.malformed(link)
        admitted, why = self.traps.admit(link, listed=listed)
        if not admitted:
            self.stats.trap_urls_dropped += 1
            if odd is None:  # a pattern over its bound: the crawl is cut short
                self.trapped.add(link)
            return CrawlResult(link, "skipped", why) if why else None
        frontier.append((link, depth))
        return None

    def _would_admit(self, link: str) -> bool:
        """``link`` is a page :meth:`_admit` would queue (new, wanted, not a file type)."""
        link = self.queries.normalise(link)
        if link in self.seen or not self.scope.wanted(link):
            return False
        return not is_file_link(link)

    def _next(self, frontier: deque[tuple[str, int]]) -> tuple[str, int] | CrawlResult | None:
        """The next URL to fetch now, a duplicate to report, or None (deferred)."""
        url, depth = frontier.popleft()
        normal = self.queries.normalise(url)
        if normal != url and normal in self.seen:
            self.stats.duplicate_urls_dropped += 1
            return CrawlResult(
                url, "skipped", f"duplicate of {normal} (its other query parameters do not matter)"
            )
        bare = bare_url(url)
        if "?" in url and bare not in self.probed and self.in_flight.get(bare):
            # Wait for the first variant of this path: it may show the query is irrelevant.
            self.waiting.setdefault(bare, []).append((url, depth))
            return None
        return url, depth

    def _finished(self, url: str, frontier: deque[tuple[str, int]]) -> None:
        bare = bare_url(url)
        self.in_flight[bare] -= 1
        if not self.in_flight[bare]:
            del self.in_flight[bare]
        self.probed.add(bare)
        frontier.extendleft(reversed(self.waiting.pop(bare, [])))

    def _trap_note(self) -> str:
        shapes = sorted({self.traps.pattern(url) for url in self.trapped})
        others = f" and {len(shapes) - 1} other pattern(s)" if len(shapes) > 1 else ""
        return (
            f"max_pattern_pages ({self.options.max_pattern_pages}) reached: "
            f"{len(self.trapped)} URL(s) like {shapes[0]}{others} were not fetched"
        )

    def _budget_note(self) -> str:
        return f"the time budget of {self.options.max_seconds:g} s ran out"

    async def run(self) -> AsyncGenerator[CrawlResult, None]:
        frontier: deque[tuple[str, int]] = deque((url, 0) for url in dict.fromkeys(self.roots))
        running: dict[asyncio.Future[CrawlResult | _Claim], tuple[str, int]] = {}
        sitemap_tasks: set[asyncio.Future[tuple[list[str], list[CrawlResult]]]] = set()
        if self.sitemaps or self.options.use_sitemaps:
            sitemap_tasks.add(self._read_sitemaps(self.roots, self.sitemaps))
        limit = self.options.max_pages
        beyond: set[str] = set()  # links of pages at max_depth, not followed from there
        loop = asyncio.get_running_loop()
        try:
            while frontier or running or sitemap_tasks:
                while frontier and len(running) < self.options.concurrency:
                    if self.pages_done + len(running) >= limit:
                        break
                    picked = self._next(frontier)
                    if isinstance(picked, CrawlResult):
                        yield picked
                        for settled in self._release({picked.url}):
                            yield settled
                    elif picked is not None:
                        url, depth = picked
                        self.in_flight[bare_url(url)] = self.in_flight.get(bare_url(url), 0) + 1
                        running[asyncio.ensure_future(self.visit(url))] = picked
                if not running and not sitemap_tasks:
                    break
                remaining = None if self.deadline is None else self.deadline - loop.time()
                if remaining is not None and remaining <= 0:
                    self.stats.truncated = self._budget_note()
                    break
                waiting_on: set[asyncio.Future[Any]] = {*running, *sitemap_tasks}
                done, _ = await asyncio.wait(
                    waiting_on, timeout=remaining, return_when=asyncio.FIRST_COMPLETED
                )
                for sitemap_task in [t for t in sitemap_tasks if t in done]:
                    sitemap_tasks.discard(sitemap_task)
                    urls, problems = sitemap_task.result()
                    for problem in problems:
                        yield problem
                    for listed in urls:
                        url = canonicalize_url(listed)
                        form = canonicalize_url(listed, sort_query=False)
                        if form != url:
                            self.written.setdefault(url, form)
                        refused = self._admit(url, 0, frontier, listed=True)
                        if refused is not None:
                            yield refused
                            for settled in self._release({refused.url}):
                                yield settled
                for task in [t for t in running if t in done]:
                    url, depth = running.pop(task)
                    self._finished(url, frontier)
                    outcome = task.result()
                    if isinstance(outcome, _Claim):
                        result = outcome.result
                        for settled in self._park(outcome, depth, frontier):
                            yield settled
                    else:
                        result = outcome
                        if result.reason == BUDGET_SPENT:
                            self.stats.truncated = self._budget_note()
                        if result.status in ("ok", "unchanged"):
                            self.pages_done += 1
                        yield result
                        done_urls = {url, result.url, result.fetched_url or result.url}
                        for settled in self._release(done_urls):
                            yield settled
                    for link, form in result.written:
                        self.written.setdefault(link, form)
                    if depth >= self.options.max_depth:
                        beyond.update(u for u in result.links if self._would_admit(u))
                        continue
                    for link in result.links:
                        refused = self._admit(link, depth + 1, frontier)
                        if refused is not None:
                            yield refused
                            for settled in self._release({refused.url}):
                                yield settled
                if self.moved_sites and self.options.use_sitemaps:
                    sitemap_tasks.add(self._read_sitemaps(self.moved_sites, []))
                self.moved_sites = []
            # Claims whose canonical URL was never fetched (cut short, refused): own URLs.
            for settled in self._release(set(self.claims)):
                yield settled
            if self.stats.truncated is None and (frontier or self.waiting):
                self.stats.truncated = f"max_pages ({limit}) reached"
            if self.stats.truncated is None and any(self._would_admit(u) for u in beyond):
                self.stats.truncated = f"max_depth ({self.options.max_depth}) reached"
            if self.stats.truncated is None and self.trapped:
                self.stats.truncated = self._trap_note()
        finally:
            pending: list[asyncio.Future[Any]] = [*running, *sitemap_tasks]
            for task in pending:
                task.cancel()
            await asyncio.gather(*pending, return_exceptions=True)
            if self.executor is not None:
                self.executor.shutdown(wait=False, cancel_futures=True)

    def _read_sitemaps(
        self, sites: Sequence[str], named: Sequence[str]
    ) -> asyncio.Future[tuple[list[str], list[CrawlResult]]]:
        """Read the sitemaps of ``sites`` (and the ``named`` ones) in the background."""
        reading = read_sitemaps(self.fetcher, list(sites), named, self.options, self.executor)
        return asyncio.ensure_future(reading)


async def crawl(
    start_urls: Sequence[str],
    *,
    options: CrawlOptions | None = None,
    client: httpx.AsyncClient | None = None,
    stats: CrawlStats | None = None,
    known: Mapping[str, KnownPage] | None = None,
) -> AsyncGenerator[CrawlResult, None]:
    """Crawl the sites of ``start_urls`` and yield one :class:`CrawlResult` per URL tried.

    Start URLs ending in ``.xml`` or ``.xml.gz`` are read as sitemaps, as are
    ``options.sitemaps``. ``known`` maps URLs fetched by an earlier crawl to what it
    learned, so unchanged pages cost a 304; ``stats`` is filled in as the crawl goes.

    Raises :class:`~sitechat.errors.UnsafeURLError` before fetching anything when a start
    URL is not http(s), or (unless ``options.allow_private`` or ``trusted_hosts``)
    resolves to a private address. ``client`` is used as given (pass one to add proxies
    or auth; note that the connect-time address check then rests with that client);
    without one, a client is made whose connections are checked too, and closed at the
    end.
    """
    options = options or CrawlOptions()
    urls = [require_http_url(url) for url in start_urls]
    sitemaps = [u for u in urls if is_sitemap_url(u)]
    sitemaps += [require_http_url(u) for u in options.sitemaps]
    roots = [u for u in urls if not is_sitemap_url(u)]
    if not options.allow_private:
        for root in dict.fromkeys([*roots, *sitemaps]):
            if host_is_trusted(host_of(root), httpx.URL(root).port, options.trusted_hosts):
                continue
            # An unresolvable host is reported as a failed result by the fetch itself.
            with contextlib.suppress(FetchError):
                await check_public_host(host_of(root))
    owned = client is None
    http = client or crawler_client(options)
    try:
        crawler = _Crawler(http, options, roots, sitemaps, stats or CrawlStats(), known or {})
        # Closed explicitly so that stopping early cancels the fetches at once.
        async with contextlib.aclosing(crawler.run()) as results:
            async for result in results:
                yield result
    finally:
        if owned:
            await http.aclose()
