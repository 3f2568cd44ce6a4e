"""The index on disk, in both directions: write a build, publish it atomically, load it back.

Layout of an index root:

    <root>/builds/<build id>/   manifest.json, vectors.faiss, chunks.jsonl, articles.jsonl,
                                sections.jsonl + section_vectors.npy (one per section: its
                                title and heading path, for question-to-heading matching),
                                lexical/ (BM25 over the chunks), spelling.tsv (the
                                index's own words and their counts, for spelling correction;
                                optional: builds before it lack it and are still read)
    <root>/current              symlink to the published build
    <root>/.staging-<id>/       a build being written; never read by anyone
    <root>/.lock                flock held by the one build running (a second waits); holds its pid

A build is written completely into a staging directory, fsynced, renamed into
builds/, and only then published by atomically replacing the `current` symlink.
A build that fails or is killed at any point leaves `current` untouched.

The manifest lists every data file of its build with its size and SHA-256, and a
build is checked against it before it is used. A published build that fails the
check is refused, naming the damaged file, and loading falls back to the newest
intact build among the last KEEP_BUILDS kept under builds/.
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime as dt
import fcntl
import hashlib
import json
import os
import re
import shutil
import types
import typing
import uuid
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, TypeVar

import numpy as np

from indexer.chunking import Chunk
from indexer.embedding import ModelInfo
from indexer.spelling import SPELLING_FILE, read_words, write_words
from indexer.vocabulary import Audience, Problem, Reference, ReviewStatus

FORMAT_VERSION = 5  # 5: article authors (account names); 4: each data file's size and SHA-256 in the manifest (`files`); 3: typed manifest, typed article records
DATA_FILES = ("vectors.faiss", "chunks.jsonl", "articles.jsonl", "sections.jsonl", "section_vectors.npy")
LEXICAL = "lexical"  # a directory: every file under it is a data file too
OPTIONAL_FILES = (SPELLING_FILE,)  # listed with their checksums when a build has them; older builds of this format do not
FILES = ("manifest.json", *DATA_FILES, LEXICAL)
KEEP_BUILDS = 3  # builds kept under builds/, the published one included: what a damaged build falls back to


class IndexProblem(Exception):
    """Base for index problems that a user must act on; the message says what to run.
    `reason` is the message without the instruction (for composing messages)."""

    def __init__(self, message: str, reason: str | None = None):
        super().__init__(message)
        self.reason = reason or message


class IndexMissing(IndexProblem):
    """Nothing is published under the index root."""


class IndexCorrupt(IndexProblem):
    """A published build whose files are missing, unreadable or inconsistent."""


class IndexMismatch(IndexProblem):
    """A build made by another format or another model than the one loading it."""


class BuildBusy(Exception):
    """Another build holds the index root's lock and the caller chose not to wait."""


REBUILD = "Rebuild it with `medkb index corpus` (or `make serve`, which rebuilds a stale or damaged index)."


def rebuild_advice(root: Path | None) -> str:
    """What to run to rebuild the index under `root` (an index root; None when not known, for
    a build kept outside one): the command names the root, so that it rebuilds this index and
    not the default one."""
    if root is None:
        return REBUILD
    return f"Rebuild it with `medkb index corpus --index-dir {root}` (or `make serve`, which rebuilds a stale or damaged index)."


def _corrupt(reason: str, build: Path | None = None) -> IndexCorrupt:
    return IndexCorrupt(f"{reason}. {rebuild_advice(_root_of(build) if build else None)}", reason)


# ---------------------------------------------------------------- the manifest

T = TypeVar("T")
_SIMPLE = {str: (str,), int: (int,), float: (int, float), bool: (bool,)}


