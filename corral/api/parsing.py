"""The request-parsing layer: every route reads its JSON body and URL through here.

``CorralRoute`` is the route class of every router.  Before a route sees a request it

* refuses a NUL character in the path or the query string (``%00``): PostgreSQL cannot store
  or even compare such text, so it could only ever fail later;
* refuses a path or query parameter whose percent-encoded bytes are not UTF-8 (``%FF``,
  ``%ED%A0%80``): the server would otherwise read each bad byte as U+FFFD and go on with a
  name nobody sent;
* refuses a body sent with a ``Content-Encoding`` (gzip, deflate…): corral reads bodies as
  sent and never decompresses one, so it says so rather than read compressed bytes as JSON (or
  plain JSON labelled gzip as if the label were not there);
* parses a JSON body with ``corral.jsoncodec.parse`` instead of ``json.loads``: the one set of
  rules for JSON corral accepts (no NaN or Infinity, no lone surrogate, no NUL, no integer
  beyond 64 bits, at most 64 levels of nesting), each refusal a 400 that names the field;
* refuses a query parameter value of more than ``MAX_QUERY_VALUE`` characters (most become SQL
  LIKE patterns, which SQLite limits);
* refuses a body sent to a route that reads none (other than an empty one, ``{}`` or ``null``),
  for the same reason as an undeclared query parameter;
* refuses any query parameter the route does not declare, with a 400 naming it: FastAPI would
  otherwise ignore it silently, and an option that is ignored is worse than one refused.  A
  parameter given twice is refused too, unless it is a list: FastAPI would take the last value
  and ignore the others.  A
  parameter a client (the Encord SDK) always sends but corral does not implement is declared on
  its route and refused there only when it carries a value other than its harmless default
  (``refuse_unless_default``).

FastAPI turns a ``json.JSONDecodeError`` from ``Request.json`` into a validation error; the
refusal travels as that error's cause, and ``corral.api.errors`` answers with it.
"""

from __future__ import annotations

import json
import types
from collections.abc import Callable, Coroutine, Mapping, Sequence
from typing import Annotated, Any, ClassVar, Union, get_args, get_origin
from urllib.parse import unquote_to_bytes

from fastapi import Request, Response
from fastapi.dependencies.models import Dependant
from fastapi.routing import APIRoute

from corral import errors, jsoncodec


class BodyRefused(json.JSONDecodeError):
    """A JSON body that corral refuses; ``error`` is the 400 to answer with."""

    def __init__(self, error: errors.CorralError) -> None:
        super().__init__(error.message, "", 0)
        self.error = error


class CorralRequest(Request):
    async def json(self) -> Any:
        if not hasattr(self, "_json"):
            body = await self.body()
            try:
                self._json = self.parse_json(body)
            except errors.ValidationFailed as exc:
                raise BodyRefused(exc) from exc
        return self._json

    def parse_json(self, body: bytes) -> Any:
        return jsoncodec.parse(body)


def check_url(scope: Mapping[str, Any]) -> None:
    """Refuse a NUL character anywhere in the request's path or query string."""
    query: bytes = scope.get("query_string", b"")
    if "\x00" in scope.get("path", "") or b"%00" in query or b"\x00" in query:
        where = "query" if b"%00" in query or b"\x00" in query else "path"
        raise errors.InvalidInput(
            f"the {where} holds a NUL character (%00), which corral never accepts",
            details=[errors.ErrorDetail("a NUL character (%00) is never accepted", field=where)],
        )
    _check_utf8("path", scope.get("raw_path") or scope.get("path", "").encode("utf-8", "replace"))
    if query:
        for part in query.split(b"&"):
            name, _, value = part.partition(b"=")
            _check_utf8("query", name)
            _check_utf8(_decoded(name), value)


def _decoded(raw: bytes) -> str:
    return unquote_to_bytes(raw.replace(b"+", b" ")).decode("utf-8")


def _check_utf8(field: str, raw: bytes) -> None:
    """Refuse ``raw`` (a path, or a query parameter's name or value, as sent) unless its bytes,
    percent-decoded, are UTF-8 text: Starlette reads each bad byte as U+FFFD."""
    if raw.isascii() and b"%" not in raw:
        return
    data = unquote_to_bytes(raw.replace(b"+", b" "))
    try:
        data.decode("utf-8")
    except UnicodeDecodeError as exc:
        bad = "".join(f"%{b:02X}" for b in data[exc.start:exc.end])
        message = (f"{field} holds percent-encoded bytes that are not UTF-8 text ({bad} at byte "
                   f"{exc.start} once decoded): send text as UTF-8, percent-encoded")
        raise errors.InvalidInput(message, details=[errors.ErrorDetail(
            f"UTF-8 text, percent-encoded (not {bad})", field=field)]) from None


