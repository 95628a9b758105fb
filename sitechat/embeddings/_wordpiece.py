"""An uncased BERT WordPiece tokenizer in plain Python, for the static embedder.

The static table is indexed by the token ids of all-MiniLM-L6-v2's vocabulary, so texts
must be cut exactly as that model's tokenizer cuts them; importing ``tokenizers`` or
``transformers`` at run time for that would pull in far more than the job needs. The
rules, as BERT's basic tokenizer and WordPiece define them:

* control characters are dropped, every whitespace character separates words;
* text is lower-cased and accents are stripped (Unicode NFD, combining marks removed);
* each CJK ideograph is a word of its own, and so is each punctuation character (ASCII
  symbols such as ``_ $ + < = > ^ ` | ~`` count as punctuation, as in BERT);
* each word is split greedily into the longest vocabulary pieces, continuations marked
  ``##``; a word that cannot be split, or longer than 100 characters, is ``[UNK]``.

Pure ASCII text, most of any documentation site, takes a regular-expression fast path
that yields the same words. Pieces are cached per word: a site repeats its words.
"""

from __future__ import annotations

import unicodedata
from collections.abc import Iterable, Mapping
from itertools import chain

__all__ = ["WordPieceTokenizer"]

_MAX_WORD_CHARS = 100
_WORD_CACHE_SIZE = 1 << 18


def _is_cjk(code: int) -> bool:
    """CJK ideographs (not kana or hangul), which BERT splits one by one."""
    return (
        0x4E00 <= code <= 0x9FFF
        or 0x3400 <= code <= 0x4DBF
        or 0x20000 <= code <= 0x2A6DF
        or 0x2A700 <= code <= 0x2B73F
        or 0x2B740 <= code <= 0x2B81F
        or 0x2B820 <= code <= 0x2CEAF
        or 0xF900 <= code <= 0xFAFF
        or 0x2F800 <= code <= 0x2FA1F
    )


def _replacement(char: str) -> str:
    """What ``char`` becomes before splitting on whitespace: a space, nothing, ``" c "``, or itself.

    Whitespace separates words; control and format characters and combining marks (accents,
    after NFD) vanish without separating; punctuation and CJK ideographs stand alone.
    """
    code = ord(char)
    category = unicodedata.category(char)
    if char in "\t\n\r" or category == "Zs":
        return " "
    if code == 0 or code == 0xFFFD or category in ("Cc", "Cf", "Mn"):
        return ""
    is_ascii_symbol = 33 <= code <= 47 or 58 <= code <= 64 or 91 <= code <= 96 or 123 <= code <= 126
    if is_ascii_symbol or category.startswith("P") or _is_cjk(code):
        return f" {char} "
    return char


# Filled as characters are met; ASCII up front. Safe to share: entries never change.
_TRANSLATION: dict[int, str] = {code: _replacement(chr(code)) for code in range(128)}
_SEEN: set[str] = {chr(code) for code in range(128)}


def basic_words(text: str) -> list[str]:
    """The words BERT's basic tokenizer makes of ``text`` (lower-cased, accents stripped)."""
    lowered = text.lower()
    if not lowered.isascii():
        lowered = unicodedata.normalize("NFD", lowered)
        unseen = set(lowered).difference(_SEEN)
        if unseen:
            for char in unseen:
                _TRANSLATION[ord(char)] = _replacement(char)
            _SEEN.update(unseen)
    return lowered.translate(_TRANSLATION).split()


class _WordCache(dict[str, tuple[int, ...]]):
    """Word to token ids; a miss computes the pieces (a C-speed lookup on a hit)."""

    def __init__(self, tokenizer: WordPieceTokenizer) -> None:
        super().__init__()
        self._tokenizer = tokenizer

    def __missing__(self, word: str) -> tuple[int, ...]:
        if len(self) >= _WORD_CACHE_SIZE:
            self.clear()
        ids = self[word] = self._tokenizer.word_pieces(word)
        return ids


class WordPieceTokenizer:
    """Text to token ids of a WordPiece vocabulary (one token per line, id = line number)."""

    def __init__(self, vocabulary: Iterable[str], unknown: str = "[UNK]") -> None:
        self._ids: Mapping[str, int] = {token: i for i, token in enumerate(vocabulary)}
        if unknown not in self._ids:
            raise ValueError(f"the vocabulary has no unknown token {unknown!r}")
        self._unknown_id = self._ids[unknown]
        self._longest = max(map(len, self._ids))
        self._cache = _WordCache(self)

    @property
    def size(self) -> int:
        """How many tokens the vocabulary holds; every id is below this."""
        return len(self._ids)

    def encode(self, text: str) -> list[int]:
        """The token ids of ``text``, without ``[CLS]``/``[SEP]``."""
        return list(chain.from_iterable(map(self._cache.__getitem__, basic_words(text))))

    def distinct(self, text: str) -> set[int]:
        """The set of token ids in ``text``: each distinct word is looked up once."""
        return set(chain.from_iterable(map(self._cache.__getitem__, set(basic_words(text)))))

    def word_pieces(self, word: str) -> tuple[int, ...]:
        """Greedy longest-match-first pieces of one word; ``[UNK]`` if any part has none."""
        whole = self._ids.get(word)
        if whole is not None:
            return (whole,)
        if len(word) > _MAX_WORD_CHARS:
            return (self._unknown_id,)
        pieces: list[int] = []
        start = 0
        lookup = self._ids.get
        while start < len(word):
            end = min(len(word), start + self._longest)
            found = None
            while end > start:
                piece = word[start:end] if start == 0 else "##" + word[start:end]
                found = lookup(piece)
                if found is not None:
                    break
                end -= 1
            if found is None:
                return (self._unknown_id,)
            pieces.append(found)
            start = end
        return tuple(pieces)
