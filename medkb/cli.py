"""The `medkb` command: index, serve, search, users, import, eval, bench, settings."""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path

from medkb.settings import SettingError, Settings, describe


def _settings(args: argparse.Namespace) -> Settings:
    return Settings.from_env(index_dir=getattr(args, "index_dir", None), model_dir=getattr(args, "model_dir", None),
                             reviews_db=getattr(args, "reviews_db", None), accounts_db=getattr(args, "accounts_db", None))


def _store_errors(settings: Settings) -> tuple[type[BaseException], ...]:
    """What a store (review log, accounts, build cache) raises when it cannot be used now: a
    damaged, locked or unwritable SQLite file (sqlite3.Error, OSError) and, with
    MEDKB_BACKEND=postgres, an unreachable database (psycopg.Error, PoolTimeout included)."""
    import sqlite3

    errors: tuple[type[BaseException], ...] = (sqlite3.Error, OSError)
    if settings.backend == "postgres":
        import psycopg

        errors += (psycopg.Error,)
    return errors


def _store_where(location: Path | str) -> str:
    """A store's location as it may be printed: a database URL with its password masked."""
    if isinstance(location, str):
        from retrieval.stores.postgres import redacted

        return redacted(location)
    return str(location)


def _cannot_use(command: str, store: str, location: Path | str, exc: BaseException, hint: str = "") -> int:
    """One line naming the store that cannot be used and why (and what to do); exit status 2."""
    reason = " ".join(str(exc).split()) or type(exc).__name__
    print(f"medkb {command}: the {store} at {_store_where(location)} cannot be used: {reason}" + (f"; {hint}" if hint else ""), file=sys.stderr)
    return 2


def _refuse_empty(command: str, store: str, location: Path | str, then: str = "") -> int:
    """0 unless the `store` at `location` is a 0-byte file (accounts.refuse_empty_store_file):
    then its one line (printed, `then` appended) and 2, before anything opens it; the file is
    left as it is."""
    from retrieval.accounts import EmptyStoreFile, refuse_empty_store_file

    try:
        refuse_empty_store_file(location, store)
    except EmptyStoreFile as exc:
        print(f"medkb {command}: {exc}{then}", file=sys.stderr)
        return 2
    return 0


def _check_state_stores(command: str, settings: Settings) -> int:
    """Open the review log and the accounts as a server would (creating them if missing), so
    that one that cannot be used is one line and exit 2 before anything starts; 0 when both open.
    A 0-byte file where either, or the answer store, should be is refused before any is opened,
    and left as it is (the answer store is not opened here: the server answers without
    permalinks while it cannot be used)."""
    from retrieval.accounts import AccountStore
    from retrieval.reviews import ReviewStore

    stores = (("review log", ReviewStore, settings.state_location(settings.reviews_path)),
              ("account store", AccountStore, settings.state_location(settings.accounts_path)))
    for name, location in [(name, location) for name, _, location in stores] + [("answer store", settings.state_location(settings.answers_path))]:
        if _refuse_empty(command, name, location):
            return 2
    for name, store_class, location in stores:
        try:
            store_class(location, connect_timeout=settings.db_connect_timeout).db.close()
        except _store_errors(settings) as exc:
            return _cannot_use(command, name, location, exc)
    return 0


def _check_onnx_folder(command: str, settings: Settings) -> int:
    """With an ONNX encoder, 0 when the model's export is in MEDKB_ONNX_DIR's folder or can be
    made there; else one line saying why (printed) and 2, before a server starts and fails in its
    startup instead (nothing is exported here)."""
    from indexer.embedding import ENCODERS, default_model_dir
    from indexer.onnx_embedding import OnnxExportError, check_export_folder

    runtime, precision = ENCODERS[settings.encoder]
    if runtime != "onnx":
        return 0
    try:
        check_export_folder(settings.model_dir or default_model_dir(), precision, settings.onnx_cache_dir())
    except (OnnxExportError, OSError) as exc:
        print(f"medkb {command}: {' '.join(str(exc).split())}", file=sys.stderr)
        return 2
    return 0


class _NoModel(Exception):
    """The model could not be loaded; the message is the one line to print."""


def _load_model(settings: Settings, document_threads: int = 1):
    """The configured embedder, or _NoModel naming the folder when it is missing, is not a
    model, or its ONNX export failed (load_embedder's FileNotFoundError, OSError, ValueError).
    `document_threads`: model calls at once over documents (see load_embedder); commands that
    build indexes offline (eval, train-ranker) pass the build's MEDKB_BUILD_THREADS."""
    from indexer.embedding import default_model_dir, load_embedder
    from indexer.onnx_embedding import OnnxExportError

    try:
        return load_embedder(settings.model_dir, settings.encoder, onnx_dir=settings.onnx_cache_dir(), document_threads=document_threads)
    except (OSError, ValueError, OnnxExportError) as exc:
        where = settings.model_dir or default_model_dir()
        raise _NoModel(f"the embedding model at {where} cannot be loaded: {' '.join(str(exc).split())}") from None


def _progress_bar(label: str, total: int, unit: str = "chunk") -> Callable[[int], None]:
    """A progress bar on stderr; returns the function that advances it."""
    from tqdm import tqdm

    bar = tqdm(total=total, desc=label, unit=unit, file=sys.stderr, dynamic_ncols=True, mininterval=0.5)

    def tick(n: int) -> None:
        bar.update(n)
        if bar.n >= bar.total:
            bar.close()

    return tick


EXIT_BUSY = 75  # EX_TEMPFAIL (sysexits.h): `medkb index --no-wait` found another build running; try again later
EXIT_INTERRUPTED = 130  # 128 + SIGINT, as a shell reports a command stopped by Ctrl-C


