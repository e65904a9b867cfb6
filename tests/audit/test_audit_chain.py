"""Building the chain: the canonical form, group commit under many threads and several
processes, staff actions in the caller's transaction, checkpoints."""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
import threading
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from audit_factories import calls, report, signer
from sqlalchemy import create_engine, func, select, text
from sqlalchemy.pool import NullPool

from core_factories import CLI
from harness import open_database
from onceonly.audit import PURPOSE_HEADER, AuditUnavailable, append_call, record_staff_action, request_digest
from onceonly.audit.canonical import canonical_bytes, normalize_detail, record_hash
from onceonly.audit.models import GENESIS, AuditCheckpoint, AuditHead, AuditRecord
from onceonly.audit.service import entry
from onceonly.audit.writer import AuditWriter, writer_for
from onceonly.db import Database

EXAMPLE = {
    "seq": 1, "time": datetime(2026, 1, 2, 3, 4, 5, 678901, tzinfo=UTC), "kind": "call", "system": "sys-a",
    "org": "11341800MA2N00000X", "username": None, "service": "svc-1", "mode": "verify", "action": None,
    "target": None, "purpose": "案件2026-001", "request_digest": "ab" * 32, "status": 200, "records": 1,
    "bytes": 512, "latency_ms": 12, "ip": "10.1.2.3", "detail": {"b": [1, "x"], "a": True}, "prev_hash": GENESIS,
}
# docs/audit.md shows this example; keep them in step.
EXAMPLE_TEXT = (
    '{"action":null,"bytes":512,"detail":{"a":true,"b":[1,"x"]},"ip":"10.1.2.3","kind":"call",'
    '"latency_ms":12,"mode":"verify","org":"11341800MA2N00000X","prev_hash":"' + GENESIS + '",'
    '"purpose":"案件2026-001","records":1,"request_digest":"' + "ab" * 32 + '","seq":1,"service":"svc-1",'
    '"status":200,"system":"sys-a","target":null,"time":"2026-01-02T03:04:05.678901Z","username":null}'
)


def test_canonical_form_is_the_documented_one() -> None:
    assert canonical_bytes(EXAMPLE) == EXAMPLE_TEXT.encode("utf-8")
    expected = hashlib.new("sm3", EXAMPLE_TEXT.encode("utf-8")).hexdigest()  # an independent SM3
    assert record_hash(EXAMPLE) == expected
    assert expected in Path(__file__).parents[2].joinpath("docs", "audit.md").read_text(encoding="utf-8")


def test_every_field_and_the_link_are_covered() -> None:
    base = record_hash(EXAMPLE)
    for name, value in EXAMPLE.items():
        changed = dict(EXAMPLE)
        changed[name] = 2 if value == 1 else ("x" if not isinstance(value, datetime) else datetime.now(UTC))
        assert record_hash(changed) != base, name


def test_values_are_normalized_before_they_are_stored() -> None:
    e = entry("call", system="s\x00ys", target="t" * 500, purpose="bad \ud800 surrogate", org="",
              detail={"f": 1.5, "big": 2**60, "nan": float("nan"), 3: "key", "when": datetime(2026, 1, 1, tzinfo=UTC),
                      "nested": [(1, 2)], "ok": None})
    assert e["system"] == "s\ufffdys"
    assert e["purpose"] == "bad \ufffd surrogate"
    assert e["org"] is None
    assert e["detail"] == {"f": "1.5", "big": str(2**60), "nan": "nan", "3": "key",
                           "when": "2026-01-01T00:00:00.000000Z", "nested": [[1, 2]], "ok": None}
    assert normalize_detail({"deep": [[[[1]]]]}) == {"deep": [[[[1]]]]}
    with pytest.raises(Exception, match="kind"):
        entry("other")


def test_request_digest() -> None:
    assert request_digest("get", "/api/v1/x?a=1") == hashlib.new("sm3", b"GET /api/v1/x?a=1\n").hexdigest()
    assert request_digest("POST", "/v", b'{"id":1}') == hashlib.new("sm3", b'POST /v\n{"id":1}').hexdigest()
    assert PURPOSE_HEADER == "X-OnceOnly-Purpose"


def _committed(db: Database, seq: int) -> bool:
    """Seen from a connection of its own, as another process would."""
    engine = create_engine(db.url, poolclass=NullPool)
    try:
        with engine.connect() as conn:
            return conn.scalar(text("SELECT count(*) FROM audit_records WHERE seq = :s"), {"s": seq}) == 1
    finally:
        engine.dispose()


