"""Passwords and web sessions: how the web UI signs in.

A user signs in with an e-mail and password (set by an operator with ``corral user create
--password -`` or ``corral user set-password``), or by pasting an API token once.  Either way
they get a *session*: a random token for an HttpOnly cookie and a random CSRF token the page
echoes in a header on every state-changing request.  Both are stored as sha256 hashes, so a
database dump signs nobody in.  Passwords are hashed with scrypt (memory-hard).
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import hmac
import math
import secrets
import threading
import time
import uuid
from collections import OrderedDict, deque
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Literal

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from corral.core import identity
from corral.db.tables import ApiToken, User, WebSession
from corral.db.types import utcnow
from corral.errors import AuthenticationFailed, ErrorDetail, NotFound, RateLimited, ValidationFailed

# scrypt at N=2^15, r=8, p=1: 32 MiB and about 0.1 s per hash (OWASP's floor is N=2^17 at
# r=8 for interactive logins on big servers; this keeps sign-in snappy on two cores).
SCRYPT_N, SCRYPT_R, SCRYPT_P = 2**15, 8, 1
MIN_PASSWORD, MAX_PASSWORD = 8, 1024
MAX_USER_AGENT = 300
Method = Literal["password", "token"]


def _scrypt(password: str, salt: bytes, n: int, r: int, p: int) -> bytes:
    return hashlib.scrypt(password.encode(), salt=salt, n=n, r=r, p=p, maxmem=256 * 1024 * 1024, dklen=32)


def _b64(raw: bytes) -> str:
    return base64.b64encode(raw).decode().rstrip("=")


def _unb64(text: str) -> bytes:
    return base64.b64decode(text + "=" * (-len(text) % 4))


def check_password_rules(password: str) -> str:
    if not MIN_PASSWORD <= len(password) <= MAX_PASSWORD:
        raise ValidationFailed(
            f"password must be {MIN_PASSWORD} to {MAX_PASSWORD} characters, got {len(password)}",
            details=[ErrorDetail(f"{MIN_PASSWORD} to {MAX_PASSWORD} characters", field="password")],
        )
    if "\x00" in password:
        raise ValidationFailed(
            "password must not hold a NUL character",
            details=[ErrorDetail("text without NUL", field="password")],
        )
    return password


def hash_password(password: str) -> str:
    salt = secrets.token_bytes(16)
    digest = _scrypt(password, salt, SCRYPT_N, SCRYPT_R, SCRYPT_P)
    return f"scrypt${SCRYPT_N}${SCRYPT_R}${SCRYPT_P}${_b64(salt)}${_b64(digest)}"


def verify_password(password: str, stored: str | None) -> bool:
    """Constant-time check; a user without a password still costs one hash (no timing oracle)."""
    if stored is None:
        _scrypt(password, b"\x00" * 16, SCRYPT_N, SCRYPT_R, SCRYPT_P)
        return False
    try:
        scheme, n, r, p, salt, digest = stored.split("$")
        if scheme != "scrypt":
            return False
        got = _scrypt(password, _unb64(salt), int(n), int(r), int(p))
    except (ValueError, TypeError):
        return False
    return hmac.compare_digest(got, _unb64(digest))


def set_password(session: Session, email: str, password: str) -> User:
    """Set the user's password and end every web session they have: a password is changed
    because the old one may be known, and whoever knew it may already be signed in."""
    user = identity.get_user_by_email(session, email)
    user.password_hash = hash_password(check_password_rules(password))
    end_all(session, user.id)
    session.flush()
    return user


def end_all(session: Session, user_id: uuid.UUID, *, method: Method | None = None,
            since: datetime | None = None) -> None:
    """End the user's live web sessions (only those signed in with ``method``, and only those
    started at or after ``since``, when given)."""
    query = update(WebSession).where(WebSession.user_id == user_id, WebSession.revoked_at.is_(None))
    if method is not None:
        query = query.where(WebSession.method == method)
    if since is not None:
        query = query.where(WebSession.created_at >= since)
    session.execute(query.values(revoked_at=utcnow()))


def _hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


@dataclass(frozen=True)
class NewSession:
    token: str  # for the HttpOnly cookie; never stored
    csrf_token: str  # echoed by the page in X-CSRF-Token; never stored
    id: uuid.UUID
    expires_at: datetime
    user: User


def _start(session: Session, user: User, method: Method, user_agent: str, lifetime: timedelta,
           until: datetime | None = None) -> NewSession:
    token, csrf = secrets.token_urlsafe(32), secrets.token_urlsafe(32)
    now = utcnow()
    expires_at = now + lifetime if until is None else min(now + lifetime, until)
    row = WebSession(
        user_id=user.id, token_hash=_hash(token), csrf_hash=_hash(csrf), method=method,
        user_agent=user_agent[:MAX_USER_AGENT], created_at=now, last_seen_at=now, expires_at=expires_at,
    )
    session.add(row)
    session.flush()
    return NewSession(token, csrf, row.id, row.expires_at, user)


BAD_LOGIN = "e-mail or password is not right"


class SignInThrottle:
    """Password sign-ins, counted for ``window`` seconds by this process.

    Every attempt counts as a failure from the moment it starts (``attempt``), so concurrent
    guesses cannot all pass before the first is known to be wrong; a success takes its own back
    (``succeeded``) and clears the e-mail's failures from that address.  After ``per_account``
    failures for one e-mail address from one client address, or ``per_email`` for it from any
    address, ``attempt`` refuses with a 429 until the oldest leaves the window, before the password
    is hashed, so a refusal costs no scrypt work either.  Unknown e-mail addresses count like
    known ones (the answer must not tell them apart).  At most ``size`` keys are kept, the least
    recent dropped.
    """

    def __init__(self, per_account: int = 10, per_email: int = 100, window: float = 900.0,
                 size: int = 100_000) -> None:
        self.per_account, self.per_email, self.window, self.size = per_account, per_email, window, size
        self._failures: OrderedDict[tuple[str, ...], deque[float]] = OrderedDict()
        self._lock = threading.Lock()

    @staticmethod
    def _keys(address: str, email: str) -> tuple[tuple[str, ...], tuple[str, ...]]:
        email = email.strip().lower()
        return (address, email), (email,)

    def _recent(self, key: tuple[str, ...], now: float) -> deque[float]:
        times = self._failures.get(key)
        if times is None:
            return deque()
        while times and times[0] <= now - self.window:
            times.popleft()
        if not times:
            del self._failures[key]
        return times

    def attempt(self, address: str, email: str) -> float:
        """Count a password sign-in for ``email`` from ``address`` as failed until it succeeds, or
        raise ``RateLimited`` if it must wait; returns the attempt's mark for ``succeeded``."""
        now = time.monotonic()
        with self._lock:
            keys = self._keys(address, email)
            for key, limit in zip(keys, (self.per_account, self.per_email), strict=True):
                times = self._recent(key, now)
                if len(times) >= limit:
                    wait = max(1, math.ceil(times[-limit] + self.window - now))
                    raise RateLimited(
                        f"too many failed sign-ins for this e-mail address: try again in {wait} s",
                        retry_after=wait,
                    )
            for key in keys:
                self._failures.setdefault(key, deque()).append(now)
                self._failures.move_to_end(key)
            while len(self._failures) > self.size:
                self._failures.popitem(last=False)
        return now

    def succeeded(self, address: str, email: str, mark: float) -> None:
        """The attempt ``mark`` signed in: forget the e-mail's failures from this address."""
        account, by_email = self._keys(address, email)
        with self._lock:
            self._failures.pop(account, None)
            times = self._failures.get(by_email)
            if times is not None:
                with contextlib.suppress(ValueError):
                    times.remove(mark)


