"""Keeping absurdly deep nesting from costing time quadratic in a page's size.

An HTML5 parser checks the stack of open elements at every block start tag (is a ``<p>``
open in scope? an ``<li>``?), so a page of 60,000 nested ``<ul><li>`` (1 MB) takes the
parser about 40 seconds, and a 5 MB one would take a quarter of an hour. No real page nests
blocks hundreds deep, so before parsing, block tags (and their end tags) nested deeper than
:data:`MAX_NESTING` are blanked out: their text stays, in the innermost kept block.

The scan is one pass of a regular expression over the block tags, approximating the
parser's own rules closely enough for a depth guard: an end tag closes up to its latest
open namesake (a stray one is left for the parser), and a new ``<li>`` closes an open
``<li>`` (a ``<dd>`` or ``<dt>`` an open ``<dd>`` or ``<dt>``), as unclosed list items do.
"""

from __future__ import annotations

import re

__all__ = ["MAX_NESTING", "flatten_deep_nesting", "too_deep"]

#: Block elements nested deeper than this are flattened into the one at this depth.
MAX_NESTING = 256

_BLOCK_TAG = re.compile(
    r"<(/?)(div|ul|ol|li|dl|dd|dt|blockquote|section|article|aside|nav|main|header|footer|"
    r"form|fieldset|details|figure|center|menu|dir)(?=[\s/>])[^>]*>",
    re.IGNORECASE,
)
# The same names in lower case only, for the scan of a page with no upper-case tag at all
# (nearly every page today): a case-blind scan takes twice as long.
_BLOCK_NAME = (
    r"<(/?)(div|ul|ol|li|dl|dd|dt|blockquote|section|article|aside|nav|main|header|footer|"
    r"form|fieldset|details|figure|center|menu|dir)[\s/>]"
)
_LOWER_BLOCK_TAG = re.compile(_BLOCK_NAME)
_ANY_BLOCK_TAG = re.compile(_BLOCK_NAME, re.IGNORECASE)
_UPPER_TAG = re.compile(r"</?[A-Z]")
_CLOSES_SIBLING = {"li": ("li",), "dd": ("dd", "dt"), "dt": ("dd", "dt")}


class _Depth:
    """The stack of open block elements, as the scan sees it."""

    def __init__(self) -> None:
        self.stack: list[str] = []
        self.open: dict[str, int] = {}  # tag name -> how many are on the stack

    def start(self, name: str) -> int:
        """Open ``name``; its depth (1 for the outermost)."""
        closes = _CLOSES_SIBLING.get(name)
        if closes and self.stack and self.stack[-1] in closes:
            self._pop()
        self.stack.append(name)
        self.open[name] = self.open.get(name, 0) + 1
        return len(self.stack)

    def end(self, name: str) -> int | None:
        """Close the latest open ``name`` and all inside it; the depth it had, or None for
        a stray end tag (nothing of that name open)."""
        if not self.open.get(name):
            return None
        while True:
            depth = len(self.stack)
            if self._pop() == name:
                return depth

    def _pop(self) -> str:
        name = self.stack.pop()
        self.open[name] -= 1
        return name


def too_deep(html: str, limit: int = MAX_NESTING) -> bool:
    """Whether block elements in ``html`` nest deeper than ``limit``."""
    if html.count("<") <= limit:  # fewer tags than the limit cannot nest past it
        return False
    mixed = _UPPER_TAG.search(html) is not None
    depth = _Depth()
    for closing, name in (_ANY_BLOCK_TAG if mixed else _LOWER_BLOCK_TAG).findall(html):
        if mixed:
            name = name.lower()
        if closing:
            depth.end(name)
        elif depth.start(name) > limit:
            return True
    return False


def flatten_deep_nesting(html: str, limit: int = MAX_NESTING) -> str:
    """``html`` with the block tags nested deeper than ``limit`` replaced by a space; the
    very same string when nothing nests that deep (the common case, one scan)."""
    if not too_deep(html, limit):
        return html
    depth = _Depth()

    def visit(match: re.Match[str]) -> str:
        name = match.group(2).lower()
        level = depth.end(name) if match.group(1) else depth.start(name)
        return match.group(0) if level is None or level <= limit else " "

    return _BLOCK_TAG.sub(visit, html)
