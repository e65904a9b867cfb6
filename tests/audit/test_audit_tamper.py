"""Tampering is refused by the database, and what a superuser does anyway is found by verify:
altered, deleted, reordered records, forged checkpoints, a truncated tail. Retention pruning
is the one deletion allowed, and the chain still verifies after it."""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta
from pathlib import Path

import pytest
from audit_factories import calls, report, signer, tamper
from sqlalchemy import text
from sqlalchemy.exc import DBAPIError

from harness import open_database
from onceonly.audit import repository as repo
from onceonly.audit import service
from onceonly.audit.canonical import record_hash
from onceonly.audit.keys import KeyPair
from onceonly.audit.models import GENESIS, AuditAnchor
from onceonly.audit.schemas import AuditFilter
from onceonly.db import Database, utcnow

OLD = utcnow() - timedelta(days=400)


def problem(db: Database) -> tuple[str, int | None, str]:
    r = report(db)
    assert not r.ok and r.problems, r
    first = r.problems[0]
    assert r.summary.startswith("audit log BROKEN: " + first.message)
    return first.kind, first.seq, first.message


@pytest.mark.parametrize("statement", [
    "UPDATE audit_records SET status = 500 WHERE seq = 2",
    "UPDATE audit_records SET hash = prev_hash",
    "DELETE FROM audit_records WHERE seq = 3",
    "DELETE FROM audit_records",
    "UPDATE audit_checkpoints SET hash = 'x'",
    "DELETE FROM audit_checkpoints",
    "DELETE FROM audit_head",
    "UPDATE audit_head SET seq = 1",
])
def test_triggers_refuse_changes(adb: Database, statement: str) -> None:
    calls(adb, 5, checkpoint_every=5)
    with pytest.raises(DBAPIError, match=r"append-only|only records covered|moves forward|cannot be deleted"), \
            adb.engine.begin() as conn:
        conn.execute(text(statement))
    assert report(adb).ok


@pytest.mark.postgresql
def test_truncate_is_refused_on_postgresql(pg_url: Callable[[str], str], tmp_path: Path) -> None:
    pg = open_database(tmp_path, pg_url("truncate"))
    try:
        calls(pg, 3)
        for table in ("audit_records", "audit_checkpoints", "audit_anchors", "audit_head"):
            with pytest.raises(DBAPIError, match="append-only"), pg.engine.begin() as conn:
                conn.execute(text(f"TRUNCATE {table} CASCADE"))
        assert report(pg).records == 3
    finally:
        pg.dispose()


def test_an_anchor_alone_does_not_open_young_records(adb: Database) -> None:
    """The guard wants both: a covering anchor and an age over 180 days."""
    calls(adb, 3)
    with adb.engine.begin() as conn:
        conn.execute(AuditAnchor.__table__.insert().values(seq=3, hash="0" * 64, at=utcnow(), cutoff=utcnow(),
                                                           pruned=3, key_id="x", signature="y"))
    with pytest.raises(DBAPIError, match="only records covered"), adb.engine.begin() as conn:
        conn.execute(text("DELETE FROM audit_records WHERE seq = 1"))


def test_intact_log_verifies(adb: Database) -> None:
    calls(adb, 30, checkpoint_every=10)
    calls(adb, 5)
    r = report(adb)
    assert r.ok and r.records == 35 and r.first_seq == 1 and r.last_seq == 35 and r.head_seq == 35
    assert r.checkpoints == 1 and r.problem_count == 0
    assert "35 records" in r.summary


def test_edited_row_is_found(adb: Database) -> None:
    calls(adb, 10)
    tamper(adb, "UPDATE audit_records SET records = 999 WHERE seq = 6")
    assert problem(adb) == ("altered", 6, "record altered: hash mismatch at seq 6")


