"""The domain's vocabulary, defined once at the bottom of the import graph.

Review statuses, evidence kinds and audiences (with the labels people see), the one
`Reference` an article cites, and the one `Problem` that locates bad input by file and
line. The parser's checks, the importers, the API schemas and the CLI's choices are all
derived from these; nothing here imports anything else from medkb.
"""

from __future__ import annotations

import enum
import re
from dataclasses import dataclass
from typing import Any


class ReviewStatus(enum.StrEnum):
    """Where an article stands in clinical review (the seed page's badge)."""

    SUBMITTED = "submitted"
    UNDER_REVIEW = "under_review"
    APPROVED = "approved"

    @property
    def label(self) -> str:
        """The badge text: "Submitted", "Under review", "Approved"."""
        return _STATUS_LABELS[self]


_STATUS_LABELS = {ReviewStatus.SUBMITTED: "Submitted", ReviewStatus.UNDER_REVIEW: "Under review", ReviewStatus.APPROVED: "Approved"}

# What an import (`medkb import --status`) may say of the articles it writes: never approved,
# since only a clinician's review approves and an import is a developer's or a script's act.
IMPORT_STATUSES = (ReviewStatus.SUBMITTED.value, ReviewStatus.UNDER_REVIEW.value)


class EvidenceKind(enum.StrEnum):
    """What kind of source a reference is."""

    GUIDELINE = "guideline"
    RESEARCH = "research"
    EDUCATION = "education"


class Audience(enum.StrEnum):
    """Who an article is written for; BOTH matches either filter."""

    CLINICIAN = "clinician"
    PATIENT = "patient"
    BOTH = "both"


class NoticeType(enum.StrEnum):
    """What a published notice says about the reference it is listed under (PubMed's
    CommentsCorrections RefTypes and publication types, NLM DTD)."""

    RETRACTED = "retracted"  # the publication has been retracted
    EXPRESSION_OF_CONCERN = "expression_of_concern"  # an editor or publisher has raised a concern about it
    ERRATUM = "erratum"  # a correction to it has been published
    RETRACTION_NOTICE = "retraction_notice"  # the publication is itself a notice retracting another one


def values(enum_type: type[enum.StrEnum]) -> tuple[str, ...]:
    """The spelled values of an enumeration, in declaration order: for choices and messages."""
    return tuple(member.value for member in enum_type)


# The seed page's two parts and the evidence kind their text carries when a passage
# cites nothing of its own (lower-cased part heading -> kind).
PART_KINDS: dict[str, EvidenceKind] = {
    "from the guidelines": EvidenceKind.GUIDELINE,
    "from the research": EvidenceKind.RESEARCH,
}

# Shown beside anything not approved by a clinician's review.
CAUTION = "Pending clinical review: this content has not been approved by a clinician. Verify it against the cited sources before use."

IDENTIFIER_FIELDS = ("pmid", "doi", "url")


@dataclass(frozen=True)
class Notice:
    """A published notice about a reference. `pmid` is the notice's own PubMed id (for a
    retraction_notice, the retracted publication's), digits only; `citation` is where the
    notice was published; `note` is free text from the source."""

    type: NoticeType
    pmid: str | None = None
    citation: str | None = None
    note: str | None = None

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"type": str(self.type)}
        for key in ("pmid", "citation", "note"):
            value = getattr(self, key)
            if value is not None:
                out[key] = value
        return out

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "Notice":
        return cls(NoticeType(data["type"]), data.get("pmid"), data.get("citation"), data.get("note"))


@dataclass(frozen=True)
class Reference:
    """One entry of an article's numbered reference list.

    `id` is the number cited in the text ([2] cites id 2); identifiers are optional and
    never invented. `to_dict` gives the front-matter form, omitting empty fields.
    """

    id: int
    kind: EvidenceKind
    title: str
    source: str
    year: int | None = None
    pmid: str | None = None
    doi: str | None = None
    url: str | None = None
    authors: tuple[str, ...] = ()
    notices: tuple[Notice, ...] = ()

    @property
    def retracted(self) -> bool:
        """True when a notice says this publication was retracted."""
        return any(n.type == NoticeType.RETRACTED for n in self.notices)

    def identifiers(self) -> dict[str, str | None]:
        """{"pmid": ..., "doi": ..., "url": ...}, None where absent."""
        return {key: getattr(self, key) for key in IDENTIFIER_FIELDS}

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"id": self.id, "kind": str(self.kind), "title": self.title, "source": self.source}
        if self.year is not None:
            out["year"] = self.year
        for key in IDENTIFIER_FIELDS:
            value = getattr(self, key)
            if value:
                out[key] = value
        if self.authors:
            out["authors"] = list(self.authors)
        if self.notices:
            out["notices"] = [n.to_dict() for n in self.notices]
        return out

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "Reference":
        """The inverse of `to_dict` (for stored chunks and articles, already validated)."""
        return cls(
            id=int(data["id"]),
            kind=EvidenceKind(data["kind"]),
            title=data["title"],
            source=data["source"],
            year=data.get("year"),
            pmid=data.get("pmid"),
            doi=data.get("doi"),
            url=data.get("url"),
            authors=tuple(data.get("authors", ())),
            notices=tuple(Notice.from_dict(n) for n in data.get("notices", ())),
        )


_POSITION = re.compile(r"^line (\d+)(?:, column (\d+))?$")


@dataclass(frozen=True)
class Problem:
    """Something wrong with an input, located in its file.

    `line` and `column` are 1-based; `position` is the place as words ("line 3, column 5",
    "record 17", "QAPair pid 3"), the only location when there is no line; no location at
    all means the whole file.
    """

    file: str
    line: int | None
    message: str
    column: int | None = None
    position: str = ""

    @classmethod
    def at(cls, file: str, position: str, message: str) -> "Problem":
        """A problem from a human-readable position: "line 12", "line 3, column 5", "record 17" or ""."""
        m = _POSITION.match(position)
        if m:
            return cls(file, int(m.group(1)), message, int(m.group(2)) if m.group(2) else None, position=position)
        return cls(file, None, message, position=position)

    @property
    def where(self) -> str:
        """The location as text: "12", "12:5", "record 17" or ""."""
        if self.line is not None:
            return f"{self.line}:{self.column}" if self.column is not None else str(self.line)
        return self.position

    def __str__(self) -> str:
        if self.line is not None:
            return f"{self.file}:{self.where}: {self.message}"
        return f"{self.file}: {self.position}: {self.message}" if self.position else f"{self.file}: {self.message}"

    def to_dict(self) -> dict[str, Any]:
        return {"file": self.file, "line": self.line, "column": self.column, "position": self.position, "message": self.message}
