"""The ingest pipeline: decode → map → coerce → validate → upsert, one batch at a time.

A batch is recorded as `running` in its own small transaction; then the rows, the quarantined
rows, the store changes and the final counts go into ONE transaction, so a batch commits whole
or not at all — killed at any point, the store is as before. A failure is recorded afterwards in
a third transaction (status `failed` with the reason). Dynamic ingest feeds the same
`_load` with rows from a source database."""

from __future__ import annotations

import hashlib
import os
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from sqlalchemy.orm import Session

from onceonly.accounts.actor import Actor
from onceonly.accounts.service import record
from onceonly.catalog import codelists
from onceonly.catalog.models import Resource
from onceonly.catalog.service import get_resource
from onceonly.db import Database, utcnow
from onceonly.errors import Conflict, NotFound, PermissionDenied, PlatformError, ValidationFailed
from onceonly.ingest import repository as repo
from onceonly.ingest.checks import RowChecker
from onceonly.ingest.coerce import CoercionError
from onceonly.ingest.mapping import build_column_map, missing_required_error
from onceonly.ingest.models import Batch
from onceonly.ingest.readers import open_source
from onceonly.ingest.schemas import BatchReport, IngestOptions, RejectionOut
from onceonly.ingest.types import IngestInputError
from onceonly.store import service as store

CHUNK = 5000
REPORTED_REJECTIONS = 20
RESUBMIT_COLUMN = "_row"
Progress = Callable[[int, int], None]  # (rows read, bytes of the file) — called every chunk

# Live progress of batches running in this process (the web and API poll it).
_progress: dict[int, dict[str, Any]] = {}
_progress_lock = threading.Lock()


class IngestFailed(ValidationFailed):
    """The file as a whole was refused; nothing was written. `rule` names the reason."""

    code, title = "ingest", "File refused"

    def __init__(self, exc: IngestInputError) -> None:
        where = f"row {exc.row}: " if exc.row is not None else ""
        super().__init__(f"{where}{exc.zh} / {exc.en}", field=exc.rule)
        self.rule = exc.rule


def live_progress(batch_id: int) -> dict[str, Any] | None:
    with _progress_lock:
        return dict(_progress[batch_id]) if batch_id in _progress else None


def _set_progress(batch_id: int, **values: Any) -> None:
    with _progress_lock:
        _progress.setdefault(batch_id, {}).update(values)


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        while block := fh.read(1 << 20):
            digest.update(block)
    return digest.hexdigest()


def start_batch(session: Session, actor: Actor, resource_ref: str | int, file_name: str, size: int,
                options: IngestOptions, source: str = "file") -> int:
    """Check who may load what, then record the batch as running. The caller commits this at
    once, before the rows are loaded, so the batch is visible (and pollable) while it runs."""
    res = get_resource(session, resource_ref)
    if not actor.can("resource.edit", res.provider_id):
        raise PermissionDenied(f"role {actor.role} may not load data into {res.code} (another department's)")
    if res.status != "published":
        raise Conflict(f"resource {res.code} v{res.version} is {res.status}; only a published resource takes data",
                       field="resource")
    if options.resubmit_of is not None:
        original = repo.batch(session, options.resubmit_of)
        if original is None or original.resource_id != res.id:
            raise NotFound(f"batch {options.resubmit_of} of resource {res.code} not found", field="resubmit_of")
    batch = Batch(resource_id=res.id, mode=options.mode, status="running", source=source,
                  file_name=file_name[:255], file_size=size, force=options.force,
                  resubmit_of=options.resubmit_of, username=actor.username, pid=os.getpid())
    session.add(batch)
    session.flush()
    record(session, actor, "ingest.start", f"resource:{res.code}",
           {"batch": batch.id, "file": file_name[:255], "mode": options.mode})
    return batch.id


def ingest_file(db: Database, actor: Actor, resource_ref: str | int, path: Path, options: IngestOptions,
                progress: Progress | None = None, batch_id: int | None = None,
                max_delete_share: float = 0.2) -> BatchReport:
    """Load one file. Returns the report; a refused file raises IngestFailed after recording it."""
    path = Path(path)
    if not path.is_file():
        raise ValidationFailed(f"{path}: no such file", field="file")
    if batch_id is None:
        with db.session(write=True) as session:
            batch_id = start_batch(session, actor, resource_ref, path.name, path.stat().st_size, options)
    started = time.perf_counter()
    _set_progress(batch_id, read=0, bytes=path.stat().st_size, status="running")
    try:
        digest = sha256_of(path)
        with db.session(write=True) as session:
            batch = get_batch(session, batch_id)
            res = get_resource(session, batch.resource_id)
            with open_source(path, fmt=options.format, encoding=options.encoding, sheet=options.sheet) as src:
                batch.sha256, batch.format, batch.encoding, batch.sheet = digest, src.format, src.encoding, src.sheet
                tell = src.info.get("tell")
                _load(session, res, batch, src.header, src.rows, options, progress, max_delete_share,
                      tell if callable(tell) else None)
            _finish(session, batch, started)
            record(session, actor, "ingest.commit", f"resource:{res.code}",
                   {"batch": batch_id, "inserted": batch.inserted, "updated": batch.updated,
                    "deleted": batch.deleted, "rejected": batch.rejected})
    except IngestInputError as exc:
        _fail(db, batch_id, str(exc), started)
        raise IngestFailed(exc) from None
    except PlatformError as exc:
        _fail(db, batch_id, exc.message, started)
        raise
    except BaseException as exc:
        _fail(db, batch_id, f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}", started)
        raise
    finally:
        with _progress_lock:
            _progress.pop(batch_id, None)
    return report(db, batch_id)


