"""Articles: front matter + markdown, parsed into a heading tree of paragraphs, list items
and table rows.

`parse_article` reads one file and either returns an `Article` or raises
`ArticleInvalid` carrying every problem found, each naming the file and line.
`load_corpus` reads whole directories, skips (and reports) bad articles and
duplicate ids, and returns the good ones.

Nothing in an article is dropped without a word: every markdown construct is either read
(its text and its citations kept) or reported with its line; see "markdown body" below.
"""

from __future__ import annotations

import bisect
import datetime as dt
import hashlib
import html as html_lib
import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import yaml
from lxml import etree
from lxml import html as lxml_html
from markdown_it import MarkdownIt

from indexer.citations import (
    CITATION_LIKE_BODY_RE,
    CITATION_RE,
    CitationSyntaxError,
    expand,
    format_citation,
    scan_citations,
)
from indexer.vocabulary import Audience, EvidenceKind, Notice, NoticeType, Problem, Reference, ReviewStatus, values

REQUIRED_FIELDS = ("id", "title", "review_status", "last_updated")
KNOWN_FIELDS = set(REQUIRED_FIELDS) | {
    "audience",
    "specialty",
    "references",
    "unresolved_references",
    "related_questions",
    "metadata",
    "authors",  # account names of the article's authors: none of them may approve it
}
REFERENCE_FIELDS = {"id", "kind", "title", "source", "year", "pmid", "doi", "url", "authors", "notices"}
NOTICE_FIELDS = {"type", "pmid", "citation", "note"}
PMID_RE = re.compile(r"[0-9]{1,12}")
UNKNOWN_DATE = "unknown"
REVIEW_STATUSES = values(ReviewStatus)
AUDIENCES = values(Audience)
REFERENCE_KINDS = values(EvidenceKind)
NOTICE_TYPES = values(NoticeType)


_CONTROL_CHARS = re.compile(r"[\x00-\x1f\x7f-\x9f]")


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
    """A paragraph, a list item or a table row: plain text with its citations located.

    A table row's text carries its column headers: "Header: cell; Header: cell".
    """

    kind: str  # "paragraph" | "list_item" | "table_row"
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
    authors: tuple[str, ...] = ()

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
#
# Front matter is data: plain YAML mappings, lists and scalars. Aliases, anchors, merge
# keys and non-core tags are refused, as are duplicated keys (YAML would silently keep the
# last), nesting deeper than FRONT_MATTER_MAX_DEPTH and front matter larger than
# FRONT_MATTER_MAX_BYTES; every one is an error with its line.

FRONT_MATTER_MAX_BYTES = 64 * 1024
FRONT_MATTER_MAX_DEPTH = 20
_CORE_TAGS = {f"tag:yaml.org,2002:{t}" for t in ("str", "int", "float", "bool", "null", "seq", "map")}
_NULL_TAG = "tag:yaml.org,2002:null"
_MERGE_TAG = "tag:yaml.org,2002:merge"
_FM_OFFSET = 2  # the front matter's first line is line 2 of the file


class _Loader(yaml.SafeLoader):
    """SafeLoader that keeps timestamps as strings so dates are validated here, with a line."""


_Loader.yaml_implicit_resolvers = {
    key: [(tag, regexp) for tag, regexp in resolvers if tag != "tag:yaml.org,2002:timestamp"]
    for key, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}


_LINE_RE = re.compile(r"[^\r\n]*(?:\r\n|\r|\n)|[^\r\n]+$")


def _split_front_matter(text: str, file: str) -> tuple[str, str, int]:
    """(front matter text, body text, 1-based line where the body starts)."""
    lines = _LINE_RE.findall(text)  # line ends as markdown-it counts them: \n, \r\n, \r
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


def _child(node: yaml.Node | None, key: str) -> yaml.Node | None:
    if isinstance(node, yaml.MappingNode):
        for k, v in node.value:
            if isinstance(k, yaml.ScalarNode) and k.value == key:
                return v
    return None


def _yaml_line(exc: yaml.YAMLError) -> int:
    mark = getattr(exc, "problem_mark", None) or getattr(exc, "context_mark", None)
    return mark.line + _FM_OFFSET if mark is not None else 1


def _check_events(fm_text: str, file: str) -> tuple[list[Problem], list[yaml.Event]]:
    """Walk the YAML event stream (a loop, not a recursion, so depth costs nothing) and refuse
    aliases, anchors, non-core tags and deep nesting before anything is built from it."""
    events: list[yaml.Event] = []
    problems: list[Problem] = []
    anchors: list[tuple[int, str]] = []
    aliases: list[tuple[int, str]] = []
    depth = 0
    for event in yaml.parse(fm_text, Loader=_Loader):
        events.append(event)
        line = event.start_mark.line + _FM_OFFSET
        if isinstance(event, yaml.AliasEvent):
            aliases.append((line, event.anchor))
        elif isinstance(event, yaml.NodeEvent) and event.anchor is not None:
            anchors.append((line, event.anchor))
        tag = getattr(event, "tag", None)
        if isinstance(event, (yaml.ScalarEvent, yaml.CollectionStartEvent)) and tag is not None and tag not in _CORE_TAGS:
            problems.append(Problem(file, line, f"YAML tag {_short(tag)} is not allowed in front matter: write plain text, numbers and lists"))
        if isinstance(event, yaml.CollectionStartEvent):
            depth += 1
            if depth > FRONT_MATTER_MAX_DEPTH:
                problems.append(Problem(file, line, f"front matter nests more than {FRONT_MATTER_MAX_DEPTH} levels deep"))
                break
        elif isinstance(event, yaml.CollectionEndEvent):
            depth -= 1
        if len(problems) >= 20:
            break
    # One problem for the anchors and one for the aliases, at the first of each.
    for found, what, advice in ((anchors, "anchor &", ""), (aliases, "alias *", ": write the value out")):
        if found:
            line, name = found[0]
            more = f" ({len(found)} in all)" if len(found) > 1 else ""
            problems.append(Problem(file, line, f"YAML {what}{_short(name)} is not allowed in front matter{advice}{more}"))
    return problems, events


