"""Re-ingesting a crawled site against a real local server: what is kept, what is removed."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from sitechat.embeddings.hashing import HashingEmbeddings
from sitechat.factories import open_store
from sitechat.ingest.crawl import CrawlOptions
from sitechat.ingest.pipeline import ingest_sources
from tests.ingest.conftest import Reply, html_reply

if TYPE_CHECKING:
    from sitechat.config import Settings
    from tests.ingest.conftest import ProgrammableServer


def _page(title: str, text: str, links: tuple[str, ...] = ()) -> Reply:
    anchors = "".join(f"<a href='{link}'>{link}</a> " for link in links)
    return html_reply(
        f"<html><head><title>{title}</title></head><body><main><h1>{title}</h1>"
        f"<p>{text}</p><p>{anchors}</p></main></body></html>"
    )


def _options(web: ProgrammableServer, **extra: Any) -> CrawlOptions:
    return CrawlOptions(trusted_hosts=(web.base.removeprefix("http://"),), **extra)


async def _ingest(settings: Settings, source: str, options: CrawlOptions) -> dict[str, Any]:
    store, embeddings = await open_store(settings, HashingEmbeddings(), create=True)
    try:
        summary = await ingest_sources([source], store, embeddings, settings, crawl_options=options)
    finally:
        await store.aclose()
    return summary.to_dict()


async def _stored(settings: Settings) -> set[str]:
    store, _ = await open_store(settings, HashingEmbeddings())
    try:
        return set(await store.urls())
    finally:
        await store.aclose()


def _shop(web: ProgrammableServer, items: int) -> None:
    links = tuple(f"/item/{i}" for i in range(items, 0, -1))  # newest first
    web.routes["/"] = _page("Catalogue", "All our items.", links)
    for i in range(1, items + 1):
        web.routes[f"/item/{i}"] = _page(f"Item {i}", f"Item {i} is a widget of colour shade{i}.")


async def test_a_trap_guard_cut_removes_no_page_and_is_reported(
    web: ProgrammableServer, settings: Settings
) -> None:
    """A shop outgrowing max_pattern_pages keeps its older items on re-ingest: the guard's cut
    makes the crawl incomplete, like a max_pages cut."""
    _shop(web, 8)
    first = await _ingest(settings, web.url("/"), _options(web, max_pattern_pages=10))
    assert first["crawl"]["complete"] is True
    assert first["pages"]["added"] == 9
    _shop(web, 12)
    second = await _ingest(settings, web.url("/"), _options(web, max_pattern_pages=10))
    assert second["pages"]["removed"] == 0
    assert second["crawl"]["complete"] is False
    (note,) = second["crawl"]["truncated"]
    assert note.startswith("max_pattern_pages (10) reached: 2 URL(s) like ")
    assert f"{web.base}/item/9" in note  # the host's digits are not folded
    assert await _stored(settings) >= {web.url("/item/1"), web.url("/item/2")}


async def test_pages_refused_with_401_or_403_keep_their_chunks(
    web: ProgrammableServer, settings: Settings
) -> None:
    """Stored pages answering 401 or 403 (a login wall, a WAF) on re-ingest are kept and the
    run is incomplete, while a page answering 404 is still removed."""
    web.routes.update(
        {
            "/": _page("Home", "Welcome to the handbook.", ("/pricing", "/login-help", "/old")),
            "/pricing": _page("Pricing", "The pro plan costs forty two euros per month."),
            "/login-help": _page("Login help", "Reset your password from the account page."),
            "/old": _page("Old", "An old page that will be deleted."),
        }
    )
    await _ingest(settings, web.url("/"), _options(web))
    web.routes["/pricing"] = Reply(403, b"Forbidden (rate limited)")
    web.routes["/login-help"] = Reply(401, b"Unauthorized")
    del web.routes["/old"]
    second = await _ingest(settings, web.url("/"), _options(web))
    assert second["pages"]["removed"] == 1
    assert second["crawl"]["complete"] is False
    assert "2 URL(s) could not be read" in second["crawl"]["truncated"][0]
    assert await _stored(settings) == {web.url(p) for p in ("/", "/pricing", "/login-help")}


async def test_a_link_answering_403_that_was_never_indexed_leaves_the_crawl_complete(
    web: ProgrammableServer, settings: Settings
) -> None:
    """A link to a forbidden area that never held an indexed page (an /admin link) says
    nothing about the stored pages: the re-ingest is complete and removes deleted pages."""
    web.routes.update(
        {
            "/": _page("Home", "Welcome to the shop.", ("/admin", "/offer")),
            "/admin": Reply(403, b"Forbidden"),
            "/offer": _page("Offer", "The winter offer gives ten percent off sledges."),
        }
    )
    first = await _ingest(settings, web.url("/"), _options(web))
    assert first["crawl"]["complete"] is True
    web.routes["/"] = _page("Home", "Welcome to the shop.", ("/admin",))
    del web.routes["/offer"]
    second = await _ingest(settings, web.url("/"), _options(web))
    assert second["crawl"]["complete"] is True
    assert second["pages"]["removed"] == 1
    assert await _stored(settings) == {web.url("/")}


async def test_a_page_answering_304_keeps_its_links_query_order_for_robots(
    web: ProgrammableServer, settings: Settings
) -> None:
    """On a re-ingest where the home page answers 304, its remembered links are still
    matched against robots.txt as the page wrote them, so a disallowed one stays unfetched."""
    home = _page("Home", "Home.", ("/search?q=shoes&page=2", "/list?cat=2&sort=name"))
    home.headers["ETag"] = '"home-1"'
    web.routes.update(
        {
            "/robots.txt": Reply(200, b"User-agent: *\nDisallow: /search?q=\n"),
            "/": home,
            "/search": _page("Search", "Search results."),
            "/list": _page("List", "A listing."),
        }
    )
    await _ingest(settings, web.url("/"), _options(web, use_sitemaps=False))
    second = await _ingest(settings, web.url("/"), _options(web, use_sitemaps=False))
    assert second["pages"]["not_modified"] == 1
    assert not any(hit.startswith("/search") for hit in web.hits)
    assert web.hits.count("/list?cat=2&sort=name") == 2


async def _texts(settings: Settings) -> dict[str, str]:
    store, _ = await open_store(settings, HashingEmbeddings())
    try:
        texts: dict[str, str] = {}
        for url in await store.urls():
            chunks = await store.get(list(await store.chunk_hashes(url)))
            texts[url] = " ".join(chunk.text for chunk in chunks)
        return texts
    finally:
        await store.aclose()


_ANIMALS = "aardvark bonobo caracal dugong echidna fossa gibbon hyrax ibex jerboa".split()
_NEW = "The export button now supports CSV and JSON files."


def _handbook(web: ProgrammableServer, edited: int) -> None:
    home = _page("Home", "Product handbook home.", tuple(f"/{n}" for n in _ANIMALS))
    home.headers["ETag"] = '"home"'
    web.routes["/"] = home
    for i, name in enumerate(_ANIMALS):
        extra = ""
        if i < edited:
            extra = (f"<p>{_NEW}</p>" if i < 3 else "") + f"<p>Release two notes on {name}.</p>"
        reply = html_reply(
            f"<html><head><title>{name}</title></head><body><main><h1>{name}</h1>"
            f"<p>The {name} page explains the {name} feature.</p>{extra}"
            "<p>Was this page helpful? Tell us.</p></main></body></html>"
        )
        reply.headers["ETag"] = f'"{name}-{2 if i < edited else 1}"'
        web.routes[f"/{name}"] = reply


async def test_a_re_ingest_judges_site_chrome_on_every_page_like_a_fresh_ingest(
    web: ProgrammableServer, settings: Settings, tmp_path: Any
) -> None:
    """Six of eleven pages edited, three gaining one sentence: the re-ingest keeps that
    sentence (3 of 11 pages, not chrome) as a fresh ingest does, and still strips the line
    every page carries."""
    options = _options(web, use_sitemaps=False)
    _handbook(web, edited=0)
    await _ingest(settings, web.url("/"), options)
    _handbook(web, edited=6)
    second = await _ingest(settings, web.url("/"), options)
    assert second["pages"]["not_modified"] == 5
    texts = await _texts(settings)
    fresh = settings.model_copy(update={"index": str(tmp_path / "fresh")})
    await _ingest(fresh, web.url("/"), options)
    assert texts == await _texts(fresh)
    assert sorted(u for u, text in texts.items() if _NEW in text) == [
        web.url(f"/{n}") for n in _ANIMALS[:3]
    ]
    assert not any("helpful" in text for text in texts.values())
