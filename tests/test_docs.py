"""The docs are tested like code: generated blocks are current and nothing is undocumented."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import click
import pytest

from corral.api.app import create_app
from corral.cli import cli
from corral.settings import Settings, settings_table

ROOT = Path(__file__).resolve().parent.parent
DOCS = ROOT / "docs"


def _read(name: str) -> str:
    return (DOCS / name).read_text(encoding="utf-8")


def _command_paths(command: click.Command, path: tuple[str, ...] = ()) -> Iterator[str]:
    yield " ".join(("corral", *path))
    if isinstance(command, click.Group):
        ctx = click.Context(command, info_name="corral")
        for name in command.list_commands(ctx):
            sub = command.get_command(ctx, name)
            if sub is not None and not sub.hidden:
                yield from _command_paths(sub, (*path, name))


def test_generated_blocks_are_current() -> None:
    result = subprocess.run(
        [sys.executable, "scripts/gen_docs.py", "--check"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.parametrize("name", [row[0] for row in settings_table()])
def test_every_setting_is_documented(name: str) -> None:
    assert name in _read("configuration.md")


@pytest.mark.parametrize("path", list(_command_paths(cli)))
def test_every_command_is_documented(path: str) -> None:
    assert path in _read("cli.md")


def test_every_route_is_documented(tmp_path: Path) -> None:
    app = create_app(Settings(data_dir=tmp_path, secret_key="x" * 40))
    routes = sorted(app.openapi()["paths"])
    assert routes, "the app has no routes"
    text = _read("http-api.md")
    missing = [route for route in routes if route not in text]
    assert not missing, f"routes missing from docs/http-api.md: {missing}"
