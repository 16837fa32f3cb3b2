"""Every call the Encord SDK 0.1.211 can send that corral does not implement fails clearly.

The calls are read from the installed SDK's source (``sdk_surface.scan``), so the list cannot
drift. Each one corral does not serve is sent with the SDK's own transport, signed, and must
raise the SDK's error naming the call and saying it is "not supported by corral", never a
``ResourceNotFoundError``; each is listed in docs/encord-compatibility.md.
"""

from __future__ import annotations

import uuid
from pathlib import Path
from typing import Any

import encord
import pytest
from encord.exceptions import InvalidArgumentsError, ResourceNotFoundError, UnknownException
from starlette.routing import Match

from corral.api.app import create_app
from corral.api.routes import encord_v2
from corral.api.routes.encord_rpc import operations
from tests.compat.sdk_surface import V1Call, V2Call, scan

DOC = Path(__file__).resolve().parents[2] / "docs" / "encord-compatibility.md"
V2, V1, UNREAD = scan(Path(encord.__file__).parent)


def served_v2(settings: Any, db: Any) -> Any:
    app = create_app(settings, db=db)
    routes = [r for r in app.routes if getattr(r, "original_router", None) is not encord_v2.unsupported_router]

    def served(call: V2Call) -> bool:
        scope = {"type": "http", "path": call.concrete(str(uuid.uuid4())), "method": call.method}
        return any(r.matches(scope)[0] == Match.FULL for r in routes)

    return served


def unserved_v2(settings: Any, db: Any) -> list[V2Call]:
    served = served_v2(settings, db)
    return sorted(c for c in V2 if not served(c))


def unserved_v1() -> list[V1Call]:
    return sorted(c for c in V1 if (c.query_type, c.method) not in operations)


def test_the_sdk_source_is_read_whole() -> None:
    assert UNREAD == []  # every call site's path was understood
    assert len(V2) > 150 and len(V1) > 20  # 0.1.211 sends 155 and 27
    # what corral implements is among them (so the scan finds real calls)
    assert {("POST", "storage/folders"), ("GET", "storage/folders/{}/items")} <= {(c.method, c.template) for c in V2}
    # whatever the receiver is called (client.post, self._client.patch) and however the path is built
    # (a query string after it, the domain before it, a whole prepared Request)
    active = {(c.method, c.template) for c in V2 if c.template.startswith("active/")}
    assert active == {
        ("GET", "active/{}/collections"), ("POST", "active/{}/collections"),
        ("PATCH", "active/{}/collections/{}"), ("DELETE", "active/{}/collections/{}"),
        ("GET", "active/{}/collections/{}/items"),
        ("POST", "active/{}/collections/{}/add-items"), ("POST", "active/{}/collections/{}/remove-items"),
        ("POST", "active/{}/collections/{}/add-preset-items"),
        ("POST", "active/{}/collections/{}/remove-preset-items"),
        ("GET", "active/{}/presets"), ("POST", "active/{}/presets"), ("GET", "active/{}/presets/{}/raw"),
        ("PATCH", "active/{}/presets/{}"), ("DELETE", "active/{}/presets/{}"),
        ("POST", "active/{}/import"), ("POST", "active/{}/sync"),
    }
    assert {("GET", "projects/{}/models-attachments"), ("POST", "ml-models"),
            ("PATCH", "organisation/groups/{}")} <= {(c.method, c.template) for c in V2}
    assert {("labelrow", "GET"), ("datarows", "GET")} <= {(c.query_type, c.method) for c in V1}


def test_every_unsupported_v2_call_says_so(sdk: Any, settings: Any, db: Any) -> None:
    missing = unserved_v2(settings, db)
    assert missing, "corral serves every v2 call: this test has nothing left to check"
    api = sdk._api_client
    for call in missing:
        path = call.concrete(str(uuid.uuid4()))[len("/v2/public/"):]
        with pytest.raises(UnknownException) as info:
            if call.method in ("GET", "DELETE"):
                api._request_without_payload(call.method, path, None, None)
            else:
                api._request_with_payload(call.method, path, params=None, payload=None, result_type=None)
        assert not isinstance(info.value, ResourceNotFoundError)
        assert f"{call.method} /v2/public/{path} is not supported by corral" in str(info.value), call.where


def test_every_unsupported_v1_operation_says_so(sdk: Any) -> None:
    from encord.http.querier import Querier
    from encord.http.query_methods import QueryMethods

    missing = unserved_v1()
    assert missing, "corral serves every v1 operation: this test has nothing left to check"
    for call in missing:
        for resource_type in ("project", "dataset"):
            querier = Querier(sdk._config.config, resource_type=resource_type, resource_id=str(uuid.uuid4()))
            request = querier._request(QueryMethods[call.method], call.query_type, "x", 30, payload=None)
            with pytest.raises(InvalidArgumentsError) as info:
                querier._execute(request)
            assert f"v1 operation {call.query_type}/{call.method} is not supported by corral" in str(info.value)


def test_the_unsupported_calls_are_documented(settings: Any, db: Any) -> None:
    doc = DOC.read_text(encoding="utf-8")
    undocumented = [f"{c.method} {c.template}" for c in unserved_v2(settings, db)
                    if f"`{c.method} {c.template}`" not in doc]
    undocumented += [f"{c.query_type}/{c.method}" for c in unserved_v1() if f"`{c.query_type}/{c.method}`" not in doc]
    assert undocumented == []


def test_an_unknown_route_needs_credentials_first(server: str) -> None:
    import httpx

    r = httpx.get(f"{server}/v2/public/projects/{uuid.uuid4()}/branches")
    assert r.status_code == 401  # signed in before anything else, even for a call corral lacks
