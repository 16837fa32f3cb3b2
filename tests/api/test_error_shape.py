"""One JSON error shape everywhere (native and /v2/public); the SDK envelope on /public."""

from __future__ import annotations

import pytest

SHAPE = {"ok", "status", "code", "message", "errors"}


@pytest.mark.parametrize(
    "method, path, auth, status, code",
    [
        ("GET", "/api/v1/me", False, 401, "authentication_failed"),
        ("GET", "/api/v1/nope", True, 404, "not_found"),
        ("GET", "/v2/public/nope", True, 501, "not_supported"),  # a call corral lacks, named
        ("GET", "/v2/public/nope", False, 401, "authentication_failed"),
        ("GET", "/api/v1/jobs/not-a-uuid", True, 400, "invalid_input"),
        ("GET", "/api/v1/jobs/00000000-0000-0000-0000-000000000000?wait=-1", True, 400, "invalid_input"),
        ("GET", "/api/v1/jobs/00000000-0000-0000-0000-000000000000", True, 404, "not_found"),
        ("DELETE", "/api/v1/me", True, 405, "method_not_allowed"),
    ],
)
def test_error_shape(client, make_user, method, path, auth, status, code) -> None:  # type: ignore[no-untyped-def]
    alice = make_user("alice@a.org")
    r = client.request(method, path, headers=alice.bearer if auth else {})
    assert r.status_code == status
    body = r.json()
    assert set(body) == SHAPE
    assert body["ok"] is False and body["status"] == status and body["code"] == code
    assert body["message"] and all("message" in e for e in body["errors"])


def test_validation_errors_name_the_field(client, make_user) -> None:  # type: ignore[no-untyped-def]
    alice = make_user("alice@a.org")
    r = client.get("/api/v1/jobs/00000000-0000-0000-0000-000000000000?wait=abc", headers=alice.bearer)
    assert r.status_code == 400
    assert r.json()["errors"][0]["field"] == "wait"
    assert r.json()["message"].startswith("wait:")


def test_a_field_of_several_types_is_named_alone(client, make_user) -> None:  # type: ignore[no-untyped-def]
    """A field that takes one of several types (``sort``: a key or an object) is named as the
    request spells it: pydantic adds each type's name to the error's place (``sort.str``,
    ``sort.dict[str,any]``), which named no field the user could find."""
    alice = make_user("alice@a.org")
    r = client.post("/api/v1/index/query", json={"sort": ["score"]}, headers=alice.bearer)
    assert r.status_code == 400, r.text
    assert {e["field"] for e in r.json()["errors"]} == {"sort"}, r.json()
    assert r.json()["message"].startswith("sort: ") and "sort." not in r.json()["message"], r.json()


def test_rpc_errors_use_the_sdk_envelope(client, make_user) -> None:  # type: ignore[no-untyped-def]
    alice = make_user("alice@a.org")
    json_type = {"content-type": "application/json"}
    r = client.post("/public", content=b"not json", headers={**alice.bearer, **json_type})
    assert r.json()["status"] == 400 and r.json()["response"] == ["INVALID_ARGUMENTS_ERROR"]
    assert r.json()["payload"].startswith("request body is not JSON (invalid literal")
    # A body not sent as JSON is not parsed (a cross-site form needs no preflight), and says so.
    for sent in ({}, {"content-type": "text/plain"}):
        r = client.post("/public", content=b'{"query_type": "project"}', headers={**alice.bearer, **sent})
        assert r.json()["status"] == 400 and r.json()["response"] == ["INVALID_ARGUMENTS_ERROR"]
        assert r.json()["payload"].startswith("the request body must be JSON, sent with Content-Type: application/json")
    r = client.post("/public", content=b"{}")
    assert r.status_code == 401 and r.json()["response"] == ["AUTHENTICATION_ERROR"]


def test_internal_errors_hide_details(client, make_user, app) -> None:  # type: ignore[no-untyped-def]
    alice = make_user("alice@a.org")

    @app.get("/api/v1/boom")
    def boom() -> None:
        raise RuntimeError("secret detail")

    app.router.routes.insert(0, app.router.routes.pop())  # before the web UI's catch-all

    r = client.get("/api/v1/boom", headers=alice.bearer)
    assert r.status_code == 500
    assert "secret detail" not in r.text and "incident" in r.json()["message"]
