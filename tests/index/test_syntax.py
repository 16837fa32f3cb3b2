"""The text syntax compiles to the JSON tree; errors name the position and what was expected."""

from __future__ import annotations

import pytest

from corral import errors
from corral.core.index.syntax import compile_text

KINDS = {"score": "number", "flag": "boolean", "captured_at": "datetime", "camera": "varchar",
         "weather": "enum", "size": "number"}


def kind_of(target: str, name: str) -> str | None:
    return KINDS.get(name)


def test_the_issue_example() -> None:
    tree = compile_text(
        'camera = "cam1" and score > 0.5 and captured_at >= 2024-05-01 and not weather in (rain, snow)', kind_of
    )
    assert tree == {"and": [
        {"key": "camera", "op": "eq", "value": "cam1"},
        {"key": "score", "op": "gt", "value": 0.5},
        {"key": "captured_at", "op": "gte", "value": "2024-05-01"},
        {"not": {"key": "weather", "op": "in", "value": ["rain", "snow"]}},
    ]}


@pytest.mark.parametrize("source, tree", [
    ("a = 1 or b = 2 and c = 3", {"or": [{"key": "a", "op": "eq", "value": "1"},
                                          {"and": [{"key": "b", "op": "eq", "value": "2"},
                                                   {"key": "c", "op": "eq", "value": "3"}]}]}),
    ("(a = 1 or b = 2) and c exists", {"and": [{"or": [{"key": "a", "op": "eq", "value": "1"},
                                                       {"key": "b", "op": "eq", "value": "2"}]},
                                               {"key": "c", "op": "exists"}]}),
    ("score != 3", {"key": "score", "op": "ne", "value": 3}),
    ("flag = TRUE", {"key": "flag", "op": "eq", "value": True}),
    ("`my key` not in ('x', \"y z\")", {"key": "my key", "op": "not_in", "value": ["x", "y z"]}),
    ("@size >= 10 AND @type = image", {"and": [{"field": "size", "op": "gte", "value": 10},
                                               {"field": "type", "op": "eq", "value": "image"}]}),
    ("@folder under \"a/b\"", {"field": "folder", "op": "under", "value": "a/b"}),
    ("camera icontains CAM and notes match 'red fox'", {"and": [
        {"key": "camera", "op": "icontains", "value": "CAM"}, {"key": "notes", "op": "match", "value": "red fox"}]}),
    ("camera = \"say \\\"hi\\\"\"", {"key": "camera", "op": "eq", "value": 'say "hi"'}),
    ("score missing", {"key": "score", "op": "missing"}),
    ("  ", None),
    ("in_collection picks and not in_collection (\"a b\", c)", {"and": [
        {"in_collection": "picks"}, {"not": {"in_collection": ["a b", "c"]}}]}),
    ("preset 'rainy' or @label_object in (car, road) or @label_classification = weather", {"or": [
        {"preset": "rainy"}, {"field": "label_object", "op": "in", "value": ["car", "road"]},
        {"field": "label_classification", "op": "eq", "value": "weather"}]}),
    # followed by an operator, they are metadata keys of those names
    ("preset = 1 and in_collection exists", {"and": [{"key": "preset", "op": "eq", "value": "1"},
                                                     {"key": "in_collection", "op": "exists"}]}),
])
def test_syntax(source: str, tree: object) -> None:
    assert compile_text(source, kind_of) == tree


@pytest.mark.parametrize("source, position, expected", [
    ("score >", 8, "expected a value"),
    ("score > high", 9, "a number for 'score'"),
    ("score high", 7, "expected an operator"),
    ("a = 1 b = 2", 7, "'and', 'or' or the end"),
    ("(a = 1", 7, "')'"),
    ("weather in (rain", 17, "',' or ')'"),
    ("weather not = 1", 13, "'in' after 'not'"),
    ("and = 1", 1, "a metadata key"),
    ("a = 1 and", 10, "a metadata key"),
    ("a = 1 ! b", 7, "a name, a value or an operator"),
    ("a = 1 ; b", 7, "'and', 'or' or the end"),
    ("in_collection (a b)", 18, "',' or ')'"),
    # float() reads these, so they were numbers: a typo '1_5' was 15
    ("score > 1_5", 9, "a number for 'score'"),
    ("score = \u0661\u0662", 9, "a number for 'score'"),
    ("@size < 0x10", 9, "a number for 'size'"),
    ("score < infinity", 9, "a number for 'score'"),
])
def test_errors_name_the_position_and_what_was_expected(source: str, position: int, expected: str) -> None:
    with pytest.raises(errors.ValidationFailed) as caught:
        compile_text(source, kind_of)
    assert f"at position {position}:" in str(caught.value) and expected in str(caught.value)
    assert caught.value.details[0].field == "where"


def test_nesting_is_limited_before_it_recurses() -> None:
    """'not' and parentheses nest at most MAX_DEPTH deep, refused at the first one too many
    (thousands of them were a RecursionError, a 500)."""
    deepest = "not " * 8 + "(" * 8 + "score = 1" + ")" * 8
    assert compile_text(deepest, kind_of) is not None
    for source, position in [("not " * 17 + "score = 1", 65), ("(" * 17 + "score = 1" + ")" * 17, 17),
                             ("not " * 2400 + "score = 1", 65), ("(" * 4900 + "x = 1" + ")" * 4900, 17)]:
        with pytest.raises(errors.ValidationFailed) as caught:
            compile_text(source, kind_of)
        assert f"at position {position}: expected at most 16 levels of 'not' and parentheses" in str(caught.value)
