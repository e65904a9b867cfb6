"""The catalog as a Frictionless Data Package, and the import core the Excel template shares.

Every way in turns each resource description into a `Draft`: the input of a `ResourceSpec` plus
where each value came from (a JSON path here, a sheet/row/column in a workbook). `import_drafts`
then checks everything — shape, vocabularies, organizations, catalogs, code lists, what may change
on a published resource — and only when no problem is left does it write, so the caller's
transaction gets all of an import or none of it. Services flush; the caller commits.

Format: a v1 Data Package (v2 readers accept v1 descriptors) with one `tabular-data-resource` per
resource. Catalog metadata sits under `onceonly` on each resource and field; Table Schema
`constraints` and `primaryKey` carry what the standard can say. Rows are not exported yet, so each
resource inlines `data` holding only its header row: the descriptor stays self-contained (the API
returns it alone) and passes `frictionless validate` (an empty `data` array is a source error
there, and a `path` to a missing file a scheme error).
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, get_args

from pydantic import ValidationError
from sqlalchemy.orm import Session

from onceonly.accounts.actor import Actor
from onceonly.catalog import orgs, service
from onceonly.catalog import repository as repo
from onceonly.catalog.models import Catalog, Resource
from onceonly.catalog.schemas import FieldSpec, ResourcePatch, ResourceSpec
from onceonly.catalog.vocab import LABELS, FieldType
from onceonly.errors import PermissionDenied, ValidationFailed

FIELD_TYPES: tuple[str, ...] = get_args(FieldType)
# Table Schema types we cannot store yet; named separately so the message says "unsupported", not "unknown".
OTHER_TABLE_SCHEMA_TYPES = {"object", "array", "list", "time", "year", "yearmonth", "duration", "geopoint",
                            "geojson", "any"}
# Which of our per-field rules the Table Schema standard can express for a type (what frictionless accepts);
# the others travel under the field's `onceonly` object so nothing is lost and validators stay happy.
STANDARD_RULES: dict[str, set[str]] = {"string": {"length", "pattern"}, "integer": {"minimum", "maximum"},
                                       "number": {"minimum", "maximum"}}
CONSTRAINT_NAMES = {"length": "maxLength", "minimum": "minimum", "maximum": "maximum", "pattern": "pattern"}
FIELD_CONSTRAINTS = {"required", "unique", "maxLength", "enum", "minimum", "maximum", "pattern"}
FIELD_EXTRAS = {"check", "code_list", "sensitivity", "length", "minimum", "maximum", "pattern"}
RESOURCE_KEYS = ("provider", "catalog", "category", "format", "share_type", "share_condition", "share_modes",
                 "open_type", "open_condition", "update_cycle", "related", "query_fields", "rules")
# Written on export for people and tools; import derives them (code, version, status) or reads them elsewhere.
RESOURCE_INFO = {"provider_name", "category_name", "summary", "code", "version", "status"}
PACKAGE_NAME = "onceonly-catalog"
Loc = tuple[str | int, ...]
Action = Literal["created", "updated", "new_version", "unchanged"]


# -- the shared import core -------------------------------------------------------------------

@dataclass
class Draft:
    """One resource description on its way to a `ResourceSpec`, remembering where each value came
    from so every problem names the place the user has to fix."""

    origin: str
    json_paths: bool = True
    data: dict[str, Any] = field(default_factory=dict)
    where: dict[Loc, str] = field(default_factory=dict)
    category_name: str | None = None
    code: str | None = None
    problems: list[dict[str, str]] = field(default_factory=list)
    reported: set[Loc] = field(default_factory=set)

    def put(self, loc: Loc, value: Any, where: str) -> None:
        self.where[loc] = where
        target: Any = self.data
        for part in loc[:-1]:
            target = target[part]
        target[loc[-1]] = value

    def locate(self, loc: Loc) -> str:
        """The most specific known place for loc; JSON paths get the rest of loc appended."""
        for cut in range(len(loc), 0, -1):
            if loc[:cut] in self.where:
                base, rest = self.where[loc[:cut]], loc[cut:]
                break
        else:
            base, rest = self.origin, loc
        if self.json_paths:
            base += "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in rest)
        return base

    def problem(self, loc: Loc, message: str, where: str | None = None) -> None:
        self.reported.add(loc)
        self.problems.append({"path": where or self.locate(loc), "message": message})


@dataclass
class Imported:
    """What an import did with one resource."""

    resource: Resource
    action: Action


@dataclass
class _Plan:
    draft: Draft
    spec: ResourceSpec
    action: Action
    target: Resource | None
    catalog: Catalog
    provider_id: int
    new_category: str | None = None


def normalize_vocab(kind: str, value: Any) -> str | None:
    """An English code or a Chinese label (whole, or the part before its parenthesis) → the code."""
    if not isinstance(value, str):
        return None
    text = value.strip()
    labels = LABELS[kind]
    if text.lower() in labels:
        return text.lower()
    for code, label in labels.items():
        if text in (label, label.split("（")[0].strip()):
            return code
    return None


def unknown_type_message(value: Any) -> str:
    if isinstance(value, str) and value.strip().lower() in OTHER_TABLE_SCHEMA_TYPES:
        return f"type {value!r} is not supported; use one of {', '.join(FIELD_TYPES)}"
    return f"unknown type {value!r}; use one of {', '.join(FIELD_TYPES)}"


def fail(problems: list[dict[str, str]]) -> ValidationFailed:
    """One error carrying every problem; its message is one line (the CLI prints it as is)."""
    first = problems[0]
    more = f" (and {len(problems) - 1} more problems)" if len(problems) > 1 else ""
    return ValidationFailed(f"{first['path']}: {first['message']}{more}", field=first["path"], errors=problems)


def _pydantic_message(err: Any) -> str:
    msg = str(err["msg"]).removeprefix("Value error, ")
    if err["type"] == "missing":
        return "is required"
    if err["type"] in ("literal_error", "string_pattern_mismatch", "string_too_long", "string_too_short",
                       "value_error", "int_parsing", "float_parsing", "bool_parsing", "string_type"):
        shown = repr(err.get("input"))
        return f"{msg} (got {shown[:60]})"
    return msg


def _model_problems(draft: Draft) -> bool:
    """Checks the spec's model validator makes, done here so each names its exact place."""
    data, found = draft.data, False
    given = data.get("fields")
    fields: list[Any] = given if isinstance(given, list) else []
    seen: dict[str, int] = {}
    for j, f in enumerate(fields):
        name = f.get("name") if isinstance(f, dict) else None
        if isinstance(name, str) and name in seen:
            draft.problem(("fields", j, "name"), f"duplicate field name {name!r} (also field {seen[name] + 1})")
            found = True
        elif isinstance(name, str):
            seen[name] = j
    for attr in ("key_fields", "query_fields"):
        names = data.get(attr)
        if isinstance(names, list) and seen:  # with no usable field, that is the one problem worth naming
            for k, n in enumerate(names):
                if isinstance(n, str) and n not in seen:
                    draft.problem((attr, k), f"names field {n!r}, which is not among the fields")
                    found = True
    for kind, cond in (("share_type", "share_condition"), ("open_type", "open_condition")):
        default = "conditional" if kind == "share_type" else "closed"
        if data.get(kind, default) == "conditional" and not data.get(cond):
            draft.problem((cond,), f"is required when {kind} is conditional")
            found = True
    return found


