"""Turn vendor failures (openai, httpx, botocore, urllib3) into sitechat errors.

Every provider calls :func:`map_openai_error` or :func:`map_bedrock_error` at its boundary
and raises the result, so callers only ever see the tree in :mod:`sitechat.errors`.
Messages say what to do next. Text quoted from a vendor passes through :func:`redact`
first: OpenAI quotes rejected keys back, and botocore can quote signed headers, and neither
may reach a log line or a UI. For the same reason the vendor's exception is not chained to
the result: its ``__cause__`` is a :class:`~sitechat._redact.RedactedException` retelling
it, and the result is raised *after* the ``except`` block, so the vendor's exception is
not kept as its ``__context__`` either::

    try:
        ...
    except Exception as exc:
        error = map_openai_error(exc, secrets=(key,))
    raise error

Vendor modules are imported inside the functions, so mapping Bedrock errors never needs
the ``openai`` package installed, and the reverse.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterable
from email.utils import parsedate_to_datetime
from typing import Any

from sitechat._redact import redact, redacted_exception, safe_url
from sitechat.errors import (
    AuthenticationError,
    BadRequestError,
    ContextLengthError,
    ModelNotFoundError,
    PermissionDeniedError,
    ProviderError,
    ProviderTimeoutError,
    RateLimitError,
    ServiceUnavailableError,
)

__all__ = [
    "format_wait",
    "map_bedrock_error",
    "map_openai_error",
    "openai_where",
    "parse_retry_after",
    "redact",
    "safe_url",
]

_MAX_QUOTED = 300

_CONTEXT_MARKERS = (
    "context_length_exceeded",
    "maximum context length",
    "context length",
    "context window",
    "too many tokens",
    "too many input tokens",
    "prompt is too long",
    "input is too long",
    "reduce the length",
)

_BEDROCK_AUTH_CODES = {
    "unrecognizedclientexception",
    "invalidsignatureexception",
    "expiredtokenexception",
    "invalidclienttokenid",
    "missingauthenticationtokenexception",
    "incompletesignatureexception",
    "signaturedoesnotmatch",
}
_BEDROCK_THROTTLE_CODES = {
    "throttlingexception",
    "toomanyrequestsexception",
    "servicequotaexceededexception",
}
_BEDROCK_UNAVAILABLE_CODES = {
    "serviceunavailableexception",
    "internalserverexception",
    "modelnotreadyexception",
    "modelstreamerrorexception",
    "modelerrorexception",
}


def _quote(text: str, secrets: Iterable[str]) -> str:
    """A vendor's message, safe to embed mid-sentence: one line, redacted, bounded."""
    cleaned = redact(" ".join(str(text).split()), secrets).rstrip(". ")
    return cleaned if len(cleaned) <= _MAX_QUOTED else cleaned[: _MAX_QUOTED - 1] + "…"


#: The longest wait a server's Retry-After is taken to ask for (a day); a date years
#: ahead is a server's mistake, not a wait worth reporting in seconds.
MAX_RETRY_AFTER = 86_400.0


def parse_retry_after(headers: Any) -> float | None:
    """Seconds to wait from ``retry-after-ms`` or ``Retry-After`` (seconds or an HTTP date),
    at most :data:`MAX_RETRY_AFTER`."""
    seconds = _retry_after_seconds(headers)
    if seconds is None or seconds != seconds:  # NaN
        return None
    return min(max(0.0, seconds), MAX_RETRY_AFTER)


def _retry_after_seconds(headers: Any) -> float | None:
    if headers is None:
        return None
    millis = headers.get("retry-after-ms")
    if millis:
        try:
            return float(millis) / 1000.0
        except ValueError:
            pass
    value = headers.get("retry-after")
    if not value:
        return None
    try:
        return float(value)
    except ValueError:
        pass
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    from datetime import datetime, timezone

    if when.tzinfo is None:  # "-0000": UTC by RFC 5322
        when = when.replace(tzinfo=timezone.utc)
    return (when - datetime.now(timezone.utc)).total_seconds()


def format_wait(seconds: float) -> str:
    """A wait for a message: ``1.5s``, ``40s``, ``12 min``, ``3.5 h``."""
    if seconds < 60:
        return f"{round(seconds, 1):g}s"
    if seconds < 3600:
        return f"{round(seconds / 60):g} min"
    return f"{round(seconds / 3600, 1):g} h"


def _lower(where: str) -> str:
    return "the " + where[4:] if where.startswith("The ") else where


