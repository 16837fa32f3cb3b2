"""Validate and normalise custom metadata (``clientMetadata``) against a schema.

A ``Validator`` is compiled once per schema version: one small check function per key, looked
up in a dict, so validating an item costs one call per key it carries.  Checks return the
normalised value (datetimes as UTC ISO 8601, UUIDs lower-case and hyphenated, numbers as float,
embeddings as lists of float) or raise ``_Bad``.  Keys the schema does not know are kept as
given, unless the organisation has ``strict_metadata``.  ``null`` means "no value" for any key.

Before any schema check, the whole object must be storable JSON under
``corral.jsoncodec.METADATA`` (depth, size, key count, string and key lengths, 64-bit integers,
no NaN/Infinity, lone surrogate or NUL).  This is the one place both the validate route and
every write (items, folders, manifests, uploads) go through, so they cannot disagree.

``from_text=True`` compiles the variant for CSV cells, where every value arrives as a string:
numbers, booleans and embeddings are parsed from text, and an empty cell means "no value".
"""

from __future__ import annotations

import json
import math
import re
import uuid
from array import array
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from corral import jsoncodec
from corral.core.metadata.schema import Entry, Schema
from corral.core.vectors.store import MARKER, StoredVector, is_marker, marker

Check = Callable[[Any], Any]
_ZERO = timedelta(0)
_UUID = re.compile(r"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}\Z").match
_TRUE = {"true", "1", "yes", "y", "t"}
_FALSE = {"false", "0", "no", "n", "f"}
GEOJSON_TYPES = {
    "Point",
    "MultiPoint",
    "LineString",
    "MultiLineString",
    "Polygon",
    "MultiPolygon",
    "GeometryCollection",
    "Feature",
    "FeatureCollection",
}
_SKIP = object()  # an empty CSV cell: no value
_NUMBER_TYPES = frozenset({int, float})


class _Bad(Exception):
    def __init__(self, expected: str, why: str | None = None) -> None:
        self.expected = expected
        self.why = why


@dataclass(frozen=True)
class Problem:
    key: str | None
    value: Any
    expected: str
    why: str | None = None

    @property
    def message(self) -> str:
        if self.key is None:
            if self.why:
                return f"clientMetadata: {self.why}"
            return f"clientMetadata must be a JSON object, not {_show(self.value)}"
        if self.why:
            return f"{self.key!r}: {self.why} (expected {self.expected})"
        return f"{self.key!r} = {_show(self.value)} is not {self.expected}"


def _show(value: Any) -> str:
    if isinstance(value, str) and len(value) > 60:
        return f"a string of {len(value)} characters"
    if isinstance(value, list) and len(value) > 8:
        return f"a list of {len(value)} items"
    if isinstance(value, dict) and len(value) > 8:
        return f"an object of {len(value)} keys"
    if isinstance(value, int) and not isinstance(value, bool):
        return jsoncodec.int_summary(value)
    try:
        text = json.dumps(value, default=str) if not isinstance(value, str) else repr(value)
    except (ValueError, RecursionError):  # a deep or odd value: name its kind only
        return type(value).__name__
    return text if len(text) <= 80 else text[:77] + "..."


def _storable(meta: dict[str, Any]) -> Problem | None:
    """The first reason corral could not store ``meta`` at all (``jsoncodec.METADATA``)."""
    found = jsoncodec.problem(meta, jsoncodec.METADATA)
    if found is None:
        return None
    if not found.path:
        return Problem(None, None, "storable JSON", found.message)
    return Problem(found.path.lstrip("."), None, "storable JSON", found.message)


def describe(problems: list[Problem], what: str = "clientMetadata") -> str:
    """One sentence for all of an item's problems (the caller puts the item's name in front, or
    names the metadata as ``what``, e.g. ``itemPatches.<id>.clientMetadata``)."""
    if len(problems) == 1:
        return f"invalid {what}: {problems[0].message}"
    return f"invalid {what} ({len(problems)} problems): " + "; ".join(p.message for p in problems)


