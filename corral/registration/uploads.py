"""Uploading a file through corral, for users without a bucket of their own.

1. ``start``: corral picks the organisation's upload integration and signs a PUT URL for a new
   key, ``corral-uploads/<user id>/<upload id>/<file name>`` under the integration's prefix.
2. The client PUTs the bytes to that URL: straight to the bucket, or to corral's own signed
   local-media route for the default integration.
3. ``register``: corral finds the object, probes it and inserts the item exactly as an upload job
   would (``files.prepare_entry``: scope guard, metadata validation, media probe).

The upload integration is the one ``CORRAL_UPLOAD_INTEGRATION`` names (an admin creates it in each
organisation), or else a ``local`` integration titled ``corral-uploads`` rooted at
``DATA_DIR/uploads/<org id>``, created on first use.  Nothing is stored about an upload but the
object itself: only its uploader can register it, since the key holds their user id.
"""

from __future__ import annotations

import re
import uuid
from dataclasses import dataclass
from pathlib import PurePosixPath
from typing import Any, cast

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from corral import errors
from corral.core import folders, integrations, item_parents, items, secrets
from corral.core.identity import Principal
from corral.core.items import ItemView
from corral.core.metadata import service as metadata_service
from corral.db.engine import Database
from corral.db.plans import unindexed
from corral.db.tables import Integration, Item, ItemPart
from corral.errors import ErrorDetail
from corral.registration.entries import DataType, Entry
from corral.registration.files import FileError, Prepared, prepare_entry
from corral.registration.probe_base import HEAD_BYTES
from corral.registration.probe_sniff import sniff_kind
from corral.settings import Settings
from corral.storage.base import ObjectInfo
from corral.storage.options import LocalOptions
from corral.storage.scope import ScopedStorage

MANAGED_TITLE = "corral-uploads"
KEY_ROOT = "corral-uploads"
#: The data type a single uploaded file registers as, by what its bytes are.
TYPE_OF_KIND = {
    "image": "image",
    "video": "video",
    "audio": "audio",
    "dicom": "dicom_series",
    "nifti": "nifti",
    "pdf": "pdf",
    "text": "text",
}
_UNSAFE = re.compile(r"[^A-Za-z0-9._-]+")
#: A usable file name: its last part (after the last '/' or '\\') holds a character other than '.'
#: (published as the pattern of every file-name field, and searched for by ``safe_filename``).
FILENAME_PATTERN = r"[^/\\.][^/\\]*(?![\s\S])"


@dataclass(frozen=True)
class UploadTicket:
    upload_id: uuid.UUID
    url: str  # the object's URL, which the item will have
    put_url: str
    headers: dict[str, str]  # send these with the PUT
    expires_in: int
    integration_id: uuid.UUID


def safe_filename(filename: str) -> str:
    name = PurePosixPath(filename.replace("\\", "/")).name
    safe = _UNSAFE.sub("_", name).lstrip(".")[:200]
    if not safe or not re.search(FILENAME_PATTERN, filename):
        raise errors.ValidationFailed(
            f"filename {filename!r} has no usable characters",
            details=[ErrorDetail("a file name such as cat.png", field="filename")],
        )
    return safe


def _managed(s: Session, settings: Settings, principal: Principal) -> Integration:
    root = (settings.data_dir / "uploads" / str(principal.org_id)).resolve()
    root.mkdir(parents=True, exist_ok=True)
    query = select(Integration).where(
        Integration.org_id == principal.org_id, Integration.title == MANAGED_TITLE
    )
    row = s.scalar(query)
    if row is None:
        options = LocalOptions(root=str(root))
        row = Integration(
            org_id=principal.org_id,
            title=MANAGED_TITLE,
            provider="local",
            config=options.public(),
            credentials=secrets.encrypt_secrets(settings.resolved_secret_key(), options.secrets()),
            created_by=principal.user_id,
        )
        try:
            # added inside the savepoint: ``begin_nested`` flushes what is pending first, so a row
            # added before it was inserted outside the savepoint, and its failure was the whole
            # transaction's
            with s.begin_nested():
                s.add(row)
                s.flush()
        except IntegrityError:  # created concurrently (PostgreSQL); the rollback expunged ours
            row = s.scalar(query)
            assert row is not None
    if row.provider != "local" or row.config.get("root") != str(root):
        raise errors.Conflict(
            f"the integration titled {MANAGED_TITLE!r} is not corral's upload directory {root}: rename it, "
            "or set CORRAL_UPLOAD_INTEGRATION"
        )
    return row


def _integration(s: Session, settings: Settings, principal: Principal) -> Integration:
    if not settings.upload_integration:
        return _managed(s, settings, principal)
    title = settings.upload_integration
    row = s.scalar(
        select(Integration).where(Integration.org_id == principal.org_id, Integration.title == title)
    )
    if row is None:
        raise errors.Conflict(
            f"uploads go to the integration titled {title!r} (CORRAL_UPLOAD_INTEGRATION), which your "
            "organisation does not have: ask an admin to create it"
        )
    if row.strict_client_only:
        raise errors.Conflict(
            f"the upload integration {title!r} is strict client-only, so corral cannot read what is "
            "uploaded to it: ask an admin to turn that off"
        )
    return row


def upload_integration(s: Session, settings: Settings, principal: Principal) -> Integration:
    """The integration that uploaded files go to (created on first use for the default)."""
    return _integration(s, settings, principal)


def _folder_key(principal: Principal, upload_id: uuid.UUID) -> str:
    return f"{KEY_ROOT}/{principal.user_id}/{upload_id}/"


