"""What the Encord SDK needs to read an ontology back, filled in where a document leaves it out.

``OntologyStructure.from_dict`` (SDK 0.1.211) indexes fields that corral's own checks do not
need: every object's ``id``, ``name`` and ``color``, every classification's ``id``, every
attribute's ``id``, ``name`` and ``required``, every option's ``id``, ``label`` and ``value``,
and a skeleton template's ``name``, ``width``, ``height``, ``skeleton`` and ``skeleton_edges``.
A document saved without one made every member's ``get_ontologies()`` raise.

``complete`` returns a copy with what can be chosen filled the way the SDK's own builders choose
it (ids one past the largest sibling's, nested ids under their parent's, an option's ``value``
from its label, ``required`` false, a palette colour); what cannot (a name, a label) or what has
the wrong type is a problem naming the field.  The SDK's own documents have every field and are
returned unchanged.  Serving uses the lenient form on stored documents: it fills, never refuses.
"""

from __future__ import annotations

import copy
import re
from typing import Any

from corral.errors import ErrorDetail

#: Colours for objects saved without one (the palette of Encord's ontology editor).
PALETTE = ("#D33115", "#E27300", "#FCC400", "#B0BC00", "#68BC00", "#16A5A5", "#009CE0", "#7B64FF",
           "#FA28FF", "#333333", "#9F0500", "#C45100", "#FB9E00", "#808900", "#194D33", "#0C797D")
_TOP_ID = re.compile(r"[0-9]{1,9}")
_NESTED_ID = re.compile(r"[0-9]{1,9}(\.[0-9]{1,9}){0,40}")
_NESTING = 20


