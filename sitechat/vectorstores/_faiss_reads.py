"""Turning the FAISS store's ranked ids into hits, and trimming keyword queries.

``HitReader`` is where a search's chunks come from: the memory-mapped payload file for
everything persisted (see ``_faiss_payload``), SQLite for chunks added since the last
persist, through a bounded cache. A FAISS id is never reused, so neither source can ever
be stale: the cache needs no invalidation, only a bound, and deleted ids simply stop
being asked for.

``KeywordPruner`` drops keyword-query words that occur in over a third of the chunks.

Nothing here locks: the store calls in under its data lock (see ``faiss.py``).
"""

from __future__ import annotations

import sqlite3
from collections import OrderedDict
from collections.abc import Sequence
from pathlib import Path

from sitechat.models import Chunk, SearchHit
from sitechat.vectorstores import _faiss_sql as sql
from sitechat.vectorstores._faiss_hits import new_hit
from sitechat.vectorstores._faiss_payload import Payload

__all__ = ["HitReader", "KeywordPruner"]

# Chunks read from SQLite (not yet in the payload file) kept decoded (~1.5 KB each).
_CHUNK_CACHE_SIZE = 8192
# Keyword query words whose chunk counts are remembered until the next write.
_FREQUENCY_CACHE_SIZE = 50_000
# Below this many chunks every query is fast: no need to count word frequencies.
_MIN_CHUNKS_TO_PRUNE = 2_000


class HitReader:
    """Hits for ranked FAISS ids; ``payload`` is swapped by the store after each persist."""

    def __init__(self, conn: sqlite3.Connection, directory: Path, payload: Payload) -> None:
        self.payload = payload
        self._conn = conn
        self._directory = directory
        self._cache: OrderedDict[int, Chunk] = OrderedDict()

    def hits(
        self, fids: Sequence[int], scores: Sequence[float], scale: float = 1.0
    ) -> list[SearchHit]:
        """Hits for these ids with these scores (times ``scale``), in order, skipping any
        chunk that is gone."""
        missing: list[int] = []
        hits = self.payload.hits(fids, scores, missing, scale)
        if not missing:
            return hits  # type: ignore[return-value]  # no None without a missing position
        fetched = self._cached_chunks([fids[p] for p in missing])
        for position in missing:
            chunk = fetched.get(fids[position])
            if chunk is not None:
                hits[position] = new_hit(chunk, scores[position] * scale)
        return [hit for hit in hits if hit is not None]

    def _cached_chunks(self, fids: Sequence[int]) -> dict[int, Chunk]:
        cache = self._cache
        found: dict[int, Chunk] = {}
        missing: list[int] = []
        for fid in fids:
            chunk = cache.get(fid)
            if chunk is None:
                missing.append(fid)
            else:
                cache.move_to_end(fid)
                found[fid] = chunk
        if missing:
            fetched = sql.chunks_by_fid(self._conn, self._directory, missing)
            found.update(fetched)
            cache.update(fetched)
            while len(cache) > _CHUNK_CACHE_SIZE:
                cache.popitem(last=False)
        return found


class KeywordPruner:
    """Leaves out of a keyword query the words found in over a third of the chunks.

    BM25 gives such words almost no weight (none past half), yet scoring every chunk they
    occur in is most of the work. Word counts are cached until the next write.
    """

    def __init__(self, conn: sqlite3.Connection) -> None:
        self._conn = conn
        self._frequencies: dict[str, int] = {}
        self._counted_at = 0

    def informative(self, words: list[str], total: int, changes: int) -> list[str]:
        """``words`` without the common ones, unless none would remain; ``total`` is the
        number of chunks and ``changes`` the store's write counter."""
        if len(words) < 2 or total < _MIN_CHUNKS_TO_PRUNE:
            return words
        cache = self._frequencies
        if self._counted_at != changes or len(cache) > _FREQUENCY_CACHE_SIZE:
            cache.clear()
            self._counted_at = changes
        counts = []
        for word in words:
            count = cache.get(word)
            if count is None:
                count = cache[word] = sql.document_frequency(self._conn, word)
            counts.append(count)
        kept = [w for w, c in zip(words, counts, strict=True) if c * 3 <= total]
        return kept or [min(zip(counts, words, strict=True))[1]]
