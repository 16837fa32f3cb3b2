"""The set-based re-projection (``corral.core.index.setbased``) makes exactly the rows the Python
projector makes, for every kind and for odd values: numbers as strings, huge, tiny and negative
zero floats, 64-bit integers, booleans, unicode, long strings, missing keys, nulls, and values
that do not fit the key's new type."""

from __future__ import annotations

import random
import struct
import uuid
from typing import Any

import pytest
from sqlalchemy import delete, select

from corral.core.index import keys as index_keys
from corral.core.index import reproject
from corral.core.index.projection import Projector
from corral.db.engine import Database
from corral.db.tables import Item, ItemMeta, ItemText
from tests.index.world import add_items, principal, save_schema

U = "123E4567-E89B-12D3-A456-426614174000"
ODD: list[Any] = [
    None, True, False, 0, -0.0, 0.0, 1, -1, 2**53 + 1, 2**63 - 1, -(2**63), 1.5, 0.1, 1 / 3, -2.5e-7,
    5e-324, 1e-310, 2.2250738585072014e-308, 1e-300, 9.99e-301, 1e300, 1.0000001e300, 1e301,
    1.7976931348623157e308, -1.7976931348623157e308, 123456789.123456789, 1e16, 1e22,
    "1", "1.5", "-0", "true", "false", "", " ", "rain", "Rain", "sun", "x" * 255, "x" * 256, "é" * 256,
    "𝄞" * 300, "naïve ☃ 日本", 'quote " and \\ backslash\nnewline\ttab', "\u2028", "a\x01b",
    "2024-05-01T12:30:00Z", "2024-05-01T12:30:00+00:00", "2024-05-01T12:30:00.123456Z",
    "2024-05-01T12:30:00+02:00", "2024-05-01", "2024-02-30T00:00:00Z", "not a date",
    U, U.lower(), "{" + U + "}", U.replace("-", ""), "urn:uuid:" + U.lower(), U + " ", "G" + U[1:],
    [1, 2], {"a": 1}, [], {},
]
KINDS: list[dict[str, Any]] = [
    {"type": "number"}, {"type": "boolean"}, {"type": "varchar"}, {"type": "varchar", "max_length": 3},
    {"type": "text"}, {"type": "enum", "values": ["rain", "sun", "x"]}, {"type": "uuid"},
    {"type": "datetime"},
]


def _floats(rng: random.Random, n: int) -> list[float]:
    out: list[float] = []
    while len(out) < n:
        f = struct.unpack("<d", rng.getrandbits(64).to_bytes(8, "little"))[0]
        if f - f == 0.0:
            out.append(f)
    return out


def _rows(db: Database, org_id: uuid.UUID) -> tuple[set[tuple[Any, ...]], set[tuple[Any, ...]]]:
    """item_meta and item_text as they are; floats by repr, so -0.0 and 0.0 differ."""
    with db.read() as s:
        meta = {(m.item_id, m.key_id, repr(m.num), m.txt) for m in s.scalars(select(ItemMeta))}
        text = {(t.item_id, t.key_id, t.body) for t in s.scalars(select(ItemText))}
    return meta, text


def _python(db: Database, org_id: uuid.UUID) -> tuple[set[tuple[Any, ...]], set[tuple[Any, ...]]]:
    """The rows the Python projector writes for the same items (the job's path before the
    set-based one, still the path of keys it cannot do)."""
    with db.write() as s:
        s.execute(delete(ItemMeta))
        s.execute(delete(ItemText))
        projector = Projector(index_keys.load(s, org_id))
        reproject._project(s, select(Item.id, Item.client_metadata).where(Item.org_id == org_id), projector)
    return _rows(db, org_id)


@pytest.fixture
def world(db, make_user):  # type: ignore[no-untyped-def]
    who = principal(db, make_user("s@x.io").user_id)
    rng = random.Random(17)
    values = ODD + _floats(rng, 400) + [-f for f in _floats(rng, 50)]
    metas: list[dict[str, Any]] = [{"v": v, "other": 1} for v in values]
    metas += [{}, {"other": "v"}, {"V": 1}]  # the key missing
    add_items(db, who, "odd", metas, rng)
    return who


@pytest.mark.parametrize("definition", KINDS, ids=lambda d: "-".join(str(v) for v in d.values()))
def test_set_based_rows_equal_the_python_projection(db, world, definition):  # type: ignore[no-untyped-def]
    # a re-type (set_scalar) of a key the items already have: projected inline, set-based
    assert save_schema(db, world, {"keys": {"v": definition}}) is None
    meta, text = _rows(db, world.org_id)
    python = _python(db, world.org_id)
    assert meta - python[0] == set() and python[0] - meta == set()
    assert text - python[1] == set() and python[1] - text == set()
    assert meta, "some values fit every kind"


@pytest.mark.parametrize("definition", KINDS, ids=lambda d: "-".join(str(v) for v in d.values()))
def test_a_job_batch_range_projects_its_items_only(db, world, definition):  # type: ignore[no-untyped-def]
    save_schema(db, world, {"keys": {"v": definition}})
    want = _python(db, world.org_id)
    with db.write() as s:
        key = index_keys.load(s, world.org_id)[0]
        s.execute(delete(ItemMeta))
        s.execute(delete(ItemText))
        ids = sorted(s.scalars(select(Item.id).where(Item.org_id == world.org_id)))
        middle = ids[len(ids) // 2]
        assert reproject._project_range(s, world.org_id, [key.id], None, middle) == len(ids) // 2 + 1
    assert _rows(db, world.org_id)[0] == {r for r in want[0] if r[0] <= middle}
    with db.write() as s:
        assert reproject._project_range(s, world.org_id, [key.id], middle, None) == len(ids) - len(ids) // 2 - 1
        # again: the values exist already and are left alone (ON CONFLICT DO NOTHING)
        reproject._project_range(s, world.org_id, [key.id], None, None)
    assert _rows(db, world.org_id) == want
