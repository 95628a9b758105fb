"""Finding and reading a site's sitemaps through the crawler's fetcher.

Where to look: the sitemaps the user named, the ``Sitemap:`` lines of each start site's
robots.txt, and, when robots.txt names none, ``/sitemap.xml``. A site a start URL
redirects to counts as a start site (the crawler reads its sitemaps once it sees the
move). Sitemap indexes are followed (a few levels, a bounded number of files), so one URL
reaches every listed page.

A sitemap someone named (the user, robots.txt or a sitemap index) that cannot be read (an
HTTP error, a failed fetch, a body that is not a sitemap) is reported failed, logged as a
warning, and marks the crawl incomplete (:attr:`CrawlStats.truncated`): the pages it lists
are unknown, so none of them may be taken as gone. A guessed ``/sitemap.xml`` that cannot
be read is not reported. A sitemap read only in part (cut short, malformed, more URLs than
one file may list) is used for the URLs before the break and reported the same way; so is
a sitemap index too large or too deep to follow to its end, and a sitemap with ``<loc>``
entries that are not absolute http(s) URLs (relative ones break the protocol, and are not
fetched).

Only sitemaps on the crawl's own sites (those of the start URLs and of the sitemaps the
user named) are fetched: a ``Sitemap:`` line of robots.txt, or a sitemap index entry,
pointing at another host is skipped with the reason (it could aim the crawler at any
address).
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from collections.abc import Sequence
from concurrent.futures import Executor
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

import httpx

from sitechat._redact import redact, safe_url
from sitechat.errors import IngestError
from sitechat.ingest.fetch import Fetcher, Stop
from sitechat.ingest.options import CrawlOptions, CrawlStats
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


_BY_USER = "the crawl's start URLs or sitemaps option"


async def _candidates(
    fetcher: Fetcher, roots: Sequence[str], named: Sequence[str], options: CrawlOptions
) -> list[tuple[str, str | None]]:
    """(sitemap URL, who named it, or None when guessed) in the order to read them."""
    found: dict[str, str | None] = {canonicalize_url(url): _BY_USER for url in named}
    if not options.use_sitemaps:
        return list(found.items())
    for origin in dict.fromkeys(origin_of(root) for root in roots):
        listed: list[str] = []
        if options.respect_robots:
            rules = await fetcher.robots.rules_for(origin + "/")
            listed = [canonicalize_url(url, origin + "/") for url in rules.sitemaps]
        for url in listed:
            found.setdefault(url, f"the robots.txt of {safe_url(origin)}")
        if not listed:
            found.setdefault(origin + "/sitemap.xml", None)
    return list(found.items())


def _is_absolute_http(loc: str) -> bool:
    """A ``<loc>`` the sitemaps.org protocol accepts: an absolute http(s) URL with a host."""
    try:
        parts = urlsplit(loc)
    except ValueError:
        return False
    return parts.scheme.lower() in ("http", "https") and bool(parts.hostname)


def _relative_note(locs: Sequence[str]) -> str:
    """Why a sitemap's relative (or otherwise not http) ``<loc>`` entries were not used."""
    shown = repr(locs[0] if len(locs[0]) <= 80 else locs[0][:80] + "…")
    what = (
        f"1 <loc> entry that is not an absolute http(s) URL ({shown}"
        if len(locs) == 1
        else f"{len(locs)} <loc> entries that are not absolute http(s) URLs (such as {shown}"
    )
    return f"lists {what}; the sitemaps.org protocol requires full URLs), not fetched"


def _unread(url: str, named_by: str | None, why: str, stats: CrawlStats) -> CrawlResult:
    """The failed result for a sitemap not read (in full); marks the crawl incomplete.

    ``why`` completes "sitemap …" (``"is an HTML page…"``, ``"could not be fetched: …"``).
    """
    from sitechat.ingest.crawl import CrawlResult

    why = redact(why)
    where = f"named by {named_by}" if named_by else "found at the site's usual address"
    tail = (
        "pages it lists may be missing from this crawl, so the crawl is incomplete and keeps "
        "the stored pages it did not reach. Fix the sitemap"
        + (", or stop naming it" if named_by else "")
    )
    logger.warning("sitemap %s %s (%s); %s", safe_url(url), why, where, tail)
    if stats.truncated is None:
        stats.truncated = f"sitemap {safe_url(url)} {why}; the pages it may list were kept"
    return CrawlResult(url, "failed", f"sitemap {why} ({where}); {tail}")


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
            logger.warning("skipping sitemap %s: %s", safe_url(url), reason)
            problems.append(CrawlResult(url, "skipped", reason))
        return False

    queue: deque[tuple[str, str | None, int]] = deque(
        (url, named_by, 0)
        for url, named_by in await _candidates(fetcher, roots, named, options)
        if on_site(url, 0)
    )
    stats = fetcher.stats
    loop = asyncio.get_running_loop()
    while queue and len(visited) < MAX_SITEMAP_FILES and len(pages) < MAX_SITEMAP_URLS:
        url, named_by, level = queue.popleft()
        if url in visited:
            continue
        visited.add(url)
        why: str | None = None
        try:
            response = await fetcher.get(url, purpose="sitemap")
            if response.status != 200:
                raise Stop("failed", f"HTTP {response.status}")
            content = await loop.run_in_executor(executor, parse_sitemap, response.body)
        except Stop as stop:
            why = "could not be fetched: " + stop.reason.removeprefix("sitemap: ")
        except SitemapError as exc:
            why = str(exc)
        except (IngestError, OSError, httpx.HTTPError) as exc:
            why = f"could not be fetched: {str(exc) or type(exc).__name__}"
        if why is not None:
            # A guessed /sitemap.xml that cannot be read is simply not there.
            if named_by is not None:
                problems.append(_unread(url, named_by, why, stats))
            continue
        stats.sitemaps_read += 1
        if content.error is not None:
            problems.append(_unread(url, named_by, content.error, stats))
        locs = [loc.strip() for loc, _ in content.pages]
        relative = [loc for loc in locs if not _is_absolute_http(loc)]
        if relative:
            problems.append(_unread(url, named_by, _relative_note(relative), stats))
        pages.extend(loc for loc in locs if _is_absolute_http(loc))
        stats.sitemap_urls += len(content.pages)
        if level < _MAX_NESTING:
            children = (canonicalize_url(s, url) for s in content.sitemaps)
            index = f"the sitemap index {safe_url(url)}"
            queue.extend((c, index, level + 1) for c in children if on_site(c, level + 1))
        elif content.sitemaps and fetcher.stats.truncated is None:
            fetcher.stats.truncated = f"sitemap indexes nested deeper than {_MAX_NESTING} levels"
    unread = any(url not in visited for url, _, _ in queue)
    if (unread or len(pages) > MAX_SITEMAP_URLS) and fetcher.stats.truncated is None:
        fetcher.stats.truncated = (
            f"sitemaps list more than {MAX_SITEMAP_FILES} files or {MAX_SITEMAP_URLS} URLs"
        )
    return pages[:MAX_SITEMAP_URLS], problems
