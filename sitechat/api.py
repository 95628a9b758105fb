"""The async entry points most code needs: ingest a site, search it, open a chat over it,
and check an index in full."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from sitechat._redact import redact
from sitechat.chat.base import ChatService
from sitechat.config import Settings, check_endpoint_url
from sitechat.errors import CorruptIndexError, InvalidInputError
from sitechat.factories import build_chat_service, check_index_location, open_store
from sitechat.ingest.options import CrawlOptions
from sitechat.ingest.pipeline import IngestSummary, Progress, check_sources, ingest_sources
from sitechat.models import SearchHit
from sitechat.observability.metrics import IngestMetrics
from sitechat.registry import load_provider
from sitechat.retrieval.hybrid import HybridRetriever, check_k
from sitechat.vectorstores.base import StoreCheck, VectorStore

__all__ = ["ingest", "open_chat", "search", "verify_index"]


def _settings(settings: Settings | None, index: str | None, **overrides: Any) -> Settings:
    base = settings or Settings.load()
    update: dict[str, Any] = {k: v for k, v in overrides.items() if v is not None}
    if index is not None:
        update["index"] = str(index)
    return base.model_copy(update=update) if update else base


def _check_base_url(base_url: str) -> None:
    """``base_url`` becomes the start of every citation link, so it must be a web address."""
    try:
        valid = check_endpoint_url(base_url) is not None and "@" not in urlsplit(base_url).netloc
    except ValueError:
        valid = False
    if not valid:
        raise InvalidInputError(
            f"base_url {redact(base_url)[:200]!r} is not an http:// or https:// URL with a host "
            "(and no user:password@). It is where the pages are published, e.g. "
            "https://docs.example.com/: citations link to it."
        )
    parts = urlsplit(base_url)
    if parts.query or parts.fragment or base_url.rstrip().endswith(("?", "#")):
        # each file's path is appended to it: after a ?query it lands in the query, and
        # after a #fragment every page would get the same URL and replace the others
        raise InvalidInputError(
            f"base_url {redact(base_url)[:200]!r} has a ?query or #fragment. Give the address "
            f"the pages are published under without it, e.g. "
            f"{redact(urlunsplit(parts._replace(query='', fragment='')))!r}."
        )


async def ingest(
    sources: str | Path | Sequence[str | Path],
    *,
    index: str | None = None,
    settings: Settings | None = None,
    allow_private: bool = False,
    base_url: str | None = None,
    progress: Progress | None = None,
    crawl_options: CrawlOptions | None = None,
) -> IngestSummary:
    """Crawl or read ``sources`` (URLs and/or local paths) into the index; incremental.

    Crawl limits come from ``settings.ingest`` unless ``crawl_options`` are given. No
    source at all, an empty one and a local path that does not exist are refused before
    the index is opened (so no empty index is left behind); ``"."`` is the current
    directory.

    >>> summary = await sitechat.ingest("https://docs.example.com/", index="docs-index")
    """
    if base_url is not None:
        _check_base_url(base_url)
    checked = check_sources(sources)  # before any index is created or opened
    cfg = _settings(settings, index)
    store, embeddings = await open_store(cfg, create=True)
    finished = False
    try:
        summary = await ingest_sources(
            checked,
            store,
            embeddings,
            cfg,
            allow_private=allow_private,
            base_url=base_url,
            progress=progress,
            crawl_options=crawl_options,
        )
        finished = True
    finally:
        await store.aclose()
        if not finished:
            # an empty index would open fine later and answer "not covered" to everything
            await store.discard_if_empty()
    IngestMetrics.from_settings(cfg).record(summary)  # one EMF line, when enabled
    return summary


async def search(
    query: str,
    *,
    index: str | None = None,
    k: int | None = None,
    where: Mapping[str, str] | None = None,
    settings: Settings | None = None,
) -> list[SearchHit]:
    """The passages of the index that best match ``query`` (hybrid search), best first.

    ``k`` defaults to ``settings.retrieval.top_k``; anything but a whole number of at least
    1 raises :class:`~sitechat.errors.InvalidInputError` before the index is opened.
    """
    if k is not None:
        check_k(k)
    cfg = _settings(settings, index)
    store, embeddings = await open_store(cfg)
    try:
        result = await HybridRetriever(store, embeddings, cfg.retrieval).retrieve(query, k, where)
        return list(result.hits)
    finally:
        await store.aclose()


async def open_chat(index: str | None = None, *, settings: Settings | None = None) -> ChatService:
    """A chat service over the index, with the LLM the settings choose.

    Close it with ``await chat.aclose()`` when done.
    """
    service: ChatService = await build_chat_service(_settings(settings, index))
    return service


async def verify_index(index: str | None = None, *, settings: Settings | None = None) -> StoreCheck:
    """Check the index in full (see :meth:`~sitechat.VectorStore.verify`) and report what
    is damaged. An index too damaged to open is a failed check naming why, not an error;
    a missing one raises :class:`~sitechat.errors.IndexNotFoundError`. Needs no embedder.
    """
    cfg = _settings(settings, index)
    provider = cfg.vectorstore.provider
    check_index_location(cfg)
    store_cls = load_provider("vectorstores", provider)
    try:
        store: VectorStore = await store_cls.open(cfg, None, create=False)
    except CorruptIndexError as exc:
        return StoreCheck(f"{provider} index at {cfg.index}", 0, None, ("opening",), (str(exc),))
    try:
        return await store.verify()
    finally:
        await store.aclose()
