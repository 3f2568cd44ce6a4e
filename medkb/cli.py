"""The `medkb` command: index, serve, search."""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path

from medkb.settings import Settings, describe


def _settings(args: argparse.Namespace) -> Settings:
    return Settings.from_env(index_dir=getattr(args, "index_dir", None), model_dir=getattr(args, "model_dir", None))


def _progress_bar(label: str, total: int, unit: str = "chunk") -> Callable[[int], None]:
    """A progress bar on stderr; returns the function that advances it."""
    from tqdm import tqdm

    bar = tqdm(total=total, desc=label, unit=unit, file=sys.stderr, dynamic_ncols=True, mininterval=0.5)

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
    import os

    import uvicorn

    from indexer.embedding import model_identity
    from indexer.index_store import IndexProblem, read_manifest

    settings = _settings(args)
    try:
        manifest = read_manifest(settings.index_dir)
        if manifest is None:
            print(f"medkb serve: no index under {settings.index_dir}. Build one with `medkb index corpus` (or run `make serve`).", file=sys.stderr)
            return 2
        manifest.check_model(model_identity(settings.model_dir))
    except (IndexProblem, FileNotFoundError) as exc:
        print(f"medkb serve: {exc}", file=sys.stderr)
        return 2
    print(f"serving {manifest.counts.chunks} chunks from {manifest.counts.articles} articles on http://{args.host}:{args.port}", file=sys.stderr)
    # The app factory reads its settings from the environment, so the command line's win.
    os.environ["MEDKB_INDEX_DIR"] = str(settings.index_dir)
    if settings.model_dir:
        os.environ["MEDKB_MODEL_DIR"] = str(settings.model_dir)
    uvicorn.run("server.app:create_app", factory=True, host=args.host, port=args.port, log_level=args.log_level)
    return 0


def cmd_search(args: argparse.Namespace) -> int:
    from dataclasses import asdict

    from indexer.index_store import IndexProblem
    from retrieval.search import RetrievalSettings, open_service

    settings = _settings(args)
    try:
        service = open_service(settings.index_dir, settings.model_dir,
                               RetrievalSettings(retriever=settings.retriever, max_per_article=settings.max_per_article, ranker=settings.ranker,
                                                 no_match=bool(settings.no_match)), settings.query_cache_size)
    except IndexProblem as exc:
        print(f"medkb search: {exc}", file=sys.stderr)
        return 2
    result = service.search(args.query, args.k)
    if result.searched_for and not args.json:
        print(f"searched for: {result.searched_for}")
    if result.no_match and not args.json:
        print(f"no match: {result.no_match}" + (f" Nearest articles: {'; '.join(result.suggestions)}" if result.suggestions else ""))
    if args.json:
        print(json.dumps(asdict(result), indent=2, default=str, ensure_ascii=False))
        return 0
    for hit in result.hits:
        c = hit.chunk
        refs = "; ".join(f"[{r.id}] {r.title} ({r.source}{f', {r.year}' if r.year else ''})" for r in c.references)
        print(f"{hit.rank:>2}. {hit.score:.3f}  {c.article_title}  [{c.review_status.label}]  {' > '.join(c.section_path)}")
        print(f"    {c.text[:300]}")
        if refs:
            print(f"    refs: {refs}")
    return 0


def cmd_import(args: argparse.Namespace) -> int:
    from indexer.importers import ImporterError, run_import

    try:
        report = run_import(args.format, args.source, args.out, status=args.status, progress=not args.quiet)
    except ImporterError as exc:
        print(f"medkb import: {exc}", file=sys.stderr)
        return 2
    for problem in report.problems:
        print(f"  error: {problem}", file=sys.stderr)
    for warning in report.warnings:
        print(f"  warning: {warning}", file=sys.stderr)
    print(f"imported {report.written} article(s) from {args.source} ({args.format}) into {args.out}")
    for reason, count in sorted(report.skipped.items()):
        print(f"  skipped {count}: {reason}")
    if report.problems:
        print(f"  {len(report.problems)} record(s) could not be read (listed above)")
    return 1 if report.problems and args.strict else 0


