"""as_langchain_retriever: LangChain's standard retriever tests, plus sitechat's metadata."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from langchain_core.documents import Document
from langchain_core.retrievers import BaseRetriever
from langchain_core.runnables import RunnableLambda

from sitechat.config import RetrievalSettings, Settings
from sitechat.embeddings.hashing import HashingEmbeddings
from sitechat.errors import InvalidInputError
from sitechat.factories import open_store
from sitechat.ingest.pipeline import ingest_sources
from sitechat.retrieval.hybrid import HybridRetriever
from sitechat.retrieval.langchain import SitechatRetriever, as_langchain_retriever

standard_tests = pytest.importorskip(
    "langchain_tests.integration_tests",
    reason="LangChain's standard retriever tests need the langchain-tests package",
)
RetrieversIntegrationTests = standard_tests.RetrieversIntegrationTests

SAMPLE_SITE = Path(__file__).resolve().parent.parent / "examples" / "sample_site"


def _build(index: Path) -> HybridRetriever:
    settings = Settings.load(env_file=None, index=str(index))

    async def build() -> HybridRetriever:
        store, embeddings = await open_store(settings, HashingEmbeddings(), create=True)
        await ingest_sources([str(SAMPLE_SITE)], store, embeddings, settings)
        return HybridRetriever(store, embeddings, RetrievalSettings())

    return asyncio.run(build())


@pytest.fixture(scope="module")
def sample_retriever(tmp_path_factory: pytest.TempPathFactory) -> Iterator[HybridRetriever]:
    """A hybrid retriever over the bundled sample site, built once for this module."""
    retriever = _build(tmp_path_factory.mktemp("langchain") / "index")
    yield retriever
    asyncio.run(retriever.store.aclose())


class TestStandardRetrieverSuite(RetrieversIntegrationTests):
    """LangChain's own conformance tests for retrievers, run against sitechat's."""

    shared: HybridRetriever

    @pytest.fixture(autouse=True)
    def _use_sample(self, sample_retriever: HybridRetriever) -> None:
        type(self).shared = sample_retriever

    @property
    def retriever_constructor(self) -> type[BaseRetriever]:
        return SitechatRetriever

    @property
    def retriever_constructor_params(self) -> dict[str, Any]:
        return {"retriever": self.shared, "k": 4}

    @property
    def retriever_query_example(self) -> str:
        return "How do I export my notes?"


def test_documents_carry_text_link_and_scores(sample_retriever: HybridRetriever) -> None:
    """Each Document has the passage text and url, title, heading, score, chunk_id metadata."""
    docs = as_langchain_retriever(sample_retriever, k=3).invoke(
        "How long is the refund window after a yearly renewal?"
    )
    assert len(docs) == 3
    first = docs[0]
    assert "14 days" in first.page_content
    assert first.metadata["url"].endswith("billing.html#refund-policy")
    assert first.metadata["page_url"].endswith("billing.html")
    assert first.metadata["title"].startswith("Plans, pricing and billing")
    assert first.metadata["heading"]
    assert first.id == first.metadata["chunk_id"]
    assert first.metadata["covered"] is True
    scores = [d.metadata["score"] for d in docs]
    assert scores == sorted(scores, reverse=True)


async def test_async_and_sync_paths_agree(sample_retriever: HybridRetriever) -> None:
    """ainvoke and invoke (called inside a running loop) return the same documents."""
    retriever = as_langchain_retriever(sample_retriever, k=2)
    query = "two-factor authentication"
    assert await retriever.ainvoke(query) == retriever.invoke(query)


def test_per_call_k_and_where(sample_retriever: HybridRetriever) -> None:
    """k and where given to invoke override the retriever's own."""
    retriever = as_langchain_retriever(sample_retriever, k=5)
    docs = retriever.invoke("export", k=2)
    assert len(docs) == 2
    url = docs[0].metadata["page_url"]
    filtered = retriever.invoke("password", where={"url": url})
    assert filtered and all(d.metadata["page_url"] == url for d in filtered)


def test_runs_inside_a_chain(sample_retriever: HybridRetriever) -> None:
    """The retriever composes with other runnables like any LangChain retriever."""

    def cite(docs: list[Document]) -> list[str]:
        return [d.metadata["url"] for d in docs]

    chain = as_langchain_retriever(sample_retriever, k=2) | RunnableLambda(cite)
    links = chain.invoke("How do I reset my password?")
    assert len(links) == 2 and all(link.startswith("file://") for link in links)


def test_bad_arguments_are_refused(sample_retriever: HybridRetriever) -> None:
    """A non-retriever or a non-positive k is refused with a clear error."""
    with pytest.raises(InvalidInputError, match="needs a sitechat retriever"):
        as_langchain_retriever(object())
    with pytest.raises(InvalidInputError, match="positive integer"):
        as_langchain_retriever(sample_retriever).invoke("x", k=0)
