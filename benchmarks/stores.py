"""The object-store emulators a benchmark signs against: Azurite (Azure Blob) and
gcp-storage-emulator (GCS), the same programs at the same versions the test suite starts
(`tests/services.py`; ``scripts/ensure-test-services`` installs Azurite).

``emulators(work)`` starts both on free loopback ports, each in its own process group, with its
data under ``work`` (so a kept work directory keeps its container and bucket), and stops them by
process group when the block ends, whatever happens.  A missing emulator is a clear error naming
how to install it, before anything else is started.

``provider_values`` gives the integration settings for each (Azure: the account key of Azurite's
published development account; GCS: a service-account key made here, whose ``token_uri`` is the
emulator's own address, which signing never contacts).  ``put_object`` stores one object in each,
so that a URL corral signs can be fetched from the emulator to prove it is a real signature.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

from tests.services import Service, free_port

ROOT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent
AZURITE_ACCOUNT = "devstoreaccount1"
# Azurite's published development key (https://github.com/Azure/Azurite#default-storage-account).
AZURITE_KEY = "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw=="
GCS_PROJECT = "corral-bench"
GCS_EMAIL = "corral-bench@corral-bench.iam.gserviceaccount.com"
CONTAINER = "bench"  # the Azure container and the GCS bucket the benchmark's items live in


class EmulatorMissing(RuntimeError):
    pass


def azurite_path() -> Path:
    """``CORRAL_BENCH_AZURITE``, else the checkout's ``.test-services`` install, else the PATH."""
    named = os.environ.get("CORRAL_BENCH_AZURITE")
    if named:
        if not os.access(named, os.X_OK):
            raise EmulatorMissing(f"CORRAL_BENCH_AZURITE={named} is not an executable file")
        return Path(named)
    local = ROOT / ".test-services" / "node" / "node_modules" / ".bin" / "azurite-blob"
    if local.exists():
        return local
    found = shutil.which("azurite-blob")
    if found is None:
        raise EmulatorMissing(
            "Azurite (azurite-blob) is not installed: run scripts/ensure-test-services (it installs "
            f"it into {local.parent.parent.parent.relative_to(ROOT)}), or name it with CORRAL_BENCH_AZURITE")
    return Path(found)


def gcs_emulator_path() -> Path:
    found = shutil.which("gcp-storage-emulator", path=str(BIN)) or shutil.which("gcp-storage-emulator")
    if found is None:
        raise EmulatorMissing(
            "gcp-storage-emulator is not installed: `.venv/bin/pip install -e '.[test]'` installs it "
            "(the test extra)")
    return Path(found)


@dataclass
class Emulators:
    azure_url: str  # the blob endpoint, path-style: http://127.0.0.1:PORT/devstoreaccount1
    gcs_url: str


@contextmanager
def emulators(work: Path) -> Iterator[Emulators]:
    """Azurite and gcp-storage-emulator on free loopback ports, with their data under ``work``."""
    azurite, gcs = azurite_path(), gcs_emulator_path()  # both found, or nothing is started
    started: list[Service] = []
    try:
        (work / "azurite").mkdir(parents=True, exist_ok=True)
        (work / "gcs").mkdir(parents=True, exist_ok=True)
        port = free_port()
        az = Service("azurite", [str(azurite), "--blobHost", "127.0.0.1", "--blobPort", str(port),
                                  "--location", str(work / "azurite"), "--skipApiVersionCheck", "--loose",
                                  "--disableTelemetry"], work / "azurite.log")
        started.append(az)
        az_base = f"http://127.0.0.1:{port}"
        port = free_port()
        gc = Service("gcp-storage-emulator", [str(gcs), "-d", str((work / "gcs").resolve()), "start",
                                               "--host", "127.0.0.1", "--port", str(port)], work / "gcs.log")
        started.append(gc)
        gcs_url = f"http://127.0.0.1:{port}"
        az.wait_ready(lambda: httpx.get(az_base, timeout=2).status_code < 500)
        gc.wait_ready(lambda: httpx.get(gcs_url, timeout=2).status_code == 200)
        yield Emulators(azure_url=f"{az_base}/{AZURITE_ACCOUNT}", gcs_url=gcs_url)
    finally:
        for p in started:
            p.stop()


def _service_account(token_uri: str) -> str:
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import rsa

    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                            serialization.NoEncryption()).decode()
    return json.dumps({
        "type": "service_account", "project_id": GCS_PROJECT, "private_key_id": secrets.token_hex(8),
        "private_key": pem, "client_email": GCS_EMAIL, "client_id": "1234567890",
        "token_uri": token_uri, "auth_uri": "https://accounts.google.com/o/oauth2/auth",
    })


def provider_values(em: Emulators) -> dict[str, dict[str, Any]]:
    """The integration settings of the Azure and the GCS integration, against these emulators."""
    return {
        "azure": {"account_name": AZURITE_ACCOUNT, "container": CONTAINER, "endpoint_url": em.azure_url,
                  "account_key": AZURITE_KEY},
        "gcs": {"bucket": CONTAINER, "project": GCS_PROJECT, "endpoint_url": em.gcs_url,
                "service_account_json": _service_account(f"{em.gcs_url}/token")},
    }


def put_object(em: Emulators, provider: str, key: str, data: bytes) -> None:
    """Store one object in the benchmark's container (Azure) or bucket (GCS), making it if needed."""
    if provider == "azure":
        from azure.core.exceptions import ResourceExistsError
        from azure.storage.blob import BlobServiceClient

        service = BlobServiceClient.from_connection_string(
            f"DefaultEndpointsProtocol=http;AccountName={AZURITE_ACCOUNT};AccountKey={AZURITE_KEY};"
            f"BlobEndpoint={em.azure_url};")
        try:
            service.create_container(CONTAINER)
        except ResourceExistsError:
            pass
        service.get_blob_client(CONTAINER, key).upload_blob(data, overwrite=True)
    elif provider == "gcs":
        from google.api_core.exceptions import Conflict
        from google.auth.credentials import AnonymousCredentials
        from google.cloud import storage

        anonymous = AnonymousCredentials()  # type: ignore[no-untyped-call]
        client = storage.Client(project=GCS_PROJECT, credentials=anonymous,
                                client_options={"api_endpoint": em.gcs_url})
        try:
            client.create_bucket(CONTAINER)
        except Conflict:
            pass
        client.bucket(CONTAINER).blob(key).upload_from_string(data)
    else:
        raise ValueError(provider)
