"""The FAISS store past its HNSW threshold: switching, tombstones, rebuilds, filters, reopen.

A threshold of a few hundred vectors exercises the very code paths a million-chunk index
takes, in milliseconds.
"""

from __future__ import annotations

import asyncio
import itertools
import json
from collections.abc import AsyncIterator
from pathlib import Path

import faiss
import numpy as np
import pytest
from hypothesis import HealthCheck, given
from hypothesis import settings as hsettings
from hypothesis import strategies as st

from sitechat.config import Settings
from sitechat.errors import CorruptIndexError
from sitechat.models import Chunk
from sitechat.vectorstores import _faiss_files
from sitechat.vectorstores.base import EmbedderInfo
from sitechat.vectorstores.faiss import FaissConfig, FaissVectorStore

DIMENSION = 32
INFO = EmbedderInfo("test:random", DIMENSION)
THRESHOLD = 300
CONFIG = FaissConfig(hnsw_threshold=THRESHOLD, hnsw_m=16, hnsw_ef_construction=64)


def unit_vectors(count: int, seed: int) -> np.ndarray:
    rows = np.random.default_rng(seed).standard_normal((count, DIMENSION)).astype(np.float32)
    return rows / np.linalg.norm(rows, axis=1, keepdims=True)


def chunks(start: int, count: int, *, pages: int = 20) -> list[Chunk]:
    return [
        Chunk(
            id=f"c{i}",
            url=f"https://d/page-{i % pages}",
            title=f"Page {i % pages}",
            heading_path=("Guide",),
            anchor=None,
            text=f"passage number {i}",
            content_hash=f"h{i}",
            metadata={"parity": "even" if i % 2 == 0 else "odd"},
        )
        for i in range(start, start + count)
    ]


VECTORS = unit_vectors(1000, seed=7)
_RUNS = itertools.count()


def vectors_of(batch: list[Chunk]) -> list[list[float]]:
    return [VECTORS[int(c.id[1:]) % len(VECTORS)].tolist() for c in batch]


async def add(store: FaissVectorStore, start: int, count: int) -> list[Chunk]:
    batch = chunks(start, count)
    await store.upsert(batch, vectors_of(batch))
    return batch


async def top_id(store: FaissVectorStore, i: int, k: int = 1, **where: str) -> list[str]:
    hits = await store.search(VECTORS[i].tolist(), k, where or None)
    return [h.chunk.id for h in hits]


def vectors_file(directory: Path) -> faiss.IndexIDMap2:
    (path,) = directory.glob("vectors-*.faiss")
    index: faiss.IndexIDMap2 = faiss.read_index(str(path))
    return index


@pytest.fixture
def index_dir(tmp_path: Path) -> Path:
    return tmp_path / "index"


@pytest.fixture
async def store(index_dir: Path) -> AsyncIterator[FaissVectorStore]:
    opened = await FaissVectorStore.open_path(index_dir, INFO, create=True, config=CONFIG)
    yield opened
    await opened.aclose()


async def test_small_stores_stay_exact(store: FaissVectorStore) -> None:
    """Below the threshold the store searches exactly (flat)."""
    await add(store, 0, THRESHOLD)
    assert store.vector_index == "flat"
    assert await top_id(store, 5) == ["c5"]


async def test_crossing_the_threshold_switches_to_hnsw(
    store: FaissVectorStore, index_dir: Path
) -> None:
    """One chunk past the threshold the vectors move into a graph, and nothing is lost."""
    await add(store, 0, THRESHOLD)
    await add(store, THRESHOLD, 1)
    assert store.vector_index == "hnsw"
    assert await store.count() == THRESHOLD + 1
    found = [await top_id(store, i) for i in range(0, THRESHOLD + 1, 25)]
    assert found == [[f"c{i}"] for i in range(0, THRESHOLD + 1, 25)]
    await store.persist()
    manifest = json.loads((index_dir / "manifest.json").read_text())
    assert manifest["vector_index"] == "hnsw"
    assert isinstance(faiss.downcast_index(vectors_file(index_dir).index), faiss.IndexHNSWFlat)


async def test_an_upsert_that_crosses_the_threshold_builds_the_graph_first(
    store: FaissVectorStore,
) -> None:
    """A single big upsert past the threshold lands in a graph, every chunk searchable."""
    await add(store, 0, 2 * THRESHOLD)
    assert store.vector_index == "hnsw"
    assert [await top_id(store, i) for i in (0, 333, 599)] == [["c0"], ["c333"], ["c599"]]


