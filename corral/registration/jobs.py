"""Upload jobs: register a manifest's files into a folder through an integration.

A job (kind ``register``) starts with one *plan* unit.  Planning streams the stored manifest
and adds one *batch* unit per ``BATCH`` entries as it goes (idempotently: a restarted planner
skips the batches it already added), so workers register early batches while later ones are
still being read, and memory stays bounded whatever the manifest's size.

A batch unit checks its files (scope, metadata, HEAD or media probe, concurrently) outside any
transaction, then inserts their items in the transaction that completes the unit, so a killed
worker never leaves a batch half-written and never registers one twice.

``ignore_errors=False``: one bad file fails the job, and the items of batches that did commit
are *staged* (invisible) until the job is DONE; a failed or cancelled job deletes them.
``ignore_errors=True``: good files register at once and bad ones are listed with their reason.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import pickle
import uuid
from collections.abc import Generator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from itertools import compress
from pathlib import Path
from typing import Any, cast

from sqlalchemy import Select, Table, Text, bindparam, delete, func, insert, or_, select, text, update
from sqlalchemy import cast as sql_cast
from sqlalchemy.engine import Dialect, Row
from sqlalchemy.orm import Session, aliased

from corral import errors, scratch
from corral.core import datasets, integrations, item_docs, item_parents, thumbnails
from corral.core.index import changes as index_changes
from corral.core.index import projection
from corral.core.index.keys import Key
from corral.core.index.keys import load as load_keys
from corral.core.metadata import service as metadata_service
from corral.core.metadata.validation import Validator
from corral.core.staging import discard_staged, published
from corral.core.vectors import writes as vector_writes
from corral.core.vectors.store import StoredVector
from corral.db.bulk import convert_tuples, insert_tuples
from corral.db.engine import Database
from corral.db.plans import unindexed
from corral.db.tables import Integration, Item, ItemPart, Job, JobBlob, JobUnit
from corral.db.types import utcnow, uuid7_hex
from corral.jobs import queue
from corral.jobs.tasks import ClaimedUnit, TaskKind, UnitFailed, WorkerContext, registry
from corral.registration.entries import EntryError
from corral.registration.files import FileError, Prepared, prepare_entry
from corral.registration.manifest_pipe import entry_of, fields_of
from corral.registration.writer import Writer
from corral.settings import Settings
from corral.storage.scope import ScopedStorage

KIND = "register"
ITEMS = cast(Table, Item.__table__)
ITEM_PARTS = cast(Table, ItemPart.__table__)
BATCH = 2000
BATCHES_PER_WRITE = 5
INLINE_BATCH = 5000  # strict client-only batches: no requests, so larger transactions
#: Group commit (``corral.registration.writer``): a writer that has fallen behind commits up to
#: this many waiting batches, and at most ``GROUP_ENTRIES`` entries, in one transaction (each
#: batch's own checks, rows and done unit in it).  As many may wait as one group holds, so a
#: group finds them there; memory is then at most twice that many batches' rows, plus the one
#: being read.  SQLite only: see ``_InlineWriter``.
GROUP_BATCHES = 4
GROUP_ENTRIES = 20_000
ERROR_LIMIT = 10_000  # file errors kept per plan
SHARE_QUEUE = 2  # strict jobs: batches kept waiting for other workers
CANCELLED_WHILE_READING = "the job was cancelled while its manifest was being read"
BLOB_CHUNK = 1 << 20

log = logging.getLogger("corral.registration")
#: An import likely to meet duplicates (``_duplicates_likely``) whose manifest a child reads: the
#: share of its batches that child checks (``_ChildChecker``), the rest checked by the planner as
#: read.  0.4 balances the two processes' CPU at a million files (docs/performance.md: the reader
#: checking every batch took 6 CPU s more, the planner 7.4 less).  None: adaptive, from
#: ``CHILD_CHECKS_START``, by which process waits for the other; measured, not the default (the
#: signals tried put the share at either end on a loaded machine at nice 19).
CHILD_CHECKS: float | None = 0.4
CHILD_CHECKS_START = 0.4

# -- the manifest, stored in the database ----------------------------------------------------


def store_manifest(s: Session, job_id: uuid.UUID, source: Any) -> int:
    """Copy a file-like manifest into ``job_blobs`` in 1 MiB chunks; returns its size."""
    seq = size = 0
    while chunk := source.read(BLOB_CHUNK):
        s.execute(insert(JobBlob), [{"job_id": job_id, "seq": seq, "data": chunk}])
        seq += 1
        size += len(chunk)
    return size


_MANIFEST_CHUNKS = f"SELECT data FROM {JobBlob.__tablename__} WHERE job_id = %s ORDER BY seq"


def _manifest_file(ctx: WorkerContext, unit: ClaimedUnit, directory: Path) -> Path:
    """The manifest in a local file: from the database, or from the bucket it was named in."""
    db: Database = ctx.services["db"]
    path = directory / f"{unit.job_id}.manifest"
    url = unit.params.get("manifest_url")
    if url:
        storage, _ = _open(db, ctx.services["settings"], unit)
        try:
            with path.open("wb") as out:
                storage.copy_manifest(url, out)
        except errors.StorageTimeout:
            raise  # transient: the unit is retried with backoff
        except errors.CorralError as exc:
            raise UnitFailed(f"the manifest cannot be read: {exc.message}") from None
        finally:
            storage.close()
        return path
    with db.read() as s, path.open("wb") as out:
        # A chunk at a time (a server-side cursor on PostgreSQL): read whole, a million-file
        # manifest was held twice in the worker, the driver's result and its bytes, 600 MB.
        if db.is_sqlite:
            query = select(JobBlob.data).where(JobBlob.job_id == unit.job_id).order_by(JobBlob.seq)
            for (data,) in s.execute(query.execution_options(yield_per=1)):
                out.write(data)
        else:
            # In binary: as text, PostgreSQL sends each byte as two hex digits for the driver to
            # decode, and the planner waited 4-5x as long for a 283 MB manifest (nothing of the
            # import can start before it is here).
            driver = s.connection().connection.driver_connection  # psycopg's, in this transaction
            assert driver is not None
            with driver.cursor(name=f"manifest_{unit.job_id.hex}", binary=True) as cursor:
                cursor.itersize = 1
                cursor.execute(_MANIFEST_CHUNKS, (unit.job_id,))
                for (data,) in cursor:
                    out.write(data)
    return path


# -- planning --------------------------------------------------------------------------------


def _entry_payload(entry: Any) -> dict[str, Any]:
    # By hand: dataclasses.asdict deep-copies every value and was a tenth of the planner's time.
    return {
        "seq": entry.seq,
        "where": entry.where,
        "data_type": entry.data_type,
        "urls": list(entry.urls),
        "title": entry.title,
        "client_metadata": entry.client_metadata,
        "media": entry.media,
        **({"frame_info": list(entry.frame_info)} if entry.frame_info else {}),
    }


def _add_batches(db: Database, job_id: uuid.UUID, batches: list[tuple[int, list[dict[str, Any]]]]) -> bool:
    """Queue batch units (several per transaction: every write waits for SQLite's lock, which
    batch commits hold while they insert their items).  False if the job was cancelled."""
    return queue.add_units(db, job_id, [(seq, {"op": "batch", "entries": e}) for seq, e in batches])


def _merge_flags(db: Database, job_id: uuid.UUID, flags: Any) -> dict[str, Any]:
    """The manifest's own skip_duplicate_urls / upsert_metadata add to the request's."""
    with db.write() as s:
        job = s.get(Job, job_id)
        if job is None:
            raise UnitFailed("the job no longer exists")
        params = dict(job.params)
        params["skip_duplicate_urls"] = bool(params.get("skip_duplicate_urls") or flags.skip_duplicate_urls)
        params["upsert_metadata"] = bool(params.get("upsert_metadata") or flags.upsert_metadata)
        job.params = params
        return params


def _open(db: Database, settings: Settings, unit: ClaimedUnit) -> tuple[ScopedStorage, Validator]:
    row, validator = _integration(db, unit)
    return integrations.shared(row, settings), validator  # one client per process, not per batch


def _integration(db: Database, unit: ClaimedUnit) -> tuple[Integration, Validator]:
    """The job's integration (its row: nothing opened yet) and the metadata schema's validator."""
    with db.read() as s:
        row = s.get(Integration, uuid.UUID(unit.params["integration_id"]))
        if row is None:
            raise UnitFailed("the job's integration no longer exists")
        _, validator = metadata_service.validator(s, unit.org_id)
    return row, validator  # (read() detaches the row without expiring it)


def _plan(ctx: WorkerContext, unit: ClaimedUnit) -> dict[str, Any]:
    """Read the manifest; queue its batches, or register them directly when no file needs a
    request to the store (strict client-only), which spares writing every entry to the database
    as a unit payload and reading it back."""
    from corral.registration import manifest, manifest_pipe

    db: Database = ctx.services["db"]
    entries = parse_errors = 0
    errors_out: list[dict[str, Any]] = []
    inline: _InlineWriter | None = None
    with scratch.directory("corral-manifest-") as tmp, contextlib.ExitStack() as stack:
        path = _manifest_file(ctx, unit, tmp)
        try:
            fmt = manifest.detect_format(path)
            # Read in a process of its own when large (manifest_pipe), started now so that it
            # reads on while the flags are found, then while this thread checks each entry;
            # closed on the way out (before the file is removed), which stops that process.
            items = manifest_pipe.iter_entries(
                path, fmt, min_bytes=ctx.services["settings"].manifest_pipe_min_bytes)
            stack.callback(cast(Any, items).close)
            if unit.params.get("ignore_errors"):
                flags = manifest.read_flags(path, fmt)  # a broken file fails before anything is written
            elif not manifest.may_hold_flags(path, fmt):
                # All or nothing: what registers is staged, and deleted if the file turns out to
                # be unreadable further on; so no reading the whole file twice.
                flags = manifest.ManifestFlags()
            else:  # the same, when the flags come first (as they do in the SDK's and our own)
                leading = manifest.leading_flags(path, fmt)
                flags = leading if leading is not None else manifest.read_flags(path, fmt)
        except manifest.ManifestUnreadable as exc:
            raise UnitFailed(f"the manifest cannot be read: {exc.message}") from None
        params = _merge_flags(db, unit.job_id, flags)
        settings: Settings = ctx.services["settings"]
        row, validator = _integration(db, unit)
        size = unit.params.get("batch_size", INLINE_BATCH if row.strict_client_only else BATCH)
        checked = False  # (the reader checks a share of the batches: ``_ChildChecker``)
        if row.strict_client_only:
            planned = replace(unit, params=params)
            done = _done_batches(db, unit)
            # The reader's process builds the batches' rows too.  It is told before the store's
            # backend is opened here (the first open in a process imports its SDK: 0.3-0.5 s), so
            # it prepares the first batch meanwhile.
            piped = isinstance(items, manifest_pipe.PipedEntries)
            likely = piped and _duplicates_likely(db, params)
            prepared = (piped and not likely
                        and _reader_prepares(db, settings, items, planned, row, validator, done, size))
            # Duplicates likely: the reader's process checks a share of the batches, and sends
            # the rest as entries, which this thread checks (``_ChildChecker``).
            checked = (likely and not params.get("upsert_metadata")
                       and _reader_checks(settings, items, planned, row, validator, done, size))
            storage = integrations.shared(row, settings)
            inline = _InlineWriter(ctx, planned, storage, validator, done, share=not prepared)
            ctx.saturated_by.add(unit.job_id)  # the batches it hands off are for other processes
        else:
            storage = integrations.shared(row, settings)
            storage.close()
        batch: list[Any] = []
        pending: list[tuple[int, list[dict[str, Any]]]] = []
        batch_no = 0

        def send(force: bool = False) -> None:
            """Queue the pending batches: the first at once (workers start early), then several
            per write, and the rest at the end."""
            nonlocal pending
            if pending and (force or batch_no == 1 or len(pending) >= BATCHES_PER_WRITE):
                if not _add_batches(db, unit.job_id, pending):
                    raise UnitFailed(CANCELLED_WHILE_READING)
                pending = []

        try:
            for item in items:
                if type(item) is manifest_pipe.PreparedBatch:  # checked and built by the reader
                    assert inline is not None and not batch and item.seq == batch_no + 1, "out of step"
                    entries += item.entries
                    batch_no += 1
                    if checked:
                        inline.submit_checked(batch_no, item.payload)
                    else:
                        inline.submit_prepared(batch_no, item.payload)
                    continue
                if isinstance(item, manifest.EntryError):
                    parse_errors += 1
                    if len(errors_out) < ERROR_LIMIT:
                        errors_out.append(
                            {"seq": item.seq, "where": item.where, "url": item.url, "error": item.message}
                        )
                    if inline is not None and not params.get("ignore_errors"):
                        inline.stop_writing()  # the job will fail: check the rest, write nothing
                    continue
                entries += 1
                batch.append(item if inline is not None else _entry_payload(item))
                if len(batch) >= size:
                    batch_no += 1
                    if inline is not None:
                        inline.submit(batch_no, batch)
                    else:
                        pending.append((batch_no, batch))
                        send()
                    batch = []
            if batch:
                batch_no += 1
                if inline is not None:
                    inline.submit(batch_no, batch)
                else:
                    pending.append((batch_no, batch))
            send(force=True)
            if inline is not None:
                inline.finish()
            if checked:
                assert inline is not None
                log.info("the manifest's reader checked %d of the import's %d batches", inline.reader_checked,
                         batch_no, extra={"job_id": str(unit.job_id)})
        except manifest.ManifestUnreadable as exc:
            raise UnitFailed(f"the manifest cannot be read: {exc.message}") from None
        finally:
            if inline is not None:
                inline.abandon()  # (nothing left to do once finished)
                ctx.saturated_by.discard(unit.job_id)
                storage.close()
    bad_files = inline.error_count if inline is not None else 0
    details: dict[str, Any] = {
        "entries": entries + parse_errors,
        "batches": batch_no,
        "errors": (errors_out + (inline.errors if inline is not None else []))[:ERROR_LIMIT],
        "error_count": parse_errors,
    }
    if (parse_errors or bad_files) and not params.get("ignore_errors"):
        if inline is not None:
            details["error_count"] = parse_errors + bad_files  # no batch unit holds these
        shown = "; ".join(f"{e['where']}: {e['error']}" for e in details["errors"][:3])
        what = f"{parse_errors} manifest entries are invalid" if parse_errors else ""
        if bad_files:
            what += (" and " if what else "") + f"{bad_files} file(s) cannot be registered"
        raise UnitFailed(f"{what}: {shown}", details=details)
    if inline is not None:
        details["errors"] = errors_out  # the files' own errors are in their batches' results
    return details


def _duplicates_likely(db: Database, params: dict[str, Any]) -> bool:
    """Whether this import may meet files its folder holds already (``skip_duplicate_urls`` into
    a folder with items).  The reader's process then builds no rows (an all-duplicate import
    builds none, and the reader preparing whole batches was measured slower for it: 200,000
    files on SQLite, 10.0 s against 13.0 s, docs/performance.md); it checks a share of the
    batches and sends the rest as entries, which the planner checks (``_ChildChecker``), so that
    both processes are busy; a first import is faster with the reader preparing."""
    if not params.get("skip_duplicate_urls"):
        return False
    with db.read() as s:
        held = select(Item.id).where(Item.folder_id == uuid.UUID(params["folder_id"])).limit(1)
        return s.scalar(held) is not None


def _done_batches(db: Database, unit: ClaimedUnit) -> set[int]:
    """The numbers of the job's batches committed already (a restarted planner skips them)."""
    with db.read() as s:
        query = select(JobUnit.seq).where(JobUnit.job_id == unit.job_id, JobUnit.seq > 0)
        return set(s.scalars(query))


