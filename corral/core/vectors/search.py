"""Similarity search: items like this one, near this vector, or like this set, under any filter.

``similar`` resolves the query vector (an item's stored vector, a given vector, or the mean of
several items' vectors), builds the candidate set from the index's query model (the items the
caller may see, published, not deleted, under the filter), and asks the store for the top ``k``
(see ``TableStore.search`` for how exact and approximate search share the work).  Scores are
exact: cosine similarity, inner product, or minus the Euclidean distance; higher is closer.
"""

from __future__ import annotations

import functools
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np
from numpy.typing import NDArray
from sqlalchemy import ColumnElement, and_, bindparam, func, select, union_all
from sqlalchemy.orm import Session

from corral import errors
from corral.core import items as items_core
from corral.core.identity import Principal
from corral.core.index import query as index_query
from corral.core.metadata import service as metadata_service
from corral.core.metadata import validation
from corral.core.vectors import endpoint
from corral.core.vectors import keys as vector_keys
from corral.core.vectors.store import MARKER, METRICS, Few, Hit, Metric, VectorKey, Vectors, is_marker
from corral.core.vectors.table import TableStore
from corral.db.engine import Database
from corral.db.tables import Item, ItemVector
from corral.errors import ErrorDetail
from corral.storage.netpolicy import EndpointPolicy

MAX_K = 1000
MAX_SET = 1000


def _bad(field_: str, message: str) -> errors.ValidationFailed:
    return errors.ValidationFailed(message, details=[ErrorDetail(message, field=field_)])


def ensure_keys(db: Database, org_id: uuid.UUID) -> dict[str, VectorKey]:
    """The organisation's vector keys, brought in step with its schema if they are behind."""
    with db.read() as s:
        keys = vector_keys.load(s, org_id)
        schema = metadata_service.current(s, org_id).schema
        if vector_keys.in_step(keys, schema):
            return keys
    with db.write() as s:
        schema = metadata_service.current(s, org_id, lock=True).schema
        return vector_keys.sync(s, org_id, schema)


def key_named(keys: dict[str, VectorKey], name: str | None) -> VectorKey:
    if name is None:
        if len(keys) == 1:
            return next(iter(keys.values()))
        raise _bad("key", "name the embedding key to search (embedding keys: "
                   f"{', '.join(sorted(keys)) or 'none'})")
    key = keys.get(name)
    if key is None:
        known = ", ".join(sorted(keys)) or "none"
        raise _bad("key", f"{name!r} is not an embedding key of the metadata schema "
                   f"(embedding keys: {known})")
    return key


