"""Inline citations: bracketed reference numbers such as [1], [1, 3] and [2-4]."""

from __future__ import annotations

import re
from dataclasses import dataclass

# A citation is a bracket holding only numbers, commas and ranges. Markdown
# links ("[text](url)") never match because their text is not all numbers.
CITATION_RE = re.compile(
    r"\[\s*(\d{1,4}(?:\s*[-\u2013]\s*\d{1,4})?(?:\s*,\s*\d{1,4}(?:\s*[-\u2013]\s*\d{1,4})?)*)\s*\]"
)
MAX_RANGE = 50


class CitationSyntaxError(ValueError):
    """A bracket that looks like a citation but cannot be read (e.g. [5-2])."""


@dataclass(frozen=True)
class CitationSpan:
    start: int
    end: int
    numbers: tuple[int, ...]


def expand(body: str) -> tuple[int, ...]:
    """Reference numbers named by the inside of a citation bracket, in order, without repeats."""
    numbers: list[int] = []
    for part in body.split(","):
        part = part.strip()
        bounds = re.split(r"\s*[-\u2013]\s*", part)
        if len(bounds) == 1:
            values = [int(bounds[0])]
        else:
            lo, hi = int(bounds[0]), int(bounds[1])
            if lo > hi:
                raise CitationSyntaxError(f"citation range [{part}] runs backwards")
            if hi - lo >= MAX_RANGE:
                raise CitationSyntaxError(f"citation range [{part}] names more than {MAX_RANGE} references")
            values = list(range(lo, hi + 1))
        for value in values:
            if value < 1:
                raise CitationSyntaxError(f"citation [{part}] names reference 0; references start at 1")
            if value not in numbers:
                numbers.append(value)
    return tuple(numbers)


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
