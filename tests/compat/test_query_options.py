"""Query options the SDK sends that corral honours or refuses, never ignores (issue 19)."""

from __future__ import annotations

from typing import Any

import httpx
import pytest
from encord.orm.dataset import StorageLocation

from tests.compat.conftest import client_for


def test_org_access_is_honoured_for_an_admin_and_refused_for_a_member(
    sdk: Any, server: str, make_user: Any
) -> None:
    top = sdk.create_storage_folder("qp-top")
    sdk.create_storage_folder("qp-child", parent_folder=top.uuid)
    sdk.create_dataset("qp-dataset", StorageLocation.AWS, create_backing_folder=False)
    # alice is an admin: she sees every folder and dataset of the organisation, as org_access asks
    assert [f.name for f in sdk.list_storage_folders(org_access=True)] == ["qp-top"]
    assert [f.name for f in sdk.find_storage_folders(search="qp-", org_access=True)] == ["qp-child", "qp-top"]
    assert [d["dataset"].title for d in sdk.get_datasets(include_org_access=True)] == ["qp-dataset"]
    assert [p for p in sdk.list_projects(include_org_access=True)] == []

    carol_user = make_user("carol@x.io", role="member")
    carol = client_for(carol_user, server)
    # without the option a member sees what is shared with her (nothing)...
    assert list(carol.list_storage_folders()) == []
    assert list(carol.list_storage_folders(org_access=False)) == []
    assert carol.get_datasets() == []
    # ...and asking for the organisation's is refused, naming the option, not silently ignored
    for call in (lambda: list(carol.list_storage_folders(org_access=True)),
                 lambda: list(carol.find_storage_folders(search="qp-", org_access=True)),
                 lambda: carol.get_datasets(include_org_access=True),
                 lambda: list(carol.list_projects(include_org_access=True))):
        with pytest.raises(Exception, match="includeOrgAccess"):
            call()
    with httpx.Client(base_url=server, headers=carol_user.bearer) as c:
        params = {"search": "x", "order": "name", "desc": "false", "pageSize": 10, "signUrls": "false"}
        assert c.get("/v2/public/storage/search/items", params=params).status_code == 200
        r = c.get("/v2/public/storage/search/items", params={**params, "includeOrgAccess": "true"})
        assert r.status_code == 400 and "includeOrgAccess" in r.json()["message"]


def test_find_subfolders_is_refused_not_answered_with_one_level(sdk: Any) -> None:
    top = sdk.create_storage_folder("fs-top")
    child = sdk.create_storage_folder("fs-child", parent_folder=top.uuid)
    sdk.create_storage_folder("fs-grandchild", parent_folder=child.uuid)
    assert [f.name for f in top.list_subfolders()] == ["fs-child"]
    with pytest.raises(Exception, match="isRecursive"):
        list(top.find_subfolders(search="fs-"))


def test_a_hostile_query_parameter_on_an_sdk_route_is_refused(server: str, alice: Any, sdk: Any) -> None:
    sdk.create_storage_folder("hq-top")
    with httpx.Client(base_url=server, headers=alice.bearer) as c:
        ok = c.get("/v2/public/storage/folders", params={"isRecursive": "false", "pageSize": 10})
        assert ok.status_code == 200 and [f["name"] for f in ok.json()["results"]] == ["hq-top"]
        for params, named in (({"includeArchived": "true"}, "includeArchived"),
                              ({"isRecursive": "true"}, "isRecursive"),
                              ({"organisationTagNamesAllof": "v" * 101}, "organisationTagNamesAllof")):
            r = c.get("/v2/public/storage/folders", params=params)
            assert r.status_code == 400, (params, r.text)
            assert named in r.json()["message"]
