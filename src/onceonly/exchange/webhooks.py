"""Webhook delivery: pushes each active subscription's changes to its URL, in order, at least once.

One batch is three short steps, so no transaction stays open while a receiver is slow:

1. (write transaction) `authorize` the consumer for mode `subscription` — the grant as it is
   *now* decides fields, row filter and masking, and a revoked or expired grant blocks the
   subscription; read up to `batch_size` changes after the cursor with their current rows
   (store.feed); reserve the records against the daily quota (`record_usage`).
2. (no transaction) POST the signed JSON batch with a timeout.
3. (write transaction) on 2xx advance the cursor to the batch's last seq and log the attempt
   together; on anything else give the reserved records back, count the failed attempt and set
   the next one with exponential backoff and jitter — or, after `max_attempts`, dead-letter the
   subscription. The attempt is audited as an exchange call (mode `subscription`).

The cursor only moves after a 2xx, so nothing is skipped and order is kept; a receiver whose 2xx
got lost sees the batch again and must dedupe by seq (docs/exchange-subscriptions.md).

Workers claim a subscription with a lease (`UPDATE … WHERE lease expired`, rowcount 1 wins), so
two workers — threads or server processes — never deliver one subscription at the same time."""

from __future__ import annotations

import json
import logging
import os
import random
import secrets
import socket
import threading
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from decimal import Decimal
from time import monotonic, perf_counter
from typing import Any

import httpx
from sqlalchemy import delete, or_, select, update
from sqlalchemy.orm import Session

from onceonly.audit import append_call
from onceonly.catalog.models import Resource
from onceonly.db import Database, utcnow
from onceonly.errors import PlatformError
from onceonly.exchange import repository as repo
from onceonly.exchange.enforcement import (
    Permit,
    apply_masking,
    authorize,
    day_bucket,
    record_usage,
    row_filter_clause,
)
from onceonly.exchange.errors import ExchangeDenied, Throttled
from onceonly.exchange.signing import SIGNATURE_HEADER, TIMESTAMP_HEADER, WINDOW_SECONDS, hmac_sm3_hex
from onceonly.exchange.subscription_models import Delivery, Subscription
from onceonly.exchange.subscriptions import check_url, unseal_secret
from onceonly.kit.crypto import sm3_hex
from onceonly.settings import Settings
from onceonly.store import feed
from onceonly.store.tables import table_for

log = logging.getLogger("onceonly.exchange.webhooks")

SCHEME = "ONCEONLY-WEBHOOK-HMAC-SM3"
DELIVERY_HEADER = "X-OnceOnly-Delivery"
SUBSCRIPTION_HEADER = "X-OnceOnly-Subscription"
ATTEMPT_HEADER = "X-OnceOnly-Attempt"
MODE = "subscription"
POLL_SECONDS = 1.0
DUE_LIMIT = 500  # subscriptions looked at per pass
THREADS = 4  # deliveries in parallel in the server's worker
LOG_DAYS = 30  # delivery attempts are kept this long
PRUNE_EVERY_SECONDS = 3600


# -- signing -------------------------------------------------------------------------------------

def canonical_string(timestamp: str, delivery_id: str, body: bytes) -> str:
    """Four lines joined by "\\n", no trailing newline: scheme, timestamp, delivery id, SM3 of the body."""
    return "\n".join((SCHEME, timestamp, delivery_id, sm3_hex(body)))


def sign(secret: str, timestamp: str, delivery_id: str, body: bytes) -> str:
    return hmac_sm3_hex(secret, canonical_string(timestamp, delivery_id, body))


def signed_headers(secret: str, delivery_id: str, body: bytes, *, now: datetime, subscription_id: int,
                   attempt: int) -> dict[str, str]:
    timestamp = str(int(now.timestamp()))
    return {"Content-Type": "application/json; charset=utf-8", "User-Agent": "OnceOnly-Webhook/1",
            TIMESTAMP_HEADER: timestamp, DELIVERY_HEADER: delivery_id, SUBSCRIPTION_HEADER: str(subscription_id),
            ATTEMPT_HEADER: str(attempt), SIGNATURE_HEADER: sign(secret, timestamp, delivery_id, body)}


