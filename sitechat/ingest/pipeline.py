"""The ingest pipeline: pages → chunks → only the changed chunks embedded → the index.

Chunk ids are derived from their place and text, so re-ingesting an unchanged page finds
every id already stored and embeds nothing; an edited section gets new ids, and the old
ones are deleted. A stored page is removed when it was fetched and found gone (404, 410),
or when a source it belongs to was read completely (no failure, no cut) without it. A
re-crawl sends the previous validators (:mod:`sitechat.ingest.crawl_source`), so a page
the server reports unchanged (304) is neither downloaded nor extracted nor chunked.
"""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import Callable, Collection, Iterable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path

from langchain_core.embeddings import Embeddings

from sitechat._redact import redact
from sitechat.config import Settings
from sitechat.errors import FetchError, IngestError, InvalidInputError
from sitechat.ingest.chunk import chunk_page
from sitechat.ingest.crawl import CrawlOptions, CrawlResult, CrawlStats
from sitechat.ingest.crawl_source import crawl_site, state_path_for
from sitechat.ingest.extract import remove_boilerplate
from sitechat.ingest.local import iter_local_pages
from sitechat.ingest.scope import under_prefix
from sitechat.models import Chunk, Page
from sitechat.vectorstores.base import VectorStore

__all__ = ["IngestSummary", "Progress", "check_sources", "ingest_pages", "ingest_sources"]

Progress = Callable[[str, int, int | None], None]
"""Called as ``progress(phase, done, total)``; ``total`` is None while unknown."""


@dataclass
class IngestSummary:
    """What one ingest did, in pages and chunks, with the time each phase took (seconds)."""

    pages_added: int = 0
    pages_updated: int = 0
    pages_unchanged: int = 0
    pages_removed: int = 0
    pages_skipped: int = 0
    pages_failed: int = 0
    pages_not_modified: int = 0
    chunks_added: int = 0
    chunks_removed: int = 0
    chunks_unchanged: int = 0
    chunks_total: int = 0
    skipped: list[tuple[str, str]] = field(default_factory=list)
    failed: list[tuple[str, str]] = field(default_factory=list)
    seconds: dict[str, float] = field(default_factory=dict)
    requests: int = 0
    retries: int = 0
    bytes_received: int = 0
    sitemaps_read: int = 0
    sitemap_urls: int = 0
    trap_urls_dropped: int = 0
    duplicate_urls_dropped: int = 0
    truncated: list[str] = field(default_factory=list)
    redirects: list[tuple[str, str]] = field(default_factory=list)
    """Start URLs that redirected, and where to (that site and path were crawled)."""

    def record_crawl(self, stats: CrawlStats) -> None:
        """Add one crawl's counters (several sources add up)."""
        self.requests += stats.requests
        self.retries += stats.retries
        self.bytes_received += stats.bytes_received
        self.sitemaps_read += stats.sitemaps_read
        self.sitemap_urls += stats.sitemap_urls
        self.trap_urls_dropped += stats.trap_urls_dropped
        self.duplicate_urls_dropped += stats.duplicate_urls_dropped
        if stats.truncated:
            self.truncated.append(stats.truncated)
        self.redirects.extend(stats.start_redirects.items())

    @property
    def pages_seen(self) -> int:
        return self.pages_added + self.pages_updated + self.pages_unchanged

    def add_time(self, phase: str, seconds: float) -> None:
        self.seconds[phase] = round(self.seconds.get(phase, 0.0) + seconds, 4)

    def to_dict(self) -> dict[str, object]:
        """A JSON-ready view, as printed by ``sitechat ingest --json``."""
        return {
            "pages": {
                "added": self.pages_added,
                "updated": self.pages_updated,
                "unchanged": self.pages_unchanged,
                "removed": self.pages_removed,
                "skipped": self.pages_skipped,
                "failed": self.pages_failed,
                "not_modified": self.pages_not_modified,
            },
            "chunks": {
                "added": self.chunks_added,
                "removed": self.chunks_removed,
                "unchanged": self.chunks_unchanged,
                "total": self.chunks_total,
            },
            "skipped": [{"url": u, "reason": r} for u, r in self.skipped],
            "failed": [{"url": u, "reason": r} for u, r in self.failed],
            "seconds": dict(self.seconds),
            "crawl": {
                "requests": self.requests,
                "retries": self.retries,
                "bytes_received": self.bytes_received,
                "sitemaps_read": self.sitemaps_read,
                "sitemap_urls": self.sitemap_urls,
                "trap_urls_dropped": self.trap_urls_dropped,
                "duplicate_urls_dropped": self.duplicate_urls_dropped,
                "complete": not self.truncated,
                "truncated": list(self.truncated),
                "redirects": [{"from": a, "to": b} for a, b in self.redirects],
            },
        }


