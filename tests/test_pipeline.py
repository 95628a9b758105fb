"""Incremental ingest: only what changed is embedded; vanished pages are removed."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from sitechat.config import Settings
from sitechat.embeddings.base import aembedder_info
from sitechat.embeddings.hashing import HashingEmbeddings
from sitechat.errors import IngestError, InvalidInputError, StoreError
from sitechat.factories import open_store
from sitechat.ingest.crawl import CrawlOptions
from sitechat.ingest.pipeline import ingest_sources
from sitechat.models import content_hash
from sitechat.vectorstores.faiss import FaissVectorStore
from tests.ingest.conftest import ProgrammableServer, Reply, serve


class CountingEmbeddings(HashingEmbeddings):
    """The offline embedder, counting how many texts it embedded."""

    embedded = 0

    def embed_array(self, texts):  # type: ignore[no-untyped-def]
        CountingEmbeddings.embedded += len(texts)
        return super().embed_array(texts)


@pytest.fixture
def site(tmp_path: Path, sample_site: Path) -> Path:
    """A writable copy of the sample site."""
    copy = tmp_path / "site"
    shutil.copytree(sample_site, copy)
    return copy


async def _ingest(site: Path, settings: Settings) -> tuple[dict[str, object], int]:
    CountingEmbeddings.embedded = 0
    store, embeddings = await open_store(settings, CountingEmbeddings(), create=True)
    try:
        summary = await ingest_sources([str(site)], store, embeddings, settings)
    finally:
        await store.aclose()
    return summary.to_dict(), CountingEmbeddings.embedded


async def test_editing_one_page_reembeds_only_its_changed_chunks(
    site: Path, settings: Settings
) -> None:
    """After editing one paragraph, only that page is updated and its changed chunk re-embedded."""
    first, embedded_first = await _ingest(site, settings)
    assert embedded_first == first["chunks"]["added"] > 0  # type: ignore[index]

    page = site / "billing.html"
    html = page.read_text()
    page.write_text(html.replace("we refund the full amount", "we refund the whole amount", 1))
    second, embedded_second = await _ingest(site, settings)
    assert second["pages"]["updated"] == 1  # type: ignore[index]
    assert second["pages"]["unchanged"] == first["pages"]["added"] - 1  # type: ignore[index]
    assert 1 <= embedded_second <= 2
    assert second["chunks"]["removed"] == embedded_second  # type: ignore[index]
    assert second["chunks"]["total"] == first["chunks"]["total"]  # type: ignore[index]


async def test_link_list_page_is_reported_skipped_not_indexed(
    site: Path, settings: Settings
) -> None:
    """A generated index in an ingested folder is counted as skipped, with its reason."""
    items = "".join(f'<li><a href="faq.html#q{i}">Question {i}</a></li>' for i in range(25))
    (site / "genindex.html").write_text(f"<main><h1>Index</h1><ul>{items}</ul></main>")
    summary, _ = await _ingest(site, settings)
    skipped = summary["skipped"]
    assert isinstance(skipped, list)
    assert [s["reason"][:10] for s in skipped if s["url"].endswith("genindex.html")] == [
        "link list "
    ]


async def test_deleted_page_is_removed(site: Path, settings: Settings) -> None:
    """A page gone from a re-ingested folder loses its chunks from the index."""
    first, _ = await _ingest(site, settings)
    (site / "faq.html").unlink()
    second, embedded = await _ingest(site, settings)
    assert embedded == 0
    assert second["pages"]["removed"] == 1  # type: ignore[index]
    assert second["chunks"]["total"] < first["chunks"]["total"]  # type: ignore[index]


async def test_unchanged_reingest_embeds_nothing(site: Path, settings: Settings) -> None:
    """Re-ingesting an unchanged site embeds zero chunks."""
    await _ingest(site, settings)
    second, embedded = await _ingest(site, settings)
    assert embedded == 0
    assert second["chunks"]["added"] == 0  # type: ignore[index]


# -- the same over HTTP: conditional GET on re-crawl ------------------------------------


@pytest.fixture
def web() -> Iterator[ProgrammableServer]:
    """A programmable local HTTP server (see tests/ingest/conftest.py)."""
    yield from serve(ProgrammableServer())


def _site_routes(server: ProgrammableServer, texts: dict[str, str]) -> None:
    """Serve ``texts`` as pages with ETags, all linked from the home page."""

    def page(path: str, headers: object) -> Reply:
        name = path.split("?")[0]
        if name == "/":
            links = "".join(f"<li><a href='{p}'>{p}</a></li>" for p in texts if p != "/")
            body = f"<main><h1 id='home'>Home</h1><p>{texts['/']}</p><ul>{links}</ul></main>"
        elif name in texts:
            body = (
                f"<title>{name} | Test Site</title><main><h1 id='t'>Page {name}</h1>"
                f"<p>{texts[name]}</p>"
                f"<h2 id='more'>More</h2><p>Second section of {name}, unchanged.</p></main>"
            )
        else:
            return Reply(404, b"gone", {"Content-Type": "text/plain"})
        data = body.encode()
        headers_out = {"Content-Type": "text/html", "ETag": f'"{content_hash(body)}"'}
        return Reply(200, data, headers_out)

    server.routes = {"/": page, **dict.fromkeys(("/p1", "/p2", "/p3", "/p4", "/p5"), page)}


async def _ingest_http(
    server: ProgrammableServer, settings: Settings
) -> tuple[dict[str, Any], int]:
    CountingEmbeddings.embedded = 0
    options = CrawlOptions(trusted_hosts=(server.base.removeprefix("http://"),))
    store, embeddings = await open_store(settings, CountingEmbeddings(), create=True)
    try:
        summary = await ingest_sources(
            [server.url("/")], store, embeddings, settings, crawl_options=options
        )
    finally:
        await store.aclose()
    return summary.to_dict(), CountingEmbeddings.embedded


async def test_a_crawl_state_that_cannot_be_written_is_a_store_error(
    web: ProgrammableServer, settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A read-only index directory (a read-only mount) is reported as such, naming what
    to do, rather than as an "unexpected" OSError from the crawl-state file."""
    import errno

    from sitechat.errors import StoreError
    from sitechat.ingest.state import CrawlState

    _site_routes(web, {"/": "Welcome.", "/p1": "One."})
    await _ingest_http(web, settings)

    def refuse(self: CrawlState, path: Path) -> None:
        raise OSError(errno.EROFS, "Read-only file system", str(path))

    monkeypatch.setattr(CrawlState, "save", refuse)
    with pytest.raises(StoreError, match="read-only file system, copy it to a writable"):
        await _ingest_http(web, settings)


