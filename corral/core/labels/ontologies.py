"""Ontologies: the objects and classifications a project's labels may use.

An ontology belongs to an organisation; every member can read it and create new ones.  The
document is checked (``corral.core.labels.ontology.read``) and then stored as sent.
"""

from __future__ import annotations

import uuid
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from corral import errors
from corral.core.identity import Principal
from corral.core.labels import ontology
from corral.db.tables import Ontology
from corral.errors import ErrorDetail

MAX_TITLE = 300
MAX_DESCRIPTION = 10_000


def check_text(kind: str, title: Any, description: Any) -> tuple[str, str]:
    if not isinstance(title, str) or not title.strip() or len(title.strip()) > MAX_TITLE:
        message = f"a {kind} title is 1-{MAX_TITLE} characters, not blank"
        raise errors.ValidationFailed(message, details=[ErrorDetail(message, field="title")])
    description = description or ""
    if not isinstance(description, str) or len(description) > MAX_DESCRIPTION:
        message = f"a {kind} description is a string of at most {MAX_DESCRIPTION} characters"
        raise errors.ValidationFailed(message, details=[ErrorDetail(message, field="description")])
    return title.strip(), description


def create(s: Session, principal: Principal, title: Any, description: Any, editor: Any) -> Ontology:
    title, description = check_text("ontology", title, description)
    ontology.read(editor)
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


def get(s: Session, principal: Principal, ref: Any) -> Ontology:
    ident = parse_id(ref, "ontology")
    row = s.get(Ontology, ident)
    if row is None or row.org_id != principal.org_id:
        raise errors.NotFound.of("ontology", ident)
    return row


def list_(s: Session, principal: Principal) -> list[Ontology]:
    query = select(Ontology).where(Ontology.org_id == principal.org_id).order_by(Ontology.created_at)
    return list(s.scalars(query.limit(10_000)))


def index(row: Ontology) -> ontology.OntologyIndex:
    return ontology.read(row.editor)
