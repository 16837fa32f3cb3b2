"""Validating and normalising clientMetadata: every type, every message, CSV cells, properties."""

from __future__ import annotations

import math
import uuid
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from corral.core.metadata.schema import from_native
from corral.core.metadata.validation import Validator, describe

SCHEMA = from_native({"keys": {
    "captured_at": {"type": "datetime"},
    "camera": {"type": "varchar", "max_length": 10},
    "notes": {"type": "text"},
    "score": {"type": "number"},
    "ok": {"type": "boolean"},
    "sample_id": {"type": "uuid"},
    "weather": {"type": "enum", "values": ["rain", "snow", "sunny"]},
    "clip": {"type": "embedding", "size": 3},
    "where": {"type": "geospatial"},
    "owner": {"type": "user"},
    "old": {"type": "number", "deleted": "soft"},
}})
V = Validator(SCHEMA)


def ok(meta: dict[str, Any], validator: Validator = V) -> dict[str, Any]:
    out, problems = validator.validate(meta)
    assert problems == [], [p.message for p in problems]
    return out


def bad(meta: dict[str, Any], validator: Validator = V) -> str:
    out, problems = validator.validate(meta)
    assert problems, out
    return describe(problems)


def test_normalised_values() -> None:
    out = ok({"captured_at": "2024-05-01T14:30:00+02:00", "camera": "cam-1", "notes": "x" * 100_000,
              "score": 3, "ok": False, "sample_id": "123E4567E89B12D3A456426614174000",
              "weather": "rain", "clip": [1, 2.5, -3], "where": {"type": "Point", "coordinates": [4.9, 52.4]},
              "owner": "ann@example.com"})
    assert out["captured_at"] == "2024-05-01T12:30:00+00:00"
    assert out["score"] == 3.0 and type(out["score"]) is float
    assert out["sample_id"] == "123e4567-e89b-12d3-a456-426614174000"
    # an embedding becomes a StoredVector: the marker in JSON, the numbers for the vector store
    assert dict(out["clip"]) == {"$vector": {"dim": 3}}
    assert out["clip"] != {"$vector": {"dim": 3}}  # it carries numbers to store: never "unchanged"
    assert out["clip"].vector.tolist() == [1.0, 2.5, -3.0]
    assert ok({"clip": {"$vector": {"dim": 3}}})["clip"] == {"$vector": {"dim": 3}}  # kept as read
    # read before the key was re-sized (its vector went with the old size): the key's marker, no vector
    assert ok({"clip": {"$vector": {"dim": 4}}})["clip"] == {"$vector": {"dim": 3}}
    assert "embedding" in bad({"clip": {"$vector": {"dim": 3}, "more": 1}})
    assert out["ok"] is False


@pytest.mark.parametrize("given, stored", [
    ("2024-05-01T12:30:00Z", "2024-05-01T12:30:00+00:00"),
    ("2024-05-01T12:30:00.123456Z", "2024-05-01T12:30:00.123456+00:00"),
    ("2024-05-01T12:30:00.5+00:00", "2024-05-01T12:30:00.500000+00:00"),
    ("2024-05-01T12:30:00-05:00", "2024-05-01T17:30:00+00:00"),
    ("2024-05-01T12:30:00", "2024-05-01T12:30:00+00:00"),  # no offset: taken as UTC
    ("2024-05-01", "2024-05-01T00:00:00+00:00"),
    ("20240501T123000Z", "2024-05-01T12:30:00+00:00"),
    ("2024-05-01t12:30:00z", "2024-05-01T12:30:00+00:00"),  # RFC 3339's lower-case forms
    ("2024-05-01T12:30:00.25z", "2024-05-01T12:30:00.250000+00:00"),
    # a zero fraction is left out, as isoformat() leaves it out: one instant, one stored string
    ("2024-05-01T12:30:00.000000Z", "2024-05-01T12:30:00+00:00"),
    ("2024-05-01T12:30:00.000000+00:00", "2024-05-01T12:30:00+00:00"),
    ("2024-05-01T12:30:00.000Z", "2024-05-01T12:30:00+00:00"),
    ("2024-05-01T14:30:00.000000+02:00", "2024-05-01T12:30:00+00:00"),
])
def test_datetimes_are_stored_as_utc(given: str, stored: str) -> None:
    assert ok({"captured_at": given})["captured_at"] == stored


