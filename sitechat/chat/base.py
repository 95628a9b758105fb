"""The chat service contract.

================================  ==================================================
Member                            Contract
================================  ==================================================
``name``                          Class attribute: registry name (``"retrieval"``).
``stream_events(message,          **The one method a service implements.** An async
history)``                        iterator of :data:`~sitechat.events.ChatEvent`:
                                  ``SourcesEvent``, then ``TokenEvent`` s, then one
                                  ``DoneEvent`` or ``ErrorEvent``. It never raises for
                                  provider failures (they become ``ErrorEvent``); it
                                  raises :class:`~sitechat.errors.InvalidInputError`
                                  before the first event for an empty or oversized
                                  message or a malformed history. Closing the
                                  iterator early cancels the provider stream.
``process_message(message,        Provided: the answer text, or with ``stream=True`` an
history, stream=False)``          async iterator of text chunks. A failure raises the
                                  mapped ``ProviderError`` subclass with the event's
                                  message, ``provider``, ``retry_after`` and (for
                                  ``StreamInterruptedError``) ``partial`` text.
``from_components``               Class method used by the registry to build the
                                  service from the configured LLM, embedder and store.
``aclose()``                      Release the LLM and store.
================================  ==================================================

``history`` is the conversation so far, oldest first, as
:class:`~sitechat.models.ChatMessage` values, LangChain messages, or
``{"role": ..., "content": ...}`` mappings (see
:func:`~sitechat.chat.history.normalize_history`).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import AsyncGenerator, AsyncIterator, Mapping, Sequence
from typing import TYPE_CHECKING, ClassVar, Literal, Union, overload

from langchain_core.messages import BaseMessage

from sitechat.errors import ProviderError, SitechatError, StreamInterruptedError
from sitechat.events import ChatEvent, ErrorEvent, TokenEvent
from sitechat.models import ChatMessage

if TYPE_CHECKING:
    from langchain_core.embeddings import Embeddings
    from typing_extensions import Self

    from sitechat.config import Settings
    from sitechat.llm.base import BaseLLMService
    from sitechat.vectorstores.base import VectorStore

__all__ = ["ChatService", "HistoryItem", "HistoryLike"]

#: One message of a conversation: a sitechat ``ChatMessage``, a LangChain message, or an
#: OpenAI-style ``{"role": "user", "content": "..."}`` mapping.
HistoryItem = Union[ChatMessage, BaseMessage, Mapping[str, str]]
HistoryLike = Sequence[HistoryItem]


class ChatService(ABC):
    """Abstract base of chat services. See the module docstring for the contract."""

    name: ClassVar[str] = ""

    @classmethod
    @abstractmethod
    def from_components(
        cls,
        settings: Settings,
        *,
        llm: BaseLLMService,
        embeddings: Embeddings,
        store: VectorStore,
    ) -> Self:
        """Build the service from configured parts."""

    @abstractmethod
    def stream_events(
        self, message: str, history: HistoryLike = ()
    ) -> AsyncGenerator[ChatEvent, None]:
        """Answer ``message`` given ``history``, as a stream of events."""

    @overload
    async def process_message(
        self, message: str, history: HistoryLike = ..., stream: Literal[False] = ...
    ) -> str: ...

    @overload
    async def process_message(
        self, message: str, history: HistoryLike = ..., *, stream: Literal[True]
    ) -> AsyncIterator[str]: ...

    async def process_message(
        self, message: str, history: HistoryLike = (), stream: bool = False
    ) -> str | AsyncIterator[str]:
        """Answer ``message``: the whole text, or an async iterator of text chunks."""
        if stream:
            return self._text_stream(message, history)
        return "".join([part async for part in self._text_stream(message, history)])

    async def _text_stream(self, message: str, history: HistoryLike) -> AsyncIterator[str]:
        events = self.stream_events(message, history)
        try:
            async for event in events:
                if isinstance(event, TokenEvent):
                    yield event.text
                elif isinstance(event, ErrorEvent):
                    raise _error_from_event(event)
        finally:
            await events.aclose()

    async def aclose(self) -> None:
        """Release the service's resources."""


def _error_from_event(event: ErrorEvent) -> SitechatError:
    """The exception an ``ErrorEvent`` stands for, with everything the event carries."""
    from sitechat import errors

    cls = getattr(errors, event.error_type, None)
    if isinstance(cls, type) and issubclass(cls, StreamInterruptedError):
        return cls(event.message, provider=event.provider, partial=event.partial)
    if isinstance(cls, type) and issubclass(cls, ProviderError):
        return cls(event.message, provider=event.provider, retry_after=event.retry_after)
    return SitechatError(event.message)
