"""The ``openai`` LLM provider: OpenAI, or any OpenAI-compatible server, via ``ChatOpenAI``.

Configured by ``SITECHAT_LLM__*`` (model, temperature, max tokens, timeout, retry) and its
own section ``SITECHAT_OPENAI__*`` (:class:`OpenAIConfig`). Point
``SITECHAT_OPENAI__BASE_URL`` at vLLM, Ollama, a llama.cpp server or a LiteLLM proxy and
it speaks to those the same way; a key is then optional.

The vendor client never retries (``max_retries=0``): ``BaseLLMService.stream`` owns retries
so that nothing is retried after the first token.
"""

from __future__ import annotations

from collections.abc import AsyncGenerator, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar
from urllib.parse import urlsplit

from langchain_core.messages import BaseMessage
from pydantic import BaseModel, Field, SecretStr, field_validator

from sitechat._redact import safe_url
from sitechat.config import RetrySettings, check_endpoint_url, env_value, load_provider_config
from sitechat.errors import (
    ConfigurationError,
    MissingDependencyError,
    ServiceUnavailableError,
)
from sitechat.llm._errors import map_openai_error, openai_where
from sitechat.llm._langchain import check_ending, chunk_piece, message_delta, model_for
from sitechat.llm.base import BaseLLMService, Piece

if TYPE_CHECKING:
    import httpx
    from typing_extensions import Self

    from sitechat.config import Settings

__all__ = ["OpenAIConfig", "OpenAILLMService", "client_options", "resolve_openai_key"]

DEFAULT_MODEL = "gpt-4o-mini"

KEY_ENV_VAR = "SITECHAT_OPENAI__API_KEY"
STANDARD_KEY_ENV_VAR = "OPENAI_API_KEY"
# a compatible server that ignores keys still needs a non-empty one for the client
_NO_KEY = "sitechat-no-key"

_CONTEXT_WINDOWS = {
    "gpt-4o": 128_000,
    "gpt-4o-mini": 128_000,
    "gpt-4.1": 1_047_576,
    "gpt-4.1-mini": 1_047_576,
    "gpt-4.1-nano": 1_047_576,
    "gpt-4-turbo": 128_000,
    "gpt-3.5-turbo": 16_385,
}


class OpenAIConfig(BaseModel):
    """The ``SITECHAT_OPENAI__*`` section, shared by the LLM and embeddings providers."""

    api_key: SecretStr | None = Field(
        default=None, description="API key; OPENAI_API_KEY is used when this is unset."
    )
    base_url: str | None = Field(
        default=None, description="An OpenAI-compatible endpoint, ending in /v1."
    )
    organization: str | None = None
    headers: dict[str, str] = Field(
        default_factory=dict, description="Extra HTTP headers sent with every request."
    )
    model: str | None = Field(
        default=None,
        description="Chat model when this provider is a fallback (else SITECHAT_LLM__MODEL).",
    )
    context_window: int | None = Field(
        default=None, ge=256, description="Tokens the model accepts, for unknown models."
    )
    streaming: bool = Field(default=True, description="False for servers that cannot stream (SSE).")
    embedding_dimensions: int | None = Field(
        default=None,
        ge=1,
        description="Shorten text-embedding-3 vectors, or declare an unknown model's size.",
    )

    @field_validator("base_url")
    @classmethod
    def _an_http_url(cls, value: str | None) -> str | None:
        return check_endpoint_url(value)


def _is_openai_host(base_url: str | None) -> bool:
    return base_url is None or (urlsplit(base_url).hostname or "").endswith("openai.com")


def resolve_openai_key(config: OpenAIConfig, env_file: str | Path | None = ".env") -> SecretStr:
    """The key from the section, else ``OPENAI_API_KEY`` (from the environment or
    ``env_file``); optional for compatible servers."""
    if config.api_key is not None and config.api_key.get_secret_value():
        return config.api_key
    standard = env_value([STANDARD_KEY_ENV_VAR], env_file)
    if standard:
        return SecretStr(standard)
    if not _is_openai_host(config.base_url):
        return SecretStr(_NO_KEY)
    raise ConfigurationError(
        f"The 'openai' provider needs an API key. Set {KEY_ENV_VAR} (or {STANDARD_KEY_ENV_VAR}), "
        "or set SITECHAT_OPENAI__BASE_URL to an OpenAI-compatible server that needs none."
    )


def client_options(
    *,
    api_key: SecretStr | str | None,
    base_url: str | None,
    organization: str | None,
    headers: Mapping[str, str] | None,
) -> dict[str, Any]:
    """What every LangChain OpenAI client sitechat builds is given: the resolved key, the
    endpoint and headers, and no retries of its own (sitechat's retry policy owns them)."""
    key = SecretStr(api_key) if isinstance(api_key, str) else api_key
    return {
        "api_key": resolve_openai_key(OpenAIConfig(api_key=key, base_url=base_url)),
        "base_url": base_url,
        "organization": organization,
        "default_headers": dict(headers) if headers else None,
        "max_retries": 0,
    }


