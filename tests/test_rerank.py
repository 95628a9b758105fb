"""Re-ranking fused results with an embedder's passage scorer, alone and in the retriever."""

from __future__ import annotations

from collections.abc import Sequence

import pytest
from hypothesis import given
from hypothesis import strategies as st

from sitechat.config import RetrievalSettings
from sitechat.embeddings.base import embedder_info
from sitechat.embeddings.static import StaticEmbeddings, TokenReranker
from sitechat.errors import ProviderError
from sitechat.models import Chunk, SearchHit
from sitechat.retrieval import hybrid
from sitechat.retrieval.hybrid import HybridRetriever
from sitechat.retrieval.rerank import PassageScorer, rerank_fused
from sitechat.testing.fakes import FakeEmbeddings, InMemoryVectorStore
from tests.passages import hit, passage


def ids(hits: Sequence[SearchHit]) -> list[str]:
    return [h.chunk.id for h in hits]


def test_no_scores_leaves_the_order_alone() -> None:
    """A scorer that cannot judge the query (None) changes nothing."""
    fused = [hit("a", 0), hit("b", 0), hit("c", 0)]
    assert ids(rerank_fused(fused, None, 3)) == ["a-0", "b-0", "c-0"]


def test_a_passage_first_by_score_and_close_in_fused_order_moves_up() -> None:
    """Second in fused order and first by score beats first in fused order and last by score."""
    fused = [hit("a", 0), hit("b", 0), hit("c", 0), hit("d", 0)]
    reranked = rerank_fused(fused, [0.1, 0.9, 0.5, 0.4], 4)
    assert ids(reranked)[0] == "b-0"


def test_one_weak_signal_does_not_bury_the_fused_leader() -> None:
    """Fusion, not replacement: the fused leader second by score stays above the score
    leader that fusion ranked last."""
    fused = [hit(p, 0) for p in "abcdefgh"]
    reranked = ids(rerank_fused(fused, [0.8, 0.1, 0.1, 0.1, 0.1, 0.1, 0.1, 0.9], 8))
    assert reranked.index("a-0") < reranked.index("h-0")


def test_only_the_head_is_reordered_and_the_tail_keeps_its_place() -> None:
    """Passages past the depth follow the re-ordered head in their fused order."""
    fused = [hit("a", 0), hit("b", 0), hit("c", 0), hit("d", 0)]
    reranked = rerank_fused(fused, [0.0, 1.0, 0.5], 3)
    assert ids(reranked) == ["b-0", "a-0", "c-0", "d-0"]


def test_a_score_count_that_does_not_match_is_refused() -> None:
    """One score per re-ordered passage, or a clear error instead of a silent mis-ranking."""
    with pytest.raises(ValueError, match="expected 3 passage scores, got 2"):
        rerank_fused([hit("a", 0), hit("b", 0), hit("c", 0)], [0.1, 0.2], 3)


@given(
    st.lists(st.tuples(st.sampled_from("abcde"), st.integers(0, 3)), unique=True, max_size=20),
    st.data(),
)
def test_reranking_returns_the_same_passages(
    keys: list[tuple[str, int]], data: st.DataObject
) -> None:
    """Re-ranking is a permutation of the fused passages: nothing added, lost or doubled."""
    fused = [hit(page, n) for page, n in keys]
    depth = data.draw(st.integers(0, 25))
    head = min(depth, len(fused))
    scores = data.draw(st.lists(st.floats(0, 1), min_size=head, max_size=head))
    assert sorted(ids(rerank_fused(fused, scores, depth))) == sorted(ids(fused))


class Favouring:
    """A passage scorer that prefers chunks holding one word, and counts its calls."""

    def __init__(self, favourite: str) -> None:
        super().__init__()
        self.favourite = favourite
        self.calls: list[int] = []

    def score_passages(self, query: str, chunks: Sequence[Chunk]) -> list[float]:
        self.calls.append(len(chunks))
        return [1.0 if self.favourite in c.text else 0.0 for c in chunks]


class ScoringEmbeddings(Favouring, FakeEmbeddings):
    """Fake embeddings with a passage scorer of their own."""


async def filled_store(embeddings: FakeEmbeddings) -> InMemoryVectorStore:
    """Four pages about installing; only the last one mentions the favourite word."""
    store = InMemoryVectorStore(embedder_info(embeddings))
    texts = {
        "one": "install the package with pip install",
        "two": "install from source with pip and a compiler",
        "three": "install on windows with the pip installer",
        "four": "install offline: pip can read a wheelhouse folder",
    }
    chunks = [
        passage(text, page, url=f"https://d/{page}", title=page) for page, text in texts.items()
    ]
    await store.upsert(chunks, embeddings.embed_documents([c.text for c in chunks]))
    return store


