"""The LLM service contract every provider implements.

========================  ==========================================================
Member                    Contract
========================  ==========================================================
``name``                  Class attribute: the provider's registry name (``"openai"``).
``supports_streaming``    Class attribute: False if the provider only returns whole
                          answers; ``stream`` then yields the answer as one delta.
``needs_key``             Class attribute: True if the provider cannot run without a
                          secret; ``key_env_var`` names where it is read from.
``supports_query_``       Class attribute: False if the provider cannot follow an
``rewriting``             instruction (the extractive answerer); follow-up questions
                          are then made standalone without it.
``context_window``        Instance attribute (tokens): what the chat service may fill
                          with history and sources, leaving ``max_output_tokens``.
``retry``                 Instance attribute: a :class:`~sitechat.config.RetrySettings`
                          to have ``stream`` retry failed starts, or None (the default)
                          for a single try.
``_astream(messages)``    **The one method a provider implements.** One try on the
                          wire: an async iterator of text pieces in order (a ``str``
                          each, or an :class:`LLMDelta`) and, when the provider reports
                          it, the usage (once, at any point: an ``LLMDelta``). It raises
                          :class:`~sitechat.errors.ProviderError` subclasses only, and
                          never retries by itself.
``stream(messages)``      Provided: ``_astream`` as :class:`LLMDelta` values, empty
                          ones dropped, retried per
                          ``retry`` until its first text (never after), and a failure
                          after that raised as
                          :class:`~sitechat.errors.StreamInterruptedError` carrying the
                          text so far.
``open_stream``           Provided: the first half of ``stream`` (the retried start),
                          for callers that relay the tokens themselves.
``generate_response``     Provided: the whole answer as ``str``, or with
                          ``stream=True`` an async iterator of text chunks.
``from_settings``         Class method building the provider from
                          :class:`~sitechat.config.Settings`; it reads the
                          provider's own section (``SITECHAT_<NAME>__<FIELD>``) from
                          ``config_class`` and validates it at start-up.
``aclose()``              Release network clients; a no-op by default.
========================  ==========================================================

Messages are LangChain ``BaseMessage`` objects, so prompts built with LangChain work as-is.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import AsyncGenerator, AsyncIterator, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, ClassVar, Literal, Union, overload

from langchain_core.messages import BaseMessage
from pydantic import BaseModel

from sitechat.errors import ProviderError, StreamInterruptedError
from sitechat.llm.retry import close_stream, open_with_retries
from sitechat.models import Usage

if TYPE_CHECKING:
    from typing_extensions import Self

    from sitechat.config import RetrySettings, Settings

__all__ = ["BaseLLMService", "LLMDelta", "OpenedStream", "Piece", "interrupted"]


@dataclass(frozen=True, slots=True)
class LLMDelta:
    """One piece of a streamed answer: some text, and/or the call's usage."""

    text: str = ""
    usage: Usage | None = None


#: What a provider's ``_astream`` yields: a piece of text as a plain ``str`` (the common
#: case, and the cheapest: no object per token), or an :class:`LLMDelta` with text and/or usage.
Piece = Union[str, LLMDelta]


@dataclass(slots=True)
class OpenedStream:
    """A started answer (see :meth:`BaseLLMService.open_stream`).

    ``head`` is what was read while starting it: pieces up to and including the first
    with text, or the whole answer if it had none. ``rest`` yields the remainder.
    """

    head: list[Piece]
    rest: AsyncIterator[Piece]

    async def pieces(self) -> AsyncGenerator[Piece, None]:
        """The whole answer: ``head``, then ``rest``."""
        for piece in self.head:
            yield piece
        async for piece in self.rest:
            yield piece

    async def aclose(self) -> None:
        """Close the provider's stream at once, so an abandoned answer stops consuming tokens."""
        await close_stream(self.rest)


def interrupted(error: ProviderError, provider: str, partial: str) -> StreamInterruptedError:
    """What a failure after the first text becomes: :class:`StreamInterruptedError` with
    the text so far. Callers raise one that already is a ``StreamInterruptedError`` as is."""
    return StreamInterruptedError(
        f"The answer from {provider} broke off after it had started; the text so far is "
        f"kept, ask again for the rest. Cause: {error}",
        provider=error.provider or provider,
        partial=partial,
    )


