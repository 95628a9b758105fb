"""Retrieval quality per configuration: page-level recall@5 and MRR on real documentation.

Two real documentation sites are served by the standard library's HTTP server and crawled
like any site, and the bundled sample site is read from its folder:

* the Python 3.11 documentation (Debian's ``python3.11-doc``: 530 HTML pages), with a
  tuning split of questions and a held-out split that no setting was tuned on;
* *The Rust Programming Language* (the book in rustup's ``rust-docs`` component, found
  through ``rustc --print sysroot`` or given with ``--rust-book``), with held-out
  questions only: nothing was ever tuned on it. Skipped when it is not installed.
* *The Cargo Book*, *The rustc book*, *The Rust Reference* and the Edition Guide
  (installed by the same component, next to the Rust book; or given with
  ``--cargo-book`` / ``--rustc-book``), with held-out questions only, written from the
  pages alone like the Rust book's.

Question sets are in ``examples/eval``. Configurations:

* ``static hybrid`` — the offline default: the ``static`` embedder (a token table
  distilled from all-MiniLM-L6-v2, numpy only) + BM25, fused by page
* ``static dense`` — the ``static`` embedder alone
* ``hashing hybrid`` / ``hashing keyword`` / ``hashing dense`` — the lexical ``hashing``
  embedder + BM25, BM25 alone (``SITECHAT_RETRIEVAL__MODE=keyword``), the embedder alone
* ``local hybrid`` / ``local dense`` — all-MiniLM-L6-v2 via the ``local`` provider
  (with ``--local``; embedding the Python docs takes 10-25 minutes on 2 CPU cores)

The off-topic columns ask questions the site does not cover (``"expected": []``) and count
those retrieval judged not covered ("declined"), so the chat would say so instead of
answering from unrelated passages.

The "held-out" column pools the held-out questions of the three documentation sites.

A second table counts, on the sets with section labels (``*-sections.jsonl``), the
questions whose answering section came back: among the hits, and among the passages the
chat answers from (see ``tests/benchmarks/sections.py``).

Usage: python tests/benchmarks/bench_retrieval_quality.py [--local] [--keep DIR] [-k 5]
[--only static,hashing,local]
[--sites python-docs,rust-book,cargo-book,rustc-book,rust-reference,edition-guide,sample]
[--rust-book DIR] [--cargo-book DIR] [--rustc-book DIR]
``--keep DIR`` stores the indexes there and reuses them on the next run.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import shutil
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any, TypeVar

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
sys.path.insert(0, str(ROOT))  # run as a script: tests.doc_sites is in the repository

from tests.benchmarks.sections import SectionMap, measure_sections  # noqa: E402
from tests.doc_sites import (  # noqa: E402
    CARGO_BOOK,
    EDITION_GUIDE,
    RUST_BOOK,
    RUST_REFERENCE,
    RUSTC_BOOK,
    served,
)
from tests.doc_sites import PYTHON_DOCS as DOCS  # noqa: E402

SAMPLE_SITE = ROOT / "examples" / "sample_site"
T = TypeVar("T")
QUESTIONS = ROOT / "examples" / "eval"
#: The columns the pooled "held-out" figure adds up.
HELD_OUT_COLUMNS = (
    "python held-out",
    "rust held-out",
    "cargo held-out",
    "rustc held-out",
    "reference held-out",
    "editions held-out",
)


def local_embeddings(threads: int) -> Embeddings:
    from sitechat.embeddings.local import LocalEmbeddings

    return LocalEmbeddings(threads=threads)


async def build_index(
    index: Path, source: str, embeddings: Embeddings, base: str, *, crawl_host: str | None = None
) -> float:
    """Ingest ``source`` into ``index``; returns the seconds taken (0 when a kept index is
    reused). ``<index>.base`` records the base URL its pages were read under, and is
    written last: an index without it is the remains of an interrupted run, rebuilt."""
    marker = index.with_name(index.name + ".base")
    if marker.exists():
        return 0.0
    shutil.rmtree(index, ignore_errors=True)
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
    marker.write_text(base)
    return time.perf_counter() - started


async def measure(
    index: Path, embeddings: Embeddings, mode: str, question_file: Path, base: str, k: int
) -> tuple[EvalReport, float]:
    """The report of asking every question once, and the median milliseconds of asking
    them all again: a deployed chat meets its popular passages again and again, and
    caches (the re-ranker's tokens, SQLite's pages) answer the second time."""
    settings = Settings.load(env_file=None, index=str(index))
    store, embeddings = await open_store(settings, embeddings)
    try:
        retriever = HybridRetriever(store, embeddings, RetrievalSettings(mode=mode))  # type: ignore[arg-type]
        questions = load_questions(question_file, base_url=base)
        first = await evaluate(questions, retriever, k)
        again = await evaluate(questions, retriever, k)
        return first, again.median_ms
    finally:
        await store.aclose()


@dataclass(frozen=True)
class Site:
    """A site to measure: where its files are, where a crawl starts, its question sets."""

    name: str
    directory: Path
    start: str | None  # a page to crawl from over HTTP; None reads the folder itself
    splits: tuple[tuple[str, str], ...]  # (column, question file in examples/eval)
    sections: tuple[tuple[str, str], ...] = ()  # (column, its section labels)


SPLITS = (
    "python tuning",
    *HELD_OUT_COLUMNS,
    "held-out",
    "sample",
    "python off-topic",
    "sample off-topic",
)


def given_or(given: str | None, installed: Path | None) -> Path | None:
    return Path(given) if given else installed


def rust_book(given: str | None) -> Path | None:
    """The Rust book's folder: ``given``, else the one rustup installed."""
    return Path(given) if given else RUST_BOOK


