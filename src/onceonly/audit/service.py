"""Appending to the chain, staff-action records, checkpoints and retention pruning.

Every function works inside a transaction its caller owns and flushes only. Whoever appends
first locks the head row (SELECT … FOR UPDATE on PostgreSQL; on SQLite the writer already holds
the database's single write lock), reads the last seq and hash, chains the new records onto them
and moves the head once — so seqs are gapless and the chain linear across threads and processes,
and a rolled-back transaction takes its records and its head move with it."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Connection, bindparam, delete, func, insert, select, update
from sqlalchemy.orm import Session

from onceonly.accounts.actor import Actor
from onceonly.audit.canonical import clean_text, normalize_detail, record_hash, signed_bytes
from onceonly.audit.keys import KeyPair
from onceonly.audit.models import AuditAnchor, AuditCheckpoint, AuditHead, AuditRecord
from onceonly.db import READ_ONLY_KEY, ReadOnlySession, utcnow
from onceonly.errors import ConfigError, Conflict, PlatformError, ValidationFailed
from onceonly.store.driver_statement import statement

KINDS = ("call", "staff", "delivery")
MIN_RETENTION_DAYS = 180  # also hard-coded in the prune guard trigger of migration 0003
_records = AuditRecord.metadata.tables["audit_records"]
_head = AuditHead.metadata.tables["audit_head"]
_LIMITS = {"system": 64, "org": 40, "username": 64, "service": 64, "mode": 16, "action": 64, "target": 200,
           "purpose": 200, "request_digest": 64, "ip": 64}


class AuditUnavailable(PlatformError):
    """The audit record could not be committed, so the call it describes must not be answered."""

    code, title, status = "audit-unavailable", "Audit log unavailable", 503


@dataclass(frozen=True)
class Head:
    seq: int
    hash: str
    checkpoint_seq: int


def entry(kind: str, *, system: str | None = None, org: str | None = None, username: str | None = None,
          service: str | None = None, mode: str | None = None, action: str | None = None,
          target: str | None = None, purpose: str | None = None, request_digest: str | None = None,
          status: int | None = None, records: int | None = None, nbytes: int | None = None,
          latency_ms: int | None = None, ip: str | None = None,
          detail: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """A record's content, normalized as stored and hashed (texts cleaned and cut to their columns)."""
    if kind not in KINDS:
        raise ValidationFailed(f"kind must be one of {', '.join(KINDS)}", field="kind")
    texts = {"system": system, "org": org, "username": username, "service": service, "mode": mode,
             "action": action, "target": target, "purpose": purpose, "request_digest": request_digest, "ip": ip}
    out: dict[str, Any] = {name: None if value is None or value == "" else clean_text(str(value), _LIMITS[name])
                           for name, value in texts.items()}
    out.update(kind=kind, status=_int(status), records=_int(records), bytes=_int(nbytes),
               latency_ms=_int(latency_ms), detail=normalize_detail(dict(detail or {})))
    return out


def _int(value: int | float | None) -> int | None:
    return None if value is None else max(0, min(int(value), 2**53 - 1))


# The statements of every group commit run on the driver (store/driver_statement.py): through
# SQLAlchemy's execution path they cost more than the rest of a group's work.
_RECORD_COLUMNS = tuple(c.name for c in _records.columns)


def _head_select() -> Any:
    return select(_head.c.seq, _head.c.hash, _head.c.checkpoint_seq).where(_head.c.id == 1).with_for_update()


def _records_insert() -> Any:
    return insert(_records).values({name: bindparam(f"v_{name}") for name in _RECORD_COLUMNS})


def _head_update() -> Any:
    return update(_head).where(_head.c.id == 1).values(
        seq=bindparam("v_seq"), hash=bindparam("v_hash"), checkpoint_seq=bindparam("v_checkpoint_seq"))


def lock_head(conn: Connection) -> Head:
    row = statement(conn, "audit-head-lock", _head_select, ()).first(conn, {})
    if row is None:
        raise ConfigError("the audit head row is missing: run `onceonly init`")
    return Head(int(row["seq"]), row["hash"], int(row["checkpoint_seq"]))


def append(conn: Connection, entries: Sequence[Mapping[str, Any]], *, clock: Callable[[], datetime] = utcnow,
           signer: KeyPair | None = None, checkpoint_every: int = 0) -> tuple[int, int]:
    """Chain `entries` onto the head in the caller's transaction; returns (first seq, last seq).

    The time is read after the head is locked, so times never go backwards along the chain
    (one clock). With a signer, a checkpoint is added once `checkpoint_every` records have
    passed since the last one. Refused on a connection in autocommit (a `Database.reading`
    one on PostgreSQL): the head lock would not be held and the records not commit together."""
    if conn.get_execution_options().get("isolation_level") == "AUTOCOMMIT":
        raise ReadOnlySession("the audit chain is appended in a transaction, not in autocommit")
    head = lock_head(conn)
    now = clock()
    seq, prev = head.seq, head.hash
    rows = []
    for content in entries:
        seq += 1
        row = {**content, "seq": seq, "time": now, "prev_hash": prev}
        prev = record_hash(row)
        row["hash"] = prev
        row["at"] = row.pop("time")
        rows.append(row)
    if not rows:
        return head.seq + 1, head.seq
    statement(conn, "audit-records-insert", _records_insert, [f"v_{n}" for n in _RECORD_COLUMNS]).executemany(
        conn, ({f"v_{name}": row[name] for name in _RECORD_COLUMNS} for row in rows))  # one executemany
    checkpoint_seq = head.checkpoint_seq
    if signer is not None and checkpoint_every and seq - head.checkpoint_seq >= checkpoint_every:
        _add_checkpoint(conn, signer, seq, prev, now)
        checkpoint_seq = seq
    statement(conn, "audit-head-update", _head_update, ["v_seq", "v_hash", "v_checkpoint_seq"]).execute(
        conn, {"v_seq": seq, "v_hash": prev, "v_checkpoint_seq": checkpoint_seq})
    return head.seq + 1, seq


