"""Filter presets: saved filters of the index, per organisation (the SDK's ``FilterPreset``).

A preset holds either corral's filter tree (``filter``, made through the native API or CLI) or
the Encord preset document exactly as the SDK sent it (``document``, its JSON text, returned byte
for byte).  Its *effective filter* is the tree, or the document translated:

* ``{"global_filters": {"filters": [E, ...]}, "local_filters": {FOLDER: {"filters": [E, ...]}}}``:
  every global element holds (and); a folder of ``local_filters`` adds ``@folder under FOLDER``
  and its elements (several folders: any of them); the all-zero folder counts as global.
* An element ``{"key": K, "include": true, "values": [V, ...], "type": T}`` is ``K in (V, ...)``
  (``include: false``: ``not K in (...)``), where ``T`` must be ``K``'s type in the schema.
* An element ``{"corral_filter": TREE}`` is a corral filter tree.

Anything else (Encord's unpublished filter vocabulary) is *unsupported*: stored and returned as
sent, listed by ``unsupported``, and refused (400, naming it) when the preset is used; never
ignored.

Every member of the organisation sees its presets; the creator and admins change them.  Another
organisation's presets are 404.
"""

from __future__ import annotations

import json
import re
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any, TypeVar

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from corral import errors, jsoncodec
from corral.core import pagination, text_rules
from corral.core.identity import Principal
from corral.db.tables import IndexPreset
from corral.errors import ErrorDetail

T = TypeVar("T")

MAX_NAME = 300
MAX_DESCRIPTION = 10_000
MAX_DOCUMENT = 1_000_000
#: A preset's or collection's name holds a character that is not blank (and is 1-MAX_NAME long).
NAME_PATTERN = text_rules.NOT_BLANK
ZERO = "00000000-0000-0000-0000-000000000000"
ELEMENT_KEYS = {"key", "include", "values", "type"}
#: a project preset's document members (camelCase), and the Index document's names for them
CAMEL = {"globalFilters": "global_filters", "localFilters": "local_filters"}
SCALAR_TYPES = ("boolean", "datetime", "number", "uuid", "varchar", "text", "enum")


@dataclass(frozen=True)
class PresetView:
    id: uuid.UUID
    name: str
    description: str | None
    filter: dict[str, Any] | None  # the effective filter tree (None: every item, or unsupported)
    document: str | None  # the Encord document's text, when it came from the SDK
    unsupported: list[str]  # what of the document corral cannot interpret
    created_by: uuid.UUID | None
    created_at: datetime
    updated_at: datetime


def _bad(field: str, message: str) -> errors.ValidationFailed:
    return errors.ValidationFailed(message, details=[ErrorDetail(message, field=field)])


def check_name(name: Any, field: str = "name") -> str:
    if not isinstance(name, str) or not re.search(NAME_PATTERN, name) or len(name) > MAX_NAME:
        raise _bad(field, f"a name is 1-{MAX_NAME} characters, not blank")
    return name.strip()


def check_description(description: Any, field: str = "description") -> str | None:
    if description is not None and (not isinstance(description, str) or len(description) > MAX_DESCRIPTION):
        raise _bad(field, f"a description is text of at most {MAX_DESCRIPTION} characters")
    return description


# -- the Encord document -----------------------------------------------------------------------


def check_document(text: str, field: str) -> dict[str, Any]:
    """The parsed Encord preset document, checked for its shape (an object of filter lists)."""
    if len(text) > MAX_DOCUMENT:
        raise _bad(field, f"a preset document is at most {MAX_DOCUMENT:,} characters")
    parsed = jsoncodec.parse(text, field=field)
    if not isinstance(parsed, dict):
        raise _bad(field, "a preset document is a JSON object (global_filters, local_filters)")
    return parsed


