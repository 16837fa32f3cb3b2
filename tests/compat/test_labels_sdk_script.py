"""A user's whole labelling script through the unmodified Encord SDK, against a live server.

An ontology of every shape corral labels, with nested, dynamic and numeric attributes; a project
over an image, a 1,000-frame video, an image group and an image sequence; labels on several
frames, written in bundles and read back field by field in a new client session; edits and
deletions; ``initialise_labels``' feature-hash filters; documents the SDK could not read back,
sent raw, each refused naming its field; a save over the body limit.
"""

from __future__ import annotations

import copy
import re
from collections.abc import Iterator
from email.utils import parsedate_to_datetime
from typing import Any

import numpy as np
import pytest
from sqlalchemy import select

from corral.db.engine import Database
from corral.db.tables import LabelRow
from tests.compat.labels_fixtures import LabelsWorld, mixed_dataset


@pytest.fixture
def world(live_server: str, make_user: Any, db: Database) -> LabelsWorld:
    return LabelsWorld(live_server, make_user("labeller@a.io"), db)


def structure() -> Any:
    from encord.objects import OntologyStructure, Shape
    from encord.objects.attributes import ChecklistAttribute, NumericAttribute, RadioAttribute, TextAttribute
    from encord.objects.skeleton_template import SkeletonTemplate, SkeletonTemplateCoordinate

    s = OntologyStructure()
    car = s.add_object("car", Shape.BOUNDING_BOX)
    colour = car.add_attribute(RadioAttribute, "colour")
    colour.add_option("red").add_nested_attribute(TextAttribute, "shade")
    colour.add_option("blue")
    car.add_attribute(ChecklistAttribute, "damage").add_option("dent")
    car.add_attribute(NumericAttribute, "speed", dynamic=True)
    moving = car.add_attribute(RadioAttribute, "moving", dynamic=True)
    moving.add_option("yes")
    moving.add_option("no")
    car.add_attribute(TextAttribute, "plate", dynamic=True)
    s.add_object("road", Shape.POLYGON)
    s.add_object("keypoint", Shape.POINT)
    s.add_object("lane", Shape.POLYLINE)
    s.add_object("sign", Shape.ROTATABLE_BOUNDING_BOX)
    s.add_object("mask", Shape.BITMASK)
    s.add_skeleton_object("person", SkeletonTemplate(
        name="body", width=1.0, height=1.0,
        skeleton={"0": SkeletonTemplateCoordinate(x=0.1, y=0.1, name="head"),
                  "1": SkeletonTemplateCoordinate(x=0.2, y=0.2, name="hand")},
        skeleton_edges={"0": {"1": {"color": "#000000"}}}))
    weather = s.add_classification().add_attribute(RadioAttribute, "weather")
    weather.add_option("sunny")
    weather.add_option("rain").add_nested_attribute(TextAttribute, "how hard")
    tags = s.add_classification().add_attribute(ChecklistAttribute, "tags")
    tags.add_option("night")
    tags.add_option("blurred")
    s.add_classification().add_attribute(TextAttribute, "note")
    s.add_classification().add_attribute(NumericAttribute, "count")
    return s


def classification(s: Any, name: str) -> Any:
    return next(c for c in s.classifications if c.attributes[0].name == name)


def start(world: LabelsWorld) -> tuple[Any, dict[str, Any]]:
    """The project, and its four label rows (by title), initialised in one bundle."""
    client = world.client()
    ontology = client.create_ontology("street", structure=structure())
    dataset = mixed_dataset(world.db, world.user)
    project = client.get_project(client.create_project(
        project_title="street", dataset_hashes=[str(dataset)], ontology_hash=ontology.ontology_hash))
    rows = {r.data_title: r for r in project.list_label_rows_v2()}
    with project.create_bundle() as bundle:
        for row in rows.values():
            row.initialise_labels(bundle=bundle)
    return project, rows


