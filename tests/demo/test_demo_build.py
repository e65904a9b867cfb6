"""The demo city built by the library function: its catalog, its data and their consistency."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from demo_helpers import PYTHON_TYPES, published, rows_of
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from onceonly.accounts.models import User
from onceonly.catalog.codelists import codes_set
from onceonly.catalog.models import Catalog, Organization, Resource
from onceonly.catalog.service import field_spec
from onceonly.db import Database
from onceonly.demo.build import DemoOptions, DemoResult, build_demo
from onceonly.demo.home import existing_content
from onceonly.kit.identifiers import (
    IdentifierError,
    citizen_id_birth_date,
    citizen_id_sex,
    normalize_citizen_id,
    normalize_mobile,
    normalize_uscc,
)
from onceonly.kit.passwords import verify_password
from onceonly.settings import load_settings

OPTIONS = DemoOptions(seed=7, persons=2000, companies=400)


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Database, DemoResult]]:
    db = Database(load_settings(home=tmp_path_factory.mktemp("demo-home")))
    result = build_demo(db, OPTIONS)
    yield db, result
    db.dispose()


@pytest.fixture
def session(built: tuple[Database, DemoResult]) -> Iterator[Session]:
    with built[0].session() as s:
        yield s


def test_catalog_has_departments_catalogs_and_resources(session: Session, built: tuple[Database, DemoResult]) -> None:
    orgs = session.scalar(select(func.count()).select_from(Organization))
    assert orgs is not None and orgs >= 23
    kinds = Counter(session.scalars(select(Catalog.kind)))
    assert kinds["basic"] == 5
    assert kinds["theme"] >= 10
    assert kinds["department"] == orgs
    resources = published(session)
    assert len(resources) >= 40
    assert built[1].resources == len(resources)
    used = Counter(r.category.catalog.kind for r in resources)
    assert used["basic"] >= 5 and used["theme"] >= 10 and used["department"] >= 10
    themes = {r.category.catalog.code for r in resources if r.category.catalog.kind == "theme"}
    assert len(themes) >= 10, "most theme catalogs hold a resource"


def test_sharing_and_open_attributes_are_mixed(session: Session) -> None:
    resources = published(session)
    shares = Counter(r.share_type for r in resources)
    opens = Counter(r.open_type for r in resources)
    assert shares["unconditional"] and shares["conditional"] and shares["none"]
    assert opens["open"] and opens["conditional"] and opens["closed"]
    assert all(r.share_condition for r in resources if r.share_type == "conditional")
    assert all(r.open_condition for r in resources if r.open_type == "conditional")
    by_name = {r.name: r for r in resources}
    assert by_name["administrative_license"].open_type == "open"  # 双公示
    assert by_name["administrative_penalty"].open_type == "open"
    assert by_name["community_correction"].share_type == "none"
    sensitive = {f.name for f in by_name["population"].fields if f.sensitivity == "sensitive"}
    assert sensitive == {"citizen_id"}
    assert all(r.query_fields for r in resources if r.name in ("population", "enterprise_registration"))


def test_every_resource_has_rows(session: Session, built: tuple[Database, DemoResult]) -> None:
    result = built[1]
    assert result.rows["population"] == OPTIONS.persons
    assert result.rows["enterprise_registration"] == OPTIONS.companies
    empty = [name for name, n in result.rows.items() if n == 0]
    assert not empty
    for res in published(session):
        assert sum(1 for _ in rows_of(session, res)) == result.rows[res.name], res.name


def test_rows_obey_their_field_specs(session: Session) -> None:
    """Types, lengths, enums, ranges, code lists and identifier checks — what ingest would enforce."""
    code_lists: dict[str, set[str]] = {}
    problems: list[str] = []
    for res in published(session):
        specs = [field_spec(f) for f in res.fields]
        for row in rows_of(session, res):
            for spec in specs:
                value = row[spec.name]
                where = f"{res.name}.{spec.name}={value!r}"
                if value is None:
                    if spec.required:
                        problems.append(f"{where}: required")
                    continue
                wrong_type = not isinstance(value, PYTHON_TYPES[spec.type])
                if wrong_type or (spec.type == "integer" and isinstance(value, bool)):
                    problems.append(f"{where}: not {spec.type}")
                    continue
                if spec.length and isinstance(value, str) and len(value) > spec.length:
                    problems.append(f"{where}: longer than {spec.length}")
                if spec.enum and value not in spec.enum:
                    problems.append(f"{where}: not in enum")
                if spec.minimum is not None and value < spec.minimum:
                    problems.append(f"{where}: below minimum")
                if spec.maximum is not None and value > spec.maximum:
                    problems.append(f"{where}: above maximum")
                if spec.code_list:
                    if spec.code_list not in code_lists:
                        code_lists[spec.code_list] = codes_set(session, spec.code_list)
                    if value not in code_lists[spec.code_list]:
                        problems.append(f"{where}: not a current code of {spec.code_list}")
                problems += _identifier_problem(spec.check, value, where)
            if len(problems) > 20:
                break
    assert not problems, problems[:20]


def _identifier_problem(check: str | None, value: Any, where: str) -> list[str]:
    checks = {"citizen_id": normalize_citizen_id, "uscc": normalize_uscc, "mobile": normalize_mobile}
    normalize = checks.get(check or "")
    if normalize is None:
        return []
    try:
        return [] if normalize(value) == value else [f"{where}: not canonical"]
    except IdentifierError as exc:
        return [f"{where}: {exc.rule}"]


def _rows(session: Session, name: str) -> list[dict[str, Any]]:
    res = session.scalars(select(Resource).where(Resource.name == name)).one()
    return list(rows_of(session, res))


def test_citizen_ids_agree_with_sex_and_birth_date(session: Session) -> None:
    people = _rows(session, "population")
    assert len({p["citizen_id"] for p in people}) == len(people)
    for p in people:
        assert normalize_citizen_id(p["citizen_id"]) == p["citizen_id"]
        assert citizen_id_sex(p["citizen_id"]) == p["sex"]
        assert citizen_id_birth_date(p["citizen_id"]) == p["birth_date"]
    local = sum(p["household_region"].startswith("3418") for p in people)
    assert local == len(people), "everyone is registered in one of the city's counties"
    native = Counter(p["native_region"][:4] for p in people)
    assert native["3418"] + native["3425"] + native["3427"] > len(people) * 0.7, "most were born locally"
    assert sum(1 for code in native if not code.startswith("34")) >= 1, "some come from other provinces"
    assert Counter(p["ethnic"] for p in people).most_common(1)[0][0] == "01"


def test_every_identifier_points_at_a_known_person_or_entity(session: Session) -> None:
    people = {p["citizen_id"]: p for p in _rows(session, "population")}
    entities = {e["uscc"] for e in _rows(session, "enterprise_registration")}
    entities |= {e["uscc"] for e in _rows(session, "social_organization")}
    entities |= {m["uscc"] for m in _rows(session, "medical_institution")}
    entities |= set(session.scalars(select(Organization.code)))
    for res in published(session):
        checks = {f.name: f.check for f in res.fields if f.check in ("citizen_id", "uscc")}
        if res.name in ("population",) or not checks:
            continue
        for row in rows_of(session, res):
            for name, check in checks.items():
                value = row[name]
                if value is None:
                    continue
                known = people if check == "citizen_id" else entities
                assert value in known, f"{res.name}.{name}={value} is nobody the city knows"
    for m in _rows(session, "marriage_registration"):
        assert people[m["husband_citizen_id"]]["sex"] == "1"
        assert people[m["wife_citizen_id"]]["sex"] == "2"
    for e in _rows(session, "enterprise_registration"):
        assert people[e["legal_rep_citizen_id"]]["name"] == e["legal_rep_name"]


def test_derived_records_follow_life_events(session: Session) -> None:
    people = {p["citizen_id"]: p for p in _rows(session, "population")}
    deaths = {d["citizen_id"] for d in _rows(session, "death_registration")}
    assert deaths == {c for c, p in people.items() if p["status"] == "死亡注销"}
    for pension in _rows(session, "retirement_pension"):
        assert (pension["status"] == "终止发放") == (pension["citizen_id"] in deaths)
    for student in _rows(session, "student_status"):
        assert student["citizen_id"] not in deaths
    stats = {s["region"]: s for s in _rows(session, "population_statistics")}
    alive = sum(1 for p in people.values() if p["status"] == "正常")
    assert stats["341800"]["population"] == alive
    schools = {s["school_code"]: s for s in _rows(session, "schools")}
    assert sum(s["students"] for s in schools.values()) == len(_rows(session, "student_status"))


def test_usccs_of_departments_and_companies_are_valid(session: Session) -> None:
    codes = list(session.scalars(select(Organization.code)))
    codes += [e["uscc"] for e in _rows(session, "enterprise_registration")]
    assert len(set(codes)) == len(codes)
    for code in codes:
        assert normalize_uscc(code) == code
    depts = session.scalars(select(Organization)).all()
    assert all(o.code.startswith("11341800") or o.code[:2] in ("12", "13") for o in depts)
    assert any(o.name == "示例市公安局" for o in depts)


def test_staff_accounts_have_generated_passwords(session: Session, built: tuple[Database, DemoResult]) -> None:
    accounts = built[1].accounts
    roles = {a.role for a in accounts}
    assert {"platform_admin", "security_admin", "auditor", "steward", "reviewer"} <= roles
    assert any(a.role == "steward" and a.org == "示例市公安局" for a in accounts)
    assert any(a.role == "reviewer" and a.org == "示例市公安局" for a in accounts)
    assert len({a.password for a in accounts}) == len(accounts)
    for a in accounts:
        user = session.scalars(select(User).where(User.username == a.username)).one()
        assert verify_password(user.password_hash, a.password)


def test_existing_content_is_reported(built: tuple[Database, DemoResult], tmp_path: Path) -> None:
    found = existing_content(built[0])
    assert found and "organizations" in found
    empty = Database(load_settings(home=tmp_path))
    try:
        assert existing_content(empty) is None
    finally:
        empty.dispose()
