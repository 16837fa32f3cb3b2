"""Small thumbnails of images, made once by a job and kept in corral's own storage.

After an upload job publishes its items, ``enqueue_for_job`` starts a ``thumbnails`` job over
its image items in integrations that are *not* strict client-only.  Each unit reads a batch of
images through the integration (``ScopedStorage.read``, the one gate that refuses strict
client-only reads), shrinks each to at most ``MAX_SIDE`` pixels and writes a JPEG to
``DATA_DIR/thumbnails/<org id>/<item id>.jpg`` (atomically).  A strict client-only
integration's items are never read: the web UI loads their originals through signed URLs.
"""

from __future__ import annotations

import io
import os
import tempfile
import uuid
from pathlib import Path
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from corral import errors
from corral.core import integrations
from corral.db.engine import Database
from corral.db.tables import Integration, Item, Job
from corral.jobs import queue
from corral.jobs.tasks import ClaimedUnit, TaskKind, WorkerContext, registry
from corral.settings import Settings

KIND = "thumbnails"
MAX_SIDE = 256
#: Images larger than this are not read for a thumbnail (the grid shows their type instead).
MAX_SOURCE_BYTES = 50 << 20
#: Pixels Pillow may decode for one image (a decompression bomb is refused).
MAX_PIXELS = 100_000_000
BATCH = 50


def path_for(settings: Settings, org_id: uuid.UUID, item_id: uuid.UUID) -> Path:
    return settings.data_dir / "thumbnails" / str(org_id) / f"{item_id}.jpg"


def make(data: bytes) -> bytes:
    """A JPEG of at most MAX_SIDE x MAX_SIDE pixels, aspect kept; ValueError if not an image."""
    from PIL import Image

    Image.MAX_IMAGE_PIXELS = MAX_PIXELS
    try:
        with Image.open(io.BytesIO(data)) as img:
            img.draft("RGB", (MAX_SIDE, MAX_SIDE))  # JPEG: decode at a reduced scale
            img.thumbnail((MAX_SIDE, MAX_SIDE))
            out = io.BytesIO()
            img.convert("RGB").save(out, "JPEG", quality=80, optimize=True)
            return out.getvalue()
    except (OSError, Image.DecompressionBombError, ValueError) as exc:
        raise ValueError(f"not a readable image: {exc}") from None


def _write(target: Path, data: bytes) -> None:
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=target.parent, suffix=".part")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.replace(tmp, target)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def enqueue_for_job(s: Session, job: Job) -> Job | None:
    """A thumbnails job over the image items an upload job registered, or None if there are
    none to make (no images, or every one in a strict client-only integration).

    Every item a job registers is of the job's integration (``corral.registration.jobs``), so a
    job into a strict client-only integration is answered from that one row, without reading
    the job's items (a million-file import's were read one by one, 0.9 s of its final
    transaction, which holds SQLite's write lock)."""
    integration_id = job.params.get("integration_id")
    if integration_id is not None:
        strict = s.scalar(select(Integration.strict_client_only)
                          .where(Integration.id == uuid.UUID(str(integration_id))))
        if strict:
            return None
    query = (
        select(Item.id)
        .join(Integration, Integration.id == Item.integration_id)
        .where(Item.job_id == job.id, Item.item_type == "image", Item.deleted_at.is_(None),
               Integration.strict_client_only.is_(False))
        .order_by(Item.id)
    )
    ids = [str(i) for i in s.scalars(query)]
    if not ids:
        return None
    units = [{"items": ids[i:i + BATCH]} for i in range(0, len(ids), BATCH)]
    return queue.create_job(s, org_id=job.org_id, kind=KIND, units=units, params={"source_job": str(job.id)},
                            ignore_errors=True, created_by=job.created_by)


def make_for_items(
    db: Database, settings: Settings, org_id: uuid.UUID, item_ids: list[str]
) -> dict[str, Any]:
    """Make the thumbnails of some items of an organisation: counts and each failure."""
    with db.read() as s:
        rows = s.execute(
            select(Item.id, Item.url, Item.file_size, Item.integration_id, Item.item_type)
            .where(Item.id.in_([uuid.UUID(i) for i in item_ids]), Item.org_id == org_id)
        ).all()
        found = {r.integration_id: s.get(Integration, r.integration_id) for r in rows if r.integration_id}
    counts: dict[str, Any] = {"made": 0, "skipped": 0, "failed": 0, "errors": []}
    stores: dict[uuid.UUID, Any] = {}
    try:
        for r in rows:
            integration = found.get(r.integration_id)
            if (integration is None or integration.strict_client_only or r.item_type != "image" or not r.url
                    or (r.file_size or 0) > MAX_SOURCE_BYTES):
                counts["skipped"] += 1
                continue
            try:
                if integration.id not in stores:
                    stores[integration.id] = integrations.shared(integration, settings)
                with integrations.request_slots(integration.id):
                    data = stores[integration.id].read(r.url, 0, MAX_SOURCE_BYTES)
                _write(path_for(settings, org_id, r.id), make(data))
                counts["made"] += 1
            except (errors.CorralError, ValueError) as exc:
                counts["failed"] += 1
                counts["errors"].append({"item_id": str(r.id), "error": str(exc)[:500]})
    finally:
        for store in stores.values():
            store.close()
    return counts


def _prepare(ctx: WorkerContext, unit: ClaimedUnit) -> dict[str, Any]:
    items = unit.payload.get("items")
    if not isinstance(items, list):
        raise errors.InvalidInput("a thumbnails unit names its items")
    return make_for_items(ctx.services["db"], ctx.services["settings"], unit.org_id, items)


def _commit(_s: Session, _unit: ClaimedUnit, prepared: dict[str, Any]) -> dict[str, Any]:
    return prepared  # the thumbnails are files; the unit's result counts them


TASK = registry.register(TaskKind(KIND, _prepare, _commit, max_attempts=3))
