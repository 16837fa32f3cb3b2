"""Label documents checked against an ontology (no database: ``corral.core.labels.validation``)."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from corral.core.labels import ontology, ontology_sdk, validation
from corral.errors import ValidationFailed

EDITOR: dict[str, Any] = {
    "objects": [
        {"id": "1", "name": "car", "shape": "bounding_box", "featureNodeHash": "car00001", "attributes": [
            {"id": "1.1", "name": "colour", "type": "radio", "featureNodeHash": "colour01", "options": [
                {"id": "1.1.1", "label": "red", "value": "red", "featureNodeHash": "red00001", "options": [
                    {"id": "1.1.1.1", "name": "shade", "type": "text", "featureNodeHash": "shade001"}]},
                {"id": "1.1.2", "label": "blue", "value": "blue", "featureNodeHash": "blue0001"}]}]},
        {"id": "2", "name": "road", "shape": "polygon", "featureNodeHash": "road0001"},
        {"id": "3", "name": "lane", "shape": "polyline", "featureNodeHash": "lane0001"},
        {"id": "4", "name": "kp", "shape": "point", "featureNodeHash": "kp000001"},
        {"id": "5", "name": "sign", "shape": "rotatable_bounding_box", "featureNodeHash": "sign0001"},
        {"id": "6", "name": "mask", "shape": "bitmask", "featureNodeHash": "mask0001"},
        {"id": "7", "name": "body", "shape": "skeleton", "featureNodeHash": "body0001"},
    ],
    "classifications": [
        {"id": "1", "featureNodeHash": "weather1", "attributes": [
            {"id": "1.1", "name": "weather", "type": "radio", "featureNodeHash": "weathera", "options": [
                {"id": "1.1.1", "label": "sunny", "value": "sunny", "featureNodeHash": "sunny001"}]}]},
        {"id": "2", "featureNodeHash": "tags0001", "attributes": [
            {"id": "2.1", "name": "tags", "type": "checklist", "featureNodeHash": "tagsattr", "options": [
                {"id": "2.1.1", "label": "night", "value": "night", "featureNodeHash": "night001"}]}]},
        {"id": "3", "featureNodeHash": "count001", "attributes": [
            {"id": "3.1", "name": "count", "type": "numeric", "featureNodeHash": "countatt"}]},
    ],
}
INDEX = ontology.read(EDITOR)
IMAGE = validation.Target(frozenset({"du"}), per_frame=False)
VIDEO = validation.Target(frozenset({"du"}), per_frame=True, frames=10)


def obj(feature: str, shape: str, oh: str, **geometry: Any) -> dict[str, Any]:
    return {"featureHash": feature, "shape": shape, "objectHash": oh, "createdBy": None, **geometry}


def doc(*objects: dict[str, Any], **extra: Any) -> dict[str, Any]:
    return {"data_units": {"du": {"labels": {"objects": list(objects), "classifications": []}}},
            "object_answers": {o["objectHash"]: {"objectHash": o["objectHash"], "classifications": []}
                               for o in objects},
            "classification_answers": {}, "object_actions": {}, **extra}


GOOD = [
    obj("car00001", "bounding_box", "o1", boundingBox={"x": 0.1, "y": 0.1, "w": 0.9, "h": 0.5}),
    obj("road0001", "polygon", "o2", polygon={"0": {"x": 0, "y": 0}, "1": {"x": 1, "y": 0}, "2": {"x": 1, "y": 1}},
        polygons=[[[0, 0, 1, 0, 1, 1]]]),
    obj("lane0001", "polyline", "o3", polyline=[{"x": 0, "y": 0}, {"x": 0.5, "y": 0.5}]),
    obj("kp000001", "point", "o4", point={"0": {"x": 0.5, "y": 0.5}}),
    obj("sign0001", "rotatable_bounding_box", "o5",
        rotatableBoundingBox={"x": 0.1, "y": 0.1, "w": 0.2, "h": 0.2, "theta": 45}),
    obj("mask0001", "bitmask", "o6", bitmask={"top": 0, "left": 0, "width": 640, "height": 480, "rleString": "4"}),
    obj("body0001", "skeleton", "o7", name="body", skeleton={"0": {"x": 0.1, "y": 0.2, "name": "head"},
                                                "1": {"x": 0.1, "y": 0.4, "name": "neck"}}),
]


def refused(document: dict[str, Any], target: validation.Target = IMAGE) -> str:
    with pytest.raises(ValidationFailed) as info:
        validation.check(INDEX, document, target)
    return " | ".join([info.value.message, *(f"{d.field} {d.message}" for d in info.value.details)])


def test_every_shape_and_answer_kind_passes_and_is_stamped() -> None:
    d = doc(*copy.deepcopy(GOOD))
    d["object_answers"]["o1"]["classifications"] = [
        {"featureHash": "colour01", "answers": [{"featureHash": "red00001"}]},
        {"featureHash": "shade001", "answers": "crimson"},
    ]
    d["classification_answers"] = {
        "c1": {"featureHash": "weather1", "classificationHash": "c1", "createdBy": None, "range": [[0, 0]],
               "classifications": [{"featureHash": "weathera", "answers": [{"featureHash": "sunny001"}]}]},
        "c2": {"featureHash": "tags0001", "classificationHash": "c2", "range": [[0, 0]],
               "classifications": [{"featureHash": "tagsattr", "answers": []}]},
        "c3": {"featureHash": "count001", "classificationHash": "c3", "range": [[0, 0]],
               "classifications": [{"featureHash": "countatt", "answers": 3.5}]},
    }
    d["data_units"]["du"]["labels"]["objects"][0]["lastEditedBy"] = "bob@x.io"
    d["classification_answers"]["c2"]["lastEditedBy"] = "bob@x.io"
    stored = validation.check(INDEX, d, IMAGE, stamp="me@x.io")
    objects = stored["data_units"]["du"]["labels"]["objects"]
    assert [o["createdBy"] for o in objects] == ["me@x.io"] * 7
    assert [o["lastEditedBy"] for o in objects] == ["bob@x.io"] + ["me@x.io"] * 6
    answers = stored["classification_answers"]
    assert (answers["c1"]["createdBy"], answers["c1"]["lastEditedBy"], answers["c2"]["lastEditedBy"]) == (
        "me@x.io", "me@x.io", "bob@x.io")
    assert set(stored) == {"data_units", "object_answers", "classification_answers", "object_actions"}


@pytest.mark.parametrize(("bad", "expected"), [
    (obj("nope0001", "bounding_box", "x", boundingBox={}), "unknown object feature hash 'nope0001'"),
    (obj("weather1", "bounding_box", "x", boundingBox={}), "(a classification, not an object)"),
    (obj("car00001", "polygon", "x", polygon={}), "object 'car' is a bounding_box in the ontology"),
    (obj("car00001", "bounding_box", "x"), "a bounding_box object needs its boundingBox coordinates"),
    (obj("car00001", "bounding_box", "x", boundingBox={"x": 0, "y": 0, "w": 0.1}), "boundingBox: missing h"),
    (obj("car00001", "bounding_box", "x", boundingBox={"x": 0, "y": 0, "w": "1", "h": 0.1}), "must be a number"),
    (obj("car00001", "bounding_box", "x", boundingBox={"x": 0, "y": 0, "w": True, "h": 0.1}), "must be a number"),
    (obj("car00001", "bounding_box", "x", boundingBox={"x": 0.5, "y": 0, "w": 0.6, "h": 0.1}), "leaves the image"),
    (obj("car00001", "bounding_box", "x", boundingBox={"x": -0.2, "y": 0, "w": 0.1, "h": 0.1}), "between 0 and 1"),
    (obj("road0001", "polygon", "x", polygon=[{"x": 0, "y": 0}, {"x": 1, "y": 1}]), "at least 3 points, got 2"),
    (obj("road0001", "polygon", "x", polygon={"a": {}}), "expected points"),
    (obj("road0001", "polygon", "x", polygon=[{"x": 0, "y": 0}] * 3, polygons=[[[0, 0, 1]]]), "a contour is"),
    (obj("lane0001", "polyline", "x", polyline=[{"x": 0, "y": 0}]), "a polyline needs at least 2 points"),
    (obj("kp000001", "point", "x", point={"0": {"x": 2, "y": 0}}), "point.0.x: must be between 0 and 1"),
    (obj("kp000001", "point", "x", point={"0": {"y": 0}}), "expected a point {x, y}"),
    (obj("sign0001", "rotatable_bounding_box", "x", rotatableBoundingBox={"x": 0, "y": 0, "w": 0.1, "h": 0.1}),
     "missing theta"),
    (obj("mask0001", "bitmask", "x", bitmask={"top": -1, "left": 0, "width": 1, "height": 1}),
     "rleString"),
    (obj("body0001", "skeleton", "x", skeleton={"0": {"x": 0.1, "y": 0.1}}), "a skeleton point needs a name"),
])
def test_bad_objects_are_refused_with_their_field(bad: dict[str, Any], expected: str) -> None:
    assert expected in refused(doc(GOOD[0], bad))


def test_bad_answers_are_refused() -> None:
    d = doc(GOOD[0])
    d["object_answers"]["o1"]["classifications"] = [
        {"featureHash": "colour01", "answers": [{"featureHash": "red00001"}, {"featureHash": "blue0001"}]},
        {"featureHash": "weathera", "answers": []},
        {"featureHash": "shade001", "answers": 5},
    ]
    d["object_answers"]["ghost"] = {"classifications": []}
    d["classification_answers"] = {
        "c1": {"featureHash": "car00001", "classifications": []},
        "c2": {"featureHash": "tags0001", "classifications": [{"featureHash": "tagsattr",
                                                                "answers": [{"featureHash": "sunny001"}]}]},
        "c3": {"featureHash": "count001", "classifications": [{"featureHash": "countatt", "answers": "x"}]},
    }
    message = refused(d)
    for expected in ("radio attribute 'colour' needs exactly one option",
                     "unknown attribute feature hash 'weathera' for object 'car'",
                     "text attribute 'shade' needs a string answer",
                     "answers for object 'ghost', which is in no data unit",
                     "(an object, not a classification)",
                     "'sunny001' is not an option of checklist attribute 'tags'",
                     "numeric attribute 'count' needs a number",
                     "object_answers.o1.classifications[0].answers"):
        assert expected in message


@pytest.mark.parametrize("bad", [[1], {"a": 1}, [None], [[]], [{}], {"": None}])
def test_feature_hashes_and_lists_of_the_wrong_json_type_are_refused(bad: Any) -> None:
    """A feature hash that is a list or an object (unhashable) and a frame's classifications that
    are not a list were TypeErrors (500s at ``labelrow/POST``): each is a problem naming its field."""
    d = doc(GOOD[0], obj(bad, "bounding_box", "o9", boundingBox={"x": 0, "y": 0, "w": 0.1, "h": 0.1}))
    assert "data_units.du.labels.objects[1].featureHash: unknown object feature hash" in refused(d)
    d = doc(GOOD[0])
    d["data_units"]["du"]["labels"]["classifications"] = [{"featureHash": bad}]
    assert "data_units.du.labels.classifications[0].featureHash: unknown classification" in refused(d)
    d = doc(GOOD[0])
    d["classification_answers"] = {"c1": {"featureHash": bad, "classifications": []}}
    assert "classification_answers.c1.featureHash: unknown classification feature hash" in refused(d)


@pytest.mark.parametrize("bad", [1, 1.5, True, "x", {"a": 1}])
def test_a_frames_classifications_must_be_a_list(bad: Any) -> None:
    d = doc(GOOD[0])
    d["data_units"]["du"]["labels"]["classifications"] = bad
    assert "data_units.du.labels.classifications: expected a list of classifications" in refused(d)


@pytest.mark.parametrize(("editor", "field"), [
    ({}, "objects"), ({"a": 1}, "objects"), ({"objects": []}, "classifications"),
    ({"classifications": []}, "objects"), ({"objects": None, "classifications": []}, "objects"),
    ({"objects": [], "classifications": [], "skeleton_templates": [1]}, "skeleton_templates[0]"),
    ({"objects": [], "classifications": [], "skeleton_templates": [{}]}, "skeleton_templates[0]"),
])
def test_a_saved_ontology_has_the_top_level_the_sdk_reads(editor: dict[str, Any], field: str) -> None:
    """The Encord SDK reads every ontology of ``get_ontologies()`` with ``OntologyStructure.from_dict``,
    which needs both lists: one ontology saved as ``{}`` made the call raise ``KeyError`` for every
    member of the organisation.  A document being saved must have them (``read`` of a stored one
    stays lenient)."""
    from encord.objects import OntologyStructure

    with pytest.raises((KeyError, TypeError)):
        OntologyStructure.from_dict(editor)  # what the SDK would do with it
    with pytest.raises(ValidationFailed) as info:
        ontology.read_new(editor)
    assert field in [d.field for d in info.value.details]
    ontology.read(editor if isinstance(editor.get("objects", []), list) else {})  # stored ones still read


def _hand() -> dict[str, Any]:
    from encord.objects.skeleton_template import SkeletonTemplate, SkeletonTemplateCoordinate

    template = SkeletonTemplate(name="hand", width=1.0, height=1.0,
                                skeleton={"0": SkeletonTemplateCoordinate(x=0.1, y=0.2, name="wrist"),
                                          "1": SkeletonTemplateCoordinate(x=0.3, y=0.2, name="thumb")},
                                skeleton_edges={"0": {"1": {"color": "#000000"}}})
    return {"template": template.to_dict()}


def test_the_sdks_own_empty_and_skeleton_documents_are_saved() -> None:
    from encord.objects import OntologyStructure

    assert ontology.read_new(OntologyStructure().to_dict()).objects == {}
    doc = {"objects": [], "classifications": [], "skeleton_templates": [_hand()]}
    stored, index = ontology.prepare_new(doc)
    assert index.classifications == {} and stored == doc
    assert "hand" in OntologyStructure.from_dict(stored).skeleton_templates
    # a template the SDK cannot read (it needs the size, the points and the edges) is refused
    with pytest.raises(ValidationFailed) as info:
        ontology.read_new({"objects": [], "classifications": [], "skeleton_templates": [{"template": {"name": "hand"}}]})
    assert {d.field for d in info.value.details} == {
        f"skeleton_templates[0].template.{k}" for k in ("width", "height", "skeleton", "skeleton_edges")}


def _rich_sdk_structure() -> Any:
    from encord.objects import OntologyStructure, Shape
    from encord.objects.attributes import ChecklistAttribute, NumericAttribute, RadioAttribute, TextAttribute

    s = OntologyStructure()
    car = s.add_object("car", Shape.BOUNDING_BOX)
    colour = car.add_attribute(RadioAttribute, "colour", required=True)
    red = colour.add_option("Dark red")
    red.add_nested_attribute(TextAttribute, "shade")
    colour.add_option("blue")
    car.add_attribute(ChecklistAttribute, "parts").add_option("wheel")
    s.add_object("road", Shape.POLYGON)
    weather = s.add_classification()
    weather.add_attribute(RadioAttribute, "weather").add_option("sunny")
    s.add_classification().add_attribute(NumericAttribute, "count")
    return s


def test_the_sdks_own_documents_are_stored_as_sent() -> None:
    from encord.objects import OntologyStructure

    doc = _rich_sdk_structure().to_dict()
    stored, index = ontology.prepare_new(copy.deepcopy(doc))
    assert stored == doc
    assert len(index.objects) == 2 and len(index.classifications) == 2
    assert OntologyStructure.from_dict(stored).to_dict() == doc


def _strip(node: Any, keys: tuple[str, ...]) -> Any:
    if isinstance(node, dict):
        return {k: _strip(v, keys) for k, v in node.items() if k not in keys}
    if isinstance(node, list):
        return [_strip(v, keys) for v in node]
    return node


def test_what_the_sdk_needs_is_filled_in_where_left_out() -> None:
    """Ids, colours, ``required`` and option values the SDK indexes are chosen as its own builders
    choose them; feature hashes, names, labels and shapes stay as sent.  The result is what the SDK
    reads back (before: ``KeyError: 'color'``)."""
    from encord.objects import OntologyStructure

    sdk_doc = _rich_sdk_structure().to_dict()
    bare = _strip(sdk_doc, ("id", "color", "required", "value", "archived", "dynamic", "level"))
    with pytest.raises(KeyError):
        OntologyStructure.from_dict(bare)
    stored, index = ontology.prepare_new(bare)
    back = OntologyStructure.from_dict(stored)
    again = back.to_dict()
    # the SDK numbers its own nodes the same way: ids, values and hashes all agree
    assert _strip(again, ("color", "required", "archived", "dynamic", "level")) == \
        _strip(sdk_doc, ("color", "required", "archived", "dynamic", "level"))
    assert [o["color"] for o in stored["objects"]] == list(ontology_sdk.PALETTE[:2])
    assert stored["objects"][0]["attributes"][0]["options"][0]["value"] == "dark_red"
    assert stored["objects"][0]["attributes"][0]["required"] is False
    assert set(index.objects) == {o["featureNodeHash"] for o in sdk_doc["objects"]}
    assert "id" not in bare["objects"][0]  # the caller's document is not changed


def test_assigned_ids_follow_the_siblings_ids() -> None:
    from encord.objects import OntologyStructure

    doc = {"objects": [
        {"id": 7, "name": "a", "shape": "point", "featureNodeHash": "h1"},
        {"name": "b", "shape": "point", "featureNodeHash": "h2", "attributes": [
            {"id": "8.4", "name": "t", "type": "text", "featureNodeHash": "h3"},
            {"name": "u", "type": "radio", "featureNodeHash": "h4",
             "options": [{"label": "x", "featureNodeHash": "h5"}]}]},
        {"name": "c", "shape": "point", "featureNodeHash": "h6"}],
        "classifications": []}
    stored, _ = ontology.prepare_new(doc)
    assert [o["id"] for o in stored["objects"]] == [7, "8", "9"]
    assert [a["id"] for a in stored["objects"][1]["attributes"]] == ["8.4", "8.5"]
    assert stored["objects"][1]["attributes"][1]["options"][0]["id"] == "8.5.1"
    assert [o.uid for o in OntologyStructure.from_dict(stored).objects] == [7, 8, 9]


@pytest.mark.parametrize(("path", "value", "field"), [
    (("objects", 0, "name"), None, "objects[0].name"),
    (("objects", 0, "name"), 5, "objects[0].name"),
    (("objects", 0, "color"), ["red"], "objects[0].color"),
    (("objects", 0, "id"), "one", "objects[0].id"),
    (("objects", 0, "id"), True, "objects[0].id"),
    (("classifications", 0, "id"), 1.5, "classifications[0].id"),
    (("objects", 0, "attributes", 0, "id"), 1, "objects[0].attributes[0].id"),
    (("objects", 0, "attributes", 0, "id"), "1..1", "objects[0].attributes[0].id"),
    (("objects", 0, "attributes", 0, "name"), None, "objects[0].attributes[0].name"),
    (("objects", 0, "attributes", 0, "required"), "yes", "objects[0].attributes[0].required"),
    (("objects", 0, "attributes", 0, "options", 0, "label"), None, "objects[0].attributes[0].options[0].label"),
    (("objects", 0, "attributes", 0, "options", 0, "value"), 3, "objects[0].attributes[0].options[0].value"),
    (("objects", 0, "attributes", 0, "options", 0, "options", 0, "name"), None,
     "objects[0].attributes[0].options[0].options[0].name"),
    (("classifications", 0, "attributes", 0, "name"), None, "classifications[0].attributes[0].name"),
])
def test_what_the_sdk_cannot_read_and_corral_cannot_choose_is_refused(
    path: tuple[Any, ...], value: Any, field: str
) -> None:
    doc = copy.deepcopy(EDITOR)
    node: Any = doc
    for step in path[:-1]:
        node = node[step]
    if value is None:
        node.pop(path[-1], None)
    else:
        node[path[-1]] = value
    with pytest.raises(ValidationFailed) as info:
        ontology.prepare_new(doc)
    assert [d.field for d in info.value.details] == [field]
    assert field in str(info.value)


def test_a_stored_document_is_served_with_what_the_sdk_needs() -> None:
    """Ontologies stored before saves filled fields in are completed when served (and refused
    fields of the wrong kind are served as stored: the lenient form never raises)."""
    from encord.objects import OntologyStructure

    stored = _strip(_rich_sdk_structure().to_dict(), ("id", "color", "required", "value"))
    served, problems = ontology_sdk.complete(stored, strict=False)
    assert problems == [] and "color" not in stored["objects"][0]
    assert len(OntologyStructure.from_dict(served).objects) == 2
    odd = {"objects": [{"id": "x", "shape": "point", "featureNodeHash": "h"}], "classifications": []}
    assert ontology_sdk.complete(odd, strict=False) == ({"objects": [{"id": "x", "shape": "point",
                                                                      "featureNodeHash": "h",
                                                                      "color": ontology_sdk.PALETTE[0]}],
                                                         "classifications": []}, [])


def test_data_units_and_frames_must_belong_to_the_row() -> None:
    d = doc(GOOD[0])
    d["data_units"]["other"] = d["data_units"]["du"]
    assert "'other' is not a data unit of this label row" in refused(d)
    video = {"data_units": {"du": {"labels": {"3": {"objects": [GOOD[0]]}, "12": {"objects": []}}}},
             "object_answers": {}}
    assert "frame '12' is not a frame of this data unit" in refused(video, VIDEO)
    del video["data_units"]["du"]["labels"]["12"]
    assert validation.check(INDEX, video, VIDEO)["data_units"]["du"]["labels"]["3"]["objects"][0]["objectHash"] == "o1"


def test_ontology_documents_are_checked() -> None:
    bad = copy.deepcopy(EDITOR)
    bad["objects"][1]["featureNodeHash"] = "car00001"
    bad["objects"][2]["shape"] = "hexagon"
    bad["classifications"][0]["attributes"] = []
    bad["classifications"][1]["attributes"][0]["type"] = "slider"
    with pytest.raises(ValidationFailed) as info:
        ontology.read(bad)
    fields = {d.field for d in info.value.details}
    assert fields == {"objects[1].featureNodeHash", "objects[2].shape", "classifications[0].attributes",
                      "classifications[1].attributes[0].type"}
    assert "feature hash 'car00001' is used more than once" in info.value.message
    with pytest.raises(ValidationFailed):
        ontology.read([])
    assert set(INDEX.objects["car00001"].attributes) == {"colour01", "shade001"}


# -- documents the SDK could not read back (found by the hlab audit) ---------------------------------
# Each was stored, and every later initialise_labels() of the row raised in the SDK (a KeyError, a
# date ParserError, "Cannot overwrite existing data for a frame", ...), or was a 500.

def _video(labels: dict[str, Any]) -> dict[str, Any]:
    return {"data_units": {"du": {"labels": labels}}, "object_answers": {}, "classification_answers": {},
            "object_actions": {}}


@pytest.mark.parametrize("key", ["²", "٣", "01", "-1", " 1", "1.0", "", "9" * 5000])
@pytest.mark.parametrize("frames", [10, None])
def test_frame_keys_are_plain_decimal_numbers(key: str, frames: int | None) -> None:
    """'²' passed isdigit() and then int() raised (a 500), as did 5,000 digits (beyond int()'s
    limit) when the video's frame count is unknown; '٣' and '01' were stored beside '3' and '1',
    two keys the SDK reads as one frame ("Cannot overwrite existing data for a frame")."""
    target = validation.Target(frozenset({"du"}), per_frame=True, frames=frames)
    message = refused(_video({key: {"objects": []}}), target)
    assert f"data_units.du.labels.{key}: frame {key!r} is not a frame of this data unit" in message


def test_a_frame_without_its_objects_list_is_stored_with_an_empty_one() -> None:
    """The SDK reads frame_data["objects"] of every video frame: a KeyError on every later read."""
    stored = validation.check(INDEX, _video({"3": {"classifications": []}, "4": {}}), VIDEO)
    assert stored["data_units"]["du"]["labels"] == {"3": {"classifications": [], "objects": []}, "4": {"objects": []}}


def test_an_object_is_at_most_once_in_a_frame() -> None:
    message = refused(doc(GOOD[0], GOOD[0]))
    assert "data_units.du.labels.objects[1].objectHash: object 'o1' is twice in this frame" in message
    video = _video({"1": {"objects": [GOOD[0]]}, "2": {"objects": [GOOD[0]]}})  # one object on two frames
    assert validation.check(INDEX, video, VIDEO)["data_units"]["du"]["labels"]["2"]["objects"][0]["objectHash"] == "o1"


@pytest.mark.parametrize(("field", "value", "expected"), [
    ("createdAt", "not a date", "expected a time like"),
    ("createdAt", 5, "expected a time like"),
    ("lastEditedAt", "yesterday", "expected a time like"),
    ("createdBy", {"a": 1}, "expected an e-mail address"),
    ("lastEditedBy", 7, "expected an e-mail address"),
    ("confidence", "high", "must be a number between 0 and 1"),
    ("confidence", 2, "must be a number between 0 and 1"),
    ("manualAnnotation", "yes", "must be true or false"),
    ("event", "delete", "corral labels frames, not event-based scenes"),
    ("interpolate", True, "corral labels frames, not event-based scenes"),
])
def test_who_and_when_fields_must_be_what_the_sdk_reads(field: str, value: Any, expected: str) -> None:
    message = refused(doc({**GOOD[0], field: value}))
    assert f"data_units.du.labels.objects[0].{field}: {expected}" in message
    d = doc(GOOD[0])
    d["classification_answers"] = {"c1": {
        "featureHash": "count001", "classificationHash": "c1", field: value,
        "classifications": [{"featureHash": "countatt", "answers": 1}]}}
    if field not in ("event", "interpolate"):
        assert f"classification_answers.c1.{field}: {expected}" in refused(d)


def test_the_sdks_own_times_are_accepted() -> None:
    for when in ("Sun, 06 Dec 2026 22:31:14 UTC", "Thu, 01 May 2025 13:53:59 GMT", "2026-12-06 22:31:14",
                 "2026-12-06T22:31:14+00:00", "2026-12-06T22:31:14.123Z"):
        validation.check(INDEX, doc({**GOOD[0], "createdAt": when, "lastEditedAt": when}), IMAGE)


def test_answer_entries_repeat_their_hash_and_carry_their_lists() -> None:
    """The SDK reads answer["objectHash"], answer["classifications"], answer["actions"] and
    classification_answer["classificationHash"] (KeyErrors), and a mismatched objectHash hangs the
    answers, checked against one object's attributes, on another object."""
    d = doc(GOOD[0], GOOD[1])
    d["object_answers"]["o1"] = {"classifications": []}
    d["object_answers"]["o2"] = {"objectHash": "o1"}
    d["object_actions"] = {"o1": {"actions": []}, "o2": {"objectHash": "o2"}}
    d["classification_answers"] = {"c1": {"featureHash": "count001"}}
    message = refused(d)
    for expected in ("object_answers.o1.objectHash: must be 'o1', the key this entry is under, got None",
                     "object_answers.o2.objectHash: must be 'o2', the key this entry is under, got 'o1'",
                     "object_answers.o2.classifications: expected a list of answers",
                     "object_actions.o1.objectHash: must be 'o1'",
                     "object_actions.o2.actions: expected a list of answers",
                     "classification_answers.c1.classificationHash: must be 'c1'",
                     "classification_answers.c1.classifications: expected a list of answers"):
        assert expected in message


