"""``/api/v1/metadata-schema``, its history and validator, and the Encord SDK's schema calls."""

from __future__ import annotations

from typing import Any

import httpx

URL = "/api/v1/metadata-schema"
BASE = {"keys": {
    "captured_at": {"type": "datetime"},
    "camera": {"type": "string", "required": True},
    "weather": {"type": "enum", "values": ["rain", "sunny"]},
    "clip": {"type": "embedding", "size": 4},
}}


def put(client, user, doc: dict[str, Any], **params: Any) -> Any:  # type: ignore[no-untyped-def]
    return client.put(URL, json=doc, params=params, headers=user.bearer)


def test_empty_then_versions(client, make_user) -> None:  # type: ignore[no-untyped-def]
    alice = make_user("alice@x.io")
    r = client.get(URL, headers=alice.bearer)
    assert r.status_code == 200 and r.json()["version"] == 0 and r.json()["schema"]["keys"] == {}

    r = put(client, alice, BASE)
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["version"] == 1 and body["changed"] is True
    assert sorted(body["diff"]["added"]) == ["camera", "captured_at", "clip", "weather"]
    assert body["schema"]["keys"]["camera"] == {"type": "varchar", "required": True}  # alias normalised

    # Saving the same schema again adds no version.
    r = put(client, alice, BASE)
    assert r.json()["version"] == 1 and r.json()["changed"] is False

    doc = client.get(URL, headers=alice.bearer).json()
    assert doc["updated_by"] == "alice@x.io" and doc["updated_at"]
    edited = doc["schema"]
    edited["keys"]["weather"]["values"].append("snow")
    edited["keys"]["notes"] = {"type": "long_string"}
    edited["keys"]["clip"]["deleted"] = "soft"
    r = put(client, alice, {**edited, "version": doc["version"]})
    assert r.status_code == 200, r.text
    assert r.json()["version"] == 2
    assert r.json()["diff"] == {"added": ["notes"], "deleted": [{"key": "clip", "hard": False}],
                                "enum_options_added": {"weather": ["snow"]}}

    history = client.get(f"{URL}/versions", headers=alice.bearer).json()
    assert [(v["version"], v["created_by"]) for v in history] == [(2, "alice@x.io"), (1, "alice@x.io")]
    v1 = client.get(f"{URL}/versions/1", headers=alice.bearer).json()
    assert v1["version"] == 1 and "notes" not in v1["schema"]["keys"]
    assert client.get(f"{URL}/versions/0", headers=alice.bearer).json()["schema"]["keys"] == {}
    assert client.get(f"{URL}/versions/9", headers=alice.bearer).status_code == 404

    encord = client.get(URL, params={"format": "encord"}, headers=alice.bearer).json()["schema"]
    assert encord["clip"] == {"ty": "tombstone", "deleted_ty": {"ty": "embedding", "size": 4, "api": None}}
    legacy = client.get(URL, params={"format": "legacy"}, headers=alice.bearer).json()["schema"]
    assert legacy == {"camera": "string", "captured_at": "datetime", "notes": "long_string", "weather": "enum"}


def test_refused_changes_are_400_and_save_nothing(client, make_user) -> None:  # type: ignore[no-untyped-def]
    alice = make_user("alice@x.io")
    put(client, alice, BASE)
    r = put(client, alice, {"keys": {"weather": {"type": "enum", "values": ["rain"]}}})
    assert r.status_code == 400
    body = r.json()
    assert body["code"] == "validation_failed"
    assert "enum 'weather' would lose option(s) 'sunny'" in body["message"]
    assert "key 'camera' (varchar) is missing" in body["message"]
    assert {"keys.weather.values", "keys.camera", "keys.clip", "keys.captured_at"} <= {
        e["field"] for e in body["errors"]}
    assert client.get(URL, headers=alice.bearer).json()["version"] == 1

    r = put(client, alice, {"keys": {"bad/key": {"type": "text"}}})
    assert r.status_code == 400 and "invalid key 'bad/key'" in r.json()["message"]
    r = client.put(URL, content=b"[1, 2]", headers={**alice.bearer, "Content-Type": "application/json"})
    assert r.status_code == 400


