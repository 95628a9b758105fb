"""The FAISS store against real FAISS and real SQLite in temporary directories."""

from __future__ import annotations

import asyncio
import dataclasses
import json
import os
import sqlite3
import subprocess
import sys
import textwrap
from collections.abc import AsyncIterator, Sequence
from contextlib import closing
from pathlib import Path

import pytest

from sitechat.config import Settings
from sitechat.embeddings.hashing import HashingEmbeddings
from sitechat.errors import (
    CorruptIndexError,
    EmbedderMismatchError,
    IndexNotFoundError,
    InvalidInputError,
    StoreError,
)
from sitechat.models import Chunk
from sitechat.testing.fakes import InMemoryVectorStore
from sitechat.vectorstores import _faiss_files, _faiss_open, _faiss_payload
from sitechat.vectorstores.base import EmbedderInfo, VectorStore
from sitechat.vectorstores.faiss import FaissVectorStore

EMBEDDER = HashingEmbeddings(dimension=64)
# a store saved more than once: only the current vectors and payload, nothing left over
SECOND_SAVE_FILES = [
    "chunks.sqlite3",
    "manifest.json",
    "payload-1.bin",
    "payload-1.ends",
    "vectors-2.faiss",
]
INFO = EmbedderInfo(EMBEDDER.embedder_name, EMBEDDER.dimension)


def make_chunk(
    chunk_id: str,
    text: str,
    *,
    url: str = "https://docs.example.com/page",
    title: str = "Page",
    metadata: dict[str, str] | None = None,
) -> Chunk:
    return Chunk(
        id=chunk_id,
        url=url,
        title=title,
        heading_path=("Guide", f"Section {chunk_id}"),
        anchor=f"anchor-{chunk_id}",
        text=text,
        content_hash=f"hash-{text}",
        page_hash="page-hash",
        metadata=metadata or {},
    )


def vectors(chunks: Sequence[Chunk]) -> list[list[float]]:
    return EMBEDDER.embed_documents([c.text for c in chunks])


CORPUS = [
    make_chunk(
        "install", "Install the package with pip install sitechat.", url="https://d/install"
    ),
    make_chunk(
        "config",
        "Configure the logging level with an environment variable.",
        url="https://d/config",
    ),
    make_chunk(
        "weather",
        "The weather in Paris is mild in spring.",
        url="https://d/misc",
        metadata={"lang": "en"},
    ),
    make_chunk(
        "wetter",
        "Das Wetter in Berlin ist kalt.",
        url="https://d/misc",
        metadata={"lang": "de", "odd 'key\"": "x'); DROP TABLE chunks; --"},
    ),
]


@pytest.fixture
def index_dir(tmp_path: Path) -> Path:
    return tmp_path / "index"


@pytest.fixture
async def store(index_dir: Path) -> AsyncIterator[FaissVectorStore]:
    opened = await FaissVectorStore.open_path(index_dir, INFO, create=True)
    await opened.upsert(CORPUS, vectors(CORPUS))
    yield opened
    await opened.aclose()


def fids_by_chunk_id(directory: Path) -> dict[str, int]:
    with closing(sqlite3.connect(f"file:{directory / 'chunks.sqlite3'}?mode=ro", uri=True)) as conn:
        return {cid: fid for fid, cid in conn.execute("SELECT fid, chunk_id FROM chunks")}


def names(directory: Path) -> list[str]:
    return sorted(p.name for p in directory.iterdir()) if directory.exists() else []


def file_heads(directory: Path) -> list[bytes]:
    return [p.read_bytes()[:2] for p in directory.iterdir()]


def make_directory(directory: Path, contents: dict[str, bytes] | None = None) -> None:
    directory.mkdir(exist_ok=True)
    for name, data in (contents or {}).items():
        (directory / name).write_bytes(data)


def read_manifest(directory: Path) -> dict[str, object]:
    data: dict[str, object] = json.loads((directory / "manifest.json").read_text())
    return data


def die(store: FaissVectorStore) -> None:
    """What a killed process leaves: its connection gone, its open transaction rolled back."""
    store._conn.close()
    store._closed = True


async def ids_of(store: VectorStore, query: str, k: int = 4, **where: str) -> list[str]:
    hits = await store.search(EMBEDDER.embed_query(query), k, where or None)
    return [hit.chunk.id for hit in hits]


# ---------------------------------------------------------------- opening


async def test_open_from_settings_creates_the_directory(tmp_path: Path) -> None:
    """``open(settings, ...)`` uses ``settings.index`` as the directory and records the embedder."""
    settings = Settings(index=str(tmp_path / "from-settings"))
    store = await FaissVectorStore.open(settings, INFO, create=True)
    assert store.embedder == INFO
    assert store.name == "faiss"
    assert store.supports_keyword_search
    await store.aclose()
    manifest = read_manifest(tmp_path / "from-settings")
    assert manifest["format"] == "sitechat-faiss"
    assert manifest["format_version"] == 1
    assert manifest["embedder"] == {"name": INFO.name, "dimension": INFO.dimension}


async def test_missing_index_says_to_ingest_first(index_dir: Path) -> None:
    """Opening a directory that holds no index names the ingest command to run."""
    with pytest.raises(IndexNotFoundError, match=r"sitechat ingest .* --index"):
        await FaissVectorStore.open_path(index_dir, INFO)
    with pytest.raises(IndexNotFoundError):
        await FaissVectorStore.open_path(index_dir, None, create=True)
    assert names(index_dir) == []


async def test_an_empty_existing_directory_can_become_an_index(index_dir: Path) -> None:
    """A directory the user created beforehand is fine as long as it is empty."""
    make_directory(index_dir)
    store = await FaissVectorStore.open_path(index_dir, INFO, create=True)
    await store.aclose()
    assert "manifest.json" in names(index_dir)


