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
import fcntl
import json
import os
import shutil
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

import numpy as np

from indexer.chunking import Chunk

FORMAT_VERSION = 2
FILES = ("manifest.json", "vectors.faiss", "chunks.jsonl", "articles.jsonl", "sections.jsonl", "section_vectors.npy", "lexical")
KEEP_BUILDS = 2


class IndexProblem(Exception):
    """Base for index problems that a user must act on; the message says what to run."""


class IndexMissing(IndexProblem):
    pass


class IndexCorrupt(IndexProblem):
    pass


class IndexMismatch(IndexProblem):
    pass


@dataclass
class Sections:
    """One entry per section: its id, the text that was embedded for it, and the vectors."""

    ids: list[str]
    texts: list[str]
    vectors: np.ndarray


@dataclass
class LoadedIndex:
    directory: Path
    manifest: dict[str, Any]
    chunks: list[Chunk]
    articles: dict[str, dict[str, Any]]
    faiss_index: Any
    sections: Sections
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


def write_build(staging: Path, chunks: list[Chunk], vectors: np.ndarray, articles: list[dict[str, Any]], sections: Sections,
                lexical, manifest: dict[str, Any]) -> None:
    """Write every file of a build into `staging`; the manifest goes last."""
    import faiss  # heavy: imported on use only

    if len(chunks) != vectors.shape[0]:
        raise ValueError(f"{len(chunks)} chunks but {vectors.shape[0]} vectors")
    index = faiss.IndexFlatIP(int(manifest["model"]["dim"]))
    if len(chunks):
        index.add(np.ascontiguousarray(vectors, dtype=np.float32))
    faiss.write_index(index, str(staging / "vectors.faiss"))
    with open(staging / "chunks.jsonl", "w", encoding="utf-8") as fh:
        for chunk in chunks:
            fh.write(json.dumps(chunk.to_dict(), ensure_ascii=False) + "\n")
    with open(staging / "articles.jsonl", "w", encoding="utf-8") as fh:
        for article in articles:
            fh.write(json.dumps(article, ensure_ascii=False) + "\n")
    with open(staging / "sections.jsonl", "w", encoding="utf-8") as fh:
        for sid, text in zip(sections.ids, sections.texts):
            fh.write(json.dumps({"id": sid, "text": text}, ensure_ascii=False) + "\n")
    np.save(staging / "section_vectors.npy", np.ascontiguousarray(sections.vectors, dtype=np.float32))
    (staging / "lexical").mkdir()
    lexical.save(staging / "lexical")
    with open(staging / "manifest.json", "w", encoding="utf-8") as fh:
        json.dump(manifest, fh, indent=2, sort_keys=True)
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


def read_manifest(root: Path) -> dict[str, Any] | None:
    """The published build's manifest, or None when nothing is published."""
    directory = current_dir(root)
    if directory is None or not (directory / "manifest.json").exists():
        return None
    return json.loads((directory / "manifest.json").read_text(encoding="utf-8"))


def check_compatible(manifest: dict[str, Any], model_name: str, model_checksum: str, dim: int, normalize: bool,
                     encoder: str | None = None) -> None:
    """Refuse an index built with another model (or another format) with a message that says what to run.
    With `encoder`, also refuse an index whose vectors another encoder made (a manifest that
    names none was built with torch, before there was a choice)."""
    rebuild = "Rebuild it with `medkb index corpus` (or `make serve`, which rebuilds a stale index)."
    if manifest.get("format_version") != FORMAT_VERSION:
        raise IndexMismatch(f"index format {manifest.get('format_version')} is not the format this medkb reads ({FORMAT_VERSION}). {rebuild}")
    model = manifest.get("model", {})
    differences = []
    if model.get("name") != model_name:
        differences.append(f"model {model.get('name')!r} != {model_name!r}")
    if model.get("checksum") != model_checksum:
        differences.append(f"model weights checksum {str(model.get('checksum'))[:12]} != {model_checksum[:12]}")
    if model.get("dim") != dim:
        differences.append(f"dimension {model.get('dim')} != {dim}")
    if model.get("normalize") != normalize:
        differences.append(f"normalisation {model.get('normalize')} != {normalize}")
    if differences:
        raise IndexMismatch("the index was built with a different embedding model than the server loads (" + "; ".join(differences) + f"). {rebuild}")
    built_with = model.get("encoder", "torch")
    if encoder is not None and built_with != encoder:
        raise IndexMismatch(f"the index was built with the {built_with} encoder, but queries would be encoded with {encoder} "
                            f"(MEDKB_ENCODER): the same weights give slightly different vectors on another runtime or precision. "
                            f"Rebuild the index with `MEDKB_ENCODER={encoder} medkb index corpus`, or set MEDKB_ENCODER={built_with} to use it as it is.")


def load_index(root: Path) -> LoadedIndex:
    """Load the published build. Raises IndexMissing / IndexCorrupt with what to do."""
    import faiss  # heavy: imported on use only

    directory = current_dir(root)
    if directory is None:
        raise IndexMissing(f"no index published under {root}. Build one with `medkb index corpus --index-dir {root}`.")
    if not (directory / "manifest.json").exists():
        raise IndexCorrupt(f"index {directory} lacks manifest.json. Rebuild it with `medkb index corpus`.")
    manifest = json.loads((directory / "manifest.json").read_text(encoding="utf-8"))
    # The format first: an older build lacks newer files, and its format is the real reason.
    if manifest.get("format_version") != FORMAT_VERSION:
        raise IndexMismatch(f"index {directory} has format {manifest.get('format_version')}, this medkb reads format {FORMAT_VERSION}. Rebuild it with `medkb index corpus`.")
    missing = [name for name in FILES if not (directory / name).exists()]
    if missing:
        raise IndexCorrupt(f"index {directory} lacks {', '.join(missing)}. Rebuild it with `medkb index corpus`.")
    chunks = [Chunk.from_dict(json.loads(line)) for line in (directory / "chunks.jsonl").read_text(encoding="utf-8").splitlines() if line]
    articles = {}
    for line in (directory / "articles.jsonl").read_text(encoding="utf-8").splitlines():
        if line:
            article = json.loads(line)
            articles[article["id"]] = article
    from indexer.lexical import LexicalIndex

    index = faiss.read_index(str(directory / "vectors.faiss"))
    rows = [json.loads(line) for line in (directory / "sections.jsonl").read_text(encoding="utf-8").splitlines() if line]
    sections = Sections([r["id"] for r in rows], [r["text"] for r in rows], np.load(directory / "section_vectors.npy"))
    lexical = LexicalIndex.load(directory / "lexical", len(chunks))
    expected = manifest.get("counts", {}).get("chunks")
    if index.ntotal != len(chunks) or (expected is not None and expected != len(chunks)):
        raise IndexCorrupt(f"index {directory} is inconsistent: {index.ntotal} vectors, {len(chunks)} chunks, manifest says {expected}. Rebuild it with `medkb index corpus`.")
    if len(sections.ids) != sections.vectors.shape[0] or not {c.section_id for c in chunks} <= set(sections.ids):
        raise IndexCorrupt(f"index {directory} has inconsistent section vectors. Rebuild it with `medkb index corpus`.")
    return LoadedIndex(directory=directory, manifest=manifest, chunks=chunks, articles=articles, faiss_index=index, sections=sections, lexical=lexical)
