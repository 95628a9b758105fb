"""Find an HTML page's main content and cut it into headed sections.

Only the main content should reach the index: navigation, cookie banners and footers
repeat on every page, crowd out real answers and make all pages look alike to the
retriever. So the main container is picked first, and one walk over it skips boilerplate
(by tag, ARIA role, and class/id words) while cutting a new
:class:`~sitechat.models.Section` at every heading, so citations can deep-link to it.

Speed matters (a docs site has thousands of pages): the walk visits block elements only
and takes a paragraph's, a code block's or a link's text in one call into lexbor, and
skipping junk during the walk avoids a second pass of CSS matching over the tree.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from selectolax.lexbor import LexborHTMLParser, LexborNode

from sitechat.models import Section

__all__ = ["MainContent", "main_sections"]

_DROP_TAGS = frozenset(
    {"script", "style", "noscript", "svg", "nav", "footer", "aside", "form", "button"}
    | {"iframe", "template", "dialog", "select", "textarea", "input", "canvas", "video"}
    | {"audio", "object", "embed", "link", "meta", "head", "title"}
)
_DROP_ROLES = frozenset({"navigation", "banner", "contentinfo", "complementary", "search"})
_MAIN_SELECTORS = (
    "main",
    "[role=main]",
    "article",
    "div.body",
    "div.rst-content",
    "div.document",
    ".md-content",
    "#content",
    "#main-content",
    "#apicontent",
    ".markdown-body",
    "#main",
    ".main-content",
    ".content",
)
# Class words distinctive enough to match inside longer names (``sphinxsidebar``).
_JUNK_LONG = (
    "cookie|consent|gdpr|breadcrumb|sidebar|sidenav|navbar|newsletter|headerlink|anchorjs"
    "|skiplink|advert|sponsor|pagination"
)
# Short words that must be a whole ``-``/``_``-separated part (``md-nav``, not ``canvas``).
_JUNK_PARTS = (
    "nav|navigation|menu|toc|ad|ads|share|sharing|social|related|header|footer|masthead"
    "|skip|pager|banner|feedback|subscribe|promo|search|comments|disqus|popup"
)
_CLASS_JUNK = re.compile(rf"{_JUNK_LONG}|(?:^|[-_\s])(?:{_JUNK_PARTS})(?:$|[-_\s])")
# Ids are often made from heading text (``related-work``), so only whole parts count.
_ID_JUNK = re.compile(rf"(?:^|[-_])(?:{_JUNK_LONG}|{_JUNK_PARTS})(?:$|[-_])")
# On links only link-shaped junk is removed.
_LINK_JUNK = re.compile(
    r"headerlink|anchorjs|skip-?link|skip-to|header-anchor|edit-?(?:this-?)?page|content__button"
)
#: Level of a definition-list entry with an id (a Sphinx API entry such as ``os.listdir``):
#: below every heading, one deeper per nested list (methods inside a class).
ENTRY_LEVEL = 7
_MAX_ENTRY_TITLE = 300
# Nesting deeper than this is indented as this deep: every line of a list nested 60,000
# levels deep would otherwise carry 120,000 spaces (text growing with the depth squared).
_MAX_LIST_INDENT = 8
_HEADINGS = {"h1": 1, "h2": 2, "h3": 3, "h4": 4, "h5": 5, "h6": 6}
_HEADING_SEL = "h1,h2,h3,h4,h5,h6"
_INLINE = frozenset(
    {"a", "abbr", "b", "bdi", "bdo", "cite", "code", "data", "del", "dfn", "em", "font", "i"}
    | {"img", "ins", "kbd", "label", "mark", "q", "s", "samp", "small", "span", "strong"}
    | {"sub", "sup", "time", "tt", "u", "var", "wbr", "math"}
)
_BLOCK_SEL = "p,div,h1,h2,h3,h4,h5,h6,pre,table,ul,ol,dl,section,article,blockquote,li"
_LAYOUT_SEL = "h1,h2,h3,h4,h5,h6,table,pre"
_NEVER_JUNK = frozenset({"html", "body", "main", "article", "section", "pre", "code"})
_ANCHOR_SYMBOLS = frozenset({"", "#", "¶", "§", "🔗", "link", "permalink"})


def _collapse(text: str) -> str:
    return " ".join(text.split())


def pick_container(tree: LexborHTMLParser) -> LexborNode | None:
    """The element holding the main content: ``<main>``, a lone ``<article>``, …, ``<body>``."""
    for selector in _MAIN_SELECTORS:
        if selector == "article":
            articles = tree.css("article")
            if len(articles) == 1:
                return articles[0]
            continue
        node = tree.css_first(selector)
        if node is not None:
            return node
    return tree.body


def _is_junk(node: LexborNode, tag: str, *, in_body: bool) -> bool:
    if tag in _DROP_TAGS:
        return True
    if tag == "header":
        # A header inside an article usually holds the article's own title.
        return in_body or node.css_first(_HEADING_SEL) is None
    attrs = node.attributes
    if not attrs or tag in _NEVER_JUNK or tag in _HEADINGS:
        return False
    if "hidden" in attrs or attrs.get("role") in _DROP_ROLES:
        return True
    classes = (attrs.get("class") or "").lower()
    if classes and "section" not in classes.split() and _CLASS_JUNK.search(classes):
        return True
    ident = attrs.get("id") or ""
    return bool(ident) and tag not in ("dt", "dd") and _ID_JUNK.search(ident.lower()) is not None


def _has_elements(node: LexborNode) -> bool:
    """Whether ``node`` has an element child (not only text or comments)."""
    child = node.child
    while child is not None:
        if not (child.tag or "-").startswith("-"):
            return True
        child = child.next
    return False


def _heading_anchor(heading: LexborNode) -> str | None:
    ident = heading.attributes.get("id")
    if ident:
        return ident
    if _has_elements(heading):  # the two queries below cost ~4 µs even on plain text
        inner = heading.css_first("[id],a[name]")
        if inner is not None and inner.mem_id != heading.mem_id:
            found = inner.attributes.get("id") or inner.attributes.get("name")
            if found:
                return found
        for link in heading.css("a[href^='#']"):
            if _is_anchor_link(link):  # a ¶ permalink names the heading's anchor
                target = (link.attributes.get("href") or "#")[1:]
                if target:
                    return target
    parent = heading.parent
    if parent is not None and parent.tag in ("section", "div", "article"):
        parent_id = parent.attributes.get("id")
        if parent_id:
            # The heading starts its section when only empty elements (old ids) come first.
            for first in parent.iter():
                if first.mem_id == heading.mem_id:
                    return parent_id
                if first.text(deep=True).strip():
                    break
    prev = heading.prev
    while prev is not None and prev.tag == "-text" and not (prev.text_content or "").strip():
        prev = prev.prev
    if prev is not None and prev.tag == "a":
        found = prev.attributes.get("id") or prev.attributes.get("name")
        if found and not prev.text().strip():
            return found
    return None


def _is_anchor_link(link: LexborNode) -> bool:
    """A ``¶``/``#`` permalink next to a heading: navigation, not part of its text."""
    attrs = link.attributes
    if _LINK_JUNK.search(attrs.get("class") or ""):
        return True
    href = attrs.get("href") or ""
    return href.startswith("#") and _collapse(link.text()).lower() in _ANCHOR_SYMBOLS


