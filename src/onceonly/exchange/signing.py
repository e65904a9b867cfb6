"""Request signing (HMAC-SM3) for systems that require it, and the sealing of signing secrets.

A signed request carries three headers:

    X-OnceOnly-Timestamp: 1767225600          (Unix seconds; within ±300 s of the server's clock)
    X-OnceOnly-Nonce:     3f9c2a7b1e4d5c6a     (16-64 of A-Z a-z 0-9 _ -; never reused by the system)
    X-OnceOnly-Signature: <64 hex>             (HMAC-SM3 of the canonical string, key = signing secret)

The canonical string is six lines joined by "\\n" (no trailing newline):

    ONCEONLY-HMAC-SM3
    <METHOD, upper case>
    <path and query exactly as sent, e.g. /api/v1/exchange/S0001/records?region=341802>
    <timestamp>
    <nonce>
    <SM3 hex digest of the body bytes; of the empty string when there is no body>

HMAC needs the secret itself, so it cannot be stored hashed: it is sealed with SM4-GCM under a
key derived (HMAC-SM3) from the platform secret, bound to the system's code. Changing the
platform secret makes sealed secrets unreadable; such systems get a new one with
`rotate_signing_secret`."""

from __future__ import annotations

import base64
import hmac
import re
import secrets
from collections.abc import Mapping
from datetime import datetime, timedelta

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives import hmac as crypto_hmac
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
from sqlalchemy.orm import Session

from onceonly.exchange import repository as repo
from onceonly.exchange.errors import CallerRejected
from onceonly.exchange.models import System
from onceonly.kit.crypto import sm3_hex

TIMESTAMP_HEADER = "X-OnceOnly-Timestamp"
NONCE_HEADER = "X-OnceOnly-Nonce"
SIGNATURE_HEADER = "X-OnceOnly-Signature"
SCHEME = "ONCEONLY-HMAC-SM3"
WINDOW_SECONDS = 300
NONCE_RE = re.compile(r"^[A-Za-z0-9_-]{16,64}$")
_SEAL_VERSION = "sm4gcm1"


def hmac_sm3_hex(key: bytes | str, message: bytes | str) -> str:
    if isinstance(key, str):
        key = key.encode("utf-8")
    if isinstance(message, str):
        message = message.encode("utf-8")
    mac = crypto_hmac.HMAC(key, hashes.SM3())
    mac.update(message)
    return mac.finalize().hex()


def canonical_string(method: str, target: str, timestamp: str, nonce: str, body: bytes) -> str:
    return "\n".join((SCHEME, method.upper(), target, timestamp, nonce, sm3_hex(body)))


def sign(secret: str, method: str, target: str, timestamp: str, nonce: str, body: bytes = b"") -> str:
    """The signature a client sends (also what the server recomputes)."""
    return hmac_sm3_hex(secret, canonical_string(method, target, timestamp, nonce, body))


def signed_headers(secret: str, method: str, target: str, body: bytes = b"", *, now: datetime | None = None,
                   nonce: str | None = None) -> dict[str, str]:
    """Client helper: the three headers for a request (tests and client examples use it)."""
    timestamp = str(int((now or datetime.now().astimezone()).timestamp()))
    nonce = nonce or secrets.token_hex(16)
    return {TIMESTAMP_HEADER: timestamp, NONCE_HEADER: nonce,
            SIGNATURE_HEADER: sign(secret, method, target, timestamp, nonce, body)}


# -- sealing the secret --------------------------------------------------------------------------

def new_signing_secret() -> str:
    return f"oos_{secrets.token_urlsafe(32)}"


def _seal_key(master: str) -> bytes:
    return bytes.fromhex(hmac_sm3_hex(master, "onceonly exchange signing secrets v1"))[:16]


def seal(secret: str, master: str, system_code: str) -> str:
    iv = secrets.token_bytes(12)
    enc = Cipher(algorithms.SM4(_seal_key(master)), modes.GCM(iv)).encryptor()
    enc.authenticate_additional_data(f"exchange_systems:{system_code}".encode())
    data = enc.update(secret.encode("utf-8")) + enc.finalize()
    return f"{_SEAL_VERSION}:{base64.b64encode(iv + data + enc.tag).decode('ascii')}"


