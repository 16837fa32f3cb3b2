"""The request-parsing layer: every route reads its JSON body and URL through here.

``CorralRoute`` is the route class of every router.  Before a route sees a request it

* refuses a NUL character in the path or the query string (``%00``): PostgreSQL cannot store
  or even compare such text, so it could only ever fail later;
* parses a JSON body with ``corral.jsoncodec.parse`` instead of ``json.loads``: the one set of
  rules for JSON corral accepts (no NaN or Infinity, no lone surrogate, no NUL, no integer
  beyond 64 bits, at most 64 levels of nesting), each refusal a 400 that names the field;
* refuses a query parameter value of more than ``MAX_QUERY_VALUE`` characters (most become SQL
  LIKE patterns, which SQLite limits);
* refuses any query parameter the route does not declare, with a 400 naming it: FastAPI would
  otherwise ignore it silently, and an option that is ignored is worse than one refused.  A
  parameter a client (the Encord SDK) always sends but corral does not implement is declared on
  its route and refused there only when it carries a value other than its harmless default
  (``refuse_unless_default``).

FastAPI turns a ``json.JSONDecodeError`` from ``Request.json`` into a validation error; the
refusal travels as that error's cause, and ``corral.api.errors`` answers with it.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Coroutine, Mapping
from typing import Any, ClassVar

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
                self._json = jsoncodec.parse(body)
            except errors.ValidationFailed as exc:
                raise BodyRefused(exc) from exc
        return self._json


def check_url(scope: Mapping[str, Any]) -> None:
    """Refuse a NUL character anywhere in the request's path or query string."""
    query: bytes = scope.get("query_string", b"")
    if "\x00" in scope.get("path", "") or b"%00" in query or b"\x00" in query:
        where = "query" if b"%00" in query or b"\x00" in query else "path"
        raise errors.InvalidInput(
            f"the {where} holds a NUL character (%00), which corral never accepts",
            details=[errors.ErrorDetail("a NUL character (%00) is never accepted", field=where)],
        )


def check_json_content_type(headers: Mapping[str, str]) -> None:
    """A route that reads a JSON body reads only a body sent as JSON.  FastAPI leaves any other
    body (or one with no Content-Type, which a cross-site form can send without a preflight)
    unparsed, and the model then fails with "Input should be a valid dictionary"; this says why."""
    if headers.get("content-length", "0") == "0" and "transfer-encoding" not in headers:
        return
    kind = headers.get("content-type", "").split(";", 1)[0].strip().lower()
    if kind == "application/json" or (kind.startswith("application/") and kind.endswith("+json")):
        return
    raise errors.InvalidInput(
        f"the request body must be JSON, sent with Content-Type: application/json "
        f"(it came with {f'Content-Type: {kind}' if kind else 'no Content-Type'})",
        details=[errors.ErrorDetail("must be application/json", field="Content-Type")],
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


def _query_names(dependant: Dependant) -> set[str]:
    """The query parameters a route declares, its dependencies' included."""
    names = {param.alias for param in dependant.query_params}
    for sub in dependant.dependencies:
        names |= _query_names(sub)
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

    @property
    def declared_query(self) -> frozenset[str]:
        names = getattr(self, "_declared_query", None)
        if names is None:
            names = frozenset(_query_names(self.dependant))
            self._declared_query = names
        return names

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()

        async def route(request: Request) -> Response:
            check_url(request.scope)
            if self.body_field is not None:
                check_json_content_type(request.headers)
            if self.refuse_unknown_query:
                check_query_names(request.query_params, self.declared_query)
            check_query_values(request.query_params)
            return await handler(CorralRequest(request.scope, request.receive))

        return route


class AnyQueryRoute(CorralRoute):
    refuse_unknown_query = False
