"""Models of what a client sends: an unknown field is refused, never ignored.

pydantic ignores a field a model does not declare.  For a request body that is the worst answer:
``{"descripton": "…"}`` (a typo) or ``{"clientMetadata": …}`` (another API's spelling) would be
accepted and do nothing.  :class:`ClosedModel` refuses it with pydantic's ``extra_forbidden``
error at the field's own location, its message naming the fields the model accepts, as a query
parameter a route does not declare is refused (``corral.api.parsing``).  Every request body of the
native API and every provider's integration settings derive from it; the Encord-compatible routes
keep the SDK's own leniency where the SDK sends fields corral has no use for.

A scalar field takes only its own JSON type: pydantic's lax mode read ``"page_size": true`` as
1, ``"2"`` as 2, and ``"exist_ok": "yes"`` or ``1`` as true.  A ``bool`` field takes ``true``
or ``false``; an ``int`` field an integer (``2.0`` is one, as in JSON Schema; not a boolean, a
string or ``2.5``);
a ``float`` field a number (not a boolean or a string); a ``str`` field a string.  Each other
value is refused at the field, naming the type expected and the type sent.
"""

from __future__ import annotations

import types
from typing import Any, Union, get_args, get_origin

from pydantic import BaseModel, ConfigDict, ValidationError, model_validator
from pydantic_core import InitErrorDetails, PydanticCustomError
from pydantic_core.core_schema import ValidatorFunctionWrapHandler

#: The message of an unknown field (``accepted`` lists the model's fields).
UNKNOWN_FIELD = "unknown field (accepted: {accepted})"


class ClosedModel(BaseModel):
    """A model whose input may hold only the fields it declares (by their names or aliases)."""

    model_config = ConfigDict(extra="forbid")

    @model_validator(mode="wrap")
    @classmethod
    def _name_accepted_fields(cls, data: Any, handler: ValidatorFunctionWrapHandler) -> Any:
        wrong = _wrong_scalars(cls, data)
        try:
            result = handler(data)
        except ValidationError as exc:
            found = exc.errors()
            if not wrong and not any(_unknown_here(e) for e in found):
                raise
        else:
            if not wrong:
                return result
            found = []
        accepted = ", ".join(accepted_fields(cls)) or "none"
        refused = {w["loc"] for w in wrong}
        details: list[InitErrorDetails] = list(wrong)
        for e in found:
            if e["loc"][:1] in refused:
                continue  # said already, by its JSON type
            if _unknown_here(e):
                kind = PydanticCustomError("extra_forbidden", UNKNOWN_FIELD, {"accepted": accepted})
            else:  # kept as it was: its type and message (no context, so taken verbatim)
                kind = PydanticCustomError(e["type"], e["msg"])
            details.append({"type": kind, "loc": e["loc"], "input": e.get("input")})
        raise ValidationError.from_exception_data(cls.__name__, details) from None


_EXPECTED = {bool: "expected a boolean (true or false)", int: "expected an integer",
             float: "expected a number", str: "expected a string"}


def _wrong_scalars(model: type[BaseModel], data: Any) -> list[InitErrorDetails]:
    """A refusal for each scalar field of ``model`` whose value in ``data`` is of another JSON type."""
    if not isinstance(data, dict):
        return []
    wrong: list[InitErrorDetails] = []
    for name, (kind, nullable) in _scalar_fields(model).items():
        if name not in data:
            continue
        value = data[name]
        if (value is None and nullable) or _is_json_type(value, kind):
            continue
        kind_error = PydanticCustomError(f"{kind.__name__}_type", _EXPECTED[kind] + ", not {sent}",
                                         {"sent": _json_type_name(value)})
        wrong.append({"type": kind_error, "loc": (name,), "input": value})
    return wrong


def _is_json_type(value: Any, kind: type) -> bool:
    t = type(value)
    if kind is float:
        return t is int or t is float
    if kind is int and t is float:  # JSON Schema's integer: 2.0 is one, as the document says
        return bool(value.is_integer())
    return t is kind


def _json_type_name(value: Any) -> str:
    if value is None:
        return "null"
    names = {bool: "a boolean", int: "an integer", float: "a number", str: "a string", list: "an array",
             dict: "an object"}
    return names.get(type(value), type(value).__name__)


def _scalar_of(annotation: Any) -> tuple[type, bool] | None:
    """``(bool|int|float|str, nullable)`` for a field of one of those types (or Optional), else None."""
    if annotation in (bool, int, float, str):
        return annotation, False
    origin = get_origin(annotation)
    if origin is Union or origin is types.UnionType:
        args = [a for a in get_args(annotation) if a is not type(None)]
        if len(args) == 1 and args[0] in (bool, int, float, str) and len(get_args(annotation)) == 2:
            return args[0], True
    return None


_SCALARS: dict[type, dict[str, tuple[type, bool]]] = {}


def _scalar_fields(model: type[BaseModel]) -> dict[str, tuple[type, bool]]:
    """The scalar fields of ``model`` by every name a client may send them under."""
    found = _SCALARS.get(model)
    if found is None:
        config = model.model_config
        by_name = bool(config.get("populate_by_name") or config.get("validate_by_name"))
        found = {}
        for name, field in model.model_fields.items():
            scalar = _scalar_of(field.annotation)
            if scalar is None:
                continue
            alias = field.validation_alias if isinstance(field.validation_alias, str) else field.alias
            found[alias or name] = scalar
            if by_name or not alias:
                found[name] = scalar
        _SCALARS[model] = found
    return found


def _unknown_here(error: Any) -> bool:
    """An unknown field of this model itself (a nested model's own are named by that model)."""
    return bool(error["type"] == "extra_forbidden" and len(error["loc"]) == 1
                and error["msg"] == "Extra inputs are not permitted")


def accepted_fields(model: type[BaseModel]) -> list[str]:
    """The names a client may send: each field's alias where it has one, else its name (and its
    name too where the model populates by name)."""
    by_name = bool(model.model_config.get("populate_by_name") or model.model_config.get("validate_by_name"))
    names: set[str] = set()
    for name, field in model.model_fields.items():
        alias = field.validation_alias if isinstance(field.validation_alias, str) else field.alias
        names.add(alias or name)
        if by_name or not alias:
            names.add(name)
    return sorted(names)