def _compose(events: list[yaml.Event], loader: _Loader) -> yaml.Node | None:
    """The node tree of one document from its (checked: no aliases, no anchors) events, built
    with a loop rather than PyYAML's recursive composer, and without parsing the text again."""
    root: yaml.Node | None = None
    stack: list[yaml.Node] = []
    documents = 0

    def attach(node: yaml.Node) -> None:
        nonlocal root
        if not stack:
            root = node
        elif isinstance(stack[-1], yaml.SequenceNode):
            stack[-1].value.append(node)
        else:  # a mapping: keys and values alternate
            pairs = stack[-1].value
            if pairs and pairs[-1][1] is None:
                pairs[-1] = (pairs[-1][0], node)
            else:
                pairs.append((node, None))

    for event in events:
        if isinstance(event, yaml.DocumentStartEvent):
            documents += 1
            if documents > 1:
                raise yaml.composer.ComposerError(None, None, "expected a single document", event.start_mark)
        elif isinstance(event, yaml.ScalarEvent):
            tag = event.tag
            if tag is None or tag == "!":
                tag = loader.resolve(yaml.ScalarNode, event.value, event.implicit)
            attach(yaml.ScalarNode(tag, event.value, event.start_mark, event.end_mark, style=event.style))
        elif isinstance(event, yaml.SequenceStartEvent):
            tag = event.tag if event.tag not in (None, "!") else loader.resolve(yaml.SequenceNode, None, event.implicit)
            node = yaml.SequenceNode(tag, [], event.start_mark, None, flow_style=event.flow_style)
            attach(node)
            stack.append(node)
        elif isinstance(event, yaml.MappingStartEvent):
            tag = event.tag if event.tag not in (None, "!") else loader.resolve(yaml.MappingNode, None, event.implicit)
            node = yaml.MappingNode(tag, [], event.start_mark, None, flow_style=event.flow_style)
            attach(node)
            stack.append(node)
        elif isinstance(event, yaml.CollectionEndEvent):
            stack.pop().end_mark = event.end_mark
    return root


def _check_keys(node: yaml.Node, file: str) -> list[Problem]:
    """Duplicate keys, merge keys and keys that are not text, in every mapping at any depth."""
    problems: list[Problem] = []
    stack: list[tuple[yaml.Node, str]] = [(node, "")]
    while stack:
        current, path = stack.pop()
        if isinstance(current, yaml.MappingNode):
            seen: dict[str, int] = {}
            for key, value in current.value:
                line = key.start_mark.line + _FM_OFFSET
                if not isinstance(key, yaml.ScalarNode):
                    problems.append(Problem(file, line, f"a key in {path or 'the front matter'} is not text"))
                    continue
                if key.tag == _MERGE_TAG:
                    problems.append(Problem(file, line, "YAML merge keys (<<) are not allowed in front matter: write the keys out"))
                    continue
                name = f"{path}{key.value}"
                if key.value in seen:
                    problems.append(Problem(file, line, f"duplicate key '{name}' (first on line {seen[key.value]}); each key may appear once"))
                else:
                    seen[key.value] = line
                stack.append((value, name + "."))
        elif isinstance(current, yaml.SequenceNode):
            stack.extend((item, f"{path.rstrip('.')}[{i}].") for i, item in enumerate(current.value))
    return problems


def _parse_front_matter(fm_text: str, file: str) -> tuple[dict[str, Any] | None, yaml.Node | None, list[Problem]]:
    """(data, node tree, problems). data is None when the front matter cannot be read at all."""
    size = len(fm_text.encode("utf-8"))
    if size > FRONT_MATTER_MAX_BYTES:
        return None, None, [Problem(file, 1, f"front matter is {size} bytes; the limit is {FRONT_MATTER_MAX_BYTES}")]
    loader = _Loader("")
    try:
        problems, events = _check_events(fm_text, file)
        if problems:
            return None, None, problems
        node = _compose(events, loader)
        if not isinstance(node, yaml.MappingNode):
            return None, None, [Problem(file, 1, "malformed front matter: expected 'key: value' lines")]
        problems = _check_keys(node, file)
        data = loader.construct_document(node)
    except yaml.reader.ReaderError as exc:  # a character YAML does not allow, e.g. a control character
        line = fm_text.count("\n", 0, exc.position) + _FM_OFFSET
        char = exc.character if isinstance(exc.character, int) else ord(str(exc.character)[:1] or "\0")
        return None, None, [Problem(file, line, f"malformed front matter: character U+{char:04X} is not allowed in YAML")]
    except yaml.YAMLError as exc:
        reason = getattr(exc, "problem", None) or str(exc)
        return None, None, [Problem(file, _yaml_line(exc), f"malformed front matter: {reason}")]
    finally:
        loader.dispose()
    if not isinstance(data, dict):
        return None, None, [Problem(file, 1, "malformed front matter: expected 'key: value' lines")]
    return data, node, problems


class _WrongType:
    """A field of the wrong type: reported already, and not also "missing"."""

    def __bool__(self) -> bool:
        return False


_WRONG = _WrongType()


def _text_of(node: yaml.Node | None, name: str, line: int, file: str, problems: list[Problem]) -> Any:
    """A text field exactly as written (so `title: 2024` is "2024" and `pmid: 0123` keeps its
    zero); None when absent or empty. A list or mapping is an error naming the field, and
    gives _WRONG."""
    if node is None:
        return None
    if isinstance(node, yaml.ScalarNode):
        return None if node.tag == _NULL_TAG else node.value.strip()
    shape = "a list" if isinstance(node, yaml.SequenceNode) else "a mapping"
    problems.append(Problem(file, line, f"'{name}' must be text, not {shape}"))
    return _WRONG


def _or_none(value: Any) -> str | None:
    return None if value is _WRONG else value


def url_problem(url: str) -> str | None:
    """Why `url` may not be shown as a link, or None: only absolute http(s) URLs are allowed."""
    try:
        parts = urlsplit(url.strip())
    except ValueError:
        return f"{_short(url)!r} is not a valid URL"
    if parts.scheme.lower() not in ("http", "https") or not parts.netloc:
        return f"{_short(url)!r} is not an http(s) URL; only http:// and https:// links are allowed"
    return None


def _short(text: str, limit: int = 60) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "\u2026"


# ---------------------------------------------------------------- markdown body
#
# Every block markdown-it emits is either read (its text and citations kept) or reported
# with its line; and as a last guard, any non-blank line of the body that no read block
# covers is reported (markdown-it silently skips content nested deeper than maxNesting).
#
# - paragraphs, list items (kind "list_item"), block quotes: text with citations;
# - headings: the section tree (a heading may not carry citations);
# - GFM tables: one block of kind "table_row" per body row, its text
#   "Header: cell; Header: cell" (cells under an empty header appear alone, empty cells are
#   left out), each cell keeping its citations; a header's citation is repeated in every row;
# - code blocks and fences: their text, with citations read like any other text;
# - raw HTML (lxml): text, <li> as list items and <table> rows as table rows in the same
#   format as GFM tables; <script>, <style>, <iframe>, HTML headings and any element not
#   listed below are errors; comments are not content and are skipped;
# - links: their text is kept; a link whose text is a citation ([2](https://...), or [1]
#   resolved through a definition "[1]: https://...") is that citation, resolved against the
#   front matter's references; every link URL must be http(s);
# - link reference definitions: used by a link, they are that link's target; unused, or
#   defined twice, they are errors at their line (a "[1]: https://..." line is usually a
#   reference list entry, and references belong in the front matter).

