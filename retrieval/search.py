"""The search service: one plain-Python object that the page, the JSON API and the
offline evaluations all call.

Hybrid retrieval takes the union of up to three ranked lists:
- dense: FAISS inner product between the query and each chunk (title + section + text);
- lexical: BM25 over the same text;
- heading: the query against each section's title and heading path, which in this corpus
  are questions ("What are the causes of chronic microcytic anemia?" > "Causes of ..."),
  so a question meets the question its passage answers;
and orders it with the learned ranker (retrieval/ranker.py, trained on public dev sets by
`medkb train-ranker`) or, with `ranker="rrf"`, by weighted reciprocal rank fusion.
Before that, the query is read (retrieval/query_understanding.py: long messages condensed,
shorthand, spelling, drug names, abbreviation senses, negation); after it, a query that
nothing answers gets no passages but a reason and the nearest article titles
(retrieval/nomatch.py). Every knob lives in `RetrievalSettings`, which evaluation runs record.

Names follow IR usage: a `Hit` is one ranked passage; a `SearchResult` is the ranked
list for one query with its provenance (the query as searched, the build, timing).
"""

from __future__ import annotations

import datetime as dt
import time
from collections import OrderedDict
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from indexer.chunking import Chunk
from indexer.embedding import Embedder
from indexer.index_store import ArticleRecord, IndexManifest, LoadedIndex
from indexer.lexical import tokenize
from indexer.vocabulary import Audience, EvidenceKind, ReviewStatus
from retrieval.abbreviations import Abbreviations
from retrieval.backends.base import SearchBackend, Selection
from retrieval.batching import Arrival, QueryBatcher
from retrieval.negation import demote_excluding, demote_negated
from retrieval.nomatch import NO_CONTENT, NOTHING_KNOWN, WEAK_EVIDENCE, Candidates, Evidence, NoMatchPolicy
from retrieval.population import demote_mismatched
from retrieval.query_understanding import ParsedQuery, QueryUnderstanding
from retrieval.ranker import FeatureExtractor, LearnedRanker, QueryTerms, default_ranker
from retrieval.ranker import holds as posting_holds
from retrieval.reviews import ArticleReview, ReviewBook
from retrieval.vector_cache import VectorCache
from retrieval.vector_search import VectorSearch

RETRIEVERS = ("dense", "lexical", "hybrid")
# How hybrid orders its candidates: the learned ranker, or reciprocal rank fusion.
RANKERS = ("learned", "rrf")

# What happens to a passage citing a retracted source: ranked below every passage without
# one (demote, the default), ranked as its score says (include), or left out (exclude).
RETRACTED_POLICIES = ("demote", "include", "exclude")

# What `Hit.score` means for each retriever (documented in the API schema too).
SCORE_MEANING = {
    "dense": "cosine similarity between the query and the passage embeddings (-1..1)",
    "lexical": "BM25 score of the passage for the query (0 and up; not comparable across queries)",
    "hybrid": "reciprocal rank fusion: the weighted sum of 1 / (rrf_k + rank) over the fused lists",
    "learned": "the learned ranker's score (higher is better; comparable within one query only)",
}


