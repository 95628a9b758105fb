"""Section-level figures for the retrieval benchmark: did the right *passage* come back?

Page-level recall asks whether a passage of the right page is among the top k. An answer,
though, is built from the passages themselves, so ``examples/eval/*-sections.jsonl`` label
the sections (``page#id``) whose text answers each question, and two figures count the
questions answered by a passage of one of them:

* **sections@k**: among the retrieved hits;
* **context**: among the passages the chat builds its answer from
  (:attr:`~sitechat.retrieval.hybrid.RetrievalResult.context`: the best page's next
  passage takes the weakest hit's place).

A passage counts for its own deep link and for the innermost ``<section>`` around that
anchor in the page's HTML: Sphinx gives every API entry an anchor of its own
(``os.path.split``) inside the section a label names.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any
from urllib.parse import urljoin

from selectolax.lexbor import LexborHTMLParser, LexborNode

from sitechat.models import SearchHit
from sitechat.retrieval.hybrid import HybridRetriever

__all__ = ["SectionMap", "measure_sections"]


def _section_id(node: LexborNode) -> str | None:
    if node.tag == "section" or "section" in (node.attributes.get("class") or "").split():
        return node.attributes.get("id")
    return None


class SectionMap:
    """The sections a passage lies in, read from the site's HTML files under ``directory``."""

    def __init__(self, directory: Path, base: str) -> None:
        self.directory = directory
        self.base = base
        self._pages: dict[str, dict[str, str]] = {}

    def links(self, hit: SearchHit) -> set[str]:
        """The passage's deep link, and its innermost enclosing section's."""
        chunk = hit.chunk
        found = {chunk.link}
        if chunk.anchor and chunk.url.startswith(self.base):
            page = chunk.url[len(self.base) :]
            if page not in self._pages:
                self._pages[page] = self._enclosing(page)
            section = self._pages[page].get(chunk.anchor)
            if section:
                found.add(f"{chunk.url}#{section}")
        return found

    def _enclosing(self, page: str) -> dict[str, str]:
        """``{anchor: id of the innermost section holding it}`` for one page."""
        path = self.directory / page
        if not path.is_file():
            return {}
        enclosing: dict[str, str] = {}
        for node in LexborHTMLParser(path.read_bytes()).css("[id]"):
            anchor = node.attributes.get("id")
            parent: LexborNode | None = node
            while parent is not None and anchor:
                section = _section_id(parent)
                if section:
                    enclosing[anchor] = section
                    break
                parent = parent.parent
        return enclosing


def _labelled(labels: Path) -> list[dict[str, Any]]:
    lines = labels.read_text(encoding="utf-8").splitlines()
    return [json.loads(line) for line in lines if line.strip() and not line.startswith("#")]


async def measure_sections(
    retriever: HybridRetriever, labels: Path, base: str, sections: SectionMap, k: int
) -> dict[str, int]:
    """``{"sections": n, "context": n, "n": questions}`` for one labelled question set."""
    questions = _labelled(labels)
    in_hits = in_context = 0
    for question in questions:
        wanted = {urljoin(base, entry) for entry in question["expected"]}
        result = await retriever.retrieve(question["question"], k)
        in_hits += any(sections.links(hit) & wanted for hit in result.hits)
        in_context += any(sections.links(hit) & wanted for hit in result.context)
    return {"sections": in_hits, "context": in_context, "n": len(questions)}
