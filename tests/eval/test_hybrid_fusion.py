"""Hybrid retrieval's pure parts: query words, thesaurus, page-level fusion, fusion weight."""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

import sitechat
from sitechat.config import Settings
from sitechat.embeddings.hashing import HashingEmbeddings
from sitechat.errors import InvalidInputError
from sitechat.models import Chunk, SearchHit
from sitechat.retrieval.hybrid import (
    HybridRetriever,
    expand_terms,
    fuse_by_page,
    keyword_terms,
)
from sitechat.testing.fakes import FakeEmbeddings, InMemoryVectorStore
from sitechat.vectorstores.base import EmbedderInfo, PageSizes
from tests.passages import hit, passage_store


def test_keyword_terms_drop_filler_and_keep_order() -> None:
    """Stopwords, question filler and contraction leftovers go; words stay unstemmed, once."""
    assert keyword_terms("How do I copy files? I'm copying FILES please") == [
        "copy",
        "files",
        "copying",
    ]
    assert keyword_terms("What is the best way to do it?") == ["best"]


def test_expansions_come_from_the_thesaurus_only_once() -> None:
    """A folder question also searches for directories; words already present are not added."""
    assert expand_terms(["delete", "folder"]) == ["remove", "directory"]
    assert expand_terms(["folder", "directory"]) == []
    assert expand_terms(["regex"]) == ["regular", "expression"]
    assert expand_terms(["nothing", "here"]) == []


def test_a_page_with_more_evidence_wins() -> None:
    """Two lists agreeing on a page's several passages beat one list's single top passage."""
    dense = [hit("lucky", 1), hit("solid", 1), hit("solid", 2), hit("solid", 3)]
    keyword = [hit("solid", 2), hit("other", 1), hit("lucky", 1)]
    fused = fuse_by_page([dense, keyword])
    assert fused[0].chunk.url == "https://d/solid"
    assert [h.chunk.id for h in fused].count("solid-2") == 1


def test_only_passages_of_evidence_add_to_their_page() -> None:
    """Further passages outside ``evidence`` (merely in the pool) give their page nothing."""
    dense = [hit("many", 1), hit("only", 1), hit("many", 2), hit("many", 3), hit("many", 4)]
    keyword = [hit("only", 1)]
    assert fuse_by_page([dense, keyword])[0].chunk.url == "https://d/many"
    gated = fuse_by_page([dense, keyword], evidence={"only-1", "many-1"})
    assert gated[0].chunk.url == "https://d/only"
    assert sorted(h.chunk.id for h in gated) == sorted({h.chunk.id for h in dense + keyword})


def test_a_large_page_gains_nothing_for_the_passages_its_size_explains() -> None:
    """A page holding half the store has passages in any list by its size alone: those do
    not add to its score, so a small page matching twice beats it."""
    ranking = [hit("focus", 1), hit("log", 1), hit("log", 2), hit("log", 3)]
    ranking += [hit("focus", 2)] + [hit(f"filler{i}", 1) for i in range(15)]
    assert fuse_by_page([ranking])[0].chunk.url == "https://d/log"
    sizes = PageSizes({"https://d/log": 50, "https://d/focus": 5}, total=100)
    assert fuse_by_page([ranking], sizes=sizes)[0].chunk.url == "https://d/focus"


def test_page_sizes_leave_small_pages_evidence_whole() -> None:
    """A page too small to be in the list by chance keeps every further passage's gain."""
    ranking = [hit("a", 1), hit("b", 1), hit("a", 2), hit("a", 3)]
    sizes = PageSizes({"https://d/a": 3, "https://d/b": 1}, total=10_000)
    plain = {h.chunk.id: h.score for h in fuse_by_page([ranking])}
    sized = {h.chunk.id: h.score for h in fuse_by_page([ranking], sizes=sizes)}
    assert sized == pytest.approx(plain, rel=1e-3)


