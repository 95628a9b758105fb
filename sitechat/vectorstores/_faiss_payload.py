"""Search hits read from a memory-mapped payload file instead of SQLite.

Reading ten chunks back from SQLite cost more than the HNSW search that found them
(~9 µs a row: a statement, B-tree descents, JSON-decoded headings, then a ``Chunk``),
so the store keeps a second, derived copy of every chunk's fields in a compact file that
a search slices directly (~1.5 µs a row). SQLite stays the source of truth: the payload is
rebuilt from it whenever it is missing or too wasteful, and anything it cannot answer is
read from SQLite.

Two files per *epoch* ``e``::

    payload-<e>.bin    records, one per chunk, in FAISS-id (fid) order: UTF-8 fields
                       joined by NUL (fid, id, url, title, anchor or "", text,
                       content_hash, page_hash, headings joined by US, metadata
                       key US value US ...)
    payload-<e>.ends   little-endian int64 per fid ``f`` from 0: where the record of
                       ``f`` ends; it starts where ``f - 1``'s ends. An empty record
                       means "ask SQLite": deleted before it was written, or a chunk
                       this encoding cannot carry (a NUL or US character in a field,
                       an empty anchor, a heading path of one empty heading).

A fid is never reused and a chunk never changes under its fid, so records are immutable:
a persist only **appends** the fids assigned since the last one, and the database's
``meta`` (``payload_epoch``, ``payload_fids``, ``payload_bytes``) commits how much of the
files is valid in the same transaction that switches the vectors generation. Bytes past
the committed lengths are leftovers of a crash and are cut off by the next writer; readers
never look past the lengths they opened with. When deleted chunks' records pass half the
file (``payload_dead``), the next persist writes a fresh epoch instead, like a vectors
generation, and removes the old files once the new epoch is committed.

Each record starts with its own fid, so a payload that does not belong to the database
(restored from elsewhere, damaged) is caught: sampled against SQLite on open, and on
every read.
"""

from __future__ import annotations

import contextlib
import json
import logging
import mmap
import os
import re
import sqlite3
import sys
from array import array
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import MappingProxyType
from typing import Any

import numpy as np

from sitechat.errors import CorruptIndexError
from sitechat.models import Chunk, SearchHit
from sitechat.vectorstores._faiss_files import DATABASE_NAME, fsync_directory
from sitechat.vectorstores._faiss_hits import new_chunk, new_hit

__all__ = [
    "Payload",
    "PayloadState",
    "RowFetcher",
    "data_path",
    "encode_record",
    "ends_path",
    "load_payload",
    "missing_payload",
    "payload_corrupt",
    "remove_payload",
    "remove_stale_payloads",
    "write_payload",
]

logger = logging.getLogger(__name__)

FIELD = "\x00"
ITEM = "\x1f"
_FIELDS = 10
_PAYLOAD_RE = re.compile(r"^payload-(\d+)\.(bin|ends)$")
_WRITE_BUFFER = 1 << 20
# Rows read from SQLite per hold of the store's data lock while writing a payload.
_ROWS_PER_FETCH = 2000
_NO_HEADINGS: tuple[str, ...] = ()
_NO_METADATA: Mapping[str, str] = MappingProxyType({})

# fid, chunk_id, url, title, heading_path (JSON), anchor, text, content_hash, page_hash,
# metadata (JSON): the rows ``_faiss_sql.rows_between`` returns.
Row = Sequence[Any]
RowFetcher = Callable[[int, int, int], list[Row]]


def data_path(directory: Path, epoch: int) -> Path:
    return directory / f"payload-{epoch}.bin"


def ends_path(directory: Path, epoch: int) -> Path:
    return directory / f"payload-{epoch}.ends"


@dataclass(frozen=True, slots=True)
class PayloadState:
    """What the database says is valid: files of ``epoch``, ``fids`` ends, ``size`` bytes;
    ``dead`` of those bytes belong to deleted chunks."""

    epoch: int
    fids: int
    size: int
    dead: int = 0

    @classmethod
    def from_meta(cls, meta: Mapping[str, str]) -> PayloadState | None:
        """The recorded state, or None when the index has no payload (older writers)."""
        try:
            state = cls(
                int(meta["payload_epoch"]),
                int(meta["payload_fids"]),
                int(meta["payload_bytes"]),
                int(meta.get("payload_dead", "0")),
            )
        except (KeyError, ValueError):
            return None
        if min(state.epoch, state.fids, state.size, state.dead) < 0:
            return None
        return state

    def to_meta(self) -> dict[str, str]:
        return {
            "payload_epoch": str(self.epoch),
            "payload_fids": str(self.fids),
            "payload_bytes": str(self.size),
            "payload_dead": str(self.dead),
        }


