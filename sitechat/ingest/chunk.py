"""Cut pages into retrievable chunks that never straddle two sections.

A chunk is what gets embedded, retrieved and cited, so it must be about one thing and
carry a deep link to where it came from: each chunk stays inside one section and keeps
that section's anchor, even when the section is small (merging small sections would
blur their topics and lose their anchors). Long sections are cut at the coarsest
boundary that fits (paragraph, line, sentence, word; a hard cut only inside a single
overlong word), and each later piece starts with a little of the previous one, so an
answer that spans the cut is still found.

The work per page is bounded by its size, not by its markup: a page with more than
:data:`MAX_SEPARATE_SECTIONS` sections that hold on average less than half a chunk of text
each (``<h2>h</h2><p>a b</p>`` repeated 250,000 times) has its runs of small neighbouring
sections merged into chunks of up to ``max_chars``, each under its first section's heading
and anchor, with the other headings kept in the text. Such a page then yields about as many
chunks as a page of the same amount of plain text; ordinary pages are never merged.

Chunk ids are a hash of where the text is and what it says (URL, anchor, heading path,
the piece's hash, and its occurrence number among identical pieces there; see
:func:`chunk_key` and :func:`chunk_id`): re-chunking an unchanged page gives identical ids,
and editing one section changes only its ids, so the pipeline re-embeds only what changed.
Because the id is derived from the piece's ``content_hash``, a chunk this module made can
be told from one made by hand, which lets ``verify()`` re-hash its text (see
:mod:`sitechat.vectorstores._text_hashes`).
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence

from sitechat.errors import InvalidInputError
from sitechat.models import Chunk, Page, Section, content_hash

__all__ = ["MAX_SEPARATE_SECTIONS", "chunk_id", "chunk_key", "chunk_page", "split_text"]

#: Sections a page may have before small neighbouring ones are merged (see above).
MAX_SEPARATE_SECTIONS = 1000

# Boundaries from coarsest to finest: blank line, line break, sentence end, any space.
_BOUNDARIES = (
    re.compile(r"\n[ \t]*\n\s*"),
    re.compile(r"\n\s*"),
    re.compile(r"(?<=[.!?;:])\s+"),
    re.compile(r"\s+"),
)


def _strip_span(text: str, start: int, end: int) -> tuple[int, int]:
    while start < end and text[start].isspace():
        start += 1
    while end > start and text[end - 1].isspace():
        end -= 1
    return start, end


def _split_span(text: str, start: int, end: int, budget: int, level: int, out: list[str]) -> None:
    """Append pieces of ``text[start:end]`` no longer than ``budget`` to ``out``, in order."""
    if end - start <= budget:
        if end > start:
            out.append(text[start:end])
        return
    if level == len(_BOUNDARIES):
        out.extend(text[i : min(i + budget, end)] for i in range(start, end, budget))
        return
    spans: list[tuple[int, int]] = []
    position = start
    for match in _BOUNDARIES[level].finditer(text, start, end):
        if match.start() > position:
            spans.append(_strip_span(text, position, match.start()))
        position = match.end()
    if position < end:
        spans.append(_strip_span(text, position, end))
    spans = [span for span in spans if span[1] > span[0]]
    if len(spans) <= 1:
        _split_span(text, start, end, budget, level + 1, out)
        return
    open_start = open_end = -1
    for span_start, span_end in spans:
        if open_start >= 0 and span_end - open_start <= budget:
            open_end = span_end
            continue
        if open_start >= 0:
            out.append(text[open_start:open_end])
            open_start = -1
        if span_end - span_start > budget:
            _split_span(text, span_start, span_end, budget, level + 1, out)
        else:
            open_start, open_end = span_start, span_end
    if open_start >= 0:
        out.append(text[open_start:open_end])


def _segments(text: str, budget: int) -> list[str]:
    """Non-overlapping pieces of ``text``, each at most ``budget`` characters, in order."""
    start, end = _strip_span(text, 0, len(text))
    out: list[str] = []
    _split_span(text, start, end, budget, 0, out)
    return out


def _tail(piece: str, overlap: int) -> str:
    """The last ``overlap`` characters of ``piece`` or fewer, starting at a word boundary."""
    if overlap <= 0 or not piece:
        return ""
    if len(piece) <= overlap:
        return piece
    cut = len(piece) - overlap
    if not piece[cut - 1].isspace():
        while cut < len(piece) and not piece[cut].isspace():
            cut += 1
    return piece[cut:].strip()


def _check_sizes(max_chars: int, overlap: int) -> None:
    if max_chars < 10:
        raise InvalidInputError(f"max_chars must be at least 10, got {max_chars}.")
    if overlap < 0 or 2 * overlap >= max_chars:
        raise InvalidInputError(
            f"overlap must be between 0 and less than half of max_chars ({max_chars}), "
            f"got {overlap}."
        )


_FENCE = re.compile(r"^[ \t]{0,3}(`{3,}|~{3,})")


def _fence_room(text: str) -> int:
    """Characters to keep free in each piece for closing and reopening a code fence."""
    if "```" not in text and "~~~" not in text:
        return 0
    markers = [m.group(1) for line in text.split("\n") if (m := _FENCE.match(line))]
    return 2 * (max(map(len, markers), default=3) + 1)


def _fence_after(text: str, fence: str | None) -> str | None:
    """The fence open after ``text``, given the one open before it."""
    for line in text.split("\n"):
        match = _FENCE.match(line)
        if match is None:
            continue
        marker = match.group(1)
        if fence is None:
            fence = marker
        elif (
            marker[0] == fence[0] and len(marker) >= len(fence) and not line[match.end() :].strip()
        ):
            fence = None
    return fence


def split_text(text: str, *, max_chars: int = 1200, overlap: int = 150) -> list[str]:
    """Split one section's text into pieces of at most ``max_chars`` characters.

    Every piece after the first begins with up to ``overlap`` characters from the end of
    the previous piece, starting at a word boundary. A piece that cuts through a fenced
    code block closes the fence, and the next piece reopens it, so every piece renders
    (and reads) as code where the page had code.
    """
    _check_sizes(max_chars, overlap)
    stripped = text.strip()
    if len(stripped) <= max_chars:
        return [stripped] if stripped else []
    budget = max_chars - overlap - 1 if overlap else max_chars
    room = _fence_room(stripped)
    if room and room * 2 <= budget:
        budget -= room
    else:
        room = 0
    segments = _segments(stripped, budget)
    starts: list[str | None] = []  # the fence open where each segment starts
    fence: str | None = None
    for segment in segments:
        starts.append(fence)
        if room:
            fence = _fence_after(segment, fence)
    ends = [*starts[1:], fence]
    pieces = []
    for i, segment in enumerate(segments):
        opened = starts[i]
        piece = segment
        tail = _tail(segments[i - 1], overlap) if i else ""
        if tail:
            previous = segments[i - 1]
            before_tail = previous[: len(previous) - len(tail)]
            opened = _fence_after(before_tail, starts[i - 1]) if room else None
            # With fences about, keep line structure so no fence line gets glued to text.
            piece = tail + ("\n" if room else " ") + segment
        if opened:
            piece = f"{opened}\n{piece}"
        if ends[i]:
            piece = f"{piece}\n{ends[i]}"
        pieces.append(piece)
    return pieces


def _has_text(section: Section) -> bool:
    return any(c.isalnum() for c in section.text)


def _bounded_sections(sections: tuple[Section, ...], max_chars: int) -> list[Section]:
    """``sections`` with text, small neighbours merged when there are too many of them.

    Merging starts only past :data:`MAX_SEPARATE_SECTIONS` sections and when there are
    more than two sections per ``max_chars`` of text; then consecutive sections are packed
    greedily into groups of at most ``max_chars`` (a larger section stays on its own), so
    the number of groups is at most about twice the text's length over ``max_chars``.
    """
    kept = [s for s in sections if _has_text(s)]
    total = sum(len(s.text) for s in kept)
    if len(kept) <= max(MAX_SEPARATE_SECTIONS, 2 * math.ceil(total / max_chars)):
        return kept
    merged: list[Section] = []
    group: list[Section] = []
    size = 0

    def close() -> None:
        if not group:
            return
        first = group[0]
        parts = [first.text.strip()]
        for section in group[1:]:
            heading = section.heading_path[-1] if section.heading_path else ""
            parts.append(f"{heading}\n{section.text.strip()}" if heading else section.text.strip())
        merged.append(Section(first.heading_path, first.anchor, "\n\n".join(parts)))
        group.clear()

    for section in kept:
        heading = section.heading_path[-1] if section.heading_path else ""
        length = len(section.text) + len(heading) + 3
        if group and size + length > max_chars:
            close()
            size = 0
        group.append(section)
        size += length
    close()
    return merged


def chunk_key(url: str, anchor: str | None, heading_path: Sequence[str], piece_hash: str) -> str:
    """What a chunk's id is derived from, apart from its occurrence: where the piece is (page
    URL, anchor, heading path) and the ``content_hash`` of its text."""
    return "\x00".join((url, anchor or "", *heading_path)) + "\x01" + piece_hash


def chunk_id(key: str, occurrence: int) -> str:
    """The id of the ``occurrence``-th (from 0) piece with this :func:`chunk_key` on a page:
    identical pieces under one heading get distinct, stable ids."""
    return content_hash(f"{key}\x01{occurrence}")


def chunk_page(page: Page, *, max_chars: int = 1200, overlap: int = 150) -> list[Chunk]:
    """Heading-aware chunks of ``page``, with ids stable across re-ingests.

    Sections without any letter or digit are skipped; every other section yields at
    least one chunk of its own, unless the page has so many tiny sections that they are
    merged (see the module's description).
    """
    _check_sizes(max_chars, overlap)
    page_hash = page.content_hash
    occurrences: dict[str, int] = {}
    chunks: list[Chunk] = []
    for section in _bounded_sections(page.sections, max_chars):
        for piece in split_text(section.text, max_chars=max_chars, overlap=overlap):
            piece_hash = content_hash(piece)
            key = chunk_key(page.url, section.anchor, section.heading_path, piece_hash)
            occurrence = occurrences.get(key, 0)
            occurrences[key] = occurrence + 1
            chunks.append(
                Chunk(
                    id=chunk_id(key, occurrence),
                    url=page.url,
                    title=page.title,
                    heading_path=section.heading_path,
                    anchor=section.anchor,
                    text=piece,
                    content_hash=piece_hash,
                    page_hash=page_hash,
                )
            )
    return chunks
