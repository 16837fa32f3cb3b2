"""What a request says about itself is never ignored: a compressed body (Content-Encoding), bytes
of a path or query that are not UTF-8 once percent-decoded, a query parameter given twice, a key
given twice in one JSON object.  Each was read as something nobody sent (compressed bytes as
JSON, U+FFFD for each bad byte, the last value of several); each is now a 400 in the one error
shape naming the field, on the native and the Encord-compatible routes, and nothing is written."""

from __future__ import annotations

import gzip
import json
import zlib
from typing import Any

import pytest

from tests.files.conftest import folder


def _refused(r: Any, field: str, *words: str) -> dict[str, Any]:
    assert r.status_code == 400, r.text
    body = r.json()
    assert body["ok"] is False and body["code"] in ("invalid_input", "validation_failed"), body
    assert any(d.get("field") == field for d in body["errors"]), body
    for word in words:
        assert word in body["message"], body
    return dict(body)


def _paths(client, user) -> list[str]:  # type: ignore[no-untyped-def]
    r = client.get("/api/v1/folders", headers=user.bearer)
    assert r.status_code == 200, r.text
    return sorted(f["path"] for f in r.json())


JSON = {"Content-Type": "application/json"}


@pytest.mark.parametrize("coding", ["gzip", "deflate", "br", "GZIP, identity"])
def test_a_compressed_body_is_refused_not_read_as_json(client, make_user, coding) -> None:  # type: ignore[no-untyped-def]
    alice = make_user("alice@x.io")
    before = _paths(client, alice)
    plain = json.dumps({"path": "zipped"}).encode()
    bodies = [plain]  # labelled compressed but sent plain: the label was ignored, and the folder made
    if coding.startswith(("gzip", "GZIP")):
        bodies.append(gzip.compress(plain))
        # a compression bomb: 10 MB of zeros in about 10 kB; corral never inflates it
        bodies.append(gzip.compress(b"[" + b"0," * 5_000_000 + b"0]"))
    elif coding == "deflate":
        bodies.append(zlib.compress(plain))
    for body in bodies:
        r = client.post("/api/v1/folders", content=body,
                        headers={**alice.bearer, **JSON, "Content-Encoding": coding})
        _refused(r, "Content-Encoding", "uncompressed")
    # the Encord SDK's routes share the rule
    f = folder(client, alice, "named")
    r = client.patch(f"/v2/public/storage/folders/{f['id']}", content=gzip.compress(b'{"name": "renamed"}'),
                     headers={**alice.bearer, **JSON, "Content-Encoding": coding})
    _refused(r, "Content-Encoding")
    assert _paths(client, alice) == sorted([*before, "named"])


def test_identity_is_no_encoding(client, make_user) -> None:  # type: ignore[no-untyped-def]
    alice = make_user("alice@x.io")
    r = client.post("/api/v1/folders", content=b'{"path": "plain"}',
                    headers={**alice.bearer, **JSON, "Content-Encoding": "identity"})
    assert r.status_code == 201, r.text


@pytest.mark.parametrize("raw", ["%FF", "%ED%A0%80", "%C0%AF", "a%E9b"])
def test_percent_encoded_bytes_that_are_not_utf8_are_refused(client, make_user, raw) -> None:  # type: ignore[no-untyped-def]
    """Each bad byte was read as U+FFFD: a search for it answered 200, a lookup 404 "folder
    '�' not found", a name nobody sent."""
    alice = make_user("alice@x.io")
    f = folder(client, alice, "f\ufffd")  # a real U+FFFD, sent as UTF-8, is text like any other
    r = client.get(f"/api/v1/folders/search?q={raw}", headers=alice.bearer)
    _refused(r, "q", "not UTF-8")
    r = client.get(f"/api/v1/folders/lookup?path=f{raw}", headers=alice.bearer)
    _refused(r, "path", "not UTF-8")
    r = client.get(f"/api/v1/datasets/{raw}", headers=alice.bearer)
    _refused(r, "path", "not UTF-8")
    r = client.get(f"/api/v1/folders/search?{raw}=1", headers=alice.bearer)
    _refused(r, "query", "not UTF-8")
    r = client.get(f"/v2/public/storage/folders/{f['id']}/items?search={raw}", headers=alice.bearer)
    _refused(r, "search", "not UTF-8")
    # what is UTF-8 still reads as it was sent, U+FFFD included
    r = client.get("/api/v1/folders/lookup?path=f%EF%BF%BD", headers=alice.bearer)
    assert r.status_code == 200 and r.json()["id"] == f["id"], r.text
    r = client.get("/api/v1/folders/search?q=caf%C3%A9+x", headers=alice.bearer)
    assert r.status_code == 200, r.text


def test_a_query_parameter_given_twice_is_refused_unless_a_list(client, make_user) -> None:  # type: ignore[no-untyped-def]
    """FastAPI read the last of them: ``page_size=1&page_size=500`` gave a page of 500."""
    alice = make_user("alice@x.io")
    f = folder(client, alice, "f")
    r = client.get("/api/v1/folders/search?page_size=1&page_size=500", headers=alice.bearer)
    _refused(r, "page_size", "more than once")
    r = client.get(f"/api/v1/items?folder={f['id']}&order=name&order=created_at", headers=alice.bearer)
    _refused(r, "order", "more than once")
    r = client.get(f"/v2/public/storage/folders/{f['id']}/items?pageSize=1&pageSize=2", headers=alice.bearer)
    _refused(r, "pageSize", "more than once")
    # a list takes its values repeated
    r = client.get(f"/api/v1/items?folder={f['id']}&type=image&type=video", headers=alice.bearer)
    assert r.status_code == 200, r.text
    r = client.get(f"/v2/public/storage/folders/{f['id']}/items?itemTypes=image&itemTypes=video",
                   headers=alice.bearer)
    assert r.status_code == 200, r.text


