"""Values that were answered 500, or stored and then broke reads (issue 14): each is a 400 that
names the field, nothing is committed, and every read route keeps answering 200."""

from __future__ import annotations

import json
from typing import Any

import pytest

from tests.hostile_json import fill


def send(client, user, method: str, path: str, body: Any = None, raw: str | None = None):  # type: ignore[no-untyped-def]
    """Send ``body`` as Python's json.dumps writes it (NaN, lone surrogates as escapes and all)."""
    text = raw if raw is not None else json.dumps(body)
    return client.request(method, path, content=text.encode(),
                          headers={**user.bearer, "Content-Type": "application/json"})


def nested(depth: int, leaf: Any = 1) -> Any:
    value = leaf
    for _ in range(depth):
        value = {"a": value}
    return value


def reads_all_answer_200(client, user, f: dict[str, Any], item_id: str) -> None:  # type: ignore[no-untyped-def]
    for path, params in (
        (f"/api/v1/items/{item_id}", {}),
        ("/api/v1/items", {"folder": f["id"]}),
        ("/api/v1/folders", {}),
        (f"/api/v1/folders/{f['id']}", {}),
        ("/api/v1/folders/search", {"q": "f"}),
        ("/api/v1/folders/lookup", {"path": "f"}),
        (f"/v2/public/storage/items/{item_id}", {}),
        (f"/v2/public/storage/folders/{f['id']}/items", {}),
        (f"/v2/public/storage/folders/{f['id']}", {}),
    ):
        r = client.get(path, params=params, headers=user.bearer)
        assert r.status_code == 200, (path, r.text)


@pytest.mark.parametrize("depth", [33, 300, 10_000])
def test_deep_metadata_is_400_and_not_committed(client, world, depth: int) -> None:  # type: ignore[no-untyped-def]
    alice, f, item_id = world
    value = nested(depth)
    # json.dumps itself recurses: write the deep text by hand.
    deep_text = '{"a": ' * depth + "1" + "}" * depth
    for method, path, text in (
        ("PATCH", f"/api/v1/items/{item_id}", fill('{"client_metadata": {"x": %s}}', deep_text)),
        ("PATCH", f"/api/v1/folders/{f['id']}", fill('{"client_metadata": {"x": %s}}', deep_text)),
        ("POST", "/api/v1/folders", fill('{"path": "g", "client_metadata": {"x": %s}}', deep_text)),
    ):
        r = send(client, alice, method, path, raw=text)
        assert r.status_code == 400, (path, r.text[:500])
        assert "nested more than" in r.json()["message"] and len(r.text) < 3000
    assert value is not None
    item = client.get(f"/api/v1/items/{item_id}", headers=alice.bearer).json()
    assert item["client_metadata"] == {"kept": True}
    assert client.get(f"/api/v1/folders/{f['id']}", headers=alice.bearer).json()["client_metadata"] == {"ok": 1}
    assert client.get("/api/v1/folders/lookup", params={"path": "g"}, headers=alice.bearer).status_code == 404
    reads_all_answer_200(client, alice, f, item_id)


@pytest.mark.parametrize("number", ["1" + "0" * 399, str(2**64 + 1), str(2**63), str(-(2**63) - 1), "1" + "0" * 5000])
def test_integers_beyond_64_bits_are_refused_not_turned_into_floats(client, world, number: str) -> None:  # type: ignore[no-untyped-def]
    alice, f, item_id = world
    r = send(client, alice, "PATCH", f"/api/v1/items/{item_id}", raw=fill('{"client_metadata": {"n": %s}}', number))
    assert r.status_code == 400, r.text
    assert "64-bit" in r.json()["message"] and r.json()["errors"][0]["field"] == "client_metadata.n"
    assert len(number) < 30 or number[:100] not in r.text  # a short prefix at most
    for edge in (2**63 - 1, -(2**63)):
        r = send(client, alice, "PATCH", f"/api/v1/items/{item_id}", {"client_metadata": {"n": edge}})
        assert r.status_code == 200 and r.json()["client_metadata"] == {"n": edge}
        assert client.get(f"/api/v1/items/{item_id}", headers=alice.bearer).json()["client_metadata"]["n"] == edge
    reads_all_answer_200(client, alice, f, item_id)


