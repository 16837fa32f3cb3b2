"""Organisations, users, SSH keys and API tokens."""

from __future__ import annotations

import base64
import binascii
import hashlib
import re
import secrets
import threading
import time
import uuid
from collections import OrderedDict
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Literal

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from sqlalchemy import Select, event, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import ORMExecuteState, Session

from corral.db.tables import ApiToken, Organisation, SshKey, User
from corral.db.types import utcnow
from corral.errors import (
    AlreadyExists,
    AuthenticationFailed,
    ErrorDetail,
    InvalidInput,
    NotFound,
    PermissionDenied,
)
from corral.jobs import doorbell

Role = Literal["admin", "member"]
AuthMethod = Literal["bearer", "signature", "rpc-signature", "session"]
TOKEN_PREFIX = "corral_"
_EMAIL = re.compile(r"^[^@\s]+@[^@\s]+$")


@dataclass(frozen=True)
class Principal:
    """Who is making a request, and how they proved it."""

    user_id: uuid.UUID
    org_id: uuid.UUID
    email: str
    role: Role
    method: AuthMethod
    session_id: uuid.UUID | None = None  # the web session, when signed in through the web UI

    @property
    def is_admin(self) -> bool:
        return self.role == "admin"


# -- SSH keys ----------------------------------------------------------------


@dataclass(frozen=True)
class ParsedKey:
    key_id: str  # lowercase hex of the raw 32-byte public key
    line: str  # normalised "ssh-ed25519 AAAA… comment"
    comment: str


def parse_ssh_public_key(text: str) -> ParsedKey:
    """Parse an OpenSSH ``ssh-ed25519`` public key line, as in ``~/.ssh/id_ed25519.pub``."""
    if "PRIVATE KEY" in text:
        raise InvalidInput(
            "SSH public key: this is a private key; give the public key (the .pub file) instead"
        )
    parts = text.strip().split(None, 2)
    if len(parts) < 2:
        raise InvalidInput(
            "SSH public key: expected an OpenSSH line like 'ssh-ed25519 AAAAC3Nza… comment'"
        )
    kind, b64 = parts[0], parts[1]
    if kind != "ssh-ed25519":
        raise InvalidInput(f"SSH public key: only ssh-ed25519 keys are supported, got {kind!r}")
    try:
        blob = base64.b64decode(b64, validate=True)
    except (binascii.Error, ValueError):
        raise InvalidInput("SSH public key: the key data is not valid base64") from None
    # uint32 len | "ssh-ed25519" | uint32 len | 32 key bytes
    if len(blob) != 51 or blob[4:15] != b"ssh-ed25519" or blob[15:19] != b"\x00\x00\x00\x20":
        raise InvalidInput("SSH public key: the key data is not an Ed25519 public key")
    raw = blob[19:]
    comment = parts[2].strip() if len(parts) > 2 else ""
    line = f"ssh-ed25519 {b64}" + (f" {comment}" if comment else "")
    return ParsedKey(key_id=raw.hex(), line=line, comment=comment)


def public_key_from_id(key_id: str) -> Ed25519PublicKey:
    return Ed25519PublicKey.from_public_bytes(bytes.fromhex(key_id))


# -- organisations and users -------------------------------------------------


def get_or_create_org(session: Session, name: str) -> Organisation:
    name = name.strip()
    if not name:
        raise InvalidInput("organisation name must not be empty")
    org = session.scalar(select(Organisation).where(Organisation.name == name))
    if org is None:
        org = Organisation(name=name)
        try:
            # A savepoint: a concurrent create of this organisation that won (PostgreSQL) leaves
            # this transaction usable, to read the winner and join it.
            with session.begin_nested():
                session.add(org)
                session.flush()
        except IntegrityError:
            winner = session.scalar(select(Organisation).where(Organisation.name == name))
            if winner is None:
                raise
            return winner
    return org


def create_user(
    session: Session,
    email: str,
    *,
    org_name: str,
    role: Role = "member",
    ssh_public_key: str | None = None,
) -> User:
    email = email.strip().lower()
    if not _EMAIL.match(email):
        raise InvalidInput(f"email {email!r} is not an email address")
    exists = AlreadyExists(f"user {email} already exists")
    if session.scalar(select(User.id).where(User.email == email)) is not None:
        raise exists
    org = get_or_create_org(session, org_name)
    user = User(org_id=org.id, email=email, role=role)
    try:
        # A savepoint: a concurrent create of this email that committed after the check above
        # (PostgreSQL) fails this insert at the unique key; it is the same conflict as a user
        # that already existed, not a database error, and the transaction stays usable.
        with session.begin_nested():
            session.add(user)
            session.flush()
    except IntegrityError:
        if session.scalar(select(User.id).where(User.email == email)) is None:
            raise
        raise exists from None
    if ssh_public_key is not None:
        add_ssh_key(session, email, ssh_public_key)
    return user


