"""A second import likely to meet duplicates, its checks shared between the manifest's reading
process and the planner (``jobs._ChildChecker``, ``_InlineWriter.submit_checked``): the reader
checks a share of the batches and sends the others as entries, for the planner to check.  It ends
exactly as the planner checking every entry ends: the same items, counts, errors (by line), status."""

from __future__ import annotations

import json
from typing import Any

import pytest
from sqlalchemy import func, select

from corral.db.tables import Folder, Item, Job, JobUnit
from corral.registration import jobs, manifest_pipe
from tests.registration.test_imports import api, wait, world  # noqa: F401 - fixtures
from tests.registration.test_manifest_pipe import _SCHEMA, _stored, children, wait_gone

_BATCH = 500  # entries a strict batch holds here (``jobs.INLINE_BATCH``)
_FIRST = 1500  # the first import's entries: three batches, all good


@pytest.fixture
def small(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(jobs, "INLINE_BATCH", _BATCH)


def _image(bucket: str, i: int, name: str = "") -> dict[str, Any]:
    return {"url": f"s3://{bucket}/p/{name or f'{i:06d}'}.png", "title": f"image {i}", "width": 10, "height": 20,
            "meta": {"camera": f"cam-{i % 7}", "score": i / 4, "reviewed": i % 2 == 0,
                     "weather": ("clear", "fog")[i % 2], "captured_at": f"2026-01-{1 + i % 28:02d}T10:00:00Z"}}


def _rows(bucket: str, second: bool, new_first: bool) -> list[dict[str, Any] | str]:
    """The first import's images, or the second's: the first's again (duplicates, one with bad
    metadata, one unparseable), then as many new ones (one without sizes, one out of scope).
    ``new_first``: one new image in the second's first batch too.  A str is a bad row."""
    rows: list[dict[str, Any] | str] = [_image(bucket, i) for i in range(_FIRST)]
    if not second:
        return rows
    rows += [_image(bucket, i) for i in range(_FIRST, 2 * _FIRST)]
    bad_meta = dict(rows[700])  # type: ignore[arg-type]
    rows[700] = {**bad_meta, "meta": {"score": "high"}}  # a duplicate the schema refuses
    rows[1100] = "unparseable"  # the manifest reader refuses it
    rows[2100] = {**rows[2100], "width": None, "height": None}  # type: ignore[dict-item]  # strict: no sizes
    rows[2600] = {**rows[2600], "url": f"s3://elsewhere-{bucket}/p/2600.png"}  # type: ignore[dict-item]
    if new_first:
        rows[250] = _image(bucket, 250, "new-250")
    return rows


def _body(rows: list[dict[str, Any] | str], fmt: str) -> str:
    if fmt == "json":
        images: list[Any] = []
        for r in rows:
            if isinstance(r, str):
                images.append({"objectUrl": "no-scheme.png"})
                continue
            image: dict[str, Any] = {"objectUrl": r["url"], "title": r["title"], "clientMetadata": r["meta"]}
            if r["width"] is not None:
                image["imageMetadata"] = {"width": r["width"], "height": r["height"]}
            images.append(image)
        return json.dumps({"images": images})
    lines = ["ImageUrl,Title,Width,Height,ClientMetadata"]
    for r in rows:
        if isinstance(r, str):
            lines.append('s3://x/bad.png,bad,1,1,"{not json"')
            continue
        meta = json.dumps(r["meta"]).replace('"', '""')
        size = f"{r['width']},{r['height']}" if r["width"] is not None else ","
        lines.append(f'{r["url"]},{r["title"]},{size},"{meta}"')
    return "\n".join(lines) + "\n"


def _import(api, alice, folder: str, body: str, ignore_errors: bool) -> dict[str, Any]:  # type: ignore[no-untyped-def]  # noqa: F811
    r = api.post("/api/v1/imports", params={"folder": folder, "integration": "s3-strict",
                                            "ignore_errors": str(ignore_errors).lower(),
                                            "skip_duplicate_urls": "true"},
                 content=body, headers=alice.bearer)
    assert r.status_code == 202, r.text
    status = wait(api, alice, r.json()["job_id"])
    return {k: v for k, v in status.items() if k not in ("job_id", "created_at", "updated_at", "finished_at",
                                                          "started_at", "links")}


def _spied(monkeypatch: pytest.MonkeyPatch) -> dict[str, list[int]]:
    """What the reader sent of each batch (its seq under ``entries`` or ``checked``), and the
    batches it checked whose items the planner expanded (``expanded``)."""
    seen: dict[str, list[int]] = {"entries": [], "checked": [], "expanded": []}
    submit, expand = jobs._InlineWriter.submit_checked, jobs._Ready.expand

    def submit_checked(self: Any, seq: int, payload: Any) -> None:
        if payload is not None:
            seen["entries" if payload[0] == jobs._ENTRIES else "checked"].append(seq)
        submit(self, seq, payload)

    def expanded(self: Any) -> None:
        if self.blob is not None:
            seen["expanded"].append(len(self.results))
        expand(self)

    monkeypatch.setattr(jobs._InlineWriter, "submit_checked", submit_checked)
    monkeypatch.setattr(jobs._Ready, "expand", expanded)
    return seen


def _second_imports(api, alice, settings, monkeypatch, first: str, second: str, ignore_errors: bool,  # type: ignore[no-untyped-def]  # noqa: F811
                    share: float | None) -> list[tuple[dict[str, Any], dict[str, Any]]]:
    """``first`` then ``second`` imported into folder ``here``, read and checked by the planner,
    then into ``split``, the second read by a child that checks ``share`` of its batches: each
    folder's second report and its items.

    No batch is handed to another worker (PostgreSQL, ``_InlineWriter._others_idle``): whether
    one is depends on the moment, and an all-or-nothing job whose handed-off batch fails first
    ends before the planner's later batches report their errors, on main as here; a batch the
    reader checked is always written by the planner's process."""
    monkeypatch.setattr(jobs._InlineWriter, "_others_idle", lambda self: False)
    for folder in ("here", "split"):
        assert api.post("/api/v1/folders", json={"path": folder}, headers=alice.bearer).status_code == 201
        assert _import(api, alice, folder, first, ignore_errors)["status"] == "DONE"
    out = []
    for folder in ("here", "split"):
        if folder == "split":  # the app's worker reads this settings object at each plan
            monkeypatch.setitem(settings.__dict__, "manifest_pipe_min_bytes", 1)
            monkeypatch.setattr(jobs, "CHILD_CHECKS", share)
        before = set(children())
        report = _import(api, alice, folder, second, ignore_errors)
        wait_gone(list(set(children()) - before))
        out.append((report, folder))
    return out


@pytest.mark.parametrize(("fmt", "ignore_errors", "share", "new_first"), [
    ("json", True, 0.5, False), ("json", False, 0.5, False), ("csv", True, 1.0, True), ("csv", False, 1.0, True),
    ("json", True, None, False)])
def test_a_second_import_checked_partly_by_the_reader_ends_as_one_checked_by_the_planner(small, api, world, db, settings, monkeypatch, fmt, ignore_errors, share, new_first) -> None:  # type: ignore[no-untyped-def]  # noqa: F811
    """The same second import (duplicates, one with bad metadata, an unparseable row, new files,
    one without sizes, one out of scope) into a folder holding the first's items, checked wholly
    by the planner, and with the reader checking half or all of its batches or an adaptive share:
    the same items, parts, values and listing documents, the same report (errors naming their
    line, in the same order), the same status; with all or nothing, nothing registered."""
    alice, bucket = world
    assert api.put("/api/v1/metadata-schema", json={"keys": _SCHEMA}, headers=alice.bearer).status_code == 200
    first = _body(_rows(bucket, False, new_first), fmt)
    second = _body(_rows(bucket, True, new_first), fmt)
    seen = _spied(monkeypatch)
    (here, _), (split, _) = _second_imports(api, alice, settings, monkeypatch, first, second, ignore_errors, share)
    assert here == split
    assert _stored(db, "here") == _stored(db, "split")
    # the line (CSV: the header is line 1) or the place in the JSON of each bad row
    at = (lambda i: f"line {i + 2}") if fmt == "csv" else (lambda i: f"images[{i}]")
    unparseable = at(1100) + (", column ClientMetadata" if fmt == "csv" else "")
    assert [e["where"] for e in split["errors"]] == [unparseable, at(700), at(2100), at(2600)]
    assert "clientMetadata" in split["errors"][1]["error"] or "score" in split["errors"][1]["error"]
    # six batches of 500 good entries (the unparseable row is not in one)
    batches = list(range(1, 7))
    if share == 0.5:  # every other batch checked by the reader, the first sent as entries
        assert (seen["entries"], seen["checked"]) == ([1, 3, 5], [2, 4, 6])
    elif share == 1.0:
        assert (seen["entries"], seen["checked"]) == ([], batches)
    else:
        assert sorted(seen["entries"] + seen["checked"]) == batches and seen["checked"]
    if ignore_errors:
        new = 1 if new_first else 0
        assert (split["status"], split["registered"], split["failed"]) == ("DONE", _FIRST - 2 + new, 4)
        assert split["skipped"] == _FIRST - 2 - new  # (the duplicate with bad metadata failed)
        # a batch the reader checked with something new expanded (before the lock or under
        # it); the all-duplicate ones were decided without their items
        if share is not None or any(seq >= 4 for seq in seen["checked"]):
            assert seen["expanded"]
        if share is not None:
            assert len(seen["expanded"]) < len(seen["checked"])
    else:
        assert split["status"] == "ERROR" and split["registered"] == 0
        # nothing expanded after the first bad file (the first batch's new file was, before it)
        assert len(seen["expanded"]) == (1 if new_first else 0)


def test_a_reader_killed_while_it_checks_is_read_on_here_and_completes_once(small, api, world, db, settings, monkeypatch) -> None:  # type: ignore[no-untyped-def]  # noqa: F811
    """The reader's process killed once its first checked batch arrived: the planner reads and
    checks the rest itself from the entry after the last batch received; the import ends as one
    checked by the planner, each batch committed exactly once."""
    alice, bucket = world
    assert api.put("/api/v1/metadata-schema", json={"keys": _SCHEMA}, headers=alice.bearer).status_code == 200
    first = _body(_rows(bucket, False, False), "json")
    rows = _rows(bucket, True, False) + [_image(bucket, i) for i in range(2 * _FIRST, 2 * _FIRST + 3000)]
    second = _body(rows, "json")  # twelve batches: more than the pipe and the queue hold
    readers: list[Any] = []
    checked: list[int] = []
    own: list[int] = []
    start, submit, submit_own = manifest_pipe._start, jobs._InlineWriter.submit_checked, jobs._InlineWriter.submit

    def started(*args: Any) -> Any:
        child, fd = start(*args)
        readers.append(child)
        return child, fd

    def kill_then_submit(self: Any, seq: int, payload: Any) -> None:
        if not checked:
            readers[-1].kill()
            readers[-1].wait()
        checked.append(seq)
        submit(self, seq, payload)

    def submitted_here(self: Any, seq: int, entries: list[Any]) -> None:
        if readers:  # (the split folder's second import)
            own.append(seq)
        submit_own(self, seq, entries)

    monkeypatch.setattr(manifest_pipe, "_start", started)
    monkeypatch.setattr(jobs._InlineWriter, "submit_checked", kill_then_submit)
    monkeypatch.setattr(jobs._InlineWriter, "submit", submitted_here)
    (here, _), (killed, _) = _second_imports(api, alice, settings, monkeypatch, first, second, True, 1.0)
    assert len(readers) == 1 and readers[0].returncode is not None
    # the first batch (and, at most, those the pipe held when it was killed) from the reader,
    # the rest read and checked here, numbered on
    assert checked[0] == 1 and own and own == list(range(len(checked) + 1, 13))
    assert here == killed
    assert _stored(db, "here") == _stored(db, "split")
    assert (killed["status"], killed["registered"], killed["skipped"]) == ("DONE", _FIRST - 2 + 3000, _FIRST - 2)
    with db.read() as s:
        folder_id = s.scalar(select(Folder.id).where(Folder.name == "split"))
        job_id = max((j for j in s.scalars(select(Job)) if j.params.get("folder_id") == str(folder_id)),
                     key=lambda j: j.created_at).id
        units = s.execute(select(JobUnit.seq, JobUnit.status).where(JobUnit.job_id == job_id, JobUnit.seq > 0)
                          .order_by(JobUnit.seq)).all()
        items = s.scalar(select(func.count()).select_from(Item).where(Item.folder_id == folder_id))
        keys = s.scalar(select(func.count(func.distinct(Item.url_hash))).where(Item.folder_id == folder_id))
    assert [tuple(u) for u in units] == [(seq, "done") for seq in range(1, 13)]  # each batch once
    assert items == keys == _FIRST + _FIRST - 2 + 3000  # no item twice


def test_the_pipe_says_how_much_its_reader_has_not_taken() -> None:
    """What ``behind`` is told: the bytes still in the pipe, from its write end."""
    import os

    read, write = os.pipe()
    with os.fdopen(write, "wb") as out, os.fdopen(read, "rb", buffering=0) as into:
        assert manifest_pipe._unread(out) == 0
        out.write(b"x" * 1000)
        out.flush()
        assert manifest_pipe._unread(out) == 1000
        into.read(400)
        assert manifest_pipe._unread(out) == 600


def test_the_readers_share_follows_which_process_waits() -> None:
    """A fixed share checks that share of the batches, spread evenly; the adaptive one grows
    while the reader's writes wait for the planner and shrinks while they do not, within [0, 1]."""
    checker = jobs._ChildChecker.__new__(jobs._ChildChecker)
    checker.adaptive, checker.share, checker.owed = False, 0.4, 0.0
    checker.behind(1 << 20)
    assert checker.share == 0.4  # fixed
    picks = []
    for _ in range(10):
        checker.owed += checker.share
        picks.append(checker.owed >= 1.0 - 1e-9)
        checker.owed -= 1.0 if picks[-1] else 0.0
    assert sum(picks) == 4 and not (picks[0] or picks[1])
    checker.adaptive, checker.share = True, jobs.CHILD_CHECKS_START
    for _ in range(3):
        checker.behind(1000)  # the planner behind: more here
    checker.behind(-1)  # not known: no change
    assert checker.share == pytest.approx(jobs.CHILD_CHECKS_START + 3 * jobs._CHECKS_STEP)
    for _ in range(40):
        checker.behind(0)  # the planner took everything: less here
    assert checker.share == 0.0
    for _ in range(40):
        checker.behind(1)
    assert checker.share == 1.0


def _checker(keys: dict[str, Any]) -> jobs._ChildChecker:
    """A reader's checker that checks every batch (of two entries), for a schema of ``keys``."""
    import uuid

    from corral.core.metadata.schema import from_native
    from corral.jobs.tasks import ClaimedUnit
    from corral.storage.options import S3Options

    unit = ClaimedUnit(1, uuid.uuid4(), uuid.uuid4(), 0, "register", {"op": "plan"},
                       {"folder_id": str(uuid.uuid4()), "skip_duplicate_urls": True}, 1)
    return jobs._ChildChecker(unit, S3Options(bucket="media", region="eu-west-1"), "media", 3600,
                              from_native({"keys": keys}), set(), 2, 1.0)


def test_a_checked_batch_is_scanned_for_embeddings_only_when_the_schema_has_an_embedding_key(monkeypatch) -> None:  # type: ignore[no-untyped-def]
    """Only an embedding key's check makes a ``StoredVector``: with none in the schema the reader
    does not look through each item's metadata for one (it did, a value at a time, for every item
    it checked), and says the batch carries none; with one, it finds the item that carries it."""
    from corral.registration.entries import new_entry

    real = jobs.StoredVector
    looked: list[Any] = []

    class Counting(type):
        def __instancecheck__(cls, obj: Any) -> bool:
            looked.append(obj)
            return isinstance(obj, real)

    monkeypatch.setattr(jobs, "StoredVector", Counting("StoredVector", (), {}))

    def entries(second: dict[str, Any]) -> list[Any]:
        return [new_entry(i, f"images[{i}]", "image", (f"s3://media/p/{i}.png",), f"image {i}", meta,
                          {"width": 10, "height": 20})
                for i, meta in enumerate([{"camera": "a"}, second])]

    def batch(checker: jobs._ChildChecker, second: dict[str, Any]) -> tuple[Any, ...]:
        events = [event for entry in entries(second) for event in checker.feed(entry)]
        assert len(events) == 1
        seq, count, payload = events[0]
        assert (seq, count, payload[0]) == (1, 2, jobs._CHECKED)
        return payload  # type: ignore[no-any-return]

    _, verdicts, blob, vectors = batch(_checker({"camera": {"type": "varchar"}}), {"camera": "b"})
    assert verdicts == ["s3://media/p/0.png", "s3://media/p/1.png"] and blob and vectors is False
    assert looked == []
    clip = {"camera": {"type": "varchar"}, "clip": {"type": "embedding", "size": 2, "metric": "dot"}}
    _, verdicts, blob, vectors = batch(_checker(clip), {"camera": "b", "clip": [0.5, 1.0]})
    assert len(verdicts) == 2 and blob and vectors is True
    assert any(isinstance(value, real) for value in looked)
