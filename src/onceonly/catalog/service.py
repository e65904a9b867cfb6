"""Resource rules: create and edit drafts, publish (which makes the store table), retire,
and versions. A published schema only grows by nullable fields; anything else is a new version."""

from __future__ import annotations

from datetime import date
from typing import TYPE_CHECKING, Any

from pydantic import ValidationError as PydanticValidationError
from sqlalchemy.orm import Session

from onceonly.accounts.actor import Actor
from onceonly.accounts.service import record
from onceonly.catalog import repository as repo
from onceonly.catalog.models import Category, Field, Resource
from onceonly.catalog.orgs import get_catalog, get_org
from onceonly.catalog.schemas import FieldSpec, ResourceOut, ResourcePatch, ResourceSpec
from onceonly.errors import Conflict, NotFound, PermissionDenied, SchemaChangeRefused, ValidationFailed

if TYPE_CHECKING:
    from onceonly.store.service import Change

# Attributes of a field that shape the table or the validation of its rows.
SCHEMA_ATTRS = ("type", "length", "required", "unique", "check", "code_list", "enum", "minimum", "maximum",
                "pattern")
METADATA_ATTRS = ("title", "summary", "format", "share_type", "share_condition", "share_modes", "open_type",
                  "open_condition", "update_cycle", "related", "rules")
CONSTRAINT_KEYS = ("enum", "minimum", "maximum", "pattern")


def get_resource(session: Session, ref: str | int, *, editing: bool = False) -> Resource:
    """By id, code (newest published version) or name (newest published, else newest draft).
    `editing` prefers the open draft version, which is what edits and publishing act on."""
    res: Resource | None
    if isinstance(ref, int) or (isinstance(ref, str) and ref.isascii() and ref.isdigit() and len(ref) <= 18):
        res = repo.resource_by_id(session, int(ref))
    elif editing and (draft := repo.draft_version(session, ref)) is not None:
        res = draft
    elif "/" in ref:
        res = repo.resource_by_code(session, ref)
    else:
        res = repo.latest_resource_by_name(session, ref)
    if res is None:
        raise NotFound(f"resource {ref} not found", field="resource")
    return res


def _check_code_lists(session: Session, fields: list[FieldSpec]) -> None:
    for i, f in enumerate(fields):
        if f.code_list and repo.code_list_by_code(session, f.code_list) is None:
            raise ValidationFailed(f"fields[{i}].code_list: unknown code list {f.code_list}",
                                   field=f"fields[{i}].code_list")


def _field_row(spec: FieldSpec, position: int) -> Field:
    constraints = {k: getattr(spec, k) for k in CONSTRAINT_KEYS if getattr(spec, k) is not None}
    return Field(position=position, name=spec.name, title=spec.title, type=spec.type, length=spec.length,
                 required=spec.required, unique=spec.unique, description=spec.description,
                 sensitivity=spec.sensitivity, check=spec.check, code_list=spec.code_list,
                 constraints=constraints)


def field_spec(field: Field) -> FieldSpec:
    c = field.constraints or {}
    return FieldSpec(name=field.name, title=field.title, type=field.type,
                     length=field.length, required=field.required, unique=field.unique,
                     description=field.description, sensitivity=field.sensitivity,
                     check=field.check, code_list=field.code_list,
                     enum=c.get("enum"), minimum=c.get("minimum"), maximum=c.get("maximum"),
                     pattern=c.get("pattern"))


def _category_for(session: Session, spec: ResourceSpec) -> Category:
    catalog = get_catalog(session, spec.catalog)
    cat = repo.category(session, catalog.id, spec.category)
    if cat is None:
        raise ValidationFailed(f"category {spec.category} not found in catalog {spec.catalog}", field="category")
    return cat


def _claim_code(session: Session, category: Category, wanted: str | None) -> str:
    prefix = f"{category.catalog.code}{category.code}/"
    if wanted and wanted.startswith(prefix) and wanted[len(prefix):].isdigit() and len(wanted) == len(prefix) + 6 \
            and repo.resource_by_code(session, wanted) is None:
        category.next_sequence = max(category.next_sequence, int(wanted[len(prefix):]) + 1)
        return wanted
    code = f"{prefix}{category.next_sequence:06d}"
    category.next_sequence += 1
    return code


