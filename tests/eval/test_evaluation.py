"""sitechat.evaluation: question files, page-level recall@k and MRR, the report."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Mapping, Sequence
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from sitechat.config import Settings
from sitechat.errors import InvalidInputError
from sitechat.evaluation import (
    EvalQuestion,
    EvalReport,
    evaluate,
    evaluate_index,
    load_questions,
    page_url,
    parse_questions,
)
from sitechat.models import Chunk, SearchHit
from sitechat.retrieval.hybrid import RetrievalResult

ROOT = Path(__file__).resolve().parents[2]
SAMPLE_SITE = ROOT / "examples" / "sample_site"
SAMPLE_QUESTIONS = ROOT / "examples" / "eval" / "sample-site.jsonl"


def hit(url: str) -> SearchHit:
    page, _, anchor = url.partition("#")
    chunk = Chunk(
        id=url, url=page, title="t", heading_path=(), anchor=anchor or None, text="x",
        content_hash="h",
    )  # fmt: skip
    return SearchHit(chunk, 1.0)


class ScriptedRetriever:
    """Answers each question with a fixed list of URLs."""

    def __init__(self, answers: Mapping[str, Sequence[str]]) -> None:
        self.answers = answers
        self.asked: list[tuple[str, int | None]] = []

    async def retrieve(
        self, query: str, k: int | None = None, where: Mapping[str, str] | None = None
    ) -> RetrievalResult:
        self.asked.append((query, k))
        hits = tuple(hit(u) for u in self.answers.get(query, ()))
        return RetrievalResult(query, hits, bool(hits))


def write(tmp_path: Path, *lines: str) -> Path:
    path = tmp_path / "questions.jsonl"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


# ---------------------------------------------------------------- loading


def test_loads_questions_skipping_blanks_and_comments(tmp_path: Path) -> None:
    """Each JSON line is a question; blank lines and # comments are ignored."""
    path = write(
        tmp_path,
        "# a comment",
        '{"question": "How do I pay?", "expected": ["https://d.example/billing"]}',
        "",
        '{"question": "Refunds?", "expected": "https://d.example/billing"}',
    )
    questions = load_questions(path)
    assert questions == [
        EvalQuestion("How do I pay?", ("https://d.example/billing",), 2),
        EvalQuestion("Refunds?", ("https://d.example/billing",), 4),
    ]


def test_relative_expectations_resolve_against_the_base_url(tmp_path: Path) -> None:
    """``billing.html`` with base ``https://d.example/docs`` becomes an absolute URL."""
    path = write(tmp_path, '{"question": "q", "expected": ["billing.html", "api/"]}')
    (question,) = load_questions(path, base_url="https://d.example/docs")
    assert question.expected == (
        "https://d.example/docs/billing.html",
        "https://d.example/docs/api/",
    )


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ("{not json", "line 2: not valid JSON"),
        ('["question"]', "line 2: expected an object"),
        ('{"expected": ["https://x/"]}', 'line 2: "question" must be'),
        ('{"question": "  ", "expected": ["https://x/"]}', 'line 2: "question" must be'),
        ('{"question": "q"}', 'line 2: "expected" must be'),
        ('{"question": "q", "expected": [""]}', 'line 2: "expected" must be'),
        ('{"question": "q", "expected": [3]}', 'line 2: "expected" must be'),
        ('{"question": "q", "expected": ["page.html"]}', "line 2: the expected entry"),
    ],
)
def test_bad_lines_are_reported_with_file_and_line(tmp_path: Path, line: str, message: str) -> None:
    """A malformed line raises InvalidInputError naming the file and the line number."""
    path = write(tmp_path, '{"question": "fine", "expected": ["https://x/"]}', line)
    with pytest.raises(InvalidInputError, match=message) as caught:
        load_questions(path)
    assert str(path) in str(caught.value)


def test_expected_fragments_are_dropped_like_retrieved_ones(tmp_path: Path) -> None:
    """An expected ``page.html#section`` (absolute or relative) expects the page itself."""
    path = write(
        tmp_path,
        '{"question": "q", "expected": ["https://d.example/a.html#intro", "b.html#x", "#top"]}',
    )
    (question,) = load_questions(path, base_url="https://d.example/docs/")
    assert question.expected == (
        "https://d.example/a.html",
        "https://d.example/docs/b.html",
        "https://d.example/docs/",
    )


@pytest.mark.parametrize(
    "base", ["/srv/site", "examples/sample_site/", "docs.example.com", "C:\\site", "ftp://h/x"]
)
def test_base_url_must_be_an_absolute_url(tmp_path: Path, base: str) -> None:
    """A path or host-less base URL is refused instead of silently scoring recall 0."""
    path = write(tmp_path, '{"question": "q", "expected": ["a.html"]}')
    with pytest.raises(InvalidInputError, match="not an absolute URL"):
        load_questions(path, base_url=base)


