"""RetrievalChatService: event order and content, failures, limits, concurrency."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Sequence

import pytest
from hypothesis import given
from hypothesis import settings as hsettings
from hypothesis import strategies as st
from langchain_core.messages import BaseMessage

from sitechat.chat.history import InMemoryHistoryStore
from sitechat.chat.prompts import parse_citations, parse_prompt
from sitechat.chat.service import RetrievalChatService
from sitechat.config import ChatSettings, RetrievalSettings, RetrySettings
from sitechat.errors import (
    InvalidInputError,
    RateLimitError,
    ServiceUnavailableError,
    StreamInterruptedError,
)
from sitechat.events import ChatEvent, DoneEvent, ErrorEvent, SourcesEvent, TokenEvent
from sitechat.llm.base import LLMDelta
from sitechat.models import ChatMessage, Chunk, SearchHit, Usage, content_hash
from sitechat.retrieval.hybrid import HybridRetriever, RetrievalResult
from sitechat.testing.fakes import FakeLLMService
from tests.passages import passage_store

TEXTS = {
    "https://docs.example.com/account": (
        "Account",
        "delete-account",
        "To delete your account open Settings, choose Account and press Delete account. "
        "Your notes are kept for 30 days.",
    ),
    "https://docs.example.com/install": (
        "Install",
        "linux",
        "Install the app on Linux with the AppImage or the snap package.",
    ),
}


async def _service(llm: FakeLLMService, **chat: object) -> RetrievalChatService:
    store, embeddings = await passage_store(TEXTS)
    retriever = HybridRetriever(store, embeddings, RetrievalSettings(top_k=2, min_score=0.2))
    return RetrievalChatService(llm, retriever, settings=ChatSettings(**chat))  # type: ignore[arg-type]


EARLIER = [ChatMessage("user", "Hi, I have an account."), ChatMessage("assistant", "Hello!")]


async def _collect(
    service: RetrievalChatService, message: str, history: Sequence[ChatMessage] = ()
) -> list[ChatEvent]:
    return [event async for event in service.stream_events(message, history)]


async def test_plain_answer_event_order() -> None:
    """Sources first, then tokens, then Done with the cited numbers, usage and timings."""
    service = await _service(FakeLLMService(["Open Settings and press Delete account [1]."]))
    events = await _collect(service, "How do I delete my account?")
    assert isinstance(events[0], SourcesEvent)
    assert isinstance(events[-1], DoneEvent)
    assert all(isinstance(e, TokenEvent) for e in events[1:-1])
    sources = events[0].sources
    assert sources[0].url == "https://docs.example.com/account#delete-account"
    assert sources[0].n == 1
    done = events[-1]
    assert done.cited == (1,)
    assert done.answer == "".join(e.text for e in events[1:-1] if isinstance(e, TokenEvent))
    assert done.usage is not None and done.usage.output_tokens > 0
    assert done.timings.first_token_ms is not None
    assert done.covered


async def test_not_covered_spends_no_llm_call() -> None:
    """With nothing relevant retrieved, the answer says so and the LLM is never called."""
    llm = FakeLLMService()
    service = await _service(llm)
    events = await _collect(service, "What is the weather in Paris tomorrow?")
    assert isinstance(events[0], SourcesEvent) and events[0].sources == ()
    done = events[-1]
    assert isinstance(done, DoneEvent) and not done.covered
    assert "could not find" in done.answer
    assert llm.calls == []


async def test_provider_failure_becomes_error_event() -> None:
    """A provider error before any token ends the stream with an ErrorEvent, never an exception."""
    service = await _service(FakeLLMService(error=RateLimitError("Slow down; try again shortly.")))
    events = await _collect(service, "How do I delete my account?")
    error = events[-1]
    assert isinstance(error, ErrorEvent)
    assert error.error_type == "RateLimitError"
    assert error.partial == ""


async def test_mid_stream_failure_keeps_partial_text() -> None:
    """A stream that breaks mid-answer keeps the text that arrived in the ErrorEvent."""
    service = await _service(FakeLLMService(["one two three four five"], fail_after=3))
    events = await _collect(service, "How do I delete my account?")
    error = events[-1]
    assert isinstance(error, ErrorEvent)
    assert error.partial == "one two three "
    assert error.error_type == "StreamInterruptedError"


async def test_provider_error_after_text_becomes_interrupted() -> None:
    """A provider error after the first text ends as StreamInterruptedError, text kept."""

    class BreaksMidway(FakeLLMService):
        async def _astream(self, messages: Sequence[BaseMessage]) -> AsyncIterator[LLMDelta]:
            yield LLMDelta("Open ")
            yield LLMDelta("Settings")
            raise ServiceUnavailableError("the server went away", provider="fake")

    service = await _service(BreaksMidway())
    events = await _collect(service, "How do I delete my account?")
    error = events[-1]
    assert isinstance(error, ErrorEvent)
    assert error.error_type == "StreamInterruptedError"
    assert error.partial == "Open Settings"
    assert "the server went away" in error.message


@pytest.mark.parametrize("message", ["", "   ", "x" * 5000])
async def test_input_limits(message: str) -> None:
    """Empty and oversized messages are refused before any work with a clear error."""
    service = await _service(FakeLLMService())
    with pytest.raises(InvalidInputError):
        await _collect(service, message)


async def test_retrieval_runs_while_history_is_formatted() -> None:
    """Retrieval starts before history formatting finishes (the two overlap)."""
    log: list[str] = []

    class Probe(RetrievalChatService):
        async def _retrieve(self, message: str, history: Sequence[ChatMessage]) -> RetrievalResult:
            log.append("retrieve-start")
            return await super()._retrieve(message, history)

        async def _format_history(self, history: object) -> list[ChatMessage]:
            log.append("format-start")
            await asyncio.sleep(0.01)
            log.append("format-end")
            return await super()._format_history(history)  # type: ignore[arg-type]

    base = await _service(FakeLLMService())
    probe = Probe(base.llm, base.retriever)
    await _collect(probe, "How do I delete my account?", EARLIER)
    assert log.index("retrieve-start") < log.index("format-end")


async def test_history_is_formatted_while_retrieval_waits() -> None:
    """While retrieval waits (on a database, a thread), the history is already being formatted."""
    log: list[str] = []

    class Probe(RetrievalChatService):
        async def _retrieve(self, message: str, history: Sequence[ChatMessage]) -> RetrievalResult:
            log.append("retrieve-start")
            await asyncio.sleep(0.01)
            log.append("retrieve-end")
            return await super()._retrieve(message, history)

        async def _format_history(self, history: object) -> list[ChatMessage]:
            log.append("format")
            return await super()._format_history(history)  # type: ignore[arg-type]

    base = await _service(FakeLLMService())
    probe = Probe(base.llm, base.retriever)
    events = await _collect(probe, "How do I delete my account?", EARLIER)
    assert log == ["retrieve-start", "format", "retrieve-end"]
    assert isinstance(events[-1], DoneEvent)


async def test_first_question_has_no_history_to_format() -> None:
    """Without history no formatting task is started: a first question pays only for retrieval."""
    formatted: list[object] = []

    class Probe(RetrievalChatService):
        async def _format_history(self, history: object) -> list[ChatMessage]:
            formatted.append(history)
            return await super()._format_history(history)  # type: ignore[arg-type]

    base = await _service(FakeLLMService())
    events = await _collect(Probe(base.llm, base.retriever), "How do I delete my account?")
    assert formatted == []
    assert isinstance(events[-1], DoneEvent)


async def test_history_reaches_the_prompt() -> None:
    """Earlier turns are sent to the LLM before the question with its sources."""
    llm = FakeLLMService(["install the app on Linux", "Use the AppImage [1]."])
    service = await _service(llm)
    history = [ChatMessage("user", "I use Linux."), ChatMessage("assistant", "Noted.")]
    await _collect(service, "How do I install the app on Linux?", history)
    sent = llm.calls[-1]
    assert [m.type for m in sent] == ["system", "human", "ai", "human"]
    parsed = parse_prompt(sent)
    assert parsed.question == "How do I install the app on Linux?"
    assert parsed.sources[0][2] == "https://docs.example.com/install#linux"


@pytest.mark.parametrize(
    "template",
    [
        "Use these sources:\n{sources}\n\nQ: {question}",
        "Question: {question}\n\n<sources>\n{sources}\n</sources>",
    ],
)
async def test_the_offline_answerer_reads_any_question_template(template: str) -> None:
    """With a custom question template, the extractive answerer answers as with the default."""
    from sitechat.chat.prompts import PromptTemplates
    from sitechat.llm.extractive import ExtractiveLLMService

    async def answer(prompts: PromptTemplates) -> str:
        store, embeddings = await passage_store(TEXTS)
        retriever = HybridRetriever(store, embeddings, RetrievalSettings(top_k=2, min_score=0.2))
        service = RetrievalChatService(ExtractiveLLMService(), retriever, prompts=prompts)
        done = (await _collect(service, "How do I install the app on Linux?"))[-1]
        assert isinstance(done, DoneEvent)
        return done.answer

    default = await answer(PromptTemplates())
    assert "AppImage" in default
    assert await answer(PromptTemplates(question=template)) == default


@pytest.mark.parametrize(
    ("template", "shown"),
    [
        # a literal JSON example: braces kept as written
        ('Reply as {"answer": "...", "cited": [1]}.\n{sources}\nQ: {question}', '{"answer": "'),
        # str.format's escapes, as templates written for it use them: still one brace
        ('Reply as {{"answer": "..."}}.\n{sources}\nQ: {question}', 'Reply as {"answer": "'),
    ],
)
async def test_a_question_template_with_literal_braces_answers(template: str, shown: str) -> None:
    """Braces other than the placeholders reach the model as text, not a KeyError mid-answer."""
    from sitechat.chat.prompts import PromptTemplates

    store, embeddings = await passage_store(TEXTS)
    retriever = HybridRetriever(store, embeddings, RetrievalSettings(top_k=2, min_score=0.2))
    llm = FakeLLMService(["Press Delete account [1]."])
    service = RetrievalChatService(llm, retriever, prompts=PromptTemplates(question=template))
    events = await _collect(service, "How do I delete my account?")
    assert isinstance(events[-1], DoneEvent)
    prompt = str(llm.calls[0][-1].content)
    assert shown in prompt
    assert "Q: How do I delete my account?" in prompt
    assert '<source n="1"' in prompt


@pytest.mark.parametrize(
    ("template", "missing"),
    [
        ("Question: {question}", "{sources}"),
        ("<sources>{sources}</sources>", "{question}"),
        ('As JSON {"a": 1}: {sources} {qustion}', "{question}"),
    ],
)
def test_a_question_template_without_a_placeholder_is_refused_when_built(
    template: str, missing: str
) -> None:
    """A template missing {sources} or {question} is refused up front, naming both."""
    from sitechat.chat.prompts import PromptTemplates

    with pytest.raises(InvalidInputError) as caught:
        PromptTemplates(question=template)
    assert f"PromptTemplates.question has no {missing} placeholder" in str(caught.value)


@pytest.mark.parametrize("template", ["Q: {question:d}\nS: {sources}", "{sources} {question!x}"])
def test_a_question_template_that_cannot_be_filled_is_refused_when_built(template: str) -> None:
    """A format spec or conversion the answer would trip on is refused when built, not
    raised at every question."""
    from sitechat.chat.prompts import PromptTemplates

    with pytest.raises(InvalidInputError, match=r"PromptTemplates\.question cannot be filled in"):
        PromptTemplates(question=template)


async def test_process_message_returns_text_or_stream() -> None:
    """The seed's process_message gives a string, or an async iterator with stream=True."""
    service = await _service(FakeLLMService(["Use the AppImage [1]."]))
    text = await service.process_message("How do I install on Linux?")
    assert text == "Use the AppImage [1]."
    chunks = [
        c async for c in await service.process_message("How do I install on Linux?", stream=True)
    ]
    assert "".join(chunks) == text


