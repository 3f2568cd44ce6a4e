"""`medkb eval`: prepare (or reuse) an index, run the queries through the search service,
score them, and write the run, the metrics, per-query results and reports."""

from __future__ import annotations

import datetime as dt
import functools
import hashlib
import json
import os
import platform
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import medkb
from evals import metrics as metrics_mod
from evals.datasets import EvalSet
from evals.report import compare, write_reports
from evals.runner import SearchFn, read_trec, run_queries, write_trec
from indexer.build import build_index, staleness
from indexer.chunking import ChunkerSettings
from indexer.embedding import Embedder, ModelInfo
from indexer.index_store import IndexManifest

REPO = Path(__file__).resolve().parent.parent
Progress = Callable[[str, int], Callable[[int], None]]


def file_digest(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def cache_slot(corpus_dirs: list[Path], cache_root: Path, chunker: ChunkerSettings = ChunkerSettings(), model: ModelInfo | None = None) -> Path:
    """The index root `cached_index` uses for these corpus directories, chunker settings and
    encoder (`model`'s MEDKB_ENCODER value; torch when not given): one slot for each, so comparing
    chunker settings or encoders does not rebuild back and forth. torch adds nothing to the key
    (its slots predate the choice of encoder)."""
    key_text = "\0".join(str(Path(d).resolve()) for d in corpus_dirs) + json.dumps(chunker.to_dict(), sort_keys=True)
    if model is not None and model.setting != "torch":
        key_text += f"\0encoder={model.setting}"
    return cache_root / f"index-{hashlib.sha256(key_text.encode()).hexdigest()[:12]}"


def cached_index(corpus_dirs: list[Path], cache_root: Path, embedder: Embedder, chunker: ChunkerSettings = ChunkerSettings(),
                 progress: Progress | None = None, log: Callable[[str], None] = print) -> Path:
    """An index of `corpus_dirs` under `cache_root`, built only when no build of the same
    corpus, chunker, model and encoder (precision and export recipe included) exists: a second
    run does not re-embed."""
    model = ModelInfo.of(embedder)
    root = cache_slot(corpus_dirs, cache_root, chunker, model)
    reason = staleness(root, corpus_dirs, chunker, embedder.checksum, model)
    if reason is None:
        log(f"reusing the cached index {root} (same corpus, chunker, model and encoder {model.setting})")
        return root
    log(f"building the index {root} with the {model.setting} encoder ({reason}) ...")
    report = build_index(corpus_dirs, root, embedder, chunker, progress=progress)
    log(f"indexed {report.articles} articles as {report.chunks} chunks in {report.seconds:.1f}s; skipped {len(report.skipped)}")
    return root


def import_beir_corpus(dataset: Path, cache_root: Path, log: Callable[[str], None] = print) -> Path:
    """The dataset's corpus.jsonl imported as articles, once per corpus content."""
    from indexer.importers import run_import

    corpus_file = dataset / "corpus.jsonl"
    if not corpus_file.exists() and (dataset / "corpus.jsonl.gz").exists():
        corpus_file = dataset / "corpus.jsonl.gz"
    digest = file_digest(corpus_file)[:16]
    out = cache_root / f"beir-{digest}" / "corpus"  # keyed by content: datasets sharing a corpus share its index
    marker = out.parent / "imported.json"
    if marker.exists():
        log(f"reusing the imported corpus {out}")
        return out
    log(f"importing {corpus_file} ...")
    report = run_import("beir", corpus_file, out, status="submitted")
    for problem in report.problems:
        log(f"  skipped: {problem}")
    marker.write_text(json.dumps({"written": report.written, "problems": len(report.problems)}) + "\n")
    log(f"imported {report.written} documents")
    return out


def git_state() -> dict[str, Any]:
    try:
        commit = subprocess.run(["git", "rev-parse", "HEAD"], cwd=REPO, capture_output=True, text=True, check=True).stdout.strip()
        dirty = bool(subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=REPO, capture_output=True, text=True).stdout.strip())
        return {"commit": commit, "dirty": dirty}
    except (OSError, subprocess.CalledProcessError):
        return {"commit": "unknown", "dirty": None}


# The instruction-set extensions that decide how fast the model runs: ONNX Runtime's int8 kernels
# use VNNI where the CPU has it, which can make the same build several times faster.
SPEED_FLAGS = ("avx2", "avx512f", "avx512_vnni", "avx_vnni", "amx_int8")


