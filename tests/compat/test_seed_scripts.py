"""The seed document's storage scripts, run as written against corral.

The scripts are in ``seed/`` exactly as the document (``000_3dec1029d2c85e6b.txt``) gives them;
the only edits are made here, on the fly: ``domain=`` is added to the client, placeholders
(``<private_key_path>``, ``<folder_name>``, ``<dataset_hash>``, ``<upload_job_id>``,
``<integration_title>``, ``path/to/json/file.json``) are filled in.  Steps 5 and 7 have no code
in the document's text, so ``seed/`` holds Encord's published scripts for them (marked as such);
step 6 polls an undefined ``dataset`` and reads ``unit_errors``, which only a folder job's result
has, so it is fixed (with a comment) to poll Step 5's folder.
"""

from __future__ import annotations

import contextlib
import io
import json
import re
from pathlib import Path
from typing import Any

from tests.compat.conftest import Bucket, images_manifest

SEED = Path(__file__).parent / "seed"


def run(name: str, server: str, key_path: Path, **values: str) -> str:
    source = (SEED / name).read_text()
    source = source.replace("create_with_ssh_private_key(", f'create_with_ssh_private_key(domain="{server}", ')
    source = source.replace("<private_key_path>", str(key_path))
    for placeholder, value in values.items():
        source = source.replace(placeholder, value)
    assert not re.search(r"<[a-z_]+>", source), "a placeholder is left"
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        exec(compile(source, name, "exec"), {"__name__": "__main__"})
    return out.getvalue()


def test_seed_storage_workflow(server: str, alice: Any, azure: Bucket, sdk: Any, tmp_path: Path) -> None:
    manifest = images_manifest(azure)
    manifest["images"].append({"objectUrl": azure.url("img/missing.png")})
    path = tmp_path / "file.json"
    path.write_text(json.dumps(manifest))
    folder = "Houses files"

    out = run("step5_create_folder_and_register.txt", server, alice.key_path,
              **{"<integration_title>": azure.title, "<folder_name>": folder, "path/to/json/file.json": str(path)})
    assert "Upload completed" in out and "The following URLs failed to upload:" in out
    assert f"['{azure.url('img/missing.png')}']" in out
    job = re.search(r"upload_job_id=([0-9a-f-]{36})", out)
    assert job is not None
    [created] = sdk.find_storage_folders(search=folder)
    assert created.description == "A folder to store my files" and created.client_metadata == {"my": "folder_metadata"}

    out = run("step7_create_dataset.txt", server, alice.key_path)
    assert "Houses" in out
    [houses] = sdk.get_datasets(title_eq="Houses")
    dataset_hash = houses["dataset"].dataset_hash

    out = run("step6_check_upload.txt", server, alice.key_path,
              **{"<upload_job_id>": f'"{job.group(1)}"', "<folder_name>": folder})
    assert "Upload completed" in out and azure.url("img/missing.png") in out

    out = run("step8_link_folder.txt", server, alice.key_path,
              **{"<folder_name>": folder, "<dataset_hash>": dataset_hash})
    assert out.count("UUID: ") == 3 and "Name: a.png, Type: StorageItemType.IMAGE" in out

    out = run("step9_file_links.txt", server, alice.key_path, **{"<dataset_hash>": dataset_hash})
    links = eval(out.strip())  # the script prints a list of strings
    assert sorted(links) == sorted(azure.url(k) for k in ("img/a.png", "img/b.png", "img/c.png"))