def test_base_version_conflict_and_dry_run(client, make_user) -> None:  # type: ignore[no-untyped-def]
    alice = make_user("alice@x.io")
    put(client, alice, BASE)
    stale = {**BASE, "keys": {**BASE["keys"], "a": {"type": "text"}}}
    assert put(client, alice, stale, base_version=1).json()["version"] == 2
    r = put(client, alice, {**stale, "keys": {**stale["keys"], "b": {"type": "text"}}}, base_version=1)
    assert r.status_code == 409 and "changed since version 1 (it is now at version 2)" in r.json()["message"]
    r = put(client, alice, {**stale, "version": 1})  # the document's own version is checked too
    assert r.status_code == 409

    r = put(client, alice, {**stale, "keys": {**stale["keys"], "c": {"type": "uuid"}}}, dry_run="true")
    assert r.status_code == 200 and r.json()["dry_run"] is True and r.json()["diff"] == {"added": ["c"]}
    assert client.get(URL, headers=alice.bearer).json()["version"] == 2


def test_only_admins_change_it_and_orgs_are_separate(client, make_user) -> None:  # type: ignore[no-untyped-def]
    alice = make_user("alice@x.io", org="Org A")
    bob = make_user("bob@x.io", org="Org A", role="member")
    eve = make_user("eve@y.io", org="Org B")
    r = put(client, bob, BASE)
    assert r.status_code == 403 and "only organisation admins" in r.json()["message"]
    put(client, alice, BASE)
    assert client.get(URL, headers=bob.bearer).json()["version"] == 1
    assert client.get(URL, headers=eve.bearer).json()["version"] == 0
    assert client.get(f"{URL}/versions/1", headers=eve.bearer).status_code == 404
    assert client.get(f"{URL}/versions", headers=eve.bearer).json() == []


def test_validate_endpoint(client, make_user) -> None:  # type: ignore[no-untyped-def]
    alice = make_user("alice@x.io")
    put(client, alice, BASE)
    items = [
        {"camera": "c1", "captured_at": "2024-01-01T10:00:00+01:00", "weather": "rain", "extra": [1]},
        {"camera": "c2", "weather": "hail", "clip": [1, 2]},
        {"weather": "sunny"},
        "not an object",
    ]
    r = client.post(f"{URL}/validate", json={"items": items}, headers=alice.bearer)
    assert r.status_code == 200, r.text
    body = r.json()
    assert (body["schema_version"], body["valid"], body["invalid"]) == (1, 1, 3)
    first, second, third, fourth = body["results"]
    assert first["metadata"] == {"camera": "c1", "captured_at": "2024-01-01T09:00:00+00:00", "weather": "rain",
                                 "extra": [1]}
    assert second["message"].startswith("items[1]: invalid clientMetadata (2 problems)")
    assert "'weather' = 'hail' is not one of the enum options (rain, sunny)" in second["message"]
    assert "'clip': 2 numbers where the embedding has 4" in second["message"]
    assert {e["key"] for e in second["errors"]} == {"weather", "clip"}
    assert "'camera': this key is required" in third["message"]
    assert "clientMetadata must be a JSON object" in fourth["message"]

    r = client.post(f"{URL}/validate", json={"items": [{"camera": "c", "clip": "[1,2,3,4]"}], "from_text": True},
                    headers=alice.bearer)
    assert r.json()["results"][0]["metadata"] == {"camera": "c", "clip": [1.0, 2.0, 3.0, 4.0]}
    r = client.post(f"{URL}/validate", json={"items": [{}] * 10_001}, headers=alice.bearer)
    assert r.status_code == 400


def test_validator_follows_schema_changes(client, make_user) -> None:  # type: ignore[no-untyped-def]
    alice = make_user("alice@x.io")
    put(client, alice, {"keys": {"n": {"type": "number"}}})
    check = lambda: client.post(f"{URL}/validate", json={"items": [{"n": "x"}]}, headers=alice.bearer).json()  # noqa: E731
    assert check()["invalid"] == 1
    put(client, alice, {"keys": {"n": {"type": "varchar"}}})  # set_scalar: change the type
    assert check()["invalid"] == 0 and check()["schema_version"] == 2