def start(
    db: Database, settings: Settings, principal: Principal, filename: str, content_type: str | None = None
) -> UploadTicket:
    """A signed PUT URL for one new file."""
    name = safe_filename(filename)
    with db.write() as s:
        row = _integration(s, settings, principal)
        integration_id = row.id
        _, open_ = integrations.opener(row, settings)
    upload_id = uuid.uuid4()
    storage = _open(open_, row.title)
    try:
        key = storage.prefix + _folder_key(principal, upload_id) + name
        put_url = storage.sign_put(key, content_type)
        url = storage.storage.url_for(key)
        ttl = storage.ttl_seconds
    finally:
        storage.close()
    headers = {"Content-Type": content_type} if content_type else {}
    return UploadTicket(upload_id, url, put_url, headers, ttl, integration_id)


def _open(open_: Any, title: str) -> ScopedStorage:
    try:
        storage: ScopedStorage = open_()
    except OSError as exc:
        raise errors.StorageError(f"cannot open the upload integration {title!r}: {exc}") from None
    return storage


def _find(storage: ScopedStorage, principal: Principal, upload_id: uuid.UUID) -> ObjectInfo:
    for info in storage.iter_objects(_folder_key(principal, upload_id), page_size=10):
        if not info.key.rsplit("/", 1)[-1].startswith("."):  # not a local PUT still being written
            return info
    raise errors.NotFound(f"upload {upload_id} not found: PUT the file to its upload URL first")


def _data_type(storage: ScopedStorage, url: str, given: str | None) -> str:
    if given is not None:
        if given not in TYPE_OF_KIND.values():
            raise errors.ValidationFailed(
                f"data_type must be one of {', '.join(TYPE_OF_KIND.values())} for one uploaded file, "
                f"got {given!r}",
                details=[ErrorDetail(f"one of {', '.join(TYPE_OF_KIND.values())}", field="data_type")],
            )
        return given
    kind = sniff_kind(storage.read(url, 0, HEAD_BYTES), url)
    if kind not in TYPE_OF_KIND:
        raise errors.ValidationFailed(
            f"cannot tell what kind of file {url.rsplit('/', 1)[-1]!r} is from its bytes: give data_type",
            details=[ErrorDetail("the file's data type", field="data_type")],
        )
    return TYPE_OF_KIND[kind]


def register(
    db: Database,
    settings: Settings,
    principal: Principal,
    upload_id: uuid.UUID,
    *,
    folder: str,
    name: str | None = None,
    data_type: str | None = None,
    client_metadata: dict[str, Any] | None = None,
) -> ItemView:
    """Register an uploaded file as an item of ``folder`` (which needs the editor role)."""
    with db.read() as s:
        folders.require_generic(folders.resolve_for(s, principal, folder, "editor"), "register files into")
        row = _integration(s, settings, principal) if settings.upload_integration else _existing(s, principal)
        integration_id, provider, title = row.id, row.provider, row.title
        _, open_ = integrations.opener(row, settings)
        metadata = metadata_service.validated(s, principal.org_id, client_metadata or {})
        _, validator = metadata_service.validator(s, principal.org_id)
    storage = _open(open_, title)
    try:
        info = _find(storage, principal, upload_id)
        url = storage.storage.url_for(info.key)
        kind = _data_type(storage, url, data_type)
        title_ = name if name is not None else info.key.rsplit("/", 1)[-1]
        entry = Entry(0, "upload", cast(DataType, kind), (url,), items.check_name(title_), metadata, {})
        prepared = prepare_entry(entry, storage, validator)
    finally:
        storage.close()
    if isinstance(prepared, FileError):
        raise errors.InvalidInput(f"cannot register upload {upload_id}: {prepared.error}")
    with db.write() as s:
        target = folders.resolve_for(s, principal, folder, "editor")
        folders.require_generic(target, "register files into")
        return _insert(s, principal, target.id, integration_id, provider, upload_id, prepared[0])


def _existing(s: Session, principal: Principal) -> Integration:
    row = s.scalar(
        select(Integration).where(Integration.org_id == principal.org_id, Integration.title == MANAGED_TITLE)
    )
    if row is None:
        raise errors.NotFound(
            "no upload has been started in your organisation yet: POST /api/v1/uploads first"
        )
    return row


def _insert(
    s: Session,
    principal: Principal,
    folder_id: uuid.UUID,
    integration_id: uuid.UUID,
    provider: str,
    upload_id: uuid.UUID,
    p: Prepared,
) -> ItemView:
    done = s.scalar(
        # by the URL key's index, whatever the statistics say of the integration's (corral.db.plans)
        select(Item.id).where(unindexed(Item.integration_id) == integration_id, Item.url_hash == p.url_hash)
        .limit(1)
    )
    if done is not None:
        raise errors.AlreadyExists(f"upload {upload_id} is already registered, as item {done}")
    item_parents.hold(s, org_id=principal.org_id, folder_id=folder_id, integration_id=integration_id,
                      job_id=None, created_by=principal.user_id)
    item = Item(
        org_id=principal.org_id,
        folder_id=folder_id,
        integration_id=integration_id,
        item_type=p.item_type,
        name=p.name[:300],
        url=p.url,
        url_hash=p.url_hash,
        storage_location=provider,
        file_size=p.media.get("file_size"),
        mime_type=p.media.get("mime_type"),
        media=p.media,
        client_metadata=p.client_metadata,
        staged=False,
        created_by=principal.user_id,
    )
    s.add(item)
    s.flush()
    parts = [
        ItemPart(item_id=item.id, position=i, url=part["url"], title=part["title"][:300], media=part["media"])
        for i, part in enumerate(p.parts)
    ]
    s.add_all(parts)
    s.flush()
    return items.view(item, parts)
