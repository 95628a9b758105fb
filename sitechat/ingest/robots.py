"""robots.txt (RFC 9309), fetched once per origin and consulted before every page.

The parser is our own rather than :mod:`urllib.robotparser`, which knows neither the
``*`` and ``$`` wildcards nor "the longest matching rule wins", reads Crawl-delay as an
integer only, and applies the first matching rule instead. Here:

* groups are selected by our product token (``sitechat`` in ``sitechat/0.1 (+url)``),
  compared case-insensitively; several groups naming it are merged; without one, the
  ``*`` groups apply;
* ``Allow``/``Disallow`` paths may hold ``*`` (any run of characters) and a trailing
  ``$`` (end of URL); the longest matching pattern decides, ``Allow`` wins a tie, an
  empty ``Disallow`` allows everything, and ``/robots.txt`` itself is always allowed;
* patterns and URLs are compared with percent-escapes normalised the same way (the crawler
  also checks a link as the site wrote it, query order included); each pattern is split
  at its stars once, when the file is read, and matched with one ``str.find`` per piece,
  never backtracking (no regular expressions that a hostile file could make backtrack),
  and a rule repeated many times is checked once;
* ``Crawl-delay`` may be fractional, and ``Sitemap:`` lines are collected wherever they
  appear.

The file is fetched by the crawler itself (through its client, with its private-address
checks and redirect limits). Unavailability follows RFC 9309: a 4xx answer means "no
rules", a 5xx answer, a 429 or a network failure means "crawl nothing here".
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass
from urllib.parse import urlsplit

from sitechat.ingest.urls import normalise_path_pattern

__all__ = [
    "MAX_CRAWL_DELAY",
    "RobotsCache",
    "RobotsRules",
    "origin_of",
    "parse_robots",
    "product_token",
]

logger = logging.getLogger(__name__)

#: Longest Crawl-delay honoured, in seconds; a larger one would stall a crawl for hours.
MAX_CRAWL_DELAY = 60.0
_MAX_PATTERN = 2000

#: Fetches a robots.txt URL; returns the HTTP status and the body text (``""`` unless 200).
RobotsFetcher = Callable[[str], Awaitable[tuple[int, str]]]

_KEYS = {
    "user-agent": "user-agent",
    "useragent": "user-agent",
    "user agent": "user-agent",
    "allow": "allow",
    "disallow": "disallow",
    "dissallow": "disallow",
    "disalow": "disallow",
    "crawl-delay": "crawl-delay",
    "crawldelay": "crawl-delay",
    "sitemap": "sitemap",
    "site-map": "sitemap",
}


def product_token(user_agent: str) -> str:
    """The name robots.txt groups address: ``sitechat`` in ``sitechat/0.1 (+https://…)``."""
    first = user_agent.strip().split(None, 1)[0] if user_agent.strip() else ""
    return first.split("/", 1)[0].lower()


def _wildcard_match(pattern: str, text: str) -> bool:
    """True when ``pattern`` (``*`` = any run, no anchoring) matches all of ``text``."""
    return _pieces_match(tuple(pattern.split("*")), text)


def _pieces_match(pieces: tuple[str, ...], text: str) -> bool:
    """True when the literal ``pieces`` of a ``*`` pattern, in order, match all of ``text``.

    The first piece must start the text and the last end it; each piece between is placed
    at its leftmost place after the one before, which finds a match whenever there is one.
    Each piece is one ``str.find`` over the text, so a rule costs O(len(text)) per piece,
    in C: never backtracking, whatever the pattern.
    """
    if len(pieces) == 1:
        return text == pieces[0]
    first, last = pieces[0], pieces[-1]
    end = len(text) - len(last)
    if end < len(first) or not text.startswith(first) or not text.endswith(last):
        return False
    at = len(first)
    for piece in pieces[1:-1]:
        found = text.find(piece, at, end)
        if found < 0:
            return False
        at = found + len(piece)
    return True


@dataclass(frozen=True, slots=True)
class _Rule:
    allow: bool
    pattern: str  # normalised, consecutive stars collapsed, without a trailing ``$``
    anchored: bool  # ended with ``$``: must match up to the end of the URL
    length: int  # the priority: length of the pattern as written (``$`` included)
    pieces: tuple[str, ...]  # the pattern split at its stars, once, for matching

    def matches(self, target: str) -> bool:
        if not self.anchored and "*" not in self.pattern:
            return target.startswith(self.pattern)
        return _pieces_match(self.pieces, target)


def _make_rule(allow: bool, raw: str) -> _Rule | None:
    value = raw.strip()
    if not value or len(value) > _MAX_PATTERN:
        return None
    if not value.startswith(("/", "*")):
        value = "/" + value  # a common mistake; Google reads it this way too
    anchored = value.endswith("$")
    core = value[:-1] if anchored else value
    core = normalise_path_pattern(core)
    while "**" in core:
        core = core.replace("**", "*")
    pieces = tuple((core if anchored else core + "*").split("*"))
    return _Rule(allow, core, anchored, len(value), pieces)


class RobotsRules:
    """The rules of one origin for one user agent."""

    def __init__(
        self,
        rules: Iterable[_Rule] = (),
        *,
        allow: bool = True,
        note: str = "",
        crawl_delay: float = 0.0,
        sitemaps: Iterable[str] = (),
    ) -> None:
        # Longest first; Allow before Disallow at equal length, so the first match decides.
        # A rule repeated (thousands of times, in a hostile file) is checked once.
        unique = dict.fromkeys(rules)
        self._rules = sorted(unique, key=lambda r: (-r.length, not r.allow))
        self._allow = allow
        #: Why everything is refused when robots.txt could not be read.
        self.note = note
        self._crawl_delay = crawl_delay
        self._sitemaps = tuple(sitemaps)

    @classmethod
    def from_text(cls, text: str, user_agent: str) -> RobotsRules:
        return parse_robots(text, user_agent)

    @classmethod
    def allow_all(cls, user_agent: str = "") -> RobotsRules:
        return cls()

    @classmethod
    def disallow_all(cls, user_agent: str, note: str) -> RobotsRules:
        return cls(allow=False, note=note)

    def can_fetch(self, url: str) -> bool:
        """True when ``url`` (canonical, absolute) may be fetched."""
        if not self._allow:
            return False
        if not self._rules:
            return True
        try:
            parts = urlsplit(url)
        except ValueError:
            return False
        target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
        if target == "/robots.txt":
            return True
        for rule in self._rules:
            if rule.matches(target):
                return rule.allow
        return True

    @property
    def crawl_delay(self) -> float:
        """Seconds to leave between requests to this origin (0 when none is asked)."""
        return self._crawl_delay

    @property
    def sitemaps(self) -> list[str]:
        """Every ``Sitemap:`` URL in the file, in order."""
        return list(self._sitemaps)


def _split_line(line: str) -> tuple[str, str] | None:
    line = line.split("#", 1)[0].strip()
    key, sep, value = line.partition(":")
    if not sep:
        return None
    name = _KEYS.get(" ".join(key.strip().lower().split()))
    return (name, value.strip()) if name else None


def parse_robots(text: str, user_agent: str) -> RobotsRules:
    """Read robots.txt ``text`` into the rules that apply to ``user_agent``."""
    token = product_token(user_agent)
    ours: list[_Rule] = []
    anyone: list[_Rule] = []
    ours_delay: float | None = None
    anyone_delay: float | None = None
    found_ours = False
    sitemaps: list[str] = []
    agents: list[str] = []
    in_rules = False  # True once the current group has had a rule line
    for raw in text.lstrip("\ufeff").splitlines():
        parsed = _split_line(raw)
        if parsed is None:
            continue
        key, value = parsed
        if key == "sitemap":
            if value:
                sitemaps.append(value)
            continue
        if key == "user-agent":
            if in_rules:
                agents, in_rules = [], False
            agents.append(value.split("/", 1)[0].strip().lower())
            if token and token in agents:
                found_ours = True
            continue
        if not agents:
            continue  # rules before any User-agent line belong to no group
        in_rules = True
        is_ours = bool(token) and token in agents
        is_anyone = "*" in agents
        if key == "crawl-delay":
            delay = _delay(value)
            if delay is not None:
                if is_ours and ours_delay is None:
                    ours_delay = delay
                if is_anyone and anyone_delay is None:
                    anyone_delay = delay
            continue
        rule = _make_rule(key == "allow", value)
        if rule is None:
            continue
        if is_ours:
            ours.append(rule)
        if is_anyone:
            anyone.append(rule)
    rules, delay = (ours, ours_delay) if found_ours else (anyone, anyone_delay)
    return RobotsRules(rules, crawl_delay=delay or 0.0, sitemaps=sitemaps)


def _delay(value: str) -> float | None:
    try:
        delay = float(value)
    except ValueError:
        return None
    if delay != delay or delay < 0:  # NaN or negative
        return None
    return min(delay, MAX_CRAWL_DELAY)


def origin_of(url: str) -> str:
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}"


