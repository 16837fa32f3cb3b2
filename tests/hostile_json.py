"""Hypothesis strategies for the JSON a hostile client can send: deep nesting, huge integers, float
edge cases (NaN, ±Infinity, -0.0, 1e308), lone surrogates and NUL in keys and values, long strings
and many keys.  ``as_text`` writes a value the way Python's ``json.dumps`` does (NaN and lone
surrogates included), so what is sent is exactly what a careless client would send."""

from __future__ import annotations

import json
from typing import Any

from hypothesis import strategies as st

# Every code point, surrogates and NUL included (Hypothesis leaves out surrogates by default).
ANY_CHAR = st.characters(codec=None, exclude_categories=())
EDGE_TEXT = st.sampled_from(["", "\x00", "a\x00", "\ud800", "x\udfff", "é", "\U0001f600", "$k", "keyframes"])
TEXT = st.one_of(EDGE_TEXT, st.text(ANY_CHAR, max_size=12), st.text(max_size=12))
LONG_TEXT = st.sampled_from([300_000, 262_144, 262_145]).map(lambda n: "x" * n)
INTS = st.one_of(
    st.integers(-1000, 1000),
    st.sampled_from([2**53, 2**63 - 1, -(2**63), 2**63, -(2**63) - 1, 2**64 - 1, 2**64 + 1, 10**400]),
    st.integers(),
)
FLOATS = st.one_of(
    st.floats(allow_nan=True, allow_infinity=True),
    st.sampled_from([-0.0, 1e308, -1e308, 5e-324, 1e16, 6.968212431966682e16, 1.5, 2.0**63, 1e300]),
)
SCALARS = st.one_of(st.none(), st.booleans(), INTS, FLOATS, TEXT)


def _nested(depth: int, leaf: Any) -> Any:
    value = leaf
    for i in range(depth):
        value = {"d": value} if i % 2 else [value]
    return value


DEEP = st.builds(_nested, st.sampled_from([30, 31, 32, 33, 40, 64, 65, 300]), SCALARS)
MANY_KEYS = st.sampled_from([999, 1000, 1001]).map(lambda n: {f"k{i}": i for i in range(n)})
VALUES = st.recursive(
    SCALARS,
    lambda inner: st.one_of(st.lists(inner, max_size=4), st.dictionaries(TEXT, inner, max_size=4)),
    max_leaves=12,
)
HOSTILE_VALUES = st.one_of(VALUES, VALUES, VALUES, DEEP, MANY_KEYS, LONG_TEXT)
#: Ordinary metadata, so that storing succeeds often enough to compare what reads back.
PLAIN_METADATA = st.dictionaries(
    st.text(min_size=1, max_size=8),
    st.one_of(st.integers(-(2**63), 2**63 - 1), st.floats(allow_nan=False, allow_infinity=False),
              st.text(max_size=20), st.booleans(), st.none(), st.lists(st.integers(), max_size=3)),
    max_size=6,
)
#: A clientMetadata object: mostly an object, sometimes anything else.
HOSTILE_METADATA = st.one_of(
    PLAIN_METADATA,
    st.dictionaries(TEXT, HOSTILE_VALUES, max_size=5),
    st.dictionaries(st.sampled_from(["score", "camera", "when", "tags"]), HOSTILE_VALUES, max_size=4),
    HOSTILE_VALUES,
)


def as_text(value: Any) -> str:
    """``value`` as JSON text the way a careless client writes it (it may hold NaN, lone
    surrogates as escapes, integers of any size), without recursion limits for deep values."""
    depth, leaf = 0, value
    while isinstance(leaf, (list, dict)) and len(leaf) == 1 and depth < 10_000:
        leaf = next(iter(leaf.values())) if isinstance(leaf, dict) else leaf[0]
        depth += 1
    if depth < 200:
        return json.dumps(value)
    # Deep: write it by hand, outside in.
    opens, closes, node = [], [], value
    for _ in range(depth):
        if isinstance(node, dict):
            (key, node), = node.items()
            opens.append("{" + json.dumps(key) + ":")
            closes.append("}")
        else:
            opens.append("[")
            closes.append("]")
            node = node[0]
    return "".join(opens) + json.dumps(node) + "".join(reversed(closes))


def fill(template: str, *values: str) -> str:
    """``template`` with each ``%s`` replaced, in order, by one of ``values`` (JSON texts)."""
    parts = template.split("%s")
    assert len(parts) == len(values) + 1
    return "".join(p + v for p, v in zip(parts, [*values, ""], strict=True))


def same_json(a: Any, b: Any) -> bool:
    """Equal as JSON values.  JSON has one number type: PostgreSQL's JSONB keeps numbers as
    decimals and writes a whole float of 1e16 or more (``6.968212431966682e+16``) back as an
    integer, which reads as the same double."""
    if isinstance(a, bool) or isinstance(b, bool):
        return a is b
    if isinstance(a, (int, float)) and isinstance(b, (int, float)):
        return a == b or float(a) == float(b)
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(same_json(a[k], b[k]) for k in a)
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(same_json(x, y) for x, y in zip(a, b, strict=True))
    return bool(a == b)
