"""Two builds of one key's map asked for at once queue one job: the second request answers the
first's (``started: false``).  On PostgreSQL both requests found no build running and queued one
each; their full builds then deleted each other's unfinished map."""

from __future__ import annotations

import threading
from typing import Any

import numpy as np
import pytest
from sqlalchemy import func, select

from corral.core.maps import build, service
from corral.core.vectors.store import StoredVector
from corral.db.tables import Job
from tests.index.world import add_items, principal, save_schema


def test_two_builds_asked_at_once_queue_one(db, make_user, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    who = principal(db, make_user("race@x.io").user_id)
    save_schema(db, who, {"keys": {"e": {"type": "embedding", "size": 4}}})
    rng = np.random.default_rng(0)
    add_items(db, who, "root", [{"e": StoredVector(v.tolist())} for v in rng.standard_normal((20, 4))])
    # both requests read "no build running" before either queues one (the race's window, held
    # open); a request that must wait for the other first finds the barrier broken and goes on
    barrier = threading.Barrier(2, timeout=3)
    looked = service._running

    def running(s: Any, key: Any) -> Any:
        found = looked(s, key)
        try:
            barrier.wait()
        except threading.BrokenBarrierError:
            pass
        return found

    monkeypatch.setattr(service, "_running", running)
    answers: list[service.Started] = []
    errors: list[BaseException] = []

    def ask() -> None:
        try:
            answers.append(service.start(db, who, "e", build.Request(method="pca", full=True)))
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    threads = [threading.Thread(target=ask) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert not errors, errors
    with db.read() as s:
        jobs = s.scalar(select(func.count()).select_from(Job).where(Job.kind == build.KIND))
    assert jobs == 1
    assert sorted(a.started for a in answers) == [False, True]
    assert answers[0].job_id == answers[1].job_id


def test_a_build_of_a_key_deleted_meanwhile_is_404(db, make_user, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    who = principal(db, make_user("gone@x.io").user_id)
    save_schema(db, who, {"keys": {"e": {"type": "embedding", "size": 4}}})
    key = service.key_of(db, who.org_id, "e")
    save_schema(db, who, {"keys": {"e": {"type": "embedding", "size": 4, "deleted": "soft"}}})
    monkeypatch.setattr(service, "key_of", lambda *_: key)  # read before the key went
    with pytest.raises(service.errors.NotFound):
        service.start(db, who, "e", build.Request(method="pca"))
