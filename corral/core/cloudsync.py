"""Cloud-synced folders (Encord's "cloud-linked" folders): a folder whose items mirror the objects
under a prefix of an integration's bucket, kept so by syncs.  See docs/cloud-sync.md.

A **sync** is a job of kind ``cloud_sync`` with one *scan* unit.  The scan lists the prefix in key
order, a page of ``PAGE`` objects at a time (a "scan page"), and commits pages in one
transaction together with a done unit each (``seq`` 1, 2, …, holding the page's last key and
counts), after checking it still holds its lease and the job is not cancelled.  It commits its
first page alone, then twice as many pages each time up to ``BATCH_PAGES``, or what it classified
in ``BATCH_SECONDS``: few transactions and upload jobs, and the workers start at once:

* objects new to the folder go into an upload job (``registration.service.create_job``, kind
  ``register``, ``ignore_errors`` and ``skip_duplicate_urls``), one for the pages committed
  together, created in that transaction: the
  same path as an import, so the same type checks, probes, metadata and strict client-only rules
  apply, and the workers register them while the scan goes on;
* items whose object is listed are recorded as seen by this sync, a narrow row each in
  ``cloud_sync_seen`` (an unchanged item's row is not written); a tombstone whose
  object is back is restored; an item whose object changed (etag, size or modification time) takes
  the new size and version, and its media properties are probed again unless the integration is
  strict client-only (a probe that fails is that file's error; the item keeps its old properties).

A scan that restarts (its worker died, its lease ran out) lists again from the start and skips
every key up to the last committed page's, so each page is committed once (pages classified but
not committed are classified again).  When the scan ends,
the job's ``finalize`` (in the transaction that ends it) makes every item of the folder that this
sync did not see, and that existed before it started, a tombstone, and records the folder's
``last_synced_at``; the sync's ``cloud_sync_seen`` rows go with it, whatever its end.  A scan
that cannot list the bucket fails, and the job ends ERROR with the reason and tombstones nothing.
Memory is bounded by ``BATCH_PAGES`` pages: diffs go by URL key
(``items.url_hash``), one indexed look-up per page.
"""

from __future__ import annotations

import io
import time
import uuid
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import orjson
from sqlalchemy import bindparam, delete, exists, insert, select, update
from sqlalchemy.orm import Session

from corral import errors
from corral.core import folders, integrations
from corral.core.identity import Principal
from corral.core.index import projection
from corral.core.metadata import service as metadata_service
from corral.core.vectors.store import StoredVector
from corral.db.engine import Database
from corral.db.tables import CloudSyncSeen, Folder, Integration, Item, Job, JobUnit
from corral.db.types import utcnow
from corral.errors import ErrorDetail
from corral.jobs import queue
from corral.jobs.tasks import ClaimedUnit, TaskKind, UnitFailed, WorkerContext, registry
from corral.registration import jobs as registration
from corral.registration.files import url_key
from corral.registration.probe_sniff import extension_kind, extensions
from corral.settings import Settings
from corral.storage import base, urls
from corral.storage.base import ObjectInfo
from corral.storage.scope import ScopedStorage

KIND = "cloud_sync"
#: Objects a scan page holds (one listing request of the stores' maximum).
PAGE = 1000
#: Scan pages committed together (with one upload job for their new objects), at most: a scan
#: commits its first page alone (the workers start registering at once), then twice as many
#: each time up to this, or what it classified in ``BATCH_SECONDS``, whichever comes first.
BATCH_PAGES = 32
BATCH_SECONDS = 3.0
#: The kinds a sync registers (Encord's: images, videos, PDF, text and audio), by file name, and
#: the manifest list each goes into.  Other objects are left alone (counted as ignored).
SYNCED_KINDS = {"image": "images", "video": "videos", "audio": "audio", "pdf": "pdf", "text": "text"}
#: Each kind's media properties in a manifest entry (the listed size goes there).
MEDIA_KEYS = {"image": "imageMetadata", "video": "videoMetadata", "audio": "audioMetadata",
              "pdf": "pdfMetadata", "text": "textMetadata"}
#: Per-file errors a page keeps in its result (the count is always exact).
PAGE_ERRORS = 100
#: The largest folder config document (its JSON text).
MAX_CONFIG_BYTES = 64 * 1024
#: The largest metadata sidecar file (``metadataIngestion``).
MAX_SIDECAR_BYTES = 1 << 20
#: The largest remote URL.
MAX_REMOTE_URL = 2048
#: What a request's integration and remote URL must match (some character other than white space),
#: as the published schema says: a blank one is refused naming it.
NOT_BLANK = r"\S"


# -- creating ---------------------------------------------------------------------------------


def _remote_problem(field: str, message: str) -> errors.InvalidInput:
    return errors.InvalidInput(message, details=[ErrorDetail(message, field=field)])


