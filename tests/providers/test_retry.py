"""Retries before the first token, never after; failover between providers in order."""

from __future__ import annotations

from collections.abc import AsyncGenerator, Callable, Sequence
from typing import Any

import httpx
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from langchain_core.messages import BaseMessage, HumanMessage

from sitechat.config import RetrySettings
from sitechat.errors import (
    AuthenticationError,
    ProviderError,
    RateLimitError,
    ServiceUnavailableError,
    StreamInterruptedError,
)
from sitechat.llm.base import BaseLLMService, LLMDelta
from sitechat.llm.bedrock import BedrockLLMService
from sitechat.llm.failover import FailoverLLMService
from sitechat.llm.openai import OpenAILLMService
from sitechat.llm.retry import (
    _backoff,
    retry_call,
    retry_call_sync,
)
from sitechat.testing.bedrock_server import BedrockFaults, BedrockRuntimeServer
from sitechat.testing.openai_server import OpenAICompatibleServer, OpenAIFaults, Reply

QUESTION = [HumanMessage("hi")]
FAST = RetrySettings(max_attempts=4, initial_backoff=0.0, max_backoff=0.0, deadline=10)

Attempt = list[str | ProviderError]


class ScriptedLLM(BaseLLMService):
    """An in-memory provider: each call plays the next attempt (texts, then maybe an error)."""

    def __init__(self, name: str, attempts: Sequence[Attempt], retry: RetrySettings = FAST) -> None:
        self.label = name
        self.attempts = list(attempts)
        self.calls = 0
        self.retry = retry

    def describe(self) -> str:
        return self.label

    async def _astream(self, messages: Sequence[BaseMessage]) -> AsyncGenerator[LLMDelta, None]:
        script = self.attempts[min(self.calls, len(self.attempts) - 1)]
        self.calls += 1
        for step in script:
            if isinstance(step, ProviderError):
                raise step
            yield LLMDelta(step)


async def _answer(service: BaseLLMService) -> str:
    return await service.generate_response(QUESTION)


async def test_retryable_error_before_first_token_is_retried() -> None:
    """Rate limits and 5xx before any text are tried again."""
    llm = ScriptedLLM(
        "a", [[RateLimitError("slow down")], [ServiceUnavailableError("down")], ["ok"]]
    )
    assert await _answer(llm) == "ok"
    assert llm.calls == 3


async def test_plain_str_pieces_are_retried_and_streamed_as_deltas() -> None:
    """A provider may yield str pieces; stream() retries its start and yields LLMDeltas."""

    class Plain(ScriptedLLM):
        async def _astream(self, messages: Sequence[BaseMessage]) -> AsyncGenerator[str, None]:
            self.calls += 1
            if self.calls == 1:
                yield ""
                raise ServiceUnavailableError("down")
            yield "o"
            yield ""
            yield "k"

    llm = Plain("a", [[]])
    deltas = [delta async for delta in llm.stream(QUESTION)]
    assert deltas == [LLMDelta("o"), LLMDelta("k")]
    assert llm.calls == 2


async def test_no_retry_policy_means_one_try() -> None:
    """A provider that leaves retry unset is tried once."""
    llm = ScriptedLLM("a", [[ServiceUnavailableError("down")], ["ok"]])
    llm.retry = None
    with pytest.raises(ServiceUnavailableError):
        await _answer(llm)
    assert llm.calls == 1


async def test_non_retryable_error_is_raised_at_once() -> None:
    """Authentication failures are not retried."""
    llm = ScriptedLLM("a", [[AuthenticationError("bad key")], ["never"]])
    with pytest.raises(AuthenticationError):
        await _answer(llm)
    assert llm.calls == 1


@settings(max_examples=40, deadline=None)
@given(
    tokens=st.lists(st.text(min_size=1, max_size=5), min_size=1, max_size=6),
    break_at=st.integers(min_value=1, max_value=6),
)
async def test_failure_after_first_token_is_never_retried(tokens: list[str], break_at: int) -> None:
    """Whatever streamed before the break is the partial text, and only one attempt ran."""
    cut = min(break_at, len(tokens))
    llm = ScriptedLLM("a", [[*tokens[:cut], ServiceUnavailableError("gone")], ["retried"]])
    with pytest.raises(StreamInterruptedError) as caught:
        await _answer(llm)
    assert caught.value.partial == "".join(tokens[:cut])
    assert llm.calls == 1


async def test_usage_only_delta_before_text_still_allows_retry() -> None:
    """The first token is the first text, not the first delta."""

    class UsageFirst(ScriptedLLM):
        async def _astream(self, messages: Sequence[BaseMessage]) -> AsyncGenerator[LLMDelta, None]:
            self.calls += 1
            if self.calls == 1:
                yield LLMDelta(usage=None)
                raise ServiceUnavailableError("down")
            yield LLMDelta("ok")

    llm = UsageFirst("a", [[]])
    assert await _answer(llm) == "ok"
    assert llm.calls == 2


