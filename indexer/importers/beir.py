"""A BEIR corpus.jsonl -> one article per document.

Each line is a JSON object with "_id", "title", "text" and optionally "metadata".
The front-matter id is the "_id" exactly (written as a YAML string); BEIR ids may hold
characters unsafe in file names, so the file name is `safe_file_stem(_id)`.

A document's content is its title plus its text, as BEIR's own retrieval reads it:
with no title, the title is cut from the text (`title_from_text`); with a title and
no text, the title is also the article's one paragraph (`text_from_title`), since an
article needs body text. A line that is not valid JSON, lacks an id, or has neither
title nor text is reported by line and skipped.
"""

from __future__ import annotations

import gzip
import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from indexer.importers.corpus_writer import ImportedArticle, ImportedSection, Paragraph, QuotedStr, clean_text, safe_file_stem
from indexer.importers.report import ReportBuilder

TITLE_WORDS = 12
SECTION_HEADING = "Text"


def read(source: Path, report: ReportBuilder) -> Iterator[ImportedArticle]:
    """Articles from a corpus.jsonl (or .jsonl.gz) file, or a BEIR dataset folder holding one."""
    path = source
    if source.is_dir():
        candidates = [source / name for name in ("corpus.jsonl", "corpus.jsonl.gz") if (source / name).is_file()]
        if not candidates:
            report.problem(source.name, "", "folder has no corpus.jsonl")
            report.skip("file: no corpus.jsonl")
            return
        path = candidates[0]
    display = path.name
    opener = gzip.open if path.suffix == ".gz" else open
    try:
        with opener(path, "rb") as handle:
            for number, raw in enumerate(handle, start=1):
                report.tick("BEIR records", every=10000)
                article = _record(raw, number, display, report)
                if article is not None:
                    yield article
    except (OSError, EOFError) as exc:
        report.problem(display, "", f"cannot be read to the end: {exc}")
        report.skip("file: cannot be read")


def _record(raw: bytes, number: int, display: str, report: ReportBuilder) -> ImportedArticle | None:
    where = f"line {number}"
    if not raw.strip():
        return None
    try:
        line = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        report.problem(display, f"{where}, column {exc.start + 1}", "not UTF-8 text")
        report.skip("record: not UTF-8")
        return None
    try:
        record = json.loads(line.rstrip("\r\n"))
    except json.JSONDecodeError as exc:
        report.problem(display, f"line {number}, column {exc.colno}", f"invalid JSON ({exc.msg}); a truncated or broken line")
        report.skip("record: invalid JSON")
        return None
    if not isinstance(record, dict):
        report.problem(display, where, f"expected a JSON object, found {type(record).__name__}")
        report.skip("record: not a JSON object")
        return None

    doc_id = record.get("_id")
    if isinstance(doc_id, int) and not isinstance(doc_id, bool):
        report.warn(display, where, f"_id {doc_id} is a number; used as the string {str(doc_id)!r}")
        doc_id = str(doc_id)
    if not isinstance(doc_id, str) or not doc_id.strip():
        report.problem(display, where, "missing or empty \"_id\"")
        report.skip("record: no _id")
        return None

    if doc_id != doc_id.strip():
        report.warn(display, where, f"_id {doc_id!r} has spaces at its ends; kept exactly, but easy to mistype")

    text = record.get("text")
    title = record.get("title")
    if text is not None and not isinstance(text, str):
        report.problem(display, where, f"document {doc_id!r}: \"text\" is not a string")
        report.skip("record: no text")
        return None
    paragraphs = [clean_text(p) for p in re.split(r"\n\s*\n", text or "")]
    paragraphs = [p for p in paragraphs if p]
    title = clean_text(title) if isinstance(title, str) else ""
    if not paragraphs and not title:
        report.problem(display, where, f"document {doc_id!r} has neither title nor text")
        report.skip("record: no title or text")
        return None

    metadata: dict[str, Any] = {"source_format": "beir", "source_file": display, "original_id": QuotedStr(doc_id)}
    if not title:
        words = paragraphs[0].split()
        title = " ".join(words[:TITLE_WORDS]) + (" ..." if len(words) > TITLE_WORDS else "")
        metadata["title_from_text"] = True
    if not paragraphs:
        paragraphs = [title]
        metadata["text_from_title"] = True
    extra = record.get("metadata")
    if extra not in (None, {}, ""):
        metadata["beir_metadata"] = extra

    return ImportedArticle(
        id=QuotedStr(doc_id),
        file_stem=safe_file_stem(doc_id),
        title=title,
        last_updated=None,
        audience="both",
        sections=[ImportedSection(heading=SECTION_HEADING, level=2, blocks=[Paragraph(p) for p in paragraphs])],
        references=[],
        metadata=metadata,
        origin_file=display,
        origin_position=where,
    )
