"""Building an offline-default index of a real documentation site and asking it a question
set from ``examples/eval``: shared by the quality gates of each site."""

from __future__ import annotations

import asyncio
from pathlib import Path

from sitechat.config import RetrievalSettings, Settings
from sitechat.evaluation import EvalReport, evaluate, load_questions
from sitechat.factories import open_store
from sitechat.ingest.crawl import CrawlOptions
from sitechat.ingest.pipeline import ingest_sources
from sitechat.retrieval.hybrid import HybridRetriever

QUESTIONS = Path(__file__).resolve().parents[2] / "examples" / "eval"


def crawl_into(index: Path, site_url: str, start: str = "index.html") -> str:
    """Crawl the site served at ``site_url`` over HTTP into a new offline-default index at
    ``index``; returns the base URL its question sets are relative to."""
    base = site_url + "/"
    settings = Settings.load(env_file=None, index=str(index))
    options = CrawlOptions(
        trusted_hosts=(site_url.removeprefix("http://"),), max_pages=2000, concurrency=8
    )

    async def build() -> None:
        store, embeddings = await open_store(settings, create=True)
        try:
            await ingest_sources([base + start], store, embeddings, settings, crawl_options=options)
        finally:
            await store.aclose()

    asyncio.run(build())
    return base


async def report_for(index: Path, base: str, questions: str, mode: str) -> EvalReport:
    """Recall@5 and MRR of ``examples/eval/<questions>`` asked in ``mode``."""
    settings = Settings.load(env_file=None, index=str(index))
    store, embeddings = await open_store(settings)
    try:
        retriever = HybridRetriever(store, embeddings, RetrievalSettings(mode=mode))  # type: ignore[arg-type]
        return await evaluate(load_questions(QUESTIONS / questions, base_url=base), retriever, k=5)
    finally:
        await store.aclose()


def expected_pages(questions: str) -> set[str]:
    """Every page (relative URL) a question set expects."""
    base = "http://site.invalid/"
    loaded = load_questions(QUESTIONS / questions, base_url=base)
    return {url.removeprefix(base) for question in loaded for url in question.expected}