async def test_process_message_raises_mapped_error() -> None:
    """process_message surfaces a provider failure as the sitechat error class."""
    service = await _service(FakeLLMService(error=RateLimitError("throttled")))
    with pytest.raises(RateLimitError):
        await service.process_message("How do I delete my account?")


async def test_history_store_is_bounded_per_session() -> None:
    """The in-memory history keeps the newest turns per session and forgets old sessions."""
    store = InMemoryHistoryStore(max_messages=2, max_sessions=2)
    await store.append(
        "a", ChatMessage("user", "1"), ChatMessage("assistant", "2"), ChatMessage("user", "3")
    )
    assert [m.content for m in await store.get("a")] == ["2", "3"]
    await store.append("b", ChatMessage("user", "x"))
    await store.append("c", ChatMessage("user", "y"))
    assert await store.get("a") == []


@hsettings(max_examples=60, deadline=None)
@given(
    st.lists(
        st.text(min_size=1, max_size=8).filter(lambda s: " " not in s), min_size=1, max_size=30
    )
)
def test_token_events_reassemble_to_the_answer(words: list[str]) -> None:
    """Joining the TokenEvents always gives exactly the DoneEvent's answer."""

    async def run() -> None:
        service = await _service(FakeLLMService([" ".join(words)]))
        events = await _collect(service, "How do I delete my account?")
        done = events[-1]
        assert isinstance(done, DoneEvent)
        assert "".join(e.text for e in events if isinstance(e, TokenEvent)) == done.answer

    asyncio.run(run())


