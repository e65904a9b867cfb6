"""`onceonly demo`: build the demo city 示例市 from a seed, print where to log in, then serve."""

from __future__ import annotations

from typing import Annotated

import typer

from onceonly.cli import console, fail, one_line_errors, settings
from onceonly.db import Database, check_connection
from onceonly.settings import mask_url


def register(app: typer.Typer) -> None:
    """Attach the `demo` command to the main CLI."""
    app.command("demo")(demo)


@one_line_errors
def demo(
    seed: Annotated[int, typer.Option(help="Random seed: the same seed and sizes build the same data")] = 2018,
    persons: Annotated[int, typer.Option(min=200, max=5_000_000, help="Registered residents to generate")] = 100_000,
    companies: Annotated[int, typer.Option(min=20, max=1_000_000, help="Market entities to generate")] = 20_000,
    no_serve: Annotated[bool, typer.Option("--no-serve", help="Only build; do not start the server")] = False,
    force: Annotated[bool, typer.Option("--force", help="Wipe an existing platform in this home first")] = False,
    host: Annotated[str | None, typer.Option(help="Bind address (default from settings)")] = None,
    port: Annotated[int | None, typer.Option(help="Port (default from settings)")] = None,
) -> None:
    """Build the demo city 示例市 from a seed, print where to log in, then serve.

    24 departments, their catalogs and 53 published resources filled with a synthetic population
    and its companies. Generated staff passwords go to ONCEONLY_HOME/demo-admin.txt (mode 0600).
    A home that already holds a platform is refused unless --force."""
    from onceonly.demo.accounts import write_accounts_file
    from onceonly.demo.build import DemoOptions, build_demo
    from onceonly.demo.exchange import write_credentials_file
    from onceonly.demo.home import existing_content, wipe
    from onceonly.demo.progress import RichStages
    from onceonly.demo.traffic import run_burst

    s = settings()
    where = mask_url(s.effective_database_url) if s.database_url else str(s.home)
    db = Database(s)
    check_connection(db.engine)
    found = existing_content(db)
    if found:
        if not force:
            db.dispose()
            fail(f"{where} already holds a platform ({found}); rerun with --force to wipe it and build the demo")
        console.print(f"wiping the existing platform in {where} ({found})", highlight=False, soft_wrap=True)
        db = wipe(db)
    options = DemoOptions(seed=seed, persons=persons, companies=companies)
    console.print(f"building 示例市 (seed {seed}, {persons:,} persons, {companies:,} companies) in {where}",
                  highlight=False, soft_wrap=True)
    try:
        with RichStages(console) as stages:
            result = build_demo(db, options, stages)
            granted = sum(len(c.services) for c in result.credentials)
            stages.start("交换流量 traffic", granted)
            statuses = run_burst(s, result.credentials, seed, tick=stages.advance)
    finally:
        db.dispose()
    bind_host, bind_port = host or s.host, port or s.port
    url = f"http://{bind_host}:{bind_port}/"
    note = f"seed {seed}, {persons} persons, {companies} companies"
    path = write_accounts_file(s.home, url, result.accounts, note)
    creds_path = write_credentials_file(s.home, result.credentials)
    admin = result.accounts[0]
    console.print(
        f"built 示例市 in {result.seconds:.1f} s: {result.departments} departments, {result.resources} resources, "
        f"{result.total_rows:,} rows", highlight=False, soft_wrap=True)
    console.print(f"URL:      {url}", highlight=False, soft_wrap=True)
    console.print(f"admin:    {admin.username}", highlight=False, soft_wrap=True)
    console.print(f"password: {admin.password}", highlight=False, soft_wrap=True)
    console.print(f"all staff accounts and passwords: {path} (mode 0600)", highlight=False, soft_wrap=True)
    by_status = ", ".join(f"{k}: {v}" for k, v in sorted(statuses.items()))
    console.print(f"exchange: {len(result.credentials)} systems, {granted} grants, {sum(statuses.values())} calls "
                  f"in the opening burst ({by_status})", highlight=False, soft_wrap=True)
    console.print(f"systems' API keys: {creds_path} (mode 0600)", highlight=False, soft_wrap=True)
    if no_serve:
        return
    import uvicorn

    uvicorn.run("onceonly.app:create_app", factory=True, host=bind_host, port=bind_port,
                log_level=s.log_level.lower())
