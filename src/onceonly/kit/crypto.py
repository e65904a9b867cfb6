"""Chinese commercial cryptography helpers (SM3 hashing) and random secrets."""

from __future__ import annotations

import hmac
import secrets

from cryptography.hazmat.primitives import hashes


def sm3_hex(data: bytes | str) -> str:
    """SM3 digest (GB/T 32905) as lowercase hex."""
    if isinstance(data, str):
        data = data.encode("utf-8")
    digest = hashes.Hash(hashes.SM3())
    digest.update(data)
    return digest.finalize().hex()


def new_token(prefix: str) -> tuple[str, str]:
    """A high-entropy bearer token and its SM3 hash; only the hash is stored."""
    token = f"{prefix}_{secrets.token_urlsafe(32)}"
    return token, sm3_hex(token)


def token_matches(token: str, stored_hash: str) -> bool:
    return hmac.compare_digest(sm3_hex(token), stored_hash)
