"""FAISS store vs raw FAISS: search latency and memory at 10k, 100k and (optionally) 1M chunks.

For each size the script fills a real ``FaissVectorStore`` (SQLite rows, payload file and
all) with the same synthetic 384-dimensional vectors, persists it, reopens it, and compares:

* **latency** — ``await store.search(vector, k)`` (checking the query list, the vector
  search, reading the k chunks back, building complete ``SearchHit``s) against
  ``index.search`` on the very index object the store loaded from its file, so both
  search the same graph with the same parameters (exact ``IndexFlatIP`` below the HNSW
  threshold, ``IndexHNSWFlat`` above). Both run one query at a time on one thread, as a
  chat request does, in alternating blocks so both see the same load on a shared host
  (see ``time_interleaved``). The store's own vector step (no chunk reading) is shown
  too, to tell FAISS-wrapper cost from row cost.
* **memory** — resident memory added by opening the store and searching, against reading
  the raw index and searching, each measured in a fresh process (Linux ``/proc``).

Vectors are synthetic but shaped like text embeddings (a low-dimensional latent mixture
projected to 384 dimensions, plus noise), so HNSW behaves as it does on real data.
Recall@10 of the store against exact search is printed for the approximate sizes.

Usage: python tests/benchmarks/bench_store.py [--sizes 10000,100000] [--million]
       [--queries 2000] [--k 10]
The 1M step takes 10-15 minutes (building the graph and 1M SQLite rows) and ~4 GB RAM.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import faiss
import numpy as np

from sitechat.models import Chunk
from sitechat.vectorstores.base import EmbedderInfo
from sitechat.vectorstores.faiss import FaissConfig, FaissVectorStore

DIMENSION = 384
INFO = EmbedderInfo("bench:synthetic", DIMENSION)
BATCH = 20_000
BLOCK = 50


def synthetic_vectors(count: int, seed: int) -> np.ndarray:
    """Unit vectors with text-embedding-like structure: clustered, low intrinsic dimension."""
    rng = np.random.default_rng(seed)
    basis = np.random.default_rng(1234).standard_normal((48, DIMENSION)).astype(np.float32)
    centers = np.random.default_rng(99).standard_normal((256, 48)).astype(np.float32)
    out = np.empty((count, DIMENSION), dtype=np.float32)
    for start in range(0, count, 100_000):
        n = min(100_000, count - start)
        latent = centers[rng.integers(0, len(centers), n)] + 0.7 * rng.standard_normal(
            (n, 48), dtype=np.float32
        )
        rows = latent @ basis + 0.3 * rng.standard_normal((n, DIMENSION), dtype=np.float32)
        rows /= np.linalg.norm(rows, axis=1, keepdims=True)
        out[start : start + n] = rows
    return out


def synthetic_chunks(start: int, count: int) -> list[Chunk]:
    return [
        Chunk(
            id=f"chunk-{i}",
            url=f"https://docs.example.com/page-{i // 20}",
            title=f"Page {i // 20}",
            heading_path=("Guide", f"Section {i % 20}"),
            anchor=f"section-{i % 20}",
            text=f"Synthetic passage {i} about topic {i % 997} for the store benchmark.",
            content_hash=f"{i:032x}",
        )
        for i in range(start, start + count)
    ]


def queries_for(vectors: np.ndarray, count: int) -> np.ndarray:
    rng = np.random.default_rng(7)
    picked = vectors[rng.integers(0, len(vectors), count)]
    noisy = picked + 0.05 * rng.standard_normal(picked.shape, dtype=np.float32)
    return noisy / np.linalg.norm(noisy, axis=1, keepdims=True)


async def build(directory: Path, vectors: np.ndarray) -> float:
    started = time.perf_counter()
    store = await FaissVectorStore.open_path(directory, INFO, create=True, config=FaissConfig())
    for start in range(0, len(vectors), BATCH):
        part = vectors[start : start + BATCH]
        await store.upsert(synthetic_chunks(start, len(part)), part)
    await store.aclose()
    return time.perf_counter() - started


def raw_params(index: faiss.IndexIDMap2, ef_search: int) -> faiss.SearchParameters | None:
    """The store's search parameters for a graph (its efSearch), none for exact search."""
    if not isinstance(faiss.downcast_index(index.index), faiss.IndexHNSW):
        return None
    params = faiss.SearchParametersHNSW()
    params.efSearch = ef_search
    return params


