"""Markdown and plain text into :class:`~sitechat.models.Page` sections.

Markdown sources (READMEs, docs folders, ``.md`` files a site serves) carry the same
structure HTML does, so they get the same treatment: one section per heading, anchored by
the slug GitHub would give that heading, so deep links work on the rendered site.
This is a line scanner, not a renderer: it needs headings and code fences right, and
leaves inline markup in the text, where it does no harm to retrieval.
"""

from __future__ import annotations

import re
from urllib.parse import unquote, urlsplit

from sitechat.ingest.charsets import codec_for, decode_bom, decode_unlabelled
from sitechat.models import Page, Section

__all__ = ["decode_text", "extract_markdown", "extract_text", "github_slug", "title_from_url"]

_FENCE_OPEN = re.compile(r"^ {0,3}(`{3,}|~{3,})(.*)$")
_ATX = re.compile(r"^ {0,3}(#{1,6})(?=[ \t]|$)(.*)$")
_ATX_CLOSE = re.compile(r"(?:^|[ \t]+)#+[ \t]*$")
_SETEXT = re.compile(r"^ {0,3}(=+|-+)[ \t]*$")
_NOT_PARAGRAPH = re.compile(r"^(?: {4,}|\t| {0,3}(?:[-+*]|\d{1,9}[.)])(?:[ \t]|$)| {0,3}>)")
_FRONT_TITLE = re.compile(r"""^title\s*[:=]\s*["']?(.*?)["']?\s*$""", re.I)
_IMAGE = re.compile(r"!\[([^\]]*)\]\([^)]*\)")
_LINK = re.compile(r"\[([^\]]*)\](?:\([^)]*\)|\[[^\]]*\])")
_TAG = re.compile(r"<[^>]{0,200}>")
_EMPHASIS_UNDERSCORE = re.compile(r"(?<!\w)_+|_+(?!\w)")
_SLUG_DROP = re.compile(r"[^\w\- ]")


def _plain_heading(text: str) -> str:
    """Heading text as it renders: links and images by their text, markup characters gone."""
    text = _IMAGE.sub(r"\1", text)
    text = _LINK.sub(r"\1", text)
    text = _TAG.sub("", text)
    text = text.replace("`", "").replace("*", "").replace("~~", "")
    text = _EMPHASIS_UNDERSCORE.sub("", text)
    return " ".join(text.split())


def github_slug(text: str, used: dict[str, int] | None = None) -> str:
    """The anchor GitHub (and most static site generators) give a heading.

    With ``used``, repeated headings get ``-1``, ``-2`` … as they do on GitHub.
    """
    slug = _SLUG_DROP.sub("", text.strip().lower()).replace(" ", "-")
    if used is None:
        return slug
    count = used.get(slug, 0)
    used[slug] = count + 1
    return slug if count == 0 else f"{slug}-{count}"


def title_from_url(url: str) -> str:
    """A readable fallback title: the last path segment without its extension, else the host."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return url
    segments = [s for s in parts.path.split("/") if s]
    if segments:
        name = unquote(segments[-1])
        stem = name.rsplit(".", 1)[0] if "." in name[1:] else name
        return stem or name
    return parts.hostname or url


def decode_text(body: bytes, charset: str | None = None) -> str:
    """Decode a served text or Markdown file: BOM, then the HTTP charset, else UTF-8 if
    valid, else windows-1252 (see :mod:`sitechat.ingest.charsets`)."""
    marked = decode_bom(body)
    if marked is not None:
        return marked
    name = codec_for(charset) if charset else None  # None too for a name Python lacks
    return body.decode(name, errors="replace") if name else decode_unlabelled(body)


def _normalise(text: str) -> str:
    """The text with LF newlines and without a BOM or NUL characters. The HTML parser
    drops NUL too, and PostgreSQL text cannot hold it: the pgvector store would keep
    another text than the one the chunk's content hash was taken of."""
    text = text.lstrip("\ufeff").replace("\r\n", "\n").replace("\r", "\n")
    return text.replace("\x00", "") if "\x00" in text else text


def _skip_front_matter(lines: list[str]) -> tuple[int, str | None]:
    """Index of the first line after YAML/TOML front matter, and its ``title`` if any."""
    if not lines or lines[0].strip() not in ("---", "+++"):
        return 0, None
    marker = lines[0].strip()
    closers = ("---", "...") if marker == "---" else ("+++",)
    for i in range(1, min(len(lines), 500)):
        if lines[i].strip() in closers:
            title = None
            for line in lines[1:i]:
                match = _FRONT_TITLE.match(line.strip())
                if match and match.group(1):
                    title = match.group(1)
                    break
            return i + 1, title
    return 0, None


