"""Rules on names and titles, each written once as a regular expression.

The core checks search with these patterns, and the API publishes the same strings as the
``pattern`` of the fields they govern, so the OpenAPI document and the server cannot disagree.
Python's ``\\s`` matches exactly what ``str.strip()`` removes.
"""

from __future__ import annotations

#: The true end of the text (``$`` also matches before a final newline).
END = r"(?![\s\S])"


def stripped(max_chars: int, forbidden: str = "") -> str:
    """Text that, stripped of blanks at both ends, holds 1 to ``max_chars`` characters, none of
    them NUL or in ``forbidden``."""
    bad = "\\x00" + forbidden
    return rf"^\s*[^\s{bad}](?:[^{bad}]{{0,{max_chars - 2}}}[^\s{bad}])?\s*{END}"


def _segment(max_chars: int) -> str:
    """One folder name inside a path: 1 to ``max_chars`` characters once stripped, no '/' or NUL,
    and not '.' or '..'."""
    return rf"\s*(?!\.\.?\s*(?:/|{END}))[^\s/\x00](?:[^/\x00]{{0,{max_chars - 2}}}[^\s/\x00])?\s*"


def folder_name(max_chars: int) -> str:
    return rf"^{_segment(max_chars)}{END}"


def folder_path(max_chars: int) -> str:
    """Folder names separated by '/', any number of slashes between, before and after them."""
    segment = _segment(max_chars)
    return rf"^/*{segment}(?:/+{segment})*/*{END}"
