"""Audit API and CLI shapes: records, filters, pages, the verification report, the public key."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, Field

Kind = Literal["call", "staff", "delivery"]
ProblemKind = Literal["altered", "reordered", "deleted", "checkpoint", "anchor", "head"]
CODE_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.:\-]{0,63}$"


class AuditRecordOut(BaseModel):
    """One record exactly as stored (and hashed): with `hash` removed, its canonical form is
    what docs/audit.md describes."""

    seq: int
    time: datetime
    kind: str
    system: str | None
    org: str | None
    username: str | None
    service: str | None
    mode: str | None
    action: str | None
    target: str | None
    purpose: str | None
    request_digest: str | None
    status: int | None
    records: int | None
    bytes: int | None
    latency_ms: int | None
    ip: str | None
    detail: dict[str, Any]
    prev_hash: str
    hash: str


class AuditFilter(BaseModel):
    since: datetime | None = None
    until: datetime | None = None
    system: str | None = Field(default=None, pattern=CODE_PATTERN)
    service: str | None = Field(default=None, pattern=CODE_PATTERN)
    kind: Kind | None = None
    status: int | None = Field(default=None, ge=100, le=599)


class RecordPage(BaseModel):
    """Keyset page: pass `next_after` as `after` for the next one (null at the end)."""

    items: list[AuditRecordOut]
    next_after: int | None
    limit: int


class Problem(BaseModel):
    kind: ProblemKind
    seq: int | None
    message: str


class VerifyReport(BaseModel):
    ok: bool
    summary: str
    records: int = Field(description="records whose hash and link were checked")
    first_seq: int | None
    last_seq: int | None
    head_seq: int
    checkpoints: int = Field(description="checkpoints whose SM2 signature verified")
    anchors: int = Field(description="retention anchors (records up to the last one were pruned)")
    anchor_seq: int | None
    public_key_id: str | None
    problem_count: int
    problems: list[Problem] = Field(
        description="the first 100 problems in the order found (seq order); the first is where it broke")
    seconds: float


class PublicKeyOut(BaseModel):
    algorithm: str = "SM2"
    curve: str = "SM2 (1.2.156.10197.1.301), GB/T 32918.5"
    signer_id: str
    key_id: str
    public_key_hex: str
    pem: str
    signature_format: str = "hex r||s, 64 bytes; SM3 with Z computed from signer_id"
