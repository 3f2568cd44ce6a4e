"""A damaged index does not stop service, and builds do not race.

Every data file of a build is listed in its manifest with its size and SHA-256; a published
build that fails the check is refused, naming the file, and loading falls back to the newest
intact kept build. `--if-stale` rebuilds a damaged index. A corrupt manifest is one line from
every command, never a traceback. Two builds at once run one after the other (a real second
process waits on the lock, or leaves at once with --no-wait), and the lock dies with its holder.
"""

import json
import os
import shutil
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from indexer import index_store
from indexer.build import build_index, staleness
from indexer.chunking import ChunkerSettings
from indexer.embedding import ModelInfo
from indexer.index_store import IndexCorrupt, IndexMismatch, check_build, choose_build, load_index

from fakes import FakeEmbedder

TESTS = Path(__file__).resolve().parent
REPO = TESTS.parent
ENV = dict(os.environ, PYTHONPATH=os.pathsep.join([str(TESTS), str(REPO)]))
FAKE_CLI = [sys.executable, str(TESTS / "fake_model_cli.py")]
LEXICAL_FILES = ("lexical/data.csc.index.npy", "lexical/indices.csc.index.npy", "lexical/indptr.csc.index.npy",
                 "lexical/params.index.json", "lexical/vocab.index.json")
EVERY_DATA_FILE = (*index_store.DATA_FILES, *index_store.OPTIONAL_FILES, *LEXICAL_FILES)  # a build by `medkb index` has every optional file


def edit_corpus(corpus: Path, words: str) -> None:
    path = corpus / "microcytosis.md"
    path.write_text(path.read_text().replace("first test", words))


@pytest.fixture(scope="module")
def two_builds_template(tmp_path_factory):
    """An index root holding two intact builds of different corpora, the second published. Built once; copy it."""
    from sample_articles import MICRO_BODY, TREAT_BODY, article

    base = tmp_path_factory.mktemp("two-builds")
    corpus = base / "corpus"
    corpus.mkdir()
    (corpus / "microcytosis.md").write_text(article("microcytosis", "What are the causes of chronic microcytosis?", MICRO_BODY))
    (corpus / "iron-treatment.md").write_text(article("iron-treatment", "How is iron deficiency treated?", TREAT_BODY, status="submitted"))
    root = base / "index"
    first = build_index([corpus], root, FakeEmbedder()).directory
    edit_corpus(corpus, "first step")
    second = build_index([corpus], root, FakeEmbedder()).directory
    return root, first.name, second.name


@pytest.fixture
def two_builds(two_builds_template, tmp_path):
    """(root, older build, newer published build): a private copy of the template."""
    template, first, second = two_builds_template
    root = tmp_path / "index"
    shutil.copytree(template, root, symlinks=True)
    assert index_store.current_dir(root).name == second
    return root, root / "builds" / first, root / "builds" / second


