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

from corral import jsoncodec
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
_NO_NUL = "^[^\\x00]*$"
#: Any JSON value corral reads (``corral.jsoncodec.REQUEST``): text without NUL, integers within
#: 64 bits, finite numbers.  Every JSON body is parsed under these limits before its route reads it.
JSON_VALUE_SCHEMA: dict[str, Any] = {
    "title": "JsonValue",
    "description": "Any JSON value, nested at most 64 levels; strings and keys hold no NUL, "
    "integers fit in 64 bits.",
    "anyOf": [
        {"type": "null"},
        {"type": "boolean"},
        {"type": "integer", "minimum": jsoncodec.MIN_INT, "maximum": jsoncodec.MAX_INT},
        {"type": "number", "minimum": float(jsoncodec.MIN_INT), "maximum": float(jsoncodec.MAX_INT)},
        {"type": "string", "pattern": _NO_NUL},
        {"type": "array", "items": {"$ref": "#/components/schemas/JsonValue"}},
        {
            "type": "object",
            "propertyNames": {"pattern": _NO_NUL},
            "additionalProperties": {"$ref": "#/components/schemas/JsonValue"},
        },
    ],
}
JSON_VALUE_REF: dict[str, Any] = {"$ref": "#/components/schemas/JsonValue"}
#: An item's or folder's client metadata (``corral.jsoncodec.METADATA``), without its total size
#: and depth, which a schema cannot say.
METADATA_SCHEMA: dict[str, Any] = {
    "type": "object",
    "maxProperties": jsoncodec.METADATA.max_keys,
    "propertyNames": {"pattern": _NO_NUL, "maxLength": jsoncodec.METADATA.max_key_chars},
    "additionalProperties": JSON_VALUE_REF,
}
#: Responses any request can get from the request guard (``corral.api.limits``).
GUARD_RESPONSES = {
    "408": "The request's headers or body did not arrive within the read timeout.",
    "413": "The body is larger than this route's limit (the message names it).",
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
    components["JsonValue"] = JSON_VALUE_SCHEMA
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
            for status, description in GUARD_RESPONSES.items():
                responses.setdefault(status, _error(ref, description))
            responses.setdefault("default", _error(ref, "Any other error, in the same shape."))
            _free_form_values(operation, components)
    return schema


def _free_form_values(operation: dict[str, Any], components: dict[str, Any]) -> None:
    """Every JSON body is read under ``jsoncodec.REQUEST`` before its route sees it, so the keys
    and values a body's schema leaves open (a ``dict[str, Any]`` body, the unknown keys a model
    ignores) are JSON values under those limits: say so, so that values no route accepts are not
    published as valid."""
    for media in operation.get("requestBody", {}).get("content", {}).values():
        schema = media.get("schema", {})
        ref = schema.get("$ref", "")
        if ref.startswith("#/components/schemas/"):
            schema = components.get(ref.rsplit("/", 1)[1], {})
        if schema.get("type") != "object":
            continue
        schema.setdefault("propertyNames", {"pattern": _NO_NUL})
        if schema.get("additionalProperties", True) is True:
            schema["additionalProperties"] = JSON_VALUE_REF


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


#: A value that asks for nothing: the SDK sends options it does not use with one of these, and
#: ``refuse_unsupported`` lets them pass (any other value of an unknown option is a 400).
OFF_VALUE: dict[str, Any] = {
    "anyOf": [
        {"type": "null"},
        {"const": False},
        {"type": "array", "maxItems": 0},
        {"type": "object", "maxProperties": 0},
    ]
}


def json_body(schema: dict[str, Any]) -> dict[str, Any]:
    """``openapi_extra`` for a route that reads a free-form JSON body: ``schema`` is what its
    handler really accepts, published in place of the ``object`` FastAPI infers."""
    return {"requestBody": {"required": True, "content": {"application/json": {"schema": schema}}}}