def test_a_key_given_twice_in_one_object_is_refused(client, make_user) -> None:  # type: ignore[no-untyped-def]
    """The last of them was taken: ``{"path": "a", "path": "b"}`` made folder b, where a proxy or
    a log that read the first saw a."""
    alice = make_user("alice@x.io")
    before = _paths(client, alice)
    r = client.post("/api/v1/folders", content=b'{"path": "dup-a", "path": "dup-b"}',
                    headers={**alice.bearer, **JSON})
    _refused(r, "path", "more than once")
    r = client.post("/api/v1/folders", content=b'{"path": "m", "client_metadata": {"k": {"x": 1, "x" : 2}}}',
                    headers={**alice.bearer, **JSON})
    _refused(r, "client_metadata.k.x", "more than once")
    assert _paths(client, alice) == before
    # the Encord SDK's routes, and metadata sent as a JSON string inside a body
    f = folder(client, alice, "f")
    r = client.patch(f"/v2/public/storage/folders/{f['id']}", content=b'{"name": "g", "name": "h"}',
                     headers={**alice.bearer, **JSON})
    _refused(r, "name", "more than once")
    r = client.patch(f"/v2/public/storage/folders/{f['id']}",
                     json={"clientMetadata": '{"a": 1, "a": 2}'}, headers=alice.bearer)
    assert r.status_code == 400 and "more than once" in r.json()["message"], r.text
    got = client.get(f"/api/v1/folders/{f['id']}", headers=alice.bearer).json()
    assert (got["name"], got["client_metadata"]) == ("f", {})
    # the same key in two objects, or a string that looks like a key, is no duplicate
    r = client.post("/api/v1/folders",
                    content=b'{"path": "ok", "client_metadata": {"a": {"x": 1}, "b": {"x": "\\" : \\":"}}}',
                    headers={**alice.bearer, **JSON})
    assert r.status_code == 201, r.text
    assert r.json()["client_metadata"] == {"a": {"x": 1}, "b": {"x": '" : ":'}}


def test_the_parameters_that_may_repeat_are_the_lists_fastapi_reads(app) -> None:  # type: ignore[no-untyped-def]
    """``CorralRoute.list_query`` (what may be repeated) is what FastAPI itself reads as a list,
    on every route: a list parameter refused when repeated, or a scalar let through, would show."""
    from fastapi._compat import field_annotation_is_sequence

    from tests.api.test_query_params import _routes

    def query_fields(dependant: Any) -> list[Any]:
        return [*dependant.query_params, *(f for d in dependant.dependencies for f in query_fields(d))]

    seen: set[str] = set()
    for route in _routes(app.routes):
        fields = query_fields(route.dependant)
        lists = {f.alias for f in fields if field_annotation_is_sequence(f.field_info.annotation)}
        assert route.list_query == lists, route.path
        seen |= lists
    assert {"type", "itemTypes", "assignee", "uuids"} <= seen



@pytest.mark.parametrize("charset", ["latin-1", "ISO-8859-1", '"utf-16"', "windows-1252"])
def test_a_json_body_labelled_with_another_charset_is_refused(client, make_user, charset) -> None:  # type: ignore[no-untyped-def]
    """JSON is UTF-8: a body labelled ``charset=latin-1`` was read as UTF-8 all the same (its
    label ignored, an é sent as one byte a confusing "not valid UTF-8 ... column 1")."""
    alice = make_user("alice@x.io")
    for path, body in (("/api/v1/folders", {"path": "labelled"}),
                       ("/v2/public/storage/folders", {"name": "labelled"})):
        r = client.post(path, content=json.dumps(body).encode(), headers={
            **alice.bearer, "Content-Type": f"application/json; charset={charset}"})
        _refused(r, "Content-Type", "UTF-8")
    assert "labelled" not in _paths(client, alice)


@pytest.mark.parametrize("charset", ["utf-8", "UTF-8", '"utf-8"', "utf8"])
def test_a_json_body_labelled_utf8_is_read(client, make_user, charset) -> None:  # type: ignore[no-untyped-def]
    alice = make_user("alice@x.io")
    r = client.post("/api/v1/folders", content='{"path": "été"}'.encode(), headers={
        **alice.bearer, "Content-Type": f"application/json; charset={charset}"})
    assert r.status_code == 201 and r.json()["name"] == "été", r.text


def test_a_body_that_is_not_utf8_says_where(client, make_user) -> None:  # type: ignore[no-untyped-def]
    """orjson says "str is not valid UTF-8: surrogates not allowed at line 1, column 1" whatever
    the byte and wherever it is; the refusal now names the byte and its place."""
    alice = make_user("alice@x.io")
    r = client.post("/api/v1/folders", content=b'{\n "path": "\xe9t\xe9"}', headers={
        **alice.bearer, "Content-Type": "application/json"})
    _refused(r, "body", "not valid UTF-8: line 2, column 11 (byte 0xe9)")