_MD = MarkdownIt("commonmark", {"inline_definitions": True}).enable("table").disable("text_join")
# Every link is parsed as a link, whatever its scheme, so that the scheme check below can
# report a javascript: URL instead of markdown-it quietly leaving it as text.
_MD.validateLink = lambda url: True  # type: ignore[method-assign]
MAX_NESTING = _MD.options.maxNesting
_ESCAPED = {"[": "\ue000", "]": "\ue001"}
_SPACE = " \t\n\r\f\v"
_ASCII_SPACE_RE = re.compile(f"[{_SPACE}]+")
# Lines that hold only container markup (quote markers, list markers): no text to lose.
_MARKUP_ONLY_RE = re.compile(r"^(?:[ \t>]|[-*+](?=[ \t]|$)|\d{1,9}[.)](?=[ \t]|$))*$")
_LEAF_BLOCKS = ("paragraph_open", "heading_open", "fence", "code_block", "html_block", "hr", "table_open", "definition")

_HTML_INLINE = {
    "a", "abbr", "b", "bdi", "bdo", "big", "br", "cite", "code", "data", "del", "dfn", "em", "font", "i",
    "img", "ins", "kbd", "mark", "nobr", "q", "s", "samp", "small", "span", "strike", "strong", "sub",
    "sup", "time", "tt", "u", "var", "wbr",
}
_HTML_BLOCK = {
    "address", "article", "aside", "blockquote", "center", "details", "div", "dl", "dt", "dd",
    "figcaption", "figure", "footer", "header", "main", "p", "pre", "section", "summary",
}
_HTML_LIST = {"ul", "ol", "li"}
_HTML_TABLE = {"table", "caption", "colgroup", "col", "thead", "tbody", "tfoot", "tr", "th", "td"}
_HTML_READ = _HTML_INLINE | _HTML_BLOCK | _HTML_LIST | _HTML_TABLE | {"hr"}
_HTML_TAG_RE = re.compile(r"<\s*(/)?\s*([A-Za-z][A-Za-z0-9-]*)")
# For the after-check that no HTML text was lost: comments and tags, quoted attributes included.
_HTML_COMMENT_RE = re.compile(r"<!--.*?(?:-->|$)|<!\[CDATA\[.*?(?:\]\]>|$)|<\?.*?(?:>|$)|<![A-Za-z][^>]*>", re.S)
_HTML_ANY_TAG_RE = re.compile(r"</?[A-Za-z](?:\"[^\"]*\"|'[^']*'|[^'\"<>])*>")


class _Text:
    """Text gathered piece by piece, each piece knowing the source line it starts on, with a
    same-length masked copy in which escaped brackets never read as citations."""

    def __init__(self) -> None:
        self.shown: list[str] = []
        self.masked: list[str] = []
        self.starts: list[int] = []
        self.lines: list[int] = []
        self.size = 0

    def add(self, text: str, line: int, masked: str | None = None) -> None:
        if not text:
            return
        self.shown.append(text)
        self.masked.append(text if masked is None else masked)
        self.starts.append(self.size)
        self.lines.append(line)
        self.size += len(text)

    def extend(self, other: "_Text") -> None:
        for shown, masked, line in zip(other.shown, other.masked, other.lines):
            self.add(shown, line, masked)

    def blank(self) -> bool:
        return not any(piece.strip() for piece in self.shown)

    def stripped(self) -> "_Text":
        """The same text without whitespace at either end."""
        pieces = list(zip(self.shown, self.masked, self.lines))
        while pieces and not pieces[0][0].strip(_SPACE):
            pieces.pop(0)
        while pieces and not pieces[-1][0].strip(_SPACE):
            pieces.pop()
        out = _Text()
        for index, (shown, masked, line) in enumerate(pieces):
            if index == 0:
                cut = len(shown) - len(shown.lstrip(_SPACE))
                line += shown.count("\n", 0, cut)
                shown, masked = shown[cut:], masked[cut:]
            if index == len(pieces) - 1:
                keep = len(shown.rstrip(_SPACE))
                shown, masked = shown[:keep], masked[:keep]
            out.add(shown, line, masked)
        return out

    def plain(self) -> str:
        return " ".join("".join(self.shown).split())

    def line_at(self, pos: int) -> int:
        i = max(0, bisect.bisect_right(self.starts, pos) - 1)
        if not self.shown:
            return 0
        return self.lines[i] + self.shown[i].count("\n", 0, max(0, pos - self.starts[i]))

    def finish(self) -> tuple[str, str, list[int], list[int]]:
        """(text, masked text, new offsets of the kept runs, their old offsets): runs of
        whitespace become one space, and the ends are trimmed."""
        shown = "".join(self.shown)
        masked = "".join(self.masked)
        out_shown: list[str] = []
        out_masked: list[str] = []
        new_starts: list[int] = []
        old_starts: list[int] = []
        pos = 0
        new = 0
        for m in _ASCII_SPACE_RE.finditer(shown):
            if m.start() > pos:
                if new:
                    out_shown.append(" ")
                    out_masked.append(" ")
                    new += 1
                new_starts.append(new)
                old_starts.append(pos)
                out_shown.append(shown[pos : m.start()])
                out_masked.append(masked[pos : m.start()])
                new += m.start() - pos
            pos = m.end()
        if pos < len(shown):
            if new:
                out_shown.append(" ")
                out_masked.append(" ")
                new += 1
            new_starts.append(new)
            old_starts.append(pos)
            out_shown.append(shown[pos:])
            out_masked.append(masked[pos:])
        return "".join(out_shown), "".join(out_masked), new_starts, old_starts


@dataclass
class _Linked:
    """A citation written as a link: [2](https://...), or [1] resolved through a definition."""

    body: str
    href: str
    line: int


@dataclass
class _Body:
    """What parsing the body needs and gathers, besides the sections."""

    file: str
    offset: int  # the file line of the body's first line
    highest: int | None  # the highest reference number that exists (None: front matter unreadable)
    problems: list[Problem]
    linked: list[_Linked] = field(default_factory=list)
    link_hrefs: list[str] = field(default_factory=list)

    def problem(self, line: int, message: str) -> None:
        self.problems.append(Problem(self.file, line, message))

    def check_url(self, url: str, line: int, what: str) -> None:
        reason = url_problem(url)
        if reason:
            self.problem(line, f"{what} {reason}")


