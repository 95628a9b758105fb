"""The whole crawl-and-ingest path against a real documentation site served over HTTP.

Debian's ``python3.11-doc`` package ships the Python documentation as 530 HTML pages
(``apt-get install python3.11-doc``); it is served here by the standard library's HTTP
server, exactly as ``python -m http.server`` would serve it.
"""

from __future__ import annotations

from sitechat.config import Settings
from sitechat.embeddings.hashing import HashingEmbeddings
from sitechat.factories import open_store
from sitechat.ingest.crawl import CrawlOptions
from sitechat.ingest.pipeline import ingest_sources
from tests.conftest import needs_python_docs

pytestmark = needs_python_docs


async def test_python_docs_ingest_and_conditional_recrawl(
    python_docs_site: str, settings: Settings
) -> None:
    """Every content page is ingested with deep links, the generated indexes and tables of
    contents are followed but not indexed, and a re-crawl is all 304s and embeds nothing."""
    host = python_docs_site.removeprefix("http://")
    options = CrawlOptions(trusted_hosts=(host,), max_pages=2000, concurrency=8)
    store, embeddings = await open_store(settings, HashingEmbeddings(), create=True)
    try:
        first = await ingest_sources(
            [python_docs_site + "/index.html"], store, embeddings, settings, crawl_options=options
        )
        assert first.pages_added >= 450
        assert first.pages_failed <= 2  # the docs link to a changelog page Debian leaves out
        link_lists = {url for url, why in first.skipped if why.startswith("link list")}
        for page in ("genindex-all.html", "genindex-A.html", "contents.html", "library/index.html"):
            assert f"{python_docs_site}/{page}" in link_lists
        indexed = await store.urls()
        assert f"{python_docs_site}/genindex-all.html" not in indexed
        assert f"{python_docs_site}/library/json.html" in indexed
        # nothing fetched twice
        assert first.requests < first.pages_added + first.pages_skipped + 20
        hits = await store.keyword_search("json.dumps serialize obj to a JSON formatted str", k=3)
        links = [hit.chunk.link for hit in hits]
        assert f"{python_docs_site}/library/json.html#json.dumps" in links

        second = await ingest_sources(
            [python_docs_site + "/index.html"], store, embeddings, settings, crawl_options=options
        )
        assert second.pages_not_modified == first.pages_added
        assert second.chunks_added == 0
        assert second.chunks_total == first.chunks_total
    finally:
        await store.aclose()
