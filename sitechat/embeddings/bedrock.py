"""The ``bedrock`` embeddings provider: Titan text embeddings and Cohere embed on Bedrock.

Both go through ``invoke_model`` on the ``bedrock-runtime`` client that the LLM provider
uses (same ``SITECHAT_BEDROCK__*`` section, same AWS credential chain):

* Titan (``amazon.titan-embed-text-v2:0``; v1 too) embeds one text per call, so a batch is
  that many calls run side by side in a thread pool;
* Cohere (``cohere.embed-english-v3``, ``cohere.embed-multilingual-v3``, ``cohere.embed-v4:0``)
  embeds up to 96 texts per call, marking passages ``search_document`` and questions
  ``search_query`` as Cohere asks.

Each call is retried on its own per ``SITECHAT_LLM__RETRY__*``; vendor errors become sitechat
errors. Async methods run the blocking calls in threads and never block the event loop.
"""

from __future__ import annotations

import asyncio
import json
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING, Any, ClassVar, Literal

from langchain_core.embeddings import Embeddings

from sitechat.config import RetrySettings, load_provider_config
from sitechat.errors import ConfigurationError
from sitechat.llm._errors import map_bedrock_error
from sitechat.llm.bedrock import BedrockConfig, make_bedrock_client
from sitechat.llm.retry import retry_call_sync

if TYPE_CHECKING:
    from typing_extensions import Self

    from sitechat.config import Settings

__all__ = ["BedrockTextEmbeddings"]

DEFAULT_MODEL = "amazon.titan-embed-text-v2:0"
_COHERE_MAX_TEXTS = 96
_COHERE_MAX_CHARS = 2048
# family -> (default vector length, lengths it can produce)
_SIZES: dict[str, tuple[int, tuple[int, ...]]] = {
    "titan": (1024, (256, 512, 1024)),
    "titan-v1": (1536, (1536,)),
    "cohere": (1024, (1024,)),
    "cohere-v4": (1536, (256, 512, 1024, 1536)),
}

InputType = Literal["search_document", "search_query"]


def _family(model: str) -> Literal["titan", "titan-v1", "cohere", "cohere-v4"]:
    base = model.split("/")[-1]
    if "cohere.embed" in base:
        return "cohere-v4" if "embed-v4" in base else "cohere"
    if "titan-embed-text-v1" in base or "titan-embed-g1" in base:
        return "titan-v1"
    if "titan-embed" in base:
        return "titan"
    raise ConfigurationError(
        f"Bedrock embedding model '{model}' is not supported. Set SITECHAT_EMBEDDINGS__MODEL to "
        "a Titan (amazon.titan-embed-text-v2:0) or Cohere (cohere.embed-english-v3) model."
    )


def _dimension(model: str, requested: int | None) -> int:
    default, allowed = _SIZES[_family(model)]
    size = requested or default
    if size not in allowed:
        raise ConfigurationError(
            f"Bedrock model '{model}' cannot produce vectors of length {size}. Set "
            f"SITECHAT_BEDROCK__EMBEDDING_DIMENSIONS to one of {', '.join(map(str, allowed))}."
        )
    return size


