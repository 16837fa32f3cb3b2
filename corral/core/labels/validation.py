"""Check a label row document (as the Encord SDK saves it) against the project's ontology.

Every object must name an object of the ontology by ``featureHash`` and carry the geometry of
that object's shape; coordinates are numbers normalised to the image (0..1); every answer must
name an attribute of its object or classification and, for radio and checklist attributes,
options of that attribute.  All problems are collected and reported together, each with the path
of the offending field (``data_units.<hash>.labels.objects[0].boundingBox.w``), and nothing is
stored unless the whole document passes.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from email.utils import parsedate_to_datetime
from typing import Any

import orjson

from corral import errors
from corral.core.labels.ontology import ElementSpec, OntologyIndex
from corral.errors import ErrorDetail

EPSILON = 1e-6  # rounding slack for x + w <= 1
GEOMETRY_KEY = {
    "bounding_box": "boundingBox",
    "rotatable_bounding_box": "rotatableBoundingBox",
    "polygon": "polygon",
    "polyline": "polyline",
    "point": "point",
    "bitmask": "bitmask",
    "skeleton": "skeleton",
}
MIN_POINTS = {"polygon": 3, "polyline": 2}


@dataclass(frozen=True)
class Target:
    """What a label row may contain: its data units and whether their labels are per frame."""

    data_units: frozenset[str]
    per_frame: bool
    frames: int | None = None  # known number of frames (per_frame only)
    sizes: Mapping[str, tuple[int, int]] = field(default_factory=dict)  # data unit -> known (width, height)

    @property
    def frame_count(self) -> int | None:
        """How many frames the row has, if known: a video's frames, or one per image."""
        return self.frames if self.per_frame else len(self.data_units)


@dataclass
class _Check:
    ontology: OntologyIndex
    problems: list[ErrorDetail] = field(default_factory=list)
    object_hashes: dict[str, ElementSpec] = field(default_factory=dict)
    size: tuple[int, int] | None = None  # the (width, height) of the data unit being checked, if known
    frame_count: int | None = None  # the row's frames, if known

    def bad(self, where: str, message: str) -> None:
        self.problems.append(ErrorDetail(f"{where}: {message}", field=where))


def _number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _unit(c: _Check, value: Any, where: str) -> bool:
    if not _number(value):
        c.bad(where, f"must be a number, got {value!r}")
        return False
    if not -EPSILON <= value <= 1 + EPSILON:
        c.bad(where, f"must be between 0 and 1 (coordinates are fractions of the image), got {value!r}")
        return False
    return True


@functools.lru_cache(maxsize=4096)  # a row's times repeat: the SDK stamps a save's labels alike
def _timestamp(value: str) -> bool:
    """A time the SDK reads back: ``2026-11-23 18:58:24``, ``Mon, 23 Nov 2026 18:58:24 UTC`` or ISO 8601."""
    for parse in (lambda v: datetime.strptime(v, "%Y-%m-%d %H:%M:%S"), parsedate_to_datetime,
                  datetime.fromisoformat):
        try:
            parse(value)
            return True
        except (TypeError, ValueError, IndexError, OverflowError):
            continue
    return False


def _annotation(c: _Check, entry: dict[str, Any], where: str) -> None:
    """The fields the SDK reads about who made a label and when, on objects and classification answers.

    Each may be absent or null; given, it must be what the SDK can read, or every later read of the
    row fails (``initialise_labels`` raises on an unparseable time or an unknown ``event``)."""
    for key in ("createdAt", "lastEditedAt"):
        value = entry.get(key)
        if value is not None and not (isinstance(value, str) and _timestamp(value)):
            example = "'Mon, 23 Nov 2026 18:58:24 UTC' or ISO 8601"
            c.bad(f"{where}.{key}", f"expected a time like {example}, got {value!r}")
    for key in ("createdBy", "lastEditedBy"):
        value = entry.get(key)
        if value is not None and not isinstance(value, str):
            c.bad(f"{where}.{key}", f"expected an e-mail address (a string), got {value!r}")
    confidence = entry.get("confidence")
    if confidence is not None and not (_number(confidence) and 0 <= confidence <= 1):
        c.bad(f"{where}.confidence", f"must be a number between 0 and 1, got {confidence!r}")
    manual = entry.get("manualAnnotation")
    if manual is not None and not isinstance(manual, bool):
        c.bad(f"{where}.manualAnnotation", f"must be true or false, got {manual!r}")
    for key in ("event", "interpolate"):
        if entry.get(key) is not None:
            c.bad(f"{where}.{key}", "corral labels frames, not event-based scenes: leave it out")


