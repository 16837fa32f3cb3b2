"""A large manifest read in a child process (``manifest_pipe``) yields exactly what the planner's
own reading yields: the same entries and entry errors in the same order, the same unreadable
manifest's message after the same entries, and the rest read in process when the child dies."""

from __future__ import annotations

import json
import os
import signal
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from corral.registration import manifest, manifest_pipe
from corral.registration.manifest import Entry, EntryError, ManifestUnreadable
from tests.registration.test_imports import api, wait, world  # noqa: F401 - fixtures
from tests.registration.test_manifest_fuzz import DOCUMENT, _mutate


def children() -> list[int]:
    """This process's manifest readers."""
    out = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            ppid = int(stat.read_text().rsplit(")", 1)[1].split()[1])
            cmdline = (stat.parent / "cmdline").read_bytes()
        except (OSError, ValueError, IndexError):
            continue
        if ppid == os.getpid() and b"manifest_pipe" in cmdline:
            out.append(int(stat.parent.name))
    return out


def wait_gone(pids: list[int]) -> None:
    deadline = time.monotonic() + 10
    while any(Path(f"/proc/{pid}").exists() and b"manifest_pipe" in _cmdline(pid) for pid in pids):
        assert time.monotonic() < deadline, f"the reader {pids} is still running"
        time.sleep(0.02)


def _cmdline(pid: int) -> bytes:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return b""


def read(items: Iterator[Entry | EntryError]) -> tuple[list[Entry | EntryError], str | None]:
    out: list[Entry | EntryError] = []
    try:
        for item in items:
            out.append(item)
    except ManifestUnreadable as exc:
        return out, exc.message
    return out, None


def both(path: Path, fmt: str = "json") -> tuple[list[Entry | EntryError], str | None]:
    """What the piped reader yields, asserted equal to the planner's own reading."""
    serial = read(manifest.iter_entries(path, fmt))  # type: ignore[arg-type]
    piped = read(manifest_pipe.iter_entries(path, fmt, min_bytes=0))  # type: ignore[arg-type]
    assert piped[1] == serial[1]
    assert [type(x) for x in piped[0]] == [type(x) for x in serial[0]]
    assert piped[0] == serial[0]
    for a, b in zip(piped[0], serial[0], strict=True):  # field by field, types too (1 is 1.0 in ==)
        assert [(k, type(v), repr(v)) for k, v in vars(a).items()] == [
            (k, type(v), repr(v)) for k, v in vars(b).items()]
    return piped


def entry(i: int, **extra: Any) -> dict[str, Any]:
    return {"objectUrl": f"s3://b/runs/{i:08d}.jpg", "title": f"frame {i}",
            "imageMetadata": {"width": 1920, "height": 1080},
            "clientMetadata": {"camera": f"cam-{i % 16}", "score": i % 100 / 10, "n": i}, **extra}


def test_large_manifests_are_read_in_a_child_and_small_ones_here(tmp_path: Path) -> None:
    path = tmp_path / "m.json"
    path.write_text(json.dumps({"images": [entry(i) for i in range(50_000)]}))  # more than the pipe holds
    items = manifest_pipe.iter_entries(path, "json", min_bytes=path.stat().st_size + 1)
    assert next(items).seq == 0 and children() == []
    items = manifest_pipe.iter_entries(path, "json", min_bytes=path.stat().st_size)
    assert next(items).seq == 0 and len(children()) == 1
    assert len(list(items)) == 49_999
    assert children() == []


def test_the_piped_entries_are_the_planners_own(tmp_path: Path) -> None:
    """Many runs of entries (each message holds 1,000), bad ones among them, other sections, the
    typed form with groups (``frame_info``), a fast reader's hand-over to the event parser
    half-way (a number beyond 64 bits), and CSV."""
    images = [entry(i) for i in range(4500)]
    images[17]["clientMetadata"] = "{not json"
    images[2500]["objectUrl"] = "relative/key"
    images[3999] = {"objectUrl": "s3://b/x.jpg", "bogus": 1}
    doc = {"skip_duplicate_urls": True, "images": images, "videos": [
        {"objectUrl": f"s3://b/{i}.mp4", "videoMetadata": {"fps": 25.0, "duration": 1, "width": 2, "height": 2}}
        for i in range(1200)],
        "dataItems": {"imageGroups": [{"title": f"g{i}", "images": [{"url": f"s3://b/g/{i}/{j}.png", "title": "t"}
                                                                   for j in range(3)]} for i in range(1500)]}}
    path = tmp_path / "m.json"
    path.write_text(json.dumps(doc))
    items, error = both(path)
    assert error is None and len(items) == 4500 + 1200 + 1500
    assert [i.seq for i in items] == list(range(len(items)))
    assert {i.where for i in items if isinstance(i, EntryError)} == {"images[17]", "images[2500]", "images[3999]"}
    assert any(isinstance(i, Entry) and i.frame_info for i in items)
    images[3000]["clientMetadata"]["big"] = 2**70  # the fast reader leaves the rest to the event parser
    path.write_text(json.dumps({"images": images}))
    items, error = both(path)
    assert error is None and len(items) == 4500
    rows = "ImageUrl,Title\n" + "".join(f"s3://b/{i}.jpg,t{i}\n" for i in range(2500)) + "no-scheme,x\n"
    (tmp_path / "m.csv").write_text(rows)
    items, error = both(tmp_path / "m.csv", "csv")
    assert error is None and len(items) == 2501 and isinstance(items[-1], EntryError)


