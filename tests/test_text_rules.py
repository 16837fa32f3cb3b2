"""The name, title and path patterns the API publishes say exactly what the core checks accept
(the checks search with the same patterns; these tests hold the two to agreement with the plain
rules they replace)."""

from __future__ import annotations

import itertools
import re

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from corral import errors
from corral.core import datasets, folders, items, text_rules
from corral.core.labels import ontologies
from corral.registration import uploads

_ALPHABET = "a ./\\\n\t\x1c\u00a0\u2003"


def _plain_name(name: str, max_chars: int, slash: bool) -> bool:
    """The rule as it was written before the patterns: stripped, 1 to max characters, no NUL."""
    core = name.strip()
    if not core or len(core) > max_chars or "\x00" in core:
        return False
    return not slash or ("/" not in core and core not in (".", ".."))


def _plain_path(path: str, max_chars: int) -> bool:
    names = [p for p in path.strip("/").split("/") if p]
    return bool(names) and all(_plain_name(n, max_chars, slash=True) for n in names)


def test_patterns_match_the_plain_rules_on_every_short_text() -> None:
    name, path, title = (re.compile(p) for p in (
        text_rules.folder_name(4), text_rules.folder_path(4), text_rules.stripped(4)))
    for n in range(6):
        for chars in itertools.product(_ALPHABET, repeat=n):
            text = "".join(chars)
            assert bool(name.search(text)) == _plain_name(text, 4, slash=True), repr(text)
            assert bool(path.search(text)) == _plain_path(text, 4), repr(text)
            assert bool(title.search(text)) == _plain_name(text, 4, slash=False), repr(text)


def _accepts(check, value: str) -> bool:  # type: ignore[no-untyped-def]
    try:
        check(value)
    except errors.ValidationFailed:
        return False
    return True


@settings(max_examples=300, deadline=None)
@given(st.text(alphabet=_ALPHABET + "x\x00", max_size=12), st.integers(0, 310))
def test_each_core_check_agrees_with_its_published_pattern(text: str, pad: int) -> None:
    padded = text + "x" * pad  # reaches past the 300-character limits
    for value in (text, padded, " " + padded + " "):
        assert _accepts(folders._check_name, value) == bool(re.search(folders.NAME_PATTERN, value))
        assert _accepts(items.check_name, value) == bool(re.search(items.NAME_PATTERN, value))
        assert _accepts(lambda v: datasets._check_text(v, ""), value) == bool(
            re.search(datasets.TITLE_PATTERN, value))
        assert _accepts(lambda v: ontologies.check_text("ontology", v, ""), value) == bool(
            re.search(ontologies.TITLE_PATTERN, value))
        assert _plain_path(value, folders.MAX_NAME) == bool(re.search(folders.PATH_PATTERN, value))


@pytest.mark.parametrize(("name", "usable"), [
    ("cat.png", True), ("a/b/cat.png", True), ("..cat", True), ("x\\cat", True), ("", False),
    (".", False), ("...", False), ("a/..", False), ("a/", False), ("a\\", False), (" ", True),
])
def test_upload_file_names_follow_their_pattern(name: str, usable: bool) -> None:
    assert _accepts(uploads.safe_filename, name) is usable
    assert bool(re.search(uploads.FILENAME_PATTERN, name)) is usable


def test_blanks_are_exactly_what_strip_removes() -> None:
    import sys

    blank = re.compile(f"[{text_rules.BLANKS}]")
    for code in range(sys.maxunicode + 1):
        char = chr(code)
        assert bool(blank.fullmatch(char)) == char.isspace(), hex(code)


def test_patterns_read_the_same_in_every_regex_dialect() -> None:
    """A validator reads a published pattern as ECMA-262, some over ASCII only (schemathesis
    does): a pattern that spelled blanks as ``\\s`` accepted a folder name of only U+00A0 there,
    which the core strips to nothing and refuses.  Read over ASCII, every pattern still agrees."""
    name, path, title = (re.compile(p, re.ASCII) for p in (
        text_rules.folder_name(4), text_rules.folder_path(4), text_rules.stripped(4)))
    for n in range(5):
        for chars in itertools.product(_ALPHABET + "\x85\u3000", repeat=n):
            text = "".join(chars)
            assert bool(name.search(text)) == _plain_name(text, 4, slash=True), repr(text)
            assert bool(path.search(text)) == _plain_path(text, 4), repr(text)
            assert bool(title.search(text)) == _plain_name(text, 4, slash=False), repr(text)
    assert not re.search(text_rules.NOT_BLANK, " \u00a0\u3000\x1c", re.ASCII)
    assert re.search(text_rules.NOT_BLANK, " x ", re.ASCII)
