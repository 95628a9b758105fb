"""Keyword search: the FAISS store's SQLite FTS5 BM25 against the bm25s library.

The FAISS store keeps its keyword index in SQLite FTS5, in the same database and the same
transaction as the chunk rows. The alternative is an in-memory BM25 library such as
``bm25s``. This script compares the two on the same passages and questions as
``bench_retrieval_quality.py`` (same sites, same question sets, and ``--keep`` shares
that script's kept indexes):

* **quality** — page-level recall@5 / MRR, keyword search alone (``mode=keyword``) and in
  the offline default's hybrid retrieval, where only the keyword side is swapped;
* **query time** — median milliseconds of one keyword search of 50 passages;
* **keeping the index current** — bm25s cannot add or remove a document, so any change
  rebuilds it from every passage's text; FTS5 updates the rows of the changed page, in
  the same commit as the rest of the store. Both are timed for re-ingesting one page;
* **memory** — what the bm25s index holds in RAM (tracemalloc), against FTS5's nothing
  beyond SQLite's page cache.

bm25s indexes one field (title, headings and text joined), English stopwords removed and
words stemmed with PyStemmer's English (Porter2) stemmer; FTS5 weighs title 4, headings 2,
text 1 with its Porter stemmer. Both get the retriever's own keyword query.

Usage: python tests/benchmarks/bench_keyword.py [--keep DIR] [--sites python-docs,rust-book,sample]
Needs: pip install bm25s PyStemmer (not dependencies of sitechat).
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import sys
import tempfile
import time
import tracemalloc
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

try:
    import bm25s
    import Stemmer
except ImportError:
    sys.exit("needs bm25s and PyStemmer: pip install bm25s PyStemmer")

from bench_retrieval_quality import QUESTIONS, Site, build_index, in_workdir, served, sites

from sitechat.config import RetrievalSettings, Settings
from sitechat.embeddings.static import StaticEmbeddings
from sitechat.evaluation import evaluate, load_questions
from sitechat.factories import open_store
from sitechat.models import Chunk, SearchHit
from sitechat.retrieval.hybrid import MIN_POOL, HybridRetriever
from sitechat.vectorstores.base import VectorStore

STEMMER = Stemmer.Stemmer("english")


class Bm25sIndex:
    """A bm25s index over a store's passages, answering ``keyword_search`` like a store."""

    def __init__(self, chunks: Sequence[Chunk]) -> None:
        self.chunks = list(chunks)
        texts = [f"{c.title}\n{' '.join(c.heading_path)}\n{c.text}" for c in self.chunks]
        tokens = bm25s.tokenize(texts, stopwords="en", stemmer=STEMMER, show_progress=False)
        self.retriever = bm25s.BM25()
        self.retriever.index(tokens, show_progress=False)
        self.seconds: list[float] = []

    async def keyword_search(
        self, query: str, k: int = 5, where: Mapping[str, str] | None = None
    ) -> list[SearchHit]:
        started = time.perf_counter()
        tokens = bm25s.tokenize(
            [query], stopwords="en", stemmer=STEMMER, show_progress=False, return_ids=False
        )
        hits: list[SearchHit] = []
        if tokens[0]:
            found, scores = self.retriever.retrieve(
                tokens, k=min(k, len(self.chunks)), show_progress=False, n_threads=0
            )
            hits = [
                SearchHit(self.chunks[int(i)], float(s))
                for i, s in zip(found[0], scores[0], strict=True)
                if s > 0
            ]
        self.seconds.append(time.perf_counter() - started)
        return hits


class TimedKeywords:
    """The store itself, its keyword searches timed."""

    def __init__(self, store: VectorStore) -> None:
        self.store = store
        self.seconds: list[float] = []

    async def keyword_search(
        self, query: str, k: int = 5, where: Mapping[str, str] | None = None
    ) -> list[SearchHit]:
        started = time.perf_counter()
        hits = await self.store.keyword_search(query, k, where)
        self.seconds.append(time.perf_counter() - started)
        return hits


