"""The ``openai`` embeddings provider: ``text-embedding-3-*`` or any compatible server.

Built on LangChain's ``OpenAIEmbeddings`` with ``check_embedding_ctx_length=False``: texts
go to the API as text, so no tiktoken encoding is ever downloaded (sitechat's chunks are far
below the 8k-token input limit). Requests carry ``batch_size`` texts each
(``SITECHAT_EMBEDDINGS__BATCH_SIZE``), a few in flight at once from async code, and
each is retried on its own per ``SITECHAT_LLM__RETRY__*``.
Shares the ``SITECHAT_OPENAI__*`` section (key, base URL, headers) with the LLM provider.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from functools import partial
from typing import TYPE_CHECKING, ClassVar

import httpx
from langchain_core.embeddings import Embeddings
from pydantic import SecretStr

from sitechat.config import RetrySettings, load_provider_config
from sitechat.errors import ConfigurationError, MissingDependencyError, ProviderError
from sitechat.llm._errors import map_openai_error
from sitechat.llm.openai import OpenAIConfig, client_options, resolve_openai_key
from sitechat.llm.retry import retry_call, retry_call_sync

if TYPE_CHECKING:
    from typing_extensions import Self

    from sitechat.config import Settings

__all__ = ["OpenAITextEmbeddings"]

DEFAULT_MODEL = "text-embedding-3-small"
_DIMENSIONS = {
    "text-embedding-3-small": 1536,
    "text-embedding-3-large": 3072,
    "text-embedding-ada-002": 1536,
}
# models that accept a ``dimensions`` parameter to shorten their vectors
_SHORTENABLE = ("text-embedding-3-",)


class OpenAITextEmbeddings(Embeddings):
    """OpenAI (or compatible) embeddings with batching, retries and sitechat errors.

    ``dimension`` must be known before the first call (an index records it): it comes from
    ``dimensions`` when given, else from the model's known size.
    """

    name: ClassVar[str] = "openai"

    def __init__(
        self,
        *,
        model: str = DEFAULT_MODEL,
        api_key: SecretStr | str | None = None,
        base_url: str | None = None,
        organization: str | None = None,
        headers: Mapping[str, str] | None = None,
        dimensions: int | None = None,
        batch_size: int = 64,
        max_concurrency: int = 4,
        timeout: float = 60.0,
        retry: RetrySettings | None = None,
        http_async_client: httpx.AsyncClient | None = None,
    ) -> None:
        try:
            from langchain_openai import OpenAIEmbeddings
        except ImportError as exc:  # pragma: no cover - depends on the install
            raise MissingDependencyError(
                "langchain-openai", "openai", "The 'openai' embeddings"
            ) from exc
        options = client_options(
            api_key=api_key, base_url=base_url, organization=organization, headers=headers
        )
        known = _DIMENSIONS.get(model)
        dimension = dimensions or known
        if dimension is None:
            raise ConfigurationError(
                f"The size of embedding model '{model}' is not known. Set "
                "SITECHAT_OPENAI__EMBEDDING_DIMENSIONS to the length of its vectors."
            )
        shorten = dimensions is not None and dimensions != known and model.startswith(_SHORTENABLE)
        self.model = model
        self.base_url = base_url
        self.dimension = dimension
        self.batch_size = batch_size
        self.max_concurrency = max_concurrency
        self.retry = retry or RetrySettings()
        self._api_key: SecretStr = options["api_key"]
        # clients this embedder owns (and closes); an injected async client stays the caller's
        self._owned_sync = httpx.Client(timeout=timeout)
        self._owned_async = None if http_async_client else httpx.AsyncClient(timeout=timeout)
        self._client = OpenAIEmbeddings(
            model=model,
            dimensions=dimensions if shorten else None,
            check_embedding_ctx_length=False,
            chunk_size=batch_size,
            timeout=timeout,
            http_client=self._owned_sync,
            http_async_client=http_async_client or self._owned_async,
            **options,
        )

    @classmethod
    def from_settings(cls, settings: Settings) -> Self:
        """Build from ``settings.embeddings`` and the ``SITECHAT_OPENAI__*`` section."""
        config = load_provider_config(OpenAIConfig, cls.name, settings.env_file)
        return cls(
            model=settings.embeddings.model or DEFAULT_MODEL,
            api_key=resolve_openai_key(config, settings.env_file),
            base_url=config.base_url,
            organization=config.organization,
            headers=config.headers,
            dimensions=config.embedding_dimensions,
            batch_size=settings.embeddings.batch_size,
            timeout=settings.llm.timeout,
            retry=settings.llm.retry,
        )

    @property
    def embedder_name(self) -> str:
        """Identity recorded in an index, e.g. ``openai:text-embedding-3-small``."""
        return f"{self.name}:{self.model}"

    def _mapped(self, exc: Exception) -> ProviderError:
        return map_openai_error(
            exc,
            provider=self.name,
            model=self.model,
            base_url=self.base_url,
            secrets=(self._api_key.get_secret_value(),),
        )

    def _checked(self, vectors: list[list[float]], expected: int) -> list[list[float]]:
        if len(vectors) != expected or any(len(v) != self.dimension for v in vectors):
            raise ConfigurationError(
                f"Embedding model '{self.model}' returned {len(vectors)} vectors of length "
                f"{len(vectors[0]) if vectors else 0}; expected {expected} of length "
                f"{self.dimension}. Fix SITECHAT_OPENAI__EMBEDDING_DIMENSIONS."
            )
        return vectors

    def _batches(self, texts: list[str]) -> list[list[str]]:
        size = self.batch_size
        return [texts[i : i + size] for i in range(0, len(texts), size)]

    def embed_documents(self, texts: list[str]) -> list[list[float]]:
        """Embed passages, one request per ``batch_size`` texts, each retried on its own."""

        def call(batch: list[str]) -> list[list[float]]:
            try:
                return self._client.embed_documents(batch)
            except Exception as exc:
                error = self._mapped(exc)
            raise error  # outside the handler: the vendor's exception may quote the key

        vectors: list[list[float]] = []
        for batch in self._batches(texts):
            vectors += retry_call_sync(partial(call, batch), self.retry, provider=self.name)
        return self._checked(vectors, len(texts))

    async def aembed_documents(self, texts: list[str]) -> list[list[float]]:
        """Embed passages with up to ``max_concurrency`` requests in flight."""
        gate = asyncio.Semaphore(self.max_concurrency)

        async def call(batch: list[str]) -> list[list[float]]:
            try:
                return await self._client.aembed_documents(batch)
            except Exception as exc:
                error = self._mapped(exc)
            raise error  # outside the handler: the vendor's exception may quote the key

        async def embed(batch: list[str]) -> list[list[float]]:
            async with gate:
                return await retry_call(lambda: call(batch), self.retry, provider=self.name)

        results = await asyncio.gather(*(embed(batch) for batch in self._batches(texts)))
        return self._checked([v for batch in results for v in batch], len(texts))

    def embed_query(self, text: str) -> list[float]:
        """Embed a question (the same space as the passages)."""
        return self.embed_documents([text])[0]

    async def aembed_query(self, text: str) -> list[float]:
        """Embed a question without blocking the event loop."""
        return (await self.aembed_documents([text]))[0]

    def close(self) -> None:
        """Close the blocking HTTP client (the async one needs :meth:`aclose`)."""
        self._owned_sync.close()

    async def aclose(self) -> None:
        """Close the HTTP clients this embedder created."""
        self.close()
        if self._owned_async is not None:
            await self._owned_async.aclose()

    def __repr__(self) -> str:
        return f"OpenAITextEmbeddings(model={self.model!r}, dimension={self.dimension})"
