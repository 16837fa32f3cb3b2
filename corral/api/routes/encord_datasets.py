"""The Encord SDK's dataset calls: v2 ``/v2/public/datasets`` (create, list) and the v1 RPC
operations ``dataset/GET``, ``datasetlinkitems/POST``, ``datarows/GET``, ``datarow/POST``
(``DataRow.save``), ``video/POST`` (``update_data_item``) and the legacy
``datasetdatalongpolling`` POST/GET, over ``corral.core.datasets``, ``corral.core.items`` and the
registration service."""

from __future__ import annotations

import io
import math
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Annotated, Any

from fastapi import APIRouter, Query
from pydantic import Field
from sqlalchemy import select
from sqlalchemy.orm import Session
from starlette.concurrency import run_in_threadpool

from corral import errors
from corral.api import encord_dto as dto
from corral.api.deps import AppContext, Ctx, CurrentPrincipal
from corral.api.parsing import CorralRoute, org_access
from corral.api.routes.encord_rpc import (
    RpcCall,
    SdkBody,
    SdkOptions,
    Streamed,
    operations,
    payload_choice,
    payload_flag,
    payload_strings,
    payload_text,
    refuse_unsupported,
    verbatim_members,
)
from corral.api.routes.encord_storage import parsed_manifest_bytes, upload_job_state
from corral.core import dataset_rows, datasets, filters, folders, items
from corral.core.datasets import Duplicates
from corral.core.identity import Principal
from corral.db.engine import Database
from corral.db.tables import DataRow, Dataset, Item
from corral.registration import service

router = APIRouter(prefix="/v2/public/datasets", tags=["encord-compatible"], route_class=CorralRoute)

DUPLICATES: dict[str, Duplicates] = {"SKIP": "skip", "FAIL": "fail"}


def _role(role: str | None) -> str | None:
    return None if role is None else ("user" if role == "viewer" else "admin")


def _utc(value: datetime | None) -> datetime | None:
    return value.replace(tzinfo=UTC) if value is not None and value.tzinfo is None else value


# -- v2 -----------------------------------------------------------------------------------------


class SdkDatasetCreate(SdkBody):
    title: str = Field(json_schema_extra={"pattern": datasets.TITLE_PATTERN},
                       description=f"1-{datasets.MAX_TITLE} characters once stripped.")
    description: str | None = Field(None, max_length=datasets.MAX_DESCRIPTION)
    create_backing_folder: bool | None = None


@router.post("", summary="Create a dataset (SDK create_dataset)")
async def create_dataset(ctx: Ctx, principal: CurrentPrincipal, body: SdkDatasetCreate) -> dict[str, Any]:
    def write() -> dict[str, Any]:
        with ctx.db.write() as s:
            row = datasets.create(
                s,
                principal,
                body.title,
                body.description or "",
                backing_folder=bool(body.create_backing_folder),
            )
            folder = row.backing_folder_id
            return {"datasetUuid": str(row.id), "backingFolderUuid": str(folder) if folder else None}

    return await run_in_threadpool(write)


@router.get("/list", summary="Datasets you can see, filtered (SDK get_datasets)")
async def list_datasets(
    ctx: Ctx,
    principal: CurrentPrincipal,
    title_eq: Annotated[str | None, Query(alias="titleEq")] = None,
    title_like: Annotated[str | None, Query(alias="titleLike")] = None,
    description_eq: Annotated[str | None, Query(alias="descriptionEq")] = None,
    description_like: Annotated[str | None, Query(alias="descriptionLike")] = None,
    created_before: Annotated[dto.SdkTime, Query(alias="createdBefore")] = None,
    created_after: Annotated[dto.SdkTime, Query(alias="createdAfter")] = None,
    edited_before: Annotated[dto.SdkTime, Query(alias="editedBefore")] = None,
    edited_after: Annotated[dto.SdkTime, Query(alias="editedAfter")] = None,
    include_org_access: Annotated[bool | None, Query(alias="includeOrgAccess")] = None,
) -> dict[str, Any]:
    org_access(include_org_access, principal.is_admin, "dataset")

    def read() -> dict[str, Any]:
        with ctx.db.read() as s:
            views = datasets.find(
                s,
                principal,
                title_eq=title_eq,
                title_like=title_like,
                description_eq=description_eq,
                description_like=description_like,
                created_before=_utc(created_before),
                created_after=_utc(created_after),
                edited_before=_utc(edited_before),
                edited_after=_utc(edited_after),
            )
            backing = (
                dict(
                    s.execute(
                        select(Dataset.id, Dataset.backing_folder_id).where(
                            Dataset.id.in_([v.id for v in views])
                        )
                    )
                    .tuples()
                    .all()
                )
                if views
                else {}
            )
            return {
                "result": [
                    {
                        "datasetUuid": str(v.id),
                        "title": v.title,
                        "description": v.description,
                        "createdAt": dto.stamp(v.created_at),
                        "lastEditedAt": dto.stamp(v.updated_at),
                        "userRole": _role(v.role),
                        "storageLocation": dto.LOCATION_CODES.get(datasets.provider(s, v.id) or "local", 0),
                        "backingFolderUuid": str(backing[v.id]) if backing.get(v.id) else None,
                    }
                    for v in views
                ]
            }

    return await run_in_threadpool(read)


