"""A chat over a real provider stream: usage and timings reach Done, a break ends in Error."""

from __future__ import annotations

from collections.abc import AsyncIterator

import httpx
import pytest

from sitechat.chat.service import RetrievalChatService
from sitechat.config import ChatSettings, RetrievalSettings, RetrySettings
from sitechat.events import ChatEvent, DoneEvent, ErrorEvent, SourcesEvent, TokenEvent
from sitechat.llm.openai import OpenAILLMService
from sitechat.models import Usage
from sitechat.retrieval.hybrid import HybridRetriever
from sitechat.testing.openai_server import OpenAICompatibleServer, OpenAIFaults, Reply
from tests.passages import passage_store

TEXT = "To delete your account open Settings, choose Account and press Delete account."


@pytest.fixture
async def chat(
    openai_server: OpenAICompatibleServer, fast_retry: RetrySettings
) -> AsyncIterator[RetrievalChatService]:
    """A retrieval chat over one indexed passage, answering through the local server."""
    store, embeddings = await passage_store(
        {"https://docs.example.com/account": ("Account", "delete-account", TEXT)}
    )
    retriever = HybridRetriever(store, embeddings, RetrievalSettings(top_k=1, min_score=0.1))
    async with httpx.AsyncClient() as client:
        llm = OpenAILLMService(
            model="gpt-test",
            api_key="sk-chat-secret-0123456789",
            base_url=openai_server.base_url,
            retry=fast_retry,
            http_async_client=client,
        )
        yield RetrievalChatService(llm, retriever, settings=ChatSettings())


async def _events(chat: RetrievalChatService) -> list[ChatEvent]:
    return [event async for event in chat.stream_events("How do I delete my account?")]


async def test_streamed_answer_brings_usage_and_timings_to_done(
    openai_server: OpenAICompatibleServer, chat: RetrievalChatService
) -> None:
    """Tokens stream as TokenEvents; Done carries the server's usage and the timings."""
    openai_server.script(
        OpenAIFaults.rate_limited(retry_after=0),
        Reply("Open Settings and press Delete account [1].", input_tokens=50, output_tokens=11),
    )
    events = await _events(chat)
    assert isinstance(events[0], SourcesEvent)
    tokens = [e.text for e in events if isinstance(e, TokenEvent)]
    done = events[-1]
    assert isinstance(done, DoneEvent)
    assert "".join(tokens) == done.answer == "Open Settings and press Delete account [1]."
    assert len(tokens) > 1
    assert done.usage == Usage(50, 11)
    assert done.timings.first_token_ms is not None
    assert done.cited == (1,)


async def test_stream_broken_mid_answer_ends_with_error_event_and_partial(
    openai_server: OpenAICompatibleServer, chat: RetrievalChatService
) -> None:
    """A connection cut after tokens ends the chat with ErrorEvent(partial); nothing raises."""
    openai_server.script(Reply("Open Settings and then", token_size=5, drop_after=2))
    events = await _events(chat)
    error = events[-1]
    assert isinstance(error, ErrorEvent)
    assert error.error_type == "StreamInterruptedError"
    assert error.partial == "Open Setti"  # two tokens of five characters
    assert "sk-chat-secret" not in error.message
    assert len(openai_server.requests) == 1