def machine() -> dict[str, Any]:
    """Where a run was measured: platform, Python, CPU count, and the CPU's model name and the
    SPEED_FLAGS it has (py-cpuinfo; empty when it cannot tell), since timings from two machines
    are not comparable. A new dict each call; the CPU is read once per process (about a second:
    py-cpuinfo reads it in a subprocess)."""
    return {"platform": platform.platform(), "python": sys.version.split()[0], "cpus": os.cpu_count(), "processor": platform.processor() or platform.machine(),
            "cpu_model": _cpu()[0], "cpu_flags": list(_cpu()[1])}


@functools.cache
def _cpu() -> tuple[str, tuple[str, ...]]:
    import cpuinfo

    try:
        info = cpuinfo.get_cpu_info()
    except Exception:  # py-cpuinfo probes the platform in many ways; any failure only loses the label
        info = {}
    flags = set(info.get("flags", ()))
    return info.get("brand_raw", ""), tuple(f for f in SPEED_FLAGS if f in flags)


@dataclass
class EvalOutput:
    out_dir: Path
    means: dict[str, float]
    per_query: dict[str, dict[str, float]]


def evaluate_set(evalset: EvalSet, search: SearchFn, out_dir: Path, run_settings: dict[str, Any], manifest: IndexManifest,
                 depth: int = 100, threshold: int = 1, compare_dir: Path | None = None, progress: Progress | None = None,
                 tag: str = "medkb") -> EvalOutput:
    """Run, score and report one evaluation set; every output lands in `out_dir`."""
    out_dir.mkdir(parents=True, exist_ok=True)
    tick = progress("queries", len(evalset.judged_queries())) if progress else None
    ranking = run_queries(search, evalset, depth=depth, progress=tick)
    write_trec(ranking, out_dir / "run.trec", tag)
    per_query = metrics_mod.evaluate(evalset.qrels, ranking.units, threshold)
    mean = metrics_mod.means(per_query)
    comparison = None
    if compare_dir:
        baseline_run = read_trec(Path(compare_dir) / "run.trec")
        comparison = compare(per_query, metrics_mod.evaluate(evalset.qrels, baseline_run.units, threshold), Path(compare_dir).name)
    with open(out_dir / "per_query.jsonl", "w", encoding="utf-8") as fh:
        for q in sorted(per_query):
            fh.write(json.dumps({"id": q, "query": evalset.queries[q], "resolved": ranking.resolved.get(q), "tags": evalset.tags.get(q, []),
                                 "latency_ms": round(ranking.latency_ms[q], 3), "top": [u for u, _ in ranking.units[q][:10]],
                                 "relevant": evalset.qrels[q], **per_query[q]}) + "\n")
    settings = {
        "dataset": evalset.name,
        "source": evalset.source,
        "level": evalset.level,
        "queries": len(per_query),
        "depth": depth,
        "relevance_threshold": threshold,
        "metrics": list(metrics_mod.METRICS),
        "metrics_library": "pytrec_eval",
        "search": run_settings,
        "index_manifest": manifest.to_dict(),
        "git": git_state(),
        "medkb_version": medkb.__version__,
        "machine": machine(),
        "finished_at": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "compare": str(compare_dir) if compare_dir else None,
    }
    (out_dir / "settings.json").write_text(json.dumps(settings, indent=2, sort_keys=True, default=str) + "\n")
    (out_dir / "metrics.json").write_text(json.dumps({"means": mean, "queries": len(per_query), "headline": metrics_mod.HEADLINE}, indent=2) + "\n")
    info = {"dataset": evalset.name, "level": evalset.level, "queries": len(per_query), "relevance threshold (binary metrics)": threshold,
            "search": json.dumps(run_settings, sort_keys=True), "index": manifest.corpus.fingerprint[:16],
            "chunks": manifest.counts.chunks, "model": manifest.model.name,
            "git": f"{settings['git']['commit'][:12]}{' (dirty)' if settings['git']['dirty'] else ''}", "finished": settings["finished_at"]}
    write_reports(out_dir, f"medkb eval: {evalset.name}", info, mean, per_query, evalset.queries, evalset.tags, ranking.resolved,
                  ranking.latency_ms, comparison)
    return EvalOutput(out_dir, mean, per_query)
