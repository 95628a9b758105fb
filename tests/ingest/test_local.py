"""Reading pages from a folder or a single file."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest

from sitechat.errors import IngestError
from sitechat.ingest.local import iter_local_pages

SITES = Path(__file__).parent / "sites"


@pytest.fixture
def docs_folder(tmp_path: Path) -> Path:
    root = tmp_path / "site"
    (root / "guide").mkdir(parents=True)
    (root / ".git").mkdir()
    (root / "_static").mkdir()
    (root / "index.html").write_text(
        "<title>Home</title><main><h1 id='h'>Home</h1><p>Hi.</p></main>"
    )
    (root / "guide" / "install.md").write_text("# Install\n\nRun it.\n")
    (root / "guide" / "notes.TXT").write_text("Notes\n\nPlain text.\n")
    (root / "guide" / "with space.htm").write_text("<p>Spaced.</p>")
    (root / ".git" / "config.html").write_text("<p>hidden folder</p>")
    (root / ".hidden.md").write_text("# Hidden file\n")
    (root / "_static" / "style.css").write_text("body {}")
    (root / "image.png").write_bytes(b"\x89PNG")
    return root


def test_folder_pages_in_path_order_without_hidden_or_other_files(docs_folder: Path) -> None:
    """Only page files are read, sorted by path, with hidden folders and files left out."""
    pages = list(iter_local_pages(docs_folder))
    names = [p.url.rsplit("/", 2)[-2:] for p in pages]
    assert names == [
        ["guide", "install.md"],
        ["guide", "notes.TXT"],
        ["guide", "with%20space.htm"],
        ["site", "index.html"],
    ]
    assert all(p.url.startswith("file:///") for p in pages)
    assert pages[0].url == (docs_folder / "guide" / "install.md").resolve().as_uri()


def test_content_types_follow_the_suffix(docs_folder: Path) -> None:
    """HTML, Markdown and text files are each extracted their own way."""
    pages = {p.url.rsplit("/", 1)[-1]: p for p in iter_local_pages(docs_folder)}
    assert pages["index.html"].content_type == "text/html"
    assert pages["index.html"].sections[0].anchor == "h"
    assert pages["install.md"].content_type == "text/markdown"
    assert pages["install.md"].sections[0].anchor == "install"
    assert pages["notes.TXT"].content_type == "text/plain"
    assert pages["notes.TXT"].title == "Notes"


def test_base_url_makes_site_urls(docs_folder: Path) -> None:
    """With ``base_url`` a page's URL is the base joined with its relative path."""
    urls = [p.url for p in iter_local_pages(docs_folder, base_url="https://Docs.example.com/v1")]
    assert urls == [
        "https://docs.example.com/v1/guide/install.md",
        "https://docs.example.com/v1/guide/notes.TXT",
        "https://docs.example.com/v1/guide/with%20space.htm",
        "https://docs.example.com/v1/index.html",
    ]


def test_single_file() -> None:
    """A single file is read on its own; with a base URL its name is appended."""
    pages = list(iter_local_pages(SITES / "sphinx.html", base_url="https://d.test/"))
    assert [p.url for p in pages] == ["https://d.test/sphinx.html"]
    assert pages[0].sections[0].anchor == "installing-the-widget"


def test_a_legacy_encoded_text_file_keeps_its_accents(tmp_path: Path) -> None:
    """A Markdown file saved in windows-1252 (not valid UTF-8) reads as windows-1252."""
    (tmp_path / "notes.md").write_bytes("# Café\n\nIt’s €20 for the crème.\n".encode("cp1252"))
    [page] = iter_local_pages(tmp_path / "notes.md")
    assert "It’s €20 for the crème." in page.text


def test_a_broken_symbolic_link_is_skipped_not_failed(tmp_path: Path) -> None:
    """A link to nothing is a skip (reported), not an unreadable file, which would mark
    the folder incomplete and keep deleted files in the index for good."""
    (tmp_path / "page.html").write_text("<main><h1>Page</h1><p>Text.</p></main>")
    (tmp_path / "gone.html").symlink_to(tmp_path / "deleted.html")
    skipped: list[tuple[str, str]] = []
    errors: list[tuple[str, str]] = []
    pages = list(
        iter_local_pages(
            tmp_path,
            on_skip=lambda url, why: skipped.append((url, why)),
            on_error=lambda url, why: errors.append((url, why)),
        )
    )
    assert [p.title for p in pages] == ["Page"]
    assert errors == []
    assert [(url.rsplit("/", 1)[-1], why) for url, why in skipped] == [
        ("gone.html", "broken symbolic link (it points at nothing)")
    ]


def test_missing_path_is_an_ingest_error(tmp_path: Path) -> None:
    """A path that does not exist raises IngestError naming it."""
    with pytest.raises(IngestError, match="nope"):
        list(iter_local_pages(tmp_path / "nope"))


