"""The embeddings and LLM parts of the conformance kit (see ``sitechat.testing.conformance``)."""

from __future__ import annotations

import math
from collections.abc import AsyncIterator, Sequence
from typing import ClassVar

import pytest
from langchain_core.embeddings import Embeddings
from langchain_core.messages import BaseMessage

from sitechat.chat.prompts import build_messages
from sitechat.embeddings.base import aembedder_info, embedder_info
from sitechat.errors import ProviderError
from sitechat.llm.base import BaseLLMService, LLMDelta
from sitechat.models import ChatMessage, Chunk, Source, content_hash
from sitechat.retrieval.rerank import PassageScorer

__all__ = ["EmbeddingsConformance", "LLMServiceConformance", "conformance_prompt"]

_TEXTS = (
    "Install the package with pip.",
    "Installing packages with pip is quick.",
    "The weather in Paris is mild in spring.",
    "Texte accentué, emoji 🦓 et 日本語.",
)
_TOLERANCE = 1e-5


def _close(a: Sequence[float], b: Sequence[float]) -> bool:
    return len(a) == len(b) and all(
        math.isclose(x, y, abs_tol=_TOLERANCE) for x, y in zip(a, b, strict=True)
    )


def _cosine(a: Sequence[float], b: Sequence[float]) -> float:
    dot = sum(x * y for x, y in zip(a, b, strict=True))
    norms = math.sqrt(sum(x * x for x in a)) * math.sqrt(sum(y * y for y in b))
    return dot / norms if norms else 0.0