def _validate(draft: Draft) -> ResourceSpec | None:
    if () in draft.reported:
        return None
    model_found = _model_problems(draft)
    try:
        return ResourceSpec.model_validate(draft.data)
    except ValidationError as exc:
        for err in exc.errors():
            loc: Loc = tuple(err["loc"])
            if any(loc[: len(r)] == r for r in draft.reported if r):
                continue
            if not loc and model_found:
                continue
            draft.problem(loc, _pydantic_message(err))
    return None


def _decide(session: Session, spec: ResourceSpec) -> tuple[Action, Resource | None, ResourceSpec]:
    """created / updated / new_version / unchanged, against the newest version that is not retired."""
    versions = list(repo.versions_of(session, spec.name))
    if not versions:
        return "created", None, spec
    live = [v for v in versions if v.status != "retired"]
    if not live:
        return "new_version", versions[-1], spec
    target = live[-1]
    current = service.spec_of(target)
    if target.status == "draft":
        return ("unchanged" if current == spec else "updated"), target, spec
    merged = _published_merge(current, spec)
    if merged is None:
        return "new_version", target, spec
    return ("unchanged" if merged == current else "updated"), target, merged


def _published_merge(current: ResourceSpec, spec: ResourceSpec) -> ResourceSpec | None:
    """The spec as an in-place edit of a published resource (metadata, new nullable fields kept after
    the existing ones, more query fields), or None when only a new version can carry it."""
    if list(spec.key_fields) != list(current.key_fields) or not set(current.query_fields) <= set(spec.query_fields):
        return None
    given = {f.name: f for f in spec.fields}
    for old in current.fields:
        new = given.get(old.name)
        if new is None or any(getattr(old, a) != getattr(new, a) for a in service.SCHEMA_ATTRS):
            return None
    known = {f.name for f in current.fields}
    added = [f for f in spec.fields if f.name not in known]
    if any(f.required or f.unique for f in added):
        return None
    return spec.model_copy(update={"fields": [given[f.name] for f in current.fields] + added})


