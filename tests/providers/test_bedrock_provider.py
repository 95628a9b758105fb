"""The bedrock provider on the real wire: ChatBedrockConverse and boto3 against a local endpoint."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest
from langchain_core.messages import HumanMessage

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
from sitechat.llm.bedrock import BedrockConfig, BedrockLLMService
from sitechat.models import Usage
from sitechat.testing.bedrock_server import BedrockFaults, BedrockRuntimeServer, HTTPFault, Reply
from tests.providers.tracebacks import everything_shown

QUESTION = [HumanMessage("What is sitechat?")]
MODEL = "us.anthropic.claude-3-5-haiku-20241022-v1:0"


@pytest.fixture
async def service(
    bedrock_server: BedrockRuntimeServer,
    make_bedrock_client: Callable[..., Any],
    fast_retry: RetrySettings,
) -> AsyncIterator[BedrockLLMService]:
    """A Bedrock service on an injected boto3 client, fast retries."""
    llm = BedrockLLMService(
        model=MODEL, client=make_bedrock_client(bedrock_server), retry=fast_retry
    )
    yield llm
    await llm.aclose()


async def _collect(service: BedrockLLMService) -> list[LLMDelta]:
    return [delta async for delta in service.stream(QUESTION)]


async def test_streams_tokens_with_usage(
    bedrock_server: BedrockRuntimeServer, service: BedrockLLMService
) -> None:
    """Each contentBlockDelta becomes one delta; the metadata event brings the usage."""
    bedrock_server.script(
        Reply("Hello there, reader.", token_size=5, input_tokens=9, output_tokens=4)
    )
    deltas = await _collect(service)
    assert [d.text for d in deltas if d.text] == ["Hello", " ther", "e, re", "ader."]
    assert [d.usage for d in deltas if d.usage] == [Usage(9, 4)]
    (request,) = bedrock_server.requests
    assert request.path == f"/model/{MODEL.replace(':', '%3A')}/converse-stream"
    assert request.json["messages"] == [
        {"role": "user", "content": [{"text": "What is sitechat?"}]}
    ]
    assert request.headers["authorization"].startswith("AWS4-HMAC-SHA256")


async def test_non_streaming_mode_uses_converse(
    bedrock_server: BedrockRuntimeServer,
    make_bedrock_client: Callable[..., Any],
    fast_retry: RetrySettings,
) -> None:
    """streaming=False calls /converse and yields the whole answer with usage."""
    bedrock_server.script(Reply("Whole answer.", input_tokens=5, output_tokens=2))
    llm = BedrockLLMService(
        model=MODEL,
        client=make_bedrock_client(bedrock_server),
        config=BedrockConfig(streaming=False),
        retry=fast_retry,
    )
    assert await _collect(llm) == [LLMDelta("Whole answer.", Usage(5, 2))]
    assert bedrock_server.requests[0].path.endswith("/converse")
    await llm.aclose()


def _bedrock(
    server: BedrockRuntimeServer,
    make_client: Callable[..., Any],
    retry: RetrySettings,
    *,
    streaming: bool,
) -> BedrockLLMService:
    return BedrockLLMService(
        model=MODEL,
        client=make_client(server),
        config=BedrockConfig(streaming=streaming),
        retry=retry,
    )


@pytest.mark.parametrize("streaming", [True, False])
async def test_an_answer_with_no_text_is_an_error_not_an_empty_success(
    bedrock_server: BedrockRuntimeServer,
    make_bedrock_client: Callable[..., Any],
    fast_retry: RetrySettings,
    streaming: bool,
) -> None:
    """A reply with no words raises instead of answering '', and is not retried."""
    bedrock_server.script(Reply(""))
    llm = _bedrock(bedrock_server, make_bedrock_client, fast_retry, streaming=streaming)
    with pytest.raises(ProviderError, match="returned no text") as caught:
        await llm.generate_response(QUESTION)
    await llm.aclose()
    assert not caught.value.retryable
    assert len(bedrock_server.requests) == 1


async def test_a_guardrail_cut_keeps_the_text_and_says_why(
    bedrock_server: BedrockRuntimeServer, service: BedrockLLMService
) -> None:
    """stopReason guardrail_intervened mid-answer interrupts the stream, keeping its text."""
    bedrock_server.script(Reply("Some of the answer", finish_reason="guardrail_intervened"))
    with pytest.raises(StreamInterruptedError, match="content filter") as caught:
        await _collect(service)
    assert caught.value.partial == "Some of the answer"
    assert "guardrail_intervened" in str(caught.value)


async def test_a_guardrail_on_a_whole_answer_is_an_error(
    bedrock_server: BedrockRuntimeServer,
    make_bedrock_client: Callable[..., Any],
    fast_retry: RetrySettings,
) -> None:
    """With streaming off, a guardrail's stop raises rather than returning the text."""
    bedrock_server.script(Reply("Filtered", finish_reason="content_filter"))
    llm = _bedrock(bedrock_server, make_bedrock_client, fast_retry, streaming=False)
    with pytest.raises(ProviderError, match="content filter"):
        await llm.generate_response(QUESTION)
    await llm.aclose()


