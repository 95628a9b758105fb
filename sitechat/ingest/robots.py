"""robots.txt, fetched once per origin and consulted before every page.

The rules are read with :mod:`urllib.robotparser`, but the file is fetched by the crawler
itself (through its client, with its private-address checks and redirect limits), so
tests and proxies see one network path. Unavailability follows RFC 9309: a 4xx answer
means "no rules", a 5xx answer or a network failure means "crawl nothing here".
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from urllib.parse import urlsplit
from urllib.robotparser import RobotFileParser

__all__ = ["MAX_CRAWL_DELAY", "RobotsCache", "RobotsRules"]

logger = logging.getLogger(__name__)

#: Longest Crawl-delay honoured, in seconds; a larger one would stall a crawl for hours.
MAX_CRAWL_DELAY = 60.0

#: Fetches a robots.txt URL; returns the HTTP status and the body text (``""`` unless 200).
RobotsFetcher = Callable[[str], Awaitable[tuple[int, str]]]


class RobotsRules:
    """The rules of one origin for one user agent."""

    def __init__(
        self, parser: RobotFileParser | None, user_agent: str, *, allow: bool, note: str = ""
    ) -> None:
        self._parser = parser
        self._user_agent = user_agent
        self._allow = allow
        #: Why everything is refused when robots.txt could not be read.
        self.note = note

    @classmethod
    def from_text(cls, text: str, user_agent: str) -> RobotsRules:
        parser = RobotFileParser()
        parser.parse(text.splitlines())
        return cls(parser, user_agent, allow=True)

    @classmethod
    def allow_all(cls, user_agent: str) -> RobotsRules:
        return cls(None, user_agent, allow=True)

    @classmethod
    def disallow_all(cls, user_agent: str, note: str) -> RobotsRules:
        return cls(None, user_agent, allow=False, note=note)

    def can_fetch(self, url: str) -> bool:
        if self._parser is None:
            return self._allow
        return bool(self._parser.can_fetch(self._user_agent, url))

    @property
    def crawl_delay(self) -> float:
        """Seconds to leave between requests to this origin (0 when none is asked)."""
        if self._parser is None:
            return 0.0
        delay = self._parser.crawl_delay(self._user_agent)
        try:
            value = float(delay) if delay is not None else 0.0
        except (TypeError, ValueError):
            return 0.0
        return max(0.0, min(value, MAX_CRAWL_DELAY))

    @property
    def sitemaps(self) -> list[str]:
        return list(self._parser.site_maps() or []) if self._parser is not None else []


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
            return RobotsRules.from_text(text, ua)
        if 400 <= status < 500:
            return RobotsRules.allow_all(ua)
        return RobotsRules.disallow_all(ua, f"robots.txt unavailable (HTTP {status})")