def get_batch(session: Session, batch_id: int) -> Batch:
    batch = repo.batch(session, batch_id)
    if batch is None:
        raise NotFound(f"batch {batch_id} not found", field="batch")
    return batch


def _load(session: Session, res: Resource, batch: Batch, header: list[str],
          rows: Iterator[tuple[int, list[Any]]], options: IngestOptions, progress: Progress | None,
          max_delete_share: float, tell: Callable[[], int] | None = None) -> None:
    """The single path from raw rows to the store (files now, source databases later)."""
    explicit = options.mapping
    if options.resubmit_of is not None:
        explicit = {**(explicit or {}), RESUBMIT_COLUMN: None, "_problems": None}
    cmap = build_column_map(header, res.fields, explicit)
    if cmap.missing_required:
        raise missing_required_error(cmap.missing_required, res.fields)
    code_sets: dict[str, set[str]] = {}
    local: dict[str, dict[str, str]] = {}
    for f in res.fields:
        if f.code_list:
            code_sets[f.name] = codelists.codes_set(session, f.code_list)
            local[f.name] = codelists.mapping_dict(session, res.provider_id, f.code_list)
    checker = RowChecker(res.fields, res.key_fields, code_sets, local, res.rules, columns=cmap, width=len(header))
    resubmit_col = header.index(RESUBMIT_COLUMN) if options.resubmit_of is not None and RESUBMIT_COLUMN in header \
        else None
    key_cols = [i for k in res.key_fields for i, name in cmap.columns.items() if name == k]
    string_keys = all(f.type == "string" for f in res.fields if f.name in res.key_fields)
    key_fns = [checker.plans[k].closure() for k in res.key_fields]
    key_lengths = [next((f.length for f in res.fields if f.name == k), None) for k in res.key_fields]
    seen_keys: list[tuple[Any, ...]] = []
    rule_counts: Counter[str] = Counter()
    good: list[dict[str, Any]] = []
    rejected: list[dict[str, Any]] = []
    resolved: list[int] = []
    read = rejected_rows = 0
    replace = options.mode == "replace"

    def flush() -> None:
        if good:
            result = store.upsert_rows(session, res, good, batch.id)
            batch.inserted += result.inserted
            batch.updated += result.updated
            batch.unchanged += result.unchanged
            if replace:
                seen_keys.extend(tuple(r[k] for k in res.key_fields) for r in good)
            good.clear()
        if rejected:
            repo.add_rejections(session, rejected)
            rejected.clear()

    live_before = 0
    if replace:
        store.lock_resource(session, res)
        live_before = store.row_count(session, res)  # the share is of these, not diluted by new rows
        store.begin_stage(session, res)
    for number, values in rows:
        read += 1
        typed, problems = checker.check_row(values)
        if typed is not None and not problems:
            good.append(typed)
            if resubmit_col is not None and resubmit_col < len(values):
                original = _source_row(values[resubmit_col])
                if original is not None:
                    resolved.append(original)
        else:
            rule_counts.update(p.rule for p in problems)
            rejected_rows += 1
            original = _source_row(values[resubmit_col]) if resubmit_col is not None and \
                resubmit_col < len(values) else None
            rejected.append({"batch_id": batch.id, "row_number": original if original is not None else number,
                             "raw": _raw(header, values), "problems": [p.as_dict() for p in problems]})
            if replace and key_cols and len(key_cols) == len(res.key_fields):
                key = _rejected_key(values, key_cols, key_fns, key_lengths if string_keys else None)
                if key is not None:  # a row to fix is not a row to delete
                    seen_keys.append(key)
        if len(good) + len(rejected) >= CHUNK:
            flush()
            batch.read = read
            position = tell() if tell else 0
            _set_progress(batch.id, read=read, position=position)
            if progress:
                progress(read, position)
        if replace and len(seen_keys) >= CHUNK:
            store.stage_keys(session, res, seen_keys)
            seen_keys.clear()
    flush()
    batch.read = read
    batch.rejected = rejected_rows
    batch.rule_counts = dict(rule_counts.most_common())
    batch.unmapped = list(cmap.unmapped)
    if progress:
        progress(read, batch.file_size)
    if replace:
        store.stage_keys(session, res, seen_keys)
        _, gone = store.count_missing(session, res)
        total = live_before
        if total and gone / total > max_delete_share and not options.force:
            raise Conflict(
                f"replace would delete {gone} of {total} rows ({gone / total:.0%}), more than the "
                f"{max_delete_share:.0%} allowed; check the file, or pass --force", field="mode")
        batch.deleted = store.delete_missing(session, res, batch.id)
    if options.resubmit_of is not None and resolved:
        repo.resolve(session, options.resubmit_of, resolved, batch.id)


