"""The index on disk, in both directions: write a build, publish it atomically, load it back.

Layout of an index root:

    <root>/builds/<build id>/   manifest.json, vectors.faiss, chunks.jsonl, articles.jsonl,
                                sections.jsonl + section_vectors.npy (one per section: its
                                title and heading path, for question-to-heading matching),
                                lexical/ (BM25 over the chunks)
    <root>/current              symlink to the published build
    <root>/.staging-<id>/       a build being written; never read by anyone

A build is written completely into a staging directory, fsynced, renamed into
builds/, and only then published by atomically replacing the `current` symlink.
A build that fails or is killed at any point leaves `current` untouched.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import fcntl
import json
import os
import shutil
import time
import uuid
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from indexer.chunking import Chunk
from indexer.embedding import ModelInfo
from indexer.vocabulary import Audience, Problem, Reference, ReviewStatus

FORMAT_VERSION = 4  # 3: typed manifest (lexical.method, located problems), typed article records; 4: article authors
FILES = ("manifest.json", "vectors.faiss", "chunks.jsonl", "articles.jsonl", "sections.jsonl", "section_vectors.npy", "lexical")
KEEP_BUILDS = 2


class IndexProblem(Exception):
    """Base for index problems that a user must act on; the message says what to run."""


class IndexMissing(IndexProblem):
    """Nothing is published under the index root."""


class IndexCorrupt(IndexProblem):
    """A published build whose files are missing, unreadable or inconsistent."""


class IndexMismatch(IndexProblem):
    """A build made by another format or another model than the one loading it."""


REBUILD = "Rebuild it with `medkb index corpus` (or `make serve`, which rebuilds a stale index)."


# ---------------------------------------------------------------- the manifest


@dataclass(frozen=True)
class LexicalInfo:
    """The BM25 parameters the lexical index was built with, read back from the index itself."""

    library: str
    method: str
    k1: float
    b: float
    text: str
    stemmer: str
    stopwords: str


@dataclass(frozen=True)
class CorpusInfo:
    dirs: tuple[str, ...]
    fingerprint: str  # sha256 over format, model, chunker and every file's bytes (see build.corpus_fingerprint)
    files: int


@dataclass(frozen=True)
class Counts:
    articles: int
    chunks: int
    sections: int
    citations_resolved: int
    citations_unresolved: int
    articles_skipped: int
    oversized_chunks: int


@dataclass(frozen=True)
class BuildInfo:
    finished_at: str  # ISO 8601, UTC
    seconds: float
    embed_seconds: float


@dataclass(frozen=True)
class IndexManifest:
    """What a build is: written last into every build, read and checked once at load."""

    format_version: int
    medkb_version: str
    model: ModelInfo
    lexical: LexicalInfo
    chunker: dict[str, Any]
    corpus: CorpusInfo
    counts: Counts
    skipped: tuple[Problem, ...]
    build: BuildInfo

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["corpus"]["dirs"] = list(self.corpus.dirs)
        out["skipped"] = [p.to_dict() for p in self.skipped]
        return out

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "IndexManifest":
        """Raises KeyError/TypeError/ValueError on a malformed manifest (load turns them into IndexCorrupt)."""
        corpus = data["corpus"]
        return cls(
            format_version=int(data["format_version"]),
            medkb_version=str(data["medkb_version"]),
            model=ModelInfo(**data["model"]),
            lexical=LexicalInfo(**data["lexical"]),
            chunker=dict(data["chunker"]),
            corpus=CorpusInfo(tuple(corpus["dirs"]), corpus["fingerprint"], int(corpus["files"])),
            counts=Counts(**data["counts"]),
            skipped=tuple(Problem(**p) for p in data["skipped"]),
            build=BuildInfo(**data["build"]),
        )

    def check_model(self, expected: ModelInfo) -> None:
        """Raise IndexMismatch, saying what differs and what to run, unless `expected` is the model this build used."""
        built = self.model
        differences = []
        if built.name != expected.name:
            differences.append(f"model {built.name!r} != {expected.name!r}")
        if built.checksum != expected.checksum:
            differences.append(f"model weights checksum {built.checksum[:12]} != {expected.checksum[:12]}")
        if built.dim != expected.dim:
            differences.append(f"dimension {built.dim} != {expected.dim}")
        if built.normalize != expected.normalize:
            differences.append(f"normalisation {built.normalize} != {expected.normalize}")
        if built.metric != expected.metric:
            differences.append(f"metric {built.metric} != {expected.metric}")
        if differences:
            raise IndexMismatch("the index was built with a different embedding model than the one loading it (" + "; ".join(differences) + f"). {REBUILD}")


# ---------------------------------------------------------------- what a build holds


@dataclass
class SectionVectors:
    """One entry per section: its id, the text embedded for it (title + heading path), and the vectors (n x dim)."""

    ids: list[str]
    texts: list[str]
    vectors: np.ndarray


@dataclass(frozen=True)
class ArticleRecord:
    """An indexed article's front matter (no body): what answers need beyond the chunks."""

    id: str
    title: str
    review_status: ReviewStatus
    last_updated: dt.date | None
    audience: Audience
    specialty: str | None
    references: tuple[Reference, ...]
    unresolved_references: tuple[int, ...]
    related_questions: tuple[str, ...]
    content_sha256: str
    path: str
    metadata: dict[str, Any]
    authors: tuple[str, ...] = ()  # account names; none of them may approve the article

    def reference(self, number: int) -> Reference | None:
        return next((r for r in self.references if r.id == number), None)

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["references"] = [r.to_dict() for r in self.references]
        out["last_updated"] = self.last_updated.isoformat() if self.last_updated else None
        out["unresolved_references"] = list(self.unresolved_references)
        out["related_questions"] = list(self.related_questions)
        out["authors"] = list(self.authors)
        return out

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "ArticleRecord":
        return cls(**{
            **data,
            "review_status": ReviewStatus(data["review_status"]),
            "audience": Audience(data["audience"]),
            "last_updated": dt.date.fromisoformat(data["last_updated"]) if data["last_updated"] else None,
            "references": tuple(Reference.from_dict(r) for r in data["references"]),
            "unresolved_references": tuple(data["unresolved_references"]),
            "related_questions": tuple(data["related_questions"]),
            "authors": tuple(data.get("authors", ())),
        })


