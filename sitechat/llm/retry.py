"""Retry policy: when to try again, and how long to wait.

The rule that shapes everything here: **once a token has been yielded, nothing is tried
again**, because a retry would repeat text the user has already seen. So a stream is
retried only while it is being opened, up to and including its first piece of text
(:func:`open_with_retries`, which :meth:`~sitechat.llm.base.BaseLLMService.stream` uses
for every provider); a failure after that ends the stream with
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
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import TYPE_CHECKING, TypeVar

from sitechat.errors import ProviderError

if TYPE_CHECKING:
    from sitechat.config import RetrySettings
    from sitechat.llm.base import Piece

__all__ = ["close_stream", "open_with_retries", "retry_call", "retry_call_sync"]

logger = logging.getLogger(__name__)

T = TypeVar("T")


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
    open_stream: Callable[[], AsyncIterator[Piece]],
) -> tuple[AsyncIterator[Piece], list[Piece]]:
    """Start a stream and read up to its first text; the part that may be retried."""
    stream = open_stream()
    head: list[Piece] = []
    try:
        async for piece in stream:
            head.append(piece)
            if piece if isinstance(piece, str) else piece.text:
                break
    except BaseException:
        await close_stream(stream)
        raise
    return stream, head


async def close_stream(stream: AsyncIterator[Piece]) -> None:
    """Close a provider's stream now, not whenever it is garbage-collected, so an abandoned
    answer stops consuming tokens at once (an iterator without ``aclose`` needs nothing)."""
    closer = getattr(stream, "aclose", None)
    if closer is not None:
        await closer()


async def open_with_retries(
    open_stream: Callable[[], AsyncIterator[Piece]],
    policy: RetrySettings | None,
    *,
    provider: str,
) -> tuple[AsyncIterator[Piece], list[Piece]]:
    """``open_stream()`` read up to its first text, retried per ``policy`` (None: one try).

    Returns the open stream and what was read of it. ``open_stream`` must raise
    :class:`ProviderError`s only. This is how
    :meth:`~sitechat.llm.base.BaseLLMService.stream` starts every answer.
    """
    if policy is None:
        return await _open_until_first_text(open_stream)
    return await retry_call(lambda: _open_until_first_text(open_stream), policy, provider=provider)