def _reader_prepares(db: Database, settings: Settings, reader: Any, unit: ClaimedUnit, row: Integration,
                     validator: Validator, done: set[int], size: int) -> bool:
    """Have the manifest's reading process (``manifest_pipe``) do the planner's Python work too
    (``_ChildPlanner``: each entry's checks, its rows, listing document and projected values), so
    the planner's process only writes; see ``_InlineWriter.submit_prepared``.  Its batches are then
    kept in the planner's process (written by its writer), not handed to other workers.  False if
    the reader only reads (``PipedEntries.prepare``)."""
    options, _ = integrations.opener(row, settings)  # (the options alone: nothing is opened)
    # What resolving a URL needs, not the integration's credentials: no request is made.
    public = options.model_copy(update=dict.fromkeys(options.secret_fields))
    with db.read() as s:
        keys = load_keys(s, unit.org_id)
    context = (unit, public, row.title, row.signed_url_ttl_seconds, validator.schema, keys,
               db.engine.dialect.name, done, size)
    return bool(reader.prepare(f"{__name__}:_ChildPlanner", context))


def _reader_checks(settings: Settings, reader: Any, unit: ClaimedUnit, row: Integration, validator: Validator,
                   done: set[int], size: int) -> bool:
    """Have the manifest's reading process check a share of the batches of an import likely to
    meet duplicates (``_ChildChecker``); see ``_InlineWriter.submit_checked``.  False if the
    reader only reads (``PipedEntries.prepare``)."""
    options, _ = integrations.opener(row, settings)  # (the options alone: nothing is opened)
    public = options.model_copy(update=dict.fromkeys(options.secret_fields))
    context = (unit, public, row.title, row.signed_url_ttl_seconds, validator.schema, done, size,
               CHILD_CHECKS)
    return bool(reader.prepare(f"{__name__}:_ChildChecker", context))