def check_remote(
    s: Session, settings: Settings, principal: Principal, integration_ref: Any, remote_url: Any, *,
    fields: tuple[str, str] = ("integrationUuid", "remoteUrl"),
) -> tuple[Integration, str, str]:
    """The integration and the canonical remote URL and key prefix a cloud-synced folder syncs:
    the integration must be the organisation's (as for a registration), and the URL a prefix
    inside its scope (the scope guard of a registration: same bucket, under its prefix, no ``.``
    or ``..`` segments).  A URL not ending in ``/`` is taken as the folder it names."""
    integration_field, url_field = fields
    if not isinstance(integration_ref, (str, uuid.UUID)) or not str(integration_ref).strip():
        raise _remote_problem(integration_field, f"{integration_field} must name an integration (its UUID)")
    if not isinstance(remote_url, str) or not remote_url.strip() or len(remote_url) > MAX_REMOTE_URL:
        raise _remote_problem(url_field, f"{url_field} must be a bucket URL of 1 to {MAX_REMOTE_URL} "
                                         "characters, such as s3://bucket/prefix/")
    try:
        row = integrations._row(s, principal.org_id, integration_ref)
    except errors.NotFound as exc:
        raise errors.NotFound(f"{integration_field}: {exc}",
                              details=[ErrorDetail(str(exc), field=integration_field)]) from None
    if s.get_bind().dialect.name == "postgresql":  # a delete of the integration waits, then sees the folder
        s.execute(select(Integration.id).where(Integration.id == row.id)
                  .with_for_update(read=True, key_share=True))
    scoped = integrations.open_row(row, settings)  # makes no request
    try:
        try:
            key = scoped.storage.key_for_url(remote_url)
        except base.OutOfScope as exc:
            raise _remote_problem(url_field, f"{url_field} {remote_url!r} is outside integration "
                                             f"{row.title!r}: {exc}") from None
        if key and not key.endswith("/"):
            key += "/"
        try:
            scoped.check_key(key + "_", remote_url)  # the prefix, as a key under it would be checked
        except errors.OutOfScope as exc:
            raise _remote_problem(url_field, f"{url_field}: {exc}") from None
        return row, scoped.storage.url_for(key), key
    finally:
        scoped.close()


def create_folder(
    s: Session, settings: Settings, principal: Principal, name: str, *, parent: str | uuid.UUID | None,
    description: str, client_metadata: dict[str, Any] | None, integration: Any, remote_url: Any,
    fields: tuple[str, str] = ("integrationUuid", "remoteUrl"),
) -> Folder:
    """A new cloud-synced folder (empty until its first sync)."""
    row, url, key = check_remote(s, settings, principal, integration, remote_url, fields=fields)
    folder = folders.create(s, principal, name, parent=parent, description=description,
                            client_metadata=client_metadata)
    if folder.integration_id is not None or folder.kind != folders.GENERIC:
        raise errors.AlreadyExists(f"folder {name!r} exists")
    folder.kind, folder.integration_id, folder.remote_url = folders.CLOUD_LINKED, row.id, url
    folder.config = {}
    s.flush()
    return folder


# -- starting and reading syncs ---------------------------------------------------------------


def _latest(s: Session, folder_id: uuid.UUID) -> Job | None:
    return s.scalar(select(Job).where(Job.kind == KIND, Job.target_id == folder_id)
                    .order_by(Job.created_at.desc(), Job.id.desc()).limit(1))


def running(s: Session, folder_id: uuid.UUID) -> Job | None:
    """The folder's sync still running: its scan, or an upload job it started (the only upload
    jobs a cloud-synced folder has)."""
    latest = _latest(s, folder_id)
    if latest is None:
        return None
    if latest.status == "PENDING":
        return latest
    uploading = select(Job.id).where(Job.kind == registration.KIND, Job.target_id == folder_id,
                                     Job.status == "PENDING").limit(1)
    return latest if s.scalar(uploading) is not None else None


def start(s: Session, folder: Folder, created_by: uuid.UUID | None) -> tuple[uuid.UUID, bool]:
    """Start a sync of ``folder`` (checked by the caller) in the caller's write transaction, or
    return the one running: (job id, whether it was started now)."""
    if folder.kind != folders.CLOUD_LINKED:
        raise errors.InvalidInput(
            f"folder {folder.name!r} is not cloud-synced: only a folder created with cloud sync parameters "
            "(the SDK's cloud_synced_folder_params, the native cloud_sync) can be synced")
    # Serialises starts of one folder (SQLite: the write lock), and holds it against a delete.
    # Taken exclusive at once: a key-share lock (``folders.hold``) that two starts both then
    # upgraded to FOR UPDATE deadlocked on PostgreSQL, a 503 to all but one of them.
    folders.lock(s, folder, folder.id)
    found = running(s, folder.id)
    if found is not None:
        return found.id, False
    row = s.get(Integration, folder.integration_id) if folder.integration_id else None
    if row is None or row.org_id != folder.org_id:
        raise errors.Conflict(f"folder {folder.name!r} cannot be synced: its integration was deleted")
    job = queue.create_job(
        s, org_id=folder.org_id, kind=KIND, units=[{"op": "scan"}],
        params={"folder_id": str(folder.id), "integration_id": str(row.id), "provider": row.provider,
                "remote_url": folder.remote_url,
                "created_by": str(created_by) if created_by else None},
        created_by=created_by, target_id=folder.id,
    )
    return job.id, True


