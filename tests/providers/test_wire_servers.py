"""The local wire servers, driven by raw clients: httpx for OpenAI SSE, boto3 for Bedrock."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
from collections.abc import Callable
from typing import Any

import httpx
import pytest
from botocore.eventstream import ChecksumMismatch, EventStreamBuffer
from botocore.exceptions import ClientError, EventStreamError, ReadTimeoutError
from hypothesis import given
from hypothesis import strategies as st

from sitechat.testing._eventstream import encode_message
from sitechat.testing._wire import deterministic_vector
from sitechat.testing.bedrock_server import BedrockFaults, BedrockRuntimeServer
from sitechat.testing.openai_server import OpenAICompatibleServer, OpenAIFaults, Reply

CHAT = {"model": "m", "messages": [{"role": "user", "content": "hello"}]}
CLAUDE = "anthropic.claude-3-haiku-20240307-v1:0"
CONVERSE = {"modelId": CLAUDE, "messages": [{"role": "user", "content": [{"text": "hello"}]}]}


async def _sse_events(client: httpx.AsyncClient, url: str, body: dict[str, Any]) -> list[Any]:
    events: list[Any] = []
    async with client.stream("POST", url, json=body) as response:
        assert response.headers["content-type"].startswith("text/event-stream")
        async for line in response.aiter_lines():
            if line.startswith("data: "):
                data = line[len("data: ") :]
                events.append(data if data == "[DONE]" else json.loads(data))
    return events


async def _collect_lines(
    client: httpx.AsyncClient, url: str, body: dict[str, Any], into: list[str]
) -> None:
    async with client.stream("POST", url, json=body) as response:
        async for line in response.aiter_lines():
            into.append(line)


def _drain(stream: Any, into: list[Any]) -> None:
    try:
        for event in stream:
            into.append(event)
    finally:
        stream.close()  # a broken stream is not returned to the pool: release its socket


def _content(events: list[Any]) -> str:
    return "".join(
        e["choices"][0]["delta"].get("content") or ""
        for e in events
        if isinstance(e, dict) and e.get("choices")
    )


# OpenAI-compatible ----------------------------------------------------------------------


async def test_sse_stream_splits_reply_into_tokens_and_ends_with_done(
    openai_server: OpenAICompatibleServer,
) -> None:
    """The scripted text arrives in token_size pieces, then a stop chunk and [DONE]."""
    openai_server.script(Reply("abcdefghij", token_size=3))
    async with httpx.AsyncClient() as client:
        events = await _sse_events(
            client, f"{openai_server.base_url}/chat/completions", {**CHAT, "stream": True}
        )
    deltas = [e["choices"][0]["delta"].get("content") for e in events[1:-2]]
    assert deltas == ["abc", "def", "ghi", "j"]
    assert events[-2]["choices"][0]["finish_reason"] == "stop"
    assert events[-1] == "[DONE]"


async def test_sse_usage_chunk_only_when_include_usage_is_asked(
    openai_server: OpenAICompatibleServer,
) -> None:
    """stream_options.include_usage adds a last chunk with empty choices and the usage."""
    body = {**CHAT, "stream": True, "stream_options": {"include_usage": True}}
    async with httpx.AsyncClient() as client:
        with_usage = await _sse_events(client, f"{openai_server.base_url}/chat/completions", body)
        without = await _sse_events(
            client, f"{openai_server.base_url}/chat/completions", {**CHAT, "stream": True}
        )
    usage_chunk = with_usage[-2]
    assert usage_chunk["choices"] == []
    assert usage_chunk["usage"]["completion_tokens"] > 0
    assert not any(isinstance(e, dict) and "usage" in e for e in without)


def test_non_streaming_reply_echoes_the_last_user_message(
    openai_server: OpenAICompatibleServer,
) -> None:
    """Without a script the answer is a deterministic echo, with usage."""
    response = httpx.post(f"{openai_server.base_url}/chat/completions", json=CHAT)
    payload = response.json()
    assert payload["choices"][0]["message"]["content"] == "You said: hello"
    assert (
        payload["usage"]["total_tokens"]
        == payload["usage"]["prompt_tokens"] + payload["usage"]["completion_tokens"]
    )


def test_embeddings_accept_a_string_or_a_list(openai_server: OpenAICompatibleServer) -> None:
    """One vector per input, deterministic, of the configured or requested dimension."""
    url = f"{openai_server.base_url}/embeddings"
    single = httpx.post(url, json={"model": "e", "input": "hi"}).json()
    several = httpx.post(url, json={"model": "e", "input": ["hi", "yo"], "dimensions": 8}).json()
    assert single["data"][0]["embedding"] == deterministic_vector(
        "hi", openai_server.embedding_dimension
    )
    assert [len(d["embedding"]) for d in several["data"]] == [8, 8]
    assert [d["index"] for d in several["data"]] == [0, 1]


def test_models_lists_the_served_models() -> None:
    """GET /v1/models lists the models given, and other models get a 404."""
    with OpenAICompatibleServer(models=["small", "large"]) as server:
        listed = httpx.get(f"{server.base_url}/models").json()
        unknown = httpx.post(f"{server.base_url}/chat/completions", json={**CHAT, "model": "other"})
    assert [m["id"] for m in listed["data"]] == ["small", "large"]
    assert unknown.status_code == 404
    assert unknown.json()["error"]["code"] == "model_not_found"


@pytest.mark.parametrize(
    ("fault", "status", "code"),
    [
        (OpenAIFaults.rate_limited(retry_after=2), 429, "rate_limit_exceeded"),
        (OpenAIFaults.server_error(), 500, None),
        (OpenAIFaults.unavailable(), 503, None),
        (OpenAIFaults.forbidden(), 403, None),
        (OpenAIFaults.model_not_found(), 404, "model_not_found"),
        (OpenAIFaults.context_length_exceeded(), 400, "context_length_exceeded"),
    ],
)
def test_faults_use_openai_error_shape(
    openai_server: OpenAICompatibleServer, fault: Any, status: int, code: str | None
) -> None:
    """Each fault answers once with its status and OpenAI's {"error": {...}} body."""
    openai_server.script(fault)
    failed = httpx.post(f"{openai_server.base_url}/chat/completions", json=CHAT)
    recovered = httpx.post(f"{openai_server.base_url}/chat/completions", json=CHAT)
    assert failed.status_code == status
    assert failed.json()["error"]["code"] == code
    assert recovered.status_code == 200
    assert openai_server.pending() == 0
    if status == 429:
        assert failed.headers["retry-after"] == "2"


