"""A throwaway PostgreSQL cluster configured for a vector benchmark (issue 20).

    python -m benchmarks.pg_cluster start DIR [--port 55433] [--shared-buffers 2GB]
    python -m benchmarks.pg_cluster stop DIR
    python -m benchmarks.pg_cluster memory DIR

``bench_vectors.py --pg-cluster DIR`` runs its pgvector benchmark on such a cluster instead of a
shared server: ``initdb`` (as the ``postgres`` OS user when run as root, which ``initdb`` refuses)
into ``DIR``, the settings an operator would give a server that holds a vector index
(``SETTINGS``; docs/vectors.md, "PostgreSQL settings"), ``pg_ctl start`` bound to 127.0.0.1 on a
port of the caller's, its socket in ``DIR``.  A second ``start`` on the same directory reuses the
cluster (its data kept), with the settings written again.  The binaries are PostgreSQL 15's
(``PG_BIN``, or ``$CORRAL_PG_BIN``); pgvector must be installed for them (scripts/ensure-pgvector).

``memory`` prints the server's memory: the proportional set size (``Pss`` in
``/proc/PID/smaps_rollup``: shared pages split between the processes that map them, so the sum is
not counted twice) of the postmaster and every process it started, and their anonymous part.
"""

from __future__ import annotations

import argparse
import os
import pwd
import shutil
import subprocess
import sys
from pathlib import Path

PG_BIN = Path(os.environ.get("CORRAL_PG_BIN", "/usr/lib/postgresql/15/bin"))
#: What a server holding a 1,000,000 x 512 pgvector index needs beyond PostgreSQL's defaults, on
#: this machine's size (2 cores, 24 GiB).  ``shared_buffers`` holds the HNSW index (about 1.3 GB
#: at 1,000,000 x 512 halfvec) and what queries read beside it; ``maintenance_work_mem`` is set by
#: corral's build for its own transaction (``pgvector.build_memory``) and is only a default here.
SETTINGS: dict[str, str] = {
    "shared_buffers": "2GB",
    "effective_cache_size": "8GB",
    "random_page_cost": "1.1",
    "effective_io_concurrency": "200",
    "maintenance_work_mem": "1GB",
    "max_parallel_maintenance_workers": "1",
    "max_parallel_workers_per_gather": "1",
    "work_mem": "32MB",
    "max_wal_size": "8GB",
    "checkpoint_timeout": "15min",
    "jit": "off",
    "autovacuum": "on",
    "max_connections": "50",
}


def _owner() -> tuple[int, int] | None:
    """The (uid, gid) to run the server as: ``postgres`` when this process is root."""
    if os.geteuid() != 0:
        return None
    user = pwd.getpwnam("postgres")
    return user.pw_uid, user.pw_gid


def _run(args: list[str], **kw: object) -> subprocess.CompletedProcess[str]:
    owner = _owner()
    if owner is not None:
        args = ["runuser", "-u", "postgres", "--", *args]
    return subprocess.run(args, check=True, text=True, capture_output=True, **kw)  # type: ignore[call-overload, no-any-return]


