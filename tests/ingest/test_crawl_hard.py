"""The crawler against sites that fight back: traps, copies, bombs, throttling, SSRF tricks."""

from __future__ import annotations

import asyncio
import gzip
import logging
import socket
import time
from typing import TYPE_CHECKING, Any

import pytest

from sitechat.ingest.crawl import CrawlOptions, CrawlResult, CrawlStats, crawl

if TYPE_CHECKING:
    from tests.ingest.conftest import ProgrammableServer

from tests.ingest.conftest import Reply, html_reply


def _page(title: str, text: str, links: list[str] = (), head: str = "") -> Reply:  # type: ignore[assignment]
    anchors = "".join(f'<a href="{link}">{link}</a> ' for link in links)
    return html_reply(
        f"<html><head><title>{title}</title>{head}</head><body><main><h1 id='top'>{title}</h1>"
        f"<p>{text}</p><p>{anchors}</p></main></body></html>"
    )


async def _crawl(start: str, **options: Any) -> tuple[dict[str, CrawlResult], CrawlStats]:
    stats = CrawlStats()
    opts = CrawlOptions(allow_private=options.pop("allow_private", True), **options)
    results = {r.url: r async for r in crawl([start], options=opts, stats=stats)}
    return results, stats


def _ok(results: dict[str, CrawlResult], base: str) -> set[str]:
    return {u.removeprefix(base) for u, r in results.items() if r.status == "ok"}


def _sitemap(urls: list[str]) -> bytes:
    entries = "".join(f"<url><loc>{u}</loc><lastmod>2024-01-01</lastmod></url>" for u in urls)
    return (
        '<?xml version="1.0" encoding="UTF-8"?>'
        f'<urlset xmlns="http://www.sitemaps.org/schemas/sitemap/0.9">{entries}</urlset>'
    ).encode()


async def test_sitemap_index_and_gzip_sitemap_from_robots(web: ProgrammableServer) -> None:
    """robots.txt names a sitemap index; its gzip child lists pages no link reaches."""
    base = web.base
    index = (
        '<sitemapindex xmlns="http://www.sitemaps.org/schemas/sitemap/0.9">'
        f"<sitemap><loc>{base}/maps/pages.xml.gz</loc></sitemap>"
        f"<sitemap><loc>{base}/maps/more.xml</loc></sitemap></sitemapindex>"
    ).encode()
    web.routes.update(
        {
            "/robots.txt": Reply(200, f"Sitemap: {base}/maps/index.xml\n".encode()),
            "/maps/index.xml": Reply(200, index, {"Content-Type": "application/xml"}),
            "/maps/pages.xml.gz": Reply(
                200,
                gzip.compress(_sitemap([f"{base}/hidden-a", f"{base}/hidden-b"])),
                {"Content-Type": "application/gzip"},
            ),
            "/maps/more.xml": Reply(200, _sitemap([f"{base}/hidden-c", "http://other.test/x"])),
            "/": _page("Home", "Home page."),
            "/hidden-a": _page("A", "Only the sitemap knows page A."),
            "/hidden-b": _page("B", "Only the sitemap knows page B."),
            "/hidden-c": _page("C", "Only the sitemap knows page C."),
        }
    )
    results, stats = await _crawl(base + "/")
    assert _ok(results, base) == {"/", "/hidden-a", "/hidden-b", "/hidden-c"}
    assert stats.sitemaps_read == 3
    assert not any("other.test" in url for url in results)


async def test_a_sitemap_url_as_the_only_source(web: ProgrammableServer) -> None:
    """A start URL ending in .xml is read as a sitemap; depth 0 fetches only its pages."""
    base = web.base
    web.routes.update(
        {
            "/sitemap.xml": Reply(200, _sitemap([f"{base}/one", f"{base}/two"])),
            "/one": _page("One", "Page one.", ["/three"]),
            "/two": _page("Two", "Page two."),
            "/three": _page("Three", "Page three."),
        }
    )
    results, _ = await _crawl(base + "/sitemap.xml", max_depth=0)
    assert _ok(results, base) == {"/one", "/two"}
    assert "/three" not in web.hits