def _plan_one(session: Session, draft: Draft, spec: ResourceSpec) -> _Plan | None:
    before = len(draft.problems)
    provider = repo.org_by_code(session, spec.provider.strip().upper())
    if provider is None:
        draft.problem(("provider",), f"organization {spec.provider} not found")
    catalog = repo.catalog_by_code(session, spec.catalog)
    new_category = None
    if catalog is None:
        draft.problem(("catalog",), f"catalog {spec.catalog} not found")
    else:
        if provider is not None and catalog.kind == "department" and catalog.org_id != provider.id:
            owner = catalog.org.code if catalog.org else "another department"
            draft.problem(("catalog",), f"catalog {spec.catalog} belongs to {owner}, not to provider {provider.code}")
        if repo.category(session, catalog.id, spec.category) is None:
            if draft.category_name:
                new_category = draft.category_name
            else:
                draft.problem(("category",), f"category {spec.category} not found in catalog {spec.catalog}; "
                              "give its name (category_name / 分类名称) to create it")
    for j, f in enumerate(spec.fields):
        if f.code_list and repo.code_list_by_code(session, f.code_list) is None:
            draft.problem(("fields", j, "code_list"), f"unknown code list {f.code_list!r}")
    if len(draft.problems) > before or provider is None or catalog is None:
        return None
    spec = spec.model_copy(update={"provider": provider.code})
    action, target, spec = _decide(session, spec)
    if target is not None:
        current = service.spec_of(target)
        for attr in ("provider", "catalog", "category"):
            if getattr(current, attr) != getattr(spec, attr):
                draft.problem((attr,), f"resource {spec.name} has {attr} {getattr(current, attr)}; "
                              f"an import cannot move it to {getattr(spec, attr)}")
        if len(draft.problems) > before:
            return None
    return _Plan(draft, spec, action, target, catalog, provider.id, new_category)


def plan_import(session: Session, actor: Actor, drafts: Sequence[Draft],
                problems: Iterable[dict[str, str]] = ()) -> list[_Plan]:
    """Check every draft and decide what to do with it; raise with all problems, having written nothing."""
    found = list(problems)
    plans: list[_Plan] = []
    names: dict[str, str] = {}
    for draft in drafts:
        spec = _validate(draft)
        if spec is not None:
            if spec.name in names:
                draft.problem(("name",), f"resource {spec.name} is described twice (also at {names[spec.name]})")
            else:
                names[spec.name] = draft.locate(("name",))
                plan = _plan_one(session, draft, spec)
                if plan is not None:
                    plans.append(plan)
        found.extend(draft.problems)
    if not drafts and not found:
        found.append({"path": "resources", "message": "describes no resource"})
    if found:
        raise fail(found)
    for plan in plans:
        if not actor.can("resource.edit", plan.provider_id):
            where = plan.draft.locate(("provider",))
            raise PermissionDenied(f"{where}: role {actor.role} may not edit resources of {plan.spec.provider}",
                                   field=where)
        # A department's steward may add categories to its own catalog; shared catalogs are the platform's.
        if plan.new_category and plan.catalog.kind != "department" and not actor.can("catalog.manage"):
            where = plan.draft.locate(("category",))
            raise PermissionDenied(f"{where}: role {actor.role} may not add categories to catalog "
                                   f"{plan.catalog.code}", field=where)
    return plans