class SqlCandidates:
    """Candidates as SQL conditions on ``items`` (``index.query.prepare``'s).

    ``matches`` (with ``hidden``), when given, is the same set read without ``items``: the ids
    matching a metadata-only filter from ``item_meta``'s value index, hidden items included, and
    the organisation's hidden items (deleted, or staged by a job not done) to take away; only
    for a principal who sees every folder (``index.query.metadata_candidates``).  A small set's
    row ids are then read from two indexes alone (the value index, and ``item_vectors``'
    ``(key_id, item_id)``), no item row: at a million items a 1% filter's 10,000 item rows were
    most of the query's time.
    """

    def __init__(self, s: Session, key: VectorKey, where: list[ColumnElement[bool]] | None,
                 exclude: Sequence[uuid.UUID] = (), *, broad: bool = False,
                 matches: index_query.MetadataCandidates | None = None,
                 visibility: index_query.Visibility | None = None) -> None:
        """``where`` None: the conditions are ``visibility``'s alone (no filter), built only when
        a statement other than ``labelled``'s needs them; ``labelled`` then runs a statement built
        once (``_labelled_statement``)."""
        if where is None and visibility is None:
            raise ValueError("give where or visibility")
        self.s, self.key, self._where, self.exclude = s, key, where, set(exclude)
        self.broad, self.matches, self.visibility = broad, matches, visibility

    @property
    def where(self) -> list[ColumnElement[bool]]:
        if self._where is None:
            assert self.visibility is not None
            self._where = self.visibility.conditions()
        return self._where

    def _joined(self, *columns: Any) -> Any:
        on = and_(ItemVector.item_id == Item.id, ItemVector.key_id == self.key.id)
        query = select(*columns).select_from(ItemVector).join(Item, on).where(*self.where)
        if self.exclude:
            query = query.where(ItemVector.item_id.not_in(list(self.exclude)))
        return query

    def _rows(self, *columns: Any) -> Any:
        """``_joined``, from the filter's value index when it can be (``matches``): the matching
        ids drive ``item_vectors``' ``(key_id, item_id)`` index, and the hidden items (few, an
        index of their own) are taken away; no item row is read."""
        if self.matches is None:
            return self._joined(*columns)
        query = select(*columns).where(ItemVector.key_id == self.key.id,
                                       ItemVector.item_id.in_(self.matches.ids),
                                       ItemVector.item_id.not_in(self.matches.hidden))
        if self.exclude:
            query = query.where(ItemVector.item_id.not_in(list(self.exclude)))
        return query

    def _row_ids(self) -> Any:
        """The candidates' row ids (``item_vectors.id``) as a subquery's ``id`` column: from the
        filter's value index when it can be (``matches``), each match's row id found by a probe
        of ``(key_id, item_id)`` (a correlated subquery: PostgreSQL otherwise hashes the key's
        whole ``item_vectors``, 200,000 rows for 2,000 matches), matches without a vector and
        hidden items taken away; else ``_joined``."""
        if self.matches is None:
            return self._joined(ItemVector.id.label("id")).subquery()
        matched = self.matches.ids.subquery()
        probe = (select(ItemVector.id).where(ItemVector.key_id == self.key.id,
                                            ItemVector.item_id == matched.c.item_id)
                 .scalar_subquery().label("id"))
        rows = select(probe).where(matched.c.item_id.not_in(self.matches.hidden))
        if self.exclude:
            rows = rows.where(matched.c.item_id.not_in(list(self.exclude)))
        # OFFSET 0: the subquery stays one (PostgreSQL would otherwise pull it up and probe twice,
        # once for the value and once for the IS NOT NULL)
        found = rows.offset(0).subquery()
        return select(found.c.id).where(found.c.id.is_not(None)).subquery()

    def small(self, limit: int) -> Few | None:
        # Counted in the database first (at most limit + 1 rows, no row reaches Python), then
        # the vectors read as raw rows: row ids and bytes, no item ids or UUID objects.
        counted = self._rows(ItemVector.id).limit(limit + 1).subquery()
        if (self.s.scalar(select(func.count()).select_from(counted)) or 0) > limit:
            return None
        # Unordered (an ORDER BY would make the database walk every vector of the key in id
        # order); put in row id order here (numpy, not Python row comparisons), so ties are
        # broken the same way every time.
        rows = self.s.execute(self._rows(ItemVector.id, ItemVector.vec)).all()
        labels = np.fromiter((r[0] for r in rows), dtype=np.int64, count=len(rows))
        matrix = np.frombuffer(b"".join([r[1] for r in rows]), dtype="<f4").reshape(len(rows), self.key.dim)
        order = np.argsort(labels, kind="stable")
        return Few(labels[order], matrix[order])

    def row_ids(self, limit: int) -> Any:
        row_ids = self._row_ids()
        return select(row_ids.c.id).limit(limit + 1).subquery()

    def labels(self, limit: int) -> NDArray[np.int64] | None:
        # One statement, the row ids only (the unique index on (key_id, item_id) covers them: no
        # vector is read), at most limit + 1 of them, as one value (a list on PostgreSQL, text
        # on SQLite): 10,000 rows through the result machinery cost more than finding them.
        found = self.row_ids(limit)
        if self.s.get_bind().dialect.name == "postgresql":
            count, listed = self.s.execute(select(func.count(), func.array_agg(found.c.id))).one()
            if count > limit:
                return None
            out = np.array(listed or [], dtype=np.int64)
        else:
            count, joined = self.s.execute(select(func.count(), func.group_concat(found.c.id))).one()
            if count > limit:
                return None
            out = np.array(joined.split(",") if joined else [], dtype=np.int64)
        out.sort()
        return out

    def labelled(self, labels: Sequence[int], after: int) -> tuple[list[uuid.UUID], list[bytes]]:
        # One statement: the labels' rows that are still stored and candidates, and the delta's
        # candidates (vectors newer than the index), with their bytes (no second look-up).
        if self._where is None and self.visibility is not None:
            chunks = [list(labels[i : i + 500]) for i in range(0, len(labels), 500)]
            folders = self.visibility.folders is not None
            statement = _labelled_statement(len(chunks), folders, bool(self.exclude))
            params = {**self.visibility.params(), "key_id": self.key.id, "after": after,
                      **{f"labels{i}": [int(x) for x in chunk] for i, chunk in enumerate(chunks)}}
            if self.exclude:
                params["exclude"] = sorted(self.exclude)
            rows = self.s.connection().execute(statement, params).all()
            return [r[0] for r in rows], [r[1] for r in rows]
        parts = [self._joined(ItemVector.item_id, ItemVector.vec).where(ItemVector.id.in_(chunk))
                 for chunk in (labels[i : i + 500] for i in range(0, len(labels), 500))]
        # the delta's row ids first (``ix_item_vectors_key_id_id``), so that no database starts
        # from the organisation's items
        delta = select(ItemVector.id).where(ItemVector.key_id == self.key.id, ItemVector.id > after)
        parts.append(self._joined(ItemVector.item_id, ItemVector.vec).where(ItemVector.id.in_(delta)))
        rows = self.s.execute(union_all(*parts) if len(parts) > 1 else parts[0]).all()
        return [r[0] for r in rows], [r[1] for r in rows]

    def accept(self, item_ids: Sequence[uuid.UUID]) -> set[uuid.UUID]:
        out: set[uuid.UUID] = set()
        unique = list(dict.fromkeys(item_ids))
        for i in range(0, len(unique), 500):
            query = select(Item.id).where(Item.id.in_(unique[i : i + 500]), *self.where)
            out.update(self.s.scalars(query))
        return out - self.exclude


