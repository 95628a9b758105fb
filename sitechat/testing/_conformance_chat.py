"""The chat service half of the conformance kit (see :mod:`sitechat.testing.conformance`)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import ClassVar

import pytest
from langchain_core.messages import AIMessage, HumanMessage

from sitechat.chat.base import ChatService, HistoryLike
from sitechat.errors import InvalidInputError, ProviderError
from sitechat.events import ChatEvent, DoneEvent, ErrorEvent, SourcesEvent, TokenEvent
from sitechat.models import ChatMessage

__all__ = ["ChatServiceConformance"]


async def _events(service: ChatService, message: str, history: HistoryLike = ()) -> list[ChatEvent]:
    return [event async for event in service.stream_events(message, history)]


async def _drain(chunks: AsyncIterator[str]) -> str:
    return "".join([piece async for piece in chunks])


def _check_order(events: list[ChatEvent]) -> None:
    assert events, "the stream produced no events"
    assert isinstance(events[0], SourcesEvent), f"first event is {type(events[0]).__name__}"
    assert isinstance(events[-1], (DoneEvent, ErrorEvent)), (
        f"last event is {type(events[-1]).__name__}"
    )
    middle = events[1:-1]
    assert all(isinstance(e, TokenEvent) for e in middle), "only tokens between the ends"


class ChatServiceConformance:
    """The :class:`~sitechat.chat.base.ChatService` contract, as tests.

    Provide a ``chat_service`` fixture whose index can answer ``question`` (index
    :func:`~sitechat.testing.conformance.conformance_chunks` and the default question
    works). Optionally provide ``failing_chat_service`` (its LLM fails) for the error
    tests. Switches: ``max_message_chars`` (the configured limit, None to skip) and
    ``deterministic`` (the same question gives the same answer).
    """

    question: ClassVar[str] = "How do I install the app on Linux?"
    max_message_chars: ClassVar[int | None] = 4000
    deterministic: ClassVar[bool] = True

    @pytest.fixture
    def chat_service(self) -> ChatService:
        """Override: the service under test."""
        raise NotImplementedError(
            "Subclasses of ChatServiceConformance provide a 'chat_service' fixture."
        )

    @pytest.fixture
    def failing_chat_service(self) -> ChatService | None:
        """Override: the service with an LLM that fails (None skips those tests)."""
        return None

    @pytest.mark.asyncio
    async def test_event_order(self, chat_service: ChatService) -> None:
        """Sources first, then tokens, then exactly one Done or Error event."""
        events = await _events(chat_service, self.question)
        _check_order(events)
        assert sum(isinstance(e, (DoneEvent, ErrorEvent)) for e in events) == 1
        assert type(chat_service).name

    @pytest.mark.asyncio
    async def test_tokens_reassemble_into_the_answer(self, chat_service: ChatService) -> None:
        """The tokens joined are the Done event's answer; citations name given sources."""
        events = await _events(chat_service, self.question)
        done = events[-1]
        assert isinstance(done, DoneEvent), f"the answer failed: {done}"
        sources = events[0]
        assert isinstance(sources, SourcesEvent)
        text = "".join(e.text for e in events if isinstance(e, TokenEvent))
        assert text == done.answer
        assert done.answer.strip()
        numbers = {s.n for s in sources.sources}
        assert set(done.cited) <= numbers
        assert done.timings.total_ms >= 0

    @pytest.mark.asyncio
    async def test_process_message_matches_the_event_stream(
        self, chat_service: ChatService
    ) -> None:
        """process_message() returns the streamed answer, whole or in pieces."""
        events = await _events(chat_service, self.question)
        done = events[-1]
        assert isinstance(done, DoneEvent)
        whole = await chat_service.process_message(self.question)
        pieces = await _drain(await chat_service.process_message(self.question, stream=True))
        assert isinstance(whole, str)
        if self.deterministic:
            assert whole == done.answer
            assert pieces == done.answer

    @pytest.mark.asyncio
    async def test_history_in_either_form(self, chat_service: ChatService) -> None:
        """History is accepted as ChatMessage values or LangChain messages."""
        ours = [ChatMessage("user", "Hello"), ChatMessage("assistant", "Hi, ask away.")]
        langchain = [HumanMessage(content="Hello"), AIMessage(content="Hi, ask away.")]
        _check_order(await _events(chat_service, self.question, ours))
        _check_order(await _events(chat_service, self.question, langchain))

    @pytest.mark.asyncio
    async def test_empty_message_is_refused(self, chat_service: ChatService) -> None:
        """An empty or blank message raises InvalidInputError before any event."""
        for message in ("", "   \n\t"):
            with pytest.raises(InvalidInputError):
                await _events(chat_service, message)

    @pytest.mark.asyncio
    async def test_oversized_message_is_refused(self, chat_service: ChatService) -> None:
        """A message over the configured limit raises InvalidInputError before any event."""
        if self.max_message_chars is None:
            pytest.skip("no message limit configured for this service")
        with pytest.raises(InvalidInputError):
            await _events(chat_service, "x" * (self.max_message_chars + 1))
        _check_order(await _events(chat_service, self.question))

    @pytest.mark.asyncio
    async def test_stream_can_be_abandoned(self, chat_service: ChatService) -> None:
        """Closing the event stream after the sources releases it; the service still works."""
        stream = chat_service.stream_events(self.question)
        first = await stream.__anext__()
        assert isinstance(first, SourcesEvent)
        await stream.aclose()
        _check_order(await _events(chat_service, self.question))

    @pytest.mark.asyncio
    async def test_provider_failure_ends_with_an_error_event(
        self, failing_chat_service: ChatService | None
    ) -> None:
        """A failing LLM ends the stream with an ErrorEvent instead of raising."""
        if failing_chat_service is None:
            pytest.skip("no failing_chat_service fixture")
        events = await _events(failing_chat_service, self.question)
        _check_order(events)
        error = events[-1]
        assert isinstance(error, ErrorEvent)
        assert error.message
        assert error.error_type

    @pytest.mark.asyncio
    async def test_provider_failure_raises_from_process_message(
        self, failing_chat_service: ChatService | None
    ) -> None:
        """process_message() turns the failure into a ProviderError."""
        if failing_chat_service is None:
            pytest.skip("no failing_chat_service fixture")
        with pytest.raises(ProviderError):
            await failing_chat_service.process_message(self.question)
