"""Password hashing (argon2id), the complexity rule and generated passwords."""

from __future__ import annotations

import secrets
import string

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError

_hasher = PasswordHasher()
MIN_LENGTH = 12
RULE = (
    "密码至少12位，且包含大写字母、小写字母、数字和符号中的三类 / "
    "at least 12 chars from 3 of: upper, lower, digit, symbol"
)


def complexity_problem(password: str) -> str | None:
    """Return why a password is too weak, or None."""
    classes = sum(
        any(pred(c) for c in password)
        for pred in (str.isupper, str.islower, str.isdigit, lambda c: not c.isalnum())
    )
    if len(password) < MIN_LENGTH or classes < 3:
        return RULE
    return None


def hash_password(password: str) -> str:
    return _hasher.hash(password)


def verify_password(stored: str, password: str) -> bool:
    try:
        return _hasher.verify(stored, password)
    except (VerificationError, InvalidHashError):
        return False


def generate_password(length: int = 16) -> str:
    """A random password that always meets the complexity rule."""
    alphabet = string.ascii_letters + string.digits + "-_.!@#%"
    while True:
        candidate = "".join(secrets.choice(alphabet) for _ in range(length))
        if complexity_problem(candidate) is None and all(
            any(pred(c) for c in candidate) for pred in (str.isupper, str.islower, str.isdigit)
        ):
            return candidate
