"""Builders for the ingest pipeline tests: resources, files in every format, store snapshots.

The `db` fixture is module-scoped and shared by the tests of a module (once per backend), so
every builder makes fresh names; nothing here assumes an empty database.
"""

from __future__ import annotations

import csv
import io
import json
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date, timedelta
from pathlib import Path
from typing import Any

from sqlalchemy import func, select

from core_factories import CLI, add_org, published, unique
from onceonly.catalog.models import Organization, Resource
from onceonly.catalog.service import get_resource
from onceonly.db import Database
from onceonly.ingest import service
from onceonly.ingest.models import Batch, Rejection
from onceonly.ingest.schemas import BatchReport, IngestOptions
from onceonly.kit.identifiers import make_citizen_id, make_uscc
from onceonly.ops.setup import initialize
from onceonly.store import service as store

# The API client of the core tests lives in tests/api, which is on sys.path only when pytest
# collected a module there; the ingest API tests reuse it.
_API_DIR = str(Path(__file__).resolve().parents[1] / "api")
if _API_DIR not in sys.path:
    sys.path.append(_API_DIR)

SEX = "GB/T 2261.1"
CROSS_RULE = {"rule": "citizen_id_agrees", "citizen_id": "citizen_id", "sex": "sex", "birth_date": "birth_date"}
PERSON_HEADER = ["公民身份号码", "姓名", "性别", "出生日期", "手机号码", "单位统一社会信用代码", "子女数", "是否在职"]


def person_fields() -> list[dict[str, Any]]:
    """A person file: checked identifiers, a code list, a date, an integer and a boolean."""
    return [
        {"name": "citizen_id", "title": "公民身份号码", "type": "string", "length": 18, "check": "citizen_id"},
        {"name": "name", "title": "姓名", "type": "string", "length": 10, "required": True},
        {"name": "sex", "title": "性别", "type": "string", "length": 1, "code_list": SEX},
        {"name": "birth_date", "title": "出生日期", "type": "date"},
        {"name": "mobile", "title": "手机号码", "type": "string", "length": 11, "check": "mobile"},
        {"name": "employer", "title": "单位统一社会信用代码", "type": "string", "length": 18, "check": "uscc"},
        {"name": "children", "title": "子女数", "type": "integer"},
        {"name": "employed", "title": "是否在职", "type": "boolean"},
    ]


@dataclass
class World:
    """A provider department with a published person resource (key: citizen_id)."""

    db: Database
    org: Organization
    res: Resource

    @property
    def ref(self) -> str:
        return self.res.code


def setup_db(db: Database) -> None:
    initialize(db)  # idempotent: catalogs and the shipped code lists (GB/T 2261.1 …)


def new_org(db: Database) -> Organization:
    with db.session(write=True) as s:
        return add_org(s)


def person_resource(db: Database, org: Organization, *, rules: bool = True, **overrides: Any) -> Resource:
    with db.session(write=True) as s:
        return published(s, org, name=unique("person"), title="人口基本信息", key_fields=["citizen_id"],
                         query_fields=["name"], fields=person_fields(), rules=[CROSS_RULE] if rules else [],
                         **overrides)


def simple_resource(db: Database, org: Organization, **overrides: Any) -> Resource:
    """core_factories' resource: id (key), name, n, score, born, flag, ts — one field per type."""
    with db.session(write=True) as s:
        return published(s, org, **overrides)


def world(db: Database, *, rules: bool = True) -> World:
    setup_db(db)
    org = new_org(db)
    return World(db, org, person_resource(db, org, rules=rules))


# -- people ----------------------------------------------------------------------------------

BASE_BIRTH = date(1960, 1, 1)


