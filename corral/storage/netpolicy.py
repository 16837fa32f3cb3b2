"""The endpoint policy: which network addresses corral may connect to on an integration's behalf.

An organisation admin chooses an integration's endpoints (a custom S3 or STS endpoint, an Azure
blob endpoint or authority host, a GCS endpoint, a service account's ``token_uri``), and any
member may make the server contact them (``integration check``, registration).  Without a
policy, that turns the server into a proxy towards whatever it can reach: the cloud metadata
service at 169.254.169.254, databases and admin consoles on loopback or the private network.

So every connection a store client makes goes through :meth:`EndpointPolicy.resolve`, at connect
time: the host name is resolved once, **every** address it resolves to is checked, and the
socket is then opened to a checked address (never by name again), so a DNS answer that changes
between the check and the connection (DNS rebinding) cannot slip through.  Refused, unless the
operator allows them with ``CORRAL_ALLOWED_ENDPOINTS``:

* loopback (127/8, ::1), private (10/8, 172.16/12, 192.168/16, fc00::/7), shared address space
  (100.64/10, "CGNAT"), link-local (169.254/16, fe80::/10, where the metadata services live),
  unspecified (0.0.0.0, ::), multicast, and every other reserved or non-global range;
* the same addresses wrapped in IPv6 (IPv4-mapped ``::ffff:a.b.c.d``, NAT64 ``64:ff9b::/96``,
  6to4 ``2002::/16``).

``CORRAL_ALLOWED_ENDPOINTS`` is a comma-separated list of host names or IP addresses (any port),
``host:port`` pairs (``[v6]:port`` for IPv6; that port only) and CIDR networks.  A host name entry
allows whatever that name resolves to; an address or network entry allows those addresses
whatever name led there.

Hooks (imported lazily, so the cloud SDKs stay optional extras): :func:`guard_botocore_client`
(S3 and STS), :func:`guarded_requests_session` (Azure's transport, Google's sessions),
:func:`guarded_httpcore_backend` (an embedding key's endpoint, docs/vectors.md).  Errors
are :class:`EndpointRefused`, a ``ConnectionError``; :func:`find_refusal` digs one out of the
wrappers the SDKs put around it, so each backend reports the policy's own message.
"""

from __future__ import annotations

import functools
import ipaddress
import re
import socket
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
Network = ipaddress.IPv4Network | ipaddress.IPv6Network
Resolver = Callable[[str, int], list[str]]

SETTING = "CORRAL_ALLOWED_ENDPOINTS"
_NAT64 = ipaddress.ip_network("64:ff9b::/96")
_6TO4 = ipaddress.ip_network("2002::/16")
#: Ranges Python counts as global but that hold no public services: IETF protocol assignments,
#: where Oracle Cloud's metadata service lives (192.0.0.192).
_ALSO_REFUSED = (ipaddress.ip_network("192.0.0.0/24"),)
#: What inet_aton might read as an IPv4 address: one to four dotted decimal, octal or hex numbers.
_INET_ATON = re.compile(r"(?:0x[0-9a-f]*|[0-9]+)(?:\.(?:0x[0-9a-f]*|[0-9]+)){0,3}")


class EndpointRefused(ConnectionError):
    """A connection the endpoint policy refuses (the message says why and what the operator can do)."""


def system_resolver(host: str, port: int) -> list[str]:
    """Every address ``host`` resolves to (IP literals resolve to themselves, without DNS)."""
    infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    out: list[str] = []
    for info in infos:
        address = str(info[4][0]).split("%", 1)[0]  # drop an IPv6 zone id
        if address not in out:
            out.append(address)
    return out


def literal_resolver(host: str, port: int) -> list[str]:
    """Resolve without DNS: IP literals, and ``localhost`` names (RFC 6761) to loopback.

    Used when an integration is saved (inside a database transaction, where a slow DNS server
    must not hold locks); every connection resolves for real and is checked again.
    """
    name = host.lower().rstrip(".")
    if name == "localhost" or name.endswith(".localhost"):
        return ["127.0.0.1"]
    try:
        return [str(ipaddress.ip_address(name.strip("[]")))]
    except ValueError:
        pass
    if _INET_ATON.fullmatch(name):
        # The forms the system resolver reads as IPv4 addresses although ``ipaddress`` does not:
        # 2130706433, 0x7f.1, 0177.0.0.1, 127.1 (inet_aton's).  They are addresses, not names.
        try:
            return [socket.inet_ntoa(socket.inet_aton(name))]
        except OSError:
            pass
    raise OSError(f"{host!r} is a name; it is checked when it is resolved, at connection")