@dataclass(frozen=True)
class RetrievalSettings:
    """How passages are found and ranked. Recorded with every evaluation run."""

    retriever: str = "hybrid"  # dense | lexical | hybrid
    ranker: str = "learned"  # hybrid only: learned (retrieval/data/ranker.txt; RRF when none fits the model) | rrf
    rrf_k: int = 60  # reciprocal rank fusion constant
    dense_weight: float = 1.0
    lexical_weight: float = 1.0
    heading_weight: float = 0.3  # the query-to-section-heading list; 0 turns it off (0.3: best of 0, 0.3, 0.5, 1 on gold and MedQuAD-QA)
    candidates: int = 100  # taken from each list before fusion
    expand_abbreviations: bool = True  # abbreviation senses chosen by the query's other words
    spelling: bool = True  # correct words unknown to the index and to English
    drug_names: bool = True  # brand and generic names of a drug searched together
    shorthand: bool = True  # clinician shorthand (scope, 60yo, thal, lido, postop, def, ...)
    lay_terms: bool = True  # lay words bring the clinical term (water pill -> diuretic, small red cells -> microcytosis)
    negation: bool = True  # NOT x, -x, without x, not caused by x: demote what is negated
    condense: bool = True  # long messages searched as their medical focus and question
    population: bool = True  # passages for other patients (children, adults, women) than the question's go below the rest
    no_match: bool = True  # say so, with no passages, when nothing answers
    max_per_article: int = 0  # diversification: at most this many passages per article (0: no cap)

    def __post_init__(self) -> None:
        if self.retriever not in RETRIEVERS:
            raise ValueError(f"retriever must be one of {', '.join(RETRIEVERS)}, got {self.retriever!r}")
        if self.ranker not in RANKERS:
            raise ValueError(f"ranker must be one of {', '.join(RANKERS)}, got {self.ranker!r}")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class Filters:
    """Restrict results; an empty field means no restriction. An article for both
    audiences matches either audience filter."""

    review_status: tuple[ReviewStatus, ...] = ()
    evidence_kind: tuple[EvidenceKind, ...] = ()
    audience: tuple[Audience, ...] = ()
    updated_since: dt.date | None = None
    retracted: str = "demote"  # one of RETRACTED_POLICIES

    def __post_init__(self) -> None:
        if self.retracted not in RETRACTED_POLICIES:
            raise ValueError(f"retracted must be one of {', '.join(RETRACTED_POLICIES)}, got {self.retracted!r}")

    def active(self) -> bool:
        return bool(self.review_status or self.evidence_kind or self.audience or self.updated_since or self.retracted == "exclude")

    def admits(self, chunk: Chunk, review_status: ReviewStatus | None = None) -> bool:
        """`review_status` is the article's status derived from the review log (the search
        service always passes it). The chunk's own is only its front matter's claim and is
        never used: without a derived status the article counts as submitted."""
        if self.retracted == "exclude" and cites_retracted(chunk):
            return False
        status = ReviewStatus.SUBMITTED if review_status is None else review_status
        if self.review_status and status not in self.review_status:
            return False
        if self.evidence_kind and not set(chunk.evidence_kinds) & set(self.evidence_kind):
            return False
        if self.audience and chunk.audience not in self.audience and chunk.audience != Audience.BOTH:
            return False
        if self.updated_since and (chunk.last_updated is None or chunk.last_updated < self.updated_since):
            return False
        return True


def cites_retracted(chunk: Chunk) -> bool:
    """True when the passage cites a source that a notice says was retracted."""
    return any(ref.retracted for ref in chunk.references)


@dataclass
class Hit:
    """One ranked passage. `score` is the retriever's (see SCORE_MEANING); `signals` holds
    the score each fused list gave it."""

    rank: int
    score: float
    chunk: Chunk
    signals: dict[str, float] = field(default_factory=dict)


@dataclass(frozen=True)
class IndexInfo:
    """Which build answered, and with which model."""

    build: str
    model: str


@dataclass
class SearchResult:
    """The ranked hits for one query, with the query as searched (abbreviations expanded),
    the time taken (ms), and the build that answered.

    `searched_for` is set when the words searched differ from the words typed in a way the
    reader should see (a spelling correction, a long message condensed). `no_match` is set,
    with `hits` empty, when nothing in the index answers: it says why, and `suggestions`
    holds the nearest article titles. `negated` lists what the query excluded. `ranker` says
    what ordered the hits (learned, rrf, or the one retriever)."""

    query: str
    hits: list[Hit]
    took_ms: float
    total_chunks: int
    index: IndexInfo
    retriever: str
    expanded_query: str = ""
    reviews: dict[str, ArticleReview] = field(default_factory=dict)  # the hits' articles' review status, derived at query time
    searched_for: str | None = None
    no_match: str | None = None
    suggestions: list[str] = field(default_factory=list)
    negated: list[str] = field(default_factory=list)
    ranker: str = ""


class QueryCache:
    """Least-recently-used cache of query vectors: repeated queries skip the model."""

    def __init__(self, size: int = 1024):
        self.size = size
        self._data: OrderedDict[str, np.ndarray] = OrderedDict()

    def get(self, key: str) -> np.ndarray | None:
        vector = self._data.get(key)
        if vector is not None:
            self._data.move_to_end(key)
        return vector

    def put(self, key: str, vector: np.ndarray) -> None:
        self._data[key] = vector
        self._data.move_to_end(key)
        while len(self._data) > self.size:
            self._data.popitem(last=False)


