"""One JSON codec, with one set of rules, for everything corral stores and reads back.

Every JSON column (item and folder metadata, job payloads and results, label rows, presets…)
is written with :func:`dumps` and read with :func:`loads`; every JSON text a client sends is
parsed with :func:`parse`; every value that came in another way (a manifest, a CSV cell) is
checked with :func:`check` (or :func:`problem`) before it is stored.  The rules, in one place:

* only JSON values: objects with string keys, arrays, strings, booleans, null, integers and
  finite numbers;
* integers from -2**63 to 2**63-1 (64-bit; anything larger is refused, never turned into a
  float);
* no NaN, Infinity or a number that overflows a double (``1e999``);
* no lone surrogate (``"\\ud800"``) in a key or a string: it has no UTF-8 form;
* no NUL character (``"\\u0000"``) in a key or a string: PostgreSQL cannot store it in text
  or JSONB, and SQLite would then hold what PostgreSQL refuses;
* no key twice in one object (``{"path": "a", "path": "b"}``): a parser would keep one of
  them, and not every parser the same one;
* at most ``Limits.max_depth`` levels of nesting, and, where a ``Limits`` sets them, at most
  so many characters per string and per key, keys per object and bytes in all.

``REQUEST`` holds for every JSON body and every JSON text in a parameter; ``METADATA`` (tighter)
for client metadata (items, folders, manifests).  A refusal names the field's path and quotes at
most a short prefix of what was sent.

:func:`dumps` writes only what :func:`loads` reads back equal, on SQLite and PostgreSQL: it
refuses (``Unstorable``) instead of falling back to a lossy or unreadable form.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any

import orjson

from corral.errors import ErrorDetail, ValidationFailed

MAX_INT = 2**63 - 1
MIN_INT = -(2**63)
_BIG = float(2**63)  # a float this large may stand for an integer literal orjson could not keep
_PREVIEW = 40


@dataclass(frozen=True)
class Limits:
    """What a JSON value may hold; None means "not limited here" (the body size caps it)."""

    max_depth: int
    max_bytes: int | None = None
    max_string_chars: int | None = None
    max_key_chars: int | None = None
    max_keys: int | None = None  # per object


#: Every JSON request body, and JSON texts in parameters.
REQUEST = Limits(max_depth=64)
#: What a JSON column can hold at all (what ``dumps`` writes and ``loads`` reads back).
STORED = Limits(max_depth=254)
#: Client metadata of an item or folder (the whole object, as stored).
METADATA = Limits(
    max_depth=32, max_bytes=1 << 20, max_string_chars=262_144, max_key_chars=256, max_keys=1_000
)


class Unstorable(ValidationFailed):
    """A value that corral's JSON columns cannot hold (raised by :func:`dumps`)."""


@dataclass(frozen=True)
class Problem:
    """The first thing wrong with a value: where (``.a[3].b``, empty for the value itself) and why."""

    path: str
    message: str

    def at(self, field: str) -> str:
        where = f"{field}{self.path}" if field else self.path.lstrip(".") or "(the value)"
        return where if len(where) <= 200 else f"{where[:80]}…{where[-100:]}"

    def refusal(self, field: str = "") -> ValidationFailed:
        where = self.at(field)
        return ValidationFailed(f"{where}: {self.message}", details=[ErrorDetail(self.message, field=where)])


def preview(text: str, limit: int = _PREVIEW) -> str:
    """A short, printable quotation of ``text`` (``repr``, so NULs and lone surrogates show as
    escapes): never more than ``limit`` characters of it."""
    if len(text) <= limit:
        return repr(text)
    return f"{text[:limit]!r}… ({len(text):,} characters)"


def int_summary(v: int) -> str:
    """An integer as a message may quote it: itself if short, else how long it is (a 5,000-digit
    integer cannot even be turned into text by default)."""
    if -(10**24) < v < 10**24:
        return str(v)
    return f"an integer of about {int(v.bit_length() * 0.30103) + 1:,} digits"


def key_path(key: str) -> str:
    if key.isidentifier() and len(key) <= _PREVIEW:
        return f".{key}"
    return f"[{preview(key)}]"


