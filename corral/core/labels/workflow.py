"""A project's workflow: every data unit is a task that goes annotate -> review -> complete.

Every project has this default workflow (corral has no workflow templates).  A stage's id is
derived from the project's id, a task's id is its ``workflow_tasks`` row's (a data unit with no
row yet is a new task in the annotate stage; ``task_id`` names it the same way before and after).

Legal moves, and who may make them:

* annotate (NEW, ASSIGNED, RELEASED, REOPENED): ``ASSIGN`` (to a member who may annotate),
  ``RELEASE``, ``SUBMIT`` -> review (NEW, or ASSIGNED to ``assignee`` / the current assignee);
  annotators, annotator-reviewers, team managers and admins;
* review (NEW, ASSIGNED, RELEASED): ``ASSIGN``, ``RELEASE``, ``APPROVE`` -> complete,
  ``REJECT`` -> annotate, REOPENED; reviewers, annotator-reviewers, team managers and admins;
* complete: nothing but a move;
* a move (``move_tasks``) takes tasks from one stage to any other, NEW and unassigned: admins
  and team managers only;
* the SDK's ``LabelRowV2.workflow_complete()`` and ``workflow_reopen()`` (``finish``) take the
  tasks of label rows, from whatever stage they are in, to complete (COMPLETED) or back to
  annotate (REOPENED), unassigned: admins and team managers only, as a move.
* a task's priority (0.0-1.0, ``set_priorities``; the SDK's ``LabelRowV2.set_priority``) is set
  by admins and team managers, in any stage; it changes nothing else.

Any other action, or an action on a task that is not in the stage named, is refused (400).
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Any, NoReturn

from sqlalchemy import and_, select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from corral import errors
from corral.core import identity
from corral.core.identity import Principal
from corral.core.labels import projects
from corral.db.tables import DataRow, Dataset, Item, Project, ProjectDataset, User, WorkflowTask
from corral.db.types import utcnow
from corral.errors import ErrorDetail

STAGES = ("annotate", "review", "complete")
TITLES = {"annotate": "Annotate", "review": "Review", "complete": "Complete"}
KINDS = {"annotate": "ANNOTATION", "review": "REVIEW", "complete": "DONE"}
STATUSES = {
    "annotate": ("NEW", "ASSIGNED", "RELEASED", "REOPENED"),
    "review": ("NEW", "ASSIGNED", "RELEASED", "REOPENED"),
    "complete": ("COMPLETED",),
}
ACTIONS = {"annotate": ("ASSIGN", "RELEASE", "SUBMIT"), "review": ("ASSIGN", "RELEASE", "APPROVE", "REJECT")}
#: project roles that may work in a stage
WORKERS = {
    "annotate": ("admin", "team_manager", "annotator", "annotator_reviewer", "editor"),
    "review": ("admin", "team_manager", "reviewer", "annotator_reviewer", "editor"),
}
MANAGERS = ("admin", "team_manager")
MAX_TASKS = 500  # tasks in one call (the SDK's bundles send at most 500 moves)
MAX_PRIORITIES = 1_000  # priorities in one call (a default SDK bundle sends 1,000)


def stage_id(project_id: uuid.UUID, stage: str) -> uuid.UUID:
    return uuid.uuid5(project_id, f"workflow/{stage}")


def stage_of(project_id: uuid.UUID, ref: Any) -> str:
    """A stage by its id (the Encord-compatible API) or its name (the native API)."""
    for stage in STAGES:
        if ref == stage or str(stage_id(project_id, stage)) == str(ref):
            return stage
    raise errors.NotFound(f"workflow stage {ref} not found in project {project_id}")


def stages(project_id: uuid.UUID) -> list[dict[str, str]]:
    return [
        {"stage": s, "id": str(stage_id(project_id, s)), "title": TITLES[s], "kind": KINDS[s]} for s in STAGES
    ]


def node(project_id: uuid.UUID, stage: str) -> dict[str, str]:
    """A label row's ``workflow_graph_node``."""
    return {"uuid": str(stage_id(project_id, stage)), "title": TITLES[stage]}


