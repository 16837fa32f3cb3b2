"""Fixtures of the API tests."""

from __future__ import annotations

import pytest

from tests.files.conftest import add_items, folder


@pytest.fixture
def world(client, make_user, db):  # type: ignore[no-untyped-def]
    alice = make_user("alice@x.io")
    f = folder(client, alice, "f", client_metadata={"ok": 1})
    [item_id] = add_items(db, alice, f["id"], [{"name": "a.png", "meta": {"kept": True}}])
    return alice, f, str(item_id)
