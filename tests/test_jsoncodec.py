"""corral.jsoncodec: the single encoder writes only what reads back equal (also through SQLite
and PostgreSQL JSON columns), the parser refuses what cannot be stored, naming where, and no
refusal quotes more than a short prefix of the input."""

from __future__ import annotations

import json
import math
import uuid
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from corral import jsoncodec
from corral.db.tables import JobUnit
from corral.errors import ValidationFailed
from tests.hostile_json import HOSTILE_METADATA, HOSTILE_VALUES, as_text, same_json

ANY = st.one_of(HOSTILE_VALUES, HOSTILE_METADATA)


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.data_too_large])
@given(ANY)
def test_dumps_refuses_or_writes_what_loads_reads_back_equal(value: Any) -> None:
    try:
        text = jsoncodec.dumps(value)
    except jsoncodec.Unstorable as exc:
        assert len(exc.message) < 1000
        return
    assert jsoncodec.loads(text) == value  # exactly: SQLite keeps the text as written


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.data_too_large])
@given(ANY)
def test_whatever_parse_accepts_can_be_stored(value: Any) -> None:
    text = as_text(value)
    try:
        parsed = jsoncodec.parse(text)
    except ValidationFailed as exc:
        assert len(exc.message) < 1000 and exc.details and exc.details[0].field
        return
    assert jsoncodec.loads(jsoncodec.dumps(parsed)) == parsed


@settings(max_examples=500, deadline=None, suppress_health_check=[HealthCheck.data_too_large])
@given(ANY, st.sampled_from([jsoncodec.METADATA, jsoncodec.REQUEST, jsoncodec.STORED]))
def test_the_fast_screen_never_passes_what_the_walk_refuses(value: Any, limits: jsoncodec.Limits) -> None:
    if jsoncodec._surely_fine(value, limits):
        assert jsoncodec._walk(value, limits) is None


def _nested(levels: int, as_object: bool) -> Any:
    value: Any = 1
    for _ in range(levels):
        value = {"k": value} if as_object else [value]
    return {"payload": value}


@pytest.mark.parametrize("as_object", [False, True])
def test_stored_depth_is_screened_by_orjson_own_limit(as_object: bool) -> None:
    """``STORED`` is screened by one serialisation, its depth proven by orjson having written
    the value: so orjson's nesting limit must be the walk's (an upgrade that moves it fails here)."""
    deepest = jsoncodec.ORJSON_MAX_DEPTH - 1  # levels inside the top-level object
    assert jsoncodec.STORED.max_depth >= jsoncodec.ORJSON_MAX_DEPTH
    for levels in (deepest - 1, deepest, deepest + 1, deepest + 2):
        value = _nested(levels, as_object)
        walked = jsoncodec._walk(value, jsoncodec.STORED)
        assert jsoncodec.problem(value, jsoncodec.STORED) == walked
        assert (walked is None) == (levels <= deepest)
        assert jsoncodec._surely_fine(value, jsoncodec.STORED) == (levels <= deepest)
    # a unit's payload of many entries: every value in it is still checked
    entries = [{"urls": [f"s3://b/{i}.jpg"], "client_metadata": {"n": i, "t": "x"}} for i in range(3000)]
    assert jsoncodec._surely_fine({"entries": entries}, jsoncodec.STORED)
    for bad, words in (("a\x00b", "NUL"), (2**63, "64-bit"), (float("nan"), "NaN"), ("\ud800", "surrogate")):
        entries[1234]["client_metadata"]["t"] = bad
        found = jsoncodec.problem({"entries": entries}, jsoncodec.STORED)
        assert found is not None and words in found.message
        assert found.path == ".entries[1234].client_metadata.t"
    entries[1234]["client_metadata"]["t"] = "x"


@pytest.mark.parametrize("key", ["k" * 257, "k" * 100 + '"' + "k" * 200, "é" * 257, "\n" * 257])
def test_a_long_key_anywhere_is_found(key: str) -> None:
    for value in ({key: 1}, {"a": {key: 1}}, {"a": [1.5] * 300 + [{key: [1]}]}):
        found = jsoncodec.problem(value, jsoncodec.METADATA)
        assert found is not None and "256" in found.message
    assert jsoncodec.problem({"a": [{key[:256]: 1}]}, jsoncodec.METADATA) is None


