"""Retrieval quality per configuration: page-level recall@5 and MRR on real documentation.

The Python 3.11 documentation (Debian's ``python3.11-doc``: 530 HTML pages) is served by
the standard library's HTTP server and crawled like any site; the bundled sample site is
read from its folder. Each configuration is then asked the question sets in
``examples/eval`` (the Python docs' tuning split and its held-out split, which no setting
was tuned on, and the sample site's set):

* ``offline hybrid``  — the default: hashing embedder + BM25, fused by page
* ``offline keyword`` — BM25 only (``SITECHAT_RETRIEVAL__MODE=keyword``)
* ``offline dense``   — hashing embedder only (``mode=dense``)
* ``static hybrid`` / ``static dense`` — the ``static`` embedder (a token table distilled
  from all-MiniLM-L6-v2, numpy only) + BM25, and alone
* ``local hybrid`` / ``local dense`` — all-MiniLM-L6-v2 via the ``local`` provider
  (with ``--local``; embedding the docs takes 10-20 minutes on 2 CPU cores)

Usage: python tests/benchmarks/bench_retrieval_quality.py [--local] [--keep DIR] [-k 5]
[--only offline,static]
``--keep DIR`` stores the indexes there and reuses them on the next run.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import shutil
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from functools import partial
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from langchain_core.embeddings import Embeddings

from sitechat.config import RetrievalSettings, Settings
from sitechat.embeddings.hashing import HashingEmbeddings
from sitechat.embeddings.static import StaticEmbeddings
from sitechat.evaluation import EvalReport, evaluate, load_questions
from sitechat.factories import open_store
from sitechat.ingest.crawl import CrawlOptions
from sitechat.ingest.pipeline import ingest_sources
from sitechat.retrieval.hybrid import HybridRetriever

ROOT = Path(__file__).resolve().parents[2]
DOCS = Path("/usr/share/doc/python3.11/html")
SAMPLE_SITE = ROOT / "examples" / "sample_site"
QUESTIONS = ROOT / "examples" / "eval"


class _QuietHandler(SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        """No access log on the console."""


@contextmanager
def served(directory: Path) -> Iterator[str]:
    """``directory`` on a free port of 127.0.0.1, as ``python -m http.server`` serves it."""
    handler = partial(_QuietHandler, directory=str(directory))
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/"
    finally:
        server.shutdown()
        server.server_close()


def local_embeddings(threads: int) -> Embeddings:
    from sitechat.embeddings.local import LocalEmbeddings

    return LocalEmbeddings(threads=threads)


async def build_index(
    index: Path, source: str, embeddings: Embeddings, *, crawl_host: str | None = None
) -> float:
    """Ingest ``source`` into ``index`` (skipped if it exists); returns the seconds taken."""
    if (index / "manifest.json").exists():
        return 0.0
    settings = Settings.load(env_file=None, index=str(index))
    settings = settings.model_copy(
        update={"ingest": settings.ingest.model_copy(update={"max_pages": 5000})}
    )
    options = None
    if crawl_host is not None:
        options = CrawlOptions(trusted_hosts=(crawl_host,), max_pages=5000, concurrency=8)
    started = time.perf_counter()
    store, embeddings = await open_store(settings, embeddings, create=True)
    try:
        await ingest_sources([source], store, embeddings, settings, crawl_options=options)
    finally:
        await store.aclose()
    return time.perf_counter() - started


async def measure(
    index: Path, embeddings: Embeddings, mode: str, question_file: Path, base: str, k: int
) -> EvalReport:
    settings = Settings.load(env_file=None, index=str(index))
    store, embeddings = await open_store(settings, embeddings)
    try:
        retriever = HybridRetriever(store, embeddings, RetrievalSettings(mode=mode))  # type: ignore[arg-type]
        return await evaluate(load_questions(question_file, base_url=base), retriever, k)
    finally:
        await store.aclose()


async def run(args: argparse.Namespace, workdir: Path) -> list[dict[str, Any]]:
    if not (DOCS / "index.html").is_file():
        sys.exit("needs Debian's python3.11-doc package: apt-get install python3.11-doc")
    embedders: dict[str, Any] = {"offline": HashingEmbeddings, "static": StaticEmbeddings}
    if args.local:
        embedders["local"] = partial(local_embeddings, args.threads)
    if args.only:
        embedders = {name: embedders[name] for name in args.only.split(",") if name in embedders}
    rows: list[dict[str, Any]] = []
    with served(DOCS) as docs_url:
        host = docs_url.removeprefix("http://").rstrip("/")
        for name, make in embedders.items():
            docs_index = workdir / f"python-docs-{name}"
            sample_index = workdir / f"sample-site-{name}"
            base_file = docs_index.parent / f"python-docs-{name}.base"
            embeddings = make()
            seconds = await build_index(
                docs_index, docs_url + "index.html", embeddings, crawl_host=host
            )
            if seconds:
                base_file.write_text(docs_url)
            docs_base = base_file.read_text().strip()
            await build_index(sample_index, str(SAMPLE_SITE), embeddings)
            modes = ["hybrid", "keyword", "dense"] if name == "offline" else ["hybrid", "dense"]
            for mode in modes:
                row: dict[str, Any] = {"config": f"{name} {mode}", "ingest_s": round(seconds, 1)}
                for split, file, index, base in (
                    ("tuning", QUESTIONS / "python-docs-dev.jsonl", docs_index, docs_base),
                    ("held-out", QUESTIONS / "python-docs-heldout.jsonl", docs_index, docs_base),
                    (
                        "sample",
                        QUESTIONS / "sample-site.jsonl",
                        sample_index,
                        SAMPLE_SITE.resolve().as_uri() + "/",
                    ),
                ):
                    report = await measure(index, embeddings, mode, file, base, args.k)
                    row[split] = {
                        "recall": round(report.recall, 3),
                        "mrr": round(report.mrr, 3),
                        "n": report.total,
                        "median_ms": round(report.median_ms, 1),
                    }
                    if args.misses and split != "held-out":
                        print(f"--- {row['config']} / {split}\n{report.format()}", file=sys.stderr)
                rows.append(row)
                print(json.dumps(row), file=sys.stderr, flush=True)
    return rows


def print_table(rows: list[dict[str, Any]], k: int) -> None:
    print(f"\nPage-level recall@{k} / MRR (median retrieval ms)")
    print(f"{'configuration':<17} {'tuning':>21} {'held-out':>21} {'sample site':>21}")
    for row in rows:
        cells = [
            f"{row[s]['recall']:.3f} / {row[s]['mrr']:.3f} ({row[s]['median_ms']:>4})"
            for s in ("tuning", "held-out", "sample")
        ]
        print(f"{row['config']:<17} " + " ".join(f"{c:>21}" for c in cells))
    counts = rows[0]
    print(
        f"questions: tuning {counts['tuning']['n']}, held-out {counts['held-out']['n']}, "
        f"sample {counts['sample']['n']}; ingest seconds: "
        + ", ".join(f"{r['config'].split()[0]} {r['ingest_s']}" for r in rows if r["ingest_s"])
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--local", action="store_true", help="also measure MiniLM (slow)")
    parser.add_argument("--keep", metavar="DIR", help="keep (and reuse) the indexes here")
    parser.add_argument("-k", type=int, default=5)
    parser.add_argument("--threads", type=int, default=2, help="torch threads for --local")
    parser.add_argument("--misses", action="store_true", help="print tuning/sample misses")
    parser.add_argument("--only", help="comma-separated embedders to run (offline,static,local)")
    args = parser.parse_args()
    if args.keep:
        workdir = Path(args.keep)
        workdir.mkdir(parents=True, exist_ok=True)
        rows = asyncio.run(run(args, workdir))
    else:
        temporary = Path(tempfile.mkdtemp(prefix="sitechat-quality-"))
        try:
            rows = asyncio.run(run(args, temporary))
        finally:
            shutil.rmtree(temporary, ignore_errors=True)
    print_table(rows, args.k)


if __name__ == "__main__":
    main()
