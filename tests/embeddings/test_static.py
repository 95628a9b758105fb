"""The ``static`` embedder: the shipped token table, its tokenizer, and its failure modes."""

from __future__ import annotations

import subprocess
import sys
import zipfile
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from langchain_core.embeddings import Embeddings

from sitechat.config import Settings
from sitechat.embeddings._wordpiece import WordPieceTokenizer, basic_words
from sitechat.embeddings.base import embedder_info
from sitechat.embeddings.static import DEFAULT_TABLE, RECIPE, StaticEmbeddings, load_table
from sitechat.errors import ConfigurationError
from sitechat.testing.conformance import EmbeddingsConformance


@pytest.fixture(scope="module")
def model() -> StaticEmbeddings:
    embeddings = StaticEmbeddings()
    assert embeddings.table.dimension > 0  # loaded once for the module
    return embeddings


def _cosine(a: list[float], b: list[float]) -> float:
    return float(np.dot(a, b))


class TestStaticEmbeddings(EmbeddingsConformance):
    """The shipped table passes the kit every embedder passes."""

    @pytest.fixture
    def embeddings(self) -> Embeddings:
        return StaticEmbeddings()


# ---------------------------------------------------------------------- vectors


def test_identity_names_recipe_and_dimension(model: StaticEmbeddings) -> None:
    """The index records the recipe and dimension, so another table's index is refused."""
    info = embedder_info(model)
    assert info.name == f"static:{RECIPE}:{model.dimension}"
    assert info.dimension == model.dimension == len(model.embed_query("probe"))


def test_vectors_are_unit_and_deterministic(model: StaticEmbeddings) -> None:
    """Every non-empty text gives a unit vector, the same on every call."""
    texts = ["Install the package with pip.", "os.path.getsize(path)", "naïve café"]
    first = np.asarray(model.embed_documents(texts))
    again = np.asarray(model.embed_documents(texts))
    np.testing.assert_array_equal(first, again)
    np.testing.assert_allclose(np.linalg.norm(first, axis=1), 1.0, atol=1e-5)


def test_batch_equals_single(model: StaticEmbeddings) -> None:
    """A text's vector does not depend on the batch it is embedded in."""
    texts = ["How do I read a file?", "", "Sorting HOW TO", "λ calculus 日本語"]
    batch = model.embed_array(texts)
    for text, row in zip(texts, batch, strict=True):
        np.testing.assert_allclose(row, model.embed_query(text), atol=1e-6)


def test_empty_and_symbol_only_texts(model: StaticEmbeddings) -> None:
    """An empty or whitespace text is the zero vector; punctuation alone still embeds."""
    assert not any(model.embed_query(""))
    assert not any(model.embed_query(" \n\t "))
    assert np.linalg.norm(model.embed_query("?!")) == pytest.approx(1.0, abs=1e-5)


def test_unicode_texts_embed(model: StaticEmbeddings) -> None:
    """Accents, emoji, CJK and control characters embed without error."""
    for text in ("Texte accentué 🦓", "日本語のテキスト", "a\x00b\u200bc", "\ufffd" * 3, "x" * 500):
        vector = model.embed_query(text)
        assert len(vector) == model.dimension
        assert all(np.isfinite(vector))


def test_accents_do_not_matter(model: StaticEmbeddings) -> None:
    """Like MiniLM's tokenizer, the embedder strips accents and case."""
    np.testing.assert_allclose(model.embed_query("Café NAÏVE"), model.embed_query("cafe naive"))


def test_paraphrases_are_closer_than_unrelated_text(model: StaticEmbeddings) -> None:
    """The point of the table: paraphrases with no shared word still match."""
    query = model.embed_query("delete a folder")
    assert _cosine(query, model.embed_query("remove a directory")) > _cosine(
        query, model.embed_query("the weather is sunny in spring")
    )
    size = model.embed_query("how big is a file")
    assert _cosine(size, model.embed_query("Return the size, in bytes, of path.")) > _cosine(
        size, model.embed_query("Return a random integer between a and b.")
    )