async def time_interleaved(
    directory: Path, queries: np.ndarray, k: int, ef_search: int
) -> dict[str, float | str]:
    """Median microseconds per query of raw FAISS, ``store.search`` and the store's vector
    step alone, measured in alternating blocks of ``BLOCK`` queries.

    Other work on a shared host comes and goes over seconds: timing all raw queries, then
    all store queries, lets a burst land on one side only. Alternating short blocks (each
    side leading in turn) exposes every side to the same load. A block is long enough
    that the index pages one query touched have left the CPU caches when another side
    repeats it, so no side searches warm.
    """
    store = await FaissVectorStore.open_path(directory, None)
    # The very index object the store searches (read from the file the store wrote): a
    # second copy would split the CPU caches unevenly between the sides.
    index = store._vectors.index
    params = raw_params(index, ef_search)
    threads = faiss.omp_get_max_threads()
    samples: dict[str, list[float]] = {"raw": [], "store": [], "vectors": []}

    def raw_block(rows: range, out: list[float]) -> None:
        faiss.omp_set_num_threads(1)  # raw FAISS at its best: one query, one thread
        try:
            for i in rows:
                started = time.perf_counter()
                index.search(queries[i : i + 1], k, params=params)
                out.append(time.perf_counter() - started)
        finally:
            faiss.omp_set_num_threads(threads)

    async def store_block(rows: range, out: list[float]) -> None:
        for i in rows:
            # a fresh list, as an embedder hands it over (not one made minutes earlier)
            vector = queries[i].tolist()
            started = time.perf_counter()
            await store.search(vector, k)
            out.append(time.perf_counter() - started)

    def vectors_block(rows: range, out: list[float]) -> None:
        vectors = store._vectors  # the store's vector step alone: FAISS plus its wrapper
        for i in rows:
            started = time.perf_counter()
            vectors.search(queries[i : i + 1], k)
            out.append(time.perf_counter() - started)

    try:
        warm = range(min(50, len(queries)))  # caches, page faults, branch predictors
        raw_block(warm, [])
        await store_block(warm, [])
        sides = ["raw", "store", "vectors"]
        for number, first in enumerate(range(0, len(queries), BLOCK)):
            rows = range(first, min(first + BLOCK, len(queries)))
            for side in sides[number % 3 :] + sides[: number % 3]:  # each side leads in turn
                if side == "raw":
                    raw_block(rows, samples["raw"])
                elif side == "store":
                    await store_block(rows, samples["store"])
                else:
                    vectors_block(rows, samples["vectors"])
        result: dict[str, float | str] = {
            name: statistics.median(values) * 1e6 for name, values in samples.items()
        }
        result["kind"] = store.vector_index
        return result
    finally:
        await store.aclose()


async def recall_at_k(directory: Path, vectors: np.ndarray, queries: np.ndarray, k: int) -> float:
    exact = faiss.IndexFlatIP(DIMENSION)
    exact.add(vectors)
    _, truth = exact.search(queries, k)
    store = await FaissVectorStore.open_path(directory, None)
    try:
        found = 0
        for i, vector in enumerate(queries.tolist()):
            hits = await store.search(vector, k)
            ids = {int(h.chunk.id.split("-")[1]) for h in hits}
            found += len(ids & set(truth[i].tolist()))
        return found / (k * len(queries))
    finally:
        await store.aclose()


