"""Revocation is final (issue 12): what an operator and a client see of it. The full matrix of
races is in test_revocation_interleavings.py; here, one overlap driven from a steps hook in the
request's own thread, the audit trail, `clients disable`, faults and retries."""

from __future__ import annotations

import json

import pytest
import requests
from sqlalchemy import select
from sqlalchemy.exc import OperationalError

from auth_server import create_app
from auth_server.db import db
from auth_server.models import AccessToken, AuditEvent, RefreshFamily, User
from tests.support import (
    ALICE,
    DEMO_APP,
    SERVICE_APP,
    SPA_APP,
    SPA_REDIRECT,
    Browser,
    code_request,
    pkce_pair,
    query_of,
    start_auth_server,
)


def _audit(auth, event: str) -> list[dict]:
    with auth.app.app_context():
        rows = db.session.scalars(select(AuditEvent).where(AuditEvent.event == event)).all()
        return [
            {"client_id": r.client_id, "user_id": r.user_id, **json.loads(r.detail)} for r in rows
        ]


def _run_once_at(step: str, action):
    """A steps hook that runs `action` the first time a service reports `step`."""
    fired = []

    def hook(reported: str) -> None:
        if reported == step and not fired:
            fired.append(reported)
            action()

    return hook, fired


def _cli(auth, *args):
    # Its own app context, so its own database session even inside a request's hook (the CLI
    # would otherwise run in the request's context and share its session).
    with auth.app.app_context():
        result = auth.app.test_cli_runner().invoke(args=list(args))
    assert result.exit_code == 0, result.output
    return result.output


def test_login_whose_password_check_precedes_a_password_change_is_refused_and_audited(auth):
    """The reported race, made deterministic: the password change commits between the login's
    Argon2 verify and its token INSERT. Before the epochs, that login got live tokens."""
    earlier = auth.login()
    components = auth.app.extensions["tessera"]
    components.steps, fired = _run_once_at(
        "verified", lambda: _cli(auth, "users", "set-password", "alice", "--password", "new-pass-1")
    )
    try:
        response = auth.token(grant_type="password", username=ALICE[0], password=ALICE[1])
    finally:
        components.steps = lambda _step: None
    assert fired == ["verified"]
    assert response.status_code == 400, response.text
    assert response.json()["error"] == "invalid_grant"
    assert response.headers["Cache-Control"] == "no-store"
    (refused,) = _audit(auth, "issuance_refused_revoked")
    assert refused["reason"] == "user_revoked" and refused["grant_type"] == "password"
    # Which revocation killed each earlier token is on its row.
    assert not auth.is_active(earlier["access_token"])
    with auth.app.app_context():
        reasons = {r for r in db.session.scalars(select(AccessToken.revoked_reason))}
        family_reasons = {r for r in db.session.scalars(select(RefreshFamily.revoked_reason))}
    assert reasons == {"password_changed"} and family_reasons == {"password_changed"}
    (changed,) = _audit(auth, "password_changed")
    assert changed["families_revoked"] == 1 and changed["access_tokens_revoked"] == 1


@pytest.mark.parametrize(
    "revocation",
    [["users", "revoke-tokens", "alice"], ["clients", "disable", SPA_APP]],
    ids=["user", "client"],
)
def test_login_page_overlapping_a_revocation_redirects_with_access_denied(auth, revocation):
    components = auth.app.extensions["tessera"]
    components.steps, fired = _run_once_at("verified", lambda: _cli(auth, *revocation))
    _, challenge = pkce_pair()
    try:
        response = Browser(auth).login(ALICE, **code_request(challenge=challenge))
    finally:
        components.steps = lambda _step: None
    assert fired == ["verified"]
    assert response.status_code == 303, response.text  # RFC 9700 §4.12
    query = query_of(response.headers["Location"])
    assert query["error"] == "access_denied" and "code" not in query
    reason = "user_revoked" if revocation[0] == "users" else "client_revoked"
    assert [e["reason"] for e in _audit(auth, "issuance_refused_revoked")] == [reason]


def test_code_issued_before_a_revocation_starts_no_login_even_if_not_yet_expired(auth):
    """The code stores the user's epoch of its login: even a code the revocation's UPDATE did
    not expire (it was issued in the same second) cannot be exchanged after it."""
    verifier, challenge = pkce_pair()
    page = Browser(auth).login(ALICE, **code_request(challenge=challenge))
    code = query_of(page.headers["Location"])["code"]
    with auth.app.app_context():
        user = db.session.scalar(select(User).where(User.username == "alice"))
        user.token_epoch += 1  # a revocation that expired nothing
        db.session.commit()
    response = requests.post(
        f"{auth.url}/oauth/token",
        data=dict(
            grant_type="authorization_code",
            code=code,
            redirect_uri=SPA_REDIRECT,
            code_verifier=verifier,
            client_id=SPA_APP,
        ),
        timeout=10,
    )
    assert response.status_code == 400 and response.json()["error"] == "invalid_grant"