def _is_url(source: str) -> bool:
    return source.startswith(("http://", "https://"))


async def _crawl_source(
    source: str,
    store: VectorStore,
    embeddings: Embeddings,
    settings: Settings,
    summary: IngestSummary,
    *,
    allow_private: bool,
    options: CrawlOptions | None,
    progress: Progress | None,
) -> None:
    """Crawl one site (conditionally, when the index remembers validators) and ingest it."""

    def on_result(result: CrawlResult, pages: int) -> None:
        if result.status == "skipped":
            summary.pages_skipped += 1
            summary.skipped.append((result.url, result.reason or "skipped"))
        elif result.status == "failed":
            summary.pages_failed += 1
            summary.failed.append((result.url, result.reason or "failed"))
        if progress:
            progress("fetch", pages, None)

    failed_before, skipped_before = len(summary.failed), len(summary.skipped)
    site = await crawl_site(
        source,
        settings,
        stored_urls=await store.urls(),
        state_path=state_path_for(store),
        allow_private=allow_private,
        options=options,
        on_result=on_result,
    )
    summary.add_time("fetch", site.seconds)
    summary.add_time("extract", site.stats.extract_seconds)
    summary.record_crawl(site.stats)
    if not site.pages and not site.unchanged:
        # this source's own failures, not an earlier source's
        reasons = summary.failed[failed_before:] or summary.skipped[skipped_before:]
        # the advice below replaces the reason's own ("… Check the URL.")
        why = f"{reasons[0][0]}: {reasons[0][1]}" if reasons else "no page was found"
        why = why.removesuffix(" Check the URL.").rstrip(".")
        raise FetchError(
            f"Could not ingest any page from {redact(source)} ({redact(why)}). Check that the "
            "URL is reachable and serves HTML, Markdown or text."
        )
    await ingest_pages(
        site.pages,
        store,
        embeddings,
        settings,
        summary=summary,
        owns=site.owns,
        unchanged=site.unchanged,
        protected=site.protected,
        gone=site.gone,
        progress=progress,
    )
    site.save_state(await store.urls())


async def _local_pages(
    source: str, base_url: str | None, settings: Settings, summary: IngestSummary
) -> tuple[list[Page], str | None]:
    started = time.perf_counter()
    pages, owned = await asyncio.to_thread(
        _read_local,
        source,
        base_url,
        settings.ingest.max_link_share,
        summary,
        settings.ingest.max_bytes_per_page,
    )
    summary.add_time("read", time.perf_counter() - started)
    return remove_boilerplate(pages), owned


def _read_local(
    source: str,
    base_url: str | None,
    max_link_share: float,
    summary: IngestSummary,
    max_bytes: int,
) -> tuple[list[Page], str | None]:
    """The pages of ``source``, and the URL prefix it owns (None when it was not read whole).

    A folder owns everything under it (or under ``base_url``); a single file owns itself.
    """
    unreadable: list[str] = []

    def skipped(url: str, reason: str) -> None:
        summary.pages_skipped += 1
        summary.skipped.append((url, reason))

    def failed(url: str, reason: str) -> None:
        unreadable.append(url)
        summary.pages_failed += 1
        summary.failed.append((url, reason))

    path = Path(source).expanduser()
    if not path.exists():  # checked before the index opened, but it may have gone since
        raise _missing_source(source)
    pages = list(
        iter_local_pages(
            path,
            base_url=base_url,
            max_link_share=max_link_share,
            max_bytes=max_bytes,
            on_skip=skipped,
            on_error=failed,
        )
    )
    if not pages:
        raise IngestError(f"No .html, .htm, .md, .markdown or .txt files found under '{source}'.")
    if unreadable:
        summary.truncated.append(
            f"{len(unreadable)} file(s) or folder(s) under {source} could not be read; "
            "no page of it was removed"
        )
        return pages, None
    if path.is_file():
        return pages, pages[0].url if len(pages) == 1 else None
    return pages, base_url if base_url else path.resolve().as_uri() + "/"