class EmbeddingsConformance:
    """A LangChain ``Embeddings`` used as a sitechat embedder, as tests.

    Provide an ``embeddings`` fixture. Switches: ``deterministic`` (same text, same
    vector), ``accepts_empty_text``, ``ranks_related_text_higher`` (a paraphrase is closer
    than an unrelated sentence: true of any useful embedder, lexical or neural). An
    embedder with a ``score_passages`` re-ranker has it checked too.
    """

    deterministic: ClassVar[bool] = True
    accepts_empty_text: ClassVar[bool] = True
    ranks_related_text_higher: ClassVar[bool] = True

    @pytest.fixture
    def embeddings(self) -> Embeddings:
        """Override: the embedder under test."""
        raise NotImplementedError(
            "Subclasses of EmbeddingsConformance provide an 'embeddings' fixture."
        )

    @pytest.mark.asyncio
    async def test_identity_is_stable(self, embeddings: Embeddings) -> None:
        """The recorded identity has a name and the dimension the vectors really have."""
        info = embedder_info(embeddings)
        assert info.name
        assert info.dimension > 0
        assert await aembedder_info(embeddings) == info
        assert len(embeddings.embed_query(_TEXTS[0])) == info.dimension

    @pytest.mark.asyncio
    async def test_vectors_have_one_dimension(self, embeddings: Embeddings) -> None:
        """Every document and query vector has the same length and finite values."""
        vectors = embeddings.embed_documents(list(_TEXTS))
        assert len(vectors) == len(_TEXTS)
        dimension = len(embeddings.embed_query("probe"))
        for vector in vectors:
            assert len(vector) == dimension
            assert all(isinstance(v, float) and math.isfinite(v) for v in vector)

    @pytest.mark.asyncio
    async def test_same_text_same_vector(self, embeddings: Embeddings) -> None:
        """Embedding a text twice gives the same vector, so re-ingest finds nothing changed."""
        if not self.deterministic:
            pytest.skip("this embedder is not deterministic")
        assert _close(embeddings.embed_query(_TEXTS[0]), embeddings.embed_query(_TEXTS[0]))
        first = embeddings.embed_documents(list(_TEXTS))
        again = embeddings.embed_documents(list(_TEXTS))
        assert all(_close(a, b) for a, b in zip(first, again, strict=True))

    @pytest.mark.asyncio
    async def test_batch_equals_one_at_a_time(self, embeddings: Embeddings) -> None:
        """A text's vector does not depend on the rest of its batch."""
        if not self.deterministic:
            pytest.skip("this embedder is not deterministic")
        batch = embeddings.embed_documents(list(_TEXTS))
        single = [embeddings.embed_documents([t])[0] for t in _TEXTS]
        assert all(_close(a, b) for a, b in zip(batch, single, strict=True))

    @pytest.mark.asyncio
    async def test_empty_inputs(self, embeddings: Embeddings) -> None:
        """No texts give no vectors; an empty text gives a vector of the usual dimension."""
        assert embeddings.embed_documents([]) == []
        if not self.accepts_empty_text:
            pytest.skip("this embedder refuses empty text")
        dimension = len(embeddings.embed_query("probe"))
        assert len(embeddings.embed_query("")) == dimension
        assert len(embeddings.embed_documents([""])[0]) == dimension

    @pytest.mark.asyncio
    async def test_async_twins_match(self, embeddings: Embeddings) -> None:
        """aembed_documents and aembed_query return what their sync twins return."""
        if not self.deterministic:
            pytest.skip("this embedder is not deterministic")
        documents = await embeddings.aembed_documents(list(_TEXTS))
        expected = embeddings.embed_documents(list(_TEXTS))
        assert all(_close(a, b) for a, b in zip(documents, expected, strict=True))
        assert _close(await embeddings.aembed_query(_TEXTS[1]), embeddings.embed_query(_TEXTS[1]))

    @pytest.mark.asyncio
    async def test_related_text_is_closer(self, embeddings: Embeddings) -> None:
        """A paraphrase scores above an unrelated sentence."""
        if not self.ranks_related_text_higher:
            pytest.skip("this embedder does not rank by meaning or words")
        query = embeddings.embed_query(_TEXTS[0])
        related, unrelated = embeddings.embed_documents([_TEXTS[1], _TEXTS[2]])
        assert _cosine(query, related) > _cosine(query, unrelated)

    def test_passage_scores_follow_the_chunks(self, embeddings: Embeddings) -> None:
        """An embedder that re-ranks (``score_passages``) gives one finite score per chunk,
        in order, the related passage above the unrelated one; none for no chunks."""
        if not isinstance(embeddings, PassageScorer):
            pytest.skip("no passage scorer of its own (the token table re-ranks instead)")
        chunks = [_chunk(text, f"c{n}") for n, text in enumerate(_TEXTS)]
        scores = embeddings.score_passages(_TEXTS[0], chunks)
        if scores is None:
            pytest.fail("score_passages returned None for a question with words")
        assert len(scores) == len(chunks)
        assert all(math.isfinite(float(score)) for score in scores)
        if self.ranks_related_text_higher:
            assert scores[1] > scores[2]
        empty = embeddings.score_passages(_TEXTS[0], [])
        assert empty is None or len(empty) == 0


def _chunk(text: str, chunk_id: str) -> Chunk:
    return Chunk(
        id=chunk_id,
        url=f"https://docs.example.com/{chunk_id}",
        title="",
        heading_path=(),
        anchor=None,
        text=text,
        content_hash=content_hash(text),
    )


def conformance_prompt(question: str = "How do I install the package?") -> list[BaseMessage]:
    """A prompt as the chat service builds it: system, one history turn, one source."""
    source = Source(
        n=1,
        title="Installation",
        url="https://docs.example.com/install#pip",
        snippet="Install the package with pip.",
        score=1.0,
        heading="Install › pip",
    )
    history = [ChatMessage("user", "Hello"), ChatMessage("assistant", "Hi! Ask me anything.")]
    text = "Install the package with pip install example. It needs Python 3.10 or newer."
    return build_messages(question, [source], [text], history)


