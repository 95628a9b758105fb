"""Test helpers for apps and plugins built on sitechat.

- Fakes of the contracts: :class:`FakeLLMService`, :class:`FakeEmbeddings`,
  :class:`InMemoryVectorStore` — deterministic, no network, no disk.
- Local wire servers that real clients talk HTTP to: :class:`OpenAICompatibleServer`
  (chat completions with SSE streaming, embeddings) and :class:`BedrockRuntimeServer`
  (converse, converse-stream in AWS event-stream framing, invoke), scripted with
  :class:`Reply` and faults from :class:`OpenAIFaults` / :class:`BedrockFaults`.

The servers' modules are imported when one of their names is first used, so that
``python -m sitechat.testing.openai_server`` does not find its own module imported
already (which makes ``runpy`` print a ``RuntimeWarning``).
"""

from __future__ import annotations

from importlib import import_module
from typing import TYPE_CHECKING, Any

from sitechat.testing._wire import HTTPFault, Reply
from sitechat.testing.fakes import FakeEmbeddings, FakeLLMService, InMemoryVectorStore

if TYPE_CHECKING:
    from sitechat.testing.bedrock_server import BedrockFaults, BedrockRuntimeServer
    from sitechat.testing.openai_server import OpenAICompatibleServer, OpenAIFaults

__all__ = [
    "BedrockFaults",
    "BedrockRuntimeServer",
    "FakeEmbeddings",
    "FakeLLMService",
    "HTTPFault",
    "InMemoryVectorStore",
    "OpenAICompatibleServer",
    "OpenAIFaults",
    "Reply",
]

_SERVER_MODULES = {
    "BedrockFaults": "bedrock_server",
    "BedrockRuntimeServer": "bedrock_server",
    "OpenAICompatibleServer": "openai_server",
    "OpenAIFaults": "openai_server",
}


def __getattr__(name: str) -> Any:
    module = _SERVER_MODULES.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(import_module(f"{__name__}.{module}"), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *_SERVER_MODULES})
