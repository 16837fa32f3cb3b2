"""insert_rows stores exactly what SQLAlchemy's own insert stores, on SQLite and PostgreSQL."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any, cast

from sqlalchemy import Table, func, insert, select

from corral.db.bulk import _statement_sizes, insert_rows, insert_tuples
from corral.db.tables import Folder, Item, ItemPart, Organisation

ITEMS = cast(Table, Item.__table__)
PARTS = cast(Table, ItemPart.__table__)


def _row(org: uuid.UUID, folder: uuid.UUID, name: str, when: datetime, **extra: Any) -> dict[str, Any]:
    return {
        "id": uuid.uuid4(), "org_id": org, "folder_id": folder, "integration_id": None,
        "item_type": "image", "name": name, "url": f"s3://b/{name}", "url_hash": f"s3://b/{name}",
        "storage_location": "s3", "file_size": 2**40 + 1, "mime_type": None,
        "media": {"width": 3, "height": 4.5, "nested": [1, None, "é"]},
        "client_metadata": {"big": 2**63 - 1, "text": "line\nbreak \\ \"quoted\"\t"},
        "is_placeholder": False, "staged": True, "job_id": None, "created_by": None,
        "created_at": when, "updated_at": when, **extra,
    }


def test_bulk_rows_read_back_like_orm_rows(db) -> None:  # type: ignore[no-untyped-def]
    org, folder = uuid.uuid4(), uuid.uuid4()
    with db.write() as s:
        s.add(Organisation(id=org, name="o"))
        s.flush()
        s.add(Folder(id=folder, org_id=org, name="f", parent_key=""))
    when = datetime(2026, 11, 23, 12, 30, 45, 123456, tzinfo=UTC)
    via_orm = _row(org, folder, "a.png", when)
    via_bulk = [_row(org, folder, f"b{i}.png", when) for i in range(3)]
    with db.write() as s:
        s.execute(insert(ITEMS), [via_orm])
        insert_rows(s, ITEMS, via_bulk)
        insert_rows(s, PARTS, [{"item_id": via_bulk[0]["id"], "position": p, "url": "u", "title": "t",
                                "media": {"p": p}} for p in range(2)])
    with db.read() as s:
        got = {r.name: r for r in s.scalars(select(Item))}
        parts = s.execute(select(ItemPart.position, ItemPart.media).order_by(ItemPart.position)).all()
    assert set(got) == {"a.png", "b0.png", "b1.png", "b2.png"}
    for name, expected in [("a.png", via_orm), *((r["name"], r) for r in via_bulk)]:
        item = got[name]
        for key in ("id", "org_id", "folder_id", "media", "client_metadata", "staged", "file_size",
                    "created_at", "url_hash", "is_placeholder"):
            assert getattr(item, key) == expected[key], (name, key)
    assert got["b0.png"].created_at == got["a.png"].created_at  # same stored form: comparable
    assert [tuple(p) for p in parts] == [(0, {"p": 0}), (1, {"p": 1})]
    with db.read() as s:  # the stored timestamps sort and compare in SQL as the ORM's do
        assert s.scalar(select(Item.name).where(Item.created_at == when).order_by(Item.name).limit(1)) == "a.png"
        assert s.scalar(select(func.count(Item.id)).where(Item.created_at >= when)) == 4



def test_statement_sizes_cover_every_row_with_few_shapes() -> None:
    for n in (0, 1, 2, 255, 256, 257, 1000, 5000, 5001):
        sizes = list(_statement_sizes(n, 256))
        assert sum(sizes) == n
        assert all(s == 256 or (s & (s - 1) == 0 and s < 256) for s in sizes), sizes
    assert len({s for n in range(1, 2000) for s in _statement_sizes(n, 256)}) == 9  # 256, 128, …, 1
    assert list(_statement_sizes(7, 3)) == [3, 3, 1]


def test_many_rows_with_constants_each_stored_once(db) -> None:  # type: ignore[no-untyped-def]
    org, folder = uuid.uuid4(), uuid.uuid4()
    with db.write() as s:
        s.add(Organisation(id=org, name="o"))
        s.flush()
        s.add(Folder(id=folder, org_id=org, name="f", parent_key=""))
    when = datetime(2026, 12, 3, 18, 0, tzinfo=UTC)
    rows = [_row(org, folder, f"n{i:04d}.png", when) for i in range(777)]  # 3 full statements + 9 + …
    columns = ("id", "name", "url", "url_hash", "media")
    constants = {k: v for k, v in rows[0].items() if k not in columns}
    with db.write() as s:
        insert_tuples(s, ITEMS, columns, [tuple(r[c] for c in columns) for r in rows], constants)
    with db.read() as s:
        got = s.execute(select(Item.name, Item.url, Item.media, Item.folder_id, Item.created_at,
                               Item.staged).order_by(Item.name)).all()
    assert [g.name for g in got] == [r["name"] for r in rows]
    assert all(g.url == f"s3://b/{g.name}" and g.media == rows[0]["media"] for g in got)
    assert {(g.folder_id, g.created_at, g.staged) for g in got} == {(folder, when, True)}


def test_postgresql_copy_rows_send_what_write_row_sends(db) -> None:  # type: ignore[no-untyped-def]
    """``_copy_rows`` formats the constant columns once a statement and the rows without a
    psycopg call per row: the table must hold exactly what ``write_row`` of each whole row
    stores, for the values COPY's text format escapes (tabs, newlines, backslashes, NULLs,
    non-ASCII), the types registration sends, and more rows than one chunk of data."""
    import pytest

    from corral.db import bulk

    if db.is_sqlite:
        pytest.skip("COPY is PostgreSQL's")
    when = datetime(2026, 12, 5, 21, 0, 0, 123456, tzinfo=UTC)
    fixed = (uuid.uuid4(), "cloud", None, False, True, when, 7)
    odd = ["a\tb", "line\nnext\r", "back\\slash \\N", "", None, "ünï\u2028cödé 🙂", '{"k": "v\\\\"}']
    rows = [(uuid.uuid4().hex, odd[i % len(odd)], i, f"s3://b/{i:06d}" * 20 if i % 5 else None)
            for i in range(4000)]  # well over one COPY_CHUNK
    assert sum(len(r[3] or "") for r in rows) > 2 * bulk.COPY_CHUNK
    columns = "id uuid, t text, n bigint, u text, c_id uuid, c_loc text, c_null uuid, c_f boolean, " \
              "c_t boolean, c_at timestamptz, c_n int"
    raw = db.engine.raw_connection()
    try:
        driver: Any = raw.driver_connection
        with driver.cursor() as cur:
            cur.execute(f"CREATE TEMP TABLE by_row ({columns}); CREATE TEMP TABLE by_chunk ({columns})")
            with cur.copy("COPY by_row FROM STDIN") as copy:
                for row in rows:
                    copy.write_row((*row, *fixed))
            with cur.copy("COPY by_chunk FROM STDIN") as copy:
                bulk._copy_rows(copy, rows, fixed)
            got = [cur.execute(f"SELECT t::text FROM {name} t ORDER BY n").fetchall()
                   for name in ("by_row", "by_chunk")]
            with cur.copy("COPY by_chunk (c_id) FROM STDIN") as copy:  # no constants
                bulk._copy_rows(copy, [(fixed[0],)], ())
            assert cur.execute("SELECT count(*) FROM by_chunk WHERE c_id = %s", (fixed[0],)).fetchone() \
                == (len(rows) + 1,)
        driver.rollback()
    finally:
        raw.close()
    assert len(got[0]) == len(rows)
    assert got[1] == got[0]


def test_binary_copy_stores_what_the_orm_stores(db) -> None:  # type: ignore[no-untyped-def]
    """item_meta, item_text and index_changes go by binary COPY on PostgreSQL (every column a
    uuid, an integer, a double or a string): the same values as the ORM's insert, for floats at
    their edges, ints given for doubles, texts with tabs, newlines, backslashes and non-ASCII,
    NULLs, and ids given as UUIDs or as 32 hex digits; the constant columns in every row."""
    import math

    from sqlalchemy import text

    from corral.db.bulk import _binary_types
    from corral.db.tables import IndexChange, IndexKey, ItemMeta, ItemText

    meta, texts, changes = (cast(Table, t.__table__) for t in (ItemMeta, ItemText, IndexChange))
    org, folder = uuid.uuid4(), uuid.uuid4()
    with db.write() as s:
        s.add(Organisation(id=org, name="o"))
        s.flush()
        s.add(Folder(id=folder, org_id=org, name="f", parent_key=""))
        s.flush()
        key = IndexKey(org_id=org, name="k", definition={"type": "string"})
        s.add(key)
        s.flush()
        key_id = key.id
    when = datetime(2026, 11, 23, 12, 30, 45, 123456, tzinfo=UTC)
    numbers: list[Any] = [0.0, -0.0, 1e308, -1e-308, 5e-324, 0.1, 1 / 3, math.inf, -math.inf, 2**53 + 1, -7,
                          123456789.123456789]
    strings = ["plain", "tab\there", "new\nline\r\n", "back\\slash \\N \\t", "é漢字🙂", "", " ", "\\", "'\""]
    items = [uuid.uuid4() for _ in range(len(numbers) + len(strings))]
    with db.write() as s:
        s.execute(insert(ITEMS), [_row(org, folder, f"{n}.png", when, id=i) for n, i in enumerate(items)])
    hexed = [i.hex if n % 2 else i for n, i in enumerate(items)]  # both forms the callers pass
    orm_num = [{"item_id": items[n], "key_id": key_id, "num": v, "txt": None} for n, v in enumerate(numbers)]
    orm_txt = [{"item_id": items[len(numbers) + n], "key_id": key_id, "num": None, "txt": v}
               for n, v in enumerate(strings)]
    # the ORM's rows under a second key, the bulk rows under the first
    with db.write() as s:
        other = IndexKey(org_id=org, name="k2", definition={"type": "string"})
        s.add(other)
        s.flush()
        other_id = other.id
        s.execute(insert(meta), [{**r, "key_id": other_id} for r in orm_num + orm_txt])
        s.execute(insert(texts), [{"item_id": r["item_id"], "key_id": other_id, "body": r["txt"]} for r in orm_txt])
        s.execute(insert(changes), [{"org_id": org, "seq": 2, "item_id": i} for i in items] +
                  [{"org_id": org, "seq": 2, "item_id": None}])
    with db.write() as s:
        insert_tuples(s, meta, ("item_id", "num"), [(hexed[n], v) for n, v in enumerate(numbers)], {"key_id": key_id})
        insert_tuples(s, meta, ("item_id", "txt"), [(hexed[len(numbers) + n], v) for n, v in enumerate(strings)],
                      {"key_id": key_id})
        insert_tuples(s, texts, ("item_id", "key_id", "body"),
                      [(hexed[len(numbers) + n], key_id, v) for n, v in enumerate(strings)])
        insert_tuples(s, changes, ("item_id",), [(i,) for i in hexed] + [(None,)], {"org_id": org, "seq": 1})
    if not db.is_sqlite:
        dialect = db.engine.dialect
        assert _binary_types(meta, ["item_id", "num", "key_id"], dialect) == ["uuid", "float8", "int8"]
        assert _binary_types(changes, ["item_id", "org_id", "seq"], dialect) == ["uuid", "uuid", "int8"]
    with db.read() as s:
        def rows(sql: str, key: int) -> list[tuple[Any, ...]]:
            # floats compared by their bits' text (-0.0 and 0.0 differ), ids as stored
            return sorted((tuple(repr(v) if isinstance(v, float) else v for v in r)
                           for r in s.execute(text(sql), {"k": key})), key=repr)

        for sql in ("SELECT item_id, num, txt FROM item_meta WHERE key_id = :k",
                    "SELECT item_id, body FROM item_text WHERE key_id = :k"):
            assert rows(sql, key_id) == rows(sql, other_id)
        assert len(rows("SELECT item_id, num, txt FROM item_meta WHERE key_id = :k", key_id)) == len(items)
        assert rows("SELECT org_id, item_id FROM index_changes WHERE seq = :k", 1) == \
            rows("SELECT org_id, item_id FROM index_changes WHERE seq = :k", 2)
        assert s.scalar(text("SELECT count(*) FROM item_meta WHERE key_id = :k AND num = 0 "
                             "AND cast(num AS text) = '-0'"), {"k": key_id}) == 1 or db.is_sqlite


def test_binary_copy_types_are_the_migrated_columns_types(db) -> None:  # type: ignore[no-untyped-def]
    """Binary COPY input is read as the column's own type, with no cast: the type each column of
    a binary table is sent as must be the migrated database's type of it."""
    import pytest
    from sqlalchemy import text

    from corral.db.bulk import BINARY_TABLES, _binary_types
    from corral.db.tables import Base

    if db.is_sqlite:
        pytest.skip("COPY is PostgreSQL's")
    same = {"varchar": "text", "bpchar": "text"}
    for name in sorted(BINARY_TABLES):
        table = Base.metadata.tables[name]
        columns = [c.name for c in table.c]
        sent = _binary_types(table, columns, db.engine.dialect)
        assert sent is not None, name
        with db.engine.connect() as conn:
            stored = dict(conn.execute(text(
                "SELECT a.attname, t.typname FROM pg_attribute a JOIN pg_type t ON t.oid = a.atttypid "
                "WHERE a.attrelid = CAST(:t AS regclass) AND a.attnum > 0 AND NOT a.attisdropped"), {"t": name}).all())
        assert {c: same.get(stored[c], stored[c]) for c in columns} == dict(zip(columns, sent, strict=True)), name


