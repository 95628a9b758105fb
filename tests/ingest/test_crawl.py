"""The crawler against a real local HTTP server, and a mock transport for what needs DNS."""

from __future__ import annotations

import asyncio
import contextlib
import socket
from collections.abc import Callable, Iterator
from contextlib import aclosing
from importlib.metadata import version
from typing import TYPE_CHECKING, Any

import httpx
import pytest

from sitechat.config import Settings
from sitechat.errors import InvalidInputError, UnsafeURLError
from sitechat.ingest.crawl import CrawlOptions, CrawlResult, crawl
from sitechat.ingest.crawl_source import crawl_options_from
from sitechat.ingest.options import CrawlStats
from tests.ingest.conftest import ProgrammableServer, Reply, serve

if TYPE_CHECKING:
    from tests.ingest.conftest import SiteServer


async def _crawl(start: str | list[str], **options: Any) -> dict[str, CrawlResult]:
    starts = [start] if isinstance(start, str) else start
    opts = CrawlOptions(allow_private=True, **options)
    return {r.url: r async for r in crawl(starts, options=opts)}


def _paths(results: dict[str, CrawlResult], base: str, status: str) -> set[str]:
    return {url.removeprefix(base) for url, r in results.items() if r.status == status}


async def test_default_options_refuse_loopback(site_server: SiteServer) -> None:
    """Without allow_private the crawler refuses 127.0.0.1 before fetching anything."""
    with pytest.raises(UnsafeURLError, match="allow_private=True"):
        async for _ in crawl([site_server.url("/")]):
            pass
    assert site_server.requests == []


async def test_crawl_fixture_site(site_server: SiteServer) -> None:
    """A whole crawl: pages found, robots, redirects, types, sizes, duplicates, hints, and a
    page of links that is followed but not indexed."""
    results = await _crawl(site_server.url("/"), max_bytes=100_000)
    base = site_server.base
    assert _paths(results, base, "ok") == {
        "/",
        "/guide.html",
        "/notes.md",
        "/nofollow.html",
        "/followed-from-noindex.html",
        "/deep/one.html",
        "/deep/two.html",
        "/deep/three.html",
        "/only-from-index.html",
    }
    reasons = {url.removeprefix(base): r.reason or "" for url, r in results.items()}
    assert reasons["/site-index.html"].startswith("link list")
    assert "robots.txt" in reasons["/private/secret.html"]
    assert reasons["/report"] == "unsupported content type application/pdf"
    assert reasons["/manual.pdf"].startswith("not a page")
    assert reasons["/huge.html"].startswith("too large")
    assert reasons["/noindex.html"] == "noindex"
    assert reasons["/guide-copy.html"] == f"duplicate of {base}/guide.html"
    assert reasons["/old-guide"].startswith("redirects to")
    assert reasons["/away"] == "redirects off-site to http://example.org/landing"
    assert reasons["/missing.html"] == "HTTP 404"
    assert results[base + "/missing.html"].status == "failed"
    assert not any("example.org" in url or "hidden" in url for url in results)

    guide = results[base + "/guide.html"].page
    assert guide is not None
    assert [s.anchor for s in guide.sections] == ["guide", "install"]
    notes = results[base + "/notes.md"].page
    assert notes is not None
    assert notes.content_type == "text/markdown"
    assert [s.anchor for s in notes.sections] == ["notes", "details"]

    requested = site_server.requests
    assert requested.count("/robots.txt") == 1
    assert len(requested) == len(set(requested)), "a URL was fetched twice"
    assert "/manual.pdf" not in requested
    assert "/private/secret.html" not in requested
    assert "/hidden.html" not in requested


async def test_content_length_over_the_limit_is_not_downloaded(site_server: SiteServer) -> None:
    """A declared Content-Length above max_bytes is skipped as too large."""
    results = await _crawl(site_server.url("/huge-declared.html"), max_bytes=100_000)
    (result,) = results.values()
    assert result.status == "skipped"
    assert result.reason is not None
    assert result.reason.startswith("too large")


async def test_max_depth_limits_link_hops(site_server: SiteServer) -> None:
    """Pages more than max_depth links from the start are not crawled."""
    results = await _crawl(site_server.url("/"), max_depth=1)
    paths = set(results) and {u.removeprefix(site_server.base) for u in results}
    assert "/guide.html" in paths
    assert not any(p.startswith("/deep/") for p in paths)


