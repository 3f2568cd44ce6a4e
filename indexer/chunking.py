"""Section-aware chunks, sized in the model's word pieces.

A chunk never crosses a section, never cuts a sentence, and never separates a
citation from the sentence it supports. Each chunk carries everything a result
needs to be shown with its references and review status.
"""

from __future__ import annotations

import datetime as dt
import math
import re
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

from indexer.articles import Article, Block, Citation, Section
from indexer.citations import CITATION_RE
from indexer.vocabulary import PART_KINDS, Audience, EvidenceKind, Reference, ReviewStatus

TokenCounter = Callable[[Sequence[str]], list[int]]

# Abbreviations after which a full stop does not end a sentence.
_ABBREVIATIONS = {
    "e.g", "i.e", "etc", "vs", "cf", "al", "approx", "fig", "dr", "mr", "mrs", "ms", "prof", "st",
    "no", "vol", "inc", "ltd", "jr", "sr", "dept", "min", "max", "mg", "mcg", "ml", "dl", "hr",
    "wk", "mo", "yr", "resp", "ref", "refs", "b.i.d", "t.i.d", "q.i.d", "p.o", "i.v", "u.s",
}
_BOUNDARY = re.compile(r"[.!?]+[\"')\]]*\s+")


# Blocks kept whole in one chunk unless one alone exceeds the budget.
WHOLE_BLOCKS = ("list_item", "table_row")

CONTEXT_TEMPLATES = {"title-section": "{title}\n{section}\n{text}", "none": "{text}"}


@dataclass(frozen=True)
class ChunkerSettings:
    """Chunk size limits in model word pieces. Recorded in every index manifest."""

    max_tokens: int = 220  # the whole embedded text: title + section path + passage (model reads 256)
    min_body_tokens: int = 64  # a passage always gets at least this budget, however long its title
    context_template: str = "{title}\n{section}\n{text}"  # what is embedded for a chunk

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class Chunk:
    """A passage of one section: whole sentences (or list items) with the citations they carry.

    `references` are the article's references that the passage cites, resolved;
    `unresolved_citations` the numbers it cites that its source lists no reference for.
    `embed_text` is what the model embedded: title, section path and text.
    """

    id: str
    section_id: str
    article_id: str
    article_title: str
    section_path: list[str]
    text: str
    citations: list[int]
    references: tuple[Reference, ...]
    unresolved_citations: list[int]
    review_status: ReviewStatus
    audience: Audience
    last_updated: dt.date | None
    evidence_kinds: list[EvidenceKind]
    specialty: str | None
    position: int
    line: int
    token_count: int
    oversized: bool = False  # a single sentence longer than the budget, kept whole
    embed_text: str = field(default="", repr=False)

    def to_dict(self) -> dict[str, Any]:
        """The JSON form stored in chunks.jsonl."""
        out = asdict(self)
        out["references"] = [r.to_dict() for r in self.references]
        out["last_updated"] = self.last_updated.isoformat() if self.last_updated else None
        return out

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "Chunk":
        """The inverse of `to_dict`."""
        return cls(**{
            **data,
            "references": tuple(Reference.from_dict(r) for r in data["references"]),
            "review_status": ReviewStatus(data["review_status"]),
            "audience": Audience(data["audience"]),
            "last_updated": dt.date.fromisoformat(data["last_updated"]) if data["last_updated"] else None,
            "evidence_kinds": [EvidenceKind(k) for k in data["evidence_kinds"]],
        })


def sentence_spans(text: str) -> list[tuple[int, int]]:
    """Character spans of the sentences in `text`.

    A full stop after a known abbreviation, an initial, or inside a number does
    not end a sentence; a citation that follows a sentence's full stop ("... end. [3]")
    stays with that sentence.
    """
    spans: list[tuple[int, int]] = []
    start = 0
    for m in _BOUNDARY.finditer(text):
        end_of_punct = m.start()
        word_match = re.search(r"([A-Za-z][A-Za-z.]*)$", text[start:end_of_punct])
        word = word_match.group(1).lower() if word_match else ""
        if word in _ABBREVIATIONS or (len(word) == 1 and text[m.start()] == "."):
            continue
        split_at = m.end()
        trailing = CITATION_RE.match(text, split_at)
        if trailing:  # "... end. [3] Next": the citation belongs to the sentence before it
            split_at = trailing.end()
            split_at += len(text[split_at:]) - len(text[split_at:].lstrip())
        nxt = text[split_at : split_at + 1]
        if nxt.islower() or split_at >= len(text):
            continue
        spans.append((start, split_at))
        start = split_at
    if start < len(text):
        spans.append((start, len(text)))
    return [(s, e) for s, e in spans if text[s:e].strip()]


@dataclass
class _Unit:
    """A sentence, or a whole list item or table row; the smallest piece a chunk is made of."""

    text: str
    citations: list[int]
    line: int
    block: int  # index of the block it came from: units of one block join with a space
    tokens: int = 0
    parts: list["_Unit"] | None = None  # a list item's or table row's sentences, if it must be split


