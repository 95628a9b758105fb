"""Deterministic stand-ins for the three contracts, for unit tests of code built on sitechat.

They implement the real base classes, so a test that passes with them exercises the same
code paths as production; only the provider at the edge is replaced.
"""

from __future__ import annotations

import asyncio
import hashlib
import math
from collections import Counter
from collections.abc import AsyncIterator, Mapping, Sequence
from typing import ClassVar

from langchain_core.embeddings import Embeddings
from langchain_core.messages import BaseMessage

from sitechat._text import content_terms
from sitechat.config import Settings
from sitechat.errors import (
    IndexNotFoundError,
    InvalidInputError,
    ProviderError,
    StreamInterruptedError,
)
from sitechat.llm.base import BaseLLMService, LLMDelta
from sitechat.models import Chunk, SearchHit, Usage
from sitechat.vectorstores.base import EmbedderInfo, PageSizes, VectorStore, page_of

__all__ = ["FakeEmbeddings", "FakeLLMService", "InMemoryVectorStore"]


class FakeLLMService(BaseLLMService):
    """Streams scripted replies, one per call, in token-sized pieces.

    ``error`` is raised before the first token; with ``fail_after`` tokens, the stream breaks
    mid-answer with :class:`StreamInterruptedError`. ``calls`` records every prompt received,
    ``tokens_sent`` counts the tokens yielded, and ``closed`` turns True when a stream ends
    for any reason (finished, failed, closed early or cancelled).
    """

    name: ClassVar[str] = "fake"
    model = "fake"

    def __init__(
        self,
        replies: Sequence[str] = ("This is a fake answer [1].",),
        *,
        error: ProviderError | None = None,
        fail_after: int | None = None,
        delay: float = 0.0,
        context_window: int = 8192,
    ) -> None:
        self.replies = list(replies)
        self.error = error
        self.fail_after = fail_after
        self.delay = delay
        self.context_window = context_window
        self.calls: list[list[BaseMessage]] = []
        self.tokens_sent = 0
        self.closed = False

    async def _astream(self, messages: Sequence[BaseMessage]) -> AsyncIterator[str | LLMDelta]:
        self.calls.append(list(messages))
        if self.error is not None:
            raise self.error
        reply = self.replies[(len(self.calls) - 1) % len(self.replies)]
        tokens = [w + " " for w in reply.split(" ")]
        tokens[-1] = tokens[-1][:-1]
        sent: list[str] = []
        try:
            for i, token in enumerate(tokens):
                if self.fail_after is not None and i >= self.fail_after:
                    raise StreamInterruptedError(
                        "The fake stream was cut off.", provider=self.name, partial="".join(sent)
                    )
                if self.delay:
                    await asyncio.sleep(self.delay)
                sent.append(token)
                self.tokens_sent += 1
                yield LLMDelta(text=token)
            yield LLMDelta(usage=Usage(input_tokens=10, output_tokens=len(tokens)))
        finally:
            # records that the consumer closed or cancelled the stream
            self.closed = True


class FakeEmbeddings(Embeddings):
    """Bag-of-words vectors hashed into ``dimension`` slots: similar words, similar vectors."""

    embedder_name = "fake:v1"

    def __init__(self, dimension: int = 256) -> None:
        self.dimension = dimension

    def _embed(self, text: str) -> list[float]:
        vector = [0.0] * self.dimension
        for term in content_terms(text):
            slot = int.from_bytes(hashlib.blake2b(term.encode(), digest_size=4).digest(), "big")
            vector[slot % self.dimension] += 1.0
        norm = math.sqrt(sum(v * v for v in vector)) or 1.0
        return [v / norm for v in vector]

    def embed_documents(self, texts: list[str]) -> list[list[float]]:
        return [self._embed(t) for t in texts]

    def embed_query(self, text: str) -> list[float]:
        return self._embed(text)