def test_many_threads_one_linear_gapless_chain(adb: Database) -> None:
    writer = AuditWriter(adb.url, adb.settings.home, checkpoint_every=50)
    threads, each = 16, 30
    not_yet_committed: list[int] = []

    def work(t: int) -> list[int]:
        seqs = []
        for i in range(each):
            seq = writer.append(entry("call", system=f"sys-{t}", service="svc", mode="query", status=200,
                                      records=i, detail={"t": t, "i": i}))
            if i % 10 == 0 and not _committed(adb, seq):
                not_yet_committed.append(seq)
            seqs.append(seq)
        return seqs

    try:
        with ThreadPoolExecutor(threads) as pool:
            results = list(pool.map(work, range(threads)))
    finally:
        writer.close()
    seqs = sorted(s for r in results for s in r)
    assert seqs == list(range(1, threads * each + 1))  # gapless, each seq handed out once
    assert not not_yet_committed  # nothing returned before its commit
    assert writer.groups < threads * each  # callers shared commits
    r = report(adb)
    assert r.ok, r.problems
    assert r.records == threads * each and r.checkpoints >= 1
    with adb.session() as s:
        head = s.get(AuditHead, 1)
        assert head is not None and head.seq == threads * each
        assert head.checkpoint_seq == s.scalar(select(func.max(AuditCheckpoint.seq)))
        by_thread = s.execute(select(AuditRecord.system, func.count()).group_by(AuditRecord.system)).all()
        assert sorted(n for _, n in by_thread) == [each] * threads


