"""Lay words and the clinical terms articles use for them ("water pill" -> diuretic, "small red
cells" -> microcytosis, "tooth pulled" -> dental extraction).

The list is `data/lay_terms.tsv` (lay phrase, tab, clinical term; written for medkb from general
clinical knowledge). `LayTerms.find` returns the clinical terms of the lay phrases a query
contains, matched on whole words whatever their case, longest phrase first, so "clot in the
lung" is not also read as something shorter inside it. The query reader appends the terms the
index uses as an expansion (retrieval/query_understanding.py), as it does abbreviations.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

LAY_TERMS_FILE = Path(__file__).parent / "data" / "lay_terms.tsv"


@dataclass(frozen=True)
class LayTerms:
    """Lay phrase (lower case) -> clinical term, with one pattern matching any of the phrases."""

    terms: dict[str, str]
    pattern: re.Pattern | None

    @classmethod
    def load(cls, path: Path = LAY_TERMS_FILE) -> "LayTerms":
        """Read the list. Raises ValueError naming the file and line for a line that is not
        'phrase<TAB>term' or a phrase given twice."""
        terms: dict[str, str] = {}
        for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
            if not line.strip() or line.startswith("#"):
                continue
            parts = line.split("\t")
            if len(parts) != 2 or not parts[0].strip() or not parts[1].strip():
                raise ValueError(f"{path}:{number}: expected 'lay phrase<TAB>clinical term'")
            phrase = " ".join(parts[0].lower().split())
            if phrase in terms:
                raise ValueError(f"{path}:{number}: {phrase!r} is listed twice")
            terms[phrase] = parts[1].strip()
        if not terms:
            return cls(terms, None)
        alternatives = sorted(terms, key=len, reverse=True)
        body = "|".join(r"\s+".join(re.escape(w) for w in phrase.split()) for phrase in alternatives)
        # ASCII case folding: under Unicode folding "ı", "İ" and "ſ" match i and s, and the match
        # then names no phrase of the list. "low iron diet" is a diet, not a finding.
        return cls(terms, re.compile(rf"(?<![\w-])(?:{body})(?![\w-])(?!\s+diets?\b)", re.I | re.ASCII))

    def find(self, text: str) -> list[tuple[str, str]]:
        """(lay phrase as found, clinical term) for each lay phrase in `text`, in order, each term once."""
        if self.pattern is None:
            return []
        out: list[tuple[str, str]] = []
        for m in self.pattern.finditer(text):
            term = self.terms.get(" ".join(m.group(0).lower().split()))
            if term is not None and all(term != t for _, t in out):
                out.append((m.group(0), term))
        return out


@lru_cache(maxsize=1)
def lay_terms() -> LayTerms:
    """The shipped list, read once per process."""
    return LayTerms.load()
