"""The per-search costs of the FAISS store that are not FAISS: the query row and the hits.

A search at 100k chunks spends ~150 µs in FAISS; everything else has to fit in a few tens
of microseconds, and each of these steps was the single largest part of that before:

* ``query_row`` packs the query list with ``struct`` (3 µs for 384 floats, where
  ``numpy.array`` takes 8 µs to discover the list's type and shape first) and checks it
  through its norm: NaN or infinity anywhere makes the norm non-finite. The row is not
  scaled to length 1: inner products scale with it, so FAISS ranks the same, and the
  caller multiplies the k scores by the inverse norm instead of the 384 floats.
* ``new_chunk`` / ``new_hit`` skip the frozen dataclasses' ``__init__``, which goes
  through ``object.__setattr__`` once per field (1.7 µs for a chunk and its hit). They
  fill a plain twin class with the same ``__slots__`` (plain attribute stores, ~10 ns
  each) and then assign ``__class__``, which Python allows between classes of identical
  layout: 0.35 µs, and the result is exactly the object the constructors make (same
  type, equal, frozen from then on). An import-time check builds one each way and
  compares them; if ``sitechat.models`` ever changes the layout or adds a
  ``__post_init__``, the constructors are used instead.
"""

from __future__ import annotations

import math
import struct
from collections.abc import Callable, Mapping, Sequence
from types import MappingProxyType
from typing import Any

import numpy as np
import numpy.typing as npt

from sitechat.models import Chunk, SearchHit
from sitechat.vectorstores._rows import unit_rows
from sitechat.vectorstores.base import EmbedderInfo

__all__ = ["fast_constructors", "new_chunk", "new_hit", "query_row"]

FloatArray = npt.NDArray[np.float32]


_CHUNK_FIELDS = (
    "id",
    "url",
    "title",
    "heading_path",
    "anchor",
    "text",
    "content_hash",
    "page_hash",
    "metadata",
)


class _ChunkSlots:
    """A mutable twin of ``Chunk``'s memory layout: filled, then turned into a Chunk."""

    __slots__ = Chunk.__slots__


class _HitSlots:
    """A mutable twin of ``SearchHit``'s memory layout."""

    __slots__ = SearchHit.__slots__


def _fast_chunk(
    chunk_id: str,
    url: str,
    title: str,
    heading_path: tuple[str, ...],
    anchor: str | None,
    text: str,
    content_hash: str,
    page_hash: str,
    metadata: Mapping[str, str],
) -> Chunk:
    """``Chunk(...)`` with every field given, positionally, in a third of the time."""
    chunk: Any = _ChunkSlots()
    chunk.id = chunk_id
    chunk.url = url
    chunk.title = title
    chunk.heading_path = heading_path
    chunk.anchor = anchor
    chunk.text = text
    chunk.content_hash = content_hash
    chunk.page_hash = page_hash
    chunk.metadata = metadata
    chunk.__class__ = Chunk
    result: Chunk = chunk
    return result


def _fast_hit(chunk: Chunk, score: float) -> SearchHit:
    """``SearchHit(chunk, score)`` without the frozen ``__init__``."""
    hit: Any = _HitSlots()
    hit.chunk = chunk
    hit.score = score
    hit.__class__ = SearchHit
    result: SearchHit = hit
    return result


def _twins_work() -> bool:
    """Whether filling a twin and assigning ``__class__`` gives the constructors' objects.

    Python allows the assignment only between classes with the same slots; anything
    else (a new field, a ``__post_init__`` that would be skipped) disables the fast path.
    """
    if hasattr(Chunk, "__post_init__") or hasattr(SearchHit, "__post_init__"):
        return False
    if Chunk.__slots__ != _CHUNK_FIELDS or SearchHit.__slots__ != ("chunk", "score"):
        return False  # the builders above set exactly these
    fields = ("i", "u", "t", ("h",), "a", "x", "c", "p", _NO_METADATA)
    try:
        built = _fast_hit(_fast_chunk(*fields), 0.5)
    except (AttributeError, TypeError):
        return False
    made = SearchHit(Chunk(*fields), 0.5)
    return type(built) is SearchHit and type(built.chunk) is Chunk and built == made


_NO_METADATA: Mapping[str, str] = MappingProxyType({})
_FAST = _twins_work()

#: ``Chunk(...)`` and ``SearchHit(chunk, score)``: the fast builders, or the constructors
#: themselves if ``sitechat.models`` ever changes the dataclasses' layout.
new_chunk: Callable[..., Chunk] = _fast_chunk if _FAST else Chunk
new_hit: Callable[[Chunk, float], SearchHit] = _fast_hit if _FAST else SearchHit


def fast_constructors() -> bool:
    """Whether the twin-filling fast path is in use (it is unless the models changed)."""
    return _FAST


_packers: dict[int, struct.Struct] = {}


def query_row(vector: Sequence[float], embedder: EmbedderInfo) -> tuple[FloatArray, float] | None:
    """One query as a float32 row of shape ``(1, dimension)`` and the inverse of its
    length (multiply inner products by it for cosines); None for a zero vector.

    Anything the fast path does not accept as is (another length, a non-number, a
    numpy array, NaN, infinity, a value float32 cannot hold) goes through ``unit_rows``,
    which raises the store's usual ``InvalidInputError`` or normalises it the slow way.
    """
    dimension = embedder.dimension
    if isinstance(vector, list) and len(vector) == dimension:
        packer = _packers.get(dimension)
        if packer is None:
            packer = _packers[dimension] = struct.Struct(f"{dimension}f")
        try:
            row: FloatArray = np.frombuffer(packer.pack(*vector), dtype=np.float32)
        except (struct.error, OverflowError, TypeError):
            pass
        else:
            squared = float(row.dot(row))
            if squared > 0.0 and math.isfinite(squared):
                return row.reshape(1, dimension), 1.0 / math.sqrt(squared)
            # zero (or so tiny its square underflows), NaN, infinity: the usual checks
    matrix = unit_rows([vector], embedder)
    return (matrix, 1.0) if matrix.any() else None
