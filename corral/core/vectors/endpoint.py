"""Calling an embedding key's endpoint: a text or an image in, the key's vector out.

corral posts ``{"text": ...}`` or ``{"image": "<base64>"}`` to the key's endpoint with
``Authorization: Bearer <token>``, a JWT that corral signs (EdDSA, Ed25519, a key derived from
``CORRAL_SECRET_KEY``) for that endpoint alone (``aud``), one organisation and key, valid for
``TOKEN_SECONDS``.  The endpoint verifies it with corral's public key
(``GET /api/v1/index/embedding-signing-key``) and answers ``{"vector": [...]}``.

The connection goes through the operator's endpoint policy (``CORRAL_ALLOWED_ENDPOINTS``),
checked at connect time like every store's; the answer is read up to ``MAX_RESPONSE`` bytes
within the key's timeout, start to finish.  Neither the token nor the text is logged.
See docs/vectors.md#search-by-text-or-image.
"""

from __future__ import annotations

import base64
import hashlib
import json
import logging
import math
import time
import uuid
from dataclasses import dataclass
from typing import Any

import numpy as np
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from corral import errors
from corral.core.metadata.embedding_api import EmbeddingApi
from corral.core.secrets import derive_key
from corral.core.vectors.store import VectorKey, Vectors
from corral.errors import ErrorDetail
from corral.storage.netpolicy import EndpointPolicy, EndpointRefused, guarded_httpcore_backend

log = logging.getLogger("corral.vectors.endpoint")

TOKEN_SECONDS = 60
MAX_TEXT = 10_000  # characters
MAX_IMAGE = 8 * 1024 * 1024  # bytes, decoded
MAX_RESPONSE = 1024 * 1024  # bytes: 4,096 numbers as JSON take about 100 KB
ISSUER = "corral"


def _b64url(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


class Signer:
    """Signs endpoint tokens with the server's Ed25519 key (derived from ``CORRAL_SECRET_KEY``)."""

    def __init__(self, server_secret: bytes) -> None:
        seed = derive_key(server_secret, "embedding-endpoint-token v1")
        self._key = Ed25519PrivateKey.from_private_bytes(seed)
        self.public = self._key.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)
        self.kid = hashlib.sha256(self.public).hexdigest()[:16]

    def jwk(self) -> dict[str, str]:
        """The public key, as a JSON Web Key (RFC 8037)."""
        return {"kty": "OKP", "crv": "Ed25519", "x": _b64url(self.public), "kid": self.kid,
                "alg": "EdDSA", "use": "sig"}

    def token(self, audience: str, org_id: uuid.UUID, key: str, user_id: uuid.UUID | None,
              now: float | None = None, lifetime: int = TOKEN_SECONDS) -> str:
        issued = int(now if now is not None else time.time())
        header = {"alg": "EdDSA", "typ": "JWT", "kid": self.kid}
        claims = {"iss": ISSUER, "aud": audience, "org": str(org_id), "key": key,
                  "sub": str(user_id) if user_id else None, "iat": issued, "exp": issued + lifetime,
                  "jti": uuid.uuid4().hex}
        signing_input = ".".join(_b64url(json.dumps(part, separators=(",", ":")).encode())
                                 for part in (header, claims))
        return signing_input + "." + _b64url(self._key.sign(signing_input.encode()))


@dataclass(frozen=True)
class Input:
    text: str | None = None
    image: bytes | None = None

    @property
    def kind(self) -> str:
        return "text" if self.text is not None else "image"


def _bad(field: str, message: str) -> errors.ValidationFailed:
    return errors.ValidationFailed(message, details=[ErrorDetail(message, field=field)])


def check_input(key: VectorKey, api: EmbeddingApi | None, given: Input) -> None:
    """400s naming ``text`` or ``image``: no endpoint, an input it does not take, too long or empty."""
    field = given.kind
    if api is None:
        raise _bad(field, f"{key.name!r} has no embedding endpoint: an organisation admin sets one in the "
                   "metadata schema (the key's api.url)")
    if field not in api.accepts():
        raise _bad(field, f"the endpoint of {key.name!r} takes {' and '.join(api.accepts())} only")
    if given.text is not None and not 1 <= len(given.text) <= MAX_TEXT:
        raise _bad("text", f"text is 1 to {MAX_TEXT:,} characters, got {len(given.text):,}")
    if given.image is not None and not 1 <= len(given.image) <= MAX_IMAGE:
        raise _bad("image", f"an image is 1 byte to {MAX_IMAGE // (1024 * 1024)} MiB, "
                   f"got {len(given.image):,} bytes")


