"""Retrieval quality of the offline default on a second real documentation site: *The Rust
Programming Language*, as rustup's ``rust-docs`` component installs it, served over HTTP.

Its 78 questions are held out: they were written before anything ran against the book,
and nothing was tuned on them. The floors are the measured figures rounded down.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.conftest import needs_rust_book
from tests.doc_sites import RUST_BOOK
from tests.eval.docs_quality import crawl_into, expected_pages, report_for

pytestmark = needs_rust_book

QUESTIONS = "rust-book-heldout.jsonl"


@pytest.fixture(scope="module")
def book_index(tmp_path_factory: pytest.TempPathFactory, rust_book_site: str) -> tuple[Path, str]:
    """The book crawled over HTTP into an offline-default index, once per module."""
    assert RUST_BOOK is not None
    missing = sorted(page for page in expected_pages(QUESTIONS) if not (RUST_BOOK / page).is_file())
    if missing:
        pytest.skip(f"this edition of the book lacks pages the questions expect: {missing[:3]}")
    index = tmp_path_factory.mktemp("rust-book") / "index"
    return index, crawl_into(index, rust_book_site)


@pytest.mark.parametrize(
    ("mode", "recall", "mrr"),
    [("hybrid", 0.97, 0.81), ("keyword", 0.93, 0.70), ("dense", 0.92, 0.71)],
)
async def test_recall_does_not_regress(
    book_index: tuple[Path, str], mode: str, recall: float, mrr: float
) -> None:
    """Page-level recall@5 and MRR on the held-out questions stay at what was measured."""
    report = await report_for(*book_index, QUESTIONS, mode)
    assert report.recall >= recall, report.format(max_misses=5)
    assert report.mrr >= mrr, report.format(max_misses=5)


async def test_offline_default_meets_the_target_on_this_site(book_index: tuple[Path, str]) -> None:
    """The offline default finds a right page in the top 5 for at least 92% of the questions."""
    report = await report_for(*book_index, QUESTIONS, "hybrid")
    assert report.recall >= 0.92, report.format(max_misses=5)