def test_rows_given_column_by_column_are_stored_as_rows_are(db) -> None:  # type: ignore[no-untyped-def]
    """``insert_columns`` (registration's projected values: a key's item ids and values as two
    lists) stores exactly what ``insert_tuples`` stores for the same rows as tuples: floats at
    their edges, texts with tabs, newlines and non-ASCII, NULLs, ids as UUIDs or 32 hex digits,
    the constant column in every row, and counts that span several statements of different sizes
    (600 rows: 256 + 256 + 64 + 16 + 8).  On SQLite the statements and their parameters are the
    same ones too; a column shorter than the others is refused before anything is written."""
    import math

    import pytest
    from sqlalchemy import event, text

    from corral.db.bulk import insert_columns
    from corral.db.tables import IndexChange, IndexKey, ItemMeta, ItemText

    meta, texts, changes = (cast(Table, t.__table__) for t in (ItemMeta, ItemText, IndexChange))
    org, folder = uuid.uuid4(), uuid.uuid4()
    with db.write() as s:
        s.add(Organisation(id=org, name="o"))
        s.flush()
        s.add(Folder(id=folder, org_id=org, name="f", parent_key=""))
        s.flush()
        keys = [IndexKey(org_id=org, name=f"k{n}", definition={"type": "string"}) for n in range(4)]
        s.add_all(keys)
        s.flush()
        by_tuples, by_columns, text_tuples, text_columns = (k.id for k in keys)
    edges: list[Any] = [0.0, -0.0, 1e308, -1e-308, 5e-324, 0.1, 1 / 3, math.inf, -math.inf, 2**53 + 1, -7, True]
    numbers = edges + [n * 0.5 - 100 for n in range(600 - len(edges))]
    strings = ["plain", "tab\there", "new\nline\r\n", "back\\slash \\N \\t", "é漢字🙂", "", " ", "'\""]
    items = [uuid.uuid4() for _ in range(len(numbers))]
    when = datetime(2026, 11, 23, 12, 30, 45, 123456, tzinfo=UTC)
    with db.write() as s:
        s.execute(insert(ITEMS), [_row(org, folder, f"{n}.png", when, id=i) for n, i in enumerate(items)])
    ids = [i.hex if n % 2 else i for n, i in enumerate(items)]  # both forms the callers pass
    words = [strings[n % len(strings)] + str(n) if n % 7 else strings[n % len(strings)] for n in range(len(ids))]
    bodies: list[Any] = [None if n % 5 == 0 else w for n, w in enumerate(words)]

    statements: list[tuple[str, Any]] = []

    def seen(_conn: Any, _cursor: Any, statement: str, parameters: Any, _context: Any, _many: bool) -> None:
        if "item_meta" in statement or "item_text" in statement or "index_changes" in statement:
            statements.append((statement, parameters))

    event.listen(db.engine, "before_cursor_execute", seen)
    try:
        with db.write() as s:
            insert_tuples(s, meta, ("item_id", "num"), list(zip(ids, numbers, strict=True)), {"key_id": by_tuples})
            insert_tuples(s, meta, ("item_id", "txt"), list(zip(ids, words, strict=True)), {"key_id": text_tuples})
            insert_tuples(s, texts, ("item_id", "key_id", "body"),
                          [(i, text_tuples, b) for i, b in zip(ids, bodies, strict=True) if b is not None])
            insert_tuples(s, changes, ("item_id", "seq"), [(i, 1) for i in ids] + [(None, 1)], {"org_id": org})
        as_tuples, statements[:] = list(statements), []
        with db.write() as s:
            insert_columns(s, meta, ("item_id", "num"), (ids, numbers), {"key_id": by_columns})
            insert_columns(s, meta, ("item_id", "txt"), (ids, words), {"key_id": text_columns})
            kept = [n for n, b in enumerate(bodies) if b is not None]
            insert_columns(s, texts, ("item_id", "key_id", "body"),
                           ([ids[n] for n in kept], [text_columns] * len(kept), [bodies[n] for n in kept]))
            insert_columns(s, changes, ("item_id", "seq"), (ids + [None], [2] * (len(ids) + 1)), {"org_id": org})
            insert_columns(s, meta, ("item_id", "num"), ([], []), {"key_id": by_columns})  # nothing: no statement
        as_columns = list(statements)
    finally:
        event.remove(db.engine, "before_cursor_execute", seen)
    if db.is_sqlite:
        # the same statements, the same parameters but for the keys' ids and index_changes' seq
        # item_meta 2 x 5 statements, item_text 4 (480 rows: 256 + 128 + 64 + 32), index_changes 6 (601)
        assert len(as_columns) == len(as_tuples) == 2 * 5 + 4 + 6
        swap = {by_tuples: by_columns, text_tuples: text_columns}
        for (sql_t, params_t), (sql_c, params_c) in zip(as_tuples, as_columns, strict=True):
            assert sql_c == sql_t
            if "index_changes" in sql_t:  # (the seq column, 1 then 2)
                expected = [2 if type(v) is int and v == 1 else v for v in params_t]
            else:
                expected = [swap.get(v, v) if type(v) is int else v for v in params_t]
            assert list(params_c) == expected
    with db.read() as s:
        def rows(sql: str, **bound: Any) -> list[tuple[Any, ...]]:
            # floats compared by their bits' text (-0.0 and 0.0 differ), ids as stored
            return sorted((tuple(repr(v) if isinstance(v, float) else v for v in r)
                           for r in s.execute(text(sql), bound)), key=repr)

        for old, new in ((by_tuples, by_columns), (text_tuples, text_columns)):
            stored = rows("SELECT item_id, num, txt FROM item_meta WHERE key_id = :k", k=old)
            assert len(stored) == len(items)
            assert rows("SELECT item_id, num, txt FROM item_meta WHERE key_id = :k", k=new) == stored
        stored = rows("SELECT item_id, body FROM item_text WHERE key_id = :k", k=text_tuples)
        assert len(stored) == len(bodies) - bodies.count(None)
        assert rows("SELECT item_id, body FROM item_text WHERE key_id = :k", k=text_columns) == stored
        stored = rows("SELECT org_id, item_id FROM index_changes WHERE seq = :k", k=1)
        assert len(stored) == len(items) + 1
        assert rows("SELECT org_id, item_id FROM index_changes WHERE seq = :k", k=2) == stored
    with db.write() as s, pytest.raises(ValueError, match="one length"):
        insert_columns(s, meta, ("item_id", "num"), (ids, numbers[:-1]), {"key_id": by_columns})
    with db.read() as s:
        assert s.scalar(text("SELECT count(*) FROM item_meta WHERE key_id = :k"), {"k": by_columns}) == len(items)
