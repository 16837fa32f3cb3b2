"""The metadata schema model, and its three wire forms.

An organisation's schema maps keys to ``Entry`` objects.  An entry has a ``kind`` (boolean,
datetime, number, uuid, varchar, text, enum, embedding, geospatial, user), the kind's
parameters, an optional ``required`` flag, and a deletion state: live, soft-deleted (a
tombstone that keeps the definition, so it can be restored) or hard-deleted (a tombstone
with nothing left; the name may later be reused with any type).

Wire forms:

* **native** (``/api/v1/metadata-schema``)::

      {"strict_metadata": false,
       "keys": {"camera": {"type": "varchar", "max_length": 200, "required": true},
                "weather": {"type": "enum", "values": ["rain", "snow"]},
                "clip": {"type": "embedding", "size": 512},
                "old": {"type": "text", "deleted": "soft"},
                "gone": {"deleted": "hard"}}}

* **encord** (the SDK's ``client-metadata-schema-v2``): ``{key: {"ty": ...}}`` with
  ``variant``/``hint`` scalars and ``tombstone``/``deleted_ty`` deletions.
* **legacy** (the SDK's deprecated flat form): ``{key: "datetime" | "string" | "enum" | ...}``.

Aliases are normalised on input: ``string`` → varchar, ``long_string`` → text.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import Any, Literal

from corral.core.metadata import embedding_api
from corral.core.metadata.embedding_api import EmbeddingApi
from corral.errors import ErrorDetail, ValidationFailed
from corral.jsoncodec import METADATA, int_summary, preview

Kind = Literal[
    "boolean", "datetime", "number", "uuid", "varchar", "text", "enum", "embedding", "geospatial", "user"
]
SCALARS: frozenset[str] = frozenset({"boolean", "datetime", "number", "uuid", "varchar", "text"})
KINDS: frozenset[str] = SCALARS | {"enum", "embedding", "geospatial", "user"}
ALIASES = {"string": "varchar", "long_string": "text"}
VARCHAR_MAX = 8192
ENUM_MAX = 256
ENUM_OPTION_MAX = 256  # characters per enum option (options can never be removed)
EMBEDDING_MAX = 4096
MAX_KEYS = 10_000
#: The most keys that may be required: as many as an item's metadata may hold.
MAX_REQUIRED = METADATA.max_keys or 1_000
MAX_KEY_LENGTH = 256
Deleted = Literal["soft", "hard"] | None


def _shown(value: object) -> str:
    """A value from the request as an error may quote it: short, whatever its size."""
    if isinstance(value, str):
        return preview(value)
    text = repr(value) if isinstance(value, (bool, float)) or value is None else type(value).__name__
    if isinstance(value, int) and not isinstance(value, bool):
        text = int_summary(value)
    return text


def key_problem(key: object) -> str | None:
    """Why ``key`` is not a valid metadata key, or None.  The same rule as the Encord SDK's."""
    if not isinstance(key, str):
        return "keys must be strings"
    if key == "":
        return "keys must not be empty"
    if key.startswith("$"):
        return "keys must not start with '$'"
    if len(key) > MAX_KEY_LENGTH:
        return f"keys are at most {MAX_KEY_LENGTH} characters"
    core = key.replace("-", "").replace("_", "").replace(" ", "").replace(".", "")
    if core == "":
        return "keys need at least one letter or digit"
    if core == "keyframes":
        return "'keyframes' is reserved"
    if not core.isalnum():
        bad = sorted({c for c in core if not c.isalnum()})
        return (
            f"keys may hold only letters, digits, spaces, '-', '_' and '.' (not {', '.join(map(repr, bad))})"
        )
    return None


@dataclass(frozen=True)
class Entry:
    kind: str | None  # None only for a hard-deleted key
    max_length: int | None = None  # varchar
    values: tuple[str, ...] = ()  # enum, sorted and unique
    size: int | None = None  # embedding
    number_format: Literal["F32", "F64"] = "F64"  # number
    api: EmbeddingApi | None = None  # embedding: the endpoint that embeds a text or an image
    metric: str | None = None  # embedding: cosine (the default), dot or l2, for similarity search
    required: bool = False
    deleted: Deleted = None

    @property
    def live(self) -> bool:
        return self.deleted is None

    def definition(self) -> Entry:
        """The type without the deletion state or flags (what a tombstone preserves)."""
        return replace(self, deleted=None, required=False)

    def same_type(self, other: Entry) -> bool:
        a, b = self.definition(), other.definition()
        return (a.kind, a.max_length, a.size, a.number_format) == (
            b.kind,
            b.max_length,
            b.size,
            b.number_format,
        )

    def describe(self) -> str:
        if self.kind is None:
            return "hard-deleted"
        if self.kind == "varchar" and self.max_length not in (None, VARCHAR_MAX):
            return f"varchar(max_length={self.max_length})"
        if self.kind == "enum":
            return f"enum({', '.join(self.values)})"
        if self.kind == "embedding":
            return f"embedding(size={self.size})"
        return self.kind


