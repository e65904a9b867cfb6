"""A compact way to write the demo's resource descriptions: field helpers for the recurring
information items (citizen ID, name, USCC, region, …) and `DemoResource`, which turns into the
catalog's `ResourceSpec` once the providing department's code is known."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from onceonly.catalog.schemas import FieldSpec, ResourceSpec
from onceonly.catalog.vocab import OpenType, Sensitivity, ShareMode, ShareType, UpdateCycle

DIVISIONS = "GB/T 2260"
SEX = "GB/T 2261.1"
ETHNIC = "GB 3304"
ALL_MODES: tuple[ShareMode, ...] = ("verify", "query", "api", "bulk")


def text(name: str, title: str, length: int = 50, sens: Sensitivity = "internal", **kw: Any) -> FieldSpec:
    return FieldSpec(name=name, title=title, type="string", length=length, sensitivity=sens, **kw)


def integer(name: str, title: str, sens: Sensitivity = "internal", **kw: Any) -> FieldSpec:
    return FieldSpec(name=name, title=title, type="integer", sensitivity=sens, **kw)


def number(name: str, title: str, sens: Sensitivity = "internal", **kw: Any) -> FieldSpec:
    return FieldSpec(name=name, title=title, type="number", sensitivity=sens, **kw)


def day(name: str, title: str, sens: Sensitivity = "internal", **kw: Any) -> FieldSpec:
    return FieldSpec(name=name, title=title, type="date", sensitivity=sens, **kw)


def flag(name: str, title: str, sens: Sensitivity = "internal", **kw: Any) -> FieldSpec:
    return FieldSpec(name=name, title=title, type="boolean", sensitivity=sens, **kw)


def choice(name: str, title: str, values: tuple[str, ...], sens: Sensitivity = "internal",
           **kw: Any) -> FieldSpec:
    return FieldSpec(name=name, title=title, type="string", length=max(len(v) for v in values),
                     sensitivity=sens, enum=list(values), **kw)


def citizen_id(name: str = "citizen_id", title: str = "公民身份号码", **kw: Any) -> FieldSpec:
    return FieldSpec(name=name, title=title, type="string", length=18, sensitivity="sensitive",
                     check="citizen_id", description="GB 11643 18位公民身份号码", **kw)


def person_name(name: str = "name", title: str = "姓名", **kw: Any) -> FieldSpec:
    return text(name, title, 50, "personal", **kw)


def uscc(name: str = "uscc", title: str = "统一社会信用代码", **kw: Any) -> FieldSpec:
    return FieldSpec(name=name, title=title, type="string", length=18, sensitivity="public", check="uscc",
                     description="GB 32100 统一社会信用代码", **kw)


def entity_name(name: str = "entity_name", title: str = "主体名称", **kw: Any) -> FieldSpec:
    return text(name, title, 200, "public", **kw)


def mobile(name: str = "mobile", title: str = "手机号码", **kw: Any) -> FieldSpec:
    return FieldSpec(name=name, title=title, type="string", length=11, sensitivity="personal", check="mobile",
                     **kw)


def region(name: str = "region", title: str = "行政区划代码", **kw: Any) -> FieldSpec:
    return FieldSpec(name=name, title=title, type="string", length=6, code_list=DIVISIONS,
                     sensitivity=kw.pop("sens", "public"), **kw)


def sex(name: str = "sex", title: str = "性别", **kw: Any) -> FieldSpec:
    return FieldSpec(name=name, title=title, type="string", length=1, code_list=SEX, sensitivity="personal", **kw)


def address(name: str = "address", title: str = "地址", sens: Sensitivity = "personal", **kw: Any) -> FieldSpec:
    return text(name, title, 200, sens, **kw)


def money(name: str, title: str, sens: Sensitivity = "internal", **kw: Any) -> FieldSpec:
    return FieldSpec(name=name, title=title, type="number", sensitivity=sens, minimum=0, **kw)


@dataclass(frozen=True)
class DemoResource:
    name: str
    title: str
    dept: str  # department key (see demo.departments)
    catalog: str | None  # basic/theme catalog code; None: the department's own catalog
    category: tuple[str, str]  # (目 code, name) within the catalog
    summary: str
    fields: tuple[FieldSpec, ...]
    key: tuple[str, ...]
    query: tuple[str, ...] = ()
    share: ShareType = "conditional"
    share_condition: str | None = None
    share_modes: tuple[ShareMode, ...] = ALL_MODES
    open: OpenType = "closed"
    open_condition: str | None = None
    cycle: UpdateCycle = "daily"
    related: tuple[str, ...] = ()
    format: str = "数据库"

    def spec(self, provider: str, catalog: str) -> ResourceSpec:
        return ResourceSpec(
            name=self.name, title=self.title, provider=provider, catalog=self.catalog or catalog,
            category=self.category[0], summary=self.summary, format=self.format, share_type=self.share,
            share_condition=self.share_condition, share_modes=list(self.share_modes), open_type=self.open,
            open_condition=self.open_condition, update_cycle=self.cycle, related=list(self.related),
            key_fields=list(self.key), query_fields=list(self.query),
            fields=[f.model_copy(deep=True) for f in self.fields],
        )

    @property
    def field_names(self) -> list[str]:
        return [f.name for f in self.fields]
