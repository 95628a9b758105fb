"""robots.txt rules (RFC 9309) and sitemap parsing, including hostile input."""

from __future__ import annotations

import contextlib
import gzip
import logging
import re
import socket
from typing import TYPE_CHECKING, Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sitechat.embeddings.hashing import HashingEmbeddings
from sitechat.factories import open_store
from sitechat.ingest.crawl import CrawlOptions, CrawlResult, CrawlStats, crawl
from sitechat.ingest.pipeline import ingest_sources
from sitechat.ingest.robots import _wildcard_match, parse_robots, product_token
from sitechat.ingest.sitemaps import SitemapError, gunzip_bounded, parse_sitemap
from tests.ingest.conftest import Reply, html_reply

if TYPE_CHECKING:
    from sitechat.config import Settings
    from tests.ingest.conftest import ProgrammableServer

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


class _CountingText(str):
    """A URL path that counts the searches made in it."""

    finds = 0

    def find(self, *args: Any) -> int:
        _CountingText.finds += 1
        return super().find(*args)


def test_a_wildcard_pattern_costs_one_search_per_piece() -> None:
    """Matching a pattern of 200 stars against a long path makes at most one search per
    piece between its stars, however the path defeats it."""
    _CountingText.finds = 0
    pattern = "/" + "*a" * 200 + "*b"
    assert not _wildcard_match(pattern, _CountingText("/" + "a" * 150 + "x" * 4000 + "b"))
    assert _wildcard_match(pattern, _CountingText("/" + "xa" * 200 + "b"))
    assert _CountingText.finds <= 2 * 201