def apply_import(session: Session, actor: Actor, plans: Sequence[_Plan]) -> list[Imported]:
    """Write the checked plans through the catalog services (which flush, never commit)."""
    done: list[Imported] = []
    for plan in plans:
        spec, res = plan.spec, plan.target
        if plan.new_category:
            orgs.ensure_category(session, plan.catalog, spec.category, plan.new_category)
        if plan.action == "created":
            res = service.create_resource(session, actor, spec, code=plan.draft.code)
        elif plan.action == "new_version":
            assert res is not None
            res = service.new_version(session, actor, res, spec)
        elif plan.action == "updated":
            assert res is not None
            patch = ResourcePatch(key_fields=spec.key_fields, query_fields=spec.query_fields, fields=spec.fields,
                                  **{a: getattr(spec, a) for a in service.METADATA_ATTRS})
            res = service.update_resource(session, actor, res, patch)
        assert res is not None
        done.append(Imported(res, plan.action))
    return done


def import_drafts(session: Session, actor: Actor, drafts: Sequence[Draft],
                  problems: Iterable[dict[str, str]] = ()) -> list[Imported]:
    """All or nothing: every draft is checked before the first write."""
    return apply_import(session, actor, plan_import(session, actor, drafts, problems))


# -- descriptor → drafts ----------------------------------------------------------------------

def _scalar_text(value: Any) -> str | None:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str | int | float):
        return value if isinstance(value, str) else json.dumps(value)
    return None


def _field_draft(draft: Draft, j: int, obj: Any, path: str) -> None:
    loc: Loc = ("fields", j)
    draft.where[loc] = path
    if not isinstance(obj, dict):
        draft.problem(loc, "must be an object")
        draft.data["fields"].append({})
        return
    draft.data["fields"].append({})
    for key in ("name", "title", "description"):
        if key in obj:
            draft.put((*loc, key), obj[key], f"{path}.{key}")
    kind = obj.get("type", "string")
    draft.where[(*loc, "type")] = f"{path}.type"
    if kind not in FIELD_TYPES:
        draft.problem((*loc, "type"), unknown_type_message(kind))
    else:
        draft.put((*loc, "type"), kind, f"{path}.type")
    constraints, extras = obj.get("constraints", {}), obj.get("onceonly", {})
    for key, value, allowed, hint in (("constraints", constraints, FIELD_CONSTRAINTS, "constraint"),
                                      ("onceonly", extras, FIELD_EXTRAS, "key")):
        if not isinstance(value, dict):
            draft.problem((*loc, key), "must be an object", f"{path}.{key}")
            return
        for name in value:
            if name not in allowed:
                draft.problem((*loc, key), f"{hint} {name!r} is not supported; use {', '.join(sorted(allowed))}",
                              f"{path}.{key}.{name}")
    for key in ("required", "unique"):
        if key in constraints:
            draft.put((*loc, key), constraints[key], f"{path}.constraints.{key}")
    if "enum" in constraints:
        where = f"{path}.constraints.enum"
        values = constraints["enum"]
        texts = [_scalar_text(v) for v in values] if isinstance(values, list) else None
        if texts is None or any(t is None for t in texts):
            draft.where[(*loc, "enum")] = where
            draft.problem((*loc, "enum"), "must be a list of strings or numbers")
        else:
            draft.put((*loc, "enum"), texts, where)
    for rule, name in CONSTRAINT_NAMES.items():
        given = [(p, src[k]) for p, src, k in ((f"{path}.constraints.{name}", constraints, name),
                                               (f"{path}.onceonly.{rule}", extras, rule)) if k in src]
        if len(given) > 1:
            draft.where[(*loc, rule)] = given[1][0]
            draft.problem((*loc, rule), f"given both as {given[0][0].rsplit('.', 2)[-2]}.{name} and here; keep one")
        elif given:
            where, value = given[0]
            draft.where[(*loc, rule)] = where
            if rule != "pattern" and (isinstance(value, bool) or not isinstance(value, int | float)):
                draft.problem((*loc, rule), f"must be a number (got {value!r})")
            else:
                draft.put((*loc, rule), value, where)
    for key in ("check", "code_list", "sensitivity"):
        if key in extras:
            draft.put((*loc, key), extras[key], f"{path}.onceonly.{key}")


