"""Finding and reading a site's sitemaps through the crawler's fetcher.

Where to look: the sitemaps the user named, the ``Sitemap:`` lines of each start site's
robots.txt, and, when robots.txt names none, ``/sitemap.xml``. Sitemap indexes are
followed (a few levels, a bounded number of files), so one URL reaches every listed page.
A sitemap the user named that cannot be read is reported; a guessed ``/sitemap.xml``
that does not exist is not. Only sitemaps on the crawl's own sites (those of the start
URLs and of the sitemaps the user named) are fetched: a ``Sitemap:`` line of robots.txt, or
a sitemap index entry, pointing at another host is skipped with the reason (it could
aim the crawler at any address). A sitemap read only in part (cut short, malformed) is used
for the URLs before the break and reported as failed, so the crawl is not taken as a
complete listing; so is a sitemap index too large or too deep to follow to its end.
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from collections.abc import Sequence
from concurrent.futures import Executor
from typing import TYPE_CHECKING

import httpx

from sitechat.errors import IngestError
from sitechat.ingest.fetch import Fetcher, Stop
from sitechat.ingest.options import CrawlOptions
from sitechat.ingest.robots import origin_of
from sitechat.ingest.sitemaps import MAX_SITEMAP_URLS, SitemapError, parse_sitemap
from sitechat.ingest.urls import canonicalize_url, same_site

if TYPE_CHECKING:
    from sitechat.ingest.crawl import CrawlResult

__all__ = ["MAX_SITEMAP_FILES", "read_sitemaps"]

#: Sitemap files read per crawl, indexes included.
MAX_SITEMAP_FILES = 200
_MAX_NESTING = 3

logger = logging.getLogger(__name__)


async def _candidates(
    fetcher: Fetcher, roots: Sequence[str], named: Sequence[str], options: CrawlOptions
) -> list[tuple[str, bool]]:
    """(sitemap URL, named by the user or robots.txt) in the order to read them."""
    found: dict[str, bool] = {canonicalize_url(url): True for url in named}
    if not options.use_sitemaps:
        return list(found.items())
    for origin in dict.fromkeys(origin_of(root) for root in roots):
        listed: list[str] = []
        if options.respect_robots:
            rules = await fetcher.robots.rules_for(origin + "/")
            listed = [canonicalize_url(url, origin + "/") for url in rules.sitemaps]
        for url in listed:
            found.setdefault(url, True)
        if not listed:
            found.setdefault(origin + "/sitemap.xml", False)
    return list(found.items())


async def read_sitemaps(
    fetcher: Fetcher,
    roots: Sequence[str],
    named: Sequence[str],
    options: CrawlOptions,
    executor: Executor | None,
) -> tuple[list[str], list[CrawlResult]]:
    """Every page URL the sites' sitemaps list (as written), and problems worth reporting."""
    from sitechat.ingest.crawl import CrawlResult

    sites = [*roots, *named]
    named_urls = {canonicalize_url(url) for url in named}
    visited: set[str] = set()
    pages: list[str] = []
    problems: list[CrawlResult] = []

    def on_site(url: str, level: int) -> bool:
        if url in named_urls or any(same_site(url, site) for site in sites):
            return True
        if url not in visited:
            visited.add(url)
            where = "robots.txt" if level == 0 else "a sitemap index"
            reason = f"sitemap: not fetched, {where} names it on another site"
            logger.warning("skipping sitemap %s: %s", url, reason)
            problems.append(CrawlResult(url, "skipped", reason))
        return False

    queue: deque[tuple[str, bool, int]] = deque(
        (url, explicit, 0)
        for url, explicit in await _candidates(fetcher, roots, named, options)
        if on_site(url, 0)
    )
    loop = asyncio.get_running_loop()
    while queue and len(visited) < MAX_SITEMAP_FILES and len(pages) < MAX_SITEMAP_URLS:
        url, explicit, level = queue.popleft()
        if url in visited:
            continue
        visited.add(url)
        try:
            response = await fetcher.get(url, purpose="sitemap")
            if response.status != 200:
                raise Stop("failed", f"sitemap: HTTP {response.status}")
            content = await loop.run_in_executor(executor, parse_sitemap, response.body)
        except Stop as stop:
            if explicit:
                problems.append(CrawlResult(url, stop.status, _sitemap_reason(stop.reason)))
            continue
        except SitemapError as exc:
            if explicit:
                problems.append(CrawlResult(url, "failed", f"sitemap {exc}"))
            continue
        except (IngestError, OSError, httpx.HTTPError) as exc:
            if explicit:
                problems.append(CrawlResult(url, "failed", f"sitemap: {exc}"))
            continue
        fetcher.stats.sitemaps_read += 1
        if content.error is not None:
            problems.append(CrawlResult(url, "failed", f"sitemap {content.error}"))
        pages.extend(loc for loc, _ in content.pages)
        fetcher.stats.sitemap_urls += len(content.pages)
        if level < _MAX_NESTING:
            children = (canonicalize_url(s, url) for s in content.sitemaps)
            queue.extend((c, True, level + 1) for c in children if on_site(c, level + 1))
        elif content.sitemaps and fetcher.stats.truncated is None:
            fetcher.stats.truncated = f"sitemap indexes nested deeper than {_MAX_NESTING} levels"
    unread = any(url not in visited for url, _, _ in queue)
    if (unread or len(pages) > MAX_SITEMAP_URLS) and fetcher.stats.truncated is None:
        fetcher.stats.truncated = (
            f"sitemaps list more than {MAX_SITEMAP_FILES} files or {MAX_SITEMAP_URLS} URLs"
        )
    return pages[:MAX_SITEMAP_URLS], problems


def _sitemap_reason(reason: str) -> str:
    return reason if reason.startswith("sitemap") else f"sitemap: {reason}"