@pytest.mark.parametrize("base", ["https://d.example/docs", "file:///srv/site/", "file:/srv/site"])
def test_absolute_base_urls_are_accepted(tmp_path: Path, base: str) -> None:
    """http(s) and file URLs are accepted as base URLs."""
    path = write(tmp_path, '{"question": "q", "expected": ["a.html"]}')
    (question,) = load_questions(path, base_url=base)
    assert question.expected[0].endswith("/a.html")


def test_missing_or_empty_files_are_explained(tmp_path: Path) -> None:
    """No file, or a file without questions, is an InvalidInputError saying what to do."""
    with pytest.raises(InvalidInputError, match="Cannot read the question set"):
        load_questions(tmp_path / "nope.jsonl")
    with pytest.raises(InvalidInputError, match="holds no question"):
        load_questions(write(tmp_path, "# only a comment"))


def test_the_shipped_question_sets_are_valid() -> None:
    """Every question set in examples/eval parses, with the promised sizes."""
    base = "https://docs.python.org/3.11/"
    dev = load_questions(ROOT / "examples/eval/python-docs-dev.jsonl", base_url=base)
    held_out = load_questions(ROOT / "examples/eval/python-docs-heldout.jsonl", base_url=base)
    sample = load_questions(SAMPLE_QUESTIONS, base_url="https://lumen.example/")
    assert len(dev) + len(held_out) >= 100 and len(held_out) >= 50
    assert len(sample) >= 12
    assert not {q.question for q in dev} & {q.question for q in held_out}


# ---------------------------------------------------------------- scoring


async def test_recall_and_mrr_at_page_level() -> None:
    """A hit is any top-k passage on an expected page (fragment ignored); MRR uses its rank."""
    questions = [
        EvalQuestion("first", ("https://d/a",)),
        EvalQuestion("third", ("https://d/c",)),
        EvalQuestion("prefix", ("https://d/api/",)),
        EvalQuestion("miss", ("https://d/z",)),
    ]
    retriever = ScriptedRetriever(
        {
            "first": ["https://d/a#intro", "https://d/b"],
            "third": ["https://d/a", "https://d/b", "https://d/c#x"],
            "prefix": ["https://d/b", "https://d/api/tokens#scopes"],
            "miss": ["https://d/a", "https://d/b"],
        }
    )
    report = await evaluate(questions, retriever, k=5)
    assert [r.rank for r in report.results] == [1, 3, 2, None]
    assert report.recall == pytest.approx(0.75)
    assert report.mrr == pytest.approx((1 + 1 / 3 + 1 / 2 + 0) / 4)
    assert [m.question.question for m in report.misses] == ["miss"]
    assert retriever.asked == [(q.question, 5) for q in questions]


async def test_only_the_top_k_count() -> None:
    """A right page ranked below k is a miss."""
    retriever = ScriptedRetriever({"q": ["https://d/a", "https://d/b", "https://d/c"]})
    report = await evaluate([EvalQuestion("q", ("https://d/c",))], retriever, k=2)
    assert report.recall == 0.0
    assert report.results[0].retrieved == ("https://d/a", "https://d/b")


@pytest.mark.parametrize("k", [0, -1, 2.5, "3", True])
async def test_k_must_be_positive(k: object) -> None:
    """k below 1 or not a whole number is refused."""
    with pytest.raises(InvalidInputError, match="k must be a whole number of at least 1"):
        await evaluate([], ScriptedRetriever({}), k=k)  # type: ignore[arg-type]


async def test_report_text_and_json() -> None:
    """format() shows the figures and each miss with what came back; to_dict() is JSON-ready."""
    questions = [
        EvalQuestion("found", ("https://d/a",), 1),
        EvalQuestion("lost", ("https://d/z",), 2),
    ]
    retriever = ScriptedRetriever({"found": ["https://d/a"], "lost": ["https://d/b#s"]})
    report = await evaluate(questions, retriever, k=3)
    text = report.format()
    assert text.startswith("recall@3: 0.500 (1/2)   MRR: 0.500")
    assert "line 2: lost" in text and "https://d/b#s" in text and "https://d/z" in text
    data = json.loads(json.dumps(report.to_dict()))
    assert data["recall"] == 0.5 and data["hits"] == 1 and data["questions"] == 2
    assert data["results"][1] == {
        "question": "lost",
        "line": 2,
        "expected": ["https://d/z"],
        "retrieved": ["https://d/b#s"],
        "rank": None,
        "hit": False,
        "covered": True,
        "off_topic": False,
    }
    assert report.meets(0.5) and not report.meets(0.51)


def test_an_empty_expected_list_marks_a_question_the_site_does_not_cover(
    tmp_path: Path,
) -> None:
    """ "expected": [] loads as an off-topic question, not an error."""
    path = write(tmp_path, '{"question": "How do I reset my router?", "expected": []}')
    [question] = load_questions(path)
    assert question.off_topic and question.expected == ()


