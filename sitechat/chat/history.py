"""Conversation history: a small store interface and a bounded in-memory default.

Apps keep one history per session id (a browser tab, a Slack thread). Plug in your own
store (Redis, a database) by implementing :class:`HistoryStore`'s three coroutines.
"""

from __future__ import annotations

import threading
from abc import ABC, abstractmethod
from collections import OrderedDict, deque
from collections.abc import Iterable, Mapping, Sequence

from langchain_core.messages import AIMessage, HumanMessage, SystemMessage

from sitechat.errors import InvalidInputError
from sitechat.models import ChatMessage, Role

__all__ = ["HistoryStore", "InMemoryHistoryStore", "exchanges", "normalize_history"]

_ROLES: tuple[Role, ...] = ("user", "assistant", "system")
_ACCEPTED = (
    "Pass the history as a list of ChatMessage(role, content), LangChain messages or "
    '{"role": ..., "content": ...} dicts, with role "user", "assistant" or "system" and '
    "text content."
)


def normalize_history(history: Iterable[object] | None) -> list[ChatMessage]:
    """Check a conversation and return it as sitechat ``ChatMessage`` values.

    Accepted items: ``ChatMessage``; LangChain ``HumanMessage``, ``AIMessage`` and
    ``SystemMessage``; and OpenAI-style mappings ``{"role": ..., "content": ...}`` (other
    keys are ignored). Roles are ``user``, ``assistant`` and ``system``; content must be
    text; ``None`` is no history. Anything else raises
    :class:`~sitechat.errors.InvalidInputError` naming the item, rather than being dropped:
    a silently shortened conversation gives wrong answers.
    """
    if history is None:
        return []  # no conversation yet
    if isinstance(history, (str, bytes, Mapping)):
        raise InvalidInputError(
            f"The history is a single {type(history).__name__}, not a list of messages. "
            + _ACCEPTED
        )
    if not isinstance(history, Iterable):
        raise InvalidInputError(
            f"The history must be a list of messages, not {type(history).__name__}. " + _ACCEPTED
        )
    out: list[ChatMessage] = []
    for index, item in enumerate(history):
        out.append(_message(index, item))
    return out


def _message(index: int, item: object) -> ChatMessage:
    if isinstance(item, ChatMessage):
        if item.role in _ROLES and isinstance(item.content, str):
            return item  # the common case: nothing to convert
        return ChatMessage(_role(index, item, item.role), _content(index, item, item.content))
    if isinstance(item, HumanMessage):
        return ChatMessage("user", _content(index, item, item.content))
    if isinstance(item, AIMessage):
        return ChatMessage("assistant", _content(index, item, item.content))
    if isinstance(item, SystemMessage):
        return ChatMessage("system", _content(index, item, item.content))
    if isinstance(item, Mapping) and "role" in item and "content" in item:
        return ChatMessage(_role(index, item, item["role"]), _content(index, item, item["content"]))
    raise InvalidInputError(
        f"History item {index} is not a supported message: {_show(item)}. " + _ACCEPTED
    )


def _role(index: int, item: object, role: object) -> Role:
    for known in _ROLES:
        if role == known:
            return known
    raise InvalidInputError(
        f"History item {index} has the unknown role {role!r}: {_show(item)}. " + _ACCEPTED
    )


def _content(index: int, item: object, content: object) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, list) and all(_is_text_block(block) for block in content):
        # LangChain's multi-part content: text blocks only (an image cannot be searched)
        return "".join(block if isinstance(block, str) else block["text"] for block in content)
    raise InvalidInputError(
        f"History item {index} has {type(content).__name__} content, not text: {_show(item)}. "
        + _ACCEPTED
    )


def _is_text_block(block: object) -> bool:
    return isinstance(block, str) or (
        isinstance(block, Mapping)
        and block.get("type") == "text"
        and isinstance(block.get("text"), str)
    )


def _show(item: object) -> str:
    text = repr(item)
    return text if len(text) <= 120 else text[:119] + "…"


def exchanges(history: Sequence[ChatMessage]) -> list[list[ChatMessage]]:
    """The conversation as exchanges, oldest first: each a user message and its answers.

    Messages before the first user message are left out: a conversation sent to a model
    must open with a user turn (Bedrock's Converse API refuses any other), and an answer
    without its question (a widget's greeting, or a window cut mid-exchange) means little.
    """
    groups: list[list[ChatMessage]] = []
    for message in history:
        if message.role == "user":
            groups.append([message])
        elif groups:
            groups[-1].append(message)
    return groups


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
