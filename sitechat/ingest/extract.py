"""Turn fetched documents into :class:`~sitechat.models.Page` values.

:func:`extract_html` is the crawler's one call per page: it decodes the bytes as a browser
would, reads what the crawler needs to go on (links, ``rel=canonical``, meta robots) from
the whole document, and hands the main content to
:mod:`sitechat.ingest.html_content` for sectioning. Markdown and plain text live in
:mod:`sitechat.ingest.markdown`; :func:`remove_boilerplate` works across pages.
"""

from __future__ import annotations

import codecs
import re
from collections.abc import Collection, Sequence
from dataclasses import dataclass, replace

from selectolax.lexbor import LexborHTMLParser

from sitechat.ingest.charsets import codec_for, decode_bom, decode_unlabelled
from sitechat.ingest.html_content import main_sections
from sitechat.ingest.markdown import extract_markdown, extract_text
from sitechat.ingest.nesting import flatten_deep_nesting
from sitechat.ingest.options import DEFAULT_MAX_LINK_SHARE
from sitechat.ingest.urls import canonicalize_url
from sitechat.models import Page, content_hash

__all__ = [
    "MIN_LINK_LIST_LINKS",
    "ExtractedPage",
    "boilerplate_blocks",
    "common_suffix",
    "common_title_suffix",
    "decode_html",
    "extract_html",
    "extract_markdown",
    "extract_text",
    "is_link_list",
    "looks_binary",
    "page_blocks",
    "remove_boilerplate",
    "repeated_blocks",
    "strip_blocks",
    "strip_title_suffix",
]


MIN_LINK_LIST_LINKS = 20


@dataclass(frozen=True, slots=True)
class ExtractedPage:
    """An extracted page plus what the crawler needs to go on from it."""

    page: Page
    links: tuple[str, ...] = ()
    canonical: str | None = None
    noindex: bool = False
    nofollow: bool = False
    link_share: float = 0.0
    """How much of the main text is link text: near 1 for indexes and tables of contents."""
    link_count: int = 0
    written: tuple[tuple[str, str], ...] = ()
    """(canonical URL, as written) of the links whose query the page wrote in another order."""

    def is_link_list(self, max_link_share: float = DEFAULT_MAX_LINK_SHARE) -> bool:
        """True for a page that is mostly links to other pages; see :func:`is_link_list`."""
        return is_link_list(self.link_share, self.link_count, max_link_share)


def is_link_list(
    link_share: float, link_count: int, max_link_share: float = DEFAULT_MAX_LINK_SHARE
) -> bool:
    """True for a page that is mostly links to other pages (an index, a table of contents).

    Such a page is worth following but not worth indexing: its text is every other page's
    title, so it matches almost any question and answers none. A page needs
    :data:`MIN_LINK_LIST_LINKS` links to count, so a short page that is one link is kept;
    ``max_link_share`` 1.0 keeps every page.
    """
    return link_count >= MIN_LINK_LIST_LINKS and link_share > max_link_share


_META_CHARSET = re.compile(
    rb"""<meta[^>]{0,200}?charset\s*=\s*["']?\s*([A-Za-z0-9_:.+-]{1,40})""", re.I
)
_SKIP_HREF = ("#", "javascript:", "mailto:", "tel:", "data:")


# Bytes that never occur in text: C0 controls other than tab, newlines, form feed and ESC.
_BINARY_BYTES = bytes([*range(9), 11, *range(14, 27), *range(28, 32)])


def looks_binary(data: bytes) -> bool:
    """True for bytes that are not text, whatever the Content-Type claimed (an image, a zip).

    Judged on the first 4 KiB: more than 5 % control characters (NUL included). A stray
    NUL or two in a text page (a typo in an ``href``) does not make it binary; an image or
    an archive is full of them. UTF-16 text (with its byte-order mark) is text.
    """
    head = data[:4096]
    if not head or head.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
        return False
    controls = len(head) - len(head.translate(None, _BINARY_BYTES))
    return controls > len(head) // 20


def _collapse(text: str) -> str:
    return " ".join(text.split())


def decode_html(data: bytes, declared: str | None = None) -> str:
    """Decode bytes as a browser would: BOM, then the HTTP charset, then ``<meta>``, else
    UTF-8 if valid, else windows-1252; Latin-1 and ASCII labels mean windows-1252 (see
    :mod:`sitechat.ingest.charsets`)."""
    marked = decode_bom(data)
    if marked is not None:
        return marked
    candidates = [declared] if declared else []
    match = _META_CHARSET.search(data, 0, 4096)
    if match:
        candidates.append(match.group(1).decode("ascii", errors="replace"))
    for label in candidates:
        codec = codec_for(label)
        # A page that says utf-16 in ASCII-compatible bytes is lying (the HTML spec agrees).
        if codec is None or codec.startswith(("utf-16", "utf-32")):
            continue
        return data.decode(codec, errors="replace")
    return decode_unlabelled(data)


