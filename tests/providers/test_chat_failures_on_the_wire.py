"""Chat failures over real provider wires: what the caller learns, and how long it waits."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import httpx
import pytest

from sitechat.chat.base import HistoryLike
from sitechat.chat.service import RetrievalChatService
from sitechat.config import RetrySettings, Settings
from sitechat.errors import RateLimitError, StreamInterruptedError
from sitechat.events import ChatEvent, ErrorEvent, SourcesEvent
from sitechat.llm.base import BaseLLMService
from sitechat.llm.bedrock import BedrockLLMService
from sitechat.llm.openai import OpenAILLMService
from sitechat.models import ChatMessage
from sitechat.testing.bedrock_server import BedrockRuntimeServer
from sitechat.testing.openai_server import OpenAICompatibleServer, OpenAIFaults, Reply
from tests.passages import passage_store

TEXT = "Install the app on Linux with the AppImage, or on Windows with the installer."
QUESTION = "How do I install the app on Windows?"
HISTORY = [
    ChatMessage("assistant", "Hi! Ask me anything about Lumen Notes."),
    ChatMessage("user", "How do I export notes?"),
    ChatMessage("assistant", "Use File > Export."),
    ChatMessage("user", "How do I import notes?"),
    ChatMessage("assistant", "Use File > Import."),
]


async def _chat(service: BaseLLMService, **settings: Any) -> RetrievalChatService:
    """A chat built from settings, as open_chat builds it, over one indexed passage."""
    store, embeddings = await passage_store(
        {"https://docs.example.com/install": ("Install", "install", TEXT)}
    )
    loaded = Settings.load(env_file=None, retrieval={"top_k": 1, "min_score": 0.1}, **settings)
    return RetrievalChatService.from_components(
        loaded, llm=service, embeddings=embeddings, store=store
    )


async def _events(chat: RetrievalChatService, history: HistoryLike = ()) -> list[ChatEvent]:
    return [event async for event in chat.stream_events(QUESTION, history)]


def _openai(
    server: OpenAICompatibleServer,
    client: httpx.AsyncClient,
    *,
    attempts: int = 1,
    timeout: float = 10.0,
) -> OpenAILLMService:
    return OpenAILLMService(
        model="gpt-test",
        api_key="sk-chat-secret-0123456789",
        base_url=server.base_url,
        timeout=timeout,
        retry=RetrySettings(max_attempts=attempts, initial_backoff=0.001, jitter=False),
        http_async_client=client,
    )


async def test_retry_after_reaches_error_event_and_process_message(
    openai_server: OpenAICompatibleServer, http_client: httpx.AsyncClient
) -> None:
    """A 429 with Retry-After: 120 gives retry_after=120 and the provider on the ErrorEvent
    and on the RateLimitError process_message raises."""
    chat = await _chat(_openai(openai_server, http_client))
    openai_server.script(OpenAIFaults.rate_limited(retry_after=120))
    error = (await _events(chat))[-1]
    assert isinstance(error, ErrorEvent)
    assert (error.error_type, error.retry_after, error.provider) == (
        "RateLimitError",
        120.0,
        "openai",
    )
    openai_server.script(OpenAIFaults.rate_limited(retry_after=120))
    with pytest.raises(RateLimitError) as caught:
        await chat.process_message(QUESTION)
    assert (caught.value.retry_after, caught.value.provider) == (120.0, "openai")
    assert str(caught.value) == error.message


async def test_dropped_stream_partial_reaches_process_message(
    openai_server: OpenAICompatibleServer, http_client: httpx.AsyncClient
) -> None:
    """A connection cut after three tokens raises StreamInterruptedError from process_message
    with those tokens as its partial text."""
    chat = await _chat(_openai(openai_server, http_client))
    openai_server.script(Reply("You install it with the installer.", token_size=4, drop_after=3))
    with pytest.raises(StreamInterruptedError) as caught:
        await chat.process_message(QUESTION)
    assert caught.value.partial == "You install "
    assert caught.value.provider == "openai"


async def test_stalled_provider_is_not_waited_on_twice_with_history(
    openai_server: OpenAICompatibleServer, http_client: httpx.AsyncClient
) -> None:
    """With history, a stalled LLM costs one rewrite try plus the answer's own tries, not the
    rewrite's retries too: 3 requests for 2 attempts, and the sources come after one try."""
    timeout = 0.3
    llm = _openai(openai_server, http_client, attempts=2, timeout=timeout)
    chat = await _chat(llm, llm={"timeout": timeout})
    openai_server.script(*[Reply("late", first_byte_delay=5)] * 4)
    events = chat.stream_events(QUESTION, HISTORY)
    sources = await events.__anext__()
    requests_before_sources = len(openai_server.requests)
    rest = [event async for event in events]
    assert isinstance(sources, SourcesEvent)
    assert requests_before_sources == 1  # one rewrite try timed out, no retry of it
    assert isinstance(rest[-1], ErrorEvent)
    assert rest[-1].error_type == "ProviderTimeoutError"
    assert len(openai_server.requests) == 3


@pytest.mark.parametrize("max_history", [20, 3])
async def test_bedrock_conversation_opens_with_a_user_turn(
    max_history: int, make_bedrock_client: Callable[..., Any]
) -> None:
    """Bedrock's Converse API gets a conversation that opens with a user turn, whether the
    history opens with a greeting or an odd MAX_HISTORY_MESSAGES cuts an exchange in half."""
    with BedrockRuntimeServer() as server:
        client = make_bedrock_client(server)
        llm = BedrockLLMService(
            model="us.anthropic.claude-3-5-haiku-20241022-v1:0",
            client=client,
            retry=RetrySettings(max_attempts=1),
        )
        chat = await _chat(
            llm, chat={"max_history_messages": max_history, "rewrite_followups": False}
        )
        server.script(Reply("Use the installer [1]."))
        assert not isinstance((await _events(chat, HISTORY))[-1], ErrorEvent)
        await llm.aclose()
        roles = [message["role"] for message in server.requests[-1].json["messages"]]
    expected = ["user", "assistant"] * (2 if max_history == 20 else 1) + ["user"]
    assert roles == expected