# -- data rows ----------------------------------------------------------------------------------


def _keep(row: dict[str, Any], payload: dict[str, Any]) -> bool:
    """The datarows/GET filters (title_eq, title_like, data_types, created_before/after, data_hashes)."""
    if payload.get("title_eq") is not None and row["data_title"] != payload["title_eq"]:
        return False
    like = payload.get("title_like")
    if like is not None and not filters.like_match(like, row["data_title"]):
        return False
    if payload.get("data_types") and row["data_type"] not in payload["data_types"]:
        return False
    if payload.get("data_hashes") and row["data_hash"] not in {str(h) for h in payload["data_hashes"]}:
        return False
    created = datetime.fromisoformat(row["created_at"])
    for key, before in (("created_before", True), ("created_after", False)):
        if payload.get(key):
            try:
                bound = _utc(datetime.fromisoformat(str(payload[key])))
            except ValueError:
                raise errors.InvalidInput(f"{key} is not an ISO 8601 date") from None
            assert bound is not None
            if (created >= bound) if before else (created <= bound):
                return False
    return True


def data_rows(
    s: Session, dataset_id: uuid.UUID, *, metadata: bool, item_ids: set[uuid.UUID] | None = None
) -> list[dict[str, Any]]:
    """Every (visible) data row of the dataset as the SDK's DataRow dict."""
    rows: list[dict[str, Any]] = []
    after: uuid.UUID | None = None
    while True:
        chunk, after = dataset_rows.page(s, dataset_id, after=after, limit=dataset_rows.MAX_PAGE)
        rows += [r for r in chunk if item_ids is None or uuid.UUID(r["item_id"]) in item_ids]
        if after is None:
            break
    return _as_sdk_rows(s, rows, metadata)


def data_row_chunks(
    db: Database, dataset_id: uuid.UUID, *, metadata: bool, chunk: int | None = None
) -> Iterator[list[dict[str, Any]]]:
    """``data_rows``, ``chunk`` rows at a time (default ``dataset_rows.STREAM_CHUNK``), each chunk
    read in a short transaction of its own: what an answer streamed to the SDK needs, in memory
    bounded by the chunk."""
    chunk = chunk or dataset_rows.STREAM_CHUNK
    after: uuid.UUID | None = None
    while True:
        with db.read() as s:
            rows, after = dataset_rows.page(s, dataset_id, after=after, limit=chunk)
            out = _as_sdk_rows(s, rows, metadata)
        if out:
            yield out
        if after is None:
            return


def _as_sdk_rows(s: Session, rows: list[dict[str, Any]], metadata: bool) -> list[dict[str, Any]]:
    by_id: dict[uuid.UUID, Item] = {}
    ids = [uuid.UUID(r["item_id"]) for r in rows]
    for i in range(0, len(ids), 500):
        by_id.update({it.id: it for it in s.scalars(select(Item).where(Item.id.in_(ids[i : i + 500])))})
    out = []
    for r in rows:
        item = by_id.get(uuid.UUID(r["item_id"]))
        if item is None:  # deleted for good between the two reads (PostgreSQL's read committed)
            continue
        first = r["parts"][0] if r["parts"] else None
        out.append(row_dict(r["uid"], r["created_at"], item, metadata=metadata, first_part=first))
    return out


