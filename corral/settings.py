"""Settings: one object, read once at start-up, passed into every factory.

Precedence is a command-line flag, then the environment (``CORRAL_*``), then a ``.env`` file in
the working directory, then the configuration files (see ``discover``), then the default.
Every field carries a help string; ``docs/configuration.md`` is generated from them (see
``corral.settings.settings_table``).

**Finding the data directory** (``discover``), first match wins: the ``--data-dir`` flag,
``CORRAL_DATA_DIR``, ``data_dir`` in a ``corral.toml`` in the working directory or one of its
parents, ``data_dir`` in the user's ``~/.config/corral/config.toml`` (``CORRAL_CONFIG_DIR`` or
``XDG_CONFIG_HOME`` move it), and finally ``./corral-data``.  Settings are read from those files
too, and from ``DATA_DIR/config.toml``, which corral itself writes (``corral demo`` records its
media directory there, in ``local_roots``).
"""

from __future__ import annotations

import dataclasses
import os
import secrets
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal
from urllib.parse import urlsplit

from pydantic import Field, SecretStr, ValidationError, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from corral.errors import ConfigurationError

#: Generated secret keys already read, by file (the file never changes once written).
_SECRET_FILES: dict[Path, bytes] = {}


class Settings(BaseSettings):
    model_config = SettingsConfigDict(
        env_prefix="CORRAL_", env_file=".env", extra="ignore", frozen=True
    )

    data_dir: Path = Field(
        Path("./corral-data"),
        description="Directory holding the embedded SQLite database, the generated secret key "
        "and corral-managed uploads.",
    )
    database_url: str | None = Field(
        None,
        description="SQLAlchemy URL of the database. Unset means SQLite at DATA_DIR/corral.db. "
        "Use postgresql+psycopg://user@host/db to scale out.",
    )
    secret_key: SecretStr | None = Field(
        None,
        description="Server secret, at least 32 characters, shared by every API server and worker "
        "(for encrypting integration credentials and signing local-storage URLs). Generated into "
        "DATA_DIR/secret.key when unset on SQLite; required with PostgreSQL.",
    )
    host: str = Field("127.0.0.1", description="Interface `corral serve` binds to.")
    port: int = Field(8080, ge=1, le=65535, description="Port `corral serve` listens on.")
    log_level: Literal["debug", "info", "warning", "error"] = Field(
        "info", description="Minimum level of log records."
    )
    log_format: Literal["json", "console"] = Field(
        "console",
        description="`console`: one human-readable line per record; `json`: one JSON object per line, "
        "for log collectors. Either way a request's line has its method, path, status and duration in ms.",
    )
    vector_store: Literal["auto", "embedded", "pgvector", "exact"] = Field(
        "auto",
        description="Where similarity search finds vectors: `embedded` (partitioned index files, "
        "memory-mapped, in DATA_DIR/vectors), `pgvector` (PostgreSQL with the vector extension), "
        "`exact` (no index: every search scores every candidate). `auto`: pgvector on PostgreSQL "
        "when the extension is installed, else embedded.",
    )
    worker_concurrency: int = Field(
        4, ge=1, le=256, description="Job units one worker process handles at the same time."
    )
    job_lease_seconds: float = Field(
        60.0,
        gt=0,
        description="How long a claimed job unit stays reserved for its worker without a "
        "heartbeat. A killed worker's units return to the queue after this at the latest; within "
        "seconds when another worker can tell it is gone (same host, or a silent heartbeat on "
        "PostgreSQL). A worker on the same host whose process still runs keeps its units past it "
        "(a late heartbeat there means load, not death), up to ten leases (at least 5 min) without a "
        "heartbeat, when it is taken for hung.",
    )
    job_poll_seconds: float = Field(
        0.5, gt=0, description="How often an idle worker looks for new job units."
    )
    worker_processes: int | None = Field(
        None,
        ge=0,
        le=64,
        description="Extra job worker processes `corral serve` starts beside its first one, so CPU-heavy "
        "jobs use more cores. Unset: one per CPU beyond the first. 0: none.",
    )
    api_workers: int | None = Field(
        None,
        ge=1,
        le=64,
        description="API processes `corral serve` runs (`--workers`), sharing its port. Unset: one per "
        "CPU core.",
    )
    worker_nice: int = Field(
        10,
        ge=0,
        le=19,
        description="Niceness of the job worker processes `corral serve` starts: the higher, the more the "
        "API processes get the CPU first while imports run. 0: equal priority.",
    )
    api_threads: int = Field(
        16,
        ge=1,
        le=1000,
        description="Threads one API process runs blocking work in (database reads, signing). Python "
        "runs one at a time, so more only adds contention; requests beyond wait their turn, bounded by "
        "CORRAL_MAX_CONCURRENT_REQUESTS.",
    )
    max_concurrent_requests: int = Field(
        256,
        ge=1,
        le=100_000,
        description="Requests one API process handles at the same time (long polls and streams "
        "included); one more is answered at once with 503 and `Retry-After: 1` instead of queueing.",
    )
    job_claim_batch: int = Field(
        16, ge=1, le=1000, description="Job units a worker claims in one transaction."
    )
    manifest_pipe_min_bytes: int = Field(
        16 << 20,
        ge=0,
        description="A manifest at least this large (bytes) is parsed and checked in a child process "
        "of the job's planner, which checks the entries it is sent meanwhile; for a strict "
        "client-only integration the child also checks each entry and builds the batches' rows, and "
        "the planner's process only writes them (two cores for one import; the same entries, "
        "errors, messages and rows). 0: every manifest.",
    )
    manifest_pipe_spare: bool = Field(
        True,
        description="Each job worker process keeps a spare manifest reader (a child process started "
        "ahead of time, its imports done, waiting for a job) for the next manifest of at least "
        "CORRAL_MANIFEST_PIPE_MIN_BYTES, so a large import's first batch is not held up by the "
        "child's start (0.7-0.8 s of CPU, seconds on a loaded machine). It costs about 100 MB of "
        "memory per worker process while it waits. Off: each reader starts when its job does.",
    )
    cloud_sync_interval_seconds: float = Field(
        86400.0,
        ge=0,
        description="How often the job workers sync each cloud-synced folder on their own (seconds "
        "since its last sync started; 0: only when asked). One sync per folder at a time, whatever "
        "the number of worker processes.",
    )
    long_poll_cap_seconds: float = Field(
        55.0,
        gt=0,
        le=150,
        description="Longest time the server holds a long-poll request (the SDK's read timeout "
        "is 180 s).",
    )
    long_poll_interval_seconds: float = Field(
        0.5,
        gt=0,
        le=60,
        description="Longest pause between a long-poll's reads of a job's state. A job that ends "
        "wakes its long-polls at once (the job workers ring the API processes); this interval is "
        "the fallback for a wake-up that is lost.",
    )
    signature_max_age_seconds: int = Field(
        300,
        ge=1,
        description="Oldest `created` timestamp accepted on a signed request, in seconds.",
    )
    signature_max_skew_seconds: int = Field(
        60,
        ge=0,
        description="How far in the future a signed request's `created` timestamp may be.",
    )
    auth_cache_seconds: float = Field(
        1.0,
        ge=0,
        le=60,
        description="How long a process remembers whom a bearer token or SSH key belongs to. A change "
        "made through corral (revoking, disabling) applies at once in every process, which it "
        "rings; one whose ring is lost, or made with plain SQL, within this time. 0: look the "
        "credential up on every request.",
    )
    sqlite_busy_timeout_ms: int = Field(
        30000, ge=0, description="How long SQLite waits for a lock before giving up."
    )
    query_time_limit_seconds: float = Field(
        60.0,
        ge=0,
        le=86400,
        description="Longest time one statement of a query a client composes may run in the "
        "database: the Index's pages, counts, facets, exports, maps and similarity searches "
        "(REST, CLI, web UI). A query over it is refused with 400 query_too_slow (nothing is "
        "kept running after it). 0: no limit.",
    )
    index_snapshot_mb: int = Field(
        1024,
        ge=0,
        description="Memory, in MiB, each API process may give the index's columnar snapshots "
        "(counts, facets and sorted pages answered from columns in memory; about 32 bytes per "
        "item, plus 8 per item and number/datetime/boolean key and 4 per item and string key, "
        "plus each string key's distinct values). 0 turns them off: every query reads SQL.",
    )
    index_snapshot_dir: Path | None = Field(
        None,
        description="Directory where API processes save the index's columnar snapshots of the "
        "organisations too large to build inside a query (one file per organisation, written "
        "atomically; each at most the size of its snapshot in memory, so within "
        "CORRAL_INDEX_SNAPSHOT_MB, and a larger file is not read), and load them when they start, "
        "so a restarted process answers counts and facets from columns within about a second. "
        "A file is used only if this database recorded it and its change log still reaches it; any "
        "other file is ignored and replaced. Unset: DATA_DIR/index. Operator-only: no local "
        "integration may be rooted in or around it.",
    )
    index_snapshot_files: bool = Field(
        True,
        description="Save and load the index snapshot files (CORRAL_INDEX_SNAPSHOT_DIR). false: "
        "every process builds its snapshots from the database after it starts.",
    )
    db_pool_size: int | None = Field(
        None,
        ge=1,
        description="PostgreSQL connections one process keeps open (as many again are opened for a burst "
        "and closed after). Unset: CORRAL_API_THREADS + 4, a connection for each thread that may read at "
        "once (the API's threads, the pages read ahead, a stream), so none is opened per request. Data-row "
        "pages use a second pool of half as many (at least 2, no burst), whose sessions run with "
        "enable_sort off.",
    )
    session_hours: float = Field(
        168.0,
        gt=0,
        le=24 * 90,
        description="How long a web UI sign-in lasts (the session cookie), in hours. Signing out "
        "or revoking the session ends it sooner.",
    )
    public_url: str | None = Field(
        None,
        description="Base URL users reach corral at, e.g. https://corral.example.com. Local-directory "
        "signed URLs point here and `integration check` tests bucket CORS for this origin. "
        "Default http://HOST:PORT.",
    )
    upload_integration: str | None = Field(
        None,
        description="Title of the integration that files uploaded through corral (`corral item upload`) "
        "are stored in, looked up in the uploader's organisation. Unset: a `local` integration named "
        "`corral-uploads`, rooted at DATA_DIR/uploads/ORG_ID, created on first use.",
    )
    storage_connect_timeout_seconds: float = Field(
        10.0, gt=0, description="How long to wait for a connection to an object store."
    )
    storage_read_timeout_seconds: float = Field(
        60.0, gt=0, description="How long to wait for each response from an object store."
    )
    # -- security boundaries (docs/security.md) ---------------------------------------------
    local_roots: str = Field(
        "",
        description="Directories (separated by `:`) under which organisation admins may root `local` "
        "integrations. Empty: no local integrations (except corral's own upload directory). A root "
        "that contains or sits inside DATA_DIR, the database file's directory or "
        "CORRAL_INDEX_SNAPSHOT_DIR is always refused. "
        "`corral demo` adds its media directory in DATA_DIR/config.toml.",
    )
    allowed_endpoints: str = Field(
        "",
        description="Comma-separated hosts, `host:port` pairs (that port only) and CIDR networks that "
        "integrations may reach although they are loopback, private, link-local or otherwise "
        "non-public (e.g. `127.0.0.1,minio.internal:9000,10.20.0.0/16`). Checked on the address a "
        "name resolves to, at every connection.",
    )
    allow_ambient_credentials: bool = Field(
        False,
        description="Let organisation admins create integrations that use the server's own cloud "
        "credentials (`auth: ambient`, or an S3 `role` assumed without access keys): the instance "
        "role or metadata service, `~/.aws`, `GOOGLE_APPLICATION_CREDENTIALS`, a managed identity. "
        "Off by default: those credentials are the operator's, and any organisation admin could "
        "reach every bucket they can read. Their bearer tokens (Azure, GCS) go only to the provider's "
        "own hosts, never to a custom endpoint. Turned off again, existing integrations of that kind "
        "answer 403 until they are given credentials of their own.",
    )
    max_json_body_bytes: int = Field(
        16 << 20, ge=1024, description="Largest request body of any route not listed below (413 above)."
    )
    max_manifest_bytes: int = Field(
        1 << 30, ge=1024, description="Largest manifest sent as the body of `POST /api/v1/imports`; "
        "spooled to a temporary file, not held in memory."
    )
    max_upload_bytes: int = Field(
        5 << 30, ge=1024, description="Largest file uploaded through a signed local-media link (`PUT`); "
        "spooled to a temporary file, not held in memory."
    )
    body_read_timeout_seconds: float = Field(
        30.0, gt=0, description="A request whose body stalls this long between two chunks is answered "
        "408 and its connection closed."
    )
    header_read_timeout_seconds: float = Field(
        10.0, gt=0, description="A connection that has not sent a complete request head this long after "
        "it opened (or after its previous response) is closed."
    )
    keep_alive_timeout_seconds: float = Field(
        5.0, gt=0, description="How long an idle keep-alive connection stays open between requests."
    )
    max_header_bytes: int = Field(
        32 << 10, ge=4096, description="The longest request head (request line plus headers): the server "
        "buffers no more of an unfinished one, and a longer one is refused (400)."
    )

    @field_validator("public_url")
    @classmethod
    def _public_url(cls, v: str | None) -> str | None:
        if v and not v.startswith(("http://", "https://")):
            raise ValueError("CORRAL_PUBLIC_URL must start with http:// or https://")
        return v

    @field_validator("local_roots")
    @classmethod
    def _local_roots(cls, v: str) -> str:
        for entry in filter(None, v.split(":")):
            if not entry.startswith("/"):
                raise ValueError(f"CORRAL_LOCAL_ROOTS entries must be absolute paths, not {entry!r}")
        return v

    @field_validator("allowed_endpoints")
    @classmethod
    def _allowed_endpoints(cls, v: str) -> str:
        from corral.storage.netpolicy import EndpointPolicy

        EndpointPolicy.parse(v)  # raises ValueError naming the bad entry
        return v

    # -- derived values -------------------------------------------------
    @property
    def resolved_database_url(self) -> str:
        if self.database_url:
            return self.database_url
        return f"sqlite:///{(self.data_dir / 'corral.db').resolve()}"

    @property
    def resolved_index_snapshot_dir(self) -> Path | None:
        """Where index snapshot files are kept (None: not kept)."""
        if not self.index_snapshot_files or self.index_snapshot_mb == 0:
            return None
        return (self.index_snapshot_dir or self.data_dir / "index").expanduser().resolve()

    @property
    def resolved_public_url(self) -> str:
        if self.public_url:
            return self.public_url.rstrip("/")
        host = "127.0.0.1" if self.host in ("0.0.0.0", "::", "") else self.host
        return f"http://{host}:{self.port}"

    @property
    def public_origin(self) -> str:
        """scheme://host[:port] of the public URL: the web UI's origin, for CORS."""
        parts = urlsplit(self.resolved_public_url)
        return f"{parts.scheme}://{parts.netloc}"

    @property
    def resolved_worker_processes(self) -> int:
        if self.worker_processes is not None:
            return self.worker_processes
        return max(0, (os.cpu_count() or 1) - 1)

    @property
    def resolved_db_pool_size(self) -> int:
        return self.db_pool_size if self.db_pool_size is not None else self.api_threads + 4

    @property
    def resolved_api_workers(self) -> int:
        return self.api_workers if self.api_workers is not None else max(1, os.cpu_count() or 1)

    @property
    def local_root_paths(self) -> list[Path]:
        return [Path(p).expanduser().resolve() for p in self.local_roots.split(":") if p.strip()]

    def allows_local_root(self, root: Path) -> bool:
        """Whether ``root`` lies under one of ``local_roots`` (the rule of ``corral.storage.localroots``;
        the data directory's own exclusion is checked where integrations are saved and used)."""
        from corral.storage.localroots import LocalRootPolicy, LocalRootRefused

        try:
            LocalRootPolicy(allowed=tuple(str(p) for p in self.local_root_paths)).check(root.expanduser())
        except LocalRootRefused:
            return False
        return True

    @property
    def database_label(self) -> str:
        """Which database, for an error: the SQLite file, or the URL without its password."""
        if self.database_url is None:
            return f"SQLite at {(self.data_dir / 'corral.db').resolve()}"
        from sqlalchemy.engine import make_url
        from sqlalchemy.exc import ArgumentError

        try:
            shown = make_url(self.database_url).render_as_string(hide_password=True)
        except ArgumentError:
            shown = "(not a URL)"
        return f"CORRAL_DATABASE_URL={shown}"

    @property
    def is_sqlite(self) -> bool:
        return self.resolved_database_url.startswith("sqlite")

    def ensure_data_dir(self) -> Path:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        return self.data_dir

    def resolved_secret_key(self) -> bytes:
        """The server secret; generated once into the data directory on SQLite."""
        if self.secret_key is not None:
            value = self.secret_key.get_secret_value()
            if len(value) < 32:
                raise ConfigurationError("CORRAL_SECRET_KEY must be at least 32 characters long.")
            return value.encode()
        if not self.is_sqlite:
            raise ConfigurationError(
                "CORRAL_SECRET_KEY is missing: it is required with an external database, and "
                "every API server and worker must share it."
            )
        path = (self.data_dir / "secret.key").resolve()
        known = _SECRET_FILES.get(path)
        if known is not None:  # read once per process: signing asks for it on every request
            return known
        self.ensure_data_dir()
        if not path.exists():
            path.touch(mode=0o600)
            path.write_text(secrets.token_urlsafe(48))
        generated = path.read_text().strip().encode()
        _SECRET_FILES[path] = generated
        return generated


