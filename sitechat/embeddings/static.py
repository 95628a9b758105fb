"""The ``static`` embedder: semantic matching offline, from a table of token vectors.

A sentence-transformer reads a text through six layers of attention; this embedder only
adds up one learned vector per WordPiece token and normalises the sum. The vectors were
trained so that this sum points where all-MiniLM-L6-v2's sentence embedding of the same
text points (``tools/build_static_embeddings.py``: MiniLM's embeddings of about a hundred
thousand general technical texts, none from any site sitechat is evaluated on, regressed
with a cosine loss). What a token's vector learned is the topic it carries and how much
it counts: "folder" and "directory" land close, "how do I" weighs almost nothing. It finds
paraphrases that a lexical model cannot ("how big is a file" and ``getsize``), at a
fraction of MiniLM's quality and at the speed of a table lookup: no torch, no download,
thousands of passages per second on one core.

The table ships in the package (``data/``, int8 with one scale per token, loaded with
``numpy.load(allow_pickle=False)`` and checked before use) with the tokenizer's
vocabulary. Tokens come from :mod:`sitechat.embeddings._wordpiece`, which cuts text
exactly as MiniLM's uncased tokenizer does.

Attribution: the vocabulary is all-MiniLM-L6-v2's (``sentence-transformers``, Apache-2.0),
and the vectors are derived from that model's outputs; the table is distributed under the
same licence.

Recipe ``minilm-v1`` (part of :attr:`StaticEmbeddings.embedder_name`, so an index built by
another table is refused rather than searched with vectors it cannot compare).
"""

from __future__ import annotations

import threading
import zipfile
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, ClassVar

import numpy as np
import numpy.typing as npt
from numpy.lib.npyio import NpzFile

from sitechat.embeddings._token_match import TokenMatcher
from sitechat.embeddings._wordpiece import WordPieceTokenizer
from sitechat.embeddings.base import ArrayEmbeddings
from sitechat.errors import ConfigurationError
from sitechat.models import Chunk

if TYPE_CHECKING:
    from typing_extensions import Self

    from sitechat.config import Settings

__all__ = [
    "DEFAULT_TABLE",
    "RECIPE",
    "StaticEmbeddings",
    "StaticTable",
    "TokenReranker",
    "load_table",
]

RECIPE = "minilm-v1"
_FORMAT_VERSION = 1
DEFAULT_TABLE = Path(__file__).parent / "data" / f"static-{RECIPE}.npz"
_REQUIRED = ("format_version", "recipe", "vectors", "scales", "vocabulary")

# Calibrated with the eval question sets and twenty off-topic questions: no off-topic
# question's best passage reached 0.43 on the sample site, and one of twenty reached 0.5 on
# the Python docs ("Translate hello into Japanese": the docs do cover codecs). Answerable
# questions below it are still judged covered by their words (min_keyword_coverage).
_RELEVANCE_THRESHOLD = 0.5
# Fusion weights from 0.7 to 3 against BM25's 1.0 were within one question of each other
# on the tuning set; 1.0 is what a neural embedder declares.
_FUSION_WEIGHT = 1.0

# Texts this short are embedded on the event loop: a thread hop would cost more.
_INLINE_CHARS = 20_000

FloatArray = npt.NDArray[np.float32]


class StaticTable:
    """A checked token table: float32 vectors (one row per vocabulary entry) and a tokenizer."""

    def __init__(self, vectors: FloatArray, vocabulary: Sequence[str], recipe: str) -> None:
        self.vectors = vectors
        self.recipe = recipe
        self.tokenizer = WordPieceTokenizer(vocabulary)
        self._matcher: TokenMatcher | None = None

    @property
    def matcher(self) -> TokenMatcher:
        """Token-by-token passage scoring with this table (built on first use)."""
        if self._matcher is None:
            self._matcher = TokenMatcher(self.vectors, self.tokenizer)
        return self._matcher

    @property
    def dimension(self) -> int:
        """Length of every vector the table produces."""
        return int(self.vectors.shape[1])


def _corrupt(path: Path, problem: str) -> ConfigurationError:
    return ConfigurationError(
        f"The static embeddings table {path} is unusable: {problem}. Reinstall sitechat "
        "(pip install --force-reinstall sitechat), or choose another embedder with "
        "SITECHAT_EMBEDDINGS__PROVIDER."
    )


