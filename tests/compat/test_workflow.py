"""A project's workflow through the unmodified Encord SDK: the default stages, listing a stage's tasks
with the SDK's filters, the task actions (assign, release, submit, approve, reject, move) with legal
transitions only, and label rows' workflow_graph_node."""

from __future__ import annotations

from typing import Any

import pytest
from encord.exceptions import AuthorisationError, InvalidArgumentsError
from encord.orm.dataset import LongPollingStatus, StorageLocation
from encord.utilities.project_user import ProjectUserRole
from encord.workflow import AnnotationStage, FinalStage, ReviewStage
from encord.workflow.stages.annotation import AnnotationTaskStatus
from encord.workflow.stages.review import ReviewTaskStatus

from tests.compat.conftest import Bucket, client_for, images_manifest


def _project(sdk: Any, bucket: Bucket) -> Any:
    from encord.objects import OntologyStructure, Shape

    folder = sdk.create_storage_folder("imgs")
    job = folder.add_private_data_to_folder_start(bucket.integration_id, images_manifest(bucket))
    assert folder.add_private_data_to_folder_get_result(job, timeout_seconds=120).status == LongPollingStatus.DONE
    ds = sdk.get_dataset(sdk.create_dataset("wf", StorageLocation.AWS).dataset_hash)
    ds.link_items([i.uuid for i in folder.list_items()])
    structure = OntologyStructure()
    structure.add_object("car", Shape.BOUNDING_BOX)
    onto = sdk.create_ontology("o", structure=structure)
    return sdk.get_project(sdk.create_project("wf", [ds.dataset_hash], ontology_hash=onto.ontology_hash))


def _titles(tasks: Any) -> list[str]:
    return sorted(t.data_title for t in tasks)


def test_default_workflow_tasks_and_transitions(sdk: Any, s3: Bucket, make_user: Any, server: str) -> None:
    project = _project(sdk, s3)
    wf = project.workflow
    assert [(type(st), st.title) for st in wf.stages] == [
        (AnnotationStage, "Annotate"), (ReviewStage, "Review"), (FinalStage, "Complete")]
    annotate = wf.get_stage(name="Annotate", type_=AnnotationStage)
    review = wf.get_stage(name="Review", type_=ReviewStage)
    complete = wf.get_stage(name="Complete", type_=FinalStage)
    assert _titles(annotate.get_tasks()) == ["a.png", "b.png", "c.png"]
    assert all(t.status == AnnotationTaskStatus.NEW and t.assignee is None for t in annotate.get_tasks())
    assert list(review.get_tasks()) == [] and list(complete.get_tasks()) == []
    rows = project.list_label_rows_v2()
    assert {r.workflow_graph_node.title for r in rows} == {"Annotate"}
    assert str(rows[0].workflow_graph_node.uuid) == str(annotate.uuid)

    ann = make_user("ann@x.io", role="member")
    make_user("rev@x.io", role="member")
    project.add_users(["ann@x.io"], ProjectUserRole.ANNOTATOR)
    project.add_users(["rev@x.io"], ProjectUserRole.REVIEWER)

    a = next(annotate.get_tasks(data_title="a.png"))
    a.assign("ann@x.io")
    assert _titles(annotate.get_tasks(assignee="ann@x.io")) == ["a.png"]
    assert _titles(annotate.get_tasks(status=AnnotationTaskStatus.ASSIGNED)) == ["a.png"]
    with pytest.raises(InvalidArgumentsError, match="cannot work in the annotate stage"):
        a.assign("rev@x.io")  # a reviewer does not annotate
    b = next(annotate.get_tasks(data_title="b.png"))
    b.assign("ann@x.io")
    b.release()
    assert next(annotate.get_tasks(data_title="b.png")).status == AnnotationTaskStatus.RELEASED

    # the annotator submits her task: it goes to review, still hers to follow if retained
    as_ann = client_for(ann, server).get_project(project.project_hash)
    mine = next(as_ann.workflow.get_stage(name="Annotate", type_=AnnotationStage).get_tasks(assignee="ann@x.io"))
    mine.submit()
    assert _titles(annotate.get_tasks()) == ["b.png", "c.png"]
    [in_review] = list(review.get_tasks())
    assert (in_review.data_title, in_review.status, in_review.assignee) == ("a.png", ReviewTaskStatus.NEW, None)
    with pytest.raises(AuthorisationError):  # an annotator does not review
        next(as_ann.workflow.get_stage(name="Review", type_=ReviewStage).get_tasks()).approve()
    row = next(r for r in project.list_label_rows_v2(workflow_graph_node_title_eq="Review"))
    assert row.data_title == "a.png"
    assert [r.data_title for r in project.list_label_rows_v2(workflow_graph_node_title_like="rev%")] == ["a.png"]

    # a rejected review returns the task to annotation
    in_review.assign("rev@x.io")
    assert next(review.get_tasks()).assignee == "rev@x.io"
    next(review.get_tasks()).reject()
    assert list(review.get_tasks()) == []
    back = next(annotate.get_tasks(data_title="a.png"))
    assert back.status == AnnotationTaskStatus.REOPENED and back.assignee is None
    assert _titles(annotate.get_tasks(status=AnnotationTaskStatus.REOPENED)) == ["a.png"]

    back.submit(assignee="rev@x.io")  # submitted straight to a reviewer
    again = next(review.get_tasks())
    assert (again.status, again.assignee) == (ReviewTaskStatus.ASSIGNED, "rev@x.io")
    again.approve()
    [done] = list(complete.get_tasks())
    assert done.data_title == "a.png" and done.data_hash == in_review.data_hash
    assert {r.data_title: r.workflow_graph_node.title for r in project.list_label_rows_v2()} == {
        "a.png": "Complete", "b.png": "Annotate", "c.png": "Annotate"}

    # only a move takes a completed task anywhere, and only a manager moves
    with pytest.raises(AuthorisationError):
        next(as_ann.workflow.get_stage(name="Complete", type_=FinalStage).get_tasks()).move(
            destination_stage_uuid=annotate.uuid)
    done.move(destination_stage_uuid=review.uuid)
    assert _titles(review.get_tasks()) == ["a.png"] and list(complete.get_tasks()) == []
    with pytest.raises(InvalidArgumentsError, match="not review"):  # c is not in review
        c = next(annotate.get_tasks(data_title="c.png"))
        review_client = review._workflow_client
        from encord.workflow.stages.review import _ActionApprove

        review_client.action(review.uuid, _ActionApprove(task_uuid=c.uuid))
    assert _titles(annotate.get_tasks()) == ["b.png", "c.png"]


