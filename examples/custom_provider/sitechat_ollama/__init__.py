"""An LLM provider for Ollama's native chat API, packaged as a sitechat plugin."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Sequence
from typing import ClassVar

import httpx
from langchain_core.messages import AIMessage, BaseMessage, SystemMessage
from pydantic import BaseModel, Field

from sitechat import (
    BadRequestError,
    BaseLLMService,
    LLMDelta,
    ModelNotFoundError,
    ProviderTimeoutError,
    ServiceUnavailableError,
    Settings,
    StreamInterruptedError,
    Usage,
)
from sitechat.config import load_provider_config

__all__ = ["OllamaConfig", "OllamaLLMService"]


class OllamaConfig(BaseModel):
    """The ``SITECHAT_OLLAMA__*`` section."""

    base_url: str = Field(default="http://127.0.0.1:11434", description="Where Ollama listens.")
    keep_alive: str = Field(default="5m", description="How long Ollama keeps the model loaded.")


def _role(message: BaseMessage) -> str:
    if isinstance(message, SystemMessage):
        return "system"
    if isinstance(message, AIMessage):
        return "assistant"
    return "user"


class OllamaLLMService(BaseLLMService):
    """Streams answers from a local or remote Ollama server."""

    name: ClassVar[str] = "ollama"
    config_class = OllamaConfig

    def __init__(
        self,
        model: str = "llama3.2",
        config: OllamaConfig | None = None,
        *,
        temperature: float = 0.0,
        max_tokens: int = 1024,
        timeout: float = 60.0,
        client: httpx.AsyncClient | None = None,
    ) -> None:
        self.model = model
        self.config = config or OllamaConfig()
        self.temperature = temperature
        self.max_output_tokens = max_tokens
        self._client = client or httpx.AsyncClient(timeout=httpx.Timeout(timeout, connect=5.0))
        self._owns_client = client is None

    @classmethod
    def from_settings(cls, settings: Settings) -> OllamaLLMService:
        config = load_provider_config(OllamaConfig, cls.name, settings.env_file)
        return cls(
            settings.llm.model or "llama3.2",
            config,
            temperature=settings.llm.temperature,
            max_tokens=settings.llm.max_tokens,
            timeout=settings.llm.timeout,
        )

    async def _astream(self, messages: Sequence[BaseMessage]) -> AsyncIterator[LLMDelta]:
        body = {
            "model": self.model,
            "messages": [{"role": _role(m), "content": str(m.content)} for m in messages],
            "stream": True,
            "keep_alive": self.config.keep_alive,
            "options": {"temperature": self.temperature, "num_predict": self.max_output_tokens},
        }
        url = self.config.base_url.rstrip("/") + "/api/chat"
        received = []
        try:
            async with self._client.stream("POST", url, json=body) as response:
                if response.status_code == 404:
                    raise ModelNotFoundError(
                        f"Ollama has no model '{self.model}'. Run `ollama pull {self.model}` "
                        "or set SITECHAT_LLM__MODEL to a model it has.",
                        provider=self.name,
                    )
                if response.status_code >= 500:
                    raise ServiceUnavailableError(
                        f"Ollama answered HTTP {response.status_code}; try again shortly.",
                        provider=self.name,
                    )
                if response.status_code >= 400:
                    raise BadRequestError(
                        f"Ollama refused the request (HTTP {response.status_code}).",
                        provider=self.name,
                    )
                async for line in response.aiter_lines():
                    if not line.strip():
                        continue
                    part = json.loads(line)
                    if "error" in part:
                        raise BadRequestError(f"Ollama: {part['error']}", provider=self.name)
                    text = part.get("message", {}).get("content", "")
                    if text:
                        received.append(text)
                        yield LLMDelta(text=text)
                    if part.get("done"):
                        yield LLMDelta(
                            usage=Usage(
                                input_tokens=int(part.get("prompt_eval_count", 0)),
                                output_tokens=int(part.get("eval_count", 0)),
                            )
                        )
        except httpx.TimeoutException as exc:
            raise ProviderTimeoutError(
                "Ollama did not answer in time; raise SITECHAT_LLM__TIMEOUT for slow models.",
                provider=self.name,
            ) from exc
        except (httpx.TransportError, json.JSONDecodeError) as exc:
            if received:
                raise StreamInterruptedError(
                    "The answer from Ollama broke off.",
                    provider=self.name,
                    partial="".join(received),
                ) from exc
            raise ServiceUnavailableError(
                f"Could not reach Ollama at {self.config.base_url}; is `ollama serve` running?",
                provider=self.name,
            ) from exc

    async def aclose(self) -> None:
        if self._owns_client:
            await self._client.aclose()
