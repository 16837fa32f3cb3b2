"""The seed document's storage scripts, run as written against corral.

Step 3's schema scripts (``set_scalar``, ``restore_key``) and the storage steps are in ``seed/`` exactly as the document (``000_3dec1029d2c85e6b.txt``) gives them;
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
    return run_source(source, name)


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


def run_schema_script(name: str, server: str, key_path: Path) -> str:
    """Step 3's scripts: only the key path (``SSH_PATH``) and ``domain=`` are edited, plus the
    one typo below."""
    source = (SEED / name).read_text().replace('"/Users/chris-encord/ssh-private-key.txt"', repr(str(key_path)))
    # The document's `restore_key(k: "Fruit")` is not Python (a typo for `restore_key(k="Fruit")`).
    source = source.replace('restore_key(k: "Fruit")', 'restore_key(k="Fruit")')
    source = source.replace("create_with_ssh_private_key(", f'create_with_ssh_private_key(domain="{server}", ')
    return run_source(source, name)


def run_source(source: str, name: str) -> str:
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        exec(compile(source, name, "exec"), {"__name__": "__main__"})
    return out.getvalue()


def test_seed_schema_scripts(server: str, alice: Any, sdk: Any) -> None:
    """Step 3: edit key types with set_scalar, and restore a soft-deleted key.  Neither script
    calls save(), so each prints the edited schema and the server's copy stays as it was."""
    schema = sdk.metadata_schema()
    for key in ("metadata_1", "metadata_2", "metadata_3"):
        schema.add_scalar(key, data_type="varchar")
    schema.add_scalar("Fruit", data_type="varchar")
    schema.save()
    schema = sdk.metadata_schema()
    schema.delete_key("Fruit")  # a soft delete
    schema.save()

    out = run_schema_script("step3_edit_schema_keys.txt", server, alice.key_path)
    assert " - 'metadata_1': scalar(hint=number)\n" in out
    assert " - 'metadata_2': scalar(hint=boolean)\n" in out and " - 'metadata_3': scalar(hint=boolean)\n" in out
    assert "Fruit" not in out  # soft-deleted keys are not printed
    assert re.search(r"'metadata_1': +scalar\(hint=varchar\)", str(sdk.metadata_schema()))  # not saved by the script

    out = run_schema_script("step3_restore_schema_key.txt", server, alice.key_path)
    assert re.search(r" - 'Fruit': +scalar\(hint=varchar\)\n", out)
    restored = sdk.metadata_schema()
    restored.restore_key("Fruit")
    restored.save()  # what the script leaves to the user: the server keeps the restored key
    assert re.search(r"'Fruit': +scalar\(hint=varchar\)", str(sdk.metadata_schema()))