_MEMORY_CHILD = """
import asyncio, json, sys
import numpy as np

def rss():
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    return 0

mode, directory, k = sys.argv[1], sys.argv[2], int(sys.argv[3])
import faiss
from sitechat.vectorstores.faiss import FaissVectorStore
queries = np.random.default_rng(3).standard_normal((200, 384)).astype("float32")
queries /= np.linalg.norm(queries, axis=1, keepdims=True)
before = rss()
if mode == "raw":
    import glob
    index = faiss.read_index(glob.glob(directory + "/vectors-*.faiss")[0])
    for i in range(len(queries)):
        index.search(queries[i : i + 1], k)
else:
    async def run():
        store = await FaissVectorStore.open_path(directory, None)
        for vector in queries.tolist():
            await store.search(vector, k)
        return store
    store = asyncio.run(run())
print(json.dumps({"bytes": rss() - before}))
"""


def memory_of(mode: str, directory: Path, k: int) -> int:
    result = subprocess.run(
        [sys.executable, "-c", _MEMORY_CHILD, mode, str(directory), str(k)],
        capture_output=True,
        text=True,
        check=True,
    )
    return int(json.loads(result.stdout.strip().splitlines()[-1])["bytes"])


async def run_size(size: int, args: argparse.Namespace, workdir: Path) -> dict[str, object]:
    directory = workdir / f"store-{size}"
    vectors = synthetic_vectors(size, seed=size)
    queries = queries_for(vectors, args.queries)
    build_seconds = await build(directory, vectors)
    timings = await time_interleaved(directory, queries, args.k, FaissConfig().hnsw_ef_search)
    raw_us, store_us = float(timings["raw"]), float(timings["store"])
    vectors_us, kind = float(timings["vectors"]), str(timings["kind"])
    recall = await recall_at_k(directory, vectors, queries[:200], args.k) if kind == "hnsw" else 1.0
    store_bytes = memory_of("store", directory, args.k)
    raw_bytes = memory_of("raw", directory, args.k)
    shutil.rmtree(directory, ignore_errors=True)
    return {
        "size": size,
        "index": kind,
        "build_s": round(build_seconds, 1),
        "raw_us": round(raw_us, 1),
        "store_us": round(store_us, 1),
        "store_vectors_us": round(vectors_us, 1),
        "latency_ratio": round(store_us / raw_us, 2),
        "recall_at_k": round(recall, 3),
        "raw_mb": round(raw_bytes / 2**20, 1),
        "store_mb": round(store_bytes / 2**20, 1),
        "memory_ratio": round(store_bytes / max(raw_bytes, 1), 2),
    }


def print_table(rows: list[dict[str, object]], k: int) -> None:
    print(f"\nFAISS store vs raw FAISS, dim {DIMENSION}, k={k}, one query at a time, 1 thread")
    header = (
        f"{'size':>9} {'index':>5} {'raw µs':>8} {'store µs':>9} {'(vectors)':>9} "
        f"{'ratio':>6} {'recall':>6} {'raw MB':>8} {'store MB':>9} {'ratio':>6} {'build s':>8}"
    )
    print(header)
    for r in rows:
        print(
            f"{r['size']:>9,} {r['index']:>5} {r['raw_us']:>8} {r['store_us']:>9} "
            f"{r['store_vectors_us']:>9} {r['latency_ratio']:>5}x {r['recall_at_k']:>6} "
            f"{r['raw_mb']:>8} {r['store_mb']:>9} {r['memory_ratio']:>5}x {r['build_s']:>8}"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="10000,100000", help="comma-separated store sizes")
    parser.add_argument("--million", action="store_true", help="add the 1,000,000 step")
    parser.add_argument("--queries", type=int, default=2000)
    parser.add_argument("--k", type=int, default=10)
    parser.add_argument("--json", action="store_true", help="also print the rows as JSON")
    args = parser.parse_args()
    sizes = [int(s) for s in args.sizes.split(",") if s]
    if args.million:
        sizes.append(1_000_000)
    rows = []
    with tempfile.TemporaryDirectory(prefix="sitechat-bench-") as tmp:
        for size in sizes:
            print(f"size {size:,}: building…", file=sys.stderr, flush=True)
            rows.append(asyncio.run(run_size(size, args, Path(tmp))))
            print(f"size {size:,}: {rows[-1]}", file=sys.stderr, flush=True)
    print_table(rows, args.k)
    if args.json:
        print(json.dumps(rows, indent=2))


if __name__ == "__main__":
    main()