def _typed(cls: type[T], data: Any) -> T:
    """`cls(**data)`, checking that `data` is an object with exactly its fields and that fields
    declared str, int, float or bool (or one of them | None) hold one. TypeError otherwise."""
    if not isinstance(data, dict):
        raise TypeError(f"{cls.__name__} must be an object, not {type(data).__name__}")
    hints = typing.get_type_hints(cls)
    for name, value in data.items():
        hint = hints.get(name)
        if hint is None:
            continue  # an unknown field: cls(**data) names it
        allowed = typing.get_args(hint) if isinstance(hint, types.UnionType) or typing.get_origin(hint) is typing.Union else (hint,)
        if not all(a in _SIMPLE or a is type(None) for a in allowed):
            continue
        ok = any(value is None if a is type(None) else (isinstance(value, _SIMPLE[a]) and (a is bool or not isinstance(value, bool))) for a in allowed)
        if not ok:
            raise TypeError(f"{cls.__name__}.{name} must be {' or '.join(getattr(a, '__name__', str(a)) for a in allowed)}, not {value!r}")
    return cls(**data)


_SHA256 = re.compile(r"[0-9a-f]{64}")


@dataclass(frozen=True)
class FileEntry:
    """One data file of a build, as written: its path inside the build ("/"-separated), size and SHA-256."""

    path: str
    size: int
    sha256: str

    @classmethod
    def from_dict(cls, data: Any) -> "FileEntry":
        entry = _typed(cls, data)
        parts = entry.path.split("/")
        if entry.path.startswith("/") or ".." in parts or "" in parts or entry.path == "manifest.json":
            raise ValueError(f"files: {entry.path!r} is not a data file path inside a build")
        if entry.size < 0 or not _SHA256.fullmatch(entry.sha256):
            raise ValueError(f"files: {entry.path}: bad size or sha256")
        return entry

    @classmethod
    def of(cls, directory: Path, path: str) -> "FileEntry":
        size, digest = _size_and_digest(directory / path)
        return cls(path, size, digest)


