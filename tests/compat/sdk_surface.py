"""Every call the installed Encord SDK can send, read from its source (so the list cannot drift).

* v2 REST: each ``<api_client>.get/post/put/patch/delete/get_paged_iterator(path, …)`` call whose
  receiver names an api client; ``path`` as a template, f-string fields becoming ``{}``.
* v1 RPC: each ``<querier>.basic_getter/get_multiple/post_multiple/put_multiple/basic_delete/
  basic_setter/basic_put(Type, …)`` call; the operation is ``(type name lower-cased, method)``
  (``query_type=`` overrides the type, as in ``Querier._route``).
"""

from __future__ import annotations

import ast
import re
from dataclasses import dataclass
from pathlib import Path

V2_METHODS = {
    "get": "GET",
    "get_paged_iterator": "GET",
    "post": "POST",
    "put": "PUT",
    "patch": "PATCH",
    "delete": "DELETE",
}
V1_METHODS = {
    "basic_getter": "GET",
    "get_multiple": "GET",
    "post_multiple": "POST",
    "put_multiple": "PUT",
    "basic_delete": "DELETE",
    "basic_setter": "POST",
    "basic_put": "PUT",
}


@dataclass(frozen=True, order=True)
class V2Call:
    method: str
    template: str  # e.g. "storage/folders/{}/items" (relative to /v2/public/)
    where: str  # file:line of one place that sends it

    def concrete(self, filler: str) -> str:
        return "/v2/public/" + self.template.replace("{}", filler).lstrip("/")


@dataclass(frozen=True, order=True)
class V1Call:
    query_type: str
    method: str
    where: str


def _template(node: ast.expr, assigned: dict[str, ast.expr], constants: dict[str, str]) -> str | None:
    """The path template of an expression: a string, an f-string (fields become ``{}`` unless they
    name a module-level string constant), a local variable assigned one, or a constant."""
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        return node.value
    if isinstance(node, ast.JoinedStr):
        out = ""
        for part in node.values:
            if isinstance(part, ast.Constant):
                out += str(part.value)
            elif (
                isinstance(part, ast.FormattedValue)
                and isinstance(part.value, ast.Name)
                and part.value.id in constants
            ):
                out += constants[part.value.id]
            else:
                out += "{}"
        return out
    if isinstance(node, ast.Name) and node.id in assigned:
        return _template(assigned[node.id], {}, constants)
    if isinstance(node, ast.Name) and node.id in constants:
        return constants[node.id]
    if isinstance(node, ast.BinOp) and isinstance(node.op, ast.Add):
        left, right = _template(node.left, assigned, constants), _template(node.right, assigned, constants)
        return None if left is None or right is None else left + right
    return None


def _receiver(node: ast.expr) -> str:
    return ast.unparse(node).lower()


def _trees(package_dir: Path) -> list[tuple[str, ast.Module]]:
    return [
        (str(path.relative_to(package_dir.parent)), ast.parse(path.read_text(encoding="utf-8")))
        for path in sorted(package_dir.rglob("*.py"))
    ]


def _constants(trees: list[tuple[str, ast.Module]]) -> dict[str, str]:
    """Module-level ``NAME = "text"`` of every module (the SDK keeps some paths in constants)."""
    out: dict[str, str] = {}
    for _, tree in trees:
        for node in tree.body:
            if (
                isinstance(node, ast.Assign)
                and len(node.targets) == 1
                and isinstance(node.targets[0], ast.Name)
                and isinstance(node.value, ast.Constant)
                and isinstance(node.value.value, str)
            ):
                out[node.targets[0].id] = node.value.value
    return out


def _aliases(tree: ast.Module) -> dict[str, str]:
    """``from x import Project as OrmProject``: OrmProject -> Project (the name the SDK routes by)."""
    return {
        a.asname: a.name
        for node in ast.walk(tree)
        if isinstance(node, ast.ImportFrom)
        for a in node.names
        if a.asname
    }


