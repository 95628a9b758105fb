"""Failover between providers, in order, before the first token only."""

from __future__ import annotations

import logging
from collections.abc import AsyncGenerator, Sequence

from langchain_core.messages import BaseMessage

from sitechat.errors import ProviderError, StreamInterruptedError
from sitechat.llm.base import BaseLLMService, OpenedStream, Piece, interrupted

__all__ = ["FailoverLLMService"]

logger = logging.getLogger(__name__)


class FailoverLLMService(BaseLLMService):
    """Tries ``services`` in order; moves to the next only if one fails before its first token.

    Each service applies its own retries first (none when the stream is opened ``once``).
    Once any text has streamed, a failure is final (raised as the service's
    :class:`StreamInterruptedError`), so no answer is ever stitched from two models.
    When every service fails, the last error's class is raised with every reason listed.
    """

    name = "failover"

    def __init__(self, services: Sequence[BaseLLMService]) -> None:
        if not services:
            raise ValueError("FailoverLLMService needs at least one service.")
        self.services: tuple[BaseLLMService, ...] = tuple(services)
        primary = self.services[0]
        self.model = primary.model
        self.context_window = min(s.context_window for s in self.services)
        self.max_output_tokens = min(s.max_output_tokens for s in self.services)

    async def open_stream(
        self, messages: Sequence[BaseMessage], *, once: bool = False
    ) -> OpenedStream:
        """Start the answer with the first service that reaches its first text, each with
        its own retries (``once``: a single try of each, for optional calls such as
        rewriting a follow-up)."""
        failures: list[tuple[BaseLLMService, ProviderError]] = []
        for index, service in enumerate(self.services):
            try:
                opened = await service.open_stream(messages, once=once)
            except StreamInterruptedError:
                raise
            except ProviderError as exc:
                failures.append((service, exc))
                if index + 1 < len(self.services):
                    logger.warning(
                        "%s failed before its first token (%s); failing over to %s",
                        service.describe(),
                        type(exc).__name__,
                        self.services[index + 1].describe(),
                    )
                continue
            return OpenedStream(opened.head, _Relay(service, opened))
        raise _all_failed(failures)

    async def _astream(self, messages: Sequence[BaseMessage]) -> AsyncGenerator[Piece, None]:
        opened = await self.open_stream(messages)
        try:
            async for piece in opened.pieces():
                yield piece
        finally:
            await opened.aclose()

    async def aclose(self) -> None:
        """Close every wrapped service."""
        for service in self.services:
            await service.aclose()

    def describe(self) -> str:
        """The chain, e.g. ``bedrock/claude → openai/gpt-4o-mini``."""
        return " → ".join(s.describe() for s in self.services)


class _Relay:
    """The rest of ``service``'s started answer. A failure in it is final, raised as the
    service's own :class:`StreamInterruptedError` with the text so far; closing the relay
    closes the service's stream, whether or not it was read."""

    def __init__(self, service: BaseLLMService, opened: OpenedStream) -> None:
        self._service = service
        self._opened = opened
        self._rest = opened.rest
        self._parts = [piece if isinstance(piece, str) else piece.text for piece in opened.head]

    def __aiter__(self) -> _Relay:
        return self

    async def __anext__(self) -> Piece:
        try:
            piece = await self._rest.__anext__()
        except (StopAsyncIteration, StreamInterruptedError):
            raise
        except ProviderError as exc:
            raise interrupted(exc, self._service.name, "".join(self._parts)) from exc
        self._parts.append(piece if isinstance(piece, str) else piece.text)
        return piece

    async def aclose(self) -> None:
        await self._opened.aclose()


def _all_failed(failures: list[tuple[BaseLLMService, ProviderError]]) -> ProviderError:
    last = failures[-1][1]
    if len(failures) == 1:
        return last
    reasons = "; ".join(f"{service.describe()}: {error}" for service, error in failures)
    combined = type(last)(
        f"All {len(failures)} providers failed. {reasons}",
        provider=last.provider,
        retry_after=last.retry_after,
    )
    combined.__cause__ = last
    return combined
