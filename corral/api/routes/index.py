"""The index (``/api/v1/index``): query items by metadata and item fields, count, facet, export.

Thin: the query model is ``corral.core.index``; see docs/index.md.
"""

from __future__ import annotations

import base64
import binascii
import json
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import replace
from typing import Any

from fastapi import APIRouter
from fastapi.responses import StreamingResponse
from pydantic import BaseModel, Field
from starlette.concurrency import iterate_in_threadpool, run_in_threadpool

from corral import errors
from corral.api import streams
from corral.api.deps import Ctx, CurrentPrincipal
from corral.api.parsing import CorralRoute
from corral.closedmodel import ClosedModel
from corral.core.identity import Principal
from corral.core.index import query
from corral.core.integrations import endpoint_policy
from corral.core.vectors import endpoint, stores
from corral.core.vectors import search as vector_search
from corral.db.engine import Database

router = APIRouter(prefix="/api/v1/index", tags=["index"], route_class=CorralRoute)
EXPORT_CHUNK = 1000

_FILTER = Field(None, description="A JSON filter tree (and / or / not over predicates); see docs/index.md.")
_WHERE = Field(
    None, description='The same filter in the text syntax, e.g. `camera = "cam1" and score > 0.5`.'
)


class Filtered(ClosedModel):
    filter: dict[str, Any] | None = _FILTER
    where: str | None = _WHERE


class QueryRequest(Filtered):
    sort: str | dict[str, Any] | None = Field(
        None, description='A metadata key or @field, "-" first for descending; or {"key"|"field", "desc"}.'
    )
    page_size: int = Field(100, description=f"1 to {query.MAX_PAGE}.")
    page_token: str | None = None
    fields: list[str] | None = Field(
        None, description=f"Item fields to return: {', '.join(query.OUTPUT_FIELDS)}."
    )
    count: bool = Field(False, description="Also return the exact number of matching items.")


class QueryPublic(BaseModel):
    items: list[dict[str, Any]]
    next_page_token: str | None
    count: int | None = None


class FacetsRequest(Filtered):
    keys: list[str] = Field(description=f"1 to {query.MAX_FACETS} metadata keys, or @type.")
    top: int = Field(10, description=f"Values per key for value counts, 1 to {query.MAX_TOP}.")
    buckets: int = Field(
        10, description=f"Histogram buckets for number and datetime keys, 1 to {query.MAX_BUCKETS}."
    )


class FacetsPublic(BaseModel):
    count: int = Field(description="Items matching the filter.")
    facets: list[dict[str, Any]]


class ExportRequest(Filtered):
    sort: str | dict[str, Any] | None = None
    fields: list[str] | None = None


def _filter(db: Database, principal: Principal, body: Filtered) -> Any:
    query.ensure_indexed(db, principal.org_id)
    with db.read() as s:
        return query.resolve_filter(s, principal, body.filter, body.where)


@router.post("/query", response_model=QueryPublic, summary="A page of the items matching a filter")
async def run_query(ctx: Ctx, principal: CurrentPrincipal, body: QueryRequest) -> QueryPublic:
    sort = query.Sort.parse(body.sort)
    fields = query.check_fields(body.fields)

    def read() -> QueryPublic:
        tree = _filter(ctx.db, principal, body)
        with ctx.db.read_limited() as s:
            page = query.page(s, principal, tree, sort=sort, page_size=body.page_size,
                              page_token=body.page_token, fields=fields)
            total = query.count(s, principal, tree) if body.count else None
        return QueryPublic(items=page.items, next_page_token=page.next_page_token, count=total)

    return await run_in_threadpool(read)


@router.post("/facets", response_model=FacetsPublic, summary="Value counts and histograms under a filter")
async def run_facets(ctx: Ctx, principal: CurrentPrincipal, body: FacetsRequest) -> FacetsPublic:
    def read() -> FacetsPublic:
        tree = _filter(ctx.db, principal, body)
        with ctx.db.read_limited() as s:
            found = query.facets(s, principal, tree, body.keys, top=body.top, buckets=body.buckets)
            return FacetsPublic(count=query.count(s, principal, tree), facets=found)

    return await run_in_threadpool(read)


class SimilarRequest(Filtered):
    key: str | None = Field(
        None, description="The embedding key of the metadata schema to search (default: the only one)."
    )
    item: str | None = Field(None, description="Items like this one: an item id (its stored vector).")
    # Any: the core checks the numbers by the stored values' rule (no booleans or strings, float32's
    # range), naming the field; a float list would let pydantic turn true and "0.1" into numbers
    vector: list[Any] | None = Field(
        None,
        description="Items near this vector: the key's size of finite numbers within a 32-bit float's range.",
    )
    items: list[str] | None = Field(
        None, description=f"Items like this set: 1 to {vector_search.MAX_SET} item ids (their mean vector)."
    )
    text: str | None = Field(
        None, description=f"Items near this text, embedded by the key's endpoint (1 to {endpoint.MAX_TEXT:,} "
        "characters; docs/vectors.md#search-by-text-or-image)."
    )
    image: str | None = Field(
        None, description="Items near this image (base64, at most "
        f"{endpoint.MAX_IMAGE // (1024 * 1024)} MiB decoded), embedded by the key's endpoint."
    )
    k: int = Field(10, description=f"How many results, 1 to {vector_search.MAX_K}.")
    metric: str | None = Field(
        None, description="cosine, dot or l2; unset: the key's own (the schema's; cosine by default)."
    )
    include_query_items: bool = Field(
        False, description="Let the query's own items (item, items) appear among the results."
    )
    fields: list[str] | None = Field(
        None, description=f"Item fields to return: {', '.join(query.OUTPUT_FIELDS)}."
    )


