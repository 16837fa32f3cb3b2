"""Many clients at once on a real server, on SQLite and PostgreSQL: what a team races.

Each test sends the same kind of request from many concurrent clients and checks that every
answer is a clear one (never a 500) and that the final state is what one at a time would leave:
one folder for one name, every merged key kept, one row for one retried create.  PostgreSQL
runs them truly concurrently (read committed); SQLite's writers take turns.
"""

from __future__ import annotations

import asyncio
import json
import uuid
from collections import Counter
from typing import Any

import httpx
from sqlalchemy import func, select

from corral.core.identity import Principal
from corral.core.labels import ontologies, projects
from corral.db.tables import DataRow, Folder, Grant, Item
from tests.datasets.helpers import add_folder, add_items
from tests.labels.test_validation import EDITOR

CLIENTS = 30


def _run(base: str, user: Any, requests: list[tuple[str, str, dict[str, Any]]]) -> list[httpx.Response]:
    """Send every request at once (one connection each) and answer the responses in order."""

    async def main() -> list[httpx.Response]:
        limits = httpx.Limits(max_connections=len(requests) + 5)
        async with httpx.AsyncClient(base_url=base, headers=user.bearer, limits=limits) as c:
            return list(await asyncio.gather(*(c.request(m, u, **kw) for m, u, kw in requests)))

    return asyncio.run(main())


def _statuses(responses: list[httpx.Response]) -> Counter[int]:
    statuses = Counter(r.status_code for r in responses)
    assert not [r for r in responses if r.status_code >= 500], [r.text for r in responses if r.status_code >= 500]
    return statuses


def test_concurrent_mkdir_p_answers_one_folder(live_server, make_user) -> None:  # type: ignore[no-untyped-def]
    """``POST /api/v1/folders`` is ``mkdir -p``: every concurrent create of one path answers 201
    with the same folder (a create that lost the race used to be a 409), and without
    ``exist_ok`` exactly one is 201 and the others 409."""
    user = make_user("a@example.com")
    responses = _run(live_server, user, [("POST", "/api/v1/folders", {"json": {"path": "top/mid/leaf"}})] * CLIENTS)
    assert _statuses(responses) == {201: CLIENTS}
    assert len({r.json()["id"] for r in responses}) == 1
    responses = _run(live_server, user, [("POST", "/api/v1/folders",
                                          {"json": {"path": "top/only", "exist_ok": False}})] * CLIENTS)
    assert _statuses(responses) == {201: 1, 409: CLIENTS - 1}
    children = httpx.get(f"{live_server}/api/v1/folders", params={"path": "top"}, headers=user.bearer).json()
    assert sorted(f["name"] for f in children) == ["mid", "only"]


def test_concurrent_renames_to_one_name(live_server, make_user, db) -> None:  # type: ignore[no-untyped-def]
    """Siblings renamed to one name at once: one wins, the others are 409 naming the folder (a
    rename that lost at the unique key read the failed row for its message: a 500)."""
    user = make_user("a@example.com")
    top = add_folder(db, user, "top")
    ids = [add_folder(db, user, f"f{i}", top) for i in range(6)]
    responses = _run(live_server, user, [("PATCH", f"/api/v1/folders/{ids[i % 6]}", {"json": {"name": "target"}})
                                         for i in range(CLIENTS)])
    statuses = _statuses(responses)
    assert set(statuses) <= {200, 409}
    refused = [r.json() for r in responses if r.status_code == 409]
    assert all(e["code"] == "already_exists" and "'target'" in e["message"] for e in refused)
    children = httpx.get(f"{live_server}/api/v1/folders", params={"path": "top"}, headers=user.bearer).json()
    assert sorted(f["name"] for f in children).count("target") == 1


