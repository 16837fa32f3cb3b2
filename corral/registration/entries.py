"""What a registration manifest's entries are made of, shared by the JSON and CSV readers.

The results (:class:`Entry`, :class:`EntryError`, :class:`ManifestFlags`), the whole-file error
(:class:`ManifestUnreadable`), and the checks of each field (URLs, titles, client metadata, media
properties) with their messages.  ``corral.registration.manifest`` is the public entry point
(format detection, flags, streaming entries); this module imports neither reader.

Limits (per field / per entry; the number of entries is not limited)
--------------------------------------------------------------------
* Object URL: a non-empty string of at most 16,384 bytes of UTF-8 (16 KB), with no whitespace
  (``str.isspace``) and no control character anywhere, that starts with a scheme (``s3://``,
  ``gs://``, ``az://``, ``https://``, ``file://``, …, anything ``[A-Za-z][A-Za-z0-9+.-]*://``
  followed by something) or with ``/``.  With a ``placeholderItemUuid`` the URL is the object key
  corral minted itself, so only the first three rules apply.  Scope (bucket, integration) is
  *not* checked here.
* Title: at most 300 characters, no control characters.  Default: the URL's last path segment
  (percent-decoded for ``http``/``https``/``file`` URLs; query and fragment dropped for those);
  a URL that ends in ``/`` has none, and then a title is required.  The raw JSON
  ``image_groups`` and ``dicom_series`` require a title; the typed ``imageGroups`` and
  ``dicomSeries`` (where the SDK makes it optional) default to their first file's name.
* One JSON entry: at most 8 MiB of JSON text (estimated from its keys and values) and at most
  64 levels of nesting; one CSV image group / DICOM series: at most 8 MiB of cell text.  CSV
  cells are limited by ``csv.field_size_limit()`` (131,072 characters by default) and CSV lines
  by 8 MiB.  The JSON tokenizer holds one whole string token in memory, so a single
  multi-gigabyte string is not bounded by corral.
* JSON integers beyond 64 bits are fine; decimals are read as floats, and one that overflows a
  double (``1e999``) makes its entry an error.  A lone-surrogate ``\\uD800`` escape makes the
  manifest unreadable, named by its line and column (yajl read one followed by more text as
  ``?``, silently changing a URL, title or key: ``manifest_json._lone_surrogate``).
* Media properties (``*Metadata`` objects, CSV media columns): ``fps``/``duration`` positive
  numbers (floats); ``width``, ``height``, ``sample_rate``, ``bit_depth``, ``num_channels``,
  ``num_pages`` positive integers and ``file_size`` a non-negative one (integral floats such as
  ``640.0`` are accepted; at most 2**63-1); ``mime_type`` ``type/subtype`` (lower-cased);
  ``codec`` a non-empty string of at most 100 characters.  ``null`` means not given.
* Client metadata must be an object (or a JSON string holding one); its content is not
  checked here (the metadata schema does that later).
"""


from __future__ import annotations

import difflib
import json
import math
import re
import uuid
from collections.abc import Iterable
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any, Literal
from urllib.parse import unquote, urlsplit

from corral import jsoncodec
from corral.errors import InvalidInput
from corral.jsoncodec import int_summary

DataType = Literal[
    "video", "image", "image_group", "image_sequence", "dicom_series", "nifti", "audio", "text", "pdf"
]
Format = Literal["json", "csv"]

MAX_URL_BYTES = 16_384
MAX_TITLE_CHARS = 300
MAX_ENTRY_BYTES = 8 << 20
MAX_DEPTH = 64
MAX_INT = 2**63 - 1


@dataclass(frozen=True)
class Entry:
    """One valid manifest entry: a single file, or the ordered frames / slices of a group.

    ``media`` holds the client-supplied media properties in snake_case (see ``MEDIA_FIELDS``);
    for an image group / sequence whose frames carry properties, ``media["frames"]`` is a list
    with one dict of image properties per URL.  ``frame_info`` holds other per-frame data given
    by the client (``title``, ``placeholder_item_uuid``, ``dicom_tags``), one dict per URL, or
    ``()`` when there is none.
    """

    seq: int
    where: str
    data_type: DataType
    urls: tuple[str, ...]
    title: str
    client_metadata: dict[str, Any]
    media: dict[str, Any]
    placeholder_item_uuid: str | None = None
    frame_info: tuple[dict[str, Any], ...] = field(default=())


_new_object = object.__new__
_set_attribute = object.__setattr__


