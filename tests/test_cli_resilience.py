"""The user commands when things go wrong around them: a server that is down, gone in the middle of
an answer, or busy (503 with ``Retry-After``), and a user who presses Ctrl-C while a job runs."""

from __future__ import annotations

import http.server
import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from click.testing import CliRunner

from corral.cli import cli
from tests.test_cli import runner  # noqa: F401 (a fixture)


@contextmanager
def edge_server(handle: Callable[[http.server.BaseHTTPRequestHandler], None]) -> Iterator[str]:
    """A plain HTTP server on loopback standing in for a server that misbehaves on the wire."""

    class Handler(http.server.BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def do_GET(self) -> None:
            handle(self)

        def do_POST(self) -> None:
            self.rfile.read(int(self.headers.get("Content-Length") or 0))
            handle(self)

        def log_message(self, *args: object) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{server.server_port}"
    finally:
        server.shutdown()
        server.server_close()


def _send(h: http.server.BaseHTTPRequestHandler, status: int, body: Any, **headers: str) -> None:
    data = json.dumps(body).encode()
    h.send_response(status)
    h.send_header("Content-Type", "application/json")
    h.send_header("Content-Length", str(len(data)))
    for name, value in headers.items():
        h.send_header(name.replace("_", "-"), value)
    h.end_headers()
    h.wfile.write(data)


def test_find_ndjson_with_the_server_down_or_gone_mid_export_is_one_line(runner) -> None:  # type: ignore[no-untyped-def]  # noqa: F811
    """``corral find --ndjson`` printed an httpx.ConnectError traceback (every other command says
    ``cannot reach``), and one for a server that died in the middle of the export."""
    from tests.conftest import free_port

    r = runner.invoke(cli, ["find", "--ndjson"],
                      env={"CORRAL_URL": f"http://127.0.0.1:{free_port()}", "CORRAL_TOKEN": "t"})
    assert r.exit_code == 1 and isinstance(r.exception, SystemExit), (r.output, r.exception)
    assert "Error: cannot reach http://127.0.0.1:" in r.output

    def half_export(h: http.server.BaseHTTPRequestHandler) -> None:
        h.send_response(200)
        h.send_header("Content-Type", "application/x-ndjson")
        h.send_header("Content-Length", "1000")  # promises more than it sends
        h.end_headers()
        h.wfile.write(b'{"id": "a"}\n')
        h.wfile.flush()
        h.close_connection = True

    with edge_server(half_export) as url:
        r = runner.invoke(cli, ["find", "--ndjson"], env={"CORRAL_URL": url, "CORRAL_TOKEN": "t"})
    assert r.exit_code == 1 and isinstance(r.exception, SystemExit), (r.output, r.exception)
    assert r.output.startswith('{"id":"a"}\n') and "Error: cannot reach" in r.output


ME = {"email": "a@x.io", "role": "admin", "org_name": "X", "auth_method": "bearer"}


def test_a_busy_server_is_asked_again_after_retry_after(runner) -> None:  # type: ignore[no-untyped-def]  # noqa: F811
    """corral answers ``503`` with ``Retry-After`` when it is busy or its database briefly is (and
    then has committed nothing): the CLI gave up at once with ``Error: … (HTTP 503)`` and exit 1,
    also in the middle of a long ``corral import`` wait, whose job went on unseen."""
    calls: list[str] = []

    def busy_twice(h: http.server.BaseHTTPRequestHandler) -> None:
        calls.append(h.command)
        if len(calls) <= 2:
            _send(h, 503, {"code": "overloaded", "message": "the server is busy"}, Retry_After="0")
        else:
            _send(h, 200, ME)

    with edge_server(busy_twice) as url:
        r = runner.invoke(cli, ["whoami"], env={"CORRAL_URL": url, "CORRAL_TOKEN": "t"})
    assert r.exit_code == 0, r.output
    assert r.output == "a@x.io (admin) in X via bearer\n" and calls == ["GET"] * 3

    # a POST is sent again when corral says it committed nothing of it
    calls.clear()

    def post_busy_once(h: http.server.BaseHTTPRequestHandler) -> None:
        calls.append(h.command)
        if len(calls) == 1:
            _send(h, 503, {"code": "unavailable", "message": "database busy"}, Retry_After="0")
        else:
            _send(h, 200, {"count": 7, "items": [], "next_page_token": None})

    with edge_server(post_busy_once) as url:
        r = runner.invoke(cli, ["find", "--count"], env={"CORRAL_URL": url, "CORRAL_TOKEN": "t"})
    assert r.exit_code == 0 and r.output == "7\n", r.output
    assert calls == ["POST", "POST"]


def test_retries_are_bounded_and_never_resend_what_may_have_been_done(runner) -> None:  # type: ignore[no-untyped-def]  # noqa: F811
    from corral.client import RETRIES

    calls: list[str] = []

    def always_busy(h: http.server.BaseHTTPRequestHandler) -> None:
        calls.append(h.command)
        _send(h, 503, {"code": "overloaded", "message": "the server is busy"}, Retry_After="0")

    with edge_server(always_busy) as url:
        r = runner.invoke(cli, ["whoami"], env={"CORRAL_URL": url, "CORRAL_TOKEN": "t"})
    assert r.exit_code == 1 and "Error: the server is busy (HTTP 503)" in r.output
    assert len(calls) == RETRIES + 1

    # a proxy's 503 to a POST (no word that nothing was done), or a 503 without Retry-After: once
    for body, headers in (({"code": "bad_gateway", "message": "upstream"}, {"Retry_After": "0"}),
                          ({"code": "overloaded", "message": "busy"}, {})):
        calls.clear()

        def refuse(h: http.server.BaseHTTPRequestHandler, body: Any = body, headers: Any = headers) -> None:
            calls.append(h.command)
            _send(h, 503, body, **headers)

        with edge_server(refuse) as url:
            r = runner.invoke(cli, ["find", "--count"], env={"CORRAL_URL": url, "CORRAL_TOKEN": "t"})
        assert r.exit_code == 1 and "(HTTP 503)" in r.output
        assert calls == ["POST"]


def _interrupt(args: list[str], env: dict[str, str], ready: Callable[[str], bool],
               tmp_path: Path) -> subprocess.CompletedProcess[str]:
    """Run ``corral ARGS`` in its own process, press Ctrl-C once ``ready(its stderr so far)``, and
    return how it ended."""
    err_path = tmp_path / "stderr.txt"
    with err_path.open("w") as err_file:
        proc = subprocess.Popen([sys.executable, "-m", "corral", *args], env={**os.environ, **env},
                                stdout=subprocess.PIPE, stderr=err_file, text=True)
        try:
            deadline = time.monotonic() + 60
            while not ready(err_path.read_text()):
                assert proc.poll() is None, (proc.communicate(), err_path.read_text())
                assert time.monotonic() < deadline, "the command never started waiting"
                time.sleep(0.1)
            time.sleep(2.0)  # inside the waiting loop
            proc.send_signal(signal.SIGINT)
            out, _ = proc.communicate(timeout=30)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
    return subprocess.CompletedProcess(args, proc.returncode, out, err_path.read_text())


def test_ctrl_c_while_an_import_waits_names_the_job_that_goes_on(live_server, make_user, db, tmp_path) -> None:  # type: ignore[no-untyped-def]
    """Ctrl-C while ``corral import`` (or ``corral job wait``) waited printed click's bare
    ``Aborted!``: the import job went on, and its id had never been shown."""
    from sqlalchemy import select

    from corral.db.tables import Job
    from tests.registration.test_imports import png

    alice = make_user("alice@a.org")
    media = tmp_path / "media"
    media.mkdir()
    (media / "a.png").write_bytes(png(4, 4))
    env = {"CORRAL_URL": live_server, "CORRAL_TOKEN": alice.token, "PYTHONPATH": str(Path.cwd()),
           "CORRAL_CONFIG_DIR": str(tmp_path / "config")}
    run = lambda *a: CliRunner().invoke(cli, list(a), env=env)  # noqa: E731
    r = run("integration", "create", "local", "--title", "disk", "--root", str(media), "--no-check")
    assert r.exit_code == 0, r.output
    assert run("folder", "create", "cats").exit_code == 0
    manifest = tmp_path / "m.json"
    manifest.write_text(json.dumps({"images": [{"objectUrl": (media / "a.png").as_uri()}]}))

    def jobs() -> list[str]:
        with db.read() as s:
            return [str(j) for j in s.scalars(select(Job.id))]

    # this server runs no worker: the job stays PENDING, and the command waits until interrupted
    done = _interrupt(["import", str(manifest), "--folder", "cats", "--integration", "disk"], env,
                      lambda _: bool(jobs()), tmp_path)
    [job_id] = jobs()
    assert done.returncode == 130, (done.stdout, done.stderr)
    assert f"Job {job_id} goes on" in done.stderr and f"corral job wait {job_id}" in done.stderr
    assert "Traceback" not in done.stderr and done.stdout == ""

    done = _interrupt(["job", "wait", job_id], env, lambda err: "waiting" in err, tmp_path)
    assert done.returncode == 130, (done.stdout, done.stderr)
    assert f"corral job cancel {job_id}" in done.stderr and "Traceback" not in done.stderr


def test_losing_the_server_while_an_import_waits_names_the_job(runner, tmp_path) -> None:  # type: ignore[no-untyped-def]  # noqa: F811
    """A server restarted in the middle of a long ``corral import`` wait ended it with ``Error:
    cannot reach …`` alone: the job, which goes on, had never been named."""
    job_id = "01a24e56-2555-7000-a112-73c7c5a79ca4"
    state = {"polls": 0}

    def then_gone(h: http.server.BaseHTTPRequestHandler) -> None:
        if h.command == "POST":
            _send(h, 202, {"job_id": job_id, "status": "PENDING"})
            return
        state["polls"] += 1
        _send(h, 500, {"code": "internal", "message": "internal error (incident 1); see the server log"})

    manifest = tmp_path / "m.json"
    manifest.write_text('{"images": []}')
    with edge_server(then_gone) as url:
        r = runner.invoke(cli, ["import", str(manifest), "--folder", "f", "--integration", "i"],
                          env={"CORRAL_URL": url, "CORRAL_TOKEN": "t"})
    assert r.exit_code == 1 and isinstance(r.exception, SystemExit), (r.output, r.exception)
    assert f"job {job_id} may still be running: follow it with `corral job wait {job_id}`" in r.output
    assert "internal error (incident 1)" in r.output and state["polls"] == 1