def load_table(path: Path = DEFAULT_TABLE) -> StaticTable:
    """Read and check a table file; raises :class:`ConfigurationError` saying what is wrong."""
    try:
        # our own handle: numpy leaks the one it opens when the archive is damaged
        with path.open("rb") as handle:
            archive = np.load(handle, allow_pickle=False)
            if not isinstance(archive, NpzFile):
                raise _corrupt(path, "it is not a .npz archive")
            with archive:
                missing = [name for name in _REQUIRED if name not in archive.files]
                if missing:
                    raise _corrupt(path, f"it lacks {', '.join(missing)}")
                arrays = {name: archive[name] for name in _REQUIRED}
    except FileNotFoundError:
        raise _corrupt(path, "the file is missing") from None
    except (OSError, ValueError, EOFError, zipfile.BadZipFile) as exc:
        raise _corrupt(path, f"it cannot be read ({exc})") from None
    version = arrays["format_version"]
    if version.shape != () or version.dtype.kind not in "iu" or int(version) != _FORMAT_VERSION:
        raise _corrupt(path, f"its format is not version {_FORMAT_VERSION}")
    vectors, scales = arrays["vectors"], arrays["scales"]
    if vectors.dtype != np.int8 or vectors.ndim != 2 or vectors.shape[1] < 1:
        raise _corrupt(path, "its vectors are not a 2-D int8 array")
    if scales.dtype != np.float32 or scales.shape != (vectors.shape[0],):
        raise _corrupt(path, "its scales do not match its vectors")
    if not np.all(np.isfinite(scales)):
        raise _corrupt(path, "its scales are not finite")
    try:
        vocabulary = arrays["vocabulary"].tobytes().decode("utf-8").split("\n")
        recipe = arrays["recipe"].tobytes().decode("utf-8")
    except UnicodeDecodeError:
        raise _corrupt(path, "its vocabulary is not UTF-8") from None
    if len(vocabulary) != vectors.shape[0] or len(set(vocabulary)) != len(vocabulary):
        raise _corrupt(path, "its vocabulary does not match its vectors")
    if "[UNK]" not in vocabulary:
        raise _corrupt(path, "its vocabulary has no [UNK] token")
    table = vectors.astype(np.float32)
    table *= scales[:, None]
    return StaticTable(table, vocabulary, recipe)


_TABLES: dict[Path, StaticTable] = {}
_TABLES_LOCK = threading.Lock()


def _shared_table(path: Path) -> StaticTable:
    """One table per file per process: it is read-only, and loading it costs ~0.1 s."""
    with _TABLES_LOCK:
        table = _TABLES.get(path)
        if table is None:
            table = _TABLES[path] = load_table(path)
        return table