def start_for(db: Database, principal: Principal, ref: str | uuid.UUID) -> tuple[uuid.UUID, bool]:
    """``start`` for a user: the folder needs the editor role."""
    with db.write() as s:
        folder = folders.resolve_for(s, principal, ref, "editor")
        return start(s, folder, principal.user_id)


def get_sync(s: Session, principal: Principal, folder_ref: str | uuid.UUID, job_id: uuid.UUID) -> Job:
    folder = folders.resolve_for(s, principal, folder_ref)
    job = s.get(Job, job_id)
    if job is None or job.org_id != principal.org_id or job.kind != KIND or job.target_id != folder.id:
        raise errors.NotFound(f"sync job {job_id} of folder {str(folder_ref)!r} not found")
    return job


#: The file counts of the upload jobs of syncs that have ended (done, failed), kept for the polls
#: of their sync: a first sync of a million objects starts a thousand of them.
_ENDED: dict[uuid.UUID, tuple[int, int]] = {}
MAX_ENDED_KEPT = 100_000


def state(s: Session, job: Job) -> dict[str, Any]:
    """A sync's progress, in the SDK's terms: its status (pending until the upload jobs it started
    end too), scan pages, upload jobs and files ("units")."""
    units = s.execute(select(JobUnit.seq, JobUnit.status, JobUnit.result, JobUnit.error)
                      .where(JobUnit.job_id == job.id)).all()
    scan = next((u for u in units if u.seq == 0), None)
    pages = [u for u in units if u.seq > 0]
    names = ("objects", "new", "updated", "restored", "unchanged", "ignored", "sidecars", "attached",
             "failed")
    counts = {"pages": len(pages), **dict.fromkeys(names, 0)}
    uploads: list[uuid.UUID] = []
    new_of: dict[uuid.UUID, int] = {}  # each upload job's new objects (the files it registers)
    errors_out: list[dict[str, Any]] = []
    for page in pages:
        r = page.result or {}
        for k in names:
            counts[k] += int(r.get(k, 0))
        if r.get("upload_job"):
            upload = uuid.UUID(r["upload_job"])
            if upload not in new_of:  # (pages committed together share one)
                uploads.append(upload)
            new_of[upload] = new_of.get(upload, 0) + int(r.get("new", 0))
        if len(errors_out) < 1000:
            errors_out += r.get("errors", [])[: 1000 - len(errors_out)]
    jobs_pending = jobs_done = jobs_error = jobs_cancelled = 0
    files_pending = files_done = files_error = files_cancelled = 0
    statuses: dict[uuid.UUID, str] = {}
    for i in range(0, len(uploads), 500):
        chunk = select(Job.id, Job.status).where(Job.id.in_(uploads[i:i + 500]))
        statuses.update(s.execute(chunk).tuples().all())
    unaccounted = counts["new"] - sum(new_of.get(u, 0) for u in statuses)  # (an upload job deleted since)
    for child, status in statuses.items():
        done_and_failed = _ENDED.get(child)
        if done_and_failed is None:
            files = registration.file_counts(s, child, error_limit=0)
            done_and_failed = (sum(int(files.get(k, 0)) for k in ("registered", "skipped", "updated")),
                               int(files.get("failed", 0)))
            if status in queue.TERMINAL:  # an ended job's counts never change: read once per process
                if len(_ENDED) >= MAX_ENDED_KEPT:
                    _ENDED.clear()
                _ENDED[child] = done_and_failed
        files_done += done_and_failed[0]
        files_error += done_and_failed[1]
        # its files neither registered nor failed: still to come, or never to come (a job that
        # ended without them, or was cancelled: the SDK has no count of cancelled upload jobs,
        # and one cancelled did not fail, so its files not registered are counted cancelled)
        rest = max(0, new_of.get(child, 0) - done_and_failed[0] - done_and_failed[1])
        if status == "PENDING":
            jobs_pending += 1
            if job.status in ("ERROR", "CANCELLED"):
                files_cancelled += rest
            else:
                files_pending += rest
        elif status == "DONE":
            jobs_done += 1
        elif status == "CANCELLED":
            jobs_cancelled += 1
            files_cancelled += rest
        else:
            jobs_error += 1
            files_error += rest
    if job.status in ("ERROR", "CANCELLED"):
        files_cancelled += max(0, unaccounted)
    else:
        files_pending += max(0, unaccounted)
    files_done += counts["updated"] + counts["restored"] + counts["unchanged"] + counts["attached"]
    files_error += counts["failed"]
    status = {"PENDING": "pending", "DONE": "done", "ERROR": "error", "CANCELLED": "cancelled"}[job.status]
    if status == "done" and jobs_pending:
        status = "pending"
    scan_status = scan.status if scan is not None else "done"
    return {
        "status": status,
        "error": job.error,
        "scanPagesProcessingPending": 1 if scan_status in ("pending", "running") else 0,
        "scanPagesProcessingDone": len(pages),
        "scanPagesProcessingError": 1 if scan_status == "error" else 0,
        "scanPagesProcessingCancelled": 1 if scan_status == "cancelled" else 0,
        "uploadJobsPending": jobs_pending,
        "uploadJobsDone": jobs_done,
        "uploadJobsError": jobs_error,
        "uploadJobsCancelled": jobs_cancelled,
        "uploadJobsUnitsPending": files_pending,
        "uploadJobsUnitsDone": files_done,
        "uploadJobsUnitsError": files_error,
        "uploadJobsUnitsCancelled": files_cancelled,
        "counts": {**counts, "tombstoned": int((job.result or {}).get("tombstoned", 0))},
        "errors": errors_out,
        "uploadJobs": [str(u) for u in uploads],
    }


