"""`Database.reading`, the unit of work of every exchange call: statements on its connection and
ORM use through its session are one transaction, committed whole on success and rolled back
whole on an error — on both databases."""

from __future__ import annotations

import uuid
import warnings
from collections.abc import Iterator

import pytest
from sqlalchemy import Column, Integer, MetaData, Table, Text, func, insert, select
from sqlalchemy.exc import IntegrityError

from onceonly.catalog.models import Organization
from onceonly.db import Database, connection_of
from onceonly.kit.identifiers import make_uscc


@pytest.fixture
def table(db: Database) -> Iterator[Table]:
    t = Table(f"reading_probe_{uuid.uuid4().hex[:8]}", MetaData(), Column("n", Integer, primary_key=True),
              Column("s", Text))
    t.create(db.engine)
    yield t
    t.drop(db.engine)


def _count(db: Database, table: Table) -> int:
    with db.session() as s:
        return int(s.execute(select(func.count()).select_from(table)).scalar_one())


def _org(name: str) -> Organization:
    return Organization(code=make_uscc("1", "1", "341800", uuid.uuid4().hex[:8].upper()), name=name, region="341800",
                        number=1)


def test_connection_statements_and_orm_writes_commit_together(db: Database, table: Table) -> None:
    name = f"读写同事务-{uuid.uuid4().hex[:6]}"
    with db.reading() as s:
        conn = connection_of(s)
        assert not s.in_transaction()  # nothing of the ORM's machinery yet
        conn.execute(insert(table).values(n=1, s="甲"))
        s.add(_org(name))
        s.flush()
        assert s.execute(select(func.count()).select_from(table)).scalar_one() == 1  # the ORM sees the row
        assert connection_of(s) is conn
    assert _count(db, table) == 1
    with db.session() as s:
        assert s.scalar(select(Organization).where(Organization.name == name)) is not None


def test_an_error_rolls_back_both(db: Database, table: Table) -> None:
    name = f"回滚-{uuid.uuid4().hex[:6]}"
    with pytest.raises(RuntimeError, match="boom"), db.reading() as s:
        connection_of(s).execute(insert(table).values(n=2, s="乙"))
        s.add(_org(name))
        s.flush()
        raise RuntimeError("boom")
    assert _count(db, table) == 0
    with db.session() as s:
        assert s.scalar(select(Organization).where(Organization.name == name)) is None


def test_an_unflushed_orm_change_is_committed_at_the_end(db: Database) -> None:
    name = f"末尾提交-{uuid.uuid4().hex[:6]}"
    with db.reading() as s:
        s.add(_org(name))
    with db.session() as s:
        assert s.scalar(select(Organization).where(Organization.name == name)) is not None


def test_a_plain_session_answers_connection_of_with_its_own_connection(db: Database, table: Table) -> None:
    with db.session(write=True) as s:
        connection_of(s).execute(insert(table).values(n=3, s="丙"))
        assert s.execute(select(table.c.s)).scalar_one() == "丙"
    assert _count(db, table) == 1


def test_a_rollback_inside_then_more_writes_commits_those_writes(db: Database, table: Table) -> None:
    """As with `Database.session`: what was rolled back is gone, what came after commits."""
    name = f"撤回-{uuid.uuid4().hex[:6]}"
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        with db.reading() as s:
            s.add(_org(name))
            s.flush()  # the session now takes part in the transaction
            connection_of(s).execute(insert(table).values(n=10, s="撤回"))
            s.rollback()
            connection_of(s).execute(insert(table).values(n=11, s="保留"))
        with db.session() as s:
            assert s.execute(select(table.c.n)).scalars().all() == [11]
            assert s.scalar(select(Organization).where(Organization.name == name)) is None


def test_a_conflict_at_the_final_flush_commits_nothing(db: Database, table: Table) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        with db.session(write=True) as s:
            s.add(_org("已有"))
        code = _last_org_code(db)
        with pytest.raises(IntegrityError), db.reading() as s:
            connection_of(s).execute(insert(table).values(n=12, s="随之回滚"))
            s.add(Organization(code=code, name="重复代码", region="341800", number=1))
    assert _count(db, table) == 0


def _last_org_code(db: Database) -> str:
    with db.session() as s:
        return str(s.scalar(select(Organization.code).order_by(Organization.id.desc()).limit(1)))
