"""Operator commands under `flask --app auth_server`."""

from __future__ import annotations

import os
import subprocess
import sys
import uuid

import pytest
from sqlalchemy import select

from auth_server.clients import ClientRegistrationError, register_client
from auth_server.db import db
from auth_server.models import Client, User
from shared.protocol.digests import sha256_hex
from tests.support import (
    DEMO_APP,
    NOTES,
    NOTES_API,
    OTHER_APP,
    REPORTS,
    start_auth_server,
)


def test_clients_create_shows_a_generated_secret_once_and_stores_its_hash(auth):
    runner = auth.app.test_cli_runner()
    result = runner.invoke(
        args=[
            "clients",
            "create",
            "cli-app",
            "--grant-types",
            "client_credentials",
            "--scopes",
            "notes:read",
            "--audiences",
            "urn:tessera:notes",
        ]
    )
    assert result.exit_code == 0, result.output
    secret = next(
        line.split()[-1] for line in result.output.splitlines() if line.startswith("client_secret:")
    )
    assert len(secret) >= 43
    with auth.app.app_context():
        stored = db.session.scalar(select(Client).where(Client.client_id == "cli-app"))
        assert stored.secret_hash == sha256_hex(secret)
    issued = auth.token(("cli-app", secret), grant_type="client_credentials")
    assert issued.status_code == 200
    listing = runner.invoke(args=["clients", "list"]).output
    assert "cli-app" in listing and secret not in listing


def test_clients_create_rejects_unknown_grant_types(auth):
    result = auth.app.test_cli_runner().invoke(
        args=["clients", "create", "x", "--grant-types", "implicit"]
    )
    assert result.exit_code != 0
    assert "Unsupported grant types" in result.output


def test_users_create_enforces_the_password_policy(auth):
    runner = auth.app.test_cli_runner()
    short = runner.invoke(args=["users", "create", "carol", "--password", "short"])
    assert short.exit_code != 0 and "at least" in short.output
    same = runner.invoke(args=["users", "create", "carolcarol", "--password", "CarolCarol"])
    assert same.exit_code != 0 and "username" in same.output
    ok = runner.invoke(args=["users", "create", "carol", "--password", "carol-password"])
    assert ok.exit_code == 0, ok.output
    assert auth.login(("carol", "carol-password"))["access_token"]


def test_users_disable_revokes_every_live_token(auth):
    tokens = auth.login()
    result = auth.app.test_cli_runner().invoke(args=["users", "disable", "alice"])
    assert result.exit_code == 0, result.output
    assert not auth.is_active(tokens["access_token"])
    assert not auth.is_active(tokens["refresh_token"])


@pytest.mark.live  # runs `flask` / python in a subprocess
def test_default_files_live_in_instance_dir_of_the_working_directory(tmp_path):
    """With no environment the defaults are in ./instance of the working directory (where
    `make run` and the CLI run), never next to the installed code; INSTANCE_DIR moves them."""
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("AUTH_", "TESSERA_", "INSTANCE_DIR"))
    }
    code = (
        "from auth_server.settings import AuthSettings; s = AuthSettings(); "
        "print(s.auth_database_url, s.auth_key_encryption_key_file, s.auth_session_secret_file)"
    )

    def defaults(**extra: str) -> list[str]:
        return subprocess.run(
            [sys.executable, "-c", code],
            env={**env, **extra},
            cwd=tmp_path,
            text=True,
            capture_output=True,
            check=True,
        ).stdout.split()

    assert defaults() == [
        "sqlite:///instance/auth.sqlite3",
        "instance/key-encryption.key",
        "instance/session-secret.key",
    ]
    moved = tmp_path / "state"
    assert defaults(INSTANCE_DIR=str(moved)) == [
        f"sqlite:///{moved}/auth.sqlite3",
        f"{moved}/key-encryption.key",
        f"{moved}/session-secret.key",
    ]


def test_clients_create_refuses_ids_that_are_or_look_like_a_user_subject(auth):
    """RFC 9068 §5: a client_credentials token's sub is its client_id, a user's token's sub the
    user's subject (a UUID); no client may take an id that could be one."""
    with auth.app.app_context():
        subject = db.session.scalar(select(User.subject).where(User.username == "alice"))
    runner = auth.app.test_cli_runner()
    for client_id in (subject, subject.upper(), str(uuid.uuid4()), uuid.uuid4().hex):
        result = runner.invoke(args=["clients", "create", client_id, "--scopes", "notes:read"])
        assert result.exit_code != 0, client_id
        assert "UUID" in result.output
    with auth.app.app_context():
        assert db.session.scalar(select(Client).where(Client.client_id == subject)) is None
        # and through the register function, for a subject that is not UUID-shaped
        alice = db.session.scalar(select(User).where(User.username == "alice"))
        alice.subject = "alice-legacy-subject"
        db.session.commit()
        with pytest.raises(ClientRegistrationError, match="subject"):
            register_client(
                db.session,
                "alice-legacy-subject",
                grant_types=["client_credentials"],
                scopes=[],
                audiences=[NOTES],
            )


