"""Heading-aware chunking: bounds, no lost words, overlap, stable ids."""

from __future__ import annotations

import dataclasses

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sitechat.errors import InvalidInputError
from sitechat.ingest.chunk import MAX_SEPARATE_SECTIONS, _segments, chunk_page, split_text
from sitechat.models import Page, Section, content_hash

_words = st.text(
    alphabet=st.characters(codec="utf-8", categories=("L", "N", "P")), min_size=1, max_size=30
)
_separators = st.sampled_from([" ", " ", " ", "\n", "\n\n", ". ", "!\n", "\t", "  \n \n"])


@st.composite
def section_texts(draw: st.DrawFn) -> str:
    words = draw(st.lists(_words, max_size=120))
    parts = []
    for word in words:
        parts.append(word)
        parts.append(draw(_separators))
    if draw(st.booleans()):
        parts.append("x" * draw(st.integers(100, 600)))  # one overlong word
    return "".join(parts)


@st.composite
def pages(draw: st.DrawFn) -> Page:
    count = draw(st.integers(0, 5))
    sections = tuple(
        Section((f"H{i}",), draw(st.sampled_from([None, f"a{i}", "same"])), draw(section_texts()))
        for i in range(count)
    )
    return Page(url="https://x.test/p", title="P", sections=sections)


sizes = st.tuples(st.integers(40, 400), st.integers(0, 100)).filter(lambda s: 2 * s[1] < s[0])


@given(pages(), sizes)
@settings(max_examples=200, deadline=None)
def test_chunks_are_bounded_and_lose_no_word(page: Page, size: tuple[int, int]) -> None:
    """Every chunk fits ``max_chars``; every word of a section with text is in its chunks."""
    max_chars, overlap = size
    chunks = chunk_page(page, max_chars=max_chars, overlap=overlap)
    assert all(len(c.text) <= max_chars for c in chunks)
    for section in page.sections:
        if not any(c.isalnum() for c in section.text):
            continue  # symbol-only sections are skipped on purpose
        words_in_chunks = {
            w for c in chunks if c.heading_path == section.heading_path for w in c.text.split()
        }
        for word in section.text.split():
            if len(word) <= max_chars - overlap - 1:
                assert word in words_in_chunks


@given(section_texts(), st.integers(20, 300))
@settings(max_examples=200, deadline=None)
def test_segments_reconstruct_the_section_in_order(text: str, budget: int) -> None:
    """Pieces before overlap, in order, hold exactly the section's characters (spaces aside)."""
    segments = _segments(text, budget)
    assert all(0 < len(s) <= budget for s in segments)
    assert "".join("".join(s.split()) for s in segments) == "".join(text.split())
    rejoined = " ".join(segments).split()
    if not any(len(w) > budget for w in text.split()):
        assert rejoined == text.split()


@given(section_texts(), sizes)
@settings(max_examples=150, deadline=None)
def test_overlap_starts_at_a_word_boundary_of_the_previous_piece(
    text: str, size: tuple[int, int]
) -> None:
    """Each later piece begins with whole words from the end of the previous piece."""
    max_chars, overlap = size
    pieces = split_text(text, max_chars=max_chars, overlap=overlap)
    segments = _segments(text.strip(), max_chars - overlap - 1 if overlap else max_chars)
    if len(pieces) <= 1:
        return
    for i in range(1, len(pieces)):
        assert pieces[i].endswith(segments[i])
        carried = pieces[i][: len(pieces[i]) - len(segments[i])].strip()
        assert len(carried) <= overlap
        if carried:
            assert segments[i - 1].endswith(carried)
            before = segments[i - 1][: len(segments[i - 1]) - len(carried)]
            assert before == "" or before[-1].isspace()


def _section(anchor: str, text: str) -> Section:
    return Section(("Doc", anchor), anchor, text)


PAGE = Page(
    url="https://x.test/doc",
    title="Doc",
    sections=(
        _section("one", "Short first section."),
        _section("two", "Short second section."),
        _section("empty", "   \n  "),
        _section("dash", "— · —"),
        _section("long", " ".join(f"Sentence number {i} is here." for i in range(200))),
    ),
)


def test_small_sections_keep_their_own_chunks_and_anchors() -> None:
    """Small neighbours are not merged; empty and symbol-only sections are skipped."""
    chunks = chunk_page(PAGE, max_chars=300, overlap=40)
    anchors = [c.anchor for c in chunks]
    assert anchors[:2] == ["one", "two"]
    assert "empty" not in anchors
    assert "dash" not in anchors
    assert set(anchors[2:]) == {"long"}
    assert chunks[0].link == "https://x.test/doc#one"
    assert all(c.title == "Doc" and c.page_hash == PAGE.content_hash for c in chunks)
    assert all(c.content_hash == content_hash(c.text) for c in chunks)


