"""Network-edge fakes and checks for the GCS tests.

* ``FakeHttp`` — a threading HTTP server on loopback that answers with a handler and records
  every request (method, path, query, headers, body).
* ``token_server`` handler — Google's OAuth token endpoint for service-account keys: it checks the
  JWT assertion's RS256 signature against the registered public key and answers
  ``400 invalid_grant`` otherwise (as oauth2.googleapis.com does); it also serves ``refresh_token``
  grants for ``authorized_user`` (gcloud user) credentials.
* ``verify_v4_url`` — rebuilds the V4 canonical request and string-to-sign from a signed URL
  (https://cloud.google.com/storage/docs/authentication/signatures) and checks the RSA
  PKCS#1 v1.5 SHA-256 signature with the service account's public key.
"""

from __future__ import annotations

import base64
import hashlib
import json
import secrets
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, parse_qsl, quote, unquote, urlsplit

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa


@dataclass
class Recorded:
    method: str
    path: str
    query: dict[str, list[str]]
    headers: dict[str, str]
    body: bytes


Reply = tuple[int, dict[str, str], bytes]
GOOGLE_TOKEN_AUDIENCE = "https://oauth2.googleapis.com/token"
Handler = Callable[[Recorded], Reply]


def json_reply(status: int, payload: Any, headers: dict[str, str] | None = None) -> Reply:
    return status, {"Content-Type": "application/json", **(headers or {})}, json.dumps(payload).encode()


class FakeHttp:
    """A loopback HTTP server answering every request with ``handler(request)``."""

    def __init__(self, handler: Handler) -> None:
        self.handler = handler
        self.requests: list[Recorded] = []
        fake = self

        class _H(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def _serve(self) -> None:
                parts = urlsplit(self.path)
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else b""
                rec = Recorded(self.command, unquote(parts.path), parse_qs(parts.query, keep_blank_values=True),
                               {k.lower(): v for k, v in self.headers.items()}, body)
                fake.requests.append(rec)
                status, headers, payload = fake.handler(rec)
                self.send_response(status)
                for k, v in headers.items():
                    self.send_header(k, v)
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                if self.command != "HEAD":
                    self.wfile.write(payload)

            do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = do_HEAD = _serve

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), _H)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self._thread = threading.Thread(target=self.server.serve_forever, args=(0.05,), daemon=True)
        self._thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


# -- service-account keys and the OAuth token endpoint ------------------------------------


def new_rsa_key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


def pem(key: rsa.RSAPrivateKey) -> str:
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption()).decode()


def service_account_info(key: rsa.RSAPrivateKey, email: str, token_uri: str,
                         project: str = "corral-test") -> dict[str, str]:
    return {
        "type": "service_account", "project_id": project, "private_key_id": secrets.token_hex(8),
        "private_key": pem(key), "client_email": email, "client_id": "1234567890",
        "token_uri": token_uri, "auth_uri": "https://accounts.google.com/o/oauth2/auth",
    }


def _b64url(segment: str) -> bytes:
    return base64.urlsafe_b64decode(segment + "=" * (-len(segment) % 4))


@dataclass
class TokenAuthority:
    """The state behind the fake token endpoint: who may get tokens, and what was issued."""

    public_keys: dict[str, rsa.RSAPublicKey] = field(default_factory=dict)
    refresh_tokens: set[str] = field(default_factory=set)
    issued: list[str] = field(default_factory=list)
    refused: list[str] = field(default_factory=list)
    token_uri: str = ""

    def _issue(self) -> Reply:
        token = "ya29.fake-" + secrets.token_urlsafe(24)
        self.issued.append(token)
        return json_reply(200, {"access_token": token, "expires_in": 3600, "token_type": "Bearer"})

    def _refuse(self, why: str) -> Reply:
        self.refused.append(why)
        return json_reply(400, {"error": "invalid_grant", "error_description": why})

    def handle(self, req: Recorded) -> Reply:
        if req.method != "POST":
            return json_reply(405, {"error": "method_not_allowed"})
        form = dict(parse_qsl(req.body.decode()))
        if form.get("grant_type") == "refresh_token":
            ok = form.get("refresh_token") in self.refresh_tokens
            return self._issue() if ok else self._refuse("Token has been expired or revoked.")
        if form.get("grant_type") != "urn:ietf:params:oauth:grant-type:jwt-bearer":
            return json_reply(400, {"error": "unsupported_grant_type"})
        return self._check_jwt(form.get("assertion", ""))

    def _check_jwt(self, assertion: str) -> Reply:
        try:
            head, body, sig = assertion.split(".")
            header, claims = json.loads(_b64url(head)), json.loads(_b64url(body))
        except ValueError:
            return self._refuse("malformed assertion")
        key = self.public_keys.get(claims.get("iss", ""))
        if header.get("alg") != "RS256" or key is None:
            return self._refuse("Invalid grant: account not found")
        try:
            key.verify(_b64url(sig), f"{head}.{body}".encode(), padding.PKCS1v15(), hashes.SHA256())
        except InvalidSignature:
            return self._refuse("Invalid JWT Signature.")
        # google-auth always names Google's endpoint as the audience, whatever the key's token_uri.
        if claims.get("aud") != GOOGLE_TOKEN_AUDIENCE or not claims.get("exp", 0) > time.time():
            return self._refuse("Invalid JWT: audience or expiry")
        if "devstorage" not in claims.get("scope", ""):
            return self._refuse("no storage scope requested")
        return self._issue()


# -- V4 signed URLs ----------------------------------------------------------------------


@dataclass
class SignedUrl:
    host: str
    path: str
    params: dict[str, str]


def parse_signed_url(url: str) -> SignedUrl:
    parts = urlsplit(url)
    return SignedUrl(parts.netloc, parts.path, dict(parse_qsl(parts.query, keep_blank_values=True)))


def verify_v4_url(url: str, public_key: rsa.RSAPublicKey, method: str = "GET",
                  headers: dict[str, str] | None = None) -> bool:
    """Google's documented V4 algorithm, rebuilt independently of the SDK."""
    signed = parse_signed_url(url)
    params = dict(signed.params)
    signature = bytes.fromhex(params.pop("X-Goog-Signature"))
    all_headers = {"host": signed.host, **{k.lower(): v.strip() for k, v in (headers or {}).items()}}
    signed_names = params["X-Goog-SignedHeaders"].split(";")
    canonical_headers = "".join(f"{name}:{all_headers[name]}\n" for name in signed_names)
    canonical_query = "&".join(f"{quote(k, safe='-_.~')}={quote(v, safe='-_.~')}"
                               for k, v in sorted(params.items()))
    canonical_path = quote(unquote(signed.path), safe="/-_.~")
    canonical_request = "\n".join([method, canonical_path, canonical_query, canonical_headers,
                                   params["X-Goog-SignedHeaders"], "UNSIGNED-PAYLOAD"])
    scope = params["X-Goog-Credential"].split("/", 1)[1]
    string_to_sign = "\n".join(["GOOG4-RSA-SHA256", params["X-Goog-Date"], scope,
                                hashlib.sha256(canonical_request.encode()).hexdigest()])
    try:
        public_key.verify(signature, string_to_sign.encode(), padding.PKCS1v15(), hashes.SHA256())
    except InvalidSignature:
        return False
    return True


def replace_query(url: str, name: str, value: str) -> str:
    base, _, query = url.partition("?")
    pairs = [p.split("=", 1) for p in query.split("&")]
    return base + "?" + "&".join(f"{k}={value if k == name else v}" for k, v in pairs)