def new_entry(
    seq: int,
    where: str,
    data_type: DataType,
    urls: tuple[str, ...],
    title: str,
    client_metadata: dict[str, Any],
    media: dict[str, Any],
    placeholder_item_uuid: str | None = None,
) -> Entry:
    """``Entry(...)`` (no ``frame_info``) without the frozen dataclass's ``__init__``, which sets
    each of its nine fields through ``object.__setattr__``: a manifest builds one an entry."""
    entry = _new_object(Entry)
    _set_attribute(entry, "__dict__", {
        "seq": seq, "where": where, "data_type": data_type, "urls": urls, "title": title,
        "client_metadata": client_metadata, "media": media,
        "placeholder_item_uuid": placeholder_item_uuid, "frame_info": (),
    })
    return entry


@dataclass(frozen=True)
class EntryError:
    """One bad entry: where it is (``videos[3]``, ``line 12, column ImageUrl``) and every problem."""

    seq: int | None
    where: str
    message: str
    url: str | None = None


@dataclass(frozen=True)
class ManifestFlags:
    skip_duplicate_urls: bool = False
    upsert_metadata: bool = False


class ManifestUnreadable(InvalidInput):
    """The manifest as a whole cannot be read (syntax, encoding, structure)."""


BOM = b"\xef\xbb\xbf"


# -- messages ---------------------------------------------------------------------------------


def describe(value: Any) -> str:
    """A value as a JSON user would name it: ``a list``, ``the string 'x'``, ``12.5``, ``null``."""
    if value is None:
        return "null"
    if value is True or value is False:
        return "true" if value else "false"
    if isinstance(value, int):
        return int_summary(value)
    if isinstance(value, float):
        return repr(value)
    if isinstance(value, Decimal):  # a number of the streaming reader (ijson)
        return str(value)
    if isinstance(value, str):
        shown = value if len(value) <= 60 else value[:57] + "..."
        return f"the string {shown!r}"
    if isinstance(value, list):
        return "a list"
    if isinstance(value, dict):
        return "an object"
    return type(value).__name__


def unknown_keys_message(unknown: Iterable[str], accepted: Iterable[str], what: str = "key") -> str:
    """``unknown key 'object_url' (did you mean 'objectUrl'?), accepted keys: a, b, c``.

    Entry problems are joined with ``"; "``, so no single message contains one.
    """
    accepted = sorted(accepted)
    by_norm = {normalise_name(a): a for a in accepted}
    unknown = list(unknown)
    parts = []
    for key in unknown[:10]:
        shown = key if len(key) <= 60 else key[:57] + "..."
        guess = by_norm.get(normalise_name(key))
        if guess is None:
            close = difflib.get_close_matches(key, accepted, n=1, cutoff=0.75)
            guess = close[0] if close else None
        parts.append(f"{shown!r} (did you mean {guess!r}?)" if guess else repr(shown))
    if len(unknown) > 10:
        parts.append(f"and {len(unknown) - 10} more")
    plural = "s" if len(unknown) > 1 else ""
    return f"unknown {what}{plural} {', '.join(parts)}, accepted {what}s: {', '.join(accepted)}"


def normalise_name(name: str) -> str:
    """Case-, space-, ``_``- and ``-``-insensitive form of a key or column name."""
    return re.sub(r"[\s_-]+", "", name).lower()


def short_url(url: str) -> str:
    return url if len(url) <= MAX_URL_BYTES else url[:MAX_URL_BYTES] + "..."


# -- URLs and titles --------------------------------------------------------------------------

_SCHEME_URL = re.compile(r"[A-Za-z][A-Za-z0-9+.-]*://.")
_BAD_URL_CHAR = re.compile(r"[\s\x00-\x1f\x7f-\x9f\ud800-\udfff]")
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f\ud800-\udfff]")
_CHAR_NAMES = {" ": "a space", "\t": "a tab", "\n": "a line break", "\r": "a carriage return"}


def _char_name(ch: str) -> str:
    return _CHAR_NAMES.get(ch, f"U+{ord(ch):04X}")


def check_url(value: Any, name: str, problems: list[str], *, placeholder: bool = False) -> str | None:
    """The URL if ``value`` is an acceptable object URL; else ``None`` with a problem appended."""
    if value is None:
        problems.append(f"{name} is required (a string URL)")
        return None
    if not isinstance(value, str):
        problems.append(f"{name} must be a string URL, got {describe(value)}")
        return None
    if not value:
        problems.append(f"{name} must not be empty")
        return None
    # (a printable string holds no control character, surrogate or whitespace but the space)
    bad = None if value.isprintable() and " " not in value else _BAD_URL_CHAR.search(value)
    if bad:
        ch = bad.group()
        kind = "whitespace" if ch.isspace() else "control characters"
        problems.append(
            f"{name} must not contain {kind} (found {_char_name(ch)} at character {bad.start() + 1})"
        )
        return None
    if len(value) * 4 > MAX_URL_BYTES:
        size = len(value.encode("utf-8", "surrogatepass"))
        if size > MAX_URL_BYTES:
            problems.append(
                f"{name} is {size} bytes long, more than the {MAX_URL_BYTES} bytes (16 KB) allowed"
            )
            return None
    if not placeholder and not value.startswith("/") and not _has_scheme(value):
        problems.append(
            f"{name} must be a URL with a scheme (s3://, gs://, az://, https://, file://, …) "
            f"or an absolute path starting with '/', got {describe(value)}"
        )
        return None
    return value


