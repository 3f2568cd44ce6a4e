"""PubMed/MEDLINE XML (PubmedArticleSet) -> one article per PubmedArticle with an abstract.

The article is the abstract: "## Abstract", and for a structured abstract one "###"
section per AbstractText, headed by its Label. The record itself (journal, year,
authors, PMID, DOI) is reference 1, kind research, cited once in each section.

Each <PubmedArticle> is parsed on its own, so one malformed record is reported with
its line and the records around it still import. Records without an abstract are
counted, warned about, and not written.

last_updated is the publication date when the record gives a whole one (electronic
ArticleDate, a PubDate with a day, or else the date the record entered PubMed);
otherwise "unknown". The year of the reference comes from PubDate (Year, or the
first year in MedlineDate).

Retractions, expressions of concern and errata become `notices` on reference 1 (the
record), from PubMed's own markings: the publication types "Retracted Publication"
(MeSH D016441) and "Retraction of Publication" (D016440, the notice itself), and
<CommentsCorrections RefType="..."> links (RetractionIn, RetractedandRepublishedIn,
ExpressionOfConcernIn, ErratumIn, RetractionOf), each with its <RefSource>, <PMID>
and <Note>. The body stays the abstract as published; showing the warning is the
job of whatever shows the text. A retracted record, a record under an expression of
concern and a retraction notice are also listed as warnings in the import report.
"""

from __future__ import annotations

import datetime as dt
import gzip
import re
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from pathlib import Path

from indexer.articles import NOTICE_TYPES, PMID_RE
from indexer.importers.corpus_writer import ImportedArticle, ImportedSection, Paragraph, QuotedStr, Reference, clean_text, slugify
from indexer.importers.report import ReportBuilder
from indexer.vocabulary import Notice, NoticeType

RECORD_START_RE = re.compile(rb"<(PubmedArticle|PubmedBookArticle|DeleteCitation)[\s>]")
MONTHS = {m: i for i, m in enumerate(["jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec"], start=1)}

# PubMed's names (MEDLINE/PubMed DTD, MeSH publication types) and the notice each one means.
RETRACTED_TYPES = {"D016441", "retracted publication"}  # this publication was retracted
RETRACTION_NOTICE_TYPES = {"D016440", "retraction of publication"}  # this publication retracts another
NOTICE_REF_TYPES = {  # <CommentsCorrections RefType=...>: what the linked PMID is to this record
    "RetractionIn": "retracted",
    "RetractedandRepublishedIn": "retracted",
    "ExpressionOfConcernIn": "expression_of_concern",
    "ErratumIn": "erratum",
    "RetractionOf": "retraction_notice",
}
NOTICE_WORDS = {
    "retracted": "is marked retracted",
    "expression_of_concern": "is the subject of an expression of concern",
    "retraction_notice": "is itself a retraction notice",
}

SKIP_NO_ABSTRACT = "record: no abstract"
SKIP_BAD_RECORD = "record: not well-formed XML"
SKIP_NO_PMID = "record: no PMID"
SKIP_NO_TITLE = "record: no title"
SKIP_BOOK = "record: book article (not supported)"
SKIP_DELETE = "record: deletion notice"
SKIP_NO_RECORDS = "file: no PubmedArticle records"
SKIP_UNREADABLE = "file: cannot be read"


def read(source: Path, report: ReportBuilder) -> Iterator[ImportedArticle]:
    """Articles from one PubMed XML file (.xml or .xml.gz) or every such file in a folder."""
    if source.is_file():
        paths = [source]
    else:
        paths = sorted(
            (p for p in source.rglob("*") if p.is_file() and (p.name.endswith(".xml") or p.name.endswith(".xml.gz"))),
            key=lambda p: p.relative_to(source).as_posix(),
        )
    for path in paths:
        yield from _read_file(path, report)