@pytest.mark.parametrize(("text", "field", "words"), [
    ('{"a": [1, {"b": 18446744073709551617}]}', "a[1].b", "64-bit"),
    ('{"a": 9223372036854775808}', "a", "64-bit"),
    ('{"a": -9223372036854775809}', "a", "64-bit"),
    ('{"a": 1%s}' % ("0" * 5000), "a", "5,001 digits"),
    ('{"a": "x\\u0000"}', "a", "NUL"),
    ('{"x\\u0000": 1}', "(the value)", "NUL"),
    # refused by orjson, read by Python's parser, to name the field (they said only "not JSON at
    # line 1, column 7": the SDK writes a NaN coordinate as NaN)
    ('{"a": "\\ud800"}', "a", "surrogate"),
    ('{"a": NaN}', "a", "NaN and infinite numbers are not JSON"),
    ('{"a": [0, {"b": -Infinity}]}', "a[1].b", "NaN and infinite numbers are not JSON"),
    ('{"a": 1e999}', "a", "NaN and infinite numbers are not JSON"),
    ('{"a": NaN, "b": [}', "body", "not JSON"),
    ("[" * 65 + "]" * 65, "[0][0]", "more than 64 levels"),
    ("[" * 100_000 + "]" * 100_000, "body", "more than 1,024 levels"),
])
def test_parse_refuses_with_the_field_and_a_short_message(text: str, field: str, words: str) -> None:
    with pytest.raises(ValidationFailed) as info:
        jsoncodec.parse(text)
    detail = info.value.details[0]
    assert words in info.value.message and detail.field is not None and detail.field.startswith(field)
    assert len(info.value.message) < 600


def test_parse_keeps_what_is_fine_exactly() -> None:
    text = '{"big": 9223372036854775807, "small": -9223372036854775808, "f": 1e300, "z": -0.0, "s": "é😀"}'
    value = jsoncodec.parse(text)
    assert value == {"big": 2**63 - 1, "small": -(2**63), "f": 1e300, "z": 0.0, "s": "é😀"}
    assert type(value["big"]) is int and type(value["f"]) is float and math.copysign(1, value["z"]) < 0


def test_metadata_limits() -> None:
    limits = jsoncodec.METADATA
    ok = {"k" * 256: "v" * 262_144, "n": [[[1]]]}
    assert jsoncodec.problem(ok, limits) is None
    assert "longer than the limit of 256" in str(jsoncodec.problem({"k" * 257: 1}, limits))
    assert "262,144" in str(jsoncodec.problem({"k": "v" * 262_145}, limits))
    assert "1,000" in str(jsoncodec.problem({f"k{i}": 1 for i in range(1001)}, limits))
    deep: Any = 1
    for _ in range(33):
        deep = [deep]
    assert "more than 32 levels" in str(jsoncodec.problem(deep, limits))
    assert "bytes of JSON" in str(jsoncodec.problem({f"k{i}": "x" * 200_000 for i in range(6)}, limits))
    # A 52 MB key is named by a short prefix, never echoed.
    found = jsoncodec.problem({"k" * 52_000_000: 1}, limits)
    assert found is not None and len(found.message) + len(found.path) < 300


@pytest.mark.parametrize("value", [{"n": 2**64}, {"n": float("nan")}, [float("inf")], {"s": "a\x00"}, {"s": "\udc00"}])
def test_dumps_refuses_instead_of_degrading(value: Any) -> None:
    with pytest.raises(jsoncodec.Unstorable):
        jsoncodec.dumps(value)


def test_dumps_keeps_a_backslash_u0000_text_and_loads_reads_old_rows() -> None:
    assert jsoncodec.loads(jsoncodec.dumps({"m": "the text \\u0000 is fine"})) == {"m": "the text \\u0000 is fine"}
    # A row an older corral wrote with json.dumps (a 400-digit integer) can still be read and fixed.
    assert jsoncodec.loads(json.dumps({"n": 10**400})) == {"n": 10**400}


@settings(max_examples=60, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.data_too_large])
@given(value=ANY)
def test_json_columns_read_back_what_was_written(db, value: Any) -> None:  # type: ignore[no-untyped-def]
    """Through the engine (SQLite JSON text, PostgreSQL JSONB): written, then read back equal."""
    from sqlalchemy import insert, select

    from corral.db.tables import Job, Organisation

    try:
        jsoncodec.dumps(value)
    except jsoncodec.Unstorable:
        return
    with db.write() as s:
        org = Organisation(name=f"o-{uuid.uuid4().hex[:8]}")
        s.add(org)
        s.flush()
        job = Job(org_id=org.id, kind="test", params={})
        s.add(job)
        s.flush()
        s.execute(insert(JobUnit).values(job_id=job.id, seq=0, payload={"v": value}, status="pending", attempts=0))
        job_id = job.id
    with db.read() as s:
        assert same_json(s.scalar(select(JobUnit.payload).where(JobUnit.job_id == job_id)), {"v": value})


MANIFEST = frozenset({"files", "dataItems"})
AT = ("values", "payload")