async def test_max_pages_bounds_ok_results(site_server: SiteServer) -> None:
    """No more than max_pages pages come back as ok."""
    results = await _crawl(site_server.url("/"), max_pages=3)
    assert sum(r.status == "ok" for r in results.values()) == 3


async def test_include_and_exclude_patterns(site_server: SiteServer) -> None:
    """Discovered links must match an include pattern and no exclude pattern."""
    results = await _crawl(site_server.url("/"), include=(r"/deep/|guide",), exclude=(r"two",))
    ok = _paths(results, site_server.base, "ok")
    assert ok == {"/", "/guide.html", "/deep/one.html"}


async def test_concurrency_is_bounded(site_server: SiteServer) -> None:
    """Never more requests in flight than ``concurrency``."""
    site_server.delay = 0.05
    await _crawl(site_server.url("/"), concurrency=2)
    assert 1 <= site_server.max_active <= 2


async def test_redirect_loop_fails_after_five_hops(site_server: SiteServer) -> None:
    """Redirects are followed by hand, at most five times."""
    results = await _crawl(site_server.url("/loop/0"))
    (result,) = results.values()
    assert result.status == "failed"
    assert result.reason == "more than 5 redirects"
    assert site_server.requests.count("/loop/5") == 1
    assert "/loop/6" not in site_server.requests


async def test_a_redirect_loop_is_named_as_one() -> None:
    """/a → /b → /a fails as a redirect loop, listing the hops, on the first repeat (it was
    reported as "redirects to /a, crawled on its own")."""
    server = ProgrammableServer()
    with _serving(server):
        server.routes = {
            "/a": Reply(302, b"", {"Location": server.url("/b")}),
            "/b": Reply(302, b"", {"Location": server.url("/a")}),
        }
        results = await _crawl(server.url("/a"))
    (result,) = results.values()
    assert result.status == "failed"
    assert result.reason == f"redirect loop: {server.url('/a')} → {server.url('/b')} → " + (
        server.url("/a")
    )


async def test_crawl_delay_spaces_requests(site_server: SiteServer) -> None:
    """A robots.txt Crawl-delay separates consecutive page requests to the host."""
    site_server.robots = "User-agent: *\nCrawl-delay: 1\n"
    results = await _crawl(site_server.url("/deep/one.html"), max_pages=2)
    assert sum(r.status == "ok" for r in results.values()) == 2
    page_times = [t for path, t in site_server.times if path.startswith("/deep/")]
    assert len(page_times) == 2
    assert page_times[1] - page_times[0] >= 0.9


async def test_robots_can_be_ignored(site_server: SiteServer) -> None:
    """With respect_robots=False, disallowed pages are fetched and robots.txt is not."""
    results = await _crawl(site_server.url("/private/secret.html"), respect_robots=False)
    assert [r.status for r in results.values()] == ["ok"]
    assert "/robots.txt" not in site_server.requests


async def test_injected_client_is_used_and_left_open(site_server: SiteServer) -> None:
    """A caller's client is used as given and not closed by the crawl."""
    async with httpx.AsyncClient() as client:
        opts = CrawlOptions(allow_private=True, max_depth=0)
        results = [r async for r in crawl([site_server.url("/")], options=opts, client=client)]
        assert [r.status for r in results] == ["ok"]
        assert not client.is_closed


async def test_stopping_early_cancels_cleanly(site_server: SiteServer) -> None:
    """Leaving the loop after the first result closes the crawl without stray tasks."""
    site_server.delay = 0.05
    opts = CrawlOptions(allow_private=True)
    async with aclosing(crawl([site_server.url("/")], options=opts)) as results:
        async for _ in results:
            break
    await asyncio.sleep(0)
    pending = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
    assert pending == []


def test_invalid_options_and_start_urls_are_refused() -> None:
    """Bad option values and non-http start URLs raise before any work."""
    with pytest.raises(InvalidInputError, match="max_pages"):
        CrawlOptions(max_pages=0)
    with pytest.raises(InvalidInputError, match="pattern"):
        CrawlOptions(include=("(",))


@pytest.mark.parametrize(
    ("options", "named"),
    [
        ({"delay": float("inf")}, "--delay"),
        ({"max_seconds": float("inf")}, "--max-seconds"),
        ({"timeout": float("nan")}, "timeout"),
        ({"user_agent": "two\nlines"}, "--user-agent"),
    ],
)
def test_endless_waits_are_refused_naming_the_option(options: dict[str, Any], named: str) -> None:
    """An infinite delay or budget (which would wait forever) is refused, naming the flag."""
    with pytest.raises(InvalidInputError, match=named):
        CrawlOptions(**options)


