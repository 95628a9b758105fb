"""Every exception sitechat raises, in one tree.

Catch :class:`SitechatError` to handle anything the library raises on purpose::

    SitechatError
    ├── ConfigurationError          a setting is missing or invalid (names the env var)
    │   └── MissingDependencyError  an optional extra is not installed (names the extra)
    ├── PluginError                 a provider could not be found or loaded
    │   └── ProviderNotFoundError   no provider of that name (lists the available ones)
    ├── InvalidInputError           an empty or oversized message, a bad argument
    ├── IngestError                 a source could not be ingested
    │   ├── FetchError              a URL could not be fetched
    │   └── UnsafeURLError          a URL was refused (scheme, private address, scope)
    ├── StoreError                  the vector store failed
    │   ├── IndexNotFoundError      no index at the given location
    │   ├── CorruptIndexError       the index on disk is damaged or of an unknown format
    │   └── EmbedderMismatchError   the index was built by another embedder
    └── ProviderError               an LLM or embedding provider failed
        ├── AuthenticationError     the key or credentials were rejected
        ├── PermissionDeniedError   the credentials lack a permission
        ├── RateLimitError          throttled; ``retry_after`` when the server said
        ├── ProviderTimeoutError    no answer in time
        ├── BadRequestError         the provider refused the request
        │   └── ContextLengthError  the prompt is longer than the model accepts
        ├── ModelNotFoundError      the model id is unknown to the provider
        ├── ServiceUnavailableError the provider is down or overloaded (5xx)
        └── StreamInterruptedError  the stream broke after it had started

Messages say what was wrong and what to do about it, and never contain a secret.
Provider failures are mapped at the boundary; the vendor's exception, which may quote a
key, is not chained to the result, only retold with its secrets masked as its
``__cause__`` (:class:`~sitechat._redact.RedactedException`), so tracebacks and
``logger.exception`` stay free of secrets too.
"""

from __future__ import annotations

__all__ = [
    "AuthenticationError",
    "BadRequestError",
    "ConfigurationError",
    "ContextLengthError",
    "CorruptIndexError",
    "EmbedderMismatchError",
    "FetchError",
    "IndexNotFoundError",
    "IngestError",
    "InvalidInputError",
    "MissingDependencyError",
    "ModelNotFoundError",
    "PermissionDeniedError",
    "PluginError",
    "ProviderError",
    "ProviderNotFoundError",
    "ProviderTimeoutError",
    "RateLimitError",
    "ServiceUnavailableError",
    "SitechatError",
    "StoreError",
    "StreamInterruptedError",
    "UnsafeURLError",
]


class SitechatError(Exception):
    """Root of every error sitechat raises on purpose."""


class ConfigurationError(SitechatError):
    """A setting is missing or invalid; the message names the environment variable."""


class MissingDependencyError(ConfigurationError):
    """An optional dependency is not installed; the message names the extra to install."""

    def __init__(self, package: str, extra: str, feature: str) -> None:
        self.package = package
        self.extra = extra
        super().__init__(
            f"{feature} needs the '{package}' package, which is not installed. "
            f"Install it with: pip install 'sitechat[{extra}]'"
        )


class PluginError(SitechatError):
    """A provider could not be found, imported or validated."""


class ProviderNotFoundError(PluginError):
    """No provider is registered under the requested name."""

    def __init__(self, group: str, name: str, available: list[str]) -> None:
        self.group = group
        self.name = name
        self.available = available
        listed = ", ".join(available) if available else "none"
        super().__init__(
            f"No {group} provider named '{name}'. Available: {listed}. "
            "Install the package that provides it, or fix the name in your settings."
        )


class InvalidInputError(SitechatError):
    """An argument or message was rejected before any work was done."""


class IngestError(SitechatError):
    """A source could not be ingested."""


class FetchError(IngestError):
    """A URL could not be fetched."""


class UnsafeURLError(IngestError):
    """A URL was refused: not http(s), out of scope, or resolving to a private address."""


class StoreError(SitechatError):
    """The vector store failed."""


class IndexNotFoundError(StoreError):
    """There is no index at the given location."""


class CorruptIndexError(StoreError):
    """The index on disk is damaged or written in a format this version cannot read."""


class EmbedderMismatchError(StoreError):
    """The index was built by a different embedder than the one configured."""


class ProviderError(SitechatError):
    """An LLM or embedding provider failed.

    ``retryable`` tells the retry layer whether trying again may help; ``provider`` names
    the provider that failed.
    """

    retryable: bool = False

    def __init__(
        self, message: str, *, provider: str = "", retry_after: float | None = None
    ) -> None:
        self.provider = provider
        self.retry_after = retry_after
        super().__init__(message)


class AuthenticationError(ProviderError):
    """The API key or credentials were rejected."""


class PermissionDeniedError(ProviderError):
    """The credentials are valid but not allowed to do this."""


class RateLimitError(ProviderError):
    """The provider throttled the request."""

    retryable = True


class ProviderTimeoutError(ProviderError):
    """The provider did not answer in time."""

    retryable = True


class BadRequestError(ProviderError):
    """The provider refused the request as malformed."""


class ContextLengthError(BadRequestError):
    """The prompt is longer than the model's context window."""


class ModelNotFoundError(ProviderError):
    """The model id is unknown to the provider, or not enabled for this account."""


class ServiceUnavailableError(ProviderError):
    """The provider is down or overloaded."""

    retryable = True


class StreamInterruptedError(ProviderError):
    """The answer stream broke after it had started; ``partial`` holds what arrived."""

    def __init__(self, message: str, *, provider: str = "", partial: str = "") -> None:
        self.partial = partial
        super().__init__(message, provider=provider)