class SearchService:
    """Hybrid retrieval over a loaded index: the one search engine behind the page, the API,
    answers, the CLI and evaluations.

    The index must have been loaded for this embedder (`load_index(root, ModelInfo.of(embedder))`
    checks it once). Every model call goes through this object, one at a time.
    """

    def __init__(self, index: LoadedIndex, embedder: Embedder, cache_size: int = 1024,
                 settings: RetrievalSettings = RetrievalSettings(), abbreviations: Abbreviations | None = None,
                 batch_window_ms: float = 2.0, reviews: ReviewBook | None = None, ranker: LearnedRanker | None | str = "default",
                 no_match: NoMatchPolicy | None | str = "default", passage_cache_size: int = 20000,
                 backend: SearchBackend | None = None, previous_features: FeatureExtractor | None = None):
        import faiss

        from retrieval.backends.embedded import EmbeddedBackend

        # One query at a time is a tiny job: a single OpenMP thread answers it in ~2 ms at 32k
        # chunks, where two threads spin against each other (and any other load) for ~20 ms.
        faiss.omp_set_num_threads(1)
        # The model runs one call at a time (concurrent calls would each start torch's threads
        # and oversubscribe the cores); queries arriving together share one call.
        self._batcher = QueryBatcher(embedder.encode_queries, window_ms=batch_window_ms)
        self._section_vectors = np.ascontiguousarray(index.sections.vectors, dtype=np.float32).reshape(-1, embedder.dim)
        self._section_search = VectorSearch(self._section_vectors)
        self.index = index
        self.reviews = reviews or ReviewBook()
        self._embedder = embedder
        self.settings = settings
        self.cache = QueryCache(cache_size)
        self.passage_cache = VectorCache(passage_cache_size)  # an answer's sentences, between requests
        self.abbreviations = abbreviations if abbreviations is not None else Abbreviations.load()
        position = {sid: i for i, sid in enumerate(index.sections.ids)}
        self._chunks_of_section: list[list[int]] = [[] for _ in index.sections.ids]
        for i, chunk in enumerate(index.chunks):
            self._chunks_of_section[position[chunk.section_id]].append(i)
        # The dense and BM25 lists and scores come from the backend (retrieval/backends): FAISS +
        # bm25s over this build by default, or PostgreSQL + pgvector.
        self.backend: SearchBackend = backend if backend is not None else EmbeddedBackend(index)
        self.understanding = QueryUnderstanding(index, self.abbreviations)
        # The learned ranker and the no-match thresholds were fitted on one model's cosines: with
        # another model, hybrid falls back to RRF and no-match to its model-free rules.
        model = index.manifest.model.name
        if ranker == "default":
            ranker = default_ranker()
            ranker = ranker if ranker is not None and ranker.model == model else None
        self.ranker: LearnedRanker | None = ranker
        if no_match == "default":
            no_match = NoMatchPolicy.load()
            no_match = no_match if no_match is not None and no_match.model == model else NoMatchPolicy.model_free()
        self.no_match_policy: NoMatchPolicy = no_match or NoMatchPolicy.model_free()
        self._features = FeatureExtractor(index, previous=previous_features)
        self._section_of_chunk = self._features.section_of
        self._retracted = np.fromiter((cites_retracted(c) for c in index.chunks), dtype=bool, count=len(index.chunks))
        self._id_order = np.argsort(np.argsort(np.array([c.id for c in index.chunks], dtype=object), kind="stable"), kind="stable")
        self._columns = None  # retrieval.admission.ChunkColumns, made on the first filtered query

    def over(self, index: LoadedIndex) -> "SearchService":
        """This engine over another build (a server swapping to a newly published one): the same
        model, query batcher (still one model call at a time across both), query-vector cache,
        settings and abbreviations; everything derived from the build is made anew, except the
        question-type masks of passages and headings whose text did not change (taken over)."""
        new = SearchService(index, self._embedder, cache_size=self.cache.size, settings=self.settings, abbreviations=self.abbreviations,
                            backend=self.backend.over(index), passage_cache_size=0, previous_features=self._features)
        new._batcher = self._batcher
        new.cache = self.cache
        new.passage_cache = self.passage_cache
        return new

    def warm(self) -> None:
        """Make the per-build tables that queries use (vocabulary, speller, heading bigrams) now
        rather than in the first requests; what the settings switch off is not made."""
        self.understanding.warm(spelling=self.settings.spelling, negation=self.settings.negation, lay_terms=self.settings.lay_terms)

    @property
    def manifest(self) -> IndexManifest:
        return self.index.manifest

    @property
    def info(self) -> IndexInfo:
        return IndexInfo(build=self.index.directory.name, model=self.manifest.model.name)

    def article(self, article_id: str) -> ArticleRecord | None:
        """The indexed article's front matter, or None if it is not in this build."""
        return self.index.articles.get(article_id)

    def use_reviews(self, reviews: ReviewBook) -> None:
        """Derive review statuses from this book's log (the server attaches its review store)."""
        self.reviews = reviews

    def review_statuses(self) -> dict[str, ArticleReview]:
        """Every indexed article's review status as the review log says now (cached until it changes)."""
        return self.reviews.statuses(self.index.articles)

    def review_of(self, article_id: str) -> ArticleReview | None:
        return self.review_statuses().get(article_id)

    def embed_query(self, query: str, arrival: Arrival | None = None) -> np.ndarray:
        """The query's vector (dim,), from the LRU cache or the model; `arrival` is the
        search's announcement to the batcher (uncounted once its query is queued)."""
        key = " ".join(query.split()).lower()
        vector = self.cache.get(key)
        if vector is None:
            vector = self._batcher.embed(query, arrival=arrival)
            self.cache.put(key, vector)
        elif arrival is not None:  # no model call on its way after all
            arrival.done()
        return vector

    def embed_passages(self, texts: list[str]) -> np.ndarray:
        """Vectors (len(texts), dim) for passage-like texts (e.g. an answer's sentences); texts
        seen before come from `passage_cache`, only the others reach the model."""
        return self.passage_cache.embed(texts, lambda missing: self._batcher.run_exclusive(lambda: self._embedder.encode_documents(missing)))

    def section_scores(self, vector: np.ndarray, depth: int) -> list[tuple[int, float]]:
        """The `depth` sections whose title and heading best match the query vector, best first."""
        return self._section_search.search(vector, depth)

    def nearest_articles(self, query: str, n: int, exclude: set[str] = frozenset(), depth: int = 200) -> list[tuple[str, float]]:
        """The `n` articles (id, cosine) whose section headings best match `query`, best
        first, leaving out `exclude`."""
        best: dict[str, float] = {}
        for s, sim in self.section_scores(self.embed_query(query), depth):
            article_id = self.index.sections.ids[s].split("#", 1)[0]
            if article_id not in exclude and sim > best.get(article_id, -1.0):
                best[article_id] = sim
        return sorted(best.items(), key=lambda item: (-item[1], item[0]))[:n]

    def _admitted(self, filters: Filters, reviews: dict[str, ArticleReview]) -> Selection | None:
        """The chunks `filters` admit, or None when no filter is active; the mask is computed over
        per-chunk columns (retrieval/admission.py) made on the first filtered query."""
        if not filters.active():
            return None
        if self._columns is None:
            from retrieval.admission import ChunkColumns

            self._columns = ChunkColumns(self.index.chunks)
        statuses = {a: r.status for a, r in reviews.items()}
        return Selection(filters, statuses, self._columns.admitted(filters, reviews))

    def _dense(self, vector: np.ndarray, depth: int, admitted: Selection | None) -> list[tuple[int, float]]:
        return self.backend.dense(vector, depth, admitted)

    def _lexical(self, query: str, depth: int, admitted: Selection | None) -> list[tuple[int, float]]:
        return self.backend.lexical(tokenize(query), depth, admitted)

    def _heading(self, vector: np.ndarray, depth: int, admitted: Selection | None) -> list[tuple[int, float]]:
        """Chunks ranked by how well their section's title and heading match the query; the
        chunks of one section share its rank."""
        out: list[tuple[int, float]] = []
        for s, sim in self.section_scores(vector, depth):
            for i in self._chunks_of_section[s]:
                if admitted is None or admitted.mask[i]:
                    out.append((i, sim))
        return out

    def read_query(self, query: str, settings: RetrievalSettings | None = None) -> ParsedQuery:
        """The query as the engine reads it (see retrieval.query_understanding)."""
        return self.understanding.read(query, settings or self.settings)

    def search(self, query: str, k: int = 10, filters: Filters = Filters(), settings: RetrievalSettings | None = None) -> SearchResult:
        """The `k` best passages for `query` that pass `filters`, best first (ties by chunk id).
        When nothing answers, no passages, with `no_match` saying why."""
        # Announced to the query batcher from the start: a batch being gathered waits for this
        # query only while it is on its way to the model (retrieval/batching.py).
        with self._batcher.arriving() as arrival:
            return self._search(query, k, filters, settings, arrival)

    def _search(self, query: str, k: int, filters: Filters, settings: RetrievalSettings | None, arrival: Arrival) -> SearchResult:
        started = time.perf_counter()
        cfg = settings or self.settings
        chunks = self.index.chunks
        parsed = self.understanding.read(query, cfg)
        text = parsed.text
        hits: list[Hit] = []
        no_match: str | None = None
        if chunks and cfg.no_match and not parsed.has_content:
            no_match = NO_CONTENT
        elif chunks and cfg.no_match and not parsed.known:
            no_match = NOTHING_KNOWN
        searching = bool(chunks) and no_match is None
        # Only the dense and heading lists need the model; lexical search alone never runs it.
        uses_model = searching and cfg.retriever != "lexical"
        if not uses_model:
            arrival.done()  # no model call of this search is coming: a batch being gathered need not wait for it
        reviews = self.review_statuses()  # one snapshot of the review log for filtering and showing
        ranker_used = cfg.retriever
        suggestions: list[str] = []
        if searching:
            admitted = self._admitted(filters, reviews)
            depth = max(cfg.candidates, k * 3 if cfg.max_per_article else k)
            lists: dict[str, list[tuple[int, float]]] = {}
            vector = self.embed_query(text, arrival) if uses_model else None
            learned = cfg.retriever == "hybrid" and cfg.ranker == "learned" and self.ranker is not None
            if learned:
                hits, evidence = self._learned(parsed, vector, min(depth, len(chunks)), admitted)
                ranker_used = "learned"
            else:
                if cfg.retriever in ("dense", "hybrid"):
                    lists["dense"] = self._dense(vector, min(depth, len(chunks)), admitted)
                if cfg.retriever in ("lexical", "hybrid"):
                    lists["lexical"] = self._lexical(parsed.lexical_text, min(depth, len(chunks)), admitted)
                if cfg.retriever == "hybrid" and cfg.heading_weight:
                    lists["heading"] = self._heading(vector, min(depth, len(self.index.sections.ids)), admitted)
                hits = self._fuse(lists, cfg)
                ranker_used = "rrf" if cfg.retriever == "hybrid" else cfg.retriever
                evidence = self._evidence(parsed, vector, min(depth, len(chunks)), admitted) if cfg.no_match else None
            if cfg.negation and parsed.negated:
                hits = demote_negated(hits, parsed.negated)
            if cfg.negation:
                hits = demote_excluding(hits, parsed.question)
            if cfg.population:
                hits = demote_mismatched(hits, parsed.question)
            if filters.retracted == "demote" and self._retracted.any():
                # Stable: order within each group stays the fused order.
                hits = [h for h in hits if not cites_retracted(h.chunk)] + [h for h in hits if cites_retracted(h.chunk)]
            if cfg.no_match and evidence is not None and hits:
                no_match = self.no_match_policy.judge(evidence)
            if no_match:
                hits = []
            hits = _diversify(hits, cfg.max_per_article)[:k]
            for rank, hit in enumerate(hits, start=1):
                hit.rank = rank
        if no_match == WEAK_EVIDENCE and vector_free_suggestions_ok(cfg):
            # Near, if not answering: the nearest articles are worth offering (not for gibberish).
            suggestions = [self.index.articles[a].title for a, _ in self.nearest_articles(text, 3) if a in self.index.articles]
        return SearchResult(
            query=query,
            hits=hits,
            took_ms=(time.perf_counter() - started) * 1000,
            total_chunks=len(chunks),
            index=self.info,
            retriever=cfg.retriever,
            expanded_query=text,
            reviews={h.chunk.article_id: reviews[h.chunk.article_id] for h in hits if h.chunk.article_id in reviews},
            searched_for=parsed.searched_for,
            no_match=no_match,
            suggestions=suggestions,
            negated=list(parsed.negated),
            ranker=ranker_used,
        )

    def candidates(self, parsed: ParsedQuery, vector: np.ndarray, depth: int, admitted: Selection | None = None) -> Candidates:
        """The union of the dense, BM25 and heading lists for a read query, with each
        candidate's cosine, BM25 and heading similarity and its feature matrix."""
        terms = QueryTerms.of(self.index.lexical, parsed.lexical_text)
        dense_list = self._dense(vector, depth, admitted)
        lexical_ids = [i for i, _ in self.backend.lexical(terms.tokens, depth, admitted)] if terms.tokens else []
        # The best sections by FAISS (one thread); a product over every section vector would run
        # BLAS on all cores, which on a busy machine costs more than the whole rest of the query.
        heading_ids: list[int] = []
        for s, _ in self.section_scores(vector, depth):
            heading_ids.extend(i for i in self._chunks_of_section[s] if admitted is None or admitted.mask[i])
        ids = np.unique(np.fromiter([i for i, _ in dense_list] + lexical_ids + heading_ids, dtype=np.int64))
        query = vector.astype(np.float32)
        dense = self.backend.dense_scores(query, ids)
        bm25 = self.backend.lexical_scores(terms.tokens, ids) if terms.tokens else np.zeros(len(ids), dtype=np.float32)
        heading = _rows_dot(self._section_vectors, self._section_of_chunk[ids], query)
        features = self._features.matrix(parsed.question, terms, ids, dense, bm25, heading)
        return Candidates(ids, dense, bm25, heading, features, terms)

    def _learned(self, parsed: ParsedQuery, vector: np.ndarray, depth: int, admitted: Selection | None) -> tuple[list[Hit], Evidence]:
        """The candidates ordered by the learned ranker: the best `depth` of them as hits (as
        many as every other path gives), with the no-match evidence."""
        cands = self.candidates(parsed, vector, depth, admitted)
        scores = self.ranker.score(cands.features) if self.ranker is not None else np.zeros(len(cands.ids))
        chunks = self.index.chunks
        order = np.lexsort((self._id_order[cands.ids], -np.round(scores, 9)))[:depth].tolist()  # ties by chunk id
        hits = [Hit(rank=0, score=float(scores[j]), chunk=chunks[int(cands.ids[j])],
                    signals={"dense": float(cands.dense[j]), "lexical": float(cands.bm25[j]), "heading": float(cands.heading[j])}) for j in order]
        return hits, self._evidence_of(parsed, cands)

    def evidence(self, query: str, settings: RetrievalSettings | None = None) -> Evidence | None:
        """How well the best candidates match `query` (what the no-match policy judges); None
        when the query has no content word, no word the index knows, or the index is empty."""
        cfg = settings or self.settings
        parsed = self.understanding.read(query, cfg)
        if not self.index.chunks or not parsed.has_content or not parsed.known:
            return None
        vector = self.embed_query(parsed.text)
        return self._evidence_of(parsed, self.candidates(parsed, vector, min(cfg.candidates, len(self.index.chunks))))

    def _evidence_of(self, parsed: ParsedQuery, cands: Candidates, best: int = 10) -> Evidence:
        """The evidence of a query's candidates; the phrases are looked for in the best `best`
        by cosine and the best `best` by BM25, whatever ranks them."""
        if not len(cands.ids):
            return Evidence.of(cands, [])
        top = np.array(sorted(set(np.argsort(-cands.dense)[:best].tolist()) | set(np.argsort(-cands.bm25)[:best].tolist())), dtype=np.int64)
        # Only a passage that holds both words of one of the question's word pairs (by the BM25
        # postings) can add to phrase_cover, so only those are read and tokenized.
        words = tokenize(parsed.question)
        pairs = set(zip(words, words[1:])) if len(words) > 1 else {(w, w) for w in words}
        ids = cands.ids[top]
        holds = np.zeros(len(ids), dtype=bool)
        lexical = self.index.lexical
        chunks = self.index.chunks
        for a, b in pairs:
            holds |= posting_holds(ids, lexical.postings(a), len(chunks)) & posting_holds(ids, lexical.postings(b), len(chunks))
        texts = [chunks[int(i)].embed_text or chunks[int(i)].text for i in ids[holds]]
        return Evidence.of(cands, [], texts, parsed.question)

    def _evidence(self, parsed: ParsedQuery, vector: np.ndarray | None, depth: int, admitted: Selection | None) -> Evidence | None:
        """The no-match evidence of a result ordered without the learned ranker (None without a query vector)."""
        if vector is None:
            return None
        return self._evidence_of(parsed, self.candidates(parsed, vector, depth, admitted))

    def _fuse(self, lists: dict[str, list[tuple[int, float]]], cfg: RetrievalSettings) -> list[Hit]:
        chunks = self.index.chunks
        signals: dict[int, dict[str, float]] = {}
        if len(lists) == 1:
            # One retriever: its own scores rank the results.
            ((name, ranked),) = lists.items()
            fused = {i: s for i, s in ranked}
            for i, s in ranked:
                signals[i] = {name: s}
        else:
            weights = {"dense": cfg.dense_weight, "lexical": cfg.lexical_weight, "heading": cfg.heading_weight}
            fused: dict[int, float] = {}
            for name, ranked in lists.items():
                rank = 0
                previous = None
                for position, (i, s) in enumerate(ranked):
                    if name != "heading" or s != previous:  # chunks of one section share its rank
                        rank = position + 1
                    previous = s
                    fused[i] = fused.get(i, 0.0) + weights[name] / (cfg.rrf_k + rank)
                    signals.setdefault(i, {})[name] = s
        ordered = sorted(fused.items(), key=lambda item: (-round(item[1], 9), chunks[item[0]].id))
        return [Hit(rank=0, score=score, chunk=chunks[i], signals=signals.get(i, {})) for i, score in ordered]