def cmd_eval(args: argparse.Namespace) -> int:
    from evals.datasets import EvalSetError, load_beir, load_gold
    from evals.pipeline import cached_index, evaluate_set, import_beir_corpus
    from evals.runner import contextual_search
    from indexer.chunking import CONTEXT_TEMPLATES, ChunkerSettings
    from indexer.embedding import ModelInfo, load_embedder
    from indexer.index_store import load_index
    from retrieval.search import RetrievalSettings, SearchService

    settings = _settings(args)
    cache = args.cache_dir
    try:
        if args.dataset:
            evalset = load_beir(args.dataset, args.queries, args.qrels, args.split)
            corpus_dirs = [import_beir_corpus(args.dataset, cache, log=_log)]
        else:
            corpus_dirs = [Path(d) for d in args.corpus] or list(settings.corpus_dirs)
            evalset = load_gold(args.gold, corpus_dirs)
            if args.level == "article":
                evalset = evalset.at_article_level()
    except EvalSetError as exc:
        print(f"medkb eval: {exc}", file=sys.stderr)
        return 2
    evalset = evalset.limit(args.limit)
    for key, note in evalset.source.items():
        if key.startswith("dropped_"):
            print(f"medkb eval: warning: {note}; they are not scored", file=sys.stderr)
    print(f"{evalset.name}: {len(evalset.judged_queries())} judged queries, {evalset.level}-level judgments", file=sys.stderr)
    embedder = load_embedder(settings.model_dir)
    chunker = ChunkerSettings(context_template=CONTEXT_TEMPLATES[args.embed_context])
    if args.heldout:
        from evals.ranker_training import is_heldout

        keep = [q for q in evalset.judged_queries() if is_heldout(q)]
        evalset = evalset.subset(keep)
        print(f"{evalset.name}: {len(keep)} queries held out from the ranker's training", file=sys.stderr)
    root = cached_index(corpus_dirs, cache, embedder, chunker, progress=_progress_bar, log=_log)
    steps = not args.no_query_steps
    retrieval = RetrievalSettings(retriever=args.retriever, ranker=args.ranker, rrf_k=args.rrf_k, heading_weight=0.0 if args.no_headings else args.heading_weight,
                                  lexical_weight=args.lexical_weight, expand_abbreviations=steps and not args.no_abbreviations,
                                  spelling=steps and not args.no_spelling, drug_names=steps and not args.no_drug_names,
                                  shorthand=steps and not args.no_shorthand, negation=steps and not args.no_negation,
                                  condense=steps and not args.no_condense, no_match=not args.no_nomatch, max_per_article=0)
    service = SearchService(load_index(root, ModelInfo.of(embedder)), embedder, cache_size=settings.query_cache_size, settings=retrieval)
    if args.ranker == "learned" and args.retriever == "hybrid" and service.ranker is None:
        print("medkb eval: warning: no learned ranker fits this model (retrieval/data/ranker.txt); hybrid uses RRF", file=sys.stderr)

    out_dir = args.out or Path("runs") / f"{evalset.name}-{time.strftime('%Y%m%d-%H%M%S')}"
    run_settings = {**retrieval.to_dict(), "embed_context": args.embed_context, "chunker": chunker.to_dict(), "conversation_context": args.context,
                    "heldout_only": bool(args.heldout),
                    "ranker_model": service.ranker.describe() if service.ranker is not None and args.ranker == "learned" else None,
                    "no_match_policy": service.no_match_policy.card if args.no_nomatch is False else None}
    result = evaluate_set(evalset, contextual_search(service, args.context), out_dir, run_settings, service.manifest, depth=args.depth,
                          threshold=args.threshold, compare_dir=args.compare, progress=_query_bar)
    print(f"{'metric':<12} value")
    for name, value in result.means.items():
        print(f"{name:<12} {value:.4f}")
    print(f"wrote {out_dir}/run.trec, metrics.json, per_query.jsonl, settings.json, report.md, report.html")
    return 0


def cmd_train_ranker(args: argparse.Namespace) -> int:
    from evals.datasets import EvalSetError
    from evals.pipeline import cached_index, import_beir_corpus
    from evals.ranker_training import run
    from indexer.embedding import ModelInfo, load_embedder
    from indexer.index_store import load_index
    from retrieval.search import SearchService

    settings = _settings(args)
    collections = [(name, args.devsets / name) for name in args.collections]
    missing = [str(p) for name, p in collections if name != "gold" and not (p / "qrels").exists()]
    if missing:
        print(f"medkb train-ranker: dev sets not found: {', '.join(missing)} (python -m evals.public_devsets; python -m evals.medquad_devsets)", file=sys.stderr)
        return 2
    embedder = load_embedder(settings.model_dir)

    def service_for(name: str) -> SearchService:
        corpus = list(settings.corpus_dirs) if name == "gold" else [import_beir_corpus(args.devsets / name, args.cache_dir, log=_log)]
        root = cached_index(corpus, args.cache_dir, embedder, progress=_progress_bar, log=_log)
        return SearchService(load_index(root, ModelInfo.of(embedder)), embedder, cache_size=4096, ranker=None, no_match=None)

    try:
        card = run(service_for, collections, args.model, args.card, log=_log, cache=args.features_cache, model_name=embedder.name)
    except (EvalSetError, ValueError) as exc:
        print(f"medkb train-ranker: {exc}", file=sys.stderr)
        return 2
    print(f"wrote {args.model} ({card['trees']} trees) and {args.card}")
    for name, row in card["heldout"].items():
        print(f"  {name:<28} " + "  ".join(f"{k.split(' ')[0]} {v['ndcg@10']:.3f}/{v['mrr@10']:.3f}" for k, v in row.items()))
    return 0


