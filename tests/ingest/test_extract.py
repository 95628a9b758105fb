"""HTML main-content extraction: sections, anchors, boilerplate, links, decoding, robustness."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from sitechat.ingest.chunk import chunk_page
from sitechat.ingest.extract import (
    ExtractedPage,
    common_title_suffix,
    decode_html,
    extract_html,
    remove_boilerplate,
    strip_title_suffix,
)
from sitechat.models import Page, Section

SITES = Path(__file__).parent / "sites"
PYTHON_DOCS = Path("/usr/share/doc/python3.11/html")


def _extract(name: str, url: str) -> ExtractedPage:
    return extract_html((SITES / name).read_bytes(), url)


def _all_text(page: Page) -> str:
    return "\n".join(
        [page.title, *(" ".join(s.heading_path) + "\n" + s.text for s in page.sections)]
    )


def test_sphinx_page_sections_anchors_and_content() -> None:
    """A Sphinx page splits at headings, anchors come from section ids, ¶ links vanish."""
    result = _extract("sphinx.html", "https://docs.widget.test/en/latest/install.html")
    page = result.page
    assert page.title == "Installing the Widget — Widget 2.1 documentation"
    by_anchor = {s.anchor: s for s in page.sections}
    assert list(by_anchor) == [
        "installing-the-widget",
        "from-pypi",
        "configuration-options",
        "environment-variables",
    ]
    assert by_anchor["environment-variables"].heading_path == (
        "Installing the Widget",
        "Configuration options",
        "Environment variables",
    )
    pypi = by_anchor["from-pypi"].text
    assert "```\n$ python -m pip install widget\n\n$ widget --version\n```" in pypi
    assert "- Wheels exist for Linux, macOS and Windows.\n- The source distribution" in pypi
    config = by_anchor["configuration-options"].text
    assert "Option | Default\ntimeout | 30 seconds\nretries | 3" in config
    assert "Note\n\nSet options in widget.toml." in config
    assert "needs Python 3.10 or newer" in by_anchor["installing-the-widget"].text
    assert "Environment variables win over the file." in by_anchor["environment-variables"].text
    assert result.canonical == "https://docs.widget.test/en/latest/install.html"


@pytest.mark.parametrize(
    ("name", "junk"),
    [
        (
            "sphinx.html",
            ["cookies", "Navigation", "General Index", "Quick search", "Copyright", "¶", "var "],
        ),
        (
            "mkdocs.html",
            ["Skip to content", "User guide", "GitHub", "Copyright", "Edit this page", "Search"],
        ),
        (
            "blog.html",
            [
                "Mail",
                "About",
                "Archive",
                "Home",
                "Recent posts",
                "might also like",
                "Share",
                "copyright",
                "cookies",
                "Notes from the workshop",
            ],
        ),
    ],
)
def test_boilerplate_never_reaches_chunks(name: str, junk: list[str]) -> None:
    """Nav, headers, footers, sidebars, cookie banners and share widgets are dropped."""
    page = _extract(name, "https://site.test/page.html").page
    chunks = chunk_page(page)
    assert chunks
    text = "\n".join(c.text + " " + c.heading for c in chunks)
    for phrase in junk:
        assert phrase not in text, phrase


def test_mkdocs_page_anchors_code_and_lists() -> None:
    """MkDocs headings keep their ids; code keeps comments; nested lists are indented."""
    page = _extract("mkdocs.html", "https://site.test/gadget/deploying/").page
    assert page.title == "Deploying - Gadget Docs"
    assert [(s.heading_path, s.anchor) for s in page.sections] == [
        (("Deploying",), "deploying"),
        (("Deploying", "Docker"), "docker"),
        (("Deploying", "Kubernetes"), "kubernetes"),
    ]
    docker = page.sections[1].text
    assert "```\n# build it\ndocker build -t gadget .\n```" in docker
    assert "Warning\n\nNever bake secrets into the image." in docker
    assert page.sections[2].text == "1. Apply the manifest.\n2. Watch the rollout\n  - with kubectl"


def test_blog_page_named_anchor_and_line_breaks() -> None:
    """A ``<a name>`` before a heading is its anchor; ``<br>`` separates words."""
    result = _extract("blog.html", "https://tinkerer.test/2024/03/sync.html")
    page = result.page
    assert page.title == "Why we rewrote our sync engine | Tinkerer's Blog"
    design = next(s for s in page.sections if s.heading_path[-1] == "The new design")
    assert design.anchor == "design"
    assert design.heading_path == ("Why we rewrote our sync engine", "The new design")
    assert "five minutes. Users noticed." in page.text
    assert result.noindex
    assert result.nofollow


def test_links_are_absolute_canonical_and_include_navigation() -> None:
    """Links come from the whole page (nav too), resolved, canonicalised, http(s) only."""
    result = _extract("blog.html", "https://tinkerer.test/2024/03/sync.html")
    assert "https://tinkerer.test/about" in result.links
    assert "https://tinkerer.test/2024/02/hello" in result.links
    assert "https://tinkerer.test/privacy" in result.links
    assert all(link.startswith(("http://", "https://")) for link in result.links)
    assert len(result.links) == len(set(result.links))


def test_links_resolve_against_base_href() -> None:
    """``<base href>`` changes what relative links point to."""
    result = _extract("mkdocs.html", "https://site.test/gadget/deploying/")
    assert "https://site.test/gadget/guide/" in result.links
    assert "https://github.com/gadget/gadget" in result.links
    assert not any("#" in link for link in result.links)


def test_title_falls_back_to_first_h1_then_url() -> None:
    """Without ``<title>`` the first h1 names the page; without either, the URL does."""
    assert (
        extract_html("<h1>Only heading</h1><p>x</p>", "http://a.test/").page.title == "Only heading"
    )
    assert extract_html("<p>text</p>", "http://a.test/p").page.title == "http://a.test/p"


def test_heading_anchor_from_enclosing_div_it_starts() -> None:
    """An old-style ``<div class=section id>`` whose first child is the heading gives the anchor."""
    html = (
        '<div class="body"><div class="section" id="usage"><h2>Usage</h2><p>Call it.</p></div>'
        '<div id="other"><p>intro</p><h2>Later</h2><p>More.</p></div></div>'
    )
    sections = extract_html(html, "http://a.test/").page.sections
    assert [(s.heading_path, s.anchor, s.text) for s in sections] == [
        (("Usage",), "usage", "Call it.\n\nintro"),
        (("Later",), None, "More."),
    ]


def test_permalink_inside_heading_gives_the_anchor_but_not_text() -> None:
    """A ``#`` permalink holding the id (Node.js docs style) is the anchor, not heading text."""
    html = (
        "<main><h2>C# tips<span><a class='mark' href='#c-tips' id='c-tips'>#</a></span></h2>"
        "<p>Use it.</p></main>"
    )
    (section,) = extract_html(html, "http://a.test/").page.sections
    assert section.heading_path == ("C# tips",)
    assert section.anchor == "c-tips"


