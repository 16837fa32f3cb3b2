"""No query parameter is silently ignored: every route refuses one it does not declare (400, naming
it), and the options the Encord SDK always sends but corral does not implement are refused unless
they carry their harmless default."""

from __future__ import annotations

import re
from typing import Any

from fastapi.routing import APIRoute

from corral.api.parsing import CorralRoute


def _routes(routes: Any) -> list[CorralRoute]:
    out: list[CorralRoute] = []
    for r in routes:
        if isinstance(r, CorralRoute):
            out.append(r)
        elif hasattr(r, "original_router"):
            out += _routes(r.original_router.routes)
        elif hasattr(r, "routes"):
            out += _routes(r.routes)
    return out


def test_every_route_is_a_corral_route(app) -> None:  # type: ignore[no-untyped-def]
    plain = [r.path for r in _routes(app.routes) if type(r) is APIRoute]
    assert plain == []
    assert len(_routes(app.routes)) > 100


def test_every_route_refuses_an_undeclared_query_parameter(client, make_user, app) -> None:  # type: ignore[no-untyped-def]
    alice = make_user("alice@a.org")
    checked = 0
    for route in _routes(app.routes):
        if route.path.startswith("/api/v1/local-media") or route.path == "/healthz":
            continue  # a signed link, or open: checked below
        if not route.refuse_unknown_query:
            assert route.path == "/v2/public/{rest:path}"  # answers 501 "not supported" to any query
            continue
        path = re.sub(r"\{[^}]+\}", "00000000-0000-0000-0000-000000000001", route.path)
        for method in sorted(route.methods - {"HEAD"}):
            r = client.request(method, path, params={"corralBogus": "1", "limit": "1"}, headers=alice.bearer)
            assert r.status_code == 400, (method, path, r.status_code, r.text)
            body = r.json()
            if path.startswith("/public"):  # the v1 RPC error shape
                assert "corralBogus" in body["payload"], (method, path, body)
                checked += 1
                continue
            assert "corralBogus" in body["message"], (method, path, body)
            assert any(d.get("field") == "corralBogus" for d in body["errors"]), (method, path, body)
            # a parameter the route does declare is never named as unsupported
            declared = route.declared_query  # type: ignore[attr-defined]
            assert ("limit" in body["message"].split("(this route")[0]) == ("limit" not in declared), (
                method, path, body["message"])
            checked += 1
    assert checked > 100


def test_the_refusal_names_every_unknown_parameter_and_what_the_route_accepts(client, make_user) -> None:  # type: ignore[no-untyped-def]
    alice = make_user("alice@a.org")
    r = client.get("/api/v1/folders/search?q=x&pageSize=5&zzz=1", headers=alice.bearer)
    assert r.status_code == 400
    body = r.json()
    assert body["message"].startswith("unsupported query parameter(s): pageSize, zzz (this route accepts: ")
    assert "page_size" in body["message"]
    assert sorted(d["field"] for d in body["errors"]) == ["pageSize", "zzz"]
    # without them, the same request works
    assert client.get("/api/v1/folders/search?q=x&page_size=5", headers=alice.bearer).status_code == 200


def test_an_unsupported_sdk_route_says_so_whatever_its_query(client, make_user) -> None:  # type: ignore[no-untyped-def]
    alice = make_user("alice@a.org")
    r = client.get("/v2/public/storage/folders/x/groups?pageSize=5", headers=alice.bearer)
    assert r.status_code == 501 and "is not supported by corral" in r.json()["message"]


def test_health_check_refuses_too(client) -> None:  # type: ignore[no-untyped-def]
    assert client.get("/healthz").status_code == 200
    r = client.get("/healthz?verbose=1")
    assert r.status_code == 400 and "verbose" in r.json()["message"]


def test_authentication_comes_first(client) -> None:  # type: ignore[no-untyped-def]
    r = client.get("/api/v1/folders?corralBogus=1")
    assert r.status_code == 401


def test_sdk_date_filters_are_iso_text_as_published(client, make_user) -> None:  # type: ignore[no-untyped-def]
    """The document says ``format: date-time``; pydantic alone also read ``createdAfter=1234``
    (or ``7e-54``) as seconds since 1970, so schemathesis's negative case was accepted."""
    alice = make_user("alice@a.org")
    for path in ("/v2/public/datasets/list", "/v2/public/ontologies"):
        for number in ("1234", "7.448500102813543e-54", "-1"):
            r = client.get(path, params={"createdAfter": number}, headers=alice.bearer)
            assert r.status_code == 400, (path, number, r.text)
            assert "createdAfter" in r.text and "ISO 8601" in r.text
        for text in ("2024-05-01", "2024-05-01T12:00:00", "2024-05-01T12:00:00+02:00"):
            r = client.get(path, params={"createdAfter": text, "editedBefore": text}, headers=alice.bearer)
            assert r.status_code == 200, (path, text, r.text)
