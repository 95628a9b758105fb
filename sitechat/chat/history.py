"""Conversation history: a small store interface and a bounded in-memory default.

Apps keep one history per session id (a browser tab, a Slack thread). Plug in your own
store (Redis, a database) by implementing :class:`HistoryStore`'s three coroutines.
"""

from __future__ import annotations

import threading
from abc import ABC, abstractmethod
from collections import OrderedDict, deque
from collections.abc import Sequence

from langchain_core.messages import AIMessage, BaseMessage, HumanMessage, SystemMessage

from sitechat.models import ChatMessage

__all__ = ["HistoryStore", "InMemoryHistoryStore", "normalize_history"]


def normalize_history(history: Sequence[ChatMessage | BaseMessage]) -> list[ChatMessage]:
    """Accept sitechat or LangChain messages; return sitechat ``ChatMessage`` values."""
    out: list[ChatMessage] = []
    for message in history:
        if isinstance(message, ChatMessage):
            out.append(message)
        elif isinstance(message, HumanMessage):
            out.append(ChatMessage("user", str(message.content)))
        elif isinstance(message, AIMessage):
            out.append(ChatMessage("assistant", str(message.content)))
        elif isinstance(message, SystemMessage):
            out.append(ChatMessage("system", str(message.content)))
        else:
            raise TypeError(f"Unsupported history item {type(message).__name__}; use ChatMessage.")
    return out


class HistoryStore(ABC):
    """Where conversations are kept between requests, keyed by session id."""

    @abstractmethod
    async def get(self, session_id: str) -> list[ChatMessage]:
        """The conversation so far, oldest first (empty for an unknown session)."""

    @abstractmethod
    async def append(self, session_id: str, *messages: ChatMessage) -> None:
        """Add turns to the end of a conversation."""

    @abstractmethod
    async def clear(self, session_id: str) -> None:
        """Forget a conversation."""


class InMemoryHistoryStore(HistoryStore):
    """Keeps the last ``max_messages`` turns of the ``max_sessions`` most recent sessions."""

    def __init__(self, *, max_messages: int = 50, max_sessions: int = 10_000) -> None:
        self.max_messages = max_messages
        self.max_sessions = max_sessions
        self._sessions: OrderedDict[str, deque[ChatMessage]] = OrderedDict()
        # a thread lock, not an asyncio one: the store may serve several event loops
        self._lock = threading.Lock()

    async def get(self, session_id: str) -> list[ChatMessage]:
        with self._lock:
            turns = self._sessions.get(session_id)
            return list(turns) if turns else []

    async def append(self, session_id: str, *messages: ChatMessage) -> None:
        with self._lock:
            turns = self._sessions.get(session_id)
            if turns is None:
                turns = self._sessions[session_id] = deque(maxlen=self.max_messages)
            self._sessions.move_to_end(session_id)
            turns.extend(messages)
            while len(self._sessions) > self.max_sessions:
                self._sessions.popitem(last=False)

    async def clear(self, session_id: str) -> None:
        with self._lock:
            self._sessions.pop(session_id, None)