def verify(secret: str, headers: Mapping[str, str], body: bytes, *, now: datetime | None = None,
           window: int = WINDOW_SECONDS) -> bool:
    """Receiver helper: the signature matches and the timestamp is within ±`window` seconds."""
    import hmac

    lower = {k.lower(): v for k, v in headers.items()}
    timestamp = lower.get(TIMESTAMP_HEADER.lower(), "")
    delivery_id = lower.get(DELIVERY_HEADER.lower(), "")
    signature = lower.get(SIGNATURE_HEADER.lower(), "")
    if not timestamp.isdigit() or abs(int(timestamp) - int((now or utcnow()).timestamp())) > window:
        return False
    expected = sign(secret, timestamp, delivery_id, body).encode()
    return hmac.compare_digest(expected, signature.strip().lower().encode("utf-8", "replace"))


# -- configuration -------------------------------------------------------------------------------

@dataclass(frozen=True)
class DeliveryConfig:
    timeout: float = 10.0  # seconds per network operation of one POST
    max_attempts: int = 12  # failed attempts at one batch before the dead letter
    retry_base: float = 10.0  # seconds; the delay doubles per failed attempt ...
    retry_cap: float = 3600.0  # ... up to this
    batch_size: int = 100  # changes per POST
    allow_private: bool = False  # loopback and private targets (SSRF guard off)
    max_batches: int = 50  # batches per claim before the subscription goes back in line
    lease_margin: float = 60.0  # seconds a claim outlives the POST timeout

    @classmethod
    def from_settings(cls, settings: Settings, **overrides: Any) -> DeliveryConfig:
        values: dict[str, Any] = {
            "timeout": settings.exchange_webhook_timeout_seconds,
            "max_attempts": settings.exchange_webhook_max_attempts,
            "retry_base": settings.exchange_webhook_retry_base_seconds,
            "retry_cap": settings.exchange_webhook_retry_cap_seconds,
            "allow_private": settings.exchange_webhook_allow_private,
        }
        return cls(**{**values, **overrides})

    @property
    def lease(self) -> timedelta:
        return timedelta(seconds=self.timeout * 3 + self.lease_margin)


def backoff(attempts: int, config: DeliveryConfig, rand: Callable[[], float] = random.random) -> float:
    """Seconds to wait after the `attempts`-th failure: d = min(cap, base · 2^(attempts−1)), of
    which the upper half is random ("equal jitter"), so retries of many subscriptions spread out."""
    delay = min(config.retry_cap, config.retry_base * 2 ** max(0, attempts - 1))
    return delay / 2 + rand() * delay / 2


# -- outcomes ------------------------------------------------------------------------------------

@dataclass
class Outcome:
    """What one claim of a subscription came to: the last batch's status and the totals."""

    subscription_id: int
    status: str  # delivered, failed, dead, skipped, blocked, waiting, idle, busy, error
    batches: int = 0
    records: int = 0
    more: bool = False
    error: str | None = None


@dataclass(frozen=True)
class _Who:
    """Names for the audit record, read before any rollback (which would expire the objects)."""

    subscription_id: int
    system: str
    org: str
    service: str
    url: str


@dataclass
class _Batch:
    subscription_id: int
    permit: Permit
    resource_id: int
    resource_version: int
    from_seq: int  # the cursor: changes after it
    to_seq: int  # last seq covered (sent or passed over by the row filter)
    items: list[dict[str, Any]] = field(default_factory=list)
    latest: int = 0

    @property
    def delivery_id(self) -> str:
        return f"s{self.subscription_id}-v{self.resource_version}-{self.from_seq + 1}-{self.to_seq}"


