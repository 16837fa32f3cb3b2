"""The published OpenAPI document tells the truth about errors (corral.api.openapi), and the
error mapper answers a JSON column's refusal with a 400 after rolling back (corral.api.errors)."""

from __future__ import annotations

from fastapi.testclient import TestClient
from sqlalchemy import func, select

from corral.api.openapi import OFF_VALUE
from corral.core import folders, items
from corral.db.tables import Job, JobUnit


def test_no_422_and_every_operation_documents_its_errors(client) -> None:  # type: ignore[no-untyped-def]
    doc = client.get("/api/openapi.json").json()
    schemas = doc["components"]["schemas"]
    assert "HTTPValidationError" not in schemas and "ValidationError" not in schemas
    assert schemas["Error"]["required"] == ["ok", "status", "code", "message", "errors"]
    operations = [(path, method, op) for path, item in doc["paths"].items() for method, op in item.items()]
    assert len(operations) > 50
    for path, method, op in operations:
        responses = op["responses"]
        assert "422" not in responses, (method, path)
        ref = "RpcError" if path.startswith("/public") else "Error"
        for code in ("400", "default"):
            assert responses[code]["content"]["application/json"]["schema"] == {
                "$ref": f"#/components/schemas/{ref}"}, (method, path, code)
        for code in ("408", "413"):  # the request guard (corral.api.limits) may answer any request so
            assert responses[code]["content"]["application/json"]["schema"] == {
                "$ref": f"#/components/schemas/{ref}"}, (method, path, code)
        open_route = op.get("security") == [] or path == "/healthz"
        assert ("401" in responses) is not open_route, (method, path)
    # Constraints are in the document.
    version = next(p for p in doc["paths"]["/api/v1/metadata-schema/versions/{version}"]["get"]["parameters"]
                   if p["name"] == "version")
    assert version["schema"]["minimum"] == 0 and version["schema"]["maximum"] == 2**63 - 1
    assert schemas["ItemMove"]["properties"]["ids"]["maxItems"] == 10_000
    assert schemas["DatasetCreate"]["properties"]["title"]["maxLength"] == 300


def test_free_form_bodies_publish_the_values_corral_reads(client) -> None:  # type: ignore[no-untyped-def]
    """A ``dict`` body is published as JSON values under ``jsoncodec.REQUEST``, and the SDK's
    storage routes publish their real bodies (ids as UUIDs, bounded counts, options left off)."""
    doc = client.get("/api/openapi.json").json()
    value = doc["components"]["schemas"]["JsonValue"]
    assert "integer" in value["type"] and (value["minimum"], value["maximum"]) == (-(2**63), 2**63 - 1)
    ref = {"$ref": "#/components/schemas/JsonValue"}

    def body(path: str, method: str) -> dict:  # type: ignore[type-arg]
        return doc["paths"][path][method]["requestBody"]["content"]["application/json"]["schema"]  # type: ignore[no-any-return]

    free = body("/v2/public/ontologies", "post")
    assert free["additionalProperties"] == ref and free["propertyNames"] == {"pattern": "^[^\\x00]*$"}
    delete = body("/v2/public/storage/folders/{folder_id}/items/delete", "post")
    assert delete["required"] == ["childUuids"]
    assert delete["properties"]["childUuids"]["items"]["format"] == "uuid"
    assert delete["properties"]["childUuids"]["maxItems"] == 10_000
    bulk = body("/v2/public/storage/items/patch-bulk", "patch")["properties"]["itemPatches"]
    assert bulk["maxProperties"] == 1_000 and bulk["propertyNames"]["format"] == "uuid"
    assert bulk["additionalProperties"]["properties"]["name"]["pattern"] == items.NAME_PATTERN


def test_requests_publish_the_rules_their_handlers_check(client) -> None:  # type: ignore[no-untyped-def]
    """Patterns, models and registries the handlers check with are what the document says."""
    doc = client.get("/api/openapi.json").json()
    schemas = doc["components"]["schemas"]

    def parameter(path: str, method: str, name: str) -> dict:  # type: ignore[type-arg]
        return next(p for p in doc["paths"][path][method]["parameters"] if p["name"] == name)  # type: ignore[no-any-return]

    assert schemas["FolderCreate"]["properties"]["path"]["pattern"] == folders.PATH_PATTERN
    assert schemas["SdkFolderCreate"]["properties"]["name"]["pattern"] == folders.NAME_PATTERN
    assert "register" in parameter("/api/v1/jobs", "get", "kind")["schema"]["enum"]
    assert parameter("/v2/public/presigned-urls", "get", "count")["schema"]["maximum"] == 1_000
    assert parameter("/v2/public/storage/folders", "get", "isRecursive")["schema"]["enum"] == [False]
    assert parameter("/api/v1/folders/search", "get", "q")["schema"]["pattern"] == "^[^\\x00]*$"
    # an SDK option corral lacks is published as accepted only when it asks for nothing
    assert schemas["RemoveUsers"]["additionalProperties"] == OFF_VALUE
    assert schemas["RpcEnvelope"]["required"] == ["query_type", "query_method"]


def test_a_refused_json_column_is_a_400_and_nothing_is_committed(app, db, make_user) -> None:  # type: ignore[no-untyped-def]
    alice = make_user("alice@x.io")

    def write_unstorable() -> None:
        with db.write() as s:
            job = Job(org_id=alice.org_id, kind="test", params={})
            s.add(job)
            s.flush()
            s.add(JobUnit(job_id=job.id, seq=0, payload={"n": 2**64 + 1}, status="pending", attempts=0))

    app.add_api_route("/test/unstorable", write_unstorable, methods=["POST"])
    with TestClient(app, raise_server_exceptions=False) as c:
        r = c.post("/test/unstorable", headers=alice.bearer)  # the guard authenticates first
    assert r.status_code == 400, r.text
    assert r.json()["code"] == "validation_failed" and "64-bit" in r.json()["message"]
    with db.read() as s:
        assert s.scalar(select(func.count()).select_from(Job).where(Job.org_id == alice.org_id)) == 0


def test_a_version_beyond_the_column_is_not_found(app, make_user) -> None:  # type: ignore[no-untyped-def]
    """The document allows any 64-bit version; one the 32-bit column cannot hold is a 404, not a
    query PostgreSQL refuses (500)."""
    alice = make_user("alice@x.io")
    with TestClient(app) as c:
        for version in (2**31, 2**63 - 1):
            r = c.get(f"/api/v1/metadata-schema/versions/{version}", headers=alice.bearer)
            assert r.status_code == 404, r.text
            assert r.json()["code"] == "not_found"