def _read_file(path: Path, report: ReportBuilder) -> Iterator[ImportedArticle]:
    display = path.name
    try:
        data = gzip.decompress(path.read_bytes()) if path.name.endswith(".gz") else path.read_bytes()
    except (OSError, EOFError) as exc:
        report.problem(display, "", f"cannot be read: {exc}")
        report.skip(SKIP_UNREADABLE)
        return
    starts = [m.start() for m in RECORD_START_RE.finditer(data)]
    if not starts:
        report.problem(display, "", "no <PubmedArticle> records found")
        report.skip(SKIP_NO_RECORDS)
        return
    line = 1 + data.count(b"\n", 0, starts[0])
    for index, start in enumerate(starts):
        end = starts[index + 1] if index + 1 < len(starts) else len(data)
        chunk = data[start:end]
        record_line = line
        line += chunk.count(b"\n")
        report.tick("PubMed records", every=10000)
        where = f"record {index + 1}, line {record_line}"
        tag = RECORD_START_RE.match(chunk).group(1).decode()  # type: ignore[union-attr]
        close = chunk.rfind(f"</{tag}>".encode())
        if close < 0:
            report.problem(display, where, f"<{tag}> is never closed (truncated file?)")
            report.skip(SKIP_BAD_RECORD)
            continue
        chunk = chunk[: close + len(tag) + 3]
        try:
            element = ET.fromstring(chunk)
        except ET.ParseError as exc:
            bad_line, column = exc.position
            if bad_line == 1:  # the record's first line starts part-way along the file's line
                column += start - (data.rfind(b"\n", 0, start) + 1)
            report.problem(
                display,
                f"record {index + 1}, line {record_line + bad_line - 1}, column {column + 1}",
                f"not well-formed XML ({str(exc).split(':')[0]}); record skipped",
            )
            report.skip(SKIP_BAD_RECORD)
            continue
        if tag == "PubmedBookArticle":
            report.skip(SKIP_BOOK)
            continue
        if tag == "DeleteCitation":
            report.skip(SKIP_DELETE)
            continue
        article = _article(element, display, where, report)
        if article is not None:
            yield article


def _text(element: ET.Element | None) -> str:
    return clean_text("".join(element.itertext())) if element is not None else ""


def _article(record: ET.Element, display: str, where: str, report: ReportBuilder) -> ImportedArticle | None:
    citation = record.find("MedlineCitation")
    pmid = (citation.findtext("PMID") or "").strip() if citation is not None else ""
    if not pmid:
        report.problem(display, where, "record has no MedlineCitation/PMID")
        report.skip(SKIP_NO_PMID)
        return None
    where = f"{where} (PMID {pmid})"
    art = citation.find("Article")
    title = _text(art.find("ArticleTitle")) if art is not None else ""
    if not title and art is not None:
        title = _text(art.find("VernacularTitle"))
    if not title:
        report.problem(display, where, "record has no ArticleTitle")
        report.skip(SKIP_NO_TITLE)
        return None

    sections = _abstract_sections(art.find("Abstract"))
    if not sections:
        report.warn(display, where, "record has no abstract; not written")
        report.skip(SKIP_NO_ABSTRACT)
        return None

    journal = _text(art.find("Journal/Title")) or _text(art.find("Journal/ISOAbbreviation")) or _text(citation.find("MedlineJournalInfo/MedlineTA"))
    if not journal:
        report.warn(display, where, "record names no journal")
        journal = "unknown journal"
    pub_date = art.find("Journal/JournalIssue/PubDate")
    year = _year(pub_date)
    authors = [a for a in (_author(el) for el in art.findall("AuthorList/Author")) if a]
    doi = next((_text(e) for e in art.findall("ELocationID") if e.get("EIdType") == "doi" and _text(e)), "")
    if not doi:
        doi = next((_text(e) for e in record.findall("PubmedData/ArticleIdList/ArticleId") if e.get("IdType") == "doi" and _text(e)), "")

    metadata: dict[str, object] = {
        "source_format": "pubmed",
        "source_file": display,
        "original_id": QuotedStr(pmid),
        "journal": journal,
    }
    if pub_date is not None and _text(pub_date):
        metadata["publication_date"] = " ".join(_text(child) for child in pub_date if _text(child))
    revised = _date(citation.find("DateRevised"))
    if revised:
        metadata["date_revised"] = revised
    for key, path in (
        ("publication_types", "PublicationTypeList/PublicationType"),
        ("languages", "Language"),
    ):
        values = [_text(e) for e in art.findall(path) if _text(e)]
        if values:
            metadata[key] = values
    mesh = [_text(e) for e in citation.findall("MeshHeadingList/MeshHeading/DescriptorName") if _text(e)]
    if mesh:
        metadata["mesh_terms"] = mesh
    keywords = [_text(e) for e in citation.findall("KeywordList/Keyword") if _text(e)]
    if keywords:
        metadata["keywords"] = keywords
    copyright_note = _text(art.find("Abstract/CopyrightInformation"))
    if copyright_note:
        metadata["copyright"] = copyright_note

    notices = _notices(citation, art, display, where, report)
    reference = Reference(
        id=1,
        kind="research",
        title=title,
        source=journal,
        year=year,
        pmid=pmid,
        doi=doi or None,
        authors=tuple(authors),
        notices=notices,
    )
    return ImportedArticle(
        id=f"pubmed-{pmid}" if pmid.isdigit() else f"pubmed-{slugify(pmid) or 'record'}",
        title=title,
        last_updated=_last_updated(record, art),
        audience="clinician",
        sections=sections,
        references=[reference],
        metadata=metadata,
        origin_file=display,
        origin_position=where,
    )