def sites(args: argparse.Namespace) -> list[Site]:
    if not (DOCS / "index.html").is_file():
        sys.exit("needs Debian's python3.11-doc package: apt-get install python3.11-doc")
    found = [
        Site(
            "python-docs",
            DOCS,
            "index.html",
            (
                ("python tuning", "python-docs-dev.jsonl"),
                ("python held-out", "python-docs-heldout.jsonl"),
                ("python off-topic", "python-docs-off-topic.jsonl"),
            ),
            (
                ("python tuning", "python-docs-dev-sections.jsonl"),
                ("python held-out", "python-docs-heldout-sections.jsonl"),
            ),
        ),
        Site(
            "sample-site",
            SAMPLE_SITE,
            None,
            (("sample", "sample-site.jsonl"), ("sample off-topic", "sample-site-off-topic.jsonl")),
            (("sample", "sample-site-sections.jsonl"),),
        ),
    ]
    books = (
        ("rust-book", rust_book(args.rust_book), "rust held-out"),
        ("cargo-book", given_or(args.cargo_book, CARGO_BOOK), "cargo held-out"),
        ("rustc-book", given_or(args.rustc_book, RUSTC_BOOK), "rustc held-out"),
        ("rust-reference", RUST_REFERENCE, "reference held-out"),
        ("edition-guide", EDITION_GUIDE, "editions held-out"),
    )
    for position, (name, folder, column) in enumerate(books, start=1):
        if folder is None:
            print(
                f"{name} is not installed (rustup component add rust-docs): skipped",
                file=sys.stderr,
            )
            continue
        questions = ((column, f"{name}-heldout.jsonl"),)  # examples/eval/<site>-heldout.jsonl
        found.insert(min(position, len(found) - 1), Site(name, folder, "index.html", questions))
    if args.sites:
        wanted = {name.removesuffix("-site") for name in args.sites.split(",")}
        found = [site for site in found if site.name.removesuffix("-site") in wanted]
    return found