_PIECES = st.lists(
    st.one_of(
        st.text(max_size=6),
        st.builds(LLMDelta, st.text(max_size=6)),
        st.builds(LLMDelta, st.just(""), st.builds(Usage, st.integers(0, 99), st.integers(0, 99))),
    ),
    max_size=25,
).filter(lambda pieces: any(p if isinstance(p, str) else p.text for p in pieces))


@hsettings(max_examples=80, deadline=None)
@given(_PIECES)
def test_mixed_str_and_delta_pieces_reassemble(pieces: list[str | LLMDelta]) -> None:
    """Whatever mix of str and LLMDelta pieces a provider yields, tokens join to the answer."""

    class Scripted(FakeLLMService):
        async def _astream(self, messages: Sequence[BaseMessage]) -> AsyncIterator[str | LLMDelta]:
            for piece in pieces:
                yield piece

    async def run() -> None:
        events = await _collect(await _service(Scripted()), "How do I delete my account?")
        done = events[-1]
        assert isinstance(done, DoneEvent)
        tokens = [e.text for e in events if isinstance(e, TokenEvent)]
        assert all(tokens)
        expected = "".join(p if isinstance(p, str) else p.text for p in pieces)
        assert "".join(tokens) == done.answer == expected
        usages = [p.usage for p in pieces if isinstance(p, LLMDelta) and p.usage is not None]
        assert done.usage == (sum(usages[1:], usages[0]) if usages else None)

    asyncio.run(run())


