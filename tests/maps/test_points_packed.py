"""The points document served from the packed, per-process arrays (corral/core/maps/packed.py) is
byte for byte the document the row-by-row query gives (the first version's SQL, kept here as the
reference, its points put in item id order), for every colour kind, a filter, a member who sees
one folder, and hidden items; and the kept arrays follow every change made behind their back,
as another API process or a worker would make it: a deleted or replaced vector, an incremental
build with the same point count, a soft delete and restore."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from typing import Any

import numpy as np
import pytest
from sqlalchemy import delete, select
from starlette.testclient import TestClient

from corral.api.app import create_app
from corral.core import permissions
from corral.core.identity import principal_for_user
from corral.core.index import keys as index_keys
from corral.core.index import query
from corral.core.maps import packed, projection, service
from corral.db.tables import Folder, Item, ItemMeta, ItemVector, MapPoint, User
from tests.maps.data import blobs, read_points
from tests.maps.test_map_api import build, wait
from tests.vectors.test_api import ids_by_title, setup_org

DIM = 8
N = 40
SCHEMA = {"keys": {"clip": {"type": "embedding", "size": DIM}, "camera": {"type": "varchar"},
                   "score": {"type": "number"}, "flag": {"type": "boolean"}}}


@pytest.fixture
def client(settings, db) -> Iterator[TestClient]:  # type: ignore[no-untyped-def]
    with TestClient(create_app(settings, db=db, run_worker=True), raise_server_exceptions=False) as c:
        yield c


def register(client, user, data: np.ndarray, folder: str, start: int) -> None:  # type: ignore[no-untyped-def]
    manifest = {"images": [{"objectUrl": f"s3://media/{folder}/f{start + i}.jpg", "title": f"f{start + i}",
                            "imageMetadata": {"width": 4, "height": 3},
                            "clientMetadata": {"clip": [float(x) for x in v], "camera": f"cam{(start + i) % 3}",
                                               "score": (start + i) * 1.5, "flag": (start + i) % 4 == 0}}
                           for i, v in enumerate(data)]}
    if start % 5 == 0:  # some items without a colour
        manifest["images"][0]["clientMetadata"] = {"clip": [float(x) for x in data[0]]}
    r = client.post("/api/v1/imports", params={"folder": folder, "integration": "media"},
                    content=json.dumps(manifest), headers=user.bearer)
    assert r.status_code == 202, r.text
    wait(client, user, r.json()["job_id"], "/api/v1/imports/")


def reference(db, user_id: uuid.UUID, color: str | None, where: str | None, ids: bool) -> bytes:  # type: ignore[no-untyped-def]
    """The first version's query: every visible point joined with its item (and colour value)."""
    with db.read() as s:
        u = s.get(User, user_id)
        who = principal_for_user(u, "bearer")
        key = service.key_of(db, who.org_id, "clip")
        row = service.current(s, key.id)
        assert row is not None
        colour = service._color_key(s, who, color)
        prepared = query.prepare(s, who, query.resolve_filter(s, who, None, where))
        cols: list[Any] = [MapPoint.item_id, MapPoint.x, MapPoint.y]
        q = select(*cols).join(Item, Item.id == MapPoint.item_id).where(MapPoint.map_id == row.id, *prepared.where)
        if isinstance(colour, index_keys.Key):
            q = q.outerjoin(ItemMeta, (ItemMeta.item_id == MapPoint.item_id) & (ItemMeta.key_id == colour.id))
            q = q.add_columns(ItemMeta.num if colour.numeric else ItemMeta.txt)
        elif colour == "@type":
            q = q.add_columns(Item.item_type)
        rows = sorted(s.execute(q).all(), key=lambda r: r[0].bytes)
        values = [r[3] for r in rows] if colour is not None else []
        categories, codes = service._categories(colour, values, len(rows))
        mapped = len(s.scalars(select(MapPoint.vector_id).where(MapPoint.map_id == row.id)).all())
        vectors = len(s.scalars(select(ItemVector.id).where(ItemVector.key_id == key.id)).all())
        if permissions.visible_folder_ids(s, who) is not None:  # a member: the totals of what they see
            seen = query.prepare(s, who, None).where
            mapped = len(s.scalars(select(MapPoint.vector_id).join(Item, Item.id == MapPoint.item_id)
                                   .where(MapPoint.map_id == row.id, *seen)).all())
            vectors = len(s.scalars(select(ItemVector.id).join(Item, Item.id == ItemVector.item_id)
                                    .where(ItemVector.key_id == key.id, *seen)).all())
        header = {"key": "clip", "map_id": row.id, "method": row.method, "color": color or None,
                  "categories": categories, "other": int((codes == service.OTHER).sum()),
                  "bounds": row.info.get("bounds"), "points_total": mapped,
                  "unmapped": max(0, vectors - mapped), "grid": projection.GRID, "ids": ids}
        return service.encode(header, np.array([r[1] for r in rows], dtype=np.uint16),
                              np.array([r[2] for r in rows], dtype=np.uint16), codes,
                              b"".join(r[0].bytes for r in rows) if ids else None)


def served(client, user, **params: Any) -> bytes:  # type: ignore[no-untyped-def]
    r = client.get("/api/v1/index/map/clip/points", params=params, headers=user.bearer)
    assert r.status_code == 200, r.text
    return r.content


CASES: list[dict[str, Any]] = [
    {}, {"color": "camera"}, {"color": "score"}, {"color": "flag"}, {"color": "@type"},
    {"where": "camera = cam1"}, {"where": "score > 20", "color": "camera"},
]


