"""SQLite write transactions queue on the lock instead of failing; errors roll back."""

from __future__ import annotations

import threading

import pytest
from sqlalchemy import func, select

from corral.core import identity
from corral.db.tables import Organisation


def test_concurrent_writers_all_succeed(db) -> None:  # type: ignore[no-untyped-def]
    errors: list[BaseException] = []

    def writer(n: int) -> None:
        try:
            for i in range(10):
                with db.write() as s:
                    identity.get_or_create_org(s, f"org-{n}-{i}")
        except BaseException as exc:  # pragma: no cover - the assertion below reports it
            errors.append(exc)

    threads = [threading.Thread(target=writer, args=(n,)) for n in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    with db.read() as s:
        assert s.scalar(select(func.count()).select_from(Organisation)) == 40


def test_failed_write_leaves_nothing_behind(db) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(RuntimeError):
        with db.write() as s:
            identity.get_or_create_org(s, "half-written")
            raise RuntimeError("boom")
    with db.read() as s:
        assert s.scalar(select(Organisation).where(Organisation.name == "half-written")) is None
