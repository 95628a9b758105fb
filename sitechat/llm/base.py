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
``_astream(messages)``    **The one method a provider implements.** An async iterator
                          of :class:`LLMDelta`: text in order, and usage (once, at
                          any point) when the provider reports it. It raises
                          :class:`~sitechat.errors.ProviderError` subclasses only.
``stream(messages)``      Provided: ``_astream`` with empty deltas dropped.
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
from typing import TYPE_CHECKING, ClassVar, Literal, overload

from langchain_core.messages import BaseMessage
from pydantic import BaseModel

from sitechat.models import Usage

if TYPE_CHECKING:
    from typing_extensions import Self

    from sitechat.config import Settings

__all__ = ["BaseLLMService", "LLMDelta"]


@dataclass(frozen=True, slots=True)
class LLMDelta:
    """One piece of a streamed answer: some text, and/or the call's usage."""

    text: str = ""
    usage: Usage | None = None


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

    @classmethod
    def from_settings(cls, settings: Settings) -> Self:
        """Build the provider from settings. Providers with options override this."""
        return cls()

    @abstractmethod
    def _astream(self, messages: Sequence[BaseMessage]) -> AsyncIterator[LLMDelta]:
        """Yield the answer to ``messages`` as it is produced."""

    async def stream(self, messages: Sequence[BaseMessage]) -> AsyncGenerator[LLMDelta, None]:
        """Stream the answer; every yielded delta has text or usage."""
        inner = self._astream(messages)
        try:
            async for delta in inner:
                if delta.text or delta.usage is not None:
                    yield delta
        finally:
            # close the provider's stream now, not whenever it is garbage-collected, so an
            # abandoned answer stops consuming tokens at once
            closer = getattr(inner, "aclose", None)
            if closer is not None:
                await closer()

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