def _resource_draft(i: int, obj: Any) -> Draft:
    base = f"resources[{i}]"
    draft = Draft(origin=base)
    if not isinstance(obj, dict):
        draft.problem((), "must be an object")
        return draft
    for key in ("name", "title"):
        draft.where[(key,)] = f"{base}.{key}"
        if key in obj:
            draft.put((key,), obj[key], f"{base}.{key}")
    meta = obj.get("onceonly", {})
    if not isinstance(meta, dict):
        draft.problem(("onceonly",), "must be an object", f"{base}.onceonly")
        meta = {}
    for key in meta:
        if key not in RESOURCE_KEYS and key not in RESOURCE_INFO:
            draft.problem((key,), f"unknown key {key!r}", f"{base}.onceonly.{key}")
    for key in RESOURCE_KEYS:
        draft.where[(key,)] = f"{base}.onceonly.{key}"
        if key in meta:
            draft.put((key,), meta[key], f"{base}.onceonly.{key}")
    summaries = [(f"{base}.description", obj["description"])] if "description" in obj else []
    if "summary" in meta:
        summaries.append((f"{base}.onceonly.summary", meta["summary"]))
    if len(summaries) == 2 and summaries[0][1] != summaries[1][1]:
        draft.problem(("summary",), "differs from description; they are the same summary, keep them equal",
                      summaries[1][0])
    elif summaries:
        draft.put(("summary",), summaries[-1][1], summaries[-1][0])
    if isinstance(meta.get("code"), str) and meta["code"].strip():
        draft.code = meta["code"].strip()
    if isinstance(meta.get("category_name"), str) and meta["category_name"].strip():
        draft.category_name = meta["category_name"].strip()
    schema = obj.get("schema")
    draft.where[("fields",)] = f"{base}.schema.fields"
    draft.where[("key_fields",)] = f"{base}.schema.primaryKey"
    if not isinstance(schema, dict):
        message = "must be an inline Table Schema object" if schema is not None else "is required"
        draft.problem(("schema",), message, f"{base}.schema")
        return draft
    primary = schema.get("primaryKey")
    if primary is not None:
        draft.put(("key_fields",), [primary] if isinstance(primary, str) else primary, f"{base}.schema.primaryKey")
    fields = schema.get("fields")
    if not isinstance(fields, list):
        draft.problem(("fields",), "must be a list of fields" if fields is not None else "is required")
        return draft
    draft.data["fields"] = []
    for j, f in enumerate(fields):
        _field_draft(draft, j, f, f"{base}.schema.fields[{j}]")
    return draft


def drafts_from_descriptor(descriptor: Any) -> tuple[list[Draft], list[dict[str, str]]]:
    """Resource drafts of a Data Package descriptor, plus problems of the package as a whole."""
    if not isinstance(descriptor, dict):
        return [], [{"path": "(root)", "message": "a Data Package descriptor must be a JSON object"}]
    resources = descriptor.get("resources")
    if not isinstance(resources, list) or not resources:
        return [], [{"path": "resources", "message": "must be a non-empty list of resources"}]
    return [_resource_draft(i, r) for i, r in enumerate(resources)], []


def read_descriptor(path: Path) -> Any:
    """Parse datapackage.json (or the one inside a directory); bad JSON names its line and column."""
    if path.is_dir():
        path = path / "datapackage.json"
    raw = path.read_bytes()
    try:
        return json.loads(raw.decode("utf-8-sig"))
    except UnicodeDecodeError:
        raise ValidationFailed(f"{path.name} is not UTF-8 text; a Data Package descriptor is UTF-8 JSON",
                               field="(root)") from None
    except json.JSONDecodeError as exc:
        where = f"line {exc.lineno} column {exc.colno}"
        raise ValidationFailed(f"{path.name} is not valid JSON: {exc.msg} at {where}", field=where,
                               errors=[{"path": where, "message": exc.msg}]) from None


