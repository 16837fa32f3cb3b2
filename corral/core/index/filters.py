"""The query model: a JSON filter tree, checked against the schema into typed nodes.

A filter is a predicate or a combination::

    {"and": [F, ...]}   {"or": [F, ...]}   {"not": F}
    {"key": "camera", "op": "eq", "value": "cam1"}         a metadata key of the schema
    {"field": "size", "op": "gte", "value": 1000000}       an item field

Operators by kind (``ne`` and ``not_in`` hold for items that *have* the key with another
value; ``{"not": ...}`` also takes in items without it):

======================  ================================================================
every kind              eq, ne, in, not_in, exists, missing
number, datetime        lt, lte, gt, gte
varchar, text           prefix, contains, icontains, ieq (case-insensitive: ASCII letters)
text                    match (full-text: every word of the value, in any order)
======================  ================================================================

Item fields: ``type`` (eq, ne, in, not_in), ``title`` (as varchar), ``folder`` (eq: that folder;
under: it and its subfolders; a path or an id), ``size``, ``width``, ``height``, ``duration``,
``frames`` (ranges, eq, ne, in, not_in, exists, missing), ``created_at`` (ranges, eq, ne),
``dataset`` (in: linked into any of these datasets, by id or title), ``collection`` (in: in any
of these collections, by id or name), ``labels`` (exists / missing: has a label row with objects
or classifications in any project) and ``label_object`` / ``label_classification`` (eq, in: a
label row of the item has an object / a classification of these ontology features, by feature
hash or by name), ``tombstoned`` (eq, ne, in, not_in: true for the items whose object is gone
from a cloud-synced folder's bucket, see docs/cloud-sync.md).

A map area: ``{"in_map": {"key": K, "polygon": [[x, y], ...]}}`` (or ``"box": [x0, y0, x1, y1]``)
holds for the items whose point on embedding key K's current 2-D map is in the polygon (a lasso)
or the box, in the map's grid coordinates (``corral.core.maps.area``).

Two shorthands: ``{"in_collection": REF}`` (or a list of them) is ``{"field": "collection", "op":
"in", "value": [REF, ...]}``; ``{"preset": REF}`` is that filter preset's filter.

Values are checked by the key's schema type (an enum value must be an option, a datetime an ISO
8601 date or date-time, ...).  Every problem is a ``ValidationFailed`` naming where in the tree
it is (``filter.and[1].value``); an unknown key is one too, never an empty result.
"""

from __future__ import annotations

import math
import re
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from corral import errors
from corral.core.index.keys import TXT_MAX, Key, epoch
from corral.core.maps.area import Area
from corral.core.maps.area import check as check_area
from corral.core.metadata.validation import normaliser
from corral.errors import ErrorDetail

MAX_NODES = 200
MAX_DEPTH = 16
MAX_VALUES = 1000
MAX_STRING = 8192

EQUALITY = ("eq", "ne", "in", "not_in")
PRESENCE = ("exists", "missing")
RANGES = ("lt", "lte", "gt", "gte")
STRINGS = ("prefix", "contains", "icontains", "ieq")
OPS_BY_KIND: dict[str, tuple[str, ...]] = {
    "boolean": EQUALITY + PRESENCE,
    "uuid": EQUALITY + PRESENCE,
    "enum": EQUALITY + PRESENCE,
    "number": EQUALITY + PRESENCE + RANGES,
    "datetime": EQUALITY + PRESENCE + RANGES,
    "varchar": EQUALITY + PRESENCE + STRINGS,
    "text": EQUALITY + PRESENCE + STRINGS + ("match",),
}
QUERYABLE_KINDS = ("boolean", "datetime", "number", "uuid", "varchar", "text", "enum")
#: Item fields: name -> (kind of its values, operators).
FIELDS: dict[str, tuple[str, tuple[str, ...]]] = {
    "type": ("type", EQUALITY),
    "title": ("varchar", EQUALITY + STRINGS),
    "folder": ("folder", ("eq", "under")),
    "size": ("number", EQUALITY + PRESENCE + RANGES),
    "width": ("number", EQUALITY + PRESENCE + RANGES),
    "height": ("number", EQUALITY + PRESENCE + RANGES),
    "duration": ("number", EQUALITY + PRESENCE + RANGES),
    "frames": ("number", EQUALITY + PRESENCE + RANGES),
    "created_at": ("datetime", ("eq", "ne") + RANGES),
    "dataset": ("dataset", ("in",)),
    "labels": ("labels", PRESENCE),
    "collection": ("collection", ("in",)),
    "label_object": ("feature", ("eq", "in")),
    "label_classification": ("feature", ("eq", "in")),
    "tombstoned": ("boolean", EQUALITY),
}
#: What resolves references (collections, presets, ontology features) to ids.
Resolve = Callable[[str], uuid.UUID]
WORD = re.compile(r"\w+")


