"""The organisation's metadata schema in the database: current version, history, validators.

Every accepted change is a new version (who, when, the diff, the whole document).  Replacing is
a read-modify-write under the row lock (``BEGIN IMMEDIATE`` on SQLite, ``FOR UPDATE`` on
PostgreSQL); a caller that read version N can pass it as ``base_version`` and gets a 409 if
someone else saved in between.  Saving a schema identical to the current one adds no version.
"""

from __future__ import annotations

import logging
import threading
import uuid
from collections import OrderedDict
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from corral import errors
from corral.core.identity import Principal
from corral.core.index import keys as index_keys
from corral.core.index import reproject  # noqa: F401  (the index's ORM listener and job kind)
from corral.core.metadata import embedding_api
from corral.core.metadata.evolution import evolve
from corral.core.metadata.schema import Form, Schema, from_native, parse_any, to_native
from corral.core.metadata.validation import Validator, describe
from corral.core.vectors import keys as vector_keys
from corral.db.tables import MetadataSchema, MetadataSchemaVersion, User
from corral.storage.netpolicy import EndpointPolicy

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class SchemaState:
    version: int  # 0: the organisation has no schema yet
    schema: Schema
    updated_at: datetime | None = None
    updated_by: str | None = None  # email


@dataclass(frozen=True)
class SaveResult:
    state: SchemaState
    changed: bool
    diff: dict[str, Any]
    index_job: uuid.UUID | None = None  # re-projecting the index's changed keys, when large


def _email(s: Session, user_id: uuid.UUID | None) -> str | None:
    return s.scalar(select(User.email).where(User.id == user_id)) if user_id else None


def stored(document: dict[str, Any]) -> Schema:
    """A saved schema document.  One saved before embedding endpoints were checked may hold an
    ``api`` that is no valid endpoint (it was kept as given then): such a key reads as having no
    endpoint, with a warning, rather than making the whole schema unreadable."""
    try:
        return from_native(document)
    except errors.ValidationFailed as exc:
        fields = [d.field or "" for d in exc.details]
        raw_keys: dict[str, Any] = document.get("keys") or {}
        bad = {k for k in raw_keys if any(f.startswith(f"keys.{k}.api") for f in fields)}
        prefixes = tuple(f"keys.{k}.api" for k in bad)
        if not bad or not all(f.startswith(prefixes) for f in fields):
            raise
    log.warning("metadata schema: ignoring an embedding endpoint saved before endpoints were checked",
                extra={"keys": sorted(bad)})
    keys = {k: ({n: v for n, v in d.items() if n != "api"} if k in bad else d)
            for k, d in document.get("keys", {}).items()}
    return from_native({**document, "keys": keys})


def current(s: Session, org_id: uuid.UUID, *, lock: bool = False) -> SchemaState:
    query = select(MetadataSchema).where(MetadataSchema.org_id == org_id)
    row = s.scalar(query.with_for_update() if lock else query)
    if row is None:
        return SchemaState(0, Schema())
    return SchemaState(row.version, stored(row.document), row.updated_at, _email(s, row.updated_by))


def current_schema_at(s: Session, org_id: uuid.UUID) -> tuple[int, Schema]:
    """The current schema and its version (0: none yet), in one read."""
    row = s.execute(select(MetadataSchema.version, MetadataSchema.document)
                    .where(MetadataSchema.org_id == org_id)).one_or_none()
    return (0, Schema()) if row is None else (int(row.version), from_native(row.document))


_SCHEMAS: OrderedDict[tuple[uuid.UUID, int], Schema] = OrderedDict()
_SCHEMAS_LOCK = threading.Lock()


