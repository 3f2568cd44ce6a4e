"""Articles: front matter + markdown, parsed into a heading tree of paragraphs and list items.

`parse_article` reads one file and either returns an `Article` or raises
`ArticleInvalid` carrying every problem found, each naming the file and line.
`load_corpus` reads whole directories, skips (and reports) bad articles and
duplicate ids, and returns the good ones.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from markdown_it import MarkdownIt

from indexer.citations import CITATION_RE, CitationSyntaxError, expand
from indexer.vocabulary import Audience, EvidenceKind, Notice, NoticeType, Problem, Reference, ReviewStatus, values

REQUIRED_FIELDS = ("id", "title", "review_status", "last_updated")
KNOWN_FIELDS = set(REQUIRED_FIELDS) | {
    "audience",
    "specialty",
    "references",
    "unresolved_references",
    "related_questions",
    "metadata",
}
REFERENCE_FIELDS = {"id", "kind", "title", "source", "year", "pmid", "doi", "url", "authors", "notices"}
# What a published notice says about the reference it is listed under:
#   retracted             the publication has been retracted
#   expression_of_concern an editor or publisher has issued an expression of concern about it
#   erratum               an erratum (correction) to it has been published
#   retraction_notice     the publication is itself a notice retracting another one
NOTICE_TYPES = values(NoticeType)
NOTICE_FIELDS = {"type", "pmid", "citation", "note"}
PMID_RE = re.compile(r"[0-9]{1,12}")
UNKNOWN_DATE = "unknown"
REVIEW_STATUSES = values(ReviewStatus)
AUDIENCES = values(Audience)
REFERENCE_KINDS = values(EvidenceKind)


class ArticleInvalid(Exception):
    """An article that cannot be indexed; `problems` lists every reason found."""

    def __init__(self, problems: list[Problem]):
        self.problems = problems
        super().__init__("; ".join(str(p) for p in problems))


@dataclass(frozen=True)
class Citation:
    """A citation inside a block's text: character span and the reference numbers it names."""

    start: int
    end: int
    numbers: tuple[int, ...]
    line: int


@dataclass
class Block:
    """A paragraph or a list item: plain text with its citations located."""

    kind: str  # "paragraph" | "list_item"
    text: str
    line: int
    citations: list[Citation] = field(default_factory=list)


@dataclass
class Section:
    """The blocks under one heading; `path` is the chain of headings from the top."""

    path: tuple[str, ...]
    line: int
    blocks: list[Block] = field(default_factory=list)

    @property
    def heading(self) -> str:
        return self.path[-1] if self.path else ""


@dataclass
class Article:
    """One parsed article: its front matter, typed, and its sections in order."""

    id: str
    title: str
    review_status: ReviewStatus
    last_updated: dt.date | None  # None when the source gave no date ("unknown")
    audience: Audience
    specialty: str | None
    references: dict[int, Reference]
    unresolved_references: tuple[int, ...]
    related_questions: tuple[str, ...]
    metadata: dict[str, Any]
    sections: list[Section]
    path: Path
    content_sha256: str

    def cited_numbers(self) -> set[int]:
        return {n for s in self.sections for b in s.blocks for c in b.citations for n in c.numbers}

    def notices(self) -> list[tuple[int, Notice]]:
        """Every notice on the article's references, as (reference id, notice), in reference order."""
        return [(ref_id, n) for ref_id in sorted(self.references) for n in self.references[ref_id].notices]

    @property
    def retracted(self) -> bool:
        """True when any of its references (for an imported record: the record itself) is marked retracted."""
        return any(ref.retracted for ref in self.references.values())


# ---------------------------------------------------------------- front matter


class _Loader(yaml.SafeLoader):
    """SafeLoader that keeps timestamps as strings so dates are validated here, with a line."""


_Loader.yaml_implicit_resolvers = {
    key: [(tag, regexp) for tag, regexp in resolvers if tag != "tag:yaml.org,2002:timestamp"]
    for key, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}


def _split_front_matter(text: str, file: str) -> tuple[str, str, int]:
    """(front matter text, body text, 1-based line where the body starts)."""
    lines = text.splitlines(keepends=True)
    if not lines or lines[0].strip() != "---":
        raise ArticleInvalid([Problem(file, 1, "malformed front matter: the file must start with a '---' line")])
    for i in range(1, len(lines)):
        if lines[i].rstrip("\r\n") in ("---", "..."):
            return "".join(lines[1:i]), "".join(lines[i + 1 :]), i + 2
    raise ArticleInvalid([Problem(file, 1, "malformed front matter: no closing '---' line")])


