"""Users, SSH keys and tokens."""

from __future__ import annotations

import base64

import pytest
from hypothesis import given
from hypothesis import strategies as st
from sqlalchemy import select

from corral.core import identity
from corral.db.tables import ApiToken
from corral.errors import AlreadyExists, AuthenticationFailed, InvalidInput, NotFound
from tests.racing import while_held


def test_parse_openssh_line(tmp_path) -> None:  # type: ignore[no-untyped-def]
    from corral.auth.signatures import key_id_of
    from tests.conftest import write_key

    key = write_key(tmp_path / "k")
    parsed = identity.parse_ssh_public_key((tmp_path / "k.pub").read_text())
    assert parsed.key_id == key_id_of(key) and parsed.comment == "test@corral"


@pytest.mark.parametrize(
    "text, message",
    [
        ("", "expected an OpenSSH line"),
        ("ssh-rsa AAAAB3NzaC1yc2E", "only ssh-ed25519 keys are supported, got 'ssh-rsa'"),
        ("ssh-ed25519 !!!notbase64", "not valid base64"),
        ("ssh-ed25519 " + base64.b64encode(b"x" * 51).decode(), "not an Ed25519 public key"),
    ],
)
def test_bad_keys_are_clear_errors(text: str, message: str) -> None:
    with pytest.raises(InvalidInput, match=message):
        identity.parse_ssh_public_key(text)


@given(st.text(max_size=200))
def test_key_parser_never_crashes(text: str) -> None:
    try:
        identity.parse_ssh_public_key(text)
    except InvalidInput:
        pass


def test_users_keys_and_tokens(db, tmp_path) -> None:  # type: ignore[no-untyped-def]
    from tests.conftest import write_key

    write_key(tmp_path / "k")
    pub = (tmp_path / "k.pub").read_text()
    with db.write() as s:
        u = identity.create_user(s, "Alice@Example.com ", org_name="Acme", role="admin", ssh_public_key=pub)
        assert u.email == "alice@example.com"
        with pytest.raises(AlreadyExists, match="already exists"):
            identity.create_user(s, "alice@example.com", org_name="Acme")
        with pytest.raises(AlreadyExists, match="already registered"):
            identity.add_ssh_key(s, "alice@example.com", pub)
        with pytest.raises(InvalidInput, match="is not an email address"):
            identity.create_user(s, "not-an-email", org_name="Acme")
        with pytest.raises(NotFound):
            identity.create_token(s, "nobody@example.com")
        token, row = identity.create_token(s, "alice@example.com", name="ci")
    with db.read() as s:
        stored = s.scalars(select(ApiToken)).all()
        assert [t.token_hash for t in stored] == [identity.hash_token(token)]
        assert token not in {t.token_hash for t in stored} and token[:12] == stored[0].prefix
        assert identity.user_for_token(s, token).email == "alice@example.com"
        with pytest.raises(AuthenticationFailed):
            identity.user_for_token(s, token + "x")


def test_users_created_at_once_in_a_new_organisation_share_it(db) -> None:  # type: ignore[no-untyped-def]
    """Two users created at once in one new organisation: the second waits for the first and
    joins the organisation it made (on PostgreSQL it failed at the organisation's unique name)."""
    from corral.db.tables import Organisation, User

    def create() -> object:
        with db.write() as s:
            return identity.create_user(s, "b@example.com", org_name="New").org_id

    # the racer waits on the uncommitted row's unique key, until it commits
    race = while_held(db, lambda s: identity.create_user(s, "a@example.com", org_name="New").org_id, create)
    assert race.waited, race.outcome
    assert race.outcome == [race.held]
    with db.read() as s:
        assert list(s.scalars(select(Organisation.name))) == ["New"]
        assert sorted(s.scalars(select(User.email))) == ["a@example.com", "b@example.com"]


def test_one_ssh_key_registered_at_once_for_two_users_is_the_existing_key_conflict(db, tmp_path) -> None:  # type: ignore[no-untyped-def]
    """One public key added to two users at once: the second waits for the first, then is
    refused as an already registered key (on PostgreSQL it failed at the unique key_id: an
    IntegrityError, a traceback from ``corral user add-key``)."""
    from tests.conftest import write_key

    write_key(tmp_path / "k")
    pub = (tmp_path / "k.pub").read_text()
    with db.write() as s:
        identity.create_user(s, "a@example.com", org_name="Acme")
        identity.create_user(s, "b@example.com", org_name="Acme")

    def add() -> object:
        with db.write() as s:
            return identity.add_ssh_key(s, "b@example.com", pub).key_id

    # the racer waits on the uncommitted row's unique key, until it commits
    race = while_held(db, lambda s: identity.add_ssh_key(s, "a@example.com", pub), add)
    outcome = race.outcome
    assert race.waited, outcome
    assert len(outcome) == 1 and isinstance(outcome[0], AlreadyExists), outcome
    assert str(outcome[0].message) == "this SSH key is already registered"
