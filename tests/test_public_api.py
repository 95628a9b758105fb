"""The flat public namespace is the contract users import from."""

from __future__ import annotations

import sitechat

EXPECTED = [
    "Answer",
    "AuthenticationError",
    "BadRequestError",
    "BaseLLMService",
    "ChatEvent",
    "ChatMessage",
    "ChatService",
    "Chunk",
    "ConfigurationError",
    "ContextLengthError",
    "CorruptIndexError",
    "CrawlOptions",
    "DoneEvent",
    "EmbedderInfo",
    "EmbedderMismatchError",
    "ErrorEvent",
    "FetchError",
    "HistoryStore",
    "HybridRetriever",
    "InMemoryHistoryStore",
    "IndexNotFoundError",
    "IngestError",
    "IngestSummary",
    "InvalidInputError",
    "LLMDelta",
    "MissingDependencyError",
    "ModelNotFoundError",
    "Page",
    "PageSizes",
    "PermissionDeniedError",
    "PluginError",
    "PromptTemplates",
    "ProviderError",
    "ProviderNotFoundError",
    "ProviderTimeoutError",
    "RateLimitError",
    "RetrievalChatService",
    "RetrievalResult",
    "RetrySettings",
    "SearchHit",
    "Section",
    "ServiceUnavailableError",
    "Settings",
    "SiteChat",
    "SitechatError",
    "Source",
    "SourcesEvent",
    "StoreCheck",
    "StoreError",
    "StreamInterruptedError",
    "Timings",
    "TokenEvent",
    "UnsafeURLError",
    "Usage",
    "VectorStore",
    "__version__",
    "as_langchain_retriever",
    "ingest",
    "open_chat",
    "search",
    "verify_index",
]


def test_all_is_sorted() -> None:
    """__all__ is kept sorted so additions are easy to review."""
    assert sitechat.__all__ == sorted(sitechat.__all__)


def test_all_is_pinned() -> None:
    """Adding or removing a public name is a deliberate change to this list."""
    assert sitechat.__all__ == EXPECTED


def test_every_public_name_resolves() -> None:
    """Every name in __all__ is importable from the top-level package."""
    for name in sitechat.__all__:
        assert getattr(sitechat, name) is not None


def test_errors_share_one_root() -> None:
    """Every exported exception derives from SitechatError."""
    for name in sitechat.__all__:
        obj = getattr(sitechat, name)
        if isinstance(obj, type) and issubclass(obj, Exception):
            assert issubclass(obj, sitechat.SitechatError), name


def test_names_the_docs_tell_provider_authors_to_use_import_flat() -> None:
    """plugins.md's "Set self.retry to a RetrySettings" works with `from sitechat import`."""
    from sitechat import RetrySettings
    from sitechat.config import RetrySettings as config_retry

    assert RetrySettings is config_retry