def row_dict(
    uid: str, linked_at: str | None, item: Item, *, metadata: bool, first_part: str | None
) -> dict[str, Any]:
    """One data row as the SDK's DataRow dict."""
    media = item.media
    return {
        "data_hash": uid,
        "data_title": item.name,
        "data_type": dto.DATA_TYPES.get(item.item_type, "IMAGE"),
        "created_at": linked_at,
        "last_edited_at": dto.stamp(item.updated_at),
        "width": media.get("width"),
        "height": media.get("height"),
        "file_link": item.url if item.url is not None else first_part,
        "file_size": item.file_size,
        "file_type": item.mime_type,
        "storage_location": dto.LOCATION_CODES.get(item.storage_location, 0),
        "frames_per_second": media.get("fps"),
        "duration": media.get("duration"),
        "client_metadata": dict(item.client_metadata) if metadata else None,
        "signed_url": None,
        "is_optimised_image_group": {"image_sequence": True, "image_group": False}.get(item.item_type),
        "backing_item_uuid": str(item.id),
        "images_data": None,
    }


# -- v1 operations ------------------------------------------------------------------------------


def _dataset_id(call: RpcCall) -> uuid.UUID:
    ref = call.resource_id or (call.uid if isinstance(call.uid, str) else "")
    try:
        return uuid.UUID(ref)
    except ValueError:
        raise errors.NotFound(f"dataset {ref!r} not found") from None


def _payload(call: RpcCall) -> dict[str, Any]:
    if call.payload is None:
        return {}
    if not isinstance(call.payload, dict):
        raise errors.InvalidInput("payload must be a JSON object")
    return call.payload


def _access(payload: dict[str, Any]) -> dict[str, bool]:
    """``dataset_access_settings``: null or an object whose ``fetch_rows`` and
    ``fetch_client_metadata`` are booleans (a 400 naming the field otherwise: the string
    ``"false"`` was taken as true, and a non-object was ignored)."""
    settings = payload.get("dataset_access_settings")
    if settings is None:
        settings = {}
    if not isinstance(settings, dict):
        raise errors.InvalidInput("dataset_access_settings must be a JSON object")
    where = "dataset_access_settings."
    return {
        "fetch_rows": payload_flag(settings, "fetch_rows", True, where=where),
        "fetch_client_metadata": payload_flag(settings, "fetch_client_metadata", False, where=where),
    }


#: the SDK's ``DataType`` names, as ``list_data_rows(data_types=…)`` sends them
SDK_DATA_TYPES = frozenset(
    {"VIDEO", "IMAGE", "IMG_GROUP", "DICOM", "DICOM_STUDY", "NIFTI", "AUDIO", "TIME_SERIES", "PLAIN_TEXT",
     "PDF", "GROUP", "SCENE"}
)


def get_dataset(ctx: AppContext, principal: Principal, call: RpcCall) -> dict[str, Any]:
    access = _access(_payload(call))
    with ctx.db.read() as s:
        row = datasets.resolve(s, principal, _dataset_id(call))
        provider = datasets.provider(s, row.id) or "local"
        rows = (
            data_rows(s, row.id, metadata=access["fetch_client_metadata"])
            if access["fetch_rows"]
            else []
        )
        return {
            "dataset_hash": str(row.id),
            "title": row.title,
            "description": row.description,
            "dataset_type": dto.DATASET_TYPES.get(provider, "CORD_STORAGE"),
            "data_rows": rows,
            "backing_folder_uuid": str(row.backing_folder_id) if row.backing_folder_id else None,
        }


