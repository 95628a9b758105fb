"""Every built-in provider passes the conformance kit that plugin authors run."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import pytest_asyncio
from langchain_core.embeddings import Embeddings

from sitechat.chat.base import ChatService
from sitechat.chat.service import RetrievalChatService
from sitechat.config import ChatSettings, RetrievalSettings, Settings
from sitechat.embeddings.hashing import HashingEmbeddings
from sitechat.errors import RateLimitError, ServiceUnavailableError
from sitechat.llm.base import BaseLLMService
from sitechat.llm.extractive import ExtractiveLLMService
from sitechat.retrieval.hybrid import HybridRetriever
from sitechat.testing.conformance import (
    ChatServiceConformance,
    EmbeddingsConformance,
    LLMServiceConformance,
    OpenStore,
    VectorStoreConformance,
    conformance_chunks,
)
from sitechat.testing.fakes import FakeEmbeddings, FakeLLMService, InMemoryVectorStore
from sitechat.testing.pg import TemporaryPostgres
from sitechat.vectorstores.base import EmbedderInfo, VectorStore
from sitechat.vectorstores.faiss import FaissVectorStore

# ---------------------------------------------------------------------- vector stores


class TestFaissVectorStore(VectorStoreConformance):
    """The embedded default store."""

    reports_page_sizes = True

    @pytest.fixture
    def open_store(self, tmp_path: Path) -> OpenStore:
        async def open_store(embedder: EmbedderInfo | None, *, create: bool) -> VectorStore:
            return await FaissVectorStore.open_path(tmp_path / "index", embedder, create=create)

        return open_store


class TestInMemoryVectorStore(VectorStoreConformance):
    """The fake store users test against: nothing to reopen."""

    persists_across_reopen = False
    reports_page_sizes = True

    @pytest.fixture
    def open_store(self, settings: Settings) -> OpenStore:
        async def open_store(embedder: EmbedderInfo | None, *, create: bool) -> VectorStore:
            return await InMemoryVectorStore.open(settings, embedder, create=create)

        return open_store


class TestPgVectorStore(VectorStoreConformance):
    """PostgreSQL + pgvector, exact search (below the HNSW threshold)."""

    hnsw_threshold = 10_000
    reports_page_sizes = True

    @pytest.fixture
    def open_store(self, postgres: TemporaryPostgres) -> OpenStore:
        from sitechat.vectorstores.pgvector import PgVectorConfig, PgVectorStore

        collection = f"conformance-{uuid.uuid4().hex[:12]}"
        config = PgVectorConfig(pool_max=4, hnsw_threshold=self.hnsw_threshold)

        async def open_store(embedder: EmbedderInfo | None, *, create: bool) -> VectorStore:
            return await PgVectorStore.open_dsn(
                postgres.dsn, collection, embedder, create=create, config=config
            )

        return open_store


class TestPgVectorStoreWithHnsw(TestPgVectorStore):
    """PostgreSQL + pgvector with the HNSW index built from the start."""

    hnsw_threshold = 0


# ---------------------------------------------------------------------- embeddings


class TestHashingEmbeddings(EmbeddingsConformance):
    """The lexical offline embedder (the default before the static one)."""

    @pytest.fixture
    def embeddings(self) -> Embeddings:
        return HashingEmbeddings(dimension=256)


class TestFakeEmbeddings(EmbeddingsConformance):
    """The fake embedder users test against."""

    @pytest.fixture
    def embeddings(self) -> Embeddings:
        return FakeEmbeddings(dimension=64)


# ---------------------------------------------------------------------- LLMs


class TestExtractiveLLMService(LLMServiceConformance):
    """The offline answerer: it cannot fail, so the failure test skips."""

    reports_usage = True

    @pytest.fixture
    def llm(self) -> BaseLLMService:
        return ExtractiveLLMService()


class TestFakeLLMService(LLMServiceConformance):
    """The scripted fake users test against."""

    reports_usage = True

    @pytest.fixture
    def llm(self) -> BaseLLMService:
        return FakeLLMService(["Install it with pip [1]."])

    @pytest.fixture
    def failing_llm(self) -> BaseLLMService | None:
        return FakeLLMService(error=RateLimitError("Slow down.", provider="fake"))


# ---------------------------------------------------------------------- chat


async def _retrieval_service(llm: BaseLLMService) -> RetrievalChatService:
    embeddings = FakeEmbeddings()
    store = InMemoryVectorStore(EmbedderInfo(embeddings.embedder_name, embeddings.dimension))
    chunks = conformance_chunks()
    await store.upsert(chunks, embeddings.embed_documents([c.text for c in chunks]))
    retriever = HybridRetriever(store, embeddings, RetrievalSettings(top_k=3))
    return RetrievalChatService(llm, retriever, settings=ChatSettings(max_message_chars=4000))


class TestRetrievalChatService(ChatServiceConformance):
    """The built-in chat service over fakes."""

    @pytest_asyncio.fixture
    async def chat_service(self) -> AsyncIterator[ChatService]:
        service = await _retrieval_service(FakeLLMService(["Use the package manager [1]."]))
        yield service
        await service.aclose()

    @pytest_asyncio.fixture
    async def failing_chat_service(self) -> AsyncIterator[ChatService | None]:
        error = ServiceUnavailableError("The model is overloaded.", provider="fake")
        service = await _retrieval_service(FakeLLMService(error=error))
        yield service
        await service.aclose()


class TestRetrievalChatServiceExtractive(ChatServiceConformance):
    """The built-in chat service with the offline answerer, as `sitechat ask` runs it."""

    @pytest_asyncio.fixture
    async def chat_service(self) -> AsyncIterator[ChatService]:
        service = await _retrieval_service(ExtractiveLLMService())
        yield service
        await service.aclose()
