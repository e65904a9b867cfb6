"""SM3 against the GM/T 0004-2012 vectors, tokens, argon2 password hashing and the complexity rule."""

from __future__ import annotations

import pytest

from onceonly.kit.crypto import new_token, sm3_hex, token_matches
from onceonly.kit.passwords import (
    RULE,
    complexity_problem,
    generate_password,
    hash_password,
    verify_password,
)

# GM/T 0004-2012 (GB/T 32905-2016) appendix A, examples 1 and 2.
SM3_ABC = "66c7f0f462eeedd9d1f2d46bdc10e4e24167c4875cf2f7a2297da02b8f4ba8e0"
SM3_ABCD16 = "debe9ff92275b8a138604889c18e5a4d6fdb70e5387e5765293dcba39c0c5732"


def test_sm3_standard_vector_abc() -> None:
    assert sm3_hex("abc") == SM3_ABC
    assert sm3_hex(b"abc") == SM3_ABC


def test_sm3_standard_vector_64_bytes() -> None:
    message = "abcd" * 16
    assert len(message) == 64
    assert sm3_hex(message) == SM3_ABCD16


def test_sm3_hashes_text_as_utf8() -> None:
    assert sm3_hex("政务") == sm3_hex("政务".encode())
    assert len(sm3_hex("")) == 64


def test_tokens_are_random_and_only_their_hash_matches() -> None:
    token, digest = new_token("oo")
    other, _ = new_token("oo")
    assert token.startswith("oo_") and token != other and len(token) > 40
    assert digest == sm3_hex(token) and token not in digest
    assert token_matches(token, digest)
    assert not token_matches(other, digest)


def test_argon2id_hash_and_verify() -> None:
    stored = hash_password("Correct-Horse-9")
    assert stored.startswith("$argon2id$")
    assert "Correct-Horse-9" not in stored
    assert verify_password(stored, "Correct-Horse-9")
    assert not verify_password(stored, "correct-horse-9")
    assert hash_password("Correct-Horse-9") != stored  # salted


def test_verify_against_garbage_hash_is_false_not_an_error() -> None:
    assert not verify_password("not-a-hash", "whatever")


@pytest.mark.parametrize("password", [
    "Sh0rt!",               # too short
    "alllowercaseletters",  # one class
    "lowercase123456",      # two classes
    "UPPERCASE!!!!!!",      # two classes
])
def test_weak_passwords_are_refused_with_the_rule(password: str) -> None:
    assert complexity_problem(password) == RULE


@pytest.mark.parametrize("password", ["Abcdefgh1234", "abcdefgh12!!", "政务数据共享Ab1!xyzw"])
def test_strong_passwords_pass(password: str) -> None:
    assert complexity_problem(password) is None


def test_generated_passwords_meet_the_rule() -> None:
    generated = {generate_password() for _ in range(200)}
    assert len(generated) == 200
    for password in generated:
        assert complexity_problem(password) is None
        assert len(password) >= 12
    assert complexity_problem(generate_password(24)) is None