class Cluster:
    """A PostgreSQL cluster in ``path``, served on 127.0.0.1:``port``."""

    def __init__(self, path: Path, port: int = 55433, settings: dict[str, str] | None = None) -> None:
        self.path = path.resolve()
        self.port = port
        self.settings = {**SETTINGS, **(settings or {})}

    def url(self, database: str = "postgres") -> str:
        return f"postgresql+psycopg://postgres@127.0.0.1:{self.port}/{database}"

    def running(self) -> bool:
        return (self.path / "postmaster.pid").exists() and subprocess.run(
            [str(PG_BIN / "pg_isready"), "-q", "-h", "127.0.0.1", "-p", str(self.port)]).returncode == 0

    def start(self) -> None:
        if not (self.path / "PG_VERSION").exists():
            self.path.mkdir(parents=True, exist_ok=True)
            owner = _owner()
            if owner is not None:
                os.chown(self.path, *owner)
                os.chmod(self.path, 0o700)
            _run([str(PG_BIN / "initdb"), "-D", str(self.path), "-U", "postgres", "--auth=trust",
                  "--encoding=UTF8", "--locale=C.UTF-8"])
        conf = {**self.settings, "listen_addresses": "'127.0.0.1'", "port": str(self.port),
                "unix_socket_directories": f"'{self.path}'"}
        lines = [f"{name} = {value if value.startswith(chr(39)) else repr(value)}"
                 for name, value in conf.items()]
        (self.path / "corral-bench.conf").write_text("\n".join(lines) + "\n")
        main_conf = self.path / "postgresql.conf"
        if "include_if_exists = 'corral-bench.conf'" not in main_conf.read_text():
            with main_conf.open("a") as f:
                f.write("\ninclude_if_exists = 'corral-bench.conf'\n")
        owner = _owner()
        if owner is not None:
            os.chown(self.path / "corral-bench.conf", *owner)
        if not self.running():
            _run([str(PG_BIN / "pg_ctl"), "-D", str(self.path), "-l", str(self.path / "server.log"),
                  "-w", "-t", "120", "start"])

    def stop(self) -> None:
        if (self.path / "postmaster.pid").exists():
            _run([str(PG_BIN / "pg_ctl"), "-D", str(self.path), "-m", "fast", "-w", "stop"])

    def remove(self) -> None:
        self.stop()
        shutil.rmtree(self.path, ignore_errors=True)

    def pids(self) -> list[int]:
        """The postmaster and every process it started."""
        pid_file = self.path / "postmaster.pid"
        if not pid_file.exists():
            return []
        root = int(pid_file.read_text().split()[0])
        out = [root]
        for entry in Path("/proc").iterdir():
            if entry.name.isdigit():
                try:
                    fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
                except OSError:
                    continue
                if int(fields[1]) == root:
                    out.append(int(entry.name))
        return out

    def memory(self) -> dict[str, float]:
        """The server's memory in MiB: Pss (shared pages split between the processes mapping them)
        and its anonymous part, summed over the postmaster and its children; and Rss summed (which
        counts shared pages once per process)."""
        total = {"pss": 0.0, "pss_anon": 0.0, "pss_shmem": 0.0, "rss_sum": 0.0, "processes": 0.0}
        for pid in self.pids():
            try:
                text = Path(f"/proc/{pid}/smaps_rollup").read_text()
            except OSError:
                continue
            total["processes"] += 1
            for line in text.splitlines():
                name, _, value = line.partition(":")
                field = {"Pss": "pss", "Pss_Anon": "pss_anon", "Pss_Shmem": "pss_shmem",
                         "Rss": "rss_sum"}.get(name)
                if field:
                    total[field] += int(value.split()[0]) / 1024
        return total


def create_database(cluster: Cluster, name: str) -> str:
    """Create database ``name`` in the cluster (with the vector extension) if missing; its URL."""
    args = ["-h", "127.0.0.1", "-p", str(cluster.port), "-U", "postgres"]
    found = subprocess.run([str(PG_BIN / "psql"), *args, "-tAc",
                            f"SELECT 1 FROM pg_database WHERE datname = '{name}'"],
                           check=True, text=True, capture_output=True).stdout.strip()
    if not found:
        subprocess.run([str(PG_BIN / "createdb"), *args, name], check=True)
    subprocess.run([str(PG_BIN / "psql"), *args, "-d", name, "-qc",
                    "CREATE EXTENSION IF NOT EXISTS vector; CREATE EXTENSION IF NOT EXISTS pg_prewarm"],
                   check=True, capture_output=True)
    return cluster.url(name)


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("action", choices=("start", "stop", "memory", "remove"))
    p.add_argument("dir", type=Path)
    p.add_argument("--port", type=int, default=55433)
    p.add_argument("--shared-buffers", default=SETTINGS["shared_buffers"])
    a = p.parse_args()
    cluster = Cluster(a.dir, a.port, {"shared_buffers": a.shared_buffers})
    if a.action == "start":
        cluster.start()
        print(cluster.url())
    elif a.action == "stop":
        cluster.stop()
    elif a.action == "remove":
        cluster.remove()
    else:
        print(" ".join(f"{k}={v:.0f}" for k, v in cluster.memory().items()))


if __name__ == "__main__":
    sys.exit(main())
