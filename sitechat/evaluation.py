"""Measure whether retrieval finds the right pages: recall@k and MRR over a question set.

A question set is a JSONL file, one question per line::

    {"question": "How do I get my money back?", "expected": ["https://docs.example.com/billing"]}

``expected`` lists the pages (or URL prefixes: ``https://docs.example.com/api/`` accepts
every API page) that answer the question. Relative entries (``billing.html``) are resolved
against a ``base_url`` given when loading, so one file serves a site wherever it is hosted;
it must be an absolute ``http(s)://`` or ``file://`` URL. An entry's ``#fragment`` is
dropped (``billing.html#refunds`` expects the page ``billing.html``), because scoring is at
page level. Blank lines and lines starting with ``#`` are ignored.

An empty ``expected`` (``[]``) says the site does not cover the question ("How do I reset
my router?" on a notes app's docs). Such *off-topic* questions check the other half of
retrieval, the "not covered" judgement that lets the chat decline instead of answering
from unrelated passages: one is **declined** when retrieval judges it not covered. They
take no part in recall and MRR, which count the answerable questions only; an answerable
question judged not covered is counted as **refused**, since the chat would decline it.

Scoring is at page level, because a user is helped by a link to the right page whichever
of its passages was picked:

* a question is a **hit** when any of the top ``k`` passages' URLs, with the ``#fragment``
  stripped, starts with any expected entry; **recall@k** is the share of hits;
* its **reciprocal rank** is ``1 / position`` of the first such passage (0 for a miss), and
  **MRR** is their mean.

:func:`evaluate_index` also checks every expected entry against the page URLs in the
index: one that matches none (a typo, another host, a page that was never ingested) can
never be hit, and the report lists it under a warning instead of silently counting misses.

Use it to compare configurations, and in CI to refuse a re-index that made retrieval worse
(``sitechat eval QUESTIONS.jsonl --index DIR --min-recall 0.9``).
"""

from __future__ import annotations

import bisect
import json
import statistics
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol
from urllib.parse import urljoin, urlsplit

from sitechat.errors import InvalidInputError

if TYPE_CHECKING:
    from sitechat.config import Settings
    from sitechat.retrieval.hybrid import RetrievalResult

__all__ = [
    "EvalQuestion",
    "EvalReport",
    "QuestionResult",
    "Retriever",
    "UnmatchedEntry",
    "evaluate",
    "evaluate_index",
    "load_questions",
    "page_url",
    "parse_questions",
    "unmatched_entries",
]

_QUESTION_CHARS = 4000


class Retriever(Protocol):
    """Anything that retrieves like :class:`~sitechat.retrieval.hybrid.HybridRetriever`."""

    async def retrieve(
        self, query: str, k: int | None = None, where: Mapping[str, str] | None = None
    ) -> RetrievalResult: ...


@dataclass(frozen=True, slots=True)
class EvalQuestion:
    """One question and the pages (or URL prefixes) that answer it; none when the site does
    not cover it."""

    question: str
    expected: tuple[str, ...]
    line: int = 0

    @property
    def off_topic(self) -> bool:
        """Whether the site does not cover this question (``expected`` is empty)."""
        return not self.expected


@dataclass(frozen=True, slots=True)
class QuestionResult:
    """How one question fared: ``rank`` is the 1-based position of the first right passage."""

    question: EvalQuestion
    retrieved: tuple[str, ...]
    rank: int | None
    covered: bool
    milliseconds: float

    @property
    def hit(self) -> bool:
        return self.rank is not None

    @property
    def reciprocal_rank(self) -> float:
        return 1.0 / self.rank if self.rank else 0.0


@dataclass(frozen=True, slots=True)
class UnmatchedEntry:
    """An expected entry that is no page URL of the index, nor a prefix of one."""

    line: int
    expected: str


