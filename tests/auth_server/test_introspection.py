"""RFC 7662 introspection, as resource servers use it on every request."""

from __future__ import annotations

import base64
import json

import pytest
import requests

from auth_server.db import db
from auth_server.store import find_client
from tests.support import (
    DEMO_APP,
    NOTES,
    NOTES_API,
    OTHER_APP,
    REPORTS,
    REPORTS_API,
    FakeClock,
    start_auth_server,
)


def _b64(data: dict) -> str:
    return base64.urlsafe_b64encode(json.dumps(data).encode()).rstrip(b"=").decode()


def test_active_token_has_every_member_the_resource_server_needs(auth):
    body = auth.login()
    response = auth.introspect(body["access_token"])
    assert response.status_code == 200
    assert response.headers["Cache-Control"] == "no-store"
    data = response.json()
    assert data["active"] is True
    assert set(data) >= {
        "active",
        "scope",
        "client_id",
        "username",
        "sub",
        "aud",
        "iss",
        "exp",
        "iat",
        "jti",
        "token_type",
    }
    assert data["username"] == "alice"
    assert data["client_id"] == "demo-app"
    assert data["aud"] == NOTES
    assert data["iss"] == auth.url
    assert data["token_type"] == "Bearer"
    assert data["token_use"] == "access_token"
    assert data["exp"] - data["iat"] == 300


@pytest.mark.parametrize(
    "token",
    [
        "not-a-token",
        "a" * 9000,
        "eyJhbGciOiJub25lIn0.eyJzdWIiOiJ4In0.",
        "\u00e9\u00e8\u4e2d",
    ],
    ids=["garbage", "oversized", "alg-none", "non-ascii"],
)
def test_unknown_or_garbage_token_is_exactly_inactive(auth, token):
    """RFC 7662 §2.2: anything not an active token is {"active": false} and nothing else."""
    response = auth.introspect(token)
    assert response.status_code == 200
    assert response.json() == {"active": False}


def test_forged_tokens_are_inactive(auth):
    """alg none, a tampered payload and a foreign signature: none is a token we issued."""
    real = auth.login()["access_token"]
    header, payload, signature = real.split(".")
    claims = json.loads(base64.urlsafe_b64decode(payload + "=="))
    claims["scope"] = "admin"
    forged = [
        f"{_b64({'alg': 'none', 'typ': 'at+jwt'})}.{payload}.",
        f"{header}.{_b64(claims)}.{signature}",
        f"{header}.{payload}.{signature[::-1]}",
    ]
    for token in forged:
        assert auth.introspect(token).json() == {"active": False}
    assert auth.is_active(real)


def test_expired_token_is_inactive(serve, make_database_url):
    clock = FakeClock()
    auth = start_auth_server(serve, make_database_url("auth"), clock=clock, access_token_ttl=60)
    token = auth.login()["access_token"]
    clock.advance(59)
    assert auth.is_active(token)
    clock.advance(1)  # RFC 7519 §4.1.4: on or after exp, not valid
    assert auth.introspect(token).json() == {"active": False}


def test_revoked_token_is_inactive_on_the_very_next_call(auth):
    token = auth.login()["access_token"]
    assert auth.is_active(token)
    assert auth.revoke(token).status_code == 200
    assert auth.introspect(token).json() == {"active": False}


def test_refresh_token_is_never_active_to_a_resource_server(auth):
    """RFC 7662 §4: a refresh token is for the authorization server alone; a resource server
    learns nothing about it, whatever the hint, while it stays a live login."""
    refresh = auth.login()["refresh_token"]
    for hint in (None, "refresh_token", "access_token"):
        form = {"token_type_hint": hint} if hint else {}
        for resource_server in (NOTES_API, REPORTS_API):
            response = auth.introspect(refresh, client=resource_server, **form)
            assert response.json() == {"active": False}
    assert auth.refresh_token_record(refresh).is_active(int(auth.clock()))
    assert auth.refresh(refresh).status_code == 200


def test_resource_server_learns_only_about_tokens_for_its_own_audiences(auth):
    """RFC 7662 §4: notes-api serves urn:tessera:notes, reports-api urn:tessera:reports; each
    sees the other's tokens as inactive, and a token for both as active at both."""
    notes = auth.login()["access_token"]
    reports = auth.login(client=OTHER_APP, resource=REPORTS)["access_token"]
    both = auth.login(client=OTHER_APP)["access_token"]
    assert auth.introspect(notes, client=REPORTS_API).json() == {"active": False}
    assert auth.introspect(reports, client=NOTES_API).json() == {"active": False}
    assert auth.introspect(notes, client=NOTES_API).json()["active"] is True
    assert auth.introspect(reports, client=REPORTS_API).json()["aud"] == REPORTS
    for resource_server in (NOTES_API, REPORTS_API):
        assert auth.introspect(both, client=resource_server).json()["active"] is True


def test_introspecting_client_without_audiences_learns_nothing(auth):
    """A resource server registered without the audiences it serves (as before they were
    required) sees every token as inactive."""
    token = auth.login()["access_token"]
    with auth.app.app_context():
        find_client(db.session, NOTES_API[0]).audiences = ""
        db.session.commit()
    assert auth.introspect(token).json() == {"active": False}


def test_unknown_token_type_hint_is_not_an_error(auth):
    """RFC 7662 §2.1: the hint only orders the search."""
    token = auth.login()["access_token"]
    assert auth.introspect(token, token_type_hint="refresh_token").json()["active"] is True
    assert auth.introspect(token, token_type_hint="something").json()["active"] is True


def test_missing_credentials_get_401_invalid_client(auth):
    response = requests.post(f"{auth.url}/oauth/introspect", data={"token": "x"}, timeout=5)
    assert response.status_code == 401
    assert response.json()["error"] == "invalid_client"
    assert response.headers["WWW-Authenticate"].startswith("Basic")


def test_wrong_credentials_get_401_invalid_client(auth):
    response = auth.introspect("x", client=(NOTES_API[0], "wrong"))
    assert response.status_code == 401
    assert response.json()["error"] == "invalid_client"


def test_client_without_introspection_permission_gets_401(auth):
    """Only resource servers (can_introspect) may learn about tokens."""
    token = auth.login()["access_token"]
    response = auth.introspect(token, client=DEMO_APP)
    assert response.status_code == 401
    assert response.json()["error"] == "invalid_client"


def test_client_secret_post_works_for_introspection(auth):
    token = auth.login()["access_token"]
    response = requests.post(
        f"{auth.url}/oauth/introspect",
        data={"token": token, "client_id": NOTES_API[0], "client_secret": NOTES_API[1]},
        timeout=5,
    )
    assert response.json()["active"] is True


def test_missing_token_parameter_is_invalid_request(auth):
    response = requests.post(f"{auth.url}/oauth/introspect", data={}, auth=NOTES_API, timeout=5)
    assert response.status_code == 400
    assert response.json()["error"] == "invalid_request"