@functools.lru_cache(maxsize=64)
def _labelled_statement(chunks: int, folders: bool, exclude: bool) -> Any:
    """``SqlCandidates.labelled``'s statement for a principal's visibility alone (no filter), with
    bound parameters: built and compiled once per shape, not once a query (at a million vectors
    building it, its cache key and the ORM's execution were a fifth of a query,
    docs/performance.md).  The same rows as the general statement: the conditions are
    ``Visibility.bound``, ``visible``'s with parameters."""
    on = and_(ItemVector.item_id == Item.id, ItemVector.key_id == bindparam("key_id"))
    conditions = index_query.Visibility.bound(folders)
    if exclude:
        conditions.append(ItemVector.item_id.not_in(bindparam("exclude", expanding=True)))
    base = (select(ItemVector.item_id, ItemVector.vec).select_from(ItemVector).join(Item, on)
            .where(*conditions))
    parts = [base.where(ItemVector.id.in_(bindparam(f"labels{i}", expanding=True))) for i in range(chunks)]
    delta = (select(ItemVector.id)
             .where(ItemVector.key_id == bindparam("key_id"), ItemVector.id > bindparam("after")))
    parts.append(base.where(ItemVector.id.in_(delta)))
    return union_all(*parts) if len(parts) > 1 else parts[0]


#: The output columns of a search's hits (``index_query._output``), by item id.
_HIT_ROWS = select(*index_query._OUTPUT_COLUMNS).where(Item.id.in_(bindparam("ids", expanding=True)))


@dataclass(frozen=True)
class Query:
    key: str | None
    k: int = 10
    metric: str | None = None
    item: uuid.UUID | None = None
    vector: list[Any] | None = None  # checked by ``_query_vector`` (the stored values' rule)
    items: list[uuid.UUID] | None = None
    filter: Any = None
    include_query_items: bool = False
    text: str | None = None  # through the key's embedding endpoint (``resolve_input``)
    image: bytes | None = None


@dataclass
class Result:
    key: str
    metric: Metric
    store: str
    hits: list[Hit]
    items: list[dict[str, Any]] = field(default_factory=list)


def check(q: Query) -> None:
    given = [n for n, v in (("item", q.item), ("vector", q.vector), ("items", q.items), ("text", q.text),
                            ("image", q.image)) if v is not None]
    if len(given) != 1:
        raise _bad("item", "give exactly one of item (an item id), vector (numbers), items (item ids), "
                   "text or image (through the key's embedding endpoint)")
    if not 1 <= q.k <= MAX_K:
        raise _bad("k", f"k is 1 to {MAX_K}, got {q.k}")
    if q.metric is not None and q.metric not in METRICS:
        raise _bad("metric", f"metric is one of {', '.join(METRICS)}, got {q.metric!r}")
    if q.items is not None and not 1 <= len(q.items) <= MAX_SET:
        raise _bad("items", f"items holds 1 to {MAX_SET} item ids")


def resolve_input(db: Database, principal: Principal, keys: dict[str, VectorKey], q: Query, *,
                  policy: EndpointPolicy, signer: endpoint.Signer) -> Query:
    """``q`` with its text or image turned into a vector by the key's embedding endpoint.

    The endpoint is called outside any database transaction (it may take the key's timeout).
    """
    if q.text is None and q.image is None:
        return q
    key = key_named(keys, q.key)
    with db.read() as s:
        entry = metadata_service.current(s, principal.org_id).schema.entries.get(key.name)
    api = entry.api if entry is not None and entry.live else None
    vector = endpoint.embed(key, api, endpoint.Input(q.text, q.image), policy=policy,
                            signer=signer, user_id=principal.user_id)
    return replace(q, key=key.name, text=None, image=None, vector=[float(x) for x in vector])


