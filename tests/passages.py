"""Tiny search hits for the retrieval tests: passage ``n`` of page ``page``."""

from __future__ import annotations

from sitechat.models import Chunk, SearchHit, content_hash


def hit(page: str, n: int, score: float = 1.0) -> SearchHit:
    """A hit on ``https://d/<page>`` whose chunk id is ``<page>-<n>``."""
    text = f"{page} passage {n}"
    chunk = Chunk(
        id=f"{page}-{n}",
        url=f"https://d/{page}",
        title=page,
        heading_path=(),
        anchor=None,
        text=text,
        content_hash=content_hash(text),
    )
    return SearchHit(chunk, score)
