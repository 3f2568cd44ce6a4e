"""What an import did: articles written, what was skipped and why, and where input was bad."""

from __future__ import annotations

import sys
from collections import Counter
from dataclasses import dataclass, field

from indexer.vocabulary import Problem


@dataclass
class ImportReport:
    """The outcome of one import. Nothing read is lost without a count here."""

    written: int = 0
    skipped: dict[str, int] = field(default_factory=dict)  # reason -> count
    problems: list[Problem] = field(default_factory=list)  # broken input
    warnings: list[Problem] = field(default_factory=list)  # imported, but worth a look


class ReportBuilder:
    """Collects skips, problems and warnings while a format's reader runs."""

    def __init__(self, progress: bool = False) -> None:
        self.skips: Counter[str] = Counter()
        self.problems: list[Problem] = []
        self.warnings: list[Problem] = []
        self.progress = progress
        self._seen = 0

    def skip(self, reason: str, count: int = 1) -> None:
        if count:
            self.skips[reason] += count

    def problem(self, file: str, position: str, message: str) -> None:
        self.problems.append(Problem.at(file, position, message))

    def warn(self, file: str, position: str, message: str) -> None:
        self.warnings.append(Problem.at(file, position, message))

    def tick(self, what: str, every: int = 1000) -> None:
        """Count one unit of input; print a progress line to stderr now and then if asked."""
        self._seen += 1
        if self.progress and self._seen % every == 0:
            print(f"  {self._seen} {what} read", file=sys.stderr, flush=True)

    def build(self, written: int) -> ImportReport:
        return ImportReport(
            written=written,
            skipped=dict(sorted(self.skips.items())),
            problems=list(self.problems),
            warnings=list(self.warnings),
        )
