"""Test helpers for apps and plugins built on sitechat.

- Fakes of the contracts: :class:`FakeLLMService`, :class:`FakeEmbeddings`,
  :class:`InMemoryVectorStore` — deterministic, no network, no disk.
"""

from __future__ import annotations

from sitechat.testing.fakes import FakeEmbeddings, FakeLLMService, InMemoryVectorStore

__all__ = ["FakeEmbeddings", "FakeLLMService", "InMemoryVectorStore"]