def check_content_encoding(headers: Mapping[str, str]) -> None:
    """Refuse a body sent with a ``Content-Encoding`` other than ``identity``: corral never
    decompresses a request body (so a compression bomb costs it nothing), and neither reads the
    compressed bytes as if they were the body nor ignores the header of a body that is not."""
    coding = headers.get("content-encoding", "").strip().lower()
    if coding in ("", "identity"):
        return
    message = (f"corral does not accept a compressed request body (Content-Encoding: "
               f"{jsoncodec.preview(coding)[1:-1]}): send it uncompressed, without Content-Encoding")
    raise errors.InvalidInput(message, details=[errors.ErrorDetail(
        "not accepted on a request: send the body uncompressed", field="Content-Encoding")])


def _has_body(headers: Mapping[str, str]) -> bool:
    return headers.get("content-length", "0") != "0" or "transfer-encoding" in headers


def check_json_content_type(headers: Mapping[str, str]) -> None:
    """A route that reads a JSON body reads only a body sent as JSON.  FastAPI leaves any other
    body (or one with no Content-Type, which a cross-site form can send without a preflight)
    unparsed, and the model then fails with "Input should be a valid dictionary"; this says why."""
    if not _has_body(headers):
        return
    kind, _, params = headers.get("content-type", "").partition(";")
    kind = kind.strip().lower()
    if kind == "application/json" or (kind.startswith("application/") and kind.endswith("+json")):
        _check_charset(params)
        return
    raise errors.InvalidInput(
        f"the request body must be JSON, sent with Content-Type: application/json "
        f"(it came with {f'Content-Type: {kind}' if kind else 'no Content-Type'})",
        details=[errors.ErrorDetail("must be application/json", field="Content-Type")],
    )


#: The bodies a route that takes none accepts: they carry no option (the web UI posts ``{}``).
_EMPTY_BODIES = (b"", b"{}", b"null")
#: Methods whose body is never looked at (a GET's or a HEAD's carries no meaning; the health
#: checks, which answer anyone, must never read one).
_NO_BODY_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
#: A body longer than this cannot be one of ``_EMPTY_BODIES`` with some blanks: refused unread.
_MAX_EMPTY_BODY = 1024


async def _small_body(request: Request) -> bytes | None:
    """The body, unless its declared length is too long for an empty one (None: not read)."""
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > _MAX_EMPTY_BODY:
        return None
    return await request.body()


def check_no_body(headers: Mapping[str, str], body: bytes | None) -> None:
    """Refuse a body sent to a route that reads none (a job's cancel, a sync's start…): its
    options would otherwise be ignored silently, as an undeclared query parameter would be.  An
    empty body, ``{}`` and ``null`` carry none and pass.  ``body`` None: too long to be one of
    those, not read."""
    if body is not None and b"".join(body.split()) in _EMPTY_BODIES:
        return
    size = len(body) if body is not None else int(headers.get("content-length", "0"))
    raise errors.InvalidInput(
        f"this route takes no request body (it came with {size:,} bytes): it has no options to "
        "send; send no body (or an empty JSON object)",
        details=[errors.ErrorDetail("no body: this route takes no options", field="body")],
    )


def _check_charset(params: str) -> None:
    """JSON is UTF-8 (RFC 8259): a body labelled with another charset (``charset=latin-1``) would
    be read as UTF-8 all the same, so the label is refused rather than ignored."""
    for param in params.split(";"):
        name, _, value = param.partition("=")
        if name.strip().lower() != "charset":
            continue
        charset = value.strip().strip('"').lower()
        if charset not in ("utf-8", "utf8"):
            raise errors.InvalidInput(
                f"a JSON body is UTF-8 text: corral does not read one sent as charset="
                f"{jsoncodec.preview(charset)[1:-1]} (send it as UTF-8, with charset=utf-8 or no charset)",
                details=[errors.ErrorDetail("application/json, in UTF-8", field="Content-Type")],
            )


def check_repeated_query(query: Any, lists: frozenset[str]) -> None:
    """Refuse a query parameter given more than once unless it is a list (in ``lists``): FastAPI
    would read only the last of them (``?page_size=1&page_size=500``)."""
    seen: set[str] = set()
    repeated: list[str] = []
    for name, _ in query.multi_items():
        if name in seen and name not in lists and name not in repeated:
            repeated.append(name)
        seen.add(name)
    if repeated:
        raise errors.InvalidInput(
            f"query parameter(s) given more than once: {', '.join(repeated)} (each takes one value)",
            details=[errors.ErrorDetail("one value: give the parameter once", field=name)
                     for name in repeated],
        )


def check_query_names(query: Mapping[str, Any] | Any, declared: frozenset[str]) -> None:
    """Refuse every query parameter not in ``declared``, naming each."""
    unknown = sorted({name for name in query.keys() if name not in declared})
    if unknown:
        allowed = ", ".join(sorted(declared)) or "none"
        raise errors.InvalidInput(
            f"unsupported query parameter(s): {', '.join(unknown)} (this route accepts: {allowed})",
            details=[
                errors.ErrorDetail(f"corral does not support the query parameter {name!r}", field=name)
                for name in unknown
            ],
        )