def _block(kind: str, text: _Text, body: _Body, line: int | None = None) -> Block | None:
    """A Block from gathered text, its citations located and read; None when it holds no text.
    Its line is `line`, or else the line of its first character."""
    if text.blank():
        return None
    shown, masked, new_starts, old_starts = text.finish()

    def line_of(pos: int) -> int:
        i = max(0, bisect.bisect_right(new_starts, pos) - 1)
        return text.line_at(old_starts[i] + (pos - new_starts[i]))

    citations: list[Citation] = []
    for scanned in scan_citations(masked, body.highest):
        at = line_of(scanned.start)
        if scanned.error:
            body.problem(at, scanned.error)
        else:
            citations.append(Citation(scanned.start, scanned.end, scanned.numbers, at))
    return Block(kind=kind, text=shown, line=line_of(0) if line is None else line, citations=citations)


def _inline(children: list, line: int, body: _Body, out: _Text) -> int:
    """Add the text of inline tokens to `out`; returns the line after them."""
    i = 0
    while i < len(children):
        child = children[i]
        kind = child.type
        if kind in ("text", "code_inline"):
            out.add(child.content, line)
        elif kind == "text_special":
            masked = _ESCAPED.get(child.content, child.content) if child.info == "escape" else child.content
            out.add(child.content, line, masked)
        elif kind in ("softbreak", "hardbreak"):
            out.add("\n", line)
            line += 1
        elif kind in ("em_open", "em_close", "strong_open", "strong_close"):
            pass
        elif kind == "link_open":
            depth, j = 1, i + 1
            while j < len(children) and depth:
                depth += {"link_open": 1, "link_close": -1}.get(children[j].type, 0)
                j += 1
            href = child.attrGet("href") or ""
            body.check_url(href, line, "link")
            body.link_hrefs.append(href)
            inner = _Text()
            after = _inline(children[i + 1 : j - 1 if depth == 0 else j], line, body, inner)
            label = inner.plain()
            if CITATION_LIKE_BODY_RE.fullmatch(label) and child.markup != "autolink":
                # A link on a reference number is that citation; its URL is checked against
                # the reference's own in the front matter.
                out.add(f"[{label}]", line)
                body.linked.append(_Linked(label, href, line))
            else:
                out.extend(inner)
            line = after
            i = j
            continue
        elif kind == "image":
            body.check_url(child.attrGet("src") or "", line, "image")
            out.add(child.content, line)
        elif kind == "html_inline":
            linked = _html_linked_citation(children[i : i + 3])
            if linked is not None:  # <a href="...">2</a>: the citation [2]
                out.add(f"[{linked[0]}]", line)
                body.check_url(linked[1], line, "link")
                body.link_hrefs.append(linked[1])
                body.linked.append(_Linked(linked[0], linked[1], line))
                i += 3
                continue
            _inline_html(child.content, line, body, out)
            line += child.content.count("\n")
        else:
            body.problem(line, f"inline markdown '{kind}' is not read by medkb")
            out.add(child.content, line)
        i += 1
    return line


def _inline_html(tag: str, line: int, body: _Body, out: _Text) -> None:
    """An inline HTML tag: markup only (its text is in the tokens around it). Comments are skipped."""
    if tag.startswith("<!--"):
        return
    m = _HTML_TAG_RE.match(tag)
    if not m:
        body.problem(line, f"inline HTML {_short(tag)!r} is not read by medkb")
        return
    closing, name = m.group(1), m.group(2).lower()
    if closing:
        return  # the opening tag was read, or reported
    if name not in _HTML_READ:
        body.problem(line, _html_refusal(name))
        return
    if name == "br":
        out.add(" ", line)
    elif name in ("a", "img"):
        try:
            element = lxml_html.fragment_fromstring(tag, create_parent="div")[0]
        except (IndexError, etree.ParserError, ValueError):
            body.problem(line, f"inline HTML {_short(tag)!r} cannot be read")
            return
        if name == "a" and element.get("href") is not None:
            body.check_url(element.get("href"), line, "link")
            body.link_hrefs.append(element.get("href"))
        if name == "img":
            body.check_url(element.get("src") or "", line, "image")
            out.add(element.get("alt") or "", line)


def _html_linked_citation(tokens: list) -> tuple[str, str] | None:
    """(citation body, href) when the tokens are <a href="...">, a reference number, </a>."""
    if len(tokens) < 3 or tokens[1].type != "text" or tokens[2].type != "html_inline":
        return None
    opening, label, closing = tokens[0].content, " ".join(tokens[1].content.split()), tokens[2].content
    if not re.match(r"<a[\s>]", opening, re.I) or not re.fullmatch(r"</a\s*>", closing, re.I):
        return None
    if not CITATION_LIKE_BODY_RE.fullmatch(label):
        return None
    try:
        href = lxml_html.fragment_fromstring(opening, create_parent="div")[0].get("href")
    except (IndexError, etree.ParserError, ValueError):
        return None
    return (label, href) if href is not None else None


def _html_refusal(name: str) -> str:
    if re.fullmatch(r"h[1-6]", name):
        return f"HTML heading <{name}> is not read as a section; use a markdown heading (##)"
    return f"HTML element <{name}> is not allowed in an article; write its text as markdown"


