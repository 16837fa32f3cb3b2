"""Request and response bodies of the native API (``*Public`` = what we return)."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from pydantic import BaseModel, Field

from corral.closedmodel import ClosedModel


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


class JobFilesPublic(BaseModel):
    """A job counted in files (upload jobs): what `GET /api/v1/imports/{id}` reports too."""

    files_total: int | None = Field(description="Entries in the manifest (null until it has been read).")
    registered: int
    skipped: int = Field(description="Duplicates skipped (skip_duplicate_urls).")
    updated: int = Field(description="Duplicates whose metadata was updated (upsert_metadata).")
    failed: int
    pending: int | None = Field(description="Files not yet settled; null until the manifest has been read.")
    errors: list[dict[str, Any]] = Field(description=(
        "Per-file errors: seq, where, url, error; urls lists every URL of an image group, "
        "sequence or DICOM series."))


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
    errors: list[JobErrorPublic] = Field(description="Failed units (a unit is a batch of work).")
    files: JobFilesPublic | None = Field(
        None, description="Upload jobs: the job counted in files. A job whose every file failed is ERROR."
    )


class CancelPublic(BaseModel):
    units_cancelled: int


class HealthPublic(BaseModel):
    ok: bool
    version: str
    database: str


# -- integrations -------------------------------------------------------------------


class IntegrationCreate(ClosedModel):
    title: str = Field(
        description="1-300 characters, unique within the organisation; the SDK finds integrations by it.",
        json_schema_extra={"minLength": 1, "maxLength": 300},
    )
    provider: str = Field(description="s3, azure, gcs or local.")
    settings: dict[str, Any] = Field(
        description="Provider settings, credentials included (see docs/http-api.md). Credentials are "
        "encrypted at rest and never returned.",
    )
    signed_url_ttl_seconds: int = Field(
        3600, description="Lifetime of the URLs corral signs (60 s to 7 days).",
        json_schema_extra={"minimum": 60, "maximum": 7 * 24 * 3600},
    )
    strict_client_only: bool = Field(
        False, description="Sign URLs but never read media bytes; media properties must come from manifests."
    )


class IntegrationUpdate(ClosedModel):
    title: str | None = None
    signed_url_ttl_seconds: int | None = None
    strict_client_only: bool | None = None
    settings: dict[str, Any] | None = Field(
        None, description="Replaces all provider settings and credentials (e.g. to rotate a key)."
    )


class IntegrationPublic(BaseModel):
    id: uuid.UUID
    title: str
    provider: str
    scope: str = Field(description="Where the integration points, e.g. s3://bucket/prefix/.")
    config: dict[str, Any] = Field(description="Non-secret settings.")
    signed_url_ttl_seconds: int
    strict_client_only: bool
    has_credentials: bool
    created_at: datetime
    updated_at: datetime


class CheckStepPublic(BaseModel):
    name: str = Field(description="credentials, bucket, list, read or cors.")
    status: str = Field(description="ok, failed, warning or skipped.")
    message: str
    hint: str | None = None


class CheckReportPublic(BaseModel):
    ok: bool
    integration: str
    provider: str
    scope: str
    origin: str
    steps: list[CheckStepPublic]


class CorsRulePublic(BaseModel):
    allowed_origins: list[str]
    allowed_methods: list[str]
    allowed_headers: list[str]
    exposed_headers: list[str]
    max_age_seconds: int


class CorsPublic(BaseModel):
    origin: str
    allows_origin: bool
    changed: bool = False
    rules: list[CorsRulePublic]


class SignRequest(ClosedModel):
    urls: list[str] = Field(max_length=1000, description="Object URLs inside the integration.")
    ttl_seconds: int | None = Field(None, ge=1, le=7 * 24 * 3600)


class SignedUrlPublic(BaseModel):
    url: str
    signed_url: str
    expires_in: int
