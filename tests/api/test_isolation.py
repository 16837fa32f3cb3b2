"""Another organisation's resources are invisible (404), never 403."""

from __future__ import annotations

from corral.jobs import queue


def _job(db, user, n=2):  # type: ignore[no-untyped-def]
    with db.write() as s:
        return queue.create_job(s, org_id=user.org_id, kind="noop", units=[{"i": i} for i in range(n)],
                                created_by=user.user_id).id


def test_org_b_cannot_see_org_a_jobs(client, db, make_user) -> None:  # type: ignore[no-untyped-def]
    alice = make_user("alice@a.org", org="Org A")
    bob = make_user("bob@b.org", org="Org B")
    job_a = _job(db, alice)

    assert client.get(f"/api/v1/jobs/{job_a}", headers=alice.bearer).status_code == 200
    r = client.get(f"/api/v1/jobs/{job_a}", headers=bob.bearer)
    assert r.status_code == 404 and r.json()["message"] == f"job {job_a} not found"
    assert client.post(f"/api/v1/jobs/{job_a}/cancel", headers=bob.bearer).status_code == 404
    assert client.get("/api/v1/jobs", headers=bob.bearer).json() == []
    assert [j["id"] for j in client.get("/api/v1/jobs", headers=alice.bearer).json()] == [str(job_a)]
    # bob's failed cancel changed nothing
    assert client.get(f"/api/v1/jobs/{job_a}", headers=alice.bearer).json()["units_pending"] == 2


def test_members_of_the_same_org_share_jobs(client, db, make_user) -> None:  # type: ignore[no-untyped-def]
    alice = make_user("alice@a.org", org="Org A")
    carol = make_user("carol@a.org", org="Org A", role="member")
    job_a = _job(db, alice)
    assert client.get(f"/api/v1/jobs/{job_a}", headers=carol.bearer).status_code == 200
