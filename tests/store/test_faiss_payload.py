"""The FAISS store's fast read path: the memory-mapped payload file and cheap hit building."""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import sqlite3
import threading
from collections.abc import AsyncIterator, Sequence
from contextlib import closing
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sitechat.embeddings.hashing import HashingEmbeddings
from sitechat.errors import CorruptIndexError, InvalidInputError
from sitechat.models import Chunk, SearchHit
from sitechat.vectorstores import _faiss_payload as payloads
from sitechat.vectorstores import _faiss_sql as sql
from sitechat.vectorstores._faiss_hits import (
    fast_constructors,
    new_chunk,
    new_hit,
    query_row,
)
from sitechat.vectorstores._rows import unit_rows
from sitechat.vectorstores.base import EmbedderInfo
from sitechat.vectorstores.faiss import FaissVectorStore

EMBEDDER = HashingEmbeddings(dimension=64)
INFO = EmbedderInfo(EMBEDDER.embedder_name, EMBEDDER.dimension)


def page_chunks(page: int, count: int = 5, *, prefix: str = "c") -> list[Chunk]:
    return [
        Chunk(
            id=f"{prefix}{page}-{i}",
            url=f"https://docs.example.com/page-{page}",
            title=f"Page {page}",
            heading_path=("Guide", f"Part {i}") if i % 2 else (),
            anchor=f"part-{i}" if i % 3 else None,
            text=f"page {page} passage {i} about topic {page * 7 + i} {prefix}",
            content_hash=f"h-{prefix}{page}-{i}",
            page_hash=f"p-{page}",
            metadata={"lang": "en", "page": str(page)} if i == 1 else {},
        )
        for i in range(count)
    ]


def vectors(chunks: Sequence[Chunk]) -> list[list[float]]:
    return EMBEDDER.embed_documents([c.text for c in chunks])


async def every_chunk_by_search(store: FaissVectorStore, chunks: Sequence[Chunk]) -> None:
    """Each chunk is its own nearest neighbour, returned whole and equal to the original."""
    for chunk in chunks:
        hits = await store.search(EMBEDDER.embed_query(chunk.text), 1)
        assert hits[0].chunk == chunk
        assert type(hits[0].chunk) is Chunk and type(hits[0]) is SearchHit


def payload_files(directory: Path) -> list[str]:
    return sorted(p.name for p in directory.iterdir() if p.name.startswith("payload-"))


def meta(directory: Path) -> dict[str, str]:
    with closing(sqlite3.connect(directory / "chunks.sqlite3")) as conn:
        return dict(conn.execute("SELECT key, value FROM meta").fetchall())


@pytest.fixture
def index_dir(tmp_path: Path) -> Path:
    return tmp_path / "index"


CORPUS = [chunk for page in range(6) for chunk in page_chunks(page)]


@pytest.fixture
async def store(index_dir: Path) -> AsyncIterator[FaissVectorStore]:
    opened = await FaissVectorStore.open_path(index_dir, INFO, create=True)
    await opened.upsert(CORPUS, vectors(CORPUS))
    await opened.persist()
    yield opened
    await opened.aclose()


def no_sqlite_reads(monkeypatch: pytest.MonkeyPatch) -> None:
    def refuse(*args: object) -> object:
        raise AssertionError("a search read chunk rows from SQLite")

    monkeypatch.setattr(sql, "chunks_by_fid", refuse)


# ---------------------------------------------------------------- the fast path


