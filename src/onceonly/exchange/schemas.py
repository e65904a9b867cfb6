"""Request/response models of the exchange management API, and the shapes of its codes.
Every string is bounded, so hostile input ends as a 422 naming the field, never in a query."""

from __future__ import annotations

import re
import unicodedata
from datetime import date, datetime
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BaseModel, Field

from onceonly.catalog.vocab import ShareMode

SYSTEM_CODE = r"^[A-Za-z][A-Za-z0-9_.-]{1,39}$"
SERVICE_CODE = r"^[A-Za-z][A-Za-z0-9_-]{1,39}$"
FIELD_NAME = r"^[a-z][a-z0-9_]{0,62}$"
SYSTEM_CODE_RE = re.compile(SYSTEM_CODE)
SERVICE_CODE_RE = re.compile(SERVICE_CODE)
FIELD_NAME_RE = re.compile(FIELD_NAME)



def _printable(value: str) -> str:
    """No control characters (NUL and the like): PostgreSQL refuses NUL, SQLite would keep it."""
    if any(unicodedata.category(c) == "Cc" and c not in "\n\r\t" for c in value):
        raise ValueError("must not contain control characters")
    return value


SystemCode = Annotated[str, Field(pattern=SYSTEM_CODE, max_length=40, description="e.g. rsj-shebao")]
ServiceCode = Annotated[str, Field(pattern=SERVICE_CODE, max_length=40, description="e.g. S0001")]
FieldName = Annotated[str, Field(pattern=FIELD_NAME, max_length=63)]
Text = Annotated[str, Field(max_length=2000), AfterValidator(_printable)]
Name = Annotated[str, Field(min_length=1, max_length=200), AfterValidator(_printable)]
Contact = Annotated[str, Field(max_length=200), AfterValidator(_printable)]
FilterValue = Annotated[str, Field(max_length=200), AfterValidator(_printable)] | int | bool
Status = Literal["pending_provider", "pending_operator", "approved", "rejected", "withdrawn"]


# -- systems and keys --------------------------------------------------------------------------

class SystemIn(BaseModel):
    code: SystemCode
    name: Name = Field(description="业务系统名称")
    org: str = Field(min_length=1, max_length=18, description="Owning organization's code (USCC)")
    contact: Contact = Field(default="", description="Person and phone or e-mail to call")
    signing_required: bool = Field(default=False, description="Require HMAC-SM3 request signatures")


class SystemPatch(BaseModel):
    name: Name | None = None
    contact: Contact | None = None
    active: bool | None = None
    signing_required: bool | None = None


class SystemOut(BaseModel):
    code: str
    name: str
    org: str
    org_name: str
    contact: str
    active: bool
    signing_required: bool
    signing_secret_hint: str | None
    created_at: datetime


class SystemCreated(SystemOut):
    signing_secret: str | None = Field(description="Request signing secret, shown only in this response")


class SigningSecret(BaseModel):
    system: str
    signing_secret: str = Field(description="The new signing secret, shown only in this response")


class KeyIn(BaseModel):
    days: int = Field(default=365, ge=1, le=3650, description="Valid for this many days")


class KeyRotateIn(BaseModel):
    overlap_hours: float = Field(default=24, ge=0, le=168, description="The old key keeps working this long")
    days: int = Field(default=365, ge=1, le=3650)


class ReasonIn(BaseModel):
    reason: Text = ""


class KeyOut(BaseModel):
    id: int
    system: str
    prefix: str
    hint: str
    status: Literal["active", "overlap", "rotated", "expired", "revoked"]
    created_at: datetime
    created_by: str
    expires_at: datetime | None
    revoked_at: datetime | None
    rotated_at: datetime | None
    overlap_until: datetime | None
    replaced_by: int | None
    last_used_at: datetime | None


class KeyCreated(KeyOut):
    key: str = Field(description="The API key, shown only in this response; send as `Authorization: Bearer <key>`")