@pytest.mark.parametrize("streaming", [True, False])
async def test_an_answer_cut_at_max_tokens_is_kept_and_logged(
    bedrock_server: BedrockRuntimeServer,
    make_bedrock_client: Callable[..., Any],
    fast_retry: RetrySettings,
    caplog: pytest.LogCaptureFixture,
    streaming: bool,
) -> None:
    """stopReason max_tokens keeps the answer and logs that it was cut short."""
    bedrock_server.script(Reply("A long answer", finish_reason="length"))
    llm = _bedrock(bedrock_server, make_bedrock_client, fast_retry, streaming=streaming)
    with caplog.at_level(logging.WARNING, logger="sitechat.llm.bedrock"):
        answer = await llm.generate_response(QUESTION)
    await llm.aclose()
    assert answer == "A long answer"
    assert "SITECHAT_LLM__MAX_TOKENS" in caplog.text


async def test_sends_inference_settings(
    bedrock_server: BedrockRuntimeServer,
    make_bedrock_client: Callable[..., Any],
    fast_retry: RetrySettings,
) -> None:
    """Temperature and max tokens travel in inferenceConfig."""
    llm = BedrockLLMService(
        model=MODEL,
        client=make_bedrock_client(bedrock_server),
        temperature=0.2,
        max_tokens=99,
        retry=fast_retry,
    )
    await llm.generate_response(QUESTION)
    assert bedrock_server.requests[0].json["inferenceConfig"] == {
        "maxTokens": 99,
        "temperature": 0.2,
    }
    await llm.aclose()


@pytest.mark.parametrize(
    "fault",
    [BedrockFaults.throttling(), BedrockFaults.unavailable(), BedrockFaults.internal_error()],
)
async def test_throttling_and_5xx_are_retried(
    bedrock_server: BedrockRuntimeServer, service: BedrockLLMService, fault: Any
) -> None:
    """ThrottlingException and 5xx before the first token are retried until an answer."""
    bedrock_server.script(fault, fault, Reply("recovered"))
    assert await service.generate_response(QUESTION) == "recovered"
    assert len(bedrock_server.requests) == 3


async def test_throttling_surfaces_as_rate_limit_after_max_attempts(
    bedrock_server: BedrockRuntimeServer, service: BedrockLLMService, fast_retry: RetrySettings
) -> None:
    """Persistent throttling ends as RateLimitError after max_attempts requests."""
    bedrock_server.script(*[BedrockFaults.throttling()] * 5)
    with pytest.raises(RateLimitError):
        await service.generate_response(QUESTION)
    assert len(bedrock_server.requests) == fast_retry.max_attempts