def _key_lines(node: yaml.Node, offset: int) -> dict[str, int]:
    if not isinstance(node, yaml.MappingNode):
        return {}
    return {k.value: k.start_mark.line + offset for k, _ in node.value if isinstance(k, yaml.ScalarNode)}


def _item_lines(node: yaml.Node | None, offset: int) -> list[int]:
    if not isinstance(node, yaml.SequenceNode):
        return []
    return [item.start_mark.line + offset for item in node.value]


def _child(node: yaml.Node, key: str) -> yaml.Node | None:
    if isinstance(node, yaml.MappingNode):
        for k, v in node.value:
            if isinstance(k, yaml.ScalarNode) and k.value == key:
                return v
    return None


def _parse_front_matter(fm_text: str, file: str) -> tuple[dict[str, Any], yaml.Node]:
    offset = 2  # the front matter's first line is line 2 of the file
    try:
        node = yaml.compose(fm_text, Loader=_Loader)
        data = yaml.load(fm_text, Loader=_Loader)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        line = mark.line + offset if mark is not None else 1
        reason = getattr(exc, "problem", None) or str(exc)
        raise ArticleInvalid([Problem(file, line, f"malformed front matter: {reason}")]) from None
    if not isinstance(data, dict) or node is None:
        raise ArticleInvalid([Problem(file, 1, "malformed front matter: expected 'key: value' lines")])
    return data, node


def _as_str(value: Any) -> str | None:
    if value is None:
        return None
    if isinstance(value, (str, int, float)) and not isinstance(value, bool):
        return str(value).strip()
    return None


# ---------------------------------------------------------------- markdown body

_MD = MarkdownIt("commonmark").disable("text_join")  # keep escapes visible as text_special
_ESCAPED = {"[": "\ue000", "]": "\ue001"}


def _render_inline(token) -> tuple[str, str]:
    """Plain text of an inline token, and a same-length copy in which escaped
    brackets are masked so they never read as citations."""
    shown: list[str] = []
    masked: list[str] = []
    for child in token.children or []:
        if child.type in ("text", "code_inline", "html_inline"):
            shown.append(child.content)
            masked.append(child.content)
        elif child.type == "text_special":
            shown.append(child.content)
            masked.append(_ESCAPED.get(child.content, child.content) if child.info == "escape" else child.content)
        elif child.type in ("softbreak", "hardbreak"):
            shown.append("\n")
            masked.append("\n")
        elif child.type == "image":
            shown.append(child.content)
            masked.append(child.content)
    return "".join(shown), "".join(masked)


def _make_block(kind: str, inline, body_offset: int, file: str, problems: list[Problem]) -> Block:
    line = inline.map[0] + body_offset if inline.map else body_offset
    shown, masked = _render_inline(inline)
    citations: list[Citation] = []
    for m in CITATION_RE.finditer(masked):
        cline = line + masked.count("\n", 0, m.start())
        try:
            numbers = expand(m.group(1))
        except CitationSyntaxError as exc:
            problems.append(Problem(file, cline, str(exc)))
            continue
        citations.append(Citation(m.start(), m.end(), numbers, cline))
    # Line breaks inside a paragraph are layout, not content; same length keeps spans valid.
    return Block(kind=kind, text=shown.replace("\n", " "), line=line, citations=citations)