def translate(document: dict[str, Any]) -> tuple[dict[str, Any] | None, list[str]]:
    """The filter tree of an Encord preset document, and what of it is unsupported."""
    problems: list[str] = []
    overall: list[dict[str, Any]] = []
    by_folder: list[dict[str, Any]] = []
    for member in document:
        if member not in ("global_filters", "local_filters"):
            problems.append(f"{member}: not a member corral understands (global_filters, local_filters)")
    overall += _elements(document.get("global_filters"), "global_filters", problems)
    local = document.get("local_filters") or {}
    if not isinstance(local, dict):
        problems.append("local_filters: expected an object of folder uuid -> {filters}")
        local = {}
    for folder, block in local.items():
        elements = _elements(block, f"local_filters.{folder}", problems)
        if folder == ZERO:
            overall += elements
            continue
        try:
            uuid.UUID(folder)
        except ValueError:
            problems.append(f"local_filters.{folder}: expected a folder uuid")
            continue
        if elements or block is not None:
            by_folder.append(_and([{"field": "folder", "op": "under", "value": folder}, *elements]))
    if by_folder:
        overall.append(by_folder[0] if len(by_folder) == 1 else {"or": by_folder})
    return (_and(overall) if overall else None), problems


def _and(items: list[dict[str, Any]]) -> dict[str, Any]:
    return items[0] if len(items) == 1 else {"and": items}


def _elements(block: Any, where: str, problems: list[str]) -> list[dict[str, Any]]:
    if block is None:
        return []
    if not isinstance(block, dict) or not isinstance(block.get("filters", []), list):
        problems.append(f"{where}: expected {{\"filters\": [...]}}")
        return []
    for member in block:
        if member != "filters":
            problems.append(f"{where}.{member}: not a member corral understands (filters)")
    out = []
    for i, element in enumerate(block.get("filters", [])):
        tree = _element(element, f"{where}.filters[{i}]", problems)
        if tree is not None:
            out.append(tree)
    return out


def _element(element: Any, where: str, problems: list[str]) -> dict[str, Any] | None:
    if isinstance(element, dict) and set(element) == {"corral_filter"} and isinstance(
            element["corral_filter"], dict):
        tree: dict[str, Any] = element["corral_filter"]
        return tree
    shown = json.dumps(element, separators=(",", ":"))[:200]
    if not isinstance(element, dict) or set(element) != ELEMENT_KEYS:
        problems.append(f"{where}: unsupported filter element {shown} (corral understands "
                        "{key, include, values, type} over metadata keys, and {corral_filter})")
        return None
    key, include, values, type_ = (element[k] for k in ("key", "include", "values", "type"))
    if not isinstance(key, str) or not isinstance(include, bool) or type_ not in SCALAR_TYPES:
        problems.append(f"{where}: unsupported filter element {shown} (key: a metadata key, include: "
                        f"true/false, type: one of {', '.join(SCALAR_TYPES)})")
        return None
    if not isinstance(values, list) or not values:
        problems.append(f"{where}: values must be a non-empty list")
        return None
    predicate = {"key": key, "op": "in", "value": values}
    return predicate if include else {"not": predicate}


def type_problems(document: dict[str, Any], kinds: dict[str, str]) -> list[str]:
    """Elements whose ``type`` is not their key's type in the schema."""
    out = []
    blocks = [("global_filters", document.get("global_filters"))]
    local = document.get("local_filters")
    if isinstance(local, dict):
        blocks += [(f"local_filters.{k}", v) for k, v in local.items()]
    for where, block in blocks:
        if not isinstance(block, dict) or not isinstance(block.get("filters"), list):
            continue
        for i, e in enumerate(block["filters"]):
            if isinstance(e, dict) and set(e) == ELEMENT_KEYS and isinstance(e.get("key"), str):
                kind = kinds.get(e["key"])
                if kind is not None and kind != e["type"]:
                    out.append(f"{where}.filters[{i}]: type {e['type']!r} is not {e['key']!r}'s type "
                               f"in the schema ({kind})")
    return out