def test_long_section_splits_at_sentences_with_overlap() -> None:
    """A long paragraph splits between sentences and repeats the previous piece's tail."""
    chunks = [c for c in chunk_page(PAGE, max_chars=300, overlap=40) if c.anchor == "long"]
    assert len(chunks) > 5
    assert chunks[0].text.startswith("Sentence number 0 is here.")
    assert chunks[0].text.endswith("here.")
    second = chunks[1].text
    tail = second[: second.index("Sentence number", 30)]
    assert tail.strip()
    assert chunks[0].text.endswith(tail.strip())


def test_ids_are_stable_and_unique() -> None:
    """Re-chunking an unchanged page gives the same ids; ids within a page differ."""
    first = chunk_page(PAGE, max_chars=300, overlap=40)
    again = chunk_page(dataclasses.replace(PAGE), max_chars=300, overlap=40)
    assert [c.id for c in first] == [c.id for c in again]
    assert len({c.id for c in first}) == len(first)


def test_editing_one_section_changes_only_its_ids() -> None:
    """Changing the text of one section leaves every other section's chunk ids alone."""
    before = chunk_page(PAGE, max_chars=300, overlap=40)
    sections = list(PAGE.sections)
    sections[1] = _section("two", "Short second section, now edited.")
    after = chunk_page(
        dataclasses.replace(PAGE, sections=tuple(sections)), max_chars=300, overlap=40
    )
    changed_before = {c.id for c in before} - {c.id for c in after}
    assert changed_before == {before[1].id}
    assert [c.id for c in before if c.anchor != "two"] == [c.id for c in after if c.anchor != "two"]


def test_identical_pieces_get_distinct_ids() -> None:
    """The same text twice in one section still yields two ids (occurrence counts)."""
    text = "\n\n".join(["Repeat me exactly, please, it is long enough."] * 6)
    page = Page("https://x.test/r", "R", (Section((), None, text),))
    chunks = chunk_page(page, max_chars=60, overlap=0)
    assert len(chunks) == 6
    assert len({c.id for c in chunks}) == 6


def test_hard_cut_only_for_an_overlong_word() -> None:
    """A word longer than the budget is cut; the words around it stay whole."""
    text = "short words " + "y" * 250 + " after"
    pieces = split_text(text, max_chars=100, overlap=0)
    assert pieces == ["short words", "y" * 100, "y" * 100, "y" * 50, "after"]


@pytest.mark.parametrize(("max_chars", "overlap"), [(5, 0), (100, 50), (100, -1)])
def test_bad_sizes_are_refused(max_chars: int, overlap: int) -> None:
    """Sizes that cannot work raise InvalidInputError saying what is allowed."""
    with pytest.raises(InvalidInputError):
        chunk_page(PAGE, max_chars=max_chars, overlap=overlap)


_code_lines = st.lists(
    st.text(alphabet="abc =()\n", min_size=1, max_size=40), min_size=1, max_size=40
)


@given(st.lists(st.tuples(_words, _code_lines), min_size=1, max_size=4), sizes)
@settings(max_examples=150, deadline=None)
def test_code_fences_stay_closed_in_every_piece(
    blocks: list[tuple[str, list[str]]], size: tuple[int, int]
) -> None:
    """A piece that cuts a fenced code block closes it, and the next piece reopens it."""
    max_chars, overlap = size
    text = "\n\n".join(f"{prose}\n\n```\n" + "\n".join(code) + "\n```" for prose, code in blocks)
    for piece in split_text(text, max_chars=max_chars, overlap=overlap):
        assert len(piece) <= max_chars
        fences = [line for line in piece.split("\n") if line.startswith("```")]
        assert len(fences) % 2 == 0, piece


def test_split_code_block_pieces_read_as_code() -> None:
    """Both halves of a long code block are fenced, and the text after it is not."""
    code = "\n".join(f"value_{i} = compute({i})" for i in range(60))
    pieces = split_text(f"Intro.\n\n```\n{code}\n```\n\nAfter.", max_chars=300, overlap=40)
    middle = [p for p in pieces if "compute" in p]
    assert len(middle) > 2
    assert all(p.count("```") == 2 for p in middle)
    assert pieces[-1].endswith("After.")


def test_a_page_of_thousands_of_tiny_sections_is_merged_into_few_chunks() -> None:
    """Past MAX_SEPARATE_SECTIONS tiny sections, neighbours merge: chunks scale with text."""
    sections = tuple(Section(("h",), f"h{i}", f"a b {i}") for i in range(50_000))
    page = Page("https://x.test/p", "P", sections)
    chunks = chunk_page(page, max_chars=1200, overlap=150)
    total = sum(len(s.text) + 4 for s in sections)
    assert len(chunks) <= 2 * total // 1200 + 2
    assert all(len(c.text) <= 1200 for c in chunks)
    assert chunks[0].anchor == "h0"
    words = " ".join(c.text for c in chunks)
    assert "a b 0" in words and "a b 49999" in words
    assert len({c.id for c in chunks}) == len(chunks)
    # an ordinary page with many sections keeps one chunk per section
    few = Page("https://x.test/q", "Q", sections[:MAX_SEPARATE_SECTIONS])
    assert len(chunk_page(few)) == MAX_SEPARATE_SECTIONS
