"""The unmodified Encord SDK labelling workflow against a live corral server.

Ontology -> project (over a corral dataset) -> label rows -> objects and classifications ->
save -> read back in a fresh client; refused labels; isolation between organisations.
"""

from __future__ import annotations

import copy
import re
from typing import Any

import pytest
from sqlalchemy import select

from corral.db.engine import Database
from corral.db.tables import LabelRow
from tests.compat.labels_fixtures import LabelsWorld, image_dataset


@pytest.fixture
def labels_world(live_server: str, make_user: Any, db: Database) -> LabelsWorld:
    return LabelsWorld(live_server, make_user("labeller@a.io"), db)


def structure() -> Any:
    from encord.objects import OntologyStructure, Shape
    from encord.objects.attributes import ChecklistAttribute, RadioAttribute, TextAttribute

    s = OntologyStructure()
    car = s.add_object("car", Shape.BOUNDING_BOX)
    colour = car.add_attribute(RadioAttribute, "colour")
    red = colour.add_option("red")
    colour.add_option("blue")
    red.add_nested_attribute(TextAttribute, "shade")
    s.add_object("road", Shape.POLYGON)
    s.add_object("keypoint", Shape.POINT)
    s.add_object("lane", Shape.POLYLINE)
    s.add_object("sign", Shape.ROTATABLE_BOUNDING_BOX)
    weather = s.add_classification().add_attribute(RadioAttribute, "weather")
    weather.add_option("sunny")
    weather.add_option("rain")
    tags = s.add_classification().add_attribute(ChecklistAttribute, "tags")
    tags.add_option("night")
    tags.add_option("blurred")
    tags.add_option("crowded")
    s.add_classification().add_attribute(TextAttribute, "note")
    return s


def make_project(world: LabelsWorld, names: tuple[str, ...] = ("a.jpg", "b.jpg")) -> tuple[Any, Any]:
    client = world.client()
    ontology = client.create_ontology("street", description="things on a street", structure=structure())
    dataset_id, _ = image_dataset(world.db, world.user, list(names))
    project_hash = client.create_project(
        project_title="street labels", dataset_hashes=[str(dataset_id)], ontology_hash=ontology.ontology_hash
    )
    return client, client.get_project(project_hash)


def first_row(project: Any, title: str = "a.jpg") -> Any:
    rows = [r for r in project.list_label_rows_v2() if r.data_title == title]
    assert len(rows) == 1
    return rows[0]


def label(row: Any, ontology: Any) -> None:
    from encord.objects.coordinates import (
        BoundingBoxCoordinates,
        PointCoordinate,
        PolygonCoordinates,
        PolylineCoordinates,
        RotatableBoundingBoxCoordinates,
    )

    s = ontology.ontology_structure
    car = s.get_child_by_title("car")
    red = s.get_child_by_title("red")
    box = car.create_instance()
    box.set_for_frames(BoundingBoxCoordinates(height=0.2, width=0.3, top_left_x=0.1, top_left_y=0.15), frames=0)
    box.set_answer(red, attribute=s.get_child_by_title("colour"))
    box.set_answer("crimson", attribute=s.get_child_by_title("shade"))
    row.add_object_instance(box)
    road = s.get_child_by_title("road").create_instance()
    road.set_for_frames(PolygonCoordinates([PointCoordinate(0.1, 0.9), PointCoordinate(0.5, 0.6),
                                            PointCoordinate(0.9, 0.9)]), frames=0)
    row.add_object_instance(road)
    point = s.get_child_by_title("keypoint").create_instance()
    point.set_for_frames(PointCoordinate(0.25, 0.75), frames=0)
    row.add_object_instance(point)
    lane = s.get_child_by_title("lane").create_instance()
    lane.set_for_frames(PolylineCoordinates([PointCoordinate(0.0, 1.0), PointCoordinate(0.4, 0.5)]), frames=0)
    row.add_object_instance(lane)
    sign = s.get_child_by_title("sign").create_instance()
    sign.set_for_frames(RotatableBoundingBoxCoordinates(height=0.1, width=0.1, top_left_x=0.7, top_left_y=0.2,
                                                        theta=30.0), frames=0)
    row.add_object_instance(sign)
    for title, answer in (("weather", s.get_child_by_title("rain")),
                          ("tags", [s.get_child_by_title("night"), s.get_child_by_title("crowded")]),
                          ("note", "wet road")):
        parent = next(c for c in s.classifications if c.attributes[0].name == title)
        instance = parent.create_instance()
        instance.set_answer(answer)
        instance.set_for_frames(frames=0)
        row.add_classification_instance(instance)