def test_parse_object_leaving_keeps_members_at_a_path_and_parses_the_rest() -> None:
    """The members of the object at ``at`` are kept as sent (what the manifest reader judges
    entry by entry); everything else is what ``parse`` makes of it."""
    body = (b'{"query_type": "q", "values": {"uid": [1, 2], "payload": {"files": {"n": 1e999,\n'
            b'"big": 12345678901234567890123, "s": "\\u0000"}, "fileName": "m.json"}}}')
    rest, kept = jsoncodec.parse_object_leaving(body, MANIFEST, at=AT)
    assert rest == {"query_type": "q", "values": {"uid": [1, 2], "payload": {"fileName": "m.json"}}}
    assert kept == {"files": b'{"n": 1e999,\n"big": 12345678901234567890123, "s": "\\u0000"}'}
    # a member of that name elsewhere, or where the path does not lead to an object, is parsed
    for text in (b'{"files": 1, "values": {"payload": {"x": {"files": 2}}}}', b'{"values": {"payload": null}}',
                 b'{"values": [{"payload": {"files": 3}}]}'):
        assert jsoncodec.parse_object_leaving(text, MANIFEST, at=AT) == (jsoncodec.parse(text), {})
    with pytest.raises(ValidationFailed, match=r"^files: a string holds a NUL"):
        jsoncodec.parse_object_leaving(b'{"files": "\\u0000", "values": {}}', MANIFEST, at=AT)


def test_parse_object_leaving_refuses_the_rest_as_parse_does() -> None:
    """The same refusal, naming the same path and the same line and column, as for the body read
    as one, when the kept members hold nothing wrong; a kept member given twice is refused too."""
    kept = '{"images": [\n  {"objectUrl": "s3://b/a.png"}\n], "note": "é✓"}'.encode()  # columns count characters
    for rest in (b'"fileName": "x\\u0000"', b'"n": NaN', b'"n": 12345678901234567890123', b'"n": 1e999',
                 b'"n": 1, "n": 2', b'"files": {}', b'"s": "\\ud800"'):
        body = b'{"values": {"payload": {"files": ' + kept + b', ' + rest + b'}}}'
        with pytest.raises(ValidationFailed) as whole:
            jsoncodec.parse(body)
        with pytest.raises(ValidationFailed) as leaving:
            jsoncodec.parse_object_leaving(body, MANIFEST, at=AT)
        assert leaving.value.message == whole.value.message, rest
        assert not isinstance(leaving.value, jsoncodec.NotJson)


@pytest.mark.parametrize("body", [b"", b"[]", b'{"values": {"payload": {"files": {]}}}', b'{"a": 1,}',
                                  b'{"a": 1} x', b'{"a" 1}', b"\xff{}", b"[" * 10,
                                  b'{"a": ' + b"[" * 100_000 + b"]" * 100_000 + b"}"])
def test_parse_object_leaving_refuses_what_is_not_one_json_object(body: bytes) -> None:
    with pytest.raises(jsoncodec.NotJson, match=r"^request body is (not JSON|not UTF-8|nested)") as exc:
        jsoncodec.parse_object_leaving(body, MANIFEST, at=AT)
    assert exc.value.details[0].field == "body"


@pytest.mark.parametrize(
    "text",
    [
        '{"a": 1, "a": 2}',
        '{"a": 1, "a" : 2}',
        '{"a": {"b": [1, {"c": 1, "c": 1}]}}',
        '{"q": "\\u0022:", "a": 1, "\\u0061": 2}',  # an escaped quote in a string, the key escaped
        '{"q": "x\\": ", "a": 1, "a": "\\"\\": "}',  # quotes and key ends inside strings
        '{"a\\"": 1, "a\\"": 2}',
        '{"n": 123456789012345678901234567890, "a": 1, "a": 2}',  # beyond what orjson writes
    ],
)
def test_a_key_given_twice_is_seen_however_the_text_spells_it(text: str) -> None:
    value = json.loads(text)
    assert jsoncodec.may_repeat_keys(text, value) and jsoncodec.may_repeat_keys(text.encode(), value)
    found = jsoncodec.duplicate_key(text, value)
    assert found is not None and found.message.endswith("is given more than once in one object")


@pytest.mark.parametrize(
    "text",
    ['{"a": 1, "b": 2}', '{"a": "\\": x", "b": {"c": ["\\"", "d\\" : "]}}', '{"\\u0061": 1, "b": "\\u0022:"}', "[]",
     '"x"', '{"k\\\\": "v"}'],
)
def test_no_key_given_twice_is_said_so(text: str) -> None:
    value = json.loads(text)
    assert jsoncodec.duplicate_key(text, value) is None
    assert not jsoncodec.may_repeat_keys(text, value) or "\\u" in text  # escapes: a closer look, still none