def _rejected_key(values: list[Any], key_cols: list[int], key_fns: list[Callable[[Any], Any]],
                  text_lengths: list[int | None] | None) -> tuple[Any, ...] | None:
    """The key of a rejected row as the store holds it (a lowercase x or a 15-digit ID is
    normalized like an accepted row's), or — for text keys (`text_lengths` given) — its trimmed
    text when the key cell itself is bad; None when it cannot be a stored key."""
    key: list[Any] = []
    for n, (i, fn) in enumerate(zip(key_cols, key_fns, strict=True)):
        raw = values[i] if i < len(values) else None
        try:
            value = fn(raw)
        except CoercionError:
            if text_lengths is None or raw is None:
                return None
            value = str(raw).strip()
            limit = text_lengths[n]
            if limit and len(value) > limit:  # longer than the column: no stored row has it
                return None
        if value is None or value == "":
            return None
        key.append(value)
    return tuple(key)


def _source_row(value: Any) -> int | None:
    """The `_row` of a resubmitted row (typed by people: blank, text, 1e400…) or None."""
    try:
        row = int(float(str(value).strip()))
    except (ValueError, OverflowError):
        return None
    return row if 0 < row < 2**53 else None


def _raw(header: list[str], values: list[Any]) -> dict[str, Any]:
    """The row as the user sent it (JSON-safe), so it can be corrected and sent again."""
    out: dict[str, Any] = {}
    for i, value in enumerate(values):
        name = header[i] if i < len(header) else f"_extra_{i + 1}"
        out[name] = value if value is None or isinstance(value, (str, int, float, bool)) else str(value)
    return out


def _finish(session: Session, batch: Batch, started: float) -> None:
    batch.status = "committed"
    batch.finished_at = utcnow()
    batch.duration_ms = int((time.perf_counter() - started) * 1000)


def _fail(db: Database, batch_id: int, message: str, started: float) -> None:
    with db.session(write=True) as session:
        batch = repo.batch(session, batch_id)
        if batch is not None:
            batch.status = "failed"
            batch.error = message[:2000]
            batch.finished_at = utcnow()
            batch.duration_ms = int((time.perf_counter() - started) * 1000)


def mark_interrupted(db: Database) -> int:
    """Batches left `running` by a process that no longer exists (killed): their transaction
    was rolled back by the database, so the store is as before; say so in their status."""
    n = 0
    with db.session(write=True) as session:
        for batch in repo.running_batches(session):
            if batch.pid is None or not _alive(batch.pid):
                batch.status, batch.error = "interrupted", "the process ended before the batch committed"
                batch.finished_at = utcnow()
                n += 1
    return n


def _alive(pid: int) -> bool:
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def report(db: Database, batch_id: int) -> BatchReport:
    with db.session() as session:
        return batch_report(session, get_batch(session, batch_id))


def batch_report(session: Session, batch: Batch) -> BatchReport:
    res = get_resource(session, batch.resource_id)
    first: list[RejectionOut] = []
    for rej in repo.first_rejections(session, batch.id, REPORTED_REJECTIONS):
        for p in rej.problems:
            first.append(RejectionOut(row=rej.row_number, field=p["field"], rule=p["rule"], message=p["zh"],
                                      message_en=p["en"]))
    seconds = (batch.duration_ms or 0) / 1000
    return BatchReport(
        id=batch.id, resource=res.code, version=res.version, status=batch.status, mode=batch.mode,
        file_name=batch.file_name, size=batch.file_size, sha256=batch.sha256, format=batch.format,
        encoding=batch.encoding, sheet=batch.sheet, read=batch.read, inserted=batch.inserted,
        updated=batch.updated, unchanged=batch.unchanged, deleted=batch.deleted, rejected=batch.rejected,
        rule_counts=dict(batch.rule_counts or {}), unmapped=list(batch.unmapped or []), rejections=first,
        error=batch.error, resubmit_of=batch.resubmit_of, username=batch.username, started_at=batch.started_at,
        finished_at=batch.finished_at, duration_ms=batch.duration_ms,
        rows_per_sec=round(batch.read / seconds, 1) if seconds > 0 else None,
        progress=live_progress(batch.id),
    )


def history(session: Session, resource_ref: str) -> list[BatchReport]:
    from onceonly.catalog.repository import versions_of

    res = get_resource(session, resource_ref)
    ids = [v.id for v in versions_of(session, res.name)]
    return [batch_report(session, b) for b in repo.batches_of(session, ids)]
