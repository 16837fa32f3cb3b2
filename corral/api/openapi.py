"""The published OpenAPI document, made to tell the truth about errors.

FastAPI documents a ``422`` with its own validation-error body on every operation that takes
parameters.  corral answers validation errors with ``400`` and its one error shape
(``corral.api.errors``), and the Encord SDK relies on that.  ``describe_errors`` rewrites the
generated document: no ``422``; ``400`` and ``401`` with the error schema where they can happen;
and a ``default`` response with the error schema for every other error status (403, 404, 405,
409, 413, 502, 504…).  The v1 RPC routes (``/public``…) document the SDK's envelope instead.
"""

from __future__ import annotations

import copy
import re
from collections.abc import Callable, Iterable
from typing import Any

from fastapi import FastAPI

from corral import jsoncodec
from corral.core import text_rules
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
        "message": {"type": "string", "description": "A 413's: the same as payload (what the SDK shows)."},
    },
}
_NO_NUL = "^[^\\x00]*$"
#: Any JSON value corral reads (``corral.jsoncodec.REQUEST``): text without NUL, integers within
#: 64 bits, finite numbers.  Every JSON body is parsed under these limits before its route reads it.
#: One schema, not an ``anyOf`` of one per type: each keyword applies to its own type only, and a
#: value can break the schema only by breaking a rule (a mutation into another JSON type is still
#: a JSON value).
JSON_VALUE_SCHEMA: dict[str, Any] = {
    "title": "JsonValue",
    "description": "Any JSON value, nested at most 64 levels; strings and keys hold no NUL, "
    "integers fit in 64 bits.",
    "type": ["null", "boolean", "integer", "number", "string", "array", "object"],
    "minimum": jsoncodec.MIN_INT,
    "maximum": jsoncodec.MAX_INT,
    "pattern": _NO_NUL,
    "items": {"$ref": "#/components/schemas/JsonValue"},
    "propertyNames": {"pattern": _NO_NUL},
    "additionalProperties": {"$ref": "#/components/schemas/JsonValue"},
}
JSON_VALUE_REF: dict[str, Any] = {"$ref": "#/components/schemas/JsonValue"}
#: ``json_schema_extra`` of a model field that holds any JSON value: published as a ``JsonValue``
#: (pydantic would try to resolve the ``$ref`` itself, so ``_limit`` puts it in).
ANY_JSON: dict[str, Any] = {"x-json-value": True}
#: An item's or folder's client metadata (``corral.jsoncodec.METADATA``), without its total size
#: and depth, which a schema cannot say.
METADATA_SCHEMA: dict[str, Any] = {
    "type": "object",
    "maxProperties": jsoncodec.METADATA.max_keys,
    "propertyNames": {"pattern": _NO_NUL, "maxLength": jsoncodec.METADATA.max_key_chars},
    "additionalProperties": JSON_VALUE_REF,
}
#: ``json_schema_extra`` of a model field that holds client metadata, or null.  The SDK may also
#: send the object as a JSON string (its ``json.dumps``), which corral parses and accepts; the
#: document states only the object, since no schema can say which strings hold one.
CLIENT_METADATA: dict[str, Any] = {"x-client-metadata": True}
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
    """``schema`` (a generated document) with corral's real error answers; changed in place
    (its paths and components copied first: they hold this module's constants by reference)."""
    for key in ("paths", "components"):
        if key in schema:
            schema[key] = copy.deepcopy(schema[key])
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
            _request_limits(operation, components)
    return schema


def _request_limits(operation: dict[str, Any], components: dict[str, Any]) -> None:
    """The rules every request meets before its route reads it, stated on each of its schemas:
    no NUL in the path or query (``corral.api.parsing.check_url``), and in a JSON body no NUL in
    any string and no integer beyond 64 bits (``corral.jsoncodec.REQUEST``)."""
    for parameter in operation.get("parameters", []):
        if parameter.get("in") in ("path", "query"):
            _limit(parameter.get("schema", {}), components, set())
    for media in operation.get("requestBody", {}).get("content", {}).values():
        if media is operation.get("requestBody", {}).get("content", {}).get("application/json"):
            _limit(media.get("schema", {}), components, set())


