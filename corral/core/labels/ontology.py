"""An ontology document (the Encord SDK's ``editor``) and the feature-hash index built from it.

The document is stored as sent, with what the SDK needs to read it back filled in where it was
left out (``ontology_sdk``); feature hashes are minted by the client.  Reading it checks
what label validation relies on: every object has a supported shape, every classification has
attributes, attributes are ``radio``/``checklist``/``text``/``numeric`` (the SDK's
``NumericAttribute``) and options carry feature hashes, and no feature hash is used twice.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, NoReturn

from corral import errors
from corral.core.labels import ontology_sdk
from corral.errors import ErrorDetail

SHAPES = (
    "bounding_box",
    "rotatable_bounding_box",
    "polygon",
    "polyline",
    "point",
    "bitmask",
    "skeleton",
)
ATTRIBUTE_TYPES = ("radio", "checklist", "text", "numeric")
_NESTING = 20


@dataclass(frozen=True)
class AttributeSpec:
    feature_hash: str
    name: str
    type: str
    options: dict[str, str]  # option feature hash -> label
    dynamic: bool = False  # answered per frame range (the SDK's dynamic attributes)


@dataclass(frozen=True)
class ElementSpec:
    """A top-level object or classification and every attribute below it (nested ones too)."""

    feature_hash: str
    name: str
    kind: str  # "object" | "classification"
    shape: str | None
    attributes: dict[str, AttributeSpec] = field(default_factory=dict)


@dataclass(frozen=True)
class OntologyIndex:
    objects: dict[str, ElementSpec]
    classifications: dict[str, ElementSpec]


class _Reader:
    def __init__(self) -> None:
        self.problems: list[ErrorDetail] = []
        self.seen: set[str] = set()

    def bad(self, where: str, message: str) -> None:
        self.problems.append(ErrorDetail(f"{where}: {message}", field=where))

    def hash_of(self, node: dict[str, Any], where: str) -> str | None:
        value = node.get("featureNodeHash")
        if not isinstance(value, str) or not value:
            self.bad(f"{where}.featureNodeHash", "a feature hash (non-empty string) is required")
            return None
        if value in self.seen:
            self.bad(f"{where}.featureNodeHash", f"feature hash {value!r} is used more than once")
        self.seen.add(value)
        return value

    def attributes(self, nodes: Any, where: str, out: dict[str, AttributeSpec], depth: int = 0) -> None:
        if nodes is None:
            return
        if not isinstance(nodes, list) or depth > _NESTING:
            self.bad(where, "expected a list of attributes")
            return
        for i, node in enumerate(nodes):
            at = f"{where}[{i}]"
            if not isinstance(node, dict):
                self.bad(at, "expected an object")
                continue
            fh = self.hash_of(node, at)
            kind = node.get("type")
            if kind not in ATTRIBUTE_TYPES:
                self.bad(f"{at}.type", f"attribute type is one of {', '.join(ATTRIBUTE_TYPES)}, got {kind!r}")
                continue
            options: dict[str, str] = {}
            if kind in ("radio", "checklist"):
                self.options(node.get("options"), f"{at}.options", options, out, depth)
            if fh is not None:
                out[fh] = AttributeSpec(fh, str(node.get("name", "")), str(kind), options,
                                        node.get("dynamic") is True)

    def options(
        self, nodes: Any, where: str, options: dict[str, str], out: dict[str, AttributeSpec], depth: int
    ) -> None:
        if not isinstance(nodes, list):
            self.bad(where, "a radio or checklist attribute needs a list of options")
            return
        for j, option in enumerate(nodes):
            at = f"{where}[{j}]"
            if not isinstance(option, dict):
                self.bad(at, "expected an object")
                continue
            oh = self.hash_of(option, at)
            if oh is not None:
                options[oh] = str(option.get("label", ""))
            self.attributes(option.get("options"), f"{at}.options", out, depth + 1)


def read_new(editor: Any) -> OntologyIndex:
    """``prepare_new``'s index (the checks alone)."""
    return prepare_new(editor)[1]