@settings(max_examples=300)
@given(st.datetimes(min_value=datetime(1, 1, 2), max_value=datetime(9999, 12, 30)),
       st.sampled_from(["Z", "z", "+00:00", "-00:00", "+0000", ""]),
       st.sampled_from(["", ".0", ".000", ".000000", ".000000000"]))
def test_every_spelling_of_one_instant_is_stored_as_one_string(moment: datetime, suffix: str,
                                                               zeros: str) -> None:
    """Equal instants give equal stored strings (and equal SDK reads), whether or not the spelling
    wrote a fraction of zeros: ``.000000Z`` was kept as ``.000000+00:00`` beside ``+00:00``."""
    base = moment.replace(microsecond=0).isoformat()
    stored = ok({"captured_at": base + zeros + suffix})["captured_at"]
    assert stored == moment.replace(microsecond=0, tzinfo=UTC).isoformat()


def test_unknown_keys_are_kept_as_given() -> None:
    meta = {"anything": {"nested": [1, 2]}, "$weird": 1}
    assert ok(meta) == meta


def test_null_means_no_value() -> None:
    assert ok({"score": None}) == {"score": None}


def test_soft_deleted_keys_are_not_checked() -> None:
    assert ok({"old": "not a number"}) == {"old": "not a number"}


@pytest.mark.parametrize("meta, words", [
    ({"score": "high"}, "'score' = 'high' is not a number"),
    ({"score": True}, "'score' = true is not a number"),
    ({"score": float("inf")}, "is not a finite number"),
    ({"score": 10**400}, "too large for a 64-bit float"),
    ({"ok": "yes"}, "'ok' = 'yes' is not true or false"),
    ({"ok": 1}, "'ok' = 1 is not true or false"),
    ({"captured_at": "yesterday"}, "'captured_at' = 'yesterday' is not an ISO 8601 date-time like 2024-05-01T12:30:00Z"),
    ({"captured_at": "2024-13-01T00:00:00Z"}, "is not an ISO 8601 date-time"),
    ({"captured_at": 1714566600}, "is not an ISO 8601 date-time string"),
    ({"sample_id": "not-a-uuid"}, "'sample_id' = 'not-a-uuid' is not a UUID like 123e4567-e89b-12d3-a456-426614174000"),
    ({"camera": "x" * 11}, "'camera': 11 characters is longer than varchar allows (10)"),
    ({"camera": 7}, "'camera' = 7 is not a string of at most 10 characters (varchar)"),
    ({"notes": ["a"]}, "'notes' = [\"a\"] is not a string (text)"),
    ({"weather": "hail"}, "'weather' = 'hail' is not one of the enum options (rain, snow, sunny)"),
    ({"weather": "Rain"}, "is not one of the enum options"),  # case-sensitive
    ({"clip": [1, 2]}, "'clip': 2 numbers where the embedding has 3 (expected a list of 3 finite numbers (embedding))"),
    ({"clip": [1, "2", 3]}, "'clip': it holds something that is not a number"),
    ({"clip": [1, float("nan"), 3]}, "'clip': it holds NaN or infinity"),
    ({"clip": [1, True, 3]}, "it holds something that is not a number"),
    ({"clip": "1,2,3"}, "is not a list of 3 finite numbers (embedding)"),
    ({"where": {"lat": 1}}, "is not a GeoJSON object"),
    ({"owner": ""}, "is not a user id or email"),
])
def test_each_type_error_names_key_value_and_expected_type(meta: dict[str, Any], words: str) -> None:
    assert words in bad(meta)


def test_all_problems_of_an_item_in_one_message() -> None:
    message = bad({"score": "high", "weather": "hail", "camera": "ok"})
    assert message.startswith("invalid clientMetadata (2 problems): ")
    assert "'score' = 'high'" in message and "'weather' = 'hail'" in message


def test_long_values_are_summarised() -> None:
    assert "'weather' = a string of 500 characters" in bad({"weather": "w" * 500})