def test_unauthorized_quotes_the_received_key(openai_server: OpenAICompatibleServer) -> None:
    """Like OpenAI, the 401 message quotes the key (so callers' redaction can be tested)."""
    openai_server.script(OpenAIFaults.unauthorized())
    response = httpx.post(
        f"{openai_server.base_url}/chat/completions",
        json=CHAT,
        headers={"Authorization": "Bearer sk-abc123"},
    )
    assert response.status_code == 401
    assert "sk-abc123" in response.json()["error"]["message"]


def test_requests_are_recorded_with_headers_and_body(openai_server: OpenAICompatibleServer) -> None:
    """Tests can assert what the client sent, e.g. the Authorization header."""
    httpx.post(
        f"{openai_server.base_url}/chat/completions",
        json=CHAT,
        headers={"Authorization": "Bearer k"},
    )
    (request,) = openai_server.requests
    assert request.headers["authorization"] == "Bearer k"
    assert request.json == CHAT
    assert request.path == "/v1/chat/completions"


async def test_dropped_stream_breaks_the_chunked_body(
    openai_server: OpenAICompatibleServer,
) -> None:
    """drop_after cuts the connection after that many tokens, mid-body."""
    openai_server.script(Reply("abcdefgh", token_size=2, drop_after=2))
    seen: list[str] = []
    async with httpx.AsyncClient() as client:
        url = f"{openai_server.base_url}/chat/completions"
        with pytest.raises(httpx.RemoteProtocolError):
            await _collect_lines(client, url, {**CHAT, "stream": True}, seen)
    assert _content([json.loads(x[6:]) for x in seen if x.startswith("data: {")]) == "abcd"


async def test_malformed_line_follows_the_given_tokens(
    openai_server: OpenAICompatibleServer,
) -> None:
    """malformed_after sends an SSE data line that is not JSON."""
    openai_server.script(Reply("abcd", token_size=2, malformed_after=1))
    async with httpx.AsyncClient() as client:
        with pytest.raises(json.JSONDecodeError):
            await _sse_events(
                client, f"{openai_server.base_url}/chat/completions", {**CHAT, "stream": True}
            )


