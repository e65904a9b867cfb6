"""Code lists (代码集) and code mappings (编码对应关系).

Standard lists ship with the platform, each with its source and date: GB/T 2261.1 sex and
GB 3304 ethnic groups from `data/standard_code_lists.json`, GB/T 2260 divisions from
python-stdnum's table (see onceonly.kit.divisions). Departments add their own lists and map
their local codes onto a standard list; ingest applies those mappings."""

from __future__ import annotations

import json
from functools import lru_cache
from importlib import resources
from typing import Any

from sqlalchemy.orm import Session

from onceonly.accounts.actor import Actor
from onceonly.accounts.service import record
from onceonly.catalog import repository as repo
from onceonly.catalog.models import Code, CodeList, CodeMapping
from onceonly.catalog.orgs import get_org
from onceonly.catalog.schemas import CodeListIn, CodeListOut, MappingIn
from onceonly.errors import Conflict, NotFound, ValidationFailed
from onceonly.kit.divisions import SOURCE as DIVISIONS_SOURCE
from onceonly.kit.divisions import all_divisions

DIVISIONS = "GB/T 2260"


@lru_cache(maxsize=1)
def _shipped() -> list[dict[str, Any]]:
    text = resources.files("onceonly.catalog").joinpath("data/standard_code_lists.json").read_text("utf-8")
    return list(json.loads(text)["lists"])


def load_standard_code_lists(session: Session) -> None:
    """Create the shipped standard lists once; later calls leave them alone."""
    for spec in _shipped():
        if repo.code_list_by_code(session, spec["code"]) is None:
            cl = CodeList(code=spec["code"], name=spec["name"], source=spec["source"],
                          source_date=spec["source_date"], standard=True)
            session.add(cl)
            session.flush()
            session.add_all(Code(code_list_id=cl.id, code=c, name=n) for c, n in spec["codes"])
    if repo.code_list_by_code(session, DIVISIONS) is None:
        cl = CodeList(code=DIVISIONS, name="中华人民共和国行政区划代码（县级及以上）", source=DIVISIONS_SOURCE,
                      source_date="2023", standard=True)
        session.add(cl)
        session.flush()
        session.add_all(Code(code_list_id=cl.id, code=d.code, name=d.name, current=d.current)
                        for d in all_divisions().values())
    session.flush()


def get_code_list(session: Session, code: str) -> CodeList:
    cl = repo.code_list_by_code(session, code)
    if cl is None:
        raise NotFound(f"code list {code} not found", field="code_list")
    return cl


def create_code_list(session: Session, actor: Actor, data: CodeListIn) -> CodeList:
    """A department-defined list; standard lists only come with the platform."""
    org = get_org(session, data.org) if data.org else None
    if org is None:
        actor.require("catalog.manage")
    else:
        actor.require("codelist.manage", org.id)
    if repo.code_list_by_code(session, data.code):
        raise Conflict(f"code list {data.code} already exists", field="code")
    cl = CodeList(code=data.code, name=data.name, source=data.source, source_date=data.source_date,
                  standard=False, org_id=org.id if org else None)
    session.add(cl)
    session.flush()
    _add_codes(session, cl, data.codes)
    record(session, actor, "codelist.create", f"codelist:{data.code}", {"size": len(data.codes)})
    return cl


def _add_codes(session: Session, cl: CodeList, pairs: list[tuple[str, str]]) -> None:
    seen: set[str] = set()
    for i, (code, name) in enumerate(pairs):
        code = code.strip()
        if not code or code in seen:
            raise ValidationFailed(f"codes[{i}]: empty or repeated code {code!r}", field=f"codes[{i}]")
        seen.add(code)
        session.add(Code(code_list_id=cl.id, code=code, name=name.strip()))
    session.flush()


def add_codes(session: Session, actor: Actor, cl: CodeList, pairs: list[tuple[str, str]]) -> None:
    if cl.standard:
        raise Conflict(f"{cl.code} is a shipped standard list and cannot be edited", field="code_list")
    if cl.org_id is None:
        actor.require("catalog.manage")
    else:
        actor.require("codelist.manage", cl.org_id)
    existing = {c.code for c in repo.codes_of(session, cl.id)}
    clash = [c for c, _ in pairs if c in existing]
    if clash:
        raise Conflict(f"codes already in {cl.code}: {', '.join(clash[:5])}", field="codes")
    _add_codes(session, cl, pairs)
    record(session, actor, "codelist.add_codes", f"codelist:{cl.code}", {"added": len(pairs)})


def set_mappings(session: Session, actor: Actor, data: MappingIn) -> int:
    """Upsert a department's local → standard mappings; every target must be a current code."""
    org = get_org(session, data.org)
    actor.require("codelist.manage", org.id)
    cl = get_code_list(session, data.code_list)
    valid = codes_set(session, cl.code)
    current = {m.local_code: m for m in repo.mappings(session, org.id, cl.id)}
    for i, entry in enumerate(data.entries):
        local, target = entry.local_code.strip(), entry.standard_code.strip()
        if not local:
            raise ValidationFailed(f"entries[{i}].local_code is empty", field=f"entries[{i}].local_code")
        if target not in valid:
            raise ValidationFailed(f"entries[{i}].standard_code {target!r} is not a code of {cl.code}",
                                   field=f"entries[{i}].standard_code")
        row = current.get(local)
        if row is None:
            row = CodeMapping(org_id=org.id, code_list_id=cl.id, local_code=local)
            session.add(row)
            current[local] = row
        row.standard_code = target
        row.local_name = entry.local_name
    session.flush()
    record(session, actor, "codemapping.set", f"codelist:{cl.code}", {"org": org.code, "entries": len(data.entries)})
    return len(data.entries)


def codes_set(session: Session, code: str, current_only: bool = True) -> set[str]:
    cl = get_code_list(session, code)
    return {c.code for c in repo.codes_of(session, cl.id, current_only=current_only)}


def mapping_dict(session: Session, org_id: int, code: str) -> dict[str, str]:
    """Local code → standard code for one department and list (what ingest applies)."""
    cl = get_code_list(session, code)
    return {m.local_code: m.standard_code for m in repo.mappings(session, org_id, cl.id)}


def code_list_out(cl: CodeList, size: int) -> CodeListOut:
    return CodeListOut(code=cl.code, name=cl.name, source=cl.source, source_date=cl.source_date,
                       standard=cl.standard, org=cl.org.code if cl.org else None, size=size)