def cmd_index(args: argparse.Namespace) -> int:
    from indexer.build import staleness
    from indexer.build_cache import open_cache
    from indexer.chunking import ChunkerSettings
    from indexer.embedding import default_model_dir, model_checksum, model_identity
    from indexer.index_store import BuildBusy, build_lock
    from indexer.lazy_embedder import LazyEmbedder

    settings = _settings(args)
    dirs = [Path(d) for d in args.dirs] or list(settings.corpus_dirs)
    for d in dirs:
        if not d.exists():
            print(f"medkb index: corpus directory not found: {d}", file=sys.stderr)
            return 2
    chunker = ChunkerSettings(max_tokens=args.max_tokens)
    try:
        identity = model_identity(settings.model_dir, settings.encoder)
    except (FileNotFoundError, ValueError) as exc:
        print(f"medkb index: {exc}", file=sys.stderr)
        return 2
    # A chunk longer than the model reads would be embedded in part (the rest never reaches a
    # vector), and a budget under the passage minimum would not be honoured: refuse both.
    widest = identity.max_seq_length - 2  # [CLS] and [SEP] take two of the model's positions
    if not chunker.min_body_tokens <= chunker.max_tokens <= widest:
        print(f"medkb index: --max-tokens must be between {chunker.min_body_tokens} (the least a passage gets) and {widest} "
              f"(the model reads {identity.max_seq_length} word pieces, two of them its markers), got {chunker.max_tokens}", file=sys.stderr)
        return 2
    try:
        settings.index_dir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        print(f"medkb index: cannot make the index folder {settings.index_dir}: {exc.strerror or exc}", file=sys.stderr)
        return 2
    log_at = settings.state_location(settings.reviews_path)
    if _refuse_empty("index", "review log", log_at):  # not a review log, though opening it would make one
        return 2
    try:  # every build records its articles' versions in the review log: one that cannot be used stops it before any work
        from retrieval.reviews import ReviewStore

        ReviewStore(log_at, connect_timeout=settings.db_connect_timeout).db.close()
    except _store_errors(settings) as exc:
        return _cannot_use("index", "review log", log_at, exc)
    if args.if_stale and not args.watch:
        checksum = model_checksum(settings.model_dir or default_model_dir())
        reason = staleness(settings.index_dir, dirs, chunker, checksum, identity)
        if reason is None:
            print(f"index is up to date with {', '.join(map(str, dirs))} ({settings.index_dir}/current)")
            return _publish_to_database(settings) if settings.backend == "postgres" else 0
        print(f"medkb index: rebuilding: {reason}", file=sys.stderr)
    try:
        if args.no_wait:  # say so before reading the corpus; build_index checks again under the lock
            with build_lock(settings.index_dir, wait=False):
                pass
    except BuildBusy as exc:
        print(f"medkb index: {exc}", file=sys.stderr)
        return EXIT_BUSY
    # The model loads only if a build needs it: an unchanged corpus, or one that only lost
    # articles, is built from the build cache without torch.
    embedder = LazyEmbedder(settings.model_dir, encoder=settings.encoder, document_threads=args.threads or settings.document_threads(),
                            onnx_dir=settings.onnx_cache_dir())
    try:
        cache = open_cache(settings.build_cache_dir(), settings.build_cache_mb)
    except _store_errors(settings) as exc:
        return _cannot_use("index", "build cache", settings.build_cache_dir(), exc,
                           "it is only a cache: move it aside (the next build starts afresh), or build without it with MEDKB_BUILD_CACHE_MB=0")
    try:
        if not args.watch:
            return _index_once(args, settings, dirs, chunker, embedder, cache, watching=False)
        from indexer.watch import watch_corpus

        _index_once(args, settings, dirs, chunker, embedder, cache, watching=True)
        _load_in_background(embedder)

        class CorpusGone(Exception):
            pass

        def rebuild(changed: list[str]) -> None:
            shown = ", ".join(changed[:5]) + (f" and {len(changed) - 5} more" if len(changed) > 5 else "")
            print(f"\nchanged: {shown}", file=sys.stderr, flush=True)
            gone = [d for d in dirs if not d.is_dir()]
            if gone:  # removed or renamed: nothing is watched there any more, and no build can read it
                raise CorpusGone(", ".join(map(str, gone)))
            _index_once(args, settings, dirs, chunker, embedder, cache, watching=True)

        try:
            watch_corpus(dirs, rebuild, debounce_ms=settings.watch_debounce_ms,
                         ready=lambda: print(f"watching {', '.join(map(str, dirs))} for changes (Ctrl-C to stop)", file=sys.stderr, flush=True))
        except KeyboardInterrupt:
            pass
        except CorpusGone as exc:
            print(f"medkb index: corpus directory not found: {exc} (removed while watching); stopped watching, "
                  "nothing was published (the published build keeps serving)", file=sys.stderr)
            return 2
        return 0
    finally:
        cache.close()


def _load_in_background(embedder) -> None:
    """--watch: load the model now, beside watching, so that the first edit does not wait for it."""
    import threading

    def load() -> None:
        try:
            embedder.model()
            print(f"model ready for the next build (loaded in {embedder.loaded_seconds or 0:.1f}s)", file=sys.stderr, flush=True)
        except Exception as exc:  # the build that needs it will report it
            print(f"medkb index: warning: the model could not be loaded ahead of time: {exc}", file=sys.stderr, flush=True)

    if not embedder.loaded:
        threading.Thread(target=load, name="medkb-model-loader", daemon=True).start()


def _index_once(args: argparse.Namespace, settings: Settings, dirs: list[Path], chunker, embedder, cache, watching: bool) -> int:
    """One build and its report; in watch mode a failure is reported and watching goes on."""
    from indexer.build import BuildFailed, build_index
    from indexer.index_store import BuildBusy
    from indexer.onnx_embedding import OnnxExportError
    from retrieval.accounts import EmptyStoreFile

    started = time.perf_counter()

    def on_loss(lost) -> bool:
        # Never fewer good articles than the published build without saying so. A deleted file is
        # meant; an article lost to errors in watch mode is withheld (the server keeps the last
        # good build) until it is fixed or deleted, or --allow-loss says to publish anyway.
        broken = [a for a in lost if a.reason == "has errors"]
        withhold = watching and bool(broken) and not args.allow_loss
        verb = "would lose" if withhold else "loses"
        print(f"medkb index: warning: this build {verb} {len(lost)} article(s) of the published one: {', '.join(map(str, lost))}",
              file=sys.stderr, flush=True)
        return not withhold

    try:
        report = build_index(dirs, settings.index_dir, embedder, chunker, strict=args.strict, batch_size=args.batch_size, progress=_progress_bar,
                             wait=not args.no_wait, on_wait=lambda message: print(f"medkb index: {message}", file=sys.stderr, flush=True),
                             if_stale=args.if_stale, keep_builds=settings.keep_builds, cache=cache, on_loss=on_loss)
    except BuildBusy as exc:
        print(f"medkb index: {exc}", file=sys.stderr)
        return EXIT_BUSY
    except OnnxExportError as exc:  # the model is loaded by the build, when it first embeds
        print(f"medkb index: {exc}; nothing was published", file=sys.stderr)
        return 2
    except BuildFailed as exc:
        for problem in exc.problems:
            print(f"  error: {problem}", file=sys.stderr)
        print(f"medkb index: {exc}", file=sys.stderr)
        if watching and "would be lost" in str(exc):
            print("medkb index: fix the articles above or delete their files (or run with --allow-loss); the published build keeps serving", file=sys.stderr)
        return 1
    if report.up_to_date:
        print(f"index is up to date with {', '.join(map(str, dirs))} ({report.directory}" + (")" if watching else ", published by another build meanwhile)"))
        return _publish_to_database(settings) if settings.backend == "postgres" else 0
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
    total_files = report.manifest.corpus.files if report.manifest else report.parsed
    print(f"  reused from cache   {total_files - report.parsed} of {total_files} files parsed before, {report.chunks + report.manifest.counts.sections - report.embedded} of "
          f"{report.chunks + report.manifest.counts.sections} texts embedded before ({cache.path or 'no cache'})")
    model_load = getattr(embedder, "loaded_seconds", None)
    load_note = f", model load {model_load:.1f}s" if model_load and not watching else ""
    stages = ", ".join(f"{k} {v:.1f}s" for k, v in report.stages.items())
    in_cache = ", ".join(f"{k} {v:.2f}s" for k, v in report.cache_seconds.items() if v >= 0.005)
    print(f"  build cache         {sum(report.cache_seconds.values()):.1f}s of it" + (f" ({in_cache})" if in_cache else ""))
    print(f"  time                {time.perf_counter() - started:.1f}s ({stages}{load_note}; embedded {report.embedded} texts)", flush=True)
    if report.directory is not None:
        try:
            _report_reviews(settings, _indexed_articles(report.directory, dirs))
        except _store_errors(settings) as exc:
            return _cannot_use("index", "review log", settings.state_location(settings.reviews_path), exc,
                               "the build is published, but its articles' versions are not recorded")
        except EmptyStoreFile as exc:  # emptied since the command's check (a rebuild under --watch, say)
            print(f"medkb index: {exc}; the build is published, but its articles' versions are not recorded", file=sys.stderr)
            return 2
    return _publish_to_database(settings) if settings.backend == "postgres" else 0


