"""Prometheus metrics of exchange calls, exposed at /metrics next to the HTTP metrics.

The data plane calls `observe_call` once per exchange call (answered or denied), right where it
writes the call's audit record. The metric objects live at module level (one set per process)
and are registered into each app's registry by `register`, so /metrics shows them.

Several worker processes: each process counts its own calls, and a scrape reaches one worker;
Prometheus sums counters across the workers' targets (or scrape each worker's port). The audit
log stays the platform-wide truth: the statistics API (exchange/stats.py) reads it, so its
numbers cover every worker and survive restarts, while these counters restart at zero."""

from __future__ import annotations

import re
import threading
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Histogram

from onceonly.exchange.services import CALL_MODES

# Latency buckets in seconds: a verify answers in milliseconds, an export may stream for minutes.
BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0)
MAX_SERVICE_LABELS = 1000  # distinct service labels per process; later ones count as "other"
_SERVICE = re.compile(r"^[A-Za-z][A-Za-z0-9_-]{1,39}$")

CALLS = Counter("onceonly_exchange_calls_total", "Exchange calls by service, mode and status class",
                ["service", "mode", "status_class"], registry=None)
RECORDS = Counter("onceonly_exchange_records_total", "Records returned by exchange calls", ["service", "mode"],
                  registry=None)
BYTES = Counter("onceonly_exchange_response_bytes_total", "Response bytes of exchange calls", ["service", "mode"],
                registry=None)
LATENCY = Histogram("onceonly_exchange_call_seconds", "Time taken by exchange calls", ["service", "mode"],
                    buckets=BUCKETS, registry=None)
COLLECTORS = (CALLS, RECORDS, BYTES, LATENCY)

_seen: set[str] = set()
_seen_lock = threading.Lock()


def register(registry: CollectorRegistry) -> None:
    """Expose the exchange metrics through `registry` (the app's /metrics registry)."""
    for collector in COLLECTORS:
        registry.register(collector)


def status_class(status: int) -> str:
    """2xx, 3xx, 4xx or 5xx; anything outside 100-599 is "other"."""
    return f"{status // 100}xx" if 100 <= status <= 599 else "other"


def _service_label(service: str) -> str:
    """Callers choose the service code in the URL, so label values are bounded: a code that is
    not well-formed is "invalid", and past MAX_SERVICE_LABELS distinct codes the rest are "other"."""
    if not _SERVICE.match(service):
        return "invalid"
    if service in _seen:
        return service
    with _seen_lock:
        if len(_seen) >= MAX_SERVICE_LABELS:
            return "other"
        _seen.add(service)
    return service


_Children = tuple[Any, Any, Any, Any]
_children: dict[tuple[str, str, str], _Children] = {}


def _children_of(service: str, mode: str, status: int) -> _Children:
    """The labelled metrics of one service, mode and status class, looked up once: `labels`
    costs more than the increments. Bounded like the service labels."""
    key = (service, mode, status_class(status))
    found = _children.get(key)
    if found is None:
        label = _service_label(service)
        mode = mode if mode in CALL_MODES else "other"
        found = (CALLS.labels(label, mode, key[2]), RECORDS.labels(label, mode), BYTES.labels(label, mode),
                 LATENCY.labels(label, mode))
        if label == service:  # "invalid" and "other" are looked up each time, not kept per code
            _children[key] = found
    return found


def observe_call(service: str, mode: str, status: int, records: int, nbytes: int, latency_ms: int | float) -> None:
    """Count one exchange call: calls by status class, records, response bytes, latency."""
    calls, records_, bytes_, latency = _children_of(service, mode, status)
    calls.inc()
    if records > 0:
        records_.inc(records)
    if nbytes > 0:
        bytes_.inc(nbytes)
    latency.observe(max(0.0, float(latency_ms)) / 1000)


def observe_bytes(service: str, mode: str, nbytes: int) -> None:
    """Count bytes sent after a call was counted (a streamed export's body, see export.py)."""
    if nbytes > 0:
        BYTES.labels(_service_label(service), mode if mode in CALL_MODES else "other").inc(nbytes)
