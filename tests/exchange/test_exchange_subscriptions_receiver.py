"""A real webhook receiver for the subscription tests, and tests of the receiver itself.

`Receiver` is an HTTP server in a thread on 127.0.0.1. It checks every POST the way a consumer
is told to (docs/exchange-subscriptions.md) with its own HMAC-SM3 (hashlib's SM3, not the
platform's code): signature over the canonical string, timestamp within ±300 s. It records the
batches it accepted and can be switched `down` (socket closed: connection refused), `slow`
(answers after the platform's timeout), `error` (500) and back `up`."""

from __future__ import annotations

import hashlib
import hmac
import json
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import httpx
import pytest

SCHEME = "ONCEONLY-WEBHOOK-HMAC-SM3"


def expected_signature(secret: str, timestamp: str, delivery: str, body: bytes) -> str:
    canonical = "\n".join((SCHEME, timestamp, delivery, hashlib.new("sm3", body).hexdigest()))
    return hmac.new(secret.encode("utf-8"), canonical.encode("utf-8"), "sm3").hexdigest()


@dataclass
class Receiver:
    mode: str = "up"  # up, slow, error
    slow_seconds: float = 1.5
    pause_seconds: float = 0.0  # an "up" receiver that takes this long (race tests)
    secrets: dict[int, str] = field(default_factory=dict)  # subscription id -> its webhook secret
    batches: list[dict[str, Any]] = field(default_factory=list)  # accepted, in arrival order
    rejected: list[str] = field(default_factory=list)
    requests: int = 0
    max_in_flight: dict[int, int] = field(default_factory=dict)
    port: int = 0
    _in_flight: dict[int, int] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _server: ThreadingHTTPServer | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/hooks/onceonly"

    def start(self) -> Receiver:
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                receiver.handle(self)

            def log_message(self, format: str, *args: Any) -> None:
                pass

        server = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        server.daemon_threads = True
        self.port = server.server_address[1]
        self._server = server
        threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()
        return self

    def down(self) -> None:
        """Close the listening socket: connections are refused until `up`."""
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    def up(self) -> None:
        self.mode = "up"
        if self._server is None:
            self.start()

    def handle(self, req: BaseHTTPRequestHandler) -> None:
        body = req.rfile.read(int(req.headers.get("Content-Length", "0")))
        sub = int(req.headers.get("X-OnceOnly-Subscription", "0"))
        with self._lock:
            self.requests += 1
            self._in_flight[sub] = self._in_flight.get(sub, 0) + 1
            self.max_in_flight[sub] = max(self.max_in_flight.get(sub, 0), self._in_flight[sub])
        try:
            status = self._check_and_record(req, sub, body)
        finally:
            with self._lock:
                self._in_flight[sub] -= 1
        try:
            req.send_response(status)
            req.send_header("Content-Type", "text/plain")
            req.end_headers()
            req.wfile.write(b"ok" if status == 200 else b"receiver says no")
        except OSError:  # the platform hung up (timeout): nothing to answer
            pass

    def _check_and_record(self, req: BaseHTTPRequestHandler, sub: int, body: bytes) -> int:
        if self.mode == "error":
            return 500
        timestamp = req.headers.get("X-OnceOnly-Timestamp", "")
        delivery = req.headers.get("X-OnceOnly-Delivery", "")
        signature = req.headers.get("X-OnceOnly-Signature", "")
        secret = self.secrets.get(sub)
        if secret is None or not timestamp.isdigit() or abs(int(timestamp) - time.time()) > 300:
            self.rejected.append(f"subscription {sub}: unknown or stale")
            return 401
        if not hmac.compare_digest(expected_signature(secret, timestamp, delivery, body), signature):
            self.rejected.append(f"subscription {sub}: bad signature")
            return 401
        payload = json.loads(body)
        if payload["delivery"] != delivery or payload["subscription"] != sub:
            self.rejected.append(f"subscription {sub}: headers disagree with the body")
            return 400
        if self.mode == "slow":
            time.sleep(self.slow_seconds)
        elif self.pause_seconds:
            time.sleep(self.pause_seconds)
        with self._lock:
            self.batches.append(payload)
        return 200

    # -- what the tests read --

    def changes(self, sub: int) -> list[dict[str, Any]]:
        """Every change received for a subscription, duplicates included, in arrival order."""
        return [c for b in self.batches if b["subscription"] == sub for c in b["changes"]]

    def seqs(self, sub: int) -> list[int]:
        return [c["seq"] for c in self.changes(sub)]

    def deduped(self, sub: int) -> list[dict[str, Any]]:
        """What a receiver keeps when it dedupes by seq, as it is told to."""
        seen: dict[int, dict[str, Any]] = {}
        for change in self.changes(sub):
            seen.setdefault(change["seq"], change)
        return list(seen.values())


@contextmanager
def serving() -> Iterator[Receiver]:
    """A started receiver, closed afterwards (each test module's `receiver` fixture)."""
    r = Receiver().start()
    try:
        yield r
    finally:
        r.down()


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    with serving() as r:
        yield r


def _post(r: Receiver, secret: str, body: bytes, signature: str | None = None) -> httpx.Response:
    timestamp = str(int(time.time()))
    delivery = "s7-v1-1-1"
    return httpx.post(r.url, content=body, headers={
        "X-OnceOnly-Subscription": "7", "X-OnceOnly-Timestamp": timestamp, "X-OnceOnly-Delivery": delivery,
        "X-OnceOnly-Signature": signature or expected_signature(secret, timestamp, delivery, body)}, trust_env=False)


def test_receiver_checks_signatures(receiver: Receiver) -> None:
    receiver.secrets[7] = "ows_secret"
    body = json.dumps({"subscription": 7, "delivery": "s7-v1-1-1", "changes": [{"seq": 1}]}).encode()
    assert _post(receiver, "ows_secret", body).status_code == 200
    assert _post(receiver, "ows_other", body).status_code == 401
    assert _post(receiver, "ows_secret", body, signature="0" * 64).status_code == 401
    assert receiver.seqs(7) == [1] and len(receiver.rejected) == 2


def test_receiver_modes(receiver: Receiver) -> None:
    receiver.secrets[7] = "ows_secret"
    body = json.dumps({"subscription": 7, "delivery": "s7-v1-1-1", "changes": []}).encode()
    receiver.mode = "error"
    assert _post(receiver, "ows_secret", body).status_code == 500
    receiver.down()
    with pytest.raises(httpx.ConnectError):
        _post(receiver, "ows_secret", body)
    receiver.up()
    assert _post(receiver, "ows_secret", body).status_code == 200


def test_documented_signature_example() -> None:
    """docs/exchange-subscriptions.md: the receiver's own HMAC-SM3 and the platform's agree on it."""
    from onceonly.exchange.webhooks import sign

    args = ("ows_example-secret", "1767225600", "s17-v1-101-102", b'{"subscription":17,"changes":[]}')
    documented = "9d323ea26279ac17ad4e3d4b81d4a258277f380ab8195309511296ab505e992a"
    assert expected_signature(*args) == sign(*args) == documented