def _heading_text(heading: LexborNode) -> str:
    child = heading.first_child
    if child is not None and not (child.tag == "-text" and child.next is None):
        for node in heading.css("a,button,svg,script,style"):
            if node.tag != "a" or _is_anchor_link(node):
                node.decompose()
    return _collapse(heading.text()).strip("¶§🔗 ")


class _SectionBuilder:
    """Accumulates blocks under the current heading and cuts sections at headings."""

    def __init__(self) -> None:
        self.sections: list[Section] = []
        self.path: list[tuple[int, str, str | None]] = []  # (level, heading, its anchor)
        self.anchor: str | None = None
        self.blocks: list[str] = []
        self.inline: list[str] = []
        self.list_lines: list[str] = []
        self.list_counters: list[int] = []  # one per open list; -1 marks an unordered list
        self.item_prefix: str | None = None
        self.first_h1: str | None = None

    def flush_inline(self) -> None:
        if self.inline:
            text = _collapse("".join(self.inline))
            self.inline.clear()
            if text:
                self.add_line(text)

    def add_line(self, text: str) -> None:
        if not self.list_counters:
            self.blocks.append(text)
            return
        if self.item_prefix is not None:
            text = self.item_prefix + text
            self.item_prefix = None
        else:
            text = "  " * min(len(self.list_counters), _MAX_LIST_INDENT) + text
        self.list_lines.append(text)

    def open_list(self, ordered: bool) -> None:
        self.flush_inline()
        self.list_counters.append(0 if ordered else -1)

    def open_item(self) -> None:
        self.flush_inline()
        if not self.list_counters:
            self.list_counters.append(-1)
        counter = self.list_counters[-1]
        if counter >= 0:
            self.list_counters[-1] = counter + 1
            marker = f"{counter + 1}. "
        else:
            marker = "- "
        self.item_prefix = "  " * min(len(self.list_counters) - 1, _MAX_LIST_INDENT) + marker

    def close_item(self) -> None:
        self.flush_inline()
        self.item_prefix = None

    def close_list(self) -> None:
        self.flush_inline()
        if self.list_counters:
            self.list_counters.pop()
        if not self.list_counters:
            self._end_list()

    def _end_list(self) -> None:
        self.list_counters.clear()
        self.item_prefix = None
        if self.list_lines:
            self.blocks.append("\n".join(self.list_lines))
            self.list_lines = []

    def heading(self, level: int, text: str, anchor: str | None) -> None:
        self.flush_inline()
        self._end_list()
        if level >= ENTRY_LEVEL and not self.blocks and self.path and self.path[-1][0] == level:
            # Overloads: several signatures (``dt``) before one description share a section.
            self.blocks.append(text)
            return
        self.end_section()
        while self.path and self.path[-1][0] >= level:
            self.path.pop()
        self.path.append((level, text, anchor))
        self.anchor = anchor
        if level == 1 and self.first_h1 is None:
            self.first_h1 = text

    def leave_entries(self, level: int) -> None:
        """End the API entries of a definition list: back to the enclosing heading's section."""
        self.flush_inline()
        self._end_list()
        if not any(entry[0] >= level for entry in self.path):
            return
        self.end_section()
        while self.path and self.path[-1][0] >= level:
            self.path.pop()
        self.anchor = self.path[-1][2] if self.path else None

    def end_section(self) -> None:
        if self.blocks:
            heading_path = tuple(text for _, text, _ in self.path)
            self.sections.append(Section(heading_path, self.anchor, "\n\n".join(self.blocks)))
            self.blocks = []

    def finish(self) -> list[Section]:
        self.flush_inline()
        self._end_list()
        self.end_section()
        return self.sections


