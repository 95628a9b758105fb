"""What the pipeline remembers between crawls, so a re-crawl can ask "changed since?".

A conditional GET needs the ETag / Last-Modified of the previous fetch, and a page that
answers 304 has no body to take links from, so its links must be remembered too, and so
must its paragraph hashes and title, so that a re-crawl judges site chrome on every page
as a fresh crawl would. All of it lives in one JSON file next to the index
(``crawl-state.json``), written atomically; URLs and paragraph hashes are stored once and
referred to by number. Nothing is trusted from it beyond strings and numbers: a
file that is missing, damaged, from another version, or written with other extraction
or chunking settings is ignored, which only costs a full re-fetch.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sitechat.ingest.crawl import KnownPage

__all__ = ["STATE_FILE", "CrawlState"]

logger = logging.getLogger(__name__)

STATE_FILE = "crawl-state.json"
_FORMAT = "sitechat-crawl-state"
_VERSION = 2  # 2: per-page paragraph hashes and title, links as written
# a version-1 file (no paragraph hashes) is read too; an older sitechat skips a version-2
# one as another version's, rather than reporting it damaged
_READABLE_VERSIONS = (1, _VERSION)


def _text(value: Any) -> str | None:
    return value if isinstance(value, str) and value else None


def _file_mode() -> int:
    """What the umask gives a new file (reading the umask means setting it: put back)."""
    mask = os.umask(0o022)
    os.umask(mask)
    return 0o666 & ~mask


# read once, at import: the umask is process-wide, and setting it while other threads
# create files would be a race
_FILE_MODE = _file_mode()


@dataclass
class CrawlState:
    """Per fetched URL: validators, page URL, links (and the links' query order as
    written, where it differs) and content hash; plus the site's boilerplate paragraphs
    and title suffix."""

    fingerprint: str
    pages: dict[str, KnownPage] = field(default_factory=dict)
    boilerplate: frozenset[str] = frozenset()
    title_suffix: str = ""

    @classmethod
    def load(cls, path: Path, fingerprint: str) -> CrawlState:
        """The state at ``path``, or an empty one when it cannot be used."""
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            return cls(fingerprint)
        except (OSError, ValueError) as exc:
            logger.warning("ignoring unreadable crawl state %s: %s", path, exc)
            return cls(fingerprint)
        if (
            not isinstance(data, dict)
            or data.get("format") != _FORMAT
            or data.get("version") not in _READABLE_VERSIONS
            or data.get("fingerprint") != fingerprint
        ):
            return cls(fingerprint)
        try:
            return cls._decode(data, fingerprint)
        except (TypeError, ValueError, IndexError, KeyError) as exc:
            logger.warning("ignoring damaged crawl state %s: %s", path, exc)
            return cls(fingerprint)

    @classmethod
    def _decode(cls, data: dict[str, Any], fingerprint: str) -> CrawlState:
        urls = [str(u) for u in data["urls"]]
        blocks = [str(b) for b in data.get("blocks", [])]
        pages: dict[str, KnownPage] = {}
        for row in data["pages"]:
            fetched, page, etag, modified, digest, links = row[:6]
            written = row[6] if len(row) > 6 else []
            extracted = len(row) > 8  # the page's paragraphs and title, before stripping
            pages[urls[fetched]] = KnownPage(
                page_url=urls[page],
                etag=_text(etag),
                last_modified=_text(modified),
                links=tuple(urls[i] for i in links),
                content_hash=str(digest or ""),
                written=tuple((urls[i], str(form)) for i, form in written),
                blocks=frozenset(blocks[i] for i in row[7]) if extracted else None,
                title=str(row[8]) if extracted else None,
            )
        boilerplate = frozenset(str(b) for b in data.get("boilerplate", []))
        return cls(fingerprint, pages, boilerplate, str(data.get("title_suffix") or ""))

    def encode(self) -> dict[str, Any]:
        numbers: dict[str, int] = {}
        block_numbers: dict[str, int] = {}  # chrome repeats on many pages: stored once

        def number(url: str, table: dict[str, int] = numbers) -> int:
            found = table.get(url)
            if found is None:
                found = table[url] = len(table)
            return found

        rows = []
        for fetched, known in self.pages.items():
            row: list[Any] = [
                number(fetched),
                number(known.page_url),
                known.etag,
                known.last_modified,
                known.content_hash,
                [number(link) for link in known.links],
                [[number(u), form] for u, form in known.written],
            ]
            if known.blocks is not None and known.title is not None:
                row.append(sorted(number(b, block_numbers) for b in known.blocks))
                row.append(known.title)
            rows.append(row)
        return {
            "format": _FORMAT,
            "version": _VERSION,
            "fingerprint": self.fingerprint,
            "urls": list(numbers),
            "blocks": list(block_numbers),
            "pages": rows,
            "boilerplate": sorted(self.boilerplate),
            "title_suffix": self.title_suffix,
        }

    def save(self, path: Path) -> None:
        """Write atomically: a crash leaves the previous file, never half of one. The file
        gets the permissions the umask gives, like the index's other files (``mkstemp``
        alone makes it 0600, unreadable to another user re-ingesting the same index)."""
        path.parent.mkdir(parents=True, exist_ok=True)
        handle, temporary = tempfile.mkstemp(prefix=".crawl-state-", dir=path.parent)
        try:
            if hasattr(os, "fchmod"):  # POSIX; Windows has no such permissions
                os.fchmod(handle, _FILE_MODE)
            with os.fdopen(handle, "w", encoding="utf-8") as out:
                json.dump(self.encode(), out, separators=(",", ":"))
            os.replace(temporary, path)
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(temporary)
            raise

    def merged(self, fresh: Mapping[str, KnownPage], keep_pages: set[str]) -> CrawlState:
        """This state updated by ``fresh``, keeping only entries for pages in ``keep_pages``."""
        pages = {**self.pages, **fresh}
        kept = {url: known for url, known in pages.items() if known.page_url in keep_pages}
        return CrawlState(self.fingerprint, kept, self.boilerplate, self.title_suffix)
