"""The backend registry: lazy imports, and a clear install hint when a cloud SDK is missing."""

from __future__ import annotations

import sys

import pytest

from corral import errors
from corral.storage import registry
from corral.storage.base import StorageContext
from corral.storage.options import AzureOptions, GcsOptions, LocalOptions, S3Options


@pytest.mark.parametrize("provider, sdk, extra, options", [
    ("s3", "botocore", "s3", S3Options(bucket="b", access_key_id="a", secret_access_key="s")),
    ("azure", "azure.storage.blob", "azure", AzureOptions(account_name="acct", container="media",
                                                          account_key="a2V5")),
    ("gcs", "google.cloud", "gcs", GcsOptions(bucket="b")),
])
def test_missing_sdk_says_which_extra_to_install(monkeypatch, provider, sdk, extra, options) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.delitem(sys.modules, f"corral.storage.{provider}", raising=False)
    monkeypatch.setitem(sys.modules, sdk, None)  # makes "import sdk" raise ImportError
    with pytest.raises(errors.ConfigurationError) as info:
        registry.open_storage(options, StorageContext())
    assert f"pip install 'corral[{extra}]'" in info.value.message
    assert f"the {provider} storage backend" in info.value.message


def test_backends_are_imported_lazily() -> None:
    import subprocess

    code = ("import sys, corral.api.app, corral.core.integrations, corral.storage.registry;"
            "print(sorted(m for m in ('botocore', 'azure.storage.blob', 'google.cloud.storage') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


def test_local_needs_no_extra() -> None:
    storage = registry.open_storage(LocalOptions(root="/tmp"), StorageContext())
    assert storage.provider == "local"


def test_unknown_provider() -> None:
    with pytest.raises(errors.ConfigurationError, match="unknown storage provider 'ftp'"):
        registry.backend_module("ftp")