def terminal(view: dict[str, Any]) -> bool:
    return view["status"] in ("done", "error", "cancelled")


# -- the folder config ------------------------------------------------------------------------


def get_config(s: Session, principal: Principal, ref: str | uuid.UUID) -> dict[str, Any]:
    folder = folders.resolve_for(s, principal, ref)
    config = dict(folder.config or {})
    config.setdefault("metadataIngestion", None)
    return config


def set_config(s: Session, principal: Principal, ref: str | uuid.UUID, document: Any) -> dict[str, Any]:
    """Store the folder config document as sent (keys corral does not know kept for the next read),
    after checking its size and the parts corral interprets."""
    folder = folders.resolve_for(s, principal, ref, "editor")
    if not isinstance(document, dict):
        raise errors.InvalidInput("the folder config must be a JSON object")
    size = len(orjson.dumps(document))
    if size > MAX_CONFIG_BYTES:
        raise errors.PayloadTooLarge(f"the folder config is {size} bytes; the limit is {MAX_CONFIG_BYTES}")
    ingestion = document.get("metadataIngestion")
    if ingestion is not None:
        _check_ingestion(ingestion)
        if folder.kind != folders.CLOUD_LINKED:
            raise _remote_problem("metadataIngestion", f"folder {folder.name!r} is not cloud-synced: only a "
                                  "cloud-synced folder's syncs ingest metadata sidecars")
    folder.config = document
    folder.updated_at = utcnow()
    s.flush()
    return get_config(s, principal, ref)


def _check_ingestion(value: Any) -> None:
    field = "metadataIngestion"
    if not isinstance(value, dict):
        raise _remote_problem(field, f"{field} must be an object or null")
    matcher = value.get("matcher", {"mode": "suffix", "suffix": ".metadata.json"})
    if not isinstance(matcher, dict) or matcher.get("mode", "suffix") != "suffix":
        raise _remote_problem(f"{field}.matcher",
                              f'{field}.matcher must be {{"mode": "suffix", "suffix": …}}')
    suffix = matcher.get("suffix", ".metadata.json")
    if not isinstance(suffix, str) or not 1 <= len(suffix) <= 128:
        raise _remote_problem(f"{field}.matcher.suffix", f"{field}.matcher.suffix must be 1 to 128 "
                                                         "characters")
    problem = sidecar_suffix_problem(suffix)
    if problem is not None:
        raise _remote_problem(f"{field}.matcher.suffix", f"{field}.matcher.suffix {suffix!r}: {problem}")
    if not isinstance(value.get("paused", False), bool):
        raise _remote_problem(f"{field}.paused", f"{field}.paused must be true or false")


def sidecar_suffix_problem(suffix: str) -> str | None:
    """Why a sidecar suffix cannot be used, or None.  A suffix that is a synced type's extension
    (or its end: ``.jpg``, ``jpg``, ``g``) would claim every file of that type as a sidecar of a
    data file without one (``a.jpg`` of ``a``): none would be an item, and a sync would tombstone
    every item the folder had.  One that ends with a media extension (``_meta.mp4``) names media
    files, not JSON: a strict client-only integration's sync would read their bytes."""
    low = suffix.lower()
    claimed = [ext for ext in extensions(SYNCED_KINDS) if f".{ext}".endswith(low)]
    if not claimed:
        kind = extension_kind("sidecar" + low)
        if kind is None or kind == "text":
            return None
        # (a sidecar is JSON text: files named so are media, which a strict client-only
        # integration's sync would otherwise read as sidecars)
        return (f"it ends with the extension of a {kind} file, but a sidecar is JSON text: give a "
                "suffix such as '.metadata.json'")
    return (f"it ends every file name of the extension(s) {', '.join('.' + e for e in claimed)}, "
            "which a sync registers: each would be taken for a sidecar, none would be an item; give "
            "a suffix with something before the extension, such as '.metadata.json'")


# -- the scan ---------------------------------------------------------------------------------


def _version(obj: ObjectInfo) -> str:
    when = obj.last_modified.isoformat() if obj.last_modified is not None else ""
    return f"{obj.etag or ''}|{obj.size}|{when}"[:190]


def _done_pages(db: Database, job_id: uuid.UUID) -> tuple[int, str | None]:
    """The last committed page's number and last key (a restarted scan goes on after it)."""
    with db.read() as s:
        row = s.execute(select(JobUnit.seq, JobUnit.result).where(JobUnit.job_id == job_id, JobUnit.seq > 0)
                        .order_by(JobUnit.seq.desc()).limit(1)).first()
    if row is None:
        return 0, None
    return int(row.seq), (row.result or {}).get("last_key")


