"""The published OpenAPI document, made to tell the truth about errors.

FastAPI documents a ``422`` with its own validation-error body on every operation that takes
parameters.  corral answers validation errors with ``400`` and its one error shape
(``corral.api.errors``), and the Encord SDK relies on that.  ``describe_errors`` rewrites the
generated document: no ``422``; ``400`` and ``401`` with the error schema where they can happen;
and a ``default`` response with the error schema for every other error status (403, 404, 405,
409, 413, 502, 504…).  The v1 RPC routes (``/public``…) document the SDK's envelope instead.
"""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI

from corral.storage.local import MEDIA_ROUTE

ERROR_SCHEMA: dict[str, Any] = {
    "title": "Error",
    "type": "object",
    "required": ["ok", "status", "code", "message", "errors"],
    "properties": {
        "ok": {"type": "boolean", "const": False},
        "status": {"type": "integer", "description": "The HTTP status, repeated."},
        "code": {"type": "string", "description": "A stable code, e.g. invalid_input, not_found."},
        "message": {"type": "string", "description": "One sentence (the Encord SDK reads it)."},
        "errors": {
            "type": "array",
            "description": "Each problem, with the field it concerns where known.",
            "items": {
                "type": "object",
                "required": ["message"],
                "properties": {"message": {"type": "string"}, "field": {"type": "string"}},
            },
        },
    },
}
RPC_ERROR_SCHEMA: dict[str, Any] = {
    "title": "RpcError",
    "type": "object",
    "required": ["status", "response", "payload"],
    "properties": {
        "status": {"type": "integer"},
        "response": {"type": "array", "items": {"type": "string"}},
        "payload": {"type": "string"},
    },
}
#: Paths that need no credentials (so no 401).
PUBLIC_PREFIXES = ("/healthz", "/api/openapi.json", "/api/docs", MEDIA_ROUTE)


def _error(ref: str, description: str) -> dict[str, Any]:
    return {
        "description": description,
        "content": {"application/json": {"schema": {"$ref": f"#/components/schemas/{ref}"}}},
    }


def describe_errors(schema: dict[str, Any]) -> dict[str, Any]:
    """``schema`` (a generated document) with corral's real error answers; changed in place."""
    components = schema.setdefault("components", {}).setdefault("schemas", {})
    components["Error"] = ERROR_SCHEMA
    components["RpcError"] = RPC_ERROR_SCHEMA
    for name in ("HTTPValidationError", "ValidationError"):
        components.pop(name, None)
    for path, item in schema.get("paths", {}).items():
        rpc = path == "/public" or path.startswith("/public/")
        ref = "RpcError" if rpc else "Error"
        for operation in item.values():
            if not isinstance(operation, dict) or "responses" not in operation:
                continue
            responses = operation["responses"]
            responses.pop("422", None)
            responses.setdefault(
                "400", _error(ref, "Invalid input: each problem names its field and what was expected.")
            )
            if operation.get("security") != [] and not path.startswith(PUBLIC_PREFIXES):
                responses.setdefault("401", _error(ref, "No credentials, or credentials that do not verify."))
            responses.setdefault("default", _error(ref, "Any other error, in the same shape."))
    return schema


def install(app: FastAPI) -> None:
    """Serve the rewritten document at the app's ``openapi_url``: wraps whatever builds it now
    (``corral.api.docs`` adds the security schemes), and rewrites it once."""
    inner = app.openapi
    done: list[int] = []

    def openapi() -> dict[str, Any]:
        schema = inner()
        if id(schema) not in done:
            describe_errors(schema)
            done.append(id(schema))
        return schema

    app.openapi = openapi  # type: ignore[method-assign]