def _size_and_digest(path: Path) -> tuple[int, str]:
    with open(path, "rb") as fh:
        size = os.fstat(fh.fileno()).st_size
        return size, hashlib.file_digest(fh, "sha256").hexdigest()


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
    files: tuple[FileEntry, ...] = ()  # every data file of the build; filled in by write_build

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["corpus"]["dirs"] = list(self.corpus.dirs)
        out["skipped"] = [p.to_dict() for p in self.skipped]
        out["files"] = [asdict(f) for f in self.files]
        return out

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "IndexManifest":
        """Raises KeyError/TypeError/ValueError on a malformed manifest: a missing field, a field
        of the wrong type, a data file left unlisted (load turns them into IndexCorrupt)."""
        if not isinstance(data, dict):
            raise TypeError(f"the manifest must be an object, not {type(data).__name__}")
        corpus = data["corpus"]
        if not isinstance(corpus, dict) or not isinstance(corpus.get("dirs"), list) or not all(isinstance(d, str) for d in corpus["dirs"]):
            raise TypeError("corpus must be an object with dirs (a list of paths), fingerprint and files")
        if not isinstance(data["chunker"], dict) or not isinstance(data["skipped"], list) or not isinstance(data["files"], list):
            raise TypeError("chunker must be an object, skipped and files lists")
        manifest = _typed(cls, {
            "format_version": data["format_version"],
            "medkb_version": data["medkb_version"],
            "model": _typed(ModelInfo, data["model"]),
            "lexical": _typed(LexicalInfo, data["lexical"]),
            "chunker": dict(data["chunker"]),
            "corpus": _typed(CorpusInfo, {**corpus, "dirs": tuple(corpus["dirs"])}),
            "counts": _typed(Counts, data["counts"]),
            "skipped": tuple(_typed(Problem, p) for p in data["skipped"]),
            "build": _typed(BuildInfo, data["build"]),
            "files": tuple(FileEntry.from_dict(f) for f in data["files"]),
        })
        listed = {f.path for f in manifest.files}
        unlisted = [name for name in DATA_FILES if name not in listed]
        if not any(p.startswith(LEXICAL + "/") for p in listed):
            unlisted.append(LEXICAL + "/")
        if unlisted or len(listed) != len(manifest.files):
            raise ValueError(f"files: {', '.join(unlisted) or 'a file'} {'is' if len(unlisted) == 1 else 'are'} not listed once with its checksum")
        return manifest

    def content_identity(self) -> dict[str, Any]:
        """Everything this manifest records that shapes what the build serves, for telling
        whether two builds serve the same thing: the format, the whole model identity (weights,
        dimension, normalisation, metric, and the encoder, precision and export recipe that make
        its vectors), the lexical index's parameters, the chunker settings, the corpus
        fingerprint and each data file's size and SHA-256 (the chunks, vectors, sections,
        articles and lexical index themselves). Not when or how fast it was built, the medkb
        version that built it, nor what it skipped, which change nothing it serves."""
        return {
            "format_version": self.format_version,
            "model": asdict(self.model),
            "lexical": asdict(self.lexical),
            "chunker": dict(self.chunker),
            "fingerprint": self.corpus.fingerprint,
            "files": sorted((f.path, f.size, f.sha256) for f in self.files),
        }

    def check_model(self, expected: ModelInfo, index_dir: Path | None = None) -> None:
        """Raise IndexMismatch, saying what differs and what to run, unless `expected` is the model
        this build used; the command to run names `index_dir` (the index root) when given."""
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
            reason = "the index was built with a different embedding model than the one loading it (" + "; ".join(differences) + ")"
            raise IndexMismatch(f"{reason}. {rebuild_advice(index_dir)}", reason)
        if (built.encoder, built.precision, built.recipe) != (expected.encoder, expected.precision, expected.recipe):
            # Same weights, another runtime, precision or export recipe: close vectors, not the same ones.
            made, asked = built.setting, expected.setting
            if made == asked:  # another ONNX recipe (this medkb exports differently now)
                detail = f"the {made} encoder's export recipe {built.recipe or '-'} (queries: {expected.recipe or '-'})"
            else:
                detail = f"the {made} encoder, but queries would be encoded with {asked}"
            reason = (f"the index was built with {detail} (MEDKB_ENCODER): the same weights give slightly different vectors on another "
                      "runtime, precision or recipe")
            where = f" --index-dir {index_dir}" if index_dir is not None else ""
            raise IndexMismatch(f"{reason}. Rebuild it with `MEDKB_ENCODER={asked} medkb index --if-stale{where}` (it indexes the corpus "
                                "in MEDKB_CORPUS, or corpus/ by default; `make serve` rebuilds it)"
                                + (f", or set MEDKB_ENCODER={made} to serve it as it is." if made != asked else "."), reason)


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
    """A checked build in memory: chunks in FAISS id order, their vectors, BM25 and section vectors.
    `fallback` says why, when this is not the published build (which was damaged)."""

    directory: Path
    manifest: IndexManifest
    chunks: list[Chunk]
    articles: dict[str, ArticleRecord]
    faiss_index: Any
    sections: SectionVectors
    lexical: Any  # indexer.lexical.LexicalIndex
    fallback: str | None = None
    loaded_at: str = ""  # when it was read from disk (ISO 8601, UTC)
    chunk_keys: dict[bytes, Chunk] = dataclasses.field(default_factory=dict, repr=False)  # digest of each chunks.jsonl line -> its chunk (see load_build)
    words: dict[str, int] | None = None  # spelling.tsv: the index's own words with their counts (None: a build without it)


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


# ---------------------------------------------------------------- writing and publishing