async def test_async_matches_sync(model: StaticEmbeddings) -> None:
    """The async methods return what the sync ones do (inline or in a thread)."""
    texts = ["short", "long " * 6000]
    np.testing.assert_allclose(
        await model.aembed_documents(texts), model.embed_documents(texts), atol=1e-6
    )
    assert await model.aembed_query("a question") == model.embed_query("a question")
    fresh = StaticEmbeddings()  # not loaded yet: loads in a worker thread
    assert await fresh.aembed_query("a question") == model.embed_query("a question")


def test_settings_choose_the_recipe() -> None:
    """``SITECHAT_EMBEDDINGS__MODEL`` unset or the recipe name works; anything else is refused."""
    settings = Settings.load(env_file=None)
    assert StaticEmbeddings.from_settings(settings).model == RECIPE
    named = settings.model_copy(
        update={"embeddings": settings.embeddings.model_copy(update={"model": RECIPE})}
    )
    assert StaticEmbeddings.from_settings(named).model == RECIPE
    with pytest.raises(ConfigurationError, match="SITECHAT_EMBEDDINGS__MODEL"):
        StaticEmbeddings(model="minilm-v0")


def test_fusion_and_threshold_are_declared(model: StaticEmbeddings) -> None:
    """The retriever reads a positive fusion weight and a cosine threshold in (0, 1)."""
    assert model.fusion_weight > 0
    assert 0 < model.relevance_threshold < 1


