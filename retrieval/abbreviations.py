"""Query expansion for clinical abbreviations and spelling variants, from a data file.

"IDA workup" becomes "IDA workup (iron deficiency anemia)": the abbreviation stays, so
passages that use it still match, and its expansion is added for those that spell it out.

The file has one sense a line: `abbreviation<TAB>expansion[<TAB>cue words]`. An abbreviation
with several senses has several lines (SBP: spontaneous bacterial peritonitis, systolic blood
pressure); the cue words are words that, next to it in a query, speak for that sense. Which
sense a query means is chosen by a `choose` function (retrieval.query_understanding uses the
cue words and what the index says about the query's other words); without one, every sense
is added.

Case: an all-capitals entry matches only in capitals ("IDA", not "ida"); an entry with
capitals and small letters matches as written, and in any case only when no other entry
differs from it by case alone (so "hb" finds Hb, but HbS and HBs, which differ by case,
each match only as written); an all-small-letters entry matches in any case.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

DEFAULT_FILE = Path(__file__).parent / "data" / "abbreviations.tsv"
_TOKEN = re.compile(r"[A-Za-z][A-Za-z0-9+-]*[A-Za-z0-9+]|[A-Za-z]")


class AbbreviationFileError(ValueError):
    pass


@dataclass(frozen=True)
class Sense:
    expansion: str
    cues: tuple[str, ...] = ()


Chooser = Callable[[str, list[Sense], str], list[Sense]]  # (abbreviation, senses, query) -> senses to use


@dataclass
class Abbreviations:
    exact: dict[str, list[Sense]]  # matched as written
    folded: dict[str, list[Sense]]  # matched in any case (keys lower-cased)

    @classmethod
    def load(cls, path: Path = DEFAULT_FILE) -> "Abbreviations":
        entries: dict[str, list[Sense]] = {}
        for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
            if not line.strip() or line.startswith("#"):
                continue
            parts = line.split("\t")
            if len(parts) not in (2, 3) or not parts[0].strip() or not parts[1].strip():
                raise AbbreviationFileError(f"{path}:{number}: expected 'abbreviation<TAB>expansion[<TAB>cue words]'")
            key, expansion = parts[0].strip(), parts[1].strip()
            cues = tuple(parts[2].lower().split()) if len(parts) == 3 else ()
            entries.setdefault(key, []).append(Sense(expansion, cues))
        exact: dict[str, list[Sense]] = {}
        folded: dict[str, list[Sense]] = {}
        by_fold: dict[str, list[str]] = {}
        for key in entries:
            by_fold.setdefault(key.lower(), []).append(key)
        for key, senses in entries.items():
            has_upper = any(c.isupper() for c in key)
            has_lower = any(c.islower() for c in key)
            if not has_upper:
                folded[key.lower()] = senses
            elif has_lower:
                exact[key] = senses
                if len(by_fold[key.lower()]) == 1:
                    folded[key.lower()] = senses
            else:
                exact[key] = senses
        return cls(exact, folded)

    def senses(self, token: str) -> list[Sense]:
        """Every sense of `token` as written, or []."""
        return self.exact.get(token) or self.folded.get(token.lower()) or []

    def is_known(self, token: str) -> bool:
        """True when `token`, in any case, is an abbreviation in the file (spelling leaves it alone)."""
        return token in self.exact or token.lower() in self.folded or any(k.lower() == token.lower() for k in self.exact)

    def expansions(self, query: str, choose: Chooser | None = None, keep: Callable[[str, str], bool] | None = None) -> list[str]:
        """Expansions for the abbreviations found in `query`, in order, without repeats; with
        `keep(abbreviation, expansion)`, only those it keeps."""
        found: list[str] = []
        for token in _TOKEN.findall(query):
            senses = self.senses(token)
            if keep is not None:
                senses = [s for s in senses if keep(token, s.expansion)]
            if not senses:
                continue
            if choose is not None and len(senses) > 1:
                senses = choose(token, senses, query) or senses
            for sense in senses:
                if sense.expansion not in found and sense.expansion.lower() not in query.lower():
                    found.append(sense.expansion)
        return found

    def expand(self, query: str, choose: Chooser | None = None) -> str:
        found = self.expansions(query, choose)
        return f"{query} ({'; '.join(found)})" if found else query
