from pathlib import Path

from medkb.settings import Settings, describe

README = Path(__file__).resolve().parent.parent / "README.md"


def test_every_setting_is_documented_in_the_readme():
    text = README.read_text()
    for env, _, _ in describe():
        assert f"`{env}`" in text, f"{env} is not in the README's settings table"


def test_settings_come_from_the_environment():
    s = Settings.from_env({"MEDKB_INDEX_DIR": "/x/idx", "MEDKB_MAX_K": "7", "MEDKB_CORPUS": "a:b"})
    assert s.index_dir == Path("/x/idx") and s.max_k == 7 and s.corpus_dirs == (Path("a"), Path("b"))
    assert Settings.from_env({}) == Settings()
