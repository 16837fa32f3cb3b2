"""Every path that writes an embedding follows one rule: a list of the key's size of finite numbers
within a 32-bit float's range, and, under the cosine metric, not all zeros (a zero vector has no
direction: its cosine similarity to anything is 0/0).  The native item update, the SDK's bulk and
single-item updates, manifest registration (native and the SDK's upload job) and the metadata
validation endpoint all refuse such a value with a 400 naming the key; a key whose metric is
changed to cosine while it stores zero vectors is refused (409) naming how many."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest
from sqlalchemy import func, select
from starlette.testclient import TestClient

from corral.api.app import create_app
from corral.db.tables import Item, ItemVector
from tests.files.conftest import add_items, folder

DIM = 4
URL = "/api/v1/metadata-schema"
ZERO_WORDS = "a zero vector has no direction"


@pytest.fixture
def client(settings, db) -> Iterator[TestClient]:  # type: ignore[no-untyped-def]
    with TestClient(create_app(settings, db=db, run_worker=True), raise_server_exceptions=False) as c:
        yield c


def schema(metric: str | None) -> dict[str, Any]:
    clip: dict[str, Any] = {"type": "embedding", "size": DIM}
    if metric is not None:
        clip["metric"] = metric
    return {"keys": {"clip": clip}}


def setup(client, db, user, metric: str | None, items: int = 1) -> tuple[str, list[str]]:  # type: ignore[no-untyped-def]
    assert client.put(URL, json=schema(metric), headers=user.bearer).status_code == 200
    f = folder(client, user, "f")
    ids = add_items(db, user, f["id"], [{"name": f"i{i}.png", "meta": {}} for i in range(items)])
    return f["id"], [str(i) for i in ids]


def stored(db) -> int:  # type: ignore[no-untyped-def]
    with db.read() as s:
        return int(s.scalar(select(func.count()).select_from(ItemVector)) or 0)


def write_paths(client, user, f: str, item: str, value: Any) -> dict[str, Any]:  # type: ignore[no-untyped-def]
    """The answer of each metadata write path (the item's own) for ``{"clip": value}``."""
    meta = {"clip": value}
    h = user.bearer
    return {
        "native update": client.patch(f"/api/v1/items/{item}", json={"client_metadata": meta}, headers=h),
        "SDK bulk update": client.patch("/v2/public/storage/items/patch-bulk", headers=h,
                                        json={"itemPatches": {item: {"clientMetadata": meta}}}),
        "SDK item update": client.patch(f"/v2/public/storage/folders/{f}/items/{item}", headers=h,
                                        json={"clientMetadata": meta}),
        "validate": client.post(f"{URL}/validate", json={"items": [meta]}, headers=h),
    }


ZEROS = [[0.0] * DIM, [0] * DIM, [-0.0, 0.0, -0.0, 0.0], [1e-50] * DIM]  # the last: 0 as float32


def test_a_zero_vector_is_refused_under_cosine_on_every_item_write_path(client, db, make_user) -> None:  # type: ignore[no-untyped-def]
    alice = make_user("alice@x.io")
    f, (item,) = setup(client, db, alice, None)
    for metric in (None, "cosine"):  # the default, or named
        assert client.put(URL, json=schema(metric), headers=alice.bearer).status_code == 200
        for zero in ZEROS:
            for path, r in write_paths(client, alice, f, item, zero).items():
                if path == "validate":  # a report, not a refusal
                    assert r.status_code == 200, r.text
                    problems = r.json()["results"][0]["errors"]
                    assert len(problems) == 1 and ZERO_WORDS in problems[0]["message"], (path, r.text)
                    continue
                assert r.status_code == 400, (path, zero, r.text)
                body = r.json()
                assert ZERO_WORDS in body["message"] and "cosine" in body["message"], (path, body)
                assert body["errors"][0]["field"].endswith("etadata.clip"), (path, body)
    assert stored(db) == 0
    # a tiny vector that is not 0 as a float32 has a direction, and is stored
    r = client.patch(f"/api/v1/items/{item}", json={"client_metadata": {"clip": [0.0, 0.0, 0.0, 1e-45]}},
                     headers=alice.bearer)
    assert r.status_code == 200, r.text
    assert stored(db) == 1


@pytest.mark.parametrize("metric", ["dot", "l2"])
def test_a_zero_vector_is_stored_under_dot_and_l2(client, db, make_user, metric) -> None:  # type: ignore[no-untyped-def]
    alice = make_user("alice@x.io")
    f, (item,) = setup(client, db, alice, metric)
    for path, r in write_paths(client, alice, f, item, [-0.0] * DIM).items():
        assert r.status_code == 200, (path, r.text)
    assert stored(db) == 1
    with db.read() as s:  # stored as +0.0 (no score tells them apart): one zero-bytes form
        assert s.scalar(select(ItemVector.vec)) == bytes(4 * DIM)


WRONG = [
    ([1.0] * (DIM - 1), f"{DIM - 1} numbers where the embedding has {DIM}"),
    ([1.0] * (DIM + 1), f"{DIM + 1} numbers where the embedding has {DIM}"),
    ([], f"0 numbers where the embedding has {DIM}"),
    ([1e39] + [1.0] * (DIM - 1), "beyond a 32-bit float's range"),
    ([True] + [1.0] * (DIM - 1), "something that is not a number"),
    (["1"] + [1.0] * (DIM - 1), "something that is not a number"),
]


def test_wrong_sizes_and_numbers_are_refused_on_every_item_write_path(client, db, make_user) -> None:  # type: ignore[no-untyped-def]
    alice = make_user("alice@x.io")
    f, (item,) = setup(client, db, alice, "l2")
    for value, words in WRONG:
        for path, r in write_paths(client, alice, f, item, value).items():
            if path == "validate":
                problems = r.json()["results"][0]["errors"]
                assert len(problems) == 1 and words in problems[0]["message"], (path, r.text)
                continue
            assert r.status_code == 400, (path, r.text)
            assert words in r.json()["message"], (path, r.text)
            assert r.json()["errors"][0]["field"].endswith("etadata.clip"), (path, r.text)
    assert stored(db) == 0


def test_non_finite_numbers_are_refused_on_every_item_write_path(client, db, make_user) -> None:  # type: ignore[no-untyped-def]
    """NaN and infinity are not JSON; a body that carries them anyway (Python's ``json`` writes
    them) is refused, naming where, before it reaches the store."""
    alice = make_user("alice@x.io")
    f, (item,) = setup(client, db, alice, "l2")
    for bad in ("NaN", "Infinity", "-Infinity"):
        raw = json.dumps({"client_metadata": {"clip": [1.0, 1.0, 1.0, 0.0]}}).replace("0.0]", bad + "]")
        r = client.patch(f"/api/v1/items/{item}", content=raw, headers={**alice.bearer,
                                                                          "Content-Type": "application/json"})
        assert r.status_code == 400, r.text
        raw = json.dumps({"itemPatches": {item: {"clientMetadata": {"clip": [1.0, 1.0, 1.0, 0.0]}}}})
        r = client.patch("/v2/public/storage/items/patch-bulk", content=raw.replace("0.0]", bad + "]"),
                         headers={**alice.bearer, "Content-Type": "application/json"})
        assert r.status_code == 400, r.text
    assert stored(db) == 0


def _register(client, user, meta: dict[str, Any], sdk: bool) -> dict[str, Any]:  # type: ignore[no-untyped-def]
    """Register one file with ``meta`` (native import, or the SDK's upload job); the job's end."""
    h = user.bearer
    r = client.post("/api/v1/integrations", headers=h, json={
        "title": "media", "provider": "s3", "strict_client_only": True,
        "settings": {"bucket": "media", "region": "eu-west-1", "access_key_id": "AKIA", "secret_access_key": "s"}})
    assert r.status_code == 201, r.text
    integration = r.json()["id"]
    manifest = {"images": [{"objectUrl": "s3://media/a.jpg", "title": "a", "imageMetadata": {"width": 4, "height": 3},
                            "clientMetadata": meta}]}
    f = folder(client, user, "reg")
    if sdk:
        r = client.post(f"/v2/public/storage/folders/{f['id']}/data-upload-jobs", headers=h,
                        json={"externalFiles": manifest, "integrationHash": integration})
        assert r.status_code == 200, r.text
        job = r.json()
        for _ in range(60):
            state = client.get(f"/v2/public/storage/folders/{f['id']}/data-upload-jobs/{job}",
                               params={"timeoutSeconds": 10}, headers=h).json()
            if state["status"] not in ("PENDING", "RUNNING"):
                return state  # type: ignore[no-any-return]
        raise AssertionError("the upload job did not finish")
    r = client.post("/api/v1/imports", params={"folder": "reg", "integration": "media"},
                    content=json.dumps(manifest), headers=h)
    assert r.status_code == 202, r.text
    for _ in range(60):
        state = client.get(f"/api/v1/imports/{r.json()['job_id']}", params={"wait": 10}, headers=h).json()
        if state["status"] != "PENDING":
            return state  # type: ignore[no-any-return]
    raise AssertionError("the import did not finish")


@pytest.mark.parametrize("sdk", [False, True], ids=["native import", "SDK upload job"])
def test_registration_refuses_a_zero_vector_under_cosine_naming_the_entry(client, db, make_user, sdk) -> None:  # type: ignore[no-untyped-def]
    alice = make_user("alice@x.io")
    assert client.put(URL, json=schema(None), headers=alice.bearer).status_code == 200
    state = _register(client, alice, {"clip": [0.0] * DIM}, sdk)
    assert ZERO_WORDS in json.dumps(state), state
    with db.read() as s:
        assert s.scalar(select(func.count()).select_from(Item)) == 0
    assert stored(db) == 0


def test_a_metric_changed_to_cosine_over_stored_zero_vectors_is_refused(client, db, make_user) -> None:  # type: ignore[no-untyped-def]
    alice = make_user("alice@x.io")
    f, ids = setup(client, db, alice, "dot", items=3)
    for item, v in zip(ids, ([0.0] * DIM, [0.0] * DIM, [1.0] * DIM), strict=True):
        r = client.patch(f"/api/v1/items/{item}", json={"client_metadata": {"clip": v}}, headers=alice.bearer)
        assert r.status_code == 200, r.text
    for metric in ("cosine", None):  # named, or the default
        for params in ({}, {"dry_run": "true"}):
            r = client.put(URL, json=schema(metric), params=params, headers=alice.bearer)
            assert r.status_code == 409, r.text
            assert "'clip' stores 2 zero vectors" in r.json()["message"], r.text
            assert [e["field"] for e in r.json()["errors"]] == ["keys.clip.metric"]
    assert client.get(URL, headers=alice.bearer).json()["schema"]["keys"]["clip"]["metric"] == "dot"
    # to l2 is fine (zeros are the origin there); then back to cosine still refused
    assert client.put(URL, json=schema("l2"), headers=alice.bearer).status_code == 200
    assert client.put(URL, json=schema("cosine"), headers=alice.bearer).status_code == 409
    # once they are replaced or deleted, the change goes through
    r = client.patch(f"/api/v1/items/{ids[0]}", json={"client_metadata": {"clip": [1.0, 0, 0, 0]}},
                     headers=alice.bearer)
    assert r.status_code == 200, r.text
    assert client.patch(f"/api/v1/items/{ids[1]}", json={"client_metadata": {}},
                        headers=alice.bearer).status_code == 200
    r = client.put(URL, json=schema("cosine"), headers=alice.bearer)
    assert r.status_code == 200, r.text
    assert stored(db) == 2
    r = client.post("/api/v1/index/similar", json={"item": ids[2], "k": 5, "include_query_items": True},
                    headers=alice.bearer)
    assert r.status_code == 200, r.text
    assert [h["id"] for h in r.json()["items"]][0] == ids[2]
