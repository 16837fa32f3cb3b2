"""corral's Python client for the native REST API (used by the CLI's user commands).

    from corral.client import Client
    c = Client("http://127.0.0.1:8080", token="corral_…")
    c.me()

Authenticates with a bearer token or by signing each request with an Ed25519 SSH
private key (the same scheme as the Encord SDK).  Errors come back as ``ApiError`` with
the server's message.
"""

from __future__ import annotations

import base64
import contextlib
import json
import mimetypes
import os
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
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
    """The saved profiles; a file that is not corral's profiles JSON is an ``ApiError`` naming
    it (not a traceback, and never its content: it holds tokens)."""
    path = config_path()
    if not path.exists():
        return {"current": None, "profiles": {}}
    try:
        data = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        raise ApiError(0, "bad_config", f"{path}: cannot be read as corral's profiles JSON "
                       f"({type(exc).__name__}): fix or delete it, then run `corral login`") from None
    if not (isinstance(data, dict) and isinstance(data.get("profiles", {}), dict)
            and all(isinstance(v, dict) and all(isinstance(x, str) for x in v.values())
                    for v in data.get("profiles", {}).values())
            and isinstance(data.get("current"), str | None)):
        raise ApiError(0, "bad_config", f"{path}: not corral's profiles JSON (expected "
                       '{"current": NAME, "profiles": {NAME: {...}}}): '
                       "fix or delete it, then run `corral login`")
    data.setdefault("profiles", {})
    data.setdefault("current", None)
    return data


def save_profile(name: str, profile: Profile, *, make_current: bool = True) -> Path:
    """Save a profile; it becomes the current one if ``make_current`` or there is none yet.

    The file holds tokens: it is written to a new private temporary file (mode 0600, created
    exclusively, so a file or symlink already at a fixed temporary name is never followed or
    reused) and renamed over the old one, in a directory only its owner can enter (0700)."""
    data = load_profiles()
    data["profiles"][name] = {k: v for k, v in vars(profile).items() if v is not None}
    if make_current or not data.get("current") or data["current"] not in data["profiles"]:
        data["current"] = name
    path = config_path()
    try:
        path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        # corral's own directory (an older corral made it 0755); one not ours to change (a shared
        # CORRAL_CONFIG_DIR) stays as it is: the file itself is 0600
        with contextlib.suppress(OSError):
            os.chmod(path.parent, 0o700)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".profiles.", suffix=".tmp")  # 0600, O_EXCL
    except OSError as exc:
        message = f"cannot save profiles in {path.parent}: {exc.strerror or exc}"
        raise ApiError(0, "bad_config", message) from None
    try:
        with os.fdopen(fd, "w") as f:
            f.write(json.dumps(data, indent=2))
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    return path


def current_profile() -> str | None:
    current = load_profiles().get("current")
    return str(current) if current else None


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


def shown_url(url: httpx.URL | str) -> str:
    """A server URL as messages show it: without a user name and password given in it
    (``http://user:secret@host``), which would otherwise land in terminals and logs."""
    url = httpx.URL(url)
    return str(url.copy_with(username=None, password=None) if url.userinfo else url)


def _not_json(resp: httpx.Response) -> str:
    kind = resp.headers.get("content-type", "").split(";")[0].strip() or "no content type"
    where = shown_url(resp.request.url.copy_with(query=None))
    return (f"{where} answered HTTP {resp.status_code} with {kind}, "
            "not corral's JSON: is the URL a corral server (not a proxy's or another site's page)?")


def _api_error(resp: httpx.Response) -> ApiError:
    try:
        body = resp.json()
    except ValueError:
        body = None
    if not isinstance(body, dict):
        return ApiError(resp.status_code, "http_error", _not_json(resp))
    return ApiError(
        resp.status_code,
        str(body.get("code") or "http_error"),
        str(body.get("message") or resp.reason_phrase),
        body.get("errors") if isinstance(body.get("errors"), list) else None,
    )


#: A 503 with ``Retry-After`` is sent again this many times, pausing as it says (at most
#: ``MAX_RETRY_PAUSE`` seconds): corral answers so when it is busy or its database briefly is
#: (a lock, a restart), having committed nothing of the request.
RETRIES = 5
MAX_RETRY_PAUSE = 30.0
_SAFE_TO_RESEND = frozenset({"GET", "HEAD", "OPTIONS", "PUT", "DELETE"})
_COMMITTED_NOTHING = frozenset({"overloaded", "unavailable"})  # corral's codes for such a 503


