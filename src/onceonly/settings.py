"""Typed settings from the environment (ONCEONLY_*) or an onceonly.toml file.

Environment wins over the file so operators can override one value without editing it.
"""

from __future__ import annotations

import os
import re
import secrets
import time
import tomllib
from functools import lru_cache
from pathlib import Path
from typing import Any, Literal

from pydantic import Field, ValidationError, field_validator
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, SettingsConfigDict

from onceonly.errors import ConfigError

SECRET_FIELDS = {"secret_key"}


def _toml_path() -> Path | None:
    explicit = os.environ.get("ONCEONLY_CONFIG")
    if explicit:
        return Path(explicit)
    for candidate in (Path("onceonly.toml"), Path(os.environ.get("ONCEONLY_HOME", "var")) / "onceonly.toml"):
        if candidate.is_file():
            return candidate
    return None


class _TomlSource(PydanticBaseSettingsSource):
    """Reads the [onceonly] table (or the top level) of onceonly.toml."""

    def __init__(self, settings_cls: type[BaseSettings]) -> None:
        super().__init__(settings_cls)
        self.data: dict[str, Any] = {}
        path = _toml_path()
        if path is None:
            return
        try:
            raw = tomllib.loads(path.read_text(encoding="utf-8"))
        except (OSError, tomllib.TOMLDecodeError) as exc:
            raise ConfigError(f"config file {path}: {exc}") from exc
        self.data = raw.get("onceonly", raw)

    def get_field_value(self, field: Any, field_name: str) -> tuple[Any, str, bool]:
        return self.data.get(field_name), field_name, False

    def __call__(self) -> dict[str, Any]:
        unknown = sorted(set(self.data) - set(self.settings_cls.model_fields))
        if unknown:  # a misspelt key would otherwise be ignored silently
            raise ConfigError(f"config file: unknown setting {unknown[0]!r}; known: "
                              f"{', '.join(self.settings_cls.model_fields)}")
        return dict(self.data)


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="ONCEONLY_", extra="ignore")

    home: Path = Field(default=Path("var"), description="Directory for the database, keys and uploads.")
    database_url: str = Field(default="", description="SQLAlchemy URL; empty means SQLite under home.")
    secret_key: str = Field(default="", description="Signs cookies; generated into home on first start.")
    host: str = "127.0.0.1"
    port: int = Field(default=8000, ge=1, le=65535)
    default_language: Literal["zh", "en"] = "zh"
    session_idle_minutes: int = Field(default=30, ge=1, le=24 * 60)
    cookie_secure: Literal["auto", "always", "never"] = "auto"
    max_failed_logins: int = Field(default=5, ge=1, le=100)
    lockout_minutes: int = Field(default=15, ge=1)
    ingest_replace_max_delete_share: float = Field(
        default=0.2, ge=0, le=1, description="replace mode refuses to delete a larger share of a table without --force")
    ingest_workers: int = Field(
        default=-1, ge=-1, le=64,
        description="processes checking rows beside the writer; -1: automatic (files of 32 MiB and more get one "
                    "less than the CPUs, at most 4), 0: check in the writing process")
    ingest_max_upload_mb: int = Field(
        default=4096, ge=1, le=1 << 20,
        description="largest file the upload API and page accept, in MiB (larger: 413; `onceonly ingest` has no limit)")
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
    audit_retention_days: int = Field(
        default=180, description="audit records older than this may be pruned (`onceonly audit prune`); at least 180")
    audit_checkpoint_every: int = Field(
        default=1000, ge=1, le=10_000_000, description="sign an audit checkpoint after this many records")
    exchange_reads_on_loop: Literal["auto", "always", "never"] = Field(
        default="auto", description="exchange calls read on the event loop instead of a worker thread; auto: on SQLite "
                                    "and on a PostgreSQL server of this host (unix socket or loopback)")
    exchange_webhook_allow_private: bool = Field(
        default=False, description="let webhooks target loopback and private addresses (closed networks, tests)")
    exchange_delivery_enabled: bool = Field(
        default=True, description="run the webhook delivery worker inside `onceonly serve`")
    exchange_webhook_timeout_seconds: float = Field(
        default=10, gt=0, le=120, description="a webhook POST not answered within this is a failed attempt")
    exchange_webhook_max_attempts: int = Field(
        default=12, ge=1, le=100, description="failed attempts at one batch before the subscription is dead-lettered")
    exchange_webhook_retry_base_seconds: float = Field(
        default=10, gt=0, le=3600, description="first retry delay; doubles per failed attempt (with jitter)")
    exchange_webhook_retry_cap_seconds: float = Field(
        default=3600, gt=0, le=86400, description="longest retry delay")

    @field_validator("database_url")
    @classmethod
    def _url_scheme(cls, value: str) -> str:
        if value and not value.startswith(("sqlite", "postgresql", "postgres://")):
            raise ValueError("must start with sqlite:// or postgresql+psycopg://")
        if value.startswith(("postgresql://", "postgres://")):
            value = "postgresql+psycopg://" + value.split("://", 1)[1]
        return value

    @field_validator("audit_retention_days")
    @classmethod
    def _retention_minimum(cls, value: int) -> int:
        if value < 180:  # the audit prune guard trigger refuses younger records anyway
            raise ValueError(f"must be at least 180 days (audit records are kept at least 180 days), not {value}")
        return value

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        return (init_settings, env_settings, _TomlSource(settings_cls))

    @property
    def effective_database_url(self) -> str:
        if self.database_url:
            return self.database_url
        return f"sqlite:///{(self.home / 'onceonly.db').resolve()}"

    @property
    def is_sqlite(self) -> bool:
        return self.effective_database_url.startswith("sqlite")

    def ensure_secret(self) -> str:
        """Use the configured key, else one kept in home (created once, mode 0600)."""
        if self.secret_key:
            return self.secret_key
        path = self.home / "secret_key"
        self.home.mkdir(mode=0o700, parents=True, exist_ok=True)
        try:  # O_EXCL: of several workers starting at once, one writes and the others read its key
            fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o600)
        except FileExistsError:
            for _ in range(50):
                key = path.read_text().strip()
                if key:
                    return key
                time.sleep(0.01)  # the creator is between open and write
            raise ConfigError(f"setting ONCEONLY_SECRET_KEY: {path} is empty; delete it or set the key") from None
        key = secrets.token_urlsafe(48)
        with os.fdopen(fd, "w") as fh:
            fh.write(key)
        return key

    def masked(self) -> dict[str, str]:
        """Effective settings for display, secrets and URL passwords masked."""
        out: dict[str, str] = {}
        for name in type(self).model_fields:
            value = getattr(self, name)
            if name in SECRET_FIELDS:
                out[name] = "********" if value else "(generated in home)"
            else:
                out[name] = str(value)
        out["database_url"] = mask_url(self.effective_database_url)
        return out


def mask_url(url: str) -> str:
    """The URL with its password hidden, in the user part or in the query (password=...).
    Plain text work, so even a URL the driver would refuse is shown safely."""
    out = url
    if "://" in out and "@" in out.split("?", 1)[0]:
        scheme, rest = out.split("://", 1)
        creds, host = rest.split("?", 1)[0].rsplit("@", 1)
        query = rest[len(creds) + 1 + len(host):]
        if ":" in creds:
            creds = creds.split(":", 1)[0] + ":********"
        out = f"{scheme}://{creds}@{host}{query}"
    return re.sub(r"([?&][^=&]*password[^=&]*=)[^&]*", r"\1********", out, flags=re.IGNORECASE)


def load_settings(**overrides: Any) -> Settings:
    """Build settings; a bad value raises ConfigError naming the setting in one line."""
    try:
        return Settings(**overrides)
    except ValidationError as exc:
        err = exc.errors()[0]
        name = ".".join(str(p) for p in err["loc"]) or "settings"
        raise ConfigError(f"setting ONCEONLY_{name.upper()}: {err['msg']}") from None


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    return load_settings()