def list_data_rows(ctx: AppContext, principal: Principal, call: RpcCall) -> Streamed:
    """Every data row the filters keep, streamed: the answer is never built whole (a dataset of
    a million rows is a few hundred MB of JSON).  The dataset is resolved, and the principal's
    access to it checked, before the first byte is sent."""
    payload = _payload(call)
    with ctx.db.read() as s:
        dataset_id = datasets.resolve(s, principal, _dataset_id(call)).id
    metadata = _access(payload)["fetch_client_metadata"]
    # Every filter is checked now, a 400: once the stream has begun, an error cuts the answer off.
    for key in ("title_eq", "title_like"):
        payload_text(payload, key)
    if payload.get("title_like") is not None:
        filters.check_like(payload["title_like"], "title_like")
    # An unknown type or a malformed hash matched nothing: a silent empty answer, not a 400.
    unknown = sorted(set(payload_strings(payload, "data_types") or ()) - SDK_DATA_TYPES)
    if unknown:
        shown, known = ", ".join(map(repr, unknown)), ", ".join(sorted(SDK_DATA_TYPES))
        raise errors.InvalidInput(f"data_types: unknown data type(s) {shown}: use {known}")
    hashes = payload_strings(payload, "data_hashes")
    if hashes:
        try:  # as the rows spell them (lower case), so an upper-case hash matches too
            payload = {**payload, "data_hashes": [str(uuid.UUID(h)) for h in hashes]}
        except ValueError:
            raise errors.InvalidInput("data_hashes must be data row UUIDs") from None
    for key in ("created_before", "created_after"):
        if payload.get(key):
            try:
                datetime.fromisoformat(payload_text(payload, key) or "")
            except ValueError:
                raise errors.InvalidInput(f"{key} is not an ISO 8601 date") from None

    def chunks() -> Iterator[list[Any]]:
        for rows in data_row_chunks(ctx.db, dataset_id, metadata=metadata):
            kept = [r for r in rows if _keep(r, payload)]
            if kept:
                yield kept

    def allowed(now: Principal) -> None:  # the dataset still there, and still visible to its user
        with ctx.db.read() as s:
            datasets.resolve(s, now, str(dataset_id))

    return Streamed(chunks(), allowed)


def link_items(ctx: AppContext, principal: Principal, call: RpcCall) -> list[dict[str, Any]]:
    payload = _payload(call)
    behaviour = str(payload.get("duplicates_behavior") or "SKIP").upper()
    if behaviour not in DUPLICATES:
        raise errors.InvalidInput(
            f"duplicates_behavior {behaviour} is not supported: corral links an item into a dataset at most "
            "once (use SKIP or FAIL)"
        )
    try:
        ids = [uuid.UUID(i) for i in payload_strings(payload, "item_uuids") or []]
    except ValueError:
        raise errors.InvalidInput("item_uuids must be UUIDs") from None
    with ctx.db.write() as s:
        row = datasets.resolve(s, principal, _dataset_id(call), "editor")
        before = {
            uuid.UUID(r["backing_item_uuid"]) for r in data_rows(s, row.id, metadata=False, item_ids=set(ids))
        }
        datasets.link_items(s, principal, row, ids, duplicates=DUPLICATES[behaviour])
        return data_rows(s, row.id, metadata=True, item_ids=set(ids) - before)


def start_dataset_upload(ctx: AppContext, principal: Principal, call: RpcCall) -> dict[str, str]:
    """Register files into the dataset's backing folder (or ``folderUuid``), linking them when
    the job succeeds."""
    payload = _payload(call)
    manifest = parsed_manifest_bytes(payload.get("files"), payload.get("dataItems"))
    name = service.check_manifest_name(payload.get("fileName"), "fileName")
    dataset_id = _dataset_id(call)
    integration = payload.get("integrationId")
    with ctx.db.write() as s:
        row = datasets.resolve(s, principal, dataset_id, "editor")
        if payload.get("folderUuid"):
            folder = folders.resolve_for(s, principal, str(payload["folderUuid"]), "editor")
        else:
            folder = datasets.backing(s, principal, row)
        folder_id = folder.id
    job_id = service.start_import(
        ctx.db,
        ctx.settings,
        principal,
        folder=str(folder_id),
        integration=str(integration) if integration else None,
        manifest=io.BytesIO(manifest),
        ignore_errors=bool(payload.get("ignoreErrors")),
        dataset=dataset_id,
        manifest_name=name,
    )
    ctx.wake_worker()
    return {"process_hash": str(job_id)}


def _hashes(s: Session, dataset_id: uuid.UUID, created: list[dict[str, Any]]) -> list[dict[str, Any]]:
    ids = {uuid.UUID(c["itemUuid"]) for c in created}
    rows = {
        r["backing_item_uuid"]: r["data_hash"] for r in data_rows(s, dataset_id, metadata=False, item_ids=ids)
    }
    # An item not linked into this dataset (a folder job polled here) is named by its item id.
    return [
        {
            "data_hash": rows.get(c["itemUuid"], c["itemUuid"]),
            "title": c["name"],
            "backing_item_uuid": c["itemUuid"],
        }
        for c in created
    ]


