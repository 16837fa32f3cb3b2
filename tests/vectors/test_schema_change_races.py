"""An embedding validated against one schema and written under the next: nothing is lost in silence.

A registration job validates its entries against the schema of when its batch was read; an admin
may re-size the key (or change its metric to cosine) before the batch is written.  The vectors
the key no longer takes used to be left out of the write while the items kept the marker
(``{"clip": {"$vector": {"dim": 4}}}``, read back as ``"missing": true``) and the job reported
them registered.  Now each such entry is the job's entry error naming the key and the sizes (the
other entries are registered; an all-or-nothing job fails), and any other write (an item update
validated before the change) is a 409 that writes nothing.  The order is made deterministic by
running a batch's two steps, as the worker does, with the schema change in between.
"""

from __future__ import annotations

import uuid
from datetime import timedelta
from typing import Any

import numpy as np
import pytest
from sqlalchemy import func, select, update
from starlette.testclient import TestClient

from corral import errors
from corral.api.app import create_app
from corral.core import folders, integrations
from corral.core.identity import Principal
from corral.core.metadata import service as metadata_service
from corral.db.tables import Folder, Integration, Item, ItemVector, Job, JobUnit
from corral.db.types import utcnow
from corral.jobs import queue
from corral.jobs.tasks import UnitFailed
from corral.jobs.worker import Worker
from corral.registration.jobs import KIND
from tests.files.conftest import add_items

DIM = 4
URL = "/api/v1/metadata-schema"


def schema(size: int = DIM, metric: str = "cosine") -> dict[str, Any]:
    return {"keys": {"clip": {"type": "embedding", "size": size, "metric": metric}, "tag": {"type": "varchar"}}}


@pytest.fixture
def world(db, settings, make_user):  # type: ignore[no-untyped-def]
    user = make_user("alice@x.io")
    admin = Principal(user.user_id, user.org_id, user.email, "admin", "bearer")
    with db.write() as s:
        integrations.create(s, admin, settings, title="strict", provider="s3",
                            values={"bucket": "media", "region": "eu-west-1", "access_key_id": "AKIA1",
                                    "secret_access_key": "s"}, strict_client_only=True)
        folders.create_path(s, admin, "f")
        folder_id = s.scalar(select(Folder.id).where(Folder.org_id == admin.org_id))
        integ_id = s.scalar(select(Integration.id).where(Integration.org_id == admin.org_id))
    with TestClient(create_app(settings, db=db), raise_server_exceptions=False) as client:
        yield client, user, folder_id, integ_id


def _entry(i: int, clip: list[float] | None) -> dict[str, Any]:
    meta: dict[str, Any] = {"tag": f"t{i}"}
    if clip is not None:
        meta["clip"] = clip
    return {"seq": i, "where": f"images[{i}]", "data_type": "image", "urls": [f"s3://media/img/{i:04d}.jpg"],
            "title": f"{i}", "client_metadata": meta, "media": {"width": 4, "height": 3}}


def _job(db, world, *batches: list[dict[str, Any]], ignore_errors: bool, **flags: bool) -> uuid.UUID:  # type: ignore[no-untyped-def]
    """A registration job whose manifest was read into batch units, each held until it is run."""
    _, user, folder_id, integ_id = world
    params = {"folder_id": str(folder_id), "integration_id": str(integ_id), "provider": "s3",
              "ignore_errors": ignore_errors, "skip_duplicate_urls": False, "upsert_metadata": False,
              "created_by": str(user.user_id), **flags}
    with db.write() as s:
        job = queue.create_job(s, org_id=user.org_id, kind=KIND, params=params, ignore_errors=ignore_errors,
                               units=[{"op": "plan"}] + [{"op": "batch", "entries": b} for b in batches],
                               target_id=folder_id)
        s.execute(update(JobUnit).where(JobUnit.job_id == job.id).values(available_at=utcnow() + timedelta(days=1)))
        plan = {"entries": sum(map(len, batches)), "batches": len(batches), "errors": [], "error_count": 0}
        s.execute(update(JobUnit).where(JobUnit.job_id == job.id, JobUnit.seq == 0)
                  .values(status="done", payload={}, result=plan))
        return job.id