@dataclass(frozen=True, slots=True)
class EvalReport:
    """Recall@k and MRR of a question set, with every miss and what came back instead.

    ``unmatched`` lists expected entries that match no page of the index (filled when the
    index's page URLs were given): those questions cannot be hit.
    """

    k: int
    results: tuple[QuestionResult, ...]
    unmatched: tuple[UnmatchedEntry, ...] = ()

    @property
    def answerable(self) -> tuple[QuestionResult, ...]:
        """The results of questions with expected pages: what recall and MRR count."""
        return tuple(r for r in self.results if not r.question.off_topic)

    @property
    def off_topic(self) -> tuple[QuestionResult, ...]:
        """The results of questions the site does not cover (``"expected": []``)."""
        return tuple(r for r in self.results if r.question.off_topic)

    @property
    def total(self) -> int:
        """Answerable questions (off-topic ones are counted by :attr:`declined`)."""
        return len(self.answerable)

    @property
    def hits(self) -> int:
        return sum(r.hit for r in self.answerable)

    @property
    def recall(self) -> float:
        """Share of questions with a right page in the top ``k`` (0 for an empty set)."""
        return self.hits / self.total if self.total else 0.0

    @property
    def mrr(self) -> float:
        """Mean reciprocal rank of the first right passage (a miss counts 0)."""
        answerable = self.answerable
        return statistics.fmean(r.reciprocal_rank for r in answerable) if answerable else 0.0

    @property
    def misses(self) -> tuple[QuestionResult, ...]:
        return tuple(r for r in self.answerable if not r.hit)

    @property
    def declined(self) -> int:
        """Off-topic questions retrieval judged not covered, as it should."""
        return sum(not r.covered for r in self.off_topic)

    @property
    def declined_rate(self) -> float:
        """Share of off-topic questions declined (1.0 when there are none)."""
        off_topic = self.off_topic
        return self.declined / len(off_topic) if off_topic else 1.0

    @property
    def wrongly_covered(self) -> tuple[QuestionResult, ...]:
        """Off-topic questions judged covered: the chat would answer them from the passages."""
        return tuple(r for r in self.off_topic if r.covered)

    @property
    def refused(self) -> tuple[QuestionResult, ...]:
        """Answerable questions judged not covered: the chat would decline them."""
        return tuple(r for r in self.answerable if not r.covered)

    @property
    def median_ms(self) -> float:
        return statistics.median(r.milliseconds for r in self.results) if self.results else 0.0

    def meets(self, min_recall: float) -> bool:
        """Whether recall@k reaches ``min_recall`` (the CI gate of ``sitechat eval``)."""
        return self.recall >= min_recall

    def declines_enough(self, min_declined: float) -> bool:
        """Whether the share of off-topic questions declined reaches ``min_declined``."""
        return self.declined_rate >= min_declined

    def format(self, *, max_misses: int | None = None) -> str:
        """A human-readable summary: the figures, then each miss with what was retrieved."""
        lines = [
            f"recall@{self.k}: {self.recall:.3f} ({self.hits}/{self.total})   "
            f"MRR: {self.mrr:.3f}   median retrieval: {self.median_ms:.1f} ms"
        ]
        if self.misses:
            lines.append(f"misses ({len(self.misses)}):")
        for miss in _capped(self.misses, max_misses, lines):
            lines.append(_bullet(miss.question.line, miss.question.question))
            lines.append(f"      expected: {', '.join(miss.question.expected)}")
            lines.append(_got(miss.retrieved))
        if self.off_topic:
            lines.append(
                f"off-topic declined: {self.declined_rate:.3f} "
                f"({self.declined}/{len(self.off_topic)})"
            )
            wrong = self.wrongly_covered
            if wrong:
                lines.append(f"judged covered, though the site does not cover them ({len(wrong)}):")
            for result in _capped(wrong, max_misses, lines):
                lines.append(_bullet(result.question.line, result.question.question))
                lines.append(_got(result.retrieved))
        if self.refused:
            lines.append(
                f"answerable but judged not covered (the chat would decline them): "
                f"{len(self.refused)}"
            )
            for result in _capped(self.refused, max_misses, lines):
                lines.append(_bullet(result.question.line, result.question.question))
        if self.unmatched:
            lines.append(self.unmatched_warning())
            lines.extend(_bullet(entry.line, entry.expected) for entry in self.unmatched)
        return "\n".join(lines)

    def unmatched_warning(self) -> str:
        """One line saying how many expected entries match no page of the index."""
        count = len(self.unmatched)
        return (
            f"warning: {count} expected {'entry matches' if count == 1 else 'entries match'} "
            "no page URL in the index (a typo, another host or --base-url, or a page not "
            "ingested); those questions cannot be hit:"
        )

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready view, as printed by ``sitechat eval --json``."""
        return {
            "k": self.k,
            "questions": self.total,
            "hits": self.hits,
            "recall": round(self.recall, 6),
            "mrr": round(self.mrr, 6),
            "median_ms": round(self.median_ms, 3),
            "off_topic": len(self.off_topic),
            "declined": self.declined,
            "refused": len(self.refused),
            "results": [
                {
                    "question": r.question.question,
                    "line": r.question.line,
                    "expected": list(r.question.expected),
                    "retrieved": list(r.retrieved),
                    "rank": r.rank,
                    "hit": r.hit,
                    "covered": r.covered,
                    "off_topic": r.question.off_topic,
                }
                for r in self.results
            ],
            "unmatched_expected": [
                {"line": u.line, "expected": u.expected} for u in self.unmatched
            ],
        }


def _bullet(line: int, text: str) -> str:
    """One listed question (or entry), with its line in the file when known."""
    return f"  - line {line}: {text}" if line else f"  - {text}"


def _got(retrieved: Sequence[str]) -> str:
    return f"      got:      {', '.join(retrieved) if retrieved else '(nothing)'}"


def _capped(
    results: tuple[QuestionResult, ...], limit: int | None, lines: list[str]
) -> Iterable[QuestionResult]:
    """The first ``limit`` of ``results`` (all for None), noting in ``lines`` how many are
    left out once they are listed."""
    yield from results if limit is None else results[:limit]
    if limit is not None and len(results) > limit:
        lines.append(f"  … and {len(results) - limit} more")


def page_url(url: str) -> str:
    """``url`` without its ``#fragment``: the page a passage belongs to."""
    return url.split("#", 1)[0]


