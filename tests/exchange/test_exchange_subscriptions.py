"""Webhook delivery on each backend to a real receiver on 127.0.0.1 (test_exchange_subscriptions_
receiver.py): down and back without loss or reordering, timeouts and 500s retried with backoff,
the dead letter and its replay, the grant's fields, row filter, masking and quota applied to what
is pushed, a revoked or expired grant blocking delivery, two workers racing, and the CLI."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from dataclasses import replace
from datetime import datetime, timedelta
from typing import Any

import pytest
import typer
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from exchange_factories import MASTER, World, add_service, approved, fresh, ready, world
from sqlalchemy import inspect, select, update
from test_exchange_subscriptions_receiver import Receiver, serving
from typer.testing import CliRunner

from core_factories import CLI
from onceonly import cli
from onceonly.audit.models import AuditRecord
from onceonly.catalog.models import Resource
from onceonly.catalog.service import new_version, publish_resource
from onceonly.db import Database, utcnow
from onceonly.exchange import grants
from onceonly.exchange import repository as repo
from onceonly.exchange.cli import exchange_app
from onceonly.exchange.enforcement import day_bucket
from onceonly.exchange.models import Grant, Service
from onceonly.exchange.subscription_models import Delivery, Subscription
from onceonly.exchange.subscriptions import SubscriptionIn, change_status, create_subscription
from onceonly.exchange.webhooks import DeliveryConfig, DeliveryWorker, backoff, prune_log
from onceonly.ops.migrate import _config, current_revision, head_revision, target_metadata, upgrade
from onceonly.settings import get_settings
from onceonly.store import service as store

CONFIG = DeliveryConfig(timeout=0.5, max_attempts=3, retry_base=2, retry_cap=8, batch_size=2, allow_private=True)


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    with serving() as r:
        yield r


class Clock:
    """The workers' clock, moved by hand so backoff is tested without waiting (kept near the
    real time: receivers check the signed timestamp within ±300 s)."""

    def __init__(self) -> None:
        self.now = utcnow()

    def __call__(self) -> datetime:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += timedelta(seconds=seconds)


@pytest.fixture(autouse=True)
def only_this_tests_subscriptions(db: Database) -> Iterator[None]:
    """The database is shared by the module: earlier tests' subscriptions must not be due."""
    ready(db)
    yield
    with db.session(write=True) as s:
        s.execute(update(Subscription).where(Subscription.status != "deleted").values(status="deleted"))


def bulk(db: Database, fields: list[str], **terms: Any) -> tuple[World, Service, int]:
    """A fresh world with a bulk service over its person resource and a grant for the system."""
    w = world(db)
    with db.session(write=True) as s:
        service = add_service(s, fresh(s, w.person), mode="bulk")
    app = approved(w, fields, service=service, **{"rate_limit": 1000, **terms})
    assert app.grant_id is not None
    return w, service, app.grant_id


def subscribe(db: Database, w: World, service: Service, receiver: Receiver, **extra: Any) -> int:
    with db.session(write=True) as s:
        sub, secret = create_subscription(
            s, fresh(s, w.system), SubscriptionIn(service=service.code, url=receiver.url + extra.pop("path", ""),
                                                  **extra), master=MASTER, allow_private=True)
        receiver.secrets[sub.id] = secret
        return sub.id


def person(n: int, region: str = "341802", **extra: Any) -> dict[str, Any]:
    return {"citizen_id": f"1101051990010{n:05d}", "name": "赵六", "phone": "13600003333", "sex": "1",
            "region": region, "household": n, "note": "丁", **extra}


def write(db: Database, res: Resource, rows: list[dict[str, Any]] = (), delete: list[str] = ()) -> None:  # type: ignore[assignment]
    with db.session(write=True) as s:
        r = fresh(s, res)
        if rows:
            store.upsert_rows(s, r, rows)
        if delete:
            store.delete_keys(s, r, [(k,) for k in delete])


def state(db: Database, sub_id: int) -> Subscription:
    with db.session() as s:
        sub = s.get(Subscription, sub_id)
        assert sub is not None
        s.expunge(sub)
        return sub


def log_of(db: Database, sub_id: int) -> list[Delivery]:
    with db.session() as s:
        return list(s.scalars(select(Delivery).where(Delivery.subscription_id == sub_id).order_by(Delivery.id)))


def audited(db: Database, system: str) -> list[AuditRecord]:
    with db.session() as s:
        return list(s.scalars(select(AuditRecord).where(AuditRecord.system == system,
                                                        AuditRecord.mode == "subscription").order_by(AuditRecord.seq)))


