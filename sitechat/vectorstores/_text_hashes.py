"""Re-hashing chunk text for ``verify()``: text changed behind the store's back.

A chunk's ``content_hash`` is whatever its maker put there. sitechat only compares it for
equality, so a chunk upserted by hand may carry any string (a version, an md5, a row
number), and a text that does not hash to it is no damage. Chunks made by ingest are
different: :func:`~sitechat.ingest.chunk.chunk_page` sets ``content_hash`` to
:func:`~sitechat.models.content_hash` of the text, and derives the chunk's id from that
hash and the chunk's place (URL, anchor, heading path; :func:`~sitechat.ingest.chunk.chunk_key`).
So a chunk whose id is the one ingest would give it is known to be ingest's, and its text
must still hash to its ``content_hash``. One that does not was edited after it was stored
(by hand in the database, by bit rot its integrity check cannot see, by a restore that
mixed two backups), and incremental ingest would keep it as unchanged, since it
compares ids. Every other chunk is left alone.

Recognising a chunk costs one hash of a short string; checking it, one hash of its text.
A repeated piece under one heading has occurrence 1, 2, ... in its id, and is matched
once the whole store has been seen (:meth:`TextHashCheck.finish`).
"""

from __future__ import annotations

import re
from collections.abc import Iterable

from sitechat.ingest.chunk import chunk_id, chunk_key
from sitechat.models import Chunk, content_hash

__all__ = ["MISMATCH", "TextHashCheck"]

MISMATCH = "chunks whose text does not match their content hash"
_EXAMPLES = 3
# every id ingest makes is a content_hash: 32 lowercase hex digits
_INGEST_ID = re.compile(r"[0-9a-f]{32}").fullmatch


class TextHashCheck:
    """Feed every stored chunk to :meth:`add`, in batches, then call :meth:`finish` once."""

    def __init__(self) -> None:
        self.seen = 0
        self.checked = 0
        self.mismatched = 0
        self.examples: list[str] = []
        # pieces whose id is not occurrence 0 of their key: (id, text matches) by key
        self._repeats: dict[str, list[tuple[str, bool]]] = {}

    def add(self, chunks: Iterable[Chunk]) -> None:
        """Re-hash the text of those of ``chunks`` that ingest made (one batch of many)."""
        repeats, is_ingest_id = self._repeats, _INGEST_ID
        seen = checked = 0
        for chunk in chunks:
            seen += 1
            if not is_ingest_id(chunk.id):
                continue
            digest = chunk.content_hash
            key = chunk_key(chunk.url, chunk.anchor, chunk.heading_path, digest)
            intact = content_hash(chunk.text) == digest
            if chunk.id == chunk_id(key, 0):
                checked += 1
                if not intact:
                    self._mismatch(chunk.id)
            else:
                repeats.setdefault(key, []).append((chunk.id, intact))
        self.seen += seen
        self.checked += checked

    def finish(self) -> None:
        """Match the repeated pieces: ``n`` of one key are occurrences 1 to ``n`` (a chunk
        with none of those ids was not made by ingest)."""
        for key, pieces in self._repeats.items():
            ids = {chunk_id(key, n) for n in range(1, len(pieces) + 1)}
            for piece_id, intact in pieces:
                if piece_id in ids:
                    self.checked += 1
                    if not intact:
                        self._mismatch(piece_id)
        self._repeats.clear()

    def _mismatch(self, chunk_id: str) -> None:
        self.mismatched += 1
        if len(self.examples) < _EXAMPLES:
            self.examples.append(f"id {chunk_id}")

    @property
    def checked_line(self) -> str | None:
        """The entry for ``StoreCheck.checked``; None when no chunk was ingest's."""
        if not self.checked:
            return None
        line = "chunk text against content hashes"
        if self.checked < self.seen:
            line += f" ({self.checked} of {self.seen} chunks: the ones ingest made)"
        return line

    @property
    def problem(self) -> str | None:
        """The problem line, e.g. ``chunks whose text ...: 2 (e.g. id 3f…, id 9a…)``."""
        if not self.mismatched:
            return None
        return f"{MISMATCH}: {self.mismatched} (e.g. {', '.join(self.examples)})"
