"""Hybrid retrieval: dense and keyword search fused by reciprocal rank.

Dense search finds paraphrases, keyword search finds exact names (``os.path.join``,
an error message); reciprocal rank fusion needs no score calibration between the two.
Results are then diversified so one long page cannot fill every slot.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from langchain_core.embeddings import Embeddings

from sitechat._text import content_terms
from sitechat.config import RetrievalSettings
from sitechat.models import SearchHit
from sitechat.vectorstores.base import VectorStore

__all__ = ["HybridRetriever", "RetrievalResult", "reciprocal_rank_fusion"]

RRF_K = 60


@dataclass(frozen=True, slots=True)
class RetrievalResult:
    """The hits for one query, best first; ``covered`` is False when none is relevant enough."""

    query: str
    hits: tuple[SearchHit, ...]
    covered: bool


def reciprocal_rank_fusion(
    rankings: Sequence[Sequence[SearchHit]], k: int = RRF_K
) -> list[SearchHit]:
    """Fuse ranked lists: each hit scores ``sum(1 / (k + rank))`` over the lists it is in."""
    scores: dict[str, float] = {}
    first_seen: dict[str, SearchHit] = {}
    for ranking in rankings:
        for rank, hit in enumerate(ranking, start=1):
            cid = hit.chunk.id
            scores[cid] = scores.get(cid, 0.0) + 1.0 / (k + rank)
            first_seen.setdefault(cid, hit)
    ordered = sorted(scores, key=lambda cid: -scores[cid])
    return [SearchHit(first_seen[cid].chunk, scores[cid]) for cid in ordered]


def diversify(hits: Sequence[SearchHit], k: int, max_per_page: int) -> list[SearchHit]:
    """The best ``k`` hits with at most ``max_per_page`` from one page, unless too few pages."""
    chosen: list[SearchHit] = []
    deferred: list[SearchHit] = []
    per_page: dict[str, int] = {}
    for hit in hits:
        url = hit.chunk.url
        if per_page.get(url, 0) < max_per_page:
            chosen.append(hit)
            per_page[url] = per_page.get(url, 0) + 1
        else:
            deferred.append(hit)
        if len(chosen) == k:
            return chosen
    return chosen + deferred[: k - len(chosen)]


class HybridRetriever:
    """Finds the passages that answer a query, from one store and its embedder."""

    def __init__(
        self,
        store: VectorStore,
        embeddings: Embeddings,
        settings: RetrievalSettings | None = None,
    ) -> None:
        self.store = store
        self.embeddings = embeddings
        self.settings = settings or RetrievalSettings()

    async def retrieve(
        self, query: str, k: int | None = None, where: Mapping[str, str] | None = None
    ) -> RetrievalResult:
        """Search for ``query``; ``covered`` tells whether anything relevant was found."""
        k = k or self.settings.top_k
        pool = max(k * 4, 20)
        mode = self.settings.mode
        keywords = " ".join(content_terms(query))
        use_keyword = mode != "dense" and self.store.supports_keyword_search and bool(keywords)
        use_dense = mode != "keyword" or not self.store.supports_keyword_search

        async def dense() -> list[SearchHit]:
            if not use_dense:
                return []
            vector = await self.embeddings.aembed_query(query)
            return await self.store.search(vector, pool, where)

        async def keyword() -> list[SearchHit]:
            if not use_keyword:
                return []
            return await self.store.keyword_search(keywords, pool, where)

        dense_hits, keyword_hits = await asyncio.gather(dense(), keyword())
        fused = reciprocal_rank_fusion([dense_hits, keyword_hits])
        hits = diversify(fused, k, self.settings.max_per_page)
        similarity = {h.chunk.id: h.score for h in dense_hits}
        covered = self._covered(query, hits, similarity)
        return RetrievalResult(query=query, hits=tuple(hits), covered=covered)

    def _dense_threshold(self) -> float | None:
        if self.settings.min_score is not None:
            return self.settings.min_score
        calibrated = getattr(self.embeddings, "relevance_threshold", None)
        return float(calibrated) if isinstance(calibrated, (int, float)) else None

    def _covered(
        self, query: str, hits: Sequence[SearchHit], similarity: Mapping[str, float]
    ) -> bool:
        """Whether any hit is relevant: similar enough, or sharing enough of the query's words.

        Fused scores are ranks, not relevance, so relevance is judged on each hit's own
        evidence. Embedders without a calibrated threshold are judged by words alone.
        """
        if not hits:
            return False
        terms = set(content_terms(query))
        threshold = self._dense_threshold()
        for hit in hits:
            score = similarity.get(hit.chunk.id)
            if threshold is not None and score is not None and score >= threshold:
                return True
            if terms:
                chunk = hit.chunk
                found = terms & set(content_terms(f"{chunk.title} {chunk.heading} {chunk.text}"))
                if len(found) / len(terms) >= self.settings.min_keyword_coverage:
                    return True
        return False