def _is_absolute(url: str) -> bool:
    try:
        parts = urlsplit(url)
    except ValueError:
        return False
    return bool(parts.scheme) and (bool(parts.netloc) or parts.scheme == "file")


def _check_base_url(base_url: str) -> None:
    """A base URL that is not absolute would resolve every entry to something no indexed
    page starts with, and recall would be a silent 0."""
    try:
        scheme = urlsplit(base_url).scheme
    except ValueError:
        scheme = ""
    if scheme not in ("http", "https", "file") or not _is_absolute(base_url):
        raise InvalidInputError(
            f"The base URL {base_url[:200]!r} is not an absolute URL. Give the URL the pages "
            "are indexed under: https://docs.example.com/ for a crawled site, or file:///"
            "path/to/folder/ (not a plain path) for a folder ingested from disk."
        )


def _resolve(entry: str, base_url: str | None, line: int) -> str:
    if _is_absolute(entry):
        return page_url(entry)
    if base_url is None:
        raise InvalidInputError(
            f"line {line}: the expected entry {entry!r} is a relative URL. Pass the site's "
            "base URL (--base-url) to resolve it, or write absolute URLs."
        )
    return page_url(urljoin(base_url if base_url.endswith("/") else base_url + "/", entry))


def parse_questions(
    lines: Iterable[str], *, base_url: str | None = None, source: str = "questions"
) -> list[EvalQuestion]:
    """Parse JSONL question lines (see the module docstring); errors name the line."""
    if base_url is not None:
        _check_base_url(base_url)
    questions: list[EvalQuestion] = []
    for number, raw in enumerate(lines, start=1):
        text = raw.strip()
        if not text or text.startswith("#"):
            continue
        where = f"{source}, line {number}"
        try:
            data = json.loads(text)
        except ValueError as exc:
            raise InvalidInputError(f"{where}: not valid JSON ({exc}).") from None
        if not isinstance(data, dict):
            raise InvalidInputError(
                f'{where}: expected an object like {{"question": "...", "expected": ["URL"]}}.'
            )
        question = data.get("question")
        if not isinstance(question, str) or not question.strip():
            raise InvalidInputError(f'{where}: "question" must be a non-empty string.')
        if len(question) > _QUESTION_CHARS:
            raise InvalidInputError(
                f'{where}: "question" is longer than {_QUESTION_CHARS} characters.'
            )
        expected = data.get("expected")
        if isinstance(expected, str):
            expected = [expected]
        if not isinstance(expected, list) or not all(
            isinstance(e, str) and e.strip() for e in expected
        ):
            raise InvalidInputError(
                f'{where}: "expected" must be a list of URLs or URL prefixes ([] for a '
                "question the site does not cover)."
            )
        try:
            resolved = tuple(_resolve(e.strip(), base_url, number) for e in expected)
        except InvalidInputError as exc:
            raise InvalidInputError(f"{source}, {exc}") from None
        questions.append(EvalQuestion(question.strip(), resolved, number))
    return questions


