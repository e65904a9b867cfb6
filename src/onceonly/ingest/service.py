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
from collections import Counter, deque
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from itertools import islice
from operator import itemgetter
from pathlib import Path
from typing import Any

import numpy as np
from sqlalchemy.orm import Session

from onceonly.accounts.actor import Actor
from onceonly.accounts.service import record
from onceonly.catalog import codelists
from onceonly.catalog.models import Resource
from onceonly.catalog.service import get_resource
from onceonly.db import Database, utcnow
from onceonly.errors import Conflict, NotFound, PermissionDenied, PlatformError, ValidationFailed
from onceonly.ingest import repository as repo
from onceonly.ingest.checks import RowChecker, duplicate_key
from onceonly.ingest.coerce import CoercionError
from onceonly.ingest.fastpath import KnownDigests, RowDigests, fingerprint
from onceonly.ingest.keyguard import KeyGuard
from onceonly.ingest.mapping import build_column_map, missing_required_error
from onceonly.ingest.models import Batch
from onceonly.ingest.pool import Checked, Checks, InlineChecks, Job, ProcessChecks, checker_spec, worker_count
from onceonly.ingest.readers import open_source
from onceonly.ingest.schemas import BatchReport, IngestOptions, RejectionOut
from onceonly.ingest.types import IngestInputError, Problem
from onceonly.kit.memory import bulk_allocations, release_free_memory
from onceonly.store import service as store
from onceonly.store.upsert import StageFormat

CHUNK = 10_000
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


