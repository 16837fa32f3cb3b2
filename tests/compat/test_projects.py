"""Ontologies and projects through the unmodified Encord SDK, second wave: Ontology.save (checked
against existing labels), get_ontologies, list_projects/get_projects, a project's datasets and
members with roles, and label rows of image groups and image sequences."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from encord.exceptions import (
    AuthorisationError,
    InvalidArgumentsError,
    ResourceExistsError,
    ResourceNotFoundError,
)
from encord.orm.dataset import LongPollingStatus, StorageLocation
from encord.utilities.project_user import ProjectUserRole

from tests.compat.conftest import IMAGES, Bucket, client_for, images_manifest, png


def _structure() -> Any:
    from encord.objects import OntologyStructure, Shape
    from encord.objects.attributes import RadioAttribute

    s = OntologyStructure()
    car = s.add_object("car", Shape.BOUNDING_BOX)
    colour = car.add_attribute(RadioAttribute, "colour")
    colour.add_option("red")
    colour.add_option("blue")
    colour.add_option("green")
    s.add_object("tree", Shape.POLYGON)
    return s


def _dataset(sdk: Any, bucket: Bucket, title: str, manifest: dict[str, Any] | None = None) -> Any:
    folder = sdk.create_storage_folder(f"f-{title}")
    job = folder.add_private_data_to_folder_start(bucket.integration_id, manifest or images_manifest(bucket))
    assert folder.add_private_data_to_folder_get_result(job, timeout_seconds=120).status == LongPollingStatus.DONE
    ds = sdk.get_dataset(sdk.create_dataset(title, StorageLocation.AWS).dataset_hash)
    ds.link_items([i.uuid for i in folder.list_items()])
    return ds


def _box(project: Any, row: Any, frame: int = 0) -> None:
    from encord.objects.coordinates import BoundingBoxCoordinates

    s = project.ontology_structure
    box = s.get_child_by_title("car").create_instance()
    box.set_for_frames(BoundingBoxCoordinates(height=0.2, width=0.2, top_left_x=0.1, top_left_y=0.1), frames=frame)
    box.set_answer(s.get_child_by_title("red"), attribute=s.get_child_by_title("colour"))
    row.add_object_instance(box)


def test_ontology_listing_and_save_checked_against_labels(sdk: Any, s3: Bucket) -> None:
    from encord.objects import Shape

    street = sdk.create_ontology("street", description="cars", structure=_structure())
    sdk.create_ontology("fields", description="crops")
    assert [o["ontology"].title for o in sdk.get_ontologies()] == ["street", "fields"]
    assert [o["ontology"].title for o in sdk.get_ontologies(title_eq="fields")] == ["fields"]
    assert [o["ontology"].title for o in sdk.get_ontologies(title_like="%IEL%")] == ["fields"]
    assert [o["ontology"].title for o in sdk.get_ontologies(desc_like="car%")] == ["street"]
    assert sdk.get_ontologies(created_after=datetime.now(UTC) + timedelta(hours=1)) == []

    ds = _dataset(sdk, s3, "cars")
    project = sdk.get_project(sdk.create_project("p", [ds.dataset_hash], ontology_hash=street.ontology_hash))
    row = next(r for r in project.list_label_rows_v2() if r.data_title == "a.png")
    row.initialise_labels()
    _box(project, row)
    row.save()

    onto = sdk.get_ontology(street.ontology_hash)
    onto.title = "street v2"
    tree = onto.structure.get_child_by_title("tree")
    onto.structure.objects.remove(tree)  # not used by any label: may go
    onto.structure.add_object("sign", Shape.POINT)
    onto.save()
    back = sdk.get_ontology(street.ontology_hash)
    assert back.title == "street v2"
    assert sorted(o.name for o in back.structure.objects) == ["car", "sign"]

    blue_gone = sdk.get_ontology(street.ontology_hash)  # blue is unused: an option may go too
    colour = blue_gone.structure.get_child_by_title("colour")
    colour.options.remove(blue_gone.structure.get_child_by_title("blue"))
    blue_gone.save()

    used = sdk.get_ontology(street.ontology_hash)
    used.structure.objects.remove(used.structure.get_child_by_title("car"))  # labels use it
    with pytest.raises(ResourceExistsError, match="'car'"):
        used.save()
    red_gone = sdk.get_ontology(street.ontology_hash)
    colour = red_gone.structure.get_child_by_title("colour")
    colour.options.remove(red_gone.structure.get_child_by_title("red"))  # an answer uses it
    with pytest.raises(ResourceExistsError, match="'red'"):
        red_gone.save()
    assert sorted(o.name for o in sdk.get_ontology(street.ontology_hash).structure.objects) == ["car", "sign"]


def test_ontologies_saved_without_what_the_sdk_needs_are_read_back(sdk: Any, db: Any, alice: Any) -> None:
    """A hand-written ontology (no ids, colours, ``required`` or option values) posted to the
    SDK's route, and one stored so before saves filled them in, are both read by the SDK
    (before: ``get_ontologies()`` raised KeyError for every member of the organisation)."""
    from encord.orm.ontology import CreateOrUpdateOntologyPayload
    from encord.utilities.ontology_user import OntologyWithUserRole

    from corral.db.tables import Ontology

    hand_written = {"objects": [{"name": "car", "shape": "bounding_box", "featureNodeHash": "car00001",
                                 "attributes": [{"name": "colour", "type": "radio", "featureNodeHash": "colour01",
                                                 "options": [{"label": "Dark red", "featureNodeHash": "red00001"}]}]}],
                    "classifications": [{"featureNodeHash": "weather1", "attributes": [
                        {"name": "weather", "type": "text", "featureNodeHash": "weathera"}]}]}
    made = sdk._api_client.post("ontologies", params=None, result_type=OntologyWithUserRole, allow_retries=False,
                                payload=CreateOrUpdateOntologyPayload(title="hand", description="",
                                                                      editor=hand_written))
    with db.write() as s:  # as an earlier release stored it: verbatim
        s.add(Ontology(org_id=alice.org_id, title="old", description="", created_by=alice.user_id,
                       editor={**hand_written, "objects": [{**hand_written["objects"][0], "id": "4"}]}))
    listed = {o["ontology"].title: o["ontology"] for o in sdk.get_ontologies()}
    assert set(listed) == {"hand", "old"}
    car = sdk.get_ontology(made.ontology_uuid).structure.get_child_by_title("car")
    assert (car.uid, car.color) == (1, "#D33115")
    assert car.attributes[0].options[0].value == "dark_red"
    assert listed["old"].structure.objects[0].uid == 4
    with pytest.raises(InvalidArgumentsError, match=r"objects\[0\]\.name"):
        sdk._api_client.post("ontologies", params=None, result_type=OntologyWithUserRole, allow_retries=False,
                             payload=CreateOrUpdateOntologyPayload(
                                 title="nameless", description="",
                                 editor={"objects": [{"shape": "point", "featureNodeHash": "p1"}],
                                         "classifications": []}))


@pytest.mark.filterwarnings("ignore:get_projects is deprecated:DeprecationWarning")
def test_projects_listing_and_datasets(sdk: Any, s3: Bucket) -> None:
    onto = sdk.create_ontology("o", structure=_structure())
    first, second = _dataset(sdk, s3, "first"), _dataset(sdk, s3, "second")
    p1 = sdk.create_project("alpha", [first.dataset_hash], "the first", ontology_hash=onto.ontology_hash)
    sdk.create_project("beta", [second.dataset_hash], "the second", ontology_hash=onto.ontology_hash)
    assert [p.title for p in sdk.list_projects()] == ["alpha", "beta"]
    assert [p.title for p in sdk.list_projects(title_eq="beta")] == ["beta"]
    assert [p.title for p in sdk.list_projects(desc_like="%FIRST%")] == ["alpha"]
    assert list(sdk.list_projects(created_before=datetime.now(UTC) - timedelta(hours=1))) == []
    legacy = sdk.get_projects(title_like="a%")
    assert [(p["project"]["title"], p["user_role"]) for p in legacy] == [("alpha", ProjectUserRole.ADMIN)]
    assert list(sdk.list_projects(tags_anyof=["x"])) == []  # no tag "x": nothing carries it (test_tags.py)

    project = sdk.get_project(p1)
    assert [d.title for d in project.list_datasets()] == ["first"]
    project.add_datasets([second.dataset_hash])
    assert sorted(d.title for d in project.list_datasets()) == ["first", "second"]
    assert len(project.list_label_rows_v2()) == 6
    row = project.list_label_rows_v2()[0]
    row.initialise_labels()
    _box(project, row)
    row.save()
    labelled = first if row.dataset_hash == first.dataset_hash else second
    other = second if labelled is first else first
    with pytest.raises(ResourceExistsError, match="labels"):
        project.remove_datasets([labelled.dataset_hash])
    project.remove_datasets([other.dataset_hash])
    assert [d.title for d in project.list_datasets()] == [labelled.title]
    # a dataset the project does not have is not "removed": a typo is named, never a silent success
    for absent in (other.dataset_hash, "00000000-0000-4000-8000-000000000001"):
        with pytest.raises(ResourceNotFoundError, match=f"{absent}.* not in project"):
            project.remove_datasets([absent])
    assert [d.title for d in project.list_datasets()] == [labelled.title]
    assert len(sdk.get_project(p1).list_label_rows_v2()) == 3


def test_project_members_and_roles(sdk: Any, s3: Bucket, make_user: Any, server: str) -> None:
    onto = sdk.create_ontology("o", structure=_structure())
    ds = _dataset(sdk, s3, "shared")
    project = sdk.get_project(sdk.create_project("team", [ds.dataset_hash], ontology_hash=onto.ontology_hash))
    users = {e: make_user(e, role="member") for e in ("ann@x.io", "rev@x.io", "tm@x.io", "view@x.io")}
    added = project.add_users(["ann@x.io"], ProjectUserRole.ANNOTATOR)
    assert [(u.user_email, u.user_role) for u in added] == [("ann@x.io", ProjectUserRole.ANNOTATOR)]
    project.add_users(["rev@x.io"], ProjectUserRole.REVIEWER)
    project.add_users(["tm@x.io"], ProjectUserRole.TEAM_MANAGER)
    project.add_users(["view@x.io"], ProjectUserRole.ANNOTATOR_REVIEWER)
    project.add_users(["view@x.io"], ProjectUserRole.VIEWER)  # replaces the role
    assert [(u.user_email, u.user_role) for u in project.list_users()] == [
        ("alice@x.io", ProjectUserRole.ADMIN), ("ann@x.io", ProjectUserRole.ANNOTATOR),
        ("rev@x.io", ProjectUserRole.REVIEWER), ("tm@x.io", ProjectUserRole.TEAM_MANAGER),
        ("view@x.io", ProjectUserRole.VIEWER)]

    def as_(email: str) -> Any:
        return client_for(users[email], server).get_project(project.project_hash)

    ann = as_("ann@x.io")
    row = ann.list_label_rows_v2()[0]
    row.initialise_labels()
    _box(ann, row)
    row.save()  # an annotator labels
    viewer = as_("view@x.io")
    assert len(viewer.list_label_rows_v2()) == 3  # a viewer reads
    with pytest.raises(AuthorisationError):
        viewer.list_label_rows_v2()[1].initialise_labels()  # but does not start labels
    with pytest.raises(AuthorisationError):
        ann.add_users(["rev@x.io"], ProjectUserRole.ADMIN)  # an annotator does not manage members
    manager = as_("tm@x.io")
    manager.remove_users(["rev@x.io"])  # a team manager does
    # ... of annotators, reviewers and team managers, not of admins (Encord: team managers
    # "manage annotators and reviewers"); before, a team manager could make anyone an admin,
    # or remove the project's admins
    before = [(u.user_email, u.user_role) for u in project.list_users()]
    with pytest.raises(AuthorisationError):
        manager.add_users(["view@x.io"], ProjectUserRole.ADMIN)
    with pytest.raises(AuthorisationError):
        manager.remove_users(["alice@x.io"])
    project.add_users(["rev@x.io"], ProjectUserRole.ADMIN)  # an admin makes an admin
    with pytest.raises(AuthorisationError):
        manager.add_users(["rev@x.io"], ProjectUserRole.VIEWER)  # demoting one neither
    with pytest.raises(AuthorisationError):
        manager.remove_users(["ann@x.io", "rev@x.io"])  # nor removing one, with anyone else
    assert [(u.user_email, u.user_role) for u in project.list_users()] == [
        *before, ("rev@x.io", ProjectUserRole.ADMIN)]
    manager.add_users(["view@x.io"], ProjectUserRole.TEAM_MANAGER)  # other roles it manages
    project.remove_users(["rev@x.io"])
    assert [u.user_email for u in project.list_users()] == ["alice@x.io", "ann@x.io", "tm@x.io", "view@x.io"]


def test_label_rows_of_image_groups_and_sequences(sdk: Any, s3: Bucket) -> None:
    from encord.constants.enums import DataType

    keys = sorted(IMAGES)
    same = [k for k in keys if IMAGES[k] == (32, 32)][0]
    manifest = {"image_groups": [
        {"title": "group", **{f"objectUrl_{i}": s3.url(k) for i, k in enumerate(keys)}},
        {"title": "seq", "createVideo": True, "objectUrl_0": s3.url(same), "objectUrl_1": s3.url(same)},
    ], "skip_duplicate_urls": False}
    ds = _dataset(sdk, s3, "groups", manifest)
    onto = sdk.create_ontology("o", structure=_structure())
    project = sdk.get_project(sdk.create_project("groups", [ds.dataset_hash], ontology_hash=onto.ontology_hash))
    rows = {r.data_title: r for r in project.list_label_rows_v2()}
    assert rows["group"].data_type == DataType.IMG_GROUP and rows["group"].number_of_frames == 3
    assert rows["seq"].data_type == DataType.VIDEO and rows["seq"].number_of_frames == 2
    with_images = {r.data_title: r for r in project.list_label_rows_v2(include_images_data=True)}
    frames = with_images["group"].get_frames_metadata()
    assert [(f.width, f.height) for f in frames] == [IMAGES[k] for k in keys]
    assert [f.image_hash for f in frames] == [str(c.uuid) for c in sdk.get_storage_item(
        with_images["group"].backing_item_uuid).get_child_items()]

    group = rows["group"]
    group.initialise_labels(include_signed_url=True)
    views = [group.get_frame_view(i) for i in range(3)]
    assert [(v.width, v.height) for v in views] == [IMAGES[k] for k in keys]
    for view, key in zip(views, keys, strict=True):
        assert httpx.get(view.data_link).content == png(*IMAGES[key])
    _box(project, group, frame=2)
    group.save()
    again = next(r for r in sdk.get_project(project.project_hash).list_label_rows_v2() if r.data_title == "group")
    again.initialise_labels()
    [obj] = again.get_object_instances()
    assert [a.frame for a in obj.get_annotations()] == [2]

    seq = rows["seq"]
    seq.initialise_labels()
    _box(project, seq, frame=1)
    seq.save()
    back = next(r for r in sdk.get_project(project.project_hash).list_label_rows_v2() if r.data_title == "seq")
    back.initialise_labels()
    assert [a.frame for a in back.get_object_instances()[0].get_annotations()] == [1]
    _box(project, back, frame=5)
    with pytest.raises(InvalidArgumentsError, match="frame"):
        back.save()  # a two-frame sequence has no frame 5