async def test_slow_first_byte_trips_a_client_read_timeout(
    openai_server: OpenAICompatibleServer,
) -> None:
    """first_byte_delay holds the headers back past a short client timeout."""
    openai_server.script(Reply("late", first_byte_delay=2.0))
    async with httpx.AsyncClient(timeout=0.05) as client:
        with pytest.raises(httpx.ReadTimeout):
            await client.post(f"{openai_server.base_url}/chat/completions", json=CHAT)


async def test_fifty_concurrent_streams_all_complete(openai_server: OpenAICompatibleServer) -> None:
    """The threaded server serves 50 streaming connections at once."""
    openai_server.default_reply = Reply("one two three four five", token_size=4, token_delay=0.002)
    url = f"{openai_server.base_url}/chat/completions"
    async with httpx.AsyncClient(limits=httpx.Limits(max_connections=100)) as client:
        results = await asyncio.gather(
            *(_sse_events(client, url, {**CHAT, "stream": True}) for _ in range(50))
        )
    assert {_content(events) for events in results} == {"one two three four five"}


def test_script_rejects_unknown_endpoints(openai_server: OpenAICompatibleServer) -> None:
    """A typo in the endpoint name fails loudly instead of never matching."""
    with pytest.raises(ValueError, match="Unknown endpoint"):
        openai_server.script(Reply("x"), endpoint="chats")


# Bedrock --------------------------------------------------------------------------------


@given(
    headers=st.dictionaries(st.text(min_size=1, max_size=20), st.text(max_size=50), max_size=4),
    payload=st.binary(max_size=300),
)
def test_event_stream_frames_decode_with_botocore(headers: dict[str, str], payload: bytes) -> None:
    """Any headers and payload survive botocore's decoder, CRCs included."""
    buffer = EventStreamBuffer()
    buffer.add_data(encode_message(headers, payload))
    (message,) = list(buffer)
    assert message.headers == headers
    assert message.payload == payload


def test_corrupted_frame_is_rejected_by_botocore() -> None:
    """Flipping a payload byte breaks the message CRC."""
    frame = bytearray(encode_message({":event-type": "x"}, b"payload"))
    frame[-6] ^= 0xFF
    buffer = EventStreamBuffer()
    buffer.add_data(bytes(frame))
    with pytest.raises(ChecksumMismatch):
        list(buffer)


def test_converse_returns_text_and_usage(
    bedrock_server: BedrockRuntimeServer, make_bedrock_client: Callable[..., Any]
) -> None:
    """boto3's converse parses the server's answer and usage."""
    response = make_bedrock_client(bedrock_server).converse(**CONVERSE)
    assert response["output"]["message"]["content"] == [{"text": "You said: hello"}]
    assert (
        response["usage"]["totalTokens"]
        == response["usage"]["inputTokens"] + response["usage"]["outputTokens"]
    )
    assert bedrock_server.requests[0].path.endswith("/converse")


def test_converse_stream_sends_the_event_sequence(
    bedrock_server: BedrockRuntimeServer, make_bedrock_client: Callable[..., Any]
) -> None:
    """messageStart, deltas, contentBlockStop, messageStop and metadata, decoded by botocore."""
    bedrock_server.script(Reply("abcdef", token_size=3))
    events = list(make_bedrock_client(bedrock_server).converse_stream(**CONVERSE)["stream"])
    kinds = [next(iter(e)) for e in events]
    assert kinds == [
        "messageStart",
        "contentBlockDelta",
        "contentBlockDelta",
        "contentBlockStop",
        "messageStop",
        "metadata",
    ]
    assert [e["contentBlockDelta"]["delta"]["text"] for e in events[1:3]] == ["abc", "def"]
    assert events[-1]["metadata"]["usage"]["outputTokens"] == 2


def test_invoke_embeds_titan_and_cohere_bodies(
    bedrock_server: BedrockRuntimeServer, make_bedrock_client: Callable[..., Any]
) -> None:
    """Titan v2 gets one embedding and a token count; Cohere one embedding per text."""
    client = make_bedrock_client(bedrock_server)
    titan = json.loads(
        client.invoke_model(
            modelId="amazon.titan-embed-text-v2:0",
            body=json.dumps({"inputText": "hi", "dimensions": 256}),
        )["body"].read()
    )
    cohere = json.loads(
        client.invoke_model(
            modelId="cohere.embed-english-v3",
            body=json.dumps({"texts": ["a", "b"], "input_type": "search_document"}),
        )["body"].read()
    )
    assert titan["embedding"] == deterministic_vector("hi", 256)
    assert titan["inputTextTokenCount"] == 1
    assert cohere["embeddings"] == [deterministic_vector(t, 1024) for t in ["a", "b"]]