def task_id(project_id: uuid.UUID, data_row_id: uuid.UUID) -> uuid.UUID:
    return uuid.uuid5(project_id, f"task/{data_row_id}")


@dataclass(frozen=True)
class Task:
    id: uuid.UUID
    stage: str
    status: str
    data_row_id: uuid.UUID
    dataset_id: uuid.UUID
    title: str
    assignee: str | None
    created_at: datetime
    updated_at: datetime
    priority: float | None = None


@dataclass(frozen=True)
class TaskFilter:
    assignees: list[str] | None = None
    data_row_ids: list[uuid.UUID] | None = None
    dataset_ids: list[uuid.UUID] | None = None
    title_contains: str | None = None
    statuses: list[str] | None = None


def _rows(s: Session, project: Project) -> list[tuple[DataRow, Dataset, Item, WorkflowTask | None]]:
    on_task = and_(WorkflowTask.project_id == project.id, WorkflowTask.data_row_id == DataRow.id)
    query = (
        select(DataRow, Dataset, Item, WorkflowTask)
        .join(
            ProjectDataset,
            and_(ProjectDataset.dataset_id == DataRow.dataset_id, ProjectDataset.project_id == project.id),
        )
        .join(Dataset, Dataset.id == DataRow.dataset_id)
        .join(Item, Item.id == DataRow.item_id)
        .outerjoin(WorkflowTask, on_task)
        .where(Item.deleted_at.is_(None))
        .order_by(DataRow.dataset_id, DataRow.item_id)
    )
    return [(r[0], r[1], r[2], r[3]) for r in s.execute(query)]


def stage_by_row(
    s: Session, project_id: uuid.UUID, data_row_ids: list[uuid.UUID]
) -> dict[uuid.UUID, tuple[str, float | None]]:
    """The stage and priority of each data unit's task (those without a task row are in annotate,
    with no priority)."""
    found: dict[uuid.UUID, tuple[str, float | None]] = {}
    for i in range(0, len(data_row_ids), 500):
        query = select(WorkflowTask.data_row_id, WorkflowTask.stage, WorkflowTask.priority).where(
            WorkflowTask.project_id == project_id, WorkflowTask.data_row_id.in_(data_row_ids[i : i + 500]))
        found.update((row, (stage, priority)) for row, stage, priority in s.execute(query).tuples())
    return {r: found.get(r, ("annotate", None)) for r in data_row_ids}


def tasks(
    s: Session, principal: Principal, project_ref: Any, stage_ref: Any, where: TaskFilter
) -> list[Task]:
    """The tasks in a stage, filtered, in a stable order."""
    project = projects.load(s, principal, project_ref)
    stage = stage_of(project.id, stage_ref)
    if where.statuses is not None:
        bad = [v for v in where.statuses if v not in STATUSES[stage]]
        if bad:
            raise errors.ValidationFailed(
                f"statuses: {bad[0]!r} is not a status of the {stage} stage ({', '.join(STATUSES[stage])})",
                details=[ErrorDetail(", ".join(STATUSES[stage]), field="statuses")],
            )
    emails = _emails(s, project)
    # e-mails are kept in lower case (as ASSIGN reads them): "Ann@X.io" finds ann@x.io's tasks
    wanted = {a.strip().lower() for a in where.assignees or ()}
    out = []
    for row, dataset, item, task in _rows(s, project):
        t = _task(project, row, dataset, item, task, emails)
        if t.stage != stage:
            continue
        if where.data_row_ids is not None and row.id not in where.data_row_ids:
            continue
        if where.dataset_ids is not None and dataset.id not in where.dataset_ids:
            continue
        if where.title_contains is not None and where.title_contains.lower() not in item.name.lower():
            continue
        if where.statuses is not None and t.status not in where.statuses:
            continue
        if where.assignees is not None and (t.assignee or "").lower() not in wanted:
            continue
        out.append(t)
    return out


def _emails(s: Session, project: Project) -> dict[uuid.UUID, str]:
    ids = select(WorkflowTask.assignee_id).where(WorkflowTask.project_id == project.id)
    return dict(s.execute(select(User.id, User.email).where(User.id.in_(ids))).tuples().all())