def import_descriptor(session: Session, actor: Actor, descriptor: Any) -> list[Imported]:
    drafts, problems = drafts_from_descriptor(descriptor)
    return import_drafts(session, actor, drafts, problems)


def import_datapackage(session: Session, actor: Actor, path: Path) -> list[Resource]:
    """Import a datapackage.json all or nothing (the caller's transaction commits)."""
    return [i.resource for i in import_descriptor(session, actor, read_descriptor(path))]


# -- catalog → descriptor ---------------------------------------------------------------------

def _number(value: float, kind: str) -> int | float:
    return int(value) if kind == "integer" and float(value).is_integer() else value


def field_descriptor(f: FieldSpec) -> dict[str, Any]:
    standard = STANDARD_RULES.get(f.type, set())
    constraints: dict[str, Any] = {}
    extras: dict[str, Any] = {"sensitivity": f.sensitivity}
    if f.required:
        constraints["required"] = True
    if f.unique:
        constraints["unique"] = True
    if f.enum is not None:
        constraints["enum"] = list(f.enum)
    for rule, name in CONSTRAINT_NAMES.items():
        value = getattr(f, rule)
        if value is None:
            continue
        if rule in ("minimum", "maximum"):
            value = _number(value, f.type)
        if rule in standard:
            constraints[name] = value
        else:
            extras[rule] = value
    if f.check:
        extras["check"] = f.check
    if f.code_list:
        extras["code_list"] = f.code_list
    out: dict[str, Any] = {"name": f.name, "title": f.title, "type": f.type}
    if f.description:
        out["description"] = f.description
    if constraints:
        out["constraints"] = constraints
    out["onceonly"] = extras
    return out


def resource_descriptor(res: Resource) -> dict[str, Any]:
    spec = service.spec_of(res)
    meta: dict[str, Any] = {
        "provider": spec.provider, "provider_name": res.provider.name, "catalog": spec.catalog,
        "category": spec.category, "category_name": res.category.name, "summary": spec.summary,
        "format": spec.format, "share_type": spec.share_type, "share_condition": spec.share_condition,
        "share_modes": list(spec.share_modes), "open_type": spec.open_type, "open_condition": spec.open_condition,
        "update_cycle": spec.update_cycle, "related": list(spec.related), "query_fields": list(spec.query_fields),
        "rules": list(spec.rules), "code": res.code, "version": res.version, "status": res.status,
    }
    return {
        "name": spec.name, "title": spec.title, "description": spec.summary,
        "profile": "tabular-data-resource",
        "data": [[f.name for f in spec.fields]],
        "schema": {"fields": [field_descriptor(f) for f in spec.fields], "primaryKey": list(spec.key_fields)},
        "onceonly": {k: v for k, v in meta.items() if v is not None},
    }


def exportable(session: Session) -> list[Resource]:
    """The newest non-retired version of every resource, in code order."""
    newest: dict[str, Resource] = {}
    for res in repo.all_resources(session):
        if res.name not in newest or res.version > newest[res.name].version:
            newest[res.name] = res
    return sorted(newest.values(), key=lambda r: (r.code, r.name))


def build_descriptor(session: Session, resources: Sequence[Resource] | None = None) -> dict[str, Any]:
    chosen = exportable(session) if resources is None else resources
    return {
        "name": PACKAGE_NAME, "title": "政务信息资源目录", "profile": "tabular-data-package",
        "description": "OnceOnly catalog export: resources and their fields (信息项); rows are not included.",
        "resources": [resource_descriptor(r) for r in chosen],
    }


def export_datapackage(session: Session, out_dir: Path) -> Path:
    """Write out_dir/datapackage.json atomically (a crash never leaves half a descriptor)."""
    out_dir.mkdir(parents=True, exist_ok=True)
    target = out_dir / "datapackage.json"
    text = json.dumps(build_descriptor(session), ensure_ascii=False, indent=2) + "\n"
    fd, tmp = tempfile.mkstemp(dir=out_dir, prefix=".datapackage-", suffix=".json")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(text)
        os.replace(tmp, target)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return target
