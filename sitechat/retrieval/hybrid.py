"""Hybrid retrieval: dense and keyword search, fused page by page, then diversified.

Dense search finds paraphrases, keyword search finds exact names (``os.path.join``, an
error message); reciprocal rank fusion combines them without calibrating one score
against the other. How the pieces fit, and why (figures in ``docs/src/retrieval.md``):

1. **Query terms.** The keyword side gets the question's words minus stopwords and
   question filler ("how do I", "please"), unstemmed (the index stems them its own way),
   plus a few expansions from a small thesaurus of words users and docs spell
   differently (folder/directory, regex/regular expression), and the question's
   versions and paths whole (``2.3.1``), which the store matches as phrases. Expansions
   only widen the keyword match; the dense side embeds the question as asked.
2. **Two pools.** Each side returns ``max(4k, 50)`` passages: deep enough for a page's
   evidence to add up, shallow enough to stay in a few milliseconds.
3. **Page-level fusion.** A user is helped by the right page, and a page's relevance is
   spread over its passages. Each ranked list is read as a ranking of pages (a page's
   rank is that of its best passage): the page gains ``w / (60 + page rank)`` from each
   list, plus ``0.4`` of that for each further passage of it in the list, so a page that
   matches in many places beats one lucky passage of a page about something else. ``w``
   is 1 for keyword search and the embedder's ``fusion_weight`` (default 1) for dense.
   A further passage counts only as evidence of its own: a keyword match, or a dense
   similarity of at least ``EVIDENCE_SIMILARITY`` times the embedder's calibrated
   ``relevance_threshold``. On a small site the dense pool holds every passage, and a
   page of many short sections would otherwise gain for each whatever the question.
   Nor do as many of a page's further passages as its size alone would put in the list
   (``CHANCE_EVIDENCE`` of ``n`` times its share of the store, from
   ``VectorStore.page_sizes``): a changelog holding a sixth of a site matches a few words
   of any question in dozens of entries.
4. **Passages from pages.** Pages are taken in fused order; within a page, passages by
   their own fused rank. A page's second passage scores 0.3 of its first and competes
   with the next pages' best ones (``sitechat.retrieval.fusion``).
5. **Re-ranking.** A passage scorer re-orders the best ``rerank_depth`` fused passages:
   their fused order and their order by its score are fused again, page by page
   (``sitechat.retrieval.rerank``). The scorer is the embedder's own when it has one (the
   offline ``static`` one matches token by token), else the same token table's
   (``TokenReranker``, unless ``token_rerank`` is off): it needs only the text.
6. **Exact names lead their page.** Within each page, passages holding one of the
   question's versions or paths verbatim (:func:`exact_compounds`) move ahead of the
   page's others; pages keep their places (``sitechat.retrieval.fusion.exact_first``).
7. **Diversity.** ``max_per_page`` caps how many passages one page may fill.

``covered`` is judged on each returned passage's own evidence, never on fused scores
(which are ranks): a dense similarity at or above the embedder's calibrated
``relevance_threshold`` (or ``min_score``), or a passage holding at least
``min_keyword_coverage`` of the question's content words.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from langchain_core.embeddings import Embeddings

from sitechat._text import STOPWORDS, compound_words, content_terms, stem
from sitechat.config import RetrievalSettings
from sitechat.embeddings.static import TokenReranker
from sitechat.errors import InvalidInputError, ProviderError
from sitechat.models import Chunk, SearchHit
from sitechat.retrieval.fusion import (
    diversify,
    exact_first,
    fuse_by_page,
    reciprocal_rank_fusion,
)
from sitechat.retrieval.rerank import PassageScorer, rerank_fused
from sitechat.vectorstores.base import PageSizes, VectorStore

__all__ = [
    "EVIDENCE_SIMILARITY",
    "SUMMARY_LEAD_CHARS",
    "HybridRetriever",
    "RetrievalResult",
    "check_k",
    "diversify",
    "expand_terms",
    "fuse_by_page",
    "keyword_terms",
    "reciprocal_rank_fusion",
]

MIN_POOL = 50
# Shared by every retriever: the table it reads is loaded once per process.
_TOKEN_RERANKER = TokenReranker()
# A dense hit is evidence for its page (step 3) from this share of the relevance threshold
# up: 0.3 for the offline default. Chosen on the Python tuning questions, where 0.6 keeps
# every figure as it was and higher shares lose questions (docs/src/retrieval.md).
EVIDENCE_SIMILARITY = 0.6
# A page's lead (the text under its top heading alone) this short is a summary of the page
# ("This page lists what each plan costs, how payments and invoices work…"): it finds the
# page, but the answer is in a section below it. 400 characters is a paragraph or two; the
# Python docs' module introductions run longer, and the passages the chat answers from for
# the Python questions are the same with or without the rule (docs/src/retrieval.md).
SUMMARY_LEAD_CHARS = 400

# Contraction leftovers ("I'm" -> "m") and question filler that no page is about.
_QUERY_FILLER = STOPWORDS | frozenset(
    "m s t d ll re ve don doesn didn isn aren way ways possible easiest thing things "
    "someone something anything".split()
)
_WORD_RE = re.compile(r"[^\W_]+", re.UNICODE)
_EXACT_RE = re.compile(r"[./_:]|\d")

# Words users type and the words documentation uses for the same thing. Deliberately
# small and generic: every entry adds matches, so each must rarely mislead. ``word =
# phrase`` is the same thing said another way (an abbreviation, a spelling): a passage
# with the phrase covers the word (see ``_covered``). ``word: a, b`` only widens the
# keyword search to related words. Commas separate alternatives.
_THESAURUS_TEXT = """
folder = directory | folders = directories | subfolder = subdirectory
subfolders = subdirectories | regex = regular expression | regexp = regular expression
regexes = regular expressions | delete = remove | erase: delete, remove | kill: terminate
uninstall: remove | args = arguments | arg = argument | params = parameters
param = parameter | config = configuration | settings: configuration | env = environment
dict = dictionary | docs = documentation | repo = repository | auth = authentication
login = sign in | temp = temporary | tmp = temporary | scratch: temporary
async = asynchronous | app = application | db = database | cpu = processor
cpus = processors | cores: processors | parallel: concurrent | concurrently: parallel
slow: performance | crash: error | error: exception | errors: exceptions | bug: error
setup: install | upgrade: update | price: pricing | cost: pricing | money: refund
phone: mobile | mac = macos | 2fa = two factor authentication | terminal: command line
cli = command line | console: terminal | unzip: extract | decompress: extract
compress: archive | zip: archive | download: fetch | fetch: download | website: web
webpage = web page | pause: sleep | wait: sleep | timestamp: epoch | duplicate: copy
clone: copy | undo: restore, revert, cancel | recover: restore | undelete: restore
"""


@dataclass(frozen=True, slots=True)
class _Entry:
    alternatives: tuple[str, ...]
    same: bool  # the alternatives say the same thing, so they cover the word too


def _thesaurus(text: str) -> dict[str, _Entry]:
    entries: dict[str, _Entry] = {}
    for entry in text.replace("\n", "|").split("|"):
        if not entry.strip():
            continue
        same = "=" in entry
        word, alternatives = entry.split("=" if same else ":", 1)
        entries[word.strip()] = _Entry(
            tuple(a.strip() for a in alternatives.split(",") if a.strip()), same
        )
    return entries


_THESAURUS = _thesaurus(_THESAURUS_TEXT)


@dataclass(frozen=True, slots=True)
class RetrievalResult:
    """The hits for one query, best first; ``covered`` is False when none is relevant enough."""

    query: str
    hits: tuple[SearchHit, ...]
    covered: bool
    supporting: tuple[SearchHit, ...] = ()
    """The best page's next passages that ``hits`` left out to make room for other pages.

    Ranking favours distinct pages, which finds the right page more often; an answer, though,
    often needs two passages of that page (a section's summary, then its steps), and three
    when the first is the page's short lead, which says what the page covers rather than
    what it says. The chat service shows these next to the best page's first passage: see
    :attr:`context`.
    """

    @property
    def context(self) -> tuple[SearchHit, ...]:
        """The passages an answer is built from: ``hits``, with ``supporting`` next to the
        first one in place of the weakest, so there are as many as ``hits``; none when
        the query is not covered. From three hits up, the second page's best passage
        always stays: a lead's two further passages would otherwise fill a context of
        three with one page."""
        if not self.covered:
            return ()
        if not self.supporting:
            return self.hits
        room = max(1, len(self.hits) - 2)
        return (self.hits[:1] + self.supporting[:room] + self.hits[1:])[: len(self.hits)]


def keyword_terms(query: str) -> list[str]:
    """The words of ``query`` worth matching: lower-cased, unstemmed, no stopwords or filler;
    then its :func:`exact_compounds` whole (``2.3.1``, ``v1/users``), which a store
    searches as phrases, unless every part of one is filler."""
    seen: dict[str, None] = {}
    for word in _WORD_RE.findall(query.lower()):
        if word not in _QUERY_FILLER:
            seen.setdefault(word, None)
    for compound in exact_compounds(query):
        if any(part not in _QUERY_FILLER for part in _WORD_RE.findall(compound)):
            seen.setdefault(compound, None)
    return list(seen)


def exact_compounds(query: str) -> list[str]:
    """The compounds of ``query`` that name one thing exactly: a version (``2.3.1``), a
    path (``v1/users``), a dotted or snake_case name. Hyphenated words (``two-factor``,
    ``command-line``) are left out: documents spell them with and without the hyphen, and
    their parts are searched anyway."""
    return [c for c in compound_words(query) if _EXACT_RE.search(c)]


def expand_terms(terms: Sequence[str]) -> list[str]:
    """Thesaurus expansions of ``terms`` that are not already among them."""
    present = set(terms)
    extra: dict[str, None] = {}
    for term in terms:
        entry = _THESAURUS.get(term)
        for word in " ".join(entry.alternatives).split() if entry else ():
            if word not in present:
                extra.setdefault(word, None)
    return list(extra)


def _supporting(
    fused: Sequence[SearchHit], hits: Sequence[SearchHit], extra: int = 1
) -> tuple[SearchHit, ...]:
    """Further passages of the top page, in fused order, not already in hits, so that the
    page has ``1 + extra`` passages in all; one more when its first is a short lead."""
    if not hits:
        return ()
    top = hits[0].chunk
    page = [h.chunk for h in fused if h.chunk.url == top.url and h.chunk.id != top.id]
    wanted = 1 + extra + _is_summary_lead(top, page)
    taken = {h.chunk.id for h in hits}
    on_page = sum(1 for h in hits if h.chunk.url == top.url)
    if on_page >= wanted:
        return ()
    found = [h for h in fused if h.chunk.url == top.url and h.chunk.id not in taken]
    return tuple(found[: wanted - on_page])


def _is_summary_lead(chunk: Chunk, others: Sequence[Chunk]) -> bool:
    """Whether ``chunk`` is its page's lead, the text under the top heading alone (every
    other passage found of its page sits under that heading too), and short enough to be
    a summary of the page (:data:`SUMMARY_LEAD_CHARS`).

    A page whose top heading is outside its main content, or a Markdown file that starts
    at ``##``, has several sections under one heading each: those are siblings, and none
    is the lead."""
    path = chunk.heading_path
    if len(path) > 1 or len(chunk.text) > SUMMARY_LEAD_CHARS:
        return False
    return all(
        len(o.heading_path) > len(path) and o.heading_path[: len(path)] == path for o in others
    )


def check_k(k: object) -> int:
    """``k`` if it is a whole number of at least 1; else :class:`InvalidInputError`.

    ``0`` is not "the default" and a negative ``k`` is not "all but the last": both are
    refused, like ``2.5``, ``"3"`` and ``True``.
    """
    if isinstance(k, bool) or not isinstance(k, int) or k < 1:
        raise InvalidInputError(f"k must be a whole number of at least 1, got {k!r}.")
    return k


class HybridRetriever:
    """Finds the passages that answer a query, from one store and its embedder."""

    def __init__(
        self,
        store: VectorStore,
        embeddings: Embeddings,
        settings: RetrievalSettings | None = None,
    ) -> None:
        self.store = store
        self.embeddings = embeddings
        self.settings = settings or RetrievalSettings()

    async def retrieve(
        self, query: str, k: int | None = None, where: Mapping[str, str] | None = None
    ) -> RetrievalResult:
        """Search for ``query``; ``covered`` tells whether anything relevant was found.

        ``k`` defaults to ``settings.top_k``; anything but a whole number of at least 1
        raises :class:`~sitechat.errors.InvalidInputError`.
        """
        if not isinstance(query, str):
            raise InvalidInputError(f"The query must be text (str), not {type(query).__name__}.")
        k = self.settings.top_k if k is None else check_k(k)
        pool = max(k * 4, MIN_POOL)
        mode = self.settings.mode
        terms = keyword_terms(query)
        keywords = " ".join([*terms, *expand_terms(terms)])
        use_keyword = mode != "dense" and self.store.supports_keyword_search and bool(keywords)
        use_dense = mode != "keyword" or not self.store.supports_keyword_search

        async def dense() -> list[SearchHit]:
            if not use_dense:
                return []
            vector = await self.embeddings.aembed_query(query)
            return await self.store.search(vector, pool, where)

        async def keyword() -> list[SearchHit]:
            if not use_keyword:
                return []
            return await self.store.keyword_search(keywords, pool, where)

        dense_hits, keyword_hits = await asyncio.gather(dense(), keyword())
        evidence = self._evidence(dense_hits, keyword_hits)
        # a filter keeps part of the store: its pages' shares of the whole mean nothing
        sizes = None if where else await self._page_sizes(dense_hits, keyword_hits)
        fused = fuse_by_page(
            [dense_hits, keyword_hits], [self._dense_weight(), 1.0], evidence=evidence, sizes=sizes
        )
        scorer = self._scorer() if use_dense else None
        if scorer is not None:
            if isinstance(scorer, TokenReranker) and not scorer.loaded:
                await asyncio.to_thread(scorer.load)  # ~0.1 s once: off the event loop
            fused = self._reranked(query, fused, scorer, evidence, sizes)
        fused = exact_first(fused, exact_compounds(query))
        hits = diversify(fused, k, self.settings.max_per_page)
        similarity = {h.chunk.id: h.score for h in dense_hits}
        covered = self._covered(query, hits, similarity)
        return RetrievalResult(
            query=query, hits=tuple(hits), covered=covered, supporting=_supporting(fused, hits)
        )

    def _evidence(
        self, dense_hits: Sequence[SearchHit], keyword_hits: Sequence[SearchHit]
    ) -> set[str] | None:
        """The passages that may add to their page's score (see step 3); None, all of
        them, when the embedder has no calibrated threshold to judge similarity by."""
        threshold = self._dense_threshold()
        if threshold is None:
            return None
        floor = threshold * EVIDENCE_SIMILARITY
        found = {hit.chunk.id for hit in keyword_hits}
        found.update(hit.chunk.id for hit in dense_hits if hit.score >= floor)
        return found

    async def _page_sizes(
        self, dense_hits: Sequence[SearchHit], keyword_hits: Sequence[SearchHit]
    ) -> PageSizes | None:
        """The sizes of the pages found (see step 3), when the store can tell."""
        pages = {hit.chunk.url: None for hits in (dense_hits, keyword_hits) for hit in hits}
        return await self.store.page_sizes(list(pages)) if len(pages) > 1 else None

    def _reranked(
        self,
        query: str,
        fused: list[SearchHit],
        scorer: PassageScorer,
        evidence: set[str] | None = None,
        sizes: PageSizes | None = None,
    ) -> list[SearchHit]:
        """The top ``rerank_depth`` passages re-ordered by ``scorer`` (see
        ``sitechat.retrieval.rerank``)."""
        depth = self.settings.rerank_depth
        if len(fused) < 2:
            return fused
        head = [hit.chunk for hit in fused[:depth]]
        scores = scorer.score_passages(query, head)
        if scores is not None and len(scores) != len(head):
            raise ProviderError(
                f"{type(scorer).__name__}.score_passages returned {len(scores)} scores for "
                f"{len(head)} passages. Fix the embedder, or turn re-ranking off with "
                "SITECHAT_RETRIEVAL__RERANK_DEPTH=0."
            )
        return rerank_fused(fused, scores, depth, evidence, sizes)

    def _scorer(self) -> PassageScorer | None:
        """The embedder's passage scorer, else the bundled token table's (step 5); None
        when re-ranking is off."""
        if self.settings.rerank_depth < 2:
            return None
        if isinstance(self.embeddings, PassageScorer):
            return self.embeddings
        return _TOKEN_RERANKER if self.settings.token_rerank else None

    def _dense_weight(self) -> float:
        """How much the embedder's ranking counts against keyword search's (1.0: as much).

        An embedder may declare ``fusion_weight``: a lexical one (the offline default)
        ranks with less insight than BM25 and says so, a neural one keeps 1.0.
        """
        declared = getattr(self.embeddings, "fusion_weight", None)
        if isinstance(declared, (int, float)) and not isinstance(declared, bool) and declared > 0:
            return float(declared)
        return 1.0

    def _dense_threshold(self) -> float | None:
        if self.settings.min_score is not None:
            return self.settings.min_score
        calibrated = getattr(self.embeddings, "relevance_threshold", None)
        return float(calibrated) if isinstance(calibrated, (int, float)) else None

    def _covered(
        self, query: str, hits: Sequence[SearchHit], similarity: Mapping[str, float]
    ) -> bool:
        """Whether any hit is relevant: similar enough, or sharing enough of the query's words.

        Fused scores are ranks, not relevance, so relevance is judged on each hit's own
        evidence. Embedders without a calibrated threshold are judged by words alone.
        """
        if not hits:
            return False
        terms = set(content_terms(query))
        said_otherwise = _said_otherwise(query, terms)
        threshold = self._dense_threshold()
        for hit in hits:
            score = similarity.get(hit.chunk.id)
            if threshold is not None and score is not None and score >= threshold:
                return True
            if terms:
                chunk = hit.chunk
                words = set(content_terms(f"{chunk.title} {chunk.heading} {chunk.text}"))
                found = terms & words
                found.update(
                    term
                    for term, phrases in said_otherwise.items()
                    if any(phrase <= words for phrase in phrases)
                )
                if len(found) / len(terms) >= self.settings.min_keyword_coverage:
                    return True
        return False


def _said_otherwise(query: str, terms: set[str]) -> dict[str, list[frozenset[str]]]:
    """For each content term of ``query`` that the thesaurus says another way (``2fa`` =
    "two factor authentication"), the content terms of each other way: a passage holding
    all of one holds the term, for judging coverage."""
    found: dict[str, list[frozenset[str]]] = {}
    for word in _WORD_RE.findall(query.lower()):
        entry = _THESAURUS.get(word)
        term = stem(word)
        if entry is not None and entry.same and term in terms:
            phrases = [frozenset(content_terms(a)) for a in entry.alternatives]
            found[term] = [p for p in phrases if p]
    return found
