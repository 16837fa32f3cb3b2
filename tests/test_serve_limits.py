"""A live `corral serve`: memory while refusing huge bodies, and half-sent requests timed out.

The memory test is the issue's: the API process's peak memory while refusing 128 MiB bodies
sent without credentials stays within 50 MiB of its idle memory.  Memory is sampled from
/proc/PID/status (VmRSS) every few milliseconds throughout.
"""

from __future__ import annotations

import contextlib
import json
import os
import selectors
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from corral.core import identity
from corral.db import create_database, migrate
from corral.settings import Settings
from tests.conftest import free_port

ROOT = Path(__file__).resolve().parents[1]
MiB = 1 << 20
TIMEOUT = 2.0  # CORRAL_BODY_READ_TIMEOUT_SECONDS and CORRAL_HEADER_READ_TIMEOUT_SECONDS here


@dataclass
class Server:
    proc: subprocess.Popen[str]
    port: int
    token: str

    def rss_kib(self) -> int:
        with open(f"/proc/{self.proc.pid}/status") as fh:
            for line in fh:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
        raise AssertionError("no VmRSS")


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    data = tmp_path_factory.mktemp("serve-limits")
    settings = Settings(data_dir=data, secret_key="k" * 40)
    db = create_database(settings)
    migrate.upgrade(db)
    with db.write() as s:
        identity.create_user(s, "alice@x.io", org_name="A", role="admin")
        token, _ = identity.create_token(s, "alice@x.io")
    db.dispose()
    port = free_port()
    env = {**os.environ, "CORRAL_SECRET_KEY": "k" * 40, "CORRAL_WORKER_PROCESSES": "0",
           "CORRAL_LOG_LEVEL": "warning", "CORRAL_BODY_READ_TIMEOUT_SECONDS": str(TIMEOUT),
           "CORRAL_HEADER_READ_TIMEOUT_SECONDS": str(TIMEOUT)}
    proc = subprocess.Popen([sys.executable, "-m", "corral", "serve", "--port", str(port), "--data-dir", str(data)],
                            cwd=ROOT, text=True, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 120
        while True:
            try:
                if httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert proc.poll() is None and time.monotonic() < deadline, "corral serve did not start"
            time.sleep(0.1)
        yield Server(proc, port, token)
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(30)


def _read_response(sock: socket.socket, timeout: float = 10) -> bytes:
    sock.settimeout(timeout)
    data = b""
    try:
        while b"\r\n\r\n" not in data:
            chunk = sock.recv(65536)
            if not chunk:
                break
            data += chunk
    except (ConnectionResetError, TimeoutError):
        pass
    return data


def send_huge(port: int, headers: dict[str, str], size: int = 128 * MiB) -> tuple[bytes, int]:
    """Send a request head announcing ``size`` bytes, then push the body until the server stops us.

    Returns the response head and how many body bytes the kernel accepted before the server closed.
    """
    head = "POST /api/v1/folders HTTP/1.1\r\nHost: corral\r\nContent-Type: application/json\r\n"
    head += "".join(f"{k}: {v}\r\n" for k, v in headers.items()) + "\r\n"
    block = b"[" + b"1," * (MiB // 2 - 1) + b"1"
    if headers.get("Transfer-Encoding") == "chunked":
        block = f"{len(block):x}\r\n".encode() + block + b"\r\n"
    sent = 0
    with socket.create_connection(("127.0.0.1", port)) as sock:
        sock.sendall(head.encode())
        response = b""
        sock.setblocking(False)
        # A selector (epoll), not select.select: the test process may hold descriptors past 1024.
        with selectors.DefaultSelector() as selector:
            selector.register(sock, selectors.EVENT_READ | selectors.EVENT_WRITE)
            try:
                while sent < size:
                    events = selector.select(10)
                    mask = events[0][1] if events else 0
                    if mask & selectors.EVENT_READ:
                        break
                    if mask & selectors.EVENT_WRITE:
                        sent += sock.send(block[: min(len(block), size - sent)])
            except (BrokenPipeError, ConnectionResetError):
                pass
        sock.setblocking(True)
        response = _read_response(sock)
    return response, sent


def test_refusing_huge_bodies_costs_no_memory(server: Server) -> None:
    base = f"http://127.0.0.1:{server.port}"
    for _ in range(5):  # warm up every code path the refusals take
        httpx.post(f"{base}/api/v1/folders", json={"path": "x"})
        httpx.post(f"{base}/api/v1/folders", json={"path": "x"}, headers={"Authorization": "Bearer nope"})
    time.sleep(0.5)
    idle = max(server.rss_kib() for _ in range(20) if time.sleep(0.01) is None)

    peak = idle
    stop = threading.Event()

    def sample() -> None:
        nonlocal peak
        while not stop.is_set():
            peak = max(peak, server.rss_kib())
            time.sleep(0.005)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    kinds = [
        {"Content-Length": str(128 * MiB)},
        {"Content-Length": str(128 * MiB), "Authorization": "Bearer corral_not-a-token"},
        {"Content-Length": str(128 * MiB), "Content-Digest": "sha-256=:AAAA:"},  # bogus digest
        {"Transfer-Encoding": "chunked"},
    ]
    results: list[tuple[bytes, int]] = []
    threads = [threading.Thread(target=lambda h=h: results.append(send_huge(server.port, h))) for h in kinds * 2]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    stop.set()
    sampler.join(2)

    assert len(results) == len(threads)
    for response, sent in results:
        assert response.startswith(b"HTTP/1.1 401"), response[:200]
        assert sent < 32 * MiB, sent  # the server stopped reading long before the end
    grown_mib = (peak - idle) / 1024
    print(f"idle {idle / 1024:.1f} MiB, peak {peak / 1024:.1f} MiB, grown {grown_mib:.1f} MiB")
    assert grown_mib <= 50, f"peak RSS grew by {grown_mib:.1f} MiB refusing 8 x 128 MiB bodies"
    assert httpx.get(f"{base}/healthz").status_code == 200


def test_authenticated_oversized_body_is_413_unread(server: Server) -> None:
    response, sent = send_huge(server.port, {"Content-Length": str(128 * MiB),
                                             "Authorization": f"Bearer {server.token}"})
    assert response.startswith(b"HTTP/1.1 413"), response[:300]
    assert b"connection: close" in response.lower()
    assert sent < 32 * MiB, sent


def test_a_half_sent_head_is_dropped(server: Server) -> None:
    with socket.create_connection(("127.0.0.1", server.port)) as sock:
        start = time.monotonic()
        sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: corral\r\n")  # no blank line: the head never ends
        sock.settimeout(TIMEOUT + 10)
        assert sock.recv(1024) == b""  # closed by the server
        elapsed = time.monotonic() - start
    assert TIMEOUT - 0.5 <= elapsed <= TIMEOUT + 5, elapsed


def test_a_trickled_head_is_dropped_too(server: Server) -> None:
    """One byte now and then restarts uvicorn's own keep-alive timer; the head deadline holds."""
    with socket.create_connection(("127.0.0.1", server.port)) as sock, selectors.DefaultSelector() as selector:
        selector.register(sock, selectors.EVENT_READ)
        start = time.monotonic()
        closed = False
        for byte in b"GET /healthz HTTP/1.1\r\nHost: corral\r\nX-Slow: " + b"a" * 100:
            try:
                sock.sendall(bytes([byte]))
            except (BrokenPipeError, ConnectionResetError):
                closed = True
                break
            ready = selector.select(0.5)
            if ready and sock.recv(1024) == b"":
                closed = True
                break
        elapsed = time.monotonic() - start
    assert closed and elapsed <= TIMEOUT + 5, elapsed


def test_a_half_sent_body_is_answered_408_and_closed(server: Server) -> None:
    with socket.create_connection(("127.0.0.1", server.port)) as sock:
        start = time.monotonic()
        sock.sendall(f"POST /api/v1/folders HTTP/1.1\r\nHost: corral\r\nAuthorization: Bearer {server.token}\r\n"
                     "Content-Type: application/json\r\nContent-Length: 1000\r\n\r\n{\"path\": ".encode())
        response = _read_response(sock, TIMEOUT + 10)
        elapsed = time.monotonic() - start
        assert response.startswith(b"HTTP/1.1 408"), response[:300]
        sock.settimeout(5)
        rest = b""
        try:
            while chunk := sock.recv(65536):
                rest += chunk
        except ConnectionResetError:
            pass
    assert TIMEOUT - 0.5 <= elapsed <= TIMEOUT + 5, elapsed


def test_an_oversized_head_is_refused(server: Server) -> None:
    """CORRAL_MAX_HEADER_BYTES (32 KiB by default) bounds how much of an unfinished head the server
    buffers: past it, the request is refused without waiting for the rest."""
    with socket.create_connection(("127.0.0.1", server.port)) as sock:
        head = b"GET /healthz HTTP/1.1\r\nHost: corral\r\nX-Big: " + b"a" * (64 << 10)
        try:
            sock.sendall(head)  # and no end of the head
        except (BrokenPipeError, ConnectionResetError):
            pass
        response = _read_response(sock, TIMEOUT / 2)
    assert response.startswith(b"HTTP/1.1 400"), response[:200]
    small = httpx.get(f"http://127.0.0.1:{server.port}/healthz", headers={"X-Small": "a" * 1000})
    assert small.status_code == 200


@pytest.mark.parametrize("extra", [40 << 10, 60 << 10])
def test_a_whole_head_longer_than_the_limit_is_refused(server: Server, extra: int) -> None:
    """The server's own limit is on a head still unfinished: a whole head that came in one read,
    up to 64 KiB past CORRAL_MAX_HEADER_BYTES, was answered (a 200 with a valid token)."""
    with socket.create_connection(("127.0.0.1", server.port)) as sock:
        head = (b"GET /api/v1/me HTTP/1.1\r\nHost: corral\r\nAuthorization: Bearer " + server.token.encode()
                + b"\r\nX-Big: " + b"a" * extra + b"\r\n\r\n")
        with contextlib.suppress(BrokenPipeError, ConnectionResetError):
            sock.sendall(head)
        sock.settimeout(TIMEOUT / 2)
        response = b""
        with contextlib.suppress(ConnectionResetError, TimeoutError):
            while chunk := sock.recv(65536):  # (answered with Connection: close)
                response += chunk
    assert response.startswith(b"HTTP/1.1 400"), response[:200]
    body = json.loads(response.split(b"\r\n\r\n", 1)[1])
    assert body["errors"][0]["field"] == "headers" and "CORRAL_MAX_HEADER_BYTES" in body["message"], body
    ok = httpx.get(f"http://127.0.0.1:{server.port}/api/v1/me",
                   headers={"Authorization": f"Bearer {server.token}", "X-Small": "a" * 20_000})
    assert ok.status_code == 200, ok.text


@pytest.mark.parametrize("head", [
    b"GET /api/v1/\xff\xfe HTTP/1.1\r\nHost: corral\r\n\r\n",  # a byte outside ASCII in the target
    b"GET /api/v1/me?\xff=1 HTTP/1.1\r\nHost: corral\r\n\r\n",
    b"GET /api/v1/me HTTP/1.1\r\nHost: corral\r\nBad Header Line\r\n\r\n",
    b"GET /api/v1/me HTTP/1.1\r\nHost: corral\r\nX-Big: " + b"a" * (64 << 10),  # an unfinished oversized head
])
def test_requests_http_cannot_parse_get_the_json_error_shape(server: Server, head: bytes) -> None:
    """uvicorn answered these in plain text ("Invalid HTTP request received."), the one answer that
    did not have corral's error shape."""
    with socket.create_connection(("127.0.0.1", server.port)) as sock:
        with contextlib.suppress(BrokenPipeError, ConnectionResetError):
            sock.sendall(head)
        sock.settimeout(10)
        data = b""
        with contextlib.suppress(ConnectionResetError, TimeoutError):
            while chunk := sock.recv(65536):
                data += chunk
    status, _, rest = data.partition(b"\r\n")
    headers, _, body = rest.partition(b"\r\n\r\n")
    assert status == b"HTTP/1.1 400 Bad Request", data[:300]
    assert b"content-type: application/json" in headers.lower()
    error = json.loads(body)
    assert error["ok"] is False and error["status"] == 400 and error["code"] == "invalid_input"
    assert "not valid HTTP/1.1" in error["message"] and error["errors"][0]["message"] == error["message"]