def _text_problem(s: str, limit: int | None, what: str) -> str | None:
    if limit is not None and len(s) > limit:
        return f"{what} of {len(s):,} characters is longer than the limit of {limit:,}: {preview(s)}"
    if "\x00" in s:
        return f"{what} holds a NUL character (\\u0000), which cannot be stored: {preview(s)}"
    if not s.isascii():
        try:
            s.encode("utf-8")
        except UnicodeEncodeError:
            return f"{what} holds a lone surrogate (such as \\ud800), which is not Unicode text: {preview(s)}"
    return None


def _scalar_problem(v: Any, limits: Limits) -> str | None:
    t = type(v)
    if t is str:
        return _text_problem(v, limits.max_string_chars, "a string")
    if t is int:
        if MIN_INT <= v <= MAX_INT:
            return None
        return f"{int_summary(v)} is outside the 64-bit range (-2**63 to 2**63-1)"
    if t is float:
        if v - v == 0.0:
            return None
        return "NaN and infinite numbers are not JSON"
    if v is None or t is bool:
        return None
    return f"a {t.__name__} is not a JSON value"


#: The deepest nesting orjson writes (levels of objects and arrays; deeper raises its
#: ``JSONEncodeError``, a ``TypeError``): a limit at least this deep holds for whatever it wrote.
#: (``STORED``: a job unit's payload of 5,000 manifest entries is then screened by one
#: serialisation, not walked value by value.)
ORJSON_MAX_DEPTH = 254


def _surely_fine(value: Any, limits: Limits) -> bool:
    """A fast screen for the common case (a small object of plain values), on orjson's output:
    True only if every rule certainly holds.  Each test is conservative (a brace inside a
    string counts as nesting, a colon as a key), so False means only "walk it"."""
    if type(value) is not dict:
        return False
    try:  # refuses lone surrogates, non-string keys and (strict) integers beyond 53 bits
        out = orjson.dumps(value, option=orjson.OPT_STRICT_INTEGER)
    except TypeError:
        return False
    size = len(out)
    if b"null" in out or b"\\u0000" in out:
        return False  # NaN/Infinity (written as null), NUL
    if limits.max_bytes is not None and size > limits.max_bytes:
        return False
    if limits.max_string_chars is not None and size > limits.max_string_chars:
        return False
    # One "{" in all: the object itself is the only one, so its keys are all the keys (lists
    # of numbers, such as an embedding, cost nothing here).  Otherwise only a small value
    # passes the screen; the walk looks at the rest.
    objects = out.count(b"{")
    flat = objects == 1
    max_keys, max_key = limits.max_keys, limits.max_key_chars
    if max_keys is not None and len(value) > max_keys:
        return False
    if max_key is not None and size > max_key:
        if not flat or max(map(len, value), default=0) > max_key:
            return False
    if not flat and max_keys is not None and size > max_keys:
        return False
    if limits.max_depth >= ORJSON_MAX_DEPTH:
        return True  # orjson wrote it, so it is nested no deeper than the limit
    return size <= limits.max_depth or objects + out.count(b"[") <= limits.max_depth


def problem(value: Any, limits: Limits = REQUEST) -> Problem | None:
    """The first problem in ``value`` under ``limits``, or None if corral can store it.

    Iterative (a value nested 100,000 deep costs no recursion), and stops at the first problem.
    """
    return None if _surely_fine(value, limits) else _walk(value, limits)