_WHAT_TO_GIVE = "Give a URL or a folder; use . for the current directory."


def check_sources(sources: str | Path | Iterable[str | Path]) -> list[str]:
    """``sources`` (one, or several) as strings; refuses no source at all, an empty or
    non-text one, and a local path that does not exist.

    Call it before any index is opened: an empty path would silently mean the current
    directory, and index whatever happens to be there. ``.`` and a :class:`~pathlib.Path`
    (``Path("")`` is ``.``) are explicit and accepted.
    """
    items: Iterable[object] = [sources] if isinstance(sources, (str, Path)) else sources
    if not isinstance(items, Iterable) or isinstance(items, (bytes, bytearray)):
        raise InvalidInputError(
            f"The sources must be a URL or a path (str or pathlib.Path), or a list of them, "
            f"not {type(sources).__name__}. {_WHAT_TO_GIVE}"
        )
    checked: list[str] = []
    for source in items:
        if isinstance(source, Path):
            checked.append(str(source))
        elif not isinstance(source, str):
            raise InvalidInputError(
                f"A source must be a URL or a path (str or pathlib.Path), not "
                f"{type(source).__name__}. {_WHAT_TO_GIVE}"
            )
        elif not source.strip():
            raise InvalidInputError(f"A source is empty ({source!r}). {_WHAT_TO_GIVE}")
        else:
            checked.append(source)
    if not checked:
        raise InvalidInputError(f"No source was given. {_WHAT_TO_GIVE}")
    for source in checked:
        if not _is_url(source) and not os.path.exists(os.path.expanduser(source)):
            raise _missing_source(source)
    return checked


def _missing_source(source: str) -> IngestError:
    return IngestError(
        f"Source '{source}' is neither an http(s) URL nor an existing file or folder. "
        "Pass a URL like https://docs.example.com/ or a path to HTML/Markdown files."
    )


async def ingest_sources(
    sources: Sequence[str | Path],
    store: VectorStore,
    embeddings: Embeddings,
    settings: Settings,
    *,
    allow_private: bool = False,
    base_url: str | None = None,
    progress: Progress | None = None,
    crawl_options: CrawlOptions | None = None,
) -> IngestSummary:
    """Ingest URLs and local paths into ``store``; see :func:`ingest_pages` for the diffing.

    URLs are crawled with ``crawl_options`` when given, else with the options the
    settings describe; ``allow_private`` widens either. An empty or non-text source is
    refused (:func:`check_sources`) before anything is read or written.
    """
    checked = check_sources(sources)
    summary = IngestSummary()
    unreachable: list[str] = []
    for source in checked:
        if _is_url(source):
            options = crawl_options
            if options is not None and allow_private and not options.allow_private:
                options = replace(options, allow_private=True)
            try:
                await _crawl_source(
                    source,
                    store,
                    embeddings,
                    settings,
                    summary,
                    allow_private=allow_private,
                    options=options,
                    progress=progress,
                )
            except FetchError as exc:
                if len(checked) == 1:
                    raise
                unreachable.append(str(exc))  # the other sources are still ingested
            continue
        pages, owned = await _local_pages(source, base_url, settings, summary)
        await ingest_pages(
            pages,
            store,
            embeddings,
            settings,
            summary=summary,
            owned_prefix=owned,
            progress=progress,
        )
    summary.chunks_total = await store.count()
    if unreachable:
        done = len(checked) - len(unreachable)
        raise FetchError(
            f"{len(unreachable)} of {len(checked)} sources could not be ingested; the other "
            f"{done} were ({summary.pages_added} pages added, {summary.pages_updated} "
            f"updated, {summary.chunks_total} chunks in the index). " + " ".join(unreachable)
        )
    return summary


