"""What sitechat needs to know about any LangChain ``Embeddings``: its identity.

An index records which embedder built it (:class:`EmbedderInfo`: name and dimension),
because vectors from another model are meaningless in it. sitechat's own embedders say
so through ``embedder_name`` and ``dimension``; for any other LangChain embedder the name
falls back to the class (and its ``model``/``model_name`` when it has one) and the
dimension is measured by embedding a probe text once.
"""

from __future__ import annotations

import asyncio
from abc import abstractmethod
from collections.abc import Sequence
from typing import ClassVar

import numpy as np
import numpy.typing as npt
from langchain_core.embeddings import Embeddings

from sitechat.errors import ProviderError
from sitechat.vectorstores.base import EmbedderInfo

__all__ = ["ArrayEmbeddings", "aembedder_info", "embedder_info"]

_PROBE_TEXT = "dimension probe"


class ArrayEmbeddings(Embeddings):
    """Base of sitechat's in-process embedders: they compute a float32 array, and the
    LangChain methods are that array as lists.

    Async calls embed on the event loop when the input is at most ``inline_chars``
    characters (a question: cheaper than a thread hop) and :meth:`_ready_inline` agrees,
    and in a worker thread otherwise, so a large batch never blocks the loop.
    """

    inline_chars: ClassVar[int] = 0

    @abstractmethod
    def embed_array(self, texts: Sequence[str]) -> npt.NDArray[np.float32]:
        """Embed ``texts`` as an ``(n, dimension)`` float32 array of unit (or zero) rows."""

    def embed_documents(self, texts: list[str]) -> list[list[float]]:
        """Embed passages; the same space as :meth:`embed_query` (cosine = dot product)."""
        result: list[list[float]] = self.embed_array(texts).tolist()
        return result

    def embed_query(self, text: str) -> list[float]:
        """Embed a question; the same function as for documents."""
        result: list[float] = self.embed_array([text])[0].tolist()
        return result

    def _ready_inline(self) -> bool:
        """Whether embedding can start at once (nothing to load first)."""
        return True

    async def aembed_documents(self, texts: list[str]) -> list[list[float]]:
        """Embed on the event loop when the input is small, else in a worker thread."""
        if sum(map(len, texts)) <= self.inline_chars and self._ready_inline():
            return self.embed_documents(texts)
        return await asyncio.to_thread(self.embed_documents, texts)

    async def aembed_query(self, text: str) -> list[float]:
        """Embed on the event loop when the input is small, else in a worker thread."""
        if len(text) <= self.inline_chars and self._ready_inline():
            return self.embed_query(text)
        return await asyncio.to_thread(self.embed_query, text)


def embedder_info(embeddings: Embeddings, name: str | None = None) -> EmbedderInfo:
    """The identity an index records for ``embeddings``.

    The name is ``embeddings.embedder_name`` when the object has one, else ``name``, else
    the class name (with ``:model`` when the object has a ``model`` or ``model_name``
    string, so two models of one provider are told apart). The dimension is
    ``embeddings.dimension`` when present, else the length of ``embed_query`` on a probe
    text: one call to the provider.
    """
    dimension = _declared_dimension(embeddings)
    if dimension is None:
        dimension = _checked_dimension(embeddings, embeddings.embed_query(_PROBE_TEXT))
    return EmbedderInfo(_name_of(embeddings, name), dimension)


async def aembedder_info(embeddings: Embeddings, name: str | None = None) -> EmbedderInfo:
    """:func:`embedder_info`, probing with ``aembed_query`` so the event loop never blocks."""
    dimension = _declared_dimension(embeddings)
    if dimension is None:
        dimension = _checked_dimension(embeddings, await embeddings.aembed_query(_PROBE_TEXT))
    return EmbedderInfo(_name_of(embeddings, name), dimension)


def _name_of(embeddings: Embeddings, name: str | None) -> str:
    declared = getattr(embeddings, "embedder_name", None)
    if isinstance(declared, str) and declared:
        return declared
    if name:
        return name
    base = type(embeddings).__name__
    for attribute in ("model", "model_name", "model_id"):
        model = getattr(embeddings, attribute, None)
        if isinstance(model, str) and model:
            return f"{base}:{model}"
    return base


def _declared_dimension(embeddings: Embeddings) -> int | None:
    dimension = getattr(embeddings, "dimension", None)
    if isinstance(dimension, int) and not isinstance(dimension, bool) and dimension > 0:
        return dimension
    return None


def _checked_dimension(embeddings: Embeddings, vector: Sequence[float]) -> int:
    if not vector:
        raise ProviderError(
            f"The embedder {type(embeddings).__name__} returned an empty vector for a probe "
            "text. Check its model setting.",
            provider=type(embeddings).__name__,
        )
    return len(vector)