def test_concurrent_metadata_merges_keep_every_key(live_server, make_user, db) -> None:  # type: ignore[no-untyped-def]
    """Each client merges its own key into one item's metadata: every key is there at the end
    (on PostgreSQL, merges read the metadata unlocked and wrote back a copy without the others')."""
    user = make_user("a@example.com")
    [item] = add_items(db, user, add_folder(db, user, "top"), 1, metadata={"base": 1})
    responses = _run(live_server, user, [
        ("PATCH", f"/api/v1/items/{item}", {"json": {"client_metadata": {f"k{i}": i}, "merge_metadata": True}})
        for i in range(CLIENTS)
    ])
    assert _statuses(responses) == {200: CLIENTS}
    metadata = httpx.get(f"{live_server}/api/v1/items/{item}", headers=user.bearer).json()["client_metadata"]
    assert metadata == {"base": 1, **{f"k{i}": i for i in range(CLIENTS)}}


def test_retried_creates_make_one_row(live_server, make_user) -> None:  # type: ignore[no-untyped-def]
    """A create sent several times at once with one idempotency key (native ``Idempotency-Key``,
    or the SDK's trace header, which its retries resend) makes one preset or collection, and
    every attempt answers it (the attempts that lost at the unique key were 500s)."""
    user = make_user("a@example.com")
    key = {"Idempotency-Key": uuid.uuid4().hex}
    for path, body in (("/api/v1/index/presets", {"name": "p", "filter": {}}),
                       ("/api/v1/index/collections", {"name": "c"})):
        responses = _run(live_server, user, [("POST", path, {"json": body, "headers": key})] * CLIENTS)
        assert _statuses(responses) == {201: CLIENTS}
        assert len({r.json()["id"] for r in responses}) == 1
    trace = {"x-cloud-trace-context": f"{uuid.uuid4().hex}/1;o=1", "content-type": "application/json"}
    for path, body in (("/v2/public/index/collections", {"name": "ec"}),
                       ("/v2/public/index/presets", {"name": "ep", "filterPresetJson": {"global_filters": {}}})):
        responses = _run(live_server, user, [("POST", path, {"content": json.dumps(body), "headers": trace})] * CLIENTS)
        assert _statuses(responses) == {200: CLIENTS}
        assert len({r.text for r in responses}) == 1
    presets = httpx.get(f"{live_server}/api/v1/index/presets", headers=user.bearer).json()["presets"]
    assert sorted(p["name"] for p in presets) == ["ep", "p"]
    collections = httpx.get(f"{live_server}/api/v1/index/collections", headers=user.bearer).json()["collections"]
    assert sorted(c["name"] for c in collections) == ["c", "ec"]


def test_schema_changes_while_items_are_patched(live_server, make_user, db) -> None:  # type: ignore[no-untyped-def]
    """Re-typing, deleting and restoring a key while its items are patched and queried: no
    deadlock (the schema change locked the index keys, then the items; a patch held its item
    while it waited for the keys), every answer clear, and the index answers afterwards."""
    user = make_user("a@example.com")
    items = add_items(db, user, add_folder(db, user, "top"), 8)
    base = live_server

    def schema_put(keys: dict[str, Any]) -> tuple[str, str, dict[str, Any]]:
        return ("PUT", "/api/v1/metadata-schema", {"json": {"strict_metadata": False, "keys": keys}})

    assert httpx.put(f"{base}/api/v1/metadata-schema", headers=user.bearer,
                     json={"strict_metadata": False, "keys": {"s": {"type": "number"}}}).status_code == 200
    for round_ in range(6):
        requests: list[tuple[str, str, dict[str, Any]]] = []
        for n in range(CLIENTS):
            kind = n % 5
            if kind == 0:
                kind_of = ["varchar", "number", "text"][(n + round_) % 3]
                requests.append(schema_put({"s": {"type": kind_of}}))
            elif kind == 1:
                requests.append(schema_put({"s": {"type": "number", "deleted": "soft"}} if n % 2 else
                                           {"s": {"type": "number"}}))
            elif kind in (2, 3):
                requests.append(("PATCH", f"/api/v1/items/{items[n % len(items)]}",
                                 {"json": {"client_metadata": {"s": n}, "merge_metadata": True}}))
            else:
                requests.append(("POST", "/api/v1/index/query", {"json": {"where": "s > 3"}}))
        statuses = _statuses(_run(base, user, requests))
        assert set(statuses) <= {200, 400}, statuses  # 400: a value the key's type of the moment refuses
    answer = httpx.post(f"{base}/api/v1/index/query", headers=user.bearer, json={"page_size": 100})
    assert answer.status_code == 200
    assert len(answer.json()["items"]) == len(items)


