"""The endpoint policy (corral/storage/netpolicy.py): the resolve-and-check step, fed refused
addresses directly (no traffic is ever sent to them), and the hooks in every store client, which
check at connect time (a listener on loopback shows that a refused connection never arrives)."""

from __future__ import annotations

import socket
import threading
from collections.abc import Iterator

import pytest

from corral.storage import netpolicy
from corral.storage.base import StorageContext
from corral.storage.netpolicy import EndpointPolicy, EndpointRefused, find_refusal
from corral.storage.options import AzureOptions, GcsOptions, S3Options
from corral.storage.registry import open_storage
from tests.services import AZURITE_KEY

STRICT = EndpointPolicy()

REFUSED = [
    "169.254.169.254",  # AWS/GCP/Azure metadata
    "169.254.170.2",  # ECS task metadata
    "fd00:ec2::254",  # AWS metadata over IPv6
    "100.100.100.200",  # Alibaba metadata (shared address space)
    "192.0.0.192",  # Oracle metadata
    "10.0.0.1", "172.16.5.4", "192.168.1.1",  # RFC 1918
    "100.64.0.1",  # CGNAT
    "127.0.0.1", "127.1.2.3", "::1",  # loopback
    "0.0.0.0", "::",  # unspecified
    "fe80::1", "fc00::1", "fd12:3456::1",  # link-local, unique local
    "224.0.0.1", "ff02::1",  # multicast
    "240.0.0.1", "255.255.255.255", "198.18.0.1", "192.0.2.1",  # reserved, benchmarking, docs
    "::ffff:169.254.169.254", "::ffff:127.0.0.1",  # IPv4-mapped
    "64:ff9b::a9fe:a9fe",  # NAT64 of 169.254.169.254
    "2002:a9fe:a9fe::1",  # 6to4 of 169.254.169.254
]


def fixed(*addresses: str):  # type: ignore[no-untyped-def]
    def resolver(host: str, port: int) -> list[str]:
        return list(addresses)
    return resolver


@pytest.mark.parametrize("address", REFUSED)
def test_non_public_addresses_are_refused(address: str) -> None:
    with pytest.raises(EndpointRefused) as info:
        STRICT.resolve("store.example.com", 443, fixed(address))
    assert "CORRAL_ALLOWED_ENDPOINTS" in str(info.value) and "store.example.com" in str(info.value)


@pytest.mark.parametrize("address", ["8.8.8.8", "52.95.110.1", "2606:4700::1111"])
def test_public_addresses_pass(address: str) -> None:
    assert STRICT.resolve("store.example.com", 443, fixed(address)) == [address]


def test_a_name_with_one_refused_address_among_public_ones_is_refused() -> None:
    """DNS answers with several records: a client choosing among them must not reach the bad one."""
    with pytest.raises(EndpointRefused, match="169.254.169.254"):
        STRICT.resolve("rebind.example.com", 80, fixed("8.8.8.8", "169.254.169.254"))


def test_allow_list_entries() -> None:
    policy = EndpointPolicy.parse("minio.internal, 127.0.0.1:9000, 10.20.0.0/16, [::1]:8080")
    # A host name entry: whatever that name resolves to, on any port.
    assert policy.resolve("MINIO.internal.", 1234, fixed("10.9.9.9")) == ["10.9.9.9"]
    # host:port allows that port alone.
    assert policy.resolve("127.0.0.1", 9000, fixed("127.0.0.1")) == ["127.0.0.1"]
    with pytest.raises(EndpointRefused):
        policy.resolve("127.0.0.1", 9001, fixed("127.0.0.1"))
    assert policy.resolve("::1", 8080, fixed("::1")) == ["::1"]
    with pytest.raises(EndpointRefused):
        policy.resolve("::1", 8081, fixed("::1"))
    # A network: those addresses, whatever name led there.
    assert policy.resolve("anything.example", 80, fixed("10.20.3.4")) == ["10.20.3.4"]
    with pytest.raises(EndpointRefused):
        policy.resolve("anything.example", 80, fixed("10.21.3.4"))
    # An allowed name does not allow other names that resolve to the same place.
    with pytest.raises(EndpointRefused):
        policy.resolve("evil.example", 80, fixed("169.254.169.254"))


@pytest.mark.parametrize("bad", ["10.0.0.0/33", "host:0", "host:99999", "[::1", "a b", "x@y"])
def test_bad_allow_list_entries_are_named(bad: str) -> None:
    with pytest.raises(ValueError, match="CORRAL_ALLOWED_ENDPOINTS"):
        EndpointPolicy.parse(f"127.0.0.1,{bad}")