# -- checks, one per kind -----------------------------------------------------------------------


def _number(v: Any) -> float:
    t = type(v)
    if t is float:
        if v - v == 0.0:  # False for inf and nan
            return v  # type: ignore[no-any-return]
        raise _Bad("a finite number")
    if t is int:
        try:
            return float(v)
        except OverflowError:
            raise _Bad("a number", "too large for a 64-bit float") from None
    raise _Bad("a number")


def _boolean(v: Any) -> bool:
    if v is True or v is False:
        return v
    raise _Bad("true or false")


def _text(v: Any) -> str:
    if type(v) is str:
        return v
    raise _Bad("a string (text)")


def _varchar(max_length: int) -> Check:
    expected = f"a string of at most {max_length} characters (varchar)"

    def check(v: Any) -> str:
        if type(v) is str:
            if len(v) <= max_length:
                return v
            raise _Bad(expected, f"{len(v)} characters is longer than varchar allows ({max_length})")
        raise _Bad(expected)

    return check


def _uuid(v: Any) -> str:
    if type(v) is str:
        if _UUID(v):
            return v.lower()
        try:
            return str(uuid.UUID(v))
        except ValueError:
            pass
    raise _Bad("a UUID like 123e4567-e89b-12d3-a456-426614174000")


# What isoformat() itself writes for a UTC instant: ASCII digits, and six of a fraction only when it
# is not zero (isoformat() leaves a zero fraction out, so ``.000000`` is not kept: one instant, one
# stored string, whichever spelling the metadata used).
_CANONICAL_UTC = re.compile(
    r"[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}(?:\.(?!000000)[0-9]{6})?(Z|\+00:00)\Z").match


def _datetime(given: Any) -> str:
    if type(given) is str:
        v: str = given[:-1] + "Z" if given[-1:] == "z" else given  # RFC 3339 allows z as it does t
        try:
            d = datetime.fromisoformat(v)
        except ValueError:
            raise _Bad("an ISO 8601 date-time like 2024-05-01T12:30:00Z") from None
        canonical = _CANONICAL_UTC(v)
        if canonical:  # already UTC in isoformat()'s own shape: only the suffix may differ
            return v[:-1] + "+00:00" if canonical.group(1) == "Z" else v
        if d.tzinfo is None:
            d = d.replace(tzinfo=UTC)  # no offset given: taken as UTC
        elif d.utcoffset() != _ZERO:
            try:
                d = d.astimezone(UTC)
            except OverflowError:  # 0001-01-01T00:00:00+01:00 is before the first UTC instant
                raise _Bad("an ISO 8601 date-time from 0001-01-01T00:00:00Z to "
                           "9999-12-31T23:59:59Z") from None
        return d.isoformat()
    raise _Bad("an ISO 8601 date-time string like 2024-05-01T12:30:00Z")


def _enum(values: tuple[str, ...]) -> Check:
    options = frozenset(values)
    shown = ", ".join(values[:20]) + (f", … ({len(values)} in all)" if len(values) > 20 else "")
    expected = f"one of the enum options ({shown})"

    def check(v: Any) -> str:
        if type(v) is str and v in options:
            return v
        raise _Bad(expected)

    return check


_FLOAT32_MAX = 3.4028234663852886e38


def _embedding(size: int, metric: str | None = None) -> Check:
    expected = f"a list of {size} finite numbers (embedding)"
    cosine = (metric or "cosine") == "cosine"

    def check(v: Any) -> Any:
        if type(v) is not list:
            if (is_marker(v) or isinstance(v, StoredVector)) and v[MARKER]["dim"] == size:
                return v  # sent back as read (the stored vector stays), or validated already
            if is_marker(v):
                # Read before the key was re-sized, whose vectors went with the old size: every
                # item written back as read (an SDK update, a merge) carries one.  Kept as the key's
                # marker, which has no vector now and reads as missing, rather than refusing the
                # whole write over a value its writer never chose.
                return marker(size)
            raise _Bad(expected)
        stored = _numbers(v, size, expected)
        if cosine and stored.vector is not None:
            if not stored.vector.any():
                raise _Bad(expected, ZERO_UNDER_COSINE)
            stored.directed = True  # (the write need not look again: vectors.writes.misfit)
        return stored

    return check