@given(st.text(max_size=300), st.integers(min_value=0, max_value=20))
def test_citation_parsing_never_raises_and_stays_in_range(answer: str, count: int) -> None:
    """Citations outside 1..count are dropped, and any text parses."""
    cited = parse_citations(answer, count)
    assert all(1 <= n <= count for n in cited)
    assert len(set(cited)) == len(cited)


@pytest.mark.parametrize(
    ("answer", "cited"),
    [
        ("Reset it [2]. Then sign in [1][3].", (2, 1, 3)),
        ("Both say so [1, 2].", (1, 2)),
        ("All three agree [1-3], and [2–3] again.", (1, 2, 3)),
        ("Mixed [3, 1-2].", (3, 1, 2)),
        ("Out of range [4], [0], [2-9] and backwards [3-1].", (2, 3)),
        ("Not citations: [a], [1,], [-2], [1 - ].", ()),
    ],
)
def test_grouped_and_ranged_citations_are_parsed(answer: str, cited: tuple[int, ...]) -> None:
    """[1, 2] and [1-3], as models often write them, cite each number they hold."""
    assert parse_citations(answer, 3) == cited


async def test_follow_up_is_rewritten_before_retrieval() -> None:
    """With history, the LLM rewrites the follow-up into the query; its text never streams."""
    llm = FakeLLMService(["delete Lumen account", "Open Settings and press Delete account [1]."])
    service = await _service(llm)
    history = [
        ChatMessage("user", "Tell me about my account."),
        ChatMessage("assistant", "It holds your notes."),
    ]
    events = await _collect(service, "And how do I delete it?", history)
    sources = events[0]
    assert isinstance(sources, SourcesEvent)
    assert sources.query == "delete Lumen account"
    assert sources.sources[0].url.endswith("#delete-account")
    tokens = "".join(e.text for e in events if isinstance(e, TokenEvent))
    assert tokens == "Open Settings and press Delete account [1]."
    assert len(llm.calls) == 2


async def test_no_rewriting_without_history() -> None:
    """A first question is searched as asked: one LLM call only."""
    llm = FakeLLMService(["Answer [1]."])
    service = await _service(llm)
    events = await _collect(service, "How do I delete my account?")
    assert isinstance(events[0], SourcesEvent)
    assert events[0].query == "How do I delete my account?"
    assert len(llm.calls) == 1