def _embedded_ipv4(ip: IPAddress) -> ipaddress.IPv4Address | None:
    if isinstance(ip, ipaddress.IPv4Address):
        return None
    if ip.ipv4_mapped is not None:
        return ip.ipv4_mapped
    if ip in _NAT64:
        return ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF)
    if ip in _6TO4:
        return ip.sixtofour
    return None


def is_public(ip: IPAddress) -> bool:
    """Whether ``ip`` is a globally routable unicast address (not one the policy refuses by default)."""
    inner = _embedded_ipv4(ip)
    if inner is not None:
        return is_public(inner)
    if any(ip in net for net in _ALSO_REFUSED if net.version == ip.version):
        return False
    return ip.is_global and not ip.is_multicast and not ip.is_unspecified and not ip.is_reserved


def _kind(ip: IPAddress) -> str:
    inner = _embedded_ipv4(ip)
    if inner is not None:
        return _kind(inner)
    if ip.is_loopback:
        return "a loopback address"
    if ip.is_link_local:
        return "a link-local address (where cloud metadata services live)"
    if ip.is_unspecified:
        return "the unspecified address"
    if ip.is_multicast:
        return "a multicast address"
    if ip in ipaddress.ip_network("100.64.0.0/10"):
        return "a shared (CGNAT) address"
    if ip.is_private:
        return "a private address"
    return "a reserved, non-public address"


def host_name_problem(host: str) -> str | None:
    """Why ``host`` (a URL's host, as ``urlsplit`` gives it) is no host name, or None.  A name
    holds letters, digits, ``-``, ``.`` and ``_`` only: a percent-encoded one (``%31%32%37.0.0.1``)
    or one with other marks is decoded, or not, each client its own way, so the address the
    policy checks need not be the one a client connects to.  (An IPv6 address, which holds
    ``:``, is judged by the policy itself.)"""
    if ":" in host or all(c.isalnum() or c in "-._" for c in host):
        return None
    return (f"the host name {host[:80]!r} holds a character a host name cannot (give letters, digits, "
            "'-' and '.' only, not percent-encoded)")


def _split_host_port(entry: str) -> tuple[str, int | None]:
    if entry.startswith("["):
        host, sep, rest = entry[1:].partition("]")
        if not sep:
            raise ValueError(f"{SETTING}: {entry!r} has '[' without ']'")
        if not rest:
            return host, None
        if not rest.startswith(":"):
            raise ValueError(f"{SETTING}: expected [address]:port, got {entry!r}")
        port_text = rest[1:]
    elif entry.count(":") == 1:
        host, _, port_text = entry.partition(":")
    else:
        return entry, None  # a bare name, an IPv4 address or an IPv6 address without a port
    if not port_text.isdigit() or not 0 < int(port_text) < 65536:
        raise ValueError(f"{SETTING}: {entry!r} has no valid port (1-65535)")
    return host, int(port_text)


def _normal_host(host: str) -> str:
    host = host.strip().lower().rstrip(".")
    try:
        return str(ipaddress.ip_address(host.strip("[]")))
    except ValueError:
        return host


