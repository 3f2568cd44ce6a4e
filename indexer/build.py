"""Build an index from corpus directories: parse -> chunk -> embed -> write -> publish."""

from __future__ import annotations

import dataclasses
import datetime as dt
import hashlib
import json
import marshal
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

import medkb
from indexer import index_store
from indexer.articles import Article, CorpusLoad, _id_line, corpus_files, load_corpus
from indexer.build_cache import MemoryCache, code_digest, embed_cached, model_key, text_digest
from indexer.chunking import ChunkerSettings, chunk_article
from indexer.embedding import Embedder
from indexer.index_store import ArticleRecord, BuildInfo, CorpusInfo, Counts, IndexManifest, LexicalInfo, ModelInfo, SectionVectors
from indexer.lexical import LexicalIndex, term_counts
from indexer.spelling import count_words
from indexer.vocabulary import Problem


class BuildFailed(Exception):
    """A build that was stopped before publishing; the published index is untouched."""

    def __init__(self, message: str, problems: list[Problem] | None = None):
        super().__init__(message)
        self.problems = problems or []


@dataclass
class BuildReport:
    """What a published build holds, what was skipped and why, and how long it took (seconds)."""

    directory: Path | None
    articles: int
    chunks: int
    citations_resolved: int
    citations_unresolved: int
    oversized_chunks: int
    skipped: list[str]
    problems: list[Problem]
    seconds: float
    embed_seconds: float
    up_to_date: bool = False
    manifest: IndexManifest | None = None
    parsed: int = 0  # files parsed and chunked in this build (the others came from the build cache)
    embedded: int = 0  # texts embedded in this build (the others' vectors came from the build cache)
    lost: list["Lost"] = dataclasses.field(default_factory=list)  # good articles of the build it replaced that it lacks
    stages: dict[str, float] = dataclasses.field(default_factory=dict)  # seconds: parse, embed, lexical, write
    cache_seconds: dict[str, float] = dataclasses.field(default_factory=dict)  # seconds spent in the build cache, by operation (within the stages)


def _fingerprint(names_and_digests: Sequence[tuple[str, str]], chunker: ChunkerSettings, model_checksum: str) -> str:
    digest = hashlib.sha256()
    digest.update(f"format={index_store.FORMAT_VERSION};model={model_checksum};chunker={sorted(chunker.to_dict().items())}".encode())
    for name, file_digest in names_and_digests:
        digest.update(name.encode() + b"\0")
        digest.update(bytes.fromhex(file_digest))
    return digest.hexdigest()


def corpus_fingerprint(dirs: Sequence[Path], chunker: ChunkerSettings, model_checksum: str) -> str:
    """Changes whenever anything that shapes the index changes: files, chunker, model, format (sha256 hex)."""
    return _fingerprint([(p.name, hashlib.sha256(p.read_bytes()).hexdigest()) for p in corpus_files(dirs)], chunker, model_checksum)


def loaded_fingerprint(loaded: CorpusLoad, chunker: ChunkerSettings, model_checksum: str) -> str:
    """`corpus_fingerprint` of the files exactly as a build read them (each read once)."""
    return _fingerprint([(p.name, d) for p, d in zip(loaded.files, loaded.digests)], chunker, model_checksum)


def staleness(root: Path, dirs: Sequence[Path], chunker: ChunkerSettings, model_checksum: str, model: ModelInfo | None = None) -> str | None:
    """None when the published build is intact and was made from exactly these files, chunker and
    model (and, when `model` is given, by its encoder, precision and export recipe); otherwise why
    it is not, in one line. Another format, an unreadable or malformed manifest, another encoder, or
    a damaged data file (missing, another size, another SHA-256) make a build stale, never an error."""
    return _staleness(root, lambda: corpus_fingerprint(dirs, chunker, model_checksum), model)


def _staleness(root: Path, fingerprint: Callable[[], str], model: ModelInfo | None = None) -> str | None:
    directory = index_store.current_dir(root)
    if directory is None:
        return f"no index is published under {root}"
    try:
        manifest = index_store.read_manifest(root)
        if manifest is None:
            return f"no index is published under {root}"
        if manifest.corpus.fingerprint != fingerprint():
            return f"the corpus, chunker settings or model changed since build {directory.name}"
        if model is not None:
            manifest.check_model(model)  # IndexMismatch: another encoder (or model) made it
        index_store.check_build(directory)  # the checksums last: hashing costs the most
    except index_store.IndexProblem as exc:
        return exc.reason
    return None