def _walk(value: Any, limits: Limits) -> Problem | None:
    max_depth, max_keys, max_key = limits.max_depth, limits.max_keys, limits.max_key_chars
    stack: list[tuple[Any, int, str]] = [(value, 0, "")]
    while stack:
        node, depth, path = stack.pop()
        t = type(node)
        if t is dict:
            if depth >= max_depth:
                return Problem(path, f"nested more than {max_depth} levels deep")
            if max_keys is not None and len(node) > max_keys:
                return Problem(path, f"an object with {len(node):,} keys; the limit is {max_keys:,}")
            for k, v in node.items():
                if type(k) is not str:
                    return Problem(path, f"an object key must be a string, not {type(k).__name__}")
                bad = _text_problem(k, max_key, "a key")
                if bad is not None:
                    return Problem(path, bad)
                vt = type(v)
                if vt is dict or vt is list:
                    stack.append((v, depth + 1, path + key_path(k)))
                else:
                    bad = _scalar_problem(v, limits)
                    if bad is not None:
                        return Problem(path + key_path(k), bad)
        elif t is list:
            if depth >= max_depth:
                return Problem(path, f"nested more than {max_depth} levels deep")
            for i, v in enumerate(node):
                vt = type(v)
                if vt is dict or vt is list:
                    stack.append((v, depth + 1, f"{path}[{i}]"))
                else:
                    bad = _scalar_problem(v, limits)
                    if bad is not None:
                        return Problem(f"{path}[{i}]", bad)
        else:
            bad = _scalar_problem(node, limits)
            if bad is not None:
                return Problem(path, bad)
    if limits.max_bytes is not None:
        size = len(orjson.dumps(value))
        if size > limits.max_bytes:
            return Problem("", f"{size:,} bytes of JSON is more than the limit of {limits.max_bytes:,}")
    return None


def check(value: Any, limits: Limits = REQUEST, field: str = "") -> Any:
    """``value`` if corral can store it under ``limits``, else ``ValidationFailed`` naming the field."""
    found = problem(value, limits)
    if found is not None:
        raise found.refusal(field)
    return value


# -- parsing what clients send ----------------------------------------------------------------------


class _BigInt:
    """An integer literal outside 64 bits, kept as text so the check can name where it is."""

    __slots__ = ("digits",)

    def __init__(self, digits: str) -> None:
        self.digits = digits


def _exact_int(text: str) -> int | _BigInt:
    digits = len(text) - (text[0] == "-")
    if digits < 19:
        return int(text)
    if digits <= 20:
        number = int(text)
        if MIN_INT <= number <= MAX_INT:
            return number
    return _BigInt(text)


def _has_big_float(value: Any) -> bool:
    stack = [value]
    while stack:
        node = stack.pop()
        t = type(node)
        if t is dict:
            stack.extend(node.values())
        elif t is list:
            stack.extend(node)
        elif t is float and abs(node) >= _BIG:
            return True
    return False


def _big_int_problem(value: Any) -> Problem | None:
    stack: list[tuple[Any, str]] = [(value, "")]
    while stack:
        node, path = stack.pop()
        if type(node) is dict:
            stack.extend((v, path + key_path(k)) for k, v in node.items())
        elif type(node) is list:
            stack.extend((v, f"{path}[{i}]") for i, v in enumerate(node))
        elif type(node) is _BigInt:
            digits = node.digits.lstrip("-")
            return Problem(
                path,
                f"an integer of {len(digits):,} digits ({preview(node.digits, 24)}) is outside the "
                "64-bit range (-2**63 to 2**63-1)",
            )
    return None


def parse(text: bytes | str, limits: Limits = REQUEST, field: str = "") -> Any:
    """Parse JSON a client sent, under ``limits``: ``ValidationFailed`` (400) for anything else.

    Invalid JSON and nesting beyond 1,024 levels are refused by the parser (NaN, Infinity and a
    lone surrogate too, naming the field that holds them); the rest of the rules by
    :func:`check`.  An integer literal beyond 64 bits is refused, not read as a float; a key
    given twice in one object is refused, not read as its last value.
    """
    try:
        value = orjson.loads(text)
    except orjson.JSONDecodeError as exc:
        if "infinity" in exc.msg:  # perhaps an integer of hundreds of digits: say so
            _refuse_big_ints(text, field)
        _refuse_where_python_reads(text, limits, field)
        where = field or "request body"
        reason = "nested more than 1,024 levels deep" if "depth limit" in exc.msg else exc.msg
        message = f"{where} is not JSON ({reason} at line {exc.lineno}, column {exc.colno})"
        if isinstance(text, bytes) and (bad := not_utf8(text)) is not None:
            # (orjson says "str is not valid UTF-8: surrogates not allowed at line 1, column 1")
            message = f"{where} is not JSON: it is not valid UTF-8: {bad}; send JSON as UTF-8"
        raise ValidationFailed(message, details=[ErrorDetail(message, field=field or "body")]) from None
    check(value, limits, field)
    if _has_big_float(value):
        # orjson reads an integer literal beyond 64 bits as a float; read it again exactly.
        _refuse_big_ints(text, field)
    _refuse_duplicate_keys(text, value, field)
    return value


