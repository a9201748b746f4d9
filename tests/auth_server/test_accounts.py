"""Password change, operator revocation, login throttling and token purge."""

from __future__ import annotations

import requests
from sqlalchemy import func, select

from auth_server.db import db
from auth_server.models import AccessToken, AuditEvent, RefreshFamily, RefreshToken
from tests.support import ALICE, DEMO_APP, SERVICE_APP, FakeClock, start_auth_server


def _change_password(auth, current, new, client=DEMO_APP, username="alice"):
    return requests.post(
        f"{auth.url}/account/password",
        data={"username": username, "current_password": current, "new_password": new},
        auth=client,
        timeout=5,
    )


def test_password_change_revokes_every_token_of_the_user(auth):
    first, second = auth.login(), auth.login()
    response = _change_password(auth, ALICE[1], "a-brand-new-password")
    assert response.status_code == 200, response.text
    assert response.headers["Cache-Control"] == "no-store"
    assert response.json() == {"revoked_logins": 2, "revoked_access_tokens": 2}
    for token in (first["access_token"], first["refresh_token"], second["access_token"]):
        assert not auth.is_active(token)
    old = auth.token(grant_type="password", username="alice", password=ALICE[1])
    assert old.json()["error"] == "invalid_grant"
    assert auth.login(("alice", "a-brand-new-password"))["access_token"]


def test_password_change_with_wrong_current_password_changes_nothing(auth):
    tokens = auth.login()
    response = _change_password(auth, "not-the-password", "a-brand-new-password")
    assert response.status_code == 400
    assert response.json()["error"] == "invalid_grant"
    assert auth.is_active(tokens["access_token"])


def test_password_change_enforces_the_policy(auth):
    too_short = _change_password(auth, ALICE[1], "short")
    assert too_short.status_code == 400
    assert too_short.json()["error"] == "invalid_request"
    with auth.app.app_context():
        auth.app.extensions["tessera"].accounts().create_user("christopher", "first-password")
    same_as_username = _change_password(
        auth, "first-password", "Christopher", username="christopher"
    )
    assert same_as_username.status_code == 400
    assert "username" in same_as_username.json()["error_description"]


def test_password_change_needs_a_first_party_client(auth):
    response = _change_password(auth, ALICE[1], "a-brand-new-password", client=SERVICE_APP)
    assert response.status_code == 400
    assert response.json()["error"] == "unauthorized_client"
    bad_client = _change_password(
        auth, ALICE[1], "a-brand-new-password", client=(DEMO_APP[0], "wrong")
    )
    assert bad_client.status_code == 401


def test_operator_revoke_tokens_cuts_off_every_live_token(auth):
    tokens = auth.login()
    result = auth.app.test_cli_runner().invoke(args=["users", "revoke-tokens", "alice"])
    assert result.exit_code == 0, result.output
    assert "revoked 1 logins and 1 access tokens" in result.output
    assert not auth.is_active(tokens["access_token"])
    assert auth.refresh(tokens["refresh_token"]).json()["error"] == "invalid_grant"
    assert auth.login()["access_token"]  # the user can log in again


def test_cli_set_password_revokes_tokens(auth):
    tokens = auth.login()
    result = auth.app.test_cli_runner().invoke(
        args=["users", "set-password", "alice", "--password", "operator-chosen-1"]
    )
    assert result.exit_code == 0, result.output
    assert not auth.is_active(tokens["access_token"])


def test_failed_logins_are_throttled_per_username_before_hashing(serve, make_database_url):
    auth = start_auth_server(
        serve, make_database_url("auth"), login_failures_per_username="3 per minute"
    )
    passwords = auth.app.extensions["tessera"].passwords
    verified = []
    original = passwords.verify
    passwords.verify = lambda *a: verified.append(1) or original(*a)
    for _ in range(3):
        assert (
            auth.token(grant_type="password", username="alice", password="guess-guess").status_code
            == 400
        )
    before = len(verified)
    locked = auth.token(grant_type="password", username="alice", password=ALICE[1])
    assert locked.status_code == 429
    assert int(locked.headers["Retry-After"]) > 0
    assert locked.headers["Cache-Control"] == "no-store"
    assert len(verified) == before  # the locked-out attempt cost no password hash
    # another user is not affected
    assert auth.login(("bob", "bob-password-1"))["access_token"]


def test_login_attempts_are_audited(auth):
    auth.token(grant_type="password", username="alice", password="wrong-wrong")
    auth.login()
    with auth.app.app_context():
        events = db.session.scalars(select(AuditEvent.event).order_by(AuditEvent.id)).all()
    assert "login_failed" in events
    assert "login_succeeded" in events
    assert events[-1] == "token_issued"


def test_tokens_purge_deletes_only_what_can_no_longer_matter(serve, make_database_url):
    clock = FakeClock()
    auth = start_auth_server(
        serve,
        make_database_url("auth"),
        clock=clock,
        access_token_ttl=60,
        refresh_token_idle_ttl=100,
        refresh_token_max_ttl=200,
        audit_retention_days=1,
    )
    old = auth.login()
    auth.refresh(old["refresh_token"])
    clock.advance(250)  # the first login is past its absolute lifetime
    live = auth.login()
    result = auth.app.test_cli_runner().invoke(args=["tokens", "purge", "--batch-size", "1"])
    assert result.exit_code == 0, result.output
    with auth.app.app_context():
        count = lambda model: db.session.scalar(select(func.count()).select_from(model))  # noqa: E731
        assert count(AccessToken) == 1
        assert count(RefreshFamily) == 1
        assert count(RefreshToken) == 1
    assert auth.is_active(live["access_token"])
    assert auth.refresh(live["refresh_token"]).status_code == 200
