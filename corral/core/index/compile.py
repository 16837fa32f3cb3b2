"""A checked filter tree as SQL over ``items``: one expression, the same on both databases.

A metadata predicate becomes ``items.id IN (SELECT item_id FROM item_meta WHERE key_id = K AND
<condition>)``, which the databases answer from ``(key_id, num, item_id)`` or ``(key_id, txt,
item_id)``.  Strings longer than ``item_meta.txt`` keeps are compared in full through
``item_text``; full-text goes through FTS5 (SQLite) or a ``to_tsvector`` GIN index (PostgreSQL).
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import (
    ColumnElement,
    Float,
    Select,
    Table,
    and_,
    cast,
    exists,
    false,
    func,
    literal,
    not_,
    or_,
    select,
    text,
    true,
)
from sqlalchemy.sql import util as sql_util

from corral.core.index.filters import And, Node, Not, Or, Pred
from corral.core.index.keys import TXT_MAX, Key, from_epoch
from corral.core.maps.area import Area
from corral.core.maps.area import condition as area_condition
from corral.db.tables import CollectionItem, DataRow, Item, ItemMeta, ItemText, LabelRow, MapPoint

MEDIA_FIELDS = {"width": "width", "height": "height", "duration": "duration", "frames": "frame_count"}


class Compiler:
    def __init__(self, dialect: str, *, correlated: bool = False, row: Any = None) -> None:
        """``correlated``: each predicate is an ``EXISTS`` probe of the row at hand (for pages,
        read in an index's order until full), rather than ``IN`` a set read whole (for counts).
        ``row`` is the item id the probes follow (default ``items.id``; a page sorted by a key
        passes its sort index's, so rows are checked before their item is read)."""
        self.pg = dialect == "postgresql"
        self.correlated = correlated
        self.row = Item.id if row is None else row

    def __call__(self, node: Node | None) -> ColumnElement[bool]:
        if node is None:
            return true()
        if isinstance(node, And):
            if not node.items:  # a preset of every item
                return true()
            if not self.correlated:
                return self._intersect(node)
            return and_(*(self(n) for n in node.items))
        if isinstance(node, Or):
            return or_(*(self(n) for n in node.items))
        if isinstance(node, Not):
            return not_(self(node.item))
        if isinstance(node, Area):
            return self.area(node)
        if node.key is not None:
            return self.metadata(node)
        return self.field(node)

    def _intersect(self, node: And) -> ColumnElement[bool]:
        """An ``and`` read as one set: the first metadata predicate's values, each checked
        against the other metadata-only branches by primary-key probes, so only the items in
        the intersection are read (not every item of the largest set)."""
        driven = self._driven(node)
        if driven is None:
            return and_(*(self(n) for n in node.items))
        subquery, outside = driven
        return and_(Item.id.in_(subquery), *(self(n) for n in outside))

    def _driven(self, node: And) -> tuple[Select[Any], list[Node]] | None:
        """The ids matching the metadata-only branches of ``node``, read from ``item_meta``
        alone (the first positive metadata predicate's index range, the others probed), and the
        branches left over; None when no predicate can drive."""
        driver = next((n for n in node.items if isinstance(n, Pred) and n.key is not None
                       and n.op != "missing"), None)
        if driver is None or driver.key is None:
            return None
        alias = cast_table(ItemMeta).alias()
        probe = Compiler("postgresql" if self.pg else "sqlite", correlated=True, row=alias.c.item_id)
        inside = [n for n in node.items if n is not driver and _metadata_only(n)]
        outside = [n for n in node.items if n is not driver and not _metadata_only(n)]
        subquery = select(alias.c.item_id).where(
            alias.c.key_id == driver.key.id,
            (alias.c.num if driver.key.numeric else alias.c.txt).is_not(None),
            self._aliased_condition(driver, alias),
            *(probe(n) for n in inside),
        )
        return subquery, outside

    def metadata_set(self, node: Node | None) -> Select[Any] | None:
        """The ids of the items (deleted and staged ones too) matching ``node`` read from
        ``item_meta`` alone, each once; None unless ``node`` is metadata-only and has a positive
        metadata predicate to start from (a predicate, or an ``and`` with one)."""
        if isinstance(node, Pred) and node.key is not None and node.op != "missing":
            return select(ItemMeta.item_id).where(
                ItemMeta.key_id == node.key.id, value_column(node.key).is_not(None), self._condition(node)
            )
        if isinstance(node, And):
            driven = self._driven(node)
            if driven is not None and not driven[1]:
                return driven[0]
        return None

    def _aliased_condition(self, p: Pred, alias: Any) -> Any:
        """``_condition`` of ``p`` over ``alias`` instead of ``item_meta``."""
        condition = self._condition(p)
        return sql_util.ClauseAdapter(alias).traverse(condition)

    # -- metadata keys ------------------------------------------------------------------------

    def _full(self) -> ColumnElement[Any]:
        """A string value in full: item_text's body when there is one, else item_meta.txt."""
        body = (
            select(ItemText.body)
            .where(ItemText.item_id == ItemMeta.item_id, ItemText.key_id == ItemMeta.key_id)
            .scalar_subquery()
        )
        return func.coalesce(body, ItemMeta.txt)

    def _lower(self, value: ColumnElement[Any]) -> ColumnElement[Any]:
        # ASCII letters only, the same on both databases (PostgreSQL's "C" collation folds ASCII)
        return func.lower(value.collate("C") if self.pg else value)

    def _contains(self, haystack: ColumnElement[Any], needle: str) -> ColumnElement[bool]:
        if self.pg:
            return func.strpos(haystack, literal(needle)) > 0
        return func.instr(haystack, literal(needle)) > 0

    def _string_eq(self, value: str) -> ColumnElement[bool]:
        if len(value) < TXT_MAX:  # a value this short is stored whole in txt
            return ItemMeta.txt == value
        return and_(ItemMeta.txt == value[:TXT_MAX], self._full() == value)

    def _condition(self, p: Pred) -> Any:
        numeric = p.key is not None and p.key.numeric
        column: Any = ItemMeta.num if numeric else ItemMeta.txt
        op, v = p.op, p.value
        if op in ("exists", "missing"):
            return true()
        if op in ("eq", "ne"):
            same = column == v if numeric else self._string_eq(v)
            return same if op == "eq" else not_(same)
        if op in ("in", "not_in"):
            within: Any
            if numeric:
                within = column.in_(v)
            else:
                short = [x for x in v if len(x) < TXT_MAX]
                long = [x for x in v if len(x) >= TXT_MAX]
                # the long values as two flat lists (their stored prefixes, then in full), never
                # one term per value: 1,000 of those nest past SQLite's expression depth limit
                within = or_(column.in_(short) if short else false(),
                             and_(column.in_({x[:TXT_MAX] for x in long}), self._full().in_(long))
                             if long else false())
            return within if op == "in" else not_(within)
        if op == "lt":
            return column < v
        if op == "lte":
            return column <= v
        if op == "gt":
            return column > v
        if op == "gte":
            return column >= v
        if op == "prefix":
            return and_(column >= v, func.substr(column, 1, len(v)) == v)
        if op == "contains":
            return self._contains(self._full(), v)
        if op == "icontains":
            return self._contains(self._lower(self._full()), v.lower() if v.isascii() else _ascii_lower(v))
        if op == "ieq":
            return self._lower(self._full()) == _ascii_lower(v)
        if op == "match":
            return ItemMeta.item_id.in_(self._fulltext(p))
        raise AssertionError(op)

    def _fulltext(self, p: Pred) -> Any:
        assert p.key is not None
        if self.pg:
            query = func.plainto_tsquery(text("'simple'"), " ".join(p.value))
            return select(ItemText.item_id).where(
                ItemText.key_id == p.key.id, func.to_tsvector(text("'simple'"), ItemText.body).op("@@")(query)
            )
        phrase = " ".join(f'"{w}"' for w in p.value)  # words only: \w+, so no quote inside
        matched = text("SELECT rowid FROM item_text_fts WHERE item_text_fts MATCH :q").bindparams(q=phrase)
        return select(ItemText.item_id).where(ItemText.key_id == p.key.id, ItemText.id.in_(matched))

    def metadata(self, p: Pred) -> ColumnElement[bool]:
        assert p.key is not None
        conditions = (ItemMeta.key_id == p.key.id, value_column(p.key).is_not(None), self._condition(p))
        if self.correlated:
            found = exists().where(ItemMeta.item_id == self.row, *conditions)
            return not_(found) if p.op == "missing" else found
        having = select(ItemMeta.item_id).where(*conditions)
        if p.op == "missing":
            return Item.id.not_in(having)
        return Item.id.in_(having)

    # -- map areas ------------------------------------------------------------------------------

    def area(self, node: Area) -> ColumnElement[bool]:
        """Items whose point on the map is in the area: probed by item (``ix_map_points_item_id``)
        when correlated, else read as one range of ``ix_map_points_map_xy``."""
        if self.correlated:
            # "+ 0": no index on these terms, so the planner probes by item (one row), never
            # the area's whole range of ix_map_points_map_xy for every item
            inside = area_condition(node, MapPoint.x + 0, MapPoint.y + 0)
            return exists().where(MapPoint.item_id == self.row, MapPoint.map_id + 0 == node.map_id, inside)
        inside = area_condition(node, MapPoint.x, MapPoint.y)
        return Item.id.in_(select(MapPoint.item_id).where(MapPoint.map_id == node.map_id, inside))

    # -- item fields --------------------------------------------------------------------------

    def _field_column(self, name: str) -> Any:
        if name == "size":
            return cast(Item.file_size, Float)
        if name == "created_at":
            return Item.created_at
        if name == "title":
            return Item.name.collate("C") if self.pg else Item.name
        if name == "type":
            return Item.item_type
        return media_number(MEDIA_FIELDS[name])

    def field(self, p: Pred) -> ColumnElement[bool]:
        name, op, v = p.field, p.op, p.value
        assert name is not None
        if name == "folder":
            return Item.folder_id.in_(v)
        if name == "dataset":
            return exists().where(DataRow.item_id == Item.id, DataRow.dataset_id.in_(v))
        if name == "collection":
            return exists().where(CollectionItem.item_id == Item.id, CollectionItem.collection_id.in_(v))
        if name in ("label_object", "label_classification"):
            kind = "objects" if name == "label_object" else "classifications"
            return exists().where(
                DataRow.item_id == Item.id, LabelRow.data_row_id == DataRow.id, has_feature(self.pg, kind, v)
            )
        if name == "tombstoned":  # its object gone from a cloud-synced folder's bucket
            wanted = set(v) if isinstance(v, list) else {v}
            if op in ("ne", "not_in"):
                wanted = {1.0, 0.0} - wanted
            if wanted == {1.0, 0.0}:
                return true()
            if not wanted:
                return false()
            return Item.tombstoned_at.is_not(None) if 1.0 in wanted else Item.tombstoned_at.is_(None)
        if name == "labels":
            labelled = exists().where(
                DataRow.item_id == Item.id, LabelRow.data_row_id == DataRow.id, has_labels(self.pg)
            )
            return labelled if op == "exists" else not_(labelled)
        column = self._field_column(name)
        if name == "created_at":
            v = [from_epoch(x) for x in v] if isinstance(v, list) else (
                from_epoch(v) if v is not None else None
            )
        conditions: dict[str, Any] = {
            "exists": lambda: column.is_not(None),
            "missing": lambda: column.is_(None),
            "eq": lambda: column == v,
            "ne": lambda: and_(column.is_not(None), column != v),
            "in": lambda: column.in_(v),
            "not_in": lambda: and_(column.is_not(None), column.not_in(v)),
            "lt": lambda: column < v,
            "lte": lambda: column <= v,
            "gt": lambda: column > v,
            "gte": lambda: column >= v,
            "prefix": lambda: func.substr(column, 1, len(v)) == v,
            "contains": lambda: self._contains(column, v),
            "icontains": lambda: self._contains(self._lower(column), _ascii_lower(v)),
            "ieq": lambda: self._lower(column) == _ascii_lower(v),
        }
        result: ColumnElement[bool] = conditions[op]()
        return result


def cast_table(model: Any) -> Table:
    table: Table = model.__table__
    return table


def _metadata_only(node: Node) -> bool:
    if isinstance(node, Area):
        return False
    if isinstance(node, Pred):
        return node.key is not None
    if isinstance(node, Not):
        return _metadata_only(node.item)
    return all(_metadata_only(n) for n in node.items)


def value_column(key: Key) -> Any:
    """The column a key's values are in (the other is null, and out of that column's index)."""
    return ItemMeta.num if key.numeric else ItemMeta.txt


def _ascii_lower(value: str) -> str:
    return value.translate(_ASCII_LOWER)


_ASCII_LOWER = str.maketrans("ABCDEFGHIJKLMNOPQRSTUVWXYZ", "abcdefghijklmnopqrstuvwxyz")


def media_number(name: str) -> Any:
    """A number in ``items.media`` (null when absent or not a number)."""
    return Item.media[name].as_float()


def has_labels(pg: bool) -> Any:
    """A label row with at least one object or classification answer."""
    if pg:
        return text(
            "(coalesce(label_rows.document -> 'object_answers', '{}'::jsonb) <> '{}'::jsonb "
            "OR coalesce(label_rows.document -> 'classification_answers', '{}'::jsonb) <> '{}'::jsonb)"
        )
    return text(
        "(coalesce(json_extract(label_rows.document, '$.object_answers'), '{}') <> '{}' "
        "OR coalesce(json_extract(label_rows.document, '$.classification_answers'), '{}') <> '{}')"
    )


def has_feature(pg: bool, kind: str, hashes: list[str]) -> Any:
    """The label row has an object (``kind="objects"``) or a classification of one of these
    feature hashes, in any data unit (and any frame of a video)."""
    if not hashes:
        return false()
    if pg:
        path = f"$.data_units.*.labels.**{{0 to 1}}.{kind}[*].featureHash"
        found = func.jsonb_path_query(LabelRow.document, text(f"'{path}'::jsonpath")).column_valued("fh")
        return exists(select(literal(1)).where(found.op("#>>")(text("'{}'::text[]")).in_(hashes)))
    tree = func.json_tree(LabelRow.document, literal("$.data_units")).table_valued(
        "key", "value", "path").alias()
    conditions = [tree.c.key == "featureHash", tree.c.value.in_(hashes), tree.c.path.like(f"%.{kind}[%"),
                  tree.c.path.not_like(f"%.{kind}[%].%")]
    if kind == "classifications":
        conditions.append(tree.c.path.not_like("%.objects[%"))
    return exists(select(literal(1)).select_from(tree).where(*conditions))