def _little_endian(values: array[int]) -> bytes:
    if sys.byteorder == "big":  # pragma: no cover - no big-endian CI
        values = array("q", values)
        values.byteswap()
    return values.tobytes()


def encode_record(row: Row) -> bytes | None:
    """The payload record of one database row, or None if it must stay SQLite-only."""
    fid, chunk_id, url, title, heading_json, anchor, text, c_hash, p_hash, meta_json = row
    try:
        heading_list = json.loads(heading_json) if heading_json != "[]" else []
        metadata = json.loads(meta_json) if meta_json != "{}" else {}
    except ValueError:
        return None  # a damaged row: SQLite's reader reports it when it is asked for
    if not isinstance(heading_list, list) or not isinstance(metadata, dict):
        return None
    headings = [str(h) for h in heading_list]
    if headings == [""] or anchor == "":
        return None  # would read back as no headings, or as no anchor
    items = [str(part) for pair in metadata.items() for part in pair]
    plain = [
        str(fid),
        chunk_id,
        url,
        title,
        anchor or "",
        text,
        c_hash,
        p_hash,
    ]
    if any(FIELD in f for f in plain) or any(FIELD in f or ITEM in f for f in headings + items):
        return None
    return FIELD.join([*plain, ITEM.join(headings), ITEM.join(items)]).encode("utf-8")


class Payload:
    """Read access to one committed payload: ``chunks(fids)`` for a search's hits.

    Immutable once made; the store swaps in a new one after each persist. An *unusable*
    payload (none written yet, or its files are gone) answers nothing, so every read
    falls back to SQLite.
    """

    __slots__ = ("_data", "_directory", "_ends", "state", "usable")

    def __init__(
        self,
        directory: Path,
        state: PayloadState | None,
        data: mmap.mmap | bytes = b"",
        ends: array[int] | None = None,
        *,
        usable: bool = False,
    ) -> None:
        self._directory = directory
        self.state = state
        self.usable = usable
        self._data = data
        self._ends = ends if ends is not None else array("q")

    @property
    def fids(self) -> int:
        """Fids below this have a record (possibly empty); the rest are only in SQLite."""
        return len(self._ends)

    def record_bytes(self, fids: Sequence[int]) -> int:
        """Bytes the records of ``fids`` take: they become dead when those chunks go."""
        ends, covered = self._ends, len(self._ends)
        return sum(ends[f] - ends[f - 1] for f in fids if 0 < f < covered)

    def hits(
        self, fids: Sequence[int], scores: Sequence[float], missing: list[int], scale: float = 1.0
    ) -> list[SearchHit | None]:
        """Hits for ``fids`` (each score times ``scale``), in order; None, and the position
        added to ``missing``, for each one SQLite has to answer.

        The hot loop of every search: about 1.5 µs a hit. Raises ``CorruptIndexError``
        on a record that does not parse or belongs to another fid.
        """
        ends, data, covered = self._ends, self._data, len(self._ends)
        found: list[SearchHit | None] = []
        for fid, score in zip(fids, scores, strict=True):
            if 0 < fid < covered:
                start, stop = ends[fid - 1], ends[fid]
                if start < stop:
                    try:
                        tag, cid, url, title, anchor, text, c_hash, p_hash, heads, meta = (
                            data[start:stop].decode("utf-8").split(FIELD)
                        )
                    except ValueError:  # a wrong field count or bad UTF-8
                        raise self._damaged(f"the record of fid {fid} is unreadable") from None
                    if tag != str(fid):
                        raise self._damaged(f"the record for fid {fid} belongs to {tag[:20]!r}")
                    chunk = new_chunk(
                        cid,
                        url,
                        title,
                        tuple(heads.split(ITEM)) if heads else _NO_HEADINGS,
                        anchor or None,
                        text,
                        c_hash,
                        p_hash,
                        _metadata(meta) if meta else _NO_METADATA,
                    )
                    found.append(new_hit(chunk, score * scale))
                    continue
            missing.append(len(found))
            found.append(None)
        return found

    def chunk(self, fid: int) -> Chunk | None:
        """The chunk of one fid, or None when SQLite has to answer."""
        missing: list[int] = []
        hit = self.hits([fid], [0.0], missing)[0]
        return None if hit is None else hit.chunk

    def _damaged(self, problem: str) -> CorruptIndexError:
        epoch = self.state.epoch if self.state else 0
        return payload_corrupt(self._directory, epoch, problem)