#: Settings whose value an error never repeats.
_SECRET_SETTINGS = frozenset({"secret_key", "database_url"})


def describe_invalid(exc: ValidationError, origins: Mapping[str, Path] | None = None) -> str:
    """A settings validation error on one line, naming each setting as the operator sets it:
    ``invalid setting CORRAL_PORT (port): Input should be a valid integer... (got 'abc')``, or
    ``invalid setting port in /srv/corral.toml: …`` for a value a configuration file gave."""
    parts = []
    for error in exc.errors(include_url=False):
        name = str(error["loc"][0]) if error["loc"] else "?"
        message = str(error["msg"]).removeprefix("Value error, ")
        got = "" if name in _SECRET_SETTINGS or "input" not in error else f" (got {error['input']!r})"
        origin = (origins or {}).get(name)
        where = f"{name} in {origin}" if origin else f"CORRAL_{name.upper()} ({name})"
        parts.append(f"{where}: {message}{got}")
    return "invalid setting " + "; ".join(parts)


#: CORRAL_ variables that are not server settings: the CLI's client variables, the test suite's
#: and the scripts' (docs/configuration.md, docs/testing.md).
NOT_SETTINGS = frozenset({"CORRAL_URL", "CORRAL_TOKEN", "CORRAL_SSH_KEY", "CORRAL_PROFILE",
                          "CORRAL_CONFIG_DIR", "CORRAL_CHROMIUM", "CORRAL_PG_BIN"})