@pytest.mark.parametrize("text", ["NaN", "Infinity", "-Infinity", "1e999", "-1e999"])
def test_nan_and_infinity_are_refused_by_validate_and_by_storage(client, world, text: str) -> None:  # type: ignore[no-untyped-def]
    alice, f, item_id = world
    r = send(client, alice, "POST", "/api/v1/metadata-schema/validate", raw=fill('{"items": [{"x": %s}]}', text))
    assert r.status_code == 400, r.text
    r = send(client, alice, "PATCH", f"/api/v1/items/{item_id}", raw=fill('{"client_metadata": {"x": %s}}', text))
    assert r.status_code == 400, r.text


def test_lone_surrogates_and_nul_are_refused_everywhere(client, world) -> None:  # type: ignore[no-untyped-def]
    alice, f, item_id = world
    for bad in ("\ud800", "a\udfffb", "x\u0000y"):
        for method, path, body in (
            ("PATCH", f"/api/v1/items/{item_id}", {"client_metadata": {"k": bad}}),
            ("PATCH", f"/api/v1/items/{item_id}", {"client_metadata": {bad: 1}}),
            ("PATCH", f"/api/v1/items/{item_id}", {"name": bad}),
            ("PATCH", f"/api/v1/folders/{f['id']}", {"description": bad}),
            ("POST", "/api/v1/folders", {"path": "ok", "description": bad}),
            ("POST", "/api/v1/datasets", {"title": bad}),
            ("POST", "/api/v1/integrations", {"title": bad, "provider": "local", "settings": {"root": "/tmp"}}),
            ("POST", "/v2/public/ontologies", {"title": bad, "description": "", "editor": {}}),
            ("POST", "/v2/public/datasets", {"title": bad}),
            ("POST", "/v2/public/storage/folders", {"name": bad}),
            ("POST", "/public/user", {"query_type": "user", "query_method": "GET", "values": {"payload": bad}}),
        ):
            r = send(client, alice, method, path, body)
            assert r.status_code == 400, (path, bad, r.text)
    for params in ({"search": "a\u0000"}, {"q": "\u0000"}):
        assert client.get("/api/v1/folders/search", params=params, headers=alice.bearer).status_code == 400
    assert client.get("/api/v1/datasets", params={"search": "\u0000"}, headers=alice.bearer).status_code == 400
    assert client.get("/api/v1/datasets/a%00b", headers=alice.bearer).status_code == 400
    reads_all_answer_200(client, alice, f, item_id)
    assert client.get(f"/api/v1/items/{item_id}", headers=alice.bearer).json()["name"] == "a.png"


def test_numbers_too_large_for_the_database_in_paths_and_queries(client, world) -> None:  # type: ignore[no-untyped-def]
    alice, _, _ = world
    for version in (10**30, 2**63, -1):
        r = client.get(f"/api/v1/metadata-schema/versions/{version}", headers=alice.bearer)
        assert r.status_code == 400 and r.json()["errors"][0]["field"] == "version", r.text
    r = client.put("/api/v1/metadata-schema", params={"base_version": 10**30}, json={"keys": {}},
                   headers=alice.bearer)
    assert r.status_code == 400, r.text
    for path, name in (("/api/v1/datasets", "page_size"), ("/v2/public/storage/folders", "pageSize"),
                       ("/api/v1/folders/search", "page_size"), ("/api/v1/jobs", "limit")):
        r = client.get(path, params={name: 10**30}, headers=alice.bearer)
        assert r.status_code == 400, (path, r.text)


def test_rpc_payload_nested_10000_deep_is_a_400_in_the_sdk_envelope(client, world) -> None:  # type: ignore[no-untyped-def]
    alice, _, _ = world
    deep = "[" * 10_000 + "]" * 10_000
    for path in ("/public/user", "/public"):
        text = fill('{"query_type": "user", "query_method": "GET", "values": {"uid": null, "payload": %s}}', deep)
        r = send(client, alice, "POST", path, raw=text)
        assert r.status_code == 400, r.text
        assert r.json()["response"] == ["INVALID_ARGUMENTS_ERROR"]