async def ingest_pages(
    pages: Iterable[Page],
    store: VectorStore,
    embeddings: Embeddings,
    settings: Settings,
    *,
    summary: IngestSummary | None = None,
    owned_prefix: str | None = None,
    owns: Callable[[str], bool] | None = None,
    unchanged: Iterable[str] = (),
    protected: Collection[str] = (),
    gone: Collection[str] = (),
    progress: Progress | None = None,
) -> IngestSummary:
    """Chunk ``pages``, embed only chunks the store lacks, and drop the ones that vanished.

    ``unchanged`` are page URLs known to be unchanged without their content (HTTP 304):
    their chunks stay and count as unchanged. Stored pages in ``gone`` (fetched, found
    gone) are removed. So are stored pages that are neither in ``pages`` nor ``unchanged``
    nor ``protected`` when they are at or under ``owned_prefix`` (whole path segments:
    ``…/v1`` never owns ``…/v10/``) or ``owns(url)`` says so: pass either only when the
    source was read completely, so that a page missing from it no longer exists.
    """
    summary = summary or IngestSummary()
    opts = settings.ingest
    new_chunks: list[Chunk] = []
    stale_ids: list[str] = []
    seen_urls: set[str] = set()
    started = time.perf_counter()
    for url in unchanged:
        if url in seen_urls:
            continue
        seen_urls.add(url)
        summary.pages_unchanged += 1
        summary.pages_not_modified += 1
        summary.chunks_unchanged += len(await store.chunk_hashes(url))
    for page in pages:
        if page.url in seen_urls:
            continue
        seen_urls.add(page.url)
        chunks = chunk_page(page, max_chars=opts.chunk_size, overlap=opts.chunk_overlap)
        ids = {c.id for c in chunks}
        before = set(await store.chunk_hashes(page.url))
        fresh = [c for c in chunks if c.id not in before]
        dropped = before - ids
        if not before:
            summary.pages_added += 1
        elif fresh or dropped:
            summary.pages_updated += 1
        else:
            summary.pages_unchanged += 1
        new_chunks.extend(fresh)
        stale_ids.extend(dropped)
        summary.chunks_unchanged += len(ids & before)
    summary.add_time("chunk", time.perf_counter() - started)

    keep = seen_urls | set(protected)
    gone_urls = set(gone) - seen_urls

    def removable(url: str) -> bool:
        if url in gone_urls:
            return True
        if url in keep:
            return False
        if owned_prefix and under_prefix(url, owned_prefix):
            return True
        return owns is not None and owns(url)

    removed_urls: list[str] = []
    if owned_prefix or owns or gone_urls:
        removed_urls = [url for url in await store.urls() if removable(url)]

    await _embed_and_store(new_chunks, store, embeddings, settings, summary, progress)
    started = time.perf_counter()
    if stale_ids:
        summary.chunks_removed += await store.delete(stale_ids)
    for url in removed_urls:
        summary.pages_removed += 1
        summary.chunks_removed += await store.delete_by_url(url)
    summary.add_time("index", time.perf_counter() - started)
    started = time.perf_counter()
    await store.persist()
    summary.add_time("index", time.perf_counter() - started)
    return summary


async def _embed(embeddings: Embeddings, texts: list[str]) -> Sequence[Sequence[float]]:
    # embedders that can return an array skip two costly conversions through Python lists
    as_array = getattr(embeddings, "embed_array", None)
    if callable(as_array):
        vectors: Sequence[Sequence[float]] = await asyncio.to_thread(as_array, texts)
        return vectors
    return await embeddings.aembed_documents(texts)


async def _embed_and_store(
    chunks: list[Chunk],
    store: VectorStore,
    embeddings: Embeddings,
    settings: Settings,
    summary: IngestSummary,
    progress: Progress | None,
) -> None:
    batch = max(settings.embeddings.batch_size, 1) * 8
    for start in range(0, len(chunks), batch):
        part = chunks[start : start + batch]
        began = time.perf_counter()
        vectors = await _embed(embeddings, [c.searchable_text for c in part])
        summary.add_time("embed", time.perf_counter() - began)
        began = time.perf_counter()
        await store.upsert(part, vectors)
        summary.add_time("index", time.perf_counter() - began)
        summary.chunks_added += len(part)
        if progress:
            progress("embed", min(start + batch, len(chunks)), len(chunks))
