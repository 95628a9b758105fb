"""The offline default embedder: deterministic, normalised, lexically sensible, safe."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from langchain_core.embeddings import Embeddings

from sitechat.config import EmbeddingsSettings, Settings
from sitechat.embeddings.base import aembedder_info, embedder_info
from sitechat.embeddings.hashing import HashingEmbeddings
from sitechat.errors import ConfigurationError, ProviderError
from sitechat.vectorstores.base import EmbedderInfo


def cosine(a: list[float], b: list[float]) -> float:
    return float(np.dot(a, b))


@pytest.fixture
def embedder() -> HashingEmbeddings:
    return HashingEmbeddings()


def test_is_a_langchain_embeddings_with_identity(embedder: HashingEmbeddings) -> None:
    """It plugs in wherever LangChain expects Embeddings and names recipe and size."""
    assert isinstance(embedder, Embeddings)
    assert embedder.name == "hashing"
    assert embedder.dimension == 1024
    assert embedder.embedder_name == "hashing:v1:1024"
    assert HashingEmbeddings(dimension=256).embedder_name == "hashing:v1:256"


def test_vectors_have_the_declared_dimension_and_unit_length(embedder: HashingEmbeddings) -> None:
    """Every vector has ``dimension`` floats and L2 norm 1."""
    vectors = embedder.embed_documents(["Installing packages", "A second, longer passage."])
    assert [len(v) for v in vectors] == [1024, 1024]
    for vector in vectors:
        assert math.isclose(float(np.linalg.norm(vector)), 1.0, rel_tol=1e-5)


def test_documents_and_queries_share_one_space(embedder: HashingEmbeddings) -> None:
    """The same text embeds identically as a document and as a query."""
    text = "How do I configure logging?"
    assert embedder.embed_query(text) == embedder.embed_documents([text])[0]


def test_deterministic_within_a_process(embedder: HashingEmbeddings) -> None:
    """Embedding twice, alone or in a batch, gives the same numbers."""
    text = "Deterministic vectors for the same text"
    alone = embedder.embed_query(text)
    batch = embedder.embed_documents(["something else", text, "more"])[1]
    assert alone == embedder.embed_query(text)
    np.testing.assert_allclose(alone, batch, rtol=0, atol=1e-7)


def test_deterministic_across_processes(embedder: HashingEmbeddings) -> None:
    """A fresh interpreter (other hash seed) computes the very same vector."""
    text = "Tokenisation über Unicode: café, naïve, 日本語のテキスト"
    script = (
        "import sys, json\n"
        "from sitechat.embeddings.hashing import HashingEmbeddings\n"
        "print(json.dumps(HashingEmbeddings(dimension=64).embed_query(sys.argv[1])))\n"
    )
    output = subprocess.run(
        [sys.executable, "-c", script, text],
        capture_output=True,
        text=True,
        check=True,
        env={**os.environ, "PYTHONHASHSEED": "12345"},
    ).stdout
    assert json.loads(output) == HashingEmbeddings(dimension=64).embed_query(text)


def test_related_texts_are_closer_than_unrelated(embedder: HashingEmbeddings) -> None:
    """A question is nearer to a passage sharing its words' stems than to an unrelated one."""
    query = embedder.embed_query("how do I install the package")
    related = embedder.embed_query("Installing packages")
    unrelated = embedder.embed_query("the weather in Paris")
    assert cosine(query, related) > cosine(query, unrelated) + 0.3


def test_stemming_and_subwords_bring_word_forms_together(embedder: HashingEmbeddings) -> None:
    """Inflections and a typo still land near the base word; a different word does not."""
    install = embedder.embed_query("install")
    for variant in ("installing", "installed", "installs"):
        assert cosine(install, embedder.embed_query(variant)) > 0.9, variant
    unrelated = cosine(install, embedder.embed_query("weather"))
    assert cosine(install, embedder.embed_query("instal")) > unrelated + 0.1
    assert cosine(install, embedder.embed_query("installation")) > unrelated + 0.1


def test_stopwords_weigh_less_than_content_words(embedder: HashingEmbeddings) -> None:
    """Sharing only "the" and "of" matters less than sharing one content word."""
    base = embedder.embed_query("the history of python")
    assert cosine(base, embedder.embed_query("the summary of it")) < cosine(
        base, embedder.embed_query("python")
    )


def test_empty_and_symbol_only_texts_give_zero_vectors(embedder: HashingEmbeddings) -> None:
    """Nothing to embed gives an all-zero vector, never NaN."""
    for text in ("", "   ", "!!! ??? ---", "___"):
        vector = embedder.embed_query(text)
        assert len(vector) == 1024
        assert not any(vector)
    assert embedder.embed_documents([]) == []


