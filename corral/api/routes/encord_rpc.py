"""The Encord SDK's v1 RPC family: ``POST /public`` and ``POST /public/user``.

Every call is ``{"query_type", "query_method", "values": {"uid", "payload"}}`` and every
answer the envelope ``{"status": 200, "response": …}``.  Operations register a handler
for their ``(query_type, query_method)`` in ``operations``; errors raised by handlers are
turned into the SDK's error envelope by ``corral.api.errors``.
"""

from __future__ import annotations

import inspect
from collections.abc import AsyncIterator, Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any, ClassVar, TypeVar

import orjson
from fastapi import APIRouter, Request
from fastapi.responses import StreamingResponse
from pydantic import BaseModel, ConfigDict, Field, model_validator
from pydantic.alias_generators import to_camel
from starlette.concurrency import run_in_threadpool

from corral import jsoncodec
from corral.api import streams
from corral.api.deps import AppContext, Ctx, CurrentPrincipal
from corral.api.openapi import ANY_JSON, OFF_VALUE
from corral.api.parsing import MAX_QUERY_VALUE, CorralRequest, CorralRoute
from corral.api.readahead import stream_ahead
from corral.core.identity import Principal
from corral.errors import InvalidInput, NotSupported, ValidationFailed

T = TypeVar("T")


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
    #: Whether the caller may still read what is streamed (``corral.api.streams.guarded``):
    #: given the principal as it is now, raises a ``CorralError`` if not (blocking).
    allowed: Callable[[Principal], None] | None = None


#: A plain function runs in the thread pool; a coroutine function (one that waits, such as a long
#: poll, which would hold one of the pool's few threads for up to a minute) runs on the event loop.
Handler = Callable[[AppContext, Principal, RpcCall], Any]
operations: dict[tuple[str, str], Handler] = {}

#: Operations whose payload carries a document judged part by part (a manifest, entry by
#: entry), and the payload members that hold it.  When a call's body breaks a rule of every body
#: only inside those members (a NUL character, an integer beyond 64 bits or ``1e999`` in one
#: manifest entry), the handler gets them as their JSON text (``jsoncodec.Verbatim``) and that
#: entry fails alone; any other call, or any other member, is refused as a whole, as before.
verbatim_members: dict[tuple[str, str], frozenset[str]] = {}


class RpcRequest(CorralRequest):
    def parse_json(self, body: bytes) -> Any:
        try:
            return jsoncodec.parse(body)  # nearly every call: no member to keep
        except ValidationFailed as whole:
            return _keeping_members(body, whole)


def _keeping_members(body: bytes, whole: ValidationFailed) -> Any:
    """The call, its ``verbatim_members`` (if its operation has any) kept as sent; else the
    refusal ``whole`` of the body read as one (a body that is not JSON included)."""
    names: frozenset[str] = frozenset().union(*verbatim_members.values())
    try:
        call, kept = jsoncodec.parse_object_leaving(body, names, at=("values", "payload"))
    except jsoncodec.NotJson:
        raise whole from None
    query_type, method = call.get("query_type"), call.get("query_method")
    allowed = (verbatim_members.get((query_type, method.upper()))
               if isinstance(query_type, str) and isinstance(method, str) else None)
    if not kept or allowed is None or not kept.keys() <= allowed:
        raise whole
    call["values"]["payload"].update({k: jsoncodec.Verbatim(v) for k, v in kept.items()})
    return call


class RpcRoute(CorralRoute):
    request_class = RpcRequest


router = APIRouter(tags=["encord-compatible"], route_class=RpcRoute)


def is_off(value: Any) -> bool:
    """None, false, [] or {} (not 0, which equals False in Python but is not one in JSON)."""
    return value is None or value is False or (isinstance(value, (list, dict)) and not value)


def refuse_unsupported(where: str, options: dict[str, Any], supported: set[str]) -> None:
    """Refuse (400, naming them) the options of an SDK call that corral does not implement.

    An option left at its "off" value (None, False, an empty list) asks for nothing and passes.
    """
    unsupported = sorted(k for k, v in options.items() if k not in supported and not is_off(v))
    if unsupported:
        shown = ", ".join(f"{k}={options[k]!r}" for k in unsupported)
        raise InvalidInput(f"{where}: corral does not support the option(s) {shown}")