def _metadata(encoded: str) -> Mapping[str, str]:
    items = encoded.split(ITEM)
    return MappingProxyType(dict(zip(items[::2], items[1::2], strict=True)))


def payload_corrupt(directory: Path, epoch: int, problem: str) -> CorruptIndexError:
    """Damage to the derived files: deleting them is enough, nothing is lost."""
    data, ends = data_path(directory, epoch).name, ends_path(directory, epoch).name
    return CorruptIndexError(
        f"The index at {directory} cannot be read: {data} disagrees with {DATABASE_NAME} "
        f"({problem}). Those files only speed up searches: delete {data} and {ends} and "
        "reopen (reads then come from the database, and the next write rebuilds them), or "
        f"re-ingest (sitechat ingest <URL> --index {directory})."
    )


# ---------------------------------------------------------------------- opening


def load_payload(directory: Path, conn: sqlite3.Connection, meta: Mapping[str, str]) -> Payload:
    """The payload the database's ``meta`` describes, checked against the database.

    Raises ``FileNotFoundError`` when its files are missing (a writer in another process
    may have just replaced them: the caller retries) and ``CorruptIndexError`` when they
    are shorter than recorded or disagree with the database.
    """
    state = PayloadState.from_meta(meta)
    if state is None:
        return Payload(directory, None)
    data_file, ends_file = data_path(directory, state.epoch), ends_path(directory, state.epoch)
    ends = array("q")
    try:
        with open(ends_file, "rb") as handle:
            try:
                ends.fromfile(handle, state.fids)
            except (EOFError, ValueError):  # ValueError: a length not a multiple of 8
                raise payload_corrupt(
                    directory, state.epoch, f"{ends_file.name} is shorter than recorded"
                ) from None
        if sys.byteorder == "big":  # pragma: no cover - no big-endian CI
            ends.byteswap()
        with open(data_file, "rb") as handle:
            if os.fstat(handle.fileno()).st_size < state.size:
                raise payload_corrupt(directory, state.epoch, "it is shorter than recorded")
            data: mmap.mmap | bytes = b""
            if state.size:
                data = mmap.mmap(handle.fileno(), state.size, access=mmap.ACCESS_READ)
    except FileNotFoundError:
        raise  # a writer may have just replaced them: the caller looks again
    except OSError as exc:  # a directory in a file's place, unreadable, an I/O error
        name = Path(exc.filename).name if exc.filename else data_file.name
        raise payload_corrupt(
            directory, state.epoch, f"{name} cannot be read: {exc.strerror or exc}"
        ) from None
    _check_ends(directory, state, ends)
    payload = Payload(directory, state, data, ends, usable=True)
    _sample_against(payload, conn)
    return payload


def missing_payload(directory: Path, meta: Mapping[str, str]) -> Payload:
    """An unusable payload for an index whose payload files are gone: reads use SQLite."""
    state = PayloadState.from_meta(meta)
    if state is not None:
        logger.warning(
            "%s is missing: searches read chunks from %s until the next write rebuilds it",
            data_path(directory, state.epoch),
            DATABASE_NAME,
        )
    return Payload(directory, state)


def _check_ends(directory: Path, state: PayloadState, ends: array[int]) -> None:
    if not len(ends):
        return
    offsets = np.frombuffer(ends, dtype=np.int64)
    if offsets[0] != 0 or offsets[-1] != state.size or bool((np.diff(offsets) < 0).any()):
        raise payload_corrupt(
            directory, state.epoch, f"{ends_path(directory, state.epoch).name} is out of order"
        )


def _sample_against(payload: Payload, conn: sqlite3.Connection) -> None:
    """Compare the first and last few records with the database's rows."""
    covered = payload.fids
    rows = [
        *conn.execute(
            "SELECT fid, chunk_id, content_hash FROM chunks WHERE fid < ? ORDER BY fid LIMIT 3",
            (covered,),
        ),
        *conn.execute(
            "SELECT fid, chunk_id, content_hash FROM chunks WHERE fid < ? "
            "ORDER BY fid DESC LIMIT 3",
            (covered,),
        ),
    ]
    for fid, chunk_id, c_hash in rows:
        chunk = payload.chunk(int(fid))
        if chunk is not None and (chunk.id != chunk_id or chunk.content_hash != c_hash):
            raise payload._damaged(f"fid {fid} holds {chunk.id!r}, the database {chunk_id!r}")


