"""The collector tuning the server's and workers' processes apply (corral.runtime)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from corral.runtime import GC_THRESHOLD

ROOT = Path(__file__).resolve().parents[1]


def _run(code: str, tmp_path: Path) -> dict[str, object]:
    """Run ``code`` in a fresh interpreter (the collector's state is process-wide) and return the
    collector's state it prints."""
    env = {**os.environ, "CORRAL_DATA_DIR": str(tmp_path / "data"), "CORRAL_SECRET_KEY": "r" * 40,
           "CORRAL_DATABASE_URL": "", "CORRAL_LOG_LEVEL": "warning"}
    code += "\nimport gc, json\nprint(json.dumps({'threshold': gc.get_threshold(), 'frozen': gc.get_freeze_count()}))"
    out = subprocess.run([sys.executable, "-c", code], env=env, cwd=ROOT, capture_output=True, text=True,
                         timeout=120)
    assert out.returncode == 0, out.stderr
    return dict(json.loads(out.stdout.strip().splitlines()[-1]))


def test_a_fresh_interpreter_has_the_defaults(tmp_path: Path) -> None:
    state = _run("import corral.api.app", tmp_path)  # importing tunes nothing
    assert tuple(state["threshold"]) != GC_THRESHOLD  # type: ignore[arg-type]
    assert state["frozen"] == 0


def test_an_api_process_tunes_its_collector_once_its_app_is_built(tmp_path: Path) -> None:
    state = _run("from corral.api.app import app_from_environment\napp_from_environment()", tmp_path)
    assert tuple(state["threshold"]) == GC_THRESHOLD  # type: ignore[arg-type]
    assert int(state["frozen"]) > 10_000  # type: ignore[call-overload]  # the modules and the app


def test_a_job_worker_tunes_its_collector_before_its_loop(tmp_path: Path) -> None:
    code = (
        "import signal\n"
        "from corral.db import create_database, migrate\n"
        "from corral.jobs.worker import run_worker_forever\n"
        "from corral.settings import Settings\n"
        "settings = Settings()\n"
        "db = create_database(settings)\n"
        "migrate.upgrade(db)\n"
        "run_worker_forever(db, settings, early=[signal.SIGTERM])  # stops at once\n"
    )
    state = _run(code, tmp_path)
    assert tuple(state["threshold"]) == GC_THRESHOLD  # type: ignore[arg-type]
    assert int(state["frozen"]) > 10_000  # type: ignore[call-overload]


def test_an_api_process_imports_the_storage_its_integrations_use_before_serving(tmp_path: Path) -> None:
    setup = (
        "from corral.core import integrations\n"
        "from corral.core.identity import Principal, create_user\n"
        "from corral.db import create_database, migrate\n"
        "from corral.settings import Settings\n"
        "settings = Settings()\n"
        "db = create_database(settings)\n"
        "migrate.upgrade(db)\n"
        "with db.write() as s:\n"
        "    user = create_user(s, 'w@x.io', org_name='W', role='admin')\n"
        "    admin = Principal(user.id, user.org_id, user.email, 'admin', 'bearer')\n"
        "    integrations.create(s, admin, settings, title='m', provider='s3', values={'bucket': 'media', "
        "'region': 'eu-west-1', 'access_key_id': 'AKIA1', 'secret_access_key': 's'}, strict_client_only=True)\n"
    )
    _run(setup, tmp_path)
    probe = (
        "import json, sys\n"
        "from corral.api.app import app_from_environment\n"
        "app_from_environment()\n"
        "from corral.storage import s3\n"
        "print(json.dumps({'azure': 'corral.storage.azure' in sys.modules, 'loader': s3._loader is not None}))\n"
    )
    env = {**os.environ, "CORRAL_DATA_DIR": str(tmp_path / "data"), "CORRAL_SECRET_KEY": "r" * 40,
           "CORRAL_DATABASE_URL": "", "CORRAL_LOG_LEVEL": "warning"}
    out = subprocess.run([sys.executable, "-c", probe], env=env, cwd=ROOT, capture_output=True, text=True,
                         timeout=120)
    assert out.returncode == 0, out.stderr
    state = json.loads(out.stdout.strip().splitlines()[-1])
    assert state == {"azure": False, "loader": True}  # S3's models loaded, no SDK of an unused provider


def test_an_api_process_without_integrations_imports_no_storage_sdk(tmp_path: Path) -> None:
    code = (
        "import sys\n"
        "from corral.db import create_database, migrate\n"
        "from corral.settings import Settings\n"
        "migrate.upgrade(create_database(Settings()))\n"
        "from corral.api.app import app_from_environment\n"
        "app_from_environment()\n"
        "assert not [m for m in ('corral.storage.s3', 'corral.storage.azure', 'corral.storage.gcs') "
        "if m in sys.modules], sorted(m for m in sys.modules if m.startswith('corral.storage'))\n"
    )
    _run(code, tmp_path)