@contextlib.contextmanager
def build_lock(root: Path, wait: bool = True, on_wait: Callable[[str], None] | None = None) -> Iterator[None]:
    """One build at a time per index root. A second build waits (telling `on_wait` who it waits
    for), or raises BuildBusy when `wait` is false. The lock is an flock on <root>/.lock, so the
    kernel releases it when its holder exits, however it exits; the file holds the holder's pid."""
    root.mkdir(parents=True, exist_ok=True)
    fd = os.open(root / ".lock", os.O_RDWR | os.O_CREAT, 0o644)  # never truncated before we hold it
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 32, 0).decode(errors="replace").strip() or "unknown"
            if not wait:
                raise BuildBusy(f"another build is running (pid {holder}) under {root}; try again when it ends, or drop --no-wait to wait for it") from None
            if on_wait:
                on_wait(f"another build is running (pid {holder}); waiting...")
            fcntl.flock(fd, fcntl.LOCK_EX)
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        try:
            yield
        finally:
            os.ftruncate(fd, 0)
            fcntl.flock(fd, fcntl.LOCK_UN)
    finally:
        os.close(fd)


def new_staging_dir(root: Path) -> Path:
    """A fresh staging directory. Leftovers of killed builds are removed (we hold the build lock).
    Names sort by start time (to the microsecond): the newest build has the greatest name."""
    root.mkdir(parents=True, exist_ok=True)
    for stale in root.glob(".staging-*"):
        shutil.rmtree(stale, ignore_errors=True)
    staging = root / f".staging-{dt.datetime.now().strftime('%Y%m%dT%H%M%S-%f')}-{uuid.uuid4().hex[:8]}"
    staging.mkdir()
    return staging


def _data_files(directory: Path) -> list[str]:
    """The data files of a build directory, as manifest paths, in a fixed order."""
    lexical = sorted(p.relative_to(directory).as_posix() for p in (directory / LEXICAL).rglob("*") if p.is_file())
    return [*DATA_FILES, *(name for name in OPTIONAL_FILES if (directory / name).exists()), *lexical]


def json_line(data: dict[str, Any]) -> str:
    """One line of chunks.jsonl or articles.jsonl (without its newline)."""
    return json.dumps(data, ensure_ascii=False)


def _line(item: Chunk | ArticleRecord | str) -> str:
    return item if isinstance(item, str) else json_line(item.to_dict())


def write_build(staging: Path, chunks: Sequence[Chunk | str] | bytes, vectors: np.ndarray, articles: Sequence[ArticleRecord | str], sections: SectionVectors,
                lexical, manifest: IndexManifest, words: dict[str, int] | None = None) -> IndexManifest:
    """Write every file of a build into `staging`; the manifest goes last, listing each data
    file's size and SHA-256 as read back from disk. Returns the manifest as written.
    `words` (indexer.spelling.count_words over the chunks and titles) is written as spelling.tsv.
    Chunks and articles are objects, or their lines as `json_line` writes them; chunks may
    also be the whole of chunks.jsonl as UTF-8 bytes (what the build cache keeps)."""
    import faiss  # heavy: imported on use only

    n_chunks = chunks.count(b"\n") if isinstance(chunks, bytes) else len(chunks)
    if n_chunks != vectors.shape[0]:
        raise ValueError(f"{n_chunks} chunks but {vectors.shape[0]} vectors")
    index = faiss.IndexFlatIP(manifest.model.dim)
    if n_chunks:
        index.add(np.ascontiguousarray(vectors, dtype=np.float32))
    faiss.write_index(index, str(staging / "vectors.faiss"))
    if isinstance(chunks, bytes):
        (staging / "chunks.jsonl").write_bytes(chunks)
    else:
        with open(staging / "chunks.jsonl", "w", encoding="utf-8") as fh:
            fh.writelines(_line(chunk) + "\n" for chunk in chunks)
    with open(staging / "articles.jsonl", "w", encoding="utf-8") as fh:
        fh.writelines(_line(article) + "\n" for article in articles)
    with open(staging / "sections.jsonl", "w", encoding="utf-8") as fh:
        for sid, text in zip(sections.ids, sections.texts):
            fh.write(json.dumps({"id": sid, "text": text}, ensure_ascii=False) + "\n")
    np.save(staging / "section_vectors.npy", np.ascontiguousarray(sections.vectors, dtype=np.float32))
    if words is not None:
        write_words(staging / SPELLING_FILE, words)
    (staging / LEXICAL).mkdir()
    lexical.save(staging / LEXICAL)
    entries = []
    for name in _data_files(staging):
        with open(staging / name, "rb") as fh:
            os.fsync(fh.fileno())
        entries.append(FileEntry.of(staging, name))
    manifest = dataclasses.replace(manifest, files=tuple(entries))
    with open(staging / "manifest.json", "w", encoding="utf-8") as fh:
        json.dump(manifest.to_dict(), fh, indent=2, sort_keys=True)
        fh.write("\n")
        fh.flush()
        os.fsync(fh.fileno())
    _fsync_dir(staging / LEXICAL)
    _fsync_dir(staging)
    return manifest