def label_everything(project: Any, rows: dict[str, Any]) -> None:
    from encord.objects.bitmask import BitmaskCoordinates
    from encord.objects.coordinates import (
        BoundingBoxCoordinates,
        PointCoordinate,
        PolygonCoordinates,
        PolylineCoordinates,
        RotatableBoundingBoxCoordinates,
        SkeletonCoordinate,
    )
    from encord.objects.frames import Range

    s = project.ontology_structure

    def t(name: str) -> Any:
        return s.get_child_by_title(name)

    image = rows["img.jpg"]
    car = t("car").create_instance()
    car.set_for_frames(BoundingBoxCoordinates(height=0.2, width=0.3, top_left_x=0.1, top_left_y=0.15), frames=0,
                       confidence=0.8, manual_annotation=False, created_by="bob@a.io")
    car.set_answer(t("red"), attribute=t("colour"))
    car.set_answer("crimson", attribute=t("shade"))
    car.set_answer([t("dent")], attribute=t("damage"))
    image.add_object_instance(car)
    mask = np.zeros((480, 640), dtype=bool)
    mask[10:20, 30:50] = True
    bitmask = t("mask").create_instance()
    bitmask.set_for_frames(BitmaskCoordinates(mask), frames=0)
    image.add_object_instance(bitmask)
    person = t("person").create_instance()
    person.set_for_frames(s.skeleton_templates["body"].create_instance(
        [SkeletonCoordinate(x=0.3, y=0.3, name="head"), SkeletonCoordinate(x=0.4, y=0.5, name="hand")]), frames=0)
    image.add_object_instance(person)
    weather = classification(s, "weather").create_instance()
    weather.set_answer(t("rain"))
    weather.set_answer("very", attribute=t("how hard"))
    weather.set_for_frames(frames=0, confidence=0.5, manual_annotation=True)
    image.add_classification_instance(weather)
    count = classification(s, "count").create_instance()
    count.set_answer(7)
    count.set_for_frames(frames=0)
    image.add_classification_instance(count)

    video = rows["vid.mp4"]
    moving = t("car").create_instance()
    moving.set_for_frames(BoundingBoxCoordinates(height=0.1, width=0.1, top_left_x=0.5, top_left_y=0.5),
                          frames=[Range(0, 9), Range(20, 29)])
    moving.set_for_frames(BoundingBoxCoordinates(height=0.1, width=0.1, top_left_x=0.6, top_left_y=0.5),
                          frames=999, overwrite=True)
    moving.set_answer(10.0, attribute=t("speed"), frames=Range(0, 4))
    moving.set_answer(20.0, attribute=t("speed"), frames=Range(5, 9))
    moving.set_answer(t("yes"), attribute=t("moving"), frames=[Range(0, 9)])
    moving.set_answer("AB123", attribute=t("plate"), frames=3)
    video.add_object_instance(moving)
    tags = classification(s, "tags").create_instance()
    tags.set_answer([t("night"), t("blurred")])
    tags.set_for_frames(frames=[Range(0, 99), Range(500, 599)])
    video.add_classification_instance(tags)

    for frame in range(3):  # one road on each image of the group
        road = t("road").create_instance()
        road.set_for_frames(PolygonCoordinates([PointCoordinate(0.1, 0.1), PointCoordinate(0.5, 0.1 + frame / 10),
                                                PointCoordinate(0.3, 0.9)]), frames=frame)
        rows["grp"].add_object_instance(road)

    sequence = rows["seq"]
    lane = t("lane").create_instance()
    lane.set_for_frames(PolylineCoordinates([PointCoordinate(0, 1), PointCoordinate(0.4, 0.5)]), frames=[0, 2])
    sequence.add_object_instance(lane)
    sign = t("sign").create_instance()
    sign.set_for_frames(RotatableBoundingBoxCoordinates(height=0.1, width=0.1, top_left_x=0.7, top_left_y=0.2,
                                                        theta=30.0), frames=1)
    sequence.add_object_instance(sign)
    point = t("keypoint").create_instance()
    point.set_for_frames(PointCoordinate(0.25, 0.75), frames=2)
    sequence.add_object_instance(point)


def comparable(doc: Any, saver: str) -> Any:
    """A row as the SDK writes it, with what the server fills in (a null or absent ``createdBy``
    and ``lastEditedBy`` become the saver's e-mail) filled in, and lists of answers in a fixed
    order (the SDK reads dynamic answers back grouped by attribute)."""
    if isinstance(doc, dict):
        out = {k: comparable(v, saver) for k, v in doc.items()}
        if "createdBy" in out:  # an object on a frame, or a classification answer
            for key in ("createdBy", "lastEditedBy"):
                out[key] = out.get(key) or saver
        return out
    if isinstance(doc, list):
        items = [comparable(v, saver) for v in doc]
        if all(isinstance(v, dict) and "featureHash" in v for v in items):
            items.sort(key=repr)
        return items
    return doc


def reread(world: LabelsWorld, project: Any, **options: Any) -> dict[str, Any]:
    """Every label row of the project, initialised in a new client session."""
    fresh = world.client().get_project(project.project_hash)
    rows = {r.data_title: r for r in fresh.list_label_rows_v2()}
    with fresh.create_bundle() as bundle:
        for row in rows.values():
            row.initialise_labels(bundle=bundle, **options)
    return rows