class _InlineWriter:
    """Prepares batches as the planner reads them, in the planner's own thread (checks, rows,
    projected values: Python work), and commits them on one writer thread
    (``corral.registration.writer``: the database's work, which overlaps the next batch's Python
    work on the other core).

    Each batch commits its items together with a unit that is already done (unique per job and
    batch number), in one transaction that also checks the planner still holds its lease and the
    job is not cancelled; so a restarted planner skips what was committed, and two planners can
    never both commit a batch.  Nothing about a batch is stored before that transaction: a batch
    lost with a killed process is read from the manifest again.

    On SQLite nothing is handed to other processes: it has one writer at a time, so a second
    process would only wait for this one's commits (and its batches would have to be written
    into ``job_units`` first).  On PostgreSQL, whose writers do not wait for each other, a batch
    goes to an idle worker when one is.  (With ``skip_duplicate_urls`` every batch holds the
    folder's lock until it commits, so their writes do not overlap; but the other process's
    Python work does, which keeping every batch here measured slower at a million files.)

    On SQLite a writer that has fallen behind commits the batches waiting for it together
    (``GROUP_BATCHES``, ``GROUP_ENTRIES``): one transaction, each batch in it with its own checks
    and done unit, the group's projected values inserted key by key in value order.  A failed
    group is committed again batch by batch (``corral.registration.writer``).
    """

    def __init__(self, ctx: WorkerContext, unit: ClaimedUnit, storage: ScopedStorage, validator: Validator,
                 done: set[int] | None = None, *, share: bool = True):
        self.ctx, self.unit, self.storage, self.validator = ctx, unit, storage, validator
        self.db: Database = ctx.services["db"]
        self.lease_seconds: float = ctx.services["settings"].job_lease_seconds
        self.done = _done_batches(self.db, unit) if done is None else done  # (a restarted planner's)
        self.errors: list[dict[str, Any]] = []
        self.error_count = 0
        self.reader_checked = 0  # batches the reader checked (``submit_checked``)
        self._writing = True
        # Batches go to idle workers on PostgreSQL, unless the reader's process prepares them
        # (``_reader_prepares``): they are then written by this process's writer.
        self._share = share and not self.db.is_sqlite
        # With skip_duplicate_urls a batch is kept here while the last one kept found only
        # copies: handing it off would cost more than it saves (its entries written to
        # ``job_units`` and read back by another process, which then only finds the same copies;
        # an all-duplicate second import at a million files: 0.69x the CPU with the backends,
        # docs/performance.md).  The first batch is kept, so a batch with new files starts the
        # hand-offs again.
        self._copies_only = bool(unit.params.get("skip_duplicate_urls"))
        # And once a batch's look-up found only copies, the next batches are not looked up
        # before the lock at all (``_ready``'s ``copies_likely``): the count under the lock
        # decides alone, as it does anyway, and builds the rows of any file it finds new; the
        # writer ends this as soon as a batch registers a file (``_write``).
        self._copies_seen = False
        # Group commit on SQLite alone: its commit rewrites each index page a transaction
        # touched, and it has one writer at a time anyway.  (PostgreSQL writes a page's changes
        # to its log record by record, and hands batches to idle workers: not measured to gain.)
        group = GROUP_BATCHES if self.db.is_sqlite else 1
        self._writer: Writer[tuple[int, _Ready]] = Writer(
            f"corral-register-{unit.job_id}", self._write, depth=max(2, group), group=group,
            weight=lambda batch: len(batch[1].results), group_weight=GROUP_ENTRIES,
        )

    def stop_writing(self) -> None:
        self._writing = False

    def submit_prepared(self, seq: int, payload: Any) -> None:
        """``submit`` of a batch ``_ChildPlanner`` prepared: the same errors kept and the same
        rows written (the child does what ``submit`` would, in the same order of batches and
        entry errors, so it stops building rows exactly where this planner stops writing)."""
        if seq in self.done:
            return
        results, meta, keys = payload
        bad = [r for r in results if type(r) is tuple]
        if bad and not self.unit.params.get("ignore_errors"):
            self._writing = False
            self.error_count += len(bad)
            self.errors += [FileError(*e).as_dict() for e in bad[: max(0, ERROR_LIMIT - len(self.errors))]]
        if self._writing:
            assert meta is not None, "the reader stopped building rows before this planner stopped writing"
            self._writer.submit((seq, _received(self.db.engine.dialect, self.unit, results, meta, keys)))

    def submit_checked(self, seq: int, payload: Any) -> None:
        """``submit`` of a batch ``_ChildChecker`` sent: its entries (checked here, as ``submit``
        checks), or its verdicts (each entry's ``FileError`` or its items' URL keys) and its
        items pickled into one ``bytes``, expanded only if the batch holds something new (its
        look-up before the lock finds a key missing, or the count under it: ``_Ready.expand``).
        The same errors are kept, in the same order, and the same batches written."""
        if seq in self.done:
            return
        if payload[0] == _ENTRIES:
            self.submit(seq, [entry_of(fields) for fields in payload[1]])
            return
        _, verdicts, blob, vectors = payload
        self.reader_checked += 1
        results: list[Any] = []
        bad: list[FileError] = []
        for verdict in verdicts:
            kind = type(verdict)
            if kind is str:
                results.append([_Key(verdict)])
            elif kind is tuple:
                error = FileError(*verdict)
                results.append(error)
                bad.append(error)
            else:
                results.append([_Key(h) for h in verdict])
        if bad and not self.unit.params.get("ignore_errors"):
            self._writing = False
            self.error_count += len(bad)
            self.errors += [e.as_dict() for e in bad[: max(0, ERROR_LIMIT - len(self.errors))]]
        if self._writing:
            assert blob is not None, "the reader stopped sending items before this planner stopped writing"
            hinted = self._copies_only and self._copies_seen
            ready = _ready(self.db, self.unit, results, copies_likely=hinted, blob=blob, vectors=vectors)
            if self._copies_only and not hinted:
                self._copies_only = not ready.projected and any(not isinstance(r, FileError) for r in results)
                self._copies_seen = True
            self._writer.submit((seq, ready))

    def finish(self) -> None:
        """Wait for the batches submitted to be committed; raises what stopped one."""
        self._writer.finish()

    def abandon(self) -> None:
        self._writer.abandon()

    def submit(self, seq: int, entries: list[Any]) -> None:
        """Register a batch here, or queue it for another worker; ``UnitFailed`` if the job was
        cancelled."""
        if seq in self.done:
            return
        if self._writing and self._share and not self._copies_only and self._others_idle():
            # Hand this batch to whichever worker is free (another process, another host), so
            # the planner's process is not the only one registering.
            if not _add_batches(self.db, self.unit.job_id, [(seq, [_entry_payload(e) for e in entries])]):
                raise UnitFailed(CANCELLED_WHILE_READING)
            return
        results = [prepare_entry(e, self.storage, self.validator, from_manifest=True) for e in entries]
        bad = [r for r in results if isinstance(r, FileError)]
        if bad and not self.unit.params.get("ignore_errors"):
            self._writing = False
            self.error_count += len(bad)
            self.errors += [e.as_dict() for e in bad[: max(0, ERROR_LIMIT - len(self.errors))]]
        if self._writing:
            hinted = self._copies_only and self._copies_seen
            ready = _ready(self.db, self.unit, results, copies_likely=hinted)
            if self._copies_only and not hinted:
                self._copies_only = not ready.projected and any(not isinstance(r, FileError) for r in results)
                self._copies_seen = True
            # (A batch submitted before a bad file was found is written, as it was before the
            # writer thread: the failed job's report then counts the same.)
            self._writer.submit((seq, ready))

    def _others_idle(self) -> bool:
        """Fewer than two batches of this job wait to be claimed: other workers keep up, so
        keep one ready for each of them rather than register it here."""
        with self.db.read() as s:
            query = select(JobUnit.id).where(JobUnit.job_id == self.unit.job_id, JobUnit.status == "pending")
            return len(s.scalars(query.limit(SHARE_QUEUE)).all()) < SHARE_QUEUE

    def _write(self, batches: Sequence[tuple[int, _Ready]]) -> None:
        """Commit these batches in one transaction, each as it would be alone: the lease
        checked (and renewed: on SQLite the heartbeat waits its turn behind this thread's
        transactions), the job's cancellation checked, its items, values and done unit written.  Anything
        raised rolls the whole transaction back (and the writer then commits the batches one
        by one), so each batch is committed with its done unit or not at all."""
        unit = self.unit
        # A batch alone writes its values itself, as it always has; a group's are merged.
        values: list[projection.Keyed] | None = [] if len(batches) > 1 else None
        with self.db.write() as s:
            for seq, ready in batches:
                if not queue.holds(s, unit, self.ctx.owner, renew_for=self.lease_seconds):
                    raise queue.LeaseLost(unit.id)
                job_params = s.scalar(select(Job.params).where(Job.id == unit.job_id))
                if job_params is None or job_params.get("cancel_requested"):
                    raise UnitFailed(CANCELLED_WHILE_READING)  # rolls this transaction back
                result = _commit_batch(s, unit, ready, values)
                if result["registered"]:
                    self._copies_only = False  # (read by the planner's thread: see ``submit``)
                now = utcnow()
                s.execute(
                    insert(JobUnit),
                    [{"job_id": unit.job_id, "seq": seq, "payload": {"op": "inline"}, "status": "done",
                      "result": result, "attempts": 1, "available_at": now, "updated_at": now}],
                )
                s.execute(update(Job).where(Job.id == unit.job_id).values(units_total=Job.units_total + 1))
            if values is not None:
                _write_values(s, values)


def _write_values(s: Session, values: list[projection.Keyed]) -> None:
    """The projected values of a transaction's batches, each key's in value order across all of
    them (a key's values of one batch are in value order already, ``Projector.keyed``): the value
    index's entries are then inserted in one pass along it, not one pass per batch (measured in
    docs/performance.md, "Group commit")."""
    by_key: dict[int, tuple[str, list[Any], list[Any]]] = {}
    text_rows: list[tuple[Any, ...]] = []
    for keyed, texts in values:
        for key_id, column, ids, key_values in keyed:
            merged_ids, merged_values = by_key.setdefault(key_id, (column, [], []))[1:]
            merged_ids += ids
            merged_values += key_values
        text_rows += texts
    # (each key's lists in batch order, reordered once: the order sorting the pairs gave)
    merged: list[projection.KeyValues] = [(key_id, column, *projection.in_value_order(ids, key_values))
                                          for key_id, (column, ids, key_values) in by_key.items()]
    projection.write(s, (merged, text_rows), converted=True)  # ids from uuid7_hex (_Ready.build)


# -- batches ----------------------------------------------------------------------------------


class _Entry:
    """A manifest entry rebuilt from a unit payload (the attributes ``prepare_entry`` reads)."""

    def __init__(self, payload: dict[str, Any]) -> None:
        self.seq = payload["seq"]
        self.where = payload["where"]
        self.data_type = payload["data_type"]
        self.urls = tuple(payload["urls"])
        self.title = payload["title"]
        self.client_metadata = payload.get("client_metadata") or {}
        self.media = payload.get("media") or {}
        self.frame_info = tuple(payload.get("frame_info") or ())


def _batch(ctx: WorkerContext, unit: ClaimedUnit) -> _Ready:
    storage, validator = _open(ctx.services["db"], ctx.services["settings"], unit)
    slots = integrations.request_slots(uuid.UUID(unit.params["integration_id"]))

    def one(payload: dict[str, Any]) -> list[Prepared] | FileError:
        with slots:
            return prepare_entry(_Entry(payload), storage, validator, from_manifest=True)

    try:
        if storage.strict_client_only:  # no request at all: no threads needed
            results = [prepare_entry(_Entry(p), storage, validator, from_manifest=True)
                       for p in unit.payload["entries"]]
        else:
            with ThreadPoolExecutor(max_workers=integrations.REQUEST_CONCURRENCY) as pool:
                results = list(pool.map(one, unit.payload["entries"]))
    finally:
        storage.close()
    bad = [r for r in results if isinstance(r, FileError)]
    if bad and not unit.params.get("ignore_errors"):
        shown = "; ".join(f"{e.where} ({e.url}): {e.error}" for e in bad[:3])
        raise UnitFailed(
            f"{len(bad)} file(s) cannot be registered: {shown}",
            details={"files": len(results), "errors": [e.as_dict() for e in bad]},
        )
    return _ready(ctx.services["db"], unit, results)


def _lock_folder(s: Session, folder_id: uuid.UUID) -> None:
    """Serialise duplicate checks per folder (SQLite already serialises every write)."""
    if s.get_bind().dialect.name == "postgresql":
        key = int.from_bytes(hashlib.sha256(folder_id.bytes).digest()[:8], "big", signed=True)
        s.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": key})