def _box(c: _Check, box: Any, where: str, rotatable: bool) -> None:
    if not isinstance(box, dict):
        c.bad(where, "expected an object with h, w, x and y")
        return
    keys = ("h", "w", "x", "y", "theta") if rotatable else ("h", "w", "x", "y")
    missing = [k for k in keys if k not in box]
    if missing:
        c.bad(where, f"missing {', '.join(missing)}")
        return
    ok = all([_unit(c, box[k], f"{where}.{k}") for k in ("h", "w", "x", "y")])
    if rotatable:
        if not _number(box["theta"]):
            c.bad(f"{where}.theta", f"must be a number, got {box['theta']!r}")
    elif ok:
        for start, size in (("x", "w"), ("y", "h")):
            if box[start] + box[size] > 1 + EPSILON:
                c.bad(where, f"{start} + {size} is {box[start] + box[size]:g}: the box leaves the image")


def _point(c: _Check, point: Any, where: str, named: bool = False) -> None:
    if not isinstance(point, dict) or "x" not in point or "y" not in point:
        c.bad(where, "expected a point {x, y}")
        return
    _unit(c, point["x"], f"{where}.x")
    _unit(c, point["y"], f"{where}.y")
    if named and not isinstance(point.get("name"), str):
        c.bad(f"{where}.name", "a skeleton point needs a name")


SKELETON_VISIBILITY = ("visible", "invisible", "occluded", "selfOccluded")


def _skeleton_point_extras(c: _Check, point: Any, where: str) -> None:
    """The optional fields of a skeleton point, typed as the SDK's SkeletonCoordinate reads them."""
    if not isinstance(point, dict):
        return
    for key in ("color", "featureHash", "value"):
        if point.get(key) is not None and not isinstance(point[key], str):
            c.bad(f"{where}.{key}", f"must be a string, got {point[key]!r}")
    visibility = point.get("visibility")
    if visibility is not None and visibility not in SKELETON_VISIBILITY:
        c.bad(f"{where}.visibility", f"must be one of {', '.join(SKELETON_VISIBILITY)}, got {visibility!r}")


def _points(value: Any) -> list[tuple[str, Any]] | None:
    """``{"0": p, "1": p}`` (by index) or ``[p, p]`` as (label, point) pairs in order."""
    if isinstance(value, list):
        return [(f"[{i}]", p) for i, p in enumerate(value)]
    if isinstance(value, dict):
        try:
            keys = sorted(value, key=int)
        except (TypeError, ValueError):
            return None
        return [(f".{k}", value[k]) for k in keys]
    return None


def _path(c: _Check, shape: str, value: Any, where: str) -> None:
    points = _points(value)
    if points is None:
        c.bad(where, "expected points as {\"0\": {x, y}, …} or [{x, y}, …]")
        return
    if len(points) < MIN_POINTS[shape]:
        c.bad(where, f"a {shape} needs at least {MIN_POINTS[shape]} points, got {len(points)}")
    for label, p in points:
        _point(c, p, where + label)


def _polygons(c: _Check, value: Any, where: str) -> None:
    """The multi-polygon form: polygons of contours of flat [x0, y0, x1, y1, …] lists."""
    if value is None:
        return
    if not isinstance(value, list):
        c.bad(where, "expected a list of polygons")
        return
    for i, polygon in enumerate(value):
        if polygon == []:  # the SDK reads each polygon's first contour
            c.bad(f"{where}[{i}]", "a polygon is a list of at least one contour")
        for j, ring in enumerate(polygon if isinstance(polygon, list) else [None]):
            at = f"{where}[{i}][{j}]"
            if not isinstance(ring, list) or len(ring) % 2 or len(ring) < 6:
                c.bad(at, "a contour is a flat list [x0, y0, x1, y1, …] of at least 3 points")
                continue
            for k, v in enumerate(ring):
                _unit(c, v, f"{at}[{k}]")