@dataclass(frozen=True)
class Ingestion:
    """A folder config's ``metadataIngestion``: files ending ``suffix`` are sidecars, not items."""

    suffix: str
    paused: bool

    @staticmethod
    def of(config: dict[str, Any] | None) -> Ingestion | None:
        found = (config or {}).get("metadataIngestion")
        if not isinstance(found, dict):
            return None
        matcher = found.get("matcher") or {}
        return Ingestion(str(matcher.get("suffix", ".metadata.json")), bool(found.get("paused", False)))


class _Page:
    """One scan page, classified against the folder's items outside any transaction."""

    def __init__(self) -> None:
        self.objects = 0
        self.ignored = 0
        self.new: dict[str, list[dict[str, Any]]] = {}  # manifest list -> entries
        self.seen: list[uuid.UUID] = []
        self.restored: list[uuid.UUID] = []
        self.changes: list[dict[str, Any]] = []  # {id, version, size?, media?, metadata?}
        self.errors: list[dict[str, Any]] = []
        self.failed = 0
        self.updated = 0
        self.sidecars = 0
        self.attached = 0
        self.last_key: str | None = None

    def error(self, url: str, message: str) -> None:
        self.failed += 1
        if len(self.errors) < PAGE_ERRORS:
            self.errors.append({"url": url, "error": message})


def _sidecar(storage: ScopedStorage, validator: Any, obj: ObjectInfo, url: str) -> dict[str, Any] | str:
    """A sidecar's metadata, checked against the organisation's schema, or why it cannot be."""
    if obj.size > MAX_SIDECAR_BYTES:
        return f"metadata sidecar is {obj.size} bytes; the limit is {MAX_SIDECAR_BYTES}"
    try:
        data = storage.read(url, 0, obj.size, purpose="sidecar") if obj.size else b""
    except errors.CorralError as exc:
        return f"metadata sidecar cannot be read: {exc}"
    try:
        parsed = orjson.loads(data)
    except orjson.JSONDecodeError as exc:
        return f"metadata sidecar is not JSON: {exc}"
    if not isinstance(parsed, dict):
        return "metadata sidecar must hold a JSON object of custom metadata"
    normalised, problems = validator.validate(parsed)
    if problems:
        return "metadata sidecar does not fit the metadata schema: " + "; ".join(
            f"{p.key}: {p.message}" if p.key else p.message for p in problems[:10])
    return dict(normalised)


def _for_manifest(meta: dict[str, Any]) -> dict[str, Any]:
    """A sidecar's checked metadata as the upload job's manifest carries it: an embedding's
    numbers, not its marker (a ``StoredVector`` is written as its marker, which the upload job
    took for "keep the stored vector" of an item that has none: it was registered without it)."""
    return {k: v.vector.tolist() if isinstance(v, StoredVector) and v.vector is not None else v
            for k, v in meta.items()}


def _classify(db: Database, storage: ScopedStorage, folder_id: uuid.UUID, org_id: uuid.UUID,
              objs: list[ObjectInfo], ingestion: Ingestion | None) -> _Page:
    page = _Page()
    page.objects = len(objs)
    page.last_key = objs[-1].key if objs else None
    wanted: dict[str, tuple[ObjectInfo, str, str]] = {}  # url key -> (object, url, kind)
    # the data file's url key -> (sidecar, its url, the data file's url)
    sidecars: dict[str, tuple[ObjectInfo, str, str]] = {}
    for obj in objs:
        if obj.key.endswith("/"):  # a directory marker
            page.ignored += 1
            continue
        url = storage.storage.url_for(obj.key)
        if ingestion is not None and obj.key.endswith(ingestion.suffix):
            page.sidecars += 1  # claimed: never an item
            if not ingestion.paused:
                data_url = storage.storage.url_for(obj.key[: -len(ingestion.suffix)])
                sidecars[url_key([data_url])] = (obj, url, data_url)
            continue
        kind = extension_kind(obj.key)
        if kind not in SYNCED_KINDS:
            page.ignored += 1
            continue
        wanted[url_key([url])] = (obj, url, kind)
    if not wanted and not sidecars:
        return page
    keys = sorted(set(wanted) | set(sidecars))
    found: dict[str, Any] = {}
    with db.read() as s:
        for i in range(0, len(keys), 500):
            rows = s.execute(select(Item.id, Item.url_hash, Item.remote_version, Item.file_size,
                                    Item.item_type, Item.tombstoned_at)
                             .where(Item.folder_id == folder_id, Item.url_hash.in_(keys[i:i + 500]),
                                    Item.deleted_at.is_(None))).all()
            for r in rows:
                found.setdefault(r.url_hash, r)
        validator = metadata_service.validator(s, org_id)[1] if sidecars else None
    for key, (_, side_url, data_url) in sidecars.items():  # a sidecar whose data file is not listed
        if key not in wanted:
            page.error(side_url, f"metadata sidecar without its data file: {data_url!r} is not in the bucket "
                                 "or is not of a type a sync registers")
    for key in sorted(wanted):
        obj, url, kind = wanted[key]
        row = found.get(key)
        side = sidecars.get(key)
        if row is None:
            if not url.isprintable() or " " in url:  # (a key with a space: s3://, gs:// take it literally)
                url = urls.encoded_url_for_key(obj.key, storage.options)
            entry: dict[str, Any] = {"objectUrl": url, MEDIA_KEYS[kind]: {"file_size": obj.size}}
            if side is not None:
                meta = _sidecar(storage, validator, side[0], side[1])
                if isinstance(meta, str):
                    page.error(side[1], meta)
                else:
                    entry["clientMetadata"] = _for_manifest(meta)
                    page.attached += 1
            page.new.setdefault(SYNCED_KINDS[kind], []).append(entry)
            continue
        page.seen.append(row.id)
        if row.tombstoned_at is not None:
            page.restored.append(row.id)
        old_data, _, old_side = (row.remote_version or "").partition("\n")
        version = _version(obj)
        if row.remote_version is None:  # registered by a sync's upload job: the listing's size decides
            changed = row.file_size is not None and row.file_size != obj.size
        else:
            changed = old_data != version
        change: dict[str, Any] = {"id": row.id}
        new_side = old_side
        if side is not None and _version(side[0]) != old_side:
            meta = _sidecar(storage, validator, side[0], side[1])
            if isinstance(meta, str):
                page.error(side[1], meta)
            else:
                change["metadata"] = meta
                new_side = _version(side[0])
                page.attached += 1
        full = version + (f"\n{new_side}" if new_side else "")
        if changed:
            # (a tombstone back with other bytes is counted restored, once: counted updated too,
            # the page's unchanged count, listed less updated and restored, was one short)
            page.updated += row.tombstoned_at is None
            change["size"] = obj.size
            if not storage.strict_client_only:  # media properties again (never for strict: no bytes read)
                from corral.registration.probe import probe

                try:
                    info = probe(storage, url, registration_kind(row.item_type), size_hint=obj.size)
                    change["media"] = info.as_media()
                except Exception as exc:  # noqa: BLE001 - the file's error; the item keeps its properties
                    page.error(url, f"changed, but its media properties could not be read again: {exc}")
        elif row.file_size is None:  # (a strict client-only registration's: the listing knows it)
            change["size"] = obj.size
        if full != row.remote_version or len(change) > 1:
            change["version"] = full
            page.changes.append(change)
    return page