async def measure_site(
    site: Site,
    name: str,
    embeddings: Embeddings,
    modes: list[str],
    workdir: Path,
    args: argparse.Namespace,
) -> dict[str, dict[str, dict[str, Any]]]:
    """Ingest ``site`` with ``embeddings`` (or reuse its kept index) and ask its questions
    in each mode: ``{mode: {column: figures}}``, with the ingest seconds under "ingest"."""
    index = workdir / f"{site.name}-{name}"
    results: dict[str, dict[str, dict[str, Any]]] = {mode: {} for mode in modes}
    with served(site.directory) as url:
        if site.start is None:
            base = site.directory.resolve().as_uri() + "/"
            seconds = await build_index(index, str(site.directory), embeddings, base)
        else:
            host = url.removeprefix("http://")
            start = f"{url}/{site.start}"
            seconds = await build_index(index, start, embeddings, url + "/", crawl_host=host)
        # a kept index keeps the URLs it was built with (the port of an earlier run)
        base = index.with_name(index.name + ".base").read_text().strip()
        for mode in modes:
            results[mode]["ingest"] = {"seconds": round(seconds, 1)}
            for column, file in site.splits:
                report, warm_ms = await measure(
                    index, embeddings, mode, QUESTIONS / file, base, args.k
                )
                if args.misses and "held-out" not in column:
                    print(f"--- {name} {mode} / {column}\n{report.format()}", file=sys.stderr)
                if report.off_topic:  # a set the site does not cover: declined or not
                    results[mode][column] = {
                        "declined": report.declined,
                        "n": len(report.off_topic),
                    }
                    continue
                results[mode][column] = {
                    "recall": round(report.recall, 3),
                    "mrr": round(report.mrr, 3),
                    "n": report.total,
                    "found": report.hits,
                    "refused": len(report.refused),
                    "median_ms": round(report.median_ms, 1),
                    "warm_ms": round(warm_ms, 1),
                }
            sections = SectionMap(site.directory, base)
            for column, file in site.sections:
                figures = await sections_of(
                    index, embeddings, mode, QUESTIONS / file, base, sections, args.k
                )
                results[mode][column].update(figures)
    return results


async def sections_of(
    index: Path,
    embeddings: Embeddings,
    mode: str,
    labels: Path,
    base: str,
    sections: SectionMap,
    k: int,
) -> dict[str, int]:
    """Section-level figures of one labelled question set (``tests/benchmarks/sections.py``)."""
    settings = Settings.load(env_file=None, index=str(index))
    store, embeddings = await open_store(settings, embeddings)
    try:
        retriever = HybridRetriever(store, embeddings, RetrievalSettings(mode=mode))  # type: ignore[arg-type]
        return await measure_sections(retriever, labels, base, sections, k)
    finally:
        await store.aclose()


async def run(args: argparse.Namespace, workdir: Path) -> list[dict[str, Any]]:
    embedders: dict[str, Any] = {"static": StaticEmbeddings, "hashing": HashingEmbeddings}
    if args.local:
        embedders["local"] = partial(local_embeddings, args.threads)
    if args.only:
        embedders = {name: embedders[name] for name in args.only.split(",") if name in embedders}
    rows: list[dict[str, Any]] = []
    for name, make in embedders.items():
        embeddings = make()
        modes = ["hybrid", "keyword", "dense"] if name == "hashing" else ["hybrid", "dense"]
        per_mode: dict[str, dict[str, Any]] = {mode: {} for mode in modes}
        ingest: dict[str, float] = {}
        for site in sites(args):
            measured = await measure_site(site, name, embeddings, modes, workdir, args)
            for mode, columns in measured.items():
                ingest[site.name] = columns.pop("ingest")["seconds"]
                per_mode[mode].update(columns)
        for mode, columns in per_mode.items():
            held = [columns[c] for c in HELD_OUT_COLUMNS if c in columns]
            if held:
                found, total = sum(c["found"] for c in held), sum(c["n"] for c in held)
                columns["held-out"] = {
                    "recall": round(found / total, 3),
                    "n": total,
                    "found": found,
                }
            row = {"config": f"{name} {mode}", "ingest_s": ingest, **columns}
            rows.append(row)
            print(json.dumps(row), file=sys.stderr, flush=True)
    return rows