def _is_context_error(*texts: str | None) -> bool:
    joined = " ".join(t for t in texts if t).lower()
    return any(marker in joined for marker in _CONTEXT_MARKERS)


# OpenAI ---------------------------------------------------------------------------------


_HTML_PAGE = (
    "an HTML page came back instead of the API's JSON, so something else answered (a proxy, "
    "a gateway or a login page); check SITECHAT_OPENAI__BASE_URL"
)


def _is_html(text: str) -> bool:
    head = text.lstrip()[:200].lower()
    return head.startswith(("<!doctype html", "<html")) or "<html" in head


def _openai_detail(exc: Any) -> tuple[str, str | None]:
    """The vendor's own message and error code, from the parsed body when there is one;
    for a body that is not the API's JSON, what came back instead (an HTML page is named,
    never quoted; other text is quoted)."""
    body = getattr(exc, "body", None)
    if isinstance(body, dict):
        error = body.get("error", body)
        if isinstance(error, dict):
            return str(error.get("message") or exc), error.get("code")
    message = str(getattr(exc, "message", "") or exc)
    response = getattr(exc, "response", None)
    content_type = str(getattr(response, "headers", {}).get("content-type", "")).lower()
    text = body if isinstance(body, str) else ""
    if "html" in content_type or _is_html(text):
        return _HTML_PAGE, None
    if text:
        return f"{message} - {text}", None
    return message, getattr(exc, "code", None)


def openai_where(base_url: str | None) -> str:
    """How messages name the endpoint: the OpenAI API, or the compatible server's URL."""
    return f"The OpenAI-compatible API at {safe_url(base_url)}" if base_url else "The OpenAI API"


def map_openai_error(
    exc: BaseException,
    *,
    provider: str = "openai",
    model: str = "",
    base_url: str | None = None,
    secrets: Iterable[str] = (),
) -> ProviderError:
    """The sitechat error for a failure of the ``openai`` client (or its transport), caused
    by a redacted retelling of ``exc``; a :class:`ProviderError` is returned as it is."""
    if isinstance(exc, ProviderError):
        return exc
    secrets = tuple(secrets)
    error = _map_openai(exc, provider, model, base_url, secrets)
    error.__cause__ = redacted_exception(exc, secrets)
    return error


def _map_openai(
    exc: BaseException, provider: str, model: str, base_url: str | None, secrets: tuple[str, ...]
) -> ProviderError:
    where = openai_where(base_url)
    import openai

    if isinstance(exc, openai.APITimeoutError):
        return ProviderTimeoutError(
            f"{where} did not answer in time. Try again, or raise SITECHAT_LLM__TIMEOUT.",
            provider=provider,
        )
    if isinstance(exc, openai.APIConnectionError):
        return ServiceUnavailableError(
            f"The connection to {_lower(where)} failed or was cut. Check SITECHAT_OPENAI__BASE_URL "
            "and the network, then try again.",
            provider=provider,
        )
    if isinstance(exc, openai.APIStatusError):
        return _map_openai_status(exc, provider, model, where, secrets)
    if isinstance(exc, openai.APIError):
        # an error event inside an otherwise healthy stream
        message, _ = _openai_detail(exc)
        if _is_context_error(message):
            return ContextLengthError(_context_message(model, message, secrets), provider=provider)
        return ServiceUnavailableError(
            f"{where} reported an error mid-answer: {_quote(message, secrets)}. Try again.",
            provider=provider,
        )
    if isinstance(exc, ValueError) and "No generation chunks" in str(exc):
        # LangChain's words for a stream that carried no chunk: the reply was not an event
        # stream, and ChatOpenAI does not say what it was: a plain JSON reply from a server
        # that cannot stream, or a page from something else (a login page, a proxy)
        return ProviderError(
            f"{where} sent no streamed chunks: its reply was not an event stream. If "
            "something other than the API answered (a login page or a proxy), check "
            "SITECHAT_OPENAI__BASE_URL; if the server cannot stream, set "
            "SITECHAT_OPENAI__STREAMING=false.",
            provider=provider,
        )
    if isinstance(exc, ValueError) and _is_html(str(exc).partition("got str: '")[2]):
        # ChatOpenAI's words for a whole reply that is text, not JSON: here an HTML page
        return ProviderError(f"{where}: {_HTML_PAGE}.", provider=provider)
    return _map_transport_error(exc, provider, where, secrets)