def snapshot(row: Any, ontology: Any) -> dict[str, Any]:
    """What a labeller sees: every object's shape, coordinates and answers, every classification's answer."""
    from encord.objects.coordinates import PolygonCoordinates

    s = ontology.ontology_structure
    objects = {}
    for obj in row.get_object_instances():
        answers = {}
        for attr in obj.ontology_item.attributes:
            value = obj.get_answer(attr)
            answers[attr.name] = getattr(value, "label", value)
        if obj.ontology_item.name == "car":
            answers["shade"] = obj.get_answer(s.get_child_by_title("shade"))
        coordinates = obj.get_annotation(0).coordinates
        if isinstance(coordinates, PolygonCoordinates):  # no __eq__ of its own
            coordinates = [(p.x, p.y) for p in coordinates.values]
        objects[obj.object_hash] = (obj.ontology_item.name, coordinates, answers)
    classifications = {}
    for inst in row.get_classification_instances():
        value = inst.get_answer()
        if isinstance(value, list):
            value = sorted(o.label for o in value)
        classifications[inst.ontology_item.attributes[0].name] = getattr(value, "label", value)
    return {"objects": objects, "classifications": classifications}


def test_label_workflow_round_trips(labels_world: LabelsWorld) -> None:
    from encord.orm.label_row import LabelStatus

    client, project = make_project(labels_world)
    assert project.title == "street labels"
    assert project.ontology_structure.get_child_by_title("car").feature_node_hash
    rows = project.list_label_rows_v2()
    assert sorted(r.data_title for r in rows) == ["a.jpg", "b.jpg"]
    # a workflow project (every corral project is one): the SDK reads the stage, not label_status
    assert all(r.label_hash is None and r.workflow_graph_node.title == "Annotate" for r in rows)
    assert all(r._label_row_read_only_data.label_status == LabelStatus.NOT_LABELLED for r in rows)

    row = first_row(project)
    row.initialise_labels()
    assert row.label_hash and row.width == 640 and row.height == 480
    label(row, project)
    before = snapshot(row, project)
    row.save()

    fresh = labels_world.client().get_project(project.project_hash)
    again = first_row(fresh)
    assert again.label_hash == row.label_hash
    assert again._label_row_read_only_data.label_status == LabelStatus.LABEL_IN_PROGRESS
    again.initialise_labels()
    after = snapshot(again, fresh)
    assert after == before
    assert len(after["objects"]) == 5
    assert after["classifications"] == {"weather": "rain", "tags": ["crowded", "night"], "note": "wet road"}
    names = {v[0]: v for v in after["objects"].values()}
    assert names["car"][2] == {"colour": "red", "shade": "crimson"}
    box = names["car"][1]
    assert (box.top_left_x, box.top_left_y, box.width, box.height) == (0.1, 0.15, 0.3, 0.2)
    assert names["road"][1] == [(0.1, 0.9), (0.5, 0.6), (0.9, 0.9)]
    assert (names["keypoint"][1].x, names["keypoint"][1].y) == (0.25, 0.75)
    # the server stamps who created the labels
    assert {o.get_annotation(0).created_by for o in again.get_object_instances()} == {"labeller@a.io"}
    # initialising again (a PUT for the same data unit) returns the same label row, not a new one
    other = first_row(fresh)
    assert other.label_hash == row.label_hash

    # The other data unit is still unlabelled; saving an edit replaces the labels.
    assert first_row(fresh, "b.jpg").label_hash is None
    for obj in again.get_object_instances():
        if obj.ontology_item.name != "car":
            again.remove_object(obj)
    again.save()
    third = first_row(labels_world.client().get_project(project.project_hash))
    third.initialise_labels()
    assert [o.ontology_item.name for o in third.get_object_instances()] == ["car"]


def _stored(world: LabelsWorld) -> list[dict[str, Any]]:
    with world.db.read() as s:
        return [r.document for r in s.scalars(select(LabelRow))]


def test_malformed_coordinates_are_refused_and_nothing_is_stored(labels_world: LabelsWorld) -> None:
    from encord.exceptions import InvalidArgumentsError
    from encord.objects.coordinates import BoundingBoxCoordinates, PointCoordinate, PolygonCoordinates

    _, project = make_project(labels_world)
    row = first_row(project)
    row.initialise_labels()
    s = project.ontology_structure
    box = s.get_child_by_title("car").create_instance()
    box.set_for_frames(BoundingBoxCoordinates(height=0.2, width=1.5, top_left_x=0.1, top_left_y=0.1), frames=0)
    row.add_object_instance(box)
    with pytest.raises(InvalidArgumentsError) as info:
        row.save()
    assert "boundingBox.w" in str(info.value) and "between 0 and 1" in str(info.value)
    assert _stored(labels_world) == [{}]

    row.remove_object(box)
    road = s.get_child_by_title("road").create_instance()
    road.set_for_frames(PolygonCoordinates([PointCoordinate(0.1, 0.1), PointCoordinate(0.2, 0.2)]), frames=0)
    row.add_object_instance(road)
    with pytest.raises(InvalidArgumentsError) as info:
        row.save()
    assert "a polygon needs at least 3 points, got 2" in str(info.value)
    assert _stored(labels_world) == [{}]