def test_clients_create_can_introspect_needs_the_audiences_it_serves(auth):
    """RFC 7662 §4: a resource server learns only about tokens for the audiences it serves,
    so registering one without them is an error, and it uses no grant type."""
    runner = auth.app.test_cli_runner()
    missing = runner.invoke(args=["clients", "create", "reports-2", "--can-introspect"])
    assert missing.exit_code != 0
    assert "needs the audiences it serves" in missing.output
    with_grant = runner.invoke(
        args=["clients", "create", "reports-2", "--can-introspect", "--audience", REPORTS]
        + ["--grant-types", "client_credentials"]
    )
    assert with_grant.exit_code != 0 and "no grant type" in with_grant.output
    created = runner.invoke(
        args=["clients", "create", "reports-2", "--can-introspect", "--audience", REPORTS]
    )
    assert created.exit_code == 0, created.output
    secret = created.output.split("client_secret:")[1].split()[0]
    notes_token = auth.login()["access_token"]
    reports_token = auth.login(client=OTHER_APP, resource=REPORTS)["access_token"]
    assert auth.introspect(notes_token, client=("reports-2", secret)).json() == {"active": False}
    assert auth.introspect(reports_token, client=("reports-2", secret)).json()["active"] is True
    with auth.app.app_context():
        stored = db.session.scalar(select(Client).where(Client.client_id == "reports-2"))
        assert (stored.audiences, stored.grant_types) == (REPORTS, "")


def test_set_audiences_and_demo_setup_repair_a_resource_server_registered_without(
    serve, make_database_url, tmp_path
):
    """A resource server registered before introspection needed its audiences (none, and the
    CLI's old default grant client_credentials) gets them back from `clients set-audiences`,
    and the demo's notes-api from `demo setup`."""
    auth = start_auth_server(
        serve,
        make_database_url("auth"),
        tessera_demo=True,
        auth_key_encryption_key_file=str(tmp_path / "kek"),
    )
    token = auth.login()["access_token"]
    runner = auth.app.test_cli_runner()

    def make_legacy(client_id):
        with auth.app.app_context():
            client = db.session.scalar(select(Client).where(Client.client_id == client_id))
            client.audiences, client.grant_types = "", "client_credentials"
            db.session.commit()

    make_legacy(NOTES_API[0])
    assert auth.introspect(token).json() == {"active": False}
    result = runner.invoke(args=["clients", "set-audiences", NOTES_API[0], NOTES])
    assert result.exit_code == 0, result.output
    assert auth.is_active(token)
    refused = runner.invoke(args=["clients", "set-audiences", DEMO_APP[0], NOTES])
    assert refused.exit_code != 0 and "may not introspect" in refused.output

    make_legacy(NOTES_API[0])
    result = runner.invoke(args=["demo", "setup"])
    assert result.exit_code == 0, result.output
    assert auth.is_active(token)
    with auth.app.app_context():
        notes_api = db.session.scalar(select(Client).where(Client.client_id == NOTES_API[0]))
        assert (notes_api.audiences, notes_api.grant_types) == (NOTES, "")


def test_clients_create_third_party_is_listed_and_limited_to_the_code_flow(auth):
    runner = auth.app.test_cli_runner()
    created = runner.invoke(
        args=[
            "clients",
            "create",
            "partner",
            "--third-party",
            "--public",
            "--scopes",
            "notes:read",
            "--redirect-uris",
            "https://partner.example.org/cb",
        ]
    )
    assert created.exit_code == 0, created.output
    line = next(
        row
        for row in runner.invoke(args=["clients", "list"]).output.splitlines()
        if row.startswith("partner\t")
    )
    assert "third-party" in line and "grants=authorization_code refresh_token" in line
    refused = runner.invoke(
        args=["clients", "create", "partner-2", "--third-party", "--grant-types", "password"]
    )
    assert refused.exit_code != 0
    assert "third-party app may only use" in refused.output
