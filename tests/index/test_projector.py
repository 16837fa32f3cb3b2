"""Each key's projector (``corral.core.index.keys.projector``) against its reference: the value
``normaliser`` gives, projected as the index stores it.  The projectors take the commonest values
(finite floats, booleans, strings a check keeps as they are) on fast paths; these must not change
what any value projects to."""

from __future__ import annotations

from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from corral.core.index.keys import TXT_MAX, Projected, epoch, projector
from corral.core.metadata.schema import Entry, from_native
from corral.core.metadata.validation import normaliser

SCHEMA = from_native({"keys": {
    "n": {"type": "number"}, "b": {"type": "boolean"}, "d": {"type": "datetime"},
    "v": {"type": "varchar", "max_length": 5}, "w": {"type": "varchar"}, "t": {"type": "text"},
    "e": {"type": "enum", "values": ["rain", "snow"]}, "u": {"type": "uuid"}, "o": {"type": "user"},
}})


def reference(entry: Entry, v: Any) -> Projected | None:
    n = normaliser(entry)(v)
    if n is None:
        return None
    if entry.kind == "number":
        return n, None, None
    if entry.kind == "boolean":
        return 1.0 if n else 0.0, None, None
    if entry.kind == "datetime":
        return epoch(n), None, None
    return None, n[:TXT_MAX], n if entry.kind == "text" or len(n) > TXT_MAX else None


def _typed(p: Projected | None) -> Any:
    return None if p is None else [(type(x).__name__, repr(x)) for x in p]


VALUES = (st.none() | st.booleans() | st.integers(min_value=-(2**70), max_value=2**70) | st.floats()
          | st.text(max_size=8) | st.sampled_from(["rain", "snow", "Rain", "x" * 300, "2024-05-01T12:30:00Z",
                                                   "123E4567-E89B-12D3-A456-426614174000", ""])
          | st.lists(st.integers(), max_size=2))


@settings(max_examples=600, deadline=None)
@given(key=st.sampled_from(sorted(SCHEMA.entries)), value=VALUES)
def test_every_projector_answers_as_its_reference(key: str, value: Any) -> None:
    entry = SCHEMA.entries[key]
    try:
        expected: Any = _typed(reference(entry, value))
    except Exception as exc:  # noqa: BLE001 - whatever the reference raises, the projector raises too
        expected = type(exc)
    try:
        got: Any = _typed(projector(entry)(value))
    except Exception as exc:  # noqa: BLE001
        got = type(exc)
    assert got == expected


def test_fast_paths_keep_types() -> None:
    e = SCHEMA.entries
    assert projector(e["n"])(2.5) == (2.5, None, None) and projector(e["n"])(float("nan")) is None
    assert _typed(projector(e["n"])(3)) == _typed((3.0, None, None))
    assert projector(e["b"])(True) == (1.0, None, None) and projector(e["b"])(1) is None
    assert projector(e["v"])("abcdef") is None and projector(e["v"])("abc") == (None, "abc", None)
    assert projector(e["e"])("rain") == (None, "rain", None) and projector(e["e"])("Rain") is None
    assert projector(e["t"])("x" * 300) == (None, "x" * TXT_MAX, "x" * 300)