async def test_one_unreachable_source_among_several_is_named_and_the_rest_ingested(
    web: ProgrammableServer, settings: Settings, site: Path
) -> None:
    """A failing second source is reported with its own cause (not the first source's
    404), and the third source is still ingested."""
    from sitechat.errors import FetchError

    _site_routes(web, {"/": "Welcome.", "/p1": "One."})
    home = "<main><h1>Home</h1><p>Welcome.</p><a href='/p1'>1</a><a href='/missing'>m</a></main>"
    web.routes["/"] = Reply(200, home.encode(), {"Content-Type": "text/html"})
    web.routes["/missing"] = Reply(404, b"gone", {"Content-Type": "text/plain"})
    unreachable = "http://127.0.0.1:1/"
    options = CrawlOptions(
        trusted_hosts=(web.base.removeprefix("http://"), "127.0.0.1:1"),
    )
    store, embeddings = await open_store(settings, CountingEmbeddings(), create=True)
    try:
        with pytest.raises(FetchError) as caught:
            await ingest_sources(
                [web.url("/"), unreachable, str(site)],
                store,
                embeddings,
                settings,
                crawl_options=options,
            )
        message = str(caught.value)
        assert "1 of 3 sources could not be ingested" in message
        assert f"Could not ingest any page from {unreachable}" in message
        assert "/missing" not in message  # the first source's 404 is not this one's cause
        urls = await store.urls()
        assert web.url("/") in urls
        assert any(u.startswith("file://") for u in urls)  # the folder, after the failure
    finally:
        await store.aclose()