def test_every_shape_on_every_data_type_reads_back_as_written(world: LabelsWorld) -> None:
    project, rows = start(world)
    assert {t: (r.data_type.value, r.number_of_frames) for t, r in rows.items()} == {
        "img.jpg": ("image", 1), "vid.mp4": ("video", 1000), "grp": ("img_group", 3), "seq": ("video", 3)}
    label_everything(project, rows)
    written = {t: r.to_encord_dict() for t, r in rows.items()}
    with project.create_bundle() as bundle:
        for row in rows.values():
            row.save(bundle=bundle)

    back = reread(world, project)
    for title, row in back.items():
        again = row.to_encord_dict()
        edited = (parsedate_to_datetime(d.pop("last_edited_at")) for d in (again, written[title]))
        assert next(edited) >= next(edited)  # the time of the save
        assert comparable(again, "labeller@a.io") == comparable(written[title], "labeller@a.io"), title
    image = back["img.jpg"]
    [car] = [o for o in image.get_object_instances() if o.ontology_item.name == "car"]
    annotation = car.get_annotation(0)
    assert (annotation.confidence, annotation.manual_annotation, annotation.created_by) == (0.8, False, "bob@a.io")
    assert annotation.last_edited_by == "labeller@a.io"  # the saver, as Encord stamps it
    assert {c.last_edited_by for c in image.get_classification_instances()} == {"labeller@a.io"}
    s = project.ontology_structure
    [mask] = [o for o in image.get_object_instances() if o.ontology_item.name == "mask"]
    assert mask.get_annotation(0).coordinates.to_numpy_array().sum() == 200
    [moving] = back["vid.mp4"].get_object_instances()
    assert sorted(f.frame for f in moving.get_annotations()) == [*range(10), *range(20, 30), 999]
    speeds = moving.get_answer(s.get_child_by_title("speed"))
    assert sorted((a.ranges[0].start, a.ranges[0].end, a.answer) for a in speeds) == [(0, 4, 10.0), (5, 9, 20.0)]

    # edit one object, delete another, save, and read again
    again = back["img.jpg"]
    [car] = [o for o in again.get_object_instances() if o.ontology_item.name == "car"]
    car.set_answer(s.get_child_by_title("blue"), attribute=s.get_child_by_title("colour"), overwrite=True)
    [person] = [o for o in again.get_object_instances() if o.ontology_item.name == "person"]
    again.remove_object(person)
    again.save()
    final = reread(world, project)["img.jpg"]
    assert sorted(o.ontology_item.name for o in final.get_object_instances()) == ["car", "mask"]
    [car] = [o for o in final.get_object_instances() if o.ontology_item.name == "car"]
    assert car.get_answer(s.get_child_by_title("colour")).label == "blue"


def test_initialise_labels_reads_only_the_features_asked_for(world: LabelsWorld) -> None:
    project, rows = start(world)
    label_everything(project, rows)
    for row in rows.values():
        row.save()
    s = project.ontology_structure
    car, road = (s.get_child_by_title(n).feature_node_hash for n in ("car", "road"))
    tags = classification(s, "tags").feature_node_hash

    only = reread(world, project, include_object_feature_hashes={car, road},
                  include_classification_feature_hashes={tags})
    assert [o.ontology_item.name for o in only["img.jpg"].get_object_instances()] == ["car"]
    assert only["img.jpg"].get_classification_instances() == []
    assert len(only["grp"].get_object_instances()) == 3
    assert only["seq"].get_object_instances() == []
    [moving] = only["vid.mp4"].get_object_instances()  # with its answers, static and dynamic
    assert len(moving.get_answer(s.get_child_by_title("speed"))) == 2
    assert [c.ontology_item.feature_node_hash for c in only["vid.mp4"].get_classification_instances()] == [tags]
    # an empty set asks for none (the SDK sends []), not for all
    none = reread(world, project, include_object_feature_hashes=set(), include_classification_feature_hashes=set())
    assert all(not r.get_object_instances() and not r.get_classification_instances() for r in none.values())
    # None (the default) is every label
    every = reread(world, project, include_object_feature_hashes=None)
    assert len(every["img.jpg"].get_object_instances()) == 3


def _stored(world: LabelsWorld) -> list[Any]:
    with world.db.read() as s:
        return [r.document for r in s.scalars(select(LabelRow).order_by(LabelRow.id))]