def test_unknown_feature_hashes_are_refused(labels_world: LabelsWorld) -> None:
    from encord.exceptions import InvalidArgumentsError
    from encord.objects.coordinates import BoundingBoxCoordinates

    _, project = make_project(labels_world)
    row = first_row(project)
    row.initialise_labels()
    s = project.ontology_structure
    box = s.get_child_by_title("car").create_instance()
    box.set_for_frames(BoundingBoxCoordinates(height=0.2, width=0.2, top_left_x=0.1, top_left_y=0.1), frames=0)
    row.add_object_instance(box)
    doc = row.to_encord_dict()
    unit = next(iter(doc["data_units"].values()))
    unit["labels"]["objects"][0]["featureHash"] = "deadbeef"
    # The SDK's own transport (what LabelRowV2.save() calls), with a document its ontology would not build.
    with pytest.raises(InvalidArgumentsError) as info:
        row._project_client.save_label_rows(uids=[row.label_hash], payload=[doc])
    assert "unknown object feature hash 'deadbeef'" in str(info.value)
    unit["labels"]["objects"][0]["featureHash"] = box.ontology_item.feature_node_hash
    unit["labels"]["objects"][0]["boundingBox"] = {"x": 0.1, "y": 0.1, "w": "wide"}
    with pytest.raises(InvalidArgumentsError) as info:
        row._project_client.save_label_rows(uids=[row.label_hash], payload=[doc])
    assert "boundingBox: missing h" in str(info.value)
    assert _stored(labels_world) == [{}]
    row.save()  # the well-formed labels still save
    assert len(next(iter(_stored(labels_world)[0]["data_units"].values()))["labels"]["objects"]) == 1


def test_another_organisation_cannot_see_the_project(labels_world: LabelsWorld, make_user: Any) -> None:
    from encord.exceptions import ResourceNotFoundError

    client, project = make_project(labels_world)
    mallory = make_user("mallory@b.io", org="Org B")
    theirs = labels_world.client(mallory)
    with pytest.raises(ResourceNotFoundError):
        theirs.get_project(project.project_hash)
    with pytest.raises(ResourceNotFoundError):
        theirs.get_ontology(project.ontology_hash)
    # The v1 label calls, signed with the other organisation's key, are refused the same way.
    from encord.client import EncordClientProject
    from encord.http.querier import Querier

    querier = Querier(theirs._config.config, resource_type="project", resource_id=project.project_hash)
    rpc = EncordClientProject(querier=querier, config=theirs._config.config, api_client=theirs._api_client)
    with pytest.raises(ResourceNotFoundError):
        rpc.list_label_rows()
    row = first_row(project)
    row.initialise_labels()
    with pytest.raises(ResourceNotFoundError):
        rpc.get_label_rows([row.label_hash])
    with pytest.raises(ResourceNotFoundError):
        rpc.save_label_rows([row.label_hash], [row.to_encord_dict()])


def test_an_ontology_edit_keeps_every_used_feature_in_its_place(labels_world: LabelsWorld) -> None:
    """Moving a used attribute to another object, turning a used object into a classification or
    changing a used attribute's type were saved, and every later initialise_labels() of the labelled
    rows raised in the SDK ("Attribute with id … does not exist", "Expected Object, got
    Classification"): each is now refused (409) naming the feature, and the labels still read."""
    from encord.exceptions import ResourceExistsError
    from encord.objects import OntologyStructure

    client, project = make_project(labels_world)
    row = first_row(project)
    row.initialise_labels()
    label(row, project)
    row.save()
    base = client.get_ontology(project.ontology_hash).structure.to_dict()

    def save_edited(edit: Any) -> None:
        doc = copy.deepcopy(base)
        edit(doc)
        ontology = client.get_ontology(project.ontology_hash)
        ontology._ontology_instance.structure = OntologyStructure.from_dict(doc)
        ontology.save()

    def named(doc: dict[str, Any], name: str) -> dict[str, Any]:
        return next(o for o in doc["objects"] if o["name"] == name)

    def move_colour(doc: dict[str, Any]) -> None:
        named(doc, "road")["attributes"] = [named(doc, "car")["attributes"].pop(0)]

    def car_as_classification(doc: dict[str, Any]) -> None:
        car = named(doc, "car")
        doc["objects"].remove(car)
        doc["classifications"].append({"id": "9", "featureNodeHash": car["featureNodeHash"],
                                       "attributes": car["attributes"]})

    def tags_as_radio(doc: dict[str, Any]) -> None:
        next(c for c in doc["classifications"] if c["attributes"][0]["name"] == "tags")["attributes"][0]["type"] = "radio"

    def colour_dynamic(doc: dict[str, Any]) -> None:
        named(doc, "car")["attributes"][0]["dynamic"] = True  # its answers carry no frames

    for edit, feature in ((move_colour, "'colour'"), (car_as_classification, "'car'"), (tags_as_radio, "'tags'"),
                          (colour_dynamic, "'colour'")):
        with pytest.raises(ResourceExistsError, match=feature):
            save_edited(edit)
    save_edited(lambda doc: named(doc, "car").update(name="auto"))  # a rename is fine
    again = first_row(labels_world.client().get_project(project.project_hash))
    again.initialise_labels()
    assert sorted(o.ontology_item.name for o in again.get_object_instances())[0] == "auto"
    again.save()


