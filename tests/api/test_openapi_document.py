"""The published OpenAPI document tells the truth about errors (corral.api.openapi), and the
error mapper answers a JSON column's refusal with a 400 after rolling back (corral.api.errors)."""

from __future__ import annotations

from fastapi.testclient import TestClient
from sqlalchemy import func, select

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
        open_route = op.get("security") == [] or path == "/healthz"
        assert ("401" in responses) is not open_route, (method, path)
    # Constraints are in the document.
    version = next(p for p in doc["paths"]["/api/v1/metadata-schema/versions/{version}"]["get"]["parameters"]
                   if p["name"] == "version")
    assert version["schema"]["minimum"] == 0 and version["schema"]["maximum"] == 2**63 - 1
    assert schemas["ItemMove"]["properties"]["ids"]["maxItems"] == 10_000
    assert schemas["DatasetCreate"]["properties"]["title"]["maxLength"] == 300


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
        r = c.post("/test/unstorable")
    assert r.status_code == 400, r.text
    assert r.json()["code"] == "validation_failed" and "64-bit" in r.json()["message"]
    with db.read() as s:
        assert s.scalar(select(func.count()).select_from(Job).where(Job.org_id == alice.org_id)) == 0
