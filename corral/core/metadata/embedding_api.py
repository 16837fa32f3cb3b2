"""An embedding key's endpoint: the organisation's HTTP service that turns a text or an image into a vector.

The setting is the key's ``api`` member, in the reference platform's shape (its SDK reads and
writes it): ``{url, path, embed_text, embed_b64_image, client_only, service_integration}``, plus
corral's ``timeout`` (seconds).  Parsed here, framework-free; called by
``corral.core.vectors.endpoint``.  See docs/vectors.md#search-by-text-or-image.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Protocol
from urllib.parse import urlsplit

from corral.errors import ErrorDetail, ValidationFailed
from corral.storage.netpolicy import EndpointPolicy, EndpointRefused, host_name_problem

API_FIELDS = ("url", "path", "embed_text", "embed_b64_image", "client_only", "service_integration", "timeout")
DEFAULT_TIMEOUT = 10.0
MAX_TIMEOUT = 60.0
MIN_TIMEOUT = 0.1
MAX_URL = 2048


class Problems(Protocol):
    def add(self, field: str, message: str) -> None: ...


@dataclass(frozen=True)
class EmbeddingApi:
    url: str  # the base URL as configured
    path: str | None = None
    embed_text: bool = False
    embed_b64_image: bool = False
    timeout: float = DEFAULT_TIMEOUT

    @property
    def target(self) -> str:
        """The URL corral posts to: ``url``, then ``path`` (if any) after one slash."""
        if not self.path:
            return self.url
        return self.url.rstrip("/") + "/" + self.path.lstrip("/")

    def accepts(self) -> list[str]:
        return [name for name, on in (("text", self.embed_text), ("image", self.embed_b64_image)) if on]

    def native(self) -> dict[str, Any]:
        out: dict[str, Any] = {"url": self.url}
        if self.path:
            out["path"] = self.path
        out["embed_text"] = self.embed_text
        out["embed_b64_image"] = self.embed_b64_image
        if self.timeout != DEFAULT_TIMEOUT:
            out["timeout"] = self.timeout
        return out

    def encord(self) -> dict[str, Any]:
        """The SDK's form (it has no ``timeout``; an SDK save keeps the current one, see keep_timeout)."""
        return {"url": self.url, "path": self.path, "service_integration": None, "client_only": False,
                "embed_b64_image": self.embed_b64_image, "embed_text": self.embed_text}


def _bool(raw: dict[str, Any], name: str, where: str, problems: Problems) -> bool:
    value = raw.get(name)
    if value is None:
        return False
    if not isinstance(value, bool):
        problems.add(f"{where}.{name}", f"expected true, false or null, got {str(value)[:40]!r}")
        return False
    return value


def _url(value: object, where: str, problems: Problems) -> str | None:
    if not isinstance(value, str) or not value:
        problems.add(f"{where}.url", "expected the endpoint's http:// or https:// URL")
        return None
    if len(value) > MAX_URL or any(c.isspace() or not c.isprintable() for c in value):
        problems.add(f"{where}.url", f"expected a URL of at most {MAX_URL} characters, without spaces "
                     "or control characters")
        return None
    try:
        parts = urlsplit(value)
    except ValueError as exc:  # "Invalid IPv6 URL"
        problems.add(f"{where}.url", f"expected an http:// or https:// URL, got {value[:80]!r} ({exc})")
        return None
    try:
        parts.port  # noqa: B018 - raises on a bad port
    except ValueError:
        problems.add(f"{where}.url", "the URL's port is not a number from 1 to 65535")
        return None
    if parts.scheme not in ("http", "https") or not parts.hostname:
        problems.add(f"{where}.url", f"expected an http:// or https:// URL with a host, got {value[:80]!r}")
        return None
    if (problem := host_name_problem(parts.hostname)) is not None:
        problems.add(f"{where}.url", f"expected an http:// or https:// URL: {problem}")
        return None
    if parts.username is not None or parts.password is not None:
        problems.add(f"{where}.url", "a URL with a user name or password is refused: the endpoint "
                     "authenticates corral's signed token (docs/vectors.md)")
        return None
    if parts.fragment:
        problems.add(f"{where}.url", "a URL with a #fragment is refused")
        return None
    return value


def parse(raw: object, where: str, problems: Problems) -> EmbeddingApi | None:
    """``raw`` (an embedding key's ``api``) as an :class:`EmbeddingApi`; ``None`` for no endpoint.

    An object whose members are all null (what the SDK sends for a key without one) is no endpoint.
    """
    if raw is None:
        return None
    if not isinstance(raw, dict):
        problems.add(where, "expected an object or null")
        return None
    unknown = sorted(str(k) for k in raw if k not in API_FIELDS)
    if unknown:
        problems.add(where, f"unknown field(s) {', '.join(unknown)}; expected {', '.join(API_FIELDS)}")
        return None
    if all(v is None for v in raw.values()):
        return None
    if raw.get("client_only"):
        problems.add(f"{where}.client_only", "corral calls the endpoint from the server; client_only: true "
                     "is not supported (false or null)")
    if raw.get("service_integration") is not None:
        problems.add(f"{where}.service_integration", "not supported (null): the endpoint authenticates "
                     "corral's signed token")
    url = _url(raw.get("url"), where, problems)
    path = raw.get("path")
    if path is not None and (not isinstance(path, str) or len(path) > MAX_URL
                             or any(c.isspace() or c in "?#" for c in path)):
        problems.add(f"{where}.path", "expected a URL path such as /embed (no spaces, ? or #)")
        path = None
    text = _bool(raw, "embed_text", where, problems)
    image = _bool(raw, "embed_b64_image", where, problems)
    if not text and not image and url is not None:
        problems.add(where, "the endpoint must accept text (embed_text: true), images (embed_b64_image: "
                     "true) or both")
    timeout = raw.get("timeout", DEFAULT_TIMEOUT)
    if timeout is None:
        timeout = DEFAULT_TIMEOUT
    if (isinstance(timeout, bool) or not isinstance(timeout, (int, float)) or not math.isfinite(timeout)
            or not MIN_TIMEOUT <= timeout <= MAX_TIMEOUT):
        problems.add(f"{where}.timeout", f"expected seconds from {MIN_TIMEOUT} to {MAX_TIMEOUT:g}, "
                     f"got {str(timeout)[:40]!r}")
        timeout = DEFAULT_TIMEOUT
    if url is None:
        return None
    return EmbeddingApi(url, path or None, text, image, float(timeout))


def check_urls(apis: dict[str, EmbeddingApi], policy: EndpointPolicy) -> None:
    """Refuse, as a 400 naming ``keys.KEY.api.url``, an endpoint address the operator does not allow.

    Addresses and ``localhost`` names only (no DNS lookup while the schema is being saved); every
    call resolves the name and checks again, at connect time.
    """
    details = []
    for name, api in sorted(apis.items()):
        try:
            policy.check_url(api.target)
        except EndpointRefused as exc:
            details.append(ErrorDetail(str(exc), field=f"keys.{name}.api.url"))
    if details:
        raise ValidationFailed("; ".join(f"{d.field}: {d.message}" for d in details), details=details)