def _publish_to_database(settings: Settings) -> int:
    """MEDKB_BACKEND=postgres: publish the build just written under the index root (which stays
    the build cache and staging area) into MEDKB_DATABASE_URL, in one transaction."""
    from indexer.index_store import IndexProblem, load_index
    from retrieval.backends.postgres import publish_if_changed

    started = time.perf_counter()
    try:
        url = settings.require_database_url()
        build_id, published = publish_if_changed(url, load_index(settings.index_dir), keep=settings.keep_builds)
    except (ValueError, IndexProblem) as exc:
        print(f"medkb index: {exc}", file=sys.stderr)
        return 2
    if published:
        print(f"published build {build_id} into the database in {time.perf_counter() - started:.1f}s (MEDKB_BACKEND=postgres)", flush=True)
    else:
        print(f"the database already serves this build ({build_id})", flush=True)
    return 0


def _indexed_articles(build: Path, dirs: list[Path]) -> list:
    """The published build's articles, each with the path of its file in `dirs` (for the review report)."""
    import json
    from types import SimpleNamespace

    from indexer.articles import corpus_files
    from indexer.index_store import ArticleRecord

    paths = {p.name: p for p in corpus_files(dirs)}
    out = []
    for line in (build / "articles.jsonl").read_text(encoding="utf-8").splitlines():
        if line:
            record = ArticleRecord.from_dict(json.loads(line))
            out.append(SimpleNamespace(id=record.id, path=paths.get(record.path, Path(record.path)), content_sha256=record.content_sha256,
                                       review_status=record.review_status))
    return out


def _report_reviews(settings: Settings, articles) -> None:
    """Keep each indexed version's text in the review log (for diffs against the approved
    version), note when it was first seen, and report review statuses: a front matter
    `review_status: approved` that no review record supports is a warning. A 0-byte file where
    the log should be raises EmptyStoreFile before it is opened, and is left as it is."""
    from collections import Counter

    from retrieval.accounts import refuse_empty_store_file
    from retrieval.reviews import ReviewState, ReviewStore, derive, sha256_hex

    log_at = settings.state_location(settings.reviews_path)
    refuse_empty_store_file(log_at, "review log")
    store = ReviewStore(log_at, connect_timeout=settings.db_connect_timeout)
    for article in articles:
        if store.content(article.content_sha256) is not None:
            continue  # kept by an earlier build: the file need not be read again (an edit is a new hash)
        try:
            data = article.path.read_bytes()
        except OSError:
            continue
        if sha256_hex(data) == article.content_sha256:
            store.remember_content(article.id, data)
    store.observe((a.id, a.content_sha256) for a in articles)
    histories: dict[str, list] = {}
    for record in store.records():  # one query, not one per article
        histories.setdefault(record.article_id, []).append(record)
    states: Counter = Counter()
    for article in articles:
        review = derive(article.id, article.content_sha256, histories.get(article.id, []), article.review_status)
        states[review.state] += 1
        if review.unsupported_claim:
            print(f"  warning: {article.path}: front matter says review_status: approved, but no review record approves this content "
                  f"(sha256 {article.content_sha256[:12]}); it is shown as {review.status.value}", file=sys.stderr)
        elif review.state == ReviewState.APPROVED_VERSION_CHANGED:
            print(f"  pending re-review: {article.path}: {review.note}", file=sys.stderr)
    summary = ", ".join(f"{n} {state.label.lower()}" for state, n in sorted(states.items(), key=lambda item: item[0].value))
    print(f"  review status       {summary} (log: {store.db.where})")


def cmd_serve(args: argparse.Namespace) -> int:
    import os

    from indexer.embedding import model_identity
    from indexer.index_store import IndexMissing, IndexProblem, choose_build

    settings = _settings(args)
    if settings.backend == "postgres":
        return _serve_from_database(args, settings)
    try:
        # The checks the server will make (checksums included), before uvicorn starts: a refusal is one line and exit 2.
        # When the published build is damaged the server falls back to the newest intact one and logs which and why.
        directory, manifest, _ = choose_build(settings.index_dir, model_identity(settings.model_dir, settings.encoder))
    except IndexMissing:
        print(f"medkb serve: no index under {settings.index_dir}. Build one with `medkb index corpus` (or run `make serve`).", file=sys.stderr)
        return 2
    except (IndexProblem, FileNotFoundError) as exc:
        print(f"medkb serve: {exc}", file=sys.stderr)
        return 2
    if _check_state_stores("serve", settings) or _check_onnx_folder("serve", settings):
        return 2
    from server.listening import url

    sock = _take_port(args, settings)
    if sock is None:
        return 2
    print(f"serving {manifest.counts.chunks} chunks from {manifest.counts.articles} articles (build {directory.name}) on {url(args.host, sock.getsockname()[1])}",
          file=sys.stderr)
    # The app factory reads its settings from the environment, so the command line's win.
    os.environ["MEDKB_INDEX_DIR"] = str(settings.index_dir)
    if settings.model_dir:
        os.environ["MEDKB_MODEL_DIR"] = str(settings.model_dir)
    os.environ["MEDKB_ENCODER"] = settings.encoder
    return _run_uvicorn(args, settings, sock)


def _port(text: str) -> int:
    """argparse type: a TCP port, 1 to 65535 (the socket layer would take 99999 modulo 65536)."""
    try:
        value = int(text)
    except ValueError:
        value = None
    if value is None or not 1 <= value <= 65535:
        raise argparse.ArgumentTypeError(f"expected a port number from 1 to 65535, got {text!r}")
    return value