#: Why an all-zeros vector is refused under cosine (its similarity to anything is 0/0).
ZERO_UNDER_COSINE = (
    "all its numbers are 0 (as 32-bit floats): a zero vector has no direction, so its cosine "
    "similarity is undefined (the key's metric is cosine; under dot or l2 it may be stored)"
)


def embedding_numbers(v: Any, size: int) -> StoredVector:
    """``v`` as the numbers of an embedding of ``size`` (the stored values' rule: a list of
    ``size`` finite numbers within float32's range, no booleans or strings), for a search's
    query vector; raises ``ValueError`` saying what is wrong."""
    expected = f"a list of {size} finite numbers"
    if type(v) is not list:
        raise ValueError(f"expected {expected}")
    try:
        return _numbers(v, size, expected)
    except _Bad as bad:
        raise ValueError(bad.why or f"expected {bad.expected}") from None


def _numbers(v: list[Any], size: int, expected: str) -> StoredVector:
    if len(v) != size:
        raise _Bad(expected, f"{len(v)} numbers where the embedding has {size}")
    if not set(map(type, v)) <= _NUMBER_TYPES:  # also rules out booleans, which array("d") takes
        raise _Bad(expected, "it holds something that is not a number")
    try:
        floats = array("d", v)
    except OverflowError:
        raise _Bad(expected, "it holds a number too large for a 64-bit float") from None
    total = sum(floats)
    # A finite sum means no NaN or infinity; only an overflowing sum needs the exact check.
    if total - total != 0.0 and not all(map(math.isfinite, floats)):
        raise _Bad(expected, "it holds NaN or infinity")
    if floats and max(max(floats), -min(floats)) > _FLOAT32_MAX:
        raise _Bad(expected, "it holds a number beyond a 32-bit float's range (vectors are stored "
                   "as 32-bit floats)")
    return StoredVector(floats)  # its JSON is the marker; the store keeps the numbers


def _geospatial(v: Any) -> dict[str, Any]:
    if type(v) is dict and v.get("type") in GEOJSON_TYPES:
        return v
    raise _Bad('a GeoJSON object such as {"type": "Point", "coordinates": [lon, lat]}')


def _user(v: Any) -> str:
    if type(v) is str and v:
        return v
    raise _Bad("a user id or email (a non-empty string)")


def check_for(entry: Entry) -> Check:
    kind = entry.kind
    if kind == "number":
        return _number
    if kind == "boolean":
        return _boolean
    if kind == "text":
        return _text
    if kind == "varchar":
        return _varchar(entry.max_length if entry.max_length is not None else 8192)
    if kind == "uuid":
        return _uuid
    if kind == "datetime":
        return _datetime
    if kind == "enum":
        return _enum(entry.values)
    if kind == "embedding":
        return _embedding(entry.size or 0, entry.metric)
    if kind == "geospatial":
        return _geospatial
    if kind == "user":
        return _user
    raise ValueError(f"no check for {kind!r}")


# -- CSV cells --------------------------------------------------------------------------------------


