"""The schema model: keys, types, aliases, and the native / Encord / legacy forms."""

from __future__ import annotations

import pytest
from encord.metadata_schema import _is_valid_metadata_key
from hypothesis import given, settings
from hypothesis import strategies as st

from corral.core.metadata.schema import (
    Entry,
    Schema,
    from_encord,
    from_legacy,
    from_native,
    key_problem,
    parse_any,
    to_encord,
    to_legacy,
    to_native,
)
from corral.errors import ValidationFailed

# -- keys ------------------------------------------------------------------------------------------


@pytest.mark.parametrize("key", ["camera", "video.description", "TeamName.Key", "audio description",
                                 "a-b_c.d e", "ünïcödé", "x1", "Camera", "1"])
def test_valid_keys(key: str) -> None:
    assert key_problem(key) is None


@pytest.mark.parametrize("key, words", [
    ("", "must not be empty"), ("$set", "must not start with '$'"), ("...", "at least one letter or digit"),
    ("a/b", "not '/'"), ("a:b", "not ':'"), ("key\x00", "not '\\x00'"), ("keyframes", "reserved"),
    ("key_frames", "reserved"), ("x" * 300, "at most 256"), (5, "must be strings"),
])
def test_invalid_keys_say_why(key: object, words: str) -> None:
    problem = key_problem(key)
    assert problem is not None and words in problem


@settings(max_examples=500)
@given(st.text(max_size=30))
def test_key_rule_matches_the_encord_sdk(key: str) -> None:
    # The SDK validates keys before it sends them; corral must accept exactly those (up to 256 chars).
    assert (key_problem(key) is None) == _is_valid_metadata_key(key)


def test_keys_are_case_sensitive() -> None:
    schema = from_native({"keys": {"Camera": {"type": "varchar"}, "camera": {"type": "number"}}})
    assert schema.entries["Camera"].kind == "varchar" and schema.entries["camera"].kind == "number"


# -- the native form ----------------------------------------------------------------------------------

NATIVE = {
    "strict_metadata": True,
    "keys": {
        "captured_at": {"type": "datetime"},
        "camera": {"type": "varchar", "max_length": 200, "required": True},
        "notes": {"type": "text"},
        "score": {"type": "number"},
        "half": {"type": "number", "format": "F32"},
        "ok": {"type": "boolean"},
        "sample_id": {"type": "uuid"},
        "weather": {"type": "enum", "values": ["sunny", "rain", "snow", "rain"]},
        "clip": {"type": "embedding", "size": 512},
        "where": {"type": "geospatial"},
        "owner": {"type": "user"},
        "old": {"type": "varchar", "deleted": "soft"},
        "gone": {"deleted": "hard"},
    },
}


def test_native_round_trip_normalises() -> None:
    schema = from_native(NATIVE)
    assert schema.strict_metadata is True
    assert schema.entries["weather"].values == ("rain", "snow", "sunny")  # sorted, unique
    assert schema.entries["camera"] == Entry("varchar", max_length=200, required=True)
    assert schema.entries["gone"] == Entry(None, deleted="hard")
    doc = to_native(schema)
    assert doc["keys"]["weather"] == {"type": "enum", "values": ["rain", "snow", "sunny"]}
    assert doc["keys"]["old"] == {"type": "varchar", "deleted": "soft"}
    assert from_native(doc) == schema


@pytest.mark.parametrize("alias, kind", [("string", "varchar"), ("long_string", "text")])
def test_aliases_are_normalised_on_input(alias: str, kind: str) -> None:
    schema = from_native({"keys": {"k": {"type": alias}}})
    assert to_native(schema)["keys"]["k"] == {"type": kind}


