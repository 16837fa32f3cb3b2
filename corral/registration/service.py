"""Starting imports and dry runs: the entry points the API and CLI call."""

from __future__ import annotations

import random
import uuid
from dataclasses import dataclass, field
from typing import Any, BinaryIO

from sqlalchemy.orm import Session

from corral import errors, scratch
from corral.core import datasets, folders, integrations
from corral.core.identity import Principal
from corral.core.metadata import service as metadata_service
from corral.db.engine import Database
from corral.db.tables import Job
from corral.errors import ErrorDetail
from corral.jobs import queue
from corral.registration import uploads
from corral.registration.files import FileError, group_urls, prepare_entry, strict_problem
from corral.registration.jobs import KIND, store_manifest
from corral.settings import Settings

DRY_RUN_SAMPLE = 50


@dataclass
class DryRunReport:
    entries: int = 0
    valid: int = 0
    errors: list[dict[str, Any]] = field(default_factory=list)
    error_count: int = 0
    sampled: int = 0
    strict_client_only: bool = False


#: The longest manifest name a job keeps (a file name, as the Encord SDK sends it).
MAX_MANIFEST_NAME = 300


def check_manifest_name(value: Any, field: str) -> str | None:
    """The name of the manifest's file (the Encord SDK's ``fileName``, the native
    ``manifest_name``): kept with the job and shown with its progress.  None when not given."""
    if value is None:
        return None
    if (not isinstance(value, str) or not 1 <= len(value) <= MAX_MANIFEST_NAME
            or any(ord(ch) < 32 or 127 <= ord(ch) < 160 for ch in value)):
        expected = f"a file name of 1 to {MAX_MANIFEST_NAME} characters without control characters"
        raise errors.InvalidInput(f"{field} must be {expected}", details=[ErrorDetail(expected, field=field)])
    return value


def _one_manifest(manifest: BinaryIO | None, manifest_url: str | None) -> None:
    if (manifest is None) == (manifest_url is None):
        raise errors.InvalidInput(
            "give the manifest either as the request body or as manifest_url, not both",
            details=[ErrorDetail("a manifest, or the URL of one", field="manifest_url")],
        )


def start_import(
    db: Database,
    settings: Settings,
    principal: Principal,
    *,
    folder: str,
    integration: str | None,
    manifest: BinaryIO | None = None,
    manifest_url: str | None = None,
    ignore_errors: bool = False,
    skip_duplicate_urls: bool = False,
    upsert_metadata: bool = False,
    dataset: uuid.UUID | None = None,
    manifest_name: str | None = None,
) -> uuid.UUID:
    """Store the manifest (or check the URL it is at) and create the job; workers do the rest.
    Returns the job id at once.

    ``integration`` None means the organisation's upload integration (files PUT to the URLs that
    ``uploads.start`` signs).  With ``dataset``, the registered items are linked into that dataset
    (which needs the editor role) when the job succeeds.  ``manifest_name`` (checked with
    ``check_manifest_name``) is kept with the job and shown with its progress.
    """
    _one_manifest(manifest, manifest_url)
    with db.write() as s:
        folder_row = folders.resolve_for(s, principal, folder, "editor")
        folders.hold(s, folder_row, folder)  # a concurrent folder delete is a 404 here, or sees this job
        folders.require_generic(folder_row, "register files into")
        if dataset is not None:
            datasets.resolve(s, principal, dataset, "editor")
        if integration is None:
            integration = str(uploads.upload_integration(s, settings, principal).id)
        integ = integrations.get(s, principal.org_id, integration)
        if manifest_url is not None:
            scoped = integrations.open_scoped(s, settings, principal.org_id, integration)
            try:
                manifest_url = scoped.resolve(manifest_url).url  # out of scope: a 400, now
            finally:
                scoped.close()
        job = create_job(
            s, principal.org_id, folder_row.id, integ.id, integ.provider, created_by=principal.user_id,
            ignore_errors=ignore_errors, skip_duplicate_urls=skip_duplicate_urls,
            upsert_metadata=upsert_metadata,
            extra={
                **({"dataset_id": str(dataset)} if dataset is not None else {}),
                **({"manifest_url": manifest_url} if manifest_url is not None else {}),
                **({"manifest_name": manifest_name} if manifest_name is not None else {}),
            },
        )
        if manifest is not None:
            store_manifest(s, job.id, manifest)
        return job.id