def _parse_body(body: str, body_offset: int, file: str, problems: list[Problem]) -> list[Section]:
    tokens = _MD.parse(body)
    sections: list[Section] = [Section(path=(), line=body_offset)]
    stack: list[tuple[int, str]] = []  # (level, heading)
    list_depth = 0
    item_open: list[bool] = []
    i = 0
    while i < len(tokens):
        tok = tokens[i]
        if tok.type == "heading_open":
            level = int(tok.tag[1:])
            inline = tokens[i + 1]
            heading, _ = _render_inline(inline)
            heading = " ".join(heading.split())
            line = tok.map[0] + body_offset if tok.map else body_offset
            if CITATION_RE.search(_render_inline(inline)[1]):
                problems.append(Problem(file, line, "a heading must not carry citations; cite in the text below it"))
            while stack and stack[-1][0] >= level:
                stack.pop()
            stack.append((level, heading))
            sections.append(Section(path=tuple(h for _, h in stack), line=line))
            i += 3
            continue
        if tok.type in ("bullet_list_open", "ordered_list_open"):
            list_depth += 1
        elif tok.type in ("bullet_list_close", "ordered_list_close"):
            list_depth -= 1
        elif tok.type == "list_item_open":
            item_open.append(True)
        elif tok.type == "list_item_close":
            item_open.pop()
        elif tok.type == "inline" and tokens[i - 1].type == "paragraph_open":
            kind = "list_item" if list_depth > 0 else "paragraph"
            block = _make_block(kind, tok, body_offset, file, problems)
            if block.text.strip():
                sections[-1].blocks.append(block)
        elif tok.type in ("fence", "code_block"):
            line = tok.map[0] + body_offset if tok.map else body_offset
            text = " ".join(tok.content.split())
            if text:
                sections[-1].blocks.append(Block(kind="paragraph", text=text, line=line))
        i += 1
    return [s for s in sections if s.blocks or s.path]


# ---------------------------------------------------------------- the article


def _parse_references(raw: Any, node: yaml.Node, key_line: int, file: str, problems: list[Problem]) -> dict[int, Reference]:
    refs: dict[int, Reference] = {}
    if raw is None:
        return refs
    if not isinstance(raw, list):
        problems.append(Problem(file, key_line, "references must be a list of entries"))
        return refs
    item_lines = _item_lines(node, 2)
    for idx, entry in enumerate(raw):
        line = item_lines[idx] if idx < len(item_lines) else key_line
        if not isinstance(entry, dict):
            problems.append(Problem(file, line, "each reference must be a mapping with id, kind, title, source"))
            continue
        unknown = set(entry) - REFERENCE_FIELDS
        if unknown:
            problems.append(Problem(file, line, f"unknown reference field(s): {', '.join(sorted(map(str, unknown)))}"))
        ref_id = entry.get("id")
        if isinstance(ref_id, bool) or not isinstance(ref_id, int) or ref_id < 1:
            problems.append(Problem(file, line, f"reference id must be a positive whole number, got {ref_id!r}"))
            continue
        if ref_id in refs:
            problems.append(Problem(file, line, f"reference id {ref_id} is listed twice"))
            continue
        missing = [k for k in ("kind", "title", "source") if not _as_str(entry.get(k))]
        if missing:
            problems.append(Problem(file, line, f"reference {ref_id} is missing required field(s): {', '.join(missing)}"))
            continue
        kind = str(entry["kind"]).strip()
        if kind not in REFERENCE_KINDS:
            problems.append(Problem(file, line, f"reference {ref_id} has unknown kind {kind!r}; expected one of {', '.join(REFERENCE_KINDS)}"))
            continue
        year = entry.get("year")
        if year is not None and (isinstance(year, bool) or not isinstance(year, int) or not 1800 <= year <= 2100):
            problems.append(Problem(file, line, f"reference {ref_id} has a bad year {year!r}"))
            continue
        authors = entry.get("authors") or ()
        if isinstance(authors, str):
            authors = (authors,)
        entry_node = node.value[idx] if isinstance(node, yaml.SequenceNode) and idx < len(node.value) else None
        notices = _parse_notices(entry.get("notices"), entry_node, ref_id, line, file, problems)
        refs[ref_id] = Reference(
            id=ref_id,
            kind=EvidenceKind(kind),
            title=_as_str(entry["title"]) or "",
            source=_as_str(entry["source"]) or "",
            year=year,
            pmid=_as_str(entry.get("pmid")),
            doi=_as_str(entry.get("doi")),
            url=_as_str(entry.get("url")),
            authors=tuple(str(a) for a in authors),
            notices=notices,
        )
    return refs


