"""Settings: environment, onceonly.toml, precedence, one-line errors, masking, database reachability."""

from __future__ import annotations

import socket
import stat
from pathlib import Path

import pytest

from onceonly.db import Database, check_connection
from onceonly.errors import ConfigError
from onceonly.settings import load_settings, mask_url


@pytest.fixture
def clean_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    """A working directory without onceonly.toml and a home of our own."""
    work = tmp_path / "work"
    work.mkdir()
    monkeypatch.chdir(work)
    monkeypatch.setenv("ONCEONLY_HOME", str(tmp_path / "home"))
    monkeypatch.delenv("ONCEONLY_CONFIG", raising=False)
    return work


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_defaults_need_no_configuration(clean_env: Path, tmp_path: Path) -> None:
    s = load_settings()
    assert s.home == tmp_path / "home"
    assert s.is_sqlite
    assert s.effective_database_url == f"sqlite:///{(tmp_path / 'home' / 'onceonly.db').resolve()}"
    assert s.port == 8000 and s.default_language == "zh" and s.max_failed_logins == 5


def test_environment_variables(clean_env: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ONCEONLY_PORT", "9100")
    monkeypatch.setenv("ONCEONLY_DEFAULT_LANGUAGE", "en")
    monkeypatch.setenv("ONCEONLY_DATABASE_URL", "postgres://app:pw@db.example:5432/onceonly")
    s = load_settings()
    assert s.port == 9100 and s.default_language == "en"
    assert s.database_url == "postgresql+psycopg://app:pw@db.example:5432/onceonly"
    assert not s.is_sqlite


def test_toml_file_named_by_onceonly_config(clean_env: Path, monkeypatch: pytest.MonkeyPatch,
                                            tmp_path: Path) -> None:
    cfg = tmp_path / "conf" / "site.toml"
    cfg.parent.mkdir()
    cfg.write_text('[onceonly]\nport = 8100\nsession_idle_minutes = 20\nlog_level = "DEBUG"\n', encoding="utf-8")
    monkeypatch.setenv("ONCEONLY_CONFIG", str(cfg))
    s = load_settings()
    assert (s.port, s.session_idle_minutes, s.log_level) == (8100, 20, "DEBUG")


def test_toml_file_in_working_directory(clean_env: Path) -> None:
    (clean_env / "onceonly.toml").write_text('port = 8200\ndefault_language = "en"\n', encoding="utf-8")
    s = load_settings()
    assert s.port == 8200 and s.default_language == "en"


def test_toml_file_in_home(clean_env: Path, tmp_path: Path) -> None:
    (tmp_path / "home").mkdir()
    (tmp_path / "home" / "onceonly.toml").write_text("port = 8300\n", encoding="utf-8")
    assert load_settings().port == 8300


def test_environment_overrides_file(clean_env: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (clean_env / "onceonly.toml").write_text("port = 8200\nlockout_minutes = 30\n", encoding="utf-8")
    monkeypatch.setenv("ONCEONLY_PORT", "8400")
    s = load_settings()
    assert s.port == 8400  # from the environment
    assert s.lockout_minutes == 30  # from the file


def test_explicit_arguments_override_everything(clean_env: Path, monkeypatch: pytest.MonkeyPatch,
                                                tmp_path: Path) -> None:
    monkeypatch.setenv("ONCEONLY_PORT", "8400")
    s = load_settings(port=8500, home=tmp_path / "elsewhere")
    assert s.port == 8500 and s.home == tmp_path / "elsewhere"


@pytest.mark.parametrize(("env", "value", "setting"), [
    ("ONCEONLY_PORT", "eighty", "ONCEONLY_PORT"),
    ("ONCEONLY_PORT", "70000", "ONCEONLY_PORT"),
    ("ONCEONLY_DEFAULT_LANGUAGE", "fr", "ONCEONLY_DEFAULT_LANGUAGE"),
    ("ONCEONLY_DATABASE_URL", "mysql://u:p@h/db", "ONCEONLY_DATABASE_URL"),
    ("ONCEONLY_SESSION_IDLE_MINUTES", "0", "ONCEONLY_SESSION_IDLE_MINUTES"),
])
def test_wrong_environment_value_is_one_line_naming_the_setting(
    clean_env: Path, monkeypatch: pytest.MonkeyPatch, env: str, value: str, setting: str,
) -> None:
    monkeypatch.setenv(env, value)
    with pytest.raises(ConfigError) as info:
        load_settings()
    message = info.value.message
    assert message.startswith(f"setting {setting}:")
    assert "\n" not in message


def test_wrong_file_value_names_the_setting(clean_env: Path) -> None:
    (clean_env / "onceonly.toml").write_text('cookie_secure = "sometimes"\n', encoding="utf-8")
    with pytest.raises(ConfigError, match=r"^setting ONCEONLY_COOKIE_SECURE:"):
        load_settings()


def test_misspelt_file_key_is_refused_by_name(clean_env: Path) -> None:
    (clean_env / "onceonly.toml").write_text("sesion_idle_minutes = 5\n", encoding="utf-8")
    with pytest.raises(ConfigError, match="sesion_idle_minutes"):
        load_settings()


def test_unparsable_file_names_the_file(clean_env: Path) -> None:
    (clean_env / "onceonly.toml").write_text("port = = 1\n", encoding="utf-8")
    with pytest.raises(ConfigError, match=r"onceonly\.toml"):
        load_settings()


def test_missing_config_file_is_an_error(clean_env: Path, monkeypatch: pytest.MonkeyPatch,
                                         tmp_path: Path) -> None:
    monkeypatch.setenv("ONCEONLY_CONFIG", str(tmp_path / "missing.toml"))
    with pytest.raises(ConfigError, match=r"missing\.toml"):
        load_settings()


def test_masked_hides_secret_and_url_password(clean_env: Path) -> None:
    s = load_settings(secret_key="s3cr3t-value", database_url="postgresql://app:hunter2@db:5432/oo")
    shown = s.masked()
    assert shown["secret_key"] == "********"
    assert shown["database_url"] == "postgresql+psycopg://app:********@db:5432/oo"
    assert "hunter2" not in repr(shown) and "s3cr3t-value" not in repr(shown)
    assert load_settings().masked()["secret_key"] == "(generated in home)"


@pytest.mark.parametrize(("url", "masked"), [
    ("postgresql+psycopg://u:p@h/db", "postgresql+psycopg://u:********@h/db"),
    ("postgresql+psycopg://u:p@ss@h/db", "postgresql+psycopg://u:********@h/db"),
    ("postgresql+psycopg://u@h/db", "postgresql+psycopg://u@h/db"),
    ("sqlite:////var/lib/onceonly.db", "sqlite:////var/lib/onceonly.db"),
    ("postgresql://h/db?sslmode=require&password=hunter2", "postgresql://h/db?sslmode=require&password=********"),
])
def test_mask_url(url: str, masked: str) -> None:
    assert mask_url(url) == masked


def test_secret_is_generated_once_and_private(clean_env: Path, tmp_path: Path) -> None:
    s = load_settings()
    key = s.ensure_secret()
    path = tmp_path / "home" / "secret_key"
    assert len(key) >= 48
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert load_settings().ensure_secret() == key
    assert load_settings(secret_key="given").ensure_secret() == "given"


def test_unreachable_database_is_one_clear_line(clean_env: Path) -> None:
    url = f"postgresql://app:hunter2@127.0.0.1:{free_port()}/nowhere"
    db = Database(load_settings(database_url=url))
    try:
        with pytest.raises(ConfigError) as info:
            check_connection(db.engine)
    finally:
        db.dispose()
    message = info.value.message
    assert message.startswith("setting ONCEONLY_DATABASE_URL: cannot connect to ")
    assert "hunter2" not in message and "********" in message
    assert "\n" not in message


@pytest.mark.parametrize("url", ["postgresql://u:pw@127.0.0.1:notaport/x", "sqlitex:///x.db"])
def test_malformed_database_url_is_a_config_error(clean_env: Path, url: str) -> None:
    with pytest.raises(ConfigError, match=r"^setting ONCEONLY_DATABASE_URL: ") as info:
        Database(load_settings(database_url=url))
    assert "pw@" not in info.value.message and "\n" not in info.value.message
