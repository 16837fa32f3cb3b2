"""Validation and storage follow one set of rules from one place: for any JSON a client sends as
clientMetadata, ``POST /api/v1/metadata-schema/validate`` says OK if and only if storing it
(``PATCH /api/v1/items/{id}``) succeeds, and what is stored reads back equal to what validate
showed.  On SQLite and PostgreSQL."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import HealthCheck, assume, given, settings

from tests.files.conftest import add_items, folder
from tests.hostile_json import HOSTILE_METADATA, as_text, fill, same_json

SCHEMA = {"keys": {"score": {"type": "number"}, "camera": {"type": "varchar", "max_length": 20},
                   "when": {"type": "datetime"}, "tags": {"type": "enum", "values": ["a", "b"]}}}


@pytest.fixture
def world(client, make_user, db):  # type: ignore[no-untyped-def]
    alice = make_user("alice@x.io")
    assert client.put("/api/v1/metadata-schema", json=SCHEMA, headers=alice.bearer).status_code == 200
    f = folder(client, alice, "f")
    [item_id] = add_items(db, alice, f["id"], [{"name": "a.png", "meta": {"start": 1}}])
    return alice, str(item_id)


def _post(client, user, method: str, path: str, text: str):  # type: ignore[no-untyped-def]
    return client.request(method, path, content=text.encode(),
                          headers={**user.bearer, "Content-Type": "application/json"})


@settings(max_examples=60, deadline=None, derandomize=True, database=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow,
                                 HealthCheck.data_too_large, HealthCheck.large_base_example])
@given(meta=HOSTILE_METADATA)
def test_validate_says_ok_iff_storing_succeeds_and_reads_back_equal(client, world, meta: Any) -> None:  # type: ignore[no-untyped-def]
    assume(meta is not None)  # null means "leave the metadata alone" in a PATCH
    alice, item_id = world
    text = as_text(meta)
    v = _post(client, alice, "POST", "/api/v1/metadata-schema/validate", fill('{"items": [%s]}', text))
    assert v.status_code in (200, 400), v.text[:500]
    result = v.json()["results"][0] if v.status_code == 200 else None
    before = client.get(f"/api/v1/items/{item_id}", headers=alice.bearer).json()["client_metadata"]
    p = _post(client, alice, "PATCH", f"/api/v1/items/{item_id}", fill('{"client_metadata": %s}', text))
    after = client.get(f"/api/v1/items/{item_id}", headers=alice.bearer)
    assert after.status_code == 200, after.text[:500]
    if result is not None and result["ok"]:
        assert p.status_code == 200, (text[:300], p.text[:500])
        assert same_json(p.json()["client_metadata"], result["metadata"])
        assert same_json(after.json()["client_metadata"], result["metadata"])
    else:
        assert p.status_code == 400, (text[:300], v.text[:300], p.text[:500])
        assert len(p.text) < 5000 and len(v.text) < 5000
        assert after.json()["client_metadata"] == before
