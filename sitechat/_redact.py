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


# A backslash before a quote is the quote's escape, in JSON or a repr, and so ends a value
# that runs to a quote: the text stays valid JSON (a JSON log line is masked once more
# after it is encoded, "token=***" in it written as \"token=***\").
_NOT_AN_ESCAPE = r"\\(?![\"'])"


def _value(ends: str, trailing: str = _TRAILING, *, punctuation_alone: bool = True) -> str:
    """A run of anything but ``ends``, less the ``trailing`` punctuation it ends with; a run
    of nothing but such punctuation is taken whole, unless ``punctuation_alone`` is false."""
    char = rf"(?:[^{ends}\\]|{_NOT_AN_ESCAPE})"
    last = rf"(?:[^{ends}{trailing}\\]|{_NOT_AN_ESCAPE})"
    return rf"(?:{char}*{last}|{char}+)" if punctuation_alone else rf"{char}*{last}"


_TOKEN = _value(r"\s,;\"'")
# a password or a secret may end in any punctuation ("Summer2024!"): masked to its end
_UNTRIMMED = rf"(?:[^\s,;\"'\\]|{_NOT_AN_ESCAPE})+"


def _named(names: str, value: str, lead: str = "") -> re.Pattern[str]:
    """A name that ``names`` matches from the start of a word, ``:`` or ``=``, and a value
    to mask: ``value`` unquoted, or anything up to the closing quote.

    The name may be quoted and the value written as a bytes repr (botocore's debug log
    prints headers as ``{'X-Amz-Security-Token': b'...'}`` and its signature as
    ``"Signature:\\n<hex>"``). A quoted value may hold spaces and, as in JSON, a quote
    escaped with a backslash; one with no closing quote (a message cut short) is masked
    to the end of its line. A quoted value is scanned once, whether it closes or not, so
    a text full of unfinished quotes costs one pass. What ``lead`` matches at the start
    of the value (an auth scheme) stays visible.

    The replacement is :data:`_NAMED_MASK`.
    """
    return re.compile(
        rf"(?i)\b({names})([\"']?\s*[:=]\s*)"
        rf"(?:(b?\"{lead})(?:[^\"\\\n]|\\.)+|(b?'{lead})(?:[^'\\\n]|\\.)+|({lead}){value})"
    )


_NAMED_MASK = r"\1\2\3\4\5***"