@dataclass(frozen=True)
class Schema:
    entries: dict[str, Entry] = field(default_factory=dict)
    strict_metadata: bool = False

    def live(self) -> dict[str, Entry]:
        return {k: e for k, e in self.entries.items() if e.live}


class _Problems:
    """Collects every problem in a document, so one error lists them all."""

    def __init__(self) -> None:
        self.details: list[ErrorDetail] = []

    def add(self, field: str, message: str) -> None:
        if len(self.details) < 100:  # enough to fix a document; never an answer the size of the input
            self.details.append(ErrorDetail(message, field=field))

    def raise_if_any(self, what: str) -> None:
        if self.details:
            summary = "; ".join(f"{d.field}: {d.message}" for d in self.details[:20])
            more = f" (and {len(self.details) - 20} more)" if len(self.details) > 20 else ""
            raise ValidationFailed(f"invalid {what}: {summary}{more}", details=self.details)


def _kind(raw: object, where: str, problems: _Problems) -> str | None:
    if not isinstance(raw, str):
        problems.add(where, f"expected a type name, got {_shown(raw)}")
        return None
    kind = ALIASES.get(raw, raw)
    if kind not in KINDS:
        problems.add(
            where, f"unknown type {_shown(raw)}; expected one of {', '.join(sorted(KINDS | set(ALIASES)))}"
        )
        return None
    return kind


def _int(raw: object, lo: int, hi: int, where: str, problems: _Problems) -> int | None:
    if not isinstance(raw, int) or isinstance(raw, bool) or not lo <= raw <= hi:
        problems.add(where, f"expected an integer from {lo} to {hi}, got {_shown(raw)}")
        return None
    return raw


def _enum_values(raw: object, where: str, problems: _Problems) -> tuple[str, ...]:
    if not isinstance(raw, list) or not raw:
        problems.add(where, "an enum needs a non-empty list of string options")
        return ()
    bad = [v for v in raw if not isinstance(v, str) or v == ""]
    if bad:
        shown = preview(bad[0]) if isinstance(bad[0], str) else type(bad[0]).__name__
        problems.add(where, f"enum options must be non-empty strings, not {shown}")
        return ()
    long = next((v for v in raw if len(v) > ENUM_OPTION_MAX), None)
    if long is not None:
        problems.add(
            where,
            f"an enum option has at most {ENUM_OPTION_MAX} characters, not {len(long):,}: {preview(long)}",
        )
        return ()
    values = tuple(sorted(set(raw)))
    if len(values) > ENUM_MAX:
        problems.add(where, f"an enum has at most {ENUM_MAX} options, not {len(values)}")
    return values


def _definition(kind: str, params: Mapping[str, Any], where: str, problems: _Problems) -> Entry:
    """Build an entry of ``kind`` from its parameters (native names)."""
    entry = Entry(kind=kind)
    if kind == "varchar" and params.get("max_length") is not None:
        max_length = _int(params["max_length"], 0, VARCHAR_MAX, f"{where}.max_length", problems)
        # The default spelled out is the default: it must compare equal to "no max_length".
        entry = replace(entry, max_length=None if max_length == VARCHAR_MAX else max_length)
    elif kind == "enum":
        entry = replace(entry, values=_enum_values(params.get("values"), f"{where}.values", problems))
    elif kind == "embedding":
        size = _int(params.get("size"), 1, EMBEDDING_MAX, f"{where}.size", problems)
        api = embedding_api.parse(params.get("api"), f"{where}.api", problems)
        metric = params.get("metric")
        if metric is not None and metric not in ("cosine", "dot", "l2"):
            problems.add(f"{where}.metric", f"expected cosine, dot or l2, got {_shown(metric)}")
            metric = None
        entry = replace(entry, size=size, api=api, metric=metric)
    elif kind == "number" and params.get("format") is not None:
        if params["format"] not in ("F32", "F64"):
            problems.add(f"{where}.format", f"expected F32 or F64, got {_shown(params['format'])}")
        else:
            entry = replace(entry, number_format=params["format"])
    return entry