def sdk_document(row: IndexPreset) -> str:
    """The Encord document of a preset: as the SDK sent it, or a native filter wrapped."""
    if row.document is not None:
        return row.document
    filters = [{"corral_filter": row.filter}] if row.filter else []
    return json.dumps({"local_filters": {}, "global_filters": {"filters": filters}}, separators=(",", ":"))


# -- the effective filter ----------------------------------------------------------------------


def effective(
    row: IndexPreset, kinds: dict[str, str] | None = None
) -> tuple[dict[str, Any] | None, list[str]]:
    """The preset's filter tree and its unsupported parts (``kinds``: key -> schema kind).  A
    project's preset names its members in camelCase (``globalFilters``, ``localFilters``)."""
    if row.document is None:
        return row.filter, []
    document = json.loads(row.document)
    if row.project_id is None:
        return _read(document, kinds)
    return read_project_document(document, kinds)


def _read(document: dict[str, Any], kinds: dict[str, str] | None) -> tuple[dict[str, Any] | None, list[str]]:
    tree, problems = translate(document)
    if kinds is not None:
        problems += type_problems(document, kinds)
    return tree, problems


def read_project_document(
    document: dict[str, Any], kinds: dict[str, str] | None = None
) -> tuple[dict[str, Any] | None, list[str]]:
    """A project preset's document read by the same rules, its members named as the SDK sends
    them (a snake_case member there is not one corral understands)."""
    snake = [k for k in document if k in CAMEL.values()]
    renamed = {CAMEL.get(k, k): v for k, v in document.items() if k not in snake}
    tree, problems = _read(renamed, kinds)
    for camel, name in CAMEL.items():
        problems = [p.replace(name, camel) for p in problems]
    back = {v: k for k, v in CAMEL.items()}
    return tree, [f"{k}: a project preset's members are camelCase ({back[k]})" for k in snake] + problems


def usable_filter(row: IndexPreset, kinds: dict[str, str], field: str = "preset") -> dict[str, Any] | None:
    """The preset's filter tree, or a 400 naming what corral cannot interpret."""
    tree, problems = effective(row, kinds)
    if problems:
        shown = "; ".join(problems[:10])
        raise errors.ValidationFailed(
            f"preset {row.name!r} ({row.id}) has filters corral does not support: {shown}",
            details=[ErrorDetail(p, field=field) for p in problems[:100]],
        )
    return tree


def view(row: IndexPreset, kinds: dict[str, str] | None = None) -> PresetView:
    tree, problems = effective(row, kinds)
    return PresetView(row.id, row.name, row.description, tree, row.document, problems, row.created_by,
                      row.created_at, row.updated_at)


# -- finding, creating, changing ---------------------------------------------------------------


def resolve(s: Session, principal: Principal, ref: str | uuid.UUID, need: str = "viewer") -> IndexPreset:
    """A preset by id, or by name (a name several presets share is a 409).  Another
    organisation's is a 404; changing (``need="editor"``) is for its creator and admins (403)."""
    try:
        ident = ref if isinstance(ref, uuid.UUID) else uuid.UUID(str(ref))
    except ValueError:
        rows = list(s.scalars(select(IndexPreset).where(
            IndexPreset.org_id == principal.org_id, IndexPreset.project_id.is_(None),
            IndexPreset.name == str(ref)).limit(2)))
        if not rows:
            raise errors.NotFound(f"preset {str(ref)!r} not found") from None
        if len(rows) > 1:
            raise errors.Conflict(f"several presets are named {str(ref)!r}: name one by its id") from None
        row = rows[0]
    else:
        found = s.get(IndexPreset, ident)
        if found is None or found.org_id != principal.org_id or found.project_id is not None:
            raise errors.NotFound.of("preset", ident)  # a project's preset is the project's
        row = found
    if need == "editor" and not (principal.is_admin or row.created_by == principal.user_id):
        raise errors.PermissionDenied(f"only its creator or an admin can change preset {row.id}")
    if need == "editor":
        lock(s, row)
    return row


