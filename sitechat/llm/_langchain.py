"""Adapters between LangChain chat models and sitechat's :class:`LLMDelta` stream.

Shared by the providers built on LangChain clients (``openai``, ``bedrock``), which differ
only in how they reach the wire and how their errors are mapped.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from langchain_core.messages import AIMessage, AIMessageChunk

from sitechat._redact import redact
from sitechat.errors import ProviderError
from sitechat.llm.base import LLMDelta, Piece
from sitechat.models import Usage

if TYPE_CHECKING:
    from sitechat.config import Settings

__all__ = ["check_ending", "chunk_piece", "message_delta", "model_for", "text_of", "usage_of"]

# why an answer ended, in each vendor's words: OpenAI's finish_reason, Bedrock's stopReason
_FILTERED = frozenset({"content_filter", "guardrail_intervened", "content_filtered"})
_AT_TOKEN_LIMIT = frozenset({"length", "max_tokens"})


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


def check_ending(
    provider: str, model: str, *, said: bool, stop: str | None, refusal: str | None = None
) -> None:
    """Raise when the answer ended without text or was cut by a content filter (or a
    Bedrock guardrail); log when it stopped at the token limit. ``stop`` is the vendor's
    reason (``finish_reason``, ``stopReason``).

    An empty answer (a refusal, a tool call, a filtered reply) and a filtered one would
    otherwise look like success, shown and kept in the history as if the model had spoken.
    A filter that cuts an answer midway raises after its text, which the caller keeps as
    the partial answer.
    """
    named = f"Model '{model}'"
    if stop in _FILTERED:
        raise ProviderError(
            f"{named}'s content filter stopped the answer ({stop}). Rephrase the question, "
            "or check the provider's content policy or guardrail.",
            provider=provider,
        )
    if refusal:
        raise ProviderError(
            f"{named} declined to answer: {redact(refusal)[:300]}", provider=provider
        )
    if not said:
        raise ProviderError(
            f"{named} returned no text (stop reason: {stop or 'none'}): it may have "
            "refused, or answered with a tool call. Try again, or rephrase the question.",
            provider=provider,
        )
    if stop in _AT_TOKEN_LIMIT:
        # logged as the provider's module (sitechat.llm.openai), where its users look
        logging.getLogger(f"sitechat.llm.{provider}").warning(
            "%s stopped at its token limit: the answer is cut short (raise "
            "SITECHAT_LLM__MAX_TOKENS).",
            named,
        )
