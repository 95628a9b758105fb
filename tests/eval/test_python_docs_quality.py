"""Retrieval quality of the offline default (the ``static`` embedder and BM25) on a real
documentation site: the quality gate.

Debian's ``python3.11-doc`` (530 HTML pages) is served over HTTP and crawled like any site,
then the question sets in ``examples/eval`` are asked. The floors below are the measured
figures rounded down, so a change that makes retrieval worse fails here; the MiniLM
figures, which need a 10-20 minute ingest, come from
``tests/benchmarks/bench_retrieval_quality.py --local``.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from sitechat.config import RetrievalSettings, Settings
from sitechat.evaluation import EvalReport, evaluate, load_questions
from sitechat.factories import open_store
from sitechat.ingest.crawl import CrawlOptions
from sitechat.ingest.pipeline import ingest_sources
from sitechat.retrieval.hybrid import HybridRetriever
from tests.conftest import needs_python_docs

QUESTIONS = Path(__file__).resolve().parents[2] / "examples" / "eval"

pytestmark = needs_python_docs


@pytest.fixture(scope="module")
def docs_index(tmp_path_factory: pytest.TempPathFactory, python_docs_site: str) -> tuple[Path, str]:
    """The Python docs crawled over HTTP into an offline-default index, once per module."""
    base = python_docs_site + "/"
    index = tmp_path_factory.mktemp("python-docs") / "index"
    settings = Settings.load(env_file=None, index=str(index))
    options = CrawlOptions(
        trusted_hosts=(python_docs_site.removeprefix("http://"),), max_pages=2000, concurrency=8
    )

    async def build() -> None:
        store, embeddings = await open_store(settings, create=True)
        try:
            await ingest_sources(
                [base + "index.html"], store, embeddings, settings, crawl_options=options
            )
        finally:
            await store.aclose()

    asyncio.run(build())
    return index, base


async def report_for(docs_index: tuple[Path, str], split: str, mode: str) -> EvalReport:
    index, base = docs_index
    settings = Settings.load(env_file=None, index=str(index))
    store, embeddings = await open_store(settings)
    try:
        retriever = HybridRetriever(store, embeddings, RetrievalSettings(mode=mode))  # type: ignore[arg-type]
        questions = load_questions(QUESTIONS / f"python-docs-{split}.jsonl", base_url=base)
        return await evaluate(questions, retriever, k=5)
    finally:
        await store.aclose()


@pytest.mark.parametrize(
    ("split", "mode", "recall", "mrr"),
    [
        ("dev", "hybrid", 0.91, 0.75),
        ("heldout", "hybrid", 0.84, 0.68),
        ("heldout", "keyword", 0.71, 0.58),
        ("heldout", "dense", 0.80, 0.67),
    ],
)
async def test_recall_does_not_regress(
    docs_index: tuple[Path, str], split: str, mode: str, recall: float, mrr: float
) -> None:
    """Page-level recall@5 and MRR stay at or above what this version measured."""
    report = await report_for(docs_index, split, mode)
    assert report.recall >= recall, report.format(max_misses=5)
    assert report.mrr >= mrr, report.format(max_misses=5)


async def test_hybrid_beats_either_side_alone(docs_index: tuple[Path, str]) -> None:
    """Fusing dense and keyword rankings finds more right pages than either ranking alone."""
    hybrid = await report_for(docs_index, "dev", "hybrid")
    for mode in ("keyword", "dense"):
        assert hybrid.recall > (await report_for(docs_index, "dev", mode)).recall, mode


@pytest.mark.xfail(
    reason="issue 5 target for the offline default (>= 0.92 held-out recall@5) is not met: "
    "the static embedder reaches 0.846; a sum of token vectors matches MiniLM's sentence "
    "vectors only so far (see docs/retrieval.md)",
    strict=True,
)
async def test_offline_default_meets_the_issue_target(docs_index: tuple[Path, str]) -> None:
    """The offline default reaches 0.92 page-level recall@5 on the held-out questions."""
    report = await report_for(docs_index, "heldout", "hybrid")
    assert report.recall >= 0.92