@pytest.mark.parametrize("at", [0, 999, 1000, 2999, 3000])
def test_an_unreadable_manifest_fails_after_the_same_entries_with_the_same_message(tmp_path: Path, at: int) -> None:
    """A syntax error in the second half (or anywhere): every entry before it, then the error's
    line, column and byte offset, as the planner's own reading says them."""
    lines = [json.dumps(entry(i)) for i in range(3000)]
    lines.insert(at, '{"objectUrl": "s3://b/x.jpg", "title": oops}')
    path = tmp_path / "m.json"
    path.write_text('{"images": [\n' + ",\n".join(lines) + "\n]}")
    items, error = both(path)
    assert len(items) == at
    assert error is not None and f"at line {at + 2}, column 40" in error
    assert children() == []


def test_a_reader_that_dies_is_read_on_here(tmp_path: Path) -> None:
    """The child killed mid-way: the entries it did not send are read in process, the same."""
    path = tmp_path / "m.json"
    path.write_text(json.dumps({"images": [entry(i) for i in range(20_000)]}))
    expected = list(manifest.iter_entries(path, "json"))
    items = manifest_pipe.iter_entries(path, "json", min_bytes=0)
    got = [next(items) for _ in range(1500)]
    [pid] = children()
    os.kill(pid, signal.SIGKILL)
    got += list(items)
    assert got == expected


def test_a_reader_that_stops_answering_is_read_on_here(tmp_path: Path) -> None:
    """The child alive but silent (stopped: as one blocked or starved for good would be): the
    planner does not wait for it for ever. After ``stall_seconds`` of silence it is killed and the
    rest is read in process, the same entries; nothing of the reader is left."""
    path = tmp_path / "m.json"
    # more entries than the queue and the pipe hold together (64 + a few messages of 1,000), so
    # the child is still reading when it is stopped
    path.write_text(json.dumps({"images": [entry(i) for i in range(100_000)]}))
    expected = list(manifest.iter_entries(path, "json"))
    items = manifest_pipe.iter_entries(path, "json", min_bytes=0, stall_seconds=1)
    assert isinstance(items, manifest_pipe.PipedEntries)
    got = [next(items)]
    [pid] = children()
    os.kill(pid, signal.SIGSTOP)
    start = time.monotonic()
    got += list(items)
    assert got == expected
    assert items.fell_back == "stalled"
    assert time.monotonic() - start < 60
    wait_gone([pid])


@pytest.mark.parametrize("block_sigterm", [False, True])
def test_the_reader_ends_with_its_planners_process(tmp_path: Path, block_sigterm: bool) -> None:
    """SIGKILL of the process whose planner reads through a child: the child ends too, by the
    death signal it asked for (PR_SET_PDEATHSIG), or, with SIGTERM blocked in it (a signal mask
    is inherited), by its own check of its parent or its next write into the broken pipe."""
    import subprocess
    import sys

    path = tmp_path / "m.json"
    path.write_text(json.dumps({"images": [entry(i) for i in range(100_000)]}))
    script = (
        "import signal, sys, time\n"
        "from pathlib import Path\n"
        "from corral.registration import manifest_pipe\n"
        f"if {block_sigterm}:\n"
        "    signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGTERM})\n"
        "items = manifest_pipe.iter_entries(Path(sys.argv[1]), 'json', min_bytes=0)\n"
        "next(items)\n"
        "print(items.child.pid, flush=True)\n"
        "time.sleep(120)\n"
    )
    planner = subprocess.Popen([sys.executable, "-c", script, str(path)], stdout=subprocess.PIPE,
                               cwd=Path(__file__).resolve().parents[2])
    try:
        assert planner.stdout is not None
        pid = int(planner.stdout.readline())
        assert b"manifest_pipe" in _cmdline(pid)
    finally:
        planner.kill()
        planner.wait(10)
    wait_gone([pid])


def test_closing_the_entries_early_stops_the_reader(tmp_path: Path) -> None:
    path = tmp_path / "m.json"
    path.write_text(json.dumps({"images": [entry(i) for i in range(50_000)]}))
    items = manifest_pipe.iter_entries(path, "json", min_bytes=0)
    next(items)
    pids = children()
    assert len(pids) == 1
    items.close()  # type: ignore[attr-defined]
    wait_gone(pids)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(doc=DOCUMENT, ascii_only=st.booleans(), data=st.data())
def test_fuzz_the_piped_reader_is_the_planners_own(doc: Any, ascii_only: bool, data: st.DataObject) -> None:
    raw = _mutate(json.dumps(doc, ensure_ascii=ascii_only).encode("utf-8", "surrogatepass"), data.draw)
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "m.json"
        path.write_bytes(raw)
        both(path)


# -- through a job -------------------------------------------------------------------------------


def _import(api, alice, folder: str, body: str, ignore_errors: bool) -> dict[str, Any]:  # type: ignore[no-untyped-def]  # noqa: F811
    r = api.post("/api/v1/imports", params={"folder": folder, "integration": "s3-strict",
                                            "ignore_errors": str(ignore_errors).lower()},
                 content=body, headers=alice.bearer)
    assert r.status_code == 202, r.text
    status = wait(api, alice, r.json()["job_id"])
    return {k: v for k, v in status.items() if k not in ("job_id", "created_at", "updated_at", "finished_at",
                                                          "started_at", "links")}