def test_concurrent_saves_lose_nothing(live_server, make_user) -> None:  # type: ignore[no-untyped-def]
    """Eight admins save at once, each adding a different key to the same (empty) schema."""
    import threading

    alice = make_user("alice@x.io")
    statuses: list[int] = []
    barrier = threading.Barrier(8)

    def save(i: int) -> None:
        barrier.wait()
        r = httpx.put(f"{live_server}{URL}", json={"keys": {f"k{i}": {"type": "text"}}}, headers=alice.bearer,
                      timeout=60)
        statuses.append(r.status_code)

    threads = [threading.Thread(target=save, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert statuses.count(200) == 1 and set(statuses) <= {200, 400, 409}, statuses
    final = httpx.get(f"{live_server}{URL}", headers=alice.bearer).json()
    assert final["version"] == 1 and len(final["schema"]["keys"]) == 1
    assert len(httpx.get(f"{live_server}{URL}/versions", headers=alice.bearer).json()) == 1


def test_encord_body_on_the_native_route_keeps_extensions(client, make_user) -> None:  # type: ignore[no-untyped-def]
    alice = make_user("alice@x.io")
    put(client, alice, {"strict_metadata": True, "keys": {"camera": {"type": "varchar", "required": True}}})
    exported = client.get(URL, params={"format": "encord"}, headers=alice.bearer).json()["schema"]
    exported["notes"] = {"ty": "variant", "hint": "text"}
    r = put(client, alice, exported)
    assert r.status_code == 200 and r.json()["diff"] == {"added": ["notes"]}
    schema = client.get(URL, headers=alice.bearer).json()["schema"]
    assert schema["strict_metadata"] is True and schema["keys"]["camera"]["required"] is True
    r = put(client, alice, {"keys": {"ty": "variant", "hint": "text"}}, format="native")
    assert r.status_code == 400  # forced native: "keys" must map keys to definitions


def test_an_sdk_save_keeps_what_another_admin_saved_while_it_waited(live_server, make_user, db) -> None:  # type: ignore[no-untyped-def]
    """The SDK's forms know nothing of ``required`` and ``strict_metadata``, so a save through them
    keeps the current ones: those current when it gets the schema's lock, not those it read before
    waiting for it (on PostgreSQL, a save by another admin committing meanwhile was undone)."""
    import threading
    import time

    from sqlalchemy import text

    from corral.core.metadata import service
    from corral.core.metadata.schema import from_native
    from tests.index.world import principal

    alice = make_user("alice@x.io")
    assert httpx.put(f"{live_server}{URL}", json={"keys": {"camera": {"type": "varchar"}}},
                     headers=alice.bearer).status_code == 200
    sdk_body = {"camera": {"ty": "variant", "hint": "varchar"}, "notes": {"ty": "variant", "hint": "text"}}
    answers: list[httpx.Response] = []
    with db.write() as s:  # another admin's change, saved but not yet committed: it holds the lock
        service.save(s, principal(db, alice.user_id), from_native(
            {"strict_metadata": True, "keys": {"camera": {"type": "varchar", "required": True}}}))
        sdk = threading.Thread(target=lambda: answers.append(httpx.post(
            f"{live_server}/v2/public/organisation/client-metadata-schema-v2", json=sdk_body,
            headers=alice.bearer, timeout=60)))
        sdk.start()
        deadline = time.monotonic() + 10
        while sdk.is_alive() and time.monotonic() < deadline:  # until the SDK's save waits for the lock
            if not db.is_sqlite:
                with db.engine.connect() as c:
                    if c.scalar(text("SELECT count(*) FROM pg_locks WHERE NOT granted")):
                        break
            time.sleep(0.1 if not db.is_sqlite else 1.0)
            if db.is_sqlite:
                break  # (SQLite: its write waits for this transaction as a whole)
    sdk.join(60)
    assert answers and answers[0].status_code == 200, answers[0].text if answers else "no answer"
    schema = httpx.get(f"{live_server}{URL}", headers=alice.bearer).json()
    assert schema["version"] == 3
    assert schema["schema"]["strict_metadata"] is True
    assert schema["schema"]["keys"] == {"camera": {"type": "varchar", "required": True}, "notes": {"type": "text"}}


def test_a_version_that_cannot_be_checked_is_refused(client, make_user) -> None:  # type: ignore[no-untyped-def]
    """A native document's ``version`` guards a read-modify-write; one that is not an integer (a
    string from a script, a float from a JSON tool) was ignored, so a stale edit was saved."""
    alice = make_user("alice@x.io")
    put(client, alice, BASE)
    put(client, alice, {**BASE, "keys": {**BASE["keys"], "a": {"type": "text"}}})  # version 2
    stale = {**BASE, "keys": {**BASE["keys"], "a": {"type": "text"}, "b": {"type": "text"}}}
    for version in ("1", 1.0, True, -1):
        r = put(client, alice, {**stale, "version": version})
        assert r.status_code == 400, (version, r.text)
        assert [e["field"] for e in r.json()["errors"]] == ["version"]
        assert "expected the version the document was read at" in r.json()["message"]
    assert client.get(URL, headers=alice.bearer).json()["version"] == 2
    assert put(client, alice, {**stale, "version": 1}).status_code == 409
    assert put(client, alice, {**stale, "version": 2}).status_code == 200
