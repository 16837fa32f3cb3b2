"""Project-level ("Active") collections and filter presets with the unmodified Encord SDK against a
live corral server: created, listed, filled and read back; each hostile input a 4xx naming its
field; another organisation's project a 404; a member's role decides who may change them."""

from __future__ import annotations

import time
import uuid
from typing import Any

import pytest
from sqlalchemy import func, select

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
    gone = made.remove_items([items[1], items[2], items[0]])
    assert [(f.annotation_id, f.frame) for f in gone.failed_items] == [("nope", 0)]
    assert list(made.list_annotations()) == []


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
    # another project's collection is not this project's
    from tests.compat.labels_fixtures import image_dataset

    second_data, _ = image_dataset(labels_world.db, labels_world.user, ["z.jpg"], title="second")
    owner = labels_world.client()
    second = owner.get_project(owner.create_project(project_title="second", dataset_hashes=[str(second_data)],
                                                    ontology_hash=project.ontology_hash))
    with pytest.raises(AuthorisationError):
        second.get_collection(made.uuid)
    with pytest.raises(EncordException):
        second.delete_collection(made.uuid)
    assert [c.name for c in project.list_collections(collection_uuids=[made.uuid])] == ["mine"]
    # a viewer of the project sees them and makes none
    from corral.core.labels import projects

    watcher = make_user("wat@a.io", role="member")
    with labels_world.db.write() as s:
        projects.add_users(s, principal(labels_world.db, labels_world.user), project.project_hash,
                           [watcher.email], "viewer")
    watching = labels_world.client(watcher).get_project(project.project_hash)
    assert sorted(c.name for c in watching.list_collections()) == ["mine", "still theirs"]
    with pytest.raises(EncordException, match="viewer"):
        watching.create_collection("no", collection_type=ProjectCollectionType.FRAME)


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


def test_the_native_api_shares_them(labels_world: LabelsWorld, make_user: Any) -> None:
    """What the SDK makes the native API reads and changes, by the same rules, and back."""
    import httpx
    from encord.orm.collection import ProjectCollectionType

    _, project, row = _labelled(labels_world)
    objects = [o.object_hash for o in row.get_object_instances()]
    base = f"/api/v1/projects/{project.project_hash}"
    with httpx.Client(base_url=labels_world.server, headers=labels_world.user.bearer, timeout=60) as api:
        made = api.post(f"{base}/collections", json={"name": "cars", "collection_type": "LABEL"},
                        headers={"Idempotency-Key": "k1"})
        assert made.status_code == 201, made.text
        again = api.post(f"{base}/collections", json={"name": "cars", "collection_type": "LABEL"},
                         headers={"Idempotency-Key": "k1"})
        assert again.json()["id"] == made.json()["id"]
        cid = made.json()["id"]
        added = api.post(f"{base}/collections/{cid}/items", json={"items": [
            {"data_hash": row.data_hash, "frame": 0, "annotation_id": objects[0]},
            {"data_hash": row.data_hash, "frame": 0, "annotation_id": "gone"}]})
        assert added.status_code == 200, added.text
        assert added.json()["changed"] == 1
        assert [(f["index"], f["item"]["annotation_id"]) for f in added.json()["failed_items"]] == [(1, "gone")]
        assert "not on frame 0" in added.json()["failed_items"][0]["reason"]
        bad = api.post(f"{base}/collections/{cid}/items", json={"items": [{"data_hash": row.data_hash,
                                                                          "frame": -2, "annotation_id": "x"}]})
        assert bad.status_code == 400 and "items[0].frame" in bad.text
        bad = api.post(f"{base}/collections", json={"name": "x", "collection_type": "BOTH"})
        assert bad.status_code == 400 and "collection_type" in bad.text
        listed = api.get(f"{base}/collections").json()["collections"]
        assert [(c["name"], c["collection_type"], c["entries"]) for c in listed] == [("cars", "LABEL", 1)]
        items = api.get(f"{base}/collections/{cid}/items").json()["data_units"]
        assert items == [{"data_hash": row.data_hash, "data_title": "a.jpg", "frames": [],
                          "annotations": [{"frame": 0, "annotation_id": objects[0]}]}]
        # the SDK sees what the native API made
        sdk_view = project.get_collection(cid)
        assert sdk_view.collection_type == ProjectCollectionType.LABEL
        assert [i.annotation_id for _, inst in sdk_view.list_annotations() for i in inst] == [objects[0]]
        # presets: the document as given, its unsupported parts named
        doc = {"globalFilters": {"filters": [{"key": "camera", "include": True, "values": ["x"], "type": "varchar"},
                                             {"odd": 1}]}}
        preset = api.post(f"{base}/presets", json={"name": "p", "description": "d", "document": doc})
        assert preset.status_code == 201, preset.text
        body = preset.json()
        assert body["document"] == doc and body["description"] == "d"
        assert len(body["unsupported"]) == 1 and "globalFilters.filters[1]" in body["unsupported"][0]
        assert [p.name for p in project.list_filter_presets()] == ["p"]
        # a project's presets and collections are not the organisation's Index ones
        assert api.get("/api/v1/index/presets").json()["presets"] == []
        assert api.get("/api/v1/index/collections").json()["collections"] == []
        assert api.get(f"/api/v1/index/collections/{cid}").status_code == 404
        assert api.get(f"/api/v1/index/presets/{body['id']}").status_code == 404
        assert api.delete(f"{base}/presets/{body['id']}").status_code == 204
        assert api.delete(f"{base}/collections/{cid}").status_code == 204
        assert api.get(f"{base}/collections/{cid}").status_code == 404
    outsider = make_user("mallory@c.io", org="Org C")
    with httpx.Client(base_url=labels_world.server, headers=outsider.bearer, timeout=60) as theirs:
        assert theirs.get(f"{base}/collections").status_code == 404
        assert theirs.post(f"{base}/presets", json={"name": "p", "document": {}}).status_code == 404


