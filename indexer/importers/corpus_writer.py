"""Write imported articles as corpus markdown: YAML front matter, then headed sections.

Importers build an `ImportedArticle` from plain source text; this module owns every
markdown decision (escaping, where citations go, key order), so that all formats
produce files the corpus parser reads the same way, and the same input always
produces the same bytes.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import re
import unicodedata
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from indexer.citations import format_citation
from indexer.vocabulary import Reference, ReviewStatus, values

__all__ = ["Reference"]  # importers build references with the one Reference type

UNKNOWN_DATE = "unknown"


class QuotedStr(str):
    """A string always written single-quoted in YAML: identifiers copied verbatim from a source."""


class _Dumper(yaml.SafeDumper):
    """SafeDumper (the pure-Python one, so output is the same with or without libyaml)."""


_Dumper.add_representer(
    QuotedStr, lambda dumper, value: dumper.represent_scalar("tag:yaml.org,2002:str", str(value), style="'")
)
REVIEW_STATUSES = values(ReviewStatus)


@dataclass
class Paragraph:
    """Plain source text (not markdown) and the reference numbers that support it.

    `cites` go at the end of the paragraph. When sentences carry their own citations,
    `sentences` holds (text, cites) per sentence and is what gets written.
    """

    text: str
    cites: tuple[int, ...] = ()
    sentences: list[tuple[str, tuple[int, ...]]] | None = None

    @classmethod
    def from_sentences(cls, sentences: list[tuple[str, tuple[int, ...]]]) -> "Paragraph":
        return cls(text=" ".join(text for text, _ in sentences), sentences=sentences)


@dataclass
class BulletList:
    items: list[Paragraph]


Block = Paragraph | BulletList


@dataclass
class ImportedSection:
    """A section to be written: a heading at a markdown level, and its blocks."""

    heading: str  # plain text
    level: int  # 2 for "##", 3 for "###"
    blocks: list[Block] = field(default_factory=list)


@dataclass
class ImportedArticle:
    id: str
    title: str
    last_updated: dt.date | None  # None is written as "unknown"
    audience: str
    sections: list[ImportedSection]
    references: list[Reference] = field(default_factory=list)
    unresolved_references: list[int] = field(default_factory=list)
    related_questions: list[str] = field(default_factory=list)
    metadata: dict[str, Any] = field(default_factory=dict)
    specialty: str | None = None
    file_stem: str | None = None  # defaults to id; differs only where an id is unsafe as a file name
    # Where the article came from, for messages only (never written): file, and e.g. "line 7".
    origin_file: str = ""
    origin_position: str = ""

    @property
    def file_name(self) -> str:
        return f"{self.file_stem or self.id}.md"


# ---------------------------------------------------------------- names


def slugify(text: str, max_length: int = 80) -> str:
    """Lower-case ASCII words joined by '-', cut at a word boundary; '' if nothing is left."""
    ascii_text = unicodedata.normalize("NFKD", text).encode("ascii", "ignore").decode("ascii")
    slug = re.sub(r"[^a-z0-9]+", "-", ascii_text.lower()).strip("-")
    if len(slug) > max_length:
        cut = slug[: max_length + 1]
        slug = cut[: cut.rfind("-")] if "-" in cut else slug[:max_length]
    return slug.strip("-")


SAFE_STEM_RE = re.compile(r"^[a-z0-9][a-z0-9_-]{0,99}$")
# Names a corpus loader or a file system treats specially.
RESERVED_STEMS = {"readme", "con", "prn", "aux", "nul", "com1", "lpt1"}


def safe_file_stem(identifier: str) -> str:
    """A file-name stem for any identifier: itself when already safe everywhere (lower-case
    letters, digits, '-', '_'; so no clash on case-insensitive file systems), else a slug
    plus a short hash of the exact identifier, so distinct ids never share a file (e.g.
    "MED-10" -> "med-10-<hash>", since "med-10" may be another document's id)."""
    if SAFE_STEM_RE.match(identifier) and identifier not in RESERVED_STEMS:
        return identifier
    digest = hashlib.sha256(identifier.encode("utf-8")).hexdigest()[:10]
    slug = slugify(identifier, max_length=60)
    return f"{slug}-{digest}" if slug else f"id-{digest}"


# ---------------------------------------------------------------- text -> markdown

_CONTROL_RE = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f\u200b\ufeff]")
# Lone surrogates (e.g. from a JSON "\\ud800" escape) cannot be written as UTF-8.
_SURROGATE_RE = re.compile(r"[\ud800-\udfff]")
# Characters that markdown would read as syntax anywhere in a line.
_INLINE_SPECIAL_RE = re.compile(r"([\\`*_\[\]<])")
_ENTITY_RE = re.compile(r"&(?=#?[A-Za-z0-9]+;)")
# Line starts that would open a heading, quote, list, rule, fence or setext underline.
_LEADING_MARK_RE = re.compile(r"^([#>+\-=~|])")
_LEADING_ORDERED_RE = re.compile(r"^(\d{1,9})([.)])")
_FINAL_PUNCT_RE = re.compile(r"[.!?:;\u2026]+[\"'\u201d\u2019)]*$")


