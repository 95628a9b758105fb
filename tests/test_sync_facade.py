"""SiteChat: the blocking façade works with and without a running event loop."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from pathlib import Path

import pytest

import sitechat
from sitechat.config import Settings


@pytest.fixture(scope="module")
def sample_index(tmp_path_factory: pytest.TempPathFactory) -> str:
    """The sample site ingested once with the offline defaults."""
    site = Path(__file__).resolve().parent.parent / "examples" / "sample_site"
    index = str(tmp_path_factory.mktemp("sync") / "index")
    settings = Settings.load(env_file=None, index=index)
    asyncio.run(sitechat.ingest(str(site), settings=settings))
    return index


def test_ask_returns_an_answer_with_cited_sources(sample_index: str) -> None:
    """ask() gives the text, numbered sources and the ones it cites."""
    with sitechat.SiteChat(sample_index, settings=Settings.load(env_file=None)) as chat:
        answer = chat.ask("How long is the refund window after a yearly renewal?")
    assert answer.error is None
    assert answer.covered
    assert answer.cited
    assert all(s.url.startswith("file://") for s in answer.cited_sources)
    assert "14 days" in answer.text


def test_stream_yields_events_in_order(sample_index: str) -> None:
    """stream() is a plain iterator of Sources, Token…, Done."""
    with sitechat.SiteChat(sample_index, settings=Settings.load(env_file=None)) as chat:
        events = list(chat.stream("How do I reset my password?"))
    assert isinstance(events[0], sitechat.SourcesEvent)
    assert isinstance(events[-1], sitechat.DoneEvent)
    assert any(isinstance(e, sitechat.TokenEvent) for e in events)


async def test_works_inside_a_running_loop(sample_index: str) -> None:
    """Called from a coroutine (as in Jupyter), the façade still answers: no asyncio.run."""
    with sitechat.SiteChat(sample_index, settings=Settings.load(env_file=None)) as chat:
        answer = chat.ask("What does the Team plan cost?")
    assert answer.text


def test_history_is_kept_per_session(sample_index: str) -> None:
    """Each session id accumulates its own turns; reset() forgets them."""
    with sitechat.SiteChat(sample_index, settings=Settings.load(env_file=None)) as chat:
        chat.ask("How do I export my notes?", session_id="a")
        chat.ask("Can I import from Evernote?", session_id="a")
        chat.ask("What does the Team plan cost?", session_id="b")
        a = chat._portal.run(chat.history.get("a"))
        b = chat._portal.run(chat.history.get("b"))
        assert [m.role for m in a] == ["user", "assistant", "user", "assistant"]
        assert len(b) == 2
        chat.reset("a")
        assert chat._portal.run(chat.history.get("a")) == []


def test_missing_index_raises_clear_error(tmp_path: Path) -> None:
    """Opening a chat on a missing index raises IndexNotFoundError naming the fix."""
    with pytest.raises(sitechat.IndexNotFoundError, match="sitechat ingest"):
        sitechat.SiteChat(str(tmp_path / "none"), settings=Settings.load(env_file=None))


def test_search_returns_hits(sample_index: str) -> None:
    """search() returns passages with deep links."""
    with sitechat.SiteChat(sample_index, settings=Settings.load(env_file=None)) as chat:
        hits = chat.search("two-factor authentication", k=3)
    assert hits
    assert any("#" in h.chunk.link for h in hits)


def test_closing_twice_is_a_no_op(sample_index: str) -> None:
    """close() after close() (or after leaving the with block) does nothing and warns nothing."""
    with sitechat.SiteChat(sample_index, settings=Settings.load(env_file=None)) as chat:
        assert chat.ask("How do I reset my password?").text
        chat.close()
    chat.close()


def test_use_after_close_raises_a_sitechat_error(sample_index: str) -> None:
    """ask, stream, search and reset on a closed SiteChat raise StoreError saying it is closed
    and to create a new one, instead of a bare RuntimeError from the stopped loop."""
    chat = sitechat.SiteChat(sample_index, settings=Settings.load(env_file=None))
    started = chat.stream("How do I reset my password?")
    assert isinstance(next(started), sitechat.SourcesEvent)
    chat.close()
    uses: list[Callable[[], object]] = [
        lambda: chat.ask("How do I reset my password?"),
        lambda: chat.stream("How do I reset my password?"),
        lambda: chat.search("password"),
        lambda: chat.reset(),
        lambda: next(started),  # a stream begun before close
    ]
    for use in uses:
        with pytest.raises(sitechat.StoreError, match="SiteChat is closed; create a new SiteChat"):
            use()


def test_a_failed_answer_keeps_the_provider_and_its_retry_after() -> None:
    """ask()'s Answer carries the failing provider and its Retry-After, as ErrorEvent does."""
    from sitechat.chat.sync import collect_answer

    events: list[sitechat.ChatEvent] = [
        sitechat.SourcesEvent(sources=(), query="q"),
        sitechat.TokenEvent("Partial"),
        sitechat.ErrorEvent(
            message="Slow down.",
            error_type="RateLimitError",
            partial="Partial",
            provider="openai",
            retry_after=7.5,
        ),
    ]
    answer = collect_answer("q", iter(events))
    assert (answer.error_type, answer.provider, answer.retry_after) == (
        "RateLimitError",
        "openai",
        7.5,
    )
    assert answer.text == "Partial"
