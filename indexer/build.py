"""Build an index from corpus directories: parse -> chunk -> embed -> write -> publish."""

from __future__ import annotations

import datetime as dt
import hashlib
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np

import medkb
from indexer.articles import Article, CorpusLoad, Problem, corpus_files, load_corpus
from indexer.chunking import Chunk, ChunkerSettings, chunk_article
from indexer.embedding import Embedder, encoder_of
from indexer import index_store
from indexer.lexical import LexicalIndex


class BuildFailed(Exception):
    """A build that was stopped before publishing; the published index is untouched."""

    def __init__(self, message: str, problems: list[Problem] | None = None):
        super().__init__(message)
        self.problems = problems or []


@dataclass
class BuildReport:
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
    manifest: dict[str, Any] = field(default_factory=dict)


def corpus_fingerprint(dirs: Sequence[Path], chunker: ChunkerSettings, model_checksum: str) -> str:
    """Changes whenever anything that shapes the index changes: files, chunker, model, format."""
    digest = hashlib.sha256()
    digest.update(f"format={index_store.FORMAT_VERSION};model={model_checksum};chunker={sorted(chunker.to_dict().items())}".encode())
    for path in corpus_files(dirs):
        digest.update(path.name.encode() + b"\0")
        digest.update(hashlib.sha256(path.read_bytes()).digest())
    return digest.hexdigest()


def is_up_to_date(root: Path, dirs: Sequence[Path], chunker: ChunkerSettings, model_checksum: str, encoder: str | None = None) -> bool:
    """Whether the published index matches the corpus, chunker and model (and, when given, was
    made by `encoder`: a manifest naming none was made by torch)."""
    manifest = index_store.read_manifest(root)
    if manifest is None:
        return False
    if encoder is not None and manifest.get("model", {}).get("encoder", "torch") != encoder:
        return False
    return manifest.get("corpus", {}).get("fingerprint") == corpus_fingerprint(dirs, chunker, model_checksum)


def section_heading_text(title: str, path: list[str]) -> str:
    """What a section's heading vector embeds: the article's title (a question) and the heading path."""
    return f"{title}\n{' > '.join(path)}".strip()


def _article_record(article: Article) -> dict[str, Any]:
    return {
        "id": article.id,
        "title": article.title,
        "review_status": article.review_status,
        "last_updated": article.last_updated.isoformat() if article.last_updated else None,
        "audience": article.audience,
        "specialty": article.specialty,
        "references": [r.to_dict() for r in article.references.values()],
        "unresolved_references": list(article.unresolved_references),
        "related_questions": list(article.related_questions),
        "content_sha256": article.content_sha256,
        "path": article.path.name,
        "metadata": article.metadata,
    }


def build_index(
    dirs: Sequence[Path | str],
    root: Path,
    embedder: Embedder,
    chunker: ChunkerSettings = ChunkerSettings(),
    strict: bool = False,
    batch_size: int = 32,
    progress: Callable[[str, int], Callable[[int], None]] | None = None,
    on_loaded: Callable[[CorpusLoad], None] | None = None,
) -> BuildReport:
    """Build and atomically publish an index. Bad articles are skipped and reported,
    or stop the build when `strict`; either way the published index stays until a
    complete new build replaces it."""
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

    with index_store.build_lock(root):
        staging = index_store.new_staging_dir(root)
        embed_started = time.perf_counter()
        tick = progress("embedding", len(chunks)) if progress else None
        vectors = embedder.encode_documents([c.embed_text for c in chunks], batch_size=batch_size, progress=tick) if chunks else np.zeros((0, embedder.dim), dtype=np.float32)
        section_texts: dict[str, str] = {}
        for c in chunks:
            section_texts.setdefault(c.section_id, section_heading_text(c.article_title, c.section_path))
        section_vectors = embedder.encode_documents(list(section_texts.values()), batch_size=batch_size) if section_texts else np.zeros((0, embedder.dim), dtype=np.float32)
        sections = index_store.Sections(list(section_texts), list(section_texts.values()), section_vectors)
        embed_seconds = time.perf_counter() - embed_started
        lexical = LexicalIndex.build([c.embed_text for c in chunks])
        resolved = sum(len(c.references) for c in chunks)
        unresolved = sum(len(c.unresolved_citations) for c in chunks)
        manifest = {
            "format_version": index_store.FORMAT_VERSION,
            "medkb_version": medkb.__version__,
            "model": {
                "name": embedder.name,
                "checksum": embedder.checksum,
                "dim": embedder.dim,
                "normalize": embedder.normalize,
                "max_seq_length": embedder.max_seq_length,
                "metric": "inner_product",
                # Same weights, another runtime or precision, other vectors: queries must be encoded alike.
                "encoder": encoder_of(embedder),
                "encoder_detail": getattr(embedder, "encoder_detail", ""),
            },
            "lexical": {"library": "bm25s", "k1": 1.2, "b": 0.75, "text": "title + section path + chunk text", "stemmer": "snowball english", "stopwords": "en"},
            "chunker": chunker.to_dict(),
            "corpus": {
                "dirs": [str(d) for d in dirs],
                "fingerprint": corpus_fingerprint(dirs, chunker, embedder.checksum),
                "files": len(loaded.files),
            },
            "counts": {
                "articles": len(loaded.articles),
                "chunks": len(chunks),
                "sections": len(sections.ids),
                "citations_resolved": resolved,
                "citations_unresolved": unresolved,
                "articles_skipped": len(loaded.skipped),
                "oversized_chunks": sum(c.oversized for c in chunks),
            },
            "skipped": [{"file": p.file, "line": p.line, "message": p.message} for p in loaded.problems],
            "build": {
                "finished_at": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
                "seconds": round(time.perf_counter() - started, 3),
                "embed_seconds": round(embed_seconds, 3),
            },
        }
        index_store.write_build(staging, chunks, vectors, [_article_record(a) for a in loaded.articles], sections, lexical, manifest)
        final = index_store.publish(root, staging)
    return BuildReport(
        directory=final,
        articles=len(loaded.articles),
        chunks=len(chunks),
        citations_resolved=resolved,
        citations_unresolved=unresolved,
        oversized_chunks=manifest["counts"]["oversized_chunks"],
        skipped=loaded.skipped,
        problems=loaded.problems,
        seconds=time.perf_counter() - started,
        embed_seconds=embed_seconds,
        manifest=manifest,
    )
