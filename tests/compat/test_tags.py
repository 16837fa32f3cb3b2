"""Organisation tags through the unmodified Encord SDK: list, create and delete them
(organisation admins), attach them to projects (the project's admins) and filter projects and
folders by them (``list_projects(tags_anyof=…)``, ``list_storage_folders(organisation_tags_allof=…)``),
with another organisation's tags a 404; and the native API's and CLI's equivalents."""

from __future__ import annotations

import json
import uuid
from typing import Any

import httpx
import pytest
from encord.exceptions import (
    AuthorisationError,
    InvalidArgumentsError,
    ResourceExistsError,
    ResourceNotFoundError,
)
from encord.utilities.project_user import ProjectUserRole

from tests.compat.conftest import Bucket, client_for
from tests.compat.test_workflow import _project


def _names(tags: Any) -> list[str]:
    return [t.name for t in tags]


def test_organisation_tags_on_projects(sdk: Any, s3: Bucket, make_user: Any, server: str,
                                       api: httpx.Client) -> None:
    assert sdk.list_organisation_tags() == []
    urgent = sdk.create_organisation_tag("urgent", description="do first")
    review = sdk.create_organisation_tag("  review  ")  # trimmed, as names are
    assert (urgent.name, review.name) == ("urgent", "review")
    assert _names(sdk.list_organisation_tags()) == ["review", "urgent"]
    with pytest.raises(ResourceExistsError):
        sdk.create_organisation_tag("urgent")
    for bad in ("", "x" * 101, "a\x00b"):
        with pytest.raises(InvalidArgumentsError, match="name"):
            sdk.create_organisation_tag(bad)

    project = _project(sdk, s3)
    other = sdk.get_project(sdk.create_project("other", [str(project.list_datasets()[0].dataset_hash)],
                                               ontology_hash=project.ontology_hash))
    assert project.get_organisation_tags() == []
    project.add_organisation_tag(urgent)
    project.add_organisation_tag(urgent)  # already attached: nothing changes
    project.add_organisation_tag(tag_name="review")
    assert _names(project.get_organisation_tags(use_cache=False)) == ["review", "urgent"]
    other.add_organisation_tag(tag_uuid=review.uuid)
    assert [p.title for p in sdk.list_projects(tags_anyof=["urgent"])] == ["wf"]
    assert [p.title for p in sdk.list_projects(tags_anyof=[review])] == ["wf", "other"]
    assert list(sdk.list_projects(tags_anyof=["nope"])) == []  # no such tag: nothing carries it
    project.remove_organisation_tag(tag_name="review")
    project.remove_organisation_tag(tag_name="review")  # not attached: nothing changes
    assert _names(project.get_organisation_tags(use_cache=False)) == ["urgent"]

    # members: anyone sees the tags; creating and deleting them is an organisation admin's,
    # attaching them a project admin's (a team manager is refused)
    tm = make_user("tm@x.io", role="member")
    project.add_users(["tm@x.io"], ProjectUserRole.TEAM_MANAGER)
    as_tm = client_for(tm, server)
    assert _names(as_tm.list_organisation_tags()) == ["review", "urgent"]
    assert _names(as_tm.get_project(project.project_hash).get_organisation_tags()) == ["urgent"]
    with pytest.raises(AuthorisationError):
        as_tm.create_organisation_tag("mine")
    with pytest.raises(AuthorisationError):
        as_tm.delete_organisation_tag(urgent)
    with pytest.raises(AuthorisationError):
        as_tm.get_project(project.project_hash).add_organisation_tag(review)

    # another organisation's tags and projects are not found, either way round
    eve = client_for(make_user("eve@y.io", org="Org B"), server)
    theirs = eve.create_organisation_tag("urgent")  # the same name in another organisation
    assert _names(eve.list_organisation_tags()) == ["urgent"] and theirs.uuid != urgent.uuid
    with pytest.raises(ResourceNotFoundError):
        project.add_organisation_tag(tag_uuid=theirs.uuid)
    with pytest.raises(ResourceNotFoundError):
        sdk.delete_organisation_tag(tag_uuid=theirs.uuid)
    with pytest.raises(ResourceNotFoundError):
        eve.delete_organisation_tag(tag_uuid=urgent.uuid)
    with pytest.raises(ResourceNotFoundError):
        eve._api_client.put(f"projects/{project.project_hash}/tags/{theirs.uuid}", params=None, payload=None)
    with pytest.raises(ResourceNotFoundError):
        sdk.delete_organisation_tag(tag_uuid=uuid.uuid4())
    assert _names(project.get_organisation_tags(use_cache=False)) == ["urgent"]

    # deleting a tag detaches it everywhere
    sdk.delete_organisation_tag(tag_name="urgent")
    assert _names(sdk.list_organisation_tags()) == ["review"]
    assert project.get_organisation_tags(use_cache=False) == []
    assert _names(eve.list_organisation_tags()) == ["urgent"]

    # the native API: the same tags and rules
    r = api.get("/api/v1/tags")
    assert [t["name"] for t in r.json()["tags"]] == ["review"]
    r = api.post("/api/v1/tags", json={"name": "native", "description": "d"})
    assert r.status_code == 201 and r.json()["name"] == "native"
    native = r.json()["id"]
    assert api.post("/api/v1/tags", json={"name": "native"}).status_code == 409
    assert api.post("/api/v1/tags", json={"name": "x", "colour": "red"}).status_code == 400
    r = api.put(f"/api/v1/projects/{project.project_hash}/tags/{native}")
    assert r.status_code == 200 and [t["name"] for t in r.json()["tags"]] == ["native"]
    assert _names(project.get_organisation_tags(use_cache=False)) == ["native"]
    r = api.put(f"/api/v1/projects/{project.project_hash}/tags/{theirs.uuid}")
    assert r.status_code == 404
    r = api.delete(f"/api/v1/projects/{project.project_hash}/tags/{native}")
    assert r.status_code == 200 and r.json()["tags"] == []
    assert api.delete(f"/api/v1/tags/{native}").status_code == 204
    assert api.delete(f"/api/v1/tags/{native}").status_code == 404