def _from_text(kind: str | None, check: Check) -> Check:
    """Parse a CSV cell for ``kind``, then apply the JSON check."""

    def cell(v: Any) -> Any:
        if type(v) is not str:
            return check(v)
        s = v.strip()
        if s == "":
            return _SKIP
        if kind == "number":
            try:
                return check(float(s))
            except ValueError:
                raise _Bad("a number") from None
        if kind == "boolean":
            low = s.lower()
            if low in _TRUE:
                return True
            if low in _FALSE:
                return False
            raise _Bad("true or false")
        if kind in ("datetime", "uuid", "enum", "user"):
            return check(s)  # surrounding spaces are never part of these values
        if kind in ("embedding", "geospatial"):
            try:
                return check(json.loads(s))
            except ValueError:
                raise _Bad(
                    "a JSON " + ("array of numbers" if kind == "embedding" else "GeoJSON object")
                ) from None
        return check(v)

    return cell


# -- the validator -----------------------------------------------------------------------------------


#: How many shapes (key tuples, in order) of metadata one ``Validator`` compiles (see ``_compile``):
#: a manifest's entries have one or a few; any beyond these are validated as they always were.
SHAPES = 64
#: A shape of more keys than this is not compiled (its function's source grows with its keys).
SHAPE_KEYS = 64
_UNSEEN = object()


