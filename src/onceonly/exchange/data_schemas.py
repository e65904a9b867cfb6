"""Response and request shapes of the data plane, for OpenAPI and for building answers.
Record values are in their wire form: text, numbers, booleans, dates `YYYY-MM-DD`, instants
`YYYY-MM-DDTHH:MM:SS.ffffffZ` (UTC), masked values as text, null."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, Field

Claim = str | int | float | bool | None
MAX_BATCH = 1000  # records per verify call
MAX_PAGE = 1000  # rows per query page and change-feed page


class VerifyIn(BaseModel):
    records: list[dict[str, Claim]] = Field(
        min_length=1, max_length=MAX_BATCH,
        description="Up to 1,000 records, each with the resource's key fields (to find the record) and the claimed "
                    "values of other fields; every field named must be granted for verify.",
        examples=[[{"citizen_id": "11010519900101002x", "name": "张三明"}]])


class VerifyResult(BaseModel):
    exists: bool = Field(description="A live record with this key exists within the grant")
    match: bool = Field(description="It exists and every claimed field matches")
    fields: dict[str, bool] = Field(description="Per claimed (non-key) field: whether it matches")


class VerifyOut(BaseModel):
    service: str
    count: int = Field(description="Records checked (what the daily quota counts)")
    results: list[VerifyResult] = Field(description="One result per record, in request order")


class RecordsOut(BaseModel):
    service: str
    fields: list[str] = Field(description="The fields each record carries, in the resource's order")
    count: int
    records: list[dict[str, Any]]
    next_cursor: str | None = Field(description="Pass as `cursor` for the next page; null on the last page")
    next: str | None = Field(description="The next page's path and query; null on the last page")


class RecordOut(BaseModel):
    service: str
    key: str = Field(description="The record's key, as in the path")
    record: dict[str, Any]


class ChangeOut(BaseModel):
    seq: int = Field(description="Change-log sequence of the resource version")
    op: Literal["I", "U", "D"]
    key: str | None = Field(description="The key (masked as the grant says); null when the key fields are not "
                                        "granted")
    record: dict[str, Any] | None = Field(description="The row as it is now, granted fields only, masked; null for "
                                                      "D, and for I/U whose row has been deleted since")


class ChangesOut(BaseModel):
    service: str
    resource: str
    version: int
    since: int
    next_since: int = Field(description="Pass as `since` for the next page (the last sequence examined)")
    last_seq: int = Field(description="The log's last sequence now")
    has_more: bool
    changes: list[ChangeOut]