def publish(root: Path, staging: Path, keep: int = KEEP_BUILDS) -> Path:
    """Move a complete staging build into builds/ and point `current` at it atomically;
    then keep the `keep` newest builds (the published one included) and remove the rest."""
    builds = root / "builds"
    builds.mkdir(parents=True, exist_ok=True)
    final = builds / staging.name.removeprefix(".staging-")
    os.rename(staging, final)
    _fsync_dir(builds)
    tmp_link = root / f".current-{uuid.uuid4().hex[:8]}"
    os.symlink(os.path.relpath(final, root), tmp_link)
    os.replace(tmp_link, root / "current")  # rename(2) over the old link: atomic
    _fsync_dir(root)
    _prune(root, final, keep)
    return final


def _prune(root: Path, published: Path, keep: int = KEEP_BUILDS) -> None:
    """Remove old builds, keeping the published one and the `keep` - 1 newest others (to fall back on)."""
    others = sorted((b for b in (root / "builds").iterdir() if b != published and b.is_dir()), key=lambda p: p.name, reverse=True)
    for build in others[max(keep, 1) - 1 :]:
        shutil.rmtree(build, ignore_errors=True)


# ---------------------------------------------------------------- reading and checking


def current_dir(root: Path) -> Path | None:
    """The published build's directory (which may be missing if `current` dangles), or None when nothing is published."""
    link = root / "current"
    if not link.is_symlink() and not link.exists():
        return None
    return link.resolve()


def article_ids(directory: Path) -> list[tuple[str, str]]:
    """(article id, file name) of every article in a build, from its articles.jsonl."""
    out = []
    with open(directory / "articles.jsonl", encoding="utf-8") as fh:
        for line in fh:
            if line.strip():
                record = json.loads(line)
                out.append((record["id"], record["path"]))
    return out


def kept_builds(root: Path) -> list[Path]:
    """Every build directory under builds/, newest first."""
    builds = root / "builds"
    if not builds.is_dir():
        return []
    return sorted((b for b in builds.iterdir() if b.is_dir()), key=lambda p: p.name, reverse=True)