async def test_off_topic_questions_are_scored_by_whether_they_are_declined() -> None:
    """Off-topic questions count as declined when judged not covered; recall and MRR count
    only answerable ones; answerable questions judged not covered are listed as refused."""
    questions = [
        EvalQuestion("found", ("https://d/a",), 1),
        EvalQuestion("unanswered", ("https://d/b",), 2),
        EvalQuestion("router", (), 3),
        EvalQuestion("pasta", (), 4),
    ]
    retriever = ScriptedRetriever({"found": ["https://d/a"], "router": ["https://d/reset"]})
    report = await evaluate(questions, retriever, k=3)
    assert (report.total, report.hits, report.recall, report.mrr) == (2, 1, 0.5, 0.5)
    assert report.declined == 1 and report.declined_rate == 0.5
    assert [r.question.question for r in report.wrongly_covered] == ["router"]
    assert [r.question.question for r in report.refused] == ["unanswered"]
    assert report.declines_enough(0.5) and not report.declines_enough(0.51)
    text = report.format()
    assert "off-topic declined: 0.500 (1/2)" in text
    assert "line 3: router" in text and "https://d/reset" in text
    assert "answerable but judged not covered (the chat would decline them): 1" in text
    data = report.to_dict()
    assert (data["off_topic"], data["declined"], data["refused"]) == (2, 1, 1)
    assert [r["off_topic"] for r in data["results"]] == [False, False, True, True]


async def test_expected_entries_matching_no_indexed_page_are_reported() -> None:
    """With the index's page URLs, entries that match none are listed in text and JSON."""
    questions = [
        EvalQuestion("ok", ("https://d/a", "https://d/api/"), 1),
        EvalQuestion("typo", ("https://d/biling",), 2),
        EvalQuestion("host", ("https://other/a",), 3),
    ]
    pages = ["https://d/a", "https://d/api/tokens", "https://d/billing#x"]
    report = await evaluate(questions, ScriptedRetriever({}), k=3, page_urls=pages)
    assert [(u.line, u.expected) for u in report.unmatched] == [
        (2, "https://d/biling"),
        (3, "https://other/a"),
    ]
    text = report.format()
    assert "warning: 2 expected entries match no page URL in the index" in text
    assert "line 2: https://d/biling" in text and "line 3: https://other/a" in text
    assert report.to_dict()["unmatched_expected"] == [
        {"line": 2, "expected": "https://d/biling"},
        {"line": 3, "expected": "https://other/a"},
    ]
    one = await evaluate(questions[2:], ScriptedRetriever({}), k=3, page_urls=pages)
    assert "warning: 1 expected entry matches no page URL" in one.format()
    plain = await evaluate(questions, ScriptedRetriever({}), k=3)
    assert plain.unmatched == () and "warning" not in plain.format()


def test_an_empty_report_scores_zero() -> None:
    """No questions: recall and MRR are 0, not a division error."""
    report = EvalReport(5, ())
    assert (report.recall, report.mrr, report.median_ms) == (0.0, 0.0, 0.0)
    assert report.format().startswith("recall@5: 0.000 (0/0)")


@given(st.lists(st.booleans(), min_size=1, max_size=30), st.integers(1, 10))
def test_recall_counts_hits_and_mrr_never_exceeds_it(found: list[bool], k: int) -> None:
    """recall = hits / questions and 0 <= MRR <= recall, for any outcome."""
    questions = [EvalQuestion(f"q{i}", ("https://d/right",)) for i in range(len(found))]
    answers = {
        f"q{i}": ["https://d/wrong"] * (i % k) + ["https://d/right" if ok else "https://d/other"]
        for i, ok in enumerate(found)
    }
    report = asyncio.run(evaluate(questions, ScriptedRetriever(answers), k=k))
    assert report.hits == sum(found)
    assert report.recall == pytest.approx(sum(found) / len(found))
    assert 0.0 <= report.mrr <= report.recall + 1e-12


@given(st.text(max_size=40), st.text(max_size=20))
def test_page_url_drops_only_the_fragment(page: str, fragment: str) -> None:
    """page_url keeps everything before the first '#'."""
    base = page.split("#", 1)[0]
    assert page_url(f"{base}#{fragment}") == base


def test_parse_questions_accepts_any_iterable_of_lines() -> None:
    """parse_questions works on in-memory lines too, naming the given source in errors."""
    lines = ['{"question": "q", "expected": ["https://x/"]}', "oops"]
    with pytest.raises(InvalidInputError, match="inline, line 2"):
        parse_questions(lines, source="inline")


# ---------------------------------------------------------------- end to end


async def test_evaluate_index_on_the_sample_site(tmp_path: Path) -> None:
    """The offline default finds the right page for the sample site's questions."""
    import sitechat

    index = tmp_path / "index"
    settings = Settings.load(env_file=None, index=str(index))
    await sitechat.ingest(str(SAMPLE_SITE), settings=settings)
    questions = load_questions(SAMPLE_QUESTIONS, base_url=SAMPLE_SITE.resolve().as_uri() + "/")
    report = await evaluate_index(questions, index=str(index), settings=settings, k=5)
    assert report.total == len(questions)
    assert report.recall >= 0.9, report.format()
    assert report.mrr >= 0.6, report.format()