@pytest.mark.parametrize(("value", "target", "expected"), [
    ("x", IMAGE, "expected a list of [first, last] frame ranges"),
    ([[0]], IMAGE, "expected [first, last] frame numbers, got [0]"),
    ([["a", "b"]], IMAGE, "expected [first, last] frame numbers"),
    ([[0, True]], IMAGE, "expected [first, last] frame numbers"),
    ([[0, 1]], IMAGE, "[0, 1] is not a range of frames of 0..0"),
    ([[5, 2]], VIDEO, "[5, 2] is not a range of frames of 0..9"),
    ([[-3, 2]], VIDEO, "[-3, 2] is not a range of frames"),
    ([[0, 10]], VIDEO, "[0, 10] is not a range of frames of 0..9"),
])
def test_classification_ranges_are_frames_of_the_row(value: Any, target: validation.Target, expected: str) -> None:
    d = _video({}) if target is VIDEO else doc(GOOD[0])
    d["classification_answers"] = {"c1": {
        "featureHash": "count001", "classificationHash": "c1", "range": value,
        "classifications": [{"featureHash": "countatt", "answers": 1}]}}
    assert "classification_answers.c1.range" in refused(d, target)
    assert expected in refused(d, target)
    d["classification_answers"]["c1"]["range"] = [[0, 0], [2, 9]] if target is VIDEO else [[0, 0]]
    validation.check(INDEX, d, target)
    d["classification_answers"]["c1"]["spaces"] = {"s": {"type": "frame"}}
    assert "classification_answers.c1.spaces: corral's label rows have no spaces" in refused(d, target)


