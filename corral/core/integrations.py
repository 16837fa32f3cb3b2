"""Integrations: an organisation's connection to one bucket, container or directory.

Non-secret settings are stored in clear (``config``); credentials are encrypted with a key
derived from the server secret and are never returned or logged.  ``open_scoped`` is how the
rest of corral gets at an integration's objects (through the scope guard).
"""

from __future__ import annotations

import threading
import uuid
from collections import OrderedDict
from collections.abc import Callable, Hashable
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from pydantic import ValidationError
from sqlalchemy import func, select
from sqlalchemy.engine import make_url
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from corral import errors
from corral.core import integration_check, secrets
from corral.core.identity import Principal
from corral.core.integration_check import CheckReport
from corral.db.tables import Folder, Integration, Item
from corral.errors import ErrorDetail
from corral.settings import Settings
from corral.storage import pacing, urls
from corral.storage.base import OutOfScope, ServerCredentialsRefused, StorageContext
from corral.storage.guard import guard
from corral.storage.local import LocalStorage
from corral.storage.localroots import LocalRootPolicy, LocalRootRefused
from corral.storage.netpolicy import EndpointPolicy, EndpointRefused
from corral.storage.options import OPTIONS, LocalOptions, ProviderOptions, strip_userinfo
from corral.storage.registry import open_storage
from corral.storage.scope import ScopedStorage, translate

MIN_TTL, MAX_TTL = 60, 7 * 24 * 3600


@dataclass(frozen=True)
class IntegrationView:
    """What anyone in the organisation may see of an integration (never its credentials)."""

    id: uuid.UUID
    title: str
    provider: str
    config: dict[str, Any]
    scope: str
    signed_url_ttl_seconds: int
    strict_client_only: bool
    has_credentials: bool
    created_at: datetime
    updated_at: datetime


def _view(row: Integration) -> IntegrationView:
    options = OPTIONS[row.provider].model_construct(**row.config)
    return IntegrationView(
        id=row.id,
        title=row.title,
        provider=row.provider,
        config=_shown_config(row),
        scope=strip_userinfo(options.scope_label()),
        signed_url_ttl_seconds=row.signed_url_ttl_seconds,
        strict_client_only=row.strict_client_only,
        has_credentials=row.credentials is not None,
        created_at=row.created_at,
        updated_at=row.updated_at,
    )


def _shown_config(row: Integration) -> dict[str, Any]:
    """The stored settings, without a ``user:password@`` an older corral let into an endpoint URL."""
    config = dict(row.config)
    for name in OPTIONS[row.provider].endpoint_fields:
        if isinstance(config.get(name), str):
            config[name] = strip_userinfo(config[name])
    return config


def require_admin(principal: Principal, action: str) -> None:
    if principal.role != "admin":
        raise errors.PermissionDenied(f"only organisation admins may {action} integrations")


def require_signer(principal: Principal) -> None:
    """Signing any object of an integration reads past the folders' grants: admins only."""
    if principal.role != "admin":
        raise errors.PermissionDenied(
            "only organisation admins may sign URLs for any object of an integration; sign the files "
            "of the items you can see with POST /api/v1/items/sign (`corral item show --signed-urls`)")


def _details(exc: ValidationError) -> list[ErrorDetail]:
    """One detail per bad field, naming it (never quoting its value: it may be a secret)."""
    return [
        ErrorDetail(str(e["msg"]).removeprefix("Value error, "),
                    field=".".join(str(p) for p in e["loc"]) or None)
        for e in exc.errors(include_input=False)
    ]


def parse_options(provider: str, values: dict[str, Any]) -> ProviderOptions:
    """Validate a provider's settings; ``ValidationFailed`` names each bad field (never its value)."""
    if provider not in OPTIONS:
        raise errors.ValidationFailed(
            f"unknown provider {provider!r}; expected one of {', '.join(OPTIONS)}",
            details=[ErrorDetail(f"expected one of {', '.join(OPTIONS)}", field="provider")],
        )
    try:
        return OPTIONS[provider].model_validate(values)
    except ValidationError as exc:
        details = _details(exc)
        raise errors.ValidationFailed(
            f"invalid {provider} integration settings: "
            + "; ".join(f"{d.field or 'settings'}: {d.message}" for d in details),
            details=details,
        ) from None


