"""`onceonly user`: staff accounts from the server console."""

from __future__ import annotations

from typing import Annotated

import typer
from rich.table import Table

from onceonly.accounts import repository as repo
from onceonly.accounts import service
from onceonly.accounts.actor import Actor
from onceonly.accounts.roles import ROLE_LABELS, ROLES
from onceonly.catalog.orgs import get_org
from onceonly.cli import console, one_line_errors, unit_of_work

user_app = typer.Typer(no_args_is_help=True, help="Staff users, roles and API tokens.")


@user_app.command("add")
@one_line_errors
def add(
    name: Annotated[str, typer.Argument(help="Login name")],
    role: Annotated[str, typer.Option(help=f"One of: {', '.join(ROLES)}")],
    org: Annotated[str | None, typer.Option(help="Organization code, for department roles")] = None,
    display_name: Annotated[str, typer.Option(help="Name shown in the console")] = "",
) -> None:
    """Create a user and print a generated password once."""
    with unit_of_work() as session:
        org_id = get_org(session, org).id if org else None
        user, password = service.create_user(session, Actor.cli(), name, role, org_id, display_name)
    console.print(f"user {user.username} ({role}) created; password (shown once): {password}", highlight=False)


@user_app.command("list")
@one_line_errors
def list_users() -> None:
    """List staff users."""
    with unit_of_work() as session:
        table = Table("user", "role", "org", "active", "last login")
        for u in repo.list_users(session):
            table.add_row(u.username, f"{u.role} {ROLE_LABELS.get(u.role, '')}", u.org.code if u.org else "",
                          "yes" if u.active else "no", f"{u.last_login_at:%Y-%m-%d %H:%M}" if u.last_login_at else "")
        console.print(table)


@user_app.command("token")
@one_line_errors
def token(
    name: Annotated[str, typer.Argument(help="User to create the token for")],
    label: Annotated[str, typer.Option(help="What the token is for")] = "script",
    days: Annotated[int, typer.Option(min=1, max=3650)] = 365,
) -> None:
    """Create a personal API token for a user and print it once."""
    with unit_of_work() as session:
        user = service.get_user(session, name)
        _, secret = service.create_api_token(session, Actor.cli(), user, label, days)
    console.print(f"token (shown once): {secret}", highlight=False)


@user_app.command("reset-password")
@one_line_errors
def reset_password(name: Annotated[str, typer.Argument(help="User")]) -> None:
    """Set a new generated password and unlock the account."""
    from onceonly.kit.passwords import generate_password

    with unit_of_work() as session:
        user = service.get_user(session, name)
        password = generate_password()
        service.set_password(session, Actor.cli(), user, password)
    console.print(f"new password for {name} (shown once): {password}", highlight=False)
