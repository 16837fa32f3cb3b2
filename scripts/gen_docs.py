"""Regenerate the generated blocks of the docs in place.

    .venv/bin/python scripts/gen_docs.py           # rewrite the blocks
    .venv/bin/python scripts/gen_docs.py --check   # exit 1 if any block is stale

Blocks:

* ``docs/configuration.md`` between ``<!-- settings:start -->`` and ``<!-- settings:end -->``:
  the settings table, from ``corral.settings.settings_table()`` (field defaults only, so the
  output does not depend on the environment).
* ``docs/cli.md`` between ``<!-- cli:start -->`` and ``<!-- cli:end -->``: the ``--help`` of
  every command, run through click's ``CliRunner`` at a fixed width.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import click  # noqa: E402
from click.testing import CliRunner  # noqa: E402

from corral.cli import cli  # noqa: E402
from corral.settings import settings_table  # noqa: E402

HELP_WIDTH = 80


def settings_block() -> str:
    lines = [
        "| Variable | Default | Description |",
        "| --- | --- | --- |",
    ]
    for name, default, description in settings_table():
        shown = f"`{default}`" if default else "*unset*"
        escaped = description.replace("|", r"\|")
        lines.append(f"| `{name}` | {shown} | {escaped} |")
    return "\n".join(lines)


def command_paths(
    command: click.Command, path: tuple[str, ...] = ()
) -> Iterator[tuple[tuple[str, ...], click.Command]]:
    """Every command with its path of subcommand names, depth first, in help order."""
    yield path, command
    if isinstance(command, click.Group):
        ctx = click.Context(command, info_name="corral")
        for name in command.list_commands(ctx):
            sub = command.get_command(ctx, name)
            if sub is not None and not sub.hidden:
                yield from command_paths(sub, (*path, name))


def help_text(path: tuple[str, ...]) -> str:
    result = CliRunner().invoke(
        cli,
        [*path, "--help"],
        prog_name="corral",
        terminal_width=HELP_WIDTH,
        max_content_width=HELP_WIDTH,
    )
    if result.exit_code != 0:
        raise SystemExit(f"`corral {' '.join(path)} --help` failed:\n{result.output}")
    return result.output.rstrip()


def cli_block() -> str:
    sections = []
    for path, _command in command_paths(cli):
        title = " ".join(("corral", *path))
        sections.append(f"### `{title}`\n\n```text\n{help_text(path)}\n```")
    return "\n\n".join(sections)


BLOCKS: list[tuple[str, str, Callable[[], str]]] = [
    ("docs/configuration.md", "settings", settings_block),
    ("docs/cli.md", "cli", cli_block),
]


def replace_block(text: str, name: str, content: str, where: str) -> str:
    start, end = f"<!-- {name}:start -->", f"<!-- {name}:end -->"
    head, found_start, rest = text.partition(start)
    _old, found_end, tail = rest.partition(end)
    if not found_start or not found_end:
        raise SystemExit(f"{where}: markers {start} and {end} not found")
    return f"{head}{start}\n\n{content}\n\n{end}{tail}"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Regenerate the generated blocks of the docs.")
    parser.add_argument("--check", action="store_true", help="only report stale files; exit 1 if any")
    args = parser.parse_args(argv)
    stale = []
    for relpath, name, build in BLOCKS:
        path = ROOT / relpath
        old = path.read_text(encoding="utf-8")
        new = replace_block(old, name, build(), relpath)
        if new == old:
            continue
        stale.append(relpath)
        if not args.check:
            path.write_text(new, encoding="utf-8")
            print(f"regenerated {relpath}")
    if args.check and stale:
        for relpath in stale:
            print(
                f"{relpath} is stale: run `.venv/bin/python scripts/gen_docs.py` (or `make docs`)",
                file=sys.stderr,
            )
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