class _Completer:
    def __init__(self) -> None:
        self.problems: list[ErrorDetail] = []

    def bad(self, where: str, message: str) -> None:
        self.problems.append(ErrorDetail(f"{where}: {message}", field=where))

    def text(self, node: dict[str, Any], key: str, where: str, what: str) -> None:
        """A string the client must give (a name, a label)."""
        if not isinstance(node.get(key), str):
            self.bad(f"{where}.{key}", f"{what} (a string) is required")

    def optional_text(self, node: dict[str, Any], key: str, where: str) -> bool:
        """Whether ``node[key]`` is missing (to fill); a present non-string is a problem."""
        if key not in node or node[key] is None:
            return True
        if not isinstance(node[key], str):
            self.bad(f"{where}.{key}", f"expected a string, got {type(node[key]).__name__}")
        return False

    def ids(self, nodes: list[Any], where: str, parent: str | None) -> None:
        """Siblings' ``id``: an object's or classification's is an integer (``parent`` None; the
        SDK sends it as a string), an attribute's or option's its parent's id and a number
        ("1.2.1").  A missing one is the next number after the largest sibling's."""
        used: list[int] = []
        for i, node in enumerate(nodes):
            if not isinstance(node, dict) or node.get("id") is None:
                continue
            value = node["id"]
            if parent is None and isinstance(value, int) and not isinstance(value, bool):
                value = str(value)
            if isinstance(value, str) and (_NESTED_ID if parent else _TOP_ID).fullmatch(value):
                used.append(int(value.rsplit(".", 1)[-1]))
            else:
                shape = "a nested id such as \"1.2\"" if parent else "an integer id such as \"1\""
                self.bad(f"{where}[{i}].id", f"expected {shape} (or none, to have one assigned), "
                                             f"got {node['id']!r}"[:200])
        following = max(used, default=0) + 1
        for node in nodes:
            if isinstance(node, dict) and node.get("id") is None:
                node["id"] = f"{parent}.{following}" if parent else str(following)
                following += 1

    def attributes(self, nodes: Any, where: str, parent: str, depth: int) -> None:
        if not isinstance(nodes, list) or depth > _NESTING:
            return  # the structural checks report it
        self.ids(nodes, where, parent)
        for i, node in enumerate(nodes):
            if not isinstance(node, dict):
                continue
            at = f"{where}[{i}]"
            self.text(node, "name", at, "an attribute's name")
            if node.get("required") is None:
                node["required"] = False
            elif not isinstance(node["required"], bool):
                self.bad(f"{at}.required", f"expected true or false, got {node['required']!r}"[:200])
            own = node["id"] if isinstance(node.get("id"), str) else f"{parent}.{i + 1}"
            if node.get("type") in ("radio", "checklist"):
                self.options(node.get("options"), f"{at}.options", own, depth,
                             nestable=node.get("type") == "radio")

    def options(self, nodes: Any, where: str, parent: str, depth: int, *, nestable: bool) -> None:
        if not isinstance(nodes, list):
            return
        self.ids(nodes, where, parent)
        for j, option in enumerate(nodes):
            if not isinstance(option, dict):
                continue
            at = f"{where}[{j}]"
            self.text(option, "label", at, "an option's label")
            if self.optional_text(option, "value", at) and isinstance(option.get("label"), str):
                option["value"] = re.sub(r"\s", "_", option["label"]).lower()  # as the SDK's add_option
            own = option["id"] if isinstance(option.get("id"), str) else f"{parent}.{j + 1}"
            if nestable:
                self.attributes(option.get("options"), f"{at}.options", own, depth + 1)

    def skeleton_template(self, template: dict[str, Any], where: str) -> None:
        self.text(template, "name", where, "a skeleton template's name")
        for key in ("width", "height"):
            value = template.get(key)
            if isinstance(value, bool) or not isinstance(value, int | float):
                self.bad(f"{where}.{key}", "a number is required")
        skeleton = template.get("skeleton")
        if not isinstance(skeleton, dict):
            self.bad(f"{where}.skeleton", "expected an object of the template's points")
        else:
            for name, point in skeleton.items():
                at = f"{where}.skeleton.{name}"
                if not isinstance(point, dict):
                    self.bad(at, "expected an object with x, y and name")
                    continue
                for key in ("x", "y"):
                    if isinstance(point.get(key), bool) or not isinstance(point.get(key), int | float):
                        self.bad(f"{at}.{key}", "a number is required")
                self.text(point, "name", at, "a point's name")
        edges_key = "skeletonEdges" if "skeletonEdges" in template else "skeleton_edges"
        edges = template.get(edges_key)
        if not (isinstance(edges, dict) and all(
                isinstance(ends, dict) and all(isinstance(style, dict)
                                               and all(isinstance(v, str) for v in style.values())
                                               for style in ends.values())
                for ends in edges.values())):
            self.bad(f"{where}.{edges_key}", "expected an object of edges: start → end → {\"color\": …}")


def complete(editor: Any, *, strict: bool = True) -> tuple[Any, list[ErrorDetail]]:
    """A copy of ``editor`` with what the SDK needs filled in, and the problems found (strict:
    the fields to refuse the document for; lenient: none are reported, fill what can be)."""
    if not isinstance(editor, dict):
        return editor, []
    doc = copy.deepcopy(editor)
    c = _Completer()
    for key in ("objects", "classifications"):
        nodes = doc.get(key)
        if not isinstance(nodes, list):
            continue
        c.ids(nodes, key, None)
        for i, node in enumerate(nodes):
            if not isinstance(node, dict):
                continue
            at = f"{key}[{i}]"
            own = node["id"] if isinstance(node.get("id"), str) else str(node.get("id", i + 1))
            if key == "objects":
                c.text(node, "name", at, "an object's name")
                if c.optional_text(node, "color", at):
                    node["color"] = PALETTE[i % len(PALETTE)]
            c.attributes(node.get("attributes"), f"{at}.attributes", own, 0)
    templates = doc.get("skeleton_templates")
    if isinstance(templates, list):
        for i, entry in enumerate(templates):
            if isinstance(entry, dict) and isinstance(entry.get("template"), dict):
                c.skeleton_template(entry["template"], f"skeleton_templates[{i}].template")
    return doc, (c.problems if strict else [])
