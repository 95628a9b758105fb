"""An offline answerer that quotes the retrieved passages instead of generating text.

It needs no key, no network and no model, so a newcomer sees sitechat answer (with real
citations) in one command; it is also a deterministic stand-in for a real LLM in tests.
It reads the same prompt an LLM would get, picks the sentences that best match the
question, and cites the source each one came from.
"""

from __future__ import annotations

import math
import re
from collections import Counter
from collections.abc import AsyncIterator, Sequence, Set
from dataclasses import dataclass
from typing import TYPE_CHECKING, ClassVar

from langchain_core.messages import BaseMessage, HumanMessage

from sitechat._text import content_terms, split_sentences
from sitechat.chat.prompts import parse_prompt
from sitechat.llm.base import BaseLLMService, LLMDelta
from sitechat.models import Usage
from sitechat.retrieval.hybrid import expand_terms, keyword_terms

if TYPE_CHECKING:
    from typing_extensions import Self

    from sitechat.config import Settings

__all__ = ["ExtractiveLLMService"]

_TOKEN_RE = re.compile(r"\S+\s*|\s+")
_HOW_RE = re.compile(r"\s*(how\b|what are the steps|steps to\b|where (do|can) i\b)", re.IGNORECASE)
# A sentence that tells the reader what to do: a list item, a menu path, or an imperative
# verb first ("Download the installer…", "Run setup…") or among the usual UI verbs.
_STEP_RE = re.compile(
    r"^\s*(\d+\.|[-*])\s|→|->|\bclick\b|\bgo to\b|\bopen\b|\bchoose\b|\bselect\b|\btap\b|"
    r"\bpress\b|^\s*(?:download|run|install|enter|type|copy|add|set|use)\b",
    re.I,
)
# A question asking for an amount ("How long do you keep…", "What does the Team plan
# cost?") is answered by a number: "30 days", "$12 per member per month". Only a question
# that opens with "how much/long…" asks for one: "count how many times…" asks for a method.
_AMOUNT_RE = re.compile(r"\s*how (much|many|long|often|big|large|old|far|soon)\b", re.I)
_PRICE_RE = re.compile(r"\b(costs?|prices?|pricing|fees?)\b", re.I)
_NUMBER_RE = re.compile(r"\d")
# A sentence about the whole page ("This page lists what each plan costs…", "In this
# chapter…", "Read about…") names the page's topics, so it shares many of the question's
# words, but says where the answer is, not what it is. "This section describes…" is left
# alone: it opens the very passage that is cited with it.
_SIGNPOST_RE = re.compile(
    r"\s*(?:(?:this|the following) (?:page|guide|chapter|document|tutorial|article|manual|"
    r"how-?to)s?\b|(?:on|in) this (?:page|guide|chapter|document|tutorial|article|manual)\b|"
    r"read about\b)",
    re.I,
)
_NO_SOURCES = "The site does not seem to cover this: no passage matched the question."
# how the ingester writes a table row: its cells joined by " | ", one row a line
_CELL_SEP = " | "
_EMPTY_CELLS = frozenset({"", "-", "—", "–"})


@dataclass(frozen=True, slots=True)
class _Candidate:
    source_rank: int
    n: int
    position: int
    text: str
    score: float