class _Html:
    """An HTML block turned into blocks: paragraphs, list items and table rows, with lines."""

    def __init__(self, first_line: int, body: _Body):
        self.base = first_line
        self.line = first_line
        self.body = body
        self.blocks: list[Block] = []
        self.text = _Text()
        self.kind = "paragraph"
        self.refused = False

    def _sync(self, element) -> None:
        if element.sourceline:
            self.line = self.base + element.sourceline - 1

    def add(self, text: str | None) -> None:
        if text:
            self.text.add(text, self.line)
            self.line += text.count("\n")

    def flush(self) -> None:
        block = _block(self.kind, self.text, self.body)
        if block:
            self.blocks.append(block)
        self.text = _Text()

    def children(self, element, flat: bool) -> None:
        self.add(element.text)
        for child in element:
            self.node(child, flat)
            self.add(child.tail)

    def node(self, element, flat: bool = False) -> None:
        """One element. `flat`: inside a table cell, where everything is inline text."""
        if not isinstance(element.tag, str):
            return  # a comment or processing instruction: not content
        self._sync(element)
        name = element.tag.lower()
        if name not in _HTML_READ:
            self.body.problem(self.line, _html_refusal(name))
            self.refused = True
            return
        if name == "br":
            self.add(" ")  # not a line of the source: the line count stays
        elif name == "img":
            self.body.check_url(element.get("src") or "", self.line, "image")
            self.add(element.get("alt"))
        elif name == "a":
            href = element.get("href")
            if href is not None:
                self.body.check_url(href, self.line, "link")
                self.body.link_hrefs.append(href)
            label = " ".join(element.text_content().split())
            inline_only = all(isinstance(e.tag, str) and e.tag.lower() in _HTML_INLINE for e in element.iterdescendants())
            if href is not None and inline_only and CITATION_LIKE_BODY_RE.fullmatch(label):
                self.add(f"[{label}]")
                self.body.linked.append(_Linked(label, href, self.line))
            else:
                self.children(element, flat)
        elif name in _HTML_INLINE or flat:
            if flat and name not in _HTML_INLINE:
                self.add(" ")
            self.children(element, flat)
            if flat and name not in _HTML_INLINE:
                self.add(" ")
        elif name == "hr":
            self.flush()
        elif name == "table":
            self.flush()
            self.table(element)
        elif name == "tr":  # a row outside any table
            self.flush()
            self.row(element, [])
        elif name == "li":
            self.flush()
            outer, self.kind = self.kind, "list_item"
            self.children(element, flat)
            self.flush()
            self.kind = outer
        else:  # block, list or stray table part: a block boundary before and after
            self.flush()
            self.children(element, flat)
            self.flush()

    def cell(self, element) -> _Text:
        outer, self.text = self.text, _Text()
        self._sync(element)
        self.children(element, flat=True)
        text, self.text = self.text, outer
        return text

    def table(self, table) -> None:
        rows: list = []

        def gather(container) -> None:
            self.add(container.text)  # stray text inside table structure is kept as a paragraph
            for child in container:
                name = child.tag.lower() if isinstance(child.tag, str) else ""
                if name == "tr":
                    rows.append(child)
                elif name in ("thead", "tbody", "tfoot"):
                    gather(child)
                elif name in ("col", "colgroup") or not name:
                    pass
                else:  # a caption, or anything else a parser left inside the table
                    self.flush()
                    self.node(child)
                    self.flush()
                self.add(child.tail)
            self.flush()

        gather(table)
        # Leading rows of header cells only are the column headers, when body rows follow.
        leading = 0
        for row in rows:
            cells = self._cells(row)
            if not cells or any(c.tag.lower() != "th" for c in cells):
                break
            leading += 1
        header_rows, body_rows = (rows[:leading], rows[leading:]) if leading < len(rows) else ([], rows)
        headers: list[_Text] = []
        for row in header_rows:
            column = 0
            for cell in self._cells(row):
                text = self.cell(cell)
                for _ in range(self._span(cell)):
                    while len(headers) <= column:
                        headers.append(_Text())
                    if not headers[column].blank() and not text.blank():
                        headers[column].add(" ", self.line)
                    headers[column].extend(text)
                    column += 1
        for row in body_rows:
            self.row(row, headers)

    def row(self, row, headers: list[_Text]) -> None:
        self._sync(row)
        line = self.line
        pairs: list[tuple[_Text | None, _Text]] = []
        column = 0
        for cell in self._cells(row):
            span = self._span(cell)
            # A cell spanning several columns stands without a header.
            pairs.append((headers[column] if span == 1 and column < len(headers) else None, self.cell(cell)))
            column += span
        self._emit_row(pairs, line)

    @staticmethod
    def _cells(row) -> list:
        return [c for c in row if isinstance(c.tag, str) and c.tag.lower() in ("th", "td")]

    @staticmethod
    def _span(cell) -> int:
        try:
            return max(1, min(int(cell.get("colspan", "1")), 100))
        except ValueError:
            return 1

    def _emit_row(self, pairs: list[tuple[_Text | None, _Text]], line: int) -> None:
        block = _row_block(pairs, line, self.body)
        if block:
            self.blocks.append(block)


def _row_block(pairs: list[tuple[_Text | None, _Text]], line: int, body: _Body) -> Block | None:
    return _block("table_row", _row_text(pairs), body, line)


def _row_text(pairs: list[tuple[_Text | None, _Text]]) -> _Text:
    """A table row as "Header: cell; Header: cell"; a cell under an empty header stands alone,
    an empty cell is left out."""
    row = _Text()
    for header, cell in pairs:
        if cell.blank():
            continue
        cell = cell.stripped()
        line = cell.lines[0]
        if row.size:
            row.add("; ", line)
        if header is not None and not header.blank():
            row.extend(header.stripped())
            row.add(": ", line)
        row.extend(cell)
    return row


def _html_block(token, line: int, body: _Body) -> list[Block]:
    try:
        root = lxml_html.fragment_fromstring(token.content, create_parent="div")
    except (etree.ParserError, ValueError) as exc:
        body.problem(line, f"HTML block cannot be read: {exc}")
        return []
    html = _Html(line, body)
    html.children(root, flat=False)
    html.flush()
    if not html.refused:
        # The HTML parser must not have lost any text: every word of the source (tags and
        # comments aside) is in the blocks made from it.
        source = _HTML_ANY_TAG_RE.sub(" ", _HTML_COMMENT_RE.sub(" ", token.content))
        words = set(re.findall(r"\w+", html_lib.unescape(source)))
        kept = set(re.findall(r"\w+", " ".join(b.text for b in html.blocks)))
        lost = sorted(words - kept)
        if lost:
            body.problem(line, f"HTML text not read: {_short(' '.join(lost))}")
    return html.blocks


def _table(tokens: list, body: _Body) -> list[Block]:
    """A GFM table: one table_row block per body row (or the header row, if it is alone)."""
    rows: list[list[_Text]] = []
    row_lines: list[int] = []
    current: list[_Text] | None = None
    for tok in tokens:
        if tok.type == "tr_open":
            current = []
            row_lines.append(tok.map[0] + body.offset if tok.map else body.offset)
        elif tok.type == "tr_close" and current is not None:
            rows.append(current)
            current = None
        elif tok.type == "inline" and current is not None:
            text = _Text()
            _inline(tok.children or [], tok.map[0] + body.offset if tok.map else body.offset, body, text)
            current.append(text)
    if not rows:
        return []
    if len(rows) == 1:  # a header row alone: its cells are the row
        block = _row_block([(None, h) for h in rows[0]], row_lines[0], body)
        return [block] if block else []
    headers = rows[0]
    blocks = []
    for cells, line in zip(rows[1:], row_lines[1:]):
        block = _row_block([(headers[i] if i < len(headers) else None, cell) for i, cell in enumerate(cells)], line, body)
        if block:
            blocks.append(block)
    return blocks


@dataclass
class _Definition:
    label: str
    url: str
    line: int