# ---------------------------------------------------------------------- writing


def write_payload(
    directory: Path, current: Payload, upto: int, fetch: RowFetcher, dead: int
) -> Payload:
    """Extend ``current`` with the records of fids up to ``upto`` (exclusive), or write a
    fresh epoch when there is none, it is unusable, or ``dead`` bytes pass half of it.

    The files are fsynced; nothing is committed: the caller records the returned
    payload's state in the database. Raises ``OSError`` when the disk refuses.
    """
    state = current.state
    fresh = (
        state is None
        or not current.usable
        or dead * 2 > state.size
        or not _appendable(directory, state)
    )
    if fresh or state is None:
        epoch = state.epoch + 1 if state is not None else 1
        ends: array[int] = array("q")
        size = 0
        dead = 0
        modes = ("wb", "wb")
    else:
        epoch, size = state.epoch, state.size
        ends = array("q", current._ends)  # a copy: readers keep using the old one
        modes = ("r+b", "r+b")
    data_file, ends_file = data_path(directory, epoch), ends_path(directory, epoch)
    first = len(ends)
    with open(data_file, modes[0]) as data_out, open(ends_file, modes[1]) as ends_out:
        # cut off whatever a crashed writer appended past the committed lengths
        data_out.truncate(size)
        ends_out.truncate(first * 8)
        data_out.seek(size)
        ends_out.seek(first * 8)
        size = _append_records(data_out, ends, upto, fetch, size)
        ends_out.write(_little_endian(ends[first:]))
        for handle in (data_out, ends_out):
            handle.flush()
            os.fsync(handle.fileno())
    if fresh:
        fsync_directory(directory)
    data: mmap.mmap | bytes = b""
    if size:
        with open(data_file, "rb") as handle:
            data = mmap.mmap(handle.fileno(), size, access=mmap.ACCESS_READ)
    return Payload(directory, PayloadState(epoch, len(ends), size, dead), data, ends, usable=True)


def _appendable(directory: Path, state: PayloadState) -> bool:
    """Whether the files still hold what was committed (else appending would misplace)."""
    try:
        return (
            data_path(directory, state.epoch).stat().st_size >= state.size
            and ends_path(directory, state.epoch).stat().st_size >= state.fids * 8
        )
    except OSError:
        return False


def _append_records(out: Any, ends: array[int], upto: int, fetch: RowFetcher, size: int) -> int:
    """Write the records of fids ``len(ends)`` .. ``upto - 1``, extending ``ends``."""
    if not ends:
        ends.append(0)  # fid 0 is never assigned
    buffer = bytearray()
    for rows in _row_slices(fetch, len(ends), upto):
        for row in rows:
            fid = int(row[0])
            gap = fid - len(ends)
            if gap > 0:  # deleted before they were ever written: empty records
                ends.extend([size] * gap)
            record = encode_record(row)
            if record is not None:
                buffer += record
                size += len(record)
            ends.append(size)
        if len(buffer) >= _WRITE_BUFFER:
            out.write(buffer)
            buffer.clear()
    if upto > len(ends):
        ends.extend([size] * (upto - len(ends)))
    out.write(buffer)
    return size


def _row_slices(fetch: RowFetcher, first: int, upto: int) -> Iterator[list[Row]]:
    while first < upto:
        rows = fetch(first, upto, _ROWS_PER_FETCH)
        if not rows:
            return
        yield rows
        first = int(rows[-1][0]) + 1


def remove_stale_payloads(directory: Path, keep: int | None) -> None:
    """Delete payload files of epochs other than ``keep`` (left by a crash or replaced).

    Like ``remove_stale_vectors``: only the process holding the database's write lock may
    call this. Readers that mapped an old epoch keep their mapping (POSIX).
    """
    for entry in directory.iterdir():
        match = _PAYLOAD_RE.match(entry.name)
        if match is not None and int(match.group(1)) != keep:
            with contextlib.suppress(OSError):
                entry.unlink()


def remove_payload(directory: Path, epoch: int) -> None:
    for path in (data_path(directory, epoch), ends_path(directory, epoch)):
        with contextlib.suppress(OSError):
            path.unlink()