def _here_then_piped(api, alice, settings, monkeypatch, body: str, ignore_errors: bool) -> Iterator[tuple[str, Any]]:  # type: ignore[no-untyped-def]  # noqa: F811
    """``body`` imported twice into folder ``here``, read by the planner, then twice into
    ``piped``, read by a child (the pipe taken for any manifest): each folder with its two runs'
    results, once its readers are gone."""
    for folder in ("here", "piped"):
        assert api.post("/api/v1/folders", json={"path": folder}, headers=alice.bearer).status_code == 201
        if folder == "piped":
            # the app's worker reads this settings object at each plan (frozen: set in place)
            monkeypatch.setitem(settings.__dict__, "manifest_pipe_min_bytes", 1)
        before = set(children())
        runs = [_import(api, alice, folder, body, ignore_errors) for _ in range(2)]
        wait_gone(list(set(children()) - before))
        yield folder, runs


@pytest.mark.parametrize("ignore_errors", [True, False])
def test_an_import_read_by_a_child_ends_as_one_read_by_the_planner(api, world, db, settings, monkeypatch, ignore_errors) -> None:  # type: ignore[no-untyped-def]  # noqa: F811
    """The same manifest (bad entries in its second half, a duplicate among them) imported read
    by the planner itself and read by a child: the same counts, errors, messages and status, on
    both databases, the first import and the all-duplicate second one."""
    alice, bucket = world
    api.put("/api/v1/metadata-schema", json={"keys": {"score": {"type": "number"}}}, headers=alice.bearer)
    sized = {"width": 10, "height": 20}
    entries: list[dict[str, Any]] = [
        {"objectUrl": f"s3://{bucket}/p/{i}.png", "clientMetadata": {"score": i}, "imageMetadata": sized}
        for i in range(6000)]
    entries[4100]["clientMetadata"] = {"score": "high"}  # the schema refuses it
    entries[4500] = {"objectUrl": "no-scheme.png"}  # the manifest reader refuses it
    entries[5999] = {"objectUrl": f"s3://{bucket}/p/5999.png"}  # strict: no sizes
    body = json.dumps({"skip_duplicate_urls": True, "images": entries})
    seen = []
    started: list[Path] = []
    start = manifest_pipe._start

    def counted(*args: Any) -> Any:
        started.append(args[0])
        return start(*args)

    monkeypatch.setattr(manifest_pipe, "_start", counted)
    for _, runs in _here_then_piped(api, alice, settings, monkeypatch, body, ignore_errors):
        seen.append(runs)
    assert len(started) == 2  # the second folder's two imports, each read by a child
    assert seen[0] == seen[1]
    first, second = seen[1]
    for run in (first, second):  # the manifest reader's error first, then the batches' in order
        assert [e["where"] for e in run["errors"]] == ["images[4500]", "images[4100]", "images[5999]"]
    if ignore_errors:
        assert (first["status"], first["registered"], first["failed"]) == ("DONE", 5997, 3)
        assert (second["status"], second["registered"], second["skipped"], second["failed"]) == ("DONE", 0, 5997, 3)
    else:
        assert first["status"] == second["status"] == "ERROR" and first["registered"] == 0


def test_an_import_whose_reader_stops_answering_ends_as_one_read_by_the_planner(api, world, db, settings, monkeypatch) -> None:  # type: ignore[no-untyped-def]  # noqa: F811
    """The job's reader stopped (SIGSTOP) as soon as it starts, as one blocked for good would be:
    the planner stops it after ``STALL_SECONDS`` and reads the manifest itself; the import ends
    as one read by the planner (same status, counts and errors), and no reader is left."""
    alice, bucket = world
    entries: list[dict[str, Any]] = [
        {"objectUrl": f"s3://{bucket}/p/{i}.png", "imageMetadata": {"width": 10, "height": 20}} for i in range(3000)]
    entries[2500] = {"objectUrl": "no-scheme.png"}
    body = json.dumps({"skip_duplicate_urls": True, "images": entries})
    start = manifest_pipe._start
    stopped: list[int] = []

    def stop_at_once(*args: Any) -> Any:
        child, fd = start(*args)
        os.kill(child.pid, signal.SIGSTOP)
        stopped.append(child.pid)
        return child, fd

    seen = []
    for folder in ("here", "stalled"):
        assert api.post("/api/v1/folders", json={"path": folder}, headers=alice.bearer).status_code == 201
        if folder == "stalled":
            monkeypatch.setattr(manifest_pipe, "_start", stop_at_once)
            monkeypatch.setattr(manifest_pipe, "STALL_SECONDS", 1.0)
            monkeypatch.setitem(settings.__dict__, "manifest_pipe_min_bytes", 1)
        seen.append(_import(api, alice, folder, body, True))
    assert len(stopped) == 1
    wait_gone(stopped)
    assert seen[0] == seen[1]
    assert (seen[1]["status"], seen[1]["registered"], seen[1]["failed"]) == ("DONE", 2999, 1)


def _readers_of(pid: int) -> list[int]:
    out = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            ppid = int(stat.read_text().rsplit(")", 1)[1].split()[1])
        except (OSError, ValueError, IndexError):
            continue
        if ppid == pid and b"manifest_pipe" in _cmdline(int(stat.parent.name)):
            out.append(int(stat.parent.name))
    return out