async def test_the_retriever_asks_the_store_for_the_sizes_of_the_pages_found() -> None:
    """Both searches' pages go to ``page_sizes`` once per query (not for a filtered search,
    where shares of the whole store mean nothing), and a store that cannot tell (None)
    still gets fused results."""
    asked: list[list[str]] = []

    class Recording(InMemoryVectorStore):
        async def page_sizes(self, urls: Sequence[str]) -> PageSizes | None:
            asked.append(sorted(urls))
            return None

    embeddings = FakeEmbeddings()
    store = Recording(EmbedderInfo(embeddings.embedder_name, embeddings.dimension))
    chunks = [
        dataclasses.replace(hit(page, n).chunk, metadata={"lang": "en"})
        for page in ("cache", "log", "tea")
        for n in range(3)
    ]
    await store.upsert(chunks, embeddings.embed_documents([c.text for c in chunks]))
    result = await HybridRetriever(store, embeddings).retrieve("cache passage")
    assert asked == [["https://d/cache", "https://d/log", "https://d/tea"]]
    assert result.hits
    retriever = HybridRetriever(store, embeddings)
    filtered = await retriever.retrieve("cache passage", where={"lang": "en"})
    assert len({h.chunk.url for h in filtered.hits}) > 1
    assert len(asked) == 1, "a filtered search does not weigh pages by their unfiltered size"


async def test_on_a_small_site_the_only_page_with_the_word_comes_first(
    tmp_path: Path,
) -> None:
    """A page of many short sections no longer outranks the one page naming the word: on
    a site this small the dense pool holds every passage, and being in it is no evidence."""
    site = tmp_path / "site"
    site.mkdir()
    sections = "".join(
        f"\n## {name}\n\nThe {name} is an animal with some facts written here.\n"
        for name in ("Quokka", "Platypus", "Axolotl", "Narwhal", "Pangolin", "Okapi")
    )
    (site / "animals.md").write_text(f"# Animals\n{sections}", encoding="utf-8")
    (site / "zebra.md").write_text(
        "# Savanna\n\nThe zebra runs sixty five kilometres per hour on the savanna.\n",
        encoding="utf-8",
    )
    (site / "weather.md").write_text("# Weather\n\nIt rains a lot in autumn.\n", encoding="utf-8")
    index = str(tmp_path / "index")
    await sitechat.ingest(str(site), index=index)
    hits = await sitechat.search("zebra", index=index, k=2)
    assert hits[0].chunk.url.endswith("/zebra.md"), [h.chunk.link for h in hits]


def test_a_second_passage_scores_less_than_its_page_first() -> None:
    """Within a page, later passages are discounted so other pages get a turn."""
    fused = fuse_by_page([[hit("a", 1), hit("a", 2), hit("b", 1)]])
    scores = {h.chunk.id: h.score for h in fused}
    assert scores["a-1"] > scores["b-1"] > scores["a-2"]


@given(
    st.lists(
        st.lists(st.tuples(st.sampled_from("abcde"), st.integers(0, 4)), max_size=12),
        min_size=1,
        max_size=3,
    ),
    st.lists(st.floats(0.1, 3.0), min_size=3, max_size=3),
)
def test_fusion_returns_every_passage_once_best_first(
    lists: list[list[tuple[str, int]]], weights: Sequence[float]
) -> None:
    """Whatever the input lists and weights, each passage appears once, sorted by score."""
    rankings = [[hit(page, n) for page, n in ranking] for ranking in lists]
    fused = fuse_by_page(rankings, weights[: len(rankings)])
    ids = [h.chunk.id for h in fused]
    assert len(ids) == len(set(ids))
    assert set(ids) == {h.chunk.id for ranking in rankings for h in ranking}
    assert [h.score for h in fused] == sorted((h.score for h in fused), reverse=True)


def test_the_offline_embedder_declares_a_lower_fusion_weight() -> None:
    """The lexical hashing embedder counts less than BM25; unknown embedders count fully."""
    store = InMemoryVectorStore(EmbedderInfo("fake:v1", 256))
    assert HybridRetriever(store, HashingEmbeddings())._dense_weight() == pytest.approx(0.7)
    assert HybridRetriever(store, FakeEmbeddings())._dense_weight() == 1.0


def test_weights_decide_between_disagreeing_rankings() -> None:
    """When two rankings disagree, the heavier one's page comes first."""
    dense, keyword = [hit("semantic", 1)], [hit("lexical", 1)]
    assert fuse_by_page([dense, keyword], [2.0, 1.0])[0].chunk.url == "https://d/semantic"
    assert fuse_by_page([dense, keyword], [0.5, 1.0])[0].chunk.url == "https://d/lexical"