def _table_block(table: LexborNode) -> str:
    rows = []
    for row in table.css("tr"):
        cells = [
            _collapse(cell.text(separator=" ")) for cell in row.iter() if cell.tag in ("td", "th")
        ]
        if any(cells):
            rows.append(" | ".join(cells))
    return "\n".join(rows)


def _is_layout_table(table: LexborNode) -> bool:
    """A table holding headings, code or tables is page layout, not data: walk into it."""
    # ``css_first`` also matches the node itself, so ask the table's children instead.
    return any(part.css_first(_LAYOUT_SEL) is not None for part in table.iter())


def _is_leaf_inline(node: LexborNode) -> bool:
    """True when an element holds no block content (a link wrapping a card does)."""
    child = node.first_child
    if child is None or (child.tag == "-text" and child.next is None):
        return True
    return node.css_first(_BLOCK_SEL) is None


def _walk(container: LexborNode, out: _SectionBuilder, *, in_body: bool) -> None:
    """Visit the container depth-first without recursion (deep tag soup must not overflow)."""
    for br in container.css("br"):
        br.insert_before("\n")
    stack: list[tuple[LexborNode, bool]] = []
    entry_levels: list[int] = []  # one per open <dl>: the level its entries get
    child = container.last_child
    while child is not None:
        stack.append((child, False))
        child = child.prev
    while stack:
        node, leaving = stack.pop()
        tag = node.tag or "-"
        if leaving:
            if tag in ("ul", "ol"):
                out.close_list()
            elif tag == "li":
                out.close_item()
            elif tag == "dl" and entry_levels:
                out.leave_entries(entry_levels.pop())
            else:
                out.flush_inline()
            continue
        if tag == "-text":
            out.inline.append(node.text_content or "")
            continue
        if tag[0] == "-":
            continue
        if tag in _INLINE:
            if tag == "a" and _LINK_JUNK.search(node.attributes.get("class") or ""):
                continue
            if _is_leaf_inline(node):
                out.inline.append(node.text())
                continue
        elif _is_junk(node, tag, in_body=in_body):
            continue
        level = _HEADINGS.get(tag)
        if level is not None:
            anchor = _heading_anchor(node)  # first: permalinks that hold the id go next
            text = _heading_text(node)
            if text:
                out.heading(level, text, anchor)
            continue
        if tag == "dt" and entry_levels and node.attributes.get("id"):
            # An API entry (Sphinx ``dt[id]``): its own section, deep-linkable.
            text = _heading_text(node)[:_MAX_ENTRY_TITLE]
            if text:
                out.heading(entry_levels[-1], text, node.attributes.get("id"))
                continue
        if tag == "p":
            out.flush_inline()
            text = _collapse(node.text())
            if text:
                out.add_line(text)
            continue
        if tag == "pre":
            out.flush_inline()
            code = node.text().strip("\n")
            if code.strip():
                out.add_line(f"```\n{code}\n```")
            continue
        if tag == "table" and not _is_layout_table(node):
            out.flush_inline()
            block = _table_block(node)
            if block:
                out.add_line(block)
            continue
        if tag in ("ul", "ol"):
            out.open_list(tag == "ol")
        elif tag == "dl":
            out.flush_inline()
            entry_levels.append(ENTRY_LEVEL + len(entry_levels))
        elif tag == "li":
            out.open_item()
        else:
            out.flush_inline()
        stack.append((node, True))
        child = node.last_child
        while child is not None:
            stack.append((child, False))
            child = child.prev


