"""Request/response models of the catalog. `ResourceSpec` is the one shape every way in
(API, data package, Excel template, demo) turns a resource description into."""

from __future__ import annotations

import re
from datetime import date, datetime
from typing import Annotated, Any, Generic, TypeVar

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from onceonly.catalog.vocab import (
    CatalogKind,
    Check,
    FieldType,
    OpenType,
    Sensitivity,
    ShareMode,
    ShareType,
    Status,
    UpdateCycle,
)

ALL_MODES: tuple[ShareMode, ...] = ("verify", "query", "api", "bulk")
NAME_RE = re.compile(r"^[a-z][a-z0-9_]{0,47}$")


class OrgIn(BaseModel):
    code: str = Field(description="Unified social credit code (GB 32100)")
    name: str = Field(min_length=1, max_length=200)
    short_name: str | None = Field(default=None, max_length=50)
    parent: str | None = Field(default=None, description="Parent organization's code")
    region: str | None = Field(default=None, description="GB/T 2260 division code")


class OrgOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)
    id: int
    code: str
    name: str
    short_name: str | None
    parent_code: str | None = None
    region: str | None
    number: int


class FieldSpec(BaseModel):
    name: str = Field(description="Column name: lower-case letters, digits, underscore")
    title: str = Field(min_length=1, max_length=100, description="Chinese title (信息项名称)")
    type: FieldType = "string"
    length: int | None = Field(default=None, ge=1, le=65535)
    required: bool = False
    unique: bool = False
    description: str = ""
    sensitivity: Sensitivity = "internal"
    check: Check | None = None
    code_list: str | None = None
    enum: list[str] | None = None
    minimum: float | None = None
    maximum: float | None = None
    pattern: str | None = None

    @field_validator("name")
    @classmethod
    def _name(cls, v: str) -> str:
        if not NAME_RE.match(v):  # a leading letter also keeps names clear of system columns (_version…)
            raise ValueError("must match ^[a-z][a-z0-9_]{0,47}$")
        return v

    @field_validator("pattern")
    @classmethod
    def _pattern(cls, v: str | None) -> str | None:
        if v is not None:
            try:
                re.compile(v)
            except re.error as exc:
                raise ValueError(f"not a valid regular expression: {exc}") from None
        return v


class ResourceSpec(BaseModel):
    name: str = Field(description="Identifier, also the stem of its table name")
    title: str = Field(min_length=1, max_length=200, description="信息资源名称")
    provider: str = Field(description="Provider organization's code (USCC)")
    catalog: str = Field(description="Catalog code, e.g. 101 (basic/人口) or 305 (department)")
    category: str = Field(default="001", pattern=r"^\d{3}$", description="目 within the catalog")
    summary: str = ""
    format: str = Field(default="数据库", max_length=40)
    share_type: ShareType = "conditional"
    share_condition: str | None = None
    share_modes: list[ShareMode] = Field(default_factory=lambda: list(ALL_MODES))
    open_type: OpenType = "closed"
    open_condition: str | None = None
    update_cycle: UpdateCycle = "daily"
    related: list[str] = Field(default_factory=list)
    key_fields: list[str] = Field(min_length=1)
    query_fields: list[str] = Field(default_factory=list)
    fields: list[FieldSpec] = Field(min_length=1)
    rules: list[dict[str, Any]] = Field(
        default_factory=list,
        description='Cross-field rules ingest enforces, e.g. {"rule": "citizen_id_agrees", '
                    '"citizen_id": "citizen_id", "sex": "sex", "birth_date": "birth_date"}',
    )

    @field_validator("name")
    @classmethod
    def _name(cls, v: str) -> str:
        if not NAME_RE.match(v):
            raise ValueError("must match ^[a-z][a-z0-9_]{0,47}$")
        return v

    @model_validator(mode="after")
    def _consistent(self) -> ResourceSpec:
        names = [f.name for f in self.fields]
        dup = {n for n in names if names.count(n) > 1}
        if dup:
            raise ValueError(f"duplicate field names: {', '.join(sorted(dup))}")
        for attr in ("key_fields", "query_fields"):
            missing = [k for k in getattr(self, attr) if k not in names]
            if missing:
                raise ValueError(f"{attr} name unknown fields: {', '.join(missing)}")
        if self.share_type == "none" and self.share_modes:
            self.share_modes = []
        if self.share_type == "conditional" and not self.share_condition:
            raise ValueError("share_condition is required when share_type is conditional")
        if self.open_type == "conditional" and not self.open_condition:
            raise ValueError("open_condition is required when open_type is conditional")
        for f in self.fields:
            if f.name in self.key_fields:
                f.required = True
        for i, rule in enumerate(self.rules):
            _check_rule(i, rule, names)
        return self