def not_utf8(data: bytes) -> str | None:
    """Where ``data`` stops being UTF-8 (``line 1, column 10 (byte 0xe9)``, as the manifest
    reader says it), or None."""
    try:
        data.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = data.count(b"\n", 0, exc.start) + 1
        column = len(data[data.rfind(b"\n", 0, exc.start) + 1:exc.start].decode("utf-8", "replace")) + 1
        return f"line {line}, column {column} (byte 0x{data[exc.start]:02x})"
    return None


#: The end of a key: a quote, blanks, a colon.  Every key in a JSON text ends so; a string value
#: may too (``": "``), so the count is at least the number of keys written.
_KEY_END = re.compile(rb'"[ \t\r\n]*:')
_KEY_END_TEXT = re.compile(r'"[ \t\r\n]*:')


def _key_count(value: Any) -> int:
    """How many keys the objects in ``value`` hold, at every level."""
    count = 0
    stack = [value]
    pop, push = stack.pop, stack.append
    while stack:
        node = pop()
        if type(node) is dict:
            count += len(node)
            node = node.values()
        for child in node:
            kind = type(child)
            if kind is dict or kind is list:
                push(child)
    return count


def may_repeat_keys(text: bytes | str, value: Any, start: int = 0, end: int | None = None) -> bool:
    """Whether the JSON text ``text[start:end]``, which decoded to ``value``, may write a key twice
    in one object; ``False`` means it certainly does not.

    Without ``\\u`` escapes, a text holds as many quotes as orjson's writing of ``value`` (each
    string is quoted in both, a quote inside one is ``\\"`` in both), plus two for each key
    written again and the quotes of the value it replaced: the two counts, taken at C speed,
    tell.  With escapes, the key ends (a quote, blanks, a colon: at least one per key written)
    are compared with the keys ``value`` holds.
    """
    stop = len(text) if end is None else end
    if isinstance(text, str):
        quote, backslash, escape, key_end = '"', "\\", "\\u", _KEY_END_TEXT
    else:
        quote, backslash, escape, key_end = b'"', b"\\", b"\\u", _KEY_END  # type: ignore[assignment]
    quotes = text.count(quote, start, stop)  # type: ignore[arg-type]
    if quotes == 0:
        return False
    if text.find(backslash, start, stop) == -1 or text.find(escape, start, stop) == -1:  # type: ignore[arg-type]
        try:
            return quotes != orjson.dumps(value).count(b'"')
        except TypeError:  # an integer beyond 64 bits (orjson writes none): count the keys
            pass
    return len(key_end.findall(text, start, stop)) != _key_count(value)  # type: ignore[arg-type]


class _DuplicateKey(ValueError):
    def __init__(self, key: str) -> None:
        super().__init__(key)
        self.key = key


def _no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    out = dict(pairs)
    if len(out) != len(pairs):
        seen: set[str] = set()
        for key, _ in pairs:
            if key in seen:
                raise _DuplicateKey(key)
            seen.add(key)
    return out


def duplicate_key(text: bytes | str, value: Any) -> Problem | None:
    """A key written twice in one object of the JSON text ``text`` (which decoded to ``value``:
    orjson, like ``json``, keeps the last), or ``None``: cheap unless the text holds more key
    ends than ``value`` holds keys, when it is read again, looking."""
    if not may_repeat_keys(text, value):
        return None
    try:
        json.loads(text, object_pairs_hook=_no_duplicates)
    except _DuplicateKey as dup:
        return Problem(_holder_of(value, dup.key), duplicate_key_message(dup.key))
    except (ValueError, RecursionError):
        return None
    return None


def duplicate_key_message(key: str) -> str:
    return f"the key {preview(key)} is given more than once in one object"


def _refuse_duplicate_keys(text: bytes | str, value: Any, field: str) -> None:
    """Refuse a key written twice in one object (see :func:`duplicate_key`)."""
    found = duplicate_key(text, value)
    if found is not None:
        raise found.refusal(field)


