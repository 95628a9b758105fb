"""sitechat retrieval as a LangChain retriever, so it drops into LangChain chains and agents.

::

    retriever = sitechat.as_langchain_retriever(HybridRetriever(store, embeddings), k=4)
    docs = await retriever.ainvoke("How do I get a refund?")
    docs[0].metadata["url"]   # deep link to the passage, e.g. .../billing.html#refunds

Each :class:`~langchain_core.documents.Document` holds a passage's text as
``page_content`` and, in ``metadata``: ``url`` (deep link with ``#anchor``), ``page_url``,
``title``, ``heading``, ``score`` (the fused retrieval score; higher is better),
``chunk_id`` and ``covered`` (whether retrieval judged the site to cover the question).
``k`` and ``where`` may also be given per call: ``retriever.invoke(query, k=2)``.

The async path is native. The sync path runs the same coroutine on a private event loop
(in a worker thread when the caller is itself inside a running loop, as in Jupyter); that
suits the embedded FAISS store. A store bound to one event loop (a pooled database
connection) should be used through ``ainvoke``.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
from collections.abc import Coroutine, Mapping
from typing import Any, TypeVar

from langchain_core.callbacks import (
    AsyncCallbackManagerForRetrieverRun,
    CallbackManagerForRetrieverRun,
)
from langchain_core.documents import Document
from langchain_core.retrievers import BaseRetriever
from pydantic import ConfigDict, Field

from sitechat.errors import InvalidInputError

__all__ = ["SitechatRetriever", "as_langchain_retriever"]

T = TypeVar("T")


class SitechatRetriever(BaseRetriever):
    """A LangChain ``BaseRetriever`` over a sitechat retriever (hybrid search).

    ``retriever`` is a :class:`~sitechat.retrieval.hybrid.HybridRetriever` or anything
    with its ``retrieve(query, k, where)`` coroutine; build one with
    :func:`as_langchain_retriever`.
    """

    model_config = ConfigDict(arbitrary_types_allowed=True)

    retriever: Any = Field(description="The sitechat retriever that does the work.")
    k: int = Field(default=5, ge=1, le=200, description="Passages returned per query.")
    where: dict[str, str] | None = Field(
        default=None, description="Metadata filter: only passages whose fields equal these."
    )

    def _arguments(
        self, k: int | None, where: Mapping[str, str] | None
    ) -> tuple[int, Mapping[str, str] | None]:
        wanted = self.k if k is None else k
        if not isinstance(wanted, int) or isinstance(wanted, bool) or wanted < 1:
            raise InvalidInputError(f"k must be a positive integer, got {wanted!r}.")
        return wanted, self.where if where is None else where

    async def _retrieve(
        self, query: str, k: int | None, where: Mapping[str, str] | None
    ) -> list[Document]:
        wanted, filters = self._arguments(k, where)
        result = await self.retriever.retrieve(query, wanted, filters)
        return [
            Document(
                page_content=hit.chunk.text,
                id=hit.chunk.id,
                metadata={
                    "url": hit.chunk.link,
                    "page_url": hit.chunk.url,
                    "title": hit.chunk.title,
                    "heading": hit.chunk.heading,
                    "score": hit.score,
                    "chunk_id": hit.chunk.id,
                    "covered": result.covered,
                },
            )
            for hit in result.hits[:wanted]
        ]

    def _get_relevant_documents(
        self,
        query: str,
        *,
        run_manager: CallbackManagerForRetrieverRun,
        k: int | None = None,
        where: Mapping[str, str] | None = None,
    ) -> list[Document]:
        return _run_sync(self._retrieve(query, k, where))

    async def _aget_relevant_documents(
        self,
        query: str,
        *,
        run_manager: AsyncCallbackManagerForRetrieverRun,
        k: int | None = None,
        where: Mapping[str, str] | None = None,
    ) -> list[Document]:
        return await self._retrieve(query, k, where)


def as_langchain_retriever(
    retriever: Any, *, k: int = 5, where: Mapping[str, str] | None = None
) -> SitechatRetriever:
    """Wrap a sitechat retriever (e.g. ``HybridRetriever``) as a LangChain retriever."""
    if not callable(getattr(retriever, "retrieve", None)):
        raise InvalidInputError(
            f"as_langchain_retriever needs a sitechat retriever (with an async retrieve "
            f"method, such as HybridRetriever), not {type(retriever).__name__}."
        )
    return SitechatRetriever(retriever=retriever, k=k, where=dict(where) if where else None)


def _run_sync(coro: Coroutine[Any, Any, T]) -> T:
    """Run ``coro`` to completion from sync code, whether or not a loop is running here."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return asyncio.run(coro)
    with concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="sitechat-sync") as pool:
        return pool.submit(asyncio.run, coro).result()
