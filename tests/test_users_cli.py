"""`medkb users` and the review report of `medkb index`."""

import io
import sys

import pytest

from indexer.articles import load_corpus
from medkb.cli import _report_reviews, main
from medkb.settings import Settings
from retrieval.accounts import AccountStore
from retrieval.reviews import Decision, ReviewStore

from review_helpers import REVIEWER
from sample_articles import MICRO_BODY, TREAT_BODY, article


def run(monkeypatch, capsys, *argv, stdin=""):
    monkeypatch.setattr(sys, "stdin", io.StringIO(stdin))
    code = main(list(argv))
    out = capsys.readouterr()
    return code, out.out, out.err


def test_users_add_token_and_revoke(tmp_path, monkeypatch, capsys):
    db = str(tmp_path / "accounts.sqlite")
    code, out, _ = run(monkeypatch, capsys, "users", "--accounts-db", db, "add", "ada", "--role", "reviewer", "--display-name", "Dr Ada Byron",
                       "--credentials", "MD, haematology", "--conflicts", "Speaker fees from Iron Co (2024)", "--password-stdin",
                       stdin="a long enough password\n")
    assert code == 0 and "Dr Ada Byron (MD, haematology)" in out
    store = AccountStore(tmp_path / "accounts.sqlite")
    assert store.authenticate("ada", "a long enough password").conflicts == "Speaker fees from Iron Co (2024)"
    row = store._db().execute("SELECT password_hash FROM users WHERE name = 'ada'").fetchone()[0]
    assert row.startswith("$argon2id$") and "a long enough password" not in row

    code, token, err = run(monkeypatch, capsys, "users", "--accounts-db", db, "token", "ada")
    token = token.strip()
    assert code == 0 and token.startswith("mkb_") and "shown only now" in err
    assert store.account_for_token(token).name == "ada"
    stored = [r[0] for r in store._db().execute("SELECT token_sha256 FROM tokens")]
    assert token not in stored and len(stored[0]) == 64, "only the token's hash is kept"
    code, out, _ = run(monkeypatch, capsys, "users", "--accounts-db", db, "revoke-token", "ada")
    assert code == 0 and "revoked 1" in out and store.account_for_token(token) is None

    code, _, err = run(monkeypatch, capsys, "users", "--accounts-db", db, "add", "ada", "--role", "editor", "--password-stdin", stdin="another long one\n")
    assert code == 2 and "already exists" in err
    code, _, err = run(monkeypatch, capsys, "users", "--accounts-db", db, "add", "bob", "--role", "reviewer", "--password-stdin", stdin="short\n")
    assert code == 2 and "at least 10 characters" in err
    code, out, _ = run(monkeypatch, capsys, "users", "--accounts-db", db, "list")
    assert out.startswith("ada") and "reviewer" in out and "conflicts of interest" in out


def test_index_reports_approved_claims_without_a_record(tmp_path, capsys, store_at):
    corpus = tmp_path / "corpus"
    corpus.mkdir()
    (corpus / "claims.md").write_text(article("claims", "Q1?", MICRO_BODY, status="approved"))
    (corpus / "reviewed.md").write_text(article("reviewed", "Q2?", TREAT_BODY, status="submitted"))
    where = store_at("reviews")
    shared = {"backend": "postgres", "database_url": where} if isinstance(where, str) else {}
    settings = Settings(index_dir=tmp_path / "index", **shared)
    articles = load_corpus([corpus]).articles
    log = ReviewStore(settings.state_location(settings.reviews_path))
    reviewed = next(a for a in articles if a.id == "reviewed")
    log.append("reviewed", reviewed.content_sha256, REVIEWER, Decision.APPROVE)
    _report_reviews(settings, articles)
    out = capsys.readouterr()
    assert "warning:" in out.err and "claims.md: front matter says review_status: approved, but no review record approves this content" in out.err
    assert "reviewed.md" not in out.err
    assert "review status       1 approved, 1 submitted" in out.out
    assert log.content(reviewed.content_sha256) == (corpus / "reviewed.md").read_bytes(), "indexed versions are kept for diffs"

    (corpus / "reviewed.md").write_text((corpus / "reviewed.md").read_text().replace("first-line", "first line"))
    _report_reviews(settings, load_corpus([corpus]).articles)
    assert "pending re-review: " in capsys.readouterr().err


