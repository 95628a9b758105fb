"""Checking incoming chunks and vectors, shared by every built-in store."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import numpy.typing as npt

from sitechat.errors import InvalidInputError
from sitechat.models import Chunk
from sitechat.vectorstores.base import EmbedderInfo

__all__ = ["check_chunk_text", "unit_rows"]


def check_chunk_text(chunks: Sequence[Chunk]) -> None:
    """Refuse a chunk whose text fields are not valid Unicode (a lone surrogate such as
    ``"\\ud800"``, left by ``errors="surrogateescape"`` decoding): no store can encode it,
    and the driver's ``UnicodeEncodeError`` would not say which chunk."""
    for chunk in chunks:
        fields = {
            "id": chunk.id,
            "url": chunk.url,
            "title": chunk.title,
            "anchor": chunk.anchor or "",
            "text": chunk.text,
            "content_hash": chunk.content_hash,
            "page_hash": chunk.page_hash,
        }
        fields.update({f"heading {i + 1}": h for i, h in enumerate(chunk.heading_path)})
        for key, value in chunk.metadata.items():
            fields[f"metadata key {key!r}"] = key
            fields[f"metadata {key!r}"] = value
        for name, value in fields.items():
            at = _surrogate_at(value)
            if at is not None:
                raise InvalidInputError(
                    f"The chunk {chunk.id!r} cannot be stored: its {name} holds "
                    f"{value[at : at + 1]!r} at position {at}, a lone surrogate that is not "
                    "valid Unicode text. Decode the source with errors='replace' (or remove "
                    "the character) before upserting."
                )


def _surrogate_at(value: object) -> int | None:
    """Where ``value``'s first lone surrogate is; None when it has none or is no string."""
    if not isinstance(value, str) or value.isascii():
        return None
    try:
        value.encode("utf-8")
    except UnicodeEncodeError as exc:
        return exc.start
    return None


def storable(value: str) -> bool:
    """Whether ``value`` is valid Unicode text (no lone surrogate), as every stored string
    is: a read asking for anything else matches nothing. A value that is not a string at
    all is left to the caller's own checks (True)."""
    return _surrogate_at(value) is None


def storable_filter(where: Mapping[str, str] | None) -> bool:
    """Whether a metadata filter can match anything (its keys and values are storable)."""
    return not where or all(storable(k) and storable(v) for k, v in where.items())


def unit_rows(
    vectors: Sequence[Sequence[float]], embedder: EmbedderInfo
) -> npt.NDArray[np.float32]:
    """Vectors as contiguous float32 rows of length 1 (zero rows stay zero), after checking
    their shape and values against the store's embedder."""
    dimension = embedder.dimension
    try:
        # values beyond float32 become infinity here, and are refused below
        with np.errstate(over="ignore", invalid="ignore"):
            matrix = np.array(vectors, dtype=np.float32, ndmin=2)
    except (ValueError, TypeError):
        raise InvalidInputError(
            f"Vectors must be equal-length sequences of {dimension} numbers."
        ) from None
    if matrix.ndim != 2 or matrix.shape[1] != dimension:
        raise InvalidInputError(
            f"Vectors must have dimension {dimension} (this store's embedder "
            f"'{embedder.name}'); got shape {matrix.shape}. Embed with that embedder."
        )
    if not np.isfinite(matrix).all():
        raise InvalidInputError(
            "A vector contains NaN, infinity or a value too large for float32; check the "
            "embedder's output."
        )
    # squares of large float32 values overflow: each row is first divided by its largest
    # magnitude, which changes no direction
    largest = np.abs(matrix).max(axis=1, keepdims=True)
    np.divide(matrix, largest, out=matrix, where=largest > 0)
    norms = np.sqrt(np.einsum("ij,ij->i", matrix, matrix))[:, None]
    np.divide(matrix, norms, out=matrix, where=norms > 0)
    return np.ascontiguousarray(matrix)
