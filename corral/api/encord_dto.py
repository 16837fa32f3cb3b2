"""corral's objects in the shapes the Encord SDK (0.1.211) parses.

Only shaping lives here: every value comes from ``corral.core`` or ``corral.registration``.  The
key lists follow ``docs/encord-compatibility.md`` (and the wire-protocol reference it cites):
a key the SDK declares ``Optional`` without a default must be *present* (null is fine), folder and
item ``clientMetadata`` travel as JSON *strings*, upload-job statuses are upper-case, ``data_type``
of a data row is upper-case and its ``storage_location`` an integer.
"""

from __future__ import annotations

import json
import re
import uuid
from collections.abc import Callable, Iterable, Sequence
from datetime import datetime
from typing import Annotated, Any

from pydantic import BeforeValidator
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from corral.core import folders, item_rows, items, permissions
from corral.core.identity import Principal
from corral.core.items import ItemView
from corral.db.tables import DataRow, Folder, User

#: corral item type -> the SDK's ``StorageItemType`` value
ITEM_TYPES = {
    "image": "image",
    "video": "video",
    "image_group": "imageGroup",
    "image_sequence": "imageSequence",
    "dicom_series": "dicomSeries",
    "nifti": "nifti",
    "audio": "audio",
    "text": "plainText",
    "pdf": "pdf",
}
CORRAL_TYPES = {v: k for k, v in ITEM_TYPES.items()}
#: corral item type -> a data row's upper-case ``data_type``
DATA_TYPES = {
    "image": "IMAGE",
    "video": "VIDEO",
    "image_group": "IMG_GROUP",
    "image_sequence": "IMG_GROUP",
    "dicom_series": "DICOM",
    "nifti": "NIFTI",
    "audio": "AUDIO",
    "text": "PLAIN_TEXT",
    "pdf": "PDF",
}
#: corral provider -> a storage item's ``storageLocation``
LOCATIONS = {"s3": "s3", "gcs": "gcp", "azure": "azure", "local": "encord"}
#: corral provider -> a data row's ``storage_location`` (the SDK's ``StorageLocation`` number)
LOCATION_CODES = {"local": 0, "s3": 1, "gcs": 2, "azure": 3}
#: corral provider -> ``dataset_type`` of ``get_dataset``
DATASET_TYPES = {"local": "CORD_STORAGE", "s3": "AWS_S3", "gcs": "GCP_STR", "azure": "AZURE_STR"}


def stamp(value: datetime | None) -> str | None:
    return value.isoformat() if value is not None else None


def emails(s: Session, user_ids: Iterable[uuid.UUID | None]) -> dict[uuid.UUID, str]:
    ids = {u for u in user_ids if u is not None}
    if not ids:
        return {}
    return {uid: email for uid, email in s.execute(select(User.id, User.email).where(User.id.in_(ids)))}


def _role(role: str | None) -> str:
    return "user" if role in (None, "viewer") else "admin"


def storage_folders(s: Session, principal: Principal, rows: Sequence[Folder]) -> list[dict[str, Any]]:
    """StorageFolder objects."""
    owners = emails(s, [f.created_by for f in rows])
    out = []
    for f in rows:
        chain = folders.chain(s, f)[::-1]  # this folder first, then up to the top
        out.append(
            {
                "uuid": str(f.id),
                "parent": str(f.parent_id) if f.parent_id else None,
                "name": f.name,
                "description": f.description or "",
                "clientMetadata": json.dumps(f.client_metadata) if f.client_metadata else None,
                "owner": owners.get(f.created_by, "") if f.created_by else "",
                "createdAt": stamp(f.created_at),
                "lastEditedAt": stamp(f.updated_at),
                "userRole": _role(permissions.folder_role(s, principal, f)),
                "syncedDatasetHash": None,
                "pathToRoot": [
                    {
                        "uuid": str(c.id),
                        "parentUuid": str(c.parent_id) if c.parent_id else None,
                        "name": c.name,
                        "syncedDatasetHash": None,
                    }
                    for c in chain
                ],
                "folderType": "cloudLinked" if f.kind == folders.CLOUD_LINKED else "generic",
                "integrationHash": str(f.integration_id) if f.kind == folders.CLOUD_LINKED else None,
                "remoteUrl": f.remote_url if f.kind == folders.CLOUD_LINKED else None,
            }
        )
    return out