def sign_in_with_password(
    session: Session, email: str, password: str, *, user_agent: str, lifetime: timedelta
) -> NewSession:
    user = session.scalar(select(User).where(User.email == email.strip().lower()))
    ok = verify_password(password[:MAX_PASSWORD], user.password_hash if user else None)
    if user is None or not ok or user.disabled_at is not None:
        raise AuthenticationFailed(BAD_LOGIN)
    return _start(session, user, "password", user_agent, lifetime)


def sign_in_with_token(session: Session, token: str, *, user_agent: str, lifetime: timedelta) -> NewSession:
    """A session opened with an API token ends when the token would have: it never outlives the
    token's expiry (and revoking the token ends it: ``identity.revoke_token``)."""
    user = identity.user_for_token(session, token.strip())
    expires_at = session.scalar(
        select(ApiToken.expires_at).where(ApiToken.token_hash == identity.hash_token(token.strip()))
    )
    return _start(session, user, "token", user_agent, lifetime, until=expires_at)


def user_for_session(session: Session, token: str) -> tuple[User, WebSession]:
    row = session.scalar(select(WebSession).where(WebSession.token_hash == _hash(token)))
    now = utcnow()
    if row is None or row.revoked_at is not None or row.expires_at <= now:
        raise AuthenticationFailed("your session has ended: sign in again")
    user = session.get(User, row.user_id)
    if user is None or user.disabled_at is not None:
        raise AuthenticationFailed("your session has ended: sign in again")
    return user, row


def csrf_matches(row: WebSession, csrf_token: str) -> bool:
    return bool(csrf_token) and hmac.compare_digest(row.csrf_hash, _hash(csrf_token))


def list_for_user(session: Session, user_id: uuid.UUID) -> list[WebSession]:
    """The user's live sessions, newest first."""
    live = (WebSession.user_id == user_id, WebSession.revoked_at.is_(None), WebSession.expires_at > utcnow())
    return list(session.scalars(select(WebSession).where(*live).order_by(WebSession.created_at.desc())))


def revoke(session: Session, user_id: uuid.UUID, session_id: uuid.UUID) -> WebSession:
    """End one of the user's own sessions; another user's session is not found."""
    row = session.get(WebSession, session_id)
    if row is None or row.user_id != user_id:
        raise NotFound(f"session {session_id} not found")
    if row.revoked_at is None:
        row.revoked_at = utcnow()
    session.flush()
    return row
