"""A folder listing's pages read through statements built once and kept
(``pagination.keyset_prepared``): the same bytes as the statements built for every page, on both
databases, in every order, direction and filter, up to the last page; one statement per filter,
segment and cursor, never another folder's or another filter's."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import orjson
import pytest
from sqlalchemy import update

from corral.core import item_docs, item_rows, items, pagination
from corral.db.tables import Item
from tests.files.conftest import add_items, folder, principal
from tests.files.test_item_rows import _specs

FILTERS: list[dict[str, Any]] = [
    {},
    {"deleted": "include"},
    {"deleted": "only"},
    {"types": ["video"]},
    {"types": ["image", "video", "image"]},
    {"q": "ä"},
    {"q": "%_"},  # LIKE's wildcards, escaped
    {"q": "same", "types": ["image"]},
    {"in_dataset": False},
]


def _pages(db: Any, p: Any, folder_id: str, page_size: int, **options: Any) -> list[bytes]:
    """Every page of the listing, as the route answers them: checked, then read from the token."""
    out: list[bytes] = []
    token: str | None = None
    while True:
        with db.read_plain() as s:
            ask = items.listing(s, p, folder_id, page_size=page_size, page_token=token, **options)
            page = item_rows.read_bodies(s, ask)
            texts = item_rows.read_docs(s, ask)
        body = item_rows.encode_page(page)
        assert texts.next_page_token == page.next_page_token
        assert [t.encode() for t in texts.items] == page.items
        out.append(body)
        token = page.next_page_token
        if token is None:
            return out


@contextmanager
def _unprepared() -> Iterator[None]:
    """Listings without a shape: every statement built for its page (the path before)."""
    mp = pytest.MonkeyPatch()
    mp.setattr(items.Listing, "shape", property(lambda self: None))
    try:
        yield
    finally:
        mp.undo()


@contextmanager
def _counting_builds() -> Iterator[list[int]]:
    built = [0]
    real = items.ItemFilter.where

    def where(self: items.ItemFilter) -> Any:
        built[0] += 1
        return real(self)

    mp = pytest.MonkeyPatch()
    mp.setattr(items.ItemFilter, "where", where)
    try:
        yield built
    finally:
        mp.undo()


def _fill(client: Any, db: Any, user: Any, name: str) -> tuple[str, list[Any]]:
    f = folder(client, user, name)
    specs = _specs()
    specs[0]["name"] = "ünï 日本 😀 \\ \" \u2028"
    specs[1]["name"] = "50%_off"
    ids = add_items(db, user, f["id"], specs)
    with db.write() as s:
        item_docs.fill_all(s.connection())
        # documents cleared by a change (read through the listing's own encoding), one deleted
        s.execute(update(Item).where(Item.id.in_([ids[2], ids[9], ids[30]])).values(description="d ✓"))
        s.execute(update(Item).where(Item.id == ids[4]).values(deleted_at=Item.created_at))
    return f["id"], ids


@pytest.mark.parametrize("order", ["name", "created_at", "size"])
@pytest.mark.parametrize("direction", ["asc", "desc"])
def test_prepared_pages_are_the_built_pages_byte_for_byte(client, db, make_user, order: str, direction: str) -> None:  # type: ignore[no-untyped-def]
    user = make_user("prepared@x.io")
    folder_id, ids = _fill(client, db, user, "prepared")
    p = principal(user)
    for options in FILTERS:
        # page sizes that end a page inside a segment, at the end of the folder, and past it
        for page_size in (5, 36, 37, 1000):
            with _unprepared():
                before = _pages(db, p, folder_id, page_size, order=order, direction=direction, **options)
            after = _pages(db, p, folder_id, page_size, order=order, direction=direction, **options)
            assert after == before, (options, page_size)
            assert orjson.loads(after[-1])["next_page_token"] is None
    with db.read() as s:  # the ItemView path agrees too (the documents' own test, one case here)
        views = items.list_(s, p, folder_id, order=order, direction=direction, page_size=1000)
    assert _pages(db, p, folder_id, 1000, order=order, direction=direction)[0] == orjson.dumps(
        {"items": views.items, "next_page_token": None}, option=orjson.OPT_UTC_Z)


def test_a_filter_builds_its_statements_once(client, db, make_user, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    user = make_user("once@x.io")
    folder_id, _ids = _fill(client, db, user, "once")
    other_id, other_ids = _fill(client, db, user, "once-other")
    p = principal(user)
    monkeypatch.setattr(pagination, "_PREPARED", type(pagination._PREPARED)())
    with _counting_builds() as built:
        first = _pages(db, p, folder_id, 5, order="size")
        # the first page (no cursor), a page after a value, a page after a missing size, the
        # page that crosses from sizes to the missing ones (a second segment, its own limit):
        # each once for the bytes (read_bodies) and once for the texts (read_docs)
        assert 2 <= built[0] <= 12
        so_far = built[0]
        assert _pages(db, p, folder_id, 5, order="size") == first  # new requests, same statements
        assert built[0] == so_far
        second = _pages(db, p, other_id, 5, order="size")  # another folder: its own statements
        assert built[0] > so_far
        assert len(second) == len(first) and second != first
        listed = {x["id"] for body in second for x in orjson.loads(body)["items"]}
        assert listed == {str(i) for i in other_ids if i != other_ids[4]}
        so_far = built[0]
        _pages(db, p, folder_id, 5, order="size", types=["video"])  # another filter: its own
        assert built[0] > so_far


def test_kept_statements_are_bounded(client, db, make_user, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    user = make_user("bounded@x.io")
    folder_id, _ids = _fill(client, db, user, "bounded")
    p = principal(user)
    monkeypatch.setattr(pagination, "_PREPARED", type(pagination._PREPARED)())
    monkeypatch.setattr(pagination, "PREPARED_MAX", 3)
    expected = {}
    with _unprepared():
        for q in ("a", "b", "c", "s", "."):
            expected[q] = _pages(db, p, folder_id, 4, q=q)
    for q in ("a", "b", "c", "s", ".", "a"):
        assert _pages(db, p, folder_id, 4, q=q) == expected[q]
        assert len(pagination._PREPARED) <= 3


def test_an_empty_folder_and_a_recursive_listing(client, db, make_user) -> None:  # type: ignore[no-untyped-def]
    user = make_user("empty@x.io")
    f = folder(client, user, "empty")
    p = principal(user)
    assert _pages(db, p, f["id"], 10) == [b'{"items":[],"next_page_token":null}']
    with db.read_plain() as s:  # a recursive listing's statements are built for the page (not kept)
        ask = items.listing(s, p, f["id"], recursive=True)
        assert ask.shape is None and ask.filter.subtree is not None
        assert item_rows.encode_page(item_rows.read_bodies(s, ask)) == b'{"items":[],"next_page_token":null}'


def test_a_kept_statement_carries_the_options_it_is_run_with(client, db, make_user, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    """The rows received at a time (PostgreSQL's chunked rows) are an execution option of the kept
    statement: changed, the next page is read with the new value, not the one kept."""
    from corral.db.engine import COLUMN_CHUNKS

    user = make_user("options@x.io")
    folder_id, _ids = _fill(client, db, user, "options")
    p = principal(user)
    monkeypatch.setattr(pagination, "_PREPARED", type(pagination._PREPARED)())
    first = _pages(db, p, folder_id, 7)
    monkeypatch.setattr(item_rows, "COLUMN_CHUNK", 3)
    assert _pages(db, p, folder_id, 7) == first
    chunks = {stmt.get_execution_options().get(COLUMN_CHUNKS) for stmt in pagination._PREPARED.values()}
    assert chunks == {item_rows.COLUMN_CHUNK, 500}