@dataclass
class _Post:
    http_status: int | None = None
    error: str | None = None
    latency_ms: int = 0
    timeout: bool = False

    @property
    def ok(self) -> bool:
        return self.http_status is not None and 200 <= self.http_status < 300

    @property
    def audit_status(self) -> int:
        return self.http_status or (504 if self.timeout else 502)


# -- the worker ----------------------------------------------------------------------------------

class DeliveryWorker:
    """Delivers due subscriptions: `run_once()` for one pass (CLI `deliver --once`, tests),
    `start()`/`stop()` for the background thread of a server process."""

    def __init__(self, db: Database, *, master: str, config: DeliveryConfig | None = None,
                 clock: Callable[[], datetime] = utcnow, name: str | None = None,
                 rand: Callable[[], float] = random.random) -> None:
        self.db = db
        self.master = master
        self.config = config or DeliveryConfig.from_settings(db.settings)
        self.clock = clock
        self.rand = rand
        self.name = (name or f"{socket.gethostname()[:24]}:{os.getpid()}:{secrets.token_hex(4)}")[:64]
        self._local = threading.local()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    # -- passes --

    def run_once(self, *, parallel: int = 1) -> list[Outcome]:
        """One pass over the due subscriptions: each claimed one is delivered until it is caught
        up, fails, or has had `max_batches` batches. Subscriptions another worker holds are left."""
        with self.db.session() as s:
            ids = due_ids(s, self.clock())
        if parallel > 1 and len(ids) > 1:
            with ThreadPoolExecutor(max_workers=parallel, thread_name_prefix="onceonly-deliver") as pool:
                return list(pool.map(self.deliver, ids))
        return [self.deliver(sid) for sid in ids]

    def deliver(self, subscription_id: int) -> Outcome:
        """Claim one subscription and deliver it; `busy` if another worker holds it."""
        if not self._claim(subscription_id):
            return Outcome(subscription_id, "busy")
        total = Outcome(subscription_id, "idle")
        try:
            for _ in range(self.config.max_batches):
                out = self._batch(subscription_id)
                total.status, total.more, total.error = out.status, out.more, out.error
                total.batches += out.batches
                total.records += out.records
                if out.status not in ("delivered", "skipped") or not out.more:
                    break
                self._renew(subscription_id)
        except Exception as exc:  # e.g. the audit log unavailable: nothing advanced, retried at the next pass
            log.exception("delivery of subscription %d failed", subscription_id)
            total.status, total.error = "error", f"{type(exc).__name__}: {exc}"[:500]
        finally:
            self._release(subscription_id)
        return total

    # -- background thread --

    def start(self, poll_seconds: float = POLL_SECONDS) -> None:
        self._stop.clear()
        self._thread = threading.Thread(target=self._loop, args=(poll_seconds,), name="onceonly-delivery",
                                        daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=self.config.timeout * 3 + 5)
            self._thread = None

    def _loop(self, poll_seconds: float) -> None:
        last_error = last_prune = 0.0
        while not self._stop.is_set():
            try:
                self.run_once(parallel=THREADS)
                if monotonic() - last_prune > PRUNE_EVERY_SECONDS:
                    prune_log(self.db, self.clock() - timedelta(days=LOG_DAYS))
                    last_prune = monotonic()
            except Exception:  # e.g. the database is unreachable: try again at the next poll
                if monotonic() - last_error > 60:  # once a minute, not at every poll
                    log.exception("webhook delivery pass failed")
                    last_error = monotonic()
            self._stop.wait(poll_seconds)

    # -- leases --

    def _claim(self, sid: int) -> bool:
        now = self.clock()
        with self.db.session(write=True) as s:
            result = s.execute(
                update(Subscription)
                .where(Subscription.id == sid, Subscription.status == "active", Subscription.next_attempt_at <= now,
                       or_(Subscription.lease_until.is_(None), Subscription.lease_until < now))
                .values(lease_until=now + self.config.lease, lease_owner=self.name)
                .execution_options(synchronize_session=False))
            return int(getattr(result, "rowcount", 0) or 0) == 1

    def _renew(self, sid: int) -> None:
        with self.db.session(write=True) as s:
            s.execute(update(Subscription).where(Subscription.id == sid, Subscription.lease_owner == self.name)
                      .values(lease_until=self.clock() + self.config.lease)
                      .execution_options(synchronize_session=False))

    def _release(self, sid: int) -> None:
        with self.db.session(write=True) as s:
            s.execute(update(Subscription).where(Subscription.id == sid, Subscription.lease_owner == self.name)
                      .values(lease_until=None, lease_owner=None).execution_options(synchronize_session=False))

    # -- one batch --

    def _batch(self, sid: int) -> Outcome:
        now = self.clock()
        with self.db.session(write=True) as s:
            sub = s.get(Subscription, sid)
            if sub is None or sub.status != "active" or sub.lease_owner != self.name:
                return Outcome(sid, "idle")
            who = _Who(sid, sub.system.code, sub.system.org.code, sub.service.code, sub.url)
            try:
                batch = self._prepare(s, sub, now)
            except (ExchangeDenied, Throttled) as exc:
                s.rollback()  # a denial counts nothing
                return self._refused(s, who, exc, now)
            if batch is None:
                return Outcome(sid, "idle")
            if not batch.items:  # every change was outside the row filter: nothing to send
                _advance(sub, batch, now)
                s.add(Delivery(subscription_id=sid, attempt=0, first_seq=batch.from_seq + 1, last_seq=batch.to_seq,
                               status="skipped", worker=self.name, at=now))
                return Outcome(sid, "skipped", batches=1, more=batch.to_seq < batch.latest)
            state = (sub.resource_id, sub.cursor)
            attempt = sub.attempts + 1
            secret = unseal_secret(sub, self.master)
            if secret is None:
                s.rollback()
                return self._refused(s, who, PlatformError(
                    "the subscription's signing secret cannot be read (the platform secret changed); the consumer "
                    "must request a new secret and resume"), now)
            body = encode(batch, sid, attempt, now)
        post = self._post(who.url, signed_headers(secret, batch.delivery_id, body, now=now, subscription_id=sid,
                                                  attempt=attempt), body)
        return self._settle(who, batch, state, attempt, body, post, day_bucket(now))

    def _prepare(self, s: Session, sub: Subscription, now: datetime) -> _Batch | None:
        """Authorize, read the changes after the cursor with their rows, build the batch and
        reserve its records against the quota. None when there is nothing to deliver."""
        permit = authorize(s, sub.system, sub.service.code, MODE, sub.fields, now=now)
        res = s.get(Resource, permit.resource_id)
        assert res is not None
        cursor = sub.cursor if sub.resource_id == res.id else 0  # a new resource version starts its own log
        table = table_for(res)
        changes = feed.changes_with_rows(s, res, cursor, self.config.batch_size, row_filter_clause(permit, table))
        if not changes:
            if sub.resource_id != res.id:
                sub.resource_id, sub.cursor = res.id, 0
            return None
        batch = _Batch(sub.id, permit, res.id, res.version, cursor, cursor, latest=int(res.last_seq or 0))
        for change in changes:
            if change.row is not None:
                if len(batch.items) >= permit.remaining_today:
                    break
                batch.items.append(_item(permit, res.key_fields, change))
            batch.to_seq = change.seq
        if batch.items:
            record_usage(s, permit, len(batch.items), now=now)
        return batch

    def _post(self, url: str, headers: dict[str, str], body: bytes) -> _Post:
        if not self.config.allow_private:  # again at delivery: the name may resolve elsewhere by now
            try:
                check_url(url, allow_private=False)
            except PlatformError as exc:
                return _Post(error=exc.message)
        start = perf_counter()
        try:
            with self._client().stream("POST", url, content=body, headers=headers,
                                       timeout=self.config.timeout) as response:
                head = b""
                if not 200 <= response.status_code < 300:
                    for chunk in response.iter_bytes():
                        head += chunk
                        if len(head) >= 300:
                            break
                error = None if 200 <= response.status_code < 300 else (
                    f"HTTP {response.status_code}: {head[:300].decode('utf-8', 'replace').strip()}")
                return _Post(response.status_code, error, _ms(start))
        except httpx.TimeoutException:
            return _Post(error=f"no answer within {self.config.timeout:g} s (timeout)", latency_ms=_ms(start),
                         timeout=True)
        except httpx.HTTPError as exc:
            return _Post(error=f"{type(exc).__name__}: {exc}"[:500] or type(exc).__name__, latency_ms=_ms(start))

    def _client(self) -> httpx.Client:
        """One client per thread (connections reused); proxies from the environment are not used,
        so the address the SSRF guard checked is the one connected to."""
        client: httpx.Client | None = getattr(self._local, "client", None)
        if client is None:
            client = httpx.Client(trust_env=False, follow_redirects=False)
            self._local.client = client
        return client

    def _settle(self, who: _Who, batch: _Batch, state: tuple[int | None, int], attempt: int, body: bytes,
                post: _Post, bucket: int) -> Outcome:
        """Step 3: the outcome of the POST, the cursor and the audit record, in one transaction."""
        now = self.clock()
        records = len(batch.items)
        with self.db.session(write=True) as s:
            sub = s.get(Subscription, who.subscription_id)
            assert sub is not None
            unchanged = (sub.resource_id, sub.cursor) == state
            delivery = Delivery(subscription_id=sub.id, delivery_id=batch.delivery_id, attempt=attempt,
                                first_seq=batch.from_seq + 1, last_seq=batch.to_seq, records=records,
                                nbytes=len(body), http_status=post.http_status, latency_ms=post.latency_ms,
                                error=post.error, worker=self.name, at=now)
            if post.ok:
                if unchanged:
                    _advance(sub, batch, now)
                    sub.last_delivered_at = now
                delivery.status, outcome = "delivered", Outcome(sub.id, "delivered", 1, records,
                                                                more=batch.to_seq < batch.latest)
            else:
                repo.add_usage(s, batch.permit.grant_id, "day", bucket, 0, -records)  # give the reservation back
                status = "failed"
                if unchanged and sub.status == "active":
                    sub.attempts = attempt
                    sub.last_error = post.error
                    if attempt >= self.config.max_attempts:
                        sub.status, sub.dead_at, status = "dead", now, "dead"
                        sub.last_error = f"dead letter after {attempt} failed attempts; last: {post.error}"
                    else:
                        sub.next_attempt_at = now + timedelta(seconds=backoff(attempt, self.config, self.rand))
                    sub.updated_at = now
                delivery.status, outcome = status, Outcome(sub.id, status, 1, 0, error=post.error)
            s.add(delivery)
            s.flush()
            append_call(self.db, system=who.system, org=who.org, service=who.service, mode=MODE,
                        status=post.audit_status, records=records if post.ok else 0, nbytes=len(body),
                        latency_ms=post.latency_ms,
                        detail={"action": "deliver", "subscription": who.subscription_id, "delivery": batch.delivery_id,
                                "attempt": attempt, "first_seq": batch.from_seq + 1, "last_seq": batch.to_seq,
                                "outcome": delivery.status, **({"error": post.error[:200]} if post.error else {})},
                        session=s)
        return outcome

    def _refused(self, s: Session, who: _Who, exc: PlatformError, now: datetime) -> Outcome:
        """The grant no longer allows delivery (blocked until the consumer resumes), or the
        quota or rate limit says wait (due again when it resets). Logged and audited."""
        sub = s.get(Subscription, who.subscription_id)
        assert sub is not None
        reason = f"{exc.code}: {exc.message}"
        if isinstance(exc, Throttled):
            sub.next_attempt_at = now + timedelta(seconds=exc.retry_after)
            status = "waiting"
        else:
            sub.status = "blocked"
            status = "blocked"
        sub.last_error, sub.updated_at = reason, now
        s.add(Delivery(subscription_id=sub.id, attempt=0, status=status, error=reason, worker=self.name, at=now))
        s.flush()
        append_call(self.db, system=who.system, org=who.org, service=who.service, mode=MODE, status=exc.status,
                    detail={"action": "deliver", "subscription": who.subscription_id, "outcome": status,
                            "error": exc.code}, session=s)
        s.commit()
        return Outcome(who.subscription_id, status, error=reason)


