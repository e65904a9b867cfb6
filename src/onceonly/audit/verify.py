"""Check the whole log: every record's hash, the links between them, the head, every signed
checkpoint and retention anchor. Reads in seq order a chunk at a time (bounded memory).

What a broken place looks like, and how it is named:

- altered: a record's recomputed hash differs from its stored hash;
- reordered: it matches only when recomputed with another seq (rows or seqs swapped), or its
  prev_hash is the hash of a record stored elsewhere;
- deleted: a gap in the seqs, a prev_hash that matches no stored record, or a head (or
  checkpoint) beyond the last record;
- checkpoint / anchor: a signature that fails, an unknown key, or a hash disagreeing with the
  record it names."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from typing import Any

from sqlalchemy import Connection, func, select

from onceonly.audit.canonical import record_hash, signed_bytes
from onceonly.audit.keys import PublicKey
from onceonly.audit.models import GENESIS, AuditAnchor, AuditCheckpoint, AuditHead, AuditRecord
from onceonly.audit.schemas import Problem, VerifyReport
from onceonly.db import Database

CHUNK = 5000
MAX_PROBLEMS = 100
_REORDER_WINDOW = 64
_records = AuditRecord.metadata.tables["audit_records"]
_cps = AuditCheckpoint.metadata.tables["audit_checkpoints"]


class _Check:
    def __init__(self, public_key: PublicKey | None) -> None:
        self.key = public_key
        self.problems: list[Problem] = []
        self.count = 0

    def add(self, kind: str, seq: int | None, message: str) -> None:
        self.count += 1
        if len(self.problems) < MAX_PROBLEMS:
            self.problems.append(Problem(kind=kind, seq=seq, message=message))

    def signature(self, what: str, seq: int, key_id: str, message: bytes, signature: str) -> bool:
        if self.key is None:
            self.add(what, seq, f"{what} at seq {seq}: no public key to check its signature "
                     "(the platform key is missing from the home)")
            return False
        if key_id != self.key.key_id:
            self.add(what, seq, f"{what} at seq {seq} was signed by key {key_id}, not by the platform key "
                     f"{self.key.key_id}")
            return False
        if not self.key.verify(message, signature):
            self.add(what, seq, f"{what} at seq {seq}: SM2 signature does not verify (forged or altered)")
            return False
        return True


def verify_database(db: Database, public_key: PublicKey | None,
                    progress: Callable[[int, int], None] | None = None) -> VerifyReport:
    """Verify one consistent snapshot of the log (REPEATABLE READ on PostgreSQL; one read
    transaction on SQLite): records appended meanwhile are left for the next run."""
    conn = db.engine.connect()
    try:
        if not db.is_sqlite:
            conn = conn.execution_options(isolation_level="REPEATABLE READ")
        with conn.begin():
            return verify(conn, public_key, progress)
    finally:
        conn.close()


def verify(conn: Connection, public_key: PublicKey | None,
           progress: Callable[[int, int], None] | None = None) -> VerifyReport:
    """Verify the log as `conn`'s transaction sees it; `progress(done, total)` after each chunk."""
    started = time.perf_counter()
    check = _Check(public_key)
    head = conn.execute(select(AuditHead.seq, AuditHead.hash).where(AuditHead.id == 1)).one()
    head_seq, head_hash = int(head.seq), head.hash
    until = max(head_seq, conn.scalar(select(func.max(_records.c.seq))) or 0)

    start_seq, start_hash, anchors = 0, GENESIS, 0
    for a in conn.execute(select(AuditAnchor).order_by(AuditAnchor.seq)).all():
        anchors += 1
        message = signed_bytes("audit-anchor", seq=a.seq, hash=a.hash, time=a.at, cutoff=a.cutoff, pruned=a.pruned)
        check.signature("anchor", a.seq, a.key_id, message, a.signature)
        start_seq, start_hash = a.seq, a.hash

    checkpoints = _checkpoints(conn)
    cp = next(checkpoints, None)
    signed = 0

    def take_checkpoints(upto: int, stored: dict[int, str]) -> None:
        """Check the checkpoints up to seq `upto`: signature, and hash against `stored` (seq → hash);
        one above the anchor whose seq is not in `stored` names a missing record."""
        nonlocal cp, signed
        while cp is not None and cp.seq <= upto:
            message = signed_bytes("audit-checkpoint", seq=cp.seq, hash=cp.hash, time=cp.at)
            if check.signature("checkpoint", cp.seq, cp.key_id, message, cp.signature):
                signed += 1
            if cp.seq in stored and stored[cp.seq] != cp.hash:
                check.add("checkpoint", cp.seq, f"checkpoint at seq {cp.seq}: its hash disagrees with the record's "
                          "(records up to it were rewritten, or the checkpoint was altered)")
            elif cp.seq not in stored and cp.seq > start_seq:
                check.add("deleted", cp.seq, f"checkpoint at seq {cp.seq} names a record that is missing (deleted)")
            cp = next(checkpoints, None)

    take_checkpoints(start_seq, {start_seq: start_hash} if start_seq else {})
    prev_seq, prev_hash, checked, first = start_seq, start_hash, 0, None
    for chunk in _chunks(conn, start_seq, until):
        for row in chunk:
            seq = row["seq"]
            first = seq if first is None else first
            checked += 1
            _check_record(conn, check, row, prev_seq, prev_hash)
            prev_seq, prev_hash = seq, row["hash"]
            take_checkpoints(seq, {seq: row["hash"]})  # so problems come in seq order
        if progress is not None:
            progress(prev_seq - start_seq, until - start_seq)
    take_checkpoints(2**63 - 1, {})  # any left name records past the last one: deleted at the end

    if head_seq > prev_seq:
        check.add("deleted", prev_seq + 1, f"the head is at seq {head_seq} but the last record is seq {prev_seq}: "
                  "records at the end were deleted")
    elif head_seq < prev_seq:
        check.add("head", head_seq, f"the head is at seq {head_seq} but records go up to seq {prev_seq}: "
                  "the head was moved back")
    elif head_hash != prev_hash:
        check.add("head", head_seq, f"the head's hash disagrees with the record at seq {head_seq}: "
                  "the last record or the head was altered")

    ok = check.count == 0
    return VerifyReport(
        ok=ok, records=checked, first_seq=first, last_seq=prev_seq if checked else None, head_seq=head_seq,
        checkpoints=signed, anchors=anchors, anchor_seq=start_seq or None,
        public_key_id=public_key.key_id if public_key else None,
        problem_count=check.count, problems=check.problems, seconds=round(time.perf_counter() - started, 3),
        summary=_summary(ok, checked, first, prev_seq, signed, start_seq, check))


