"""Shared fixtures.

Every test that takes ``db`` (or anything built on it) runs twice: on a SQLite file and on
PostgreSQL.  PostgreSQL comes from ``CORRAL_TEST_POSTGRES_URL`` (an admin URL; default
``postgresql+psycopg://postgres@127.0.0.1:5432/postgres``); the suite creates a uniquely
named database, migrates it once, truncates between tests and drops it at the end.
Set ``CORRAL_TEST_SKIP_POSTGRES=1`` to run SQLite only (never in CI).
"""

from __future__ import annotations

import os
import shutil
import socket
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
import uvicorn
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url
from starlette.testclient import TestClient

from corral.api.app import create_app
from corral.core import identity
from corral.db import create_database, migrate
from corral.db.engine import Database
from corral.db.tables import Base
from corral.settings import Settings
from tests.services import TEST_ALLOWED_ENDPOINTS

# httpx waits 5 s by default for each read. A functional test is not a latency test (latency is
# measured by benchmarks/), and CI shares two cores between pytest, the emulators, PostgreSQL and
# Chromium: one first request to an in-process server once took longer than 5 s there, failing a
# run whose assertions all held. Tests wait up to 60 s instead; corral's own clients pass explicit
# timeouts, so this changes only what tests build with httpx's defaults.
for _phase in ("connect", "read", "write", "pool"):
    setattr(httpx._config.DEFAULT_TIMEOUT_CONFIG, _phase, 60.0)

PG_ADMIN_URL = os.environ.get(
    "CORRAL_TEST_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/postgres"
)
SKIP_PG = os.environ.get("CORRAL_TEST_SKIP_POSTGRES") == "1"
BACKENDS = ["sqlite"] if SKIP_PG else ["sqlite", "postgresql"]


# -- databases ---------------------------------------------------------------


@pytest.fixture(scope="session")
def sqlite_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("template") / "corral.db"
    db = create_database(Settings(data_dir=path.parent, database_url=f"sqlite:///{path}"))
    migrate.upgrade(db)
    db.dispose()
    return path


@pytest.fixture(scope="session")
def pg_url() -> Iterator[str]:
    admin = make_url(PG_ADMIN_URL)
    name = f"corral_test_{os.getpid()}_{uuid.uuid4().hex[:8]}"
    engine = create_engine(admin, isolation_level="AUTOCOMMIT")
    try:
        with engine.connect() as conn:
            conn.execute(text(f'CREATE DATABASE "{name}"'))
    except Exception as exc:  # pragma: no cover - environment problem
        pytest.fail(f"PostgreSQL at {PG_ADMIN_URL} is not usable ({exc}); start it or set "
                    "CORRAL_TEST_SKIP_POSTGRES=1 to run SQLite only")
    url = admin.set(database=name).render_as_string(hide_password=False)
    db = create_database(Settings(database_url=url, secret_key="x" * 40))
    migrate.upgrade(db)
    db.dispose()
    yield url
    with engine.connect() as conn:
        conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    engine.dispose()


