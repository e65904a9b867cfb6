"""SM3 and SM2 as the audit log uses them, against the standards' published examples, OpenSSL,
and the key files in the platform home."""

from __future__ import annotations

import os
import shutil
import stat
import subprocess
import sys
from pathlib import Path

import gmalg
import pytest
from gmalg.ellipticcurve import ECDLP
from gmalg.sm2 import SM2Core

from onceonly.audit.keys import (
    PRIVATE_FILE,
    PUBLIC_FILE,
    SIGNER_ID,
    KeyPair,
    PublicKey,
    ensure_keypair,
    read_public_pem,
)
from onceonly.errors import ConfigError
from onceonly.kit.crypto import sm3_hex

# GB/T 32905-2016 (GM/T 0004-2012) Appendix A, examples 1 and 2.
SM3_VECTORS = [
    (b"abc", "66c7f0f462eeedd9d1f2d46bdc10e4e24167c4875cf2f7a2297da02b8f4ba8e0"),
    (b"abcd" * 16, "debe9ff92275b8a138604889c18e5a4d6fdb70e5387e5765293dcba39c0c5732"),
]

# GM/T 0003.5-2012 / GB/T 32918.5-2017 Annex A: signature example on the recommended curve.
D = bytes.fromhex("3945208F7B2144B13F36E38AC6D39F95889393692860B51A42FB81EF4DF7C5B8")
P = bytes.fromhex("04" "09F9DF311E5421A150DD7D161E4BC5C672179FAD1833FC076BB08FF356F35020"
                  "CCEA490CE26775A52DC6EA718CC1AA600AED05FBF35E084A6632F6072DA9AD13")
K = 0x59276E27D506861A16680F3AD9C02DCCEF3CC1FA3CDBE4CE6D54B80DEAC1BC21
MESSAGE = b"message digest"
R_S = ("F5A03B0648D2C4630EEAC513E1BB81A15944DA3827D5B74143AC7EACEEE720B3"
       "B1B6AA29DF212FD8763182BC0D421CA1BB9038FD1F7F42D4840B69C485BBC1AA").lower()

# GM/T 0003.2-2012 / GB/T 32918.2-2016 Annex A: the example on the 256-bit test curve over Fp.
TEST_CURVE = ECDLP(
    0x8542D69E4C044F18E8B92435BF6FF7DE457283915C45517D722EDB8B08F1DFC3,
    0x787968B4FA32C3FD2417842E73BBFEFF2F3C848B6831D7E0EC65228B3937E498,
    0x63E4C6D3B23B0C849CF84241484BFE48F61D59A5B16BA06E6E12D1DA27C5249A,
    (0x421DEBD61B62EAB6746434EBC3CC315E32220B3BADD50BDC4C4E6C147FEDD43D,
     0x0680512BCBB42C07D47349D2153B70C4E5D7FDFCBFA36EA1A85841B9E46E09A2),
    0x8542D69E4C044F18E8B92435BF6FF7DD297720630485628D5AE74EE7C32E79B7,
)
ALICE_ID = b"ALICE123@YAHOO.COM"
ALICE_D = 0x128B2FA8BD433C6C068C8D803DFF79792A519A55171B1B650C23661D15897263
ALICE_P = (0x0AE4C7798AA0F119471BEE11825BE46202BB79E2A5844495E97C04FF4DF2548A,
           0x7C0240F88F1CD4E16352A73C17B7F16F07353E53A176D684A9FE0C6BB798E857)
ALICE_K = 0x6CB28D99385C175C94F94E934817663FC176D925DD72B727260DBAAE1FB2F96F
ALICE_R = 0x40F1EC59F793D9F49E09DCEF49130D4194F79FB1EED2CAA55BACDB49C4E755D1
ALICE_S = 0x6FC6DAC32C5D5CF10C77DFB20F7C2EB667A457872FB09EC56327A67EC7DEEBE7


