"""Plain-text tables for the CLI (``--json`` prints the API's JSON instead)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import click


def table(headers: Sequence[str], rows: Sequence[Sequence[Any]], empty: str = "Nothing.") -> None:
    """Columns padded to their widest cell, two spaces apart; ``empty`` when there are no rows."""
    if not rows:
        click.echo(empty)
        return
    cells = [[str(c) if c is not None else "-" for c in row] for row in [list(headers), *rows]]
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