async def test_robots_wildcards_and_longest_match_are_honoured(web: ProgrammableServer) -> None:
    """``*``, ``$`` and the longest rule decide; our own group beats ``*``."""
    web.routes.update(
        {
            "/robots.txt": Reply(
                200,
                b"User-agent: *\nDisallow: /\n\n"
                b"User-agent: sitechat\nDisallow: /*.pdf$\nDisallow: /drafts\n"
                b"Allow: /drafts/public\nDisallow: /*?print=\n",
            ),
            "/": _page(
                "Home",
                "Home.",
                ["/doc.pdf", "/doc.pdf.html", "/drafts/x", "/drafts/public/y", "/a?print=1"],
            ),
            "/doc.pdf.html": _page("PdfHtml", "Not a pdf."),
            "/drafts/public/y": _page("Public", "Public draft."),
        }
    )
    results, _ = await _crawl(web.base + "/", user_agent="SiteChat/2.0 (+https://x.test)")
    assert _ok(results, web.base) == {"/", "/doc.pdf.html", "/drafts/public/y"}
    for path in ("/drafts/x", "/a?print=1"):
        assert results[web.base + path].reason == "disallowed by robots.txt"
        assert path not in web.hits


async def test_calendar_trap_stops(web: ProgrammableServer) -> None:
    """An endless calendar is cut off by the pattern guard; the real pages are still crawled."""

    def month(path: str, headers: Any) -> Reply:
        year, number = (int(p) for p in path.split("?")[0].split("/")[2:4])
        nxt = f"/calendar/{year + (number == 12)}/{number % 12 + 1:02d}"
        prev = f"/calendar/{year - (number == 1)}/{(number - 2) % 12 + 1:02d}"
        days = [f"/calendar/{year}/{number:02d}?day={d}" for d in range(1, 4)]
        return _page(f"{year}-{number}", f"Events in {year}-{number}.", [nxt, prev, *days])

    web.routes.update(
        {
            "/": _page("Home", "Home.", ["/calendar/2030/01", "/about"]),
            "/about": _page("About", "About us."),
            "/calendar": month,
        }
    )
    web.routes.update(
        {f"/calendar/{y}/{m:02d}": month for y in range(1900, 2200) for m in range(1, 13)}
    )
    results, stats = await _crawl(web.base + "/", max_pattern_pages=15, max_depth=1000)
    assert "/about" in _ok(results, web.base)
    calendar_hits = [h for h in web.hits if h.startswith("/calendar")]
    assert 0 < len(calendar_hits) <= 30
    assert stats.trap_urls_dropped > 0
    assert any("link trap guard" in (r.reason or "") for r in results.values())


async def test_query_variants_of_one_page_are_fetched_once(web: ProgrammableServer) -> None:
    """Session-style query variants of a page with a canonical URL are fetched once."""

    def item(path: str, headers: Any) -> Reply:
        ident = path.split("id=")[1].split("&")[0]
        return _page(
            f"Item {ident}",
            f"Item number {ident} is great.",
            head=(f'<link rel="canonical" href="/item?id={ident}">'),
        )

    variants = [f"/item?id=7&view={v}" for v in ("a", "b", "c", "d")] + ["/item?id=8&view=a"]
    web.routes.update({"/": _page("Home", "Home.", variants), "/item": item})
    results, stats = await _crawl(web.base + "/")
    item_hits = [h for h in web.hits if h.startswith("/item")]
    assert sorted(item_hits) == ["/item?id=7&view=a", "/item?id=8&view=a"]
    assert _ok(results, web.base) == {"/", "/item?id=7", "/item?id=8"}
    assert stats.duplicate_urls_dropped == 3