def test_article_header_with_title_is_kept() -> None:
    """A ``<header>`` inside the article holding the title is content, not site chrome."""
    html = (
        "<body><header><a href='/'>Site</a></header><article><header><h1 id='t'>Post</h1>"
        "</header><p>Body text.</p><footer>Tags: a, b</footer></article></body>"
    )
    page = extract_html(html, "http://a.test/").page
    assert [(s.heading_path, s.anchor, s.text) for s in page.sections] == [
        (("Post",), "t", "Body text.")
    ]


def test_card_links_with_headings_are_walked() -> None:
    """A link wrapping block content (a card) still yields its heading and paragraph."""
    html = "<main><a href='/x'><h2 id='card'>Card title</h2><p>Card text.</p></a></main>"
    sections = extract_html(html, "http://a.test/").page.sections
    assert [(s.heading_path, s.anchor, s.text) for s in sections] == [
        (("Card title",), "card", "Card text.")
    ]


def test_content_ids_that_look_like_junk_words_are_kept() -> None:
    """A section whose id comes from a heading such as "Related work" is not dropped."""
    html = (
        "<main><section id='related-work'><h2>Related work</h2><p>Prior art.</p></section>"
        "<dl><dt id='http.cookies.SimpleCookie'>SimpleCookie</dt><dd>A cookie jar.</dd></dl></main>"
    )
    page = extract_html(html, "http://a.test/").page
    assert "Prior art." in page.text
    assert "A cookie jar." in page.text
    entry = page.sections[-1]
    assert entry.heading_path[-1] == "SimpleCookie"
    assert entry.anchor == "http.cookies.SimpleCookie"