def worker(db: Database, clock: Clock | None = None, **config: Any) -> DeliveryWorker:
    return DeliveryWorker(db, master=MASTER, config=replace(CONFIG, **config), clock=clock or utcnow,
                          rand=lambda: 1.0)


def mine(outcomes: list[Any], sub_id: int) -> list[str]:
    return [o.status for o in outcomes if o.subscription_id == sub_id]


# -- down and back ------------------------------------------------------------------------------

def test_receiver_down_then_back_loses_nothing_and_keeps_order(db: Database, receiver: Receiver) -> None:
    w, service, grant_id = bulk(db, ["citizen_id", "name", "region"])
    sub_id = subscribe(db, w, service, receiver)
    assert state(db, sub_id).cursor == 3  # from now on: the three rows loaded before are not sent
    clock = Clock()
    deliverer = worker(db, clock)

    write(db, w.person, [person(1), person(2)])
    assert mine(deliverer.run_once(), sub_id) == ["delivered"]
    assert receiver.seqs(sub_id) == [4, 5]

    receiver.down()
    write(db, w.person, [person(3), person(4, name="钱七")])
    write(db, w.person, [person(1, name="孙八")])
    write(db, w.person, delete=[person(2)["citizen_id"]])
    write(db, w.person, [person(5, region="341803")])
    outcome = deliverer.run_once()
    assert mine(outcome, sub_id) == ["failed"]
    failed = state(db, sub_id)
    assert failed.attempts == 1 and failed.cursor == 5 and failed.status == "active"
    assert failed.next_attempt_at == clock.now + timedelta(seconds=2)  # base · 2^0, full jitter fraction
    assert "ConnectError" in (failed.last_error or "")
    assert mine(deliverer.run_once(), sub_id) == []  # not due before the backoff has passed

    clock.advance(2)
    assert mine(deliverer.run_once(), sub_id) == ["failed"]
    assert state(db, sub_id).next_attempt_at == clock.now + timedelta(seconds=4)  # doubled

    receiver.up()
    clock.advance(4)
    out = [o for o in deliverer.run_once() if o.subscription_id == sub_id]
    assert [(o.status, o.batches, o.records) for o in out] == [("delivered", 3, 5)]
    assert receiver.seqs(sub_id) == [4, 5, 6, 7, 8, 9, 10]  # everything, once, in order
    changes = receiver.changes(sub_id)
    assert [c["op"] for c in changes] == ["I", "I", "I", "I", "U", "D", "I"]
    assert changes[4]["row"]["name"] == "孙八"  # the update
    assert changes[5] == {"seq": 9, "op": "D", "key": {"citizen_id": "110105********0002"}}
    assert changes[6]["row"] == {"citizen_id": "110105********0005", "name": "赵六", "region": "341803"}
    assert [b["from_seq"] for b in receiver.batches if b["subscription"] == sub_id] == [3, 5, 7, 9]
    done = state(db, sub_id)
    assert (done.cursor, done.attempts, done.last_error, done.status) == (10, 0, None, "active")

    log = log_of(db, sub_id)
    assert [d.status for d in log] == ["delivered", "failed", "failed", "delivered", "delivered", "delivered"]
    assert [(d.first_seq, d.last_seq) for d in log if d.status == "delivered"] == [(4, 5), (6, 7), (8, 9), (10, 10)]
    assert all(d.http_status == 200 and d.nbytes > 0 for d in log if d.status == "delivered")
    assert log[1].http_status is None and log[1].attempt == 1 and log[2].attempt == 2 and log[3].attempt == 3
    records = audited(db, w.system.code)
    assert [r.status for r in records] == [200, 502, 502, 200, 200, 200]
    assert sum(r.records or 0 for r in records) == 7 and all(r.service == service.code for r in records)
    with db.session() as s:  # only delivered records count against the quota; failed ones were given back
        assert repo.usage(s, grant_id, "day", day_bucket(clock.now))[1] == 7


