"""`onceonly ingest`, `onceonly batches`, `onceonly rejections`: static ingest from the console."""

from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import Annotated

import typer
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn
from rich.table import Table

from onceonly.accounts.actor import Actor
from onceonly.cli import console, err, one_line_errors, open_db, settings, unit_of_work
from onceonly.ingest import service
from onceonly.ingest.mapping import load_mapping_file
from onceonly.ingest.quarantine import rejections_csv
from onceonly.ingest.schemas import IngestOptions, Mode
from onceonly.ingest.types import IngestInputError


def register(app: typer.Typer) -> None:
    app.command("ingest")(ingest)
    app.command("batches")(batches)
    app.command("rejections")(rejections)


@one_line_errors
def ingest(
    file: Annotated[Path, typer.Argument(help="CSV/TSV, XLSX/XLS, JSON Lines or JSON array file")],
    resource: Annotated[str, typer.Option(help="Resource name, code or id")],
    sheet: Annotated[str | None, typer.Option(help="Worksheet (default: the first)")] = None,
    encoding: Annotated[str | None, typer.Option(help="Text encoding, e.g. gb18030 (default: detected)")] = None,
    fmt: Annotated[str | None, typer.Option("--format", help="csv, tsv, xlsx, xls, jsonl or json (default: from "
                                            "the file's suffix)")] = None,
    mapping: Annotated[Path | None, typer.Option(help='JSON file {"source column": "field", ...}')] = None,
    mode: Annotated[str, typer.Option(help="upsert (default) or replace (keys missing from the file are deleted)")]
    = "upsert",
    force: Annotated[bool, typer.Option(help="Allow replace to delete more than the configured share")] = False,
    resubmit: Annotated[int | None, typer.Option(help="Batch whose rejected rows this corrected file resends")]
    = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the batch report as one JSON object")] = False,
) -> None:
    """Load a file into a published resource: every row checked, rejected rows quarantined,
    the store changed atomically."""
    if mode not in ("upsert", "replace"):
        raise typer.BadParameter("--mode must be upsert or replace")
    explicit = None
    if mapping is not None:
        try:
            explicit = load_mapping_file(mapping)
        except IngestInputError as exc:
            raise service.IngestFailed(exc) from None
    mode_value: Mode = "replace" if mode == "replace" else "upsert"
    options = IngestOptions(mode=mode_value, sheet=sheet, encoding=encoding, format=fmt, mapping=explicit,
                            force=force, resubmit_of=resubmit)
    db = open_db()
    try:
        service.mark_interrupted(db)
        size = file.stat().st_size if file.is_file() else 0
        with Progress(TextColumn("[bold]{task.description}"), BarColumn(), TextColumn("{task.fields[rows]:,} rows"),
                      TextColumn("{task.fields[rate]:,.0f} rows/s"), TimeElapsedColumn(), TimeRemainingColumn(),
                      console=err, disable=as_json or not sys.stderr.isatty(), transient=True) as bar:
            task = bar.add_task(f"ingest {file.name}", total=max(size, 1), rows=0, rate=0.0)
            t0 = time.perf_counter()

            def progress(rows: int, done_bytes: int) -> None:
                elapsed = max(time.perf_counter() - t0, 1e-6)
                bar.update(task, rows=rows, rate=rows / elapsed, completed=min(done_bytes, size))

            report = service.ingest_file(db, Actor.cli(), resource, file, options, progress,
                                         max_delete_share=settings().ingest_replace_max_delete_share)
    finally:
        db.dispose()
    if as_json:
        print(report.model_dump_json())
        return
    console.print(f"batch {report.id} committed: read {report.read:,}, inserted {report.inserted:,}, "
                  f"updated {report.updated:,}, unchanged {report.unchanged:,}, deleted {report.deleted:,}, "
                  f"rejected {report.rejected:,} ({report.rows_per_sec or 0:,.0f} rows/s)", highlight=False)
    if report.unmapped:
        console.print(f"unmapped columns: {', '.join(report.unmapped)}", highlight=False)
    for rule, n in report.rule_counts.items():
        console.print(f"  {rule}: {n}", highlight=False)
    if report.rejected:
        console.print(f"rejected rows: onceonly rejections {report.id} --out rejected.csv", highlight=False)


@one_line_errors
def batches(resource: Annotated[str, typer.Option(help="Resource name, code or id")],
            as_json: Annotated[bool, typer.Option("--json", help="One JSON object per line")] = False) -> None:
    """The batch history of a resource."""
    with unit_of_work() as session:
        reports = service.history(session, resource)
    if as_json:
        for r in reports:
            print(r.model_dump_json())
        return
    table = Table("batch", "status", "mode", "file", "read", "ins", "upd", "same", "del", "rej", "by", "started")
    for r in reports:
        table.add_row(str(r.id), r.status, r.mode, r.file_name, f"{r.read:,}", f"{r.inserted:,}", f"{r.updated:,}",
                      f"{r.unchanged:,}", f"{r.deleted:,}", f"{r.rejected:,}", r.username,
                      f"{r.started_at:%Y-%m-%d %H:%M}")
    console.print(table)


@one_line_errors
def rejections(batch: Annotated[int, typer.Argument(help="Batch id")],
               out: Annotated[Path | None, typer.Option(help="Write the CSV here (default: stdout)")] = None) -> None:
    """The quarantined rows of a batch as CSV (correct them, then `ingest --resubmit BATCH`)."""
    with unit_of_work() as session:
        service.batch_report(session, service.get_batch(session, batch))  # 404 early, and checks the resource
        if out is None:
            for chunk in rejections_csv(session, batch):
                sys.stdout.write(chunk)
            return
        with out.open("w", encoding="utf-8", newline="") as fh:
            for chunk in rejections_csv(session, batch):
                fh.write(chunk)
    console.print(f"wrote {out}")

