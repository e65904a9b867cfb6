"""The static ingest pipeline end to end (ingest_file): formats, mapping, coercion, validation,
quarantine and resubmission, upsert/replace counts and atomicity — on SQLite and PostgreSQL."""

from __future__ import annotations

import csv
import io
from datetime import date, datetime
from pathlib import Path
from typing import Any

import pytest
from ingest_factories import (
    EMPLOYER,
    PERSON_HEADER,
    SEX,
    World,
    as_objects,
    bad_check_digit,
    batch_row,
    birth_of,
    changes,
    cid,
    ingest,
    latest_batch,
    new_org,
    person_resource,
    person_row,
    person_rows,
    rejections_of,
    rows_by_key,
    rules_of,
    setup_db,
    simple_resource,
    snapshot,
    stored,
    write_csv,
    write_json,
    write_jsonl,
    write_xls,
    write_xlsx,
)

from core_factories import CLI, add_user, unique
from onceonly.catalog import codelists
from onceonly.catalog.models import Organization
from onceonly.catalog.schemas import MappingEntry, MappingIn
from onceonly.catalog.service import create_resource
from onceonly.db import Database
from onceonly.errors import Conflict, NotFound, PermissionDenied
from onceonly.ingest import service
from onceonly.ingest.quarantine import rejections_csv
from onceonly.ingest.schemas import IngestOptions
from onceonly.ingest.service import IngestFailed


@pytest.fixture
def plain(db: Database, org: Organization) -> World:
    """A fresh person resource without cross-field rules (free birth dates and sexes)."""
    return World(db, org, person_resource(db, org, rules=False))


def assert_person(db: Database, res_id: int, i: int) -> None:
    row = stored(db, res_id, cid(i))
    assert row is not None, f"person {i} missing"
    assert row["name"] == f"人{i}" and row["sex"] == ("1" if i % 2 == 0 else "2")
    assert row["birth_date"] == birth_of(i) and row["mobile"] == f"139{i:08d}"
    assert row["employer"] == EMPLOYER and row["children"] == i % 3 and row["employed"] is True


# -- formats ---------------------------------------------------------------------------------


def _typed_rows(n: int) -> list[list[Any]]:
    """Rows as a workbook or JSON holds them: real dates, numbers and booleans."""
    out = []
    for i in range(n):
        row = person_row(i)
        row[3], row[6], row[7] = birth_of(i), i % 3, True
        out.append(row)
    return out


def _json_rows(n: int) -> list[list[Any]]:
    out = []
    for i in range(n):
        row = person_row(i)
        row[6], row[7] = i % 3, True
        out.append(row)
    return out


FORMATS: dict[str, Any] = {
    "csv-utf8": lambda p: (write_csv(p / "p.csv", PERSON_HEADER, person_rows(5)), "csv", "utf-8"),
    "csv-bom": lambda p: (write_csv(p / "p.csv", PERSON_HEADER, person_rows(5), encoding="utf-8-sig"), "csv",
                          "utf-8-sig"),
    "csv-gb18030": lambda p: (write_csv(p / "p.csv", PERSON_HEADER, person_rows(5), encoding="gb18030"), "csv",
                              "gb18030"),
    "tsv": lambda p: (write_csv(p / "p.tsv", PERSON_HEADER, person_rows(5), delimiter="\t"), "tsv", "utf-8"),
    "xlsx": lambda p: (write_xlsx(p / "p.xlsx", PERSON_HEADER, _typed_rows(5)), "xlsx", None),
    "xls": lambda p: (write_xls(p / "p.xls", PERSON_HEADER, _typed_rows(5)), "xls", None),
    "jsonl": lambda p: (write_jsonl(p / "p.jsonl", as_objects(PERSON_HEADER, _json_rows(5))), "jsonl", "utf-8"),
    "json": lambda p: (write_json(p / "p.json", as_objects(PERSON_HEADER, _json_rows(5))), "json", "utf-8"),
}


@pytest.mark.parametrize("kind", list(FORMATS))
def test_every_format_reaches_the_store(w: World, tmp_path: Path, kind: str) -> None:
    path, fmt, encoding = FORMATS[kind](tmp_path)
    report = ingest(w.db, w.ref, path)
    assert report.status == "committed", report.error
    assert (report.read, report.inserted, report.rejected) == (5, 5, 0), report.rejections
    assert report.format == fmt and report.encoding == encoding
    if fmt in ("xlsx", "xls"):
        assert report.sheet == "人员"
    for i in range(5):
        assert_person(w.db, w.res.id, i)
    assert [c.op for c in changes(w.db, w.res.id)] == ["I"] * 5