def test_labels_the_sdk_could_not_read_back_are_refused(labels_world: LabelsWorld) -> None:
    """Each document below was stored, and every later initialise_labels() of the row raised in the
    SDK (a date ParserError, KeyError 'objectHash' / 'classificationHash', "Cannot overwrite existing
    data for a frame"): each is now an InvalidArgumentsError naming the field, and nothing is stored."""
    from encord.exceptions import InvalidArgumentsError

    _, project = make_project(labels_world)
    row = first_row(project)
    row.initialise_labels()
    label(row, project)
    good = row.to_encord_dict()

    def objects(doc: dict[str, Any]) -> list[dict[str, Any]]:
        return list(doc["data_units"].values())[0]["labels"]["objects"]  # type: ignore[no-any-return]

    edits = [
        (lambda d: objects(d)[0].update(createdAt="not a date"), "objects[0].createdAt"),
        (lambda d: objects(d).append(copy.deepcopy(objects(d)[0])), "objects[5].objectHash"),
        (lambda d: [a.pop("objectHash") for a in d["object_answers"].values()], ".objectHash: must be"),
        (lambda d: [a.pop("classificationHash") for a in d["classification_answers"].values()],
         ".classificationHash: must be"),
        (lambda d: [a.update(range=[[0, 3]]) for a in d["classification_answers"].values()], ".range[0]"),
    ]
    for edit, field in edits:
        doc = copy.deepcopy(good)
        edit(doc)
        with pytest.raises(InvalidArgumentsError, match=re.escape(field)):
            row._project_client.save_label_rows(uids=[row.label_hash], payload=[doc])
        assert _stored(labels_world) == [{}]
    row.save()
    again = first_row(labels_world.client().get_project(project.project_hash))
    again.initialise_labels()
    assert len(again.get_object_instances()) == 5


def test_workflow_complete_and_reopen(labels_world: LabelsWorld, make_user: Any) -> None:
    """LabelRowV2.workflow_complete() and workflow_reopen() (v1 labelworkflowgraphnode/POST) were
    refused as unsupported: they move a label row's task to Complete, or back to Annotate
    (REOPENED), from any stage, alone or in a bundle; admins and team managers only, as task.move()."""
    from encord.exceptions import AuthorisationError, LabelRowError
    from encord.utilities.project_user import ProjectUserRole
    from encord.workflow import AnnotationStage

    client, project = make_project(labels_world)
    a, b = first_row(project), first_row(project, "b.jpg")
    with pytest.raises(LabelRowError):
        a.workflow_complete()  # the SDK's own rule: labelling must have started
    a.initialise_labels()
    a.workflow_complete()

    def stages() -> dict[str, str]:
        return {r.data_title: r.workflow_graph_node.title for r in project.list_label_rows_v2()}

    assert stages() == {"a.jpg": "Complete", "b.jpg": "Annotate"}
    b.initialise_labels()
    with project.create_bundle() as bundle:
        a.workflow_reopen(bundle=bundle)
        b.workflow_complete(bundle=bundle)
    assert stages() == {"a.jpg": "Annotate", "b.jpg": "Complete"}
    annotate = project.workflow.get_stage(name="Annotate", type_=AnnotationStage)
    [task] = list(annotate.get_tasks())
    assert (task.data_title, task.status.value, task.assignee) == ("a.jpg", "REOPENED", None)

    annotator = make_user("ann@a.io", role="member")
    project.add_users(["ann@a.io"], ProjectUserRole.ANNOTATOR)
    theirs = first_row(labels_world.client(annotator).get_project(project.project_hash))
    with pytest.raises(AuthorisationError):
        theirs.workflow_complete()
    assert stages() == {"a.jpg": "Annotate", "b.jpg": "Complete"}