def _run(db, settings, job_id: uuid.UUID, batch: int) -> None:  # type: ignore[no-untyped-def]
    """Run one batch of a job to its end, as a worker would (finalising the job if it was the last)."""
    with db.write() as s:
        s.execute(update(JobUnit).where(JobUnit.job_id == job_id, JobUnit.seq == batch + 1)
                  .values(available_at=utcnow() - timedelta(seconds=1)))
    worker = Worker(db, settings)
    [unit] = queue.claim(db, worker.owner, 1, 60)
    assert (unit.job_id, unit.seq) == (job_id, batch + 1)
    worker._process(unit)


def _run_with_a_schema_change(db, settings, world, job_id: uuid.UUID, new: dict[str, Any]) -> None:  # type: ignore[no-untyped-def]
    """The batch's two steps as the worker runs them (``Worker._run_unit``): read and validated,
    then, once an admin saved ``new``, written; then the job finalised."""
    client, user, _, _ = world
    with db.write() as s:
        s.execute(update(JobUnit).where(JobUnit.job_id == job_id, JobUnit.seq == 1)
                  .values(available_at=utcnow() - timedelta(seconds=1)))
    worker = Worker(db, settings)
    [unit] = queue.claim(db, worker.owner, 1, 60)
    kind = worker.tasks.get(unit.kind)
    assert kind is not None
    prepared = kind.prepare(worker.ctx, unit)
    r = client.put(URL, json=new, headers=user.bearer)
    assert r.status_code == 200, r.text
    try:
        with db.write() as s:
            result = kind.commit(s, unit, prepared)
            queue.complete(s, unit, worker.owner, result)
    except UnitFailed as exc:
        worker._fail(unit, str(exc), details=exc.details)
    queue.finalize_ready_jobs(db, worker.tasks, job_ids=[job_id])


def _report(world, job_id: uuid.UUID) -> dict[str, Any]:  # type: ignore[no-untyped-def]
    client, user, _, _ = world
    r = client.get(f"/api/v1/imports/{job_id}", headers=user.bearer)
    assert r.status_code == 200, r.text
    return r.json()  # type: ignore[no-any-return]


def _items(db) -> dict[str, tuple[dict[str, Any], bool]]:  # type: ignore[no-untyped-def]
    """Each item's stored metadata by name, and whether a vector is stored for it."""
    with db.read() as s:
        vectors = set(s.scalars(select(ItemVector.item_id)))
        return {name: (meta, i in vectors) for i, name, meta in s.execute(select(Item.id, Item.name,
                                                                                    Item.client_metadata))}


def _errors(report: dict[str, Any]) -> dict[str, str]:
    found = report.get("errors") or report.get("result", {}).get("errors") or []
    return {e["where"]: e["error"] for e in found}


def test_a_key_resized_while_an_import_runs_fails_those_entries_naming_key_and_sizes(db, settings, world) -> None:  # type: ignore[no-untyped-def]
    client, user, _, _ = world
    assert client.put(URL, json=schema(DIM), headers=user.bearer).status_code == 200
    job = _job(db, world, [_entry(0, [1.0, 2.0, 3.0, 4.0]), _entry(1, None), _entry(2, [0.5] * DIM)],
               ignore_errors=True)
    _run_with_a_schema_change(db, settings, world, job, schema(DIM + 2))
    report = _report(world, job)
    errors_by_entry = _errors(report)
    assert set(errors_by_entry) == {"images[0]", "images[2]"}, report
    for error in errors_by_entry.values():
        assert "'clip' now holds embeddings of 6 numbers, and this one has 4" in error, report
        assert "schema changed" in error, report
    items = _items(db)
    # the entry without a vector is registered; none keeps a marker without its vector
    assert set(items) == {"1"}, items
    assert all(not any(isinstance(v, dict) and "$vector" in v for v in meta.values())
               for meta, _ in items.values())