def _rle_problem(rle: str, pixels: int) -> str | None:
    """What is wrong with an Encord RLE string for a mask of ``pixels`` pixels, as the SDK
    decodes it (``encord.common.bitmask_operations``): counts of 5-bit groups in the characters
    '0'..'o', each from the third on relative to the one two before; none may be negative, and
    together they may not cover more than the mask (the SDK's decoder then raised an IndexError)."""
    counts: list[int] = []
    p = 0
    while p < len(rle):
        x = k = 0
        more = 1
        while more and p < len(rle):
            ch = ord(rle[p]) - 48
            if not 0 <= ch < 64:
                return f"character {p} ({rle[p]!r}) is not one of an RLE string's ('0' to 'o')"
            x |= (ch & 0x1F) << (5 * k)
            more = ch & 0x20
            p += 1
            k += 1
            if not more and ch & 0x10:
                x |= -1 << (5 * k)
        if len(counts) > 2:
            x += counts[-2]
        if x < 0:
            return f"run {len(counts)} has a negative length"
        counts.append(x)
    if sum(counts) > pixels:
        return f"its runs cover {sum(counts):,} pixels, more than the mask's {pixels:,} (width x height)"
    return None


def _bitmask(c: _Check, value: Any, where: str) -> None:
    if not isinstance(value, dict):
        c.bad(where, "expected {top, left, width, height, rleString}")
        return
    sizes_ok = True
    for k in ("top", "left", "width", "height"):
        v = value.get(k)
        if not isinstance(v, int) or isinstance(v, bool) or v < 0:
            c.bad(f"{where}.{k}", f"must be a non-negative integer, got {v!r}")
            sizes_ok = False
    rle = value.get("rleString")
    if not isinstance(rle, str) or not rle:
        c.bad(f"{where}.rleString", "the run-length encoded mask is required")
    elif sizes_ok and (problem := _rle_problem(rle, value["width"] * value["height"])) is not None:
        c.bad(f"{where}.rleString", f"not a mask the SDK can decode: {problem}")
    if c.size is not None and (value.get("width"), value.get("height")) != c.size:
        size = f"{value.get('width')!r}x{value.get('height')!r}"
        c.bad(where, f"a bitmask covers the whole image, {c.size[0]}x{c.size[1]}, got {size}")


def _geometry(c: _Check, shape: str, obj: dict[str, Any], where: str) -> None:
    key = GEOMETRY_KEY[shape]
    if key not in obj:
        c.bad(f"{where}.{key}", f"a {shape} object needs its {key} coordinates")
        return
    value, at = obj[key], f"{where}.{key}"
    if shape in ("bounding_box", "rotatable_bounding_box"):
        _box(c, value, at, shape == "rotatable_bounding_box")
    elif shape in MIN_POINTS:
        _path(c, shape, value, at)
        if shape == "polygon":
            _polygons(c, obj.get("polygons"), f"{where}.polygons")
    elif shape == "point":
        points = _points(value)
        if not points or len(points) != 1 or points[0][0] != ".0":
            c.bad(at, "expected exactly one point {\"0\": {x, y}}")
        else:
            _point(c, points[0][1], at + points[0][0])
    elif shape == "skeleton":
        points = _points(value) if isinstance(value, dict) else None  # the SDK reads .values()
        if not points:
            c.bad(at, "expected the skeleton's points {\"0\": {x, y, name}, …}")
        for label, p in points or []:
            _point(c, p, at + label, named=True)
            _skeleton_point_extras(c, p, at + label)
        if not isinstance(obj.get("name"), str):
            c.bad(f"{where}.name", "a skeleton object needs its name (a string): the SDK reads it")
    else:
        _bitmask(c, value, at)


def _object(c: _Check, obj: Any, where: str) -> None:
    if not isinstance(obj, dict):
        c.bad(where, "expected an object instance")
        return
    fh = obj.get("featureHash")
    spec = c.ontology.objects.get(fh) if isinstance(fh, str) else None
    if spec is None:
        known = isinstance(fh, str) and fh in c.ontology.classifications
        kind = " (a classification, not an object)" if known else ""
        c.bad(f"{where}.featureHash", f"unknown object feature hash {fh!r}{kind} in the project's ontology")
        return
    assert spec.shape is not None
    label = f"object {spec.name!r}"
    if obj.get("shape") != spec.shape:
        c.bad(f"{where}.shape", f"{label} is a {spec.shape} in the ontology, got shape {obj.get('shape')!r}")
        return
    oh = obj.get("objectHash")
    if not isinstance(oh, str) or not oh:
        c.bad(f"{where}.objectHash", "an object instance needs an objectHash")
        return
    seen = c.object_hashes.get(oh)
    if seen is not None and seen.feature_hash != fh:
        c.bad(f"{where}.objectHash", f"objectHash {oh!r} is used by two different objects")
    c.object_hashes[oh] = spec
    _annotation(c, obj, where)
    _geometry(c, spec.shape, obj, where)


