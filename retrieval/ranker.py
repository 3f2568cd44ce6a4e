"""The learned ranker: one score per candidate passage from the signals the engine has,
instead of hand-set fusion weights.

Candidates are the union of the dense, BM25 and question-to-heading lists. For each, the
features below are computed the same way at training time (`evals.ranker_training`) and at
search time, and a LightGBM lambdarank model (`data/ranker.txt`, described by
`data/ranker.json`: training data, split, features, held-out metrics) scores them.

Every similarity is also given relative to the query's other candidates (gap to the best,
share of the best, rank), so the model compares passages within a query rather than
learning one collection's score scale; and features a collection may lack (question
headings, titles that name the topic, evidence kinds) come with what tells the model they
are absent (`title_question_share`, zeros), so their absence does not read as a bad match.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np

from indexer.index_store import LoadedIndex
from indexer.lexical import tokenize
from indexer.vocabulary import EvidenceKind
from retrieval.aspects import aspect_of, aspects_in

DATA = Path(__file__).parent / "data"
MODEL_FILE = DATA / "ranker.txt"
CARD_FILE = DATA / "ranker.json"

# Question types that MedQuAD and MedicationQA annotate beyond retrieval.aspects' clinical
# aspects (matched the same way: word starts, any case).
EXTRA_TYPES: dict[str, tuple[str, ...]] = {
    "inheritance": ("inherit", "genetic change", "genes related", "gene ", "mutation", "hereditary"),
    "frequency": ("how many people", "how common", "frequency", "prevalence", "incidence"),
    "side effects": ("side effect", "adverse", "unwanted", "reaction"),
    "interaction": ("interact", "together with", "take with", "combined with", "alcohol"),
    "usage": ("how to take", "how do i take", "when to take", "how should", "use", "used for", "what is it for", "indicat"),
    "storage": ("store", "storage", "expire", "expiration", "dispos"),
    "information": ("what is", "what are", "information", "overview", "definition", "defin"),
    "support": ("support group", "organization", "resource"),
}
_EXTRA = {name: re.compile(r"\b(?:" + "|".join(re.escape(s) for s in stems) + r")", re.I) for name, stems in EXTRA_TYPES.items()}
_QUESTION_TITLE = re.compile(r"\?\s*$|^(?:what|how|why|when|which|who|where|is|are|can|should|does|do)\b", re.I)


def question_types(text: str) -> set[str]:
    """retrieval.aspects' aspects plus the extra question types found in `text`."""
    return aspects_in(text) | {name for name, pattern in _EXTRA.items() if pattern.search(text)}


def asked_types(question: str) -> set[str]:
    """What a question asks: its one aspect (retrieval.aspects.aspect_of) if it names one,
    else the extra question types it names."""
    aspect = aspect_of(question)
    if aspect:
        return {aspect}
    return {name for name, pattern in _EXTRA.items() if pattern.search(question)}


FEATURES = (
    "dense",  # cosine between the query and the passage
    "dense_gap",  # ... minus the best cosine among the query's candidates
    "dense_rank",  # log2(1 + rank by cosine among the candidates)
    "bm25_share",  # BM25 / the best BM25 among the candidates (0 when no word matches)
    "bm25_rank",  # log2(1 + rank by BM25)
    "heading",  # cosine between the query and the section's title + heading path
    "heading_gap",
    "heading_rank",
    "text_cover",  # IDF-weighted share of the query's words in the passage (title and headings included)
    "title_cover",  # ... in the article title
    "heading_cover",  # ... in the section's heading path
    "rare_cover",  # whether the query's rarest word is in the passage
    "type_match_heading",  # 1: the title/heading addresses the question type asked; -1: only other types; 0: neither
    "type_match_text",  # the same for the passage's first sentences
    "query_has_type",  # the question names a type
    "title_question",  # the article title or a heading is a question
    "title_question_share",  # share of the query's candidates whose title/heading is a question (the collection has question headings)
    "position",  # the passage's place in its article (0 = first)
    "first_in_section",
    "tokens",  # passage length in model word pieces / 220
    "guideline",  # the passage cites a guideline
    "research",  # the passage cites research
    "query_terms",  # content words in the query
    "rrf",  # equal-weight reciprocal rank fusion of the three ranks (k = 60)
)


@dataclass
class QueryTerms:
    """The query's content words as the BM25 index knows them, with their IDF."""

    tokens: list[str]
    idf: np.ndarray
    postings: list[np.ndarray]
    unknown: list[str]  # content words no passage contains

    @classmethod
    def of(cls, lexical, text: str) -> "QueryTerms":
        seen: list[str] = []
        for t in tokenize(text):
            if t not in seen:
                seen.append(t)
        known = [t for t in seen if lexical.knows(t)]
        return cls(known, np.array([lexical.idf(t) for t in known], dtype=np.float64), [lexical.postings(t) for t in known],
                   [t for t in seen if not lexical.knows(t)])


