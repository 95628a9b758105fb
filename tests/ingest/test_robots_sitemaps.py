"""robots.txt rules (RFC 9309) and sitemap parsing, including hostile input."""

from __future__ import annotations

import contextlib
import gzip
import re

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sitechat.ingest.robots import _wildcard_match, parse_robots, product_token
from sitechat.ingest.sitemaps import SitemapError, gunzip_bounded, parse_sitemap

UA = "sitechat/0.1 (+https://github.com/sitechat/sitechat)"
SITE = "https://site.test"


def _allowed(robots: str, path: str, ua: str = UA) -> bool:
    return parse_robots(robots, ua).can_fetch(SITE + path)


def test_product_token_is_the_name_before_the_version() -> None:
    """Groups are matched on the product token, case-insensitively."""
    assert product_token(UA) == "sitechat"
    assert product_token("SiteChat") == "sitechat"


@pytest.mark.parametrize(
    ("path", "allowed"),
    [
        ("/", True),
        ("/docs/page.html", True),
        ("/private/x", False),
        ("/private/public/x", True),
        ("/file.pdf", False),
        ("/file.pdf?x=1", True),  # ``$`` anchors at the end of path and query
        ("/a/b/print/c", False),
        ("/search?q=1", False),
        ("/robots.txt", True),
    ],
)
def test_wildcards_and_longest_match(path: str, allowed: bool) -> None:
    """``*`` and ``$`` work; the longest matching rule wins; robots.txt itself is allowed."""
    robots = (
        "User-agent: *\nDisallow: /private\nAllow: /private/public\n"
        "Disallow: /*.pdf$\nDisallow: /*/print/\nDisallow: /search?\nDisallow: /robots.txt\n"
    )
    assert _allowed(robots, path) is allowed


def test_allow_wins_a_tie_and_empty_disallow_allows() -> None:
    """Equal-length Allow and Disallow: allowed; an empty Disallow allows everything."""
    assert _allowed("User-agent: *\nDisallow: /page\nAllow: /page\n", "/page")
    assert _allowed("User-agent: *\nDisallow:\n", "/anything")


def test_our_group_replaces_the_star_group_and_groups_merge() -> None:
    """A group naming us is used instead of ``*``; two such groups are merged."""
    robots = (
        "User-agent: *\nDisallow: /\n\nUser-agent: SiteChat\nDisallow: /a\n\n"
        "User-agent: other\nUser-agent: sitechat\nDisallow: /b\nCrawl-delay: 0.5\n"
    )
    rules = parse_robots(robots, UA)
    assert rules.can_fetch(SITE + "/c")
    assert not rules.can_fetch(SITE + "/a/x")
    assert not rules.can_fetch(SITE + "/b")
    assert rules.crawl_delay == 0.5
    assert not parse_robots(robots, "otherbot/1").can_fetch(SITE + "/c")


def test_percent_escapes_and_sitemaps_and_junk_lines() -> None:
    """Escapes compare normalised; Sitemap lines anywhere are kept; junk lines are ignored."""
    robots = (
        "Sitemap: https://site.test/a.xml\n# comment\nnonsense line\nUser-agent: *\n"
        "Disallow: /caf%c3%a9\nDisallow: /ü\nCrawl-delay: lots\nSitemap: https://site.test/b.xml\n"
    )
    rules = parse_robots(robots, UA)
    assert not rules.can_fetch(SITE + "/caf%C3%A9/menu")
    assert not rules.can_fetch(SITE + "/%C3%BC")
    assert rules.crawl_delay == 0.0
    assert rules.sitemaps == ["https://site.test/a.xml", "https://site.test/b.xml"]


@given(
    st.text(alphabet="ab*", max_size=8),
    st.text(alphabet="ab", max_size=12),
)
@settings(max_examples=500)
def test_wildcard_matcher_agrees_with_a_regex(pattern: str, text: str) -> None:
    """The linear-time matcher gives the same answer as a full-match regular expression."""
    regex = "".join(".*" if c == "*" else re.escape(c) for c in pattern)
    assert _wildcard_match(pattern, text) == bool(re.fullmatch(regex, text, re.S))


