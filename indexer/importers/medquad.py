"""MedQuAD XML -> one article per <Document>, one "##" section per answered question.

MedQuAD (Ben Abacha & Demner-Fushman, 2019; CC BY 4.0) ships one XML file per
document in twelve subset folders. What this reader copes with:

- Document ids repeat across subsets (2,593 of them) and even inside CancerGov
  (0000013_2_1.xml .. 0000013_2_6.xml all say id="0000013_2"), so the article id
  is built from the source name and the file name: medquad-cancergov-0000013-2-1.
  The Document id is kept in metadata.original_id.
- A few files use another vocabulary: <doc docid=.. corpus=..> with <doctitle-focus>,
  <umls>, <qaPairs>, <pair>, <question>, <answer> (four NINDS files) and
  <DiseaseFile fid=..> with <UMLS> directly under the root (one CDC file). Element
  and attribute names are matched case-insensitively through the aliases below.
- Subsets 10-12 had their answers removed for copyright (an XML comment says so);
  such documents are counted as skipped, never written.
- Answers are flattened HTML: paragraphs are separated by newlines or long runs of
  spaces, and list items are "- " segments. They become paragraphs and bullet lists.
"""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from pathlib import Path

from indexer.importers.corpus_writer import BulletList, ImportedArticle, ImportedSection, Paragraph, QuotedStr, Reference, slugify
from indexer.importers.report import ReportBuilder

LICENSE = "CC BY 4.0 (MedQuAD, Ben Abacha and Demner-Fushman, BMC Bioinformatics 2019)"

ROOT_TAGS = {"document", "doc", "diseasefile"}
ID_ATTRS = ("id", "docid", "fid")
SOURCE_ATTRS = ("source", "corpus")
FOCUS_TAGS = {"focus", "doctitle-focus"}
PAIR_TAGS = {"qapair", "pair"}

# Readable publisher names for the source codes MedQuAD uses; others are shown as given.
SOURCE_NAMES = {
    "CancerGov": "National Cancer Institute (cancer.gov)",
    "GARD": "Genetic and Rare Diseases Information Center (GARD)",
    "GHR": "Genetics Home Reference, U.S. National Library of Medicine",
    "MPlusHealthTopics": "MedlinePlus Health Topics, U.S. National Library of Medicine",
    "NIDDK": "National Institute of Diabetes and Digestive and Kidney Diseases (NIDDK)",
    "NINDS": "National Institute of Neurological Disorders and Stroke (NINDS)",
    "NIHSeniorHealth": "NIHSeniorHealth, National Institutes of Health",
    "NHLBI": "National Heart, Lung, and Blood Institute (NHLBI)",
    "CDC": "Centers for Disease Control and Prevention (CDC)",
    "ADAM": "A.D.A.M. Medical Encyclopedia (MedlinePlus)",
    "MPlusDrugs": "MedlinePlus Drug Information",
    "MPlusHerbsSupplements": "MedlinePlus Herbs and Supplements",
}

SKIP_COPYRIGHT_DOC = "document: answers removed for copyright"
SKIP_COPYRIGHT_PAIR = "question-answer pair: answer removed for copyright"
SKIP_NO_PAIRS = "document: no question-answer pairs"
SKIP_NO_ANSWER_DOC = "document: no answered question"
SKIP_EMPTY_PAIR = "question-answer pair: empty answer"
SKIP_BAD_XML = "file: not well-formed XML"
SKIP_NOT_MEDQUAD = "file: not a MedQuAD document"
SKIP_UNREADABLE = "file: cannot be read"


def read(source: Path, report: ReportBuilder) -> Iterator[ImportedArticle]:
    """Articles from a MedQuAD folder (all subsets), one subset folder, or one XML file."""
    for path in _xml_files(source):
        report.tick("MedQuAD files")
        article = _read_file(path, report)
        if article is not None:
            yield article


def _xml_files(source: Path) -> list[Path]:
    if source.is_file():
        return [source]
    return sorted((p for p in source.rglob("*.xml") if p.is_file()), key=lambda p: p.relative_to(source).as_posix())


def _local(tag: object) -> str:
    return tag.lower() if isinstance(tag, str) else ""