def current_schema(s: Session, org_id: uuid.UUID) -> Schema:
    """The current schema alone (what a query needs: no editor's email).

    Parsed once per version in each process: every save writes a new version, so a query reads
    the version number (one small row) and the document only when this process has not seen it.
    """
    version = s.scalar(select(MetadataSchema.version).where(MetadataSchema.org_id == org_id))
    if version is None:
        return Schema()
    with _SCHEMAS_LOCK:
        found = _SCHEMAS.get((org_id, version))
        if found is not None:
            _SCHEMAS.move_to_end((org_id, version))
            return found
    row = s.execute(select(MetadataSchema.version, MetadataSchema.document)
                    .where(MetadataSchema.org_id == org_id)).first()
    if row is None:
        return Schema()
    schema = from_native(row.document)
    with _SCHEMAS_LOCK:
        _SCHEMAS[(org_id, row.version)] = schema
        while len(_SCHEMAS) > _CACHE_SIZE:
            _SCHEMAS.popitem(last=False)
    return schema


def save(
    s: Session, principal: Principal, new: Schema, *, base_version: int | None = None, dry_run: bool = False,
    endpoints: EndpointPolicy | None = None,
) -> SaveResult:
    """Replace the schema with ``new`` if it is a valid evolution of the current one.

    ``endpoints``: the operator's policy, which every embedding endpoint that changes must pass.
    """
    return _save_over(s, principal, _locked_for(s, principal), new, base_version=base_version,
                      dry_run=dry_run, endpoints=endpoints)


def _locked_for(s: Session, principal: Principal) -> SchemaState:
    """The current schema, row-locked for a change by ``principal`` (an admin)."""
    if principal.role != "admin":
        raise errors.PermissionDenied("only organisation admins may change the metadata schema")
    return current(s, principal.org_id, lock=True)


def _save_over(
    s: Session, principal: Principal, now: SchemaState, new: Schema, *, base_version: int | None,
    dry_run: bool, endpoints: EndpointPolicy | None,
) -> SaveResult:
    """``save`` of ``new`` over ``now``, the schema as read under the row lock."""
    if endpoints is not None:
        embedding_api.check_urls({k: e.api for k, e in new.live().items() if e.api is not None
                                  and (k not in now.schema.entries or now.schema.entries[k].api != e.api)},
                                 endpoints)
    if base_version is not None and base_version != now.version:
        raise errors.Conflict(
            f"the metadata schema changed since version {base_version} (it is now at "
            f"version {now.version}): read it again and reapply your change"
        )
    diff = evolve(now.schema, new)
    if not diff:
        return SaveResult(now, False, diff)
    vector_keys.check_metric_changes(s, principal.org_id, now.schema, new)
    if dry_run:
        return SaveResult(SchemaState(now.version + 1, new), True, diff)
    version = now.version + 1
    document = to_native(new)
    row = s.get(MetadataSchema, principal.org_id)
    if row is None:
        s.add(
            MetadataSchema(
                org_id=principal.org_id, version=version, document=document, updated_by=principal.user_id
            )
        )
    else:
        row.version, row.document, row.updated_by = version, document, principal.user_id
    s.add(
        MetadataSchemaVersion(
            org_id=principal.org_id,
            version=version,
            document=document,
            diff=diff,
            created_by=principal.user_id,
        )
    )
    try:
        s.flush()
    except IntegrityError:  # a concurrent first save
        raise errors.Conflict(
            "the metadata schema was changed concurrently: read it again and retry"
        ) from None
    job = index_keys.sync(s, principal.org_id, new, principal.user_id)
    vector_keys.sync(s, principal.org_id, new)  # a deleted or re-sized key loses its vectors
    return SaveResult(SchemaState(version, new, updated_by=principal.email), True, diff, job)


def save_document(
    s: Session, principal: Principal, document: object, form: Form = "auto", *,
    base_version: int | None = None, dry_run: bool = False, endpoints: EndpointPolicy | None = None,
) -> SaveResult:
    """``save`` of a document in any form (``schema.parse_any``).  The Encord and legacy forms
    know nothing of ``required``, ``strict_metadata`` or an endpoint's timeout, and keep the
    current ones: *current* as read under the row lock, so that a change saved meanwhile by
    another admin (another process, on PostgreSQL) is kept rather than undone."""
    now = _locked_for(s, principal)
    new = parse_any(document, now.schema, form)
    return _save_over(s, principal, now, new, base_version=base_version, dry_run=dry_run, endpoints=endpoints)


