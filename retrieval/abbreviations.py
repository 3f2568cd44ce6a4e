"""Query expansion for clinical abbreviations and spelling variants, from a data file.

"IDA workup" becomes "IDA workup (iron deficiency anemia)": the abbreviation stays, so
passages that use it still match, and its expansion is added for those that spell it out.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

DEFAULT_FILE = Path(__file__).parent / "data" / "abbreviations.tsv"


class AbbreviationFileError(ValueError):
    pass


@dataclass
class Abbreviations:
    exact: dict[str, str]  # all-capitals entries: matched case-sensitively
    folded: dict[str, str]  # other entries: matched in any case

    @classmethod
    def load(cls, path: Path = DEFAULT_FILE) -> "Abbreviations":
        exact: dict[str, str] = {}
        folded: dict[str, str] = {}
        for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
            if not line.strip() or line.startswith("#"):
                continue
            parts = line.split("\t")
            if len(parts) != 2 or not parts[0].strip() or not parts[1].strip():
                raise AbbreviationFileError(f"{path}:{number}: expected 'abbreviation<TAB>expansion'")
            key, expansion = parts[0].strip(), parts[1].strip()
            if key.isupper() or (key.upper() == key and any(c.isalpha() for c in key)):
                exact[key] = expansion
            else:
                folded[key.lower()] = expansion
        return cls(exact, folded)

    def expansions(self, query: str) -> list[str]:
        """Expansions for the abbreviations found in `query`, in order, without repeats."""
        found: list[str] = []
        for token in re.findall(r"[A-Za-z][A-Za-z0-9-]*", query):
            expansion = self.exact.get(token) or self.folded.get(token.lower())
            if expansion and expansion not in found and expansion.lower() not in query.lower():
                found.append(expansion)
        return found

    def expand(self, query: str) -> str:
        found = self.expansions(query)
        return f"{query} ({'; '.join(found)})" if found else query
