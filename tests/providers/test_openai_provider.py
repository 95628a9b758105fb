"""The openai provider on the real wire: ChatOpenAI talking HTTP to the local server."""

from __future__ import annotations

import asyncio
import io
import logging
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest
from langchain_core.messages import HumanMessage, SystemMessage

from sitechat.config import RetrySettings, Settings
from sitechat.errors import (
    AuthenticationError,
    BadRequestError,
    ConfigurationError,
    ContextLengthError,
    ModelNotFoundError,
    PermissionDeniedError,
    ProviderError,
    ProviderTimeoutError,
    RateLimitError,
    ServiceUnavailableError,
    StreamInterruptedError,
)
from sitechat.llm.base import LLMDelta
from sitechat.llm.openai import OpenAILLMService
from sitechat.models import Usage
from sitechat.observability.logging import LoggingConfig, configure_logging
from sitechat.testing.openai_server import (
    HTTPFault,
    OpenAICompatibleServer,
    OpenAIFaults,
    Reply,
)
from tests.providers.tracebacks import everything_shown

KEY = "sk-test-0123456789abcdefSECRET"
QUESTION = [SystemMessage("Answer briefly."), HumanMessage("What is sitechat?")]


def _service(
    server: OpenAICompatibleServer,
    retry: RetrySettings,
    client: httpx.AsyncClient,
    **options: object,
) -> OpenAILLMService:
    return OpenAILLMService(
        model="gpt-test",
        api_key=KEY,
        base_url=server.base_url,
        retry=retry,
        http_async_client=client,
        **options,  # type: ignore[arg-type]
    )


async def _collect(service: OpenAILLMService) -> list[LLMDelta]:
    return [delta async for delta in service.stream(QUESTION)]


async def _drain(chunks: AsyncIterator[str], into: list[str]) -> None:
    async for chunk in chunks:
        into.append(chunk)


def _text(deltas: list[LLMDelta]) -> str:
    return "".join(d.text for d in deltas)


async def test_streams_tokens_in_order_with_usage(
    openai_server: OpenAICompatibleServer, fast_retry: RetrySettings, http_client: httpx.AsyncClient
) -> None:
    """Each SSE token becomes one delta, and the usage chunk arrives once."""
    openai_server.script(
        Reply("Hello there, reader.", token_size=5, input_tokens=11, output_tokens=4)
    )
    deltas = await _collect(_service(openai_server, fast_retry, http_client))
    assert [d.text for d in deltas if d.text] == ["Hello", " ther", "e, re", "ader."]
    assert [d.usage for d in deltas if d.usage] == [Usage(11, 4)]


async def test_non_streaming_mode_uses_one_json_response_with_usage(
    openai_server: OpenAICompatibleServer, fast_retry: RetrySettings, http_client: httpx.AsyncClient
) -> None:
    """streaming=False asks without SSE and yields the whole answer with its usage."""
    openai_server.script(Reply("Whole answer.", input_tokens=7, output_tokens=3))
    service = _service(openai_server, fast_retry, http_client, streaming=False)
    deltas = await _collect(service)
    assert deltas == [LLMDelta("Whole answer.", Usage(7, 3))]
    assert not openai_server.requests[0].json.get("stream")


async def test_sends_model_options_key_and_extra_headers(
    openai_server: OpenAICompatibleServer, fast_retry: RetrySettings, http_client: httpx.AsyncClient
) -> None:
    """Model, temperature, max tokens, the bearer key, organization and headers reach the wire."""
    service = _service(
        openai_server,
        fast_retry,
        http_client,
        temperature=0.3,
        max_tokens=77,
        organization="org-42",
        headers={"X-Team": "docs"},
    )
    await service.generate_response(QUESTION)
    (request,) = openai_server.requests
    body = request.json
    assert (body["model"], body["temperature"], body["max_completion_tokens"]) == (
        "gpt-test",
        0.3,
        77,
    )
    assert body["stream_options"] == {"include_usage": True}
    assert [m["role"] for m in body["messages"]] == ["system", "user"]
    assert request.headers["authorization"] == f"Bearer {KEY}"
    assert request.headers["openai-organization"] == "org-42"
    assert request.headers["x-team"] == "docs"


