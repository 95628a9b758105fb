"""The vector store half of the conformance kit (see :mod:`sitechat.testing.conformance`)."""

from __future__ import annotations

import asyncio
import dataclasses
import math
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import ClassVar

import pytest
import pytest_asyncio

from sitechat.errors import EmbedderMismatchError, IndexNotFoundError, InvalidInputError
from sitechat.ingest.chunk import chunk_page
from sitechat.models import Chunk, Page, Section, content_hash
from sitechat.vectorstores.base import EmbedderInfo, VectorStore

__all__ = ["OpenStore", "VectorStoreConformance", "basis_vector", "conformance_chunks"]

OpenStore = Callable[..., Awaitable[VectorStore]]
"""``await open_store(embedder, create=...)``: the fixture a store's test class provides."""

CONFORMANCE_EMBEDDER = EmbedderInfo("sitechat-conformance:v1", 16)
INSTALL_URL = "https://docs.example.com/install"  # the page with two chunks

# (id, url, title, headings, text, metadata): each chunk gets its own basis vector, so the
# nearest neighbour of every query is known exactly whatever the store's index
_ROWS: tuple[tuple[str, str, str, tuple[str, ...], str, dict[str, str]], ...] = (
    (
        "install-linux",
        "https://docs.example.com/install",
        "Installation",
        ("Install", "Linux"),
        "Install the app on Linux with the package manager.",
        {"lang": "en", "kind": "guide"},
    ),
    (
        "install-windows",
        "https://docs.example.com/install",
        "Installation",
        ("Install", "Windows"),
        "On Windows run the installer and follow the wizard.",
        {"lang": "en", "kind": "guide"},
    ),
    (
        "config",
        "https://docs.example.com/config",
        "Configuration",
        ("Configure",),
        "Set the log level with an environment variable.",
        {"lang": "en", "kind": "reference"},
    ),
    (
        "zebra",
        "https://docs.example.com/animals",
        "Animals",
        ("Stripes",),
        "The zebra has black and white stripes.",
        {"lang": "en", "kind": "misc"},
    ),
    (
        "wetter",
        "https://docs.example.com/de/wetter",
        "Wetter",
        ("Berlin",),
        "Das Wetter in Berlin ist heute kalt und grau.",
        {"lang": "de", "kind": "misc"},
    ),
    (
        "unicode",
        "https://docs.example.com/ünïcode?q=1&x=ü",
        "Ünïcode «titre» 日本語",
        ("Über", "Ça va"),
        "Texte accentué, emoji 🦓 and CJK 日本語のテキスト.",
        {},
    ),
)


def conformance_chunks() -> list[Chunk]:
    """The small corpus the store tests use (six chunks on five pages)."""
    return [
        Chunk(
            id=chunk_id,
            url=url,
            title=title,
            heading_path=headings,
            anchor=f"{chunk_id}-anchor" if metadata else None,
            text=text,
            content_hash=content_hash(text),
            page_hash=content_hash(url),
            metadata=metadata,
        )
        for chunk_id, url, title, headings, text, metadata in _ROWS
    ]


def basis_vector(position: int, dimension: int, *, noise: float = 0.0) -> list[float]:
    """The unit vector along axis ``position``, nudged toward the next axis by ``noise``."""
    vector = [0.0] * dimension
    vector[position % dimension] = 1.0
    vector[(position + 1) % dimension] += noise
    return vector


def _same_chunk(actual: Chunk, expected: Chunk) -> None:
    assert actual.id == expected.id
    assert actual.url == expected.url
    assert actual.title == expected.title
    assert tuple(actual.heading_path) == tuple(expected.heading_path)
    assert actual.anchor == expected.anchor
    assert actual.text == expected.text
    assert actual.content_hash == expected.content_hash
    assert actual.page_hash == expected.page_hash
    assert dict(actual.metadata) == dict(expected.metadata)


