"""A blocking façade for scripts, notebooks and Streamlit.

sitechat is async inside. :class:`SiteChat` runs that async core on an event loop of its own,
in a background thread, so its plain methods work the same whether or not the caller already
has a loop running (Jupyter, Streamlit); it never calls ``asyncio.run`` inside a running loop.
Everything a ``SiteChat`` owns lives on its loop; async code should use
:func:`sitechat.open_chat` instead.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import AsyncIterator, Coroutine, Generator, Iterator, Mapping
from concurrent.futures import Future
from types import TracebackType
from typing import Any, TypeVar

from sitechat.chat.base import ChatService, HistoryLike
from sitechat.chat.history import HistoryStore, InMemoryHistoryStore
from sitechat.config import Settings
from sitechat.errors import StoreError
from sitechat.events import ChatEvent, DoneEvent, ErrorEvent, SourcesEvent, TokenEvent
from sitechat.models import Answer, ChatMessage, SearchHit

__all__ = ["LoopThread", "SiteChat"]

T = TypeVar("T")


class LoopThread:
    """An event loop running in a daemon thread; submit coroutines to it from any thread."""

    def __init__(self, name: str = "sitechat-loop") -> None:
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name=name, daemon=True)
        self._thread.start()

    @property
    def loop(self) -> asyncio.AbstractEventLoop:
        return self._loop

    def run(self, coro: Coroutine[Any, Any, T]) -> T:
        """Run ``coro`` on the loop thread and wait for its result."""
        if threading.current_thread() is self._thread:
            coro.close()
            raise RuntimeError("LoopThread.run() was called from its own loop; await instead.")
        if self._loop.is_closed():
            coro.close()  # never scheduled: close it so it is not reported as never awaited
            raise RuntimeError("This LoopThread is closed; create a new one.")
        future: Future[T] = asyncio.run_coroutine_threadsafe(coro, self._loop)
        try:
            return future.result()
        except BaseException:
            future.cancel()
            raise

    def iterate(self, agen: AsyncIterator[T]) -> Generator[T, None, None]:
        """Iterate an async iterator that lives on the loop thread, one item at a time."""

        async def next_item() -> tuple[bool, T | None]:
            try:
                return True, await agen.__anext__()
            except StopAsyncIteration:
                return False, None

        try:
            while True:
                ok, item = self.run(next_item())
                if not ok:
                    return
                yield item  # type: ignore[misc]
        finally:
            closer = getattr(agen, "aclose", None)
            if closer is not None and self._loop.is_running():
                self.run(closer())

    def close(self) -> None:
        """Stop the loop and join the thread; closing again does nothing."""
        if self._loop.is_running():
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(timeout=5)
        if not self._loop.is_running():
            self._loop.close()


class SiteChat:
    """Chat with an index from synchronous code.

    >>> chat = SiteChat(index="docs-index")
    >>> answer = chat.ask("How do I install it?")
    >>> print(answer.text, answer.sources)
    >>> for event in chat.stream("And on Windows?"):   # a follow-up in the same session
    ...     ...

    Each ``session_id`` keeps its own history; ``history=`` overrides it for one call.
    ``close()`` (or leaving the ``with`` block) releases it; closing again does nothing, and
    any other use of a closed ``SiteChat`` raises :class:`~sitechat.errors.StoreError`, as
    the async service does after ``aclose()``.
    """

    def __init__(
        self,
        index: str | None = None,
        *,
        settings: Settings | None = None,
        history_store: HistoryStore | None = None,
    ) -> None:
        from sitechat.api import open_chat

        self._portal = LoopThread()
        self._closed = False
        self._close_lock = threading.Lock()
        self.settings = settings or Settings.load()
        if index is not None:
            self.settings = self.settings.model_copy(update={"index": str(index)})
        self.history = history_store or InMemoryHistoryStore()
        try:
            self.service: ChatService = self._portal.run(open_chat(settings=self.settings))
        except BaseException:
            self._portal.close()
            raise

    def stream(
        self,
        message: str,
        *,
        session_id: str = "default",
        history: HistoryLike | None = None,
    ) -> Generator[ChatEvent, None, None]:
        """Yield the answer's events as they arrive.

        The finished turn is recorded under ``session_id``, unless ``history`` was passed: the
        caller then keeps the conversation itself. Closing the generator early (``break``,
        ``contextlib.closing``) cancels the provider call.
        """
        self._check_open()
        return self._while_open(self._portal.iterate(self._events(message, session_id, history)))

    def ask(
        self,
        message: str,
        *,
        session_id: str = "default",
        history: HistoryLike | None = None,
    ) -> Answer:
        """The whole answer, with its sources; provider failures are in ``answer.error``."""
        return collect_answer(message, self.stream(message, session_id=session_id, history=history))

    def search(
        self, query: str, k: int | None = None, where: Mapping[str, str] | None = None
    ) -> list[SearchHit]:
        """The best passages for ``query`` from this chat's index."""
        self._check_open()
        retriever = getattr(self.service, "retriever", None)
        if retriever is None:
            raise TypeError(f"{type(self.service).__name__} has no retriever to search with.")
        result = self._portal.run(retriever.retrieve(query, k, where))
        return list(result.hits)

    def reset(self, session_id: str = "default") -> None:
        """Forget a session's history."""
        self._check_open()
        self._portal.run(self.history.clear(session_id))

    async def _events(
        self, message: str, session_id: str, history: HistoryLike | None
    ) -> AsyncIterator[ChatEvent]:
        turns = history if history is not None else await self.history.get(session_id)
        events = self.service.stream_events(message, turns)
        try:
            async for event in events:
                if isinstance(event, DoneEvent) and history is None:
                    await self.history.append(
                        session_id,
                        ChatMessage("user", message),
                        ChatMessage("assistant", event.answer),
                    )
                yield event
        finally:
            await events.aclose()

    def close(self) -> None:
        """Close the chat service and stop its event loop; closing again does nothing."""
        with self._close_lock:
            if self._closed:
                return
            self._closed = True
        try:
            self._portal.run(self.service.aclose())
        finally:
            self._portal.close()

    def _check_open(self) -> None:
        if self._closed:
            raise StoreError(
                "This SiteChat is closed; create a new SiteChat to ask or search again."
            )

    def _while_open(
        self, events: Generator[ChatEvent, None, None]
    ) -> Generator[ChatEvent, None, None]:
        """``events``, refused with the closed-chat error once the chat has been closed."""
        try:
            while True:
                self._check_open()
                try:
                    event = next(events)
                except StopIteration:
                    return
                yield event
        finally:
            events.close()

    def __enter__(self) -> SiteChat:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


def collect_answer(question: str, events: Iterator[ChatEvent]) -> Answer:
    """Fold a finished event stream into an :class:`Answer`."""
    sources: tuple[Any, ...] = ()
    parts: list[str] = []
    for event in events:
        if isinstance(event, SourcesEvent):
            sources = event.sources
        elif isinstance(event, TokenEvent):
            parts.append(event.text)
        elif isinstance(event, DoneEvent):
            return Answer(
                question=question,
                text=event.answer,
                sources=sources,
                cited=event.cited,
                covered=event.covered,
                usage=event.usage,
                timings=event.timings,
            )
        elif isinstance(event, ErrorEvent):
            return Answer(
                question=question,
                text=event.partial,
                sources=sources,
                cited=(),
                covered=True,
                error=event.message,
                error_type=event.error_type,
                timings=event.timings,
                provider=event.provider or None,
                retry_after=event.retry_after,
            )
    return Answer(question=question, text="".join(parts), sources=sources, cited=(), covered=True)