def test_supporting_passages_come_from_the_top_page_only() -> None:
    """The passage kept beside the best one is the top page's next, never another page's."""
    from sitechat.models import SearchHit
    from sitechat.retrieval.hybrid import _supporting

    def hit(cid: str, url: str, score: float) -> SearchHit:
        chunk = Chunk(cid, url, "t", (), None, cid, cid)
        return SearchHit(chunk, score)

    fused = [hit("a1", "A", 0.9), hit("b1", "B", 0.8), hit("a2", "A", 0.3), hit("c1", "C", 0.2)]
    hits = [fused[0], fused[1], fused[3]]
    assert [h.chunk.id for h in _supporting(fused, hits)] == ["a2"]
    assert _supporting(fused, [fused[1], fused[3]]) == ()  # B has no second passage
    assert _supporting(fused, [fused[0], fused[2]]) == ()  # A's second passage is in already
    assert _supporting([], []) == ()


def test_a_short_lead_on_top_brings_two_more_passages_of_its_page() -> None:
    """When the best passage is its page's short lead (what the page covers, under the top
    heading alone), the page's next two passages support it, not one; a long one, or a
    section's passage, still brings one."""
    from sitechat.models import SearchHit
    from sitechat.retrieval.hybrid import _supporting

    def hit(cid: str, url: str, headings: tuple[str, ...], text: str = "t") -> SearchHit:
        return SearchHit(Chunk(cid, url, "Billing", headings, None, text, cid), 1.0)

    def supporting(first: SearchHit) -> list[str]:
        rest = [hit("b1", "B", ("B",)), hit("a2", "A", ("Billing", "Trial"))]
        rest += [hit("a3", "A", ("Billing", "Plans")), hit("c1", "C", ("C",))]
        fused = [first, *rest]
        return [h.chunk.id for h in _supporting(fused, [first, fused[1], fused[4]])]

    assert supporting(hit("a1", "A", ("Billing",), "This page lists each plan.")) == ["a2", "a3"]
    assert supporting(hit("a1", "A", ("Billing",), "An introduction. " * 60)) == ["a2"]
    assert supporting(hit("a1", "A", ("Billing", "Refunds"), "Refunds take 5 days.")) == ["a2"]


def test_a_short_section_beside_others_under_their_own_top_heading_is_no_lead() -> None:
    """On a page whose top heading is outside its main content (or a Markdown file that
    starts at ``##``), each section sits under one heading of its own: a short one on top
    is a section, not the page's lead, and brings one more passage; the text before the
    first heading is the lead."""
    from sitechat.models import SearchHit
    from sitechat.retrieval.hybrid import _supporting

    def hit(cid: str, headings: tuple[str, ...], url: str = "A") -> SearchHit:
        return SearchHit(Chunk(cid, url, "Billing", headings, None, "Short.", cid), 1.0)

    siblings = [hit("a2", ("Invoices",)), hit("a3", ("Payments",)), hit("b1", ("B",), "B")]
    first = hit("a1", ("Refunds",))
    fused = [first, *siblings]
    assert [h.chunk.id for h in _supporting(fused, [first, siblings[2]])] == ["a2"]
    lead = hit("a0", ())
    fused = [lead, first, *siblings]
    assert [h.chunk.id for h in _supporting(fused, [lead, siblings[2]])] == ["a1", "a2"]


def test_the_answer_context_puts_the_supporting_passage_second() -> None:
    """``context``: the best page's next passage after its first, the weakest hit dropped,
    and nothing at all for a query that is not covered."""
    from sitechat.models import SearchHit
    from sitechat.retrieval.hybrid import RetrievalResult

    def hit(cid: str) -> SearchHit:
        return SearchHit(Chunk(cid, f"https://d/{cid[0]}", "t", (), None, cid, cid), 1.0)

    hits = (hit("a1"), hit("b1"), hit("c1"))
    result = RetrievalResult("q", hits, covered=True, supporting=(hit("a2"),))
    assert [h.chunk.id for h in result.context] == ["a1", "a2", "b1"]
    assert RetrievalResult("q", hits, covered=True).context == hits
    assert RetrievalResult("q", hits, covered=False, supporting=(hit("a2"),)).context == ()