def get_user_by_email(session: Session, email: str) -> User:
    user = session.scalar(select(User).where(User.email == email.strip().lower()))
    if user is None:
        raise NotFound(f"user {email} not found")
    return user


def user_by_email(session: Session, org_id: uuid.UUID, email: str) -> User:
    """A user of this organisation by e-mail; another organisation's users are not found."""
    user = session.scalar(select(User).where(User.email == email.strip().lower()))
    if user is None or user.org_id != org_id:
        raise NotFound(f"user {email} not found")
    return user


def org_user(session: Session, org_id: uuid.UUID, ref: str) -> User:
    """A user of this organisation by e-mail or id (for sharing); others are not found."""
    if "\x00" in ref:
        raise NotFound(f"user {ref!r} not found")
    try:
        user = session.get(User, uuid.UUID(ref))
    except ValueError:
        return user_by_email(session, org_id, ref)
    if user is None or user.org_id != org_id:
        raise NotFound(f"user {ref} not found")
    return user


MAX_MEMBERS = 10_000  # members one listing answers


def members(session: Session, principal: Principal) -> list[User]:
    """The organisation's users who are not disabled, by e-mail (at most ``MAX_MEMBERS``): all of
    them for an admin, only themselves for a member (corral keeps no member directory: who is in
    the organisation is for its admins, and operators, to see)."""
    query = select(User).where(User.org_id == principal.org_id, User.disabled_at.is_(None))
    if not principal.is_admin:
        query = query.where(User.id == principal.user_id)
    return list(session.scalars(query.order_by(User.email).limit(MAX_MEMBERS)))


def has_users(session: Session) -> bool:
    return session.scalar(select(User.id).limit(1)) is not None


def add_ssh_key(session: Session, email: str, public_key_text: str) -> SshKey:
    user = get_user_by_email(session, email)
    parsed = parse_ssh_public_key(public_key_text)
    registered = AlreadyExists("this SSH key is already registered")
    if session.scalar(select(SshKey.id).where(SshKey.key_id == parsed.key_id)) is not None:
        raise registered
    key = SshKey(user_id=user.id, key_id=parsed.key_id, public_key=parsed.line, comment=parsed.comment)
    try:
        with session.begin_nested():  # a concurrent registration of the key: as create_user
            session.add(key)
            session.flush()
    except IntegrityError:
        if session.scalar(select(SshKey.id).where(SshKey.key_id == parsed.key_id)) is None:
            raise
        raise registered from None
    return key


def principal_for_user(user: User, method: AuthMethod, session_id: uuid.UUID | None = None) -> Principal:
    role: Role = "admin" if user.role == "admin" else "member"
    return Principal(user.id, user.org_id, user.email, role, method, session_id)


def user_for_key_id(session: Session, key_id: str) -> User | None:
    return session.scalar(
        select(User)
        .join(SshKey, SshKey.user_id == User.id)
        .where(SshKey.key_id == key_id, User.disabled_at.is_(None))
    )


# -- API tokens --------------------------------------------------------------