async def test_recrawl_uses_conditional_get_and_reembeds_only_the_edit(
    web: ProgrammableServer, settings: Settings
) -> None:
    """Unchanged pages answer 304 and cost nothing; an edited page re-embeds its changed chunk
    and, fetched alone, still loses the site name its title shares with the others."""
    texts = {"/": "Welcome to the site."} | {
        f"/p{i}": f"Original text of page {i}." for i in range(1, 6)
    }
    _site_routes(web, texts)
    first, embedded_first = await _ingest_http(web, settings)
    assert first["pages"]["added"] == 6
    assert embedded_first == first["chunks"]["added"] > 0

    second, embedded_second = await _ingest_http(web, settings)
    assert embedded_second == 0
    assert web.not_modified == 6
    assert second["pages"]["not_modified"] == second["pages"]["unchanged"] == 6
    assert second["chunks"]["unchanged"] == second["chunks"]["total"] == first["chunks"]["total"]
    assert second["crawl"]["bytes_received"] < 1000

    texts["/p3"] = "Edited text of page 3."
    del texts["/p5"]
    web.not_modified = 0
    third, embedded_third = await _ingest_http(web, settings)
    assert third["pages"]["updated"] == 2  # p3 edited; the home page lost a link
    assert third["pages"]["not_modified"] == web.not_modified == 3
    assert third["pages"]["removed"] == 1
    assert embedded_third == 2  # p3's first section and the home page's list
    assert third["chunks"]["total"] == first["chunks"]["total"] - 2

    # the site name on every title is cut, also from a page re-fetched on its own
    store, _ = await open_store(settings, CountingEmbeddings())
    try:
        hits = await store.keyword_search("edited text page", k=1)
        original = await store.keyword_search("original text page 1", k=1)
    finally:
        await store.aclose()
    assert [h.chunk.title for h in hits + original] == ["/p3", "/p1"]


# -- removal only of pages known to be gone ---------------------------------------------


async def _ingest_into(
    settings: Settings,
    source: str,
    *,
    base_url: str | None = None,
    options: CrawlOptions | None = None,
) -> dict[str, Any]:
    store, embeddings = await open_store(settings, CountingEmbeddings(), create=True)
    try:
        summary = await ingest_sources(
            [source], store, embeddings, settings, base_url=base_url, crawl_options=options
        )
    finally:
        await store.aclose()
    return summary.to_dict()


async def _stored_urls(settings: Settings) -> set[str]:
    store, _ = await open_store(settings, CountingEmbeddings())
    try:
        return set(await store.urls())
    finally:
        await store.aclose()


def _options(server: ProgrammableServer, **extra: Any) -> CrawlOptions:
    return CrawlOptions(trusted_hosts=(server.base.removeprefix("http://"),), **extra)


def _html(title: str, links: tuple[str, ...] = ()) -> Reply:
    items = "".join(f"<li><a href='{link}'>{link}</a></li>" for link in links)
    body = f"<main><h1>{title}</h1><p>Text of the {title} page, long enough.</p>{items}</main>"
    return Reply(200, body.encode(), {"Content-Type": "text/html"})


def _sitemap(*locs: str, index: bool = False) -> Reply:
    tag = "sitemap" if index else "url"
    entries = "".join(f"<{tag}><loc>{loc}</loc></{tag}>" for loc in locs)
    root = "sitemapindex" if index else "urlset"
    body = f'<?xml version="1.0"?><{root} xmlns="http://www.sitemaps.org/schemas/sitemap/0.9">'
    return Reply(200, (body + entries + f"</{root}>").encode(), {"Content-Type": "text/xml"})


async def test_ingesting_one_file_of_an_indexed_folder_keeps_the_rest(
    site: Path, settings: Settings
) -> None:
    """Re-ingesting a single file of an indexed folder removes none of the folder's other pages."""
    first = await _ingest_into(settings, str(site))
    second = await _ingest_into(settings, str(site / "account.html"))
    assert second["pages"]["removed"] == 0
    assert second["chunks"]["total"] == first["chunks"]["total"]