@pytest.mark.slow
def test_a_worker_killed_while_its_child_reads_leaves_no_reader_and_resumes(db, settings, make_user, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    """SIGKILL of the real ``corral worker`` mid-import while a child reads its manifest: the child
    ends with it (no reader left behind), and a restarted worker's planner, reading through a
    child of its own, skips the committed batches and registers the rest, each file once."""
    import io

    from sqlalchemy import func, select

    from corral.db.tables import Item
    from corral.jobs import queue
    from corral.registration import service
    from tests.jobs.test_durability import _wait
    from tests.registration.test_durability import _run_to_the_end, _setup, _spawn

    monkeypatch.setenv("CORRAL_MANIFEST_PIPE_MIN_BYTES", "1")
    n = 100_000  # more than the planner's process queues (_QUEUED runs), so the child is still reading
    admin, manifest_bytes = _setup(db, settings, make_user("alice@x.io"), n)
    job_id = service.start_import(db, settings, admin, folder="f", integration="strict",
                                  manifest=io.BytesIO(manifest_bytes), skip_duplicate_urls=True)
    from corral.db.tables import Job

    with db.write() as s:  # small batches, so the kill lands mid-job
        job = s.get(Job, job_id)
        job.params = {**job.params, "batch_size": 1000}

    def items() -> int:
        with db.read() as s:
            return s.scalar(select(func.count()).select_from(Item)) or 0

    first = _spawn(settings)
    try:
        _wait(lambda: items() >= 2000, 60, "the first worker to register some files")
        readers = _readers_of(first.pid)
    finally:
        first.send_signal(signal.SIGKILL)
        first.wait(10)
    assert items() < n, "the kill came too late to test anything"
    assert readers, "the manifest was not read by a child"
    wait_gone(readers)
    _run_to_the_end(db, settings, admin, job_id, signal.SIGTERM)
    with db.read() as s:
        assert queue.get_job(s, admin.org_id, job_id).status == "DONE"
        assert s.scalar(select(func.count()).select_from(Item)) == n  # nothing lost
        assert s.scalar(select(func.count(func.distinct(Item.url_hash)))) == n  # nothing twice


# -- batches prepared by the reader (jobs._ChildPlanner) ---------------------------------------------

#: Entries a strict batch holds in these tests (``jobs.INLINE_BATCH``, 5,000, set down by ``small``):
#: the same batches, errors across them and hand-overs, from a tenth of the manifest.  The planner
#: reads it when it plans, and hands it to the reader's process with the batches' context
#: (``_ChildPlanner``'s ``size``), so both sides batch alike.
_BATCH = 500


@pytest.fixture
def small(monkeypatch: pytest.MonkeyPatch) -> None:
    from corral.registration import jobs

    monkeypatch.setattr(jobs, "INLINE_BATCH", _BATCH)


_SCHEMA = {"camera": {"type": "varchar"}, "score": {"type": "number"}, "reviewed": {"type": "boolean"},
           "weather": {"type": "enum", "values": ["clear", "fog"]}, "captured_at": {"type": "datetime"}}


def _rich_manifest(bucket: str, n: int) -> str:
    """Titles, five typed keys, an image group (parts), a duplicate URL, entry errors and file
    errors (schema, strict sizes, out of scope) in several batches."""
    sized = {"width": 10, "height": 20}
    images: list[dict[str, Any]] = [
        {"objectUrl": f"s3://{bucket}/p/{i:06d}.png", "title": f"image {i}", "imageMetadata": sized,
         "clientMetadata": {"camera": f"cam-{i % 7}", "score": i / 4, "reviewed": i % 2 == 0,
                            "weather": ("clear", "fog")[i % 2], "captured_at": f"2026-01-{1 + i % 28:02d}T10:00:00Z",
                            "free": {"nested": [i, "x"]}}}
        for i in range(n)]
    # (batches of ``_BATCH``: the first holds 3, the second the rest and a duplicate of the first's)
    images[3] = {"objectUrl": "no-scheme.png"}  # the manifest reader refuses it
    images[510]["clientMetadata"] = {"score": "high"}  # the schema refuses it
    images[700] = {"objectUrl": f"s3://{bucket}/p/700.png"}  # strict: no sizes
    images[701] = {"objectUrl": "s3://elsewhere/p/701.png", "imageMetadata": sized}  # out of scope
    images[900] = dict(images[10])  # a duplicate URL
    groups = [{"title": "group", "clientMetadata": {"camera": "g"}, "images": [
        {"url": f"s3://{bucket}/g/{k}.png", "title": f"frame {k}", "imageMetadata": {"width": 4, "height": 4}}
        for k in range(3)]}]
    return json.dumps({"skip_duplicate_urls": True, "images": images, "imageGroups": groups})


def _stored(db, folder: str) -> dict[str, Any]:  # type: ignore[no-untyped-def]
    """Every item of the folder, its parts, its projected values and its listing document, keyed
    by URL (the ids, job and folder, and timestamps, which differ by construction, left out)."""
    from sqlalchemy import select

    from corral.core import item_docs
    from corral.db.tables import Folder, Item, ItemMeta, ItemPart

    out: dict[str, Any] = {}
    # An upsert clears the listing documents it changes, and an idle worker writes them again
    # later: write the missing ones now, so both sides compare what a listing reads, whenever
    # the idle worker got to them.
    with db.write() as s:
        item_docs.fill_all(s.connection())
    with db.read() as s:
        folder_id = s.scalar(select(Folder.id).where(Folder.name == folder, Folder.parent_id.is_(None)))
        items = s.execute(select(Item).where(Item.folder_id == folder_id)).scalars().all()
        for item in items:
            parts = s.execute(select(ItemPart.position, ItemPart.url, ItemPart.title, ItemPart.media)
                              .where(ItemPart.item_id == item.id).order_by(ItemPart.position)).all()
            values = s.execute(select(ItemMeta.key_id, ItemMeta.num, ItemMeta.txt)
                               .where(ItemMeta.item_id == item.id).order_by(ItemMeta.key_id)).all()
            doc = json.loads(item.doc) if isinstance(item.doc, (str, bytes)) else item.doc
            if doc is not None:
                for k in ("id", "folder_id", "job_id", "created_at", "updated_at"):
                    doc.pop(k, None)
            out[item.url_hash] = (item.item_type, item.name, item.url, item.file_size, item.mime_type, item.media,
                                  item.client_metadata, item.staged, doc, [tuple(p) for p in parts],
                                  [tuple(v) for v in values])
    return out


def _count_prepared(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """The sequence numbers of the batches the reader's process prepared, in order."""
    from corral.registration import jobs

    prepared: list[int] = []
    submit = jobs._InlineWriter.submit_prepared

    def counted(self: Any, seq: int, payload: Any) -> None:
        prepared.append(seq)
        submit(self, seq, payload)

    monkeypatch.setattr(jobs._InlineWriter, "submit_prepared", counted)
    return prepared


@pytest.mark.parametrize("ignore_errors", [True, False])
def test_batches_prepared_by_the_reader_store_what_the_planners_own_would(small, api, world, db, settings, monkeypatch, ignore_errors) -> None:  # type: ignore[no-untyped-def]  # noqa: F811
    """The same manifest imported with the planner doing its own work and with the reader's
    process preparing the batches (``_ChildPlanner``): the same items, parts, projected values,
    listing documents, counts, errors and status, the first import and the second."""
    alice, bucket = world
    r = api.put("/api/v1/metadata-schema", json={"keys": _SCHEMA}, headers=alice.bearer)
    assert r.status_code == 200, r.text
    body = _rich_manifest(bucket, 1200)  # three batches
    prepared = _count_prepared(monkeypatch)
    seen = []
    for folder, runs in _here_then_piped(api, alice, settings, monkeypatch, body, ignore_errors):
        seen.append((runs, _stored(db, folder)))
        if folder == "here":
            assert prepared == []
    # (all or nothing: the child stops building at the first error, its batches still come.)
    # The second import skips duplicates into a folder that holds the first's items: the reader
    # only reads, and the planner checks and looks up (``jobs._duplicates_likely``); when the
    # first failed (all or nothing), the folder is empty and the reader prepares again.
    assert prepared == ([1, 2, 3] if ignore_errors else [1, 2, 3, 1, 2, 3])
    (here, here_items), (piped, piped_items) = seen
    assert here == piped
    assert here_items == piped_items
    assert [e["where"] for e in piped[0]["errors"]] == [
        "images[3]", "images[510]", "images[700]", "images[701]"]
    if ignore_errors:
        # 1,201 entries: 4 refused, one a duplicate of an earlier batch's
        assert (piped[0]["status"], piped[0]["registered"], piped[0]["skipped"]) == ("DONE", 1196, 1)
        assert (piped[1]["status"], piped[1]["registered"], piped[1]["skipped"]) == ("DONE", 0, 1197)
        assert len(piped_items) == 1196 and any(v[9] for v in piped_items.values())
        assert sum(len(v[10]) for v in piped_items.values()) >= 5 * 1100  # values projected
    else:
        assert piped[0]["status"] == "ERROR" and piped_items == {}


def test_a_url_upserted_in_its_own_batch_ends_alike_read_here_or_prepared_by_the_reader(api, world, db, settings, monkeypatch) -> None:  # type: ignore[no-untyped-def]  # noqa: F811
    """upsert_metadata with URLs met twice in one batch: each item keeps its first entry's title
    and ends with its last entry's metadata and values, whether the planner prepared the batch or
    the reader's process did (whose rows cross built with the first entry's metadata)."""

    alice, bucket = world
    r = api.put("/api/v1/metadata-schema", json={"keys": _SCHEMA}, headers=alice.bearer)
    assert r.status_code == 200, r.text
    sized = {"width": 10, "height": 20}
    images: list[dict[str, Any]] = [
        {"objectUrl": f"s3://{bucket}/p/{i}.png", "title": f"image {i}", "imageMetadata": sized,
         "clientMetadata": {"score": i, "camera": "first"}} for i in range(20)]
    images += [{"objectUrl": f"s3://{bucket}/p/{i}.png", "title": "again", "imageMetadata": sized,
                "clientMetadata": {"score": 100 + i, "camera": "again"}} for i in range(0, 20, 2)]
    body = json.dumps({"skip_duplicate_urls": True, "upsert_metadata": True, "images": images})
    prepared = _count_prepared(monkeypatch)
    seen = [(runs, _stored(db, folder)) for folder, runs in _here_then_piped(api, alice, settings, monkeypatch,
                                                                            body, False)]
    assert prepared == [1]  # the piped folder's first import (into an empty folder)
    (here, here_items), (piped, piped_items) = seen
    assert here == piped and here_items == piped_items
    assert [(run["status"], run["registered"], run["updated"]) for run in here] == [("DONE", 20, 10), ("DONE", 0, 30)]
    by_name = {v[1]: (v[6], sorted(n for _, n, _ in v[10] if n is not None)) for v in piped_items.values()}
    assert sorted(by_name) == sorted(f"image {i}" for i in range(20))
    assert by_name["image 4"] == ({"score": 104.0, "camera": "again"}, [104.0])
    assert by_name["image 5"] == ({"score": 5.0, "camera": "first"}, [5.0])


def test_a_reader_killed_while_it_prepares_is_prepared_on_here(small, api, world, db, settings, monkeypatch) -> None:  # type: ignore[no-untyped-def]  # noqa: F811
    """The reader's process killed once its first batch arrived: the planner reads and prepares
    the rest itself, from the entry after that batch; the import stores what one prepared
    wholly by the planner stores."""
    from corral.registration import jobs

    alice, bucket = world
    assert api.put("/api/v1/metadata-schema", json={"keys": _SCHEMA}, headers=alice.bearer).status_code == 200
    body = _rich_manifest(bucket, 8 * _BATCH)  # eight batches: more than the pipe and queue hold
    readers: list[Any] = []
    prepared: list[int] = []
    own: list[int] = []
    start, submit, submit_own = manifest_pipe._start, jobs._InlineWriter.submit_prepared, jobs._InlineWriter.submit

    def started(*args: Any) -> Any:
        child, fd = start(*args)
        readers.append(child)
        return child, fd

    def kill_then_submit(self: Any, seq: int, payload: Any) -> None:
        if not prepared:
            readers[-1].kill()
            readers[-1].wait()
        prepared.append(seq)
        submit(self, seq, payload)

    def submitted_here(self: Any, seq: int, entries: list[Any]) -> None:
        own.append(seq)
        submit_own(self, seq, entries)

    monkeypatch.setattr(manifest_pipe, "_start", started)
    monkeypatch.setattr(jobs._InlineWriter, "submit_prepared", kill_then_submit)
    monkeypatch.setattr(jobs._InlineWriter, "submit", submitted_here)
    seen = []
    for folder in ("here", "killed"):
        assert api.post("/api/v1/folders", json={"path": folder}, headers=alice.bearer).status_code == 201
        if folder == "killed":
            own.clear()
            monkeypatch.setitem(settings.__dict__, "manifest_pipe_min_bytes", 1)
        seen.append((_import(api, alice, folder, body, True), _stored(db, folder)))
    assert len(readers) == 1 and readers[0].returncode is not None
    # the first batch (and, at most, those the pipe held when it was killed) prepared by the reader,
    # the rest here, numbered on
    assert prepared[0] == 1 and own and own == list(range(len(prepared) + 1, 9))
    (here, here_items), (killed, killed_items) = seen
    assert here == killed and here_items == killed_items
    assert (killed["status"], killed["registered"]) == ("DONE", len(killed_items))


def test_the_reader_builds_every_items_rows_without_a_look_up(api, world, db, settings, monkeypatch) -> None:  # type: ignore[no-untyped-def]  # noqa: F811
    """The reader's process prepares only when the folder held no items as the import started
    (``jobs._duplicates_likely``), so it makes no look-up of duplicates before the lock: every
    item crosses with its rows, even one whose URL the folder holds by then (``_commit_batch``
    decides under the lock; the stored result is the test above's).  Given a database URL, as
    the planner once passed it, it still looks nothing up."""
    from corral.registration import jobs

    alice, bucket = world
    body = json.dumps({"skip_duplicate_urls": True, "images": [
        {"objectUrl": f"s3://{bucket}/p/{i:06d}.png", "imageMetadata": {"width": 1, "height": 1}}
        for i in range(30)]})
    contexts: list[tuple[str, Any, str]] = []

    def kept(self: Any, preparer: str, context: Any, *, private: str = "") -> bool:
        contexts.append((preparer, context, private))
        return False  # the planner does its own work this time

    monkeypatch.setattr(manifest_pipe.PipedEntries, "prepare", kept)
    assert api.post("/api/v1/folders", json={"path": "f"}, headers=alice.bearer).status_code == 201
    monkeypatch.setitem(settings.__dict__, "manifest_pipe_min_bytes", 1)
    assert _import(api, alice, "f", body, False)["registered"] == 30
    (preparer, context, private), = contexts
    assert preparer.endswith(":_ChildPlanner") and private == ""  # nothing private is sent
    url = db.engine.url.render_as_string(hide_password=False)
    planner = jobs._ChildPlanner(*context, url)  # the folder holds all 30 URLs now
    path = Path(tempfile.mkdtemp()) / "m.json"
    path.write_text(body)
    out = [o for e in manifest.iter_entries(path, "json") for o in planner.feed(e)] + planner.finish()
    (seq, n, (encoded, meta, _)), = out
    assert (seq, n) == (1, 30) and meta is not None
    # (client_metadata, row, parts, seq, where): built rows, never a Prepared to look up (8 long)
    assert [len(item) for items in encoded for item in items] == [5] * 30


# -- the spare reader (manifest_pipe.hold) -----------------------------------------------------------


@pytest.fixture
def soon(monkeypatch: pytest.MonkeyPatch) -> None:
    """Spares started at once when wanted (not ``_SPARE_AFTER_SECONDS`` later)."""
    monkeypatch.setattr(manifest_pipe, "_SPARE_AFTER_SECONDS", 0.0)
    _due_now()


def _due_now() -> None:
    """The process's keeper outlives each test: no spare waits for the retry time an earlier
    test's dead or failed spare set (``_SPARE_RETRY_SECONDS``, 30 s of nothing to test)."""
    keeper = manifest_pipe._keeper
    with keeper._cond:
        keeper._not_before = 0.0


def _spare_pid(timeout: float = 60) -> int:
    deadline = time.monotonic() + timeout
    while (pid := manifest_pipe._keeper.spare_pid()) is None:
        assert time.monotonic() < deadline, "no spare reader was started"
        time.sleep(0.02)
    return pid


def test_a_held_spare_reads_the_next_manifest_and_another_follows(tmp_path: Path, soon: None) -> None:
    """With a hold, a spare reader waits (started ahead of time); the next manifest is read by it,
    the same entries as the planner's own reading; once that reader is closed, another spare
    is started; releasing the hold stops it."""
    path = tmp_path / "m.json"
    path.write_text(json.dumps({"images": [entry(i) for i in range(3000)] + [{"objectUrl": "bad"}]}))
    release = manifest_pipe.hold(("corral.registration.jobs",))
    try:
        pid = _spare_pid()
        assert b"--spare" in _cmdline(pid)
        items = manifest_pipe.iter_entries(path, "json", min_bytes=0)
        assert isinstance(items, manifest_pipe.PipedEntries) and items.spare and items.child is not None
        assert items.child.pid == pid
        got = read(items)
        items.close()
        assert got == read(manifest.iter_entries(path, "json"))
        assert items.fell_back is None
        wait_gone([pid])
        following = _spare_pid()
        assert following != pid
    finally:
        release()
    wait_gone([following])
    assert manifest_pipe._keeper.spare_pid() is None


def test_no_spare_is_started_while_a_reader_reads(tmp_path: Path, soon: None) -> None:
    """A spare is started when this process reads no manifest (its CPU and memory would be the
    import's), and not again for a reader that takes it until that reader is closed."""
    path = tmp_path / "m.json"
    # more entries than the queue and the pipe hold together (64 + a few messages of 1,000), so
    # the spare is still reading (not done and gone) when it is looked for
    path.write_text(json.dumps({"images": [entry(i) for i in range(150_000)]}))
    release = manifest_pipe.hold()
    try:
        pid = _spare_pid()
        items = manifest_pipe.iter_entries(path, "json", min_bytes=0)
        next(items)
        time.sleep(0.5)
        assert manifest_pipe._keeper.spare_pid() is None
        assert children() == [pid]
        items.close()  # type: ignore[attr-defined]
        _spare_pid()
    finally:
        release()


def test_a_dead_spare_is_passed_over_and_the_reader_starts_its_own(tmp_path: Path, soon: None) -> None:
    path = tmp_path / "m.json"
    path.write_text(json.dumps({"images": [entry(i) for i in range(2000)]}))
    release = manifest_pipe.hold()
    try:
        pid = _spare_pid()
        os.kill(pid, signal.SIGKILL)
        deadline = time.monotonic() + 10
        while not Path(f"/proc/{pid}/stat").read_text().split(")")[1].split()[0] == "Z":
            assert time.monotonic() < deadline
            time.sleep(0.01)
        items = manifest_pipe.iter_entries(path, "json", min_bytes=0)
        assert isinstance(items, manifest_pipe.PipedEntries) and not items.spare
        assert read(items) == read(manifest.iter_entries(path, "json"))
        assert items.fell_back is None
    finally:
        release()


def test_a_spare_killed_while_it_reads_is_read_on_here(tmp_path: Path, soon: None) -> None:
    path = tmp_path / "m.json"
    path.write_text(json.dumps({"images": [entry(i) for i in range(100_000)]}))
    expected = list(manifest.iter_entries(path, "json"))
    release = manifest_pipe.hold()
    try:
        pid = _spare_pid()
        items = manifest_pipe.iter_entries(path, "json", min_bytes=0)
        assert isinstance(items, manifest_pipe.PipedEntries) and items.spare
        got = [next(items)]
        os.kill(pid, signal.SIGKILL)
        got += list(items)
        assert got == expected
        assert items.fell_back == "ended"
    finally:
        release()


def test_a_spare_that_cannot_start_leaves_the_reader_as_it_was(tmp_path: Path, soon: None,
                                                               monkeypatch: pytest.MonkeyPatch) -> None:
    launch = manifest_pipe._launch
    tried: list[list[str]] = []

    def failing(head: list[str], tail: Any = ()) -> Any:
        if head == [manifest_pipe._SPARE]:
            tried.append(head)
            raise OSError("no more processes")
        return launch(head, tail)

    monkeypatch.setattr(manifest_pipe, "_launch", failing)
    path = tmp_path / "m.json"
    path.write_text(json.dumps({"images": [entry(i) for i in range(2000)]}))
    release = manifest_pipe.hold()
    try:
        deadline = time.monotonic() + 10
        while not tried:
            assert time.monotonic() < deadline
            time.sleep(0.01)
        assert manifest_pipe._keeper.spare_pid() is None
        items = manifest_pipe.iter_entries(path, "json", min_bytes=0)
        assert isinstance(items, manifest_pipe.PipedEntries) and not items.spare
        assert read(items) == read(manifest.iter_entries(path, "json"))
        time.sleep(0.3)
        assert len(tried) == 1  # tried again _SPARE_RETRY_SECONDS later, not in a loop
    finally:
        release()


@pytest.mark.parametrize("block_sigterm", [False, True])
def test_a_spare_outlives_the_thread_that_asked_for_it_not_its_process(block_sigterm: bool) -> None:
    """The spare is started by the keeper's thread, which lives as long as the process: the thread
    that asked for it may end (PR_SET_PDEATHSIG fires when the *thread* that started a child ends)
    without the spare ending; SIGKILL of the process ends it, by its death signal or, with
    SIGTERM blocked, by its own check of its parent."""
    import subprocess
    import sys

    script = (
        "import signal, sys, threading, time\n"
        "from corral.registration import manifest_pipe\n"
        "manifest_pipe._SPARE_AFTER_SECONDS = 0\n"
        f"if {block_sigterm}:\n"
        "    signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGTERM})\n"
        "asker = threading.Thread(target=manifest_pipe.hold)\n"
        "asker.start(); asker.join()\n"
        "while manifest_pipe._keeper.spare_pid() is None:\n"
        "    time.sleep(0.01)\n"
        "print(manifest_pipe._keeper.spare_pid(), flush=True)\n"
        "time.sleep(120)\n"
    )
    planner = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE,
                               cwd=Path(__file__).resolve().parents[2])
    try:
        assert planner.stdout is not None
        pid = int(planner.stdout.readline())
        assert b"--spare" in _cmdline(pid)
        time.sleep(1.0)  # (the thread that asked ended before the spare was started)
        assert b"--spare" in _cmdline(pid), "the spare ended with the thread that asked for it"
    finally:
        planner.kill()
        planner.wait(10)
    wait_gone([pid])


@pytest.mark.slow
@pytest.mark.parametrize("stop", [signal.SIGKILL, signal.SIGTERM])
def test_a_workers_spare_ends_with_the_worker(db, settings, stop: int) -> None:  # type: ignore[no-untyped-def]
    """A real ``corral worker`` keeps a spare reader while it runs (``manifest_pipe_spare``, on by
    default); killed, or stopped gracefully, it leaves none behind."""
    from tests.jobs.test_durability import _wait
    from tests.registration.test_durability import _spawn

    worker = _spawn(settings)
    try:
        _wait(lambda: bool(_readers_of(worker.pid)), 60, "the worker's spare reader")
        spares = _readers_of(worker.pid)
        assert len(spares) == 1 and b"--spare" in _cmdline(spares[0])
    finally:
        worker.send_signal(stop)
        worker.wait(30)
    wait_gone(spares)


@pytest.fixture
def spare(settings, monkeypatch: pytest.MonkeyPatch) -> None:  # type: ignore[no-untyped-def]
    """The app's worker keeps a spare reader (before ``api`` starts it), started at once."""
    monkeypatch.setitem(settings.__dict__, "manifest_pipe_spare", True)
    monkeypatch.setattr(manifest_pipe, "_SPARE_AFTER_SECONDS", 0.0)
    _due_now()


def test_an_import_read_by_the_workers_spare_stores_what_the_planners_own_would(spare, small, api, world, db, settings, monkeypatch) -> None:  # type: ignore[no-untyped-def]  # noqa: F811
    """The worker's spare reader takes the import (no child started for it), prepares its
    batches, and the import stores what one read by the planner stores; the worker stopped, no
    spare is left."""
    if not db.is_sqlite:  # (reading every item back takes minutes there)
        pytest.skip("the reader's work is the database's alike (the tests above); the spare is the process's")
    alice, bucket = world
    assert api.put("/api/v1/metadata-schema", json={"keys": _SCHEMA}, headers=alice.bearer).status_code == 200
    body = _rich_manifest(bucket, 1200)  # three batches
    taken: list[int | None] = []
    begin = manifest_pipe._Keeper.begin

    def recorded(self: Any, path: Path, fmt: Any) -> Any:
        child = begin(self, path, fmt)
        taken.append(child[0].pid if child is not None else None)
        return child

    monkeypatch.setattr(manifest_pipe._Keeper, "begin", recorded)
    seen = []
    for folder in ("here", "spare"):
        assert api.post("/api/v1/folders", json={"path": folder}, headers=alice.bearer).status_code == 201
        if folder == "spare":
            monkeypatch.setitem(settings.__dict__, "manifest_pipe_min_bytes", 1)
            waiting = _spare_pid()
        seen.append((_import(api, alice, folder, body, True), _stored(db, folder)))
    assert taken == [waiting]
    (here, here_items), (piped, piped_items) = seen
    assert here == piped and here_items == piped_items
    assert (piped["status"], piped["registered"]) == ("DONE", 1196)
    following = _spare_pid()
    api.app.state.corral.worker.stop()
    wait_gone([following])


def test_the_reader_is_told_its_work_before_the_store_is_opened(api, world, db, settings, monkeypatch) -> None:  # type: ignore[no-untyped-def]  # noqa: F811
    """A strict import's planner hands the reader's process its batches' context before it opens
    the integration's backend (the first open in a process imports the provider's SDK), so the
    two overlap; the import ends as before."""
    from corral.core import integrations

    alice, bucket = world
    order: list[str] = []
    prepare, shared = manifest_pipe.PipedEntries.prepare, integrations.shared

    def told(self: Any, *args: Any, **kwargs: Any) -> bool:
        order.append("reader told")
        return prepare(self, *args, **kwargs)

    def opened(*args: Any) -> Any:
        order.append("opened")
        return shared(*args)

    monkeypatch.setattr(manifest_pipe.PipedEntries, "prepare", told)
    monkeypatch.setattr(integrations, "shared", opened)
    monkeypatch.setitem(settings.__dict__, "manifest_pipe_min_bytes", 1)
    body = json.dumps({"images": [
        {"objectUrl": f"s3://{bucket}/p/{i:06d}.png", "imageMetadata": {"width": 1, "height": 1}}
        for i in range(30)]})
    assert _import(api, alice, "data/cats", body, False)["registered"] == 30
    assert order[:2] == ["reader told", "opened"]