@pytest.mark.parametrize(
    ("fault", "error"),
    [
        (BedrockFaults.access_denied(), PermissionDeniedError),
        (BedrockFaults.unrecognized_client(), AuthenticationError),
        (BedrockFaults.input_too_long(), ContextLengthError),
        (BedrockFaults.validation(), BadRequestError),
        (BedrockFaults.model_not_found(), ModelNotFoundError),
    ],
)
async def test_client_errors_surface_without_retry(
    bedrock_server: BedrockRuntimeServer,
    service: BedrockLLMService,
    fault: Any,
    error: type[ProviderError],
) -> None:
    """Non-retryable Bedrock errors map to their sitechat class after one request."""
    bedrock_server.script(fault)
    with pytest.raises(error) as caught:
        await service.generate_response(QUESTION)
    assert type(caught.value) is error
    assert caught.value.provider == "bedrock"
    assert len(bedrock_server.requests) == 1


async def test_access_denied_names_the_iam_actions(
    bedrock_server: BedrockRuntimeServer, service: BedrockLLMService
) -> None:
    """The permission error says which IAM actions and console setting to fix."""
    bedrock_server.script(BedrockFaults.access_denied())
    with pytest.raises(PermissionDeniedError, match="bedrock:InvokeModelWithResponseStream"):
        await service.generate_response(QUESTION)


@pytest.mark.parametrize("exception_type", ["throttlingException", "modelStreamErrorException"])
async def test_exception_event_before_first_token_is_retried(
    bedrock_server: BedrockRuntimeServer, service: BedrockLLMService, exception_type: str
) -> None:
    """An exception event with no text yet is retried like the HTTP error it stands for."""
    bedrock_server.script(Reply("x", error_after=0, error_type=exception_type), Reply("fine"))
    assert await service.generate_response(QUESTION) == "fine"


async def test_exception_event_mid_answer_interrupts_with_partial(
    bedrock_server: BedrockRuntimeServer, service: BedrockLLMService
) -> None:
    """A throttling event after tokens ends the stream, keeps the text and is not retried."""
    bedrock_server.script(
        Reply("abcdefgh", token_size=2, error_after=2, error_type="throttlingException")
    )
    with pytest.raises(StreamInterruptedError) as caught:
        await service.generate_response(QUESTION)
    assert caught.value.partial == "abcd"
    assert isinstance(caught.value.__cause__, RateLimitError)
    assert len(bedrock_server.requests) == 1


@pytest.mark.parametrize("fault", [{"drop_after": 1}, {"malformed_after": 1}, {"cut_after": 1}])
async def test_broken_stream_mid_answer_keeps_partial(
    bedrock_server: BedrockRuntimeServer, service: BedrockLLMService, fault: dict[str, int]
) -> None:
    """A dropped connection, a frame with a bad CRC or a stream ended with no messageStop
    after a token: interrupted, one request."""
    bedrock_server.script(Reply("abcdef", token_size=3, **fault))  # type: ignore[arg-type]
    with pytest.raises(StreamInterruptedError) as caught:
        await service.generate_response(QUESTION)
    assert caught.value.partial == "abc"
    assert isinstance(caught.value.__cause__, ServiceUnavailableError)
    assert len(bedrock_server.requests) == 1


async def test_slow_first_byte_times_out_then_retries(
    bedrock_server: BedrockRuntimeServer,
    make_bedrock_client: Callable[..., Any],
    fast_retry: RetrySettings,
) -> None:
    """botocore's read timeout becomes ProviderTimeoutError, which is retried."""
    llm = BedrockLLMService(
        model=MODEL, client=make_bedrock_client(bedrock_server, read_timeout=0.2), retry=fast_retry
    )
    bedrock_server.script(Reply("late", first_byte_delay=1.0), Reply("in time"))
    assert await llm.generate_response(QUESTION) == "in time"
    bedrock_server.script(*[Reply("late", first_byte_delay=1.0)] * 3)
    with pytest.raises(ProviderTimeoutError):
        await llm.generate_response(QUESTION)
    await llm.aclose()


