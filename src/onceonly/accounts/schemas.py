"""Request/response models of accounts."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import BaseModel, Field

from onceonly.accounts.roles import Role


class UserIn(BaseModel):
    username: str = Field(min_length=2, max_length=64)
    role: Role
    org: str | None = Field(default=None, description="Organization code for department roles")
    display_name: str = Field(default="", max_length=100)


class UserOut(BaseModel):
    username: str
    display_name: str
    role: str
    org: str | None
    active: bool
    locked: bool
    last_login_at: datetime | None


class UserCreated(UserOut):
    password: str = Field(description="Generated password, shown only in this response")


class PasswordChange(BaseModel):
    current_password: str = Field(min_length=1, max_length=200)
    new_password: str = Field(min_length=1, max_length=200)


class TokenIn(BaseModel):
    name: str = Field(min_length=1, max_length=100)
    days: int | None = Field(default=365, ge=1, le=3650)


class TokenOut(BaseModel):
    id: int
    name: str
    hint: str
    created_at: datetime
    expires_at: datetime | None
    revoked: bool


class TokenCreated(TokenOut):
    token: str = Field(description="The token itself, shown only in this response")


class StaffActionOut(BaseModel):
    id: int
    at: datetime
    username: str
    action: str
    target: str
    detail: dict[str, Any]
    ip: str | None
    outcome: str
