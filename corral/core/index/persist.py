"""The index's columnar snapshots kept on disk, so that a process just started answers from columns.

A snapshot built in the background (an organisation of more than ``snapshot.SYNC_ITEMS`` items)
is saved to ``CORRAL_INDEX_SNAPSHOT_DIR/<org id>.snap`` (default ``DATA_DIR/index``), and a
process that starts (``warm_largest``) or that needs a snapshot it does not have (``warm``)
loads that file instead of reading every value from the database: about a second at a million
items against 4-13 s.

**Exactness.**  A file is used only if everything below holds, checked in one consistent read;
otherwise it is ignored (a line in the log) and the snapshot is built from the database as
before, then saved over it:

* the database holds the record of that very file (``index_snapshot_files``: the file's random
  ``token`` and its change sequence, written in the transaction that renamed the file into
  place).  A file of another database, or of a history this database no longer has (a backup
  restored from before the save, whose sequence numbers may come back to the file's with other
  changes), has no such record;
* the database's schema revision (Alembic's) is the file's;
* the organisation's change sequence has not gone back behind the file's, and the change log
  still names every item changed since (``changes.since``: not pruned past it, no "every item"
  entry such as a schema change, at most ``DELTA_MAX`` items); those items are read again
  (``snapshot._apply``), as a snapshot held in memory is brought current;
* each column's key still exists with the same id, is ready, and has the same definition (a
  column that does not is dropped: its key is read from the database when a query names it);
* the file is whole: its magic line and format version, a CRC-32 of its header and of every
  array, each array's size, the ids strictly ascending, every type and string code in range.

**Files.**  Written to a temporary file in the same directory (``O_EXCL``, mode 0600), flushed
and ``fsync``-ed, then renamed over the organisation's file and the directory ``fsync``-ed,
inside the database transaction that records it: writers (several API processes) are serialised
by the record's row lock (SQLite's write lock), a file is never seen half-written, and an older
snapshot never replaces a newer one.  A file is at most the size of its snapshot in memory (so
within ``CORRAL_INDEX_SNAPSHOT_MB``); a larger one is not read.  Temporary files left by a process
that died are removed by the next save after an hour.

**Format 1** (no pickle): the line ``corral-index-snapshot\\n``; the header's length (uint64) and
CRC-32 (uint32), little-endian; the header, JSON; then the arrays, one after another, each as its
raw little-endian bytes (``ids``: S32, ``types``: int16, a number key's values: float64, a string
key's codes: int32 and its distinct values as one JSON array of strings, UTF-8).
"""

from __future__ import annotations

import json
import logging
import os
import struct
import threading
import time
import uuid
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from sqlalchemy import select, text
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session

from corral.core.index import changes, snapshot
from corral.core.index import keys as index_keys
from corral.core.index.keys import TXT_MAX, Key
from corral.core.index.snapshot import Column, Registry, Snapshot, _apply, consistent
from corral.db.engine import _IMMEDIATE
from corral.db.tables import IndexSnapshotFile

log = logging.getLogger(__name__)

FORMAT = 1
MAGIC = b"corral-index-snapshot\n"
_HEAD = struct.Struct("<QI")
_HEADER_MAX = 16 << 20
#: Temporary files older than this are a dead process's, removed by the next save.
STALE_SECONDS = 3600.0
_SUFFIX = ".snap"

_DTYPES = {"|S32": np.dtype("S32"), "<i2": np.dtype("<i2"), "<i4": np.dtype("<i4"),
           "<f8": np.dtype("<f8"), "|u1": np.dtype("u1")}


class Refused(Exception):
    """Why a file is not used (logged; the snapshot is then built from the database)."""


def path_of(directory: Path, org_id: uuid.UUID) -> Path:
    return directory / f"{org_id}{_SUFFIX}"


def listed(directory: Path) -> list[uuid.UUID]:
    """The organisations with a file in ``directory``, largest file first."""
    found: list[tuple[int, uuid.UUID]] = []
    try:
        entries = list(directory.glob(f"*{_SUFFIX}"))
    except OSError:
        return []
    for entry in entries:
        try:
            found.append((entry.stat().st_size, uuid.UUID(entry.name.removesuffix(_SUFFIX))))
        except (OSError, ValueError):  # gone meanwhile, or not one of ours
            continue
    return [org_id for _, org_id in sorted(found, key=lambda f: (-f[0], f[1]))]


def _revision(s: Session) -> str | None:
    """The database's schema revision (None: not a migrated database)."""
    try:
        with s.begin_nested():
            return s.execute(text("SELECT version_num FROM alembic_version")).scalar()
    except SQLAlchemyError:
        return None