def _whole_number(minimum: int, refusal: str) -> Callable[[str], int]:
    """argparse type: a whole number >= `minimum`; `refusal` says what is allowed."""

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
        if value < minimum:
            raise argparse.ArgumentTypeError(f"{refusal}, got {value}")
        return value

    return parse


_at_least_one = _whole_number(1, "must be at least 1")
_at_least_zero = _whole_number(0, "must be 0 (none) or more")  # 0 turns a measurement off
# How long uvicorn's supervisor waits for a worker to answer its health check, and for a worker
# started by SIGHUP to be ready before the old one is stopped (uvicorn's default: 5 s).
WORKER_START_SECONDS = 120


def _workers(args: argparse.Namespace, settings: Settings) -> int:
    return args.workers if args.workers is not None else settings.workers  # both checked to be >= 1 where they are read


def _take_port(args: argparse.Namespace, settings: Settings):
    """The listening socket for `medkb serve`, taken before the model and the index load
    (server/listening.py); None, having said why on one line, when the port cannot be bound."""
    from server.listening import listening_socket

    try:
        return listening_socket(args.host, args.port, _workers(args, settings))
    except OSError as exc:
        print(f"medkb serve: cannot listen on {args.host}:{args.port}: {exc.strerror or exc}", file=sys.stderr)
        return None


def _run_uvicorn(args: argparse.Namespace, settings: Settings, sock) -> int:
    """Serve the app factory with uvicorn on `sock` (from `_take_port`): in this process, or in
    `--workers` (MEDKB_WORKERS) processes on one port, each listening on its own socket
    (server/listening.py) and reading its settings from the environment."""
    import os

    import uvicorn

    from medkb.memory import limit_malloc_arenas

    workers = _workers(args, settings)
    if settings.malloc_arenas:
        # Worker processes start afresh: glibc reads the cap from the environment at their start.
        os.environ["MALLOC_ARENA_MAX"] = str(settings.malloc_arenas)
    # Before uvicorn starts its worker threads, so that every one of them shares the capped arenas.
    limit_malloc_arenas(settings.malloc_arenas)
    from server.listening import run_single, run_workers

    if workers == 1:
        try:
            run_single(uvicorn.Config("server.app:create_app", factory=True, host=args.host, port=args.port, log_level=args.log_level), sock)
        except KeyboardInterrupt:  # as uvicorn.run ends on Ctrl+C
            pass
        return 0

    print(f"  {workers} server processes: each loads the model and the index", file=sys.stderr)
    # uvicorn's supervisor gives a worker 5 s by default to answer its health check and, when SIGHUP
    # replaces the workers, to finish starting; loading the model and a MedQuAD-scale index takes
    # longer on a busy machine (12 s seen), and the restart was then abandoned.
    config = uvicorn.Config("server.app:create_app", factory=True, host=args.host, port=args.port, log_level=args.log_level, workers=workers,
                            timeout_worker_healthcheck=WORKER_START_SECONDS)
    try:
        run_workers(config, sock)
    except KeyboardInterrupt:  # as uvicorn.run ends on Ctrl+C
        pass
    return 0


def _serve_from_database(args: argparse.Namespace, settings: Settings) -> int:
    """`medkb serve` with MEDKB_BACKEND=postgres: check the published build's manifest in the
    database against the model, then serve (the app factory reads the same settings)."""
    import os

    from indexer.embedding import model_identity
    from indexer.index_store import IndexManifest, IndexProblem
    from retrieval.backends.postgres import DatabaseProblem, published_manifest

    try:
        data = published_manifest(settings.require_database_url())
        if data is None:
            raise DatabaseProblem("no build is published in the database. Publish one with `MEDKB_BACKEND=postgres medkb index corpus`.")
        manifest = IndexManifest.from_dict(data)
        manifest.check_model(model_identity(settings.model_dir, settings.encoder))
    except (ValueError, IndexProblem, FileNotFoundError) as exc:
        print(f"medkb serve: {exc}", file=sys.stderr)
        return 2
    if _check_state_stores("serve", settings) or _check_onnx_folder("serve", settings):
        return 2
    from server.listening import url

    sock = _take_port(args, settings)
    if sock is None:
        return 2
    print(f"serving {manifest.counts.chunks} chunks from {manifest.counts.articles} articles (PostgreSQL) on {url(args.host, sock.getsockname()[1])}", file=sys.stderr)
    if settings.model_dir:
        os.environ["MEDKB_MODEL_DIR"] = str(settings.model_dir)
    os.environ["MEDKB_ENCODER"] = settings.encoder
    return _run_uvicorn(args, settings, sock)