def _limit(schema: Any, components: dict[str, Any], seen: set[str]) -> None:
    """Add the request limits to ``schema`` and everything it holds (components once each)."""
    if not isinstance(schema, dict):
        return
    if schema.pop("x-json-value", False):
        schema["$ref"] = JSON_VALUE_REF["$ref"]
    if schema.pop("x-client-metadata", False):
        schema["anyOf"] = [METADATA_SCHEMA, {"type": "null"}]
    ref = schema.get("$ref", "")
    if ref.startswith("#/components/schemas/"):
        name = ref.rsplit("/", 1)[1]
        if name not in seen and name != "JsonValue":
            seen.add(name)
            _limit(components.get(name), components, seen)
        return
    types = schema.get("type")
    types = types if isinstance(types, list) else [types]
    if "string" in types and "format" not in schema and "enum" not in schema and "const" not in schema:
        if "pattern" not in schema:
            schema["pattern"] = _NO_NUL
        elif schema["pattern"] != _NO_NUL and {"pattern": _NO_NUL} not in schema.get("allOf", []):
            # a route's own pattern says its rule; the NUL rule holds as well (one schema has one
            # pattern, so it joins through allOf)
            schema.setdefault("allOf", []).append({"pattern": _NO_NUL})
    if "integer" in types:
        schema.setdefault("minimum", jsoncodec.MIN_INT)
        schema.setdefault("maximum", jsoncodec.MAX_INT)
    if ("object" in types or "properties" in schema) and schema.get("maxProperties") != 0:
        # the keys a model does not name are ignored (or refused by its own schema): JSON values
        schema.setdefault("propertyNames", {"pattern": _NO_NUL})
        if schema.get("additionalProperties", True) is True:
            schema["additionalProperties"] = JSON_VALUE_REF
    for key in ("items", "additionalProperties", "propertyNames", "not"):
        _limit(schema.get(key), components, seen)
    for key in ("properties", "$defs"):
        for sub in (schema.get(key) or {}).values():
            _limit(sub, components, seen)
    for key in ("anyOf", "oneOf", "allOf", "prefixItems"):
        for sub in schema.get(key) or []:
            _limit(sub, components, seen)


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


#: A query parameter whose values are known only once the app is built: (path, method, name)
#: and a function giving them (the same one its handler checks against).
RuntimeEnums = dict[tuple[str, str, str], Callable[[], Iterable[str]]]


def install(app: FastAPI, runtime_enums: RuntimeEnums | None = None) -> None:
    """Serve the rewritten document at the app's ``openapi_url``: wraps whatever builds it now
    (``corral.api.docs`` adds the security schemes), and rewrites it once."""
    inner = app.openapi
    done: list[int] = []

    def openapi() -> dict[str, Any]:
        schema = inner()
        if id(schema) not in done:
            describe_errors(schema)
            for (path, method, name), values in (runtime_enums or {}).items():
                for parameter in schema["paths"][path][method].get("parameters", []):
                    if parameter["name"] == name:
                        parameter["schema"]["enum"] = [*values(), None]
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


def one_of_each(values: Iterable[str]) -> dict[str, Any]:
    """``json_schema_extra`` of a repeated query parameter whose every value is one of ``values``
    (the tuple or mapping its handler checks against)."""
    return {"items": {"type": "string", "enum": list(values)}}


def comma_separated(values: Iterable[str]) -> dict[str, Any]:
    """``json_schema_extra`` of a repeated query parameter whose every value lists some of
    ``values``, separated by commas (blanks around and between them ignored)."""
    one = "|".join(re.escape(v) for v in values)
    b = f"[{text_rules.BLANKS}]*"  # what str.strip() removes, spelled out (see text_rules)
    pattern = rf"^{b}(?:(?:{one}){b})?(?:,{b}(?:(?:{one}){b})?)*{text_rules.END}"
    return {"items": {"type": "string", "pattern": pattern}}


#: ``json_schema_extra`` of an option corral declares but does not implement, refused unless it
#: asks for nothing (``corral.api.parsing.refuse_unless_default``): only its default is published.
ONLY_FALSE: dict[str, Any] = {"enum": [False]}
ONLY_EMPTY_LIST: dict[str, Any] = {"maxItems": 0}
ONLY_EMPTY_TEXT: dict[str, Any] = {"maxLength": 0}


def json_body(schema: dict[str, Any]) -> dict[str, Any]:
    """``openapi_extra`` for a route that reads a free-form JSON body: ``schema`` is what its
    handler really accepts, published in place of the ``object`` FastAPI infers."""
    return {"requestBody": {"required": True, "content": {"application/json": {"schema": schema}}}}