def _notices(citation: ET.Element, art: ET.Element | None, display: str, where: str, report: ReportBuilder) -> tuple[Notice, ...]:
    """The record's retraction, expression-of-concern and erratum notices, most serious first."""
    found: list[Notice] = []
    for link in citation.findall("CommentsCorrectionsList/CommentsCorrections"):
        ref_type = (link.get("RefType") or "").strip()
        notice_type = NOTICE_REF_TYPES.get(ref_type)
        if notice_type is None:
            continue
        pmid = _text(link.find("PMID"))
        if pmid and not PMID_RE.fullmatch(pmid):
            report.warn(display, where, f"{ref_type} names PMID {pmid!r}, which is not a PubMed id; the notice is kept without it")
            pmid = ""
        notes = [_text(link.find("Note"))]
        if ref_type == "RetractedandRepublishedIn":
            notes.insert(0, "retracted and republished")
        note = "; ".join(n for n in notes if n)
        notice = Notice(type=NoticeType(notice_type), pmid=pmid or None, citation=_text(link.find("RefSource")) or None, note=note or None)
        if notice not in found:
            found.append(notice)
    publication_types: set[str] = set()
    for element in art.findall("PublicationTypeList/PublicationType") if art is not None else ():
        publication_types.update({_text(element).lower(), (element.get("UI") or "").strip()})
    # A publication type without its link still says what the record is.
    for names, notice_type in ((RETRACTED_TYPES, "retracted"), (RETRACTION_NOTICE_TYPES, "retraction_notice")):
        if publication_types & names and not any(n.type == notice_type for n in found):
            found.append(Notice(type=NoticeType(notice_type)))
    found.sort(key=lambda n: NOTICE_TYPES.index(n.type))
    for notice_type, words in NOTICE_WORDS.items():
        linked = [f"PMID {n.pmid}" if n.pmid else n.citation or "" for n in found if n.type == notice_type]
        if linked:
            shown = ", ".join(x for x in linked if x)
            report.warn(display, where, f"record {words}{f' ({shown})' if shown else ''}; imported with the notice on reference 1")
    return tuple(found)


def _abstract_sections(abstract: ET.Element | None) -> list[ImportedSection]:
    """"## Abstract", then one "###" section per labelled AbstractText; each cites reference 1 once."""
    if abstract is None:
        return []
    top = ImportedSection(heading="Abstract", level=2)
    sections = [top]
    for element in abstract.findall("AbstractText"):
        text = _text(element)
        if not text:
            continue
        label = clean_text(element.get("Label") or "")
        if label:
            sections.append(ImportedSection(heading=label, level=3, blocks=[Paragraph(text)]))
        elif len(sections) == 1:
            top.blocks.append(Paragraph(text))
        else:
            sections[-1].blocks.append(Paragraph(text))
    if not any(s.blocks for s in sections):
        return []
    for section in sections:
        if section.blocks:
            first = section.blocks[0]
            assert isinstance(first, Paragraph)
            first.cites = (1,)
    return sections


def _author(element: ET.Element) -> str:
    collective = _text(element.find("CollectiveName"))
    if collective:
        return collective
    last = _text(element.find("LastName"))
    initials = _text(element.find("Initials")) or _text(element.find("ForeName"))
    return f"{last} {initials}".strip() if last else initials


def _year(pub_date: ET.Element | None) -> int | None:
    if pub_date is None:
        return None
    text = (pub_date.findtext("Year") or "").strip() or (pub_date.findtext("MedlineDate") or "")
    match = re.search(r"\b(1[89]\d\d|20\d\d|2100)\b", text)
    return int(match.group(1)) if match else None


def _date(element: ET.Element | None) -> dt.date | None:
    """A whole date from <Year>, <Month> (number or name) and <Day>, or None."""
    if element is None:
        return None
    year, month, day = (element.findtext(k) or "" for k in ("Year", "Month", "Day"))
    month = month.strip()
    month_number = int(month) if month.isdigit() else MONTHS.get(month[:3].lower())
    try:
        return dt.date(int(year), month_number, int(day)) if month_number else None
    except (TypeError, ValueError):
        return None


def _last_updated(record: ET.Element, art: ET.Element) -> dt.date | None:
    for element in art.findall("ArticleDate"):
        found = _date(element)
        if found:
            return found
    found = _date(art.find("Journal/JournalIssue/PubDate"))
    if found:
        return found
    for element in record.findall("PubmedData/History/PubMedPubDate"):
        if element.get("PubStatus") == "pubmed":
            found = _date(element)
            if found:
                return found
    return None