def cmd_search(args: argparse.Namespace) -> int:
    from indexer.index_store import IndexProblem
    from indexer.onnx_embedding import OnnxExportError
    from retrieval.search import RetrievalSettings, open_service

    settings = _settings(args)
    # Checked before the model loads. Without -k: 5 passages, or MEDKB_MAX_K if lower (a default is never refused).
    query = " ".join(args.query.split())
    k = min(5, settings.max_k) if args.k is None else args.k
    if not query or len(query) > settings.max_query_chars or not 1 <= k <= settings.max_k:
        print(f"medkb search: give a query of 1 to {settings.max_query_chars} characters and -k between 1 and {settings.max_k}", file=sys.stderr)
        return 2
    log_at = settings.state_location(settings.reviews_path)
    if _refuse_empty("search", "review log", log_at):  # before the model loads; opening it would make it an empty log
        return 2
    retrieval = RetrievalSettings(retriever=settings.retriever, max_per_article=settings.max_per_article, ranker=settings.ranker, no_match=bool(settings.no_match))
    try:
        if settings.backend == "postgres":
            from retrieval.backends import postgres

            service = postgres.open_service(settings.require_database_url(), settings.model_dir, retrieval, settings.query_cache_size,
                                            ef_search=settings.pg_ef_search, encoder=settings.encoder, onnx_dir=settings.onnx_cache_dir())
        else:
            service = open_service(settings.index_dir, settings.model_dir, retrieval, settings.query_cache_size, encoder=settings.encoder,
                                   onnx_dir=settings.onnx_cache_dir())
    except (IndexProblem, ValueError) as exc:
        print(f"medkb search: {exc}", file=sys.stderr)
        return 2
    except OSError as exc:  # the model folder is missing or not a model
        from indexer.embedding import default_model_dir

        print(f"medkb search: the embedding model at {settings.model_dir or default_model_dir()} cannot be loaded: {' '.join(str(exc).split())}", file=sys.stderr)
        return 2
    except OnnxExportError as exc:  # no ONNX export, and none can be made (MEDKB_ONNX_DIR unusable, or the export failed)
        print(f"medkb search: {' '.join(str(exc).split())}", file=sys.stderr)
        return 2
    if service.index.fallback:
        print(f"medkb search: warning: {service.index.fallback}", file=sys.stderr)
    try:
        if settings.backend == "postgres" or settings.reviews_path.exists():  # statuses come from the review log, as in the server
            from retrieval.reviews import ReviewBook, ReviewStore

            service.use_reviews(ReviewBook(ReviewStore(log_at, connect_timeout=settings.db_connect_timeout)))
        result = service.search(query, k)  # joins the statuses the log says now
    except _store_errors(settings) as exc:
        return _cannot_use("search", "review log", log_at, exc)
    if result.searched_for and not args.json:
        print(f"searched for: {result.searched_for}")
    if result.no_match and not args.json:
        print(f"no match: {result.no_match}" + (f" Nearest articles: {'; '.join(result.suggestions)}" if result.suggestions else ""))
    if args.json:
        # The API's JSON (/api/search), statuses derived from the review log: a chunk's own
        # `review_status` is its front matter's claim, which no reader may take for an approval.
        from server.present import search_out

        print(search_out(result, k).model_dump_json(indent=2))
        return 0
    for hit in result.hits:
        c = hit.chunk
        refs = "; ".join(f"[{r.id}] {r.title} ({r.source}{f', {r.year}' if r.year else ''})" for r in c.references)
        review = result.reviews.get(c.article_id)
        print(f"{hit.rank:>2}. {hit.score:.3f}  {c.article_title}  [{review.label if review else 'Submitted'}]  {' > '.join(c.section_path)}")
        if review:
            print(f"    {review.note}")
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
    from indexer.embedding import ModelInfo
    from indexer.index_store import IndexProblem, load_index
    from retrieval.search import RetrievalSettings, SearchService

    settings = _settings(args)
    if args.compare is not None:  # checked before the model loads and the queries run, not after
        from evals.runner import read_trec

        try:
            read_trec(args.compare / "run.trec")
        except (OSError, ValueError) as exc:
            reason = ("no such directory" if not args.compare.is_dir() else "no run.trec in it" if isinstance(exc, FileNotFoundError)
                      else exc.strerror if isinstance(exc, OSError) else exc)
            print(f"medkb eval: --compare {args.compare}: not a previous eval output directory ({reason})", file=sys.stderr)
            return 2
    cache = args.cache_dir
    try:
        if args.dataset:
            evalset = load_beir(args.dataset, args.queries, args.qrels, args.split)
            corpus_dirs = [import_beir_corpus(args.dataset, cache, log=_log)]
        else:
            corpus_dirs = [Path(d) for d in args.corpus] or list(settings.corpus_dirs)
            missing = [str(d) for d in corpus_dirs if not d.exists()]
            if missing:
                print(f"medkb eval: corpus directory not found: {', '.join(missing)} (pass --corpus DIR, or set MEDKB_CORPUS)", file=sys.stderr)
                return 2
            evalset = load_gold(args.gold, corpus_dirs)
            if args.level == "article":
                evalset = evalset.at_article_level()
    except EvalSetError as exc:
        print(f"medkb eval: {exc}", file=sys.stderr)
        return 2
    evalset = evalset.limit(args.limit)
    out_dir = args.out or Path("runs") / f"{evalset.name}-{time.strftime('%Y%m%d-%H%M%S')}"
    for flag, folder in (("--cache-dir", cache), ("--out", out_dir)):  # before the model loads and the corpus is indexed
        try:
            folder.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            print(f"medkb eval: {flag} {folder}: cannot make the folder: {exc.strerror or exc}", file=sys.stderr)
            return 2
    for key, note in evalset.source.items():
        if key.startswith("dropped_"):
            print(f"medkb eval: warning: {note}; they are not scored", file=sys.stderr)
    print(f"{evalset.name}: {len(evalset.judged_queries())} judged queries, {evalset.level}-level judgments", file=sys.stderr)
    embedder = _load_model(settings, settings.document_threads())  # its corpus index is built here when not cached
    chunker = ChunkerSettings(context_template=CONTEXT_TEMPLATES[args.embed_context])
    if args.heldout:
        from evals.ranker_training import is_heldout

        keep = [q for q in evalset.judged_queries() if is_heldout(q)]
        evalset = evalset.subset(keep)
        print(f"{evalset.name}: {len(keep)} queries held out from the ranker's training", file=sys.stderr)
    try:
        root = cached_index(corpus_dirs, cache, embedder, chunker, progress=_progress_bar, log=_log)
        index = load_index(root, ModelInfo.of(embedder))
    except IndexProblem as exc:
        print(f"medkb eval: {exc}", file=sys.stderr)
        return 2
    if index.fallback:
        print(f"medkb eval: warning: {index.fallback}", file=sys.stderr)
    steps = not args.no_query_steps
    retrieval = RetrievalSettings(retriever=args.retriever, ranker=args.ranker, rrf_k=args.rrf_k, heading_weight=0.0 if args.no_headings else args.heading_weight,
                                  lexical_weight=args.lexical_weight, expand_abbreviations=steps and not args.no_abbreviations,
                                  spelling=steps and not args.no_spelling, drug_names=steps and not args.no_drug_names,
                                  shorthand=steps and not args.no_shorthand, lay_terms=steps and not args.no_lay_terms,
                                  negation=steps and not args.no_negation, population=steps and not args.no_population,
                                  condense=steps and not args.no_condense, no_match=not args.no_nomatch, max_per_article=0)
    backend = None
    if (args.backend or settings.backend) == "postgres":
        # The same build, published into MEDKB_DATABASE_URL (unless it is there already) and searched there.
        from retrieval.backends.postgres import PostgresBackend, load_published, publish_if_changed

        try:
            url = settings.require_database_url()
            build_id, _ = publish_if_changed(url, index, keep=settings.keep_builds)
            index = load_published(url, ModelInfo.of(embedder), build_id=build_id)
        except (ValueError, IndexProblem) as exc:
            print(f"medkb eval: {exc}", file=sys.stderr)
            return 2
        backend = PostgresBackend.for_index(url, index, ef_search=settings.pg_ef_search)
    service = SearchService(index, embedder, cache_size=settings.query_cache_size, settings=retrieval, backend=backend)
    if args.ranker == "learned" and args.retriever == "hybrid" and service.ranker is None:
        print("medkb eval: warning: no learned ranker fits this model (retrieval/data/ranker.txt); hybrid uses RRF", file=sys.stderr)

    run_settings = {**retrieval.to_dict(), "backend": service.backend.name, "embed_context": args.embed_context, "chunker": chunker.to_dict(), "conversation_context": args.context,
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
    from indexer.embedding import ModelInfo
    from indexer.index_store import load_index
    from retrieval.search import SearchService

    settings = _settings(args)
    collections = [(name, args.devsets / name) for name in args.collections]
    missing = [str(p) for name, p in collections if name != "gold" and not (p / "qrels").exists()]
    if missing:
        print(f"medkb train-ranker: dev sets not found: {', '.join(missing)} (python -m evals.public_devsets; python -m evals.medquad_devsets)", file=sys.stderr)
        return 2
    embedder = _load_model(settings, settings.document_threads())  # each collection's index is built here when not cached

    def service_for(name: str) -> SearchService:
        corpus = list(settings.corpus_dirs) if name == "gold" else [import_beir_corpus(args.devsets / name, args.cache_dir, log=_log)]
        root = cached_index(corpus, args.cache_dir, embedder, progress=_progress_bar, log=_log)
        return SearchService(load_index(root, ModelInfo.of(embedder)), embedder, cache_size=4096, ranker=None, no_match=None)

    try:
        card = run(service_for, collections, args.model, args.card, log=_log, cache=args.features_cache, model_name=embedder.name,
                   encoder=settings.encoder)
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


BENCH_SIZES = ("default", "medquad", "synthetic", "import", "fresh", "model")  # what evals.bench.run_bench measures


def cmd_bench(args: argparse.Namespace) -> int:
    import os
    import tempfile

    from evals.bench import format_table, run_bench

    settings = _settings(args)
    try:  # before measuring: a run can take half an hour
        args.out.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        print(f"medkb bench: --out {args.out}: cannot make its folder: {exc.strerror or exc}", file=sys.stderr)
        return 2
    if args.live:
        return _bench_live(args)
    sizes = [s.strip() for s in args.sizes.split(",") if s.strip()]
    unknown = [s for s in sizes if s not in BENCH_SIZES]
    if unknown or not sizes:
        print(f"medkb bench: --sizes {args.sizes!r}: unknown {', '.join(map(repr, unknown)) or 'empty'}; choose from {', '.join(BENCH_SIZES)}", file=sys.stderr)
        return 2
    embedder = _load_model(settings)
    # The servers and builds it starts index into its temporary folder: without this, each would keep
    # its ONNX export beside that index and make it again, in a timed build or a server whose RSS is measured.
    os.environ["MEDKB_ONNX_DIR"] = str(settings.onnx_cache_dir().resolve())
    if args.backends:
        return _bench_backends(args, settings, sizes, embedder)
    with tempfile.TemporaryDirectory(prefix="medkb-bench-") as tmp:
        results = run_bench(sizes, embedder, _log, corpus_dirs=[Path(d) for d in args.corpus] or list(settings.corpus_dirs),
                            medquad_index=args.medquad_index, medquad_corpus=args.medquad_corpus, medquad_data=args.medquad_data,
                            queries=args.queries, http_requests=args.http_requests, vectors=args.vectors, build_sample=args.build_sample,
                            http=not args.no_http, workdir=Path(tmp), compare_encoder=args.compare_encoder,
                            workers=args.workers, onnx_dir=settings.onnx_cache_dir(), settle=args.settle)
    print(format_table(results))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(results, indent=2) + "\n")
    print(f"\nwrote {args.out}")
    return 0