CROSS_RULES = {
    "citizen_id_agrees": {"citizen_id": True, "sex": False, "birth_date": False},
    "not_before": {"field": True, "other": True},  # e.g. an end date not before its start date
}


def _check_rule(i: int, rule: dict[str, Any], names: list[str]) -> None:
    """A cross-field rule names a known kind and only fields of this resource."""
    kind = rule.get("rule")
    if kind not in CROSS_RULES:
        raise ValueError(f"rules[{i}].rule must be one of {', '.join(CROSS_RULES)}")
    params = CROSS_RULES[kind]
    for key, value in rule.items():
        if key == "rule":
            continue
        if key not in params:
            raise ValueError(f"rules[{i}].{key} is not a parameter of {kind}")
        if value is not None and value not in names:
            raise ValueError(f"rules[{i}].{key} names unknown field {value!r}")
    for key, needed in params.items():
        if needed and not rule.get(key):
            raise ValueError(f"rules[{i}].{key} is required for {kind}")


class ResourcePatch(BaseModel):
    """Edits allowed on a draft; on a published resource only `fields` may grow (nullable)."""

    title: str | None = None
    summary: str | None = None
    format: str | None = Field(default=None, max_length=40)
    share_type: ShareType | None = None
    share_condition: str | None = None
    share_modes: list[ShareMode] | None = None
    open_type: OpenType | None = None
    open_condition: str | None = None
    update_cycle: UpdateCycle | None = None
    related: list[str] | None = None
    key_fields: list[str] | None = None
    query_fields: list[str] | None = None
    rules: list[dict[str, Any]] | None = None
    fields: list[FieldSpec] | None = None


class FieldOut(FieldSpec):
    model_config = ConfigDict(from_attributes=True)


class ResourceOut(BaseModel):
    id: int
    name: str
    version: int
    code: str
    title: str
    provider: str
    provider_name: str
    catalog: str
    category: str
    summary: str
    format: str
    share_type: str
    share_condition: str | None
    share_modes: list[str]
    open_type: str
    open_condition: str | None
    update_cycle: str
    publish_date: date | None
    related: list[str]
    key_fields: list[str]
    query_fields: list[str]
    rules: list[dict[str, Any]] = []
    status: Status
    table_name: str | None
    previous_id: int | None
    updated_at: datetime
    fields: list[FieldSpec]


class CategoryOut(BaseModel):
    code: str
    name: str
    resource_count: int = 0


class CatalogIn(BaseModel):
    kind: CatalogKind
    item: str = Field(pattern=r"^\d{2}$", description="项: 2 digits")
    name: str = Field(min_length=1, max_length=100)
    org: str | None = Field(default=None, description="Owning organization (department catalogs)")
    description: str | None = None


class CategoryIn(BaseModel):
    code: str = Field(pattern=r"^\d{3}$")
    name: str = Field(min_length=1, max_length=100)


class CatalogOut(BaseModel):
    code: str
    kind: str
    name: str
    org: str | None
    description: str | None
    categories: list[CategoryOut]


class CodeListIn(BaseModel):
    code: str = Field(pattern=r"^[A-Za-z0-9_./ -]{1,40}$")
    name: str = Field(min_length=1, max_length=100)
    source: str = ""
    source_date: str | None = Field(default=None, max_length=20)
    org: str | None = None
    codes: list[tuple[Annotated[str, Field(max_length=40)], Annotated[str, Field(max_length=200)]]] = Field(
        default_factory=list, description="[code, name] pairs")


class CodeListOut(BaseModel):
    code: str
    name: str
    source: str
    source_date: str | None
    standard: bool
    org: str | None
    size: int


class CodeOut(BaseModel):
    code: str
    name: str
    current: bool


class MappingEntry(BaseModel):
    local_code: str = Field(max_length=100)
    standard_code: str = Field(max_length=40)
    local_name: str | None = Field(default=None, max_length=200)


class MappingIn(BaseModel):
    org: str = Field(max_length=18)
    code_list: str = Field(max_length=40)
    entries: list[MappingEntry]


class MappingOut(BaseModel):
    org: str
    code_list: str
    local_code: str
    local_name: str | None
    standard_code: str


T = TypeVar("T")


class Page(BaseModel, Generic[T]):
    items: list[T]
    total: int
    offset: int = 0
    limit: int = 50
