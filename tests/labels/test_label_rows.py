"""Projects and label rows through the core services, on both databases."""

from __future__ import annotations

import uuid
from typing import Any

import pytest
from sqlalchemy import select, update

from corral import errors
from corral.core.labels import label_rows, ontologies, projects
from corral.db.engine import Database
from corral.db.tables import Grant, Item, LabelRow
from tests.compat.labels_fixtures import image_dataset, principal
from tests.labels.test_validation import EDITOR, GOOD, doc


@pytest.fixture
def world(db: Database, make_user: Any) -> dict[str, Any]:
    admin = make_user("admin@a.io")
    ds, items = image_dataset(db, admin, ["a.jpg", "b.jpg", "c.mp3"])
    with db.write() as s:
        s.execute(update(Item).where(Item.id == items[2]).values(item_type="audio"))
        p = principal(db, admin)
        onto = ontologies.create(s, p, "o", "", EDITOR)
        project = projects.create(s, p, "p", "", onto.id, [str(ds)])
        return {"admin": admin, "p": p, "project": project.id, "dataset": ds}


def units(db: Database, p: Any, project: uuid.UUID) -> dict[str, dict[str, Any]]:
    with db.read() as s:
        return {m["data_title"]: m for m in label_rows.list_metadata(s, p, project)}


def test_create_is_idempotent_and_listing_shows_every_unit(db: Database, world: dict[str, Any]) -> None:
    p, project = world["p"], world["project"]
    listed = units(db, p, project)
    assert sorted(listed) == ["a.jpg", "b.jpg", "c.mp3"]
    assert listed["c.mp3"]["data_type"] == "AUDIO" and listed["a.jpg"]["data_type"] == "IMAGE"
    assert {m["label_status"] for m in listed.values()} == {"NOT_LABELLED"}
    a = listed["a.jpg"]["data_hash"]
    with db.write() as s:
        first = label_rows.create(s, p, project, [a, a])
    with db.write() as s:
        again = label_rows.create(s, p, project, [a])
    assert len(first) == 1 and first[0]["label_hash"] == again[0]["label_hash"]
    assert again[0]["data_units"][a]["labels"] == {"objects": [], "classifications": []}
    with db.write() as s, pytest.raises(errors.InvalidInput, match="corral labels images and videos only"):
        label_rows.create(s, p, project, [listed["c.mp3"]["data_hash"]])
    with db.write() as s, pytest.raises(errors.NotFound):
        label_rows.create(s, p, project, [str(uuid.uuid4())])
    with db.read() as s:
        only = label_rows.list_metadata(s, p, project, label_rows.Filters(label_statuses=["LABEL_IN_PROGRESS"]))
        by_title = label_rows.list_metadata(s, p, project, label_rows.Filters(data_title="b.jpg"))
    assert [m["data_title"] for m in only] == ["a.jpg"]
    assert [m["data_title"] for m in by_title] == ["b.jpg"]


def test_a_save_of_several_rows_is_all_or_nothing(db: Database, world: dict[str, Any]) -> None:
    p, project = world["p"], world["project"]
    listed = units(db, p, project)
    with db.write() as s:
        rows = label_rows.create(s, p, project, [listed["a.jpg"]["data_hash"], listed["b.jpg"]["data_hash"]])
    good, bad = (dict(doc(GOOD[0]), label_hash=r["label_hash"]) for r in rows)
    for d, r in ((good, rows[0]), (bad, rows[1])):
        d["data_units"] = {r["data_hash"]: next(iter(d["data_units"].values()))}
    bad["data_units"][rows[1]["data_hash"]]["labels"]["objects"] = [
        dict(GOOD[0], boundingBox={"x": 0, "y": 0, "w": 0, "h": "tall"})]
    with db.write() as s, pytest.raises(errors.ValidationFailed) as info:
        label_rows.save(s, p, project, [r["label_hash"] for r in rows], [good, bad])
    assert info.value.details[0].field == (
        f"labels[1].data_units.{rows[1]['data_hash']}.labels.objects[0].boundingBox.h")
    with db.read() as s:
        assert [r.document for r in s.scalars(select(LabelRow))] == [{}, {}]
    with db.write() as s:
        assert label_rows.save(s, p, project, [rows[0]["label_hash"]], [good]) == 1
    with db.read() as s:
        back = label_rows.get(s, p, project, [rows[0]["label_hash"]])[0]
    assert back["data_units"][rows[0]["data_hash"]]["labels"]["objects"][0]["createdBy"] == "admin@a.io"