def _answers(c: _Check, element: ElementSpec, answers: Any, where: str) -> None:
    if not isinstance(answers, list):
        c.bad(where, "expected a list of answers")
        return
    for i, answer in enumerate(answers):
        at = f"{where}[{i}]"
        if not isinstance(answer, dict):
            c.bad(at, "expected an answer object")
            continue
        fh = answer.get("featureHash")
        attr = element.attributes.get(fh) if isinstance(fh, str) else None
        if attr is None:
            message = f"unknown attribute feature hash {fh!r} for {element.kind} {element.name!r}"
            c.bad(f"{at}.featureHash", message)
            continue
        if attr.dynamic:  # the SDK reads each dynamic answer's frames
            if answer.get("range") is None:
                c.bad(f"{at}.range", f"dynamic attribute {attr.name!r} needs the frames of its answer")
            else:
                _range(c, answer["range"], c.frame_count, f"{at}.range")
        value = answer.get("answers")
        if attr.type == "text":
            if not isinstance(value, str):
                c.bad(f"{at}.answers", f"text attribute {attr.name!r} needs a string answer")
        elif attr.type == "numeric":
            if not _number(value):
                c.bad(f"{at}.answers", f"numeric attribute {attr.name!r} needs a number, got {value!r}")
        else:
            _options(c, attr.type, attr.name, attr.options, value, f"{at}.answers")


def _options(c: _Check, kind: str, name: str, options: dict[str, str], value: Any, where: str) -> None:
    if not isinstance(value, list) or (kind == "radio" and len(value) != 1):
        need = "exactly one option" if kind == "radio" else "a list of options"
        c.bad(where, f"{kind} attribute {name!r} needs {need}")
        return
    for j, option in enumerate(value):
        oh = option.get("featureHash") if isinstance(option, dict) else None
        if oh not in options:
            c.bad(f"{where}[{j}].featureHash", f"{oh!r} is not an option of {kind} attribute {name!r}")


def _frame_number(key: str) -> int | None:
    """A frame key as the SDK writes it (``"0"``, ``"12"``), or None: only ASCII digits, and no
    leading zero, so that no two keys name one frame (``"1"`` and ``"01"``, or ``"٣"``, which
    Python's ``int`` reads as 3)."""
    if not key.isascii() or not key.isdigit() or (len(key) > 1 and key[0] == "0") or len(key) > 12:
        return None  # more than 12 digits is no frame of a real video (and int() refuses 4,300)
    return int(key)


def _frames(c: _Check, labels: Any, target: Target, where: str) -> Iterable[tuple[str, Any]]:
    if not isinstance(labels, dict):
        c.bad(where, "expected an object")
        return []
    if not target.per_frame:
        return [(where, labels)]
    out = []
    for frame, content in labels.items():
        number = _frame_number(frame)
        if number is None or (target.frames is not None and number >= target.frames):
            c.bad(f"{where}.{frame}", f"frame {frame!r} is not a frame of this data unit")
            continue
        if isinstance(content, dict):
            content.setdefault("objects", [])  # the SDK reads every frame's objects list
            if content.get("metadata") is not None:  # read as a DICOM slice's metadata
                c.bad(f"{where}.{frame}.metadata", "frame metadata is a DICOM slice's, and corral labels "
                                                   "no DICOM: leave it out or null")
        out.append((f"{where}.{frame}", content))
    return out


