"""``verify()`` and ``sitechat verify``: damage anywhere in a FAISS index is found and named."""

from __future__ import annotations

import asyncio
import io
import json
import sqlite3
from contextlib import closing
from pathlib import Path

import faiss
import numpy as np
import pytest

import sitechat
from sitechat.cli import main
from sitechat.embeddings.hashing import HashingEmbeddings
from sitechat.errors import IndexNotFoundError
from sitechat.ingest.chunk import chunk_page
from sitechat.models import Chunk, Page, Section, content_hash
from sitechat.vectorstores import _faiss_files
from sitechat.vectorstores.base import EmbedderInfo
from sitechat.vectorstores.faiss import FaissConfig, FaissVectorStore

EMBEDDER = HashingEmbeddings(dimension=32)
INFO = EmbedderInfo(EMBEDDER.embedder_name, EMBEDDER.dimension)


def chunks(count: int) -> list[Chunk]:
    texts = [f"passage {i} about topic {i % 7} and word{i}" for i in range(count)]
    return [
        Chunk(
            id=f"c{i}",
            url=f"https://docs.example.com/page-{i // 4}",
            title=f"Page {i // 4}",
            heading_path=("Guide", f"Part {i % 4}"),
            anchor=f"part-{i % 4}",
            text=text,
            content_hash=content_hash(text),
        )
        for i, text in enumerate(texts)
    ]


async def build(directory: Path, count: int = 40, *, graph: bool = False) -> None:
    """An index of ``count`` chunks with two deleted, persisted and closed."""
    config = FaissConfig(hnsw_threshold=10 if graph else 50_000)
    store = await FaissVectorStore.open_path(directory, INFO, create=True, config=config)
    made = chunks(count)
    await store.upsert(made, EMBEDDER.embed_documents([c.text for c in made]))
    await store.delete(["c3", "c5"])
    await store.aclose()


async def verify(directory: Path) -> sitechat.StoreCheck:
    store = await FaissVectorStore.open_path(directory, None)
    try:
        return await store.verify()
    finally:
        await store.aclose()


def current_vectors(directory: Path) -> Path:
    (path,) = directory.glob("vectors-*.faiss")
    return path


def rewrite_vector(directory: Path, fid: int, change: str) -> None:
    """Overwrite the stored vector of ``fid`` in the vectors file, as bit rot would."""
    path = current_vectors(directory)
    index = faiss.read_index(str(path))
    ids = faiss.vector_to_array(index.id_map)
    position = int(np.flatnonzero(ids == fid)[0])
    inner = faiss.downcast_index(index.index)
    flat = faiss.downcast_index(inner.storage) if hasattr(inner, "storage") else inner
    data = faiss.rev_swig_ptr(flat.get_xb(), flat.ntotal * flat.d)
    row = data[position * flat.d : (position + 1) * flat.d]
    if change == "nan":
        row[0] = np.nan
    else:
        row *= 2.0
    _faiss_files.write_index_file(index, path)


def fid_for(directory: Path, chunk_id: str) -> int:
    with closing(sqlite3.connect(directory / "chunks.sqlite3")) as conn:
        (fid,) = conn.execute("SELECT fid FROM chunks WHERE chunk_id = ?", (chunk_id,)).fetchone()
    return int(fid)


def edit_row(directory: Path, statement: str, params: tuple[str, ...] = ()) -> None:
    """Change the chunk rows behind the store's back (its no-update guard dropped first)."""
    with closing(sqlite3.connect(directory / "chunks.sqlite3")) as conn:
        conn.execute("DROP TRIGGER chunks_no_update")
        conn.execute(statement, params)
        conn.commit()


@pytest.mark.parametrize("graph", [False, True], ids=["flat", "hnsw"])
async def test_a_sound_index_is_sound(tmp_path: Path, graph: bool) -> None:
    """A healthy index passes every check, with its counts (a graph's tombstones apart)."""
    await build(tmp_path / "i", graph=graph)
    check = await verify(tmp_path / "i")
    assert check.ok and check.problems == ()
    assert check.chunks == 38
    assert check.checked == (
        "opening",
        "database integrity",
        "vectors",
        "payload records",
        "keyword index",
    )
    assert (check.vectors, check.tombstones) == ((40, 2) if graph else (38, 0))