def test_edited_and_rehashed_row_breaks_the_next_link(adb: Database) -> None:
    calls(adb, 10)
    tamper(adb, "UPDATE audit_records SET hash = :h WHERE seq = 4", h="f" * 64)
    kind, seq, _ = problem(adb)
    assert (kind, seq) == ("altered", 4)
    r = report(adb)
    assert [p.seq for p in r.problems] == [4, 5]  # and record 5 no longer links to it
    assert r.problems[1].kind == "deleted"


def test_deleted_row_is_found(adb: Database) -> None:
    calls(adb, 10)
    tamper(adb, "DELETE FROM audit_records WHERE seq = 7")
    assert problem(adb) == ("deleted", 7, "seq 7 missing after seq 6: records were deleted")


def test_deleted_and_renumbered_rows_are_found(adb: Database) -> None:
    """Closing the gap by renumbering does not help: the seq is in the hash."""
    calls(adb, 6)
    tamper(adb, "DELETE FROM audit_records WHERE seq = 3",
           "UPDATE audit_records SET seq = seq - 1 WHERE seq > 3")
    kind, seq, message = problem(adb)
    assert (kind, seq) == ("reordered", 3)
    assert "written as seq 4" in message


def test_swapped_seqs_are_reported_as_reordered(adb: Database) -> None:
    calls(adb, 8)
    tamper(adb, "UPDATE audit_records SET seq = -5 WHERE seq = 5",
           "UPDATE audit_records SET seq = 5 WHERE seq = 6",
           "UPDATE audit_records SET seq = 6 WHERE seq = -5")
    kind, seq, message = problem(adb)
    assert (kind, seq) == ("reordered", 5)
    assert message == "the record stored at seq 5 was written as seq 6: records were reordered"


def test_swapped_contents_are_found(adb: Database) -> None:
    calls(adb, 8)
    cols = "records, bytes, latency_ms, detail"
    tamper(adb, f"CREATE TABLE tmp_swap AS SELECT seq, {cols} FROM audit_records WHERE seq IN (2, 3)",
           "UPDATE audit_records SET records = (SELECT records FROM tmp_swap WHERE seq = 3), "
           "bytes = (SELECT bytes FROM tmp_swap WHERE seq = 3) WHERE seq = 2",
           "UPDATE audit_records SET records = (SELECT records FROM tmp_swap WHERE seq = 2), "
           "bytes = (SELECT bytes FROM tmp_swap WHERE seq = 2) WHERE seq = 3")
    r = report(adb)
    assert not r.ok and [(p.kind, p.seq) for p in r.problems] == [("altered", 2), ("altered", 3)]


def test_truncated_tail_is_found_by_the_head(adb: Database) -> None:
    calls(adb, 10)
    tamper(adb, "DELETE FROM audit_records WHERE seq > 8")
    assert problem(adb) == ("deleted", 9, "the head is at seq 10 but the last record is seq 8: "
                                          "records at the end were deleted")


def test_truncated_tail_with_head_moved_back_is_found_by_a_checkpoint(adb: Database) -> None:
    calls(adb, 10, checkpoint_every=10)
    tamper(adb, "DELETE FROM audit_records WHERE seq > 7",
           "UPDATE audit_head SET seq = 7, hash = (SELECT hash FROM audit_records WHERE seq = 7)")
    kind, seq, message = problem(adb)
    assert (kind, seq) == ("deleted", 10) and "checkpoint at seq 10" in message


def test_rewritten_chain_is_caught_by_the_checkpoint(adb: Database) -> None:
    """Rewriting a record and rehashing everything after it (and the head) leaves the links
    intact, but not the signed checkpoint."""
    calls(adb, 6, checkpoint_every=6)
    with adb.session() as s:
        rows = repo.rows(s, AuditFilter(), 0, 100)
    prev, updates = GENESIS, []
    for row in rows:
        row.update(prev_hash=prev, records=12345 if row["seq"] == 2 else row["records"])
        prev = record_hash(row)
        updates.append((row["seq"], row["records"], row["prev_hash"], prev))
    tamper(adb, *[f"UPDATE audit_records SET records = {r}, prev_hash = '{p}', hash = '{h}' WHERE seq = {s}"
                  for s, r, p, h in updates],
           f"UPDATE audit_head SET hash = '{prev}'")
    r = report(adb)
    assert not r.ok
    assert [(p.kind, p.seq) for p in r.problems] == [("checkpoint", 6)]
    assert "hash disagrees" in r.problems[0].message