def test_a_point_is_point_0_and_a_bitmask_covers_its_image() -> None:
    """The SDK reads point["0"] (a KeyError for {"5": …}) and refuses to write back a bitmask whose
    size is not the image's ("Bitmask dimensions don't match the media dimensions")."""
    point = obj("kp000001", "point", "p", point={"5": {"x": 0.5, "y": 0.5}})
    assert "point: expected exactly one point" in refused(doc(GOOD[0], point))
    sized = validation.Target(frozenset({"du"}), per_frame=False, sizes={"du": (640, 480)})
    validation.check(INDEX, doc(GOOD[5]), sized)  # GOOD's images are 640x480
    wrong = validation.Target(frozenset({"du"}), per_frame=False, sizes={"du": (64, 48)})
    assert "labels.objects[0].bitmask: a bitmask covers the whole image, 64x48, got 640x480" in refused(doc(GOOD[5]), wrong)


@pytest.mark.parametrize(("change", "expected"), [
    ({"skeleton": [{"x": 0.1, "y": 0.2, "name": "head"}]}, "skeleton: expected the skeleton's points"),
    ({"name": None}, "objects[0].name: a skeleton object needs its name"),
    ({"skeleton": {"0": {"x": 0.1, "y": 0.2, "name": "h", "color": 5}}}, "skeleton.0.color: must be a string"),
    ({"skeleton": {"0": {"x": 0.1, "y": 0.2, "name": "h", "featureHash": 5}}}, "skeleton.0.featureHash: must be"),
    ({"skeleton": {"0": {"x": 0.1, "y": 0.2, "name": "h", "visibility": "bogus"}}}, "skeleton.0.visibility: must be"),
])
def test_a_skeleton_is_what_the_sdks_skeleton_coordinates_read(change: dict[str, Any], expected: str) -> None:
    """A list of points (the SDK reads skeleton.values()), no object name, or a point's colour,
    feature hash or visibility of the wrong type were stored, and every read of the row raised."""
    skeleton = {**GOOD[6], **change}
    assert expected in refused(doc(skeleton))
    fine = {**GOOD[6],
            "skeleton": {"0": {"x": 0.1, "y": 0.2, "name": "h", "visibility": "occluded", "color": "#fff"}}}
    validation.check(INDEX, doc(fine), IMAGE)


