"""``corral demo``: a working corral on any machine, with no bucket.

It generates a directory of sample media (images, a WAV, a PDF and a text file), allows it as a
local root (``local_roots`` in ``DATA_DIR/config.toml``), and puts into the database a demo user
and token (when that user does not exist yet), a ``local`` integration over the directory, a
metadata schema, and a folder with the files registered by a real upload job, run in this
process.  Running it again changes nothing that is already there: the files are regenerated
byte for byte, and the upload skips URLs the folder already holds.

No framework here: ``corral/cli/demo_commands.py`` is the command.
"""

from __future__ import annotations

import io
import json
import math
import struct
import threading
import time
import uuid
import wave
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from corral import errors
from corral.core import folders, identity, integrations
from corral.core.identity import Principal
from corral.core.metadata import service as metadata_service
from corral.core.metadata.schema import from_native, to_native
from corral.db.engine import Database
from corral.db.tables import User
from corral.settings import DATA_DIR_CONFIG, Settings

DEMO_EMAIL = "demo@example.com"
DEMO_ORG = "Demo"
INTEGRATION = "demo-media"
FOLDER = "demo"
#: The keys the demo's files carry (``camera`` is required, as in the README).
SCHEMA_KEYS: dict[str, dict[str, Any]] = {
    "camera": {"type": "string", "required": True},
    "captured_at": {"type": "datetime"},
    "weather": {"type": "enum", "values": ["rain", "snow", "sunny"]},
}
_COLOURS = [("red", (200, 40, 40)), ("green", (40, 160, 70)), ("blue", (40, 80, 200)),
            ("amber", (230, 170, 30)), ("violet", (130, 60, 180)), ("teal", (30, 150, 150))]
_WEATHER = ["sunny", "rain", "snow"]


@dataclass(frozen=True)
class MediaFile:
    name: str
    section: str  # the JSON manifest's section: images, audio, pdfs, text
    metadata: dict[str, Any]


@dataclass
class DemoReport:
    media_dir: Path
    config_file: Path
    files: list[MediaFile]
    email: str
    user_created: bool
    token: str | None
    integration: str
    integration_created: bool
    schema_version: int
    schema_changed: bool
    folder: str
    job_id: uuid.UUID
    job_status: str
    counts: dict[str, Any] = field(default_factory=dict)


# -- the media --------------------------------------------------------------------------------