@pytest.mark.parametrize("forgery", ["signature", "hash", "key"])
def test_forged_checkpoint_is_found(adb: Database, forgery: str) -> None:
    calls(adb, 5, checkpoint_every=5)
    if forgery == "signature":
        sig = KeyPair.from_private(bytes.fromhex("42" * 32)).sign(b"forged")
        tamper(adb, "UPDATE audit_checkpoints SET signature = :s", s=sig)
        expected = "SM2 signature does not verify"
    elif forgery == "hash":
        tamper(adb, "UPDATE audit_checkpoints SET hash = :h", h="0" * 64)
        expected = "SM2 signature does not verify"
    else:
        other = KeyPair.from_private(bytes.fromhex("42" * 32))
        tamper(adb, "UPDATE audit_checkpoints SET key_id = :k", k=other.public.key_id)
        expected = "not by the platform key"
    kind, seq, message = problem(adb)
    assert (kind, seq) == ("checkpoint", 5) and expected in message


def test_inserted_checkpoint_signed_by_another_key_is_found(adb: Database) -> None:
    calls(adb, 4)
    with adb.session(write=True) as s:
        service.checkpoint(s.connection(), KeyPair.from_private(bytes.fromhex("42" * 32)))
    signer(adb)  # the platform key exists, and is not the one above
    kind, seq, _ = problem(adb)
    assert (kind, seq) == ("checkpoint", 4)


def test_checkpoints_without_a_public_key_do_not_pass(adb: Database) -> None:
    calls(adb, 3)
    with adb.session(write=True) as s:
        service.checkpoint(s.connection(), KeyPair.from_private(bytes.fromhex("42" * 32)))
    kind, _, message = problem(adb)
    assert kind == "checkpoint" and "no public key" in message


def test_prune_leaves_a_signed_anchor_and_the_rest_verifies(adb: Database) -> None:
    calls(adb, 20, at=OLD, checkpoint_every=10)
    calls(adb, 5, checkpoint_every=3)
    with adb.session(write=True) as s:
        result = service.prune(s.connection(), signer(adb), 180)
    assert result is not None and result.anchor_seq == 20 and result.pruned == 20
    r = report(adb)
    assert r.ok, r.problems
    assert (r.records, r.first_seq, r.anchor_seq, r.anchors, r.checkpoints) == (5, 21, 20, 1, 2)
    assert "from the retention anchor at seq 20" in r.summary
    with adb.session(write=True) as s:  # nothing more is due
        assert service.prune(s.connection(), signer(adb), 180) is None


def test_prune_refuses_short_retention(adb: Database) -> None:
    calls(adb, 2, at=OLD)
    with adb.session(write=True) as s, pytest.raises(Exception, match="at least 180"):
        service.prune(s.connection(), signer(adb), 179)


def test_forged_anchor_is_found(adb: Database) -> None:
    calls(adb, 10, at=OLD)
    with adb.session(write=True) as s:
        service.prune(s.connection(), signer(adb), 180)
    calls(adb, 2)
    tamper(adb, "UPDATE audit_anchors SET pruned = 3")
    kind, seq, message = problem(adb)
    assert (kind, seq) == ("anchor", 10) and "signature does not verify" in message


def test_deleting_past_the_anchor_is_found(adb: Database) -> None:
    calls(adb, 10, at=OLD)
    with adb.session(write=True) as s:
        service.prune(s.connection(), signer(adb), 180)
    calls(adb, 3)
    tamper(adb, "DELETE FROM audit_records WHERE seq = 11")
    assert problem(adb) == ("deleted", 11, "seq 11 missing after seq 10: records were deleted")
