"""The knobs of a crawl, and what a crawl reports besides its pages."""

from __future__ import annotations

import ipaddress
import math
import re
from dataclasses import dataclass, field

from sitechat._version import __version__
from sitechat.errors import InvalidInputError

__all__ = [
    "DEFAULT_MAX_LINK_SHARE",
    "DEFAULT_USER_AGENT",
    "CrawlOptions",
    "CrawlStats",
    "normalize_trusted_host",
]

#: The User-Agent of every crawl that sets none: ``CrawlOptions()``, and the
#: ``SITECHAT_INGEST__USER_AGENT`` setting's default. Its first word, ``sitechat``, is the
#: product token robots.txt groups are matched against.
DEFAULT_USER_AGENT = f"sitechat/{__version__} (+https://github.com/sitechat/sitechat)"
#: Pages with 20 links or more whose main text is more than this share of link text are
#: link lists: followed, not indexed. Measured on the Python documentation: 65 of its 530
#: pages are such lists (generated indexes, chapter tables of contents: 0.77-1.0 links);
#: of the others, 10 are 0.5-0.69 (a few tables of contents, and API lists worth keeping)
#: and the rest below 0.5.
DEFAULT_MAX_LINK_SHARE = 0.7
#: One response body (or local file) larger than this is skipped.
DEFAULT_MAX_BYTES = 5_000_000


@dataclass(frozen=True, slots=True)
class CrawlOptions:
    """How far, how fast and where to crawl.

    Scope: the start URLs' sites (host and port; ``www.`` ignored). ``include`` and
    ``exclude`` are regular expressions searched in each discovered URL (canonical form):
    a link must match one ``include`` pattern when any are given, and no ``exclude``
    pattern. ``max_pages`` bounds the pages returned as ``"ok"``, ``max_depth`` the link
    hops from a start URL or sitemap entry, ``max_bytes`` one response body (after
    decompression), ``max_seconds`` the whole crawl (``None``: no limit).
    ``max_pattern_pages`` is the link-trap guard: at most that many linked URLs that
    differ only in numbers or query values (``/calendar/2031/07``, ``?month=…``) are
    fetched (sitemap entries are not counted); refusing more cuts the crawl short.

    Politeness: at most ``concurrency`` requests in flight, ``per_host_concurrency`` to
    one host (default: ``concurrency``), and at least ``delay`` seconds between requests
    to one host, or the robots.txt Crawl-delay when that is longer. 429 and 503 answers
    (and 502/504) are retried up to ``max_retries`` times, waiting as ``Retry-After``
    asks or ``retry_backoff`` doubling, but never longer than ``max_retry_wait``.

    Safety: only http(s); private, loopback and link-local addresses are refused unless
    ``allow_private`` (everything) or ``trusted_hosts`` (``host`` or ``host:port``
    entries, and only those) allow them. ``timeout`` is the limit for one request,
    body included.

    Sitemaps: ``sitemaps`` are read as well as the start URLs; with ``use_sitemaps``
    the ``Sitemap:`` lines of each site's robots.txt, or else ``/sitemap.xml``, are too.

    Link lists: a page whose main text is more than ``max_link_share`` link text (a
    generated index, a table of contents) is followed but not indexed; 1.0 indexes it.
    """

    max_pages: int = 500
    max_depth: int = 10
    max_bytes: int = DEFAULT_MAX_BYTES
    concurrency: int = 4
    timeout: float = 20.0
    user_agent: str = DEFAULT_USER_AGENT
    allow_private: bool = False
    include: tuple[str, ...] = ()
    exclude: tuple[str, ...] = ()
    respect_robots: bool = True
    max_seconds: float | None = None
    delay: float = 0.0
    per_host_concurrency: int | None = None
    max_retries: int = 3
    retry_backoff: float = 0.5
    max_retry_wait: float = 30.0
    sitemaps: tuple[str, ...] = ()
    use_sitemaps: bool = True
    trusted_hosts: tuple[str, ...] = ()
    max_pattern_pages: int = 100
    extract_threads: int = 2
    max_link_share: float = DEFAULT_MAX_LINK_SHARE

    def __post_init__(self) -> None:
        for name in ("max_pages", "max_bytes", "concurrency", "max_pattern_pages"):
            if getattr(self, name) < 1:
                raise InvalidInputError(f"CrawlOptions.{name} must be at least 1.")
        for name in ("max_depth", "max_retries", "extract_threads"):
            if getattr(self, name) < 0:
                raise InvalidInputError(f"CrawlOptions.{name} must be 0 or more.")
        if self.per_host_concurrency is not None and self.per_host_concurrency < 1:
            raise InvalidInputError("CrawlOptions.per_host_concurrency must be at least 1.")
        if not 0.0 <= self.max_link_share <= 1.0:
            raise InvalidInputError(
                "CrawlOptions.max_link_share must be between 0 and 1 (1 indexes every page)."
            )
        for name in ("timeout", "max_seconds", "delay", "retry_backoff", "max_retry_wait"):
            value = getattr(self, name)
            if value is not None and not math.isfinite(value):
                # an infinite delay or budget would make the crawl wait forever
                raise InvalidInputError(f"{_option(name)} must be a finite number of seconds.")
        if self.timeout <= 0:
            raise InvalidInputError(f"{_option('timeout')} must be a positive number of seconds.")
        if self.max_seconds is not None and self.max_seconds <= 0:
            raise InvalidInputError(f"{_option('max_seconds')} must be positive (or None).")
        for name in ("delay", "retry_backoff", "max_retry_wait"):
            if getattr(self, name) < 0:
                raise InvalidInputError(f"{_option(name)} must be 0 or more seconds.")
        if not self.user_agent.strip() or any(c in self.user_agent for c in "\r\n"):
            raise InvalidInputError(f"{_option('user_agent')} must be one non-empty line.")
        for pattern in (*self.include, *self.exclude):
            try:
                re.compile(pattern)
            except re.error as exc:
                raise InvalidInputError(
                    f"Invalid include/exclude pattern {pattern!r}: {exc}. "
                    "Patterns are Python regular expressions searched in the URL."
                ) from exc
        try:
            trusted = tuple(normalize_trusted_host(entry) for entry in self.trusted_hosts)
        except ValueError as exc:
            raise InvalidInputError(f"CrawlOptions.trusted_hosts: {exc}") from None
        object.__setattr__(self, "trusted_hosts", trusted)


