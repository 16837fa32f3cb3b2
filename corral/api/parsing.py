"""The request-parsing layer: every route reads its JSON body and URL through here.

``CorralRoute`` is the route class of every router.  Before a route sees a request it

* refuses a NUL character in the path or the query string (``%00``): PostgreSQL cannot store
  or even compare such text, so it could only ever fail later;
* parses a JSON body with ``corral.jsoncodec.parse`` instead of ``json.loads``: the one set of
  rules for JSON corral accepts (no NaN or Infinity, no lone surrogate, no NUL, no integer
  beyond 64 bits, at most 64 levels of nesting), each refusal a 400 that names the field.

FastAPI turns a ``json.JSONDecodeError`` from ``Request.json`` into a validation error; the
refusal travels as that error's cause, and ``corral.api.errors`` answers with it.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Coroutine, Mapping
from typing import Any

from fastapi import Request, Response
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


class CorralRoute(APIRoute):
    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()

        async def route(request: Request) -> Response:
            check_url(request.scope)
            return await handler(CorralRequest(request.scope, request.receive))

        return route