@dataclass
class LoadedIndex:
    """A published build in memory: chunks in FAISS id order, their vectors, BM25 and section vectors."""

    directory: Path
    manifest: IndexManifest
    chunks: list[Chunk]
    articles: dict[str, ArticleRecord]
    faiss_index: Any
    sections: SectionVectors
    lexical: Any  # indexer.lexical.LexicalIndex


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


@contextlib.contextmanager
def build_lock(root: Path) -> Iterator[None]:
    """One build at a time per index root (a second waits)."""
    root.mkdir(parents=True, exist_ok=True)
    with open(root / ".lock", "w") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def new_staging_dir(root: Path) -> Path:
    """A fresh staging directory. Leftovers of killed builds are removed (we hold the build lock)."""
    root.mkdir(parents=True, exist_ok=True)
    for stale in root.glob(".staging-*"):
        shutil.rmtree(stale, ignore_errors=True)
    staging = root / f".staging-{time.strftime('%Y%m%dT%H%M%S')}-{uuid.uuid4().hex[:8]}"
    staging.mkdir()
    return staging


def write_build(staging: Path, chunks: list[Chunk], vectors: np.ndarray, articles: list[ArticleRecord], sections: SectionVectors,
                lexical, manifest: IndexManifest) -> None:
    """Write every file of a build into `staging`; the manifest goes last."""
    import faiss  # heavy: imported on use only

    if len(chunks) != vectors.shape[0]:
        raise ValueError(f"{len(chunks)} chunks but {vectors.shape[0]} vectors")
    index = faiss.IndexFlatIP(manifest.model.dim)
    if len(chunks):
        index.add(np.ascontiguousarray(vectors, dtype=np.float32))
    faiss.write_index(index, str(staging / "vectors.faiss"))
    with open(staging / "chunks.jsonl", "w", encoding="utf-8") as fh:
        for chunk in chunks:
            fh.write(json.dumps(chunk.to_dict(), ensure_ascii=False) + "\n")
    with open(staging / "articles.jsonl", "w", encoding="utf-8") as fh:
        for article in articles:
            fh.write(json.dumps(article.to_dict(), ensure_ascii=False) + "\n")
    with open(staging / "sections.jsonl", "w", encoding="utf-8") as fh:
        for sid, text in zip(sections.ids, sections.texts):
            fh.write(json.dumps({"id": sid, "text": text}, ensure_ascii=False) + "\n")
    np.save(staging / "section_vectors.npy", np.ascontiguousarray(sections.vectors, dtype=np.float32))
    (staging / "lexical").mkdir()
    lexical.save(staging / "lexical")
    with open(staging / "manifest.json", "w", encoding="utf-8") as fh:
        json.dump(manifest.to_dict(), fh, indent=2, sort_keys=True)
        fh.write("\n")
    for path in [staging / name for name in FILES if name != "lexical"] + list((staging / "lexical").iterdir()):
        with open(path, "rb") as fh:
            os.fsync(fh.fileno())
    _fsync_dir(staging / "lexical")
    _fsync_dir(staging)