def _task(
    project: Project,
    row: DataRow,
    dataset: Dataset,
    item: Item,
    task: WorkflowTask | None,
    emails: dict[uuid.UUID, str],
) -> Task:
    if task is None:
        return Task(
            task_id(project.id, row.id),
            "annotate",
            "NEW",
            row.id,
            dataset.id,
            item.name,
            None,
            row.created_at,
            row.created_at,
        )
    return Task(
        task.id,
        task.stage,
        task.status,
        row.id,
        dataset.id,
        item.name,
        emails.get(task.assignee_id) if task.assignee_id else None,
        task.created_at,
        task.updated_at,
        task.priority,
    )


def _load(
    s: Session, project: Project, ids: list[uuid.UUID], stage: str | None,
    names: dict[uuid.UUID, str] | None = None,
) -> dict[uuid.UUID, WorkflowTask]:
    """The task rows of ``ids`` (created where missing), row-locked, each checked to be in ``stage``
    (in any stage if None).  A task not found is named as ``names`` says (by its id otherwise).

    Concurrent actions on one task take turns (PostgreSQL): the data rows are key-share locked
    (an unlink waits, or has happened and the task is a 404), a missing task row is inserted
    with ``ON CONFLICT DO NOTHING`` (two first actions at once made it twice: a 500), and the
    task rows are locked and read again before the stage check, both in id order, so a second
    SUBMIT of one task sees it in review (a 400), as one at a time.
    """
    wanted = set(ids)
    units: dict[uuid.UUID, DataRow] = {}
    for row, _dataset, _item, task in _rows(s, project):
        tid = task.id if task is not None else task_id(project.id, row.id)
        if tid in wanted:
            units[tid] = row
    held = set(s.scalars(
        select(DataRow.id).where(DataRow.id.in_(sorted(r.id for r in units.values())))
        .order_by(DataRow.id).with_for_update(read=True, key_share=True)
    ))
    units = {tid: row for tid, row in units.items() if row.id in held}
    missing = [i for i in ids if i not in units]
    if missing and names is not None:
        raise errors.NotFound(f"{', '.join(names.get(i, str(i)) for i in missing[:10])} "
                              f"not found in project {project.id}")
    if missing:
        shown = ", ".join(map(str, missing[:10]))
        raise errors.NotFound(f"task(s) {shown} not found in project {project.id}")
    new = [
        {"id": tid, "project_id": project.id, "data_row_id": row.id, "stage": "annotate", "status": "NEW",
         "created_at": row.created_at, "updated_at": row.created_at}
        for tid, row in sorted(units.items())
    ]
    insert = postgresql.insert if s.get_bind().dialect.name == "postgresql" else sqlite.insert
    s.execute(insert(WorkflowTask).values(new).on_conflict_do_nothing())
    query = (
        select(WorkflowTask).where(WorkflowTask.id.in_(sorted(units))).order_by(WorkflowTask.id)
        .with_for_update().execution_options(populate_existing=True)
    )
    by_id = {t.id: t for t in s.scalars(query)}
    elsewhere = [t for t in by_id.values() if stage is not None and t.stage != stage]
    if elsewhere:
        t = elsewhere[0]
        raise errors.ValidationFailed(
            f"task {t.id} is in the {t.stage} stage, not {stage}",
            details=[ErrorDetail(f"tasks of the {stage} stage", field="task_uuid")],
        )
    return by_id


def _assignee(s: Session, principal: Principal, project: Project, email: Any, stage: str) -> uuid.UUID:
    if not isinstance(email, str):
        raise errors.ValidationFailed(
            "assignee must be an e-mail address", details=[ErrorDetail("an e-mail address", field="assignee")]
        )
    user = identity.org_user(s, principal.org_id, email)
    member = identity.principal_for_user(user, "bearer")
    found = projects.role(s, member, project)
    if stage in WORKERS and found not in WORKERS[stage]:
        raise errors.ValidationFailed(
            f"{user.email} cannot work in the {stage} stage of project {project.id}: "
            f"their role is {found or 'none'}",
            details=[ErrorDetail("a member who may work in the stage", field="assignee")],
        )
    return user.id


