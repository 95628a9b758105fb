"""Token-level passage scoring with a static table (what the retriever re-ranks with)."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from sitechat.embeddings import _token_match
from sitechat.embeddings._token_match import TokenMatcher
from sitechat.embeddings._wordpiece import WordPieceTokenizer
from sitechat.embeddings.static import StaticEmbeddings
from tests.passages import passage

VOCABULARY = ["[UNK]", "apple", "fruit", "car", "how", "void"]
VECTORS = np.array(
    [[0.0, 0.0], [2.0, 0.0], [0.8, 0.6], [0.0, 1.0], [0.1, 0.0], [0.0, 0.0]], dtype=np.float32
)


@pytest.fixture
def matcher() -> TokenMatcher:
    return TokenMatcher(VECTORS, WordPieceTokenizer(VOCABULARY))


def test_each_query_token_takes_its_best_match_weighted_by_its_length(
    matcher: TokenMatcher,
) -> None:
    """(|apple| cos(apple, best) + |how| cos(how, best)) / (|apple| + |how|), per passage."""
    scores = matcher.scores("apple how", [passage("fruit"), passage("car"), passage("car apple")])
    assert scores is not None
    assert scores.tolist() == pytest.approx([0.8, 0.0, 1.0])


def test_a_passage_without_tokens_scores_zero(matcher: TokenMatcher) -> None:
    """An empty passage (or one of zero vectors) matches nothing, and breaks nothing."""
    scores = matcher.scores("apple", [passage(""), passage("void"), passage("fruit")])
    assert scores is not None
    assert scores.tolist() == pytest.approx([0.0, 0.0, 0.8])


def test_a_query_without_weighted_tokens_cannot_be_judged(matcher: TokenMatcher) -> None:
    """No tokens, or only zero vectors: None, so the retriever keeps its own order."""
    assert matcher.scores("", [passage("apple")]) is None
    assert matcher.scores("void", [passage("apple")]) is None


def test_the_token_cache_follows_content_and_stays_bounded(
    matcher: TokenMatcher, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A chunk id whose text changed is tokenised again; old entries leave past the bound."""
    monkeypatch.setattr(_token_match, "_CACHE_SIZE", 2)
    assert matcher.scores("apple", [passage("apple", "x")]).tolist() == [1.0]  # type: ignore[union-attr]
    assert matcher.scores("apple", [passage("car", "x")]).tolist() == [0.0]  # type: ignore[union-attr]
    matcher.scores("apple", [passage("fruit", "y")])
    assert len(matcher._tokens) == 2


def test_the_shipped_table_prefers_the_passage_about_the_question() -> None:
    """With the real table, the passage holding the question's topic words scores higher."""
    scores = StaticEmbeddings().score_passages(
        "how do I find out which functions make my program slow",
        [
            passage("Sorting HOW TO: lists have a built-in sort method that modifies the list."),
            passage("The Python profilers: cProfile measures how often functions run."),
        ],
    )
    assert scores is not None
    assert scores[1] > scores[0]


@given(st.text(max_size=200))
def test_distinct_tokens_are_the_set_of_encoded_tokens(text: str) -> None:
    """Looking each distinct word up once gives exactly the tokens ``encode`` produces."""
    tokenizer = StaticEmbeddings().table.tokenizer
    assert tokenizer.distinct(text) == set(tokenizer.encode(text))