async def test_a_foreign_non_empty_directory_is_refused(index_dir: Path) -> None:
    """sitechat never scatters index files into a directory holding other things."""
    make_directory(index_dir, {"notes.txt": b"mine"})
    with pytest.raises(CorruptIndexError, match="not a sitechat index"):
        await FaissVectorStore.open_path(index_dir, INFO, create=True)


def _thesis_folder(directory: Path) -> None:
    make_directory(directory, {"thesis.txt": b"four years of work"})


def _plain_file(directory: Path) -> None:
    directory.write_bytes(b"four years of work")


def _web_project(directory: Path) -> None:
    make_directory(directory, {"manifest.json": b'{"name": "my app"}', "index.html": b"<p>"})


def _broken_foreign_manifest(directory: Path) -> None:
    make_directory(directory, {"manifest.json": b"// not json"})


@pytest.mark.parametrize("create", [False, True])
@pytest.mark.parametrize(
    "make", [_thesis_folder, _plain_file, _web_project, _broken_foreign_manifest]
)
async def test_a_path_that_is_not_an_index_is_never_called_deletable(
    index_dir: Path, make: object, create: bool
) -> None:
    """A folder or file that is not an index says so and to pick another path, never delete."""
    make(index_dir)  # type: ignore[operator]
    before = sorted(p.name for p in index_dir.parent.rglob("*"))
    with pytest.raises(CorruptIndexError) as caught:
        await FaissVectorStore.open_path(index_dir, INFO if create else None, create=create)
    message = str(caught.value)
    assert "is not a sitechat index" in message
    assert "choose another path" in message
    assert "delete" not in message.lower()
    assert sorted(p.name for p in index_dir.parent.rglob("*")) == before


async def test_an_index_missing_its_manifest_is_damage_not_foreign(
    store: FaissVectorStore, index_dir: Path
) -> None:
    """Without manifest.json but with sitechat's database, the index is reported damaged."""
    await store.aclose()
    (index_dir / "manifest.json").unlink()
    with pytest.raises(CorruptIndexError, match=r"manifest\.json is missing") as caught:
        await FaissVectorStore.open_path(index_dir, None)
    assert "re-ingest" in str(caught.value)


@pytest.mark.parametrize("index", ["", "  "])
async def test_an_empty_index_setting_is_refused_not_the_current_directory(
    tmp_path: Path, index: str
) -> None:
    """SITECHAT_INDEX= (empty) is a ConfigurationError, never the current directory."""
    from sitechat.errors import ConfigurationError
    from sitechat.factories import open_store

    settings = Settings.load(index=index)
    with pytest.raises(ConfigurationError, match="index location is empty"):
        await open_store(settings)
    with pytest.raises(ConfigurationError, match="index location is empty"):
        await open_store(settings, create=True)
    assert names(tmp_path) == []


async def test_adopts_the_recorded_embedder(store: FaissVectorStore, index_dir: Path) -> None:
    """``embedder=None`` opens an existing index with whatever built it."""
    await store.persist()
    reader = await FaissVectorStore.open_path(index_dir, None)
    assert reader.embedder == INFO
    assert await reader.count() == len(CORPUS)
    await reader.aclose()


async def test_page_sizes_total_is_never_below_the_pages_counted(
    store: FaissVectorStore, index_dir: Path
) -> None:
    """A store opened before another one saved more pages counts those pages' rows, but not
    their vectors: its total is raised to at least the pages' sum."""
    await store.persist()
    reader = await FaissVectorStore.open_path(index_dir, None)
    try:
        added = [
            make_chunk(f"big-{i}", f"Passage {i} of a long page.", url="https://d/big")
            for i in range(40)
        ]
        await store.upsert(added, vectors(added))
        await store.persist()
        sizes = await reader.page_sizes(["https://d/big", "https://d/install"])
        assert dict(sizes.chunks) == {"https://d/big": 40, "https://d/install": 1}
        assert sizes.total >= 41
        assert (await store.page_sizes(["https://d/big"])).total == len(CORPUS) + 40
    finally:
        await reader.aclose()


async def test_another_embedder_is_refused_naming_both(
    store: FaissVectorStore, index_dir: Path
) -> None:
    """Opening with a different embedder explains the clash and the two ways out."""
    await store.persist()
    other = EmbedderInfo("openai:text-embedding-3-small", 1536)
    with pytest.raises(EmbedderMismatchError) as caught:
        await FaissVectorStore.open_path(index_dir, other, create=True)
    message = str(caught.value)
    for part in (INFO.name, other.name, "Re-ingest into a new index", "original embedder"):
        assert part in message


async def test_an_index_that_never_stored_a_chunk_takes_the_embedder_an_ingest_brings(
    tmp_path: Path,
) -> None:
    """A first ingest that failed leaves an empty index; the next ingest, with another
    embedder configured, re-creates it rather than refusing. Searching still refuses."""
    directory = tmp_path / "index"
    first = await FaissVectorStore.open_path(directory, INFO, create=True)
    await first.aclose()
    other = EmbedderInfo("other:model", 32)
    with pytest.raises(EmbedderMismatchError):
        await FaissVectorStore.open_path(directory, other)  # not an ingest: no change
    store = await FaissVectorStore.open_path(directory, other, create=True)
    assert store.embedder == other
    await store.upsert([make_chunk("a", "alpha")], [[1.0] + [0.0] * 31])
    await store.aclose()
    reopened = await FaissVectorStore.open_path(directory, None)
    assert reopened.embedder == other and await reopened.count() == 1
    await reopened.aclose()
    assert os.listdir(tmp_path) == ["index"]  # nothing left aside