def _record(s: Session, org_id: uuid.UUID) -> tuple[int, str] | None:
    row = s.execute(select(IndexSnapshotFile.seq, IndexSnapshotFile.token)
                    .where(IndexSnapshotFile.org_id == org_id)).first()
    return None if row is None else (int(row[0]), str(row[1]))


# -- saving -----------------------------------------------------------------------------------------


@dataclass
class _State:
    """What is saved of a snapshot, taken under its lock (the arrays are never changed in place
    once a query can see them: ``_apply`` and ``load_key`` make new ones)."""

    org_id: uuid.UUID
    seq: int
    ids: Any
    types: Any
    type_names: list[str]
    columns: list[tuple[Key, bool, Any, list[str]]]


def _state(snap: Snapshot) -> _State:
    with snap.lock:
        columns = [(snap.keys[kid], c.numeric, c.values, list(c.words))
                   for kid, c in snap.columns.items() if kid in snap.keys and snap.keys[kid].ready]
        snap.applied = 0
        return _State(snap.org_id, snap.seq, snap.ids, snap.types, list(snap.type_names), columns)


def _write(directory: Path, state: _State, token: str, revision: str | None) -> Path:
    """The state as a temporary file in ``directory``, flushed to disk; its path."""
    arrays: list[tuple[str, Any]] = [("ids", np.ascontiguousarray(state.ids, dtype="S32")),
                                     ("types", np.ascontiguousarray(state.types, dtype="<i2"))]
    columns: list[dict[str, Any]] = []
    for key, numeric, values, words in state.columns:
        arrays.append((f"v{key.id}", np.ascontiguousarray(values, dtype="<f8" if numeric else "<i4")))
        if not numeric:
            blob = json.dumps(words, ensure_ascii=True).encode("ascii")
            arrays.append((f"w{key.id}", np.frombuffer(blob, dtype="u1")))
        columns.append({"key_id": key.id, "name": key.name, "numeric": numeric,
                        "definition": index_keys.definition(key.name, key.entry)})
    header = json.dumps({
        "format": FORMAT, "org_id": str(state.org_id), "seq": state.seq, "token": token,
        "revision": revision, "txt_max": TXT_MAX, "items": int(state.ids.shape[0]),
        "type_names": state.type_names, "columns": columns,
        "arrays": [{"name": name, "dtype": a.dtype.str, "shape": list(a.shape),
                    "crc": zlib.crc32(memoryview(a).cast("B"))} for name, a in arrays],
    }).encode()
    directory.mkdir(mode=0o700, parents=True, exist_ok=True)
    tmp = directory / f".{state.org_id}.{os.getpid()}.{token}.tmp"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(MAGIC)
            f.write(_HEAD.pack(len(header), zlib.crc32(header)))
            f.write(header)
            for _, a in arrays:
                f.write(memoryview(a).cast("B"))
            f.flush()
            os.fsync(f.fileno())
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return tmp


