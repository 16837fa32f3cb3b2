"""A live server with its worker, and the CLI pointed at it as alice (an admin)."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import pytest
import uvicorn
from click.testing import CliRunner, Result

from corral.api.app import create_app
from corral.cli import cli
from tests.conftest import free_port


@pytest.fixture
def server(settings, db) -> Iterator[str]:  # type: ignore[no-untyped-def]
    app = create_app(settings, db=db, run_worker=True)
    srv = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=free_port(), log_config=None, access_log=False))
    thread = threading.Thread(target=srv.run, daemon=True)
    thread.start()
    while not srv.started:
        time.sleep(0.02)
    yield f"http://127.0.0.1:{srv.config.port}"
    srv.should_exit = True
    thread.join(10)


def _runner(server: str, user: Any) -> Any:
    runner = CliRunner()
    env = {"CORRAL_URL": server, "CORRAL_TOKEN": user.token}
    run: Any = lambda *args, input=None: runner.invoke(cli, list(args), env=env, input=input)  # noqa: E731
    run.user = user
    return run


@pytest.fixture
def cli_as(server, tmp_path, monkeypatch) -> Callable[[Any], Any]:  # type: ignore[no-untyped-def]
    """``cli_as(user)("dataset", "list")`` runs the CLI with that user's token."""
    monkeypatch.setenv("CORRAL_CONFIG_DIR", str(tmp_path / "config"))
    return lambda user: _runner(server, user)


@pytest.fixture
def run(server, cli_as, make_user) -> Iterator[Callable[..., Result]]:  # type: ignore[no-untyped-def]
    """The CLI as alice, an admin; ``run.api`` is an HTTP client with her token."""
    run_ = cli_as(make_user("alice@x.io"))
    with httpx.Client(base_url=server, headers=run_.user.bearer, timeout=60) as api:
        run_.api = api
        yield run_
