"""The SDK's legacy dataset upload poll (``datasetdatalongpolling/GET``, which
``Dataset.add_private_data_to_dataset_get_result`` sends again and again) is held on the event
loop, not in one of the API process's few threads: before, as many clients polling at once as the
pool has threads (``CORRAL_API_THREADS``) held every thread until their polls timed out, and every
other request (a folder listing, a sign-in) waited behind them."""

from __future__ import annotations

import json
import threading
import time
from pathlib import Path

import httpx
import pytest

from corral.api.app import create_app

THREADS = 2
POLLS = 6  # three times the pool
HOLD = 4.0


@pytest.fixture
def app(settings, db):  # type: ignore[no-untyped-def]
    """The API with a pool of two threads and no job worker (jobs stay pending), served by
    ``live_server``."""
    return create_app(settings.model_copy(update={"api_threads": THREADS}), db=db, run_worker=False)


@pytest.fixture
def server(live_server: str) -> str:
    return live_server


def _rpc(base: str, user, dataset: str, method: str, payload: dict) -> httpx.Response:  # type: ignore[no-untyped-def,type-arg]
    body = {"query_type": "datasetdatalongpolling", "query_method": method,
            "values": {"uid": dataset, "payload": payload}}
    headers = {**user.bearer, "Content-Type": "application/json", "ResourceType": "dataset", "ResourceID": dataset}
    return httpx.post(f"{base}/public", content=json.dumps(body), headers=headers, timeout=60)


def test_legacy_upload_polls_do_not_hold_the_threads(server: str, make_user, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    alice = make_user("alice@x.io")
    media = tmp_path / "media"
    media.mkdir()
    (media / "a.png").write_bytes(b"not read: no worker runs")
    integration = httpx.post(f"{server}/api/v1/integrations", headers=alice.bearer,
                             json={"title": "disk", "provider": "local", "settings": {"root": str(media)}})
    assert integration.status_code == 201, integration.text
    dataset = httpx.post(f"{server}/api/v1/datasets", json={"title": "d"}, headers=alice.bearer).json()["id"]
    started = _rpc(server, alice, dataset, "POST", {
        "files": {"images": [{"objectUrl": (media / "a.png").as_uri()}]},
        "integrationId": integration.json()["id"], "ignoreErrors": False})
    assert started.status_code == 200, started.text
    job = started.json()["response"]["process_hash"]

    answers: list[tuple[float, httpx.Response]] = []

    def poll() -> None:
        t0 = time.monotonic()
        r = _rpc(server, alice, dataset, "GET", {"process_hash": job, "timeout_seconds": HOLD})
        answers.append((time.monotonic() - t0, r))

    polls = [threading.Thread(target=poll) for _ in range(POLLS)]
    for t in polls:
        t.start()
    time.sleep(0.5)  # every poll is being held
    t0 = time.monotonic()
    listing = httpx.get(f"{server}/api/v1/folders", headers=alice.bearer, timeout=60)
    waited = time.monotonic() - t0
    for t in polls:
        t.join()
    assert listing.status_code == 200, listing.text
    assert waited < HOLD / 2, f"a folder listing waited {waited:.1f} s behind {POLLS} polls"
    assert len(answers) == POLLS
    for took, r in answers:  # each poll held for its own time, none queued behind another's
        assert r.status_code == 200 and r.json()["response"]["status"] == "PENDING", r.text
        assert HOLD - 0.5 < took < 2 * HOLD - 0.5, took