def prepare_new(editor: Any) -> tuple[Any, OntologyIndex]:
    """A document being saved, as it is to be stored, and its index.

    Beyond ``read``'s checks it has what the Encord SDK needs to read it back
    (``OntologyStructure.from_dict``), which every member's ``get_ontologies()`` does: both
    lists, skeleton templates as objects holding a well-formed ``template``, names, labels, and
    the ids, colours and flags ``ontology_sdk.complete`` fills in where they are left out.  An
    ontology saved as ``{}`` made that call raise ``KeyError: 'objects'`` for the whole
    organisation."""
    problems: list[ErrorDetail] = []
    if isinstance(editor, dict):
        problems += [ErrorDetail(f"{key}: expected a list (the SDK's ontology structure always has one)",
                                 field=key)
                     for key in ("objects", "classifications") if not isinstance(editor.get(key), list)]
        templates = editor.get("skeleton_templates", [])
        if not isinstance(templates, list):
            problems.append(ErrorDetail("skeleton_templates: expected a list", field="skeleton_templates"))
        else:
            problems += [ErrorDetail(f"skeleton_templates[{i}]: expected an object with a template object",
                                     field=f"skeleton_templates[{i}]")
                         for i, t in enumerate(templates)
                         if not (isinstance(t, dict) and isinstance(t.get("template"), dict))]
    completed, missing = ontology_sdk.complete(editor)
    problems += missing
    try:
        index = read(completed)
    except errors.ValidationFailed as exc:
        if not exc.details:
            raise  # not a JSON object at all
        problems += exc.details
    if problems:
        _refuse(problems)
    return completed, index


def _refuse(problems: list[ErrorDetail]) -> NoReturn:
    shown = "; ".join(p.message for p in problems[:5])
    more = f" (and {len(problems) - 5} more)" if len(problems) > 5 else ""
    raise errors.ValidationFailed(f"invalid ontology: {shown}{more}", details=problems)


def read(editor: Any) -> OntologyIndex:
    """Check an ontology document and index it; ValidationFailed lists every problem found."""
    if not isinstance(editor, dict):
        raise errors.ValidationFailed("the ontology structure must be a JSON object")
    r = _Reader()
    objects: dict[str, ElementSpec] = {}
    classifications: dict[str, ElementSpec] = {}
    for key in ("objects", "classifications"):
        if not isinstance(editor.get(key, []), list):
            r.bad(key, "expected a list")
    raw_objects = editor.get("objects")
    for i, node in enumerate(raw_objects if isinstance(raw_objects, list) else []):
        at = f"objects[{i}]"
        if not isinstance(node, dict):
            r.bad(at, "expected an object")
            continue
        fh = r.hash_of(node, at)
        shape = node.get("shape")
        if shape not in SHAPES:
            r.bad(f"{at}.shape", f"shape is one of {', '.join(SHAPES)}, got {shape!r}")
        attrs: dict[str, AttributeSpec] = {}
        r.attributes(node.get("attributes"), f"{at}.attributes", attrs)
        if fh is not None:
            objects[fh] = ElementSpec(fh, str(node.get("name", "")), "object", str(shape), attrs)
    raw_classifications = editor.get("classifications")
    for i, node in enumerate(raw_classifications if isinstance(raw_classifications, list) else []):
        at = f"classifications[{i}]"
        if not isinstance(node, dict):
            r.bad(at, "expected an object")
            continue
        fh = r.hash_of(node, at)
        attrs = {}
        if not node.get("attributes"):
            r.bad(f"{at}.attributes", "a classification needs at least one attribute")
        r.attributes(node.get("attributes"), f"{at}.attributes", attrs)
        if fh is not None:
            name = next(iter(attrs.values())).name if attrs else ""
            classifications[fh] = ElementSpec(fh, name, "classification", None, attrs)
    if r.problems:
        _refuse(r.problems)
    return OntologyIndex(objects, classifications)