async def test_adding_one_page_by_url_keeps_the_rest_of_the_site(
    web: ProgrammableServer, settings: Settings
) -> None:
    """Ingesting one new page of an indexed site by its URL removes none of the site's pages."""
    web.routes = {"/": _html("Home", ("/a", "/b")), "/a": _html("A"), "/b": _html("B")}
    await _ingest_into(settings, web.url("/"), options=_options(web))
    web.routes["/new"] = _html("New")
    second = await _ingest_into(settings, web.url("/new"), options=_options(web))
    assert second["pages"]["added"] == 1
    assert second["pages"]["removed"] == 0
    assert await _stored_urls(settings) == {web.url(p) for p in ("/", "/a", "/b", "/new")}


async def test_depth_cut_keeps_pages_below_it_and_is_reported(
    web: ProgrammableServer, settings: Settings
) -> None:
    """A crawl cut by max_depth removes no page below the cut and reports itself incomplete."""
    web.routes = {"/": _html("Home", ("/a",)), "/a": _html("A", ("/b",)), "/b": _html("B")}
    await _ingest_into(settings, web.url("/"), options=_options(web))
    second = await _ingest_into(settings, web.url("/"), options=_options(web, max_depth=0))
    assert second["pages"]["removed"] == 0
    assert second["crawl"]["complete"] is False
    assert "max_depth (0)" in second["crawl"]["truncated"][0]
    assert len(await _stored_urls(settings)) == 3


async def test_failing_hub_keeps_the_pages_behind_it_but_gone_pages_go(
    web: ProgrammableServer, settings: Settings
) -> None:
    """A hub answering 503 keeps the leaf under it and marks the crawl incomplete, while a
    page fetched in that crawl and answering 404 is still removed."""
    web.routes = {
        "/": _html("Home", ("/hub", "/old")),
        "/hub": _html("Hub", ("/leaf",)),
        "/leaf": _html("Leaf"),
        "/old": _html("Old"),
    }
    await _ingest_into(settings, web.url("/"), options=_options(web))
    web.routes["/hub"] = Reply(503, b"busy", {"Retry-After": "0"})
    del web.routes["/old"]
    second = await _ingest_into(settings, web.url("/"), options=_options(web, max_retries=1))
    assert second["crawl"]["complete"] is False
    assert second["pages"]["removed"] == 1
    assert await _stored_urls(settings) == {web.url(p) for p in ("/", "/hub", "/leaf")}


async def test_child_sitemap_failing_keeps_its_pages(
    web: ProgrammableServer, settings: Settings
) -> None:
    """A child sitemap answering 503 keeps the pages it listed and marks the crawl incomplete."""
    web.routes = {
        "/": _html("Home"),
        "/sitemap.xml": _sitemap(web.url("/sm_a.xml"), web.url("/sm_b.xml"), index=True),
        "/sm_a.xml": _sitemap(web.url("/a1")),
        "/sm_b.xml": _sitemap(web.url("/b1"), web.url("/b2")),
        **{p: _html(p.strip("/")) for p in ("/a1", "/b1", "/b2")},
    }
    await _ingest_into(settings, web.url("/"), options=_options(web))
    assert len(await _stored_urls(settings)) == 4
    web.routes["/sm_b.xml"] = Reply(503, b"busy", {"Retry-After": "0"})
    second = await _ingest_into(settings, web.url("/"), options=_options(web, max_retries=1))
    assert second["crawl"]["complete"] is False
    assert second["pages"]["removed"] == 0
    assert len(await _stored_urls(settings)) == 4


async def test_cut_short_sitemap_keeps_the_pages_after_the_cut(
    web: ProgrammableServer, settings: Settings
) -> None:
    """A sitemap cut off mid-file is used for what it lists but removes no page after the cut."""
    full = _sitemap(*(web.url(f"/p{i}") for i in range(4)))
    web.routes = {"/": _html("Home"), "/sitemap.xml": full}
    web.routes.update({f"/p{i}": _html(f"P{i}") for i in range(4)})
    await _ingest_into(settings, web.url("/"), options=_options(web))
    cut = full.body[: full.body.index(b"/p2")]
    web.routes["/sitemap.xml"] = Reply(200, cut, {"Content-Type": "text/xml"})
    second = await _ingest_into(settings, web.url("/"), options=_options(web))
    assert second["crawl"]["complete"] is False
    assert second["pages"]["removed"] == 0
    assert [f["url"] for f in second["failed"]] == [web.url("/sitemap.xml")]
    assert len(await _stored_urls(settings)) == 5