def registration_kind(item_type: str) -> str | None:
    return item_type if item_type in ("image", "video", "audio", "pdf", "text") else None


def _commit_pages(ctx: WorkerContext, unit: ClaimedUnit, seq: int, pages: list[_Page]) -> None:
    """Commit scan pages ``seq``, ``seq + 1``, … in one transaction: their changes, the items they
    found (``cloud_sync_seen``), one upload job for all their new objects, and a done unit each."""
    db: Database = ctx.services["db"]
    params = unit.params
    folder_id = uuid.UUID(params["folder_id"])
    lease = ctx.services["settings"].job_lease_seconds
    with db.write() as s:
        if not queue.holds(s, unit, ctx.owner, renew_for=lease):
            raise queue.LeaseLost(unit.id)
        job_params = s.scalar(select(Job.params).where(Job.id == unit.job_id))
        if job_params is None or job_params.get("cancel_requested"):
            raise UnitFailed("the sync was cancelled")
        changes = [c for page in pages for c in page.changes]
        metadata = [(c["id"], c["metadata"]) for c in changes if "metadata" in c]
        if metadata:  # the index keys before the items, as every writer of items' metadata takes them
            projection.lock_keys(s, unit.org_id)
        now = utcnow()
        seen = [{"job_id": unit.job_id, "item_id": i} for page in pages for i in page.seen]
        if seen:  # narrow rows, not a write of each listed item (most of an unchanged sync)
            s.execute(insert(CloudSyncSeen), seen)
        restored = [i for page in pages for i in page.restored]
        for i in range(0, len(restored), 500):
            s.execute(update(Item).where(Item.id.in_(restored[i:i + 500]))
                      .values(tombstoned_at=None, updated_at=now)
                      .execution_options(synchronize_session=False))
        versions_only = [{"b_id": c["id"], "b_version": c["version"]} for c in changes
                         if c.keys() == {"id", "version"}]
        if versions_only:  # (most changes of a sync after an import: the listed version recorded)
            items = registration.ITEMS
            s.execute(update(items).where(items.c.id == bindparam("b_id"))
                      .values(remote_version=bindparam("b_version")), versions_only)
        for change in changes:
            if change.keys() == {"id", "version"}:
                continue
            values: dict[str, Any] = {"remote_version": change["version"]}
            if "size" in change:
                values["file_size"], values["updated_at"] = change["size"], now
            if "media" in change:
                media = dict(change["media"])
                values["media"] = media
                values["mime_type"] = media.get("mime_type")
                values["file_size"] = media.get("file_size", change["size"])
            if "metadata" in change:
                values["client_metadata"], values["updated_at"] = change["metadata"], now
            s.execute(update(Item).where(Item.id == change["id"]).values(**values)
                      .execution_options(synchronize_session=False))
        projection.project_again(s, unit.org_id, metadata)
        upload: uuid.UUID | None = None
        new: dict[str, list[dict[str, Any]]] = {}
        for page in pages:
            for name, entries in page.new.items():
                new.setdefault(name, []).extend(entries)
        if new:
            from corral.registration import service

            last = seq + len(pages) - 1
            manifest = orjson.dumps({**new, "skip_duplicate_urls": True})
            created_by = uuid.UUID(params["created_by"]) if params.get("created_by") else None
            child = service.create_job(
                s, unit.org_id, folder_id, uuid.UUID(params["integration_id"]),
                params.get("provider", "cloud"),
                created_by=created_by, ignore_errors=True, skip_duplicate_urls=True,
                extra={"sync_job_id": str(unit.job_id),
                       "manifest_name": f"cloud sync page {seq}" + (f"-{last}" if last > seq else "")},
                manifest=io.BytesIO(manifest),
            )
            upload = child.id
        for n, page in enumerate(pages, start=seq):
            unchanged = max(0, len(page.seen) - page.updated - len(page.restored))
            count = sum(map(len, page.new.values()))
            result = {"last_key": page.last_key, "objects": page.objects, "new": count,
                      "updated": page.updated, "restored": len(page.restored), "unchanged": unchanged,
                      "ignored": page.ignored, "sidecars": page.sidecars, "attached": page.attached,
                      "failed": page.failed, "errors": page.errors,
                      "upload_job": str(upload) if upload and count else None}
            s.add(JobUnit(job_id=unit.job_id, seq=n, payload={"op": "page"}, status="done", result=result,
                          attempts=1, available_at=now, updated_at=now))
        s.execute(update(Job).where(Job.id == unit.job_id).values(units_total=Job.units_total + len(pages)))