_SCHEMES: set[str] = set()  # schemes seen to match _SCHEME_URL (each a known prefix of it)


def _has_scheme(value: str) -> bool:
    """``_SCHEME_URL.match(value)``, with the few schemes a manifest uses remembered.  The
    scheme's characters exclude ":", so the first "://" ends it."""
    at = value.find("://")
    if at > 0 and value[:at] in _SCHEMES and len(value) > at + 3 and value[at + 3] != "\n":
        return True
    if _SCHEME_URL.match(value) is None:
        return False
    if len(_SCHEMES) < 64:
        _SCHEMES.add(value[:at])
    return True


def file_name(url: str) -> str:
    """The last path segment of ``url`` (percent-decoded for http, https and file URLs)."""
    scheme = url.split("://", 1)[0].lower() if "://" in url else ""
    if scheme in ("http", "https", "file"):
        try:
            path = urlsplit(url).path
        except ValueError:
            path = url
        segment = path.rsplit("/", 1)[-1]
        decoded = unquote(segment)
        return segment if _CONTROL.search(decoded) or "/" in decoded else decoded
    return url.rsplit("/", 1)[-1]


def check_title(
    value: Any, name: str, problems: list[str], *, default_from: str | None, required: str | None = None
) -> str | None:
    """A title: the given one, else the file name of ``default_from``.

    ``required`` (e.g. ``"image groups"``) makes a missing or empty title an error.
    """
    if value is not None and not isinstance(value, str):
        problems.append(f"{name} must be a string, got {describe(value)}")
        return None
    title = value.strip() if isinstance(value, str) else ""  # as every item name and CSV cell is
    if not title:
        if required is not None:
            problems.append(f"{name} is required for {required} (a non-empty string)")
            return None
        if default_from is None:
            return None  # the URL is bad; that is reported already
        derived = file_name(default_from)
        if not derived:
            problems.append(f"{name} is required: the URL ends with '/', so it has no file name to use")
            return None
        if len(derived) > MAX_TITLE_CHARS:
            problems.append(
                f"the file name taken from the URL is {len(derived)} characters long, more than the "
                f"{MAX_TITLE_CHARS} allowed: give a {name}"
            )
            return None
        return derived
    if len(title) > MAX_TITLE_CHARS:
        problems.append(f"{name} is {len(title)} characters long, more than the {MAX_TITLE_CHARS} allowed")
        return None
    bad = None if title.isprintable() else _CONTROL.search(title)  # (see check_url)
    if bad:
        problems.append(f"{name} must not contain control characters (found {_char_name(bad.group())})")
        return None
    return title


def _no_constants(name: str) -> Any:
    raise ValueError(f"{name} is not a JSON number")


def _finite(text: str) -> float:
    number = float(text)
    if not math.isfinite(number):
        raise ValueError(f"the number {text} is too large (it does not fit a double)")
    return number


def check_client_metadata(value: Any, name: str, problems: list[str]) -> dict[str, Any]:
    """An object, or a JSON string holding one (as CSV cells do); ``null``/absent is ``{}``."""
    if value is None:
        return {}
    if isinstance(value, dict):
        return value
    if isinstance(value, str):
        if not value.strip():
            return {}
        try:
            parsed = json.loads(value, parse_constant=_no_constants, parse_float=_finite)
        except (ValueError, RecursionError) as exc:
            reason = exc.msg if isinstance(exc, json.JSONDecodeError) else str(exc) or "too deeply nested"
            problems.append(f"{name} is a string but not valid JSON ({reason})")
            return {}
        if not isinstance(parsed, dict):
            problems.append(f"{name} must hold a JSON object, got {describe(parsed)}")
            return {}
        # No key twice, as in every JSON text corral reads (the rest of the rules for stored
        # metadata are applied to every entry's metadata, whatever its form: ``manifest``).
        found = jsoncodec.duplicate_key(value, parsed)
        if found is not None:
            problems.append(f"{found.at(name)}: {found.message}")
            return {}
        return parsed
    problems.append(f"{name} must be an object (or a JSON string holding one), got {describe(value)}")
    return {}


