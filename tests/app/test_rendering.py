"""The app's sanitiser: untrusted Markdown loses HTML, images and non-web links."""

from __future__ import annotations

import re

import pytest
from hypothesis import given
from hypothesis import strategies as st

from sitechat import ChatMessage, Source

from .conftest import load_app_module

rendering = load_app_module("rendering")
sanitize = rendering.sanitize_markdown

WEB = Source(1, "Delete your account", "https://docs.example.com/account#delete", "", 0.9)
LOCAL = Source(
    2, "Install", "file:///srv/site/install.html#uninstall", "", 0.5, heading="Uninstall"
)

# what a renderer could turn into a link or an image: ](…) not followed by a web URL, or ![
UNSAFE_LINK = re.compile(r"(?<!\\)\]\((?!https?://)")
# strings built from the pieces that make Markdown dangerous, in any order
MARKDOWNISH = st.lists(
    st.sampled_from([*"ab <>/![]()#:$ \n\"'=*_-`~", "javascript:", "https://x.y/", "```\n"]),
    max_size=40,
).map("".join)


def prose(text: str) -> str:
    """The parts of sanitised output outside code (code is shown verbatim, never rendered)."""
    pieces = rendering._split_code(text)
    return "\x00".join(piece for is_code, piece in pieces if not is_code)  # kept apart


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("a <b>bold</b> move", "a &lt;b>bold&lt;/b> move"),
        ("<!-- hidden -->", "&lt;!-- hidden -->"),
        ("![logo](https://cdn.example/logo.png) hi", "logo hi"),
        ("[x](javascript:alert(1))", "x"),
        ("[x](data:text/html,hi)", "x"),
        ("[docs](https://docs.example.com/a b)", "[docs](https://docs.example.com/a b)"),
        ("[docs](https://docs.example.com/)", "[docs](https://docs.example.com/)"),
        ("It costs $5 or $10.", "It costs \\$5 or \\$10."),
        (":red[alarm]", ":red\\[alarm]"),
        ("`<b>` stays", "`<b>` stays"),
        ("\\`<img src=x>`", "\\`&lt;img src=x>`"),
        ("```html\n<div>$x</div>\n```\n<i>", "```html\n<div>$x</div>\n```\n&lt;i>"),
        ("[ref]: javascript:alert(1)\n[a][ref]", "\n[a][ref]"),
    ],
)
def test_sanitize_examples(text: str, expected: str) -> None:
    """Each kind of hostile or awkward Markdown comes out inert, code untouched."""
    assert sanitize(text) == expected


def test_citations_link_to_web_sources_only() -> None:
    """[n] becomes a link to source n when it is on the web; a local source stays text."""
    out = sanitize("Delete it [1]. Uninstall first [2].", sources=[WEB, LOCAL])
    assert "[\\[1\\]](https://docs.example.com/account#delete)" in out
    assert "first [2]." in out
    assert "file:" not in out


def test_grouped_citations_link_each_web_source() -> None:
    """[1, 2] and [1-2] link every web source they name; a local one stays plain text."""
    out = sanitize("Both [1, 2]. Range [1-2].", sources=[WEB, LOCAL])
    link = "[\\[1\\]](https://docs.example.com/account#delete)"
    assert out == f"Both {link}\\[2\\]. Range {link}\\[2\\]."


def test_adjacent_citations_each_link() -> None:
    """[1][2], as models often cite, links both numbers, not only the first."""
    second = Source(2, "Export", "https://docs.example.com/export", "", 0.8)
    out = sanitize("Export first [1][2].", sources=[WEB, second])
    assert out == (
        "Export first [\\[1\\]](https://docs.example.com/account#delete)"
        "[\\[2\\]](https://docs.example.com/export)."
    )


def test_a_link_label_is_not_a_citation() -> None:
    """[text][1] is a reference link and [2](url) an inline one: neither is rewritten."""
    out = sanitize("See [the docs][1] and [2](https://docs.example.com/x).", sources=[WEB])
    assert out == "See [the docs][1] and [2](https://docs.example.com/x)."


WEB_SOURCES = [
    Source(n, f"Page {n}", f"https://docs.example.com/p{n}#s", "", 0.5) for n in (1, 2, 3, 4)
]


@st.composite
def citation(draw: st.DrawFn) -> str:
    """One way of citing sources 1 to 4: [n], [a][b]…, [a, b], [a-b] (or an en dash)."""
    number = st.integers(1, len(WEB_SOURCES))
    form = draw(st.sampled_from(["single", "adjacent", "list", "range"]))
    if form == "single":
        return f"[{draw(number)}]"
    if form == "adjacent":
        return "".join(f"[{n}]" for n in draw(st.lists(number, min_size=2, max_size=4)))
    if form == "list":
        separator = draw(st.sampled_from([", ", ",", " , "]))
        return "[" + separator.join(map(str, draw(st.lists(number, min_size=2, max_size=4)))) + "]"
    low, high = sorted(draw(st.lists(number, min_size=2, max_size=2)))
    return f"[{low}{draw(st.sampled_from(['-', '–']))}{high}]"


