"""`medkb index --watch`: a change republishes (debounced, article files only); a build that would
lose an article to errors is withheld and says so; a deletion is published and named."""

import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from indexer import index_store
from indexer.watch import is_article_path, watch_corpus

from live_corpus import make_corpus, write_article

TESTS = Path(__file__).resolve().parent
REPO = TESTS.parent


def wait_for(condition, timeout=30.0, what="condition"):
    deadline = time.time() + timeout
    while not condition():
        assert time.time() < deadline, f"timed out waiting for {what}"
        time.sleep(0.02)


def test_only_article_files_count():
    assert is_article_path("/c/a.md") and is_article_path("sub/b.md")
    assert not any(map(is_article_path, ["/c/.a.md.swp", "/c/a.md~", "/c/.hidden.md", "/c/README.md", "/c/notes.txt", "/c/4913"]))


def test_changes_are_debounced_into_one_rebuild(tmp_path):
    corpus = make_corpus(tmp_path / "corpus", 3)
    calls: list[list[str]] = []
    stop, ready = threading.Event(), threading.Event()
    thread = threading.Thread(target=watch_corpus, args=([corpus], calls.append), kwargs={"debounce_ms": 300, "stop": stop, "ready": ready.set})
    thread.start()
    try:
        assert ready.wait(20)
        (corpus / "notes.txt").write_text("not an article")
        (corpus / ".topic-000.md.swp").write_text("editor junk")
        time.sleep(0.8)
        assert calls == [], "files that are not articles never start a build"
        for i in (0, 1, 2):  # saved together: one build
            write_article(corpus, i, extra=f"Edit {i}.")
            time.sleep(0.05)
        wait_for(lambda: calls, what="a rebuild")
        time.sleep(0.8)
        assert len(calls) == 1 and sorted(Path(p).name for p in calls[0]) == ["topic-000.md", "topic-001.md", "topic-002.md"]
        (corpus / "topic-001.md").unlink()
        wait_for(lambda: len(calls) == 2, what="a rebuild after a deletion")
        assert [Path(p).name for p in calls[1]] == ["topic-001.md"]
    finally:
        stop.set()
        thread.join(10)
    assert not thread.is_alive()


class Lines:
    """A process's output lines, read on a thread."""

    def __init__(self, stream):
        self.lines: list[str] = []
        self._thread = threading.Thread(target=self._read, args=(stream,), daemon=True)
        self._thread.start()

    def _read(self, stream):
        for line in stream:
            self.lines.append(line.rstrip("\n"))

    def count(self, text: str) -> int:
        """Lines holding `text`; a text ending in a space counts lines that start with it."""
        return sum(line.startswith(text) if text.endswith(" ") else text in line for line in self.lines)

    def wait(self, text: str, n: int = 1, timeout: float = 60.0) -> None:
        wait_for(lambda: self.count(text) >= n, timeout, f"{n} x {text!r} in {self.lines}")


@pytest.mark.slow  # starts a real process
def test_watch_republishes_withholds_losses_to_errors_and_names_deletions(tmp_path):
    corpus = make_corpus(tmp_path / "corpus", 6)
    root = tmp_path / "index"
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(TESTS), str(REPO)]), PYTHONUNBUFFERED="1", MEDKB_WATCH_DEBOUNCE_MS="200")
    proc = subprocess.Popen([sys.executable, str(TESTS / "fake_model_cli.py"), "index", str(corpus), "--index-dir", str(root), "--watch"],
                            cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    out = Lines(proc.stdout)
    try:
        out.wait("watching")
        first = index_store.current_dir(root)
        assert out.count("published ") == 1

        write_article(corpus, 2, extra="An edit about pernicious anaemia [1].")
        out.wait("published ", 2)
        out.wait("reused from cache   5 of 6 files", 1)
        second = index_store.current_dir(root)
        assert second != first and "pernicious" in (second / "chunks.jsonl").read_text()

        (corpus / "topic-003.md").write_text((corpus / "topic-003.md").read_text().replace("review_status: under_review", "review_status: half-typed"))
        out.wait("would lose 1 article(s)")
        out.wait("fix the articles above or delete their files")
        assert index_store.current_dir(root) == second, "a build that loses an article to errors is withheld"
        assert out.count("  error: ") >= 1 and any("topic-003.md" in line and "half-typed" in line for line in out.lines)
        assert any("topic-003 (" in line and "has errors" in line for line in out.lines)

        write_article(corpus, 3)  # fixed
        out.wait("published ", 3)
        (corpus / "topic-004.md").unlink()
        out.wait("published ", 4)
        assert any("loses 1 article(s)" in line and "topic-004" in line and "deleted" in line for line in out.lines), "\n".join(out.lines)
        assert "topic-004" not in (index_store.current_dir(root) / "articles.jsonl").read_text()
    finally:
        proc.terminate()
        proc.wait(20)
    assert not any("Traceback" in line for line in out.lines), "\n".join(out.lines)