def test_settings_refuse_a_bad_allow_list() -> None:
    from pydantic import ValidationError

    from corral.settings import Settings
    with pytest.raises(ValidationError, match="CORRAL_ALLOWED_ENDPOINTS"):
        Settings(allowed_endpoints="10.0.0.0/99")


def test_save_time_check_needs_no_dns() -> None:
    """At save time, addresses and localhost names are checked; other names wait for connect time."""
    for url in ("http://169.254.169.254", "http://[::1]:9000", "https://localhost:8443", "http://app.localhost"):
        with pytest.raises(EndpointRefused):
            STRICT.check_url(url)
    STRICT.check_url("https://s3.eu-central-1.example.com")  # a name: checked when resolved


@pytest.mark.parametrize("host", ["2130706433", "0x7f.1", "0177.0.0.1", "127.1", "0x7f000001", "0",
                                  "0xa9.0xfe.0xa9.0xfe", "0251.0376.0251.0376", "2852039166"])
def test_numeric_address_forms_are_checked_at_save_time(host: str) -> None:
    """The forms the system resolver reads as IPv4 addresses (inet_aton's decimal, octal and hex)
    are addresses, refused when saved like the dotted form, not left for connect time as names."""
    with pytest.raises(EndpointRefused):
        STRICT.check_url(f"http://{host}:9000")
    STRICT.check_url("http://0x8.8.8.8")  # 8.8.8.8, public


# -- connect time, in every store client ----------------------------------------------------------


class Listener:
    """A TCP listener on loopback that counts connections (and answers nothing)."""

    def __init__(self) -> None:
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(16)
        self.sock.settimeout(0.2)
        self.port = self.sock.getsockname()[1]
        self.connections = 0
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self) -> None:
        while not self.stop.is_set():
            try:
                conn, _ = self.sock.accept()
            except OSError:
                continue
            self.connections += 1
            conn.close()

    def close(self) -> None:
        self.stop.set()
        self.thread.join(2)
        self.sock.close()


@pytest.fixture
def listener() -> Iterator[Listener]:
    server = Listener()
    yield server
    server.close()


def _options(provider: str, endpoint: str) -> S3Options | AzureOptions:
    if provider == "s3":
        return S3Options(bucket="media", endpoint_url=endpoint, access_key_id="AKIA1", secret_access_key="s")
    return AzureOptions(account_name="devstoreaccount1", container="media", endpoint_url=endpoint,
                        account_key=AZURITE_KEY)


@pytest.mark.parametrize("provider", ["s3", "azure"])
def test_store_clients_refuse_at_connect_time(provider: str, listener: Listener) -> None:
    """No allowance: the client refuses before connecting (the listener sees nothing)."""
    storage = open_storage(_options(provider, f"http://127.0.0.1:{listener.port}"),
                           StorageContext(connect_timeout=1, read_timeout=1))
    with pytest.raises(EndpointRefused, match="loopback address.*CORRAL_ALLOWED_ENDPOINTS"):
        storage.stat("a.jpg")
    storage.close()
    assert listener.connections == 0


@pytest.mark.parametrize("provider", ["s3", "azure"])
def test_store_clients_connect_when_allowed(provider: str, listener: Listener) -> None:
    """The allowance is what lets the connection through (the listener answers nothing, so the
    request then fails, but it arrived)."""
    storage = open_storage(_options(provider, f"http://127.0.0.1:{listener.port}"),
                           StorageContext(connect_timeout=1, read_timeout=1,
                                          endpoints=EndpointPolicy.parse(f"127.0.0.1:{listener.port}")))
    with pytest.raises(OSError) as info:
        storage.stat("a.jpg")
    storage.close()
    assert find_refusal(info.value) is None and listener.connections >= 1


def test_gcs_client_refuses_at_connect_time(listener: Listener, monkeypatch: pytest.MonkeyPatch) -> None:
    from google.auth.credentials import AnonymousCredentials

    from corral.storage import gcs
    monkeypatch.setattr(gcs, "_load_credentials", lambda options: (AnonymousCredentials(), "p"))
    options = GcsOptions(bucket="media", endpoint_url=f"http://127.0.0.1:{listener.port}", auth="ambient")
    storage = gcs.open_storage(options, StorageContext(connect_timeout=1, read_timeout=1))
    with pytest.raises(EndpointRefused, match="loopback"):
        storage.stat("a.jpg")
    storage.close()
    assert listener.connections == 0