class BedrockTextEmbeddings(Embeddings):
    """Titan or Cohere embeddings on Amazon Bedrock, batched and retried.

    ``client`` is a boto3 ``bedrock-runtime`` client (inject one for tests); without it
    one is built from ``config``.
    """

    name: ClassVar[str] = "bedrock"

    def __init__(
        self,
        *,
        model: str = DEFAULT_MODEL,
        client: Any = None,
        config: BedrockConfig | None = None,
        dimensions: int | None = None,
        batch_size: int = 64,
        timeout: float = 60.0,
        retry: RetrySettings | None = None,
    ) -> None:
        config = config or BedrockConfig()
        self.model = model
        self.family = _family(model)
        self.dimension = _dimension(model, dimensions)
        limit = _COHERE_MAX_TEXTS if self.family.startswith("cohere") else batch_size
        self.batch_size = min(batch_size, limit)
        self.retry = retry or RetrySettings()
        self._owns_client = client is None
        self._client = (
            client if client is not None else make_bedrock_client(config, timeout=timeout)
        )
        self.region: str = self._client.meta.region_name
        self._secrets = config.secrets()
        self._pool = ThreadPoolExecutor(
            max_workers=min(config.max_concurrency, 16), thread_name_prefix="sitechat-bedrock-embed"
        )

    @classmethod
    def from_settings(cls, settings: Settings) -> Self:
        """Build from ``settings.embeddings`` and the ``SITECHAT_BEDROCK__*`` section."""
        config = load_provider_config(BedrockConfig, cls.name, settings.env_file)
        return cls(
            model=settings.embeddings.model or DEFAULT_MODEL,
            config=config,
            dimensions=config.embedding_dimensions,
            batch_size=settings.embeddings.batch_size,
            timeout=settings.llm.timeout,
            retry=settings.llm.retry,
        )

    @property
    def embedder_name(self) -> str:
        """Identity recorded in an index, e.g. ``bedrock:amazon.titan-embed-text-v2:0``."""
        return f"{self.name}:{self.model}"

    # one call on the wire --------------------------------------------------------------
    def _body(self, texts: list[str], input_type: InputType) -> dict[str, Any]:
        if self.family == "titan":
            return {"inputText": texts[0], "dimensions": self.dimension, "normalize": True}
        if self.family == "titan-v1":
            return {"inputText": texts[0]}
        body: dict[str, Any] = {
            "texts": [t[:_COHERE_MAX_CHARS] for t in texts],
            "input_type": input_type,
            "truncate": "END",
        }
        if self.family == "cohere-v4":
            body |= {"embedding_types": ["float"], "output_dimension": self.dimension}
        return body

    def _invoke(self, texts: list[str], input_type: InputType) -> list[list[float]]:
        body = json.dumps(self._body(texts, input_type))
        try:
            response = self._client.invoke_model(
                modelId=self.model,
                body=body,
                contentType="application/json",
                accept="application/json",
            )
            payload = json.loads(response["body"].read())
        except Exception as exc:
            error = map_bedrock_error(
                exc,
                provider=self.name,
                model=self.model,
                region=self.region,
                secrets=self._secrets,
            )
        else:
            return self._vectors(payload)
        raise error  # outside the handler: the vendor's exception may quote a signature

    def _vectors(self, payload: Any) -> list[list[float]]:
        if self.family.startswith("titan"):
            return [payload["embedding"]]
        vectors = payload["embeddings"]
        return list(vectors["float"] if isinstance(vectors, dict) else vectors)

    def _invoke_with_retry(self, request: tuple[list[str], InputType]) -> list[list[float]]:
        texts, input_type = request
        return retry_call_sync(
            lambda: self._invoke(texts, input_type), self.retry, provider=self.name
        )

    # LangChain's interface -------------------------------------------------------------
    def _embed(self, texts: list[str], input_type: InputType) -> list[list[float]]:
        step = 1 if self.family.startswith("titan") else self.batch_size
        requests = [(texts[i : i + step], input_type) for i in range(0, len(texts), step)]
        vectors = [v for batch in self._pool.map(self._invoke_with_retry, requests) for v in batch]
        if len(vectors) != len(texts) or any(len(v) != self.dimension for v in vectors):
            raise ConfigurationError(
                f"Bedrock model '{self.model}' returned vectors of an unexpected shape; expected "
                f"{len(texts)} of length {self.dimension}. "
                "Check SITECHAT_BEDROCK__EMBEDDING_DIMENSIONS."
            )
        return vectors

    def embed_documents(self, texts: list[str]) -> list[list[float]]:
        """Embed passages (Cohere: ``search_document``)."""
        return self._embed(texts, "search_document") if texts else []

    def embed_query(self, text: str) -> list[float]:
        """Embed a question (Cohere: ``search_query``)."""
        return self._embed([text], "search_query")[0]

    async def aembed_documents(self, texts: list[str]) -> list[list[float]]:
        """Embed passages in worker threads."""
        return await asyncio.to_thread(self.embed_documents, texts)

    async def aembed_query(self, text: str) -> list[float]:
        """Embed a question in a worker thread."""
        return await asyncio.to_thread(self.embed_query, text)

    def close(self) -> None:
        """Release the worker threads, and the boto3 client if this embedder built it."""
        self._pool.shutdown(wait=False)
        if self._owns_client:
            self._client.close()

    def __repr__(self) -> str:
        return f"BedrockTextEmbeddings(model={self.model!r}, dimension={self.dimension})"
