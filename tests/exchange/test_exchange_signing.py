"""Request signing and `ExchangeCaller` over HTTP: a valid signature, clock skew, a replayed
nonce, a changed body, path or query, missing headers; sealed secrets."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from exchange_factories import MASTER, add_system
from fastapi.testclient import TestClient
from pydantic import BaseModel

from core_factories import CLI, add_org
from onceonly.app import create_app
from onceonly.db import Database
from onceonly.exchange import credentials, signing
from onceonly.exchange.caller import ExchangeCaller
from onceonly.ops.setup import initialize

TARGET = "/api/v1/test-exchange/echo"


class Echo(BaseModel):
    value: str = ""


@dataclass
class Client:
    http: TestClient
    system: str
    key: str
    secret: str

    def call(self, body: bytes = b'{"value": "x"}', *, target: str = TARGET, sign_target: str | None = None,
             sign_body: bytes | None = None, now: datetime | None = None, nonce: str | None = None,
             headers: dict[str, Any] | None = None, method: str = "POST") -> Any:
        signed = signing.signed_headers(self.secret, method, sign_target or target,
                                        body if sign_body is None else sign_body, now=now, nonce=nonce)
        all_headers = {"Authorization": f"Bearer {self.key}", "Content-Type": "application/json", **signed,
                       **(headers or {})}
        return self.http.request(method, target, content=body, headers=all_headers)


@pytest.fixture(scope="module")
def client(db: Database) -> Iterator[Client]:
    initialize(db)
    app = create_app(db.settings, db)
    app.state.secret = MASTER

    @app.post(TARGET)
    def echo(data: Echo, system: ExchangeCaller) -> dict[str, str]:
        return {"system": system.code, "value": data.value}

    @app.get(TARGET)
    def echo_get(system: ExchangeCaller) -> dict[str, str]:
        return {"system": system.code}

    with db.session(write=True) as s:
        system, secret = add_system(s, add_org(s), signing=True)
        _, key = credentials.create_key(s, CLI, system)
    assert secret is not None
    with TestClient(app) as http:
        yield Client(http, system.code, key, secret)


def problem(response: Any, status: int = 401) -> str:
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/problem+json")
    return str(response.json()["detail"])


def test_signed_request_passes_and_body_still_parses(client: Client) -> None:
    r = client.call(b'{"value": "\xe5\xbc\xa0"}')
    assert r.status_code == 200, r.text
    assert r.json() == {"system": client.system, "value": "张"}


def test_get_with_query_signs_path_and_query(client: Client) -> None:
    r = client.call(b"", method="GET", target=f"{TARGET}?region=341802&b=%E5%BC%A0")
    assert r.status_code == 200, r.text
    detail = problem(client.call(b"", method="GET", target=f"{TARGET}?region=341803",
                                 sign_target=f"{TARGET}?region=341802"))
    assert "signature does not match" in detail


def test_skewed_timestamp_is_refused(client: Client) -> None:
    now = datetime.now(UTC)
    assert client.call(now=now - timedelta(seconds=290)).status_code == 200
    assert client.call(now=now + timedelta(seconds=290)).status_code == 200
    for skew in (timedelta(seconds=-320), timedelta(seconds=320), timedelta(days=400)):
        assert "window is ±300 s" in problem(client.call(now=now + skew))


def test_replayed_nonce_is_refused(client: Client) -> None:
    nonce = "replay-nonce-0123456789"
    assert client.call(nonce=nonce).status_code == 200
    assert "already used" in problem(client.call(nonce=nonce))
    # the same nonce from another moment is still a replay
    assert "already used" in problem(client.call(nonce=nonce, now=datetime.now(UTC) - timedelta(seconds=100)))


def test_changed_body_or_method_is_refused(client: Client) -> None:
    assert "signature does not match" in problem(client.call(b'{"value": "y"}', sign_body=b'{"value": "x"}'))
    assert "signature does not match" in problem(client.call(target=TARGET, sign_target=TARGET + "x"))


def test_missing_or_malformed_headers(client: Client) -> None:
    r = client.http.post(TARGET, json={"value": "x"}, headers={"Authorization": f"Bearer {client.key}"})
    assert "signs its requests" in problem(r)
    for name, value, fragment in (
        (signing.TIMESTAMP_HEADER, "yesterday", "Unix seconds"),
        (signing.NONCE_HEADER, "short", "16-64 characters"),
        (signing.NONCE_HEADER, "x" * 65, "16-64 characters"),
        (signing.SIGNATURE_HEADER, "0" * 64, "signature does not match"),
        (signing.SIGNATURE_HEADER, ("é" * 64).encode("latin-1"), "signature does not match"),
    ):
        assert fragment in problem(client.call(headers={name: value}))


def test_missing_or_wrong_key(client: Client) -> None:
    r = client.http.post(TARGET, json={"value": "x"})
    assert "Authorization: Bearer" in problem(r)
    r = client.http.post(TARGET, json={"value": "x"}, headers={"Authorization": "Bearer ook_nothing"})
    assert problem(r) == "unknown API key"
    body = client.call(headers={"Authorization": "Basic abc"}).json()
    assert body["type"] == "/problems/exchange-unauthenticated"


def test_canonical_string_example() -> None:
    """The example of docs/exchange.md, so the documentation stays true."""
    canonical = signing.canonical_string("get", "/api/v1/exchange/S0001/records?region=341802", "1767225600",
                                         "3f9c2a7b1e4d5c6a", b"")
    assert canonical == ("ONCEONLY-HMAC-SM3\nGET\n/api/v1/exchange/S0001/records?region=341802\n1767225600\n"
                         "3f9c2a7b1e4d5c6a\n1ab21d8355cfa17f8e61194831e81a8f22bec8c728fefb747ed035eb5082aa2b")
    signature = signing.sign("oos_example-secret", "GET", "/api/v1/exchange/S0001/records?region=341802",
                             "1767225600", "3f9c2a7b1e4d5c6a")
    assert signature == signing.hmac_sm3_hex("oos_example-secret", canonical)
    assert signature == "93348eeee67913d883b0cb65e05eaf4c222bcc6556a4252daeb3811fb33fcc22"
    body = b'{"citizen_id":"11010519900101002X"}'
    assert signing.canonical_string("POST", "/api/v1/exchange/S0002/verify", "1767225600", "3f9c2a7b1e4d5c6a",
                                    body).endswith("\n5737b414e300427252eb49b28e0419e28bce8bc64e81996c0b254b406b91e476")
    assert signing.sign("oos_example-secret", "POST", "/api/v1/exchange/S0002/verify", "1767225600",
                        "3f9c2a7b1e4d5c6a", body) == "7c39f12b621b397babb7e65093327d49679300e28630ffd45a9f79ac73702410"


def test_hmac_sm3_is_rfc2104_over_sm3() -> None:
    from onceonly.kit.crypto import sm3_hex

    key, msg = b"key", b"The quick brown fox jumps over the lazy dog"
    block = 64
    k = key.ljust(block, b"\0")
    inner = bytes.fromhex(sm3_hex(bytes(b ^ 0x36 for b in k) + msg))
    assert signing.hmac_sm3_hex(key, msg) == sm3_hex(bytes(b ^ 0x5C for b in k) + inner)


def test_sealed_secret_round_trip_and_binding() -> None:
    sealed = signing.seal("oos_secret", MASTER, "sys-a")
    assert "oos_secret" not in sealed and sealed.startswith("sm4gcm1:")
    assert signing.unseal(sealed, MASTER, "sys-a") == "oos_secret"
    assert signing.unseal(sealed, MASTER, "sys-b") is None  # bound to its system
    assert signing.unseal(sealed, "another platform secret", "sys-a") is None
    assert signing.unseal(sealed[:-4] + "AAAA", MASTER, "sys-a") is None
    assert signing.unseal("v0:xyz", MASTER, "sys-a") is None
    assert signing.unseal("sm4gcm1:not base64!", MASTER, "sys-a") is None


def test_unreadable_secret_refuses_with_advice(client: Client, db: Database) -> None:
    from onceonly.exchange.systems import get_system

    with db.session(write=True) as s:
        system = get_system(s, client.system)
        saved = system.signing_secret_enc
        system.signing_secret_enc = signing.seal("oos_other", "a different platform secret", system.code)
    try:
        assert "no usable signing secret" in problem(client.call())
    finally:
        with db.session(write=True) as s:
            get_system(s, client.system).signing_secret_enc = saved


def test_unsigned_system_may_still_sign(db: Database, client: Client) -> None:
    with db.session(write=True) as s:
        system, secret = add_system(s, add_org(s), signing=False)
        _, key = credentials.create_key(s, CLI, system)
    assert secret is None
    r = client.http.post(TARGET, json={"value": "x"}, headers={"Authorization": f"Bearer {key}"})
    assert r.status_code == 200 and r.json()["system"] == system.code
    # a signature sent by a system without a secret cannot be checked: refused, not ignored
    other = Client(client.http, system.code, key, "oos_guess")
    assert "no usable signing secret" in problem(other.call())