def check_uuid(value: Any, name: str, problems: list[str]) -> str | None:
    if value is None:
        return None
    if isinstance(value, str):
        try:
            return str(uuid.UUID(value))
        except ValueError:
            pass
    problems.append(f"{name} must be a UUID string, got {describe(value)}")
    return None


def check_bool(value: Any, name: str, problems: list[str]) -> bool:
    if value is None:
        return False
    if value is True or value is False:
        return bool(value)
    problems.append(f"{name} must be true or false, got {describe(value)}")
    return False


# -- media properties -------------------------------------------------------------------------

#: snake_case media fields accepted per kind (the key of the ``*Metadata`` object it comes from).
MEDIA_FIELDS: dict[str, tuple[str, ...]] = {
    "video": ("fps", "duration", "width", "height", "file_size", "mime_type"),
    "image": ("width", "height", "file_size", "mime_type"),
    "audio": ("duration", "file_size", "mime_type", "sample_rate", "bit_depth", "codec", "num_channels"),
    "text": ("file_size", "mime_type"),
    "pdf": ("file_size", "num_pages"),
}
CAMEL = {
    "file_size": "fileSize",
    "mime_type": "mimeType",
    "sample_rate": "sampleRate",
    "bit_depth": "bitDepth",
    "num_channels": "numChannels",
    "num_pages": "numPages",
}
_SPELLING = {
    kind: {k: k for k in keys} | {CAMEL[k]: k for k in keys if k in CAMEL}
    for kind, keys in MEDIA_FIELDS.items()
}
_POSITIVE_NUMBER = {"fps", "duration"}
_POSITIVE_INT = {"width", "height", "sample_rate", "bit_depth", "num_channels", "num_pages"}
_INT_FIELDS = _POSITIVE_INT | {"file_size"}
_MIME = re.compile(r"[A-Za-z0-9][A-Za-z0-9!#$&^_.+-]{0,126}/[A-Za-z0-9][A-Za-z0-9!#$&^_.+-]{0,126}")


def _as_float(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    try:
        f = float(value)
    except OverflowError:
        return None
    return f if math.isfinite(f) else None


def check_media_value(key: str, value: Any, name: str, problems: list[str]) -> Any:
    """One media property, type-checked; ``None`` (with a problem) if it is wrong."""
    kind = type(value)
    if kind is int and key in _INT_FIELDS and 0 < value <= MAX_INT:
        return value
    if kind is float and key in _POSITIVE_NUMBER and 0 < value < math.inf:
        return value
    if key in _POSITIVE_NUMBER:
        number = _as_float(value)
        if number is not None and number > 0:
            return number
        problems.append(f"{name} must be a positive number, got {describe(value)}")
    elif key in _POSITIVE_INT or key == "file_size":
        low, what = (1, "a positive integer") if key in _POSITIVE_INT else (0, "a non-negative integer")
        if isinstance(value, float) and value.is_integer():
            value = int(value)
        if isinstance(value, int) and not isinstance(value, bool) and low <= value <= MAX_INT:
            return value
        problems.append(f"{name} must be {what}, got {describe(value)}")
    elif key == "mime_type":
        if isinstance(value, str) and _MIME.fullmatch(value):
            return value.lower()
        problems.append(f"{name} must be a MIME type such as 'video/mp4', got {describe(value)}")
    elif key == "codec":
        if isinstance(value, str) and value.strip() and len(value) <= 100 and not _CONTROL.search(value):
            return value
        problems.append(
            f"{name} must be a codec name (a non-empty string of at most 100 characters), "
            f"got {describe(value)}"
        )
    return None


def check_media(kind: str, value: Any, name: str, problems: list[str]) -> dict[str, Any]:
    """A ``*Metadata`` object in snake_case; camelCase and snake_case keys are both accepted."""
    if value is None:
        return {}
    if not isinstance(value, dict):
        problems.append(f"{name} must be an object, got {describe(value)}")
        return {}
    spelling = _SPELLING[kind]
    first = len(problems)
    out: dict[str, Any] = {}
    unknown: list[str] = []
    seen: set[str] = set()
    for raw_key, raw in value.items():
        key = spelling.get(raw_key)
        if key is None:
            unknown.append(raw_key)
        elif raw is not None:
            if key in seen:
                problems.append(f"{name}: {key} and {CAMEL[key]} are both given")
                continue
            seen.add(key)
            if type(raw) is int and key in _INT_FIELDS and 0 < raw <= MAX_INT:
                out[key] = raw  # check_media_value's first case, without naming the field
                continue
            checked = check_media_value(key, raw, f"{name}.{raw_key}", problems)
            if checked is not None:
                out[key] = checked
    if unknown:  # named first, before the problems with known keys
        problems.insert(first, f"{name}: " + unknown_keys_message(unknown, spelling))
    return out