def _data_units(c: _Check, units: Any, target: Target) -> dict[str, Any]:
    stored: dict[str, Any] = {}
    if not isinstance(units, dict):
        c.bad("data_units", "expected an object keyed by data hash")
        return stored
    for dh, unit in units.items():
        where = f"data_units.{dh}"
        if dh not in target.data_units:
            c.bad(where, f"{dh!r} is not a data unit of this label row")
            continue
        labels = unit.get("labels", {}) if isinstance(unit, dict) else None
        c.size = target.sizes.get(dh)
        for at, frame in _frames(c, labels, target, f"{where}.labels"):
            objects = frame.get("objects", []) if isinstance(frame, dict) else None
            if not isinstance(objects, list):
                c.bad(f"{at}.objects", "expected a list of objects")
                continue
            in_frame: set[str] = set()
            for i, obj in enumerate(objects):
                _object(c, obj, f"{at}.objects[{i}]")
                oh = obj.get("objectHash") if isinstance(obj, dict) else None
                if isinstance(oh, str) and oh in in_frame:
                    c.bad(f"{at}.objects[{i}].objectHash", f"object {oh!r} is twice in this frame")
                elif isinstance(oh, str):
                    in_frame.add(oh)
            classifications = frame.get("classifications") or []
            if not isinstance(classifications, list):
                c.bad(f"{at}.classifications", "expected a list of classifications")
                continue
            for i, cl in enumerate(classifications):
                fh = cl.get("featureHash") if isinstance(cl, dict) else None
                if not isinstance(fh, str) or fh not in c.ontology.classifications:
                    message = f"unknown classification feature hash {fh!r}"
                    c.bad(f"{at}.classifications[{i}].featureHash", message)
        stored[dh] = {"labels": labels}
    return stored


def _keyed(c: _Check, doc: dict[str, Any], key: str) -> dict[str, Any]:
    value = doc.get(key, {})
    if not isinstance(value, dict):
        c.bad(key, "expected an object")
        return {}
    return value


def _names_itself(c: _Check, entry: dict[str, Any], key: str, ident: str, where: str) -> None:
    """An answers entry repeats the hash it is filed under: the SDK reads that copy, not the key."""
    if entry.get(key) != ident:
        c.bad(f"{where}.{key}", f"must be {ident!r}, the key this entry is under, got {entry.get(key)!r}")


def _object_number(
    c: _Check, number: Any, spec: ElementSpec, oh: str, where: str, numbers: dict[tuple[str, int], str]
) -> None:
    """An object's ``objectNumber`` (the N of "car N" in the editor), as the SDK reads it: absent,
    null or a non-negative integer, and no two objects of one feature with the same number (the
    SDK refuses to save such a row)."""
    if number is None:
        return
    if not isinstance(number, int) or isinstance(number, bool) or number < 0:
        c.bad(where, f"must be a non-negative integer, got {number!r}")
        return
    other = numbers.setdefault((spec.feature_hash, number), oh)
    if other != oh:
        c.bad(where, f"object {spec.name!r} number {number} is also the number of object {other!r}: "
                     "one number per object")


def _object_answers(c: _Check, doc: dict[str, Any]) -> None:
    numbers: dict[tuple[str, int], str] = {}  # (feature hash, objectNumber) -> object hash
    for key in ("object_answers", "object_actions"):
        for oh, entry in _keyed(c, doc, key).items():
            where = f"{key}.{oh}"
            spec = c.object_hashes.get(oh)
            if spec is None:
                c.bad(where, f"answers for object {oh!r}, which is in no data unit")
                continue
            if not isinstance(entry, dict):
                c.bad(where, "expected an object")
                continue
            _names_itself(c, entry, "objectHash", oh, where)
            if key == "object_answers":
                _object_number(c, entry.get("objectNumber"), spec, oh, f"{where}.objectNumber", numbers)
            field_name = "classifications" if key == "object_answers" else "actions"
            _answers(c, spec, entry.get(field_name), f"{where}.{field_name}")


def _range(c: _Check, value: Any, frames: int | None, where: str) -> list[tuple[int, int]]:
    """A classification's frames, ``[[first, last], …]``, each within the row's frames: the
    well-formed ones."""
    good: list[tuple[int, int]] = []
    if value is None:
        return good
    if not isinstance(value, list):
        c.bad(where, "expected a list of [first, last] frame ranges")
        return good
    for i, pair in enumerate(value):
        ok = (isinstance(pair, list) and len(pair) == 2
              and all(isinstance(v, int) and not isinstance(v, bool) for v in pair))
        if not ok:
            c.bad(f"{where}[{i}]", f"expected [first, last] frame numbers, got {pair!r}")
        elif not 0 <= pair[0] <= pair[1] or (frames is not None and pair[1] >= frames):
            count = f" of 0..{frames - 1}" if frames is not None else ""
            c.bad(f"{where}[{i}]", f"{pair!r} is not a range of frames{count} (first <= last)")
        else:
            good.append((pair[0], pair[1]))
    return good