def _commit_batch(s: Session, unit: ClaimedUnit, ready: _Ready,
                  values: list[projection.Keyed] | None = None) -> dict[str, Any]:
    """Write a batch's items in this transaction; their projected values too, or, given
    ``values``, add them there for the caller to write (``_write_values``)."""
    params = unit.params
    results = ready.results
    folder_id = uuid.UUID(params["folder_id"])
    if params.get("skip_duplicate_urls"):
        _lock_folder(s, folder_id)  # only duplicate checks need batches into one folder serialised
    # The schema row (PostgreSQL), before any item is written or locked: a schema change in
    # progress is waited for (the keys read below then have what it adds), and one that comes
    # later waits for this commit, then projects these items.  Then the entries whose embeddings
    # their key no longer takes (the schema changed since they were validated) fail here.
    projection.lock_schema(s, unit.org_id)
    if ready.vectors:  # (a batch checked by the reader: its items' embeddings are checked here)
        ready.expand()
    _refuse_misfits(s, unit, results)
    prepared = [p for r in results if not isinstance(r, FileError) for p in r]
    contested: list[Prepared] = []
    skipped = updated = 0
    upserted: list[tuple[uuid.UUID, dict[str, Any]]] = []
    # With upsert_metadata, a later entry of a URL this batch registers itself: the metadata its
    # item ends with (the last such entry's), applied once the item is inserted (``_upsert``).
    late: dict[str, dict[str, Any]] = {}
    copies_named: list[str] = []  # the URLs skipped or updated for a copy the folder has
    if params.get("skip_duplicate_urls") and not params.get("upsert_metadata") and prepared and _all_there(
            s, unit.job_id, folder_id, sorted({p.url_hash for p in prepared})):
        # Every URL is there (an all-duplicate batch): what the decision below then comes to,
        # counted by the database rather than each copy read into Python.
        copies_named = [p.url_hash for p in prepared]
        skipped, prepared = len(prepared), []
    elif params.get("skip_duplicate_urls"):
        if ready.blob is not None:  # a batch the reader checked holds something new: its items
            ready.expand()
            prepared = [p for r in results if not isinstance(r, FileError) for p in r]
        # A copy of the URL counts as there if users can see it, or if this job registered it
        # (it is published with this job).  A copy staged by another job still running may yet
        # be deleted with it: this job registers the URL too, and decides when it ends
        # (``_resolve_duplicates``) whether that copy was published meanwhile.
        copies = [  # (URL, the other job that staged it)
            (h, job_id if staged and job_id != unit.job_id else None)
            for h, staged, job_id in _copies(s, folder_id, sorted({p.url_hash for p in prepared}))
        ]
        # The other jobs' statuses are read after their items: DONE is final and published them;
        # anything else (running, or ended and maybe deleted them since) is decided at the end.
        others = {job_id for _, job_id in copies if job_id is not None}
        done = select(Job.id).where(Job.id.in_(others), Job.status == "DONE")
        published_by = set(s.scalars(done)) if others else set()
        there = {h for h, job_id in copies if job_id is None or job_id in published_by}
        staged_elsewhere = {h for h, _ in copies} - there
        if params.get("upsert_metadata") and there:
            # The schema row and the index keys before the items (PostgreSQL), as every writer of
            # items' metadata takes them: a schema change in progress (it deletes keys, then locks
            # every item to project the new ones) is waited for before an item is held here.  (The
            # UPDATE held the items while project_again waited for a key the change had deleted.)
            projection.lock_keys(s, unit.org_id)
        fresh: list[Prepared] = []
        registering: set[str] = set()  # the URLs this batch registers
        for p in prepared:
            if p.url_hash in registering:  # the same URL twice in one batch: the first registers
                if params.get("upsert_metadata"):
                    late[p.url_hash] = p.client_metadata  # its item has not been inserted yet
                    updated += 1
                else:
                    skipped += 1
                continue
            if p.url_hash in there:
                copies_named.append(p.url_hash)
                if params.get("upsert_metadata"):
                    upserted += _upsert(s, folder_id, p.url_hash, p.client_metadata)
                    updated += 1
                else:
                    skipped += 1
                continue
            registering.add(p.url_hash)
            (contested if p.url_hash in staged_elsewhere else fresh).append(p)
        prepared = fresh
    projection.project_again(s, unit.org_id, upserted)
    needed = [*prepared, *contested]
    # A dataset upload links the copies its skipped entries name, once it is DONE (_finalize).
    named = sorted(set(copies_named)) if params.get("dataset_id") else []
    if not needed:  # nothing to write (every file a duplicate, or failed): no keys, rows or values
        return _batch_result(results, 0, 0, skipped, updated, named)
    # What the look-up outside the lock took for a duplicate, wrongly, gets its rows now.  (This
    # may run again for the same batch after a rolled-back group commit: ``ready`` only gains
    # rows here, and its projected values are never changed, so a second run writes the same.)
    ready.build([p for p in needed if id(p) not in ready.rows])
    # (The schema row is locked, above: a key a schema change added is among these, and its
    # projection had not seen these items.)
    keys = load_keys(s, unit.org_id, writing=True)
    meta = ready.meta
    if keys != ready.keys or any(id(p) not in ready.projected for p in needed):
        # (the index changed since the rows were built, or items without values built)
        meta = _projected(keys, [(ready.rows[id(p)][0][0], p) for p in needed])
    elif len(needed) < len(ready.projected):  # duplicates were left out
        meta = _values_of(meta, {ready.rows[id(p)][0][0] for p in needed})
    if late:  # their values are projected once they take their last entry's metadata (below)
        meta = _values_of(meta, {ready.rows[id(p)][0][0] for p in needed if p.url_hash not in late})
    if needed:  # the rows the items point at, checked and held once (items has no foreign keys)
        item_parents.hold(s, org_id=unit.org_id, folder_id=folder_id, **_parents(unit))
    _insert(s, unit, folder_id, ready, prepared)
    _insert(s, unit, folder_id, ready, contested, staged=True)
    if late:  # (their values were left out of ``meta``: projected here from the metadata they end with)
        projection.project_again(s, unit.org_id, [
            changed for url_hash, client_metadata in late.items()
            for changed in _upsert(s, folder_id, url_hash, client_metadata)
        ])
    if values is None:
        projection.write(s, meta, converted=True)  # ids from uuid7_hex (_Ready.build)
    else:
        values.append(meta)
    # Whatever else must change with a batch's items goes here: every batch, inline or a unit,
    # commits through this transaction.
    index_changes.note(s, unit.org_id, (ready.rows[id(p)][0][0] for p in needed))  # index snapshots
    return _batch_result(results, len(prepared) + len(contested), len(contested), skipped, updated, named)


def _refuse_misfits(s: Session, unit: ClaimedUnit, results: list[list[Prepared] | FileError]) -> None:
    """Make each entry with an embedding its key no longer takes an entry error, in ``results``
    (in place: a batch committed again after a rolled-back group meets the same errors).

    The entries were validated against the schema of when the job (or its batch) started; an
    admin may have re-sized the key since, deleted it, or changed its metric to cosine over an
    entry's zero vector.  The item would have kept a marker without its vector
    (``vector_writes.misfit``); the entry fails instead, naming the key and why, as an entry
    with bad metadata does: with ``ignore_errors`` the job's error report lists it and the other
    entries are registered, otherwise the job fails (all or nothing)."""
    keys = vector_writes.keys_for(s, unit.org_id, (p.client_metadata for r in results
                                                   if not isinstance(r, FileError) for p in r))
    if keys is None:  # no embedding among them
        return
    bad: list[FileError] = []
    for i, r in enumerate(results):
        if isinstance(r, FileError):
            continue
        for p in r:
            found = vector_writes.misfit(keys, p.client_metadata)
            if found is not None:
                urls = tuple(p.urls) if isinstance(p, Prepared) else ()
                url = (p.urls[0] if p.urls else None) if isinstance(p, Prepared) else p.url
                error = FileError(p.seq, p.where, url, f"invalid clientMetadata: {found[1]}",
                                  urls if len(urls) > 1 else ())
                results[i] = error
                bad.append(error)
                break
    if bad and not unit.params.get("ignore_errors"):
        shown = "; ".join(f"{e.where} ({e.url}): {e.error}" for e in bad[:3])
        raise UnitFailed(f"{len(bad)} file(s) cannot be registered: {shown}",
                         details={"files": len(results), "errors": [e.as_dict() for e in bad]})


def _values_of(meta: projection.Keyed, kept: set[Any]) -> projection.Keyed:
    """The projected values of the items ``kept`` (by their ids as the rows hold them)."""
    by_key, text_rows = meta
    out: list[projection.KeyValues] = []
    for key, column, ids, values in by_key:
        keep = [item_id in kept for item_id in ids]  # (the two lists stay aligned, in their order)
        out.append((key, column, list(compress(ids, keep)), list(compress(values, keep))))
    return out, [r for r in text_rows if r[0] in kept]


def _upsert(s: Session, folder_id: uuid.UUID, url_hash: str,
            client_metadata: dict[str, Any]) -> list[tuple[uuid.UUID, dict[str, Any]]]:
    """``upsert_metadata``: every copy of the URL in the folder takes this metadata; the items
    changed, for ``projection.project_again``."""
    changed = s.scalars(
        update(Item)
        .where(
            unindexed(Item.folder_id) == folder_id,  # by the URL key's index
            Item.url_hash == url_hash,
            Item.deleted_at.is_(None),
        )
        .values(client_metadata=client_metadata, updated_at=utcnow())
        .returning(Item.id)
    )
    return [(item_id, client_metadata) for item_id in changed]


def _batch_result(results: list[list[Prepared] | FileError], registered: int, contested: int, skipped: int,
                  updated: int, copies: list[str] | None = None) -> dict[str, Any]:
    out = {
        "files": len(results),
        "registered": registered,
        "contested": contested,
        "skipped": skipped,
        "updated": updated,
        "errors": [r.as_dict() for r in results if isinstance(r, FileError)],
    }
    if copies:
        out["copies"] = copies  # (URL keys: a dataset upload links their items when it is DONE)
    return out


LOOKUP_CHUNK = 1000
_COPIES_SQLITE = (
    "SELECT url_hash, staged, job_id FROM items INDEXED BY ix_items_url_folder "
    "WHERE url_hash IN ({marks}) AND folder_id = ? AND deleted_at IS NULL"
)
# One nested loop: OFFSET 0 keeps the lateral subquery from being flattened into a join, and the
# URL key is the only condition an index can answer (the folder is compared through coalesce, on
# the index's own entries: corral.db.plans), so each key is one probe of ix_items_url_folder
# whatever the planner's statistics say. With `folder_id = %s`, every index leading with the
# folder could answer it too, and on statistics taken while the folder was small PostgreSQL
# scanned the whole folder through ix_items_folder_size for every key (migration 0026b).
_COPIES_POSTGRESQL = (
    "SELECT i.url_hash, i.staged, i.job_id FROM unnest(CAST(%s AS varchar[])) AS k(url_hash) "
    "CROSS JOIN LATERAL (SELECT url_hash, staged, job_id FROM items "
    "WHERE url_hash = k.url_hash AND coalesce(folder_id, folder_id) = %s AND deleted_at IS NULL "
    "OFFSET 0) AS i"
)


# How many of the keys have a copy in the folder that counts as there (``_commit_batch``: live,
# and not staged, or staged by this job, or by a job that is DONE), by the same index-only probes.
_THERE = ("staged = {false} OR job_id IS NULL OR job_id = {mark} "
          "OR EXISTS (SELECT 1 FROM jobs WHERE jobs.id = items.job_id AND jobs.status = 'DONE')")
_ALL_THERE_SQLITE = (
    "SELECT count(DISTINCT url_hash) FROM items INDEXED BY ix_items_url_folder "
    "WHERE url_hash IN ({marks}) AND folder_id = ? AND deleted_at IS NULL "
    "AND (" + _THERE.format(false="0", mark="?") + ")"
)
_ALL_THERE_POSTGRESQL = (
    "SELECT count(DISTINCT i.url_hash) FROM unnest(CAST(%s AS varchar[])) AS k(url_hash) "
    "CROSS JOIN LATERAL (SELECT url_hash FROM items "
    "WHERE url_hash = k.url_hash AND coalesce(folder_id, folder_id) = %s AND deleted_at IS NULL "
    "AND (" + _THERE.format(false="false", mark="%s") + ") OFFSET 0) AS i"
)


