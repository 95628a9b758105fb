"""Failover between providers, in order, before the first token only."""

from __future__ import annotations

import logging
from collections.abc import AsyncGenerator, Sequence

from langchain_core.messages import BaseMessage

from sitechat.errors import ProviderError, StreamInterruptedError
from sitechat.llm.base import BaseLLMService, LLMDelta

__all__ = ["FailoverLLMService"]

logger = logging.getLogger(__name__)


class FailoverLLMService(BaseLLMService):
    """Tries ``services`` in order; moves to the next only if one fails before its first token.

    Each service applies its own retries first. Once any text has streamed, a failure is
    final (raised as the service raised it), so no answer is ever stitched from two models.
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

    async def _astream(self, messages: Sequence[BaseMessage]) -> AsyncGenerator[LLMDelta, None]:
        failures: list[tuple[BaseLLMService, ProviderError]] = []
        for index, service in enumerate(self.services):
            stream = service.stream(messages)
            started = False
            try:
                async for delta in stream:
                    started = started or bool(delta.text)
                    yield delta
                return
            except ProviderError as exc:
                if started or isinstance(exc, StreamInterruptedError):
                    raise
                failures.append((service, exc))
                if index + 1 < len(self.services):
                    logger.warning(
                        "%s failed before its first token (%s); failing over to %s",
                        service.describe(),
                        type(exc).__name__,
                        self.services[index + 1].describe(),
                    )
            finally:
                await stream.aclose()
        raise _all_failed(failures)

    async def aclose(self) -> None:
        """Close every wrapped service."""
        for service in self.services:
            await service.aclose()

    def describe(self) -> str:
        """The chain, e.g. ``bedrock/claude → openai/gpt-4o-mini``."""
        return " → ".join(s.describe() for s in self.services)


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
