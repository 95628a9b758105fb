"""Creating and loading a FAISS index directory, with every check a damaged one fails.

Creation builds a complete empty index in a hidden sibling directory and renames it into
place, so a crash mid-creation never leaves a half-made index under the user's name.
Loading reads the current generation from the database and the matching vectors and
payload files, retrying if a writer in another process switches generations meanwhile. A
graph (HNSW) file may hold more vectors than the database has chunks: those are tombstones
of deleted chunks, which the loaded index keeps out of results (see ``_faiss_vectors``).
The payload files' absence is tolerated (reads then use SQLite); their disagreement with
the database is not.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import shutil
import sqlite3
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path

import faiss
import numpy as np

from sitechat.errors import EmbedderMismatchError, IndexNotFoundError, StoreError
from sitechat.vectorstores import _faiss_files as files
from sitechat.vectorstores import _faiss_sql as sql
from sitechat.vectorstores._faiss_payload import Payload, load_payload, missing_payload
from sitechat.vectorstores._faiss_vectors import IndexParams, VectorIndex, flat_index
from sitechat.vectorstores.base import EmbedderInfo

__all__ = [
    "LoadedIndex",
    "create_directory",
    "directory_identity",
    "discard_if_empty",
    "is_writable",
    "load_directory",
    "open_directory",
]

_OPEN_RETRIES = 3


@dataclass(frozen=True, slots=True)
class LoadedIndex:
    """The checked parts of an index directory, ready to become a store."""

    conn: sqlite3.Connection
    vectors: VectorIndex
    payload: Payload
    embedder: EmbedderInfo
    meta: dict[str, str]
    read_only: bool
    created: bool = False
    """Whether this open created the directory (not another process, nor an earlier run)."""
    in_given_directory: bool = False
    """Whether it was created where the user had made an empty directory for it."""


def open_directory(
    directory: Path, embedder: EmbedderInfo | None, create: bool, params: IndexParams | None
) -> LoadedIndex:
    """Load the index in ``directory``, first creating it (empty, exact search) if asked.

    ``embedder=None`` adopts the recorded embedder; any other must match it. Raises
    ``IndexNotFoundError``, ``EmbedderMismatchError`` or ``CorruptIndexError``, each saying
    what to do next.
    """
    if not (directory / files.MANIFEST_NAME).exists():
        if directory.exists() and not directory.is_dir():
            raise files.not_an_index(directory, "it is a file, not a directory")
        if directory.exists() and any(directory.iterdir()):
            if files.holds_index_files(directory):
                raise files.corrupt(directory, f"{files.MANIFEST_NAME} is missing")
            raise files.not_an_index(
                directory, f"it holds other files and no {files.MANIFEST_NAME}"
            )
        if not create or embedder is None:
            raise IndexNotFoundError(
                f"No sitechat index at {directory}. Build one first: "
                f"sitechat ingest <URL> --index {directory}"
            )
        # a new index starts exact; it moves to HNSW when it grows (``_faiss_vectors``)
        given = directory.is_dir()  # empty, checked above: made for the index by the user
        try:
            created = create_directory(directory, embedder, flat_index)
        except OSError as exc:
            raise StoreError(
                f"Cannot create an index at {directory} ({exc.strerror or exc}). Choose a "
                "directory you can write to (a read-only file system or a folder of another "
                "user cannot hold a new index)."
            ) from None
    else:
        created = given = False
    loaded = load_directory(directory, params)
    recorded = loaded.embedder
    if embedder is not None and embedder != recorded and create and _holds_nothing(loaded):
        # an index that never received a chunk (a first ingest that failed, say with an
        # unreachable embedding API) is re-created for the embedder configured now
        loaded.conn.close()
        _replace_empty(directory, embedder)
        loaded = load_directory(directory, params)
        recorded = loaded.embedder
    if embedder is not None and embedder != recorded:
        loaded.conn.close()
        raise EmbedderMismatchError(
            f"The index at {directory} was built with the embedder '{recorded.name}' "
            f"(dimension {recorded.dimension}), but '{embedder.name}' (dimension "
            f"{embedder.dimension}) is configured. Re-ingest into a new index "
            "(--index NEW_DIR), or configure the original embedder."
        )
    return replace(loaded, created=True, in_given_directory=given) if created else loaded


def _holds_nothing(loaded: LoadedIndex) -> bool:
    """Whether the index has never stored a chunk: none live, and no id ever handed out."""
    if loaded.vectors.live or loaded.read_only:
        return False
    row = loaded.conn.execute("SELECT count(*) FROM chunks").fetchone()
    return int(row[0]) == 0 and int(loaded.meta.get("next_id", "1")) <= 1


def _replace_empty(directory: Path, embedder: EmbedderInfo) -> None:
    """Swap an empty index for a new one: the old one is renamed aside first, so a crash
    leaves either it, no index (the next ingest creates one), or the new one."""
    aside = Path(tempfile.mkdtemp(prefix=f".{directory.name}.replaced-", dir=directory.parent))
    os.replace(directory, aside / directory.name)
    create_directory(directory, embedder, flat_index)
    shutil.rmtree(aside, ignore_errors=True)


def directory_identity(directory: Path) -> tuple[int, int]:
    """The device and inode of ``directory``: another directory renamed to its name differs."""
    info = directory.stat()
    return info.st_dev, info.st_ino


def discard_if_empty(
    directory: Path, identity: tuple[int, int], *, keep_directory: bool = False
) -> bool:
    """Remove the index in ``directory`` if it is still the directory ``identity`` names and,
    on disk now, has never stored a chunk and is open in no other process.
    ``keep_directory`` leaves an empty directory in its place: the user had made one.

    The last checks and the removal run under an exclusive lock on its database, which no
    other process can take or read through meanwhile. Any doubt leaves the directory: a
    stray empty index is a nuisance, another process's finished one deleted is lost data.
    Returns whether it was removed.
    """
    database = directory / files.DATABASE_NAME
    try:
        if directory_identity(directory) != identity or not _only_empty_index_files(directory):
            return False
        uri = database.resolve().as_uri() + "?mode=rw"  # never create a database here
        conn = sqlite3.connect(uri, uri=True, isolation_level=None, timeout=0)
    except (OSError, sqlite3.Error):
        return False
    try:
        # Leaving WAL mode needs every other connection closed, and in rollback mode an
        # exclusive transaction keeps out readers too: from here no one else has it open.
        if conn.execute("PRAGMA journal_mode=DELETE").fetchone()[0] != "delete":
            return False
        conn.execute("BEGIN EXCLUSIVE")
        if not _never_stored(conn) or directory_identity(directory) != identity:
            conn.execute("ROLLBACK")
            conn.execute("PRAGMA journal_mode=WAL")  # as every writer sets it anyway
            return False
        aside = Path(tempfile.mkdtemp(prefix=f".{directory.name}.discarded-", dir=directory.parent))
        try:
            os.replace(directory, aside / directory.name)
        except OSError:
            aside.rmdir()
            raise
    except (OSError, sqlite3.Error, ValueError):
        return False
    finally:
        conn.close()
    if keep_directory:
        with contextlib.suppress(OSError):
            directory.mkdir()
    shutil.rmtree(aside, ignore_errors=True)
    return True


def _only_empty_index_files(directory: Path) -> bool:
    """Whether ``directory`` holds no more than a new, closed index does."""
    empty = {files.MANIFEST_NAME, files.DATABASE_NAME, files.vectors_path(directory, 0).name}
    return set(os.listdir(directory)) <= empty


def _never_stored(conn: sqlite3.Connection) -> bool:
    meta = sql.read_meta(conn)
    chunks = int(conn.execute("SELECT count(*) FROM chunks").fetchone()[0])
    return chunks == 0 and meta.get("generation") == "0" and int(meta.get("next_id", "1")) <= 1


def _new_staging_directory(directory: Path) -> Path:
    """An empty directory beside ``directory`` to build it in, with the permissions the
    umask gives (``mkdtemp`` would make it 0700, and the renamed index unreadable to the
    other users a container image or a shared server runs readers as)."""
    while True:
        staging = directory.parent / f".{directory.name}.creating-{secrets.token_hex(6)}"
        try:
            staging.mkdir()
        except FileExistsError:
            continue
        return staging


def create_directory(
    directory: Path, embedder: EmbedderInfo, new_index: Callable[[int], faiss.Index]
) -> bool:
    """Build a complete empty index aside, then rename it into place in one step.

    Returns False when another process created the same index first (theirs is kept)."""
    directory.parent.mkdir(parents=True, exist_ok=True)
    staging = _new_staging_directory(directory)
    try:
        now = files.utc_now()
        conn = sql.connect(staging, read_only=False)
        try:
            sql.create_schema(
                conn,
                {
                    "format": files.FORMAT_NAME,
                    "format_version": str(files.FORMAT_VERSION),
                    "embedder_name": embedder.name,
                    "embedder_dimension": str(embedder.dimension),
                    "next_id": "1",
                    "generation": "0",
                    "created_at": now,
                    "updated_at": now,
                },
            )
        finally:
            conn.close()
        files.write_index_file(new_index(embedder.dimension), files.vectors_path(staging, 0))
        files.write_manifest(staging, files.Manifest(embedder, 0, 0, now, now))
        with contextlib.suppress(OSError):
            directory.rmdir()  # an empty directory the user made for us
        try:
            staging.rename(directory)
        except OSError:
            if not (directory / files.MANIFEST_NAME).exists():
                raise
            return False  # another process created the same index first: use theirs
        files.fsync_directory(directory.parent)
        return True
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def load_directory(directory: Path, params: IndexParams | None = None) -> LoadedIndex:
    """Open and check an existing index; any damage is a ``CorruptIndexError``."""
    manifest = files.read_manifest(directory)
    if not (directory / files.DATABASE_NAME).is_file():
        raise files.corrupt(directory, f"{files.DATABASE_NAME} is missing")
    read_only = not is_writable(directory)
    with sql.sqlite_errors(directory):
        conn = sql.connect(directory, read_only=read_only)
    try:
        return _load_with(directory, conn, manifest, read_only, params or IndexParams())
    except BaseException:
        conn.close()
        raise


def is_writable(directory: Path) -> bool:
    return os.access(directory, os.W_OK)


def _load_with(
    directory: Path,
    conn: sqlite3.Connection,
    manifest: files.Manifest,
    read_only: bool,
    params: IndexParams,
) -> LoadedIndex:
    payload_gone: str | None = None
    for _ in range(_OPEN_RETRIES):
        with sql.sqlite_errors(directory):
            conn.execute("BEGIN")
            try:
                meta = sql.read_meta(conn)
                embedder = _check_meta(directory, meta, manifest)
                try:
                    payload = load_payload(directory, conn, meta)
                except FileNotFoundError:
                    epoch = meta.get("payload_epoch")
                    if payload_gone != epoch:  # a writer may have just replaced it: look again
                        payload_gone = epoch
                        continue
                    payload = missing_payload(directory, meta)
                count = conn.execute("SELECT count(*) FROM chunks").fetchone()[0]
                path = files.vectors_path(directory, int(meta["generation"]))
                try:
                    index = files.read_index_file(directory, path, embedder.dimension)
                except FileNotFoundError:
                    continue  # a writer switched generations under us: read the new one
                vectors = _checked_vectors(directory, conn, index, count, params, path.name)
            finally:
                conn.execute("COMMIT")
        return LoadedIndex(conn, vectors, payload, embedder, meta, read_only)
    raise files.corrupt(directory, "the current vectors file is missing")


def _checked_vectors(
    directory: Path,
    conn: sqlite3.Connection,
    index: faiss.IndexIDMap2,
    count: int,
    params: IndexParams,
    name: str,
) -> VectorIndex:
    """The loaded vectors, after checking they cover exactly the database's chunks."""
    if index.ntotal == count:
        return VectorIndex(index, params)
    graph = isinstance(faiss.downcast_index(index.index), faiss.IndexHNSW)
    if graph and index.ntotal > count:
        live = np.fromiter(
            (row[0] for row in conn.execute("SELECT fid FROM chunks")), dtype=np.int64, count=count
        )
        try:
            return VectorIndex.loaded(index, params, live)
        except ValueError as exc:
            raise files.corrupt(directory, f"{name} disagrees with the database: {exc}") from None
    raise files.corrupt(
        directory, f"{name} holds {index.ntotal} vectors but the database {count} chunks"
    )


def _check_meta(directory: Path, meta: dict[str, str], manifest: files.Manifest) -> EmbedderInfo:
    """The embedder recorded in the database, after checking the database is one of ours."""
    if meta.get("format") != files.FORMAT_NAME or meta.get("format_version") != str(
        files.FORMAT_VERSION
    ):
        raise files.corrupt(
            directory, f"{files.DATABASE_NAME} is not a sitechat FAISS index database"
        )
    try:
        embedder = EmbedderInfo(meta["embedder_name"], int(meta["embedder_dimension"]))
        int(meta["generation"]), int(meta["next_id"])
    except (KeyError, ValueError):
        raise files.corrupt(directory, f"{files.DATABASE_NAME} lacks its bookkeeping") from None
    if embedder != manifest.embedder:
        raise files.corrupt(directory, f"{files.MANIFEST_NAME} and {files.DATABASE_NAME} disagree")
    return embedder