def _attr(element: ET.Element, names: tuple[str, ...]) -> str:
    lowered = {k.lower(): v for k, v in element.attrib.items()}
    for name in names:
        value = (lowered.get(name) or "").strip()
        if value:
            return value
    return ""


def _texts(root: ET.Element, tag: str) -> list[str]:
    """Non-empty texts of every element named `tag` (any case), in document order, without repeats."""
    out: list[str] = []
    for element in root.iter():
        if _local(element.tag) == tag:
            text = " ".join("".join(element.itertext()).split())
            if text and text not in out:
                out.append(text)
    return out


def _read_file(path: Path, report: ReportBuilder) -> ImportedArticle | None:
    display = f"{path.parent.name}/{path.name}"
    try:
        parser = ET.XMLParser(target=ET.TreeBuilder(insert_comments=True))
        root = ET.parse(path, parser=parser).getroot()
    except ET.ParseError as exc:
        line, column = exc.position
        report.problem(display, f"line {line}, column {column + 1}", f"not well-formed XML ({str(exc).split(':')[0]})")
        report.skip(SKIP_BAD_XML)
        return None
    except OSError as exc:
        report.problem(display, "", f"cannot be read: {exc.strerror or exc}")
        report.skip(SKIP_UNREADABLE)
        return None

    if _local(root.tag) not in ROOT_TAGS:
        report.problem(display, "line 1", f"root element <{root.tag}> is not a MedQuAD <Document>")
        report.skip(SKIP_NOT_MEDQUAD)
        return None

    original_id = _attr(root, ID_ATTRS) or path.stem
    source_code = _attr(root, SOURCE_ATTRS)
    url = _attr(root, ("url",))
    copyright_removed = any(
        element.tag is ET.Comment and "copyright" in (element.text or "").lower() for element in root.iter()
    )

    pairs = [element for element in root.iter() if _local(element.tag) in PAIR_TAGS]
    focus_list = _texts(root, "focus") or _texts(root, "doctitle-focus")
    focus = focus_list[0] if focus_list else ""

    sections: list[ImportedSection] = []
    question_types: list[str] = []
    question_ids: list[str] = []
    empty_positions: list[str] = []
    for index, pair in enumerate(pairs, start=1):
        question_el = next((c for c in pair if _local(c.tag) == "question"), None)
        answer_el = next((c for c in pair if _local(c.tag) == "answer"), None)
        pid = _attr(pair, ("pid",)) or str(index)
        answer = "".join(answer_el.itertext()) if answer_el is not None else ""
        if not answer.strip():
            empty_positions.append(pid)
            continue
        question = " ".join("".join(question_el.itertext()).split()) if question_el is not None else ""
        qtype = _attr(question_el, ("qtype",)) if question_el is not None else ""
        heading = tidy_question(question) or (qtype.capitalize() if qtype else f"Question {pid}")
        if not question:
            report.warn(display, f"QAPair pid {pid}", "question text is missing; heading made from its type")
        blocks = answer_blocks(answer)
        if not blocks:
            empty_positions.append(pid)
            continue
        _cite_first(blocks, 1)
        sections.append(ImportedSection(heading=heading, level=2, blocks=blocks))
        question_types.append(qtype)
        question_ids.append(_attr(question_el, ("qid",)) if question_el is not None else "")

    if not sections:
        if not pairs:
            report.skip(SKIP_NO_PAIRS)
            report.warn(display, "", "document has no question-answer pairs; not written")
        elif copyright_removed:
            report.skip(SKIP_COPYRIGHT_DOC)
            report.skip(SKIP_COPYRIGHT_PAIR, len(empty_positions))
        else:
            report.skip(SKIP_NO_ANSWER_DOC)
            report.skip(SKIP_EMPTY_PAIR, len(empty_positions))
            report.warn(display, "", f"none of its {len(pairs)} question(s) has an answer; not written")
        return None
    for pid in empty_positions:
        reason = SKIP_COPYRIGHT_PAIR if copyright_removed else SKIP_EMPTY_PAIR
        report.skip(reason)
        report.warn(display, f"QAPair pid {pid}", "empty answer; question skipped")

    title = focus
    if not title:
        title = sections[0].heading
        report.warn(display, "", "no <Focus>; title taken from the first question")
    if not url:
        report.warn(display, "line 1", "document has no url attribute; reference 1 has no link")

    source_slug = slugify(source_code) or slugify(re.sub(r"^\d+_|_QA(_XML)?$", "", path.parent.name)) or "unknown"
    metadata: dict[str, object] = {
        "source_format": "medquad",
        "source_file": display,
        "original_id": QuotedStr(original_id),
        "source": source_code,
    }
    if focus:
        metadata["focus"] = focus
    category = _texts(root, "category")
    if category:
        metadata["category"] = category[0]
    for key, tag in (("cuis", "cui"), ("semantic_types", "semantictype")):
        values = _texts(root, tag)
        if values:
            metadata[key] = values
    group = _texts(root, "semanticgroup")
    if group:
        metadata["semantic_group"] = group[0] if len(group) == 1 else group
    synonyms = _texts(root, "synonym")
    if synonyms:
        metadata["synonyms"] = synonyms
    metadata["question_types"] = question_types
    metadata["question_ids"] = question_ids
    metadata["license"] = LICENSE

    reference = Reference(
        id=1,
        kind="education",
        title=title,
        source=SOURCE_NAMES.get(source_code, source_code or "MedQuAD"),
        url=url or None,
    )
    return ImportedArticle(
        id=f"medquad-{source_slug}-{slugify(path.stem, max_length=60) or slugify(original_id)}",
        title=title,
        last_updated=None,
        audience="patient",
        sections=sections,
        references=[reference],
        metadata=metadata,
        origin_file=display,
        origin_position="line 1",
    )