@pytest.mark.parametrize("graph", [False, True], ids=["flat", "hnsw"])
@pytest.mark.parametrize(
    ("change", "problem"),
    [("nan", "vectors holding NaN or infinity"), ("double", "vectors not of unit length")],
)
async def test_a_damaged_vector_is_named_by_its_fid(
    tmp_path: Path, graph: bool, change: str, problem: str
) -> None:
    """A NaN or a rescaled vector in the vectors file is reported with the chunk's fid,
    though opening the index and most searches would never notice it."""
    await build(tmp_path / "i", graph=graph)
    fid = fid_for(tmp_path / "i", "c17")
    rewrite_vector(tmp_path / "i", fid, change)
    check = await verify(tmp_path / "i")
    assert check.problems == (f"{problem}: 1 (e.g. fid {fid})",)


async def test_a_changed_payload_record_is_found(tmp_path: Path) -> None:
    """One byte changed in the payload copy of a chunk's text is found and named."""
    await build(tmp_path / "i")
    (payload,) = (tmp_path / "i").glob("payload-*.bin")
    data = bytearray(payload.read_bytes())
    at = data.index(b"passage 21 about")
    data[at + 9] = ord("9")  # "passage 91": still valid UTF-8, still the right fid
    payload.write_bytes(bytes(data))
    check = await verify(tmp_path / "i")
    fid = fid_for(tmp_path / "i", "c21")
    assert check.problems == (f"payload records that differ from their chunk: 1 (e.g. fid {fid})",)


async def test_rows_changed_behind_the_store_are_found_twice(tmp_path: Path) -> None:
    """A row edited outside sitechat disagrees with its payload copy and with the keyword
    index; both are reported."""
    await build(tmp_path / "i")
    edit_row(tmp_path / "i", "UPDATE chunks SET text = 'edited by hand' WHERE chunk_id = 'c30'")
    check = await verify(tmp_path / "i")
    fid = fid_for(tmp_path / "i", "c30")
    assert check.problems == (
        f"payload records that differ from their chunk: 1 (e.g. fid {fid})",
        "keyword index: it disagrees with the chunk rows (re-ingest to rebuild it)",
    )


def ingested() -> list[Chunk]:
    """Chunks as ingest makes them (ids and content hashes from ``chunk_page``): 4 pages of
    5 sections."""
    pages = [
        Page(
            f"https://docs.example.com/guide-{p}",
            f"Guide {p}",
            tuple(
                Section(("Guide", f"Step {s}"), f"step-{s}", f"Step {s} of guide {p}: run it.")
                for s in range(5)
            ),
        )
        for p in range(4)
    ]
    return [chunk for page in pages for chunk in chunk_page(page)]


async def build_ingested(directory: Path, extra: list[Chunk] | None = None) -> None:
    store = await FaissVectorStore.open_path(directory, INFO, create=True)
    made = ingested() + (extra or [])
    await store.upsert(made, EMBEDDER.embed_documents([c.text for c in made]))
    await store.aclose()


def edit_everywhere(directory: Path, chunk_id: str, old: str, new: str) -> None:
    """Change ``old`` to ``new`` (as long) in one chunk's text in its row, its payload
    record and the keyword index alike, so that every copy agrees."""
    assert len(old) == len(new)
    with closing(sqlite3.connect(directory / "chunks.sqlite3")) as conn:
        (text,) = conn.execute("SELECT text FROM chunks WHERE chunk_id = ?", (chunk_id,)).fetchone()
        conn.execute("DROP TRIGGER chunks_no_update")
        conn.execute(
            "UPDATE chunks SET text = ? WHERE chunk_id = ?", (text.replace(old, new), chunk_id)
        )
        conn.execute("INSERT INTO chunks_fts(chunks_fts) VALUES ('rebuild')")
        conn.commit()
    (payload,) = directory.glob("payload-*.bin")
    data = payload.read_bytes()
    assert data.count(text.encode()) == 1
    payload.write_bytes(data.replace(text.encode(), text.replace(old, new).encode()))


