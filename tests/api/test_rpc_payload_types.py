"""The v1 RPC operations read their payloads by hand: a field of the wrong JSON type (a list where
a number goes, a number where a list goes) was a 500, or, for ``datarows/GET``, a 200 whose
streamed body broke off in mid-answer.  Each is a 400 in the SDK's envelope naming the field and
what it should be, and nothing is changed."""

from __future__ import annotations

import json
import uuid
from typing import Any

import pytest
from sqlalchemy import func, select

from corral.core.labels import ontologies, projects
from corral.db.tables import DataRow, Grant
from tests.api.test_races_labels import _principal
from tests.datasets.helpers import add_folder, add_items
from tests.labels.test_validation import EDITOR


def _rpc(client, user, scope: str, resource_id: str, query_type: str, method: str, uid: Any, payload: Any):  # type: ignore[no-untyped-def]
    body = {"query_type": query_type, "query_method": method, "values": {"uid": uid, "payload": payload}}
    headers = {**user.bearer, "Content-Type": "application/json", "ResourceType": scope, "ResourceID": resource_id}
    return client.post("/public", content=json.dumps(body).encode(), headers=headers)


@pytest.fixture
def setup(client, make_user, db):  # type: ignore[no-untyped-def]
    alice = make_user("alice@x.io")
    [item] = add_items(db, alice, add_folder(db, alice, "f"), 1)
    dataset = client.post("/api/v1/datasets", json={"title": "d"}, headers=alice.bearer).json()["id"]
    with db.write() as s:
        onto = ontologies.create(s, _principal(alice), "o", "", EDITOR)
        project = projects.create(s, _principal(alice), "p", "", onto.id, [dataset])
    return alice, dataset, str(project.id), str(item)


WRONG = [[1], {"a": 1}, [None], [[]], [{}], ["x"], 1.5, True]


def _refused(r: Any, field: str) -> None:
    assert r.status_code == 400, r.text
    body = r.json()  # the whole answer, not a stream broken off
    assert body["response"] == ["INVALID_ARGUMENTS_ERROR"], body
    assert field in body["payload"], body


@pytest.mark.parametrize("bad", WRONG)
def test_dataset_and_project_user_roles_of_the_wrong_type(client, setup, db, bad: Any) -> None:  # type: ignore[no-untyped-def]
    alice, dataset, project, _ = setup
    r = _rpc(client, alice, "dataset", dataset, "datasetusers", "POST", dataset,
             {"user_emails": ["alice@x.io"], "user_role": bad})
    _refused(r, "user_role")
    r = _rpc(client, alice, "project", project, "projectusers", "POST", None,
             {"user_emails": ["alice@x.io"], "user_role": bad})
    _refused(r, "user_role")
    with db.read() as s:
        assert s.scalar(select(func.count()).select_from(Grant)) == 0


@pytest.mark.parametrize("bad", [[[]], [{}], [1], "alice@x.io", 1, {"a": "alice@x.io"}])
def test_project_user_emails_of_the_wrong_type(client, setup, db, bad: Any) -> None:  # type: ignore[no-untyped-def]
    alice, _, project, _ = setup
    r = _rpc(client, alice, "project", project, "projectusers", "POST", None, {"user_emails": bad, "user_role": 1})
    _refused(r, "user_emails")


@pytest.mark.parametrize("bad", [1, -1, 1.5, True, "x", {"a": 1}])
def test_link_items_of_the_wrong_type(client, setup, db, bad: Any) -> None:  # type: ignore[no-untyped-def]
    alice, dataset, _, _ = setup
    r = _rpc(client, alice, "dataset", dataset, "datasetlinkitems", "POST", dataset,
             {"item_uuids": bad, "duplicates_behavior": "SKIP"})
    _refused(r, "item_uuids")
    with db.read() as s:
        assert s.scalar(select(func.count()).select_from(DataRow)) == 0


@pytest.mark.parametrize(
    ("field", "bad"),
    [("title_eq", [1]), ("title_eq", 5), ("title_like", [1]), ("title_like", 1), ("title_like", True),
     ("data_types", 1), ("data_types", "IMAGE"), ("data_types", [1]), ("data_hashes", 1), ("data_hashes", [[]]),
     ("created_before", [1]), ("created_after", {"a": 1})],
)
def test_data_row_filters_of_the_wrong_type_are_refused_before_the_stream(client, setup, field: str, bad: Any) -> None:  # type: ignore[no-untyped-def]
    alice, dataset, _, item = setup
    linked = client.post(f"/api/v1/datasets/{dataset}/link", json={"item_ids": [item]}, headers=alice.bearer)
    assert linked.status_code == 200, linked.text
    r = _rpc(client, alice, "dataset", dataset, "datarows", "GET", None, {field: bad})
    _refused(r, field)


@pytest.mark.parametrize("bad", [[1], {"a": 1}, [None], "soon",
                                 # read as some wait before (`or 0`, then float()), unlike ?wait=
                                 [], {}, True, False, "nan", "inf", "5", -5, -0.5])
def test_legacy_upload_poll_timeout_of_the_wrong_type(client, setup, bad: Any) -> None:  # type: ignore[no-untyped-def]
    alice, dataset, _, _ = setup
    r = _rpc(client, alice, "dataset", dataset, "datasetdatalongpolling", "GET", dataset,
             {"process_hash": str(uuid.uuid4()), "timeout_seconds": bad})
    _refused(r, "timeout_seconds")
