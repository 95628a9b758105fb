"""Turn a follow-up question into a standalone search query.

"And how do I delete it?" finds nothing on its own: the search needs the topic from the
conversation. With an LLM, a short non-streamed call rewrites the question; its tokens never
reach the answer stream. The offline answerer cannot write, so a keyword rewriter carries the
previous question's topic words over instead. With no history, no rewriting happens at all.

The LLM call only sharpens the search, so it is cheap to fail: one try, no retries, at most
:data:`REWRITE_TIMEOUT` seconds, and on any failure the keyword rewriter makes the query.
The answer that follows retries per ``SITECHAT_LLM__RETRY``; a rewrite that retried too would
double the time a dead or stalled provider takes to report its error.
"""

from __future__ import annotations

import asyncio
import logging
import re
from abc import ABC, abstractmethod
from collections.abc import Sequence

from langchain_core.messages import BaseMessage, HumanMessage, SystemMessage

from sitechat._text import content_terms
from sitechat.errors import ProviderError
from sitechat.llm.base import BaseLLMService
from sitechat.models import ChatMessage

__all__ = [
    "CONDENSE_PROMPT",
    "REWRITE_TIMEOUT",
    "KeywordQueryRewriter",
    "LLMQueryRewriter",
    "QueryRewriter",
    "default_rewriter",
]

logger = logging.getLogger(__name__)

CONDENSE_PROMPT = """Rewrite the user's last question as one standalone search query for the \
website's documentation, using the conversation to resolve words like "it", "that" or "there". \
Keep names, versions and error messages exactly. Reply with the query only, no quotes, no \
explanation. If the question already stands alone, repeat it unchanged."""

#: Seconds an LLM rewrite may take before the keyword rewriter's query is used instead
#: (lower still when ``SITECHAT_LLM__TIMEOUT`` is lower).
REWRITE_TIMEOUT = 5.0

_MAX_QUERY_CHARS = 400
_HISTORY_TURNS = 6
_REFERRING = re.compile(
    r"\b(it|its|it's|this|that|these|those|they|them|their|there|one|ones|same|else|also|"
    r"and|instead|too|more|again)\b",
    re.IGNORECASE,
)

# "Is there …", "there are …": "there" asking whether something exists refers to nothing.
_EXISTENTIAL_THERE = re.compile(
    r"\b(?:(?:is|are|was|were|will|would|can|could|should|be)\s+there|there\s*(?:is|are|was|"
    r"were|will|would|'s|’s|'re))\b",
    re.IGNORECASE,
)
# Topic words that make a question without referring words stand alone.
_STANDALONE_TERMS = 2


def _stands_alone(question: str) -> bool:
    """Whether ``question`` names its own topic: two topic words or more, and no word that
    refers back ("it", "that", "and", "what about …" is one topic word short)."""
    if len(content_terms(question)) < _STANDALONE_TERMS:
        return False
    return not _REFERRING.search(_EXISTENTIAL_THERE.sub(" ", question))


class QueryRewriter(ABC):
    """Makes the search query for a question, given the conversation so far."""

    @abstractmethod
    async def rewrite(self, question: str, history: Sequence[ChatMessage]) -> str:
        """The query to search with; only called when ``history`` is not empty."""


class LLMQueryRewriter(QueryRewriter):
    """Asks the LLM for a standalone query, in one try of at most ``timeout`` seconds.

    If the call fails (a provider error, the time running out, an empty or overlong reply),
    ``fallback`` makes the query instead (by default a :class:`KeywordQueryRewriter`), and
    one warning is logged.
    """

    def __init__(
        self,
        llm: BaseLLMService,
        prompt: str = CONDENSE_PROMPT,
        *,
        timeout: float = REWRITE_TIMEOUT,
        fallback: QueryRewriter | None = None,
    ) -> None:
        self.llm = llm
        self.prompt = prompt
        self.timeout = timeout
        self.fallback = fallback if fallback is not None else KeywordQueryRewriter()

    async def rewrite(self, question: str, history: Sequence[ChatMessage]) -> str:
        turns = [t for t in history if t.role in ("user", "assistant")][-_HISTORY_TURNS:]
        conversation = "\n".join(f"{t.role}: {t.content[:1000]}" for t in turns)
        messages = [
            SystemMessage(content=self.prompt),
            HumanMessage(content=f"Conversation:\n{conversation}\n\nLast question: {question}"),
        ]
        try:
            text = await asyncio.wait_for(self._one_try(messages), self.timeout)
        except asyncio.TimeoutError:
            reason = f"no reply within {self.timeout:g}s"
        except ProviderError as exc:
            reason = f"{type(exc).__name__}: {exc}"
        except Exception as exc:  # a provider bug must not cost the user the answer
            reason = f"unexpected {type(exc).__name__}"
            logger.debug("query rewriting failed", exc_info=True)
        else:
            query = " ".join(text.split()).strip("\"'` ")
            if query and len(query) <= _MAX_QUERY_CHARS:
                return query
            reason = "an empty reply" if not query else "an overlong reply"
        logger.warning(
            "query rewriting by %s failed (%s); searching with %s's query instead",
            self.llm.describe(),
            reason,
            type(self.fallback).__name__,
        )
        return await self.fallback.rewrite(question, history)

    async def _one_try(self, messages: Sequence[BaseMessage]) -> str:
        # one try, not generate_response(): that retries per SITECHAT_LLM__RETRY, which is
        # for the answer, not for an optional search aid
        opened = await self.llm.open_stream(messages, once=True)
        parts: list[str] = []
        try:
            async for piece in opened.pieces():
                text = piece if isinstance(piece, str) else piece.text
                if text:
                    parts.append(text)
        finally:
            await opened.aclose()
        return "".join(parts)


class KeywordQueryRewriter(QueryRewriter):
    """Adds the conversation's topic words to a question that refers back to it.

    A question with no pronoun or connective ("it", "that", "and", …; "is there" asks, it
    does not refer) and at least two topic words of its own ("How do I export my notes?",
    "Is there an API rate limit?") stands alone and is left as it is: the previous topic's
    words would pull the search back to the previous page. A referring or one-topic-word
    question ("what about PDF?") gets the words of the latest question that stood alone, so
    a chain of follow-ups keeps its topic.
    """

    def __init__(self, max_added_terms: int = 8) -> None:
        self.max_added_terms = max_added_terms

    async def rewrite(self, question: str, history: Sequence[ChatMessage]) -> str:
        asked = [t.content for t in history if t.role == "user"]
        if not asked or _stands_alone(question):
            return question
        # the topic is that of the latest question that stood alone: in "How do I export
        # my notes?", "what about PDF?", "and Markdown?", the last one is about exporting
        previous = next((q for q in reversed(asked) if _stands_alone(q)), asked[0])
        own = content_terms(question)
        words = re.findall(r"[^\W_]+(?:['’][^\W_]+)?", previous)
        stems = set(own)
        added: list[str] = []
        for word in words:
            terms = content_terms(word)
            if terms and terms[0] not in stems and word.lower() not in (w.lower() for w in added):
                added.append(word)
                stems.add(terms[0])
            if len(added) >= self.max_added_terms:
                break
        return f"{question} {' '.join(added)}" if added else question


def default_rewriter(llm: BaseLLMService, *, timeout: float = REWRITE_TIMEOUT) -> QueryRewriter:
    """An LLM rewriter (at most ``timeout`` seconds) when the LLM can write, else the
    keyword rewriter."""
    if llm.supports_query_rewriting:
        return LLMQueryRewriter(llm, timeout=timeout)
    return KeywordQueryRewriter()