async def test_max_attempts_bounds_the_tries() -> None:
    """max_attempts counts every try, the first included."""
    llm = ScriptedLLM(
        "a", [[ServiceUnavailableError("down")]], RetrySettings(max_attempts=2, initial_backoff=0)
    )
    with pytest.raises(ServiceUnavailableError):
        await _answer(llm)
    assert llm.calls == 2


def _wait_for(policy: RetrySettings, attempt: int, error: BaseException) -> float:
    return _backoff(policy, attempt, error)


@given(attempt=st.integers(min_value=1, max_value=12), retry_after=st.none() | st.floats(0, 100))
def test_backoff_is_capped_and_never_shorter_than_retry_after(
    attempt: int, retry_after: float | None
) -> None:
    """The wait grows exponentially up to max_backoff, but always honours Retry-After."""
    policy = RetrySettings(initial_backoff=0.5, max_backoff=8.0, jitter=True)
    wait = _wait_for(policy, attempt, RateLimitError("x", retry_after=retry_after))
    base = 0.5 * 2 ** (attempt - 1)
    assert wait >= (retry_after or 0.0)
    if retry_after is None:
        assert min(base, 8.0) <= wait <= min(base + 0.5, 8.0)


def test_backoff_without_jitter_doubles() -> None:
    """With jitter off the waits are exactly initial, 2×initial, 4×initial…"""
    policy = RetrySettings(initial_backoff=0.25, max_backoff=1.0, jitter=False)
    waits = [_wait_for(policy, n, ServiceUnavailableError("x")) for n in (1, 2, 3, 4)]
    assert waits == [0.25, 0.5, 1.0, 1.0]


async def test_retry_call_retries_coroutines() -> None:
    """retry_call awaits each try and retries retryable failures."""
    calls = 0

    async def flaky() -> str:
        nonlocal calls
        calls += 1
        if calls < 3:
            raise RateLimitError("slow")
        return "done"

    assert await retry_call(lambda: flaky(), FAST, provider="x") == "done"
    assert calls == 3


