"""The `onceonly` command. Each domain adds its Typer sub-app here; every command exits
non-zero with a one-line reason on error."""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from functools import wraps
from typing import Annotated, Any, TypeVar

import typer
from pydantic import ValidationError
from rich.console import Console
from rich.markup import escape
from rich.table import Table
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session

from onceonly.db import Database, check_connection
from onceonly.errors import PlatformError
from onceonly.settings import Settings, get_settings

app = typer.Typer(no_args_is_help=True, add_completion=False,
                  help="OnceOnly 政务数据共享交换平台 — catalog, store and exchange of a city's government data.")
config_app = typer.Typer(no_args_is_help=True, help="Show the effective configuration.")
app.add_typer(config_app, name="config")
console = Console()
err = Console(stderr=True)
F = TypeVar("F", bound=Callable[..., Any])


def fail(message: str, code: int = 1) -> None:
    # escape: a message quoting user input like "[/x]" must print as is, not break Rich markup.
    err.print(f"[red]error:[/red] {escape(message)}", highlight=False, soft_wrap=True)
    raise typer.Exit(code)


def one_line_errors(func: F) -> F:
    """Turn platform errors into one line on stderr and a non-zero exit, never a traceback."""

    @wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return func(*args, **kwargs)
        except PlatformError as exc:
            where = f" ({exc.field})" if exc.field and exc.field not in exc.message else ""
            fail(f"{exc.message}{where}")
        except OSError as exc:
            fail(f"{exc.filename or ''}: {exc.strerror or exc}")
        except ValidationError as exc:
            first = exc.errors()[0]
            fail(f"{'.'.join(str(p) for p in first['loc'])}: {first['msg']}")
        except SQLAlchemyError as exc:
            reason = str(getattr(exc, "orig", None) or exc).strip().splitlines()[0]
            fail(f"database error: {reason}")

    return wrapper  # type: ignore[return-value]


def settings() -> Settings:
    return get_settings()


def open_db(check_schema: bool = True) -> Database:
    from onceonly.ops.migrate import require_current

    db = Database(settings())
    check_connection(db.engine)
    if check_schema:
        require_current(db.engine)
    return db


@contextmanager
def unit_of_work(check_schema: bool = True) -> Iterator[Session]:
    """One transaction for the command: all of it commits or none of it."""
    db = open_db(check_schema)
    try:
        with db.session(write=True) as session:
            yield session
    finally:
        db.dispose()


@app.command()
@one_line_errors
def init() -> None:
    """Create or upgrade the database schema and load the standard catalogs and code lists."""
    from onceonly.ops.migrate import head_revision
    from onceonly.ops.setup import initialize

    db = open_db(check_schema=False)
    initialize(db)
    db.dispose()
    console.print(f"database ready at schema {head_revision()} ({settings().masked()['database_url']})")


@app.command()
@one_line_errors
def serve(
    host: Annotated[str | None, typer.Option(help="Bind address (default from settings)")] = None,
    port: Annotated[int | None, typer.Option(help="Port (default from settings)")] = None,
    workers: Annotated[int, typer.Option(min=1, max=32)] = 1,
) -> None:
    """Serve the web console and the API (checks the schema is current first)."""
    import uvicorn

    open_db().dispose()
    s = settings()
    console.print(f"OnceOnly at http://{host or s.host}:{port or s.port}/  (API docs at /docs)")
    uvicorn.run("onceonly.app:create_app", factory=True, host=host or s.host, port=port or s.port,
                workers=workers, log_level=s.log_level.lower())


@config_app.command("show")
@one_line_errors
def config_show() -> None:
    """Print the effective settings, secrets masked."""
    table = Table("setting", "value")
    for key, value in settings().masked().items():
        table.add_row(key, value)
    console.print(table)


def _register_subapps() -> None:
    from onceonly.accounts.cli import user_app
    from onceonly.audit.cli import audit_app
    from onceonly.catalog.cli import catalog_app, codelist_app, org_app, resource_app
    from onceonly.demo.cli import register as register_demo
    from onceonly.exchange.cli import exchange_app
    from onceonly.ingest.cli import register as register_ingest

    app.add_typer(org_app, name="org")
    app.add_typer(user_app, name="user")
    app.add_typer(catalog_app, name="catalog")
    app.add_typer(resource_app, name="resource")
    app.add_typer(codelist_app, name="codelist")
    app.add_typer(audit_app, name="audit")
    app.add_typer(exchange_app, name="exchange")
    register_demo(app)
    register_ingest(app)


def main() -> None:
    try:
        _register_subapps()
        app()
    except PlatformError as exc:  # e.g. a bad setting while building settings
        err.print(f"error: {escape(exc.message)}", highlight=False, soft_wrap=True)
        sys.exit(1)
