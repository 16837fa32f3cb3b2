"""Changing an embedding key's metric keeps its vectors and queues the index's rebuild (until it
runs, searches under the new metric scan every vector exactly).  Nothing queued it: a key whose
metric changed was scanned exactly until some write happened to queue a build."""

from __future__ import annotations

import numpy as np
from sqlalchemy import select

from corral.core.vectors import jobs as vector_jobs
from corral.core.vectors import keys as vector_keys
from corral.core.vectors.embedded import EmbeddedStore
from corral.core.vectors.store import StoredVector
from corral.db.tables import Job, JobUnit
from tests.index.world import add_items, principal, save_schema
from tests.vectors.test_search import build


def _pending(db, org_id) -> int:  # type: ignore[no-untyped-def]
    with db.read() as s:
        return len(s.scalars(select(Job.id).join(JobUnit, JobUnit.job_id == Job.id).where(
            Job.org_id == org_id, Job.kind == vector_jobs.KIND, JobUnit.status == "pending")).all())


def _done(db) -> None:  # type: ignore[no-untyped-def]
    with db.write() as s:  # as if the worker had run what was queued
        for unit in s.scalars(select(JobUnit)):
            unit.status = "done"


def test_a_metric_change_queues_the_index_rebuild(db, settings, make_user) -> None:  # type: ignore[no-untyped-def]
    who = principal(db, make_user("metric@x.io").user_id)
    save_schema(db, who, {"keys": {"e": {"type": "embedding", "size": 4}}})
    rng = np.random.default_rng(0)
    add_items(db, who, "root", [{"e": StoredVector(v.tolist())} for v in rng.standard_normal((30, 4))])
    store = EmbeddedStore(settings.data_dir)
    build(db, store, "e", who.org_id)
    _done(db)
    assert _pending(db, who.org_id) == 0
    save_schema(db, who, {"keys": {"e": {"type": "embedding", "size": 4, "metric": "l2"}}})
    assert _pending(db, who.org_id) == 1
    with db.read() as s:
        assert vector_keys.load(s, who.org_id)["e"].metric == "l2"
    # a schema saved with the key as it was queues nothing; a key without vectors neither
    _done(db)
    save_schema(db, who, {"keys": {"e": {"type": "embedding", "size": 4, "metric": "l2"},
                                   "f": {"type": "embedding", "size": 2}}})
    save_schema(db, who, {"keys": {"e": {"type": "embedding", "size": 4, "metric": "l2"},
                                   "f": {"type": "embedding", "size": 2, "metric": "dot"}}})
    assert _pending(db, who.org_id) == 0
