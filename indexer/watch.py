"""`medkb index --watch`: rebuild when an article changes.

watchfiles (inotify on Linux, the Rust `notify` crate) reports changes under the corpus
directories; changes are grouped until the directories have been quiet for `debounce_ms`
(an editor's save, a `git pull` or a copy of many files makes one build, not one per file).
Only article files count: what `corpus_files` would read (`*.md`, not hidden, not README.md),
so an editor's swap and backup files never start a build.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from pathlib import Path


def is_article_path(path: str) -> bool:
    """True for a path `corpus_files` would read (it may no longer exist: a deletion counts)."""
    name = Path(path).name
    return name.endswith(".md") and not name.startswith(".") and name.lower() != "readme.md"


def watch_corpus(dirs: Sequence[Path], rebuild: Callable[[list[str]], None], debounce_ms: int = 500,
                 stop: threading.Event | None = None, ready: Callable[[], None] | None = None) -> None:
    """Call `rebuild(changed paths)` after each quiet period that follows a change to an
    article under `dirs`, until `stop` is set (or KeyboardInterrupt). Builds run one at a time
    in this thread; changes made during a build are gathered and start the next one."""
    from watchfiles import watch

    def articles_only(change, path: str) -> bool:
        return is_article_path(path)

    step = max(int(debounce_ms), 1)
    watcher = watch(*[str(d) for d in dirs], watch_filter=articles_only, step=step, debounce=max(4 * step, 1600),
                    stop_event=stop, yield_on_timeout=True, rust_timeout=200, raise_interrupt=True)
    told = False
    for changes in watcher:
        if not told:  # the first (timeout) yield: the watcher is running
            told = True
            if ready:
                ready()
        if stop is not None and stop.is_set():
            return
        if changes:
            rebuild(sorted({path for _, path in changes}))
