"""Ontologies: the objects and classifications a project's labels may use.

An ontology belongs to an organisation; every member can read it and create new ones.  The
document is checked (``corral.core.labels.ontology.read``) and then stored as sent.
"""

from __future__ import annotations

import re
import uuid
from typing import Any, Literal

from sqlalchemy import select
from sqlalchemy.orm import Session

from corral import errors
from corral.core import filters, text_rules
from corral.core.identity import Principal
from corral.core.labels import ontology, ontology_sdk
from corral.db.tables import LabelRow, Ontology, Project
from corral.db.types import utcnow
from corral.errors import ErrorDetail

MAX_TITLE = 300
MAX_DESCRIPTION = 10_000
TITLE_PATTERN = text_rules.stripped(MAX_TITLE)


def check_text(kind: str, title: Any, description: Any) -> tuple[str, str]:
    if not isinstance(title, str) or not re.search(TITLE_PATTERN, title):
        message = f"a {kind} title is 1-{MAX_TITLE} characters, not blank"
        raise errors.ValidationFailed(message, details=[ErrorDetail(message, field="title")])
    description = description or ""
    if not isinstance(description, str) or len(description) > MAX_DESCRIPTION:
        message = f"a {kind} description is a string of at most {MAX_DESCRIPTION} characters"
        raise errors.ValidationFailed(message, details=[ErrorDetail(message, field="description")])
    return title.strip(), description


def create(s: Session, principal: Principal, title: Any, description: Any, editor: Any) -> Ontology:
    title, description = check_text("ontology", title, description)
    editor, _ = ontology.prepare_new(editor)
    row = Ontology(
        org_id=principal.org_id, title=title, description=description, editor=editor,
        created_by=principal.user_id,
    )
    s.add(row)
    s.flush()
    return row


def parse_id(ref: Any, kind: str) -> uuid.UUID:
    try:
        return ref if isinstance(ref, uuid.UUID) else uuid.UUID(str(ref))
    except ValueError:
        raise errors.NotFound(f"{kind} {ref!r} not found") from None


def get(
    s: Session, principal: Principal, ref: Any, *, lock: Literal["share", "update"] | None = None
) -> Ontology:
    """An ontology of the principal's organisation; ``lock`` row-locks it and reads it again
    (PostgreSQL): ``share`` while labels are checked against it, ``update`` to change it."""
    ident = parse_id(ref, "ontology")
    if lock is None:
        row = s.get(Ontology, ident)
    else:
        row = s.scalar(select(Ontology).where(Ontology.id == ident)
                       .with_for_update(read=lock == "share").execution_options(populate_existing=True))
    if row is None or row.org_id != principal.org_id:
        raise errors.NotFound.of("ontology", ident)
    return row


def list_(s: Session, principal: Principal, where: filters.Listing | None = None) -> list[Ontology]:
    """The organisation's ontologies matching ``where``, oldest first (at most 10,000)."""
    query = select(Ontology).where(Ontology.org_id == principal.org_id)
    if where is not None:
        query = filters.apply(query, where, title=Ontology.title, description=Ontology.description,
                              created=Ontology.created_at, edited=Ontology.updated_at)
    return list(s.scalars(query.order_by(Ontology.created_at, Ontology.id).limit(10_000)))


def can_change(principal: Principal, row: Ontology) -> bool:
    return principal.is_admin or row.created_by == principal.user_id


def update(s: Session, principal: Principal, ref: Any, title: Any, description: Any, editor: Any) -> Ontology:
    """Replace an ontology's title, description and structure (its creator or an admin).

    A structure edit is checked against the labels of every project using the ontology: a
    feature (object, classification, attribute or option) that labels use cannot disappear, and
    an object in use keeps its shape.  Everything else may change.
    """
    row = get(s, principal, ref, lock="update")  # waits for label saves checked against the old one
    if not can_change(principal, row):
        raise errors.PermissionDenied(
            f"ontology {row.id} can be changed by its creator or an admin only"
        )
    title, description = check_text("ontology", title, description)
    editor, new = ontology.prepare_new(editor)
    before, after = _places(ontology.read(row.editor)), _places(new)
    changed = {h for h, place in before.items() if after.get(h) != place}
    if changed:
        used = _used(s, row.id) & changed
        if used:
            names = _names(ontology.read(row.editor))
            shown = ", ".join(f"{names.get(h, h)!r} ({h})" for h in sorted(used)[:10])
            more = f" and {len(used) - 10} more" if len(used) > 10 else ""
            raise errors.Conflict(
                f"ontology {row.id}: labels use feature(s) {shown}{more}, which this edit removes, "
                "reshapes or moves (an object's shape, an object becoming a classification, an "
                "attribute's type, owner or being dynamic, an option's attribute); remove those labels "
                "first, or keep the features"
            )
    row.title, row.description, row.editor = title, description, editor
    row.updated_at = utcnow()
    s.flush()
    return row


def _places(index: ontology.OntologyIndex) -> dict[str, tuple[str | None, ...]]:
    """Each feature hash and what stored labels rely on it being: an object of its shape or a
    classification; an attribute of its type on its object or classification, static or dynamic
    (per-frame answers, which carry a range); an option of its
    attribute.  A used feature whose place changes leaves labels the SDK cannot read back."""
    out: dict[str, tuple[str | None, ...]] = {}
    for element in (*index.objects.values(), *index.classifications.values()):
        out[element.feature_hash] = (element.kind, element.shape)
        for attr in element.attributes.values():
            out[attr.feature_hash] = ("attribute", element.feature_hash, attr.type, str(attr.dynamic))
            for option in attr.options:
                out[option] = ("option", attr.feature_hash)
    return out


def _names(index: ontology.OntologyIndex) -> dict[str, str]:
    out: dict[str, str] = {}
    for element in (*index.objects.values(), *index.classifications.values()):
        out[element.feature_hash] = element.name
        for attr in element.attributes.values():
            out[attr.feature_hash] = attr.name
            out.update(attr.options)
    return out


def _used(s: Session, ontology_id: uuid.UUID) -> set[str]:
    """Every feature hash the labels of the ontology's projects use."""
    used: set[str] = set()
    query = (
        select(LabelRow.document)
        .join(Project, Project.id == LabelRow.project_id)
        .where(Project.ontology_id == ontology_id)
        .execution_options(yield_per=200)
    )
    for doc in s.scalars(query):
        _collect(doc, used)
    return used


def _collect(node: Any, out: set[str]) -> None:
    if isinstance(node, dict):
        fh = node.get("featureHash")
        if isinstance(fh, str):
            out.add(fh)
        for value in node.values():
            _collect(value, out)
    elif isinstance(node, list):
        for value in node:
            _collect(value, out)


def public_editor(row: Ontology) -> Any:
    """The document as clients get it: one stored before saves filled in what the SDK needs
    (``ontology_sdk``) gets it filled in here, so the SDK can read every stored ontology."""
    return ontology_sdk.complete(row.editor, strict=False)[0]


def index(row: Ontology) -> ontology.OntologyIndex:
    return ontology.read(row.editor)