class FeatureExtractor:
    """Per-index caches (token sets of titles and headings, question types of sections and
    passages) and the feature matrix of one query's candidates."""

    def __init__(self, index: LoadedIndex):
        self.index = index
        self._section_tokens: dict[str, tuple[frozenset[str], frozenset[str], bool, frozenset[str]]] = {}
        self._chunk_types: dict[int, frozenset[str]] = {}
        self._first: dict[str, int] = {}
        for i, chunk in enumerate(index.chunks):
            self._first.setdefault(chunk.section_id, i)

    def _section(self, i: int) -> tuple[frozenset[str], frozenset[str], bool, frozenset[str]]:
        chunk = self.index.chunks[i]
        cached = self._section_tokens.get(chunk.section_id)
        if cached is None:
            headings = " ".join(chunk.section_path)
            question = bool(_QUESTION_TITLE.search(chunk.article_title)) or any(_QUESTION_TITLE.search(h) for h in chunk.section_path)
            cached = (frozenset(tokenize(chunk.article_title)), frozenset(tokenize(headings)), question,
                      frozenset(question_types(f"{chunk.article_title} {headings}")))
            self._section_tokens[chunk.section_id] = cached
        return cached

    def _types(self, i: int) -> frozenset[str]:
        cached = self._chunk_types.get(i)
        if cached is None:
            cached = self._chunk_types[i] = frozenset(question_types(self.index.chunks[i].text[:240]))
        return cached

    def matrix(self, question: str, terms: QueryTerms, ids: np.ndarray, dense: np.ndarray, bm25: np.ndarray, heading: np.ndarray) -> np.ndarray:
        """Features (len(ids), len(FEATURES)) of the candidates `ids`, given their cosine,
        BM25 and heading similarity."""
        n = len(ids)
        out = np.zeros((n, len(FEATURES)), dtype=np.float32)
        if not n:
            return out
        col = {name: j for j, name in enumerate(FEATURES)}

        def ranks(values: np.ndarray) -> np.ndarray:
            order = np.argsort(-values, kind="stable")
            r = np.empty(n)
            r[order] = np.arange(1, n + 1)
            return r

        dr, br, hr = ranks(dense), ranks(bm25), ranks(heading)
        br[bm25 <= 0] = n
        out[:, col["dense"]] = dense
        out[:, col["dense_gap"]] = dense - dense.max()
        out[:, col["dense_rank"]] = np.log2(1 + dr)
        top_bm25 = float(bm25.max())
        out[:, col["bm25_share"]] = bm25 / top_bm25 if top_bm25 > 0 else 0.0
        out[:, col["bm25_rank"]] = np.log2(1 + br)
        out[:, col["heading"]] = heading
        out[:, col["heading_gap"]] = heading - heading.max()
        out[:, col["heading_rank"]] = np.log2(1 + hr)
        out[:, col["rrf"]] = 60 * (1 / (60 + dr) + 1 / (60 + br) + 1 / (60 + hr))

        # Word coverage, weighted by IDF, from the BM25 postings (no passage is re-read).
        total = float(terms.idf.sum())
        if terms.tokens and total > 0:
            covered = np.zeros(n)
            for weight, posting in zip(terms.idf, terms.postings):
                covered += weight * np.isin(ids, posting, assume_unique=False)
            out[:, col["text_cover"]] = covered / total
            rarest = terms.postings[int(np.argmax(terms.idf))]
            out[:, col["rare_cover"]] = np.isin(ids, rarest)
        asked = asked_types(question)
        out[:, col["query_has_type"]] = float(bool(asked))
        out[:, col["query_terms"]] = len(terms.tokens) + len(terms.unknown)
        weights = dict(zip(terms.tokens, terms.idf))
        questions = 0
        for row, i in enumerate(ids):
            i = int(i)
            title_tokens, heading_tokens, is_question, heading_types = self._section(i)
            if total > 0:
                out[row, col["title_cover"]] = sum(w for t, w in weights.items() if t in title_tokens) / total
                out[row, col["heading_cover"]] = sum(w for t, w in weights.items() if t in heading_tokens) / total
            if asked:
                out[row, col["type_match_heading"]] = 1.0 if asked & heading_types else (-1.0 if heading_types else 0.0)
                text_types = self._types(i)
                out[row, col["type_match_text"]] = 1.0 if asked & text_types else (-1.0 if text_types else 0.0)
            out[row, col["title_question"]] = float(is_question)
            questions += is_question
            chunk = self.index.chunks[i]
            out[row, col["position"]] = min(chunk.position, 30)
            out[row, col["first_in_section"]] = float(self._first.get(chunk.section_id) == i)
            out[row, col["tokens"]] = chunk.token_count / 220
            out[row, col["guideline"]] = float(EvidenceKind.GUIDELINE in chunk.evidence_kinds)
            out[row, col["research"]] = float(EvidenceKind.RESEARCH in chunk.evidence_kinds)
        out[:, col["title_question_share"]] = questions / n
        return out


class LearnedRanker:
    """A LightGBM model over FEATURES, with its card (what it was trained on, and how well it did)."""

    def __init__(self, booster, card: dict[str, Any]):
        self._booster = booster
        self.card = card
        if list(card.get("features", [])) != list(FEATURES):
            raise ValueError("the ranker's card lists other features than retrieval.ranker.FEATURES; retrain it with `medkb train-ranker`")

    @classmethod
    def load(cls, model_file: Path = MODEL_FILE, card_file: Path = CARD_FILE) -> "LearnedRanker":
        import lightgbm

        booster = lightgbm.Booster(model_file=str(model_file))
        return cls(booster, json.loads(Path(card_file).read_text(encoding="utf-8")))

    @property
    def model(self) -> str:
        """The embedding model whose cosines the ranker was trained on."""
        return str(self.card.get("embedding_model", ""))

    def describe(self) -> dict[str, Any]:
        """What every evaluation run records about the ranker."""
        keys = ("name", "library", "objective", "trained_on", "split", "embedding_model", "features", "model_sha256", "trees")
        return {k: self.card.get(k) for k in keys}

    def score(self, features: np.ndarray) -> np.ndarray:
        if not len(features):
            return np.zeros(0)
        return np.asarray(self._booster.predict(features, num_threads=1), dtype=np.float64)


@lru_cache(maxsize=1)
def default_ranker() -> LearnedRanker | None:
    """The committed ranker, or None when there is none (then hybrid search uses RRF)."""
    if not MODEL_FILE.exists() or not CARD_FILE.exists():
        return None
    return LearnedRanker.load()