def test_sizes_have_limits_and_errors_quote_only_a_prefix(client, world) -> None:  # type: ignore[no-untyped-def]
    alice, _, item_id = world
    key = "k" * 2_000_000
    r = send(client, alice, "PATCH", f"/api/v1/items/{item_id}", {"client_metadata": {key: 1}})
    assert r.status_code == 400 and len(r.text) < 3000, r.text[:3000]
    r = send(client, alice, "PATCH", f"/api/v1/items/{item_id}", {"client_metadata": {"v": "x" * 300_000}})
    assert r.status_code == 400 and "262,144" in r.json()["message"] and len(r.text) < 3000
    r = send(client, alice, "PATCH", f"/api/v1/items/{item_id}",
             {"client_metadata": {f"k{i}": i for i in range(1001)}})
    assert r.status_code == 400 and "1,000" in r.json()["message"]
    r = send(client, alice, "PATCH", f"/api/v1/items/{item_id}",
             {"client_metadata": {f"k{i}": "x" * 200_000 for i in range(6)}})
    assert r.status_code == 400 and "bytes of JSON" in r.json()["message"]
    # A schema key name, and an enum option (options can never be removed), are capped too.
    r = client.put("/api/v1/metadata-schema", json={"keys": {key: {"type": "text"}}}, headers=alice.bearer)
    assert r.status_code == 400 and len(r.text) < 3000
    r = client.put("/api/v1/metadata-schema", headers=alice.bearer,
                   json={"keys": {"e": {"type": "enum", "values": ["a", "o" * 257]}}})
    assert r.status_code == 400 and "at most 256 characters" in r.json()["message"] and len(r.text) < 3000
    r = client.put("/api/v1/metadata-schema", headers=alice.bearer,
                   json={"keys": {"e": {"type": "enum", "values": [f"v{i}" for i in range(257)]}}})
    assert r.status_code == 400 and "at most 256 options" in r.json()["message"]


def _searches(f: dict[str, Any]) -> list[tuple[str, str]]:
    """Every route and text query parameter that becomes an SQL LIKE pattern (or an equality)."""
    return [
        ("/v2/public/storage/folders", "search"), ("/v2/public/storage/search/folders", "search"),
        (f"/v2/public/storage/folders/{f['id']}/items", "search"), ("/v2/public/storage/search/items", "search"),
        (f"/v2/public/storage/folders/{f['id']}/folders", "search"),
        ("/api/v1/folders/search", "q"), ("/api/v1/items", "q"), ("/api/v1/datasets", "search"),
        ("/v2/public/datasets/list", "titleLike"), ("/v2/public/datasets/list", "descriptionEq"),
        ("/v2/public/ontologies", "titleLike"), ("/v2/public/projects", "descLike"),
        ("/api/v1/index/presets", "search"), ("/api/v1/index/collections", "search"),
    ]


@pytest.mark.parametrize("text", ["x" * 50_001, "%" * 12_000, "é" * 10_001])
def test_a_search_of_more_than_10000_characters_is_a_400_naming_it(client, world, text: str) -> None:  # type: ignore[no-untyped-def]
    """SQLite refuses a LIKE pattern of more than 50,000 bytes ("LIKE or GLOB pattern too
    complex"): every search of more than 50,000 characters was a 500 there."""
    alice, f, _ = world
    for path, name in _searches(f):
        params = {name: text, **({"folder": f["id"]} if path == "/api/v1/items" else {})}
        r = client.get(path, params=params, headers=alice.bearer)
        assert r.status_code == 400, (path, name, r.text[:300])
        assert r.json()["errors"][0]["field"] == name and "at most 10,000 characters" in r.json()["message"]
    body = {"query_type": "projectwithuserrole", "query_method": "GET", "values": {"uid": None, "payload": {
        "filter": {"title_like": text}}}}
    r = send(client, alice, "POST", "/public/user", body)
    assert r.status_code == 400 and "title_like: at most 10,000 characters" in r.json()["payload"], r.text[:300]


