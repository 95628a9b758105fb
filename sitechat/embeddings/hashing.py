"""The offline default embedder: signed feature hashing of words, word pairs and subwords.

It needs no download, no GPU and no network, so ``sitechat ingest`` works on a fresh machine,
in CI and in air-gapped deployments. It is a lexical model: it finds passages that share
words (and, through character n-grams, word pieces and near-typos) with the question, not
paraphrases. Configure a neural embedder for semantic matching.

Recipe ``v1`` (the name in :attr:`HashingEmbeddings.embedder_name` changes with the recipe,
so an index built by another recipe is refused rather than silently searched wrongly):

* tokens: the lower-cased text split into Unicode letter/digit runs; each CJK ideograph or
  kana is a token of its own, because those scripts do not separate words with spaces;
* light English stemming (plural, ``-ing``, ``-ed``, final ``e``) so "installing",
  "installs" and "install" meet;
* features: each stem (weight 1, or 0.2 for a built-in list of English stopwords), pairs of
  consecutive non-stopword stems (0.7), and the character 3-5-grams of each non-stopword
  stem (energy 0.5 shared among them: subword and typo robustness);
* sublinear term frequency ``1 + ln(tf)`` per stem and per pair; no IDF, so a vector depends
  only on its own text and documents can be embedded one batch at a time;
* every feature is hashed with BLAKE2b (never Python's salted ``hash()``) to a bucket and a
  sign, then the vector is L2-normalised (an empty text gives the zero vector).

Vectors are the same across processes, machines and Python versions (to float rounding,
and up to characters added in newer Unicode versions). Per-token features are cached, and
each batch is summed with one ``numpy.bincount``: thousands of 1000-character chunks per
second, with no model to load.
"""

from __future__ import annotations

import hashlib
import re
from collections import Counter
from collections.abc import Sequence
from functools import lru_cache
from itertools import filterfalse, pairwise
from typing import TYPE_CHECKING, ClassVar

import numpy as np
import numpy.typing as npt

from sitechat._text import ENGLISH_STOPWORDS
from sitechat.embeddings.base import ArrayEmbeddings
from sitechat.errors import ConfigurationError

if TYPE_CHECKING:
    from typing_extensions import Self

    from sitechat.config import Settings

__all__ = ["ENGLISH_STOPWORDS", "HashingEmbeddings", "embed_texts"]

_RECIPE = "v1"
_MIN_DIMENSION = 16
_MAX_DIMENSION = 65_536

_STOPWORD_WEIGHT = 0.2
_BIGRAM_WEIGHT = 0.7
_CHAR_NGRAM_ENERGY = 0.5
_CHAR_NGRAM_SIZES = (3, 4, 5)
# Beyond this a token is an identifier, hash or blob: its n-grams would only add noise.
_MAX_NGRAM_TOKEN_LENGTH = 32

# Texts this short are embedded on the event loop: a thread hop would cost more.
_INLINE_CHARS = 20_000
_BATCH_TEXTS = 512

_CJK = "\u3040-\u30ff\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff"
_TOKEN_RE = re.compile(rf"[{_CJK}]|[^\W_{_CJK}]+")
_ASCII_TOKEN_RE = re.compile(r"[a-z0-9]+")


_U64 = np.uint64
_MIX_1 = _U64(0x9E3779B97F4A7C15)
_MIX_2 = _U64(0xBF58476D1CE4E5B9)
_MIX_3 = _U64(0x94D049BB133111EB)

FloatArray = npt.NDArray[np.float32]
IntArray = npt.NDArray[np.int64]


