from pathlib import Path

import pytest

from medkb.settings import SettingError, Settings, describe

README = Path(__file__).resolve().parent.parent / "README.md"


def test_every_setting_is_documented_in_the_readme():
    text = README.read_text()
    for env, _, _ in describe():
        assert f"`{env}`" in text, f"{env} is not in the README's settings table"


def test_settings_come_from_the_environment():
    s = Settings.from_env({"MEDKB_INDEX_DIR": "/x/idx", "MEDKB_MAX_K": "7", "MEDKB_CORPUS": "a:b"})
    assert s.index_dir == Path("/x/idx") and s.max_k == 7 and s.corpus_dirs == (Path("a"), Path("b"))
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