def _check_title_and_ttl(title: str, ttl: int) -> str:
    title = title.strip()
    if not title or len(title) > 300:
        raise errors.ValidationFailed(
            "title must be 1-300 characters", details=[ErrorDetail("1-300 characters", field="title")]
        )
    if not MIN_TTL <= ttl <= MAX_TTL:
        raise errors.ValidationFailed(
            f"signed_url_ttl_seconds must be between {MIN_TTL} and {MAX_TTL}",
            details=[ErrorDetail(f"between {MIN_TTL} and {MAX_TTL}", field="signed_url_ttl_seconds")],
        )
    return title


def _check_ttl_for(options: ProviderOptions, ttl: int) -> None:
    """A lifetime the provider can sign with these settings (else every signing without its own
    ``ttl_seconds`` would fail)."""
    limit, why = options.max_signed_ttl()
    if ttl > limit:
        raise errors.ValidationFailed(
            f"signed_url_ttl_seconds: at most {why}, not {ttl}",
            details=[ErrorDetail(f"at most {why}", field="signed_url_ttl_seconds")],
        )


def _check_strict(provider: str, strict_client_only: bool) -> None:
    if strict_client_only and provider == "local":
        raise errors.ValidationFailed(
            "a local directory cannot be strict client-only: corral itself serves its files",
            details=[ErrorDetail("only for s3, azure and gcs integrations", field="strict_client_only")],
        )


def create(
    s: Session,
    principal: Principal,
    settings: Settings,
    *,
    title: str,
    provider: str,
    values: dict[str, Any],
    signed_url_ttl_seconds: int = 3600,
    strict_client_only: bool = False,
) -> IntegrationView:
    require_admin(principal, "create")
    title = _check_title_and_ttl(title, signed_url_ttl_seconds)
    options = parse_options(provider, values)
    _check_strict(provider, strict_client_only)
    _check_ttl_for(options, signed_url_ttl_seconds)
    check_boundaries(options, settings, principal.org_id)
    server_secret = settings.resolved_secret_key()
    if s.scalar(
        select(Integration.id).where(Integration.org_id == principal.org_id, Integration.title == title)
    ):
        raise errors.AlreadyExists(f"an integration titled {title!r} already exists")
    row = Integration(
        org_id=principal.org_id,
        title=title,
        provider=provider,
        config=options.public(),
        credentials=secrets.encrypt_secrets(server_secret, options.secrets()),
        signed_url_ttl_seconds=signed_url_ttl_seconds,
        strict_client_only=strict_client_only,
        created_by=principal.user_id,
    )
    s.add(row)
    try:
        s.flush()
    except IntegrityError:
        raise errors.AlreadyExists(f"an integration titled {title!r} already exists") from None
    return _view(row)


def _row(s: Session, org_id: uuid.UUID, ref: str | uuid.UUID) -> Integration:
    """By id or by title, within the organisation only (others' integrations are 'not found')."""
    query = select(Integration).where(Integration.org_id == org_id)
    try:
        ident = ref if isinstance(ref, uuid.UUID) else uuid.UUID(str(ref))
        row = s.scalar(query.where(Integration.id == ident))
    except ValueError:
        row = s.scalar(query.where(Integration.title == str(ref)))
    if row is None:
        raise errors.NotFound(f"integration {str(ref)!r} not found{_did_you_mean(s, org_id, str(ref))}")
    return row