NOT_SETTINGS_PREFIXES = ("CORRAL_TEST_", "CORRAL_SCHEMATHESIS_", "CORRAL_BENCH_")


def unknown_variables(
    environ: Mapping[str, str] | None = None, dotenv: Path | None = Path(".env")
) -> list[str]:
    """One warning per ``CORRAL_`` variable of the environment or the ``.env`` file that no setting
    reads (a typo such as ``CORRAL_WORKER_CONCURENCY`` would otherwise be ignored without a word),
    naming the nearest setting."""
    import difflib

    env = os.environ if environ is None else environ
    names = set(env)
    if dotenv is not None and dotenv.is_file():
        from dotenv import dotenv_values

        names |= set(dotenv_values(dotenv))
    known = [f"CORRAL_{name.upper()}" for name in Settings.model_fields]
    out = []
    for name in sorted(names):
        upper = name.upper()
        if (not upper.startswith("CORRAL_") or upper in known or upper in NOT_SETTINGS
                or upper.startswith(NOT_SETTINGS_PREFIXES)):
            continue
        near = difflib.get_close_matches(upper, known, n=1, cutoff=0.8)
        hint = f"; did you mean {near[0]}?" if near else "; see docs/configuration.md for the names"
        out.append(f"Warning: {name} is not a corral setting and is ignored{hint}")
    return out