def test_a_rule_repeated_thousands_of_times_is_checked_once(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A hostile robots.txt of 14,000 copies of one wildcard rule costs one match per URL."""
    from sitechat.ingest import robots

    calls: list[str] = []
    real = robots._pieces_match

    def counted(pieces: tuple[str, ...], text: str) -> bool:
        calls.append(text)
        return real(pieces, text)

    monkeypatch.setattr(robots, "_pieces_match", counted)
    rules = parse_robots("User-agent: *\n" + "Disallow: /*a*a*a*a*a*b\n" * 14_000, UA)
    assert rules.can_fetch("https://site.test/" + "a" * 1900)
    assert not rules.can_fetch("https://site.test/aaaaab")
    assert len(calls) == 2


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


@pytest.mark.parametrize(
    ("body", "match"),
    [
        (b"", "is empty"),
        (b" \r\n\t", "is empty"),
        (b'{"urls": ["https://site.test/a"]}', "neither sitemap XML nor a text list"),
        (b"<!DOCTYPE html><html><body>Please log in</body></html>", "HTML page"),
        (b"<html><body><form>Sign in</form><br></body></html>", "HTML page"),
        (b'<?xml version="1.0"?><error><code>NoSuchKey</code></error>', "root element is <error>"),
        (b"<rss><channel><link>https://site.test/a</link></channel></rss>", "<rss>"),
    ],
)
def test_bodies_that_are_not_sitemaps_are_refused(body: bytes, match: str) -> None:
    """An empty body, JSON, an HTML page or XML of another kind is a SitemapError, not an
    empty listing."""
    with pytest.raises(SitemapError, match=match):
        parse_sitemap(body)


def test_an_empty_urlset_is_a_sitemap_listing_nothing() -> None:
    """A well-formed ``<urlset>`` with no entries is read as an empty listing, not refused."""
    content = parse_sitemap(b'<urlset xmlns="http://www.sitemaps.org/schemas/sitemap/0.9"/>')
    assert content.pages == () and content.error is None


def test_a_sitemap_over_the_url_limit_is_flagged_not_silently_cut() -> None:
    """Past ``max_urls`` entries (XML or text), the first ones are kept and ``error`` says the
    listing is incomplete; exactly ``max_urls`` entries is a complete listing."""
    xml = SITEMAP.replace(b"</urlset>", b"<url><loc>https://site.test/c</loc></url></urlset>")
    over = parse_sitemap(xml, max_urls=2)
    assert [u for u, _ in over.pages] == ["https://site.test/a", "https://site.test/b?x=1&y=2"]
    assert over.error is not None and "more than 2 URLs" in over.error
    assert parse_sitemap(SITEMAP, max_urls=2).error is None
    text = b"https://site.test/1\nhttps://site.test/2\nhttps://site.test/3\n"
    assert "more than 2 URLs" in (parse_sitemap(text, max_urls=2).error or "")
    assert parse_sitemap(text, max_urls=3).error is None


# -- sitemaps that cannot be read, against a real local server ---------------------------


def _home() -> Reply:
    return html_reply("<html><body><main><h1>Home</h1><p>The home page.</p></main></body></html>")


def _urlset(*urls: str) -> Reply:
    entries = "".join(f"<url><loc>{u}</loc></url>" for u in urls)
    body = f'<urlset xmlns="http://www.sitemaps.org/schemas/sitemap/0.9">{entries}</urlset>'
    return Reply(200, body.encode(), {"Content-Type": "application/xml"})


async def _crawl_site(
    web: ProgrammableServer, **options: Any
) -> tuple[dict[str, CrawlResult], CrawlStats]:
    stats = CrawlStats()
    opts = CrawlOptions(allow_private=True, **options)
    results = {r.url: r async for r in crawl([web.url("/")], options=opts, stats=stats)}
    return results, stats


def _failed(results: dict[str, CrawlResult]) -> dict[str, str]:
    return {url: r.reason or "" for url, r in results.items() if r.status == "failed"}


@pytest.mark.parametrize("named_by", ["options", "robots", "index"])
@pytest.mark.parametrize("status", [404, 410, 403])
async def test_a_named_sitemap_answering_4xx_makes_the_crawl_incomplete(
    web: ProgrammableServer, named_by: str, status: int, caplog: pytest.LogCaptureFixture
) -> None:
    """A 4xx sitemap named by the user, robots.txt or an index is failed, logged and marks the
    crawl incomplete."""
    missing = web.url("/maps/pages.xml")
    web.routes.update({"/": _home(), "/maps/pages.xml": Reply(status, b"gone")})
    options: dict[str, Any] = {}
    if named_by == "options":
        options["sitemaps"] = (missing,)
    elif named_by == "robots":
        web.routes["/robots.txt"] = Reply(200, f"Sitemap: {missing}\n".encode())
    else:
        index = (
            '<sitemapindex xmlns="http://www.sitemaps.org/schemas/sitemap/0.9">'
            f"<sitemap><loc>{missing}</loc></sitemap></sitemapindex>"
        )
        web.routes["/sitemap.xml"] = Reply(200, index.encode())
    with caplog.at_level(logging.WARNING, logger="sitechat.ingest.sitemap_reader"):
        results, stats = await _crawl_site(web, **options)
    assert f"HTTP {status}" in _failed(results)[missing]
    assert "incomplete" in _failed(results)[missing]
    assert stats.truncated is not None and "/maps/pages.xml" in stats.truncated
    assert any("/maps/pages.xml" in m and f"HTTP {status}" in m for m in caplog.messages)


@pytest.mark.parametrize(
    "reply",
    [
        html_reply("<!DOCTYPE html><html><body><form>Please sign in</form></body></html>"),
        Reply(200, b"", {"Content-Type": "application/xml"}),
        Reply(200, b'{"error": "not found"}', {"Content-Type": "application/json"}),
        Reply(200, b"<?xml version='1.0'?><Error><Code>NoSuchKey</Code></Error>"),
    ],
    ids=["html-login-page", "empty", "json", "other-xml"],
)
async def test_a_named_sitemap_that_is_not_a_sitemap_makes_the_crawl_incomplete(
    web: ProgrammableServer, reply: Reply
) -> None:
    """A sitemap robots.txt names that answers 200 with an HTML page, nothing, JSON or other
    XML is failed and marks the crawl incomplete."""
    web.routes.update(
        {
            "/": _home(),
            "/robots.txt": Reply(200, f"Sitemap: {web.url('/sm.xml')}\n".encode()),
            "/sm.xml": reply,
        }
    )
    results, stats = await _crawl_site(web)
    assert web.url("/sm.xml") in _failed(results)
    assert stats.truncated is not None and "/sm.xml" in stats.truncated


async def test_a_named_sitemap_that_cannot_be_fetched_makes_the_crawl_incomplete(
    web: ProgrammableServer,
) -> None:
    """A named sitemap on a port nobody listens on is failed and marks the crawl incomplete."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        dead = f"http://127.0.0.1:{sock.getsockname()[1]}/sitemap.xml"
    web.routes["/"] = _home()
    results, stats = await _crawl_site(web, sitemaps=(dead,), max_retries=0)
    assert dead in _failed(results)
    assert stats.truncated is not None and "sitemap" in stats.truncated


@pytest.mark.parametrize(
    "reply",
    [Reply(404, b"not found"), Reply(410, b"gone"), html_reply("<html><p>Not here</p></html>")],
    ids=["404", "410", "soft-404-html"],
)
async def test_a_guessed_sitemap_xml_that_is_missing_leaves_the_crawl_complete(
    web: ProgrammableServer, reply: Reply
) -> None:
    """``/sitemap.xml``, tried without anyone naming it, is quietly ignored when missing."""
    web.routes.update({"/": _home(), "/sitemap.xml": reply})
    results, stats = await _crawl_site(web)
    assert "/sitemap.xml" in web.hits
    assert stats.truncated is None
    assert _failed(results) == {}


async def test_messages_about_an_unread_sitemap_show_no_secret(
    web: ProgrammableServer, caplog: pytest.LogCaptureFixture
) -> None:
    """The reason, the truncation note and the warning name the index and sitemap without the
    token in their query strings."""
    child = web.url("/child.xml?token=s3cr3t-child")
    index = (
        '<sitemapindex xmlns="http://www.sitemaps.org/schemas/sitemap/0.9">'
        f"<sitemap><loc>{child.replace('&', '&amp;')}</loc></sitemap></sitemapindex>"
    )
    web.routes.update({"/": _home(), "/index.xml": Reply(200, index.encode())})
    with caplog.at_level(logging.WARNING, logger="sitechat.ingest.sitemap_reader"):
        results, stats = await _crawl_site(web, sitemaps=(web.url("/index.xml?key=s3cr3t-idx"),))
    (reason,) = _failed(results).values()
    assert "the sitemap index" in reason and "/index.xml" in reason
    shown = [reason, stats.truncated or "", *caplog.messages]
    assert not any("s3cr3t" in text for text in shown)
    assert any("/child.xml" in m for m in caplog.messages)


async def test_reingest_with_a_named_sitemap_now_404_removes_no_page(
    web: ProgrammableServer, settings: Settings
) -> None:
    """Re-ingesting while robots.txt's sitemap answers 404 keeps the pages only it listed and
    reports the sitemap failed and the crawl incomplete."""
    web.routes.update(
        {
            "/": _home(),
            "/robots.txt": Reply(200, f"Sitemap: {web.url('/sm.xml')}\n".encode()),
            "/sm.xml": _urlset(web.url("/a"), web.url("/b")),
            "/a": html_reply("<main><h1>A</h1><p>Only the sitemap lists page A.</p></main>"),
            "/b": html_reply("<main><h1>B</h1><p>Only the sitemap lists page B.</p></main>"),
        }
    )
    options = CrawlOptions(trusted_hosts=(web.base.removeprefix("http://"),))

    async def ingest() -> dict[str, Any]:
        store, embeddings = await open_store(settings, HashingEmbeddings(), create=True)
        try:
            summary = await ingest_sources(
                [web.url("/")], store, embeddings, settings, crawl_options=options
            )
            assert len(await store.urls()) == 3
        finally:
            await store.aclose()
        return summary.to_dict()

    first = await ingest()
    assert first["crawl"]["complete"] is True
    web.routes["/sm.xml"] = Reply(404, b"not found")
    second = await ingest()
    assert second["pages"]["removed"] == 0
    assert second["crawl"]["complete"] is False
    assert [f["url"] for f in second["failed"]] == [web.url("/sm.xml")]


async def test_relative_sitemap_locs_are_reported_not_silently_dropped(
    web: ProgrammableServer, caplog: pytest.LogCaptureFixture
) -> None:
    """Relative <loc> entries break the sitemaps.org protocol: they are not fetched, and the
    sitemap is reported failed (with the count and an example), logged, and the crawl marked
    incomplete; its absolute entries are still crawled."""
    web.routes.update(
        {
            "/": _home(),
            "/sitemap.xml": _urlset("/guide", "faq", web.url("/ok")),
            "/guide": html_reply("<main><h1>Guide</h1><p>The guide.</p></main>"),
            "/ok": html_reply("<main><h1>OK</h1><p>An absolute entry.</p></main>"),
        }
    )
    with caplog.at_level(logging.WARNING, logger="sitechat.ingest.sitemap_reader"):
        results, stats = await _crawl_site(web)
    reason = _failed(results)[web.url("/sitemap.xml")]
    assert "2 <loc> entries that are not absolute http(s) URLs (such as '/guide'" in reason
    assert "/guide" not in web.hits
    assert results[web.url("/ok")].status == "ok"
    assert stats.truncated is not None and "/sitemap.xml" in stats.truncated
    assert any("not absolute" in message for message in caplog.messages)


async def test_sitemap_entries_are_canonicalised_before_crawling(web: ProgrammableServer) -> None:
    """A sitemap entry spelled with a dot segment and its query in another order is the same
    page as the canonical link to it: fetched once, under its canonical URL."""
    web.routes.update(
        {
            "/": html_reply("<main><h1>Home</h1><p>Home.</p><a href='/a/b?x=2&y=1'>b</a></main>"),
            "/sitemap.xml": _urlset(web.url("/a/./b?y=1&amp;x=2")),
            "/a/b": html_reply("<main><h1>B</h1><p>Page b.</p></main>"),
        }
    )
    results, _ = await _crawl_site(web)
    assert len([hit for hit in web.hits if hit.startswith("/a/")]) == 1
    assert results[web.url("/a/b?x=2&y=1")].status == "ok"