@dataclass(frozen=True)
class EndpointPolicy:
    """What the operator allows beyond public addresses (``EndpointPolicy()`` allows nothing more)."""

    hosts: frozenset[str] = frozenset()
    host_ports: frozenset[tuple[str, int]] = frozenset()
    networks: tuple[Network, ...] = ()

    @classmethod
    def parse(cls, text: str) -> EndpointPolicy:
        """Parse ``CORRAL_ALLOWED_ENDPOINTS``; ``ValueError`` names a bad entry."""
        hosts: set[str] = set()
        host_ports: set[tuple[str, int]] = set()
        networks: list[Network] = []
        for raw in text.split(","):
            entry = raw.strip()
            if not entry:
                continue
            if "/" in entry:
                try:
                    networks.append(ipaddress.ip_network(entry, strict=False))
                except ValueError:
                    raise ValueError(
                        f"{SETTING}: {entry!r} is not a CIDR network such as 10.0.0.0/8"
                    ) from None
                continue
            host, port = _split_host_port(entry)
            if not host or any(c in host for c in " /@?#"):
                raise ValueError(f"{SETTING}: {entry!r} is not a host, host:port or CIDR network")
            host = _normal_host(host)
            if port is None:
                hosts.add(host)
            else:
                host_ports.add((host, port))
        return cls(frozenset(hosts), frozenset(host_ports), tuple(networks))

    def _named(self, host: str, port: int) -> bool:
        return host in self.hosts or (host, port) in self.host_ports

    def allows(self, host: str, port: int, address: str) -> bool:
        """Whether a connection to ``host``:``port`` that resolved to ``address`` may be made."""
        ip = ipaddress.ip_address(address)
        if is_public(ip):
            return True
        host = _normal_host(host)
        if self._named(host, port) or self._named(str(ip), port):
            return True
        return any(ip.version == net.version and ip in net for net in self.networks)

    def resolve(self, host: str, port: int, resolver: Resolver | None = None) -> list[str]:
        """The addresses to connect to for ``host``:``port``; ``EndpointRefused`` if any is refused.

        A name that resolves to several addresses is refused when any one of them is: a client that
        picks among them must not be steerable to the refused one.
        """
        try:
            addresses = (resolver or system_resolver)(host.strip("[]"), port)
        except OSError as exc:
            raise ConnectionError(f"cannot resolve {host!r}: {exc}") from None
        if not addresses:
            raise ConnectionError(f"{host!r} resolves to no address")
        for address in addresses:
            if not self.allows(host, port, address):
                ip = ipaddress.ip_address(address)
                shown = host if host == address else f"{host} ({address})"
                raise EndpointRefused(
                    f"connection to {shown} port {port} refused: it is {_kind(ip)}, which integrations "
                    f"may reach only if the server's operator allows it in {SETTING}"
                )
        return addresses

    def check_url(self, url: str, resolver: Resolver = literal_resolver) -> None:
        """Check an endpoint URL when it is saved: ``EndpointRefused`` for a refused address.

        By default only addresses and ``localhost`` names are checked here (no DNS); a name that
        does not resolve is accepted, as every connection resolves and checks it again.
        """
        try:
            parts = urlsplit(url)
            host = parts.hostname or ""
            port = parts.port or (443 if parts.scheme == "https" else 80)
        except ValueError as exc:  # "Invalid IPv6 URL", a port out of range
            raise EndpointRefused(f"{url[:80]!r} is not a valid URL ({exc})") from None
        try:
            self.resolve(host, port, resolver)
        except EndpointRefused:
            raise
        except ConnectionError:
            return


def find_refusal(exc: BaseException | None) -> EndpointRefused | None:
    """The ``EndpointRefused`` somewhere inside ``exc`` (SDKs wrap connection errors several times)."""
    seen: set[int] = set()
    todo: list[Any] = [exc]
    while todo:
        current = todo.pop()
        if not isinstance(current, BaseException) or id(current) in seen or len(seen) > 64:
            continue
        seen.add(id(current))
        if isinstance(current, EndpointRefused):
            return current
        refusal = getattr(current, "refusal", None)
        if isinstance(refusal, EndpointRefused):
            return refusal
        todo.extend([current.__cause__, current.__context__, getattr(current, "reason", None),
                     getattr(current, "inner_exception", None), getattr(current, "error", None)])
        kwargs = getattr(current, "kwargs", None)
        if isinstance(kwargs, dict):
            todo.append(kwargs.get("error"))
        todo.extend(a for a in getattr(current, "args", ()) if isinstance(a, BaseException))
    return None


# -- hooks into the HTTP clients the SDKs use ----------------------------------------------------


