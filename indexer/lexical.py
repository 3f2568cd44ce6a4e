"""The lexical side of the index: BM25 (bm25s) over each chunk's title, section path and text.

Written with the build and loaded with it, like the vectors. English stop words are
dropped and words are stemmed (Snowball) so "causes" matches "cause".
"""

from __future__ import annotations

import math
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


EMPTY = "\u2205"  # the one token of a chunk with no words: an empty doc still holds its place

TermCounts = tuple[tuple[str, ...], tuple[int, ...]]  # a chunk's distinct terms in first-occurrence order, and how often each occurs


def term_counts(text: str) -> TermCounts:
    """What BM25 needs of one chunk: its distinct tokens (first occurrence first) and their counts."""
    counts: dict[str, int] = {}
    for token in tokenize(text) or [EMPTY]:
        counts[token] = counts.get(token, 0) + 1
    return tuple(counts), tuple(counts.values())


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
        return cls.from_counts([term_counts(t) for t in texts])

    @classmethod
    def from_counts(cls, docs: Sequence[TermCounts], k1: float = 1.2, b: float = 0.75) -> "LexicalIndex":
        """BM25 from each chunk's term counts (see `from_arrays`)."""
        vocab: dict[str, int] = {}
        ids: list[int] = []
        tfs: list[int] = []
        for terms, counts in docs:
            ids.extend([vocab.setdefault(t, len(vocab)) for t in terms])
            tfs.extend(counts)
        return cls.from_arrays(list(vocab), np.asarray(ids, dtype=np.int64), np.asarray(tfs, dtype=np.int64),
                               np.fromiter((len(t) for t, _ in docs), dtype=np.int64, count=len(docs)), k1, b)

    @classmethod
    def from_arrays(cls, terms: Sequence[str], term_ids: np.ndarray, tfs: np.ndarray, terms_per_doc: np.ndarray,
                    k1: float = 1.2, b: float = 0.75) -> "LexicalIndex":
        """BM25 (Lucene variant, bm25s's default) computed in one vectorised pass from every
        chunk's distinct terms: `term_ids` index `terms` (any numbering), `tfs` are their counts,
        `terms_per_doc` how many belong to each chunk, in order. The scores are bm25s's own to
        the last bit (the same float64 operations in the same order, stored as float32; a test
        compares them with `bm25s.BM25.index`), but the vocabulary is numbered in first-seen
        order, so the same chunks always give the same files; and a build from cached term ids
        never re-tokenises unchanged text."""
        import bm25s
        import scipy.sparse as sp

        retriever = bm25s.BM25(k1=k1, b=b)
        if retriever.method != "lucene" or retriever.idf_method != "lucene":
            raise RuntimeError(f"bm25s defaults changed ({retriever.method}/{retriever.idf_method}); LexicalIndex.from_arrays computes Lucene BM25")
        n_docs = len(terms_per_doc)
        term_ids = np.asarray(term_ids, dtype=np.int64)
        # the vocabulary in first-seen order, as the chunks are read
        unique, first = np.unique(term_ids, return_index=True)
        order = np.argsort(first, kind="stable")
        local = np.empty(int(unique[-1]) + 1 if len(unique) else 0, dtype=np.int32)
        local[unique[order]] = np.arange(len(unique), dtype=np.int32)
        vocab_idx = local[term_ids]
        n_vocab = len(unique)
        doc_idx = np.repeat(np.arange(n_docs, dtype=np.int32), terms_per_doc)
        tf = np.asarray(tfs, dtype=np.float32)
        doc_lens = np.bincount(doc_idx, weights=tfs, minlength=n_docs).astype(np.int64)
        # bm25s: idf per term with math.log, in float64, stored as float32
        df = np.bincount(vocab_idx, minlength=n_vocab)
        idf = np.fromiter((math.log(1 + (n_docs - f + 0.5) / (f + 0.5)) for f in df.tolist()), dtype=np.float32, count=n_vocab)
        # bm25s, per document: tf / (k1 * ((1 - b) + b * l_d / l_avg) + tf), the bracket a float64 scalar
        avg_doc_len = doc_lens.mean() if n_docs else np.float64(0.0)
        norm = k1 * ((1 - b) + b * doc_lens.astype(np.float64) / avg_doc_len) if n_docs else np.zeros(0)
        tfc = tf / (norm[doc_idx] + tf)
        scores = (idf[vocab_idx] * tfc).astype(np.float32)
        matrix = sp.csc_matrix((scores, (doc_idx, vocab_idx)), shape=(n_docs, n_vocab), dtype=np.float32)
        retriever.scores = {"data": matrix.data, "indices": matrix.indices, "indptr": matrix.indptr, "num_docs": n_docs}
        vocab = {terms[g]: i for i, g in enumerate(unique[order].tolist())}
        if "" not in vocab:
            vocab[""] = n_vocab  # as bm25s.BM25.index adds it: the token an empty query falls back on
        retriever.vocab_dict = vocab
        retriever.unique_token_ids_set = set(vocab.values())
        retriever.nonoccurrence_array = None
        return cls(retriever, n_docs)

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
