"""Checking and normalising incoming vectors, shared by every built-in store."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import numpy.typing as npt

from sitechat.errors import InvalidInputError
from sitechat.vectorstores.base import EmbedderInfo

__all__ = ["unit_rows"]


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
