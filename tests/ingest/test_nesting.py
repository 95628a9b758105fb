"""The nesting guard: block tags past the depth limit are blanked, everything else kept."""

from __future__ import annotations

import re

from hypothesis import given
from hypothesis import strategies as st

from sitechat.ingest.extract import extract_html
from sitechat.ingest.nesting import MAX_NESTING, flatten_deep_nesting, too_deep


def _text(html: str) -> str:
    return re.sub(r"<[^>]*>", "", html).replace(" ", "")


def test_a_normal_page_is_returned_as_the_same_string() -> None:
    """Nothing nests past the limit: no copy, no change."""
    html = "<main>" + "<div><ul><li>a</li><li>b</li></ul></div>" * 500 + "</main>"
    assert flatten_deep_nesting(html) is html


def test_blocks_past_the_limit_are_blanked_and_their_text_kept() -> None:
    """Divs nested 5 deep with a limit of 2 keep the outer two; the text stays inside."""
    html = "<div>" * 5 + "deep" + "</div>" * 5
    assert flatten_deep_nesting(html, 2) == "<div><div>   deep   </div></div>"


def test_unclosed_list_items_are_siblings_not_a_nesting() -> None:
    """<li> closes an open <li> (and <dd>/<dt> each other), as the HTML parser does."""
    html = "<ul>" + "<li>item" * 1000 + "</ul><dl>" + "<dt>t<dd>d" * 1000 + "</dl>"
    assert not too_deep(html, 3)


def test_upper_case_tags_are_counted_too() -> None:
    """<UL><LI> nests like <ul><li>."""
    html = "<UL><LI>x" * 300 + "</LI></UL>" * 300
    assert too_deep(html)
    assert not too_deep(flatten_deep_nesting(html))


def test_a_hostile_list_nesting_reaches_the_parser_flattened() -> None:
    """60,000 nested lists (1 MB, 40 s of parsing) extract with every item's text."""
    html = "<main><h1>D</h1>" + "<ul><li>x" * 60_000 + "</li></ul>" * 60_000 + "</main>"
    flattened = flatten_deep_nesting(html)
    assert not too_deep(flattened)
    assert flattened.count("<ul>") == MAX_NESTING // 2
    text = "".join(s.text for s in extract_html(html, "http://a.test/").page.sections)
    assert text.count("x") == 60_000


_BLOCKS = ["div", "ul", "li", "section", "dl", "dd"]
_markup = st.lists(
    st.one_of(
        st.sampled_from([f"<{t}>" for t in _BLOCKS] + [f"</{t}>" for t in _BLOCKS]),
        st.sampled_from(["<p>", "<span>", "<b>", "</span>"]),
        st.text(alphabet="xyz ", max_size=4),
    ),
    max_size=80,
).map("".join)


@given(_markup, st.integers(min_value=1, max_value=6))
def test_flattening_keeps_the_text_and_ends_within_the_limit(html: str, limit: int) -> None:
    """Any markup: text unchanged, nothing left past the limit, shallow input untouched."""
    flattened = flatten_deep_nesting(html, limit)
    assert _text(flattened) == _text(html)
    assert not too_deep(flattened, limit)
    if not too_deep(html, limit):
        assert flattened is html