@pytest.mark.parametrize("mode", ["hybrid", "dense"])
async def test_the_retriever_reranks_with_the_embedder_scorer(mode: str) -> None:
    """In hybrid and dense mode the scorer sees the fused passages and can lift one up."""
    embeddings = ScoringEmbeddings("wheelhouse")
    store = await filled_store(embeddings)
    unranked = RetrievalSettings(mode=mode, token_rerank=False)  # type: ignore[arg-type]
    plain = HybridRetriever(store, FakeEmbeddings(), unranked)
    scored = HybridRetriever(store, embeddings, RetrievalSettings(mode=mode))  # type: ignore[arg-type]
    before = ids((await plain.retrieve("how do I install with pip")).hits)
    after = ids((await scored.retrieve("how do I install with pip")).hits)
    assert before.index("four") == 3 and after.index("four") < 3
    assert embeddings.calls == [4]
    assert isinstance(embeddings, PassageScorer)


async def test_depth_zero_and_keyword_mode_do_not_rerank() -> None:
    """``rerank_depth=0`` turns re-ranking off; keyword mode never consults the embedder."""
    embeddings = ScoringEmbeddings("wheelhouse")
    store = await filled_store(embeddings)
    for settings in (RetrievalSettings(rerank_depth=0), RetrievalSettings(mode="keyword")):
        await HybridRetriever(store, embeddings, settings).retrieve("how do I install with pip")
    assert embeddings.calls == []


async def test_a_scorer_giving_the_wrong_count_fails_clearly() -> None:
    """A plugin scorer's wrong score count is a provider error saying how to turn it off."""

    class Broken(ScoringEmbeddings):
        def score_passages(self, query: str, chunks: Sequence[Chunk]) -> list[float]:
            return [1.0]

    embeddings = Broken("wheelhouse")
    retriever = HybridRetriever(await filled_store(embeddings), embeddings)
    with pytest.raises(ProviderError, match=r"returned 1 scores for 4 passages.*RERANK_DEPTH=0"):
        await retriever.retrieve("how do I install with pip")


def test_the_offline_default_is_a_passage_scorer() -> None:
    """The static embedder offers token-level scoring, so the default setup re-ranks."""
    assert isinstance(StaticEmbeddings(), PassageScorer)
    assert RetrievalSettings().rerank_depth == 40


class SpyReranker(Favouring, TokenReranker):
    """The bundled token re-ranker (its table loading included), scoring as ``Favouring``."""


async def test_an_embedder_without_a_scorer_is_reranked_with_the_token_table(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """MiniLM, OpenAI, Bedrock and plugin embedders have no scorer: the bundled token table
    re-ranks their results (loaded off the event loop on first use), unless turned off."""
    spy = SpyReranker("wheelhouse")
    monkeypatch.setattr(hybrid, "_TOKEN_RERANKER", spy)
    embeddings = FakeEmbeddings()
    store = await filled_store(embeddings)
    off = RetrievalSettings(token_rerank=False)
    before = ids((await HybridRetriever(store, embeddings, off).retrieve("install with pip")).hits)
    assert spy.calls == [] and not spy.loaded
    after = ids((await HybridRetriever(store, embeddings).retrieve("install with pip")).hits)
    assert spy.calls == [4] and spy.loaded
    assert after.index("four") < before.index("four")


async def test_the_embedders_own_scorer_comes_before_the_token_table(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """An embedder with ``score_passages`` is re-ranked by it alone."""
    spy = SpyReranker("wheelhouse")
    monkeypatch.setattr(hybrid, "_TOKEN_RERANKER", spy)
    embeddings = ScoringEmbeddings("compiler")
    await HybridRetriever(await filled_store(embeddings), embeddings).retrieve("install with pip")
    assert embeddings.calls == [4] and spy.calls == []


def test_the_token_reranker_scores_as_the_offline_embedder_does() -> None:
    """The fallback is the static embedder's own token matcher on the same table."""
    chunks = [passage(text, f"c{n}") for n, text in enumerate(["pip install", "a wheelhouse"])]
    query = "install a package offline"
    fallback = TokenReranker().score_passages(query, chunks)
    own = StaticEmbeddings().score_passages(query, chunks)
    assert fallback is not None and own is not None
    assert list(fallback) == list(own)