#: The largest version the ``version`` column (a 32-bit ``INTEGER``) can hold.
MAX_VERSION = 2**31 - 1


def at_version(s: Session, org_id: uuid.UUID, version: int) -> SchemaState:
    if version == 0:
        return SchemaState(0, Schema())
    if not 0 < version <= MAX_VERSION:  # beyond the column's range (PostgreSQL would refuse the query)
        raise errors.NotFound(f"metadata schema version {version} not found")
    row = s.scalar(
        select(MetadataSchemaVersion).where(
            MetadataSchemaVersion.org_id == org_id, MetadataSchemaVersion.version == version
        )
    )
    if row is None:
        raise errors.NotFound(f"metadata schema version {version} not found")
    return SchemaState(row.version, stored(row.document), row.created_at, _email(s, row.created_by))


@dataclass(frozen=True)
class VersionInfo:
    version: int
    created_at: datetime
    created_by: str | None
    diff: dict[str, Any]


def history(s: Session, org_id: uuid.UUID, *, limit: int = 100) -> list[VersionInfo]:
    rows = s.execute(
        select(MetadataSchemaVersion, User.email)
        .outerjoin(User, User.id == MetadataSchemaVersion.created_by)
        .where(MetadataSchemaVersion.org_id == org_id)
        .order_by(MetadataSchemaVersion.version.desc())
        .limit(limit)
    ).all()
    return [VersionInfo(r.version, r.created_at, email, r.diff) for r, email in rows]


# -- validators, compiled once per schema version ------------------------------------------------

_CACHE: OrderedDict[tuple[uuid.UUID, int, bool], Validator] = OrderedDict()
_CACHE_LOCK = threading.Lock()
_CACHE_SIZE = 256


def validator(s: Session, org_id: uuid.UUID, *, from_text: bool = False) -> tuple[int, Validator]:
    """The validator of the organisation's current schema (and that schema's version)."""
    version = s.scalar(select(MetadataSchema.version).where(MetadataSchema.org_id == org_id)) or 0
    cache_key = (org_id, version, from_text)
    with _CACHE_LOCK:
        found = _CACHE.get(cache_key)
        if found is not None:
            _CACHE.move_to_end(cache_key)
            return version, found
    state = current(s, org_id)
    cache_key = (org_id, state.version, from_text)
    compiled = Validator(state.schema, from_text=from_text)
    with _CACHE_LOCK:
        _CACHE[cache_key] = compiled
        while len(_CACHE) > _CACHE_SIZE:
            _CACHE.popitem(last=False)
    return state.version, compiled


def _join(field: str, key: str | None) -> str:
    if key is None:
        return field
    return f"{field}{key}" if key.startswith("[") else f"{field}.{key}"


def validated(s: Session, org_id: uuid.UUID, metadata: Any, field: str = "client_metadata") -> dict[str, Any]:
    """``metadata`` checked against the organisation's schema and normalised, or ``ValidationFailed``
    with one detail per bad key (``field`` is ``client_metadata.<key>``).  A ``field`` other than
    ``client_metadata`` (one entry of a bulk change: ``itemPatches.<id>.clientMetadata``) is named
    in the message too, so that it says which of many was refused."""
    _, compiled = validator(s, org_id)
    normalised, problems = compiled.validate(metadata)
    if problems:
        raise errors.ValidationFailed(
            describe(problems) if field == "client_metadata" else describe(problems, field),
            details=[
                errors.ErrorDetail(p.message, field=_join(field, p.key))
                for p in problems
            ],
        )
    return normalised