def test_metadata_must_be_an_object() -> None:
    assert "clientMetadata must be a JSON object, not [1, 2]" in bad([1, 2])  # type: ignore[arg-type]
    assert ok(None) == {}  # type: ignore[arg-type]


def test_required_keys() -> None:
    v = Validator(from_native({"keys": {"camera": {"type": "varchar", "required": True}}}))
    assert "'camera': this key is required (expected varchar)" in bad({}, v)
    assert "this key is required" in bad({"camera": None}, v)
    assert ok({"camera": "c"}, v) == {"camera": "c"}


def test_strict_metadata_rejects_unknown_keys() -> None:
    v = Validator(from_native({"keys": {"a": {"type": "text"}}, "strict_metadata": True}))
    assert "'b': this organisation accepts only keys in its metadata schema" in bad({"a": "x", "b": 1}, v)


def test_csv_cells_are_parsed_from_text() -> None:
    v = Validator(SCHEMA, from_text=True)
    out = ok({"score": " 2.5 ", "ok": "Yes", "clip": "[1, 2, 3]", "weather": "snow", "camera": "",
              "captured_at": "2024-05-01T12:30:00Z", "where": '{"type": "Point", "coordinates": [1, 2]}'}, v)
    assert out["clip"].vector.tolist() == [1.0, 2.0, 3.0]
    assert {**out, "clip": dict(out["clip"])} == {"score": 2.5, "ok": True, "clip": {"$vector": {"dim": 3}}, "weather": "snow",
                   "captured_at": "2024-05-01T12:30:00+00:00", "where": {"type": "Point", "coordinates": [1, 2]}}
    assert "'score' = 'abc' is not a number" in bad({"score": "abc"}, v)
    assert "'ok' = 'maybe' is not true or false" in bad({"ok": "maybe"}, v)
    assert "is not a JSON array of numbers" in bad({"clip": "[1,"}, v)
    assert "is not a finite number" in bad({"score": "nan"}, v)


# -- properties ---------------------------------------------------------------------------------------


@settings(max_examples=300)
@given(st.datetimes(min_value=datetime(1, 1, 2), max_value=datetime(9999, 12, 30),
                    timezones=st.sampled_from([UTC, timezone(timedelta(hours=5, minutes=30)),
                                               timezone(timedelta(hours=-8))])))
def test_any_aware_datetime_is_stored_as_the_same_instant_in_utc(moment: datetime) -> None:
    stored = ok({"captured_at": moment.isoformat()})["captured_at"]
    parsed = datetime.fromisoformat(stored)
    assert parsed == moment and parsed.utcoffset() == timedelta(0)
    assert ok({"captured_at": stored})["captured_at"] == stored  # normalising is idempotent


@settings(max_examples=300)
@given(st.uuids())
def test_any_uuid_spelling_is_stored_canonically(u: uuid.UUID) -> None:
    for spelling in (str(u), str(u).upper(), u.hex, "{" + str(u) + "}", u.urn):
        assert ok({"sample_id": spelling})["sample_id"] == str(u)


@settings(max_examples=300)
@given(st.floats(allow_nan=False, allow_infinity=False) | st.integers(min_value=-(2**53), max_value=2**53))
def test_finite_numbers_are_stored_as_float(x: float) -> None:
    stored = ok({"score": x})["score"]
    assert type(stored) is float and stored == float(x)


def _zero_as_float32(vector: list[float]) -> bool:
    """Whether every number of ``vector`` is 0 as a 32-bit float (``|x| <= 2**-150`` rounds to 0)."""
    return all(math.isfinite(x) and abs(x) <= 2.0**-150 for x in vector)


DOT = Validator(from_native({"keys": {"clip": {"type": "embedding", "size": 3, "metric": "dot"}}}))


@settings(max_examples=300)
@given(st.lists(st.floats(), min_size=3, max_size=3))
def test_embeddings_accept_exactly_finite_vectors(vector: list[float]) -> None:
    # vectors are stored as 32-bit floats: finite, and within a float32's range
    finite = all(math.isfinite(x) and abs(x) <= 3.4028234663852886e38 for x in vector)
    out, problems = DOT.validate({"clip": vector})  # under dot (and l2) a zero vector is one too
    assert (problems == []) == finite
    out, problems = V.validate({"clip": vector})  # "clip" is cosine: all zeros has no direction
    assert (problems == []) == (finite and not _zero_as_float32(vector))