def lock(s: Session, row: IndexPreset) -> None:
    """Lock the preset for a change: a concurrent delete is a 404 here (PostgreSQL)."""
    if s.scalar(  # locked for the change: a concurrent delete is a 404 here
            select(IndexPreset.id).where(IndexPreset.id == row.id).with_for_update()) is None:
        raise errors.NotFound.of("preset", row.id)


def by_request_key(s: Session, principal: Principal, key: str | None) -> IndexPreset | None:
    if key is None:
        return None
    return s.scalar(select(IndexPreset).where(IndexPreset.org_id == principal.org_id,
                                              IndexPreset.request_key == key))


def create(
    s: Session, principal: Principal, name: str, description: str | None, *,
    filter_: dict[str, Any] | None = None, document: str | None = None, request_key: str | None = None,
    project_id: uuid.UUID | None = None,
) -> IndexPreset:
    """A new preset (the caller has checked ``filter_``; ``project_id``: a project's).  With a
    ``request_key`` already used in the organisation, the preset that request made (a retried
    create makes no duplicate)."""
    earlier = by_request_key(s, principal, request_key)
    if earlier is not None:
        return earlier
    row = IndexPreset(org_id=principal.org_id, name=check_name(name),
                      description=check_description(description), filter=filter_ or None,
                      document=document, request_key=request_key, created_by=principal.user_id,
                      project_id=project_id)
    return insert_once(s, row, lambda: by_request_key(s, principal, request_key))


def insert_once(s: Session, row: T, earlier: Callable[[], T | None]) -> T:
    """Insert ``row``, or, when a concurrent create with the same request key committed first
    (the unique key refuses this one), answer the row that create made: two attempts of one
    retried request, racing, make one row and both answer it."""
    try:
        with s.begin_nested():  # a failed insert leaves the transaction usable on PostgreSQL
            s.add(row)
            s.flush()
    except IntegrityError:
        found = earlier()
        if found is None:
            raise
        return found
    return row


def update(
    s: Session, row: IndexPreset, *, name: str | None = None, description: str | None = None,
    filter_: dict[str, Any] | None = None, document: str | None = None, clear_filter: bool = False,
) -> IndexPreset:
    """Change what is given; a new filter replaces a document and the other way round."""
    if name is not None:
        row.name = check_name(name)
    if description is not None:
        row.description = check_description(description)
    if filter_ is not None or clear_filter:
        row.filter, row.document = (filter_ or None), None
    if document is not None:
        row.filter, row.document = None, document
    s.flush()
    return row


def delete(s: Session, row: IndexPreset) -> None:
    s.delete(row)
    s.flush()


def list_(
    s: Session, principal: Principal, *, ids: list[uuid.UUID] | None = None, search: str | None = None,
    page_size: int = 100, page_token: str | None = None, project_id: uuid.UUID | None = None,
) -> pagination.Page[IndexPreset]:
    """The organisation's presets (``project_id``: that project's), oldest first; ``ids``: only
    those (unknown ids are left out)."""
    pagination.check_page_size(page_size)
    query = select(IndexPreset).where(IndexPreset.org_id == principal.org_id,
                                      IndexPreset.project_id == project_id if project_id is not None
                                      else IndexPreset.project_id.is_(None))
    if ids:
        query = query.where(IndexPreset.id.in_(ids))
    if search:
        from corral.core.datasets import like_pattern

        query = query.where(IndexPreset.name.ilike(like_pattern(search), escape="\\"))
    parse = pagination.parse_datetime
    cursor = pagination.decode(page_token, "created", "asc", parse) if page_token else None
    return pagination.fetch(s, query, IndexPreset.created_at, IndexPreset.id, order="created",
                            direction="asc", page_size=page_size, cursor=cursor)