async def test_binary_junk_and_compression_bombs_are_skipped(web: ProgrammableServer) -> None:
    """Binary bytes labelled text/html, and a gzip bomb, are skipped without blowing memory."""
    bomb = gzip.compress(b"<p>" + b"a" * 20_000_000 + b"</p>")
    web.routes.update(
        {
            "/": _page("Home", "Home.", ["/junk.html", "/bomb.html"]),
            "/junk.html": Reply(200, bytes(range(256)) * 64, {"Content-Type": "text/html"}),
            "/bomb.html": Reply(
                200, bomb, {"Content-Type": "text/html", "Content-Encoding": "gzip"}
            ),
        }
    )
    results, _ = await _crawl(web.base + "/", max_bytes=100_000)
    assert results[web.base + "/junk.html"].reason == "binary content served as text/html"
    bomb_result = results[web.base + "/bomb.html"]
    assert bomb_result.status == "skipped"
    assert bomb_result.reason == "too large (more than 100000 bytes)"


async def test_throttling_is_retried_as_retry_after_asks(web: ProgrammableServer) -> None:
    """503 with Retry-After is retried; a Retry-After beyond the cap fails at once."""
    answers = iter([Reply(503, b"", {"Retry-After": "0"})] * 2)

    def flaky(path: str, headers: Any) -> Reply:
        return next(answers, None) or _page("Flaky", "Finally here.")

    web.routes.update(
        {
            "/": _page("Home", "Home.", ["/flaky", "/throttled"]),
            "/flaky": flaky,
            "/throttled": Reply(429, b"", {"Retry-After": "3600"}),
        }
    )
    results, stats = await _crawl(web.base + "/", max_retry_wait=5)
    assert results[web.base + "/flaky"].status == "ok"
    assert web.hits.count("/flaky") == 3
    assert stats.retries == 2
    throttled = results[web.base + "/throttled"]
    assert throttled.status == "failed"
    assert "Retry-After asks for 3600 s" in (throttled.reason or "")
    assert web.hits.count("/throttled") == 1


async def test_time_budget_truncates_the_crawl(web: ProgrammableServer) -> None:
    """With max_seconds spent, the crawl stops and says it was cut short."""
    web.routes.update({f"/p{i}": _page(f"P{i}", f"Page {i}.", [f"/p{i + 1}"]) for i in range(1000)})
    results, stats = await _crawl(web.base + "/p0", max_seconds=0.5, delay=0.2)
    assert stats.truncated is not None
    assert "time budget" in stats.truncated
    assert len(results) < 10


async def test_redirects_to_private_addresses_are_refused(
    web: ProgrammableServer, bystander: ProgrammableServer
) -> None:
    """Only the trusted test host may be private: redirects to loopback or metadata IPs are not."""
    host = web.base.removeprefix("http://")
    web.routes.update(
        {
            "/": _page("Home", "Home.", ["/to-loopback", "/to-metadata", "/to-localhost"]),
            "/to-loopback": Reply(302, b"", {"Location": bystander.base + "/"}),
            "/to-metadata": Reply(302, b"", {"Location": "http://169.254.169.254/latest/"}),
            "/to-localhost": Reply(
                302, b"", {"Location": bystander.base.replace("127.0.0.1", "localhost")}
            ),
        }
    )
    results, _ = await _crawl(
        web.base + "/", allow_private=False, trusted_hosts=(host,), max_retries=0
    )
    assert results[web.base + "/"].status == "ok"
    for path, address in [
        ("/to-loopback", "127.0.0.1"),
        ("/to-metadata", "169.254.169.254"),
        ("/to-localhost", "localhost"),
    ]:
        result = results[web.base + path]
        assert result.status == "skipped", path
        assert address in (result.reason or ""), path
        assert "allow_private" in (result.reason or "")
    assert bystander.hits == []