@settings(max_examples=60, deadline=None)
@given(st.text(max_size=300))
def test_any_unicode_text_gives_a_finite_unit_or_zero_vector(text: str) -> None:
    """Arbitrary Unicode never produces NaN, infinity or a non-unit, non-zero vector."""
    vector = np.asarray(HashingEmbeddings(dimension=64).embed_query(text))
    assert np.isfinite(vector).all()
    norm = float(np.linalg.norm(vector))
    assert norm == 0.0 or math.isclose(norm, 1.0, rel_tol=1e-5)


@settings(max_examples=30, deadline=None)
@given(st.lists(st.text(max_size=80), max_size=8))
def test_a_batch_equals_its_texts_embedded_one_by_one(texts: list[str]) -> None:
    """Batching never changes a vector: no IDF, no cross-talk between texts."""
    embedder = HashingEmbeddings(dimension=32)
    batch = embedder.embed_documents(texts)
    for text, vector in zip(texts, batch, strict=True):
        np.testing.assert_allclose(vector, embedder.embed_query(text), rtol=0, atol=1e-6)


def test_cjk_text_is_split_into_characters(embedder: HashingEmbeddings) -> None:
    """Scripts without spaces still match on shared characters."""
    query = embedder.embed_query("東京の天気")
    assert cosine(query, embedder.embed_query("東京の天気予報")) > cosine(
        query, embedder.embed_query("大阪の料理")
    )


async def test_async_twins_match_the_sync_methods(embedder: HashingEmbeddings) -> None:
    """``aembed_*`` return what the sync methods return, small or large input."""
    small = ["short text"]
    large = ["word " * 3000, "another " * 2000]
    assert await embedder.aembed_documents(small) == embedder.embed_documents(small)
    assert await embedder.aembed_documents(large) == embedder.embed_documents(large)
    assert await embedder.aembed_query("a query") == embedder.embed_query("a query")
    assert await embedder.aembed_query(large[0]) == embedder.embed_query(large[0])


@pytest.mark.parametrize(
    ("model", "dimension"),
    [(None, 1024), ("v1", 1024), ("v1-2048", 2048), ("v1:384", 384)],
)
def test_from_settings_reads_recipe_and_dimension(model: str | None, dimension: int) -> None:
    """``SITECHAT_EMBEDDINGS__MODEL`` picks the size; the name's tail round-trips."""
    built = HashingEmbeddings.from_settings(Settings(embeddings=EmbeddingsSettings(model=model)))
    assert built.dimension == dimension
    assert built.model == "v1"


@pytest.mark.parametrize("model", ["v2", "v1-abc", "bert", "v1-8", "v1-9999999"])
def test_from_settings_rejects_unknown_models_naming_the_variable(model: str) -> None:
    """A bad model string fails at start-up and names the environment variable."""
    with pytest.raises(ConfigurationError, match="SITECHAT_EMBEDDINGS__MODEL"):
        HashingEmbeddings.from_settings(Settings(embeddings=EmbeddingsSettings(model=model)))


def test_embedder_info_uses_declared_identity(embedder: HashingEmbeddings) -> None:
    """sitechat's own embedders are identified without embedding anything."""
    assert embedder_info(embedder) == EmbedderInfo("hashing:v1:1024", 1024)
    assert embedder_info(embedder, name="ignored") == EmbedderInfo("hashing:v1:1024", 1024)


class _ForeignEmbeddings(Embeddings):
    """A LangChain embedder that knows nothing about sitechat."""

    model = "tiny-model"

    def __init__(self) -> None:
        self.calls = 0

    def embed_documents(self, texts: list[str]) -> list[list[float]]:
        return [self.embed_query(t) for t in texts]

    def embed_query(self, text: str) -> list[float]:
        self.calls += 1
        return [0.5, 0.5, 0.5]


async def test_embedder_info_probes_any_langchain_embedder() -> None:
    """Other embedders are measured once and named by class and model."""
    foreign = _ForeignEmbeddings()
    assert embedder_info(foreign) == EmbedderInfo("_ForeignEmbeddings:tiny-model", 3)
    assert embedder_info(foreign, name="custom") == EmbedderInfo("custom", 3)
    assert await aembedder_info(foreign) == EmbedderInfo("_ForeignEmbeddings:tiny-model", 3)
    assert foreign.calls == 3


def test_embedder_info_rejects_an_empty_probe_vector() -> None:
    """An embedder returning no numbers is reported, not recorded as dimension 0."""

    class Empty(_ForeignEmbeddings):
        def embed_query(self, text: str) -> list[float]:
            return []

    with pytest.raises(ProviderError, match="empty vector"):
        embedder_info(Empty())
