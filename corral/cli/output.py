"""Plain-text tables for the CLI (``--json`` prints the API's JSON instead)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import click

#: Characters a cell shows escaped: control characters (a newline in a folder's name broke its
#: row in two, an escape sequence could restyle the terminal) and the bidirectional overrides and
#: isolates (U+202E shows a name's end first: ``gpj.exe`` as ``exe.jpg``).
_HIDDEN = frozenset([*map(chr, range(0x20)), "\x7f", *map(chr, range(0x80, 0xA0)),
                     "\u200e", "\u200f", *map(chr, range(0x202A, 0x202F)), *map(chr, range(0x2066, 0x206A))])


def printable(text: str) -> str:
    """``text`` with the characters a terminal would act on or hide shown escaped (``\\n``,
    ``\\x1b``, ``\\u202e``), as ``ls`` quotes names; anything else as it is."""
    if not any(ch in _HIDDEN for ch in text):
        return text
    return "".join(ch.encode("unicode_escape").decode("ascii") if ch in _HIDDEN else ch for ch in text)


def table(headers: Sequence[str], rows: Sequence[Sequence[Any]], empty: str = "Nothing.") -> None:
    """Columns padded to their widest cell, two spaces apart; ``empty`` when there are no rows.
    Each cell shows its control and bidirectional characters escaped (``printable``)."""
    if not rows:
        click.echo(empty)
        return
    cells = [[printable(str(c)) if c is not None else "-" for c in row] for row in [list(headers), *rows]]
    widths = [max(len(row[i]) for row in cells) for i in range(len(headers))]
    for row in cells:
        click.echo("  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip())


def size(n: int | None) -> str:
    """A byte count for people: 512 B, 1.5 KiB, 3.2 MiB."""
    if n is None:
        return "-"
    value = float(n)
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if value < 1024 or unit == "TiB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    raise AssertionError("unreachable")
