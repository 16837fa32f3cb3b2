"""An organisation's embedding endpoint, as the tests run it: all-MiniLM-L6-v2 over HTTP.

    python -m tests.embedding_server PORT JWK_X

It verifies corral's token as an endpoint should (EdDSA signature with corral's public key ``JWK_X``,
``iss``, ``aud`` = the URL it was called at, ``exp``, and the ``org`` and ``key`` claims present),
then answers ``{"vector": [...]}`` for ``{"text": ...}`` or ``{"image": <base64 PNG>}`` (the model
reads text only; an image is embedded through its PNG ``caption`` text chunk, which tests the
image's way through corral byte for byte).  Other paths misbehave on purpose: ``/slow`` (sleeps
``?s=`` seconds), ``/wrong-dim``, ``/garbage``, ``/huge``, ``/error``; ``/fixed`` answers one vector without the
model (for ``benchmarks/bench_embed_endpoint.py``).  ``GET /last`` shows the
claims of the last accepted token.
"""

from __future__ import annotations

import base64
import io
import json
import sys
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey


def _unb64(part: str) -> bytes:
    return base64.urlsafe_b64decode(part + "=" * (-len(part) % 4))


def verify(token: str, public: Ed25519PublicKey, audience: str, now: float | None = None) -> dict[str, Any]:
    """The token's claims; ``ValueError`` saying why it is refused."""
    try:
        header_b64, claims_b64, signature_b64 = token.split(".")
        header = json.loads(_unb64(header_b64))
        claims = json.loads(_unb64(claims_b64))
        signature = _unb64(signature_b64)
    except (ValueError, TypeError):
        raise ValueError("malformed token") from None
    if header.get("alg") != "EdDSA":
        raise ValueError("wrong algorithm")
    try:
        public.verify(signature, f"{header_b64}.{claims_b64}".encode())
    except InvalidSignature:
        raise ValueError("bad signature") from None
    if claims.get("iss") != "corral":
        raise ValueError("wrong issuer")
    if claims.get("aud") != audience:
        raise ValueError(f"wrong audience {claims.get('aud')!r}")
    if not isinstance(claims.get("exp"), int) or claims["exp"] < (now if now is not None else time.time()):
        raise ValueError("expired")
    if not claims.get("org") or not claims.get("key"):
        raise ValueError("no org or key")
    return dict(claims)


def main(port: int, jwk_x: str) -> None:
    from tests.minilm import model

    public = Ed25519PublicKey.from_public_bytes(_unb64(jwk_x))
    minilm = model()
    last: dict[str, Any] = {}

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args: Any) -> None:
            pass

        def _answer(self, status: int, body: bytes, kind: str = "application/json") -> None:
            self.send_response(status)
            self.send_header("Content-Type", kind)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def do_GET(self) -> None:
            self._answer(200, json.dumps(last).encode())

        def do_POST(self) -> None:
            url = urlsplit(self.path)
            raw = self.rfile.read(int(self.headers.get("Content-Length") or 0))
            auth = self.headers.get("Authorization", "")
            try:
                claims = verify(auth.removeprefix("Bearer "), public, f"http://{self.headers['Host']}{url.path}")
            except ValueError as exc:
                return self._answer(401, json.dumps({"error": str(exc)}).encode())
            last.clear()
            last.update(claims)
            if url.path == "/slow":
                time.sleep(float(parse_qs(url.query).get("s", ["5"])[0]))
            if url.path == "/error":
                return self._answer(500, b'{"error": "model crashed"}')
            if url.path == "/garbage":
                return self._answer(200, b"<html>not a vector</html>", "text/html")
            if url.path == "/fixed":  # no model: what the benchmark measures corral's own cost with
                return self._answer(200, json.dumps({"vector": [1.0] + [0.0] * 383}).encode())
            if url.path == "/huge":
                return self._answer(200, json.dumps({"vector": [0.1] * 400_000}).encode())
            doc = json.loads(raw)
            if "text" in doc:
                text = doc["text"]
            else:
                from PIL import Image

                text = Image.open(io.BytesIO(base64.b64decode(doc["image"]))).info["caption"]
            vector = [float(x) for x in minilm.embed(text)]
            if url.path == "/wrong-dim":
                vector = vector[:10]
            self._answer(200, json.dumps({"vector": vector}).encode())

    server = ThreadingHTTPServer(("127.0.0.1", port), Handler)
    print("ready", flush=True)
    server.serve_forever()


if __name__ == "__main__":
    main(int(sys.argv[1]), sys.argv[2])