async def test_failed_rewrite_falls_back_to_the_question() -> None:
    """If the rewriting call fails, the keyword rewriter's query is searched (here the question
    as asked, which stands alone) and the answer still streams."""
    from sitechat.chat.rewrite import LLMQueryRewriter

    base = await _service(FakeLLMService(["Open Settings [1]."]))
    failing = FakeLLMService(error=RateLimitError("busy"))
    service = RetrievalChatService(base.llm, base.retriever, rewriter=LLMQueryRewriter(failing))
    history = [ChatMessage("user", "hi"), ChatMessage("assistant", "hello")]
    events = await _collect(service, "How do I delete my account?", history)
    assert isinstance(events[0], SourcesEvent)
    assert events[0].query == "How do I delete my account?"
    assert isinstance(events[-1], DoneEvent)


@pytest.mark.parametrize(
    "question", ["Is there an API rate limit?", "Are there keyboard shortcuts?"]
)
async def test_keyword_rewriter_leaves_is_there_questions_alone(question: str) -> None:
    """ "Is there …" asks whether something exists: it does not refer to the last topic."""
    from sitechat.chat.rewrite import KeywordQueryRewriter

    history = [ChatMessage("user", "How do I export my notes?"), ChatMessage("assistant", "…")]
    assert await KeywordQueryRewriter().rewrite(question, history) == question


async def test_keyword_rewriter_keeps_the_topic_through_a_chain_of_follow_ups() -> None:
    """export → "what about PDF?" → "and Markdown?" searches for exporting Markdown."""
    from sitechat.chat.rewrite import KeywordQueryRewriter

    history = [
        ChatMessage("user", "How do I export my notes?"),
        ChatMessage("assistant", "Use File > Export."),
        ChatMessage("user", "what about PDF?"),
        ChatMessage("assistant", "PDF export is limited to 50 pages."),
    ]
    query = await KeywordQueryRewriter().rewrite("and Markdown?", history)
    assert query == "and Markdown? export notes"
    referring = await KeywordQueryRewriter().rewrite("Is there one for Windows?", history)
    assert "export" in referring


async def test_keyword_rewriter_carries_the_topic_over() -> None:
    """The offline rewriter adds the previous question's topic words to a referring or
    one-topic-word follow-up, and leaves a question with its own topic alone."""
    from sitechat.chat.rewrite import KeywordQueryRewriter

    rewriter = KeywordQueryRewriter()
    history = [
        ChatMessage("user", "How do I export notes to PDF?"),
        ChatMessage("assistant", "Use File > Export."),
    ]
    query = await rewriter.rewrite("and can I import them again?", history)
    assert "export" in query
    assert "PDF" in query
    assert "PDF" in await rewriter.rewrite("What about Windows?", history)
    for standalone in (
        "How do I reset my forgotten password quickly?",
        "How do I share notebooks?",
    ):
        assert await rewriter.rewrite(standalone, history) == standalone


async def test_closing_the_stream_cancels_the_provider() -> None:
    """A consumer that stops early closes the provider stream: no more tokens are produced."""
    llm = FakeLLMService([" ".join(f"w{i}" for i in range(200))], delay=0.001)
    service = await _service(llm)
    events = service.stream_events("How do I delete my account?")
    seen = 0
    async for event in events:
        if isinstance(event, TokenEvent):
            seen += 1
            if seen == 3:
                break
    await events.aclose()
    assert llm.tokens_sent == 3
    assert llm.closed


async def test_task_cancellation_stops_the_stream_promptly() -> None:
    """Cancelling the task that consumes the stream ends the provider stream too."""
    llm = FakeLLMService([" ".join(f"w{i}" for i in range(10_000))], delay=0.001)
    service = await _service(llm)

    async def consume() -> None:
        async for _ in service.stream_events("How do I delete my account?"):
            pass

    task = asyncio.ensure_future(consume())
    for _ in range(5000):
        if llm.tokens_sent >= 5:
            break
        await asyncio.sleep(0.001)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert llm.closed
    assert llm.tokens_sent < 100


@pytest.mark.parametrize("stop", ["close", "cancel"])
async def test_an_answer_stopped_midway_writes_one_stopped_metrics_line(stop: str) -> None:
    """A reader who stops the stream (closed, or its task cancelled) is counted: one EMF
    line with Stopped 1 and Outcome "stopped", and the time it had run."""
    import io
    import json

    from sitechat.observability import ChatMetrics, EMFWriter

    out = io.StringIO()
    llm = FakeLLMService([" ".join(f"w{i}" for i in range(500))], delay=0.001)
    service = await _service(llm)
    service.metrics = ChatMetrics(EMFWriter(stream=out), provider="fake/fake")
    events = service.stream_events("How do I delete my account?")
    streaming = asyncio.Event()

    async def consume() -> None:
        async for event in events:
            if isinstance(event, TokenEvent) and llm.tokens_sent >= 3:
                streaming.set()
                if stop == "close":
                    return

    task = asyncio.ensure_future(consume())
    await streaming.wait()
    if stop == "cancel":
        task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task
    await events.aclose()
    lines = [json.loads(line) for line in out.getvalue().splitlines()]
    assert len(lines) == 1, lines
    assert lines[0]["Stopped"] == 1 and lines[0]["Outcome"] == "stopped"
    assert lines[0]["ProviderErrors"] == 0 and lines[0]["AnswerLatency"] > 0