async def poll_dataset_upload(ctx: AppContext, principal: Principal, call: RpcCall) -> dict[str, Any]:
    """The legacy job's state, held until it ends or the time is up.  The hold waits on the event
    loop (``hold_for_job``, as the folder job's poll does), never in a thread: the SDK's polls
    of many clients at once held every thread of the pool, and other requests waited for them."""
    payload = _payload(call)
    try:
        job_id = uuid.UUID(str(payload.get("process_hash")))
    except ValueError:
        raise errors.InvalidInput("process_hash must be an upload job id") from None
    wait = payload.get("timeout_seconds")
    if wait is None:
        wait = 0.0
    # as the native ?wait= and the folder poll's timeoutSeconds: a number, 0 or more (before,
    # [] {} false true "nan" "inf" "-5" were read as some wait: `or 0`, then float())
    if isinstance(wait, bool) or not isinstance(wait, int | float) or not math.isfinite(wait) or wait < 0:
        got = ("a list" if isinstance(wait, list) else "an object" if isinstance(wait, dict)
               else repr(wait)[:40])
        raise errors.InvalidInput(f"timeout_seconds: expected a number of seconds, 0 or more, got {got}")
    dataset_id = _dataset_id(call)

    def resolve() -> None:
        with ctx.db.read() as s:
            datasets.resolve(s, principal, dataset_id)

    def hashes(created: list[dict[str, Any]]) -> list[dict[str, Any]]:
        with ctx.db.read() as s:
            return _hashes(s, dataset_id, created)

    await run_in_threadpool(resolve)
    seconds = min(wait, ctx.settings.long_poll_cap_seconds)
    _, state = await ctx.hold_for_job(
        lambda: upload_job_state(ctx, principal, job_id, None), lambda pair: pair[0], seconds
    )
    data_hashes = await run_in_threadpool(hashes, state["itemsWithNames"])
    return {
        "status": state["status"],
        "data_hashes_with_titles": data_hashes,
        "errors": state["errors"],
        "data_unit_errors": [
            {
                "object_urls": e["objectUrls"],
                "error": e["error"],
                "subtask_uuid": e["subtaskUuid"],
                "action_description": e["actionDescription"],
            }
            for e in state["unitErrors"]
        ],
        "units_pending_count": state["unitsPendingCount"],
        "units_done_count": state["unitsDoneCount"],
        "units_error_count": state["unitsErrorCount"],
        "units_cancelled_count": state["unitsCancelledCount"],
    }


def refetch_data_row(ctx: AppContext, principal: Principal, call: RpcCall) -> dict[str, Any]:
    """``DataRow.refetch_data``: one data row, with a signed URL, metadata and its images if asked."""
    extra = _payload(call).get("additional_data") or {}
    if not isinstance(extra, dict):
        raise errors.InvalidInput("additional_data must be an object")
    refuse_unsupported(
        "DataRow.refetch_data", extra, {"signed_url", "images_data_fetch_options", "client_metadata"}
    )
    images = extra.get("images_data_fetch_options")
    if images is not None and not isinstance(images, dict):
        raise errors.InvalidInput("images_data_fetch_options must be an object")
    if images is not None:
        refuse_unsupported("DataRow.refetch_data images_data_fetch_options", images, {"fetch_signed_urls"})
    sign_file = payload_flag(extra, "signed_url", False, where="additional_data.")
    sign_images = images is not None and payload_flag(images, "fetch_signed_urls", False,
                                                      where="additional_data.images_data_fetch_options.")
    metadata = payload_flag(extra, "client_metadata", False, where="additional_data.")
    row_id = _row_id(call.uid)
    with ctx.db.read() as s:
        dataset = datasets.resolve(s, principal, _dataset_id(call))
        found = s.execute(
            select(DataRow, Item).join(Item, Item.id == DataRow.item_id)
            .where(DataRow.id == row_id, DataRow.dataset_id == dataset.id, Item.deleted_at.is_(None))
        ).first()
        if found is None:
            raise errors.NotFound(f"data row {row_id} not found in dataset {dataset.id}")
        row, item = found
        view = items.view(item, items.parts_of(s, item.id))
        opener = items.signer(s, ctx.settings, view) if sign_file or sign_images else None
        first = view.parts[0].url if view.parts else None
        out = row_dict(str(row.id), dto.stamp(row.created_at), item,
                       metadata=metadata, first_part=first)
    if opener is not None:
        view = items.signed(view, opener)
    if sign_file:
        out["signed_url"] = view.signed_url or (view.parts[0].signed_url if view.parts else None)
    if images is not None:
        out["images_data"] = [
            {
                "image_hash": str(items.part_id(item.id, p.position)),  # as get_child_items names it
                "title": p.title,
                "file_link": p.url,
                "file_type": p.media.get("mime_type"),
                "file_size": p.media.get("file_size"),
                "storage_location": out["storage_location"],
                "created_at": out["created_at"],
                "last_edited_at": out["last_edited_at"],
                "width": p.media.get("width"),
                "height": p.media.get("height"),
                "signed_url": p.signed_url if sign_images else None,
            }
            for p in view.parts or []
        ]
    return out