@pytest.mark.parametrize(("change", "field", "expected"), [
    (lambda d, o, c: d["object_answers"][o].__setitem__("objectNumber", "seven"),
     "objectNumber", "must be a non-negative integer, got 'seven'"),
    (lambda d, o, c: d["object_answers"][o].__setitem__("objectNumber", -1),
     "objectNumber", "must be a non-negative integer, got -1"),
    (lambda d, o, c: d["data_units"][next(iter(d["data_units"]))]["labels"]["3"].__setitem__("metadata", {"a": 1}),
     "labels.3.metadata", "frame metadata is a DICOM slice's"),
    (lambda d, o, c: d["classification_answers"][c].pop("range"),
     "range", "the frames of the classification"),
    (lambda d, o, c: d["classification_answers"][c].__setitem__("range", []),
     "range", "the frames of the classification"),
])
def test_what_the_sdk_could_not_read_back_is_refused_naming_the_field(
    world: LabelsWorld, change: Any, field: str, expected: str
) -> None:
    """Each of these was stored, then every read of the row failed in the SDK (a TypeError on
    the object number, a pydantic error on the frame's 'DICOM' metadata), or the SDK dropped the
    classification without a word (no range)."""
    from encord.exceptions import InvalidArgumentsError

    project, rows = start(world)
    label_everything(project, rows)
    video = rows["vid.mp4"]
    video.save()
    before = _stored(world)
    [raw] = project._client.get_label_rows([video.label_hash], get_signed_url=False)
    doc = copy.deepcopy(dict(raw))
    [object_hash] = doc["object_answers"]
    [classification_hash] = doc["classification_answers"]
    change(doc, object_hash, classification_hash)
    with pytest.raises(InvalidArgumentsError, match=expected) as info:
        project._client.save_label_rows([video.label_hash], [doc])
    assert field in str(info.value)
    assert _stored(world) == before
    reread(world, project)  # still reads


def test_two_objects_of_a_feature_may_not_share_a_number(world: LabelsWorld) -> None:
    """The SDK refuses to save a row where they do (every later save() of it failed)."""
    from encord.exceptions import InvalidArgumentsError

    project, rows = start(world)
    label_everything(project, rows)
    group = rows["grp"]
    group.save()
    [raw] = project._client.get_label_rows([group.label_hash], get_signed_url=False)
    doc = copy.deepcopy(dict(raw))
    for n, entry in enumerate(doc["object_answers"].values()):
        entry["objectNumber"] = n + 1
    project._client.save_label_rows([group.label_hash], [doc])  # distinct numbers are kept
    numbers = sorted(o.object_number for o in reread(world, project)["grp"].get_object_instances())
    assert numbers == [1, 2, 3]
    first, second, _ = doc["object_answers"]
    doc["object_answers"][second]["objectNumber"] = doc["object_answers"][first]["objectNumber"]
    with pytest.raises(InvalidArgumentsError, match=re.escape(f"number 1 is also the number of object '{first}'")):
        project._client.save_label_rows([group.label_hash], [doc])


class TestBodyLimit:
    @pytest.fixture
    def settings(self, settings: Any) -> Iterator[Any]:
        yield settings.model_copy(update={"max_json_body_bytes": 64 << 10})

    def test_a_save_over_the_body_limit_names_the_limit(self, world: LabelsWorld) -> None:
        from encord import EncordUserClient
        from encord.exceptions import PayloadTooLargeError
        from encord.http.constants import RequestsSettings

        client = EncordUserClient.create_with_ssh_private_key(  # no retries of the 413
            world.user.key_path.read_text(), domain=world.server, requests_settings=RequestsSettings(max_retries=0))
        project, _ = start(world)
        project = client.get_project(project.project_hash)
        row = next(r for r in project.list_label_rows_v2() if r.data_title == "img.jpg")
        row.initialise_labels()
        note = classification(project.ontology_structure, "note").create_instance()
        note.set_answer("x" * (65 << 10))
        note.set_for_frames(frames=0)
        row.add_classification_instance(note)
        with pytest.raises(PayloadTooLargeError, match=r"the limit of 64 KiB \(CORRAL_MAX_JSON_BODY_BYTES\)"):
            row.save()


def test_a_nan_coordinate_is_refused_naming_its_field(world: LabelsWorld) -> None:
    """The SDK writes a NaN (a coordinate computed from an empty mask, say) as NaN, which is not
    JSON: the refusal said "request body is not JSON (… line 1, column 1190)", not where."""
    from encord.exceptions import InvalidArgumentsError
    from encord.objects.coordinates import BoundingBoxCoordinates

    project, rows = start(world)
    image = rows["img.jpg"]
    car = project.ontology_structure.get_child_by_title("car").create_instance()
    car.set_for_frames(BoundingBoxCoordinates(height=0.2, width=float("nan"), top_left_x=0.1, top_left_y=0.1),
                       frames=0)
    image.add_object_instance(car)
    with pytest.raises(InvalidArgumentsError, match=re.escape(
            f"labels[0].data_units['{image.data_hash}'].labels.objects[0].boundingBox.w: "
            "NaN and infinite numbers are not JSON")):
        image.save()