def clean_text(text: str) -> str:
    """Source text as one line: control characters dropped, runs of whitespace made one space."""
    return " ".join(_SURROGATE_RE.sub("\ufffd", _CONTROL_RE.sub("", text)).split())


def escape_markdown(text: str, heading: bool = False) -> str:
    """Plain text as markdown that shows exactly this text and never becomes structure or a citation."""
    text = clean_text(text)
    text = _INLINE_SPECIAL_RE.sub(r"\\\1", text)
    text = _ENTITY_RE.sub(r"\\&", text)
    if heading:
        # A trailing run of '#' would be read as the heading's closing sequence.
        text = text.replace("#", "\\#")
    text = _LEADING_MARK_RE.sub(r"\\\1", text)
    text = _LEADING_ORDERED_RE.sub(r"\1\\\2", text)
    return text


def render_inline(paragraph: Paragraph) -> str:
    """A paragraph's markdown: its escaped text, each citation just before its sentence's final period."""
    if paragraph.sentences is not None:
        return " ".join(render_inline(Paragraph(text, cites)) for text, cites in paragraph.sentences if clean_text(text) or cites)
    text = escape_markdown(paragraph.text)
    if not paragraph.cites:
        return text
    cite = format_citation(paragraph.cites)
    match = _FINAL_PUNCT_RE.search(text)
    if match and match.start() > 0:
        at = match.start()
        head = text[:at]
        if (len(head) - len(head.rstrip("\\"))) % 2:
            at -= 1  # the final mark is escaped ("0\." would start a list): the citation goes before its backslash
        if at > 0:
            return f"{text[:at].rstrip()} {cite}{text[at:]}"
    return f"{text} {cite}" if text else cite


# ---------------------------------------------------------------- the file


def front_matter(article: ImportedArticle, review_status: str) -> dict[str, Any]:
    data: dict[str, Any] = {
        "id": article.id,
        "title": clean_text(article.title),
        "review_status": review_status,
        "last_updated": article.last_updated if article.last_updated is not None else UNKNOWN_DATE,
        "audience": article.audience,
    }
    if article.specialty:
        data["specialty"] = article.specialty
    data["references"] = [ref.to_dict() for ref in article.references]
    if article.unresolved_references:
        data["unresolved_references"] = sorted(set(article.unresolved_references))
    if article.related_questions:
        data["related_questions"] = [clean_text(q) for q in article.related_questions]
    if article.metadata:
        data["metadata"] = article.metadata
    return data


def render_body(sections: list[ImportedSection]) -> str:
    chunks: list[str] = []
    for section in sections:
        lines = [f"{'#' * section.level} {escape_markdown(section.heading, heading=True)}"]
        for index, block in enumerate(section.blocks):
            if index:
                lines.append("")
            if isinstance(block, BulletList):
                lines.extend(f"- {render_inline(item)}" for item in block.items)
            else:
                lines.append(render_inline(block))
        chunks.append("\n".join(lines))
    return "\n\n".join(chunks) + "\n"


def render_article(article: ImportedArticle, review_status: str) -> str:
    """The article file's full text. Same article and status in, same text out."""
    if review_status not in REVIEW_STATUSES:
        raise ValueError(f"unknown review status {review_status!r}; expected one of {', '.join(REVIEW_STATUSES)}")
    fm = yaml.dump(
        front_matter(article, review_status),
        Dumper=_Dumper,
        sort_keys=False,
        allow_unicode=True,
        width=1_000_000,
        default_flow_style=False,
    )
    return _SURROGATE_RE.sub("\ufffd", f"---\n{fm}---\n\n{render_body(article.sections)}")


def write_article(text: str, path: Path) -> None:
    """Write the file, leaving it untouched (mtime too) when it already holds these bytes."""
    data = text.encode("utf-8")
    try:
        if path.read_bytes() == data:
            return
    except FileNotFoundError:
        pass
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_bytes(data)
    tmp.replace(path)
