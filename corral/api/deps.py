"""FastAPI dependencies: the app context and the authenticated principal."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from contextvars import ContextVar
from dataclasses import dataclass, field
from typing import Annotated, Any, Literal, TypeVar

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from fastapi import Depends, Request
from starlette.concurrency import run_in_threadpool
from starlette.types import Scope

from corral.api.longpoll import hold_until
from corral.api.readahead import PageAhead
from corral.auth.signatures import KeyLookup
from corral.core import identity, sessions
from corral.core.identity import Principal
from corral.db.engine import Database
from corral.errors import AuthenticationFailed
from corral.jobs import doorbell
from corral.jobs.tasks import TaskRegistry
from corral.jobs.worker import Worker
from corral.settings import Settings

T = TypeVar("T")


@dataclass(frozen=True)
class Credential:
    """What the request guard authenticated a request with, to ask again later whether it still
    opens the API: a long poll answers up to ``CORRAL_LONG_POLL_CAP_SECONDS`` after its request
    was authenticated, and a token revoked, a web session ended or a user disabled meanwhile must
    not be answered the job's state.  ``lookup`` (blocking) finds the credential's principal as
    authentication does, without verifying a signature again (its ``created`` time has aged),
    and raises ``AuthenticationFailed`` when it no longer opens anything."""

    principal: Principal
    lookup: Callable[[], Principal]
    epoch: int  # ``identity.current_epoch()`` when the request was authenticated

    def check(self) -> Principal:
        """The credential's principal as it is now; ``AuthenticationFailed`` unless the credential
        still authenticates its user, in the same organisation and role (a request authorised as
        an admin of one organisation is not answered as a member, or in another)."""
        now = self.lookup()
        if now.user_id != self.principal.user_id:
            raise AuthenticationFailed("the credential of this request no longer identifies its user")
        if (now.org_id, now.role) != (self.principal.org_id, self.principal.role):
            raise AuthenticationFailed(
                "the organisation or role of this request's user changed while it was answered; send it again"
            )
        return now


#: The credential of the request being served: set by the request guard (``corral.api.limits``)
#: for the task that runs the route, read by long polls (``AppContext.hold_for_job``).
request_credential: ContextVar[Credential | None] = ContextVar("corral_request_credential", default=None)


@dataclass
class AppContext:
    settings: Settings
    db: Database
    tasks: TaskRegistry
    worker: Worker | None = None
    pages_ahead: PageAhead[Any] = field(default_factory=PageAhead)
    principals: identity.PrincipalCache = field(default_factory=lambda: identity.PrincipalCache(0))
    sign_ins: sessions.SignInThrottle = field(default_factory=lambda: sessions.SignInThrottle())

    def __post_init__(self) -> None:
        self.principals.ttl = self.settings.auth_cache_seconds

    def wake_worker(self) -> None:
        """Work was queued: wake this process's own worker (tests, embedded).  Workers of other
        processes are rung by the commit that queued it (``corral.jobs.doorbell``)."""
        if self.worker is not None:
            self.worker.wake()

    async def hold_for_job(self, read: Callable[[], T], done: Callable[[T], bool], seconds: float) -> T:
        """``hold_until`` for a job's state: read again at once when a job ends anywhere in the
        deployment (the doorbell's ``STATE`` ring), else at the long-poll interval.

        The request's credential is checked again while the request is held: on every read after
        users, tokens or keys changed in any process (the auth epoch moved: a revocation ends the
        poll at once with a 401), and once more before a held request answers (a web session
        signed out meanwhile, which moves no epoch)."""
        credential = request_credential.get()
        seen = [credential.epoch if credential is not None else 0]
        reads = [0]

        def checked_read() -> T:
            epoch = identity.current_epoch()
            if credential is not None and epoch != seen[0]:
                credential.check()
                seen[0] = epoch
            reads[0] += 1
            return read()

        value = await hold_until(checked_read, done, seconds,
                                 max_interval=self.settings.long_poll_interval_seconds,
                                 chime=self.db.doorbell.chime(doorbell.STATE))
        if credential is not None and reads[0] > 1:  # held: it may have ended without moving the epoch
            await run_in_threadpool(credential.check)
        return value


async def get_ctx(request: Request) -> AppContext:
    # async: a plain function would be run in the thread pool, a hand-over to a thread and back
    # on every request for one attribute read (docs/performance.md, "Dependencies without a thread")
    ctx: AppContext = request.app.state.corral
    return ctx


Ctx = Annotated[AppContext, Depends(get_ctx)]


def raw_request_target(scope: Scope) -> str:
    """Path and query exactly as the client sent them on the request line."""
    raw: bytes = scope.get("raw_path") or scope["path"].encode()
    if b"?" in raw:  # some ASGI servers/transports include the query in raw_path
        return raw.decode("latin-1")
    query: bytes = scope.get("query_string", b"")
    return raw.decode("latin-1") + ("?" + query.decode("latin-1") if query else "")


def principal_for_key(
    ctx: AppContext, key_id: str, method: Literal["signature", "rpc-signature"]
) -> Principal | None:
    """The user of a registered SSH key, as a principal (cached briefly); None if no live user
    has it."""
    principal = ctx.principals.get("key", key_id)
    if principal is None:
        epoch = identity.current_epoch()
        with ctx.db.read_plain() as s:
            user = identity.user_for_key_id(s, key_id)
        if user is None:
            return None
        principal = identity.principal_for_user(user, method)
        ctx.principals.put("key", key_id, principal, epoch)
    return principal


def _by_key(
    ctx: AppContext, method: Literal["signature", "rpc-signature"], verify: Callable[[KeyLookup], str]
) -> Principal:
    """Run a signature check whose key lookup also finds the key's user (cached briefly)."""
    found: list[Principal] = []

    def lookup(key_id: str) -> Ed25519PublicKey | None:
        principal = principal_for_key(ctx, key_id, method)
        if principal is None:
            return None
        found.append(principal)
        return identity.public_key_from_id(key_id)

    verify(lookup)
    return dataclasses.replace(found[0], method=method)


def _by_token(ctx: AppContext, token: str) -> Principal:
    digest = identity.hash_token(token)
    principal = ctx.principals.get("token", digest)
    if principal is None:
        epoch = identity.current_epoch()
        with ctx.db.read_plain() as s:
            user = identity.user_for_token(s, token)
        principal = identity.principal_for_user(user, "bearer")
        ctx.principals.put("token", digest, principal, epoch)
    return principal


async def authenticate(request: Request) -> Principal:
    """The principal the request guard (``corral.api.limits``) authenticated from the request's
    head, before its body was read."""
    principal: Principal | None = getattr(request.state, "principal", None)
    if principal is None:  # only a route the guard leaves open could get here
        raise AuthenticationFailed("Missing authentication: this route cannot be called without it")
    return principal


CurrentPrincipal = Annotated[Principal, Depends(authenticate)]