def _own(s: Session, principal: Principal, task: WorkflowTask, action: Action) -> None:
    """An annotator or reviewer works on their own tasks: they claim a task that nobody holds
    (``ASSIGN`` to themselves) and act on tasks that are theirs or nobody's.  Giving a task to
    someone else, or taking one from its assignee, is for admins and team managers."""
    if action.action == "ASSIGN" and (
        not isinstance(action.assignee, str)
        or identity.org_user(s, principal.org_id, action.assignee).id != principal.user_id
    ):
        raise errors.PermissionDenied(
            f"you may assign task {task.id} to yourself only: assigning tasks to others needs the admin "
            "or team manager role"
        )
    if task.assignee_id is not None and task.assignee_id != principal.user_id:
        held = s.get(User, task.assignee_id)
        raise errors.PermissionDenied(
            f"task {task.id} is assigned to {held.email if held else 'another member'}: only they, an admin "
            "or a team manager may act on it"
        )


@dataclass(frozen=True)
class Action:
    task: uuid.UUID
    action: str
    assignee: str | None = None
    retain_assignee: bool = False


def act(s: Session, principal: Principal, project_ref: Any, stage_ref: Any, actions: list[Action]) -> int:
    """Apply task actions in one stage, all or none."""
    project = projects.load(s, principal, project_ref)
    stage = stage_of(project.id, stage_ref)
    if stage not in ACTIONS:
        raise errors.ValidationFailed(f"tasks in the {stage} stage take no actions (move them instead)")
    mine = projects.role(s, principal, project)
    if mine not in WORKERS[stage]:
        raise errors.PermissionDenied(
            f"you are a {mine} of project {project.id}: you cannot work in its {stage} stage"
        )
    if not 1 <= len(actions) <= MAX_TASKS:
        raise errors.ValidationFailed(f"give 1 to {MAX_TASKS} actions")
    rows = _load(s, project, [a.task for a in actions], stage)
    now = utcnow()
    for a in actions:
        if a.action not in ACTIONS[stage]:
            raise errors.ValidationFailed(
                f"{a.action} is not an action of the {stage} stage ({', '.join(ACTIONS[stage])})",
                details=[ErrorDetail(", ".join(ACTIONS[stage]), field="action")],
            )
        task = rows[a.task]
        if mine not in MANAGERS:
            _own(s, principal, task, a)
        if a.action == "ASSIGN":
            task.assignee_id = _assignee(s, principal, project, a.assignee, stage)
            task.status = "ASSIGNED"
        elif a.action == "RELEASE":
            task.assignee_id, task.status = None, "RELEASED"
        else:
            target = {"SUBMIT": "review", "APPROVE": "complete", "REJECT": "annotate"}[a.action]
            if a.retain_assignee and a.assignee is None and task.assignee_id is None:
                raise errors.ValidationFailed(f"task {task.id} has no assignee to retain")
            if a.assignee is not None:
                who: uuid.UUID | None = _assignee(s, principal, project, a.assignee, target)
            else:
                who = task.assignee_id if a.retain_assignee else None
                if who is not None and target in WORKERS:  # the assignee kept must work there too
                    held = s.get(User, who)
                    assert held is not None
                    _assignee(s, principal, project, held.email, target)
            task.stage, task.assignee_id = target, who
            if target == "complete":
                task.status = "COMPLETED"
            elif who is not None:
                task.status = "ASSIGNED"
            else:
                task.status = "REOPENED" if a.action == "REJECT" else "NEW"
        task.updated_at = now
    s.flush()
    return len(actions)


def move(
    s: Session,
    principal: Principal,
    project_ref: Any,
    origin_ref: Any,
    destination_ref: Any,
    ids: list[uuid.UUID],
) -> int:
    """Move tasks from one stage to another (admins and team managers), NEW and unassigned."""
    project = projects.load(s, principal, project_ref)
    if projects.role(s, principal, project) not in MANAGERS:
        raise errors.PermissionDenied(
            f"moving tasks of project {project.id} needs the admin or team manager role"
        )
    origin, destination = stage_of(project.id, origin_ref), stage_of(project.id, destination_ref)
    if not 1 <= len(ids) <= MAX_TASKS:
        raise errors.ValidationFailed(f"give 1 to {MAX_TASKS} task ids")
    now = utcnow()
    for task in _load(s, project, ids, origin).values():
        task.stage, task.assignee_id, task.updated_at = destination, None, now
        task.status = "COMPLETED" if destination == "complete" else "NEW"
    s.flush()
    return len(ids)