async def test_deleted_chunks_never_come_back_from_the_graph(store: FaissVectorStore) -> None:
    """Deletes tombstone graph vectors: never returned, not counted, not in filters."""
    await add(store, 0, 2 * THRESHOLD)
    assert await store.delete([f"c{i}" for i in range(100)]) == 100
    assert await store.delete_by_url("https://d/page-7") == 25
    assert await store.count() == 2 * THRESHOLD - 125
    assert "c5" not in await top_id(store, 5, k=10)
    assert "c107" not in await top_id(store, 107, k=10)
    hits = await store.search(VECTORS[3].tolist(), 2 * THRESHOLD)
    returned = {h.chunk.id for h in hits}
    assert not returned & {f"c{i}" for i in range(100)}
    assert await top_id(store, 150) == ["c150"]


@pytest.mark.parametrize("where", [{}, {"parity": "even"}], ids=["all", "filtered"])
async def test_a_graph_mostly_deleted_still_returns_k_hits_before_it_is_rebuilt(
    store: FaissVectorStore, where: dict[str, str]
) -> None:
    """With 4,980 of 5,000 graph vectors deleted (not yet persisted, so not rebuilt away),
    a search still returns k of the 20 live chunks, the best one first (the graph walk
    alone came back short: its efSearch candidates were nearly all deleted)."""
    batch = chunks(0, 5000)
    rows = unit_vectors(5000, seed=11)
    await store.upsert(batch, rows.tolist())
    assert store.vector_index == "hnsw"
    await store.delete([f"c{i}" for i in range(20, 5000)])
    live = range(20) if not where else range(0, 20, 2)
    for i in live:
        hits = await store.search(rows[i].tolist(), 5, where or None)
        found = [h.chunk.id for h in hits]
        assert len(found) == 5 and found[0] == f"c{i}", found


async def test_replacing_a_chunk_in_the_graph(store: FaissVectorStore) -> None:
    """An upsert of a known id hides the old vector and finds the new one."""
    await add(store, 0, 2 * THRESHOLD)
    moved = chunks(10, 1)
    await store.upsert(moved, [VECTORS[900].tolist()])
    assert await top_id(store, 900) == ["c10"]
    assert "c10" not in await top_id(store, 10, k=5)
    assert await store.count() == 2 * THRESHOLD


async def test_tombstones_survive_a_reopen(store: FaissVectorStore, index_dir: Path) -> None:
    """Persisted with a few tombstones, the graph reopens with them still hidden."""
    await add(store, 0, 2 * THRESHOLD)
    await store.delete(["c1", "c2", "c3"])
    await store.aclose()
    assert vectors_file(index_dir).ntotal == 2 * THRESHOLD  # kept in the graph, not rebuilt
    reopened = await FaissVectorStore.open_path(index_dir, None, config=CONFIG)
    try:
        assert reopened.vector_index == "hnsw"
        assert await reopened.count() == 2 * THRESHOLD - 3
        assert "c2" not in await top_id(reopened, 2, k=10)
        assert await top_id(reopened, 4) == ["c4"]
    finally:
        await reopened.aclose()


async def test_many_tombstones_trigger_a_rebuild_on_persist(
    store: FaissVectorStore, index_dir: Path
) -> None:
    """Past the rebuild ratio, persist rewrites the graph with live vectors only."""
    await add(store, 0, 3 * THRESHOLD)
    await store.delete([f"c{i}" for i in range(0, 3 * THRESHOLD, 4)])  # a quarter
    await store.persist()
    assert vectors_file(index_dir).ntotal == await store.count() == 3 * THRESHOLD * 3 // 4
    assert store.vector_index == "hnsw"
    assert await top_id(store, 5) == ["c5"]


async def test_a_graph_shrunk_well_below_the_threshold_becomes_exact(
    store: FaissVectorStore,
) -> None:
    """Rebuilding with fewer than half the threshold left goes back to flat search."""
    await add(store, 0, 2 * THRESHOLD)
    await store.delete([f"c{i}" for i in range(100, 2 * THRESHOLD)])
    await store.persist()
    assert store.vector_index == "flat"
    assert await store.count() == 100
    assert await top_id(store, 42) == ["c42"]