def test_link_lists_and_noindex_pages_are_skipped_and_reported(tmp_path: Path) -> None:
    """A folder's generated index and its noindex pages are not yielded; on_skip hears why."""
    items = "".join(f'<li><a href="p{i}.html">Page {i}</a></li>' for i in range(30))
    (tmp_path / "genindex.html").write_text(f"<main><h1>Index</h1><ul>{items}</ul></main>")
    (tmp_path / "draft.html").write_text(
        '<meta name="robots" content="noindex"><main><p>Not yet.</p></main>'
    )
    (tmp_path / "page.html").write_text("<main><h1>Page</h1><p>Real content.</p></main>")
    skipped: list[tuple[str, str]] = []
    pages = list(
        iter_local_pages(
            tmp_path, base_url="https://docs.test/", on_skip=lambda u, r: skipped.append((u, r))
        )
    )
    assert [p.url for p in pages] == ["https://docs.test/page.html"]
    reasons = dict(skipped)
    assert reasons["https://docs.test/draft.html"] == "noindex"
    assert reasons["https://docs.test/genindex.html"].startswith("link list (")
    kept = list(iter_local_pages(tmp_path, base_url="https://docs.test/", max_link_share=1.0))
    assert "https://docs.test/genindex.html" in [p.url for p in kept]


def _read_with_skips(root: Path, **kwargs: Any) -> tuple[list[str], dict[str, str]]:
    skipped: dict[str, str] = {}
    pages = iter_local_pages(
        root, base_url="https://docs.test/", on_skip=skipped.__setitem__, **kwargs
    )
    return [p.url for p in pages], skipped


def test_symlinks_out_of_the_folder_are_skipped_with_the_reason(tmp_path: Path) -> None:
    """A symlink resolving outside the folder is skipped and reported; one inside is read."""
    outside = tmp_path / "outside.txt"
    outside.write_text("root:x:0:0:secret\n")
    root = tmp_path / "site"
    root.mkdir()
    (root / "page.md").write_text("# Page\n\nReal content.\n")
    (root / "passwd.txt").symlink_to(outside)
    (root / "alias.md").symlink_to(root / "page.md")
    urls, skipped = _read_with_skips(root)
    assert "https://docs.test/alias.md" in urls
    assert "https://docs.test/passwd.txt" not in urls
    assert "outside the folder" in skipped["https://docs.test/passwd.txt"]


def test_fifos_and_files_over_max_bytes_are_skipped_not_read(tmp_path: Path) -> None:
    """A FIFO named like a page and a file larger than max_bytes are skipped with reasons."""
    (tmp_path / "page.html").write_text("<main><h1>Page</h1><p>Small.</p></main>")
    (tmp_path / "big.txt").write_text("word " * 1000)
    os.mkfifo(tmp_path / "x.html")  # reading it would block forever
    urls, skipped = _read_with_skips(tmp_path, max_bytes=2000)
    assert urls == ["https://docs.test/page.html"]
    assert skipped["https://docs.test/x.html"] == "not a regular file"
    assert skipped["https://docs.test/big.txt"] == "too large (5000 bytes, more than 2000)"
    single, why = _read_with_skips(tmp_path / "big.txt", max_bytes=2000)
    assert single == [] and why["https://docs.test/big.txt"].startswith("too large")


@pytest.mark.parametrize("codec", ["utf-16-le", "utf-16-be", "utf-8"])
def test_text_and_markdown_files_with_a_byte_order_mark_decode_by_it(
    tmp_path: Path, codec: str
) -> None:
    """UTF-16 (and UTF-8) Markdown and text files with a BOM are read as text, not mojibake."""
    bom = {"utf-16-le": b"\xff\xfe", "utf-16-be": b"\xfe\xff", "utf-8": b"\xef\xbb\xbf"}[codec]
    (tmp_path / "manatee.md").write_bytes(bom + "# Manatées\n\nA gentle sea cow.\n".encode(codec))
    (tmp_path / "dugong.txt").write_bytes(bom + "The dugong grazes on seagrass.".encode(codec))
    pages = {p.url.rsplit("/", 1)[-1]: p for p in iter_local_pages(tmp_path)}
    assert pages["manatee.md"].title == "Manatées"
    assert pages["manatee.md"].sections[0].text == "A gentle sea cow."
    assert pages["dugong.txt"].sections[0].text == "The dugong grazes on seagrass."


def test_binary_files_with_a_page_suffix_are_skipped_as_binary(tmp_path: Path) -> None:
    """A PNG saved as logo.html and compressed bytes in backup.txt are skipped and listed with
    the reason, as the crawler skips such bodies; UTF-16 text is still read."""
    import gzip

    (tmp_path / "logo.html").write_bytes(b"\x89PNG\r\n\x1a\n" + bytes(range(256)) * 16)
    (tmp_path / "backup.txt").write_bytes(gzip.compress(os.urandom(4000)))
    (tmp_path / "notes.txt").write_bytes(b"\xff\xfe" + "Plain notes.".encode("utf-16-le"))
    skipped: dict[str, str] = {}
    pages = list(iter_local_pages(tmp_path, on_skip=lambda u, r: skipped.update({u: r})))
    assert [p.url.rsplit("/", 1)[-1] for p in pages] == ["notes.txt"]
    assert {u.rsplit("/", 1)[-1]: r for u, r in skipped.items()} == {
        "logo.html": "binary content in a .html file",
        "backup.txt": "binary content in a .txt file",
    }
