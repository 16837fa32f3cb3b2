"""The whole workflow against moto, with a real server and worker: through the CLI, checked through the
native API.

integration → metadata schema → register a manifest into folders → dataset → link the folders' items
→ list data rows → verify file locations; then delete an object in the emulator and verify again.
"""

from __future__ import annotations

import json

import httpx

from tests.registration.test_imports import png
from tests.services import MotoServer


def test_register_link_list_and_verify(run, moto_server: MotoServer, tmp_path) -> None:  # type: ignore[no-untyped-def]
    api: httpx.Client = run.api
    bucket = moto_server.new_bucket()
    s3 = moto_server.client()
    for key, size in [("day/a.png", (8, 6)), ("day/b.png", (16, 12)), ("night/c.png", (4, 4))]:
        s3.put_object(Bucket=bucket, Key=key, Body=png(*size), ContentType="image/png")

    # 1. the integration and the metadata schema
    r = run("integration", "create", "s3", "--title", "media", "--bucket", bucket, "--endpoint-url", moto_server.url,
            "--region", "us-east-1", "--access-key-id", "testing", "--secret-access-key", "testing", "--no-check")
    assert r.exit_code == 0, r.output
    schema = tmp_path / "schema.json"
    schema.write_text(json.dumps({"keys": {"camera": {"type": "string", "required": True},
                                           "score": {"type": "number"}}}))
    r = run("schema", "import", str(schema))
    assert r.exit_code == 0 and "Saved version 1" in r.output, r.output

    # 2. register two manifests, into a folder and its subfolder
    for folder, entries in [
        ("cats", [{"objectUrl": f"s3://{bucket}/day/a.png", "title": "a", "clientMetadata": {"camera": "c1", "score": 1}},
                  {"objectUrl": f"s3://{bucket}/day/b.png", "title": "b", "clientMetadata": {"camera": "c2"}}]),
        ("cats/night", [{"objectUrl": f"s3://{bucket}/night/c.png", "title": "c", "clientMetadata": {"camera": "c3"}}]),
    ]:
        assert run("folder", "create", folder).exit_code == 0
        manifest = tmp_path / f"{folder.replace('/', '-')}.json"
        manifest.write_text(json.dumps({"images": entries}))
        r = run("import", str(manifest), "--folder", folder, "--integration", "media")
        assert r.exit_code == 0, r.output

    # 3. a dataset, and every item of the folder tree linked into it
    r = run("dataset", "create", "Cats", "--description", "all cats", "--json")
    assert r.exit_code == 0, r.output
    ds = json.loads(r.output)["id"]
    r = run("dataset", "link", "Cats", "--folder", "cats")
    assert r.exit_code == 0 and "Linked 2 item(s)" in r.output, r.output
    r = run("dataset", "link", "Cats", "--folder", "cats", "--recursive")
    assert r.exit_code == 0 and "Linked 1 item(s); 2 already linked" in r.output, r.output

    # 4. its data rows, through the CLI and the API
    r = run("dataset", "rows", "Cats", "--json")
    assert r.exit_code == 0, r.output
    rows = {row["title"]: row for row in json.loads(r.output)}
    assert set(rows) == {"a", "b", "c"}
    assert rows["a"]["file_link"] == f"s3://{bucket}/day/a.png" and rows["a"]["data_type"] == "image"
    assert rows["a"]["client_metadata"] == {"camera": "c1", "score": 1}
    page = api.get(f"/api/v1/datasets/{ds}/rows", params={"page_size": 2}).json()
    rest = api.get(f"/api/v1/datasets/{ds}/rows", params={"page_token": page["next_page_token"]}).json()
    assert {r["uid"] for r in page["rows"] + rest["rows"]} == {r["uid"] for r in rows.values()}
    streamed = [json.loads(line) for line in api.get(f"/api/v1/datasets/{ds}/rows.ndjson").text.splitlines()]
    assert streamed == page["rows"] + rest["rows"]
    r = run("dataset", "rows", "Cats")
    assert "UID" in r.output and f"s3://{bucket}/night/c.png" in r.output

    # 5. verify: everything is there
    r = run("dataset", "verify", "Cats")
    assert r.exit_code == 0, r.output
    assert "DONE, 3 of 3 rows checked" in r.output and "ok         3" in r.output

    # 6. an object disappears from the bucket, and another is replaced: verify again
    s3.delete_object(Bucket=bucket, Key="day/b.png")
    s3.put_object(Bucket=bucket, Key="night/c.png", Body=png(40, 40), ContentType="image/png")
    r = run("dataset", "verify", "Cats")
    assert r.exit_code == 1, r.output
    assert "missing    1" in r.output and f"s3://{bucket}/day/b.png" in r.output
    assert "changed    1" in r.output and f"s3://{bucket}/night/c.png" in r.output
    r = run("dataset", "verify", "Cats", "--no-wait")
    job_id = r.output.strip()
    status = api.get(f"/api/v1/datasets/verify/{job_id}", params={"wait": 30}).json()
    assert status["status"] == "DONE"
    assert status["counts"] == {"ok": 1, "missing": 1, "forbidden": 0, "changed": 1, "error": 0, "skipped": 0}
    missing = [p for p in status["problems"] if p["problem"] == "missing"]
    assert missing[0]["row_id"] == rows["b"]["uid"] and missing[0]["item_id"] == rows["b"]["item_id"]