def settings_table() -> list[tuple[str, str, str]]:
    """(environment variable, default, help) for every setting, for the docs."""
    rows = []
    for name, field in Settings.model_fields.items():
        default = field.default
        shown = "" if default is None else str(default)
        rows.append((f"CORRAL_{name.upper()}", shown, field.description or ""))
    return rows


# -- finding the data directory and the configuration files ------------------------------------

PROJECT_CONFIG = "corral.toml"
DATA_DIR_CONFIG = "config.toml"
DEFAULT_DATA_DIR = Path("corral-data")


def user_config_path(environ: Mapping[str, str] | None = None) -> Path:
    env = os.environ if environ is None else environ
    base = env.get("CORRAL_CONFIG_DIR") or os.path.join(
        env.get("XDG_CONFIG_HOME") or os.path.expanduser("~/.config"), "corral"
    )
    return Path(base) / "config.toml"


@dataclass(frozen=True)
class Discovered:
    """The settings, which data directory they name and why, and what was looked at."""

    settings: Settings
    data_dir: Path  # absolute
    source: str  # e.g. "--data-dir", "CORRAL_DATA_DIR", "/srv/corral.toml", "the default ./corral-data"
    looked: list[str] = dataclasses.field(default_factory=list)
    config_files: list[Path] = dataclasses.field(default_factory=list)

    @property
    def exists(self) -> bool:
        return self.data_dir.is_dir()

    def where_looked(self) -> str:
        return "; ".join(self.looked)