@pytest.mark.parametrize(
    ("fault", "code", "status"),
    [
        (BedrockFaults.throttling(), "ThrottlingException", 429),
        (BedrockFaults.access_denied(), "AccessDeniedException", 403),
        (BedrockFaults.input_too_long(), "ValidationException", 400),
        (BedrockFaults.model_not_found(), "ResourceNotFoundException", 404),
        (BedrockFaults.unavailable(), "ServiceUnavailableException", 503),
    ],
)
def test_faults_parse_as_modeled_client_errors(
    bedrock_server: BedrockRuntimeServer,
    make_bedrock_client: Callable[..., Any],
    fault: Any,
    code: str,
    status: int,
) -> None:
    """botocore reads the error code from x-amzn-ErrorType, as from AWS."""
    bedrock_server.script(fault)
    with pytest.raises(ClientError) as caught:
        make_bedrock_client(bedrock_server).converse_stream(**CONVERSE)
    assert caught.value.response["Error"]["Code"] == code
    assert caught.value.response["ResponseMetadata"]["HTTPStatusCode"] == status


@pytest.mark.parametrize("exception_type", ["modelStreamErrorException", "throttlingException"])
def test_exception_event_mid_stream(
    bedrock_server: BedrockRuntimeServer,
    make_bedrock_client: Callable[..., Any],
    exception_type: str,
) -> None:
    """error_after sends an exception frame that botocore raises as EventStreamError."""
    bedrock_server.script(Reply("abcdef", token_size=2, error_after=1, error_type=exception_type))
    seen: list[Any] = []
    stream = make_bedrock_client(bedrock_server).converse_stream(**CONVERSE)["stream"]
    with pytest.raises(EventStreamError) as caught:
        _drain(stream, seen)
    assert caught.value.response["Error"]["Code"] == exception_type
    assert len(seen) == 2  # messageStart and one delta


def test_malformed_frame_fails_the_checksum(
    bedrock_server: BedrockRuntimeServer, make_bedrock_client: Callable[..., Any]
) -> None:
    """malformed_after sends a frame whose prelude CRC is wrong."""
    bedrock_server.script(Reply("abcd", token_size=2, malformed_after=1))
    stream = make_bedrock_client(bedrock_server).converse_stream(**CONVERSE)["stream"]
    with pytest.raises(ChecksumMismatch):
        _drain(stream, [])


def test_slow_first_byte_trips_boto3_read_timeout(
    bedrock_server: BedrockRuntimeServer, make_bedrock_client: Callable[..., Any]
) -> None:
    """first_byte_delay beyond botocore's read_timeout raises ReadTimeoutError."""
    bedrock_server.script(Reply("late", first_byte_delay=2.0))
    with pytest.raises(ReadTimeoutError):
        make_bedrock_client(bedrock_server, read_timeout=0.05).converse_stream(**CONVERSE)


@pytest.mark.parametrize(
    ("module", "banner"),
    [("openai_server", "OpenAI-compatible server on http://"), ("bedrock_server", "Bedrock")],
)
def test_the_servers_start_stand_alone_without_a_warning(module: str, banner: str) -> None:
    """`python -m sitechat.testing.<server>`, as the docs give it, prints its banner first:
    no RuntimeWarning about the module being imported already."""
    command = [sys.executable, "-W", "error", "-m", f"sitechat.testing.{module}", "--port", "0"]
    with subprocess.Popen(
        command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    ) as process:
        try:
            first_line = process.stdout.readline() if process.stdout else ""
        finally:
            process.terminate()
        _, errors = process.communicate(timeout=30)
    assert first_line.startswith(banner), errors
    assert "RuntimeWarning" not in errors


def test_the_package_still_exports_the_servers() -> None:
    """The servers' names are importable from sitechat.testing, as before."""
    import sitechat.testing as testing

    assert testing.OpenAICompatibleServer is OpenAICompatibleServer
    assert testing.BedrockRuntimeServer is BedrockRuntimeServer
    assert {"OpenAIFaults", "BedrockFaults"} <= set(dir(testing))
    with pytest.raises(AttributeError, match="NoSuchServer"):
        _ = testing.NoSuchServer  # type: ignore[attr-defined]