@pytest.fixture(params=BACKENDS)
def backend(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def settings(backend: str, tmp_path: Path, request: pytest.FixtureRequest) -> Settings:
    # The data directory lies beside tmp_path, not in it: tests root local integrations anywhere
    # under tmp_path (CORRAL_LOCAL_ROOTS), and a root may never contain the data directory.
    data_dir = tmp_path.parent / f"{tmp_path.name}-data"
    data_dir.mkdir()
    if backend == "sqlite":
        shutil.copy(request.getfixturevalue("sqlite_template"), data_dir / "corral.db")
        url = None
    else:
        url = request.getfixturevalue("pg_url")
    return Settings(
        data_dir=data_dir,
        database_url=url,
        secret_key="test-secret-" + "s" * 32,
        job_lease_seconds=5,
        job_poll_seconds=0.05,
        log_format="console",
        local_roots=str(tmp_path),
        # The emulators run on loopback: allowing it here is what lets the suite reach them.
        allowed_endpoints=TEST_ALLOWED_ENDPOINTS,
        # No spare manifest reader per test's worker (a Python process importing the registration
        # code, 0.7 s of CPU each); tests/registration/test_manifest_pipe.py turns it on.
        manifest_pipe_spare=False,
        # Off, as by default; tests of the server's own credentials turn it on by their marker.
        allow_ambient_credentials=request.node.get_closest_marker("ambient_credentials") is not None,
    )


@pytest.fixture
def db(settings: Settings) -> Iterator[Database]:
    database = create_database(settings)
    yield database
    if not database.is_sqlite:
        tables = ", ".join(f'"{t.name}"' for t in Base.metadata.sorted_tables)
        with database.engine.begin() as conn:
            conn.execute(text(f"TRUNCATE {tables} RESTART IDENTITY CASCADE"))
    database.dispose()


# -- users and keys ----------------------------------------------------------


@dataclass
class TestUser:
    email: str
    org: str
    user_id: uuid.UUID
    org_id: uuid.UUID
    token: str
    key: Ed25519PrivateKey
    key_path: Path

    @property
    def bearer(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}"}


def write_key(path: Path) -> Ed25519PrivateKey:
    key = Ed25519PrivateKey.generate()
    path.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.OpenSSH,
                                       serialization.NoEncryption()))
    path.chmod(0o600)
    pub = key.public_key().public_bytes(serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH)
    path.with_suffix(".pub").write_bytes(pub + b" test@corral\n")
    return key


@pytest.fixture
def make_user(db: Database, tmp_path: Path):  # type: ignore[no-untyped-def]
    def _make(email: str, org: str = "Org A", role: identity.Role = "admin") -> TestUser:
        key_path = tmp_path / f"{email.split('@')[0]}_ed25519"
        key = write_key(key_path)
        with db.write() as s:
            user = identity.create_user(s, email, org_name=org, role=role,
                                        ssh_public_key=key_path.with_suffix(".pub").read_text())
            token, _ = identity.create_token(s, email)
            return TestUser(email, org, user.id, user.org_id, token, key, key_path)

    return _make


# -- apps and servers ----------------------------------------------------------


@pytest.fixture
def app(settings: Settings, db: Database):  # type: ignore[no-untyped-def]
    return create_app(settings, db=db)


@pytest.fixture
def client(app) -> Iterator[TestClient]:  # type: ignore[no-untyped-def]
    with TestClient(app, raise_server_exceptions=False) as c:
        yield c


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
def live_server(app) -> Iterator[str]:  # type: ignore[no-untyped-def]
    """The app on a real uvicorn server on loopback (for the Encord SDK, which uses requests)."""
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_config=None,
                                           access_log=False, lifespan="on"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started:
        if time.monotonic() > deadline:
            raise RuntimeError("test server did not start")
        time.sleep(0.02)
    yield f"http://127.0.0.1:{port}"
    server.should_exit = True
    thread.join(10)


# -- object-store emulators (tests/services.py) and the browser (tests/browser.py) ----------

from tests.browser import chromium  # noqa: E402,F401


@pytest.fixture(autouse=True)
def _logging_as_it_was() -> Iterator[None]:
    """Undo what ``corral.logs.configure_logging`` does when a test runs a command in process
    (``corral serve`` failing at its port or database configures logging first): the root logger
    at INFO stayed so for every later test of the worker, whose own clients (the test client's
    httpx2) then logged request URLs into another test's captured log."""
    import logging

    from corral import logs

    root = logging.getLogger()
    level, handlers = root.level, list(root.handlers)
    names = (*logs.QUIET_LOGGERS, "alembic", "uvicorn", "uvicorn.error", "uvicorn.access")
    saved = {n: (lg.level, list(lg.handlers), lg.propagate, lg.disabled)
             for n in names for lg in [logging.getLogger(n)]}
    yield
    root.setLevel(level)
    for handler in list(root.handlers):  # those configure_logging put there (pytest's own stay)
        if handler not in handlers and isinstance(handler.formatter, (logs.ConsoleFormatter, logs.JsonFormatter)):
            root.removeHandler(handler)
    for n, (lvl, hs, propagate, disabled) in saved.items():
        lg = logging.getLogger(n)
        lg.setLevel(lvl)
        lg.handlers[:] = hs
        lg.propagate, lg.disabled = propagate, disabled

from tests.services import azurite, gcs_emulator, iam_moto, moto_server  # noqa: E402,F401
