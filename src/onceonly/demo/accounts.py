"""The demo's staff accounts (三员分立 plus department roles), each with a generated password —
there is no fixed default password — and the private file that hands them to the operator."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy.orm import Session

from onceonly.accounts.actor import Actor
from onceonly.accounts.service import create_user
from onceonly.demo.world import Org

ACCOUNTS_FILE = "demo-admin.txt"


@dataclass(frozen=True)
class StaffSpec:
    username: str
    role: str
    dept: str | None  # department key for department roles
    display_name: str


STAFF: tuple[StaffSpec, ...] = (
    StaffSpec("admin", "platform_admin", None, "系统管理员"),
    StaffSpec("secadmin", "security_admin", None, "安全保密管理员"),
    StaffSpec("auditor", "auditor", None, "安全审计员"),
    StaffSpec("gongan.steward", "steward", "gaj", "公安局数据管理员"),
    StaffSpec("gongan.reviewer", "reviewer", "gaj", "公安局审核员"),
    StaffSpec("shichang.steward", "steward", "scjgj", "市场监管局数据管理员"),
    StaffSpec("shichang.reviewer", "reviewer", "scjgj", "市场监管局审核员"),
)


@dataclass(frozen=True)
class Account:
    username: str
    role: str
    org: str  # organization name, "" for platform roles
    password: str


def create_staff(session: Session, actor: Actor, orgs: dict[str, Org]) -> list[Account]:
    from onceonly.catalog.orgs import get_org

    out = []
    for spec in STAFF:
        org = orgs[spec.dept] if spec.dept else None
        org_id = get_org(session, org.code).id if org else None
        user, password = create_user(session, actor, spec.username, spec.role, org_id, spec.display_name)
        out.append(Account(user.username, user.role, org.name if org else "", password))
    return out


def write_accounts_file(home: Path, url: str, accounts: list[Account], note: str) -> Path:
    """Write the URL and accounts to ONCEONLY_HOME/demo-admin.txt, readable by the owner only."""
    home.mkdir(parents=True, exist_ok=True)
    path = home / ACCOUNTS_FILE
    lines = [
        "# OnceOnly 示例市 demo — generated staff accounts. Keep this file private; change the passwords",
        f"# {note}",
        f"url\t{url}",
        "# username\tpassword\trole\torganization",
        *(f"{a.username}\t{a.password}\t{a.role}\t{a.org or '-'}" for a in accounts),
    ]
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        os.fchmod(fd, 0o600)  # an existing file keeps its old mode on open
        os.write(fd, ("\n".join(lines) + "\n").encode("utf-8"))
    finally:
        os.close(fd)
    return path


def read_accounts_file(path: Path) -> tuple[str, dict[str, str]]:
    """(url, {username: password}) from a file written by write_accounts_file."""
    url, passwords = "", {}
    for line in path.read_text(encoding="utf-8").splitlines():
        if line.startswith("#") or not line.strip():
            continue
        parts = line.split("\t")
        if parts[0] == "url":
            url = parts[1]
        elif len(parts) >= 2:
            passwords[parts[0]] = parts[1]
    return url, passwords