@pytest.mark.parametrize("keys, field, words", [
    ({"k": {"type": "float"}}, "keys.k.type", "unknown type 'float'"),
    ({"k": {"type": "enum"}}, "keys.k.values", "non-empty list"),
    ({"k": {"type": "enum", "values": ["a", 3]}}, "keys.k.values", "non-empty strings"),
    ({"k": {"type": "enum", "values": [str(i) for i in range(257)]}}, "keys.k.values", "at most 256"),
    ({"k": {"type": "embedding"}}, "keys.k.size", "from 1 to 4096"),
    ({"k": {"type": "embedding", "size": 0}}, "keys.k.size", "from 1 to 4096"),
    ({"k": {"type": "embedding", "size": 4097}}, "keys.k.size", "from 1 to 4096"),
    ({"k": {"type": "varchar", "max_length": 9000}}, "keys.k.max_length", "from 0 to 8192"),
    ({"k": {"type": "number", "format": "F16"}}, "keys.k.format", "F32 or F64"),
    ({"k": {"type": "text", "deleted": "maybe"}}, "keys.k.deleted", "\"soft\" or \"hard\""),
    ({"k": {"type": "text", "colour": 1}}, "keys.k", "unknown field(s) colour"),
    ({"k": {"type": "text", "required": "yes"}}, "keys.k.required", "true or false"),
    ({"k": "text"}, "keys.k", "expected an object"),
    ({"$k": {"type": "text"}}, "keys.$k", "must not start with '$'"),
    # another kind's parameter, which the key would silently drop (`corral schema set k varchar --size 8`)
    ({"k": {"type": "varchar", "size": 8}}, "keys.k.size", "size is a parameter of embedding keys, not of varchar"),
    ({"k": {"type": "number", "max_length": 5}}, "keys.k.max_length", "max_length is a parameter of varchar"),
    ({"k": {"type": "text", "values": ["a"]}}, "keys.k.values", "values is a parameter of enum keys"),
    ({"k": {"type": "enum", "values": ["a"], "format": "F32"}}, "keys.k.format", "format is a parameter of number"),
    ({"k": {"type": "uuid", "metric": "dot"}}, "keys.k.metric", "metric is a parameter of embedding"),
])
def test_bad_native_documents_name_the_field(keys: dict[str, object], field: str, words: str) -> None:
    with pytest.raises(ValidationFailed) as info:
        from_native({"keys": keys})
    fields = {d.field: d.message for d in info.value.details}
    assert field in fields and words in fields[field], fields
    assert words in info.value.message


def test_every_problem_is_reported_at_once() -> None:
    with pytest.raises(ValidationFailed) as info:
        from_native({"keys": {"a": {"type": "nope"}, "b": {"type": "embedding", "size": -1}, "$c": {}}})
    assert {d.field for d in info.value.details} == {"keys.a.type", "keys.b.size", "keys.$c"}


# -- the Encord SDK's forms -------------------------------------------------------------------------------

ENCORD = {
    "captured_at": {"ty": "variant", "hint": "datetime"},
    "camera": {"ty": "variant", "hint": "string"},
    "notes": {"ty": "variant", "hint": "long_string"},
    "weather": {"ty": "enum", "values": ["rain", "snow", "sunny"]},
    "clip": {"ty": "embedding", "size": 512, "api": None},
    "short": {"ty": "varchar", "max_length": 20},
    "flag": {"ty": "boolean"},
    "to_soft_delete": {"ty": "tombstone", "deleted_ty": {"ty": "variant", "hint": "varchar"}},
    "to_hard_delete": {"ty": "tombstone", "deleted_ty": None},
}


def test_encord_form_round_trips_through_the_model() -> None:
    schema = from_encord(ENCORD)
    assert schema.entries["camera"] == Entry("varchar")
    assert schema.entries["notes"] == Entry("text")
    assert schema.entries["to_soft_delete"] == Entry("varchar", deleted="soft")
    assert schema.entries["to_hard_delete"] == Entry(None, deleted="hard")
    out = to_encord(schema)
    assert out["camera"] == {"ty": "variant", "hint": "varchar"}  # alias normalised
    assert out["flag"] == {"ty": "variant", "hint": "boolean"}
    assert out["short"] == {"ty": "varchar", "max_length": 20}
    assert out["to_hard_delete"] == {"ty": "tombstone", "deleted_ty": None}
    assert from_encord(out) == schema


def test_encord_output_parses_with_the_sdk() -> None:
    from encord.metadata_schema import _ClientMetadataSchema

    parsed = _ClientMetadataSchema.model_validate(to_encord(from_native(NATIVE)))
    assert set(parsed.root) == set(NATIVE["keys"])  # type: ignore[call-overload]


def test_unknown_encord_tag_is_refused() -> None:
    with pytest.raises(ValidationFailed, match="unknown type tag 'polygon'"):
        from_encord({"k": {"ty": "polygon"}})


def test_legacy_form() -> None:
    current = from_native({"keys": {"weather": {"type": "enum", "values": ["rain"]}, "old": {"type": "text"}}})
    schema = from_legacy({"captured_at": "datetime", "camera": "string", "weather": "enum"}, current)
    assert schema.entries["camera"] == Entry("varchar")
    assert schema.entries["weather"].values == ("rain",)  # kept from the current schema
    assert schema.entries["old"].deleted == "soft"  # left out: deleted softly, not dropped
    assert to_legacy(schema) == {"camera": "string", "captured_at": "datetime", "weather": "enum"}
    with pytest.raises(ValidationFailed, match="a new enum needs its options"):
        from_legacy({"colour": "enum"}, Schema())
    with pytest.raises(ValidationFailed, match="expected one of"):
        from_legacy({"colour": "varchar"}, Schema())