async def test_discard_if_empty_removes_only_the_empty_index_it_created(tmp_path: Path) -> None:
    """A store that created its directory removes it after closing when nothing was stored;
    an index it found, or one that holds chunks, is left in place."""
    created = await FaissVectorStore.open_path(tmp_path / "new", INFO, create=True)
    assert created.created
    await created.aclose()
    assert await created.discard_if_empty()
    assert os.listdir(tmp_path) == []  # nothing left aside either

    made = await FaissVectorStore.open_path(tmp_path / "kept", INFO, create=True)
    await made.aclose()
    found = await FaissVectorStore.open_path(tmp_path / "kept", INFO, create=True)
    assert not found.created
    await found.aclose()
    assert not await found.discard_if_empty()

    filled = await FaissVectorStore.open_path(tmp_path / "filled", INFO, create=True)
    await filled.upsert(CORPUS[:1], vectors(CORPUS[:1]))
    await filled.aclose()
    assert not await filled.discard_if_empty()
    assert sorted(os.listdir(tmp_path)) == ["filled", "kept"]


async def test_discard_if_empty_judges_the_index_on_disk_not_the_stale_store(
    tmp_path: Path,
) -> None:
    """The store's own view says empty, but another writer filled the index, another
    reader has it open, or it was replaced by another directory: each time it stays."""
    directory = tmp_path / "index"
    stale = await FaissVectorStore.open_path(directory, INFO, create=True)
    assert await stale.count() == 0
    other = await FaissVectorStore.open_path(directory, INFO)
    await other.aclose()
    with closing(sqlite3.connect(directory / "chunks.sqlite3")) as reader:
        reader.execute("SELECT count(*) FROM chunks").fetchone()  # open in "another process"
        await stale.aclose()
        assert not await stale.discard_if_empty()
    writer = await FaissVectorStore.open_path(directory, INFO)
    await writer.upsert(CORPUS, vectors(CORPUS))
    await writer.aclose()
    assert not await stale.discard_if_empty()
    reopened = await FaissVectorStore.open_path(directory, None)
    assert await reopened.count() == len(CORPUS)
    await reopened.aclose()

    replaced = await FaissVectorStore.open_path(tmp_path / "replaced", INFO, create=True)
    await replaced.aclose()
    os.rename(tmp_path / "replaced", tmp_path / "moved")
    await (await FaissVectorStore.open_path(tmp_path / "replaced", INFO, create=True)).aclose()
    assert not await replaced.discard_if_empty()  # another directory under its name now
    assert (tmp_path / "replaced" / "manifest.json").is_file()


# ---------------------------------------------------------------- round trip and writes


async def test_round_trip_persist_and_reopen(store: FaissVectorStore, index_dir: Path) -> None:
    """After persist and reopen, chunks and search results are exactly the same."""
    query = EMBEDDER.embed_query("how do I install it")
    before = await store.search(query, 4)
    keyword_before = await store.keyword_search("weather Paris", 2)
    await store.aclose()
    reopened = await FaissVectorStore.open_path(index_dir, INFO)
    after = await reopened.search(query, 4)
    assert [(h.chunk, round(h.score, 6)) for h in after] == [
        (h.chunk, round(h.score, 6)) for h in before
    ]
    assert await reopened.keyword_search("weather Paris", 2) == keyword_before
    assert await reopened.get([c.id for c in CORPUS]) == CORPUS
    await reopened.aclose()


async def test_search_scores_are_cosine_similarities(store: FaissVectorStore) -> None:
    """A stored text searched for itself scores 1 and ranks first."""
    hits = await store.search(EMBEDDER.embed_query(CORPUS[1].text), 2)
    assert hits[0].chunk.id == "config"
    assert hits[0].score == pytest.approx(1.0, abs=1e-5)
    assert hits[0].score > hits[1].score


async def test_search_of_a_zero_vector_or_k_zero_finds_nothing(store: FaissVectorStore) -> None:
    """A vector with no direction, or k=0, returns no hits rather than arbitrary ones."""
    assert await store.search([0.0] * INFO.dimension, 3) == []
    assert await store.search(EMBEDDER.embed_query("install"), 0) == []


async def test_upsert_replaces_by_chunk_id(store: FaissVectorStore) -> None:
    """Upserting a known id replaces its text, vector and keywords; count is unchanged."""
    replacement = make_chunk("install", "Download the installer from the releases page.")
    await store.upsert([replacement], vectors([replacement]))
    assert await store.count() == len(CORPUS)
    assert await store.get(["install"]) == [replacement]
    assert (await ids_of(store, "download installer releases"))[0] == "install"
    assert await store.keyword_search("pip", 4) == []
    assert [h.chunk.id for h in await store.keyword_search("releases", 4)] == ["install"]


async def test_duplicate_ids_in_one_upsert_keep_the_last(store: FaissVectorStore) -> None:
    """Within one call, a repeated id behaves like two upserts in order."""
    first, second = make_chunk("dup", "first version"), make_chunk("dup", "second version")
    await store.upsert([first, second], vectors([first, second]))
    assert await store.get(["dup"]) == [second]
    assert await store.count() == len(CORPUS) + 1


async def test_delete_by_ids_and_by_url(store: FaissVectorStore) -> None:
    """Deletes return how many existed and remove vectors, rows and keywords."""
    assert await store.delete(["install", "no-such-id"]) == 1
    assert await store.delete(["install"]) == 0
    assert "install" not in await ids_of(store, "install the package")
    assert await store.keyword_search("pip", 4) == []
    assert await store.delete_by_url("https://d/misc") == 2
    assert await store.count() == 1
    assert await store.urls() == ["https://d/config"]
    assert await store.chunk_hashes("https://d/misc") == {}
    assert await store.delete_by_url("https://d/misc") == 0
    assert await store.delete([]) == 0