# -- native ------------------------------------------------------------------------------------

_NATIVE_FIELDS = {"type", "max_length", "values", "size", "format", "api", "metric", "required", "deleted"}
#: The parameters of each kind (a parameter of another kind is refused, never silently dropped).
_PARAMETERS = {"max_length": "varchar", "values": "enum", "size": "embedding", "api": "embedding",
               "metric": "embedding", "format": "number"}


def _native_entry(raw: object, where: str, problems: _Problems) -> Entry | None:
    if not isinstance(raw, dict):
        problems.add(where, f'expected an object like {{"type": "varchar"}}, got {_shown(raw)}')
        return None
    unknown = sorted(set(raw) - _NATIVE_FIELDS)
    if unknown:
        problems.add(
            where, f"unknown field(s) {', '.join(unknown)}; expected {', '.join(sorted(_NATIVE_FIELDS))}"
        )
    deleted = raw.get("deleted")
    if deleted not in (None, "soft", "hard"):
        problems.add(f"{where}.deleted", f'expected "soft" or "hard", got {_shown(deleted)}')
        return None
    if deleted == "hard":
        return Entry(kind=None, deleted="hard")
    kind = _kind(raw.get("type"), f"{where}.type", problems)
    if kind is None:
        return None
    required = raw.get("required", False)
    if not isinstance(required, bool):
        problems.add(f"{where}.required", f"expected true or false, got {_shown(required)}")
        required = False
    for name in sorted(set(raw) & set(_PARAMETERS)):
        if raw[name] is not None and _PARAMETERS[name] != kind:
            problems.add(f"{where}.{name}", f"{name} is a parameter of {_PARAMETERS[name]} keys, not of "
                         f"{kind} keys: leave it out, or make the key {_PARAMETERS[name]}")
    entry = _definition(kind, raw, where, problems)
    return replace(entry, required=required and deleted is None, deleted=deleted)


def from_native(doc: object) -> Schema:
    problems = _Problems()
    if not isinstance(doc, dict):
        raise ValidationFailed(
            'a metadata schema is a JSON object with "keys"',
            details=[ErrorDetail("expected an object", field="schema")],
        )
    unknown = sorted(set(doc) - {"keys", "strict_metadata", "version"})
    if unknown:
        problems.add("schema", f"unknown field(s) {', '.join(unknown)}; expected keys, strict_metadata")
    version = doc.get("version")
    if version is not None and (not isinstance(version, int) or isinstance(version, bool) or version < 0):
        # (the version a read-modify-write started from: one it cannot check must not pass unchecked)
        problems.add("version", f"expected the version the document was read at (an integer from 0), "
                     f"got {_shown(version)}")
    strict = doc.get("strict_metadata", False)
    if not isinstance(strict, bool):
        problems.add("strict_metadata", f"expected true or false, got {_shown(strict)}")
        strict = False
    keys = doc.get("keys", {})
    if not isinstance(keys, dict):
        problems.add("keys", "expected an object mapping each key to its definition")
        keys = {}
    entries = _entries(keys, problems, _native_entry)
    required = sum(1 for e in entries.values() if e.required)
    if required > MAX_REQUIRED:  # every write would then be refused
        problems.add("keys", f"at most {MAX_REQUIRED:,} keys may be required (an item's metadata holds at "
                     f"most {MAX_REQUIRED:,} keys), not {required:,}")
    problems.raise_if_any("metadata schema")
    return Schema(entries, strict)


def _entries(raw: dict[str, Any], problems: _Problems, parse: Any) -> dict[str, Entry]:
    if len(raw) > MAX_KEYS:
        problems.add("keys", f"a schema has at most {MAX_KEYS} keys, not {len(raw)}")
        return {}
    entries: dict[str, Entry] = {}
    for key in sorted(raw):
        why = key_problem(key)
        if why:
            where = f"keys.{key}" if isinstance(key, str) and len(key) <= 300 else f"keys.{str(key)[:40]}…"
            problems.add(where, f"invalid key {preview(str(key))}: {why}")
            continue
        entry = parse(raw[key], f"keys.{key}", problems)
        if entry is not None:
            entries[key] = entry
    return entries