def _all_there(s: Session, job_id: uuid.UUID, folder_id: uuid.UUID, keys: list[str]) -> bool:
    """Whether every one of these distinct URL keys has a copy in the folder that counts as there
    (``_commit_batch``'s decision for each), counted by the database: a batch of duplicates is
    then decided without reading each copy into Python.  False says only that some may not be
    (the caller decides key by key)."""
    counts = _by_chunks(s, keys, _ALL_THERE_SQLITE, _ALL_THERE_POSTGRESQL, folder_id, job_id)
    try:
        return all(rows[0][0] == len(chunk) for chunk, rows in counts)
    finally:
        counts.close()


def _by_chunks(s: Session, keys: list[str], sqlite_sql: str, postgresql_sql: str,
               *ids: uuid.UUID) -> Generator[tuple[list[str], list[Any]], None, None]:
    """Each chunk of ``LOOKUP_CHUNK`` keys and the rows its dialect's statement gives, through the
    driver's own cursor in the session's transaction: PostgreSQL's statement takes the chunk as
    an array then ``ids``, SQLite's one mark a key (``{marks}``) then the ids as hex digits."""
    postgres = s.get_bind().dialect.name == "postgresql"
    raw: Any = s.connection().connection.driver_connection  # in this transaction
    cursor = raw.cursor()
    try:
        for i in range(0, len(keys), LOOKUP_CHUNK):
            chunk = keys[i : i + LOOKUP_CHUNK]
            if postgres:
                cursor.execute(postgresql_sql, (chunk, *ids))
            else:
                cursor.execute(sqlite_sql.format(marks=", ".join("?" * len(chunk))),
                               (*chunk, *(id_.hex for id_ in ids)))
            yield chunk, cursor.fetchall()
    finally:
        cursor.close()


def _copies(s: Session, folder_id: uuid.UUID, keys: list[str]) -> list[tuple[str, bool, uuid.UUID | None]]:
    """The live items of the folder with one of these duplicate keys: (key, staged, job id).

    Read from ``ix_items_url_folder`` alone (it covers every column read), by a plan that does
    not depend on the table's statistics: on an un-analysed PostgreSQL table, or one analysed
    while the folder was small, the planner once preferred scanning the whole folder by another
    index for each key, which made a million-file import quadratic.  SQLite is told the index
    (``INDEXED BY``).

    Through the driver's own cursor, in the session's transaction: a second import finds every
    key, and SQLAlchemy's result made each row a ``Row`` in Python (fetched one at a time), the
    larger part of the look-up's time; the driver's ``fetchall`` builds the tuples in C.
    """
    out: list[tuple[str, bool, uuid.UUID | None]] = []
    postgres = s.get_bind().dialect.name == "postgresql"
    # SQLite gives each row's job id as text; the copies of a batch come from a few jobs, so
    # each id is made a UUID once, not once a row (a second import: one a URL, twice a URL).
    job_ids: dict[str | None, uuid.UUID | None] = {None: None, "": None}
    for _, rows in _by_chunks(s, keys, _COPIES_SQLITE, _COPIES_POSTGRESQL, folder_id):
        if postgres:
            out += rows  # (text, boolean, uuid: psycopg gives them as such)
            continue
        for h, staged, job_id in rows:
            if job_id not in job_ids:
                job_ids[job_id] = uuid.UUID(job_id)
            out.append((h, bool(staged), job_ids[job_id]))
    return out


def _staged_with_visible_copies(job_id: uuid.UUID, folder_id: uuid.UUID) -> Select[Any]:
    """The job's staged items of the folder whose URL key another item of the folder has, visible
    (``_resolve_duplicates``). Each item's copies are looked up by the URL key's index: the folder
    is compared ``unindexed`` (corral.db.plans), so no statistics make the look-up read the whole
    folder for every item."""
    other = aliased(Item)
    visible_copy = (
        select(other.id)
        .where(
            other.url_hash == Item.url_hash,
            unindexed(other.folder_id) == folder_id,
            other.deleted_at.is_(None),
            or_(other.job_id.is_(None), other.job_id != job_id),
            or_(other.staged.is_(False), other.job_id.not_in(select(Job.id).where(Job.status == "PENDING"))),
        )
        .exists()
    )
    # The job's own items by ``ix_items_job_id``, the folder compared ``unindexed`` too: by an index
    # that leads with the folder, SQLite (with no statistics, whatever the data) read every item
    # of the folder to find the job's, 1.3-2.6 s at a million items in the transaction that ends
    # a second import (which stages none), between its ``finished_at`` and its answer.
    return select(Item.id, Item.url_hash, Item.client_metadata).where(
        Item.job_id == job_id, Item.staged.is_(True), unindexed(Item.folder_id) == folder_id, visible_copy
    )


_OTHERS_SQLITE = (
    "SELECT EXISTS (SELECT 1 FROM items INDEXED BY ix_items_folder_name_live "
    "WHERE folder_id = ? AND deleted_at IS NULL AND (job_id IS NULL OR job_id <> ?))"
)


def _others_in_folder(s: Session, job_id: uuid.UUID, folder_id: uuid.UUID) -> bool:
    """Whether the folder may hold a live item that is not the job's: without one, none of the
    job's staged items can have a visible copy (``_resolve_duplicates``).

    SQLite answers from the folder's entries of ``ix_items_folder_name_live`` (they hold
    ``job_id``), 0.13 s at a million items against 1.6-2.8 s for the look-up of every staged
    item's copies, in the transaction that ends the job (and holds the write lock).  PostgreSQL
    is not asked (True): without a usable plan for every statistics it chose a scan of the
    whole table (0.3-1.4 s at a million items, and every organisation's items in it), so it
    looks the copies up as before."""
    if s.get_bind().dialect.name != "sqlite":
        return True
    raw: Any = s.connection().connection.driver_connection  # in this transaction
    return bool(raw.execute(_OTHERS_SQLITE, (folder_id.hex, job_id.hex)).fetchone()[0])


def _resolve_duplicates(s: Session, job: Job) -> dict[str, int]:
    """When a job with ``skip_duplicate_urls`` ends and keeps its items: drop each staged item of
    its whose URL is now visible in the folder from elsewhere (a job that was running when this
    one registered the URL, and was published since), counting it as skipped (or, with
    ``upsert_metadata``, updated: the visible copies take its metadata).

    Staged items are all of an all-or-nothing job's and, with ``ignore_errors``, the URLs that
    only another running job had (``_commit_batch``).  Runs in the transaction that ends the job,
    under the folder's lock, so of two such jobs ending together the second sees the first's.
    """
    folder_id = uuid.UUID(job.params["folder_id"])
    _lock_folder(s, folder_id)
    if not _others_in_folder(s, job.id, folder_id):
        return {"skipped": 0, "updated": 0}  # no item of the folder but the job's: no copy
    rows = s.execute(_staged_with_visible_copies(job.id, folder_id)).all()
    if not rows:
        return {"skipped": 0, "updated": 0}
    if job.params.get("upsert_metadata"):
        projection.lock_keys(s, job.org_id)  # before the items, as in _commit_batch
        upserted: list[tuple[uuid.UUID, dict[str, Any]]] = []
        taking: list[tuple[uuid.UUID, list[uuid.UUID]]] = []  # (staged item, the copies taking its metadata)
        for staged_id, url_hash, client_metadata in rows:
            copies = list(s.scalars(
                update(Item)
                .where(unindexed(Item.folder_id) == folder_id, Item.url_hash == url_hash,
                       Item.deleted_at.is_(None), or_(Item.job_id.is_(None), Item.job_id != job.id))
                .values(client_metadata=client_metadata, updated_at=utcnow())
                .returning(Item.id)
            ))
            upserted += [(item_id, client_metadata) for item_id in copies]
            taking.append((staged_id, copies))
        projection.project_again(s, job.org_id, upserted)
        # The staged item's JSON holds its embeddings' markers, and its vectors are rows of its
        # own, deleted with it below: the copies take those (the marker alone kept each copy's
        # old vector, or none).
        vector_writes.copy_vectors(s, job.org_id, taking)
    ids = [row.id for row in rows]
    for i in range(0, len(ids), 500):
        chunk = ids[i : i + 500]
        s.execute(delete(ItemPart).where(ItemPart.item_id.in_(chunk)))
        s.execute(delete(Item).where(Item.id.in_(chunk)))
    key = "updated" if job.params.get("upsert_metadata") else "skipped"
    return {"skipped": 0, "updated": 0, key: len(ids)}


def _url_key_of(rows: tuple[tuple[Any, ...], list[tuple[Any, ...]]]) -> Any:
    return rows[0][4]  # url_hash in an item row (_ITEM_COLUMNS)
# ``doc`` last: the listing JSON's text up to its timestamps when built, whole when inserted.
_ITEM_COLUMNS = ("id", "item_type", "name", "url", "url_hash", "file_size", "mime_type", "media",
                 "client_metadata", "doc")
_PART_COLUMNS = ("item_id", "position", "url", "title", "media")


def _job_columns(unit: ClaimedUnit) -> dict[str, Any]:
    """The columns every item of the job shares that its parameters decide (the rows' constants,
    and the listing documents' fixed values)."""
    params = unit.params
    return {
        "integration_id": uuid.UUID(params["integration_id"]),
        "storage_location": params.get("provider", "cloud"),
        "job_id": unit.job_id,
        "created_by": uuid.UUID(params["created_by"]) if params.get("created_by") else None,
    }


def _parents(unit: ClaimedUnit) -> dict[str, uuid.UUID | None]:
    columns = _job_columns(unit)
    return {name: columns[name] for name in ("integration_id", "job_id", "created_by")}


def _insert(
    s: Session, unit: ClaimedUnit, folder_id: uuid.UUID, ready: _Ready, prepared: list[Prepared], *,
    staged: bool = False
) -> None:
    """Insert the rows of these items: staged (see ``corral.core.staging``) for an all-or-nothing
    job, or when ``staged`` is set.  (Their projected values are written by the caller.)"""
    if not prepared:
        return
    now = utcnow()
    constants = {  # the same for every item of the job: converted once (see corral.db.bulk)
        **_job_columns(unit),
        "org_id": unit.org_id,
        "folder_id": folder_id,
        "is_placeholder": False,
        "staged": staged or not unit.params.get("ignore_errors"),
        "created_at": now,
        "updated_at": now,
    }
    rows = [ready.rows[id(p)] for p in prepared]
    # In key order: a shuffled manifest's batch then goes into the duplicate-key index page by
    # page, not at a random place per row.  (The ids were given in manifest order.)
    rows.sort(key=_url_key_of)
    created, finish = item_docs.stamp(now), item_docs.Docs.finish
    insert_tuples(s, ITEMS, _ITEM_COLUMNS, [(*row[:-1], finish(row[-1], created)) for row, _ in rows],
                  constants, converted=True)
    insert_tuples(s, ITEM_PARTS, _PART_COLUMNS, [part for _, parts in rows for part in parts], converted=True)
    # embedding values go to the vector store, in the same transaction (corral.core.vectors.writes)
    with_vectors = [
        (uuid.UUID(ready.ids[id(p)]), p.client_metadata)
        for p in prepared
        if any(isinstance(value, StoredVector) for value in p.client_metadata.values())
    ]
    if with_vectors:
        vector_writes.store(s, unit.org_id, with_vectors, replace=False)


