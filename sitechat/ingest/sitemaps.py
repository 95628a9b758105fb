"""Sitemaps (sitemaps.org): the pages a site says it has, read without trusting the file.

A sitemap is XML from the network, so it is parsed with expat directly and every
feature that makes XML dangerous is refused: a document type declaration (where entity
definitions live: "billion laughs", external entities) stops the parse, and parameter
entities are never read. Gzip sitemaps are inflated with a hard cap on the output, so a
small bomb cannot fill memory. The sitemaps.org limits (50 MB uncompressed, 50,000 URLs)
are the defaults; a plain-text sitemap (one URL per line) is read too.

Anything that is not a sitemap is refused with :class:`SitemapError` rather than read as an
empty listing: an HTML page (a login or error page served with status 200), an empty body,
text without a single URL line (JSON, say), or XML whose root is not ``<urlset>`` or
``<sitemapindex>``. A sitemap listing more than the URL limit is read up to the limit and
flagged in :attr:`SitemapContent.error`, since the rest of its listing is missing.
"""

from __future__ import annotations

import zlib
from dataclasses import dataclass
from xml.parsers import expat

__all__ = [
    "MAX_SITEMAP_BYTES",
    "MAX_SITEMAP_URLS",
    "SitemapContent",
    "SitemapError",
    "gunzip_bounded",
    "parse_sitemap",
]

MAX_SITEMAP_BYTES = 50 * 1024 * 1024
MAX_SITEMAP_URLS = 50_000
_GZIP_MAGIC = b"\x1f\x8b"


class SitemapError(ValueError):
    """A sitemap was refused (unsafe XML, too large once inflated) or is not a sitemap."""


@dataclass(frozen=True, slots=True)
class SitemapContent:
    """What one sitemap file lists: pages (with ``lastmod`` when given) and more sitemaps.

    ``error`` says why the file was read only in part (it is cut short or malformed): the
    entries before the break are listed, but the file is not a complete listing.
    """

    pages: tuple[tuple[str, str | None], ...] = ()
    sitemaps: tuple[str, ...] = ()
    error: str | None = None


def gunzip_bounded(data: bytes, limit: int) -> bytes:
    """Inflate gzip ``data``; raise :class:`SitemapError` past ``limit`` output bytes."""
    inflater = zlib.decompressobj(16 + zlib.MAX_WBITS)
    out = bytearray()
    pending = data
    try:
        while pending:
            out += inflater.decompress(pending, limit + 1 - len(out))
            if len(out) > limit:
                raise SitemapError(f"inflates to more than {limit} bytes")
            pending = inflater.unconsumed_tail
            if inflater.eof:
                break
    except zlib.error as exc:
        raise SitemapError(f"is not valid gzip ({exc})") from None
    return bytes(out)


class _Refused(Exception):
    pass


_ROOTS = ("urlset", "sitemapindex")
_HTML = "is an HTML page, not a sitemap: likely a login, error or soft-404 page"


class _Collector:
    """Expat callbacks: keep ``<loc>``/``<lastmod>`` of ``<url>`` and ``<sitemap>`` entries."""

    def __init__(self, max_urls: int) -> None:
        self.max_urls = max_urls
        self.stack: list[str] = []
        self.text: list[str] = []
        self.loc: str | None = None
        self.lastmod: str | None = None
        self.pages: list[tuple[str, str | None]] = []
        self.sitemaps: list[str] = []

    @staticmethod
    def _local(name: str) -> str:
        return name.rsplit(":", 1)[-1].rsplit(" ", 1)[-1].lower()

    def start(self, name: str, attrs: object) -> None:
        local = self._local(name)
        if not self.stack and local not in _ROOTS:
            raise _Refused("html" if local == "html" else f"root:{local}")
        self.stack.append(local)
        if local in ("url", "sitemap"):
            self.loc = self.lastmod = None
        self.text = []

    def end(self, name: str) -> None:
        local = self.stack.pop() if self.stack else self._local(name)
        value = "".join(self.text).strip()
        self.text = []
        parent = self.stack[-1] if self.stack else ""
        if local == "loc" and parent in ("url", "sitemap"):
            self.loc = value
        elif local == "lastmod" and parent in ("url", "sitemap"):
            self.lastmod = value or None
        elif local in ("url", "sitemap") and self.loc:
            if len(self.pages) + len(self.sitemaps) >= self.max_urls:
                raise _Refused("limit")
            if local == "url":
                self.pages.append((self.loc, self.lastmod))
            else:
                self.sitemaps.append(self.loc)

    def data(self, text: str) -> None:
        if self.stack and self.stack[-1] in ("loc", "lastmod"):
            self.text.append(text)