@settings(max_examples=300)
@given(st.lists(st.floats(allow_nan=False, allow_infinity=False), min_size=3, max_size=3)
       .filter(lambda v: not _zero_as_float32(v)))
def test_cosine_embeddings_accept_exactly_finite_vectors_with_a_direction(vector: list[float]) -> None:
    out, problems = V.validate({"clip": vector})
    assert (problems == []) == all(abs(x) <= 3.4028234663852886e38 for x in vector)


@pytest.mark.parametrize("zero", [[0.0, 0.0, 0.0], [0, 0, 0], [-0.0, 0.0, -0.0], [1e-50, -1e-46, 2.0**-150]])
def test_a_zero_vector_under_cosine_is_refused_naming_the_key(zero: list[float]) -> None:
    _, problems = V.validate({"clip": zero})
    assert [p.key for p in problems] == ["clip"]
    assert "a zero vector has no direction" in problems[0].message and "cosine" in problems[0].message
    assert "clip" in describe(problems)
    assert ok({"clip": zero}, DOT)["clip"].vector.tolist() == [0.0, 0.0, 0.0]
    # the smallest float32 above 0 is a direction
    assert ok({"clip": [0.0, 0.0, 2.0**-149]})["clip"].vector.tolist() == [0.0, 0.0, 2.0**-149]


@settings(max_examples=300)
@given(st.dictionaries(st.text(max_size=12), st.none() | st.booleans() | st.integers() | st.floats() |
                       st.text(max_size=20) | st.lists(st.integers(), max_size=4), max_size=8))
def test_validation_never_crashes_and_is_idempotent(meta: dict[str, Any]) -> None:
    out, problems = V.validate(meta)
    if not problems:
        again, problems_again = V.validate(out)
        assert problems_again == [] and again == out


def test_embedding_whose_sum_overflows_is_still_finite() -> None:
    v = Validator(from_native({"keys": {"e": {"type": "embedding", "size": 2}}}))
    assert ok({"e": [3e38, 3e38]}, v)["e"].vector.tolist() == pytest.approx([3e38, 3e38], rel=1e-6)
    assert "beyond a 32-bit float's range" in bad({"e": [1.7e308, 1.7e308]}, v)
    assert "it holds NaN or infinity" in bad({"e": [1.7e308, float("-inf")]}, v)


def test_a_bad_required_value_is_one_problem() -> None:
    v = Validator(from_native({"keys": {"c": {"type": "varchar", "max_length": 2, "required": True}}}))
    _, problems = v.validate({"c": "toolong"})
    assert len(problems) == 1 and "longer than varchar allows" in problems[0].message


def test_csv_cells_are_trimmed_for_exact_types() -> None:
    v = Validator(SCHEMA, from_text=True)
    out = ok({"weather": " rain ", "sample_id": " 123e4567-e89b-12d3-a456-426614174000",
              "captured_at": "2024-05-01T12:30:00Z ", "camera": " cam "}, v)
    assert out["weather"] == "rain" and out["captured_at"] == "2024-05-01T12:30:00+00:00"
    assert out["camera"] == " cam "  # free text keeps its spaces


def _typed(value: Any) -> Any:
    """A value with its types spelt out (``1 == 1.0 == True`` in Python; a check must keep them)."""
    if isinstance(value, dict):
        return ("dict", [(k, _typed(v)) for k, v in value.items()])
    if isinstance(value, list):
        return ("list", [_typed(v) for v in value])
    return (type(value).__name__, repr(value))


STRICT = from_native({"strict_metadata": True, "keys": {
    "camera": {"type": "varchar", "max_length": 4, "required": True},
    "score": {"type": "number"}, "ok": {"type": "boolean"}, "when": {"type": "datetime", "required": True},
    "weather": {"type": "enum", "values": ["rain", "snow"]}, "notes": {"type": "text"},
}})
_KEYS = ["captured_at", "camera", "notes", "score", "ok", "sample_id", "weather", "clip", "where", "owner",
         "old", "when", "free", ""]
