"""The vector store contract every store implements.

=============================  ======================================================
Member                         Contract
=============================  ======================================================
``name``                       Class attribute: registry name (``"faiss"``).
``supports_keyword_search``    Class attribute: True if ``keyword_search`` works; the
                               hybrid retriever then fuses it with dense search.
``embedder``                   The :class:`EmbedderInfo` (name, dimension) that built
                               the store; opening it with another embedder raises
                               :class:`~sitechat.errors.EmbedderMismatchError`.
``upsert(chunks, vectors)``    Insert or replace chunks by ``Chunk.id`` with one vector
                               each (same order, dimension ``embedder.dimension``).
``search(vector, k, where)``   Up to ``k`` hits, best first, higher score is better.
                               ``where`` keeps chunks whose metadata (and ``url``)
                               equal every given value; a ``url`` with a
                               ``#section`` names its page.
``keyword_search(query, ...)``  Up to ``k`` hits ranked by a keyword model (BM25).
``get(ids)``                   The stored chunks for these ids (unknown ids skipped).
``delete(ids)``                Remove chunks by id; returns how many were removed.
``delete_by_url(url)``         Remove every chunk of one page; returns the count.
``chunk_hashes(url=None)``     ``{chunk_id: content_hash}`` for one page or all, so
                               ingest can embed only what changed.
``urls()``                     Every page URL in the store.
``count()``                    Number of chunks.
``page_sizes(urls)``           Optional: how many chunks these pages and the whole
                               store hold (:class:`PageSizes`), or None (the
                               default) when the store cannot tell cheaply.
``persist()``                  Make every change durable; a crash before it returns
                               leaves the previous persisted state readable.
``verify()``                   Read everything persisted once and report damage as
                               a :class:`StoreCheck` (never raises for damage). The
                               base class checks what the contract above can see,
                               and that the text of every chunk ingest made still
                               hashes to its ``content_hash``; stores add their own
                               checks.
``aclose()``                   Persist if needed and release resources.
=============================  ======================================================

All methods are coroutines: network stores do I/O, embedded stores run heavy work off the
event loop. Many concurrent readers are allowed while one writer upserts.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, ClassVar

from pydantic import BaseModel

from sitechat.models import Chunk, SearchHit
from sitechat.vectorstores._text_hashes import TextHashCheck

if TYPE_CHECKING:
    from sitechat.config import Settings

__all__ = ["EmbedderInfo", "PageSizes", "StoreCheck", "VectorStore", "page_of"]


def page_of(url: str) -> str:
    """The page a ``url`` filter names: a deep link's ``#section`` is dropped, since chunks
    store their page's URL (``Source.url`` and ``Chunk.link`` carry the anchor)."""
    return url.split("#", 1)[0] if "#" in url else url


@dataclass(frozen=True, slots=True)
class EmbedderInfo:
    """Which embedder built an index: vectors from another one are meaningless in it."""

    name: str
    dimension: int


@dataclass(frozen=True, slots=True)
class PageSizes:
    """How many chunks some pages hold, and how many the whole store holds.

    The hybrid retriever reads them to tell a page that matches in many places from one
    that is merely large: of a ranked list of ``n`` passages, a page holding a share
    ``chunks[url] / total`` of the store gets about ``n`` times that share by chance.
    """

    chunks: Mapping[str, int]
    """Chunks per page URL; a page missing from it has none (or was not asked about)."""
    total: int
    """Chunks in the whole store; never less than the sum of ``chunks``, even when the
    total lags behind the pages (a pgvector total recorded at the last save, a FAISS
    reader opened before another process saved more)."""


@dataclass(frozen=True, slots=True)
class StoreCheck:
    """What :meth:`VectorStore.verify` found: the counts, what it checked, and each
    problem in words (none when the store is sound)."""

    store: str
    """Which store was checked, e.g. ``faiss index at docs-index``."""
    chunks: int
    vectors: int | None
    """Vectors stored, tombstones included; None where the store cannot tell."""
    checked: tuple[str, ...]
    problems: tuple[str, ...] = ()
    tombstones: int = 0
    """Vectors kept for deleted chunks (an HNSW graph's), left out of every result."""

    @property
    def ok(self) -> bool:
        return not self.problems

    def to_dict(self) -> dict[str, object]:
        """A JSON-ready view, as printed by ``sitechat verify --json``."""
        return {
            "store": self.store,
            "ok": self.ok,
            "chunks": self.chunks,
            "vectors": self.vectors,
            "tombstones": self.tombstones,
            "checked": list(self.checked),
            "problems": list(self.problems),
        }