def _ms(start: float) -> int:
    return int((perf_counter() - start) * 1000)


def _advance(sub: Subscription, batch: _Batch, now: datetime) -> None:
    sub.resource_id, sub.cursor = batch.resource_id, batch.to_seq
    sub.attempts, sub.last_error, sub.next_attempt_at, sub.updated_at = 0, None, now, now


def _item(permit: Permit, key_fields: Sequence[str], change: feed.FeedChange) -> dict[str, Any]:
    """One change as pushed: seq, op, the key (granted key fields only, masked) and, for inserts
    and updates, the row as stored now (granted fields, masked; null if deleted since)."""
    key = apply_masking(permit, dict(zip(key_fields, change.key, strict=True)))
    item: dict[str, Any] = {"seq": change.seq, "op": change.op, "key": key or None}
    if change.op != "D":
        row = change.row or {}
        item["row"] = None if row.get("_deleted") else apply_masking(permit, row)
    return item


def encode(batch: _Batch, subscription_id: int, attempt: int, now: datetime) -> bytes:
    payload = {
        "subscription": subscription_id, "service": batch.permit.service_code,
        "resource": batch.permit.resource_code, "resource_version": batch.resource_version,
        "delivery": batch.delivery_id, "attempt": attempt, "from_seq": batch.from_seq, "to_seq": batch.to_seq,
        "sent_at": now.isoformat().replace("+00:00", "Z"), "changes": batch.items,
    }
    return json.dumps(payload, ensure_ascii=False, separators=(",", ":"), default=_json_value).encode("utf-8")