def test_a_search_of_10000_characters_is_answered(client, world) -> None:  # type: ignore[no-untyped-def]
    alice, f, _ = world
    for path, name in _searches(f):
        params = {name: "%é" * 5_000, **({"folder": f["id"]} if path == "/api/v1/items" else {})}
        r = client.get(path, params=params, headers=alice.bearer)
        assert r.status_code == 200, (path, name, r.text[:300])


def test_trace_and_wrong_methods_are_405_with_allow(client, world) -> None:  # type: ignore[no-untyped-def]
    alice, _, item_id = world
    for method, path in (("TRACE", "/api/v1/me"), ("PUT", "/api/v1/jobs"), ("DELETE", "/api/v1/metadata-schema")):
        r = client.request(method, path, headers=alice.bearer)
        assert r.status_code == 405, r.text
        assert r.headers["allow"] and method not in r.headers["allow"].split(", ")
        assert r.json()["code"] == "method_not_allowed"


def test_item_page_sizes_out_of_range_are_a_400_naming_the_field(client, world) -> None:  # type: ignore[no-untyped-def]
    alice, f, _ = world
    for value in (10**30, 2**63, -1, 0, "abc", "1e3", 10_001):
        r = client.get("/api/v1/items", params={"folder": f["id"], "page_size": value}, headers=alice.bearer)
        assert r.status_code == 400, (value, r.text)
        assert r.json()["errors"][0]["field"] == "page_size", r.text
    r = client.get("/api/v1/items", params={"folder": f["id"], "page_size": 10_000}, headers=alice.bearer)
    assert r.status_code == 200 and len(r.json()["items"]) == 1, r.text


#: Keys the Encord SDK's JSON bodies carry; routes that read a body as a plain object get each.
SDK_KEYS = ("itemUuids", "externalFiles", "dataItems", "integrationHash", "ignoreErrors", "signUrls",
            "name", "description", "clientMetadata", "title", "folderUuid", "itemUuid", "newParentUuid",
            "folderUuids", "itemsToUpdate", "folders", "items", "keys", "editor", "structure", "filters")
WRONG_TYPES: tuple[Any, ...] = (5, -1, True, "x", None, [5], [[]], [None], {"a": 1}, 1e300)


def test_every_body_field_of_a_wrong_type_is_a_4xx(client, world) -> None:  # type: ignore[no-untyped-def]
    """Each field a route's body reads (its model's, or the SDK's keys where the body is a plain
    object), set to values of every JSON type: never a 5xx. `POST /v2/public/storage/items/get-bulk`
    with `{"itemUuids": 5}` was a 500 (it iterated the number)."""
    import re

    from pydantic import BaseModel

    from tests.api.test_query_params import _routes

    alice, f, _ = world
    sent, bad = 0, []
    for route in _routes(client.app.routes):
        if route.body_field is None:
            continue
        model = route.body_field.field_info.annotation
        fields = ([fi.alias or name for name, fi in model.model_fields.items()]
                  if isinstance(model, type) and issubclass(model, BaseModel) else list(SDK_KEYS))
        path = re.sub(r"\{[^}]+\}", "00000000-0000-0000-0000-000000000001",
                      route.path.replace("{folder_id}", f["id"]).replace("{rest:path}", "x"))
        for method in sorted(route.methods - {"HEAD"}):
            for body in [*WRONG_TYPES, *({field: v} for field in fields for v in WRONG_TYPES)]:
                r = send(client, alice, method, path, body)
                sent += 1
                if r.status_code >= 500 and r.status_code != 501:  # 501: an SDK call corral lacks
                    bad.append((method, route.path, body, r.status_code))
    assert bad == [], bad[:20]
    assert sent > 2000
    r = send(client, alice, "POST", "/v2/public/storage/items/get-bulk", {"itemUuids": 5})
    assert r.status_code == 400 and r.json()["errors"][0]["field"] == "itemUuids", r.text
