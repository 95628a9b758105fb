"""Recognising messages that are only small talk ("hi", "thanks!", "ok, bye").

Searching the site for "thanks" finds nothing (so the user is told the site does not cover
it), and rewriting it as a follow-up searches the previous question again (so the user gets
the previous answer twice). A message made only of greeting, thanks, goodbye or
acknowledgement words is answered with a short reply instead, with no search and no model
call.

Recognition is narrow on purpose, since a real question answered with "You're welcome!"
is far worse than small talk answered by a search: English only, at most
:data:`MAX_WORDS` words, every word from the fixed lists below, at least one of them a
word of its kind, and a question mark leaves only greetings ("hello?"). "Hi, how do I reset
my password?" is a question.
"""

from __future__ import annotations

import re
from typing import Literal

__all__ = ["MAX_WORDS", "SmallTalk", "small_talk_kind"]

SmallTalk = Literal["greeting", "thanks", "goodbye", "acknowledgement"]

MAX_WORDS = 10

# the words that make a message one kind of small talk, most telling kind first: "ok
# thanks, bye" is a goodbye, "thanks, great" thanks
_KINDS: tuple[tuple[SmallTalk, frozenset[str]], ...] = (
    ("goodbye", frozenset({"bye", "goodbye", "byebye", "cya", "farewell", "goodnight"})),
    ("thanks", frozenset({"thanks", "thank", "thx", "ty", "cheers", "appreciated", "thnx"})),
    (
        "greeting",
        frozenset({"hi", "hello", "hey", "hiya", "howdy", "greetings", "morning", "evening"}),
    ),
    (
        "acknowledgement",
        frozenset(
            {
                "ok",
                "okay",
                "k",
                "cool",
                "great",
                "nice",
                "perfect",
                "awesome",
                "excellent",
                "understood",
                "alright",
                "gotcha",
                "got",
                "noted",
            }
        ),
    ),
)
# words that may stand beside those, but make nothing small talk on their own
_FILLERS = frozenset(
    {
        "a",
        "again",
        "all",
        "and",
        "afternoon",
        "bot",
        "everyone",
        "for",
        "good",
        "it",
        "lot",
        "many",
        "much",
        "now",
        "oh",
        "so",
        "that",
        "the",
        "there",
        "very",
        "you",
        "your",
        "help",
        "then",
    }
)
# one set built once, so checking a word is one lookup
_VOCABULARY = _FILLERS.union(*(words for _, words in _KINDS))
_WORD = re.compile(r"[a-z]+(?:'[a-z]+)?")
# anything but words, spaces, this punctuation and emoji means the message says more
_PUNCTUATION = re.compile(r"[\s.,!?;:~…\-'\u2019()\U0001F300-\U0001FAFF\u2600-\u27BF]*")


def small_talk_kind(message: str) -> SmallTalk | None:
    """The kind of small talk ``message`` is made of, or None when it may be a question."""
    text = message.lower().replace("\u2019", "'")
    words = _WORD.findall(text)
    if not words or len(words) > MAX_WORDS:
        return None
    if _PUNCTUATION.fullmatch(_WORD.sub(" ", text)) is None:
        return None  # digits, symbols, a URL, another script: not only small talk
    if not _VOCABULARY.issuperset(words):
        return None
    present = set(words)
    for kind, keys in _KINDS:
        if keys & present and ("?" not in text or kind == "greeting"):
            return kind
    return None