def test_an_all_or_nothing_import_fails_on_a_key_resized_meanwhile(db, settings, world) -> None:  # type: ignore[no-untyped-def]
    client, user, _, _ = world
    assert client.put(URL, json=schema(DIM), headers=user.bearer).status_code == 200
    job = _job(db, world, [_entry(0, [1.0, 2.0, 3.0, 4.0]), _entry(1, None)], ignore_errors=False)
    _run_with_a_schema_change(db, settings, world, job, schema(DIM - 1))
    with db.read() as s:
        assert s.scalar(select(Job.status).where(Job.id == job)) == "ERROR"
        assert s.scalar(select(func.count()).select_from(Item).where(Item.deleted_at.is_(None))) == 0
        assert s.scalar(select(func.count()).select_from(ItemVector)) == 0
    report = _report(world, job)
    assert "'clip' now holds embeddings of 3 numbers, and this one has 4" in str(report), report


def test_a_metric_changed_to_cosine_while_an_import_runs_fails_its_zero_vectors(db, settings, world) -> None:  # type: ignore[no-untyped-def]
    client, user, _, _ = world
    assert client.put(URL, json=schema(DIM, "dot"), headers=user.bearer).status_code == 200
    job = _job(db, world, [_entry(0, [0.0] * DIM), _entry(1, [1.0] * DIM)], ignore_errors=True)
    _run_with_a_schema_change(db, settings, world, job, schema(DIM, "cosine"))  # no zero stored yet: allowed
    report = _report(world, job)
    errors_by_entry = _errors(report)
    assert list(errors_by_entry) == ["images[0]"], report
    assert "'clip' is now a cosine key" in errors_by_entry["images[0]"], report
    assert "a zero vector has no direction" in errors_by_entry["images[0]"], report
    items = _items(db)
    assert set(items) == {"1"} and items["1"][1], items  # registered, with its vector
    with db.read() as s:  # a cosine key holds no zero vector
        assert s.scalar(select(func.count()).select_from(ItemVector).where(ItemVector.vec == bytes(4 * DIM))) == 0


@pytest.mark.parametrize("change", ["resized", "cosine over a zero vector", "deleted"])
def test_an_item_write_validated_before_a_schema_change_is_a_409_writing_nothing(db, settings, world, change) -> None:  # type: ignore[no-untyped-def]
    """An item update reads the schema to validate, then writes: a schema change committed in
    between (another process) is caught where the vector is stored, and the write rolls back."""
    client, user, folder_id, _ = world
    first = schema(DIM, "dot")
    assert client.put(URL, json=first, headers=user.bearer).status_code == 200
    [item_id] = add_items(db, user, str(folder_id), [{"name": "a.png", "meta": {"tag": "x"}}])
    value = [0.0] * DIM if change == "cosine over a zero vector" else [1.0] * DIM
    with db.read() as s:  # validated against the schema as it is
        validated = metadata_service.validated(s, user.org_id, {"clip": value, "tag": "y"})
    new = {"resized": schema(DIM + 1, "dot"), "cosine over a zero vector": schema(DIM, "cosine"),
           "deleted": {"keys": {**first["keys"], "clip": {**first["keys"]["clip"], "deleted": "soft"}}}}[change]
    r = client.put(URL, json=new, headers=user.bearer)
    assert r.status_code == 200, r.text
    with pytest.raises(errors.Conflict) as raised, db.write() as s:
        row = s.get(Item, item_id)
        assert row is not None
        row.client_metadata = validated
    assert "'clip'" in raised.value.message and "schema changed" in raised.value.message, raised.value.message
    assert [d.field for d in raised.value.details] == ["client_metadata.clip"]
    with db.read() as s:
        assert s.scalar(select(Item.client_metadata).where(Item.id == item_id)) == {"tag": "x"}
        assert s.scalar(select(func.count()).select_from(ItemVector)) == 0


