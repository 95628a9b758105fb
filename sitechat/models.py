"""The values that flow through sitechat: pages, chunks, hits, sources, messages.

All are frozen dataclasses: they are safe to share between concurrent chats and
to cache, and a function that receives one cannot change it behind the caller's back.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Literal

__all__ = [
    "Answer",
    "ChatMessage",
    "Chunk",
    "Page",
    "Role",
    "SearchHit",
    "Section",
    "Source",
    "Timings",
    "Usage",
    "content_hash",
    "deep_link",
]

Role = Literal["user", "assistant", "system"]

_EMPTY: Mapping[str, str] = MappingProxyType({})


def content_hash(text: str) -> str:
    """Return the stable hash sitechat uses to notice changed text (hex SHA-256, 32 chars)."""
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:32]


def deep_link(url: str, anchor: str | None) -> str:
    """Join a page URL and a heading anchor into ``url#anchor`` (or the bare URL)."""
    base = url.split("#", 1)[0]
    return f"{base}#{anchor}" if anchor else base


@dataclass(frozen=True, slots=True)
class Section:
    """A run of a page's main content under one heading.

    ``heading_path`` lists the headings from the page's top level down to this one;
    ``anchor`` is the id of the nearest heading, so a citation can link to it.
    """

    heading_path: tuple[str, ...]
    anchor: str | None
    text: str


@dataclass(frozen=True, slots=True)
class Page:
    """One fetched or read document after main-content extraction."""

    url: str
    title: str
    sections: tuple[Section, ...]
    content_type: str = "text/html"
    etag: str | None = None
    last_modified: str | None = None

    @property
    def text(self) -> str:
        """The page's main content as plain text, sections separated by blank lines."""
        return "\n\n".join(s.text for s in self.sections if s.text)

    @property
    def content_hash(self) -> str:
        """Hash of the title and main content: unchanged pages are skipped on re-ingest."""
        return content_hash(self.title + "\x00" + self.text)


@dataclass(frozen=True, slots=True)
class Chunk:
    """A retrievable passage: a bounded piece of one section of one page.

    ``id`` is stable for the same text at the same place, so re-ingesting an
    unchanged page produces the same ids and nothing is embedded twice.
    """

    id: str
    url: str
    title: str
    heading_path: tuple[str, ...]
    anchor: str | None
    text: str
    content_hash: str
    page_hash: str = ""
    metadata: Mapping[str, str] = field(default_factory=lambda: _EMPTY)

    @property
    def link(self) -> str:
        """The deep link to this chunk: ``url#anchor`` when the heading has an id."""
        return deep_link(self.url, self.anchor)

    @property
    def heading(self) -> str:
        """The heading path joined for display, e.g. ``Install › From source``."""
        return " › ".join(self.heading_path)

    @property
    def searchable_text(self) -> str:
        """Title, headings and text, one per line: what embedders read, so a passage
        carries its page's and section's topic."""
        return "\n".join(part for part in (self.title, self.heading, self.text) if part)


@dataclass(frozen=True, slots=True)
class SearchHit:
    """A chunk returned by a search, with its score (higher is better)."""

    chunk: Chunk
    score: float


@dataclass(frozen=True, slots=True)
class Source:
    """A numbered source shown with an answer; ``n`` is the number cited as ``[n]``."""

    n: int
    title: str
    url: str
    snippet: str
    score: float
    chunk_id: str = ""
    heading: str = ""


@dataclass(frozen=True, slots=True)
class ChatMessage:
    """One turn of a conversation."""

    role: Role
    content: str


@dataclass(frozen=True, slots=True)
class Usage:
    """Tokens consumed by one LLM call, as the provider reported them."""

    input_tokens: int = 0
    output_tokens: int = 0

    @property
    def total_tokens(self) -> int:
        return self.input_tokens + self.output_tokens

    def __add__(self, other: Usage) -> Usage:
        return Usage(
            self.input_tokens + other.input_tokens, self.output_tokens + other.output_tokens
        )


@dataclass(frozen=True, slots=True)
class Timings:
    """Where the time of one answer went, in milliseconds."""

    retrieval_ms: float = 0.0
    first_token_ms: float | None = None
    total_ms: float = 0.0
    tokens_per_second: float | None = None


@dataclass(frozen=True, slots=True)
class Answer:
    """A finished answer, as returned by the blocking ``SiteChat.ask``.

    ``error`` is None on success; on failure it holds a message safe to show and ``text``
    keeps whatever had streamed before the failure, ``provider`` names the provider that
    failed and ``retry_after`` is the wait in seconds it asked for, when it said (as on
    :class:`~sitechat.events.ErrorEvent`).
    """

    question: str
    text: str
    sources: tuple[Source, ...]
    cited: tuple[int, ...]
    covered: bool
    usage: Usage | None = None
    timings: Timings | None = None
    error: str | None = None
    error_type: str | None = None
    provider: str | None = None
    retry_after: float | None = None

    @property
    def cited_sources(self) -> tuple[Source, ...]:
        """The sources the answer actually cites, in source-number order."""
        wanted = set(self.cited)
        return tuple(s for s in self.sources if s.n in wanted)
