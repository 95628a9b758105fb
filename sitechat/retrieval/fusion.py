"""Fusing ranked passage lists page by page, and keeping one page from filling the results.

The rules and their reasons are in ``sitechat.retrieval.hybrid``'s module docstring
(steps 3 and 4); the figures behind the constants are in ``docs/src/retrieval.md``.
"""

from __future__ import annotations

import re
from collections.abc import Container, Sequence
from typing import Any

from sitechat.models import Chunk, SearchHit
from sitechat.vectorstores.base import PageSizes

__all__ = [
    "CHANCE_EVIDENCE",
    "PAGE_EVIDENCE_DECAY",
    "PASSAGE_DECAY",
    "RRF_K",
    "diversify",
    "exact_first",
    "fuse_by_page",
    "reciprocal_rank_fusion",
]

RRF_K = 60
# A page's further passages in one ranked list count this much of its best one.
PAGE_EVIDENCE_DECAY = 0.4
# Of a page's further passages in a list of n, the first CHANCE_EVIDENCE * n * (its share
# of the store's chunks) add nothing: a page holding a fifth of the site (a changelog)
# has passages in any list by its size alone. Chosen on the Python tuning questions and
# the Cargo book's (docs/src/retrieval.md).
CHANCE_EVIDENCE = 0.25
# A page's n-th passage scores PASSAGE_DECAY ** n of the page: its first passage keeps
# the page's place, a second one competes with the next pages' first passages.
PASSAGE_DECAY = 0.3


def reciprocal_rank_fusion(
    rankings: Sequence[Sequence[SearchHit]],
    k: int = RRF_K,
    weights: Sequence[float] | None = None,
) -> list[SearchHit]:
    """Fuse ranked lists: each hit scores ``sum(w / (k + rank))`` over the lists it is in."""
    return [SearchHit(chunk, score) for score, chunk in _passage_scores(rankings, k, weights)]


def _passage_scores(
    rankings: Sequence[Sequence[SearchHit]], k: int, weights: Sequence[float] | None
) -> list[tuple[float, Chunk]]:
    """``(rrf score, chunk)`` of every passage, best first, ties in order of first sight."""
    entries: dict[str, list[Any]] = {}
    for ranking, weight in zip(rankings, weights or [1.0] * len(rankings), strict=True):
        for rank, hit in enumerate(ranking, start=k + 1):
            entry = entries.get(hit.chunk.id)
            if entry is None:
                entries[hit.chunk.id] = [weight / rank, hit.chunk]
            else:
                entry[0] += weight / rank
    # a stable sort (reverse keeps it stable), so equal scores stay in order of first sight
    return sorted(map(tuple, entries.values()), key=_first, reverse=True)


def _first(entry: tuple[float, Chunk]) -> float:
    return entry[0]


def fuse_by_page(
    rankings: Sequence[Sequence[SearchHit]],
    weights: Sequence[float] | None = None,
    k: int = RRF_K,
    evidence: Container[str] | None = None,
    sizes: PageSizes | None = None,
) -> list[SearchHit]:
    """Fuse ranked passage lists by page (see the module docstring), best first.

    A page's further passages in a list add to its score only when their chunk ids are in
    ``evidence`` (all of them when it is None): a passage that is merely in the pool
    says nothing about its page. With ``sizes``, neither do as many of them as the page's
    size alone would put in the list (:data:`CHANCE_EVIDENCE`); the passage that
    crosses that count adds the fraction it crosses by.

    Every passage of every list is returned once, scored ``page score * 0.3 ** n`` where
    ``n`` counts the better passages of the same page, and sorted by that score.

    This runs on every question of every chat, so it works on plain tuples and builds a
    :class:`SearchHit` only for what it returns.
    """
    weights = list(weights) if weights is not None else [1.0] * len(rankings)
    page_scores: dict[str, float] = {}
    for ranking, weight in zip(rankings, weights, strict=True):
        page_rank = k
        further: dict[str, int] = {}  # evidence passages after each page's first
        chance = CHANCE_EVIDENCE * len(ranking) / sizes.total if sizes and sizes.total else 0.0
        page_chunks = sizes.chunks if sizes else {}
        for hit in ranking:
            page = hit.chunk.url
            counted = further.get(page)
            if counted is None:
                further[page] = 0
                page_rank += 1
                gain = weight / page_rank
            elif evidence is None or hit.chunk.id in evidence:
                further[page] = counted = counted + 1
                gain = weight * PAGE_EVIDENCE_DECAY / page_rank
                if chance:
                    beyond = counted - chance * page_chunks.get(page, 0)
                    if beyond <= 0.0:
                        continue
                    gain *= min(beyond, 1.0)
            else:
                continue
            page_scores[page] = page_scores.get(page, 0.0) + gain
    passage_index: dict[str, int] = {}
    fused: list[tuple[float, Chunk]] = []
    for _, chunk in _passage_scores(rankings, k, weights):  # passage order: n grows per page
        page = chunk.url
        n = passage_index.get(page, 0)
        passage_index[page] = n + 1
        fused.append((page_scores[page] * PASSAGE_DECAY**n, chunk))
    fused.sort(key=_first, reverse=True)
    return [SearchHit(chunk, score) for score, chunk in fused]


def exact_first(hits: Sequence[SearchHit], compounds: Sequence[str]) -> list[SearchHit]:
    """``hits`` with each page's passages that hold one of ``compounds`` verbatim moved
    ahead of its others: first those whose heading names it as a whole (``GET /v1/users``
    for ``v1/users``), then those whose heading holds it (``GET /v1/users/{id}``), then
    those whose text does.

    A page keeps its places in the list, and each place its score; only which of the
    page's passages fills it changes. A compound is matched from a word boundary, so
    ``2.3.1`` is not found in ``12.3.1`` or ``2.3.10``, and case is ignored.
    """
    if not compounds or len(hits) < 2:
        return list(hits)
    alternatives = "|".join(re.escape(c) for c in compounds)
    found = re.compile(rf"(?<![\w.])(?:{alternatives})(?!\w|[.:_-]\w)", re.IGNORECASE)
    whole = re.compile(rf"(?<![\w.])(?:{alternatives})(?![^\s,;:!?)\]]|[.:]\S)", re.IGNORECASE)
    slots: dict[str, list[int]] = {}
    for position, hit in enumerate(hits):
        slots.setdefault(hit.chunk.url, []).append(position)
    ordered = list(hits)
    for positions in slots.values():
        if len(positions) < 2:
            continue
        page = [hits[i] for i in positions]
        tiers = [_exact_tier(found, whole, hit.chunk) for hit in page]
        if not any(tiers):
            continue
        # a stable sort: passages of one tier keep their fused order
        best = sorted(range(len(page)), key=lambda i: -tiers[i])
        for position, i in zip(positions, best, strict=True):
            ordered[position] = SearchHit(page[i].chunk, hits[position].score)
    return ordered


def _exact_tier(found: re.Pattern[str], whole: re.Pattern[str], chunk: Chunk) -> int:
    """3 when ``chunk``'s heading names a compound as a whole, 2 when it holds one, 1 when
    its text does, else 0."""
    if found.search(chunk.heading):
        return 3 if whole.search(chunk.heading) else 2
    return 1 if found.search(chunk.text) else 0


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