def test_parse_any_detects_the_form() -> None:
    assert parse_any({"keys": {"a": {"type": "text"}}}, Schema()).entries["a"].kind == "text"
    assert parse_any({"a": {"ty": "variant", "hint": "text"}}, Schema()).entries["a"].kind == "text"
    assert parse_any({"a": "long_string"}, Schema()).entries["a"].kind == "text"
    assert parse_any({}, Schema()) == Schema()


# -- fuzz: any JSON document is either a schema or a 400 --------------------------------------------

json_leaf = st.none() | st.booleans() | st.integers(-5, 5000) | st.floats(allow_nan=False) | st.sampled_from(
    ["varchar", "string", "enum", "embedding", "variant", "tombstone", "soft", "hard", "number", "F32"]) | st.text(max_size=8)
json_doc = st.recursive(json_leaf, lambda inner: st.lists(inner, max_size=4) | st.dictionaries(
    st.sampled_from(["type", "ty", "hint", "values", "size", "deleted", "deleted_ty", "keys", "required",
                     "max_length", "format", "api", "strict_metadata", "a", "b.c", "$x"]) | st.text(max_size=6),
    inner, max_size=5), max_leaves=20)


@settings(max_examples=500, deadline=None)
@given(json_doc)
def test_any_document_parses_or_is_a_clear_400(doc: object) -> None:
    for parse in (from_native, from_encord, lambda d: parse_any(d, Schema()), lambda d: from_legacy(d, Schema())):
        try:
            schema = parse(doc)
        except ValidationFailed as exc:
            assert exc.status == 400 and exc.message
            continue
        assert from_native(to_native(schema)) == schema  # whatever parses, round-trips
        assert from_encord(to_encord(schema)).entries.keys() == schema.entries.keys()


def test_sdk_forms_keep_corral_extensions() -> None:
    from corral.core.metadata.schema import detect_form

    current = from_native({"strict_metadata": True, "keys": {
        "camera": {"type": "varchar", "max_length": 8192, "required": True},
        "sample": {"type": "uuid", "required": True}, "owner": {"type": "user"}}})
    via_encord = parse_any(to_encord(current), current)
    assert via_encord == current
    via_legacy = parse_any(to_legacy(current), current)
    assert via_legacy == current  # uuid and user shown as "string" stay what they were
    # A metadata key called "keys" does not make an Encord document look native.
    assert detect_form({"keys": {"ty": "variant", "hint": "text"}}) == "encord"
    assert detect_form({"keys": "string", "strict_metadata": "number"}) == "legacy"
    assert detect_form({"keys": {"a": {"type": "text"}}, "version": 3}) == "native"


def test_sdk_forms_keep_an_embeddings_metric() -> None:
    """An SDK save re-sends every key without the ``metric`` its form cannot carry: it used to
    reset a ``dot`` or ``l2`` key to cosine (and rebuild its index), silently."""
    current = from_native({"keys": {"clip": {"type": "embedding", "size": 4, "metric": "dot"},
                                    "old": {"type": "embedding", "size": 2, "metric": "l2", "deleted": "soft"}}})
    assert parse_any(to_encord(current), current) == current
    assert parse_any(to_legacy(current), current).entries["clip"].metric == "dot"
    resized = to_encord(current)
    resized["clip"]["size"] = 8  # another size is another key: its vectors go, and so does its metric
    assert parse_any(resized, current).entries["clip"].metric is None


def test_no_more_keys_may_be_required_than_an_items_metadata_can_hold() -> None:
    """A schema may hold 10,000 keys and an item's metadata 1,000: with more than 1,000 keys
    required, every write of metadata would be refused, so the schema is refused instead."""
    from corral.core.metadata.schema import MAX_REQUIRED

    def doc(n: int) -> dict[str, object]:
        return {"keys": {f"k{i}": {"type": "number", "required": True} for i in range(n)}
                | {"spare": {"type": "number"}}}

    assert from_native(doc(MAX_REQUIRED)).entries["k0"].required
    with pytest.raises(ValidationFailed) as info:
        from_native(doc(MAX_REQUIRED + 1))
    assert {d.field for d in info.value.details} == {"keys"} and "required" in info.value.message
