"""Pages from files on disk: a built docs folder, a Markdown tree, or a single file.

Ingesting the build output (or the sources) of a site needs no server and no crawl. When
the folder is what a site serves, ``base_url`` makes citations link to the live pages;
otherwise they link to the files themselves.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Iterator
from pathlib import Path
from urllib.parse import quote

from sitechat.errors import IngestError
from sitechat.ingest.extract import extract_html, extract_markdown, extract_text
from sitechat.ingest.options import DEFAULT_MAX_LINK_SHARE
from sitechat.ingest.urls import canonicalize_url
from sitechat.models import Page

__all__ = ["LOCAL_SUFFIXES", "iter_local_pages"]

logger = logging.getLogger(__name__)

LOCAL_SUFFIXES = frozenset({".html", ".htm", ".md", ".markdown", ".txt"})
_CONTENT_TYPES = {
    ".html": "text/html",
    ".htm": "text/html",
    ".md": "text/markdown",
    ".markdown": "text/markdown",
    ".txt": "text/plain",
}


def _files_under(
    root: Path, on_error: Callable[[OSError], None] | None = None
) -> list[tuple[str, Path]]:
    """(relative POSIX path, path) of every page file, hidden folders and files left out;
    ``on_error`` hears of each folder that could not be listed."""
    found = []
    for folder, dirs, files in os.walk(root, onerror=on_error):
        dirs[:] = [d for d in dirs if not d.startswith(".")]
        for name in files:
            path = Path(folder, name)
            if not name.startswith(".") and path.suffix.lower() in LOCAL_SUFFIXES:
                found.append((path.relative_to(root).as_posix(), path))
    found.sort()
    return found


def _page_url(relative: str, path: Path, base_url: str | None) -> str:
    if base_url is None:
        return path.resolve().as_uri()
    return canonicalize_url(base_url.rstrip("/") + "/" + quote(relative))


def _decode(data: bytes) -> str:
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError:
        return data.decode("utf-8", errors="replace")


def _read_page(path: Path, url: str, max_link_share: float) -> Page | str:
    """The page in the file, or why it is not indexed."""
    data = path.read_bytes()
    suffix = path.suffix.lower()
    content_type = _CONTENT_TYPES[suffix]
    if content_type == "text/html":
        found = extract_html(data, url, content_type=content_type)
        if found.noindex:
            return "noindex"
        if found.is_link_list(max_link_share):
            return f"link list ({found.link_share:.0%} of its text is links)"
        return found.page
    if content_type == "text/markdown":
        return extract_markdown(_decode(data), url, content_type=content_type)
    return extract_text(_decode(data), url, content_type=content_type)


def iter_local_pages(
    root: Path | str,
    *,
    base_url: str | None = None,
    max_link_share: float = DEFAULT_MAX_LINK_SHARE,
    on_skip: Callable[[str, str], None] | None = None,
    on_error: Callable[[str, str], None] | None = None,
) -> Iterator[Page]:
    """Yield a :class:`Page` per ``.html/.htm/.md/.markdown/.txt`` file, in path order.

    ``root`` may be a folder (searched recursively, hidden folders skipped) or one file.
    A page's URL is ``base_url`` joined with the file's path relative to ``root`` when
    ``base_url`` is given, else the file's ``file://`` URI. Unreadable files are logged
    and skipped, ``on_error(url, reason)`` hearing of each (and of each folder that could
    not be listed), and so are HTML pages that ask not to be indexed (``<meta name=robots
    content=noindex>``) or are link lists (see ``max_link_share`` in
    :class:`~sitechat.ingest.options.CrawlOptions`): ``on_skip(url, reason)`` hears of each.
    """
    root = Path(root).expanduser()

    def unlisted(exc: OSError) -> None:
        logger.warning("cannot list folder %s: %s", exc.filename, exc)
        if on_error is not None:
            where = Path(exc.filename) if exc.filename else root
            on_error(where.resolve().as_uri(), f"unreadable folder: {exc.strerror or exc}")

    if root.is_file():
        entries = [(root.name, root)]
    elif root.is_dir():
        entries = _files_under(root, unlisted)
    else:
        raise IngestError(f"'{root}' is neither a file nor a folder. Check the path.")
    for relative, path in entries:
        url = _page_url(relative, path, base_url)
        try:
            page = _read_page(path, url, max_link_share)
        except OSError as exc:
            logger.warning("skipping unreadable file %s: %s", path, exc)
            if on_error is not None:
                on_error(url, f"unreadable file: {exc.strerror or exc}")
            continue
        if isinstance(page, str):
            logger.info("not indexing %s: %s", path, page)
            if on_skip is not None:
                on_skip(url, page)
            continue
        yield page