def to_native(schema: Schema) -> dict[str, Any]:
    keys: dict[str, Any] = {}
    for key in sorted(schema.entries):
        e = schema.entries[key]
        if e.kind is None:
            keys[key] = {"deleted": "hard"}
            continue
        out: dict[str, Any] = {"type": e.kind}
        if e.kind == "varchar" and e.max_length is not None:
            out["max_length"] = e.max_length
        if e.kind == "enum":
            out["values"] = list(e.values)
        if e.kind == "embedding":
            out["size"] = e.size
            if e.api is not None:
                out["api"] = e.api.native()
            if e.metric is not None:
                out["metric"] = e.metric
        if e.kind == "number" and e.number_format != "F64":
            out["format"] = e.number_format
        if e.required:
            out["required"] = True
        if e.deleted:
            out["deleted"] = e.deleted
        keys[key] = out
    return {"strict_metadata": schema.strict_metadata, "keys": keys}


# -- encord (SDK v2) -------------------------------------------------------------------------------

_HINTS = {"number", "varchar", "text", "boolean", "datetime", "uuid", "string", "long_string"}


def _encord_definition(raw: object, where: str, problems: _Problems) -> Entry | None:
    if not isinstance(raw, dict) or "ty" not in raw:
        problems.add(where, f'expected an object with a "ty" tag, got {_shown(raw)}')
        return None
    ty = raw["ty"]
    if ty == "variant":
        hint = raw.get("hint")
        if not isinstance(hint, str) or hint not in _HINTS:
            problems.add(f"{where}.hint", f"expected one of {', '.join(sorted(_HINTS))}, got {_shown(hint)}")
            return None
        return Entry(kind=ALIASES.get(hint, hint))
    if ty == "datetime" and raw.get("timezone", "UTC") != "UTC":
        problems.add(f"{where}.timezone", 'only "UTC" is supported')
    if isinstance(ty, str) and ty in KINDS:
        return _definition(ty, raw, where, problems)
    problems.add(f"{where}.ty", f"unknown type tag {_shown(ty)}")
    return None


def _encord_entry(raw: object, where: str, problems: _Problems) -> Entry | None:
    if isinstance(raw, dict) and raw.get("ty") == "tombstone":
        deleted_ty = raw.get("deleted_ty")
        if deleted_ty is None:
            return Entry(kind=None, deleted="hard")
        inner = _encord_definition(deleted_ty, f"{where}.deleted_ty", problems)
        return replace(inner, deleted="soft") if inner is not None else None
    return _encord_definition(raw, where, problems)


def from_encord(doc: object) -> Schema:
    problems = _Problems()
    if not isinstance(doc, dict):
        raise ValidationFailed(
            "the schema must be a JSON object mapping keys to types",
            details=[ErrorDetail("expected an object", field="schema")],
        )
    entries = _entries(doc, problems, _encord_entry)
    problems.raise_if_any("metadata schema")
    return Schema(entries)


def _encord_type(e: Entry) -> dict[str, Any]:
    if (
        e.kind in SCALARS
        and not (e.kind == "varchar" and e.max_length not in (None, VARCHAR_MAX))
        and not (e.kind == "number" and e.number_format != "F64")
    ):
        return {"ty": "variant", "hint": e.kind}
    if e.kind == "varchar":
        return {"ty": "varchar", "max_length": e.max_length}
    if e.kind == "number":
        return {"ty": "number", "format": e.number_format}
    if e.kind == "enum":
        return {"ty": "enum", "values": list(e.values)}
    if e.kind == "embedding":
        return {"ty": "embedding", "size": e.size, "api": e.api.encord() if e.api is not None else None}
    return {"ty": str(e.kind)}


def to_encord(schema: Schema) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key in sorted(schema.entries):
        e = schema.entries[key]
        if e.kind is None:
            out[key] = {"ty": "tombstone", "deleted_ty": None}
        elif e.deleted == "soft":
            out[key] = {"ty": "tombstone", "deleted_ty": _encord_type(e)}
        else:
            out[key] = _encord_type(e)
    return out


# -- legacy (SDK's deprecated flat form) --------------------------------------------------------------

LEGACY_TYPES = {"number", "string", "boolean", "datetime", "geospatial", "enum", "embedding", "long_string"}