def cid(i: int, male: bool | None = None) -> str:
    """A valid citizen ID, distinct for every i < 500 * 20000."""
    male = i % 2 == 0 if male is None else male
    return make_citizen_id("110105", BASE_BIRTH + timedelta(days=i // 500), i % 500, male)


def birth_of(i: int) -> date:
    return BASE_BIRTH + timedelta(days=i // 500)


def sex_of(i: int) -> str:
    return "1" if i % 2 == 0 else "2"


def bad_check_digit(citizen_id: str) -> str:
    """The same ID with a check character that cannot be right."""
    for ch in "0123456789X":
        if ch != citizen_id[17]:
            candidate = citizen_id[:17] + ch
            from onceonly.kit.identifiers import IdentifierError, normalize_citizen_id

            try:
                normalize_citizen_id(candidate)
            except IdentifierError as exc:
                if exc.rule == "citizen_id.check_digit":
                    return candidate
    raise AssertionError("no bad check digit found")


EMPLOYER = make_uscc("9", "1", "110105", "MA01ABCD")


def person_row(i: int, **changes: Any) -> list[Any]:
    """A valid row of PERSON_HEADER for person i (text cells as a person would type them)."""
    row = {"公民身份号码": cid(i), "姓名": f"人{i}", "性别": sex_of(i), "出生日期": birth_of(i).isoformat(),
           "手机号码": f"139{i:08d}", "单位统一社会信用代码": EMPLOYER, "子女数": str(i % 3), "是否在职": "是"}
    row.update(changes)
    return [row[h] for h in PERSON_HEADER]


def person_rows(n: int, start: int = 0) -> list[list[Any]]:
    return [person_row(i) for i in range(start, start + n)]


# -- files -----------------------------------------------------------------------------------


def csv_text(header: Sequence[str], rows: Sequence[Sequence[Any]], delimiter: str = ",") -> str:
    buf = io.StringIO()
    writer = csv.writer(buf, delimiter=delimiter, lineterminator="\n")
    writer.writerow(header)
    writer.writerows(rows)
    return buf.getvalue()


def write_csv(path: Path, header: Sequence[str], rows: Sequence[Sequence[Any]], *, encoding: str = "utf-8",
              delimiter: str = ",") -> Path:
    path.write_bytes(csv_text(header, rows, delimiter).encode(encoding))
    return path


def write_xlsx(path: Path, header: Sequence[Any], rows: Sequence[Sequence[Any]], *, title: str = "人员",
               extra_sheets: Sequence[str] = (), setup: Any = None) -> Path:
    import openpyxl

    wb = openpyxl.Workbook()
    ws = wb.active
    assert ws is not None
    ws.title = title
    ws.append(list(header))
    for row in rows:
        ws.append(list(row))
    for name in extra_sheets:
        wb.create_sheet(name)
    if setup is not None:
        setup(ws)
    wb.save(path)
    return path


def write_xls(path: Path, header: Sequence[Any], rows: Sequence[Sequence[Any]], *, title: str = "人员") -> Path:
    import xlwt

    wb = xlwt.Workbook(encoding="utf-8")
    ws = wb.add_sheet(title)
    date_style = xlwt.easyxf(num_format_str="YYYY-MM-DD")
    for c, value in enumerate(header):
        ws.write(0, c, value)
    for r, row in enumerate(rows, start=1):
        for c, value in enumerate(row):
            if isinstance(value, date):
                ws.write(r, c, value, date_style)
            else:
                ws.write(r, c, value)
    wb.save(str(path))
    return path


def write_jsonl(path: Path, objects: Sequence[dict[str, Any]]) -> Path:
    path.write_text("".join(json.dumps(o, ensure_ascii=False) + "\n" for o in objects), "utf-8")
    return path


def write_json(path: Path, objects: Sequence[dict[str, Any]]) -> Path:
    path.write_text(json.dumps(list(objects), ensure_ascii=False, indent=1), "utf-8")
    return path


def as_objects(header: Sequence[str], rows: Sequence[Sequence[Any]]) -> list[dict[str, Any]]:
    return [dict(zip(header, row, strict=True)) for row in rows]


# -- running and looking ---------------------------------------------------------------------


def ingest(db: Database, ref: str | int, path: Path, **options: Any) -> BatchReport:
    actor = options.pop("actor", CLI)
    share = options.pop("max_delete_share", 0.2)
    return service.ingest_file(db, actor, ref, path, IngestOptions(**options), max_delete_share=share)


@dataclass(frozen=True)
class Snapshot:
    """Everything a batch may change, to compare before and after a refused or killed batch."""

    rows: int
    data: tuple[tuple[Any, ...], ...]
    changes: tuple[tuple[int, str, str], ...]
    rejections: int
    last_seq: int


def snapshot(db: Database, res_id: int) -> Snapshot:
    with db.session() as s:
        res = get_resource(s, res_id)
        data = tuple(tuple(r.values()) for r in store.fetch_rows(s, res, limit=10**7))
        changes = tuple((c.seq, c.op, c.key) for c in store.changes_since(s, res, 0, limit=10**7))
        rejections = s.scalar(select(func.count()).select_from(Rejection).join(Batch, Batch.id == Rejection.batch_id)
                              .where(Batch.resource_id == res_id)) or 0
        return Snapshot(store.row_count(s, res), data, changes, int(rejections), int(res.last_seq or 0))


def stored(db: Database, res_id: int, key: str) -> dict[str, Any] | None:
    with db.session() as s:
        return store.get_row(s, get_resource(s, res_id), (key,))


def rows_by_key(db: Database, res_id: int) -> dict[str, dict[str, Any]]:
    with db.session() as s:
        res = get_resource(s, res_id)
        return {r[res.key_fields[0]]: r for r in store.fetch_rows(s, res, limit=10**7)}


def changes(db: Database, res_id: int, since: int = 0) -> list[store.Change]:
    with db.session() as s:
        return store.changes_since(s, get_resource(s, res_id), since, limit=10**7)


def batch_row(db: Database, batch_id: int) -> Batch:
    with db.session() as s:
        batch = s.get(Batch, batch_id)
        assert batch is not None
        s.expunge(batch)
        return batch


def latest_batch(db: Database, res_id: int) -> Batch:
    with db.session() as s:
        batch = s.scalars(select(Batch).where(Batch.resource_id == res_id).order_by(Batch.id.desc())).first()
        assert batch is not None
        s.expunge(batch)
        return batch


def rejections_of(db: Database, batch_id: int) -> list[Rejection]:
    with db.session() as s:
        rows = list(s.scalars(select(Rejection).where(Rejection.batch_id == batch_id).order_by(Rejection.row_number)))
        s.expunge_all()
        return rows


def rules_of(rejection: Rejection) -> set[str]:
    return {p["rule"] for p in rejection.problems}
