"""Test helpers for apps and plugins built on sitechat.

- Fakes of the contracts: :class:`FakeLLMService`, :class:`FakeEmbeddings`,
  :class:`InMemoryVectorStore` — deterministic, no network, no disk.
- Local wire servers that real clients talk HTTP to: :class:`OpenAICompatibleServer`
  (chat completions with SSE streaming, embeddings) and :class:`BedrockRuntimeServer`
  (converse, converse-stream in AWS event-stream framing, invoke), scripted with
  :class:`Reply` and faults from :class:`OpenAIFaults` / :class:`BedrockFaults`.
"""

from __future__ import annotations

from sitechat.testing._wire import HTTPFault, Reply
from sitechat.testing.bedrock_server import BedrockFaults, BedrockRuntimeServer
from sitechat.testing.fakes import FakeEmbeddings, FakeLLMService, InMemoryVectorStore
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