def test_several_processes_one_chain(adb: Database) -> None:
    """uvicorn workers: each process has its own writer; the head lock keeps one chain."""
    code = """
import sys, threading
from onceonly.audit import append_call
from onceonly.db import Database
from onceonly.settings import load_settings
db = Database(load_settings(home=sys.argv[1], database_url=sys.argv[2]))
seqs = []
def work(t):
    for i in range(25):
        seqs.append(append_call(db, system=f"p{sys.argv[3]}", org=None, service="svc", mode="verify", status=200))
ts = [threading.Thread(target=work, args=(t,)) for t in range(4)]
[t.start() for t in ts]; [t.join() for t in ts]
print(" ".join(map(str, seqs)))
"""
    env = {k: v for k, v in os.environ.items() if not k.startswith("ONCEONLY_")}
    procs = [subprocess.Popen([sys.executable, "-c", code, str(adb.settings.home), adb.url, str(n)],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
             for n in range(3)]
    outs = [p.communicate(timeout=120) for p in procs]
    assert all(p.returncode == 0 for p in procs), [o[1][-2000:] for o in outs]
    seqs = sorted(int(s) for out, _ in outs for s in out.split())
    assert seqs == list(range(1, 301))
    r = report(adb)
    assert r.ok and r.records == 300, r.problems


def test_staff_action_commits_with_the_change_or_not_at_all(adb: Database) -> None:
    calls(adb, 2)
    with pytest.raises(RuntimeError), adb.session(write=True) as s:
        record_staff_action(s, actor=CLI, action="exchange.grant.create", target="grant:1")
        raise RuntimeError("the change failed")
    with adb.session(write=True) as s:
        seq = record_staff_action(s, actor=CLI, action="exchange.grant.revoke", target="grant:1",
                                  detail={"reason": "到期"})
    assert seq == 3  # the rolled-back one left no gap
    with adb.session() as s:
        rec = s.get(AuditRecord, 3)
        assert rec is not None and rec.kind == "staff" and rec.username == CLI.username
        assert rec.action == "exchange.grant.revoke" and rec.target == "grant:1"
        assert rec.detail == {"reason": "到期", "role": "platform_admin", "via": "cli"}
    assert append_call(adb, system="sys-a", org=None, service="svc", mode="api", status=200) == 4
    assert report(adb).ok


def test_staff_actions_and_calls_interleave(adb: Database) -> None:
    writer = writer_for(adb)

    def staff(i: int) -> int:
        with adb.session(write=True) as s:
            return record_staff_action(s, actor=CLI, action="exchange.key.rotate", target=f"system:s{i}")

    def call(i: int) -> int:
        return writer.append(entry("call", system="s", service="svc", mode="bulk", status=200, records=i))

    with ThreadPoolExecutor(8) as pool:
        futures = [pool.submit(staff if i % 5 == 0 else call, i) for i in range(100)]
        seqs = sorted(f.result() for f in futures)
    assert seqs == list(range(1, 101))
    assert report(adb).ok


def test_checkpoints_every_n_records(adb: Database) -> None:
    writer = AuditWriter(adb.url, adb.settings.home, checkpoint_every=10)
    try:
        for i in range(35):
            writer.append(entry("call", system="s", service="svc", mode="verify", status=200, records=i))
    finally:
        writer.close()
    with adb.session() as s:
        cps = s.scalars(select(AuditCheckpoint).order_by(AuditCheckpoint.seq)).all()
        assert [c.seq for c in cps] == [10, 20, 30]  # one record per group when calls come one by one
        key = signer(adb).public
        assert all(c.key_id == key.key_id for c in cps)
    r = report(adb)
    assert r.ok and r.checkpoints == 3


def test_unavailable_database_is_a_503_not_a_silent_loss(tmp_path: Path) -> None:
    writer = AuditWriter(f"sqlite:///{tmp_path / 'unmigrated.db'}", tmp_path)
    try:
        with pytest.raises(AuditUnavailable) as info:
            writer.append(entry("call", system="s", service="svc", mode="verify", status=200))
        assert info.value.status == 503
        with pytest.raises(AuditUnavailable):  # the writer survives a failed group
            writer.append(entry("call", system="s", service="svc", mode="verify", status=200))
    finally:
        writer.close()


def test_a_call_waiting_too_long_for_its_record_is_a_503(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """An event-loop caller whose group cannot commit in time (here: the writers' lock file of
    SQLite held by another writer) gets AuditUnavailable, never an answer; the record itself
    still commits once the lock is free, and the writer goes on."""
    import asyncio
    import fcntl

    from onceonly.audit import writer as writer_module

    monkeypatch.setattr(writer_module, "WAIT_SECONDS", 0.3)
    adb = open_database(tmp_path / "home")
    writer = AuditWriter(adb.url, adb.settings.home, checkpoint_every=0)
    assert writer._lock_path is not None
    fd = os.open(writer._lock_path, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        with pytest.raises(AuditUnavailable, match="not committed within"):
            asyncio.run(writer.append_async(entry("call", system="s", service="v", mode="api", status=200)))
        fcntl.flock(fd, fcntl.LOCK_UN)
        assert asyncio.run(writer.append_async(entry("call", system="s", service="v", mode="api", status=200))) == 2
    finally:
        os.close(fd)
        writer.close()
        adb.dispose()


def test_closed_writer_restarts_on_next_use(adb: Database) -> None:
    writer = AuditWriter(adb.url, adb.settings.home, checkpoint_every=0)
    assert writer.append(entry("call", system="s", service="v", mode="api", status=200)) == 1
    writer.close()
    assert writer.append(entry("call", system="s", service="v", mode="api", status=200)) == 2
    writer.close()
    assert threading.active_count() >= 1


def test_call_from_a_request_that_writes(adb: Database) -> None:
    """A request that already writes (usage counters) passes its session: on both backends the
    record joins that transaction (the writer could wait for a lock the request holds) and
    commits, or rolls back, with it."""
    fields = {"system": "sys-a", "org": None, "service": "svc", "mode": "query", "status": 200}
    with adb.session(write=True) as s:
        s.execute(text("INSERT INTO staff_actions (at, username, action, target, detail, outcome) "
                       "VALUES (CURRENT_TIMESTAMP, 'x', 'usage', 'grant:1', '{}', 'ok')"))  # the request's own write
        seq = append_call(adb, session=s, **fields)
        assert seq == 1
        assert not _committed(adb, seq)
    assert _committed(adb, 1)
    with pytest.raises(RuntimeError), adb.session(write=True) as s:
        append_call(adb, session=s, **fields)
        raise RuntimeError("not answered")
    assert not _committed(adb, 2)  # it went with the transaction
    assert append_call(adb, **fields) == 2
    assert report(adb).ok


def test_writer_settles_steps_in_the_records_transaction(adb: Database) -> None:
    """A call's step is settled (by its class, for the whole group) in the transaction that
    commits the records; content it returns replaces the call's record (a denial), and what it
    wrote commits with the records."""
    settled: list[list[int]] = []

    @dataclass
    class Counted:
        n: int
        deny: bool

        @classmethod
        def settle(cls, conn: Any, steps: Sequence[Counted]) -> list[Any]:
            settled.append([s.n for s in steps])
            for s in steps:
                conn.execute(text("INSERT INTO staff_actions (at, username, action, target, detail, outcome) "
                                  f"VALUES (CURRENT_TIMESTAMP, 'w', 'count', 'n:{s.n}', '{{}}', 'ok')"))
            return [entry("call", system="s", service="v", mode="api", status=429) if s.deny else None for s in steps]

    writer = AuditWriter(adb.url, adb.settings.home, checkpoint_every=0)
    try:
        assert writer.append(entry("call", system="s", service="v", mode="api", status=200),
                             step=Counted(1, deny=False)) == 1
        assert writer.append(entry("call", system="s", service="v", mode="api", status=200),
                             step=Counted(2, deny=True)) == 2
    finally:
        writer.close()
    assert settled == [[1], [2]]
    with adb.engine.connect() as conn:
        statuses = conn.execute(text("SELECT status FROM audit_records ORDER BY seq")).scalars().all()
        counted = conn.execute(text("SELECT count(*) FROM staff_actions WHERE action = 'count'")).scalar_one()
    assert statuses == [200, 429] and counted == 2
    assert report(adb).ok


def test_call_after_a_staff_action_in_the_same_transaction(adb: Database) -> None:
    """That transaction holds the head: the call record joins it on both backends."""
    fields = {"system": "sys-a", "org": None, "service": "svc", "mode": "query", "status": 200}
    with adb.session(write=True) as s:
        assert record_staff_action(s, actor=CLI, action="exchange.key.rotate", target="system:a") == 1
        assert append_call(adb, session=s, **fields) == 2
    with adb.session(write=True) as s:  # a new transaction holds nothing yet
        assert append_call(adb, session=s, **fields) == 3
    assert report(adb).ok