async def test_supporting_passage_sits_beside_the_best_one() -> None:
    """The best page's extra passage becomes source 2; the answer still gets top_k sources."""
    base = await _service(FakeLLMService(["Steps [2]."]))
    result = await base.retriever.retrieve("delete account install linux", k=2)
    account_hit = next(h for h in result.hits if "account" in h.chunk.url)
    install_hit = next(h for h in result.hits if "install" in h.chunk.url)
    steps = Chunk(
        id="steps",
        url=account_hit.chunk.url,
        title="Account",
        heading_path=("Account", "Steps"),
        anchor="steps",
        text="Go to Settings and press Delete account.",
        content_hash=content_hash("steps"),
    )

    class WithSupport(HybridRetriever):
        async def retrieve(
            self, query: str, k: int | None = None, where: object = None
        ) -> RetrievalResult:
            return RetrievalResult(
                query=query,
                hits=(account_hit, install_hit),
                covered=True,
                supporting=(SearchHit(steps, 0.1),),
            )

    service = RetrievalChatService(
        base.llm, WithSupport(base.retriever.store, base.retriever.embeddings)
    )
    events = await _collect(service, "How do I delete my account?")
    sources = events[0]
    assert isinstance(sources, SourcesEvent)
    # source 2 is the best page's next passage; the weakest hit made room for it
    assert [s.chunk_id for s in sources.sources] == [account_hit.chunk.id, "steps"]
    done = events[-1]
    assert isinstance(done, DoneEvent)
    assert done.cited == (2,)


@given(
    st.text(alphabet=st.sampled_from(list("ab ·\n\t")) | st.characters(), min_size=0, max_size=1500)
)
@hsettings(max_examples=300, deadline=None)
def test_snippet_flattens_only_the_head_yet_matches_the_whole_text(text: str) -> None:
    """A source snippet is the whitespace-flattened text cut at 240 chars, however long it is."""
    from sitechat.chat.service import _SNIPPET_CHARS, _snippet

    flat = " ".join(text.split())
    expected = flat if len(flat) <= _SNIPPET_CHARS else flat[: _SNIPPET_CHARS - 1].rstrip() + "…"
    assert _snippet(text) == expected


async def test_error_event_carries_provider_and_retry_after() -> None:
    """An ErrorEvent names the failing provider and the Retry-After wait it asked for."""
    throttled = RateLimitError("Slow down.", provider="fake", retry_after=120.0)
    events = await _collect(await _service(FakeLLMService(error=throttled)), "Delete my account?")
    error = events[-1]
    assert isinstance(error, ErrorEvent)
    assert (error.error_type, error.provider, error.retry_after) == ("RateLimitError", "fake", 120)


async def _process(service: RetrievalChatService, stream: bool, received: list[str]) -> str:
    """process_message's answer, whole or (``stream``) chunk by chunk into ``received``."""
    if not stream:
        return await service.process_message("Delete my account?")
    async for chunk in await service.process_message("Delete my account?", stream=True):
        received.append(chunk)
    return "".join(received)


@pytest.mark.parametrize("stream", [False, True])
async def test_process_message_raises_the_error_with_its_retry_after(stream: bool) -> None:
    """process_message raises the provider's error class with its message, provider and
    retry_after, so a caller can honour Retry-After."""
    throttled = RateLimitError("Slow down.", provider="fake", retry_after=120.0)
    service = await _service(FakeLLMService(error=throttled))
    with pytest.raises(RateLimitError) as caught:
        await _process(service, stream, [])
    assert str(caught.value) == "Slow down."
    assert (caught.value.provider, caught.value.retry_after) == ("fake", 120.0)