def _did_you_mean(s: Session, org_id: uuid.UUID, ref: str) -> str:
    """`` (did you mean 'media'?)``, or the titles there are, or nothing (the org's own titles only)."""
    import difflib

    titles = list(s.scalars(select(Integration.title).where(Integration.org_id == org_id)
                            .order_by(Integration.title).limit(1000)))
    close = difflib.get_close_matches(ref, titles, n=3, cutoff=0.6) or [
        t for t in titles if ref.lower() in t.lower() or t.lower() in ref.lower()
    ][:3]
    if close:
        return " (did you mean " + " or ".join(repr(t) for t in close) + "?)"
    if not titles:
        return "; this organisation has no integrations yet (corral integration create)"
    if len(titles) <= 10:
        return "; the integrations are " + ", ".join(repr(t) for t in titles)
    return ""


def get(s: Session, org_id: uuid.UUID, ref: str | uuid.UUID) -> IntegrationView:
    return _view(_row(s, org_id, ref))


def list_(
    s: Session, org_id: uuid.UUID, *, ids: list[uuid.UUID] | None = None, titles: list[str] | None = None
) -> list[IntegrationView]:
    query = select(Integration).where(Integration.org_id == org_id)
    if ids:
        query = query.where(Integration.id.in_(ids))
    if titles:
        query = query.where(Integration.title.in_(titles))
    return [_view(r) for r in s.scalars(query.order_by(Integration.title))]


def update(
    s: Session,
    principal: Principal,
    settings: Settings,
    ref: str | uuid.UUID,
    *,
    title: str | None = None,
    signed_url_ttl_seconds: int | None = None,
    strict_client_only: bool | None = None,
    values: dict[str, Any] | None = None,
) -> IntegrationView:
    """Change settings; ``settings`` replaces the provider settings (and credentials) wholesale."""
    require_admin(principal, "change")
    row = _locked(s, _row(s, principal.org_id, ref), ref)
    new_title = _check_title_and_ttl(
        title if title is not None else row.title,
        signed_url_ttl_seconds if signed_url_ttl_seconds is not None else row.signed_url_ttl_seconds,
    )
    if new_title != row.title and s.scalar(
        select(Integration.id).where(Integration.org_id == principal.org_id, Integration.title == new_title)
    ):
        raise errors.AlreadyExists(f"an integration titled {new_title!r} already exists")
    row.title = new_title
    if signed_url_ttl_seconds is not None:
        row.signed_url_ttl_seconds = signed_url_ttl_seconds
    if strict_client_only is not None:
        _check_strict(row.provider, strict_client_only)
        row.strict_client_only = strict_client_only
    if values is not None:
        options = parse_options(row.provider, values)
        check_boundaries(options, settings, principal.org_id)
        _keep_files_in_scope(s, row, options)
        _check_ttl_for(options, row.signed_url_ttl_seconds)
        row.config = options.public()
        row.credentials = secrets.encrypt_secrets(settings.resolved_secret_key(), options.secrets())
    elif signed_url_ttl_seconds is not None:
        _check_ttl_for(OPTIONS[row.provider].model_construct(**row.config), signed_url_ttl_seconds)
    try:
        s.flush()
    except IntegrityError:  # a concurrent create or rename took the title first (PostgreSQL)
        raise errors.AlreadyExists(f"an integration titled {new_title!r} already exists") from None
    return _view(row)


def _keep_files_in_scope(s: Session, row: Integration, new: ProviderOptions) -> None:
    """Refuse new settings that would leave the integration's registered files outside it.

    Files keep the canonical URL they were registered under (``s3://bucket/key``, the blob URL,
    ``file://root/key``); under another bucket, container, account, directory or a narrower
    prefix every one of them would be refused by the scope guard, and a folder listing with
    signed URLs would fail as a whole.  How a URL of a key under the old prefix parses under the
    new settings says so for all of them: the bucket, container, account and directory are the
    same for every key, and a key's start is the old prefix (a local directory's key also gains
    the path from a new, higher root), with no need to read the files.
    """
    old = OPTIONS[row.provider].model_construct(**row.config)
    tail = "corral-scope-probe"
    url = urls.url_for_key(f"{old.prefix}{tail}", old)
    why = ""
    try:
        key = urls.key_for_url(url, new)
    except OutOfScope as exc:
        why = str(exc).replace(repr(url), "their URLs")
    else:
        start = key[: -len(tail)] if key.endswith(tail) else None
        if start is None:
            why = "they would name other objects"
        elif not start.startswith(new.prefix):
            why = f"their keys would start with {start!r}, outside the new prefix {new.prefix!r}"
    if not why:
        return
    used = s.scalar(select(func.count()).select_from(Item).where(Item.integration_id == row.id)) or 0
    if used:
        raise errors.Conflict(
            f"integration {row.title!r} is used by {used} registered file(s) under "
            f"{strip_userinfo(old.scope_label())}, which the new settings (covering "
            f"{strip_userinfo(new.scope_label())}) would leave outside it: {why}; change only the "
            "credentials, or create another integration for the new place",
            details=[ErrorDetail(f"would leave {used} registered file(s) outside the integration",
                                 field="settings")],
        )