def _bench_backends(args: argparse.Namespace, settings: Settings, sizes: list[str], embedder) -> int:
    """`medkb bench --backends`: embedded against PostgreSQL (MEDKB_DATABASE_URL), see evals/backend_bench.py."""
    from evals.backend_bench import format_backends, medquad_backends, synthetic_backends
    from evals.bench import machine, medquad_questions

    try:
        url = settings.require_database_url()
    except ValueError as exc:
        print(f"medkb bench: {exc}", file=sys.stderr)
        return 2
    results: dict = {"machine": machine(), "settings": {"sizes": sizes, "queries": args.queries, "vectors": args.vectors, "ef_search": settings.pg_ef_search}}
    if "medquad" in sizes:
        if not (args.medquad_index / "current").exists():
            print(f"medkb bench: no MedQuAD index at {args.medquad_index} (pass --medquad-index)", file=sys.stderr)
            return 2
        queries = medquad_questions(args.medquad_data, args.queries) if args.medquad_data.exists() else []
        if not queries:
            print(f"medkb bench: no MedQuAD questions under {args.medquad_data} (pass --medquad-data)", file=sys.stderr)
            return 2
        _log("medquad, both backends")
        results["medquad"] = medquad_backends(args.medquad_index, url, embedder, queries, _log, ef_search=settings.pg_ef_search)
    if "synthetic" in sizes:
        _log("synthetic vectors, FAISS flat and pgvector HNSW")
        results["synthetic"] = synthetic_backends(url, args.vectors, embedder.dim, min(args.queries, 200), _log)
    print(format_backends(results))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(results, indent=2) + "\n")
    print(f"\nwrote {args.out}")
    return 0


def _read_password(args: argparse.Namespace) -> str:
    import getpass

    if args.password_stdin:
        return sys.stdin.readline().rstrip("\r\n")
    try:
        first = getpass.getpass(f"password for {args.name}: ")
        again = getpass.getpass("again: ")
    except EOFError:  # no terminal, and standard input ended
        raise ValueError("no password was typed (no terminal to prompt on?); give it on the first line of standard input with --password-stdin") from None
    if again != first:
        raise ValueError("the two passwords differ")
    return first


def cmd_users(args: argparse.Namespace) -> int:
    from retrieval.accounts import AccountError, AccountStore, store_file_state

    settings = _settings(args)
    location = settings.state_location(settings.accounts_path)
    if _refuse_empty(f"users {args.users_command}", "account store", location, then=" with `medkb users add`"):
        return 2
    if args.users_command != "add" and store_file_state(location) == "missing":
        # Only `add` may make the store: listing, or a token for an account, in a store that is not there would create an empty one.
        print(f"medkb users {args.users_command}: there is no account store at {location} (check --accounts-db, MEDKB_ACCOUNTS_DB "
              f"or --index-dir; `medkb users add` creates it)", file=sys.stderr)
        return 2
    try:
        store = AccountStore(location, connect_timeout=settings.db_connect_timeout)
        if args.users_command == "add":
            account = store.add(args.name, args.role, _read_password(args), args.display_name or "", args.credentials or "", args.conflicts or "")
            print(f"added {account.name} ({account.role}): {account.reviewer.signature} in {store.db.where}")
        elif args.users_command == "list":
            for a in store.accounts():
                live = sum(1 for t in store.tokens(a.name) if t.revoked_at is None)
                print(f"{a.name:<16} {a.role:<9} {a.reviewer.signature}  tokens: {live}" + ("  (disabled)" if a.disabled else ""))
                if a.conflicts:
                    print(f"{'':<16} conflicts of interest: {a.conflicts}")
        elif args.users_command == "token":
            token_id, token = store.new_token(args.name, args.label or "")
            print(f"token {token_id} for {args.name}; it is shown only now (send it as 'Authorization: Bearer TOKEN'):", file=sys.stderr)
            print(token)
        elif args.users_command == "revoke-token":
            n = store.revoke_tokens(args.name, args.id)
            print(f"revoked {n} token(s) of {args.name}")
            if n == 0:
                return 1
    except (AccountError, ValueError) as exc:
        print(f"medkb users: {exc}", file=sys.stderr)
        return 2
    except _store_errors(settings) as exc:  # an unreachable database, a locked or damaged file: one line, not a traceback
        return _cannot_use("users", "account store", location, exc)
    return 0