class ExtractiveLLMService(BaseLLMService):
    """Answers with the most relevant sentences of the sources, each cited as ``[n]``."""

    name: ClassVar[str] = "extractive"
    needs_key: ClassVar[bool] = False
    supports_query_rewriting: ClassVar[bool] = False
    context_window = 1_000_000
    model = "extractive"

    def __init__(self, *, max_sentences: int = 4, max_chars: int = 900) -> None:
        self.max_sentences = max_sentences
        self.max_chars = max_chars

    @classmethod
    def from_settings(cls, settings: Settings) -> Self:
        return cls()

    async def _astream(self, messages: Sequence[BaseMessage]) -> AsyncIterator[LLMDelta]:
        prompt = parse_prompt(messages)
        earlier = [str(m.content) for m in messages[:-1] if isinstance(m, HumanMessage)]
        answer = self.compose(
            prompt.question, prompt.sources, context=earlier[-1:], sections=prompt.sections
        )
        output_tokens = 0
        for match in _TOKEN_RE.finditer(answer):
            output_tokens += 1
            yield LLMDelta(text=match.group(0))
        input_tokens = sum(len(str(m.content).split()) for m in messages)
        yield LLMDelta(usage=Usage(input_tokens=input_tokens, output_tokens=output_tokens))

    def compose(
        self,
        question: str,
        sources: Sequence[tuple[int, str, str, str]],
        context: Sequence[str] = (),
        sections: Sequence[str] = (),
    ) -> str:
        """The extractive answer to ``question`` from ``(n, title, url, text)`` sources;
        ``context`` holds the user's earlier questions, whose words count half (a follow-up
        such as "and how do I undo that?" names its topic only there); ``sections`` holds
        each source's heading path as the prompt gives it (``Install › Windows``), in the
        order of ``sources``."""
        if not sources:
            return _NO_SOURCES
        candidates = self._candidates(question, sources, context, sections)
        chosen = self._choose(candidates)
        if not chosen:
            first = next((c for c in candidates if c.source_rank == 0), None)
            if first is None:
                return _NO_SOURCES
            return f"The closest passage I found on the site says: {first.text} [{first.n}]"
        # the source with the best sentence first; within a source, its own order
        best = {c.n: c.score for c in reversed(chosen)}
        groups: dict[int, list[_Candidate]] = {}
        for cand in sorted(chosen, key=lambda c: (-best[c.n], c.source_rank, c.position)):
            groups.setdefault(cand.n, []).append(cand)
        paragraphs = [" ".join(c.text for c in group) + f" [{n}]" for n, group in groups.items()]
        return "\n\n".join(paragraphs)

    def _candidates(
        self,
        question: str,
        sources: Sequence[tuple[int, str, str, str]],
        context: Sequence[str] = (),
        sections: Sequence[str] = (),
    ) -> list[_Candidate]:
        """Every sentence of every source, scored against the question's words.

        A word counts by its rarity among the sentences (IDF), fully when the sentence has
        it and half when only its source's title or headings do (a step under "Deleting
        notes" is about notes without saying so). Thesaurus expansions and the earlier
        question's words count half too, and a sentence that has both what a follow-up asks
        and the earlier topic counts half again.

        A sentence is quoted only if it holds one of those words, or if the heading it sits
        under does and its headings and page title hold all of the question's own words:
        "Download the installer" under "Install › Windows" answers how to install on
        Windows. That heading is the innermost one, and only its words the page title lacks
        count for this: a page's title and its lead heading cover every sentence of it.

        Steps count half again for "how do I …" questions, and sentences with a number for
        "how much …" questions and prices. A table row quoted at the column the question
        names counts double when its label holds one of the question's words too: it is
        the cell asked for ("Price, billed monthly — Team" for the Team plan's cost). A
        sentence about the whole page ("This page lists…") counts a quarter, so it is
        quoted only when nothing says more.
        """
        own = content_terms(question)
        weights = dict.fromkeys(own, 1.0)
        for term in content_terms(" ".join(expand_terms(keyword_terms(question)))):
            weights.setdefault(term, 0.5)
        asked = set(weights)
        for term in content_terms(" ".join(context)):
            weights.setdefault(term, 0.5)
        topic = set(weights) - asked
        query = set(weights)
        split = [
            (rank, n, pos, sentence, set(content_terms(sentence)), titled, headed, cell)
            for rank, ((n, title, _url, text), section) in enumerate(
                zip(sources, sections or [""] * len(sources), strict=True)
            )
            for page_terms in [set(content_terms(title))]
            for around in [page_terms | set(content_terms(section))]
            for titled in [around & query]
            for headed in [
                around.issuperset(own)
                and bool((set(content_terms(_innermost(section))) - page_terms) & query)
            ]
            for pos, (sentence, cell) in enumerate(_units(text, asked))
        ]
        wants_steps = bool(_HOW_RE.match(question))
        wants_amount = bool(_AMOUNT_RE.match(question) or _PRICE_RE.search(question))
        document_frequency: Counter[str] = Counter()
        for *_, terms, titled, _headed, _cell in split:
            document_frequency.update((terms | titled) & query)
        total = max(len(split), 1)
        out = []
        for rank, n, pos, sentence, terms, titled, headed, cell in split:
            matched = terms & query
            score = sum(
                weights[t]
                * (1.0 if t in matched else 0.5)
                * math.log(1 + total / document_frequency[t])
                for t in matched | titled
            )
            if not matched and not headed:
                score = 0.0  # a sentence must say, or sit under, something the question asks
            elif topic and (matched | titled) & topic and (matched | titled) & asked:
                score *= 1.5  # a follow-up's answer: what it asks, about the earlier topic
            # "how do I …" is answered by steps: list items and menu paths
            if wants_steps and _STEP_RE.search(sentence):
                score *= 1.5
            # "how long …?" and "what does it cost?" are answered by an amount
            if wants_amount and _NUMBER_RE.search(sentence):
                score *= 1.5
            if cell:
                score *= 2.0  # the row and the column the question names: its very cell
            if _SIGNPOST_RE.match(sentence):
                score *= 0.25
            # earlier (better-ranked) sources and shorter, denser sentences win ties
            score *= 1.0 / (1 + 0.15 * rank)
            score /= 1 + max(len(terms) - 25, 0) / 50
            out.append(_Candidate(rank, n, pos, sentence, score))
        return out

    def _choose(self, candidates: list[_Candidate]) -> list[_Candidate]:
        best = sorted((c for c in candidates if c.score > 0), key=lambda c: -c.score)
        if not best:
            return []
        floor = best[0].score * 0.35
        chosen: list[_Candidate] = []
        length = 0
        seen: list[str] = []
        for cand in best:
            if cand.score < floor or len(chosen) >= self.max_sentences:
                break
            if length + len(cand.text) > self.max_chars and chosen:
                continue
            key = " ".join(cand.text.lower().split())
            # overlapping chunks repeat sentences, sometimes cut at the front
            if any(key in other or other in key for other in seen):
                continue
            seen.append(key)
            chosen.append(cand)
            length += len(cand.text)
        return chosen


