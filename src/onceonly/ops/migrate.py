"""Apply and check Alembic migrations programmatically (no alembic.ini needed)."""

from __future__ import annotations

from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Engine

import onceonly.accounts.models
import onceonly.audit.models
import onceonly.catalog.models
import onceonly.exchange.models
import onceonly.exchange.subscription_models
import onceonly.ingest.models
import onceonly.store.models  # noqa: F401  (register every table on the metadata)
from onceonly.db import Base
from onceonly.errors import ConfigError

target_metadata = Base.metadata
_SCRIPTS = Path(__file__).resolve().parent.parent / "migrations"


def _config() -> Config:
    cfg = Config()
    cfg.set_main_option("script_location", str(_SCRIPTS))
    return cfg


def upgrade(engine: Engine, target: str = "head") -> None:
    cfg = _config()
    with engine.begin() as conn:
        cfg.attributes["connection"] = conn
        command.upgrade(cfg, target)


def head_revision() -> str | None:
    return ScriptDirectory.from_config(_config()).get_current_head()


def current_revision(engine: Engine) -> str | None:
    with engine.connect() as conn:
        return MigrationContext.configure(conn).get_current_revision()


def require_current(engine: Engine) -> None:
    """Refuse to serve a database whose schema is behind the code."""
    current, head = current_revision(engine), head_revision()
    if current != head:
        raise ConfigError(
            f"database schema is at {current or 'nothing'}, code expects {head}: run `onceonly init`"
        )


def autogenerate(engine: Engine, message: str) -> None:
    """Developer helper: write a new revision from model changes."""
    cfg = _config()
    with engine.begin() as conn:
        cfg.attributes["connection"] = conn
        command.revision(cfg, message=message, autogenerate=True)