class SimilarPublic(BaseModel):
    key: str
    metric: str = Field(description="The metric the scores are in.")
    store: str = Field(description="The vector store that answered: embedded, pgvector or exact.")
    items: list[dict[str, Any]] = Field(
        description="Best first; each with its score (cosine similarity, inner product, or minus the "
        "Euclidean distance: higher is more similar)."
    )


def _uuid(raw: str, field: str) -> uuid.UUID:
    try:
        return uuid.UUID(raw)
    except ValueError:
        raise errors.ValidationFailed(
            f"{field}: {raw[:40]!r} is not an item id",
            details=[errors.ErrorDetail("not an item id", field=field)],
        ) from None


def _image(raw: str) -> bytes:
    if len(raw) > (endpoint.MAX_IMAGE // 3 + 1) * 4 + 4:
        raise errors.ValidationFailed(
            f"image: at most {endpoint.MAX_IMAGE // (1024 * 1024)} MiB decoded",
            details=[errors.ErrorDetail("too large", field="image")])
    try:
        return base64.b64decode(raw, validate=True)
    except (binascii.Error, ValueError):
        raise errors.ValidationFailed(
            "image: expected the image's bytes in base64",
            details=[errors.ErrorDetail("not base64", field="image")]) from None


@router.post("/similar", response_model=SimilarPublic,
             summary="Items most similar to an item, a vector, a set, a text or an image, under a filter")
async def run_similar(ctx: Ctx, principal: CurrentPrincipal, body: SimilarRequest) -> SimilarPublic:
    fields = query.check_fields(body.fields)
    q = vector_search.Query(
        key=body.key, k=body.k, metric=body.metric,
        item=_uuid(body.item, "item") if body.item is not None else None,
        vector=body.vector,
        items=[_uuid(v, f"items[{i}]") for i, v in enumerate(body.items)] if body.items is not None else None,
        include_query_items=body.include_query_items,
        text=body.text, image=_image(body.image) if body.image is not None else None,
    )
    vector_search.check(q)

    def read() -> SimilarPublic:
        tree = _filter(ctx.db, principal, body)
        keys = vector_search.ensure_keys(ctx.db, principal.org_id)
        resolved = vector_search.resolve_input(
            ctx.db, principal, keys, q, policy=endpoint_policy(ctx.settings),
            signer=endpoint.Signer(ctx.settings.resolved_secret_key()))
        store = stores.for_database(ctx.db, ctx.settings)
        with ctx.db.read_limited() as s:
            found = vector_search.similar(s, principal, store, keys, replace(resolved, filter=tree), fields)
        return SimilarPublic(key=found.key, metric=found.metric, store=found.store, items=found.items)

    return await run_in_threadpool(read)


class SigningKeyPublic(BaseModel):
    keys: list[dict[str, str]] = Field(
        description="corral's public key as a JSON Web Key set (one Ed25519 key, alg EdDSA): what an "
        "embedding endpoint verifies corral's tokens with."
    )


@router.get("/embedding-signing-key", response_model=SigningKeyPublic,
            summary="The public key embedding endpoints verify corral's tokens with")
async def embedding_signing_key(ctx: Ctx, principal: CurrentPrincipal) -> SigningKeyPublic:
    return SigningKeyPublic(keys=[endpoint.Signer(ctx.settings.resolved_secret_key()).jwk()])


def export_lines(db: Database, principal: Principal, tree: Any, sort: query.Sort,
                 fields: tuple[str, ...]) -> Iterator[bytes]:
    """Every matching item as NDJSON, read a page at a time, each in its own short transaction."""
    token: str | None = None
    while True:
        with db.read_limited() as s:
            page = query.page(s, principal, tree, sort=sort, page_size=EXPORT_CHUNK, page_token=token,
                              fields=fields)
        yield b"".join(json.dumps(item, separators=(",", ":")).encode() + b"\n" for item in page.items)
        token = page.next_page_token
        if token is None:
            return


@router.post(
    "/export",
    summary="Every item matching a filter, streamed as NDJSON",
    responses={200: {"description": "One item object per line.", "content": {"application/x-ndjson": {}}}},
)
async def export(ctx: Ctx, principal: CurrentPrincipal, body: ExportRequest) -> StreamingResponse:
    sort = query.Sort.parse(body.sort)
    fields = query.check_fields(body.fields)

    def first() -> tuple[Any, bytes, Iterator[bytes]]:
        tree = _filter(ctx.db, principal, body)
        lines = export_lines(ctx.db, principal, tree, sort, fields)
        return tree, next(lines), lines  # the first page checks the filter: errors before streaming

    _, head, rest = await run_in_threadpool(first)

    async def stream() -> AsyncIterator[bytes]:
        yield head
        async for chunk in iterate_in_threadpool(rest):
            yield chunk

    # each page is read with the principal's visibility; the credential is checked again as it goes
    return StreamingResponse(streams.guarded(stream()), media_type="application/x-ndjson")