def test_loading_needs_no_torch() -> None:
    """Embedding imports neither torch nor any tokenizer library, in a fresh interpreter."""
    code = (
        "import sys\n"
        "from sitechat.embeddings.static import StaticEmbeddings\n"
        "e = StaticEmbeddings()\n"
        "assert len(e.embed_documents(['How do I sort a list?'])[0]) == e.dimension\n"
        "heavy = {'torch', 'transformers', 'tokenizers', 'sentence_transformers'}\n"
        "assert not heavy & set(sys.modules), heavy & set(sys.modules)\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr


# ---------------------------------------------------------------------- the data file


def _write_table(path: Path, **overrides: np.ndarray) -> Path:
    arrays = {
        "format_version": np.int32(1),
        "recipe": np.frombuffer(RECIPE.encode(), dtype=np.uint8),
        "vectors": np.ones((3, 4), dtype=np.int8),
        "scales": np.ones(3, dtype=np.float32),
        "vocabulary": np.frombuffer(b"[UNK]\nhello\n##s", dtype=np.uint8),
    }
    arrays.update(overrides)
    np.savez(path, **{k: v for k, v in arrays.items() if v.size or k != "drop"})
    return path


def test_a_small_valid_table_loads(tmp_path: Path) -> None:
    """A well-formed file loads and embeds with its own vocabulary."""
    path = _write_table(tmp_path / "t.npz")
    embeddings = StaticEmbeddings(table_path=path)
    assert embeddings.dimension == 4
    assert embeddings.embed_query("hellos") == pytest.approx([0.5] * 4)


@pytest.mark.parametrize(
    ("overrides", "problem"),
    [
        ({"format_version": np.int32(9)}, "format is not version"),
        ({"vectors": np.ones((3, 4), dtype=np.float64)}, "not a 2-D int8"),
        ({"scales": np.ones(2, dtype=np.float32)}, "scales do not match"),
        ({"scales": np.array([1, np.nan, 1], dtype=np.float32)}, "not finite"),
        ({"vocabulary": np.frombuffer(b"[UNK]\nhello", dtype=np.uint8)}, "vocabulary does not"),
        ({"vocabulary": np.frombuffer(b"a\nb\nc", dtype=np.uint8)}, "no \\[UNK\\]"),
        ({"vocabulary": np.frombuffer(b"\xff\xfe\n", dtype=np.uint8)}, "not UTF-8"),
    ],
)
def test_a_bad_table_is_refused_clearly(
    tmp_path: Path, overrides: dict[str, np.ndarray], problem: str
) -> None:
    """Each kind of damage is named, with what to do about it."""
    path = _write_table(tmp_path / "t.npz", **overrides)
    with pytest.raises(ConfigurationError, match=problem) as caught:
        load_table(path)
    assert "Reinstall" in str(caught.value)


def test_truncated_missing_or_incomplete_files_are_refused(tmp_path: Path) -> None:
    """A cut-off file, a missing file and a file lacking arrays give clear errors."""
    cut = tmp_path / "cut.npz"
    cut.write_bytes(DEFAULT_TABLE.read_bytes()[:5000])
    with pytest.raises(ConfigurationError, match="cannot be read"):
        load_table(cut)
    with pytest.raises(ConfigurationError, match="missing"):
        load_table(tmp_path / "absent.npz")
    plain = tmp_path / "plain.npy"
    np.save(plain, np.ones(3))
    with pytest.raises(ConfigurationError, match=r"not a \.npz"):
        load_table(plain)
    partial = tmp_path / "partial.npz"
    np.savez(partial, vectors=np.ones((1, 1), dtype=np.int8))
    with pytest.raises(ConfigurationError, match="lacks"):
        load_table(partial)


def test_pickled_arrays_are_never_loaded(tmp_path: Path) -> None:
    """An object array (which would need pickle) is refused, not unpickled."""
    path = tmp_path / "pickled.npz"
    with zipfile.ZipFile(path, "w") as archive, archive.open("vectors.npy", "w") as member:
        np.save(member, np.array([{"a": 1}], dtype=object), allow_pickle=True)
    with pytest.raises(ConfigurationError):
        load_table(path)


def test_another_recipe_is_refused(tmp_path: Path) -> None:
    """A table built by another recipe is not used under this recipe's name."""
    path = _write_table(tmp_path / "t.npz", recipe=np.frombuffer(b"other-v9", dtype=np.uint8))
    with pytest.raises(ConfigurationError, match="other-v9"):
        StaticEmbeddings(table_path=path).embed_query("hello")


# ---------------------------------------------------------------------- the tokenizer


@pytest.fixture(scope="module")
def tokenizer(model: StaticEmbeddings) -> WordPieceTokenizer:
    return model.table.tokenizer


def test_greedy_longest_match() -> None:
    """Words split into the longest known pieces; an unsplittable word is [UNK]."""
    toy = WordPieceTokenizer(["[UNK]", "un", "##aff", "##able", "##a", "run", "##ning", ","])
    assert toy.encode("Unaffable, running") == [1, 2, 3, 7, 5, 6]
    assert toy.encode("xyz") == [0]
    assert toy.encode("unx") == [0]


def test_basic_words_split_like_bert() -> None:
    """Punctuation and ASCII symbols stand alone, CJK ideographs too; accents go."""
    assert basic_words("os.path.getsize(p)") == ["os", ".", "path", ".", "getsize", "(", "p", ")"]
    assert basic_words("snake_case $x") == ["snake", "_", "case", "$", "x"]
    assert basic_words("Élan 日本") == ["elan", "日", "本"]
    assert basic_words("a\u200bb c\u00a0d") == ["ab", "c", "d"]


@settings(max_examples=200, deadline=None)
@given(st.text(max_size=200))
def test_tokenizer_never_raises_and_ids_are_in_range(
    tokenizer: WordPieceTokenizer, text: str
) -> None:
    """Any text tokenizes, into ids of the vocabulary."""
    ids = tokenizer.encode(text)
    assert all(0 <= i < tokenizer.size for i in ids)


@settings(max_examples=100, deadline=None)
@given(st.lists(st.sampled_from(["file", "directory", "sort", "list", "python"]), max_size=8))
def test_known_words_round_trip(tokenizer: WordPieceTokenizer, words: list[str]) -> None:
    """Words of the vocabulary come back as one token each, in order."""
    ids = tokenizer.encode(" ".join(words))
    assert ids == [tokenizer.encode(w)[0] for w in words]
    assert all(len(tokenizer.encode(w)) == 1 for w in words)


def test_recorded_name_rebuilds_the_same_embedder() -> None:
    """The model tail of an index's recorded name (``minilm-v1:256``) gives the same vectors;
    a size the table does not have is refused with what to do."""
    plain = StaticEmbeddings()
    _, _, tail = plain.embedder_name.partition(":")
    rebuilt = StaticEmbeddings(model=tail)
    assert rebuilt.embedder_name == plain.embedder_name
    assert rebuilt.embed_query("open a file") == plain.embed_query("open a file")
    with pytest.raises(ConfigurationError, match="Re-ingest"):
        _ = StaticEmbeddings(model="minilm-v1:999").dimension
    with pytest.raises(ConfigurationError, match="no model"):
        StaticEmbeddings(model="minilm-v1:big")
