"""One website as a pipeline source: crawl it, conditionally, and say what it owns.

Turns settings into :class:`CrawlOptions`, sends the previous crawl's validators (from
:mod:`sitechat.ingest.state`) so unchanged pages cost a 304, strips boilerplate (the
stored site-wide set when too few pages were re-fetched to tell again), and works out
which stored pages may be removed: a page fetched and found gone (404, 410), and
otherwise only pages the source owns (its start URL's path and below, on its site) that a
crawl with no cut (page, depth or time limit, or the link-trap guard) and no failure (a
5xx, a timeout, an unreadable or partial sitemap, a stored page refused with another 4xx)
did not reach. A failure leaves the pages it may have hidden in place, and the crawl is
reported incomplete.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from sitechat.config import Settings
from sitechat.errors import StoreError
from sitechat.ingest.crawl import (
    CrawlOptions,
    CrawlResult,
    CrawlStats,
    KnownPage,
    crawl,
    is_sitemap_url,
    page_fingerprint,
)
from sitechat.ingest.extract import (
    boilerplate_blocks,
    common_suffix,
    common_title_suffix,
    page_blocks,
    repeated_blocks,
    strip_blocks,
    strip_title_suffix,
)
from sitechat.ingest.options import DEFAULT_USER_AGENT
from sitechat.ingest.scope import Scope, under_prefix
from sitechat.ingest.state import STATE_FILE, CrawlState
from sitechat.ingest.urls import canonicalize_url
from sitechat.models import Page

__all__ = ["CrawledSite", "crawl_options_from", "crawl_site", "source_owner", "state_path_for"]

#: Bump when extraction or chunking changes what a page turns into: stored validators
#: are then ignored once, so every page is re-extracted with the new code.
EXTRACTION_VERSION = "4"

# (CrawlOptions field, IngestSettings field) pairs read when the settings have them.
_SETTING_FIELDS: tuple[tuple[str, str], ...] = (
    ("include", "include"),
    ("exclude", "exclude"),
    ("sitemaps", "sitemaps"),
    ("use_sitemaps", "use_sitemaps"),
    ("max_seconds", "max_seconds"),
    ("delay", "delay"),
    ("per_host_concurrency", "per_host_concurrency"),
    ("max_retries", "max_retries"),
    ("max_retry_wait", "max_retry_wait"),
    ("respect_robots", "respect_robots"),
    ("trusted_hosts", "trusted_hosts"),
    ("max_pattern_pages", "max_pattern_pages"),
    ("max_link_share", "max_link_share"),
)


def crawl_options_from(settings: Settings, *, allow_private: bool = False) -> CrawlOptions:
    """The crawl options the ``SITECHAT_INGEST__*`` settings describe."""
    opts = settings.ingest
    extra: dict[str, Any] = {}
    for option, setting in _SETTING_FIELDS:
        value = getattr(opts, setting, None)
        if value is not None:
            extra[option] = tuple(value) if isinstance(value, list) else value
    return CrawlOptions(
        max_pages=opts.max_pages,
        max_depth=opts.max_depth,
        max_bytes=opts.max_bytes_per_page,
        concurrency=opts.concurrency,
        timeout=opts.timeout,
        user_agent=opts.user_agent or DEFAULT_USER_AGENT,
        allow_private=allow_private or opts.allow_private,
        **extra,
    )


def state_path_for(store: object) -> Path | None:
    """Where the crawl state of a store lives: inside its directory, if it has one."""
    path = getattr(store, "path", None)
    if isinstance(path, Path) and path.is_dir():
        return path / STATE_FILE
    return None


def _fingerprint(settings: Settings) -> str:
    opts = settings.ingest
    return f"{EXTRACTION_VERSION}|{opts.chunk_size}|{opts.chunk_overlap}"


def _is_passing_failure(result: CrawlResult) -> bool:
    """A failure that says nothing about whether the page (or sitemap) still exists: a
    5xx, a 429, a timeout, a network error, an unreadable sitemap, robots.txt unavailable."""
    reason = (result.reason or "").removeprefix("sitemap: ")
    if result.status == "failed":
        return not (reason.startswith("HTTP 4") and not reason.startswith("HTTP 429"))
    return "robots.txt unavailable" in reason or "robots.txt unreachable" in reason


def _is_gone(result: CrawlResult) -> bool:
    """The page itself was fetched and the server says it is gone."""
    reason = result.reason or ""
    return result.status == "failed" and reason.startswith(("HTTP 404", "HTTP 410"))


def _is_refused(result: CrawlResult) -> bool:
    """A 4xx other than 404, 410 and 429 (401, 403, 400…): the server would not show the
    page this time, which says nothing about whether it still exists."""
    reason = result.reason or ""
    return (
        result.status == "failed"
        and reason.startswith("HTTP 4")
        and not reason.startswith("HTTP 429")
        and not _is_gone(result)
    )


def source_owner(source: str, options: CrawlOptions) -> Callable[[str], bool]:
    """Which stored URLs a crawl of ``source`` speaks for: in its scope, at or below its path.

    ``https://host/`` owns the site, ``https://host/docs/`` (or ``…/docs/index.html``, or
    a sitemap in ``/docs/``) the pages under ``/docs/``, ``https://host/new.html`` that
    page alone: adding one page to an indexed site never claims the rest of it.
    """
    root = canonicalize_url(source)
    scope = Scope([root], options.include, options.exclude)
    path = urlsplit(root).path or "/"
    last = path.rsplit("/", 1)[-1]
    if is_sitemap_url(root) or last.lower().startswith("index."):
        path = path[: len(path) - len(last)]

    def owns(url: str) -> bool:
        return scope.wanted(url) and under_prefix(urlsplit(url).path or "/", path)

    return owns


@dataclass
class CrawledSite:
    """The outcome of crawling one site, ready for :func:`~.pipeline.ingest_pages`."""

    pages: list[Page] = field(default_factory=list)
    unchanged: list[str] = field(default_factory=list)
    results: list[CrawlResult] = field(default_factory=list)
    protected: set[str] = field(default_factory=set)
    gone: set[str] = field(default_factory=set)
    stats: CrawlStats = field(default_factory=CrawlStats)
    owns: Callable[[str], bool] | None = None
    seconds: float = 0.0
    _state: CrawlState | None = None
    _fresh: dict[str, KnownPage] = field(default_factory=dict)
    _state_path: Path | None = None

    def save_state(self, stored_urls: Sequence[str]) -> None:
        """Remember validators and links for the next crawl (no-op without a directory)."""
        if self._state is None or self._state_path is None:
            return
        try:
            self._state.merged(self._fresh, set(stored_urls)).save(self._state_path)
        except OSError as exc:
            where = self._state_path.parent
            raise StoreError(
                f"The index at {where} cannot be written ({exc.strerror or exc}: "
                f"{self._state_path.name}). If it is on a read-only file system, copy it to a "
                "writable directory and ingest there; otherwise check its permissions and "
                "free space."
            ) from None


async def crawl_site(
    source: str,
    settings: Settings,
    *,
    stored_urls: Sequence[str],
    state_path: Path | None,
    allow_private: bool = False,
    options: CrawlOptions | None = None,
    on_result: Callable[[CrawlResult, int], None] | None = None,
) -> CrawledSite:
    """Crawl ``source`` conditionally; ``stored_urls`` are the pages the index holds now."""
    options = options or crawl_options_from(settings, allow_private=allow_private)
    state = CrawlState.load(state_path, _fingerprint(settings)) if state_path else None
    stored = set(stored_urls)
    known = {url: k for url, k in state.pages.items() if k.page_url in stored} if state else {}
    site = CrawledSite(_state=state, _state_path=state_path)
    failures = 0
    started = time.perf_counter()
    async for result in crawl([source], options=options, stats=site.stats, known=known):
        site.results.append(result)
        fetched = result.fetched_url or result.url
        if result.status == "ok" and result.page is not None:
            site.pages.append(result.page)
            site._fresh[fetched] = KnownPage(
                result.page.url,
                result.etag,
                result.last_modified,
                result.links,
                page_fingerprint(result.page),
                result.written,
                page_blocks(result.page),
                result.page.title,
            )
        elif result.status == "unchanged":
            site.unchanged.append(result.url)
            previous = known.get(fetched) or KnownPage(result.url)
            site._fresh[fetched] = KnownPage(
                result.url,
                result.etag,
                result.last_modified,
                result.links,
                previous.content_hash,
                result.written,
                previous.blocks,
                previous.title,
            )
        elif _is_passing_failure(result):
            site.protected.add(result.url)
            failures += 1
        elif _is_gone(result):
            site.gone.add(result.url)
        elif _is_refused(result) and (result.url in stored or result.url in known):
            # A stored page now refused (a login wall, a WAF): kept, and so are the pages
            # it may link to. A link that never led to a stored page (/admin) is no loss.
            site.protected.add(known[result.url].page_url if result.url in known else result.url)
            failures += 1
        if on_result is not None:
            on_result(result, len(site.pages) + len(site.unchanged))
    site.seconds = time.perf_counter() - started
    site.pages = _strip_boilerplate(site, state)
    if failures and site.stats.truncated is None:
        site.stats.truncated = (
            f"{failures} URL(s) could not be read (a server error, a timeout, a stored page "
            "refused with 401, 403 or another 4xx, or an unreadable sitemap); pages this crawl "
            "did not reach were kept"
        )
    if site.stats.truncated is None:
        landed = next(iter(site.stats.start_redirects.values()), None)  # one start URL
        site.owns = _owner(source, landed, options)
    return site


def _owner(source: str, landed: str | None, options: CrawlOptions) -> Callable[[str], bool]:
    """What ``source`` owns, and also what the URL its redirect ``landed`` on owns: a
    start URL that now redirects to ``/v2/`` speaks for the pages under ``/v2/``."""
    owns = source_owner(source, options)
    if landed is None or landed == source:
        return owns
    also = source_owner(landed, options)
    return lambda url: owns(url) or also(url)


def _strip_boilerplate(site: CrawledSite, state: CrawlState | None) -> list[Page]:
    """Site-wide chrome (paragraphs, the title suffix) out of the fresh pages, judged on
    every page the crawl reached: the fresh ones and, for those that answered 304, what
    the state remembers of them, so a re-crawl decides as a fresh crawl would. With a
    state too old to remember that, a small re-crawl reuses the stored set."""
    reached = list(site._fresh.values())  # one per page fetched or unchanged
    block_sets = [k.blocks for k in reached if k.blocks is not None]
    titles = [k.title for k in reached if k.title is not None]
    if len(block_sets) == len(titles) == len(reached):
        blocks, suffix = repeated_blocks(block_sets), common_suffix(titles)
    elif state is not None and 2 * len(site.pages) < len(reached):
        return strip_title_suffix(strip_blocks(site.pages, state.boilerplate), state.title_suffix)
    else:
        blocks, suffix = boilerplate_blocks(site.pages), common_title_suffix(site.pages)
    if state is not None:
        state.boilerplate = blocks
        state.title_suffix = suffix
    return strip_title_suffix(strip_blocks(site.pages, blocks), suffix)