async def test_a_crash_mid_persist_keeps_the_previous_graph(
    store: FaissVectorStore, index_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Deletes and a rebuild that were never committed leave the last persisted graph."""
    await add(store, 0, 2 * THRESHOLD)
    await store.persist()
    await store.delete([f"c{i}" for i in range(200)])  # enough to trigger a rebuild
    await add(store, 900, 50)

    def crash(*args: object) -> None:
        raise KeyboardInterrupt("simulated crash")

    monkeypatch.setattr(FaissVectorStore, "_commit_generation", crash)
    with pytest.raises(KeyboardInterrupt):
        await store.persist()
    monkeypatch.undo()
    store._conn.close()  # what a killed process leaves: its transaction rolled back
    store._closed = True
    reopened = await FaissVectorStore.open_path(index_dir, None, config=CONFIG)
    try:
        assert reopened.vector_index == "hnsw"
        assert await reopened.count() == 2 * THRESHOLD
        assert await top_id(reopened, 7) == ["c7"]
        assert await reopened.get(["c901"]) == []
    finally:
        await reopened.aclose()


@pytest.mark.parametrize("parity", ["even", "odd"])
async def test_filters_on_a_graph(store: FaissVectorStore, parity: str) -> None:
    """Narrow filters (brute force) and broad ones (graph with selector) both honour where."""
    await add(store, 0, 2 * THRESHOLD)
    await store.delete(["c4", "c5"])
    hits = await store.search(VECTORS[8].tolist(), 10, {"parity": parity})
    assert hits and all(h.chunk.metadata["parity"] == parity for h in hits)
    assert {"c4", "c5"}.isdisjoint(h.chunk.id for h in hits)
    if parity == "even":
        assert hits[0].chunk.id == "c8"
    page = await store.search(VECTORS[9].tolist(), 50, {"url": "https://d/page-9"})
    assert page[0].chunk.id == "c9"
    assert len(page) == 30 and all(h.chunk.url == "https://d/page-9" for h in page)
    assert page == sorted(page, key=lambda h: -h.score)


async def test_the_threshold_comes_from_settings(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """SITECHAT_FAISS__HNSW_THRESHOLD configures the store opened from settings."""
    monkeypatch.setenv("SITECHAT_FAISS__HNSW_THRESHOLD", "50")
    settings = Settings.load(env_file=None, index=str(tmp_path / "from-env"))
    store = await FaissVectorStore.open(settings, INFO, create=True)
    await add(store, 0, 51)
    assert store.vector_index == "hnsw"
    await store.aclose()


async def test_readers_keep_working_while_the_graph_is_built(store: FaissVectorStore) -> None:
    """Searches running while an upsert converts the store never fail or see half a state."""
    await add(store, 0, THRESHOLD)
    batch = chunks(THRESHOLD, 400)
    writer = asyncio.ensure_future(store.upsert(batch, vectors_of(batch)))
    rounds = 0
    while not writer.done() or rounds < 5:
        hits = await store.search(VECTORS[3].tolist(), 3)
        assert hits[0].chunk.id == "c3"
        rounds += 1
        await asyncio.sleep(0)
    await writer
    assert store.vector_index == "hnsw"
    assert await store.count() == THRESHOLD + 400


async def test_a_graph_missing_vectors_of_live_chunks_is_corrupt(
    store: FaissVectorStore, index_dir: Path
) -> None:
    """If the database lists chunks the graph has no vector for, opening says so."""
    await add(store, 0, 2 * THRESHOLD)
    await store.aclose()
    path = _faiss_files.vectors_path(index_dir, 1)
    index = vectors_file(index_dir)
    sub = faiss.downcast_index(index.index)
    ids = faiss.vector_to_array(index.id_map)
    # a graph with two unknown ids (they would be tombstones) but without live chunk c0
    clone = faiss.IndexIDMap2(faiss.IndexHNSWFlat(DIMENSION, 16, faiss.METRIC_INNER_PRODUCT))
    ids[0] = 10_000
    clone.add_with_ids(sub.reconstruct_n(0, index.ntotal), ids)
    clone.add_with_ids(unit_vectors(1, seed=1), np.array([10_001], dtype=np.int64))
    _faiss_files.write_index_file(clone, path)
    with pytest.raises(CorruptIndexError, match="disagrees with the database"):
        await FaissVectorStore.open_path(index_dir, None, config=CONFIG)


@hsettings(
    max_examples=15,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(
    st.lists(
        st.tuples(st.sampled_from(["add", "delete", "persist"]), st.integers(0, 60)),
        min_size=1,
        max_size=12,
    )
)
def test_a_graph_store_agrees_with_a_model(tmp_path: Path, steps: list[tuple[str, int]]) -> None:
    """Any mix of upserts, deletes and persists: count and results match the live set."""

    async def run() -> None:
        directory = tmp_path / f"model-{next(_RUNS)}"  # hypothesis shares tmp_path
        config = FaissConfig(hnsw_threshold=40, hnsw_m=8, rebuild_ratio=0.3)
        store = await FaissVectorStore.open_path(directory, INFO, create=True, config=config)
        live: set[str] = set()
        cursor = 0
        try:
            for action, amount in steps:
                if action == "add":
                    batch = chunks(cursor, amount + 1)
                    await store.upsert(batch, vectors_of(batch))
                    live |= {c.id for c in batch}
                    cursor += amount + 1
                elif action == "delete":
                    gone = sorted(live)[: amount // 2]
                    assert await store.delete(gone) == len(gone)
                    live -= set(gone)
                else:
                    await store.persist()
                assert await store.count() == len(live)
                hits = await store.search(VECTORS[0].tolist(), 1000)
                assert {h.chunk.id for h in hits} <= live
        finally:
            await store.aclose()
        reopened = await FaissVectorStore.open_path(directory, None, config=config)
        try:
            assert await reopened.count() == len(live)
            assert set(await reopened.chunk_hashes()) == live
        finally:
            await reopened.aclose()

    asyncio.run(run())