def test_concurrent_deletes_creates_and_moves_of_one_folder(live_server, make_user, db) -> None:  # type: ignore[no-untyped-def]
    """A folder deleted by several clients at once, while others create subfolders in it and
    move a folder into it: one delete answers 200, the others 404; a create or move that comes
    after the delete is a 404; none is a 500 (the deletes that lost answered 200 for nothing, and
    a subfolder created or moved in after the delete read the tree failed it on the foreign key)."""
    user = make_user("a@example.com")
    for round_ in range(3):
        top = add_folder(db, user, f"top{round_}")
        add_items(db, user, add_folder(db, user, "inner", top), 3, prefix=f"r{round_}")
        stray = add_folder(db, user, f"stray{round_}")
        requests = [("DELETE", f"/api/v1/folders/{top}", {"params": {"recursive": "true"}})] * 5
        requests += [("POST", "/api/v1/folders", {"json": {"path": f"top{round_}/inner/sub{i}"}}) for i in range(8)]
        requests += [("POST", f"/api/v1/folders/{stray}/move", {"json": {"parent": str(top)}})] * 2
        responses = _run(live_server, user, requests)
        _statuses(responses)
        deletes = Counter(r.status_code for r in responses[:5])
        assert deletes == {200: 1, 404: 4}, deletes
        assert {r.status_code for r in responses[5:]} <= {200, 201, 404}
        assert httpx.get(f"{live_server}/api/v1/folders/{top}", headers=user.bearer).status_code == 404
        with db.read() as s:  # nothing left of what the deleted folder held (a create by path
            # that came after the delete made a new "top" folder: not the deleted one)
            assert s.scalar(select(func.count()).select_from(Folder).where(Folder.id == top)) == 0
            assert s.scalar(select(func.count()).select_from(Item).where(Item.name.like(f"r{round_}-%"))) == 0


def test_deletes_race_links_and_changes(live_server, make_user, db) -> None:  # type: ignore[no-untyped-def]
    """Items deleted for good while they are linked into a dataset and patched, and a folder
    deleted while it is linked: each answer is clear (409 naming the dataset, 404 for what is
    gone), never a 500 (a link that committed between the delete's check and its DELETE failed
    the delete on the foreign key, and the other way round the link; a patch of an item deleted
    meanwhile updated no row); and every data row left points at an item that is there."""
    user = make_user("a@example.com")
    folder = add_folder(db, user, "top")
    items = add_items(db, user, folder, 12)
    dataset = httpx.post(f"{live_server}/api/v1/datasets", json={"title": "d"}, headers=user.bearer).json()["id"]
    requests = [("DELETE", f"/api/v1/items/{i}", {"params": {"hard": "true"}}) for i in items]
    requests += [("POST", f"/api/v1/datasets/{dataset}/link", {"json": {"item_ids": [str(i)]}}) for i in items]
    requests += [("PATCH", f"/api/v1/items/{i}", {"json": {"name": "renamed"}}) for i in items]
    requests += [("POST", f"/api/v1/items/{i}/restore", {}) for i in items]
    responses = _run(live_server, user, requests)
    _statuses(responses)
    refused = [r.json() for r in responses[:12] if r.status_code == 409]
    assert all("linked into dataset(s) 'd'" in e["message"] for e in refused)
    other = add_folder(db, user, "other")
    add_items(db, user, other, 20, prefix="other")
    requests = [("DELETE", f"/api/v1/folders/{other}", {"params": {"recursive": "true"}})] * 4
    requests += [("POST", f"/api/v1/datasets/{dataset}/link", {"json": {"folder": str(other)}})] * 4
    _statuses(_run(live_server, user, requests))
    with db.read() as s:
        rows = s.scalar(select(func.count()).select_from(DataRow).where(DataRow.dataset_id == uuid.UUID(dataset)))
        linked = s.scalar(select(func.count()).select_from(DataRow).join(Item, Item.id == DataRow.item_id)
                          .where(DataRow.dataset_id == uuid.UUID(dataset)))
        assert rows == linked