def _query_vector(s: Session, principal: Principal, store: TableStore, key: VectorKey, q: Query) -> Vectors:
    if q.vector is not None:
        if type(q.vector) is list and len(q.vector) != key.dim:
            raise _bad("vector", f"{len(q.vector)} numbers where {key.name!r} has {key.dim}")
        try:  # the stored values' rule: numbers (no booleans, no strings) within float32's range
            given = validation.embedding_numbers(q.vector, key.dim)
        except ValueError as e:
            raise _bad("vector", f"vector: {e}") from None
        assert given.vector is not None
        return given.vector
    ids = [q.item] if q.item is not None else list(q.items or [])
    for item_id in ids:
        items_core.load(s, principal, item_id)  # 404 unless the caller may see it
    found = store.get(s, key, ids)
    missing = [str(i) for i in ids if i not in found]
    if missing:
        where = "item" if q.item is not None else "items"
        raise _bad(where, f"no {key.name!r} vector stored for item {', '.join(missing[:5])}")
    if len(ids) == 1:
        return found[ids[0]]
    stack = np.stack([found[i] for i in ids]).astype(np.float32)
    if (q.metric or key.metric) == "cosine":  # the mean direction: each counts the same
        # in float64: a float32 norm of numbers beyond 1e19 overflows (and divides them to 0)
        norms = np.linalg.norm(stack.astype(np.float64), axis=1, keepdims=True)
        stack = (stack / np.where(norms == 0, 1.0, norms)).astype(np.float32)
    out: Vectors = stack.mean(axis=0).astype(np.float32)
    return out


#: Under cosine, a set's mean of unit vectors this short is a cancellation (``v`` and ``-v``, or
#: three at 120 degrees), its direction the rounding's: no answer to "like these".
CANCELLED_NORM = 1e-6


def _has_direction(q: Query, metric: Metric, vector: Vectors) -> None:
    """Refuse a query vector that ranks nothing: all zeros under cosine (no direction: every
    similarity is 0) or dot (every product is 0), so the items would come in an arbitrary order.
    Under l2 it is the origin, a point like any other."""
    if metric == "l2":
        return
    norm = float(np.linalg.norm(np.asarray(vector, dtype=np.float64)))
    if q.items is not None and metric == "cosine" and norm < CANCELLED_NORM:
        raise _bad("items", "these items' vectors cancel out (their mean under cosine has no "
                   "direction), so nothing is more like them than anything else; give other items")
    if norm == 0.0:
        where = "vector" if q.vector is not None else "item" if q.item is not None else "items"
        raise _bad(where, f"the query vector is all zeros: it has no direction, so {metric} similarity "
                   "ranks every item the same; give another vector or item, or use metric l2")


def similar(s: Session, principal: Principal, store: TableStore, keys: dict[str, VectorKey], q: Query,
            fields: tuple[str, ...] = index_query.OUTPUT_FIELDS) -> Result:
    check(q)
    key = key_named(keys, q.key)
    metric: Metric = q.metric or key.metric  # type: ignore[assignment]
    vector = _query_vector(s, principal, store, key, q)
    _has_direction(q, metric, vector)
    if metric == "cosine":
        # unit length (in float64): the same cosines, and nothing for a ranking copy's products to
        # underflow (numbers below 1e-19) or overflow
        vector = (vector / np.linalg.norm(vector.astype(np.float64))).astype(np.float32)
    matches, visibility = None, None
    if q.filter is None or q.filter == {}:  # no catalog (schema, index keys) to read
        visibility = index_query.visibility(s, principal)
        where = None
        broad = principal.is_admin  # admins see every folder
    else:
        prepared = index_query.prepare(s, principal, q.filter)
        where, broad = prepared.where, prepared.node is None and principal.is_admin
        matches = index_query.metadata_candidates(s, principal, prepared)
    exclude = [] if q.include_query_items else [i for i in [q.item, *(q.items or [])] if i is not None]
    candidates = SqlCandidates(s, key, where, exclude, broad=broad, matches=matches, visibility=visibility)
    hits = store.search(s, key, vector, q.k, metric, candidates)
    # the output's columns only (no ORM objects), as the index's pages read them
    rows = {r.id: r for r in s.connection().execute(_HIT_ROWS, {"ids": [h.item_id for h in hits]})}
    out = []
    for hit in hits:
        item = rows.get(hit.item_id)
        if item is not None:
            out.append({**index_query._output(item, fields), "score": hit.score})
    return Result(key.name, metric, store.name, hits, out)


def with_vectors(s: Session, org_id: uuid.UUID, view: items_core.ItemView) -> items_core.ItemView:
    """``view`` with each embedding marker replaced by the stored numbers."""
    names = [n for n, v in view.client_metadata.items() if is_marker(v)]
    if not names:
        return view
    keys = vector_keys.load(s, org_id)
    metadata = dict(view.client_metadata)
    store = TableStore()
    for name in names:
        key = keys.get(name)
        found = store.get(s, key, [view.id]) if key is not None else {}
        if view.id in found:
            metadata[name] = [float(x) for x in found[view.id]]
        else:
            metadata[name] = {MARKER: {**metadata[name][MARKER], "missing": True}}
    return replace(view, client_metadata=metadata)