@lru_cache(maxsize=1 << 18)
def _stem(word: str) -> str:
    """Strip common English inflections so that word forms of one lemma usually meet."""
    if len(word) <= 3 or not (word.isascii() and word.isalpha()):
        return word
    if word.endswith("ies") and len(word) > 4:
        word = word[:-3] + "y"
    elif word.endswith("sses"):
        word = word[:-2]
    elif word.endswith("s") and not word.endswith(("ss", "us", "is")):
        word = word[:-1]
    elif word.endswith("ing") and len(word) >= 6:
        word = _undouble(word[:-3])
    elif word.endswith("ed") and len(word) >= 5:
        word = _undouble(word[:-2])
    if word.endswith("e") and len(word) > 3:
        word = word[:-1]
    return word


def _undouble(stem: str) -> str:
    """``runn`` -> ``run``: the doubled consonant an -ing/-ed suffix adds."""
    if len(stem) > 3 and stem[-1] == stem[-2] and stem[-1] not in "aeiouls":
        return stem[:-1]
    return stem


_STOP_STEMS = frozenset(_stem(word) for word in ENGLISH_STOPWORDS)


def _digest(feature: str) -> bytes:
    """A stable 64-bit hash of a feature, as 8 little-endian bytes."""
    return hashlib.blake2b(feature.encode("utf-8"), digest_size=8).digest()


@lru_cache(maxsize=1 << 17)
def _stem_features(stem: str) -> bytes:
    """The packed 64-bit hashes of ``stem``'s features: the stem, then its character n-grams.

    A stopword has no n-grams, and any other stem has at least one (``<a>``), which is how
    :meth:`_Batch.vectors` tells them apart. Packed bytes rather than arrays: compact in the
    cache, and a batch turns all of them into one array with a single ``frombuffer``.
    """
    if stem in _STOP_STEMS:
        return _digest("w\x1f" + stem)
    marked = f"<{stem[:_MAX_NGRAM_TOKEN_LENGTH]}>"
    grams = [marked[i : i + n] for n in _CHAR_NGRAM_SIZES for i in range(len(marked) - n + 1)]
    return _digest("w\x1f" + stem) + b"".join([_digest("c\x1f" + gram) for gram in grams])


def _buckets_and_signs(
    hashes: npt.NDArray[np.uint64], dimension: int
) -> tuple[IntArray, npt.NDArray[np.float64]]:
    """Bucket from the high 63 bits, sign from the lowest: independent enough for hashing."""
    buckets = ((hashes >> _U64(1)) % _U64(dimension)).astype(np.int64)
    signs = 1.0 - 2.0 * (hashes & _U64(1)).astype(np.float64)
    return buckets, signs


def _mix(a: npt.NDArray[np.uint64], b: npt.NDArray[np.uint64]) -> npt.NDArray[np.uint64]:
    """An order-sensitive 64-bit hash of two hashes (splitmix64 finaliser), vectorised."""
    h: npt.NDArray[np.uint64] = a * _MIX_1 ^ (b + _MIX_2)
    h ^= h >> _U64(30)
    h *= _MIX_2
    h ^= h >> _U64(27)
    h *= _MIX_3
    h ^= h >> _U64(31)
    return h


def _tokens(text: str) -> list[str]:
    lowered = text.lower()
    # the same tokens as _TOKEN_RE on ASCII text, found a third faster
    finder = _ASCII_TOKEN_RE if lowered.isascii() else _TOKEN_RE
    return list(map(_stem, finder.findall(lowered)))


