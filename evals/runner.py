"""Run an evaluation set's queries through the search service and collapse chunk hits
to the judged unit (max-passage). TREC run files are the hand-off to scoring."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from evals.datasets import EvalSet
from retrieval.search import Hit


@dataclass
class Ranking:
    """Per query: judged units best first, with the score of their best passage."""

    units: dict[str, list[tuple[str, float]]]
    latency_ms: dict[str, float] = field(default_factory=dict)
    resolved: dict[str, str] = field(default_factory=dict)  # query as the search service read it


def unit_of(result: Hit, level: str) -> str:
    return result.chunk.article_id if level == "article" else result.chunk.section_id


def collapse(results: list[Hit], level: str, depth: int) -> list[tuple[str, float]]:
    """Max-passage: a unit ranks where its first passage in `results` ranks and scores as that
    passage. `results` are in the order the engine gives them, which is not always by score:
    negation moves passages below the rest without rescoring them (retrieval/negation.py)."""
    first: dict[str, float] = {}
    for r in results:
        first.setdefault(unit_of(r, level), r.score)
    return list(first.items())[:depth]


SearchFn = Callable[[str, list[str], int], tuple[list[Hit], str]]


def run_queries(search: SearchFn, evalset: EvalSet, depth: int = 100, chunk_depth: int | None = None,
                progress: Callable[[int], None] | None = None) -> Ranking:
    """`search(query, context, k)` returns chunk results and the query as resolved."""
    chunk_depth = chunk_depth or depth * 5
    ranking = Ranking(units={})
    for qid in evalset.judged_queries():
        started = time.perf_counter()
        results, resolved = search(evalset.queries[qid], evalset.context.get(qid, []), chunk_depth)
        ranking.latency_ms[qid] = (time.perf_counter() - started) * 1000
        ranking.units[qid] = collapse(results, evalset.level, depth)
        ranking.resolved[qid] = resolved
        if progress:
            progress(1)
    return ranking


def write_trec(ranking: Ranking, path: Path, tag: str) -> None:
    """TREC run format: query-id Q0 unit-id rank score tag."""
    with open(path, "w", encoding="utf-8") as fh:
        for qid in sorted(ranking.units):
            for rank, (unit, score) in enumerate(ranking.units[qid], start=1):
                fh.write(f"{qid} Q0 {unit} {rank} {score:.6f} {tag}\n")


def read_trec(path: Path) -> Ranking:
    units: dict[str, list[tuple[int, str, float]]] = {}
    with open(path, encoding="utf-8") as fh:
        for number, line in enumerate(fh, start=1):
            parts = line.split()
            if not parts:
                continue
            if len(parts) != 6:
                raise ValueError(f"{path}:{number}: expected 6 fields in a TREC run line")
            units.setdefault(parts[0], []).append((int(parts[3]), parts[2], float(parts[4])))
    return Ranking(units={q: [(u, s) for _, u, s in sorted(rows)] for q, rows in units.items()})


# How a follow-up query (one with earlier questions in metadata.context) is searched.
CONTEXT_MODES = ("resolve", "concatenate", "none")


def contextual_search(service, mode: str = "resolve") -> SearchFn:
    """A SearchFn over `service` (a retrieval.search.SearchService) that handles follow-ups by `mode`:
    - resolve: resolve the query against the earlier questions as /api/ask does;
    - concatenate: prepend the last earlier question;
    - none: ignore the context.
    Raises ValueError for another mode."""
    from retrieval.followups import resolve

    if mode not in CONTEXT_MODES:
        raise ValueError(f"context mode must be one of {', '.join(CONTEXT_MODES)}, got {mode!r}")

    def search(query: str, context: list[str], k: int) -> tuple[list[Hit], str]:
        searched = query
        if context and mode == "resolve":
            searched = resolve(query, context)
        elif context and mode == "concatenate":
            searched = f"{context[-1]} {query}"
        return service.search(searched, k).hits, searched

    return search