# secrets, passwords and private keys; a name ending in "password" or "passwd" may be
# glued to what comes before it (PGPASSWORD), but "pass" and "pwd" only end a snake_case
# or kebab-case name (DB_PASS, MYSQL_PWD): alone, they are an ordinary word and the
# working directory ($PWD), and inside a word (bypass, passthrough) no name at all. Each
# alternative reads a word once, so a long word costs a pass over it.
_CREDENTIAL_NAMES = (
    r"(?:\w+[_-])?(?:secret(?:[_-]?(?:access[_-]?)?key)?|private[_-]?key)"
    r"|\w*pass(?:word|wd)"
    r"|\w+[_-](?:pass|pwd)"
)
# a key or a token: api_key, token, and botocore's SessionToken and SecurityToken; a whole
# word or the end of a snake_case one (access_token), not TimeToFirstToken
_TOKEN_NAMES = r"(?:\w+[_-])?(?:api[_-]?key|(?:session|security)?token)"  # noqa: S105
# an HTTP auth scheme (RFC 9110's token) and the space after it: "Basic ", "Token "; its
# credentials are one token (Basic, Bearer) or a list of parameters (Digest's
# username="...", response="..."), a parameter's value quoted or a token ("abc=" is a
# token's padding, "abc=." a padded token ending a sentence)
_AUTH_SCHEME = r"(?:[A-Za-z][A-Za-z0-9!#$%&*+.^_`|~-]*\s+)?"
_AUTH_PARAM_TOKEN = _value(r"\s,;\"'", punctuation_alone=False)
_AUTH_PARAM = rf"[\w-]+=(?:\"(?:[^\"\\\n]|\\.)*\"?|{_AUTH_PARAM_TOKEN})?"
_AUTH_CREDENTIALS = rf"(?:{_AUTH_PARAM}(?:\s*,\s*{_AUTH_PARAM})*|{_TOKEN})"

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
    # any scheme's credential in an Authorization header (Basic, Token, Digest, ...)
    (_named(r"(?:proxy-)?authorization", _AUTH_CREDENTIALS, lead=_AUTH_SCHEME), _NAMED_MASK),
    # OpenAI repeats a rejected key, whatever its shape (a gateway's, a wrong paste)
    (_named("API key provided", _TOKEN, lead=r"(?:(?:sk|rk|pk)-)?"), _NAMED_MASK),
    (
        _named(
            r"Signature|Credential|X-Amz-Security-Token|X-Amz-Signature",
            _value(r"\s,;&\"'"),
        ),
        _NAMED_MASK,
    ),
    (re.compile(r"\b(AKIA|ASIA)[A-Z0-9]{12,}"), "***"),
    # the userinfo of a URL, up to the last "@" of its authority (a password may hold a raw
    # "@"): in an http(s) URL whatever it is (a token alone, as in a git clone URL), in any
    # other (postgresql://, redis://) when it holds a password
    (re.compile(r"(?i)(?:(?<=http://)|(?<=https://))(?:[^/?#\s@]*@)+"), "***@"),
    (re.compile(r"(?<=//)(?=[^/?#\s:]*:[^/?#\s]*@)(?:[^/?#\s@]*@)+"), "***@"),
    # query parameters that usually carry a credential; a query value may hold a comma or
    # a semicolon, but not end with one
    (
        re.compile(
            r"(?i)([?&](?:key|sig|auth|code|access_token)=)"
            + _value(r"&#\s\"'", trailing=_TRAILING + ",;")
        ),
        r"\1***",
    ),
    (_named(_TOKEN_NAMES, _TOKEN), _NAMED_MASK),
    # ... and secret_key, aws_secret_access_key, private_key, passwd
    (_named(_CREDENTIAL_NAMES, _UNTRIMMED), _NAMED_MASK),
    # the same names as XML elements: an STS response in botocore's debug log
    # (<SecretAccessKey>...</SecretAccessKey>, <SessionToken>...</SessionToken>)
    (
        re.compile(r"(?i)(<(" + _TOKEN_NAMES + "|" + _CREDENTIAL_NAMES + r")>)[^<]+(?=</\2>)"),
        r"\1***",
    ),
)


# a run of text, up to a space or a quote, and a percent escape in it; runs are found whole
# and then searched, since a pattern for "a run holding an escape" would rescan a long run
# without one from each of its characters
_RUN = re.compile(r"[^\s\"'<>]+")
_PERCENT_ESCAPE = re.compile(r"%[0-9A-Fa-f]{2}")


def redact(text: str, secrets: Iterable[str] = ()) -> str:
    """``text`` with known secrets and anything shaped like a key or signature masked,
    percent-encoded or not."""
    known = [secret for secret in secrets if secret and len(secret) >= 4]
    text = _mask(text, known)
    if "%" not in text:
        return text
    return _RUN.sub(lambda run: _mask_encoded(run.group(), known), text)


def _mask(text: str, secrets: list[str]) -> str:
    for secret in secrets:
        text = text.replace(secret, "***")
    for pattern, replacement in _SECRET_PATTERNS:
        text = pattern.sub(replacement, text)
    return text


def _mask_encoded(run: str, secrets: list[str]) -> str:
    """``run`` as is when it hides nothing, else decoded and masked (``+`` read as a plus
    first, as in a path, then as a space, as in a form-encoded query)."""
    if not _PERCENT_ESCAPE.search(run):
        return run
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