def test_task_filters(sdk: Any, s3: Bucket) -> None:
    project = _project(sdk, s3)
    annotate = project.workflow.get_stage(name="Annotate", type_=AnnotationStage)
    tasks = list(annotate.get_tasks())
    by_title = {t.data_title: t for t in tasks}
    assert _titles(annotate.get_tasks(data_hash=[by_title["a.png"].data_hash, by_title["c.png"].data_hash])) == [
        "a.png", "c.png"]
    rows = project.list_label_rows_v2()
    assert _titles(annotate.get_tasks(dataset_hash=rows[0].dataset_hash)) == ["a.png", "b.png", "c.png"]
    assert _titles(annotate.get_tasks(data_title="B.P")) == ["b.png"]  # contains, any case
    assert list(annotate.get_tasks(assignee="nobody@x.io")) == []
    by_title["a.png"].assign("Alice@X.io")  # e-mails in any case, as assigning reads them
    assert _titles(annotate.get_tasks(assignee="ALICE@x.io")) == ["a.png"]
    assert _titles(annotate.get_tasks(assignee=["nobody@x.io", "alice@x.io"])) == ["a.png"]
    assert len({t.uuid for t in tasks}) == 3
    assert [t.uuid for t in annotate.get_tasks()] == [t.uuid for t in tasks]  # stable ids


def test_templates_are_refused(sdk: Any, s3: Bucket) -> None:
    project = _project(sdk, s3)
    with pytest.raises(InvalidArgumentsError, match="workflow templates"):
        sdk.create_project("t", [], ontology_hash=project.ontology_hash, workflow_template_hash="abc")


