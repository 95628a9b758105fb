"""The files of a FAISS index directory: manifest, vectors, and crash-safe writes.

A directory holds ``manifest.json`` (what this is, for humans and for a quick format
check), ``chunks.sqlite3`` (the source of truth, including which vectors file is current)
and ``vectors-<generation>.faiss``. Nothing here is ever pickled: the manifest is JSON and
the vectors are FAISS's own binary format.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import re
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import faiss

from sitechat.errors import CorruptIndexError, StoreError
from sitechat.vectorstores.base import EmbedderInfo

__all__ = [
    "DATABASE_NAME",
    "FORMAT_NAME",
    "FORMAT_VERSION",
    "MANIFEST_NAME",
    "Manifest",
    "corrupt",
    "holds_index_files",
    "not_an_index",
    "read_index_file",
    "read_manifest",
    "remove_stale_vectors",
    "retire_generation",
    "utc_now",
    "vectors_path",
    "write_failed",
    "write_index_file",
    "write_manifest",
    "write_vectors",
]

logger = logging.getLogger(__name__)

FORMAT_NAME = "sitechat-faiss"
FORMAT_VERSION = 1
MANIFEST_NAME = "manifest.json"
DATABASE_NAME = "chunks.sqlite3"
_VECTORS_RE = re.compile(r"^vectors-(\d+)\.faiss$")


def utc_now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def corrupt(directory: Path, problem: str) -> CorruptIndexError:
    """The one wording for every kind of damage: what is wrong, and to re-ingest."""
    return CorruptIndexError(
        f"The index at {directory} cannot be read: {problem}. Delete that directory and "
        f"re-ingest (sitechat ingest <URL> --index {directory}), or restore it from a backup."
    )


def not_an_index(directory: Path, problem: str) -> CorruptIndexError:
    """The wording for a path holding something else: never advise deleting it."""
    return CorruptIndexError(
        f"{directory} is not a sitechat index: {problem}. sitechat leaves it untouched: "
        "choose another path for the index (--index or SITECHAT_INDEX), either a new or "
        "empty directory for a new index, or the directory of an existing one."
    )


def holds_index_files(directory: Path) -> bool:
    """Whether ``directory`` holds a file only sitechat writes (its database or vectors),
    so a problem with it is damage to an index rather than a foreign directory."""
    try:
        if (directory / DATABASE_NAME).exists():
            return True
        return any(_VECTORS_RE.match(entry.name) for entry in directory.iterdir())
    except OSError:
        return False


@dataclass(frozen=True, slots=True)
class Manifest:
    """The parsed ``manifest.json``: informational except for format and embedder."""

    embedder: EmbedderInfo
    chunk_count: int
    generation: int
    created_at: str
    updated_at: str
    vector_index: str = "flat"

    def to_json(self) -> dict[str, Any]:
        return {
            "format": FORMAT_NAME,
            "format_version": FORMAT_VERSION,
            "embedder": {"name": self.embedder.name, "dimension": self.embedder.dimension},
            "chunk_count": self.chunk_count,
            "generation": self.generation,
            "vector_index": self.vector_index,
            "created_at": self.created_at,
            "updated_at": self.updated_at,
        }


def read_manifest(directory: Path) -> Manifest:
    """Parse and check ``manifest.json``; any surprise is a :class:`CorruptIndexError`."""
    path = directory / MANIFEST_NAME
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        if not holds_index_files(directory):
            raise not_an_index(directory, f"its {MANIFEST_NAME} is not sitechat's") from None
        raise corrupt(directory, f"{MANIFEST_NAME} is not valid JSON ({exc})") from None
    if not isinstance(data, dict) or data.get("format") != FORMAT_NAME:
        if not holds_index_files(directory):
            raise not_an_index(directory, f"its {MANIFEST_NAME} is not sitechat's")
        raise corrupt(directory, f"{MANIFEST_NAME} does not describe a sitechat FAISS index")
    version = data.get("format_version")
    if version != FORMAT_VERSION:
        raise corrupt(
            directory,
            f"it is in format version {version!r}, and this sitechat reads version "
            f"{FORMAT_VERSION} (upgrade sitechat if the index is newer)",
        )
    try:
        embedder = data["embedder"]
        name, dimension = embedder["name"], embedder["dimension"]
        if not isinstance(name, str) or not isinstance(dimension, int) or dimension < 1:
            raise TypeError("bad embedder")
        return Manifest(
            embedder=EmbedderInfo(name, dimension),
            chunk_count=int(data.get("chunk_count", 0)),
            generation=int(data.get("generation", 0)),
            created_at=str(data.get("created_at", "")),
            updated_at=str(data.get("updated_at", "")),
            vector_index=str(data.get("vector_index", "flat")),
        )
    except (KeyError, TypeError, ValueError, OverflowError):
        # OverflowError: a number too large for JSON's floats ("generation": 1e400 is inf)
        raise corrupt(
            directory, f"{MANIFEST_NAME} has an invalid embedder, chunk count or generation"
        ) from None


def write_manifest(directory: Path, manifest: Manifest) -> None:
    """Replace ``manifest.json`` atomically: readers see the old or the new one, never half."""
    text = json.dumps(manifest.to_json(), indent=2, sort_keys=True) + "\n"
    target = directory / MANIFEST_NAME
    temporary = directory / f".{MANIFEST_NAME}.{os.getpid()}.tmp"
    with open(temporary, "w", encoding="utf-8") as handle:
        handle.write(text)
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(temporary, target)
    fsync_directory(directory)


def fsync_directory(directory: Path) -> None:
    """Make a rename durable; a no-op where directories cannot be opened (Windows)."""
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def vectors_path(directory: Path, generation: int) -> Path:
    return directory / f"vectors-{generation}.faiss"


def write_index_file(index: faiss.Index, path: Path) -> None:
    """Write ``index`` under a temporary name, fsync it, then give it its final name."""
    temporary = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        faiss.write_index(index, str(temporary))
        with open(temporary, "rb+") as handle:
            os.fsync(handle.fileno())
        os.replace(temporary, path)
    except BaseException:
        with contextlib.suppress(OSError):
            temporary.unlink()
        raise
    fsync_directory(path.parent)


def write_failed(directory: Path, what: str, exc: BaseException) -> StoreError:
    """The one wording for a save that could not write its files: the last save stands."""
    return StoreError(
        f"Could not write {what} of the index at {directory} ({exc}). "
        "Check free disk space and permissions; nothing was lost."
    )


def write_vectors(index: faiss.Index, directory: Path, generation: int) -> Path:
    """Write the vectors file of ``generation`` aside (see :func:`write_index_file`)."""
    path = vectors_path(directory, generation)
    try:
        write_index_file(index, path)
    except (OSError, RuntimeError) as exc:
        raise write_failed(directory, "the vectors", exc) from exc
    return path


def retire_generation(directory: Path, old_generation: int, manifest: Manifest) -> None:
    """After a save's commit: remove the previous vectors file and refresh the manifest.

    The data is already durable, so a failure here only leaves a stale file (removed by the
    next save) or a stale manifest (informational), and is logged rather than raised.
    """
    with contextlib.suppress(OSError):
        vectors_path(directory, old_generation).unlink()
    try:
        write_manifest(directory, manifest)
    except OSError as exc:
        logger.warning("could not update %s: %s", directory / MANIFEST_NAME, exc)


def read_index_file(directory: Path, path: Path, dimension: int) -> faiss.IndexIDMap2:
    """Load a vectors file, mapping FAISS's C++ errors to :class:`CorruptIndexError`.

    Raises ``FileNotFoundError`` when the file is gone, also when it vanishes while FAISS
    opens it: a writer in another process may just have switched generations and removed
    it, and the caller retries with the new generation.
    """
    if not path.exists():
        raise FileNotFoundError(path)
    try:
        index = faiss.read_index(str(path))
    except (RuntimeError, MemoryError, ValueError) as exc:
        if not path.exists():  # removed between the check above and FAISS opening it
            raise FileNotFoundError(path) from None
        first_line = str(exc).strip().splitlines()[-1] if str(exc).strip() else type(exc).__name__
        raise corrupt(directory, f"{path.name} is damaged ({first_line[:200]})") from None
    if not isinstance(index, faiss.IndexIDMap2):
        raise corrupt(
            directory, f"{path.name} holds a {type(index).__name__}, not an id-mapped index"
        )
    inner = faiss.downcast_index(index.index)
    if not isinstance(inner, (faiss.IndexFlat, faiss.IndexHNSWFlat)) or (
        inner.metric_type != faiss.METRIC_INNER_PRODUCT
    ):
        raise corrupt(
            directory, f"{path.name} holds a {type(inner).__name__}, not an inner-product index"
        )
    if index.d != dimension:
        raise corrupt(
            directory,
            f"{path.name} holds vectors of dimension {index.d}, the index says {dimension}",
        )
    return index


def remove_stale_vectors(directory: Path, keep: int) -> None:
    """Delete vectors files of other generations and temporary files left by a crash.

    Only the process holding the database's write lock may call this: another writer's
    not-yet-committed generation would otherwise look stale.
    """
    for entry in directory.iterdir():
        match = _VECTORS_RE.match(entry.name)
        stale_vectors = match is not None and int(match.group(1)) != keep
        leftover = entry.name.startswith(".vectors-") and entry.name.endswith(".tmp")
        if stale_vectors or leftover:
            with contextlib.suppress(OSError):
                entry.unlink()
