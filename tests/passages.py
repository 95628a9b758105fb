"""Tiny chunks, search hits and one-passage stores for the retrieval and chat tests."""

from __future__ import annotations

from collections.abc import Mapping

from sitechat.models import Chunk, SearchHit, content_hash
from sitechat.testing.fakes import FakeEmbeddings, InMemoryVectorStore
from sitechat.vectorstores.base import EmbedderInfo


def passage(text: str, chunk_id: str = "c", *, url: str = "https://d/p", title: str = "") -> Chunk:
    """A chunk of ``text`` with no headings or anchor."""
    return Chunk(
        id=chunk_id,
        url=url,
        title=title,
        heading_path=(),
        anchor=None,
        text=text,
        content_hash=content_hash(text),
    )


def hit(page: str, n: int, score: float = 1.0) -> SearchHit:
    """A hit on passage ``n`` of ``https://d/<page>``; its chunk id is ``<page>-<n>``."""
    chunk = passage(f"{page} passage {n}", f"{page}-{n}", url=f"https://d/{page}", title=page)
    return SearchHit(chunk, score)


async def passage_store(
    pages: Mapping[str, tuple[str, str, str]],
) -> tuple[InMemoryVectorStore, FakeEmbeddings]:
    """An in-memory store with one passage per ``url: (title, anchor, text)`` (ids ``c0``,
    ``c1``…), and the embedder that indexed them."""
    embeddings = FakeEmbeddings()
    store = InMemoryVectorStore(EmbedderInfo(embeddings.embedder_name, embeddings.dimension))
    chunks = [
        Chunk(
            id=f"c{i}",
            url=url,
            title=title,
            heading_path=(title,),
            anchor=anchor,
            text=text,
            content_hash=content_hash(text),
        )
        for i, (url, (title, anchor, text)) in enumerate(pages.items())
    ]
    await store.upsert(chunks, embeddings.embed_documents([c.text for c in chunks]))
    return store, embeddings
