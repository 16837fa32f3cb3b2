"""Any JSON a client can send to a route that stores values either gets a 4xx, or is stored and
then every read route that shows it answers 200 (issue 14).  Hypothesis over hostile JSON: deep
nesting, huge integers, NaN and ±Infinity, lone surrogates, NUL, long strings, many keys; on
SQLite and PostgreSQL."""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.files.conftest import add_items, folder
from tests.hostile_json import HOSTILE_METADATA, HOSTILE_VALUES, TEXT, as_text, fill

#: (method, path template, body template): ``%s`` is the hostile value as JSON text.
WRITES = [
    ("PATCH", "/api/v1/items/{item}", '{"client_metadata": %s}'),
    ("PATCH", "/api/v1/items/{item}", '{"client_metadata": %s, "merge_metadata": true}'),
    ("PATCH", "/api/v1/items/{item}", '{"name": %s}'),
    ("PATCH", "/api/v1/folders/{folder}", '{"client_metadata": %s}'),
    ("PATCH", "/api/v1/folders/{folder}", '{"description": %s}'),
    ("POST", "/api/v1/folders", '{"path": "new", "client_metadata": %s}'),
    ("POST", "/api/v1/folders", '{"path": %s}'),
    ("POST", "/api/v1/datasets", '{"title": %s}'),
    ("POST", "/api/v1/datasets", '{"title": "t", "description": %s}'),
    ("POST", "/v2/public/storage/folders", '{"name": "sdk", "clientMetadata": %s}'),
    ("POST", "/v2/public/storage/folders", '{"name": %s}'),
    ("POST", "/v2/public/datasets", '{"title": %s}'),
    ("PUT", "/api/v1/metadata-schema", '{"keys": {"k": {"type": "enum", "values": [%s]}}}'),
    ("PUT", "/api/v1/metadata-schema", '{"keys": %s}'),
    ("POST", "/api/v1/metadata-schema/validate", '{"items": [%s]}'),
    ("POST", "/public/user", '{"query_type": "projectwithuserrole", "query_method": "GET", "values": {"payload": %s}}'),
]
READS = [
    "/api/v1/items/{item}",
    "/api/v1/items?folder={folder}",
    "/api/v1/folders",
    "/api/v1/folders/{folder}",
    "/api/v1/folders/search?q=e",
    "/api/v1/folders/lookup?path=f",
    "/api/v1/datasets",
    "/api/v1/metadata-schema",
    "/api/v1/metadata-schema/versions",
    "/v2/public/storage/items/{item}",
    "/v2/public/storage/folders",
    "/v2/public/storage/folders/{folder}",
    "/v2/public/storage/folders/{folder}/items",
    "/v2/public/storage/search/folders?search=e",
    "/v2/public/datasets/list",
    "/v2/public/organisation/client-metadata-schema-v2",
]


@pytest.fixture
def world(client, make_user, db):  # type: ignore[no-untyped-def]
    alice = make_user("alice@x.io")
    f = folder(client, alice, "f")
    [item_id] = add_items(db, alice, f["id"], [{"name": "a.png"}])
    return alice, {"item": str(item_id), "folder": f["id"]}


@settings(max_examples=80, deadline=None, derandomize=True, database=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow,
                                 HealthCheck.data_too_large, HealthCheck.large_base_example])
@given(write=st.sampled_from(WRITES),
       value=st.one_of(HOSTILE_METADATA, HOSTILE_VALUES, TEXT, TEXT.map(json.dumps)))
def test_any_json_is_refused_or_stored_and_read_back(client, world, write: tuple[str, str, str], value: Any) -> None:  # type: ignore[no-untyped-def]
    alice, ids = world
    method, template, body = write
    r = client.request(method, template.format(**ids), content=(fill(body, as_text(value))).encode(),
                       headers={**alice.bearer, "Content-Type": "application/json"})
    assert r.status_code < 500, (template, fill(body, as_text(value))[:300], r.text[:500])
    if r.status_code >= 400:
        assert len(r.text) < 30_000, r.text[:500]  # bounded, whatever the input size
        return
    for read in READS:
        shown = client.get(read.format(**ids), headers=alice.bearer)
        assert shown.status_code == 200, (template, as_text(value)[:300], read, shown.text[:500])
        shown.json()  # and it is JSON