def is_up_to_date(root: Path, dirs: Sequence[Path], chunker: ChunkerSettings, model_checksum: str, model: ModelInfo | None = None) -> bool:
    """True when the published build is intact and was made from exactly these files, chunker and model (see `staleness`)."""
    return staleness(root, dirs, chunker, model_checksum, model) is None


def section_heading_text(title: str, path: list[str]) -> str:
    """What a section's heading vector embeds: the article's title (a question) and the heading path."""
    return f"{title}\n{' > '.join(path)}".strip()


def _article_record(article: Article) -> ArticleRecord:
    return ArticleRecord(
        id=article.id,
        title=article.title,
        review_status=article.review_status,
        last_updated=article.last_updated,
        audience=article.audience,
        specialty=article.specialty,
        references=tuple(article.references.values()),
        unresolved_references=tuple(article.unresolved_references),
        related_questions=tuple(article.related_questions),
        content_sha256=article.content_sha256,
        path=article.path.name,
        metadata=article.metadata,
        authors=article.authors,
    )


@dataclass
class Lost:
    """A good article of the published build that the new build does not have, and why:
    "deleted" (no file of that name any more), "has errors" (its file no longer parses) or
    "id changed" (its file now holds another article id)."""

    article_id: str
    path: str
    reason: str

    def __str__(self) -> str:
        return f"{self.article_id} ({self.path}: {self.reason})"


@dataclass
class _Entry:
    """What one article file gives a build: its chunks as written to chunks.jsonl, its record,
    its sections, BM25 term ids and counts and vector keys, or its problems. Made by parsing
    and chunking the file, or read back from the build cache (marshalled: builtins only, the
    bulky parts as bytes, so reading thousands back costs little)."""

    article_id: str | None
    id_line: int
    problems: list[tuple]  # Problem fields, with file None for the entry's own file (a cached entry serves any folder)
    record: str | None  # the articles.jsonl line
    chunks: bytes  # the chunks.jsonl lines, UTF-8, each ending in a newline
    embed: bytes  # sha256 of each chunk's embed_text (the vector's key), 32 bytes each
    term_ids: bytes  # each chunk's distinct BM25 terms (ids in the cache's term table), int32, chunk after chunk
    term_counts: bytes  # how often each occurs, int32
    terms_per_chunk: bytes  # how many distinct terms each chunk has, int32
    sections: list[tuple[str, str]]  # (section id, heading text) in first-appearance order
    citations: tuple[int, int, int]  # (resolved, unresolved, oversized chunks)

    def dumps(self) -> bytes:
        return marshal.dumps(dataclasses.astuple(self))

    @classmethod
    def loads(cls, data: bytes) -> "_Entry":
        return cls(*marshal.loads(data))

    @property
    def n_chunks(self) -> int:
        return len(self.embed) // 32

    def embed_keys(self) -> list[bytes]:
        return [self.embed[i : i + 32] for i in range(0, len(self.embed), 32)]

    def chunk_line(self, i: int) -> str:
        return self.chunks.split(b"\n")[i].decode("utf-8")

    def problems_for(self, path: Path) -> list[Problem]:
        return [Problem(str(path) if f is None else f, line, message, column, position) for f, line, message, column, position in self.problems]


_NO_ENTRY = dict(record=None, chunks=b"", embed=b"", term_ids=b"", term_counts=b"", terms_per_chunk=b"", sections=[], citations=(0, 0, 0))