# -- services ----------------------------------------------------------------------------------

class ServiceIn(BaseModel):
    resource: str = Field(min_length=1, max_length=80, description="Resource code, name or id")
    mode: ShareMode
    fields: list[FieldName] = Field(min_length=1, max_length=500, description="Fields this mode exposes")
    name: Name
    description: Text = ""
    code: ServiceCode | None = Field(default=None, description="Default: S + a 4-digit number")
    draft: bool = Field(default=False, description="Keep as draft instead of publishing now")


class CodeListRef(BaseModel):
    code: str
    name: str
    codes_url: str


class ServiceField(BaseModel):
    name: str
    title: str
    type: str
    length: int | None
    sensitivity: str
    code_list: CodeListRef | None


class ServiceOut(BaseModel):
    code: str
    name: str
    description: str
    mode: str
    mode_label: str
    status: str
    provider: str
    provider_name: str
    resource: str
    resource_title: str
    resource_version: int
    share_type: str
    share_condition: str | None
    fields: list[ServiceField]
    published_at: datetime | None


# -- applications and grants -------------------------------------------------------------------

class Terms(BaseModel):
    """Grant terms a decision may set; what is left out keeps its current (or default) value."""

    row_filter: dict[FieldName, FilterValue | list[FilterValue]] | None = Field(
        default=None, max_length=10,
        description='Rows the consumer may see: {"field": value or [values]} on key or query fields, all must hold')
    masking: dict[FieldName, Annotated[str, Field(max_length=20)]] | None = Field(
        default=None, max_length=500, description='Masking rule per field, e.g. {"name": "name", "phone": "mobile"}')
    rate_limit: int | None = Field(default=None, ge=1, le=100_000, description="Calls per minute")
    daily_quota: int | None = Field(default=None, ge=1, le=1_000_000_000, description="Records per day (UTC+8)")


class ApplicationIn(BaseModel):
    system: SystemCode
    service: ServiceCode
    fields: list[FieldName] = Field(min_length=1, max_length=500)
    purpose: Text = Field(min_length=1, description="用途")
    legal_basis: Text = Field(min_length=1, description="依据 (law, regulation or duty)")
    expected_volume: int = Field(ge=1, le=1_000_000_000, description="Records per day the system expects")
    expires_on: date = Field(description="Last day the grant should be valid")


class DecisionIn(Terms):
    decision: Literal["approve", "reject"]
    fields: list[FieldName] | None = Field(default=None, max_length=500,
                                           description="Approve only these (a subset): narrowing")
    reason: Text = ""


class DecisionOut(BaseModel):
    step: str
    outcome: str
    username: str
    reason: str
    fields: list[str] | None
    at: datetime


class ApplicationOut(BaseModel):
    id: int
    system: str
    consumer_org: str
    service: str
    service_name: str
    mode: str
    provider_org: str
    fields_requested: list[str]
    fields_approved: list[str] | None
    personal_fields: list[str]
    purpose: str
    legal_basis: str
    expected_volume: int
    expires_on: date
    status: Status
    waiting_for: Literal["provider", "operator"] | None
    needs_operator: bool
    terms: dict[str, Any]
    applicant: str
    created_at: datetime
    decided_at: datetime | None
    grant_id: int | None
    decisions: list[DecisionOut]


class GrantOut(BaseModel):
    id: int
    system: str
    consumer_org: str
    service: str
    mode: str
    provider_org: str
    application_id: int | None
    fields: list[str]
    row_filter: dict[str, Any]
    masking: dict[str, str]
    rate_limit: int
    daily_quota: int
    used_today: int
    expires_at: datetime
    status: Literal["active", "expired", "revoked"]
    created_at: datetime
    revoked_at: datetime | None
    revoked_by: str | None
    revoke_reason: str | None


class RevokeIn(BaseModel):
    reason: Text = Field(min_length=1)