def test_hostile_pattern_is_fast() -> None:
    """A pattern built to make regex engines backtrack is matched quickly and correctly."""
    pattern = "/" + "*a" * 200 + "b"
    assert not _wildcard_match(pattern, "/" + "a" * 5000)


SITEMAP = b"""<?xml version="1.0" encoding="UTF-8"?>
<urlset xmlns="http://www.sitemaps.org/schemas/sitemap/0.9">
  <url><loc> https://site.test/a </loc><lastmod>2024-05-01</lastmod></url>
  <url><loc>https://site.test/b?x=1&amp;y=2</loc></url>
</urlset>"""


def test_urlset_and_index_are_read() -> None:
    """Pages come with their lastmod; an index lists sitemaps; entities are decoded."""
    content = parse_sitemap(SITEMAP)
    assert content.pages == (
        ("https://site.test/a", "2024-05-01"),
        ("https://site.test/b?x=1&y=2", None),
    )
    index = parse_sitemap(
        b'<sitemapindex xmlns="http://www.sitemaps.org/schemas/sitemap/0.9">'
        b"<sitemap><loc>https://site.test/s1.xml.gz</loc></sitemap></sitemapindex>"
    )
    assert index.sitemaps == ("https://site.test/s1.xml.gz",)


def test_gzip_and_text_sitemaps() -> None:
    """Gzip sitemaps are inflated; a plain-text sitemap lists one URL per line."""
    assert parse_sitemap(gzip.compress(SITEMAP)).pages[0][0] == "https://site.test/a"
    text = b"https://site.test/1\n\nnot a url\nhttps://site.test/2\n"
    assert [u for u, _ in parse_sitemap(text).pages] == [
        "https://site.test/1",
        "https://site.test/2",
    ]


def test_entity_expansion_is_refused() -> None:
    """A DTD (billion laughs, external entities) is refused before anything expands."""
    laughs = (
        b'<?xml version="1.0"?><!DOCTYPE lolz [<!ENTITY lol "lol">'
        b'<!ENTITY lol2 "&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;">]>'
        b"<urlset><url><loc>&lol2;</loc></url></urlset>"
    )
    with pytest.raises(SitemapError, match="DTD"):
        parse_sitemap(laughs)
    external = (
        b'<?xml version="1.0"?><!DOCTYPE x [<!ENTITY e SYSTEM "file:///etc/passwd">]>'
        b"<urlset><url><loc>&e;</loc></url></urlset>"
    )
    with pytest.raises(SitemapError, match="DTD"):
        parse_sitemap(external)


def test_gzip_bomb_is_bounded() -> None:
    """Inflation stops at the limit instead of filling memory."""
    bomb = gzip.compress(b"\0" * 5_000_000)
    with pytest.raises(SitemapError, match="more than 1000000 bytes"):
        gunzip_bounded(bomb, 1_000_000)
    with pytest.raises(SitemapError):
        parse_sitemap(bomb, max_bytes=1_000_000)


def test_html_and_broken_xml_are_not_sitemaps() -> None:
    """An HTML error page is refused; truncated XML keeps the URLs read before the break."""
    with pytest.raises(SitemapError):
        parse_sitemap(b"<html><body>Not found</body></html>")
    assert parse_sitemap(SITEMAP[:-30]).pages[0][0] == "https://site.test/a"
    assert parse_sitemap(SITEMAP[:-30]).error is not None  # read in part: not a full listing
    assert parse_sitemap(SITEMAP).error is None


@given(st.binary(max_size=500))
@settings(max_examples=200)
def test_any_bytes_give_a_sitemap_or_a_sitemap_error(data: bytes) -> None:
    """Arbitrary bytes never raise anything but SitemapError."""
    with contextlib.suppress(SitemapError):
        parse_sitemap(data)
