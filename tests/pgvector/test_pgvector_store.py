"""The pgvector store against a real PostgreSQL 16 + pgvector started by the test session."""

from __future__ import annotations

import asyncio
import dataclasses
import traceback
import uuid
from collections.abc import AsyncIterator, Sequence
from typing import Any

import psycopg
import pytest
import pytest_asyncio
from hypothesis import given
from hypothesis import strategies as st

from sitechat.config import Settings
from sitechat.embeddings.hashing import HashingEmbeddings
from sitechat.errors import (
    ConfigurationError,
    CorruptIndexError,
    EmbedderMismatchError,
    IndexNotFoundError,
    InvalidInputError,
    SitechatError,
    StoreError,
)
from sitechat.ingest.chunk import chunk_page
from sitechat.ingest.markdown import extract_markdown
from sitechat.models import Chunk, Page, Section, content_hash
from sitechat.retrieval.hybrid import keyword_terms
from sitechat.testing.pg import TemporaryPostgres
from sitechat.vectorstores._pg_sql import collection_table_name
from sitechat.vectorstores.base import EmbedderInfo
from sitechat.vectorstores.pgvector import PgVectorConfig, PgVectorStore

EMBEDDER = HashingEmbeddings(dimension=64)
INFO = EmbedderInfo(EMBEDDER.embedder_name, EMBEDDER.dimension)


def make_chunk(
    chunk_id: str,
    text: str,
    *,
    url: str = "https://docs.example.com/page",
    title: str = "Page",
    headings: tuple[str, ...] = ("Guide",),
    metadata: dict[str, str] | None = None,
) -> Chunk:
    return Chunk(
        id=chunk_id,
        url=url,
        title=title,
        heading_path=headings,
        anchor=f"{chunk_id}-anchor",
        text=text,
        content_hash=content_hash(text),
        metadata=metadata or {},
    )


def vectors(chunks: Sequence[Chunk]) -> list[list[float]]:
    return EMBEDDER.embed_documents([f"{c.title} {c.text}" for c in chunks])


def unique(prefix: str = "docs") -> str:
    return f"{prefix}-{uuid.uuid4().hex[:10]}"


async def open_store(
    dsn: str, collection: str, embedder: EmbedderInfo | None = INFO, **config: Any
) -> PgVectorStore:
    settings = PgVectorConfig(**{"pool_max": 4, **config})
    return await PgVectorStore.open_dsn(dsn, collection, embedder, create=True, config=settings)