class _Batch:
    """Sparse (row, feature, weight) triples of a batch of texts, gathered in plain lists."""

    def __init__(self) -> None:
        self.vocab: dict[str, int] = {}
        self.term_ids: list[int] = []
        self.term_counts: list[int] = []
        self.term_lengths: list[int] = []
        self.pair_left: list[int] = []
        self.pair_right: list[int] = []
        self.pair_counts: list[int] = []
        self.pair_lengths: list[int] = []

    def add(self, text: str) -> None:
        # C-level iteration throughout: this loop runs once per chunk of the whole site.
        stems = _tokens(text)
        vocab = self.vocab
        terms = Counter(stems)
        unseen = terms.keys() - vocab.keys()
        vocab.update(zip(unseen, range(len(vocab), len(vocab) + len(unseen)), strict=True))
        self.term_ids.extend(map(vocab.__getitem__, terms))
        self.term_counts.extend(terms.values())
        self.term_lengths.append(len(terms))
        content = list(map(vocab.__getitem__, filterfalse(_STOP_STEMS.__contains__, stems)))
        pairs = Counter(pairwise(content))
        if pairs:
            left, right = zip(*pairs, strict=True)
            self.pair_left.extend(left)
            self.pair_right.extend(right)
            self.pair_counts.extend(pairs.values())
        self.pair_lengths.append(len(pairs))

    def vectors(self, dimension: int) -> FloatArray:
        rows_n = len(self.term_lengths)
        features = [_stem_features(s) for s in self.vocab]
        if not features:
            return np.zeros((rows_n, dimension), dtype=np.float32)
        lengths = np.fromiter(map(len, features), dtype=np.int64, count=len(features)) // 8
        starts = np.cumsum(lengths) - lengths
        all_hashes = np.frombuffer(b"".join(features), dtype="<u8").astype(np.uint64)
        all_buckets, signs = _buckets_and_signs(all_hashes, dimension)
        # n-grams share a fixed energy; the stem itself comes first in its run
        grams = lengths - 1
        all_weights = np.repeat(_CHAR_NGRAM_ENERGY / np.sqrt(np.maximum(grams, 1)), lengths)
        all_weights[starts] = np.where(grams == 0, _STOPWORD_WEIGHT, 1.0)
        all_weights *= signs

        # every (text, stem) entry expands into that stem's run of features
        term_ids = np.asarray(self.term_ids, dtype=np.int64)
        term_tf = 1.0 + np.log(np.asarray(self.term_counts, dtype=np.float64))
        term_rows = np.repeat(np.arange(rows_n, dtype=np.int64), self.term_lengths)
        expand = lengths[term_ids]
        offsets = np.repeat(starts[term_ids] - (np.cumsum(expand) - expand), expand)
        gather = offsets + np.arange(int(expand.sum()))
        flat = np.repeat(term_rows * dimension, expand) + all_buckets[gather]
        weights = all_weights[gather] * np.repeat(term_tf, expand)

        if self.pair_counts:
            stem_hashes = all_hashes[starts]
            pair_hashes = _mix(
                stem_hashes[np.asarray(self.pair_left)], stem_hashes[np.asarray(self.pair_right)]
            )
            buckets, signs = _buckets_and_signs(pair_hashes, dimension)
            pair_tf = 1.0 + np.log(np.asarray(self.pair_counts, dtype=np.float64))
            pair_rows = np.repeat(np.arange(rows_n, dtype=np.int64), self.pair_lengths)
            flat = np.concatenate([flat, pair_rows * dimension + buckets])
            weights = np.concatenate([weights, _BIGRAM_WEIGHT * pair_tf * signs])

        summed = np.bincount(flat, weights=weights, minlength=rows_n * dimension)
        matrix = summed.reshape(rows_n, dimension)
        norms = np.linalg.norm(matrix, axis=1, keepdims=True)
        np.divide(matrix, norms, out=matrix, where=norms > 0)
        return matrix.astype(np.float32)


