"""Importers: turn other formats into corpus articles (markdown + front matter) for review.

    report = run_import("medquad", Path("../shared/data/medquad"), Path("corpus/medquad"))

Each format module has `read(source, report) -> Iterator[ImportedArticle]`; it yields the
articles it could build and records in `report` what it skipped and why. `run_import`
writes them, one file each, and returns an `ImportReport`. The same source always gives
byte-identical files. A bad record is reported with its file and position and the rest
of the source still imports.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import yaml

from indexer.importers import beir, medquad, pubmed, seed_page
from indexer.importers.corpus_writer import ImportedArticle, render_article, write_article
from indexer.importers.report import ImportReport, Problem, ReportBuilder
from indexer.vocabulary import IMPORT_STATUSES, ReviewStatus

__all__ = ["FORMATS", "ImportFormat", "ImportReport", "ImporterError", "Problem", "run_import"]


class ImporterError(ValueError):
    """The import cannot start: unknown format, unknown status, or a source that does not exist."""


@dataclass(frozen=True)
class ImportFormat:
    name: str
    summary: str  # one line, for `medkb import --help`
    read: Callable[[Path, ReportBuilder], Iterator[ImportedArticle]]


FORMATS: dict[str, ImportFormat] = {
    "seed-page": ImportFormat(
        "seed-page",
        "plain text of a published article page (title, guideline and research parts, references)",
        seed_page.read,
    ),
    "medquad": ImportFormat(
        "medquad",
        "MedQuAD XML: a folder of subsets, one subset, or one file; one article per Document",
        medquad.read,
    ),
    "beir": ImportFormat(
        "beir",
        "a BEIR corpus.jsonl (one JSON document per line: _id, title, text, metadata)",
        beir.read,
    ),
    "pubmed": ImportFormat(
        "pubmed",
        "PubMed/MEDLINE XML (PubmedArticleSet): a file or a folder of .xml files",
        pubmed.read,
    ),
}


def run_import(
    fmt: str,
    source: Path,
    out_dir: Path,
    status: str = "submitted",
    progress: bool = False,
) -> ImportReport:
    """Import `source` in format `fmt` into `out_dir` (created if needed), every article with
    review status `status` (one of IMPORT_STATUSES). Files already in `out_dir` that this source
    does not produce are left alone. Raises ImporterError only when the import cannot start at
    all, `status` "approved" included."""
    if fmt not in FORMATS:
        raise ImporterError(f"unknown import format {fmt!r}; expected one of {', '.join(FORMATS)}")
    if status == ReviewStatus.APPROVED:
        raise ImporterError("an import cannot mark articles approved: only a clinician's review approves (import them as submitted, then review them)")
    if status not in IMPORT_STATUSES:
        raise ImporterError(f"unknown review status {status!r}; expected one of {', '.join(IMPORT_STATUSES)}")
    source = Path(source)
    out_dir = Path(out_dir)
    if not source.exists():
        raise ImporterError(f"source not found: {source}")
    if out_dir.exists() and not out_dir.is_dir():
        raise ImporterError(f"output is not a directory: {out_dir}")
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ImporterError(f"cannot make the output directory {out_dir}: {exc.strerror or exc}") from None

    report = ReportBuilder(progress=progress)
    written = 0
    ids: dict[str, str] = {}  # article id -> where it came from
    files: dict[str, str] = {}  # file name (case-folded) -> article id
    for article in FORMATS[fmt].read(source, report):
        origin = article.origin_file or source.name
        position = article.origin_position
        if article.id in ids:
            report.problem(origin, position, f"duplicate article id {article.id!r} (first from {ids[article.id]}); this one is not written")
            report.skip("article: duplicate id")
            continue
        name_key = article.file_name.casefold()
        if name_key in files:
            report.problem(origin, position, f"article {article.id!r} would overwrite {article.file_name} of article {files[name_key]!r}; not written")
            report.skip("article: file name clash")
            continue
        try:
            text = render_article(article, status)
        except (ValueError, TypeError, yaml.YAMLError) as exc:  # e.g. metadata YAML cannot represent
            report.problem(origin, position, f"article {article.id!r} cannot be written: {exc}")
            report.skip("article: cannot be written")
            continue
        ids[article.id] = f"{origin} {position}".strip()
        files[name_key] = article.id
        write_article(text, out_dir / article.file_name)
        written += 1
    return report.build(written)
