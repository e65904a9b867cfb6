"""Unchanged rows skipped by their source digest (ingest/fastpath.py): same counts and the same
first-row-wins rule for keys as the checked path, on SQLite and PostgreSQL."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from ingest_factories import (
    PERSON_HEADER,
    World,
    changes,
    cid,
    ingest,
    person_row,
    person_rows,
    rejections_of,
    rows_by_key,
    rules_of,
    snapshot,
    write_csv,
)
from sqlalchemy import text

from core_factories import CLI
from onceonly.catalog import codelists
from onceonly.catalog.schemas import MappingEntry, MappingIn
from onceonly.catalog.service import get_resource
from onceonly.ingest import service
from onceonly.ingest.checks import RowChecker
from onceonly.store import service as store


@pytest.fixture
def checked(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """Counts the rows that went through the full checks."""
    calls: list[int] = []
    original = RowChecker.check_row

    def counting(self: RowChecker, values: list[Any]) -> Any:
        calls.append(1)
        return original(self, values)

    monkeypatch.setattr(RowChecker, "check_row", counting)
    return calls


def counts(report: Any) -> tuple[int, int, int, int, int]:
    return report.inserted, report.updated, report.unchanged, report.deleted, report.rejected


def test_reingest_skips_the_checks_and_writes_nothing(w: World, tmp_path: Path, checked: list[int]) -> None:
    path = write_csv(tmp_path / "p.csv", PERSON_HEADER, person_rows(50))
    assert counts(ingest(w.db, w.ref, path)) == (50, 0, 0, 0, 0)
    assert len(checked) == 50
    before = snapshot(w.db, w.res.id)
    checked.clear()
    assert counts(ingest(w.db, w.ref, path)) == (0, 0, 50, 0, 0)
    assert checked == [], "unchanged rows are not checked again"
    assert snapshot(w.db, w.res.id) == before, "nothing written, not even a change-log entry"


def test_only_changed_rows_are_checked(w: World, tmp_path: Path, checked: list[int]) -> None:
    ingest(w.db, w.ref, write_csv(tmp_path / "a.csv", PERSON_HEADER, person_rows(20)))
    rows = person_rows(20)
    rows[3] = person_row(3, 子女数="7")
    rows.append(person_row(20))
    checked.clear()
    report = ingest(w.db, w.ref, write_csv(tmp_path / "b.csv", PERSON_HEADER, rows))
    assert counts(report) == (1, 1, 19, 0, 0)
    assert len(checked) == 2
    assert rows_by_key(w.db, w.res.id)[cid(3)]["children"] == 7
    # The changed row now carries the new digest: the same file again is all unchanged, unchecked.
    checked.clear()
    assert counts(ingest(w.db, w.ref, write_csv(tmp_path / "c.csv", PERSON_HEADER, rows))) == (0, 0, 21, 0, 0)
    assert checked == []


def test_same_values_written_differently_are_unchanged(w: World, tmp_path: Path) -> None:
    ingest(w.db, w.ref, write_csv(tmp_path / "a.csv", PERSON_HEADER, person_rows(5)))
    rows = [person_row(i, 出生日期=person_row(i)[3].replace("-", "")) for i in range(5)]
    report = ingest(w.db, w.ref, write_csv(tmp_path / "b.csv", PERSON_HEADER, rows))
    assert counts(report) == (0, 0, 5, 0, 0), "checked, found identical, nothing written"


def _duplicate_rows(w: World, batch_id: int) -> list[int]:
    rejected = rejections_of(w.db, batch_id)
    assert all(rules_of(r) == {"key.duplicate"} for r in rejected), [r.problems for r in rejected]
    return [r.row_number for r in rejected]


def test_an_unchanged_row_given_twice_keeps_the_first(w: World, tmp_path: Path) -> None:
    ingest(w.db, w.ref, write_csv(tmp_path / "a.csv", PERSON_HEADER, person_rows(3)))
    rows = [person_row(0), person_row(1), person_row(0), person_row(2)]
    report = ingest(w.db, w.ref, write_csv(tmp_path / "b.csv", PERSON_HEADER, rows))
    assert counts(report) == (0, 0, 3, 0, 1)
    assert _duplicate_rows(w, report.id) == [4]


def test_a_changed_copy_after_an_unchanged_row_is_the_duplicate(w: World, tmp_path: Path) -> None:
    ingest(w.db, w.ref, write_csv(tmp_path / "a.csv", PERSON_HEADER, person_rows(3)))
    before = snapshot(w.db, w.res.id)
    rows = [person_row(0), person_row(1), person_row(0, 子女数="9"), person_row(2)]
    report = ingest(w.db, w.ref, write_csv(tmp_path / "b.csv", PERSON_HEADER, rows))
    assert counts(report) == (0, 0, 3, 0, 1)
    assert _duplicate_rows(w, report.id) == [4]
    assert snapshot(w.db, w.res.id).data == before.data, "the first row of the key was kept"


def test_an_old_copy_after_a_changed_row_is_the_duplicate(w: World, tmp_path: Path) -> None:
    ingest(w.db, w.ref, write_csv(tmp_path / "a.csv", PERSON_HEADER, person_rows(3)))
    rows = [person_row(0, 子女数="9"), person_row(1), person_row(0), person_row(2)]
    report = ingest(w.db, w.ref, write_csv(tmp_path / "b.csv", PERSON_HEADER, rows))
    assert counts(report) == (0, 1, 2, 0, 1)
    assert _duplicate_rows(w, report.id) == [4]
    assert rows_by_key(w.db, w.res.id)[cid(0)]["children"] == 9


@pytest.mark.parametrize("order", ["changed-first", "unchanged-first"])
def test_duplicates_across_chunks(w: World, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, order: str) -> None:
    monkeypatch.setattr(service, "CHUNK", 2)
    ingest(w.db, w.ref, write_csv(tmp_path / "a.csv", PERSON_HEADER, person_rows(4)))
    changed, old = person_row(0, 子女数="9"), person_row(0)
    pair = [changed, old] if order == "changed-first" else [old, changed]
    rows = [pair[0], person_row(1), person_row(2), pair[1], person_row(3)]  # rows 2 and 5, chunks 1 and 2
    report = ingest(w.db, w.ref, write_csv(tmp_path / "b.csv", PERSON_HEADER, rows))
    assert report.rejected == 1 and _duplicate_rows(w, report.id) == [5]
    assert report.inserted + report.updated + report.unchanged == 4
    expected = 9 if order == "changed-first" else 0
    assert rows_by_key(w.db, w.res.id)[cid(0)]["children"] == expected


def test_replace_keeps_unchanged_rows_and_deletes_the_missing(w: World, tmp_path: Path) -> None:
    ingest(w.db, w.ref, write_csv(tmp_path / "a.csv", PERSON_HEADER, person_rows(40)))
    # Two rows written by another path (no source digest): one is in the file, one is not.
    with w.db.session(write=True) as s:
        res = get_resource(s, w.res.id)
        store.upsert_rows(s, res, [{"citizen_id": cid(100), "name": "甲"}, {"citizen_id": cid(101), "name": "乙"}])
    rows = [*person_rows(37), person_row(101, 姓名="乙")]  # rows 37..39 and person 100 left out
    report = ingest(w.db, w.ref, write_csv(tmp_path / "b.csv", PERSON_HEADER, rows), mode="replace")
    assert counts(report) == (0, 1, 37, 4, 0)
    assert set(rows_by_key(w.db, w.res.id)) == {cid(i) for i in [*range(37), 101]}
    again = ingest(w.db, w.ref, write_csv(tmp_path / "c.csv", PERSON_HEADER, rows), mode="replace")
    assert counts(again) == (0, 0, 38, 0, 0)


def test_a_new_code_mapping_checks_every_row_again(w: World, tmp_path: Path, checked: list[int]) -> None:
    rows = person_rows(6)
    path = write_csv(tmp_path / "a.csv", PERSON_HEADER, rows)
    ingest(w.db, w.ref, path)
    with w.db.session(write=True) as s:
        codelists.set_mappings(s, CLI, MappingIn(org=w.org.code, code_list="GB/T 2261.1", entries=[
            MappingEntry(local_code="M", standard_code="1"), MappingEntry(local_code="F", standard_code="2")]))
    checked.clear()
    assert counts(ingest(w.db, w.ref, path)) == (0, 0, 6, 0, 0)
    assert len(checked) == 6, "the code mappings are part of what a cell becomes"


def test_digests_are_stored_with_the_rows(w: World, tmp_path: Path) -> None:
    ingest(w.db, w.ref, write_csv(tmp_path / "a.csv", PERSON_HEADER, person_rows(5)))
    with w.db.session() as s:
        res = get_resource(s, w.res.id)
        digests = list(store.live_digests(s, res))
        assert len(digests) == 5 and len(set(digests)) == 5 and 0 not in digests
        table = res.table_name
        assert s.execute(text(f'SELECT COUNT(*) FROM "{table}" WHERE _digest IS NULL')).scalar_one() == 0
    assert [c.op for c in changes(w.db, w.res.id)] == ["I"] * 5


def test_claims_in_a_shuffled_chunk_match_the_rule_row_by_row() -> None:
    """The stored digests are looked up in sorted order; the claims must still be the rule's,
    row by row in file order: a hit nobody claimed before, first in its chunk; misses, repeats
    and undigestable rows (0) are checked."""
    import random

    import numpy as np

    from onceonly.ingest.fastpath import KnownDigests

    rng = random.Random(5)
    stored = list({rng.randrange(-2**62, 2**62) for _ in range(5000)})
    known = KnownDigests(np.array(stored, dtype=np.int64))
    claimed: set[int] = set()
    number = 0
    for _ in range(20):
        chunk = [rng.choice(stored) if rng.random() < 0.6 else rng.choice([0, rng.randrange(-2**62, 2**62)])
                 for _ in range(300)]
        numbers = np.arange(number + 1, number + 1 + len(chunk), dtype=np.int64)
        number += len(chunk)
        fast = known.claim_unchanged(np.array(chunk, dtype=np.int64), numbers).tolist()
        expected = []
        for d in chunk:
            ok = d != 0 and d in stored and d not in claimed
            if ok:
                claimed.add(d)
            expected.append(ok)
        assert fast == expected
