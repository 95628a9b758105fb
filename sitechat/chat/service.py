"""``RetrievalChatService``: retrieve passages, then stream a cited answer.

Retrieval starts first and the history is formatted while it runs, so its latency overlaps
the rest of the request preparation. Provider failures never raise out of
:meth:`RetrievalChatService.stream_events`: they end the stream with an ``ErrorEvent`` that
keeps whatever text had already streamed.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncGenerator, Sequence
from typing import TYPE_CHECKING, ClassVar

from sitechat.chat.base import ChatService, HistoryLike
from sitechat.chat.history import exchanges, normalize_history
from sitechat.chat.prompts import DEFAULT_PROMPTS, PromptTemplates, build_messages, parse_citations
from sitechat.chat.rewrite import REWRITE_TIMEOUT, QueryRewriter, default_rewriter
from sitechat.chat.small_talk import small_talk_kind
from sitechat.config import ChatSettings, RetrievalSettings
from sitechat.errors import InvalidInputError, ProviderError, StreamInterruptedError
from sitechat.events import ChatEvent, DoneEvent, ErrorEvent, SourcesEvent, TokenEvent
from sitechat.llm.base import interrupted
from sitechat.models import ChatMessage, SearchHit, Source, Timings, Usage
from sitechat.observability.metrics import ChatMetrics
from sitechat.retrieval.hybrid import HybridRetriever, RetrievalResult

if TYPE_CHECKING:
    from langchain_core.embeddings import Embeddings
    from typing_extensions import Self

    from sitechat.config import Settings
    from sitechat.llm.base import BaseLLMService, OpenedStream
    from sitechat.vectorstores.base import VectorStore

__all__ = ["RetrievalChatService"]

logger = logging.getLogger(__name__)

_SNIPPET_CHARS = 240
_CHARS_PER_TOKEN = 4  # a deliberately cautious estimate; no tokenizer download needed


def _ms(since: float) -> float:
    return round((time.perf_counter() - since) * 1000, 3)


def _snippet(text: str) -> str:
    # only the head can show, so only the head is flattened (passages run to thousands of
    # chars), unless it is so full of whitespace that it flattens to too little
    flat = " ".join(text[: _SNIPPET_CHARS * 4].split())
    if len(flat) <= _SNIPPET_CHARS and len(text) > _SNIPPET_CHARS * 4:
        flat = " ".join(text.split())
    return flat if len(flat) <= _SNIPPET_CHARS else flat[: _SNIPPET_CHARS - 1].rstrip() + "…"


class RetrievalChatService(ChatService):
    """Answers questions about a site from its index, with numbered citations."""

    name: ClassVar[str] = "retrieval"

    def __init__(
        self,
        llm: BaseLLMService,
        retriever: HybridRetriever,
        *,
        settings: ChatSettings | None = None,
        prompts: PromptTemplates = DEFAULT_PROMPTS,
        rewriter: QueryRewriter | None = None,
        metrics: ChatMetrics | None = None,
    ) -> None:
        self.llm = llm
        self.retriever = retriever
        self.settings = settings or ChatSettings()
        self.prompts = prompts
        self.rewriter = rewriter or default_rewriter(llm)
        # one EMF line per answer when SITECHAT_METRICS__ENABLED is true; a no-op otherwise
        self.metrics = metrics or ChatMetrics(None)

    @classmethod
    def from_components(
        cls,
        settings: Settings,
        *,
        llm: BaseLLMService,
        embeddings: Embeddings,
        store: VectorStore,
    ) -> Self:
        retriever = HybridRetriever(store, embeddings, settings.retrieval)
        return cls(
            llm,
            retriever,
            settings=settings.chat,
            rewriter=default_rewriter(llm, timeout=min(settings.llm.timeout, REWRITE_TIMEOUT)),
            metrics=ChatMetrics.from_settings(settings, provider=llm.describe()),
        )

    @property
    def retrieval_settings(self) -> RetrievalSettings:
        return self.retriever.settings

    def _validate(self, message: str) -> str:
        if not isinstance(message, str):
            raise InvalidInputError(
                f"The message must be text (str), not {type(message).__name__}. "
                "Pass the user's question as a string."
            )
        text = message.strip()
        if not text:
            raise InvalidInputError("The message is empty. Type a question about the site.")
        limit = self.settings.max_message_chars
        if len(text) > limit:
            raise InvalidInputError(
                f"The message is {len(text)} characters long; the limit is {limit}. "
                "Shorten it, or raise SITECHAT_CHAT__MAX_MESSAGE_CHARS."
            )
        return text

    async def _retrieve(self, message: str, history: Sequence[ChatMessage]) -> RetrievalResult:
        query = message
        # from the first question on, leaving out small talk: a greeting or a "thanks"
        # gives a question nothing to follow up
        conversation = [
            t
            for exchange in exchanges(history)
            if small_talk_kind(exchange[0].content) is None
            for t in exchange
            if t.role != "system"
        ]
        if conversation and self.settings.rewrite_followups:
            query = await self.rewriter.rewrite(message, conversation)
        return await self.retriever.retrieve(query)

    async def _format_history(self, history: HistoryLike) -> list[ChatMessage]:
        """The newest ``max_history_messages`` messages, from a user message on."""
        limit = self.settings.max_history_messages
        if not limit:
            return []
        turns = [t for t in normalize_history(history) if t.role != "system"]
        # cut at a user message, so the conversation opens with one and an odd limit (or a
        # greeting first) never leaves an answer without its question
        return [t for exchange in exchanges(turns[-limit:]) for t in exchange]

    def _fit(
        self, hits: Sequence[SearchHit], history: list[ChatMessage], question: str
    ) -> tuple[list[SearchHit], list[ChatMessage]]:
        """Trim sources (last first) and history (oldest exchange first) to the context."""
        budget = (self.llm.context_window - self.llm.max_output_tokens) * _CHARS_PER_TOKEN
        budget -= len(self.prompts.system) + len(self.prompts.question) + len(question)
        kept_hits: list[SearchHit] = []
        for hit in hits:
            cost = len(hit.chunk.text) + len(hit.chunk.title) + len(hit.chunk.url) + 64
            if cost > budget and kept_hits:
                break
            kept_hits.append(hit)
            budget -= cost
        kept: list[list[ChatMessage]] = []
        for exchange in reversed(exchanges(history)):
            # whole exchanges only: a question without its answer, or an answer opening
            # the conversation, misleads the model (and Bedrock refuses the latter)
            cost = sum(len(t.content) for t in exchange)
            if cost > budget:
                break
            kept.append(exchange)
            budget -= cost
        return kept_hits, [t for exchange in reversed(kept) for t in exchange]

    async def stream_events(
        self, message: str, history: HistoryLike = ()
    ) -> AsyncGenerator[ChatEvent, None]:
        question = self._validate(message)
        started = time.perf_counter()
        turns = normalize_history(history)  # a malformed history is refused first
        if self.settings.answer_small_talk and (kind := small_talk_kind(question)):
            reply = self.prompts.small_talk_reply(kind)
            yield SourcesEvent(sources=(), query="")
            yield TokenEvent(reply)
            # not an answer from the site: no metrics line, so latencies stay those of answers
            yield DoneEvent(answer=reply, cited=(), timings=Timings(total_ms=_ms(started)))
            return
        if turns:
            # Retrieval is the slow part and runs in this task; the history is formatted
            # in a task of its own, which runs whenever retrieval waits. Not the other way
            # round: under load every hop through the event loop's queue waits behind all
            # the other chats' work, and the history task is normally done by the time
            # retrieval is, so awaiting it costs no hop at all.
            formatting = asyncio.ensure_future(self._format_history(turns))
            try:
                result = await self._retrieve(question, turns)
                formatted = await formatting
            except BaseException:
                formatting.cancel()
                raise
        else:  # a first question: nothing to format, so no task to pay for
            result = await self._retrieve(question, turns)
            formatted = []
        retrieval_ms = _ms(started)
        hits, formatted = self._fit(list(result.context), formatted, question)
        sources = tuple(
            Source(
                n=i,
                title=hit.chunk.title,
                url=hit.chunk.link,
                snippet=_snippet(hit.chunk.text),
                score=hit.score,
                chunk_id=hit.chunk.id,
                heading=hit.chunk.heading,
            )
            for i, hit in enumerate(hits, start=1)
        )
        yield SourcesEvent(sources=sources, query=result.query)

        if not result.covered or not sources:
            answer = self.prompts.not_covered
            yield TokenEvent(answer)
            yield self._recorded(
                DoneEvent(
                    answer=answer,
                    cited=(),
                    timings=Timings(retrieval_ms=retrieval_ms, total_ms=_ms(started)),
                    covered=False,
                )
            )
            return

        texts = [hit.chunk.text for hit in hits]
        messages = build_messages(question, sources, texts, formatted, self.prompts)
        parts: list[str] = []
        usage: Usage | None = None
        first_token_at: float | None = None
        opened: OpenedStream | None = None
        try:
            # the provider's stream is relayed here directly rather than through
            # llm.stream(): one async generator fewer for every token of every answer
            opened = await self.llm.open_stream(messages)
            for piece in opened.head:  # up to and including the first text
                text = piece if isinstance(piece, str) else piece.text
                if text:
                    first_token_at = time.perf_counter()
                    parts.append(text)
                    yield TokenEvent(text)
                if not isinstance(piece, str) and piece.usage is not None:
                    usage = piece.usage if usage is None else usage + piece.usage
            async for piece in opened.rest:
                # almost every piece is a plain str, so that case is tested first
                if isinstance(piece, str):
                    if piece:
                        parts.append(piece)
                        yield TokenEvent(piece)
                    continue
                if piece.text:
                    parts.append(piece.text)
                    yield TokenEvent(piece.text)
                if piece.usage is not None:
                    usage = piece.usage if usage is None else usage + piece.usage
        except ProviderError as exc:
            partial = "".join(parts)
            if parts and not isinstance(exc, StreamInterruptedError):
                exc = interrupted(exc, self.llm.name, partial)
            elif isinstance(exc, StreamInterruptedError) and exc.partial and not partial:
                partial = exc.partial
            yield self._recorded(
                ErrorEvent(
                    message=str(exc),
                    error_type=type(exc).__name__,
                    partial=partial,
                    timings=self._timings(started, retrieval_ms, first_token_at, len(parts)),
                    provider=exc.provider or self.llm.name,
                    retry_after=exc.retry_after,
                )
            )
            return
        except (GeneratorExit, asyncio.CancelledError):
            # the reader stopped the answer (the app's Stop button, a closed connection):
            # counted, so a dashboard sees how often answers are abandoned and after how long
            timings = self._timings(started, retrieval_ms, first_token_at, len(parts))
            self.metrics.record_stopped(timings)
            raise
        except Exception as exc:  # a provider bug must not crash the UI
            logger.exception("unexpected error from LLM provider %s", self.llm.describe())
            yield self._recorded(
                ErrorEvent(
                    message=f"The answer failed unexpectedly ({type(exc).__name__}). "
                    "Try again; if it keeps failing, check the server logs.",
                    error_type="SitechatError",
                    partial="".join(parts),
                    timings=self._timings(started, retrieval_ms, first_token_at, len(parts)),
                    provider=self.llm.name,
                )
            )
            return
        finally:
            if opened is not None:
                await opened.aclose()

        answer = "".join(parts)
        yield self._recorded(
            DoneEvent(
                answer=answer,
                cited=parse_citations(answer, len(sources)),
                timings=self._timings(started, retrieval_ms, first_token_at, len(parts)),
                usage=usage,
                covered=True,
            )
        )

    @staticmethod
    def _timings(
        started: float, retrieval_ms: float, first_token_at: float | None, tokens: int
    ) -> Timings:
        now = time.perf_counter()
        first_ms = round((first_token_at - started) * 1000, 3) if first_token_at else None
        rate = None
        if first_token_at is not None and tokens > 1 and now > first_token_at:
            rate = round((tokens - 1) / (now - first_token_at), 1)
        return Timings(
            retrieval_ms=retrieval_ms,
            first_token_ms=first_ms,
            total_ms=round((now - started) * 1000, 3),
            tokens_per_second=rate,
        )

    def _recorded(self, event: DoneEvent | ErrorEvent) -> DoneEvent | ErrorEvent:
        """The final event of an answer, once its metrics line is written (when enabled)."""
        self.metrics.record(event)
        return event

    async def aclose(self) -> None:
        await self.llm.aclose()
        await self.retriever.store.aclose()