def test_dns_rebinding_cannot_bypass_the_check(listener: Listener, monkeypatch: pytest.MonkeyPatch) -> None:
    """The name is resolved once, checked, and the socket opened to the checked address: a name that
    resolves to loopback is refused although the name itself looks harmless, and an allowed answer is
    connected to as checked (the name itself does not resolve at all here)."""
    answers = {"store.example.com": ["127.0.0.1"]}
    monkeypatch.setattr(netpolicy, "system_resolver", lambda host, port: answers[host])
    endpoint = f"http://store.example.com:{listener.port}"
    strict = open_storage(_options("s3", endpoint), StorageContext(connect_timeout=1, read_timeout=1))
    with pytest.raises(EndpointRefused, match=r"store.example.com \(127.0.0.1\)"):
        strict.stat("a.jpg")
    assert listener.connections == 0
    allowed = open_storage(_options("s3", endpoint), StorageContext(
        connect_timeout=1, read_timeout=1, endpoints=EndpointPolicy.parse("127.0.0.0/8")))
    with pytest.raises(OSError) as info:
        allowed.stat("a.jpg")
    assert find_refusal(info.value) is None and listener.connections >= 1
    strict.close()
    allowed.close()


def test_guard_leaves_other_http_clients_alone(listener: Listener) -> None:
    """Guarding a store client must not change urllib3's shared defaults for everyone else."""
    import urllib3

    open_storage(_options("azure", "http://127.0.0.1:1"), StorageContext()).close()
    assert not any(cls.__name__.startswith("Guarded")
                   for cls in urllib3.poolmanager.pool_classes_by_scheme.values())


# -- FFmpeg, which fetches signed URLs itself ------------------------------------------------------


def _probe_source(endpoint: str | None, policy: EndpointPolicy):  # type: ignore[no-untyped-def]
    from types import SimpleNamespace

    options = S3Options(bucket="media", endpoint_url=endpoint, access_key_id="AKIA1", secret_access_key="s")
    backend = SimpleNamespace(context=StorageContext(endpoints=policy))
    return SimpleNamespace(url="s3://media/v.mp4", storage=SimpleNamespace(options=options, storage=backend,
                                                                            title="media"))


def test_ffmpeg_never_resolves_an_admin_chosen_host_itself() -> None:
    from corral import errors
    from corral.registration.probe_av import _ffmpeg_may_fetch

    # The cloud's own host: not the admin's choice.
    assert _ffmpeg_may_fetch(_probe_source(None, STRICT), "https://media.s3.amazonaws.com/v.mp4?X-Amz=1")
    # A custom endpoint by name: FFmpeg would resolve it outside the policy, so corral reads instead.
    assert not _ffmpeg_may_fetch(_probe_source("https://minio.example.com", STRICT),
                                 "https://minio.example.com/media/v.mp4?X-Amz=1")
    # By address: checked here, and FFmpeg connects to exactly that address.
    allowed = EndpointPolicy.parse("127.0.0.1:9000")
    assert _ffmpeg_may_fetch(_probe_source("http://127.0.0.1:9000", allowed), "http://127.0.0.1:9000/media/v.mp4")
    with pytest.raises(errors.PermissionDenied, match="CORRAL_ALLOWED_ENDPOINTS"):
        _ffmpeg_may_fetch(_probe_source("http://127.0.0.1:9000", STRICT), "http://127.0.0.1:9000/media/v.mp4")


def test_ffmpeg_that_would_follow_redirects_never_fetches_from_a_custom_endpoint(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """FFmpeg ignores options it does not know: one that cannot be told not to follow redirects
    (``max_redirects``) would follow a custom endpoint's redirect anywhere, so corral reads instead."""
    from corral.registration import probe_av

    assert probe_av._ffmpeg_refuses_redirects()  # the FFmpeg the tests run with honours the option
    monkeypatch.setattr(probe_av, "_ffmpeg_refuses_redirects", lambda: False)
    allowed = EndpointPolicy.parse("127.0.0.1:9000")
    assert not probe_av._ffmpeg_may_fetch(_probe_source("http://127.0.0.1:9000", allowed),
                                          "http://127.0.0.1:9000/media/v.mp4")
    assert probe_av._ffmpeg_may_fetch(_probe_source(None, STRICT), "https://media.s3.amazonaws.com/v.mp4")


def test_the_redirect_self_test_notices_an_ffmpeg_that_follows(monkeypatch: pytest.MonkeyPatch) -> None:
    """The one-time question to FFmpeg: an FFmpeg that ignores ``max_redirects`` (here: the option
    is taken away before it gets there) follows the listener's redirect, and is found out."""
    import av

    from corral.registration import probe_av

    assert probe_av._ffmpeg_refuses_redirects.__wrapped__()  # type: ignore[attr-defined]
    real = av.open

    def without_option(url: str, **kwargs):  # type: ignore[no-untyped-def]
        kwargs["options"] = {k: v for k, v in kwargs["options"].items() if k != "max_redirects"}
        return real(url, **kwargs)

    monkeypatch.setattr(av, "open", without_option)
    assert not probe_av._ffmpeg_refuses_redirects.__wrapped__()  # type: ignore[attr-defined]
