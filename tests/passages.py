"""Tiny chunks and search hits for the retrieval tests."""

from __future__ import annotations

from sitechat.models import Chunk, SearchHit, content_hash


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
