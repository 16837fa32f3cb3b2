"""What the benchmarks that run a real `corral serve` share: a throwaway data directory and
environment, a throwaway PostgreSQL database on request, and memory read from /proc."""

from __future__ import annotations

import os
import shutil
import tempfile
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url

PG_ADMIN = os.environ.get(
    "CORRAL_BENCH_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/postgres"
)


@contextmanager
def server_environment(prefix: str, port: int, postgres: bool,
                       keep: Path | None = None) -> Iterator[tuple[Path, dict[str, str]]]:
    """A fresh work directory and the environment for corral commands run in it; with
    ``postgres``, a fresh database (``CORRAL_DATABASE_URL``), dropped afterwards whatever happens.
    With ``keep``, that directory is the work directory, kept for the next run; with ``postgres``
    too, the database named in its ``pg-database`` file is made once, kept and reused (drop it
    yourself when done).  Without ``keep`` the work directory is removed afterwards, except for
    what a run leaves to be read (``tidy``): a million-file run's database and manifest take
    gigabytes, and every run used to leave them in /tmp."""
    work = keep.resolve() if keep is not None else Path(tempfile.mkdtemp(prefix=prefix))
    work.mkdir(parents=True, exist_ok=True)
    env = {
        **os.environ,
        "CORRAL_DATA_DIR": str(work / "data"),
        "CORRAL_SECRET_KEY": "b" * 40,
        "CORRAL_PORT": str(port),
        "CORRAL_LOG_LEVEL": "warning",
        "CORRAL_CONFIG_DIR": str(work / "cfg"),
    }
    # CORRAL_BENCH_DB_PREFIX: the database's name prefix (a shared server may ask for one)
    prefix = os.environ.get("CORRAL_BENCH_DB_PREFIX") or "corral_bench_"
    name = f"{prefix}{uuid.uuid4().hex[:8]}" if postgres else None
    kept = work / "pg-database" if keep is not None and postgres else None
    if kept is not None and kept.exists():
        name = kept.read_text().strip()
    admin = create_engine(PG_ADMIN, isolation_level="AUTOCOMMIT") if name else None
    if admin is not None:
        with admin.connect() as conn:
            exists = conn.execute(text("SELECT 1 FROM pg_database WHERE datname = :n"), {"n": name})
            if exists.first() is None:
                conn.execute(text(f'CREATE DATABASE "{name}"'))
        if kept is not None:
            kept.write_text(name or "")
        url = make_url(PG_ADMIN).set(database=name)
        env["CORRAL_DATABASE_URL"] = url.render_as_string(hide_password=False)
    try:
        yield work, env
    finally:
        if keep is None:
            tidy(work)
        if admin is not None:
            if kept is None:
                with admin.connect() as conn:
                    conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
            admin.dispose()


#: Files of a work directory kept after a run: profiles and logs the run's output points to.
KEPT = ("profile-*", "*.log")


def tidy(work: Path) -> None:
    """Remove a finished run's work directory, or, when it holds profiles or logs (``KEPT``),
    everything else in it (the database, the configuration, the manifests)."""
    kept = {path for pattern in KEPT for path in work.glob(pattern)}
    if not kept:
        shutil.rmtree(work, ignore_errors=True)
        return
    for path in work.iterdir():
        if path in kept:
            continue
        if path.is_dir() and not path.is_symlink():
            shutil.rmtree(path, ignore_errors=True)
        else:
            path.unlink(missing_ok=True)


def memory_mib(pid: int, field: str) -> float:
    """A memory figure of /proc/PID/status (``VmRSS``, ``VmHWM`` for the peak), in MiB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) / 1024
    return float("nan")
