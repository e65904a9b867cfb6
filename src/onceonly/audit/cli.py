"""`onceonly audit`: verify, list, export, checkpoint, prune and show the public key.

`verify` exits 0 when the log is intact and 3 when it is broken (1 is any other error), naming
the first broken place on stderr."""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Annotated, Any

import typer
from pydantic import ValidationError
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn
from rich.table import Table

from onceonly.audit import repository as repo
from onceonly.audit import service
from onceonly.audit.export import chunks
from onceonly.audit.keys import ensure_keypair, load_public_key, read_public_pem
from onceonly.audit.schemas import AuditFilter
from onceonly.audit.verify import verify_database
from onceonly.cli import console, err, fail, one_line_errors, open_db, settings
from onceonly.errors import ValidationFailed

audit_app = typer.Typer(no_args_is_help=True, help="The tamper-evident audit log: verify, list, export, checkpoints.")
BROKEN = 3

Since = Annotated[str | None, typer.Option("--since", help="From this time (ISO 8601 date or time; no offset = UTC)")]
Until = Annotated[str | None, typer.Option("--until", help="Before this time (ISO 8601; no offset = UTC)")]
System = Annotated[str | None, typer.Option("--system", help="Caller system code")]
Service = Annotated[str | None, typer.Option("--service", help="Service code")]
Kind = Annotated[str | None, typer.Option("--kind", help="call, staff or delivery (the end of an export)")]
Status = Annotated[int | None, typer.Option("--status", help="HTTP status of the call")]


def _time(value: str | None, option: str) -> datetime | None:
    if value is None:
        return None
    try:
        parsed = datetime.fromisoformat(value.strip())
    except ValueError:
        raise ValidationFailed(f"{option}: not an ISO 8601 date or time: {value!r}", field=option) from None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def _filter(since: str | None, until: str | None, system: str | None, service_code: str | None,
            kind: str | None, status: int | None) -> AuditFilter:
    try:
        f = AuditFilter(since=_time(since, "--since"), until=_time(until, "--until"), system=system,
                        service=service_code, kind=kind, status=status)
    except ValidationError as exc:
        first = exc.errors()[0]
        name = "--" + str(first["loc"][0]) if first["loc"] else "filter"
        raise ValidationFailed(f"{name}: {first['msg']}", field=name) from None
    if f.since and f.until and f.until <= f.since:
        raise ValidationFailed("--until must be after --since", field="--until")
    return f


@audit_app.command("verify")
@one_line_errors
def verify(
    as_json: Annotated[bool, typer.Option("--json", help="Print the report as one JSON object")] = False,
    public_key: Annotated[Path | None, typer.Option(help="Check signatures with this PEM public key instead of "
                                                    "the platform's own")] = None,
) -> None:
    """Recompute every hash, check the chain, the head and every checkpoint signature."""
    key = read_public_pem(public_key) if public_key else load_public_key(settings().home)
    db = open_db()
    try:
        with Progress(TextColumn("[bold]verify"), BarColumn(), TextColumn("{task.completed:,} records"),
                      TimeElapsedColumn(), TimeRemainingColumn(), console=err, transient=True,
                      disable=as_json or not sys.stderr.isatty()) as bar:
            task = bar.add_task("verify", total=None)
            report = verify_database(db, key, lambda done, total: bar.update(task, completed=done, total=total))
    finally:
        db.dispose()
    if as_json:
        print(report.model_dump_json())
    elif report.ok:
        console.print(report.summary, highlight=False, soft_wrap=True, markup=False)
    else:
        for p in report.problems[1:10]:
            console.print(f"  also: {p.message}", highlight=False, soft_wrap=True, markup=False)
    if not report.ok:
        err.print(f"error: {report.summary}", highlight=False, soft_wrap=True, markup=False)
        raise typer.Exit(BROKEN)


@audit_app.command("list")
@one_line_errors
def list_records(
    since: Since = None, until: Until = None, system: System = None, service_code: Service = None,
    kind: Kind = None, status: Status = None,
    after: Annotated[int, typer.Option(min=0, help="Only records with seq greater than this")] = 0,
    limit: Annotated[int, typer.Option(min=1, max=100_000, help="At most this many records")] = 50,
    as_json: Annotated[bool, typer.Option("--json", help="One JSON object per line")] = False,
) -> None:
    """List audit records in seq order."""
    f = _filter(since, until, system, service_code, kind, status)
    db = open_db()
    try:
        with db.session() as s:
            rows = repo.rows(s, f, after, limit)
    finally:
        db.dispose()
    if as_json:
        for line in chunks(rows, "jsonl"):
            sys.stdout.write(line)
        return
    table = Table("seq", "time (UTC)", "kind", "system / user", "service", "mode / action", "status", "records",
                  "ms", "purpose")
    for r in rows:
        by_system = r["kind"] in ("call", "delivery")
        who = r["system"] if by_system else r["username"]
        what = r["mode"] if by_system else f"{r['action']} {r['target'] or ''}".strip()
        table.add_row(str(r["seq"]), f"{r['time']:%Y-%m-%d %H:%M:%S}", r["kind"], who or "", r["service"] or "",
                      what or "", "" if r["status"] is None else str(r["status"]),
                      "" if r["records"] is None else f"{r['records']:,}",
                      "" if r["latency_ms"] is None else str(r["latency_ms"]), r["purpose"] or "")
    console.print(table)


