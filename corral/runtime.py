"""Tuning a long-running corral process applies once it has started: the cyclic garbage collector.

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

#: Young-generation threshold (allocations less deallocations), then how many young and middle
#: passes trigger the next generation's: CPython's default is (700, 10, 10).
GC_THRESHOLD = (10_000, 10, 10)


def tune_gc() -> None:
    """Freeze what the process holds now and make collector passes rarer (see the module)."""
    gc.collect()
    gc.freeze()
    gc.set_threshold(*GC_THRESHOLD)