def hash_token(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


#: A token's lifetime (``expires_in``) may be set from one minute to ten years.
MIN_TOKEN_LIFETIME = timedelta(minutes=1)
MAX_TOKEN_LIFETIME = timedelta(days=3650)
_DURATION = re.compile(r"^\s*(\d{1,9})\s*([smhdw]?)\s*$")
_UNITS = {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}


def parse_lifetime(text: str, field: str = "expires_in") -> timedelta:
    """``90d``, ``12h``, ``30m``, ``45s``, ``2w`` or plain seconds, within the documented bounds."""
    match = _DURATION.match(text)
    if match is None:
        raise InvalidInput(
            f"{field}: expected a number with an optional unit s, m, h, d or w (like 90d or 12h), "
            f"got {text!r}",
            details=[ErrorDetail("a duration like 90d, 12h, 30m or 3600", field=field)],
        )
    return check_lifetime(timedelta(seconds=int(match[1]) * _UNITS[match[2]]), field)


def check_lifetime(lifetime: timedelta, field: str = "expires_in") -> timedelta:
    if not MIN_TOKEN_LIFETIME <= lifetime <= MAX_TOKEN_LIFETIME:
        raise InvalidInput(
            f"{field}: a token's lifetime must be between 1 minute and 3650 days",
            details=[ErrorDetail("between 60 seconds and 3650 days", field=field)],
        )
    return lifetime


def create_token(
    session: Session, email: str, name: str = "", *, expires_in: timedelta | None = None
) -> tuple[str, ApiToken]:
    """Mint a bearer token.  The plaintext is returned once and never stored."""
    user = get_user_by_email(session, email)
    if len(name) > 200:
        raise InvalidInput("name: at most 200 characters",
                           details=[ErrorDetail("at most 200 characters", field="name")])
    expires_at = utcnow() + check_lifetime(expires_in) if expires_in is not None else None
    token = TOKEN_PREFIX + secrets.token_urlsafe(32)
    row = ApiToken(user_id=user.id, token_hash=hash_token(token), prefix=token[:12], name=name,
                   expires_at=expires_at)
    session.add(row)
    session.flush()
    return token, row


TokenState = Literal["active", "expired", "revoked"]


@dataclass(frozen=True)
class TokenView:
    """A token as listings show it: never its secret, only its first 12 characters."""

    id: uuid.UUID
    prefix: str
    name: str
    email: str
    created_at: datetime
    expires_at: datetime | None
    revoked_at: datetime | None

    @property
    def state(self) -> TokenState:
        if self.revoked_at is not None:
            return "revoked"
        if self.expires_at is not None and self.expires_at <= utcnow():
            return "expired"
        return "active"


def _token_views(session: Session, query: Select[tuple[ApiToken, str]]) -> list[TokenView]:
    rows = session.execute(query.order_by(ApiToken.created_at, ApiToken.id)).all()
    return [TokenView(t.id, t.prefix, t.name, email, t.created_at, t.expires_at, t.revoked_at)
            for t, email in rows]


def list_tokens(
    session: Session, *, org_id: uuid.UUID | None = None, user_id: uuid.UUID | None = None
) -> list[TokenView]:
    """Tokens of one user, of one organisation, or (neither: the operator) of everyone."""
    query = select(ApiToken, User.email).join(User, User.id == ApiToken.user_id)
    if org_id is not None:
        query = query.where(User.org_id == org_id)
    if user_id is not None:
        query = query.where(ApiToken.user_id == user_id)
    return _token_views(session, query)


def visible_tokens(session: Session, principal: Principal, *, everyone: bool = False) -> list[TokenView]:
    """A user's own tokens; with ``everyone``, an admin's whole organisation's."""
    if everyone and not principal.is_admin:
        raise PermissionDenied("only organisation admins may list other users' tokens")
    return list_tokens(session, org_id=principal.org_id, user_id=None if everyone else principal.user_id)


def _token_row(session: Session, ref: str, org_id: uuid.UUID | None = None) -> ApiToken | None:
    """A token by id, by its 12-character prefix (as listings show it), or by the token itself.
    ``org_id``: prefixes are matched among that organisation's tokens only (another's sharing the
    prefix must not make the reference ambiguous, which would tell that it exists)."""
    try:
        return session.get(ApiToken, uuid.UUID(ref))
    except ValueError:
        pass
    if ref.startswith(TOKEN_PREFIX) and len(ref) > 12:
        return session.scalar(select(ApiToken).where(ApiToken.token_hash == hash_token(ref)))
    if not ref.startswith(TOKEN_PREFIX) or len(ref) != 12:
        return None
    query = select(ApiToken).where(ApiToken.prefix == ref)
    if org_id is not None:
        query = query.join(User, User.id == ApiToken.user_id).where(User.org_id == org_id)
    rows = session.scalars(query.limit(2)).all()
    if len(rows) > 1:
        raise InvalidInput(f"more than one token starts with {ref}: give the token's id")
    return rows[0] if rows else None


def revoke_token(session: Session, ref: str, principal: Principal | None = None) -> TokenView:
    """Revoke a token (by id, prefix or the token itself) at once.  ``principal``: a user may
    revoke their own, an admin any of the organisation's; others' tokens are not found.  None:
    the operator.  A token revoked before stays as it was (its first revocation's time)."""
    return revoke_token_telling(session, ref, principal)[0]


def revoke_token_telling(
    session: Session, ref: str, principal: Principal | None = None
) -> tuple[TokenView, bool]:
    """``revoke_token``, and whether the token had been revoked already."""
    row = _token_row(session, ref, principal.org_id if principal is not None else None)
    user = session.get(User, row.user_id) if row is not None else None
    if row is None or user is None or (
        principal is not None
        and (user.org_id != principal.org_id or (row.user_id != principal.user_id and not principal.is_admin))
    ):
        raise NotFound(f"token {ref} not found")
    already = row.revoked_at is not None
    if not already:
        from corral.core import sessions  # (sessions builds on this module)

        row.revoked_at = utcnow()
        # A web session opened with the token would outlive it (and could mint new tokens).
        # Sessions do not record which token opened them, so every session its user opened with a
        # token since this one was made ends: signing in again is the price of a revocation.
        sessions.end_all(session, row.user_id, method="token", since=row.created_at)
        session.flush()
    view = TokenView(row.id, row.prefix, row.name, user.email, row.created_at, row.expires_at, row.revoked_at)
    return view, already


def user_for_token(session: Session, token: str) -> User:
    row = session.scalar(select(ApiToken).where(ApiToken.token_hash == hash_token(token)))
    now = utcnow()
    if row is None:
        raise AuthenticationFailed("Bearer token is not valid")
    if row.revoked_at is not None:
        raise AuthenticationFailed("Bearer token has been revoked")
    if row.expires_at is not None and row.expires_at <= now:
        raise AuthenticationFailed("Bearer token has expired")
    user = session.get(User, row.user_id)
    if user is None or user.disabled_at is not None:
        raise AuthenticationFailed("Bearer token is not valid")
    return user


# -- the principal cache -------------------------------------------------------------------------

_AUTH_TABLES = (User, ApiToken, SshKey, Organisation)
_epoch = 0  # moves whenever this process writes users, tokens, keys or organisations


def _bump() -> None:
    global _epoch
    _epoch += 1


def forget_cached() -> None:
    """Empty every principal cache of this process (another process changed users, tokens, SSH
    keys or organisations: its ``doorbell.AUTH`` ring)."""
    _bump()


@event.listens_for(Session, "after_flush")
def _after_flush(session: Session, _context: Any) -> None:
    if any(isinstance(o, _AUTH_TABLES) for o in (*session.new, *session.dirty, *session.deleted)):
        _bump()
        doorbell.ring_after_commit(session, doorbell.AUTH)  # ...and the other processes' caches


@event.listens_for(Session, "do_orm_execute")
def _on_execute(state: ORMExecuteState) -> None:
    if (state.is_update or state.is_delete) and any(
        getattr(m, "class_", None) in _AUTH_TABLES for m in state.all_mappers
    ):
        _bump()
        doorbell.ring_after_commit(state.session, doorbell.AUTH)


class PrincipalCache:
    """Who a credential (a bearer token's hash, an SSH key id) belongs to, kept for ``ttl`` seconds.

    Authenticating costs a read transaction with two queries; a busy client sends many requests a
    second with the same credential.  An entry is dropped when it is ``ttl`` seconds old, and every
    entry as soon as this process writes a user, token, SSH key or organisation through the ORM
    (revoking, disabling, changing a role), so a change made here applies at once; one made by
    another process applies when its ``doorbell.AUTH`` ring arrives (``forget_cached``), before
    that process answered, or within ``ttl`` seconds if the ring is lost.  ``ttl`` 0 turns the
    cache off.  Failed lookups are never cached.  A signature is still verified on every request:
    only the key's owner is cached.
    """

    def __init__(self, ttl: float, size: int = 10_000) -> None:
        self.ttl = ttl
        self.size = size
        self._entries: OrderedDict[tuple[str, str], tuple[Principal, int, float]] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, kind: str, credential: str) -> Principal | None:
        if self.ttl <= 0:
            return None
        with self._lock:
            hit = self._entries.get((kind, credential))
            if hit is None:
                return None
            principal, epoch, expires = hit
            if epoch != _epoch or time.monotonic() >= expires:
                del self._entries[(kind, credential)]
                return None
            return principal

    def put(self, kind: str, credential: str, principal: Principal, epoch: int) -> None:
        """Keep ``principal``, read while the epoch was ``epoch`` (from ``current_epoch()`` before
        the lookup, so a write during the lookup is not cached over)."""
        if self.ttl <= 0:
            return
        with self._lock:
            self._entries[(kind, credential)] = (principal, epoch, time.monotonic() + self.ttl)
            self._entries.move_to_end((kind, credential))
            while len(self._entries) > self.size:
                self._entries.popitem(last=False)

    def clear(self) -> None:
        with self._lock:
            self._entries.clear()


def current_epoch() -> int:
    return _epoch
