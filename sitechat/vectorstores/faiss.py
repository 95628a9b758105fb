"""The embedded vector store: FAISS for vectors, SQLite for chunks and BM25, in one directory.

On disk (no pickle anywhere)::

    manifest.json            format name and version, embedder, counts, timestamps
    chunks.sqlite3           chunk rows, FTS5 keyword index, id counter, current generation
    vectors-<gen>.faiss      IndexIDMap2 over IndexFlatIP, or over IndexHNSWFlat past
                             ``hnsw_threshold`` chunks (see ``_faiss_vectors``)
    payload-<epoch>.bin      a derived, memory-mapped copy of the chunks that searches
    payload-<epoch>.ends     read their hits from (see ``_faiss_payload``)

Persisting appends the new chunks to the payload files and writes the next
``vectors-<gen+1>.faiss`` aside, fsyncs them, then commits the SQLite transaction that
holds every pending chunk change, the new generation number *and* the payload's valid
lengths: that commit is the switch. Only then is the old vectors file removed and the
manifest rewritten (atomically). A crash at any point leaves the last committed state
loadable; the database is always the source of truth for which files, and how much of
them, are current.

Concurrency, within one process: one SQLite connection, used under a short data lock by
every thread, so readers see the writer's pending rows consistently with the in-memory
vectors; a second lock lets one writer (upsert, delete, persist) work at a time. Reads run
on the event loop when the lock is free and the work is small, else in a worker thread,
so a search never blocks the loop behind a big upsert. Across processes: any number of
readers, one writer (SQLite's write lock, held from the first change to the persist); a
reader sees the vectors of the generation current when it opened.

Slow work never holds the data lock: building a graph when the store crosses the HNSW
threshold, rebuilding one that carries too many tombstones, and writing the vectors file
all happen under the writer lock only (no one else can change the vectors then, and
searches only read them); the data lock is taken just to swap the new index in.

Settings (``SITECHAT_FAISS__*``): ``HNSW_THRESHOLD`` (50000 chunks), ``HNSW_M`` (32),
``HNSW_EF_CONSTRUCTION`` (80), ``HNSW_EF_SEARCH`` (64), ``REBUILD_RATIO`` (0.2).
"""

from __future__ import annotations

import asyncio
import contextlib
import sqlite3
import threading
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, ClassVar, TypeVar

import numpy as np
import numpy.typing as npt
from pydantic import BaseModel

from sitechat.config import load_provider_config
from sitechat.errors import InvalidInputError, StoreError
from sitechat.models import Chunk, SearchHit
from sitechat.vectorstores import _faiss_files as files
from sitechat.vectorstores import _faiss_payload as payloads
from sitechat.vectorstores import _faiss_sql as sql
from sitechat.vectorstores._faiss_hits import query_row
from sitechat.vectorstores._faiss_open import (
    LoadedIndex,
    directory_identity,
    discard_if_empty,
    open_directory,
)
from sitechat.vectorstores._faiss_reads import HitReader, KeywordPruner
from sitechat.vectorstores._faiss_txn import WriteTransaction
from sitechat.vectorstores._faiss_vectors import (
    HNSW_ADD_SLICE,
    FaissConfig,
    IndexParams,
    VectorIndex,
    flat_index,
)
from sitechat.vectorstores._faiss_verify import verify_directory
from sitechat.vectorstores._rows import check_chunk_text, storable, storable_filter, unit_rows
from sitechat.vectorstores.base import EmbedderInfo, PageSizes, StoreCheck, VectorStore

if TYPE_CHECKING:
    from sitechat.config import Settings

__all__ = ["FaissConfig", "FaissVectorStore"]

T = TypeVar("T")

# Below these sizes a read takes a millisecond or two: less than a thread hop on a busy host.
_INLINE_SEARCH_FLOATS = 8_000_000
_INLINE_KEYWORD_CHUNKS = 5_000
# Upserts are applied in slices so a concurrent search waits for one slice, not all.
_UPSERT_SLICE = 512