def _parse_notices(raw: Any, entry_node: yaml.Node | None, ref_id: int, ref_line: int, file: str, problems: list[Problem]) -> tuple[Notice, ...]:
    """A reference's `notices` list; a bad notice is reported at its own line and left out."""
    if raw is None:
        return ()
    notices_node = _child(entry_node, "notices") if entry_node is not None else None
    key_line = notices_node.start_mark.line + 2 if notices_node is not None else ref_line
    if not isinstance(raw, list):
        problems.append(Problem(file, key_line, f"reference {ref_id}: notices must be a list of entries"))
        return ()
    item_lines = _item_lines(notices_node, 2)
    notices: list[Notice] = []
    for idx, entry in enumerate(raw):
        line = item_lines[idx] if idx < len(item_lines) else key_line
        if not isinstance(entry, dict):
            problems.append(Problem(file, line, f"reference {ref_id}: each notice must be a mapping with a type"))
            continue
        unknown = set(map(str, entry)) - NOTICE_FIELDS
        if unknown:
            problems.append(Problem(file, line, f"reference {ref_id}: unknown notice field(s): {', '.join(sorted(unknown))}"))
            continue
        notice_type = entry.get("type")
        if notice_type not in NOTICE_TYPES:
            problems.append(Problem(file, line, f"reference {ref_id} has a notice of unknown type {notice_type!r}; expected one of {', '.join(NOTICE_TYPES)}"))
            continue
        pmid = entry.get("pmid")
        if isinstance(pmid, int) and not isinstance(pmid, bool) and pmid > 0:
            pmid = str(pmid)
        if pmid is not None and not (isinstance(pmid, str) and PMID_RE.fullmatch(pmid)):
            problems.append(Problem(file, line, f"reference {ref_id}: notice pmid must be digits only, got {pmid!r}"))
            continue
        texts = {key: entry.get(key) for key in ("citation", "note")}
        bad = [key for key, value in texts.items() if value is not None and not isinstance(value, str)]
        if bad:
            problems.append(Problem(file, line, f"reference {ref_id}: notice {' and '.join(bad)} must be text"))
            continue
        citation, note = (" ".join(v.split()) or None if v is not None else None for v in texts.values())
        notices.append(Notice(type=NoticeType(notice_type), pmid=pmid, citation=citation, note=note))
    return tuple(notices)


def parse_article(path: Path | str, display_name: str | None = None, data: bytes | None = None) -> Article:
    """Parse one article file (or `data`, its bytes already read). Raises ArticleInvalid
    listing every problem, each with file and line."""
    path = Path(path)
    file = display_name or str(path)
    try:
        raw_bytes = path.read_bytes() if data is None else data
        text = raw_bytes.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ArticleInvalid([Problem(file, 1, f"not UTF-8 text: {exc.reason}")]) from None
    text = text.lstrip("\ufeff")
    fm_text, body, body_offset = _split_front_matter(text, file)
    data, node = _parse_front_matter(fm_text, file)
    lines = _key_lines(node, 2)
    problems: list[Problem] = []

    def line_of(key: str) -> int:
        return lines.get(key, 1)

    for key in REQUIRED_FIELDS:
        if key not in data or data[key] in (None, ""):
            problems.append(Problem(file, line_of(key) if key in lines else 1, f"missing required field '{key}'"))
    for key in sorted(set(map(str, data)) - KNOWN_FIELDS):
        problems.append(Problem(file, line_of(key), f"unknown field '{key}'"))

    article_id = _as_str(data.get("id")) or ""
    title = " ".join((_as_str(data.get("title")) or "").split())

    status = _as_str(data.get("review_status")) or ""
    if status and status not in REVIEW_STATUSES:
        problems.append(Problem(file, line_of("review_status"), f"unknown review status {status!r}; expected one of {', '.join(REVIEW_STATUSES)}"))

    last_updated: dt.date | None = None
    raw_date = _as_str(data.get("last_updated"))
    if raw_date and raw_date != UNKNOWN_DATE:
        try:
            last_updated = dt.date.fromisoformat(raw_date)
        except ValueError:
            problems.append(Problem(file, line_of("last_updated"), f"bad date {raw_date!r}: use YYYY-MM-DD (or '{UNKNOWN_DATE}')"))

    audience = _as_str(data.get("audience")) or "clinician"
    if audience not in AUDIENCES:
        problems.append(Problem(file, line_of("audience"), f"unknown audience {audience!r}; expected one of {', '.join(AUDIENCES)}"))

    references = _parse_references(data.get("references"), _child(node, "references"), line_of("references"), file, problems)

    unresolved_raw = data.get("unresolved_references") or []
    unresolved: tuple[int, ...] = ()
    if not isinstance(unresolved_raw, list) or not all(isinstance(n, int) and not isinstance(n, bool) for n in unresolved_raw):
        problems.append(Problem(file, line_of("unresolved_references"), "unresolved_references must be a list of reference numbers"))
    else:
        unresolved = tuple(sorted(set(unresolved_raw)))
        for n in unresolved:
            if n in references:
                problems.append(Problem(file, line_of("unresolved_references"), f"reference {n} is listed, so it cannot also be unresolved"))

    related_raw = data.get("related_questions") or []
    related: tuple[str, ...] = ()
    if not isinstance(related_raw, list) or not all(isinstance(q, str) for q in related_raw):
        problems.append(Problem(file, line_of("related_questions"), "related_questions must be a list of questions"))
    else:
        related = tuple(" ".join(q.split()) for q in related_raw if q.strip())

    metadata = data.get("metadata") or {}
    if not isinstance(metadata, dict):
        problems.append(Problem(file, line_of("metadata"), "metadata must be a mapping"))
        metadata = {}

    sections = _parse_body(body, body_offset, file, problems)

    cited: dict[int, int] = {}
    for section in sections:
        for block in section.blocks:
            for citation in block.citations:
                for n in citation.numbers:
                    cited.setdefault(n, citation.line)
                    if n not in references and n not in unresolved:
                        problems.append(Problem(file, citation.line, f"citation [{n}] names no reference (references: {', '.join(map(str, sorted(references))) or 'none'})"))
    ref_lines = _item_lines(_child(node, "references"), 2)
    for ref_id in sorted(references):
        if ref_id not in cited:
            line = next((ref_lines[i] for i, r in enumerate(data.get("references") or []) if isinstance(r, dict) and r.get("id") == ref_id and i < len(ref_lines)), line_of("references"))
            problems.append(Problem(file, line, f"reference {ref_id} is never cited"))
    if not any(s.blocks for s in sections):
        problems.append(Problem(file, body_offset, "the article has no text"))

    if problems:
        raise ArticleInvalid(sorted(problems, key=lambda p: p.line))
    return Article(
        id=article_id,
        title=title,
        review_status=ReviewStatus(status),
        last_updated=last_updated,
        audience=Audience(audience),
        specialty=_as_str(data.get("specialty")),
        references=references,
        unresolved_references=unresolved,
        related_questions=related,
        metadata=metadata,
        sections=sections,
        path=path,
        content_sha256=hashlib.sha256(raw_bytes).hexdigest(),
    )


