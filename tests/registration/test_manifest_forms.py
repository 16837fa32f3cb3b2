"""One entry, one item: the same files described in a JSON and in a CSV manifest are registered as
the same items (titles, typed metadata, datetimes in every form), on SQLite and PostgreSQL; a
key given twice in an entry is that entry's error, the others kept."""

from __future__ import annotations

import json
from typing import Any

from sqlalchemy import select

from corral.db.tables import Folder, Item
from tests.registration.test_imports import api, start, wait, world  # noqa: F401  (fixtures)

SCHEMA = {"keys": {"at": {"type": "datetime"}, "score": {"type": "number"}, "id": {"type": "uuid"},
                   "ok": {"type": "boolean"}}}

#: (datetime as written, as stored): offsets, Z, z, no zone (UTC), a date alone, fractions.
DATETIMES = [
    ("2024-05-01T14:30:00+02:00", "2024-05-01T12:30:00+00:00"),
    ("2024-05-01T12:30:00Z", "2024-05-01T12:30:00+00:00"),
    ("2024-05-01t12:30:00.25z", "2024-05-01T12:30:00.250000+00:00"),
    ("2024-05-01 12:30", "2024-05-01T12:30:00+00:00"),
    ("2024-05-01", "2024-05-01T00:00:00+00:00"),
    ("2024-05-01T12:30:00.123456789-05:30", "2024-05-01T18:00:00.123456+00:00"),
]


def items_of(db: Any, folder: str) -> list[tuple[Any, ...]]:  # type: ignore[no-untyped-def]
    with db.read() as s:
        folder_id = s.scalar(select(Folder.id).where(Folder.name == folder))
        rows = s.scalars(select(Item).where(Item.folder_id == folder_id))
        return sorted((i.name, i.url, json.dumps(i.client_metadata, sort_keys=True), i.media.get("width"), i.staged)
                      for i in rows)


def counts(status: dict[str, Any]) -> tuple[int, ...]:
    return tuple(status[k] for k in ("files_total", "registered", "skipped", "updated", "failed", "pending"))


def test_the_same_entries_as_json_and_as_csv_are_the_same_items(api, world, db) -> None:  # type: ignore[no-untyped-def]  # noqa: F811
    alice, bucket = world
    assert api.put("/api/v1/metadata-schema", json=SCHEMA, headers=alice.bearer).status_code == 200
    assert api.post("/api/v1/folders", json={"path": "data/csv"}, headers=alice.bearer).status_code == 201
    entries: list[dict[str, Any]] = [
        {"objectUrl": f"s3://{bucket}/img/{i % 3}.png", "title": f"  shot {i} ",
         "clientMetadata": {"at": written, "score": i, "id": f"{{123E4567-E89B-12D3-A456-42661417400{i}}}",
                            "ok": i % 2 == 0}}
        for i, (written, _) in enumerate(DATETIMES)
    ]
    entries.append({"objectUrl": f"s3://{bucket}/img/missing.png", "title": "gone"})
    entries.append({"objectUrl": f"s3://{bucket}/img/2.png", "clientMetadata": {"at": "yesterday"}})
    # The same rows as CSV, with the lone-CR line ends of an old spreadsheet export and a BOM.
    rows = ["ImageUrl,Title,ClientMetadata"] + [
        ",".join([e["objectUrl"], '"' + e.get("title", "") + '"',
                  '"' + json.dumps(e.get("clientMetadata", {})).replace('"', '""') + '"'])
        for e in entries
    ]
    csv = ("\ufeff" + "\r".join(rows) + "\r").encode()
    for folder, body in (("data/cats", json.dumps({"images": entries})), ("data/csv", csv)):
        r = api.post("/api/v1/imports", params={"folder": folder, "integration": "s3", "ignore_errors": "true"},
                     content=body, headers=alice.bearer)
        assert r.status_code == 202, r.text
        status = wait(api, alice, r.json()["job_id"])
        assert status["status"] == "DONE"
        assert counts(status) == (8, 6, 0, 0, 2, 0)
        assert sorted(e["error"][:30] for e in status["errors"]) == [
            f"cannot stat 's3://{bucket}"[:30], "invalid clientMetadata: 'at' ="]
    stored = items_of(db, "cats")
    assert stored == items_of(db, "csv")
    assert [name for name, *_ in stored] == [f"shot {i}" for i in range(len(DATETIMES))]
    assert sorted(json.loads(m)["at"] for _, _, m, *_ in stored) == sorted(kept for _, kept in DATETIMES)
    assert {json.loads(m)["id"] for _, _, m, *_ in stored} == {
        f"123e4567-e89b-12d3-a456-42661417400{i}" for i in range(len(DATETIMES))}


def test_a_key_given_twice_in_an_entry_fails_that_entry_only(api, world, db) -> None:  # type: ignore[no-untyped-def]  # noqa: F811
    """It registered the last URL the entry named, with the last metadata, and said nothing."""
    alice, bucket = world
    text = ('{"images": [{"objectUrl": "s3://B/img/0.png", "objectUrl": "s3://B/img/1.png"},'
            ' {"objectUrl": "s3://B/img/2.png", "clientMetadata": {"cam": "a", "cam": "b"}},'
            ' {"objectUrl": "s3://B/img/0.png", "title": "kept"}], "skip_duplicate_urls": true}').replace("B", bucket)
    r = api.post("/api/v1/imports", params={"folder": "data/cats", "integration": "s3", "dry_run": "true"},
                 content=text, headers=alice.bearer)
    assert r.status_code == 200, r.text
    assert (r.json()["entries"], r.json()["valid"], r.json()["error_count"]) == (3, 1, 2)
    assert items_of(db, "cats") == []  # a dry run writes nothing
    failed = wait(api, alice, start(api, alice, text))  # all or nothing: nothing
    assert failed["status"] == "ERROR" and items_of(db, "cats") == []
    status = wait(api, alice, start(api, alice, text, ignore_errors=True))
    assert status["status"] == "DONE" and counts(status) == (3, 1, 0, 0, 2, 0)
    assert [(e["where"], e["error"]) for e in status["errors"]] == [
        ("images[0]", "objectUrl: the key 'objectUrl' is given more than once in one object"),
        ("images[1]", "clientMetadata.cam: the key 'cam' is given more than once in one object"),
    ]
    assert [(name, url) for name, url, *_ in items_of(db, "cats")] == [("kept", f"s3://{bucket}/img/0.png")]
