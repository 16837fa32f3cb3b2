"""Project-level ("Active") collections and filter presets with the unmodified Encord SDK against a
live corral server: created, listed, filled and read back; each hostile input a 4xx naming its
field; another organisation's project a 404; a member's role decides who may change them."""

from __future__ import annotations

import time
import uuid
from typing import Any

import pytest
from sqlalchemy import select

from corral.db.engine import Database
from corral.db.tables import Item
from tests.compat.labels_fixtures import LabelsWorld, principal
from tests.compat.test_labels import first_row, label, make_project
from tests.index.world import save_schema


@pytest.fixture
def labels_world(server: str, make_user: Any, db: Database) -> LabelsWorld:
    return LabelsWorld(server, make_user("labeller@a.io"), db)  # a server that runs jobs


def _labelled(world: LabelsWorld) -> tuple[Any, Any, Any]:
    """A project of two images, a.jpg labelled (objects and classifications) and saved."""
    client, project = make_project(world)
    row = first_row(project)
    row.initialise_labels()
    label(row, project)
    row.save()
    again = first_row(project)
    again.initialise_labels()
    return client, project, again


def test_frame_collection_round_trip(labels_world: LabelsWorld) -> None:
    from encord.orm.collection import ProjectCollectionType
    from encord.orm.collection import ProjectDataCollectionItemRequest as Frame

    _, project, _ = _labelled(labels_world)
    rows = {r.data_title: r for r in project.list_label_rows_v2()}
    a, b = rows["a.jpg"].data_hash, rows["b.jpg"].data_hash
    made = project.create_collection("hard frames", "to review", ProjectCollectionType.FRAME)
    assert (made.name, made.description, made.collection_type) == ("hard frames", "to review",
                                                                    ProjectCollectionType.FRAME)
    assert str(made.project_hash) == project.project_hash
    missing = str(uuid.uuid4())
    done = made.add_items([Frame(data_uuid=a, frame=0), Frame(data_uuid=b, frame=0),
                           Frame(data_uuid=a, frame=3), Frame(data_uuid=missing, frame=0)])
    assert [(str(f.data_uuid), f.frame) for f in done.failed_items] == [(a, 3), (missing, 0)]
    listed = list(made.list_frames())
    assert sorted((r.data_title, [i.frame for i in inst]) for r, inst in listed) == [
        ("a.jpg", [0]), ("b.jpg", [0])]
    again = project.get_collection(made.uuid)
    assert (again.name, again.collection_type) == ("hard frames", ProjectCollectionType.FRAME)
    again.update_collection(name="renamed")
    assert [c.name for c in project.list_collections()] == ["renamed"]
    assert [c.name for c in project.list_collections(collection_uuids=[made.uuid])] == ["renamed"]
    gone = made.remove_items([Frame(data_uuid=b, frame=0), Frame(data_uuid=b, frame=0)])
    assert [(str(f.data_uuid), f.frame) for f in gone.failed_items] == [(b, 0)]  # the second: not in it
    assert [r.data_title for r, _ in made.list_frames()] == ["a.jpg"]
    project.delete_collection(made.uuid)
    assert list(project.list_collections()) == []


def test_label_collection_checks_annotations(labels_world: LabelsWorld) -> None:
    from encord.orm.collection import ProjectCollectionType
    from encord.orm.collection import ProjectLabelCollectionItemRequest as Label

    _, project, row = _labelled(labels_world)
    objects = [o.object_hash for o in row.get_object_instances()]
    classes = [c.classification_hash for c in row.get_classification_instances()]
    assert objects and classes
    made = project.create_collection("cars", collection_type=ProjectCollectionType.LABEL)
    items = [Label(data_uuid=row.data_hash, frame=0, annotation_id=objects[0]),
             Label(data_uuid=row.data_hash, frame=0, annotation_id=classes[0]),
             Label(data_uuid=row.data_hash, frame=0, annotation_id="nope"),
             Label(data_uuid=row.data_hash, frame=1, annotation_id=objects[0])]
    done = made.add_items(items)
    assert [(f.annotation_id, f.frame) for f in done.failed_items] == [("nope", 0), (objects[0], 1)]
    listed = list(made.list_annotations())
    assert len(listed) == 1
    got = sorted((i.frame, i.annotation_id) for i in listed[0][1])
    assert got == sorted([(0, objects[0]), (0, classes[0])])
    assert listed[0][0].data_hash == row.data_hash