async def test_dns_rebinding_is_refused_at_connect_time(
    bystander: ProgrammableServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A name that resolves publicly when checked and to loopback when connecting is refused."""
    port = bystander.base.rsplit(":", 1)[1]
    answers = iter(["93.184.216.34"])
    loop = asyncio.get_running_loop()

    async def rebinding_getaddrinfo(host: str, *args: Any, **kwargs: Any) -> list[Any]:
        if host != "rebind.test":
            raise socket.gaierror(f"unknown host {host}")
        address = next(answers, "127.0.0.1")  # public first, loopback afterwards
        return [(socket.AF_INET, socket.SOCK_STREAM, 6, "", (address, int(port)))]

    monkeypatch.setattr(loop, "getaddrinfo", rebinding_getaddrinfo)
    opts = CrawlOptions(respect_robots=False, use_sitemaps=False)
    results = [r async for r in crawl([f"http://rebind.test:{port}/"], options=opts)]
    assert [r.status for r in results] == ["skipped"]
    assert "127.0.0.1" in (results[0].reason or "")
    assert bystander.hits == []


def _doc(title: str, body: str, head: str = "", links: list[str] = ()) -> Reply:  # type: ignore[assignment]
    anchors = "".join(f'<a href="{link}">{link}</a> ' for link in links)
    return html_reply(
        f"<html><head><title>{title}</title>{head}</head><body><main>{body}"
        f"<p>{anchors}</p></main></body></html>"
    )


@pytest.mark.parametrize("order", [["/c2", "/real"], ["/real", "/c2"], ["/c2"]])
async def test_a_canonical_link_never_replaces_another_page(
    web: ProgrammableServer, order: list[str]
) -> None:
    """A page naming another page's URL as canonical keeps its own URL, whatever the order."""
    web.routes.update(
        {
            "/": _page("Home", "Home page.", order),
            "/c2": _page("C2", "Volcanoes and lava.", head='<link rel="canonical" href="/real">'),
            "/real": _page("Real", "Rivers and lakes."),
        }
    )
    results, _ = await _crawl(web.base + "/", concurrency=1)
    real, c2 = results[web.base + "/real"], results[web.base + "/c2"]
    assert real.status == "ok" and c2.status == "ok", (real.reason, c2.reason)
    assert real.page is not None and real.page.title == "Real"
    assert "Rivers" in real.page.text
    assert c2.page is not None and c2.page.url == web.base + "/c2"
    assert "Volcanoes" in c2.page.text


@pytest.mark.parametrize("order", [["/copy", "/guide"], ["/guide", "/copy"]])
async def test_a_copy_naming_its_canonical_is_its_duplicate_in_any_order(
    web: ProgrammableServer, order: list[str]
) -> None:
    """A copy (other title, same headings and text) naming its canonical is skipped, not stored."""
    body = "<h1 id='g'>Guide</h1><p>Install it with pip.</p>"
    web.routes.update(
        {
            "/": _page("Home", "Home page.", order),
            "/guide": _doc("Guide", body),
            "/copy": _doc("Guide (print)", body, head='<link rel="canonical" href="/guide">'),
        }
    )
    results, _ = await _crawl(web.base + "/", concurrency=1)
    assert _ok(results, web.base) == {"/", "/guide"}
    assert results[web.base + "/guide"].page.title == "Guide"  # type: ignore[union-attr]
    assert results[web.base + "/copy"].reason == f"duplicate of {web.base}/guide"


async def test_pages_differing_only_in_headings_are_not_duplicates(
    web: ProgrammableServer,
) -> None:
    """Headings are part of the duplicate fingerprint: two release notes naming different CVEs."""

    def notes(v: str) -> Reply:
        return _doc(
            f"Release {v}",
            f"<h1>Release {v}</h1><h2>Security fix for CVE-2024-000{v}</h2>"
            "<p>Update as soon as possible.</p><h2>Breaking change</h2>"
            "<p>Upgrade your client library before deploying.</p>",
        )

    web.routes.update({"/": _page("Home", "Home.", ["/v1", "/v2", "/v1-again"]), "/v1": notes("1")})
    web.routes.update({"/v2": notes("2"), "/v1-again": notes("1")})
    results, _ = await _crawl(web.base + "/", concurrency=1)
    assert _ok(results, web.base) == {"/", "/v1", "/v2"}
    assert results[web.base + "/v1-again"].reason == f"duplicate of {web.base}/v1"


async def test_a_stray_nul_byte_does_not_drop_the_page(web: ProgrammableServer) -> None:
    """One NUL in an href leaves the home page indexed and its links followed."""
    web.routes.update(
        {
            "/": _page("Home", "Home page " * 30, ["/next\x00x", "/next"]),
            "/next": _page("Next", "The next page."),
        }
    )
    results, _ = await _crawl(web.base + "/")
    assert {"/", "/next"} <= _ok(results, web.base)


async def test_off_site_sitemaps_named_by_robots_are_not_fetched(
    web: ProgrammableServer, bystander: ProgrammableServer
) -> None:
    """A robots.txt Sitemap: line on another host is skipped with a reason, never requested."""
    bystander.routes["/sm.xml"] = Reply(200, _sitemap([bystander.base + "/"]))
    web.routes.update(
        {
            "/robots.txt": Reply(
                200, f"Sitemap: {bystander.base}/sm.xml\nSitemap: {web.base}/sm.xml\n".encode()
            ),
            "/sm.xml": Reply(200, _sitemap([web.base + "/listed"])),
            "/": _page("Home", "Home page."),
            "/listed": _page("Listed", "Only the sitemap lists this page."),
        }
    )
    results, _ = await _crawl(web.base + "/")
    assert bystander.hits == []
    assert _ok(results, web.base) == {"/", "/listed"}
    skipped = results[bystander.base + "/sm.xml"]
    assert skipped.status == "skipped"
    assert skipped.reason is not None and "another site" in skipped.reason


def test_retry_after_in_seconds_and_as_a_future_date() -> None:
    """Retry-After is read as delta-seconds or an HTTP date still to come."""
    from sitechat.ingest.fetch import retry_after_seconds

    now = 1_700_000_000.0
    assert retry_after_seconds("120", now=now) == 120.0
    assert retry_after_seconds("Tue, 14 Nov 2023 22:15:20 GMT", now=now) == pytest.approx(120.0)


@pytest.mark.parametrize(
    "value",
    ["Tue, 14 Nov 2023 22:13:20 GMT", "Mon, 01 Jan 1990 00:00:00 GMT", "soon", "١٢", "", None],
    ids=["now", "past", "words", "arabic-digits", "empty", "absent"],
)
def test_retry_after_that_says_nothing_usable_leaves_the_backoff(value: str | None) -> None:
    """A date already past (or now), or a malformed value, is None: the crawler backs off
    instead of retrying at once."""
    from sitechat.ingest.fetch import retry_after_seconds

    assert retry_after_seconds(value, now=1_700_000_000.0) is None


async def test_urls_a_sitemap_lists_pass_the_trap_guard(web: ProgrammableServer) -> None:
    """Numbered URLs the site's sitemap lists are all fetched, even those whose links were
    refused by the pattern guard before the (slow) sitemap was read."""
    posts = [f"/post/{i}" for i in range(1, 13)]
    sitemap = _sitemap([web.url(p) for p in posts])

    def slow_sitemap(path: str, headers: Any) -> Reply:
        time.sleep(0.5)  # the home page's links are admitted first
        return Reply(200, sitemap, {"Content-Type": "application/xml"})

    web.routes.update({"/": _page("Blog", "Our blog.", posts), "/sitemap.xml": slow_sitemap})
    web.routes.update({p: _page(f"Post {p[6:]}", f"Post {p[6:]} talks.") for p in posts})
    results, stats = await _crawl(web.base + "/", max_pattern_pages=5)
    assert _ok(results, web.base) == {"/", *posts}
    assert stats.trap_urls_dropped == 0
    assert stats.truncated is None


async def test_a_trap_guard_cut_makes_the_crawl_incomplete(web: ProgrammableServer) -> None:
    """Links refused by the pattern guard are a cut, reported in truncated with the pattern."""
    items = [f"/item/{i}" for i in range(1, 9)]
    web.routes.update({"/": _page("Shop", "Our items.", items)})
    web.routes.update({p: _page(f"Item {p[6:]}", f"Item {p[6:]} is fine.") for p in items})
    results, stats = await _crawl(web.base + "/", max_pattern_pages=5, use_sitemaps=False)
    assert len(_ok(results, web.base)) == 6
    assert stats.trap_urls_dropped == 3
    assert stats.truncated == (
        f"max_pattern_pages (5) reached: 3 URL(s) like {web.base}/item/9 were not fetched"
    )


def test_trap_patterns_fold_digits_in_the_path_only() -> None:
    """The pattern keeps the host's digits, and a path whose only number is 9 still counts."""
    from sitechat.ingest.scope import LinkTrapGuard

    assert LinkTrapGuard.pattern("http://10.0.0.7:8080/a/2031/07?day=3") == (
        "http://10.0.0.7:8080/a/9/9?day"
    )
    guard = LinkTrapGuard(1)
    assert guard.admit("http://h.test/item/1") == (True, None)
    assert guard.admit("http://h.test/item/9")[0] is False
    assert guard.admit("http://h.test/item/2", listed=True) == (True, None)


async def test_redirects_to_non_http_urls_are_skipped_with_the_reason(
    web: ProgrammableServer, caplog: pytest.LogCaptureFixture
) -> None:
    """A redirect to mailto:, javascript: or ftp: is a skip saying so, not an unexpected
    error with a traceback, and leaves the crawl complete."""
    targets = {
        "/contact": "mailto:shop@example.com",
        "/js": "javascript:void(0)",
        "/ftp": "ftp://files.example.com/x",
    }
    web.routes.update({"/": _page("Home", "Home.", list(targets))})
    web.routes.update({p: Reply(302, b"", {"Location": t}) for p, t in targets.items()})
    with caplog.at_level(logging.ERROR, logger="sitechat.ingest.crawl"):
        results, stats = await _crawl(web.base + "/", use_sitemaps=False)
    for path in targets:
        result = results[web.base + path]
        assert result.status == "skipped"
        assert result.reason is not None and result.reason.startswith("redirects to a non-http URL")
    assert "ftp://files.example.com/x" in (results[web.base + "/ftp"].reason or "")
    assert "mailto:" in (results[web.base + "/contact"].reason or "")
    assert stats.truncated is None
    assert caplog.records == []


_QUERY_ROBOTS = b"User-agent: *\nDisallow: /search?q=\nDisallow: /*?sort=\n"
_QUERY_LINKS = ["/search?q=shoes&page=2", "/list?sort=price&cat=1", "/list?cat=2&sort=name", "/go"]


def _query_site(web: ProgrammableServer, home: Reply) -> None:
    web.routes.update(
        {
            "/robots.txt": Reply(200, _QUERY_ROBOTS),
            "/": home,
            "/search": _page("Search", "Results."),
            "/list": lambda path, headers: _page(f"List {path}", f"Listing {path}."),
            "/go": Reply(302, b"", {"Location": "/search?q=boots&page=3"}),
        }
    )


async def test_robots_rules_naming_a_query_match_the_url_as_written(
    web: ProgrammableServer,
) -> None:
    """``Disallow: /search?q=`` and ``/*?sort=`` refuse links that write those parameters
    first, although the canonical URL sorts them later; a redirect is checked the same way."""
    _query_site(web, _page("Home", "Home.", _QUERY_LINKS))
    results, _ = await _crawl(web.base + "/", use_sitemaps=False)
    fetched = {h for h in web.hits if h.startswith(("/search", "/list"))}
    assert fetched == {"/list?cat=2&sort=name"}
    assert results[web.base + "/search?page=2&q=shoes"].reason == "disallowed by robots.txt"
    assert results[web.base + "/list?cat=1&sort=price"].reason == "disallowed by robots.txt"
    assert results[web.base + "/go"].reason == "disallowed by robots.txt"
    assert _ok(results, web.base) == {"/", "/list?cat=2&sort=name"}