def _row_id(value: Any) -> uuid.UUID:
    try:
        return uuid.UUID(str(value))
    except ValueError:
        raise errors.NotFound(f"data row {value!r} not found") from None


def delete_data(ctx: AppContext, principal: Principal, call: RpcCall) -> bool:
    """``Dataset.delete_data``: unlink data rows from the dataset (their items stay in storage)."""
    hashes = call.uid if isinstance(call.uid, list) else [call.uid]
    ids = [_row_id(h) for h in hashes]
    with ctx.db.write() as s:
        dataset = datasets.resolve(s, principal, _dataset_id(call), "editor")
        datasets.unlink(s, principal, dataset, row_ids=ids)
    return True


_ROW_FIELDS = {"data_title", "client_metadata"}
MAX_TITLE_CHANGES = 1_000  # update_data_item sends one; a list of more is refused


def _row_title(payload: dict[str, Any], key: str, where: str) -> str | None:
    if key not in payload:
        return None
    value = payload[key]
    if not isinstance(value, str):
        raise errors.ValidationFailed(f"{where}{key} must be a string, got {_shown(value)}",
                                      details=[errors.ErrorDetail("a string", field=f"{where}{key}")])
    try:
        return items.check_name(value)  # a data row's title is its item's name
    except errors.ValidationFailed as e:
        raise errors.ValidationFailed(f"{where}{key}: {e.message}", details=[
            errors.ErrorDetail(f"1-{items.MAX_NAME} characters", field=f"{where}{key}")]) from None