#: The longest value of one query parameter, in characters: more than any name, title, description
#: or path corral stores.  Most text parameters become SQL LIKE patterns, and SQLite refuses a
#: pattern of more than 50,000 bytes ("LIKE or GLOB pattern too complex", a 500): 10,000
#: characters of at most 4 bytes each, escaped, stay below it.
MAX_QUERY_VALUE = 10_000


def check_query_values(query: Any) -> None:
    """Refuse (400, naming it) a query parameter whose value is longer than ``MAX_QUERY_VALUE``."""
    long = sorted({name for name, value in query.multi_items() if len(value) > MAX_QUERY_VALUE})
    if long:
        raise errors.InvalidInput(
            f"query parameter(s) {', '.join(long)}: at most {MAX_QUERY_VALUE:,} characters",
            details=[errors.ErrorDetail(f"at most {MAX_QUERY_VALUE:,} characters", field=name)
                     for name in long],
        )


def refuse_unless_default(name: str, value: Any, default: Any, meaning: str) -> None:
    """Refuse a declared-but-unimplemented option unless it carries its default value."""
    if value != default:
        raise errors.InvalidInput(
            f"the query parameter {name}={value!r} is not supported by corral ({meaning}); "
            f"only {name}={default!r} is accepted",
            details=[errors.ErrorDetail(f"only {default!r} is supported: {meaning}", field=name)],
        )


def _is_list(annotation: Any) -> bool:
    """Whether a query parameter's type takes several values (``list[str] | None``…)."""
    origin = get_origin(annotation)
    if origin is Union or origin is types.UnionType:
        return any(_is_list(arg) for arg in get_args(annotation))
    if origin is Annotated:
        return _is_list(get_args(annotation)[0])
    kind = origin or annotation
    return isinstance(kind, type) and issubclass(kind, (Sequence, set, frozenset)) and not issubclass(
        kind, (str, bytes))


def _query_names(dependant: Dependant, lists: bool = False) -> set[str]:
    """The query parameters a route declares, its dependencies' included (only its lists, those
    that may be repeated, if ``lists``)."""
    names = {param.alias for param in dependant.query_params
             if not lists or _is_list(param.field_info.annotation)}
    for sub in dependant.dependencies:
        names |= _query_names(sub, lists)
    return names


def org_access(include_org_access: bool | None, is_admin: bool, what: str) -> None:
    """``includeOrgAccess=true`` (the Encord SDK's ``org_access``) asks, for an organisation admin,
    for every ``what`` of the organisation: what a corral admin always gets, so it is honoured for an
    admin.  Encord ignores it for anyone else; corral refuses it (400) instead of ignoring it."""
    if include_org_access and not is_admin:
        raise errors.InvalidInput(
            f"includeOrgAccess=true asks for every {what} of the organisation, which only an "
            f"organisation admin may see; corral does not ignore it for a member who is not one",
            details=[errors.ErrorDetail("only an organisation admin may ask for it",
                                        field="includeOrgAccess")],
        )


class CorralRoute(APIRoute):
    #: False only for a route that answers every request the same whatever its query (the
    #: "not supported by corral" catch-all): the query of a call it refuses anyway is not its concern
    refuse_unknown_query: ClassVar[bool] = True
    #: how the route reads its JSON body (``CorralRequest.json``)
    request_class: ClassVar[type[CorralRequest]] = CorralRequest

    @property
    def declared_query(self) -> frozenset[str]:
        names = getattr(self, "_declared_query", None)
        if names is None:
            names = frozenset(_query_names(self.dependant))
            self._declared_query = names
        return names

    @property
    def list_query(self) -> frozenset[str]:
        """The declared query parameters that are lists, which a client may repeat."""
        names = getattr(self, "_list_query", None)
        if names is None:
            names = frozenset(_query_names(self.dependant, lists=True))
            self._list_query = names
        return names

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()

        async def route(request: Request) -> Response:
            check_url(request.scope)
            if _has_body(request.headers):
                check_content_encoding(request.headers)
            if self.body_field is not None:
                check_json_content_type(request.headers)
            elif (request.method not in _NO_BODY_METHODS and self.dependant.request_param_name is None
                  and _has_body(request.headers)):
                check_no_body(request.headers, await _small_body(request))
            if self.refuse_unknown_query:
                check_query_names(request.query_params, self.declared_query)
                check_repeated_query(request.query_params, self.list_query)
            check_query_values(request.query_params)
            return await handler(self.request_class(request.scope, request.receive))

        return route


class AnyQueryRoute(CorralRoute):
    refuse_unknown_query = False
