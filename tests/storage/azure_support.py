"""Test doubles for the Azure backend's token-based auth: a TLS certificate for loopback, a fake
Microsoft Entra ID token endpoint, and an Azurite that accepts OAuth bearer tokens over https.

Azurite's ``--oauth basic`` checks a bearer token's issuer, audience and lifetime but not its
signature, and it verifies user delegation SAS signatures, so a service principal can be tested
end to end: client secret → token from the fake authority → Azurite → user delegation key →
signed URL fetched with plain httpx.
"""

from __future__ import annotations

import base64
import datetime as dt
import ipaddress
import json
import ssl
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from tests.services import AZURITE, AZURITE_ACCOUNT, Service, free_port

TENANT = "72f988bf-86f1-41af-91ab-2d7cd011db47"
CLIENT_ID = "0b4c6a2e-5f0d-4a57-9f43-1a2b3c4d5e6f"
CLIENT_SECRET = "fake-client-secret-Qx7~s3cr3t"


def make_cert(directory: Path) -> tuple[Path, Path]:
    """A self-signed certificate for 127.0.0.1 (also usable as its own CA bundle)."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5)).not_valid_after(now + dt.timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
                       critical=False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = directory / "cert.pem", directory / "key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    return cert_path, key_path


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def fake_jwt(tenant: str, object_id: str) -> str:
    """An (unsigned) access token with the claims Azurite's basic OAuth check looks at."""
    now = int(time.time())
    claims = {"aud": "https://storage.azure.com", "iss": f"https://sts.windows.net/{tenant}/",
              "oid": object_id, "tid": tenant, "sub": object_id, "nbf": now - 60, "iat": now - 60,
              "exp": now + 3600, "ver": "1.0"}
    return ".".join([_b64(json.dumps({"alg": "RS256", "typ": "JWT"}).encode()),
                     _b64(json.dumps(claims).encode()), _b64(b"not-a-real-signature")])


@dataclass
class FakeAuthority:
    """Serves OIDC discovery and the client-credentials token endpoint for one tenant."""

    url: str
    token_requests: list[dict[str, str]] = field(default_factory=list)


def _handler(authority: FakeAuthority) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args: Any) -> None:
            pass

        def _json(self, status: int, body: dict[str, Any]) -> None:
            data = json.dumps(body).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def do_GET(self) -> None:  # noqa: N802
            tenant = self.path.strip("/").split("/")[0]
            if self.path.endswith("/.well-known/openid-configuration") and tenant == TENANT:
                base = f"{authority.url}/{tenant}"
                self._json(200, {"issuer": f"{base}/v2.0", "token_endpoint": f"{base}/oauth2/v2.0/token",
                                 "authorization_endpoint": f"{base}/oauth2/v2.0/authorize"})
            else:
                self._json(400, {"error": "invalid_tenant", "error_description": f"AADSTS90002: Tenant "
                                 f"'{tenant}' not found."})

        def do_POST(self) -> None:  # noqa: N802
            length = int(self.headers.get("Content-Length", "0"))
            form = {k: v[0] for k, v in parse_qs(self.rfile.read(length).decode()).items()}
            authority.token_requests.append(form)
            if form.get("client_id") != CLIENT_ID or form.get("client_secret") != CLIENT_SECRET:
                self._json(401, {"error": "invalid_client", "error_codes": [7000215],
                                 "error_description": "AADSTS7000215: Invalid client secret provided."})
                return
            self._json(200, {"token_type": "Bearer", "expires_in": 3600, "ext_expires_in": 3600,
                             "access_token": fake_jwt(TENANT, str(uuid.uuid5(uuid.NAMESPACE_URL, CLIENT_ID)))})

    return Handler


def serve_authority(cert: Path, key: Path) -> Iterator[FakeAuthority]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), BaseHTTPRequestHandler)
    authority = FakeAuthority(f"https://127.0.0.1:{server.server_address[1]}")
    server.RequestHandlerClass = _handler(authority)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert, key)
    server.socket = context.wrap_socket(server.socket, server_side=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield authority
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)


def start_oauth_azurite(work: Path, cert: Path, key: Path) -> tuple[Service, str]:
    """A second Azurite, https with ``--oauth basic`` (stopped by PID through ``Service.stop``)."""
    port = free_port()
    svc = Service("azurite-oauth", [str(AZURITE), "--blobHost", "127.0.0.1", "--blobPort", str(port),
                                    "--location", str(work), "--skipApiVersionCheck", "--loose",
                                    "--disableTelemetry", "--oauth", "basic", "--cert", str(cert),
                                    "--key", str(key)], work / "azurite.log")
    context = ssl.create_default_context(cafile=str(cert))

    def ready() -> bool:
        import httpx

        return httpx.get(f"https://127.0.0.1:{port}", verify=context, timeout=2).status_code < 500

    svc.wait_ready(ready)
    return svc, f"https://127.0.0.1:{port}/{AZURITE_ACCOUNT}"
