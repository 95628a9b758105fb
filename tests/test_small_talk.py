"""Small talk: recognised narrowly, answered without a search or a model call."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from sitechat.chat.prompts import DEFAULT_PROMPTS
from sitechat.chat.rewrite import KeywordQueryRewriter
from sitechat.chat.service import RetrievalChatService
from sitechat.chat.small_talk import _VOCABULARY, MAX_WORDS, small_talk_kind
from sitechat.config import ChatSettings, RetrievalSettings
from sitechat.errors import InvalidInputError
from sitechat.events import DoneEvent, SourcesEvent, TokenEvent
from sitechat.models import ChatMessage
from sitechat.retrieval.hybrid import HybridRetriever
from sitechat.testing.fakes import FakeLLMService
from tests.passages import passage_store

TEXTS = {
    "https://docs.example.com/account": (
        "Delete your account",
        "delete-account",
        "To delete your account open Settings, choose Account and press Delete account. "
        "Your notes are kept for 30 days after the account is deleted.",
    ),
    "https://docs.example.com/install": (
        "Install",
        "linux",
        "Install the app on Linux with the AppImage or the snap package.",
    ),
}
ANSWERED = [
    ChatMessage("user", "How do I delete my account?"),
    ChatMessage("assistant", "Open Settings and press Delete account [1]."),
]


@pytest.mark.parametrize(
    ("message", "kind"),
    [
        ("hi", "greeting"),
        ("Hello there!", "greeting"),
        ("hello?", "greeting"),
        ("Good morning", "greeting"),
        ("thanks!", "thanks"),
        ("Thank you so much 🙏", "thanks"),
        ("ok great, thanks", "thanks"),
        ("ok, bye", "goodbye"),
        ("Got it.", "acknowledgement"),
        ("OK", "acknowledgement"),
    ],
)
def test_small_talk_is_recognised(message: str, kind: str) -> None:
    """Greetings, thanks, goodbyes and acknowledgements are told apart, the most telling first."""
    assert small_talk_kind(message) == kind


@pytest.mark.parametrize(
    "message",
    [
        "Hi, how do I reset my password?",
        "thanks?",
        "ok?",
        "yes",
        "how are you?",
        "delete account",
        "thanks for the help with python 3",
        "thanks https://docs.example.com",
        "hello " * (MAX_WORDS + 1),
        "you",
        "…",
    ],
)
def test_anything_that_may_be_a_question_is_not_small_talk(message: str) -> None:
    """A question, an unknown word, a digit, a link or a long message is never small talk."""
    assert small_talk_kind(message) is None


@given(
    words=st.lists(st.sampled_from(sorted(_VOCABULARY)), min_size=1, max_size=5),
    unknown=st.from_regex(r"[a-z]{3,12}", fullmatch=True),
    at=st.integers(min_value=0, max_value=5),
)
def test_one_unknown_word_makes_a_message_a_question(
    words: list[str], unknown: str, at: int
) -> None:
    """Any word outside the fixed lists, anywhere in the message, sends it to the search."""
    if unknown in _VOCABULARY:
        return
    words.insert(min(at, len(words)), unknown)
    assert small_talk_kind(" ".join(words)) is None


async def _service(llm: FakeLLMService, **chat: bool) -> RetrievalChatService:
    store, embeddings = await passage_store(TEXTS)
    retriever = HybridRetriever(store, embeddings, RetrievalSettings(top_k=2, min_score=0.2))
    return RetrievalChatService(
        llm, retriever, settings=ChatSettings(**chat), rewriter=KeywordQueryRewriter()
    )


async def test_thanks_after_an_answer_gets_a_reply_not_the_answer_again() -> None:
    """'thanks!' is answered from the templates: no sources, no search query, no LLM call."""
    llm = FakeLLMService(["Open Settings and press Delete account [1]."])
    service = await _service(llm)
    events = [event async for event in service.stream_events("thanks!", ANSWERED)]
    assert events[0] == SourcesEvent(sources=(), query="")
    assert [e.text for e in events if isinstance(e, TokenEvent)] == [DEFAULT_PROMPTS.thanks]
    done = events[-1]
    assert isinstance(done, DoneEvent) and done.answer == DEFAULT_PROMPTS.thanks
    assert done.covered and done.cited == ()
    assert llm.calls == []


async def test_a_greeting_is_not_told_the_site_does_not_cover_it() -> None:
    """'hello' gets the greeting reply, not the not-covered answer."""
    service = await _service(FakeLLMService())
    events = [event async for event in service.stream_events("hello")]
    done = events[-1]
    assert isinstance(done, DoneEvent) and done.answer == DEFAULT_PROMPTS.greeting


async def test_small_talk_can_be_turned_off() -> None:
    """With answer_small_talk off, 'thanks' is searched like any message."""
    llm = FakeLLMService()
    service = await _service(llm, answer_small_talk=False)
    events = [event async for event in service.stream_events("thanks", ANSWERED)]
    assert isinstance(events[0], SourcesEvent) and events[0].query != ""
    done = events[-1]
    assert isinstance(done, DoneEvent) and done.answer != DEFAULT_PROMPTS.thanks


async def test_a_follow_up_after_thanks_takes_the_earlier_question_s_topic() -> None:
    """The rewriter skips a small-talk exchange when it looks for a follow-up's topic."""
    history = [
        *ANSWERED,
        ChatMessage("user", "thanks"),
        ChatMessage("assistant", DEFAULT_PROMPTS.thanks),
    ]
    service = await _service(FakeLLMService(["Kept for 30 days [1]."]))
    events = [event async for event in service.stream_events("and what about it?", history)]
    assert isinstance(events[0], SourcesEvent)
    assert "account" in events[0].query.lower()
    assert events[0].sources[0].url.startswith("https://docs.example.com/account")


async def test_small_talk_still_refuses_a_malformed_history() -> None:
    """A greeting is no way around the history check: a bad item is still named."""
    service = await _service(FakeLLMService())
    with pytest.raises(InvalidInputError):
        [event async for event in service.stream_events("hi", [("user", "hello")])]  # type: ignore[list-item]