def test_timeout_is_retried_and_the_receiver_dedupes_by_seq(db: Database, receiver: Receiver) -> None:
    w, service, _ = bulk(db, ["citizen_id", "region"])
    sub_id = subscribe(db, w, service, receiver)
    clock = Clock()
    deliverer = worker(db, clock)
    write(db, w.person, [person(11)])
    receiver.mode = "slow"  # answers after the platform's timeout: the ack is lost
    assert mine(deliverer.run_once(), sub_id) == ["failed"]
    slow = state(db, sub_id)
    assert slow.cursor == 3 and "timeout" in (slow.last_error or "")
    assert log_of(db, sub_id)[-1].latency_ms >= 400
    receiver.mode = "up"
    write(db, w.person, [person(12)])
    clock.advance(2)
    assert mine(deliverer.run_once(), sub_id) == ["delivered"]
    deadline = utcnow() + timedelta(seconds=5)
    while len(receiver.seqs(sub_id)) < 3 and utcnow() < deadline:  # the slow answer lands late
        threading.Event().wait(0.05)
    assert sorted(receiver.seqs(sub_id)) == [4, 4, 5]  # at least once: seq 4 twice
    assert [c["seq"] for c in receiver.deduped(sub_id)] == [4, 5]
    assert audited(db, w.system.code)[0].status == 504


# -- dead letter and replay -----------------------------------------------------------------------

def test_dead_letter_after_max_attempts_then_replay(db: Database, receiver: Receiver) -> None:
    w, service, _ = bulk(db, ["citizen_id", "name"])
    sub_id = subscribe(db, w, service, receiver)
    clock = Clock()
    deliverer = worker(db, clock)
    write(db, w.person, [person(21), person(22), person(23)])
    receiver.mode = "error"
    delays = []
    for _ in range(3):
        before = clock.now
        statuses = mine(deliverer.run_once(), sub_id)
        after = state(db, sub_id)
        delays.append((after.next_attempt_at - before).total_seconds())
        clock.advance(60)
        assert statuses in (["failed"], ["dead"])
    dead = state(db, sub_id)
    assert dead.status == "dead" and dead.attempts == 3 and dead.dead_at is not None
    assert dead.last_error is not None and "dead letter after 3 failed attempts" in dead.last_error
    assert "HTTP 500: receiver says no" in dead.last_error
    assert delays[:2] == [2.0, 4.0]
    assert [d.status for d in log_of(db, sub_id)] == ["failed", "failed", "dead"]
    write(db, w.person, [person(24)])
    assert mine(deliverer.run_once(), sub_id) == []  # a dead subscription is not delivered
    receiver.mode = "up"
    with db.session(write=True) as s:
        change_status(s, fresh(s, dead), "replay", now=clock.now)
    out = [o for o in deliverer.run_once() if o.subscription_id == sub_id]
    assert [(o.status, o.records) for o in out] == [("delivered", 4)]
    assert receiver.seqs(sub_id) == [4, 5, 6, 7]
    assert state(db, sub_id).status == "active"


def test_delivery_log_is_pruned_after_its_retention(db: Database, receiver: Receiver) -> None:
    w, service, _ = bulk(db, ["region"])
    sub_id = subscribe(db, w, service, receiver)
    now = utcnow()
    with db.session(write=True) as s:
        s.add_all([Delivery(subscription_id=sub_id, status="failed", at=now - timedelta(days=31)),
                   Delivery(subscription_id=sub_id, status="delivered", at=now - timedelta(days=29))])
    assert prune_log(db, now - timedelta(days=30)) >= 1
    assert [d.status for d in log_of(db, sub_id)] == ["delivered"]


def test_migration_matches_the_models_and_goes_down_and_up(db: Database, fresh_db: Database) -> None:
    with db.engine.connect() as conn:
        ctx = MigrationContext.configure(conn, opts={"compare_type": True})
        diffs = [d for d in compare_metadata(ctx, target_metadata)
                 if "exchange_subscriptions" in repr(d) or "exchange_deliveries" in repr(d)]
    assert diffs == []
    cfg = _config()
    with fresh_db.engine.begin() as conn:
        cfg.attributes["connection"] = conn
        command.downgrade(cfg, "0005")
    assert not {"exchange_subscriptions", "exchange_deliveries"} & set(inspect(fresh_db.engine).get_table_names())
    upgrade(fresh_db.engine)
    assert current_revision(fresh_db.engine) == head_revision()
    assert {"exchange_subscriptions", "exchange_deliveries"} <= set(inspect(fresh_db.engine).get_table_names())


def test_backoff_schedule() -> None:
    config = DeliveryConfig(retry_base=10, retry_cap=60)
    assert [backoff(n, config, lambda: 1.0) for n in (1, 2, 3, 4, 5)] == [10, 20, 40, 60, 60]
    assert [backoff(n, config, lambda: 0.0) for n in (1, 2, 3)] == [5, 10, 20]