@dataclass(frozen=True)
class Pred:
    """One checked predicate.  ``key`` for a metadata key, else ``field``; ``value`` is
    normalised: floats for number, datetime (Unix seconds) and boolean (0/1) keys, strings for the
    string kinds, a list for ``in``/``not_in``, ids for folder and dataset, words for ``match`` (as
    typed: the database folds their case as it folds the text's)."""

    op: str
    value: Any
    key: Key | None = None
    field: str | None = None

    @property
    def kind(self) -> str:
        return self.key.kind if self.key is not None else FIELDS[self.field or ""][0]


@dataclass(frozen=True)
class And:
    items: tuple[Node, ...]


@dataclass(frozen=True)
class Or:
    items: tuple[Node, ...]


@dataclass(frozen=True)
class Not:
    item: Node


Node = Pred | And | Or | Not | Area


class Catalog:
    """What checking a filter needs to know: the queryable keys, and how to resolve folder,
    dataset, collection, preset and ontology feature references (the caller supplies those, with
    the principal's permissions).  ``presets`` gives a preset's id and JSON filter tree;
    ``features`` the feature hashes an object or classification reference stands for; ``maps``
    the current map of an embedding key (or a ``ValidationFailed`` naming ``where``)."""

    def __init__(
        self,
        keys: dict[str, Key],
        *,
        deleted: frozenset[str] = frozenset(),
        folders: Callable[[str, bool], list[uuid.UUID]] | None = None,
        datasets: Resolve | None = None,
        collections: Resolve | None = None,
        presets: Callable[[str], tuple[uuid.UUID, Any]] | None = None,
        features: Callable[[str, str], list[str]] | None = None,
        maps: Callable[[str, str], int] | None = None,
        seq: int | None = None,
        kinds: Callable[[str], str | None] | None = None,
    ) -> None:
        self.keys = keys
        self.kinds = kinds  # a live schema key's kind (to say why one that is not queryable is not)
        self.seq = seq  # the index change sequence the keys were read at (None: not read)
        self.deleted = deleted
        self.folders = folders
        self.datasets = datasets
        self.collections = collections
        self.presets = presets
        self.features = features
        self.maps = maps

    def key(self, name: str, where: str) -> Key:
        found = self.keys.get(name)
        if found is None:
            if name in self.deleted:
                raise _bad(where, f"metadata key {name!r} is deleted from the schema")
            kind = self.kinds(name) if self.kinds is not None else None
            if kind is not None:
                also = "; search it by similarity, or by a map area (in_map)" if kind == "embedding" else ""
                article = "an" if kind[0] in "aeiou" else "a"
                raise _bad(where, f"metadata key {name!r} is {article} {kind} key, which the index does not "
                           f"filter, sort or count (only {', '.join(QUERYABLE_KINDS)} keys){also}")
            known = ", ".join(sorted(self.keys)[:30]) or "none"
            raise _bad(where, f"unknown metadata key {name!r}; the schema's queryable keys are: {known}")
        if not found.ready:
            raise errors.Conflict(
                f"metadata key {name!r} is being indexed (job {found.job_id}); query it when the job is done"
            )
        return found


def _bad(where: str, message: str) -> errors.ValidationFailed:
    detail = ErrorDetail(message, field=where)
    return errors.ValidationFailed(f"invalid filter: {where}: {message}", details=[detail])


