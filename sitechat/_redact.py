"""Keeping secrets out of messages and log lines.

Configuration carries secrets (API keys, a gateway's ``user:password@`` or ``?token=`` in a
URL), and vendors quote them back: OpenAI repeats a rejected key, botocore can quote signed
headers, httpx logs every request's full URL. Whatever sitechat shows or logs passes
through :func:`redact`; a configured URL is shown through :func:`safe_url`.

A URL can carry a secret percent-encoded (``?next=https%3A%2F%2Fuser%3Apw%40host``,
``token%3Dabc``, a key with ``/`` or ``+`` quoted), where none of the patterns would see
it. Every run of text holding a ``%XX`` escape is therefore also read decoded: if the
decoded text has anything to mask, the run is shown decoded and masked.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from itertools import pairwise
from urllib.parse import unquote, unquote_plus, urlsplit, urlunsplit

__all__ = ["RedactedException", "redact", "redacted_exception", "safe_url"]

# A value runs to a space, a comma or semicolon, or a quote. Punctuation that a key, a token
# or a signature never ends with (base64 and base64url, hex, RFC 6750's b64token; "=" is
# padding and "/" "+" are base64 digits, so those stay in) closes the sentence, list or
# bracket the value sits in: trailing, it is left out of the mask.
_TRAILING = r".:!?)\]}>`"


def _value(ends: str, trailing: str = _TRAILING) -> str:
    """A run of anything but ``ends``, less the ``trailing`` punctuation it ends with; a run
    of nothing but such punctuation is taken whole."""
    return rf"(?:[^{ends}]*[^{ends}{trailing}]|[^{ends}]+)"


_TOKEN = _value(r"\s,;\"'")
# a password or a secret may end in any punctuation ("Summer2024!"): masked to its end
_UNTRIMMED = r"[^\s,;\"']+"

# a value may be quoted, or written as a bytes repr: botocore's debug log prints headers as
# {'X-Amz-Security-Token': b'...'} and its signature as "Signature:\n<hex>"
_NAMED = r"([\"']?\s*[:=]\s*(?:b?[\"'])?)"

_CREDENTIAL_NAMES = r"(?:secret(?:[_-]?(?:access[_-]?)?key)?|password|passwd|private[_-]?key)"
# a key or a token: api_key, token, and botocore's SessionToken and SecurityToken
_TOKEN_NAMES = r"(?:api[_-]?key|(?:session|security)?token)"  # noqa: S105 - a pattern

# a PEM private key: the whole block, its newlines real or written as "\n" (a service
# account's JSON); a block cut short runs to the next quote or the end of the text. The
# body stops at a quote or an END line without looking back, so a text full of BEGIN
# lines costs one pass.
_PEM_PRIVATE_KEY = re.compile(
    r"-----BEGIN [A-Z0-9 ]*PRIVATE KEY-----(?:[^\"'-]|-(?!----END ))*"
    r"(?:-----END [A-Z0-9 ]*PRIVATE KEY-----)?"
)

_SECRET_PATTERNS = (
    # first: the names below would mask only "-----BEGIN" and leave the key itself
    (_PEM_PRIVATE_KEY, "***"),
    (re.compile(r"\b(sk|rk|pk)-[A-Za-z0-9_\-]{6,}"), r"\1-***"),
    (re.compile(r"(?i)\bbearer\s+" + _TOKEN), "Bearer ***"),
    (
        re.compile(
            r"(?i)\b(Signature|Credential|X-Amz-Security-Token|X-Amz-Signature)"
            + _NAMED
            + _value(r"\s,;&\"'")
        ),
        r"\1\2***",
    ),
    (re.compile(r"\b(AKIA|ASIA)[A-Z0-9]{12,}"), "***"),
    # user:password@ in any URL, and query parameters that usually carry a credential; a
    # query value may hold a comma or a semicolon, but not end with one
    (re.compile(r"(?<=//)[^/\s@:]*:[^/\s@]*@"), "***@"),
    (
        re.compile(
            r"(?i)([?&](?:key|sig|auth|code|access_token)=)"
            + _value(r"&#\s\"'", trailing=_TRAILING + ",;")
        ),
        r"\1***",
    ),
    # a whole word or the end of a snake_case one (access_token), not TimeToFirstToken
    (re.compile(r"(?i)\b((?:\w+[_-])?" + _TOKEN_NAMES + ")" + _NAMED + _TOKEN), r"\1\2***"),
    # ... and secret_key, aws_secret_access_key, private_key, passwd
    (
        re.compile(r"(?i)\b((?:\w+[_-])?" + _CREDENTIAL_NAMES + ")" + _NAMED + _UNTRIMMED),
        r"\1\2***",
    ),
    # the same names as XML elements: an STS response in botocore's debug log
    # (<SecretAccessKey>...</SecretAccessKey>, <SessionToken>...</SessionToken>)
    (
        re.compile(
            r"(?i)(<((?:\w+[_-])?(?:" + _TOKEN_NAMES + "|" + _CREDENTIAL_NAMES + r"))>)"
            r"[^<]+(?=</\2>)"
        ),
        r"\1***",
    ),
)


# a run of text (up to a space or a quote) holding at least one percent escape
_ENCODED_RUN = re.compile(r"[^\s\"'<>]*%[0-9A-Fa-f]{2}[^\s\"'<>]*")


def redact(text: str, secrets: Iterable[str] = ()) -> str:
    """``text`` with known secrets and anything shaped like a key or signature masked,
    percent-encoded or not."""
    known = [secret for secret in secrets if secret and len(secret) >= 4]
    text = _mask(text, known)
    if "%" not in text:
        return text
    return _ENCODED_RUN.sub(lambda run: _mask_encoded(run.group(), known), text)


def _mask(text: str, secrets: list[str]) -> str:
    for secret in secrets:
        text = text.replace(secret, "***")
    for pattern, replacement in _SECRET_PATTERNS:
        text = pattern.sub(replacement, text)
    return text


def _mask_encoded(run: str, secrets: list[str]) -> str:
    """``run`` as is when it hides nothing, else decoded and masked (``+`` read as a plus
    first, as in a path, then as a space, as in a form-encoded query)."""
    for decode in (unquote, unquote_plus):
        decoded = decode(run)
        masked = _mask(decoded, secrets)
        if masked != decoded:
            return masked
    return run


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


class RedactedException(Exception):
    """A vendor's exception retold without its secrets: its class, its message redacted,
    and its traceback. It stands in for the vendor's exception as the ``__cause__`` of a
    sitechat error, so a traceback or ``logger.exception`` shows what failed and where,
    but never the key a server quoted back."""


_MAX_CHAIN = 8


def redacted_exception(exc: BaseException, secrets: Iterable[str] = ()) -> RedactedException:
    """``exc`` and the exceptions chained to it, each retold as a :class:`RedactedException`."""
    known = tuple(secrets)
    chain: list[BaseException] = []
    link: BaseException | None = exc
    while link is not None and link not in chain and len(chain) < _MAX_CHAIN:
        chain.append(link)
        link = link.__cause__ or (None if link.__suppress_context__ else link.__context__)
    told = [_retold(link, known) for link in chain]
    for outer, inner in pairwise(told):
        outer.__cause__ = inner
    return told[0]


def _retold(exc: BaseException, secrets: tuple[str, ...]) -> RedactedException:
    kind = type(exc)
    text = redact(str(exc), secrets)
    told = RedactedException(f"{kind.__module__}.{kind.__qualname__}: {text}")
    return told.with_traceback(exc.__traceback__)
