"""Verify (and, for corral's own client, create) the request signatures the Encord SDK uses.

v2 (``/v2/public/...`` and corral's native API): HTTP message signatures over
``@method``, ``@request-target`` and ``content-digest``, Ed25519, key id = hex of the raw
public key.  v1 (``/public``, ``/public/user``): ``Authorization: <keyid>:<hex sig>`` where
the signature covers SHA-256 of the raw body.  Both are described in
``docs/architecture.md`` ("Authentication").

Nothing here touches the database: the caller passes ``lookup(key_id)`` which returns the
public key or ``None``.  Every rejection raises ``AuthenticationFailed`` with a message
saying exactly what was wrong, which the API turns into a 401.

Identical requests legitimately carry identical signatures (Ed25519 is deterministic and
the SDK re-polls without pause), so there is deliberately no replay cache; freshness is
bounded by the ``created`` window instead.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import re
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from corral.errors import AuthenticationFailed

LABEL = "encord-sig"
COMPONENTS = ("@method", "@request-target", "content-digest")
KeyLookup = Callable[[str], Ed25519PublicKey | None]

_INPUT = re.compile(r"^(?P<label>[A-Za-z0-9_.*-]+)=(?P<params>\((?P<components>[^)]*)\)(?P<rest>.*))$")
_PARAM = re.compile(r';\s*([a-z]+)=("(?:[^"\\]|\\.)*"|[^;]*)')
_HEX64 = re.compile(r"^[0-9a-f]{64}$")


def content_digest(body: bytes) -> str:
    return "sha-256=:" + base64.b64encode(hashlib.sha256(body).digest()).decode("ascii") + ":"


def signature_base(method: str, target: str, digest: str, sig_params: str) -> bytes:
    lines = [
        f'"@method": {method.upper()}',
        f'"@request-target": {target}',
        f'"content-digest": {digest}',
        f'"@signature-params": {sig_params}',
    ]
    return "\n".join(lines).encode("utf-8")


def _header(headers: Mapping[str, str], name: str) -> str:
    value = headers.get(name)
    if value is None or not value.strip():
        raise AuthenticationFailed(f"Missing {name} header on a signed request")
    return value.strip()


def _parse_input(value: str) -> tuple[str, dict[str, str]]:
    m = _INPUT.match(value)
    if m is None or m.group("label") != LABEL:
        raise AuthenticationFailed(
            "Signature-Input header is malformed: expected "
            f'{LABEL}=("@method" …);created=…;keyid="…";alg="ed25519"'
        )
    components = tuple(c.strip('"') for c in m.group("components").split())
    if components != COMPONENTS:
        raise AuthenticationFailed(
            "Signature-Input must cover exactly "
            + " ".join(f'"{c}"' for c in COMPONENTS)
            + f", got {m.group('components')!r}"
        )
    params = {k: v.strip('"') for k, v in _PARAM.findall(m.group("rest"))}
    return m.group("params"), params


def _decode_signature(value: str) -> bytes:
    prefix = f"{LABEL}=:"
    if not (value.startswith(prefix) and value.endswith(":")):
        raise AuthenticationFailed(f"Signature header is malformed: expected {LABEL}=:<base64>:")
    try:
        return base64.b64decode(value[len(prefix) : -1], validate=True)
    except (binascii.Error, ValueError):
        raise AuthenticationFailed("Signature header is not valid base64") from None


@dataclass(frozen=True)
class SignedHead:
    """A v2 request whose signature verifies over its headers; its body is still to be checked."""

    key_id: str
    digest: str  # the Content-Digest header, which the signature covers


def verify_message_headers(
    *,
    method: str,
    target: str,
    headers: Mapping[str, str],
    lookup: KeyLookup,
    max_age: int,
    max_skew: int,
    now: float | None = None,
) -> SignedHead:
    """Verify everything of a v2 request that is in its head, without reading its body.

    The signature covers the ``Content-Digest`` header, so once it verifies the body only has to
    match that digest (:func:`check_content_digest`), which can be computed while it streams in.
    """
    digest = _header(headers, "Content-Digest")
    sig_input = _header(headers, "Signature-Input")
    sig_value = _header(headers, "Signature")
    sig_params, params = _parse_input(sig_input)
    if params.get("alg") != "ed25519":
        raise AuthenticationFailed(f"Unsupported signature algorithm {params.get('alg')!r}; use ed25519")
    key_id = params.get("keyid", "")
    if not _HEX64.match(key_id):
        raise AuthenticationFailed("Signature-Input keyid must be the 64-hex-digit Ed25519 public key")
    try:
        created = int(params["created"])
    except (KeyError, ValueError):
        raise AuthenticationFailed("Signature-Input has no valid created timestamp") from None
    now = time.time() if now is None else now
    # In whole seconds, as ints: a created of hundreds of digits overflowed a float.
    if created < now - max_age:
        raise AuthenticationFailed(
            f"Signature is too old: created {int(now) - created} s ago, the limit is {max_age} s "
            "(check the client's clock)"
        )
    if created > now + max_skew:
        raise AuthenticationFailed(
            f"Signature is from the future: created {created - int(now)} s ahead, the limit is "
            f"{max_skew} s (check the client's clock)"
        )
    signature = _decode_signature(sig_value)
    public_key = lookup(key_id)
    if public_key is None:
        raise AuthenticationFailed(f"Unknown key id {key_id}: register the public key first")
    try:
        public_key.verify(signature, signature_base(method, target, digest, sig_params))
    except InvalidSignature:
        raise AuthenticationFailed("Signature does not verify for this request") from None
    return SignedHead(key_id, digest)


def check_content_digest(digest: str, body_sha256: bytes) -> None:
    """The body whose SHA-256 is ``body_sha256`` must be the one ``Content-Digest`` names."""
    expected = "sha-256=:" + base64.b64encode(body_sha256).decode("ascii") + ":"
    if not hmac.compare_digest(digest.strip(), expected):
        raise AuthenticationFailed("Content-Digest does not match the request body")


def verify_message_signature(
    *,
    method: str,
    target: str,
    body: bytes,
    headers: Mapping[str, str],
    lookup: KeyLookup,
    max_age: int,
    max_skew: int,
    now: float | None = None,
) -> str:
    """Verify a whole v2 request (head and body); return its key id.  ``headers`` must be
    case-insensitive."""
    check_content_digest(_header(headers, "Content-Digest"), hashlib.sha256(body).digest())
    head = verify_message_headers(method=method, target=target, headers=headers, lookup=lookup,
                                  max_age=max_age, max_skew=max_skew, now=now)
    return head.key_id


def parse_rpc_authorization(authorization: str) -> tuple[str, bytes]:
    """(key id, signature) of a v1 ``Authorization: <keyid>:<hex signature>`` header."""
    key_id, sep, sig_hex = authorization.strip().partition(":")
    if not sep or not _HEX64.match(key_id):
        raise AuthenticationFailed(
            "Authorization header is malformed: expected "
            "'<public key hex>:<signature hex>' or 'Bearer <token>'"
        )
    try:
        signature = bytes.fromhex(sig_hex)
    except ValueError:
        raise AuthenticationFailed("Authorization signature is not hex") from None
    return key_id, signature


def verify_rpc_digest(public_key: Ed25519PublicKey, signature: bytes, body_sha256: bytes) -> None:
    """A v1 signature covers SHA-256 of the body, so the body can be hashed as it streams in."""
    try:
        public_key.verify(signature, body_sha256)
    except InvalidSignature:
        raise AuthenticationFailed("Signature does not verify for this request") from None


def verify_rpc_signature(*, body: bytes, authorization: str, lookup: KeyLookup) -> str:
    """Verify a v1 ``Authorization: <keyid>:<hex signature of sha256(body)>`` header."""
    key_id, signature = parse_rpc_authorization(authorization)
    public_key = lookup(key_id)
    if public_key is None:
        raise AuthenticationFailed(f"Unknown key id {key_id}: register the public key first")
    verify_rpc_digest(public_key, signature, hashlib.sha256(body).digest())
    return key_id


# -- signing (corral's own client) ------------------------------------------


def key_id_of(private_key: Ed25519PrivateKey) -> str:
    from cryptography.hazmat.primitives import serialization

    raw = private_key.public_key().public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return raw.hex()


def sign_request_headers(
    private_key: Ed25519PrivateKey, method: str, target: str, body: bytes, now: float | None = None
) -> dict[str, str]:
    """Headers for a v2-signed request, byte-compatible with the Encord SDK's signer."""
    digest = content_digest(body)
    created = int(time.time() if now is None else now)
    sig_params = (
        "("
        + " ".join(f'"{c}"' for c in COMPONENTS)
        + ")"
        + f';created={created};keyid="{key_id_of(private_key)}";alg="ed25519"'
    )
    signature = private_key.sign(signature_base(method, target, digest, sig_params))
    return {
        "Content-Digest": digest,
        "Signature-Input": f"{LABEL}={sig_params}",
        "Signature": f"{LABEL}=:" + base64.b64encode(signature).decode("ascii") + ":",
    }