async def test_faiss_ids_are_never_reused(store: FaissVectorStore, index_dir: Path) -> None:
    """Deleted and replaced chunks' ids stay retired, across a reopen too."""
    await store.persist()
    first = fids_by_chunk_id(index_dir)
    await store.delete(["wetter"])
    replacement = make_chunk("config", "Configure it differently.")
    await store.upsert([replacement], vectors([replacement]))
    await store.aclose()
    reopened = await FaissVectorStore.open_path(index_dir, INFO)
    fresh = make_chunk("fresh", "A brand new chunk.")
    await reopened.upsert([fresh], vectors([fresh]))
    await reopened.persist()
    after = fids_by_chunk_id(index_dir)
    assert after["config"] > max(first.values())
    assert after["fresh"] > after["config"]
    assert after["install"] == first["install"]
    await reopened.aclose()


async def test_get_keeps_the_requested_order_and_skips_unknown_ids(store: FaissVectorStore) -> None:
    """``get`` answers in the caller's order and ignores ids it does not hold."""
    got = await store.get(["weather", "nope", "install"])
    assert [c.id for c in got] == ["weather", "install"]
    assert await store.get([]) == []


async def test_chunk_hashes_and_urls(store: FaissVectorStore) -> None:
    """Ingest's change detection sees every chunk's hash, per page or overall."""
    assert await store.chunk_hashes("https://d/install") == {"install": CORPUS[0].content_hash}
    assert set(await store.chunk_hashes()) == {c.id for c in CORPUS}
    assert await store.urls() == ["https://d/config", "https://d/install", "https://d/misc"]


async def test_bad_vectors_are_rejected_before_any_change(store: FaissVectorStore) -> None:
    """Wrong counts, dimensions or NaN raise InvalidInputError and leave the store as it was."""
    chunk = make_chunk("x", "text")
    with pytest.raises(InvalidInputError, match="one vector per chunk"):
        await store.upsert([chunk], [])
    with pytest.raises(InvalidInputError, match="dimension 64"):
        await store.upsert([chunk], [[0.1] * 3])
    with pytest.raises(InvalidInputError, match="NaN"):
        await store.upsert([chunk], [[float("nan")] * 64])
    with pytest.raises(InvalidInputError, match="dimension 64"):
        await store.search([1.0, 2.0], 3)
    assert await store.count() == len(CORPUS)


async def test_a_lone_surrogate_is_invalid_input_naming_the_chunk(
    store: FaissVectorStore,
) -> None:
    """A chunk with a lone surrogate is refused as InvalidInputError naming it, nothing written."""
    good = make_chunk("good", "fine text")
    bad = dataclasses.replace(make_chunk("broken-chunk", "text"), text="text \ud800 inside")
    with pytest.raises(InvalidInputError, match=r"'broken-chunk'.*surrogate"):
        await store.upsert([good, bad], vectors([good, good]))
    assert await store.count() == len(CORPUS)


# ---------------------------------------------------------------- filters and keywords


async def test_filters_on_url_and_metadata(store: FaissVectorStore) -> None:
    """``where`` keeps only chunks whose url and metadata equal every value."""
    assert set(await ids_of(store, "weather", url="https://d/misc")) == {"weather", "wetter"}
    assert await ids_of(store, "weather", lang="de") == ["wetter"]
    assert await ids_of(store, "weather", url="https://d/misc", lang="en") == ["weather"]
    assert await ids_of(store, "weather", url="https://d/install", lang="en") == []
    assert await ids_of(store, "weather", lang="fr") == []
    odd = {"odd 'key\"": "x'); DROP TABLE chunks; --"}
    hits = await store.search(EMBEDDER.embed_query("weather"), 4, odd)
    assert [h.chunk.id for h in hits] == ["wetter"]
    hits = await store.keyword_search("weather wetter", 4, {"lang": "en"})
    assert [h.chunk.id for h in hits] == ["weather"]


async def test_filter_values_must_be_strings(store: FaissVectorStore) -> None:
    """A non-string filter value is refused with a hint rather than silently matching nothing."""
    with pytest.raises(InvalidInputError, match="strings"):
        await store.search(EMBEDDER.embed_query("x"), 2, {"lang": 3})  # type: ignore[dict-item]


async def test_keyword_search_ranks_a_title_match_first(index_dir: Path) -> None:
    """BM25 weighs the title over body text: the page titled with the word wins."""
    chunks = [
        make_chunk("body1", "Deployment notes mention asyncio once among many other words here."),
        make_chunk("titled", "Event loops, tasks and coroutines.", title="asyncio reference"),
        make_chunk("body2", "Nothing relevant, but asyncio appears in this long passage too."),
        make_chunk("none", "Completely unrelated text about gardening."),
    ]
    store = await FaissVectorStore.open_path(index_dir, INFO, create=True)
    await store.upsert(chunks, vectors(chunks))
    hits = await store.keyword_search("asyncio", 5)
    assert hits[0].chunk.id == "titled"
    assert {h.chunk.id for h in hits} == {"titled", "body1", "body2"}
    assert hits[0].score > hits[1].score >= hits[2].score
    await store.aclose()


async def test_keyword_search_uses_stems(store: FaissVectorStore) -> None:
    """The porter tokenizer matches "configuring" to "Configure"."""
    hits = await store.keyword_search("configuring", 3)
    assert [h.chunk.id for h in hits] == ["config"]


@pytest.mark.parametrize(
    "query",
    ['"unbalanced', "NEAR(pip install)", "pip*", "-pip", "title:pip", "AND OR NOT", "^ + {} () :"],
)
async def test_keyword_query_syntax_is_never_interpreted(
    store: FaissVectorStore, query: str
) -> None:
    """User text with FTS5 operators is searched as words and never raises."""
    await store.keyword_search(query, 3)


async def test_keyword_search_without_words_finds_nothing(store: FaissVectorStore) -> None:
    """Punctuation alone is not a query."""
    assert await store.keyword_search("?!…", 3) == []


# ---------------------------------------------------------------- durability