class SwappedKeywords:
    """A store whose keyword side is answered by ``keywords``; everything else is ``store``."""

    def __init__(self, store: VectorStore, keywords: Bm25sIndex | TimedKeywords) -> None:
        self._store = store
        self._keywords = keywords

    def __getattr__(self, name: str) -> Any:
        return getattr(self._store, name)

    async def keyword_search(
        self, query: str, k: int = 5, where: Mapping[str, str] | None = None
    ) -> list[SearchHit]:
        return await self._keywords.keyword_search(query, k, where)


async def all_chunks(store: VectorStore) -> list[Chunk]:
    ids = sorted(await store.chunk_hashes())
    return await store.get(ids)


async def one_page_update(index: Path, chunks: Sequence[Chunk]) -> float:
    """Seconds to re-store the largest page's chunks and persist, in a copy of the index
    (the embedding is done beforehand: only the store's work is timed)."""
    page = max({c.url for c in chunks}, key=lambda url: sum(c.url == url for c in chunks))
    own = [c for c in chunks if c.url == page]
    with tempfile.TemporaryDirectory(prefix="sitechat-keyword-") as scratch:
        copy = Path(scratch) / index.name
        shutil.copytree(index, copy)
        store, embeddings = await open_store(Settings.load(env_file=None, index=str(copy)))
        try:
            vectors = embeddings.embed_documents([c.searchable_text for c in own])
            started = time.perf_counter()
            await store.upsert(own, vectors)
            await store.persist()
            return time.perf_counter() - started
        finally:
            await store.aclose()


async def measure_site(site: Site, workdir: Path) -> list[str]:
    index = workdir / f"{site.name}-static"
    embeddings = StaticEmbeddings()
    with served(site.directory) as url:
        if site.start is None:
            await build_index(
                index, str(site.directory), embeddings, site.directory.resolve().as_uri() + "/"
            )
        else:
            await build_index(
                index,
                f"{url}/{site.start}",
                embeddings,
                url + "/",
                crawl_host=url.removeprefix("http://"),
            )
    base = index.with_name(index.name + ".base").read_text().strip()
    store, embeddings = await open_store(Settings.load(env_file=None, index=str(index)))
    lines = []
    try:
        chunks = await all_chunks(store)
        started = time.perf_counter()
        bm25 = Bm25sIndex(chunks)
        build = time.perf_counter() - started
        tracemalloc.start()  # a second build, traced: tracing slows allocation down
        traced = Bm25sIndex(chunks)
        held, _ = tracemalloc.get_traced_memory()
        tracemalloc.stop()
        del traced
        update = await one_page_update(index, chunks)
        lines.append(
            f"{site.name}: {len(chunks):,} passages; one page re-stored: FTS5 (whole store "
            f"update and persist) {update * 1000:.0f} ms, bm25s rebuild {build * 1000:.0f} ms; "
            f"bm25s holds {held / 2**20:.1f} MB"
        )
        fts = TimedKeywords(store)
        for column, file in site.splits:
            questions = load_questions(QUESTIONS / file, base_url=base)
            cells = []
            for mode in ("keyword", "hybrid"):
                for name, keywords in (("fts5", fts), ("bm25s", bm25)):
                    swapped: Any = SwappedKeywords(store, keywords)
                    retriever = HybridRetriever(swapped, embeddings, RetrievalSettings(mode=mode))
                    report = await evaluate(questions, retriever)
                    cells.append(f"{name} {mode} {report.recall:.3f} / {report.mrr:.3f}")
            lines.append(f"  {column} ({len(questions)}): " + ", ".join(cells))
        lines.append(
            f"  median keyword search of {MIN_POOL}: FTS5 "
            f"{statistics.median(fts.seconds) * 1000:.2f} ms, bm25s "
            f"{statistics.median(bm25.seconds) * 1000:.2f} ms"
        )
    finally:
        await store.aclose()
    return lines


async def run(args: argparse.Namespace, workdir: Path) -> None:
    for site in sites(args):
        for line in await measure_site(site, workdir):
            print(line, flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--keep", metavar="DIR", help="keep (and reuse) the indexes here")
    parser.add_argument("--sites", help="comma-separated sites (python-docs,rust-book,sample)")
    parser.add_argument("--rust-book", metavar="DIR", help="the Rust book's HTML folder")
    args = parser.parse_args()
    in_workdir(args.keep, lambda workdir: run(args, workdir))


if __name__ == "__main__":
    main()
