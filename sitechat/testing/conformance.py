"""Standard tests for sitechat providers: subclass one, give it one fixture, run pytest.

A plugin author proves a provider honours sitechat's contracts by subclassing the matching
class in a test module. Every built-in provider runs the same classes in sitechat's own
test suite, so a plugin that passes behaves like a built-in::

    # tests/test_conformance.py of a plugin
    import pytest
    from sitechat.testing.conformance import VectorStoreConformance

    class TestMyStore(VectorStoreConformance):
        supports_keyword_search = False          # a capability switch: those tests skip

        @pytest.fixture
        def open_store(self, tmp_path):
            async def open_store(embedder, *, create):
                return await MyStore.open_path(tmp_path / "index", embedder, create=create)
            return open_store

=========================  ===================  =============================================
Class                      Fixture              Capability switches (class attributes)
=========================  ===================  =============================================
VectorStoreConformance     ``open_store``       ``supports_keyword_search``,
                                                ``supports_metadata_filter``,
                                                ``persists_across_reopen``,
                                                ``validates_dimension``, ``embedder_info``
EmbeddingsConformance      ``embeddings``       ``deterministic``, ``accepts_empty_text``,
                                                ``ranks_related_text_higher``
LLMServiceConformance      ``llm`` (and         ``deterministic``, ``reports_usage``
                           ``failing_llm``)
ChatServiceConformance     ``chat_service``     ``question``, ``max_message_chars``,
                           (and ``failing_      ``deterministic``
                           chat_service``)
=========================  ===================  =============================================

The tests are coroutines marked ``@pytest.mark.asyncio``, so they run under pytest-asyncio
in both its ``strict`` and ``auto`` modes (fixtures you write as coroutines need
``@pytest_asyncio.fixture`` in strict mode, or ``asyncio_mode = "auto"``). The kit needs
``pytest`` and ``pytest-asyncio``; nothing touches the network. For a PostgreSQL-backed
store, :mod:`sitechat.testing.pg` starts a throwaway server.
"""

from __future__ import annotations

import pytest

# Before the kit's modules are imported: pytest then rewrites their asserts as it does a
# test module's, so a failure shows the values compared, not a bare AssertionError.
pytest.register_assert_rewrite(
    "sitechat.testing._conformance_chat",
    "sitechat.testing._conformance_providers",
    "sitechat.testing._conformance_store",
)

from sitechat.testing._conformance_chat import ChatServiceConformance  # noqa: E402
from sitechat.testing._conformance_providers import (  # noqa: E402
    EmbeddingsConformance,
    LLMServiceConformance,
    conformance_prompt,
)
from sitechat.testing._conformance_store import (  # noqa: E402
    CONFORMANCE_EMBEDDER,
    OpenStore,
    VectorStoreConformance,
    basis_vector,
    conformance_chunks,
)

__all__ = [
    "CONFORMANCE_EMBEDDER",
    "ChatServiceConformance",
    "EmbeddingsConformance",
    "LLMServiceConformance",
    "OpenStore",
    "VectorStoreConformance",
    "basis_vector",
    "conformance_chunks",
    "conformance_prompt",
]