async def test_text_that_no_longer_matches_its_hash_is_named_by_its_id(tmp_path: Path) -> None:
    """A chunk's text changed alike in its row, its payload copy and the keyword index (a
    thorough hand edit, or a restore that mixed two backups) no longer hashes to the
    content_hash ingest gave it: verify names the chunk, though every copy agrees."""
    await build_ingested(tmp_path / "i")
    assert (await verify(tmp_path / "i")).ok
    target = ingested()[7]
    edit_everywhere(tmp_path / "i", target.id, "run it", "rm -rf")
    check = await verify(tmp_path / "i")
    assert check.problems == (
        f"chunks whose text does not match their content hash: 1 (e.g. id {target.id})",
    )
    assert "chunk text against content hashes" in check.checked
    store = await FaissVectorStore.open_path(tmp_path / "i", None)
    try:
        (stored,) = await store.get([target.id])
    finally:
        await store.aclose()
    assert stored.text.endswith("rm -rf.")  # what search would serve, under the old hash


async def test_a_row_edited_alone_is_named_three_ways(tmp_path: Path) -> None:
    """A row of an ingested chunk edited outside sitechat disagrees with its payload copy,
    with the keyword index, and with its own content hash."""
    await build_ingested(tmp_path / "i")
    target = ingested()[12]
    edit_row(
        tmp_path / "i", "UPDATE chunks SET text = 'edited by hand' WHERE chunk_id = ?", (target.id,)
    )
    check = await verify(tmp_path / "i")
    fid = fid_for(tmp_path / "i", target.id)
    assert check.problems == (
        f"payload records that differ from their chunk: 1 (e.g. fid {fid})",
        f"chunks whose text does not match their content hash: 1 (e.g. id {target.id})",
        "keyword index: it disagrees with the chunk rows (re-ingest to rebuild it)",
    )


async def test_rows_past_the_payload_are_checked_too(tmp_path: Path) -> None:
    """An index without a payload file (written before there was one) has its rows
    re-hashed all the same."""
    await build_ingested(tmp_path / "i")
    target = ingested()[3]
    edit_everywhere(tmp_path / "i", target.id, "run it", "rm -rf")
    for path in (tmp_path / "i").glob("payload-*"):
        path.unlink()
    with closing(sqlite3.connect(tmp_path / "i" / "chunks.sqlite3")) as conn:
        conn.execute("DELETE FROM meta WHERE key LIKE 'payload%'")
        conn.commit()
    check = await verify(tmp_path / "i")
    assert "payload records" not in check.checked
    assert check.problems == (
        f"chunks whose text does not match their content hash: 1 (e.g. id {target.id})",
    )


async def test_chunks_with_hashes_of_their_own_are_not_re_hashed(tmp_path: Path) -> None:
    """Chunks upserted with ids and content hashes of their own (any string: an md5, a
    version) are never faulted for their text; the chunks ingest made still are checked,
    and the check says how many those were."""
    own = [
        Chunk("c1", "https://docs.example.com/own", "Own", (), None, "some text", "v1"),
        Chunk(
            "0123456789abcdef0123456789abcdef",  # an id of the same shape as ingest's
            "https://docs.example.com/own",
            "Own",
            ("Guide",),
            "a",
            "other text",
            content_hash("not this text"),
        ),
    ]
    await build_ingested(tmp_path / "i", own)
    check = await verify(tmp_path / "i")
    assert check.ok, check.problems
    assert "chunk text against content hashes (20 of 22 chunks: the ones ingest made)" in (
        check.checked
    )


def test_cli_verify_names_a_chunk_whose_text_changed(tmp_path: Path) -> None:
    """`sitechat verify` exits 1 and names the chunk whose text no longer matches its hash."""
    index = tmp_path / "i"
    asyncio.run(build_ingested(index))
    target = ingested()[0]
    edit_everywhere(index, target.id, "run it", "rm -rf")
    code, text = run("verify", "--index", str(index))
    assert code == 1
    assert (
        f"  - chunks whose text does not match their content hash: 1 (e.g. id {target.id})\n"
        in text
    )


async def test_a_row_that_does_not_decode_is_named_not_raised(tmp_path: Path) -> None:
    """A row whose headings are no longer JSON is reported with its fid; verify goes on."""
    await build(tmp_path / "i")
    edit_row(tmp_path / "i", "UPDATE chunks SET heading_path = '[\"Gui' WHERE chunk_id = 'c11'")
    check = await verify(tmp_path / "i")
    fid = fid_for(tmp_path / "i", "c11")
    assert check.problems == (
        f"chunk rows with unreadable headings or metadata: 1 (e.g. fid {fid})",
    )


