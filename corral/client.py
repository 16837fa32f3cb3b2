"""corral's Python client for the native REST API (used by the CLI's user commands).

    from corral.client import Client
    c = Client("http://127.0.0.1:8080", token="corral_…")
    c.me()

Authenticates with a bearer token or by signing each request with an Ed25519 SSH
private key (the same scheme as the Encord SDK).  Errors come back as ``ApiError`` with
the server's message.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote

import httpx
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from corral.auth.signatures import sign_request_headers


class ApiError(Exception):
    def __init__(self, status: int, code: str, message: str, errors: list[dict[str, Any]] | None = None):
        super().__init__(message)
        self.status, self.code, self.message, self.errors = status, code, message, errors or []


def load_private_key(path: str | Path, password: str | None = None) -> Ed25519PrivateKey:
    data = Path(path).expanduser().read_bytes()
    try:
        key = serialization.load_ssh_private_key(data, password.encode() if password else None)
    except ValueError as exc:
        raise ValueError(f"{path}: not an OpenSSH private key ({exc})") from None
    if not isinstance(key, Ed25519PrivateKey):
        raise ValueError(f"{path}: only Ed25519 keys are supported")
    return key


class _SignAuth(httpx.Auth):
    requires_request_body = True

    def __init__(self, key: Ed25519PrivateKey) -> None:
        self.key = key

    def auth_flow(self, request: httpx.Request):  # type: ignore[no-untyped-def]
        target = request.url.raw_path.decode("ascii")
        request.headers.update(sign_request_headers(self.key, request.method, target, request.content))
        yield request


@dataclass
class Profile:
    url: str
    token: str | None = None
    ssh_key: str | None = None


def config_path() -> Path:
    base = os.environ.get("CORRAL_CONFIG_DIR") or os.path.join(
        os.environ.get("XDG_CONFIG_HOME") or os.path.expanduser("~/.config"), "corral"
    )
    return Path(base) / "profiles.json"


def load_profiles() -> dict[str, Any]:
    path = config_path()
    if not path.exists():
        return {"current": None, "profiles": {}}
    data: dict[str, Any] = json.loads(path.read_text())
    return data


def save_profile(name: str, profile: Profile) -> Path:
    data = load_profiles()
    data["profiles"][name] = {k: v for k, v in vars(profile).items() if v is not None}
    data["current"] = name
    path = config_path()
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.touch(mode=0o600)
    tmp.write_text(json.dumps(data, indent=2))
    tmp.replace(path)
    return path


def resolve_profile(
    url: str | None = None, token: str | None = None, ssh_key: str | None = None, profile: str | None = None
) -> Profile:
    """Explicit values, then CORRAL_URL/CORRAL_TOKEN/CORRAL_SSH_KEY, then the saved profile
    (``profile``, else CORRAL_PROFILE, else the last login).  Naming a profile skips the
    environment variables."""
    if profile is None:  # an explicitly named profile wins over the environment
        url = url or os.environ.get("CORRAL_URL")
        token = token or os.environ.get("CORRAL_TOKEN")
        ssh_key = ssh_key or os.environ.get("CORRAL_SSH_KEY")
    if not (url and (token or ssh_key)):
        data = load_profiles()
        name = profile or os.environ.get("CORRAL_PROFILE") or data.get("current")
        saved = data["profiles"].get(name or "", {})
        url = url or saved.get("url")
        if profile is not None and not saved:
            raise ApiError(0, "not_configured", f"no saved profile named {profile!r}: run `corral login`")
        if not (token or ssh_key):
            token, ssh_key = saved.get("token"), saved.get("ssh_key")
    if not url:
        raise ApiError(0, "not_configured", "no server configured: run `corral login` or set CORRAL_URL")
    if not (token or ssh_key):
        raise ApiError(
            0, "not_configured", "no credentials: run `corral login`, or set CORRAL_TOKEN or CORRAL_SSH_KEY"
        )
    return Profile(url=url.rstrip("/"), token=token, ssh_key=ssh_key)


class Client:
    def __init__(
        self,
        url: str,
        *,
        token: str | None = None,
        ssh_key: str | Path | None = None,
        timeout: float = 120.0,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        auth: httpx.Auth | None = None
        headers = {"User-Agent": "corral-client"}
        if token:
            headers["Authorization"] = f"Bearer {token}"
        elif ssh_key:
            auth = _SignAuth(load_private_key(ssh_key))
        self._http = httpx.Client(
            base_url=url.rstrip("/"), headers=headers, auth=auth, timeout=timeout, transport=transport
        )

    @classmethod
    def from_profile(cls, profile: Profile) -> Client:
        return cls(profile.url, token=profile.token, ssh_key=profile.ssh_key)

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def request(self, method: str, path: str, **kwargs: Any) -> Any:
        try:
            resp = self._http.request(method, path, **kwargs)
        except httpx.TransportError as exc:
            raise ApiError(0, "unreachable", f"cannot reach {self._http.base_url}: {exc}") from None
        if resp.status_code >= 400:
            try:
                body = resp.json()
            except ValueError:
                body = {}
            raise ApiError(
                resp.status_code,
                body.get("code", "http_error"),
                body.get("message") or resp.text[:500] or resp.reason_phrase,
                body.get("errors"),
            )
        return resp.json() if resp.content else None

    # -- API methods ---------------------------------------------------------
    def health(self) -> Any:
        return self.request("GET", "/healthz")

    def me(self) -> Any:
        return self.request("GET", "/api/v1/me")

    def list_jobs(self, limit: int = 100) -> Any:
        return self.request("GET", "/api/v1/jobs", params={"limit": limit})

    def get_job(self, job_id: str, wait: float = 0) -> Any:
        return self.request("GET", f"/api/v1/jobs/{job_id}", params={"wait": wait})

    def cancel_job(self, job_id: str) -> Any:
        return self.request("POST", f"/api/v1/jobs/{job_id}/cancel")

    # integrations
    def _integration(self, ref: str) -> str:
        return f"/api/v1/integrations/{quote(ref, safe='')}"

    def list_integrations(self) -> Any:
        return self.request("GET", "/api/v1/integrations")

    def create_integration(self, body: dict[str, Any]) -> Any:
        return self.request("POST", "/api/v1/integrations", json=body)

    def get_integration(self, ref: str) -> Any:
        return self.request("GET", self._integration(ref))

    def update_integration(self, ref: str, body: dict[str, Any]) -> Any:
        return self.request("PATCH", self._integration(ref), json=body)

    def delete_integration(self, ref: str) -> Any:
        return self.request("DELETE", self._integration(ref))

    def check_integration(self, ref: str, origin: str | None = None) -> Any:
        params = {"origin": origin} if origin else None
        return self.request("POST", self._integration(ref) + "/check", params=params)

    def integration_cors(self, ref: str, origin: str | None = None, apply: bool = False) -> Any:
        params = {"origin": origin} if origin else None
        return self.request("POST" if apply else "GET", self._integration(ref) + "/cors", params=params)

    def sign_urls(self, ref: str, urls: list[str], ttl_seconds: int | None = None) -> Any:
        return self.request(
            "POST", self._integration(ref) + "/sign", json={"urls": urls, "ttl_seconds": ttl_seconds}
        )

    # metadata schema
    def get_schema(self, version: int | None = None, fmt: str = "native") -> Any:
        path = "/api/v1/metadata-schema" + (f"/versions/{version}" if version is not None else "")
        return self.request("GET", path, params={"format": fmt})

    def put_schema(self, document: Any, base_version: int | None = None, dry_run: bool = False) -> Any:
        params: dict[str, Any] = {"dry_run": str(dry_run).lower()}
        if base_version is not None:
            params["base_version"] = base_version
        return self.request("PUT", "/api/v1/metadata-schema", json=document, params=params)

    def schema_history(self, limit: int = 100) -> Any:
        return self.request("GET", "/api/v1/metadata-schema/versions", params={"limit": limit})

    def validate_metadata(self, items: list[Any], from_text: bool = False) -> Any:
        return self.request(
            "POST", "/api/v1/metadata-schema/validate", json={"items": items, "from_text": from_text}
        )

    # folders and imports
    def create_folder(self, path: str, description: str = "") -> Any:
        return self.request("POST", "/api/v1/folders", json={"path": path, "description": description})

    def list_folders(self, path: str | None = None) -> Any:
        return self.request("GET", "/api/v1/folders", params={"path": path} if path else None)

    def start_import(
        self,
        manifest: Any,
        *,
        folder: str,
        integration: str,
        ignore_errors: bool = False,
        skip_duplicate_urls: bool = False,
        upsert_metadata: bool = False,
        dry_run: bool = False,
    ) -> Any:
        params = {
            "folder": folder,
            "integration": integration,
            "ignore_errors": str(ignore_errors).lower(),
            "skip_duplicate_urls": str(skip_duplicate_urls).lower(),
            "upsert_metadata": str(upsert_metadata).lower(),
            "dry_run": str(dry_run).lower(),
        }
        return self.request(
            "POST",
            "/api/v1/imports",
            params=params,
            content=manifest,
            headers={"Content-Type": "application/octet-stream"},
        )

    def get_import(self, job_id: str, wait: float = 0, limit: int = 1000) -> Any:
        return self.request("GET", f"/api/v1/imports/{job_id}", params={"wait": wait, "limit": limit})

    def cancel_import(self, job_id: str) -> Any:
        return self.request("POST", f"/api/v1/imports/{job_id}/cancel")
