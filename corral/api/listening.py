"""The listening socket of several API processes: one accept queue per process (``SO_REUSEPORT``).

uvicorn's ``--workers`` binds one socket and every API process accepts from it.  When clients
connect together (a page of a web UI, a pool of SDK workers, a load test), whichever process
wakes first accepts nearly all of them: 50 connections opened at once split 43/7, 48/2 and 49/1
between two processes (docs/performance.md, "Connections shared out").  Connections are kept
alive, so one process then serves most requests on its one core (one interpreter lock) while the
other idles.

On Linux each process instead listens on its own socket bound to the same address with
``SO_REUSEPORT``, and the kernel spreads new connections over the processes' accept queues by a
hash of the client's address and port.  The socket handed to uvicorn's process manager is bound
but never listens (so it receives no connection); each API process, unpickling it, gets a socket
of its own in the same group instead.  Elsewhere (``SO_REUSEPORT`` does not spread connections
there) uvicorn's shared socket is used as before.
"""

from __future__ import annotations

import socket
import sys
from typing import Any


class ProcessSocket(socket.socket):
    """A bound ``SO_REUSEPORT`` socket that each process it is passed to rebinds for itself."""

    def __reduce__(self) -> tuple[Any, ...]:
        host, port = self.getsockname()[:2]
        return (bind_reuseport, (self.family, host, port))


def bind_reuseport(family: int, host: str, port: int) -> ProcessSocket:
    sock = ProcessSocket(family=family, type=socket.SOCK_STREAM, proto=socket.IPPROTO_TCP)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        sock.bind((host, port))
    except BaseException:
        sock.close()
        raise
    sock.set_inheritable(True)
    return sock


def spreads_connections() -> bool:
    """Whether sockets bound with ``SO_REUSEPORT`` share out connections here (Linux)."""
    return sys.platform.startswith("linux") and hasattr(socket, "SO_REUSEPORT")


def api_socket(host: str, port: int) -> ProcessSocket:
    """The socket for uvicorn's process manager: bound (port 0 resolved here, so every process
    binds the same port), never listening; each API process listens on its own.

    The address is first bound as uvicorn binds it (``SO_REUSEADDR`` only), so a port another
    program listens on is refused as before, and so is a second ``corral serve`` on the same
    port: its API processes would otherwise join this one's group and take part of its clients."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    return bind_reuseport(family, host, probe(host, port))


def probe(host: str, port: int) -> int:
    """Bind the address as uvicorn binds it (``SO_REUSEADDR`` only) and let it go: the port (port 0
    resolved), or OSError when another program listens there or the host is not this machine's.
    ``corral serve`` asks this before it says it listens or starts anything."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((host, port))
        return int(sock.getsockname()[1])
