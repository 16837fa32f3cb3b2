"""The PostgreSQL store: pgvector HNSW indexes beside the stored vectors.

Each key's indexed vectors are copied into a table of its own, ``corral_vec_<key id>``
(``id`` = ``item_vectors.id``, ``v``; its rows go when their ``item_vectors`` row goes, by
cascade), with one HNSW index for the key's metric:

* up to 4,000 dimensions: ``v halfvec(dim)``, indexed with the ``halfvec_*_ops`` (half the bytes
  of float32 in the table and in the index: at 1,000,000 x 512 the index is about 1.3 GB instead
  of 2.6, the table 1.1 GB instead of 2.1; the scores are exact anyway, see below);
* beyond (pgvector indexes at most 4,000 dimensions of halfvec): ``v vector(dim)`` and a
  binary-quantised index, ``(binary_quantize(v)::bit(dim))`` with ``bit_hamming_ops``; what it
  returns is re-ranked exactly (as every approximate result is, by ``TableStore``), so scores are
  exact.

A table of an older type (float32 rows up to 4,000 dimensions, before the halfvec table) is
dropped and copied afresh by the key's next build; until that build commits, the key is searched
exactly, as before its first build.

The index is named by its format (``index_name``); a build drops an index of another format or
metric and builds the new one.  The table keeps each vector in its row up to ``PLAIN_MAX``
dimensions, and a selective filter's candidates are ranked over those rows in SQL, in one
statement with the candidates themselves (``_among_candidates``).

The ``vector_index`` job copies new vectors in (binary ``COPY``), ``ANALYZE``s the table and builds
the index when it is missing (``CREATE INDEX`` after the bulk load), with ``maintenance_work_mem``
set for that transaction to hold the whole graph (``build_memory``: a graph that spills is built
many times slower) and the server's parallel maintenance workers.  Searches set, for their
transaction, ``hnsw.ef_search`` growing with the index (``ef_search``, as the embedded store's
``search_width``: a fixed width loses recall at a million) and ``hnsw.iterative_scan`` so a fetch
beyond the width (a selective filter's) is served in full.  The extension itself is created on
first use, which needs a superuser; ``scripts/ensure-pgvector`` installs it on a Debian machine.
"""

from __future__ import annotations

import logging
import struct
import threading
from typing import Any

import numpy as np
from sqlalchemy import Integer, String, bindparam, cast, column, func, select, text, update
from sqlalchemy import table as sql_table
from sqlalchemy.orm import Session
from sqlalchemy.types import UserDefinedType

from corral.core.vectors import table as table_module
from corral.core.vectors.store import Candidates, Hit, Metric, Progress, VectorKey, Vectors, scores
from corral.core.vectors.table import TableStore, top_k
from corral.db.engine import Database
from corral.db.tables import VectorKey as VectorKeyRow