def record_staff_action(session: Session, *, actor: Actor, action: str, target: str,
                        detail: Mapping[str, Any] | None = None, service: str | None = None) -> int:
    """Audit a staff action on exchange services, grants or credentials in the caller's own
    transaction, so the change and its record commit together (or neither does); returns its seq.

    It locks the chain head until the caller commits: call it as the last step of the change.
    On SQLite the session must be a writing one (`Database.session(write=True)`, which every
    non-GET request and CLI unit of work is)."""
    content = entry("staff", username=actor.username, action=action, target=target, ip=actor.ip,
                    service=service, detail={**dict(detail or {}), "role": actor.role, "via": actor.via})
    return append_in(session, [content])[0]


def append_in(session: Session, entries: Sequence[Mapping[str, Any]], *, signer: KeyPair | None = None,
              checkpoint_every: int = 0) -> tuple[int, int]:
    """`append` in a session's transaction (which then holds the head until it ends); never in
    a `Database.reading` session, which writes nothing."""
    if session.info.get(READ_ONLY_KEY):
        raise ReadOnlySession("a Database.reading() session does not write (audit record)")
    return append(session.connection(), entries, signer=signer, checkpoint_every=checkpoint_every)


def checkpoint(conn: Connection, signer: KeyPair, *, clock: Callable[[], datetime] = utcnow) -> AuditCheckpoint | None:
    """Sign the current head now (the CLI's `audit checkpoint`); None if already signed."""
    head = lock_head(conn)
    if head.seq == 0:
        raise Conflict("the audit log is empty: nothing to checkpoint")
    if head.checkpoint_seq == head.seq:
        return None
    now = clock()
    cp = _add_checkpoint(conn, signer, head.seq, head.hash, now)
    conn.execute(update(_head).where(_head.c.id == 1).values(checkpoint_seq=head.seq))
    return cp


def _add_checkpoint(conn: Connection, signer: KeyPair, seq: int, hash_: str, now: datetime) -> AuditCheckpoint:
    signature = signer.sign(signed_bytes("audit-checkpoint", seq=seq, hash=hash_, time=now))
    cp = AuditCheckpoint(seq=seq, hash=hash_, at=now, key_id=signer.public.key_id, signature=signature)
    conn.execute(insert(AuditCheckpoint).values(seq=seq, hash=hash_, at=now, key_id=cp.key_id, signature=signature))
    return cp


@dataclass(frozen=True)
class PruneResult:
    anchor_seq: int
    pruned: int
    cutoff: datetime


def prune(conn: Connection, signer: KeyPair, retention_days: int, *,
          clock: Callable[[], datetime] = utcnow) -> PruneResult | None:
    """Delete the records older than the retention period (the oldest contiguous run), after
    leaving a signed anchor with the seq and hash of the last one deleted; None if none is due."""
    if retention_days < MIN_RETENTION_DAYS:
        raise ValidationFailed(f"audit retention must be at least {MIN_RETENTION_DAYS} days",
                               field="audit_retention_days")
    lock_head(conn)  # no append interleaves with the anchor
    now = clock()
    cutoff = now - timedelta(days=retention_days)
    first = conn.scalar(select(func.min(_records.c.seq)))
    if first is None:
        return None
    newer = conn.scalar(select(func.min(_records.c.seq)).where(_records.c.at >= cutoff))
    last_old = (newer - 1) if newer is not None else conn.scalar(select(func.max(_records.c.seq)))
    if last_old is None or last_old < first:
        return None
    anchor_hash = conn.scalar(select(_records.c.hash).where(_records.c.seq == last_old))
    pruned = int(conn.scalar(select(func.count()).where(_records.c.seq <= last_old)) or 0)
    message = signed_bytes("audit-anchor", seq=last_old, hash=anchor_hash, time=now, cutoff=cutoff, pruned=pruned)
    conn.execute(insert(AuditAnchor).values(
        seq=last_old, hash=anchor_hash, at=now, cutoff=cutoff, pruned=pruned, key_id=signer.public.key_id,
        signature=signer.sign(message)))
    conn.execute(delete(_records).where(_records.c.seq <= last_old))
    return PruneResult(last_old, pruned, cutoff)