def unseal(sealed: str, master: str, system_code: str) -> str | None:
    """The secret, or None when it cannot be read (other platform secret, tampered row)."""
    version, _, payload = sealed.partition(":")
    if version != _SEAL_VERSION:
        return None
    try:
        raw = base64.b64decode(payload, validate=True)
        iv, data, tag = raw[:12], raw[12:-16], raw[-16:]
        dec = Cipher(algorithms.SM4(_seal_key(master)), modes.GCM(iv, tag)).decryptor()
        dec.authenticate_additional_data(f"exchange_systems:{system_code}".encode())
        return (dec.update(data) + dec.finalize()).decode("utf-8")
    except (ValueError, InvalidTag):
        return None


# -- verifying a request -----------------------------------------------------------------------

def sent(headers: Mapping[str, str]) -> bool:
    """Whether the request carries any of the signature headers. Asked with `in` first: most
    calls carry none, and Starlette's `Headers.get` of an absent name costs a KeyError."""
    return any(n in headers and headers.get(n) for n in (TIMESTAMP_HEADER, NONCE_HEADER, SIGNATURE_HEADER))


def wanted(system: System, headers: Mapping[str, str]) -> bool:
    """Whether `check_request` has a signature to check (the system requires one or sent one)."""
    return system.signing_required or sent(headers)


def check_request(
    session: Session, system: System, *, method: str, target: str, headers: Mapping[str, str], body: bytes,
    master: str, now: datetime,
) -> bool:
    """Verify the signature when the system requires one (or sends one anyway); True if a
    signature was checked. The nonce is claimed only after the signature is valid, so nobody
    without the secret can burn a system's nonces."""
    if not wanted(system, headers):
        return False
    sent = {name: headers.get(name) for name in (TIMESTAMP_HEADER, NONCE_HEADER, SIGNATURE_HEADER)}
    if not all(sent.values()):
        raise CallerRejected(f"this system signs its requests: send {TIMESTAMP_HEADER}, {NONCE_HEADER} and "
                             f"{SIGNATURE_HEADER}")
    timestamp, nonce, signature = (str(v) for v in sent.values())
    if not timestamp.isascii() or not timestamp.isdigit() or len(timestamp) > 12:
        raise CallerRejected(f"{TIMESTAMP_HEADER} must be Unix seconds", field=TIMESTAMP_HEADER)
    skew = int(timestamp) - int(now.timestamp())
    if abs(skew) > WINDOW_SECONDS:
        raise CallerRejected(f"{TIMESTAMP_HEADER} is {abs(skew)} s off the server's clock; the window is "
                             f"±{WINDOW_SECONDS} s", field=TIMESTAMP_HEADER)
    if not NONCE_RE.match(nonce):
        raise CallerRejected(f"{NONCE_HEADER} must be 16-64 characters of A-Z a-z 0-9 _ -", field=NONCE_HEADER)
    secret = unseal(system.signing_secret_enc, master, system.code) if system.signing_secret_enc else None
    if secret is None:
        raise CallerRejected("this system has no usable signing secret; its department admin must set a new one")
    expected = sign(secret, method, target, timestamp, nonce, body)
    if not hmac.compare_digest(expected.encode(), signature.strip().lower().encode("utf-8", "replace")):
        raise CallerRejected("signature does not match the request (method, path and query, timestamp, nonce, "
                             "body)", field=SIGNATURE_HEADER)
    repo.prune_nonces(session, system.id, now)
    expires = max(now, datetime.fromtimestamp(int(timestamp), now.tzinfo)) + timedelta(seconds=WINDOW_SECONDS)
    if not repo.claim_nonce(session, system.id, nonce, expires):
        raise CallerRejected(f"{NONCE_HEADER} was already used: a replayed request is refused", field=NONCE_HEADER)
    return True
