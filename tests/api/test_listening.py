"""The API processes' listening socket (corral/api/listening.py)."""

from __future__ import annotations

import pickle
import socket
import sys

import pytest

from corral.api import listening


@pytest.mark.skipif(
    not listening.spreads_connections(), reason="SO_REUSEPORT spreads connections on Linux only"
)
def test_each_process_gets_its_own_socket_on_the_same_port() -> None:
    parent = listening.api_socket("127.0.0.1", 0)
    try:
        port = parent.getsockname()[1]
        assert port != 0 and parent.getsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT) == 1
        # what an API process receives from uvicorn's process manager (it pickles the sockets)
        first, second = pickle.loads(pickle.dumps(parent)), pickle.loads(pickle.dumps(parent))
        try:
            assert {first.fileno(), second.fileno()}.isdisjoint({parent.fileno()})
            assert first.getsockname()[1] == second.getsockname()[1] == port
            first.listen(64)
            second.listen(64)
            # the parent's socket never listens, so every connection lands in a process's queue
            clients = [socket.create_connection(("127.0.0.1", port), timeout=5) for _ in range(40)]
            accepted = []
            for server in (first, second):
                server.setblocking(False)
                n = 0
                while True:
                    try:
                        conn, _ = server.accept()
                    except BlockingIOError:
                        break
                    conn.close()
                    n += 1
                accepted.append(n)
            for c in clients:
                c.close()
            assert sum(accepted) == 40 and min(accepted) >= 8, accepted
        finally:
            first.close()
            second.close()
    finally:
        parent.close()


def test_another_program_on_the_port_is_refused() -> None:
    """SO_REUSEPORT only joins sockets that all ask for it (and of the same user)."""
    taken = socket.socket()
    taken.bind(("127.0.0.1", 0))
    taken.listen(1)
    try:
        with pytest.raises(OSError):
            listening.api_socket("127.0.0.1", taken.getsockname()[1])
    finally:
        taken.close()


def test_spreads_connections_only_on_linux() -> None:
    assert listening.spreads_connections() == sys.platform.startswith("linux")


@pytest.mark.skipif(
    not listening.spreads_connections(), reason="SO_REUSEPORT spreads connections on Linux only"
)
def test_a_second_server_on_the_port_is_refused() -> None:
    """A second `corral serve` on a port in use must fail, not join the first one's group."""
    first = listening.api_socket("127.0.0.1", 0)
    child = pickle.loads(pickle.dumps(first))  # an API process of the first server, listening
    child.listen(8)
    try:
        with pytest.raises(OSError):
            listening.api_socket("127.0.0.1", first.getsockname()[1])
    finally:
        child.close()
        first.close()