@pytest.mark.postgres
def test_users_on_postgres(postgres_url, monkeypatch, capsys):
    from pg_server import new_database

    url = new_database(postgres_url)
    monkeypatch.setenv("MEDKB_BACKEND", "postgres")
    monkeypatch.setenv("MEDKB_DATABASE_URL", url)
    code, out, _ = run(monkeypatch, capsys, "users", "add", "ada", "--role", "reviewer", "--display-name", "Dr Ada Byron", "--password-stdin",
                       stdin="a long enough password\n")
    assert code == 0 and "Dr Ada Byron" in out
    code, token, _ = run(monkeypatch, capsys, "users", "token", "ada")
    store = AccountStore(url)
    assert code == 0 and store.authenticate("ada", "a long enough password").display_name == "Dr Ada Byron"
    assert store.account_for_token(token.strip()).name == "ada"
    code, out, _ = run(monkeypatch, capsys, "users", "list")
    assert code == 0 and out.startswith("ada") and "tokens: 1" in out
    monkeypatch.delenv("MEDKB_DATABASE_URL")
    code, _, err = run(monkeypatch, capsys, "users", "list")
    assert code == 2 and "MEDKB_DATABASE_URL" in err


@pytest.mark.model
def test_index_command_prints_the_review_summary(real_index):
    _, stdout, _ = real_index
    assert "review status" in stdout and "approved" not in stdout.split("review status", 1)[1].split("(log:")[0]


@pytest.mark.slow  # the connection pool waits its 10 s before giving up
def test_an_unreachable_database_is_one_line_without_the_password(monkeypatch, capsys):
    monkeypatch.setenv("MEDKB_BACKEND", "postgres")
    monkeypatch.setenv("MEDKB_DATABASE_URL", "postgresql://medkb:s3cret@127.0.0.1:1/medkb")
    assert main(["users", "list"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("medkb users: the account store at postgresql://medkb:***@127.0.0.1:1/medkb cannot be used")
    assert err.count("\n") == 1 and "s3cret" not in err and "Traceback" not in err


@pytest.mark.parametrize("action", [["list"], ["token", "ada"], ["revoke-token", "ada"]])
def test_users_commands_other_than_add_refuse_a_store_that_does_not_exist(tmp_path, monkeypatch, capsys, action):
    """A mistyped --accounts-db is one line naming it and exit 2, not a new empty store (nor its folder)."""
    db = tmp_path / "missing" / "accounts.sqlite"
    code, out, err = run(monkeypatch, capsys, "users", "--accounts-db", str(db), *action)
    assert code == 2 and out == ""
    assert str(db) in err and "no account store" in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "missing").exists()
    # The default store beside the index root is held to the same rule.
    code, _, err = run(monkeypatch, capsys, "users", "--index-dir", str(tmp_path / "var" / "index"), *action)
    assert code == 2 and str(tmp_path / "var" / "accounts.sqlite") in err and not (tmp_path / "var").exists()


@pytest.mark.parametrize("action", [["list"], ["token", "ada"], ["revoke-token", "ada"], ["add", "ada", "--role", "reviewer", "--password-stdin"]])
def test_users_commands_refuse_an_empty_store_file_and_leave_it(tmp_path, monkeypatch, capsys, action):
    """A 0-byte file where the store should be (a failed copy or restore, a `touch`) is not a store:
    one line naming it and exit 2, for `add` too, and the file is left as it was (SQLite would
    otherwise make an empty store of it and `list` would say nothing)."""
    db = tmp_path / "accounts.sqlite"
    db.touch()
    code, out, err = run(monkeypatch, capsys, "users", "--accounts-db", str(db), *action, stdin="a long enough password\n")
    assert code == 2 and out == "", out
    assert err.startswith(f"medkb users {action[0]}: {db} is an empty file (0 bytes), not an account store") and len(err.strip().splitlines()) == 1, err
    assert db.exists() and db.stat().st_size == 0 and sorted(p.name for p in tmp_path.iterdir()) == ["accounts.sqlite"]
    # Removed, as the message says, `add` starts a new store.
    db.unlink()
    code, _, err = run(monkeypatch, capsys, "users", "--accounts-db", str(db), "add", "ada", "--role", "reviewer", "--password-stdin",
                       stdin="a long enough password\n")
    assert code == 0 and AccountStore(db).get("ada") is not None, err


def test_the_store_file_state_is_read_without_opening_it(tmp_path):
    from retrieval.accounts import store_file_state

    db = tmp_path / "accounts.sqlite"
    assert store_file_state(db) == "missing"
    db.touch()
    assert store_file_state(db) == "empty" and db.stat().st_size == 0
    (tmp_path / "accounts.sqlite-wal").write_bytes(b"\0" * 32)  # data in a write-ahead log beside it: SQLite's to judge
    assert store_file_state(db) == "present"
    other = tmp_path / "other.sqlite"
    AccountStore(other)  # a new store, in use (WAL): its header is written at once
    assert store_file_state(other) == "present"
    assert store_file_state("postgresql://medkb@127.0.0.1:1/medkb") == "present"