async def test_retry_call_waits_retry_after_and_logs_each_retry(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """Between tries the async path sleeps at least the server's Retry-After, and says so."""
    import asyncio

    waits: list[float] = []

    async def no_sleep(delay: float) -> None:
        waits.append(delay)

    monkeypatch.setattr(asyncio, "sleep", no_sleep)
    failures = [RateLimitError("slow", retry_after=7.0), ServiceUnavailableError("down")]

    async def flaky() -> str:
        if failures:
            raise failures.pop(0)
        return "done"

    policy = RetrySettings(max_attempts=3, initial_backoff=0.5, jitter=False, deadline=60)
    with caplog.at_level("WARNING", logger="sitechat.llm.retry"):
        assert await retry_call(lambda: flaky(), policy, provider="p") == "done"
    assert waits == [7.0, 1.0]
    assert [r.getMessage().split(";")[0] for r in caplog.records] == [
        "p failed with RateLimitError (attempt 1 of 3)",
        "p failed with ServiceUnavailableError (attempt 2 of 3)",
    ]


def test_retry_call_sync_follows_the_same_rules(monkeypatch: pytest.MonkeyPatch) -> None:
    """The blocking loop waits Retry-After, then stops at max_attempts like the async one."""
    import time

    waits: list[float] = []
    monkeypatch.setattr(time, "sleep", waits.append)
    calls = 0

    def down() -> str:
        nonlocal calls
        calls += 1
        raise RateLimitError("slow", retry_after=2.0)

    policy = RetrySettings(max_attempts=3, initial_backoff=0.5, jitter=False, deadline=60)
    with pytest.raises(RateLimitError):
        retry_call_sync(down, policy, provider="p")
    assert calls == 3
    assert waits == [2.0, 2.0]


async def test_retry_call_gives_up_when_the_wait_would_pass_the_deadline() -> None:
    """No new try is started when waiting for it would end past the deadline."""
    calls = 0

    async def down() -> str:
        nonlocal calls
        calls += 1
        raise RateLimitError("slow", retry_after=30.0)

    policy = RetrySettings(max_attempts=5, initial_backoff=0.1, deadline=20)
    with pytest.raises(RateLimitError):
        await retry_call(lambda: down(), policy, provider="p")
    assert calls == 1


# failover -----------------------------------------------------------------------------


async def test_failover_tries_services_in_order_before_first_token() -> None:
    """A primary failing before any text hands over to the next service."""
    primary = ScriptedLLM("primary", [[AuthenticationError("bad key")]])
    backup = ScriptedLLM("backup", [["from backup"]])
    assert await _answer(FailoverLLMService([primary, backup])) == "from backup"
    assert (primary.calls, backup.calls) == (1, 1)


async def test_failover_never_switches_after_first_token() -> None:
    """Once the primary streamed text, its break is final and the backup is untouched."""
    primary = ScriptedLLM("primary", [["Hel", ServiceUnavailableError("cut")]])
    backup = ScriptedLLM("backup", [["never"]])
    with pytest.raises(StreamInterruptedError) as caught:
        await _answer(FailoverLLMService([primary, backup]))
    assert caught.value.partial == "Hel"
    assert backup.calls == 0


async def test_failover_reports_every_failure_with_the_last_class() -> None:
    """When all fail, the error has the last one's class and lists each reason."""
    first = ScriptedLLM("first", [[AuthenticationError("bad key")]])
    second = ScriptedLLM(
        "second", [[RateLimitError("busy", retry_after=3)]], RetrySettings(max_attempts=1)
    )
    with pytest.raises(RateLimitError) as caught:
        await _answer(FailoverLLMService([first, second]))
    assert "first: bad key" in str(caught.value)
    assert "second: busy" in str(caught.value)
    assert caught.value.retry_after == 3


async def test_failover_opened_once_gives_each_service_one_try() -> None:
    """open_stream(once=True), as the follow-up rewrite uses it, skips every service's
    retries: a failing primary is tried once, then the backup once."""
    down = ServiceUnavailableError("down")
    primary = ScriptedLLM("primary", [[down], [down], ["late"]])
    backup = ScriptedLLM("backup", [[down], ["from backup"]])
    chain = FailoverLLMService([primary, backup])
    with pytest.raises(ServiceUnavailableError):
        await chain.open_stream(QUESTION, once=True)
    assert (primary.calls, backup.calls) == (1, 1)
    opened = await chain.open_stream(QUESTION, once=True)
    pieces = [piece async for piece in opened.pieces()]
    await opened.aclose()
    assert "".join(p if isinstance(p, str) else p.text for p in pieces) == "from backup"
    assert (primary.calls, backup.calls) == (2, 2)


async def test_failover_closing_after_the_first_token_closes_the_provider_stream() -> None:
    """Closing an opened failover stream before reading its rest closes the service's
    stream at once, and a break in the rest is the service's StreamInterruptedError."""
    closed: list[str] = []

    class Tracked(ScriptedLLM):
        async def _astream(self, messages: Sequence[BaseMessage]) -> AsyncGenerator[LLMDelta, None]:
            try:
                async for delta in super()._astream(messages):
                    yield delta
            finally:
                closed.append(self.label)

    chain = FailoverLLMService([Tracked("only", [["Hel", "lo"]])])
    opened = await chain.open_stream(QUESTION)
    await opened.aclose()
    assert closed == ["only"]
    broken = FailoverLLMService([Tracked("cut", [["Hel", "lo", ServiceUnavailableError("x")]])])
    opened = await broken.open_stream(QUESTION)
    with pytest.raises(StreamInterruptedError) as caught:
        _ = [piece async for piece in opened.rest]
    await opened.aclose()
    assert caught.value.partial == "Hello"
    assert closed == ["only", "cut"]


def test_failover_needs_a_service() -> None:
    """An empty chain is a programming error caught at construction."""
    with pytest.raises(ValueError, match="at least one"):
        FailoverLLMService([])


async def test_failover_from_bedrock_to_openai_on_the_wire(
    bedrock_server: BedrockRuntimeServer,
    openai_server: OpenAICompatibleServer,
    make_bedrock_client: Callable[..., Any],
) -> None:
    """Bedrock throttled past its retries, then the OpenAI-compatible server answers."""
    retry = RetrySettings(max_attempts=2, initial_backoff=0.001, max_backoff=0.002)
    bedrock_server.script(BedrockFaults.throttling(), BedrockFaults.throttling())
    openai_server.script(Reply("answer from openai"))
    async with httpx.AsyncClient() as client:
        bedrock = BedrockLLMService(client=make_bedrock_client(bedrock_server), retry=retry)
        openai = OpenAILLMService(
            model="gpt-test",
            api_key="sk-x",
            base_url=openai_server.base_url,
            retry=retry,
            http_async_client=client,
        )
        chain = FailoverLLMService([bedrock, openai])
        assert await chain.generate_response(QUESTION) == "answer from openai"
        assert chain.describe().startswith("bedrock/")
        await chain.aclose()
    assert len(bedrock_server.requests) == 2
    assert len(openai_server.requests) == 1


async def test_failover_keeps_partial_from_the_wire(
    openai_server: OpenAICompatibleServer,
) -> None:
    """A real stream cut after tokens is not resumed by a fallback."""
    openai_server.script(Reply("abcdef", token_size=2, drop_after=1), OpenAIFaults.unavailable())
    async with httpx.AsyncClient() as client:
        services = [
            OpenAILLMService(
                model=m,
                api_key="sk-x",
                base_url=openai_server.base_url,
                retry=FAST,
                http_async_client=client,
            )
            for m in ("first", "second")
        ]
        with pytest.raises(StreamInterruptedError) as caught:
            await FailoverLLMService(services).generate_response(QUESTION)
    assert caught.value.partial == "ab"
    assert len(openai_server.requests) == 1
