"""Long answers that stop when their right to be sent ends: the NDJSON exports and the SDK's
streamed data rows.

A request is authenticated and authorised once, before its answer begins; an export of a million
rows is then sent for seconds or minutes.  While it is, ``guarded`` asks again, between two
chunks, whether the request's credential still opens the API for the same user, organisation and
role (``corral.api.deps.Credential``) and whether that user may still read what is streamed (the
route's ``allowed``: the folder or dataset still there and still visible):

- at once (before the next chunk) when the auth epoch moved: a token revoked, a user disabled,
  deleted or changed, an organisation changed, in this process or (through its ``AUTH`` ring)
  any other;
- and otherwise every ``RECHECK_SECONDS``, which bounds what nothing rings for (a web session
  signed out, a folder deleted or unshared), and once more after the last chunk, so an answer
  that ends complete was allowed after its last row was read (a dataset deleted part-way, whose
  remaining rows were gone, used to end cleanly, a short export looking whole).

An answer stopped part-way ends so that no client can take it for a complete one: an NDJSON
stream's last line is the error in the one JSON error shape (``{"ok": false, "status": 401,
…}``), and then the connection is closed without the chunked body's last chunk (HTTP clients
report an incomplete body: httpx ``RemoteProtocolError``, requests ``ChunkedEncodingError``,
curl exit code 18).  A v1 RPC answer (one JSON document) is cut off the same way, so it never
parses.  Errors while reading a chunk (the folder deleted, the database gone) end it the same
way.
"""

from __future__ import annotations

import logging
import time
from collections.abc import AsyncIterator, Callable

import orjson
from starlette.concurrency import run_in_threadpool

from corral import errors
from corral.api.deps import Credential, request_credential
from corral.api.errors import MAX_MESSAGE, StreamStopped, native_error_body
from corral.core import identity
from corral.core.identity import Principal
from corral.db.transient import unavailable

log = logging.getLogger("corral.api")

#: The longest a streamed answer goes on without asking again whether it may (seconds).
RECHECK_SECONDS = 2.0


def ndjson_error_line(exc: errors.CorralError) -> bytes:
    """The last line of an NDJSON stream stopped by ``exc``: the one JSON error shape."""
    details = [d.as_dict() for d in exc.details] if exc.details else None
    message = exc.message if len(exc.message) <= MAX_MESSAGE else exc.message[:MAX_MESSAGE]
    return orjson.dumps(native_error_body(exc.status, exc.code, message, details)) + b"\n"


def no_error_line(_exc: errors.CorralError) -> bytes:
    """A JSON document (the v1 RPC envelope) gets no last line: cut off, it does not parse."""
    return b""


def _still(credential: Credential | None, allowed: Callable[[Principal], None] | None) -> None:
    """Raise a ``CorralError`` unless the request may still be answered (blocking)."""
    if credential is None:
        return
    principal = credential.check()
    if allowed is not None:
        allowed(principal)


async def guarded(
    chunks: AsyncIterator[bytes],
    allowed: Callable[[Principal], None] | None = None,
    *,
    error_line: Callable[[errors.CorralError], bytes] = ndjson_error_line,
    every: float | None = None,
) -> AsyncIterator[bytes]:
    """``chunks``, each sent only while the request's credential (and ``allowed(principal)``,
    blocking, raising a ``CorralError``: the route's own check of what it streams, with the
    credential's principal as it is now) still holds: see the module's text.  Call it from the
    route (the request's credential is read from its context)."""
    credential = request_credential.get()
    every = RECHECK_SECONDS if every is None else every
    epoch = credential.epoch if credential is not None else identity.current_epoch()
    checked = time.monotonic()
    try:
        async for chunk in chunks:
            now, current = time.monotonic(), identity.current_epoch()
            if current != epoch or now - checked >= every:
                await run_in_threadpool(_still, credential, allowed)
                epoch, checked = current, time.monotonic()
            yield chunk
        await run_in_threadpool(_still, credential, allowed)  # the last rows read were allowed
    except Exception as exc:  # noqa: BLE001 - every error ends the answer short, as below
        refusal = exc if isinstance(exc, errors.CorralError) else unavailable(exc)
        if refusal is None:
            raise  # a bug: logged by the server as it was, and the answer cut off
        log.warning("stream stopped: %s %s", refusal.status, refusal.message)
        line = error_line(refusal)
        if line:
            yield line
        raise StreamStopped(refusal.message) from None