# ---------------------------------------------------------------- a corpus


@dataclass
class CorpusLoad:
    """The articles that parsed, what was skipped and why, and every file read with its sha256."""

    articles: list[Article]
    problems: list[Problem]
    skipped: list[str]  # files skipped
    files: list[Path]
    digests: list[str] = field(default_factory=list)  # sha256 of each file's bytes, in `files` order


def corpus_files(dirs: Iterable[Path | str]) -> list[Path]:
    """Every article file under the given directories (recursively), in a stable order."""
    files: list[Path] = []
    for d in dirs:
        d = Path(d)
        if d.is_file():
            files.append(d)
            continue
        if not d.is_dir():
            raise FileNotFoundError(f"corpus directory not found: {d}")
        files.extend(sorted(p for p in d.rglob("*.md") if p.is_file() and not p.name.startswith(".") and p.name.lower() != "readme.md"))
    return files


def load_corpus(dirs: Iterable[Path | str]) -> CorpusLoad:
    """Parse every article, reading each file once; bad ones and duplicate ids are skipped
    and reported, never silently dropped."""
    files = corpus_files(dirs)
    articles: list[Article] = []
    problems: list[Problem] = []
    skipped: list[str] = []
    digests: list[str] = []
    seen: dict[str, Path] = {}
    for path in files:
        data = path.read_bytes()
        digests.append(hashlib.sha256(data).hexdigest())
        try:
            article = parse_article(path, data=data)
        except ArticleInvalid as exc:
            problems.extend(exc.problems)
            skipped.append(str(path))
            continue
        if article.id in seen:
            line = _id_line(data)
            problems.append(Problem(str(path), line, f"duplicate article id {article.id!r}: already used by {seen[article.id]}"))
            skipped.append(str(path))
            continue
        seen[article.id] = path
        articles.append(article)
    return CorpusLoad(articles=articles, problems=problems, skipped=skipped, files=files, digests=digests)


def _id_line(data: bytes) -> int:
    for number, line in enumerate(data.decode("utf-8", errors="replace").splitlines(), start=1):
        if re.match(r"^id\s*:", line):
            return number
    return 1