def sql_rows(dsn: str, statement: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
    """Run one statement as an administrator would, outside the store."""
    with psycopg.connect(dsn, autocommit=True) as conn:
        cur = conn.execute(statement.encode(), params)
        return cur.fetchall() if cur.description is not None else []


@pytest_asyncio.fixture
async def store(postgres: TemporaryPostgres) -> AsyncIterator[PgVectorStore]:
    """A fresh collection with the default settings, closed after the test."""
    opened = await open_store(postgres.dsn, unique())
    yield opened
    await opened.aclose()


def full_text(exc: BaseException) -> str:
    """Everything a log would show about an exception, chained causes included."""
    return "".join(traceback.format_exception(type(exc), exc, exc.__traceback__)) + repr(exc)


# ---------------------------------------------------------------------- settings and manifest


async def test_opens_from_settings_and_records_a_manifest(
    postgres: TemporaryPostgres, monkeypatch: pytest.MonkeyPatch
) -> None:
    """SITECHAT_PGVECTOR__* configure the store; the manifest row records embedder and count."""
    monkeypatch.setenv("SITECHAT_PGVECTOR__DSN", postgres.dsn)
    monkeypatch.setenv("SITECHAT_PGVECTOR__SCHEMA", "custom_schema")
    collection = unique("settings")
    settings = Settings.load(env_file=None, index=collection)
    store = await PgVectorStore.open(settings, INFO, create=True)
    chunks = [make_chunk("a", "alpha text"), make_chunk("b", "beta text")]
    await store.upsert(chunks, vectors(chunks))
    await store.aclose()
    assert store.table.startswith("custom_schema.chunks_settings_")
    (row,) = sql_rows(
        postgres.dsn,
        "SELECT format, format_version, embedder_name, embedder_dimension, chunk_count, "
        "table_name FROM custom_schema.collections WHERE name = %s",
        [collection],
    )
    assert row[:5] == ("sitechat-pgvector", 1, INFO.name, INFO.dimension, 2)
    reopened = await PgVectorStore.open(settings, None, create=False)
    assert reopened.embedder == INFO
    assert await reopened.count() == 2
    await reopened.aclose()


async def test_missing_dsn_names_the_variable(settings: Settings) -> None:
    """Without a DSN the error names SITECHAT_PGVECTOR__DSN."""
    with pytest.raises(ConfigurationError, match="SITECHAT_PGVECTOR__DSN"):
        await PgVectorStore.open(settings, INFO, create=True)


@given(st.text(min_size=1, max_size=200))
def test_table_names_are_safe_identifiers(collection: str) -> None:
    """Any collection name maps to a short lower-case identifier, the same every time."""
    name = collection_table_name(collection)
    assert name == collection_table_name(collection)
    assert len(name) <= 40
    assert name.startswith("chunks_")
    assert all(ch.isascii() and (ch.isalnum() or ch == "_") for ch in name)
    assert name == name.lower()


async def test_similar_collection_names_stay_apart(postgres: TemporaryPostgres) -> None:
    """'docs-v1' and 'docs_v1' slug alike but are different collections."""
    base = uuid.uuid4().hex[:8]
    first = await open_store(postgres.dsn, f"docs-{base}")
    second = await open_store(postgres.dsn, f"docs_{base}")
    try:
        chunk = [make_chunk("a", "only in the first")]
        await first.upsert(chunk, vectors(chunk))
        assert first.table != second.table
        assert await second.count() == 0
    finally:
        await first.aclose()
        await second.aclose()


# ---------------------------------------------------------------------- search behaviour


async def test_title_match_outranks_body_match(store: PgVectorStore) -> None:
    """Full-text ranking weighs the title (A) over headings (B) over the text (C)."""
    chunks = [
        make_chunk("body", "You can read about deployment options later.", title="Overview"),
        make_chunk("heading", "Steps follow.", title="Guide", headings=("Deployment",)),
        make_chunk("title", "Use the container image.", title="Deployment"),
        make_chunk("none", "Nothing relevant here.", title="Other"),
    ]
    await store.upsert(chunks, vectors(chunks))
    hits = await store.keyword_search("deployment", k=5)
    assert [h.chunk.id for h in hits] == ["title", "heading", "body"]
    assert hits[0].score > hits[1].score > hits[2].score > 0


async def test_rare_words_outweigh_common_ones(store: PgVectorStore) -> None:
    """After persist() refreshes statistics, a rare word counts more than a common one."""
    common = [
        make_chunk(f"c{i}", f"Python python tutorial number {i} about python.", title="Python")
        for i in range(60)
    ]
    rare = [make_chunk("walrus", "The walrus operator assigns inside an expression.")]
    await store.upsert(common + rare, vectors(common + rare))
    await store.persist()
    hits = await store.keyword_search("python walrus", k=3)
    assert hits[0].chunk.id == "walrus"


async def test_keyword_search_stems_and_ignores_stopwords(store: PgVectorStore) -> None:
    """English stemming meets 'installing' with 'install'; 'the' alone matches nothing."""
    chunks = [make_chunk("a", "Install the package."), make_chunk("b", "Weather report.")]
    await store.upsert(chunks, vectors(chunks))
    assert [h.chunk.id for h in await store.keyword_search("installing packages")] == ["a"]
    assert await store.keyword_search("the") == []


async def test_keyword_search_matches_a_version_whole(store: PgVectorStore) -> None:
    """The retriever's query for "2.3.1" keeps it whole, and PostgreSQL's parser matches
    the version itself first, ahead of a passage holding only its parts."""
    chunks = [
        make_chunk("parts", "Fixed login on Safari 2.3 in release 1.3.1.", title="1.3.1"),
        make_chunk("exact", "Fixed a crash in webhooks.", title="2.3.1"),
        make_chunk("none", "Weather report.", title="Other"),
    ]
    await store.upsert(chunks, vectors(chunks))
    hits = await store.keyword_search(" ".join(keyword_terms("what changed in 2.3.1")), k=3)
    assert hits[0].chunk.id == "exact", [h.chunk.id for h in hits]


async def test_hnsw_index_is_built_past_the_threshold(postgres: TemporaryPostgres) -> None:
    """persist() builds the HNSW index once the threshold is reached; results stay right."""
    store = await open_store(postgres.dsn, unique("hnsw"), hnsw_threshold=20)
    try:
        chunks = [make_chunk(f"c{i}", f"topic number {i} word{i}") for i in range(30)]
        await store.upsert(chunks[:10], vectors(chunks[:10]))
        await store.persist()
        assert not store.indexed
        before = await store.search(vectors([chunks[3]])[0], k=1)
        await store.upsert(chunks[10:], vectors(chunks[10:]))
        await store.persist()
        assert store.indexed
        indexes = sql_rows(
            postgres.dsn,
            "SELECT indexdef FROM pg_indexes WHERE indexname = %s",
            [store.table.split(".")[1] + "_hnsw"],
        )
        assert "vector_cosine_ops" in indexes[0][0]
        after = await store.search(vectors([chunks[3]])[0], k=1)
        assert before[0].chunk.id == after[0].chunk.id == "c3"
    finally:
        await store.aclose()


async def test_selective_filter_with_hnsw_still_finds_every_match(
    postgres: TemporaryPostgres,
) -> None:
    """When the index leaves a filter short of k, an exact scan finds the rest."""
    store = await open_store(postgres.dsn, unique("filter"), hnsw_threshold=0, ef_search=10)
    try:
        chunks = [
            make_chunk(
                f"c{i}",
                f"common words and a number {i}",
                metadata={"lang": "rare" if i % 50 == 0 else "en"},
            )
            for i in range(200)
        ]
        await store.upsert(chunks, vectors(chunks))
        query = vectors([make_chunk("q", "common words")])[0]
        hits = await store.search(query, k=10, where={"lang": "rare"})
        assert sorted(h.chunk.id for h in hits) == ["c0", "c100", "c150", "c50"]
        many = await store.search(query, k=60)  # more than ef_search
        assert len(many) == 60
    finally:
        await store.aclose()


async def test_concurrent_searches_share_a_small_pool(postgres: TemporaryPostgres) -> None:
    """Fifty concurrent searches through a pool of two connections all get their answer."""
    store = await open_store(postgres.dsn, unique("pool"), pool_max=2)
    try:
        chunks = [make_chunk(f"c{i}", f"subject{i} shared text") for i in range(20)]
        await store.upsert(chunks, vectors(chunks))
        queries = [vectors([chunks[i % 20]])[0] for i in range(50)]
        results = await asyncio.gather(
            *(store.search(q, k=1) for q in queries),
            *(store.keyword_search(f"subject{i}", k=1) for i in range(20)),
        )
        assert [r[0].chunk.id for r in results[:50]] == [f"c{i % 20}" for i in range(50)]
        assert [r[0].chunk.id for r in results[50:]] == [f"c{i}" for i in range(20)]
    finally:
        await store.aclose()


async def test_concurrent_upserts_of_the_same_chunks_do_not_deadlock(
    postgres: TemporaryPostgres,
) -> None:
    """Two writers upserting the same 300 chunks in opposite orders, ten times over, all
    succeed (rows given in caller order deadlocked about a third of them)."""
    first = await open_store(postgres.dsn, unique("race"))
    second = await PgVectorStore.open_dsn(
        postgres.dsn, first.collection, INFO, create=False, config=PgVectorConfig(pool_max=4)
    )
    try:
        chunks = [make_chunk(f"c{i:03}", f"text {i}") for i in range(300)]
        rows = vectors(chunks)
        backwards = (chunks[::-1], rows[::-1])
        for _ in range(10):
            await asyncio.gather(first.upsert(chunks, rows), second.upsert(*backwards))
        assert await first.count() == 300
    finally:
        await second.aclose()
        await first.aclose()


def test_a_rolled_back_write_is_not_called_a_connection_failure() -> None:
    """A deadlock is reported as a conflicting write to run again, not "could not reach"."""
    from psycopg import errors as pg_errors

    from sitechat.vectorstores._pg_db import describe_failure, parse_target

    target = parse_target("postgresql://u@db/x")
    error = describe_failure(target, pg_errors.DeadlockDetected("deadlock"))
    assert "conflicted with another one" in str(error)
    assert "Could not reach" not in str(error)


async def test_reads_survive_a_dropped_connection(postgres: TemporaryPostgres) -> None:
    """A read whose pooled connection was killed (failover, idle kill) is retried once."""
    store = await open_store(postgres.dsn, unique("retry"), pool_min=1, pool_max=1)
    try:
        chunks = [make_chunk("a", "alpha")]
        await store.upsert(chunks, vectors(chunks))
        killed = sql_rows(
            postgres.dsn,
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
            "WHERE application_name = 'sitechat' AND pid <> pg_backend_pid()",
        )
        assert killed == [(True,)]
        assert await store.count() == 1
    finally:
        await store.aclose()


# ---------------------------------------------------------------------- hostile input


async def test_injection_in_filters_and_keywords_is_inert(
    store: PgVectorStore, postgres: TemporaryPostgres
) -> None:
    """SQL and tsquery syntax in filter values and keyword queries are plain data."""
    canary = f"canary_{uuid.uuid4().hex[:8]}"
    sql_rows(postgres.dsn, f"CREATE TABLE {canary} (x int)")
    chunks = [make_chunk("a", "alpha", metadata={"lang": "en"})]
    await store.upsert(chunks, vectors(chunks))
    attack = f"en'); DROP TABLE {canary}; --"
    assert await store.search(vectors(chunks)[0], where={"lang": attack}) == []
    assert await store.search(vectors(chunks)[0], where={attack: "en"}) == []
    assert await store.search(vectors(chunks)[0], where={"url": attack}) == []
    assert await store.keyword_search(f"alpha'; DROP TABLE {canary}; --") != []
    assert await store.keyword_search("alpha & !( | :* <-> ''") != []
    assert await store.keyword_search("alpha", where={"lang": attack}) == []
    assert sql_rows(postgres.dsn, "SELECT to_regclass(%s)", [canary]) == [(canary,)]
    assert await store.count() == 1


async def test_nul_characters_are_stripped_not_fatal(store: PgVectorStore) -> None:
    """A NUL in any chunk field, metadata or query is dropped instead of failing the write."""
    nul = make_chunk(
        "nul\x00id",
        "hel\x00lo from a page with a stray NUL",
        url="https://docs.example.com/n\x00ul",
        title="Ti\x00tle",
        headings=("Gui\x00de", "Sec\x00tion"),
        metadata={"la\x00ng": "e\x00n"},
    )
    clean = make_chunk("clean", "an ordinary passage about something else")
    await store.upsert([nul, clean], vectors([nul, clean]))
    assert await store.count() == 2
    (stored,) = await store.get(["nul\x00id"])
    assert (stored.id, stored.url, stored.title) == (
        "nulid",
        "https://docs.example.com/nul",
        "Title",
    )
    assert stored.text == "hello from a page with a stray NUL"
    assert stored.heading_path == ("Guide", "Section")
    assert dict(stored.metadata) == {"lang": "en"}
    assert [h.chunk.id for h in await store.keyword_search("hel\x00lo")] == ["nulid"]
    assert [h.chunk.id for h in await store.keyword_search("hello", where={"la\x00ng": "en"})] == [
        "nulid"
    ]
    assert await store.chunk_hashes("https://docs.example.com/n\x00ul") == {
        "nulid": nul.content_hash
    }
    assert await store.delete_by_url("https://docs.example.com/n\x00ul") == 1
    assert await store.count() == 1


async def test_page_sizes_match_a_url_as_stored_without_nul(store: PgVectorStore) -> None:
    """page_sizes() reads a URL holding a NUL as the store keeps it, as every other read does,
    and answers under the URL it was asked about."""
    chunks = [
        make_chunk(f"n{i}", f"passage {i}", url="https://docs.example.com/nul") for i in range(3)
    ]
    await store.upsert(chunks, vectors(chunks))
    await store.persist()
    sizes = await store.page_sizes(
        ["https://docs.example.com/n\x00ul", "https://docs.example.com/nul"]
    )
    assert sizes is not None
    assert dict(sizes.chunks) == {
        "https://docs.example.com/n\x00ul": 3,
        "https://docs.example.com/nul": 3,
    }


async def test_page_sizes_total_is_never_below_the_pages_counted(store: PgVectorStore) -> None:
    """Pages added since the last save are counted live, and the total (recorded at that
    save) is raised to at least their sum: no page is more than the whole collection."""
    first = [
        make_chunk(f"a{i}", f"alpha passage {i}", url="https://docs.example.com/a")
        for i in range(2)
    ]
    await store.upsert(first, vectors(first))
    await store.persist()
    added = [
        make_chunk(f"b{i}", f"beta passage {i}", url="https://docs.example.com/b")
        for i in range(30)
    ]
    await store.upsert(added, vectors(added))
    sizes = await store.page_sizes(["https://docs.example.com/a", "https://docs.example.com/b"])
    assert sizes is not None
    assert dict(sizes.chunks) == {"https://docs.example.com/a": 2, "https://docs.example.com/b": 30}
    assert sizes.total >= 32
    await store.persist()
    after = await store.page_sizes(["https://docs.example.com/a"])
    assert after is not None and after.total == 32


async def test_lone_surrogate_is_invalid_input_naming_the_chunk(store: PgVectorStore) -> None:
    """A lone surrogate is an InvalidInputError naming the chunk; nothing is written."""
    bad = dataclasses.replace(make_chunk("broken-chunk", "text"), text="text with \ud800 inside")
    good = make_chunk("good", "fine text")
    with pytest.raises(InvalidInputError, match=r"'broken-chunk'.*surrogate"):
        await store.upsert([good, bad], vectors([good, good]))
    bad_meta = make_chunk("meta-chunk", "fine", metadata={"lang": "e\udcffn"})
    with pytest.raises(InvalidInputError, match="'meta-chunk'"):
        await store.upsert([bad_meta], vectors([good]))
    assert await store.count() == 0


# ---------------------------------------------------------------------- errors


async def test_wrong_password_is_a_store_error_without_the_password(
    postgres: TemporaryPostgres,
) -> None:
    """A refused login says so and names host and user, never the password or the DSN."""
    secret = "Wr0ng-S3cret-Pa55word"
    dsn = postgres.dsn_for(password=secret)
    with pytest.raises(StoreError) as caught:
        await PgVectorStore.open_dsn(dsn, unique(), INFO, create=True)
    message = str(caught.value)
    assert "refused the login" in message
    assert "127.0.0.1" in message
    assert secret not in full_text(caught.value)
    assert dsn not in full_text(caught.value)


async def test_unparsable_dsn_is_a_configuration_error_without_the_password() -> None:
    """A malformed DSN is refused without quoting it."""
    with pytest.raises(ConfigurationError) as caught:
        await PgVectorStore.open_dsn("host=db password=Zq9S3cr3t more port", unique(), INFO)
    assert "Zq9S3cr3t" not in str(caught.value)
    assert caught.value.__cause__ is None
    assert caught.value.__suppress_context__


async def test_unreachable_server_is_a_store_error(postgres: TemporaryPostgres) -> None:
    """Nothing listening at the port: a StoreError naming the address, quickly."""
    dsn = postgres.dsn.replace(f":{postgres.port}/", ":1/")
    config = PgVectorConfig(connect_timeout=2)
    with pytest.raises(StoreError, match="Could not reach") as caught:
        await PgVectorStore.open_dsn(dsn, unique(), INFO, create=True, config=config)
    assert postgres.password not in full_text(caught.value)


async def test_missing_collection_and_other_embedder(
    store: PgVectorStore, postgres: TemporaryPostgres
) -> None:
    """A missing collection is IndexNotFoundError; another embedder is EmbedderMismatchError."""
    dsn = postgres.dsn
    with pytest.raises(IndexNotFoundError, match="sitechat ingest") as missing:
        await PgVectorStore.open_dsn(dsn, unique("absent"), None)
    assert postgres.password not in str(missing.value)
    chunks = [make_chunk("a", "alpha")]  # an empty collection would be re-created instead
    await store.upsert(chunks, vectors(chunks))
    other = EmbedderInfo("local:all-MiniLM-L6-v2", 384)
    with pytest.raises(EmbedderMismatchError) as mismatch:
        await PgVectorStore.open_dsn(dsn, store.collection, other, create=True)
    assert INFO.name in str(mismatch.value)
    assert "all-MiniLM-L6-v2" in str(mismatch.value)


def _manifest_embedder(dsn: str, collection: str) -> tuple[Any, ...]:
    rows = sql_rows(
        dsn,
        "SELECT embedder_name, embedder_dimension FROM sitechat.collections WHERE name = %s",
        [collection],
    )
    assert len(rows) == 1
    return rows[0]


async def test_empty_collection_is_re_created_for_another_dimension(
    postgres: TemporaryPostgres,
) -> None:
    """An empty collection opened to write with a different-dimension embedder is re-created
    for it and accepts upserts of the new dimension; opening only to read still refuses."""
    dsn, name = postgres.dsn, unique()
    first = await open_store(dsn, name)  # a first ingest that stored nothing
    other = EmbedderInfo("local:all-MiniLM-L6-v2", 384)
    with pytest.raises(EmbedderMismatchError):
        await PgVectorStore.open_dsn(dsn, name, other)  # not an ingest: no DDL, no change
    store = await open_store(dsn, name, other)
    try:
        assert store.embedder == other
        assert _manifest_embedder(dsn, name) == (other.name, 384)
        chunk = make_chunk("a", "alpha words")
        await store.upsert([chunk], [[1.0] + [0.0] * 383])
        await store.persist()
        assert await store.count() == 1
        assert [h.chunk.id for h in await store.search([1.0] + [0.0] * 383, 1)] == ["a"]
        with pytest.raises(InvalidInputError):
            await store.upsert([chunk], vectors([chunk]))  # the old dimension is refused
    finally:
        await store.aclose()
    with pytest.raises(StoreError):  # a writer still holding the old table fails loudly
        await first.upsert([make_chunk("b", "beta")], vectors([make_chunk("b", "beta")]))
    await first.aclose()
    reopened = await PgVectorStore.open_dsn(dsn, name, None)
    try:
        assert reopened.embedder == other
        assert [c.id for c in await reopened.get(["a", "b"])] == ["a"]
    finally:
        await reopened.aclose()


async def test_non_empty_collection_with_another_embedder_still_raises(
    postgres: TemporaryPostgres,
) -> None:
    """A collection holding chunks refuses another embedder even when opened to write."""
    dsn, name = postgres.dsn, unique()
    store = await open_store(dsn, name)
    chunks = [make_chunk("a", "alpha")]
    await store.upsert(chunks, vectors(chunks))
    await store.aclose()
    for other in (EmbedderInfo("local:all-MiniLM-L6-v2", 384), EmbedderInfo("other:model", 64)):
        with pytest.raises(EmbedderMismatchError, match="Re-ingest into a new collection"):
            await open_store(dsn, name, other)
    assert _manifest_embedder(dsn, name) == (INFO.name, INFO.dimension)
    reopened = await open_store(dsn, name)
    try:
        assert [c.id for c in await reopened.get(["a"])] == ["a"]
    finally:
        await reopened.aclose()


async def test_re_creation_waits_for_an_uncommitted_insert_and_keeps_it(
    postgres: TemporaryPostgres,
) -> None:
    """Re-creating an empty collection waits on its table lock for a writer's open
    transaction, then sees the committed row and refuses, so the row is not lost."""
    dsn, name = postgres.dsn, unique()
    store = await open_store(dsn, name)
    table = f"sitechat.{collection_table_name(name)}"
    vector = "[" + ",".join(["1"] + ["0"] * (INFO.dimension - 1)) + "]"
    writer = await psycopg.AsyncConnection.connect(dsn)  # not autocommit: one open transaction
    try:
        await writer.execute(
            f"INSERT INTO {table} (chunk_id, url, title, heading_path, headings, body, "
            "content_hash, page_hash, embedding) "
            "VALUES ('w', 'https://docs.example.com/w', 'W', '{}', '', 'written', 'h', 'h', "
            "%s::vector)".encode(),
            [vector],
        )
        other = EmbedderInfo("local:all-MiniLM-L6-v2", 384)
        opening = asyncio.create_task(open_store(dsn, name, other))
        for _ in range(200):  # until the opener waits for the table lock
            waiting = sql_rows(
                dsn,
                "SELECT count(*) FROM pg_locks WHERE NOT granted AND relation = %s::regclass",
                [table],
            )
            if waiting[0][0] or opening.done():
                break
            await asyncio.sleep(0.05)
        assert not opening.done()
        assert waiting[0][0] == 1
        await writer.commit()
        with pytest.raises(EmbedderMismatchError):
            await opening
    finally:
        await writer.close()
    try:
        assert await store.count() == 1
        assert _manifest_embedder(dsn, name) == (INFO.name, INFO.dimension)
    finally:
        await store.aclose()


async def test_unknown_format_version_is_refused(
    store: PgVectorStore, postgres: TemporaryPostgres
) -> None:
    """A collection written by a newer format is CorruptIndexError, not misread."""
    sql_rows(
        postgres.dsn,
        "UPDATE sitechat.collections SET format_version = 99 WHERE name = %s",
        [store.collection],
    )
    with pytest.raises(CorruptIndexError, match="version 99"):
        await PgVectorStore.open_dsn(postgres.dsn, store.collection, None)


async def test_dropped_table_and_closed_store(
    store: PgVectorStore, postgres: TemporaryPostgres
) -> None:
    """A table dropped behind sitechat's back is CorruptIndexError; a closed store refuses."""
    sql_rows(postgres.dsn, f"DROP TABLE {store.table}")
    with pytest.raises(CorruptIndexError, match="re-ingest"):
        await store.count()
    await store.aclose()
    with pytest.raises(StoreError, match="closed"):
        await store.search(vectors([make_chunk("a", "alpha")])[0])


# ---------------------------------------------------------------------- permissions


async def test_read_only_user_can_search_but_not_write(
    store: PgVectorStore, postgres: TemporaryPostgres
) -> None:
    """A user with SELECT only serves chats from a collection and gets a clear write error."""
    chunks = [make_chunk("a", "alpha words")]
    await store.upsert(chunks, vectors(chunks))
    await store.persist()
    role, password = f"reader_{uuid.uuid4().hex[:8]}", "reader-Pa55"
    for statement in (
        f"CREATE ROLE {role} LOGIN PASSWORD '{password}'",
        f"GRANT USAGE ON SCHEMA sitechat TO {role}",
        f"GRANT SELECT ON ALL TABLES IN SCHEMA sitechat TO {role}",
    ):
        sql_rows(postgres.dsn, statement)
    reader_dsn = postgres.dsn_for(user=role, password=password)
    reader = await PgVectorStore.open_dsn(reader_dsn, store.collection, None)
    try:
        assert [h.chunk.id for h in await reader.keyword_search("alpha")] == ["a"]
        with pytest.raises(StoreError, match="permission") as denied:
            await reader.delete(["a"])
        assert password not in full_text(denied.value)
    finally:
        await reader.aclose()


async def test_unprivileged_writer_needs_the_extension_installed_once(
    postgres: TemporaryPostgres,
) -> None:
    """A writer with CREATE on the database cannot install pgvector, is told who can, and
    builds its collection once an administrator has."""
    database = f"rds_{uuid.uuid4().hex[:8]}"
    admin_dsn = postgres.create_database(database)
    role, password = f"writer_{uuid.uuid4().hex[:8]}", "writer-Pa55"
    sql_rows(admin_dsn, f"CREATE ROLE {role} LOGIN PASSWORD '{password}'")
    sql_rows(admin_dsn, f"GRANT CREATE ON DATABASE {database} TO {role}")
    writer_dsn = postgres.dsn_for(user=role, password=password, database=database)
    with pytest.raises(StoreError, match="rds_superuser") as refused:
        await PgVectorStore.open_dsn(writer_dsn, unique(), INFO, create=True)
    assert password not in full_text(refused.value)
    sql_rows(admin_dsn, "CREATE EXTENSION vector")
    store = await PgVectorStore.open_dsn(writer_dsn, unique(), INFO, create=True)
    try:
        chunks = [make_chunk("a", "alpha")]
        await store.upsert(chunks, vectors(chunks))
        await store.persist()
        assert await store.count() == 1
    finally:
        await store.aclose()


async def test_extension_missing_and_not_allowed(postgres: TemporaryPostgres) -> None:
    """With create_extension off, a database without pgvector gets instructions, not DDL."""
    dsn = postgres.create_database(f"noext_{uuid.uuid4().hex[:8]}")
    config = PgVectorConfig(create_extension=False)
    with pytest.raises(StoreError, match="CREATE EXTENSION vector"):
        await PgVectorStore.open_dsn(dsn, unique(), INFO, create=True, config=config)
    assert sql_rows(dsn, "SELECT count(*) FROM pg_extension WHERE extname = 'vector'") == [(0,)]


async def test_errors_are_sitechat_errors(store: PgVectorStore) -> None:
    """Every failure above derives from SitechatError, so apps catch one root."""
    assert issubclass(StoreError, SitechatError)
    assert issubclass(IndexNotFoundError, StoreError)


# ---------------------------------------------------------------------- verify


async def test_verify_names_vectors_edited_behind_the_store(
    postgres: TemporaryPostgres, store: PgVectorStore
) -> None:
    """A vector rescaled by hand (not of unit length any more) is reported with its chunk,
    and a HNSW index missing past the threshold is reported too."""
    made = [make_chunk(f"c{i}", f"text number {i}") for i in range(4)]
    await store.upsert(made, vectors(made))
    await store.persist()
    assert (await store.verify()).ok
    sql_rows(
        postgres.dsn,
        f"UPDATE {store.table} SET embedding = embedding + embedding WHERE chunk_id = 'c2'",
    )
    check = await store.verify()
    assert check.problems == ("vectors not of unit length: 1 (e.g. chunk 'c2')",)
    assert check.chunks == check.vectors == 4
    assert check.checked == ("chunks readable", "counts", "vectors", "indexes")


async def test_verify_reports_a_missing_hnsw_index(postgres: TemporaryPostgres) -> None:
    """Past hnsw_threshold the HNSW index should exist; dropped by hand, verify says so."""
    opened = await open_store(postgres.dsn, unique(), hnsw_threshold=0)
    try:
        made = [make_chunk(f"c{i}", f"text number {i}") for i in range(3)]
        await opened.upsert(made, vectors(made))
        await opened.persist()
        assert (await opened.verify()).ok and opened.indexed
        schema = opened.table.split(".")[0]
        hnsw = opened.table.split(".")[1] + "_hnsw"
        sql_rows(postgres.dsn, f'DROP INDEX "{schema}"."{hnsw}"')
        check = await opened.verify()
        assert check.problems == (
            "the HNSW index is missing at 3 chunks (searches are exact and slow); "
            "persist() builds it",
        )
    finally:
        await opened.aclose()


async def test_verify_reports_an_index_a_failed_build_left_invalid(
    postgres: TemporaryPostgres, store: PgVectorStore
) -> None:
    """An index whose concurrent build failed (PostgreSQL keeps it, invalid) is named."""
    made = [make_chunk(f"c{i}", f"text number {i}") for i in range(2)]  # one url: duplicates
    await store.upsert(made, vectors(made))
    await store.persist()
    with pytest.raises(psycopg.errors.UniqueViolation):
        sql_rows(postgres.dsn, f"CREATE UNIQUE INDEX CONCURRENTLY by_url ON {store.table} (url)")
    check = await store.verify()
    assert check.problems == ("indexes left invalid by a failed build: by_url (drop them)",)


async def test_verify_names_an_ingested_chunk_whose_text_was_edited(
    postgres: TemporaryPostgres, store: PgVectorStore
) -> None:
    """An ingested chunk's text edited in the table (its keyword vector follows, being
    generated) no longer hashes to its content_hash: verify names the chunk."""
    page = Page(
        "https://docs.example.com/setup",
        "Setup",
        tuple(Section(("Setup", f"Step {i}"), f"step-{i}", f"Step {i}: run it.") for i in range(3)),
    )
    made = chunk_page(page)
    await store.upsert(made, vectors(made))
    await store.persist()
    check = await store.verify()
    assert check.ok
    assert check.checked == (
        "chunks readable",
        "counts",
        "chunk text against content hashes",
        "vectors",
        "indexes",
    )
    sql_rows(
        postgres.dsn,
        f"UPDATE {store.table} SET body = 'edited by hand' WHERE chunk_id = %s",
        [made[1].id],
    )
    check = await store.verify()
    assert check.problems == (
        f"chunks whose text does not match their content hash: 1 (e.g. id {made[1].id})",
    )


async def test_a_stray_nul_in_an_ingested_file_verifies_sound(store: PgVectorStore) -> None:
    """A Markdown file with a stray NUL is chunked without it (PostgreSQL text cannot hold
    a NUL), so the stored text is the one its content hash was taken of."""
    page = extract_markdown("# Setup\n\nRun the\x00 installer.\n", "https://docs.example.com/s.md")
    made = chunk_page(page)
    await store.upsert(made, vectors(made))
    check = await store.verify()
    assert check.ok, check.problems
    assert "chunk text against content hashes" in check.checked