async def test_rate_limit_is_retried_after_retry_after(
    openai_server: OpenAICompatibleServer,
    fast_retry: RetrySettings,
    http_client: httpx.AsyncClient,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """429 is retried, and the wait is stretched to the server's Retry-After."""
    openai_server.script(OpenAIFaults.rate_limited(retry_after=0.05), Reply("ok"))
    with caplog.at_level(logging.WARNING, logger="sitechat.llm.retry"):
        answer = await _service(openai_server, fast_retry, http_client).generate_response(QUESTION)
    assert answer == "ok"
    assert len(openai_server.requests) == 2
    (record,) = [r for r in caplog.records if r.name == "sitechat.llm.retry"]
    assert record.args is not None
    assert record.args[4] >= 0.05  # type: ignore[index,operator]


@pytest.mark.parametrize("fault", [OpenAIFaults.server_error(), OpenAIFaults.unavailable()])
async def test_server_errors_are_retried_until_success(
    openai_server: OpenAICompatibleServer,
    fast_retry: RetrySettings,
    http_client: httpx.AsyncClient,
    fault: object,
) -> None:
    """5xx before the first token is retried; two failures then an answer succeed."""
    openai_server.script(fault, fault, Reply("recovered"))  # type: ignore[arg-type]
    answer = await _service(openai_server, fast_retry, http_client).generate_response(QUESTION)
    assert answer == "recovered"
    assert len(openai_server.requests) == 3


async def test_retries_stop_at_max_attempts(
    openai_server: OpenAICompatibleServer, fast_retry: RetrySettings, http_client: httpx.AsyncClient
) -> None:
    """After max_attempts failures the last error surfaces; no extra request is made."""
    openai_server.script(*[OpenAIFaults.unavailable()] * 5)
    with pytest.raises(ServiceUnavailableError):
        await _service(openai_server, fast_retry, http_client).generate_response(QUESTION)
    assert len(openai_server.requests) == fast_retry.max_attempts


async def test_retry_after_beyond_the_deadline_surfaces_at_once(
    openai_server: OpenAICompatibleServer, http_client: httpx.AsyncClient
) -> None:
    """A Retry-After longer than the deadline is not waited for: RateLimitError carries it."""
    retry = RetrySettings(max_attempts=5, initial_backoff=0.001, max_backoff=0.01, deadline=1.0)
    openai_server.script(OpenAIFaults.rate_limited(retry_after=30), Reply("never"))
    with pytest.raises(RateLimitError) as caught:
        await _service(openai_server, retry, http_client).generate_response(QUESTION)
    assert caught.value.retry_after == 30
    assert caught.value.retryable
    assert len(openai_server.requests) == 1


@pytest.mark.parametrize(
    ("fault", "error"),
    [
        (OpenAIFaults.unauthorized(), AuthenticationError),
        (OpenAIFaults.forbidden(), PermissionDeniedError),
        (OpenAIFaults.model_not_found("gpt-test"), ModelNotFoundError),
        (OpenAIFaults.context_length_exceeded(), ContextLengthError),
        (OpenAIFaults.bad_request(), BadRequestError),
    ],
)
async def test_client_errors_surface_without_retry(
    openai_server: OpenAICompatibleServer,
    fast_retry: RetrySettings,
    http_client: httpx.AsyncClient,
    fault: object,
    error: type[ProviderError],
) -> None:
    """4xx errors map to their sitechat class and are tried exactly once."""
    openai_server.script(fault)  # type: ignore[arg-type]
    with pytest.raises(error) as caught:
        await _service(openai_server, fast_retry, http_client).generate_response(QUESTION)
    assert type(caught.value) is error
    assert caught.value.provider == "openai"
    assert len(openai_server.requests) == 1


async def test_slow_first_byte_times_out_and_is_retried(
    openai_server: OpenAICompatibleServer, fast_retry: RetrySettings, http_client: httpx.AsyncClient
) -> None:
    """A first byte later than the timeout is a ProviderTimeoutError, retried like 5xx."""
    openai_server.script(Reply("late", first_byte_delay=1.0), Reply("in time"))
    service = _service(openai_server, fast_retry, http_client, timeout=0.2)
    assert await service.generate_response(QUESTION) == "in time"
    openai_server.script(*[Reply("late", first_byte_delay=1.0)] * 3)
    with pytest.raises(ProviderTimeoutError):
        await service.generate_response(QUESTION)


async def test_dropped_connection_mid_answer_keeps_partial_and_is_not_retried(
    openai_server: OpenAICompatibleServer, fast_retry: RetrySettings, http_client: httpx.AsyncClient
) -> None:
    """A break after tokens raises StreamInterruptedError with the text so far; one request only."""
    openai_server.script(Reply("abcdefghijkl", token_size=3, drop_after=2), Reply("never sent"))
    seen: list[str] = []
    chunks = await _service(openai_server, fast_retry, http_client).generate_response(
        QUESTION, stream=True
    )
    with pytest.raises(StreamInterruptedError) as caught:
        await _drain(chunks, seen)
    assert caught.value.partial == "abcdef" == "".join(seen)
    assert isinstance(caught.value.__cause__, ServiceUnavailableError)
    assert len(openai_server.requests) == 1


async def test_a_stream_ended_without_finish_reason_is_interrupted_with_partial(
    openai_server: OpenAICompatibleServer, fast_retry: RetrySettings, http_client: httpx.AsyncClient
) -> None:
    """A stream closed cleanly with no finish_reason and no [DONE] is cut, not complete."""
    openai_server.script(Reply("abcdefghijkl", token_size=3, cut_after=2), Reply("never sent"))
    with pytest.raises(StreamInterruptedError, match="no finish reason") as caught:
        await _collect(_service(openai_server, fast_retry, http_client))
    assert caught.value.partial == "abcdef"
    assert isinstance(caught.value.__cause__, ServiceUnavailableError)
    assert len(openai_server.requests) == 1


@pytest.mark.parametrize(
    "fault", [{"drop_after": 0}, {"malformed_after": 0}, {"error_after": 0}, {"cut_after": 0}]
)
async def test_broken_stream_before_first_token_is_retried(
    openai_server: OpenAICompatibleServer,
    fast_retry: RetrySettings,
    http_client: httpx.AsyncClient,
    fault: dict[str, int],
) -> None:
    """A cut connection, unreadable line, error event or unfinished stream before any text
    is retried."""
    openai_server.script(Reply("abc", **fault), Reply("second try"))  # type: ignore[arg-type]
    answer = await _service(openai_server, fast_retry, http_client).generate_response(QUESTION)
    assert answer == "second try"
    assert len(openai_server.requests) == 2


async def test_malformed_sse_line_mid_answer_interrupts_with_partial(
    openai_server: OpenAICompatibleServer, fast_retry: RetrySettings, http_client: httpx.AsyncClient
) -> None:
    """An unreadable SSE line after tokens ends the stream, keeping what arrived."""
    openai_server.script(Reply("abcdef", token_size=2, malformed_after=1))
    with pytest.raises(StreamInterruptedError) as caught:
        await _service(openai_server, fast_retry, http_client).generate_response(QUESTION)
    assert caught.value.partial == "ab"


async def test_fifty_concurrent_streamed_chats_complete(
    openai_server: OpenAICompatibleServer, fast_retry: RetrySettings
) -> None:
    """50 chats streamed at once through one service all finish with the full answer."""
    openai_server.default_reply = Reply(
        "one two three four five six", token_size=4, token_delay=0.002
    )
    async with httpx.AsyncClient(limits=httpx.Limits(max_connections=100)) as client:
        service = _service(openai_server, fast_retry, client)
        answers = await asyncio.gather(*(service.generate_response(QUESTION) for _ in range(50)))
    assert set(answers) == {"one two three four five six"}
    assert len(openai_server.requests) == 50


async def test_key_never_appears_in_errors_or_logs(
    openai_server: OpenAICompatibleServer,
    fast_retry: RetrySettings,
    http_client: httpx.AsyncClient,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Even when the server quotes the key back, no message or log line contains it."""
    faults = [
        OpenAIFaults.unauthorized(),
        OpenAIFaults.forbidden(),
        OpenAIFaults.bad_request(f"bad key {KEY}"),
    ]
    messages = []
    with caplog.at_level(logging.DEBUG):
        for fault in [OpenAIFaults.rate_limited(0), *faults]:
            openai_server.script(fault)
        for _ in faults:
            with pytest.raises(ProviderError) as caught:
                await _service(openai_server, fast_retry, http_client).generate_response(QUESTION)
            messages.append(str(caught.value))
    assert messages
    assert all(KEY not in m and "0123456789abcdef" not in m for m in messages)
    assert KEY not in caplog.text
    service = _service(openai_server, fast_retry, http_client)
    assert KEY not in repr(service) + repr(vars(service))


@pytest.mark.parametrize(
    ("fault", "said"),
    [
        (OpenAIFaults.unauthorized(), "rejected the API key (HTTP 401)"),
        (OpenAIFaults.bad_request(f"bad key {KEY}"), "refused the request (HTTP 400)"),
    ],
)
async def test_the_key_is_not_in_the_traceback_or_any_chained_exception(
    openai_server: OpenAICompatibleServer,
    fast_retry: RetrySettings,
    http_client: httpx.AsyncClient,
    fault: HTTPFault,
    said: str,
) -> None:
    """A server quoting the key back: the traceback (logger.exception's text) and every
    exception chained to the error are free of it, yet say what went wrong."""
    openai_server.script(fault)
    with pytest.raises(ProviderError) as caught:
        await _service(openai_server, fast_retry, http_client).generate_response(QUESTION)
    shown = everything_shown(caught.value)
    assert KEY not in shown
    assert said in str(caught.value)
    assert "RedactedException: openai." in shown or "RedactedException: langchain_openai" in shown
    assert f"Error code: {fault.status}" in str(caught.value.__cause__)


async def test_a_password_in_the_base_url_never_reaches_errors_logs_or_repr(
    openai_server: OpenAICompatibleServer,
    fast_retry: RetrySettings,
    http_client: httpx.AsyncClient,
) -> None:
    """A gateway password written into the base URL is used but never shown,
    neither in the error nor in any log line (httpx logs each request's full URL)."""
    host = openai_server.base_url.removeprefix("http://")
    base_url = f"http://gateway:GW-pass-s3cret@{host}"
    openai_server.script(*[OpenAIFaults.unavailable()] * fast_retry.max_attempts)
    service = OpenAILLMService(
        model="gpt-test",
        api_key=KEY,
        base_url=base_url,
        retry=fast_retry,
        http_async_client=http_client,
    )
    root = logging.getLogger()
    level, logs = root.level, io.StringIO()
    handler = configure_logging(LoggingConfig(level="DEBUG"), stream=logs)
    try:
        with pytest.raises(ServiceUnavailableError) as caught:
            await service.generate_response(QUESTION)
    finally:
        root.removeHandler(handler)
        root.setLevel(level)
    assert "HTTP Request: POST" in logs.getvalue()  # httpx did log the URL
    shown = f"{caught.value} {logs.getvalue()} {service!r}"
    assert "s3cret" not in shown
    assert host in str(caught.value)  # the endpoint is still named
    assert len(openai_server.requests) == fast_retry.max_attempts


@pytest.mark.parametrize("streaming", [True, False])
async def test_an_answer_with_no_text_is_an_error_not_an_empty_success(
    openai_server: OpenAICompatibleServer,
    fast_retry: RetrySettings,
    http_client: httpx.AsyncClient,
    streaming: bool,
) -> None:
    """A reply with no words (a refusal, a tool call) raises instead of answering ''."""
    openai_server.script(Reply(""))
    service = _service(openai_server, fast_retry, http_client, streaming=streaming)
    with pytest.raises(ProviderError, match="returned no text") as caught:
        await service.generate_response(QUESTION)
    assert not caught.value.retryable
    assert len(openai_server.requests) == 1


async def test_a_content_filter_cut_keeps_the_text_and_says_why(
    openai_server: OpenAICompatibleServer, fast_retry: RetrySettings, http_client: httpx.AsyncClient
) -> None:
    """finish_reason content_filter mid-answer interrupts the stream, keeping its text."""
    openai_server.script(Reply("Some of the answer", finish_reason="content_filter"))
    with pytest.raises(StreamInterruptedError, match="content filter") as caught:
        await _collect(_service(openai_server, fast_retry, http_client))
    assert caught.value.partial == "Some of the answer"


async def test_an_answer_cut_at_the_token_limit_is_kept_and_logged(
    openai_server: OpenAICompatibleServer,
    fast_retry: RetrySettings,
    http_client: httpx.AsyncClient,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """finish_reason length keeps the answer and logs that it was cut short."""
    openai_server.script(Reply("A long answer", finish_reason="length"))
    with caplog.at_level(logging.WARNING):
        answer = await _service(openai_server, fast_retry, http_client).generate_response(QUESTION)
    assert answer == "A long answer"
    assert "token limit" in caplog.text


async def test_a_server_that_cannot_stream_is_told_to_turn_streaming_off(
    fast_retry: RetrySettings, http_client: httpx.AsyncClient
) -> None:
    """A plain JSON reply to a streaming request names SITECHAT_OPENAI__STREAMING=false."""
    with OpenAICompatibleServer() as server:
        server.script(Reply("Hello"))
        server.stream_as_json = True
        with pytest.raises(ProviderError, match="SITECHAT_OPENAI__STREAMING=false"):
            await _service(server, fast_retry, http_client).generate_response(QUESTION)


LOGIN_PAGE = b"<!doctype html><html><head><title>Sign in - Corp SSO</title></head></html>"
HTML = (("Content-Type", "text/html; charset=utf-8"),)


@pytest.mark.parametrize("status", [200, 404, 502])
async def test_an_html_page_is_named_not_quoted_and_not_blamed_on_streaming(
    openai_server: OpenAICompatibleServer,
    fast_retry: RetrySettings,
    http_client: httpx.AsyncClient,
    status: int,
) -> None:
    """A login page or a proxy's error page in place of the API, streamed or not: the
    message says an HTML page came back and names the base URL, never quoting the page."""
    for streaming in (True, False):
        openai_server.script(*[HTTPFault(status, LOGIN_PAGE, HTML)] * fast_retry.max_attempts)
        service = _service(openai_server, fast_retry, http_client, streaming=streaming)
        with pytest.raises(ProviderError) as caught:
            await service.generate_response(QUESTION)
        message = str(caught.value)
        assert "SITECHAT_OPENAI__BASE_URL" in message
        assert "Corp SSO" not in message
        assert "report it" not in message
        if status != 200 or not streaming:
            assert "an HTML page came back" in message
        else:  # ChatOpenAI does not say what a reply that is no event stream was
            assert message.index("SITECHAT_OPENAI__BASE_URL") < message.index("STREAMING")


async def test_a_plain_text_error_body_is_quoted(
    openai_server: OpenAICompatibleServer, fast_retry: RetrySettings, http_client: httpx.AsyncClient
) -> None:
    """A 500 whose body is plain text, not the API's JSON, says what the text was."""
    body = b"upstream connect error or disconnect/reset before headers"
    plain = HTTPFault(500, body, (("Content-Type", "text/plain"),))
    openai_server.script(*[plain] * fast_retry.max_attempts)
    with pytest.raises(ServiceUnavailableError, match="upstream connect error"):
        await _service(openai_server, fast_retry, http_client).generate_response(QUESTION)


async def test_a_retry_after_date_far_ahead_reads_as_a_capped_wait(
    openai_server: OpenAICompatibleServer, fast_retry: RetrySettings, http_client: httpx.AsyncClient
) -> None:
    """A Retry-After HTTP date decades ahead is raised at once as a wait of 24 h."""
    fault = OpenAIFaults.rate_limited(None)
    dated = HTTPFault(
        429, fault.body, (*fault.headers, ("Retry-After", "Wed, 21 Oct 2099 07:28:00 GMT"))
    )
    openai_server.script(dated)
    with pytest.raises(RateLimitError) as caught:
        await _service(openai_server, fast_retry, http_client).generate_response(QUESTION)
    assert "asked to wait 24 h." in str(caught.value)
    assert caught.value.retry_after == 86_400.0
    assert len(openai_server.requests) == 1


def test_from_settings_reads_its_section(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """SITECHAT_OPENAI__* and SITECHAT_LLM__* shape the service; the key stays a secret."""
    monkeypatch.setenv("SITECHAT_OPENAI__API_KEY", KEY)
    monkeypatch.setenv("SITECHAT_OPENAI__BASE_URL", "http://127.0.0.1:9/v1")
    monkeypatch.setenv("SITECHAT_OPENAI__HEADERS", '{"X-Team": "docs"}')
    monkeypatch.setenv("SITECHAT_LLM__MODEL", "gpt-4o")
    monkeypatch.setenv("SITECHAT_LLM__RETRY__MAX_ATTEMPTS", "5")
    service = OpenAILLMService.from_settings(Settings.load(env_file=None))
    assert (service.model, service.base_url, service.retry.max_attempts) == (
        "gpt-4o",
        "http://127.0.0.1:9/v1",
        5,
    )
    assert service.context_window == 128_000


def test_standard_openai_api_key_is_the_fallback(monkeypatch: pytest.MonkeyPatch) -> None:
    """With no SITECHAT_OPENAI__API_KEY, OPENAI_API_KEY is used."""
    monkeypatch.setenv("OPENAI_API_KEY", KEY)
    service = OpenAILLMService.from_settings(Settings.load(env_file=None))
    assert service.model == "gpt-4o-mini"


@pytest.mark.parametrize("variable", ["SITECHAT_OPENAI__API_KEY", "OPENAI_API_KEY"])
def test_a_key_in_the_env_file_selects_and_configures_openai(tmp_path: Path, variable: str) -> None:
    """With the provider unset, an OpenAI key in .env (not exported) picks openai, as one
    in the environment does, and the service is built with it."""
    from sitechat.factories import default_llm_provider

    env_file = tmp_path / ".env"
    env_file.write_text(f"{variable}={KEY}\n", encoding="utf-8")
    settings = Settings.load(env_file=env_file)
    assert default_llm_provider(settings) == "openai"
    service = OpenAILLMService.from_settings(settings)
    assert service._api_key.get_secret_value() == KEY
    assert default_llm_provider(Settings.load(env_file=None)) == "extractive"


def test_missing_key_names_both_variables() -> None:
    """No key for api.openai.com fails at start-up naming where to put one."""
    with pytest.raises(ConfigurationError) as caught:
        OpenAILLMService.from_settings(Settings.load(env_file=None))
    assert "SITECHAT_OPENAI__API_KEY" in str(caught.value)
    assert "OPENAI_API_KEY" in str(caught.value)


async def test_compatible_server_needs_no_key(
    openai_server: OpenAICompatibleServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A base URL other than OpenAI's works without a key (vLLM, Ollama, llama.cpp)."""
    monkeypatch.setenv("SITECHAT_OPENAI__BASE_URL", openai_server.base_url)
    service = OpenAILLMService.from_settings(Settings.load(env_file=None))
    try:
        assert await service.generate_response(QUESTION) == "You said: What is sitechat?"
    finally:
        await service.aclose()


def test_fallback_provider_keeps_its_own_model(monkeypatch: pytest.MonkeyPatch) -> None:
    """When openai is a fallback, the main provider's SITECHAT_LLM__MODEL is not borrowed."""
    monkeypatch.setenv("OPENAI_API_KEY", KEY)
    monkeypatch.setenv("SITECHAT_LLM__PROVIDER", "bedrock")
    monkeypatch.setenv("SITECHAT_LLM__MODEL", "anthropic.claude-3-haiku-20240307-v1:0")
    monkeypatch.setenv("SITECHAT_OPENAI__MODEL", "gpt-4.1-mini")
    assert OpenAILLMService.from_settings(Settings.load(env_file=None)).model == "gpt-4.1-mini"
