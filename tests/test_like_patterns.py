"""Every ``*_like`` filter reads its pattern by one set of rules (``corral.core.filters``): ``%``
any run, ``_`` one character, ``\\`` escapes the character after it, any case.  SQLite has no
default escape character and PostgreSQL's is ``\\``, so before these rules ``a\\_b`` matched
``a_b`` on one database and only the text ``a\\_b`` on the other; the filters matched in Python
(``like_match``) took the backslash literally as well."""

from __future__ import annotations

import itertools

import pytest
from sqlalchemy import literal, select

from corral import errors
from corral.core import filters

_PATTERNS = ["a\\_b", "a\\%", "50\\%", "\\\\x", "%\\_%", "a_b", "A%", "\\a%", "_\\\\", "%\\%%", "x\\\\%"]
_TEXTS = ["a_b", "axb", "A_B", "a%", "ab", "50%", "500", "\\x", "x", "_", "ab\\", "a\\b", "50%%", "x\\y"]


def test_like_match_and_both_databases_agree_on_every_pattern(db) -> None:  # type: ignore[no-untyped-def]
    with db.engine.connect() as conn:
        for pattern, text in itertools.product(_PATTERNS, _TEXTS):
            sql = conn.execute(select(literal(text).ilike(pattern, escape=filters.ESCAPE))).scalar()
            assert bool(sql) == filters.like_match(pattern, text), (db.engine.dialect.name, pattern, text)


def test_escapes_mean_the_literal_character() -> None:
    assert filters.like_match("a\\_b", "a_b") and not filters.like_match("a\\_b", "axb")
    assert filters.like_match("50\\%", "50%") and not filters.like_match("50\\%", "500")
    assert filters.like_match("\\\\x", "\\x") and filters.like_match("%\\%%", "100% sure")
    assert filters.like_match("A%", "abc")  # any case, as before


@pytest.mark.parametrize("pattern", ["abc\\", "\\", "a\\\\\\"])
def test_a_pattern_ending_in_a_lone_escape_is_refused_by_name(pattern: str) -> None:
    with pytest.raises(errors.ValidationFailed) as caught:
        filters.check_like(pattern, "title_like")
    assert caught.value.details[0].field == "title_like" and "escape" in caught.value.message


@pytest.mark.parametrize("pattern", ["abc\\\\", "a\\%", "plain", ""])
def test_other_patterns_pass(pattern: str) -> None:
    assert filters.check_like(pattern, "title_like") == pattern


def test_fold_lowers_every_letter_on_both_databases(db) -> None:  # type: ignore[no-untyped-def]
    """SQLite's own lower() folds A-Z alone; ``fold`` folds as PostgreSQL's lower() does."""
    from corral.db.types import fold, like_folded

    with db.engine.connect() as conn:
        assert conn.execute(select(fold(literal("ÄrZTE École ÖL")))).scalar() == "ärzte école öl"
        assert conn.execute(select(fold(literal(None)))).scalar() is None
        assert conn.execute(select(like_folded(literal("Ünion_1"), "ün%\\_1"))).scalar()
        assert not conn.execute(select(like_folded(literal("Ünion-1"), "ün%\\_1"))).scalar()