def test_meta_robots_and_canonical() -> None:
    """meta robots ``none`` means noindex and nofollow; a relative canonical is resolved."""
    html = (
        "<head><meta name='ROBOTS' content='NONE'><link rel='canonical' href='/c?b=1&a=2#x'>"
        "</head><p>x</p>"
    )
    result = extract_html(html, "http://a.test/dir/page")
    assert result.noindex
    assert result.nofollow
    assert result.canonical == "http://a.test/c?a=2&b=1"


def test_bytes_are_decoded_with_the_declared_charset() -> None:
    """A meta charset, an HTTP charset and a BOM each decide how bytes are decoded."""
    latin = "<meta charset='windows-1252'><p>café – naïve</p>".encode("cp1252")
    assert "café – naïve" in extract_html(latin, "http://a.test/").page.text
    header = "<p>Grüße</p>".encode("iso-8859-1")
    assert "Grüße" in extract_html(header, "http://a.test/", encoding="iso-8859-1").page.text
    bom = "\ufeff<p>€ sign</p>".encode("utf-16-le")
    assert "€ sign" in extract_html(bom, "http://a.test/").page.text
    junk = b"<meta charset='no-such-codec'><p>ok \xff</p>"  # an unknown label is ignored:
    assert "ok ÿ" in extract_html(junk, "http://a.test/").page.text  # not UTF-8, so cp1252


@pytest.mark.parametrize(
    ("data", "declared", "text"),
    [
        ("café crème".encode("latin-1"), None, "café crème"),  # no label, not UTF-8
        ("naïve – “ok”".encode(), None, "naïve – “ok”"),  # no label, valid UTF-8
        ("It’s €20 “Pro”".encode("cp1252"), "ISO-8859-1", "It’s €20 “Pro”"),
        ("It’s €20".encode("cp1252"), "us-ascii", "It’s €20"),
        ("Grüße".encode("latin-1"), "latin1", "Grüße"),
    ],
)
def test_latin1_labels_and_unlabelled_legacy_bytes_decode_as_browsers_do(
    data: bytes, declared: str | None, text: str
) -> None:
    """Latin-1 and ASCII labels mean windows-1252; unlabelled non-UTF-8 bytes are cp1252."""
    assert decode_html(data, declared) == text


def test_deeply_nested_markup_does_not_overflow() -> None:
    """Thousands of nested elements are walked without recursion errors."""
    html = "<div>" * 5000 + "<h2 id='deep'>Deep</h2><p>bottom</p>" + "</div>" * 5000
    sections = extract_html(html, "http://a.test/").page.sections
    assert sections == (Section(("Deep",), "deep", "bottom"),)


def test_deeply_nested_lists_stay_linear_in_size() -> None:
    """A list nested 5,000 deep extracts to text proportional to the page, not its square
    (indentation stops growing past a few levels)."""
    html = "<main><h1>D</h1>" + "<ul><li>x" * 5000 + "</li></ul>" * 5000 + "</main>"
    text = "".join(s.text for s in extract_html(html, "http://a.test/").page.sections)
    assert text.count("x") == 5000
    assert len(text) < 30 * 5000  # unbounded indentation made it ~25 million characters
    assert "\n  - x\n    - x" in text  # shallow levels are still indented


@given(st.binary(max_size=2000))
@settings(max_examples=150, suppress_health_check=[HealthCheck.too_slow])
def test_random_bytes_never_raise(data: bytes) -> None:
    """Any bytes at all come back as a page."""
    result = extract_html(data, "http://a.test/")
    assert isinstance(result.page, Page)