def _entry_of(path: Path, embedder: Embedder, chunker: ChunkerSettings, cache) -> tuple[_Entry, str]:
    """Parse and chunk one file, exactly as `load_corpus` reads it. Returns (entry, file sha256)."""
    loaded = load_corpus([path])
    digest = loaded.digests[0]
    problems = [(None if p.file == str(path) else p.file, p.line, p.message, p.column, p.position) for p in loaded.problems]
    if not loaded.articles:
        return _Entry(None, 1, problems, **_NO_ENTRY), digest
    article = loaded.articles[0]
    chunks = chunk_article(article, embedder.count_tokens, chunker)
    sections: dict[str, str] = {}
    for c in chunks:
        sections.setdefault(c.section_id, section_heading_text(c.article_title, c.section_path))
    try:
        id_line = _id_line(path.read_bytes())
    except OSError:
        id_line = 1
    counts = [term_counts(c.embed_text) for c in chunks]
    ids = cache.term_ids([t for terms, _ in counts for t in terms])
    entry = _Entry(
        article_id=article.id,
        id_line=id_line,
        problems=problems,
        record=index_store.json_line(_article_record(article).to_dict()),
        chunks="".join(index_store.json_line(c.to_dict()) + "\n" for c in chunks).encode("utf-8"),
        embed=b"".join(text_digest(c.embed_text) for c in chunks),
        term_ids=np.asarray(ids, dtype=np.int32).tobytes(),
        term_counts=np.asarray([n for _, ns in counts for n in ns], dtype=np.int32).tobytes(),
        terms_per_chunk=np.asarray([len(terms) for terms, _ in counts], dtype=np.int32).tobytes(),
        sections=list(sections.items()),
        citations=(sum(len(c.references) for c in chunks), sum(len(c.unresolved_citations) for c in chunks), sum(c.oversized for c in chunks)),
    )
    return entry, digest


def _entry_key(code: str, chunker: ChunkerSettings, model: str, path: Path, digest: str) -> bytes:
    return hashlib.sha256(f"{code};{sorted(chunker.to_dict().items())};{model};{path.name};{digest}".encode()).digest()


@dataclass
class _Corpus:
    """Every file of a build and what it gave, in corpus order, after the duplicate-id check."""

    files: list[Path]
    digests: list[str]
    entries: list[_Entry]  # the good articles, in order
    problems: list[Problem]
    skipped: list[str]
    parsed: int  # files parsed in this build (the rest came from the cache)


def _read_corpus(dirs: list[Path], embedder: Embedder, chunker: ChunkerSettings, cache, model: str) -> _Corpus:
    """`load_corpus` + chunking, with each file's result taken from the cache when its name,
    bytes, the chunker, the model and the indexer's code are unchanged."""
    files = corpus_files(dirs)
    digests = cache.file_digests(files)  # "" for a file that cannot be read: parsed below, which reports why
    code = code_digest()
    keys = [_entry_key(code, chunker, model, p, d) for p, d in zip(files, digests)]
    cached = cache.articles([k for k, d in zip(keys, digests) if d])
    entries_by_file: list[_Entry] = []
    fresh: list[tuple[bytes, bytes]] = []
    for i, (path, key) in enumerate(zip(files, keys)):
        blob = cached.get(key)
        if blob is not None:
            entries_by_file.append(_Entry.loads(blob))
            continue
        entry, digest = _entry_of(path, embedder, chunker, cache)
        if digest != digests[i]:  # the file changed while we read it: key the entry by what was parsed
            digests[i] = digest
            key = _entry_key(code, chunker, model, path, digest)
        entries_by_file.append(entry)
        if digest and not any(p[2].startswith("cannot read the file") for p in entry.problems):
            fresh.append((key, entry.dumps()))
    if fresh:
        cache.put_articles(fresh)
    entries: list[_Entry] = []
    problems: list[Problem] = []
    skipped: list[str] = []
    seen: dict[str, Path] = {}
    for path, entry in zip(files, entries_by_file):
        problems.extend(entry.problems_for(path))
        if entry.article_id is None:
            skipped.append(str(path))
            continue
        if entry.article_id in seen:  # as load_corpus says it
            problems.append(Problem(str(path), entry.id_line, f"duplicate article id {entry.article_id!r}: already used by {seen[entry.article_id]}"))
            skipped.append(str(path))
            continue
        seen[entry.article_id] = path
        entries.append(entry)
    return _Corpus(files, digests, entries, problems, skipped, len(files) - len(cached))


def _lost_articles(root: Path, corpus: _Corpus) -> list[Lost]:
    """The published build's articles that this build does not have, and why."""
    previous = index_store.current_dir(root)
    if previous is None:
        return []
    try:
        old = index_store.article_ids(previous)
    except (OSError, ValueError, KeyError):
        return []  # an unreadable published build loses nothing worth naming: it is being replaced
    kept = {e.article_id for e in corpus.entries}
    by_name = {p.name: p for p in corpus.files}
    skipped = {Path(s).name for s in corpus.skipped}
    lost = []
    for article_id, name in old:
        if article_id in kept:
            continue
        reason = "deleted" if name not in by_name else "has errors" if name in skipped else "id changed"
        lost.append(Lost(article_id, str(by_name.get(name, name)), reason))
    return lost


