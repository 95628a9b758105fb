"""The typed event stream a chat produces, for UIs, CLIs and notebooks.

A stream is always ``SourcesEvent``, then zero or more ``TokenEvent``, then exactly one
of ``DoneEvent`` or ``ErrorEvent``. Match on the class or on ``kind``::

    async for event in chat.stream_events("How do I install it?"):
        if isinstance(event, TokenEvent):
            print(event.text, end="")
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, Union

from sitechat.models import Source, Timings, Usage

__all__ = ["ChatEvent", "DoneEvent", "ErrorEvent", "SourcesEvent", "TokenEvent"]


@dataclass(frozen=True, slots=True)
class SourcesEvent:
    """The numbered sources the answer may cite; empty when retrieval found nothing relevant."""

    sources: tuple[Source, ...]
    query: str = ""
    kind: Literal["sources"] = "sources"


@dataclass(frozen=True, slots=True)
class TokenEvent:
    """A piece of the answer text, in order."""

    text: str
    kind: Literal["token"] = "token"


@dataclass(frozen=True, slots=True)
class DoneEvent:
    """The answer finished.

    ``cited`` holds the source numbers the answer actually cites (unknown numbers are
    dropped); ``covered`` is False when the site had nothing relevant and the answer says so.
    """

    answer: str
    cited: tuple[int, ...]
    timings: Timings
    usage: Usage | None = None
    covered: bool = True
    kind: Literal["done"] = "done"


@dataclass(frozen=True, slots=True)
class ErrorEvent:
    """The answer failed; ``partial`` keeps any text that had already streamed.

    ``message`` is safe to show to a user (no secrets, no traceback); ``error_type``
    names the sitechat error class, e.g. ``RateLimitError``. ``provider`` names the provider
    that failed, and ``retry_after`` is the wait in seconds the provider asked for before
    the next request (a throttled call's ``Retry-After``), when it said.
    """

    message: str
    error_type: str
    partial: str = ""
    timings: Timings | None = None
    provider: str = ""
    retry_after: float | None = None
    kind: Literal["error"] = "error"


ChatEvent = Union[SourcesEvent, TokenEvent, DoneEvent, ErrorEvent]