def publish(root: Path, staging: Path) -> Path:
    """Move a complete staging build into builds/ and point `current` at it atomically."""
    builds = root / "builds"
    builds.mkdir(parents=True, exist_ok=True)
    final = builds / staging.name.removeprefix(".staging-")
    os.rename(staging, final)
    _fsync_dir(builds)
    tmp_link = root / f".current-{uuid.uuid4().hex[:8]}"
    os.symlink(os.path.relpath(final, root), tmp_link)
    os.replace(tmp_link, root / "current")  # rename(2) over the old link: atomic
    _fsync_dir(root)
    _prune(root, keep=final)
    return final


def _prune(root: Path, keep: Path) -> None:
    """Remove old builds, keeping the published one and the newest before it."""
    others = sorted((b for b in (root / "builds").iterdir() if b != keep), key=lambda p: p.name, reverse=True)
    for build in others[KEEP_BUILDS - 1 :]:
        shutil.rmtree(build, ignore_errors=True)


def current_dir(root: Path) -> Path | None:
    link = root / "current"
    if not link.exists():
        return None
    return link.resolve()


def _read_manifest_file(directory: Path) -> IndexManifest:
    try:
        data = json.loads((directory / "manifest.json").read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise IndexCorrupt(f"index {directory}: manifest.json cannot be read ({exc}). {REBUILD}") from None
    version = data.get("format_version") if isinstance(data, dict) else None
    # The format first: an older build lacks newer fields and files, and its format is the real reason.
    if version != FORMAT_VERSION:
        raise IndexMismatch(f"index {directory} has format {version}, this medkb reads format {FORMAT_VERSION}. {REBUILD}")
    try:
        return IndexManifest.from_dict(data)
    except (KeyError, TypeError, ValueError) as exc:
        raise IndexCorrupt(f"index {directory}: manifest.json is malformed ({type(exc).__name__}: {exc}). {REBUILD}") from None


def read_manifest(root: Path) -> IndexManifest | None:
    """The published build's manifest, or None when nothing is published.
    Raises IndexMismatch for another format and IndexCorrupt for an unreadable manifest."""
    directory = current_dir(root)
    if directory is None or not (directory / "manifest.json").exists():
        return None
    return _read_manifest_file(directory)


def load_index(root: Path, model: ModelInfo | None = None) -> LoadedIndex:
    """Load the published build, checking it once: format, files, counts and, when `model`
    is given, that it was built by that model. Raises IndexMissing, IndexCorrupt or
    IndexMismatch with a message that says what to run."""
    import faiss  # heavy: imported on use only

    from indexer.lexical import LexicalIndex

    directory = current_dir(root)
    if directory is None:
        raise IndexMissing(f"no index published under {root}. Build one with `medkb index corpus --index-dir {root}`.")
    if not (directory / "manifest.json").exists():
        raise IndexCorrupt(f"index {directory} lacks manifest.json. {REBUILD}")
    manifest = _read_manifest_file(directory)
    if model is not None:
        manifest.check_model(model)
    missing = [name for name in FILES if not (directory / name).exists()]
    if missing:
        raise IndexCorrupt(f"index {directory} lacks {', '.join(missing)}. {REBUILD}")
    chunks = [Chunk.from_dict(json.loads(line)) for line in (directory / "chunks.jsonl").read_text(encoding="utf-8").splitlines() if line]
    articles: dict[str, ArticleRecord] = {}
    for line in (directory / "articles.jsonl").read_text(encoding="utf-8").splitlines():
        if line:
            article = ArticleRecord.from_dict(json.loads(line))
            articles[article.id] = article
    index = faiss.read_index(str(directory / "vectors.faiss"))
    rows = [json.loads(line) for line in (directory / "sections.jsonl").read_text(encoding="utf-8").splitlines() if line]
    sections = SectionVectors([r["id"] for r in rows], [r["text"] for r in rows], np.load(directory / "section_vectors.npy"))
    lexical = LexicalIndex.load(directory / "lexical", len(chunks))
    expected = manifest.counts.chunks
    if index.ntotal != len(chunks) or expected != len(chunks):
        raise IndexCorrupt(f"index {directory} is inconsistent: {index.ntotal} vectors, {len(chunks)} chunks, manifest says {expected}. {REBUILD}")
    if index.d != manifest.model.dim:
        raise IndexCorrupt(f"index {directory} holds {index.d}-dimensional vectors, its manifest says {manifest.model.dim}. {REBUILD}")
    if len(sections.ids) != sections.vectors.shape[0] or not {c.section_id for c in chunks} <= set(sections.ids):
        raise IndexCorrupt(f"index {directory} has inconsistent section vectors. {REBUILD}")
    return LoadedIndex(directory=directory, manifest=manifest, chunks=chunks, articles=articles, faiss_index=index, sections=sections, lexical=lexical)