def test_a_dynamic_attributes_answers_carry_their_frames() -> None:
    """The SDK reads answer["range"] of every dynamic attribute's answer (a KeyError, or a TypeError
    for a malformed range, on every read of the row): it is required, frames of the row."""
    index = ontology.read({"objects": [
        {"id": "1", "name": "car", "shape": "bounding_box", "featureNodeHash": "car00001", "attributes": [
            {"id": "1.1", "name": "note", "type": "text", "featureNodeHash": "note0001", "dynamic": True}]}],
        "classifications": []})
    video = _video({"1": {"objects": [GOOD[0]]}})
    answer = {"featureHash": "note0001", "answers": "hi", "dynamic": True}
    for given, expected in ((answer, "range: dynamic attribute 'note' needs the frames of its answer"),
                            ({**answer, "range": None}, "range: dynamic attribute 'note' needs the frames"),
                            ({**answer, "range": [[0, 10]]}, "range[0]: [0, 10] is not a range of frames of 0..9"),
                            ({**answer, "range": [3]}, "range[0]: expected [first, last] frame numbers")):
        video["object_actions"] = {"o1": {"objectHash": "o1", "actions": [given]}}
        with pytest.raises(ValidationFailed) as info:
            validation.check(index, video, VIDEO)
        assert f"object_actions.o1.actions[0].{expected}" in info.value.message
    video["object_actions"] = {"o1": {"objectHash": "o1", "actions": [{**answer, "range": [[1, 1]]}]}}
    assert validation.check(index, video, VIDEO)["object_actions"]["o1"]["actions"][0]["range"] == [[1, 1]]