def open_service(index_dir: Path, model_dir: Path | None = None, settings: RetrievalSettings = RetrievalSettings(),
                 cache_size: int = 1024, batch_window_ms: float = 2.0, passage_cache_size: int = 20000,
                 encoder: str | None = None, onnx_dir: Path | None = None) -> SearchService:
    """Load the model (run by `encoder`: torch, onnx-fp32 or onnx-int8; default MEDKB_ENCODER; ONNX
    exports kept in `onnx_dir`, see load_embedder) and
    the published index under `index_dir`, checked to belong together, encoder included. Raises
    indexer.index_store.IndexProblem (with what to run) when they do not. The index is checked
    against the model's identity (read from its files) before the model loads, so an index made
    by another encoder is refused without exporting or quantizing anything for this one."""
    from indexer.embedding import ModelInfo, load_embedder, model_identity
    from indexer.index_store import load_index

    index = load_index(Path(index_dir), model_identity(model_dir, encoder))
    embedder = load_embedder(model_dir, encoder, onnx_dir=onnx_dir)
    index.manifest.check_model(ModelInfo.of(embedder))  # the loaded model is the one its files describe
    return SearchService(index, embedder, cache_size=cache_size, settings=settings, batch_window_ms=batch_window_ms,
                         passage_cache_size=passage_cache_size)


