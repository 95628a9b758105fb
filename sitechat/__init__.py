"""sitechat: put a chat assistant that answers from your own website on that website.

Ingest a site, then ask it questions::

    import sitechat

    await sitechat.ingest("https://docs.example.com/", index="docs-index")
    chat = await sitechat.open_chat("docs-index")
    async for event in chat.stream_events("How do I install it?"):
        ...

or, from synchronous code and notebooks, ``sitechat.SiteChat("docs-index").ask(...)``.
Everything public is importable from this module; submodules are implementation detail.
"""

from __future__ import annotations

from sitechat._version import __version__
from sitechat.api import ingest, open_chat, search, verify_index
from sitechat.chat.base import ChatService
from sitechat.chat.history import HistoryStore, InMemoryHistoryStore
from sitechat.chat.prompts import PromptTemplates
from sitechat.chat.service import RetrievalChatService
from sitechat.chat.sync import SiteChat
from sitechat.config import RetrySettings, Settings
from sitechat.errors import (
    AuthenticationError,
    BadRequestError,
    ConfigurationError,
    ContextLengthError,
    CorruptIndexError,
    EmbedderMismatchError,
    FetchError,
    IndexNotFoundError,
    IngestError,
    InvalidInputError,
    MissingDependencyError,
    ModelNotFoundError,
    PermissionDeniedError,
    PluginError,
    ProviderError,
    ProviderNotFoundError,
    ProviderTimeoutError,
    RateLimitError,
    ServiceUnavailableError,
    SitechatError,
    StoreError,
    StreamInterruptedError,
    UnsafeURLError,
)
from sitechat.events import ChatEvent, DoneEvent, ErrorEvent, SourcesEvent, TokenEvent
from sitechat.ingest.options import CrawlOptions
from sitechat.ingest.pipeline import IngestSummary
from sitechat.llm.base import BaseLLMService, LLMDelta
from sitechat.models import (
    Answer,
    ChatMessage,
    Chunk,
    Page,
    SearchHit,
    Section,
    Source,
    Timings,
    Usage,
)
from sitechat.retrieval.hybrid import HybridRetriever, RetrievalResult
from sitechat.retrieval.langchain import as_langchain_retriever
from sitechat.vectorstores.base import EmbedderInfo, PageSizes, StoreCheck, VectorStore

__all__ = [
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