def same(client, db, user, cases: list[dict[str, Any]] = CASES) -> int:  # type: ignore[no-untyped-def]
    """Every case is byte-equal to the reference, with and without ids; the points shown."""
    shown = -1
    for case in cases:
        for ids in (True, False):
            body = served(client, user, **case, **({"ids": "true"} if ids else {}))
            assert body == reference(db, user.user_id, case.get("color"), case.get("where"), ids), (case, ids)
            if not case:
                shown = len(read_points(body).x)
    return shown


def test_served_points_equal_the_row_by_row_query_and_follow_changes(client, db, make_user) -> None:  # type: ignore[no-untyped-def]
    alice = make_user("a@x.io")
    bob = make_user("b@x.io", role="member")
    setup_org(client, alice)
    assert client.put("/api/v1/metadata-schema", json=SCHEMA, headers=alice.bearer).status_code == 200
    assert client.post("/api/v1/folders", json={"path": "data/sub"}, headers=alice.bearer).status_code == 201
    data, _ = blobs(N, DIM)
    register(client, alice, data[: N // 2], "data", 0)
    register(client, alice, data[N // 2 :], "data/sub", N // 2)
    with db.write() as s:
        who = principal_for_user(s.get(User, alice.user_id), "bearer")
        sub = s.scalar(select(Folder.id).where(Folder.name == "sub"))
        permissions.grant(s, who, "folder", sub, bob.user_id, "viewer")
    build(client, alice, method="pca")
    ids = ids_by_title(db)

    assert same(client, db, alice) == N
    assert same(client, db, bob, [{}, {"color": "camera"}]) == N // 2  # only data/sub
    # served twice from the kept arrays: still equal
    assert same(client, db, alice, [{}, {"color": "score"}]) == N

    # a soft delete hides the point at once (read per request), restore shows it
    victim = ids["f25"]
    assert client.delete(f"/api/v1/items/{victim}", headers=alice.bearer).status_code == 200
    assert same(client, db, alice) == N - 1
    assert same(client, db, bob, [{}]) == N // 2 - 1
    assert victim not in (read_points(served(client, alice, ids="true")).ids or [])
    assert client.post(f"/api/v1/items/{victim}/restore", headers=alice.bearer).status_code == 200
    assert same(client, db, alice, [{}]) == N

    # a vector deleted behind the kept arrays' back (another process): its point goes
    with db.write() as s:
        s.execute(delete(ItemVector).where(ItemVector.item_id == uuid.UUID(ids["f3"])))
    assert same(client, db, alice, [{}, {"color": "camera"}]) == N - 1

    # a new item and an incremental build: one more point
    register(client, alice, blobs(1, DIM, seed=3)[0], "data", 100)  # f100, no colour values
    assert build(client, alice)["result"]["points_written"] == 1
    assert same(client, db, alice, [{}, {"color": "flag"}]) == N

    # a replaced vector then an incremental build: the same point count, the same vector count,
    # but the point moved; the stamp's newest vector id tells
    before = read_points(served(client, alice, ids="true"))
    r = client.patch(f"/api/v1/items/{ids['f7']}", headers=alice.bearer,
                     json={"client_metadata": {"clip": [9.0] * DIM, "camera": "cam1"}})
    assert r.status_code == 200, r.text
    job = build(client, alice)
    assert job["result"]["full"] is False and job["result"]["points_written"] == 1
    after = read_points(served(client, alice, ids="true"))
    assert len(after.x) == len(before.x) and after.header["points_total"] == N
    moved = {i: (int(x), int(y)) for i, x, y in zip(after.ids or [], after.x, after.y, strict=True)}
    was = {i: (int(x), int(y)) for i, x, y in zip(before.ids or [], before.x, before.y, strict=True)}
    assert moved[ids["f7"]] != was[ids["f7"]]
    assert same(client, db, alice) == N

    # a point written behind the kept arrays' back with no new vector (an incremental build of
    # another process): the point count tells
    with db.write() as s:
        map_id = s.scalar(select(MapPoint.map_id).limit(1))
        gone = s.execute(select(MapPoint.vector_id, MapPoint.item_id).where(
            MapPoint.item_id == uuid.UUID(ids["f9"]))).one()
        s.execute(delete(MapPoint).where(MapPoint.vector_id == gone[0]))
    assert same(client, db, alice, [{}]) == N - 1
    with db.write() as s:
        s.execute(MapPoint.__table__.insert().values(vector_id=gone[0], map_id=map_id, item_id=gone[1],
                                                     x=1, y=65535))
    assert same(client, db, alice, [{}, {"color": "camera"}]) == N


def test_packed_ids_are_sorted_and_found() -> None:
    shared = uuid.uuid4().bytes[:8]  # ids whose first 64 bits are the same (one millisecond's uuid7s)
    twins = [uuid.UUID(bytes=shared + uuid.uuid4().bytes[8:]) for _ in range(5)]
    raw = [uuid.uuid4() for _ in range(200)] + twins + [uuid.UUID(int=0), uuid.UUID(int=1 << 120)]
    items = np.sort(packed.ids_of(u.hex for u in raw))
    pack = packed.Packed(1, packed.Stamp(len(raw), len(raw), 1), np.zeros(len(raw), np.uint16),
                         np.zeros(len(raw), np.uint16), items)
    assert items.tobytes() == b"".join(sorted(u.bytes for u in raw))
    missing = uuid.UUID(bytes=shared + b"\xff" * 8)  # shares the first half only
    wanted = [raw[5], uuid.uuid4(), *twins[::-1], missing, raw[-2], raw[-1]]
    at, hit = pack.where(packed.ids_of(u.hex for u in wanted))
    assert hit.tolist() == [u != missing and u in raw for u in wanted]
    assert [bytes(items[i]).ljust(16, b"\0") for i in at] == [u.bytes for u in wanted if u in raw]