def _parse_body(source: str, body: _Body) -> list[Section]:
    tokens = _MD.parse(source)
    sections: list[Section] = [Section(path=(), line=body.offset)]
    stack: list[tuple[int, str]] = []  # (level, heading)
    definitions: list[_Definition] = []
    covered: set[int] = set()
    list_depth = 0
    i = 0
    while i < len(tokens):
        tok = tokens[i]
        kind = tok.type
        line = tok.map[0] + body.offset if tok.map else body.offset
        if tok.map and kind in _LEAF_BLOCKS:
            covered.update(range(tok.map[0], tok.map[1]))
        block_kind = "list_item" if list_depth > 0 else "paragraph"
        if kind == "heading_open":
            level = int(tok.tag[1:])
            heading_text = _Text()
            _inline(tokens[i + 1].children or [], line, body, heading_text)
            heading = heading_text.plain()
            if scan_citations("".join(heading_text.masked)):
                body.problem(line, "a heading must not carry citations; cite in the text below it")
            while stack and stack[-1][0] >= level:
                stack.pop()
            stack.append((level, heading))
            sections.append(Section(path=tuple(h for _, h in stack), line=line))
            i += 3
            continue
        if kind == "paragraph_open":
            text = _Text()
            _inline(tokens[i + 1].children or [], line, body, text)
            block = _block(block_kind, text, body)
            if block:
                sections[-1].blocks.append(block)
            i += 3
            continue
        if kind == "table_open":
            j = i
            while tokens[j].type != "table_close":
                j += 1
            sections[-1].blocks.extend(_table(tokens[i : j + 1], body))
            i = j + 1
            continue
        if kind in ("bullet_list_open", "ordered_list_open"):
            list_depth += 1
        elif kind in ("bullet_list_close", "ordered_list_close"):
            list_depth -= 1
        elif kind in ("list_item_open", "list_item_close", "blockquote_open", "blockquote_close", "hr"):
            pass  # containers, whose blocks are read one by one; a rule holds no text
        elif kind in ("fence", "code_block"):
            text = _Text()
            text.add(tok.content, line + (1 if kind == "fence" else 0))
            block = _block(block_kind, text, body)
            if block:
                sections[-1].blocks.append(block)
        elif kind == "html_block":
            for block in _html_block(tok, line, body):
                if block.kind == "paragraph" and list_depth > 0:
                    block.kind = "list_item"
                sections[-1].blocks.append(block)
        elif kind == "definition":
            definitions.append(_Definition(tok.meta["label"], tok.meta["url"], line))
        else:
            body.problem(line, f"markdown '{kind}' is not read by medkb")
            if tok.map:
                covered.update(range(tok.map[0], tok.map[1]))
        i += 1
    _check_definitions(definitions, body)
    _check_coverage(source, covered, body)
    return [s for s in sections if s.blocks or s.path]


def _check_definitions(definitions: list[_Definition], body: _Body) -> None:
    first: dict[str, int] = {}
    for d in definitions:
        key = " ".join(d.label.split()).casefold()
        shown = f"[{_short(d.label, 30)}]"
        if key in first:
            body.problem(d.line, f"link reference definition {shown} is defined twice (first on line {first[key]}); markdown ignores this one")
            continue
        first[key] = d.line
        body.check_url(d.url, d.line, f"link reference definition {shown}:")
        if CITATION_LIKE_BODY_RE.fullmatch(d.label):
            used = any(" ".join(lk.body.split()).casefold() == key and lk.href == d.url for lk in body.linked)
            if not used:
                body.problem(d.line, f"link reference definition {shown}: {_short(d.url)} reads like a reference list entry; references go in the front matter (`references:`), cited in the text as {shown}")
        elif d.url not in body.link_hrefs:
            body.problem(d.line, f"link reference definition {shown} is never used by a link")


def _check_coverage(text: str, covered: set[int], body: _Body) -> None:
    """Every non-blank body line must belong to a block that was read (markdown-it skips,
    without a word, whatever is nested deeper than its maxNesting)."""
    start = None
    lines = text.replace("\r\n", "\n").replace("\r", "\n").split("\n")
    for number, content in enumerate(lines + [""]):
        unread = number < len(lines) and number not in covered and not _MARKUP_ONLY_RE.match(content)
        if unread and start is None:
            start = number
        elif not unread and start is not None:
            body.problem(start + body.offset, f"text not read: {_short(lines[start].strip())!r} (lists and quotes may nest at most {MAX_NESTING // 2} levels)")
            start = None


# ---------------------------------------------------------------- the article


def _reference_nodes(node: yaml.Node | None) -> list[yaml.Node | None]:
    return list(node.value) if isinstance(node, yaml.SequenceNode) else []


def _parse_references(raw: Any, node: yaml.Node | None, key_line: int, file: str, problems: list[Problem],
                      listed: set[int] | None = None) -> dict[int, Reference]:
    """The valid references by number; `listed` gathers every number listed, valid or not (so
    that a citation of a reference with a bad field is not also reported as naming none)."""
    refs: dict[int, Reference] = {}
    listed = set() if listed is None else listed
    if raw is None:
        return refs
    if not isinstance(raw, list):
        problems.append(Problem(file, key_line, "references must be a list of entries"))
        return refs
    entry_nodes = _reference_nodes(node)
    for idx, entry in enumerate(raw):
        entry_node = entry_nodes[idx] if idx < len(entry_nodes) else None
        line = entry_node.start_mark.line + _FM_OFFSET if entry_node is not None else key_line
        if not isinstance(entry, dict):
            problems.append(Problem(file, line, "each reference must be a mapping with id, kind, title, source"))
            continue
        key_lines = _key_lines(entry_node, _FM_OFFSET) if entry_node is not None else {}
        unknown = set(entry) - REFERENCE_FIELDS
        if unknown:
            problems.append(Problem(file, line, f"unknown reference field(s): {', '.join(sorted(map(str, unknown)))}"))
        ref_id = entry.get("id")
        if isinstance(ref_id, bool) or not isinstance(ref_id, int) or ref_id < 1:
            problems.append(Problem(file, line, f"reference id must be a positive whole number, got {_short(repr(ref_id))}"))
            continue
        if ref_id in listed:
            problems.append(Problem(file, line, f"reference id {ref_id} is listed twice"))
            continue
        listed.add(ref_id)
        before = len(problems)
        given = {
            key: _text_of(_child(entry_node, key), f"reference {ref_id} {key}", key_lines.get(key, line), file, problems)
            for key in ("kind", "title", "source", "pmid", "doi", "url")
        }
        missing = [k for k in ("kind", "title", "source") if not given[k] and given[k] is not _WRONG]
        fields = {k: _or_none(v) for k, v in given.items()}
        if missing:
            problems.append(Problem(file, line, f"reference {ref_id} is missing required field(s): {', '.join(missing)}"))
        kind = fields["kind"]
        if kind and kind not in REFERENCE_KINDS:
            problems.append(Problem(file, key_lines.get("kind", line), f"reference {ref_id} has unknown kind {_short(kind)!r}; expected one of {', '.join(REFERENCE_KINDS)}"))
        year = entry.get("year")
        if year is not None and (isinstance(year, bool) or not isinstance(year, int) or not 1800 <= year <= 2100):
            problems.append(Problem(file, key_lines.get("year", line), f"reference {ref_id} has a bad year {_short(repr(year))}"))
        if fields["url"]:
            reason = url_problem(fields["url"])
            if reason:
                problems.append(Problem(file, key_lines.get("url", line), f"reference {ref_id} url {reason}"))
        authors_node = _child(entry_node, "authors")
        authors: tuple[str, ...] = ()
        if isinstance(authors_node, yaml.ScalarNode):
            authors = () if authors_node.tag == _NULL_TAG else (authors_node.value.strip(),)
        elif isinstance(authors_node, yaml.SequenceNode) and all(
            isinstance(a, yaml.ScalarNode) and a.tag != _NULL_TAG for a in authors_node.value
        ):
            authors = tuple(a.value.strip() for a in authors_node.value)
        elif authors_node is not None:
            problems.append(Problem(file, key_lines.get("authors", line), f"reference {ref_id} authors must be a name or a list of names"))
        notices = _parse_notices(entry.get("notices"), entry_node, ref_id, line, file, problems)
        if len(problems) > before:
            continue
        refs[ref_id] = Reference(
            id=ref_id,
            kind=EvidenceKind(kind),
            title=" ".join((fields["title"] or "").split()),
            source=fields["source"] or "",
            year=year,
            pmid=fields["pmid"],
            doi=fields["doi"],
            url=fields["url"],
            authors=authors,
            notices=notices,
        )
    return refs