def test_annotators_work_on_their_own_tasks_only(sdk: Any, s3: Bucket, make_user: Any, server: str) -> None:
    """An annotator claims a task nobody holds and acts on tasks that are hers or nobody's; giving a
    task to someone else, or taking one from its assignee, is for admins and team managers (an
    annotator took another's task, or assigned tasks to others, silently)."""
    import threading

    project = _project(sdk, s3)
    users = {e: make_user(e, role="member") for e in ("ann@x.io", "bob@x.io", "rev@x.io", "tm@x.io")}
    project.add_users(["ann@x.io", "bob@x.io"], ProjectUserRole.ANNOTATOR)
    project.add_users(["rev@x.io"], ProjectUserRole.REVIEWER)
    project.add_users(["tm@x.io"], ProjectUserRole.TEAM_MANAGER)

    def stage(email: str, name: str = "Annotate", type_: Any = AnnotationStage) -> Any:
        as_user = client_for(users[email], server).get_project(project.project_hash)
        return as_user.workflow.get_stage(name=name, type_=type_)

    ann, bob = stage("ann@x.io"), stage("bob@x.io")
    next(ann.get_tasks(data_title="a.png")).assign("ann@x.io")
    theirs = next(bob.get_tasks(data_title="a.png"))
    for act in (lambda: theirs.assign("bob@x.io"), theirs.release, theirs.submit):
        with pytest.raises(AuthorisationError, match="assigned to ann@x.io"):
            act()
    with pytest.raises(AuthorisationError, match="to yourself only"):
        next(bob.get_tasks(data_title="b.png")).assign("ann@x.io")
    annotate = project.workflow.get_stage(name="Annotate", type_=AnnotationStage)
    assert {t.data_title: t.assignee for t in annotate.get_tasks()} == {
        "a.png": "ann@x.io", "b.png": None, "c.png": None}
    # a team manager hands tasks out and takes them back
    next(stage("tm@x.io").get_tasks(data_title="a.png")).assign("bob@x.io")
    assert next(annotate.get_tasks(data_title="a.png")).assignee == "bob@x.io"

    # two annotators claiming one task at once: one gets it, the other is refused
    def claim(task: Any, email: str, outcomes: dict[str, str]) -> None:
        try:
            task.assign(email)
            outcomes[email] = "ok"
        except AuthorisationError:
            outcomes[email] = "refused"

    for _ in range(3):
        next(annotate.get_tasks(data_title="c.png")).release()
        claims = [next(ann.get_tasks(data_title="c.png")), next(bob.get_tasks(data_title="c.png"))]
        outcomes: dict[str, str] = {}
        threads = [threading.Thread(target=claim, args=(t, e, outcomes))
                   for t, e in zip(claims, ("ann@x.io", "bob@x.io"), strict=True)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert sorted(outcomes.values()) == ["ok", "refused"], outcomes
        winner = next(e for e, o in outcomes.items() if o == "ok")
        assert next(annotate.get_tasks(data_title="c.png")).assignee == winner

    # an annotator keeping her task into review must be able to review it
    mine = next(ann.get_tasks(data_title="b.png"))
    mine.assign("ann@x.io")
    with pytest.raises(InvalidArgumentsError, match="cannot work in the review stage"):
        mine.submit(retain_assignee=True)
    mine.submit()
    in_review = next(stage("rev@x.io", "Review", ReviewStage).get_tasks(data_title="b.png"))
    in_review.assign("rev@x.io")
    with pytest.raises(InvalidArgumentsError, match="cannot work in the annotate stage"):
        in_review.reject(retain_assignee=True)  # a reviewer does not annotate
    assert next(project.workflow.get_stage(name="Review", type_=ReviewStage).get_tasks()).assignee == "rev@x.io"


def test_a_dataset_removed_and_added_again_starts_new_tasks(sdk: Any, s3: Bucket) -> None:
    """Removing a dataset (without labels) from a project takes its tasks with it: added again,
    its data units are new tasks in Annotate (they came back assigned, in review or complete)."""
    project = _project(sdk, s3)
    annotate = project.workflow.get_stage(name="Annotate", type_=AnnotationStage)
    review = project.workflow.get_stage(name="Review", type_=ReviewStage)
    next(annotate.get_tasks(data_title="a.png")).assign("alice@x.io")
    next(annotate.get_tasks(data_title="b.png")).submit()
    [dataset] = [d.dataset_hash for d in project.list_datasets()]
    project.remove_datasets([str(dataset)])
    assert list(annotate.get_tasks()) == [] and list(review.get_tasks()) == []
    project.add_datasets([str(dataset)])
    again = list(annotate.get_tasks())
    assert sorted((t.data_title, t.status, t.assignee) for t in again) == [
        ("a.png", AnnotationTaskStatus.NEW, None), ("b.png", AnnotationTaskStatus.NEW, None),
        ("c.png", AnnotationTaskStatus.NEW, None)]
    assert list(review.get_tasks()) == []
    assert {r.workflow_graph_node.title for r in project.list_label_rows_v2()} == {"Annotate"}
