"""Which items exist for users: staged items wait for their upload job.

An upload job without ``ignore_errors`` inserts its items *staged* (all or nothing): they are
invisible while the job is ``PENDING``, and when it ends they either become visible with the
job's status turning ``DONE`` (nothing else is written, so publishing a million items is one
row's update) or are deleted with it (``ERROR``, ``CANCELLED``).  Every query for items users
can see filters on :func:`published`.
"""

from __future__ import annotations

from sqlalchemy import ColumnElement, and_, delete, or_, select
from sqlalchemy.orm import Session

from corral.db.tables import Item, ItemPart, Job


def published() -> ColumnElement[bool]:
    """True for the items users can see (deleted or not)."""
    return or_(
        Item.staged.is_(False),
        and_(Item.job_id.is_not(None), Item.job_id.not_in(select(Job.id).where(Job.status == "PENDING"))),
    )


def is_published(s: Session, item: Item) -> bool:
    if not item.staged:
        return True
    return item.job_id is not None and s.scalar(select(Job.status).where(Job.id == item.job_id)) != "PENDING"



def discard_staged(s: Session, job_id: object) -> None:
    """Delete a job's staged items (and their parts): what a job that did not end DONE leaves."""
    staged = select(Item.id).where(Item.job_id == job_id, Item.staged.is_(True))
    s.execute(delete(ItemPart).where(ItemPart.item_id.in_(staged)))
    s.execute(delete(Item).where(Item.job_id == job_id, Item.staged.is_(True)))
