"""The ingest pipeline: pages → chunks → only the changed chunks embedded → the index.

Chunk ids are derived from their place and text, so re-ingesting an unchanged page finds
every id already stored and embeds nothing; an edited section gets new ids, and the old
ones are deleted. Pages that disappeared from a fully crawled source are removed.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from langchain_core.embeddings import Embeddings

from sitechat.config import Settings
from sitechat.errors import FetchError, IngestError
from sitechat.ingest.chunk import chunk_page
from sitechat.ingest.crawl import CrawlOptions, crawl
from sitechat.ingest.extract import remove_boilerplate
from sitechat.ingest.local import iter_local_pages
from sitechat.models import Chunk, Page
from sitechat.vectorstores.base import VectorStore

__all__ = ["IngestSummary", "Progress", "embedding_text", "ingest_pages", "ingest_sources"]

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
    chunks_added: int = 0
    chunks_removed: int = 0
    chunks_unchanged: int = 0
    chunks_total: int = 0
    skipped: list[tuple[str, str]] = field(default_factory=list)
    failed: list[tuple[str, str]] = field(default_factory=list)
    seconds: dict[str, float] = field(default_factory=dict)

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
        }


def embedding_text(chunk: Chunk) -> str:
    """The text embedded for a chunk: its title and headings give the passage its topic."""
    parts = [chunk.title, chunk.heading, chunk.text]
    return "\n".join(p for p in parts if p)


def _is_url(source: str) -> bool:
    return source.startswith(("http://", "https://"))


async def _pages_from(
    source: str,
    settings: Settings,
    summary: IngestSummary,
    *,
    allow_private: bool,
    base_url: str | None,
    progress: Progress | None,
) -> tuple[list[Page], str | None]:
    """Collect a source's pages; also the URL prefix it owns if it was read completely."""
    if _is_url(source):
        opts = settings.ingest
        options = CrawlOptions(
            max_pages=opts.max_pages,
            max_depth=opts.max_depth,
            max_bytes=opts.max_bytes_per_page,
            concurrency=opts.concurrency,
            timeout=opts.timeout,
            user_agent=opts.user_agent,
            allow_private=allow_private or opts.allow_private,
        )
        pages: list[Page] = []
        started = time.perf_counter()
        async for result in crawl([source], options=options):
            if result.status == "ok" and result.page is not None:
                pages.append(result.page)
            elif result.status == "skipped":
                summary.pages_skipped += 1
                summary.skipped.append((result.url, result.reason or "skipped"))
            else:
                summary.pages_failed += 1
                summary.failed.append((result.url, result.reason or "failed"))
            if progress:
                progress("fetch", len(pages), None)
        summary.add_time("fetch", time.perf_counter() - started)
        if not pages:
            reasons = summary.failed or summary.skipped
            why = f"{reasons[0][0]}: {reasons[0][1]}" if reasons else "no page was found"
            raise FetchError(
                f"Could not ingest any page from {source} ({why}). Check that the URL is "
                "reachable and serves HTML, Markdown or text."
            )
        complete = len(pages) < options.max_pages and not summary.failed
        owned = source.rsplit("/", 1)[0] + "/" if complete else None
        return remove_boilerplate(pages), owned
    started = time.perf_counter()
    pages, owned = await asyncio.to_thread(_read_local, source, base_url)
    summary.add_time("read", time.perf_counter() - started)
    return remove_boilerplate(pages), owned


def _read_local(source: str, base_url: str | None) -> tuple[list[Page], str]:
    path = Path(source).expanduser()
    if not path.exists():
        raise IngestError(
            f"Source '{source}' is neither an http(s) URL nor an existing file or folder. "
            "Pass a URL like https://docs.example.com/ or a path to HTML/Markdown files."
        )
    pages = list(iter_local_pages(path, base_url=base_url))
    if not pages:
        raise IngestError(f"No .html, .htm, .md, .markdown or .txt files found under '{source}'.")
    root = path if path.is_dir() else path.parent
    owned = base_url if base_url else root.resolve().as_uri() + "/"
    return pages, owned


async def ingest_sources(
    sources: Sequence[str],
    store: VectorStore,
    embeddings: Embeddings,
    settings: Settings,
    *,
    allow_private: bool = False,
    base_url: str | None = None,
    progress: Progress | None = None,
) -> IngestSummary:
    """Ingest URLs and local paths into ``store``; see :func:`ingest_pages` for the diffing."""
    summary = IngestSummary()
    for source in sources:
        pages, owned = await _pages_from(
            source,
            settings,
            summary,
            allow_private=allow_private,
            base_url=base_url,
            progress=progress,
        )
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
    return summary


async def ingest_pages(
    pages: Iterable[Page],
    store: VectorStore,
    embeddings: Embeddings,
    settings: Settings,
    *,
    summary: IngestSummary | None = None,
    owned_prefix: str | None = None,
    progress: Progress | None = None,
) -> IngestSummary:
    """Chunk ``pages``, embed only chunks the store lacks, and drop the ones that vanished.

    With ``owned_prefix``, stored pages under that prefix that are not in ``pages`` are
    removed (the source was read completely and they no longer exist).
    """
    summary = summary or IngestSummary()
    opts = settings.ingest
    new_chunks: list[Chunk] = []
    stale_ids: list[str] = []
    seen_urls: set[str] = set()
    started = time.perf_counter()
    for page in pages:
        if page.url in seen_urls:
            continue
        seen_urls.add(page.url)
        chunks = chunk_page(page, max_chars=opts.chunk_size, overlap=opts.chunk_overlap)
        ids = {c.id for c in chunks}
        before = set(await store.chunk_hashes(page.url))
        fresh = [c for c in chunks if c.id not in before]
        gone = before - ids
        if not before:
            summary.pages_added += 1
        elif fresh or gone:
            summary.pages_updated += 1
        else:
            summary.pages_unchanged += 1
        new_chunks.extend(fresh)
        stale_ids.extend(gone)
        summary.chunks_unchanged += len(ids & before)
    summary.add_time("chunk", time.perf_counter() - started)

    removed_urls: list[str] = []
    if owned_prefix:
        removed_urls = [
            url
            for url in await store.urls()
            if url.startswith(owned_prefix) and url not in seen_urls
        ]

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
        vectors = await _embed(embeddings, [embedding_text(c) for c in part])
        summary.add_time("embed", time.perf_counter() - began)
        began = time.perf_counter()
        await store.upsert(part, vectors)
        summary.add_time("index", time.perf_counter() - began)
        summary.chunks_added += len(part)
        if progress:
            progress("embed", min(start + batch, len(chunks)), len(chunks))