def backed_counts(s: Session, item_ids: Sequence[uuid.UUID]) -> dict[uuid.UUID, int]:
    """How many data rows link each item."""
    out: dict[uuid.UUID, int] = {}
    for i in range(0, len(item_ids), 500):
        query = (
            select(DataRow.item_id, func.count())
            .where(DataRow.item_id.in_(item_ids[i : i + 500]))
            .group_by(DataRow.item_id)
        )
        out.update({item: n for item, n in s.execute(query)})
    return out


def frame_count(media: dict[str, Any]) -> int | None:
    """An item's ``frameCount``: a video's frames, a PDF's pages (the SDK shows both as frames),
    a group's, sequence's or DICOM series' files, as registration counted them.  A listing's
    items have no parts loaded: counting those alone left every group's None in ``list_items``
    while ``get_storage_item`` counted them."""
    for key in ("frame_count", "num_pages", "frames", "slices"):
        value = media.get(key)
        if isinstance(value, int) and not isinstance(value, bool) and value > 0:
            return value
    return None


def _audio_and_dicom(item_type: str, media: dict[str, Any]) -> dict[str, Any]:
    """The StorageItem keys of an audio file's stream and a DICOM series' UIDs, from its media.

    ``audio*`` describe an audio item's stream: a video's media holds its picture's codec
    ("h264"), which is no audio codec (it was shown as one).  A DICOM series' UIDs are its
    files' (the SeriesInstanceUID they share, and their StudyInstanceUID, recorded with it since
    this release)."""
    audio = item_type == "audio"
    series = item_type == "dicom_series"
    return {
        "dicomInstanceUid": None,
        "dicomStudyUid": media.get("study_instance_uid") if series else None,
        "dicomSeriesUid": media.get("series_instance_uid") if series else None,
        "audioSampleRate": media.get("sample_rate") if audio else None,
        "audioBitDepth": media.get("bit_depth") if audio else None,
        "audioCodec": media.get("codec") if audio else None,
        "audioNumChannels": media.get("num_channels") if audio else None,
    }


def storage_item(view: ItemView, owner: str, backed: int, *, metadata: bool = True) -> dict[str, Any]:
    media = view.media
    # frames of a video, pages of a PDF (the SDK shows both as frame_count), files of a group
    frames = frame_count(media) or (len(view.parts) if view.parts else None)
    return {
        "uuid": str(view.id),
        "parent": str(view.folder_id),
        "itemType": ITEM_TYPES.get(view.type, view.type),
        "name": view.name,
        "description": view.description,
        "clientMetadata": json.dumps(view.client_metadata if metadata else {}),
        "owner": owner,
        "createdAt": stamp(view.created_at),
        "lastEditedAt": stamp(view.updated_at),
        # soft-deleted, or a tombstone (its object gone from a synced bucket: never signed)
        "isTombstone": view.deleted_at is not None or view.tombstoned_at is not None,
        "isPlaceholder": False,
        "backedDataUnitsCount": backed,
        "storageLocation": LOCATIONS.get(view.storage_location, "encord"),
        "integrationHash": str(view.integration_id) if view.integration_id else None,
        "url": view.url,
        "signedUrl": view.signed_url,
        "fileSize": view.file_size,
        "mimeType": view.mime_type,
        "duration": media.get("duration"),
        "fps": media.get("fps"),
        "height": media.get("height"),
        "width": media.get("width"),
        "frameCount": frames,
        **_audio_and_dicom(view.type, media),
    }


_AUDIO_OR_DICOM = ("audio", "dicom_series")
_NO_AUDIO_OR_DICOM = (None,) * 7