def test_the_cli_lists_and_makes_them(labels_world: LabelsWorld, monkeypatch: Any, tmp_path: Any) -> None:
    import json

    from click.testing import CliRunner
    from encord.orm.collection import ProjectDataCollectionItemRequest as Frame

    from corral.cli import cli

    _, project, row = _labelled(labels_world)
    monkeypatch.setenv("CORRAL_CONFIG_DIR", str(tmp_path / "config"))
    monkeypatch.delenv("CORRAL_PROFILE", raising=False)
    env = {"CORRAL_URL": labels_world.server, "CORRAL_TOKEN": labels_world.user.token}
    runner = CliRunner()
    r = runner.invoke(cli, ["project", "collection-create", project.project_hash, "picks", "--json"], env=env)
    assert r.exit_code == 0, r.output
    made = json.loads(r.output)
    assert made["collection_type"] == "FRAME"
    project.get_collection(made["id"]).add_items([Frame(data_uuid=row.data_hash, frame=0)])
    r = runner.invoke(cli, ["project", "collections", project.project_hash], env=env)
    assert r.exit_code == 0 and "picks" in r.output and "FRAME" in r.output, r.output
    r = runner.invoke(cli, ["project", "collection-items", project.project_hash, made["id"]], env=env)
    assert r.exit_code == 0 and "a.jpg" in r.output, r.output
    r = runner.invoke(cli, ["project", "collection-create", project.project_hash, "x", "--type", "BOTH"], env=env)
    assert r.exit_code == 2 and "BOTH" in r.output


def test_a_dataset_taken_out_takes_its_entries(labels_world: LabelsWorld) -> None:
    from encord.orm.collection import ProjectCollectionType
    from encord.orm.collection import ProjectDataCollectionItemRequest as Frame

    from corral.core.labels import projects
    from corral.db.tables import ProjectCollectionItem
    from tests.compat.labels_fixtures import image_dataset

    _, project, row = _labelled(labels_world)
    db = labels_world.db
    who = principal(db, labels_world.user)
    extra, _ = image_dataset(db, labels_world.user, ["c.jpg"], title="extra")
    with db.write() as s:
        projects.add_datasets(s, who, project.project_hash, [str(extra)])
    c_hash = next(r.data_hash for r in project.list_label_rows_v2() if r.data_title == "c.jpg")
    frames = project.create_collection("f", collection_type=ProjectCollectionType.FRAME)
    assert frames.add_items([Frame(data_uuid=c_hash, frame=0), Frame(data_uuid=row.data_hash, frame=0)]
                            ).failed_items == []
    with db.write() as s:
        projects.remove_datasets(s, who, project.project_hash, [str(extra)])
    assert [r.data_title for r, _ in frames.list_frames()] == ["a.jpg"]
    with db.read() as s:
        assert s.scalar(select(func.count()).select_from(ProjectCollectionItem)) == 1
    with db.write() as s:  # back again, it starts empty (as its tasks do)
        projects.add_datasets(s, who, project.project_hash, [str(extra)])
    assert [r.data_title for r, _ in frames.list_frames()] == ["a.jpg"]


def test_an_annotation_deleted_leaves_label_collections(labels_world: LabelsWorld) -> None:
    from encord.orm.collection import ProjectCollectionType
    from encord.orm.collection import ProjectDataCollectionItemRequest as Frame
    from encord.orm.collection import ProjectLabelCollectionItemRequest as Label

    from corral.db.tables import ProjectCollectionItem

    _, project, row = _labelled(labels_world)
    objects = row.get_object_instances()
    classes = [c.classification_hash for c in row.get_classification_instances()]
    assert objects and classes
    made = project.create_collection("cars", collection_type=ProjectCollectionType.LABEL)
    frames = project.create_collection("frames", collection_type=ProjectCollectionType.FRAME)
    assert made.add_items([Label(data_uuid=row.data_hash, frame=0, annotation_id=a)
                           for a in [o.object_hash for o in objects] + classes]).failed_items == []
    assert frames.add_items([Frame(data_uuid=row.data_hash, frame=0)]).failed_items == []
    row.remove_object(objects[0])
    row.save()
    kept = sorted(i.annotation_id for _, inst in made.list_annotations() for i in inst)
    assert kept == sorted([o.object_hash for o in objects[1:]] + classes)
    assert [i.frame for _, inst in frames.list_frames() for i in inst] == [0]  # frames stay
    with labels_world.db.read() as s:  # taken out of the table, not only from the listing
        held = set(s.scalars(select(ProjectCollectionItem.annotation_id)))
    assert objects[0].object_hash not in held and set(kept) <= held
    row.save()  # a save that changes nothing takes nothing out
    assert sorted(i.annotation_id for _, inst in made.list_annotations() for i in inst) == kept