class InMemoryVectorStore(VectorStore):
    """A complete store in a dict: exact cosine search and term-overlap keyword search."""

    name: ClassVar[str] = "memory"
    supports_keyword_search: ClassVar[bool] = True

    def __init__(self, embedder: EmbedderInfo) -> None:
        self._embedder = embedder
        self._rows: dict[str, tuple[Chunk, list[float]]] = {}

    @classmethod
    async def open(
        cls, settings: Settings, embedder: EmbedderInfo | None, *, create: bool
    ) -> InMemoryVectorStore:
        if embedder is None:
            raise IndexNotFoundError("An in-memory store has nothing to reopen; create it.")
        return cls(embedder)

    @property
    def embedder(self) -> EmbedderInfo:
        return self._embedder

    @staticmethod
    def _matches(chunk: Chunk, where: Mapping[str, str] | None) -> bool:
        if not where:
            return True
        return all(
            (chunk.url == page_of(value)) if key == "url" else chunk.metadata.get(key) == value
            for key, value in where.items()
        )

    async def upsert(self, chunks: Sequence[Chunk], vectors: Sequence[Sequence[float]]) -> None:
        if len(chunks) != len(vectors):
            raise InvalidInputError(
                f"upsert got {len(chunks)} chunks and {len(vectors)} vectors; pass one vector "
                "per chunk."
            )
        dimension = self._embedder.dimension
        if any(len(vector) != dimension for vector in vectors):
            raise InvalidInputError(f"Every vector must have {dimension} numbers.")
        for chunk, vector in zip(chunks, vectors, strict=True):
            self._rows[chunk.id] = (chunk, [float(v) for v in vector])

    async def search(
        self, vector: Sequence[float], k: int = 5, where: Mapping[str, str] | None = None
    ) -> list[SearchHit]:
        norm_q = math.sqrt(sum(v * v for v in vector)) or 1.0
        hits = []
        for chunk, stored in self._rows.values():
            if self._matches(chunk, where):
                norm_s = math.sqrt(sum(v * v for v in stored)) or 1.0
                score = sum(a * b for a, b in zip(vector, stored, strict=False)) / (norm_q * norm_s)
                hits.append(SearchHit(chunk, score))
        hits.sort(key=lambda h: -h.score)
        return hits[:k]

    async def keyword_search(
        self, query: str, k: int = 5, where: Mapping[str, str] | None = None
    ) -> list[SearchHit]:
        terms = set(content_terms(query))
        hits = []
        for chunk, _ in self._rows.values():
            if self._matches(chunk, where):
                overlap = len(
                    terms & set(content_terms(f"{chunk.title} {chunk.heading} {chunk.text}"))
                )
                if overlap:
                    hits.append(SearchHit(chunk, float(overlap)))
        hits.sort(key=lambda h: -h.score)
        return hits[:k]

    async def get(self, ids: Sequence[str]) -> list[Chunk]:
        return [self._rows[i][0] for i in ids if i in self._rows]

    async def delete(self, ids: Sequence[str]) -> int:
        return sum(self._rows.pop(i, None) is not None for i in ids)

    async def delete_by_url(self, url: str) -> int:
        return await self.delete([cid for cid, (c, _) in self._rows.items() if c.url == url])

    async def chunk_hashes(self, url: str | None = None) -> dict[str, str]:
        return {
            cid: chunk.content_hash
            for cid, (chunk, _) in self._rows.items()
            if url is None or chunk.url == url
        }

    async def urls(self) -> list[str]:
        return sorted({chunk.url for chunk, _ in self._rows.values()})

    async def count(self) -> int:
        return len(self._rows)

    async def page_sizes(self, urls: Sequence[str]) -> PageSizes:
        wanted = set(urls)
        counts = Counter(chunk.url for chunk, _ in self._rows.values() if chunk.url in wanted)
        return PageSizes(dict(counts), len(self._rows))

    async def persist(self) -> None:
        return None
