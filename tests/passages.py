"""Tiny chunks, search hits and one-passage stores for the retrieval and chat tests."""

from __future__ import annotations

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


async def one_passage_store(
    text: str, *, url: str, title: str, anchor: str
) -> tuple[InMemoryVectorStore, FakeEmbeddings]:
    """An in-memory store holding one passage of ``text``, and the embedder that indexed it."""
    embeddings = FakeEmbeddings()
    store = InMemoryVectorStore(EmbedderInfo(embeddings.embedder_name, embeddings.dimension))
    chunk = Chunk(
        id="c0",
        url=url,
        title=title,
        heading_path=(title,),
        anchor=anchor,
        text=text,
        content_hash=content_hash(text),
    )
    await store.upsert([chunk], embeddings.embed_documents([text]))
    return store, embeddings