def _log(message: str) -> None:
    print(message, file=sys.stderr)


def _query_bar(label: str, total: int) -> Callable[[int], None]:
    return _progress_bar(label, total, unit="query")


def cmd_bench(args: argparse.Namespace) -> int:
    import tempfile

    from evals.bench import format_table, run_bench
    from indexer.embedding import load_embedder

    settings = _settings(args)
    sizes = [s.strip() for s in args.sizes.split(",") if s.strip()]
    embedder = load_embedder(settings.model_dir)
    with tempfile.TemporaryDirectory(prefix="medkb-bench-") as tmp:
        results = run_bench(sizes, embedder, _log, corpus_dirs=[Path(d) for d in args.corpus] or list(settings.corpus_dirs),
                            medquad_index=args.medquad_index, medquad_corpus=args.medquad_corpus, medquad_data=args.medquad_data,
                            queries=args.queries, http_requests=args.http_requests, vectors=args.vectors, build_sample=args.build_sample,
                            http=not args.no_http, workdir=Path(tmp))
    print(format_table(results))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(results, indent=2) + "\n")
    print(f"\nwrote {args.out}")
    return 0


def cmd_settings(args: argparse.Namespace) -> int:
    for env, default, help_text in describe():
        print(f"{env:<24} {default:<14} {help_text}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    from evals.ranker_training import DEFAULT_COLLECTIONS
    from evals.runner import CONTEXT_MODES
    from indexer.vocabulary import ReviewStatus, values
    from retrieval.ranker import CARD_FILE, MODEL_FILE
    from retrieval.search import RANKERS, RETRIEVERS

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

    p = sub.add_parser("import", help="convert another format into corpus articles", description="Write articles in the corpus format (markdown + front matter) from another format, for review and indexing. Importing the same source twice gives byte-identical files. Unreadable records are reported with file and position; the rest still import.")
    p.add_argument("format", choices=["seed-page", "medquad", "beir", "pubmed"], help="seed-page: a published article page as text; medquad: MedQuAD XML; beir: a BEIR corpus.jsonl; pubmed: PubMed/MEDLINE XML")
    p.add_argument("source", type=Path, help="file or directory to import")
    p.add_argument("--out", type=Path, required=True, help="directory to write the articles into")
    p.add_argument("--status", default="submitted", choices=values(ReviewStatus), help="review status given to every imported article (default: submitted)")
    p.add_argument("--strict", action="store_true", help="exit 1 if any record could not be read")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=cmd_import)

    p = sub.add_parser("eval", help="measure retrieval quality offline", description="Run judged queries through the search service and write a TREC run, metrics (nDCG@10, MAP@10, MRR@10, Recall@5/10/100 via pytrec_eval), per-query results and markdown/HTML reports. Without --dataset, runs the project's gold questions (evals/gold) over the corpus.")
    src = p.add_mutually_exclusive_group()
    src.add_argument("--dataset", type=Path, help="a BEIR-layout folder: corpus.jsonl, queries.jsonl, qrels/<split>.tsv")
    src.add_argument("--gold", type=Path, default=Path(__file__).resolve().parent.parent / "evals" / "gold", help="gold question folder (default: evals/gold)")
    p.add_argument("--queries", type=Path, help="queries file instead of the dataset's queries.jsonl")
    p.add_argument("--qrels", type=Path, help="judgments file instead of the dataset's qrels/<split>.tsv")
    p.add_argument("--split", default="test", help="qrels split (default: test)")
    p.add_argument("--corpus", nargs="*", default=[], help="corpus directories for the gold set (default: MEDKB_CORPUS or ./corpus)")
    p.add_argument("--level", choices=["section", "article"], default="section", help="unit judged for the gold set (BEIR datasets judge documents)")
    p.add_argument("--out", type=Path, help="output directory (default: runs/<dataset>-<time>)")
    p.add_argument("--compare", type=Path, help="a previous eval output directory to compare against, query by query")
    p.add_argument("--depth", type=int, default=100, help="judged units ranked per query (default 100)")
    p.add_argument("--threshold", type=int, default=1, help="lowest grade counted as relevant by the binary metrics (default 1)")
    p.add_argument("--limit", type=int, help="only the first N judged queries (by id)")
    p.add_argument("--cache-dir", type=Path, default=Path("var/eval-cache"), help="where imported corpora and their indexes are cached")
    p.add_argument("--retriever", choices=RETRIEVERS, default="hybrid", help="which retrieval to measure (default hybrid)")
    p.add_argument("--no-headings", action="store_true", help="hybrid without the question-to-heading list")
    p.add_argument("--heading-weight", type=float, default=0.3, help="weight of the question-to-heading list in the fusion")
    p.add_argument("--lexical-weight", type=float, default=1.0, help="weight of the BM25 list in the fusion")
    p.add_argument("--rrf-k", type=int, default=60, help="reciprocal rank fusion constant")
    p.add_argument("--ranker", choices=RANKERS, default="learned", help="how hybrid orders its candidates: the learned ranker (default) or reciprocal rank fusion")
    p.add_argument("--heldout", action="store_true", help="score only the queries the learned ranker's training held out (its split)")
    p.add_argument("--no-abbreviations", action="store_true", help="do not expand clinical abbreviations in queries")
    p.add_argument("--no-spelling", action="store_true", help="do not correct misspelled query words")
    p.add_argument("--no-drug-names", action="store_true", help="do not add a drug's other (brand/generic) names")
    p.add_argument("--no-shorthand", action="store_true", help="do not write out clinician shorthand (scope, 60yo, thal, ...)")
    p.add_argument("--no-negation", action="store_true", help="do not read NOT / -x / without / not caused by")
    p.add_argument("--no-condense", action="store_true", help="search long messages word for word")
    p.add_argument("--no-query-steps", action="store_true", help="all of the above: the query as typed")
    p.add_argument("--no-nomatch", action="store_true", help="always return the best passages, even when nothing answers")
    p.add_argument("--context", choices=CONTEXT_MODES, default="resolve", help="for follow-up queries (queries.jsonl metadata.context): resolve them against the earlier questions as /api/ask does (default), prepend the last earlier question, or ignore the context")
    p.add_argument("--embed-context", choices=["title-section", "none"], default="title-section", help="embed each chunk with its article title and section path (default) or its text alone")
    p.add_argument("--model-dir", type=Path)
    p.set_defaults(func=cmd_eval)

    p = sub.add_parser("train-ranker", help="train the learned ranker on the public dev sets", description="Read every judged query of the public dev sets, gather its candidates and features as search does, train a LightGBM lambdarank model on the train folds and write it with its card (training data, split, features, held-out metrics).")
    p.add_argument("--devsets", type=Path, default=Path("var/devsets"), help="folder holding the BEIR dev sets (default var/devsets)")
    p.add_argument("--collections", nargs="+", default=list(DEFAULT_COLLECTIONS), help="dev sets to train on (gold: evals/gold over the default corpus, by the same split)")
    p.add_argument("--cache-dir", type=Path, default=Path("var/eval-cache"), help="where imported corpora and their indexes are cached")
    p.add_argument("--features-cache", type=Path, default=None, help="keep each collection's features here and reuse them")
    p.add_argument("--model", type=Path, default=MODEL_FILE, help="model file to write")
    p.add_argument("--card", type=Path, default=CARD_FILE, help="card (JSON) to write")
    p.add_argument("--model-dir", type=Path)
    p.set_defaults(func=cmd_train_ranker)

    p = sub.add_parser("bench", help="measure build throughput, search latency and memory", description="Benchmarks printed as a table and written as JSON: build throughput (and its ratio to the raw model encode rate), search latency in-process and over HTTP with 1, 8 and 32 clients, server RSS and index bytes per chunk, for the default corpus, a MedQuAD index, and 1M synthetic vectors.")
    p.add_argument("--sizes", default="default,medquad,synthetic", help="comma-separated: default, medquad, synthetic")
    p.add_argument("--corpus", nargs="*", default=[], help="corpus directories for the default size")
    p.add_argument("--medquad-index", type=Path, default=Path("var/medquad-index"), help="an index of imported MedQuAD (medkb import medquad ... && medkb index ... --index-dir this)")
    p.add_argument("--medquad-corpus", type=Path, default=Path("var/medquad-corpus"), help="the imported MedQuAD articles, for the build-throughput sample")
    p.add_argument("--medquad-data", type=Path, default=Path(__file__).resolve().parent.parent.parent / "shared" / "data" / "medquad", help="MedQuAD XML, for realistic queries")
    p.add_argument("--queries", type=int, default=200, help="queries per latency measurement")
    p.add_argument("--http-requests", type=int, default=300, help="requests per concurrency level")
    p.add_argument("--vectors", type=int, default=1_000_000, help="synthetic vectors for the vector-search-only size")
    p.add_argument("--build-sample", type=int, default=300, help="MedQuAD articles built in this run to measure throughput")
    p.add_argument("--no-http", action="store_true", help="skip the HTTP measurements")
    p.add_argument("--out", type=Path, default=Path("runs/bench.json"), help="JSON output (default runs/bench.json)")
    p.add_argument("--model-dir", type=Path)
    p.set_defaults(func=cmd_bench)

    p = sub.add_parser("settings", help="list every setting with its environment variable and default")
    p.set_defaults(func=cmd_settings)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