def test_a_classification_is_once_per_frame() -> None:
    """Two instances of one classification on the same frames were stored, and every read of the
    row raised in the SDK ("A ClassificationInstance … was already added and has overlapping
    frames"); on other frames, or other classifications on the same frames, are fine."""
    def answer(ch: str, feature: str, attribute: str, value: Any, frames: list[list[int]]) -> dict[str, Any]:
        return {"featureHash": feature, "classificationHash": ch, "range": frames,
                "classifications": [{"featureHash": attribute, "answers": value}]}

    d = _video({})
    d["classification_answers"] = {
        "c1": answer("c1", "count001", "countatt", 1, [[0, 5]]),
        "c2": answer("c2", "count001", "countatt", 2, [[7, 8], [3, 4]]),
        "c3": answer("c3", "tags0001", "tagsattr", [], [[0, 9]]),
    }
    message = refused(d, VIDEO)
    assert "classification_answers.c2.range: classification 'count' is on frames 3-4 twice (also instance 'c1')" in message
    d["classification_answers"]["c2"]["range"] = [[7, 8], [6, 6]]
    validation.check(INDEX, d, VIDEO)
    image = doc(GOOD[0])
    image["classification_answers"] = {"c1": answer("c1", "count001", "countatt", 1, [[0, 0]]),
                                       "c2": answer("c2", "count001", "countatt", 2, [[0, 0]])}
    assert "classification_answers.c2.range: classification 'count' is on frames 0-0 twice" in refused(image)


