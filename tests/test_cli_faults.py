"""Faults a new user or operator hits on the command line: each is one clear line and an exit
status, never a traceback, and nothing the CLI prints claims more than the review log says.

The commands run as real processes with the fake embedder (tests/fake_model_cli.py).
"""

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from sample_articles import MICRO_BODY, TREAT_BODY, article

TESTS = Path(__file__).resolve().parent
REPO = TESTS.parent
ENV = dict(os.environ, PYTHONPATH=os.pathsep.join([str(TESTS), str(REPO)]))
FAKE_CLI = [sys.executable, str(TESTS / "fake_model_cli.py")]


def medkb(*args: str, env: dict | None = None, timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run([*FAKE_CLI, *args], capture_output=True, text=True, cwd=REPO, env={**ENV, **(env or {})}, timeout=timeout)


def one_clear_line(proc: subprocess.CompletedProcess, *words: str) -> str:
    """The error the command printed: no traceback, and the words a reader needs."""
    err = proc.stderr
    assert "Traceback" not in err, err
    for word in words:
        assert word in err, err
    return err


@pytest.fixture(scope="module")
def claimed_index(tmp_path_factory):
    """An index of two articles whose front matter claims `approved`; no review approves either."""
    base = tmp_path_factory.mktemp("claimed")
    corpus = base / "corpus"
    corpus.mkdir()
    (corpus / "microcytosis.md").write_text(article("microcytosis", "What are the causes of chronic microcytosis?", MICRO_BODY, status="approved"))
    (corpus / "iron-treatment.md").write_text(article("iron-treatment", "How is iron deficiency treated?", TREAT_BODY, status="approved"))
    root = base / "index"
    proc = medkb("index", str(corpus), "--index-dir", str(root))
    assert proc.returncode == 0, proc.stderr
    return root


def test_search_json_shows_the_derived_status_never_the_front_matters_claim(claimed_index):
    proc = medkb("search", "causes of chronic microcytosis", "-k", "3", "--json", "--index-dir", str(claimed_index))
    assert proc.returncode == 0, proc.stderr
    out = json.loads(proc.stdout)
    assert out["results"], "the query finds passages"
    for passage in out["results"]:  # the API's shape: the status derived from the (empty) review log
        assert passage["review_status"] == "submitted" and passage["caution"] and passage["review"]["approved"] is False, passage
    assert '"review_status": "approved"' not in proc.stdout, "no reviewer approved these articles"


def test_search_without_k_is_never_refused_for_a_k_it_was_not_given(claimed_index):
    """`medkb search` shows 5 passages by default: with MEDKB_MAX_K=3 it refused every search without -k
    ('-k between 1 and 3'), after loading the model."""
    limits = {"MEDKB_MAX_K": "3", "MEDKB_DEFAULT_K": "3"}
    proc = medkb("search", "iron deficiency", "--json", "--index-dir", str(claimed_index), env=limits)
    assert proc.returncode == 0, proc.stderr
    assert 0 < len(json.loads(proc.stdout)["results"]) <= 3
    proc = medkb("search", "iron deficiency", "-k", "4", "--index-dir", str(claimed_index), env=limits)
    assert proc.returncode == 2 and "-k between 1 and 3" in one_clear_line(proc, "medkb search:")


@pytest.fixture
def small_corpus(tmp_path) -> Path:
    corpus = tmp_path / "corpus"
    corpus.mkdir()
    (corpus / "microcytosis.md").write_text(article("microcytosis", "What are the causes of chronic microcytosis?", MICRO_BODY))
    return corpus


def damaged(path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"this is not a SQLite database, whatever its name says\n" * 20)
    return path


def test_index_with_a_damaged_review_log_is_one_line(small_corpus, tmp_path):
    log = damaged(tmp_path / "reviews.sqlite")  # beside the index root: the default review log
    proc = medkb("index", str(small_corpus), "--index-dir", str(tmp_path / "index"))
    assert proc.returncode == 2
    one_clear_line(proc, "review log", str(log), "cannot be used")


def test_index_refuses_an_empty_review_log_and_leaves_it(small_corpus, tmp_path):
    """A 0-byte file where the review log should be is not a log: one line naming it, exit 2,
    before any work (nothing is built), the file left as it is; SQLite made an empty log of it
    and the build went on, every article then shown as never reviewed. Removed, a new log."""
    log = tmp_path / "reviews.sqlite"  # beside the index root: the default review log
    log.touch()
    proc = medkb("index", str(small_corpus), "--index-dir", str(tmp_path / "index"))
    assert proc.returncode == 2, proc.stderr
    err = one_clear_line(proc, f"medkb index: {log} is an empty file (0 bytes), not a review log; it is left as it is")
    assert len(err.strip().splitlines()) == 1, err
    assert log.stat().st_size == 0 and not list(tmp_path.glob("reviews.sqlite-*")) and not (tmp_path / "index" / "current").exists()
    log.unlink()
    proc = medkb("index", str(small_corpus), "--index-dir", str(tmp_path / "index"))
    assert proc.returncode == 0 and log.stat().st_size > 0, proc.stderr


def test_index_whose_review_log_is_emptied_during_the_build_says_so(small_corpus, tmp_path):
    """The review report after a build (each build, under --watch too) refuses a log emptied since
    the command's check, as the check does, in one line; the build is published, the file left."""
    log = tmp_path / "reviews.sqlite"
    script = ("import sys, fake_model_cli, indexer.build as b\n"
              "real = b.build_index\n"
              "def emptying(*a, **k):\n"
              "    report = real(*a, **k)\n"
              f"    open({str(log)!r}, 'wb').close()\n"
              "    return report\n"
              "b.build_index = emptying\n"
              "from medkb.cli import main\n"
              "sys.exit(main(sys.argv[1:]))\n")
    proc = subprocess.run([sys.executable, "-c", script, "index", str(small_corpus), "--index-dir", str(tmp_path / "index")],
                          capture_output=True, text=True, cwd=REPO, env=ENV, timeout=120)
    assert proc.returncode == 2, proc.stderr
    one_clear_line(proc, f"medkb index: {log} is an empty file (0 bytes), not a review log; it is left as it is",
                   "the build is published, but its articles' versions are not recorded")
    assert log.stat().st_size == 0 and not list(tmp_path.glob("reviews.sqlite-*")) and (tmp_path / "index" / "current").exists()


def test_index_with_a_damaged_build_cache_is_one_line(small_corpus, tmp_path):
    cache = damaged(tmp_path / "index" / "cache" / "build-cache.sqlite")
    proc = medkb("index", str(small_corpus), "--index-dir", str(tmp_path / "index"))
    assert proc.returncode == 2
    err = one_clear_line(proc, "build cache", str(cache.parent), "cannot be used")
    assert "MEDKB_BUILD_CACHE_MB=0" in err, "says how to build without it"


@pytest.mark.parametrize("where", ["a-file/index", "a-file"])
def test_index_into_a_folder_that_cannot_be_written_is_one_line(small_corpus, tmp_path, where):
    (tmp_path / "a-file").write_text("a file, not a folder\n")
    root = tmp_path / where
    proc = medkb("index", str(small_corpus), "--index-dir", str(root))
    assert proc.returncode == 2
    one_clear_line(proc, "medkb index:", str(root))


def test_search_with_a_damaged_review_log_is_one_line(claimed_index, tmp_path):
    log = damaged(tmp_path / "reviews.sqlite")
    proc = medkb("search", "microcytosis", "--index-dir", str(claimed_index), env={"MEDKB_REVIEWS_DB": str(log)})
    assert proc.returncode == 2
    one_clear_line(proc, "medkb search:", "review log", str(log))


def test_search_refuses_an_empty_review_log_and_leaves_it(claimed_index, tmp_path):
    """A 0-byte review log is one line naming it and exit 2, before the model loads, and the file is
    left as it is; SQLite made an empty log of it and search showed every article as never reviewed."""
    log = tmp_path / "reviews.sqlite"
    log.touch()
    proc = medkb("search", "microcytosis", "--index-dir", str(claimed_index), env={"MEDKB_REVIEWS_DB": str(log)})
    assert proc.returncode == 2 and proc.stdout == "", proc.stderr
    err = one_clear_line(proc, f"medkb search: {log} is an empty file (0 bytes), not a review log; it is left as it is")
    assert len(err.strip().splitlines()) == 1, err
    assert log.stat().st_size == 0 and [p.name for p in tmp_path.iterdir()] == ["reviews.sqlite"]


@pytest.mark.parametrize("store, variable", [("review log", "MEDKB_REVIEWS_DB"), ("account store", "MEDKB_ACCOUNTS_DB")])
def test_serve_with_a_damaged_state_file_is_one_line_before_uvicorn_starts(claimed_index, tmp_path, store, variable):
    path = damaged(tmp_path / "state.sqlite")
    proc = medkb("serve", "--index-dir", str(claimed_index), "--port", "1", env={variable: str(path)}, timeout=60)
    assert proc.returncode == 2
    err = one_clear_line(proc, "medkb serve:", store, str(path))
    assert "Uvicorn" not in err and "startup" not in err.lower(), "refused before the server starts"


@pytest.mark.parametrize("store, variable", [("review log", "MEDKB_REVIEWS_DB"), ("account store", "MEDKB_ACCOUNTS_DB"),
                                             ("answer store", "MEDKB_ANSWERS_DB")])
def test_serve_refuses_an_empty_state_file_and_leaves_it(claimed_index, tmp_path, store, variable):
    """A 0-byte file where the review log, the accounts or the answer store (permalinks and
    feedback) should be is not a store (as `medkb users` says): one line naming it, exit 2, before
    uvicorn starts; SQLite made an empty store of it."""
    path = tmp_path / "state.sqlite"
    path.touch()
    proc = medkb("serve", "--index-dir", str(claimed_index), "--port", "1", env={variable: str(path)}, timeout=60)
    assert proc.returncode == 2, proc.stderr
    article = "an" if store in ("account store", "answer store") else "a"
    err = one_clear_line(proc, f"medkb serve: {path} is an empty file (0 bytes), not {article} {store}; it is left as it is")
    assert len(err.strip().splitlines()) == 1 and "Uvicorn" not in err, err
    assert path.stat().st_size == 0 and [p.name for p in tmp_path.iterdir()] == ["state.sqlite"]


def test_serve_with_an_onnx_folder_that_cannot_be_used_is_one_line_before_uvicorn_starts(small_corpus, tmp_path):
    """MEDKB_ONNX_DIR naming a file: the server's startup failed with a traceback from mkdir."""
    onnx = {"MEDKB_ENCODER": "onnx-fp32"}
    root = tmp_path / "index"
    assert medkb("index", str(small_corpus), "--index-dir", str(root), env=onnx).returncode == 0
    (tmp_path / "a-file").write_text("a file, not a folder\n")
    proc = medkb("serve", "--index-dir", str(root), "--port", "1", env={**onnx, "MEDKB_ONNX_DIR": str(tmp_path / "a-file")}, timeout=60)
    assert proc.returncode == 2
    err = one_clear_line(proc, "medkb serve:", str(tmp_path / "a-file"), "MEDKB_ONNX_DIR")
    assert "Uvicorn" not in err and "startup" not in err.lower(), "refused before the server starts"


@pytest.mark.parametrize("command", ["index", "search"])
def test_index_and_search_with_an_onnx_folder_that_cannot_be_used_are_one_line(small_corpus, tmp_path, monkeypatch, capsys, command):
    """In-process, the model's loader making its export as the real one does (with a stand-in
    exporter): `medkb index` ended in a traceback, and `medkb search` blamed the model folder."""
    import indexer.embedding
    from indexer.onnx_embedding import ensure_onnx_model
    from medkb import cli

    model = tmp_path / "model"
    model.mkdir()
    (model / "model.safetensors").write_bytes(b"weights")

    def load(model_dir=None, encoder=None, onnx_dir=None, **_):
        ensure_onnx_model(model, "fp32", onnx_dir, exporter=lambda source, out: out.write_bytes(b"onnx"))
        raise AssertionError("the export folder is a file: the export cannot have been kept")

    (tmp_path / "a-file").write_text("a file, not a folder\n")
    monkeypatch.setenv("MEDKB_INDEX_DIR", str(tmp_path / "index"))
    monkeypatch.setenv("MEDKB_ENCODER", "onnx-fp32")
    if command == "search":  # an index this encoder may search (search checks the index before it makes the model)
        from indexer.embedding import ModelInfo

        from fakes import FakeEmbedder, fake_for_encoder

        monkeypatch.setattr(indexer.embedding, "load_embedder", lambda model_dir=None, encoder=None, **_: fake_for_encoder(encoder))
        monkeypatch.setattr(indexer.embedding, "model_checksum", lambda path: FakeEmbedder.checksum)
        monkeypatch.setattr(indexer.embedding, "model_identity", lambda model_dir=None, encoder=None: ModelInfo.of(fake_for_encoder(encoder)))
        monkeypatch.setattr(indexer.embedding, "load_token_counter", lambda model_dir=None: FakeEmbedder().count_tokens)
        assert cli.main(["index", str(small_corpus)]) == 0
        capsys.readouterr()
    monkeypatch.setattr(indexer.embedding, "load_embedder", load)
    monkeypatch.setenv("MEDKB_ONNX_DIR", str(tmp_path / "a-file"))
    assert cli.main(["index", str(small_corpus)] if command == "index" else ["search", "iron"]) == 2
    err = capsys.readouterr().err
    assert f"medkb {command}: cannot keep the ONNX export in {tmp_path / 'a-file'}" in err and "MEDKB_ONNX_DIR" in err
    if command == "index":
        assert not (tmp_path / "index" / "current").exists()


def test_import_into_a_folder_that_cannot_be_made_is_one_line(tmp_path):
    (tmp_path / "a-file").write_text("a file, not a folder\n")
    out = tmp_path / "a-file" / "articles"
    proc = medkb("import", "pubmed", "/work/shared/cases/07-pubmed-retracted/retracted.xml", "--out", str(out), "--quiet")
    assert proc.returncode == 2
    one_clear_line(proc, "medkb import:", str(out))


@pytest.mark.parametrize("port", ["99999", "65536", "-1", "http"])
def test_serve_refuses_a_port_that_does_not_exist(claimed_index, port):
    # 99999 was taken modulo 65536: the server said "on http://127.0.0.1:99999" and listened on 34463.
    proc = medkb("serve", "--index-dir", str(claimed_index), "--port", port, timeout=60)
    assert proc.returncode == 2
    err = one_clear_line(proc, "--port", "65535")
    assert "serving" not in err and "Uvicorn" not in err


@pytest.mark.parametrize("workers", ["1", "2"])
def test_serve_on_a_port_in_use_says_so_before_it_loads_anything(claimed_index, workers):
    # With one process uvicorn bound the port only after the app had loaded the model and the
    # index, and "serving ... on <url>" had been printed for a server that never served.
    taken = socket.socket()
    taken.bind(("127.0.0.1", 0))
    taken.listen()
    try:
        proc = medkb("serve", "--index-dir", str(claimed_index), "--port", str(taken.getsockname()[1]), "--workers", workers, timeout=60)
    finally:
        taken.close()
    assert proc.returncode == 2
    err = one_clear_line(proc, "medkb serve: cannot listen on 127.0.0.1:", "in use")
    assert "serving" not in err and "Started server process" not in err and "model" not in err.lower()


@pytest.mark.parametrize("tokens", ["0", "-5", "63", "255", "5000"])
def test_index_refuses_a_chunk_budget_the_model_cannot_read_or_the_chunker_cannot_keep(small_corpus, tmp_path, tokens):
    # Above the model's window the rest of each chunk was never embedded; below the passage
    # minimum the flag was ignored. Either way the build went on as if it had been honoured.
    proc = medkb("index", str(small_corpus), "--index-dir", str(tmp_path / "index"), "--max-tokens", tokens)
    assert proc.returncode == 2
    one_clear_line(proc, "--max-tokens", "64", "254")
    assert not (tmp_path / "index" / "current").exists(), "nothing was built"


def test_index_accepts_the_ends_of_the_chunk_budget(small_corpus, tmp_path):
    for tokens in ("64", "254"):
        proc = medkb("index", str(small_corpus), "--index-dir", str(tmp_path / f"index-{tokens}"), "--max-tokens", tokens)
        assert proc.returncode == 0, proc.stderr


@pytest.mark.parametrize("flag, status", [("--help", 0), ("--no-such-flag", 2)])
def test_the_drug_table_script_reads_its_arguments_before_writing_anything(flag, status):
    # `python -m retrieval.drugs --help` rewrote the committed table retrieval/data/drug_names.tsv.gz.
    table = REPO / "retrieval" / "data" / "drug_names.tsv.gz"
    before = table.stat().st_mtime_ns
    proc = subprocess.run([sys.executable, "-m", "retrieval.drugs", flag], capture_output=True, text=True, cwd=REPO, env=ENV, timeout=120)
    assert proc.returncode == status and "usage" in (proc.stdout + proc.stderr)
    assert table.stat().st_mtime_ns == before, "the table was not written"


@pytest.mark.parametrize("argv, flag", [
    (["eval", "--limit", "0"], "--limit"),  # ran every query
    (["eval", "--limit", "-1"], "--limit"),  # ran all but the last (a Python slice)
    (["eval", "--depth", "0"], "--depth"),  # scored 0.0000 everywhere
    (["bench", "--queries", "0"], "--queries"),
    (["bench", "--live", "--live-clients", "0"], "--live-clients"),
    (["index", "--batch-size", "0"], "--batch-size"),
    (["index", "--threads", "0"], "--threads"),
])
def test_counts_below_one_are_refused_not_reinterpreted(tmp_path, argv, flag):
    proc = medkb(*argv, "--model-dir", str(tmp_path))  # refused while reading the arguments: no model is needed
    assert proc.returncode == 2
    one_clear_line(proc, flag, "at least 1")


@pytest.mark.parametrize("flag", ["--out", "--cache-dir"])
def test_eval_into_a_folder_that_cannot_be_made_is_one_line_before_any_work(tmp_path, flag):
    (tmp_path / "a-file").write_text("a file, not a folder\n")
    folders = {"--out": str(tmp_path / "run"), "--cache-dir": str(tmp_path / "cache")}
    folders[flag] = str(tmp_path / "a-file" / "sub") if flag == "--cache-dir" else str(tmp_path / "a-file")
    proc = medkb("eval", "--limit", "2", "--out", folders["--out"], "--cache-dir", folders["--cache-dir"])
    assert proc.returncode == 2
    err = one_clear_line(proc, "medkb eval:", flag, folders[flag])
    assert "embedding" not in err, "refused before anything was indexed"


def test_watch_stops_with_one_line_when_its_corpus_folder_goes_away(small_corpus, tmp_path):
    import shutil
    import time

    proc = subprocess.Popen([*FAKE_CLI, "index", str(small_corpus), "--index-dir", str(tmp_path / "index"), "--watch"], cwd=REPO,
                            env={**ENV, "MEDKB_WATCH_DEBOUNCE_MS": "100"}, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 60
        while not (tmp_path / "index" / "current").exists() and time.monotonic() < deadline:
            time.sleep(0.2)
        published = (tmp_path / "index" / "current").resolve()
        time.sleep(2)  # the watcher is running
        shutil.rmtree(small_corpus)
        _, err = proc.communicate(timeout=60)
    finally:
        proc.kill()
    assert proc.returncode == 2
    assert "Traceback" not in err, err
    assert "corpus directory not found" in err and str(small_corpus) in err and "stopped watching" in err
    assert (tmp_path / "index" / "current").resolve() == published, "the published build keeps serving"


def test_users_add_without_a_password_to_read_is_one_line(tmp_path):
    # No terminal and nothing on stdin (a script without --password-stdin): was an EOFError traceback.
    proc = subprocess.run([*FAKE_CLI, "users", "--accounts-db", str(tmp_path / "accounts.sqlite"), "add", "bob", "--role", "reviewer"],
                          capture_output=True, text=True, cwd=REPO, env=ENV, timeout=60, stdin=subprocess.DEVNULL, start_new_session=True)
    assert proc.returncode == 2
    one_clear_line(proc, "medkb users:", "password", "--password-stdin")


def test_ctrl_c_is_a_quiet_exit_130(tmp_path):
    import select
    import signal
    import time

    proc = subprocess.Popen([*FAKE_CLI, "users", "--accounts-db", str(tmp_path / "accounts.sqlite"), "add", "bob", "--role", "reviewer"],
                            cwd=REPO, env=ENV, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, start_new_session=True,
                            # A background job's children inherit SIGINT ignored (POSIX shells do that): hear it, as a terminal's command would.
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    err = b""
    deadline = time.monotonic() + 60
    while b"password for bob" not in err and time.monotonic() < deadline:  # wait for the prompt; stdin stays open
        if select.select([proc.stderr], [], [], 0.5)[0]:
            err += os.read(proc.stderr.fileno(), 4096)
    assert b"password for bob" in err, err
    proc.send_signal(signal.SIGINT)
    proc.wait(timeout=30)
    err = (err + proc.stderr.read()).decode()
    proc.stdin.close()
    assert proc.returncode == 130 and "Traceback" not in err and "interrupted" in err, err


@pytest.mark.parametrize("argv", [["search", "iron"], ["eval", "--limit", "2", "--corpus", str(REPO / "corpus")], ["bench", "--sizes", "default", "--no-http"], ["train-ranker", "--collections", "gold"]])
@pytest.mark.parametrize("folder", ["missing", "not-a-model"])
def test_a_model_folder_that_is_not_a_model_is_one_line(claimed_index, tmp_path, argv, folder):
    model_dir = tmp_path / folder
    if folder == "not-a-model":
        model_dir.mkdir()
        (model_dir / "notes.txt").write_text("no model here\n")
    # The real command line (the fake one ignores --model-dir); it stops before loading anything heavy.
    proc = subprocess.run([sys.executable, "-m", "medkb.cli", *argv, "--model-dir", str(model_dir)], capture_output=True, text=True, cwd=tmp_path,
                          env={**ENV, "MEDKB_INDEX_DIR": str(claimed_index), "MEDKB_ENCODER": "onnx-fp32"}, timeout=300)
    assert proc.returncode == 2
    one_clear_line(proc, f"medkb {argv[0]}:", str(model_dir))


def test_eval_without_its_corpus_is_one_line(tmp_path):
    # Run outside the project folder, the default corpus ("corpus") is not there: was a FileNotFoundError traceback.
    proc = subprocess.run([*FAKE_CLI, "eval", "--limit", "2"], capture_output=True, text=True, cwd=tmp_path, env=ENV, timeout=120)
    assert proc.returncode == 2
    one_clear_line(proc, "medkb eval:", "corpus directory not found", "--corpus")


def test_bench_refuses_an_unknown_size_instead_of_measuring_nothing(tmp_path):
    proc = medkb("bench", "--sizes", "default,medquadd", "--no-http", "--out", str(tmp_path / "bench.json"))
    assert proc.returncode == 2
    one_clear_line(proc, "medquadd", "default, medquad, synthetic, import, fresh")
    assert not (tmp_path / "bench.json").exists()


@pytest.mark.parametrize("argv", [["bench", "--sizes", "synthetic", "--vectors", "100", "--queries", "5", "--no-http"], ["bench", "--live"]])
def test_bench_output_that_cannot_be_written_is_one_line_before_measuring(tmp_path, argv):
    # Was a traceback after the whole run (half an hour of measurements lost at MedQuAD scale).
    (tmp_path / "a-file").write_text("a file, not a folder\n")
    out = tmp_path / "a-file" / "bench.json"
    proc = medkb(*argv, "--out", str(out), "--medquad-corpus", str(tmp_path))
    assert proc.returncode == 2
    err = one_clear_line(proc, "medkb bench:", str(out))
    assert "synthetic vectors" not in err and "live:" not in err, "refused before measuring"


@pytest.mark.parametrize("argv, words", [(["--minutes", "0"], "--minutes"), (["--ask-share", "1.5"], "--ask-share"),
                                         (["--out", "a-file/figures.json"], "cannot make its folder")])
def test_the_load_test_checks_its_arguments_before_starting_a_server(tmp_path, argv, words):
    (tmp_path / "a-file").write_text("a file, not a folder\n")
    proc = subprocess.run([sys.executable, "-m", "evals.loadtest", "--index-dir", str(tmp_path / "no-index"), *argv], capture_output=True, text=True,
                          cwd=tmp_path, env=ENV, timeout=120)
    assert proc.returncode == 2
    err = one_clear_line(proc, words)
    assert "starting medkb serve" not in err


@pytest.mark.parametrize("module, argv", [("evals.answer_bench", ["--index-dir", "no-index", "--out", "a-file/figures.json"]),
                                          ("evals.encoder_compare", ["--out", "a-file/figures.json"]),
                                          ("evals.encoder_compare", ["--quality", "--runs", "a-file/runs"])])
def test_benchmarks_refuse_an_output_they_cannot_write_before_measuring(tmp_path, module, argv):
    (tmp_path / "a-file").write_text("a file, not a folder\n")
    proc = subprocess.run([sys.executable, "-m", module, *argv], capture_output=True, text=True, cwd=tmp_path, env=ENV, timeout=120)
    assert proc.returncode == 2
    one_clear_line(proc, "cannot make", "a-file")


def test_encoder_quality_runs_land_where_the_user_asked(tmp_path, monkeypatch):
    """`python -m evals.encoder_compare --quality --runs R --dataset D` started outside the
    repository: each `medkb eval` ran in the repository with the relative paths as given, so its
    runs landed in (and its datasets were looked for in) the repository, and reading them back failed."""
    import argparse

    from evals import encoder_compare

    calls = []

    def fake_run(argv, cwd, **kwargs):
        calls.append(argv)
        out = Path(argv[argv.index("--out") + 1])
        assert out.is_absolute()
        out.mkdir(parents=True)
        (out / "metrics.json").write_text(json.dumps({"means": {"ndcg@10": 0.5}}))

    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(encoder_compare.subprocess, "run", fake_run)
    args = argparse.Namespace(runs=Path("my-runs"), dataset=[Path("sets/mediqa")], rerun=False)
    scores = encoder_compare.quality(args, log=lambda message: None)
    assert set(scores) == {"gold", "mediqa"} and (tmp_path / "my-runs" / "gold-torch" / "metrics.json").exists()
    assert all(str(tmp_path / "sets" / "mediqa") in argv for argv in calls if "--dataset" in argv)


def test_the_load_test_serves_the_index_it_was_given_from_any_folder(tmp_path, monkeypatch):
    # The server started in the repository with --index-dir as given: a relative one named the repository's index.
    from evals import loadtest

    seen = {}

    def fake_popen(argv, cwd, **kwargs):
        seen["index"] = argv[argv.index("--index-dir") + 1]
        return None

    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(loadtest.subprocess, "Popen", fake_popen)
    loadtest.start_server(Path("my-index"), tmp_path, keep_start_limit=False)
    assert seen["index"] == str(tmp_path / "my-index")


def test_bench_build_sample_zero_turns_the_build_off_and_a_negative_one_is_refused(tmp_path):
    """`--build-sample 0` is how a MedQuAD bench skips its build measurement (README); below 0 is refused."""
    from medkb.cli import build_parser

    assert build_parser().parse_args(["bench", "--build-sample", "0"]).build_sample == 0
    proc = medkb("bench", "--build-sample", "-1", "--model-dir", str(tmp_path))
    assert proc.returncode == 2
    one_clear_line(proc, "--build-sample", "0 (none) or more")


def _fake_model(monkeypatch, load) -> None:
    """Stand the fake embedder in for the packaged model wherever medkb looks it up: `load(model_dir,
    encoder, **kwargs)` replaces load_embedder; identity, checksum and token counts are the fake's."""
    import indexer.embedding as embedding
    from indexer.embedding import ModelInfo

    from fakes import FakeEmbedder, fake_for_encoder

    monkeypatch.setattr(embedding, "load_embedder", load)
    monkeypatch.setattr(embedding, "model_checksum", lambda path: FakeEmbedder.checksum)
    monkeypatch.setattr(embedding, "model_identity", lambda model_dir=None, encoder=None: ModelInfo.of(fake_for_encoder(encoder)))
    monkeypatch.setattr(embedding, "load_token_counter", lambda model_dir=None: FakeEmbedder().count_tokens)


@pytest.mark.parametrize("argv, env, threads", [
    ([], {"MEDKB_BUILD_THREADS": "3"}, 3),
    (["--threads", "2"], {"MEDKB_BUILD_THREADS": "3"}, 2),  # the flag wins for this build
    ([], {}, None),  # one per core this process may use
])
def test_a_build_runs_as_many_model_calls_as_it_is_told(small_corpus, tmp_path, monkeypatch, argv, env, threads):
    from medkb.cli import main

    from fakes import fake_for_encoder

    asked: list[int] = []

    def load(model_dir=None, encoder=None, document_threads=1, **_):
        asked.append(document_threads)
        return fake_for_encoder(encoder)

    _fake_model(monkeypatch, load)
    monkeypatch.setenv("MEDKB_ENCODER", "torch")
    monkeypatch.delenv("MEDKB_BUILD_THREADS", raising=False)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    assert main(["index", str(small_corpus), "--index-dir", str(tmp_path / "index"), *argv]) == 0
    import joblib

    assert asked == [threads or joblib.cpu_count()], "the model that embedded the build was made with that many"


def test_search_refuses_another_encoders_index_before_making_its_model(small_corpus, tmp_path, monkeypatch, capsys):
    """After the default moved to onnx-int8, `medkb search` on an index built with onnx-fp32 says
    what to run without first exporting and quantizing the int8 model it cannot use (seconds of
    CPU and 160 MB written, or, in a folder it may not write, a refusal that names the folder
    instead of the real problem)."""
    from medkb.cli import main

    from fakes import fake_for_encoder

    loaded: list[str | None] = []

    def load(model_dir=None, encoder=None, **_):
        loaded.append(encoder)
        return fake_for_encoder(encoder)

    _fake_model(monkeypatch, load)
    index_dir = tmp_path / "index"
    monkeypatch.setenv("MEDKB_ENCODER", "onnx-fp32")
    assert main(["index", str(small_corpus), "--index-dir", str(index_dir)]) == 0
    loaded.clear()
    capsys.readouterr()
    monkeypatch.setenv("MEDKB_ENCODER", "onnx-int8")
    assert main(["search", "iron deficiency", "--index-dir", str(index_dir)]) == 2
    err = capsys.readouterr().err
    assert "onnx-fp32" in err and "medkb index" in err and err.count("\n") == 1
    assert loaded == [], "no model was made for an index that cannot use it"
    monkeypatch.setenv("MEDKB_ENCODER", "onnx-fp32")
    assert main(["search", "iron deficiency", "--index-dir", str(index_dir)]) == 0, "the build's own encoder still searches it"
    assert loaded == ["onnx-fp32"]


def test_the_advice_to_rebuild_another_encoder_s_index_rebuilds_the_configured_corpus(small_corpus, tmp_path):
    """Refused for another encoder, `medkb search` says what to run; run as printed (from the
    repository, whose own ./corpus is not the configured one), it rebuilds the corpus in
    MEDKB_CORPUS and the search answers. The advice was `medkb index corpus`: the wrong corpus."""
    import re

    env = {"MEDKB_CORPUS": str(small_corpus), "MEDKB_INDEX_DIR": str(tmp_path / "index")}
    built = medkb("index", env={**env, "MEDKB_ENCODER": "torch"})
    assert built.returncode == 0, built.stderr
    int8 = {**env, "MEDKB_ENCODER": "onnx-int8"}
    refused = medkb("search", "microcytosis", env=int8)
    assert refused.returncode == 2 and "built with the torch encoder" in refused.stderr, refused.stderr
    advice = re.search(r"Rebuild it with `([^`]+)`", refused.stderr).group(1)
    words = advice.split()
    assigned = dict(w.split("=", 1) for w in words[:words.index("medkb")])
    assert assigned == {"MEDKB_ENCODER": "onnx-int8"}, advice
    rebuilt = medkb(*words[words.index("medkb") + 1:], env={**env, **assigned})
    assert rebuilt.returncode == 0, rebuilt.stderr
    manifest = json.loads((tmp_path / "index" / "current" / "manifest.json").read_text())
    assert manifest["model"]["encoder"] == "onnx" and manifest["counts"]["articles"] == 1, manifest["counts"]
    found = medkb("search", "microcytosis", env=int8)
    assert found.returncode == 0 and " 1. " in found.stdout, found.stderr


def test_the_advice_to_rebuild_names_an_index_given_by_its_folder(small_corpus, tmp_path):
    """An index given with --index-dir (not MEDKB_INDEX_DIR) and refused for another encoder: the
    advice names that folder, so running it as printed rebuilds that index, not var/index."""
    import re

    index_dir = tmp_path / "elsewhere"
    env = {"MEDKB_CORPUS": str(small_corpus)}
    assert medkb("index", "--index-dir", str(index_dir), env={**env, "MEDKB_ENCODER": "torch"}).returncode == 0
    int8 = {**env, "MEDKB_ENCODER": "onnx-int8"}
    refused = medkb("search", "microcytosis", "--index-dir", str(index_dir), env=int8)
    assert refused.returncode == 2, refused.stderr
    advice = re.search(r"Rebuild it with `([^`]+)`", refused.stderr).group(1)
    assert f"--index-dir {index_dir.resolve()}" in advice, advice
    words = advice.split()
    assigned = dict(w.split("=", 1) for w in words[:words.index("medkb")])
    rebuilt = medkb(*words[words.index("medkb") + 1:], env={**env, **assigned})
    assert rebuilt.returncode == 0, rebuilt.stderr
    found = medkb("search", "microcytosis", "--index-dir", str(index_dir), env=int8)
    assert found.returncode == 0 and " 1. " in found.stdout, found.stderr


def test_medkb_import_refuses_to_mark_articles_approved(tmp_path):
    """`medkb import --status approved` is an argument error (exit 2), and no article is written."""
    source = tmp_path / "corpus.jsonl"
    source.write_text('{"_id": "d1", "title": "Ferritin", "text": "Ferritin reflects iron stores."}\n', encoding="utf-8")
    proc = medkb("import", "beir", str(source), "--out", str(tmp_path / "out"), "--status", "approved")
    assert proc.returncode == 2
    one_clear_line(proc, "--status", "approved")
    assert not (tmp_path / "out").exists()
    assert medkb("import", "beir", str(source), "--out", str(tmp_path / "out"), "--status", "under_review").returncode == 0
    assert "review_status: under_review" in (tmp_path / "out" / "d1.md").read_text(encoding="utf-8")
