"""Small text helpers shared by the keyword side of retrieval and the extractive answerer."""

from __future__ import annotations

import re
from functools import lru_cache

__all__ = [
    "ENGLISH_STOPWORDS",
    "STOPWORDS",
    "WORD_OR_COMPOUND_RE",
    "compound_words",
    "content_terms",
    "split_sentences",
    "stem",
]

_STOPWORD_TEXT = """
    a about above after again against all am an and any are as at be because been before
    being below between both but by can could did do does doing down during each few for
    from further had has have having he her here hers herself him himself his how i if in
    into is it its itself just me more most my myself no nor not now of off on once only
    or other our ours ourselves out over own same she should so some such than that the
    their theirs them themselves then there these they this those through to too under
    until up very was we were what when where which while who whom why will with would
    you your yours yourself yourselves
"""
ENGLISH_STOPWORDS = frozenset(_STOPWORD_TEXT.split())

# words that carry no topic in a question to a website
STOPWORDS = ENGLISH_STOPWORDS | frozenset("please tell know want need get use using used".split())

_WORD_RE = re.compile(r"[^\W_]+(?:['’][^\W_]+)?", re.UNICODE)
# Words joined by ``.`` ``/`` ``_`` ``-`` or ``:`` with nothing between them: a version
# (``2.3.1``), a path (``/v1/users/{id}``), a dotted name (``os.path.join``), ``max_tokens``.
_PART = r"[^\W_]+"
_JOINED = rf"(?:[./_:-](?:{_PART}|\{{{_PART}\}}))"
_COMPOUND_RE = re.compile(rf"{_PART}{_JOINED}+", re.UNICODE)
WORD_OR_COMPOUND_RE = re.compile(rf"{_PART}{_JOINED}*", re.UNICODE)
"""A word, or a compound whole (see :func:`compound_words`)."""
_SENTENCE_RE = re.compile(r"(?<=[.!?])\s+(?=[A-Z0-9`\"'(\[])|\n{2,}|\n(?=[-*] |\d+\. |```)")


@lru_cache(maxsize=65536)
def stem(word: str) -> str:
    """A light, predictable English suffix stripper: ``installing`` → ``install``.

    A final ``e`` goes too, so ``delete``, ``deleted`` and ``deleting`` meet at ``delet``.
    """
    for suffix, keep in (("ies", "y"), ("ing", ""), ("ed", ""), ("es", ""), ("s", "")):
        if word.endswith(suffix) and len(word) - len(suffix) >= 3:
            if suffix == "s" and word.endswith(("ss", "us", "is")):
                return word
            return word[: -len(suffix)] + keep
    if word.endswith("e") and len(word) >= 4:
        return word[:-1]
    return word


def content_terms(text: str) -> list[str]:
    """Lower-cased, stemmed words of ``text`` without stopwords, in order."""
    return [stem(w) for w in _WORD_RE.findall(text.lower()) if w not in STOPWORDS]


def compound_words(text: str) -> list[str]:
    """The lower-cased compounds of ``text`` (``2.3.1``, ``v1/users``), in order, distinct.

    A keyword index splits them into their parts, and matching the parts one by one
    loses what tells ``2.3.1`` from ``1.3.1`` or ``/v1/users`` from ``/v2/users``: their
    order. Searched as one phrase, a compound matches only where its parts stand together.
    """
    return list(dict.fromkeys(_COMPOUND_RE.findall(text.lower())))


def split_sentences(text: str) -> list[str]:
    """Split prose into sentences (and list items); good enough for picking passages."""
    return [s.strip() for s in _SENTENCE_RE.split(text) if s and s.strip()]
