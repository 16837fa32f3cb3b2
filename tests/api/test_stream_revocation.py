"""Long answers (the NDJSON exports, the SDK's streamed data rows) whose credential, or whose
access to what they stream, is taken away while they are being sent, on a real server, on
SQLite and PostgreSQL.

An export of a million rows takes seconds to minutes.  A token revoked, a user disabled, a web
session ended, or the folder or dataset deleted meanwhile must stop it within
``streams.RECHECK_SECONDS`` (at once when the change moves the auth epoch), and it must end so
that a client can tell it from a complete export: a last line in the one JSON error shape, then
the connection closed without the chunked body's terminating chunk (httpx raises
``RemoteProtocolError``; curl exits 18).  A stream that went on to its end, or ended cleanly,
would be taken for the whole folder.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from typing import Any

import httpx
import orjson
import pytest

from corral.core import dataset_rows, item_rows
from corral.core.index import query
from corral.db.tables import User
from corral.db.types import utcnow
from tests.datasets.helpers import add_folder, add_items

ITEMS = 300
CHUNK = 10  # 30 chunks
PAUSE = 0.1  # each chunk's read: a 3 s stream
BOUND = 2.0  # corral.api.streams.RECHECK_SECONDS, as docs/security.md states it


@pytest.fixture
def slow_chunks(monkeypatch):  # type: ignore[no-untyped-def]
    """Small chunks, each read slowly: a stream of a few hundred rows lasts seconds, as one of
    millions does (the server reads ahead two chunks: the kernel's socket buffers would otherwise
    take a small export whole before anything could be taken away)."""
    monkeypatch.setattr(item_rows, "STREAM_CHUNK", CHUNK)
    monkeypatch.setattr(item_rows, "STREAM_CHUNK_POSTGRES", CHUNK)
    monkeypatch.setattr(dataset_rows, "STREAM_CHUNK", CHUNK)
    from corral.api.routes import index as index_routes

    monkeypatch.setattr(index_routes, "EXPORT_CHUNK", CHUNK)
    for module, name in ((item_rows, "read_bodies"), (dataset_rows, "page"), (query, "page")):
        real = getattr(module, name)

        def slow(*args: Any, _real: Any = real, **kwargs: Any) -> Any:
            time.sleep(PAUSE)
            return _real(*args, **kwargs)

        monkeypatch.setattr(module, name, slow)


def _read(response: httpx.Response) -> Iterator[bytes]:
    for line in response.iter_lines():
        if line:
            yield line.encode()


def _stream_then(base: str, method: str, path: str, headers: dict[str, str], take_away: Any,
                 cookies: dict[str, str] | None = None, **kwargs: Any) -> tuple[list[Any], bool, float]:
    """Read the first line, ``take_away()``, read on: the lines read, whether the body ended
    complete (its terminating chunk) and the seconds from taking away to the end."""
    lines: list[Any] = []
    complete = True
    with httpx.Client(cookies=cookies, timeout=30) as c, \
            c.stream(method, f"{base}{path}", headers=headers, **kwargs) as r:
        assert r.status_code == 200, r.read()
        lines_in = _read(r)
        lines.append(orjson.loads(next(lines_in)))
        take_away()
        t0 = time.monotonic()
        try:
            for line in lines_in:
                lines.append(orjson.loads(line))
        except httpx.RemoteProtocolError:
            complete = False
        took = time.monotonic() - t0
    return lines, complete, took


def _ends_with_error(lines: list[Any], complete: bool, status: int, code: str) -> None:
    assert not complete, "a stream stopped part-way ended like a complete export"
    assert len(lines) < ITEMS, f"{len(lines)} lines: the stream went on to its end"
    last = lines[-1]
    assert last["ok"] is False and last["status"] == status and last["code"] == code, last
    assert last["message"] and last["errors"], last
    assert all("ok" not in line for line in lines[:-1])


def _folder(db: Any, user: Any) -> uuid.UUID:
    folder = add_folder(db, user, "big")
    add_items(db, user, folder, ITEMS)
    return folder


def _token(base: str, user: Any) -> dict[str, Any]:
    made = httpx.post(f"{base}/api/v1/tokens", headers=user.bearer, json={"name": "exporter"})
    assert made.status_code == 201, made.text
    return dict(made.json())


def test_a_token_revoked_stops_a_folder_export(live_server, make_user, db, slow_chunks) -> None:  # type: ignore[no-untyped-def]
    """Revoked after the first line: the export of ``items.ndjson`` went on to the folder's last
    item (about 3 s later here, minutes for a large folder) under a token that opens nothing."""
    alice = make_user("alice@x.io")
    _folder(db, alice)
    second = _token(live_server, alice)

    def revoke() -> None:
        r = httpx.delete(f"{live_server}/api/v1/tokens/{second['id']}", headers=alice.bearer)
        assert r.status_code == 200, r.text

    lines, complete, took = _stream_then(live_server, "GET", "/api/v1/items.ndjson?folder=big",
                                         {"Authorization": f"Bearer {second['token']}"}, revoke)
    _ends_with_error(lines, complete, 401, "authentication_failed")
    assert "revoked" in lines[-1]["message"]
    assert took < 1.0, took  # the revocation moved the auth epoch: stopped at the next chunk
    # the same export under a live token is whole, and ends cleanly
    with httpx.stream("GET", f"{live_server}/api/v1/items.ndjson?folder=big", headers=alice.bearer,
                      timeout=30) as r:
        assert sum(1 for _ in _read(r)) == ITEMS


def test_a_deleted_folder_stops_its_export_with_a_404_line(live_server, make_user, db, slow_chunks) -> None:  # type: ignore[no-untyped-def]
    alice = make_user("alice@x.io")
    folder = _folder(db, alice)

    def delete() -> None:
        r = httpx.delete(f"{live_server}/api/v1/folders/{folder}", params={"recursive": "true"},
                         headers=alice.bearer)
        assert r.status_code == 200, r.text

    lines, complete, _ = _stream_then(live_server, "GET", "/api/v1/items.ndjson?folder=big", alice.bearer, delete)
    _ends_with_error(lines, complete, 404, "not_found")


def test_a_disabled_user_stops_an_index_export(live_server, make_user, db, slow_chunks) -> None:  # type: ignore[no-untyped-def]
    alice = make_user("alice@x.io")
    _folder(db, alice)

    def disable() -> None:
        with db.write() as s:
            s.get_one(User, alice.user_id).disabled_at = utcnow()

    lines, complete, took = _stream_then(live_server, "POST", "/api/v1/index/export", alice.bearer, disable,
                                         json={})
    _ends_with_error(lines, complete, 401, "authentication_failed")
    assert took < BOUND + 1.0, took


@pytest.mark.parametrize("change", ["role", "organisation"])
def test_a_user_whose_role_or_organisation_changes_stops_an_export(live_server, make_user, db, slow_chunks,  # type: ignore[no-untyped-def]
                                                                    change) -> None:
    """The export was authorised for an admin of Org A: once the user is a member, or moved to
    another organisation, its credential still identifies the user but no longer what the export
    was authorised as (``Credential.check``), so the rest is not sent."""
    alice = make_user("alice@x.io")
    other = make_user("bob@y.io", org="Org B")
    _folder(db, alice)

    def move() -> None:
        with db.write() as s:
            user = s.get_one(User, alice.user_id)
            if change == "role":
                user.role = "member"
            else:
                user.org_id = other.org_id

    lines, complete, took = _stream_then(live_server, "GET", "/api/v1/items.ndjson?folder=big", alice.bearer, move)
    _ends_with_error(lines, complete, 401, "authentication_failed")
    assert "organisation or role" in lines[-1]["message"], lines[-1]
    assert took < 1.0, took  # a user written through the ORM moves the auth epoch: the next chunk


def test_an_ended_web_session_stops_its_export_within_the_bound(live_server, make_user, db, slow_chunks) -> None:  # type: ignore[no-untyped-def]
    """Signing out moves no auth epoch: the session is looked up again every
    ``RECHECK_SECONDS``, so its export stops within that bound, not at its end."""
    alice = make_user("alice@x.io")
    _folder(db, alice)
    signed_in = httpx.post(f"{live_server}/api/v1/sessions", json={"token": alice.token})
    assert signed_in.status_code == 201, signed_in.text
    cookies = dict(signed_in.cookies)

    def sign_out() -> None:
        out = httpx.delete(f"{live_server}/api/v1/sessions/current", cookies=cookies,
                           headers={"X-CSRF-Token": signed_in.json()["csrf_token"]})
        assert out.status_code == 204, out.text

    lines, complete, took = _stream_then(live_server, "GET", "/api/v1/items.ndjson?folder=big", {}, sign_out,
                                         cookies=cookies)
    _ends_with_error(lines, complete, 401, "authentication_failed")
    assert took < BOUND + 1.0, took
    from corral.api import streams

    assert streams.RECHECK_SECONDS == BOUND


def _dataset(base: str, user: Any, folder: uuid.UUID) -> str:
    made = httpx.post(f"{base}/api/v1/datasets", json={"title": "Big"}, headers=user.bearer)
    assert made.status_code == 201, made.text
    ds = str(made.json()["id"])
    linked = httpx.post(f"{base}/api/v1/datasets/{ds}/link", json={"folder": str(folder)},
                        headers=user.bearer, timeout=30)
    assert linked.status_code in (200, 201), linked.text
    return ds


def test_a_deleted_dataset_stops_its_rows_stream(live_server, make_user, db, slow_chunks) -> None:  # type: ignore[no-untyped-def]
    """The dataset deleted part-way: its rows were gone, so the stream found no more and ended
    cleanly, a short export a client took for the whole dataset."""
    alice = make_user("alice@x.io")
    ds = _dataset(live_server, alice, _folder(db, alice))

    def delete() -> None:
        r = httpx.delete(f"{live_server}/api/v1/admin/datasets/{ds}", headers=alice.bearer)
        assert r.status_code == 200, r.text

    lines, complete, _ = _stream_then(live_server, "GET", f"/api/v1/datasets/{ds}/rows.ndjson", alice.bearer,
                                      delete)
    _ends_with_error(lines, complete, 404, "not_found")


def test_a_revoked_token_stops_the_sdks_data_rows(live_server, make_user, db, slow_chunks) -> None:  # type: ignore[no-untyped-def]
    """The v1 ``datarows`` answer (``dataset.list_data_rows``), one JSON document streamed: cut
    short (never a well-formed document with fewer rows) once its token is revoked."""
    alice = make_user("alice@x.io")
    ds = _dataset(live_server, alice, _folder(db, alice))
    second = _token(live_server, alice)
    call = {"query_type": "datarows", "query_method": "GET", "values": {"uid": ds, "payload": {}}}
    body = b""
    complete = True
    with httpx.stream("POST", f"{live_server}/public", json=call, timeout=30,
                      headers={"Authorization": f"Bearer {second['token']}", "ResourceType": "dataset",
                               "ResourceID": ds}) as r:
        assert r.status_code == 200, r.read()
        chunks = r.iter_bytes()
        body += next(chunks)
        revoked = httpx.delete(f"{live_server}/api/v1/tokens/{second['id']}", headers=alice.bearer)
        assert revoked.status_code == 200, revoked.text
        try:
            for chunk in chunks:
                body += chunk
        except httpx.RemoteProtocolError:
            complete = False
    assert not complete, body[-200:]
    with pytest.raises(orjson.JSONDecodeError):
        orjson.loads(body)


def test_the_cli_client_reports_a_stopped_stream(live_server, make_user, db, slow_chunks) -> None:  # type: ignore[no-untyped-def]
    """``corral dataset rows --ndjson`` (``Client.stream_dataset_rows``) raises the stream's
    last line as the API error it is, not the rows before it as a whole dataset."""
    from corral.client import ApiError, Client

    alice = make_user("alice@x.io")
    ds = _dataset(live_server, alice, _folder(db, alice))
    rows = Client(live_server, token=alice.token).stream_dataset_rows(ds)
    seen = [next(rows)]
    r = httpx.delete(f"{live_server}/api/v1/admin/datasets/{ds}", headers=alice.bearer)
    assert r.status_code == 200, r.text
    with pytest.raises(ApiError) as stopped:
        seen.extend(rows)
    assert stopped.value.status == 404 and stopped.value.code == "not_found", stopped.value
    assert 0 < len(seen) < ITEMS