@pytest.mark.parametrize("stream", [False, True])
async def test_process_message_raises_interruption_with_the_partial_text(stream: bool) -> None:
    """A stream that breaks mid-answer raises StreamInterruptedError carrying the text so far."""
    service = await _service(FakeLLMService(["one two three four five"], fail_after=3))
    received: list[str] = []
    with pytest.raises(StreamInterruptedError) as caught:
        await _process(service, stream, received)
    assert caught.value.partial == "one two three "
    assert caught.value.provider == "fake"
    assert "".join(received) == (caught.value.partial if stream else "")


def _history_sent(llm: FakeLLMService) -> list[tuple[str, str]]:
    """The (type, content) of the history in the last prompt: between system and question."""
    return [(m.type, str(m.content)) for m in llm.calls[-1][1:-1]]


async def test_history_sent_opens_with_a_question() -> None:
    """A history opening with an assistant greeting is sent from its first user message on
    (Bedrock refuses a conversation that starts with an assistant turn)."""
    llm = FakeLLMService(["Use the AppImage [1]."])
    history = [
        ChatMessage("assistant", "Hi! Ask me anything."),
        ChatMessage("user", "Do you know Linux?"),
        ChatMessage("assistant", "Yes."),
    ]
    await _collect(await _service(llm), "How do I install the app on Linux?", history)
    assert _history_sent(llm) == [("human", "Do you know Linux?"), ("ai", "Yes.")]


async def test_odd_history_limit_keeps_whole_exchanges() -> None:
    """MAX_HISTORY_MESSAGES counts messages; a limit that would cut an exchange in half sends
    only the whole exchanges within it, newest kept."""
    llm = FakeLLMService(["Use the AppImage [1]."])
    service = await _service(llm, max_history_messages=3, rewrite_followups=False)
    history = [
        ChatMessage("user", "How do I export notes?"),
        ChatMessage("assistant", "Use File > Export."),
        ChatMessage("user", "How do I import notes?"),
        ChatMessage("assistant", "Use File > Import."),
    ]
    await _collect(service, "How do I install the app on Linux?", history)
    assert _history_sent(llm) == [("human", "How do I import notes?"), ("ai", "Use File > Import.")]


async def test_context_trimming_drops_whole_exchanges_oldest_first() -> None:
    """When history must be trimmed to fit the context, whole question+answer exchanges go,
    oldest first: never an answer left without its question."""
    service = await _service(FakeLLMService())
    question = "How do I install the app?"
    budget = (service.llm.context_window - service.llm.max_output_tokens) * 4
    budget -= len(service.prompts.system) + len(service.prompts.question) + len(question)
    history = [
        ChatMessage("user", "Old question?"),
        ChatMessage("assistant", "Old answer."),
        ChatMessage("user", "x" * (budget - 40)),  # fits alone, not with its answer
        ChatMessage("assistant", "y" * 50),
        ChatMessage("user", "Newest question?"),
        ChatMessage("assistant", "Newest answer."),
    ]
    _, kept = service._fit([], history, question)
    assert kept == history[4:]


async def test_history_accepts_role_content_dicts() -> None:
    """OpenAI-style {"role", "content"} dicts and LangChain text blocks work as history."""
    from langchain_core.messages import AIMessage

    from sitechat.chat.base import HistoryItem

    llm = FakeLLMService(["Use the AppImage [1]."])
    service = await _service(llm, rewrite_followups=False)
    history: list[HistoryItem] = [
        {"role": "user", "content": "I use Linux."},
        AIMessage(content=[{"type": "text", "text": "Noted."}]),
    ]
    events = [e async for e in service.stream_events("How do I install the app on Linux?", history)]
    assert isinstance(events[-1], DoneEvent)
    assert _history_sent(llm) == [("human", "I use Linux."), ("ai", "Noted.")]


@pytest.mark.parametrize(
    ("history", "named"),
    [
        ([("user", "How do I install?")], "('user', 'How do I install?')"),
        ([ChatMessage("bot", "hi")], "'bot'"),  # type: ignore[arg-type]
        ([{"role": "bot", "content": "hi"}], "'bot'"),
        ([ChatMessage("user", None)], "NoneType content"),  # type: ignore[arg-type]
        ([{"role": "user"}], "{'role': 'user'}"),
        ([{"role": "user", "content": [{"type": "image_url"}]}], "list content"),
        ("How do I install?", "single str"),
        (42, "not int"),
    ],
)
async def test_malformed_history_is_refused_naming_the_item(history: object, named: str) -> None:
    """A history item of another shape, role or content type raises InvalidInputError that
    names the item and what is accepted; nothing is silently dropped."""
    service = await _service(FakeLLMService())
    with pytest.raises(InvalidInputError) as caught:
        await _collect(service, "And on Windows?", history)  # type: ignore[arg-type]
    assert named in str(caught.value)
    assert "ChatMessage(role, content)" in str(caught.value)