def _shown(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 80 else f"{text[:77]}..."


def save_data_row(ctx: AppContext, principal: Principal, call: RpcCall) -> dict[str, Any]:
    """``DataRow.save()`` (deprecated in the SDK, still common): the changed ``data_title`` and
    ``client_metadata`` of one data row, which are its backing item's (``StorageItem.update``'s
    rules).  Answers the fields changed and the row as it now is, as the SDK compares them."""
    p = _payload(call)
    refuse_unsupported("DataRow.save", p, _ROW_FIELDS)
    title = _row_title(p, "data_title", "")
    metadata = p.get("client_metadata")
    if "client_metadata" in p and not isinstance(metadata, dict):
        raise errors.ValidationFailed(
            f"client_metadata must be an object ({{}} to clear it), got {_shown(metadata)}",
            details=[errors.ErrorDetail("an object", field="client_metadata")])
    row_id = _row_id(call.uid)
    with ctx.db.write() as s:
        dataset = datasets.resolve(s, principal, _dataset_id(call))
        if p:
            row, view = items.update_data_row(s, principal, dataset, row_id, name=title,
                                              client_metadata=metadata)
            item = s.get(Item, view.id)
        else:  # nothing changed: the row as it is (a save of an unchanged row)
            found = s.execute(select(DataRow, Item).join(Item, Item.id == DataRow.item_id).where(
                DataRow.id == row_id, DataRow.dataset_id == dataset.id, Item.deleted_at.is_(None))).first()
            if found is None:
                raise errors.NotFound(f"data row {row_id} not found in dataset {dataset.id}")
            row, item = found
        assert item is not None
        parts = items.parts_of(s, item.id)
        out = row_dict(str(row.id), dto.stamp(row.created_at), item, metadata=True,
                       first_part=parts[0].url if parts else None)
    return {"updated_fields": [k for k in p if k in _ROW_FIELDS], "data_row": out}


def update_data_items(ctx: AppContext, principal: Principal, call: RpcCall) -> dict[str, bool]:
    """``Dataset.update_data_item(data_hash, new_title)`` (v1 ``video/POST``): rename data rows of
    the dataset, all or none, as ``DataRow.save`` does."""
    entries = call.payload if isinstance(call.payload, list) else None
    if entries is None or not 1 <= len(entries) <= MAX_TITLE_CHANGES:
        raise errors.ValidationFailed(
            f"payload must be a list of 1 to {MAX_TITLE_CHANGES} {{video_hash, title}} objects",
            details=[errors.ErrorDetail("a list of {video_hash, title}", field="payload")])
    changes: list[tuple[uuid.UUID, str]] = []
    for n, entry in enumerate(entries):
        where = f"payload[{n}]."
        if not isinstance(entry, dict):
            raise errors.ValidationFailed(f"payload[{n}] must be an object {{video_hash, title}}",
                                          details=[errors.ErrorDetail("an object", field=f"payload[{n}]")])
        refuse_unsupported(f"Dataset.update_data_item (payload[{n}])", entry, {"video_hash", "title"})
        title = _row_title(entry, "title", where)
        if title is None:
            raise errors.ValidationFailed(f"{where}title is required",
                                          details=[errors.ErrorDetail("a string", field=f"{where}title")])
        changes.append((_row_id(entry.get("video_hash")), title))
    with ctx.db.write() as s:
        dataset = datasets.resolve(s, principal, _dataset_id(call))
        for row_id, title in changes:
            items.update_data_row(s, principal, dataset, row_id, name=title)
    return {"success": True}


#: the SDK's DatasetUserRole (0 admin, 1 user) and corral's dataset roles
_DATASET_ROLES = {0: "editor", 1: "viewer"}


def add_dataset_users(ctx: AppContext, principal: Principal, call: RpcCall) -> list[dict[str, Any]]:
    p = _payload(call)
    refuse_unsupported("Dataset.add_users", p, {"user_emails", "user_role"})
    emails = payload_strings(p, "user_emails")
    if not emails:
        raise errors.InvalidInput("user_emails must be a non-empty list of e-mail addresses")
    number, role = payload_choice(p, "user_role", _DATASET_ROLES)  # 0 (admin) or 1 (user)
    with ctx.db.write() as s:
        dataset = datasets.resolve(s, principal, _dataset_id(call))
        added = [datasets.share(s, principal, dataset, e, role) for e in emails]
        return [{"user_email": g.email, "user_role": number, "dataset_hash": str(dataset.id)} for g in added]


operations[("dataset", "GET")] = get_dataset
operations[("datarows", "GET")] = list_data_rows
operations[("datasetlinkitems", "POST")] = link_items
operations[("datasetdatalongpolling", "POST")] = start_dataset_upload
verbatim_members[("datasetdatalongpolling", "POST")] = frozenset({"files", "dataItems"})  # the manifest
operations[("datasetdatalongpolling", "GET")] = poll_dataset_upload
operations[("datarow", "GET")] = refetch_data_row
operations[("video", "DELETE")] = delete_data
operations[("video", "POST")] = update_data_items
operations[("datarow", "POST")] = save_data_row
operations[("datasetusers", "POST")] = add_dataset_users


@router.get("/{dataset_id}/users", summary="Who has a role on a dataset (SDK Dataset.list_users)")
async def list_dataset_users(ctx: Ctx, principal: CurrentPrincipal, dataset_id: uuid.UUID) -> dict[str, Any]:
    def read() -> dict[str, Any]:
        with ctx.db.read() as s:
            dataset = datasets.resolve(s, principal, dataset_id)
            grants = datasets.users(s, principal, dataset)
            return {
                "results": [
                    {"userEmail": g.email, "userRole": 0 if g.role == "editor" else 1,  # DatasetUserRole
                     "datasetUuid": str(dataset.id)}
                    for g in grants
                ],
                "nextPageToken": None,
            }

    return await run_in_threadpool(read)


class RemoveUsers(SdkOptions):
    call = "Dataset.remove_users"
    user_emails: list[str] = Field(description="The users' e-mail addresses.")


@router.post("/{dataset_id}/users/bulk-delete", summary="Take users' roles away (SDK Dataset.remove_users)")
async def remove_dataset_users(
    ctx: Ctx, principal: CurrentPrincipal, dataset_id: uuid.UUID, body: RemoveUsers
) -> None:
    emails = body.user_emails

    def write() -> None:
        with ctx.db.write() as s:
            dataset = datasets.resolve(s, principal, dataset_id)
            for e in emails:
                datasets.unshare(s, principal, dataset, e)

    await run_in_threadpool(write)