async def test_persisted_hits_come_from_the_payload_equal_to_the_database(
    store: FaissVectorStore, index_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """After a reopen, searches read no chunk rows from SQLite and return equal chunks."""
    await store.aclose()
    reopened = await FaissVectorStore.open_path(index_dir, INFO)
    no_sqlite_reads(monkeypatch)
    await every_chunk_by_search(reopened, CORPUS)
    monkeypatch.undo()
    assert await reopened.get([c.id for c in CORPUS]) == CORPUS
    await reopened.aclose()


async def test_unpersisted_chunks_are_read_from_sqlite_until_persisted(
    store: FaissVectorStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    """New chunks are searchable before persist (SQLite), then from the payload."""
    fresh = page_chunks(10)
    await store.upsert(fresh, vectors(fresh))
    await every_chunk_by_search(store, fresh)
    await store.persist()
    no_sqlite_reads(monkeypatch)
    await every_chunk_by_search(store, [*CORPUS, *fresh])


async def test_keyword_hits_come_from_the_payload(
    store: FaissVectorStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Keyword search builds its hits through the same payload path."""
    no_sqlite_reads(monkeypatch)
    hits = await store.keyword_search("topic 30", 3)
    assert hits[0].chunk == CORPUS[22]


async def test_scores_are_cosines_of_the_unscaled_query(store: FaissVectorStore) -> None:
    """The query is not normalised before FAISS; scores still come out as cosines."""
    chunk = CORPUS[3]
    query = [x * 37.5 for x in EMBEDDER.embed_query(chunk.text)]
    hits = await store.search(query, 3)
    assert hits[0].chunk == chunk
    assert hits[0].score == pytest.approx(1.0, abs=1e-5)
    assert all(-1.0 - 1e-5 <= h.score <= 1.0 + 1e-5 for h in hits)


async def test_replaced_and_deleted_chunks_never_come_back(
    store: FaissVectorStore, index_dir: Path
) -> None:
    """Records of replaced or deleted chunks stay in the file but are never returned."""
    changed = dataclasses.replace(CORPUS[0], text="a completely new text", content_hash="new")
    await store.upsert([changed], vectors([changed]))
    await store.delete([CORPUS[1].id])
    await store.delete_by_url(CORPUS[5].url)
    await store.aclose()
    reopened = await FaissVectorStore.open_path(index_dir, INFO)
    kept = [c for c in CORPUS[2:] if c.url != CORPUS[5].url]
    await every_chunk_by_search(reopened, [changed, *kept])
    found = {h.chunk.id for h in await reopened.search(EMBEDDER.embed_query("page"), 100)}
    assert found == {c.id for c in [changed, *kept]}
    assert payload_files(index_dir) == ["payload-1.bin", "payload-1.ends"]  # appended
    await reopened.aclose()


async def test_chunks_the_encoding_cannot_carry_are_served_from_sqlite(
    index_dir: Path,
) -> None:
    """Control characters, an empty anchor or one empty heading round-trip through SQLite."""
    odd = [
        dataclasses.replace(CORPUS[0], id="nul", text="a\x00b nul text"),
        dataclasses.replace(CORPUS[1], id="unit", heading_path=("a\x1fb",), text="unit sep"),
        dataclasses.replace(CORPUS[2], id="anchor", anchor="", text="empty anchor here"),
        dataclasses.replace(CORPUS[3], id="heading", heading_path=("",), text="one empty"),
        dataclasses.replace(CORPUS[4], id="meta", metadata={"k\x1f": "v"}, text="odd key"),
    ]
    store = await FaissVectorStore.open_path(index_dir, INFO, create=True)
    await store.upsert(odd, vectors(odd))
    await store.aclose()
    reopened = await FaissVectorStore.open_path(index_dir, INFO)
    await every_chunk_by_search(reopened, odd)
    await reopened.aclose()


async def test_filters_still_work_on_payload_hits(store: FaissVectorStore) -> None:
    """A metadata or url filter picks fids in SQLite and hits from the payload."""
    hits = await store.search(EMBEDDER.embed_query("passage"), 10, {"lang": "en"})
    assert {h.chunk.id for h in hits} == {c.id for c in CORPUS if c.metadata}
    hits = await store.search(EMBEDDER.embed_query("passage"), 10, {"url": CORPUS[7].url})
    assert {h.chunk.url for h in hits} == {CORPUS[7].url}


# ---------------------------------------------------------------- crashes and compaction


async def test_a_crash_after_appending_leaves_the_committed_payload(
    store: FaissVectorStore, index_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Records appended but never committed are ignored on reopen and cut off on write."""
    committed = int(meta(index_dir)["payload_bytes"])
    extra = page_chunks(20)
    await store.upsert(extra, vectors(extra))

    def crash(*args: object) -> None:
        raise KeyboardInterrupt("simulated crash")

    monkeypatch.setattr(FaissVectorStore, "_commit_generation", crash)
    with pytest.raises(KeyboardInterrupt):
        await store.persist()
    monkeypatch.undo()
    store._conn.close()
    store._closed = True
    assert (index_dir / "payload-1.bin").stat().st_size > committed  # the uncommitted tail

    reopened = await FaissVectorStore.open_path(index_dir, INFO)
    assert await reopened.count() == len(CORPUS)
    await every_chunk_by_search(reopened, CORPUS)
    await reopened.upsert(extra[:2], vectors(extra[:2]))
    await reopened.aclose()
    state = meta(index_dir)
    assert (index_dir / "payload-1.bin").stat().st_size == int(state["payload_bytes"])
    reread = await FaissVectorStore.open_path(index_dir, INFO)
    await every_chunk_by_search(reread, [*CORPUS, *extra[:2]])
    await reread.aclose()


async def test_a_crash_mid_compaction_keeps_the_old_epoch(
    store: FaissVectorStore, index_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A fresh epoch written but not committed is removed; the old one stays current."""
    await store.delete([c.id for c in CORPUS[:20]])

    def crash(*args: object) -> None:
        raise KeyboardInterrupt("simulated crash")

    real_write = payloads.write_payload

    def write_then_crash(*args: object, **kwargs: object) -> payloads.Payload:
        written = real_write(*args, **kwargs)  # type: ignore[arg-type]
        assert written.state is not None and written.state.epoch == 2
        crash()
        return written

    monkeypatch.setattr(payloads, "write_payload", write_then_crash)
    with pytest.raises(KeyboardInterrupt):
        await store.persist()
    monkeypatch.undo()
    (index_dir / "payload-2.bin").write_bytes(b"half a compaction")  # as a crash leaves it
    store._conn.close()
    store._closed = True

    reopened = await FaissVectorStore.open_path(index_dir, INFO)
    assert meta(index_dir)["payload_epoch"] == "1"
    await every_chunk_by_search(reopened, CORPUS)
    await reopened.delete([c.id for c in CORPUS[:20]])
    await reopened.aclose()
    assert payload_files(index_dir) == ["payload-2.bin", "payload-2.ends"]
    assert meta(index_dir)["payload_dead"] == "0"
    final = await FaissVectorStore.open_path(index_dir, INFO)
    await every_chunk_by_search(final, CORPUS[20:])
    await final.aclose()


async def test_deleting_most_chunks_compacts_into_a_new_epoch(
    store: FaissVectorStore, index_dir: Path
) -> None:
    """Past half dead bytes a persist writes epoch 2 and removes epoch 1."""
    await store.delete([c.id for c in CORPUS[:10]])
    await store.persist()
    assert payload_files(index_dir) == ["payload-1.bin", "payload-1.ends"]
    assert int(meta(index_dir)["payload_dead"]) > 0
    await store.delete([c.id for c in CORPUS[10:20]])
    await store.persist()
    assert payload_files(index_dir) == ["payload-2.bin", "payload-2.ends"]
    await every_chunk_by_search(store, CORPUS[20:])


# ---------------------------------------------------------------- damage and absence


def _other_index_payload(directory: Path) -> None:
    """Payload files of a different index with the same layout of fids."""
    with closing(sqlite3.connect(directory / "chunks.sqlite3", isolation_level=None)) as conn:
        rows = sql.rows_between(conn, 0, 10_000, 10_000)
    other = [(row[0], "x" + str(row[1])[1:], *row[2:]) for row in rows]  # same lengths
    state = payloads.PayloadState.from_meta(meta(directory))
    assert state is not None
    payloads.remove_payload(directory, state.epoch)
    written = payloads.write_payload(
        directory,
        payloads.Payload(directory, payloads.PayloadState(state.epoch - 1, 0, 0)),
        state.fids,
        lambda first, upto, limit: [r for r in other if first <= r[0] < upto][:limit],
        0,
    )
    assert written.state is not None and written.state.size == state.size


def _short_data(directory: Path) -> None:
    path = directory / "payload-1.bin"
    path.write_bytes(path.read_bytes()[:-10])


def _short_ends(directory: Path) -> None:
    path = directory / "payload-1.ends"
    path.write_bytes(path.read_bytes()[:-16])


def _shuffled_ends(directory: Path) -> None:
    path = directory / "payload-1.ends"
    ends = np.frombuffer(path.read_bytes(), dtype="<i8").copy()
    ends[3], ends[4] = ends[4], ends[3]
    path.write_bytes(ends.tobytes())


@pytest.mark.parametrize(
    ("damage", "expected"),
    [
        (_other_index_payload, "holds 'x0-0', the database 'c0-0'"),
        (_short_data, "shorter than recorded"),
        (_short_ends, "shorter than recorded"),
        (_shuffled_ends, "out of order"),
    ],
)
async def test_a_payload_that_disagrees_with_the_database_is_refused(
    store: FaissVectorStore, index_dir: Path, damage: object, expected: str
) -> None:
    """Opening names the payload file, what is wrong and that deleting it is safe."""
    await store.aclose()
    damage(index_dir)  # type: ignore[operator]
    with pytest.raises(CorruptIndexError) as caught:
        await FaissVectorStore.open_path(index_dir, None)
    message = str(caught.value)
    assert "payload-1.bin" in message and expected in message
    assert "delete payload-1.bin and payload-1.ends" in message


async def test_a_damaged_record_is_reported_when_read(
    store: FaissVectorStore, index_dir: Path
) -> None:
    """A record whose fid tag does not match (damage past the sampled ones) is an error."""
    await store.aclose()
    with closing(sqlite3.connect(index_dir / "chunks.sqlite3")) as conn:
        (middle,) = conn.execute(
            "SELECT fid FROM chunks WHERE chunk_id = ?", (CORPUS[15].id,)
        ).fetchone()
    ends = np.frombuffer((index_dir / "payload-1.ends").read_bytes(), dtype="<i8")
    data = bytearray((index_dir / "payload-1.bin").read_bytes())
    start = int(ends[middle - 1])
    data[start : start + len(str(middle))] = b"9" * len(str(middle))
    (index_dir / "payload-1.bin").write_bytes(bytes(data))
    reopened = await FaissVectorStore.open_path(index_dir, None)
    with pytest.raises(CorruptIndexError, match=r"payload-1\.bin"):
        await reopened.search(EMBEDDER.embed_query(CORPUS[15].text), 1)
    await reopened.aclose()


async def test_missing_payload_files_fall_back_to_sqlite_then_are_rebuilt(
    store: FaissVectorStore, index_dir: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """Deleted payload files: reads use SQLite (with a warning) until a write rebuilds them."""
    await store.aclose()
    payloads.remove_payload(index_dir, 1)
    with caplog.at_level(logging.WARNING):
        reopened = await FaissVectorStore.open_path(index_dir, INFO)
    assert "payload-1.bin is missing" in caplog.text
    await every_chunk_by_search(reopened, CORPUS)
    extra = page_chunks(30)
    await reopened.upsert(extra, vectors(extra))
    await reopened.aclose()
    assert payload_files(index_dir) == ["payload-2.bin", "payload-2.ends"]
    final = await FaissVectorStore.open_path(index_dir, INFO)
    await every_chunk_by_search(final, [*CORPUS, *extra])
    await final.aclose()


async def test_an_index_from_before_the_payload_gains_one_on_its_next_write(
    store: FaissVectorStore, index_dir: Path
) -> None:
    """No payload keys in the database (an older sitechat wrote it): SQLite serves reads."""
    await store.aclose()
    payloads.remove_payload(index_dir, 1)
    with closing(sqlite3.connect(index_dir / "chunks.sqlite3", isolation_level=None)) as conn:
        conn.execute("DELETE FROM meta WHERE key LIKE 'payload_%'")
    reopened = await FaissVectorStore.open_path(index_dir, INFO)
    await every_chunk_by_search(reopened, CORPUS)
    await reopened.delete([CORPUS[0].id])
    await reopened.aclose()
    assert payload_files(index_dir) == ["payload-1.bin", "payload-1.ends"]
    final = await FaissVectorStore.open_path(index_dir, INFO)
    await every_chunk_by_search(final, CORPUS[1:])
    await final.aclose()


# ---------------------------------------------------------------- concurrency


async def test_a_reader_keeps_its_snapshot_while_a_writer_compacts(
    store: FaissVectorStore, index_dir: Path
) -> None:
    """A second store on the same directory keeps reading the epoch it mapped, even after
    the writer replaced and removed it; reopening shows the writer's state."""
    reader = await FaissVectorStore.open_path(index_dir, None)
    await store.delete([c.id for c in CORPUS[:25]])
    fresh = page_chunks(40)
    await store.upsert(fresh, vectors(fresh))
    await store.persist()
    assert payload_files(index_dir) == ["payload-2.bin", "payload-2.ends"]
    hits = await reader.search(EMBEDDER.embed_query(CORPUS[27].text), 1)
    assert hits[0].chunk == CORPUS[27]
    await reader.aclose()
    reader = await FaissVectorStore.open_path(index_dir, None)
    await every_chunk_by_search(reader, [*CORPUS[25:], *fresh])
    await reader.aclose()


async def test_searches_from_threads_while_persists_append(store: FaissVectorStore) -> None:
    """Readers on other threads always get whole, correct chunks while the payload grows."""
    errors: list[BaseException] = []
    stop = threading.Event()
    queries = [(c, EMBEDDER.embed_query(c.text)) for c in CORPUS]

    def reader() -> None:
        loop = asyncio.new_event_loop()
        try:
            while not stop.is_set():
                for chunk, query in queries:
                    hits = loop.run_until_complete(store.search(query, 1))
                    assert hits[0].chunk == chunk
        except BaseException as exc:  # handed to the test thread
            errors.append(exc)
        finally:
            loop.close()

    threads = [threading.Thread(target=reader) for _ in range(2)]
    for thread in threads:
        thread.start()
    try:
        for page in range(100, 112):
            batch = page_chunks(page, 8, prefix="w")
            await store.upsert(batch, vectors(batch))
            if page % 3 == 0:
                await store.delete([batch[0].id])
            await store.persist()
    finally:
        stop.set()
        for thread in threads:
            thread.join()
    assert not errors, errors[0]


# ---------------------------------------------------------------- encoding and builders


texts = st.text(st.characters(codec="utf-8"), max_size=40)


@settings(max_examples=150, deadline=None)
@given(
    chunk_id=texts,
    url=texts,
    title=texts,
    heading_path=st.lists(texts, max_size=3).map(tuple),
    anchor=st.none() | texts,
    text=texts,
    metadata=st.dictionaries(texts, texts, max_size=3),
)
def test_a_record_reads_back_as_the_chunk_or_defers_to_sqlite(
    tmp_path_factory: pytest.TempPathFactory,
    chunk_id: str,
    url: str,
    title: str,
    heading_path: tuple[str, ...],
    anchor: str | None,
    text: str,
    metadata: dict[str, str],
) -> None:
    """Any chunk either round-trips through the payload exactly or is left to SQLite."""
    chunk = Chunk(chunk_id, url, title, heading_path, anchor, text, "hash", "page", metadata)
    row = (7, *sql.chunk_row(7, chunk)[1:4], *sql.chunk_row(7, chunk)[5:])
    directory = tmp_path_factory.mktemp("payload")
    written = payloads.write_payload(
        directory, payloads.Payload(directory, None), 8, lambda f, u, n: [row][:n], 0
    )
    found = written.chunk(7)
    if payloads.encode_record(row) is None:
        assert found is None
    else:
        assert found == chunk
        assert repr(found) == repr(sql.read_chunk(directory, row))  # as SQLite reads it


def test_the_fast_builders_make_the_same_frozen_objects() -> None:
    """Slot-filled chunks and hits equal and print like constructed ones, and stay frozen."""
    assert fast_constructors()
    args = ("id", "u", "t", ("a", "b"), None, "text", "h", "p", {"k": "v"})
    built, made = new_chunk(*args), Chunk(*args)
    assert built == made and repr(built) == repr(made)
    assert new_hit(built, 0.5) == SearchHit(made, 0.5)
    assert new_hit(new_chunk(*args), 0.25) == SearchHit(made, 0.25)
    with pytest.raises(dataclasses.FrozenInstanceError):
        built.text = "changed"  # type: ignore[misc]
    assert dataclasses.replace(built, text="x").text == "x"


@settings(max_examples=100, deadline=None)
@given(
    st.lists(
        st.floats(min_value=-1e6, max_value=1e6, allow_nan=False, width=32),
        min_size=INFO.dimension,
        max_size=INFO.dimension,
    )
)
def test_the_query_row_ranks_like_unit_rows(vector: list[float]) -> None:
    """Row times the inverse norm is the unit row: same ranking, same cosines."""
    result = query_row(vector, INFO)
    expected = unit_rows([vector], INFO)
    if not expected.any():
        assert result is None
        return
    assert result is not None
    row, scale = result
    assert row.shape == (1, INFO.dimension) and row.dtype == np.float32
    np.testing.assert_allclose(row * scale, expected, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize(
    "vector",
    [
        [1.0] * 3,
        ["x"] * 64,
        [float("nan")] + [1.0] * 63,
        [float("inf")] + [1.0] * 63,
        [[1.0]] * 64,
    ],
)
def test_bad_queries_raise_the_stores_usual_error(vector: list[object]) -> None:
    """Whatever the fast path refuses is checked by unit_rows, with its messages."""
    with pytest.raises(InvalidInputError):
        query_row(vector, INFO)  # type: ignore[arg-type]


@given(
    st.lists(
        st.floats(min_value=-3e38, max_value=3e38, allow_nan=False, allow_infinity=False),
        min_size=INFO.dimension,
        max_size=INFO.dimension,
    )
)
@settings(max_examples=100)
def test_unit_rows_normalises_huge_but_finite_values(vector: list[float]) -> None:
    """Values near float32's limit still give a unit row (or zero), never a warning or NaN."""
    row = unit_rows([vector], INFO)[0]
    assert np.isfinite(row).all()
    norm = float(np.linalg.norm(row))
    assert norm == 0.0 or abs(norm - 1.0) < 1e-4


def test_unit_rows_refuses_values_beyond_float32() -> None:
    """A value float32 cannot hold is a clear input error, not an overflow warning."""
    with pytest.raises(InvalidInputError, match="too large for float32"):
        unit_rows([[1e300] + [0.0] * (INFO.dimension - 1)], INFO)