async def test_fifty_concurrent_chats_complete_without_blocking_the_loop(
    bedrock_server: BedrockRuntimeServer, service: BedrockLLMService
) -> None:
    """Sync boto3 streams run in threads: 50 chats finish and the loop keeps ticking meanwhile."""
    bedrock_server.default_reply = Reply("one two three four", token_size=4, first_byte_delay=0.2)
    ticks = 0
    done = asyncio.Event()

    async def tick() -> None:
        nonlocal ticks
        while not done.is_set():
            ticks += 1
            await asyncio.sleep(0.01)

    ticker = asyncio.ensure_future(tick())
    answers = await asyncio.gather(*(service.generate_response(QUESTION) for _ in range(50)))
    done.set()
    await ticker
    assert set(answers) == {"one two three four"}
    assert ticks >= 5  # the loop ran other work while every chat waited for its first byte


async def test_secret_key_never_appears_in_errors_or_logs(
    bedrock_server: BedrockRuntimeServer,
    service: BedrockLLMService,
    aws_secret: str,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """No error message or log line (at DEBUG) carries the AWS secret key or a signature."""
    faults = [
        BedrockFaults.throttling(),
        BedrockFaults.unrecognized_client(),
        BedrockFaults.access_denied(),
    ]
    messages = []
    with caplog.at_level(logging.DEBUG):
        bedrock_server.script(*faults)
        for _ in range(2):
            with pytest.raises(ProviderError) as caught:
                await service.generate_response(QUESTION)
            messages.append(str(caught.value))
    assert all(aws_secret not in m and "Signature=" not in m for m in messages)
    assert aws_secret not in caplog.text


@pytest.mark.parametrize("in_stream", [False, True])
async def test_configured_credentials_are_not_in_the_traceback(
    bedrock_server: BedrockRuntimeServer,
    fast_retry: RetrySettings,
    aws_secret: str,
    in_stream: bool,
) -> None:
    """An error quoting the configured secret key (as a request or as a stream event): the
    traceback and every chained exception are free of it, and still name the failure."""
    quoted = f"Credential check failed for secret {aws_secret} (Signature=0a1b2c3d4e5f)"
    item: HTTPFault | Reply = (
        Reply("x", error_after=0, error_type="validationException", error_message=quoted)
        if in_stream
        else BedrockFaults.validation(quoted)
    )
    bedrock_server.script(item)
    config = BedrockConfig(
        region="us-east-1",
        endpoint_url=bedrock_server.url,
        aws_access_key_id="AKIATESTINGEXAMPLE01",
        aws_secret_access_key=aws_secret,
    )
    llm = BedrockLLMService(model=MODEL, config=config, retry=fast_retry)
    with pytest.raises(ProviderError) as caught:
        await llm.generate_response(QUESTION)
    await llm.aclose()
    shown = everything_shown(caught.value)
    assert aws_secret not in shown
    assert "0a1b2c3d4e5f" not in shown
    assert "Credential check failed for secret ***" in str(caught.value.__cause__)


def test_from_settings_reads_region_endpoint_and_model(monkeypatch: pytest.MonkeyPatch) -> None:
    """SITECHAT_BEDROCK__REGION / __ENDPOINT_URL and SITECHAT_LLM__MODEL build the client."""
    monkeypatch.setenv("SITECHAT_LLM__PROVIDER", "bedrock")
    monkeypatch.setenv("SITECHAT_LLM__MODEL", MODEL)
    monkeypatch.setenv("SITECHAT_BEDROCK__REGION", "eu-west-1")
    monkeypatch.setenv("SITECHAT_BEDROCK__ENDPOINT_URL", "http://127.0.0.1:9")
    llm = BedrockLLMService.from_settings(Settings.load(env_file=None))
    assert (llm.model, llm.region) == (MODEL, "eu-west-1")
    assert llm._client.meta.endpoint_url == "http://127.0.0.1:9"
    assert llm.context_window == 200_000
    asyncio.run(llm.aclose())


def test_missing_region_names_the_variable(monkeypatch: pytest.MonkeyPatch, tmp_path: Any) -> None:
    """No region anywhere fails at start-up naming SITECHAT_BEDROCK__REGION."""
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "none"))
    with pytest.raises(ConfigurationError, match="SITECHAT_BEDROCK__REGION"):
        BedrockLLMService.from_settings(Settings.load(env_file=None))


