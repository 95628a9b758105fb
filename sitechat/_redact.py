"""Keeping secrets out of messages and log lines.

Configuration carries secrets (API keys, a gateway's ``user:password@`` or ``?token=`` in a
URL), and vendors quote them back: OpenAI repeats a rejected key, botocore can quote signed
headers, httpx logs every request's full URL. Whatever sitechat shows or logs passes
through :func:`redact`; a configured URL is shown through :func:`safe_url`.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from urllib.parse import urlsplit, urlunsplit

__all__ = ["redact", "safe_url"]

_SECRET_PATTERNS = (
    (re.compile(r"\b(sk|rk|pk)-[A-Za-z0-9_\-]{6,}"), r"\1-***"),
    (re.compile(r"(?i)\bbearer\s+[^\s,;\"']+"), "Bearer ***"),
    (
        re.compile(
            r"(?i)\b(Signature|Credential|X-Amz-Security-Token|X-Amz-Signature)=[^\s,;&\"']+"
        ),
        r"\1=***",
    ),
    (re.compile(r"\b(AKIA|ASIA)[A-Z0-9]{12,}"), "***"),
    # user:password@ in any URL, and query parameters that usually carry a credential
    (re.compile(r"(?<=//)[^/\s@:]*:[^/\s@]*@"), "***@"),
    (re.compile(r"(?i)([?&](?:key|sig|auth|code|access_token)=)[^&#\s\"']+"), r"\1***"),
    (
        # a whole word or the end of a snake_case one (access_token), not TimeToFirstToken
        re.compile(
            r"(?i)\b((?:\w+[_-])?(?:api[_-]?key|secret|token|password))"
            r"([\"']?\s*[:=]\s*[\"']?)[^\s,;\"']+"
        ),
        r"\1\2***",
    ),
)


def redact(text: str, secrets: Iterable[str] = ()) -> str:
    """``text`` with known secrets and anything shaped like a key or signature masked."""
    for secret in secrets:
        if secret and len(secret) >= 4:
            text = text.replace(secret, "***")
    for pattern, replacement in _SECRET_PATTERNS:
        text = pattern.sub(replacement, text)
    return text


def safe_url(url: str) -> str:
    """``url`` fit for a message or a log line: no ``user:password@``, no query or fragment.

    An endpoint's URL is configuration, and configuration may carry a gateway's password
    (``https://user:pass@gateway/v1``) or a token in its query (``?key=...``).
    """
    try:
        parts = urlsplit(url)
    except ValueError:
        return "<the configured URL>"
    host = parts.netloc.rpartition("@")[2]
    netloc = f"***@{host}" if "@" in parts.netloc else host
    return urlunsplit((parts.scheme, netloc, parts.path, "…" if parts.query else "", ""))
