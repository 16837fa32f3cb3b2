"""Models of what a client sends: an unknown field is refused, never ignored.

pydantic ignores a field a model does not declare.  For a request body that is the worst answer:
``{"descripton": "…"}`` (a typo) or ``{"clientMetadata": …}`` (another API's spelling) would be
accepted and do nothing.  :class:`ClosedModel` refuses it with pydantic's ``extra_forbidden``
error at the field's own location, its message naming the fields the model accepts, as a query
parameter a route does not declare is refused (``corral.api.parsing``).  Every request body of the
native API and every provider's integration settings derive from it; the Encord-compatible routes
keep the SDK's own leniency where the SDK sends fields corral has no use for.
"""

from __future__ import annotations

from typing import Any

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
        try:
            return handler(data)
        except ValidationError as exc:
            found = exc.errors()
            if not any(_unknown_here(e) for e in found):
                raise
            accepted = ", ".join(accepted_fields(cls)) or "none"
            details: list[InitErrorDetails] = []
            for e in found:
                if _unknown_here(e):
                    kind = PydanticCustomError("extra_forbidden", UNKNOWN_FIELD, {"accepted": accepted})
                else:  # kept as it was: its type and message (no context, so taken verbatim)
                    kind = PydanticCustomError(e["type"], e["msg"])
                details.append({"type": kind, "loc": e["loc"], "input": e.get("input")})
            raise ValidationError.from_exception_data(exc.title, details) from None


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
