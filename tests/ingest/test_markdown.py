"""Markdown and plain-text pages: headings, slugs, code fences, front matter."""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sitechat.ingest.extract import extract_html, extract_markdown, extract_text
from sitechat.ingest.markdown import decode_text, github_slug, title_from_url

GUIDE = Path(__file__).parent / "sites" / "docs" / "guide.md"


def test_markdown_guide_sections() -> None:
    """ATX and setext headings cut sections; slugs are GitHub's; front matter is skipped."""
    page = extract_markdown(GUIDE.read_text(encoding="utf-8"), "https://x.test/guide.md")
    assert page.title == "The Gadget Guide"
    assert page.content_type == "text/markdown"
    assert [(s.heading_path, s.anchor) for s in page.sections] == [
        ((), None),
        (("Getting started",), "getting-started"),
        (("Getting started", "Setext section"), "setext-section"),
        (("Getting started", "Getting started"), "getting-started-1"),
        (
            ("Getting started", "Getting started", "config.toml and links"),
            "configtoml-and-links",
        ),
    ]
    assert page.sections[0].text == "Intro before any heading."
    assert "tags:" not in page.text


def test_fenced_code_is_kept_intact_and_never_a_heading() -> None:
    """Lines starting with ``#`` inside backtick and tilde fences stay code."""
    page = extract_markdown(GUIDE.read_text(encoding="utf-8"), "https://x.test/guide.md")
    started = page.sections[1].text
    assert started == (
        "Install the gadget.\n\n```bash\n# not a heading: a shell comment\npip install gadget\n```"
    )
    assert "~~~\n## still code\n~~~" in page.sections[3].text


def test_thematic_break_is_not_a_heading_or_text() -> None:
    """A ``---`` after a blank line is a dropped break, not a setext underline."""
    page = extract_markdown("# T\n\npara\n\n---\n\nafter\n\n***\n\nend", "http://x.test/a.md")
    assert page.sections[0].text == "para\n\nafter\n\n***\n\nend"
    assert len(page.sections) == 1


def test_markdown_title_falls_back_to_h1_then_file_name() -> None:
    """Without front matter the first h1 is the title; without one, the file name."""
    assert extract_markdown("# Hello\n\nx", "http://x.test/a.md").title == "Hello"
    assert extract_markdown("## Sub\n\nx", "http://x.test/docs/setup.md").title == "setup"


def test_atx_closing_hashes_and_hashtags() -> None:
    """Closing ``#`` runs are dropped; ``#tag`` without a space is text."""
    page = extract_markdown("## Title ##\n#hashtag\n\n#5 is text", "http://x.test/")
    assert page.sections[0].heading_path == ("Title",)
    assert page.sections[0].text == "#hashtag\n\n#5 is text"


def test_github_slugs() -> None:
    """Slugs lowercase, drop punctuation, keep hyphens and underscores, number repeats."""
    used: dict[str, int] = {}
    assert github_slug("Hello, World!", used) == "hello-world"
    assert github_slug("Hello, World!", used) == "hello-world-1"
    assert github_slug("snake_case & more", used) == "snake_case--more"
    assert github_slug("Ünïcode Überall") == "ünïcode-überall"


def test_plain_text_page() -> None:
    """Plain text is one section, blank-line runs collapse, the first short line is the title."""
    page = extract_text(
        "Release notes\n\n\n\nFixed a bug.\r\nAdded a flag.\n", "http://x.test/n.txt"
    )
    assert page.title == "Release notes"
    assert page.sections[0].text == "Release notes\n\nFixed a bug.\nAdded a flag."
    assert extract_text("   \n", "http://x.test/empty.txt").sections == ()


def test_nul_characters_are_dropped_as_the_html_parser_drops_them() -> None:
    """A stray NUL in a Markdown or text file is dropped, as from HTML, so every store can
    keep the text its chunk's content hash was taken of."""
    page = extract_markdown("# Se\x00tup\n\nRun the\x00 installer.\n", "http://x.test/s.md")
    assert [(s.heading_path, s.text) for s in page.sections] == [(("Setup",), "Run the installer.")]
    page = extract_text("Release\x00 notes\n\nFixed.\x00\n", "http://x.test/n.txt")
    assert (page.title, page.text) == ("Release notes", "Release notes\n\nFixed.")
    html = extract_html(b"<main><h1>T</h1><p>Run the\x00 installer.</p></main>", "http://x.test/")
    assert "\x00" not in html.page.text


def test_title_from_url() -> None:
    """Fallback titles come from the last path segment, else the host."""
    assert title_from_url("https://x.test/docs/Getting%20Started.md") == "Getting Started"
    assert title_from_url("https://x.test/") == "x.test"


@given(st.text(max_size=400))
@settings(max_examples=200)
def test_markdown_never_raises_and_keeps_text(text: str) -> None:
    """Any text parses into sections that each hold some text."""
    page = extract_markdown(text, "http://x.test/a.md")
    assert all(s.text.strip() for s in page.sections)


@pytest.mark.parametrize("codec", ["utf-16-le", "utf-16-be"])
@pytest.mark.parametrize("charset", [None, "utf-8", "iso-8859-1"])
def test_a_served_text_file_with_a_utf16_bom_decodes_by_it(codec: str, charset: str | None) -> None:
    """A served UTF-16 text or Markdown body with its BOM decodes by the BOM, whatever the
    HTTP charset says, as UTF-16 HTML does."""
    bom = b"\xff\xfe" if codec == "utf-16-le" else b"\xfe\xff"
    assert decode_text(bom + "# Manatées".encode(codec), charset) == "# Manatées"