def _holder_of(value: Any, key: str) -> str:
    """The path of the first object in ``value`` that holds ``key``, and the key: where a
    duplicated key is."""
    stack: list[tuple[Any, str]] = [(value, "")]
    while stack:
        node, path = stack.pop()
        if type(node) is dict:
            if key in node:
                return path + key_path(key)
            stack.extend((v, path + key_path(k)) for k, v in reversed(node.items()))
        elif type(node) is list:
            stack.extend((v, f"{path}[{i}]") for i, v in reversed(list(enumerate(node))))
    return ""


def _refuse_where_python_reads(text: bytes | str, limits: Limits, field: str) -> None:
    """A text orjson refuses but Python's reader takes (``NaN``, ``Infinity``, ``1e999``, a lone
    surrogate): refused naming the field that holds it.  The Encord SDK writes a NaN coordinate
    as ``NaN`` (``json.dumps``), and "not JSON at line 1, column 1190" did not say which."""
    try:
        value = json.loads(text)
    except (ValueError, RecursionError):
        return
    check(value, limits, field)


def _refuse_big_ints(text: bytes | str, field: str) -> None:
    try:
        exact = json.loads(text, parse_int=_exact_int)
    except (ValueError, RecursionError):
        return
    found = _big_int_problem(exact)
    if found is not None:
        raise found.refusal(field)


class NotJson(ValidationFailed):
    """A request body that is not one well-formed JSON object (raised by
    :func:`parse_object_leaving`, before any of the rules is applied)."""


@dataclass(frozen=True)
class Verbatim:
    """A member of a request body kept as its JSON text (``parse_object_leaving``), for a reader
    that judges it part by part (the manifest reader, entry by entry)."""

    text: bytes


def parse_object_leaving(text: bytes, verbatim: frozenset[str], limits: Limits = REQUEST,
                         at: tuple[str, ...] = ()) -> tuple[dict[str, Any], dict[str, bytes]]:
    """A JSON object a client sent, with the members named in ``verbatim`` of the object at the
    path ``at`` (the body itself by default; ``("values", "payload")`` is the object in the body's
    ``values`` member's ``payload`` member) kept as their own JSON text (well-formed, but not judged
    here) and everything else parsed under ``limits``, as :func:`parse` would: the same rules, the
    same paths in a refusal, a key given twice refused (one of the kept members included).

    For a body that carries a document judged elsewhere, entry by entry: the Encord SDK's upload
    jobs send the whole manifest as one member (``externalFiles``, or a v1 call's
    ``values.payload.files``), and the manifest reader refuses a NUL character, an integer beyond
    64 bits or ``1e999`` in one entry as that entry's error, which ``ignore_errors`` then reports
    beside the good entries.  Parsed with the rest of the body, the same value refused the whole
    request (the entries the native import registers).

    A body that is not one well-formed JSON object is refused with :class:`NotJson`.  Where ``at``
    does not lead to an object (null, a list), nothing is kept.
    """
    try:
        doc = text.decode("utf-8")
    except UnicodeDecodeError as exc:
        message = f"request body is not UTF-8 (byte offset {exc.start})"
        raise NotJson(message, details=[ErrorDetail(message, field="body")]) from None
    spans: list[tuple[str, int, int]] = []
    try:
        end = _object_spans(doc, _space(doc, 0), at, verbatim, spans, top=True)
        if _space(doc, end) != len(doc):
            raise json.JSONDecodeError("extra data after the JSON object", doc, _space(doc, end))
    except json.JSONDecodeError as exc:
        message = f"request body is not JSON ({exc.msg} at line {exc.lineno}, column {exc.colno})"
        raise NotJson(message, details=[ErrorDetail(message, field="body")]) from None
    except RecursionError:
        message = "request body is nested too deeply"
        raise NotJson(message, details=[ErrorDetail(message, field="body")]) from None
    # The rest is the body with each kept value blanked to "0" and spaces (line breaks kept): the
    # same structure, so the same paths in a refusal and the same lines and columns.
    parts, last = [], 0
    for _, begin, stop in spans:
        blank = "\n".join(" " * len(line) for line in doc[begin + 1:stop].split("\n"))
        parts += [doc[last:begin], "0", blank]
        last = stop
    parts.append(doc[last:])
    rest = parse("".join(parts), limits)
    kept: dict[str, bytes] = {}
    if spans:  # then every member on the path ``at`` is an object, and given once (or refused)
        holder = rest
        for key in at:
            holder = holder[key]
        for key, begin, stop in spans:
            kept[key] = doc[begin:stop].encode()
            del holder[key]
    return rest, kept


