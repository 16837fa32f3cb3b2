"""The README's walkthrough, run as written: its commands come from README.md itself.

The walkthrough's code blocks are marked with an HTML comment on the line before them:

* ``<!-- walkthrough -->`` before a ``sh`` block: each command runs, in order, in one bash
  process (so ``source .venv/bin/activate`` holds for the rest), and must succeed;
* ``<!-- walkthrough:server -->``: the command runs in a second shell, as a server in a second
  terminal would; the test waits until it answers, and stops it (by PID) at the end;
* ``<!-- walkthrough:printed -->``: the command is one that an earlier command printed (the
  block shows it with ``…`` for what differs, such as the token); the printed line runs;
* ``<!-- walkthrough:python -->``: the script runs with the virtualenv's Python;
* ``<!-- walkthrough:output -->`` before a ``text`` block: what the previous command printed.
  Each line must appear, in order, with ``…`` standing for anything and runs of spaces for any
  spacing.

It runs in a fresh directory (with ``.venv`` linked to this virtualenv) and a fresh home
directory, so the data directory, the SSH key and the login profile are all new. The only
change to the text is the port: ``127.0.0.1:8080`` becomes a free one (and ``CORRAL_PORT``
says so to ``corral serve`` and ``corral demo``), since 8080 may be taken on a shared machine.
"""

from __future__ import annotations

import os
import queue
import re
import signal
import subprocess
import sys
import threading
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import unquote, urlsplit

import httpx
import pytest

from corral.client import Client
from tests.conftest import free_port

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
BLOCK = re.compile(r"<!-- walkthrough(?::(\w+))? -->\n```(\w+)\n(.*?)\n```", re.S)


@dataclass
class Block:
    kind: str  # run, server, printed, python, output
    text: str


def walkthrough() -> list[Block]:
    return [Block(kind or "run", text) for kind, _lang, text in BLOCK.findall(README.read_text())]


def commands(text: str) -> list[str]:
    """Shell commands of a block: one per line, a trailing backslash joining lines."""
    out: list[str] = []
    pending = ""
    for line in text.splitlines():
        if line.rstrip().endswith("\\"):
            pending += line.rstrip()[:-1] + " "
            continue
        line = pending + line
        pending = ""
        if line.strip() and not line.lstrip().startswith("#"):
            out.append(line)
    return out


def pattern(expected: str) -> re.Pattern[str]:
    """One expected line as a regex: ``…`` is anything, a run of spaces any spacing."""
    parts = [r"\s+".join(re.escape(w) for w in chunk.split()) for chunk in expected.strip().split("…")]
    return re.compile(r"\s*" + ".*?".join(parts) + r"\s*")


def check_output(expected: str, actual: str) -> None:
    lines = [line for line in actual.splitlines() if line.strip()]
    at = 0
    for want in (w for w in expected.splitlines() if w.strip()):
        regex = pattern(want)
        while at < len(lines) and not regex.fullmatch(lines[at]):
            at += 1
        assert at < len(lines), f"the README says this is printed:\n  {want}\nbut the output was:\n{actual}"
        at += 1


class Shell:
    """One bash process; commands go in one at a time, each with its output and exit status."""

    def __init__(self, cwd: Path, env: dict[str, str]) -> None:
        self.proc = subprocess.Popen(["bash", "--noprofile", "--norc"], cwd=cwd, env=env, text=True,
                                     stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        self.lines: queue.Queue[str | None] = queue.Queue()
        threading.Thread(target=self._read, daemon=True).start()
        self.run("exec 2>&1")

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.lines.put(line)
        self.lines.put(None)

    def run(self, command: str, timeout: float = 180) -> tuple[int, str]:
        assert self.proc.stdin is not None
        mark = f"__walkthrough_{uuid.uuid4().hex}__"
        self.proc.stdin.write(f"{command}\n__status=$?; echo; echo {mark} $__status\n")
        self.proc.stdin.flush()
        out: list[str] = []
        deadline = time.monotonic() + timeout
        while True:
            line = self.lines.get(timeout=max(0.1, deadline - time.monotonic()))
            assert line is not None, f"the shell exited while running {command!r}:\n{''.join(out)}"
            if line.startswith(mark):
                return int(line.split()[1]), "".join(out)
            out.append(line)

    def close(self) -> None:
        if self.proc.poll() is None:
            assert self.proc.stdin is not None
            self.proc.stdin.close()
            self.proc.wait(30)
        if self.proc.stdout is not None:
            self.proc.stdout.close()


def _env(home: Path, port: int) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("CORRAL_", "XDG_", "VIRTUAL_ENV"))}
    return {**env, "HOME": str(home), "CORRAL_PORT": str(port)}