@pytest.mark.parametrize(("number", "expected"), [
    ("7", "must be a non-negative integer, got '7'"),
    (-1, "must be a non-negative integer, got -1"),
    (True, "must be a non-negative integer, got True"),
    (1.5, "must be a non-negative integer, got 1.5"),
])
def test_an_object_number_is_what_the_sdk_reads(number: Any, expected: str) -> None:
    """The SDK compares objectNumber with 0 when it reads a row (a TypeError for "7", a
    LabelRowError for -1): every read of the row failed."""
    d = doc(*copy.deepcopy(GOOD[:2]))
    d["object_answers"]["o1"]["objectNumber"] = number
    assert f"object_answers.o1.objectNumber: {expected}" in refused(d)
    d["object_answers"]["o1"]["objectNumber"] = 0
    validation.check(INDEX, d, IMAGE)


def test_two_objects_of_one_feature_have_two_numbers() -> None:
    """The SDK refuses to save a row where two objects of a feature claim one number."""
    cars = [obj("car00001", "bounding_box", oh, boundingBox={"x": 0.1, "y": 0.1, "w": 0.2, "h": 0.2})
            for oh in ("k1", "k2")]
    d = doc(*cars, GOOD[1])
    for oh in ("k1", "k2", "o2"):
        d["object_answers"][oh]["objectNumber"] = 1
    message = refused(d)
    assert "object_answers.k2.objectNumber: object 'car' number 1 is also the number of object 'k1'" in message
    assert "o2.objectNumber" not in message
    d["object_answers"]["k2"]["objectNumber"] = 2
    validation.check(INDEX, d, IMAGE)  # the road's number 1 is its own