def read_config_file(path: Path) -> dict[str, Any]:
    """A TOML file of settings (names as in Settings, lower case); paths relative to the file."""
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
        raise ConfigurationError(f"{path}: cannot read it as TOML ({exc})") from None
    unknown = sorted(set(data) - set(Settings.model_fields))
    if unknown:
        raise ConfigurationError(
            f"{path}: unknown setting(s) {', '.join(unknown)}; see docs/configuration.md for the names"
        )
    out: dict[str, Any] = {}
    for key, value in data.items():
        if key == "data_dir":
            value = str((path.parent / Path(str(value)).expanduser()).resolve())
        elif key == "local_roots":
            items = value if isinstance(value, list) else str(value).split(":")
            value = ":".join(
                str((path.parent / Path(str(v)).expanduser()).resolve()) for v in items if str(v).strip()
            )
        out[key] = value
    return out


def find_project_config(cwd: Path) -> Path | None:
    for directory in (cwd, *cwd.parents):
        candidate = directory / PROJECT_CONFIG
        if candidate.is_file():
            return candidate
    return None


def discover(
    data_dir: Path | None = None,
    *,
    cwd: Path | None = None,
    environ: Mapping[str, str] | None = None,
    **overrides: Any,
) -> Discovered:
    """Settings for a command: ``data_dir`` and ``overrides`` are its flags (None: not given)."""
    env = os.environ if environ is None else environ
    cwd = (cwd or Path.cwd()).resolve()
    flags = {k: v for k, v in overrides.items() if v is not None}
    looked = ["--data-dir", "CORRAL_DATA_DIR"]
    project = find_project_config(cwd)
    looked.append(f"{PROJECT_CONFIG} in {cwd} and its parents" + (f" (found {project})" if project else ""))
    user = user_config_path(env)
    looked.append(str(user))
    looked.append(f"the default ./{DEFAULT_DATA_DIR}")
    project_values = read_config_file(project) if project else {}
    user_values = read_config_file(user) if user.is_file() else {}
    try:
        from_env = Settings(**flags)  # the environment and .env, to tell what they set
    except ValidationError as exc:
        raise ConfigurationError(describe_invalid(exc)) from None
    if data_dir is not None:
        chosen, source = Path(data_dir), "--data-dir"
    elif "data_dir" in from_env.model_fields_set:
        chosen, source = from_env.data_dir, "CORRAL_DATA_DIR"
    elif "data_dir" in project_values:
        chosen, source = Path(project_values["data_dir"]), str(project)
    elif "data_dir" in user_values:
        chosen, source = Path(user_values["data_dir"]), str(user)
    else:
        chosen, source = cwd / DEFAULT_DATA_DIR, f"the default ./{DEFAULT_DATA_DIR}"
    chosen = (cwd / chosen.expanduser()).resolve()
    files: list[Path] = []
    values: dict[str, Any] = {}
    origins: dict[str, Path] = {}  # which file gave each value, to name it if it is invalid
    own = chosen / DATA_DIR_CONFIG
    for path in (user, own, project):  # lowest precedence first
        if path is not None and path.is_file():
            read = (user_values if path == user else project_values if path == project
                    else read_config_file(path))
            values.update(read)
            origins.update(dict.fromkeys(read, path))
            files.append(path)
    values.pop("data_dir", None)
    values = {k: v for k, v in values.items() if k not in from_env.model_fields_set}
    try:
        settings = Settings(**{**values, **flags, "data_dir": chosen})
    except ValidationError as exc:
        given = {k: p for k, p in origins.items() if k in values and k not in flags}
        raise ConfigurationError(describe_invalid(exc, given)) from None
    return Discovered(settings, chosen, source, looked, files)
