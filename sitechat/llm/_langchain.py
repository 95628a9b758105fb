"""Adapters between LangChain chat models and sitechat's :class:`LLMDelta` stream.

Shared by the providers built on LangChain clients (``openai``, ``bedrock``), which differ
only in how they reach the wire and how their errors are mapped.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from langchain_core.messages import AIMessage, AIMessageChunk

from sitechat.llm.base import LLMDelta, Piece
from sitechat.models import Usage

if TYPE_CHECKING:
    from sitechat.config import Settings

__all__ = ["chunk_piece", "message_delta", "model_for", "text_of", "usage_of"]


def text_of(content: str | list[Any]) -> str:
    """The text of a message's content: a string, or a list of content blocks."""
    if isinstance(content, str):
        return content
    return "".join(
        part if isinstance(part, str) else str(part.get("text", ""))
        for part in content
        if isinstance(part, str) or part.get("type") == "text"
    )


def usage_of(metadata: Mapping[str, Any] | None) -> Usage | None:
    """LangChain's ``usage_metadata`` as sitechat's :class:`Usage`."""
    if not metadata:
        return None
    return Usage(int(metadata.get("input_tokens", 0)), int(metadata.get("output_tokens", 0)))


def message_delta(message: AIMessage) -> LLMDelta:
    """A whole (non-streamed) answer as a single delta."""
    return LLMDelta(text_of(message.content), usage_of(message.usage_metadata))


def chunk_piece(chunk: AIMessageChunk) -> Piece:
    """A streamed chunk as what ``_astream`` yields: its text as a ``str``, or an
    :class:`LLMDelta` when it reports usage (possibly an empty string: callers skip those).

    A plain function, not a generator over the stream: each async generator layer costs
    every token of every answer a suspend and a resume.
    """
    content = chunk.content
    text = content if isinstance(content, str) else text_of(content)
    usage = chunk.usage_metadata
    return LLMDelta(text, usage_of(usage)) if usage else text


def model_for(settings: Settings, own_model: str | None, provider: str, default: str) -> str:
    """The provider section's model, else ``SITECHAT_LLM__MODEL`` when this provider is the
    main one (a fallback must not inherit another vendor's model id), else ``default``."""
    if own_model:
        return own_model
    if settings.llm.model and settings.llm.provider in (None, provider):
        return settings.llm.model
    return default
