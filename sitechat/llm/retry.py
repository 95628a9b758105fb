"""Retries before the first token, and failover between providers.

The rule that shapes everything here: **once a token has been yielded, nothing is tried
again**, because a retry would repeat text the user has already seen. So a stream is
retried only while it is being opened, up to and including its first piece of text
(:func:`retry_stream`); a failure after that ends the stream with
:class:`~sitechat.errors.StreamInterruptedError` carrying the partial answer.

Waits follow :class:`~sitechat.config.RetrySettings`: exponential backoff from
``initial_backoff`` capped at ``max_backoff``, with jitter, never shorter than the
server's ``Retry-After``, and no new attempt once ``deadline`` seconds would have passed.
Only errors whose class says ``retryable`` (rate limits, timeouts, 5xx and broken
connections) are retried.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections.abc import AsyncGenerator, Awaitable, Callable, Sequence
from typing import TypeVar

from langchain_core.messages import BaseMessage

from sitechat.config import RetrySettings
from sitechat.errors import ProviderError, StreamInterruptedError
from sitechat.llm.base import BaseLLMService, LLMDelta

__all__ = ["FailoverLLMService", "retry_call", "retry_call_sync", "retry_stream"]

logger = logging.getLogger(__name__)

T = TypeVar("T")
DeltaStream = AsyncGenerator[LLMDelta, None]


def _backoff(policy: RetrySettings, failed_attempts: int, error: BaseException | None) -> float:
    """Seconds to wait after ``failed_attempts`` tries, the last of which raised ``error``."""
    wait = policy.initial_backoff * 2.0 ** (failed_attempts - 1)
    if policy.jitter:
        wait += random.uniform(0.0, policy.initial_backoff)  # noqa: S311 - not crypto
    wait = min(wait, policy.max_backoff)
    retry_after = getattr(error, "retry_after", None)
    return max(wait, float(retry_after)) if retry_after is not None else wait


def _warn_retry(
    provider: str, policy: RetrySettings, attempt: int, wait: float, error: BaseException | None
) -> None:
    logger.warning(
        "%s failed with %s (attempt %d of %d); retrying in %.2fs: %s",
        provider,
        type(error).__name__,
        attempt,
        policy.max_attempts,
        wait,
        error,
    )


def _wait_before_retry(
    policy: RetrySettings, provider: str, attempt: int, error: ProviderError, started: float
) -> float | None:
    """Seconds to wait before try ``attempt + 1`` after ``error``, or None to give up.

    Give up on errors that are not ``retryable``, after ``max_attempts`` tries, and when
    the wait would end past ``deadline`` seconds from the first try; else say so in the log.
    """
    if not error.retryable or attempt >= policy.max_attempts:
        return None
    wait = _backoff(policy, attempt, error)
    if time.monotonic() - started + wait >= policy.deadline:
        return None
    _warn_retry(provider, policy, attempt, wait, error)
    return wait


async def retry_call(
    call: Callable[[], Awaitable[T]], policy: RetrySettings, *, provider: str
) -> T:
    """Await ``call()``, trying again on retryable :class:`ProviderError`s per ``policy``.

    A plain loop: this runs once per answer and per embedding batch, and the first try
    (almost always the only one) should cost nothing but the call.
    """
    started = time.monotonic()
    attempt = 1
    while True:
        try:
            return await call()
        except ProviderError as exc:
            wait = _wait_before_retry(policy, provider, attempt, exc, started)
            if wait is None:
                raise
        await asyncio.sleep(wait)
        attempt += 1


def retry_call_sync(call: Callable[[], T], policy: RetrySettings, *, provider: str) -> T:
    """:func:`retry_call` for blocking code (LangChain's sync ``embed_documents``)."""
    started = time.monotonic()
    attempt = 1
    while True:
        try:
            return call()
        except ProviderError as exc:
            wait = _wait_before_retry(policy, provider, attempt, exc, started)
            if wait is None:
                raise
        time.sleep(wait)
        attempt += 1


async def _open_until_first_text(
    open_stream: Callable[[], DeltaStream],
) -> tuple[DeltaStream, list[LLMDelta]]:
    """Start a stream and read up to its first text; the part that may be retried."""
    stream = open_stream()
    head: list[LLMDelta] = []
    try:
        async for delta in stream:
            head.append(delta)
            if delta.text:
                break
    except BaseException:
        await stream.aclose()
        raise
    return stream, head


async def retry_stream(
    open_stream: Callable[[], DeltaStream], policy: RetrySettings, *, provider: str
) -> DeltaStream:
    """Stream from ``open_stream()``, retrying per ``policy`` until the first text arrives.

    ``open_stream`` must raise :class:`ProviderError`s only. After the first text, a
    failure becomes :class:`StreamInterruptedError` with the text so far in ``partial``.
    """
    stream, head = await retry_call(
        lambda: _open_until_first_text(open_stream), policy, provider=provider
    )
    parts: list[str] = []
    try:
        for delta in head:
            if delta.text:
                parts.append(delta.text)
            yield delta
        async for delta in stream:
            if delta.text:
                parts.append(delta.text)
            yield delta
    except StreamInterruptedError:
        raise
    except ProviderError as exc:
        raise StreamInterruptedError(
            f"The answer from {provider} broke off after it had started; the text so far "
            f"is kept, ask again for the rest. Cause: {exc}",
            provider=exc.provider or provider,
            partial="".join(parts),
        ) from exc
    finally:
        await stream.aclose()


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

    async def _astream(self, messages: Sequence[BaseMessage]) -> DeltaStream:
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