class Validator:
    def __init__(self, schema: Schema, *, from_text: bool = False) -> None:
        self.schema = schema  # (what another process rebuilds this from: closures do not pickle)
        live = schema.live()
        checks = {key: check_for(entry) for key, entry in live.items()}
        if from_text:
            checks = {key: _from_text(live[key].kind, c) for key, c in checks.items()}
        self._checks = checks
        self._live = live
        self._required = tuple((k, e.describe()) for k, e in sorted(live.items()) if e.required)
        self._strict = schema.strict_metadata
        self._from_text = from_text
        #: each shape's compiled check, or None where only ``_validate`` answers (``_compile``)
        self._shapes: dict[tuple[Any, ...], Callable[[dict[str, Any]], dict[str, Any] | None] | None] = {}

    def _compile(self, shape: tuple[Any, ...]) -> Callable[[dict[str, Any]], dict[str, Any] | None] | None:
        """One function for metadata whose keys are ``shape``, in that order (a manifest's entries
        all have the same few): each value checked inline (the common kinds) or by its key's check,
        in one call with no per-key look-up, loop or ``Problem``; it returns the normalised
        metadata ``_validate`` would, or None for anything else (a value refused, a required key
        null), which ``_validate`` then answers with its problems.  The keys are constants of the
        function's namespace, never part of its source text."""
        if self._from_text or len(self._shapes) >= SHAPES:
            return None  # (a CSV cell's checks parse text: not compiled)
        checks, required = self._checks, {k for k, _ in self._required}
        compiled: Callable[[dict[str, Any]], dict[str, Any] | None] | None = None
        if len(shape) <= SHAPE_KEYS and required <= set(shape) and not (
                self._strict and any(k not in checks for k in shape)):
            names: dict[str, Any] = {"_Bad": _Bad}
            lines = []
            for i, key in enumerate(shape):
                names[f"K{i}"] = key
                check = checks.get(key)
                if check is None:
                    continue  # kept as given
                body = self._inline(i, self._live[key], check, names)
                if key in required:
                    lines += [f"if a{i} is None: return None", *body]
                else:
                    lines += [f"if a{i} is not None:", *("    " + line for line in body)]
            values = "".join(f"a{i}, " for i in range(len(shape)))
            source = "\n".join([
                "def compiled(meta):",
                "    try:",
                f"        {values}= meta.values()" if shape else "        pass",
                *("        " + line for line in lines),
                "    except (_Bad, OverflowError):",  # (_validate raises what it would raise)
                "        return None",
                "    return {" + ", ".join(f"K{i}: a{i}" for i in range(len(shape))) + "}",
            ])
            exec(compile(source, f"<metadata validator {len(self._shapes)}>", "exec"), names)  # noqa: S102
            compiled = names["compiled"]
        self._shapes[shape] = compiled
        return compiled

    @staticmethod
    def _inline(i: int, entry: Entry, check: Check, names: dict[str, Any]) -> list[str]:
        """Lines checking (and normalising) value ``a{i}`` as ``check`` does; None if refused."""
        a, kind = f"a{i}", entry.kind
        if kind == "number":  # as _number
            return [f"if type({a}) is float:", f"    if {a} - {a} != 0.0: return None",
                    f"elif type({a}) is int: {a} = float({a})", "else: return None"]
        if kind == "boolean":  # as _boolean
            return [f"if {a} is not True and {a} is not False: return None"]
        if kind == "text":  # as _text
            return [f"if type({a}) is not str: return None"]
        if kind == "varchar":  # as _varchar
            names[f"M{i}"] = entry.max_length if entry.max_length is not None else 8192
            return [f"if type({a}) is not str or len({a}) > M{i}: return None"]
        if kind == "enum":  # as _enum
            names[f"E{i}"] = frozenset(entry.values)
            return [f"if type({a}) is not str or {a} not in E{i}: return None"]
        names[f"C{i}"] = check
        return [f"{a} = C{i}({a})"]  # (raises _Bad)

    def _explain(self, meta: dict[str, Any], unstorable: Problem) -> Problem:
        """For a schema key holding an unstorable value (NaN, a 400-digit integer), the schema's
        own words (``is not a finite number``) say it best."""
        for key, value in meta.items():
            check = self._checks.get(key)
            if check is not None and jsoncodec.problem({key: value}, jsoncodec.METADATA) is not None:
                try:
                    check(value)
                except _Bad as bad:
                    return Problem(key, value, bad.expected, bad.why)
                break
        return unstorable

    def validate(self, meta: Any, *, storable: bool = False) -> tuple[dict[str, Any], list[Problem]]:
        """(normalised metadata, problems).  Store the first only when the second is empty.

        ``storable``: the caller has already refused ``meta`` unless ``jsoncodec.problem(meta,
        jsoncodec.METADATA)`` found nothing (a manifest entry: ``corral.registration.manifest``),
        so that screen, a serialisation of the whole value, is not run a second time."""
        if type(meta) is not dict:
            if meta is None:
                meta = {}
            else:
                return {}, [Problem(None, meta, "a JSON object")]
        unstorable = None if storable else _storable(meta)
        if unstorable is not None:
            return {}, [self._explain(meta, unstorable)]
        shape = tuple(meta)
        compiled = self._shapes.get(shape, _UNSEEN)
        if compiled is _UNSEEN:
            compiled = self._compile(shape)
        if compiled is not None:
            out = compiled(meta)  # type: ignore[operator]
            if out is not None:
                return out, []
        return self._validate(meta)

    def _validate(self, meta: dict[str, Any]) -> tuple[dict[str, Any], list[Problem]]:
        """``validate`` key by key: the reference the compiled shapes must agree with."""
        checks = self._checks
        out: dict[str, Any] = {}
        problems: list[Problem] = []
        for key, value in meta.items():
            check = checks.get(key)
            if check is None:
                if self._strict:
                    problems.append(
                        Problem(
                            key,
                            value,
                            "a key of the metadata schema",
                            "this organisation accepts only keys in its metadata schema",
                        )
                    )
                else:
                    out[key] = value
                continue
            if value is None:
                out[key] = None
                continue
            try:
                normalised = check(value)
            except _Bad as bad:
                problems.append(Problem(key, value, bad.expected, bad.why))
                continue
            if normalised is not _SKIP:
                out[key] = normalised
        for key, described in self._required:
            if meta.get(key) is None or (key not in out and not any(p.key == key for p in problems)):
                problems.append(Problem(key, None, described, "this key is required"))
        return out, problems


def normaliser(entry: Entry) -> Callable[[Any], Any]:
    """``entry``'s check, answering None for a value it refuses instead of raising (the index
    projects only the values that fit a key's current definition)."""
    check = check_for(entry)

    def normalise(v: Any) -> Any:
        if v is None:
            return None
        try:
            return check(v)
        except _Bad:
            return None

    return normalise