def print_table(rows: list[dict[str, Any]], k: int) -> None:
    print(
        f"\nPage-level recall@{k} / MRR (median retrieval ms: first ask / asked again); "
        "held-out pools the documentation sites"
    )
    columns = [c for c in SPLITS if any(c in row for row in rows)]
    print(f"{'configuration':<16} " + " ".join(f"{c:>28}" for c in columns))
    for row in rows:
        cells = []
        for column in columns:
            cell = row.get(column)
            if cell is None:
                cells.append("")
            elif "declined" in cell:
                cells.append(f"{cell['declined']}/{cell['n']} declined")
            elif "mrr" in cell:
                timing = f"{cell['median_ms']:>4} / {cell['warm_ms']:>4}"
                cells.append(f"{cell['recall']:.3f} / {cell['mrr']:.3f} ({timing})")
            else:
                cells.append(f"{cell['recall']:.3f} ({cell['found']}/{cell['n']})")
        print(f"{row['config']:<16} " + " ".join(f"{c:>28}" for c in cells))
    counts = {c: n for row in rows for c, v in row.items() if c in SPLITS for n in [v["n"]]}
    print("questions: " + ", ".join(f"{c} {counts[c]}" for c in columns))
    refused = [
        f"{row['config']} {sum(v.get('refused', 0) for c, v in row.items() if c in SPLITS)}"
        for row in rows
    ]
    print(
        "answerable questions judged not covered (the chat would decline them): "
        + ", ".join(refused)
    )
    print_sections(rows, k)
    for row in rows:
        if row["config"].endswith("hybrid"):
            built = ", ".join(f"{site} {s} s" for site, s in row["ingest_s"].items() if s)
            if built:
                print(f"ingest with {row['config'].split()[0]}: {built}")


def print_sections(rows: list[dict[str, Any]], k: int) -> None:
    labelled = [c for c in SPLITS if any("sections" in row.get(c, {}) for row in rows)]
    if not labelled:
        return
    print(f"\nAnswering section found: in the top {k} hits / in the passages the chat answers from")
    print(f"{'configuration':<16} " + " ".join(f"{c:>20}" for c in labelled))
    for row in rows:
        cells = []
        for column in labelled:
            cell = row.get(column, {})
            if "sections" in cell:
                cells.append(f"{cell['sections']} / {cell['context']} of {cell['n']}")
            else:
                cells.append("")
        print(f"{row['config']:<16} " + " ".join(f"{c:>20}" for c in cells))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--local", action="store_true", help="also measure MiniLM (slow)")
    parser.add_argument("--keep", metavar="DIR", help="keep (and reuse) the indexes here")
    parser.add_argument("-k", type=int, default=5)
    parser.add_argument("--threads", type=int, default=2, help="torch threads for --local")
    parser.add_argument("--misses", action="store_true", help="print tuning/sample misses")
    parser.add_argument("--only", help="comma-separated embedders to run (static,hashing,local)")
    parser.add_argument(
        "--sites",
        help="comma-separated sites (python-docs,rust-book,cargo-book,rustc-book,rust-reference,"
        "edition-guide,sample)",
    )
    parser.add_argument("--rust-book", metavar="DIR", help="the Rust book's HTML folder")
    parser.add_argument("--cargo-book", metavar="DIR", help="the Cargo book's HTML folder")
    parser.add_argument("--rustc-book", metavar="DIR", help="the rustc book's HTML folder")
    args = parser.parse_args()
    rows = in_workdir(args.keep, lambda workdir: run(args, workdir))
    print_table(rows, args.k)


def in_workdir(keep: str | None, work: Callable[[Path], Awaitable[T]]) -> T:
    """Run ``work`` in ``keep`` (created if needed, kept after), or in a temporary folder."""
    if keep:
        workdir = Path(keep)
        workdir.mkdir(parents=True, exist_ok=True)
        return asyncio.run(work(workdir))
    temporary = Path(tempfile.mkdtemp(prefix="sitechat-bench-"))
    try:
        return asyncio.run(work(temporary))
    finally:
        shutil.rmtree(temporary, ignore_errors=True)


if __name__ == "__main__":
    main()
