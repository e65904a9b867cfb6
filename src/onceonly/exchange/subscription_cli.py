"""`onceonly exchange deliver` and `onceonly exchange subscription …`: run webhook deliveries from
the console (one pass with --once, e.g. from cron or a test; otherwise until Ctrl-C) and look
after subscriptions as the platform operator (audited as cli:<os user>)."""

from __future__ import annotations

import threading
from typing import Annotated, Any

import typer
from rich.table import Table

from onceonly.accounts.actor import Actor
from onceonly.cli import console, one_line_errors, open_db, settings, unit_of_work
from onceonly.exchange import subscriptions as subs
from onceonly.exchange.webhooks import POLL_SECONDS, THREADS, DeliveryWorker

subscription_app = typer.Typer(no_args_is_help=True, help="Webhook subscriptions and their deliveries.")


def register(exchange_app: typer.Typer) -> None:
    exchange_app.command("deliver")(deliver)
    exchange_app.add_typer(subscription_app, name="subscription")


def _when(value: Any) -> str:
    return f"{value:%Y-%m-%d %H:%M:%S}" if value else ""


@one_line_errors
def deliver(
    once: Annotated[bool, typer.Option("--once", help="One pass over the due subscriptions, then exit")] = False,
    poll: Annotated[float, typer.Option(min=0.1, max=3600, help="Seconds between passes")] = POLL_SECONDS,
) -> None:
    """Deliver due webhook subscriptions (the server does so itself unless delivery is turned off)."""
    db = open_db()
    try:
        worker = DeliveryWorker(db, master=settings().ensure_secret())
        if once:
            outcomes = worker.run_once(parallel=THREADS)
            table = Table("subscription", "status", "batches", "records", "error")
            for out in outcomes:
                table.add_row(str(out.subscription_id), out.status, str(out.batches), str(out.records),
                              out.error or "")
            if outcomes:
                console.print(table)
            console.print(f"{sum(o.batches for o in outcomes)} batch(es), {sum(o.records for o in outcomes)} "
                          f"record(s) for {len(outcomes)} subscription(s)")
            return
        console.print(f"delivering every {poll:g} s; Ctrl-C stops")
        worker.start(poll)
        try:
            threading.Event().wait()
        except KeyboardInterrupt:
            console.print("stopping after the deliveries under way")
        finally:
            worker.stop()
    finally:
        db.dispose()


@subscription_app.command("list")
@one_line_errors
def subscription_list(
    service: Annotated[str | None, typer.Option(help="Service code")] = None,
    status: Annotated[str | None, typer.Option(help="active, paused, blocked, dead or deleted")] = None,
) -> None:
    """List subscriptions with their cursor, backlog and last error."""
    with unit_of_work() as session:
        rows, total = subs.list_for_staff(session, Actor.cli(), service=service, status=status, limit=500)
        table = Table("id", "system", "service", "url", "status", "cursor", "backlog", "attempts", "next attempt",
                      "last error")
        for sub in rows:
            out = subs.subscription_out(session, sub)
            table.add_row(str(out.id), out.system, out.service, out.url, out.status, str(out.cursor),
                          "" if out.backlog is None else str(out.backlog), str(out.attempts),
                          _when(out.next_attempt_at), (out.last_error or "")[:80])
        console.print(table)
        console.print(f"{total} subscription(s)")


@subscription_app.command("deliveries")
@one_line_errors
def subscription_deliveries(
    subscription_id: Annotated[int, typer.Argument(help="Subscription id")],
    limit: Annotated[int, typer.Option(min=1, max=500)] = 20,
) -> None:
    """A subscription's latest delivery attempts."""
    with unit_of_work() as session:
        sub = subs.get_for_staff(session, Actor.cli(), subscription_id)
        rows, _ = subs.deliveries(session, sub, limit=limit)
        table = Table("at", "status", "seqs", "records", "http", "ms", "error")
        for d in rows:
            seqs = f"{d.first_seq}-{d.last_seq}" if d.first_seq is not None else ""
            table.add_row(_when(d.at), d.status, seqs, str(d.records), str(d.http_status or ""), str(d.latency_ms),
                          (d.error or "")[:80])
        console.print(table)


@subscription_app.command("replay")
@one_line_errors
def subscription_replay(subscription_id: Annotated[int, typer.Argument(help="Subscription id")]) -> None:
    """Restart a dead-lettered subscription from its cursor."""
    with unit_of_work() as session:
        actor = Actor.cli()
        sub = subs.replay_by_staff(session, actor, subs.get_for_staff(session, actor, subscription_id))
        console.print(f"subscription {sub.id} is active again from seq {sub.cursor}")