def test_clients_disable_revokes_every_token_of_the_client_and_refuses_new_ones(auth):
    service = auth.token(SERVICE_APP, grant_type="client_credentials").json()
    other = auth.login()  # demo-app: untouched
    output = _cli(auth, "clients", "disable", SERVICE_APP[0])
    # The client's token is self-contained: not stored, not counted, inactive all the same.
    assert "revoked 0 logins and 0 access tokens" in output
    assert "self-contained tokens are inactive too" in output
    assert not auth.is_active(service["access_token"])
    assert auth.is_active(other["access_token"])
    refused = auth.token(SERVICE_APP, grant_type="client_credentials")
    assert refused.status_code == 401 and refused.json()["error"] == "invalid_client"
    (event,) = _audit(auth, "client_disabled")
    assert event["client_id"] == SERVICE_APP[0] and event["access_tokens_revoked"] == 0
    listed = _cli(auth, "clients", "list")
    assert any(
        line.startswith(SERVICE_APP[0]) and "disabled" in line for line in listed.splitlines()
    )


def test_clients_disable_of_an_unknown_client_fails_and_changes_nothing(auth):
    result = auth.app.test_cli_runner().invoke(args=["clients", "disable", "nobody"])
    assert result.exit_code != 0 and "no client 'nobody'" in result.output
    assert _audit(auth, "client_disabled") == []


def test_a_worker_caching_the_client_issues_nothing_once_it_is_disabled(serve, make_database_url):
    """client_cache_seconds lets a worker keep a client's registration; the snapshot carries
    the client's epoch, so the issuance re-check refuses it at once, and the cache forgets it."""
    auth = start_auth_server(serve, make_database_url("auth"), client_cache_seconds=300)
    assert auth.token(SERVICE_APP, grant_type="client_credentials").status_code == 200
    # Another process (the operator's CLI) disables it; this worker's cache does not know.
    operator = create_app(auth.settings)
    result = operator.test_cli_runner().invoke(args=["clients", "disable", SERVICE_APP[0]])
    assert result.exit_code == 0, result.output
    refused = auth.token(SERVICE_APP, grant_type="client_credentials")
    assert refused.status_code == 401 and refused.json()["error"] == "invalid_client"
    (event,) = _audit(auth, "issuance_refused_revoked")
    assert event["reason"] == "client_revoked"
    again = auth.token(SERVICE_APP, grant_type="client_credentials")
    assert again.status_code == 401  # now from client authentication: the cache forgot it
    assert len(_audit(auth, "issuance_refused_revoked")) == 1


def _database_fails_before_commit():
    raise OperationalError("COMMIT", None, ConnectionError("simulated: database lost"))


def test_password_change_that_fails_at_the_database_is_503_and_revokes_nothing(auth):
    """All or nothing: the epoch, the new hash and every revoked row are one transaction."""
    tokens = auth.login()
    components = auth.app.extensions["tessera"]
    components.steps, fired = _run_once_at("revoked", _database_fails_before_commit)
    form = dict(username="alice", current_password=ALICE[1], new_password="a-new-password-1")
    try:
        failed = requests.post(f"{auth.url}/account/password", data=form, auth=DEMO_APP, timeout=10)
    finally:
        components.steps = lambda _step: None
    assert fired == ["revoked"]
    assert failed.status_code == 503, failed.text
    assert failed.json()["error"] == "temporarily_unavailable"
    assert failed.headers["Retry-After"]
    assert auth.is_active(tokens["access_token"]) and auth.is_active(tokens["refresh_token"])
    with auth.app.app_context():
        assert db.session.scalar(select(User.token_epoch).where(User.username == "alice")) == 0
    assert _audit(auth, "password_changed") == []
    # The retry does it all.
    retried = requests.post(f"{auth.url}/account/password", data=form, auth=DEMO_APP, timeout=10)
    assert retried.status_code == 200, retried.text
    assert retried.json() == {"revoked_logins": 1, "revoked_access_tokens": 1}
    assert not auth.is_active(tokens["access_token"])
    assert not auth.is_active(tokens["refresh_token"])


@pytest.mark.parametrize(
    "args",
    [
        ["users", "revoke-tokens", "alice"],
        ["users", "disable", "alice"],
        ["users", "set-password", "alice", "--password", "another-pass-1"],
        ["clients", "disable", DEMO_APP[0]],
    ],
    ids=lambda args: "-".join(args[:2]),
)
def test_a_retried_revocation_is_idempotent(auth, args):
    """An operator who runs it again (the first run's answer was lost) gets the same state:
    everything stays revoked, nothing fails, the second run revokes nothing more."""
    tokens = auth.login()
    first = _cli(auth, *args)
    assert "revoked 1 logins and 1 access tokens" in first
    second = _cli(auth, *args)
    assert "revoked 0 logins and 0 access tokens" in second
    assert not auth.is_active(tokens["access_token"])
    assert not auth.is_active(tokens["refresh_token"])
    with auth.app.app_context():
        revoked = db.session.scalars(select(RefreshFamily.revoked_reason)).all()
    assert len(revoked) == 1 and revoked[0] is not None  # the first run's reason is kept
