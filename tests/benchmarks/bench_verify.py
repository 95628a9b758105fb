"""How long ``store.verify()`` takes on a FAISS index of 100,000 ingested chunks.

The index is filled the way an ingest fills it: synthetic pages of 20 sections are cut by
``chunk_page`` (so ids and content hashes are the chunker's, and verify re-hashes every
chunk's text), with 384-dimensional vectors shaped like text embeddings (see
``bench_store.synthetic_vectors``), HNSW past the store's threshold. Then it is opened
read-only and verified ``--runs`` times; the median, fastest and slowest run are printed.

Usage: python tests/benchmarks/bench_verify.py [--size 100000] [--words 100] [--runs 5]
       [--index DIR]
With ``--index`` the index is built there only if missing, and kept, so the same index
can be verified again (by another checkout of sitechat, say).
"""

from __future__ import annotations

import argparse
import asyncio
import random
import statistics
import tempfile
import time
from pathlib import Path

from bench_store import DIMENSION, synthetic_vectors

from sitechat.ingest.chunk import chunk_page
from sitechat.models import Chunk, Page, Section
from sitechat.vectorstores.base import EmbedderInfo
from sitechat.vectorstores.faiss import FaissVectorStore

INFO = EmbedderInfo("bench:synthetic", DIMENSION)
SECTIONS = 20
BATCH = 20_000
_WORDS = (
    "index store chunk vector search answer page section install configure server client "
    "request response token embed query filter retrieve source cite heading anchor link "
    "python module package option setting default value error retry timeout stream"
).split()


def synthetic_chunks(count: int, words: int = 100, seed: int = 3) -> list[Chunk]:
    """``count`` chunks from pages of ``SECTIONS`` sections, each of about ``words`` words
    (half to one and a half times as many; 100 words are about 700 characters)."""
    rng = random.Random(seed)
    chunks: list[Chunk] = []
    page = 0
    while len(chunks) < count:
        sections = []
        for s in range(SECTIONS):
            drawn = [rng.choice(_WORDS) for _ in range(rng.randint(words // 2, words * 3 // 2))]
            text = f"Passage {page}.{s}: " + " ".join(drawn) + "."
            sections.append(Section(("Guide", f"Part {s}"), f"part-{s}", text))
        chunks.extend(
            chunk_page(
                Page(f"https://docs.example.com/page-{page}", f"Page {page}", tuple(sections))
            )
        )
        page += 1
    return chunks[:count]


async def build(directory: Path, size: int, words: int) -> None:
    chunks = synthetic_chunks(size, words)
    vectors = synthetic_vectors(size, seed=11)
    store = await FaissVectorStore.open_path(directory, INFO, create=True)
    for start in range(0, size, BATCH):
        await store.upsert(chunks[start : start + BATCH], vectors[start : start + BATCH])
    await store.aclose()
    text = sum(len(c.text) for c in chunks)
    print(f"built {size:,} chunks ({text / size:.0f} characters of text each on average)")


async def time_verify(directory: Path, runs: int) -> None:
    seconds: list[float] = []
    for _ in range(runs):
        store = await FaissVectorStore.open_path(directory, None)
        try:
            started = time.perf_counter()
            check = await store.verify()
            seconds.append(time.perf_counter() - started)
        finally:
            await store.aclose()
    print(f"{check.store}: ok={check.ok}, {check.chunks:,} chunks, {check.vectors:,} vectors")
    print(f"checked: {', '.join(check.checked)}")
    for problem in check.problems:
        print(f"  problem: {problem}")
    print(
        f"verify: median {statistics.median(seconds):.2f} s, fastest {min(seconds):.2f} s, "
        f"slowest {max(seconds):.2f} s over {runs} runs"
    )


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=100_000)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--words", type=int, default=100, help="words per chunk, about")
    parser.add_argument("--index", type=Path, help="build here if missing, and keep it")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench-verify-") as scratch:
        directory = args.index or Path(scratch) / "index"
        if not (directory / "chunks.sqlite3").exists():
            await build(directory, args.size, args.words)
        await time_verify(directory, args.runs)


if __name__ == "__main__":
    asyncio.run(main())
