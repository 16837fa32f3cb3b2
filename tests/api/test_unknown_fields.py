"""No field of a request body is silently ignored: an unknown one (a typo, another API's spelling)
is a 400 naming it and the fields the body accepts, and nothing is written.  Before, ``POST
/api/v1/folders {"path": "g", "descripton": "…"}`` created the folder without its description and
``PATCH /api/v1/items/{id} {"clientMetadata": …}`` answered 200 and changed nothing."""

from __future__ import annotations

import typing
from typing import Any

import pytest
from pydantic import BaseModel, ValidationError

from corral.closedmodel import ClosedModel, accepted_fields
from corral.core.integrations import parse_options
from corral.errors import ValidationFailed
from tests.api.test_query_params import _routes

#: Routes whose bodies are the Encord SDK's, read as the SDK writes them (tests/compat).
SDK_PATHS = ("/public", "/v2/public")


def _models(annotation: Any, seen: set[type]) -> list[type[BaseModel]]:
    out: list[type[BaseModel]] = []
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        if annotation in seen:
            return out
        seen.add(annotation)
        out.append(annotation)
        for field in annotation.model_fields.values():
            out += _models(field.annotation, seen)
    for arg in typing.get_args(annotation):
        out += _models(arg, seen)
    return out


def test_every_native_body_model_is_closed(app) -> None:  # type: ignore[no-untyped-def]
    """A route added later cannot forget: every model a native route reads its body into, and
    every model nested in one, refuses unknown fields."""
    checked = []
    for route in _routes(app.routes):
        if route.body_field is None or route.path.startswith(SDK_PATHS):
            continue
        for model in _models(route.body_field.field_info.annotation, set()):
            assert issubclass(model, ClosedModel), (route.path, model.__name__)
            checked.append(model.__name__)
    assert len(set(checked)) >= 25, checked


def _refused(r: Any, field: str, accepted: list[str]) -> None:
    assert r.status_code == 400, r.text
    body = r.json()
    assert body["code"] == "invalid_input", body
    [detail] = [d for d in body["errors"] if d.get("field") == field]
    assert detail["message"] == f"{field}: unknown field (accepted: {', '.join(accepted)})", detail
    assert detail["message"] in body["message"]


def test_a_misspelt_field_creates_nothing(client, world) -> None:  # type: ignore[no-untyped-def]
    alice, _, _ = world
    r = client.post("/api/v1/folders", json={"path": "g", "descripton": "typo"}, headers=alice.bearer)
    _refused(r, "descripton", ["client_metadata", "cloud_sync", "description", "exist_ok", "path"])
    assert client.get("/api/v1/folders/lookup", params={"path": "g"}, headers=alice.bearer).status_code == 404
    # spelt right, the same body is accepted and kept
    r = client.post("/api/v1/folders", json={"path": "g", "description": "typo"}, headers=alice.bearer)
    assert r.status_code == 201 and r.json()["description"] == "typo"


def test_another_apis_spelling_changes_nothing(client, world) -> None:  # type: ignore[no-untyped-def]
    alice, _, item_id = world
    r = client.patch(f"/api/v1/items/{item_id}", json={"clientMetadata": {"kept": False}, "name": "b.png"},
                     headers=alice.bearer)
    _refused(r, "clientMetadata", ["client_metadata", "description", "merge_metadata", "name"])
    item = client.get(f"/api/v1/items/{item_id}", headers=alice.bearer).json()
    assert item["client_metadata"] == {"kept": True} and item["name"] == "a.png"


def test_every_unknown_field_is_named_beside_other_errors(client, world) -> None:  # type: ignore[no-untyped-def]
    alice, f, _ = world
    r = client.patch(f"/api/v1/folders/{f['id']}", json={"nme": "x", "colour": 1, "description": 5},
                     headers=alice.bearer)
    assert r.status_code == 400, r.text
    fields = {d["field"]: d["message"] for d in r.json()["errors"]}
    assert set(fields) == {"nme", "colour", "description"}, fields
    assert fields["nme"] == "nme: unknown field (accepted: client_metadata, description, name)"
    assert fields["description"] == "description: expected a string, not an integer"
    assert client.get(f"/api/v1/folders/{f['id']}", headers=alice.bearer).json()["name"] == "f"


def test_nested_unknown_fields_are_named_where_they_are(client, world) -> None:  # type: ignore[no-untyped-def]
    alice, _, _ = world
    r = client.post("/api/v1/projects/00000000-0000-0000-0000-000000000001/tasks/actions",
                    json={"actions": [{"task": "t", "action": "submit", "colour": 1}]}, headers=alice.bearer)
    assert r.status_code == 400, r.text
    [detail] = [d for d in r.json()["errors"] if d["field"] == "actions[0].colour"]
    assert detail["message"].startswith("actions[0].colour: unknown field (accepted: action, assignee, ")


@pytest.mark.parametrize(("method", "path", "body", "field"), [
    ("POST", "/api/v1/datasets", {"title": "d", "desc": "x"}, "desc"),
    ("POST", "/api/v1/index/query", {"where": "", "pageSize": 5}, "pageSize"),
    ("POST", "/api/v1/tokens", {"name": "t", "expires": 5}, "expires"),
    ("POST", "/api/v1/items/sign", {"ids": [], "ttl": 60}, "ttl"),
    ("POST", "/api/v1/sessions", {"token": "x", "remember": True}, "remember"),
])
def test_representative_routes_refuse_unknown_fields(client, world, method, path, body, field) -> None:  # type: ignore[no-untyped-def]
    alice, _, _ = world
    r = client.request(method, path, json=body, headers=alice.bearer)
    assert r.status_code == 400, r.text
    assert any(d.get("field") == field and d["message"].startswith(f"{field}: unknown field (accepted: ")
               for d in r.json()["errors"]), r.json()


def test_integration_settings_name_the_accepted_settings() -> None:
    with pytest.raises(ValidationFailed) as caught:
        parse_options("s3", {"bucket": "b", "colour": "red"})
    [detail] = caught.value.details
    assert detail.field == "colour" and "bucket" in detail.message and "region" in detail.message
    assert "red" not in caught.value.message  # a value is never echoed (it may be a secret)


def test_aliases_are_what_the_message_names_and_other_errors_keep_their_words() -> None:
    from pydantic import Field, field_validator

    class Inner(ClosedModel):
        a: int

    class Body(ClosedModel):
        x: str = Field(alias="xName")
        inner: Inner | None = None
        n: int = 0

        @field_validator("n")
        @classmethod
        def _n(cls, v: int) -> int:
            if v > 5:
                raise ValueError("at most {five}")  # braces kept as written
            return v

    assert accepted_fields(Body) == ["inner", "n", "xName"]
    with pytest.raises(ValidationError) as caught:
        Body.model_validate({"xName": "s", "x": "dup", "inner": {"a": "q", "zz": 2}, "n": 9})
    got = {e["loc"]: (e["type"], e["msg"]) for e in caught.value.errors()}
    assert got == {
        ("x",): ("extra_forbidden", "unknown field (accepted: inner, n, xName)"),
        ("inner", "a"): ("int_type", "expected an integer, not a string"),  # a JSON type of its own
        ("inner", "zz"): ("extra_forbidden", "unknown field (accepted: a)"),
        ("n",): ("value_error", "Value error, at most {five}"),
    }
    assert Body.model_validate({"xName": "s"}).x == "s"
