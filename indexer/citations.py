"""Inline citations: bracketed reference numbers such as [1], [1, 3] and [2-4].

A range may be written with a hyphen, an en dash or an em dash ([2-4], [2\u20134], [2\u20144]).
A bracket that holds only digits, commas, semicolons, dashes and spaces (or a footnote
caret, [^1]) looks like a citation: `scan_citations` reads it, or says why it cannot,
so that nothing shaped like a citation is ever left in the text unread.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

# Hyphen-minus, hyphen, non-breaking hyphen, figure dash, en dash, em dash, horizontal bar, minus sign.
DASHES = "-\u2010\u2011\u2012\u2013\u2014\u2015\u2212"
_DASH = "[" + re.escape(DASHES) + "]"
_NUMBER = r"\d{1,9}"
_RANGE = rf"{_NUMBER}(?:\s*{_DASH}\s*{_NUMBER})?"
# The inside of a citation bracket.
CITATION_BODY = rf"{_RANGE}(?:\s*,\s*{_RANGE})*"
# A citation is a bracket holding only numbers, commas and ranges. Markdown
# links ("[text](url)") never match because their text is not all numbers.
# An escaped bracket ("\\[7]", kept escaped in passage text) is never a citation.
CITATION_RE = re.compile(rf"(?<!\\)\[\s*({CITATION_BODY})\s*\]")
_CHARS = r"[\d\s,;" + re.escape(DASHES) + r"]"
# Anything that looks like a citation, readable or not.
# (The lookahead keeps matching linear: no nested choice of where the digit is.)
CITATION_LIKE_BODY = rf"\s*\^?(?={_CHARS}*\d){_CHARS}+"
CITATION_LIKE_RE = re.compile(rf"\[{CITATION_LIKE_BODY}\]")
CITATION_LIKE_BODY_RE = re.compile(CITATION_LIKE_BODY)
MAX_RANGE = 50


class CitationSyntaxError(ValueError):
    """A bracket that looks like a citation but cannot be read (e.g. [5-2])."""


@dataclass(frozen=True)
class CitationSpan:
    start: int
    end: int
    numbers: tuple[int, ...]


@dataclass(frozen=True)
class ScannedCitation:
    """A citation-shaped bracket in a text: the numbers it names, or why it cannot be read."""

    start: int
    end: int
    text: str
    numbers: tuple[int, ...] = ()
    error: str | None = None


def expand(body: str, highest: int | None = None) -> tuple[int, ...]:
    """Reference numbers named by the inside of a citation bracket, in order, without repeats.

    `highest`, when given, is the highest reference number that exists: a range that runs
    past it is an error before it is ever expanded.
    """
    numbers: list[int] = []
    for part in body.split(","):
        part = part.strip()
        bounds = re.split(rf"\s*{_DASH}\s*", part)
        if len(bounds) == 1:
            values = [int(bounds[0])]
        else:
            lo, hi = int(bounds[0]), int(bounds[1])
            if lo > hi:
                raise CitationSyntaxError(f"citation range [{part}] runs backwards")
            if highest is not None and hi > highest:
                last = f"the last reference is {highest}" if highest else "the article lists no references"
                raise CitationSyntaxError(f"citation range [{part}] runs past the references that exist: {last}")
            if hi - lo >= MAX_RANGE:
                raise CitationSyntaxError(f"citation range [{part}] names more than {MAX_RANGE} references")
            values = list(range(lo, hi + 1))
        for value in values:
            if value < 1:
                raise CitationSyntaxError(f"citation [{part}] names reference 0; references start at 1")
            if value not in numbers:
                numbers.append(value)
    return tuple(numbers)


def _short(text: str, limit: int = 40) -> str:
    """Text quoted in a message, cut so that a message never echoes unbounded input."""
    return text if len(text) <= limit else text[: limit - 5] + "…" + text[-4:]


def _unreadable(text: str) -> str:
    inside = text[1:-1].strip()
    text = _short(text)
    if inside.startswith("^"):
        return f"footnote-style {text} is not read as a citation; write [{_short(inside[1:].strip())}]"
    if ";" in inside:
        return f"cannot read {text} as a citation: separate reference numbers with commas, e.g. [1, 3]"
    if re.search(r"\d{10,}", inside):
        return f"citation {text} names a reference number too large to exist"
    return f"cannot read {text} as a citation; write [1], [1, 3] or [2-4]"


def scan_citations(text: str, highest: int | None = None) -> list[ScannedCitation]:
    """Every citation-shaped bracket in `text`, each read or with the reason it cannot be."""
    out: list[ScannedCitation] = []
    for m in CITATION_LIKE_RE.finditer(text):
        strict = CITATION_RE.fullmatch(m.group())
        if strict is None:
            out.append(ScannedCitation(m.start(), m.end(), m.group(), error=_unreadable(m.group())))
            continue
        try:
            out.append(ScannedCitation(m.start(), m.end(), m.group(), numbers=expand(strict.group(1), highest)))
        except CitationSyntaxError as exc:
            out.append(ScannedCitation(m.start(), m.end(), m.group(), error=str(exc)))
    return out


def find_citations(text: str) -> list[CitationSpan]:
    """Every citation in `text` with its character span. Raises CitationSyntaxError on a malformed one."""
    return [CitationSpan(m.start(), m.end(), expand(m.group(1))) for m in CITATION_RE.finditer(text)]


def format_citation(numbers: list[int] | tuple[int, ...]) -> str:
    """The bracket form of a set of reference numbers: [1], [1, 3], [2-4]."""
    ordered = sorted(set(numbers))
    parts: list[str] = []
    i = 0
    while i < len(ordered):
        j = i
        while j + 1 < len(ordered) and ordered[j + 1] == ordered[j] + 1:
            j += 1
        if j - i >= 2:
            parts.append(f"{ordered[i]}-{ordered[j]}")
        else:
            parts.extend(str(n) for n in ordered[i : j + 1])
        i = j + 1
    return "[" + ", ".join(parts) + "]"