# -- the grant decides what is pushed ----------------------------------------------------------

def test_fields_row_filter_and_masking_apply(db: Database, receiver: Receiver) -> None:
    w, service, _ = bulk(db, ["citizen_id", "name", "region", "household"], row_filter={"region": "341802"},
                         masking={"name": "name", "citizen_id": "citizen_id"})
    all_fields = subscribe(db, w, service, receiver, since=0)
    only_region = subscribe(db, w, service, receiver, since=0, fields=["region"], path="?only=region")
    deliverer = worker(db, batch_size=10)
    write(db, w.person, [person(31), person(32, region="341803")])
    write(db, w.person, [person(32, region="341803", name="周九")])
    out = deliverer.run_once()
    assert mine(out, all_fields) == mine(out, only_region) == ["delivered"]
    pushed = receiver.changes(all_fields)
    assert [c["seq"] for c in pushed] == [1, 3, 4]  # 李四 (341803) and the other region's row are left out
    assert pushed[0] == {"seq": 1, "op": "I", "key": {"citizen_id": "110105********002X"},
                         "row": {"citizen_id": "110105********002X", "name": "张*明", "region": "341802",
                                 "household": 1}}
    assert pushed[1]["row"]["name"] == "王*" and "phone" not in pushed[2]["row"]
    assert [c["row"] for c in receiver.changes(only_region)] == [{"region": "341802"}] * 3
    assert receiver.changes(only_region)[0]["key"] is None  # the key field is not among its fields
    assert state(db, all_fields).cursor == 6  # past the changes the filter left out
    assert all("341803" not in str(b) and "李四" not in str(b) and "13812345678" not in str(b)
               for b in receiver.batches)

    requests = receiver.requests
    write(db, w.person, [person(32, region="341803", name="吴十")])  # only a filtered-out row changes
    assert mine(deliverer.run_once(), all_fields) == ["skipped"]
    assert receiver.requests == requests  # nothing to send: no request at all
    assert state(db, all_fields).cursor == 7 and log_of(db, all_fields)[-1].status == "skipped"

    write(db, w.person, delete=[person(31)["citizen_id"]])
    deliverer.run_once()
    assert receiver.changes(all_fields)[-1] == {"seq": 8, "op": "D", "key": {"citizen_id": "110105********0031"}}


def test_quota_caps_a_delivery_and_waits_for_the_next_day(db: Database, receiver: Receiver) -> None:
    w, service, grant_id = bulk(db, ["region"], daily_quota=3)
    sub_id = subscribe(db, w, service, receiver)
    clock = Clock()
    write(db, w.person, [person(n) for n in range(41, 46)])
    out = worker(db, clock).run_once()
    assert mine(out, sub_id) == ["waiting"]
    assert receiver.seqs(sub_id) == [4, 5, 6]
    waiting = state(db, sub_id)
    assert waiting.status == "active" and waiting.cursor == 6 and waiting.next_attempt_at > clock.now
    assert (waiting.last_error or "").startswith("quota-exceeded:")
    assert log_of(db, sub_id)[-1].status == "waiting"
    with db.session() as s:
        assert repo.usage(s, grant_id, "day", day_bucket(clock.now))[1] == 3
    assert audited(db, w.system.code)[-1].status == 429


def test_revoked_or_expired_grant_blocks_delivery(db: Database, receiver: Receiver) -> None:
    w, service, grant_id = bulk(db, ["citizen_id", "region"])
    sub_id = subscribe(db, w, service, receiver)
    with db.session(write=True) as s:
        grants.revoke_grant(s, CLI, fresh(s, s.get(Grant, grant_id)), "停止共享")  # type: ignore[arg-type]
    write(db, w.person, [person(51)])
    deliverer = worker(db)
    assert mine(deliverer.run_once(), sub_id) == ["blocked"]
    blocked = state(db, sub_id)
    assert blocked.status == "blocked" and (blocked.last_error or "").startswith("grant-revoked:")
    assert receiver.seqs(sub_id) == [] and log_of(db, sub_id)[-1].status == "blocked"
    assert audited(db, w.system.code)[-1].status == 403
    assert mine(deliverer.run_once(), sub_id) == []  # stays blocked

    new_grant = approved(w, ["citizen_id", "region"], service=service, rate_limit=1000).grant_id
    with db.session(write=True) as s:
        change_status(s, fresh(s, blocked), "resume")
    assert mine(deliverer.run_once(), sub_id) == ["delivered"]
    assert receiver.seqs(sub_id) == [4]

    with db.session(write=True) as s:
        s.execute(update(Grant).where(Grant.id == new_grant).values(expires_at=utcnow() - timedelta(minutes=1)))
    write(db, w.person, [person(52)])
    assert mine(deliverer.run_once(), sub_id) == ["blocked"]
    assert (state(db, sub_id).last_error or "").startswith("grant-expired:")