@pytest.mark.parametrize("from_env", [False, True])
def test_an_unknown_profile_is_a_settings_error_when_built(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Any, from_env: bool
) -> None:
    """A profile that is in no AWS config file fails building the service, naming the
    variable it came from (SITECHAT_BEDROCK__PROFILE or AWS_PROFILE)."""
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "none"))
    if from_env:
        monkeypatch.setenv("AWS_PROFILE", "nosuch")
    config = BedrockConfig(region="us-east-1", profile=None if from_env else "nosuch")
    with pytest.raises(ConfigurationError) as caught:
        BedrockLLMService(config=config)
    variable = "AWS_PROFILE" if from_env else "SITECHAT_BEDROCK__PROFILE"
    assert f"{variable} names the AWS profile 'nosuch'" in str(caught.value)


@pytest.mark.parametrize(
    ("credentials", "named"),
    [
        ({"aws_secret_access_key": "abcdefSECRET"}, "SITECHAT_BEDROCK__AWS_ACCESS_KEY_ID is not"),
        ({"aws_access_key_id": "AKIATESTINGEXAMPLE01"}, "SITECHAT_BEDROCK__AWS_SECRET_ACCESS_KEY"),
        ({"aws_session_token": "tokenSECRET"}, "SITECHAT_BEDROCK__AWS_SESSION_TOKEN is set"),
    ],
)
def test_half_set_credentials_are_a_settings_error_when_built(
    credentials: dict[str, str], named: str
) -> None:
    """A key id without its secret (or the reverse, or a lone session token) is refused
    when the service is built, naming the variables, rather than at the first request."""
    config = BedrockConfig(region="us-east-1", **credentials)  # type: ignore[arg-type]
    with pytest.raises(ConfigurationError, match="Incomplete AWS credentials") as caught:
        BedrockLLMService(config=config)
    assert named in str(caught.value)
    assert "SECRET" not in str(caught.value).replace("SECRET_ACCESS_KEY", "")


async def test_missing_credentials_explain_the_aws_chain(
    bedrock_server: BedrockRuntimeServer,
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Any,
    fast_retry: RetrySettings,
) -> None:
    """With no credentials in the chain, the error says where AWS looks for them."""
    for name, value in {
        "AWS_CONFIG_FILE": str(tmp_path / "none"),
        "AWS_SHARED_CREDENTIALS_FILE": str(tmp_path / "none"),
        "AWS_EC2_METADATA_DISABLED": "true",
    }.items():
        monkeypatch.setenv(name, value)
    llm = BedrockLLMService(
        config=BedrockConfig(region="us-east-1", endpoint_url=bedrock_server.url), retry=fast_retry
    )
    with pytest.raises(AuthenticationError, match="AWS_PROFILE"):
        await llm.generate_response(QUESTION)
    await llm.aclose()


async def test_a_stream_closed_by_its_reader_frees_its_pool_thread_at_once(
    bedrock_server: BedrockRuntimeServer,
    make_bedrock_client: Callable[..., Any],
    fast_retry: RetrySettings,
) -> None:
    """Stopping an answer whose model pauses a minute between chunks frees its thread now,
    not at the next chunk (nor at the client's read timeout, set past the pause): with one
    thread, the next question is answered. The bound of 20 s only keeps a regression from
    holding the suite for the whole pause."""
    llm = BedrockLLMService(
        model=MODEL,
        client=make_bedrock_client(bedrock_server, read_timeout=120),
        config=BedrockConfig(max_concurrency=1),
        retry=fast_retry,
    )
    bedrock_server.script(Reply("a b c d", token_size=2, token_delay=60), Reply("Next answer."))
    stream = llm.stream(QUESTION)
    async for _ in stream:
        break  # the reader stops after the first piece
    await stream.aclose()
    answer = await asyncio.wait_for(llm.generate_response(QUESTION), timeout=20)
    assert answer == "Next answer."
    await llm.aclose()
