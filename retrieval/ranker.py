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
from retrieval.aspects import ASPECT_STEMS, aspect_of

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


TYPES = tuple(ASPECT_STEMS) + tuple(EXTRA_TYPES)
_ALL_TYPES = re.compile("|".join(
    rf"(?P<t{n}>\b(?:{'|'.join(re.escape(s) for s in stems)}))"
    for n, stems in enumerate(list(ASPECT_STEMS.values()) + list(EXTRA_TYPES.values()))), re.I)


def type_mask(text: str) -> int:
    """The question types `text` speaks of, as a bit mask over TYPES (one pass of one pattern:
    where two types' stems start at the same place, the first listed wins)."""
    mask = 0
    for m in _ALL_TYPES.finditer(text):
        mask |= 1 << int(m.lastgroup[1:])
    return mask


def question_types(text: str) -> set[str]:
    """retrieval.aspects' aspects plus the extra question types found in `text`."""
    mask = type_mask(text)
    return {t for n, t in enumerate(TYPES) if mask >> n & 1}


def asked_mask(question: str) -> int:
    """What a question asks, as a bit mask over TYPES: its one aspect (retrieval.aspects.aspect_of)
    if it names one, else the extra question types it names."""
    aspect = aspect_of(question)
    if aspect:
        return 1 << TYPES.index(aspect)
    extra = {name for name, pattern in _EXTRA.items() if pattern.search(question)}
    return sum(1 << TYPES.index(t) for t in extra)


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


def holds(ids: np.ndarray, posting: np.ndarray, n_chunks: int) -> np.ndarray:
    """Whether each chunk of `ids` is in `posting` (chunk ids below `n_chunks`), as a bool array:
    np.isin's answer, by marking the posting in a mask (np.isin sorts both on every call)."""
    mask = np.zeros(n_chunks, dtype=bool)
    mask[posting] = True
    return mask[ids]


def _heading_text(chunk) -> str:
    """What a section's question types are read from: its article title and heading path."""
    return f"{chunk.article_title} {' '.join(chunk.section_path)}"


class FeatureExtractor:
    """Per-index arrays computed once (each passage's position, length, evidence kinds and the
    question types its opening speaks of; each section's question types, whether its title or a
    heading is a question, and which sections' titles and headings hold each word), and the
    feature matrix of one query's candidates, computed from them without a loop over passages."""

    def __init__(self, index: LoadedIndex, previous: "FeatureExtractor | None" = None):
        """`previous`: the extractor of an earlier build (a server swapping builds), whose
        question-type masks are reused for passages and headings whose text is unchanged, so
        that a swap computes them only for what changed (at MedQuAD scale the masks are most
        of the set-up: about 5 s of regular expressions for 48,000 texts). Nothing of
        `previous` is kept."""
        self.index = index
        chunks = index.chunks
        section_ids = list(index.sections.ids)
        number = {sid: i for i, sid in enumerate(section_ids)}
        n = len(chunks)
        self.section_of = np.array([number[c.section_id] for c in chunks], dtype=np.int64) if n else np.zeros(0, dtype=np.int64)
        self.position = np.array([min(c.position, 30) for c in chunks], dtype=np.float32)
        self.tokens = np.array([c.token_count / 220 for c in chunks], dtype=np.float32)
        self.guideline = np.array([EvidenceKind.GUIDELINE in c.evidence_kinds for c in chunks], dtype=np.float32)
        self.research = np.array([EvidenceKind.RESEARCH in c.evidence_kinds for c in chunks], dtype=np.float32)
        known_text: dict[str, tuple[str, int]] = {}  # chunk id -> (its opening, mask) in the previous build
        known_heading: dict[str, int] = {}  # title + heading path -> mask in the previous build
        if previous is not None:
            known_text = {c.id: (c.text[:240], int(m)) for c, m in zip(previous.index.chunks, previous.text_types)}
            known_heading = previous._heading_masks()

        def text_mask(chunk) -> int:
            opening = chunk.text[:240]
            seen = known_text.get(chunk.id)
            return seen[1] if seen is not None and seen[0] == opening else type_mask(opening)

        self.text_types = np.array([text_mask(c) for c in chunks], dtype=np.int64)
        self.first_in_section = np.zeros(n, dtype=np.float32)
        seen: set[int] = set()
        m = len(section_ids)
        self.heading_types = np.zeros(m, dtype=np.int64)
        self.question = np.zeros(m, dtype=np.float32)
        title_of: dict[str, list[int]] = {}
        heading_of: dict[str, list[int]] = {}
        for i, c in enumerate(chunks):
            s = int(self.section_of[i])
            if s in seen:
                continue
            seen.add(s)
            self.first_in_section[i] = 1.0
            headings = " ".join(c.section_path)
            self.question[s] = bool(_QUESTION_TITLE.search(c.article_title)) or any(_QUESTION_TITLE.search(h) for h in c.section_path)
            heading_text = _heading_text(c)
            mask = known_heading.get(heading_text)
            self.heading_types[s] = type_mask(heading_text) if mask is None else mask
            for t in set(tokenize(c.article_title)):
                title_of.setdefault(t, []).append(s)
            for t in set(tokenize(headings)):
                heading_of.setdefault(t, []).append(s)
        self._title_of = {t: np.array(v, dtype=np.int64) for t, v in title_of.items()}
        self._heading_of = {t: np.array(v, dtype=np.int64) for t, v in heading_of.items()}
        self._n_sections = m

    def _heading_masks(self) -> dict[str, int]:
        """Each section's title + heading path (as __init__ reads it) -> its question-type mask."""
        out: dict[str, int] = {}
        done: set[int] = set()
        for i, c in enumerate(self.index.chunks):
            s = int(self.section_of[i])
            if s not in done:
                done.add(s)
                out[_heading_text(c)] = int(self.heading_types[s])
        return out

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

        # Word coverage, weighted by IDF, from the BM25 postings and the title/heading word lists.
        sections = self.section_of[ids]
        total = float(terms.idf.sum())
        if terms.tokens and total > 0:
            covered = np.zeros(n)
            title = np.zeros(self._n_sections)
            headings = np.zeros(self._n_sections)
            n_chunks = len(self.position)
            for token, weight, posting in zip(terms.tokens, terms.idf, terms.postings):
                covered += weight * holds(ids, posting, n_chunks)
                if token in self._title_of:
                    title[self._title_of[token]] += weight
                if token in self._heading_of:
                    headings[self._heading_of[token]] += weight
            out[:, col["text_cover"]] = covered / total
            out[:, col["title_cover"]] = title[sections] / total
            out[:, col["heading_cover"]] = headings[sections] / total
            out[:, col["rare_cover"]] = holds(ids, terms.postings[int(np.argmax(terms.idf))], n_chunks)
        asked = asked_mask(question)
        out[:, col["query_has_type"]] = float(bool(asked))
        out[:, col["query_terms"]] = len(terms.tokens) + len(terms.unknown)
        if asked:
            for name, masks in (("type_match_heading", self.heading_types[sections]), ("type_match_text", self.text_types[ids])):
                out[:, col[name]] = np.where(masks & asked, 1.0, np.where(masks != 0, -1.0, 0.0))
        is_question = self.question[sections]
        out[:, col["title_question"]] = is_question
        out[:, col["title_question_share"]] = float(is_question.mean())
        out[:, col["position"]] = self.position[ids]
        out[:, col["first_in_section"]] = self.first_in_section[ids]
        out[:, col["tokens"]] = self.tokens[ids]
        out[:, col["guideline"]] = self.guideline[ids]
        out[:, col["research"]] = self.research[ids]
        return out


