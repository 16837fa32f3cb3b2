"""Every call the installed Encord SDK can send, read from its source (so the list cannot drift).

* v2 REST: each ``<api_client>.get/post/put/patch/delete/get_paged_iterator(path, …)`` call whose
  receiver is an api client: a name or attribute that says ``api_client``, a parameter annotated
  ``ApiClient``, or ``self.<x>`` that a method of the class set from one of those (the SDK calls
  ``client.post`` and ``self._client.patch`` as often as ``api_client.get``); ``path`` as a
  template, f-string fields becoming ``{}``, a query string (``items?getLabels=true``) and a leading
  ``{domain}/v2/public/`` left off; and each ``<api client>._request(Request(method=, url=))``
  (the ML model calls build their request whole).
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


def _path(template: str) -> str:
    """The path of a template: no query string, no leading or trailing slash, and no domain before
    ``/v2/public/`` (``f"{client._domain}/v2/public/…"`` is sent to that path: the client urljoins it)."""
    path = re.sub(r"^\{\}/v2/public/", "", template.split("?", 1)[0])
    return re.sub(r"/+$", "", path.lstrip("/"))


def _prepared(
    call: ast.Call, assigned: dict[str, ast.expr], constants: dict[str, str]
) -> tuple[str, str] | None:
    """(method, template) of ``client._request(Request(method="get", url=f"…").prepare(), …)``."""
    request = call.args[0] if call.args else None
    if isinstance(request, ast.Call) and isinstance(request.func, ast.Attribute) and request.func.attr == "prepare":
        request = request.func.value
    if not (isinstance(request, ast.Call) and getattr(request.func, "id", None) == "Request"):
        return None
    keywords = {k.arg: k.value for k in request.keywords}
    method, url = keywords.get("method"), keywords.get("url")
    if not (isinstance(method, ast.Constant) and isinstance(method.value, str) and url is not None):
        return None
    template = _template(url, assigned, constants)
    return None if template is None else (method.value.upper(), _path(template))


def _receiver(node: ast.expr) -> str:
    return ast.unparse(node).lower()


def _api_client_params(func: ast.FunctionDef | ast.AsyncFunctionDef) -> set[str]:
    args = [*func.args.posonlyargs, *func.args.args, *func.args.kwonlyargs]
    return {a.arg for a in args if a.annotation is not None and ast.unparse(a.annotation).strip("'\"") == "ApiClient"}


def _is_api_client(node: ast.expr, params: set[str]) -> bool:
    """An expression that holds an api client, read from its name or from the function's annotations."""
    return "api_client" in _receiver(node) or (isinstance(node, ast.Name) and node.id in params)


def _api_client_attributes(cls: ast.ClassDef) -> set[str]:
    """``self.<x>`` that a method of ``cls`` assigns an api client to (``self._client = client``)."""
    out: set[str] = set()
    for func in cls.body:
        if not isinstance(func, (ast.FunctionDef, ast.AsyncFunctionDef)):
            continue
        params = _api_client_params(func)
        for node in ast.walk(func):
            if not (isinstance(node, ast.Assign) and len(node.targets) == 1):
                continue
            target = node.targets[0]
            if (
                isinstance(target, ast.Attribute)
                and isinstance(target.value, ast.Name)
                and target.value.id == "self"
                and _is_api_client(node.value, params)
            ):
                out.add(target.attr)
    return out


def _functions(tree: ast.Module) -> list[tuple[ast.FunctionDef | ast.AsyncFunctionDef, set[str]]]:
    """Every function of a module, with the ``self`` attributes its class holds api clients in."""
    out: list[tuple[ast.FunctionDef | ast.AsyncFunctionDef, set[str]]] = []
    owner: dict[int, set[str]] = {}
    for cls in ast.walk(tree):
        if isinstance(cls, ast.ClassDef):
            attributes = _api_client_attributes(cls)
            for func in cls.body:
                owner[id(func)] = attributes
    for func in ast.walk(tree):
        if isinstance(func, (ast.FunctionDef, ast.AsyncFunctionDef)):
            out.append((func, owner.get(id(func), set())))
    return out


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
        for func, client_attributes in _functions(tree):
            params = [a.arg for a in func.args.args]
            client_params = _api_client_params(func)
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
                target_is_client = _is_api_client(node.func.value, client_params) or (
                    isinstance(node.func.value, ast.Attribute)
                    and isinstance(node.func.value.value, ast.Name)
                    and node.func.value.value.id == "self"
                    and node.func.value.attr in client_attributes
                )
                if name in V2_METHODS and target_is_client:
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
                    template = _path(template)
                    v2.setdefault((V2_METHODS[name], template), V2Call(V2_METHODS[name], template, where))
                elif name == "_request" and target_is_client:  # client._request(Request(method=, url=))
                    built = _prepared(node, assigned, constants)
                    if built is None:
                        unread.append(where)
                        continue
                    v2.setdefault(built, V2Call(*built, where))
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
                template = _path(template)
                v2.setdefault((method, template), V2Call(method, template, f"{rel}:{node.lineno}"))
                found.discard(callee)
    unread.extend(forwarded[f][2] for f in found)
    return set(v2.values()), set(v1.values()), unread