def _vectors(db) -> dict[str, list[float]]:  # type: ignore[no-untyped-def]
    with db.read() as s:
        rows = s.execute(select(Item.name, ItemVector.vec).join(ItemVector, ItemVector.item_id == Item.id)
                         .where(Item.deleted_at.is_(None)))
        return {name: np.frombuffer(vec, dtype="<f4").tolist() for name, vec in rows}


def test_an_upsert_settled_when_the_job_ends_gives_the_copy_its_vector(db, settings, world) -> None:  # type: ignore[no-untyped-def]
    """Job A (all or nothing, upsert_metadata) stages a URL; job B registers the same URL and is
    published first; when A ends, B's item takes A's metadata (``_resolve_duplicates``).  It
    took A's marker and kept B's vector (A's was deleted with A's staged item): the item said
    A's metadata and searched as B's.  It now takes A's vector with A's metadata."""
    client, user, _, _ = world
    assert client.put(URL, json=schema(DIM), headers=user.bearer).status_code == 200
    flags = {"skip_duplicate_urls": True, "upsert_metadata": True}
    a = _job(db, world, [_entry(0, [1.0, 0.0, 0.0, 0.0])], [_entry(1, [1.0, 1.0, 0.0, 0.0])],
             ignore_errors=False, **flags)
    _run(db, settings, a, 0)  # A stages image 0 and waits for its last batch
    from_b = _entry(0, [0.0, 1.0, 0.0, 0.0])
    from_b["client_metadata"]["tag"] = "b"
    b = _job(db, world, [from_b], ignore_errors=True, **flags)
    _run(db, settings, b, 0)
    with db.read() as s:
        assert s.scalar(select(Job.status).where(Job.id == b)) == "DONE"
    _run(db, settings, a, 1)
    with db.read() as s:
        assert s.scalar(select(Job.status).where(Job.id == a)) == "DONE"
    items = _items(db)
    assert sorted(items) == ["0", "1"] and items["0"][0]["tag"] == "t0", items  # A's metadata
    assert _vectors(db) == {"0": [1.0, 0.0, 0.0, 0.0], "1": [1.0, 1.0, 0.0, 0.0]}


def test_an_upsert_settled_when_the_job_ends_keeps_the_copy_s_vector_for_a_marker(
    db, settings, world  # type: ignore[no-untyped-def]
) -> None:
    """As above, but A's entry sends the embedding's marker (``{"$vector": {"dim": 4}}``, as an
    item reads and exports it): "keep the stored vector".  A's staged item has none, and the copy
    lost its own (every vector of the copy was replaced by the staged item's, none): it now keeps
    it, and takes A's other metadata."""
    client, user, _, _ = world
    assert client.put(URL, json=schema(DIM), headers=user.bearer).status_code == 200
    flags = {"skip_duplicate_urls": True, "upsert_metadata": True}
    from_a = _entry(0, None)
    from_a["client_metadata"]["clip"] = {"$vector": {"dim": DIM}}
    a = _job(db, world, [from_a], [_entry(1, [1.0, 1.0, 0.0, 0.0])], ignore_errors=False, **flags)
    _run(db, settings, a, 0)
    from_b = _entry(0, [0.0, 1.0, 0.0, 0.0])
    from_b["client_metadata"]["tag"] = "b"
    b = _job(db, world, [from_b], ignore_errors=True, **flags)
    _run(db, settings, b, 0)
    _run(db, settings, a, 1)
    with db.read() as s:
        assert s.scalar(select(Job.status).where(Job.id == a)) == "DONE"
    items = _items(db)
    assert items["0"][0]["tag"] == "t0", items  # A's metadata
    assert _vectors(db) == {"0": [0.0, 1.0, 0.0, 0.0], "1": [1.0, 1.0, 0.0, 0.0]}  # B's vector kept