class LearnedRanker:
    """A LightGBM model over FEATURES, with its card (what it was trained on, and how well it did).

    Scores come from the model file compiled to machine code by lleaves (a compiler for
    LightGBM text models, checked against LightGBM's own predict: tests/test_ranker_scoring.py),
    compiled once per process when the ranker loads (about 0.5 s for the committed 300 trees).
    Measured for 250 candidates x 24 features, one thread: 0.10 ms against 0.86 ms for
    `lightgbm.Booster.predict`, about a tenth of a cached search at MedQuAD scale. Where lleaves
    is not installed (Python 3.14 and later: lleaves 1.3 needs llvmlite < 0.45, which has no
    wheel for them; pyproject installs it only below 3.14), LightGBM's own predict scores, the
    same scores more slowly; `scorer` says which.
    """

    def __init__(self, compiled, card: dict[str, Any], scorer: str = "lleaves"):
        """`compiled`: anything with lleaves' `predict(rows, n_jobs=...) -> (n,)`; `scorer`
        names it (lleaves | lightgbm)."""
        _check_card(card)
        self._compiled = compiled
        self.card = card
        self.scorer = scorer

    @classmethod
    def load(cls, model_file: Path = MODEL_FILE, card_file: Path = CARD_FILE) -> "LearnedRanker":
        """The model in `model_file` (LightGBM text format) with its card (JSON).

        Raises ValueError when the card lists other features than FEATURES, OSError when a
        file cannot be read."""
        card = _check_card(json.loads(Path(card_file).read_text(encoding="utf-8")))  # before the compiler's half second
        try:
            import lleaves
        except ImportError:  # not installed on this Python (see the class docstring)
            import lightgbm

            return cls(_BoosterScorer(lightgbm.Booster(model_file=str(model_file))), card, scorer="lightgbm")
        compiled = lleaves.Model(model_file=str(model_file))
        compiled.compile()
        return cls(compiled, card)

    @property
    def model(self) -> str:
        """The embedding model whose cosines the ranker was trained on."""
        return str(self.card.get("embedding_model", ""))

    def describe(self) -> dict[str, Any]:
        """What every evaluation run records about the ranker."""
        keys = ("name", "library", "objective", "trained_on", "split", "embedding_model", "encoder", "features", "model_sha256", "trees")
        return {k: self.card.get(k) for k in keys}

    def score(self, features: np.ndarray) -> np.ndarray:
        """One score per row of `features` (n, len(FEATURES)), float64; higher ranks first."""
        if not len(features):
            return np.zeros(0)
        return np.asarray(self._compiled.predict(np.ascontiguousarray(features, dtype=np.float64), n_jobs=1), dtype=np.float64)


class _BoosterScorer:
    """LightGBM's own predict behind lleaves' `predict(rows, n_jobs)`."""

    def __init__(self, booster):
        self._booster = booster

    def predict(self, rows: np.ndarray, n_jobs: int = 1) -> np.ndarray:
        return self._booster.predict(rows, num_threads=n_jobs)


def _check_card(card: dict[str, Any]) -> dict[str, Any]:
    """`card`, unchanged; ValueError when it lists other features than FEATURES."""
    if list(card.get("features", [])) != list(FEATURES):
        raise ValueError("the ranker's card lists other features than retrieval.ranker.FEATURES; retrain it with `medkb train-ranker`")
    return card


@lru_cache(maxsize=1)
def default_ranker() -> LearnedRanker | None:
    """The committed ranker, or None when there is none (then hybrid search uses RRF)."""
    if not MODEL_FILE.exists() or not CARD_FILE.exists():
        return None
    return LearnedRanker.load()