class _Boundary:
    """Where a scan page may be cut: never between a data file and its sidecar (its key plus the
    suffix).  Keys come in order, so the page's data files whose sidecar may still come are each
    a prefix of the next key and form a chain: a stack, whose top is dropped once a key no longer
    starts with it or sorts past its sidecar's key (no later key can then be its sidecar).  Each
    key is pushed and popped at most once: linear in the page (the former check searched the
    page's keys for each key past the page's size)."""

    def __init__(self, ingestion: Ingestion | None) -> None:
        self.suffix = ingestion.suffix if ingestion is not None else None
        self.pending: list[str] = []

    def continues(self, key: str) -> bool:
        """Whether the page must not be cut before ``key`` (a data file's sidecar may come)."""
        if self.suffix is None:
            return False
        while self.pending:
            top = self.pending[-1]
            if key.startswith(top) and key <= top + self.suffix:
                break
            self.pending.pop()
        return bool(self.pending)

    def cut(self) -> None:
        self.pending.clear()

    def add(self, key: str) -> None:
        if self.suffix is not None and not key.endswith("/") and not key.endswith(self.suffix):
            self.pending.append(key)


def _scan(ctx: WorkerContext, unit: ClaimedUnit) -> dict[str, Any]:
    db: Database = ctx.services["db"]
    settings: Settings = ctx.services["settings"]
    params = unit.params
    folder_id = uuid.UUID(params["folder_id"])
    with db.read() as s:
        folder = s.get(Folder, folder_id)
        row = s.get(Integration, uuid.UUID(params["integration_id"]))
        if folder is None:
            raise UnitFailed("the folder was deleted")
        if row is None or row.org_id != unit.org_id:
            raise UnitFailed(f"the integration of {params['remote_url']} was deleted")
        ingestion = Ingestion.of(folder.config)
    if ingestion is not None and (problem := sidecar_suffix_problem(ingestion.suffix)) is not None:
        # (a config saved before corral refused such a suffix: the sync would tombstone every item)
        raise UnitFailed(f"the folder config's metadataIngestion.matcher.suffix {ingestion.suffix!r}: "
                         f"{problem}")
    try:
        storage = integrations.open_row(row, settings)
    except (OSError, ValueError, errors.CorralError) as exc:  # the operator's policy refuses it, ...
        raise UnitFailed(f"cannot open integration {row.title!r} to sync {params['remote_url']}: "
                         f"{exc}") from None
    try:
        try:
            prefix = storage.storage.key_for_url(params["remote_url"])
        except base.OutOfScope as exc:
            raise UnitFailed(f"cannot sync {params['remote_url']}: {exc}") from None
        if prefix and not prefix.endswith("/"):
            prefix += "/"
        if not prefix.startswith(storage.prefix):
            raise UnitFailed(f"cannot sync {params['remote_url']}: it is outside integration {row.title!r}")
        seq, after = _done_pages(db, unit.job_id)
        listing = storage.iter_objects(prefix[len(storage.prefix):], page_size=PAGE)
        objs: list[ObjectInfo] = []
        boundary = _Boundary(ingestion)
        held: list[_Page] = []  # classified, not yet committed
        batch, since = 1, time.monotonic()
        while True:
            try:
                obj = next(listing, None)
            except errors.CorralError as exc:
                raise UnitFailed(f"cannot list {params['remote_url']}: {exc}") from None
            if obj is not None and after is not None and obj.key <= after:
                continue  # committed before a restart
            continues = obj is not None and boundary.continues(obj.key)
            full = len(objs) >= PAGE and (not continues or len(objs) >= 4 * PAGE)
            if objs and (obj is None or full):
                held.append(_classify(db, storage, folder_id, unit.org_id, objs, ingestion))
                objs = []
                boundary.cut()
            if held and (obj is None or len(held) >= batch or time.monotonic() - since >= BATCH_SECONDS):
                _commit_pages(ctx, unit, seq + 1, held)
                seq += len(held)
                held = []
                batch, since = min(2 * batch, BATCH_PAGES), time.monotonic()
            if obj is None:
                break
            objs.append(obj)
            boundary.add(obj.key)
    finally:
        storage.close()
    return {"pages": seq}