def _failed(key: VectorKey, why: str) -> errors.EmbeddingEndpointError:
    return errors.EmbeddingEndpointError(f"the embedding endpoint of {key.name!r} {why}")


def _vector(key: VectorKey, body: bytes) -> Vectors:
    try:
        doc = json.loads(body)
    except ValueError:
        raise _failed(key, 'answered something that is not JSON (expected {"vector": [numbers]})') from None
    vector = doc.get("vector") if isinstance(doc, dict) else None
    if not isinstance(vector, list) or not all(
        isinstance(x, (int, float)) and not isinstance(x, bool) for x in vector
    ):
        raise _failed(key, 'answered JSON without a list of numbers under "vector"')
    if len(vector) != key.dim:
        raise _failed(key, f"answered {len(vector)} numbers where {key.name!r} has {key.dim}")
    if not all(math.isfinite(x) and abs(x) <= 3.4e38 for x in vector):
        raise _failed(key, "answered NaN, infinity or a number beyond a 32-bit float")
    return np.asarray(vector, dtype=np.float32)


def _read(response: Any, key: VectorKey, deadline: float) -> bytes:
    chunks: list[bytes] = []
    size = 0
    for chunk in response.iter_stream():
        size += len(chunk)
        if size > MAX_RESPONSE:
            raise _failed(key, f"answered more than {MAX_RESPONSE // 1024} KiB")
        if time.monotonic() > deadline:
            raise errors.EmbeddingEndpointTimeout(f"the embedding endpoint of {key.name!r} did not answer "
                                                  "within its timeout")
        chunks.append(chunk)
    return b"".join(chunks)


def embed(key: VectorKey, api: EmbeddingApi | None, given: Input, *, policy: EndpointPolicy, signer: Signer,
          user_id: uuid.UUID | None) -> Vectors:
    """The vector the key's endpoint gives for ``given`` (checked with :func:`check_input` first)."""
    import httpcore

    check_input(key, api, given)
    assert api is not None
    url = api.target
    body = {"text": given.text} if given.text is not None else {
        "image": base64.b64encode(given.image or b"").decode()}
    headers = [
        (b"Authorization", f"Bearer {signer.token(url, key.org_id, key.name, user_id)}".encode()),
        (b"Content-Type", b"application/json"), (b"Accept", b"application/json"),
        (b"User-Agent", b"corral-embedding-client"),
    ]
    timeouts = {"connect": api.timeout, "read": api.timeout, "write": api.timeout, "pool": api.timeout}
    started = time.monotonic()
    deadline = started + api.timeout
    status = 0
    try:
        with httpcore.ConnectionPool(network_backend=guarded_httpcore_backend(policy), retries=0) as pool:
            with pool.stream("POST", url, headers=headers, content=json.dumps(body).encode(),
                             extensions={"timeout": timeouts}) as response:
                status = response.status
                if not 200 <= status < 300:
                    raise _failed(key, f"answered HTTP {status}")
                raw = _read(response, key, deadline)
    except EndpointRefused as exc:
        raise errors.PermissionDenied(f"the embedding endpoint of {key.name!r}: {exc}") from None
    except httpcore.TimeoutException:
        raise errors.EmbeddingEndpointTimeout(
            f"the embedding endpoint of {key.name!r} did not answer within {api.timeout:g} s") from None
    except (httpcore.NetworkError, httpcore.ProtocolError, httpcore.UnsupportedProtocol,
            ConnectionError, OSError) as exc:
        raise _failed(key, f"could not be reached ({type(exc).__name__})") from None
    finally:
        log.info("embedding endpoint called", extra={
            "key": key.name, "org_id": str(key.org_id), "input": given.kind, "status": status,
            "ms": round((time.monotonic() - started) * 1000)})
    return _vector(key, raw)
