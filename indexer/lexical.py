"""The lexical side of the index: BM25 (bm25s) over each chunk's title, section path and text.

Written with the build and loaded with it, like the vectors. English stop words are
dropped and words are stemmed (Snowball) so "causes" matches "cause".
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from functools import lru_cache
from pathlib import Path

import numpy as np

_TOKEN = re.compile(r"[a-z0-9]+(?:[-'][a-z0-9]+)*")


@lru_cache(maxsize=1)
def _stemmer():
    import Stemmer

    return Stemmer.Stemmer("english")


@lru_cache(maxsize=1)
def _stopwords() -> frozenset[str]:
    from bm25s.stopwords import STOPWORDS_EN

    return frozenset(STOPWORDS_EN)


def tokenize(text: str) -> list[str]:
    """Lower-cased, stop words dropped, stemmed word tokens."""
    words = [w for w in _TOKEN.findall(text.lower()) if w not in _stopwords()]
    return _stemmer().stemWords(words)


TEXT = "title + section path + chunk text"
STEMMER = "snowball english (PyStemmer)"
STOPWORDS = "bm25s English list"


class LexicalIndex:
    """BM25 over chunk texts, in the chunks' order. k1 = 1.2 and b = 0.75 are the usual
    defaults (Robertson & Zaragoza, "The Probabilistic Relevance Framework: BM25 and
    Beyond", Found. Trends Inf. Retr. 2009; Lucene's BM25Similarity)."""

    def __init__(self, retriever, n_docs: int):
        self._bm25 = retriever
        self.n_docs = n_docs

    @classmethod
    def build(cls, texts: Sequence[str]) -> "LexicalIndex":
        import bm25s

        retriever = bm25s.BM25(k1=1.2, b=0.75)
        corpus_tokens = [tokenize(t) or ["\u2205"] for t in texts]  # an empty doc still holds its place
        retriever.index(corpus_tokens, show_progress=False)
        return cls(retriever, len(texts))

    def params(self) -> dict[str, object]:
        """The parameters this index was built with, read from the BM25 object itself."""
        return {"library": "bm25s", "method": str(self._bm25.method), "k1": float(self._bm25.k1), "b": float(self._bm25.b),
                "text": TEXT, "stemmer": STEMMER, "stopwords": STOPWORDS}

    def save(self, directory: Path) -> None:
        self._bm25.save(str(directory))

    @classmethod
    def load(cls, directory: Path, n_docs: int) -> "LexicalIndex":
        import bm25s

        return cls(bm25s.BM25.load(str(directory)), n_docs)

    def scores(self, query: str) -> np.ndarray:
        """BM25 score of every chunk for `query` (zeros when no query word is known)."""
        return self.scores_of(tokenize(query))

    def scores_of(self, tokens: Sequence[str]) -> np.ndarray:
        """BM25 score of every chunk for already tokenized (stemmed) query tokens."""
        tokens = [t for t in tokens if t in self._bm25.vocab_dict]
        if not tokens:
            return np.zeros(self.n_docs, dtype=np.float32)
        return np.asarray(self._bm25.get_scores(tokens), dtype=np.float32)

    def knows(self, token: str) -> bool:
        """True when the stemmed `token` occurs in some chunk."""
        return token in self._bm25.vocab_dict

    def postings(self, token: str) -> np.ndarray:
        """The ids of the chunks that contain the stemmed `token` (empty when none does)."""
        tid = self._bm25.vocab_dict.get(token)
        if tid is None:
            return np.zeros(0, dtype=np.int64)
        scores = self._bm25.scores
        return np.asarray(scores["indices"][scores["indptr"][tid]:scores["indptr"][tid + 1]])

    def idf(self, token: str) -> float:
        """BM25's inverse document frequency of the stemmed `token` (0 when unknown)."""
        df = len(self.postings(token))
        if not df:
            return 0.0
        return float(np.log(1.0 + (self.n_docs - df + 0.5) / (df + 0.5)))
