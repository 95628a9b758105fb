"""Re-ranking fused results with an embedder's passage scorer.

An embedder may offer ``score_passages(query, chunks)``: a finer look at a few passages
than its vectors give across the whole index (the offline default matches token by
token, see ``sitechat.embeddings._token_match``). The retriever then re-orders the top
``rerank_depth`` fused passages by fusing, page by page as before, their fused order with
their order by that score. The scorer only re-orders: it adds no passage the searches did
not find, and fusing rather than replacing keeps a page that both searches rank first
from being pushed down by one weak signal.
"""

from __future__ import annotations

from collections.abc import Container, Sequence
from typing import Any, Protocol, TypeAlias, runtime_checkable

import numpy as np
import numpy.typing as npt

from sitechat.models import Chunk, SearchHit
from sitechat.retrieval.fusion import fuse_by_page
from sitechat.vectorstores.base import PageSizes

__all__ = ["PassageScorer", "Scores", "rerank_fused"]

#: One score per passage: a list, or a numpy array as the offline scorers return.
Scores: TypeAlias = Sequence[float] | npt.NDArray[np.floating[Any]]


@runtime_checkable
class PassageScorer(Protocol):
    """An embedder that can score a few passages against a query more finely."""

    def score_passages(self, query: str, chunks: Sequence[Chunk]) -> Scores | None:
        """One score per chunk, higher is better; None when it cannot judge this query."""


def rerank_fused(
    fused: Sequence[SearchHit],
    scores: Scores | None,
    depth: int,
    evidence: Container[str] | None = None,
    sizes: PageSizes | None = None,
) -> list[SearchHit]:
    """``fused`` with its first ``depth`` hits re-ordered by fusing their order with
    ``scores`` (one per re-ordered hit); unchanged when ``scores`` is None. ``evidence``
    and ``sizes`` are as for :func:`~sitechat.retrieval.fusion.fuse_by_page`."""
    head = list(fused[:depth])
    if scores is None or len(head) < 2:
        return list(fused)
    if len(scores) != len(head):
        raise ValueError(f"expected {len(head)} passage scores, got {len(scores)}")
    by_score = sorted(range(len(head)), key=lambda i: -scores[i])  # stable: ties keep order
    reordered = fuse_by_page([head, [head[i] for i in by_score]], evidence=evidence, sizes=sizes)
    return reordered + list(fused[depth:])