def _object_spans(doc: str, i: int, at: tuple[str, ...], verbatim: frozenset[str],
                  spans: list[tuple[str, int, int]], top: bool = False) -> int:
    """Check the object at ``doc[i]`` is well-formed JSON (numbers and constants are not built:
    the reader of a kept member reads them) and note where each kept member's value is (its
    name, start, end); return where the object ends."""
    lenient = _LENIENT
    if doc[i:i + 1] != "{":
        if top:
            raise json.JSONDecodeError("expected a JSON object", doc, i)
        return int(lenient.raw_decode(doc, i)[1])
    i = _space(doc, i + 1)
    while doc[i:i + 1] != "}":
        if doc[i:i + 1] != '"':
            raise json.JSONDecodeError("expected a member name in double quotes", doc, i)
        key, i = json.decoder.scanstring(doc, i + 1)  # type: ignore[attr-defined]
        i = _space(doc, i)
        if doc[i:i + 1] != ":":
            raise json.JSONDecodeError("expected ':'", doc, i)
        i = _space(doc, i + 1)
        value_at = i
        if at and key == at[0]:
            i = _object_spans(doc, i, at[1:], verbatim, spans)
        else:
            _, i = lenient.raw_decode(doc, i)
            if not at and key in verbatim:
                spans.append((key, value_at, i))
        i = _space(doc, i)
        if doc[i:i + 1] == ",":
            i = _space(doc, i + 1)
            if doc[i:i + 1] == "}":
                raise json.JSONDecodeError("expected a member after ','", doc, i)
        elif doc[i:i + 1] != "}":
            raise json.JSONDecodeError("expected ',' or '}'", doc, i)
    return i + 1


#: Well-formedness only: numbers and constants are not built.
_LENIENT = json.JSONDecoder(parse_int=lambda _: None, parse_float=lambda _: None,
                            parse_constant=lambda _: None)


def _space(doc: str, i: int) -> int:
    while i < len(doc) and doc[i] in " \t\n\r":
        i += 1
    return i


# -- storage ----------------------------------------------------------------------------------------


def dumps(value: Any) -> str:
    """JSON text for a JSON column.  Refuses (``Unstorable``), never degrades: no integer beyond
    64 bits, no NaN or infinity, no lone surrogate, no NUL, no nesting beyond 254 levels.
    (Non-string keys become strings, as JSON requires.)"""
    try:
        out = orjson.dumps(value, option=orjson.OPT_NON_STR_KEYS)
    except TypeError as exc:
        found = problem(value, STORED)
        message = found.message if found is not None else str(exc)
        where = found.path.lstrip(".") if found is not None and found.path else None
        raise Unstorable(
            f"cannot store this JSON value: {where + ': ' if where else ''}{message}",
            details=[ErrorDetail(message, field=where)],
        ) from None
    if b"null" in out:  # orjson writes NaN and infinity as null: the C encoder tells them apart
        try:
            json.dumps(value, allow_nan=False, default=str)
        except ValueError:
            message = "NaN and infinite numbers are not JSON"
            raise Unstorable(f"cannot store this JSON value: {message}",
                             details=[ErrorDetail(message)]) from None
    if b"\\u0000" in out:  # a NUL, or perhaps only the text "\\u0000": look closer
        found = problem(value, STORED)
        if found is not None:
            where = found.path.lstrip(".") or None
            raise Unstorable(f"cannot store this JSON value: {found.message}",
                             details=[ErrorDetail(found.message, field=where)])
    return out.decode()


def loads(text: str | bytes) -> Any:
    """Read a JSON column.  orjson, and for what it refuses (an integer of hundreds of digits that
    an older corral let through) the standard library, so such a row can still be read and fixed."""
    try:
        return orjson.loads(text)
    except orjson.JSONDecodeError:
        return json.loads(text, parse_int=_lenient_int)


def _lenient_int(text: str) -> int | str:
    return int(text) if len(text) < 4300 else text  # beyond Python's int-from-text limit: the digits