class _MarkdownSections:
    def __init__(self) -> None:
        self.sections: list[Section] = []
        self.path: list[tuple[int, str]] = []
        self.anchor: str | None = None
        self.lines: list[str] = []
        self.used_slugs: dict[str, int] = {}
        self.first_h1: str | None = None

    def add(self, line: str, *, in_code: bool) -> None:
        if not line.strip() and not in_code:
            if not self.lines or not self.lines[-1].strip():
                return
            line = ""
        self.lines.append(line.rstrip() if not in_code else line)

    def take_paragraph(self) -> list[str]:
        """Remove and return the trailing paragraph lines (for a setext underline)."""
        taken: list[str] = []
        while self.lines and self.lines[-1].strip() and not _NOT_PARAGRAPH.match(self.lines[-1]):
            taken.append(self.lines.pop())
        taken.reverse()
        return taken

    def heading(self, level: int, raw: str) -> None:
        text = _plain_heading(raw)
        self.end_section()
        while self.path and self.path[-1][0] >= level:
            self.path.pop()
        self.path.append((level, text))
        self.anchor = github_slug(text, self.used_slugs) or None
        if level == 1 and self.first_h1 is None:
            self.first_h1 = text

    def end_section(self) -> None:
        text = "\n".join(self.lines).strip("\n")
        if text.strip():
            heading_path = tuple(t for _, t in self.path)
            self.sections.append(Section(heading_path, self.anchor, text))
        self.lines = []


def extract_markdown(
    text: str,
    url: str,
    *,
    content_type: str = "text/markdown",
    etag: str | None = None,
    last_modified: str | None = None,
) -> Page:
    """Split Markdown at ATX and setext headings; fenced code is never read as headings."""
    lines = _normalise(text).split("\n")
    start, front_title = _skip_front_matter(lines)
    out = _MarkdownSections()
    fence: str | None = None
    for line in lines[start:]:
        if fence is not None:
            out.add(line, in_code=True)
            stripped = line.strip()
            if (
                len(line) - len(line.lstrip(" ")) <= 3
                and stripped.startswith(fence)
                and set(stripped) == {fence[0]}
            ):
                fence = None
            continue
        opening = _FENCE_OPEN.match(line)
        if opening and not (opening.group(1)[0] == "`" and "`" in opening.group(2)):
            fence = opening.group(1)
            out.add(line, in_code=True)
            continue
        atx = _ATX.match(line)
        if atx:
            content = _ATX_CLOSE.sub("", atx.group(2).strip())
            out.heading(len(atx.group(1)), content)
            continue
        setext = _SETEXT.match(line)
        if setext:
            paragraph = out.take_paragraph()
            if paragraph:
                out.heading(
                    1 if setext.group(1)[0] == "=" else 2, " ".join(p.strip() for p in paragraph)
                )
                continue
            if setext.group(1)[0] == "-" and len(setext.group(1)) >= 3:
                continue  # a thematic break, not content
        out.add(line, in_code=False)
    out.end_section()
    title = front_title or out.first_h1 or title_from_url(url)
    return Page(
        url=url,
        title=title,
        sections=tuple(out.sections),
        content_type=content_type,
        etag=etag,
        last_modified=last_modified,
    )


def extract_text(
    text: str,
    url: str,
    *,
    content_type: str = "text/plain",
    etag: str | None = None,
    last_modified: str | None = None,
) -> Page:
    """A plain-text document as one section; runs of blank lines become one paragraph break."""
    paragraphs = []
    current: list[str] = []
    for line in _normalise(text).split("\n"):
        if line.strip():
            current.append(line.rstrip())
        elif current:
            paragraphs.append("\n".join(current))
            current = []
    if current:
        paragraphs.append("\n".join(current))
    body = "\n\n".join(paragraphs)
    first_line = paragraphs[0].split("\n", 1)[0].strip() if paragraphs else ""
    title = first_line if 0 < len(first_line) <= 80 else title_from_url(url)
    sections = (Section((), None, body),) if body else ()
    return Page(
        url=url,
        title=title,
        sections=sections,
        content_type=content_type,
        etag=etag,
        last_modified=last_modified,
    )