def test_a_leads_two_passages_leave_the_second_page_in_a_short_context() -> None:
    """With ``top_k=3`` a lead's two further passages would fill the context with one page:
    only one of them joins, so the second page's best passage stays."""
    from sitechat.models import SearchHit
    from sitechat.retrieval.hybrid import RetrievalResult

    def hit(cid: str) -> SearchHit:
        return SearchHit(Chunk(cid, f"https://d/{cid[0]}", "t", (), None, cid, cid), 1.0)

    two_more = (hit("a2"), hit("a3"))
    three = RetrievalResult("q", (hit("a1"), hit("b1"), hit("c1")), True, two_more)
    assert [h.chunk.id for h in three.context] == ["a1", "a2", "b1"]
    five = tuple(hit(f"{page}1") for page in "abcde")
    assert [h.chunk.id for h in RetrievalResult("q", five, True, two_more).context] == [
        "a1",
        "a2",
        "a3",
        "b1",
        "c1",
    ]
    two = RetrievalResult("q", (hit("a1"), hit("b1")), True, two_more)
    assert [h.chunk.id for h in two.context] == ["a1", "a2"]


BAD_K = [0, -1, 2.5, "3", True]


@pytest.mark.parametrize("k", BAD_K)
async def test_retrieve_refuses_a_k_that_is_not_a_positive_whole_number(k: object) -> None:
    """k=0 is not the default and k=-1 not "all but one": both, and non-ints, are refused."""
    embeddings = FakeEmbeddings(dimension=16)
    store = InMemoryVectorStore(EmbedderInfo(embeddings.embedder_name, embeddings.dimension))
    chunks = [hit(f"p{i}", 1).chunk for i in range(12)]
    await store.upsert(chunks, embeddings.embed_documents([c.text for c in chunks]))
    retriever = HybridRetriever(store, embeddings)
    with pytest.raises(InvalidInputError, match="k must be a whole number of at least 1"):
        await retriever.retrieve("passage", k)  # type: ignore[arg-type]
    assert len((await retriever.retrieve("passage")).hits) == retriever.settings.top_k
    assert len((await retriever.retrieve("passage", 2)).hits) == 2


@pytest.mark.parametrize("query", [None, 5, b"passage"])
async def test_retrieve_refuses_a_query_that_is_not_text(query: object) -> None:
    """A non-str query raises InvalidInputError naming its type, not an AttributeError."""
    embeddings = FakeEmbeddings(dimension=16)
    store = InMemoryVectorStore(EmbedderInfo(embeddings.embedder_name, embeddings.dimension))
    retriever = HybridRetriever(store, embeddings)
    with pytest.raises(InvalidInputError, match=f"not {type(query).__name__}"):
        await retriever.retrieve(query)  # type: ignore[arg-type]


@pytest.mark.parametrize("k", BAD_K)
async def test_api_search_refuses_a_bad_k_before_opening_the_index(
    k: object, settings: Settings
) -> None:
    """sitechat.search(k=...) raises InvalidInputError, not a TypeError or a wrong count."""
    import sitechat

    with pytest.raises(InvalidInputError, match="k must be a whole number of at least 1"):
        await sitechat.search("anything", k=k, settings=settings)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("query", "covered"),
    [
        ("2fa", True),  # "2fa = two factor authentication": said another way
        ("where do I set up 2fa", True),
        ("2fa zebra giraffe", False),  # one word of three is still too few
        ("crash", False),  # "crash: error" only widens the search
    ],
)
async def test_a_word_the_passage_says_another_way_counts_as_covered(
    query: str, covered: bool
) -> None:
    """A thesaurus equivalent (all of its words) counts as the question's word when judging
    coverage; a merely related word does not."""
    store, embeddings = await passage_store(
        {
            "https://d/security": (
                "Security",
                "two-factor",
                "Admins turn on two-factor authentication in their profile. An error "
                "is shown when a code is wrong.",
            ),
        }
    )
    result = await HybridRetriever(store, embeddings).retrieve(query, k=3)
    assert result.covered is covered


async def test_part_of_an_equivalent_phrase_does_not_cover_the_word() -> None:
    """ "two" alone is not "two factor authentication": every word of it must be there."""
    store, embeddings = await passage_store(
        {"https://d/team": ("Team", "size", "Two people share an authentication token.")}
    )
    assert not (await HybridRetriever(store, embeddings).retrieve("2fa", k=3)).covered