def _locked(s: Session, row: Integration, ref: str | uuid.UUID) -> Integration:
    """``row``, row-locked (PostgreSQL) for a change: a concurrent change or delete is waited for,
    and a delete is a 404 here rather than an UPDATE or DELETE of no row."""
    if s.scalar(select(Integration.id).where(Integration.id == row.id).with_for_update()) is None:
        raise errors.NotFound(f"integration {str(ref)!r} not found")
    s.refresh(row)
    return row


def delete(s: Session, principal: Principal, ref: str | uuid.UUID) -> None:
    require_admin(principal, "delete")
    row = _locked(s, _row(s, principal.org_id, ref), ref)
    in_use = s.scalar(select(func.count()).select_from(Item).where(Item.integration_id == row.id)) or 0
    if in_use:
        raise errors.Conflict(
            f"integration {row.title!r} is used by {in_use} registered file(s); delete those files first"
        )
    synced = s.scalar(select(Folder.name).where(Folder.integration_id == row.id).limit(1))
    if synced is not None:
        raise errors.Conflict(
            f"integration {row.title!r} is what cloud-synced folder {synced!r} syncs from; "
            "delete that folder first"
        )
    s.delete(row)


# -- the operator's boundaries (docs/security.md) ----------------------------------------------


def endpoint_policy(settings: Settings) -> EndpointPolicy:
    """The addresses integrations may reach beyond public ones (``CORRAL_ALLOWED_ENDPOINTS``)."""
    return EndpointPolicy.parse(settings.allowed_endpoints)


def local_root_policy(settings: Settings, org_id: uuid.UUID) -> LocalRootPolicy:
    """Where the organisation's local integrations may be rooted (``CORRAL_LOCAL_ROOTS``)."""
    protected = [str(settings.data_dir)]
    if settings.index_snapshot_dir is not None:  # the index's snapshot files: every organisation's values
        protected.append(str(settings.index_snapshot_dir))
    if settings.is_sqlite:
        database = make_url(settings.resolved_database_url).database
        if database and database != ":memory:":
            protected.append(str(Path(database).parent))
    return LocalRootPolicy(
        allowed=LocalRootPolicy.split(settings.local_roots),
        protected=tuple(protected),
        own_uploads=str(settings.data_dir / "uploads" / str(org_id)),
    )


def _server_credentials_refused(how: str) -> str:
    return (f"{how} uses the server's own cloud credentials, which this server's operator does not "
            "let integrations use (CORRAL_ALLOW_AMBIENT_CREDENTIALS); give the integration credentials "
            "of its own")


def _token_refused(how: str, url: str) -> str:
    return (f"{how} uses the server's own credentials, whose bearer tokens would be sent to {url}: "
            "with them only the provider's own endpoint may be used (give the integration "
            "credentials of its own to use another)")