def create_job(
    s: Session, org_id: uuid.UUID, folder_id: uuid.UUID, integration_id: uuid.UUID, provider: str, *,
    created_by: uuid.UUID | None, ignore_errors: bool = False, skip_duplicate_urls: bool = False,
    upsert_metadata: bool = False, extra: dict[str, Any] | None = None, manifest: BinaryIO | None = None,
) -> Job:
    """An upload job into a folder already resolved and checked, in the caller's transaction (its
    manifest stored too, when given).  ``start_import`` and cloud syncs (``corral.core.cloudsync``,
    whose page commits start one for the new objects of each scan page) create jobs through it."""
    params = {
        "folder_id": str(folder_id),
        "integration_id": str(integration_id),
        "provider": provider,
        "ignore_errors": ignore_errors,
        "skip_duplicate_urls": skip_duplicate_urls,
        "upsert_metadata": upsert_metadata,
        "created_by": str(created_by) if created_by is not None else None,
        **(extra or {}),
    }
    job = queue.create_job(
        s,
        org_id=org_id,
        kind=KIND,
        units=[{"op": "plan"}],
        params=params,
        ignore_errors=ignore_errors,
        created_by=created_by,
        target_id=folder_id,
    )
    if manifest is not None:
        store_manifest(s, job.id, manifest)
    return job


def dry_run(
    db: Database,
    settings: Settings,
    principal: Principal,
    *,
    folder: str,
    integration: str,
    manifest: BinaryIO | None = None,
    manifest_url: str | None = None,
    error_limit: int = 1000,
) -> DryRunReport:
    """Check everything that can be checked without writing: entries, scope, metadata, and (unless
    the integration is strict client-only) that a random sample of the objects exists."""
    import corral.registration.manifest as parser

    _one_manifest(manifest, manifest_url)
    report = DryRunReport()
    with db.read() as s:
        folders.resolve_for(s, principal, folder, "editor")
        scoped = integrations.open_scoped(s, settings, principal.org_id, integration)
        _, validator = metadata_service.validator(s, principal.org_id)
    report.strict_client_only = scoped.strict_client_only
    rng = random.Random(0)
    sample: list[Any] = []
    try:
        with scratch.directory("corral-dry-run-") as tmp:
            path = tmp / "manifest"
            with path.open("wb") as out:
                if manifest_url is not None:
                    scoped.copy_manifest(manifest_url, out)
                else:
                    assert manifest is not None
                    while chunk := manifest.read(1 << 20):
                        out.write(chunk)
            fmt = parser.detect_format(path)
            for item in parser.iter_entries(path, fmt):
                report.entries += 1
                problem: FileError | None = None
                if isinstance(item, parser.EntryError):
                    problem = FileError(
                        item.seq if item.seq is not None else -1, item.where, item.url, item.message
                    )
                else:
                    entry = item  # a parsed Entry has everything prepare_entry reads
                    problem = _static_problem(entry, scoped, validator)
                    if problem is None:
                        # reservoir sample of entries whose objects to check
                        if len(sample) < DRY_RUN_SAMPLE:
                            sample.append(entry)
                        elif (j := rng.randrange(report.entries)) < DRY_RUN_SAMPLE:
                            sample[j] = entry
                if problem is not None:
                    report.error_count += 1
                    if len(report.errors) < error_limit:
                        report.errors.append(problem.as_dict())
                else:
                    report.valid += 1
        if not scoped.strict_client_only:
            for entry in sample:
                report.sampled += 1
                result = prepare_entry(entry, scoped, validator)
                if isinstance(result, FileError):
                    report.error_count += 1
                    report.valid -= 1
                    if len(report.errors) < error_limit:
                        report.errors.append(result.as_dict())
    finally:
        scoped.close()
    return report


def _static_problem(entry: Any, scoped: Any, validator: Any) -> FileError | None:
    """The checks that need no request: scope and metadata."""
    from corral.core.metadata.validation import describe

    every = group_urls(entry)
    for url in entry.urls:
        try:
            scoped.resolve(url)
        except errors.OutOfScope as exc:
            return FileError(entry.seq, entry.where, url, exc.message, every)
    first = entry.urls[0] if entry.urls else None
    _, problems = validator.validate(entry.client_metadata)
    if problems:
        return FileError(entry.seq, entry.where, first, describe(problems), every)
    why = strict_problem(entry, scoped)
    return FileError(entry.seq, entry.where, first, why, every) if why else None
