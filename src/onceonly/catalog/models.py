"""Catalog tables: organizations, catalogs and categories, resources and fields, code lists."""

from __future__ import annotations

from datetime import date, datetime
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    Date,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.orm import Mapped, mapped_column, relationship

from onceonly.db import Base, UTCDateTime, utcnow


class Organization(Base):
    __tablename__ = "organizations"

    id: Mapped[int] = mapped_column(primary_key=True)
    code: Mapped[str] = mapped_column(String(18), unique=True)  # unified social credit code
    name: Mapped[str] = mapped_column(String(200))
    short_name: Mapped[str | None] = mapped_column(String(50))
    parent_id: Mapped[int | None] = mapped_column(ForeignKey("organizations.id"))
    region: Mapped[str | None] = mapped_column(String(6))
    number: Mapped[int] = mapped_column(Integer)  # 2-digit 项 of its department catalog
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)

    parent: Mapped[Organization | None] = relationship(remote_side=[id])


class Catalog(Base):
    """A catalog of one kind: basic (1), theme (2) or department (3); code = 类 + 项."""

    __tablename__ = "catalogs"

    id: Mapped[int] = mapped_column(primary_key=True)
    kind: Mapped[str] = mapped_column(String(12))
    code: Mapped[str] = mapped_column(String(3), unique=True)
    name: Mapped[str] = mapped_column(String(100))
    org_id: Mapped[int | None] = mapped_column(ForeignKey("organizations.id"))
    description: Mapped[str | None] = mapped_column(Text)

    categories: Mapped[list[Category]] = relationship(back_populates="catalog", order_by="Category.code")
    org: Mapped[Organization | None] = relationship()


class Category(Base):
    """A 目 under a catalog; resource codes are numbered within it."""

    __tablename__ = "categories"
    __table_args__ = (UniqueConstraint("catalog_id", "code"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    catalog_id: Mapped[int] = mapped_column(ForeignKey("catalogs.id"))
    code: Mapped[str] = mapped_column(String(3))
    name: Mapped[str] = mapped_column(String(100))
    next_sequence: Mapped[int] = mapped_column(Integer, default=1)

    catalog: Mapped[Catalog] = relationship(back_populates="categories")


class Resource(Base):
    __tablename__ = "resources"
    __table_args__ = (
        UniqueConstraint("name", "version"),
        UniqueConstraint("code", "version"),
        Index("ix_resources_status", "status"),
        Index("ix_resources_provider_id", "provider_id"),
        Index("ix_resources_category_id", "category_id"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(63))
    version: Mapped[int] = mapped_column(Integer, default=1)
    code: Mapped[str] = mapped_column(String(40))
    title: Mapped[str] = mapped_column(String(200))
    provider_id: Mapped[int] = mapped_column(ForeignKey("organizations.id"))
    category_id: Mapped[int] = mapped_column(ForeignKey("categories.id"))
    summary: Mapped[str] = mapped_column(Text, default="")
    format: Mapped[str] = mapped_column(String(40), default="数据库")
    share_type: Mapped[str] = mapped_column(String(16))
    share_condition: Mapped[str | None] = mapped_column(Text)
    share_modes: Mapped[list[str]] = mapped_column(JSON, default=list)
    open_type: Mapped[str] = mapped_column(String(16))
    open_condition: Mapped[str | None] = mapped_column(Text)
    update_cycle: Mapped[str] = mapped_column(String(16))
    publish_date: Mapped[date | None] = mapped_column(Date)
    related: Mapped[list[str]] = mapped_column(JSON, default=list)
    key_fields: Mapped[list[str]] = mapped_column(JSON, default=list)
    query_fields: Mapped[list[str]] = mapped_column(JSON, default=list)
    rules: Mapped[list[dict[str, Any]]] = mapped_column(JSON, default=list)
    status: Mapped[str] = mapped_column(String(12), default="draft")
    previous_id: Mapped[int | None] = mapped_column(ForeignKey("resources.id"))
    table_name: Mapped[str | None] = mapped_column(String(63))
    last_seq: Mapped[int] = mapped_column(BigInteger, default=0)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, onupdate=utcnow)

    provider: Mapped[Organization] = relationship()
    category: Mapped[Category] = relationship()
    fields: Mapped[list[Field]] = relationship(
        back_populates="resource", order_by="Field.position", cascade="all, delete-orphan"
    )


class Field(Base):
    __tablename__ = "fields"
    __table_args__ = (UniqueConstraint("resource_id", "name"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    resource_id: Mapped[int] = mapped_column(ForeignKey("resources.id", ondelete="CASCADE"))
    position: Mapped[int] = mapped_column(Integer)
    name: Mapped[str] = mapped_column(String(63))
    title: Mapped[str] = mapped_column(String(100))
    type: Mapped[str] = mapped_column(String(16))
    length: Mapped[int | None] = mapped_column(Integer)
    required: Mapped[bool] = mapped_column(Boolean, default=False)
    unique: Mapped[bool] = mapped_column(Boolean, default=False)
    description: Mapped[str] = mapped_column(Text, default="")
    sensitivity: Mapped[str] = mapped_column(String(20), default="internal")
    check: Mapped[str | None] = mapped_column(String(20))
    code_list: Mapped[str | None] = mapped_column(String(40))
    constraints: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)

    resource: Mapped[Resource] = relationship(back_populates="fields")


class CodeList(Base):
    __tablename__ = "code_lists"

    id: Mapped[int] = mapped_column(primary_key=True)
    code: Mapped[str] = mapped_column(String(40), unique=True)
    name: Mapped[str] = mapped_column(String(100))
    source: Mapped[str] = mapped_column(Text, default="")
    source_date: Mapped[str | None] = mapped_column(String(20))
    standard: Mapped[bool] = mapped_column(Boolean, default=False)
    org_id: Mapped[int | None] = mapped_column(ForeignKey("organizations.id"))

    org: Mapped[Organization | None] = relationship()


class Code(Base):
    __tablename__ = "codes"
    __table_args__ = (UniqueConstraint("code_list_id", "code"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    code_list_id: Mapped[int] = mapped_column(ForeignKey("code_lists.id", ondelete="CASCADE"))
    code: Mapped[str] = mapped_column(String(40))
    name: Mapped[str] = mapped_column(String(200))
    current: Mapped[bool] = mapped_column(Boolean, default=True)


class CodeMapping(Base):
    """编码对应关系: a department's local code translated to a standard list's code."""

    __tablename__ = "code_mappings"
    __table_args__ = (UniqueConstraint("org_id", "code_list_id", "local_code"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    org_id: Mapped[int] = mapped_column(ForeignKey("organizations.id"))
    code_list_id: Mapped[int] = mapped_column(ForeignKey("code_lists.id", ondelete="CASCADE"))
    local_code: Mapped[str] = mapped_column(String(100))
    local_name: Mapped[str | None] = mapped_column(String(200))
    standard_code: Mapped[str] = mapped_column(String(40))
