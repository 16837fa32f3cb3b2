"""``/api/v1/metadata-schema``: the organisation's schema, its history, and a validator."""

from __future__ import annotations

import uuid
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Body, Path, Query
from pydantic import BaseModel, Field
from starlette.concurrency import run_in_threadpool

from corral.api.deps import Ctx, CurrentPrincipal
from corral.api.parsing import CorralRoute
from corral.closedmodel import ClosedModel
from corral.core.integrations import endpoint_policy
from corral.core.metadata import schema as model
from corral.core.metadata import service
from corral.core.metadata.service import SaveResult, SchemaState, VersionInfo
from corral.core.metadata.validation import describe
from corral.core.vectors.store import StoredVector
from corral.jsoncodec import MAX_INT

router = APIRouter(prefix="/api/v1/metadata-schema", tags=["metadata schema"], route_class=CorralRoute)
Format = Annotated[
    Literal["native", "encord", "legacy"],
    Query(description="native (default), encord (the SDK's client-metadata-schema-v2 map) or legacy (flat)."),
]
MAX_VALIDATE = 10_000


class SchemaPublic(BaseModel):
    version: int = Field(description="0 until the first save; +1 for every accepted change.")
    updated_at: str | None
    updated_by: str | None
    schema_: dict[str, Any] = Field(alias="schema", description="The schema in the requested format.")

    model_config = {"populate_by_name": True}


class SavePublic(BaseModel):
    version: int
    changed: bool = Field(description="False when the new schema equals the current one (no version added).")
    dry_run: bool
    diff: dict[str, Any] = Field(
        description="added, deleted, restored, retyped, required, changed, "
        "enum_options_added, strict_metadata."
    )
    schema_: dict[str, Any] = Field(alias="schema")
    index_job: uuid.UUID | None = Field(
        None, description="The job re-projecting changed keys into the index, when there are many items."
    )

    model_config = {"populate_by_name": True}


class VersionPublic(BaseModel):
    version: int
    created_at: str
    created_by: str | None
    diff: dict[str, Any]


class ValidateRequest(ClosedModel):
    items: list[Any] = Field(max_length=MAX_VALIDATE, description="clientMetadata objects to check.")
    from_text: bool = Field(
        False,
        description="Values are CSV cells (strings): parse numbers, booleans "
        "and embeddings from text; empty cells mean no value.",
    )


class ValidateResult(BaseModel):
    index: int
    ok: bool
    metadata: dict[str, Any] | None = Field(description="The normalised metadata, as corral would store it.")
    message: str | None
    errors: list[dict[str, Any]]


class ValidatePublic(BaseModel):
    schema_version: int
    valid: int
    invalid: int
    results: list[ValidateResult]


def _render(schema: model.Schema, fmt: str) -> dict[str, Any]:
    if fmt == "encord":
        return model.to_encord(schema)
    if fmt == "legacy":
        return model.to_legacy(schema)
    return model.to_native(schema)


def _public(state: SchemaState, fmt: str) -> SchemaPublic:
    return SchemaPublic(
        version=state.version,
        schema_=_render(state.schema, fmt),
        updated_at=state.updated_at.isoformat() if state.updated_at else None,
        updated_by=state.updated_by,
    )


@router.get("", response_model=SchemaPublic, summary="The current metadata schema")
async def get_schema(ctx: Ctx, principal: CurrentPrincipal, format: Format = "native") -> SchemaPublic:
    def read() -> SchemaState:
        with ctx.db.read() as s:
            return service.current(s, principal.org_id)

    return _public(await run_in_threadpool(read), format)


@router.put("", response_model=SavePublic, summary="Replace the metadata schema (admins)")
async def put_schema(
    ctx: Ctx,
    principal: CurrentPrincipal,
    document: Annotated[
        dict[str, Any],
        Body(
            description="The whole schema, in the native, encord or legacy "
            'form. A native document\'s "version" is checked.'
        ),
    ],
    base_version: Annotated[
        int | None,
        Query(ge=0, le=MAX_INT, description="Refuse (409) unless the schema is still at this version."),
    ] = None,
    dry_run: Annotated[
        bool, Query(description="Check the change and return the diff; save nothing.")
    ] = False,
    form: Annotated[
        Literal["auto", "native", "encord", "legacy"],
        Query(alias="format", description="The body's form; auto detects it."),
    ] = "auto",
) -> SavePublic:
    native = form == "native" or (form == "auto" and model.detect_form(document) == "native")
    if base_version is None and isinstance(document.get("version"), int) and native:
        base_version = document["version"]

    def write() -> SaveResult:
        with ctx.db.write() as s:
            return service.save_document(s, principal, document, form, base_version=base_version,
                                         dry_run=dry_run, endpoints=endpoint_policy(ctx.settings))

    result = await run_in_threadpool(write)
    return SavePublic(
        version=result.state.version,
        changed=result.changed,
        dry_run=dry_run,
        diff=result.diff,
        schema_=model.to_native(result.state.schema),
        index_job=result.index_job,
    )


@router.get(
    "/versions", response_model=list[VersionPublic], summary="Every version of the schema, newest first"
)
async def list_versions(
    ctx: Ctx, principal: CurrentPrincipal, limit: Annotated[int, Query(ge=1, le=1000)] = 100
) -> list[VersionPublic]:
    def read() -> list[VersionInfo]:
        with ctx.db.read() as s:
            return service.history(s, principal.org_id, limit=limit)

    return [
        VersionPublic(
            version=v.version, created_at=v.created_at.isoformat(), created_by=v.created_by, diff=v.diff
        )
        for v in await run_in_threadpool(read)
    ]


@router.get("/versions/{version}", response_model=SchemaPublic, summary="The schema as it was at a version")
async def get_version(
    ctx: Ctx,
    principal: CurrentPrincipal,
    version: Annotated[int, Path(ge=0, le=MAX_INT, description="0 (no schema) or a saved version.")],
    format: Format = "native",
) -> SchemaPublic:

    def read() -> SchemaState:
        with ctx.db.read() as s:
            return service.at_version(s, principal.org_id, version)

    return _public(await run_in_threadpool(read), format)


def _with_vectors(metadata: dict[str, Any]) -> dict[str, Any]:
    """Normalised metadata as a client sees it: an embedding as its numbers, as stored (float32),
    not the marker an item's JSON holds in their place."""
    return {
        key: value.vector.tolist() if isinstance(value, StoredVector) and value.vector is not None else value
        for key, value in metadata.items()
    }


@router.post(
    "/validate",
    response_model=ValidatePublic,
    summary="Check clientMetadata against the schema, and see it normalised",
)
async def validate(ctx: Ctx, principal: CurrentPrincipal, body: ValidateRequest) -> ValidatePublic:
    def run() -> ValidatePublic:
        with ctx.db.read() as s:
            version, checker = service.validator(s, principal.org_id, from_text=body.from_text)
        results = []
        for i, item in enumerate(body.items):
            normalised, problems = checker.validate(item)
            results.append(
                ValidateResult(
                    index=i,
                    ok=not problems,
                    metadata=None if problems else _with_vectors(normalised),
                    message=f"items[{i}]: {describe(problems)}" if problems else None,
                    errors=[{"key": p.key, "expected": p.expected, "message": p.message} for p in problems],
                )
            )
        invalid = sum(1 for r in results if not r.ok)
        return ValidatePublic(
            schema_version=version, valid=len(results) - invalid, invalid=invalid, results=results
        )

    return await run_in_threadpool(run)
