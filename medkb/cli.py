"""The `medkb` command: index, serve, search."""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Callable, Sequence

from medkb.settings import Settings, describe


def _settings(args: argparse.Namespace) -> Settings:
    return Settings.from_env(index_dir=getattr(args, "index_dir", None), model_dir=getattr(args, "model_dir", None))


def _progress_bar(label: str, total: int) -> Callable[[int], None]:
    from tqdm import tqdm

    bar = tqdm(total=total, desc=label, unit="chunk", file=sys.stderr, dynamic_ncols=True, mininterval=0.5)

    def tick(n: int) -> None:
        bar.update(n)
        if bar.n >= bar.total:
            bar.close()

    return tick


def cmd_index(args: argparse.Namespace) -> int:
    from indexer.build import BuildFailed, build_index, is_up_to_date
    from indexer.chunking import ChunkerSettings
    from indexer.embedding import default_model_dir, load_embedder, model_checksum

    settings = _settings(args)
    dirs = [Path(d) for d in args.dirs] or list(settings.corpus_dirs)
    for d in dirs:
        if not d.exists():
            print(f"medkb index: corpus directory not found: {d}", file=sys.stderr)
            return 2
    chunker = ChunkerSettings(max_tokens=args.max_tokens)
    if args.if_stale:
        checksum = model_checksum(settings.model_dir or default_model_dir())
        if is_up_to_date(settings.index_dir, dirs, chunker, checksum):
            print(f"index is up to date with {', '.join(map(str, dirs))} ({settings.index_dir}/current)")
            return 0
    started = time.perf_counter()
    print("loading the embedding model ...", file=sys.stderr)
    embedder = load_embedder(settings.model_dir)
    try:
        report = build_index(dirs, settings.index_dir, embedder, chunker, strict=args.strict, batch_size=args.batch_size, progress=_progress_bar)
    except BuildFailed as exc:
        for problem in exc.problems:
            print(f"  error: {problem}", file=sys.stderr)
        print(f"medkb index: {exc}", file=sys.stderr)
        return 1
    for problem in report.problems:
        print(f"  skipped: {problem}", file=sys.stderr)
    print(f"published {report.directory}")
    print(f"  articles indexed    {report.articles}")
    print(f"  articles skipped    {len(report.skipped)}" + (" (reasons above)" if report.skipped else ""))
    print(f"  chunks              {report.chunks}")
    print(f"  citations resolved  {report.citations_resolved}")
    if report.citations_unresolved:
        print(f"  citations unresolved (declared by their articles) {report.citations_unresolved}")
    if report.oversized_chunks:
        print(f"  oversized chunks    {report.oversized_chunks} (a single sentence longer than the chunk budget, kept whole)")
    print(f"  time                {time.perf_counter() - started:.1f}s (embedding {report.embed_seconds:.1f}s, {report.chunks / max(report.embed_seconds, 1e-9):.1f} chunks/s)")
    return 0


def cmd_serve(args: argparse.Namespace) -> int:
    import uvicorn

    from indexer.embedding import MODEL_NAME, default_model_dir, model_checksum
    from indexer.index_store import IndexProblem, read_manifest, check_compatible
    from server.app import create_app

    settings = _settings(args)
    manifest = read_manifest(settings.index_dir)
    if manifest is None:
        print(f"medkb serve: no index under {settings.index_dir}. Build one with `medkb index corpus` (or run `make serve`).", file=sys.stderr)
        return 2
    try:
        model = manifest.get("model", {})
        check_compatible(manifest, MODEL_NAME, model_checksum(settings.model_dir or default_model_dir()), model.get("dim"), model.get("normalize"))
    except IndexProblem as exc:
        print(f"medkb serve: {exc}", file=sys.stderr)
        return 2
    print(f"serving {manifest['counts']['chunks']} chunks from {manifest['counts']['articles']} articles on http://{args.host}:{args.port}", file=sys.stderr)
    uvicorn.run(create_app(settings), host=args.host, port=args.port, log_level=args.log_level)
    return 0


def cmd_search(args: argparse.Namespace) -> int:
    from indexer.index_store import IndexProblem
    from server.app import load_service
    from server.present import search_out
    from server.search import Filters

    settings = _settings(args)
    try:
        service = load_service(settings)
    except IndexProblem as exc:
        print(f"medkb search: {exc}", file=sys.stderr)
        return 2
    out = search_out(service.search(args.query, args.k, Filters()), args.k)
    if args.json:
        print(out.model_dump_json(indent=2))
        return 0
    for p in out.results:
        refs = "; ".join(f"[{r.number}] {r.title} ({r.source}, {r.year})" for r in p.citations)
        print(f"{p.rank:>2}. {p.score:.3f}  {p.article_title}  [{p.review_status_label}]  {' > '.join(p.section_path)}")
        print(f"    {p.text[:300]}")
        if refs:
            print(f"    refs: {refs}")
    return 0


def cmd_settings(args: argparse.Namespace) -> int:
    for env, default, help_text in describe():
        print(f"{env:<24} {default:<14} {help_text}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="medkb", description="medkb: cited passages from a medical knowledge base.")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = sub.add_parser("index", help="build the index from corpus directories", description="Parse, chunk and embed articles, then publish the index atomically. Bad articles are skipped and reported unless --strict.")
    p.add_argument("dirs", nargs="*", help="corpus directories (default: MEDKB_CORPUS or ./corpus)")
    p.add_argument("--index-dir", type=Path, help="index root (default: MEDKB_INDEX_DIR or var/index)")
    p.add_argument("--model-dir", type=Path, help="embedding model folder (default: the packaged all-MiniLM-L6-v2)")
    p.add_argument("--strict", action="store_true", help="fail, publishing nothing, if any article has an error")
    p.add_argument("--if-stale", action="store_true", help="do nothing when the published index already matches the corpus, chunker and model")
    p.add_argument("--max-tokens", type=int, default=220, help="word pieces per embedded chunk, title and section included (model reads 256)")
    p.add_argument("--batch-size", type=int, default=32, help="texts per model batch")
    p.set_defaults(func=cmd_index)

    p = sub.add_parser("serve", help="serve the search page and JSON API", description="Serve the search page at / and the JSON API under /api with uvicorn.")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=8000)
    p.add_argument("--index-dir", type=Path, help="index root (default: MEDKB_INDEX_DIR or var/index)")
    p.add_argument("--model-dir", type=Path, help="embedding model folder")
    p.add_argument("--log-level", default="info", choices=["critical", "error", "warning", "info", "debug"])
    p.set_defaults(func=cmd_serve)

    p = sub.add_parser("search", help="search the index from the command line", description="Run one query through the same search service the server uses.")
    p.add_argument("query")
    p.add_argument("-k", type=int, default=5, help="passages to show")
    p.add_argument("--json", action="store_true", help="print the API's JSON instead of a summary")
    p.add_argument("--index-dir", type=Path)
    p.add_argument("--model-dir", type=Path)
    p.set_defaults(func=cmd_search)

    p = sub.add_parser("settings", help="list every setting with its environment variable and default")
    p.set_defaults(func=cmd_settings)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
