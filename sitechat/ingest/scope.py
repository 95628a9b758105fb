"""Which URLs a crawl may visit, and how it avoids fetching one page many times.

Three guards keep a crawl finite and its index free of copies:

* **scope**: the start URLs' sites, narrowed by include/exclude patterns;
* **link traps**: a calendar that links to next month forever, or a faceted listing with
  endless query combinations, produces URLs that differ only in numbers or query values.
  Each such *pattern* (digits folded, query values dropped) may be fetched a bounded
  number of times; paths that repeat a segment again and again (a relative-link bug)
  and absurdly long URLs are refused outright;
* **query variants of one page**: when a page fetched with a query declares a canonical
  URL without some of those parameters, or two variants turn out to have identical
  content, those parameters are learned to be irrelevant for that path, and later links
  are stripped of them, so the copies are never fetched.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from urllib.parse import urlsplit

from sitechat.ingest.urls import canonicalize_url, same_site

__all__ = ["LinkTrapGuard", "QueryLearner", "Scope", "bare_url", "under_prefix"]

_DIGITS = re.compile(r"\d+")
_MAX_URL_LENGTH = 2000
_MAX_SEGMENT_REPEATS = 3


def bare_url(url: str) -> str:
    """``url`` without its query: the identity of "the same path"."""
    return url.split("?", 1)[0]


def under_prefix(url: str, prefix: str) -> bool:
    """``url`` is ``prefix`` or lies below it, whole path segments only.

    ``https://d.example.com/v1`` (with or without its trailing ``/``) covers ``…/v1`` and
    ``…/v1/guide.html``, never ``…/v10/guide.html``.
    """
    base = prefix.rstrip("/")
    if not url.startswith(base):
        return False
    rest = url[len(base) :]
    return rest == "" or rest[0] in "/?#"


def _split_origin(url: str) -> tuple[str, str]:
    """(``scheme://host:port``, the rest) of an absolute URL; ("", ``url``) otherwise."""
    scheme, sep, rest = url.partition("://")
    if not sep:
        return "", url
    host, slash, path = rest.partition("/")
    return f"{scheme}{sep}{host}", slash + path


def _query_pairs(url: str) -> list[tuple[str, str]]:
    query = url.partition("?")[2]
    pairs = []
    for item in query.split("&"):
        if item:
            name, _, value = item.partition("=")
            pairs.append((name, value))
    return pairs


class Scope:
    """The start URLs' sites, narrowed by include/exclude regular expressions."""

    def __init__(
        self, roots: Sequence[str], include: Sequence[str] = (), exclude: Sequence[str] = ()
    ) -> None:
        self.roots = list(roots)
        self._include = [re.compile(p) for p in include]
        self._exclude = [re.compile(p) for p in exclude]

    def in_scope(self, url: str) -> bool:
        """Same site as a start URL (host and port; ``www.`` ignored)."""
        return any(same_site(url, root) for root in self.roots)

    def wanted(self, url: str) -> bool:
        """In scope and allowed by the include/exclude patterns."""
        if not url.startswith(("http://", "https://")) or not self.in_scope(url):
            return False
        if self._include and not any(p.search(url) for p in self._include):
            return False
        return not any(p.search(url) for p in self._exclude)


class LinkTrapGuard:
    """Bounds how many URLs of one shape (numbers folded, query values dropped) are fetched."""

    def __init__(self, per_pattern: int) -> None:
        self.per_pattern = per_pattern
        self._counts: dict[str, int] = {}

    @staticmethod
    def pattern(url: str) -> str:
        """The shape of ``url``: ``/calendar/9/9?view`` for ``/calendar/2031/07?view=month``
        (digits folded in the path only: the host and port stay as they are)."""
        bare, _, query = url.partition("?")
        names = sorted({pair.split("=", 1)[0] for pair in query.split("&") if pair})
        origin, path = _split_origin(bare)
        shape = origin + _DIGITS.sub("9", path)
        return shape + ("?" + "&".join(names) if names else "")

    @staticmethod
    def malformed(url: str) -> str | None:
        """Why ``url`` looks machine-generated beyond doubt, or None."""
        if len(url) > _MAX_URL_LENGTH:
            return f"URL longer than {_MAX_URL_LENGTH} characters"
        segments = [s for s in urlsplit(url).path.split("/") if s]
        if len(segments) > _MAX_SEGMENT_REPEATS:
            counts: dict[str, int] = {}
            for segment in segments:
                counts[segment] = counts.get(segment, 0) + 1
                if counts[segment] > _MAX_SEGMENT_REPEATS:
                    return f"path repeats the segment {segment!r} (a relative-link loop)"
        return None

    def admit(self, url: str, *, listed: bool = False) -> tuple[bool, str | None]:
        """(fetch it?, why not, the first time a pattern is refused; None after that).

        A ``listed`` URL (one the site's sitemap names) is the site's own statement of a
        page, bounded by the sitemap's limits: only a malformed one is refused, and it does
        not count towards its pattern.
        """
        odd = self.malformed(url)
        if odd is not None:
            return False, f"link trap guard: {odd}"
        if listed:
            return True, None
        bare, has_query, _ = url.partition("?")
        if not has_query and not _DIGITS.search(_split_origin(bare)[1]):
            return True, None  # no digits, no query: nothing generated about it
        shape = self.pattern(url)
        count = self._counts.get(shape, 0) + 1
        self._counts[shape] = count
        if count <= self.per_pattern:
            return True, None
        if count == self.per_pattern + 1:
            return False, (
                f"link trap guard: more than {self.per_pattern} URLs like {shape} "
                "(generated links such as a calendar); the rest are not followed. "
                "Raise max_pattern_pages to crawl more of them."
            )
        return False, None


class QueryLearner:
    """Learns which query parameters do not change a path's page, and strips them."""

    def __init__(self) -> None:
        self._ignorable: dict[str, set[str]] = {}

    def normalise(self, url: str) -> str:
        """``url`` without the parameters learned to be irrelevant for its path."""
        if "?" not in url:
            return url
        names = self._ignorable.get(bare_url(url))
        if not names:
            return url
        query = url.partition("?")[2]
        kept = [item for item in query.split("&") if item and item.split("=", 1)[0] not in names]
        return canonicalize_url(bare_url(url) + ("?" + "&".join(kept) if kept else ""))

    def _learn(self, bare: str, names: set[str]) -> None:
        if names:
            self._ignorable.setdefault(bare, set()).update(names)

    def learn_canonical(self, fetched: str, canonical: str) -> None:
        """A page at ``fetched`` names ``canonical``: the parameters it drops are irrelevant."""
        if "?" not in fetched or bare_url(fetched) != bare_url(canonical):
            return
        kept = {n for n, _ in _query_pairs(canonical)}
        self._learn(bare_url(fetched), {n for n, _ in _query_pairs(fetched)} - kept)

    def learn_same_content(self, first: str, second: str) -> None:
        """Two variants of one path had the same content: the parameters they differ in go."""
        if bare_url(first) != bare_url(second):
            return
        one, two = dict(_query_pairs(first)), dict(_query_pairs(second))
        differing = {n for n in one.keys() | two.keys() if one.get(n) != two.get(n)}
        self._learn(bare_url(first), differing)