_VALUES = (st.none() | st.booleans() | st.integers(min_value=-(2**70), max_value=2**70) | st.floats()
           | st.sampled_from(["rain", "snow", "cam", "cam-toolong", "2024-05-01T12:30:00Z", "2024-05-01T12:30:00",
                              "2024-05-01T14:30:00+02:00", "2024-13-01T00:00:00Z", "0001-01-01T00:00:00+01:00",
                              "123E4567-E89B-12D3-A456-426614174000", "", "x"])
           | st.text(max_size=6) | st.lists(st.floats(width=32) | st.integers(0, 3), max_size=4)
           | st.just({"type": "Point", "coordinates": [1, 2]}))


class _Reference(Validator):
    def _compile(self, shape: tuple[Any, ...]) -> None:
        return None  # key by key, always


@settings(max_examples=1500, deadline=None)
@given(shapes=st.lists(st.lists(st.sampled_from(_KEYS), max_size=7, unique=True), min_size=1, max_size=4),
       values=st.lists(_VALUES, min_size=28, max_size=28), strict=st.booleans(), storable=st.booleans())
def test_compiled_shapes_answer_as_the_key_by_key_validation(
        shapes: list[list[str]], values: list[Any], strict: bool, storable: bool) -> None:
    """``validate`` compiles one check per shape of metadata (its keys, in order) and falls back to
    ``_validate`` for anything that check refuses: the normalised values, their types, every
    problem (and any exception) are those of the key-by-key reference, whatever the values,
    shapes or schema."""
    validator = Validator(STRICT if strict else SCHEMA)
    at = 0
    for shape in shapes * 2:  # each shape compiled once, then reused
        meta = {}
        for key in shape:
            meta[key] = values[at % len(values)]
            at += 1
        try:  # (the reference's answer: storable, or the whole validation of a fresh validator)
            expected: Any = _Reference(validator.schema).validate(meta, storable=storable)
        except Exception as exc:  # noqa: BLE001 - whatever the reference raises, validate raises too
            expected = type(exc)
        try:
            got: Any = validator.validate(meta, storable=storable)
        except Exception as exc:  # noqa: BLE001
            got = type(exc)
        if isinstance(expected, tuple):
            assert isinstance(got, tuple)
            assert _typed(got[0]) == _typed(expected[0]) and got[1] == expected[1]
        else:
            assert got is expected


def test_a_shape_is_compiled_once_and_only_so_many() -> None:
    v = Validator(SCHEMA)
    assert ok({"camera": "c", "score": 1}, v) == {"camera": "c", "score": 1.0}
    assert ok({"camera": "d", "score": 2.5}, v) == {"camera": "d", "score": 2.5}
    assert list(v._shapes) == [("camera", "score")] and v._shapes[("camera", "score")] is not None
    for n in range(200):
        ok({f"k{n}": n}, v)
    assert len(v._shapes) == 64
    assert ok({"camera": "e", "k199": 1}, v) == {"camera": "e", "k199": 1}
    assert Validator(SCHEMA, from_text=True).validate({"score": "1"})[0] == {"score": 1.0}
    wide = {f"w{n}": n for n in range(65)}
    w = Validator(SCHEMA)
    assert ok(wide, w) == wide and w._shapes == {tuple(wide): None}


@pytest.mark.parametrize("value", ["0001-01-01T00:00:00+01:00", "9999-12-31T23:59:59-01:00"])
def test_a_datetime_whose_utc_instant_is_out_of_range_is_a_problem(value: str) -> None:
    """A valid ISO 8601 date-time whose instant in UTC is before year 1 or after year 9999 (it is
    stored in UTC) is a problem naming the key and the range, not an OverflowError, for JSON
    values and CSV cells alike."""
    assert "from 0001-01-01T00:00:00Z to 9999-12-31T23:59:59Z" in bad({"captured_at": value})
    assert "captured_at" in bad({"captured_at": value})
    assert "from 0001-01-01T00:00:00Z" in bad({"captured_at": value}, Validator(SCHEMA, from_text=True))
    assert ok({"captured_at": "0001-01-01T00:00:00-01:00"}) == {"captured_at": "0001-01-01T01:00:00+00:00"}
