"""Ingest throughput on a real documentation site: sitechat vs LangChain's loader + splitter.

Serves the Python documentation from Debian's ``python3.11-doc`` package (530 pages,
50 MB of HTML) with ``python -m http.server`` in its own process, then in one run:

1. sitechat: crawl + extract + chunk + embed (offline default embedder) + index, into a
   fresh FAISS index, with the time of each phase;
2. sitechat again on the same index: a conditional re-crawl (every page answers 304);
3. LangChain: ``RecursiveUrlLoader`` (BeautifulSoup text extractor, as its docs show)
   + ``RecursiveCharacterTextSplitter``, on the same site. It neither embeds nor
   indexes, so the comparison flatters it.

Targets (issue 4): sitechat's full ingest at least 5x the pages/s of LangChain's loader +
splitter, and the whole site ingested in under 20 s.

Needs ``apt-get install python3.11-doc`` and, for the comparison,
``pip install langchain-community langchain-text-splitters beautifulsoup4`` (not sitechat
dependencies). Usage: python tests/benchmarks/bench_ingest.py [--skip-langchain]
"""

from __future__ import annotations

import argparse
import asyncio
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
import warnings
from pathlib import Path

from sitechat.config import Settings
from sitechat.embeddings.hashing import HashingEmbeddings
from sitechat.factories import open_store
from sitechat.ingest.crawl import CrawlOptions
from sitechat.ingest.pipeline import IngestSummary, ingest_sources

DOCS = Path("/usr/share/doc/python3.11/html")


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _serve(port: int) -> subprocess.Popen[bytes]:
    server = subprocess.Popen(
        [sys.executable, "-m", "http.server", "--bind", "127.0.0.1", str(port)],
        cwd=DOCS,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    for _ in range(100):
        try:
            urllib.request.urlopen(f"http://127.0.0.1:{port}/index.html", timeout=1).close()
            return server
        except OSError:
            time.sleep(0.05)
    server.kill()
    raise SystemExit("the docs server did not start")


async def _sitechat(base: str, index: Path, concurrency: int) -> tuple[IngestSummary, float]:
    settings = Settings.load(env_file=None, index=str(index))
    options = CrawlOptions(
        trusted_hosts=(base.removeprefix("http://"),), max_pages=5000, concurrency=concurrency
    )
    store, embeddings = await open_store(settings, HashingEmbeddings(), create=True)
    started = time.perf_counter()
    try:
        summary = await ingest_sources(
            [base + "/index.html"], store, embeddings, settings, crawl_options=options
        )
    finally:
        await store.aclose()
    return summary, time.perf_counter() - started


def _langchain(base: str) -> tuple[int, int, float, float]:
    warnings.filterwarnings("ignore")
    from bs4 import BeautifulSoup
    from langchain_community.document_loaders import RecursiveUrlLoader
    from langchain_text_splitters import RecursiveCharacterTextSplitter

    loader = RecursiveUrlLoader(
        base + "/index.html",
        max_depth=10,
        extractor=lambda html: BeautifulSoup(html, "html.parser").get_text(),
        prevent_outside=True,
        base_url=base,
    )
    started = time.perf_counter()
    documents = loader.load()
    loaded = time.perf_counter() - started
    splitter = RecursiveCharacterTextSplitter(chunk_size=1200, chunk_overlap=150)
    chunks = splitter.split_documents(documents)
    total = time.perf_counter() - started
    return len(documents), len(chunks), loaded, total


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--skip-langchain", action="store_true")
    parser.add_argument("--concurrency", type=int, default=8)
    args = parser.parse_args()
    if not (DOCS / "index.html").is_file():
        raise SystemExit("needs Debian's python3.11-doc: apt-get install python3.11-doc")
    port = _free_port()
    server = _serve(port)
    base = f"http://127.0.0.1:{port}"
    try:
        with tempfile.TemporaryDirectory() as folder:
            index = Path(folder) / "index"
            first, first_s = asyncio.run(_sitechat(base, index, args.concurrency))
            again, again_s = asyncio.run(_sitechat(base, index, args.concurrency))
        pages = first.pages_added
        rate = pages / first_s
        print(
            f"sitechat full ingest: {pages} pages, {first.chunks_added} chunks in {first_s:.2f} s"
        )
        print(f"  = {rate:.1f} pages/s ({first.requests} requests, {first.pages_skipped} skipped,")
        print(f"    {first.pages_failed} failed, {first.bytes_received / 1e6:.1f} MB received)")
        phases = first.seconds
        print("  phases (s): " + ", ".join(f"{k} {v:.2f}" for k, v in phases.items()))
        print("  (fetch is the crawl's wall time; extract runs inside it, in threads, and is")
        print("   the summed extraction time; chunk, embed and index follow the crawl)")
        print(
            f"sitechat re-crawl: {again.pages_not_modified} pages unchanged (304), "
            f"{again.chunks_added} chunks embedded, in {again_s:.2f} s "
            f"= {again.pages_unchanged / again_s:.1f} pages/s"
        )
        print(f"target: whole site in under 20 s -> {'met' if first_s < 20 else 'MISSED'}")
        if args.skip_langchain:
            return
        docs, chunks, loaded, total = _langchain(base)
        lc_rate = docs / total
        print(
            f"LangChain RecursiveUrlLoader + RecursiveCharacterTextSplitter: {docs} documents, "
            f"{chunks} chunks in {total:.2f} s (loader {loaded:.2f} s) = {lc_rate:.1f} pages/s"
        )
        ratio = rate / lc_rate
        print(
            f"ratio sitechat / LangChain (pages/s): {ratio:.1f}x (target >= 5x) -> "
            f"{'met' if ratio >= 5 else 'MISSED'}"
        )
    finally:
        server.terminate()
        server.wait(timeout=10)


if __name__ == "__main__":
    main()