def test_initial_load_logs_every_row_once_in_file_order(w: World, tmp_path: Path,
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    """An initial load writes its change log in bulk (on SQLite straight from the rows just
    appended): one `I` per row, consecutive sequence numbers in file order across chunks, the
    batch named — and a later upsert continues the sequence."""
    monkeypatch.setattr(service, "CHUNK", 3)
    rows = person_rows(8)[::-1]  # file order is not key order
    report = ingest(w.db, w.ref, write_csv(tmp_path / "first.csv", PERSON_HEADER, rows))
    assert (report.inserted, report.rejected) == (8, 0)
    log = changes(w.db, w.res.id)
    assert [c.key for c in log] == [r[0] for r in rows]
    assert [c.seq for c in log] == list(range(log[0].seq, log[0].seq + 8))
    assert {(c.op, c.batch_id) for c in log} == {("I", report.id)}
    assert all(isinstance(c.at, datetime) for c in log)
    rows[2] = person_row(5, 子女数="7")
    again = ingest(w.db, w.ref, write_csv(tmp_path / "second.csv", PERSON_HEADER, [*rows, person_row(20)]))
    assert (again.inserted, again.updated, again.unchanged) == (1, 1, 7)
    more = changes(w.db, w.res.id, log[-1].seq)
    assert [(c.seq, c.op, c.key) for c in more] == [(log[-1].seq + 1, "U", cid(5)), (log[-1].seq + 2, "I", cid(20))]


def test_gb18030_with_a_rare_character_and_named_encoding(plain: World, tmp_path: Path) -> None:
    rows = [person_row(0, 姓名="𠀀明"), person_row(1, 姓名="王䶮")]  # outside GBK, inside GB18030
    path = write_csv(tmp_path / "gb.csv", PERSON_HEADER, rows, encoding="gb18030")
    report = ingest(plain.db, plain.ref, path, encoding="gbk")
    assert report.inserted == 2, report.rejections
    assert stored(plain.db, plain.res.id, cid(0))["name"] == "𠀀明"  # type: ignore[index]
    assert stored(plain.db, plain.res.id, cid(1))["name"] == "王䶮"  # type: ignore[index]


# -- mapping ---------------------------------------------------------------------------------


def test_chinese_titles_map_and_unmapped_columns_are_reported(w: World, tmp_path: Path) -> None:
    header = ["*姓名", "公民身份号码", "备注", "性别", "出生日期", "数据来源"]
    rows = [[f"人{i}", cid(i), "无", "1" if i % 2 == 0 else "2", birth_of(i).isoformat(), "公安"] for i in range(3)]
    report = ingest(w.db, w.ref, write_csv(tmp_path / "t.csv", header, rows))
    assert report.inserted == 3 and report.unmapped == ["备注", "数据来源"]
    row = stored(w.db, w.res.id, cid(1))
    assert row is not None and row["name"] == "人1" and row["mobile"] is None


def test_missing_required_column_refuses_the_batch_before_any_row(w: World, tmp_path: Path) -> None:
    ingest(w.db, w.ref, write_csv(tmp_path / "seed.csv", PERSON_HEADER, person_rows(3)))
    before = snapshot(w.db, w.res.id)
    header = [h for h in PERSON_HEADER if h != "姓名"]
    rows = [[c for h, c in zip(PERSON_HEADER, person_row(i), strict=True) if h != "姓名"] for i in range(3, 8)]
    with pytest.raises(IngestFailed) as info:
        ingest(w.db, w.ref, write_csv(tmp_path / "t.csv", header, rows))
    assert info.value.rule == "mapping.missing_required" and "姓名" in info.value.message
    batch = latest_batch(w.db, w.res.id)
    assert batch.status == "failed" and "name" in (batch.error or "")
    assert snapshot(w.db, w.res.id) == before


def test_explicit_mapping(w: World, tmp_path: Path) -> None:
    header = ["SFZH", "XM", "XB", "CSRQ", "BZ"]
    rows = [[cid(i), f"人{i}", "1" if i % 2 == 0 else "2", birth_of(i).isoformat(), "x"] for i in range(4)]
    mapping: dict[str, str | None] = {"SFZH": "citizen_id", "XM": "name", "XB": "sex", "CSRQ": "birth_date",
                                      "BZ": None}
    report = ingest(w.db, w.ref, write_csv(tmp_path / "m.csv", header, rows), mapping=mapping)
    assert (report.inserted, report.rejected, report.unmapped) == (4, 0, [])
    assert stored(w.db, w.res.id, cid(3))["name"] == "人3"  # type: ignore[index]
    with pytest.raises(IngestFailed) as info:
        ingest(w.db, w.ref, write_csv(tmp_path / "m.csv", header, rows), mapping={**mapping, "XM": "nickname"})
    assert info.value.rule == "mapping.unknown_field"


def test_department_local_codes_are_translated(db: Database, tmp_path: Path) -> None:
    setup_db(db)
    org = new_org(db)  # its own org: the mapping is per department
    res = person_resource(db, org)
    with db.session(write=True) as s:
        codelists.set_mappings(s, CLI, MappingIn(org=org.code, code_list=SEX, entries=[
            MappingEntry(local_code="男", standard_code="1"), MappingEntry(local_code="女", standard_code="2"),
            MappingEntry(local_code="M", standard_code="1")]))
    rows = [person_row(0, 性别="男"), person_row(1, 性别="女"), person_row(2, 性别="M"), person_row(3, 性别="2"),
            person_row(5, 性别="未知")]
    report = ingest(db, res.code, write_csv(tmp_path / "sex.csv", PERSON_HEADER, rows))
    assert (report.inserted, report.rejected) == (4, 1)
    assert [stored(db, res.id, cid(i))["sex"] for i in (0, 1, 2, 3)] == ["1", "2", "1", "2"]  # type: ignore[index]
    [rej] = rejections_of(db, report.id)
    assert rej.row_number == 6 and rules_of(rej) == {"code_list.unknown"}
    # Another department's resource does not see this department's mapping.
    other = person_resource(db, new_org(db))
    report = ingest(db, other.code, write_csv(tmp_path / "sex2.csv", PERSON_HEADER, [person_row(0, 性别="男")]))
    assert report.rejected == 1 and report.rejections[0].rule == "code_list.unknown"


# -- coercion --------------------------------------------------------------------------------


def test_coercions_reach_the_store(plain: World, tmp_path: Path) -> None:
    x_id = next(cid(i) for i in range(100) if cid(i).endswith("X"))
    legacy = "110105600101011"  # 15 digits, 1960-01-01
    rows = [
        person_row(0, 出生日期="2018年8月20日", 子女数="1,234", 是否在职="否", 姓名="\u3000张三\u3000"),
        person_row(1, 公民身份号码=x_id.lower(), 出生日期="2018/8/1", 子女数="１２", 是否在职="Y"),
        person_row(2, 公民身份号码=legacy, 出生日期="20180820", 手机号码="139 0000 0002", 是否在职="FALSE"),
    ]
    report = ingest(plain.db, plain.ref, write_csv(tmp_path / "c.csv", PERSON_HEADER, rows))
    assert (report.inserted, report.rejected) == (3, 0), report.rejections
    a = stored(plain.db, plain.res.id, cid(0))
    assert a is not None
    assert (a["birth_date"], a["children"], a["employed"], a["name"]) == (date(2018, 8, 20), 1234, False, "张三")
    b = stored(plain.db, plain.res.id, x_id)
    assert b is not None and b["citizen_id"].endswith("X") and b["children"] == 12 and b["employed"] is True
    from onceonly.kit.identifiers import normalize_citizen_id

    upgraded = normalize_citizen_id(legacy)
    assert len(upgraded) == 18 and upgraded.startswith("11010519600101011")
    c = stored(plain.db, plain.res.id, upgraded)
    assert c is not None and c["mobile"] == "13900000002" and c["employed"] is False
    assert stored(plain.db, plain.res.id, legacy) is None


def test_excel_serial_date_in_xlsx(plain: World, tmp_path: Path) -> None:
    rows = [person_row(0, 出生日期=43332), person_row(1, 出生日期=datetime(2018, 8, 21, 0, 0)),
            person_row(2, 出生日期="43334")]
    rows[0][6] = 1234
    report = ingest(plain.db, plain.ref, write_xlsx(tmp_path / "serial.xlsx", PERSON_HEADER, rows))
    assert report.inserted == 3, report.rejections
    got = rows_by_key(plain.db, plain.res.id)
    assert [got[cid(i)]["birth_date"] for i in range(3)] == [date(2018, 8, 20), date(2018, 8, 21), date(2018, 8, 22)]
    assert got[cid(0)]["children"] == 1234


# -- validation and quarantine ---------------------------------------------------------------


def test_every_rule_rejects_the_row_into_quarantine(w: World, tmp_path: Path) -> None:
    male_id = cid(10)  # even i: male, 17th digit odd
    cases: list[tuple[list[Any], set[tuple[str, str]]]] = [
        (person_row(0), set()),  # row 2: good, claims its key
        (person_row(1, 公民身份号码=bad_check_digit(cid(1))), {("citizen_id", "citizen_id.check_digit")}),
        (person_row(2, 单位统一社会信用代码=EMPLOYER[:-1] + ("0" if EMPLOYER[-1] != "0" else "1")),
         {("employer", "uscc.check_digit")}),
        (person_row(3, 手机号码="12345"), {("mobile", "mobile.format")}),
        (person_row(4, 性别="5"), {("sex", "code_list.unknown")}),
        (person_row(5, 姓名="张" * 11), {("name", "length.max")}),
        (person_row(6, 姓名=""), {("name", "required")}),
        (person_row(0, 姓名="重复"), {("citizen_id", "key.duplicate")}),  # row 9: same key as row 2
        (person_row(10, 公民身份号码=male_id, 性别="2"), {("sex", "cross.citizen_id_sex")}),
        (person_row(12, 出生日期="1999-01-01"), {("birth_date", "cross.citizen_id_birth_date")}),
        (person_row(14, 手机号码="12345", 单位统一社会信用代码="123"),
         {("mobile", "mobile.format"), ("employer", "uscc.format")}),
        (person_row(16, 出生日期="2018-02-30", 子女数="1.5"),
         {("birth_date", "date.invalid"), ("children", "integer.fraction")}),
        (person_row(18), set()),
    ]
    rows = [r for r, _ in cases]
    report = ingest(w.db, w.ref, write_csv(tmp_path / "v.csv", PERSON_HEADER, rows))
    assert (report.read, report.inserted, report.rejected) == (13, 2, 11)
    assert stored(w.db, w.res.id, cid(0))["name"] == "人0"  # type: ignore[index]  # the first is kept
    rejected = {r.row_number: r for r in rejections_of(w.db, report.id)}
    assert sorted(rejected) == [n for n, (_, want) in enumerate(cases, start=2) if want]
    for n, (row, want) in enumerate(cases, start=2):
        if not want:
            continue
        rej = rejected[n]
        assert {(p["field"], p["rule"]) for p in rej.problems} == want, (n, rej.problems)
        assert all(p["zh"] and p["en"] for p in rej.problems)
        assert rej.raw == dict(zip(PERSON_HEADER, row, strict=True)), "raw values kept as sent"
        assert rej.resolved_by is None
    assert report.rule_counts["mobile.format"] == 2 and report.rule_counts["key.duplicate"] == 1
    first = {(r.row, r.field, r.rule) for r in report.rejections}
    assert (3, "citizen_id", "citizen_id.check_digit") in first and (9, "citizen_id", "key.duplicate") in first
    assert all(r.message and r.message_en for r in report.rejections)
    # Nothing of a rejected row reached the store.
    assert set(rows_by_key(w.db, w.res.id)) == {cid(0), cid(18)}


def test_rejections_are_corrected_and_resubmitted(w: World, tmp_path: Path) -> None:
    rows = [person_row(0), person_row(1, 手机号码="123"), person_row(2), person_row(3, 性别="9X"),
            person_row(4, 姓名="")]
    first = ingest(w.db, w.ref, write_csv(tmp_path / "a.csv", PERSON_HEADER, rows))
    assert (first.inserted, first.rejected) == (2, 3)
    with w.db.session() as s:
        text = "".join(rejections_csv(s, first.id))
    assert text.startswith("\ufeff_row,_problems,")
    table = list(csv.reader(io.StringIO(text.removeprefix("\ufeff"))))
    header, body = table[0], table[1:]
    assert header == ["_row", "_problems", *PERSON_HEADER]
    assert [r[0] for r in body] == ["3", "5", "6"] and "mobile.format" in body[0][1]
    fixes = {"3": ("手机号码", "13900000001"), "5": ("性别", "2"), "6": ("姓名", "人4")}
    corrected = []
    for r in body:
        col, value = fixes[r[0]]
        if r[0] != "6":
            r[header.index(col)] = value
        corrected.append(r)  # row 6 stays wrong: it must stay unresolved
    path = tmp_path / "fixed.csv"
    path.write_text(_csv(header, corrected), "utf-8-sig")
    again = ingest(w.db, w.ref, path, resubmit_of=first.id)
    assert (again.inserted, again.rejected, again.unmapped) == (2, 1, [])
    assert again.resubmit_of == first.id
    assert again.rejections[0].row == 6, "a resent row keeps its original row number"
    resolved = {r.row_number: r.resolved_by for r in rejections_of(w.db, first.id)}
    assert resolved == {3: again.id, 5: again.id, 6: None}
    assert stored(w.db, w.res.id, cid(1))["mobile"] == "13900000001"  # type: ignore[index]
    assert stored(w.db, w.res.id, cid(3))["sex"] == "2"  # type: ignore[index]
    # The resubmission names a batch of this resource only.
    other = person_resource(w.db, w.org)
    with pytest.raises(NotFound):
        ingest(w.db, other.code, path, resubmit_of=first.id)


def _csv(header: list[str], rows: list[list[str]]) -> str:
    buf = io.StringIO()
    csv.writer(buf, lineterminator="\n").writerows([header, *rows])
    return buf.getvalue()


# -- upsert and replace ----------------------------------------------------------------------


def test_upsert_counts_and_reingest_is_a_noop(w: World, tmp_path: Path) -> None:
    path = write_csv(tmp_path / "p.csv", PERSON_HEADER, person_rows(10))
    first = ingest(w.db, w.ref, path)
    assert (first.read, first.inserted, first.updated, first.unchanged, first.deleted) == (10, 10, 0, 0, 0)
    log = changes(w.db, w.res.id)
    same = ingest(w.db, w.ref, path)
    assert (same.inserted, same.updated, same.unchanged, same.deleted) == (0, 0, 10, 0)
    assert changes(w.db, w.res.id) == log, "an identical file writes no change-log entry"
    rows = person_rows(13)
    rows[2] = person_row(2, 手机号码="13800000002")
    rows[5] = person_row(5, 子女数="7")
    third = ingest(w.db, w.ref, write_csv(tmp_path / "p2.csv", PERSON_HEADER, rows))
    assert (third.inserted, third.updated, third.unchanged) == (3, 2, 8)
    new = changes(w.db, w.res.id, log[-1].seq)
    assert sorted((c.op, c.key) for c in new) == sorted(
        [("U", cid(2)), ("U", cid(5)), ("I", cid(10)), ("I", cid(11)), ("I", cid(12))])
    assert all(c.batch_id == third.id for c in new)
    assert stored(w.db, w.res.id, cid(5))["children"] == 7  # type: ignore[index]


def test_replace_deletes_missing_keys_within_the_allowed_share(w: World, tmp_path: Path) -> None:
    ingest(w.db, w.ref, write_csv(tmp_path / "all.csv", PERSON_HEADER, person_rows(10)))
    seq = changes(w.db, w.res.id)[-1].seq
    report = ingest(w.db, w.ref, write_csv(tmp_path / "nine.csv", PERSON_HEADER, person_rows(9)), mode="replace")
    assert (report.mode, report.unchanged, report.deleted) == ("replace", 9, 1)
    assert [(c.op, c.key, c.batch_id) for c in changes(w.db, w.res.id, seq)] == [("D", cid(9), report.id)]
    assert set(rows_by_key(w.db, w.res.id)) == {cid(i) for i in range(9)}

    # 5 of 9 would go: over the default 20 %, refused as a whole; nothing written.
    before = snapshot(w.db, w.res.id)
    rows = [*person_rows(4), person_row(20)]
    path = write_csv(tmp_path / "four.csv", PERSON_HEADER, rows)
    with pytest.raises(Conflict) as info:
        ingest(w.db, w.ref, path, mode="replace")
    assert info.value.field == "mode" and "--force" in info.value.message
    assert snapshot(w.db, w.res.id) == before
    batch = latest_batch(w.db, w.res.id)
    assert batch.status == "failed" and "replace would delete 5 of 9" in (batch.error or "")

    # A higher configured share, or --force, lets it through.
    forced = ingest(w.db, w.ref, path, mode="replace", force=True)
    assert (forced.inserted, forced.unchanged, forced.deleted) == (1, 4, 5)
    assert set(rows_by_key(w.db, w.res.id)) == {*(cid(i) for i in range(4)), cid(20)}
    allowed = ingest(w.db, w.ref, write_csv(tmp_path / "two.csv", PERSON_HEADER, person_rows(2)), mode="replace",
                     max_delete_share=0.8)
    assert allowed.deleted == 3


def test_replace_share_is_of_the_rows_before_the_batch(w: World, tmp_path: Path) -> None:
    """New rows in the file must not dilute the share: 10 stored rows replaced by 100 other ones
    would delete all 10 (100 %), not 10 of 110."""
    ingest(w.db, w.ref, write_csv(tmp_path / "old.csv", PERSON_HEADER, person_rows(10)))
    before = snapshot(w.db, w.res.id)
    path = write_csv(tmp_path / "new.csv", PERSON_HEADER, person_rows(100, start=1000))
    with pytest.raises(Conflict) as info:
        ingest(w.db, w.ref, path, mode="replace")
    assert "delete 10 of 10 rows" in info.value.message
    assert snapshot(w.db, w.res.id) == before


def test_replace_does_not_delete_a_rejected_row(plain: World, tmp_path: Path) -> None:
    x_index = next(i for i in range(100) if cid(i).endswith("X"))
    keep = [0, 1, 2, 3, x_index]
    ingest(plain.db, plain.ref, write_csv(tmp_path / "all.csv", PERSON_HEADER, [person_row(i) for i in keep]))
    rows = [person_row(0), person_row(1, 手机号码="bad"), person_row(2), person_row(3),
            person_row(x_index, 公民身份号码=cid(x_index).lower(), 子女数="many")]
    report = ingest(plain.db, plain.ref, write_csv(tmp_path / "r.csv", PERSON_HEADER, rows), mode="replace")
    assert (report.rejected, report.deleted) == (2, 0)
    assert set(rows_by_key(plain.db, plain.res.id)) == {cid(i) for i in keep}


def test_replace_keeps_a_rejected_row_of_an_integer_keyed_resource(db: Database, org: Organization,
                                                                  tmp_path: Path) -> None:
    res = simple_resource(db, org, key_fields=["n"], fields=[
        {"name": "n", "title": "编号", "type": "integer"}, {"name": "name", "title": "名称", "type": "string",
                                                           "length": 5}])
    ingest(db, res.code, write_csv(tmp_path / "a.csv", ["编号", "名称"], [[i, f"n{i}"] for i in range(6)]))
    rows = [[i, f"n{i}"] for i in range(5)] + [["5", "much too long"]]
    report = ingest(db, res.code, write_csv(tmp_path / "b.csv", ["编号", "名称"], rows), mode="replace")
    assert (report.rejected, report.deleted) == (1, 0)
    assert snapshot(db, res.id).rows == 6


# -- atomicity -------------------------------------------------------------------------------


def test_a_failure_mid_stream_leaves_everything_as_before(w: World, tmp_path: Path) -> None:
    ingest(w.db, w.ref, write_csv(tmp_path / "seed.csv", PERSON_HEADER, person_rows(100)))
    before = snapshot(w.db, w.res.id)
    assert before.rows == 100
    bad = service.CHUNK + 3000  # a source row in the second chunk
    rows = [person_row(i, 子女数="9") for i in range(service.CHUNK + 4000)]  # 100 updates, the rest inserts
    rows[10] = person_row(10, 手机号码="bad")  # a rejection in the first chunk
    good = write_csv(tmp_path / "big.csv", PERSON_HEADER, rows).read_bytes()
    lines = good.split(b"\n")
    name = f"人{bad - 2}"
    lines[bad - 1] = lines[bad - 1].replace(name.encode(), name.encode("gbk"))  # GBK bytes in row `bad`
    path = tmp_path / "mixed.csv"
    path.write_bytes(b"\n".join(lines))
    progress: list[int] = []
    with pytest.raises(IngestFailed) as info:
        service.ingest_file(w.db, CLI, w.ref, path, IngestOptions(), lambda n, _b: progress.append(n))
    assert progress and progress[0] >= service.CHUNK, "the first chunk was written before the failure"
    assert info.value.rule == "encoding.mixed" and str(bad) in info.value.message
    assert snapshot(w.db, w.res.id) == before, "store, change log and rejections as before"
    batch = latest_batch(w.db, w.res.id)
    assert batch.status == "failed" and str(bad) in (batch.error or "") and batch.finished_at is not None
    assert service.live_progress(batch.id) is None


# -- bad input -------------------------------------------------------------------------------


def _refused(w: World, path: Path, rule: str, **options: Any) -> IngestFailed:
    before = snapshot(w.db, w.res.id)
    with pytest.raises(IngestFailed) as info:
        ingest(w.db, w.ref, path, **options)
    assert info.value.rule == rule, info.value.message
    assert snapshot(w.db, w.res.id) == before
    batch = latest_batch(w.db, w.res.id)
    assert batch.status == "failed" and batch.error
    return info.value


def test_truncated_and_binary_files_are_refused(w: World, tmp_path: Path) -> None:
    full = write_xlsx(tmp_path / "ok.xlsx", PERSON_HEADER, person_rows(50)).read_bytes()
    cut = tmp_path / "cut.xlsx"
    cut.write_bytes(full[: len(full) // 2])
    _refused(w, cut, "file.corrupt")
    blob = tmp_path / "blob.csv"
    blob.write_bytes(bytes(range(256)) * 40)
    _refused(w, blob, "file.binary")
    zipped = tmp_path / "book.csv"
    zipped.write_bytes(full)
    assert "xlsx" in _refused(w, zipped, "file.binary").message
    empty = tmp_path / "empty.csv"
    empty.write_bytes(b"")
    _refused(w, empty, "file.empty")
    jcut = tmp_path / "cut.json"
    jcut.write_text(write_json(tmp_path / "x.json", as_objects(PERSON_HEADER, person_rows(3))).read_text()[:-30])
    _refused(w, jcut, "json.malformed")


@pytest.mark.parametrize("kind", ["csv", "jsonl"])
def test_a_2_gib_file_that_turns_to_garbage_is_refused_whole(w: World, tmp_path: Path, kind: str) -> None:
    """2 GiB: good rows, then zero bytes to the end — no line break for 2 GiB (a sparse file, so
    the test writes little). The batch is refused naming the row where the garbage starts,
    nothing is written, and the reader never holds that 'line' in memory whole."""
    import resource

    rows = person_rows(2000)  # past the encoding sniffer's sample
    path = write_csv(tmp_path / "huge.csv", PERSON_HEADER, rows) if kind == "csv" else \
        write_jsonl(tmp_path / "huge.jsonl", as_objects(PERSON_HEADER, _json_rows(2000)))
    with path.open("r+b") as fh:
        fh.truncate(2 << 30)
    peak_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB
    refused = _refused(w, path, "csv.malformed" if kind == "csv" else "json.malformed")
    grown = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - peak_before
    assert refused.message.startswith("row 2002: " if kind == "csv" else "row 2001: "), refused.message
    assert grown < 512 * 1024, f"peak memory grew by {grown // 1024} MiB reading a 2 GiB file"


def test_hashing_stops_when_told(tmp_path: Path) -> None:
    """A refused batch stops hashing its file instead of reading the rest of it first."""
    import threading

    path = tmp_path / "f.bin"
    path.write_bytes(b"x" * (3 << 20))
    assert service.sha256_of(path) == service.sha256_of(path, threading.Event())
    stop = threading.Event()
    stop.set()
    assert service.sha256_of(path, stop) is None


def test_ragged_rows_are_rejected_one_by_one(w: World, tmp_path: Path) -> None:
    text = "\n".join([",".join(PERSON_HEADER), ",".join(person_row(0)), ",".join(person_row(1)[:3]),
                      ",".join([*person_row(2), "extra"]), ",".join(person_row(4))]) + "\n"
    path = tmp_path / "ragged.csv"
    path.write_text(text, "utf-8")
    report = ingest(w.db, w.ref, path)
    assert (report.read, report.inserted, report.rejected) == (4, 2, 2)
    rejected = rejections_of(w.db, report.id)
    assert [(r.row_number, rules_of(r)) for r in rejected] == [(3, {"row.ragged"}), (4, {"row.ragged"})]
    assert rejected[1].raw["_extra_9"] == "extra"


def test_unknown_sheet_names_the_sheets(w: World, tmp_path: Path) -> None:
    path = write_xlsx(tmp_path / "s.xlsx", PERSON_HEADER, person_rows(2), extra_sheets=["说明"])
    err = _refused(w, path, "sheet.unknown", sheet="Sheet9")
    assert "人员" in err.message and "说明" in err.message and "Sheet9" in err.message
    report = ingest(w.db, w.ref, path, sheet="人员")
    assert report.inserted == 2 and report.sheet == "人员"


def test_header_only_file_commits_an_empty_batch(w: World, tmp_path: Path) -> None:
    report = ingest(w.db, w.ref, write_csv(tmp_path / "h.csv", PERSON_HEADER, []))
    assert report.status == "committed" and (report.read, report.inserted, report.rejected) == (0, 0, 0)
    report = ingest(w.db, w.ref, write_xlsx(tmp_path / "h.xlsx", PERSON_HEADER, []))
    assert report.status == "committed" and report.read == 0


def test_duplicate_and_merged_headers_are_refused(w: World, tmp_path: Path) -> None:
    header = [*PERSON_HEADER[:3], "姓名"]
    err = _refused(w, write_csv(tmp_path / "d.csv", header, [person_row(0)[:4]]), "header.duplicate")
    assert "姓名" in err.message

    def merge(ws: Any) -> None:
        ws.merge_cells("B1:C1")

    path = write_xlsx(tmp_path / "m.xlsx", PERSON_HEADER, person_rows(2), setup=merge)
    err = _refused(w, path, "header.empty")
    assert "合并" in err.message or "merged" in err.message


def test_unpublished_and_unknown_resources(db: Database, org: Organization, tmp_path: Path) -> None:
    from core_factories import spec

    path = write_csv(tmp_path / "p.csv", PERSON_HEADER, person_rows(2))
    with db.session(write=True) as s:
        draft = create_resource(s, CLI, spec(org))
    with pytest.raises(Conflict) as info:
        ingest(db, draft.code, path)
    assert info.value.status == 409 and info.value.field == "resource"
    with pytest.raises(NotFound):
        ingest(db, "no_such_resource", path)
    with pytest.raises(NotFound):
        ingest(db, "999999", path)


def test_who_may_ingest(db: Database, org: Organization, tmp_path: Path) -> None:
    res = person_resource(db, org)
    other_org = new_org(db)
    with db.session(write=True) as s:
        _, own = add_user(s, "steward", org)
        _, foreign = add_user(s, "steward", other_org)
        _, admin = add_user(s, "dept_admin", other_org)
        _, auditor = add_user(s, "auditor")
    path = write_csv(tmp_path / "p.csv", PERSON_HEADER, person_rows(3))
    before = snapshot(db, res.id)
    for actor in (foreign, admin, auditor):
        with pytest.raises(PermissionDenied):
            ingest(db, res.code, path, actor=actor)
        assert snapshot(db, res.id) == before
    with db.session() as s:
        assert service.history(s, res.code) == [], "a refused actor leaves no batch behind"
    report = ingest(db, res.code, path, actor=own)
    assert report.inserted == 3 and report.username == own.username


def test_history_lists_batches_newest_first(w: World, tmp_path: Path) -> None:
    a = ingest(w.db, w.ref, write_csv(tmp_path / "a.csv", PERSON_HEADER, person_rows(2)))
    with pytest.raises(IngestFailed):
        ingest(w.db, w.ref, write_csv(tmp_path / "b.csv", ["姓名"], [["x"]]))
    c = ingest(w.db, w.ref, write_csv(tmp_path / "c.csv", PERSON_HEADER, person_rows(3)))
    with w.db.session() as s:
        reports = service.history(s, w.ref)
    assert reports[0].id == c.id and reports[-1].id == a.id
    assert [r.status for r in reports] == ["committed", "failed", "committed"]
    assert batch_row(w.db, c.id).sha256 and batch_row(w.db, c.id).duration_ms is not None


def test_mark_interrupted_leaves_live_batches_alone(w: World) -> None:
    import os

    from onceonly.ingest.models import Batch

    with w.db.session(write=True) as s:
        mine = Batch(resource_id=w.res.id, status="running", pid=os.getpid(), username="t")
        gone = Batch(resource_id=w.res.id, status="running", pid=2**22 + 12345, username="t")
        s.add_all([mine, gone])
        s.flush()
        ids = mine.id, gone.id
    assert service.mark_interrupted(w.db) >= 1
    assert batch_row(w.db, ids[0]).status == "running"
    gone_row = batch_row(w.db, ids[1])
    assert gone_row.status == "interrupted" and gone_row.error and gone_row.finished_at is not None
    with w.db.session(write=True) as s:
        s.get(Batch, ids[0]).status = "failed"  # type: ignore[union-attr]



def test_reingest_of_every_field_type_is_a_noop(db: Database, org: Organization, tmp_path: Path) -> None:
    res = simple_resource(db, org)
    header = ["编号", "名称", "数量", "分值", "日期", "标志", "时间"]
    rows = [["a1", "甲", "1,234", "0.1", "2018年8月20日", "是", "2018-08-20 12:30:00"],
            ["a2", "乙", "-5", "3.14159", "20180821", "FALSE", "2018-08-20T12:30:00+08:00"],
            ["a3", "", "", "", "", "", ""]]
    path = write_csv(tmp_path / "t.csv", header, rows)
    first = ingest(db, res.code, path)
    assert (first.inserted, first.rejected) == (3, 0), first.rejections
    log = changes(db, res.id)
    again = ingest(db, res.code, path)
    assert (again.unchanged, again.updated, again.inserted) == (3, 0, 0)
    assert changes(db, res.id) == log
    got = rows_by_key(db, res.id)
    assert got["a1"]["score"] == 0.1 and got["a1"]["n"] == 1234 and got["a1"]["flag"] is True
    assert got["a2"]["ts"] == datetime.fromisoformat("2018-08-20T04:30:00+00:00")
    assert got["a3"]["name"] is None and got["a3"]["born"] is None


def test_quarantine_csv_keeps_every_column_when_the_first_rejection_is_short(w: World, tmp_path: Path) -> None:
    text = "\n".join([",".join(PERSON_HEADER), ",".join(person_row(0)[:2]),  # row 2: two cells only
                      ",".join(person_row(1, 手机号码="12")), ",".join(person_row(2))]) + "\n"
    path = tmp_path / "short.csv"
    path.write_text(text, "utf-8")
    report = ingest(w.db, w.ref, path)
    assert report.rejected == 2
    with w.db.session() as s:
        table = list(csv.reader(io.StringIO("".join(rejections_csv(s, report.id)).removeprefix("\ufeff"))))
    assert table[0] == ["_row", "_problems", *PERSON_HEADER], "the columns of every rejected row"
    assert table[2][table[0].index("手机号码")] == "12"
    table[1][2:] = person_row(0)
    table[2][table[0].index("手机号码")] = "13900000001"
    fixed = tmp_path / "fixed.csv"
    fixed.write_text(_csv(table[0], table[1:]), "utf-8")
    again = ingest(w.db, w.ref, fixed, resubmit_of=report.id)
    assert (again.inserted, again.rejected) == (2, 0)
    assert {r.resolved_by for r in rejections_of(w.db, report.id)} == {again.id}


def test_format_named_when_the_suffix_says_nothing(w: World, tmp_path: Path) -> None:
    path = write_csv(tmp_path / "people.dat", PERSON_HEADER, person_rows(2))
    err = _refused(w, path, "file.format")
    assert "--format" in err.message
    report = ingest(w.db, w.ref, path, format="csv")
    assert (report.format, report.inserted) == ("csv", 2)


def test_replace_with_a_rejected_row_whose_key_is_too_long(w: World, tmp_path: Path) -> None:
    """The key of a rejected row is staged to protect it from deletion; one that cannot be a
    stored key (longer than the column) must not break the batch (PostgreSQL checks varchar)."""
    ingest(w.db, w.ref, write_csv(tmp_path / "a.csv", PERSON_HEADER, person_rows(10)))
    rows = [*person_rows(10), person_row(10, 公民身份号码=cid(10) + "（旧号码作废）")]
    report = ingest(w.db, w.ref, write_csv(tmp_path / "b.csv", PERSON_HEADER, rows), mode="replace")
    assert (report.status, report.rejected, report.deleted, report.unchanged) == ("committed", 1, 0, 10)


def test_resubmission_tolerates_a_mangled_row_column(w: World, tmp_path: Path) -> None:
    """`_row` is typed by people: blank (a row added at the end), text, huge or inf must not
    break the batch; such rows resolve nothing and keep their own row number."""
    first = ingest(w.db, w.ref, write_csv(tmp_path / "a.csv", PERSON_HEADER,
                                          [person_row(0, 手机号码="1"), person_row(1, 手机号码="1")]))
    assert first.rejected == 2
    header = ["_row", "_problems", *PERSON_HEADER]
    rows = [["2", "", *person_row(0)],  # fixed
            ["", "", *person_row(5, 手机号码="1")], ["abc", "", *person_row(6, 手机号码="1")],
            ["99999999999999999999", "", *person_row(7, 手机号码="1")], ["inf", "", *person_row(8, 手机号码="1")],
            ["1e400", "", *person_row(9)]]
    again = ingest(w.db, w.ref, write_csv(tmp_path / "b.csv", header, rows), resubmit_of=first.id)
    assert (again.status, again.inserted, again.rejected) == ("committed", 2, 4)
    assert {r.row_number: r.resolved_by for r in rejections_of(w.db, first.id)} == {2: again.id, 3: None}
    assert sorted(r.row_number for r in rejections_of(w.db, again.id)) == [3, 4, 5, 6]


def test_quarantine_listing_keeps_rows_sharing_a_row_number(w: World, tmp_path: Path) -> None:
    from onceonly.ingest import repository

    first = ingest(w.db, w.ref, write_csv(tmp_path / "a.csv", PERSON_HEADER, [person_row(0, 手机号码="1")]))
    header = ["_row", "_problems", *PERSON_HEADER]
    rows = [["2", "", *person_row(i, 手机号码="1")] for i in range(5)]  # five rows claim row 2
    again = ingest(w.db, w.ref, write_csv(tmp_path / "b.csv", header, rows), resubmit_of=first.id)
    assert again.rejected == 5
    with w.db.session() as s:
        listed = [r.raw["姓名"] for r in repository.iter_rejections(s, again.id, chunk=2)]
        text = "".join(rejections_csv(s, again.id))
    assert listed == [f"人{i}" for i in range(5)]
    assert text.count("\n") == 6


@pytest.mark.parametrize("key", ["code", "rowid"])
def test_a_field_named_rowid_does_not_confuse_the_initial_load(db: Database, org: Organization, tmp_path: Path,
                                                               key: str) -> None:
    """SQLite lets a column named `rowid` hide the row id the initial load's change log counts
    on; a field may be called that, as a key or not."""
    other = "rowid" if key == "code" else "code"
    fields = [{"name": key, "title": "编码", "type": "string", "length": 20},
              {"name": other, "title": "序号", "type": "integer" if other == "rowid" else "string"}]
    res = simple_resource(db, org, name=unique("rowid"), key_fields=[key], query_fields=[], fields=fields)
    rows = [[f"K{i:03d}", str(100 - i) if other == "rowid" else f"V{i}"] for i in (5, 1, 9, 3)]
    report = ingest(db, res.code, write_csv(tmp_path / "r.csv", [key, other], rows))
    assert (report.inserted, report.rejected) == (4, 0), report.rejections
    log = changes(db, res.id)
    assert [(c.op, c.key) for c in log] == [("I", r[0]) for r in rows]
    assert [c.seq for c in log] == list(range(log[0].seq, log[0].seq + 4))
