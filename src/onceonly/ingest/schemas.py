"""Request/response models of ingest: options of a batch and its report."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, Field

Mode = Literal["upsert", "replace"]


class IngestOptions(BaseModel):
    mode: Mode = "upsert"
    sheet: str | None = Field(default=None, max_length=100)
    encoding: str | None = Field(default=None, max_length=40)
    format: str | None = Field(default=None, max_length=10)
    mapping: dict[str, str | None] | None = None
    force: bool = False
    resubmit_of: int | None = Field(default=None, description="Batch whose quarantined rows this file corrects")


class RejectionOut(BaseModel):
    row: int
    field: str
    rule: str
    message: str
    message_en: str


class BatchReport(BaseModel):
    id: int
    resource: str
    version: int
    status: str
    mode: str
    file_name: str
    size: int
    sha256: str | None
    format: str | None
    encoding: str | None
    sheet: str | None
    read: int
    inserted: int
    updated: int
    unchanged: int
    deleted: int
    rejected: int
    rule_counts: dict[str, int]
    unmapped: list[str]
    rejections: list[RejectionOut] = Field(default_factory=list, description="The first rejected rows")
    error: str | None
    resubmit_of: int | None
    username: str
    started_at: datetime
    finished_at: datetime | None
    duration_ms: int | None
    rows_per_sec: float | None
    progress: dict[str, Any] | None = None


class QuarantinedRow(BaseModel):
    row: int
    raw: dict[str, Any]
    problems: list[dict[str, str]]
    resolved_by: int | None