class VectorStore(ABC):
    """Abstract base of every vector store. See the module docstring for the contract."""

    name: ClassVar[str] = ""
    supports_keyword_search: ClassVar[bool] = False
    config_class: ClassVar[type[BaseModel] | None] = None

    @classmethod
    @abstractmethod
    async def open(
        cls, settings: Settings, embedder: EmbedderInfo | None, *, create: bool
    ) -> VectorStore:
        """Open the store ``settings.index`` names.

        With ``create`` a missing store is made for ``embedder``. With ``embedder=None``
        the store must exist and its recorded embedder is adopted (read-only callers).
        Raises :class:`~sitechat.errors.IndexNotFoundError` when it is missing and
        :class:`~sitechat.errors.EmbedderMismatchError` when ``embedder`` differs.
        """

    @property
    @abstractmethod
    def embedder(self) -> EmbedderInfo:
        """The embedder that built this store."""

    @abstractmethod
    async def upsert(self, chunks: Sequence[Chunk], vectors: Sequence[Sequence[float]]) -> None:
        """Insert or replace ``chunks`` (by id) with their vectors."""

    @abstractmethod
    async def search(
        self, vector: Sequence[float], k: int = 5, where: Mapping[str, str] | None = None
    ) -> list[SearchHit]:
        """The ``k`` chunks nearest to ``vector``, best first."""

    async def keyword_search(
        self, query: str, k: int = 5, where: Mapping[str, str] | None = None
    ) -> list[SearchHit]:
        """The ``k`` chunks best matching ``query`` by keywords; empty if unsupported."""
        return []

    @abstractmethod
    async def get(self, ids: Sequence[str]) -> list[Chunk]:
        """The stored chunks with these ids, in the given order."""

    @abstractmethod
    async def delete(self, ids: Sequence[str]) -> int:
        """Remove chunks by id; returns how many existed."""

    @abstractmethod
    async def delete_by_url(self, url: str) -> int:
        """Remove every chunk of the page ``url``; returns how many existed."""

    @abstractmethod
    async def chunk_hashes(self, url: str | None = None) -> dict[str, str]:
        """``{chunk_id: content_hash}`` for the page ``url``, or for the whole store."""

    @abstractmethod
    async def urls(self) -> list[str]:
        """Every page URL with at least one chunk."""

    @abstractmethod
    async def count(self) -> int:
        """The number of chunks stored."""

    @abstractmethod
    async def persist(self) -> None:
        """Make all changes durable (atomically for embedded stores)."""

    async def aclose(self) -> None:
        """Persist pending changes and release resources."""
        await self.persist()

    async def page_sizes(self, urls: Sequence[str]) -> PageSizes | None:
        """How many chunks each page in ``urls`` holds, and the whole store.

        Called by the hybrid retriever on every query with the pages its searches found
        (a few dozen), so it must be cheap: one indexed query, not a scan. The default
        returns None, and retrieval then counts every further passage of a page as
        evidence whatever the page's size.
        """
        return None

    async def discard_if_empty(self) -> bool:
        """After :meth:`aclose`, when the first ingest into a new index failed: remove what
        opening this store created if nothing was ever stored in it, so the failure is not
        hidden by an empty index that answers "not covered" to everything. Returns whether
        anything was removed. The default removes nothing; a store that creates its index
        on open (the FAISS one) overrides it, and must leave an index another process has
        filled or opened meanwhile."""
        return False

    async def verify(self) -> StoreCheck:
        """Check the store in full and report what is damaged; never raises for damage.

        This base version checks what the contract can see: every chunk ``chunk_hashes``
        lists can be read back with the same hash, ``count`` agrees, every chunk's page is
        among ``urls``, and the text of every chunk ingest made (recognised by its id,
        which ingest derives from the chunk's place and ``content_hash``) still hashes to
        its ``content_hash``. Chunks upserted with ids and hashes of their own are not
        re-hashed: their ``content_hash`` may be anything. Stores override it to check
        their own files or tables (vectors, keyword index) too.
        """
        hashes = await self.chunk_hashes()
        problems: list[str] = []
        total = await self.count()
        if total != len(hashes):
            problems.append(f"count() says {total} chunks, chunk_hashes() lists {len(hashes)}")
        ids = list(hashes)
        pages = set(await self.urls())
        texts = TextHashCheck()
        unreadable = differing = orphaned = 0
        for start in range(0, len(ids), 500):
            part = ids[start : start + 500]
            found = {chunk.id: chunk for chunk in await self.get(part)}
            texts.add(found.values())
            for chunk_id in part:
                chunk = found.get(chunk_id)
                if chunk is None:
                    unreadable += 1
                elif chunk.content_hash != hashes[chunk_id]:
                    differing += 1
                elif chunk.url not in pages:
                    orphaned += 1
        texts.finish()
        for count, what in (
            (unreadable, "chunks listed by chunk_hashes() that get() does not return"),
            (differing, "chunks whose content_hash differs between get() and chunk_hashes()"),
            (orphaned, "chunks whose page is missing from urls()"),
        ):
            if count:
                problems.append(f"{what}: {count}")
        if texts.problem:
            problems.append(texts.problem)
        checked = ["chunks readable", "counts"]
        if texts.checked_line:
            checked.append(texts.checked_line)
        return StoreCheck(
            f"{self.name or type(self).__name__} store",
            chunks=len(hashes),
            vectors=None,
            checked=tuple(checked),
            problems=tuple(problems),
        )