def create_resource(session: Session, actor: Actor, spec: ResourceSpec, code: str | None = None) -> Resource:
    """A new resource as a draft, with its code numbered within its category. An import may
    keep the code it was exported with, when it fits the category and is free."""
    provider = get_org(session, spec.provider)
    actor.require("resource.edit", provider.id)
    if repo.versions_of(session, spec.name):
        raise Conflict(f"resource {spec.name} already exists; edit it or make a new version", field="name")
    category = _category_for(session, spec)
    if category.catalog.kind == "department" and category.catalog.org_id != provider.id:
        raise ValidationFailed(f"catalog {spec.catalog} belongs to another department", field="catalog")
    _check_code_lists(session, spec.fields)
    code = _claim_code(session, category, code)
    res = Resource(
        name=spec.name, version=1, code=code, provider_id=provider.id, category_id=category.id,
        key_fields=list(spec.key_fields), query_fields=list(spec.query_fields), status="draft",
        fields=[_field_row(f, i) for i, f in enumerate(spec.fields)],
        **{a: getattr(spec, a) for a in METADATA_ATTRS},
    )
    session.add(res)
    session.flush()
    record(session, actor, "resource.create", f"resource:{code}", {"name": spec.name})
    return res


def update_resource(session: Session, actor: Actor, res: Resource, patch: ResourcePatch) -> Resource:
    """Edit a draft freely; on a published resource allow metadata, new nullable fields and
    new query fields only, and say why anything else is refused."""
    actor.require("resource.edit", res.provider_id)
    if res.status == "retired":
        raise Conflict(f"resource {res.code} v{res.version} is retired", field="status")
    changes: dict[str, Any] = patch.model_dump(exclude_unset=True)
    if res.status == "published":
        _check_published_change(res, patch)
    if patch.fields is not None:
        _check_code_lists(session, patch.fields)
    merged = _merged_spec(res, changes)  # re-check the whole before touching the row
    for attr in METADATA_ATTRS:  # as validated (e.g. share_type none clears share_modes)
        if getattr(res, attr) != getattr(merged, attr):
            setattr(res, attr, getattr(merged, attr))
    new_fields: list[FieldSpec] = []
    if res.status == "draft":
        res.fields.clear()
        session.flush()
        res.fields.extend(_field_row(f, i) for i, f in enumerate(merged.fields))
        res.key_fields = list(merged.key_fields)
    elif patch.fields is not None:
        by_name = {f.name: f for f in res.fields}
        for f in merged.fields:
            if f.name in by_name:
                by_name[f.name].title, by_name[f.name].description = f.title, f.description
                by_name[f.name].sensitivity = f.sensitivity
            else:
                new_fields.append(f)
                res.fields.append(_field_row(f, len(res.fields)))
    added_queries = [q for q in merged.query_fields if q not in res.query_fields]
    res.query_fields = list(merged.query_fields)
    session.flush()
    if res.status == "published" and (new_fields or added_queries):
        from onceonly.store.service import add_columns

        add_columns(session, res, [f.name for f in new_fields], added_queries)
    record(session, actor, "resource.update", f"resource:{res.code}", {"changed": sorted(changes)})
    return res


def _merged_spec(res: Resource, changes: dict[str, Any]) -> ResourceSpec:
    """The resource with the changes applied, validated as a whole; a rule that fails (e.g. a key
    field that is not among the fields) is a ValidationFailed naming it, not an internal error."""
    try:
        return ResourceSpec.model_validate({**spec_of(res).model_dump(), **changes})
    except PydanticValidationError as exc:
        err = exc.errors()[0]
        where = ".".join(str(p) for p in err["loc"]) or "body"
        raise ValidationFailed(f"{where}: {err['msg']}", field=where) from None


def _check_published_change(res: Resource, patch: ResourcePatch) -> None:
    def refuse(what: str, field: str) -> None:
        raise SchemaChangeRefused(
            f"resource {res.code} is published: {what}; only nullable fields may be added — "
            "make a new version for this change", field=field)

    if patch.key_fields is not None and list(patch.key_fields) != list(res.key_fields):
        refuse("its key fields cannot change", "key_fields")
    if patch.query_fields is not None and not set(res.query_fields) <= set(patch.query_fields):
        refuse("query fields cannot be removed", "query_fields")
    if patch.fields is None:
        return
    current = {f.name: field_spec(f) for f in res.fields}
    given = {f.name: f for f in patch.fields}
    for name in current:
        if name not in given:
            refuse(f"field {name} cannot be removed", f"fields.{name}")
    for i, f in enumerate(patch.fields):
        old = current.get(f.name)
        if old is None:
            if f.required or f.unique:
                refuse(f"new field {f.name} must be nullable and not unique", f"fields[{i}].required")
            continue
        if f.name in res.key_fields and not f.required:  # key fields are required implicitly
            f = f.model_copy(update={"required": True})
        for attr in SCHEMA_ATTRS:
            if getattr(old, attr) != getattr(f, attr):
                refuse(f"field {f.name}.{attr} cannot change", f"fields[{i}].{attr}")


