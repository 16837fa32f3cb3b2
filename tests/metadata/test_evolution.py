"""Which schema changes are allowed, each refusal's message, and the recorded diff."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from corral.core.metadata.evolution import evolve
from corral.core.metadata.schema import Schema, from_native
from corral.errors import ValidationFailed


def S(**keys: Any) -> Schema:  # noqa: N802
    return from_native({"keys": keys})


def refused(old: Schema, new: Schema) -> str:
    with pytest.raises(ValidationFailed) as info:
        evolve(old, new)
    assert info.value.status == 400
    return info.value.message


def test_adding_keys() -> None:
    assert evolve(S(), S(a={"type": "text"})) == {"added": ["a"]}


def test_identical_schema_has_an_empty_diff() -> None:
    schema = S(a={"type": "text"}, b={"type": "varchar", "deleted": "soft"}, c={"deleted": "hard"})
    assert evolve(schema, schema) == {}


def test_enum_options_can_be_added() -> None:
    old = S(w={"type": "enum", "values": ["rain"]})
    assert evolve(old, S(w={"type": "enum", "values": ["rain", "snow"]})) == {"enum_options_added": {"w": ["snow"]}}


def test_enum_options_are_never_removed() -> None:
    old = S(w={"type": "enum", "values": ["rain", "snow", "sun"]})
    message = refused(old, S(w={"type": "enum", "values": ["rain"]}))
    assert "enum 'w' would lose option(s) 'snow', 'sun': enum options can be added but never removed" in message


def test_keys_are_never_dropped_silently() -> None:
    message = refused(S(a={"type": "text"}, b={"type": "number"}), S(a={"type": "text"}))
    assert "key 'b' (number) is missing: keys are never dropped silently" in message
    assert "mark it deleted" in message


def test_tombstones_are_never_dropped() -> None:
    message = refused(S(b={"deleted": "hard"}), S())
    assert "key 'b' (hard-deleted) is missing" in message and "keep its tombstone" in message


def test_change_type_of_a_live_key() -> None:
    diff = evolve(S(a={"type": "varchar"}), S(a={"type": "number"}))
    assert diff == {"retyped": [{"key": "a", "from": "varchar", "to": "number"}]}
    diff = evolve(S(a={"type": "enum", "values": ["x"]}), S(a={"type": "varchar"}))
    assert diff["retyped"][0]["to"] == "varchar"


def test_soft_delete_and_restore() -> None:
    live = S(a={"type": "varchar", "max_length": 20})
    soft = S(a={"type": "varchar", "max_length": 20, "deleted": "soft"})
    assert evolve(live, soft) == {"deleted": [{"key": "a", "hard": False}]}
    assert evolve(soft, live) == {"restored": ["a"]}


def test_soft_deleted_key_cannot_come_back_with_another_type() -> None:
    soft = S(a={"type": "varchar", "deleted": "soft"})
    message = refused(soft, S(a={"type": "number"}))
    assert ("key 'a' was soft-deleted as varchar; restore it with that type, or hard-delete it first to "
            "reuse the name as number") in message


def test_hard_delete_frees_the_name() -> None:
    live = S(a={"type": "varchar"})
    hard = S(a={"deleted": "hard"})
    assert evolve(live, hard) == {"deleted": [{"key": "a", "hard": True}]}
    assert evolve(hard, S(a={"type": "number"})) == {"added": ["a"]}


def test_soft_tombstone_can_be_purged_but_not_rewritten() -> None:
    soft = S(a={"type": "varchar", "deleted": "soft"})
    assert evolve(soft, S(a={"deleted": "hard"})) == {"deleted": [{"key": "a", "hard": True}]}
    message = refused(soft, S(a={"type": "number", "deleted": "soft"}))
    assert "the tombstone of 'a' remembers varchar; it cannot be changed to number" in message


def test_hard_tombstone_cannot_become_soft() -> None:
    message = refused(S(a={"deleted": "hard"}), S(a={"type": "text", "deleted": "soft"}))
    assert "key 'a' was hard-deleted; it cannot become soft-deleted" in message


def test_a_key_new_to_the_schema_may_arrive_deleted() -> None:
    assert evolve(S(), S(z={"deleted": "hard"})) == {"deleted": [{"key": "z", "hard": True, "new": True}]}
    assert evolve(S(), S(y={"type": "number", "deleted": "soft"})) == {
        "deleted": [{"key": "y", "hard": False, "new": True}]}
    # and its tombstone then behaves like any other: a soft one restores with its type only
    soft = S(y={"type": "number", "deleted": "soft"})
    assert evolve(soft, S(y={"type": "number"})) == {"restored": ["y"]}
    assert "restore it with that type" in refused(soft, S(y={"type": "text"}))


def test_restore_of_an_enum_keeps_its_options() -> None:
    soft = S(w={"type": "enum", "values": ["a", "b"], "deleted": "soft"})
    assert "would lose option(s) 'b'" in refused(soft, S(w={"type": "enum", "values": ["a"]}))
    assert evolve(soft, S(w={"type": "enum", "values": ["a", "b", "c"]})) == {
        "enum_options_added": {"w": ["c"]}, "restored": ["w"]}


def test_required_and_strict_changes_are_recorded() -> None:
    assert evolve(S(a={"type": "text"}), S(a={"type": "text", "required": True})) == {
        "required": [{"key": "a", "required": True}]}
    strict = from_native({"keys": {}, "strict_metadata": True})
    assert evolve(S(), strict) == {"strict_metadata": True}


def test_every_violation_is_listed() -> None:
    old = S(a={"type": "text"}, w={"type": "enum", "values": ["x", "y"]}, s={"type": "uuid", "deleted": "soft"})
    new = S(w={"type": "enum", "values": ["x"]}, s={"type": "number"})
    with pytest.raises(ValidationFailed) as info:
        evolve(old, new)
    assert {d.field for d in info.value.details} == {"keys.a", "keys.w.values", "keys.s"}


# -- property: enum evolution -----------------------------------------------------------------------

options = st.lists(st.text(alphabet="abcdefgh", min_size=1, max_size=3), min_size=1, max_size=12, unique=True)


@settings(max_examples=300)
@given(start=options, added=st.lists(st.text(alphabet="xyz", min_size=1, max_size=3), max_size=5))
def test_any_append_is_accepted(start: list[str], added: list[str]) -> None:
    old = S(e={"type": "enum", "values": start})
    new = S(e={"type": "enum", "values": start + added})
    diff = evolve(old, new)
    assert sorted(diff.get("enum_options_added", {}).get("e", [])) == sorted(set(added) - set(start))


@settings(max_examples=300)
@given(start=options, data=st.data())
def test_any_removal_is_refused(start: list[str], data: st.DataObject) -> None:
    removed = data.draw(st.lists(st.sampled_from(start), min_size=1, unique=True))
    kept = [v for v in start if v not in removed] + ["new-one"]
    with pytest.raises(ValidationFailed) as info:
        evolve(S(e={"type": "enum", "values": start}), S(e={"type": "enum", "values": kept}))
    for value in removed:
        assert repr(value) in info.value.message


def test_a_soft_delete_cannot_drop_enum_options_or_change_the_type() -> None:
    live = S(w={"type": "enum", "values": ["a", "b"]})
    assert "would lose option(s) 'b'" in refused(live, S(w={"type": "enum", "values": ["a"], "deleted": "soft"}))
    message = refused(S(t={"type": "varchar"}), S(t={"type": "number", "deleted": "soft"}))
    assert "the tombstone of 't' must remember its current type varchar, not number" in message


def test_the_default_max_length_spelled_out_is_no_change() -> None:
    assert evolve(S(c={"type": "varchar"}), S(c={"type": "varchar", "max_length": 8192})) == {}