def sha256_of(path: Path, stop: threading.Event | None = None) -> str | None:
    """The file's SHA-256, or None once `stop` is set (a refused batch does not wait for the
    rest of a large file to be hashed)."""
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        while block := fh.read(1 << 20):
            if stop is not None and stop.is_set():
                return None
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
                max_delete_share: float = 0.2, workers: int | None = None) -> BatchReport:
    """Load one file. Returns the report; a refused file raises IngestFailed after recording it.
    `workers`: checking processes beside this one (default: from the settings and the file size)."""
    path = Path(path)
    if not path.is_file():
        raise ValidationFailed(f"{path}: no such file", field="file")
    if batch_id is None:
        with db.session(write=True) as session:
            batch_id = start_batch(session, actor, resource_ref, path.name, path.stat().st_size, options)
    started = time.perf_counter()
    _set_progress(batch_id, read=0, bytes=path.stat().st_size, status="running")
    hashing = ThreadPoolExecutor(max_workers=1, thread_name_prefix="sha256")
    stop_hashing = threading.Event()
    try:
        digest = hashing.submit(sha256_of, path, stop_hashing)  # beside the load: hashlib lets go of the GIL
        with db.session(write=True) as session:
            batch = get_batch(session, batch_id)
            res = get_resource(session, batch.resource_id)
            with open_source(path, fmt=options.format, encoding=options.encoding, sheet=options.sheet) as src:
                batch.format, batch.encoding, batch.sheet = src.format, src.encoding, src.sheet
                tell = src.info.get("tell")
                if workers is None:
                    workers = worker_count(db.settings.ingest_workers, path.stat().st_size)
                _load(session, res, batch, src.header, src.rows, options, progress, max_delete_share,
                      tell if callable(tell) else None, workers)
            batch.sha256 = digest.result()
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
        stop_hashing.set()  # done already when the batch committed; else no reason to go on
        hashing.shutdown(wait=True, cancel_futures=True)
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
          max_delete_share: float, tell: Callable[[], int] | None = None, workers: int = 0) -> None:
    """The single path from raw rows to the store (files now, source databases later).

    Chunk by chunk: digests of the raw rows (unchanged rows stop here, see fastpath) → coercion
    and checks of the rest (in `workers` processes beside this one when > 0, a few chunks ahead)
    → key uniqueness in file order → store and quarantine."""
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
    checker = RowChecker(res.fields, res.key_fields, code_sets, local, res.rules, columns=cmap, width=len(header),
                         track_keys=False)
    guard = KeyGuard(res.fields, res.key_fields)
    fmt = StageFormat(res, list(cmap.columns.values()), session.get_bind().dialect.name)
    resubmit_col = header.index(RESUBMIT_COLUMN) if options.resubmit_of is not None and RESUBMIT_COLUMN in header \
        else None
    key_cols = [i for k in res.key_fields for i, name in cmap.columns.items() if name == k]
    replace = options.mode == "replace"
    store.lock_resource(session, res)  # before reading what is stored: see store.lock_resource
    fast = options.resubmit_of is None and bool(res.key_fields) and len(key_cols) == len(res.key_fields)
    digester = RowDigests(fingerprint(res, cmap, len(header), code_sets, local), cmap, len(header)) \
        if fast else None
    known = KnownDigests.load(session, res) if fast else None
    if known is not None and not len(known):
        known = None  # nothing stored with a digest: every row is checked
    writer = _Writer(session, res, batch, header, fmt, known, resubmit_col)
    if replace:
        writer.replace = True
        writer.live_before = store.row_count(session, res)  # the share is of these, not diluted by new rows
        writer.rejected_key = _rejected_key_of(res, checker, key_cols)
        store.begin_stage(session, res)
    writer.empty = store.is_empty(session, res)
    pending: deque[_Chunk] = deque()
    # Without stored digests to compare with, only accepted rows need theirs: the checks compute them.
    job = Job(checker, fmt, guard.fields, digester if known is None else None)
    checks: Checks = ProcessChecks(checker_spec(res.fields, res.key_fields, code_sets, local, res.rules,
                                                cmap.columns, len(header)), job, workers) \
        if workers > 0 else InlineChecks(job)
    read = 0
    with bulk_allocations():
        try:
            while chunk := list(islice(rows, CHUNK)):
                read += len(chunk)
                digests = digester.of(chunk) if digester is not None and known is not None else None
                todo: list[int] = list(range(len(chunk)))
                if known is not None and digests is not None:
                    numbers = np.fromiter(map(itemgetter(0), chunk), dtype=np.int64, count=len(chunk))
                    unchanged = known.claim_unchanged(digests, numbers)
                    batch.unchanged += int(unchanged.sum())
                    todo = np.flatnonzero(~unchanged).tolist()
                pending.append(_Chunk(chunk, todo, digests, checks.submit([chunk[i][1] for i in todo])))
                if len(pending) > workers:
                    done = pending.popleft()
                    writer.write(done, guard, pending)
                    release_free_memory()  # between chunks: keeps the resident set near what is live
                batch.read = read
                if len(chunk) == CHUNK:  # a short chunk is the last one; its reader may be closed already
                    position = tell() if tell else 0
                    _set_progress(batch.id, read=read, position=position)
                    if progress:
                        progress(read, position)
            while pending:
                done = pending.popleft()
                writer.write(done, guard, pending)
        finally:
            checks.close()
    batch.read = read
    batch.rejected = writer.rejected_rows
    batch.rule_counts = dict(writer.rule_counts.most_common())
    batch.unmapped = list(cmap.unmapped)
    if progress:
        progress(read, batch.file_size)
    if replace:
        if known is not None:
            store.stage_unclaimed_digests(session, res, known.unclaimed())
        _, gone = store.count_missing(session, res, spare_claimed=known is not None)
        total = writer.live_before
        if total and gone / total > max_delete_share and not options.force:
            raise Conflict(
                f"replace would delete {gone} of {total} rows ({gone / total:.0%}), more than the "
                f"{max_delete_share:.0%} allowed; check the file, or pass --force", field="mode")
        batch.deleted = store.delete_missing(session, res, batch.id, spare_claimed=known is not None)
    if options.resubmit_of is not None and writer.resolved:
        repo.resolve(session, options.resubmit_of, writer.resolved, batch.id)


@dataclass
class _Chunk:
    """Raw rows read, which of them need checking, their digests, and the checks' outcome."""

    rows: list[tuple[int, list[Any]]]
    todo: list[int]
    digests: Any
    checked: Future[Checked]


def _rejected_key_of(res: Resource, checker: RowChecker, key_cols: list[int]
                     ) -> Callable[[list[Any]], tuple[Any, ...] | None] | None:
    if not key_cols or len(key_cols) != len(res.key_fields):
        return None
    key_fns = [checker.plans[k].closure() for k in res.key_fields]
    string_keys = all(f.type == "string" for f in res.fields if f.name in res.key_fields)
    lengths = [next((f.length for f in res.fields if f.name == k), None) for k in res.key_fields]
    return lambda values: _rejected_key(values, key_cols, key_fns, lengths if string_keys else None)