def test_presets_round_trip_byte_for_byte(labels_world: LabelsWorld) -> None:
    import requests
    from encord.orm.filter_preset import ActiveFilterPresetDefinition, FilterDefinition

    client, project, _ = _labelled(labels_world)
    definition = ActiveFilterPresetDefinition(
        global_filters=FilterDefinition(filters=[{"key": "camera", "include": True, "values": ["front"],
                                                  "type": "varchar"}, {"encordOnly": {"x": [1, 2.50]}}]))
    made = project.create_filter_preset("front camera", definition)
    assert made.name == "front camera"
    raw = made.get_filter_preset_json()
    assert raw.global_filters.filters == definition.global_filters.filters
    assert [p.name for p in project.list_filter_presets()] == ["front camera"]
    assert [p.uuid for p in project.list_filter_presets(filter_preset_uuids=[made.uuid])] == [made.uuid]
    made.update_preset(name="renamed", filter_preset=ActiveFilterPresetDefinition(
        global_filters=FilterDefinition(filters=[{"key": "k", "include": False, "values": [1], "type": "number"}])))
    again = project.get_filter_preset(made.uuid)
    assert again.name == "renamed"
    assert again.get_filter_preset_json().global_filters.filters[0]["key"] == "k"
    # the text as sent comes back exactly
    api = client._api_client
    sent = '{"name": "spaced",  "filterPresetJson": {"globalFilters": {"filters": [{"a": 1.50}]}}}'
    req = requests.Request("POST", api._build_url(f"active/{project.project_hash}/presets"), data=sent,
                           headers={"Content-Type": "application/json"}).prepare()
    new_id = api._request(req, result_type=uuid.UUID)
    raw_req = requests.Request("GET", api._build_url(f"active/{project.project_hash}/presets/{new_id}/raw")).prepare()
    signed = api._config.define_headers_v2(raw_req)
    body = requests.Session().send(signed).text
    assert body == '{"globalFilters": {"filters": [{"a": 1.50}]}}'
    project.delete_filter_preset(made.uuid)
    assert [str(p.uuid) for p in project.list_filter_presets()] == [str(new_id)]


def test_hostile_inputs_name_the_field(labels_world: LabelsWorld) -> None:
    import httpx

    _, project, row = _labelled(labels_world)
    from encord.orm.collection import ProjectCollectionType

    frames = project.create_collection("f", collection_type=ProjectCollectionType.FRAME)
    labels = project.create_collection("l", collection_type=ProjectCollectionType.LABEL)
    base = f"/v2/public/active/{project.project_hash}"
    cases = [
        ("POST", f"{base}/collections", {"name": "x", "collectionType": "VIDEO"}, "collectionType"),
        ("POST", f"{base}/collections/{frames.uuid}/add-items", {"items": [{"dataUuid": "zzz", "frame": 0}]},
         "items[0].dataUuid"),
        ("POST", f"{base}/collections/{frames.uuid}/add-items",
         {"items": [{"dataUuid": row.data_hash, "frame": 0}, {"dataUuid": row.data_hash, "frame": -1}]},
         "items[1].frame"),
        ("POST", f"{base}/collections/{frames.uuid}/add-items",
         {"items": [{"dataUuid": row.data_hash, "frame": 0}] * 10_001}, "items"),
        ("POST", f"{base}/collections/{labels.uuid}/add-items",
         {"items": [{"dataUuid": row.data_hash, "frame": 0}]}, "items[0].annotationId"),
        ("POST", f"{base}/collections/{frames.uuid}/add-items",
         {"items": [{"dataUuid": row.data_hash, "frame": 0, "annotationId": "a"}]}, "items[0].annotationId"),
        ("POST", f"{base}/presets", {"name": "p", "filterPresetJson": [1]}, "filterPresetJson"),
        ("GET", f"{base}/collections/{frames.uuid}/items?getLabels=true", None, "getLabels"),
    ]
    client = labels_world.client()
    for method, path, body, field in cases:
        headers = _signed(client, method, path, body)
        r = httpx.request(method, labels_world.server + path, headers=headers,
                          content=None if body is None else __import__("json").dumps(body))
        assert 400 <= r.status_code < 500, (path, r.status_code, r.text)
        if field is not None:
            assert field in r.text, (path, r.text)
    # nothing was half-written
    assert list(frames.list_frames()) == []


def _signed(client: Any, method: str, path: str, body: Any) -> dict[str, str]:
    import json

    import requests

    req = requests.Request(method, client._api_client._domain + path,
                           data=None if body is None else json.dumps(body),
                           headers={"Content-Type": "application/json"}).prepare()
    return dict(client._api_client._config.define_headers_v2(req).headers)