def scan(package_dir: Path) -> tuple[set[V2Call], set[V1Call], list[str]]:
    """The v2 and v1 calls under ``package_dir``, and the call sites whose path could not be read.

    A path passed in as a parameter of the enclosing function is read at that function's call sites.
    """
    trees = _trees(package_dir)
    constants = _constants(trees)
    v2: dict[tuple[str, str], V2Call] = {}
    v1: dict[tuple[str, str], V1Call] = {}
    unread: list[str] = []
    forwarded: dict[str, tuple[int, str, str]] = {}  # function -> (parameter index, method, where)
    for rel, tree in trees:
        aliases = _aliases(tree)
        for func in ast.walk(tree):
            if not isinstance(func, (ast.FunctionDef, ast.AsyncFunctionDef)):
                continue
            params = [a.arg for a in func.args.args]
            assigned: dict[str, ast.expr] = {}
            for node in ast.walk(func):
                if (
                    isinstance(node, ast.Assign)
                    and len(node.targets) == 1
                    and isinstance(node.targets[0], ast.Name)
                ):
                    assigned[node.targets[0].id] = node.value
            for node in ast.walk(func):
                if not (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)):
                    continue
                name, receiver = node.func.attr, _receiver(node.func.value)
                where = f"{rel}:{node.lineno}"
                if name in V2_METHODS and "api_client" in receiver:
                    arg = (
                        node.args[0]
                        if node.args
                        else next((k.value for k in node.keywords if k.arg == "path"), None)
                    )
                    template = _template(arg, assigned, constants) if arg is not None else None
                    if template is None:
                        if isinstance(arg, ast.Name) and arg.id in params:
                            forwarded[func.name] = (params.index(arg.id), V2_METHODS[name], where)
                        else:
                            unread.append(where)
                        continue
                    template = re.sub(r"/+$", "", template.lstrip("/"))
                    v2.setdefault((V2_METHODS[name], template), V2Call(V2_METHODS[name], template, where))
                elif name in V1_METHODS and "querier" in receiver:
                    override = next((k.value for k in node.keywords if k.arg == "query_type"), None)
                    target = (
                        override
                        if override is not None
                        else (
                            node.args[0]
                            if node.args
                            else next(
                                (k.value for k in node.keywords if k.arg in ("response_type", "query_type")),
                                None,
                            )
                        )
                    )
                    if not isinstance(target, ast.Name):
                        unread.append(where)
                        continue
                    key = (aliases.get(target.id, target.id).lower(), V1_METHODS[name])
                    v1.setdefault(key, V1Call(key[0], key[1], where))
    found = set(forwarded)
    for rel, tree in trees:  # the call sites of functions that take the path as a parameter
        for func in ast.walk(tree):
            if not isinstance(func, (ast.FunctionDef, ast.AsyncFunctionDef)):
                continue
            assigned = {
                n.targets[0].id: n.value
                for n in ast.walk(func)
                if isinstance(n, ast.Assign) and len(n.targets) == 1 and isinstance(n.targets[0], ast.Name)
            }
            for node in ast.walk(func):
                if not isinstance(node, ast.Call):
                    continue
                callee = (
                    node.func.attr if isinstance(node.func, ast.Attribute) else getattr(node.func, "id", None)
                )
                if callee not in forwarded:
                    continue
                index, method, _ = forwarded[callee]
                # a method called as self.f(...) / Cls.f(...) skips its first parameter only if it has one
                args = node.args
                arg = args[index] if index < len(args) else None
                if arg is None or _template(arg, assigned, constants) is None:
                    arg = args[index - 1] if 0 < index <= len(args) else None
                template = _template(arg, assigned, constants) if arg is not None else None
                if template is None:
                    unread.append(f"{rel}:{node.lineno}")
                    continue
                template = re.sub(r"/+$", "", template.lstrip("/"))
                v2.setdefault((method, template), V2Call(method, template, f"{rel}:{node.lineno}"))
                found.discard(callee)
    unread.extend(forwarded[f][2] for f in found)
    return set(v2.values()), set(v1.values()), unread
