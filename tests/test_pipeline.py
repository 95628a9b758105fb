"""Incremental ingest: only what changed is embedded; vanished pages are removed."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from sitechat.config import Settings
from sitechat.embeddings.hashing import HashingEmbeddings
from sitechat.factories import open_store
from sitechat.ingest.pipeline import ingest_sources


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


async def test_editing_one_page_reembeds_only_its_changed_chunks(site: Path, settings: Settings) -> None:
    """After editing one paragraph, only that page is updated and only its changed chunk re-embedded."""
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