def damage(path: Path, how: str) -> None:
    if how == "delete":
        path.unlink()
    elif how == "truncate":
        with open(path, "r+b") as fh:
            fh.truncate(path.stat().st_size // 2)
    elif how == "flip":  # same size, other bytes: only the hash can tell
        data = bytearray(path.read_bytes())
        data[len(data) // 2] ^= 0xFF
        path.write_bytes(bytes(data))
    else:
        raise AssertionError(how)


def run(cmd: list[str], **kwargs) -> subprocess.CompletedProcess:
    return subprocess.run(cmd, capture_output=True, text=True, cwd=REPO, env=ENV, timeout=120, **kwargs)


# ---------------------------------------------------------------- the manifest's checksums


def test_the_manifest_lists_every_data_file_with_size_and_sha256(two_builds):
    import hashlib

    root, _, newest = two_builds
    manifest = load_index(root).manifest
    assert manifest.format_version == index_store.FORMAT_VERSION == 5  # 5: article authors
    assert [f.path for f in manifest.files] == list(EVERY_DATA_FILE)
    on_disk = sorted(p.relative_to(newest).as_posix() for p in newest.rglob("*") if p.is_file())
    assert on_disk == sorted([*EVERY_DATA_FILE, "manifest.json"]), "every file of a build but the manifest is listed"
    for entry in manifest.files:
        data = (newest / entry.path).read_bytes()
        assert entry.size == len(data) and entry.sha256 == hashlib.sha256(data).hexdigest()
    raw = json.loads((newest / "manifest.json").read_text())
    assert raw["files"][0] == {"path": "vectors.faiss", "size": manifest.files[0].size, "sha256": manifest.files[0].sha256}


@pytest.mark.parametrize("how", ["truncate", "flip", "delete"])
@pytest.mark.parametrize("name", EVERY_DATA_FILE)
def test_a_damaged_file_is_refused_by_name_and_the_older_build_serves(two_builds, name, how):
    root, older, newest = two_builds
    damage(newest / name, how)
    with pytest.raises(IndexCorrupt) as refused:
        check_build(newest)
    assert name in str(refused.value) and newest.name in str(refused.value) and "medkb index corpus" in str(refused.value)
    assert "missing" in str(refused.value) if how == "delete" else True
    assert "SHA-256" in str(refused.value) if how == "flip" else True

    loaded = load_index(root, ModelInfo.of(FakeEmbedder()))
    assert loaded.directory == older, "the newest intact build serves"
    assert loaded.chunks and loaded.faiss_index.ntotal == len(loaded.chunks)
    message = loaded.fallback
    assert message.count("\n") == 0
    assert f"serving build {older.name}" in message and name in message and newest.name in message and "medkb index corpus" in message
    assert choose_build(root)[0] == older
    assert index_store.current_dir(root) == newest, "loading never moves the published link"


def test_an_intact_published_build_serves_with_no_fallback(two_builds):
    root, _, newest = two_builds
    loaded = load_index(root)
    assert loaded.directory == newest and loaded.fallback is None


def test_when_every_kept_build_is_damaged_the_error_is_clear(two_builds):
    root, older, newest = two_builds
    damage(newest / "vectors.faiss", "flip")
    damage(older / "chunks.jsonl", "truncate")
    with pytest.raises(IndexCorrupt) as info:
        load_index(root)
    message = str(info.value)
    assert "vectors.faiss" in message and f"{older.name}: " in message and "chunks.jsonl" in message
    assert "no other kept build is intact" in message
    assert message.endswith(index_store.rebuild_advice(root)) and f"--index-dir {root}" in message, "the advice rebuilds this index, not the default one"
    assert "\n" not in message


def test_only_one_build_and_it_is_damaged(tiny_corpus, tmp_path, fake_embedder):
    root = tmp_path / "index"
    build = build_index([tiny_corpus], root, fake_embedder).directory
    damage(build / "sections.jsonl", "delete")
    with pytest.raises(IndexCorrupt, match="sections.jsonl is missing, and no other build is kept to fall back on"):
        load_index(root)


def test_a_dangling_current_link_falls_back(two_builds):
    root, older, newest = two_builds
    shutil.rmtree(newest)
    loaded = load_index(root)
    assert loaded.directory == older and "is missing" in loaded.fallback


def test_another_model_is_not_papered_over_by_a_fallback(two_builds):
    """A mismatch is not damage: every build would be as wrong; the message says to rebuild."""
    root, _, _ = two_builds
    with pytest.raises(IndexMismatch, match="dimension 256 != 128"):
        load_index(root, ModelInfo.of(FakeEmbedder(dim=128)))


def test_a_fallback_skips_builds_of_another_model(two_builds, tiny_corpus):
    """Three builds: the newest damaged, the middle one of another model (refused), the oldest intact and served."""
    root, older, newest = two_builds
    other_model = build_index([tiny_corpus], root, FakeEmbedder(dim=128)).directory
    middle = other_model.rename(root / "builds" / (older.name + "~"))  # sorts between the two
    assert index_store.kept_builds(root) == [newest, middle, older]
    (root / "current").unlink()
    os.symlink(os.path.relpath(newest, root), root / "current")
    damage(newest / "chunks.jsonl", "flip")
    loaded = load_index(root, ModelInfo.of(FakeEmbedder()))
    assert loaded.directory == older
    damage(older / "vectors.faiss", "delete")
    with pytest.raises(IndexCorrupt) as info:
        load_index(root, ModelInfo.of(FakeEmbedder()))
    assert f"{middle.name}: the index was built with a different embedding model" in str(info.value)


# ---------------------------------------------------------------- the manifest itself


def _set(manifest: dict, path: str, value) -> dict:
    *parents, last = path.split(".")
    target = manifest
    for p in parents:
        target = target[p]
    if value is DELETE:
        del target[last]
    else:
        target[last] = value
    return manifest


DELETE = object()
MALFORMED = {
    "counts deleted": ("counts", DELETE),
    "files deleted": ("files", DELETE),
    "chunk count as text": ("counts.chunks", "12"),
    "dimension as text": ("model.dim", "256"),
    "normalize as a number": ("model.normalize", 1),
    "files not a list": ("files", {"vectors.faiss": 1}),
    "a data file unlisted": ("files", "drop-first"),
    "a path outside the build": ("files", "escape"),
    "a bad sha256": ("files", "bad-hash"),
    "skipped holding text": ("skipped", ["oops"]),
    "corpus dirs as text": ("corpus.dirs", "corpus"),
    "an unknown field in counts": ("counts.extra", 1),
}


@pytest.mark.parametrize("case", MALFORMED)
def test_a_malformed_manifest_is_corrupt_and_falls_back(two_builds, case):
    root, older, newest = two_builds
    manifest = json.loads((newest / "manifest.json").read_text())
    path, value = MALFORMED[case]
    if value == "drop-first":
        value = manifest["files"][1:]
    elif value == "escape":
        value = [{**manifest["files"][0], "path": "../../etc/passwd"}, *manifest["files"][1:]]
    elif value == "bad-hash":
        value = [{**manifest["files"][0], "sha256": "xyz"}, *manifest["files"][1:]]
    (newest / "manifest.json").write_text(json.dumps(_set(manifest, path, value)))
    with pytest.raises(IndexCorrupt, match="manifest.json is malformed") as info:
        check_build(newest)
    assert "\n" not in str(info.value)
    loaded = load_index(root)
    assert loaded.directory == older and "manifest.json is malformed" in loaded.fallback


@pytest.mark.parametrize("text", ["{not json", "", "[1, 2]", '{"format_version": "4"}', "\xff\xfe"])
def test_an_unreadable_manifest_is_corrupt_and_falls_back(two_builds, text):
    root, older, newest = two_builds
    (newest / "manifest.json").write_bytes(text.encode("latin-1"))
    with pytest.raises(IndexCorrupt, match="manifest.json"):
        check_build(newest)
    assert load_index(root).directory == older


def test_the_previous_format_is_refused_and_stale_never_a_crash(two_builds, tiny_corpus):
    root, _, newest = two_builds
    manifest = json.loads((newest / "manifest.json").read_text())
    manifest["format_version"] = 3
    del manifest["files"]  # a format-3 build never had them
    (newest / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(IndexMismatch, match=f"has format 3, this medkb reads format {index_store.FORMAT_VERSION}"):
        load_index(root)
    reason = staleness(root, [tiny_corpus], ChunkerSettings(), FakeEmbedder.checksum)
    assert "has format 3" in reason and "Rebuild" not in reason, reason


# ---------------------------------------------------------------- --if-stale


def test_staleness_names_the_damaged_file(tiny_corpus, tmp_path, fake_embedder):
    root = tmp_path / "index"
    build = build_index([tiny_corpus], root, fake_embedder).directory
    assert staleness(root, [tiny_corpus], ChunkerSettings(), fake_embedder.checksum) is None
    damage(build / "lexical" / "vocab.index.json", "flip")
    reason = staleness(root, [tiny_corpus], ChunkerSettings(), fake_embedder.checksum)
    assert "lexical/vocab.index.json does not match its SHA-256" in reason
    assert "no index is published" in staleness(tmp_path / "none", [tiny_corpus], ChunkerSettings(), fake_embedder.checksum)


@pytest.mark.slow  # starts real processes
@pytest.mark.parametrize("how", ["truncate", "flip", "delete", "manifest"])
def test_index_if_stale_rebuilds_a_damaged_index(tiny_corpus, tmp_path, how):
    root = tmp_path / "index"
    index = [*FAKE_CLI, "index", str(tiny_corpus), "--index-dir", str(root), "--if-stale"]
    first = run(index)
    assert first.returncode == 0, first.stderr
    assert run(index).stdout.startswith("index is up to date")
    build = index_store.current_dir(root)
    if how == "manifest":
        (build / "manifest.json").write_text("{not json")
    else:
        damage(build / "chunks.jsonl", how)
    again = run(index)
    assert again.returncode == 0 and "Traceback" not in again.stderr, again.stderr
    assert "up to date" not in again.stdout and "published" in again.stdout
    reason = next(line for line in again.stderr.splitlines() if "rebuilding" in line)
    assert ("manifest.json cannot be read" if how == "manifest" else "chunks.jsonl") in reason and build.name in reason
    rebuilt = load_index(root)
    assert rebuilt.directory != build and rebuilt.fallback is None
    assert run(index).stdout.startswith("index is up to date")


# ---------------------------------------------------------------- every command: one line, no traceback


@pytest.fixture
def corrupt_only_build(tiny_corpus, tmp_path, fake_embedder):
    root = tmp_path / "index"
    build = build_index([tiny_corpus], root, fake_embedder).directory
    manifest = json.loads((build / "manifest.json").read_text())
    manifest["counts"]["chunks"] = "many"
    (build / "manifest.json").write_text(json.dumps(manifest))
    return root


@pytest.mark.slow  # starts real processes
@pytest.mark.parametrize("command", [["serve", "--port", "1"], ["search", "iron"]])
def test_a_corrupt_manifest_is_one_line_from_serve_and_search(corrupt_only_build, command):
    out = run([*FAKE_CLI, *command, "--index-dir", str(corrupt_only_build)])
    assert out.returncode == 2
    assert "Traceback" not in out.stderr
    lines = out.stderr.strip().splitlines()
    assert len(lines) == 1, out.stderr
    assert "manifest.json is malformed" in lines[0] and "Counts.chunks must be int" in lines[0] and "medkb index corpus" in lines[0]


@pytest.mark.slow  # starts real processes
def test_search_serves_the_older_build_and_says_so(two_builds):
    root, older, newest = two_builds
    damage(newest / "vectors.faiss", "truncate")
    out = run([*FAKE_CLI, "search", "microcytosis", "--index-dir", str(root)])
    assert out.returncode == 0 and "Traceback" not in out.stderr, out.stderr
    warning = [line for line in out.stderr.splitlines() if "warning" in line]
    assert len(warning) == 1 and f"serving build {older.name}" in warning[0] and "vectors.faiss has" in warning[0]
    assert "microcytosis" in out.stdout.lower()


@pytest.mark.slow  # starts real processes
def test_serve_serves_the_older_build_and_logs_one_line(two_builds, tmp_path):
    import socket

    import httpx

    root, older, newest = two_builds
    damage(newest / "articles.jsonl", "flip")
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = dict(ENV, MEDKB_CONVERSATIONS_DB=str(tmp_path / "conversations.sqlite"))
    proc = subprocess.Popen([*FAKE_CLI, "serve", "--index-dir", str(root), "--port", str(port), "--log-level", "warning"],
                            cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        deadline = time.time() + 60
        while True:
            assert proc.poll() is None, proc.stdout.read()
            try:
                health = httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=1)
                if health.status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            assert time.time() < deadline, "server did not come up"
            time.sleep(0.2)
        assert health.json()["build"] == older.name
    finally:
        proc.terminate()
        output = proc.communicate(timeout=20)[0]
    assert "Traceback" not in output
    why = [line for line in output.splitlines() if "serving build" in line]
    assert len(why) == 1 and older.name in why[0] and "articles.jsonl does not match its SHA-256" in why[0], output


@pytest.mark.slow  # starts real processes
def test_eval_reports_a_corrupt_cached_index_and_rebuilds_it(tmp_path):
    cache, out = tmp_path / "cache", tmp_path / "run"
    cmd = [*FAKE_CLI, "eval", "--dataset", str(TESTS / "fixtures" / "beir-mini"), "--cache-dir", str(cache), "--out", str(out)]
    first = run(cmd)
    assert first.returncode == 0, first.stderr
    (build,) = [index_store.current_dir(slot) for slot in cache.glob("index-*")]
    (build / "manifest.json").write_text(json.dumps({"format_version": index_store.FORMAT_VERSION, "counts": []}))
    again = run(cmd)
    assert again.returncode == 0 and "Traceback" not in again.stderr, again.stderr
    (line,) = [line for line in again.stderr.splitlines() if "manifest.json" in line]
    assert "building the index" in line and "manifest.json is malformed" in line


# ---------------------------------------------------------------- keeping builds


def test_the_last_keep_builds_builds_are_kept(tiny_corpus, tmp_path, fake_embedder):
    root = tmp_path / "index"
    built = []
    for i in range(5):
        edit_corpus(tiny_corpus, f"first test {i}")
        built.append(build_index([tiny_corpus], root, fake_embedder).directory)
    assert built == sorted(built), "build names sort in the order they were built"
    assert index_store.KEEP_BUILDS == 3
    assert index_store.kept_builds(root) == built[::-1][:3]
    build_index([tiny_corpus], root, fake_embedder, keep_builds=1)
    assert len(index_store.kept_builds(root)) == 1


def test_keep_builds_is_a_setting():
    from medkb.settings import Settings

    assert Settings().keep_builds == index_store.KEEP_BUILDS
    assert Settings.from_env({"MEDKB_KEEP_BUILDS": "5"}).keep_builds == 5


# ---------------------------------------------------------------- concurrent builds, real processes


GATED_BUILD = textwrap.dedent("""
    import sys, time
    from pathlib import Path
    from fakes import FakeEmbedder
    from indexer.build import build_index

    corpus, root, started, go = map(Path, sys.argv[1:5])

    class Gated(FakeEmbedder):
        def encode_documents(self, texts, batch_size=32, progress=None):
            started.write_text("embedding")
            deadline = time.time() + 60
            while not go.exists() and time.time() < deadline:
                time.sleep(0.02)
            return super().encode_documents(texts, batch_size, progress)

    report = build_index([corpus], root, Gated(), on_wait=lambda m: print(m, file=sys.stderr, flush=True))
    print(report.directory)
""")


def start_gated_build(corpus: Path, root: Path, tmp_path: Path, name: str) -> tuple[subprocess.Popen, Path]:
    """A build that holds the lock from its embedding step until `go` exists."""
    started, go = tmp_path / f"{name}-started", tmp_path / f"{name}-go"
    proc = subprocess.Popen([sys.executable, "-c", GATED_BUILD, str(corpus), str(root), str(started), str(go)], env=ENV, cwd=REPO,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 60
    while not started.exists():
        assert proc.poll() is None, proc.communicate()
        assert time.time() < deadline, "the first build never started embedding"
        time.sleep(0.02)
    return proc, go


def wait_for_line(path: Path, text: str, proc: subprocess.Popen) -> str:
    deadline = time.time() + 60
    while True:
        content = path.read_text() if path.exists() else ""
        if text in content:
            return content
        assert proc.poll() is None, f"exited {proc.returncode} before saying {text!r}: {content}"
        assert time.time() < deadline, f"never said {text!r}: {content}"
        time.sleep(0.02)


@pytest.mark.slow  # starts real processes
def test_two_builds_at_once_run_one_after_the_other(tiny_corpus, tmp_path):
    root = tmp_path / "index"
    first, go = start_gated_build(tiny_corpus, root, tmp_path, "first")
    second_log = tmp_path / "second.log"
    edit_corpus(tiny_corpus, "first step")  # the second build reads another corpus
    with open(second_log, "w") as log:
        second = subprocess.Popen([*FAKE_CLI, "index", str(tiny_corpus), "--index-dir", str(root)], cwd=REPO, env=ENV,
                                  stdout=subprocess.PIPE, stderr=log, text=True)
    try:
        said = wait_for_line(second_log, "waiting...", second)
        assert f"another build is running (pid {first.pid}); waiting..." in said
        assert index_store.current_dir(root) is None and second.poll() is None, "the second build waits; nothing is published yet"
        go.touch()
        first_out, first_err = first.communicate(timeout=60)
        second_out, _ = second.communicate(timeout=60)
    finally:
        for p in (first, second):
            if p.poll() is None:
                p.kill()
    assert first.returncode == 0 and second.returncode == 0, (first_err, second_log.read_text())
    first_dir = Path(first_out.strip())
    second_dir = Path(second_out.split("published ", 1)[1].split()[0])
    assert first_dir != second_dir and first_dir.name < second_dir.name
    assert index_store.kept_builds(root) == [second_dir, first_dir] and not list(root.glob(".staging-*"))
    loaded = load_index(root)
    assert loaded.directory == second_dir and loaded.fallback is None
    assert "first step" in " ".join(c.text for c in loaded.chunks), "the published build is the second one, whole"
    assert check_build(first_dir) and (root / ".lock").read_text() == "", "the lock is released and its pid cleared"


@pytest.mark.slow  # starts real processes
def test_a_second_if_stale_build_that_waited_publishes_nothing(tiny_corpus, tmp_path):
    root = tmp_path / "index"
    first, go = start_gated_build(tiny_corpus, root, tmp_path, "first")
    second_log = tmp_path / "second.log"
    with open(second_log, "w") as log:
        second = subprocess.Popen([*FAKE_CLI, "index", str(tiny_corpus), "--index-dir", str(root), "--if-stale"], cwd=REPO, env=ENV,
                                  stdout=subprocess.PIPE, stderr=log, text=True)
    try:
        wait_for_line(second_log, "waiting...", second)
        go.touch()
        first.communicate(timeout=60)
        second_out, _ = second.communicate(timeout=60)
    finally:
        for p in (first, second):
            if p.poll() is None:
                p.kill()
    assert first.returncode == 0 and second.returncode == 0, second_log.read_text()
    assert "up to date" in second_out and "published by another build meanwhile" in second_out
    assert len(index_store.kept_builds(root)) == 1


@pytest.mark.slow  # starts real processes
def test_no_wait_exits_75_while_another_build_runs(tiny_corpus, tmp_path):
    root = tmp_path / "index"
    first, go = start_gated_build(tiny_corpus, root, tmp_path, "first")
    try:
        out = run([*FAKE_CLI, "index", str(tiny_corpus), "--index-dir", str(root), "--no-wait"])
        assert out.returncode == 75, out.stderr
        assert f"another build is running (pid {first.pid})" in out.stderr and "Traceback" not in out.stderr
        assert len(out.stderr.strip().splitlines()) == 1
    finally:
        go.touch()
        first.communicate(timeout=60)
    assert first.returncode == 0
    out = run([*FAKE_CLI, "index", str(tiny_corpus), "--index-dir", str(root), "--no-wait"])
    assert out.returncode == 0, out.stderr


@pytest.mark.slow  # starts real processes
def test_a_killed_build_releases_the_lock_to_the_one_waiting(tiny_corpus, tmp_path):
    root = tmp_path / "index"
    first, _ = start_gated_build(tiny_corpus, root, tmp_path, "first")
    second_log = tmp_path / "second.log"
    with open(second_log, "w") as log:
        second = subprocess.Popen([*FAKE_CLI, "index", str(tiny_corpus), "--index-dir", str(root)], cwd=REPO, env=ENV,
                                  stdout=subprocess.PIPE, stderr=log, text=True)
    try:
        wait_for_line(second_log, "waiting...", second)
        first.send_signal(signal.SIGKILL)
        first.wait(10)
        second_out, _ = second.communicate(timeout=60)
    finally:
        for p in (first, second):
            if p.poll() is None:
                p.kill()
    assert second.returncode == 0, second_log.read_text()
    (published,) = index_store.kept_builds(root)
    assert load_index(root).directory == published and not list(root.glob(".staging-*"))