def _meta_robots(tree: LexborHTMLParser) -> tuple[bool, bool]:
    """(noindex, nofollow) from ``<meta name=robots>``, or ``name=sitechat`` to address us only."""
    noindex = nofollow = False
    for meta in tree.css("meta[name]"):
        name = (meta.attributes.get("name") or "").lower()
        if name not in ("robots", "sitechat"):
            continue
        content = (meta.attributes.get("content") or "").lower()
        noindex = noindex or "noindex" in content or "none" in content
        nofollow = nofollow or "nofollow" in content or "none" in content
    return noindex, nofollow


def _links(
    tree: LexborHTMLParser, base: str
) -> tuple[tuple[str, ...], tuple[tuple[str, str], ...]]:
    """The page's links (canonical), and for those whose query the page wrote in another
    order, that form (robots.txt rules are matched against it)."""
    hrefs: dict[str, None] = {}
    for anchor in tree.css("a[href]"):
        href = anchor.attrs.get("href")
        if href and not href.startswith(_SKIP_HREF):
            hrefs[href.strip()] = None
    links: dict[str, None] = {}
    written: dict[str, str] = {}
    for href in hrefs:
        url = canonicalize_url(href, base)
        if url.startswith(("http://", "https://")):
            links[url] = None
            if "&" in url and url not in written:
                as_written = canonicalize_url(href, base, sort_query=False)
                if as_written != url:
                    written[url] = as_written
    return tuple(links), tuple(written.items())


def _parse(html: str) -> LexborHTMLParser:
    try:
        return LexborHTMLParser(html)
    except UnicodeError:
        return LexborHTMLParser(html.encode("utf-8", errors="replace").decode("utf-8"))


def extract_html(
    html: str | bytes,
    url: str,
    *,
    encoding: str | None = None,
    content_type: str = "text/html",
    etag: str | None = None,
    last_modified: str | None = None,
) -> ExtractedPage:
    """Extract the main content, links and robots hints of an HTML document.

    ``encoding`` is the charset from the HTTP ``Content-Type``, used for bytes when the
    document has no byte-order mark. The other keywords are stored on the :class:`Page`.
    Never raises on bad markup or undecodable bytes.
    """
    text = decode_html(html, encoding) if isinstance(html, bytes) else html
    tree = _parse(flatten_deep_nesting(text))  # parsing deep nesting is quadratic

    base = url
    base_tag = tree.css_first("base[href]")
    if base_tag is not None:
        base = canonicalize_url(base_tag.attrs.get("href") or "", url)
    links, written = _links(tree, base)
    canonical = None
    canonical_tag = tree.css_first("link[rel~=canonical][href]")
    if canonical_tag is not None:
        found = canonicalize_url(canonical_tag.attrs.get("href") or "", base)
        canonical = found if found.startswith(("http://", "https://")) else None
    noindex, nofollow = _meta_robots(tree)
    title_tag = tree.css_first("title")
    title = _collapse(title_tag.text()) if title_tag is not None else ""

    main = main_sections(tree)
    title = title or main.first_h1 or url
    page = Page(
        url=url,
        title=title,
        sections=tuple(main.sections),
        content_type=content_type,
        etag=etag,
        last_modified=last_modified,
    )
    return ExtractedPage(
        page, links, canonical, noindex, nofollow, main.link_share, main.link_count, written
    )


def _blocks(text: str) -> list[str]:
    """Paragraph-level blocks of a section; a fenced code block stays one block."""
    blocks: list[str] = []
    open_fence = False
    for piece in text.split("\n\n"):
        if open_fence:
            blocks[-1] += "\n\n" + piece
        else:
            blocks.append(piece)
        if piece.count("```") % 2:
            open_fence = not open_fence
    return blocks


def boilerplate_blocks(pages: Sequence[Page], min_share: float = 0.5) -> frozenset[str]:
    """Hashes of the paragraphs that repeat on at least ``min_share`` of ``pages``.

    Needs at least four pages to tell chrome from coincidence (fewer give an empty set).
    Code blocks never count. The hashes can be stored and applied to a later, partial
    re-crawl with :func:`strip_blocks`, where too few pages are fetched to tell again.
    """
    return repeated_blocks([page_blocks(page) for page in pages], min_share)


