"""The sample site through ingest, retrieval, evaluation and chat, stored in PostgreSQL."""

from __future__ import annotations

import uuid
from pathlib import Path

from sitechat.chat.service import RetrievalChatService
from sitechat.config import Settings
from sitechat.embeddings.base import embedder_info
from sitechat.embeddings.hashing import HashingEmbeddings
from sitechat.evaluation import evaluate, load_questions
from sitechat.events import DoneEvent, SourcesEvent
from sitechat.ingest.pipeline import ingest_sources
from sitechat.llm.extractive import ExtractiveLLMService
from sitechat.retrieval.hybrid import HybridRetriever
from sitechat.testing.pg import TemporaryPostgres
from sitechat.vectorstores.pgvector import PgVectorConfig, PgVectorStore

ROOT = Path(__file__).resolve().parents[2]


async def test_sample_site_round_trip(postgres: TemporaryPostgres, sample_site: Path) -> None:
    """Ingest, re-ingest (nothing re-embedded), hybrid recall, and a cited chat answer."""
    embeddings = HashingEmbeddings(dimension=256)
    settings = Settings.load(env_file=None, index=f"sample-{uuid.uuid4().hex[:8]}")
    config = PgVectorConfig(pool_max=4)
    store = await PgVectorStore.open_dsn(
        postgres.dsn, settings.index, embedder_info(embeddings), create=True, config=config
    )
    try:
        first = await ingest_sources([str(sample_site)], store, embeddings, settings)
        again = await ingest_sources([str(sample_site)], store, embeddings, settings)
        assert first.chunks_total > 10
        assert again.chunks_added == 0
        assert again.chunks_unchanged == first.chunks_total

        retriever = HybridRetriever(store, embeddings, settings.retrieval)
        base = sample_site.as_uri() + "/"
        questions = load_questions(ROOT / "examples/eval/sample-site.jsonl", base_url=base)
        report = await evaluate(questions, retriever, k=5)
        assert report.recall >= 0.8, report.format()

        chat = RetrievalChatService(ExtractiveLLMService(), retriever, settings=settings.chat)
        events = [e async for e in chat.stream_events("How do I delete my account?")]
        assert isinstance(events[0], SourcesEvent)
        assert any("account" in s.url for s in events[0].sources)
        done = events[-1]
        assert isinstance(done, DoneEvent)
        assert done.covered
        assert done.cited
    finally:
        await store.aclose()