@pytest.mark.slow
def test_the_readme_walkthrough_runs_as_written(tmp_path: Path) -> None:
    blocks = walkthrough()
    kinds = [b.kind for b in blocks]
    assert kinds.count("server") == 1 and kinds.count("printed") == 1 and kinds.count("python") == 1
    assert kinds.count("run") >= 8 and kinds.count("output") >= 8, kinds

    port = free_port()
    work, home = tmp_path / "work", tmp_path / "home"
    work.mkdir()
    home.mkdir()
    (work / ".venv").symlink_to(Path(sys.prefix))
    env = _env(home, port)
    here = "127.0.0.1:8080"
    shell = Shell(work, env)
    server: subprocess.Popen[str] | None = None
    printed = ""
    last = ""
    try:
        for block in blocks:
            text = block.text.replace(here, f"127.0.0.1:{port}")
            if block.kind == "output":
                check_output(text, last)
                continue
            if block.kind == "server":
                [command] = commands(text)
                server = subprocess.Popen(
                    ["bash", "-c", f"source .venv/bin/activate && exec {command}"], cwd=work, env=env,
                    text=True, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                )
                _wait_healthy(server, port)
                continue
            if block.kind == "printed":
                [shown] = commands(text)
                regex = pattern(shown)
                found = [line.strip() for line in printed.splitlines() if regex.fullmatch(line)]
                assert found, f"no earlier command printed a line like {shown!r}"
                to_run = [found[-1]]
            elif block.kind == "python":
                script = work / f"walkthrough_{len(printed)}.py"
                script.write_text(text)
                to_run = [f"python {script.name}"]
            else:
                to_run = commands(text)
            for command in to_run:
                status, last = shell.run(command)
                printed += last
                assert status == 0, f"{command!r} exited with {status}:\n{last}"

        _check_what_was_registered(work, printed, port)

        # Again: the SDK script registers into a new folder each run, and still succeeds.
        [sdk] = [b for b in blocks if b.kind == "python"]
        (work / "walkthrough_again.py").write_text(sdk.text.replace(here, f"127.0.0.1:{port}"))
        status, out = shell.run("python walkthrough_again.py")
        assert status == 0 and "LongPollingStatus.DONE ['photo-2.png'] []" in out, out
    finally:
        shell.close()
        if server is not None:
            server.send_signal(signal.SIGTERM)
            log, _ = server.communicate(timeout=60)
            assert "Traceback" not in log, log


def _wait_healthy(server: subprocess.Popen[str], port: int) -> None:
    deadline = time.monotonic() + 60
    while True:
        try:
            if httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=1).status_code == 200:
                return
        except httpx.TransportError:
            pass
        if server.poll() is not None:
            raise AssertionError(f"corral serve exited:\n{server.stdout.read() if server.stdout else ''}")
        assert time.monotonic() < deadline, "corral serve did not answer within 60 s"
        time.sleep(0.1)


def _check_what_was_registered(work: Path, printed: str, port: int) -> None:
    """The files the walkthrough registered exist, where the README says they are."""
    data, media = work / "corral-data", work / "corral-demo-media"
    assert (data / "corral.db").is_file(), "the walkthrough did not use a fresh ./corral-data"
    assert f'local_roots = ["{media}"]' in (data / "config.toml").read_text()
    token = re.search(r"--token (corral_\S+)", printed)
    assert token is not None
    with Client(f"http://127.0.0.1:{port}", token=token[1]) as c:
        folders = {f["name"]: f for f in c.list_folders()}
        sdk = [name for name in folders if name.startswith("sdk-")]
        assert "demo" in folders and "projects" in folders and len(sdk) == 1, folders
        expected = {
            "demo": 9,
            "projects/cats": 1,
            sdk[0]: 1,
        }
        for folder, count in expected.items():
            items = list(c.iter_items(folder))
            assert len(items) == count, (folder, items)
            for item in items:
                item = c.get_item(item["id"])
                path = Path(unquote(urlsplit(item["url"]).path))
                if not path.is_absolute():
                    path = media / path
                assert path.is_file() and path.is_relative_to(media), item["url"]
                assert item["file_size"] == path.stat().st_size
                assert item["client_metadata"]["camera"].startswith("cam-")