def vector_free_suggestions_ok(cfg: RetrievalSettings) -> bool:
    """Suggestions embed the query; a lexical-only search never runs the model."""
    return cfg.retriever != "lexical"


def _rows_dot(matrix: np.ndarray, rows: np.ndarray, vector: np.ndarray) -> np.ndarray:
    """matrix[rows] @ vector (float32, len(rows)), one row at a time in einsum (no BLAS threads)."""
    if not len(rows):
        return np.zeros(0, dtype=np.float32)
    return np.einsum("ij,j->i", matrix[rows], vector)


def _top(scores: np.ndarray, depth: int) -> np.ndarray:
    """Indices of the `depth` highest scores, best first (ties by index)."""
    if depth >= len(scores):
        return np.lexsort((np.arange(len(scores)), -scores))
    part = np.argpartition(-scores, depth - 1)[:depth]
    return part[np.lexsort((part, -scores[part]))]


def _diversify(results: list[Hit], cap: int) -> list[Hit]:
    """At most `cap` passages per article, keeping order; 0 means no cap."""
    if not cap:
        return results
    seen: dict[str, int] = {}
    out = []
    for r in results:
        n = seen.get(r.chunk.article_id, 0)
        if n < cap:
            out.append(r)
            seen[r.chunk.article_id] = n + 1
    return out