class StaticEmbeddings(ArrayEmbeddings):
    """Offline semantic embeddings from a token table distilled from all-MiniLM-L6-v2.

    ``StaticEmbeddings()`` uses the table shipped with sitechat; ``table_path`` points at
    another one built by ``tools/build_static_embeddings.py``. The table is loaded on first
    use, so building the embedder (e.g. to open an index) costs nothing.
    """

    name: ClassVar[str] = "static"
    inline_chars: ClassVar[int] = _INLINE_CHARS

    def __init__(self, model: str = RECIPE, table_path: str | Path | None = None) -> None:
        # "minilm-v1:256", the tail of embedder_name, names the same table with its size,
        # which is how an index's recorded embedder is rebuilt
        recipe, _, size = model.partition(":")
        self._model = recipe
        self._path = Path(table_path) if table_path is not None else DEFAULT_TABLE
        self._table: StaticTable | None = None
        self._expected_dimension = int(size) if size.isdigit() else None
        if recipe != RECIPE or (size and not size.isdigit()):
            raise ConfigurationError(
                f"SITECHAT_EMBEDDINGS__MODEL: the static embedder has no model {model!r}. "
                f"Use '{RECIPE}', or unset it."
            )

    @classmethod
    def from_settings(cls, settings: Settings) -> Self:
        """Build from ``settings.embeddings.model`` (``None`` or ``"minilm-v1"``)."""
        model = (settings.embeddings.model or RECIPE).strip()
        return cls(model=model)

    @property
    def table(self) -> StaticTable:
        """The token table, loaded (and checked) on first use."""
        if self._table is None:
            table = _shared_table(self._path)
            if table.recipe != self._model:
                raise _corrupt(self._path, f"it holds recipe {table.recipe!r}, not {self._model!r}")
            expected = self._expected_dimension
            if expected is not None and table.dimension != expected:
                raise ConfigurationError(
                    f"The index was built with {self._model} vectors of length {expected}, but "
                    f"this sitechat's table gives {table.dimension}. Re-ingest into a new index, "
                    "or install the sitechat version that built it."
                )
            self._table = table
        return self._table

    @property
    def relevance_threshold(self) -> float:
        """Cosine at or above which a passage is relevant on its own (calibrated on docs sites).

        Static vectors of unrelated texts are closer than MiniLM's (0.2-0.4 is common), so
        the bar is higher than the ``local`` provider's 0.32; the retriever also accepts
        passages that share most of the question's words.
        """
        return _RELEVANCE_THRESHOLD

    @property
    def fusion_weight(self) -> float:
        """Weight of this embedder's ranking in hybrid fusion, relative to BM25's 1.0.

        Its ranking is semantic, like a neural embedder's, so it counts as much as BM25.
        """
        return _FUSION_WEIGHT

    @property
    def dimension(self) -> int:
        """Length of every vector this embedder returns."""
        return self.table.dimension

    @property
    def model(self) -> str:
        """The table's recipe, e.g. ``"minilm-v1"``."""
        return self._model

    @property
    def embedder_name(self) -> str:
        """Identity recorded in an index: recipe and dimension, e.g. ``static:minilm-v1:256``."""
        return f"{self.name}:{self._model}:{self.dimension}"

    def embed_array(self, texts: Sequence[str]) -> FloatArray:
        """Embed ``texts`` as an ``(n, dimension)`` float32 array of unit (or zero) rows."""
        table = self.table
        vectors, encode = table.vectors, table.tokenizer.encode
        out = np.zeros((len(texts), table.dimension), dtype=np.float32)
        # One small gather per text: measured faster than one block-wide gather (memory
        # traffic) or a counts-times-table product (mostly zeros, and BLAS threads fight
        # over a busy machine's cores).
        for row, text in enumerate(texts):
            ids = np.array(encode(text), dtype=np.intp)
            if ids.size:
                vectors.take(ids, axis=0).sum(axis=0, out=out[row])
        norms = np.linalg.norm(out, axis=1, keepdims=True)
        np.divide(out, norms, out=out, where=norms > 0)
        return out

    def score_passages(self, query: str, chunks: Sequence[Chunk]) -> FloatArray | None:
        """How well each chunk matches ``query`` token by token (at most 1; None when the
        query has no tokens). The retriever re-ranks its best fused passages with it."""
        return self.table.matcher.scores(query, chunks)

    def _ready_inline(self) -> bool:
        """Only once the table is loaded: loading it takes ~0.1 s, best done in a thread."""
        return self._table is not None

    def __repr__(self) -> str:
        return f"StaticEmbeddings(model={self._model!r})"


class TokenReranker:
    """The static table's token-by-token passage scorer, for embedders without their own.

    The retriever re-ranks its best fused passages with it whatever embedder found them
    (``RetrievalSettings.token_rerank``): it matches each question token to its closest
    token in a passage, which a sentence vector averages away. The table (the default one,
    shared with :class:`StaticEmbeddings`) is loaded on first use; :meth:`load` does it
    ahead, e.g. in a thread.
    """

    def __init__(self, table_path: Path = DEFAULT_TABLE) -> None:
        self._path = table_path
        self._table: StaticTable | None = None

    @property
    def loaded(self) -> bool:
        return self._table is not None

    def load(self) -> None:
        """Read (and check) the table now rather than on the first question."""
        if self._table is None:
            self._table = _shared_table(self._path)

    def score_passages(self, query: str, chunks: Sequence[Chunk]) -> FloatArray | None:
        """As :meth:`StaticEmbeddings.score_passages`."""
        self.load()
        assert self._table is not None
        return self._table.matcher.scores(query, chunks)

    def __repr__(self) -> str:
        return f"TokenReranker({str(self._path)!r})"