def test_new_resource_version_restarts_from_its_own_log(db: Database, receiver: Receiver) -> None:
    w, service, _ = bulk(db, ["citizen_id", "region"])
    sub_id = subscribe(db, w, service, receiver)
    with db.session(write=True) as s:
        v2 = publish_resource(s, CLI, new_version(s, CLI, fresh(s, w.person)))
        store.upsert_rows(s, v2, [person(61)])
        version = v2.version
    assert mine(worker(db).run_once(), sub_id) == ["delivered"]
    [batch] = [b for b in receiver.batches if b["subscription"] == sub_id]
    assert (batch["resource_version"], batch["from_seq"], batch["to_seq"]) == (version, 0, 1)
    assert state(db, sub_id).cursor == 1


# -- workers racing -------------------------------------------------------------------------------

def test_two_workers_never_deliver_one_subscription_at_once(db: Database, receiver: Receiver) -> None:
    w, service, _ = bulk(db, ["citizen_id", "region"])
    subs = [subscribe(db, w, service, receiver, path=f"?n={n}") for n in range(3)]
    write(db, w.person, [person(n) for n in range(71, 77)])
    receiver.pause_seconds = 0.05
    workers = [worker(db, batch_size=1, timeout=10) for _ in range(2)]
    assert workers[0]._claim(subs[0])
    assert workers[1].deliver(subs[0]).status == "busy"  # the lease holds
    workers[0]._release(subs[0])

    start = threading.Barrier(2)
    outcomes: list[Any] = []

    def run(deliverer: DeliveryWorker) -> None:
        start.wait()
        for _ in range(5):
            outcomes.extend(deliverer.run_once())

    threads = [threading.Thread(target=run, args=(d,)) for d in workers]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    for sub_id in subs:
        assert receiver.seqs(sub_id) == [4, 5, 6, 7, 8, 9]  # each batch once, in order
        assert receiver.max_in_flight[sub_id] == 1
        assert state(db, sub_id).lease_owner is None
    assert {o.status for o in outcomes} <= {"delivered", "busy", "idle"}


# -- the command line -----------------------------------------------------------------------------

def test_deliver_once_from_the_command_line(db: Database, receiver: Receiver, monkeypatch: pytest.MonkeyPatch
                                            ) -> None:
    w, service, _ = bulk(db, ["citizen_id", "region"])
    sub_id = subscribe(db, w, service, receiver)
    write(db, w.person, [person(81), person(82)])
    app = typer.Typer()

    @app.callback()
    def main() -> None:
        """Test app holding the exchange commands."""

    app.add_typer(exchange_app, name="exchange")
    for name, value in {"HOME": str(db.settings.home), "DATABASE_URL": db.url, "SECRET_KEY": MASTER,
                        "EXCHANGE_WEBHOOK_ALLOW_PRIVATE": "true"}.items():
        monkeypatch.setenv(f"ONCEONLY_{name}", value)
    monkeypatch.setattr(cli.console, "width", 250)
    get_settings.cache_clear()
    runner = CliRunner()
    try:
        def run(*args: Any) -> Any:
            return runner.invoke(app, ["exchange", *map(str, args)], env={"COLUMNS": "250", "NO_COLOR": "1"})

        done = run("deliver", "--once")
        assert done.exit_code == 0, (done.stdout, done.stderr)
        assert "delivered" in done.stdout and receiver.seqs(sub_id) == [4, 5]
        listed = run("subscription", "list", "--service", service.code)
        assert listed.exit_code == 0 and str(sub_id) in listed.stdout and "active" in listed.stdout
        log = run("subscription", "deliveries", sub_id)
        assert log.exit_code == 0 and "delivered" in log.stdout and "4-5" in log.stdout
        refused = run("subscription", "replay", sub_id)
        assert refused.exit_code == 1 and refused.stderr.strip().startswith("error: ")
        assert "is active; it cannot replay" in refused.stderr and "Traceback" not in refused.stderr
    finally:
        get_settings.cache_clear()
