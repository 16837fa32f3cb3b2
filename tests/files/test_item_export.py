"""The NDJSON export sent in pieces (``item_rows.encode_pieces``, ``item_rows.stream``) and, on
PostgreSQL, read a received result at a time (``pgcursor.Cursor._chunks_column``): the bytes are
the ``ItemView`` path's whatever the pieces', chunks' and received results' boundaries, on both
databases, for filters, orders, an empty folder, a recursive listing, hidden items and unicode."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any

import orjson
import pytest
from sqlalchemy import update

from corral.core import item_docs, item_rows, items
from corral.db.tables import Item
from tests.files.conftest import add_items, folder, principal
from tests.files.test_item_rows import _specs


def _views_ndjson(db, user, folder_id: str, **options: Any) -> bytes:  # type: ignore[no-untyped-def]
    """The export as the ``ItemView`` path encodes it: every item of the listing, one a line."""
    out: list[bytes] = []
    token = None
    with db.read() as s:
        while True:
            page = items.list_(s, principal(user), folder_id, page_size=7, page_token=token, **options)
            out += [orjson.dumps(v, option=orjson.OPT_UTC_Z) + b"\n" for v in page.items]
            token = page.next_page_token
            if token is None:
                return b"".join(out)


@pytest.mark.parametrize(
    ("lengths", "piece"),
    [([5], 1), ([5], 100), ([3, 9, 1, 4], 1), ([3, 9, 1, 4], 8), ([3, 9, 1, 4], 12), ([7] * 50, 64),
     ([600] * 1000, 512 << 10), ([1] * 3 + [1000] * 200, 2048)],
)
def test_pieces_are_the_lines_joined(lengths: list[int], piece: int) -> None:
    texts = [bytes([97 + i % 26]) * n for i, n in enumerate(lengths)]
    pieces = item_rows.encode_pieces(texts, piece)
    assert b"".join(pieces) == item_rows.encode_lines(texts)
    assert all(p.endswith(b"\n") for p in pieces)  # whole lines only
    lines = [p.count(b"\n") for p in pieces]
    assert sum(lines) == len(texts) and min(lines) >= 1
    if len(texts) > 1 and piece < sum(lengths) // 2:
        assert len(pieces) > 1


def test_pieces_of_no_lines() -> None:
    assert item_rows.encode_pieces([]) == [b"\n"] == [item_rows.encode_lines([])]


def test_a_chunk_comes_in_pieces_of_about_the_size_asked(db, client, make_user, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    user = make_user("pieces@x.io")
    f = folder(client, user, "pieces")
    add_items(db, user, f["id"], _specs())
    monkeypatch.setattr(item_rows, "PIECE_BYTES", 2000)
    p = principal(user)
    chunks = list(item_rows.stream(db, lambda s, token: items.listing(s, p, f["id"], page_token=token), 30))
    assert [sum(piece.count(b"\n") for piece in pieces) for pieces in chunks] == [30, 7]
    assert all(1 < len(pieces) for pieces in chunks[:1]) and all(len(p) < 6000 for c in chunks for p in c)
    assert b"".join(b"".join(c) for c in chunks) == _views_ndjson(db, user, f["id"])


def _odd_folder(db, client, user, path: str) -> tuple[dict[str, Any], list[uuid.UUID]]:  # type: ignore[no-untyped-def]
    """A folder of items with unicode, escapes and quotes in names and metadata, some documents
    cleared (made by the listing itself), one soft-deleted item and one staged item."""
    f = folder(client, user, path)
    specs = _specs()
    for i, spec in enumerate(specs[:6]):
        spec["name"] = ["back\\\\slash\\", 'q"uo"te', "line\u2028sep\u2029", "tab\tnl\ndel\x7f",
                        "ünï 日本 😀", "\\u0041"][i] + f"-{i}"
        spec["meta"] = {"ctl": "\x01\x1f\b\f\r", "bs": "\\", "ls": "\u2028", "ü": "😀"}
    specs.append({"name": "staged-never-listed.png", "staged": True})
    ids = add_items(db, user, f["id"], specs)
    with db.write() as s:
        item_docs.fill_all(s.connection())
        s.execute(update(Item).where(Item.id.in_([ids[1], ids[9]])).values(description="d\\\u2028é"))
        s.execute(update(Item).where(Item.id == ids[7]).values(deleted_at=datetime.now(UTC)))
    return f, ids


@pytest.mark.parametrize(
    "options",
    [{}, {"order": "size"}, {"order": "created_at", "direction": "desc"}, {"types": ["video"]},
     {"q": "日本"}, {"deleted": "include"}, {"deleted": "only"}, {"order": "size", "direction": "desc"}],
)
def test_export_is_the_views_across_piece_chunk_and_result_boundaries(  # type: ignore[no-untyped-def]
    client, db, make_user, monkeypatch, options: dict[str, Any]
) -> None:
    user = make_user("exportpieces@x.io")
    f, ids = _odd_folder(db, client, user, "exportpieces")
    expected = _views_ndjson(db, user, f["id"], **options)
    assert expected.count(b"\n") >= 1 and b"staged-never-listed" not in expected
    assert (f'"id":"{ids[7]}"'.encode() in expected) == (options.get("deleted") in ("include", "only"))
    params: dict[str, Any] = {"folder": f["id"], **{k: v for k, v in options.items() if k != "types"}}
    if "types" in options:
        params["type"] = options["types"]
    for chunk, received, piece in ((4, 2, 1), (5, 3, 700), (1000, 500, 1), (1000, 2, 512 << 10)):
        monkeypatch.setattr(item_rows, "STREAM_CHUNK", chunk)
        monkeypatch.setattr(item_rows, "STREAM_CHUNK_POSTGRES", chunk)
        monkeypatch.setattr(item_rows, "COLUMN_CHUNK", received)
        monkeypatch.setattr(item_rows, "PIECE_BYTES", piece)
        r = client.get("/api/v1/items.ndjson", params=params, headers=user.bearer)
        assert r.status_code == 200, r.text
        assert r.content == expected, (options, chunk, received, piece)


def test_export_of_an_empty_folder_is_empty(client, db, make_user) -> None:  # type: ignore[no-untyped-def]
    user = make_user("exportempty@x.io")
    f = folder(client, user, "exportempty")
    r = client.get("/api/v1/items.ndjson", params={"folder": f["id"]}, headers=user.bearer)
    assert r.status_code == 200 and r.content == b""
    add_items(db, user, f["id"], [{"name": "only-staged.png", "staged": True}])  # hidden: still empty
    r = client.get("/api/v1/items.ndjson", params={"folder": f["id"]}, headers=user.bearer)
    assert r.status_code == 200 and r.content == b""


def test_recursive_stream_is_the_views(client, db, make_user, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    """``item_rows.stream`` over a recursive listing (its statements built per chunk, not kept)."""
    user = make_user("exportrec@x.io")
    top = folder(client, user, "exportrec")
    child = folder(client, user, "exportrec/child")
    add_items(db, user, top["id"], _specs()[:9])
    add_items(db, user, child["id"], _specs()[9:])
    monkeypatch.setattr(item_rows, "PIECE_BYTES", 1500)
    monkeypatch.setattr(item_rows, "COLUMN_CHUNK", 3)
    p = principal(user)
    chunks = list(item_rows.stream(
        db, lambda s, token: items.listing(s, p, top["id"], recursive=True, page_token=token), 8))
    got = b"".join(b"".join(c) for c in chunks)
    assert got == _views_ndjson(db, user, top["id"], recursive=True)
    assert got.count(b"\n") == len(_specs()) and len(chunks) == 5