@dataclass(frozen=True, slots=True)
class MainContent:
    """A page's main content: its sections, and what tells a real page from a list of links."""

    sections: list[Section]
    first_h1: str | None
    """The first ``<h1>``: the title when the page has no ``<title>``."""
    link_share: float
    """The share of the main container's text that is link text (0 to 1)."""
    link_count: int


def _visible_chars(text: str) -> int:
    return len(text) - sum(map(text.count, (" ", "\n", "\t", "\r", "\xa0")))


def _link_share(container: LexborNode) -> tuple[float, int]:
    """(share of the container's text inside ``<a>`` elements, number of links).

    Only visible characters count: generated indexes indent their markup heavily, and
    counting that whitespace would dilute their share of links.
    """
    anchors = container.css("a")
    if not anchors:
        return 0.0, 0
    total = _visible_chars(container.text(deep=True))
    inside = sum(_visible_chars(a.text(deep=True)) for a in anchors)
    return (min(1.0, inside / total) if total else 0.0), len(anchors)


def main_sections(tree: LexborHTMLParser) -> MainContent:
    """The main content's sections, the first ``<h1>`` and how much of it is links."""
    builder = _SectionBuilder()
    container = pick_container(tree)
    share, count = 0.0, 0
    if container is not None:
        _walk(container, builder, in_body=container.tag in ("body", "html"))
        share, count = _link_share(container)
    return MainContent(builder.finish(), builder.first_h1, share, count)
