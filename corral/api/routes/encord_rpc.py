"""The Encord SDK's v1 RPC family: ``POST /public`` and ``POST /public/user``.

Every call is ``{"query_type", "query_method", "values": {"uid", "payload"}}`` and every
answer the envelope ``{"status": 200, "response": …}``.  Operations register a handler
for their ``(query_type, query_method)`` in ``operations``; errors raised by handlers are
turned into the SDK's error envelope by ``corral.api.errors``.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass
from typing import Any

import orjson
from fastapi import APIRouter, Request
from fastapi.responses import StreamingResponse
from starlette.concurrency import run_in_threadpool

from corral import jsoncodec
from corral.api.deps import AppContext, Ctx, CurrentPrincipal
from corral.api.parsing import CorralRoute
from corral.api.readahead import stream_ahead
from corral.core.identity import Principal
from corral.errors import InvalidInput, NotSupported


@dataclass(frozen=True)
class RpcCall:
    query_type: str
    query_method: str
    uid: Any
    payload: Any
    resource_type: str
    resource_id: str
    scope: str  # "resource" (/public) or "user" (/public/user)


@dataclass(frozen=True)
class Streamed:
    """A handler's answer sent as it is made: ``chunks`` of the ``response`` list's elements,
    each chunk read (in a thread, ahead of the socket) only when the previous one is on its way."""

    chunks: Iterator[list[Any]]


Handler = Callable[[AppContext, Principal, RpcCall], Any]
operations: dict[tuple[str, str], Handler] = {}

router = APIRouter(tags=["encord-compatible"], route_class=CorralRoute)


def refuse_unsupported(where: str, options: dict[str, Any], supported: set[str]) -> None:
    """Refuse (400, naming them) the options of an SDK call that corral does not implement.

    An option left at its "off" value (None, False, an empty list) asks for nothing and passes.
    """
    off: tuple[Any, ...] = (None, False, [], {})
    unsupported = sorted(k for k, v in options.items() if k not in supported and v not in off)
    if unsupported:
        shown = ", ".join(f"{k}={options[k]!r}" for k in unsupported)
        raise InvalidInput(f"{where}: corral does not support the option(s) {shown}")


def _parse(body: bytes, request: Request, scope: str) -> RpcCall:
    doc = jsoncodec.parse(body)  # the one set of rules: depth, numbers, surrogates, NUL
    if not isinstance(doc, dict) or not isinstance(doc.get("values", {}), dict):
        raise InvalidInput("expected {\"query_type\", \"query_method\", \"values\": {\"uid\", \"payload\"}}")
    qt, qm = doc.get("query_type"), doc.get("query_method")
    if not isinstance(qt, str) or not isinstance(qm, str):
        raise InvalidInput("query_type and query_method must be strings")
    values = doc.get("values") or {}
    return RpcCall(qt, qm.upper(), values.get("uid"), values.get("payload"),
                   request.headers.get("resourcetype", ""), request.headers.get("resourceid", ""), scope)


async def _dispatch(request: Request, ctx: AppContext, principal: Principal, scope: str) -> Any:
    call = _parse(await request.body(), request, scope)
    handler = operations.get((call.query_type, call.query_method))
    if handler is None:
        raise NotSupported(
            f"the Encord v1 operation {call.query_type}/{call.query_method} is not supported by corral "
            "(see docs/encord-compatibility.md for the Encord SDK calls corral implements)"
        )
    result = await run_in_threadpool(handler, ctx, principal, call)
    if isinstance(result, Streamed):
        return StreamingResponse(_envelope(result.chunks), media_type="application/json")
    return {"status": 200, "response": result}


async def _envelope(chunks: Iterator[list[Any]]) -> AsyncIterator[bytes]:
    """``{"status": 200, "response": [...]}`` around the elements of ``chunks``, as they come."""
    yield b'{"status":200,"response":['
    first = True
    async for chunk in stream_ahead(chunks):
        body = b",".join([orjson.dumps(element) for element in chunk])
        yield body if first else b"," + body
        first = False
    yield b"]}"


@router.post("/public", summary="Encord v1 RPC (resource-scoped)")
async def rpc_resource(request: Request, ctx: Ctx, principal: CurrentPrincipal) -> Any:
    return await _dispatch(request, ctx, principal, "resource")


@router.post("/public/user", summary="Encord v1 RPC (user-scoped)")
async def rpc_user(request: Request, ctx: Ctx, principal: CurrentPrincipal) -> Any:
    return await _dispatch(request, ctx, principal, "user")