def _read_manifest_file(directory: Path) -> IndexManifest:
    if not directory.is_dir():
        raise _corrupt(f"index build {directory} is missing", directory)
    try:
        data = json.loads((directory / "manifest.json").read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise _corrupt(f"index build {directory}: manifest.json is missing", directory) from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise _corrupt(f"index build {directory}: manifest.json cannot be read ({exc})", directory) from None
    if not isinstance(data, dict) or type(data.get("format_version")) is not int:
        raise _corrupt(f"index build {directory}: manifest.json is malformed (no integer format_version)", directory)
    version = data["format_version"]
    # The format first: an older build lacks newer fields and files, and its format is the real reason.
    if version != FORMAT_VERSION:
        reason = f"index {directory} has format {version}, this medkb reads format {FORMAT_VERSION}"
        raise IndexMismatch(f"{reason}. {rebuild_advice(_root_of(directory))}", reason)
    try:
        return IndexManifest.from_dict(data)
    except (KeyError, TypeError, ValueError) as exc:
        what = f"missing field {exc}" if isinstance(exc, KeyError) else f"{type(exc).__name__}: {exc}"
        raise _corrupt(f"index build {directory}: manifest.json is malformed ({what})", directory) from None


def read_manifest(root: Path) -> IndexManifest | None:
    """The published build's manifest (not checked against its files), or None when nothing is
    published. Raises IndexMismatch for another format and IndexCorrupt for an unreadable manifest."""
    directory = current_dir(root)
    if directory is None:
        return None
    return _read_manifest_file(directory)


def damaged_files(directory: Path, manifest: IndexManifest) -> list[str]:
    """What is wrong with the build's data files against its manifest, each naming its file:
    missing, another size, or other bytes (SHA-256). Empty when the build is intact."""
    problems = []
    for entry in manifest.files:
        path = directory / entry.path
        try:
            size = path.stat().st_size
            if size != entry.size:
                problems.append(f"{entry.path} has {size} bytes, the manifest says {entry.size}")
                continue
            if _size_and_digest(path)[1] != entry.sha256:
                problems.append(f"{entry.path} does not match its SHA-256 in the manifest")
        except FileNotFoundError:
            problems.append(f"{entry.path} is missing")
        except OSError as exc:
            problems.append(f"{entry.path} cannot be read ({exc.strerror or exc})")
    return problems


def _root_of(build: Path) -> Path | None:
    """The index root a build directory (<root>/builds/<id>) belongs to; None for a build kept elsewhere."""
    return build.parent.parent if build.parent.name == "builds" else None


def check_build(directory: Path, model: ModelInfo | None = None) -> IndexManifest:
    """A build's manifest, once the build has passed every check that does not parse its data:
    a readable manifest of this format, the model (when given), and each data file's size and
    SHA-256. Raises IndexCorrupt (naming the damaged files) or IndexMismatch."""
    manifest = _read_manifest_file(directory)
    if model is not None:
        manifest.check_model(model, _root_of(directory))
    problems = damaged_files(directory, manifest)
    if problems:
        raise _corrupt(f"index build {directory} is damaged: {'; '.join(problems)}", directory)
    return manifest


def _first_intact(root: Path, attempt: Callable[[Path], T]) -> tuple[T, Path, str | None]:
    """`attempt` on the published build; if that build is damaged (IndexCorrupt), on each other
    kept build, newest first, until one passes. Returns (result, its directory, why it is not the
    published build or None). Raises IndexMissing, IndexMismatch (the published build's: another
    model or format is not damage and is not papered over), or IndexCorrupt when nothing is intact."""
    published = current_dir(root)
    if published is None:
        raise IndexMissing(f"no index published under {root}. Build one with `medkb index corpus --index-dir {root}`.")
    try:
        return attempt(published), published, None
    except IndexCorrupt as exc:
        damage = exc
    refused = []
    for candidate in kept_builds(root):
        if candidate == published:
            continue
        try:
            result = attempt(candidate)
        except IndexProblem as exc:
            refused.append(f"{candidate.name}: {exc.reason.removeprefix(f'index build {candidate}').lstrip(': ')}")
            continue
        why = f"serving build {candidate.name}, the newest intact one, not the published build: {damage.reason}. {rebuild_advice(root)}"
        return result, candidate, why
    others = f"and no other kept build is intact ({'; '.join(refused)})" if refused else "and no other build is kept to fall back on"
    raise IndexCorrupt(f"{damage.reason}, {others}. {rebuild_advice(root)}", f"{damage.reason}, {others}")


def choose_build(root: Path, model: ModelInfo | None = None) -> tuple[Path, IndexManifest, str | None]:
    """The build a loader would serve, checked (`check_build`) but not read: the published one,
    or when it is damaged the newest intact kept build. Returns (directory, manifest, why it is
    not the published build or None); raises like `load_index`."""
    manifest, directory, why = _first_intact(root, lambda d: check_build(d, model))
    return directory, manifest, why


def load_index(root: Path, model: ModelInfo | None = None) -> LoadedIndex:
    """Load the published build, checking it once: format, model (when `model` is given), each
    data file against its size and SHA-256 in the manifest, then counts. A damaged published
    build is refused and the newest intact kept build is loaded instead, with `fallback` saying
    which and why. Raises IndexMissing, IndexCorrupt (nothing intact) or IndexMismatch with a
    message that says what to run."""
    loaded, _, why = _first_intact(root, lambda d: _load_build(d, model))
    loaded.fallback = why
    return loaded


def load_build(directory: Path, model: ModelInfo | None = None, reuse: LoadedIndex | None = None) -> LoadedIndex:
    """Load exactly this build, checked like `load_index` (format, model, every file's size and
    SHA-256, counts), with no fallback: what a running server swaps to. A chunk whose line in
    chunks.jsonl is byte for byte one of `reuse`'s is not parsed again but shared (after one
    edit, all but a few are). Raises IndexCorrupt or IndexMismatch."""
    return _load_build(directory, model, reuse)


def _load_build(directory: Path, model: ModelInfo | None, reuse: LoadedIndex | None = None) -> LoadedIndex:
    manifest = check_build(directory, model)
    try:
        loaded = _read_build(directory, manifest, reuse)
        loaded.loaded_at = dt.datetime.now(dt.UTC).isoformat(timespec="milliseconds")
        return loaded
    except IndexProblem:
        raise
    except (OSError, UnicodeDecodeError, ValueError, KeyError, TypeError, RuntimeError) as exc:
        # The checksums matched, so the build was written like this: a bug, not damage; still one clear line.
        raise _corrupt(f"index build {directory} cannot be read ({type(exc).__name__}: {exc})", directory) from None


def _read_build(directory: Path, manifest: IndexManifest, reuse: LoadedIndex | None = None) -> LoadedIndex:
    import faiss  # heavy: imported on use only

    from indexer.lexical import LexicalIndex

    known = reuse.chunk_keys if reuse is not None else {}
    chunks: list[Chunk] = []
    chunk_keys: dict[bytes, Chunk] = {}
    for line in (directory / "chunks.jsonl").read_bytes().split(b"\n"):
        if not line:
            continue
        key = hashlib.blake2b(line, digest_size=16).digest()
        chunk = known.get(key)
        if chunk is None:
            chunk = Chunk.from_dict(json.loads(line))
        chunks.append(chunk)
        chunk_keys[key] = chunk
    articles: dict[str, ArticleRecord] = {}
    for line in (directory / "articles.jsonl").read_text(encoding="utf-8").splitlines():
        if line:
            article = ArticleRecord.from_dict(json.loads(line))
            articles[article.id] = article
    index = faiss.read_index(str(directory / "vectors.faiss"))
    rows = [json.loads(line) for line in (directory / "sections.jsonl").read_text(encoding="utf-8").splitlines() if line]
    sections = SectionVectors([r["id"] for r in rows], [r["text"] for r in rows], np.load(directory / "section_vectors.npy"))
    lexical = LexicalIndex.load(directory / LEXICAL, len(chunks))
    expected = manifest.counts.chunks
    if index.ntotal != len(chunks) or expected != len(chunks):
        raise _corrupt(f"index build {directory} is inconsistent: {index.ntotal} vectors, {len(chunks)} chunks, manifest says {expected}", directory)
    if index.d != manifest.model.dim:
        raise _corrupt(f"index build {directory} holds {index.d}-dimensional vectors, its manifest says {manifest.model.dim}", directory)
    if len(sections.ids) != sections.vectors.shape[0] or not {c.section_id for c in chunks} <= set(sections.ids):
        raise _corrupt(f"index build {directory} has inconsistent section vectors", directory)
    words = read_words(directory / SPELLING_FILE) if any(f.path == SPELLING_FILE for f in manifest.files) else None
    return LoadedIndex(directory=directory, manifest=manifest, chunks=chunks, articles=articles, faiss_index=index, sections=sections, lexical=lexical,
                       chunk_keys=chunk_keys, words=words)
