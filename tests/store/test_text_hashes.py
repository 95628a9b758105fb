"""The contract's ``verify()`` re-hashes the text of the chunks ingest made, and only those."""

from __future__ import annotations

import dataclasses
import hashlib

from hypothesis import given, settings
from hypothesis import strategies as st

from sitechat.ingest.chunk import chunk_page
from sitechat.models import Chunk, Page, Section, content_hash
from sitechat.testing import InMemoryVectorStore
from sitechat.vectorstores._text_hashes import TextHashCheck
from sitechat.vectorstores.base import EmbedderInfo

INFO = EmbedderInfo("test:text-hashes", 4)
PROBLEM = "chunks whose text does not match their content hash"


def guide(sections: int = 4) -> list[Chunk]:
    page = Page(
        "https://docs.example.com/guide",
        "Guide",
        tuple(
            Section(("Guide", f"Step {i}"), f"step-{i}", f"Step {i}: do thing {i}.")
            for i in range(sections)
        ),
    )
    return chunk_page(page)


async def stored(chunks: list[Chunk]) -> InMemoryVectorStore:
    store = InMemoryVectorStore(INFO)
    await store.upsert(chunks, [[1.0, 0.0, 0.0, 0.0]] * len(chunks))
    return store


def changed(chunk: Chunk, text: str) -> Chunk:
    """``chunk`` with another text under the same id and hash, as a damaged row reads."""
    return dataclasses.replace(chunk, text=text)


async def test_a_changed_text_is_named_by_its_chunk_id() -> None:
    """Every store built on the contract reports an ingested chunk whose text no longer
    hashes to its content_hash, naming it, and says it checked the text."""
    chunks = guide()
    store = await stored([*chunks[:2], changed(chunks[2], "Step 2: do another thing."), chunks[3]])
    check = await store.verify()
    assert check.problems == (f"{PROBLEM}: 1 (e.g. id {chunks[2].id})",)
    assert check.checked == ("chunks readable", "counts", "chunk text against content hashes")


async def test_many_changed_texts_are_counted_and_three_named() -> None:
    """All damaged chunks are counted; the first three are named."""
    chunks = guide(6)
    store = await stored([changed(c, c.text + "!") if i % 2 else c for i, c in enumerate(chunks)])
    check = await store.verify()
    named = ", ".join(f"id {c.id}" for c in chunks[1:6:2])
    assert check.problems == (f"{PROBLEM}: 3 (e.g. {named})",)
    store = await stored([changed(c, c.text + "!") for c in chunks])
    (line,) = (await store.verify()).problems
    assert line.startswith(f"{PROBLEM}: 6 (e.g. id ") and line.count("id ") == 3


async def test_hashes_of_their_own_are_never_faulted() -> None:
    """A content_hash is whatever its maker chose: chunks upserted with ids of their own are
    not re-hashed, whatever their hash looks like, and no text check is claimed for them."""
    own = [
        Chunk("c1", "https://docs.example.com/a", "A", (), None, "text one", "v1"),
        Chunk(
            hashlib.md5(b"text two").hexdigest(),  # a user's own id scheme
            "https://docs.example.com/a",
            "A",
            ("H",),
            "h",
            "text two",
            hashlib.md5(b"text two").hexdigest(),
        ),
        Chunk("c3", "https://docs.example.com/a", "A", (), None, "text three", content_hash("x")),
    ]
    check = await (await stored(own)).verify()
    assert check.ok, check.problems
    assert check.checked == ("chunks readable", "counts")
    mixed = await (await stored([*own, *guide()])).verify()
    assert mixed.ok, mixed.problems
    assert (
        mixed.checked[-1]
        == "chunk text against content hashes (4 of 7 chunks: the ones ingest made)"
    )


async def test_repeated_pieces_under_one_heading_are_checked_too() -> None:
    """Identical pieces under one heading get ids by occurrence (0, 1, 2): each is still
    recognised as ingest's, and a later one's damage is named."""
    repeated = Section(("FAQ",), "faq", "Restart the service and try again.")
    page = Page("https://docs.example.com/faq", "FAQ", (repeated, repeated, repeated))
    chunks = chunk_page(page)
    assert len({c.id for c in chunks}) == 3
    check = await (await stored(chunks)).verify()
    assert check.ok and check.checked[-1] == "chunk text against content hashes"
    store = await stored([chunks[0], changed(chunks[2], "Reinstall."), chunks[1]])
    assert (await store.verify()).problems == (f"{PROBLEM}: 1 (e.g. id {chunks[2].id})",)


_texts = st.sampled_from(
    ["Install it.", "Run it.", "Install it. " * 40, "x y z", "日本語のテキスト"]
)
_sections = st.builds(
    Section,
    st.sampled_from([(), ("Guide",), ("Guide", "Linux"), ("Ça va",)]),
    st.sampled_from([None, "", "a", "linux"]),
    _texts,
)


@given(
    st.lists(_sections, max_size=8),
    st.sampled_from(["https://x.test/p", "https://x.test/ü?q=1#top"]),
    st.integers(0, 1000),
)
@settings(max_examples=150, deadline=None)
def test_every_chunk_ingest_makes_is_recognised(
    sections: list[Section], url: str, which: int
) -> None:
    """Whatever the page (repeated sections, empty anchors, no headings), every chunk
    chunk_page makes is checked and found intact; any one of them changed is found."""
    chunks = chunk_page(Page(url, "P", tuple(sections)), max_chars=200, overlap=20)
    check = TextHashCheck()
    check.add(chunks)
    check.finish()
    assert (check.seen, check.checked, check.mismatched) == (len(chunks), len(chunks), 0)
    if chunks:
        target = which % len(chunks)
        damaged = TextHashCheck()
        damaged.add(changed(c, c.text + ".") if i == target else c for i, c in enumerate(chunks))
        damaged.finish()
        assert damaged.mismatched == 1
        assert damaged.examples == [f"id {chunks[target].id}"]
