"""Third-party embedders: one with LangChain's defaults only, one naming its own identity."""

from __future__ import annotations

import hashlib
import math
import re
from typing import ClassVar

from langchain_core.embeddings import Embeddings


class WordBagEmbeddings(Embeddings):
    """A plain LangChain embedder: no ``embedder_name``, no ``dimension``."""

    def _one(self, text: str) -> list[float]:
        vector = [0.0] * 32
        for word in re.findall(r"\w+", text.lower()):
            vector[int(hashlib.md5(word.encode()).hexdigest(), 16) % 32] += 1.0
        norm = math.sqrt(sum(x * x for x in vector)) or 1.0
        return [x / norm for x in vector]

    def embed_documents(self, texts: list[str]) -> list[list[float]]:
        return [self._one(text) for text in texts]

    def embed_query(self, text: str) -> list[float]:
        return self._one(text)


class NamedWordBag(WordBagEmbeddings):
    """Declares an identity that does not start with its entry-point name."""

    embedder_name: ClassVar[str] = "wordbag-v1"
    dimension: ClassVar[int] = 32