async def test_unreadable_file_is_reported_failed_and_kept(
    site: Path, settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An unreadable local file counts as failed, stays indexed, and the run is incomplete."""
    first = await _ingest_into(settings, str(site))
    from sitechat.ingest import local

    real_read = local._read_bytes

    def read_bytes(path: Path, max_bytes: int) -> bytes | None:
        if path.name == "faq.html":
            raise PermissionError(13, "Permission denied", str(path))
        return real_read(path, max_bytes)

    monkeypatch.setattr(local, "_read_bytes", read_bytes)
    second = await _ingest_into(settings, str(site))
    assert second["pages"]["failed"] == 1
    assert second["failed"][0]["url"].endswith("/faq.html")
    assert second["pages"]["removed"] == 0
    assert second["crawl"]["complete"] is False
    assert second["chunks"]["total"] == first["chunks"]["total"]


async def test_base_url_owns_whole_path_segments_only(
    site: Path, tmp_path: Path, settings: Settings
) -> None:
    """A folder ingested under https://d.example.com/v1 never removes pages under …/v10/."""
    await _ingest_into(settings, str(site), base_url="https://d.example.com/v10")
    v10 = await _stored_urls(settings)
    other = tmp_path / "other"
    other.mkdir()
    (other / "intro.md").write_text("# Intro\n\nThe first version of the product.\n")
    second = await _ingest_into(settings, str(other), base_url="https://d.example.com/v1")
    assert second["pages"]["removed"] == 0
    assert await _stored_urls(settings) == v10 | {"https://d.example.com/v1/intro.md"}


async def test_local_files_over_max_bytes_per_page_are_skipped(
    tmp_path: Path, settings: Settings
) -> None:
    """SITECHAT_INGEST__MAX_BYTES_PER_PAGE bounds files read from a folder, as it does pages."""
    folder = tmp_path / "docs"
    folder.mkdir()
    (folder / "page.html").write_text("<main><h1>Page</h1><p>Small page.</p></main>")
    (folder / "big.txt").write_text("word " * 1000)
    ingest = settings.ingest.model_copy(update={"max_bytes_per_page": 2048})
    summary = await _ingest_into(settings.model_copy(update={"ingest": ingest}), str(folder))
    assert summary["pages"]["added"] == 1
    reasons = {s["url"].rsplit("/", 1)[-1]: s["reason"] for s in summary["skipped"]}
    assert reasons["big.txt"] == "too large (5000 bytes, more than 2048)"


# -- what counts as a source ---------------------------------------------------------------


@pytest.mark.parametrize("source", ["", "   "])
async def test_empty_source_is_refused_not_read_as_the_current_directory(
    tmp_path: Path, settings: Settings, source: str
) -> None:
    """An empty or blank source raises InvalidInputError instead of indexing the cwd."""
    (tmp_path / "stray.html").write_text("<main><h1>Stray</h1><p>Not meant to be indexed.</p>")
    store, embeddings = await open_store(settings, CountingEmbeddings(), create=True)
    try:
        with pytest.raises(InvalidInputError, match=r"use \. for the current directory"):
            await ingest_sources([source], store, embeddings, settings)
        assert await store.count() == 0
    finally:
        await store.aclose()


async def test_path_sources_are_read_like_strings(site: Path, settings: Settings) -> None:
    """A pathlib.Path source is ingested like its string form."""
    store, embeddings = await open_store(settings, CountingEmbeddings(), create=True)
    try:
        summary = await ingest_sources([site], store, embeddings, settings)
    finally:
        await store.aclose()
    assert summary.pages_added > 0


@pytest.mark.parametrize("source", [None, b"docs", 3])
async def test_a_source_that_is_not_text_or_a_path_is_named(
    settings: Settings, source: object
) -> None:
    """A source that is neither str nor Path raises InvalidInputError naming its type."""
    store, embeddings = await open_store(settings, CountingEmbeddings(), create=True)
    try:
        with pytest.raises(InvalidInputError, match=type(source).__name__):
            await ingest_sources([source], store, embeddings, settings)  # type: ignore[list-item]
    finally:
        await store.aclose()


async def test_faiss_open_path_refuses_an_empty_path(tmp_path: Path) -> None:
    """FaissVectorStore.open_path("") raises InvalidInputError and creates nothing in the cwd."""
    info = await aembedder_info(CountingEmbeddings())
    with pytest.raises(InvalidInputError, match="index path is empty"):
        await FaissVectorStore.open_path("", info, create=True)
    assert os.listdir(tmp_path) == []


@pytest.mark.parametrize("source", ["", " ", ["docs", ""]])
async def test_public_ingest_refuses_an_empty_source_before_opening_the_index(
    tmp_path: Path, source: str | list[str]
) -> None:
    """sitechat.ingest('') raises InvalidInputError and creates no index directory."""
    import sitechat

    with pytest.raises(InvalidInputError, match=r"use \. for the current directory"):
        await sitechat.ingest(source, index=str(tmp_path / "index"))
    assert os.listdir(tmp_path) == []


async def test_public_ingest_refuses_a_missing_path_before_opening_the_index(
    tmp_path: Path,
) -> None:
    """A local source that does not exist is named, and no empty index is left behind."""
    import sitechat

    missing = tmp_path / "no-such-folder"
    with pytest.raises(
        IngestError, match="no-such-folder' is neither an http\\(s\\) URL nor an existing"
    ):
        await sitechat.ingest(missing, index=str(tmp_path / "index"))
    assert os.listdir(tmp_path) == []


@pytest.mark.parametrize("sources", [[], ()])
async def test_public_ingest_refuses_no_sources_at_all(tmp_path: Path, sources: list[str]) -> None:
    """An empty list of sources raises InvalidInputError instead of building an empty index."""
    import sitechat

    with pytest.raises(InvalidInputError, match="No source was given"):
        await sitechat.ingest(sources, index=str(tmp_path / "index"))
    assert os.listdir(tmp_path) == []


async def test_a_first_ingest_that_fails_leaves_no_empty_index(site: Path, tmp_path: Path) -> None:
    """An ingest that fails into a new index removes it (an empty index would answer "not
    covered" to everything); a failure on an existing index leaves that index alone."""
    import sitechat

    unreachable = "http://127.0.0.1:1/"  # nothing listens on port 1: refused at once
    index = tmp_path / "index"
    with pytest.raises(IngestError, match="Could not ingest any page"):
        await sitechat.ingest(unreachable, index=str(index), allow_private=True)
    assert not index.exists()
    await sitechat.ingest(site, index=str(index))
    with pytest.raises(IngestError):
        await sitechat.ingest(unreachable, index=str(index), allow_private=True)
    assert await sitechat.search("install", index=str(index), k=1)


async def test_a_failed_ingest_keeps_the_index_another_process_filled_meanwhile(
    web: ProgrammableServer, site: Path, tmp_path: Path
) -> None:
    """While one ingest fetches into a new index, another process fills that index: the
    first fails on writing and leaves the other's finished index alone (it deleted it)."""
    import sitechat

    web.routes = {"/": _html("Home")}
    index = tmp_path / "index"
    exe = Path(sys.executable).parent / "sitechat"
    other: list[subprocess.CompletedProcess[str]] = []

    def meanwhile(phase: str, done: int, total: int | None) -> None:
        if not other:  # runs while this ingest fetches, after it created the index
            command = [str(exe), "ingest", str(site), "--index", str(index)]
            other.append(subprocess.run(command, capture_output=True, text=True, timeout=300))

    with pytest.raises(StoreError, match="changed by another process"):
        await sitechat.ingest(
            web.url("/"), index=str(index), allow_private=True, progress=meanwhile
        )
    assert other[0].returncode == 0, other[0].stderr
    check = await sitechat.verify_index(str(index))
    assert check.ok and check.chunks > 0, check.to_dict()


async def test_public_ingest_accepts_a_path(site: Path, tmp_path: Path) -> None:
    """sitechat.ingest(Path(...)) reads the folder like its string form."""
    import sitechat

    summary = await sitechat.ingest(site, index=str(tmp_path / "index"))
    assert summary.pages_added > 0


# -- a start URL that redirects ----------------------------------------------------------


def _redirect(location: str) -> Reply:
    return Reply(301, b"", {"Location": location})


async def test_a_start_url_that_redirects_owns_where_it_leads(
    web: ProgrammableServer, settings: Settings
) -> None:
    """``/docs`` moved to ``/v2/``: a page gone from ``/v2/`` is removed on the next crawl."""
    web.routes = {
        "/docs": _redirect(web.url("/v2/")),
        "/v2/": _html("Home", ("/v2/a", "/v2/b")),
        "/v2/a": _html("A"),
        "/v2/b": _html("B"),
    }
    await _ingest_into(settings, web.url("/docs"), options=_options(web))
    assert await _stored_urls(settings) == {web.url(p) for p in ("/v2/", "/v2/a", "/v2/b")}
    web.routes["/v2/"] = _html("Home", ("/v2/a",))
    del web.routes["/v2/b"]
    second = await _ingest_into(settings, web.url("/docs"), options=_options(web))
    assert second["crawl"]["complete"] is True
    assert second["crawl"]["redirects"] == [{"from": web.url("/docs"), "to": web.url("/v2/")}]
    assert second["pages"]["removed"] == 1
    assert await _stored_urls(settings) == {web.url(p) for p in ("/v2/", "/v2/a")}


async def test_a_redirecting_start_url_does_not_claim_the_rest_of_its_new_site(
    web: ProgrammableServer, settings: Settings
) -> None:
    """Pages of the site outside both the start path and where it leads are kept."""
    web.routes = {"/blog/": _html("Blog"), "/docs": _redirect(web.url("/v2/")), "/v2/": _html("V2")}
    await _ingest_into(settings, web.url("/blog/"), options=_options(web))
    second = await _ingest_into(settings, web.url("/docs"), options=_options(web))
    assert second["pages"]["removed"] == 0
    assert await _stored_urls(settings) == {web.url("/blog/"), web.url("/v2/")}


def test_the_crawl_state_file_gets_the_umask_permissions(tmp_path: Path) -> None:
    """crawl-state.json is readable like the index's other files (0644 under umask 022),
    not 0600 as a bare temporary file would be."""
    import stat

    from sitechat.ingest import state

    if state._FILE_MODE == 0o600:
        pytest.skip("this process's umask itself gives 0600")
    path = tmp_path / "index" / "crawl-state.json"
    state.CrawlState("fingerprint").save(path)
    assert stat.S_IMODE(path.stat().st_mode) == state._FILE_MODE


async def test_a_failed_first_ingest_into_a_directory_made_for_it_keeps_that_directory(
    tmp_path: Path,
) -> None:
    """`mkdir idx` then an ingest that fetches nothing: the empty index goes, the empty
    directory the user made stays."""
    import sitechat

    index = tmp_path / "idx"
    index.mkdir()
    with pytest.raises(IngestError):
        await sitechat.ingest("http://127.0.0.1:9/", index=str(index), allow_private=True)
    assert index.is_dir() and list(index.iterdir()) == []


def test_a_crawl_state_from_the_previous_format_is_still_read(tmp_path: Path) -> None:
    """A version-1 crawl-state.json (no paragraph hashes) keeps its validators and links."""
    import json

    from sitechat.ingest import state

    path = tmp_path / "crawl-state.json"
    path.write_text(
        json.dumps(
            {
                "format": state._FORMAT,
                "version": 1,
                "fingerprint": "f",
                "urls": ["https://d/a", "https://d/b"],
                "pages": [[0, 0, '"etag-a"', None, "hash-a", [1]]],
            }
        ),
        encoding="utf-8",
    )
    known = state.CrawlState.load(path, "f").pages["https://d/a"]
    assert known.etag == '"etag-a"' and known.links == ("https://d/b",)
    assert state._VERSION == 2  # written files say so, and an older sitechat skips them