def _check_record(conn: Connection, check: _Check, row: dict[str, Any], prev_seq: int, prev_hash: str) -> None:
    seq = row["seq"]
    gap = seq != prev_seq + 1
    if gap:
        missing = f"seq {prev_seq + 1}" if seq == prev_seq + 2 else f"seqs {prev_seq + 1}–{seq - 1}"
        check.add("deleted", prev_seq + 1, f"{missing} missing after seq {prev_seq}: records were deleted")
    if _hash_of(row) != row["hash"]:
        moved = _written_as(row)
        if moved is not None:
            check.add("reordered", seq, f"the record stored at seq {seq} was written as seq {moved}: "
                      "records were reordered")
        else:
            check.add("altered", seq, f"record altered: hash mismatch at seq {seq}")
        return
    if not gap and row["prev_hash"] != prev_hash:
        elsewhere = None
        if check.count < MAX_PROBLEMS:  # one scan per reported break at most
            elsewhere = conn.scalar(select(_records.c.seq).where(_records.c.hash == row["prev_hash"]).limit(1))
        if elsewhere is not None:
            check.add("reordered", seq, f"the record at seq {seq} was chained after the one now at seq {elsewhere}: "
                      "records were reordered")
        else:
            check.add("deleted", seq, f"prev_hash mismatch at seq {seq}: the record it was chained to is gone "
                      f"(deleted or replaced after seq {prev_seq})")


def _hash_of(row: dict[str, Any], seq: int | None = None) -> str | None:
    record = {**row, "time": row["at"]}
    if seq is not None:
        record["seq"] = seq
    try:
        return record_hash(record)
    except (TypeError, ValueError):  # a value no writer could have stored
        return None


def _written_as(row: dict[str, Any]) -> int | None:
    seq = row["seq"]
    for other in range(max(1, seq - _REORDER_WINDOW), seq + _REORDER_WINDOW + 1):
        if other != seq and _hash_of(row, other) == row["hash"]:
            return other
    return None


def _chunks(conn: Connection, after: int, until: int) -> Iterator[list[dict[str, Any]]]:
    last = after
    while True:
        rows = [dict(r._mapping) for r in conn.execute(
            select(_records).where(_records.c.seq > last, _records.c.seq <= until)
            .order_by(_records.c.seq).limit(CHUNK))]
        if not rows:
            return
        yield rows
        last = rows[-1]["seq"]


def _checkpoints(conn: Connection) -> Iterator[Any]:
    last = -1
    while True:
        rows = conn.execute(select(_cps).where(_cps.c.seq > last)
                            .order_by(_cps.c.seq).limit(CHUNK)).all()
        if not rows:
            return
        yield from rows
        last = rows[-1].seq


def _summary(ok: bool, checked: int, first: int | None, last: int, signed: int, anchor: int, check: _Check) -> str:
    if not ok:
        p = check.problems[0]
        more = f" ({check.count - 1} more problem(s) after it)" if check.count > 1 else ""
        return f"audit log BROKEN: {p.message}{more}"
    if checked == 0:
        return "audit log intact: no records" + (f" after the retention anchor at seq {anchor}" if anchor else "")
    since = f", verified from the retention anchor at seq {anchor}" if anchor else ""
    return (f"audit log intact: {checked:,} records (seq {first:,}–{last:,}) chained and hashed, "
            f"{signed:,} checkpoint signature(s) valid{since}")