@given(
    st.lists(
        st.tuples(st.sampled_from(["Text", "", " ", ". ", "\n", "a, b "]), citation()),
        min_size=1,
        max_size=5,
    )
)
def test_every_cited_number_links_whatever_the_form(parts: list[tuple[str, str]]) -> None:
    """Whatever the citation form, each number the library counts as cited links to its
    source, and no citation is left as plain text."""
    from sitechat.chat.prompts import parse_citations

    text = "".join(prose + cited for prose, cited in parts) + "."
    out = sanitize(text, sources=WEB_SOURCES)
    for n in parse_citations(text, len(WEB_SOURCES)):
        assert f"[\\[{n}\\]]({WEB_SOURCES[n - 1].url})" in out, (text, out)
    unlinked = re.sub(r"\[\\\[\d\\\]\]\([^)]*\)", "", out)
    assert not re.search(r"(?<!\\)\[\d", unlinked), (text, out)


def test_parentheses_in_urls_cannot_end_the_link() -> None:
    """A URL with parentheses is percent-encoded so the Markdown link stays whole."""
    source = Source(1, "Wiki", "https://en.example.org/wiki/Foo_(bar)", "", 1.0)
    out = sanitize("see [1]", sources=[source])
    assert out == "see [\\[1\\]](https://en.example.org/wiki/Foo_%28bar%29)"


@given(MARKDOWNISH)
def test_no_raw_html_survives(text: str) -> None:
    """Outside code, no '<' reaches the renderer unescaped."""
    assert "<" not in prose(sanitize(text))


@given(MARKDOWNISH)
def test_no_image_or_non_web_link_survives(text: str) -> None:
    """Outside code, nothing can form an image, and every link target is http(s)."""
    out = prose(sanitize(text))
    assert "![" not in out
    assert not UNSAFE_LINK.search(out), out


@given(st.text(max_size=60))
def test_sanitize_is_stable(text: str) -> None:
    """Sanitising twice changes nothing more: no escape sequence builds on another."""
    once = sanitize(text)
    assert "<" not in prose(once)
    assert sanitize(once).count("<") == once.count("<")


@given(st.text(max_size=60))
def test_escape_markdown_leaves_no_active_character(text: str) -> None:
    """Escaped text has every Markdown character behind a backslash, and no newline."""
    out = rendering.escape_markdown(text)
    assert "\n" not in out
    unescaped = re.sub(r"\\.", "", out)
    assert not set(unescaped) & set("\\`*_{}[]()#+-.!|~$<>:&")


@pytest.mark.parametrize(
    ("url", "web"),
    [
        ("https://docs.example.com/a#b", True),
        ("HTTP://EXAMPLE.COM", True),
        ("http://127.0.0.1:8000/x", True),
        ("file:///etc/passwd", False),
        ("javascript:alert(1)", False),
        ("https://", False),
        ("https://exa mple.com", False),
        ("//example.com/x", False),
        ('https://example.com/"onmouseover=x', False),
    ],
)
def test_is_web_url(url: str, web: bool) -> None:
    """Only absolute http(s) URLs with a host count as links."""
    assert rendering.is_web_url(url) is web


def test_sources_link_only_to_the_web() -> None:
    """A web source is a link; a local one is its title and file name as plain text."""
    out = rendering.sources_markdown([WEB, LOCAL])
    first, second = out.split("  \n")
    assert first == "**\\[1\\]** [Delete your account](https://docs.example.com/account#delete)"
    assert second == "**\\[2\\]** Install › Uninstall · install\\.html\\#uninstall"


def test_shared_site_name_is_dropped_from_titles() -> None:
    """' — Site' ending every title is said once, not on each line; a lone title keeps it."""
    pages = [
        Source(1, "Billing — Lumen Docs", "https://d.example/billing", "", 1.0),
        Source(2, "Sync — Lumen Docs", "https://d.example/sync", "", 1.0, heading="A › Offline"),
    ]
    assert rendering.shared_title_suffix(pages) == " — Lumen Docs"
    out = rendering.sources_markdown(pages)
    assert "[Billing](" in out and "[Sync › Offline](" in out
    assert "Lumen Docs" in rendering.sources_markdown(pages[:1])
    assert rendering.shared_title_suffix([*pages, WEB]) == ""


def test_source_titles_are_shown_as_text() -> None:
    """A page title full of Markdown cannot restyle or relink the sources list."""
    evil = Source(1, "[click](javascript:x) <b>", "https://e.example/", "", 1.0)
    out = rendering.sources_markdown([evil])
    assert "\\[click\\]\\(javascript\\:x\\) \\<b\\>" in out


def test_history_keeps_only_completed_exchanges() -> None:
    """Failed and stopped answers leave the next question's context, with their questions."""
    turn = rendering.Turn
    turns = [
        turn("user", "q1"),
        turn("assistant", "a1", finished=True),
        turn("user", "q2"),
        turn("assistant", "half", finished=True, error="busy"),
        turn("user", "q3"),
        turn("assistant", "part", stopped=True),
        turn("user", "q4"),
    ]
    assert rendering.conversation_history(turns) == [
        ChatMessage("user", "q1"),
        ChatMessage("assistant", "a1"),
    ]


def test_friendly_errors_by_type() -> None:
    """Known failures get specific advice; anything else a calm generic sentence."""
    assert "busy" in rendering.friendly_error("RateLimitError")
    assert "administrator" in rendering.friendly_error("AuthenticationError")
    assert rendering.friendly_error("SomethingNew").startswith("The answer failed.")