@audit_app.command("export")
@one_line_errors
def export(
    out: Annotated[Path, typer.Option("--out", help="File to write ('-' for stdout)")],
    fmt: Annotated[str, typer.Option("--format", help="csv or jsonl")] = "jsonl",
    since: Since = None, until: Until = None, system: System = None, service_code: Service = None,
    kind: Kind = None, status: Status = None,
) -> None:
    """Export matching records (streamed, bounded memory) for an auditor to keep or recompute."""
    if fmt not in ("csv", "jsonl"):
        fail("--format must be csv or jsonl")
    f = _filter(since, until, system, service_code, kind, status)
    db = open_db()
    count = 0
    try:
        with db.session() as s:
            def counted() -> Iterator[dict[str, Any]]:
                nonlocal count
                for row in repo.iter_rows(s, f):
                    count += 1
                    yield row

            text = chunks(counted(), "csv" if fmt == "csv" else "jsonl")
            if str(out) == "-":
                for part in text:
                    sys.stdout.write(part)
                return
            tmp = out.with_name(f".{out.name}.part")
            with tmp.open("w", encoding="utf-8", newline="") as fh:
                for part in text:
                    fh.write(part)
            tmp.replace(out)  # a reader never sees half an export
    finally:
        db.dispose()
    err.print(f"exported {count:,} record(s) to {out}", highlight=False, markup=False)


@audit_app.command("checkpoint")
@one_line_errors
def checkpoint() -> None:
    """Sign a checkpoint of the current head now (they are also made every `audit_checkpoint_every` records)."""
    signer = ensure_keypair(settings().home)
    db = open_db()
    try:
        with db.session(write=True) as s:
            cp = service.checkpoint(s.connection(), signer)
            head = service.lock_head(s.connection())
    finally:
        db.dispose()
    if cp is None:
        console.print(f"already checkpointed at seq {head.seq:,}", highlight=False, soft_wrap=True)
    else:
        console.print(f"checkpoint at seq {cp.seq:,} (hash {cp.hash[:16]}…) signed with key {cp.key_id}",
                      highlight=False, soft_wrap=True)


@audit_app.command("prune")
@one_line_errors
def prune(
    yes: Annotated[bool, typer.Option("--yes", help="Really delete; without it, only say what would go")] = False,
) -> None:
    """Delete records older than `audit_retention_days` (at least 180), leaving a signed anchor
    from which the remaining chain still verifies."""
    days = settings().audit_retention_days
    db = open_db()
    try:
        if not yes:
            with db.session() as s:
                rows = repo.rows(s, AuditFilter(until=datetime.now(UTC) - timedelta(days=days)), 0, 1)
            what = "some records are" if rows else "no record is"
            console.print(f"{what} older than {days} days; run with --yes to prune them", highlight=False,
                          soft_wrap=True)
            return
        signer = ensure_keypair(settings().home)
        with db.session(write=True) as s:
            result = service.prune(s.connection(), signer, days)
    finally:
        db.dispose()
    if result is None:
        console.print(f"nothing to prune: no record is older than {days} days", highlight=False, soft_wrap=True)
    else:
        console.print(f"pruned {result.pruned:,} record(s) up to seq {result.anchor_seq:,} (before "
                      f"{result.cutoff:%Y-%m-%d %H:%M} UTC); signed anchor left at seq {result.anchor_seq:,}",
                      highlight=False, soft_wrap=True)


@audit_app.command("public-key")
@one_line_errors
def public_key(
    out: Annotated[Path | None, typer.Option(help="Write the PEM here (default: stdout)")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Key id, hex and PEM as JSON")] = False,
) -> None:
    """The SM2 public key that signs checkpoints and anchors (created on first use), for auditors."""
    key = ensure_keypair(settings().home).public
    if out is not None:
        out.write_text(key.pem, encoding="ascii")
    if as_json:
        print(json.dumps({"key_id": key.key_id, "public_key_hex": key.hex, "pem": key.pem}))
    elif out is None:
        sys.stdout.write(key.pem)