def check_boundaries(options: ProviderOptions, settings: Settings, org_id: uuid.UUID) -> None:
    """Refuse, as a 400 naming the field, a local root, an endpoint or the server's own
    credentials, when the operator does not allow them."""
    details: list[ErrorDetail] = []
    if isinstance(options, LocalOptions):
        try:
            local_root_policy(settings, org_id).check(options.root, show_allowed=True)
        except LocalRootRefused as exc:
            details.append(ErrorDetail(str(exc), field="root"))
    how = options.server_credentials()
    if how is not None and not settings.allow_ambient_credentials:
        details.append(ErrorDetail(_server_credentials_refused(how), field="auth"))
    elif how is not None:
        details += [ErrorDetail(_token_refused(how, url), field=name)
                    for name, url in options.foreign_token_endpoints().items()]
    policy = endpoint_policy(settings)
    for name, url in options.endpoints().items():
        try:
            policy.check_url(url)
        except EndpointRefused as exc:
            details.append(ErrorDetail(str(exc), field=name))
    if details:
        raise errors.ValidationFailed(
            "; ".join(f"{d.field}: {d.message}" for d in details), details=details
        )


# -- opening the bucket ---------------------------------------------------------------


def storage_context(settings: Settings, integration_id: uuid.UUID, org_id: uuid.UUID) -> StorageContext:
    server_secret = settings.resolved_secret_key()
    return StorageContext(
        public_url=settings.resolved_public_url,
        signing_key=secrets.local_media_key(server_secret),
        connect_timeout=settings.storage_connect_timeout_seconds,
        read_timeout=settings.storage_read_timeout_seconds,
        integration_id=str(integration_id),
        endpoints=endpoint_policy(settings),
        local_roots=local_root_policy(settings, org_id),
    )


def load_options(row: Integration, server_secret: bytes) -> ProviderOptions:
    """The stored settings, validated as when they are saved.

    Settings an older corral accepted and this one refuses (an endpoint URL with a space in it)
    are a 409 naming the field, which the admin fixes by changing the integration, not a 500.
    """
    try:
        return OPTIONS[row.provider].load(row.config, secrets.decrypt_secrets(server_secret, row.credentials))
    except ValidationError as exc:
        details = _details(exc)
        raise errors.Conflict(
            f"integration {row.title!r} has settings this server does not accept: "
            + "; ".join(f"{d.field or 'settings'}: {d.message}" for d in details)
            + "; an admin can save corrected settings (PATCH /api/v1/integrations/ID with settings)",
            details=details,
        ) from None


def open_scoped(s: Session, settings: Settings, org_id: uuid.UUID, ref: str | uuid.UUID) -> ScopedStorage:
    """The integration's bucket behind the scope guard (the caller closes it)."""
    return open_row(_row(s, org_id, ref), settings)


def opener(row: Integration, settings: Settings) -> tuple[ProviderOptions, Callable[[], ScopedStorage]]:
    """Read everything needed from the row now; open the backend later, outside the transaction.

    The opener raises the backend's own ``OSError`` (the integration check reports those).
    """
    options = load_options(row, settings.resolved_secret_key())
    context = storage_context(settings, row.id, row.org_id)
    title, strict, ttl = row.title, row.strict_client_only, row.signed_url_ttl_seconds
    how = options.server_credentials()
    refused = None
    if how is not None and not settings.allow_ambient_credentials:
        refused = _server_credentials_refused(how)
    elif how is not None and (foreign := options.foreign_token_endpoints()):
        refused = _token_refused(how, next(iter(foreign.values())))

    def open_() -> ScopedStorage:
        if refused is not None:  # saved while the operator allowed it, or by an older corral
            raise ServerCredentialsRefused(refused)
        storage = guard(open_storage(options, context))  # garbage from the store: a store error
        return ScopedStorage(storage, options, title=title, strict_client_only=strict, ttl_seconds=ttl)

    return options, open_


def open_row(row: Integration, settings: Settings) -> ScopedStorage:
    _, open_ = opener(row, settings)
    try:
        return open_()
    except OSError as exc:
        label = f"integration {row.title!r}"
        raise translate(exc, f"cannot open {label}", label) from None


# -- opened backends, cached per integration ------------------------------------------------------