def _shown(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 80 else f"{text[:77]}..."


def payload_text(payload: dict[str, Any], key: str) -> str | None:
    """``payload[key]``: null or absent is None, else a string of at most ``MAX_QUERY_VALUE``
    characters, as a query parameter (a 400 naming the key otherwise): these are the v1 calls'
    filters, titles and LIKE patterns."""
    value = payload.get(key)
    if value is not None and not isinstance(value, str):
        raise InvalidInput(f"{key} must be a string, got {_shown(value)}")
    if value is not None and len(value) > MAX_QUERY_VALUE:
        raise InvalidInput(f"{key}: at most {MAX_QUERY_VALUE:,} characters")
    return value


def payload_strings(payload: dict[str, Any], key: str) -> list[str] | None:
    """``payload[key]``: null or absent is None, else a list of strings (a 400 naming the key
    otherwise, rather than a TypeError where the list is iterated or hashed)."""
    value = payload.get(key)
    if value is not None and not (isinstance(value, list) and all(isinstance(v, str) for v in value)):
        raise InvalidInput(f"{key} must be a list of strings, got {_shown(value)}")
    return value


def payload_flag(payload: dict[str, Any], key: str, default: bool, *, where: str = "") -> bool:
    """``payload[key]``: null or absent is ``default``, else a JSON boolean (a 400 naming the key
    otherwise: Python's truth of the string ``"false"`` is True)."""
    value = payload.get(key)
    if value is None:
        return default
    if not isinstance(value, bool):
        raise InvalidInput(f"{where}{key} must be true or false, got {_shown(value)}")
    return value


def payload_choice(payload: dict[str, Any], key: str, choices: Mapping[int, T]) -> tuple[int, T]:
    """``payload[key]``, an integer code of the SDK's (a role), and what ``choices`` maps it to;
    anything else is a 400 naming the key (a list was a TypeError, ``true`` passed as 1)."""
    value = payload.get(key)
    if isinstance(value, bool) or not isinstance(value, int) or value not in choices:
        raise InvalidInput(f"{key} must be one of {', '.join(map(str, choices))}, got {_shown(value)}")
    return value, choices[value]


class RpcValues(BaseModel):
    uid: Any = Field(None, json_schema_extra=ANY_JSON, description="The resource or resources it concerns.")
    payload: Any = Field(None, json_schema_extra=ANY_JSON, description="The operation's arguments.")


class RpcEnvelope(BaseModel):
    """Every v1 call (read as JSON under the one set of rules: depth, numbers, surrogates, NUL).
    What ``uid`` and ``payload`` hold depends on the operation, which its handler checks."""

    query_type: str = Field(description="The resource kind, e.g. project, labelrow.")
    query_method: str = Field(description="GET, POST, PUT or DELETE (any case).")
    values: RpcValues = Field(default_factory=RpcValues)


def _call(envelope: RpcEnvelope, request: Request, scope: str) -> RpcCall:
    return RpcCall(envelope.query_type, envelope.query_method.upper(), envelope.values.uid,
                   envelope.values.payload, request.headers.get("resourcetype", ""),
                   request.headers.get("resourceid", ""), scope)


async def _dispatch(call: RpcCall, ctx: AppContext, principal: Principal) -> Any:
    handler = operations.get((call.query_type, call.query_method))
    if handler is None:
        raise NotSupported(
            f"the Encord v1 operation {call.query_type}/{call.query_method} is not supported by corral "
            "(see docs/encord-compatibility.md for the Encord SDK calls corral implements)"
        )
    if inspect.iscoroutinefunction(handler):  # one that waits (a long poll) without holding a thread
        result = await handler(ctx, principal, call)
    else:
        result = await run_in_threadpool(handler, ctx, principal, call)
    if isinstance(result, Streamed):
        return StreamingResponse(streams.guarded(_envelope(result.chunks), result.allowed,
                                                 error_line=streams.no_error_line),
                                 media_type="application/json")
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
async def rpc_resource(
    request: Request, ctx: Ctx, principal: CurrentPrincipal, envelope: RpcEnvelope
) -> Any:
    return await _dispatch(_call(envelope, request, "resource"), ctx, principal)


@router.post("/public/user", summary="Encord v1 RPC (user-scoped)")
async def rpc_user(
    request: Request, ctx: Ctx, principal: CurrentPrincipal, envelope: RpcEnvelope
) -> Any:
    return await _dispatch(_call(envelope, request, "user"), ctx, principal)


class SdkBody(BaseModel):
    """A JSON body of an Encord SDK call: the fields corral reads, typed and checked by pydantic,
    with the SDK's camelCase names.  Other keys are ignored (the SDK sends analytics flags and
    options that change nothing), and the document says they may be any JSON value."""

    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True, extra="allow")


class SdkOptions(SdkBody):
    """An SDK body whose other keys are options corral does not implement: each is refused
    (``refuse_unsupported``) unless it asks for nothing, which is what the document publishes."""

    model_config = ConfigDict(json_schema_extra={"additionalProperties": OFF_VALUE})
    call: ClassVar[str] = "body"

    @model_validator(mode="after")
    def _refuse_options(self) -> SdkOptions:
        refuse_unsupported(self.call, self.model_extra or {}, set())
        return self