async def test_none_as_history_means_no_conversation_yet() -> None:
    """history=None is treated like an empty history, not a TypeError."""
    service = await _service(FakeLLMService(["Like this [1]."]))
    events = await _collect(service, "How do I install the app?", None)  # type: ignore[arg-type]
    assert isinstance(events[-1], DoneEvent)


@pytest.mark.parametrize("message", [123, b"How do I install?", None])
async def test_a_message_that_is_not_text_is_named(message: object) -> None:
    """A non-str message raises InvalidInputError naming its type, not 'the message is empty'."""
    service = await _service(FakeLLMService())
    with pytest.raises(
        InvalidInputError, match=f"must be text \\(str\\), not {type(message).__name__}"
    ):
        await _collect(service, message, [])  # type: ignore[arg-type]


async def test_rewrite_is_one_try_without_retries() -> None:
    """The follow-up rewrite tries the LLM once, ignoring SITECHAT_LLM__RETRY, and falls back
    to the keyword rewriter, so a dead provider is not waited on twice."""
    from sitechat.chat.rewrite import LLMQueryRewriter

    failing = FakeLLMService(error=ServiceUnavailableError("down", provider="fake"))
    failing.retry = RetrySettings(max_attempts=3, initial_backoff=0.0, jitter=False)
    history = [ChatMessage("user", "How do I delete my account?"), ChatMessage("assistant", "…")]
    query = await LLMQueryRewriter(failing).rewrite("And can I undo it?", history)
    assert len(failing.calls) == 1
    assert "delete" in query and "account" in query


async def test_stalled_rewrite_gives_up_after_its_timeout(caplog: pytest.LogCaptureFixture) -> None:
    """A rewrite that gets no reply within its timeout is abandoned (the stream closed), the
    keyword rewriter's query is used, and one warning says why."""
    from sitechat.chat.rewrite import LLMQueryRewriter

    class Stalls(FakeLLMService):
        async def _astream(self, messages: Sequence[BaseMessage]) -> AsyncIterator[LLMDelta]:
            try:
                await asyncio.sleep(30)
                yield LLMDelta("never")
            finally:
                self.closed = True

    llm = Stalls()
    history = [ChatMessage("user", "How do I delete my account?"), ChatMessage("assistant", "…")]
    started = asyncio.get_running_loop().time()
    query = await LLMQueryRewriter(llm, timeout=0.05).rewrite("And can I undo it?", history)
    assert asyncio.get_running_loop().time() - started < 2
    assert "delete" in query
    assert llm.closed
    warnings = [r for r in caplog.records if r.levelname == "WARNING"]
    assert len(warnings) == 1
    assert "no reply within 0.05s" in warnings[0].getMessage()


async def test_rewrite_time_is_bounded_by_the_llm_timeout() -> None:
    """A service built from settings gives the rewrite min(SITECHAT_LLM__TIMEOUT, 5 s)."""
    from sitechat.chat.rewrite import REWRITE_TIMEOUT, LLMQueryRewriter
    from sitechat.config import Settings

    base = await _service(FakeLLMService())
    for timeout, expected in ((1.5, 1.5), (60.0, REWRITE_TIMEOUT)):
        settings = Settings.load(env_file=None, llm={"timeout": timeout})
        service = RetrievalChatService.from_components(
            settings, llm=base.llm, embeddings=base.retriever.embeddings, store=base.retriever.store
        )
        assert isinstance(service.rewriter, LLMQueryRewriter)
        assert service.rewriter.timeout == expected


async def test_a_greeting_alone_is_no_conversation_to_follow_up() -> None:
    """A history holding only the widget's greeting does not trigger a rewrite call: the
    question is searched as asked, with one LLM call for the answer."""
    llm = FakeLLMService(["Open Settings and press Delete account [1]."])
    greeting = [ChatMessage("assistant", "Hi! Ask me anything about your account.")]
    events = await _collect(await _service(llm), "How do I delete my account?", greeting)
    assert isinstance(events[0], SourcesEvent)
    assert events[0].query == "How do I delete my account?"
    assert len(llm.calls) == 1
    assert [m.type for m in llm.calls[0]] == ["system", "human"]