def _json_texts() -> Callable[[Any], str]:
    """``json.dumps`` with its default arguments, as one function for many values: ``json.dumps``
    makes a new C encoder on every call, and that was a fifth of an SDK page's time
    (docs/performance.md, "The SDK's pages").  Made once for a page (its circular-reference
    markers are its own), the same C encoder ``json.dumps`` would make; ``json.dumps`` itself
    where Python has no C encoder, or where it would write anything else."""
    make = getattr(json.encoder, "c_make_encoder", None)
    if make is None:
        return json.dumps
    try:
        encode = make({}, json.JSONEncoder().default, json.encoder.encode_basestring_ascii, None, ": ", ", ",
                      False, False, True)
    except TypeError:  # another signature
        return json.dumps
    join = "".join

    def dumps(value: Any) -> str:
        return join(encode(value, 0))

    return dumps if dumps(_PROBE) == json.dumps(_PROBE) else json.dumps


_PROBE: dict[str, Any] = {"a": [1, 2.5, 1e16, -0.0, None, True, {}], "é\n\"": {"b": "日本 😀"}}


def storage_item_rows(
    s: Session,
    rows: Iterable[dict[str, Any]],
    *,
    metadata: bool = True,
) -> list[dict[str, Any]]:
    """StorageItem objects straight from a listing's items as ``GET /api/v1/items`` answers them
    (``item_rows.read_bodies``, parsed, ``map(orjson.loads, page.items)``; or ``item_rows.native``
    dicts, their JSON parsed): the dicts ``storage_items`` makes of the same items' views, without
    the views.  A row's ``signed_url``, if set (``item_rows.sign``), is its ``signedUrl``.

    Each row is shaped as it is parsed and then dropped: a page parsed at once kept 3,000 dicts
    alive, which the garbage collector traversed and promoted, about a fifth of the page's time
    (docs/performance.md, "The SDK's pages").  The owners and linked counts, read for the page in
    one query each once its ids are known, are then written into the objects (in place: a key's
    position in the answer stays)."""
    dumps = _json_texts()
    empty = dumps({})
    types, locations, frames, more = ITEM_TYPES, LOCATIONS, frame_count, _audio_and_dicom
    out = []
    creators: set[str] = set()
    for r in rows:
        media = r["media"] or {}
        kind = r["type"]
        creator = r["created_by"]
        if creator is not None:
            creators.add(creator)
        created, updated = r["created_at"], r["updated_at"]
        extra = _NO_AUDIO_OR_DICOM if kind not in _AUDIO_OR_DICOM else tuple(more(kind, media).values())
        out.append({
            "uuid": r["id"],
            "parent": r["folder_id"],
            "itemType": types.get(kind, kind),
            "name": r["name"],
            "description": r["description"],
            "clientMetadata": dumps(r["client_metadata"] or {}) if metadata else empty,
            "owner": creator,  # the creator's id until the owners are read (below)
            "createdAt": None if created is None else created[:-1] + "+00:00",  # as ``stamp`` writes UTC
            "lastEditedAt": None if updated is None else updated[:-1] + "+00:00",
            # soft-deleted, or a tombstone (its object gone from a synced bucket: never signed)
            "isTombstone": r["deleted_at"] is not None or r["tombstoned_at"] is not None,
            "isPlaceholder": False,
            "backedDataUnitsCount": 0,
            "storageLocation": locations.get(r["storage_location"], "encord"),
            "integrationHash": r["integration_id"] or None,
            "url": r["url"],
            "signedUrl": r["signed_url"],
            "fileSize": r["file_size"],
            "mimeType": r["mime_type"],
            "duration": media.get("duration"),
            "fps": media.get("fps"),
            "height": media.get("height"),
            "width": media.get("width"),
            "frameCount": frames(media) if media else None,
            "dicomInstanceUid": extra[0],
            "dicomStudyUid": extra[1],
            "dicomSeriesUid": extra[2],
            "audioSampleRate": extra[3],
            "audioBitDepth": extra[4],
            "audioCodec": extra[5],
            "audioNumChannels": extra[6],
        })
    owners = item_rows.emails(s, list(creators))
    for one in out:
        creator = one["owner"]
        one["owner"] = "" if creator is None else owners.get(creator, "")
    backed = item_rows.linked_counts(s, [one["uuid"] for one in out])
    if backed:
        for one in out:
            linked = backed.get(one["uuid"])
            if linked:
                one["backedDataUnitsCount"] = linked
    return out