@pytest.mark.parametrize(("message", "digest"), SM3_VECTORS)
def test_sm3_standard_vectors(message: bytes, digest: str) -> None:
    """Both SM3s in play: the platform's (record hashes) and the one inside SM2 (Z and e)."""
    assert sm3_hex(message) == digest
    h = gmalg.SM3()
    h.update(message)
    assert h.value().hex() == digest


def test_sm2_recommended_curve_example_verifies() -> None:
    key = PublicKey.from_bytes(P)
    assert KeyPair.from_private(D).public == key  # the published public key from the published private key
    assert key.verify(MESSAGE, R_S)
    assert not key.verify(MESSAGE + b".", R_S)
    assert not key.verify(MESSAGE, R_S[:-1] + ("0" if R_S[-1] != "0" else "1"))
    assert not key.verify(MESSAGE, R_S.upper())  # the stored form is lowercase hex only
    assert not key.verify(MESSAGE, "00" * 64)


def test_sm2_recommended_curve_example_signs_as_published() -> None:
    """With the standard's k, the library produces exactly the standard's (r, s)."""
    r, s = gmalg.SM2(D, SIGNER_ID, P, rnd_fn=lambda bits: K).sign(MESSAGE)
    assert (r + s).hex() == R_S


def test_sm2_test_curve_example_from_part_2() -> None:
    core = SM2Core(TEST_CURVE, gmalg.SM3(), lambda bits: ALICE_K)
    assert core.generate_pk(ALICE_D) == ALICE_P
    za = core.entity_info(ALICE_ID, ALICE_P)
    assert za.hex().upper() == "F4A38489E32B45B6F876E3AC2168CA392362DC8F23459C1D1146FC3DBFB7BC9A"
    assert core.sign(MESSAGE, ALICE_D, ALICE_ID, ALICE_P) == (ALICE_R, ALICE_S)
    assert core.verify(MESSAGE, ALICE_R, ALICE_S, ALICE_ID, ALICE_P)
    assert not core.verify(b"message digesT", ALICE_R, ALICE_S, ALICE_ID, ALICE_P)


def test_sign_and_verify_round_trip() -> None:
    pair = KeyPair.from_private(D)
    other = KeyPair.from_private(bytes.fromhex("01" * 32))
    signature = pair.sign(b"checkpoint")
    assert len(signature) == 128 and signature == signature.lower()
    assert pair.public.verify(b"checkpoint", signature)
    assert not other.public.verify(b"checkpoint", signature)
    assert pair.sign(b"checkpoint") != signature  # a fresh random k each time


def test_public_key_pem_is_standard_spki() -> None:
    """The DER is SubjectPublicKeyInfo with id-ecPublicKey and the SM2 curve OID, as OpenSSL and
    other tools write it (this PEM of the Part 2 example key is one of theirs)."""
    point = bytes.fromhex("04" f"{ALICE_P[0]:064X}{ALICE_P[1]:064X}")
    assert PublicKey(point).pem == (
        "-----BEGIN PUBLIC KEY-----\n"
        "MFkwEwYHKoZIzj0CAQYIKoEcz1UBgi0DQgAECuTHeYqg8RlHG+4RglvkYgK7eeKl\n"
        "hESV6XwE/03yVIp8AkD4jxzU4WNSpzwXt/FvBzU+U6F21oSp/gxrt5joVw==\n"
        "-----END PUBLIC KEY-----\n")
    key = PublicKey.from_bytes(P)
    assert PublicKey.from_pem(key.pem) == key
    with pytest.raises(ValueError):
        PublicKey.from_pem(PublicKey(point).pem)  # not on the SM2 curve
    with pytest.raises(ValueError):
        PublicKey.from_bytes(b"\x04" + bytes(64))


def test_key_pair_created_once_private_and_exported(tmp_path: Path) -> None:
    home = tmp_path / "home"
    pair = ensure_keypair(home)
    private = home / PRIVATE_FILE
    assert stat.S_IMODE(private.stat().st_mode) == 0o600
    assert private.read_text().strip() == pair.private.hex()
    assert read_public_pem(home / PUBLIC_FILE) == pair.public
    assert ensure_keypair(home) == pair


