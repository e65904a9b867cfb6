"""Exchange tables: business systems and their credentials, services over resources,
applications with their decisions, grants, and the counters and nonces enforcement needs."""

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

from onceonly.catalog.models import Organization, Resource
from onceonly.db import Base, UTCDateTime, utcnow


class System(Base):
    """A department's business system (业务系统): the API client of the exchange.

    The signing secret must be readable to check an HMAC, so it cannot be hashed: it is kept
    encrypted with SM4-GCM under a key derived from the platform secret (see signing.py)."""

    __tablename__ = "exchange_systems"
    __table_args__ = (Index("ix_exchange_systems_org_id", "org_id"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    code: Mapped[str] = mapped_column(String(40), unique=True)
    name: Mapped[str] = mapped_column(String(200))
    org_id: Mapped[int] = mapped_column(ForeignKey("organizations.id"))
    contact: Mapped[str] = mapped_column(String(200), default="")
    active: Mapped[bool] = mapped_column(Boolean, default=True)
    signing_required: Mapped[bool] = mapped_column(Boolean, default=False)
    signing_secret_enc: Mapped[str | None] = mapped_column(Text)
    signing_secret_hint: Mapped[str | None] = mapped_column(String(8))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)

    org: Mapped[Organization] = relationship()


class Credential(Base):
    """An API key of a system. Only the SM3 hash is stored; `prefix` finds the candidate rows.
    A rotated key stays valid until `overlap_until`."""

    __tablename__ = "exchange_credentials"
    __table_args__ = (
        Index("ix_exchange_credentials_prefix", "prefix"),
        Index("ix_exchange_credentials_system_id", "system_id"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    system_id: Mapped[int] = mapped_column(ForeignKey("exchange_systems.id"))
    prefix: Mapped[str] = mapped_column(String(16))
    key_hash: Mapped[str] = mapped_column(String(64), unique=True)
    hint: Mapped[str] = mapped_column(String(8))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    created_by: Mapped[str] = mapped_column(String(64), default="")
    expires_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    revoked_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    rotated_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    overlap_until: Mapped[datetime | None] = mapped_column(UTCDateTime)
    replaced_by_id: Mapped[int | None] = mapped_column(Integer)
    last_used_at: Mapped[datetime | None] = mapped_column(UTCDateTime)

    system: Mapped[System] = relationship()


class Nonce(Base):
    """Nonces of signed requests, kept until their timestamp leaves the window (then pruned)."""

    __tablename__ = "exchange_nonces"
    __table_args__ = (
        UniqueConstraint("system_id", "nonce"),
        Index("ix_exchange_nonces_system_id_expires_at", "system_id", "expires_at"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    system_id: Mapped[int] = mapped_column(ForeignKey("exchange_systems.id"))
    nonce: Mapped[str] = mapped_column(String(64))
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime)


class Service(Base):
    """A provider's service over one of its resources in one mode, exposing some fields."""

    __tablename__ = "exchange_services"
    __table_args__ = (
        Index("ix_exchange_services_resource_id", "resource_id"),
        Index("ix_exchange_services_provider_org_id", "provider_org_id"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    code: Mapped[str] = mapped_column(String(40), unique=True)
    name: Mapped[str] = mapped_column(String(200))
    description: Mapped[str] = mapped_column(Text, default="")
    resource_id: Mapped[int] = mapped_column(ForeignKey("resources.id"))
    provider_org_id: Mapped[int] = mapped_column(ForeignKey("organizations.id"))
    mode: Mapped[str] = mapped_column(String(10))
    fields: Mapped[list[str]] = mapped_column(JSON, default=list)
    status: Mapped[str] = mapped_column(String(12), default="published")
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    published_at: Mapped[datetime | None] = mapped_column(UTCDateTime)

    resource: Mapped[Resource] = relationship()
    provider: Mapped[Organization] = relationship()


class Application(Base):
    """共享申请: a consumer system asks for fields of a service. The proposed grant terms
    (row filter, masking, limits) gather in `terms` as the decision steps set them."""

    __tablename__ = "exchange_applications"
    __table_args__ = (
        Index("ix_exchange_applications_system_id", "system_id"),
        Index("ix_exchange_applications_service_id", "service_id"),
        Index("ix_exchange_applications_consumer_org_id_status", "consumer_org_id", "status"),
        Index("ix_exchange_applications_provider_org_id_status", "provider_org_id", "status"),
        Index("ix_exchange_applications_status", "status"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    system_id: Mapped[int] = mapped_column(ForeignKey("exchange_systems.id"))
    service_id: Mapped[int] = mapped_column(ForeignKey("exchange_services.id"))
    consumer_org_id: Mapped[int] = mapped_column(ForeignKey("organizations.id"))
    provider_org_id: Mapped[int] = mapped_column(ForeignKey("organizations.id"))
    fields_requested: Mapped[list[str]] = mapped_column(JSON, default=list)
    fields_approved: Mapped[list[str] | None] = mapped_column(JSON)
    purpose: Mapped[str] = mapped_column(Text)
    legal_basis: Mapped[str] = mapped_column(Text)
    expected_volume: Mapped[int] = mapped_column(BigInteger)
    expires_on: Mapped[date] = mapped_column(Date)
    status: Mapped[str] = mapped_column(String(20))
    needs_operator: Mapped[bool] = mapped_column(Boolean, default=False)
    terms: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    applicant: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    decided_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    grant_id: Mapped[int | None] = mapped_column(Integer)

    system: Mapped[System] = relationship()
    service: Mapped[Service] = relationship()
    decisions: Mapped[list[Decision]] = relationship(order_by="Decision.id", back_populates="application")


class Decision(Base):
    """One step on an application: who decided what, when and why (auto steps included)."""

    __tablename__ = "exchange_decisions"
    __table_args__ = (Index("ix_exchange_decisions_application_id", "application_id"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    application_id: Mapped[int] = mapped_column(ForeignKey("exchange_applications.id"))
    step: Mapped[str] = mapped_column(String(12))  # auto, provider, operator, applicant
    outcome: Mapped[str] = mapped_column(String(12))  # approve, narrow, reject, withdraw
    username: Mapped[str] = mapped_column(String(64))
    user_id: Mapped[int | None] = mapped_column(Integer)
    reason: Mapped[str] = mapped_column(Text, default="")
    fields: Mapped[list[str] | None] = mapped_column(JSON)
    at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)

    application: Mapped[Application] = relationship(back_populates="decisions")


class Grant(Base):
    """授权: what one system may receive from one service, and how much, until when."""

    __tablename__ = "exchange_grants"
    __table_args__ = (
        Index("ix_exchange_grants_system_id_service_id", "system_id", "service_id"),
        Index("ix_exchange_grants_consumer_org_id", "consumer_org_id"),
        Index("ix_exchange_grants_provider_org_id", "provider_org_id"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    system_id: Mapped[int] = mapped_column(ForeignKey("exchange_systems.id"))
    service_id: Mapped[int] = mapped_column(ForeignKey("exchange_services.id"))
    application_id: Mapped[int | None] = mapped_column(ForeignKey("exchange_applications.id"))
    consumer_org_id: Mapped[int] = mapped_column(ForeignKey("organizations.id"))
    provider_org_id: Mapped[int] = mapped_column(ForeignKey("organizations.id"))
    fields: Mapped[list[str]] = mapped_column(JSON, default=list)
    row_filter: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    masking: Mapped[dict[str, str]] = mapped_column(JSON, default=dict)
    rate_limit: Mapped[int] = mapped_column(Integer)
    daily_quota: Mapped[int] = mapped_column(BigInteger)
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    revoked_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    revoked_by: Mapped[str | None] = mapped_column(String(64))
    revoke_reason: Mapped[str | None] = mapped_column(Text)

    system: Mapped[System] = relationship()
    service: Mapped[Service] = relationship()


class Usage(Base):
    """Counters per grant and period: calls per minute (rate limit) and records per day
    (quota; the day of the city, UTC+8). One row per bucket, incremented with an atomic upsert
    in the caller's transaction, so several worker processes on one database count together."""

    __tablename__ = "exchange_usage"

    grant_id: Mapped[int] = mapped_column(ForeignKey("exchange_grants.id"), primary_key=True)
    period: Mapped[str] = mapped_column(String(6), primary_key=True)  # minute, day
    bucket: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=False)
    calls: Mapped[int] = mapped_column(BigInteger, default=0)
    records: Mapped[int] = mapped_column(BigInteger, default=0)


class Epoch(Base):
    """One row whose token changes (by trigger, migration 0007) with every committed change to
    the metadata enforcement reads on each call; see snapshot.py."""

    __tablename__ = "exchange_epoch"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    token: Mapped[int] = mapped_column(BigInteger)