def _parse_notices(raw: Any, entry_node: yaml.Node | None, ref_id: int, ref_line: int, file: str, problems: list[Problem]) -> tuple[Notice, ...]:
    """A reference's `notices` list; a bad notice is reported at its own line and left out."""
    if raw is None:
        return ()
    notices_node = _child(entry_node, "notices") if entry_node is not None else None
    key_line = notices_node.start_mark.line + _FM_OFFSET if notices_node is not None else ref_line
    if not isinstance(raw, list):
        problems.append(Problem(file, key_line, f"reference {ref_id}: notices must be a list of entries"))
        return ()
    item_lines = _item_lines(notices_node, _FM_OFFSET)
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


def _decode(raw_bytes: bytes, file: str) -> str:
    try:
        return raw_bytes.decode("utf-8")
    except UnicodeDecodeError as exc:
        line_start = raw_bytes.rfind(b"\n", 0, exc.start) + 1
        line = raw_bytes.count(b"\n", 0, exc.start) + 1
        column = len(raw_bytes[line_start : exc.start].decode("utf-8", errors="replace")) + 1
        bad = raw_bytes[exc.start : exc.end].hex(" ")
        raise ArticleInvalid([Problem(file, line, f"not UTF-8 text: byte(s) {bad} at line {line}, column {column} ({exc.reason}); save the file as UTF-8")]) from None


def parse_article(path: Path | str, display_name: str | None = None, data: bytes | None = None) -> Article:
    """Parse one article file (or `data`, its bytes already read). Raises ArticleInvalid
    listing every problem, each with file and line."""
    path = Path(path)
    file = display_name or str(path)
    raw_bytes = path.read_bytes() if data is None else data
    try:
        return _parse(raw_bytes, path, file)
    except RecursionError:
        raise ArticleInvalid([Problem(file, 1, "the article is nested too deeply to read")]) from None


