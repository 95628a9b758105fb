"""A third-party LLM provider, registered through an entry point like any real plugin."""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from typing import ClassVar

from langchain_core.messages import BaseMessage
from pydantic import BaseModel

from sitechat.config import Settings, load_provider_config
from sitechat.llm.base import BaseLLMService, LLMDelta


class EchoConfig(BaseModel):
    """Read from SITECHAT_DEMO_ECHO__* like every provider section."""

    greeting: str = "echo"


class EchoLLMService(BaseLLMService):
    """Answers by echoing the question, prefixed with the configured greeting."""

    name: ClassVar[str] = "demo-echo"
    config_class = EchoConfig

    def __init__(self, greeting: str = "echo") -> None:
        self.greeting = greeting

    @classmethod
    def from_settings(cls, settings: Settings) -> EchoLLMService:
        config = load_provider_config(EchoConfig, cls.name, settings.env_file)
        return cls(config.greeting)

    async def _astream(self, messages: Sequence[BaseMessage]) -> AsyncIterator[LLMDelta]:
        yield LLMDelta(text=f"{self.greeting}: ")
        yield LLMDelta(text=str(messages[-1].content).rsplit("Question:", 1)[-1].strip())


class NotAService:
    """Registered by mistake: not a BaseLLMService subclass."""


class AbstractLLM(BaseLLMService):
    """Defines ``astream`` where the contract asks for ``_astream``: still abstract."""

    name: ClassVar[str] = "demo-abstract"

    async def astream(self, messages: Sequence[BaseMessage]) -> AsyncIterator[str]:
        yield "hi"
