"""The vectors of a FAISS store: exact while small, HNSW past a size threshold.

Two layouts, both an ``IndexIDMap2`` so that a vector's id is its chunk's ``fid``:

* **flat** — ``IndexFlatIP``: exact inner product (= cosine over unit vectors). A search
  scans everything: ~0.5 ms at 10k x 384, ~85 ms at 1M.
* **hnsw** — ``IndexHNSWFlat`` with inner product: an approximate graph search that
  answers in tens of microseconds at 1M. Chosen automatically once the store passes
  ``hnsw_threshold`` live vectors; the flat vectors are copied into a graph built aside
  (readers keep using the flat index meanwhile), then swapped in.

HNSW cannot remove a vector. Deleted and replaced vectors become **tombstones**: they stay
in the graph (still useful as stepping stones) but a selector keeps them out of every
result. Tombstones are not stored anywhere: the database is the source of truth for which
ids are live, so a loaded graph's tombstones are its ids missing from the database. When
tombstones pass ``rebuild_ratio`` of the graph, the next persist rebuilds it from the live
vectors only (and falls back to flat if few are left).

Filtered searches (``where``) on a graph use brute force over the matching vectors when
they are few (a graph walk would visit almost everything to find them), and the graph
with a selector when they are many.

Nothing here locks: the store serialises writers and guards readers (see ``faiss.py``).
Searches only read, so any number may run at once; a rebuild reads a graph while
searches continue and only the swap needs the store's data lock.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal

import faiss
import numpy as np
import numpy.typing as npt
from pydantic import BaseModel, Field

__all__ = [
    "FaissConfig",
    "IndexParams",
    "VectorIndex",
    "flat_index",
]

FloatArray = npt.NDArray[np.float32]
IdArray = npt.NDArray[np.int64]
Kind = Literal["flat", "hnsw"]

# A filter keeping fewer vectors than this is answered exactly by brute force: scoring
# 20k x 384 floats takes ~1 ms, while a graph walk filtered down to them degrades badly.
_EXACT_FILTER_LIMIT = 20_000
# Graph construction in pieces, so a reader waits for one piece, not the whole batch.
HNSW_ADD_SLICE = 128


@dataclass(frozen=True, slots=True)
class IndexParams:
    """How the vectors are indexed (``SITECHAT_FAISS__*`` settings, see ``FaissConfig``)."""

    hnsw_threshold: int = 50_000
    hnsw_m: int = 32
    hnsw_ef_construction: int = 80
    hnsw_ef_search: int = 64
    rebuild_ratio: float = 0.2


class FaissConfig(BaseModel):
    """The ``SITECHAT_FAISS__*`` section: when and how the store switches to HNSW."""

    hnsw_threshold: int = Field(
        default=50_000,
        ge=0,
        description="Live chunks past which search uses an HNSW graph instead of exact search.",
    )
    hnsw_m: int = Field(default=32, ge=4, le=256, description="Graph links per vector.")
    hnsw_ef_construction: int = Field(
        default=80, ge=8, le=4096, description="Candidate list size while building the graph."
    )
    hnsw_ef_search: int = Field(
        default=64, ge=8, le=4096, description="Candidate list size per search: recall vs time."
    )
    rebuild_ratio: float = Field(
        default=0.2,
        gt=0.0,
        le=1.0,
        description="Share of deleted vectors in a graph at which persist rebuilds it.",
    )

    def index_params(self) -> IndexParams:
        return IndexParams(
            hnsw_threshold=self.hnsw_threshold,
            hnsw_m=self.hnsw_m,
            hnsw_ef_construction=self.hnsw_ef_construction,
            hnsw_ef_search=self.hnsw_ef_search,
            rebuild_ratio=self.rebuild_ratio,
        )


def flat_index(dimension: int) -> faiss.IndexIDMap2:
    """A new, empty exact index."""
    return faiss.IndexIDMap2(faiss.IndexFlatIP(dimension))


def _found(scores: FloatArray, labels: IdArray) -> tuple[list[int], list[float]]:
    """The ids and scores of one query's results, without FAISS's -1 padding (fewer than
    k matches)."""
    fids: list[int] = labels[0].tolist()
    values: list[float] = scores[0].tolist()
    if fids and fids[-1] < 0:
        kept = [i for i, fid in enumerate(fids) if fid >= 0]
        return [fids[i] for i in kept], [values[i] for i in kept]
    return fids, values


def _batch_selector(ids: IdArray | Sequence[int]) -> faiss.IDSelector:
    return faiss.IDSelectorBatch(np.asarray(ids, dtype=np.int64))


class VectorIndex:
    """A FAISS ``IndexIDMap2`` with tombstones, and the rules for choosing its layout."""

    def __init__(
        self, index: faiss.IndexIDMap2, params: IndexParams, tombstones: IdArray | None = None
    ) -> None:
        self.index = index
        self.params = params
        self._dimension = int(index.d)
        self._inner = faiss.downcast_index(index.index)
        self.kind: Kind = "hnsw" if isinstance(self._inner, faiss.IndexHNSW) else "flat"
        self._tombstones: set[int] = set() if tombstones is None else set(tombstones.tolist())
        self._excluded: faiss.IDSelector | None = None
        self._excluded_batch: faiss.IDSelector | None = None  # what _excluded wraps
        self._excluded_of = -1
        self._graph_params: Any = None  # reused while the search needs no selector
        # The largest id held. Ids only grow, so a filter's id above it names a chunk saved
        # by another process after this index was read (its vector is not here).
        self._max_id = int(faiss.vector_to_array(index.id_map).max()) if index.ntotal else -1

    # ------------------------------------------------------------------ sizes

    @property
    def dimension(self) -> int:
        return int(self.index.d)

    @property
    def ntotal(self) -> int:
        """Vectors in the index, tombstones included."""
        return int(self.index.ntotal)

    @property
    def live(self) -> int:
        """Vectors that searches can return."""
        return int(self.index.ntotal) - len(self._tombstones)

    @property
    def tombstones(self) -> int:
        return len(self._tombstones)

    def needs_graph(self, adding: int) -> bool:
        """Whether adding ``adding`` vectors takes a flat index past the HNSW threshold."""
        return self.kind == "flat" and self.live + adding > self.params.hnsw_threshold

    def needs_rebuild(self) -> bool:
        """Whether the graph carries so many tombstones that it should be rebuilt."""
        if self.kind != "hnsw" or not self._tombstones:
            return False
        return len(self._tombstones) >= self.params.rebuild_ratio * max(self.ntotal, 1)

    # ------------------------------------------------------------------ writes

    def add(self, matrix: FloatArray, ids: IdArray) -> None:
        self.index.add_with_ids(matrix, ids)
        if len(ids):
            self._max_id = max(self._max_id, int(np.max(ids)))

    def remove(self, ids: Sequence[int]) -> None:
        """Remove from a flat index; tombstone in a graph (caller passes live ids only)."""
        if not ids:
            return
        if self.kind == "flat":
            self.index.remove_ids(_batch_selector(ids))
        else:
            self._tombstones.update(int(i) for i in ids)

    # ------------------------------------------------------------------ layout changes

    def live_vectors(self) -> tuple[FloatArray, IdArray]:
        """Every live vector and its id, in index order (copies; the index is only read)."""
        ids = faiss.vector_to_array(self.index.id_map).astype(np.int64)
        vectors = self._inner.reconstruct_n(0, int(self.index.ntotal))
        if self._tombstones:
            keep = ~np.isin(ids, np.fromiter(self._tombstones, dtype=np.int64))
            ids, vectors = ids[keep], vectors[keep]
        return np.ascontiguousarray(vectors, dtype=np.float32), ids

    def rebuilt(self, *, extra: int = 0) -> VectorIndex:
        """A new index holding the live vectors only, in the layout their count calls for.

        A graph is kept unless the live vectors (plus ``extra`` about to be added) fall
        below half the threshold: the hysteresis stops a store near the threshold from
        flipping layouts on every persist.
        """
        vectors, ids = self.live_vectors()
        wanted = len(ids) + extra
        graph = wanted > self.params.hnsw_threshold or (
            self.kind == "hnsw" and wanted > self.params.hnsw_threshold // 2
        )
        index = self._new_graph() if graph else flat_index(self.dimension)
        if len(ids):
            index.add_with_ids(vectors, ids)
        return VectorIndex(index, self.params)

    def _new_graph(self) -> faiss.IndexIDMap2:
        graph = faiss.IndexHNSWFlat(self.dimension, self.params.hnsw_m, faiss.METRIC_INNER_PRODUCT)
        graph.hnsw.efConstruction = self.params.hnsw_ef_construction
        graph.hnsw.efSearch = self.params.hnsw_ef_search
        return faiss.IndexIDMap2(graph)

    # ------------------------------------------------------------------ reads

    def search(
        self, query: FloatArray, k: int, allowed: Sequence[int] | None = None
    ) -> tuple[list[int], list[float]]:
        """Up to ``k`` fids and their scores, best first; ``allowed`` restricts the ids.

        FAISS runs on this thread only: a one-vector query gains nothing from OpenMP,
        and waking its thread team costs more than the search (0.7 ms alone vs 1.5 ms
        with two threads at 10k x 384, 40x worse with a filter on a busy host). The
        OpenMP setting is per thread and restored, so nothing else changes.
        """
        live = self.live
        if k < 1 or live == 0:
            return [], []
        if allowed is not None:
            if allowed and max(allowed) > self._max_id:  # saved elsewhere since: not here
                allowed = [i for i in allowed if i <= self._max_id]
            if not allowed:
                return [], []
            if self.kind == "hnsw" and len(allowed) <= _EXACT_FILTER_LIMIT:
                return self._exact_among(query, k, allowed)
        threads = faiss.omp_get_max_threads()
        if threads != 1:
            faiss.omp_set_num_threads(1)
        try:
            if self.kind == "flat":
                scores, found = self._search_flat(query, k, allowed, live)
            else:
                scores, found = self._search_graph(query, k, allowed, live)
            fids, values = _found(scores, found)
            qualify = live if allowed is None else len(allowed)
            if len(fids) < min(k, qualify) and self.kind == "hnsw" and self._tombstones:
                fids, values = self._search_past_tombstones(query, k, allowed)
        finally:
            if threads != 1:
                faiss.omp_set_num_threads(threads)
        return fids, values

    def _search_past_tombstones(
        self, query: FloatArray, k: int, allowed: Sequence[int] | None
    ) -> tuple[list[int], list[float]]:
        """A graph walk came back short although enough vectors qualify: deleted vectors
        (kept in the graph until the next ``persist()`` rebuilds it) filled the efSearch
        candidates it looks at. Score the qualifying vectors exactly when they are few,
        else walk again looking at proportionally more candidates."""
        if allowed is None:
            ids = faiss.vector_to_array(self.index.id_map)
            dead = np.fromiter(self._tombstones, dtype=np.int64, count=len(self._tombstones))
            candidates: Sequence[int] = ids[~np.isin(ids, dead)].tolist()
        else:
            candidates = allowed
        if len(candidates) <= _EXACT_FILTER_LIMIT:
            return self._exact_among(query, k, candidates)
        ef = max(self.params.hnsw_ef_search, k)
        params = self._new_graph_params(min(self.ntotal, ef * self.ntotal // len(candidates) + k))
        selector = _batch_selector(allowed) if allowed is not None else self._live_selector()
        params.sel = selector  # referenced by ``selector`` until the search is done
        return _found(*self._run(query, min(k, len(candidates)), params))

    def _search_flat(
        self, query: FloatArray, k: int, allowed: Sequence[int] | None, live: int
    ) -> tuple[FloatArray, IdArray]:
        params = None
        limit = live
        if allowed is not None:
            # FAISS skips everything else while scanning: exact top-k among the matches
            selector = _batch_selector(allowed)  # referenced until the search is done
            params = faiss.SearchParameters()
            params.sel = selector
            limit = len(allowed)
        return self._run(query, min(k, limit), params)

    def _search_graph(
        self, query: FloatArray, k: int, allowed: Sequence[int] | None, live: int
    ) -> tuple[FloatArray, IdArray]:
        ef_search = max(self.params.hnsw_ef_search, k)
        selector = _batch_selector(allowed) if allowed is not None else self._live_selector()
        if selector is None and ef_search == self.params.hnsw_ef_search:
            if self._graph_params is None:
                self._graph_params = self._new_graph_params(ef_search)
            params = self._graph_params
        else:
            params = self._new_graph_params(ef_search)
            params.sel = selector  # referenced by ``selector`` until the search is done
        limit = len(allowed) if allowed is not None else live
        return self._run(query, min(k, limit), params)

    def _run(self, query: FloatArray, k: int, params: Any) -> tuple[FloatArray, IdArray]:
        """One query through FAISS's C++ search, without the Python wrapper's checks and
        conversions (``Index.search`` spends ~3 µs on them; the caller's query is
        already a contiguous float32 row, verified here since C++ trusts the buffer)."""
        query = np.ascontiguousarray(query, dtype=np.float32)
        if query.shape != (1, self._dimension):
            raise ValueError(f"expected one query row of {self._dimension}, got {query.shape}")
        distances = np.empty((1, k), dtype=np.float32)
        labels = np.empty((1, k), dtype=np.int64)
        self.index.search_c(  # type: ignore[attr-defined]  # the SWIG method, not in the stubs
            1, faiss.swig_ptr(query), k, faiss.swig_ptr(distances), faiss.swig_ptr(labels), params
        )
        return distances, labels

    @staticmethod
    def _new_graph_params(ef_search: int) -> Any:
        params = faiss.SearchParametersHNSW()  # type: ignore[attr-defined]  # not in the stubs
        params.efSearch = ef_search
        return params

    def _live_selector(self) -> faiss.IDSelector | None:
        """A selector excluding the tombstones, rebuilt only when they change."""
        if not self._tombstones:
            return None
        if self._excluded is None or self._excluded_of != len(self._tombstones):
            batch = _batch_selector(np.fromiter(self._tombstones, dtype=np.int64))
            self._excluded = faiss.IDSelectorNot(batch)
            self._excluded_batch = batch  # the C++ selector does not own what it wraps
            self._excluded_of = len(self._tombstones)
        return self._excluded

    def _exact_among(
        self, query: FloatArray, k: int, allowed: Sequence[int]
    ) -> tuple[list[int], list[float]]:
        ids = np.asarray(allowed, dtype=np.int64)
        try:
            vectors = self.index.reconstruct_batch(ids)
        except RuntimeError:  # an id without a vector here: keep those that have one
            ids = ids[np.isin(ids, faiss.vector_to_array(self.index.id_map))]
            if not len(ids):
                return [], []
            vectors = self.index.reconstruct_batch(ids)
        scores = vectors @ query[0]
        top = min(k, len(ids))
        best = np.argpartition(-scores, top - 1)[:top]
        best = best[np.argsort(-scores[best], kind="stable")]
        return ids[best].tolist(), scores[best].tolist()

    # ------------------------------------------------------------------ loading

    @classmethod
    def loaded(
        cls, index: faiss.IndexIDMap2, params: IndexParams, live_ids: IdArray
    ) -> VectorIndex:
        """Wrap an index read from disk; ids it holds that are not live become tombstones.

        Raises ``ValueError`` when a live id has no vector: the files disagree.
        """
        ids = faiss.vector_to_array(index.id_map).astype(np.int64)
        present = np.isin(live_ids, ids)
        if not present.all():
            raise ValueError(f"{int((~present).sum())} chunks have no vector")
        dead = ids[~np.isin(ids, live_ids)]
        return cls(index, params, dead if len(dead) else None)
