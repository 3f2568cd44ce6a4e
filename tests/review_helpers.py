"""Review-log helpers for tests: accounts with a cheap Argon2 cost, and decisions recorded
straight into a log (as a reviewer would through the API)."""

from __future__ import annotations

from pathlib import Path

from indexer.index_store import LoadedIndex
from retrieval.accounts import AccountStore
from retrieval.reviews import Decision, ReviewBook, Reviewer, ReviewStore

PASSWORD = "correct horse battery staple"
REVIEWER = Reviewer("rev", "Dr Rhea Viewer", "MD, haematology", "reviewer")


def cheap_hasher():
    """Argon2id at test cost (the server verifies with the parameters stored in each hash)."""
    from argon2 import PasswordHasher

    return PasswordHasher(time_cost=1, memory_cost=8, parallelism=1)


def accounts(path: Path | str) -> AccountStore:
    return AccountStore(path, hasher=cheap_hasher())


def add_users(path: Path | str) -> AccountStore:
    """rev (reviewer), ed (editor), admin (admin), author (reviewer who wrote 'microcytosis' in tests that say so)."""
    store = accounts(path)
    store.add("rev", "reviewer", PASSWORD, "Dr Rhea Viewer", "MD, haematology", "None declared")
    store.add("ed", "editor", PASSWORD, "Ed Itor", "MSc")
    store.add("admin", "admin", PASSWORD, "Ada Min")
    store.add("author", "reviewer", PASSWORD, "Dr Arthur Author", "MD")
    return store


def record(log: Path, index: LoadedIndex, decisions: dict[str, str], reviewer: Reviewer = REVIEWER) -> ReviewStore:
    """Append a decision on each named article's current content."""
    store = ReviewStore(log)
    for article_id, decision in decisions.items():
        store.append(article_id, index.articles[article_id].content_sha256, reviewer, Decision(decision))
    return store


def review_book(log: Path, index: LoadedIndex, decisions: dict[str, str]) -> ReviewBook:
    return ReviewBook(record(log, index, decisions))