def embed_texts(texts: Sequence[str], dimension: int) -> FloatArray:
    """Embed ``texts`` into an ``(n, dimension)`` float32 array of unit (or zero) rows."""
    parts = []
    # bounds the dense (rows x dimension) float64 sum to 32 MB whatever the dimension
    rows_per_batch = max(1, min(_BATCH_TEXTS, (1 << 22) // dimension))
    for start in range(0, len(texts), rows_per_batch):
        batch = _Batch()
        for text in texts[start : start + rows_per_batch]:
            batch.add(text)
        parts.append(batch.vectors(dimension))
    if not parts:
        return np.zeros((0, dimension), dtype=np.float32)
    return parts[0] if len(parts) == 1 else np.concatenate(parts)


def _parse_model(model: str | None) -> tuple[str, int | None]:
    """``"v1"``, ``"v1-2048"`` or ``"v1:2048"`` -> recipe and optional dimension.

    The colon form is the tail of :attr:`HashingEmbeddings.embedder_name`, so the embedder
    recorded in an index can be rebuilt from its name.
    """
    if not model:
        return _RECIPE, None
    recipe, _, size = model.strip().replace(":", "-").partition("-")
    if recipe != _RECIPE or (size and not size.isdigit()):
        raise ConfigurationError(
            f"SITECHAT_EMBEDDINGS__MODEL: the hashing embedder has no model {model!r}. "
            f"Use '{_RECIPE}' or '{_RECIPE}-<dimension>' (e.g. '{_RECIPE}-2048'), or unset it."
        )
    return recipe, int(size) if size else None


class HashingEmbeddings(ArrayEmbeddings):
    """Offline, deterministic lexical embeddings: no data file at all, words only.

    ``HashingEmbeddings(dimension=1024, model="v1")``. In settings, choose the dimension with
    ``SITECHAT_EMBEDDINGS__MODEL=v1-2048`` (recipe, dash, dimension; ``v1:2048`` works too);
    ``v1`` alone means 1024.
    """

    name: ClassVar[str] = "hashing"
    inline_chars: ClassVar[int] = _INLINE_CHARS

    def __init__(self, dimension: int = 1024, model: str = _RECIPE) -> None:
        if model != _RECIPE:
            raise ConfigurationError(
                f"The hashing embedder has no recipe {model!r}; the only one is '{_RECIPE}'."
            )
        if not _MIN_DIMENSION <= dimension <= _MAX_DIMENSION:
            raise ConfigurationError(
                f"The hashing embedder's dimension must be between {_MIN_DIMENSION} and "
                f"{_MAX_DIMENSION}, not {dimension}. Fix SITECHAT_EMBEDDINGS__MODEL "
                f"(e.g. '{_RECIPE}-1024')."
            )
        self._dimension = dimension
        self._model = model

    @classmethod
    def from_settings(cls, settings: Settings) -> Self:
        """Build from ``settings.embeddings.model`` (``None``, ``"v1"`` or ``"v1-<dim>"``)."""
        recipe, dimension = _parse_model(settings.embeddings.model)
        if dimension is None:
            return cls(model=recipe)
        return cls(dimension=dimension, model=recipe)

    @property
    def relevance_threshold(self) -> float:
        """Cosine at or above which a passage is relevant on its own (calibrated on docs sites).

        Off-topic questions score below about 0.18 against documentation; the retriever
        also accepts passages that share most of the question's words.
        """
        return 0.2

    @property
    def fusion_weight(self) -> float:
        """Weight of this embedder's ranking in hybrid fusion, relative to BM25's 1.0.

        Its vectors are lexical, like BM25 but without term rarity, so its ranking is the
        weaker of the two; measured on documentation question sets (docs/retrieval.md).
        """
        return 0.7

    @property
    def dimension(self) -> int:
        """Length of every vector this embedder returns."""
        return self._dimension

    @property
    def model(self) -> str:
        """The feature recipe, e.g. ``"v1"``."""
        return self._model

    @property
    def embedder_name(self) -> str:
        """Identity recorded in an index: recipe and dimension, e.g. ``hashing:v1:1024``."""
        return f"{self.name}:{self._model}:{self._dimension}"

    def embed_array(self, texts: Sequence[str]) -> FloatArray:
        """Embed ``texts`` as a float32 array, skipping the conversion to Python lists."""
        return embed_texts(texts, self._dimension)

    def __repr__(self) -> str:
        return f"HashingEmbeddings(dimension={self._dimension}, model={self._model!r})"