def finish(s: Session, principal: Principal, project_ref: Any, label_hashes: Any, action: Any) -> int:
    """The SDK's ``workflow_complete`` (``action`` "complete") and ``workflow_reopen`` ("reopen"):
    the tasks of these label rows, in whatever stage, to complete or back to annotate, all or none."""
    from corral.core.labels import label_rows  # label rows read the workflow, as this reads them

    if action not in ("complete", "reopen"):
        raise errors.ValidationFailed(
            f"action must be 'complete' or 'reopen', got {action!r}"[:200],
            details=[ErrorDetail("complete or reopen", field="action")],
        )
    project = projects.load(s, principal, project_ref)
    if projects.role(s, principal, project) not in MANAGERS:
        raise errors.PermissionDenied(
            f"completing or reopening tasks of project {project.id} needs the admin or team manager role"
        )
    units = label_rows.get_units(s, principal, project.id, label_hashes, documents=False)
    ids = list(dict.fromkeys(task_id(project.id, u.data_row_id) for u in units))  # 1-1,000 rows
    stage, status = ("complete", "COMPLETED") if action == "complete" else ("annotate", "REOPENED")
    now = utcnow()
    for task in _load(s, project, ids, None).values():
        task.stage, task.status, task.assignee_id, task.updated_at = stage, status, None, now
    s.flush()
    return len(ids)


def set_priorities(
    s: Session, principal: Principal, project_ref: Any, entries: Any, *, by_data_row: bool = False,
    field: str = "priorities",
) -> int:
    """Set tasks' priorities (admins and team managers), all or none.  ``entries`` is a list of
    ``[task id, priority]`` pairs (``[data unit id, priority]`` if ``by_data_row``, as the SDK
    sends), each priority a finite number from 0.0 to 1.0; a task named twice takes the last."""
    project = projects.load(s, principal, project_ref)
    if projects.role(s, principal, project) not in MANAGERS:
        raise errors.PermissionDenied(
            f"setting task priorities of project {project.id} needs the admin or team manager role")
    if not isinstance(entries, list) or not 1 <= len(entries) <= MAX_PRIORITIES:
        message = f"{field}: give 1 to {MAX_PRIORITIES} [id, priority] pairs"
        raise errors.ValidationFailed(message, details=[ErrorDetail(message, field=field)])
    kind = "data unit" if by_data_row else "task"
    wanted: dict[uuid.UUID, float] = {}
    names: dict[uuid.UUID, str] = {}
    for n, entry in enumerate(entries):
        where = f"{field}[{n}]"
        if not isinstance(entry, (list, tuple)) or len(entry) != 2:
            _bad(where, f"{where}: expected a [{kind} id, priority] pair, got {entry!r}")
        ref, value = entry
        try:
            ident = ref if isinstance(ref, uuid.UUID) else uuid.UUID(str(ref))
        except ValueError:
            _bad(where, f"{where}: {ref!r} is not a {kind} id")
        # (NaN and the infinities fail the range too; compared, not converted, a huge integer fails it)
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0.0 <= value <= 1.0:
            _bad(where, f"{where}: the priority must be a finite number from 0.0 to 1.0, got {value!r}")
        tid = task_id(project.id, ident) if by_data_row else ident
        wanted[tid] = float(value)
        names.setdefault(tid, f"{where}: {kind} {ident}")
    now = utcnow()
    for tid, task in _load(s, project, sorted(wanted), None, names).items():
        task.priority = wanted[tid]
        task.updated_at = now
    s.flush()
    return len(wanted)


def _bad(field: str, message: str) -> NoReturn:
    raise errors.ValidationFailed(message[:300], details=[ErrorDetail(message[:300], field=field)])