@dataclass
class _Ready:
    """A batch's results with their rows built before the write lock is taken: each item's row
    and its parts' rows converted for the driver (by ``id()`` of its ``Prepared``), and the
    projected values of those items for the index keys ``keys``."""

    results: list[list[Prepared] | FileError]
    dialect: Dialect
    rows: dict[int, tuple[tuple[Any, ...], list[tuple[Any, ...]]]] = field(default_factory=dict)
    keys: list[Key] = field(default_factory=list)
    meta: projection.Keyed = ([], [])  # the values of the items in ``projected``, for ``keys``
    projected: set[int] = field(default_factory=set)  # id() of each item whose values ``meta`` holds
    ids: dict[int, str] = field(default_factory=dict)  # each item's id, as given (hex)
    docs: item_docs.Docs | None = None  # the items' listing JSON (None: not written)
    #: A batch the reader checked (``_ChildChecker``): its items, pickled, until ``expand``; its
    #: results hold a ``_Key`` for each item meanwhile.  ``vectors``: whether one carries an embedding.
    blob: bytes | None = None
    vectors: bool = False

    def expand(self) -> None:
        """Put each item of a batch the reader checked in place of its ``_Key`` in ``results``
        (the same list, changed in place), as the ``Prepared`` the planner's own check makes."""
        blob, self.blob = self.blob, None
        if blob is None:
            return
        items = iter([Prepared(*fields) for fields in pickle.loads(blob)])  # noqa: S301 - our own reader's
        results = self.results
        for i, r in enumerate(results):
            if not isinstance(r, FileError):
                results[i] = [next(items) for _ in r]

    def build(self, prepared: list[Prepared]) -> list[tuple[str, Prepared]]:
        """Rows for these items; returns (item id, item) pairs."""
        # time-ordered ids: appended to the primary key index, not scattered through it
        ids = uuid7_hex(len(prepared))
        items = []
        parts = []
        for item_id, p in zip(ids, prepared, strict=True):
            media = p.media
            items.append(
                (item_id, p.item_type, p.name[:300], p.url, p.url_hash, media.get("file_size"),
                 media.get("mime_type"), media, p.client_metadata, None)
            )
            parts.append([(item_id, i, part["url"], part["title"][:300], part["media"])
                          for i, part in enumerate(p.parts)])
        converted = convert_tuples(self.dialect, ITEMS, _ITEM_COLUMNS, items)
        docs = self.docs
        if docs is not None:  # each row's listing JSON from the values it holds (item_docs)
            head = docs.head
            if docs.postgres:
                converted = [(*r[:-1], head(r[0], r[1], r[2], r[3], r[5], r[6], i[7], i[8]))
                             for r, i in zip(converted, items, strict=True)]
            else:
                converted = [(*r[:-1], head(r[0], r[1], r[2], r[3], r[5], r[6], r[7], r[8]))
                             for r in converted]
        # The parts of every item converted in one call (its converters looked up once a batch,
        # not once an item: most items, single files, have none), then handed back item by item.
        flat = convert_tuples(self.dialect, ITEM_PARTS, _PART_COLUMNS, [r for rows in parts for r in rows])
        at = 0
        for item_id, p, row, part_rows in zip(ids, prepared, converted, parts, strict=True):
            self.rows[id(p)] = (row, flat[at : at + len(part_rows)] if part_rows else [])
            at += len(part_rows)
            self.ids[id(p)] = item_id
        return list(zip(ids, prepared, strict=True))


class _Key:
    """An item of a batch the reader checked, until its ``Prepared`` is needed (``_Ready.expand``):
    its URL key, which is all an all-duplicate batch's commit reads (``_commit_batch``)."""

    __slots__ = ("url_hash",)
    client_metadata: dict[str, Any] = {}  # noqa: RUF012 - never changed (an item with an embedding is expanded)

    def __init__(self, url_hash: str) -> None:
        self.url_hash = url_hash


class _Built:
    """An item whose rows were built in the manifest's reading process (``_ChildPlanner``): what
    ``_commit_batch`` reads of a ``Prepared`` once its rows are there."""

    __slots__ = ("client_metadata", "seq", "url", "url_hash", "urls", "where")

    def __init__(self, url_hash: str, client_metadata: dict[str, Any], seq: int, where: str,
                 url: str | None) -> None:
        self.url_hash, self.client_metadata, self.seq, self.where = url_hash, client_metadata, seq, where
        self.url, self.urls = url, ()  # (an entry's error names its first URL: ``_misfits``)


def _received(dialect: Dialect, unit: ClaimedUnit, encoded: list[Any], meta: projection.Keyed,
              keys: list[Key]) -> _Ready:
    """The ``_Ready`` of a batch ``_ChildPlanner`` prepared: each entry's items or its
    ``FileError``; an item is a ``_Built`` with the rows the child built, or, when the child's
    look-up found its URL in the folder already, a ``Prepared`` with no rows (built under the
    lock if ``_commit_batch`` finds it is no duplicate after all, as for ``_ready``'s look-up)."""
    results: list[list[Prepared] | FileError] = []
    ready = _Ready(results, dialect, keys=keys, meta=meta, docs=_docs(dialect.name == "postgresql", unit))
    rows, ids, projected = ready.rows, ready.ids, ready.projected
    for entry in encoded:
        if type(entry) is tuple:
            results.append(FileError(*entry))
            continue
        items: list[Any] = []
        for item in entry:
            if len(item) != 5:  # (seq, item_type, name, urls, media, client_metadata, parts, where)
                items.append(Prepared(*item))
                continue
            client_metadata, row, parts, seq, where = item
            # (url_hash, url: _ITEM_COLUMNS; a group's first URL is its first part's)
            p = _Built(row[4], client_metadata, seq, where, row[3] or (parts[0][2] if parts else None))
            key = id(p)
            rows[key] = (row, parts)
            ids[key] = row[0]
            projected.add(key)
            items.append(p)
        results.append(items)
    return ready


class _ChildBatches:
    """What the manifest's reading process runs for ``PipedEntries.prepare``: entries batched as
    ``_plan`` batches them (the same sizes and numbers, entry errors passed on in between; after
    one, an all-or-nothing job writes nothing more), each full batch made by ``_batch``."""

    size: int
    ignore_errors: bool
    writing: bool
    batch: list[Any]

    @property
    def pending(self) -> int:
        return len(self.batch)

    def feed(self, item: Any) -> list[Any]:
        if isinstance(item, EntryError):
            if not self.ignore_errors:
                self.writing = False  # as _plan's stop_writing
            return [item]
        self.batch.append(item)
        return [self._batch()] if len(self.batch) >= self.size else []

    def finish(self) -> list[Any]:
        return [self._batch()] if self.batch else []

    def _batch(self) -> tuple[int, int, Any]:
        raise NotImplementedError


class _ChildPlanner(_ChildBatches):
    """The planner's Python work with each batch of a strict client-only import, done in the
    manifest's reading process (``manifest_pipe.PipedEntries.prepare``) instead of the planner's:
    ``prepare_entry`` (scope and schema checks), then the rows, listing documents and projected
    values ``_ready`` builds.  It batches the entries as ``_plan`` does (the same sizes and
    numbers, entry errors in between), skips the batches ``done`` holds as ``submit`` does, and
    stops building rows where ``submit`` stops writing (the first entry error or bad file of an
    all-or-nothing job), so the planner's process receives what its own work would have given,
    and only writes it (``_InlineWriter.submit_prepared``).

    It does not look duplicates up before the lock (``_ready`` does): the reader prepares only
    when the folder held no items as the import started (``_duplicates_likely``), so such a
    look-up finds nothing but this import's own repeated URLs, and ``_commit_batch`` decides
    under the lock in any case (it was 6% of this process's time and a backend's 1.5 CPU s at a
    million files: docs/performance.md, "PostgreSQL at a million: who sets the pace").  The index keys
    are the ones read when the import started (``_commit_batch`` projects again if they changed).
    What crosses the pipe is tuples: a file error as ``(seq, where, url, error)``, an item as
    ``(client_metadata, row, parts, seq, where)`` with the rows converted for the driver."""

    def __init__(self, unit: ClaimedUnit, options: Any, title: str, ttl_seconds: int, schema: Any,
                 keys: list[Key], dialect: str, done: set[int], size: int,
                 private: str = "") -> None:  # (``private``: manifest_pipe's line; none is sent)
        from sqlalchemy.dialects import postgresql, sqlite

        from corral.storage.guard import guard

        self.unit, self.keys, self.done, self.size = unit, keys, done, size
        self.dialect: Dialect = (postgresql.psycopg.dialect() if dialect == "postgresql"  # type: ignore[no-untyped-call]
                                 else sqlite.dialect())
        self.storage = ScopedStorage(guard(cast(Any, _UrlsOnly(options))), options, title=title,
                                     strict_client_only=True, ttl_seconds=ttl_seconds)
        self.validator = Validator(schema)
        self.ignore_errors = bool(unit.params.get("ignore_errors"))
        self.writing = True
        self.batch: list[Any] = []
        self.batch_no = 0

    def _batch(self) -> tuple[int, int, Any]:
        entries, self.batch = self.batch, []
        self.batch_no += 1
        seq = self.batch_no
        if seq in self.done:
            return seq, len(entries), None
        results = [prepare_entry(e, self.storage, self.validator, from_manifest=True) for e in entries]
        if not self.ignore_errors and any(isinstance(r, FileError) for r in results):
            self.writing = False
        if not self.writing:  # the planner writes nothing more: its errors are all it needs
            kept = [_error_fields(r) for r in results if isinstance(r, FileError)]
            return seq, len(entries), (kept, None, None)
        ready = _Ready(results, self.dialect, docs=_docs(self.dialect.name == "postgresql", self.unit))
        prepared = [p for r in results if not isinstance(r, FileError) for p in r]
        meta = _projected(self.keys, ready.build(prepared))
        rows = ready.rows
        encoded = [_error_fields(r) if isinstance(r, FileError)
                   else [(p.client_metadata, *rows[id(p)], p.seq, p.where) if id(p) in rows
                         else (p.seq, p.item_type, p.name, p.urls, p.media, p.client_metadata, p.parts,
                               p.where)
                         for p in r] for r in results]
        return seq, len(entries), (encoded, meta, self.keys)