def test_a_video_frame_has_no_metadata() -> None:
    """The SDK reads a video frame's metadata as a DICOM slice's: every read of the row failed."""
    video = _video({"1": {"objects": [GOOD[0]], "metadata": {"a": 1}}})
    video["object_answers"] = {"o1": {"objectHash": "o1", "classifications": []}}
    assert "labels.1.metadata: frame metadata is a DICOM slice's" in refused(video, VIDEO)
    video["data_units"]["du"]["labels"]["1"]["metadata"] = None
    validation.check(INDEX, video, VIDEO)


@pytest.mark.parametrize("frames", [None, []])
def test_a_classification_answer_has_its_frames(frames: Any) -> None:
    """The SDK places a classification by its range alone: one without was stored, and the SDK
    read the row without it (and its next save dropped it)."""
    d = doc(GOOD[0])
    d["classification_answers"] = {"c1": {"featureHash": "count001", "classificationHash": "c1", "range": frames,
                                          "classifications": [{"featureHash": "countatt", "answers": 1}]}}
    assert "classification_answers.c1.range: the frames of the classification" in refused(d)


def _rle(pixels: int) -> str:
    from encord.common.bitmask_operations import serialise_bitmask

    return str(serialise_bitmask(bytes([0, 1] * (pixels // 2) + [0] * (pixels % 2))))


@pytest.mark.parametrize(("rle", "expected"), [
    ("!!!garbage", "character 0 ('!') is not one of an RLE string's ('0' to 'o')"),
    ("0p", "character 1 ('p') is not"),
    ("@", "run 0 has a negative length"),
    (_rle(640 * 480 + 1), "its runs cover 307,201 pixels, more than the mask's 307,200"),
])
def test_a_bitmask_is_a_mask_the_sdk_can_decode(rle: str, expected: str) -> None:
    """A garbled rleString was stored, and the SDK's decoder raised an IndexError on the mask
    (to_numpy_array) for good."""
    mask = {**GOOD[5], "bitmask": {"top": 0, "left": 0, "width": 640, "height": 480, "rleString": rle}}
    assert f"objects[0].bitmask.rleString: not a mask the SDK can decode: {expected}" in refused(doc(mask))
    mask["bitmask"]["rleString"] = _rle(640 * 480)
    validation.check(INDEX, doc(mask), IMAGE)


def test_a_polygon_of_the_multi_polygon_form_has_a_contour() -> None:
    """The SDK reads polygons[0][0]: an empty polygon raised an IndexError on every read of the row."""
    road = {**GOOD[1], "polygons": [[]]}
    assert "objects[0].polygons[0]: a polygon is a list of at least one contour" in refused(doc(road))
