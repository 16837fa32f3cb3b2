"""A route that takes no request body refuses one that carries something (400 naming ``body``)
instead of ignoring it: an option sent there would otherwise be dropped silently, as an
undeclared query parameter would be.  An empty body, ``{}`` and ``null`` carry no option and
pass (the web UI posts ``{}``)."""

from __future__ import annotations

import pytest

from tests.files.conftest import folder


@pytest.mark.parametrize("body", [b'{"force": true}', b'{"prefix": "a/"}', b"[]", b"1", b"not json"])
def test_sync_start_refuses_a_body(client, make_user, body: bytes) -> None:  # type: ignore[no-untyped-def]
    alice = make_user("alice@x.io")
    f = folder(client, alice, "plain")
    for path in (f"/api/v1/folders/{f['id']}/sync",
                 f"/v2/public/storage/folders/{f['id']}/cloud-synced-folder-syncs"):
        r = client.post(path, content=body, headers={**alice.bearer, "Content-Type": "application/json"})
        assert r.status_code == 400, (path, r.status_code, r.text)
        err = r.json()
        assert err["errors"][0]["field"] == "body", err
        assert "takes no request body" in err["message"], err


@pytest.mark.parametrize("body", [b"", b"{}", b" { } ", b"null"])
def test_an_empty_body_is_no_option(client, make_user, body: bytes) -> None:  # type: ignore[no-untyped-def]
    alice = make_user("alice@x.io")
    f = folder(client, alice, "plain")
    r = client.post(f"/api/v1/folders/{f['id']}/sync", content=body,
                    headers={**alice.bearer, "Content-Type": "application/json"})
    # the folder is not cloud-synced: the route ran, and said so (the body was not the matter)
    assert r.status_code == 400 and r.json()["errors"][0].get("field") != "body", r.text


def test_other_bodyless_routes_refuse_a_body(client, make_user) -> None:  # type: ignore[no-untyped-def]
    alice = make_user("alice@x.io")
    f = folder(client, alice, "gone")
    r = client.request("DELETE", f"/api/v1/folders/{f['id']}", json={"recursive": True}, headers=alice.bearer)
    assert r.status_code == 400 and r.json()["errors"][0]["field"] == "body", r.text
    assert client.get(f"/api/v1/folders/{f['id']}", headers=alice.bearer).status_code == 200  # not deleted


def test_a_long_body_is_refused_unread_and_a_get_s_body_is_never_read(app, make_user) -> None:  # type: ignore[no-untyped-def]
    """A body too long to be an empty one is refused from its declared length, not read; a GET's
    (a health check's, which answers anyone) is never looked at."""
    from tests.api.test_request_guard import run

    alice = make_user("alice@x.io")
    headers = {"content-length": str(4 << 20), "content-type": "application/json",
               "authorization": f"Bearer {alice.token}"}
    out = run(app, "POST", "/api/v1/jobs/01a20b82-b9ef-7000-8e2b-169ac2c0626d/cancel", headers,
              [b" " * (1 << 20)] * 4)
    assert out.status == 400 and out.chunks_read == 0, (out.status, out.chunks_read, out.body[:200])
    out = run(app, "GET", "/healthz", {"content-length": str(1 << 20)}, [b"x" * (1 << 20)])
    assert out.status == 200 and out.chunks_read == 0, (out.status, out.chunks_read)