_TAGS = ["div", "p", "h1", "h2", "h3", "ul", "ol", "li", "pre", "table", "tr", "td", "a", "span"]
_TAGS += ["section", "main", "article", "header", "nav", "br", "code", "script", "dl", "dt"]
_soup = st.lists(
    st.one_of(
        st.sampled_from([f"<{t}>" for t in _TAGS] + [f"</{t}>" for t in _TAGS]),
        st.sampled_from(["<a href='../x'>", "<h2 id='i'>", "<div class='sidebar'>", "<!--", "-->"]),
        st.text(max_size=12),
    ),
    max_size=60,
).map("".join)


@given(_soup)
@settings(max_examples=200, suppress_health_check=[HealthCheck.too_slow])
def test_random_tag_soup_never_raises(html: str) -> None:
    """Arbitrary tag soup yields a page whose sections all have text, and a link share in 0-1."""
    found = extract_html(html, "http://a.test/dir/")
    assert all(section.text.strip() for section in found.page.sections)
    assert 0.0 <= found.link_share <= 1.0


def _links_page(links: int, prose: str = "") -> str:
    items = "".join(
        f'<li><a href="/p{i}.html">Entry number {i}</a>\n      </li>\n' for i in range(links)
    )
    return f"<title>Index</title><main><h1>Index</h1><p>{prose}</p><ul>{items}</ul></main>"


def test_index_pages_are_link_lists_and_content_pages_are_not() -> None:
    """Mostly-links pages with 20+ links are link lists; prose with links, or few links, is not."""
    generated = extract_html(_links_page(40), "http://a.test/genindex.html")
    assert generated.link_share > 0.9
    assert generated.is_link_list()
    assert not generated.is_link_list(max_link_share=1.0)  # 1.0 keeps every page

    prose = " ".join(["Plain words explaining how the thing works."] * 40)
    article = extract_html(_links_page(40, prose), "http://a.test/guide.html")
    assert article.link_share < 0.5
    assert not article.is_link_list()

    landing = extract_html(_links_page(12), "http://a.test/")
    assert landing.link_share > 0.9
    assert not landing.is_link_list()  # too few links to be sure it is only navigation


def _page(url: str, *blocks: str) -> Page:
    return Page(url=url, title=url, sections=(Section((), None, "\n\n".join(blocks)),))


def test_remove_boilerplate_drops_blocks_repeated_across_pages() -> None:
    """A paragraph on half or more of the pages goes; unique ones and code blocks stay."""
    chrome = "Was this page helpful? Yes No"
    code = "```\nfoo()\n\nbar()\n```"
    pages = [_page(f"http://a.test/{i}", f"Unique text {i}.", chrome, code) for i in range(3)]
    pages.append(_page("http://a.test/3", "Unique text 3.", code))
    cleaned = remove_boilerplate(pages)
    assert [p.text for p in cleaned] == [f"Unique text {i}.\n\n{code}" for i in range(4)]


def test_remove_boilerplate_needs_four_pages() -> None:
    """With fewer than four pages nothing is considered boilerplate."""
    pages = [_page(f"http://a.test/{i}", "Same text.") for i in range(3)]
    assert remove_boilerplate(pages) == pages


def test_remove_boilerplate_drops_sections_left_empty() -> None:
    """A section made only of repeated blocks disappears; its page keeps its other sections."""
    repeated = Section(("Footer",), "footer", "Licensed under CC-BY.")
    pages = [
        Page(f"http://a.test/{i}", "t", (Section(("A",), "a", f"Text {i}."), repeated))
        for i in range(4)
    ]
    cleaned = remove_boilerplate(pages)
    assert all(len(p.sections) == 1 and p.sections[0].anchor == "a" for p in cleaned)