log = logging.getLogger(__name__)
HALFVEC_MAX = 4000
#: Keys up to this many dimensions are indexed as float32 ``vector``; above it (and up to
#: ``HALFVEC_MAX``) as ``halfvec``.  0: every key up to 4,000 dimensions is indexed as halfvec,
#: half the index's bytes (memory, build time) at no cost in the scores, which are exact anyway.
VECTOR_MAX = 0
#: HNSW graph degree and build width (pgvector's defaults; docs/performance.md, "pgvector").
M = 16
EF_CONSTRUCTION = 64
#: The search width (``hnsw.ef_search``) grows with the index as the embedded store's does:
#: ``EF_SEARCH`` up to ``EF_BASE_SIZE`` vectors, then as size**0.7, at most pgvector's 1,000
#: (clustered 512-d vectors, recall@10 after the exact re-score: 200,000: 0.885 at 100, 0.955 at
#: 300; 1,000,000: 0.831 at 326, 0.907 at 700, 0.943 at 1,000; docs/performance.md).
EF_SEARCH = 120
EF_BASE_SIZE = 50_000
EF_MAX = 1000
#: What one indexed vector costs an in-memory HNSW build beyond its value: its level-0 neighbour
#: candidates (2 * M of 16 bytes), the element and allocation overhead.  A build whose graph does
#: not fit in ``maintenance_work_mem`` writes it out as it goes, many times slower.
_GRAPH_BYTES = 2 * M * 16 + 320
#: ``maintenance_work_mem`` of one build (its transaction only) is sized to its graph, within these.
BUILD_MEMORY_MIN = 64 << 20
BUILD_MEMORY_MAX = 8 << 30
#: Keys up to this many dimensions keep each vector in its table's row (``STORAGE PLAIN``: a
#: halfvec row of 4,000 numbers, 8,008 bytes, still fits a page): a selective filter's candidates
#: are ranked by reading their rows (``_among_candidates``), and a vector of more than about 1,000 halfs
#: would otherwise be moved out to TOAST, two more index and heap reads per candidate (1,000,000 x
#: 512: docs/performance.md, "The 1% filter").
PLAIN_MAX = HALFVEC_MAX
_BATCH = 20_000
_OPS = {"cosine": "cosine", "dot": "ip", "l2": "l2"}
_OPERATOR = {"cosine": "<=>", "dot": "<#>", "l2": "<->"}
_available: dict[str, bool] = {}
_lock = threading.Lock()


def ensure_extension(db: Database) -> bool:
    """Create the ``vector`` extension if it is missing (needs a superuser); whether it exists."""
    url = str(db.engine.url)
    with _lock:
        if url in _available:
            return _available[url]
    ok = False
    try:
        with db.engine.connect() as conn:
            if conn.execute(text("SELECT 1 FROM pg_extension WHERE extname = 'vector'")).first():
                ok = True
            elif conn.execute(text("SELECT 1 FROM pg_available_extensions WHERE name = 'vector'")).first():
                conn.execute(text("CREATE EXTENSION IF NOT EXISTS vector"))
                conn.commit()
                ok = True
    except Exception as exc:  # no permission, or a concurrent creation: look again
        log.warning("pgvector: cannot create the vector extension: %s", exc)
        with db.engine.connect() as conn:
            ok = bool(conn.execute(text("SELECT 1 FROM pg_extension WHERE extname = 'vector'")).first())
    with _lock:
        _available[url] = ok
    return ok


def table_name(key_id: int) -> str:
    return f"corral_vec_{int(key_id)}"


def column_type(dim: int) -> str:
    """The type of the key's table's ``v``: ``halfvec`` up to ``HALFVEC_MAX`` dimensions (half a
    float32 row's bytes: the table, its copy and a filter's ranking read half as much), float32
    ``vector`` above it (the binary-quantised index is computed from it)."""
    return f"vector({dim})" if dim <= VECTOR_MAX or dim > HALFVEC_MAX else f"halfvec({dim})"


def _expression(dim: int) -> tuple[str, str]:
    """(what the index is over, its operator class prefix) for a ``dim``-dimensional key."""
    if dim <= VECTOR_MAX:
        return "v", "vector"
    if dim <= HALFVEC_MAX:
        return "v", "halfvec"
    return f"(binary_quantize(v)::bit({dim}))", "bit"


def index_name(key: VectorKey) -> str:
    """The key's HNSW index, named by what it is over (a change of format is a new name)."""
    return f"{table_name(key.id)}_hnsw_{_expression(key.dim)[1]}_m{M}_ef{EF_CONSTRUCTION}"


def _index_sql(key: VectorKey, metric: Metric) -> str:
    expr, family = _expression(key.dim)
    ops = "bit_hamming_ops" if family == "bit" else f"{family}_{_OPS[metric]}_ops"
    return (f"CREATE INDEX IF NOT EXISTS {index_name(key)} ON {table_name(key.id)} USING hnsw "
            f"({expr} {ops}) WITH (m = {M}, ef_construction = {EF_CONSTRUCTION})")