@functools.lru_cache(maxsize=64)
def guarded_pool(pool_cls: type, policy: EndpointPolicy) -> type:
    """A urllib3 connection pool class whose connections resolve and check through ``policy``."""
    from urllib3.exceptions import NewConnectionError

    class Refused(NewConnectionError):
        def __init__(self, conn: Any, refusal: EndpointRefused) -> None:
            super().__init__(conn, str(refusal))
            self.refusal = refusal

    base_conn: Any = pool_cls.ConnectionCls  # type: ignore[attr-defined]

    class GuardedConnection(base_conn):  # type: ignore[misc]
        _dns_host: str

        def _new_conn(self) -> Any:
            name = self._dns_host
            try:
                addresses = policy.resolve(name, self.port)
            except EndpointRefused as refusal:
                raise Refused(self, refusal) from None
            except ConnectionError as exc:
                raise NewConnectionError(self, str(exc)) from None
            last: Exception | None = None
            for address in addresses:
                self._dns_host = address  # connect to the checked address, never the name again
                try:
                    return super()._new_conn()
                except NewConnectionError as exc:
                    last = exc
                finally:
                    self._dns_host = name
            assert last is not None
            raise last

    return type(f"Guarded{pool_cls.__name__}", (pool_cls,), {"ConnectionCls": GuardedConnection})


def guard_pool_manager(manager: Any, policy: EndpointPolicy) -> None:
    """Make a urllib3 ``PoolManager`` (before it opens any pool) create only guarded pools."""
    # A new dict: urllib3's PoolManager shares one module-level dict among all its instances.
    manager.pool_classes_by_scheme = {
        scheme: guarded_pool(cls, policy) for scheme, cls in manager.pool_classes_by_scheme.items()
    }


def guard_botocore_client(client: Any, policy: EndpointPolicy) -> Any:
    """Guard every connection a botocore client opens (call before its first request)."""
    session = client._endpoint.http_session
    # botocore hands this dict to its pool manager and to any proxy manager it creates later.
    classes = {scheme: guarded_pool(cls, policy) for scheme, cls in session._pool_classes_by_scheme.items()}
    session._pool_classes_by_scheme = classes
    session._manager.pool_classes_by_scheme = classes
    return client


def guard_requests_session(session: Any, policy: EndpointPolicy, max_retries: int = 0) -> Any:
    """Mount adapters on a ``requests.Session`` so every connection resolves and checks through ``policy``."""
    from requests.adapters import HTTPAdapter

    class GuardedAdapter(HTTPAdapter):
        def init_poolmanager(self, *args: Any, **kwargs: Any) -> None:
            super().init_poolmanager(*args, **kwargs)
            guard_pool_manager(self.poolmanager, policy)

        def proxy_manager_for(self, proxy: str, **kwargs: Any) -> Any:
            manager = super().proxy_manager_for(proxy, **kwargs)
            guard_pool_manager(manager, policy)
            return manager

    for prefix in ("https://", "http://"):
        session.mount(prefix, GuardedAdapter(max_retries=max_retries))
    return session


def guarded_requests_session(policy: EndpointPolicy, max_retries: int = 0) -> Any:
    """A new ``requests.Session`` guarded by ``policy``."""
    import requests

    return guard_requests_session(requests.Session(), policy, max_retries)


def guarded_httpcore_backend(policy: EndpointPolicy) -> Any:
    """An ``httpcore`` network backend whose connections resolve and check through ``policy``.

    For corral's own outbound calls made with ``httpcore`` (an embedding key's endpoint): each
    connection resolves the name once, checks every address, and connects to a checked address;
    TLS still verifies the certificate against the URL's host name.
    """
    import httpcore

    class GuardedBackend(httpcore.SyncBackend):
        def connect_tcp(self, host: str, port: int, timeout: float | None = None,
                        local_address: str | None = None, socket_options: Any = None) -> Any:
            addresses = policy.resolve(host, port)
            last: Exception | None = None
            for address in addresses:
                try:
                    return super().connect_tcp(address, port, timeout, local_address, socket_options)
                except (httpcore.ConnectError, httpcore.ConnectTimeout) as exc:
                    last = exc
            assert last is not None
            raise last

    return GuardedBackend()