def _refuse_dtd(*_: object) -> int:
    raise _Refused("dtd")


def _refuse_doctype(name: str | None, *_: object) -> None:
    raise _Refused("html" if (name or "").lower() == "html" else "dtd")


def _over_limit(max_urls: int) -> str:
    return (
        f"lists more than {max_urls} URLs, the most one sitemap file may list: only the "
        f"first {max_urls} were read; split it into several sitemaps listed by a sitemap index"
    )


def _parse_xml(data: bytes, max_urls: int) -> SitemapContent:
    collector = _Collector(max_urls)
    error: str | None = None
    parser = expat.ParserCreate()
    parser.SetParamEntityParsing(expat.XML_PARAM_ENTITY_PARSING_NEVER)
    parser.StartDoctypeDeclHandler = _refuse_doctype
    parser.EntityDeclHandler = _refuse_dtd
    parser.ExternalEntityRefHandler = _refuse_dtd
    parser.StartElementHandler = collector.start
    parser.EndElementHandler = collector.end
    parser.CharacterDataHandler = collector.data
    try:
        parser.Parse(data, True)
    except _Refused as refused:
        why = str(refused)
        if why == "dtd":
            raise SitemapError(
                "declares a DTD or entities, which sitemaps never need; refused for safety"
            ) from None
        if why == "html":
            raise SitemapError(_HTML) from None
        if why.startswith("root:"):
            raise SitemapError(
                f"is not a sitemap: its root element is <{why[5:][:40]}>, "
                "not <urlset> or <sitemapindex>"
            ) from None
        error = _over_limit(max_urls)
    except expat.ExpatError as exc:
        if not collector.pages and not collector.sitemaps:
            raise SitemapError(f"is not well-formed XML ({exc})") from None
        # A truncated or slightly broken file still lists the URLs read before the error,
        # but it is not a complete listing: pages missing from it may well exist.
        error = f"is cut short or not well-formed XML ({exc})"
    return SitemapContent(tuple(collector.pages), tuple(collector.sitemaps), error)


def _parse_text(text: str, max_urls: int) -> SitemapContent:
    pages: list[tuple[str, str | None]] = []
    for line in text.splitlines():
        line = line.strip()
        if line.startswith(("http://", "https://")) and " " not in line:
            if len(pages) >= max_urls:
                return SitemapContent(tuple(pages), error=_over_limit(max_urls))
            pages.append((line, None))
    if not pages:
        raise SitemapError(
            "is not a sitemap: it is neither sitemap XML nor a text list of http(s) URLs, "
            "one per line"
        )
    return SitemapContent(tuple(pages))


def parse_sitemap(
    data: bytes, *, max_bytes: int = MAX_SITEMAP_BYTES, max_urls: int = MAX_SITEMAP_URLS
) -> SitemapContent:
    """Read a sitemap or sitemap index (XML, gzip-compressed XML, or plain text).

    Raises :class:`SitemapError` when the file is refused or is not a sitemap at all;
    URLs are returned as written (callers canonicalise and scope them).
    """
    if data.startswith(_GZIP_MAGIC):
        data = gunzip_bounded(data, max_bytes)
    elif len(data) > max_bytes:
        raise SitemapError(f"is larger than {max_bytes} bytes")
    head = data[:512].lstrip(b"\xef\xbb\xbf \t\r\n")
    if not head and not data.strip(b"\xef\xbb\xbf \t\r\n"):
        raise SitemapError("is empty")
    if head.startswith(b"<"):
        return _parse_xml(data, max_urls)
    return _parse_text(data.decode("utf-8", errors="replace"), max_urls)
