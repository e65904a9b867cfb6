"""Subscription tables: a consumer system's webhook for a bulk service, and the log of every
delivery attempt, which both sides read (the consumer through its key, the provider's staff and
the platform through the console).

The subscription row is also the delivery queue: `status` + `next_attempt_at` say when it is
due, `lease_until`/`lease_owner` which worker holds it, `cursor` how far the change log of
`resource_id` (the resource version the cursor counts in) has been delivered."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import JSON, BigInteger, ForeignKey, Index, Integer, String, Text
from sqlalchemy.orm import Mapped, mapped_column, relationship

from onceonly.db import Base, UTCDateTime, utcnow
from onceonly.exchange.models import Service, System

SUBSCRIPTION_STATUSES = ("active", "paused", "blocked", "dead", "deleted")
DELIVERY_STATUSES = ("delivered", "failed", "dead", "skipped", "blocked", "waiting")


class Subscription(Base):
    """A webhook: changes of the service's resource pushed in order, at least once, signed with
    the subscription's own secret (sealed like a system's signing secret)."""

    __tablename__ = "exchange_subscriptions"
    __table_args__ = (
        Index("ix_exchange_subscriptions_status_next_attempt_at", "status", "next_attempt_at"),
        Index("ix_exchange_subscriptions_system_id_service_id", "system_id", "service_id"),
        Index("ix_exchange_subscriptions_service_id", "service_id"),
        Index("ix_exchange_subscriptions_consumer_org_id", "consumer_org_id"),
        Index("ix_exchange_subscriptions_provider_org_id", "provider_org_id"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    system_id: Mapped[int] = mapped_column(ForeignKey("exchange_systems.id"))
    service_id: Mapped[int] = mapped_column(ForeignKey("exchange_services.id"))
    consumer_org_id: Mapped[int] = mapped_column(ForeignKey("organizations.id"))
    provider_org_id: Mapped[int] = mapped_column(ForeignKey("organizations.id"))
    url: Mapped[str] = mapped_column(String(2000))
    fields: Mapped[list[str] | None] = mapped_column(JSON)  # None: every granted field
    secret_enc: Mapped[str | None] = mapped_column(Text)
    secret_hint: Mapped[str | None] = mapped_column(String(8))
    status: Mapped[str] = mapped_column(String(10), default="active")
    resource_id: Mapped[int | None] = mapped_column(Integer)
    cursor: Mapped[int] = mapped_column(BigInteger, default=0)
    attempts: Mapped[int] = mapped_column(Integer, default=0)  # failed attempts at the current batch
    next_attempt_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    lease_until: Mapped[datetime | None] = mapped_column(UTCDateTime)
    lease_owner: Mapped[str | None] = mapped_column(String(64))
    last_error: Mapped[str | None] = mapped_column(Text)
    last_delivered_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    dead_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    created_by: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, onupdate=utcnow)

    system: Mapped[System] = relationship()
    service: Mapped[Service] = relationship()


class Delivery(Base):
    """One delivery attempt (or a decision not to attempt: skipped, blocked, waiting) of a
    subscription: the change-log range it covered and what came of it."""

    __tablename__ = "exchange_deliveries"
    __table_args__ = (
        Index("ix_exchange_deliveries_subscription_id_id", "subscription_id", "id"),
        Index("ix_exchange_deliveries_at", "at"),  # retention pruning
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    subscription_id: Mapped[int] = mapped_column(ForeignKey("exchange_subscriptions.id"))
    delivery_id: Mapped[str | None] = mapped_column(String(64))
    attempt: Mapped[int] = mapped_column(Integer, default=0)
    first_seq: Mapped[int | None] = mapped_column(BigInteger)
    last_seq: Mapped[int | None] = mapped_column(BigInteger)
    records: Mapped[int] = mapped_column(Integer, default=0)
    nbytes: Mapped[int] = mapped_column(Integer, default=0)
    status: Mapped[str] = mapped_column(String(10))
    http_status: Mapped[int | None] = mapped_column(Integer)
    latency_ms: Mapped[int] = mapped_column(Integer, default=0)
    error: Mapped[str | None] = mapped_column(Text)
    worker: Mapped[str | None] = mapped_column(String(64))
    at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
