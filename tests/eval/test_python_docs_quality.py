"""Retrieval quality of the offline default (the ``static`` embedder and BM25) on a real
documentation site: the quality gate.

Debian's ``python3.11-doc`` (530 HTML pages) is served over HTTP and crawled like any site,
then the question sets in ``examples/eval`` are asked. The floors below are the measured
figures rounded down, so a change that makes retrieval worse fails here; the MiniLM
figures, which need a 10-20 minute ingest, come from
``tests/benchmarks/bench_retrieval_quality.py --local``.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from sitechat.evaluation import EvalReport
from tests.conftest import needs_python_docs
from tests.eval.docs_quality import crawl_into, report_for

pytestmark = needs_python_docs


@pytest.fixture(scope="module")
def docs_index(tmp_path_factory: pytest.TempPathFactory, python_docs_site: str) -> tuple[Path, str]:
    """The Python docs crawled over HTTP into an offline-default index, once per module."""
    index = tmp_path_factory.mktemp("python-docs") / "index"
    return index, crawl_into(index, python_docs_site)


async def report_for_split(docs_index: tuple[Path, str], split: str, mode: str) -> EvalReport:
    index, base = docs_index
    return await report_for(index, base, f"python-docs-{split}.jsonl", mode)


@pytest.mark.parametrize(
    ("split", "mode", "recall", "mrr"),
    [
        ("dev", "hybrid", 0.95, 0.78),
        ("heldout", "hybrid", 0.82, 0.69),
        ("heldout", "keyword", 0.71, 0.58),
        ("heldout", "dense", 0.80, 0.67),
    ],
)
async def test_recall_does_not_regress(
    docs_index: tuple[Path, str], split: str, mode: str, recall: float, mrr: float
) -> None:
    """Page-level recall@5 and MRR stay at or above what this version measured."""
    report = await report_for_split(docs_index, split, mode)
    assert report.recall >= recall, report.format(max_misses=5)
    assert report.mrr >= mrr, report.format(max_misses=5)


async def test_hybrid_beats_either_side_alone(docs_index: tuple[Path, str]) -> None:
    """Fusing dense and keyword rankings finds more right pages than either ranking alone."""
    hybrid = await report_for_split(docs_index, "dev", "hybrid")
    for mode in ("keyword", "dense"):
        assert hybrid.recall > (await report_for_split(docs_index, "dev", mode)).recall, mode


@pytest.mark.xfail(
    reason="issue 5 target for the offline default (>= 0.92 held-out recall@5) is not met: "
    "the static embedder reaches 0.865; a sum of token vectors matches MiniLM's sentence "
    "vectors only so far (see docs/retrieval.md)",
    strict=True,
)
async def test_offline_default_meets_the_issue_target(docs_index: tuple[Path, str]) -> None:
    """The offline default reaches 0.92 page-level recall@5 on the held-out questions."""
    report = await report_for_split(docs_index, "heldout", "hybrid")
    assert report.recall >= 0.92