#: Opened backends one process keeps (least recently used dropped first).
SHARED_CACHE_SIZE = 256
_shared: OrderedDict[uuid.UUID, tuple[Hashable, ScopedStorage]] = OrderedDict()
_shared_lock = threading.Lock()
_opening: dict[uuid.UUID, threading.Lock] = {}


def _version(row: Integration, settings: Settings) -> Hashable:
    """Everything an opened backend depends on.  Any change to the row (its settings, credentials,
    title, TTL or strictness: ``update`` also moves ``updated_at``) or to the server's settings gives
    another version, so every process opens the integration anew on its next use."""
    return (
        row.updated_at, row.provider, row.title, row.strict_client_only, row.signed_url_ttl_seconds,
        repr(sorted(row.config.items())), row.credentials,
        settings.resolved_secret_key(), settings.resolved_public_url,
        settings.storage_connect_timeout_seconds, settings.storage_read_timeout_seconds,
        settings.allow_ambient_credentials, settings.allowed_endpoints, settings.local_roots,
    )


def shared(row: Integration, settings: Settings) -> ScopedStorage:
    """The integration's bucket behind the scope guard, opened once per process and version.

    Opening a backend costs far more than using it (a botocore client is ~100 ms of CPU), so
    signing and other short requests share one opened backend per integration; it is thread-safe,
    and its ``close`` does nothing.  The row is read by the caller's transaction, so a change made
    by any process is seen on the next request (see ``_version``).
    """
    version = _version(row, settings)
    with _shared_lock:
        hit = _shared.get(row.id)
        if hit is not None and hit[0] == version:
            _shared.move_to_end(row.id)
            return hit[1]
        opening = _opening.setdefault(row.id, threading.Lock())
    # One thread opens; the others wait for it instead of each building a client of their own
    # (the first open in a process also imports the provider's SDK, which takes a while).
    with opening:
        with _shared_lock:
            hit = _shared.get(row.id)
        if hit is not None and hit[0] == version:
            return hit[1]
        scoped = open_row(row, settings)
        scoped.shared = True
        with _shared_lock:
            _shared[row.id] = (version, scoped)
            _shared.move_to_end(row.id)
            while len(_shared) > SHARED_CACHE_SIZE:
                gone, _ = _shared.popitem(last=False)  # not closed: a thread may still sign with it
                _opening.pop(gone, None)
    return scoped


def shared_scoped(s: Session, settings: Settings, org_id: uuid.UUID, ref: str | uuid.UUID) -> ScopedStorage:
    """``shared`` for an integration of the organisation, by id or title."""
    return shared(_row(s, org_id, ref), settings)


def check(
    s: Session, settings: Settings, org_id: uuid.UUID, ref: str | uuid.UUID, origin: str
) -> Callable[[], CheckReport]:
    """Prepare an integration check inside a transaction; the returned call runs it outside."""
    row = _row(s, org_id, ref)
    options, open_ = opener(row, settings)
    title = row.title
    return lambda: integration_check.check_opening(open_, options, title, origin)


def local_storage_for_link(s: Session, settings: Settings, integration_id: uuid.UUID) -> LocalStorage:
    """The directory a verified local-media link points into (the link's signature is the authority)."""
    row = s.get(Integration, integration_id)
    if row is None or row.provider != "local":
        raise errors.NotFound("this link's integration no longer exists")
    options = load_options(row, settings.resolved_secret_key())
    assert isinstance(options, LocalOptions)
    return LocalStorage(options, storage_context(settings, row.id, row.org_id))


# -- requests to a store ----------------------------------------------------------------------

#: Requests one process sends to one integration's store at the same time, whatever job sends
#: them (registration's HEADs and probes, verification's HEADs).
REQUEST_CONCURRENCY = 16


def request_slots(integration_id: uuid.UUID) -> pacing.Pacer:
    """The places that bound this process's concurrent requests to one integration: at most
    ``REQUEST_CONCURRENCY``, fewer while the store throttles or slows down (``storage.pacing``)."""
    return pacing.pacer(str(integration_id), REQUEST_CONCURRENCY)