async def test_only_expected_files_and_no_pickle(store: FaissVectorStore, index_dir: Path) -> None:
    """The directory holds the manifest, the database, one vectors file and one payload
    epoch's two files: no pickle."""
    await store.upsert(
        [make_chunk("more", "more text")], vectors([make_chunk("more", "more text")])
    )
    await store.persist()
    await store.delete(["more"])
    await store.aclose()
    assert names(index_dir) == SECOND_SAVE_FILES
    for head in file_heads(index_dir):
        # a pickle starts with the PROTO opcode 0x80 and a protocol number
        assert not (head[:1] == b"\x80" and head[1:2] in {bytes([n]) for n in range(2, 6)})


async def test_persist_without_changes_writes_nothing(
    store: FaissVectorStore, index_dir: Path
) -> None:
    """A clean store's persist is a no-op: no new generation."""
    await store.persist()
    await store.persist()
    assert [n for n in names(index_dir) if n.startswith("vectors")] == ["vectors-1.faiss"]


async def test_unpersisted_changes_are_lost_not_corrupting(
    store: FaissVectorStore, index_dir: Path
) -> None:
    """Changes after the last persist vanish with the process; the rest reads fine."""
    await store.persist()
    extra = make_chunk("extra", "never persisted")
    await store.upsert([extra], vectors([extra]))
    await store.delete(["install"])
    die(store)
    reopened = await FaissVectorStore.open_path(index_dir, INFO)
    assert sorted(await reopened.chunk_hashes()) == sorted(c.id for c in CORPUS)
    assert (await ids_of(reopened, "install the package"))[0] == "install"
    await reopened.aclose()