def test_folders_filtered_by_organisation_tags(sdk: Any, make_user: Any, server: str, api: httpx.Client,
                                               alice: Any, monkeypatch: Any, tmp_path: Any) -> None:
    from click.testing import CliRunner

    from corral.cli import cli

    monkeypatch.setenv("CORRAL_CONFIG_DIR", str(tmp_path / "config"))
    monkeypatch.delenv("CORRAL_PROFILE", raising=False)

    def live_cli(*args: str) -> Any:
        return CliRunner().invoke(cli, list(args), env={"CORRAL_URL": server, "CORRAL_TOKEN": alice.token})

    cats = sdk.create_storage_folder("cats")
    dogs = sdk.create_storage_folder("dogs")
    sub = sdk.create_storage_folder("kittens", parent_folder=cats.uuid)
    a = sdk.create_organisation_tag("a")
    b = sdk.create_organisation_tag("b")
    for folder, tag in ((cats, a), (cats, b), (dogs, a), (sub, b)):
        r = api.put(f"/api/v1/folders/{folder.uuid}/tags/{tag.uuid}")
        assert r.status_code == 200, r.text
    assert [t["name"] for t in api.get(f"/api/v1/folders/{cats.uuid}/tags").json()["tags"]] == ["a", "b"]

    def names(folders: Any) -> list[str]:
        return sorted(f.name for f in folders)

    assert names(sdk.list_storage_folders()) == ["cats", "dogs"]
    assert names(sdk.list_storage_folders(organisation_tags_allof=["a"])) == ["cats", "dogs"]
    assert names(sdk.list_storage_folders(organisation_tags_allof=["a", b])) == ["cats"]
    assert names(sdk.find_storage_folders(organisation_tags_allof=["b"])) == ["cats", "kittens"]
    assert names(cats.list_subfolders(organisation_tags_allof=["b"])) == ["kittens"]
    assert names(cats.list_subfolders(organisation_tags_allof=["a"])) == []
    from encord.orm.project import OrganisationTag

    many = [OrganisationTag(uuid=uuid.uuid4(), name=f"t{i}") for i in range(101)]  # not checked by the SDK
    with pytest.raises(InvalidArgumentsError, match="organisationTagNamesAllof: at most 100"):
        list(sdk.list_storage_folders(organisation_tags_allof=many))
    with pytest.raises(InvalidArgumentsError, match="tagsAnyof"):
        list(sdk.list_projects(tags_anyof=[OrganisationTag(uuid=uuid.uuid4(), name="x" * 101)]))

    # folder tags are set by the folder's editors: a viewer is refused, another organisation's
    # member does not find the folder
    viewer = make_user("v@x.io", role="member")
    r = api.post(f"/api/v1/folders/{dogs.uuid}/grants", json={"user": "v@x.io", "role": "viewer"})
    assert r.status_code in (200, 201), r.text
    with httpx.Client(base_url=server, headers=viewer.bearer) as as_viewer:
        assert [t["name"] for t in as_viewer.get(f"/api/v1/folders/{dogs.uuid}/tags").json()["tags"]] == ["a"]
        assert as_viewer.delete(f"/api/v1/folders/{dogs.uuid}/tags/{a.uuid}").status_code == 403
    eve = make_user("eve@y.io", org="Org B")
    with httpx.Client(base_url=server, headers=eve.bearer) as as_eve:
        assert as_eve.get(f"/api/v1/folders/{dogs.uuid}/tags").status_code == 404
    assert api.delete(f"/api/v1/folders/{dogs.uuid}/tags/{a.uuid}").json()["tags"] == []
    assert names(sdk.list_storage_folders(organisation_tags_allof=["a"])) == ["cats"]

    # the CLI
    out = live_cli("tag", "create", "c", "--description", "cli")
    assert out.exit_code == 0 and "Created tag c" in out.output, out.output
    tags = {t["name"]: t["id"] for t in json.loads(live_cli("tag", "list", "--json").output)["tags"]}
    assert set(tags) == {"a", "b", "c"}
    out = live_cli("tag", "add", "c", "--folder", "dogs")
    assert out.exit_code == 0 and "Tags of folder dogs: c." in out.output, out.output
    assert names(sdk.list_storage_folders(organisation_tags_allof=["c"])) == ["dogs"]
    out = live_cli("tag", "list", "--folder", "dogs")
    assert out.exit_code == 0 and "cli" in out.output
    out = live_cli("tag", "add", "c", "--folder", "dogs", "--project", str(uuid.uuid4()))
    assert out.exit_code == 2 and "exactly one of --project and --folder" in out.output
    out = live_cli("tag", "remove", "c", "--folder", str(dogs.uuid))
    assert out.exit_code == 0 and "Tags of folder" in out.output and ": none." in out.output
    out = live_cli("tag", "delete", "c")
    assert out.exit_code == 0 and "Deleted tag c" in out.output
    out = live_cli("tag", "delete", "c")
    assert out.exit_code == 1 and "not found" in out.output