def _prepare(ctx: WorkerContext, unit: ClaimedUnit) -> dict[str, Any]:
    return _scan(ctx, unit)


def _commit(s: Session, unit: ClaimedUnit, prepared: dict[str, Any]) -> dict[str, Any]:
    return dict(prepared)


def _cancel_uploads(s: Session, job: Job) -> None:
    """A cancelled sync's upload jobs still running are cancelled with it, as an import is
    (``queue.cancel_job``: their pending units, then their end): they went on registering the
    files the sync's progress called cancelled, and kept the folder's next sync from starting
    (a start answered the cancelled sync) until they ended."""
    children = s.scalars(select(Job).where(Job.kind == registration.KIND, Job.target_id == job.target_id,
                                           Job.status == "PENDING")).all()
    for child in children:
        if (child.params or {}).get("sync_job_id") != str(job.id):
            continue
        s.execute(update(JobUnit).where(JobUnit.job_id == child.id, JobUnit.status == "pending")
                  .values(status="cancelled", updated_at=utcnow()))
        child.params = {**child.params, "cancel_requested": True}


def _finalize(s: Session, job: Job) -> None:
    if job.params.get("cancel_requested") and job.status != "ERROR":
        job.status = "CANCELLED"
    scan = s.execute(select(JobUnit.status, JobUnit.error)
                     .where(JobUnit.job_id == job.id, JobUnit.seq == 0)).first()
    if scan is not None and scan.status == "error" and not job.params.get("cancel_requested"):
        job.status, job.error = "ERROR", scan.error
    if job.status != "DONE":
        if job.status == "CANCELLED":
            _cancel_uploads(s, job)
        s.execute(delete(CloudSyncSeen).where(CloudSyncSeen.job_id == job.id))
        return
    folder_id = uuid.UUID(job.params["folder_id"])
    now = utcnow()
    listed = exists().where(CloudSyncSeen.job_id == job.id, CloudSyncSeen.item_id == Item.id)
    gone = s.execute(
        update(Item)
        .where(Item.folder_id == folder_id, Item.tombstoned_at.is_(None), Item.deleted_at.is_(None),
               ~listed, Item.created_at < job.created_at)
        .values(tombstoned_at=now, updated_at=now)
        .execution_options(synchronize_session=False)
    )
    s.execute(delete(CloudSyncSeen).where(CloudSyncSeen.job_id == job.id))
    job.result = {**(job.result or {}), "tombstoned": int(getattr(gone, "rowcount", 0) or 0)}
    s.execute(update(Folder).where(Folder.id == folder_id).values(last_synced_at=now)
              .execution_options(synchronize_session=False))


TASK = registry.register(TaskKind(KIND, _prepare, _commit, _finalize, max_attempts=5))


# -- the schedule -----------------------------------------------------------------------------


#: The longest interval ``start_due`` tells apart from "never again" (a thousand years).
MAX_INTERVAL_SECONDS = 1000 * 366 * 86400.0


def start_due(db: Database, interval_seconds: float, *, limit: int = 10) -> list[uuid.UUID]:
    """Start a sync of each cloud-synced folder whose last sync started ``interval_seconds`` ago
    or more (or never), at most ``limit`` a call; a folder with a sync running is left alone.
    Safe from any number of processes at once: ``start`` decides under the folder's lock."""
    if interval_seconds <= 0:
        return []
    # (at most a thousand years: a longer interval, ``inf`` included, put the cutoff before the
    # year 1, an OverflowError at every look; the folders never synced are due whatever it is)
    cutoff = utcnow() - timedelta(seconds=min(interval_seconds, MAX_INTERVAL_SECONDS))
    recent = select(Job.id).where(Job.kind == KIND, Job.target_id == Folder.id, Job.created_at > cutoff)
    with db.read() as s:
        due = list(s.scalars(select(Folder.id).where(Folder.kind == folders.CLOUD_LINKED, ~recent.exists())
                             .order_by(Folder.last_synced_at.is_not(None), Folder.last_synced_at)
                             .limit(limit)))
    started = []
    for folder_id in due:
        with db.write() as s:
            folder = s.get(Folder, folder_id)
            if folder is None or folder.kind != folders.CLOUD_LINKED:
                continue
            if s.scalar(recent.where(Job.target_id == folder_id).limit(1)) is not None:
                continue  # another process started it meanwhile
            try:
                job_id, fresh = start(s, folder, None)
            except errors.CorralError:
                continue  # (its integration is gone: nothing to sync)
            if fresh:
                started.append(job_id)
    return started