_HOST_LABEL = re.compile(r"[a-z0-9_](?:[a-z0-9_-]{0,61}[a-z0-9_])?")


def normalize_trusted_host(entry: str) -> str:
    """A trusted-host entry in its canonical form: ``host``, ``host:port`` or ``[ipv6]:port``.

    Lower-cased, without a trailing dot; a bare IPv6 address is kept bare. Raises
    ``ValueError`` saying what is accepted for anything else (a URL, a path, a typo), which
    would otherwise never match and leave the host refused with no hint why.
    """
    value = entry.strip().lower()
    host, port = value, None
    if value.startswith("["):
        host, sep, rest = value[1:].partition("]")
        if not sep or (rest and not rest.startswith(":")) or not _is_ipv6(host):
            host = ""
        port = rest[1:] if rest else None
    elif value.count(":") == 1:
        host, port = value.split(":")
    host = host.rstrip(".")
    if port is not None and not (port.isascii() and port.isdigit() and 0 < int(port) < 65536):
        host = ""
    if ":" in host and not _is_ipv6(host):
        host = ""
    valid = bool(host) and (
        ":" in host or all(_HOST_LABEL.fullmatch(label) for label in host.split("."))
    )
    if not valid:
        # a user name is never echoed: "user:password@host" is a likely mistake here
        shown = "An entry with a user name" if "@" in entry else repr(entry)
        raise ValueError(
            f"{shown} is not a host: write HOST, HOST:PORT, an IPv6 address or "
            "[IPV6]:PORT, such as docs.internal, localhost:8000 or [::1]:8080 "
            "(no scheme, path or user name)"
        )
    if ":" in host and port:
        return f"[{host}]:{port}"
    return f"{host}:{port}" if port else host


def _is_ipv6(text: str) -> bool:
    try:
        ipaddress.IPv6Address(text)
    except ValueError:
        return False
    return True


# the options ``sitechat ingest`` takes on its command line (the rest only from code)
_FLAGS = frozenset({"max_seconds", "delay", "user_agent", "max_pages", "max_depth"})


def _option(name: str) -> str:
    """How a user sets crawl option ``name``: its flag and variable, else its field."""
    if name in _FLAGS:
        return f"The crawl option --{name.replace('_', '-')} (SITECHAT_INGEST__{name.upper()})"
    return f"CrawlOptions.{name}"


@dataclass
class CrawlStats:
    """Counters a crawl fills in as it goes; pass one to :func:`crawl` to read them.

    ``truncated`` says why the crawl stopped before its frontier was empty (page limit,
    depth limit, time budget, link-trap guard), or is None when every reachable page in
    scope was tried.
    ``start_redirects`` maps each start URL that redirected to where it led.
    """

    requests: int = 0
    retries: int = 0
    not_modified: int = 0
    bytes_received: int = 0
    sitemaps_read: int = 0
    sitemap_urls: int = 0
    trap_urls_dropped: int = 0
    duplicate_urls_dropped: int = 0
    extract_seconds: float = 0.0
    truncated: str | None = None
    start_redirects: dict[str, str] = field(default_factory=dict)