class RobotsCache:
    """Fetches each origin's robots.txt once, even when many pages ask at the same time."""

    def __init__(self, fetch: RobotsFetcher, user_agent: str) -> None:
        self._fetch = fetch
        self._user_agent = user_agent
        self._rules: dict[str, RobotsRules] = {}
        self._locks: dict[str, asyncio.Lock] = {}

    async def rules_for(self, url: str) -> RobotsRules:
        origin = origin_of(url)
        rules = self._rules.get(origin)
        if rules is not None:
            return rules
        lock = self._locks.setdefault(origin, asyncio.Lock())
        async with lock:
            rules = self._rules.get(origin)
            if rules is None:
                rules = await self._load(origin)
                self._rules[origin] = rules
        return rules

    async def _load(self, origin: str) -> RobotsRules:
        robots_url = f"{origin}/robots.txt"
        ua = self._user_agent
        try:
            status, text = await self._fetch(robots_url)
        except Exception as exc:  # any failure to reach the file means "unreachable"
            logger.info("robots.txt at %s unreachable: %s", robots_url, exc)
            return RobotsRules.disallow_all(ua, f"robots.txt unreachable ({exc})")
        if 200 <= status < 300:
            return parse_robots(text, ua)
        if 400 <= status < 500 and status != 429:
            return RobotsRules.allow_all(ua)
        return RobotsRules.disallow_all(ua, f"robots.txt unavailable (HTTP {status})")