def publish_resource(session: Session, actor: Actor, res: Resource) -> Resource:
    """Draft → published: create its typed table; the previous version, if any, retires."""
    actor.require("resource.publish", res.provider_id)
    if res.status != "draft":
        raise Conflict(f"resource {res.code} v{res.version} is {res.status}, only a draft can be published",
                       field="status")
    from onceonly.store.service import create_table

    create_table(session, res)
    res.status = "published"
    res.publish_date = date.today()
    if res.previous_id:
        prev = repo.resource_by_id(session, res.previous_id)
        if prev and prev.status == "published":
            prev.status = "retired"
    session.flush()
    record(session, actor, "resource.publish", f"resource:{res.code}",
           {"version": res.version, "table": res.table_name})
    return res


def retire_resource(session: Session, actor: Actor, res: Resource) -> Resource:
    actor.require("resource.publish", res.provider_id)
    if res.status != "published":
        raise Conflict(f"resource {res.code} v{res.version} is {res.status}, only a published one retires",
                       field="status")
    res.status = "retired"
    session.flush()
    record(session, actor, "resource.retire", f"resource:{res.code}", {"version": res.version})
    return res


def new_version(session: Session, actor: Actor, res: Resource, spec: ResourceSpec | None = None) -> Resource:
    """A draft copy (or the given spec) as version n+1, keeping the resource's code."""
    actor.require("resource.edit", res.provider_id)
    versions = repo.versions_of(session, res.name)
    if any(v.status == "draft" for v in versions):
        raise Conflict(f"resource {res.name} already has a draft version", field="version")
    base = spec or spec_of(res)
    if base.name != res.name:
        raise ValidationFailed("a new version keeps the resource's name", field="name")
    current = spec_of(res)
    for attr in ("provider", "catalog", "category"):
        if getattr(base, attr) != getattr(current, attr):
            raise ValidationFailed(f"a new version keeps the resource's {attr} ({getattr(current, attr)})", field=attr)
    _check_code_lists(session, base.fields)
    latest = versions[-1]
    draft = Resource(
        name=res.name, version=latest.version + 1, code=res.code, provider_id=res.provider_id,
        category_id=res.category_id, key_fields=list(base.key_fields), query_fields=list(base.query_fields),
        status="draft", previous_id=latest.id,
        fields=[_field_row(f, i) for i, f in enumerate(base.fields)],
        **{a: getattr(base, a) for a in METADATA_ATTRS},
    )
    session.add(draft)
    session.flush()
    record(session, actor, "resource.version", f"resource:{res.code}", {"version": draft.version})
    return draft


def read_changes(session: Session, actor: Actor, res: Resource, since: int, limit: int) -> list[Change]:
    """Change-log keys are often citizen IDs: only the provider's own stewards and admins read
    them here (other departments get changes through exchange grants), and each read is recorded."""
    if actor.via != "cli" and not (actor.org_id == res.provider_id and actor.can("resource.edit", res.provider_id)):
        raise PermissionDenied("only the provider's stewards and department admins read its change log")
    from onceonly.store.service import changes_since

    rows = changes_since(session, res, since, limit)
    record(session, actor, "resource.changes.read", f"resource:{res.code}", {"since": since, "rows": len(rows)})
    return rows


def spec_of(res: Resource) -> ResourceSpec:
    return ResourceSpec(
        name=res.name, provider=res.provider.code, catalog=res.category.catalog.code,
        category=res.category.code, key_fields=list(res.key_fields), query_fields=list(res.query_fields),
        fields=[field_spec(f) for f in res.fields],
        **{a: getattr(res, a) for a in METADATA_ATTRS},
    )


def resource_out(res: Resource) -> ResourceOut:
    return ResourceOut(
        id=res.id, name=res.name, version=res.version, code=res.code, title=res.title,
        provider=res.provider.code, provider_name=res.provider.name, catalog=res.category.catalog.code,
        category=res.category.code, summary=res.summary, format=res.format, share_type=res.share_type,
        share_condition=res.share_condition, share_modes=list(res.share_modes), open_type=res.open_type,
        open_condition=res.open_condition, update_cycle=res.update_cycle, publish_date=res.publish_date,
        related=list(res.related), key_fields=list(res.key_fields), query_fields=list(res.query_fields),
        rules=list(res.rules or []), status=res.status,
        table_name=res.table_name, previous_id=res.previous_id, updated_at=res.updated_at,
        fields=[field_spec(f) for f in res.fields],
    )