_ENTRIES, _CHECKED = 0, 1  # what ``_ChildChecker`` sends of a batch (the payload's first element)
#: ``_ChildChecker``'s adaptive share: each batch's message moves it by this much, up if the
#: planner was behind when it was ready to go, down if the planner had taken all before it.
_CHECKS_STEP = 0.05


class _ChildChecker(_ChildBatches):
    """The checks of an import likely to meet duplicates (``_duplicates_likely``), shared between
    the manifest's reading process, where this runs (``manifest_pipe.PipedEntries.prepare``), and
    the planner's.  There the reader only read while the planner's thread checked every entry
    (``prepare_entry``: scope, schema, strict sizes) and looked it up, so the reader idled on
    one core while the planner set the pace on the other; checking every entry here made the
    reader the pace instead (the same CPU in total, docs/performance.md).  So this checks a
    share of the batches and sends the others as their entries, for the planner to check as it
    checks entries it reads (``_InlineWriter.submit``).

    The share is ``share`` if given (``CHILD_CHECKS``, 0.4); otherwise it starts at
    ``CHILD_CHECKS_START`` and follows
    which process waits for the other (``behind``): when a batch is ready to go and the pipe
    still holds what went before (the planner's queue is full), the planner is the pace, so a
    larger share is checked here; when the planner has taken everything, a smaller.  (How long
    the write took was tried first: a checked batch's message is larger than the pipe, so its
    write always waited for the planner's thread that takes it off, and at nice 19 that wait
    said "behind" for nearly every batch: the reader ended at twice the planner's CPU.  The
    bytes left in the pipe said the opposite on the same loaded machine: the planner's queue
    takes two messages, so the pipe was nearly always empty, and the share fell to about none.)

    It batches the entries as ``_plan`` does (the same sizes and numbers, entry errors in
    between), skips the batches ``done`` holds (``(seq, entries, None)``), and of a batch it
    checks sends its verdicts, for each entry its ``FileError``'s fields or its item's URL key (a
    list of them for an entry of several items), and the items' ``Prepared`` fields pickled into
    one ``bytes``, which the planner unpickles only for a batch that holds something new
    (``_Ready.expand``), plus whether an item carries an embedding (checked again under the
    lock, ``_refuse_misfits``).  After the first entry error or bad file of an all-or-nothing
    job it sends no items (the planner writes nothing more)."""

    def __init__(self, unit: ClaimedUnit, options: Any, title: str, ttl_seconds: int, schema: Any,
                 done: set[int], size: int, share: float | None, private: str = "") -> None:
        from corral.storage.guard import guard

        self.done, self.size = done, size
        self.storage = ScopedStorage(guard(cast(Any, _UrlsOnly(options))), options, title=title,
                                     strict_client_only=True, ttl_seconds=ttl_seconds)
        self.validator = Validator(schema)
        # Only an embedding key's check makes a ``StoredVector`` (``validation._embedding``): with
        # none in the schema no item carries one, and its metadata's values are not looked at.
        self.embeddings = any(e.kind == "embedding" for e in schema.live().values())
        self.ignore_errors = bool(unit.params.get("ignore_errors"))
        self.adaptive = share is None
        self.share = CHILD_CHECKS_START if share is None else share
        self.owed = 0.0  # the share accumulated: a batch is checked here each time it reaches 1
        self.writing = True
        self.batch: list[Any] = []
        self.batch_no = 0
        self.checked = 0  # batches checked here (the log)

    def behind(self, unread: int) -> None:
        """``unread`` bytes of the batches before are still in the pipe as the next is sent
        (``manifest_pipe._child_prepared``; -1: not known, no change)."""
        if self.adaptive and unread >= 0:
            step = _CHECKS_STEP if unread else -_CHECKS_STEP
            self.share = min(1.0, max(0.0, self.share + step))

    def _batch(self) -> tuple[int, int, Any]:
        entries, self.batch = self.batch, []
        self.batch_no += 1
        seq = self.batch_no
        if seq in self.done:
            return seq, len(entries), None
        self.owed += self.share
        if self.owed < 1.0 - 1e-9:
            return seq, len(entries), (_ENTRIES, [fields_of(e) for e in entries])
        self.owed -= 1.0
        self.checked += 1
        results = [prepare_entry(e, self.storage, self.validator, from_manifest=True) for e in entries]
        verdicts: list[Any] = []
        items: list[tuple[Any, ...]] = []
        vectors = False
        embeddings = self.embeddings
        for r in results:
            if isinstance(r, FileError):
                verdicts.append(_error_fields(r))
                if not self.ignore_errors:
                    self.writing = False
                continue
            verdicts.append(r[0].url_hash if len(r) == 1 else [p.url_hash for p in r])
            for p in r:
                items.append((p.seq, p.item_type, p.name, p.urls, p.media, p.client_metadata, p.parts,
                              p.where))
                if embeddings and not vectors:
                    vectors = any(isinstance(v, StoredVector) for v in p.client_metadata.values())
        blob = pickle.dumps(items, protocol=pickle.HIGHEST_PROTOCOL) if self.writing else None
        return seq, len(entries), (_CHECKED, verdicts, blob, vectors)


def _error_fields(error: FileError) -> tuple[int, str, str | None, str, tuple[str, ...] | list[str]]:
    return error.seq, error.where, error.url, error.error, error.urls


class _UrlsOnly:
    """An integration's URLs and keys without its store (``corral.storage.urls``): what a strict
    client-only import's checks ask of it (``ScopedStorage.resolve``), in a process that holds
    no credentials.  Every backend answers these two from the same functions."""

    def __init__(self, options: Any) -> None:
        self.options = options

    @property
    def urls_options(self) -> Any:
        """The options both resolve with (``ScopedStorage``'s fast path, as ``S3Storage``'s)."""
        return self.options

    def key_for_url(self, url: str) -> str:
        from corral.storage import urls

        return urls.key_for_url(url, self.options)

    def url_for(self, key: str) -> str:
        from corral.storage import urls

        return urls.url_for_key(key, self.options)


def _projected(keys: list[Key], items: list[tuple[str, Prepared]]) -> projection.Keyed:
    projector = projection.Projector(keys)
    return projector.keyed((item_id, p.client_metadata) for item_id, p in items) if projector else ([], [])


def _docs(postgres: bool, unit: ClaimedUnit) -> item_docs.Docs:
    job = _job_columns(unit)
    return item_docs.Docs(
        postgres,
        folder_id=str(uuid.UUID(unit.params["folder_id"])),
        integration_id=str(job["integration_id"]),
        storage_location=job["storage_location"],
        job_id=str(job["job_id"]),
        created_by=str(job["created_by"]) if job["created_by"] else None,
    )


def _ready(db: Database, unit: ClaimedUnit, results: list[list[Prepared] | FileError], *,
           copies_likely: bool = False, blob: bytes | None = None, vectors: bool = False) -> _Ready:
    """Build a batch's rows outside any write transaction.  With ``skip_duplicate_urls``, the
    items whose URL a look-up finds in the folder already get none: the check under the folder's
    lock decides (``_commit_batch``), and builds the rows of any it finds were not duplicates.
    ``copies_likely`` (the batches before held only copies): none get rows, without the look-up;
    the check under the lock counts them as it always does, and builds rows for any it finds new
    (without ``upsert_metadata``: an upsert reads each copy under the lock anyway).

    ``blob``: a batch the reader checked (``_InlineWriter.submit_checked``), whose results hold
    ``_Key``s; its items are expanded only if the look-up finds one new."""
    prepared = [p for r in results if not isinstance(r, FileError) for p in r]
    ready = _Ready(results, db.engine.dialect, docs=_docs(db.engine.dialect.name == "postgresql", unit),
                   blob=blob, vectors=vectors)
    if copies_likely and unit.params.get("skip_duplicate_urls") and not unit.params.get("upsert_metadata"):
        return ready  # (no keys: ``_commit_batch`` loads them under the lock if it writes values)
    with db.read() as s:
        ready.keys = load_keys(s, unit.org_id)
        if unit.params.get("skip_duplicate_urls") and prepared:
            prepared = _not_copies(s, unit, prepared)
            if prepared and ready.blob is not None:  # something new: the items themselves
                new = {p.url_hash for p in prepared}
                ready.expand()
                prepared = [p for r in results if not isinstance(r, FileError) for p in r
                            if p.url_hash in new]
    ready.meta = _projected(ready.keys, ready.build(prepared))
    ready.projected = {id(p) for p in prepared}
    return ready


def _not_copies(s: Session, unit: ClaimedUnit, prepared: list[Any]) -> list[Any]:
    """The items whose URL a look-up outside the lock does not find in the folder already."""
    found = _copies(s, uuid.UUID(unit.params["folder_id"]), sorted({p.url_hash for p in prepared}))
    # As ``_commit_batch`` decides: a copy staged by another job counts once that job is
    # DONE (which published it), so a second import of the same files builds nothing.
    others = {job_id for _, staged, job_id in found if staged and job_id != unit.job_id}
    others.discard(None)
    done = select(Job.id).where(Job.id.in_(others), Job.status == "DONE")
    published_by = set(s.scalars(done)) if others else set()
    there = {h for h, staged, job_id in found
             if not staged or job_id is None or job_id == unit.job_id or job_id in published_by}
    return [p for p in prepared if p.url_hash not in there]


# -- the task kind ----------------------------------------------------------------------------


def _prepare(ctx: WorkerContext, unit: ClaimedUnit) -> Any:
    return _plan(ctx, unit) if unit.payload.get("op") == "plan" else _batch(ctx, unit)


def _commit(s: Session, unit: ClaimedUnit, prepared: Any) -> dict[str, Any]:
    if unit.payload.get("op") == "plan":
        return dict(prepared)
    return _commit_batch(s, unit, prepared)