def load_questions(path: str | Path, *, base_url: str | None = None) -> list[EvalQuestion]:
    """Read a JSONL question set; relative expected URLs are resolved against ``base_url``.

    Raises :class:`~sitechat.errors.InvalidInputError` naming the file and line of the first
    bad line, or when the file holds no question.
    """
    file = Path(path)
    try:
        text = file.read_text(encoding="utf-8-sig")
    except OSError as exc:
        raise InvalidInputError(
            f"Cannot read the question set {file} ({exc.strerror}). Check the path."
        ) from None
    except UnicodeDecodeError:
        raise InvalidInputError(f"The question set {file} is not UTF-8 text.") from None
    questions = parse_questions(text.splitlines(), base_url=base_url, source=str(file))
    if not questions:
        raise InvalidInputError(
            f"The question set {file} holds no question; write one JSON object per line: "
            '{"question": "...", "expected": ["URL or URL prefix"]}.'
        )
    return questions


def unmatched_entries(
    questions: Sequence[EvalQuestion], page_urls: Iterable[str]
) -> tuple[UnmatchedEntry, ...]:
    """The expected entries that are neither a page of ``page_urls`` nor a prefix of one."""
    pages = sorted({page_url(u) for u in page_urls})
    unmatched: list[UnmatchedEntry] = []
    for question in questions:
        for expected in question.expected:
            # the pages starting with ``expected`` sort right at or after it
            at = bisect.bisect_left(pages, expected)
            if at == len(pages) or not pages[at].startswith(expected):
                unmatched.append(UnmatchedEntry(question.line, expected))
    return tuple(unmatched)


def _rank(question: EvalQuestion, urls: Sequence[str]) -> int | None:
    for position, url in enumerate(urls, start=1):
        page = page_url(url)
        if any(page.startswith(expected) for expected in question.expected):
            return position
    return None


async def evaluate(
    questions: Sequence[EvalQuestion],
    retriever: Retriever,
    k: int = 5,
    *,
    page_urls: Iterable[str] | None = None,
) -> EvalReport:
    """Ask every question of ``retriever`` (one at a time, so timings are honest) and score.

    ``retriever`` is a :class:`~sitechat.retrieval.hybrid.HybridRetriever` or anything with
    the same ``retrieve`` coroutine. With ``page_urls`` (the index's pages), expected
    entries matching none of them are listed in the report's ``unmatched``.
    """
    from sitechat.retrieval.hybrid import check_k

    check_k(k)
    unmatched = unmatched_entries(questions, page_urls) if page_urls is not None else ()
    results = []
    for question in questions:
        started = time.perf_counter()
        result = await retriever.retrieve(question.question, k)
        elapsed = (time.perf_counter() - started) * 1000
        urls = tuple(hit.chunk.link for hit in result.hits[:k])
        results.append(
            QuestionResult(question, urls, _rank(question, urls), result.covered, elapsed)
        )
    return EvalReport(k, tuple(results), unmatched)


async def evaluate_index(
    questions: Sequence[EvalQuestion],
    *,
    index: str | None = None,
    settings: Settings | None = None,
    k: int = 5,
) -> EvalReport:
    """Open the index (as ``sitechat search`` does), evaluate ``questions``, close it.

    This is what ``sitechat eval QUESTIONS.jsonl --index DIR -k 5`` runs.
    """
    from sitechat.config import Settings
    from sitechat.factories import open_store
    from sitechat.retrieval.hybrid import HybridRetriever

    cfg = settings or Settings.load()
    if index is not None:
        cfg = cfg.model_copy(update={"index": str(index)})
    store, embeddings = await open_store(cfg)
    try:
        retriever = HybridRetriever(store, embeddings, cfg.retrieval)
        return await evaluate(questions, retriever, k, page_urls=await store.urls())
    finally:
        await store.aclose()
