"""Build an index from corpus directories: parse -> chunk -> embed -> write -> publish."""

from __future__ import annotations

import datetime as dt
import hashlib
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

import medkb
from indexer import index_store
from indexer.articles import Article, CorpusLoad, corpus_files, load_corpus
from indexer.chunking import Chunk, ChunkerSettings, chunk_article
from indexer.embedding import Embedder
from indexer.index_store import ArticleRecord, BuildInfo, CorpusInfo, Counts, IndexManifest, LexicalInfo, ModelInfo, SectionVectors
from indexer.lexical import LexicalIndex
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


def staleness(root: Path, dirs: Sequence[Path], chunker: ChunkerSettings, model_checksum: str) -> str | None:
    """None when the published build is intact and was made from exactly these files, chunker and
    model; otherwise why it is not, in one line. Another format, an unreadable or malformed manifest,
    or a damaged data file (missing, another size, another SHA-256) make a build stale, never an error."""
    return _staleness(root, lambda: corpus_fingerprint(dirs, chunker, model_checksum))


def _staleness(root: Path, fingerprint: Callable[[], str]) -> str | None:
    directory = index_store.current_dir(root)
    if directory is None:
        return f"no index is published under {root}"
    try:
        manifest = index_store.read_manifest(root)
        if manifest is None:
            return f"no index is published under {root}"
        if manifest.corpus.fingerprint != fingerprint():
            return f"the corpus, chunker settings or model changed since build {directory.name}"
        index_store.check_build(directory)  # the checksums last: hashing costs the most
    except index_store.IndexProblem as exc:
        return exc.reason
    return None


def is_up_to_date(root: Path, dirs: Sequence[Path], chunker: ChunkerSettings, model_checksum: str) -> bool:
    """True when the published build is intact and was made from exactly these files, chunker and model (see `staleness`)."""
    return staleness(root, dirs, chunker, model_checksum) is None


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


def build_index(
    dirs: Sequence[Path | str],
    root: Path,
    embedder: Embedder,
    chunker: ChunkerSettings = ChunkerSettings(),
    strict: bool = False,
    batch_size: int = 32,
    progress: Callable[[str, int], Callable[[int], None]] | None = None,
    on_loaded: Callable[[CorpusLoad], None] | None = None,
    wait: bool = True,
    on_wait: Callable[[str], None] | None = None,
    if_stale: bool = False,
    keep_builds: int = index_store.KEEP_BUILDS,
) -> BuildReport:
    """Build and atomically publish an index. Bad articles are skipped and reported,
    or stop the build when `strict`; either way the published index stays until a
    complete new build replaces it.

    One build runs at a time per index root: another waits for it (`on_wait` is told
    which process it waits for) or, unless `wait`, raises index_store.BuildBusy. With
    `if_stale`, a build that finds, once it holds the lock, an intact published build of
    exactly what it read (another process built it meanwhile) publishes nothing and
    returns a report with `up_to_date` set. `keep_builds` builds are kept to fall back on."""
    started = time.perf_counter()
    dirs = [Path(d) for d in dirs]
    loaded = load_corpus(dirs)
    if on_loaded:
        on_loaded(loaded)
    if strict and loaded.problems:
        raise BuildFailed(f"--strict: {len(loaded.skipped)} article(s) have errors; nothing was published", loaded.problems)
    if not loaded.articles:
        raise BuildFailed(f"no valid articles in {', '.join(map(str, dirs))}; nothing was published", loaded.problems)

    chunks: list[Chunk] = []
    for article in loaded.articles:
        chunks.extend(chunk_article(article, embedder.count_tokens, chunker))

    with index_store.build_lock(root, wait=wait, on_wait=on_wait):
        if if_stale and _staleness(root, lambda: loaded_fingerprint(loaded, chunker, embedder.checksum)) is None:
            return _up_to_date_report(root, loaded, time.perf_counter() - started)
        staging = index_store.new_staging_dir(root)
        embed_started = time.perf_counter()
        tick = progress("embedding", len(chunks)) if progress else None
        vectors = embedder.encode_documents([c.embed_text for c in chunks], batch_size=batch_size, progress=tick) if chunks else np.zeros((0, embedder.dim), dtype=np.float32)
        section_texts: dict[str, str] = {}
        for c in chunks:
            section_texts.setdefault(c.section_id, section_heading_text(c.article_title, c.section_path))
        section_vectors = embedder.encode_documents(list(section_texts.values()), batch_size=batch_size) if section_texts else np.zeros((0, embedder.dim), dtype=np.float32)
        sections = SectionVectors(list(section_texts), list(section_texts.values()), section_vectors)
        embed_seconds = time.perf_counter() - embed_started
        lexical = LexicalIndex.build([c.embed_text for c in chunks])
        resolved = sum(len(c.references) for c in chunks)
        unresolved = sum(len(c.unresolved_citations) for c in chunks)
        manifest = IndexManifest(
            format_version=index_store.FORMAT_VERSION,
            medkb_version=medkb.__version__,
            model=ModelInfo.of(embedder),
            lexical=LexicalInfo(**lexical.params()),
            chunker=chunker.to_dict(),
            corpus=CorpusInfo(tuple(str(d) for d in dirs), loaded_fingerprint(loaded, chunker, embedder.checksum), len(loaded.files)),
            counts=Counts(
                articles=len(loaded.articles),
                chunks=len(chunks),
                sections=len(sections.ids),
                citations_resolved=resolved,
                citations_unresolved=unresolved,
                articles_skipped=len(loaded.skipped),
                oversized_chunks=sum(c.oversized for c in chunks),
            ),
            skipped=tuple(loaded.problems),
            build=BuildInfo(
                finished_at=dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
                seconds=round(time.perf_counter() - started, 3),
                embed_seconds=round(embed_seconds, 3),
            ),
        )
        manifest = index_store.write_build(staging, chunks, vectors, [_article_record(a) for a in loaded.articles], sections, lexical, manifest)
        final = index_store.publish(root, staging, keep_builds)
    return BuildReport(
        directory=final,
        articles=len(loaded.articles),
        chunks=len(chunks),
        citations_resolved=resolved,
        citations_unresolved=unresolved,
        oversized_chunks=manifest.counts.oversized_chunks,
        skipped=loaded.skipped,
        problems=loaded.problems,
        seconds=time.perf_counter() - started,
        embed_seconds=embed_seconds,
        manifest=manifest,
    )


def _up_to_date_report(root: Path, loaded: CorpusLoad, seconds: float) -> BuildReport:
    manifest = index_store.read_manifest(root)
    assert manifest is not None  # _staleness just read it
    c = manifest.counts
    return BuildReport(directory=index_store.current_dir(root), articles=c.articles, chunks=c.chunks, citations_resolved=c.citations_resolved,
                       citations_unresolved=c.citations_unresolved, oversized_chunks=c.oversized_chunks, skipped=loaded.skipped,
                       problems=loaded.problems, seconds=seconds, embed_seconds=0.0, up_to_date=True, manifest=manifest)
