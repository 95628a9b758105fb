"""A full check of a FAISS index directory, for ``sitechat verify`` and ``store.verify()``.

Opening an index checks what is cheap: the manifest, the bookkeeping, that the vectors
file covers the database's chunks, and a few payload records. Damage elsewhere (a flipped
bit in a vector, a NaN written by a buggy embedder, a payload record that no longer matches
its row) only shows when a search happens to touch it. This reads everything once:

* the SQLite database's own integrity check, and the keyword index against the rows;
* every vector: finite, of unit length, and its id unique and belonging to a chunk
  (a graph may also hold tombstones of deleted chunks: they are counted, not faulted);
* every chunk row: readable, and, for the chunks ingest made, its text still hashing to
  its ``content_hash`` (see ``_text_hashes``);
* every payload record against the database row of the same chunk.

It reads the committed state on disk with its own connection (as another process would),
inside one read transaction, so a writer elsewhere cannot make it compare two different
generations. Nothing is written.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path

import faiss
import numpy as np

from sitechat.errors import CorruptIndexError
from sitechat.models import Chunk
from sitechat.vectorstores import _faiss_sql as sql
from sitechat.vectorstores._faiss_open import LoadedIndex, load_directory
from sitechat.vectorstores._text_hashes import TextHashCheck
from sitechat.vectorstores.base import StoreCheck

__all__ = ["verify_directory"]

_VECTOR_BATCH = 16_384  # vectors copied out of FAISS at a time (24 MB at dimension 384)
_ROW_BATCH = 500
_SNAPSHOT_TRIES = 5  # loads to try when other processes keep saving during the check
_UNIT_TOLERANCE = 1e-3
_EXAMPLES = 3  # ids named per kind of problem


class _Problems:
    """Problems by kind, each counted in full but named by its first few examples."""

    def __init__(self) -> None:
        self._found: dict[str, tuple[int, list[str]]] = {}

    def add(self, kind: str, example: str = "") -> None:
        count, examples = self._found.get(kind, (0, []))
        if example and len(examples) < _EXAMPLES:
            examples.append(example)
        self._found[kind] = (count + 1, examples)

    def add_line(self, line: str) -> None:
        """A problem already counted and worded elsewhere."""
        self._found[line] = (1, [])

    def lines(self) -> tuple[str, ...]:
        out = []
        for kind, (count, examples) in self._found.items():
            named = f" (e.g. {', '.join(examples)})" if examples else ""
            out.append(f"{kind}: {count}{named}" if count > 1 or examples else kind)
        return tuple(out)


def verify_directory(directory: Path) -> StoreCheck:
    """Check the index in ``directory`` in full; damage is reported, never raised."""
    where = f"faiss index at {directory}"
    for attempt in range(_SNAPSHOT_TRIES):
        try:
            loaded = load_directory(directory)
        except CorruptIndexError as exc:  # a missing index (IndexNotFoundError) propagates
            return StoreCheck(where, 0, None, ("opening",), (str(exc),))
        conn = loaded.conn
        try:
            conn.execute("BEGIN")  # one snapshot: rows, vectors and payload of one generation
            moved_on = not _same_state(sql.read_meta(conn), loaded.meta)
        except sqlite3.DatabaseError:
            break  # reported below, with the other reads of the database
        if not moved_on or attempt == _SNAPSHOT_TRIES - 1:
            break
        # another process saved between loading the vectors and this snapshot: the rows
        # would belong to a newer generation than the vectors, so load again
        conn.execute("COMMIT")
        conn.close()
    problems = _Problems()
    checked = ["opening"]
    live = np.zeros(0, dtype=np.int64)
    tombstones = 0
    try:
        if not conn.in_transaction:
            conn.execute("BEGIN")
        try:
            checked.append("database integrity")
            _check_database(conn, problems)
            live = np.fromiter(
                (row[0] for row in conn.execute("SELECT fid FROM chunks")), dtype=np.int64
            )
            checked.append("vectors")
            tombstones = _check_vectors(loaded, live, problems)
            texts = TextHashCheck()
            _check_rows(loaded, directory, problems, texts)
            if texts.checked_line:
                checked.append(texts.checked_line)
            if texts.problem:
                problems.add_line(texts.problem)
            if loaded.payload.fids:
                checked.append("payload records")
        finally:
            conn.execute("COMMIT")
        checked.append("keyword index")
        note = _check_keyword_index(conn, problems)
        if note:
            checked[-1] += f" ({note})"
    except sqlite3.DatabaseError as exc:
        problems.add(f"the database cannot be read: {exc}")
    finally:
        conn.close()
    return StoreCheck(
        where,
        chunks=len(live),
        vectors=loaded.vectors.ntotal,
        checked=tuple(checked),
        problems=problems.lines(),
        tombstones=tombstones,
    )


def _same_state(now: dict[str, str], loaded: dict[str, str]) -> bool:
    """Whether the database still describes the generation and payload that were loaded."""
    keys = ("generation", "payload_epoch", "payload_fids", "next_id")
    return all(now.get(key) == loaded.get(key) for key in keys)


def _check_database(conn: sqlite3.Connection, problems: _Problems) -> None:
    for (line,) in conn.execute("PRAGMA integrity_check(20)"):
        if line != "ok":
            problems.add(f"database integrity: {line}")


def _check_keyword_index(conn: sqlite3.Connection, problems: _Problems) -> str | None:
    """FTS5's own check of its index against the rows; a note when it cannot run here.

    The check is issued as an INSERT (FTS5's command syntax) although it writes nothing,
    so a read-only directory or another process's open write transaction rules it out.
    """
    try:
        conn.execute("INSERT INTO chunks_fts(chunks_fts, rank) VALUES ('integrity-check', 1)")
    except sqlite3.OperationalError as exc:
        text = str(exc).lower()
        if "readonly" in text or "read-only" in text:
            return "skipped: the directory is read-only"
        if "locked" in text or "busy" in text:
            return "skipped: another process is writing to the index"
        problems.add(f"keyword index: {exc}")
    except sqlite3.DatabaseError:
        problems.add("keyword index: it disagrees with the chunk rows (re-ingest to rebuild it)")
    return None


def _check_vectors(loaded: LoadedIndex, live: np.ndarray, problems: _Problems) -> int:
    """Every vector finite and of unit length, every id unique; returns the tombstones."""
    index = loaded.vectors.index
    ids = faiss.vector_to_array(index.id_map).astype(np.int64)
    unique, counts = np.unique(ids, return_counts=True)
    for fid in unique[counts > 1].tolist():
        problems.add("vector ids held twice", f"fid {fid}")
    missing = live[~np.isin(live, ids)]
    for fid in missing.tolist():
        problems.add("chunks without a vector", f"fid {fid}")
    extra = int((~np.isin(unique, live)).sum())
    graph = loaded.vectors.kind == "hnsw"
    if extra and not graph:  # only a graph keeps vectors of deleted chunks (tombstones)
        problems.add(f"vectors without a chunk in an exact index: {extra}")
    inner = faiss.downcast_index(index.index)
    for start in range(0, len(ids), _VECTOR_BATCH):
        rows = inner.reconstruct_n(start, min(_VECTOR_BATCH, len(ids) - start))
        finite = np.isfinite(rows).all(axis=1)
        norms = np.linalg.norm(np.where(finite[:, None], rows, 0.0), axis=1)
        for offset in np.flatnonzero(~finite).tolist():
            problems.add("vectors holding NaN or infinity", f"fid {int(ids[start + offset])}")
        # zero stays allowed: the store keeps an all-zero embedding as it came
        off_unit = finite & (norms > 0.0) & (np.abs(norms - 1.0) > _UNIT_TOLERANCE)
        for offset in np.flatnonzero(off_unit).tolist():
            problems.add("vectors not of unit length", f"fid {int(ids[start + offset])}")
    return extra if graph else 0


def _check_rows(
    loaded: LoadedIndex, directory: Path, problems: _Problems, texts: TextHashCheck
) -> None:
    """Every chunk row read once: its text re-hashed (ingest's chunks), and its payload
    record, where it has one, equal to it (an empty record defers to the row)."""
    payload, conn = loaded.payload, loaded.conn
    last = 0
    while True:
        rows = conn.execute(
            "SELECT fid FROM chunks WHERE fid > ? ORDER BY fid LIMIT ?", (last, _ROW_BATCH)
        ).fetchall()
        if not rows:
            break
        fids = [int(row[0]) for row in rows]
        last = fids[-1]
        stored = _read_rows(conn, directory, fids, problems)
        texts.add(stored.values())
        for fid in fids:
            chunk = stored.get(fid)
            if chunk is None or fid >= payload.fids:
                continue
            try:
                record = payload.chunk(fid)
            except CorruptIndexError:
                problems.add("payload records that cannot be read", f"fid {fid}")
                continue
            if record is not None and record != chunk:
                problems.add("payload records that differ from their chunk", f"fid {fid}")
    texts.finish()


def _read_rows(
    conn: sqlite3.Connection, directory: Path, fids: list[int], problems: _Problems
) -> dict[int, Chunk]:
    """The chunks of ``fids``; a row that does not decode is named, not raised."""
    try:
        return sql.chunks_by_fid(conn, directory, fids)
    except CorruptIndexError:
        pass
    found: dict[int, Chunk] = {}
    for fid in fids:
        try:
            found.update(sql.chunks_by_fid(conn, directory, [fid]))
        except CorruptIndexError:
            problems.add("chunk rows with unreadable headings or metadata", f"fid {fid}")
    return found