def test_members_see_projects_they_made_or_were_granted(
    db: Database, world: dict[str, Any], make_user: Any
) -> None:
    project = world["project"]
    member = make_user("member@a.io", role="member")
    mp = principal(db, member)
    with db.read() as s, pytest.raises(errors.NotFound):
        projects.load(s, mp, project)
    with db.write() as s:
        s.add(Grant(org_id=member.org_id, resource_type="project", resource_id=project, user_id=member.user_id,
                    role="viewer"))
    with db.read() as s:
        assert [v.project.id for v in projects.list_(s, mp)] == [project]
    a = units(db, mp, project)["a.jpg"]["data_hash"]
    with db.write() as s, pytest.raises(errors.PermissionDenied):
        label_rows.create(s, mp, project, [a])
    outsider = principal(db, make_user("x@b.io", org="Org B"))
    with db.read() as s, pytest.raises(errors.NotFound):
        label_rows.list_metadata(s, outsider, project)
    with db.read() as s:
        assert projects.list_(s, outsider) == []


def test_a_project_needs_an_ontology_and_visible_datasets(db: Database, world: dict[str, Any], make_user: Any) -> None:
    p = world["p"]
    with db.write() as s, pytest.raises(errors.ValidationFailed, match="needs an ontology"):
        projects.create(s, p, "p2", "", None, [])
    outsider = principal(db, make_user("x@b.io", org="Org B"))
    with db.write() as s:
        theirs = ontologies.create(s, outsider, "theirs", "", {"objects": [], "classifications": []})
    with db.write() as s, pytest.raises(errors.NotFound):
        projects.create(s, p, "p2", "", theirs.id, [])
    with db.write() as s, pytest.raises(errors.NotFound):
        projects.create(s, outsider, "p2", "", theirs.id, [str(world["dataset"])])


def test_listing_and_saving_read_no_label_document(db: Database, world: dict[str, Any]) -> None:
    """A listing (list_label_rows_v2, the native label-rows page) read every label row's whole
    document, megabytes for a long video, to answer its metadata; a save read the documents it
    was about to replace, twice."""
    from sqlalchemy import event

    p, project = world["p"], world["project"]
    a = units(db, p, project)["a.jpg"]["data_hash"]
    with db.write() as s:
        [row] = label_rows.create(s, p, project, [a])
    statements: list[str] = []

    def seen(conn: Any, cursor: Any, statement: str, *args: Any) -> None:
        statements.append(statement)

    labels = doc(GOOD[0])
    labels["data_units"] = {a: labels["data_units"]["du"]}
    event.listen(db.engine, "before_cursor_execute", seen)
    try:
        with db.write() as s:
            label_rows.save(s, p, project, [row["label_hash"]], [labels])
        assert units(db, p, project)["a.jpg"]["label_status"] == "LABEL_IN_PROGRESS"
    finally:
        event.remove(db.engine, "before_cursor_execute", seen)
    reads = [st for st in statements if st.lstrip().upper().startswith("SELECT")]
    assert reads and not [st for st in reads if "label_rows.document" in st]
    with db.read() as s:  # and what was saved is what a read answers
        [back] = label_rows.get(s, p, project, [row["label_hash"]])
    assert back["data_units"][a]["labels"]["objects"][0]["objectHash"] == GOOD[0]["objectHash"]