def _context_message(model: str, detail: str, secrets: Iterable[str]) -> str:
    return (
        f"The prompt is longer than model '{model}' accepts ({_quote(detail, secrets)}). "
        "Ask a shorter question, lower SITECHAT_CHAT__MAX_HISTORY_MESSAGES or "
        "SITECHAT_RETRIEVAL__TOP_K, or choose a model with a larger context window."
    )


def _map_openai_status(
    exc: Any, provider: str, model: str, where: str, secrets: tuple[str, ...]
) -> ProviderError:
    status = int(exc.status_code)
    message, code = _openai_detail(exc)
    quoted = _quote(message, secrets)
    if status == 401:
        return AuthenticationError(
            f"{where} rejected the API key (HTTP 401). Check SITECHAT_OPENAI__API_KEY "
            "(or OPENAI_API_KEY) and that the key has not been revoked.",
            provider=provider,
        )
    if status == 429 and code == "insufficient_quota":
        return PermissionDeniedError(
            f"{where} says the account is out of quota: {quoted}. Check the plan and billing.",
            provider=provider,
        )
    if status == 429:
        retry_after = parse_retry_after(getattr(exc.response, "headers", None))
        hint = (
            f" The server asked to wait {format_wait(retry_after)}."
            if retry_after is not None
            else ""
        )
        return RateLimitError(
            f"{where} is rate limiting requests (HTTP 429).{hint} Wait and try again, or "
            "raise the account's rate limits.",
            provider=provider,
            retry_after=retry_after,
        )
    if status == 403:
        return PermissionDeniedError(
            f"{where} refused the request (HTTP 403): {quoted}. Check that the key's project "
            f"and organization may use model '{model}'.",
            provider=provider,
        )
    if status == 404:
        return ModelNotFoundError(
            f"{where} does not know model '{model}' (HTTP 404: {quoted}). Fix "
            "SITECHAT_LLM__MODEL, and check that SITECHAT_OPENAI__BASE_URL ends in /v1.",
            provider=provider,
        )
    if status == 408:
        return ProviderTimeoutError(
            f"{where} timed out the request (HTTP 408). Try again.", provider=provider
        )
    if status == 413 or (400 <= status < 500 and _is_context_error(message, code)):
        return ContextLengthError(_context_message(model, message, secrets), provider=provider)
    if status >= 500:
        return ServiceUnavailableError(
            f"{where} failed (HTTP {status}): {quoted}. It is usually temporary: try again.",
            provider=provider,
        )
    return BadRequestError(
        f"{where} refused the request (HTTP {status}): {quoted}. Check SITECHAT_LLM__* "
        "settings such as the model, temperature and max tokens.",
        provider=provider,
    )


def _map_transport_error(
    exc: BaseException, provider: str, where: str, secrets: Iterable[str]
) -> ProviderError:
    """Failures below the vendor SDK: sockets, HTTP framing, unreadable data, timeouts."""
    name = type(exc).__name__
    module = type(exc).__module__
    if isinstance(exc, (TimeoutError, asyncio.TimeoutError)) or "Timeout" in name:
        return ProviderTimeoutError(
            f"{where} went silent mid-request ({name}). Try again, or raise SITECHAT_LLM__TIMEOUT.",
            provider=provider,
        )
    if (
        isinstance(exc, (json.JSONDecodeError, UnicodeDecodeError))
        or "Parser" in name
        or "Checksum" in name
    ):
        return ServiceUnavailableError(
            f"{where} sent a response that could not be read ({name}). Try again; if it "
            "persists, check any proxy between sitechat and the provider.",
            provider=provider,
        )
    if isinstance(exc, (ConnectionError, OSError)) or module.startswith(
        ("httpx", "httpcore", "urllib3", "h11")
    ):
        return ServiceUnavailableError(
            f"The connection to {_lower(where)} failed or was cut ({name}). Check the endpoint "
            "setting and the network, then try again.",
            provider=provider,
        )
    return ProviderError(
        f"{where} failed unexpectedly ({name}: {_quote(str(exc), secrets)}). Try again; "
        "if it persists, report it with the log.",
        provider=provider,
    )


# Bedrock --------------------------------------------------------------------------------


def map_bedrock_error(
    exc: BaseException,
    *,
    provider: str = "bedrock",
    model: str = "",
    region: str | None = None,
    secrets: Iterable[str] = (),
) -> ProviderError:
    """The sitechat error for a failure of boto3's ``bedrock-runtime`` client, caused by a
    redacted retelling of ``exc``; a :class:`ProviderError` is returned as it is."""
    if isinstance(exc, ProviderError):
        return exc
    secrets = tuple(secrets)
    error = _map_bedrock(exc, provider, model, region, secrets)
    error.__cause__ = redacted_exception(exc, secrets)
    return error