def child_items(view: ItemView, owner: str, child_type: str | None) -> list[dict[str, Any]]:
    """The files of a multi-file item as the SDK's child StorageItems.

    A part is not an item of its own in corral: its id is derived from the item's id and its
    position (stable, but not something ``get_storage_item`` finds).
    """
    if child_type is None or not view.parts:
        return []
    out = []
    for part in view.parts:
        one = storage_item(view, owner, 0)
        media = part.media
        one.update(
            uuid=str(items.part_id(view.id, part.position)),
            itemType=child_type,
            name=part.title or part.url.rsplit("/", 1)[-1],
            clientMetadata=json.dumps({}),
            url=part.url,
            signedUrl=part.signed_url,
            fileSize=media.get("file_size"),
            mimeType=media.get("mime_type"),
            height=media.get("height"),
            width=media.get("width"),
            frameCount=None,
            duration=None,
            fps=None,
        )
        if child_type == "dicomFile":  # each file's own UIDs, as its header gives them
            tags = media.get("dicom") or {}
            one.update(dicomInstanceUid=tags.get("SOPInstanceUID"),
                       dicomStudyUid=tags.get("StudyInstanceUID"),
                       dicomSeriesUid=tags.get("SeriesInstanceUID"))
        out.append(one)
    return out


def storage_items(s: Session, views: Sequence[ItemView], *, metadata: bool = True) -> list[dict[str, Any]]:
    owners = emails(s, [v.created_by for v in views])
    backed = backed_counts(s, [v.id for v in views])
    return [
        storage_item(
            v, owners.get(v.created_by, "") if v.created_by else "", backed.get(v.id, 0), metadata=metadata
        )
        for v in views
    ]


def subtask_uuid(job_id: uuid.UUID, where: str) -> str:
    """A stable id for one failed unit of a job (the SDK wants a UUID; corral names it by place)."""
    return str(uuid.uuid5(job_id, where))


def upload_state(
    job_id: uuid.UUID,
    status: str,
    counts: dict[str, Any],
    created: list[dict[str, Any]],
    job_error: str | None,
) -> dict[str, Any]:
    """``UploadLongPollingState`` from ``registration.jobs.file_counts`` and ``created_items``."""
    errors = [f"{e.get('where')}: {e.get('error')}" for e in counts["errors"]]
    if job_error and not errors:
        errors = [job_error]
    pending = counts["pending"] or 0
    # a unit is an entry: those a cancelled or failed job never settled are cancelled (they
    # were counted as pending, which an ended job has none of, so they were in no count)
    cancelled = counts.get("entries_unsettled", 0) if status in ("CANCELLED", "ERROR") else 0
    return {
        "status": status,
        "itemsWithNames": [{"itemUuid": c["id"], "name": c["name"]} for c in created],
        "errors": errors,
        "unitErrors": [
            {
                # every frame of a group or file of a series (``FileError.urls``), else the file
                "objectUrls": list(e.get("urls") or ([e["url"]] if e.get("url") else [])),
                "error": str(e.get("error")),
                "subtaskUuid": subtask_uuid(job_id, str(e.get("where"))),
                "actionDescription": f"Registering {e.get('where')}",
            }
            for e in counts["errors"]
        ],
        "unitsPendingCount": pending if status == "PENDING" else 0,
        "unitsDoneCount": counts["entries_done"],
        "unitsErrorCount": counts["failed"],
        "unitsCancelledCount": cancelled,
        "fileName": counts.get("manifest_name"),
    }


def _iso_only(value: Any) -> Any:
    """A date filter is ISO 8601 text (``2024-05-01``, ``2024-05-01T12:00:00+00:00``; no offset
    reads as UTC), as the SDK sends it and the document says (``format: date-time``).  Pydantic
    alone would also read a bare number as seconds since 1970, which the document does not allow."""
    if isinstance(value, str) and not re.match(r"\d{4}-\d", value):
        raise ValueError("expected an ISO 8601 date and time, e.g. 2024-05-01T12:00:00Z")
    return value


#: The SDK's date filters (createdBefore, editedAfter...), read as ISO 8601 text only.
SdkTime = Annotated[datetime | None, BeforeValidator(_iso_only)]
