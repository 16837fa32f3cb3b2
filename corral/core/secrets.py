"""Keys derived from the server secret, and encryption of integration credentials at rest.

One server secret (``CORRAL_SECRET_KEY``) is stretched with HKDF into independent keys, one per
purpose, so a local-media link signature can never be used to attack the credential store.
Credentials are encrypted with Fernet (AES-128-CBC + HMAC-SHA256, with a timestamp).
"""

from __future__ import annotations

import base64
import json
from typing import cast

from cryptography.fernet import Fernet, InvalidToken
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from corral.errors import ConfigurationError


def derive_key(server_secret: bytes, purpose: str, length: int = 32) -> bytes:
    return HKDF(algorithm=hashes.SHA256(), length=length, salt=b"corral", info=purpose.encode()).derive(
        server_secret
    )


def _fernet(server_secret: bytes) -> Fernet:
    return Fernet(base64.urlsafe_b64encode(derive_key(server_secret, "integration-credentials v1")))


def encrypt_secrets(server_secret: bytes, secrets: dict[str, str]) -> bytes | None:
    if not secrets:
        return None
    return _fernet(server_secret).encrypt(json.dumps(secrets, sort_keys=True).encode())


def decrypt_secrets(server_secret: bytes, blob: bytes | None) -> dict[str, str]:
    if not blob:
        return {}
    try:
        return cast(dict[str, str], json.loads(_fernet(server_secret).decrypt(blob)))
    except InvalidToken:
        raise ConfigurationError(
            "stored integration credentials cannot be decrypted: CORRAL_SECRET_KEY differs from the "
            "key they were saved with (every server and worker must share one key)"
        ) from None


def local_media_key(server_secret: bytes) -> bytes:
    return derive_key(server_secret, "local-media-links v1")
