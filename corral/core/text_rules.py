"""Rules on names and titles, each written once as a regular expression.

The core checks search with these patterns, and the API publishes the same strings as the
``pattern`` of the fields they govern, so the OpenAPI document and the server cannot disagree.

Blanks are spelled out (``BLANKS``: exactly what ``str.strip()`` removes), never ``\\s``: a
validator reads a published pattern as ECMA-262, where ``\\s`` is another set (no ``\\x1c``-
``\\x1f`` or ``\\x85``, but ``\\ufeff``), and some read it over ASCII only; an explicit class reads
the same in every dialect.
"""

from __future__ import annotations

#: The characters ``str.strip()`` removes (``str.isspace``), as the body of a character class.
BLANKS = r"\t-\r\x1c-\x20\x85\xa0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000"
_B = f"[{BLANKS}]"
#: The true end of the text (``$`` also matches before a final newline).
END = r"(?![\s\S])"
#: Text holding at least one character that is not blank (``text.strip()`` is not empty).
NOT_BLANK = rf"[^{BLANKS}]"


def stripped(max_chars: int, forbidden: str = "") -> str:
    """Text that, stripped of blanks at both ends, holds 1 to ``max_chars`` characters, none of
    them NUL or in ``forbidden``."""
    bad = "\\x00" + forbidden
    return rf"^{_B}*[^{BLANKS}{bad}](?:[^{bad}]{{0,{max_chars - 2}}}[^{BLANKS}{bad}])?{_B}*{END}"


def _segment(max_chars: int) -> str:
    """One folder name inside a path: 1 to ``max_chars`` characters once stripped, no '/' or NUL,
    and not '.' or '..'."""
    return (rf"{_B}*(?!\.\.?{_B}*(?:/|{END}))[^{BLANKS}/\x00](?:[^/\x00]{{0,{max_chars - 2}}}"
            rf"[^{BLANKS}/\x00])?{_B}*")


def folder_name(max_chars: int) -> str:
    return rf"^{_segment(max_chars)}{END}"


def folder_path(max_chars: int) -> str:
    """Folder names separated by '/', any number of slashes between, before and after them."""
    segment = _segment(max_chars)
    return rf"^/*{segment}(?:/+{segment})*/*{END}"