def build_index(
    dirs: Sequence[Path | str],
    root: Path,
    embedder: Embedder,
    chunker: ChunkerSettings = ChunkerSettings(),
    strict: bool = False,
    batch_size: int = 32,
    progress: Callable[[str, int], Callable[[int], None]] | None = None,
    wait: bool = True,
    on_wait: Callable[[str], None] | None = None,
    if_stale: bool = False,
    keep_builds: int = index_store.KEEP_BUILDS,
    cache=None,
    on_loss: Callable[[list[Lost]], bool] | None = None,
) -> BuildReport:
    """Build and atomically publish an index. Bad articles are skipped and reported,
    or stop the build when `strict`; either way the published index stays until a
    complete new build replaces it.

    `cache` (indexer.build_cache.BuildCache) makes the build incremental: a file whose name
    and bytes are unchanged is not parsed or chunked again, and a text with a cached vector
    is not embedded again; what is new is added to it. Without a cache every file is parsed
    and every text embedded. Either way the build is the same, byte for byte in its chunks,
    articles and BM25 files, and vector for vector (a test compares them).

    When the published build has good articles that this one lacks, `on_loss` is told which
    (see `Lost`) before publishing; it returns False to publish nothing (BuildFailed).

    One build runs at a time per index root: another waits for it (`on_wait` is told
    which process it waits for) or, unless `wait`, raises index_store.BuildBusy. With
    `if_stale`, a build that finds, once it holds the lock, an intact published build of
    exactly what it read (another process built it meanwhile) publishes nothing and
    returns a report with `up_to_date` set. `keep_builds` builds are kept to fall back on."""
    started = time.perf_counter()
    dirs = [Path(d) for d in dirs]
    cache = cache if cache is not None else MemoryCache()
    cache.begin()
    model = model_key(embedder)
    corpus = _read_corpus(dirs, embedder, chunker, cache, model)
    if strict and corpus.problems:
        raise BuildFailed(f"--strict: {len(corpus.skipped)} article(s) have errors; nothing was published", corpus.problems)
    if not corpus.entries:
        raise BuildFailed(f"no valid articles in {', '.join(map(str, dirs))}; nothing was published", corpus.problems)
    fingerprint = _fingerprint([(p.name, d) for p, d in zip(corpus.files, corpus.digests)], chunker, embedder.checksum)
    parse_seconds = time.perf_counter() - started

    with index_store.build_lock(root, wait=wait, on_wait=on_wait):
        if if_stale and _staleness(root, lambda: fingerprint, ModelInfo.of(embedder)) is None:
            return _up_to_date_report(root, corpus, time.perf_counter() - started)
        lost = _lost_articles(root, corpus)
        if lost and on_loss is not None and not on_loss(lost):
            raise BuildFailed(f"not published: {len(lost)} article(s) of the published build would be lost: {', '.join(map(str, lost))}", corpus.problems)
        staging = index_store.new_staging_dir(root)
        embed_started = time.perf_counter()
        # One pass in corpus order, each article's passages then its section headings, so a
        # build killed mid-way has cached whole articles, and the next one goes on from there.
        section_texts: dict[str, str] = {}
        order: list[tuple[_Entry | None, int | str]] = []  # (entry, chunk number) or (None, heading text)
        keys: list[bytes] = []
        n_chunks = 0
        for e in corpus.entries:
            n = e.n_chunks
            n_chunks += n
            order.extend((e, i) for i in range(n))
            keys.extend(e.embed_keys())
            for sid, text in e.sections:
                if sid not in section_texts:
                    section_texts[sid] = text
                    order.append((None, text))
                    keys.append(text_digest(text))
        tick = progress("embedding", len(order)) if progress else None
        every, embedded = embed_cached(_EmbedTexts(order), embedder, cache, model, batch_size=batch_size, progress=tick, digests=keys)
        is_chunk = np.fromiter((e is not None for e, _ in order), dtype=bool, count=len(order))
        vectors, section_vectors = every[is_chunk], every[~is_chunk]
        sections = SectionVectors(list(section_texts), list(section_texts.values()), section_vectors)
        embed_seconds = time.perf_counter() - embed_started
        lexical_started = time.perf_counter()
        lexical = LexicalIndex.from_arrays(
            cache.terms(),
            np.frombuffer(b"".join(e.term_ids for e in corpus.entries), dtype=np.int32),
            np.frombuffer(b"".join(e.term_counts for e in corpus.entries), dtype=np.int32),
            np.frombuffer(b"".join(e.terms_per_chunk for e in corpus.entries), dtype=np.int32),
        )
        lexical_seconds = time.perf_counter() - lexical_started
        # The spelling dictionary's words, counted once here rather than by every server at its first query.
        words = count_words(_texts_and_titles(corpus.entries))
        resolved = sum(e.citations[0] for e in corpus.entries)
        unresolved = sum(e.citations[1] for e in corpus.entries)
        oversized = sum(e.citations[2] for e in corpus.entries)
        manifest = IndexManifest(
            format_version=index_store.FORMAT_VERSION,
            medkb_version=medkb.__version__,
            model=ModelInfo.of(embedder),
            lexical=LexicalInfo(**lexical.params()),
            chunker=chunker.to_dict(),
            corpus=CorpusInfo(tuple(str(d) for d in dirs), fingerprint, len(corpus.files)),
            counts=Counts(
                articles=len(corpus.entries),
                chunks=n_chunks,
                sections=len(sections.ids),
                citations_resolved=resolved,
                citations_unresolved=unresolved,
                articles_skipped=len(corpus.skipped),
                oversized_chunks=oversized,
            ),
            skipped=tuple(corpus.problems),
            build=BuildInfo(
                finished_at=dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
                seconds=round(time.perf_counter() - started, 3),
                embed_seconds=round(embed_seconds, 3),
            ),
        )
        write_started = time.perf_counter()
        manifest = index_store.write_build(staging, b"".join(e.chunks for e in corpus.entries), vectors, [e.record for e in corpus.entries], sections,
                                           lexical, manifest, words=words)
        final = index_store.publish(root, staging, keep_builds)
        write_seconds = time.perf_counter() - write_started
    cache.snapshot(model, keys, every)  # after publishing: the next build reads these vectors in one go
    cache.finish()
    return BuildReport(
        directory=final,
        articles=len(corpus.entries),
        chunks=n_chunks,
        citations_resolved=resolved,
        citations_unresolved=unresolved,
        oversized_chunks=manifest.counts.oversized_chunks,
        skipped=corpus.skipped,
        problems=corpus.problems,
        seconds=time.perf_counter() - started,
        embed_seconds=embed_seconds,
        manifest=manifest,
        parsed=corpus.parsed,
        embedded=embedded,
        lost=lost,
        stages={"parse": round(parse_seconds, 3), "embed": round(embed_seconds, 3), "lexical": round(lexical_seconds, 3), "write": round(write_seconds, 3)},
        cache_seconds=dict(cache.stats.seconds),
    )