def _png(index: int, size: tuple[int, int]) -> bytes:
    from PIL import Image, ImageDraw

    name, colour = _COLOURS[index % len(_COLOURS)]
    image = Image.new("RGB", size, colour)
    draw = ImageDraw.Draw(image)
    w, h = size
    for i in range(0, w, 16):  # a pattern, so the files are not blank
        draw.line([(i, 0), (w - i, h)], fill=(255, 255, 255), width=1)
    draw.rectangle([w // 4, h // 4, 3 * w // 4, 3 * h // 4], outline=(0, 0, 0), width=3)
    draw.text((8, 8), f"corral demo {index}: {name}", fill=(0, 0, 0))
    out = io.BytesIO()
    image.save(out, "PNG", optimize=False)
    return out.getvalue()


def _jpeg(index: int, size: tuple[int, int]) -> bytes:
    from PIL import Image

    image = Image.open(io.BytesIO(_png(index, size)))
    out = io.BytesIO()
    image.save(out, "JPEG", quality=85)
    return out.getvalue()


def _wav(seconds: float = 1.0, rate: int = 16000, hz: float = 440.0) -> bytes:
    out = io.BytesIO()
    with wave.open(out, "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(rate)
        samples = (int(12000 * math.sin(2 * math.pi * hz * i / rate)) for i in range(int(seconds * rate)))
        frames = b"".join(struct.pack("<h", v) for v in samples)
        w.writeframes(frames)
    return out.getvalue()


def _pdf() -> bytes:
    from PIL import Image, ImageDraw

    page = Image.new("RGB", (595, 842), (255, 255, 255))  # A4 at 72 dpi
    ImageDraw.Draw(page).text((72, 72), "corral demo: a one-page PDF", fill=(0, 0, 0))
    out = io.BytesIO()
    page.save(out, "PDF", resolution=72.0)
    return out.getvalue()


def _metadata(index: int) -> dict[str, Any]:
    when = datetime(2024, 5, 1, 9, 0, tzinfo=UTC) + timedelta(hours=index)
    return {"camera": f"cam-{index % 3 + 1}", "captured_at": when.isoformat(), "weather": _WEATHER[index % 3]}


def generate_media(directory: Path) -> list[MediaFile]:
    """Write the sample files into ``directory`` (the same bytes every time); list them."""
    directory.mkdir(parents=True, exist_ok=True)
    files: list[tuple[str, str, bytes]] = []
    for i in range(6):
        size = (320 + 32 * i, 240 + 16 * i)
        if i % 2:
            files.append((f"images/photo-{i}.jpg", "images", _jpeg(i, size)))
        else:
            files.append((f"images/photo-{i}.png", "images", _png(i, size)))
    files.append(("audio/tone-440hz.wav", "audio", _wav()))
    files.append(("documents/leaflet.pdf", "pdfs", _pdf()))
    notes = b"corral demo notes\nThese files were generated by `corral demo`.\n"
    files.append(("documents/notes.txt", "text", notes))
    out = []
    for i, (name, section, data) in enumerate(files):
        path = directory / name
        path.parent.mkdir(parents=True, exist_ok=True)
        if not path.is_file() or path.read_bytes() != data:
            path.write_bytes(data)
        out.append(MediaFile(name, section, _metadata(i)))
    return out


def manifest(media_dir: Path, files: list[MediaFile]) -> bytes:
    """A JSON manifest of the files, by ``file://`` URL, each with its metadata."""
    sections: dict[str, list[dict[str, Any]]] = {}
    for f in files:
        url = (media_dir / f.name).as_uri()
        entry = {"objectUrl": url, "title": f.name, "clientMetadata": f.metadata}
        sections.setdefault(f.section, []).append(entry)
    return json.dumps(sections, indent=2).encode()


# -- the configuration --------------------------------------------------------------------------


def check_media_dir(media_dir: Path, data_dir: Path) -> None:
    """The media directory must lie outside the data directory, and not contain it."""
    media, data = media_dir.resolve(), data_dir.resolve()
    if media == data or media.is_relative_to(data) or data.is_relative_to(media):
        raise errors.InvalidInput(
            f"the demo's media directory {media} must lie outside the data directory {data}, "
            "and not contain it: choose another with --media-dir"
        )


def allow_local_root(data_dir: Path, root: Path) -> Path:
    """Add ``root`` to ``local_roots`` in ``DATA_DIR/config.toml`` (kept, if already there)."""
    import tomllib

    path = data_dir / DATA_DIR_CONFIG
    values: dict[str, Any] = {}
    if path.is_file():
        values = tomllib.loads(path.read_text(encoding="utf-8"))
    roots = values.get("local_roots", [])
    roots = roots if isinstance(roots, list) else [r for r in str(roots).split(":") if r]
    if str(root) not in roots:
        roots.append(str(root))
    values["local_roots"] = roots
    path.write_text(_toml(values), encoding="utf-8")
    return path


def _toml(values: dict[str, Any]) -> str:
    """The settings as TOML: strings, numbers, booleans and lists of strings are all corral has."""
    lines = ["# Settings of this data directory, written by corral (corral demo); see docs/configuration.md."]
    for key, value in values.items():
        lines.append(f"{key} = {json.dumps(value)}")  # a JSON string or list is valid TOML
    return "\n".join(lines) + "\n"


# -- the database ---------------------------------------------------------------------------------


def _principal(user: User) -> Principal:
    return identity.principal_for_user(user, "bearer")


def _user(db: Database, email: str, org: str, ssh_public_key: str | None) -> tuple[User, bool, str | None]:
    with db.write() as s:
        try:
            user = identity.get_user_by_email(s, email)
            created, token = False, None
        except errors.NotFound:
            user = identity.create_user(s, email, org_name=org, role="admin")
            created = True
            token, _ = identity.create_token(s, email, name="corral demo")
        if ssh_public_key is not None:
            key = identity.parse_ssh_public_key(ssh_public_key)
            if identity.user_for_key_id(s, key.key_id) is None:
                identity.add_ssh_key(s, email, ssh_public_key)
        s.expunge(user)
        return user, created, token


def _integration(db: Database, settings: Settings, principal: Principal, media_dir: Path) -> bool:
    with db.write() as s:
        try:
            existing = integrations.get(s, principal.org_id, INTEGRATION)
        except errors.NotFound:
            integrations.create(s, principal, settings, title=INTEGRATION,
                                provider="local", values={"root": str(media_dir)})
            return True
    if existing.provider != "local" or existing.config.get("root") != str(media_dir):
        raise errors.Conflict(
            f"an integration titled {INTEGRATION!r} already exists over {existing.config.get('root')}, "
            f"not {media_dir}: give the demo that directory with --media-dir"
        )
    return False


def _schema(db: Database, principal: Principal) -> tuple[int, bool]:
    with db.write() as s:
        now = metadata_service.current(s, principal.org_id, lock=True)
        document = to_native(now.schema)
        missing = {k: v for k, v in SCHEMA_KEYS.items() if k not in document["keys"]}
        if not missing:
            return now.version, False
        document["keys"].update(missing)
        result = metadata_service.save(s, principal, from_native(document), base_version=now.version)
        return result.state.version, result.changed


def _register(
    db: Database, settings: Settings, principal: Principal, body: bytes
) -> tuple[uuid.UUID, str, dict[str, Any]]:
    """One upload job, run by a worker in this process until it ends."""
    import corral.registration.jobs as registration
    from corral.jobs import queue
    from corral.jobs.worker import Worker
    from corral.registration import service

    job_id = service.start_import(db, settings, principal, folder=FOLDER, integration=INTEGRATION,
                                  manifest=io.BytesIO(body), skip_duplicate_urls=True)
    worker = Worker(db, settings, shutdown_grace_seconds=10)
    thread = threading.Thread(target=worker.run, name="corral-demo-worker", daemon=True)
    thread.start()
    try:
        deadline = time.monotonic() + 300
        while True:
            with db.read() as s:
                state = queue.job_state(s, principal.org_id, job_id, error_limit=0)
            if state.is_terminal:
                break
            if time.monotonic() > deadline:
                raise errors.CorralError(f"the demo's upload job {job_id} did not finish within 5 minutes")
            worker.wake()
            time.sleep(0.05)
    finally:
        worker.stop()
        thread.join(20)
    assert state.files is not None and state.kind == registration.KIND
    return job_id, state.status, state.files


def run(
    db: Database,
    settings: Settings,
    media_dir: Path,
    files: list[MediaFile],
    *,
    email: str = DEMO_EMAIL,
    org: str = DEMO_ORG,
    ssh_public_key: str | None = None,
    say: Callable[[str], None] = lambda _: None,
) -> DemoReport:
    """Set up the demo in ``db`` (its data directory's settings must allow ``media_dir``)."""
    if not settings.allows_local_root(media_dir):
        raise errors.ConfigurationError(
            f"{media_dir} is not under any of local_roots ({settings.local_roots or 'none'}): "
            "CORRAL_LOCAL_ROOTS or a corral.toml overrides the data directory's config.toml; add it there"
        )
    user, user_created, token = _user(db, email, org, ssh_public_key)
    if user.role != "admin":
        raise errors.PermissionDenied(f"{email} is not an admin: the demo needs an admin (try --email)")
    principal = _principal(user)
    integration_created = _integration(db, settings, principal, media_dir)
    say(f"integration {INTEGRATION!r} (local) over {media_dir}")
    version, changed = _schema(db, principal)
    say(f"metadata schema version {version}: camera (required), captured_at, weather")
    with db.write() as s:
        folders.create_path(s, principal, FOLDER)
    job_id, status, counts = _register(db, settings, principal, manifest(media_dir, files))
    return DemoReport(
        media_dir=media_dir, config_file=settings.data_dir / DATA_DIR_CONFIG, files=files,
        email=user.email, user_created=user_created, token=token, integration=INTEGRATION,
        integration_created=integration_created, schema_version=version, schema_changed=changed,
        folder=FOLDER, job_id=job_id, job_status=status, counts=counts,
    )