class FaissVectorStore(VectorStore):
    """A vector store in a local directory; see the module docstring for format and locking.

    Open it with :meth:`open` (from settings) or :meth:`open_path`; close it with
    :meth:`aclose`, which persists.
    """

    name: ClassVar[str] = "faiss"
    supports_keyword_search: ClassVar[bool] = True
    config_class: ClassVar[type[BaseModel] | None] = FaissConfig

    def __init__(self, directory: Path, loaded: LoadedIndex) -> None:
        """Use :meth:`open` or :meth:`open_path`; this only wires already-checked parts."""
        self._directory = directory
        self._conn = loaded.conn
        self._txn = WriteTransaction(self._conn, self._directory)
        self._vectors = loaded.vectors
        # bytes of payload records whose chunks were deleted: past half, persist compacts
        self._payload_dead = loaded.payload.state.dead if loaded.payload.state else 0
        self._embedder = loaded.embedder
        self._generation = int(loaded.meta["generation"])
        self._next_id = int(loaded.meta["next_id"])
        self._created_at = loaded.meta.get("created_at", "")
        self._read_only = loaded.read_only
        # which directory this open created, to tell it from one renamed to its name later
        self._created = directory_identity(directory) if loaded.created else None
        self._in_given_directory = loaded.in_given_directory
        self._dirty = False
        self._closed = False
        self._data_lock = threading.Lock()
        self._write_lock = threading.Lock()
        self._reader = HitReader(loaded.conn, directory, loaded.payload)
        self._pruner = KeywordPruner(loaded.conn)
        self._changes = 0  # bumped by every write: invalidates the keyword frequencies

    # ------------------------------------------------------------------ opening

    @classmethod
    async def open(
        cls, settings: Settings, embedder: EmbedderInfo | None, *, create: bool
    ) -> FaissVectorStore:
        """Open the directory ``settings.index`` (see :meth:`open_path`), with the
        ``SITECHAT_FAISS__*`` settings."""
        config = load_provider_config(FaissConfig, cls.name, settings.env_file)
        return await cls.open_path(settings.index, embedder, create=create, config=config)

    @classmethod
    async def open_path(
        cls,
        path: str | Path,
        embedder: EmbedderInfo | None,
        *,
        create: bool = False,
        config: FaissConfig | None = None,
    ) -> FaissVectorStore:
        """Open the index in directory ``path``, creating it for ``embedder`` if asked.

        ``embedder=None`` adopts the recorded embedder. Raises ``IndexNotFoundError``,
        ``EmbedderMismatchError`` or ``CorruptIndexError`` with what to do next, and
        ``InvalidInputError`` for an empty ``path`` (which would mean the current directory).
        """
        if not str(path).strip():  # Path("") is ".", so only an empty string is refused
            raise InvalidInputError(
                f"The index path is empty ({path!r}). Name a directory for the index, e.g. "
                "'sitechat-index'; use '.' for the current directory."
            )
        params = (config or FaissConfig()).index_params()
        return await asyncio.to_thread(cls._open_sync, Path(path), embedder, create, params)

    @classmethod
    def _open_sync(
        cls,
        directory: Path,
        embedder: EmbedderInfo | None,
        create: bool,
        params: IndexParams | None = None,
    ) -> FaissVectorStore:
        return cls(directory, open_directory(directory, embedder, create, params))

    # ------------------------------------------------------------------ properties

    @property
    def embedder(self) -> EmbedderInfo:
        return self._embedder

    @property
    def path(self) -> Path:
        """The index directory."""
        return self._directory

    @property
    def created(self) -> bool:
        """Whether opening this store created its index directory."""
        return self._created is not None

    @property
    def vector_index(self) -> str:
        """The current vector layout: ``"flat"`` (exact) or ``"hnsw"`` (approximate)."""
        return self._vectors.kind

    # ------------------------------------------------------------------ writes

    async def upsert(self, chunks: Sequence[Chunk], vectors: Sequence[Sequence[float]]) -> None:
        """Insert or replace ``chunks`` by id; replaced chunks get fresh FAISS ids."""
        if len(chunks) != len(vectors):
            raise InvalidInputError(
                f"upsert got {len(chunks)} chunks but {len(vectors)} vectors; pass one vector "
                "per chunk, in the same order."
            )
        if not chunks:
            return
        check_chunk_text(chunks)
        matrix = self._unit_rows(vectors)
        self._check_writable()
        await asyncio.to_thread(self._upsert_sync, list(chunks), matrix)

    async def delete(self, ids: Sequence[str]) -> int:
        ids = [i for i in ids if storable(i)]  # a lone surrogate names no stored chunk
        if not ids:
            return 0
        self._check_writable()
        return await asyncio.to_thread(self._delete_sync, list(ids), None)

    async def delete_by_url(self, url: str) -> int:
        self._check_writable()
        if not storable(url):
            return 0
        return await asyncio.to_thread(self._delete_sync, None, url)

    async def persist(self) -> None:
        """Write pending changes durably; see the module docstring for the sequence."""
        self._check_open()
        self._txn.check()
        if self._dirty:
            await asyncio.to_thread(self._persist_sync)

    async def verify(self) -> StoreCheck:
        """Check the index as persisted on disk, in full: the database and its keyword
        index, every vector, every chunk row (the text of ingest's chunks against their
        content hash), every payload record (see ``_faiss_verify``). Changes not
        yet persisted are not part of it: call :meth:`persist` first to include them.
        Searches and writes go on meanwhile; at 100k chunks it takes about a second."""
        self._check_open()
        return await asyncio.to_thread(verify_directory, self._directory)

    async def aclose(self) -> None:
        """Persist, then release the database connection and the vectors.

        After a write that lost the pending changes there is nothing to persist: closing
        then leaves the files as they were after the last save.
        """
        if self._closed:
            return
        if not self._txn.lost:
            await self.persist()
        await asyncio.to_thread(self._close_sync)

    async def discard_if_empty(self) -> bool:
        """After :meth:`aclose`: remove the index directory if opening this store created
        it and, on disk now, nothing was ever stored in it and no other process has it
        open (another may have filled it meanwhile). Returns whether it was removed."""
        if self._created is None or not self._closed:
            return False
        return await asyncio.to_thread(
            discard_if_empty,
            self._directory,
            self._created,
            keep_directory=self._in_given_directory,
        )

    def _close_sync(self) -> None:
        with self._write_lock, self._data_lock:
            if not self._closed:
                self._closed = True
                self._conn.close()  # the last connection checkpoints and removes the WAL
                self._vectors = VectorIndex(flat_index(1), self._vectors.params)
                self._reader.payload = payloads.Payload(self._directory, None)

    def _upsert_sync(self, chunks: list[Chunk], matrix: npt.NDArray[np.float32]) -> None:
        latest = {chunk.id: position for position, chunk in enumerate(chunks)}  # last one wins
        if len(latest) != len(chunks):
            chunks = [chunks[p] for p in latest.values()]
            matrix = matrix[list(latest.values())]
        with self._write_lock:
            self._check_open()
            if self._vectors.needs_graph(len(chunks)):
                self._swap_in(self._vectors.rebuilt(extra=len(chunks)))
            step = HNSW_ADD_SLICE if self._vectors.kind == "hnsw" else _UPSERT_SLICE
            for start in range(0, len(chunks), step):
                part = chunks[start : start + step]
                with self._data_lock, sql.sqlite_errors(self._directory), self._txn.guarded():
                    self._check_open()
                    self._upsert_slice(part, matrix[start : start + step])

    def _upsert_slice(self, chunks: list[Chunk], matrix: npt.NDArray[np.float32]) -> None:
        self._begin_write()
        first_id = self._next_id
        old_ids = sql.replace_rows(self._conn, chunks, first_id)
        # the rows are in; FAISS cannot fail on valid input, so both halves stay in step
        self._payload_dead += self._reader.payload.record_bytes(old_ids)
        self._next_id = first_id + len(chunks)
        self._vectors.remove(old_ids)
        self._vectors.add(matrix, np.arange(first_id, self._next_id, dtype=np.int64))
        self._dirty = True
        self._changes += 1
        self._txn.wrote()

    def _swap_in(self, vectors: VectorIndex) -> None:
        """Replace the vectors with an equivalent index built aside (caller holds the writer
        lock, so nothing changed meanwhile); readers wait only for the swap itself."""
        with self._data_lock:
            self._check_open()
            self._vectors = vectors
            self._dirty = True

    def _delete_sync(self, chunk_ids: Sequence[str] | None, url: str | None) -> int:
        with (
            self._write_lock,
            self._data_lock,
            sql.sqlite_errors(self._directory),
            self._txn.guarded(),
        ):
            self._check_open()
            fids = sql.fids_where(self._conn, chunk_ids=chunk_ids, url=url)
            if not fids:
                return 0
            self._begin_write()
            sql.delete_rows(self._conn, fids)
            self._payload_dead += self._reader.payload.record_bytes(fids)
            self._vectors.remove(fids)
            self._dirty = True
            self._changes += 1
            self._txn.wrote()
            return len(fids)

    def _begin_write(self) -> None:
        """Start (or continue) the write transaction; the caller holds the locks."""
        self._txn.begin(self._generation)

    def _persist_sync(self) -> None:
        with self._write_lock:
            if not self._dirty or self._closed:
                return
            if self._vectors.needs_rebuild():
                self._swap_in(self._vectors.rebuilt())
            # No copy needed: writers are locked out and searches only read the index.
            vectors = self._vectors
            old_generation, new_generation = self._generation, self._generation + 1
            old_payload = self._reader.payload.state
            # still holding the database write lock: no other writer has files in flight
            files.remove_stale_vectors(self._directory, keep=old_generation)
            payloads.remove_stale_payloads(
                self._directory, keep=old_payload.epoch if old_payload else None
            )
            payload = self._write_payload()
            new_epoch = payload.state.epoch if payload.state else 0
            new_path = files.vectors_path(self._directory, new_generation)
            try:
                files.write_vectors(vectors.index, self._directory, new_generation)
                self._commit_generation(new_generation, vectors.live, payload)
            except BaseException:
                with contextlib.suppress(OSError):
                    new_path.unlink()
                if old_payload is None or new_epoch != old_payload.epoch:
                    payloads.remove_payload(self._directory, new_epoch)
                raise
            self._finish_generation(old_generation, vectors.live)
            if old_payload is not None and new_epoch != old_payload.epoch:
                payloads.remove_payload(self._directory, old_payload.epoch)

    def _write_payload(self) -> payloads.Payload:
        """Append the chunks added since the last persist to the payload files (or write a
        fresh epoch); the caller holds the writer lock, so the rows cannot change."""
        try:
            return payloads.write_payload(
                self._directory,
                self._reader.payload,
                self._next_id,
                self._rows,
                self._payload_dead,
            )
        except OSError as exc:
            raise files.write_failed(self._directory, "the payload file", exc) from exc

    def _rows(self, first: int, upto: int, limit: int) -> list[sql.Row]:
        """A slice of rows for the payload writer, read under the data lock."""
        with self._data_lock, sql.sqlite_errors(self._directory):
            self._check_open()
            return sql.rows_between(self._conn, first, upto, limit)

    def _commit_generation(self, generation: int, count: int, payload: payloads.Payload) -> None:
        """The switch: one commit makes the chunk changes, the new vectors file and the
        payload's new length current; readers move to the new payload in the same step."""
        assert payload.state is not None  # a written payload always has one
        with self._data_lock, sql.sqlite_errors(self._directory):
            self._begin_write()
            sql.write_meta(
                self._conn,
                {
                    "generation": str(generation),
                    "updated_at": files.utc_now(),
                    "chunk_count": str(count),
                    **payload.state.to_meta(),
                },
            )
            self._conn.execute("COMMIT")
            self._txn.committed()
            self._generation = generation
            self._reader.payload = payload
            self._payload_dead = payload.state.dead
            self._dirty = False

    def _finish_generation(self, old_generation: int, count: int) -> None:
        """Tidy up after the switch; a crash here only leaves a stale file or manifest."""
        manifest = files.Manifest(
            self._embedder, count, self._generation, self._created_at, files.utc_now(),
            self._vectors.kind,
        )  # fmt: skip
        files.retire_generation(self._directory, old_generation, manifest)

    # ------------------------------------------------------------------ reads

    async def search(
        self, vector: Sequence[float], k: int = 5, where: Mapping[str, str] | None = None
    ) -> list[SearchHit]:
        """Cosine similarity (higher is better) of the ``k`` nearest chunks passing ``where``.

        The common case (no filter, the lock free, a graph or a small flat index) runs
        right here rather than through ``_read``: at 100k chunks the whole search takes
        ~170 µs, and every wrapper is a visible share of that.
        """
        query = query_row(vector, self._embedder)
        if k < 1 or query is None or not storable_filter(where):
            return []
        row, scale = query
        vectors = self._vectors
        inline = (
            vectors.kind == "hnsw"
            or vectors.ntotal * self._embedder.dimension <= _INLINE_SEARCH_FLOATS
        )
        if inline and not self._closed and self._data_lock.acquire(blocking=False):
            try:
                return self._guarded_search(row, scale, k, where)
            finally:
                self._data_lock.release()
        return await self._read(lambda: self._guarded_search(row, scale, k, where), inline=False)

    async def keyword_search(
        self, query: str, k: int = 5, where: Mapping[str, str] | None = None
    ) -> list[SearchHit]:
        """BM25 over title, headings and text (score ``-bm25``: higher is better).

        Words found in more than a third of the chunks are left out of the query when
        rarer ones remain: BM25 gives them almost no weight (none past half), yet
        scoring every chunk they occur in is most of the work ("python" on a Python
        documentation site matches every chunk and would take 11 ms of a 12 ms query).
        """
        words = sql.query_words(query)
        if k < 1 or not words or not storable_filter(where):
            return []
        inline = self._vectors.live <= _INLINE_KEYWORD_CHUNKS
        return await self._read(lambda: self._keyword_locked(words, k, where), inline=inline)

    async def get(self, ids: Sequence[str]) -> list[Chunk]:
        ids = [i for i in ids if storable(i)]
        if not ids:
            return []
        return await self._read(lambda: sql.chunks_by_id(self._conn, self._directory, ids))

    async def chunk_hashes(self, url: str | None = None) -> dict[str, str]:
        if url is not None and not storable(url):
            return {}
        return await self._read(lambda: sql.chunk_hashes(self._conn, url))

    async def urls(self) -> list[str]:
        return await self._read(lambda: sql.urls(self._conn))

    async def count(self) -> int:
        return await self._read(lambda: self._vectors.live)

    async def page_sizes(self, urls: Sequence[str]) -> PageSizes:
        """Chunks per page from the database, and the vectors this store holds as its total.
        The database shows the rows another process saved since this one opened the index,
        its vectors do not: the total is then at least the pages' own sum."""
        pages = list(dict.fromkeys(u for u in urls if storable(u)))

        def sizes() -> PageSizes:
            counts = sql.page_chunk_counts(self._conn, pages)
            return PageSizes(counts, max(self._vectors.live, sum(counts.values())))

        return await self._read(sizes)

    async def _read(self, work: Callable[[], T], *, inline: bool = True) -> T:
        """Run ``work`` under the data lock: here if it is free and cheap, else in a thread."""
        self._check_open()
        if inline and self._data_lock.acquire(blocking=False):
            try:
                return self._guarded(work)
            finally:
                self._data_lock.release()
        return await asyncio.to_thread(self._locked, work)

    def _locked(self, work: Callable[[], T]) -> T:
        with self._data_lock:
            return self._guarded(work)

    def _guarded(self, work: Callable[[], T]) -> T:
        self._check_open()
        try:
            return work()
        except sqlite3.DatabaseError as exc:
            sql.raise_sqlite_error(self._directory, exc)

    def _guarded_search(
        self,
        query: npt.NDArray[np.float32],
        scale: float,
        k: int,
        where: Mapping[str, str] | None,
    ) -> list[SearchHit]:
        """The search itself (caller holds the data lock); ``scale`` turns the query's
        inner products into cosines."""
        self._check_open()
        try:
            vectors = self._vectors
            allowed = None
            if where:
                if vectors.live == 0:
                    return []
                allowed = sql.fids_where(self._conn, where=where)
            fids, scores = vectors.search(query, k, allowed)
            return self._reader.hits(fids, scores, scale)
        except sqlite3.DatabaseError as exc:
            sql.raise_sqlite_error(self._directory, exc)

    def _keyword_locked(
        self, words: list[str], k: int, where: Mapping[str, str] | None
    ) -> list[SearchHit]:
        informative = self._pruner.informative(words, self._vectors.live, self._changes)
        ranked = sql.keyword_hits(self._conn, sql.match_expression(informative), k, where)
        return self._reader.hits([f for f, _ in ranked], [s for _, s in ranked])

    # ------------------------------------------------------------------ checks

    def _unit_rows(self, vectors: Sequence[Sequence[float]]) -> npt.NDArray[np.float32]:
        return unit_rows(vectors, self._embedder)

    def _check_open(self) -> None:
        if self._closed:
            raise StoreError(f"The index at {self._directory} is closed; open it again to use it.")

    def _check_writable(self) -> None:
        self._check_open()
        self._txn.check()
        if self._read_only:
            raise StoreError(
                f"The index at {self._directory} is on a read-only file system; copy it to a "
                "writable directory to change it."
            )

    def __repr__(self) -> str:
        return f"FaissVectorStore({str(self._directory)!r}, embedder={self._embedder.name!r})"