def _scalar(kind: str, key: Key | None, raw: Any, where: str) -> Any:
    """One value, checked and normalised for ``kind``."""
    if kind in ("number",) and key is None:
        if isinstance(raw, bool) or not isinstance(raw, int | float) or not math.isfinite(raw):
            raise _bad(where, f"expected a finite number, got {raw!r}")
        return float(raw)
    if kind == "datetime" and key is None:
        from corral.core.metadata.schema import Entry

        key = Key(0, "created_at", Entry(kind="datetime"), True, None)
    if kind in ("type", "folder", "dataset", "collection", "feature"):
        if not isinstance(raw, str) or not raw:
            raise _bad(where, f"expected a non-empty string, got {raw!r}")
        if kind == "type":
            from corral.core.items import ITEM_TYPES  # not at the top: items imports the index

            if raw not in ITEM_TYPES:  # an unknown type (a typo, 'IMAGE') was an empty result
                raise _bad(where, f"expected an item type ({', '.join(ITEM_TYPES)}), got {raw!r}")
        return raw
    if kind == "boolean" and key is None:  # tombstoned
        if not isinstance(raw, bool):
            raise _bad(where, f"expected true or false, got {raw!r}")
        return 1.0 if raw else 0.0
    if key is None:  # title
        if not isinstance(raw, str) or len(raw) > MAX_STRING:
            raise _bad(where, f"expected a string of at most {MAX_STRING} characters, got {raw!r}")
        return raw
    normalised = normaliser(key.entry)(raw)
    if normalised is None or (isinstance(raw, bool) and kind == "number"):
        raise _bad(where, f"{raw!r} is not a valid value of {key.name!r} ({key.entry.describe()})")
    if kind == "number":
        return float(normalised)
    if kind == "boolean":
        return 1.0 if normalised else 0.0
    if kind == "datetime":
        return epoch(normalised)
    return normalised


def _value(pred_op: str, kind: str, key: Key | None, raw: Any, where: str) -> Any:
    if pred_op in PRESENCE:
        if raw is not None:
            raise _bad(where, f"{pred_op} takes no value")
        return None
    if pred_op in ("in", "not_in"):
        if not isinstance(raw, list) or not 1 <= len(raw) <= MAX_VALUES:
            raise _bad(where, f"{pred_op} takes a list of 1 to {MAX_VALUES} values")
        return [_scalar(kind, key, v, f"{where}[{i}]") for i, v in enumerate(raw)]
    if pred_op in STRINGS or pred_op == "match":
        if not isinstance(raw, str) or not raw or len(raw) > MAX_STRING:
            raise _bad(where, f"{pred_op} takes a non-empty string of at most {MAX_STRING} characters")
        if pred_op == "prefix" and len(raw) > TXT_MAX:
            raise _bad(where, f"a prefix is at most {TXT_MAX} characters")
        if pred_op == "match":
            # as typed: each database folds a query's words as it folds the text's (Python's
            # lower() differs from both: 'İ', a final 'Σ'), so a word always matches itself
            words = WORD.findall(raw)
            if not words:
                raise _bad(where, "match needs at least one word (letters or digits)")
            return words
        return raw
    if pred_op == "under" or kind in ("folder", "dataset", "collection", "feature"):
        return _scalar(kind, key, raw, where)
    return _scalar(kind, key, raw, where)