def test_other_organisations_and_roles(labels_world: LabelsWorld, make_user: Any) -> None:
    from encord.exceptions import AuthorisationError, EncordException
    from encord.orm.collection import ProjectCollectionType
    from encord.utilities.project_user import ProjectUserRole

    _, project, _ = _labelled(labels_world)
    made = project.create_collection("mine", collection_type=ProjectCollectionType.FRAME)
    outsider = make_user("eve@b.io", org="Org B")
    other = labels_world.client(outsider)
    with pytest.raises(EncordException):
        other.get_project(project.project_hash)
    # the raw calls, as another organisation: a 404 (the SDK's ResourceNotFound / Authorisation)
    import httpx

    for method, path in (("GET", f"/v2/public/active/{project.project_hash}/collections"),
                         ("GET", f"/v2/public/active/{project.project_hash}/presets"),
                         ("DELETE", f"/v2/public/active/{project.project_hash}/collections/{made.uuid}")):
        r = httpx.request(method, labels_world.server + path, headers=_signed(other, method, path, None))
        assert r.status_code == 404, (path, r.text)
    # a viewer of the project sees the collection but cannot change it, nor create one
    viewer = make_user("vic@a.io", role="member")
    project.add_users([viewer.email], ProjectUserRole.ANNOTATOR)
    seen = labels_world.client(viewer).get_project(project.project_hash)
    theirs = seen.get_collection(made.uuid)
    assert theirs.name == "mine"
    with pytest.raises(EncordException):
        theirs.update_collection(name="taken")
    own = seen.create_collection("theirs", collection_type=ProjectCollectionType.FRAME)
    own.update_collection(name="still theirs")
    assert sorted(c.name for c in project.list_collections()) == ["mine", "still theirs"]
    with pytest.raises(AuthorisationError):
        project.get_collection(uuid.uuid4())


def test_a_retried_create_makes_one_collection(labels_world: LabelsWorld) -> None:
    import json

    import httpx

    _, project, _ = _labelled(labels_world)
    client = labels_world.client()
    path = f"/v2/public/active/{project.project_hash}/collections"
    body = {"name": "once", "collectionType": "FRAME"}
    headers = _signed(client, "POST", path, body) | {"X-Cloud-Trace-Context": "abc/1;o=1"}
    first = httpx.post(labels_world.server + path, headers=headers, content=json.dumps(body))
    second = httpx.post(labels_world.server + path, headers=headers, content=json.dumps(body))
    assert first.status_code == second.status_code == 200
    assert first.json() == second.json()
    assert [c.name for c in project.list_collections()] == ["once"]


def _poll(read: Any, want: Any) -> Any:
    for _ in range(300):
        got = read()
        if got == want:
            return got
        time.sleep(0.1)
    raise AssertionError(got)


def test_preset_items_are_a_job(labels_world: LabelsWorld) -> None:
    from encord.exceptions import EncordException
    from encord.orm.collection import ProjectCollectionType
    from encord.orm.filter_preset import ActiveFilterPresetDefinition, FilterDefinition

    _, project, row = _labelled(labels_world)
    db = labels_world.db
    who = principal(db, labels_world.user)
    with db.write() as s:
        for item in s.scalars(select(Item).where(Item.org_id == who.org_id)):
            item.client_metadata = {"camera": "front" if item.name == "a.jpg" else "back"}
    save_schema(db, who, {"keys": {"camera": {"type": "varchar"}}})
    front = project.create_filter_preset("front", ActiveFilterPresetDefinition(global_filters=FilterDefinition(
        filters=[{"key": "camera", "include": True, "values": ["front"], "type": "varchar"}])))
    frames = project.create_collection("f", collection_type=ProjectCollectionType.FRAME)
    labels = project.create_collection("l", collection_type=ProjectCollectionType.LABEL)
    frames.add_preset_items(front.uuid)  # (the SDK takes an Index FilterPreset, not a project one)
    labels.add_preset_items(str(front.uuid))

    def frame_list() -> list[tuple[str, list[int]]]:
        return sorted((r.data_title, [i.frame for i in inst]) for r, inst in frames.list_frames())

    def label_list() -> set[str]:
        return {i.annotation_id for _, inst in labels.list_annotations() for i in inst}

    _poll(frame_list, [("a.jpg", [0])])
    annotations = {o.object_hash for o in row.get_object_instances()} | {
        c.classification_hash for c in row.get_classification_instances()}
    _poll(label_list, annotations)
    frames.remove_preset_items(front.uuid)
    _poll(frame_list, [])
    # a preset corral cannot read is refused when used, naming what it does not support
    odd = project.create_filter_preset("odd", ActiveFilterPresetDefinition(global_filters=FilterDefinition(
        filters=[{"encordOnly": 1}])))
    with pytest.raises(EncordException, match="does not support"):
        frames.add_preset_items(odd.uuid)
    other = labels_world.client().get_project(project.project_hash)
    with pytest.raises(EncordException):  # a preset of no project of this one: 404
        other.get_collection(frames.uuid).add_preset_items(uuid.uuid4())