def _texts_and_titles(entries: Sequence[_Entry]):
    """Every chunk's text and every article's title, for the spelling words."""
    for e in entries:
        for line in e.chunks.split(b"\n"):
            if line:
                yield json.loads(line)["text"]
        if e.record:
            yield json.loads(e.record)["title"]


class _EmbedTexts(Sequence):
    """The texts to embed: a chunk line's embed_text, decoded only when asked for (only texts
    missing from the cache are), or a section's heading text."""

    def __init__(self, order: list[tuple]):
        self._order = order

    def __len__(self) -> int:
        return len(self._order)

    def __getitem__(self, i):
        entry, value = self._order[i]
        return value if entry is None else json.loads(entry.chunk_line(value))["embed_text"]


def _up_to_date_report(root: Path, loaded: "_Corpus", seconds: float) -> BuildReport:
    manifest = index_store.read_manifest(root)
    assert manifest is not None  # _staleness just read it
    c = manifest.counts
    return BuildReport(directory=index_store.current_dir(root), articles=c.articles, chunks=c.chunks, citations_resolved=c.citations_resolved,
                       citations_unresolved=c.citations_unresolved, oversized_chunks=c.oversized_chunks, skipped=loaded.skipped,
                       problems=loaded.problems, seconds=seconds, embed_seconds=0.0, up_to_date=True, manifest=manifest)