def _as_delta(piece: Piece) -> LLMDelta | None:
    """A piece as a delta, or None when it carries nothing."""
    if isinstance(piece, str):
        return LLMDelta(piece) if piece else None
    return piece if piece.text or piece.usage is not None else None


class BaseLLMService(ABC):
    """Abstract base of every LLM provider. See the module docstring for the contract."""

    name: ClassVar[str] = ""
    supports_streaming: ClassVar[bool] = True
    needs_key: ClassVar[bool] = False
    key_env_var: ClassVar[str | None] = None
    supports_query_rewriting: ClassVar[bool] = True
    config_class: ClassVar[type[BaseModel] | None] = None

    context_window: int = 8192
    max_output_tokens: int = 1024
    model: str = ""
    retry: RetrySettings | None = None

    @classmethod
    def from_settings(cls, settings: Settings) -> Self:
        """Build the provider from settings. Providers with options override this."""
        return cls()

    @abstractmethod
    def _astream(self, messages: Sequence[BaseMessage]) -> AsyncIterator[Piece]:
        """Yield the answer to ``messages`` as it is produced: ``str`` pieces of text, and
        an :class:`LLMDelta` for usage."""

    async def open_stream(
        self, messages: Sequence[BaseMessage], *, once: bool = False
    ) -> OpenedStream:
        """Start the answer: read it up to its first text, retrying per ``self.retry``
        (``once``: a single try, for optional calls such as rewriting a follow-up).

        The lower-level half of :meth:`stream`, for callers that relay tokens themselves
        (the chat service): it saves every token of the answer a pass through one more
        async generator. Pieces are what ``_astream`` yields, ``str`` or
        :class:`LLMDelta`. The caller must skip empty ones, turn a
        :class:`~sitechat.errors.ProviderError` from ``rest`` into
        :func:`interrupted` (text has been shown by then), and close the stream.
        """
        rest, head = await open_with_retries(
            lambda: self._astream(messages), None if once else self.retry, provider=self.name
        )
        return OpenedStream(head, rest)

    async def stream(self, messages: Sequence[BaseMessage]) -> AsyncGenerator[LLMDelta, None]:
        """Stream the answer; every yielded delta has text or usage.

        Starting the stream is retried per ``self.retry`` up to its first text; after that
        nothing is tried again, since the user has already seen the text, and a failure is
        raised as :class:`~sitechat.errors.StreamInterruptedError` with the text so far.
        """
        opened = await self.open_stream(messages)
        parts: list[str] = []
        try:
            async for piece in opened.pieces():
                delta = _as_delta(piece)
                if delta is not None:
                    if delta.text:
                        parts.append(delta.text)
                    yield delta
        except StreamInterruptedError:
            raise
        except ProviderError as exc:
            raise interrupted(exc, self.name, "".join(parts)) from exc
        finally:
            await opened.aclose()

    @overload
    async def generate_response(
        self, messages: Sequence[BaseMessage], stream: Literal[False] = ...
    ) -> str: ...

    @overload
    async def generate_response(
        self, messages: Sequence[BaseMessage], stream: Literal[True]
    ) -> AsyncIterator[str]: ...

    async def generate_response(
        self, messages: Sequence[BaseMessage], stream: bool = False
    ) -> str | AsyncIterator[str]:
        """Answer ``messages``: the whole text, or an async iterator of text chunks."""
        if stream:
            return self._text_chunks(messages)
        parts = [chunk async for chunk in self._text_chunks(messages)]
        return "".join(parts)

    async def _text_chunks(self, messages: Sequence[BaseMessage]) -> AsyncIterator[str]:
        deltas = self.stream(messages)
        try:
            async for delta in deltas:
                if delta.text:
                    yield delta.text
        finally:
            await deltas.aclose()

    async def aclose(self) -> None:
        """Release any network client the provider holds."""

    def describe(self) -> str:
        """A one-line, secret-free description for logs and UIs: ``provider/model``."""
        return f"{self.name}/{self.model}" if self.model else self.name