class LLMServiceConformance:
    """The :class:`~sitechat.llm.base.BaseLLMService` contract, as tests.

    Provide an ``llm`` fixture (point it at a local server for network providers). For
    the failure test, also provide ``failing_llm``: the same provider set up to fail (a
    server answering 429/500, a bad key); without it that test skips. Switches:
    ``deterministic`` (the same prompt gives the same answer, so streamed and whole
    answers can be compared), ``reports_usage``.
    """

    deterministic: ClassVar[bool] = True
    reports_usage: ClassVar[bool] = False

    @pytest.fixture
    def llm(self) -> BaseLLMService:
        """Override: the provider under test."""
        raise NotImplementedError("Subclasses of LLMServiceConformance provide an 'llm' fixture.")

    @pytest.fixture
    def failing_llm(self) -> BaseLLMService | None:
        """Override: the provider set up so that every call fails (None skips the test)."""
        return None

    @pytest.mark.asyncio
    async def test_declares_capabilities(self, llm: BaseLLMService) -> None:
        """Name, streaming flag, context window and a description for logs are set."""
        assert type(llm).name
        assert isinstance(type(llm).supports_streaming, bool)
        assert llm.context_window > llm.max_output_tokens > 0
        assert isinstance(llm.describe(), str)
        assert llm.describe()

    @pytest.mark.asyncio
    async def test_whole_answer_is_text(self, llm: BaseLLMService) -> None:
        """generate_response() returns the answer as one non-empty string."""
        answer = await llm.generate_response(conformance_prompt())
        assert isinstance(answer, str)
        assert answer.strip()

    @pytest.mark.asyncio
    async def test_streamed_answer_reassembles(self, llm: BaseLLMService) -> None:
        """stream=True yields text pieces that join into the whole answer."""
        chunks = await llm.generate_response(conformance_prompt(), stream=True)
        pieces = [piece async for piece in chunks]
        assert pieces
        assert all(isinstance(p, str) and p for p in pieces)
        if self.deterministic:
            assert "".join(pieces) == await llm.generate_response(conformance_prompt())

    @pytest.mark.asyncio
    async def test_stream_deltas_carry_text_or_usage(self, llm: BaseLLMService) -> None:
        """Every delta has text or usage; usage comes at most once, with sane counts."""
        deltas: list[LLMDelta] = [delta async for delta in llm.stream(conformance_prompt())]
        assert deltas
        assert all(isinstance(d, LLMDelta) for d in deltas)
        assert all(d.text or d.usage is not None for d in deltas)
        usages = [d.usage for d in deltas if d.usage is not None]
        assert len(usages) <= 1
        if self.reports_usage:
            assert usages, "this provider should report token usage"
        for usage in usages:
            assert usage.input_tokens >= 0
            assert usage.output_tokens >= 0

    @pytest.mark.asyncio
    async def test_open_stream_gives_the_same_answer(self, llm: BaseLLMService) -> None:
        """open_stream (the chat service's path) yields str or LLMDelta pieces of the answer."""
        opened = await llm.open_stream(conformance_prompt())
        try:
            pieces = [piece async for piece in opened.pieces()]
        finally:
            await opened.aclose()
        assert all(isinstance(p, (str, LLMDelta)) for p in pieces)
        text = "".join(p if isinstance(p, str) else p.text for p in pieces)
        assert text
        if self.deterministic:
            assert text == await llm.generate_response(conformance_prompt())

    @pytest.mark.asyncio
    async def test_stream_can_be_abandoned(self, llm: BaseLLMService) -> None:
        """Closing the stream after the first piece releases it without error."""
        chunks = await llm.generate_response(conformance_prompt(), stream=True)
        assert isinstance(chunks, AsyncIterator)
        first = await chunks.__anext__()
        assert first
        aclose = getattr(chunks, "aclose", None)
        if aclose is not None:
            await aclose()
        # the provider still answers afterwards
        assert await llm.generate_response(conformance_prompt())

    @pytest.mark.asyncio
    async def test_failures_are_provider_errors(self, failing_llm: BaseLLMService | None) -> None:
        """A failing provider raises a sitechat ProviderError, streamed or not."""
        if failing_llm is None:
            pytest.skip("no failing_llm fixture: this provider cannot be made to fail")
        with pytest.raises(ProviderError) as whole:
            await failing_llm.generate_response(conformance_prompt())
        assert str(whole.value)
        with pytest.raises(ProviderError):
            await _drain(failing_llm, conformance_prompt())


async def _drain(llm: BaseLLMService, messages: Sequence[BaseMessage]) -> str:
    chunks = await llm.generate_response(messages, stream=True)
    return "".join([piece async for piece in chunks])
