"""One credential a request: two ``Authorization`` headers are refused, not one of them picked."""

from __future__ import annotations

from tests.api.test_request_encoding import _paths


def test_two_authorization_headers_are_refused(client, make_user) -> None:  # type: ignore[no-untyped-def]
    """The first of them decided who was asking (a proxy or log in front may read the other): a
    request that names two credentials, or the same one twice, is now a 401 and does nothing."""
    alice = make_user("alice@x.io")
    bob = make_user("bob@y.io", org="Org B")
    a, b = alice.bearer["Authorization"], bob.bearer["Authorization"]
    for pair in ([a, b], [b, a], [a, a]):
        headers = [("Authorization", value) for value in pair]
        r = client.get("/api/v1/me", headers=headers)
        assert r.status_code == 401, r.text
        assert any(d.get("field") == "Authorization" for d in r.json()["errors"]), r.text
        r = client.post("/api/v1/folders", json={"path": "twice"}, headers=headers)
        assert r.status_code == 401, r.text
        r = client.get("/v2/public/storage/folders", headers=headers)
        assert r.status_code == 401 and "more than once" in r.json()["message"], r.text
    assert _paths(client, alice) == []
    assert client.get("/api/v1/me", headers=[("Authorization", a)]).json()["email"] == "alice@x.io"