def build_memory(count: int, dim: int) -> int:
    """Bytes of ``maintenance_work_mem`` for building the graph of ``count`` vectors in memory."""
    family = _expression(dim)[1]
    value = 8 + (4 * dim if family == "vector" else 2 * dim if family == "halfvec" else (dim + 7) // 8)
    return max(BUILD_MEMORY_MIN, min(BUILD_MEMORY_MAX, int(1.1 * count * (value + _GRAPH_BYTES))))


def ef_search(size: int, fetch: int) -> int:
    """``hnsw.ef_search`` for an index of ``size`` vectors asked for ``fetch`` labels (a fetch
    beyond the width is served by pgvector's iterative scan, not a wider search)."""
    grown = EF_SEARCH * max(1.0, size / EF_BASE_SIZE) ** 0.7
    return max(min(fetch, EF_MAX), min(EF_MAX, int(grown)))


#: the largest halfvec number: a stored float32 beyond it is held at it in the key's halfvec table
#: (and a query's numbers in a halfvec ranking), which only ranks: results are re-scored exactly
#: from the stored float32 vectors.  Without it such a number was infinity as a float16, and
#: pgvector refused the whole copy: the key's index was never built.
HALF_MAX = 65504.0


def _literal(query: Vectors, half: bool) -> str:
    """``query`` as a pgvector literal, held within halfvec's range when ``half``."""
    values = np.clip(query, -HALF_MAX, HALF_MAX) if half else query
    return "[" + ",".join(repr(float(x)) for x in values) + "]"


def _copy_rows(labels: np.ndarray, matrix: Vectors, half: bool = False) -> bytes:
    """``labels`` and ``matrix`` in PostgreSQL's binary COPY format, as (bigint, vector) rows, or
    (bigint, halfvec) rows when ``half`` (pgvector's binary form of both: int16 dim, int16 unused,
    then the values big-endian, float32 or float16)."""
    n, dim = matrix.shape
    width = 2 if half else 4
    row = np.dtype([("fields", ">i2"), ("idlen", ">i4"), ("id", ">i8"), ("vlen", ">i4"),
                    ("dim", ">i2"), ("unused", ">i2"), ("v", f">f{width}", (dim,))])
    out = np.empty(n, dtype=row)
    out["fields"], out["idlen"], out["id"] = 2, 8, labels.astype(np.int64)
    out["vlen"], out["dim"], out["unused"] = 4 + width * dim, dim, 0
    out["v"] = np.clip(matrix, -HALF_MAX, HALF_MAX) if half else matrix
    return out.tobytes()


class _VectorType(UserDefinedType[str]):
    """A pgvector type named in a ``CAST`` (``vector(512)``, ``halfvec(512)``)."""

    cache_ok = True

    def __init__(self, spec: str) -> None:
        self.spec = spec

    def get_col_spec(self, **kw: Any) -> str:
        return self.spec


_HEADER = b"PGCOPY\n\xff\r\n\x00" + struct.pack(">ii", 0, 0)
_TRAILER = struct.pack(">h", -1)


class PgvectorStore(TableStore):
    name = "pgvector"

    def _ann(
        self, s: Session, key: VectorKey, query: Vectors, fetch: int, metric: Metric, index_file: str
    ) -> list[int] | None:
        expr, family = _expression(key.dim)
        literal = _literal(query, family == "halfvec")
        if family in ("vector", "halfvec"):
            q, op = f"CAST(:q AS {family}({key.dim}))", _OPERATOR[metric]
        else:
            q, op = f"binary_quantize(CAST(:q AS vector({key.dim})))::bit({key.dim})", "<~>"
        size = int(s.scalar(select(VectorKeyRow.indexed_count).where(VectorKeyRow.id == key.id)) or 0)
        # relaxed_order: a fetch beyond ef_search (a selective filter's growing fetch) is served by
        # scanning on, not cut at ef_search; the labels are re-scored exactly, so order is free
        s.execute(text("SELECT set_config('hnsw.ef_search', :ef, true), "
                       "set_config('hnsw.iterative_scan', 'relaxed_order', true), "
                       "set_config('hnsw.max_scan_tuples', :scan, true)"),
                  {"ef": str(ef_search(size, fetch)), "scan": str(max(20_000, 2 * fetch))})
        rows = s.execute(
            text(f"SELECT id FROM {table_name(key.id)} ORDER BY {expr} {op} {q} LIMIT :n"),
            {"q": literal, "n": fetch},
        )
        return [int(r[0]) for r in rows]

    has_copies = True

    def _among_candidates(
        self, s: Session, key: VectorKey, query: Vectors, k: int, metric: Metric, candidates: Candidates,
        upto: int, index_file: str,
    ) -> list[Hit] | None:
        # One statement: the candidates' row ids (at most EXACT_LIMIT + 1, materialised once),
        # their count, the best ``keep`` of those in the index by pgvector's distance over the
        # key's rows (each found by a primary-key probe: a correlated subquery; as a join,
        # PostgreSQL would merge the ids with the whole table's primary key), and the delta's (newer
        # than the index), all as arrays: no row id goes to Python and back.  Only the chosen
        # ones are read as stored float32 and scored exactly.
        limit = table_module.EXACT_LIMIT
        keep = max(table_module.RERANK, table_module.RERANK_FACTOR * k)
        found = candidates.row_ids(limit)
        cand = select(found.c.id.label("id")).cte("cand").prefix_with("MATERIALIZED")
        rows = sql_table(table_name(key.id), column("id", Integer), column("v")).alias("c")
        literal = _literal(query, column_type(key.dim).startswith("halfvec"))
        q = cast(bindparam("q", literal, type_=String), _VectorType(column_type(key.dim)))
        distance = select(rows.c.v.op(_OPERATOR[metric])(q)).where(rows.c.id == cand.c.id).scalar_subquery()
        best = (select(cand.c.id).where(cand.c.id <= upto)
                .order_by(distance.asc().nulls_first()).limit(keep).subquery())
        delta = select(cand.c.id).where(cand.c.id > upto).subquery()
        count, ranked, newer = s.execute(select(
            select(func.count()).select_from(cand).scalar_subquery(),
            select(func.array_agg(best.c.id)).scalar_subquery(),
            select(func.array_agg(delta.c.id)).scalar_subquery(),
        )).one()
        if count > limit:
            return None
        chosen = np.array((ranked or []) + (newer or []), dtype=np.int64)
        if len(chosen) == 0:
            return []
        ids, matrix = self._read(s, key, np.sort(chosen))
        return top_k(ids, scores(matrix, query, metric), k)

    def refresh(self, db: Database, key: VectorKey, progress: Progress | None = None) -> dict[str, Any]:
        if not ensure_extension(db):
            raise RuntimeError("the database has no vector extension (see scripts/ensure-pgvector)")
        with db.read() as s:
            state = s.get(VectorKeyRow, key.id)
            if state is None:
                return {"skipped": "the key was deleted"}
            upto, old_metric = state.indexed_upto, state.index_metric
            metric: Metric = state.metric  # type: ignore[assignment]
            total = self.count(s, key)
        table = table_name(key.id)
        with db.write() as s:
            found = s.scalar(text("SELECT format_type(atttypid, atttypmod) FROM pg_attribute "
                                  "WHERE attrelid = to_regclass(:t) AND attname = 'v'"), {"t": table})
            if found is not None and found != column_type(key.dim):
                # a table of an older version's type (float32 rows before halfvec): copied afresh;
                # until this build commits the key searches exactly, as before a first build
                upto = 0
                s.execute(update(VectorKeyRow).where(VectorKeyRow.id == key.id).values(
                    indexed_upto=0, indexed_count=0, index_file=None))
            if upto == 0:  # a first build: a table left by an earlier key of this id goes
                s.execute(text(f"DROP TABLE IF EXISTS {table}"))
            s.execute(text(f"CREATE TABLE IF NOT EXISTS {table} (id bigint PRIMARY KEY REFERENCES "
                           f"item_vectors (id) ON DELETE CASCADE, v {column_type(key.dim)} NOT NULL)"))
            # rows copied from now on are kept whole in the table (an older table's rows stay in
            # TOAST until the key is indexed afresh); altered once, under a brief exclusive lock
            storage = s.scalar(text("SELECT attstorage FROM pg_attribute "
                                    "WHERE attrelid = CAST(:t AS regclass) AND attname = 'v'"), {"t": table})
            if key.dim <= PLAIN_MAX and storage != "p":
                s.execute(text(f"ALTER TABLE {table} ALTER COLUMN v SET STORAGE PLAIN"))
            # an index of another metric or format (an older version's) goes; a new one is built
            wanted = index_name(key) if old_metric == metric else None
            for (name,) in s.execute(text("SELECT indexname FROM pg_indexes WHERE tablename = :t "
                                          "AND indexname LIKE :p"), {"t": table, "p": f"{table}\\_hnsw%"}):
                if name != wanted:
                    s.execute(text(f"DROP INDEX IF EXISTS {name}"))
            # rows an attempt copied but never recorded (its commit failed)
            s.execute(text(f"DELETE FROM {table} WHERE id > :upto"), {"upto": upto})
        done = 0
        half = column_type(key.dim).startswith("halfvec")
        while True:
            with db.read() as s:
                batch = next(self._iter_rows(s, key, _BATCH, upto), None)
            if batch is None:
                break
            labels, _, matrix = batch
            with db.write() as s:
                raw: Any = s.connection().connection.driver_connection
                copy = f"COPY {table} (id, v) FROM STDIN WITH (FORMAT BINARY)"
                with raw.cursor() as cur, cur.copy(copy) as cp:
                    cp.write(_HEADER + _copy_rows(labels, matrix, half) + _TRAILER)
            upto = int(labels[-1])
            done += len(labels)
            if progress is not None:
                progress(done, max(total, done))
        if done:  # the planner's statistics of what was copied (autovacuum may be late, or off)
            with db.write() as s:
                s.execute(text(f"ANALYZE {table}"))
        with db.write() as s:  # builds the index when missing (after a bulk load: faster than inserts)
            count = int(s.scalar(text(f"SELECT count(*) FROM {table}")) or 0)
            # the graph in memory (this transaction only: the server's setting stays small)
            memory = build_memory(count, key.dim) >> 20
            s.execute(text(f"SET LOCAL maintenance_work_mem = '{memory}MB'"))
            s.execute(text(_index_sql(key, metric)))
        return {"added": done, "indexed_upto": upto, "indexed_count": count, "file": table, "metric": metric}

    def commit_refresh(self, s: Session, key: VectorKey, built: dict[str, Any]) -> None:
        row = s.get(VectorKeyRow, key.id)
        if row is None or "file" not in built:
            return
        row.indexed_upto, row.indexed_count = built["indexed_upto"], built["indexed_count"]
        row.index_file, row.index_metric = built["file"], built["metric"]
        self._sweep(s)

    def _sweep(self, s: Session) -> None:
        """Drop the tables of keys that no longer exist (deleted or re-sized keys)."""
        tables = s.scalars(text("SELECT tablename FROM pg_tables WHERE tablename LIKE 'corral\\_vec\\_%'"))
        for name in list(tables):
            suffix = name.removeprefix("corral_vec_")
            if suffix.isdigit() and s.get(VectorKeyRow, int(suffix)) is None:
                s.execute(text(f"DROP TABLE IF EXISTS {name}"))