class _Parser:
    def __init__(self, catalog: Catalog) -> None:
        self.catalog = catalog
        self.nodes = 0
        self.expanding: list[uuid.UUID] = []  # presets being expanded (a preset may not use itself)

    def node(self, raw: Any, where: str, depth: int) -> Node:
        self.nodes += 1
        if self.nodes > MAX_NODES:
            raise _bad(where, f"a filter has at most {MAX_NODES} nodes")
        if depth > MAX_DEPTH:
            raise _bad(where, f"a filter nests at most {MAX_DEPTH} deep")
        if not isinstance(raw, dict):
            raise _bad(where, f"expected an object (and, or, not, or a predicate), got {raw!r}")
        if "in_collection" in raw or "preset" in raw:
            return self.shorthand(raw, where, depth)
        if "in_map" in raw:
            return self.area(raw, where)
        combinators = [c for c in ("and", "or", "not") if c in raw]
        if combinators:
            if len(raw) != 1:
                raise _bad(where, f"{combinators[0]!r} stands alone in its object; found {sorted(raw)}")
            name = combinators[0]
            if name == "not":
                return Not(self.node(raw["not"], f"{where}.not", depth + 1))
            items = raw[name]
            if not isinstance(items, list) or not items:
                raise _bad(f"{where}.{name}", "expected a non-empty list of filters")
            parsed = tuple(self.node(x, f"{where}.{name}[{i}]", depth + 1) for i, x in enumerate(items))
            return And(parsed) if name == "and" else Or(parsed)
        return self.predicate(raw, where)

    def shorthand(self, raw: dict[str, Any], where: str, depth: int) -> Node:
        name = "in_collection" if "in_collection" in raw else "preset"
        if len(raw) != 1:
            raise _bad(where, f"{name!r} stands alone in its object; found {sorted(raw)}")
        ref = raw[name]
        if name == "in_collection":
            refs = ref if isinstance(ref, list) else [ref]
            tree = {"field": "collection", "op": "in", "value": refs}
            return self.predicate(tree, f"{where}.in_collection")
        if not isinstance(ref, str) or not ref:
            raise _bad(f"{where}.preset", f"expected a preset id or name, got {ref!r}")
        assert self.catalog.presets is not None
        preset_id, tree = self.catalog.presets(ref)
        if preset_id in self.expanding:
            raise _bad(f"{where}.preset", f"preset {ref!r} uses itself")
        if tree is None or tree == {}:
            return And(())  # a preset of every item
        self.expanding.append(preset_id)
        try:
            return self.node(tree, f"{where}.preset({ref})", depth + 1)
        finally:
            self.expanding.pop()

    def area(self, raw: dict[str, Any], where: str) -> Area:
        if len(raw) != 1:
            raise _bad(where, f"'in_map' stands alone in its object; found {sorted(raw)}")
        try:
            key, polygon, box = check_area(raw["in_map"], f"{where}.in_map")
        except ValueError as exc:
            at, message = exc.args
            raise _bad(at, message) from None
        if self.catalog.maps is None:
            raise _bad(f"{where}.in_map", "map areas are not available here")
        return Area(key, self.catalog.maps(key, f"{where}.in_map.key"), polygon, box)

    def predicate(self, raw: dict[str, Any], where: str) -> Pred:
        unknown = sorted(set(raw) - {"key", "field", "op", "value"})
        if unknown:
            shown = ", ".join(unknown)
            raise _bad(where, f"unknown member(s) {shown}; a predicate has key or field, op, value")
        if ("key" in raw) == ("field" in raw):
            raise _bad(where, "a predicate names exactly one of key (metadata) or field (item field)")
        op = raw.get("op")
        if "key" in raw:
            if not isinstance(raw["key"], str):
                raise _bad(f"{where}.key", "expected a string")
            key = self.catalog.key(raw["key"], f"{where}.key")
            kind, ops, field = key.kind, OPS_BY_KIND[key.kind], None
        else:
            field = raw["field"]
            if field not in FIELDS:
                known = ", ".join(FIELDS)
                raise _bad(f"{where}.field", f"unknown item field {field!r}; expected one of {known}")
            kind, ops = FIELDS[field]
            key = None
        if op not in ops:
            what = f"{raw.get('key') or field!r} ({key.entry.describe() if key else 'item field'})"
            raise _bad(f"{where}.op", f"operator {op!r} does not apply to {what}; it takes {', '.join(ops)}")
        value = _value(op, kind, key, raw.get("value"), f"{where}.value")
        if field == "folder":
            assert self.catalog.folders is not None
            value = self.catalog.folders(value, op == "under")
        elif field == "dataset":
            assert self.catalog.datasets is not None
            value = [self.catalog.datasets(v) for v in value]
        elif field == "collection":
            assert self.catalog.collections is not None
            value = [self.catalog.collections(v) for v in value]
        elif kind == "feature":
            assert self.catalog.features is not None and field is not None
            what = "object" if field == "label_object" else "classification"
            refs = value if op == "in" else [value]
            value = sorted({h for v in refs for h in self.catalog.features(what, v)})
        return Pred(op, value, key=key, field=field)


def parse(
    raw: Any, catalog: Catalog, where: str = "filter", *, within: uuid.UUID | None = None
) -> Node | None:
    """The checked tree of a JSON filter (None for no filter: everything).  ``within``: the
    preset this filter is being saved into, which it may not use, directly or through others."""
    if raw is None or raw == {}:
        return None
    parser = _Parser(catalog)
    if within is not None:
        parser.expanding.append(within)
    return parser.node(raw, where, 0)
