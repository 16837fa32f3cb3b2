"""Jobs' large inputs compressed with lz4 on PostgreSQL (migration 0028a): the columns' method up
and down, a value stored before the change read back after it, and a manifest stored in chunks and
read back byte for byte by the worker's own reader."""

from __future__ import annotations

import io
import os
import uuid
from pathlib import Path
from typing import Any

from sqlalchemy import text

from corral.db import Database, migrate
from corral.db.tables import Job
from corral.jobs import queue
from corral.registration import jobs
from tests.db.test_item_parents import fresh  # noqa: F401 (a fixture)

COLUMNS = [("job_blobs", "data"), ("job_units", "payload"), ("job_units", "result")]


def _methods(db: Database) -> list[str]:
    """Each column's compression method: 'l' lz4, '' the server's default (pglz)."""
    with db.engine.connect() as conn:
        return [str(conn.execute(text(
            "SELECT attcompression FROM pg_attribute WHERE attrelid = CAST(:t AS regclass) AND attname = :c"),
            {"t": table, "c": column}).scalar_one()) for table, column in COLUMNS]


def _lz4(db: Database) -> bool:
    with db.engine.connect() as conn:
        return bool(conn.execute(text(
            "SELECT 'lz4' = ANY(enumvals) FROM pg_settings WHERE name = 'default_toast_compression'")).scalar())


def test_0028a_up_and_down(fresh: Database) -> None:  # noqa: F811
    db = fresh
    migrate.upgrade(db, "0027a")
    job = uuid.uuid4()
    # a manifest chunk large enough to be stored out of line, and compressible, before the change
    chunk = b'{"objectUrl": "s3://b/' + os.urandom(8).hex().encode() + b'.jpg"},' * 40_000
    with db.engine.begin() as conn:
        v = (lambda u: u.hex) if db.is_sqlite else (lambda u: u)
        conn.execute(text("INSERT INTO organisations (id, name, strict_metadata, created_at) "
                          "VALUES (:id, 'o', false, '2026-01-01')"), {"id": v(job)})
        conn.execute(text("INSERT INTO jobs (id, org_id, kind, status, params, result, ignore_errors, "
                          "units_total, created_at, updated_at) VALUES "
                          "(:id, :id, 'k', 'PENDING', '{}', '{}', false, 0, '2026-01-01', '2026-01-01')"),
                     {"id": v(job)})
        conn.execute(text("INSERT INTO job_blobs (job_id, seq, data) VALUES (:id, 0, :d)"), {"id": v(job), "d": chunk})
    if db.is_sqlite:  # nothing to change: the migration runs up and down all the same
        migrate.upgrade(db)
        migrate.downgrade(db, "0027a")
        migrate.upgrade(db)
        assert migrate.pending_differences(db) == []
        return
    assert _methods(db) == ["", "", ""]
    migrate.upgrade(db)
    assert _methods(db) == (["l", "l", "l"] if _lz4(db) else ["", "", ""])
    assert migrate.pending_differences(db) == []
    with db.engine.begin() as conn:
        conn.execute(text("INSERT INTO job_blobs (job_id, seq, data) VALUES (:id, 1, :d)"), {"id": job, "d": chunk})
        stored = conn.execute(text("SELECT seq, pg_column_compression(data), data FROM job_blobs "
                                   "WHERE job_id = :id ORDER BY seq"), {"id": job}).all()
    # the value written before the change as it was (pglz), the new one lz4; both read back whole
    assert [(seq, method) for seq, method, _ in stored] == [(0, "pglz"), (1, "lz4" if _lz4(db) else "pglz")]
    assert [bytes(data) for _, _, data in stored] == [chunk, chunk]
    migrate.downgrade(db, "0027a")
    assert _methods(db) == ["", "", ""]
    with db.engine.connect() as conn:
        assert [bytes(d) for (d,) in conn.execute(text("SELECT data FROM job_blobs ORDER BY seq"))] == [chunk, chunk]


def test_a_stored_manifest_is_read_back_byte_for_byte(db: Database, make_user: Any, tmp_path: Path) -> None:
    """``store_manifest`` in 1 MiB chunks, then the planner's own reader (``_manifest_file``):
    the same bytes, whatever the columns' compression."""
    user = make_user("ann@x.io")
    body = b"".join(b'{"objectUrl": "s3://b/%d.jpg", "title": "t%d"},' % (i, i) for i in range(120_000))
    body += os.urandom(300_000)  # and some that does not compress
    with db.write() as s:
        job = queue.create_job(s, org_id=user.org_id, kind=jobs.KIND, params={}, ignore_errors=False,
                               units=[{"op": "plan"}])
        assert jobs.store_manifest(s, job.id, io.BytesIO(body)) == len(body)
        job_id = job.id
    [unit] = [u for u in queue.claim(db, "t", 1, 60) if u.job_id == job_id]
    ctx: Any = type("Ctx", (), {"services": {"db": db}})()
    path = jobs._manifest_file(ctx, unit, tmp_path)
    assert path.read_bytes() == body
    with db.read() as s:
        assert s.get(Job, job_id) is not None
