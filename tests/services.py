"""Real object-store emulators, started by the test run itself on free loopback ports.

Each is a session fixture, started on first use and stopped (by PID, never by name) at the
end: moto server for S3, Azurite for Azure Blob, gcp-storage-emulator for GCS (it keeps bucket
CORS rules, which fake-gcs-server drops).  ``scripts/ensure-test-services`` installs Azurite.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from corral.storage.netpolicy import EndpointPolicy

ROOT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent
AZURITE = ROOT / ".test-services" / "node" / "node_modules" / ".bin" / "azurite-blob"
AZURITE_ACCOUNT = "devstoreaccount1"
# Azurite's published development key (https://github.com/Azure/Azurite#default-storage-account).
AZURITE_KEY = "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw=="

#: What the tests' servers and storage contexts may connect to beyond public addresses: the
#: emulators, all on loopback.  (Allowing it explicitly is itself the allow-list at work.)
TEST_ALLOWED_ENDPOINTS = "127.0.0.1,localhost,::1"
LOOPBACK = EndpointPolicy.parse(TEST_ALLOWED_ENDPOINTS)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Service:
    """One child process, its log file, and a readiness probe."""

    def __init__(self, name: str, argv: list[str], log: Path, env: dict[str, str] | None = None) -> None:
        self.name = name
        self.log = log
        self._fh = log.open("wb")
        self.proc = subprocess.Popen(argv, stdout=self._fh, stderr=subprocess.STDOUT,
                                     env={**os.environ, **(env or {})}, start_new_session=True)

    def wait_ready(self, probe: Callable[[], bool], timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"{self.name} exited with {self.proc.returncode}:\n{self.log.read_text()[-3000:]}")
            try:
                if probe():
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.1)
        self.stop()
        raise RuntimeError(f"{self.name} was not ready after {timeout} s:\n{self.log.read_text()[-3000:]}")

    def stop(self) -> None:
        if self.proc.poll() is None:
            # Only the process group we created (start_new_session) — never anything by name.
            try:
                os.killpg(self.proc.pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(10)
        self._fh.close()


def _answers(url: str, ok: Callable[[httpx.Response], bool]) -> Callable[[], bool]:
    return lambda: ok(httpx.get(url, timeout=2))


# -- S3 ----------------------------------------------------------------------------


@dataclass
class MotoServer:
    url: str
    access_key_id: str = "testing"
    secret_access_key: str = "testing"
    region: str = "us-east-1"

    def client(self, service: str = "s3"):  # type: ignore[no-untyped-def]
        import boto3
        from botocore.config import Config

        return boto3.client(service, endpoint_url=self.url, region_name=self.region,
                            aws_access_key_id=self.access_key_id,
                            aws_secret_access_key=self.secret_access_key,
                            config=Config(signature_version="s3v4", s3={"addressing_style": "path"}))

    def new_bucket(self) -> str:
        name = f"corral-{uuid.uuid4().hex[:12]}"
        self.client().create_bucket(Bucket=name)
        return name


@pytest.fixture(scope="session")
def moto_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[MotoServer]:
    port = free_port()
    log = tmp_path_factory.mktemp("moto") / "moto.log"
    svc = Service("moto_server", [str(BIN / "moto_server"), "-H", "127.0.0.1", "-p", str(port)], log,
                  env={"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing"})
    url = f"http://127.0.0.1:{port}"
    svc.wait_ready(_answers(f"{url}/moto-api/", lambda r: r.status_code == 200))
    yield MotoServer(url)
    svc.stop()


# IAM-enforcing moto: for rejected keys and denied access.


class IamMoto:
    def __init__(self, url: str, bucket: str, reader_key: tuple[str, str]) -> None:
        self.server = MotoServer(url)
        self.url, self.bucket, self.reader_key = url, bucket, reader_key


@pytest.fixture(scope="session")
def iam_moto(tmp_path_factory: pytest.TempPathFactory) -> Iterator[IamMoto]:
    """A second moto server: set up without auth, then IAM authentication switched on for everything."""
    port = free_port()
    log = tmp_path_factory.mktemp("moto-iam") / "moto.log"
    svc = Service("moto_server (IAM auth)", [str(BIN / "moto_server"), "-H", "127.0.0.1", "-p", str(port)], log,
                  env={"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing"})
    url = f"http://127.0.0.1:{port}"
    try:
        svc.wait_ready(lambda: httpx.get(f"{url}/moto-api/", timeout=2).status_code == 200)
        admin = MotoServer(url)
        bucket = admin.new_bucket()
        admin.client().put_object(Bucket=bucket, Key="secret.txt", Body=b"classified")
        iam = admin.client("iam")
        iam.create_user(UserName="reader")
        policy = {"Version": "2012-10-17", "Statement": [
            {"Effect": "Allow", "Action": "s3:ListBucket", "Resource": f"arn:aws:s3:::{bucket}"}]}
        iam.put_user_policy(UserName="reader", PolicyName="list-only", PolicyDocument=json.dumps(policy))
        key = iam.create_access_key(UserName="reader")["AccessKey"]
        response = httpx.post(f"{url}/moto-api/reset-auth", content=b"0", timeout=10)
        assert response.status_code == 200, response.text
        yield IamMoto(url, bucket, (key["AccessKeyId"], key["SecretAccessKey"]))
    finally:
        svc.stop()


# -- Azure ---------------------------------------------------------------------------


@dataclass
class Azurite:
    url: str  # blob endpoint, path-style: http://127.0.0.1:PORT/devstoreaccount1
    account_name: str = AZURITE_ACCOUNT
    account_key: str = AZURITE_KEY

    @property
    def connection_string(self) -> str:
        return (f"DefaultEndpointsProtocol=http;AccountName={self.account_name};"
                f"AccountKey={self.account_key};BlobEndpoint={self.url};")

    def service(self):  # type: ignore[no-untyped-def]
        from azure.storage.blob import BlobServiceClient

        return BlobServiceClient.from_connection_string(self.connection_string)

    def new_container(self) -> str:
        name = f"corral-{uuid.uuid4().hex[:12]}"
        self.service().create_container(name)
        return name


@pytest.fixture(scope="session")
def azurite(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Azurite]:
    # Always asked (it returns at once when installed): it also finishes an install that another
    # process left half done, and waits for one under way (its lock).
    subprocess.run([str(ROOT / "scripts" / "ensure-test-services")], check=True)
    port = free_port()
    work = tmp_path_factory.mktemp("azurite")
    svc = Service("azurite", [str(AZURITE), "--blobHost", "127.0.0.1", "--blobPort", str(port),
                              "--location", str(work), "--skipApiVersionCheck", "--loose",
                              "--disableTelemetry"], work / "azurite.log")
    base = f"http://127.0.0.1:{port}"
    svc.wait_ready(_answers(base, lambda r: r.status_code < 500))
    yield Azurite(f"{base}/{AZURITE_ACCOUNT}")
    svc.stop()


# -- GCS -----------------------------------------------------------------------------


@dataclass
class GcsEmulator:
    url: str
    project: str = "corral-test"

    def client(self):  # type: ignore[no-untyped-def]
        from google.auth.credentials import AnonymousCredentials
        from google.cloud import storage

        return storage.Client(project=self.project, credentials=AnonymousCredentials(),
                              client_options={"api_endpoint": self.url})

    def new_bucket(self) -> str:
        name = f"corral-{uuid.uuid4().hex[:12]}"
        self.client().create_bucket(name)
        return name


@pytest.fixture(scope="session")
def gcs_emulator(tmp_path_factory: pytest.TempPathFactory) -> Iterator[GcsEmulator]:
    port = free_port()
    work = tmp_path_factory.mktemp("gcs")
    exe = shutil.which("gcp-storage-emulator", path=str(BIN)) or str(BIN / "gcp-storage-emulator")
    svc = Service("gcp-storage-emulator", [exe, "-d", str(work.resolve()), "start", "--host", "127.0.0.1",
                                           "--port", str(port)], work / "gcs.log")
    url = f"http://127.0.0.1:{port}"
    svc.wait_ready(_answers(url, lambda r: r.status_code == 200))
    yield GcsEmulator(url)
    svc.stop()


def tcp_sockets(pid: int) -> list[tuple[str, int]]:
    """Each TCP socket process ``pid`` holds, as (state, local port): its /proc/PID/fd socket
    inodes looked up in /proc/net/tcp and tcp6 (state "0A" listening, "01" established); none
    for a process that is gone.  (The benchmarks read it too.)"""
    inodes: set[str] = set()
    try:
        fds = list(Path(f"/proc/{pid}/fd").iterdir())
    except OSError:
        return []
    for fd in fds:
        try:
            link = os.readlink(fd)
        except OSError:
            continue
        if link.startswith("socket:["):
            inodes.add(link[8:-1])
    found: list[tuple[str, int]] = []
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        for line in Path(table).read_text().splitlines()[1:]:
            fields = line.split()
            if fields[9] in inodes:
                found.append((fields[3], int(fields[1].rsplit(":", 1)[1], 16)))
    return found
