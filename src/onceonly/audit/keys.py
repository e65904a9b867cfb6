"""The platform's SM2 key pair that signs audit checkpoints and retention anchors.

Created on first use in the platform home: `audit_sm2.key` (the private key as 64 hex digits,
mode 0600, created with O_EXCL so that of several workers starting at once one writes it and
the others read it) and `audit_sm2_public.pem` (SubjectPublicKeyInfo, id-ecPublicKey on curve
SM2 1.2.156.10197.1.301) for auditors. Signatures follow GB/T 32918.2 (GM/T 0003.2) with SM3 and
the default signer ID 1234567812345678; they are stored as hex r‖s (64 bytes)."""

from __future__ import annotations

import base64
import os
import re
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import gmalg

from onceonly.errors import ConfigError
from onceonly.kit.crypto import sm3_hex

SIGNER_ID = b"1234567812345678"
PRIVATE_FILE = "audit_sm2.key"
PUBLIC_FILE = "audit_sm2_public.pem"
# DER of SEQUENCE { SEQUENCE { id-ecPublicKey, sm2 curve }, BIT STRING (65-byte point) } up to the point.
_SPKI_PREFIX = bytes.fromhex("3059301306072a8648ce3d020106082a811ccf5501822d034200")
_ORDER = 0xFFFFFFFEFFFFFFFFFFFFFFFFFFFFFFFF7203DF6B21C6052B53BBF40939D54123
_HEX_KEY = re.compile(r"[0-9a-fA-F]{64}")
_cache: dict[Path, KeyPair] = {}
_lock = threading.Lock()


@dataclass(frozen=True)
class PublicKey:
    point: bytes  # 04 ‖ x ‖ y

    @classmethod
    def from_bytes(cls, point: bytes) -> PublicKey:
        if len(point) != 65 or point[0] != 4 or not gmalg.SM2().verify_pk(point):
            raise ValueError("not an uncompressed SM2 public key point")
        return cls(point)

    @classmethod
    def from_pem(cls, text: str) -> PublicKey:
        body = "".join(line for line in text.strip().splitlines() if not line.startswith("-----"))
        try:
            der = base64.b64decode(body, validate=True)
        except ValueError:
            raise ValueError("not a PEM public key") from None
        if not der.startswith(_SPKI_PREFIX):
            raise ValueError("not an SM2 SubjectPublicKeyInfo")
        return cls.from_bytes(der[len(_SPKI_PREFIX):])

    @property
    def hex(self) -> str:
        return self.point.hex()

    @property
    def key_id(self) -> str:
        """Short fingerprint: the first 16 hex digits of SM3 over the point."""
        return sm3_hex(self.point)[:16]

    @property
    def pem(self) -> str:
        b64 = base64.b64encode(_SPKI_PREFIX + self.point).decode()
        lines = [b64[i:i + 64] for i in range(0, len(b64), 64)]
        return "-----BEGIN PUBLIC KEY-----\n" + "\n".join(lines) + "\n-----END PUBLIC KEY-----\n"

    def verify(self, message: bytes, signature: str) -> bool:
        if not re.fullmatch(r"[0-9a-f]{128}", signature or ""):
            return False
        raw = bytes.fromhex(signature)
        return bool(gmalg.SM2(uid=SIGNER_ID, pk=self.point).verify(message, raw[:32], raw[32:]))


@dataclass(frozen=True)
class KeyPair:
    private: bytes
    public: PublicKey

    @classmethod
    def from_private(cls, private: bytes) -> KeyPair:
        d = int.from_bytes(private, "big")
        if not 1 <= d <= _ORDER - 2:
            raise ValueError("private key out of range")
        return cls(private, PublicKey.from_bytes(gmalg.SM2().generate_pk(private)))

    def sign(self, message: bytes) -> str:
        r, s = gmalg.SM2(self.private, SIGNER_ID, self.public.point).sign(message)
        return r.rjust(32, b"\0").hex() + s.rjust(32, b"\0").hex()


def ensure_keypair(home: Path) -> KeyPair:
    """The key pair in `home`, created on first use; the public PEM is (re)written if missing."""
    path = (home / PRIVATE_FILE).resolve()
    with _lock:
        cached = _cache.get(path)
        if cached is not None:
            return cached
        pair = _load_or_create(path)
        _cache[path] = pair
    pem = home / PUBLIC_FILE
    if not pem.is_file() or pem.read_text(encoding="ascii", errors="replace") != pair.public.pem:
        tmp = pem.with_name(f".{PUBLIC_FILE}.{os.getpid()}.{threading.get_ident()}")
        tmp.write_text(pair.public.pem, encoding="ascii")
        os.replace(tmp, pem)  # atomic: a reader never sees half a key
    return pair


def load_public_key(home: Path) -> PublicKey | None:
    """The public key to verify with: from the private key if present, else the exported PEM;
    None when neither exists (nothing was ever signed here)."""
    private = home / PRIVATE_FILE
    if private.is_file():
        return ensure_keypair(home).public
    pem = home / PUBLIC_FILE
    if pem.is_file():
        return read_public_pem(pem)
    return None


def read_public_pem(path: Path) -> PublicKey:
    try:
        return PublicKey.from_pem(path.read_text(encoding="ascii", errors="replace"))
    except ValueError as exc:
        raise ConfigError(f"{path}: {exc}") from None


def _load_or_create(path: Path) -> KeyPair:
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    try:
        fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o600)
    except FileExistsError:
        return _read(path)
    private, _ = gmalg.SM2().generate_keypair()
    private = private.rjust(32, b"\0")
    with os.fdopen(fd, "w") as fh:
        fh.write(private.hex() + "\n")
        fh.flush()
        os.fsync(fh.fileno())
    return KeyPair.from_private(private)


def _read(path: Path) -> KeyPair:
    for _ in range(100):
        text = path.read_text(encoding="ascii", errors="replace").strip()
        if text:
            break
        time.sleep(0.01)  # the creator is between open and write
    if not _HEX_KEY.fullmatch(text):
        raise ConfigError(f"audit signing key {path}: not 64 hex digits; restore it from the backup")
    try:
        return KeyPair.from_private(bytes.fromhex(text))
    except ValueError as exc:
        raise ConfigError(f"audit signing key {path}: {exc}; restore it from the backup") from None
