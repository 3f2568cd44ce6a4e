from pathlib import Path

import pytest

from medkb.settings import SettingError, Settings, describe

README = Path(__file__).resolve().parent.parent / "README.md"


def test_every_setting_is_documented_in_the_readme():
    text = README.read_text()
    for env, _, _ in describe():
        assert f"`{env}`" in text, f"{env} is not in the README's settings table"


def test_settings_come_from_the_environment():
    s = Settings.from_env({"MEDKB_INDEX_DIR": "/x/idx", "MEDKB_MAX_K": "17", "MEDKB_CORPUS": "a:b"})
    assert s.index_dir == Path("/x/idx") and s.max_k == 17 and s.corpus_dirs == (Path("a"), Path("b"))
    assert Settings.from_env({}) == Settings()


@pytest.mark.parametrize("env, value, expected", [("MEDKB_KEEP_BUILDS", "abc", "whole number"), ("MEDKB_RELOAD_SECONDS", "soon", "a number"),
                                                  ("MEDKB_MAX_K", "7.5", "whole number")])
def test_a_bad_number_in_the_environment_is_a_one_line_error_naming_the_setting(env, value, expected):
    with pytest.raises(SettingError) as caught:
        Settings.from_env({env: value})
    message = str(caught.value)
    assert env in message and repr(value) in message and expected in message and "\n" not in message


def test_the_command_line_reports_a_bad_setting_in_one_line_and_exits_2(monkeypatch, capsys, tmp_path):
    from medkb.cli import main

    monkeypatch.setenv("MEDKB_KEEP_BUILDS", "abc")
    assert main(["index", str(tmp_path), "--index-dir", str(tmp_path / "index")]) == 2
    err = capsys.readouterr().err
    assert err.strip() == "medkb index: MEDKB_KEEP_BUILDS='abc' is not a whole number (default: 3)"
    assert not (tmp_path / "index").exists()


@pytest.mark.parametrize("env, value, expected", [
    ("MEDKB_RETRIEVER", "bogus", "dense, lexical, hybrid"),  # was a ValueError traceback from the first search
    ("MEDKB_RANKER", "bogus", "learned, rrf"),
    ("MEDKB_MAX_K", "0", "at least 1"),  # every request was a 422 "between 1 and 0"
    ("MEDKB_MAX_QUERY_CHARS", "-5", "at least 1"),
    ("MEDKB_CONVERSATION_TURNS", "0", "at least 1"),
    ("MEDKB_QUERY_CACHE", "-1", "at least 0"),
    ("MEDKB_NO_MATCH", "2", "0 or 1"),
    ("MEDKB_RELOAD_SECONDS", "nan", "a number of at least 0"),
    ("MEDKB_BATCH_WINDOW_MS", "-1", "a number of at least 0"),
    ("MEDKB_CONVERSATIONS_TIMEOUT", "inf", "a number of at least 0"),
])
def test_a_value_no_setting_can_use_is_a_one_line_error_naming_it(env, value, expected):
    with pytest.raises(SettingError) as caught:
        Settings.from_env({env: value})
    message = str(caught.value)
    assert env in message and repr(value) in message and expected in message and "\n" not in message


def test_the_default_k_must_fit_under_the_most_k():
    with pytest.raises(SettingError) as caught:  # every search without k would have been a 422
        Settings.from_env({"MEDKB_MAX_K": "5"})
    assert "MEDKB_DEFAULT_K" in str(caught.value) and "MEDKB_MAX_K" in str(caught.value)
    assert Settings.from_env({"MEDKB_MAX_K": "5", "MEDKB_DEFAULT_K": "5"}).max_k == 5


def test_the_most_k_cannot_exceed_what_the_api_accepts():
    """The API refuses a k above 1000 whatever MEDKB_MAX_K says: a larger MEDKB_MAX_K let
    MEDKB_DEFAULT_K=2000 through, and then every search that did not send k was a 422."""
    for env in ({"MEDKB_MAX_K": "1001"}, {"MEDKB_MAX_K": "5000", "MEDKB_DEFAULT_K": "2000"}):
        with pytest.raises(SettingError) as caught:
            Settings.from_env(env)
        message = str(caught.value)
        assert message.startswith("MEDKB_MAX_K=") and "1000" in message and "\n" not in message
    assert Settings.from_env({"MEDKB_MAX_K": "1000", "MEDKB_DEFAULT_K": "1000"}).max_k == 1000


@pytest.mark.parametrize("env, value", [("MEDKB_QUERY_CACHE", "0"), ("MEDKB_BUILD_CACHE_MB", "0"), ("MEDKB_RELOAD_SECONDS", "0"),
                                        ("MEDKB_RETRIEVER", "lexical"), ("MEDKB_RANKER", "rrf"), ("MEDKB_NO_MATCH", "0")])
def test_documented_values_are_still_accepted(env, value):
    Settings.from_env({env: value})


def test_conversations_live_beside_the_index_root_like_the_other_state(tmp_path, monkeypatch):
    """They were kept at var/conversations.sqlite under whatever folder the server started in
    (the system's /var for a service started in /), apart from the answers, reviews and
    accounts beside the index root."""
    monkeypatch.chdir(tmp_path)
    s = Settings.from_env({"MEDKB_INDEX_DIR": "/srv/medkb/index"})
    assert s.conversations_path == Path("/srv/medkb/conversations.sqlite") == s.answers_path.parent / "conversations.sqlite"
    assert Settings().conversations_path == Path("var/conversations.sqlite"), "the default index root keeps the documented place"
    assert Settings.from_env({"MEDKB_CONVERSATIONS_DB": "/x/c.sqlite"}).conversations_path == Path("/x/c.sqlite")


def test_build_threads_default_to_the_cpus_this_process_may_use(monkeypatch):
    import joblib

    monkeypatch.setattr(joblib, "cpu_count", lambda only_physical_cores=False: 3)  # e.g. a container's quota of 3 CPUs
    assert Settings.from_env({}).document_threads() == 3
    assert Settings.from_env({"MEDKB_BUILD_THREADS": "1"}).document_threads() == 1
    with pytest.raises(SettingError, match="MEDKB_BUILD_THREADS"):
        Settings.from_env({"MEDKB_BUILD_THREADS": "-2"})