def test_concurrent_first_use_makes_one_key(tmp_path: Path) -> None:
    """Several workers starting at once: O_EXCL lets one create the key, the others read it."""
    home = tmp_path / "home"
    code = ("import sys; from pathlib import Path; from onceonly.audit.keys import ensure_keypair; "
            "print(ensure_keypair(Path(sys.argv[1])).public.key_id)")
    procs = [subprocess.Popen([sys.executable, "-c", code, str(home)], stdout=subprocess.PIPE, text=True)
             for _ in range(4)]
    ids = {p.communicate(timeout=60)[0].strip() for p in procs}
    assert all(p.returncode == 0 for p in procs)
    assert len(ids) == 1 and ids != {""}


@pytest.mark.parametrize("content", ["", "not hex", "00" * 32, "ff" * 32])
def test_bad_key_file_is_one_clear_error(tmp_path: Path, content: str) -> None:
    home = tmp_path / "home"
    home.mkdir()
    (home / PRIVATE_FILE).write_text(content)
    with pytest.raises(ConfigError, match=PRIVATE_FILE) as info:
        ensure_keypair(home)
    assert "\n" not in info.value.message


def _der_signature(signature: str) -> bytes:
    def integer(v: int) -> bytes:
        raw = v.to_bytes(v.bit_length() // 8 + 1, "big")
        return b"\x02" + bytes([len(raw)]) + raw

    body = integer(int(signature[:64], 16)) + integer(int(signature[64:], 16))
    return b"\x30" + bytes([len(body)]) + body


def _from_der(der: bytes) -> str:
    assert der[0] == 0x30
    i, values = 2, []
    for _ in range(2):
        n = der[i + 1]
        values.append(int.from_bytes(der[i + 2:i + 2 + n], "big"))
        i += 2 + n
    return f"{values[0]:064x}{values[1]:064x}"


def _openssl() -> str:
    path = shutil.which("openssl")
    if path is None:
        pytest.skip("openssl not installed")
    probe = subprocess.run([path, "list", "-public-key-algorithms"], capture_output=True, text=True)
    if "SM2" not in probe.stdout:
        pytest.skip("this openssl has no SM2")
    return path


def test_openssl_verifies_our_signatures(tmp_path: Path) -> None:
    openssl = _openssl()
    pair = ensure_keypair(tmp_path)
    (tmp_path / "msg").write_bytes(b"checkpoint 42")
    (tmp_path / "sig").write_bytes(_der_signature(pair.sign(b"checkpoint 42")))
    base = [openssl, "pkeyutl", "-verify", "-pubin", "-inkey", str(tmp_path / PUBLIC_FILE), "-rawin",
            "-sigfile", str(tmp_path / "sig"), "-digest", "sm3", "-pkeyopt", f"distid:{SIGNER_ID.decode()}"]
    assert subprocess.run([*base, "-in", str(tmp_path / "msg")], capture_output=True).returncode == 0
    (tmp_path / "msg").write_bytes(b"checkpoint 43")
    assert subprocess.run([*base, "-in", str(tmp_path / "msg")], capture_output=True).returncode != 0


def test_we_verify_openssl_signatures(tmp_path: Path) -> None:
    openssl = _openssl()
    key, pub, msg, sig = (str(tmp_path / n) for n in ("k.pem", "p.pem", "msg", "sig"))
    subprocess.run([openssl, "genpkey", "-algorithm", "SM2", "-out", key], check=True, capture_output=True)
    subprocess.run([openssl, "pkey", "-in", key, "-pubout", "-out", pub], check=True, capture_output=True)
    Path(msg).write_bytes(b"anchor 7")
    subprocess.run([openssl, "pkeyutl", "-sign", "-inkey", key, "-rawin", "-in", msg, "-digest", "sm3",
                    "-pkeyopt", f"distid:{SIGNER_ID.decode()}", "-out", sig], check=True, capture_output=True)
    public = read_public_pem(Path(pub))
    assert public.verify(b"anchor 7", _from_der(Path(sig).read_bytes()))
    assert not public.verify(b"anchor 8", _from_der(Path(sig).read_bytes()))
    assert os.path.getsize(sig) > 0