def _innermost(section: str) -> str:
    """The last heading of a heading path as the prompt writes it (``Install › Windows``)."""
    return section.rpartition(" › ")[2]


def answer_units(text: str, asked: Set[str] = frozenset()) -> list[str]:
    """The sentences of ``text``, with each table row as a sentence of its own.

    The ingester writes a table as lines of cells joined by ``" | "``; its first line is
    taken as the header, and the first column as each row's label. A row reads
    ``label — column: value; …``, so a row quoted alone still says what its values are.
    When ``asked`` (the question's stemmed words) names some of the other columns ("the
    Team plan", "the annual price"), only those are quoted, still after the label.
    """
    return [unit for unit, _cell in _units(text, asked)]


def _units(text: str, asked: Set[str]) -> list[tuple[str, bool]]:
    """:func:`answer_units`, each told apart as the cell ``asked`` names or not: a row
    whose label holds one of its words, quoted at the columns it names."""
    if _CELL_SEP not in text:  # most passages: prose only
        return [(sentence, False) for sentence in split_sentences(text)]
    units: list[tuple[str, bool]] = []
    prose: list[str] = []
    lines = text.split("\n")
    in_code = False  # inside a ``` fence, bars are code (shell pipes), not cells
    i = 0
    while i < len(lines):
        width = lines[i].count(_CELL_SEP)
        end = i + 1
        if width and not in_code:
            while end < len(lines) and lines[end].count(_CELL_SEP) == width:
                end += 1
        if end - i >= 2:
            units.extend((sentence, False) for sentence in split_sentences("\n".join(prose)))
            prose = []
            units.extend(_table_rows(lines[i:end], asked))
        else:
            prose.append(lines[i])
            in_code ^= lines[i].lstrip().startswith("```")
        i = end
    units.extend((sentence, False) for sentence in split_sentences("\n".join(prose)))
    return units


def _table_rows(lines: Sequence[str], asked: Set[str]) -> list[tuple[str, bool]]:
    header, *rows = ([cell.strip() for cell in line.split(_CELL_SEP)] for line in lines)
    # the first column names each row ("Business", "Price, billed monthly"), whether its
    # heading is empty or says what the rows are ("Plan"): it leads every quoted row
    columns: Sequence[int] = range(1, len(header))
    named = [i for i in columns if header[i] and asked & set(content_terms(header[i]))]
    narrowed = bool(named) and len(named) < len(columns)
    if narrowed:
        columns = named
    out = []
    for cells in rows:
        pairs = "; ".join(
            f"{header[i]}: {value}" if header[i] else value
            for i in columns
            if cells[i] not in _EMPTY_CELLS
            for value in [cells[i].rstrip(".")]  # the row ends in one full stop
        )
        if not pairs:
            continue
        row = f"{cells[0]} — {pairs}" if cells[0] else pairs
        cell = narrowed and bool(asked & set(content_terms(cells[0])))
        out.append((row if row.endswith((".", "!", "?")) else f"{row}.", cell))
    return out