class VectorStoreConformance:
    """The :class:`~sitechat.vectorstores.base.VectorStore` contract, as tests.

    Subclass it in a test module (``class TestMyStore(VectorStoreConformance)``) and
    provide one fixture, ``open_store``, returning an async callable that opens *the same*
    store location every time it is called within a test::

        @pytest.fixture
        def open_store(self, tmp_path):
            async def open_store(embedder, *, create):
                return await MyStore.open_path(tmp_path / "index", embedder, create=create)
            return open_store

    Switch off what the store does not do; those tests then skip with the reason:
    ``supports_keyword_search`` (default: the store class's own attribute),
    ``supports_metadata_filter``, ``persists_across_reopen``, ``validates_dimension``,
    ``reports_page_sizes`` (default None: the test skips if ``page_sizes`` returns None;
    True makes that a failure).
    """

    embedder_info: ClassVar[EmbedderInfo] = CONFORMANCE_EMBEDDER
    supports_keyword_search: ClassVar[bool | None] = None
    supports_metadata_filter: ClassVar[bool] = True
    persists_across_reopen: ClassVar[bool] = True
    validates_dimension: ClassVar[bool] = True
    reports_page_sizes: ClassVar[bool | None] = None

    # ------------------------------------------------------------------ fixtures

    @pytest.fixture
    def open_store(self) -> OpenStore:
        """Override: an async callable ``(embedder, *, create) -> VectorStore``."""
        raise NotImplementedError(
            "Subclasses of VectorStoreConformance provide an 'open_store' fixture."
        )

    @pytest_asyncio.fixture
    async def store(self, open_store: OpenStore) -> AsyncIterator[VectorStore]:
        """A new, empty store for ``embedder_info``, closed after the test."""
        opened = await open_store(self.embedder_info, create=True)
        try:
            yield opened
        finally:
            await opened.aclose()

    @pytest_asyncio.fixture
    async def filled(self, store: VectorStore) -> VectorStore:
        """``store`` holding :func:`conformance_chunks`, chunk ``i`` on axis ``i``."""
        chunks = conformance_chunks()
        await store.upsert(chunks, self._vectors(len(chunks)))
        return store

    # ------------------------------------------------------------------ helpers

    def _vectors(self, count: int, *, offset: int = 0) -> list[list[float]]:
        return [basis_vector(offset + i, self.embedder_info.dimension) for i in range(count)]

    def _query(self, position: int) -> list[float]:
        return basis_vector(position, self.embedder_info.dimension, noise=0.05)

    def _require_keyword(self, store: VectorStore) -> None:
        supported = self.supports_keyword_search
        if supported is None:
            supported = type(store).supports_keyword_search
        if not supported:
            pytest.skip("this store does not support keyword search")

    def _require_filters(self) -> None:
        if not self.supports_metadata_filter:
            pytest.skip("this store does not support metadata filters")

    def _require_reopen(self) -> None:
        if not self.persists_across_reopen:
            pytest.skip("this store does not persist across reopening")

    # ------------------------------------------------------------------ identity

    @pytest.mark.asyncio
    async def test_declares_a_registry_name(self, store: VectorStore) -> None:
        """The class names itself for the registry and records the embedder it was made for."""
        assert isinstance(type(store).name, str)
        assert type(store).name
        assert store.embedder == self.embedder_info

    @pytest.mark.asyncio
    async def test_new_store_is_empty(self, store: VectorStore) -> None:
        """A new store holds nothing and finds nothing."""
        assert await store.count() == 0
        assert await store.urls() == []
        assert await store.chunk_hashes() == {}
        assert await store.get(["missing"]) == []
        assert await store.search(self._query(0), k=3) == []

    @pytest.mark.asyncio
    async def test_missing_store_is_not_found(self, open_store: OpenStore) -> None:
        """Opening a store that was never created, without ``create``, raises IndexNotFoundError."""
        with pytest.raises(IndexNotFoundError):
            await open_store(None, create=False)

    # ------------------------------------------------------------------ writes and reads

    @pytest.mark.asyncio
    async def test_upsert_then_get_round_trips_every_field(self, filled: VectorStore) -> None:
        """get() returns every field as upserted, in the order asked, skipping unknown ids."""
        chunks = conformance_chunks()
        wanted = [chunks[5].id, "missing", chunks[0].id, chunks[4].id]
        got = await filled.get(wanted)
        assert [c.id for c in got] == [chunks[5].id, chunks[0].id, chunks[4].id]
        for actual, expected in zip(got, [chunks[5], chunks[0], chunks[4]], strict=True):
            _same_chunk(actual, expected)
        assert await filled.count() == len(chunks)

    @pytest.mark.asyncio
    async def test_search_finds_the_nearest_first(self, filled: VectorStore) -> None:
        """The chunk on the query's axis comes first; scores never increase down the list."""
        chunks = conformance_chunks()
        for position, chunk in enumerate(chunks):
            hits = await filled.search(self._query(position), k=3)
            assert hits, f"no hits for the query near {chunk.id}"
            assert hits[0].chunk.id == chunk.id
            scores = [h.score for h in hits]
            assert all(math.isfinite(s) for s in scores)
            assert scores == sorted(scores, reverse=True)

    @pytest.mark.asyncio
    async def test_search_returns_at_most_k(self, filled: VectorStore) -> None:
        """``k`` bounds the hits; a ``k`` above the count returns every chunk once."""
        total = await filled.count()
        assert len(await filled.search(self._query(0), k=1)) == 1
        every = await filled.search(self._query(0), k=total + 10)
        assert len(every) == total
        assert len({h.chunk.id for h in every}) == total
        assert await filled.search(self._query(0), k=0) == []

    @pytest.mark.asyncio
    async def test_upsert_replaces_by_id(self, filled: VectorStore) -> None:
        """Upserting an existing id replaces its text and vector; the count stays the same."""
        original = conformance_chunks()[0]
        replacement = Chunk(
            id=original.id,
            url=original.url,
            title=original.title,
            heading_path=original.heading_path,
            anchor=original.anchor,
            text="Replaced text about snapcraft.",
            content_hash=content_hash("Replaced text about snapcraft."),
            page_hash=original.page_hash,
            metadata={"lang": "en", "kind": "replaced"},
        )
        before = await filled.count()
        far_axis = len(conformance_chunks()) + 2
        await filled.upsert([replacement], self._vectors(1, offset=far_axis))
        assert await filled.count() == before
        (stored,) = await filled.get([original.id])
        _same_chunk(stored, replacement)
        hits = await filled.search(self._query(far_axis), k=1)
        assert hits[0].chunk.id == original.id
        hashes = await filled.chunk_hashes(original.url)
        assert hashes[original.id] == replacement.content_hash

    @pytest.mark.asyncio
    async def test_upsert_within_one_batch_keeps_the_last(self, store: VectorStore) -> None:
        """The same id twice in one upsert leaves one chunk: the later one."""
        first, _ = conformance_chunks()[:2]
        later = Chunk(
            id=first.id,
            url=first.url,
            title="Later",
            heading_path=(),
            anchor=None,
            text="later",
            content_hash=content_hash("later"),
        )
        await store.upsert([first, later], self._vectors(2))
        assert await store.count() == 1
        (stored,) = await store.get([first.id])
        assert stored.title == "Later"

    @pytest.mark.asyncio
    async def test_upsert_rejects_a_vector_count_mismatch(self, store: VectorStore) -> None:
        """One vector per chunk is required; a mismatch stores nothing."""
        chunks = conformance_chunks()
        with pytest.raises((InvalidInputError, ValueError)):
            await store.upsert(chunks[:2], self._vectors(1))
        assert await store.count() == 0

    @pytest.mark.asyncio
    async def test_upsert_rejects_the_wrong_dimension(self, store: VectorStore) -> None:
        """Vectors of another dimension than the embedder's are refused."""
        if not self.validates_dimension:
            pytest.skip("this store does not check vector dimensions")
        wrong = [[1.0] * (self.embedder_info.dimension + 1)]
        with pytest.raises((InvalidInputError, ValueError)):
            await store.upsert(conformance_chunks()[:1], wrong)
        assert await store.count() == 0

    @pytest.mark.asyncio
    async def test_delete_by_ids_counts_only_existing(self, filled: VectorStore) -> None:
        """delete() removes chunks everywhere and returns how many existed."""
        chunks = conformance_chunks()
        total = await filled.count()
        assert await filled.delete([chunks[0].id, "missing", chunks[3].id]) == 2
        assert await filled.delete([]) == 0
        assert await filled.delete([chunks[0].id]) == 0
        assert await filled.count() == total - 2
        assert await filled.get([chunks[0].id, chunks[3].id]) == []
        hashes = await filled.chunk_hashes()
        assert chunks[0].id not in hashes
        assert chunks[3].id not in hashes
        every = await filled.search(self._query(0), k=total)
        assert {h.chunk.id for h in every}.isdisjoint({chunks[0].id, chunks[3].id})

    @pytest.mark.asyncio
    async def test_delete_by_url_removes_the_whole_page(self, filled: VectorStore) -> None:
        """delete_by_url() removes every chunk of one page and nothing else."""
        url = INSTALL_URL
        total = await filled.count()
        assert await filled.delete_by_url(url) == 2
        assert await filled.delete_by_url(url) == 0
        assert await filled.count() == total - 2
        assert url not in await filled.urls()
        assert await filled.chunk_hashes(url) == {}
        assert len(await filled.urls()) == 4

    @pytest.mark.asyncio
    async def test_chunk_hashes_and_urls(self, filled: VectorStore) -> None:
        """chunk_hashes() maps ids to content hashes, for one page or all; urls() lists pages."""
        chunks = conformance_chunks()
        assert await filled.chunk_hashes() == {c.id: c.content_hash for c in chunks}
        url = INSTALL_URL
        assert await filled.chunk_hashes(url) == {
            c.id: c.content_hash for c in chunks if c.url == url
        }
        assert await filled.chunk_hashes("https://docs.example.com/none") == {}
        urls = await filled.urls()
        assert len(urls) == len(set(urls))
        assert sorted(urls) == sorted({c.url for c in chunks})

    @pytest.mark.asyncio
    async def test_page_sizes_count_the_chunks_of_each_page(self, filled: VectorStore) -> None:
        """page_sizes() counts the chunks of each page asked about (an unknown page or one
        naming invalid Unicode has none) and of the whole store; None: it cannot tell."""
        await filled.persist()
        config = "https://docs.example.com/config"
        asked = [INSTALL_URL, config, "https://docs.example.com/none", "https://d/\ud800"]
        sizes = await filled.page_sizes(asked)
        if sizes is None:
            assert not self.reports_page_sizes, "page_sizes() returned None"
            pytest.skip("this store does not report page sizes (optional)")
        assert dict(sizes.chunks) == {INSTALL_URL: 2, config: 1}
        assert sizes.total == len(conformance_chunks())

    @pytest.mark.asyncio
    async def test_verify_finds_a_sound_store_sound(self, filled: VectorStore) -> None:
        """verify() on a healthy store (after a delete and a persist) reports no problem and
        the right number of chunks."""
        assert await filled.delete(["zebra"]) == 1
        await filled.persist()
        check = await filled.verify()
        assert check.problems == ()
        assert check.ok
        assert check.chunks == len(conformance_chunks()) - 1
        assert check.checked, "verify() should say what it checked"
        assert check.to_dict()["ok"] is True

    @pytest.mark.asyncio
    async def test_verify_names_an_ingested_chunk_whose_text_changed(
        self, filled: VectorStore
    ) -> None:
        """verify() re-hashes the text of the chunks ingest made and names one whose text no
        longer matches its content_hash (stored so through upsert here, as a damaged row
        reads back); the kit's chunks, with ids of their own, are not faulted. A store that
        overrides verify() keeps this check by calling the base version."""
        page = Page(
            "https://docs.example.com/upgrade",
            "Upgrade",
            (
                Section(("Upgrade",), "upgrade", "Stop the app before you upgrade it."),
                Section(("Upgrade", "Rollback"), "rollback", "Reinstall the previous version."),
            ),
        )
        ingested = chunk_page(page)
        damaged = dataclasses.replace(ingested[1], text="Delete the data folder.")
        offset = len(conformance_chunks())
        await filled.upsert([ingested[0], damaged], self._vectors(2, offset=offset))
        await filled.persist()
        check = await filled.verify()
        assert check.problems == (
            f"chunks whose text does not match their content hash: 1 (e.g. id {damaged.id})",
        )
        assert not check.ok

    # ------------------------------------------------------------------ filters

    @pytest.mark.asyncio
    async def test_filter_keeps_only_matching_chunks(self, filled: VectorStore) -> None:
        """``where`` keeps chunks whose metadata equal every value, even far from the query."""
        self._require_filters()
        hits = await filled.search(self._query(0), k=10, where={"lang": "de"})
        assert [h.chunk.id for h in hits] == ["wetter"]
        both = await filled.search(self._query(0), k=10, where={"lang": "en", "kind": "guide"})
        assert {h.chunk.id for h in both} == {"install-linux", "install-windows"}
        assert await filled.search(self._query(0), k=10, where={"lang": "fr"}) == []
        assert await filled.search(self._query(0), k=10, where={"absent": "x"}) == []

    @pytest.mark.asyncio
    async def test_filter_by_url(self, filled: VectorStore) -> None:
        """The ``url`` key filters on the chunk's page; a deep link (``page#section``, as
        ``Source.url`` holds) names its page."""
        self._require_filters()
        hits = await filled.search(self._query(4), k=10, where={"url": INSTALL_URL})
        assert {h.chunk.id for h in hits} == {"install-linux", "install-windows"}
        deep = await filled.search(self._query(4), k=10, where={"url": INSTALL_URL + "#linux"})
        assert {h.chunk.id for h in deep} == {"install-linux", "install-windows"}

    @pytest.mark.asyncio
    async def test_filter_values_are_data_not_code(self, filled: VectorStore) -> None:
        """Quotes and query syntax in filter keys and values match nothing and harm nothing."""
        self._require_filters()
        total = await filled.count()
        hostile = [
            {"lang": "en' OR '1'='1"},
            {"lang": 'en"); DROP TABLE chunks; --'},
            {"lang') OR 1=1 --": "en"},
            {"lang": "%"},
            {"lang": "*"},
        ]
        for where in hostile:
            assert await filled.search(self._query(0), k=10, where=where) == []
        assert await filled.count() == total

    @pytest.mark.asyncio
    async def test_reads_naming_invalid_unicode_match_nothing(self, filled: VectorStore) -> None:
        """A lone surrogate (``"\\ud800"``) in an id, a URL, a filter or a keyword query
        names nothing a store can hold: reads and deletes match nothing, never raise."""
        bad = "page\ud800"
        total = await filled.count()
        assert await filled.get([bad]) == []
        assert await filled.chunk_hashes(bad) == {}
        assert await filled.delete([bad]) == 0
        assert await filled.delete_by_url(bad) == 0
        if self.supports_metadata_filter:
            assert await filled.search(self._query(0), k=3, where={"lang": bad}) == []
        keyword = self.supports_keyword_search
        if keyword if keyword is not None else type(filled).supports_keyword_search:
            assert isinstance(await filled.keyword_search(f"zebra {bad}", k=3), list)
        assert await filled.count() == total

    # ------------------------------------------------------------------ keyword search

    @pytest.mark.asyncio
    async def test_keyword_search_finds_the_rare_word(self, filled: VectorStore) -> None:
        """The chunk containing a distinctive word ranks first; unknown words find nothing."""
        self._require_keyword(filled)
        hits = await filled.keyword_search("zebra stripes", k=3)
        assert hits
        assert hits[0].chunk.id == "zebra"
        scores = [h.score for h in hits]
        assert scores == sorted(scores, reverse=True)
        assert await filled.keyword_search("xylophonequartz", k=3) == []
        assert await filled.keyword_search("zebra", k=0) == []

    @pytest.mark.asyncio
    async def test_keyword_search_respects_filters(self, filled: VectorStore) -> None:
        """``where`` applies to keyword search as to vector search."""
        self._require_keyword(filled)
        self._require_filters()
        assert await filled.keyword_search("zebra", k=3, where={"lang": "de"}) == []
        hits = await filled.keyword_search("install", k=5, where={"url": INSTALL_URL})
        assert {h.chunk.id for h in hits} <= {"install-linux", "install-windows"}

    @pytest.mark.asyncio
    async def test_keyword_query_syntax_is_plain_text(self, filled: VectorStore) -> None:
        """Operators, quotes and SQL in a keyword query neither raise nor harm the store."""
        self._require_keyword(filled)
        total = await filled.count()
        for query in (
            "zebra' OR 1=1; DROP TABLE chunks; --",
            '"zebra" NEAR(stripes) AND * OR -',
            "zebra & | ! ( ) : * <-> \\",
            "",
            "   ",
            "🦓 日本語",
        ):
            hits = await filled.keyword_search(query, k=3)
            assert isinstance(hits, list)
        assert await filled.count() == total

    # ------------------------------------------------------------------ concurrency

    @pytest.mark.asyncio
    async def test_concurrent_searches_agree_with_sequential(self, filled: VectorStore) -> None:
        """Many searches at once return what each returns alone."""
        positions = list(range(len(conformance_chunks()))) * 4
        alone = [[h.chunk.id for h in await filled.search(self._query(p), k=2)] for p in positions]
        together = await asyncio.gather(*(filled.search(self._query(p), k=2) for p in positions))
        assert [[h.chunk.id for h in hits] for hits in together] == alone

    # ------------------------------------------------------------------ lifecycle

    @pytest.mark.asyncio
    async def test_reopen_keeps_chunks_and_embedder(self, open_store: OpenStore) -> None:
        """After persist and close, reopening (adopting the embedder) finds the same chunks."""
        self._require_reopen()
        chunks = conformance_chunks()
        store = await open_store(self.embedder_info, create=True)
        try:
            await store.upsert(chunks, self._vectors(len(chunks)))
            await store.persist()
        finally:
            await store.aclose()
        reopened = await open_store(None, create=False)
        try:
            assert reopened.embedder == self.embedder_info
            assert await reopened.count() == len(chunks)
            hits = await reopened.search(self._query(2), k=1)
            assert hits[0].chunk.id == chunks[2].id
            (stored,) = await reopened.get([chunks[5].id])
            _same_chunk(stored, chunks[5])
        finally:
            await reopened.aclose()

    @pytest.mark.asyncio
    async def test_reopen_with_another_embedder_fails(self, open_store: OpenStore) -> None:
        """A store holding chunks of one embedder refuses another with EmbedderMismatchError.

        (An index that never stored a chunk may instead be re-created for the new one.)
        """
        self._require_reopen()
        store = await open_store(self.embedder_info, create=True)
        await store.upsert(conformance_chunks()[:1], self._vectors(1))
        await store.aclose()
        other = EmbedderInfo(self.embedder_info.name + "-other", self.embedder_info.dimension)
        with pytest.raises(EmbedderMismatchError):
            await open_store(other, create=False)
        wider = EmbedderInfo(self.embedder_info.name, self.embedder_info.dimension * 2)
        with pytest.raises(EmbedderMismatchError):
            await open_store(wider, create=True)

    @pytest.mark.asyncio
    async def test_close_twice_is_harmless(self, open_store: OpenStore) -> None:
        """aclose() persists and may be called again."""
        store = await open_store(self.embedder_info, create=True)
        await store.upsert(conformance_chunks()[:1], self._vectors(1))
        await store.aclose()
        await store.aclose()