def from_legacy(doc: object, current: Schema) -> Schema:
    """A flat ``{key: type}`` document.  Enum options and embedding sizes are not part of this
    form, so existing enum and embedding keys keep theirs; new ones cannot be created here."""
    problems = _Problems()
    if not isinstance(doc, dict):
        raise ValidationFailed(
            "the legacy schema is a JSON object mapping keys to type names",
            details=[ErrorDetail("expected an object", field="schema")],
        )

    def parse(raw: object, where: str, problems: _Problems) -> Entry | None:
        if not isinstance(raw, str) or raw not in LEGACY_TYPES:
            problems.add(where, f"expected one of {', '.join(sorted(LEGACY_TYPES))}, got {_shown(raw)}")
            return None
        kind = ALIASES.get(str(raw), str(raw))
        existing = current.entries.get(where.removeprefix("keys."))
        if (
            existing is not None
            and existing.live
            and _LEGACY_NAMES.get(str(existing.kind), existing.kind) == raw
        ):
            return existing  # unchanged in flat terms (a uuid shown as "string" stays a uuid)
        if kind in ("enum", "embedding"):
            if existing is not None and existing.live and existing.kind == kind:
                return existing
            problems.add(
                where,
                f"a new {kind} needs its {'options' if kind == 'enum' else 'size'}: "
                "use the metadata schema v2 form",
            )
            return None
        if existing is not None and existing.live and existing.kind == kind:
            return existing
        return Entry(kind=kind)

    entries = _entries(doc, problems, parse)
    problems.raise_if_any("legacy metadata schema")
    # Keys the flat form leaves out are deleted softly, never dropped.
    for key, entry in current.entries.items():
        if key not in entries:
            entries[key] = entry if not entry.live else replace(entry, deleted="soft", required=False)
    return Schema(entries, current.strict_metadata)


_LEGACY_NAMES = {"varchar": "string", "text": "long_string", "uuid": "string", "user": "string"}


def to_legacy(schema: Schema) -> dict[str, str]:
    return {k: _LEGACY_NAMES.get(str(e.kind), str(e.kind)) for k, e in sorted(schema.live().items())}


def keep_extensions(new: Schema, current: Schema) -> Schema:
    """The SDK's forms know nothing of ``required``, ``strict_metadata``, an embedding's ``metric``
    and its endpoint's ``timeout``: keep the current ones (the metric while the embedding keeps its
    size, the timeout while the endpoint's URL stays the same)."""
    entries = {}
    for key, entry in new.entries.items():
        old = current.entries.get(key)
        keep = old is not None and old.required and entry.live and entry.same_type(old)
        entry = replace(entry, required=True) if keep else entry
        if old is not None and entry.kind == "embedding" and entry.metric is None and entry.same_type(old):
            entry = replace(entry, metric=old.metric)  # (also in a tombstone, which restores with it)
        if old is not None and entry.api is not None and old.api is not None and entry.api.url == old.api.url:
            entry = replace(entry, api=replace(entry.api, timeout=old.api.timeout))
        entries[key] = entry
    return Schema(entries, current.strict_metadata)


Form = Literal["auto", "native", "encord", "legacy"]
_NATIVE_TOP = {"keys", "strict_metadata", "version"}


def detect_form(doc: object) -> str:
    if not isinstance(doc, dict) or not doc:
        return "native"
    keys = doc.get("keys")
    if set(doc) <= _NATIVE_TOP and (
        keys is None or (isinstance(keys, dict) and not isinstance(keys.get("ty"), str))
    ):
        return "native"
    if all(isinstance(v, dict) and isinstance(v.get("ty"), str) for v in doc.values()):
        return "encord"
    if all(isinstance(v, str) for v in doc.values()):
        return "legacy"
    return "native"


def parse_any(doc: object, current: Schema, form: Form = "auto") -> Schema:
    """Native (``{"keys": ...}``), Encord (``{key: {"ty": ...}}``) or legacy (``{key: "type"}``).

    The Encord and legacy forms keep the current ``required`` flags and ``strict_metadata``.
    """
    chosen = detect_form(doc) if form == "auto" else form
    if chosen == "encord":
        return keep_extensions(from_encord(doc), current)
    if chosen == "legacy":
        return keep_extensions(from_legacy(doc, current), current)
    return from_native(doc)