@pytest.mark.skipif(not PYTHON_DOCS.is_dir(), reason="python3.11-doc is not installed")
def test_real_python_docs_tutorial_page() -> None:
    """A real Sphinx page from the Python docs gives anchored sections without navigation."""
    path = PYTHON_DOCS / "tutorial" / "introduction.html"
    page = extract_html(
        path.read_bytes(), "https://docs.python.org/3.11/tutorial/introduction.html"
    ).page
    assert page.title.startswith("3. An Informal Introduction to Python")
    anchors = [s.anchor for s in page.sections]
    assert "using-python-as-a-calculator" in anchors
    assert all(anchor for anchor in anchors)
    text = page.text
    assert "Quick search" not in text
    assert "Previous topic" not in text
    assert "¶" not in text
    assert "```" in text


def test_api_entries_become_deep_linked_sections() -> None:
    """Sphinx ``dt[id]`` entries (functions, methods) get sections of their own."""
    html = (
        "<div class='body'><section id='api'><h2>API</h2><p>Intro.</p>"
        "<dl class='py class'><dt class='sig' id='mod.Thing'>class mod.Thing"
        "<a class='headerlink' href='#mod.Thing'>¶</a></dt><dd><p>A thing.</p>"
        "<dl class='py method'><dt id='mod.Thing.run'>run(x)</dt>"
        "<dt id='mod.Thing.run2'>run(x, y)</dt><dd><p>Runs it.</p></dd></dl>"
        "</dd></dl><p>Closing words.</p></section></div>"
    )
    sections = extract_html(html, "http://a.test/").page.sections
    assert [(s.heading_path, s.anchor, s.text) for s in sections] == [
        (("API",), "api", "Intro."),
        (("API", "class mod.Thing"), "mod.Thing", "A thing."),
        (("API", "class mod.Thing", "run(x)"), "mod.Thing.run", "run(x, y)\n\nRuns it."),
        (("API",), "api", "Closing words."),
    ]


def test_binary_bytes_are_recognised() -> None:
    """Images and archives are binary; text in any common encoding is not."""
    from sitechat.ingest.extract import looks_binary

    assert looks_binary(b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR")
    assert looks_binary(bytes(range(1, 32)) * 20)
    assert not looks_binary("<p>café – naïve</p>".encode())
    assert not looks_binary("\ufeff<p>hi</p>".encode("utf-16"))


def test_a_stray_nul_does_not_make_a_page_binary() -> None:
    """One NUL byte in a text page (a typo in an href) leaves it text; NUL-heavy bytes are not."""
    from sitechat.ingest.extract import looks_binary

    page = b"<html><body><main><p>" + b"words " * 200 + b'<a href="/a\x00b">x</a></p></main>'
    assert not looks_binary(page)
    assert looks_binary(b"\x00" * 10 + page[:100])


_title_words = st.text(alphabet="abcdefghij XYZ", min_size=1, max_size=12).filter(str.strip)


@given(st.lists(_title_words, min_size=4, max_size=12), _title_words)
@settings(max_examples=150)
def test_site_name_shared_by_titles_is_cut_and_nothing_else(names: list[str], site: str) -> None:
    """The site name every title ends with goes; page names stay, and no title becomes empty."""
    pages = [_page(f"https://d.test/{i}", "Text.") for i in range(len(names))]
    titled = [replace(p, title=f"{n} — {site}") for p, n in zip(pages, names, strict=True)]
    suffix = common_title_suffix(titled)
    assert suffix.endswith(f" — {site}")
    stripped = strip_title_suffix(titled, suffix)
    assert all(p.title.strip() for p in stripped)
    for page, name in zip(stripped, names, strict=True):
        assert name.startswith(page.title) or page.title.startswith(name)


def test_titles_without_a_common_tail_are_left_alone() -> None:
    """Too few pages, or tails shared by under half of them, change nothing."""
    pages = [replace(_page(f"https://d.test/{i}", f"x{i}"), title=f"P{i} | Site") for i in range(3)]
    assert common_title_suffix(pages) == ""
    mixed = [
        *pages,
        *(replace(_page(f"https://e.test/{i}", f"y{i}"), title=f"T{i}") for i in range(4)),
    ]
    assert common_title_suffix(mixed) == ""
    assert remove_boilerplate(mixed) == mixed
    alone = [replace(p, title=" | Site") for p in pages]
    assert strip_title_suffix(alone, " | Site") == alone  # a title that is only the name stays