def _json_value(value: Any) -> Any:
    if isinstance(value, datetime | date):
        return value.isoformat()
    if isinstance(value, Decimal):
        return str(value)
    raise TypeError(f"{type(value).__name__} is not JSON serializable")


def due_ids(session: Session, now: datetime, limit: int = DUE_LIMIT) -> list[int]:
    """Active subscriptions whose next attempt is due, not leased, and with something to do: a
    change after the cursor, or the cursor's resource version no longer the published one."""
    stmt = (select(Subscription.id)
            .outerjoin(Resource, Resource.id == Subscription.resource_id)
            .where(Subscription.status == "active", Subscription.next_attempt_at <= now,
                   or_(Subscription.lease_until.is_(None), Subscription.lease_until < now),
                   or_(Resource.id.is_(None), Resource.status != "published", Resource.last_seq > Subscription.cursor))
            .order_by(Subscription.next_attempt_at).limit(limit))
    return list(session.scalars(stmt))


def prune_log(db: Database, before: datetime) -> int:
    """Forget delivery attempts older than `before` (the subscription keeps its own state)."""
    with db.session(write=True) as s:
        result = s.execute(delete(Delivery).where(Delivery.at < before).execution_options(synchronize_session=False))
        return int(getattr(result, "rowcount", 0) or 0)


def start_delivery(settings: Settings, db: Database, master: str) -> DeliveryWorker | None:
    """The server's background worker (lifespan), unless `exchange_delivery_enabled` is off."""
    if not settings.exchange_delivery_enabled:
        return None
    worker = DeliveryWorker(db, master=master, config=DeliveryConfig.from_settings(settings))
    worker.start()
    return worker