def _parse(raw_bytes: bytes, path: Path, file: str) -> Article:
    text = _decode(raw_bytes, file).lstrip("\ufeff")
    fm_text, body_text, body_offset = _split_front_matter(text, file)
    data, node, problems = _parse_front_matter(fm_text, file)
    if data is None or node is None:
        # The front matter cannot be read: still report what is wrong in the body.
        _parse_body(body_text, _Body(file, body_offset, None, problems))
        raise ArticleInvalid(sorted(problems, key=lambda p: p.line))
    lines = _key_lines(node, _FM_OFFSET)

    def line_of(key: str) -> int:
        return lines.get(key, 1)

    def text_field(key: str) -> str | None:
        return _text_of(_child(node, key), key, line_of(key), file, problems)

    for key in sorted(set(map(str, data)) - KNOWN_FIELDS):
        problems.append(Problem(file, line_of(key), f"unknown field '{_short(key)}'"))

    given = {key: text_field(key) for key in ("id", "title", "review_status", "last_updated", "audience", "specialty")}
    for key in REQUIRED_FIELDS:
        if not given[key] and given[key] is not _WRONG:
            problems.append(Problem(file, line_of(key) if key in lines else 1, f"missing required field '{key}'"))
    article_id, title, status, raw_date, audience, specialty = (_or_none(given[k]) for k in given)
    title = " ".join((title or "").split())
    if article_id and (article_id in (".", "..") or _CONTROL_CHARS.search(article_id)):
        # Any other text is an id (a BEIR import keeps its own): the server percent-encodes it
        # in links, but '.' and '..' are path segments every URL parser removes, and a control
        # character cannot be typed into a link or a log line.
        problems.append(Problem(file, line_of("id"), f"id {_short(article_id)!r} cannot name an article's page: use letters, digits and '-'"))

    if status and status not in REVIEW_STATUSES:
        problems.append(Problem(file, line_of("review_status"), f"unknown review status {_short(status)!r}; expected one of {', '.join(REVIEW_STATUSES)}"))

    last_updated: dt.date | None = None
    if raw_date and raw_date != UNKNOWN_DATE:
        try:
            last_updated = dt.date.fromisoformat(raw_date)
        except ValueError:
            problems.append(Problem(file, line_of("last_updated"), f"bad date {_short(raw_date)!r}: use YYYY-MM-DD (or '{UNKNOWN_DATE}')"))

    audience = audience or "clinician"
    if audience not in AUDIENCES:
        problems.append(Problem(file, line_of("audience"), f"unknown audience {_short(audience)!r}; expected one of {', '.join(AUDIENCES)}"))

    listed: set[int] = set()
    references = _parse_references(data.get("references"), _child(node, "references"), line_of("references"), file, problems, listed)
    retracted = sorted(n for n, ref in references.items() if ref.retracted)
    if status == ReviewStatus.APPROVED and retracted:
        problems.append(Problem(file, line_of("review_status"), f"an article citing a retracted source (reference {', '.join(map(str, retracted))}) cannot be approved"))

    unresolved_raw = data.get("unresolved_references") or []
    unresolved: tuple[int, ...] = ()
    if not isinstance(unresolved_raw, list) or not all(isinstance(n, int) and not isinstance(n, bool) and n >= 1 for n in unresolved_raw):
        problems.append(Problem(file, line_of("unresolved_references"), "unresolved_references must be a list of reference numbers"))
    else:
        unresolved = tuple(sorted(set(unresolved_raw)))
        for n in unresolved:
            if n in references:
                problems.append(Problem(file, line_of("unresolved_references"), f"reference {n} is listed, so it cannot also be unresolved"))

    related_node = _child(node, "related_questions")
    related: tuple[str, ...] = ()
    if related_node is None or (isinstance(related_node, yaml.ScalarNode) and related_node.tag == _NULL_TAG):
        pass
    elif not isinstance(related_node, yaml.SequenceNode) or not all(
        isinstance(q, yaml.ScalarNode) and q.tag != _NULL_TAG for q in related_node.value
    ):
        problems.append(Problem(file, line_of("related_questions"), "related_questions must be a list of questions"))
    else:
        related = tuple(" ".join(q.value.split()) for q in related_node.value if q.value.strip())

    authors_node = _child(node, "authors")
    authors: tuple[str, ...] = ()
    if authors_node is None or (isinstance(authors_node, yaml.ScalarNode) and authors_node.tag == _NULL_TAG):
        pass
    elif not isinstance(authors_node, yaml.SequenceNode) or not all(
        isinstance(a, yaml.ScalarNode) and a.tag != _NULL_TAG and a.value.strip() for a in authors_node.value
    ):
        problems.append(Problem(file, line_of("authors"), "authors must be a list of account names"))
    else:
        authors = tuple(a.value.strip() for a in authors_node.value)

    metadata = data.get("metadata") or {}
    if not isinstance(metadata, dict):
        problems.append(Problem(file, line_of("metadata"), "metadata must be a mapping"))
        metadata = {}

    # Highest reference number that exists: a citation range is bounded by it.
    body = _Body(file, body_offset, max([*listed, *unresolved], default=0), problems)
    sections = _parse_body(body_text, body)

    cited: set[int] = set()
    for section in sections:
        for block in section.blocks:
            for citation in block.citations:
                cited.update(citation.numbers)
                missing = [n for n in citation.numbers if n not in listed and n not in unresolved]
                if missing:
                    shown = block.text[citation.start : citation.end]
                    which = "" if len(missing) == len(citation.numbers) else f" for {format_citation(missing)[1:-1]}"
                    numbers = ", ".join(map(str, sorted(listed))) or "none"
                    problems.append(Problem(file, citation.line, f"citation {_short(shown)} names no reference{which} (references: {numbers})"))
    for linked in body.linked:
        try:
            numbers = expand(CITATION_RE.fullmatch(f"[{linked.body}]").group(1))  # type: ignore[union-attr]
        except (AttributeError, CitationSyntaxError):
            continue  # already reported where the citation was read
        for n in numbers:
            ref = references.get(n)
            if ref is not None and ref.url and linked.href not in (ref.url, _MD.normalizeLink(ref.url)):
                problems.append(Problem(file, linked.line, f"citation [{n}] links to {_short(linked.href)}, but reference {n}'s url is {_short(ref.url)}; give a source one URL, in the front matter"))
    ref_nodes = _reference_nodes(_child(node, "references"))
    for ref_id in sorted(references):
        if ref_id not in cited:
            line = next(
                (n.start_mark.line + _FM_OFFSET for r, n in zip(data.get("references") or [], ref_nodes) if isinstance(r, dict) and r.get("id") == ref_id),
                line_of("references"),
            )
            problems.append(Problem(file, line, f"reference {ref_id} is never cited"))
    if not any(s.blocks for s in sections):
        problems.append(Problem(file, body_offset, "the article has no text"))

    if problems:
        raise ArticleInvalid(sorted(problems, key=lambda p: p.line))
    return Article(
        id=article_id or "",
        title=title,
        review_status=ReviewStatus(status),
        last_updated=last_updated,
        audience=Audience(audience),
        specialty=specialty,
        references=references,
        unresolved_references=unresolved,
        related_questions=related,
        metadata=metadata,
        sections=sections,
        path=path,
        content_sha256=hashlib.sha256(raw_bytes).hexdigest(),
        authors=authors,
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
    """Every article file under the given directories (recursively), in a stable order; a file
    reached twice (a folder named twice, or a folder and one inside it) is listed once."""
    files: list[Path] = []
    seen: set[Path] = set()  # a folder named twice, or a folder and one inside it: each file once, where first reached
    for d in dirs:
        d = Path(d)
        if d.is_file():
            found = [d]
        elif d.is_dir():
            found = sorted(p for p in d.rglob("*.md") if p.is_file() and not p.name.startswith(".") and p.name.lower() != "readme.md")
        else:
            raise FileNotFoundError(f"corpus directory not found: {d}")
        for path in found:
            real = path.resolve()
            if real not in seen:
                seen.add(real)
                files.append(path)
    return files


def load_corpus(dirs: Iterable[Path | str]) -> CorpusLoad:
    """Parse every article, reading each file once; bad ones and duplicate ids are skipped and
    reported, never silently dropped."""
    files = corpus_files(dirs)
    articles: list[Article] = []
    problems: list[Problem] = []
    skipped: list[str] = []
    digests: list[str] = []
    seen: dict[str, Path] = {}
    for path in files:
        try:
            data = path.read_bytes()
        except OSError as exc:
            problems.append(Problem(str(path), 1, f"cannot read the file: {exc.strerror or exc}"))
            skipped.append(str(path))
            digests.append(hashlib.sha256(b"").hexdigest())
            continue
        digests.append(hashlib.sha256(data).hexdigest())
        try:
            article = parse_article(path, data=data)
        except ArticleInvalid as exc:
            problems.extend(exc.problems)
            skipped.append(str(path))
            continue
        except RecursionError:
            problems.append(Problem(str(path), 1, "the article is nested too deeply to read"))
            skipped.append(str(path))
            continue
        except OSError as exc:
            problems.append(Problem(str(path), 1, f"cannot read the file: {exc.strerror or exc}"))
            skipped.append(str(path))
            continue
        except Exception as exc:  # a fault in one article never stops the others; it is reported
            problems.append(Problem(str(path), 1, f"could not be read ({type(exc).__name__}: {_short(str(exc))}); please report this"))
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