def test_datasets_of_one_title_each_get_a_backing_folder(live_server, make_user) -> None:  # type: ignore[no-untyped-def]
    """The SDK's ``create_dataset`` of one title, many times at once: titles need not be unique,
    so every create makes its dataset and its own backing folder (the third create of one title
    within a minute was a 409: the "short id" added to the taken name was the start of a uuid7,
    its time, which the datasets shared)."""
    user = make_user("a@example.com")
    body = json.dumps({"title": "same", "description": "", "createBackingFolder": True})
    headers = {"content-type": "application/json"}
    responses = _run(live_server, user, [("POST", "/v2/public/datasets", {"content": body, "headers": headers})] * 12)
    assert _statuses(responses) == {200: 12}
    folders = {r.json()["backingFolderUuid"] for r in responses}
    assert len(folders) == 12 and len({r.json()["datasetUuid"] for r in responses}) == 12
    top = httpx.get(f"{live_server}/api/v1/folders", headers=user.bearer).json()
    assert {f["id"] for f in top} == folders
    assert sum(1 for f in top if f["name"] == "same") == 1


def test_concurrent_grants_and_integration_renames(live_server, make_user, db, tmp_path) -> None:  # type: ignore[no-untyped-def]
    """One member shared a folder and a dataset by many clients at once: one grant each, and
    every answer 200 (a grant that lost at the unique key was a 500); integrations renamed to one
    title, and deleted, at once: one takes the title, the others are 409 or 404, never a 500."""
    admin = make_user("a@example.com")
    make_user("m@example.com", role="member")
    folder = add_folder(db, admin, "shared")
    dataset = httpx.post(f"{live_server}/api/v1/datasets", json={"title": "d"}, headers=admin.bearer).json()["id"]
    for resource, path in ((folder, f"/api/v1/folders/{folder}/grants"),
                           (uuid.UUID(dataset), f"/api/v1/datasets/{dataset}/grants")):
        responses = _run(live_server, admin, [("POST", path, {"json": {"user": "m@example.com", "role": role}})
                                              for role in ("viewer", "editor") * (CLIENTS // 2)])
        assert _statuses(responses) == {200: CLIENTS}
        with db.read() as s:
            assert s.scalar(select(func.count()).select_from(Grant).where(Grant.resource_id == resource)) == 1
    ids = [httpx.post(f"{live_server}/api/v1/integrations", headers=admin.bearer,
                      json={"title": f"i{n}", "provider": "local", "settings": {"root": str(tmp_path)}}).json()["id"]
           for n in range(3)]
    requests = [("PATCH", f"/api/v1/integrations/{ids[n % 3]}", {"json": {"title": "same"}}) for n in range(15)]
    requests += [("DELETE", f"/api/v1/integrations/{ids[n % 3]}", {}) for n in range(6)]
    statuses = _statuses(_run(live_server, admin, requests))
    assert set(statuses) <= {200, 204, 404, 409}
    titles = [i["title"] for i in httpx.get(f"{live_server}/api/v1/integrations", headers=admin.bearer).json()]
    assert titles.count("same") <= 1


def test_concurrent_project_member_adds(live_server, make_user, db) -> None:  # type: ignore[no-untyped-def]
    """One member added to a project by many clients at once: one role row, every answer 200
    (the adds that lost at the unique key were 500s on PostgreSQL)."""
    admin = make_user("a@example.com")
    make_user("m@example.com", role="member")
    with db.write() as s:
        p = Principal(admin.user_id, admin.org_id, admin.email, "admin", "bearer")
        onto = ontologies.create(s, p, "o", "", EDITOR)
        project = projects.create(s, p, "p", "", onto.id, [])
        project_id = project.id
    responses = _run(live_server, admin, [
        ("POST", f"/api/v1/projects/{project_id}/members", {"json": {"emails": ["m@example.com"], "role": role}})
        for role in ("annotator", "reviewer") * (CLIENTS // 2)
    ])
    assert _statuses(responses) == {200: CLIENTS}
    with db.read() as s:
        assert s.scalar(select(func.count()).select_from(Grant).where(Grant.resource_id == project_id)) == 1


def test_collections_and_presets_changed_while_deleted(live_server, make_user, db) -> None:  # type: ignore[no-untyped-def]
    """Items added to and removed from a collection, and a preset renamed, while other clients
    delete them: each change happens before the delete or is a 404 (a change that read the row
    before the delete committed updated no row: a 500 on PostgreSQL)."""
    user = make_user("a@example.com")
    items = [str(i) for i in add_items(db, user, add_folder(db, user, "top"), 5)]
    for round_ in range(3):
        collection = httpx.post(f"{live_server}/api/v1/index/collections", headers=user.bearer,
                                json={"name": f"c{round_}"}).json()["id"]
        preset = httpx.post(f"{live_server}/api/v1/index/presets", headers=user.bearer,
                            json={"name": f"p{round_}", "filter": {}}).json()["id"]
        base = f"/api/v1/index/collections/{collection}"
        requests = [("POST", f"{base}/items", {"json": {"item_ids": items}})] * 8
        requests += [("POST", f"{base}/items/remove", {"json": {"item_ids": items}})] * 8
        requests += [("PATCH", base, {"json": {"name": "renamed"}})] * 4 + [("DELETE", base, {})] * 3
        requests += [("PATCH", f"/api/v1/index/presets/{preset}", {"json": {"name": "renamed"}})] * 6
        requests += [("DELETE", f"/api/v1/index/presets/{preset}", {})] * 3
        statuses = _statuses(_run(live_server, user, requests))
        assert set(statuses) <= {200, 204, 404}, statuses
    assert httpx.get(f"{live_server}/api/v1/index/collections", headers=user.bearer).json()["collections"] == []
    assert httpx.get(f"{live_server}/api/v1/index/presets", headers=user.bearer).json()["presets"] == []


def test_concurrent_bundles_of_the_same_items_in_any_order(live_server, make_user, db) -> None:  # type: ignore[no-untyped-def]
    """SDK bundles (``patch-bulk``) changing the same items' names and metadata, each listing them
    in its own order: every one answers 200 in its own order, none a 500 (PostgreSQL ran them side
    by side, each row-locking its items as it went: two bundles could each hold an item the other
    waited for, a deadlock), and every item ends with one bundle's change whole."""
    import random

    user = make_user("a@example.com")
    items = add_items(db, user, add_folder(db, user, "top"), 6)
    rng = random.Random(7)
    requests: list[tuple[str, str, dict[str, Any]]] = []
    orders: list[list[uuid.UUID]] = []
    for n in range(20):
        order = rng.sample(items, len(items))
        orders.append(order)
        patches = {str(i): {"name": f"b{n}-{i}", "clientMetadata": {"bundle": n}} for i in order}
        requests.append(("PATCH", "/v2/public/storage/items/patch-bulk", {"json": {"itemPatches": patches}}))
    responses = _run(live_server, user, requests)
    assert _statuses(responses) == {200: len(requests)}
    for order, r in zip(orders, responses, strict=True):
        assert [row["uuid"] for row in r.json()["results"]] == [str(i) for i in order]
    with db.read() as s:
        rows = s.execute(select(Item.name, Item.client_metadata).where(Item.id.in_(items))).all()
    assert all(name.startswith(f"b{meta['bundle']}-") for name, meta in rows)


def test_a_folder_link_racing_its_delete_is_a_404(live_server, make_user, db) -> None:  # type: ignore[no-untyped-def]
    """A folder linked into a dataset while a delete of it is uncommitted: the link waits for the
    delete and is a 404 naming the folder, as for a folder that is not there (on PostgreSQL it
    read the folder, its INSERT … SELECT waited for the items and then found none: a 200 with
    nothing linked).  Two links of one folder into two datasets do not wait for each other."""
    import threading

    from corral.core import datasets, deletion

    user = make_user("a@example.com")
    principal = Principal(user.user_id, user.org_id, user.email, "admin", "bearer")
    folder = add_folder(db, user, "top")
    add_items(db, user, folder, 3)
    dataset = httpx.post(f"{live_server}/api/v1/datasets", json={"title": "d"}, headers=user.bearer).json()["id"]
    outcome: list[httpx.Response] = []

    def link() -> None:
        outcome.append(httpx.post(f"{live_server}/api/v1/datasets/{dataset}/link", headers=user.bearer,
                                  json={"folder": str(folder)}, timeout=60))

    with db.write() as s:
        deletion.delete_folder(s, principal, folder, recursive=True)
        linker = threading.Thread(target=link)
        linker.start()
        linker.join(2)
        waited = linker.is_alive()  # on the folder's (PostgreSQL: the items') row locks
    linker.join(60)
    assert waited, [r.text for r in outcome]
    [answer] = outcome
    assert answer.status_code == 404, answer.text
    assert answer.json()["message"] == f"folder {str(folder)!r} not found"

    if db.engine.dialect.name != "postgresql":
        return  # SQLite's write lock serialises any two links
    folder = add_folder(db, user, "again")
    add_items(db, user, folder, 3, prefix="again")
    other = httpx.post(f"{live_server}/api/v1/datasets", json={"title": "e"}, headers=user.bearer).json()["id"]
    with db.write() as s:
        first = datasets.link_folder(s, principal, datasets.resolve(s, principal, dataset), str(folder))
        assert first.linked == 3
        linker = threading.Thread(target=lambda: outcome.append(httpx.post(
            f"{live_server}/api/v1/datasets/{other}/link", headers=user.bearer, json={"folder": str(folder)})))
        linker.start()
        linker.join(10)
        assert not linker.is_alive(), "a link of the folder waited for another link of it"
    assert outcome[-1].status_code == 200 and outcome[-1].json()["linked"] == 3, outcome[-1].text


def test_concurrent_creates_of_one_unique_name(live_server, make_user, tmp_path) -> None:  # type: ignore[no-untyped-def]
    """Twenty creates at once of one integration title, one tag name (native and SDK) and one
    SDK storage folder name: exactly one is made, every other answer is a clear 409 in the one
    error shape naming the name, never a 500 or a second row."""
    user = make_user("a@example.com")
    root = tmp_path / "media"
    root.mkdir()
    sdk = {"content-type": "application/json"}
    n = 20
    for path, body, ok, listed in (
        ("/api/v1/integrations", {"json": {"title": "disk", "provider": "local", "settings": {"root": str(root)}}},
         201, ("/api/v1/integrations", "disk")),
        ("/api/v1/tags", {"json": {"name": "t"}}, 201, ("/api/v1/tags", "t")),
        ("/v2/public/organisation/organisation-tags", {"content": json.dumps({"name": "t2"}), "headers": sdk},
         200, ("/api/v1/tags", "t2")),
        ("/v2/public/storage/folders", {"content": json.dumps({"name": "sf"}), "headers": sdk},
         200, ("/api/v1/folders", "sf")),
    ):
        responses = _run(live_server, user, [("POST", path, body)] * n)
        assert _statuses(responses) == {ok: 1, 409: n - 1}, (path, [r.text[:200] for r in responses])
        name = listed[1]
        for r in responses:
            if r.status_code == 409:
                e = r.json()
                assert e["ok"] is False and e["status"] == 409 and e["code"] in ("already_exists", "conflict"), e
                assert f"'{name}'" in e["message"] or f'"{name}"' in e["message"] or name in e["message"], e
        got = httpx.get(f"{live_server}{listed[0]}", headers=user.bearer).json()
        rows = got if isinstance(got, list) else next(v for v in got.values() if isinstance(v, list))
        assert [x.get("title", x.get("name")) for x in rows].count(name) == 1, (path, rows)