def _map_bedrock(
    exc: BaseException, provider: str, model: str, region: str | None, secrets: tuple[str, ...]
) -> ProviderError:
    where = f"Amazon Bedrock ({region})" if region else "Amazon Bedrock"
    from botocore import exceptions as boto_errors  # type: ignore[import-untyped, unused-ignore]

    if isinstance(exc, boto_errors.ClientError):
        return _map_bedrock_client_error(exc, provider, model, where, secrets)
    if isinstance(exc, (boto_errors.NoCredentialsError, boto_errors.PartialCredentialsError)):
        return AuthenticationError(
            "No usable AWS credentials were found. Use the standard AWS chain: AWS_PROFILE "
            "(or SITECHAT_BEDROCK__PROFILE), AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, "
            "or an ECS task / instance role.",
            provider=provider,
        )
    if isinstance(exc, (boto_errors.ReadTimeoutError, boto_errors.ConnectTimeoutError)):
        return ProviderTimeoutError(
            f"{where} did not answer in time. Try again, or raise SITECHAT_LLM__TIMEOUT.",
            provider=provider,
        )
    if isinstance(exc, boto_errors.EndpointConnectionError):
        return ServiceUnavailableError(
            f"Could not connect to {where}. Check SITECHAT_BEDROCK__REGION, "
            "SITECHAT_BEDROCK__ENDPOINT_URL and the network.",
            provider=provider,
        )
    return _map_transport_error(exc, provider, where, secrets)


def _map_bedrock_client_error(
    exc: Any, provider: str, model: str, where: str, secrets: tuple[str, ...]
) -> ProviderError:
    error = exc.response.get("Error", {}) if isinstance(exc.response, dict) else {}
    code = str(error.get("Code", "")).lower()
    message = str(error.get("Message", "") or "")
    metadata = exc.response.get("ResponseMetadata", {}) if isinstance(exc.response, dict) else {}
    status = int(metadata.get("HTTPStatusCode") or 0)
    quoted = _quote(message, secrets)
    code_name = error.get("Code", "") or f"HTTP {status}"
    if code in _BEDROCK_AUTH_CODES or status == 401:
        return AuthenticationError(
            f"{where} rejected the AWS credentials ({code_name}). Check the credentials the "
            "AWS chain resolves (AWS_PROFILE, environment, task role) and that they are current.",
            provider=provider,
        )
    if code in _BEDROCK_THROTTLE_CODES or status == 429:
        retry_after = parse_retry_after(metadata.get("HTTPHeaders"))
        return RateLimitError(
            f"{where} is throttling requests for model '{model}' ({code_name}). Wait and try "
            "again, or ask for a higher quota / use a cross-region inference profile.",
            provider=provider,
            retry_after=retry_after,
        )
    if code == "accessdeniedexception" or status == 403:
        return PermissionDeniedError(
            f"{where} denied access to model '{model}' ({quoted}). Grant the role "
            "bedrock:InvokeModel and bedrock:InvokeModelWithResponseStream on it, and enable "
            "the model under 'Model access' in the Bedrock console for this region.",
            provider=provider,
        )
    if (
        code == "resourcenotfoundexception"
        or status == 404
        or "model identifier is invalid" in message.lower()
    ):
        return ModelNotFoundError(
            f"{where} does not know model '{model}' ({quoted}). Fix SITECHAT_LLM__MODEL (a model "
            "id or inference profile available in SITECHAT_BEDROCK__REGION).",
            provider=provider,
        )
    if code == "modeltimeoutexception" or status == 408:
        return ProviderTimeoutError(
            f"{where}: the model timed out ({quoted}). Try again.", provider=provider
        )
    if code in _BEDROCK_UNAVAILABLE_CODES or status >= 500:
        return ServiceUnavailableError(
            f"{where} failed ({code_name}: {quoted}). It is usually temporary: try again.",
            provider=provider,
        )
    if _is_context_error(message):
        return ContextLengthError(_context_message(model, message, secrets), provider=provider)
    return BadRequestError(
        f"{where} refused the request ({code_name}: {quoted}). Check SITECHAT_LLM__* settings "
        "such as the model, temperature and max tokens.",
        provider=provider,
    )
