"""Versions, paths and dotted names in questions: matched whole, on both search sides."""

from __future__ import annotations

import asyncio

import pytest
from hypothesis import given
from hypothesis import strategies as st

import sitechat
from sitechat._text import compound_words
from sitechat.config import Settings
from sitechat.factories import open_store
from sitechat.models import Chunk, SearchHit, content_hash
from sitechat.retrieval.fusion import exact_first
from sitechat.retrieval.hybrid import exact_compounds, keyword_terms
from sitechat.vectorstores._faiss_sql import match_expression, query_words

CHANGELOG = """# Changelog

## 2.4.0
- Added bulk export of invoices to CSV.

## 2.3.1
- Fixed a crash when a webhook URL contained a port number.

## 2.3.0
- Added webhooks for payment events.

## 1.3.1
- Fixed login on Safari 2.3.
"""

API = """# API reference

All endpoints take a bearer token.

## GET /v1/users
Lists the users of your workspace, 50 per page.

## GET /v1/users/{id}
Returns one user by its id, with the user's roles.

## GET /v2/users
The second version of the users listing: cursor pagination and filters by role.

## POST /v1/invoices
Creates an invoice for a customer.
"""


def _chunk(chunk_id: str, heading: str, text: str, page: str = "p") -> Chunk:
    return Chunk(
        id=chunk_id,
        url=f"https://d/{page}",
        title=page,
        heading_path=(heading,),
        anchor=chunk_id,
        text=text,
        content_hash=content_hash(text),
    )


def test_compounds_are_found_whole_and_lower_cased() -> None:
    """Versions, paths (with ``{placeholders}``), dotted and snake_case names are compounds."""
    text = "What changed in 2.3.1? GET /v1/users/{id}, os.path.join, MAX_TOKENS, e-mail."
    assert compound_words(text) == [
        "2.3.1",
        "v1/users/{id}",
        "os.path.join",
        "max_tokens",
        "e-mail",
    ]
    assert compound_words("plain words only. Next sentence.") == []


@given(st.lists(st.from_regex(r"[a-z0-9]{1,4}", fullmatch=True), min_size=2, max_size=4))
def test_a_compound_is_its_parts_joined(parts: list[str]) -> None:
    """Any parts joined by dots come back as exactly one compound, whatever surrounds it."""
    joined = ".".join(parts)
    assert compound_words(f"see {joined} here") == [joined]


def test_exact_compounds_leave_hyphenated_words_out() -> None:
    """``two-factor`` is spelt both ways in docs, so only compounds naming one thing count."""
    assert exact_compounds("two-factor login in v2.1 for utf-8 and os.path") == [
        "v2.1",
        "utf-8",
        "os.path",
    ]


def test_keyword_terms_add_compounds_after_the_words() -> None:
    """The parts still search on their own; the compound follows, for a phrase match."""
    assert keyword_terms("What changed in 2.3.1?") == ["changed", "2", "3", "1", "2.3.1"]


def test_the_faiss_store_searches_a_compound_as_a_phrase() -> None:
    """FTS5 reads a quoted compound as the phrase of its parts; the parts follow as words."""
    words = query_words("GET /v1/users/{id} in 3.11")
    assert words == ["get", "v1/users/{id}", "v1", "users", "id", "3.11", "3", "11"]
    assert match_expression(["2.3.1"]) == '"2.3.1"'


def test_a_page_passage_naming_the_compound_takes_the_page_first_place() -> None:
    """Within a page, the passage holding ``2.3.1`` moves up; page places and scores stay."""
    hits = [
        SearchHit(_chunk("131", "1.3.1", "Fixed login on Safari 2.3."), 0.9),
        SearchHit(_chunk("other", "Intro", "Elsewhere", page="q"), 0.5),
        SearchHit(_chunk("231", "2.3.1", "Fixed a crash."), 0.3),
    ]
    ordered = exact_first(hits, ["2.3.1"])
    assert [h.chunk.id for h in ordered] == ["231", "other", "131"]
    assert [h.score for h in ordered] == [0.9, 0.5, 0.3]


@pytest.mark.parametrize("near_miss", ["12.3.1", "2.3.10", "2.3.1.4", "v2.3.1x"])
def test_a_longer_version_is_not_the_compound(near_miss: str) -> None:
    """``2.3.1`` is matched from a boundary, so longer versions do not count as it."""
    hits = [
        SearchHit(_chunk("first", "Release", "Nothing of note."), 0.9),
        SearchHit(_chunk("near", "Release", f"Shipped {near_miss} today."), 0.3),
    ]
    assert [h.chunk.id for h in exact_first(hits, ["2.3.1"])] == ["first", "near"]


def test_a_heading_naming_the_path_whole_beats_a_longer_path() -> None:
    """For ``v1/users``, ``GET /v1/users`` comes before ``GET /v1/users/{id}``, and both
    before a passage that only mentions it in its text."""
    hits = [
        SearchHit(_chunk("text", "Intro", "Call /v1/users to list them."), 0.9),
        SearchHit(_chunk("by-id", "GET /v1/users/{id}", "One user."), 0.5),
        SearchHit(_chunk("list", "GET /v1/users", "All users."), 0.3),
    ]
    assert [h.chunk.id for h in exact_first(hits, ["v1/users"])] == ["list", "by-id", "text"]


@pytest.fixture(scope="module")
def small_site_index(tmp_path_factory: pytest.TempPathFactory) -> str:
    """A three-page site (changelog, API reference, billing) indexed once for the module."""
    root = tmp_path_factory.mktemp("compounds")
    site = root / "site"
    site.mkdir()
    (site / "changelog.md").write_text(CHANGELOG, encoding="utf-8")
    (site / "api.md").write_text(API, encoding="utf-8")
    (site / "other.md").write_text("# Billing\n\nInvoices are sent monthly.\n", encoding="utf-8")
    index = str(root / "index")
    asyncio.run(sitechat.ingest(str(site), index=index))
    return index


@pytest.mark.parametrize(
    ("question", "anchor"),
    [
        ("what changed in 2.3.1", "231"),
        ("what's new in 1.3.1?", "131"),
        ("GET /v2/users", "get-v2users"),
        ("/v1/users", "get-v1users"),
        ("GET /v1/users/{id}", "get-v1usersid"),
    ],
)
async def test_the_section_naming_the_version_or_path_comes_first(
    small_site_index: str, question: str, anchor: str
) -> None:
    """With the offline default, the exact release or endpoint section leads, not a
    neighbour sharing its parts (``1.3.1`` mentions ``2.3``; ``/v1/users/{id}``)."""
    hits = await sitechat.search(question, index=small_site_index, k=3)
    assert hits[0].chunk.anchor == anchor, [h.chunk.link for h in hits]


async def test_the_keyword_side_ranks_the_exact_version_first(small_site_index: str) -> None:
    """FTS5 alone: the passage with ``2.3.1`` outranks those holding only its parts."""
    store, _ = await open_store(Settings.load(env_file=None, index=small_site_index))
    try:
        hits = await store.keyword_search(" ".join(keyword_terms("2.3.1")), 3)
    finally:
        await store.aclose()
    assert hits[0].chunk.anchor == "231", [h.chunk.link for h in hits]
