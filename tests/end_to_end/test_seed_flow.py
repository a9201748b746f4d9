"""The seed's diagram, step by step, with both services on real ports talking over HTTP.

Steps 1-3: the app logs in at the authorization server; 4-6: it calls the API, which
introspects the token; 7: a bad token is refused; then revocation, scope, audience and an
unreachable authorization server.
"""

from __future__ import annotations

import base64
import json
import re

import pytest

from tests.support import (
    BOB,
    NOTES_API,
    SERVICE_APP,
    FakeClock,
    start_auth_server,
    start_resource_server,
)

# RFC 9449 §7.2: the notes API accepts Bearer and DPoP, and offers both.
BARE_CHALLENGE = 'Bearer realm="tessera", DPoP realm="tessera", algs="ES256 EdDSA Ed25519 RS256"'


def _challenge(response) -> dict:
    header = response.headers["WWW-Authenticate"]
    assert header.startswith("Bearer ")
    return dict(re.findall(r'(\w+)="([^"]*)"', header))


def test_login_then_call_the_api(auth, notes_api):
    """Steps 1-6: a password-grant token opens the notes API for its user."""
    tokens = auth.login()
    me = notes_api.get("/api/me", tokens["access_token"])
    assert me.status_code == 200
    assert me.json()["username"] == "alice"
    created = notes_api.call("POST", "/api/notes", tokens["access_token"], json={"body": "hi"})
    assert created.status_code == 201
    listed = notes_api.get("/api/notes", tokens["access_token"]).json()["notes"]
    assert [n["body"] for n in listed] == ["hi"]


def test_missing_authorization_gets_bare_bearer_challenge(notes_api):
    """RFC 6750 §3.1: no credentials, no error code."""
    response = notes_api.get("/api/me")
    assert response.status_code == 401
    assert response.headers["WWW-Authenticate"] == BARE_CHALLENGE


@pytest.mark.parametrize(
    "header",
    ["Bearer", "Bearer a b", "Bearer ***", "Bearer " + "a" * 9000],
    ids=["empty", "two-tokens", "bad-chars", "oversized"],
)
def test_malformed_authorization_gets_401_invalid_token(notes_api, header):
    response = notes_api.get("/api/me", headers={"Authorization": header})
    assert response.status_code == 401
    assert _challenge(response)["error"] == "invalid_token"


def test_garbage_token_is_refused_after_real_introspection(notes_api):
    """Step 7: a well-formed but unknown token: the AS says inactive, the RS says 401."""
    response = notes_api.get("/api/me", "not.a-real_token")
    assert response.status_code == 401
    assert _challenge(response)["error"] == "invalid_token"


def test_forged_jwt_is_refused(auth, notes_api):
    """alg none and a widened scope: not a token the AS issued."""
    header, payload, _ = auth.login(scope="profile")["access_token"].split(".")
    claims = json.loads(base64.urlsafe_b64decode(payload + "=="))
    claims["scope"] = "profile notes:read notes:write"
    forged_payload = base64.urlsafe_b64encode(json.dumps(claims).encode()).rstrip(b"=").decode()
    none_header = base64.urlsafe_b64encode(b'{"alg":"none","typ":"at+jwt"}').rstrip(b"=")
    for token in (f"{header}.{forged_payload}.", f"{none_header.decode()}.{forged_payload}."):
        response = notes_api.get("/api/notes", token)
        assert response.status_code == 401


def test_expired_token_is_refused(serve, make_database_url):
    clock = FakeClock()
    auth = start_auth_server(serve, make_database_url("auth"), clock=clock, access_token_ttl=60)
    notes_api = start_resource_server(serve, make_database_url("notes"), auth)
    token = auth.login()["access_token"]
    assert notes_api.get("/api/me", token).status_code == 200
    clock.advance(60)
    response = notes_api.get("/api/me", token)
    assert response.status_code == 401
    assert _challenge(response)["error"] == "invalid_token"


def test_revoked_token_is_refused_on_the_very_next_request(auth, notes_api):
    token = auth.login()["access_token"]
    assert notes_api.get("/api/me", token).status_code == 200
    assert auth.revoke(token).status_code == 200
    assert notes_api.get("/api/me", token).status_code == 401


def test_refresh_token_presented_as_bearer_is_refused(auth, notes_api):
    refresh = auth.login()["refresh_token"]
    response = notes_api.get("/api/me", refresh)
    assert response.status_code == 401
    assert _challenge(response)["error"] == "invalid_token"


def test_token_without_the_scope_gets_403_naming_the_scope(auth, notes_api):
    token = auth.login(scope="profile")["access_token"]
    response = notes_api.call("POST", "/api/notes", token, json={"body": "x"})
    assert response.status_code == 403
    challenge = _challenge(response)
    assert challenge["error"] == "insufficient_scope"
    assert challenge["scope"] == "notes:write"


def test_token_for_another_api_is_inactive_there(auth, notes_api, reports_api):
    """aud restricts a token to the APIs it was issued for (RFC 8707), and introspection tells
    a resource server only about tokens for its own audiences (RFC 7662 §4): to the reports
    API a notes token is not active at all."""
    token = auth.login()["access_token"]  # demo-app may only target urn:tessera:notes
    assert notes_api.get("/api/me", token).status_code == 200
    response = reports_api.get("/api/me", token)
    assert response.status_code == 401
    assert _challenge(response)["error"] == "invalid_token"


def test_users_see_only_their_own_notes(auth, notes_api):
    alice = auth.login()["access_token"]
    bob = auth.login(BOB)["access_token"]
    note = notes_api.call("POST", "/api/notes", alice, json={"body": "alice's"}).json()
    assert notes_api.get("/api/notes", bob).json()["notes"] == []
    bob_write = auth.login(BOB, scope="notes:read")["access_token"]
    assert notes_api.call("DELETE", f"/api/notes/{note['id']}", bob_write).status_code == 403
    assert notes_api.call("DELETE", f"/api/notes/{note['id']}", alice).status_code == 204


def test_client_credentials_token_works_at_the_api(auth, notes_api):
    token = auth.token(SERVICE_APP, grant_type="client_credentials").json()["access_token"]
    assert notes_api.call("POST", "/api/notes", token, json={"body": "svc"}).status_code == 201
    assert notes_api.get("/api/notes", token).json()["notes"][0]["body"] == "svc"


def test_unreachable_authorization_server_gives_503_then_recovers(serve, auth, notes_api):
    """Never 200, never 500 while the AS is down; served again once it is back."""
    token = auth.login()["access_token"]
    port = auth.server.port
    auth.server.stop()
    down = notes_api.get("/api/me", token)
    assert down.status_code == 503
    assert int(down.headers["Retry-After"]) > 0
    assert down.json()["error"] == "temporarily_unavailable"
    serve(auth.app, port=port)
    assert notes_api.get("/api/me", token).status_code == 200


def test_resource_server_with_wrong_credentials_answers_503(serve, make_database_url, auth):
    """A misconfigured RS must not turn every user away as 'invalid token'."""
    broken = start_resource_server(
        serve, make_database_url("broken"), auth, credentials=(NOTES_API[0], "wrong")
    )
    response = broken.get("/api/me", auth.login()["access_token"])
    assert response.status_code == 503
