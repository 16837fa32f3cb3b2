"""``EncordUserClient.list_organisation_users()`` through the unmodified Encord SDK, and the native
``GET /api/v1/members`` / ``corral members``: an admin sees the organisation's users, a member only
themselves, nobody another organisation's; adding and removing users stays an operator's."""

from __future__ import annotations

import json
from typing import Any

import httpx
import pytest
from encord.exceptions import UnknownException
from sqlalchemy import update

from corral.db.tables import User
from corral.db.types import utcnow
from tests.compat.conftest import client_for


def test_list_organisation_users(sdk: Any, alice: Any, make_user: Any, server: str, db: Any,
                                 monkeypatch: Any, tmp_path: Any) -> None:
    bob = make_user("bob@x.io", role="member")
    make_user("carol@x.io", role="member")
    make_user("eve@y.io", org="Org B")
    with db.write() as s:  # a disabled user is not listed
        s.execute(update(User).where(User.email == "carol@x.io").values(disabled_at=utcnow()))

    users = sdk.list_organisation_users()
    listed = [(u.email, u.role_mnemonic_name, u.member_type) for u in users]
    expected = [("alice@x.io", "ADMIN", "internal"), ("bob@x.io", "MEMBER", "internal")]
    assert listed == expected
    assert users[0].role_uuid != users[1].role_uuid and users[0].created_at is not None
    assert [u.email for u in client_for(bob, server).list_organisation_users()] == ["bob@x.io"]

    # adding or removing users is not an organisation admin's in corral (operators: corral user create)
    with pytest.raises(UnknownException, match="not supported by corral"):
        sdk.add_organisation_user("new@x.io", role_mnemonic_name="MEMBER", member_type="internal")
    with pytest.raises(UnknownException, match="not supported by corral"):
        sdk.remove_organisation_user("bob@x.io")

    # the native API and the CLI
    with httpx.Client(base_url=server, headers=bob.bearer) as as_bob:
        assert [(m["email"], m["role"]) for m in as_bob.get("/api/v1/members").json()["members"]] == [
            ("bob@x.io", "member")]
    from click.testing import CliRunner

    from corral.cli import cli

    monkeypatch.setenv("CORRAL_CONFIG_DIR", str(tmp_path / "config"))
    monkeypatch.delenv("CORRAL_PROFILE", raising=False)
    r = CliRunner().invoke(cli, ["members", "--json"], env={"CORRAL_URL": server, "CORRAL_TOKEN": alice.token})
    assert r.exit_code == 0, r.output
    assert [m["email"] for m in json.loads(r.output)["members"]] == [e for e, _, _ in expected]