class OpenAILLMService(BaseLLMService):
    """Answers with an OpenAI (or compatible) chat model, streaming token by token.

    ``http_async_client`` lets tests and proxies supply the ``httpx.AsyncClient``; the
    service then leaves closing it to the caller.
    """

    name: ClassVar[str] = "openai"
    needs_key: ClassVar[bool] = True
    key_env_var: ClassVar[str | None] = KEY_ENV_VAR
    config_class: ClassVar[type[BaseModel] | None] = OpenAIConfig

    def __init__(
        self,
        *,
        model: str = DEFAULT_MODEL,
        api_key: SecretStr | str | None = None,
        base_url: str | None = None,
        organization: str | None = None,
        headers: Mapping[str, str] | None = None,
        temperature: float = 0.0,
        max_tokens: int = 1024,
        timeout: float = 60.0,
        retry: RetrySettings | None = None,
        streaming: bool = True,
        context_window: int | None = None,
        http_async_client: httpx.AsyncClient | None = None,
    ) -> None:
        try:
            import openai
            from langchain_openai import ChatOpenAI
        except ImportError as exc:  # pragma: no cover - depends on the install
            raise MissingDependencyError(
                "langchain-openai", "openai", "The 'openai' provider"
            ) from exc
        options = client_options(
            api_key=api_key, base_url=base_url, organization=organization, headers=headers
        )
        self._api_key: SecretStr = options["api_key"]
        self.model = model
        self.base_url = base_url
        self.retry = retry or RetrySettings()
        self.streaming = streaming
        self.max_output_tokens = max_tokens
        self.context_window = context_window or _CONTEXT_WINDOWS.get(model, 8192)
        self._owns_http_client = http_async_client is None
        self._chat = ChatOpenAI(
            model=model,
            temperature=temperature,
            max_completion_tokens=max_tokens,
            # a Timeout object (unlike a float) makes LangChain build this service its own
            # HTTP client instead of sharing a cached one across event loops
            timeout=openai.Timeout(timeout, connect=min(timeout, 10.0)),
            stream_usage=True,
            # httpx's read timeout already bounds silence between chunks; LangChain's own
            # per-chunk timer would add a task switch to every token
            stream_chunk_timeout=None,
            http_async_client=http_async_client,
            **options,
        )

    @classmethod
    def from_settings(cls, settings: Settings) -> Self:
        """Build from ``settings.llm`` and the ``SITECHAT_OPENAI__*`` section."""
        config = load_provider_config(OpenAIConfig, cls.name, settings.env_file)
        return cls(
            model=model_for(settings, config.model, cls.name, DEFAULT_MODEL),
            api_key=resolve_openai_key(config, settings.env_file),
            base_url=config.base_url,
            organization=config.organization,
            headers=config.headers,
            temperature=settings.llm.temperature,
            max_tokens=settings.llm.max_tokens,
            timeout=settings.llm.timeout,
            retry=settings.llm.retry,
            streaming=config.streaming,
            context_window=config.context_window,
        )

    async def _astream(self, messages: Sequence[BaseMessage]) -> AsyncGenerator[Piece, None]:
        """One try on the wire, vendor errors mapped at the boundary (and raised outside
        the ``except`` block, so the vendor's exception, which may quote the key, is not
        chained to them)."""
        try:
            if not self.streaming:
                message = await self._chat.ainvoke(list(messages))
                delta = message_delta(message)
                refusal = message.additional_kwargs.get("refusal")
                finish = message.response_metadata.get("finish_reason")
                check_ending(
                    self.name, self.model, said=bool(delta.text), stop=finish, refusal=refusal
                )
                yield delta
                return
            said = False
            finish = None
            async for chunk in self._chat.astream(list(messages)):
                piece = chunk_piece(chunk)
                if not said:
                    said = bool(piece if isinstance(piece, str) else piece.text)
                if chunk.response_metadata:
                    finish = chunk.response_metadata.get("finish_reason") or finish
                yield piece
            if finish is None:
                raise self._cut_short()
            check_ending(self.name, self.model, said=said, stop=finish)
            return
        except Exception as exc:
            error = map_openai_error(
                exc,
                provider=self.name,
                model=self.model,
                base_url=self.base_url,
                secrets=(self._api_key.get_secret_value(),),
            )
        raise error

    def _cut_short(self) -> ServiceUnavailableError:
        """A stream that ended without a finish reason: every OpenAI-compatible server
        sends one in its last chunk, so a proxy or a crashed server cut the answer short.

        Retryable: before any text it is tried again; after text the caller keeps the
        text as the partial answer of a :class:`~sitechat.errors.StreamInterruptedError`.
        """
        return ServiceUnavailableError(
            f"{openai_where(self.base_url)} ended the stream before model '{self.model}' "
            "finished its answer (no finish reason): a proxy or the server cut it short. "
            "Try again.",
            provider=self.name,
        )

    async def aclose(self) -> None:
        """Close the HTTP client this service created (an injected one is the caller's)."""
        if not self._owns_http_client:
            return
        if self._chat.root_async_client is not None:
            await self._chat.root_async_client.close()
        if self._chat.root_client is not None:
            self._chat.root_client.close()

    def __repr__(self) -> str:
        shown = safe_url(self.base_url) if self.base_url else None
        return f"OpenAILLMService(model={self.model!r}, base_url={shown!r})"