def tidy_question(question: str) -> str:
    """"what is holmes-adie syndrome ?" -> "What is holmes-adie syndrome?"; also "Leukemia? ?" -> "Leukemia?"."""
    question = " ".join(question.split())
    question = re.sub(r"\s*\?(?:\s*\?)*\s*$", "?", question)
    return question[:1].upper() + question[1:]


# A list item starts with "-" and a space; items are run together with runs of spaces.
_SEGMENT_SPLIT_RE = re.compile(r"\s{3,}|\s{2,}(?=-\s)")
_BULLET_RE = re.compile(r"^-\s+(\S.*)$")
_ENDS_CLAUSE_RE = re.compile(r"[.!?:;)\]\"'\u201d\u2019]$")


def answer_blocks(answer: str) -> list[Paragraph | BulletList]:
    """An answer's paragraphs and bullet lists, in order.

    A newline or a run of three or more spaces ends a paragraph or a list item; a segment
    beginning "- " is a list item. A split that lands inside a sentence (the piece before it
    does not end a clause and the next starts in lower case) is joined back.
    """
    blocks: list[Paragraph | BulletList] = []
    last_kind = ""  # "text" or "item": what the last segment became
    for line in answer.split("\n"):
        if not line.strip():
            last_kind = ""
            continue
        for raw in _SEGMENT_SPLIT_RE.split(line.strip()):
            segment = " ".join(raw.split())
            if not segment or segment == "-":
                continue
            bullet = _BULLET_RE.match(segment)
            if bullet:
                item = Paragraph(bullet.group(1))
                if blocks and isinstance(blocks[-1], BulletList):
                    blocks[-1].items.append(item)
                else:
                    blocks.append(BulletList([item]))
                last_kind = "item"
                continue
            previous = _last_paragraph(blocks)
            if (
                previous is not None
                and last_kind
                and segment[0].islower()
                and not _ENDS_CLAUSE_RE.search(previous.text)
            ):
                previous.text = f"{previous.text} {segment}"
                continue
            blocks.append(Paragraph(segment))
            last_kind = "text"
    return blocks


def _last_paragraph(blocks: list[Paragraph | BulletList]) -> Paragraph | None:
    if not blocks:
        return None
    last = blocks[-1]
    return last.items[-1] if isinstance(last, BulletList) else last


def _cite_first(blocks: list[Paragraph | BulletList], number: int) -> None:
    """Cite the document-level reference once per section: at the end of its first sentence-like
    paragraph or list item (not a label such as "Key Points"), else of its first block."""
    flat = [p for block in blocks for p in (block.items if isinstance(block, BulletList) else [block])]
    target = next((p for p in flat if len(p.text.split()) >= 4 and re.search(r"[.!?:][\"')]*$", p.text)), flat[0])
    target.cites = tuple(sorted(set(target.cites) | {number}))