def _block_units(block: Block, index: int) -> list[_Unit]:
    """Sentences of a block, each with the citations inside it."""
    units: list[_Unit] = []
    for start, end in sentence_spans(block.text):
        cites = _citations_in(block.citations, start, end)
        line = min((c.line for c in block.citations if start <= c.start < end), default=block.line)
        units.append(_Unit(text=block.text[start:end].strip(), citations=cites, line=line, block=index))
    return units


def _citations_in(citations: list[Citation], start: int, end: int) -> list[int]:
    out: list[int] = []
    for c in citations:
        if start <= c.start and c.end <= end:
            out.extend(n for n in c.numbers if n not in out)
    return out


def slug(text: str) -> str:
    s = re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")
    return s[:60].rstrip("-") or "text"


def section_ids(article: Article) -> list[str]:
    """Stable, unique ids for an article's sections: '<article id>#<slug of the heading path>'."""
    ids: list[str] = []
    seen: dict[str, int] = {}
    for section in article.sections:
        base = f"{article.id}#{slug(' '.join(section.path)) if section.path else 'intro'}"
        seen[base] = seen.get(base, 0) + 1
        ids.append(base if seen[base] == 1 else f"{base}-{seen[base]}")
    return ids


def _evidence_kinds(article: Article, section: Section, cited: list[int]) -> list[EvidenceKind]:
    kinds = sorted({article.references[n].kind for n in cited if n in article.references})
    if kinds:
        return kinds
    part = section.path[0].lower() if section.path else ""
    return [PART_KINDS[part]] if part in PART_KINDS else []


def chunk_article(article: Article, count_tokens: TokenCounter, settings: ChunkerSettings = ChunkerSettings()) -> list[Chunk]:
    """Cut an article into chunks that respect sections, sentences and citations."""
    chunks: list[Chunk] = []
    sec_ids = section_ids(article)
    position = 0
    for section, section_id in zip(article.sections, sec_ids):
        units: list[_Unit] = []
        for index, block in enumerate(section.blocks):
            block_units = _block_units(block, index)
            if block.kind in WHOLE_BLOCKS and block_units:
                # A list item reads as one point, a table row as one line of the table (its
                # column headers included); keep it whole unless it alone is too long.
                units.append(_Unit(
                    text=" ".join(u.text for u in block_units),
                    citations=[n for u in block_units for n in u.citations],
                    line=block.line,
                    block=index,
                    parts=block_units,
                ))
            else:
                units.extend(block_units)
        if not units:
            continue
        section_label = " > ".join(section.path)
        prefix = settings.context_template.format(title=article.title, section=section_label, text="")
        budget = max(settings.min_body_tokens, settings.max_tokens - count_tokens([prefix])[0])
        counts = count_tokens([u.text for u in units])
        expanded: list[_Unit] = []
        for unit, n in zip(units, counts):
            unit.tokens = n
            if unit.parts and n > budget and len(unit.parts) > 1:
                for part, pn in zip(unit.parts, count_tokens([p.text for p in unit.parts])):
                    part.tokens = pn
                    expanded.append(part)
            else:
                expanded.append(unit)
        for ordinal, group in enumerate(_pack(expanded, budget)):
            text = _join(group)
            cited: list[int] = []
            for u in group:
                cited.extend(n for n in u.citations if n not in cited)
            tokens = sum(u.tokens for u in group)
            chunks.append(Chunk(
                id=f"{section_id}~{ordinal}",
                section_id=section_id,
                article_id=article.id,
                article_title=article.title,
                section_path=list(section.path),
                text=text,
                citations=sorted(cited),
                references=tuple(article.references[n] for n in sorted(cited) if n in article.references),
                unresolved_citations=sorted(n for n in cited if n not in article.references),
                review_status=article.review_status,
                audience=article.audience,
                last_updated=article.last_updated,
                evidence_kinds=_evidence_kinds(article, section, cited),
                specialty=article.specialty,
                position=position,
                line=group[0].line,
                token_count=tokens,
                oversized=tokens > budget,
                embed_text=settings.context_template.format(title=article.title, section=section_label, text=text),
            ))
            position += 1
    return chunks


def _join(group: list[_Unit]) -> str:
    """Sentences of one block join with a space; blocks (paragraphs, list items) with a newline."""
    out = group[0].text
    for prev, unit in zip(group, group[1:]):
        out += (" " if unit.block == prev.block else "\n") + unit.text
    return out


def _pack(units: list[_Unit], budget: int) -> list[list[_Unit]]:
    """Packing of whole units, in order, into groups of at most `budget` tokens.

    A unit larger than the budget on its own becomes a group of its own rather than being cut.
    """
    # Aim for groups of even size, so a section does not end in a stray one-sentence chunk.
    total = sum(u.tokens for u in units)
    target = total / max(1, math.ceil(total / budget)) if total else budget
    groups: list[list[_Unit]] = []
    current: list[_Unit] = []
    size = 0
    for unit in units:
        if current and (size + unit.tokens > budget or size >= target):
            groups.append(current)
            current, size = [], 0
        current.append(unit)
        size += unit.tokens
    if current:
        groups.append(current)
    return groups
