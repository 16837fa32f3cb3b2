"""Request and response bodies of the native API (``*Public`` = what we return)."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from pydantic import BaseModel, Field


class MePublic(BaseModel):
    user_id: uuid.UUID
    email: str
    role: str
    org_id: uuid.UUID
    org_name: str
    auth_method: str


class JobErrorPublic(BaseModel):
    seq: int = Field(description="Position of the unit in the job (0-based).")
    error: str | None
    payload: dict[str, Any]


class JobPublic(BaseModel):
    id: uuid.UUID
    kind: str
    status: str = Field(description="PENDING, DONE, ERROR or CANCELLED.")
    units_total: int
    units_pending: int
    units_running: int
    units_done: int
    units_error: int
    units_cancelled: int
    created_at: datetime
    finished_at: datetime | None
    result: dict[str, Any]
    error: str | None
    errors: list[JobErrorPublic]


class CancelPublic(BaseModel):
    units_cancelled: int


class HealthPublic(BaseModel):
    ok: bool
    version: str
    database: str
