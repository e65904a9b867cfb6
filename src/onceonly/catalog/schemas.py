"""Request/response models of the catalog. `ResourceSpec` is the one shape every way in
(API, data package, Excel template, demo) turns a resource description into."""

from __future__ import annotations

import re
from datetime import date, datetime
from typing import Any, Generic, TypeVar

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
SYSTEM_COLUMNS = {"_version", "_created_at", "_updated_at", "_batch_id", "_deleted"}


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
        if not NAME_RE.match(v) or v in SYSTEM_COLUMNS:
            raise ValueError("must match ^[a-z][a-z0-9_]{0,47}$ and not be a system column")
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
        return self


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
    codes: list[tuple[str, str]] = Field(default_factory=list, description="[code, name] pairs")


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


class MappingIn(BaseModel):
    org: str
    code_list: str
    entries: list[dict[str, Any]] = Field(
        description="Objects with local_code, standard_code and optional local_name"
    )


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