async def test_non_http_start_url_is_unsafe() -> None:
    """A start URL that is not http(s) raises UnsafeURLError."""
    with pytest.raises(UnsafeURLError):
        async for _ in crawl(["file:///etc/passwd"]):
            pass


# -- through a mock transport, with name resolution faked --------------------------------


@pytest.fixture
async def fake_dns(monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    """Resolve ``*.test`` names from a table instead of the network."""
    table = {"docs.example.test": "93.184.216.34", "www.docs.example.test": "10.0.0.5"}
    loop = asyncio.get_running_loop()

    async def getaddrinfo(host: str, port: Any, **kwargs: Any) -> list[Any]:
        if host not in table:
            raise socket.gaierror(f"unknown host {host}")
        return [(socket.AF_INET, socket.SOCK_STREAM, 6, "", (table[host], 0))]

    monkeypatch.setattr(loop, "getaddrinfo", getaddrinfo)
    return table


def _html(body: str) -> httpx.Response:
    return httpx.Response(200, headers={"content-type": "text/html"}, text=body)


async def test_redirect_to_a_private_address_is_refused(fake_dns: dict[str, str]) -> None:
    """A same-site redirect whose host resolves privately is refused, not followed."""
    seen: list[str] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(str(request.url))
        if request.url.path == "/robots.txt":
            return httpx.Response(404)
        if request.url.host == "docs.example.test" and request.url.path == "/":
            return _html("<main><p>Home.</p><a href='/admin'>admin</a></main>")
        if request.url.path == "/admin":
            return httpx.Response(302, headers={"location": "http://www.docs.example.test/x"})
        return _html("<p>should never be fetched</p>")

    async with httpx.AsyncClient(transport=httpx.MockTransport(handler)) as client:
        results = {r.url: r async for r in crawl(["http://docs.example.test/"], client=client)}
    admin = results["http://docs.example.test/admin"]
    assert admin.status == "skipped"
    assert admin.reason is not None
    assert "10.0.0.5" in admin.reason
    assert "allow_private" in admin.reason
    assert not any("www.docs" in url for url in seen)


async def test_robots_server_error_means_crawl_nothing(fake_dns: dict[str, str]) -> None:
    """A 5xx robots.txt disallows the site (RFC 9309), with the reason reported."""

    def handler(request: httpx.Request) -> httpx.Response:
        if request.url.path == "/robots.txt":
            return httpx.Response(503)
        return _html("<p>page</p>")

    async with httpx.AsyncClient(transport=httpx.MockTransport(handler)) as client:
        results = [r async for r in crawl(["http://docs.example.test/"], client=client)]
    assert [(r.status, r.reason) for r in results] == [
        ("skipped", "robots.txt unavailable (HTTP 503)")
    ]


async def test_network_errors_become_failed_results(fake_dns: dict[str, str]) -> None:
    """A connection error on one page fails that page; the crawl goes on."""

    def handler(request: httpx.Request) -> httpx.Response:
        if request.url.path == "/robots.txt":
            return httpx.Response(404)
        if request.url.path == "/broken":
            raise httpx.ConnectError("connection refused", request=request)
        return _html("<main><p>Home.</p><a href='/broken'>b</a><a href='/fine'>f</a></main>")

    async with httpx.AsyncClient(transport=httpx.MockTransport(handler)) as client:
        results = {r.url: r async for r in crawl(["http://docs.example.test/"], client=client)}
    broken = results["http://docs.example.test/broken"]
    assert broken.status == "failed"
    assert broken.reason == "ConnectError: connection refused"
    assert results["http://docs.example.test/"].status == "ok"


async def test_slow_responses_time_out(fake_dns: dict[str, str]) -> None:
    """A response slower than ``timeout`` fails that page with a timeout reason."""

    async def handler(request: httpx.Request) -> httpx.Response:
        if request.url.path == "/robots.txt":
            return httpx.Response(404)
        await asyncio.sleep(10)
        return _html("<p>late</p>")

    opts = CrawlOptions(timeout=0.2)
    async with httpx.AsyncClient(transport=httpx.MockTransport(handler)) as client:
        results = [
            r async for r in crawl(["http://docs.example.test/"], options=opts, client=client)
        ]
    assert [(r.status, r.reason) for r in results] == [("failed", "timed out after 0.2 s")]


@contextlib.contextmanager
def _serving(*servers: ProgrammableServer) -> Iterator[None]:
    """Run each programmable server on its own port (its own site) for the block."""
    with contextlib.ExitStack() as stack:
        for server in servers:
            stack.enter_context(contextlib.contextmanager(serve)(server))
        yield


def _page(body: str) -> Reply:
    return Reply(200, f"<main>{body}</main>".encode(), {"Content-Type": "text/html"})


async def test_a_start_url_redirecting_to_another_site_crawls_that_site() -> None:
    """``old`` moved to ``new``: the new site is crawled and the move is recorded, while a
    page's link to a third site is still not followed."""
    old, new, third = ProgrammableServer(), ProgrammableServer(), ProgrammableServer()
    stats = CrawlStats()
    with _serving(old, new, third):
        old.routes = {"/": Reply(301, b"", {"Location": new.url("/start")})}
        new.routes = {
            "/start": _page(f"<p>Home.</p><a href='/guide'>g</a><a href='{third.url('/')}'>x</a>"),
            "/guide": _page("<p>The guide.</p>"),
        }
        third.routes = {"/": _page("<p>Another site.</p>")}
        options = CrawlOptions(allow_private=True)
        results = [r async for r in crawl([old.url("/")], options=options, stats=stats)]
    assert {r.url for r in results if r.status == "ok"} == {new.url("/start"), new.url("/guide")}
    assert stats.start_redirects == {old.url("/"): new.url("/start")}
    assert third.hits == []


async def test_a_link_redirecting_off_site_is_still_refused() -> None:
    """Only a start URL's redirect widens the scope; a linked page's does not."""
    home, elsewhere = ProgrammableServer(), ProgrammableServer()
    with _serving(home, elsewhere):
        home.routes = {
            "/": _page("<p>Home.</p><a href='/moved'>m</a>"),
            "/moved": Reply(302, b"", {"Location": elsewhere.url("/")}),
        }
        elsewhere.routes = {"/": _page("<p>Elsewhere.</p>")}
        results = await _crawl(home.url("/"))
    assert results[home.url("/moved")].reason == f"redirects off-site to {elsewhere.url('/')}"
    assert elsewhere.hits == []


async def test_the_sitemap_of_the_site_a_start_url_redirects_to_is_read() -> None:
    """A page only the new site's sitemap lists (nothing links to it) is crawled too."""
    old, new = ProgrammableServer(), ProgrammableServer()
    with _serving(old, new):
        sitemap = (
            '<?xml version="1.0"?><urlset xmlns="http://www.sitemaps.org/schemas/sitemap/0.9">'
            f"<url><loc>{new.url('/docs/orphan')}</loc></url></urlset>"
        )
        old.routes = {"/": Reply(301, b"", {"Location": new.url("/docs/")})}
        new.routes = {
            "/docs/": _page("<p>Home.</p>"),
            "/docs/orphan": _page("<p>Linked from nowhere.</p>"),
            "/sitemap.xml": Reply(200, sitemap.encode(), {"Content-Type": "application/xml"}),
        }
        options = CrawlOptions(allow_private=True)
        results = [r async for r in crawl([old.url("/")], options=options)]
    assert {r.url for r in results if r.status == "ok"} == {
        new.url("/docs/"),
        new.url("/docs/orphan"),
    }


@pytest.mark.parametrize("made_from", ["code", "settings"])
async def test_a_crawl_sends_the_default_user_agent(
    web: ProgrammableServer, settings: Settings, made_from: str
) -> None:
    """With no User-Agent set, robots.txt and every page are requested as
    sitechat/<installed version>, by CrawlOptions() and by the default settings alike."""
    sent: list[str] = []

    def recording(reply: Reply) -> Callable[[str, Any], Reply]:
        def route(path: str, headers: Any) -> Reply:
            sent.append(headers.get("User-Agent"))
            return reply

        return route

    web.routes = {
        "/robots.txt": recording(Reply(200, b"User-agent: *\nAllow: /\n")),
        "/": recording(_page("<p>Home.</p><a href='/guide'>g</a>")),
        "/guide": recording(_page("<p>The guide.</p>")),
    }
    if made_from == "code":
        options = CrawlOptions(allow_private=True)
    else:
        options = crawl_options_from(settings, allow_private=True)
    results = [r async for r in crawl([web.url("/")], options=options)]
    assert [r.status for r in results] == ["ok", "ok"]
    expected = f"sitechat/{version('sitechat')} (+https://github.com/sitechat/sitechat)"
    assert sent == [expected] * 3