async def test_crash_before_the_commit_keeps_the_old_generation(
    store: FaissVectorStore, index_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """New vectors written but never committed: reopen reads the previous state, then tidies."""
    await store.persist()
    extra = make_chunk("extra", "written but not switched")
    await store.upsert([extra], vectors([extra]))

    def crash(*args: object) -> None:
        raise KeyboardInterrupt("simulated crash")

    monkeypatch.setattr(FaissVectorStore, "_commit_generation", crash)
    with pytest.raises(KeyboardInterrupt):
        await store.persist()
    monkeypatch.undo()
    make_directory(
        index_dir,
        {
            "vectors-7.faiss": b"left by an even older crash",
            ".vectors-8.faiss.123.tmp": b"half written",
            "payload-5.bin": b"an uncommitted payload epoch",
            "payload-5.ends": b"\0" * 16,
        },
    )
    die(store)

    reopened = await FaissVectorStore.open_path(index_dir, INFO)
    assert await reopened.count() == len(CORPUS)
    assert await reopened.get(["extra"]) == []
    await reopened.upsert([extra], vectors([extra]))
    await reopened.aclose()
    assert names(index_dir) == SECOND_SAVE_FILES


@pytest.mark.parametrize("part", ["vectors", "payload"])
async def test_a_full_disk_fails_the_save_clearly_and_loses_nothing(
    store: FaissVectorStore, index_dir: Path, monkeypatch: pytest.MonkeyPatch, part: str
) -> None:
    """A save that cannot write its files says what failed and what to check; the last
    save stays loadable, and the pending change is saved once writing works again."""
    await store.persist()
    extra = make_chunk("extra", "written after the first save")
    await store.upsert([extra], vectors([extra]))

    def no_space(*args: object, **kwargs: object) -> None:
        raise OSError(28, "No space left on device")

    if part == "vectors":
        monkeypatch.setattr(_faiss_files, "write_index_file", no_space)
    else:
        monkeypatch.setattr(_faiss_payload, "write_payload", no_space)
    with pytest.raises(StoreError) as failure:
        await store.persist()
    message = str(failure.value)
    assert "No space left on device" in message
    assert "free disk space" in message and "nothing was lost" in message
    assert ("payload file" in message) is (part == "payload")

    before = await FaissVectorStore.open_path(index_dir, INFO)
    assert await before.count() == len(CORPUS)
    await before.aclose()
    monkeypatch.undo()
    await store.persist()
    after = await FaissVectorStore.open_path(index_dir, INFO)
    assert await after.get(["extra"]) == [extra]
    await after.aclose()


async def test_a_full_database_mid_ingest_discards_the_pending_changes_and_keeps_the_last_save(
    store: FaissVectorStore, index_dir: Path
) -> None:
    """A write SQLite rolls back whole (a full disk) never leaves vectors the database lacks:
    the error says to check the space, later writes are refused, and the last save reopens."""
    await store.persist()
    words = " ".join(f"word{i}" for i in range(400))
    batches = [
        [make_chunk(f"new-{b}-{i}", f"{words} {b} {i}") for i in range(4)] for b in range(20)
    ]
    await store.upsert(batches[0], vectors(batches[0]))  # pending, not yet saved
    pages = store._conn.execute("PRAGMA page_count").fetchone()[0]
    store._conn.execute(f"PRAGMA max_page_count = {pages + 2}")  # the disk fills up

    async def ingest_until_full() -> None:
        for batch in batches[1:]:
            await store.upsert(batch, vectors(batch))

    with pytest.raises(StoreError, match="free space") as failure:
        await ingest_until_full()
    assert "no such savepoint" not in str(failure.value)
    with pytest.raises(StoreError, match="discarded"):
        await store.upsert(batches[0], vectors(batches[0]))
    with pytest.raises(StoreError, match="discarded"):
        await store.persist()
    await store.aclose()  # nothing to save: closes quietly

    reopened = await FaissVectorStore.open_path(index_dir, INFO)
    assert await reopened.count() == len(CORPUS)
    assert await reopened.get(["new-0-0"]) == []
    more = [make_chunk("after", "written once space is back")]
    await reopened.upsert(more, vectors(more))
    await reopened.aclose()
    again = await FaissVectorStore.open_path(index_dir, INFO)
    assert await again.count() == len(CORPUS) + 1
    await again.aclose()


async def test_crash_after_the_commit_keeps_the_new_generation(
    store: FaissVectorStore, index_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Switched but not tidied (old file and stale manifest remain): the new state loads."""
    await store.persist()

    def crash(*args: object) -> None:
        raise KeyboardInterrupt("simulated crash")

    extra = make_chunk("extra", "committed before the crash")
    await store.upsert([extra], vectors([extra]))
    monkeypatch.setattr(FaissVectorStore, "_finish_generation", crash)
    with pytest.raises(KeyboardInterrupt):
        await store.persist()
    die(store)
    assert "vectors-1.faiss" in names(index_dir)
    assert read_manifest(index_dir)["generation"] == 1

    reopened = await FaissVectorStore.open_path(index_dir, INFO)
    assert await reopened.get(["extra"]) == [extra]
    await reopened.aclose()


_CRASHING_WRITER = textwrap.dedent(
    """
    import asyncio, os, sys
    from sitechat.embeddings.hashing import HashingEmbeddings
    from sitechat.models import Chunk
    from sitechat.vectorstores import faiss as module
    from sitechat.vectorstores.base import EmbedderInfo

    directory, step = sys.argv[1], sys.argv[2]
    embedder = HashingEmbeddings(dimension=64)
    info = EmbedderInfo(embedder.embedder_name, embedder.dimension)

    def die(*args, **kwargs):
        os._exit(3)

    if step != "upsert":
        setattr(module.FaissVectorStore, step, die)

    async def main():
        store = await module.FaissVectorStore.open_path(directory, info)
        chunk = Chunk("child", "https://d/child", "Child", (), None, "from the child", "h")
        await store.upsert([chunk], embedder.embed_documents([chunk.text]))
        if step == "upsert":
            die()
        await store.persist()

    asyncio.run(main())
    """
)


@pytest.mark.parametrize(
    ("step", "child_survives"),
    [("upsert", False), ("_commit_generation", False), ("_finish_generation", True)],
)
async def test_a_killed_writer_process_leaves_a_loadable_index(
    store: FaissVectorStore, index_dir: Path, step: str, child_survives: bool
) -> None:
    """A process killed at any step of a write leaves the last committed state readable."""
    await store.aclose()
    result = await asyncio.to_thread(
        subprocess.run,
        [sys.executable, "-c", _CRASHING_WRITER, str(index_dir), step],
        capture_output=True,
        text=True,
        env=dict(os.environ),
    )
    assert result.returncode == 3, result.stderr
    reopened = await FaissVectorStore.open_path(index_dir, INFO)
    assert bool(await reopened.get(["child"])) is child_survives
    assert await reopened.count() == len(CORPUS) + child_survives
    assert (await ids_of(reopened, "install the package"))[0] == "install"
    await reopened.aclose()


# ---------------------------------------------------------------- corruption


def _garbage_manifest(directory: Path) -> None:
    (directory / "manifest.json").write_text("{not json")


def _future_format(directory: Path) -> None:
    data = json.loads((directory / "manifest.json").read_text())
    (directory / "manifest.json").write_text(json.dumps({**data, "format_version": 99}))


def _other_format(directory: Path) -> None:
    (directory / "manifest.json").write_text(json.dumps({"format": "something-else"}))


def _truncated_vectors(directory: Path) -> None:
    path = next(directory.glob("vectors-*.faiss"))
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])


def _vectors_file(directory: Path) -> Path:
    return next(directory.glob("vectors-*.faiss"))


def _missing_vectors(directory: Path) -> None:
    _vectors_file(directory).unlink()


def _garbage_sqlite(directory: Path) -> None:
    (directory / "chunks.sqlite3").write_bytes(b"this is not a database" * 200)


def _foreign_sqlite(directory: Path) -> None:
    (directory / "chunks.sqlite3").unlink()
    with closing(sqlite3.connect(directory / "chunks.sqlite3", isolation_level=None)) as conn:
        conn.execute("CREATE TABLE meta (key TEXT, value TEXT)")
        conn.execute("INSERT INTO meta VALUES ('format', 'theirs')")


def _no_meta_table(directory: Path) -> None:
    (directory / "chunks.sqlite3").unlink()
    with closing(sqlite3.connect(directory / "chunks.sqlite3", isolation_level=None)) as conn:
        conn.execute("CREATE TABLE other (x)")


def _vectors_disagree(directory: Path) -> None:
    with closing(sqlite3.connect(directory / "chunks.sqlite3", isolation_level=None)) as conn:
        conn.execute("DELETE FROM chunks WHERE chunk_id = 'install'")


def _ends_cut_mid_offset(directory: Path) -> None:
    path = directory / "payload-1.ends"
    path.write_bytes(path.read_bytes()[:-4])  # not a whole number of 8-byte offsets


def _overflowing_generation(directory: Path) -> None:
    text = (directory / "manifest.json").read_text()
    data = json.loads(text)
    old = f'"generation": {data["generation"]}'
    assert old in text
    (directory / "manifest.json").write_text(text.replace(old, '"generation": 1e400'))


def _payload_replaced_by_a_directory(directory: Path) -> None:
    (directory / "payload-1.bin").unlink()
    (directory / "payload-1.bin").mkdir()


@pytest.mark.parametrize(
    ("damage", "expected"),
    [
        (_ends_cut_mid_offset, "payload-1.ends is shorter than recorded"),
        (_overflowing_generation, "manifest.json has an invalid"),
        (_payload_replaced_by_a_directory, "payload-1.bin cannot be read"),
        (_garbage_manifest, "not valid JSON"),
        (_future_format, "format version 99"),
        (_other_format, "does not describe"),
        (_truncated_vectors, "damaged"),
        (_missing_vectors, "missing"),
        (_garbage_sqlite, "chunks.sqlite3"),
        (_foreign_sqlite, "not a sitechat"),
        (_no_meta_table, "chunks.sqlite3"),
        (_vectors_disagree, "holds 4 vectors but the database 3 chunks"),
    ],
)
async def test_damage_is_reported_as_corrupt_index(
    store: FaissVectorStore, index_dir: Path, damage: object, expected: str
) -> None:
    """Every kind of damage raises CorruptIndexError saying what and to re-ingest."""
    await store.aclose()
    damage(index_dir)  # type: ignore[operator]
    with pytest.raises(CorruptIndexError) as caught:
        await FaissVectorStore.open_path(index_dir, None)
    assert expected in str(caught.value)
    assert "re-ingest" in str(caught.value)


async def test_a_vectors_file_vanishing_while_faiss_opens_it_is_not_damage(
    store: FaissVectorStore, index_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A vectors file removed between the existence check and FAISS's open reads as missing."""
    await store.aclose()
    path = _vectors_file(index_dir)
    real_read = _faiss_files.faiss.read_index

    def read_after_removal(name: str) -> object:
        path.unlink()  # what a writer in another process does after switching generations
        return real_read(name)

    monkeypatch.setattr(_faiss_files.faiss, "read_index", read_after_removal)
    with pytest.raises(FileNotFoundError):
        _faiss_files.read_index_file(index_dir, path, INFO.dimension)


async def test_open_retries_when_a_writer_switches_generations_mid_open(
    store: FaissVectorStore, index_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A save that removes the vectors file a reader is opening makes it read the new one."""
    await store.aclose()
    real_read = _faiss_files.faiss.read_index
    saves: list[str] = []

    async def save_in_between() -> None:
        writer = await FaissVectorStore.open_path(index_dir, INFO)
        extra = [make_chunk("extra", "A passage saved while a reader opened the index.")]
        await writer.upsert(extra, vectors(extra))
        await writer.aclose()

    def read_during_a_save(name: str) -> object:
        if not saves:
            saves.append(name)
            asyncio.run(save_in_between())  # commits a new generation, removes ``name``
            assert not Path(name).exists()
        return real_read(name)

    monkeypatch.setattr(_faiss_files.faiss, "read_index", read_during_a_save)
    reader = await FaissVectorStore.open_path(index_dir, None)
    assert saves
    assert await reader.count() == len(CORPUS) + 1
    await reader.aclose()


async def test_corrupt_error_names_the_files_module_constants() -> None:
    """The on-disk format name and version are the documented ones."""
    assert (_faiss_files.FORMAT_NAME, _faiss_files.FORMAT_VERSION) == ("sitechat-faiss", 1)


# ---------------------------------------------------------------- concurrency and lifecycle


async def test_concurrent_searches_while_upserting(store: FaissVectorStore) -> None:
    """Twenty concurrent searchers never fail or see a half-applied chunk while a writer works."""
    batch = [
        make_chunk(f"bulk-{i}", f"bulk passage number {i} about topic {i % 7}") for i in range(1500)
    ]
    batch_vectors = vectors(batch)
    query = EMBEDDER.embed_query("bulk passage topic")
    writer_done = asyncio.Event()

    async def write() -> None:
        for start in range(0, len(batch), 500):
            await store.upsert(batch[start : start + 500], batch_vectors[start : start + 500])
        await store.persist()
        writer_done.set()

    async def search() -> int:
        rounds = 0
        while not writer_done.is_set() or rounds < 3:
            hits = await store.search(query, 5)
            keyword = await store.keyword_search("bulk passage", 5)
            assert all(h.chunk.text for h in hits + keyword)
            rounds += 1
            await asyncio.sleep(0)
        return rounds

    writer = asyncio.ensure_future(write())
    rounds = await asyncio.gather(*(search() for _ in range(20)))
    await writer
    assert min(rounds) >= 3
    assert await store.count() == len(CORPUS) + len(batch)


async def test_searches_from_other_threads_while_upserting(store: FaissVectorStore) -> None:
    """Readers on other threads (their own event loops) are safe during writes."""
    query = EMBEDDER.embed_query("install")

    def reader() -> int:
        async def loop() -> int:
            found = 0
            for _ in range(30):
                found += len(await store.search(query, 3))
            return found

        return asyncio.run(loop())

    batch = [make_chunk(f"t-{i}", f"threaded text {i}") for i in range(600)]
    writer = asyncio.ensure_future(store.upsert(batch, vectors(batch)))
    found = await asyncio.gather(*(asyncio.to_thread(reader) for _ in range(4)))
    await writer
    assert min(found) > 0


async def test_a_second_writer_process_is_stopped(store: FaissVectorStore, index_dir: Path) -> None:
    """Two writers on one index: the one whose view is stale is refused, not corrupting."""
    await store.persist()
    other = await FaissVectorStore.open_path(index_dir, INFO)
    extra = make_chunk("extra", "from the first writer")
    await store.upsert([extra], vectors([extra]))
    await store.persist()
    with pytest.raises(StoreError, match="changed by another process"):
        await other.upsert([extra], vectors([extra]))
    await other.aclose()


async def test_closed_store_refuses_work(store: FaissVectorStore) -> None:
    """After aclose every call raises StoreError saying to reopen; closing twice is fine."""
    await store.aclose()
    await store.aclose()
    with pytest.raises(StoreError, match="closed"):
        await store.count()
    with pytest.raises(StoreError, match="closed"):
        await store.upsert([CORPUS[0]], vectors(CORPUS[:1]))


async def test_a_new_index_directory_follows_the_umask(tmp_path: Path) -> None:
    """With umask 022 a new index is 0755, readable by the other users a container or a
    shared server runs readers as (it was built in a 0700 temporary directory)."""
    previous = os.umask(0o022)
    try:
        created = await FaissVectorStore.open_path(tmp_path / "shared", INFO, create=True)
        await created.aclose()
    finally:
        os.umask(previous)
    assert (tmp_path / "shared").stat().st_mode & 0o777 == 0o755


async def test_an_index_that_cannot_be_created_is_a_store_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A new index in a read-only place raises StoreError naming the place, not OSError."""
    import errno

    def refuse(*args: object, **kwargs: object) -> None:
        raise OSError(errno.EROFS, "Read-only file system")

    monkeypatch.setattr(_faiss_open, "create_directory", refuse)
    with pytest.raises(StoreError, match=r"Cannot create an index at .*Read-only file system"):
        await FaissVectorStore.open_path(tmp_path / "new", INFO, create=True)


async def test_read_only_directory_is_searchable_but_not_writable(
    store: FaissVectorStore, index_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An index on a read-only file system (a baked image) opens for search only."""
    await store.aclose()
    monkeypatch.setattr(_faiss_open, "is_writable", lambda directory: False)
    reader = await FaissVectorStore.open_path(index_dir, None)
    assert (await ids_of(reader, "install the package"))[0] == "install"
    with pytest.raises(StoreError, match="read-only"):
        await reader.delete(["install"])
    await reader.aclose()


_KILLED_AFTER_SAVING = textwrap.dedent(
    """
    import asyncio, os, signal, sys
    from sitechat.embeddings.hashing import HashingEmbeddings
    from sitechat.models import Chunk
    from sitechat.embeddings.base import aembedder_info
    from sitechat.vectorstores.faiss import FaissVectorStore

    async def main():
        embedder = HashingEmbeddings(dimension=64)
        store = await FaissVectorStore.open_path(sys.argv[1], await aembedder_info(embedder))
        for n in range(2):
            chunks = [Chunk(f"saved-{n}-{i}", "https://d/s", "S", (), None, f"saved {n} {i}",
                            f"s{n}{i}") for i in range(10)]
            await store.upsert(chunks, embedder.embed_documents([c.text for c in chunks]))
            await store.persist()  # durable once it returns
        os.kill(os.getpid(), signal.SIGKILL)  # gone before closing: the saves stay in the WAL

    asyncio.run(main())
    """
)


async def test_a_read_only_open_reads_saves_still_in_the_write_ahead_log(
    store: FaissVectorStore, index_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A writer killed after persist() leaves its saves in the WAL; a read-only open (a
    mount or user that cannot write) reads them instead of calling the index corrupt."""
    await store.aclose()
    result = await asyncio.to_thread(
        subprocess.run,
        [sys.executable, "-c", _KILLED_AFTER_SAVING, str(index_dir)],
        capture_output=True,
        text=True,
        env=dict(os.environ),
    )
    assert result.returncode == -9, result.stderr
    assert (index_dir / "chunks.sqlite3-wal").stat().st_size > 0
    monkeypatch.setattr(_faiss_open, "is_writable", lambda directory: False)
    reader = await FaissVectorStore.open_path(index_dir, None)
    try:
        assert await reader.count() == len(CORPUS) + 20
        assert await reader.get(["saved-1-9"])
    finally:
        await reader.aclose()


_OTHER_WRITER = textwrap.dedent(
    """
    import asyncio, sys
    from sitechat.embeddings.hashing import HashingEmbeddings
    from sitechat.models import Chunk
    from sitechat.embeddings.base import aembedder_info
    from sitechat.vectorstores.faiss import FaissConfig, FaissVectorStore

    async def main():
        embedder = HashingEmbeddings(dimension=64)
        config = FaissConfig(hnsw_threshold=int(sys.argv[2]))
        store = await FaissVectorStore.open_path(
            sys.argv[1], await aembedder_info(embedder), config=config
        )
        chunks = [
            Chunk(f"new-{i}", "https://d/new", "New", (), None, f"fresh text {i}", f"n{i}",
                  metadata={"group": "new"})
            for i in range(20)
        ]
        await store.upsert(chunks, embedder.embed_documents([c.text for c in chunks]))
        await store.aclose()

    asyncio.run(main())
    """
)


@pytest.mark.parametrize("threshold", [5, 50_000], ids=["hnsw", "flat"])
async def test_a_filtered_search_by_a_reader_survives_another_process_saving(
    index_dir: Path, threshold: int
) -> None:
    """A reader opened before another process saved new chunks matching its filter finds
    none of them (their vectors are not in what it read) instead of raising FAISS's error."""
    from sitechat.vectorstores.faiss import FaissConfig

    config = FaissConfig(hnsw_threshold=threshold)
    writer = await FaissVectorStore.open_path(index_dir, INFO, create=True, config=config)
    old = [make_chunk(f"old-{i}", f"old text {i}", metadata={"group": "old"}) for i in range(20)]
    await writer.upsert(old, vectors(old))
    await writer.aclose()
    reader = await FaissVectorStore.open_path(index_dir, None, config=config)
    try:
        assert reader.vector_index == ("hnsw" if threshold == 5 else "flat")
        result = await asyncio.to_thread(
            subprocess.run,
            [sys.executable, "-c", _OTHER_WRITER, str(index_dir), str(threshold)],
            capture_output=True,
            text=True,
            env=dict(os.environ),
        )
        assert result.returncode == 0, result.stderr
        query = EMBEDDER.embed_query("fresh text 3")
        assert await reader.search(query, 5, {"group": "new"}) == []
        assert len(await reader.search(query, 5, {"group": "old"})) == 5
    finally:
        await reader.aclose()


async def test_a_store_without_its_own_clean_up_discards_nothing() -> None:
    """``VectorStore.discard_if_empty`` defaults to a no-op, so a failed ingest into a
    plugin or database store leaves it as it was."""
    store = InMemoryVectorStore(INFO)
    await store.aclose()
    assert await store.discard_if_empty() is False
