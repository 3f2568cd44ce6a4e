"""The plain text of a published article page (the template of shared/seeds/) -> one article.

The page template, top to bottom: a title question; furniture (advisory-board line,
review-status block listing all three labels, "Last updated: <Month D, YYYY>View
editorial policy", "Personalize" and an audience prompt); the "From the Guidelines"
and "From the Research" parts with sub-headings, paragraphs and "  • " bullets; a
"References" block of "Guideline"/"Research" entries (a title line, then a
"source, year" line); "Related Questions"; a disclaimer; a follow-up prompt.

Only the template's fixed labels are matched. Citations appear as bare numbers at
the end of a sentence ("precursors 1.") or in prose ("as stated in 2 and 3"); both
become bracket citations at the end of their sentence. Numbers the page cites but
lists no reference for are kept (unresolved_references) and warned about. The
review-status block lists every label, so it says nothing: the status comes from
the caller.
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from indexer.importers.corpus_writer import BulletList, ImportedArticle, ImportedSection, Paragraph, Reference, slugify
from indexer.importers.report import ReportBuilder

PART_LABELS = {"from the guidelines": "From the Guidelines", "from the research": "From the Research"}
REFERENCES_LABEL = "references"
RELATED_LABEL = "related questions"
END_LABELS = ("professional medical disclaimer", "have a follow-up question?")
KIND_LABELS = {
    "guideline": "guideline",
    "guidelines": "guideline",
    "research": "research",
    "education": "education",
    "educational": "education",
}
# Furniture that must never become article text, wherever it shows up.
FURNITURE_EXACT = {
    "article review status",
    "submitted",
    "under review",
    "approved",
    "personalize",
    "help us tailor your experience",
    "view editorial policy",
}
FURNITURE_PREFIXES = ("medical advisory board", "educational purpose only", "which best describes you?", "last updated:")

LAST_UPDATED_RE = re.compile(r"last updated:\s*(.*?)\s*(?:view editorial policy)?\s*$", re.IGNORECASE)
BULLET_RE = re.compile(r"^\s*[\u2022\u25cf\u25aa\u25e6\u2023\u2219\u00b7]\s*(.*)$")
SOURCE_LINE_RE = re.compile(r"^(?P<source>.+?),\s*(?P<year>(?:18|19|20)\d\d)\.?$")

# A list of citation numbers: "2", "2 and 3", "3, 6, and 5", "2-4".
NUMLIST = r"\d{1,3}(?:(?:\s*,\s*(?:and\s+)?|\s+and\s+|\s*[-\u2013]\s*)\d{1,3})*"
PROSE_CITE_RE = re.compile(
    r",?\s+(?:as\s+[a-z]+(?:\s+[a-z]+)?\s+(?:in|by)|according\s+to|see)\s+"
    r"(?:(?:studies|study|references?|refs?\.?|sources?)\s+)?(?P<nums>" + NUMLIST + r")$",
    re.IGNORECASE,
)
TRAILING_CITE_RE = re.compile(r"(?P<word>\S+)\s+(?P<nums>" + NUMLIST + r")$")
# Words after which a number is a quantity, not a citation ("ages 2 and 3", "type 1").
NUMBER_WORDS = set(
    """
    a an the of to than at is are was were be been by in on from and or between over under about
    approximately around nearly least most only after before within for per every each up down
    age ages aged type types grade grades stage stages class classes phase phases level levels
    day days week weeks month months year years hour hours minute minutes dose doses cycle cycles
    step steps chromosome chromosomes trisomy factor factors version figure figures table tables
    group groups score scores visit visits tier tiers line lines number numbers size count times
    rate ratio value values mcv mch mchc rdw tibc ferritin hemoglobin hb hgb
    """.split()
)
SENTENCE_SPLIT_RE = re.compile(r"(?<=[.!?])\s+(?=[A-Z\"\u201c(])")
MAX_HEADING_WORDS = 12


@dataclass
class _Line:
    number: int  # 1-based
    text: str  # stripped


def read(source: Path, report: ReportBuilder) -> Iterator[ImportedArticle]:
    """One article per page file (a .txt file, or every .txt file in a folder)."""
    paths = [source] if source.is_file() else sorted(source.rglob("*.txt"), key=lambda p: p.relative_to(source).as_posix())
    for path in paths:
        report.tick("pages", every=100)
        article = read_page(path, report)
        if article is not None:
            yield article


def read_page(path: Path, report: ReportBuilder) -> ImportedArticle | None:
    display = path.name
    try:
        raw = path.read_text(encoding="utf-8-sig")
    except (OSError, UnicodeDecodeError) as exc:
        report.problem(display, "", f"cannot be read as UTF-8 text: {exc}")
        report.skip("page: cannot be read")
        return None
    lines = [_Line(i, text.strip()) for i, text in enumerate(raw.splitlines(), start=1)]

    title_line = next((line for line in lines if line.text), None)
    if title_line is None:
        report.problem(display, "line 1", "the page is empty")
        report.skip("page: empty")
        return None

    part_starts = [i for i, line in enumerate(lines) if line.text.lower() in PART_LABELS]
    if not part_starts:
        report.problem(display, f"line {title_line.number}", "no 'From the Guidelines' or 'From the Research' part: nothing to import")
        report.skip("page: no article text")
        return None

    end = next((i for i, line in enumerate(lines) if line.text.lower() in END_LABELS and i > part_starts[0]), len(lines))
    refs_at = _find_label(lines, REFERENCES_LABEL, part_starts[0], end)
    related_at = _find_label(lines, RELATED_LABEL, part_starts[0], end)
    body_end = min(i for i in (refs_at, related_at, end) if i is not None)

    header = lines[title_line.number : part_starts[0]]
    last_updated = _last_updated(header, display, report)
    sections, cited = _body(lines[part_starts[0] : body_end], display, report)

    references: list[Reference] = []
    if refs_at is not None:
        refs_end = related_at if related_at is not None and related_at > refs_at else end
        references = _references(lines[refs_at + 1 : refs_end], display, report)
    else:
        report.warn(display, "", "no References block")
    related: list[str] = []
    if related_at is not None:
        related_end = refs_at if refs_at is not None and refs_at > related_at else end
        related = [line.text for line in lines[related_at + 1 : related_end] if line.text and not _is_furniture(line.text)]

    known = {ref.id for ref in references}
    unresolved = sorted(n for n in cited if n not in known)
    for number in unresolved:
        report.warn(
            display,
            f"line {cited[number]}",
            f"citation {number} has no entry in the References list; kept as unresolved reference {number}",
        )
    for ref in references:
        if ref.id not in cited:
            report.warn(display, "", f"reference {ref.id} ({ref.title}) is never cited in the text")

    title = title_line.text
    return ImportedArticle(
        id=slugify(title) or slugify(path.stem) or "page",
        title=title,
        last_updated=last_updated,
        audience="clinician",
        sections=sections,
        references=references,
        unresolved_references=unresolved,
        related_questions=related,
        metadata={"source_format": "seed-page", "source_file": display},
        origin_file=display,
        origin_position=f"line {title_line.number}",
    )


def _find_label(lines: list[_Line], label: str, start: int, end: int) -> int | None:
    return next((i for i in range(start, end) if lines[i].text.lower() == label), None)


def _is_furniture(text: str) -> bool:
    lowered = text.lower()
    return lowered in FURNITURE_EXACT or lowered.startswith(FURNITURE_PREFIXES)


def _last_updated(header: list[_Line], display: str, report: ReportBuilder) -> dt.date | None:
    for line in header:
        match = LAST_UPDATED_RE.search(line.text)
        if not match:
            continue
        value = match.group(1)
        for fmt in ("%B %d, %Y", "%b %d, %Y", "%Y-%m-%d", "%d %B %Y"):
            try:
                return dt.datetime.strptime(value, fmt).date()
            except ValueError:
                continue
        report.warn(display, f"line {line.number}", f"cannot read the date {value!r}; last_updated is unknown")
        return None
    report.warn(display, "", "no 'Last updated:' line; last_updated is unknown")
    return None


# ---------------------------------------------------------------- body


def _body(lines: list[_Line], display: str, report: ReportBuilder) -> tuple[list[ImportedSection], dict[int, int]]:
    """Sections of the parts, and every cited number with the line it is first cited on."""
    sections: list[ImportedSection] = []
    reader = _TextReader(display, report)
    runs = _runs(lines)
    for index, run in enumerate(runs):
        first = run[0]
        if first.text.lower() in PART_LABELS:
            sections.append(ImportedSection(heading=PART_LABELS[first.text.lower()], level=2))
            run = run[1:]
            if not run:
                continue
            first = run[0]
        if not sections:  # cannot happen: the body starts at a part label
            sections.append(ImportedSection(heading="From the Guidelines", level=2))
        if len(run) == 1 and _looks_like_heading(first.text) and index + 1 < len(runs):
            sections.append(ImportedSection(heading=first.text, level=3))
            continue
        sections[-1].blocks.extend(reader.blocks(run))
    return sections, reader.cited


def _runs(lines: list[_Line]) -> list[list[_Line]]:
    """Groups of consecutive non-blank lines, furniture removed."""
    runs: list[list[_Line]] = []
    current: list[_Line] = []
    for line in lines:
        if not line.text:
            if current:
                runs.append(current)
                current = []
            continue
        if _is_furniture(line.text):
            continue
        current.append(line)
    if current:
        runs.append(current)
    return runs


def _looks_like_heading(text: str) -> bool:
    if BULLET_RE.match(text) or len(text.split()) > MAX_HEADING_WORDS or len(text) > 100:
        return False
    if re.search(r"[.!?:;,]$", text):
        return False
    _, numbers, maybe = _split_citation(text)
    return not numbers and not maybe


class _TextReader:
    """Turns runs of page lines into paragraphs and bullet lists, collecting cited numbers."""

    def __init__(self, display: str, report: ReportBuilder) -> None:
        self.display = display
        self.report = report
        self.cited: dict[int, int] = {}

    def blocks(self, run: list[_Line]) -> list[Paragraph | BulletList]:
        # Group lines into paragraphs and bullet items first: whether a doubtful trailing
        # number is a citation depends on how the rest of the run cites.
        pieces: list[tuple[bool, int, str]] = []  # (is bullet, line number, text)
        for line in run:
            bullet = BULLET_RE.match(line.text)
            if bullet:
                pieces.append((True, line.number, bullet.group(1)))
            elif pieces and not pieces[-1][0]:
                is_bullet, number, text = pieces[-1]
                pieces[-1] = (is_bullet, number, f"{text} {line.text}")
            else:
                pieces.append((False, line.number, line.text))
        split = [
            [(sentence, _split_citation(sentence)) for sentence in SENTENCE_SPLIT_RE.split(" ".join(text.split()))]
            for _, _, text in pieces
        ]
        run_cites = any(numbers for piece in split for _, (_, numbers, _) in piece)

        blocks: list[Paragraph | BulletList] = []
        for (is_bullet, number, _), sentences in zip(pieces, split):
            paragraph = self._paragraph(sentences, number, run_cites)
            if not is_bullet:
                blocks.append(paragraph)
            elif blocks and isinstance(blocks[-1], BulletList):
                blocks[-1].items.append(paragraph)
            else:
                blocks.append(BulletList([paragraph]))
        return blocks

    def _paragraph(self, split, line_number: int, run_cites: bool) -> Paragraph:
        # "... at an early stage 1." may be a stage or a citation: it is read as a citation
        # when the text around it cites the same way; either reading is flagged for review.
        sentences: list[tuple[str, tuple[int, ...]]] = []
        for original, (stripped, numbers, maybe) in split:
            if maybe is not None:
                ending = original[-40:]
                if run_cites:
                    stripped, numbers = maybe
                    message = f"read the number ending {ending!r} as citation {list(numbers)}; check it is not a quantity"
                else:
                    message = f"read the number ending {ending!r} as text, not a citation; check"
                self.report.warn(self.display, f"line {line_number}", message)
            for number in numbers:
                self.cited.setdefault(number, line_number)
            sentences.append((stripped, numbers))
        return Paragraph.from_sentences(sentences)


def _split_citation(sentence: str) -> tuple[str, tuple[int, ...], tuple[str, tuple[int, ...]] | None]:
    """A sentence without its citation, the cited numbers, and a doubtful reading if any.

    "... precursors 1." -> ("... precursors.", (1,), None);
    "..., as stated in 2 and 3" -> ("...", (2, 3), None);
    "... at an early stage 1." -> (unchanged, (), ("... at an early stage.", (1,))).
    """
    match = re.search(r"[.!?]+$", sentence)
    core, punct = (sentence[: match.start()], match.group()) if match else (sentence, "")
    prose = PROSE_CITE_RE.search(core)
    if prose:
        return core[: prose.start()].rstrip() + punct, _numbers(prose.group("nums")), None
    trailing = TRAILING_CITE_RE.search(core)
    if trailing:
        word = trailing.group("word")
        reading = (core[: trailing.start("nums")].rstrip() + punct, _numbers(trailing.group("nums")))
        if word.isdigit():
            # "type 2 1.": two bare numbers; the last is the citation.
            return reading[0], reading[1], None
        if word[-1] == "%":  # "fell by 50% 2": probably a citation, but check
            return sentence, (), reading
        if word[-1].isalpha() or word[-1] in ")]\"'\u201d\u2019":
            if word.strip("\"'()[]\u201c\u201d\u2018\u2019").lower() in NUMBER_WORDS:
                return sentence, (), reading
            return reading[0], reading[1], None
    return sentence, (), None


def _numbers(numlist: str) -> tuple[int, ...]:
    numbers: list[int] = []
    for part in re.split(r"\s*,\s*(?:and\s+)?|\s+and\s+", numlist.strip()):
        bounds = re.split(r"\s*[-\u2013]\s*", part)
        if len(bounds) == 2 and int(bounds[0]) <= int(bounds[1]) and int(bounds[1]) - int(bounds[0]) < 50:
            values = range(int(bounds[0]), int(bounds[1]) + 1)
        else:
            values = [int(b) for b in bounds]
        for value in values:
            if value >= 1 and value not in numbers:
                numbers.append(value)
    return tuple(sorted(numbers))


# ---------------------------------------------------------------- references


def _references(lines: list[_Line], display: str, report: ReportBuilder) -> list[Reference]:
    """Entries in listed order, numbered from 1: a title line, then a "source, year" line."""
    references: list[Reference] = []
    kind: str | None = None
    title: _Line | None = None

    def add(source_line: _Line | None) -> None:
        nonlocal title
        assert title is not None
        source, year = "", None
        if source_line is not None:
            match = SOURCE_LINE_RE.match(source_line.text)
            source, year = (match.group("source").strip(), int(match.group("year"))) if match else (source_line.text, None)
        if not source:
            report.warn(display, f"line {title.number}", f"reference {title.text!r} has no source line")
            source = "unknown"
        if kind is None:
            report.warn(display, f"line {title.number}", "reference listed before any Guideline/Research label; taken as research")
        references.append(
            Reference(id=len(references) + 1, kind=kind or "research", title=title.text, source=source, year=year)
        )
        title = None

    for line in lines:
        if not line.text or _is_furniture(line.text):
            continue
        label = KIND_LABELS.get(line.text.lower())
        if label:
            if title is not None:
                add(None)
            kind = label
        elif title is None:
            title = line
        else:
            add(line)
    if title is not None:
        add(None)
    return references
