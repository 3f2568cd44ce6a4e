"""Drug names: brand and generic names of one drug linked (tylenol / acetaminophen /
paracetamol), for query expansion and the spelling dictionary.

The table `data/drug_names.tsv.gz` (name<TAB>canonical generic name<TAB>b for a brand) is
derived from the maintained `drug-named-entity-recognition` package (MIT; its names come
from DrugBank, MeSH, Wikipedia and MedlinePlus) by

    python -m retrieval.drugs

and committed, so searching never loads the package's 16 s pickle. Only names of one to
three plain words, four letters or more, are kept.
"""

from __future__ import annotations

import gzip
import re
import sys
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path

TABLE = Path(__file__).parent / "data" / "drug_names.tsv.gz"
_PLAIN = re.compile(r"^[a-z][a-z-]{2,}(?: [a-z][a-z-]+){0,2}$")


@dataclass
class DrugNames:
    canonical: dict[str, str]  # name -> canonical generic name
    brands: set[str]
    names_of: dict[str, list[str]] = field(default_factory=dict)  # canonical -> every name, generics first
    longest: int = 1  # most words in a name

    @classmethod
    def load(cls, path: Path = TABLE) -> "DrugNames":
        canonical: dict[str, str] = {}
        brands: set[str] = set()
        with gzip.open(path, "rt", encoding="utf-8") as fh:
            for line in fh:
                if line.startswith("#") or not line.strip():
                    continue
                name, generic, kind = (line.rstrip("\n").split("\t") + [""])[:3]
                canonical[name] = generic
                if kind == "b":
                    brands.add(name)
        names_of: dict[str, list[str]] = {}
        for name, generic in canonical.items():
            names_of.setdefault(generic, []).append(name)
        for generic, names in names_of.items():
            names.sort(key=lambda n: (n in brands, n != generic, n))
        return cls(canonical, brands, names_of, max(len(n.split()) for n in canonical) if canonical else 1)

    def find(self, text: str) -> list[tuple[str, str]]:
        """(name as found, canonical) for each drug name in `text`, longest names first, in order."""
        words = re.findall(r"[a-z][a-z-]*", text.lower())
        out: list[tuple[str, str]] = []
        i = 0
        while i < len(words):
            for n in range(min(self.longest, len(words) - i), 0, -1):
                name = " ".join(words[i : i + n])
                if name in self.canonical:
                    out.append((name, self.canonical[name]))
                    i += n
                    break
            else:
                i += 1
        return out

    def synonyms(self, name: str) -> list[str]:
        """Other names of the same drug, generic names first."""
        generic = self.canonical.get(name.lower())
        return [n for n in self.names_of.get(generic, []) if n != name.lower()] if generic else []


@lru_cache(maxsize=1)
def drug_names() -> DrugNames:
    return DrugNames.load()


def build_table(out: Path = TABLE) -> int:
    """Write the table from the installed drug-named-entity-recognition package."""
    import bz2
    import pickle
    from importlib.metadata import version
    from importlib.resources import files

    with bz2.open(files("drug_named_entity_recognition") / "drug_ner_dictionary.pkl.bz2", "rb") as fh:
        data = pickle.load(fh)  # noqa: S301 - the package's own data file
    variant_data = data["drug_variant_to_variant_data"]
    rows: dict[str, tuple[str, bool]] = {}
    for variant, canonicals in data["drug_variant_to_canonical"].items():
        name = variant.strip().lower()
        if not canonicals or not _PLAIN.match(name) or len(name) < 4:
            continue
        generic = sorted(canonicals)[0].strip().lower()
        if not _PLAIN.match(generic):
            continue
        rows[name] = (generic, bool((variant_data.get(variant) or {}).get("is_brand")))
    out.parent.mkdir(parents=True, exist_ok=True)
    with open(out, "wb") as raw, gzip.GzipFile(filename="", mode="wb", fileobj=raw, mtime=0) as fh:  # the same bytes run to run
        fh.write(f"# from drug-named-entity-recognition {version('drug-named-entity-recognition')} by python -m retrieval.drugs\n".encode())
        for name in sorted(rows):
            generic, brand = rows[name]
            fh.write(f"{name}\t{generic}\t{'b' if brand else 'g'}\n".encode())
    return len(rows)


def main(argv: list[str] | None = None) -> int:
    """`python -m retrieval.drugs [--out FILE]`: write the table (arguments are read first, so
    `--help` or a wrong flag writes nothing)."""
    import argparse

    parser = argparse.ArgumentParser(prog="python -m retrieval.drugs", description="Write the brand/generic drug-name table that searching reads "
                                     "from the installed drug-named-entity-recognition package (the same bytes for the same package version).")
    parser.add_argument("--out", type=Path, default=TABLE, help=f"the table to write (default: {TABLE})")
    args = parser.parse_args(argv)
    print(f"wrote {build_table(args.out)} names to {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