def _retry_pause(resp: httpx.Response, method: str) -> float | None:
    """How long to wait before sending a request again that was answered ``resp``, or None if it
    must not be: only a 503 with ``Retry-After`` in seconds, for an idempotent method, or for any
    method when corral says that nothing of it was committed (not a proxy's 503 to a POST)."""
    if resp.status_code != 503:
        return None
    try:
        pause = float(resp.headers.get("retry-after", ""))
    except ValueError:
        return None
    if not pause >= 0:
        return None
    if method.upper() not in _SAFE_TO_RESEND:
        try:
            body = resp.json()
        except ValueError:
            return None
        if not (isinstance(body, dict) and body.get("code") in _COMMITTED_NOTHING):
            return None
    return min(pause, MAX_RETRY_PAUSE)


def _present(params: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in params.items() if v is not None}


class Client:
    def __init__(
        self,
        url: str,
        *,
        token: str | None = None,
        ssh_key: str | Path | None = None,
        timeout: float = 120.0,
        transport: httpx.BaseTransport | None = None,
        retries: int = RETRIES,
    ) -> None:
        self.retries = retries
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

    def _unreachable(self, exc: httpx.TransportError) -> ApiError:
        return ApiError(0, "unreachable", f"cannot reach {shown_url(self._http.base_url)}: {exc}")

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def request(self, method: str, path: str, **kwargs: Any) -> Any:
        body: Any = kwargs.get("content")
        start = body.tell() if hasattr(body, "seek") and hasattr(body, "tell") else None
        for attempt in range(self.retries + 1):
            try:
                resp = self._http.request(method, path, **kwargs)
            except httpx.TransportError as exc:
                raise self._unreachable(exc) from None
            pause = _retry_pause(resp, method) if attempt < self.retries else None
            if pause is None or (body is not None and not isinstance(body, bytes | str) and start is None):
                break
            time.sleep(pause)
            if start is not None:  # a file sent as the body: from its start again
                body.seek(start)
        if resp.status_code >= 400:
            raise _api_error(resp)
        if not resp.content:
            return None
        try:
            return resp.json()
        except ValueError:
            raise ApiError(resp.status_code, "http_error", _not_json(resp)) from None

    # -- API methods ---------------------------------------------------------
    def health(self) -> Any:
        return self.request("GET", "/healthz")

    def me(self) -> Any:
        return self.request("GET", "/api/v1/me")

    def list_jobs(self, limit: int = 100, kind: str | None = None) -> Any:
        params: dict[str, Any] = {"limit": limit}
        if kind is not None:
            params["kind"] = kind
        return self.request("GET", "/api/v1/jobs", params=params)

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

    # folders
    def folder_id(self, ref: str) -> str:
        """A folder's id, from its id or its path."""
        try:
            return str(uuid.UUID(ref))
        except ValueError:
            found = self.request("GET", "/api/v1/folders/lookup", params={"path": ref, "counts": "false"})
            return str(found["id"])

    def _folder(self, ref: str) -> str:
        return f"/api/v1/folders/{self.folder_id(ref)}"

    def create_folder(
        self,
        path: str,
        description: str = "",
        *,
        client_metadata: dict[str, Any] | None = None,
        exist_ok: bool = True,
        cloud_sync: dict[str, str] | None = None,
    ) -> Any:
        body: dict[str, Any] = {"path": path, "description": description, "exist_ok": exist_ok}
        if client_metadata is not None:
            body["client_metadata"] = client_metadata
        if cloud_sync is not None:
            body["cloud_sync"] = cloud_sync
        return self.request("POST", "/api/v1/folders", json=body)

    def sync_folder(self, ref: str) -> Any:
        """Start a sync of a cloud-synced folder (or get the one running): ``{job_id, started}``."""
        return self.request("POST", f"{self._folder(ref)}/sync")

    def folder_sync(self, ref: str, job_id: str, wait: float = 0) -> Any:
        """A sync's progress, held up to ``wait`` seconds until it ends."""
        return self.request("GET", f"{self._folder(ref)}/syncs/{job_id}", params={"wait": wait})

    def list_folders(self, path: str | None = None, counts: bool = True) -> Any:
        params = {"counts": str(counts).lower(), **({"path": path} if path else {})}
        return self.request("GET", "/api/v1/folders", params=params)

    def get_folder(self, ref: str) -> Any:
        return self.request("GET", self._folder(ref))

    def folder_summary(self, ref: str) -> Any:
        folder = self.get_folder(ref)
        return self.request("GET", f"/api/v1/folders/{folder['id']}/summary")

    def update_folder(
        self,
        ref: str,
        *,
        name: str | None = None,
        description: str | None = None,
        client_metadata: dict[str, Any] | None = None,
    ) -> Any:
        body = {"name": name, "description": description, "client_metadata": client_metadata}
        return self.request("PATCH", self._folder(ref), json={k: v for k, v in body.items() if v is not None})

    def move_folder(self, ref: str, parent: str | None) -> Any:
        """Move a folder into ``parent`` (id or path), or to the top for None."""
        return self.request("POST", self._folder(ref) + "/move", json={"parent": parent})

    def delete_folder(self, ref: str, recursive: bool = False) -> Any:
        return self.request("DELETE", self._folder(ref), params={"recursive": str(recursive).lower()})

    def find_folders(
        self,
        q: str = "",
        *,
        order: str = "name",
        direction: str = "asc",
        page_size: int = 100,
        page_token: str | None = None,
        counts: bool = True,
    ) -> Any:
        params: dict[str, Any] = {"q": q, "order": order, "direction": direction, "page_size": page_size,
                                  "counts": str(counts).lower()}
        params["page_token"] = page_token
        return self.request("GET", "/api/v1/folders/search", params=_present(params))

    def folder_path(self, ref: str) -> Any:
        return self.request("GET", self._folder(ref) + "/path")

    def folder_grants(self, ref: str) -> Any:
        return self.request("GET", self._folder(ref) + "/grants")

    def share_folder(self, ref: str, user: str, role: str) -> Any:
        return self.request("POST", self._folder(ref) + "/grants", json={"user": user, "role": role})

    def unshare_folder(self, ref: str, user: str) -> Any:
        return self.request("DELETE", self._folder(ref) + f"/grants/{quote(user, safe='')}")

    # items
    def list_items(
        self,
        folder: str,
        *,
        types: list[str] | None = None,
        q: str = "",
        order: str = "name",
        direction: str = "asc",
        deleted: str = "exclude",
        page_size: int = 100,
        page_token: str | None = None,
    ) -> Any:
        """One page of a folder's items: ``{"items": [...], "next_page_token": ...}``."""
        params = {"folder": folder, "type": types or None, "q": q, "order": order, "direction": direction,
                  "deleted": deleted, "page_size": page_size, "page_token": page_token}
        return self.request("GET", "/api/v1/items", params=_present(params))

    def iter_items(self, folder: str, **filters: Any) -> Iterator[dict[str, Any]]:
        """Every item of a folder that matches ``filters`` (as for ``list_items``), page after page."""
        token = filters.pop("page_token", None)
        while True:
            page = self.list_items(folder, page_token=token, **filters)
            yield from page["items"]
            token = page["next_page_token"]
            if token is None:
                return

    def get_item(self, item_id: str, *, signed_urls: bool = False, ttl_seconds: int | None = None) -> Any:
        params = _present({"signed_urls": str(signed_urls).lower(), "ttl_seconds": ttl_seconds})
        return self.request("GET", f"/api/v1/items/{item_id}", params=params)

    def update_item(
        self,
        item_id: str,
        *,
        name: str | None = None,
        client_metadata: dict[str, Any] | None = None,
        merge_metadata: bool = False,
        description: str | None = None,
    ) -> Any:
        body = {"name": name, "client_metadata": client_metadata, "merge_metadata": merge_metadata,
                "description": description}
        return self.request("PATCH", f"/api/v1/items/{item_id}", json=body)

    def move_items(self, item_ids: list[str], folder: str) -> Any:
        return self.request("POST", "/api/v1/items/move", json={"ids": item_ids, "folder": folder})

    def delete_item(self, item_id: str, *, hard: bool = False) -> Any:
        return self.request("DELETE", f"/api/v1/items/{item_id}", params={"hard": str(hard).lower()})

    def restore_item(self, item_id: str) -> Any:
        return self.request("POST", f"/api/v1/items/{item_id}/restore")

    # uploads
    def start_upload(self, filename: str, content_type: str | None = None) -> Any:
        body = {"filename": filename, "content_type": content_type}
        return self.request("POST", "/api/v1/uploads", json=body)

    def register_upload(
        self,
        upload_id: str,
        *,
        folder: str,
        name: str | None = None,
        data_type: str | None = None,
        client_metadata: dict[str, Any] | None = None,
    ) -> Any:
        body = {"folder": folder, "name": name, "data_type": data_type, "client_metadata": client_metadata}
        return self.request("POST", f"/api/v1/uploads/{upload_id}/register", json=body)

    def upload_file(
        self,
        path: str | Path,
        folder: str,
        *,
        name: str | None = None,
        data_type: str | None = None,
        client_metadata: dict[str, Any] | None = None,
        progress: Callable[[int], None] | None = None,
    ) -> Any:
        """Upload a local file into corral's storage and register it as an item of ``folder``.

        The bytes go straight to the signed URL (the bucket, or corral's local-media route), never
        through the API; ``progress`` is called with the size of each chunk sent.  Returns the item.
        """
        path = Path(path)
        size = path.stat().st_size
        ticket = self.start_upload(path.name, mimetypes.guess_type(path.name)[0])

        def chunks() -> Iterator[bytes]:
            with path.open("rb") as fh:
                while block := fh.read(1 << 20):
                    yield block
                    if progress is not None:
                        progress(len(block))

        headers = {**ticket["headers"], "Content-Length": str(size)}
        try:
            with httpx.Client(timeout=self._http.timeout) as plain:  # the URL is the credential
                resp = plain.put(ticket["put_url"], content=chunks(), headers=headers)
        except httpx.TransportError as exc:
            raise ApiError(0, "unreachable", f"cannot upload {path.name} to its signed URL: {exc}") from None
        if resp.status_code >= 300:
            why = f"uploading {path.name} failed: HTTP {resp.status_code} {resp.text[:300]}"
            raise ApiError(resp.status_code, "upload_failed", why)
        upload_id = str(ticket["upload_id"])
        return self.register_upload(upload_id, folder=folder, name=name, data_type=data_type,
                                    client_metadata=client_metadata)

    # imports

    def start_import(
        self,
        manifest: Any,
        *,
        manifest_url: str | None = None,
        folder: str,
        integration: str,
        ignore_errors: bool = False,
        skip_duplicate_urls: bool = False,
        upsert_metadata: bool = False,
        dry_run: bool = False,
        manifest_name: str | None = None,
    ) -> Any:
        params = {
            "folder": folder,
            "integration": integration,
            "ignore_errors": str(ignore_errors).lower(),
            "skip_duplicate_urls": str(skip_duplicate_urls).lower(),
            "upsert_metadata": str(upsert_metadata).lower(),
            "dry_run": str(dry_run).lower(),
            **({"manifest_url": manifest_url} if manifest_url else {}),
            **({"manifest_name": manifest_name} if manifest_name else {}),
        }
        return self.request(
            "POST",
            "/api/v1/imports",
            params=params,
            content=manifest if manifest is not None else b"",
            headers={"Content-Type": "application/octet-stream"},
        )

    def get_import(
        self, job_id: str, wait: float = 0, limit: int = 1000, items_limit: int | None = None
    ) -> Any:
        params: dict[str, Any] = {"wait": wait, "limit": limit}
        if items_limit is not None:
            params["items_limit"] = items_limit
        return self.request("GET", f"/api/v1/imports/{job_id}", params=params)

    def cancel_import(self, job_id: str) -> Any:
        return self.request("POST", f"/api/v1/imports/{job_id}/cancel")

    # datasets
    def _dataset(self, ref: str) -> str:
        return f"/api/v1/datasets/{quote(ref, safe='')}"

    def create_dataset(self, title: str, description: str = "") -> Any:
        return self.request("POST", "/api/v1/datasets", json={"title": title, "description": description})

    def list_datasets(
        self, search: str | None = None, page_size: int = 100, page_token: str | None = None
    ) -> Any:
        params: dict[str, Any] = {"page_size": page_size}
        params.update({k: v for k, v in (("search", search), ("page_token", page_token)) if v})
        return self.request("GET", "/api/v1/datasets", params=params)

    def iter_datasets(self, search: str | None = None) -> Iterator[dict[str, Any]]:
        token = None
        while True:
            page = self.list_datasets(search, 1000, token)
            yield from page["datasets"]
            token = page["next_page_token"]
            if not token:
                return

    def get_dataset(self, ref: str) -> Any:
        return self.request("GET", self._dataset(ref))

    def delete_dataset(self, ref: str) -> Any:
        """Admins only; not part of the SDK-compatible surface."""
        return self.request("DELETE", f"/api/v1/admin/datasets/{quote(ref, safe='')}")

    def link_items(
        self,
        ref: str,
        item_ids: list[str] | None = None,
        *,
        folder: str | None = None,
        recursive: bool = False,
        duplicates: str = "skip",
        where: str | None = None,
    ) -> Any:
        body = {
            "item_ids": item_ids or [],
            "folder": folder,
            "recursive": recursive,
            "duplicates": duplicates,
            "where": where,
        }
        return self.request("POST", self._dataset(ref) + "/link", json=body)

    # -- the index ---------------------------------------------------------------------------------

    def index_query(
        self,
        where: str | None = None,
        *,
        sort: str | None = None,
        page_size: int = 100,
        page_token: str | None = None,
        fields: list[str] | None = None,
        count: bool = False,
    ) -> Any:
        body = {"where": where, "sort": sort, "page_size": page_size, "page_token": page_token,
                "fields": fields, "count": count}
        return self.request("POST", "/api/v1/index/query", json=body)

    def index_facets(
        self, keys: list[str], where: str | None = None, *, top: int = 10, buckets: int = 10
    ) -> Any:
        body = {"where": where, "keys": keys, "top": top, "buckets": buckets}
        return self.request("POST", "/api/v1/index/facets", json=body)

    # index presets and collections
    def _preset(self, ref: str) -> str:
        return f"/api/v1/index/presets/{quote(ref, safe='')}"

    def _collection(self, ref: str) -> str:
        return f"/api/v1/index/collections/{quote(ref, safe='')}"

    def create_preset(self, name: str, where: str | None, description: str | None = None) -> Any:
        body = {"name": name, "where": where, "description": description}
        return self.request("POST", "/api/v1/index/presets", json=body)

    def list_presets(self, page_size: int = 100, page_token: str | None = None) -> Any:
        params: dict[str, Any] = {"page_size": page_size}
        if page_token:
            params["page_token"] = page_token
        return self.request("GET", "/api/v1/index/presets", params=params)

    def get_preset(self, ref: str) -> Any:
        return self.request("GET", self._preset(ref))

    def update_preset(self, ref: str, **changes: Any) -> Any:
        return self.request("PATCH", self._preset(ref), json=changes)

    def delete_preset(self, ref: str) -> Any:
        return self.request("DELETE", self._preset(ref))

    def create_collection(self, name: str, description: str | None = None, folder: str | None = None) -> Any:
        body = {"name": name, "description": description, "folder": folder}
        return self.request("POST", "/api/v1/index/collections", json=body)

    def list_collections(self, page_size: int = 100, page_token: str | None = None,
                         folder: str | None = None) -> Any:
        params: dict[str, Any] = {"page_size": page_size}
        if page_token:
            params["page_token"] = page_token
        if folder:
            params["folder"] = folder
        return self.request("GET", "/api/v1/index/collections", params=params)

    def get_collection(self, ref: str) -> Any:
        return self.request("GET", self._collection(ref))

    def update_collection(self, ref: str, **changes: Any) -> Any:
        return self.request("PATCH", self._collection(ref), json=changes)

    def delete_collection(self, ref: str) -> Any:
        return self.request("DELETE", self._collection(ref))

    def change_collection_items(self, ref: str, body: dict[str, Any], *, remove: bool = False) -> Any:
        path = self._collection(ref) + ("/items/remove" if remove else "/items")
        return self.request("POST", path, json=body)

    def collection_items(self, ref: str, page_size: int = 100, page_token: str | None = None,
                         include_inaccessible: bool = False) -> Any:
        params: dict[str, Any] = {"page_size": page_size, "include_inaccessible": include_inaccessible}
        if page_token:
            params["page_token"] = page_token
        return self.request("GET", self._collection(ref) + "/items", params=params)

    def similar(
        self, item: str | None = None, *, key: str | None = None, where: str | None = None, k: int = 10,
        metric: str | None = None, vector: list[float] | None = None, items: list[str] | None = None,
        fields: list[str] | None = None, text: str | None = None, image: bytes | None = None,
    ) -> Any:
        """Items like ``item``, near ``vector``, like ``items``, or near ``text`` or ``image`` (embedded
        by the key's endpoint)."""
        body = {"key": key, "item": item, "vector": vector, "items": items, "where": where, "k": k,
                "metric": metric, "fields": fields, "text": text,
                "image": base64.b64encode(image).decode() if image is not None else None}
        body = {k_: v for k_, v in body.items() if v is not None}
        return self.request("POST", "/api/v1/index/similar", json=body)

    def build_map(
        self, key: str, *, method: str = "auto", full: bool = False, sample: int | None = None
    ) -> Any:
        body: dict[str, Any] = {"method": method, "full": full}
        if sample is not None:
            body["sample"] = sample
        return self.request("POST", f"/api/v1/index/map/{quote(key, safe='')}/build", json=body)

    def map_status(self, key: str) -> Any:
        return self.request("GET", f"/api/v1/index/map/{quote(key, safe='')}")

    def stream_index(
        self, where: str | None = None, *, sort: str | None = None, fields: list[str] | None = None
    ) -> Iterator[dict[str, Any]]:
        """Every matching item, read from the NDJSON export one line at a time."""
        body = {"where": where, "sort": sort, "fields": fields}
        return self._ndjson("POST", "/api/v1/index/export", json=body)

    def _ndjson(self, method: str, path: str, **kwargs: Any) -> Iterator[dict[str, Any]]:
        """The NDJSON answer of a request, one line at a time (bounded memory)."""
        try:
            with self._http.stream(method, path, **kwargs) as resp:
                if resp.status_code >= 400:
                    resp.read()
                    raise _api_error(resp)
                for line in resp.iter_lines():
                    if line:
                        row = json.loads(line)
                        if isinstance(row, dict) and row.get("ok") is False and "code" in row:
                            # the server stopped the stream part-way (docs/security.md, "Long
                            # answers"): its last line says why, before the body is cut off
                            raise ApiError(int(row.get("status") or 500), str(row["code"]),
                                           str(row.get("message") or "the export stopped part-way"),
                                           row.get("errors") if isinstance(row.get("errors"), list) else None)
                        yield row
        except httpx.TransportError as exc:  # down, or gone in the middle of the answer
            raise self._unreachable(exc) from None

    def unlink_items(
        self, ref: str, item_ids: list[str] | None = None, row_ids: list[str] | None = None
    ) -> Any:
        body = {"item_ids": item_ids or [], "row_ids": row_ids or []}
        return self.request("POST", self._dataset(ref) + "/unlink", json=body)

    def dataset_rows(
        self,
        ref: str,
        *,
        page_size: int = 1000,
        page_token: str | None = None,
        data_type: str | None = None,
        title: str | None = None,
    ) -> Any:
        params: dict[str, Any] = {"page_size": page_size}
        params.update(
            {k: v for k, v in (("page_token", page_token), ("data_type", data_type), ("title", title)) if v}
        )
        return self.request("GET", self._dataset(ref) + "/rows", params=params)

    def stream_dataset_rows(
        self, ref: str, *, data_type: str | None = None, title: str | None = None
    ) -> Iterator[dict[str, Any]]:
        """Every data row, read from the NDJSON export one line at a time (bounded memory)."""
        params = {k: v for k, v in (("data_type", data_type), ("title", title)) if v}
        return self._ndjson("GET", self._dataset(ref) + "/rows.ndjson", params=params)

    def start_verify(self, ref: str) -> Any:
        return self.request("POST", self._dataset(ref) + "/verify")

    def get_verify(self, job_id: str, wait: float = 0, limit: int = 1000) -> Any:
        return self.request("GET", f"/api/v1/datasets/verify/{job_id}", params={"wait": wait, "limit": limit})

    def dataset_grants(self, ref: str) -> Any:
        return self.request("GET", self._dataset(ref) + "/grants")

    def share_dataset(self, ref: str, user: str, role: str) -> Any:
        return self.request("POST", self._dataset(ref) + "/grants", json={"user": user, "role": role})

    def unshare_dataset(self, ref: str, user: str) -> Any:
        return self.request("DELETE", self._dataset(ref) + f"/grants/{quote(user, safe='@')}")

    # -- projects: members and workflow tasks --------------------------------

    @staticmethod
    def _project(project_id: str) -> str:
        return f"/api/v1/projects/{quote(project_id, safe='')}"

    def project_members(self, project_id: str) -> Any:
        return self.request("GET", self._project(project_id) + "/members")

    def add_project_members(self, project_id: str, emails: list[str], role: str) -> Any:
        return self.request("POST", self._project(project_id) + "/members",
                            json={"emails": emails, "role": role})

    def remove_project_member(self, project_id: str, email: str) -> Any:
        return self.request("DELETE", self._project(project_id) + f"/members/{quote(email, safe='@')}")

    def project_collections(self, project_id: str, page_token: str | None = None) -> Any:
        return self.request("GET", self._project(project_id) + "/collections",
                            params=_present({"page_token": page_token}))

    def create_project_collection(self, project_id: str, name: str, collection_type: str,
                                  description: str | None = None) -> Any:
        body = {"name": name, "collection_type": collection_type, "description": description}
        return self.request("POST", self._project(project_id) + "/collections", json=body)

    def project_collection_items(
        self, project_id: str, collection_id: str, page_token: str | None = None
    ) -> Any:
        path = self._project(project_id) + f"/collections/{quote(collection_id, safe='')}/items"
        return self.request("GET", path, params=_present({"page_token": page_token}))

    def project_tasks(
        self,
        project_id: str,
        stage: str,
        *,
        assignees: list[str] | None = None,
        statuses: list[str] | None = None,
        datasets: list[str] | None = None,
        data_rows: list[str] | None = None,
        title_contains: str | None = None,
    ) -> Any:
        params = _present({"stage": stage, "assignee": assignees or None, "status": statuses or None,
                           "dataset": datasets or None, "data_row": data_rows or None,
                           "title_contains": title_contains})
        return self.request("GET", self._project(project_id) + "/tasks", params=params)

    def task_actions(self, project_id: str, stage: str, actions: list[dict[str, Any]]) -> Any:
        return self.request("POST", self._project(project_id) + "/tasks/actions",
                            json={"stage": stage, "actions": actions})

    def move_tasks(self, project_id: str, stage: str, to: str, task_ids: list[str]) -> Any:
        return self.request("POST", self._project(project_id) + "/tasks/move",
                            json={"stage": stage, "to": to, "tasks": task_ids})

    def set_task_priorities(self, project_id: str, priorities: list[tuple[str, float]]) -> Any:
        return self.request("POST", self._project(project_id) + "/tasks/priorities",
                            json={"priorities": [{"task": t, "priority": p} for t, p in priorities]})

    def set_project_status(self, project_id: str, status: str) -> Any:
        return self.request("PUT", self._project(project_id) + "/status", json={"status": status})

    def members(self) -> Any:
        return self.request("GET", "/api/v1/members")

    # organisation tags
    def list_tags(self) -> Any:
        return self.request("GET", "/api/v1/tags")

    def create_tag(self, name: str, description: str | None = None) -> Any:
        return self.request("POST", "/api/v1/tags", json={"name": name, "description": description})

    def tag_id(self, ref: str) -> str:
        """A tag's id, from its id or its name."""
        try:
            return str(uuid.UUID(ref))
        except ValueError:
            for tag in self.list_tags()["tags"]:
                if tag["name"] == ref.strip():
                    return str(tag["id"])
            raise ApiError(404, "not_found", f"organisation tag {ref!r} not found") from None

    def delete_tag(self, ref: str) -> Any:
        return self.request("DELETE", f"/api/v1/tags/{self.tag_id(ref)}")

    def tags_of(self, *, project: str | None = None, folder: str | None = None) -> Any:
        owner = self._project(project) if project is not None else self._folder(str(folder))
        return self.request("GET", owner + "/tags")

    def tag(self, ref: str, *, attach: bool, project: str | None = None, folder: str | None = None) -> Any:
        owner = self._project(project) if project is not None else self._folder(str(folder))
        return self.request("PUT" if attach else "DELETE", owner + f"/tags/{self.tag_id(ref)}")