def _finalize(s: Session, job: Job) -> None:
    if job.status == "DONE" and job.params.get("cancel_requested"):
        # Cancelled while every batch was already running (several workers take a job's batches
        # at once): nothing was left to cancel, and the queue ends such a job DONE.  The cancel
        # was answered while the job was PENDING, so it ends CANCELLED like any other, and an
        # all-or-nothing job's staged items are deleted below (it published them all).
        job.status = "CANCELLED"
    plan = s.execute(
        select(JobUnit.status, JobUnit.error).where(JobUnit.job_id == job.id, JobUnit.seq == 0)
    ).first()
    if (
        job.status in ("DONE", "ERROR")
        and plan is not None
        and plan.status == "error"
        and not job.params.get("cancel_requested")
    ):
        # An unreadable manifest fails the job even with ignore_errors (it is not one bad file),
        # and the planner's reason says more than "1 of N units failed".
        job.status, job.error = "ERROR", plan.error
    if job.params.get("skip_duplicate_urls") and (job.status == "DONE" or job.ignore_errors):
        job.result = {**job.result, "duplicates_resolved": _resolve_duplicates(s, job)}
    if job.status == "DONE" and job.ignore_errors:
        counts = file_counts(s, job.id, error_limit=1, job_result=job.result)
        if counts["failed"] and not (counts["registered"] or counts["skipped"] or counts["updated"]):
            # Nothing was registered: the job failed, whatever ignore_errors let it go on past.
            first = counts["errors"][0] if counts["errors"] else {}
            job.status = "ERROR"
            job.error = (
                f"every file failed ({counts['failed']}); the first: "
                f"{first.get('where')}: {first.get('error')}"
            )
    if job.status == "DONE":  # which publishes its staged items (corral.core.staging)
        _analyze_after_large_load(s, job)
        if job.params.get("dataset_id"):  # a dataset upload (the SDK's add_private_data_to_dataset)
            s.flush()  # the status first: linking takes published items only
            datasets.link_job_items(s, uuid.UUID(job.params["dataset_id"]), job.id,
                                    uuid.UUID(job.params["folder_id"]), _copies_named(s, job))
        thumbnails.enqueue_for_job(s, job)  # images outside strict client-only integrations
    elif not job.ignore_errors:
        discard_staged(s, job.id)
    # (its manifest's job_blobs are deleted after this transaction: queue.drop_blobs)


def _copies_named(s: Session, job: Job) -> list[str]:
    """The URL keys of the folder's items that a dataset upload's skipped (or updated) entries
    named: the dataset links them too, as the entries' files ("skip URLs already in the dataset",
    not in the folder: a copy the folder holds but the dataset does not is linked, not skipped)."""
    if not job.params.get("skip_duplicate_urls"):
        return []
    keys: set[str] = set()
    done = select(sql_cast(JobUnit.result, Text)).where(
        JobUnit.job_id == job.id, JobUnit.seq > 0, JobUnit.status == "done")
    for raw in s.scalars(done):
        result, unreadable = queue.load_stored(raw, "result")
        if result and not unreadable:
            keys.update(result.get("copies", ()))
    return sorted(keys)


ANALYZE_AFTER = 50_000  # files registered or updated


def _analyze_after_large_load(s: Session, job: Job) -> None:
    """PostgreSQL: refresh the planner's statistics of the tables a large import grew, rather
    than wait for autovacuum (listings and searches are planned from them; the duplicate check
    does not depend on them).  ANALYZE samples a fixed number of rows, so it costs well under a
    second whatever the table's size.  SQLite keeps no statistics corral relies on."""
    if s.get_bind().dialect.name != "postgresql":
        return
    counts = file_counts(s, job.id, error_limit=0, job_result=job.result)
    if counts["registered"] + counts["updated"] >= ANALYZE_AFTER:  # not for a job of duplicates
        s.execute(text("ANALYZE items, item_meta, item_vectors"))


def progress(
    s: Session, job: Job, error_limit: int = 1000, units: dict[str, int] | None = None
) -> dict[str, Any]:
    """What every view of an upload job reports (the API, the CLI, the SDK's polling state):
    files in the manifest, registered, skipped, updated, failed and pending, each failed
    file, and the manifest's name when the job was given one.  Once the job has ended,
    ``registered`` counts what is really there (a failed job's staged items were removed) and
    nothing is pending.

    One statement (``TaskKind.progress``): the units' results, with the job's items counted
    alongside once it has ended; ``units``, when given, is filled with the units counted by state
    from the same rows (a poll of an ended import: 2 statements with the job's own, not 4)."""
    ended = job.status in queue.TERMINAL
    rows = s.execute(_UNIT_RESULTS_AND_KEPT if ended else _UNIT_RESULTS, {"job_id": job.id}).all()
    counts = _tally(rows, error_limit, job.result)
    if units is not None:
        for row in rows:
            units[row[1]] = units.get(row[1], 0) + 1
    if ended:
        counts["registered"] = rows[0][4] if rows else kept_items(s, job.id)
        counts["pending"] = 0
    # Entries, not items: an image sequence split in two is one entry done (as files_total and
    # failed count it); after a rolled-back job, no more than the items it left and its duplicates.
    settled_items = counts["registered"] + counts["skipped"] + counts["updated"]
    counts["entries_done"] = min(counts["entries_done"], settled_items)
    # The entries an ended job never settled: those of the batches it cancelled, or, for a job
    # failed without ignore_errors, its good entries, whose staged items were removed.  The
    # Encord SDK's units (done, error, cancelled) add up to the manifest's entries with them.
    total = counts["files_total"]
    counts["entries_unsettled"] = (max(0, total - counts["entries_done"] - counts["failed"])
                                   if ended and total is not None else 0)
    counts["manifest_name"] = (job.params or {}).get("manifest_name")
    return counts


def _warm(ctx: WorkerContext) -> Any:
    """A spare manifest reader for this worker's process (``manifest_pipe.hold``), which imports
    this module while it waits (``_ChildPlanner`` is here), unless ``manifest_pipe_spare`` is off."""
    from corral.registration import manifest_pipe

    if not ctx.services["settings"].manifest_pipe_spare:
        return lambda: None
    return manifest_pipe.hold((__name__,))


TASK = registry.register(TaskKind(KIND, _prepare, _commit, _finalize, max_attempts=5, progress=progress,
                                  warm=_warm))


# -- reading a job's progress --------------------------------------------------------------------


#: Statements a poll runs, built once (building and keying a statement costs more than running
#: these on SQLite).
_UNIT_RESULTS = (
    select(JobUnit.seq, JobUnit.status, sql_cast(JobUnit.result, Text), JobUnit.error)
    .where(JobUnit.job_id == bindparam("job_id"))
    .order_by(JobUnit.seq)
)
_JOB_ITEMS = select(func.count()).select_from(Item).where(Item.job_id == bindparam("job_id"))
#: The units' results and, on each row, the job's items counted (``kept_items``): an uncorrelated
#: subquery, run once, in the same snapshot as the units.
_UNIT_RESULTS_AND_KEPT = _UNIT_RESULTS.add_columns(_JOB_ITEMS.scalar_subquery())


def file_counts(s: Session, job_id: uuid.UUID, *, error_limit: int = 1000,
                job_result: dict[str, Any] | None = None) -> dict[str, Any]:
    """Per-file progress, summed over the job's unit results (a unit is a batch of files).

    Reads only the units' small results, never their payloads, so polling a job of millions of
    files stays cheap.  ``pending`` is unknown (null) until the manifest has been read.
    ``job_result`` is the job's own ``result`` when the caller holds the job (one statement
    fewer per poll); otherwise it is read.
    """
    rows = s.execute(_UNIT_RESULTS, {"job_id": job_id}).all()
    if job_result is None:
        job_result = s.scalar(select(Job.result).where(Job.id == job_id))
    return _tally(rows, error_limit, job_result)


def _tally(rows: Sequence[Row[Any]], error_limit: int, job_result: dict[str, Any] | None) -> dict[str, Any]:
    """``file_counts`` of the units' rows (``_UNIT_RESULTS``: seq, status, result as text, error)."""
    out: dict[str, Any] = {
        "files_total": None,
        "registered": 0,
        "skipped": 0,
        "updated": 0,
        "failed": 0,
        "pending": None,
    }
    file_errors: list[dict[str, Any]] = []
    failed_batches = 0
    entries_done = 0  # entries of the completed batches that did not fail (registered, skipped, updated)
    for seq, status, raw_result, error, *_ in rows:
        # decoded row by row: a result that cannot be read back spoils its own line, not the report
        result, unreadable = queue.load_stored(raw_result, "result")
        if unreadable:
            file_errors.append({"seq": None, "where": "manifest" if seq == 0 else f"batch {seq}", "url": None,
                                "error": unreadable})
            failed_batches += seq != 0
            continue
        if seq == 0:  # the plan unit (when it failed, ``result`` holds what it found wrong)
            if result:
                out["files_total"] = result.get("entries")
                out["failed"] += result.get("error_count", 0)
                file_errors += result.get("errors", [])
            if status == "error" and not (result and result.get("errors")):
                file_errors.append({"seq": None, "where": "manifest", "url": None, "error": error})
            continue
        if status == "done" and result:
            for key in ("registered", "skipped", "updated"):
                out[key] += result.get(key, 0)
            out["failed"] += len(result.get("errors", []))
            entries_done += result.get("files", 0) - len(result.get("errors", []))
            file_errors += result.get("errors", [])
        elif status == "error":
            failed_batches += 1
            if result and result.get("errors"):  # every bad file of the batch, with its URL
                out["failed"] += len(result["errors"])
                file_errors += result["errors"]
            else:
                file_errors.append({"seq": None, "where": f"batch {seq}", "url": None, "error": error})
    resolved = job_result or {}
    for key, n in resolved.get("duplicates_resolved", {}).items():  # see _resolve_duplicates
        out["registered"] -= n
        out[key] += n
    out["entries_done"] = entries_done
    if out["files_total"] is not None:
        # counted in entries, as files_total: ``registered`` counts an image sequence split in two
        # twice, which left its other entries out of ``pending`` while they were still to do
        out["pending"] = max(0, out["files_total"] - entries_done - out["failed"])
    out["failed_batches"] = failed_batches
    out["errors"] = file_errors[:error_limit]
    return out


def kept_items(s: Session, job_id: uuid.UUID) -> int:
    """The items an *ended* job registered that are there now (deleted ones included).

    Every item a job made is published once the job is no longer ``PENDING`` (``published()``:
    not staged, or staged by a job that is not pending), and a job never returns to ``PENDING``,
    so this counts the job's items alone: an index-only count of ``ix_items_job_id``, not a read
    of each item's row to test ``staged`` (polling a finished import: 1.6 → 0.4 ms of CPU at
    1,000 items, docs/performance.md)."""
    return s.execute(_JOB_ITEMS, {"job_id": job_id}).scalar() or 0


def created_items(s: Session, job_id: uuid.UUID, limit: int = 1000) -> list[dict[str, Any]]:
    rows = s.execute(
        select(Item.id, Item.name, Item.url)
        .where(Item.job_id == job_id, published())
        .order_by(Item.created_at)
        .limit(limit)
    )
    return [{"id": str(i), "name": n, "url": u} for i, n, u in rows]


def not_found(job_id: uuid.UUID) -> errors.NotFound:
    return errors.NotFound.of("upload job", job_id)