class _Writer:
    """A checked chunk's accepted rows to the store, its rejected rows to quarantine, in file
    order; keeps a key's first row of the file when unchanged rows were skipped (fastpath)."""

    def __init__(self, session: Session, res: Resource, batch: Batch, header: list[str], fmt: StageFormat,
                 known: KnownDigests | None, resubmit_col: int | None) -> None:
        self.session, self.res, self.batch, self.header, self.fmt = session, res, batch, header, fmt
        self.known, self.resubmit_col = known, resubmit_col
        self.rejected: list[dict[str, Any]] = []
        self.rejected_rows = 0
        self.rule_counts: Counter[str] = Counter()
        self.resolved: list[int] = []
        self.empty = False  # the table held no row when the batch began (an initial load)
        self.replace = False  # replace mode: stage the keys of the file (see store.count_missing)
        self.live_before = 0
        self.rejected_key: Callable[[list[Any]], tuple[Any, ...] | None] | None = None
        self.seen_keys: list[tuple[Any, ...]] = []

    def _number(self, number: int, values: list[Any]) -> int:
        """The row number quarantine records: a resubmitted row keeps its original one."""
        col = self.resubmit_col
        original = _source_row(values[col]) if col is not None and col < len(values) else None
        return original if original is not None else number

    def reject(self, number: int, values: list[Any], problems: list[Problem]) -> None:
        self.rule_counts.update(p.rule for p in problems)
        self.rejected_rows += 1
        self.rejected.append({"batch_id": self.batch.id, "row_number": self._number(number, values),
                              "raw": _raw(self.header, values), "problems": [p.as_dict() for p in problems]})

    def write(self, done: _Chunk, guard: KeyGuard, pending: deque[_Chunk]) -> None:
        checked = done.checked.result()
        for pos, problems in checked.rejected:
            number, values = done.rows[done.todo[pos]]
            self.reject(number, values, problems)
            if self.rejected_key is not None:
                key = self.rejected_key(values)
                if key is not None:  # a row to fix is not a row to delete
                    self.seen_keys.append(key)
        rows = [done.todo[pos] for pos in checked.ok]  # chunk indexes of the accepted rows
        columns, guarded = checked.columns, checked.guarded
        digests: list[int | None] = [d or None for d in done.digests[rows].tolist()] \
            if done.digests is not None else [d or None for d in checked.digests or [0] * len(rows)]
        duplicates = guard.check(guarded, len(rows))
        if duplicates:
            for p, problems in duplicates.items():
                self.reject(*done.rows[rows[p]], problems)
            keep = [p for p in range(len(rows)) if p not in duplicates]
            rows = [rows[p] for p in keep]
            columns = [[col[p] for p in keep] for col in columns]
            guarded = {f: [col[p] for p in keep] for f, col in guarded.items()}
            digests = [digests[p] for p in keep]
        if self.resubmit_col is not None:
            for i in rows:
                original = _source_row(done.rows[i][1][self.resubmit_col]) \
                    if self.resubmit_col < len(done.rows[i][1]) else None
                if original is not None:
                    self.resolved.append(original)
        keys = [guarded[k] for k in self.res.key_fields]
        if rows and self.empty:  # nothing was stored: every key is new (and unique, see keyguard)
            result = store.insert_new(self.session, self.res, self.fmt, columns, keys, digests, self.batch.id)
        elif rows:
            veto = self._veto(done, rows, keys, pending) if self.known is not None else None
            result = store.upsert_columns(self.session, self.res, self.fmt, columns, keys, digests, self.batch.id,
                                          veto)
        if rows:
            self.batch.inserted += result.inserted
            self.batch.updated += result.updated
            self.batch.unchanged += result.unchanged
            if self.replace:
                self.seen_keys.extend(zip(*keys, strict=True))
        if self.rejected:
            repo.add_rejections(self.session, self.rejected)
            self.rejected = []
        if self.replace:
            store.stage_keys(self.session, self.res, self.seen_keys)
            self.seen_keys.clear()

    def _veto(self, done: _Chunk, rows: list[int], keys: list[list[Any]], pending: deque[_Chunk]
              ) -> Callable[[list[tuple[int, int]]], list[int]]:
        known = self.known
        assert known is not None

        def veto(pairs: list[tuple[int, int]]) -> list[int]:
            out: list[int] = []
            for idx, stored in pairs:
                number, values = done.rows[rows[idx]]
                holder = known.claim_stored(number, stored)
                if not holder:
                    continue
                problem = duplicate_key(self.res.key_fields, tuple(col[idx] for col in keys))
                if holder < number:
                    out.append(idx)
                    self.reject(number, values, [problem])
                else:  # a later row, read ahead, was counted unchanged: it is the duplicate
                    self.batch.unchanged -= 1
                    self.reject(holder, _values_of(holder, done, pending), [problem])
            return out

        return veto


def _values_of(number: int, done: _Chunk, pending: deque[_Chunk]) -> list[Any]:
    """The raw cells of source row `number`, from the chunk being written or one read ahead."""
    for c in (done, *pending):
        for n, values in c.rows:
            if n == number:
                return values
    raise LookupError(number)


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
