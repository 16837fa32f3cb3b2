"""Tuning a long-running corral process applies once it has started: the cyclic garbage collector,
and the storage SDKs its integrations use.

CPython's collector runs a young-generation pass every 700 net allocations and, every hundred
of those, a pass over the old generation, which holds every object the process keeps: the
modules, SQLAlchemy's compiled statements, FastAPI's routes, and whatever a batch holds at the
time.  Registration allocates a few dozen objects an entry (dicts, tuples, strings), so at 700 the
collector ran every 20-odd entries and its old-generation passes walked the whole heap: measured
in process on a realistic manifest (100,000 entries, parse + checks + rows + projected values,
``docs/performance.md``, "The garbage collector"), 55.8 µs an entry with the defaults, 38.6 with
the collector off, 40.3 with ``tune_gc``.

``tune_gc`` moves what the process holds once started into the permanent generation
(``gc.freeze``: never traversed again, never freed, which is what module-level objects are anyway),
then raises the young generation's threshold (``GC_THRESHOLD``), so that passes are rarer and
each walks only what was allocated since.  Cycles are still collected; garbage without cycles is
freed by reference counting as always, whatever the collector does.

Called by the processes ``corral serve`` and ``corral worker`` run (API processes once their app
is built, job workers before their loop), not on import: a test process that builds many apps
would otherwise freeze each one's garbage for good.
"""

from __future__ import annotations

import gc
import logging
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from corral.db.engine import Database

log = logging.getLogger(__name__)

#: Young-generation threshold (allocations less deallocations), then how many young and middle
#: passes trigger the next generation's: CPython's default is (700, 10, 10).
GC_THRESHOLD = (10_000, 10, 10)


def die_with_parent() -> None:
    """In one of `corral serve --workers N`'s API processes: end (SIGTERM, a graceful stop) when
    the `corral serve` that started it ends, however it ends.  A `corral serve` killed with
    SIGKILL (the OOM killer, a container runtime, ``kill -9``) otherwise left its API processes
    serving on the port, unsupervised, with the old code and settings, and a new `corral serve`
    could not listen there.  (Its job worker processes already die with it:
    ``corral.jobs.supervisor``.)  Does nothing in a process no ``multiprocessing`` parent started."""
    import multiprocessing
    import os
    import signal
    import sys

    parent = multiprocessing.parent_process()
    if parent is None or not sys.platform.startswith("linux"):
        return
    try:
        import ctypes

        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    except Exception:  # noqa: BLE001 - no prctl: the parent's own shutdown still stops this process
        return
    if os.getppid() != parent.pid:  # the parent ended before the line above
        os.kill(os.getpid(), signal.SIGTERM)


def tune_gc() -> None:
    """Freeze what the process holds now and make collector passes rarer (see the module)."""
    gc.collect()
    gc.freeze()
    gc.set_threshold(*GC_THRESHOLD)


def warm_index(db: Database) -> None:
    """Start loading (from their files, ``corral.core.index.persist``) or building the index's
    columnar snapshots of the largest organisations in the background
    (``corral.core.index.snapshot.Registry.warm_largest``), before an API process serves:
    otherwise its first count or facets of such an organisation would start the build and answer
    from SQL (hundreds of ms at a million items) until it is done."""
    from corral.core.index import snapshot

    reg = snapshot.registry_of(db.engine)
    if reg is not None:
        reg.warm_largest()


def warm_storage(db: Database) -> list[str]:
    """Import the storage backends of the providers this database's integrations use, before an
    API process serves (``corral.storage.registry.warm``): otherwise the first request to sign with
    each provider pays for its SDK's import and models, 0.3 s of CPU and up to seconds under load,
    in every API process.  Nothing is opened or sent.  A database not migrated yet warms nothing.
    Called before ``tune_gc``, so what the SDKs load is frozen with the rest."""
    from sqlalchemy import select
    from sqlalchemy.exc import SQLAlchemyError

    from corral.db.tables import Integration
    from corral.storage import registry

    try:
        with db.read_plain() as s:
            providers = list(s.scalars(select(Integration.provider).distinct()))
    except SQLAlchemyError as exc:  # no integrations table yet: `corral serve` migrates first anyway
        log.debug("no storage warmed: %s", exc.__class__.__name__)
        return []
    return registry.warm(providers)
