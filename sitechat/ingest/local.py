"""Pages from files on disk: a built docs folder, a Markdown tree, or a single file.

Ingesting the build output (or the sources) of a site needs no server and no crawl. When
the folder is what a site serves, ``base_url`` makes citations link to the live pages;
otherwise they link to the files themselves.

Reading a folder is bounded like crawling a site: only regular files are read (a FIFO or
a device named ``x.html`` would block or never end), files larger than ``max_bytes`` are
skipped, and a symbolic link that resolves outside the folder is skipped, so a link to
``/etc/passwd`` dropped into a docs folder is never indexed. Each is reported with the
reason; so is a file whose bytes are not text (an image saved as ``logo.html``), as the
crawler skips such a body.
"""

from __future__ import annotations

import logging
import os
import stat
from collections.abc import Callable, Iterator
from pathlib import Path
from urllib.parse import quote

from sitechat.errors import IngestError
from sitechat.ingest.charsets import decode_bom, decode_unlabelled
from sitechat.ingest.extract import extract_html, extract_markdown, extract_text, looks_binary
from sitechat.ingest.options import DEFAULT_MAX_BYTES, DEFAULT_MAX_LINK_SHARE
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
    """A text or Markdown file: by its byte-order mark (UTF-8, UTF-16), else UTF-8 when
    valid, else windows-1252."""
    marked = decode_bom(data)
    return marked if marked is not None else decode_unlabelled(data)


def _refusal(path: Path, inside: Path | None, max_bytes: int) -> str | None:
    """Why ``path`` is not read (a link out of ``inside``, not a regular file, too
    large), or None. ``inside`` is the resolved folder being read (None for one file)."""
    if path.is_symlink() and not path.exists():
        # nothing to read, now or later: a refusal, not an unreadable file (which would
        # mark the folder incomplete, so that no file deleted from it is ever removed)
        return "broken symbolic link (it points at nothing)"
    if inside is not None and path.is_symlink():
        target = path.resolve()
        if not target.is_relative_to(inside):
            return f"symbolic link to {target}, outside the folder being ingested"
    info = path.stat()
    if not stat.S_ISREG(info.st_mode):
        return "not a regular file"
    if info.st_size > max_bytes:
        return f"too large ({info.st_size} bytes, more than {max_bytes})"
    return None


def _read_bytes(path: Path, max_bytes: int) -> bytes | None:
    """The file's bytes, or None when it holds more than ``max_bytes`` (it grew)."""
    flags = os.O_RDONLY | getattr(os, "O_NONBLOCK", 0)
    with open(os.open(path, flags), "rb") as file:
        data = file.read(max_bytes + 1)
    return None if len(data) > max_bytes else data


def _read_page(path: Path, url: str, max_link_share: float, max_bytes: int) -> Page | str:
    """The page in the file, or why it is not indexed."""
    data = _read_bytes(path, max_bytes)
    if data is None:
        return f"too large (more than {max_bytes} bytes)"
    suffix = path.suffix.lower()
    content_type = _CONTENT_TYPES[suffix]
    if looks_binary(data):  # an image or an archive saved under a page's name
        return f"binary content in a {suffix} file"
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
    max_bytes: int = DEFAULT_MAX_BYTES,
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
    So are files that are not regular files, files over ``max_bytes``, files whose bytes
    are not text, and (in a folder) symbolic links that resolve outside ``root``.
    """
    root = Path(root).expanduser()

    def unlisted(exc: OSError) -> None:
        logger.warning("cannot list folder %s: %s", exc.filename, exc)
        if on_error is not None:
            where = Path(exc.filename) if exc.filename else root
            on_error(where.resolve().as_uri(), f"unreadable folder: {exc.strerror or exc}")

    inside: Path | None = None
    if root.is_file():
        entries = [(root.name, root)]
    elif root.is_dir():
        entries = _files_under(root, unlisted)
        inside = root.resolve()
    else:
        raise IngestError(f"'{root}' is neither a file nor a folder. Check the path.")
    for relative, path in entries:
        url = _page_url(relative, path, base_url)
        try:
            refused = _refusal(path, inside, max_bytes)
            if refused and base_url is None:
                url = path.absolute().as_uri()  # the link itself, not what it points at
            page = refused or _read_page(path, url, max_link_share, max_bytes)
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