def page_blocks(page: Page) -> frozenset[str]:
    """Hashes of the paragraphs of ``page`` that could be site chrome (code blocks never
    are): what :func:`repeated_blocks` counts, and what a re-crawl remembers of a page."""
    return frozenset(
        content_hash(_collapse(block))
        for section in page.sections
        for block in _blocks(section.text)
        if "```" not in block and block.strip()
    )


def repeated_blocks(
    block_sets: Sequence[Collection[str]], min_share: float = 0.5
) -> frozenset[str]:
    """The hashes in at least ``min_share`` of ``block_sets`` (one per page, from
    :func:`page_blocks`); empty for fewer than four pages."""
    if len(block_sets) < 4:
        return frozenset()
    counts: dict[str, int] = {}
    for blocks in block_sets:
        for digest in blocks:
            counts[digest] = counts.get(digest, 0) + 1
    threshold = max(2.0, min_share * len(block_sets))
    return frozenset(digest for digest, n in counts.items() if n >= threshold)


def strip_blocks(pages: Sequence[Page], repeated: Collection[str]) -> list[Page]:
    """``pages`` without the paragraphs whose hashes are in ``repeated``; empty sections go."""
    if not repeated:
        return list(pages)
    cleaned = []
    for page in pages:
        sections = []
        changed = False
        for section in page.sections:
            blocks = _blocks(section.text)
            kept = [b for b in blocks if content_hash(_collapse(b)) not in repeated]
            if len(kept) != len(blocks):
                changed = True
                if kept:
                    sections.append(replace(section, text="\n\n".join(kept)))
            else:
                sections.append(section)
        cleaned.append(replace(page, sections=tuple(sections)) if changed else page)
    return cleaned


def remove_boilerplate(pages: Sequence[Page], min_share: float = 0.5) -> list[Page]:
    """Drop paragraphs that repeat on at least ``min_share`` of the pages, and the site name
    that as many titles end with.

    Catches site chrome that survives per-page extraction (a "was this helpful?" line, a
    licence notice in the content area, `` — Acme Docs`` on every title). Needs at least
    four pages to tell chrome from coincidence; with fewer the pages come back unchanged.
    Code blocks are never dropped.
    """
    cleaned = strip_blocks(pages, boilerplate_blocks(pages, min_share))
    return strip_title_suffix(cleaned, common_title_suffix(cleaned, min_share))


# Separators sites put between a page's own title and the site's name.
_TITLE_SEPARATORS = (" — ", " – ", " | ", " - ", " · ", " :: ", " » ")


def _title_suffixes(title: str) -> set[str]:
    """Every tail of ``title`` that starts at a separator: ``" — Python 3.11 documentation"``."""
    found: set[str] = set()
    for separator in _TITLE_SEPARATORS:
        start = title.find(separator)
        while start > 0:
            found.add(title[start:])
            start = title.find(separator, start + 1)
    return found


def common_title_suffix(pages: Sequence[Page], min_share: float = 0.5) -> str:
    """The site name that most page titles end with (``" | Acme Docs"``), or ``""``.

    A tail counts when at least ``min_share`` of the pages (and four or more) end with it;
    of those, the longest wins. Like boilerplate, it needs several pages to be told from a
    coincidence, and can be stored and applied to a later partial re-crawl.
    """
    return common_suffix([page.title for page in pages], min_share)


def common_suffix(titles: Sequence[str], min_share: float = 0.5) -> str:
    """:func:`common_title_suffix` of the pages with these ``titles``."""
    if len(titles) < 4:
        return ""
    counts: dict[str, int] = {}
    for title in titles:
        for suffix in _title_suffixes(title):
            counts[suffix] = counts.get(suffix, 0) + 1
    threshold = max(4.0, min_share * len(titles))
    common = [suffix for suffix, n in counts.items() if n >= threshold]
    return max(common, key=len, default="")


def strip_title_suffix(pages: Sequence[Page], suffix: str) -> list[Page]:
    """``pages`` with ``suffix`` cut from their titles (a title that is only the suffix stays).

    The site's name on every chunk says nothing about any of them: it crowds the sources a
    reader sees and adds the same words to every passage's text for the retriever.
    """
    if not suffix:
        return list(pages)
    return [
        replace(page, title=page.title.removesuffix(suffix))
        if page.title.endswith(suffix) and page.title[: -len(suffix)].strip()
        else page
        for page in pages
    ]