def _classification_answers(c: _Check, doc: dict[str, Any], target: Target, stamp: str | None) -> None:
    placed: dict[str, list[tuple[int, int, str]]] = {}  # classification -> frames of its instances
    for ch, entry in _keyed(c, doc, "classification_answers").items():
        where = f"classification_answers.{ch}"
        if not isinstance(entry, dict):
            c.bad(where, "expected an object")
            continue
        fh = entry.get("featureHash")
        spec = c.ontology.classifications.get(fh) if isinstance(fh, str) else None
        if spec is None:
            known = isinstance(fh, str) and fh in c.ontology.objects
            kind = " (an object, not a classification)" if known else ""
            message = f"unknown classification feature hash {fh!r}{kind} in the project's ontology"
            c.bad(f"{where}.featureHash", message)
            continue
        _names_itself(c, entry, "classificationHash", ch, where)
        _answers(c, spec, entry.get("classifications"), f"{where}.classifications")
        _annotation(c, entry, where)
        if not entry.get("range"):  # the SDK places a classification by its range alone
            c.bad(f"{where}.range", "the frames of the classification, [[first, last], …], are required: "
                                    "the SDK reads an instance without them as on no frame, and drops it")
        for first, last in _range(c, entry.get("range"), target.frame_count, f"{where}.range"):
            for other_first, other_last, other in placed.get(spec.feature_hash, []):
                if other != ch and first <= other_last and other_first <= last:
                    c.bad(f"{where}.range", f"classification {spec.name!r} is on frames {first}-{last} "
                                            f"twice (also instance {other!r}): one instance per frame")
                    break
            placed.setdefault(spec.feature_hash, []).append((first, last, ch))
        if entry.get("spaces") not in (None, {}):
            c.bad(f"{where}.spaces", "corral's label rows have no spaces: leave it out or {}")
        _stamp(entry, stamp)


def _stamp(entry: dict[str, Any], stamp: str | None) -> None:
    """Who made and last edited a label, where the client left it null or out: the saver (the
    SDK's "None defaults to the user of the SDK once uploaded to the server")."""
    if stamp:
        for key in ("createdBy", "lastEditedBy"):
            if entry.get(key) is None:
                entry[key] = stamp


def _stamp_objects(units: dict[str, Any], stamp: str | None, per_frame: bool) -> None:
    for unit in units.values():
        labels = unit["labels"]
        frames = labels.values() if per_frame else [labels]
        for frame in frames:
            for obj in frame.get("objects", []):
                _stamp(obj, stamp)


def check(
    ontology: OntologyIndex, document: Any, target: Target, *, stamp: str | None = None
) -> dict[str, Any]:
    """The part of a label row document to store, or ValidationFailed naming every bad field.

    ``stamp`` (the saver's e-mail) fills ``createdBy`` and ``lastEditedBy`` where the client
    left them null.
    """
    c = _Check(ontology, frame_count=target.frame_count)
    if not isinstance(document, dict):
        raise errors.ValidationFailed("a label row must be a JSON object")
    # stamped below; the caller's copy stays as sent (a JSON document: orjson copies one five
    # times faster than deepcopy, 0.07 s for a 1,000-frame video's 2.5 MB)
    document = orjson.loads(orjson.dumps(document))
    units = _data_units(c, document.get("data_units", {}), target)
    _object_answers(c, document)
    _classification_answers(c, document, target, stamp)
    if c.problems:
        shown = "; ".join(p.message for p in c.problems[:5])
        more = f" (and {len(c.problems) - 5} more)" if len(c.problems) > 5 else ""
        raise errors.ValidationFailed(f"labels do not match the ontology: {shown}{more}", details=c.problems)
    _stamp_objects(units, stamp, target.per_frame)
    return {
        "data_units": units,
        "object_answers": _keyed(c, document, "object_answers"),
        "classification_answers": _keyed(c, document, "classification_answers"),
        "object_actions": _keyed(c, document, "object_actions"),
    }