def _sync_dir(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _sweep(directory: Path) -> None:
    """Remove temporary files a process that died left (older than ``STALE_SECONDS``)."""
    now = time.time()
    for tmp in directory.glob(".*.tmp"):
        try:
            if now - tmp.stat().st_mtime > STALE_SECONDS:
                tmp.unlink()
        except OSError:
            pass


def save(reg: Registry, org_id: uuid.UUID) -> bool:
    """Save the organisation's snapshot to its file, unless a file as recent is recorded; True
    when a file was written.  Errors are logged, never raised: a file only saves time."""
    directory = reg.directory
    with reg.lock:
        snap = reg.snapshots.get(org_id)
    if directory is None or snap is None:
        return False
    try:
        state = _state(snap)
        final = path_of(directory, org_id)
        with Session(reg.engine) as s:
            have = _record(s, org_id)
            revision = _revision(s)
        with reg.lock:
            refused = org_id in reg.refused
        if have is not None and have[0] >= state.seq and final.exists() and not refused:
            return False
        directory.mkdir(mode=0o700, parents=True, exist_ok=True)
        _sweep(directory)
        token = uuid.uuid4().hex
        started = time.perf_counter()
        tmp = _write(directory, state, token, revision)
        try:
            with Session(reg.engine) as s:
                if s.get_bind().dialect.name == "sqlite":
                    s.connection(execution_options={_IMMEDIATE: True})
                insert_ = pg_insert if s.get_bind().dialect.name == "postgresql" else sqlite_insert
                upsert = insert_(IndexSnapshotFile).values(org_id=org_id, seq=state.seq, token=token)
                upsert = upsert.on_conflict_do_update(
                    index_elements=[IndexSnapshotFile.org_id],
                    set_={"seq": upsert.excluded.seq, "token": upsert.excluded.token},
                    where=IndexSnapshotFile.seq <= upsert.excluded.seq,
                )
                if s.execute(upsert.returning(IndexSnapshotFile.token)).scalar() != token:
                    s.rollback()  # another process recorded a later snapshot meanwhile
                    return False
                os.replace(tmp, final)  # under the record's lock: the last recorded is the last renamed
                _sync_dir(directory)
                s.commit()
            with reg.lock:
                reg.refused.discard(org_id)
        finally:
            tmp.unlink(missing_ok=True)
        log.info("index snapshot of organisation %s saved at sequence %d (%d items, %d keys, %.0f MiB) "
                 "in %.2f s", org_id, state.seq, state.ids.shape[0], len(state.columns),
                 final.stat().st_size / 2**20, time.perf_counter() - started)
        return True
    except OSError as exc:  # e.g. the directory not writable: the next process builds instead
        log.warning("index snapshot of organisation %s not saved to %s: %s", org_id, directory, exc)
        return False
    except Exception:
        log.exception("index snapshot of organisation %s not saved", org_id)
        return False


def save_later(reg: Registry, org_id: uuid.UUID) -> None:
    """``save`` in a thread of its own (once at a time for an organisation)."""
    with reg.lock:
        if org_id in reg.saving:
            return
        reg.saving.add(org_id)

    def run() -> None:
        try:
            save(reg, org_id)
        finally:
            with reg.lock:
                reg.saving.discard(org_id)

    threading.Thread(target=run, name=f"index-snapshot-save-{org_id}", daemon=True).start()


# -- loading ----------------------------------------------------------------------------------------


def _header(f: Any, size: int, limit: int) -> dict[str, Any]:
    if size > limit:
        raise Refused(f"{size} bytes, more than the snapshots' limit of {limit}")
    if f.read(len(MAGIC)) != MAGIC:
        raise Refused("not an index snapshot file")
    head = f.read(_HEAD.size)
    if len(head) != _HEAD.size:
        raise Refused("truncated")
    length, crc = _HEAD.unpack(head)
    if length > _HEADER_MAX:
        raise Refused("header too large")
    raw = f.read(length)
    if len(raw) != length or zlib.crc32(raw) != crc:
        raise Refused("header truncated or corrupt")
    try:
        header = json.loads(raw)
    except ValueError as exc:
        raise Refused("header not JSON") from exc
    if not isinstance(header, dict) or header.get("format") != FORMAT:
        raise Refused(f"format {header.get('format') if isinstance(header, dict) else '?'}, "
                      f"not {FORMAT}")
    return header


def _arrays(f: Any, header: dict[str, Any], remaining: int) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for spec in header["arrays"]:
        dtype = _DTYPES.get(spec["dtype"])
        shape = spec["shape"]
        if dtype is None or not isinstance(shape, list) or len(shape) != 1 or shape[0] < 0:
            raise Refused(f"array {spec.get('name')!r}: unexpected type or shape")
        if int(shape[0]) * dtype.itemsize > remaining:  # before allocating what the header says
            raise Refused("truncated")
        a: Any = np.empty(int(shape[0]), dtype=dtype)
        view = memoryview(a).cast("B")
        if f.readinto(view) != view.nbytes:
            raise Refused("truncated")
        remaining -= view.nbytes
        if zlib.crc32(view) != spec["crc"]:
            raise Refused(f"array {spec['name']!r} corrupt (CRC)")
        out[spec["name"]] = a
    if remaining:
        raise Refused("trailing bytes")
    return out


def _snapshot(header: dict[str, Any], arrays: dict[str, Any], org_id: uuid.UUID,
              keys: dict[int, Key]) -> Snapshot:
    """The snapshot the file holds, with the columns whose keys are unchanged; checked whole."""
    n = int(header["items"])
    ids, types = arrays["ids"], arrays["types"].astype(np.int16)
    type_names = [str(t) for t in header["type_names"]]
    if ids.shape[0] != n or types.shape[0] != n:
        raise Refused("ids or types of the wrong length")
    if n > 1 and not np.all(ids[1:] > ids[:-1]):
        raise Refused("ids not ascending")
    if n and (int(types.min()) < 0 or int(types.max()) >= len(type_names)):
        raise Refused("an item type out of range")
    snap = Snapshot(org_id, int(header["seq"]), ids, types, type_names)
    now = time.monotonic()
    for spec in header["columns"]:
        key = keys.get(spec["key_id"])
        numeric = bool(spec["numeric"])
        if (key is None or not key.ready or key.numeric != numeric or key.name != spec["name"]
                or index_keys.definition(key.name, key.entry) != spec["definition"]):
            log.info("index snapshot file of organisation %s: key %s (%s) changed since, left out",
                     org_id, spec["name"], spec["key_id"])
            continue
        values = arrays[f"v{key.id}"]
        if values.shape[0] != n:
            raise Refused(f"key {key.name}: values of the wrong length")
        if numeric:
            column = Column(True, values.astype(np.float64))
        else:
            words = json.loads(arrays[f"w{key.id}"].tobytes())
            if not isinstance(words, list) or not all(isinstance(w, str) for w in words):
                raise Refused(f"key {key.name}: values not strings")
            codes = {w: i for i, w in enumerate(words)}
            if len(codes) != len(words):
                raise Refused(f"key {key.name}: a value twice")
            codes32 = values.astype(np.int32)
            if n and (int(codes32.min()) < -1 or int(codes32.max()) >= len(words)):
                raise Refused(f"key {key.name}: a code out of range")
            column = Column(False, codes32, words, codes)
        column.used = now
        snap.columns[key.id] = column
        snap.keys[key.id] = key
    return snap


def load(reg: Registry, org_id: uuid.UUID, wanted: list[Key], first: int = 0) -> Snapshot | None:
    """The organisation's snapshot from its file, brought current and kept, then ``wanted``'s
    keys the file lacks read from the database (``Registry._fill``); None when there is no file
    to use (why is logged)."""
    directory = reg.directory
    if directory is None:
        return None
    path = path_of(directory, org_id)
    started = time.perf_counter()
    try:
        with open(path, "rb") as f:
            size = os.fstat(f.fileno()).st_size
            header = _header(f, size, reg.limit)
            if header.get("org_id") != str(org_id):
                raise Refused("another organisation's file")
            with Session(reg.engine) as s, consistent(s):
                recorded = _record(s, org_id)
                if recorded != (header.get("seq"), header.get("token")):
                    raise Refused("not the file this database recorded (another database's, or a "
                                  "history it no longer has)")
                if header.get("revision") != _revision(s) or header.get("txt_max") != TXT_MAX:
                    raise Refused("saved under another schema revision")
                seq = int(header["seq"])
                now = changes.current(s, org_id)
                if seq > now:
                    raise Refused(f"at sequence {seq}, ahead of the database's {now}")
                changed = (np.zeros(0, dtype="S32") if seq == now
                           else changes.since(s, org_id, seq, now, snapshot.DELTA_MAX))
                if changed is None:
                    raise Refused(f"at sequence {seq}: the change log cannot bring it to {now} "
                                  "(pruned, a change of every item, or too many items)")
                keys = {k.id: k for k in index_keys.load(s, org_id)}
                arrays = _arrays(f, header, size - f.tell())
                snap = _snapshot(header, arrays, org_id, keys)
                with reg.lock:
                    others = sum(o.nbytes() for i, o in reg.snapshots.items() if i != org_id)
                if others + snap.nbytes() > reg.limit:
                    raise Refused("does not fit in the snapshots' memory beside the others")
                if seq < now:
                    _apply(s, snap, changed, now)
                snap.applied = len(changed)
                snap.from_file = True
                loaded = time.perf_counter() - started
                need = [k for k in wanted[:first] if k.id not in snap.columns]  # the query's
                missing = need + [k for k in wanted[first:] if k.id not in snap.columns]
                reg._fill(s, org_id, snap, missing, len(need), others)
    except FileNotFoundError:
        return None
    except Refused as why:
        log.warning("index snapshot file %s ignored: %s", path, why)
    except (OSError, ValueError, KeyError, TypeError) as exc:
        log.warning("index snapshot file %s ignored: unreadable (%s: %s)", path, exc.__class__.__name__, exc)
    else:
        log.info("index snapshot of organisation %s loaded from its file in %.2f s (sequence %d, %d "
                 "changed items applied to bring it to %d; %d items, %d keys, %d more read)", org_id,
                 loaded, int(header["seq"]), len(changed), now, len(snap),
                 len(snap.columns) - len(missing), len(missing))
        return snap
    with reg.lock:  # the next save writes over it, whatever the record says
        reg.refused.add(org_id)
    return None
