"""A body field takes only its own JSON type (pydantic's lax mode read ``true`` as 1 and ``"yes"``
as true), and an error names the field as the client wrote it."""

from __future__ import annotations

from tests.api.test_request_encoding import _paths, _refused
from tests.files.conftest import folder


def test_a_scalar_field_takes_only_its_own_json_type(client, make_user) -> None:  # type: ignore[no-untyped-def]
    """pydantic's lax mode read ``"page_size": true`` as 1, ``"2"`` as 2, and ``"exist_ok": "yes"``
    or ``1`` as true: each is now a 400 naming the field, the type expected and the type sent."""
    alice = make_user("alice@x.io")
    folder(client, alice, "f")
    for value, sent in ((True, "a boolean"), ("2", "a string"), (2.5, "a number")):
        r = client.post("/api/v1/index/query", json={"page_size": value}, headers=alice.bearer)
        body = _refused(r, "page_size", "expected an integer")
        assert f"not {sent}" in body["message"], body
    r = client.post("/api/v1/index/facets", json={"keys": ["@type"], "top": True}, headers=alice.bearer)
    _refused(r, "top", "expected an integer, not a boolean")
    for value in ("yes", 1, "true"):
        r = client.post("/api/v1/folders", json={"path": "g", "exist_ok": value}, headers=alice.bearer)
        _refused(r, "exist_ok", "expected a boolean")
    r = client.post("/api/v1/folders", json={"path": 7}, headers=alice.bearer)
    _refused(r, "path", "expected a string, not an integer")
    assert _paths(client, alice) == ["f"]
    # with an unknown field beside it, both are named
    r = client.post("/api/v1/folders", json={"path": "g", "exist_ok": 1, "colour": "red"}, headers=alice.bearer)
    body = _refused(r, "exist_ok")
    assert any(d.get("field") == "colour" for d in body["errors"]), body
    # each type as JSON writes it is taken, null where the field may be null
    for size in (2, 2.0):  # an integer, as JSON Schema counts them (the document says integer)
        r = client.post("/api/v1/index/query", json={"page_size": size, "count": True}, headers=alice.bearer)
        assert r.status_code == 200, r.text
    r = client.post("/api/v1/folders", json={"path": "f", "exist_ok": True}, headers=alice.bearer)
    assert r.status_code in (200, 201), r.text
    r = client.patch(f"/api/v1/folders/{r.json()['id']}", json={"name": None, "description": "d"},
                     headers=alice.bearer)
    assert r.status_code == 200 and r.json()["description"] == "d", r.text


def test_a_body_field_called_path_is_named_path(client, make_user) -> None:  # type: ignore[no-untyped-def]
    """FastAPI's location words (``body``, ``path``, ``query``) were dropped from every place in an
    error's location, so the folder's own field ``path`` was named ``body.path``."""
    alice = make_user("alice@x.io")
    r = client.post("/api/v1/folders", json={"path": ["a"]}, headers=alice.bearer)
    body = _refused(r, "path")
    assert body["message"].startswith("path: "), body
    r = client.get("/api/v1/folders/search", params={"page_size": "x"}, headers=alice.bearer)
    _refused(r, "page_size")