async def test_an_index_that_cannot_open_is_a_failed_check(tmp_path: Path) -> None:
    """A vectors file that FAISS cannot read makes verify_index report, not raise."""
    await build(tmp_path / "i")
    current_vectors(tmp_path / "i").write_bytes(b"not a faiss file")
    check = await sitechat.verify_index(str(tmp_path / "i"))
    assert not check.ok and check.checked == ("opening",)
    assert "cannot be read" in check.problems[0] and "re-ingest" in check.problems[0]


async def test_a_missing_index_is_not_found(tmp_path: Path) -> None:
    """Verifying an index that does not exist raises IndexNotFoundError, as search does."""
    with pytest.raises(IndexNotFoundError):
        await sitechat.verify_index(str(tmp_path / "none"))


async def test_verify_ignores_changes_not_yet_persisted(tmp_path: Path) -> None:
    """verify() checks what is on disk: a pending upsert is neither counted nor faulted."""
    await build(tmp_path / "i")
    store = await FaissVectorStore.open_path(tmp_path / "i", None)
    try:
        extra = chunks(45)[40:]
        await store.upsert(extra, EMBEDDER.embed_documents([c.text for c in extra]))
        assert (await store.verify()).chunks == 38
        await store.persist()
        check = await store.verify()
        assert check.ok and check.chunks == 43
    finally:
        await store.aclose()


def run(*argv: str) -> tuple[int, str]:
    out = io.StringIO()
    return main(list(argv), out=out), out.getvalue()


def test_cli_verify_reports_and_exits_by_the_result(tmp_path: Path) -> None:
    """`sitechat verify` exits 0 with the counts when sound, 1 with each problem when not,
    in text and in JSON."""
    index = tmp_path / "i"
    asyncio.run(build(index))
    code, text = run("verify", "--index", str(index))
    assert code == 0
    assert text.startswith(f"The faiss index at {index} is sound: 38 chunks, 38 vectors.")
    rewrite_vector(index, fid_for(index, "c9"), "nan")
    code, text = run("verify", "--index", str(index))
    code_json, out = run("verify", "--index", str(index), "--json")
    assert code == code_json == 1
    assert f"The faiss index at {index} is damaged:" in text
    assert "  - vectors holding NaN or infinity: 1" in text
    data = json.loads(out)
    assert data["ok"] is False and data["chunks"] == 38
    assert data["problems"][0].startswith("vectors holding NaN or infinity: 1")


def test_settings_pick_the_index_to_verify(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """SITECHAT_INDEX names the index when --index is not given; a missing one is an error."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("SITECHAT_INDEX", str(tmp_path / "missing"))
    assert run("verify")[0] == 1
    assert f"No sitechat index at {tmp_path / 'missing'}" in capsys.readouterr().err


_SAVE_MORE = """
import asyncio, sys
from sitechat.embeddings.hashing import HashingEmbeddings
from sitechat.models import Chunk
from sitechat.vectorstores.faiss import FaissVectorStore

async def main():
    embedder = HashingEmbeddings(dimension=32)
    store = await FaissVectorStore.open_path(sys.argv[1], None)
    new = [Chunk(f"n{i}", "https://docs.example.com/new", "New", (), None, f"new {i}", f"n{i}")
           for i in range(8)]
    await store.upsert(new, embedder.embed_documents([c.text for c in new]))
    await store.delete(["c7"])
    await store.aclose()

asyncio.run(main())
"""


async def test_a_save_by_another_process_during_verify_is_not_damage(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Another process saving between verify's loading of the vectors and its reading of
    the rows is not reported as chunks without vectors: verify loads again."""
    import subprocess
    import sys

    from sitechat.vectorstores import _faiss_verify

    await build(tmp_path)
    real_load = _faiss_verify.load_directory
    calls: list[int] = []

    def load_then_let_another_process_save(directory: Path) -> object:
        loaded = real_load(directory)
        if not calls:
            subprocess.run([sys.executable, "-c", _SAVE_MORE, str(directory)], check=True)
        calls.append(1)
        return loaded

    monkeypatch.setattr(_faiss_verify, "load_directory", load_then_let_another_process_save)
    check = await asyncio.to_thread(_faiss_verify.verify_directory, tmp_path)
    assert check.ok, check.problems
    assert check.chunks == 40 - 2 + 8 - 1
    assert len(calls) == 2
