"""What the crawler knows pages and links by, and the extraction step it runs in threads.

``page_fingerprint`` is the duplicate test: a page's title, every heading path and its
text (pages that differ only in a heading, such as two release notes naming different
CVEs over the same paragraphs, are different pages). A page compared with the URL its
``rel=canonical`` names is compared by headings and text alone, since a copy's title
often says "print" or "copy".
"""

from __future__ import annotations

import re
import time
from dataclasses import dataclass

from sitechat.ingest.extract import extract_html, extract_markdown, extract_text
from sitechat.ingest.fetch import Response
from sitechat.ingest.markdown import decode_text
from sitechat.models import Page, content_hash

__all__ = [
    "Extracted",
    "PageKeys",
    "extract_response",
    "is_file_link",
    "is_sitemap_url",
    "page_fingerprint",
    "page_keys",
]

# Links to these are not pages; they are reported as skipped without being fetched.
_BINARY_SUFFIX = re.compile(
    r"\.(?:pdf|zip|gz|tgz|tar|bz2|xz|7z|rar|png|jpe?g|gif|webp|svg|ico|bmp|tiff?|mp3|mp4|m4a"
    r"|webm|avi|mov|wav|ogg|flac|woff2?|ttf|otf|eot|exe|dmg|msi|deb|rpm|apk|iso|whl|jar"
    r"|css|js|mjs|wasm|docx?|xlsx?|pptx?|odt|epub|py|c|h|inv)$",
    re.IGNORECASE,
)
_SITEMAP_SUFFIX = re.compile(r"\.xml(?:\.gz)?$", re.IGNORECASE)


def is_sitemap_url(url: str) -> bool:
    """True for URLs read as sitemaps rather than pages (``….xml``, ``….xml.gz``)."""
    return bool(_SITEMAP_SUFFIX.search(url.split("?", 1)[0]))


def is_file_link(url: str) -> bool:
    """True for links to files that are not pages (PDFs, images, archives, code): they are
    reported as skipped without being fetched."""
    return bool(_BINARY_SUFFIX.search(url.split("?", 1)[0]))


def _body_key(page: Page) -> str:
    return content_hash(
        "\x00".join("\x01".join((*s.heading_path, s.text)) for s in page.sections if s.text)
    )


def page_fingerprint(page: Page) -> str:
    """The duplicate test's hash of a page: its title, every heading path and the text.

    Pages that differ only in a heading (two release notes naming different CVEs over
    the same paragraphs) are different pages.
    """
    return content_hash(page.title + "\x02" + _body_key(page))


@dataclass(frozen=True, slots=True)
class PageKeys:
    """What a page's content is known by: its fingerprint and, if fetched now, its body."""

    full: str
    body: str | None = None

    def same(self, other: PageKeys) -> bool:
        if self.body is not None and other.body is not None:
            return self.body == other.body  # a copy's title often says "copy" or "print"
        return self.full == other.full


def page_keys(page: Page) -> PageKeys:
    return PageKeys(page_fingerprint(page), _body_key(page))


@dataclass(frozen=True, slots=True)
class Extracted:
    page: Page
    links: tuple[str, ...]
    canonical: str | None
    noindex: bool
    nofollow: bool
    seconds: float
    link_share: float = 0.0
    link_count: int = 0
    written: tuple[tuple[str, str], ...] = ()


def extract_response(kind: str, response: Response) -> Extracted:
    """Runs in the extraction threads: bytes to a page, links and hints."""
    started = time.perf_counter()
    etag = response.headers.get("etag")
    last_modified = response.headers.get("last-modified")
    content_type = response.content_type or ("text/html" if kind == "html" else "text/plain")
    if kind == "html":
        found = extract_html(
            response.body,
            response.url,
            encoding=response.charset,
            content_type=content_type,
            etag=etag,
            last_modified=last_modified,
        )
        links = () if found.nofollow else found.links
        return Extracted(
            found.page,
            links,
            found.canonical,
            found.noindex,
            found.nofollow,
            time.perf_counter() - started,
            found.link_share,
            found.link_count,
            () if found.nofollow else found.written,
        )
    text = decode_text(response.body, response.charset)
    reader = extract_markdown if kind == "markdown" else extract_text
    page = reader(
        text, response.url, content_type=content_type, etag=etag, last_modified=last_modified
    )
    return Extracted(page, (), None, False, False, time.perf_counter() - started)