def _bench_live(args: argparse.Namespace) -> int:
    import tempfile

    from evals.bench import format_live, gold_queries, live_bench, machine_load, medquad_questions
    from evals.pipeline import machine

    corpus = args.medquad_corpus
    if not corpus.exists():
        print(f"medkb bench --live: no corpus at {corpus}: import MedQuAD first (medkb import medquad ... --out {corpus}) or pass --medquad-corpus", file=sys.stderr)
        return 2
    if args.medquad_data and args.medquad_data.exists():
        queries = medquad_questions(args.medquad_data, 3000)
    else:
        queries = gold_queries() or ["iron deficiency"]
    loads = [machine_load("live: publish and load", _log)]
    work = args.live_workdir
    if work is not None:
        work.mkdir(parents=True, exist_ok=True)  # a folder named on the command line need not exist yet
    with tempfile.TemporaryDirectory(prefix="medkb-live-", dir=work) as tmp:
        live = live_bench(corpus, args.live_cache, Path(tmp), queries, _log, seconds=args.live_seconds, clients=args.live_clients,
                          builds=args.live_builds, fake_model=args.fake_model)
    loads.append(machine_load("live: after", _log))
    results = {"machine": machine(), "live": live, "load": loads}
    print(format_live(live))
    busy = [entry for entry in loads if entry["busy"]]
    if busy:
        print("WARNING: the machine was busy (" + ", ".join(f"load {e['load_1m']} on {e['cpus']} cpus at '{e['measurement']}'" for e in busy)
              + "); these figures are noisy, not a regression.")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(results, indent=2) + "\n")
    print(f"\nwrote {args.out}")
    return 0 if live.get("load", {}).get("failed", 1) == 0 else 1


