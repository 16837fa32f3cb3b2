"""Credentials taken away while their requests are in flight, on a real server, on SQLite and
PostgreSQL.

A long poll holds its request for up to ``CORRAL_LONG_POLL_CAP_SECONDS`` (55 s) after the request
guard authenticated it.  Revoking the token, ending the web session or disabling the user meanwhile
must end it with a 401, not answer the job's state (its files, errors and items) to a credential
that no longer opens anything.
"""

from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import Any

import httpx
import pytest

from corral.api.app import create_app
from corral.db.tables import User
from corral.db.types import utcnow

HOLD = 8.0


@pytest.fixture
def app(settings, db):  # type: ignore[no-untyped-def]
    """No job worker: the upload job stays pending, so every poll is held for its whole wait."""
    return create_app(settings, db=db, run_worker=False)


def _pending_job(base: str, alice: Any, tmp_path: Path) -> tuple[str, str]:
    """An upload job that stays pending, and its folder's id."""
    media = tmp_path / "media"
    media.mkdir()
    (media / "a.png").write_bytes(b"never read: no worker runs")
    made = httpx.post(f"{base}/api/v1/integrations", headers=alice.bearer,
                      json={"title": "disk", "provider": "local", "settings": {"root": str(media)}})
    assert made.status_code == 201, made.text
    folder = httpx.post(f"{base}/api/v1/folders", headers=alice.bearer, json={"path": "top"}).json()["id"]
    started = httpx.post(f"{base}/api/v1/imports", params={"folder": "top", "integration": "disk"},
                         headers=alice.bearer, content=f'{{"images": [{{"objectUrl": "{(media / "a.png").as_uri()}"}}]}}')
    assert started.status_code == 202, started.text
    return started.json()["job_id"], folder


def _hold(base: str, paths: list[str], headers: dict[str, str], cookies: dict[str, str] | None = None,
          ) -> tuple[list[threading.Thread], list[tuple[str, float, httpx.Response]]]:
    answers: list[tuple[str, float, httpx.Response]] = []

    def poll(path: str) -> None:
        t0 = time.monotonic()
        r = httpx.get(f"{base}{path}", headers=headers, cookies=cookies, timeout=60)
        answers.append((path, time.monotonic() - t0, r))

    threads = [threading.Thread(target=poll, args=(p,)) for p in paths]
    for t in threads:
        t.start()
    time.sleep(1.0)  # every poll is being held
    return threads, answers


def _polls(job: str, folder: str) -> list[str]:
    return [f"/api/v1/imports/{job}?wait={HOLD}", f"/api/v1/jobs/{job}?wait={HOLD}",
            f"/v2/public/storage/folders/{folder}/data-upload-jobs/{job}?timeoutSeconds={HOLD}"]


def test_a_revoked_token_ends_its_long_polls(live_server, make_user, tmp_path) -> None:  # type: ignore[no-untyped-def]
    """Revoked while its polls were held, a token's polls end at once with a 401 (they went on
    waiting and then answered the job's state, up to 55 s after ``DELETE /api/v1/tokens``, which
    says the token stops working at once)."""
    alice = make_user("alice@x.io")
    bob = make_user("bob@x.io", role="member")
    job, folder = _pending_job(live_server, alice, tmp_path)
    second = httpx.post(f"{live_server}/api/v1/tokens", headers=bob.bearer, json={"name": "poller"}).json()
    threads, answers = _hold(live_server, _polls(job, folder), {"Authorization": f"Bearer {second['token']}"})
    revoked = httpx.delete(f"{live_server}/api/v1/tokens/{second['id']}", headers=alice.bearer)
    assert revoked.status_code == 200, revoked.text
    for t in threads:
        t.join()
    assert len(answers) == 3
    for path, took, r in answers:
        assert r.status_code == 401, (path, r.status_code, r.text)
        assert "revoked" in r.json()["message"], r.text
        assert took < HOLD - 2, (path, took)  # ended by the revocation, not by the wait running out
    # the token's owner, with another token, still polls as before
    still = httpx.get(f"{live_server}/api/v1/imports/{job}?wait=0.2", headers=bob.bearer)
    assert still.status_code == 200 and still.json()["status"] == "PENDING", still.text


def test_a_disabled_user_and_an_ended_session_end_their_long_polls(live_server, make_user, db, tmp_path) -> None:  # type: ignore[no-untyped-def]
    """A user disabled while polling (their token's polls), and a web session signed out while
    its polls were held: 401, not the job's state."""
    alice = make_user("alice@x.io")
    bob = make_user("bob@x.io", role="member")
    carol = make_user("carol@x.io", role="member")
    job, folder = _pending_job(live_server, alice, tmp_path)

    threads, answers = _hold(live_server, _polls(job, folder)[:2], bob.bearer)
    with db.write() as s:
        s.get_one(User, bob.user_id).disabled_at = utcnow()
    for t in threads:
        t.join()
    assert sorted(r.status_code for _, _, r in answers) == [401, 401], [r.text for _, _, r in answers]

    signed_in = httpx.post(f"{live_server}/api/v1/sessions", json={"token": carol.token})
    assert signed_in.status_code == 201, signed_in.text
    cookies = dict(signed_in.cookies)
    threads, answers = _hold(live_server, _polls(job, folder)[:2], {}, cookies)
    out = httpx.delete(f"{live_server}/api/v1/sessions/current", cookies=cookies,
                       headers={"X-CSRF-Token": signed_in.json()["csrf_token"]})
    assert out.status_code == 204, out.text
    for t in threads:
        t.join()
    assert sorted(r.status_code for _, _, r in answers) == [401, 401], [r.text for _, _, r in answers]
