"""No match: when nothing in the index answers a query, say so instead of ranking whatever
is nearest.

Three reasons, checked in order:
- the query has no content word once stop words and question words are set aside ("the",
  "what is it?", "???", "K+ 6.2");
- none of its content words occurs in the index, even after spelling correction
  ("asdfgh qwerty");
- its best evidence is weak: a logistic score over the best passage's cosine, the best
  heading cosine and how much of the query's (IDF-weighted) wording the best passages
  contain is below a threshold. The weights and the threshold are calibrated by
  `python -m evals.nomatch_calibration` on the public dev sets (every query there has an
  answer) against evals/nomatch (questions the default corpus cannot answer), and written to
  data/nomatch.json with the embedding model they hold for: with another model, only the
  first two rules apply.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np

from retrieval.ranker import FEATURES, QueryTerms

POLICY_FILE = Path(__file__).parent / "data" / "nomatch.json"

NO_CONTENT = "The question has no words to search for."
NOTHING_KNOWN = "None of the question's words occurs in the knowledge base."
WEAK_EVIDENCE = "Nothing in the knowledge base answers this question closely enough."

EVIDENCE = ("best_dense", "best_heading", "best_cover", "best_cover_all", "unknown_share", "phrase_cover")
_TEXT_COVER = FEATURES.index("text_cover")


@dataclass
class Candidates:
    """One query's candidate passages (chunk ids) with their similarities and features."""

    ids: np.ndarray
    dense: np.ndarray
    bm25: np.ndarray
    heading: np.ndarray
    features: np.ndarray
    terms: QueryTerms


@dataclass(frozen=True)
class Evidence:
    """How well the best candidates match the query, whatever ranked them."""

    best_dense: float
    best_heading: float
    best_cover: float  # IDF-weighted share of the query's known words in the best-covering passage
    best_cover_all: float  # the same, counting words the index does not know as uncovered
    unknown_share: float  # share of the query's content words that no passage contains
    phrase_cover: float = 0.0  # share of the query's adjacent word pairs found adjacent in one of the best passages

    @classmethod
    def of(cls, cands: Candidates, top: list[int], texts: list[str] | None = None, question: str = "") -> "Evidence":
        """`texts`: the best passages' texts (by cosine and by BM25), for `phrase_cover`."""
        if not len(cands.ids):
            return cls(-1.0, -1.0, 0.0, 0.0, 1.0, 0.0)
        terms = cands.terms
        known = float(terms.idf.sum())
        unseen = len(terms.unknown) * (float(terms.idf.max()) if len(terms.idf) else 1.0)
        cover = float(cands.features[:, _TEXT_COVER].max())
        words = len(terms.tokens) + len(terms.unknown)
        return cls(float(cands.dense.max()), float(cands.heading.max()), cover,
                   cover * known / (known + unseen) if known + unseen > 0 else 0.0, len(terms.unknown) / words if words else 1.0,
                   phrase_cover(question, texts or []))

    def vector(self) -> np.ndarray:
        return np.array([getattr(self, name) for name in EVIDENCE], dtype=np.float64)


@lru_cache(maxsize=8192)
def _passage_tokens(text: str) -> tuple[str, ...]:
    """A passage's BM25 tokens; the best passages of one topic come back query after query, and
    tokenising them was a tenth of a search at MedQuAD scale."""
    from indexer.lexical import tokenize

    return tuple(tokenize(text))


def phrase_cover(question: str, texts: list[str]) -> float:
    """Share of the question's adjacent (stemmed, stop words dropped) word pairs that some text
    holds adjacent too; for a one-word question, whether some text holds the word."""
    from indexer.lexical import tokenize

    words = tokenize(question)
    if not words or not texts:
        return 0.0
    seen_pairs: set[tuple[str, str]] = set()
    seen_words: set[str] = set()
    for text in texts:
        tokens = _passage_tokens(text)
        seen_words.update(tokens)
        seen_pairs.update(zip(tokens, tokens[1:]))
    pairs = list(zip(words, words[1:]))
    if not pairs:
        return float(words[0] in seen_words)
    return sum(pair in seen_pairs for pair in pairs) / len(pairs)


@dataclass(frozen=True)
class NoMatchPolicy:
    """A logistic score over EVIDENCE; below `threshold`, nothing answers."""

    model: str  # the embedding model the weights hold for ("" = model-free: no evidence threshold)
    weights: tuple[float, ...] = ()
    bias: float = 0.0
    threshold: float = 0.5
    card: dict[str, Any] | None = None

    @classmethod
    def model_free(cls) -> "NoMatchPolicy":
        return cls(model="")

    @classmethod
    def load(cls, path: Path = POLICY_FILE) -> "NoMatchPolicy | None":
        if not path.exists():
            return None
        data = json.loads(path.read_text(encoding="utf-8"))
        if list(data["evidence"]) != list(EVIDENCE):
            raise ValueError(f"{path}: evidence features differ from retrieval.nomatch.EVIDENCE; recalibrate")
        return cls(model=data["embedding_model"], weights=tuple(data["weights"]), bias=float(data["bias"]), threshold=float(data["threshold"]), card=data)

    def probability(self, evidence: Evidence) -> float:
        """The calibrated probability that something answers."""
        z = self.bias + float(np.dot(self.weights, evidence.vector()))
        return 1.0 / (1.0 + math.exp(-z))

    def judge(self, evidence: Evidence) -> str | None:
        """The reason nothing answers, or None when the evidence is strong enough."""
        if not self.weights:
            return None
        return WEAK_EVIDENCE if self.probability(evidence) < self.threshold else None