def cmd_settings(args: argparse.Namespace) -> int:
    for env, default, help_text in describe():
        print(f"{env:<24} {default:<14} {help_text}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    from evals.ranker_training import DEFAULT_COLLECTIONS
    from evals.runner import CONTEXT_MODES
    from indexer.vocabulary import IMPORT_STATUSES
    from retrieval.backends import BACKENDS
    from retrieval.ranker import CARD_FILE, MODEL_FILE
    from retrieval.search import RANKERS, RETRIEVERS

    parser = argparse.ArgumentParser(prog="medkb", description="medkb: cited passages from a medical knowledge base.")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = sub.add_parser("index", help="build the index from corpus directories", description="Parse, chunk and embed articles, then publish the index atomically. Bad articles are skipped and reported unless --strict.")
    p.add_argument("dirs", nargs="*", help="corpus directories (default: MEDKB_CORPUS or ./corpus)")
    p.add_argument("--index-dir", type=Path, help="index root (default: MEDKB_INDEX_DIR or var/index)")
    p.add_argument("--model-dir", type=Path, help="embedding model folder (default: the packaged all-MiniLM-L6-v2)")
    p.add_argument("--strict", action="store_true", help="fail, publishing nothing, if any article has an error")
    p.add_argument("--if-stale", action="store_true", help="do nothing when the published index is intact (every file matches its checksum) and already matches the corpus, chunker and model")
    p.add_argument("--no-wait", action="store_true", help=f"if another build of this index is running, exit {EXIT_BUSY} at once instead of waiting for it")
    p.add_argument("--max-tokens", type=int, default=220, help="word pieces per embedded chunk, title and section included: 64 to 254 (the model reads 256, two of them its markers)")
    p.add_argument("--batch-size", type=_at_least_one, default=32, help="texts per model batch")
    p.add_argument("--threads", type=_at_least_one, help="model calls run at once while embedding (default: MEDKB_BUILD_THREADS, or one per CPU core)")
    p.add_argument("--watch", action="store_true", help="after building, watch the corpus directories and republish whenever an article changes (debounced: MEDKB_WATCH_DEBOUNCE_MS)")
    p.add_argument("--allow-loss", action="store_true", help="--watch: publish even when articles of the published build would be lost to errors (by default such a build is withheld until they are fixed or deleted)")
    p.set_defaults(func=cmd_index)

    p = sub.add_parser("serve", help="serve the search page and JSON API", description="Serve the search page at / and the JSON API under /api with uvicorn.")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=_port, default=8000, help="TCP port, 1 to 65535 (default 8000)")
    p.add_argument("--index-dir", type=Path, help="index root (default: MEDKB_INDEX_DIR or var/index)")
    p.add_argument("--model-dir", type=Path, help="embedding model folder")
    p.add_argument("--log-level", default="info", choices=["critical", "error", "warning", "info", "debug"])
    p.add_argument("--workers", type=_at_least_one, help="server processes sharing the port (default: MEDKB_WORKERS or 1); each holds its own model and index")
    p.set_defaults(func=cmd_serve)

    p = sub.add_parser("search", help="search the index from the command line", description="Run one query through the same search service the server uses.")
    p.add_argument("query")
    p.add_argument("-k", type=int, help="passages to show (default: 5, or MEDKB_MAX_K if lower)")
    p.add_argument("--json", action="store_true", help="print the JSON /api/search returns instead of a summary")
    p.add_argument("--index-dir", type=Path)
    p.add_argument("--model-dir", type=Path)
    p.set_defaults(func=cmd_search)

    p = sub.add_parser("import", help="convert another format into corpus articles", description="Write articles in the corpus format (markdown + front matter) from another format, for review and indexing. Importing the same source twice gives byte-identical files. Unreadable records are reported with file and position; the rest still import.")
    p.add_argument("format", choices=["seed-page", "medquad", "beir", "pubmed"], help="seed-page: a published article page as text; medquad: MedQuAD XML; beir: a BEIR corpus.jsonl; pubmed: PubMed/MEDLINE XML")
    p.add_argument("source", type=Path, help="file or directory to import")
    p.add_argument("--out", type=Path, required=True, help="directory to write the articles into")
    p.add_argument("--status", default="submitted", choices=IMPORT_STATUSES, help="review status given to every imported article (default: submitted); never approved: only a clinician's review approves")
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
    p.add_argument("--depth", type=_at_least_one, default=100, help="judged units ranked per query (default 100)")
    p.add_argument("--threshold", type=int, default=1, help="lowest grade counted as relevant by the binary metrics (default 1)")
    p.add_argument("--limit", type=_at_least_one, help="only the first N judged queries (by id)")
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
    p.add_argument("--no-lay-terms", action="store_true", help="do not add the clinical term for lay words (water pill -> diuretic)")
    p.add_argument("--no-negation", action="store_true", help="do not read NOT / -x / without / not caused by")
    p.add_argument("--no-population", action="store_true", help="do not move passages written for other patients (children, adults, women) than the question names below the rest")
    p.add_argument("--no-condense", action="store_true", help="search long messages word for word")
    p.add_argument("--no-query-steps", action="store_true", help="all of the above: the query as typed")
    p.add_argument("--no-nomatch", action="store_true", help="always return the best passages, even when nothing answers")
    p.add_argument("--context", choices=CONTEXT_MODES, default="resolve", help="for follow-up queries (queries.jsonl metadata.context): resolve them against the earlier questions as /api/ask does (default), prepend the last earlier question, or ignore the context")
    p.add_argument("--embed-context", choices=["title-section", "none"], default="title-section", help="embed each chunk with its article title and section path (default) or its text alone")
    p.add_argument("--backend", choices=BACKENDS, help="search the cached build in place (embedded) or published into MEDKB_DATABASE_URL (postgres); default: MEDKB_BACKEND")
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
    p.add_argument("--sizes", default="default,medquad,synthetic", help="comma-separated: default, medquad, synthetic, import (the whole of MedQuAD imported and indexed by real `medkb import` and `medkb index` processes, into --medquad-index when nothing is there yet) fresh (git clone of this repository, then `make serve` until the first answer) and model (the encoder's own CPU cost per query and per 1,000 word pieces, and the ceilings it puts on requests/s and on embedding --medquad-index's texts)")
    p.add_argument("--corpus", nargs="*", default=[], help="corpus directories for the default size")
    p.add_argument("--medquad-index", type=Path, default=Path("var/medquad-index"), help="an index of imported MedQuAD (medkb import medquad ... && medkb index ... --index-dir this)")
    p.add_argument("--medquad-corpus", type=Path, default=Path("var/medquad-corpus"), help="the imported MedQuAD articles, for the build-throughput sample")
    p.add_argument("--medquad-data", type=Path, default=Path(__file__).resolve().parent.parent.parent / "shared" / "data" / "medquad", help="MedQuAD XML, for realistic queries")
    p.add_argument("--queries", type=_at_least_one, default=200, help="queries per latency measurement")
    p.add_argument("--http-requests", type=_at_least_one, default=300, help="requests per concurrency level")
    p.add_argument("--vectors", type=_at_least_one, default=1_000_000, help="synthetic vectors for the vector-search-only size")
    p.add_argument("--build-sample", type=_at_least_zero, default=300, help="MedQuAD articles built in this run to measure throughput (0: no build)")
    p.add_argument("--no-http", action="store_true", help="skip the HTTP measurements")
    p.add_argument("--workers", type=_at_least_one, default=1, help="server processes for the HTTP measurements (`medkb serve --workers`)")
    p.add_argument("--settle", type=_at_least_zero, default=90, help="before each measurement, wait up to this many seconds for the 1-minute load average to fall to 0.5 per core (the bench's own previous measurement raises it for about a minute); 0: don't wait (default 90)")
    p.add_argument("--compare-encoder", choices=["torch", "onnx-fp32", "onnx-int8"], help="also build the MedQuAD sample with this encoder, for the build speed-up over it in the same run")
    p.add_argument("--live", action="store_true", help="instead: a living knowledge base over a copy of --medquad-corpus: seconds to publish after a one-article edit, a front-matter edit (no new text: the model is not loaded), a one-article delete and for an unchanged corpus, then a server under load while a `medkb index --watch` republishes edits (failed requests, p99, RSS after each swap)")
    p.add_argument("--live-cache", type=Path, help="--live: the build cache to start from (e.g. var/medquad-index/cache after `medkb index var/medquad-corpus --index-dir var/medquad-index`); default: a fresh one (the first build embeds everything)")
    p.add_argument("--live-seconds", type=float, default=60, help="--live: seconds of load")
    p.add_argument("--live-clients", type=_at_least_one, default=8, help="--live: concurrent clients")
    p.add_argument("--live-builds", type=_at_least_one, default=5, help="--live: builds published during the load")
    p.add_argument("--live-workdir", type=Path, help="--live: where the copy of the corpus and its index go (default: the system's temporary folder)")
    p.add_argument("--fake-model", action="store_true", help="--live: every process uses the test suite's bag-of-words embedder instead of the model (for a machine that cannot embed the corpus in time); measures everything but the model")
    p.add_argument("--backends", action="store_true", help="instead: the embedded and the PostgreSQL backend (MEDKB_DATABASE_URL) side by side on --medquad-index and on --vectors synthetic vectors (pgvector HNSW): latency p50/p99, recall@10 against exact search, build time, bytes per chunk (sizes: medquad, synthetic)")
    p.add_argument("--out", type=Path, default=Path("runs/bench.json"), help="JSON output (default runs/bench.json)")
    p.add_argument("--model-dir", type=Path)
    p.set_defaults(func=cmd_bench)

    p = sub.add_parser("users", help="reviewer accounts and API tokens", description="Create reviewer accounts (roles: reviewer approves and requests changes; editor starts reviews and retires; admin does all), list them, and issue or revoke API tokens.")
    p.add_argument("--accounts-db", type=Path, help="accounts database (default: MEDKB_ACCOUNTS_DB or accounts.sqlite beside the index root)")
    p.add_argument("--index-dir", type=Path, help="index root, to find the default accounts database beside it")
    users = p.add_subparsers(dest="users_command", required=True, metavar="ACTION")
    u = users.add_parser("add", help="add an account (the password is prompted for)")
    u.add_argument("name", help="account name: lower-case letters, digits, '.', '_' or '-'")
    u.add_argument("--role", required=True, choices=["reviewer", "editor", "admin"])
    u.add_argument("--display-name", help="the name shown with decisions, e.g. 'Dr Ada Byron'")
    u.add_argument("--credentials", help="shown beside the name, e.g. 'MD, haematology'")
    u.add_argument("--conflicts", help="conflict-of-interest statement")
    u.add_argument("--password-stdin", action="store_true", help="read the password from the first line of standard input instead of prompting")
    users.add_parser("list", help="list accounts")
    u = users.add_parser("token", help="print a new API token for an account (only its hash is kept)")
    u.add_argument("name")
    u.add_argument("--label", help="what the token is for")
    u = users.add_parser("revoke-token", help="revoke an account's API tokens (all, or one by --id)")
    u.add_argument("name")
    u.add_argument("--id", type=int, help="the token id printed when it was made")
    p.set_defaults(func=cmd_users)

    p = sub.add_parser("settings", help="list every setting with its environment variable and default")
    p.set_defaults(func=cmd_settings)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run one `medkb` command; returns its exit status (2 for a bad setting or argument)."""
    args = build_parser().parse_args(argv)
    try:
        # A bad MEDKB_* value, or MEDKB_BACKEND and MEDKB_DATABASE_URL that disagree: one line naming it, not a traceback.
        Settings.from_env().state_location(Path("var"))
        return args.func(args)
    except (SettingError, _NoModel) as exc:
        print(f"medkb {args.command}: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:  # Ctrl-C: what a build or store has half done is theirs to survive (atomic publish, transactions)
        print(f"\nmedkb {args.command}: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED


if __name__ == "__main__":
    sys.exit(main())
